"""Adaptive per-element step sizes: RMSProp, RProp, ADAGRAD, ADADELTA and
PyMC's windowed ADAGRAD (``adagrad_window``).

Each element of a parameter gets its own step size from the history of
its gradient (a running average or sum of squares, or the signs of
successive gradients); there is no first-moment (momentum-like) average
of the gradient here: the base class's ``momentum`` adds one.
"""

import pytensor.tensor as pt

from ..base import Optimizer
from ..hyperparams import Hyper, is_number
from ..registry import register
from ..util import as_float, halflife_to_decay
from .common import StepCounter, in_root, root_plus_epsilon

__all__ = ["RMSProp", "RProp", "ADAGRAD", "ADADELTA", "AdagradWindow"]


@register
class RMSProp(Optimizer):
    r"""RMSProp: scale steps by a running estimate of the gradient's spread.

    Parameters
    ----------
    rms_halflife : float, default 14
        Half-life, in updates, of the moving averages (> 0).
    rms_regularizer : float, default 1e-8
        :math:`\epsilon`, added under the square root (>= 0).
    centered : bool, default True
        Divide by the standard deviation (Graves's centred form, True) or by
        the root mean square (Tieleman and Hinton's form, False) of the
        gradient.
    regularizer_in_root : bool, default True
        Add :math:`\epsilon` under the square root (True) or to the root
        (False, as ``torch.optim.RMSprop``).
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
    By default the centred form of Graves (2013), eqs. 38-45. With
    :math:`\gamma = e^{-\ln 2 / h}` for half-life :math:`h`, each update
    keeps exponentially weighted averages of the gradient :math:`g` and of
    its square, and divides the step by the resulting standard deviation:

    .. math::
        f &\leftarrow \gamma f + (1 - \gamma)\, g \\
        s &\leftarrow \gamma s + (1 - \gamma)\, g^2 \\
        \delta &= \frac{\alpha\, g}{\sqrt{\max(s - f^2, 0) + \epsilon}}

    With ``centered=False`` :math:`f` is neither kept nor subtracted (the
    root mean square :math:`\sqrt{s + \epsilon}`), and with
    ``regularizer_in_root=False`` the denominator is
    :math:`\sqrt{\max(s - f^2, 0)} + \epsilon` (or
    :math:`\sqrt{s} + \epsilon`).

    Symbols in the code: :math:`f` is the state ``NAME_g1_ewma``, :math:`s`
    ``NAME_g2_ewma``, :math:`\gamma` the shared scalar ``ewma``,
    :math:`\epsilon` ``epsilon``, :math:`\alpha` ``learning_rate``, the
    denominator ``rms``. The step :math:`\delta` then goes through the base
    class's momentum, if any.

    The clamp at zero is ours: in float32, rounding makes :math:`s - f^2`
    slightly negative for large, nearly constant gradients, which the
    original library turned into NaN.

    .. warning::
        By default :math:`\epsilon` sits *inside* the square root and the
        variance is centred. We take a half-life where the peers take a
        decay rate: ``alpha`` (torch) or ``decay`` (optax)
        :math:`= \gamma = e^{-\ln 2 / h}`, i.e.
        ``rms_halflife = -ln 2 / ln(alpha)``. Checked step by step
        (``tests/test_oracles.py``):

        * ``torch.optim.RMSprop(lr=a, alpha=g, eps=e, centered=c,
          momentum=m)`` is ``RMSProp(learning_rate=a, rms_halflife=h,
          rms_regularizer=e, centered=c, regularizer_in_root=False,
          momentum=m)``: torch adds eps *outside* the root. Its
          ``weight_decay`` adds ``weight_decay * p`` to the gradient
          (coupled), unlike ours.
        * ``optax.rmsprop(a, decay=g, eps=e, eps_in_sqrt=r, centered=c,
          momentum=m, nesterov=n)`` is ``RMSProp(learning_rate=a,
          rms_halflife=h, rms_regularizer=e, regularizer_in_root=r,
          centered=c, momentum=m, nesterov=n)`` (optax's defaults are
          ``eps_in_sqrt=True``, ``centered=False``).
        * PyMC's ``pm.updates.rmsprop(learning_rate=a, rho=g, epsilon=e)``
          is ``RMSProp(learning_rate=a, rms_halflife=h, rms_regularizer=e,
          centered=False)`` (``tests/test_oracles_pymc.py``).

        Neither peer clamps :math:`s - f^2` at zero: where rounding makes
        it negative, they give a larger step or NaN.

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
        Hyper("centered", True, "divide by the standard deviation (True) or the root mean "
              "square (False) of the gradient", kind=bool, structural=True),
        in_root(True, peers="torch.optim.RMSprop: False"),
    )

    def _step(self, param, grad):
        gamma = self._hyper("ewma", param)
        one = as_float(1, param.dtype)
        state = []
        if self._values["centered"]:
            f = self._state_like(param, "g1_ewma")
            f_new = gamma * f + (one - gamma) * grad
            state.append((f, f_new))
        s = self._state_like(param, "g2_ewma")
        s_new = gamma * s + (one - gamma) * grad * grad
        state.append((s, s_new))
        var = s_new
        if self._values["centered"]:
            var = pt.maximum(s_new - f_new * f_new, as_float(0, param.dtype))
        rms = root_plus_epsilon(var, self._hyper("epsilon", param),
                                self._values["regularizer_in_root"])
        delta = self._hyper("learning_rate", param) * grad / rms
        return delta, state


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

    .. warning::
        Peers, checked step by step (``tests/test_oracles.py``):
        ``torch.optim.Rprop(lr=a, etas=(d, i), step_sizes=(lo, hi))`` is
        ``RProp(learning_rate=a, rprop_decrease=d, rprop_increase=i,
        rprop_min_step=lo, rprop_max_step=hi)``, bit for bit (torch's
        defaults are ``etas=(0.5, 1.2)``, ``step_sizes=(1e-6, 50)``; ours are
        gentler). ``optax.rprop`` 0.2.8 returns the *previous* step's update
        (google-deepmind/optax pull request 1725: its first step does not
        move) and leaves :math:`\Delta` unclipped where :math:`\tau = 0`;
        it is not a counterpart.

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
    regularizer_in_root : bool, default True
        Add :math:`\epsilon` under the square root (True) or to the root
        (False, as ``torch.optim.Adagrad`` and the paper).
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

    or, with ``regularizer_in_root=False``,
    :math:`\delta = \alpha g / (\sqrt{G} + \epsilon)`.

    Symbols in the code: :math:`G` is the state ``NAME_g2_acc``,
    :math:`\epsilon` the shared scalar ``epsilon``, :math:`\alpha`
    ``learning_rate``. The step :math:`\delta` then goes through the base
    class's momentum, if any.

    .. warning::
        By default :math:`\epsilon` sits *inside* the square root, as in the
        original downhill's code (its docstring put it outside). The peers,
        checked step by step (``tests/test_oracles.py``):

        * ``optax.adagrad(a, initial_accumulator_value=0, eps=e)`` is
          ``ADAGRAD(learning_rate=a, rms_regularizer=e)``: optax too adds
          eps *inside* the root, but starts :math:`G` at
          ``initial_accumulator_value``, 0.1 by default (we start at 0).
        * ``torch.optim.Adagrad(lr=a, eps=e)`` (``lr_decay=0``,
          ``initial_accumulator_value=0``, its defaults) is
          ``ADAGRAD(learning_rate=a, rms_regularizer=e,
          regularizer_in_root=False)``: torch adds eps *outside* the root.
        * PyMC's ``pm.updates.adagrad(learning_rate=a, epsilon=e)`` adds it
          inside, as we do (``ADAGRAD(learning_rate=a, rms_regularizer=e)``).

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
        in_root(True, peers="torch.optim.Adagrad: False"),
    )

    def _step(self, param, grad):
        g2_acc = self._state_like(param, "g2_acc")
        g2_new = g2_acc + grad * grad
        delta = (self._hyper("learning_rate", param) * grad
                 / root_plus_epsilon(g2_new, self._hyper("epsilon", param),
                                     self._values["regularizer_in_root"]))
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
        ``torch.optim.Adadelta`` and ``optax.adadelta`` multiply
        :math:`\delta` by a learning rate (``lr``, default 1.0 in torch) and
        take a decay rate ``rho`` where we take a half-life
        (``rho = exp(-ln 2 / rms_halflife)``); their default eps is 1e-6.
        Both add eps under both roots, as we do. Checked step by step
        (``tests/test_oracles.py``): ``torch.optim.Adadelta(lr=1, rho=r,
        eps=e)`` and ``optax.adadelta(1.0, rho=r, eps=e)`` are
        ``ADADELTA(rms_halflife=h, rms_regularizer=e)``, and so is PyMC's
        ``pm.updates.adadelta(learning_rate=1, rho=r, epsilon=e)``.

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


@register(name="adagrad_window")
class AdagradWindow(StepCounter, Optimizer):
    r"""PyMC's windowed ADAGRAD: scale steps by the root of the last few squared gradients.

    The default optimizer of ``pm.fit`` (``pm.adagrad_window``): ADAGRAD
    whose sum covers only the last :math:`n` gradients, so that the steps
    do not shrink for ever.

    Parameters
    ----------
    window : int, default 10
        :math:`n`, how many past squared gradients are summed (>= 1), PyMC's
        ``n_win``. It sets the shape of the state: fixed once the state is
        made.
    rms_regularizer : float, default 0.1
        :math:`\epsilon`, added under the square root (>= 0); PyMC's default.
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
    A ring buffer :math:`W` of the last :math:`n` squared gradients (zeros
    before the first :math:`n` steps), written at position :math:`t \bmod
    n` of step :math:`t` (counted from 0):

    .. math::
        W_{t \bmod n} &\leftarrow g^2 \\
        \delta &= \frac{\alpha\, g}{\sqrt{\sum_{k=0}^{n-1} W_k + \epsilon}} \\
        t &\leftarrow t + 1

    Symbols in the code: :math:`W` is the state ``NAME_g2_window`` (the
    parameter's shape with an axis of length :math:`n` after it),
    :math:`t` the optimizer-wide ``t``, :math:`t \bmod n` ``slot``,
    :math:`\epsilon` the shared scalar ``epsilon``, :math:`\alpha`
    ``learning_rate``. The step :math:`\delta` then goes through the base
    class's momentum, if any. It keeps :math:`n` times the parameters'
    memory.

    .. warning::
        PyMC's ``pm.adagrad_window(learning_rate=a, epsilon=e, n_win=n)``
        is ``build('adagrad_window', ..., learning_rate=a,
        rms_regularizer=e, window=n)``, checked step by step
        (``tests/test_oracles_pymc.py``); note that downhill's default
        learning rate (1e-4) is not PyMC's (1e-3): for ``pm.fit``, give
        ``downhill.updates('adagrad_window', learning_rate=1e-3)``. PyMC
        keeps a float position counter per parameter; we keep one integer
        step counter for the optimizer. torch and optax have no such rule.

    References
    ----------
    .. [1] PyMC developers. ``pymc.variational.updates.adagrad_window``
       (PyMC 5.28), the default ``obj_optimizer`` of ``pymc.fit``.
    .. [2] J. Duchi, E. Hazan and Y. Singer (2011). Adaptive subgradient
       methods for online learning and stochastic optimization. Journal of
       Machine Learning Research 12, 2121-2159.
    """

    HYPERS = (
        Hyper("window", 10, "how many past squared gradients are summed (fixed once the "
              "state is made)", kind=int, low=1, structural=True),
        Hyper("rms_regularizer", 0.1, "epsilon added under the square root",
              low=0, shared="epsilon"),
    )

    def _configure(self, given):
        window = dict(self._defaults, **self._check_hypers(given))["window"]
        variables = self.__dict__.get("_variables")
        made = [v for (_, suffix), v in variables.variables.items()
                if suffix == "g2_window"] if variables else []
        if made and made[0].type.shape[-1] != window:
            raise ValueError(
                f"invalid window: {window!r} (this optimizer's state keeps "
                f"{made[0].type.shape[-1]} gradients; make a new optimizer for another "
                "window)")
        return super()._configure(given)

    def _step(self, param, grad):
        n = self._values["window"]
        window = self._state_like(param, "g2_window", trailing=(n,))
        slot = self._t_prev % n
        window_new = pt.set_subtensor(window[..., slot], grad * grad)
        delta = (self._hyper("learning_rate", param) * grad
                 / pt.sqrt(window_new.sum(axis=-1) + self._hyper("epsilon", param)))
        return delta, [(window, window_new)]
