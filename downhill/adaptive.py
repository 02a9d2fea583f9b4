"""Optimizers that adapt the step size per parameter element."""

import numpy as np
import pytensor
import pytensor.tensor as pt

from .base import Optimizer
from .compat import normal_with_next_rng, pullback, pushforward
from .hyperparams import Hyper, is_number
from .registry import register
from .util import as_float, halflife_to_decay

__all__ = ["RMSProp", "RProp", "ADAGRAD", "ADADELTA", "ESGD", "Adam"]


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
        As for :class:`~downhill.Optimizer`.
    **hyperparameters
        Also defaults for the common hyperparameters (``learning_rate``,
        ``momentum``, ``nesterov``, ``weight_decay``, clipping limits,
        early stopping, ``on_nonfinite``), listed with their ranges by
        :meth:`~downhill.Optimizer.hyperparameters` and
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


@register
class RProp(Optimizer):
    r"""Resilient backpropagation: steps of a per-element size, signs only.

    Parameters
    ----------
    rprop_increase : float, default 1.01
        :math:`\eta^+`, factor growing the step size where the gradient kept
        its sign (>= 1).
    rprop_decrease : float, default 0.99
        :math:`\eta^-`, factor shrinking the step size where the gradient
        changed sign (0 < x <= 1).
    rprop_min_step : float, default 0
        :math:`\Delta_{min}`, smallest step size (>= 0, at most
        ``rprop_max_step``).
    rprop_max_step : float, default 100
        :math:`\Delta_{max}`, largest step size (> 0).
    learning_rate
        The initial step size :math:`\Delta_0` of every element; see the
        note below.
    loss, params, inputs, updates, monitors, monitor_gradients, mode
        As for :class:`~downhill.Optimizer`.
    **hyperparameters
        Also defaults for the common hyperparameters (``momentum``,
        ``nesterov``, ``weight_decay``, clipping limits, early stopping,
        ``on_nonfinite``), listed with their ranges by
        :meth:`~downhill.Optimizer.hyperparameters` and
        ``downhill algorithms``.

    Notes
    -----
    The iRprop- variant of Igel and Hüsken (2000). Each element of the
    parameter has its own step size :math:`\Delta`, which grows while the
    gradient :math:`g` keeps its sign and shrinks when it flips; only the
    sign of the gradient is used. With :math:`\tau = g \, g_{prev}`
    (elementwise):

    .. math::
        \Delta &\leftarrow \mathrm{clip}\left(
            \begin{cases}
            \eta^+ \Delta & \tau > 0 \\
            \eta^- \Delta & \tau < 0 \\
            \Delta & \tau = 0
            \end{cases}, \Delta_{min}, \Delta_{max}\right) \\
        \tilde g &= \begin{cases} 0 & \tau < 0 \\ g & \text{otherwise}
            \end{cases} \\
        g_{prev} &\leftarrow \tilde g \\
        \delta &= \mathrm{sign}(\tilde g)\, \Delta

    so where the sign flipped the element does not move this step, and the
    next step treats it as a fresh start (:math:`\tau = 0`).

    Symbols in the code: :math:`g_{prev}` is the state ``NAME_grad``,
    :math:`\Delta` the state ``NAME_step``, :math:`\tau` ``test``,
    :math:`\tilde g` ``grad_used``, :math:`\eta^\pm` the shared scalars
    ``step_increase`` and ``step_decrease``, :math:`\Delta_{min}` and
    :math:`\Delta_{max}` ``min_step`` and ``max_step``. The step
    :math:`\delta` then goes through the base class's momentum, if any.

    .. note::
        The step sizes start at the ``learning_rate`` in force when the
        step graph is first built (the first
        :meth:`~downhill.Optimizer.get_updates`,
        :meth:`~downhill.Optimizer.iterate` or
        :meth:`~downhill.Optimizer.minimize` call; for a schedule, its
        value at that update), as in the original downhill; after that
        ``learning_rate`` has no effect on the steps, the step sizes being
        state that carries over between calls. It does scale
        ``weight_decay`` (``p <- p - learning_rate * weight_decay * p``), as
        for every algorithm.

    References
    ----------
    .. [1] M. Riedmiller and H. Braun (1993). A direct adaptive method for
       faster backpropagation learning: the RPROP algorithm. IEEE
       International Conference on Neural Networks, 586-591.
    .. [2] C. Igel and M. Hüsken (2000). Improving the Rprop learning
       algorithm. Second International Symposium on Neural Computation,
       115-121: the iRprop- variant (Rprop without weight-backtracking, the
       stored derivative set to 0 after a sign change).
    """

    HYPERS = (
        Hyper("rprop_increase", 1.01, "step size factor where the gradient keeps its sign",
              low=1, shared="step_increase"),
        Hyper("rprop_decrease", 0.99, "step size factor where the gradient flips its sign",
              low=0, high=1, low_open=True, shared="step_decrease"),
        Hyper("rprop_min_step", 0.0, "smallest step size", low=0, shared="min_step"),
        Hyper("rprop_max_step", 100.0, "largest step size",
              low=0, low_open=True, shared="max_step"),
    )

    def _configure(self, given):
        values = dict(self._defaults)
        values.update(self._check_hypers(given))
        # numbers only: a schedule's or a PyTensor value's steps meet in the graph's clip
        if is_number(values["rprop_min_step"]) and is_number(values["rprop_max_step"]) \
                and values["rprop_min_step"] > values["rprop_max_step"]:
            raise ValueError(
                f"invalid rprop_min_step: {values['rprop_min_step']!r} (must be <= "
                f"rprop_max_step, which is {values['rprop_max_step']!r})")
        return super()._configure(given)

    def _step(self, param, grad):
        one = as_float(1, param.dtype)
        zero = as_float(0, param.dtype)
        grad_prev = self._state_like(param, "grad")
        # the learning rate in force (a schedule's current value, if one is given)
        initial = self._groups.current("learning_rate", param)
        step = self._state_like(param, "step", value=initial)
        test = grad * grad_prev
        factor = pt.switch(test > zero, self._hyper("step_increase", param),
                           pt.switch(test < zero, self._hyper("step_decrease", param), one))
        step_new = pt.clip(step * factor, self._hyper("min_step", param),
                           self._hyper("max_step", param))
        grad_used = pt.switch(test < zero, zero, grad)
        delta = pt.sign(grad_used) * step_new
        return delta, [(grad_prev, grad_used), (step, step_new)]


