"""The Adam family: bias-corrected moving averages of the gradient's moments.

Adam and the variants that change its first moment, its bias correction
or its normaliser; the optimizer-wide step counter they share comes from
:class:`downhill.algorithms.common.StepCounter`.
"""

import pytensor.tensor as pt

from ..base import Optimizer
from ..hyperparams import Hyper
from ..registry import register
from ..util import as_float, halflife_to_decay
from .common import StepCounter

__all__ = ["Adam"]


@register
class Adam(StepCounter, Optimizer):
    r"""Adam: steps from bias-corrected moving averages of the gradient moments.

    Parameters
    ----------
    beta1_halflife : float, default 7
        Half-life, in updates, of the average of the gradient (> 0);
        :math:`\beta_1 = e^{-\ln 2 / 7} \approx 0.906`.
    beta2_halflife : float, default 69
        Half-life, in updates, of the average of the squared gradient
        (> 0); :math:`\beta_2 = e^{-\ln 2 / 69} \approx 0.990`.
    rms_regularizer : float, default 1e-8
        :math:`\epsilon`, added to the square root (>= 0).
    beta1_decay : float, default 1
        :math:`\lambda`, the factor by which :math:`\beta_1` shrinks with
        every update (0 < x <= 1), downhill 0.4's keyword; 1 leaves
        :math:`\beta_1` constant (0.4's default was ``1 - 1e-6``).
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
    Kingma and Ba (2015), Algorithm 1. One step counter :math:`t` is shared
    by all parameters of the optimizer:

    .. math::
        t &\leftarrow t + 1 \\
        \beta_{1,t} &= \beta_1 \lambda^{t - 1} \\
        m &\leftarrow \beta_{1,t}\, m + (1 - \beta_{1,t})\, g \\
        v &\leftarrow \beta_2 v + (1 - \beta_2)\, g^2 \\
        \delta &= \frac{\alpha\, m / (1 - \beta_1^t)}
                       {\sqrt{v / (1 - \beta_2^t)} + \epsilon}

    With the default :math:`\lambda = 1`, :math:`\beta_{1,t} = \beta_1`.
    The decaying :math:`\beta_{1,t}` is the one of the paper's first
    versions (arXiv:1412.6980v1-v8, Algorithm 1, where
    :math:`\lambda = 1 - 10^{-8}`) and of downhill 0.4 (``beta1_decay``); the
    bias correction keeps :math:`\beta_1^t`, as the paper's.

    Symbols in the code: :math:`t` is the optimizer-wide state ``t`` (an
    integer, saved with the rest of the state), :math:`m` the state
    ``NAME_g1_ewma``, :math:`v` ``NAME_g2_ewma``, :math:`\beta_1` and
    :math:`\beta_2` the shared scalars ``beta1`` and ``beta2``,
    :math:`\lambda` ``beta1_decay``, :math:`\beta_{1,t}` ``beta1_t``,
    :math:`\epsilon` ``epsilon``, :math:`\alpha` ``learning_rate``. The step
    :math:`\delta` then goes through the base class's momentum, if any.

    .. warning::
        The released original downhill divided :math:`v` by
        :math:`1 - \beta_2` instead of :math:`1 - \beta_2^t`; this is the
        paper's correction. Unlike the peers (``betas=(0.9, 0.999)``) we
        take half-lives, not decay rates, and the defaults differ: the
        default :math:`\beta_2 \approx 0.990`. The mapping is
        :math:`\beta_i = e^{-\ln 2 / h_i}`, i.e.
        ``beta1_halflife = -ln 2 / ln(b1)``. Checked step by step
        (``tests/test_oracles.py``), with ``beta1_decay=1``:

        * ``torch.optim.Adam(lr=a, betas=(b1, b2), eps=e)`` and
          ``optax.adam(a, b1=b1, b2=b2, eps=e)`` (``eps_root=0``) are
          ``Adam(learning_rate=a, beta1_halflife=h1, beta2_halflife=h2,
          rms_regularizer=e)``: all add eps to the root of the *corrected*
          :math:`v`.
        * ``torch.optim.AdamW(..., weight_decay=d)`` and
          ``optax.adamw(..., weight_decay=d)`` are the same with
          ``weight_decay=d`` (decoupled). ``torch.optim.Adam``'s
          ``weight_decay`` adds :math:`d p` to the gradient instead.

    References
    ----------
    .. [1] D. P. Kingma and J. Ba (2015). Adam: A method for stochastic
       optimization. ICLR; arXiv:1412.6980, Algorithm 1.
    """

    HYPERS = (
        Hyper("beta1_halflife", 7.0, "half-life in updates of the gradient average",
              low=0, low_open=True, shared="beta1", transform=halflife_to_decay),
        Hyper("beta2_halflife", 69.0, "half-life in updates of the squared gradient average",
              low=0, low_open=True, shared="beta2", transform=halflife_to_decay),
        Hyper("rms_regularizer", 1e-8, "epsilon added to the square root",
              low=0, shared="epsilon"),
        Hyper("beta1_decay", 1.0, "factor shrinking beta1 per update (downhill 0.4); 1 = off",
              low=0, high=1, low_open=True, shared="beta1_decay",
              structural=lambda value: value != 1),
    )

    def _step(self, param, grad):
        t = self._step_number(param)
        beta1 = self._hyper("beta1", param)
        beta2 = self._hyper("beta2", param)
        one = as_float(1, param.dtype)
        beta1_t = beta1
        if self._values["beta1_decay"] != 1:
            beta1_t = beta1 * self._hyper("beta1_decay", param) ** (t - one)
        g1_ewma = self._state_like(param, "g1_ewma")
        g2_ewma = self._state_like(param, "g2_ewma")
        g1_new = beta1_t * g1_ewma + (one - beta1_t) * grad
        g2_new = beta2 * g2_ewma + (one - beta2) * grad * grad
        numer = g1_new / (one - beta1 ** t)
        denom = pt.sqrt(g2_new / (one - beta2 ** t)) + self._hyper("epsilon", param)
        delta = self._hyper("learning_rate", param) * numer / denom
        return delta, [(g1_ewma, g1_new), (g2_ewma, g2_new)]
