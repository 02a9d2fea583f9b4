r"""Layer-wise trust ratios: LARS and LAMB.

Both scale each parameter tensor's step by one number, the *trust ratio*
:math:`\lVert p \rVert / \lVert u \rVert` of the tensor's norm to the norm
of its step direction :math:`u`, so that every layer moves by about the
same fraction of its size whatever the scale of its gradient (You et al.
2017, 2020). LARS's direction is the gradient, LAMB's Adam's. Where either
norm is zero the ratio is 1, as in the authors' and optax's code (a
parameter initialised to zero would never move otherwise).
"""

import pytensor.tensor as pt

from ..base import Optimizer
from ..compat import l2_norm
from ..hyperparams import Hyper
from ..registry import register
from ..util import as_float
from .common import BETAS, StepCounter, redeclared

__all__ = ["LARS", "LAMB"]

#: The decay inside the trust ratio, LARS's and LAMB's own.
TRUST_DECAY = Hyper(
    "trust_weight_decay", 0.0, "weight decay inside the trust ratio: adds it times p to the "
    "step's direction before the ratio is taken (the papers'); 0 = off",
    low=0, shared="trust_decay", switch=True)


def _trust_ratio(p_norm, u_norm, coefficient=None, epsilon=None):
    r"""The trust ratio :math:`\eta \lVert p \rVert / (\lVert u \rVert + \epsilon)`,
    or 1 where either norm is zero.

    Parameters
    ----------
    p_norm, u_norm : pytensor scalar
        The norms of the parameter and of the step's direction.
    coefficient, epsilon : pytensor scalar, optional
        :math:`\eta` (default 1) and :math:`\epsilon` (default 0).

    Returns
    -------
    pytensor scalar
    """
    zero = as_float(0, p_norm.dtype)
    ratio = p_norm / (u_norm if epsilon is None else u_norm + epsilon)
    if coefficient is not None:
        ratio = coefficient * ratio
    return pt.switch(pt.or_(pt.eq(p_norm, zero), pt.eq(u_norm, zero)),
                     as_float(1, p_norm.dtype), ratio)


