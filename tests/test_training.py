"""Long runs: compile once, live hyperparameters and schedules, weight decay,
global clipping, gradient monitors, checkpoints and resume, the NaN policy."""

import logging
import math

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

import downhill
from downhill import checkpoint


def regression(dtype="float64", n=64, seed=0):
    """A linear regression: loss, parameters, data."""
    r = np.random.default_rng(seed)
    X = r.normal(size=(n, 3)).astype(dtype)
    y = (X @ np.array([1.0, -2.0, 0.5]) + 0.3).astype(dtype)
    w = pytensor.shared(np.zeros(3, dtype), name="w")
    b = pytensor.shared(np.asarray(0.0, dtype), name="b")
    x = pt.matrix("x", dtype=dtype)
    t = pt.vector("t", dtype=dtype)
    loss = ((x @ w + b - t) ** 2).mean()
    return loss, [w, b], X, y


def reg_grad(X, y, w, b):
    err = X @ w + b - y
    return 2 * X.T @ err / len(y), 2 * err.mean()


class CountCompiles:
    """Counts calls of pytensor.function made through downhill."""

    def __init__(self, monkeypatch):
        self.count = 0
        real = pytensor.function

        def counted(*args, **kwargs):
            self.count += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(pytensor, "function", counted)


def test_second_iterate_with_new_learning_rate_compiles_nothing(monkeypatch):
    loss, params, X, y = regression()
    opt = downhill.build("sgd", loss)
    counter = CountCompiles(monkeypatch)
    data = downhill.Dataset([X, y], batch_size=0)
    opt.minimize(data, max_updates=3, learning_rate=0.05, momentum=0.5, validate_every=1)
    first = counter.count
    assert first == 2  # the step and the evaluation function
    opt.minimize(data, max_updates=3, learning_rate=0.01, momentum=0.8, validate_every=1)
    opt.minimize(data, max_updates=2, learning_rate=0.02, momentum=0.1, patience=9)
    assert counter.count == first
    # a structural change (momentum off) compiles one new step function
    opt.minimize(data, max_updates=1, learning_rate=0.02, momentum=0)
    assert counter.count == first + 1


def test_trajectory_across_calls_keeps_state_and_uses_new_numbers():
    loss, (w, b), X, y = regression()
    opt = downhill.build("sgd", loss)
    data = downhill.Dataset([X, y], batch_size=0)
    opt.minimize(data, max_updates=3, learning_rate=0.05, momentum=0.5, validate_every=1,
                 patience=100)
    opt.minimize(data, max_updates=3, learning_rate=0.01, momentum=0.8, validate_every=1,
                 patience=100)
    pw, pb = np.zeros(3), 0.0
    vw, vb = np.zeros(3), 0.0
    for lr, mu in [(0.05, 0.5)] * 3 + [(0.01, 0.8)] * 3:
        gw, gb = reg_grad(X, y, pw, pb)
        vw, vb = mu * vw - lr * gw, mu * vb - lr * gb
        pw, pb = pw + vw, pb + vb
    np.testing.assert_allclose(w.get_value(), pw, rtol=1e-12)
    np.testing.assert_allclose(b.get_value(), pb, rtol=1e-12)


def test_hyperparameter_attributes_are_shared_scalars():
    loss, params, X, y = regression()
    opt = downhill.build("rmsprop", loss, learning_rate=0.5, momentum=0.25,
                         rms_halflife=7, rms_regularizer=1e-4, weight_decay=0.01)
    assert opt.learning_rate.eval() == 0.5
    assert opt.momentum.eval() == 0.25
    assert opt.epsilon.eval() == pytest.approx(1e-4)
    assert opt.ewma.eval() == pytest.approx(math.exp(-math.log(2) / 7))
    assert opt.weight_decay.eval() == pytest.approx(0.01)
    opt.get_updates(learning_rate=0.125)
    assert opt.learning_rate.eval() == 0.125


def test_learning_rate_schedule_is_evaluated_before_every_update():
    loss, (w, b), X, y = regression()
    opt = downhill.build("sgd", loss)
    seen = []

    def schedule(n):
        seen.append(n)
        return 0.1 / (1 + n)

    data = downhill.Dataset([X, y], batch_size=16, rng=0)
    opt.minimize(data, max_updates=2, learning_rate=schedule, patience=100)
    assert seen[0] == 0 and seen[-8:] == list(range(8))  # 4 batches x 2 iterations

    # reference: the same batches with lr = 0.1 / (1 + n)
    loss2, (w2, b2), _, _ = regression()
    opt2 = downhill.build("sgd", loss2)
    check = downhill.Dataset([X, y], batch_size=16, rng=0)
    check.conform(opt2.inputs)
    pw, pb, n = np.zeros(3), 0.0, 0
    for _ in range(2):
        for bx, by in check:
            gw, gb = reg_grad(bx, by, pw, pb)
            lr = 0.1 / (1 + n)
            pw, pb, n = pw - lr * gw, pb - lr * gb, n + 1
    np.testing.assert_allclose(w.get_value(), pw, rtol=1e-12)
    np.testing.assert_allclose(b.get_value(), pb, rtol=1e-12)


