"""Gradient accumulation: k micro-batches of b samples step as one batch of
k b samples, for every algorithm (float64, 1e-12), with momentum, clipping
and weight decay; counters, schedules and the non-finite policy count steps;
unequal micro-batches weigh by their sizes. Resuming after a SIGINT in the
middle of a cycle: test_training_features.py."""

import logging

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

import downhill

try:
    import jax
except ImportError:
    jax = None

needs_jax = pytest.mark.skipif(jax is None, reason="jax is not installed")

#: Settings per algorithm: stable for a few steps of a small regression.
SETTINGS = {
    "adabelief": dict(learning_rate=0.05),
    "adagrad_window": dict(learning_rate=0.05, window=3),
    "adamax": dict(learning_rate=0.05),
    "amsgrad": dict(learning_rate=0.05),
    "nadam": dict(learning_rate=0.05),
    "radam": dict(learning_rate=0.05),
    "yogi": dict(learning_rate=0.05),
    "adadelta": dict(rms_halflife=5.0),
    "adagrad": dict(learning_rate=0.05),
    "adam": dict(learning_rate=0.05),
    "esgd": dict(learning_rate=0.05, rms_halflife=5.0),
    "nag": dict(learning_rate=0.02, momentum=0.5),
    "rmsprop": dict(learning_rate=0.02, rms_halflife=5.0),
    "rprop": dict(learning_rate=0.02),
    "sgd": dict(learning_rate=0.02),
    # the rules of issue 20
    "adabelief": dict(learning_rate=0.05), "adamax": dict(learning_rate=0.05),
    "amsgrad": dict(learning_rate=0.05), "nadam": dict(learning_rate=0.05),
    "radam": dict(learning_rate=0.05), "yogi": dict(learning_rate=0.05),
    "adagrad_window": dict(learning_rate=0.05, window=3),
    "adafactor": dict(learning_rate=0.05), "lion": dict(learning_rate=0.01),
    "lars": dict(learning_rate=0.05, trust_coefficient=1.0), "lamb": dict(learning_rate=0.02),
    "lookahead": dict(learning_rate=0.02, sync_period=3),
    # Schedule-Free takes no momentum
    "schedule_free_sgd": dict(learning_rate=0.02, momentum=0.0),
    "schedule_free_adamw": dict(learning_rate=0.02, momentum=0.0),
}
COMMON = dict(momentum=0.5, max_gradient_norm=2.0, weight_decay=0.01, validate_every=2,
              patience=100, final_params="last")


def regression(n=64, seed=0, dtype="float64"):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3)).astype(dtype)
    y = (X @ np.array([1.0, -2.0, 0.5]) + 0.3 + 0.2 * rng.normal(size=n)).astype(dtype)
    w = pytensor.shared(np.full(3, 0.1, dtype), name="w")
    b = pytensor.shared(np.asarray(0.0, dtype), name="b")
    x, t = pt.matrix("x", dtype=dtype), pt.vector("t", dtype=dtype)
    return ((x @ w + b - t) ** 2).mean(), (w, b), X, y


def train(algo, batch_size, accumulate, iterations=4, n=64, **more):
    loss, params, X, y = regression(n)
    opt = downhill.build(algo, loss)
    settings = dict(COMMON, **SETTINGS[algo])
    if algo == "nag":
        settings.pop("momentum")
    settings.update(more)
    monitors = list(opt.iterate(downhill.Dataset([X, y], batch_size=batch_size, rng=1),
                                [X, y], max_updates=iterations, accumulate=accumulate,
                                **settings))
    state = {k: v for k, v in opt.state_dict()["state"].items()
             if "acc_" not in k and not isinstance(v, dict)}
    return opt, [p.get_value() for p in params], state, monitors


@pytest.mark.parametrize("algo", sorted(downhill.ALGORITHMS))
def test_four_micro_batches_step_as_one_batch_of_their_samples(algo):
    big, p1, s1, m1 = train(algo, 64, 1)
    small, p2, s2, m2 = train(algo, 16, 4)
    assert big._run.updates == small._run.updates == 4
    for a, b in zip(p1, p2):
        np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-12)
    assert s1.keys() == s2.keys()
    for key in s1:
        np.testing.assert_allclose(s2[key], s1[key], rtol=1e-12, atol=1e-12, err_msg=key)
    # the training monitors are the micro-batches' means, weighted: the big batch's
    for (t1, v1), (t2, v2) in zip(m1, m2):
        assert t2["loss"] == pytest.approx(t1["loss"], rel=1e-12)
        assert v2["loss"] == pytest.approx(v1["loss"], rel=1e-12)


