"""Every training feature (averaged weights, gradient accumulation, parameter
groups, frozen parameters) resumes bit for bit after a real SIGINT at a
random update, in the Numba and JAX modes: the interrupted run's checkpoint,
resumed in fresh objects, ends where the uninterrupted run ends (monitors of
every iteration, parameters, state, counters, datasets)."""

import os
import random
import signal

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

import downhill
from downhill import checkpoint

try:
    import jax
except ImportError:
    jax = None

MODES = ["NUMBA", pytest.param("JAX", marks=pytest.mark.skipif(jax is None,
                                                                 reason="jax is not installed"))]

#: Each feature's build keywords and iterate keywords.
FEATURES = {
    "ema": ({}, dict(average="ema", average_halflife=3.0, validate_on="average")),
    "polyak": ({}, dict(average="polyak", average_start=7, validate_on="average",
                        final_params="average")),
    # 5 batches per iteration: cycles of 2 span iterations
    "accumulate": ({}, dict(accumulate=2)),
}


def interrupting_at(update):
    """A learning-rate schedule that sends this process SIGINT the first time it
    is asked for ``update`` (before that update)."""
    sent = []

    def schedule(n):
        if n == update and not sent:
            sent.append(n)
            os.kill(os.getpid(), signal.SIGINT)
        return 0.01 / (1 + n / 50)
    return schedule


def problem(feature, mode):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 3))
    y = X @ np.array([1.0, -2.0, 0.5]) + 0.3 + 0.1 * rng.normal(size=80)
    w = pytensor.shared(np.zeros(3), name="w")
    b = pytensor.shared(np.asarray(0.0), name="b")
    x, t = pt.matrix("x"), pt.vector("t")
    built, _ = FEATURES[feature]
    opt = downhill.build("rmsprop", ((x @ w + b - t) ** 2).mean(), mode=mode,
                         monitors={"w0": w[0]}, **built)
    train = downhill.Dataset([X, y], batch_size=16, rng=7, name="train")   # 5 batches
    valid = downhill.Dataset([X, y], batch_size=40, rng=8, name="valid")
    return opt, train, valid


def run(feature, mode, iterations, update, path=None, resume=False):
    opt, train, valid = problem(feature, mode)
    _, given = FEATURES[feature]
    monitors = list(opt.iterate(train, valid, max_updates=iterations, checkpoint=path,
                                resume=resume, learning_rate=interrupting_at(update),
                                momentum=0.5, validate_every=2, patience=100, **given))
    return opt, monitors, opt.state_dict(datasets={"train": train, "valid": valid})


def assert_same(a, b, where="state"):
    if isinstance(a, dict):
        assert set(a) == set(b), f"{where}: {sorted(a)} != {sorted(b)}"
        for key in a:
            assert_same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, np.ndarray):
        b = np.asarray(b)
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), f"{where} differs"
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


@pytest.mark.usefixtures("default_sigint")
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("feature", sorted(FEATURES))
def test_a_sigint_at_a_random_update_resumes_bit_for_bit(tmp_path, feature, mode):
    iterations = 6
    steps = 5 * iterations // FEATURES[feature][1].get("accumulate", 1)
    update = random.Random(f"{feature}-{mode}").randrange(1, steps - 1)
    _, straight, final = run(feature, mode, iterations, -1)

    path = tmp_path / "run.npz"
    first, part1, _ = run(feature, mode, iterations, update, path)
    assert first._run.interrupted, f"no interrupt at update {update}"
    saved = checkpoint.read(path)[1]
    if "accumulate" in FEATURES[feature][1]:
        # the schedule runs before a step's first micro-batch: saved after that one
        assert saved["counters"]["updates"] == update and saved["progress"]["micro"] == 1
    else:
        assert saved["counters"]["updates"] == update + 1

    _, part2, resumed = run(feature, mode, iterations - len(part1), -1, path, resume=True)
    assert part1 + part2 == straight
    for table in ("params", "state", "counters", "early_stopping", "datasets", "progress"):
        assert_same(final[table], resumed[table], table)