def test_momentum_schedule_and_observe_hook():
    loss, params, X, y = regression()
    opt = downhill.build("sgd", loss)

    class Plateau:
        def __init__(self):
            self.losses = []

        def __call__(self, n):
            return 0.01

        def observe(self, value):
            self.losses.append(value)

    plateau = Plateau()
    _, valid = opt.minimize([X, y], max_updates=4, learning_rate=plateau,
                            momentum=lambda n: 0.9 * n / (n + 1), validate_every=2)
    assert len(plateau.losses) == 3  # validations at 0, 2, 4
    assert plateau.losses[-1] == valid["loss"]
    assert opt.momentum.eval() == pytest.approx(0.9 * 7 / 8)  # before the last update


@pytest.mark.parametrize("value", [-0.1, float("nan"), "fast"])
def test_schedule_returning_a_bad_value_names_the_hyperparameter(value):
    loss, params, X, y = regression()
    opt = downhill.build("sgd", loss)
    with pytest.raises(ValueError, match="schedule given for learning_rate returned"):
        opt.minimize([X, y], max_updates=1, learning_rate=lambda n: value)


def sgd_reference(w0, grad, n, lr, mu=0.0, wd=0.0, global_norm=0.0, nesterov=False):
    """SGD with momentum, decoupled weight decay and global norm clipping."""
    ps = [p.copy() for p in w0]
    vs = [np.zeros_like(p) for p in ps]
    for _ in range(n):
        gs = grad(*ps)
        if global_norm > 0:
            total = math.sqrt(sum((g * g).sum() for g in gs))
            gs = [g * min(1.0, global_norm / total) for g in gs]
        new = []
        for p, g, v in zip(ps, gs, vs):
            delta = lr * g
            if mu:
                v[...] = mu * v - delta
                q = p + (mu * v - delta if nesterov else v)
            else:
                q = p - delta
            new.append(q - lr * wd * p)
        ps = new
    return ps


def two_param_problem(dtype="float64"):
    r = np.random.default_rng(3)
    a0 = r.normal(size=(2, 3)).astype(dtype)
    c0 = r.normal(size=4).astype(dtype)
    a = pytensor.shared(a0.copy(), name="a")
    c = pytensor.shared(c0.copy(), name="c")
    loss = (a ** 2).sum() * np.asarray(3.0, dtype) + ((c - 1) ** 4).sum()

    def grad(pa, pc):
        return [6 * pa, 4 * (pc - 1) ** 3]

    return loss, [a, c], [a0, c0], grad


@pytest.mark.parametrize("mu,nesterov", [(0.0, False), (0.7, False), (0.7, True)])
def test_weight_decay_matches_reference(mu, nesterov):
    loss, params, w0, grad = two_param_problem()
    opt = downhill.build("sgd", loss)
    fn = pytensor.function([], [], updates=opt.get_updates(
        learning_rate=0.01, momentum=mu, nesterov=nesterov, weight_decay=0.3))
    for _ in range(5):
        fn()
    expect = sgd_reference(w0, grad, 5, 0.01, mu, wd=0.3, nesterov=nesterov)
    for p, e in zip(params, expect):
        np.testing.assert_allclose(p.get_value(), e, rtol=1e-9)


def test_weight_decay_with_rmsprop_is_decoupled():
    loss, (a, c), (a0, c0), grad = two_param_problem()
    opt = downhill.build("rmsprop", loss)
    fn = pytensor.function([], [], updates=opt.get_updates(
        learning_rate=0.01, weight_decay=0.5, rms_halflife=3))
    gamma = math.exp(-math.log(2) / 3)
    ps = [a0.copy(), c0.copy()]
    fs = [np.zeros_like(p) for p in ps]
    ss = [np.zeros_like(p) for p in ps]
    for _ in range(4):
        fn()
        gs = grad(*ps)
        for i, g in enumerate(gs):
            fs[i] = gamma * fs[i] + (1 - gamma) * g
            ss[i] = gamma * ss[i] + (1 - gamma) * g * g
            delta = 0.01 * g / np.sqrt(np.maximum(ss[i] - fs[i] ** 2, 0) + 1e-8)
            ps[i] = ps[i] - delta - 0.01 * 0.5 * ps[i]
    np.testing.assert_allclose(a.get_value(), ps[0], rtol=1e-9)
    np.testing.assert_allclose(c.get_value(), ps[1], rtol=1e-9)


