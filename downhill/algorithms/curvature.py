"""Curvature (second-order) information in the step: ESGD.

The step is scaled by an estimate of the Hessian built from
Hessian-vector products of the loss's gradient (``pytensor.gradient``'s
forward- or reverse-mode products), rather than from the gradient's own
magnitude.
"""

import numpy as np
import pytensor
import pytensor.tensor as pt

from ..base import Optimizer
from ..compat import normal_with_next_rng, pullback, pushforward
from ..hyperparams import Hyper
from ..registry import register
from ..util import as_float, halflife_to_decay

__all__ = ["ESGD"]


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
        :class:`~downhill.ADADELTA` and the defaults of
        :class:`~downhill.RMSProp` and :class:`~downhill.ADAGRAD`. Neither
        torch nor optax has ESGD.

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


