"""Optimizers that adapt the step size per parameter element."""

import pytensor.tensor as pt

from .base import Optimizer, register
from .util import Hyper, as_float, halflife_to_decay

__all__ = ["RMSProp"]


@register
class RMSProp(Optimizer):
    r"""RMSProp: scale steps by a running estimate of the gradient's spread.

    Parameters
    ----------
    rms_halflife : float, default 14
        Half-life, in updates, of the moving averages (> 0).
    rms_regularizer : float, default 1e-8
        :math:`\epsilon`, added under the square root (>= 0).
    loss, params, inputs, updates, monitors, monitor_gradients, mode
        As for :class:`~downhill.base.Optimizer`.
    **hyperparameters
        Also defaults for the common hyperparameters (``learning_rate``,
        ``momentum``, ``nesterov``, ``weight_decay``, clipping limits,
        early stopping, ``on_nonfinite``), listed with their ranges by
        :meth:`~downhill.base.Optimizer.hyperparameters` and
        ``downhill algorithms``.

    Notes
    -----
    The centred form of Graves (2013), eqs. 38-45. With
    :math:`\gamma = e^{-\ln 2 / h}` for half-life :math:`h`, each update
    keeps exponentially weighted averages of the gradient :math:`g` and of
    its square, and divides the step by the resulting standard deviation:

    .. math::
        f &\leftarrow \gamma f + (1 - \gamma)\, g \\
        s &\leftarrow \gamma s + (1 - \gamma)\, g^2 \\
        \delta &= \frac{\alpha\, g}{\sqrt{\max(s - f^2, 0) + \epsilon}}

    Symbols in the code: :math:`f` is the state ``NAME_g1_ewma``, :math:`s`
    ``NAME_g2_ewma``, :math:`\gamma` the shared scalar ``ewma``,
    :math:`\epsilon` ``epsilon``, :math:`\alpha` ``learning_rate``. The step
    :math:`\delta` then goes through the base class's momentum, if any.

    The clamp at zero is ours: in float32, rounding makes :math:`s - f^2`
    slightly negative for large, nearly constant gradients, which the
    original library turned into NaN.

    .. warning::
        Here :math:`\epsilon` sits *inside* the square root, and the
        variance is centred (:math:`s - f^2`). ``torch.optim.RMSprop`` adds
        eps *outside* the root and centres only with ``centered=True``; it
        also takes a decay rate ``alpha`` where we take a half-life
        (``alpha = exp(-ln 2 / rms_halflife)``).

    References
    ----------
    .. [1] A. Graves (2013). Generating sequences with recurrent neural
       networks. arXiv:1308.0850, eqs. 38-45.
    .. [2] T. Tieleman and G. Hinton (2012). Lecture 6.5 - RMSProp. COURSERA:
       Neural Networks for Machine Learning.
    """

    HYPERS = (
        Hyper("rms_halflife", 14.0, "half-life in updates of the gradient averages",
              low=0, low_open=True, shared="ewma", transform=halflife_to_decay),
        Hyper("rms_regularizer", 1e-8, "epsilon added under the square root",
              low=0, shared="epsilon"),
    )

    def _step(self, param, grad):
        gamma = self._hyper("ewma", param)
        one = as_float(1, param.dtype)
        f = self._state_like(param, "g1_ewma")
        s = self._state_like(param, "g2_ewma")
        f_new = gamma * f + (one - gamma) * grad
        s_new = gamma * s + (one - gamma) * grad * grad
        var = pt.maximum(s_new - f_new * f_new, as_float(0, param.dtype))
        rms = pt.sqrt(var + self._hyper("epsilon", param))
        delta = self._hyper("learning_rate", param) * grad / rms
        return delta, [(f, f_new), (s, s_new)]