@pytest.mark.parametrize("limit", [0.5, 2.0])
def test_global_norm_clipping_matches_reference(limit):
    loss, params, w0, grad = two_param_problem()
    opt = downhill.build("sgd", loss)
    fn = pytensor.function([], [], updates=opt.get_updates(
        learning_rate=0.05, momentum=0.5, max_gradient_global_norm=limit))
    for _ in range(5):
        fn()
    expect = sgd_reference(w0, grad, 5, 0.05, 0.5, global_norm=limit)
    for p, e in zip(params, expect):
        np.testing.assert_allclose(p.get_value(), e, rtol=1e-9)
    # the limit really bites: without it the result differs
    free = sgd_reference(w0, grad, 5, 0.05, 0.5)
    assert not np.allclose(free[0], expect[0])


def test_huge_global_limit_equals_no_clipping():
    results = []
    for limit in (0.0, 1e30):
        loss, params, w0, grad = two_param_problem()
        opt = downhill.build("rmsprop", loss)
        fn = pytensor.function([], [], updates=opt.get_updates(
            learning_rate=0.05, max_gradient_global_norm=limit))
        for _ in range(4):
            fn()
        results.append([p.get_value() for p in params])
    for x, y in zip(*results):
        np.testing.assert_allclose(x, y, rtol=1e-12)


def test_float32_model_with_decay_and_global_clipping_stays_float32():
    loss, params, X, y = regression("float32")
    opt = downhill.build("rmsprop", loss)
    updates = opt.get_updates(weight_decay=0.1, max_gradient_global_norm=1.0, momentum=0.5)
    for var, expr in updates:  # the int64 update counter aside
        assert expr.dtype == ("int64" if var is opt._settings.counter else "float32"), var.name
    opt.minimize([X, y], max_updates=2, weight_decay=0.1, max_gradient_global_norm=1.0)
    assert all(p.get_value().dtype == np.float32 for p in params)


def test_monitor_gradients_before_and_after_clipping():
    loss, (w, b), X, y = regression()
    opt = downhill.build("sgd", loss, monitor_gradients=True)
    gw, gb = reg_grad(X, y, np.zeros(3), 0.0)
    train, valid = next(iter(opt.iterate([X, y], batch_size=0, learning_rate=1e-12,
                                         max_gradient_norm=0.5)))
    assert list(train) == ["loss", "grad(w)", "grad(b)", "grad(w) clipped", "grad(b) clipped"]
    assert train["grad(w)"] == pytest.approx((gw ** 2).sum(), rel=1e-9)
    assert train["grad(b)"] == pytest.approx(gb ** 2, rel=1e-9)
    assert train["grad(w) clipped"] == pytest.approx(0.25, rel=1e-9)
    assert train["grad(b) clipped"] == pytest.approx(min(gb ** 2, 0.25), rel=1e-9)
    assert list(valid) == ["loss", "grad(w)", "grad(b)"]
    # without clipping there is no clipped monitor
    train, _ = next(iter(opt.iterate([X, y], batch_size=0, learning_rate=1e-12)))
    assert list(train) == ["loss", "grad(w)", "grad(b)"]


# ----------------------------------------------------------------------
# checkpoints


def trained(algo="rmsprop", iterations=3, **hyper):
    loss, params, X, y = regression()
    opt = downhill.build(algo, loss)
    data = downhill.Dataset([X, y], batch_size=16, rng=1)
    settings = dict(learning_rate=0.01, momentum=0.5, validate_every=1)
    settings.update(hyper)
    opt.minimize(data, max_updates=iterations, **settings)
    return opt, params, data


def test_state_dict_contents():
    opt, (w, b), data = trained()
    d = opt.state_dict({"train": data})
    assert d["algorithm"] == "RMSProp"
    assert set(d["params"]) == {"w", "b"}
    assert set(d["state"]) == {"w_g1_ewma", "w_g2_ewma", "w_vel", "b_g1_ewma", "b_g2_ewma",
                               "b_vel"}
    np.testing.assert_array_equal(d["params"]["w"], w.get_value())
    assert d["hyperparameters"]["learning_rate"] == 0.01
    assert d["hyperparameters"]["momentum"] == 0.5
    assert d["counters"] == {"iteration": 3, "updates": 12, "run_start": 0}
    stop = d["early_stopping"]
    assert stop["best_iteration"] == 3 and stop["fails"] == 0
    assert set(stop["best_params"]) == {"w", "b"}
    assert d["datasets"]["train"]["position"] == 4
    # the arrays are copies: changing the optimizer does not change the dict
    before = d["params"]["w"].copy()
    w.set_value(w.get_value() + 1)
    np.testing.assert_array_equal(d["params"]["w"], before)


def test_load_state_dict_round_trip_restores_everything():
    opt, (w, b), _ = trained()
    saved = opt.state_dict()
    keep = {k: v.copy() for k, v in saved["state"].items()}
    opt.minimize([np.ones((4, 3)), np.ones(4)], max_updates=2, learning_rate=0.1)
    opt.load_state_dict(saved)
    np.testing.assert_array_equal(w.get_value(), saved["params"]["w"])
    now = opt.state_dict()
    for name, value in keep.items():
        np.testing.assert_array_equal(now["state"][name], value)
    assert now["counters"] == saved["counters"]
    assert opt.learning_rate.eval() == 0.01


