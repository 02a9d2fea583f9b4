r"""What several algorithm families share: the optimizer-wide step counter,
and where epsilon goes in a normaliser.

Bias corrections (Adam and its variants), a ring buffer's position
(``adagrad_window``) and schedules inside a rule all need the number of
the step being made; :class:`StepCounter` keeps it once per optimizer, not
once per parameter, and saves it with the rest of the state. Peers
differ on whether :math:`\epsilon` goes under a square root or is added
to it; :func:`in_root` declares the switch between the two and
:func:`root_plus_epsilon` builds either. A rule whose common
hyperparameter needs another default (LARS's momentum) declares it again
with :func:`redeclared`.
"""

import copy

import pytensor.tensor as pt

from ..hyperparams import COMMON, Hyper
from ..util import as_float, halflife_to_decay

__all__ = ["StepCounter", "BETAS", "in_root", "root_plus_epsilon", "redeclared"]

#: The half-lives of the Adam family's two averages, as Adam declares them:
#: :math:`\beta_1 = e^{-\ln 2 / 7} \approx 0.906` and
#: :math:`\beta_2 = e^{-\ln 2 / 69} \approx 0.990`, in the shared scalars
#: ``beta1`` and ``beta2``.
BETAS = (
    Hyper("beta1_halflife", 7.0, "half-life in updates of the gradient average",
          low=0, low_open=True, shared="beta1", transform=halflife_to_decay),
    Hyper("beta2_halflife", 69.0, "half-life in updates of the squared gradient average",
          low=0, low_open=True, shared="beta2", transform=halflife_to_decay),
)


class StepCounter:
    r"""Mixin of an :class:`~downhill.Optimizer` subclass: the step counter ``t``.

    Put it before :class:`~downhill.Optimizer` among the bases
    (``class Adam(StepCounter, Optimizer)``). It adds the optimizer-wide
    state scalar ``t`` (int64, the number of steps made, saved and restored
    with the rest of the state) and its update :math:`t \leftarrow t + 1`,
    applied once per step however many parameters there are; ``_step`` reads
    the incremented value with ``_step_number(param)``.
    """

    def _global_updates(self):
        updates = list(super()._global_updates())
        t = self._global_state("t")
        self._t_prev = t
        self._t_next = t + 1
        return updates + [(t, self._t_next)]

    def _step_number(self, like):
        """The number :math:`t` of the step being made (1 for the first).

        Parameters
        ----------
        like : pytensor Variable
            A parameter: the result has its float dtype.

        Returns
        -------
        pytensor Variable
            :math:`t` after this step's increment, as a float scalar.
        """
        return as_float(self._t_next, like.dtype)


def in_root(default, where="under the square root", peers=""):
    """The declaration of ``regularizer_in_root``: where epsilon goes.

    Parameters
    ----------
    default : bool
        The algorithm's default placement.
    where : str, optional
        What "inside" means for this algorithm.
    peers : str, optional
        Which peer each placement matches, for the one-line help.

    Returns
    -------
    Hyper
        A structural boolean: the placement changes the graph.
    """
    return Hyper("regularizer_in_root", default,
                 f"add rms_regularizer {where} (True) or to the root after it (False)"
                 + (f"; {peers}" if peers else ""),
                 kind=bool, structural=True)


def root_plus_epsilon(x, epsilon, inside):
    r"""The normaliser :math:`\sqrt{x + \epsilon}` or :math:`\sqrt{x} + \epsilon`.

    Parameters
    ----------
    x : pytensor Variable
        The average or sum of squares.
    epsilon : pytensor Variable
        The regulariser :math:`\epsilon`.
    inside : bool
        Whether :math:`\epsilon` goes under the root.

    Returns
    -------
    pytensor Variable
    """
    return pt.sqrt(x + epsilon) if inside else pt.sqrt(x) + epsilon


def redeclared(name, default, doc=None):
    """A common hyperparameter's declaration with another default (and doc line).

    Parameters
    ----------
    name : str
        A name of :data:`downhill.hyperparams.COMMON`, e.g. ``"momentum"``.
    default : object
        The rule's default.
    doc : str, optional
        The rule's one-line description, if it differs.

    Returns
    -------
    Hyper
        A copy of the common declaration; put it in the rule's ``HYPERS``,
        where it replaces the common one.
    """
    hyper = copy.copy(next(h for h in COMMON if h.name == name))
    hyper.default = default
    if doc is not None:
        hyper.doc = doc
    return hyper
