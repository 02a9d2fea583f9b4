"""Averaged weights: the averages against a NumPy transcription of their
equations, the evaluation point (validation, early stopping and the best
parameters read the average), the final choice of parameters, and the
checks of the settings. Resuming after a SIGINT: test_training_features.py."""

import math

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

import downhill


def regression(n=64, dtype="float64", seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3)).astype(dtype)
    y = (X @ np.array([1.0, -2.0, 0.5]) + 0.5 * rng.normal(size=n)).astype(dtype)
    w = pytensor.shared(np.zeros(3, dtype), name="w")
    b = pytensor.shared(np.asarray(0.0, dtype), name="b")
    x = pt.matrix("x", dtype=dtype)
    t = pt.vector("t", dtype=dtype)
    return ((x @ w + b - t) ** 2).mean(), (w, b), X, y


def numpy_gradients(X, y, w, b):
    err = X @ w + b - y
    return 2 * X.T @ err / len(y), 2 * err.mean()


def transcription(X, y, steps, lr, mu, kind, halflife, start, dtype):
    """SGD with momentum and the average of its iterates, as the docs write them."""
    f = np.dtype(dtype).type
    w, b = np.zeros(3, dtype), f(0)
    vw, vb = np.zeros(3, dtype), f(0)
    aw, ab = np.zeros(3, dtype), f(0)
    gamma = f(math.exp(-math.log(2) / halflife))
    n = 0
    history = []
    for t in range(steps):
        gw, gb = numpy_gradients(X, y, w, b)
        vw = f(mu) * vw - f(lr) * gw.astype(dtype)
        vb = f(mu) * vb - f(lr) * f(gb)
        w, b = w + vw, b + vb
        if t < start or n == 0:
            aw, ab = w.copy(), b
        elif kind == "ema":
            aw = gamma * aw + (f(1) - gamma) * w
            ab = gamma * ab + (f(1) - gamma) * b
        else:
            aw = aw + (w - aw) / f(n + 1)
            ab = ab + (b - ab) / f(n + 1)
        n += t >= start
        history.append((aw.copy(), ab, n))
    return history


@pytest.mark.parametrize("dtype,tol", [("float64", 1e-13), ("float32", 2e-6)])
@pytest.mark.parametrize("kind,start", [("ema", 0), ("ema", 5), ("polyak", 0), ("polyak", 7)])
def test_the_average_equals_a_numpy_transcription(kind, start, dtype, tol):
    loss, (w, b), X, y = regression(dtype=dtype)
    opt = downhill.build("sgd", loss)
    updates = opt.get_updates(learning_rate=0.02, momentum=0.5, average=kind,
                              average_halflife=4.0, average_start=start)
    step = pytensor.function([], loss, updates=updates,
                             givens=[(opt.inputs[0], X), (opt.inputs[1], y)])
    expected = transcription(X, y, 20, 0.02, 0.5, kind, 4.0, start, dtype)
    state = {v.name: v for v in opt.state_variables}
    for t, (aw, ab, n) in enumerate(expected):
        step()
        got_w, got_b = state["w_avg"].get_value(), state["b_avg"].get_value()
        assert got_w.dtype == np.dtype(dtype)
        np.testing.assert_allclose(got_w, aw, rtol=tol, atol=tol, err_msg=f"step {t}")
        np.testing.assert_allclose(got_b, ab, rtol=tol, atol=tol, err_msg=f"step {t}")
        assert int(state["avg_count"].get_value()) == n


def test_averaging_leaves_the_steps_alone():
    # the iterates with an average equal those without, bit for bit
    finals = []
    for average in ("none", "ema", "polyak"):
        loss, (w, b), X, y = regression()
        opt = downhill.build("rmsprop", loss)
        opt.minimize(downhill.Dataset([X, y], batch_size=16, rng=3), max_updates=6,
                     learning_rate=0.01, average=average, final_params="last")
        finals.append(w.get_value().tobytes() + b.get_value().tobytes())
    assert finals[0] == finals[1] == finals[2]


def run_validated_on_average(final_params, **more):
    loss, (w, b), X, y = regression()
    opt = downhill.build("sgd", loss)
    seen = []
    for _, valid in opt.iterate(downhill.Dataset([X, y], batch_size=8, rng=3), [X, y],
                                max_updates=12, learning_rate=0.1, average="ema",
                                average_halflife=5, validate_on="average", validate_every=1,
                                patience=100, final_params=final_params, **more):
        avg = [v.get_value() for v in opt.state_variables if v.name.endswith("_avg")]
        seen.append((valid["loss"], avg))
    return opt, (w, b), X, y, seen


def loss_at(X, y, w, b):
    return float(((X @ w + b - y) ** 2).mean())


def test_validation_reads_the_average_and_keeps_the_best_average():
    opt, (w, b), X, y, seen = run_validated_on_average("best")
    # the validation yielded with an iteration was made before it: at the
    # average the previous iteration left
    for (loss, _), (_, (aw, ab)) in zip(seen[1:], seen):
        assert loss == pytest.approx(loss_at(X, y, aw, ab), rel=1e-12)
    best = opt._run.best_params
    assert opt._run.best_loss == pytest.approx(loss_at(X, y, *best), rel=1e-12)
    # the parameters hold the best validated average
    assert w.get_value().tobytes() == best[0].tobytes()
    assert b.get_value().tobytes() == best[1].tobytes()


