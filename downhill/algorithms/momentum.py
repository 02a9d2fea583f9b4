"""Gradient steps with (Nesterov) momentum: SGD and NAG.

The step is the gradient scaled by the learning rate; the velocity that
momentum and Nesterov momentum keep lives in the base class
(:meth:`downhill.Optimizer._build_updates`), shared by every algorithm.
"""

from ..base import Optimizer
from ..registry import register
from ..util import log

__all__ = ["SGD", "NAG"]


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