@register
class LARS(Optimizer):
    r"""LARS: SGD with momentum whose step is scaled per layer by a trust ratio.

    Parameters
    ----------
    trust_coefficient : float, default 0.001
        :math:`\eta`, the trust ratio's factor (> 0).
    trust_weight_decay : float, default 0
        :math:`\beta`, weight decay added to the gradient before the ratio
        is taken and counted in it (>= 0).
    trust_regularizer : float, default 0
        :math:`\epsilon`, added to the ratio's denominator (>= 0).
    trust_norm : {'sum_of_norms', 'norm_of_sum'}, default 'sum_of_norms'
        The denominator's norm: :math:`\lVert g \rVert + \beta \lVert p
        \rVert`, as the paper's eq. 6, or :math:`\lVert g + \beta p \rVert`,
        as optax's ``lars``. The two agree without ``trust_weight_decay``.
    learning_rate : float or schedule, default 1
        :math:`\alpha`, the global learning rate (> 0): with the default
        :math:`\eta`, each step moves a parameter by about 0.1% of its norm.
    momentum : float or schedule, default 0.9
        :math:`\mu`, as the paper's Algorithm 1 (0 <= x < 1).
    loss, params, inputs, updates, monitors, monitor_gradients, mode
        As for :class:`~downhill.Optimizer`.
    **hyperparameters
        Also defaults for the other common hyperparameters (``nesterov``,
        ``weight_decay``, clipping limits, early stopping,
        ``on_nonfinite``), listed with their ranges by
        :meth:`~downhill.Optimizer.hyperparameters` and
        ``downhill algorithms``.

    Notes
    -----
    You, Gitman and Ginsburg (2017), eq. 6 and Algorithm 1. Each parameter
    tensor :math:`p` (a layer's weights, in the paper) gets its own rate
    :math:`\lambda`, so that its step is about :math:`\alpha \eta \lVert p
    \rVert` long whatever the gradient's scale:

    .. math::
        u &= g + \beta p \\
        \lambda &= \frac{\eta \lVert p \rVert}
                        {\lVert g \rVert + \beta \lVert p \rVert + \epsilon} \\
        \delta &= \alpha \lambda u

    (:math:`\lambda = 1` where :math:`\lVert p \rVert` or the denominator's
    norm is zero). The base class's momentum then makes the paper's
    :math:`v \leftarrow \mu v + \alpha \lambda u`,
    :math:`p \leftarrow p - v` (our :math:`v` has the opposite sign).
    ``trust_norm='norm_of_sum'`` takes :math:`\lVert u \rVert` in the
    denominator instead.

    Symbols in the code: :math:`u` is ``direction``, :math:`\lambda`
    ``ratio``, :math:`\eta`, :math:`\beta`, :math:`\epsilon`, :math:`\alpha`
    the shared scalars ``trust_coefficient``, ``trust_decay``,
    ``trust_epsilon``, ``learning_rate``; the norms are over the whole
    tensor. The common ``weight_decay`` is decoupled (outside the ratio) and
    off by default.

    On the example problems (:mod:`downhill.problems`, float32) with the
    suggested constant settings, LARS trains ``factorization``, ``digits``
    and ``sparse-digits`` as far as RMSProp (3.4e-6, 0.132, 0.011; RMSProp
    5.7e-6, 0.119, 0.019), but stalls on ``rosenbrock`` (1.8e-3, RMSProp
    1.4e-11): its steps are a fixed fraction of the parameter's norm, so
    near a minimum it bounces. A decaying learning rate gets there:
    ``learning_rate=ExponentialDecay(10.0, halflife=125)`` (5.1e-11); see
    :mod:`downhill.schedules`.

    .. warning::
        Checked step by step (``tests/test_oracles.py``): ``optax.lars(a,
        weight_decay=b, trust_coefficient=n, eps=e, momentum=m,
        nesterov=s)`` is ``LARS(learning_rate=a, trust_weight_decay=b,
        trust_coefficient=n, trust_regularizer=e, momentum=m, nesterov=s,
        trust_norm='norm_of_sum')``. optax's masks (``weight_decay_mask``,
        ``trust_ratio_mask``, e.g. to leave biases out) have no counterpart
        here: every parameter gets the ratio. torch.optim has no LARS.

    References
    ----------
    .. [1] Y. You, I. Gitman and B. Ginsburg (2017). Large batch training of
       convolutional networks. arXiv:1708.03888, eq. 6 and Algorithm 1.
    """

    HYPERS = (
        redeclared("learning_rate", 1.0),
        redeclared("momentum", 0.9),
        Hyper("trust_coefficient", 0.001, "eta, the trust ratio's factor",
              low=0, low_open=True, shared="trust_coefficient"),
        TRUST_DECAY,
        Hyper("trust_regularizer", 0.0, "epsilon added to the trust ratio's denominator",
              low=0, shared="trust_epsilon"),
        Hyper("trust_norm", "sum_of_norms", "the denominator: norm(g) + beta norm(p) (the "
              "paper) or norm(g + beta p) (optax)", kind=str,
              choices=("sum_of_norms", "norm_of_sum"), structural=True),
    )

    def _step(self, param, grad):
        p_norm = l2_norm(param)
        direction, u_norm = grad, l2_norm(grad)
        if self._values["trust_weight_decay"] != 0:
            decay = self._hyper("trust_decay", param)
            direction = grad + decay * param
            u_norm = (l2_norm(direction) if self._values["trust_norm"] == "norm_of_sum"
                      else u_norm + decay * p_norm)
        ratio = _trust_ratio(p_norm, u_norm, self._hyper("trust_coefficient", param),
                            self._hyper("trust_epsilon", param))
        return self._hyper("learning_rate", param) * ratio * direction, []


