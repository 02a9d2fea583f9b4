"""Rules PyMC has too, step by step against ``pymc.variational.updates``.

PyMC's update functions build PyTensor graphs as ours do, so both run the
same compiled backend on the same 200 random gradients (``tests/peers.py``):
float64 to a relative 1e-10, bit for bit where the operations are the same
(SGD, Adamax, adagrad_window), float32 to 1e-5 absolute. Runs in CI's PyMC environment
(DOWNHILL_REQUIRE_PYMC=1 there, so a missing PyMC fails); elsewhere it
skips without PyMC.
"""

import functools
import math
import os

import numpy as np
import pytensor
import pytest

from peers import compare, decay, gradients, initial, run_downhill, run_pymc

pytestmark = pytest.mark.pymc  # CI's first environment deselects these: -m "not pymc"

EPS = 1e-3


@pytest.fixture(scope="module")
def updates():
    if os.environ.get("DOWNHILL_REQUIRE_PYMC"):
        import pymc
    else:
        pymc = pytest.importorskip("pymc")
    return pymc.variational.updates


#: (id, downhill algorithm, its hyperparameters, PyMC's function name, its
#: keywords, bit for bit in float64)
CASES = [
    ("sgd", "sgd", dict(learning_rate=0.05), "sgd", dict(learning_rate=0.05), True),
    # PyMC computes (p - a g) + m v, we p + (m v - a g): the same to rounding
    ("momentum", "sgd", dict(learning_rate=0.005, momentum=0.9),
     "momentum", dict(learning_rate=0.005, momentum=0.9), False),
    ("nag", "nag", dict(learning_rate=0.005, momentum=0.9),
     "nesterov_momentum", dict(learning_rate=0.005, momentum=0.9), False),
    # PyTensor's canonicaliser turns PyMC's (G + g^2) + eps into eps + G + g^2
    ("adagrad", "adagrad", dict(learning_rate=0.1, rms_regularizer=EPS),
     "adagrad", dict(learning_rate=0.1, epsilon=EPS), False),
    ("rmsprop", "rmsprop", dict(learning_rate=0.01, rms_halflife=10.0, rms_regularizer=EPS,
                                centered=False),
     "rmsprop", dict(learning_rate=0.01, rho=math.exp(-math.log(2) / 10.0), epsilon=EPS), False),
    ("adadelta", "adadelta", dict(learning_rate=1.0, rms_halflife=10.0, rms_regularizer=1e-4),
     "adadelta", dict(learning_rate=1.0, rho=math.exp(-math.log(2) / 10.0), epsilon=1e-4), False),
    # PyMC adds epsilon to the maximum, torch and optax inside it
    ("adamax", "adamax", dict(learning_rate=0.01, beta1_halflife=5.0, beta2_halflife=50.0,
                              rms_regularizer=EPS, regularizer_in_max=False),
     "adamax", dict(learning_rate=0.01, beta1=decay(5.0), beta2=decay(50.0), epsilon=EPS),
     True),
    # pm.fit's default optimizer, with its default epsilon and window
    ("adagrad_window", "adagrad_window", dict(learning_rate=0.01, rms_regularizer=0.1,
                                              window=10),
     "adagrad_window", dict(learning_rate=0.01, epsilon=0.1, n_win=10), True),
    ("adagrad_window-3", "adagrad_window", dict(learning_rate=0.01, rms_regularizer=EPS,
                                                window=3),
     "adagrad_window", dict(learning_rate=0.01, epsilon=EPS, n_win=3), True),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_float64_step_by_step(updates, case):
    _, algo, hyper, name, theirs_kw, exact = case
    grads, init = gradients("float64"), initial("float64")
    ours, _ = run_downhill(algo, hyper, grads, init)
    assert min(np.abs(ours[-1][i] - init[i]).max() for i in range(2)) > 0.05
    theirs = run_pymc(functools.partial(getattr(updates, name), **theirs_kw), grads, init)
    if exact:
        compare(ours, theirs, exact=True)
    else:
        compare(ours, theirs, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_float32_step_by_step(updates, case):
    _, algo, hyper, name, theirs_kw, _ = case
    grads, init = gradients("float32"), initial("float32")
    ours, _ = run_downhill(algo, hyper, grads, init)
    # PyMC's Python-float hyperparameters stay float32 only under floatX=float32,
    # as in a float32 PyMC model
    with pytensor.config.change_flags(floatX="float32"):
        theirs = run_pymc(functools.partial(getattr(updates, name), **theirs_kw), grads, init)
    compare(ours, theirs, atol=1e-5)