def test_the_final_parameters_are_the_callers_choice():
    last = run_validated_on_average("last")
    average = run_validated_on_average("average")
    # the same run: the iterate in one, the average in the other
    w_last, w_avg = last[1][0].get_value(), average[1][0].get_value()
    state = {v.name: v.get_value() for v in average[0].state_variables}
    assert w_avg.tobytes() == state["w_avg"].tobytes()
    assert not np.array_equal(w_last, w_avg)
    loss, (w, b), X, y = regression()
    plain = downhill.build("sgd", loss)
    plain.minimize(downhill.Dataset([X, y], batch_size=8, rng=3), [X, y], max_updates=12,
                   learning_rate=0.1, validate_every=1, patience=100, final_params="last")
    assert w.get_value().tobytes() == w_last.tobytes()


def test_the_average_is_state_and_carries_over_between_calls():
    loss, (w, b), X, y = regression()
    opt = downhill.build("sgd", loss, average="polyak")
    train = downhill.Dataset([X, y], batch_size=16, rng=1)
    opt.minimize(train, max_updates=2, learning_rate=0.05, final_params="last")
    assert opt.state_dict()["state"]["avg_count"] == 8
    opt.minimize(train, max_updates=1, learning_rate=0.05, final_params="last")
    assert opt.state_dict()["state"]["avg_count"] == 12


@pytest.mark.parametrize("name", ["validate_on", "final_params"])
def test_reading_an_average_that_is_not_kept_is_refused(name):
    loss, (w, b), X, y = regression()
    opt = downhill.build("sgd", loss)
    with pytest.raises(ValueError, match=rf"invalid {name}: 'average' needs an average .*"
                                         "average='ema'"):
        opt.iterate([X, y], **{name: "average"})
    np.testing.assert_array_equal(w.get_value(), np.zeros(3))


@pytest.mark.parametrize("given,message", [
    (dict(average="mean"), r"invalid average: 'mean' \(must be one of 'none', 'ema', 'polyak'\)"),
    (dict(average_halflife=0), r"invalid average_halflife: 0 \(must be x > 0"),
    (dict(average_start=-1), r"invalid average_start: -1 \(must be integer >= 0\)"),
    (dict(validate_on="avg"), r"invalid validate_on: 'avg'"),
])
def test_bad_values_are_refused_naming_them(given, message):
    loss, (w, b), X, y = regression()
    opt = downhill.build("sgd", loss)
    with pytest.raises(ValueError, match=message):
        opt.iterate([X, y], **given)


def test_polyak_from_an_update_on_follows_the_parameters_until_then():
    loss, (w, b), X, y = regression()
    opt = downhill.build("sgd", loss)
    train = downhill.Dataset([X, y], batch_size=16, rng=1)   # 4 updates per iteration
    opt.minimize(train, max_updates=2, learning_rate=0.05, average="polyak",
                 average_start=6, final_params="last")
    state = opt.state_dict()["state"]
    assert state["avg_count"] == 2 and state["avg_clock"] == 8
    # a new call continues the clock from the loop's update count
    opt.minimize(train, max_updates=1, learning_rate=0.05, average="polyak",
                 average_start=6, final_params="last")
    assert opt.state_dict()["state"]["avg_count"] == 6


def test_ema_validates_lower_than_the_iterate_on_a_noisy_problem():
    # SGD with a large step rattles around the minimum; the average sits near it
    rng = np.random.default_rng(4)
    X = rng.normal(size=(512, 5))
    y = X @ rng.normal(size=5) + rng.normal(size=512)
    Xv = rng.normal(size=(512, 5))
    yv = Xv @ np.linalg.lstsq(X, y, rcond=None)[0]
    results = {}
    for average in ("none", "ema"):
        w = pytensor.shared(np.zeros(5), name="w")
        x, t = pt.matrix("x"), pt.vector("t")
        opt = downhill.build("sgd", ((x @ w - t) ** 2).mean())
        _, valid = opt.minimize(downhill.Dataset([X, y], batch_size=8, rng=0), [Xv, yv],
                                max_updates=20, learning_rate=0.1, average=average,
                                average_halflife=20,
                                validate_on="average" if average != "none" else "params",
                                patience=100)
        results[average] = opt._run.best_loss
    assert results["ema"] < 0.25 * results["none"], results


def test_a_resume_whose_settings_do_not_fit_loads_nothing(tmp_path):
    path = tmp_path / "run.npz"
    loss, (w, b), X, y = regression()
    downhill.build("sgd", loss).minimize([X, y], max_updates=1, learning_rate=0.01,
                                         checkpoint=path)
    loss, (w, b), X, y = regression()
    opt = downhill.build("sgd", loss)
    with pytest.raises(ValueError, match="invalid validate_on: 'average' needs an average"):
        opt.iterate([X, y], checkpoint=path, resume=True, validate_on="average")
    assert opt._run.updates == 0 and not w.get_value().any()
    # a checkpoint that averaged: its average is in force when resuming
    path2 = tmp_path / "run2.npz"
    downhill.build("sgd", loss).minimize([X, y], max_updates=1, learning_rate=0.01,
                                         checkpoint=path2, average="ema")
    opt.minimize([X, y], max_updates=1, checkpoint=path2, resume=True, validate_on="average")
    assert opt._values["average"] == "ema"
