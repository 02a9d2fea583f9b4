"""What several algorithm families share: the optimizer-wide step counter.

Bias corrections (Adam and its variants), a ring buffer's position
(``adagrad_window``) and schedules inside a rule all need the number of
the step being made; :class:`StepCounter` keeps it once per optimizer, not
once per parameter, and saves it with the rest of the state.
"""

from ..util import as_float

__all__ = ["StepCounter"]


class StepCounter:
    """Mixin of an :class:`~downhill.Optimizer` subclass: the step counter ``t``.

    Put it before :class:`~downhill.Optimizer` among the bases
    (``class Adam(StepCounter, Optimizer)``). It adds the optimizer-wide
    state scalar ``t`` (int64, the number of steps made, saved and restored
    with the rest of the state) and its update :math:`t \\leftarrow t + 1`,
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
