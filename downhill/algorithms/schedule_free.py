r"""Schedule-Free SGD and AdamW: an average of the iterates in place of a
decaying learning-rate schedule.

Defazio et al. (2024) keep two sequences per parameter: :math:`z`, the base
rule's iterates, and :math:`x`, their running average weighted by the step
sizes, which is the model to validate and keep. The gradient is taken at
an interpolation :math:`y` of the two, which is what the parameter holds
during training. Both rules make the parameter's whole new value
themselves (their weight decay acts inside :math:`z`'s step) and name
:math:`x` as their evaluation point (``Optimizer._evaluation_point``,
:mod:`downhill.averaging`): validation, early stopping and the best
parameters read it.
"""

import numpy as np
import pytensor.tensor as pt

from ..base import Optimizer
from ..hyperparams import Hyper
from ..registry import register
from ..util import as_float
from .common import BETAS, StepCounter

__all__ = ["ScheduleFreeSGD", "ScheduleFreeAdamW"]


class _ScheduleFree(StepCounter):
    """The sequences :math:`z`, :math:`x`, :math:`y` and the weights of the
    average, shared by both rules (a mixin before :class:`~downhill.Optimizer`)."""

    HYPERS = (
        Hyper("interpolation", 0.9, "beta: the gradient's point between z (0) and the "
              "average x (1)", low=0, high=1, shared="interpolation"),
        Hyper("weight_lr_power", 2.0, "x weighs each step by the largest step size so far "
              "to this power", low=0, shared="weight_lr_power"),
    )

    def _configure(self, given):
        values = dict(self._defaults)
        values.update(self._check_hypers(given))
        momentum = values["momentum"]
        if callable(momentum) or momentum != 0:
            raise ValueError(
                f"invalid momentum: {momentum!r} (must be 0: Schedule-Free's interpolation "
                "between z and x is its momentum; tune interpolation instead)")
        return super()._configure(given)

    def _step_size(self, dtype):
        """:math:`\\gamma_t`, the step size the average's weights come from."""
        return self._hyper("learning_rate", pt.zeros((), dtype))

    def _global_updates(self):
        updates = list(super()._global_updates())   # the step counter t
        dtype = self._dtype
        lr_max = self._global_state("lr_max", 0.0, dtype)
        total = self._global_state("weight_sum", 0.0, dtype)
        lr_max_new = pt.maximum(lr_max, self._step_size(dtype))
        weight = lr_max_new ** self._hyper("weight_lr_power", lr_max_new)
        total_new = total + weight
        zero = as_float(0, dtype)
        self._c = pt.switch(pt.gt(total_new, zero), weight / total_new, zero)
        self._first = pt.eq(self._t_next, 1)
        self._targets = {}
        return updates + [(lr_max, lr_max_new), (total, total_new)]

    def _decayed(self, param, direction):
        """The direction with the weight decay at :math:`y`, if it is on."""
        if self._values["weight_decay"] == 0:
            return direction
        return direction + self._hyper("weight_decay", param) * param

    def _averaged(self, param, step, state=()):
        """:math:`z`, :math:`x` and :math:`y` after a base step; ``(delta, state)``."""
        one = as_float(1, param.dtype)
        start = np.array(param.get_value())
        z = self._state_like(param, "z", start)
        x = self._state_like(param, "x", start)
        z_new = pt.switch(self._first, param, z) - step
        c = as_float(self._c, param.dtype)
        x_new = (one - c) * pt.switch(self._first, param, x) + c * z_new
        beta = self._hyper("interpolation", param)
        y_new = (one - beta) * z_new + beta * x_new
        self._targets[param] = y_new
        return param - y_new, [(z, z_new), (x, x_new)] + list(state)

    def _after_step(self, param, new):
        # y_new itself: the base's decay would act on y, Schedule-Free's acts in z
        return self._targets.pop(param), []

    def _evaluation_point(self):
        if self._values["validate_on"] == "average":
            return super()._evaluation_point()
        return [self._state_like(p, "x", np.array(p.get_value())) for p in self._params]


