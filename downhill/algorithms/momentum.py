"""Gradient steps with (Nesterov) momentum: SGD and NAG; the sign of a
momentum: Lion.

SGD's step is the gradient scaled by the learning rate; the velocity that
momentum and Nesterov momentum keep lives in the base class
(:meth:`downhill.Optimizer._build_updates`), shared by every algorithm.
Lion keeps a momentum of its own and steps by its sign.
"""

import pytensor.tensor as pt

from ..base import Optimizer
from ..hyperparams import Hyper
from ..registry import register
from ..util import as_float, halflife_to_decay, log

__all__ = ["SGD", "NAG", "Lion"]


@register
class SGD(Optimizer):
    r"""Stochastic gradient descent, with optional (Nesterov) momentum.

    Parameters
    ----------
    loss, params, inputs, updates, monitors, monitor_gradients, mode
        As for :class:`~downhill.Optimizer`.
    **hyperparameters
        Defaults for the common hyperparameters (``learning_rate``,
        ``momentum``, ``nesterov``, ``weight_decay``, clipping limits,
        early stopping, ``on_nonfinite``), listed with their ranges by
        :meth:`~downhill.Optimizer.hyperparameters` and
        ``downhill algorithms``.

    Notes
    -----
    The step is the gradient :math:`g` scaled by the learning rate
    :math:`\alpha`:

    .. math::
        \delta = \alpha\, g

    Without momentum the parameter becomes :math:`p - \delta`. With
    momentum :math:`\mu > 0` the base class keeps a velocity :math:`v`:

    .. math::
        v &\leftarrow \mu v - \delta \\
        p &\leftarrow p + v

    and with ``nesterov=True`` (Sutskever et al. 2013, in the form of
    Bengio et al. 2012):

    .. math::
        v &\leftarrow \mu v - \delta \\
        p &\leftarrow p + \mu v - \delta

    Symbols in the code: :math:`\alpha` is ``learning_rate``, :math:`\mu`
    ``momentum``, :math:`v` the state variable ``NAME_vel``.

    .. warning::
        The original downhill stored the parameter's step, not :math:`v`, as
        the velocity under ``nesterov=True``; this version stores :math:`v`,
        as the equations above say. The peers keep a velocity in units of
        the gradient, :math:`b = -v / \alpha`, which is the same rule while
        the learning rate is constant. Checked step by step
        (``tests/test_oracles.py``):

        * ``torch.optim.SGD(lr=a, momentum=m, nesterov=n)`` is
          ``SGD(learning_rate=a, momentum=m, nesterov=n)`` (bit for bit
          without momentum). torch's ``weight_decay=d`` adds :math:`d p` to
          the gradient, which equals our ``weight_decay=d`` only without
          momentum (ours is decoupled: it does not enter the velocity).
        * ``optax.sgd(a, momentum=m, nesterov=n)`` is the same (bit for bit
          without momentum); ``optax.chain(optax.sgd(a, m, n),
          optax.add_decayed_weights(-a * d))`` adds our ``weight_decay=d``.
        * PyMC's ``pm.updates.sgd``, ``momentum`` and ``nesterov_momentum``
          (``learning_rate=a, momentum=m``) are ``SGD``/``NAG`` with the
          same numbers (bit for bit without momentum).

    References
    ----------
    .. [1] I. Sutskever, J. Martens, G. Dahl and G. Hinton (2013). On the
       importance of initialization and momentum in deep learning. ICML.
    .. [2] Y. Bengio, N. Boulanger-Lewandowski and R. Pascanu (2012).
       Advances in optimizing recurrent networks. arXiv:1212.0901, eq. 7.
    """

    def _step(self, param, grad):
        return self._hyper("learning_rate", param) * grad, []


@register
class NAG(SGD):
    r"""Stochastic gradient descent with Nesterov's accelerated gradient.

    :class:`SGD` with ``nesterov=True`` always, in
    :meth:`~downhill.Optimizer.iterate` and in
    :meth:`~downhill.Optimizer.get_updates` alike:

    .. math::
        \delta &= \alpha\, g \\
        v &\leftarrow \mu v - \delta \\
        p &\leftarrow p + \mu v - \delta

    With ``momentum=0`` (the default) this is plain SGD, so give a
    momentum, e.g. ``momentum=0.9``. Passing ``nesterov=False`` is an error.

    Parameters
    ----------
    loss, params, inputs, updates, monitors, monitor_gradients, mode
        As for :class:`~downhill.Optimizer`.
    **hyperparameters
        Defaults for the common hyperparameters (``learning_rate``,
        ``momentum``, ``nesterov``, ``weight_decay``, clipping limits,
        early stopping, ``on_nonfinite``), listed with their ranges by
        :meth:`~downhill.Optimizer.hyperparameters` and
        ``downhill algorithms``.

    References
    ----------
    .. [1] Y. Nesterov (1983). A method of solving a convex programming
       problem with convergence rate O(1/k^2). Soviet Mathematics Doklady 27.
    .. [2] I. Sutskever, J. Martens, G. Dahl and G. Hinton (2013). On the
       importance of initialization and momentum in deep learning. ICML.
    """

    def __init__(self, *args, **kwargs):
        # the constructor configures the defaults; a momentum may still come
        # with iterate() or get_updates(), so warn about 0 only from then on
        self._check_nesterov(kwargs)
        self._constructing = True
        try:
            super().__init__(*args, **kwargs)
        finally:
            self._constructing = False

    @classmethod
    def _check_nesterov(cls, given):
        if "nesterov" in given and not cls.hyperparameters()["nesterov"].validate(
                given["nesterov"]):
            raise ValueError(
                "invalid nesterov: NAG always uses Nesterov momentum; use SGD for "
                "plain momentum")

    def _configure(self, given):
        self._check_nesterov(given)
        values = super()._configure(dict(given, nesterov=True))
        if values["momentum"] == 0 and not self._constructing:
            log.warning("NAG with momentum=0 is plain SGD; pass momentum=0.9 or similar")
        return values


