"""The ready graph schedules: :class:`Constant`, :class:`Linear`,
:class:`StepDecay`, :class:`ExponentialDecay`, :class:`CosineWithWarmup` and
:class:`Sequence`, which joins them. Each writes its formula once, for Python
numbers and PyTensor expressions alike (see :class:`~downhill.schedules.Schedule`).
"""

import math

from .base import Schedule, _check

__all__ = ["Constant", "Linear", "StepDecay", "ExponentialDecay", "CosineWithWarmup",
           "Sequence"]


class Constant(Schedule):
    r"""The same value at every update.

    Parameters
    ----------
    value : float
        :math:`a`, any finite number (the hyperparameter checks its range).

    Notes
    -----
    .. math::
        a(n) = a

    Useful as a part of a :class:`Sequence` (a constant phase), or to give
    a hyperparameter a shared scalar of its own in a graph.

    Examples
    --------
    >>> from downhill.schedules import Constant
    >>> Constant(0.01)(0), Constant(0.01)(10 ** 6)
    (0.01, 0.01)
    """

    _ARGS = _NUMBERS = ("value",)

    def __init__(self, value):
        self.value = _check(type(self).__name__, "value", value)

    def _formula(self, n, p, ops):
        return p.value

    def _breaks(self):
        return [0]

    def _limit(self):
        return self.value


class Linear(Schedule):
    r"""A straight line from one value to another over so many updates, then constant.

    Parameters
    ----------
    start : float
        :math:`a_0`, the value before the first update.
    end : float
        :math:`a_1`, the value from update :math:`k` on.
    steps : int
        :math:`k`, the updates the change takes (>= 1).

    Notes
    -----
    After :math:`n` updates the value is

    .. math::
        a(n) = \begin{cases}
            a_0 + (a_1 - a_0)\, n / k & n < k \\
            a_1 & n \ge k
        \end{cases}

    so both ends are exact. ``Linear(0, peak, w)`` is a linear warm-up; put
    it before another schedule with a :class:`Sequence`. This is
    ``optax.linear_schedule(start, end, steps)`` and
    ``torch.optim.lr_scheduler.LinearLR`` (whose factors multiply a base
    rate) stepped once per update.

    Examples
    --------
    >>> from downhill.schedules import Linear
    >>> s = Linear(0.0, 1.0, steps=4)
    >>> [s(n) for n in range(6)]
    [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    """

    _ARGS = _NUMBERS = ("start", "end", "steps")

    def __init__(self, start, end, steps):
        name = type(self).__name__
        self.start = _check(name, "start", start)
        self.end = _check(name, "end", end)
        self.steps = _check(name, "steps", steps, kind=int, low=1)

    def _formula(self, n, p, ops):
        return ops.where(n >= p.steps, p.end, p.start + (p.end - p.start) * n / p.steps)

    def _breaks(self):
        return [0, self.steps]

    def _limit(self):
        return self.end


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

    _ARGS = _NUMBERS = ("initial", "factor", "every")

    def __init__(self, initial, factor, every):
        name = type(self).__name__
        self.initial = _check(name, "initial", initial, low=0, low_open=True)
        self.factor = _check(name, "factor", factor, low=0, high=1, low_open=True)
        self.every = _check(name, "every", every, kind=int, low=1)

    def _formula(self, n, p, ops):
        return p.initial * p.factor ** ops.float(ops.floor_div(n, p.every))

    def _breaks(self):
        return [0]

    def _limit(self):
        return 0.0 if self.factor < 1 else self.initial


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

    _ARGS = _NUMBERS = ("initial", "halflife", "min_value")

    def __init__(self, initial, halflife, min_value=0.0):
        name = type(self).__name__
        self.initial = _check(name, "initial", initial, low=0, low_open=True)
        self.halflife = _check(name, "halflife", halflife, low=0, low_open=True)
        self.min_value = _check(name, "min_value", min_value, low=0, high=self.initial)

    def _formula(self, n, p, ops):
        return ops.maximum(p.initial * 2.0 ** (-n / p.halflife), p.min_value)

    def _breaks(self):
        return [0]

    def _limit(self):
        return self.min_value


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

    _ARGS = _NUMBERS = ("peak", "warmup", "total", "final")

    def __init__(self, peak, warmup, total, final=0.0):
        name = type(self).__name__
        self.peak = _check(name, "peak", peak, low=0, low_open=True)
        self.warmup = _check(name, "warmup", warmup, kind=int, low=0)
        self.total = _check(name, "total", total, kind=int, low=self.warmup, low_open=True)
        self.final = _check(name, "final", final, low=0, high=self.peak)

    def _formula(self, n, p, ops):
        rise = p.peak * n / ops.maximum(p.warmup, 1)  # warmup 0: never used
        progress = (n - p.warmup) / (p.total - p.warmup)
        fall = p.final + 0.5 * (p.peak - p.final) * (1 + ops.cos(ops.pi * progress))
        return ops.where(n < p.warmup, rise, ops.where(n >= p.total, p.final, fall))

    def _breaks(self):
        return [0, self.warmup, self.total]

    def _limit(self):
        return self.final