@register(name="schedule_free_sgd")
class ScheduleFreeSGD(_ScheduleFree, Optimizer):
    r"""Schedule-Free SGD: SGD steps, their average is the model.

    Parameters
    ----------
    interpolation : float, default 0.9
        :math:`\beta`: where the gradient is taken between :math:`z` (0) and
        :math:`x` (1) (0 <= x <= 1).
    weight_lr_power : float, default 2
        :math:`r`: each step's weight in the average is the largest step
        size so far to this power (>= 0).
    loss, params, inputs, updates, monitors, monitor_gradients, mode
        As for :class:`~downhill.Optimizer`.
    **hyperparameters
        Also defaults for the common hyperparameters (``learning_rate``,
        ``weight_decay``, clipping limits, early stopping, ``on_nonfinite``),
        listed with their ranges by :meth:`~downhill.Optimizer.hyperparameters`
        and ``downhill algorithms``.

    Notes
    -----
    Defazio et al. (2024), Section 2. With the learning rate
    :math:`\gamma_t` (a constant one does: no decaying schedule is needed)
    and the gradient :math:`g` at :math:`y`:

    .. math::
        z &\leftarrow z - \gamma_t (g + \lambda y) \\
        x &\leftarrow (1 - c_{t+1})\, x + c_{t+1} z \\
        y &\leftarrow (1 - \beta) z + \beta x

    :math:`\beta = 0` is Polyak-Ruppert averaging of SGD (gradients at
    :math:`z`), :math:`\beta = 1` primal averaging (gradients at the
    average).

    With ``weight_decay`` :math:`\lambda > 0`, :math:`\lambda y` is added to
    the direction of :math:`z`'s step, as in the paper (not to the
    parameter after the step, as for other rules). :math:`z` and :math:`x`
    start at the parameter's value at the first step (:math:`y_1 = z_1 =
    x_1`), and the weight of :math:`z_{t+1}` in the average is

    .. math::
        c_{t+1} = \frac{\bar\gamma_t^{\,r}}{\sum_{i \le t} \bar\gamma_i^{\,r}},
        \qquad \bar\gamma_t = \max_{i \le t} \gamma_i

    with :math:`r` = ``weight_lr_power`` (the paper's :math:`\gamma_t^2`
    weights, and its code's running maximum, so that a learning rate that
    warms up gives the first steps little weight: warm up with a
    ``learning_rate`` schedule, e.g. ``CosineWithWarmup(peak, warmup=w,
    total=w + 1, final=peak)``, and keep it constant after).

    Training moves :math:`y`; validation, early stopping and the best
    parameters read :math:`x` (``validate_on='average'`` reads the average
    of ``average=...`` instead), and at the end the parameters hold the best
    validated :math:`x` (``final_params='last'`` leaves the last :math:`y`).
    A later :meth:`~downhill.Optimizer.iterate` takes its first gradient at
    the values in place and carries on from its :math:`z` and :math:`x`.
    ``momentum`` must be 0: the interpolation is the momentum.

    Symbols in the code: :math:`y` is the parameter, :math:`z` and :math:`x`
    the states ``NAME_z`` and ``NAME_x``, :math:`\bar\gamma_t` and the sum of
    the weights the optimizer-wide states ``lr_max`` and ``weight_sum``,
    :math:`c_{t+1}` ``c``, :math:`\beta`, :math:`r`, :math:`\gamma_t`,
    :math:`\lambda` the shared scalars ``interpolation``,
    ``weight_lr_power``, ``learning_rate``, ``weight_decay``.

    .. warning::
        Checked step by step (``tests/test_oracles.py``):
        ``optax.contrib.schedule_free_sgd(a, b1=b, weight_decay=d,
        weight_lr_power=r)`` is ``ScheduleFreeSGD(learning_rate=a,
        interpolation=b, weight_decay=d, weight_lr_power=r)`` with a
        constant learning rate, clipping through ``optax.clip`` before its
        base rule; ``optax.contrib.schedule_free_eval_params`` gives our
        :math:`x`. optax keeps :math:`z` only and recomputes :math:`x` from
        :math:`y`, so it needs :math:`\beta > 0`. Its ``warmup_steps``
        differ from a warm-up schedule here: optax weighs each step in the
        average by the *next* step's learning rate (the average's counter
        starts at 1, the base rule's at 0), so its first step moves nothing
        and has all the weight. torch.optim has no Schedule-Free rule.

    References
    ----------
    .. [1] A. Defazio, X. Yang, H. Mehta, K. Mishchenko, A. Khaled and
       A. Cutkosky (2024). The road less scheduled. NeurIPS;
       arXiv:2405.15682, Section 2 and Algorithm 1.
    """

    def _step(self, param, grad):
        lr = self._hyper("learning_rate", param)
        return self._averaged(param, lr * self._decayed(param, grad))


