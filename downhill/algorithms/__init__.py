"""The update rules, one module per family.

Every rule is an :class:`~downhill.Optimizer` subclass registered with
:func:`~downhill.register`: a ``HYPERS`` tuple of declarations and a
``_step(param, grad)`` hook returning the step and its state's new values
(see the contributors' page, ``docs/internals.rst``). Which module takes
which family:

==========================  ==============================================================
Module                      Family
==========================  ==============================================================
``momentum.py``             Gradient steps with (Nesterov) momentum: SGD, NAG; the
                            sign-of-momentum rule Lion.
``adaptive.py``             Adaptive per-element step sizes from the gradient's history,
                            without a first moment: RMSProp, RProp, ADAGRAD, ADADELTA,
                            PyMC's windowed ADAGRAD (``adagrad_window``).
``adam.py``                 Adam and the variants that change its first moment, bias
                            correction or normaliser: AMSGrad, Adamax, NAdam, RAdam.
``second_moment.py``        Adam-like rules that change how the second moment is
                            estimated: AdaBelief, Yogi, and the factored Adafactor.
``layerwise.py``            Layer-wise trust ratios (one scale per parameter tensor):
                            LARS, LAMB.
``curvature.py``            Curvature (second-order) information from Hessian-vector
                            products: ESGD.
``schedule_free.py``        Schedule-Free SGD and AdamW (averaged iterates, with their own
                            evaluation point).
``wrappers.py``             Rules that wrap another rule: Lookahead.
``common.py``               What several families share: the optimizer-wide step counter
                            (:class:`~downhill.algorithms.common.StepCounter`).
==========================  ==============================================================

A module is made when its first rule arrives. ``downhill.first_order`` and
``downhill.adaptive``, downhill 0.4's modules, stay importable and give the
same classes.
"""

from .adam import AMSGrad, Adam, Adamax, NAdam, RAdam
from .adaptive import ADADELTA, ADAGRAD, AdagradWindow, RMSProp, RProp
from .curvature import ESGD
from .layerwise import LAMB, LARS
from .momentum import NAG, SGD, Lion
from .schedule_free import ScheduleFreeAdamW, ScheduleFreeSGD
from .second_moment import AdaBelief, Adafactor, Yogi
from .wrappers import Lookahead

__all__ = ["SGD", "NAG", "RMSProp", "RProp", "ADAGRAD", "ADADELTA", "AdagradWindow", "Adam",
           "AMSGrad", "Adamax", "NAdam", "RAdam", "AdaBelief", "Yogi", "Adafactor", "Lion",
           "LARS", "LAMB", "ScheduleFreeSGD", "ScheduleFreeAdamW", "ESGD", "Lookahead"]