@register
class Lion(Optimizer):
    r"""Lion: steps of the same size in every element, the sign of a momentum.

    Parameters
    ----------
    beta1_halflife : float, default 7
        Sets :math:`\beta_1 = e^{-\ln 2 / 7} \approx 0.906`, the weight of the
        momentum against the new gradient in the step's direction (> 0).
    beta2_halflife : float, default 69
        Half-life, in updates, of the momentum (> 0);
        :math:`\beta_2 = e^{-\ln 2 / 69} \approx 0.990`.
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
    Chen et al. (2023), Algorithm 2, found by a symbolic search of programs.
    The step is the sign of an interpolation between the momentum :math:`m`
    and the gradient :math:`g`; the momentum is updated after, with another
    rate:

    .. math::
        c &= \beta_1 m + (1 - \beta_1)\, g \\
        \delta &= \alpha\, \mathrm{sign}(c) \\
        m &\leftarrow \beta_2 m + (1 - \beta_2)\, g

    Every element moves by exactly :math:`\alpha` (or not at all where
    :math:`c = 0`), so the step's norm is larger than Adam's for the same
    :math:`\alpha`: the paper suggests a learning rate 3 to 10 times smaller
    than AdamW's and a ``weight_decay`` as many times larger. The paper's
    decoupled weight decay :math:`\lambda` (:math:`p \leftarrow p - \alpha
    (\mathrm{sign}(c) + \lambda p)`) is the common ``weight_decay``; with
    it, Lion minimises the loss within the box :math:`\lVert p
    \rVert_\infty \le 1 / \lambda` (L. Chen et al. 2024).

    On the example problems (:mod:`downhill.problems`, float32) with the
    suggested constant settings, Lion trains ``digits`` and
    ``sparse-digits`` as far as RMSProp (validation loss 0.118 and 0.018,
    RMSProp's 0.119 and 0.019), but stalls on ``rosenbrock`` (2.9e-3,
    RMSProp 1.4e-11) and ``factorization`` (6.2e-4, RMSProp 5.7e-6): its
    steps keep their size, so near a minimum it bounces at a distance set
    by the learning rate. A decaying learning rate gets there: on
    ``rosenbrock`` ``learning_rate=ExponentialDecay(0.03, halflife=125)``
    (6.3e-7), on ``factorization`` ``learning_rate=CosineWithWarmup(0.03,
    warmup=0, total=500)`` (5.1e-6); see :mod:`downhill.schedules`.

    Symbols in the code: :math:`m` is the state ``NAME_g1_ewma``, :math:`c`
    ``interp``, :math:`\beta_1` and :math:`\beta_2` the shared scalars
    ``beta1`` and ``beta2``, :math:`\alpha` ``learning_rate``. The step
    :math:`\delta` then goes through the base class's momentum, if any (Lion
    needs none: :math:`m` is its momentum).

    .. warning::
        We take half-lives, not the peers' rates :math:`\beta_i = e^{-\ln 2
        / h_i}` (``beta1_halflife = -ln 2 / ln(b1)``); the paper's
        :math:`\beta_1 = 0.9, \beta_2 = 0.99` are about our defaults
        (half-lives 6.58 and 69.0). Checked step by step
        (``tests/test_oracles.py``): ``optax.lion(a, b1, b2,
        weight_decay=d)`` is ``Lion(learning_rate=a, beta1_halflife=h1,
        beta2_halflife=h2, weight_decay=d)``; optax's default
        ``weight_decay`` is 1e-3, ours 0. torch.optim has no Lion.

    References
    ----------
    .. [1] X. Chen, C. Liang, D. Huang, E. Real, K. Wang, H. Pham, X. Dong,
       T. Luong, C.-J. Hsieh, Y. Lu and Q. V. Le (2023). Symbolic discovery
       of optimization algorithms. NeurIPS; arXiv:2302.06675, Algorithm 2.
    .. [2] L. Chen, B. Liu, K. Liang and Q. Liu (2024). Lion secretly solves
       constrained optimization, as Lyapunov predicts. ICLR;
       arXiv:2310.05898.
    """

    HYPERS = (
        Hyper("beta1_halflife", 7.0, "sets beta1, the momentum's weight against the "
              "gradient in the step's sign", low=0, low_open=True, shared="beta1",
              transform=halflife_to_decay),
        Hyper("beta2_halflife", 69.0, "half-life in updates of the momentum",
              low=0, low_open=True, shared="beta2", transform=halflife_to_decay),
    )

    def _step(self, param, grad):
        beta1 = self._hyper("beta1", param)
        beta2 = self._hyper("beta2", param)
        one = as_float(1, param.dtype)
        g1_ewma = self._state_like(param, "g1_ewma")
        interp = beta1 * g1_ewma + (one - beta1) * grad
        delta = self._hyper("learning_rate", param) * pt.sign(interp)
        return delta, [(g1_ewma, beta2 * g1_ewma + (one - beta2) * grad)]