@register(name="schedule_free_adamw")
class ScheduleFreeAdamW(_ScheduleFree, Optimizer):
    r"""Schedule-Free AdamW: Adam's normalised steps without a first moment,
    their average is the model.

    Parameters
    ----------
    interpolation : float, default 0.9
        :math:`\beta`, the paper's :math:`\beta_1`: where the gradient is
        taken between :math:`z` (0) and :math:`x` (1) (0 <= x <= 1).
    beta2_halflife : float, default 69
        Half-life, in updates, of the average of the squared gradient
        (> 0); :math:`\beta_2 \approx 0.990` (the paper's 0.999 is
        ``beta2_halflife=693``).
    rms_regularizer : float, default 1e-8
        :math:`\epsilon`, added to the square root (>= 0).
    corrected_lr : bool, default True
        Put Adam's bias correction into the step size, :math:`\gamma_t =
        \alpha \sqrt{1 - \beta_2^t}` (True, the paper's Algorithm 1; it also
        lowers the first steps' weights in the average), or divide
        :math:`v` by :math:`1 - \beta_2^t` (False, optax's form).
    weight_lr_power : float, default 2
        :math:`r`: each step's weight in the average is the largest step
        size so far to this power (>= 0).
    loss, params, inputs, updates, monitors, monitor_gradients, mode
        As for :class:`~downhill.Optimizer`.
    **hyperparameters
        Also defaults for the common hyperparameters (``learning_rate``,
        ``weight_decay``, clipping limits, early stopping, ``on_nonfinite``),
        listed with their ranges by :meth:`~downhill.Optimizer.hyperparameters`
        and ``downhill algorithms``.

    Notes
    -----
    Defazio et al. (2024), Algorithm 1. With the learning rate :math:`\alpha`
    and the gradient :math:`g` at :math:`y`:

    .. math::
        t &\leftarrow t + 1 \\
        v &\leftarrow \beta_2 v + (1 - \beta_2)\, g^2 \\
        \gamma_t &= \alpha \sqrt{1 - \beta_2^t} \\
        z &\leftarrow z - \gamma_t \left(\frac{g}{\sqrt v + \epsilon}
             + \lambda y\right) \\
        x &\leftarrow (1 - c_{t+1})\, x + c_{t+1} z \\
        y &\leftarrow (1 - \beta) z + \beta x

    With ``corrected_lr=False``, :math:`\gamma_t = \alpha` and
    :math:`z \leftarrow z - \alpha (g / (\sqrt{v / (1 - \beta_2^t)} +
    \epsilon) + \lambda y)`.

    With ``weight_decay`` :math:`\lambda > 0`, :math:`\lambda y` is added to
    the direction of :math:`z`'s step, as in the paper (not to the
    parameter after the step, as for other rules). :math:`z` and :math:`x`
    start at the parameter's value at the first step (:math:`y_1 = z_1 =
    x_1`), and the weight of :math:`z_{t+1}` in the average is

    .. math::
        c_{t+1} = \frac{\bar\gamma_t^{\,r}}{\sum_{i \le t} \bar\gamma_i^{\,r}},
        \qquad \bar\gamma_t = \max_{i \le t} \gamma_i

    with :math:`r` = ``weight_lr_power`` (the paper's :math:`\gamma_t^2`
    weights, and its code's running maximum, so that a learning rate that
    warms up gives the first steps little weight: warm up with a
    ``learning_rate`` schedule, e.g. ``CosineWithWarmup(peak, warmup=w,
    total=w + 1, final=peak)``, and keep it constant after).

    Training moves :math:`y`; validation, early stopping and the best
    parameters read :math:`x` (``validate_on='average'`` reads the average
    of ``average=...`` instead), and at the end the parameters hold the best
    validated :math:`x` (``final_params='last'`` leaves the last :math:`y`).
    A later :meth:`~downhill.Optimizer.iterate` takes its first gradient at
    the values in place and carries on from its :math:`z` and :math:`x`.
    ``momentum`` must be 0: the interpolation is the momentum.

    Symbols in the code: :math:`y` is the parameter, :math:`z`, :math:`x`,
    :math:`v` the states ``NAME_z``, ``NAME_x``, ``NAME_g2_ewma``,
    :math:`t` the optimizer-wide ``t``, :math:`\bar\gamma_t` and the sum of
    the weights ``lr_max`` and ``weight_sum``, :math:`c_{t+1}` ``c``;
    :math:`\beta`, :math:`\beta_2`, :math:`\epsilon`, :math:`r`,
    :math:`\alpha`, :math:`\lambda` the shared scalars ``interpolation``,
    ``beta2``, ``epsilon``, ``weight_lr_power``, ``learning_rate``,
    ``weight_decay``.

    .. warning::
        We take a half-life, not a decay rate (:math:`\beta_2 = e^{-\ln 2 /
        h}`). Checked step by step (``tests/test_oracles.py``):
        ``optax.contrib.schedule_free_adamw(a, b1=b, b2=b2, eps=e,
        weight_decay=d, weight_lr_power=r)`` is
        ``ScheduleFreeAdamW(learning_rate=a, interpolation=b,
        beta2_halflife=h2, rms_regularizer=e, weight_decay=d,
        weight_lr_power=r, corrected_lr=False)`` with a constant learning
        rate: optax corrects :math:`v` and weighs the average by
        :math:`\alpha` alone (its ``warmup_steps`` are off by one step, see
        :class:`ScheduleFreeSGD`). The reference
        PyTorch code (facebookresearch/schedule_free) follows the paper,
        ``corrected_lr=True``. torch.optim has no Schedule-Free rule.

    References
    ----------
    .. [1] A. Defazio, X. Yang, H. Mehta, K. Mishchenko, A. Khaled and
       A. Cutkosky (2024). The road less scheduled. NeurIPS;
       arXiv:2405.15682, Algorithm 1.
    """

    HYPERS = BETAS[1:] + (
        Hyper("rms_regularizer", 1e-8, "epsilon added to the square root",
              low=0, shared="epsilon"),
        Hyper("corrected_lr", True, "bias correction in the step size (the paper) or in v "
              "(optax)", kind=bool, structural=True),
    )

    def _step_size(self, dtype):
        lr = super()._step_size(dtype)
        if not self._values["corrected_lr"]:
            return lr
        t = as_float(self._t_next, dtype)
        beta2 = self._hyper("beta2", t)
        return lr * pt.sqrt(as_float(1, dtype) - beta2 ** t)

    def _step(self, param, grad):
        t = self._step_number(param)
        beta2 = self._hyper("beta2", param)
        eps = self._hyper("epsilon", param)
        one = as_float(1, param.dtype)
        g2_ewma = self._state_like(param, "g2_ewma")
        g2_new = beta2 * g2_ewma + (one - beta2) * grad * grad
        if self._values["corrected_lr"]:
            normalised = grad / (pt.sqrt(g2_new) + eps)
        else:
            normalised = grad / (pt.sqrt(g2_new / (one - beta2 ** t)) + eps)
        step = as_float(self._step_size(self._dtype), param.dtype) * self._decayed(
            param, normalised)
        return self._averaged(param, step, [(g2_ewma, g2_new)])
