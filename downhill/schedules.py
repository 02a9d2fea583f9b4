r"""Ready schedules for the learning rate and the momentum.

A schedule is any callable ``f(update_count) -> float``, where
``update_count`` is the number of updates (mini-batches) done so far: 0
before the first update. The training loop evaluates it before every update
and writes the value into the hyperparameter's shared scalar, so a schedule
never causes a recompilation. Plain functions work too::

    opt.iterate(train, learning_rate=lambda n: 0.1 / (1 + n / 1000))

The classes here add what a plain function cannot: validated arguments, a
readable ``repr`` for the logs, and ``state_dict()`` / ``load_state_dict()``
so a checkpoint can save a schedule and a resumed run continue it.
:class:`ReduceOnPlateau` also listens to the validation loss through its
:meth:`~ReduceOnPlateau.observe` method, which the training loop calls after
every validation.

============================  ==========================================
schedule                      value after :math:`n` updates
============================  ==========================================
:class:`StepDecay`            :math:`a_0 \, f^{\lfloor n / k \rfloor}`
:class:`ExponentialDecay`     :math:`\max(a_0 \, 2^{-n / h}, a_{min})`
:class:`CosineWithWarmup`     linear rise over :math:`w`, then a cosine
:class:`ReduceOnPlateau`      :math:`a_0 \, f^{r}` after :math:`r` plateaus
============================  ==========================================
"""

import math
import numbers

from .hyperparams import Hyper

__all__ = [
    "Schedule", "StepDecay", "ExponentialDecay", "CosineWithWarmup", "ReduceOnPlateau",
]


def _check(owner, name, value, **limits):
    """Validate one constructor argument with a :class:`~downhill.hyperparams.Hyper`.

    The message names the schedule, the argument, the value and the allowed
    range, e.g. ``StepDecay: invalid factor: 2 (must be 0 < x <= 1)``.
    """
    try:
        return Hyper(name, None, "", **limits).validate(value)
    except ValueError as error:
        raise ValueError(f"{owner}: {error}") from None


def _update_count(owner, n):
    """Check an update count: an integer >= 0."""
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 0:
        raise ValueError(f"{owner}: invalid update_count: {n!r} (must be an integer >= 0)")
    return int(n)


class Schedule:
    """Base class of the ready schedules.

    A subclass implements ``_at(n)``, the value after ``n`` updates; this class checks the update count
    and gives stateless schedules an empty state.
    """

    #: Names of the constructor arguments, shown by ``repr``.
    _ARGS = ()

    def __call__(self, update_count):
        """The value after ``update_count`` updates (an integer >= 0)."""
        return float(self._at(_update_count(type(self).__name__, update_count)))

    def _at(self, n):
        """The value after ``n`` updates; the hook each schedule implements."""
        raise NotImplementedError

    def __repr__(self):
        args = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._ARGS)
        return f"{type(self).__name__}({args})"

    def state_dict(self):
        """The schedule's mutable state: a plain dict of numbers.

        Returns
        -------
        dict of str to number
            Empty for a schedule that depends on the update count alone.
        """
        return {}

    def load_state_dict(self, state):
        """Restore the state saved by :meth:`state_dict`.

        Parameters
        ----------
        state : dict
            What :meth:`state_dict` returned.

        Raises
        ------
        ValueError
            If a key is missing or unexpected, or a value is invalid; the
            schedule is then left unchanged.
        """
        _check_keys(type(self).__name__, state, ())


def _check_keys(owner, state, keys):
    if not isinstance(state, dict):
        raise ValueError(f"{owner}: state must be a dict, got {type(state).__name__}")
    missing = [k for k in keys if k not in state]
    extra = sorted(str(k) for k in state if k not in keys)
    if missing:
        raise ValueError(f"{owner}: state lacks {', '.join(missing)}")
    if extra:
        raise ValueError(f"{owner}: unexpected state entries {', '.join(extra)}")