@register
class ADAGRAD(Optimizer):
    r"""ADAGRAD: scale steps by the root of the summed squared gradients.

    Parameters
    ----------
    rms_regularizer : float, default 1e-8
        :math:`\epsilon`, added under the square root (>= 0).
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
    The diagonal form of Duchi et al. (2011). The sum :math:`G` of the
    squared gradients :math:`g` only grows, so the steps shrink over time:

    .. math::
        G &\leftarrow G + g^2 \\
        \delta &= \frac{\alpha\, g}{\sqrt{G + \epsilon}}

    Symbols in the code: :math:`G` is the state ``NAME_g2_acc``,
    :math:`\epsilon` the shared scalar ``epsilon``, :math:`\alpha`
    ``learning_rate``. The step :math:`\delta` then goes through the base
    class's momentum, if any.

    .. warning::
        :math:`\epsilon` sits *inside* the square root, as in the original
        downhill's code (its docstring put it outside).
        ``torch.optim.Adagrad`` and ``optax.adagrad`` add eps *outside* the
        root (and optax starts :math:`G` at 0.1).

    References
    ----------
    .. [1] J. Duchi, E. Hazan and Y. Singer (2011). Adaptive subgradient
       methods for online learning and stochastic optimization. Journal of
       Machine Learning Research 12, 2121-2159: the diagonal-matrix version
       (the paper adds its regularizer outside the square root).
    """

    HYPERS = (
        Hyper("rms_regularizer", 1e-8, "epsilon added under the square root",
              low=0, shared="epsilon"),
    )

    def _step(self, param, grad):
        g2_acc = self._state_like(param, "g2_acc")
        g2_new = g2_acc + grad * grad
        delta = (self._hyper("learning_rate", param) * grad
                 / pt.sqrt(g2_new + self._hyper("epsilon", param)))
        return delta, [(g2_acc, g2_new)]


