"""Every registered algorithm makes progress on two small problems.

A second line of defence behind the reference tests: a float32 linear
regression trained on mini-batches through ``minimize``, and the 2-D
Rosenbrock function from the classic start (-1.2, 1).
"""

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

import downhill

#: Hyperparameters per algorithm: (linear regression, Rosenbrock). Every
#: registered algorithm must have an entry (see test_table_covers_registry).
HYPERS = {
    "sgd": (dict(learning_rate=0.05), dict(learning_rate=1e-3)),
    "nag": (dict(learning_rate=0.02, momentum=0.9), dict(learning_rate=5e-4, momentum=0.9)),
    "rmsprop": (dict(learning_rate=0.01), dict(learning_rate=0.01)),
    "rprop": (dict(learning_rate=0.01, rprop_increase=1.2, rprop_decrease=0.5),
              dict(learning_rate=0.01, rprop_increase=1.2, rprop_decrease=0.5)),
    "adagrad": (dict(learning_rate=0.1), dict(learning_rate=0.1)),
    "adadelta": (dict(rms_regularizer=1e-2), dict(rms_regularizer=1e-4)),
    "esgd": (dict(learning_rate=0.05), dict(learning_rate=0.01)),
    "adam": (dict(learning_rate=0.02), dict(learning_rate=0.02)),
    "amsgrad": (dict(learning_rate=0.02), dict(learning_rate=0.02)),
    "adamax": (dict(learning_rate=0.02), dict(learning_rate=0.02)),
    "nadam": (dict(learning_rate=0.02), dict(learning_rate=0.02)),
    # its first steps are momentum steps of the raw gradient: clipped on Rosenbrock
    "radam": (dict(learning_rate=0.02), dict(learning_rate=0.02, max_gradient_norm=1.0)),
    "adabelief": (dict(learning_rate=0.02), dict(learning_rate=0.02)),
    "yogi": (dict(learning_rate=0.02), dict(learning_rate=0.02)),
    "adagrad_window": (dict(learning_rate=0.1), dict(learning_rate=0.1)),
    "lion": (dict(learning_rate=0.01), dict(learning_rate=0.01)),
    "lars": (dict(learning_rate=0.1, trust_coefficient=1.0), dict(learning_rate=10.0)),
    "lamb": (dict(learning_rate=0.05), dict(learning_rate=0.03)),
    # a relative step moves parameters at zero by parameter_scale_floor: off here
    "adafactor": (dict(learning_rate=0.3, parameter_scale=False),
                  dict(learning_rate=0.01, momentum=0.9)),
    "schedule_free_sgd": (dict(learning_rate=0.1), dict(learning_rate=1e-3)),
    "schedule_free_adamw": (dict(learning_rate=0.05), dict(learning_rate=0.05)),
    "lookahead": (dict(learning_rate=0.05), dict(learning_rate=0.05)),
}
ROSENBROCK_STEPS = 200


def test_table_covers_registry():
    assert set(HYPERS) == set(downhill.ALGORITHMS)


@pytest.mark.parametrize("algo", sorted(HYPERS))
def test_linear_regression_float32_minibatches(algo):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(256, 4)).astype("float32")
    Y = (X @ np.array([1, -2, 0.5, 3], "float32") + 0.5).astype("float32")
    x = pt.matrix("x")
    y = pt.vector("y")
    w = pytensor.shared(np.zeros(4, "float32"), name="w")
    b = pytensor.shared(np.float32(0), name="b")
    opt = downhill.build(algo, ((x @ w + b - y) ** 2).mean())
    before = opt.evaluate([X, Y])["loss"]
    train = downhill.Dataset([X, Y], batch_size=32, rng=0)  # a fixed batch order
    opt.minimize(train, max_updates=10, **HYPERS[algo][0])
    after = opt.evaluate([X, Y])["loss"]
    assert w.get_value().dtype == np.float32 and b.get_value().dtype == np.float32
    assert after < 0.5 * before, (before, after)


@pytest.mark.parametrize("algo", sorted(HYPERS))
def test_rosenbrock(algo):
    p = pytensor.shared(np.array([-1.2, 1.0]), name="p")
    loss = (1 - p[0]) ** 2 + 100 * (p[1] - p[0] ** 2) ** 2
    opt = downhill.build(algo, loss)
    step = pytensor.function([], loss, updates=opt.get_updates(**HYPERS[algo][1]))
    initial = step()
    assert initial == pytest.approx(24.2)
    for _ in range(ROSENBROCK_STEPS):
        final = step()
    assert np.isfinite(final) and final < 0.5 * initial, (initial, final)


def test_downhill_04_module_paths_give_the_same_classes():
    # 0.4 scripts import from downhill.adaptive and downhill.first_order
    import importlib

    adaptive = importlib.import_module("downhill.adaptive")
    first_order = importlib.import_module("downhill.first_order")
    for name in ("RMSProp", "RProp", "ADAGRAD", "ADADELTA", "ESGD", "Adam"):
        assert getattr(adaptive, name) is getattr(downhill, name), name
    assert first_order.SGD is downhill.SGD and first_order.NAG is downhill.NAG
    from downhill.adaptive import RMSProp  # noqa: F401 (the 0.4 spelling)
    # every registered rule lives in a family module of downhill.algorithms
    for cls in downhill.ALGORITHMS.values():
        assert cls.__module__.startswith("downhill.algorithms."), cls


def test_the_algorithms_page_lists_every_rule_and_its_module():
    import pathlib
    import re

    text = (pathlib.Path(__file__).resolve().parents[1] / "docs" / "algorithms.rst").read_text()
    rows = dict(re.findall(r"^``([a-z_]+)``\s+``(\w+)\.py``", text, re.M))
    assert set(rows) == set(downhill.ALGORITHMS)
    for name, module in rows.items():
        assert downhill.ALGORITHMS[name].__module__ == f"downhill.algorithms.{module}", name