class StepDecay(Schedule):
    r"""Multiply the value by a constant factor every so many updates.

    Parameters
    ----------
    initial : float
        :math:`a_0`, the value before the first decay (> 0).
    factor : float
        :math:`f`, the multiplier applied at each step (0 < f <= 1).
    every : int
        :math:`k`, updates between two steps (>= 1).

    Notes
    -----
    After :math:`n` updates the value is

    .. math::
        a(n) = a_0 \, f^{\lfloor n / k \rfloor}

    so it is :math:`a_0` for updates 0 to :math:`k - 1`, :math:`a_0 f` for
    :math:`k` to :math:`2k - 1`, and so on. This is ``torch.optim.lr_scheduler.StepLR``
    with ``step_size=every, gamma=factor`` stepped once per update.

    Examples
    --------
    >>> from downhill.schedules import StepDecay
    >>> s = StepDecay(0.1, 0.5, every=100)
    >>> s(0), s(99), s(100), s(250)
    (0.1, 0.1, 0.05, 0.025)
    """

    _ARGS = ("initial", "factor", "every")

    def __init__(self, initial, factor, every):
        name = type(self).__name__
        self.initial = _check(name, "initial", initial, low=0, low_open=True)
        self.factor = _check(name, "factor", factor, low=0, high=1, low_open=True)
        self.every = _check(name, "every", every, kind=int, low=1)

    def _at(self, n):
        return self.initial * self.factor ** (n // self.every)


class ExponentialDecay(Schedule):
    r"""Halve the value every ``halflife`` updates, smoothly.

    Parameters
    ----------
    initial : float
        :math:`a_0`, the value before the first update (> 0).
    halflife : float
        :math:`h`, updates over which the value halves (> 0).
    min_value : float, default 0
        :math:`a_{min}`, a floor the value never falls below
        (0 <= min_value <= initial).

    Notes
    -----
    After :math:`n` updates the value is

    .. math::
        a(n) = \max\left(a_0 \, 2^{-n / h},\; a_{min}\right)
             = \max\left(a_0 \, \gamma^{n},\; a_{min}\right),
        \qquad \gamma = e^{-\ln 2 / h}

    .. warning::
        Like the rest of downhill (``rms_halflife``), this takes a half-life
        where ``torch.optim.lr_scheduler.ExponentialLR`` and Keras'
        ``ExponentialDecay`` take the per-step decay rate :math:`\gamma`:
        ``gamma = 2 ** (-1 / halflife)``, or ``halflife = -ln 2 / ln gamma``.

    Examples
    --------
    >>> from downhill.schedules import ExponentialDecay
    >>> s = ExponentialDecay(0.1, halflife=1000)
    >>> s(0), s(1000), s(3000)
    (0.1, 0.05, 0.0125)
    """

    _ARGS = ("initial", "halflife", "min_value")

    def __init__(self, initial, halflife, min_value=0.0):
        name = type(self).__name__
        self.initial = _check(name, "initial", initial, low=0, low_open=True)
        self.halflife = _check(name, "halflife", halflife, low=0, low_open=True)
        self.min_value = _check(name, "min_value", min_value, low=0, high=self.initial)

    def _at(self, n):
        return max(self.initial * 2.0 ** (-n / self.halflife), self.min_value)


class CosineWithWarmup(Schedule):
    r"""A linear warm-up to a peak, then a half cosine down to a final value.

    Parameters
    ----------
    peak : float
        :math:`a_{max}`, the value at the end of the warm-up (> 0).
    warmup : int
        :math:`w`, updates of linear warm-up from 0 (>= 0; 0 starts at the
        peak).
    total : int
        :math:`T`, the update count at which the cosine reaches ``final``
        (> warmup). The value stays at ``final`` afterwards.
    final : float, default 0
        :math:`a_{min}`, the value from update :math:`T` on
        (0 <= final <= peak).

    Notes
    -----
    After :math:`n` updates the value is

    .. math::
        a(n) = \begin{cases}
            a_{max} \, n / w & n < w \\
            a_{min} + \frac{1}{2} (a_{max} - a_{min})
                \left(1 + \cos\left(\pi \frac{n - w}{T - w}\right)\right)
                & w \le n < T \\
            a_{min} & n \ge T
        \end{cases}

    This is the warm-up plus cosine annealing of Loshchilov and Hutter
    (SGDR without restarts) and of Goyal et al.

    .. warning::
        With ``warmup > 0`` the first update (:math:`n = 0`) gets the value
        0: it changes no parameter but does update the algorithm's state
        (e.g. RMSProp's averages). This matches the formula above and
        ``transformers.get_cosine_schedule_with_warmup``.

    References
    ----------
    .. [1] I. Loshchilov and F. Hutter (2017). SGDR: Stochastic gradient
       descent with warm restarts. ICLR, eq. 5.
    .. [2] P. Goyal et al. (2017). Accurate, large minibatch SGD: training
       ImageNet in 1 hour. arXiv:1706.02677, section 2.2 (gradual warm-up).

    Examples
    --------
    >>> from downhill.schedules import CosineWithWarmup
    >>> s = CosineWithWarmup(0.1, warmup=100, total=1100)
    >>> s(0), s(50), s(100), s(600), s(1100), s(5000)
    (0.0, 0.05, 0.1, 0.05, 0.0, 0.0)
    """

    _ARGS = ("peak", "warmup", "total", "final")

    def __init__(self, peak, warmup, total, final=0.0):
        name = type(self).__name__
        self.peak = _check(name, "peak", peak, low=0, low_open=True)
        self.warmup = _check(name, "warmup", warmup, kind=int, low=0)
        self.total = _check(name, "total", total, kind=int, low=self.warmup, low_open=True)
        self.final = _check(name, "final", final, low=0, high=self.peak)

    def _at(self, n):
        if n < self.warmup:
            return self.peak * n / self.warmup
        if n >= self.total:
            return self.final
        progress = (n - self.warmup) / (self.total - self.warmup)
        return self.final + 0.5 * (self.peak - self.final) * (1 + math.cos(math.pi * progress))


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