@register
class LAMB(StepCounter, Optimizer):
    r"""LAMB: Adam's step, scaled per layer by a trust ratio.

    Parameters
    ----------
    beta1_halflife : float, default 7
        Half-life, in updates, of the average of the gradient (> 0);
        :math:`\beta_1 \approx 0.906`.
    beta2_halflife : float, default 69
        Half-life, in updates, of the average of the squared gradient
        (> 0); :math:`\beta_2 \approx 0.990` (the paper's 0.999 is
        ``beta2_halflife=693``).
    rms_regularizer : float, default 1e-6
        :math:`\epsilon`, added to the square root (>= 0), as the paper's.
    trust_weight_decay : float, default 0
        :math:`\lambda`, weight decay added to Adam's direction before the
        ratio is taken (>= 0); the paper's, and optax's ``weight_decay``.
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
    You et al. (2020), Algorithm 2. Adam's bias-corrected direction
    :math:`r`, plus the decay, is rescaled to the length of the parameter
    tensor times the learning rate:

    .. math::
        t &\leftarrow t + 1 \\
        m &\leftarrow \beta_1 m + (1 - \beta_1)\, g \\
        v &\leftarrow \beta_2 v + (1 - \beta_2)\, g^2 \\
        u &= \frac{m / (1 - \beta_1^t)}{\sqrt{v / (1 - \beta_2^t)} + \epsilon}
             + \lambda p \\
        \delta &= \alpha \frac{\lVert p \rVert}{\lVert u \rVert}\, u

    (the ratio is 1 where either norm is zero), so
    :math:`\lVert \delta \rVert = \alpha \lVert p \rVert`: each tensor moves
    by the same fraction :math:`\alpha` of its norm. The paper's scaling
    function :math:`\phi` of :math:`\lVert p \rVert` is the identity, as in
    its experiments.

    Symbols in the code: :math:`m` is the state ``NAME_g1_ewma``, :math:`v`
    ``NAME_g2_ewma``, :math:`t` the optimizer-wide ``t``, :math:`u`
    ``direction``, :math:`\beta_1`, :math:`\beta_2`, :math:`\epsilon`,
    :math:`\lambda`, :math:`\alpha` the shared scalars ``beta1``, ``beta2``,
    ``epsilon``, ``trust_decay``, ``learning_rate``. The step
    :math:`\delta` then goes through the base class's momentum, if any; the
    common ``weight_decay`` is decoupled (outside the ratio).

    On the example problems (:mod:`downhill.problems`, float32) with the
    suggested constant settings, LAMB trains ``digits`` and
    ``sparse-digits`` as far as RMSProp (0.114 and 0.012; RMSProp 0.119 and
    0.019), but stalls on ``rosenbrock`` (1.5e-3, RMSProp 1.4e-11) and
    ``factorization`` (1.2e-4, RMSProp 5.7e-6): every step is the fraction
    :math:`\alpha` of the parameter's norm, so near a minimum it bounces. A
    decaying learning rate gets there: on ``rosenbrock``
    ``learning_rate=CosineWithWarmup(0.05, warmup=0, total=1000),
    beta2_halflife=300.0`` (5.3e-6), on ``factorization``
    ``learning_rate=CosineWithWarmup(0.03, warmup=0, total=500)`` (3.5e-9);
    see :mod:`downhill.schedules`.

    .. warning::
        We take half-lives, not decay rates (:math:`\beta_i = e^{-\ln 2 /
        h_i}`). Checked step by step (``tests/test_oracles.py``):
        ``optax.lamb(a, b1, b2, eps=e, weight_decay=d)`` (``eps_root=0``)
        is ``LAMB(learning_rate=a, beta1_halflife=h1, beta2_halflife=h2,
        rms_regularizer=e, trust_weight_decay=d)``; optax's ``mask`` has no
        counterpart. torch.optim has no LAMB.

    References
    ----------
    .. [1] Y. You, J. Li, S. Reddi, J. Hseu, S. Kumar, S. Bhojanapalli,
       X. Song, J. Demmel, K. Keutzer and C.-J. Hsieh (2020). Large batch
       optimization for deep learning: Training BERT in 76 minutes. ICLR;
       arXiv:1904.00962, Algorithm 2.
    """

    HYPERS = BETAS + (
        Hyper("rms_regularizer", 1e-6, "epsilon added to the square root",
              low=0, shared="epsilon"),
        TRUST_DECAY,
    )

    def _step(self, param, grad):
        t = self._step_number(param)
        beta1 = self._hyper("beta1", param)
        beta2 = self._hyper("beta2", param)
        one = as_float(1, param.dtype)
        g1_ewma = self._state_like(param, "g1_ewma")
        g2_ewma = self._state_like(param, "g2_ewma")
        g1_new = beta1 * g1_ewma + (one - beta1) * grad
        g2_new = beta2 * g2_ewma + (one - beta2) * grad * grad
        direction = (g1_new / (one - beta1 ** t)
                     / (pt.sqrt(g2_new / (one - beta2 ** t)) + self._hyper("epsilon", param)))
        if self._values["trust_weight_decay"] != 0:
            direction = direction + self._hyper("trust_decay", param) * param
        ratio = _trust_ratio(l2_norm(param), l2_norm(direction))
        delta = self._hyper("learning_rate", param) * ratio * direction
        return delta, [(g1_ewma, g1_new), (g2_ewma, g2_new)]