def test_load_into_a_used_optimizer_equals_load_into_a_fresh_one():
    # state the saved run did not use (here the velocity: saved without
    # momentum) must not survive from the loading optimizer's own past
    def run(used):
        w = pytensor.shared(np.ones(2), name="w")
        loss = (w ** 2).sum()
        saved = downhill.build("sgd", loss).state_dict()
        opt = downhill.build("sgd", loss)
        if used:
            opt.minimize(max_updates=3, momentum=0.9, learning_rate=0.1)
        opt.load_state_dict(saved)
        opt.minimize(max_updates=2, momentum=0.9, learning_rate=0.1)
        return w.get_value(), opt.state_dict()["state"]["w_vel"]

    fresh, used = run(False), run(True)
    np.testing.assert_array_equal(used[0], fresh[0])
    np.testing.assert_array_equal(used[1], fresh[1])


@pytest.mark.parametrize("breakage,message", [
    (lambda d: d.update(algorithm="SGD"), "algorithm 'SGD'"),
    (lambda d: d["params"].pop("w"), "lacks parameter 'w'"),
    (lambda d: d["params"].update(z=np.zeros(2)), "unknown parameter 'z'"),
    (lambda d: d["state"].pop("b_vel"), "lacks state variable 'b_vel'"),
    (lambda d: d["state"].update(w_extra=np.zeros(3)), "unknown state variable 'w_extra'"),
    (lambda d: d["state"].update(w_vel=np.zeros(4)), "state variable 'w_vel' has shape"),
    (lambda d: d["params"].update(w=np.zeros(3, "float32")), "parameter 'w' has shape"),
    (lambda d: d["hyperparameters"].update(learning_rte=0.1), "learning_rte"),
    (lambda d: d["hyperparameters"].update(momentum=2.0), "invalid momentum"),
])
def test_mismatched_state_is_refused_and_changes_nothing(breakage, message):
    opt, (w, b), _ = trained()
    good = opt.state_dict()
    bad = opt.state_dict()
    breakage(bad)
    # change the live values so that a partial load would show
    w.set_value(w.get_value() + 5)
    before = opt.state_dict()
    with pytest.raises(ValueError, match=message):
        opt.load_state_dict(bad)
    after = opt.state_dict()
    np.testing.assert_array_equal(after["params"]["w"], before["params"]["w"])
    for name in before["state"]:
        np.testing.assert_array_equal(after["state"][name], before["state"][name])
    assert after["counters"] == before["counters"]
    assert after["hyperparameters"] == before["hyperparameters"]
    assert not np.array_equal(after["params"]["w"], good["params"]["w"])


def test_save_and_load_file(tmp_path):
    opt, (w, b), data = trained()
    path = tmp_path / "run.npz"
    opt.save(path, datasets={"train": data})
    assert [p.name for p in tmp_path.iterdir()] == ["run.npz"]  # no temporary left
    header, state = checkpoint.read(path)
    assert header["algorithm"] == "RMSProp" and header["downhill"] == downhill.__version__
    loss, (w2, b2), X, y = regression()
    fresh = downhill.build("rmsprop", loss)
    fresh.load(path)
    np.testing.assert_array_equal(w2.get_value(), w.get_value())
    assert fresh.momentum.eval() == 0.5


