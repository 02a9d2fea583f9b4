r"""Rules that wrap another rule: Lookahead.

``build("lookahead", loss, inner="adam", ...)`` makes an optimizer of the
class ``LookaheadAdam``, made once per inner rule: :class:`Lookahead`'s
synchronisation on top of the inner rule's step (its ``_step``, state and
hyperparameters, which it takes as its own). The result is one optimizer
like any other: one step graph, one state to save and resume, JAX mode.
"""

import numpy as np
import pytensor.tensor as pt

from ..base import Optimizer
from ..hyperparams import Hyper
from ..registry import ALGORITHMS, register
from ..util import as_float, close_names

__all__ = ["Lookahead"]

#: Rules Lookahead does not wrap: itself, and those with an evaluation point
#: of their own (Schedule-Free's average).
_NOT_WRAPPED = ("lookahead", "schedule_free_sgd", "schedule_free_adamw")


class _RuleName(Hyper):
    """The declaration of ``inner``: a registered rule's name, read when checked."""

    @property
    def choices(self):
        return tuple(sorted(name for name in ALGORITHMS if name not in _NOT_WRAPPED))

    @choices.setter
    def choices(self, value):
        pass  # the registry decides

    def range_text(self):
        return "a rule's name (downhill algorithms)"

    def validate(self, value):
        if isinstance(value, str) and value.lower() in self.choices:
            return value.lower()
        close = close_names(str(value).lower(), self.choices, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"invalid {self.name}: {value!r} (must be one of "
                         f"{', '.join(map(repr, self.choices))}{hint})")


