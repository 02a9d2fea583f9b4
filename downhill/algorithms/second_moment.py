"""Adam-like rules that change how the second moment is estimated: AdaBelief, Yogi.

Both keep Adam's bias-corrected average of the gradient; AdaBelief divides
by the spread of the gradient around that average (its "belief"), Yogi
moves its second moment towards :math:`g^2` by an additive, sign-controlled
step instead of Adam's multiplicative average.
"""

import pytensor.tensor as pt

from ..base import Optimizer
from ..hyperparams import Hyper
from ..registry import register
from ..util import as_float
from .common import BETAS, StepCounter

__all__ = ["AdaBelief", "Yogi"]


@register
class AdaBelief(StepCounter, Optimizer):
    r"""AdaBelief: Adam dividing by the gradient's spread around its average.

    Parameters
    ----------
    beta1_halflife : float, default 7
        Half-life, in updates, of the average of the gradient (> 0);
        :math:`\beta_1 \approx 0.906`.
    beta2_halflife : float, default 69
        Half-life, in updates, of the average of the squared deviation
        (> 0); :math:`\beta_2 \approx 0.990`.
    rms_regularizer : float, default 1e-16
        :math:`\epsilon`, added to the square root (>= 0).
    variance_regularizer : float, default 1e-16
        :math:`\epsilon_s`, added to :math:`s` at every step (>= 0).
    loss, params, inputs, updates, monitors, monitor_gradients, mode
        As for :class:`~downhill.Optimizer`.
    **hyperparameters
        Also defaults for the common hyperparameters (``learning_rate``,
        ``momentum``, ``nesterov``, ``weight_decay``, clipping limits, early
        stopping, ``on_nonfinite``), listed with their ranges by
        :meth:`~downhill.Optimizer.hyperparameters` and
        ``downhill algorithms``.

    Notes
    -----
    Zhuang et al. (2020), Algorithm 2. Where the gradient :math:`g` agrees
    with its average :math:`m` (the "belief"), :math:`s` is small and the
    step large; where it deviates, the step is cautious:

    .. math::
        t &\leftarrow t + 1 \\
        m &\leftarrow \beta_1 m + (1 - \beta_1)\, g \\
        s &\leftarrow \beta_2 s + (1 - \beta_2)\, (g - m)^2 + \epsilon_s \\
        \delta &= \frac{\alpha\, m / (1 - \beta_1^t)}
                       {\sqrt{s / (1 - \beta_2^t)} + \epsilon}

    (:math:`g - m` uses the new :math:`m`). The paper uses one
    :math:`\epsilon` in both places; its authors recommend one about the
    square of Adam's, and optax defaults both to :math:`10^{-16}`, as we do.

    Symbols in the code: :math:`m` is the state ``NAME_g1_ewma``, :math:`s`
    ``NAME_s_ewma``, :math:`t` the optimizer-wide ``t``, :math:`\beta_1`,
    :math:`\beta_2`, :math:`\epsilon`, :math:`\epsilon_s`, :math:`\alpha` the
    shared scalars ``beta1``, ``beta2``, ``epsilon``, ``epsilon_s``,
    ``learning_rate``. The step :math:`\delta` then goes through the base
    class's momentum, if any.

    .. warning::
        We take half-lives, not decay rates (:math:`\beta_i = e^{-\ln 2 /
        h_i}`). Checked step by step (``tests/test_oracles.py``):
        ``optax.adabelief(a, b1, b2, eps=e, eps_root=r)`` is
        ``AdaBelief(learning_rate=a, beta1_halflife=h1, beta2_halflife=h2,
        rms_regularizer=e, variance_regularizer=r)``. torch has no
        AdaBelief.

    References
    ----------
    .. [1] J. Zhuang, T. Tang, Y. Ding, S. Tatikonda, N. Dvornek,
       X. Papademetris and J. S. Duncan (2020). AdaBelief optimizer: Adapting
       stepsizes by the belief in observed gradients. NeurIPS;
       arXiv:2010.07468, Algorithm 2.
    """

    HYPERS = BETAS + (
        Hyper("rms_regularizer", 1e-16, "epsilon added to the square root",
              low=0, shared="epsilon"),
        Hyper("variance_regularizer", 1e-16, "epsilon added to the belief variance s "
              "at every step", low=0, shared="epsilon_s"),
    )

    def _step(self, param, grad):
        t = self._step_number(param)
        beta1 = self._hyper("beta1", param)
        beta2 = self._hyper("beta2", param)
        one = as_float(1, param.dtype)
        g1_ewma = self._state_like(param, "g1_ewma")
        s_ewma = self._state_like(param, "s_ewma")
        g1_new = beta1 * g1_ewma + (one - beta1) * grad
        deviation = grad - g1_new
        s_new = (beta2 * s_ewma + (one - beta2) * deviation * deviation
                 + self._hyper("epsilon_s", param))
        numer = g1_new / (one - beta1 ** t)
        denom = pt.sqrt(s_new / (one - beta2 ** t)) + self._hyper("epsilon", param)
        delta = self._hyper("learning_rate", param) * numer / denom
        return delta, [(g1_ewma, g1_new), (s_ewma, s_new)]


