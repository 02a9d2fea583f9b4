"""``python -m downhill``: the command line (see :mod:`downhill.cli`)."""

from .cli import main

if __name__ == "__main__":
    main()