@pytest.mark.parametrize("algo", ["sgd", "adam"])
def test_unequal_micro_batches_weigh_by_their_sizes(algo):
    # 60 samples in batches of 16: 16, 16, 16 and 12
    _, p1, _, _ = train(algo, 60, 1, n=60)
    _, p2, _, _ = train(algo, 16, 4, n=60)
    for a, b in zip(p1, p2):
        np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-12)


def test_the_batch_axis_gives_the_weights():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(3, 60)), rng.normal(size=(1, 60))
    finals = []
    for batch, k in ((60, 1), (16, 4)):   # 16, 16, 16 and 12 samples along axis 1
        w = pytensor.shared(np.zeros(3), name="w")
        x, t = pt.matrix("x"), pt.matrix("t")
        opt = downhill.build("sgd", ((w @ x - t[0]) ** 2).mean())
        opt.minimize(downhill.Dataset([X, y], batch_size=batch, axis=1, rng=0),
                     downhill.Dataset([X, y], batch_size=60, axis=1),
                     max_updates=3, accumulate=k, learning_rate=0.1, final_params="last")
        finals.append(w.get_value())
    np.testing.assert_allclose(finals[1], finals[0], rtol=1e-12)


def test_counters_and_schedules_count_steps():
    calls = []

    def schedule(n):
        calls.append(n)
        return 0.01

    loss, (w, b), X, y = regression()
    opt = downhill.build("sgd", loss)
    # 4 batches per iteration, 2 per step: 2 steps per iteration
    opt.minimize(downhill.Dataset([X, y], batch_size=16, rng=1), max_updates=3,
                 accumulate=2, learning_rate=schedule, validate_every=1)
    assert opt._run.updates == 6 and opt._run.iteration == 3
    assert calls[-6:] == [0, 1, 2, 3, 4, 5]


def test_a_cycle_may_span_iterations_and_calls():
    loss, (w, b), X, y = regression(n=80)
    opt = downhill.build("sgd", loss)
    train = downhill.Dataset([X, y], batch_size=16, rng=1)   # 5 batches per iteration
    opt.minimize(train, max_updates=1, accumulate=2, learning_rate=0.01)
    assert opt._run.updates == 2 and opt._run.micro == 1
    assert opt.state_dict()["progress"]["micro"] == 1
    assert opt.state_dict()["state"]["acc_weight"] == 16
    opt.minimize(train, max_updates=1, accumulate=2, learning_rate=0.01)
    assert opt._run.updates == 5 and opt._run.micro == 0
    assert opt.state_dict()["state"]["acc_weight"] == 0


def test_a_run_without_accumulation_drops_an_unfinished_cycle(caplog):
    loss, (w, b), X, y = regression(n=80)
    opt = downhill.build("sgd", loss)
    train = downhill.Dataset([X, y], batch_size=16, rng=1)
    opt.minimize(train, max_updates=1, accumulate=2, learning_rate=0.01)
    with caplog.at_level(logging.WARNING, logger="downhill"):
        opt.minimize(train, max_updates=1, learning_rate=0.01)
    assert "unfinished step of 1 micro-batch(es) is dropped" in caplog.text
    assert opt._run.micro == 0 and opt._run.updates == 7
    assert not opt.state_dict()["state"].get("w_acc_grad", np.zeros(3)).any()


def test_a_non_finite_micro_batch_skips_its_step_once():
    loss, (w, b), X, y = regression()
    batches = [[X[i:i + 8], y[i:i + 8]] for i in range(0, 64, 8)]
    poisoned = [list(batch) for batch in batches]
    poisoned[5][1] = np.full(8, np.inf)   # the third micro-batch of the second step
    opt = downhill.build("sgd", loss)
    train, valid = opt.minimize(downhill.Dataset(poisoned), [X, y],
                                max_updates=1, accumulate=4, learning_rate=0.01,
                                on_nonfinite="skip", final_params="last")
    assert opt._run.updates == 2
    state = opt.state_dict()["state"]
    assert state["acc_bad"] == 0 and state["acc_weight"] == 0     # the sums start over
    assert np.isfinite(train["loss"])                              # its batch left out
    # the same as the first step alone
    again, (w2, b2), _, _ = regression()
    opt2 = downhill.build("sgd", again)
    opt2.minimize(downhill.Dataset(batches[:4]), [X, y], max_updates=1,
                  accumulate=4, learning_rate=0.01, final_params="last")
    assert w.get_value().tobytes() == w2.get_value().tobytes()


