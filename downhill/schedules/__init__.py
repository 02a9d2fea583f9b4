r"""Schedules: hyperparameter values that change with the update count.

A schedule is a callable ``f(update_count) -> float``, where
``update_count`` is the number of updates (mini-batches) done so far: 0
before the first update. Every numeric hyperparameter of the update graph
takes one (``learning_rate``, ``momentum``, ``weight_decay``, a half-life,
a clipping limit, epsilon); its range is checked as for a number.

**Graph schedules.** The classes here, except :class:`ReduceOnPlateau`,
write their formula once, for Python numbers and PyTensor expressions
alike (:meth:`~downhill.schedules.Schedule._formula`). The optimizer builds it into the update
graph as an expression of its update counter, which the compiled step
advances itself, so the step computes the value: in
:meth:`~downhill.Optimizer.iterate`, in
:meth:`~downhill.Optimizer.get_updates` and your own compiled function, in
:func:`downhill.updates` for ``pm.fit``, in JAX mode and over devices.
``schedule(n)`` in Python and the graph give the same value, to rounding
in float64. The schedule's numbers live in shared scalars: a new schedule
of the same form (a new peak, a new half-life) compiles nothing.

**Python schedules.** :class:`ReduceOnPlateau` follows the validation loss,
which only :meth:`~downhill.Optimizer.iterate` (and ``minimize``) see: it
listens through its :meth:`~ReduceOnPlateau.observe` method, which the
training loop calls after every validation. A plain function works in
``iterate`` too, evaluated in Python before every update::

    opt.iterate(train, learning_rate=lambda n: 0.1 / (1 + n / 1000))

Neither can apply inside a graph that runs without downhill's loop:
``get_updates`` and ``downhill.updates`` refuse them with a message saying
so (inside ``pm.fit``, change a value from a callback instead).

The classes also give validated arguments, a readable ``repr`` for the
logs, the range of their values (:meth:`Schedule.bounds`, checked against
the hyperparameter's range when the schedule is given), and
``state_dict()`` / ``load_state_dict()`` so a checkpoint can save a
schedule's own state (only :class:`ReduceOnPlateau` has one; a graph
schedule's position is the optimizer's update counter, which a checkpoint
saves).

============================  ==========================================
schedule                      value after :math:`n` updates
============================  ==========================================
:class:`Constant`             :math:`a`
:class:`Linear`               :math:`a_0 + (a_1 - a_0) \min(n, k) / k`
:class:`StepDecay`            :math:`a_0 \, f^{\lfloor n / k \rfloor}`
:class:`ExponentialDecay`     :math:`\max(a_0 \, 2^{-n / h}, a_{min})`
:class:`CosineWithWarmup`     linear rise over :math:`w`, then a cosine
:class:`Sequence`             one schedule after another, each from 0
:class:`ReduceOnPlateau`      :math:`a_0 \, f^{r}` after :math:`r` plateaus
============================  ==========================================

A linear warm-up before any schedule is a :class:`Sequence`::

    Sequence([Linear(0.0, 1e-3, steps=100), ExponentialDecay(1e-3, halflife=500)],
             boundaries=[100])

A new graph schedule subclasses :class:`Schedule` and implements
``_formula(n, p, ops)`` with the operations of ``ops`` (see
:meth:`~downhill.schedules.Schedule._formula`), ``_breaks()`` and ``_limit()`` for its range,
and lists its numbers in ``_NUMBERS``.
"""

from .base import PYTHON, Schedule
from .plateau import ReduceOnPlateau
from .ready import Constant, CosineWithWarmup, ExponentialDecay, Linear, Sequence, StepDecay

__all__ = [
    "Schedule", "Constant", "Linear", "StepDecay", "ExponentialDecay", "CosineWithWarmup",
    "Sequence", "ReduceOnPlateau", "PYTHON",
]
