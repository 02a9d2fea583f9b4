"""downhill 0.4's module of the adaptive algorithms, kept as an import path.

``from downhill.adaptive import RMSProp`` works as in 0.4 and gives the same
class as ``downhill.RMSProp``. The rules live in :mod:`downhill.algorithms`,
one module per family.
"""

from .algorithms.adam import Adam
from .algorithms.adaptive import ADADELTA, ADAGRAD, RMSProp, RProp
from .algorithms.curvature import ESGD

__all__ = ["RMSProp", "RProp", "ADAGRAD", "ADADELTA", "ESGD", "Adam"]
