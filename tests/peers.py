"""The oracle harness: a downhill rule and a peer, step by step on the same gradients.

A *peer* is another library's implementation of the same rule:
``torch.optim`` (torch 2.13.0, CPU), ``optax`` (0.2.8) or PyMC's
``pymc.variational.updates``. Each runner starts from the same parameters,
feeds the same sequence of random gradients (:func:`gradients`: 200 steps
of two parameters of different shapes, with per-element means and spreads
so that signs flip and magnitudes differ) and returns the parameters after
every step, so a difference shows at the step where it starts.

downhill runs with ``grads=`` given (:func:`run_downhill`): the gradients
are inputs of the compiled step, not derived from a loss, exactly what the
peers see. Clipping, where it is compared, is applied by each library's
own clipping (downhill's ``max_gradient_*``, ``torch.nn.utils``,
``optax.clip*``) to the same raw gradients.

The hyperparameter mapping lives with each test; :func:`decay` is the one
the docstrings give for half-lives: ``exp(-ln 2 / h)``.
"""

import importlib.util
import math
import os

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

import downhill

__all__ = ["STEPS", "SHAPES", "decay", "gradients", "initial", "run_downhill", "run_torch",
           "run_optax", "run_pymc", "compare", "TORCH", "OPTAX", "needs_peers"]

STEPS = 200
SHAPES = [(3, 4), (5,)]

TORCH = importlib.util.find_spec("torch") is not None
OPTAX = importlib.util.find_spec("optax") is not None

#: Where the ``peers`` extra is absent the oracle tests skip, except in CI:
#: ``.ci/run`` sets DOWNHILL_REQUIRE_PEERS=1, and then a missing peer fails.
_REQUIRED = bool(os.environ.get("DOWNHILL_REQUIRE_PEERS"))
needs_peers = pytest.mark.skipif(
    not (TORCH and OPTAX) and not _REQUIRED,
    reason="torch and optax are not installed (pip install 'downhill[peers]')")


def decay(halflife):
    """The decay rate of a half-life, as the docstrings define it: exp(-ln 2 / h)."""
    return math.exp(-math.log(2) / halflife)


def gradients(dtype="float64", steps=STEPS, seed=0, shapes=SHAPES):
    """Random gradients: ``steps`` lists of one array per shape.

    Each element has its own mean (-0.25 to 0.25) and spread (0.1 to 3), so that
    some elements keep their sign for long stretches and others flip, and
    magnitudes differ by more than an order.
    """
    rng = np.random.default_rng(seed)
    means = [rng.uniform(-0.25, 0.25, size=s) for s in shapes]
    spreads = [rng.uniform(0.1, 3, size=s) for s in shapes]
    return [[(m + s * rng.normal(size=m.shape)).astype(dtype) for m, s in zip(means, spreads)]
            for _ in range(steps)]


def initial(dtype="float64", seed=1, shapes=SHAPES):
    """The starting parameters, one array per shape."""
    rng = np.random.default_rng(seed)
    return [rng.normal(size=s).astype(dtype) for s in shapes]


def run_downhill(algo, hyper, grads, init, mode=None, **build):
    """Parameters after every step of a downhill rule fed ``grads``.

    Returns
    -------
    list of list of arrays
        ``trajectory[t][i]``: parameter ``i`` after step ``t + 1``.
    opt : Optimizer
        The optimizer, with its state after the last step.
    """
    params = [pytensor.shared(x.copy(), name=f"p{i}") for i, x in enumerate(init)]
    inputs = [pt.tensor(f"g{i}", dtype=x.dtype, shape=x.shape) for i, x in enumerate(init)]
    opt = downhill.build(algo, None, params=params, grads=inputs, **build)
    step = pytensor.function(inputs, [], updates=opt.get_updates(**hyper), mode=mode)
    trajectory = []
    for gs in grads:
        step(*gs)
        trajectory.append([p.get_value() for p in params])
    return trajectory, opt


