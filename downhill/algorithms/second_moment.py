"""Adam-like rules that change how the second moment is estimated: AdaBelief,
Yogi, and the factored Adafactor.

AdaBelief and Yogi keep Adam's bias-corrected average of the gradient;
AdaBelief divides by the spread of the gradient around that average (its
"belief"), Yogi moves its second moment towards :math:`g^2` by an
additive, sign-controlled step instead of Adam's multiplicative average.
Adafactor keeps no first moment, and of a matrix's second moment only the
averages of its rows and columns.
"""

import numpy as np
import pytensor.tensor as pt

from ..base import Optimizer
from ..compat import l2_norm
from ..hyperparams import Hyper
from ..registry import register
from ..util import as_float
from .common import BETAS, StepCounter, redeclared

__all__ = ["AdaBelief", "Yogi", "Adafactor"]


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


# ----------------------------------------------------------------------
# Adafactor


def _rms(x, size):
    """The root mean square of a tensor of ``size`` elements."""
    return l2_norm(x) / as_float(np.sqrt(size), x.dtype)


@register
class Adafactor(StepCounter, Optimizer):
    r"""Adafactor: factored second moments, relative step sizes, update clipping.

    Parameters
    ----------
    learning_rate : float or schedule, default 0.01
        :math:`\rho`, the step size relative to the parameter's scale (> 0);
        with ``relative_step``, the cap of :math:`\rho_t` (the paper's
        :math:`10^{-2}`).
    relative_step : bool, default True
        :math:`\rho_t = \min(\rho, 1 / \sqrt t)` (True, the paper's) or
        :math:`\rho_t = \rho` (False: give a schedule instead).
    parameter_scale : bool, default True
        Scale the step by the parameter's root mean square (True, the
        paper's :math:`\alpha_t`), or not (an absolute step size).
    parameter_scale_floor : float, default 1e-3
        :math:`\epsilon_2`, the smallest scale used (>= 0), so that
        parameters at zero can move.
    decay_exponent : float, default 0.8
        :math:`c` in :math:`\hat\beta_{2t} = 1 - t^{-c}` (>= 0).
    rms_regularizer : float, default 1e-30
        :math:`\epsilon_1` (>= 0), added to :math:`g^2`.
    regularizer_as_floor : bool, default False
        Use :math:`\epsilon_1` as a floor of the root and of the row mean
        instead (``torch.optim.Adafactor``'s form).
    clip_threshold : float, default 1
        :math:`d`, the largest root mean square of the normalised update
        (>= 0); 0 turns update clipping off.
    factored : bool, default True
        Factor the second moment of a parameter of two or more dimensions
        over its last two axes (False: a full average, as Adam's).
    factor_min_size : int, default 1
        Factor only where both of those axes are at least this long (>= 1;
        optax's ``min_dim_size_to_factor``, 128 there).
    loss, params, inputs, updates, monitors, monitor_gradients, mode
        As for :class:`~downhill.Optimizer`.
    **hyperparameters
        Also defaults for the other common hyperparameters (``momentum``,
        ``nesterov``, ``weight_decay``, clipping limits, early stopping,
        ``on_nonfinite``), listed with their ranges by
        :meth:`~downhill.Optimizer.hyperparameters` and
        ``downhill algorithms``.

    Notes
    -----
    Shazeer and Stern (2018), Algorithms 4 (matrices) and 5 (vectors). The
    second moment's decay rate grows with the step count :math:`t`, so no
    bias correction is needed (:math:`\hat\beta_{21} = 0`). For a gradient
    :math:`G` of shape :math:`(n, m)`, only the means :math:`r` of the rows
    and :math:`c` of the columns of the average of :math:`G^2` are kept:
    :math:`n + m` numbers where Adam keeps :math:`nm`:

    .. math::
        \hat\beta_{2t} &= 1 - t^{-c} \\
        r &\leftarrow \hat\beta_{2t} r + (1 - \hat\beta_{2t})
             \operatorname{mean}_j (G^2 + \epsilon_1)_{ij} \\
        s &\leftarrow \hat\beta_{2t} s + (1 - \hat\beta_{2t})
             \operatorname{mean}_i (G^2 + \epsilon_1)_{ij} \\
        \hat V &= r s^\top / \operatorname{mean}(r) \\
        U &= G / \sqrt{\hat V} \\
        \hat U &= U / \max(1, \operatorname{RMS}(U) / d) \\
        \rho_t &= \min(\rho, 1 / \sqrt t) \\
        \delta &= \max(\epsilon_2, \operatorname{RMS}(p))\, \rho_t\, \hat U

    The paper keeps the sums :math:`R = m r` and :math:`C = n s`;
    :math:`\hat V = R C^\top / (1^\top R)` is the same. A vector (or a
    parameter not factored) keeps the full average :math:`\hat V
    \leftarrow \hat\beta_{2t} \hat V + (1 - \hat\beta_{2t}) (G^2 +
    \epsilon_1)`; a tensor of more dimensions is factored over its last two
    axes, the others batch. With ``regularizer_as_floor=True``,
    :math:`\epsilon_1` leaves :math:`G^2` alone and bounds
    :math:`\operatorname{mean}(r)` and :math:`\sqrt{\hat V}` from below
    instead. RMS is the root mean square over the whole tensor.

    Symbols in the code: :math:`r`, :math:`s` and the full :math:`\hat V`
    are the states ``NAME_g2_rows``, ``NAME_g2_cols`` and ``NAME_g2_ewma``,
    :math:`t` the optimizer-wide ``t``, :math:`\hat\beta_{2t}` ``beta``,
    :math:`U` ``normalised``, :math:`\rho_t` ``rho``; :math:`c`,
    :math:`\epsilon_1`, :math:`\epsilon_2`, :math:`d`, :math:`\rho` the
    shared scalars ``decay_exponent``, ``epsilon``, ``scale_epsilon``,
    ``clip_threshold``, ``learning_rate``. The step :math:`\delta` then goes
    through the base class's momentum, if any (the paper's Adafactor has
    none), and ``weight_decay`` is decoupled: :math:`p \leftarrow p -
    \rho\, \lambda\, p`, with :math:`\rho` the ``learning_rate``.

    .. warning::
        Checked step by step (``tests/test_oracles.py``), with
        :math:`c` = ``decay_exponent`` and the rest as named:

        * ``torch.optim.Adafactor(lr=r, beta2_decay=-c, eps=(e1, e2), d=d,
          weight_decay=w)`` is ``Adafactor(learning_rate=r,
          decay_exponent=c, rms_regularizer=e1, parameter_scale_floor=e2,
          clip_threshold=d, weight_decay=w, regularizer_as_floor=True)``;
          torch's default ``e1`` is the dtype's machine epsilon.
        * ``optax.adafactor(r, min_dim_size_to_factor=k, decay_rate=c,
          clipping_threshold=d, eps=e1)`` is ``Adafactor(learning_rate=r,
          relative_step=False, factor_min_size=k, decay_exponent=c,
          clip_threshold=d, rms_regularizer=e1)`` (``clipping_threshold=None``
          is ``clip_threshold=0``, ``multiply_by_parameter_scale=False`` is
          ``parameter_scale=False``, its floor is always 1e-3); its
          ``momentum=b`` (an average of the steps) is our ``momentum=b`` with
          ``learning_rate=r * (1 - b)``, and its ``weight_decay_rate=w``
          (not scaled by the learning rate) our ``weight_decay=w /
          learning_rate``. optax factors the two *longest* axes of a tensor
          of three or more dimensions, we the last two, and it computes
          :math:`\hat\beta_{2t}` in float32 even for float64 parameters
          (1e-6 relative after 200 steps; the float64 comparison gives it a float64
          schedule).

    References
    ----------
    .. [1] N. Shazeer and M. Stern (2018). Adafactor: Adaptive learning rates
       with sublinear memory cost. ICML; arXiv:1804.04235, Algorithms 4 and
       5, and their proposed hyperparameters.
    """

    HYPERS = (
        redeclared("learning_rate", 0.01, "the relative step size rho, or its cap with "
                   "relative_step (the paper's 1e-2)"),
        Hyper("relative_step", True, "rho_t = min(learning_rate, 1/sqrt(t)) (True) or "
              "learning_rate (False)", kind=bool, structural=True),
        Hyper("parameter_scale", True, "scale the step by the parameter's RMS",
              kind=bool, structural=True),
        Hyper("parameter_scale_floor", 1e-3, "epsilon2, the smallest parameter scale",
              low=0, shared="scale_epsilon"),
        Hyper("decay_exponent", 0.8, "c in the second moment's decay 1 - t^-c",
              low=0, shared="decay_exponent"),
        Hyper("rms_regularizer", 1e-30, "epsilon1, added to the squared gradient",
              low=0, shared="epsilon"),
        Hyper("regularizer_as_floor", False, "use rms_regularizer as a floor of the root "
              "and the row mean instead (torch.optim.Adafactor)", kind=bool, structural=True),
        Hyper("clip_threshold", 1.0, "d, the largest RMS of the normalised update; 0 = off",
              low=0, shared="clip_threshold", switch=True),
        Hyper("factored", True, "factor the second moment of 2-D and larger parameters",
              kind=bool, structural=True),
        Hyper("factor_min_size", 1, "factor only where the last two axes are this long",
              kind=int, low=1, structural=True),
    )

    def _factored(self, shape):
        return (self._values["factored"] and len(shape) >= 2
                and min(shape[-2:]) >= self._values["factor_min_size"])

    def _second_moment(self, param, g2, beta):
        """The estimate :math:`\\hat V` and its state's updates."""
        one = as_float(1, param.dtype)
        if not self._factored(param.get_value(borrow=True).shape):
            v = self._state_like(param, "g2_ewma")
            v_new = beta * v + (one - beta) * g2
            return v_new, [(v, v_new)]
        rows = self._variables.reduced(param, "g2_rows", -1)
        cols = self._variables.reduced(param, "g2_cols", -2)
        rows_new = beta * rows + (one - beta) * g2.mean(axis=-1)
        cols_new = beta * cols + (one - beta) * g2.mean(axis=-2)
        scale = rows_new.mean(axis=-1, keepdims=True)
        if self._values["regularizer_as_floor"]:
            scale = pt.maximum(scale, self._hyper("epsilon", param))
        v_hat = pt.expand_dims(rows_new / scale, -1) * pt.expand_dims(cols_new, -2)
        return v_hat, [(rows, rows_new), (cols, cols_new)]

    def _step(self, param, grad):
        t = self._step_number(param)
        one = as_float(1, param.dtype)
        size = param.get_value(borrow=True).size
        eps = self._hyper("epsilon", param)
        floor = self._values["regularizer_as_floor"]
        beta = one - t ** -self._hyper("decay_exponent", param)
        v_hat, state = self._second_moment(param, grad * grad if floor else grad * grad + eps,
                                           beta)
        normalised = grad / (pt.maximum(pt.sqrt(v_hat), eps) if floor else pt.sqrt(v_hat))
        if self._values["clip_threshold"] != 0:
            limit = self._hyper("clip_threshold", param)
            normalised = normalised / pt.maximum(one, _rms(normalised, size) / limit)
        rho = self._hyper("learning_rate", param)
        if self._values["relative_step"]:
            rho = pt.minimum(rho, one / pt.sqrt(t))
        if self._values["parameter_scale"]:
            rho = pt.maximum(self._hyper("scale_epsilon", param), _rms(param, size)) * rho
        return rho * normalised, state