@register
class ADADELTA(Optimizer):
    r"""ADADELTA: steps in the units of the parameter, without a learning rate.

    Parameters
    ----------
    rms_halflife : float, default 14
        Half-life, in updates, of the moving averages (> 0).
    rms_regularizer : float, default 1e-8
        :math:`\epsilon`, added under both square roots (>= 0).
    loss, params, inputs, updates, monitors, monitor_gradients, mode
        As for :class:`~downhill.Optimizer`.
    **hyperparameters
        Also defaults for the common hyperparameters (``momentum``,
        ``nesterov``, ``weight_decay``, clipping limits, early stopping,
        ``on_nonfinite``), listed with their ranges by
        :meth:`~downhill.Optimizer.hyperparameters` and
        ``downhill algorithms``.
    learning_rate
        Has **no effect on the step**: as in the paper and the original
        downhill, ADADELTA has no learning rate. It does scale
        ``weight_decay`` (``p <- p - learning_rate * weight_decay * p``), as
        for every algorithm.

    Notes
    -----
    Zeiler (2012), Algorithm 1. With :math:`\gamma = e^{-\ln 2 / h}` for
    half-life :math:`h`, it keeps exponentially weighted averages of the
    squared gradient :math:`g` and of the squared step :math:`\delta`, and
    scales the gradient by the ratio of their roots:

    .. math::
        s &\leftarrow \gamma s + (1 - \gamma)\, g^2 \\
        \delta &= g\, \frac{\sqrt{x + \epsilon}}{\sqrt{s + \epsilon}} \\
        x &\leftarrow \gamma x + (1 - \gamma)\, \delta^2

    (:math:`\delta` uses the average :math:`x` of the *previous* steps).
    Symbols in the code: :math:`s` is the state ``NAME_g2_ewma``, :math:`x`
    ``NAME_x2_ewma``, :math:`\gamma` the shared scalar ``ewma``,
    :math:`\epsilon` ``epsilon``. The step :math:`\delta` then goes through
    the base class's momentum, if any; :math:`x` averages :math:`\delta`
    before momentum.

    .. warning::
        ``torch.optim.Adadelta`` multiplies :math:`\delta` by a learning
        rate ``lr`` (default 1.0) and takes a decay rate ``rho`` where we
        take a half-life (``rho = exp(-ln 2 / rms_halflife)``); its default
        eps is 1e-6.

    References
    ----------
    .. [1] M. D. Zeiler (2012). ADADELTA: An adaptive learning rate method.
       arXiv:1212.5701, Algorithm 1.
    """

    HYPERS = (
        Hyper("rms_halflife", 14.0, "half-life in updates of the moving averages",
              low=0, low_open=True, shared="ewma", transform=halflife_to_decay),
        Hyper("rms_regularizer", 1e-8, "epsilon added under both square roots",
              low=0, shared="epsilon"),
    )

    def _step(self, param, grad):
        gamma = self._hyper("ewma", param)
        eps = self._hyper("epsilon", param)
        one = as_float(1, param.dtype)
        g2_ewma = self._state_like(param, "g2_ewma")
        x2_ewma = self._state_like(param, "x2_ewma")
        g2_new = gamma * g2_ewma + (one - gamma) * grad * grad
        delta = grad * pt.sqrt(x2_ewma + eps) / pt.sqrt(g2_new + eps)
        x2_new = gamma * x2_ewma + (one - gamma) * delta * delta
        return delta, [(g2_ewma, g2_new), (x2_ewma, x2_new)]