@register
class Yogi(StepCounter, Optimizer):
    r"""Yogi: Adam whose second moment moves towards :math:`g^2` additively.

    Parameters
    ----------
    beta1_halflife : float, default 7
        Half-life, in updates, of the average of the gradient (> 0);
        :math:`\beta_1 \approx 0.906`.
    beta2_halflife : float, default 69
        Sets :math:`\beta_2 \approx 0.990`, the rate of the second moment's
        additive steps (> 0).
    rms_regularizer : float, default 1e-3
        :math:`\epsilon`, added to the square root (>= 0); the paper's
        default, larger than Adam's.
    initial_accumulator : float, default 1e-6
        :math:`v_0`, the second moment's starting value (>= 0), read when
        the state is made (the first :meth:`~downhill.Optimizer.get_updates`,
        :meth:`~downhill.Optimizer.iterate` or
        :meth:`~downhill.Optimizer.minimize`); later values have no effect.
    loss, params, inputs, updates, monitors, monitor_gradients, mode
        As for :class:`~downhill.Optimizer`.
    **hyperparameters
        Also defaults for the common hyperparameters (``learning_rate``,
        ``momentum``, ``nesterov``, ``weight_decay``, clipping limits, early
        stopping, ``on_nonfinite``), listed with their ranges by
        :meth:`~downhill.Optimizer.hyperparameters` and
        ``downhill algorithms``.

    Notes
    -----
    Zaheer et al. (2018), Algorithm 2. Adam's :math:`v` moves by
    :math:`(1 - \beta_2)(g^2 - v)`, so a run of small gradients quickly
    forgets a large one and the step grows; Yogi's moves by at most
    :math:`(1 - \beta_2) g^2`, in the direction of :math:`g^2`:

    .. math::
        t &\leftarrow t + 1 \\
        m &\leftarrow \beta_1 m + (1 - \beta_1)\, g \\
        v &\leftarrow v - (1 - \beta_2)\, \mathrm{sign}(v - g^2)\, g^2 \\
        \delta &= \frac{\alpha\, m / (1 - \beta_1^t)}
                       {\sqrt{v / (1 - \beta_2^t)} + \epsilon}

    with :math:`m_0 = 0` and :math:`v_0` = ``initial_accumulator``. The
    paper's Algorithm 2 corrects neither moment; optax's implementation
    does, and so do we.

    Symbols in the code: :math:`m` is the state ``NAME_g1_ewma``, :math:`v`
    ``NAME_g2_yogi``, :math:`t` the optimizer-wide ``t``, :math:`\beta_1`,
    :math:`\beta_2`, :math:`\epsilon`, :math:`\alpha` the shared scalars
    ``beta1``, ``beta2``, ``epsilon``, ``learning_rate``. The step
    :math:`\delta` then goes through the base class's momentum, if any.

    .. warning::
        We take half-lives, not decay rates (:math:`\beta_i = e^{-\ln 2 /
        h_i}`; the paper's :math:`\beta_2 = 0.999` is
        ``beta2_halflife=693``). ``optax.yogi`` starts *both* moments at its
        ``initial_accumulator_value`` (1e-6), where we start :math:`m` at 0.
        Checked step by step (``tests/test_oracles.py``):
        ``optax.chain(optax.scale_by_yogi(b1, b2, eps=e,
        initial_accumulator_value=0), optax.scale(-a))`` is
        ``Yogi(learning_rate=a, beta1_halflife=h1, beta2_halflife=h2,
        rms_regularizer=e, initial_accumulator=0)``; with a non-zero
        initial value the two differ by :math:`\beta_1^t v_0` in :math:`m`.
        torch has no Yogi.

    References
    ----------
    .. [1] M. Zaheer, S. Reddi, D. Sachan, S. Kale and S. Kumar (2018).
       Adaptive methods for nonconvex optimization. NeurIPS, Algorithm 2.
    """

    HYPERS = BETAS + (
        Hyper("rms_regularizer", 1e-3, "epsilon added to the square root",
              low=0, shared="epsilon"),
        Hyper("initial_accumulator", 1e-6, "the second moment's starting value, read when "
              "the state is made", low=0),
    )

    def _step(self, param, grad):
        t = self._step_number(param)
        beta1 = self._hyper("beta1", param)
        beta2 = self._hyper("beta2", param)
        one = as_float(1, param.dtype)
        g1_ewma = self._state_like(param, "g1_ewma")
        g2_yogi = self._state_like(param, "g2_yogi", value=self._values["initial_accumulator"])
        g1_new = beta1 * g1_ewma + (one - beta1) * grad
        g2 = grad * grad
        g2_new = g2_yogi - (one - beta2) * pt.sign(g2_yogi - g2) * g2
        numer = g1_new / (one - beta1 ** t)
        denom = pt.sqrt(g2_new / (one - beta2 ** t)) + self._hyper("epsilon", param)
        delta = self._hyper("learning_rate", param) * numer / denom
        return delta, [(g1_ewma, g1_new), (g2_yogi, g2_new)]
