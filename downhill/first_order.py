"""downhill 0.4's module of the first-order algorithms, kept as an import path.

``downhill.first_order.SGD`` works as in 0.4 and is the same class as
``downhill.SGD``. The rules live in :mod:`downhill.algorithms`, one module
per family.
"""

from .algorithms.momentum import NAG, SGD

__all__ = ["SGD", "NAG"]
