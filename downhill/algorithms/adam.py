"""The Adam family: bias-corrected moving averages of the gradient's moments.

Adam and the variants that change its normaliser (AMSGrad's running
maximum, Adamax's infinity norm), its first moment (NAdam's Nesterov
look-ahead) or its bias correction (RAdam's rectification). The
optimizer-wide step counter they share comes from
:class:`downhill.algorithms.common.StepCounter`; their half-lives from
:data:`downhill.algorithms.common.BETAS`.
"""

import pytensor.tensor as pt

from ..base import Optimizer
from ..hyperparams import Hyper
from ..registry import register
from ..util import as_float
from .common import BETAS, StepCounter

__all__ = ["Adam", "AMSGrad", "Adamax", "NAdam", "RAdam"]

#: Adam's epsilon, added to the root of the corrected second moment.
EPSILON = Hyper("rms_regularizer", 1e-8, "epsilon added to the square root",
                low=0, shared="epsilon")


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
    amsgrad : bool, default False
        Divide by the running maximum of the second moment (Reddi et al.'s
        AMSGrad) instead of the second moment itself; :class:`AMSGrad`
        is Adam with this always on.
    amsgrad_max : {'corrected', 'raw'}, default 'corrected'
        With ``amsgrad``: keep the maximum of the bias-corrected second
        moment (as ``optax.amsgrad``) or of the raw one, corrected after
        (as ``torch.optim.Adam(amsgrad=True)``).
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

    With ``amsgrad=True`` the denominator uses the largest second moment so
    far instead (Reddi et al. 2018, Algorithm 2), so that the effective
    step size never grows:

    .. math::
        \hat v_{max} &\leftarrow \max\left(\hat v_{max},
            \frac{v}{1 - \beta_2^t}\right) \\
        \delta &= \frac{\alpha\, m / (1 - \beta_1^t)}
                       {\sqrt{\hat v_{max}} + \epsilon}

    or, with ``amsgrad_max='raw'``, :math:`v_{max} \leftarrow \max(v_{max},
    v)` and :math:`\delta = \alpha\, m / (1 - \beta_1^t) /
    (\sqrt{v_{max} / (1 - \beta_2^t)} + \epsilon)`. The paper corrects
    neither moment (and decays :math:`\alpha` as :math:`1/\sqrt t`); its
    synthetic experiment (Section 5: :math:`f_t(x) = 1010 x` every 101st
    step, else :math:`-10 x`, on :math:`[-1, 1]`) behaves as published
    with either form: ``tests/test_adam_family.py``.

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
    :math:`\epsilon` ``epsilon``, :math:`\alpha` ``learning_rate``,
    :math:`\hat v_{max}` (or :math:`v_{max}`) the state ``NAME_g2_max``. The
    step :math:`\delta` then goes through the base class's momentum, if any.

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

    HYPERS = BETAS + (
        EPSILON,
        Hyper("beta1_decay", 1.0, "factor shrinking beta1 per update (downhill 0.4); 1 = off",
              low=0, high=1, low_open=True, shared="beta1_decay",
              structural=lambda value: value != 1),
        Hyper("amsgrad", False, "divide by the running maximum of the second moment "
              "(AMSGrad)", kind=bool, structural=True),
        Hyper("amsgrad_max", "corrected", "with amsgrad: the maximum of the corrected "
              "(optax) or raw (torch) second moment", kind=str,
              choices=("corrected", "raw"), structural=True),
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
        state = [(g1_ewma, g1_new), (g2_ewma, g2_new)]
        second = g2_new / (one - beta2 ** t)
        if self._values["amsgrad"]:
            g2_max = self._state_like(param, "g2_max")
            if self._values["amsgrad_max"] == "raw":
                g2_max_new = pt.maximum(g2_max, g2_new)
                second = g2_max_new / (one - beta2 ** t)
            else:
                g2_max_new = second = pt.maximum(g2_max, second)
            state.append((g2_max, g2_max_new))
        denom = pt.sqrt(second) + self._hyper("epsilon", param)
        delta = self._hyper("learning_rate", param) * numer / denom
        return delta, state


@register
class AMSGrad(Adam):
    r"""AMSGrad: Adam dividing by the largest second moment seen so far.

    :class:`Adam` with ``amsgrad=True`` always (``build('amsgrad')`` and
    ``build('adam', amsgrad=True)`` make the same steps):

    .. math::
        m &\leftarrow \beta_1 m + (1 - \beta_1)\, g \\
        v &\leftarrow \beta_2 v + (1 - \beta_2)\, g^2 \\
        \hat v_{max} &\leftarrow \max\left(\hat v_{max},
            \frac{v}{1 - \beta_2^t}\right) \\
        \delta &= \frac{\alpha\, m / (1 - \beta_1^t)}{\sqrt{\hat v_{max}} + \epsilon}

    Since :math:`\hat v_{max}` never shrinks, neither does the denominator:
    a rare large gradient is not forgotten, which is what makes Adam fail
    on Reddi et al.'s counterexample and AMSGrad converge. Passing
    ``amsgrad=False`` is an error. The same memory slows it where the first
    gradients are much larger than the later ones (Rosenbrock's steep start:
    with Adam's settings there, ``learning_rate=0.1, beta2_halflife=300``,
    it stalls at a loss of 1.2 after 1000 steps, where Adam reaches
    :math:`4 \cdot 10^{-7}`): a gradient norm limit
    (``max_gradient_norm=1``) bounds :math:`\hat v_{max}`, as the example
    problems' suggestions do.

    Parameters
    ----------
    beta1_halflife, beta2_halflife, rms_regularizer, beta1_decay, amsgrad_max
        As for :class:`Adam` (``beta1_halflife=7``, ``beta2_halflife=69``,
        ``rms_regularizer=1e-8``, ``amsgrad_max='corrected'``).
    amsgrad : bool, default True
        Always True here.
    loss, params, inputs, updates, monitors, monitor_gradients, mode
        As for :class:`~downhill.Optimizer`.
    **hyperparameters
        Also defaults for the common hyperparameters, listed with their
        ranges by :meth:`~downhill.Optimizer.hyperparameters` and
        ``downhill algorithms``.

    Notes
    -----
    Symbols in the code: :math:`m` is the state ``NAME_g1_ewma``, :math:`v`
    ``NAME_g2_ewma``, :math:`\hat v_{max}` ``NAME_g2_max``, :math:`t` the
    optimizer-wide ``t``; the rest as for :class:`Adam`.

    .. warning::
        The paper (Algorithm 2) corrects neither moment; ``optax.amsgrad``
        takes the maximum of the corrected :math:`v` (our default);
        ``torch.optim.Adam(amsgrad=True)`` the maximum of the raw :math:`v`,
        corrected after (``amsgrad_max='raw'``). With
        :math:`\beta_i = e^{-\ln 2 / h_i}`, checked step by step
        (``tests/test_oracles.py``): ``optax.amsgrad(a, b1, b2, eps=e)`` is
        ``AMSGrad(learning_rate=a, beta1_halflife=h1, beta2_halflife=h2,
        rms_regularizer=e)``; ``torch.optim.Adam(lr=a, betas=(b1, b2),
        eps=e, amsgrad=True)`` is the same with ``amsgrad_max='raw'``, and
        ``torch.optim.AdamW(..., amsgrad=True, weight_decay=d)`` adds
        ``weight_decay=d``.

    References
    ----------
    .. [1] S. J. Reddi, S. Kale and S. Kumar (2018). On the convergence of
       Adam and beyond. ICLR; Algorithm 2, and the counterexample of Section 3
       with its experiment in Section 5 (Figure 1).
    """

    HYPERS = (
        Hyper("amsgrad", True, "always True: AMSGrad divides by the running maximum of "
              "the second moment", kind=bool, structural=True),
    )

    def __init__(self, *args, **kwargs):
        self._check_amsgrad(kwargs)
        super().__init__(*args, **kwargs)

    @classmethod
    def _check_amsgrad(cls, given):
        if "amsgrad" in given and not cls.hyperparameters()["amsgrad"].validate(
                given["amsgrad"]):
            raise ValueError("invalid amsgrad: False (AMSGrad always keeps the maximum; "
                             "use Adam for Adam without it)")

    def _configure(self, given):
        self._check_amsgrad(given)
        return super()._configure(given)


@register
class Adamax(StepCounter, Optimizer):
    r"""Adamax: Adam with the infinity norm of the gradients as its normaliser.

    Parameters
    ----------
    beta1_halflife : float, default 7
        Half-life, in updates, of the average of the gradient (> 0);
        :math:`\beta_1 \approx 0.906`.
    beta2_halflife : float, default 69
        Half-life, in updates, of the decay of the running maximum (> 0);
        :math:`\beta_2 \approx 0.990`.
    rms_regularizer : float, default 1e-8
        :math:`\epsilon` (>= 0), added to :math:`|g|` inside the maximum.
    regularizer_in_max : bool, default True
        Add :math:`\epsilon` to :math:`|g|` inside the maximum (True, as
        torch and optax) or to the maximum itself (False, as PyMC).
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
    Kingma and Ba (2015), Algorithm 2: the :math:`L^p` norm of Adam's
    second moment as :math:`p \to \infty` becomes an exponentially decaying
    maximum, which needs no bias correction:

    .. math::
        t &\leftarrow t + 1 \\
        m &\leftarrow \beta_1 m + (1 - \beta_1)\, g \\
        u &\leftarrow \max(\beta_2 u, |g| + \epsilon) \\
        \delta &= \frac{\alpha}{1 - \beta_1^t} \frac{m}{u}

    or, with ``regularizer_in_max=False``, :math:`u \leftarrow \max(\beta_2
    u, |g|)` and :math:`\delta = \alpha m / ((1 - \beta_1^t)(u +
    \epsilon))`. The paper has no :math:`\epsilon`.

    Symbols in the code: :math:`m` is the state ``NAME_g1_ewma``, :math:`u`
    ``NAME_g_max``, :math:`t` the optimizer-wide ``t``, :math:`\beta_1` and
    :math:`\beta_2` the shared scalars ``beta1`` and ``beta2``,
    :math:`\epsilon` ``epsilon``, :math:`\alpha` ``learning_rate``. The
    step :math:`\delta` then goes through the base class's momentum, if any.

    .. warning::
        We take half-lives, not decay rates (:math:`\beta_i = e^{-\ln 2 /
        h_i}`; the peers' default ``b2 = 0.999`` is ``beta2_halflife=693``).
        Checked step by step (``tests/test_oracles.py``,
        ``tests/test_oracles_pymc.py``): ``torch.optim.Adamax(lr=a,
        betas=(b1, b2), eps=e)`` and ``optax.adamax(a, b1, b2, eps=e)`` are
        ``Adamax(learning_rate=a, beta1_halflife=h1, beta2_halflife=h2,
        rms_regularizer=e)``; PyMC's ``pm.updates.adamax(learning_rate=a,
        beta1=b1, beta2=b2, epsilon=e)`` adds epsilon to :math:`u` instead:
        ``regularizer_in_max=False`` (bit for bit). torch's ``weight_decay`` adds
        :math:`d p` to the gradient; ours is decoupled.

    References
    ----------
    .. [1] D. P. Kingma and J. Ba (2015). Adam: A method for stochastic
       optimization. ICLR; arXiv:1412.6980, Section 7.1, Algorithm 2.
    """

    HYPERS = BETAS + (
        Hyper("rms_regularizer", 1e-8,
              "epsilon added to the gradient's magnitude inside the running maximum",
              low=0, shared="epsilon"),
        Hyper("regularizer_in_max", True, "add rms_regularizer to the magnitude inside the "
              "maximum (True; torch, optax) or to the maximum (False; PyMC)",
              kind=bool, structural=True),
    )

    def _step(self, param, grad):
        t = self._step_number(param)
        beta1 = self._hyper("beta1", param)
        eps = self._hyper("epsilon", param)
        one = as_float(1, param.dtype)
        g1_ewma = self._state_like(param, "g1_ewma")
        g_max = self._state_like(param, "g_max")
        g1_new = beta1 * g1_ewma + (one - beta1) * grad
        decayed = self._hyper("beta2", param) * g_max
        if self._values["regularizer_in_max"]:
            g_max_new = denom = pt.maximum(decayed, abs(grad) + eps)
        else:
            g_max_new = pt.maximum(decayed, abs(grad))
            denom = g_max_new + eps
        delta = self._hyper("learning_rate", param) / (one - beta1 ** t) * g1_new / denom
        return delta, [(g1_ewma, g1_new), (g_max, g_max_new)]


@register
class NAdam(StepCounter, Optimizer):
    r"""NAdam: Adam with Nesterov momentum, looking one step ahead.

    Parameters
    ----------
    beta1_halflife : float, default 7
        Half-life, in updates, of the average of the gradient (> 0);
        :math:`\beta_1 \approx 0.906`.
    beta2_halflife : float, default 69
        Half-life, in updates, of the average of the squared gradient
        (> 0); :math:`\beta_2 \approx 0.990`.
    rms_regularizer : float, default 1e-8
        :math:`\epsilon`, added to the square root (>= 0).
    mu_decay : float, default 0.004
        :math:`\psi` of the momentum schedule (>= 0), torch's
        ``momentum_decay``.
    mu_schedule : bool, default True
        Warm the momentum up with Dozat's schedule (True, as
        ``torch.optim.NAdam``) or keep :math:`\mu_t = \beta_1` (False, as
        ``optax.nadam``).
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
    Dozat (2016), Algorithm 2, in the form of ``torch.optim.NAdam``: the
    step mixes the current gradient and the momentum with the weights a
    Nesterov look-ahead gives them, under the momentum schedule
    :math:`\mu_t = \beta_1 (1 - \tfrac12\, 0.96^{t \psi})` (Dozat's eq. for
    :math:`\mu_t` with :math:`\psi = 1/250`):

    .. math::
        t &\leftarrow t + 1 \\
        \Pi_t &= \Pi_{t-1}\, \mu_t, \quad \Pi_0 = 1 \\
        m &\leftarrow \beta_1 m + (1 - \beta_1)\, g \\
        v &\leftarrow \beta_2 v + (1 - \beta_2)\, g^2 \\
        \delta &= \alpha\, \frac{\frac{1 - \mu_t}{1 - \Pi_t}\, g +
                  \frac{\mu_{t+1}}{1 - \Pi_t \mu_{t+1}}\, m}
                 {\sqrt{v / (1 - \beta_2^t)} + \epsilon}

    With ``mu_schedule=False``, :math:`\mu_t = \beta_1` and
    :math:`\Pi_t = \beta_1^t`. Dozat's Algorithm 2 also averages :math:`m`
    with :math:`\mu_t` rather than :math:`\beta_1` and scales the corrected
    second moment by :math:`\beta_2`; like torch and optax, we do neither.

    Symbols in the code: :math:`m` is the state ``NAME_g1_ewma``, :math:`v`
    ``NAME_g2_ewma``, :math:`t` the optimizer-wide ``t``, :math:`\Pi_t`
    the optimizer-wide state ``mu_product`` (in the parameters' dtype) and
    ``prod``, :math:`\mu_t` and :math:`\mu_{t+1}` ``mu_t`` and ``mu_next``,
    :math:`\psi` the shared scalar ``mu_decay``, :math:`\beta_1`,
    :math:`\beta_2`, :math:`\epsilon`, :math:`\alpha` ``beta1``, ``beta2``,
    ``epsilon``, ``learning_rate``. The step :math:`\delta` then goes through
    the base class's momentum, if any.

    .. warning::
        We take half-lives, not decay rates (:math:`\beta_i = e^{-\ln 2 /
        h_i}`). Checked step by step (``tests/test_oracles.py``):
        ``torch.optim.NAdam(lr=a, betas=(b1, b2), eps=e, momentum_decay=p)``
        is ``NAdam(learning_rate=a, beta1_halflife=h1, beta2_halflife=h2,
        rms_regularizer=e, mu_decay=p)``, and with
        ``decoupled_weight_decay=True, weight_decay=d`` our
        ``weight_decay=d``; ``optax.nadam(a, b1, b2, eps=e)`` is the same
        with ``mu_schedule=False``.

    References
    ----------
    .. [1] T. Dozat (2016). Incorporating Nesterov momentum into Adam. ICLR
       workshop; Algorithm 2 and its schedule of :math:`\mu_t`.
    .. [2] I. Sutskever, J. Martens, G. Dahl and G. Hinton (2013). On the
       importance of initialization and momentum in deep learning. ICML.
    """

    HYPERS = BETAS + (
        EPSILON,
        Hyper("mu_decay", 0.004, "psi of the momentum schedule beta1 (1 - 0.96^(t psi) / 2)",
              low=0, shared="mu_decay"),
        Hyper("mu_schedule", True, "warm the momentum up (True; torch) or keep it at beta1 "
              "(False; optax)", kind=bool, structural=True),
    )

    def _global_updates(self):
        updates = super()._global_updates()
        if self._values["mu_schedule"]:
            t = pt.cast(self._t_next, self._dtype)   # the parameters' dtype
            beta1 = self._hyper("beta1", t)
            psi = self._hyper("mu_decay", t)
            one, half, base = (as_float(x, self._dtype) for x in (1, 0.5, 0.96))
            prod = self._global_state("mu_product", 1.0, self._dtype)
            self._mu_t = beta1 * (one - half * base ** (t * psi))
            self._mu_next = beta1 * (one - half * base ** ((t + one) * psi))
            self._prod = prod * self._mu_t
            updates.append((prod, self._prod))
        return updates

    def _step(self, param, grad):
        t = self._step_number(param)
        beta1 = self._hyper("beta1", param)
        beta2 = self._hyper("beta2", param)
        one = as_float(1, param.dtype)
        if self._values["mu_schedule"]:
            mu_t, mu_next, prod, prod_next = (as_float(x, param.dtype) for x in (
                self._mu_t, self._mu_next, self._prod, self._prod * self._mu_next))
        else:
            mu_t = mu_next = beta1
            prod, prod_next = beta1 ** t, beta1 ** (t + one)
        g1_ewma = self._state_like(param, "g1_ewma")
        g2_ewma = self._state_like(param, "g2_ewma")
        g1_new = beta1 * g1_ewma + (one - beta1) * grad
        g2_new = beta2 * g2_ewma + (one - beta2) * grad * grad
        numer = (one - mu_t) / (one - prod) * grad + mu_next / (one - prod_next) * g1_new
        denom = pt.sqrt(g2_new / (one - beta2 ** t)) + self._hyper("epsilon", param)
        delta = self._hyper("learning_rate", param) * numer / denom
        return delta, [(g1_ewma, g1_new), (g2_ewma, g2_new)]


@register
class RAdam(StepCounter, Optimizer):
    r"""RAdam: Adam whose adaptive step is rectified while its variance is large.

    Parameters
    ----------
    beta1_halflife : float, default 7
        Half-life, in updates, of the average of the gradient (> 0);
        :math:`\beta_1 \approx 0.906`.
    beta2_halflife : float, default 69
        Half-life, in updates, of the average of the squared gradient
        (> 0); :math:`\beta_2 \approx 0.990`.
    rms_regularizer : float, default 1e-8
        :math:`\epsilon`, added to the square root (>= 0).
    radam_threshold : float, default 5
        :math:`\rho^*` (>= 4): the adaptive step is taken once
        :math:`\rho_t > \rho^*`, plain momentum steps before.
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
    Liu et al. (2020), Algorithm 2. :math:`\rho_t` is the length of the
    simple moving average that Adam's exponential average of :math:`g^2`
    approximates after :math:`t` steps; while it is short, the
    variance of the adaptive learning rate is large (divergent for
    :math:`\rho_t \le 4`) and the step is plain bias-corrected momentum;
    after, the adaptive step is scaled by the rectification :math:`r_t`:

    .. math::
        \rho_\infty &= \frac{2}{1 - \beta_2} - 1, \qquad
        \rho_t = \rho_\infty - \frac{2 t \beta_2^t}{1 - \beta_2^t} \\
        m &\leftarrow \beta_1 m + (1 - \beta_1)\, g, \qquad
        v \leftarrow \beta_2 v + (1 - \beta_2)\, g^2 \\
        r_t &= \sqrt{\frac{(\rho_t - 4)(\rho_t - 2)\, \rho_\infty}
                          {(\rho_\infty - 4)(\rho_\infty - 2)\, \rho_t}} \\
        \delta &= \begin{cases}
            \alpha\, r_t\, \frac{m / (1 - \beta_1^t)}{\sqrt{v / (1 - \beta_2^t)}
                + \epsilon} & \rho_t > \rho^* \\
            \alpha\, m / (1 - \beta_1^t) & \text{otherwise}
            \end{cases}

    The paper's threshold is 4; its authors' code, torch and optax use 5,
    our default. The first steps (five with :math:`\beta_2 = 0.999`, six
    with the default) are momentum steps of the raw gradient: a learning
    rate fit for the adaptive steps can throw them far where gradients are
    large (Rosenbrock's start); ``max_gradient_norm`` bounds them. With
    :math:`\beta_2 \le 0.6` (a half-life under 1.4), :math:`\rho_\infty \le
    4` and the step is never rectified: RAdam is then momentum SGD.

    Symbols in the code: :math:`m` is the state ``NAME_g1_ewma``, :math:`v`
    ``NAME_g2_ewma``, :math:`t` the optimizer-wide ``t``,
    :math:`\rho_\infty` ``rho_inf``, :math:`\rho_t` ``rho_t``, :math:`r_t`
    ``rect``, :math:`\rho^*` the shared scalar ``radam_threshold``,
    :math:`\beta_1`, :math:`\beta_2`, :math:`\epsilon`, :math:`\alpha`
    ``beta1``, ``beta2``, ``epsilon``, ``learning_rate``. The step
    :math:`\delta` then goes through the base class's momentum, if any.

    .. warning::
        We take half-lives, not decay rates (:math:`\beta_i = e^{-\ln 2 /
        h_i}`). Checked step by step (``tests/test_oracles.py``):
        ``optax.radam(a, b1, b2, eps=e, threshold=r)`` is
        ``RAdam(learning_rate=a, beta1_halflife=h1, beta2_halflife=h2,
        rms_regularizer=e, radam_threshold=r)`` (optax rectifies at
        :math:`\rho_t \ge \rho^*`, the same unless :math:`\rho_t` equals it).
        ``torch.optim.RAdam(lr=a, betas=(b1, b2), eps=e)`` adds eps to
        :math:`\sqrt{v}` before the correction, i.e. divides by
        :math:`\sqrt{\hat v} + \epsilon / \sqrt{1 - \beta_2^t}`: it is ours
        exactly only with ``eps=0`` and ``rms_regularizer=0`` (with
        ``decoupled_weight_decay=True, weight_decay=d``, our
        ``weight_decay=d``).

    References
    ----------
    .. [1] L. Liu, H. Jiang, P. He, W. Chen, X. Liu, J. Gao and J. Han (2020).
       On the variance of the adaptive learning rate and beyond. ICLR;
       arXiv:1908.03265, Algorithm 2.
    """

    HYPERS = BETAS + (
        EPSILON,
        Hyper("radam_threshold", 5.0, "rho_t above which the adaptive step is taken",
              low=4, shared="radam_threshold"),
    )

    def _step(self, param, grad):
        t = self._step_number(param)
        beta1 = self._hyper("beta1", param)
        beta2 = self._hyper("beta2", param)
        one, two, four = (as_float(x, param.dtype) for x in (1, 2, 4))
        g1_ewma = self._state_like(param, "g1_ewma")
        g2_ewma = self._state_like(param, "g2_ewma")
        g1_new = beta1 * g1_ewma + (one - beta1) * grad
        g2_new = beta2 * g2_ewma + (one - beta2) * grad * grad
        beta2_t = beta2 ** t
        rho_inf = two / (one - beta2) - one
        rho_t = rho_inf - two * t * beta2_t / (one - beta2_t)
        # clamped at 0 where rho_t <= 4: that branch is not taken
        rect = pt.sqrt(pt.maximum(
            (rho_t - four) * (rho_t - two) * rho_inf
            / ((rho_inf - four) * (rho_inf - two) * rho_t), as_float(0, param.dtype)))
        m_hat = g1_new / (one - beta1 ** t)
        adaptive = rect * m_hat / (pt.sqrt(g2_new / (one - beta2_t))
                                   + self._hyper("epsilon", param))
        taken = pt.switch(rho_t > self._hyper("radam_threshold", param), adaptive, m_hat)
        delta = self._hyper("learning_rate", param) * taken
        return delta, [(g1_ewma, g1_new), (g2_ewma, g2_new)]