@register
class Lookahead(Optimizer):
    r"""Lookahead: k fast steps of another rule, then one slow step towards them.

    Parameters
    ----------
    inner : str, default 'adam'
        The rule that makes the fast steps: a name of the registry (not
        ``lookahead`` or a Schedule-Free rule). Chosen when the optimizer is
        built (``build("lookahead", loss, inner="sgd")``); its
        hyperparameters are this optimizer's too.
    sync_period : int, default 5
        :math:`k`, fast steps between two synchronisations (>= 1).
    slow_step_size : float, default 0.5
        :math:`\alpha`, how far the slow weights move towards the fast ones
        (0 < x <= 1).
    loss, params, inputs, updates, monitors, monitor_gradients, mode
        As for :class:`~downhill.Optimizer`.
    **hyperparameters
        Also defaults for the inner rule's hyperparameters and the common
        ones (``learning_rate``, ``momentum``, ...), listed by
        :meth:`~downhill.Optimizer.hyperparameters` and ``downhill
        algorithms``.

    Notes
    -----
    Zhang et al. (2019), Algorithm 1. The parameter holds the fast weights
    :math:`\theta`, which the inner rule moves (its step, momentum and
    weight decay) to :math:`\theta'`; the slow weights :math:`\phi` follow
    every :math:`k`-th step, and the fast ones restart from them. With
    :math:`s` the fast steps since the last synchronisation:

    .. math::
        s &\leftarrow s + 1 \\
        \phi &\leftarrow \begin{cases} \phi + \alpha (\theta' - \phi) & s = k
            \\ \phi & \text{otherwise} \end{cases} \\
        \theta &\leftarrow \begin{cases} \phi & s = k \\ \theta' &
            \text{otherwise} \end{cases}

    and :math:`s \leftarrow 0` after a synchronisation. :math:`\phi` starts
    at the parameter's value (at the first step of every cycle it equals
    :math:`\theta`). The inner rule's state (Adam's averages and step
    counter) carries on across synchronisations, as in the paper's
    experiments; the paper's :math:`k = 5`, :math:`\alpha = 0.5` are the
    defaults. With :math:`k = 1`, Lookahead of SGD is SGD with the
    learning rate :math:`\alpha` times smaller.

    Validation, early stopping and the best parameters read the slow weights
    (the optimizer's evaluation point, see :mod:`downhill.averaging`),
    which Algorithm 1 returns; ``validate_on='average'`` reads the average
    of ``average=...`` instead. At the end of a run the parameters hold the
    best validated slow weights (``final_params='last'`` leaves the fast
    ones), and a later :meth:`~downhill.Optimizer.iterate` makes its fast
    steps from the values in place.

    Symbols in the code: :math:`\theta` is the parameter, :math:`\theta'`
    ``new``, :math:`\phi` the state ``NAME_slow``, :math:`s` the
    optimizer-wide state ``lookahead_steps``; :math:`k` and :math:`\alpha`
    the shared scalars ``sync_period`` and ``slow_step_size``.

    .. warning::
        Checked step by step (``tests/test_oracles.py``):
        ``optax.lookahead(fast, sync_period=k, slow_step_size=a)`` with the
        optax counterpart ``fast`` of an inner rule is
        ``build("lookahead", loss, inner=..., sync_period=k,
        slow_step_size=a)`` with that rule's mapping: its ``fast`` parameters
        are our parameters, its ``slow`` ones our ``NAME_slow``. optax's
        ``reset_state=True`` (restarting the inner state at every
        synchronisation) has no counterpart. torch.optim has no Lookahead.

    References
    ----------
    .. [1] M. R. Zhang, J. Lucas, G. Hinton and J. Ba (2019). Lookahead
       optimizer: k steps forward, 1 step back. NeurIPS; arXiv:1907.08610,
       Algorithm 1.
    """

    HYPERS = (
        _RuleName("inner", "adam", "the rule making the fast steps, chosen when the optimizer "
                  "is built", kind=str, structural=True),
        Hyper("sync_period", 5, "k, fast steps between synchronisations",
              kind=int, low=1, shared="sync_period"),
        Hyper("slow_step_size", 0.5, "alpha, how far the slow weights move towards the fast",
              low=0, high=1, low_open=True, shared="slow_step_size"),
    )

    #: The rule this class wraps (set on each class :meth:`wrapping` makes).
    _inner = None
    _classes = {}

    @classmethod
    def wrapping(cls, inner):
        """The class of Lookahead around a rule, made on first use.

        Parameters
        ----------
        inner : str
            A registered rule's name (case-insensitive).

        Returns
        -------
        type
            A subclass of :class:`Lookahead` and of the rule's class.

        Raises
        ------
        ValueError
            If no rule Lookahead can wrap has that name.
        """
        name = Lookahead.HYPERS[0].validate(inner)
        rule = ALGORITHMS[name]
        if rule not in Lookahead._classes:
            Lookahead._classes[rule] = type(
                f"Lookahead{rule.__name__}", (Lookahead, rule),
                {"__module__": __name__, "_inner": name, "__doc__": Lookahead.__doc__})
        return Lookahead._classes[rule]

    def __new__(cls, *args, **kwargs):
        if cls._inner is None:
            cls = cls.wrapping(kwargs.get("inner", Lookahead.HYPERS[0].default))
        return super().__new__(cls)

    def _configure(self, given):
        inner = given.get("inner", self._inner)
        if isinstance(inner, str) and inner.lower() != self._inner:
            raise ValueError(
                f"invalid inner: {inner!r} (this optimizer wraps {self._inner!r}; the inner "
                f"rule is chosen when it is built: build('lookahead', loss, inner={inner!r}))")
        return super()._configure(given)

    def _global_updates(self):
        updates = list(super()._global_updates())
        steps = self._global_state("lookahead_steps")
        after = steps + 1
        period = self._hyper("sync_period", pt.zeros((), self._dtype))
        self._sync = pt.ge(as_float(after, self._dtype), period)
        self._cycle_start = pt.eq(steps, 0)
        return updates + [(steps, pt.switch(self._sync, 0, after))]

    def _after_step(self, param, new):
        new, state = super()._after_step(param, new)
        slow = self._state_like(param, "slow", np.array(param.get_value()))
        start = pt.switch(self._cycle_start, param, slow)
        alpha = self._hyper("slow_step_size", param)
        slow_new = pt.switch(self._sync, start + alpha * (new - start), start)
        return pt.switch(self._sync, slow_new, new), state + [(slow, slow_new)]

    def _evaluation_point(self):
        if self._values["validate_on"] == "average":
            return super()._evaluation_point()
        return [self._state_like(p, "slow", np.array(p.get_value())) for p in self._params]