def run_torch(make, grads, init, clip=None):
    """Parameters after every step of a ``torch.optim`` optimizer.

    Parameters
    ----------
    make : callable
        ``make(params)`` returns the optimizer, e.g.
        ``lambda ps: torch.optim.SGD(ps, lr=0.1)``.
    clip : callable, optional
        ``clip(params)`` clips their ``.grad`` before each step, e.g.
        ``lambda ps: torch.nn.utils.clip_grad_value_(ps, 0.5)``.
    """
    import torch

    # torch keeps scalar state (NAdam's product of momenta) in its default
    # dtype: float32 unless told, which would round a float64 run
    default = torch.get_default_dtype()
    torch.set_default_dtype(getattr(torch, str(init[0].dtype)))
    try:
        params = [torch.tensor(x.copy(), requires_grad=True) for x in init]
        opt = make(params)
        trajectory = []
        for gs in grads:
            for p, g in zip(params, gs):
                p.grad = torch.tensor(g.copy())
            if clip is not None:
                clip(params)
            opt.step()
            trajectory.append([p.detach().numpy().copy() for p in params])
    finally:
        torch.set_default_dtype(default)
    return trajectory


def run_optax(tx, grads, init):
    """Parameters after every step of an optax transformation ``tx``.

    float64 runs with ``jax.enable_x64(True)``, so that optax computes in
    float64 (jax's default is float32 whatever the input).
    """
    import jax
    import jax.numpy as jnp
    import optax

    with jax.enable_x64(init[0].dtype == np.float64):
        params = [jnp.asarray(x) for x in init]
        state = tx.init(params)

        @jax.jit
        def step(params, state, gs):
            updates, state = tx.update(gs, state, params)
            return optax.apply_updates(params, updates), state

        trajectory = []
        for gs in grads:
            params, state = step(params, state, [jnp.asarray(g) for g in gs])
            trajectory.append([np.asarray(p) for p in params])
            assert trajectory[-1][0].dtype == init[0].dtype
    return trajectory


def run_pymc(update, grads, init):
    """Parameters after every step of a ``pymc.variational.updates`` function.

    Parameters
    ----------
    update : callable
        ``update(grads, params)`` returns the updates (e.g.
        ``functools.partial(pm.updates.sgd, learning_rate=0.1)``).
    """
    params = [pytensor.shared(x.copy(), name=f"p{i}") for i, x in enumerate(init)]
    inputs = [pt.tensor(f"g{i}", dtype=x.dtype, shape=x.shape) for i, x in enumerate(init)]
    step = pytensor.function(inputs, [], updates=update(inputs, params))
    trajectory = []
    for gs in grads:
        step(*gs)
        trajectory.append([p.get_value() for p in params])
    return trajectory


def compare(got, want, rtol=None, atol=None, exact=False):
    """Check two trajectories step by step; return the largest difference.

    Parameters
    ----------
    got, want : list of list of arrays
        From the runners.
    rtol : float, optional
        Largest relative difference |got - want| / |want| allowed, with
        ``atol`` as its floor near zero.
    atol : float, optional
        Largest absolute difference allowed.
    exact : bool, optional
        Bit for bit.

    Returns
    -------
    float
        The largest relative difference seen (absolute when ``rtol`` is
        None), for the tests' messages.
    """
    assert len(got) == len(want) == STEPS or len(got) == len(want)
    worst = 0.0
    for t, (a, b) in enumerate(zip(got, want)):
        for i, (x, y) in enumerate(zip(a, b)):
            assert x.dtype == y.dtype, (t, i, x.dtype, y.dtype)
            assert np.isfinite(y).all(), f"the peer's step {t + 1} is not finite"
            if exact:
                np.testing.assert_array_equal(x, y, err_msg=f"step {t + 1}, parameter {i}")
                continue
            diff = np.abs(x.astype(np.float64) - y.astype(np.float64))
            if rtol is not None:
                floor = atol or 0.0
                rel = diff / np.maximum(np.abs(y.astype(np.float64)), floor / rtol)
                worst = max(worst, float(rel.max()))
                assert (rel <= rtol).all(), \
                    f"step {t + 1}, parameter {i}: relative difference {rel.max():.3g} > {rtol:g}"
            else:
                worst = max(worst, float(diff.max()))
                assert (diff <= atol).all(), \
                    f"step {t + 1}, parameter {i}: difference {diff.max():.3g} > {atol:g}"
    return worst