def test_a_non_finite_micro_batch_raises_with_the_default_policy():
    loss, (w, b), X, y = regression()
    batches = [[X[i:i + 8], y[i:i + 8]] for i in range(0, 64, 8)]
    batches[2][1] = np.full(8, np.nan)
    opt = downhill.build("sgd", loss)
    with pytest.raises(FloatingPointError, match="non-finite loss at iteration 1"):
        opt.minimize(downhill.Dataset(batches), [X, y], max_updates=1,
                     accumulate=4, learning_rate=0.01)


def test_clipping_acts_on_the_accumulated_gradient():
    # a limit that the big batch's gradient exceeds but each micro-batch's
    # rescaled alone would not give the same step: equal only if clipped once
    _, p1, _, _ = train("sgd", 64, 1, max_gradient_norm=0.5, max_gradient_global_norm=0.7)
    _, p2, _, _ = train("sgd", 16, 4, max_gradient_norm=0.5, max_gradient_global_norm=0.7)
    for a, b in zip(p1, p2):
        np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-12)


def test_gradient_monitors_are_the_micro_batches():
    loss, (w, b), X, y = regression()
    opt = downhill.build("sgd", loss, monitor_gradients=True)
    train_monitors, _ = opt.minimize(downhill.Dataset([X, y], batch_size=16, rng=1),
                                     max_updates=1, accumulate=4, learning_rate=0.0001,
                                     max_gradient_norm=1.0, final_params="last")
    # no 'clipped' monitors: the clipped gradient exists once per step
    assert list(train_monitors) == ["loss", "grad(w)", "grad(b)"]


def test_accumulate_is_a_known_checked_setting():
    loss, (w, b), X, y = regression()
    opt = downhill.build("sgd", loss)
    with pytest.raises(ValueError, match=r"invalid accumulate: 0 \(must be integer >= 1\)"):
        opt.iterate([X, y], accumulate=0)
    with pytest.raises(ValueError, match=r"invalid accumulate: 2.5"):
        opt.iterate([X, y], accumulate=2.5)


@needs_jax
@pytest.mark.parametrize("devices", [None, 4])
def test_jax_mode_accumulates_as_numba(devices):
    results = []
    for mode in ("NUMBA", "JAX"):
        loss, (w, b), X, y = regression()
        opt = downhill.build("adam", loss, mode=mode)
        opt.minimize(downhill.Dataset([X, y], batch_size=16, rng=1), [X, y], max_updates=3,
                     accumulate=4, learning_rate=0.05, momentum=0.5, final_params="last",
                     devices=devices if mode == "JAX" else None)
        results.append((w.get_value(), opt._run.updates))
    assert results[0][1] == results[1][1] == 3
    np.testing.assert_allclose(results[1][0], results[0][0], rtol=1e-12, atol=1e-13)


@needs_jax
def test_esgd_in_jax_mode_draws_one_vector_per_step():
    # JAX draws from its own generator, so compare with JAX's big batches; two
    # steps per pass, so that a step's micro-batches follow another step
    results = []
    for batch, k in ((32, 1), (16, 2)):
        loss, (w, b), X, y = regression()
        batches = [[X[i:i + batch], y[i:i + batch]] for i in range(0, 64, batch)]
        opt = downhill.build("esgd", loss, mode="JAX")
        opt.minimize(downhill.Dataset(batches), [X, y], max_updates=3, accumulate=k,
                     learning_rate=0.05, final_params="last")
        assert opt._run.updates == 6
        results.append(w.get_value())
    np.testing.assert_allclose(results[1], results[0], rtol=1e-12, atol=1e-13)


def test_a_graph_schedule_counts_steps_not_micro_batches():
    from downhill.schedules import ExponentialDecay
    finals = []
    for batch, k in ((64, 1), (16, 4)):
        loss, (w, b), X, y = regression()
        opt = downhill.build("sgd", loss)
        opt.minimize(downhill.Dataset([X, y], batch_size=batch, rng=1), max_updates=5,
                     accumulate=k, learning_rate=ExponentialDecay(0.05, halflife=2),
                     final_params="last")
        assert opt._run.updates == 5
        finals.append(w.get_value())
    np.testing.assert_allclose(finals[1], finals[0], rtol=1e-12, atol=1e-13)