def test_truncated_or_corrupt_file_gives_clear_error_and_keeps_params(tmp_path):
    opt, (w, b), _ = trained()
    path = tmp_path / "run.npz"
    opt.save(path)
    blob = path.read_bytes()
    loss, (w2, b2), X, y = regression()
    fresh = downhill.build("rmsprop", loss)
    w2.set_value(np.array([7.0, 8.0, 9.0]))
    for name, content in [("cut.npz", blob[: len(blob) // 2]),
                          ("junk.npz", b"not a checkpoint at all"),
                          ("flip.npz", blob[:100] + bytes(200) + blob[300:])]:
        bad = tmp_path / name
        bad.write_bytes(content)
        with pytest.raises(ValueError, match="truncated or corrupt|not a downhill|incomplete"):
            fresh.load(bad)
        np.testing.assert_array_equal(w2.get_value(), [7.0, 8.0, 9.0])
    with pytest.raises(ValueError, match="does not exist"):
        fresh.load(tmp_path / "missing.npz")
    sgd = downhill.build("sgd", loss)
    with pytest.raises(ValueError, match="holds a RMSProp state"):
        sgd.load(path)


def test_interrupted_write_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    opt, (w, b), _ = trained()
    path = tmp_path / "run.npz"
    opt.save(path)
    old = path.read_bytes()

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken)
    with pytest.raises(OSError, match="disk full"):
        opt.save(path)
    assert path.read_bytes() == old
    assert [p.name for p in tmp_path.iterdir()] == ["run.npz"]


def resumable(algo="rmsprop"):
    """An optimizer with momentum on shuffled mini-batches; validation loss falls steadily."""
    loss, params, X, y = regression(n=80)
    opt = downhill.build(algo, loss, monitors={"w0": params[0][0]})
    train = downhill.Dataset([X, y], batch_size=16, rng=7, name="train")
    valid = downhill.Dataset([X, y], batch_size=40, rng=8, name="valid")
    return opt, params, train, valid


SETTINGS = dict(learning_rate=0.003, momentum=0.5, validate_every=1, patience=3)
RESUME = {
    "sgd": dict(learning_rate=0.003), "nag": dict(learning_rate=0.003),
    "rmsprop": dict(learning_rate=0.003), "rprop": dict(learning_rate=0.003),
    "adagrad": dict(learning_rate=0.01), "adadelta": dict(),
    "esgd": dict(learning_rate=0.003, seed=5), "adam": dict(learning_rate=0.003),
    "amsgrad": dict(learning_rate=0.003), "adamax": dict(learning_rate=0.003),
    "nadam": dict(learning_rate=0.003), "radam": dict(learning_rate=0.003),
    "adabelief": dict(learning_rate=0.003), "yogi": dict(learning_rate=0.003),
    "adagrad_window": dict(learning_rate=0.01, window=3),
    "lion": dict(learning_rate=0.003), "lars": dict(learning_rate=0.01, trust_coefficient=1.0),
    "lamb": dict(learning_rate=0.003), "adafactor": dict(learning_rate=0.003),
    # Schedule-Free takes no momentum; Lookahead's run ends between synchronisations.
    # Both validate their evaluation point (x, the slow weights), which the
    # parameters hold after a run by default: final_params='last' keeps the
    # training point in them, for save() after the run to continue exactly
    "schedule_free_sgd": dict(learning_rate=0.003, momentum=0.0, final_params="last"),
    "schedule_free_adamw": dict(learning_rate=0.003, momentum=0.0, final_params="last"),
    "lookahead": dict(learning_rate=0.003, sync_period=3, final_params="last"),
}


def test_resume_table_covers_the_registry():
    assert set(RESUME) == set(downhill.ALGORITHMS)


@pytest.mark.parametrize("algo", sorted(RESUME))
def test_resume_is_bit_for_bit(tmp_path, algo):
    n = 4
    settings = dict(SETTINGS, **RESUME[algo])
    opt, params, train, valid = resumable(algo)
    straight = list(opt.iterate(train, valid, max_updates=2 * n, **settings))
    one_go = opt.state_dict()
    assert one_go["early_stopping"]["best_iteration"] == 2 * n  # best = last

    first, params1, train1, valid1 = resumable(algo)
    part1 = list(first.iterate(train1, valid1, max_updates=n, **settings))
    path = tmp_path / "half.npz"
    first.save(path, datasets={"train": train1, "valid": valid1})

    second, params2, train2, valid2 = resumable(algo)
    second.load(path, datasets={"train": train2, "valid": valid2})
    part2 = list(second.iterate(train2, valid2, max_updates=n))
    resumed = second.state_dict()

    assert part1 + part2 == straight
    for name in one_go["params"]:
        np.testing.assert_array_equal(resumed["params"][name], one_go["params"][name])
    assert set(resumed["state"]) == set(one_go["state"])
    for name in one_go["state"]:
        if isinstance(one_go["state"][name], dict):  # a random generator
            assert resumed["state"][name] == one_go["state"][name]
        else:
            np.testing.assert_array_equal(resumed["state"][name], one_go["state"][name])
    assert resumed["counters"] == one_go["counters"]
    stop, stop2 = one_go["early_stopping"], resumed["early_stopping"]
    assert stop["best_loss"] == stop2["best_loss"] and stop["best_iteration"] == 2 * n


def test_iterate_checkpoint_and_resume(tmp_path):
    n = 4
    opt, params, train, valid = resumable()
    straight = list(opt.iterate(train, valid, max_updates=2 * n, **SETTINGS))

    path = tmp_path / "run.npz"
    first, _, train1, valid1 = resumable()
    part1 = list(first.iterate(train1, valid1, max_updates=n, checkpoint=path,
                               checkpoint_every=2, **SETTINGS))
    assert path.exists()
    second, params2, train2, valid2 = resumable()
    part2 = list(second.iterate(train2, valid2, max_updates=n, checkpoint=path, resume=True))
    assert part1 + part2 == straight
    np.testing.assert_array_equal(params2[0].get_value(), params[0].get_value())


@pytest.mark.parametrize("algo", sorted(RESUME))
def test_resume_with_the_same_keywords_is_bit_for_bit(tmp_path, algo):
    # a script run again with resume=True passes the same hyperparameters as
    # before, ESGD's seed included: that must continue the run, not re-seed it
    n = 3
    settings = dict(SETTINGS, **RESUME[algo])
    opt, params, train, valid = resumable(algo)
    straight = list(opt.iterate(train, valid, max_updates=2 * n, **settings))
    path = tmp_path / "run.npz"
    first, _, train1, valid1 = resumable(algo)
    part1 = list(first.iterate(train1, valid1, max_updates=n, checkpoint=path, **settings))
    second, params2, train2, valid2 = resumable(algo)
    part2 = list(second.iterate(train2, valid2, max_updates=n, checkpoint=path, resume=True,
                                **settings))
    assert part1 + part2 == straight
    np.testing.assert_array_equal(params2[0].get_value(), params[0].get_value())


def test_checkpoint_every_writes_during_the_run(tmp_path):
    path = tmp_path / "run.npz"
    opt, params, train, valid = resumable()
    iterations = []
    for _ in opt.iterate(train, valid, max_updates=5, checkpoint=path, checkpoint_every=2,
                         **SETTINGS):
        if path.exists():
            iterations.append(checkpoint.read(path)[1]["counters"]["iteration"])
    assert iterations == [2, 2, 4, 4]
    assert checkpoint.read(path)[1]["counters"]["iteration"] == 5  # saved on exit


def test_checkpoint_arguments_are_checked():
    opt, params, train, valid = resumable()
    with pytest.raises(ValueError, match="resume=True needs checkpoint"):
        opt.iterate(train, resume=True)
    with pytest.raises(ValueError, match="checkpoint_every needs checkpoint"):
        opt.iterate(train, checkpoint_every=3)
    with pytest.raises(ValueError, match="invalid checkpoint_every"):
        opt.iterate(train, checkpoint="x.npz", checkpoint_every=-1)


@pytest.mark.parametrize("bad,error", [(dict(momentum=2.0), ValueError)])
def test_resume_with_a_bad_hyperparameter_loads_nothing(tmp_path, bad, error):
    # the call fails, so it must not have loaded the checkpoint first
    path = tmp_path / "run.npz"
    opt, params, train, valid = resumable()
    opt.minimize(train, valid, max_updates=2, checkpoint=path, **SETTINGS)
    fresh, (w, b), train, valid = resumable()
    w.set_value(np.full(3, 7.0))
    with pytest.raises(error, match=next(iter(bad))):
        fresh.iterate(train, valid, checkpoint=path, resume=True, **dict(SETTINGS, **bad))
    np.testing.assert_array_equal(w.get_value(), np.full(3, 7.0))
    assert fresh.state_dict()["counters"]["iteration"] == 0


def test_resume_with_an_unknown_hyperparameter_warns_and_resumes(tmp_path):
    # unknown names are accepted (downhill 0.4 did), with one warning: the
    # call goes on and resumes the checkpoint
    path = tmp_path / "run.npz"
    opt, params, train, valid = resumable()
    opt.minimize(train, valid, max_updates=2, checkpoint=path, **SETTINGS)
    fresh, (w, b), train, valid = resumable()
    with pytest.warns(downhill.DownhillWarning, match="learning_rte") as record:
        fresh.iterate(train, valid, checkpoint=path, resume=True,
                      **dict(SETTINGS, learning_rte=0.1))
    assert len(record) == 1
    assert fresh.state_dict()["counters"]["iteration"] == 2
    np.testing.assert_array_equal(w.get_value(), opt.params[0].get_value())


def test_resume_without_a_file_starts_fresh(tmp_path):
    path = tmp_path / "new.npz"
    opt, params, train, valid = resumable()
    results = list(opt.iterate(train, valid, max_updates=2, checkpoint=path, resume=True,
                               **SETTINGS))
    assert len(results) == 2 and path.exists()


# ----------------------------------------------------------------------
# NaN policy


def poisoned(bad_calls, dtype="float64"):
    """A regression whose callable dataset returns a NaN target on some calls."""
    loss, params, X, y = regression(dtype)
    calls = {"n": 0}

    def batches():
        calls["n"] += 1
        i = (calls["n"] * 8) % 64
        t = y[i:i + 8].copy()
        if calls["n"] in bad_calls:
            t[0] = np.nan
        return [X[i:i + 8], t]

    return loss, params, X, y, batches, calls


def test_default_raises_and_restores_best():
    loss, (w, b), X, y, batches, calls = poisoned({6})
    opt = downhill.build("sgd", loss)
    data = downhill.Dataset(batches, iteration_size=4)
    with pytest.raises(FloatingPointError, match="non-finite loss"):
        opt.minimize(data, valid=[X, y], learning_rate=0.05, validate_every=1)
    assert np.isfinite(w.get_value()).all()
    np.testing.assert_array_equal(w.get_value(), opt._run.best_params[0])


def test_stop_returns_normally_and_logs(caplog):
    loss, (w, b), X, y, batches, calls = poisoned({6})
    opt = downhill.build("sgd", loss)
    data = downhill.Dataset(batches, iteration_size=4)
    with caplog.at_level(logging.ERROR, logger="downhill"):
        train, valid = opt.minimize(data, valid=[X, y], learning_rate=0.05, validate_every=1,
                                    on_nonfinite="stop")
    assert any("non-finite" in r.message for r in caplog.records)
    assert np.isfinite(w.get_value()).all()
    assert opt.evaluate([X, y])["loss"] == valid["loss"]


def test_skip_discards_the_bad_step_exactly():
    loss, (w, b), X, y, batches, calls = poisoned({3})
    opt = downhill.build("sgd", loss)
    data = downhill.Dataset(batches, iteration_size=4)
    train, _ = opt.minimize(data, valid=[X, y], learning_rate=0.05, max_updates=1,
                            on_nonfinite="skip")
    # reference: the same batches, batch 3 left out
    pw, pb = np.zeros(3), 0.0
    for k in (1, 2, 4):
        i = (k * 8) % 64
        gw, gb = reg_grad(X[i:i + 8], y[i:i + 8], pw, pb)
        pw, pb = pw - 0.05 * gw, pb - 0.05 * gb
    np.testing.assert_allclose(w.get_value(), pw, rtol=1e-12)
    assert math.isfinite(train["loss"])


def test_skip_gives_up_after_max_skips_in_a_row():
    loss, (w, b), X, y, batches, calls = poisoned({3, 4, 5})
    opt = downhill.build("sgd", loss)
    data = downhill.Dataset(batches, iteration_size=8)
    with pytest.raises(FloatingPointError):
        opt.minimize(data, valid=[X, y], learning_rate=0.05, max_updates=1,
                     on_nonfinite="skip", max_skips=2)
    assert np.isfinite(w.get_value()).all()
    loss, (w, b), X, y, batches, calls = poisoned({3, 4, 5})
    opt = downhill.build("sgd", loss)
    data = downhill.Dataset(batches, iteration_size=8)
    opt.minimize(data, valid=[X, y], learning_rate=0.05, max_updates=1,
                 on_nonfinite="skip", max_skips=3)
    assert np.isfinite(w.get_value()).all()


def test_skip_catches_a_non_finite_gradient_with_finite_loss():
    w = pytensor.shared(np.array([1.0, 0.0]), name="w")
    # d/dw sqrt(w^2) at w = 0 is nan in PyTensor's graph; the loss is finite
    loss = pt.sqrt(w[1] ** 2) + (w[0] - 3) ** 2
    opt = downhill.build("sgd", loss)
    opt.minimize(None, max_updates=2, learning_rate=0.1, on_nonfinite="skip", max_skips=5)
    assert np.isfinite(w.get_value()).all()
    assert w.get_value()[1] == 0.0


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # PyTensor's rewrites
def test_skip_keeps_a_finite_step_whose_gradient_sum_overflows():
    # every gradient element is finite (3e38 in float32) but their sum is not:
    # the step is finite and must be taken, not skipped as non-finite
    w = pytensor.shared(np.array([0.5, -0.5], dtype="float32"), name="w")
    c = np.full(2, 3e38, dtype="float32")
    loss = (w * c).sum()                 # 1.5e38 - 1.5e38 = 0
    opt = downhill.build("sgd", loss)
    fn = pytensor.function([], [], updates=opt.get_updates(
        learning_rate=1e-38, on_nonfinite="skip"))
    fn()
    want = np.array([0.5, -0.5], dtype="float32") - np.float32(1e-38) * c
    np.testing.assert_array_equal(w.get_value(), want)


def test_bad_nonfinite_policy_is_refused():
    loss, params, X, y = regression()
    opt = downhill.build("sgd", loss)
    with pytest.raises(ValueError, match="invalid on_nonfinite: 'ignore'.*'raise', 'stop', 'skip'"):
        opt.iterate([X, y], on_nonfinite="ignore")


def test_ready_schedules_drive_the_loop_and_resume_with_their_state(tmp_path):
    from downhill.schedules import CosineWithWarmup, ReduceOnPlateau

    # warm-up from 0: a scheduled learning rate of exactly 0 is accepted
    loss, (w, b), X, y = regression()
    opt = downhill.build("sgd", loss)
    cosine = CosineWithWarmup(peak=0.05, warmup=4, total=20)
    opt.minimize([X, y], batch_size=16, max_updates=1, learning_rate=cosine)
    assert opt.learning_rate.eval() == pytest.approx(0.05 * 3 / 4)

    # plateau: the loss of a tiny learning rate stalls, so the value drops
    def run(schedule, iterations, path=None, resume=False):
        loss, params, X, y = regression()
        opt = downhill.build("sgd", loss)
        data = downhill.Dataset([X, y], batch_size=0)
        results = list(opt.iterate(data, max_updates=iterations, learning_rate=schedule,
                                   validate_every=1, patience=100,
                                   checkpoint=path, resume=resume))
        return opt, results, params

    straight = ReduceOnPlateau(0.01, factor=0.5, patience=1, min_improvement=0.5)
    opt, results, params = run(straight, 6)
    assert straight.reductions > 0
    assert opt.learning_rate.eval() < 0.01  # the last updates used a reduced rate

    path = tmp_path / "plateau.npz"
    first = ReduceOnPlateau(0.01, factor=0.5, patience=1, min_improvement=0.5)
    _, part1, _ = run(first, 3, path)
    second = ReduceOnPlateau(0.01, factor=0.5, patience=1, min_improvement=0.5)
    _, part2, params2 = run(second, 3, path, resume=True)
    assert second.state_dict() == straight.state_dict()
    assert part1 + part2 == results
    np.testing.assert_array_equal(params2[0].get_value(), params[0].get_value())


@pytest.mark.parametrize("algo", sorted(RESUME))
def test_skip_leaves_parameters_and_state_untouched_for_every_algorithm(algo):
    loss, params, X, y = regression()
    opt = downhill.build(algo, loss)
    x, t = opt.inputs
    settings = {"momentum": 0.5, **RESUME[algo], "on_nonfinite": "skip"}
    step = pytensor.function([x, t], loss, updates=opt.get_updates(**settings))
    step(X, y)
    before = opt.state_dict()
    bad = y.copy()
    bad[3] = np.inf
    step(X, bad)
    after = opt.state_dict()
    for name in before["params"]:
        np.testing.assert_array_equal(after["params"][name], before["params"][name])
    for name, value in before["state"].items():
        if not isinstance(value, dict):  # random generators advance regardless
            np.testing.assert_array_equal(after["state"][name], value, err_msg=name)
    step(X, y)
    assert not np.array_equal(opt.state_dict()["params"]["w"], before["params"]["w"])


def drifting(algo="rmsprop"):
    """Validation data the initial parameters fit exactly: the best stays at iteration 0."""
    loss, (w, b), X, y = regression(n=80)
    opt = downhill.build(algo, loss)
    train = downhill.Dataset([X, y], batch_size=16, rng=7, name="train")
    valid = downhill.Dataset([X, np.zeros_like(y)], batch_size=40, rng=8, name="valid")
    return opt, (w, b), train, valid


def test_resume_is_exact_when_the_best_is_not_the_last(tmp_path):
    settings = dict(learning_rate=0.01, momentum=0.5, validate_every=1, patience=100)
    opt, (w, b), train, valid = drifting()
    straight = list(opt.iterate(train, valid, max_updates=6, **settings))
    assert opt.state_dict()["early_stopping"]["best_iteration"] == 0

    path = tmp_path / "run.npz"
    first, _, train1, valid1 = drifting()
    part1 = list(first.iterate(train1, valid1, max_updates=3, checkpoint=path, **settings))
    np.testing.assert_array_equal(first.params[0].get_value(), np.zeros(3))  # best put back
    saved = checkpoint.read(path)[1]
    assert not np.array_equal(saved["params"]["w"], np.zeros(3))  # the file: as it stood
    np.testing.assert_array_equal(saved["early_stopping"]["best_params"]["w"], np.zeros(3))

    second, (w2, b2), train2, valid2 = drifting()
    part2 = list(second.iterate(train2, valid2, max_updates=3, checkpoint=path, resume=True,
                                **settings))
    assert part1 + part2 == straight
    np.testing.assert_array_equal(w2.get_value(), w.get_value())  # both end on the best


def test_interrupt_inside_a_pass_right_after_a_best_validation_restores_the_best():
    loss, (w, b), X, y = regression()
    opt = downhill.build("sgd", loss)
    calls = {"n": 0}

    def batches():
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return [X[:8], y[:8]]

    data = downhill.Dataset(batches, iteration_size=4)
    opt.minimize(data, valid=[X, y], learning_rate=0.05, validate_every=1)
    # the validation at iteration 0 was the best; two updates followed, then Ctrl-C
    np.testing.assert_array_equal(w.get_value(), np.zeros(3))


def test_no_checkpoint_is_written_from_a_non_finite_state(tmp_path):
    path = tmp_path / "run.npz"
    loss, (w, b), X, y, batches, calls = poisoned({6})
    opt = downhill.build("sgd", loss)
    data = downhill.Dataset(batches, iteration_size=4)
    with pytest.raises(FloatingPointError):
        opt.minimize(data, valid=[X, y], learning_rate=0.05, validate_every=1,
                     checkpoint=path, checkpoint_every=1)
    state = checkpoint.read(path)[1]
    assert state["counters"]["iteration"] == 1  # the last good one
    assert np.isfinite(state["params"]["w"]).all()
