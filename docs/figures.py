"""Draw the figures of the documentation by running the examples and the CLI.

    python docs/figures.py [--force]

``docs/conf.py`` calls :func:`make` before every build; existing figures
are kept unless ``--force`` is given, so a fresh clone draws them once.
"""

import pathlib
import runpy
import sys

HERE = pathlib.Path(__file__).resolve().parent
EXAMPLES = HERE.parent / "examples"

#: figure file -> (example script or None for the CLI, arguments)
FIGURES = {
    "demo.png": (None, ["demo", "--plot"]),
    "rosenbrock-2d.png": ("rosenbrock-2d.py", ["--max-updates", "500", "--output"]),
    "rosenbrock-100d.png": ("rosenbrock-100d.py", ["--max-updates", "1000", "--output"]),
    "digits-basis.png": ("digits-sparse-factorization.py", ["--output"]),
    "digits-classifier.png": ("digits-classifier.py", ["--hidden", "32", "--output"]),
    "schedules.png": ("schedules.py", ["--output"]),
    "averaged-weights.png": ("averaged-weights.py", ["--output"]),
    "gradient-accumulation.png": ("gradient-accumulation.py", ["--output"]),
}


def make(folder, force=False):
    """Draw every figure in ``folder`` that is missing (all with ``force``)."""
    from click.testing import CliRunner

    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, (script, args) in FIGURES.items():
        out = folder / name
        if out.exists() and not force:
            continue
        if script is None:
            from downhill.cli import cli as command
        else:
            command = runpy.run_path(str(EXAMPLES / script))["main"]
        result = CliRunner().invoke(command, args + [str(out)])
        if result.exit_code != 0:
            raise RuntimeError(f"drawing {name} failed:\n{result.output}") from result.exception
        print(f"docs/figures.py: wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parent))
    make(HERE / "_static" / "figures", force="--force" in sys.argv[1:])
