"""The schedule that follows the validation loss: :class:`ReduceOnPlateau`.

It runs in Python only: the training loop tells it every validation loss
and writes its value after each validation.
"""

import math
import numbers

from .base import Schedule, _check, _check_keys

__all__ = ["ReduceOnPlateau"]


class ReduceOnPlateau(Schedule):
    r"""Reduce the value when the validation loss stops improving.

    Parameters
    ----------
    initial : float
        :math:`a_0`, the starting value (> 0).
    factor : float, default 0.1
        :math:`f`, the multiplier applied at each reduction (0 < f < 1).
    patience : int, default 5
        Validations without improvement tolerated; the next one without
        improvement reduces the value (>= 0).
    min_improvement : float, default 0
        :math:`\rho`, the relative decrease of the loss that counts as an
        improvement (>= 0).
    min_value : float, default 0
        :math:`a_{min}`, the floor of the value (0 <= min_value <= initial).

    Notes
    -----
    The training loop calls :meth:`observe` with the loss after every
    validation. A loss :math:`L` improves on the best loss so far
    :math:`L^*` when

    .. math::
        L^* - L > |L^*| \, \rho

    (the rule of the optimizer's early stopping; the first finite loss always
    improves, and the absolute value keeps the rule right for negative
    losses). Each validation without improvement adds one to a counter
    :math:`c`; an improvement resets it. When :math:`c` exceeds
    ``patience``, the value is reduced and :math:`c` restarts at 0:

    .. math::
        a \leftarrow \max(f \, a, a_{min})

    A non-finite loss never counts as an improvement. Calling the schedule
    returns the current value whatever the update count.

    The optimizer's own ``patience`` stops training after that many
    validations without improvement; give it a larger value than this
    schedule's, or training ends before the value is ever reduced.

    The state saved by :meth:`state_dict` is the current value, the best
    loss (``inf`` before the first validation), the counter and the number
    of reductions so far.

    Examples
    --------
    >>> from downhill.schedules import ReduceOnPlateau
    >>> s = ReduceOnPlateau(0.1, factor=0.5, patience=1)
    >>> [s.observe(loss) for loss in [3.0, 2.0, 2.5, 2.1]]
    [False, False, False, True]
    >>> s(0)
    0.05
    """

    _ARGS = ("initial", "factor", "patience", "min_improvement", "min_value")
    _PYTHON_ONLY = True
    per_update = False
    _STATE = ("value", "best", "fails", "reductions")

    def __init__(self, initial, factor=0.1, patience=5, min_improvement=0.0, min_value=0.0):
        name = type(self).__name__
        self.initial = _check(name, "initial", initial, low=0, low_open=True)
        self.factor = _check(name, "factor", factor, low=0, high=1, low_open=True,
                             high_open=True)
        self.patience = _check(name, "patience", patience, kind=int, low=0)
        self.min_improvement = _check(name, "min_improvement", min_improvement, low=0)
        self.min_value = _check(name, "min_value", min_value, low=0, high=self.initial)
        self._value = self.initial
        self.best = math.inf
        self.fails = 0
        self.reductions = 0

    def _at(self, n):
        return self._value

    def bounds(self, stop=None):
        """The range of the value: from ``min_value`` to ``initial``.

        Parameters
        ----------
        stop : int, optional
            Unused: the value depends on validations, not updates.

        Returns
        -------
        (float, float)
        """
        return self.min_value, self.initial

    def observe(self, loss):
        """Take the loss of one validation into account.

        Parameters
        ----------
        loss : float
            The validation loss.

        Returns
        -------
        bool
            Whether this validation reduced the value.
        """
        loss = float(loss)
        best = self.best
        if math.isfinite(loss) and (
                not math.isfinite(best) or best - loss > abs(best) * self.min_improvement):
            self.best = loss
            self.fails = 0
            return False
        self.fails += 1
        if self.fails <= self.patience:
            return False
        self.fails = 0
        self.reductions += 1
        self._value = max(self._value * self.factor, self.min_value)
        return True

    def state_dict(self):
        """The current value, best loss, validations without improvement, reductions.

        Returns
        -------
        dict
            ``value``, ``best``, ``fails`` and ``reductions``.
        """
        return {"value": self._value, "best": self.best, "fails": self.fails,
                "reductions": self.reductions}

    def load_state_dict(self, state):
        """Restore the state saved by :meth:`state_dict`.

        Parameters
        ----------
        state : dict
            What :meth:`state_dict` returned: ``value``, ``best``, ``fails``
            and ``reductions``.

        Raises
        ------
        ValueError
            If a key is missing or unexpected, or a value is invalid; the
            schedule is then left unchanged.
        """
        name = type(self).__name__
        _check_keys(name, state, self._STATE)
        value = _check(name, "value", _number(state["value"]),
                       low=self.min_value, high=self.initial)
        best = _number(state["best"])
        if not isinstance(best, numbers.Real) or math.isnan(best) or best == -math.inf:
            raise ValueError(f"{name}: invalid best: {best!r} (must be a number or inf)")
        fails = _check(name, "fails", _number(state["fails"]), kind=int, low=0)
        reductions = _check(name, "reductions", _number(state["reductions"]), kind=int, low=0)
        self._value, self.best, self.fails, self.reductions = value, float(best), fails, reductions


def _number(x):
    """Unwrap a 0-d numpy array (as read back from a .npz) into a scalar."""
    if hasattr(x, "item") and getattr(x, "shape", None) == ():
        return x.item()
    return x