@register
class ESGD(Optimizer):
    r"""Equilibrated SGD: scale steps by an estimate of the Hessian's row norms.

    Parameters
    ----------
    rms_halflife : float, default 14
        Half-life, in updates, of the moving average (> 0).
    rms_regularizer : float, default 1e-8
        :math:`\epsilon`, added to the square root (>= 0).
    hv_method : {'rop', 'lop', 'grad'}, default 'rop'
        How to compute the Hessian-vector product :math:`Hv`: a forward-mode
        product (``pytensor.gradient.pushforward``, the R-operator), a
        reverse-mode one (``pullback``, the L-operator; :math:`v^T H = Hv`
        since :math:`H` is symmetric), or the gradient of
        :math:`g \cdot v`. All three give the same values; they differ in
        the graph built. Also accepted as a constructor keyword.
    seed : int, default 0
        Seed of the random draws (>= 0). Runs with the same seed are
        reproducible. Also accepted as a constructor keyword; passing it to
        :meth:`~downhill.Optimizer.iterate`,
        :meth:`~downhill.Optimizer.minimize` or
        :meth:`~downhill.Optimizer.get_updates` re-seeds the generators,
        so the draws start over; calls that do not pass it continue the
        current stream, and so does the first call after a state is loaded
        (:meth:`~downhill.Optimizer.load`, ``resume=True``) when it passes
        the seed that state was saved with.
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
    Dauphin et al. (2015), Algorithm 1. Every step draws
    :math:`v \sim \mathcal N(0, 1)` shaped like the parameter; since
    :math:`E[(Hv)_i^2] = \lVert H_{i,:} \rVert^2`, the moving average
    :math:`D` of :math:`(Hv)^2` estimates the squared row norms of the
    Hessian :math:`H` (the equilibration preconditioner). With
    :math:`\gamma = e^{-\ln 2 / h}` for half-life :math:`h`:

    .. math::
        v &\sim \mathcal N(0, I) \\
        D &\leftarrow \gamma D + (1 - \gamma)\, (H v)^2 \\
        \delta &= \frac{\alpha\, g}{\sqrt{D} + \epsilon}

    Symbols in the code: :math:`v` is ``v``, :math:`Hv` ``hv``, :math:`D` the
    state ``NAME_D_ewma``, :math:`\gamma` the shared scalar ``ewma``,
    :math:`\epsilon` ``epsilon``, :math:`\alpha` ``learning_rate``. The step
    :math:`\delta` then goes through the base class's momentum, if any.

    :math:`H` is the block of the loss's Hessian for this parameter alone
    (as in the original downhill), computed from the *unclipped* gradient:
    clipping changes :math:`g` in :math:`\delta`, not the curvature
    estimate. Here :math:`D` is a moving average, as in the original
    downhill, where the paper sums :math:`(Hv)^2` and divides by the step
    count. With a Hessian of zero (a loss linear in the parameter)
    :math:`D = 0` and the step is :math:`\alpha g / \epsilon`.

    With gradient accumulation (``accumulate=k``) one vector :math:`v` is
    drawn per step, and each micro-batch's :math:`Hv` with it is averaged
    with the gradients' weights: the product of the whole step's batch, as
    one batch of all the samples would give it (see
    :mod:`downhill.accumulate`).

    The average starts at zero and is not bias-corrected, so the first
    steps are larger, by up to :math:`1 / \sqrt{1 - \gamma}` (about 4.5 with
    the default half-life), and a draw with small :math:`|Hv|` makes one
    larger still. On easy problems this occasionally throws the parameters
    far out before the average settles (in our measurements, about 1 run in
    400 of a small linear regression with ``learning_rate=0.05``); a
    smaller learning rate, ``max_gradient_norm`` or a warm-up schedule
    avoid it.

    The draws of parameter ``i`` come from its own NumPy generator,
    ``numpy.random.default_rng(numpy.random.SeedSequence(seed,
    spawn_key=(i,)))``, held in the state variable ``NAME_rng`` and
    advanced by every step.

    .. warning::
        :math:`\epsilon` is added *outside* the square root here, unlike
        :class:`RMSProp`, :class:`ADAGRAD` and :class:`ADADELTA`.

    References
    ----------
    .. [1] Y. N. Dauphin, H. de Vries and Y. Bengio (2015). Equilibrated
       adaptive learning rates for non-convex optimization. NIPS;
       arXiv:1502.04390, Algorithm 1.
    """

    HYPERS = (
        Hyper("rms_halflife", 14.0, "half-life in updates of the curvature average",
              low=0, low_open=True, shared="ewma", transform=halflife_to_decay),
        Hyper("rms_regularizer", 1e-8, "epsilon added to the square root",
              low=0, shared="epsilon"),
        Hyper("hv_method", "rop", "how to compute the Hessian-vector product",
              kind=str, choices=("rop", "lop", "grad"), structural=True),
        Hyper("seed", 0, "seed of the random vectors; passing it re-seeds",
              kind=int, low=0),
    )

    @staticmethod
    def _generator(seed, index):
        return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index,)))


    def _configure(self, given):
        previous = self._values["seed"] if hasattr(self, "_values") else None
        values = super()._configure(given)
        # a run resumed from a state (load, or iterate(resume=True)) with the
        # seed it was saved with continues its draws
        run = self.__dict__.get("_run")
        resuming = run is not None and run.resumed and values["seed"] == previous
        if "seed" in given and not resuming:
            for (index, suffix), var in self._state.items():
                if suffix == "rng":
                    var.set_value(self._generator(values["seed"], index))
        return values

    def _step(self, param, grad):
        rng = self._variables.generator(
            param, lambda i: self._generator(self._values["seed"], i))
        rng_new, v = normal_with_next_rng(rng, param.shape, param.dtype)
        method = self._values["hv_method"]

        def product(raw):  # Hv from the unclipped gradient of a batch
            if method == "rop":
                return pushforward(raw, param, v, disconnected_outputs="ignore")
            if method == "lop":
                return pullback(raw, param, v, disconnected_inputs="ignore")
            return pytensor.grad((raw * v).sum(), param, disconnected_inputs="ignore")
        hv = self._linear_term(param, "hv", product)
        gamma = self._hyper("ewma", param)
        one = as_float(1, param.dtype)
        d_ewma = self._state_like(param, "D_ewma")
        d_new = gamma * d_ewma + (one - gamma) * hv * hv
        delta = (self._hyper("learning_rate", param) * grad
                 / (pt.sqrt(d_new) + self._hyper("epsilon", param)))
        return delta, [(rng, rng_new), (d_ewma, d_new)]


@register
class Adam(Optimizer):
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
        paper's correction. Unlike ``torch.optim.Adam`` (``betas=(0.9,
        0.999)``) we take half-lives, not decay rates, and the defaults
        differ: the default :math:`\beta_2 \approx 0.990`.

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

    def _global_updates(self):
        t = self._global_state("t")
        self._t_next = t + 1
        return [(t, self._t_next)]

    def _step(self, param, grad):
        t = as_float(self._t_next, param.dtype)
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