class Sequence(Schedule):
    r"""Schedules one after another, each counting its updates from 0.

    Parameters
    ----------
    schedules : list of Schedule
        The graph schedules (any class here but :class:`ReduceOnPlateau`),
        in order.
    boundaries : list of int
        The update counts at which the next schedule takes over: one fewer
        than ``schedules``, ascending, each >= 1.

    Notes
    -----
    With boundaries :math:`b_1 < \dots < b_{m-1}` (and :math:`b_0 = 0`),
    schedule :math:`i` gives the value for
    :math:`b_i \le n < b_{i+1}`, evaluated at :math:`n - b_i`:

    .. math::
        a(n) = a_i(n - b_i), \qquad b_i \le n < b_{i+1}

    This is ``optax.join_schedules(schedules, boundaries)`` and
    ``torch.optim.lr_scheduler.SequentialLR(schedulers, milestones)`` stepped
    once per update.

    Examples
    --------
    A linear warm-up over 100 updates, then a step decay:

    >>> from downhill.schedules import Linear, Sequence, StepDecay
    >>> s = Sequence([Linear(0.0, 0.1, steps=100), StepDecay(0.1, 0.5, every=1000)],
    ...              boundaries=[100])
    >>> s(0), s(50), s(100), s(1099), s(1100)
    (0.0, 0.05, 0.1, 0.1, 0.05)
    """

    _ARGS = ("schedules", "boundaries")
    _NUMBERS = ("boundaries",)
    _PARTS = "schedules"

    def __init__(self, schedules, boundaries):
        name = type(self).__name__
        if isinstance(schedules, Schedule) or not isinstance(schedules, (list, tuple)):
            raise ValueError(f"{name}: schedules must be a list of schedules, got {schedules!r}")
        for s in schedules:
            if not (isinstance(s, Schedule) and s.in_graph):
                raise ValueError(
                    f"{name}: invalid part {s!r} (must be a graph schedule: Constant, Linear, "
                    "StepDecay, ExponentialDecay, CosineWithWarmup or Sequence)")
        if not schedules:
            raise ValueError(f"{name}: schedules is empty; give at least one schedule")
        if not isinstance(boundaries, (list, tuple)) or len(boundaries) != len(schedules) - 1:
            raise ValueError(
                f"{name}: invalid boundaries: {boundaries!r} (must be a list of "
                f"{len(schedules) - 1} update counts, one fewer than the schedules)")
        previous = 0
        checked = []
        for b in boundaries:
            b = _check(name, "boundary", b, kind=int, low=previous, low_open=True)
            checked.append(b)
            previous = b
        self.schedules = list(schedules)
        self.boundaries = checked

    def _formula(self, n, p, ops):
        pieces = [lambda m, s=s, q=q: s._formula(m, q, ops)
                  for s, q in zip(self.schedules, p.schedules)]
        return ops.piecewise(n, [0, *p.boundaries], pieces)

    def _breaks(self):
        return [0, *self.boundaries]

    def bounds(self, stop=None):
        """The smallest and the largest value over every part's updates.

        Parameters
        ----------
        stop : int, optional
            Only over the update counts ``0 .. stop - 1``.

        Returns
        -------
        (float, float) or None
            None when a part cannot tell.
        """
        starts = [0, *self.boundaries]
        ends = [*self.boundaries, None]
        low, high = math.inf, -math.inf
        for part, start, end in zip(self.schedules, starts, ends):
            if stop is not None and start >= stop:
                break
            length = None if end is None else end - start
            if stop is not None:
                length = stop - start if length is None else min(length, stop - start)
            found = part.bounds(length)
            if found is None:
                return None
            low, high = min(low, found[0]), max(high, found[1])
        return low, high


