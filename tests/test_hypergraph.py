"""Hyperparameters in the update graph: graph schedules against the same
schedules evaluated in Python, schedules on every numeric hyperparameter,
PyTensor values, ranges, the update counter, checkpoints.

The JAX-mode checks are in test_jax.py; pm.fit's in test_pymc.py.
"""

import math
import pathlib
import runpy

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

import downhill
import downhill.schedules as S
from downhill.schedules import (Constant, CosineWithWarmup, ExponentialDecay, Linear,
                                ReduceOnPlateau, Sequence, StepDecay)

MODES = ["NUMBA", "CVM"]

#: One or more instances of every graph schedule class, for the learning rate.
SCHEDULES = {
    "constant": Constant(0.03),
    "linear": Linear(0.0, 0.05, steps=7),
    "step": StepDecay(0.05, 0.4, every=3),
    "exponential": ExponentialDecay(0.05, halflife=5.5, min_value=0.004),
    "cosine": CosineWithWarmup(0.06, warmup=4, total=17, final=0.002),
    "cosine-no-warmup": CosineWithWarmup(0.06, warmup=0, total=11),
    "sequence": Sequence([Linear(0.0, 0.05, 5), ExponentialDecay(0.05, 7.0), Constant(0.01)],
                         [5, 14]),
}


def test_the_table_covers_every_graph_schedule():
    classes = {type(s) for s in SCHEDULES.values()}
    graph = {getattr(S, name) for name in S.__all__
             if isinstance(getattr(S, name), type) and issubclass(getattr(S, name), S.Schedule)
             and getattr(S, name) not in (S.Schedule, ReduceOnPlateau)}
    assert classes == graph


def regression(dtype="float64", n=48, seed=0):
    r = np.random.default_rng(seed)
    X = r.normal(size=(n, 3)).astype(dtype)
    y = (X @ np.array([1.0, -2.0, 0.5]) + 0.3).astype(dtype)
    w = pytensor.shared(np.zeros(3, dtype), name="w")
    b = pytensor.shared(np.asarray(0.0, dtype), name="b")
    x = pt.matrix("x", dtype=dtype)
    t = pt.vector("t", dtype=dtype)
    return ((x @ w + b - t) ** 2).mean(), [w, b], X, y


def reg_grad(X, y, w, b):
    err = X @ w + b - y
    return 2 * X.T @ err / len(y), 2 * err.mean()


def graph_values(schedule, counts, mode, name="learning_rate"):
    """The value the update graph computes for ``schedule`` at each count."""
    loss, _, _, _ = regression()
    opt = downhill.build("sgd", loss, mode=mode)
    opt.get_updates(**{name: schedule})
    fn = pytensor.function([], opt._settings.graph_value(name), mode=mode)
    out = []
    for n in counts:
        opt._settings.set_count(n)
        out.append(float(fn()))
    return np.array(out)


# ----------------------------------------------------------------------
# the same numbers in Python and in the graph

@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("key", sorted(SCHEDULES))
def test_graph_value_equals_python_value(key, mode):
    schedule = SCHEDULES[key]
    counts = list(range(40)) + [99, 1000, 10 ** 6, 2 ** 40]
    want = np.array([schedule(n) for n in counts])
    # to rounding: a few ulps of the schedule's scale (1 + cos near -1 cancels)
    np.testing.assert_allclose(graph_values(schedule, counts, mode), want,
                               rtol=4e-16, atol=4 * np.finfo(float).eps * want.max())


def run(learning_rate, mode, algo="sgd", iterations=3, **hypers):
    """Parameters after ``iterations`` passes of 6 batches (learning_rate None: in hypers)."""
    if learning_rate is not None:
        hypers["learning_rate"] = learning_rate
    loss, params, X, y = regression()
    opt = downhill.build(algo, loss, mode=mode)
    data = downhill.Dataset([X, y], batch_size=8, rng=1)
    opt.minimize(data, max_updates=iterations, patience=100, **hypers)
    return [p.get_value() for p in params], opt


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("key", sorted(SCHEDULES))
def test_graph_schedule_gives_the_steps_of_the_schedule_applied_from_python(key, mode):
    schedule = SCHEDULES[key]
    graph, opt = run(schedule, mode, momentum=0.5)
    python, opt2 = run(lambda n: schedule(n), mode, momentum=0.5)
    assert opt._settings.per_update == {} and "learning_rate" in opt2._settings.per_update
    for a, b in zip(graph, python):
        np.testing.assert_allclose(a, b, rtol=1e-14, atol=1e-300)
    assert not np.allclose(graph[0], 0)


def test_sgd_with_a_schedule_against_numpy():
    schedule = SCHEDULES["sequence"]
    (w, b), opt = run(schedule, "NUMBA", iterations=2, momentum=0.5)
    check = downhill.Dataset(list(regression()[2:]), batch_size=8, rng=1)
    pw, pb, vw, vb, n = np.zeros(3), 0.0, np.zeros(3), 0.0, 0
    for _ in range(2):
        for bx, by in check:
            gw, gb = reg_grad(bx, by, pw, pb)
            lr = schedule(n)
            vw, vb = 0.5 * vw - lr * gw, 0.5 * vb - lr * gb
            pw, pb, n = pw + vw, pb + vb, n + 1
    np.testing.assert_allclose(w, pw, rtol=1e-12)
    np.testing.assert_allclose(b, pb, rtol=1e-12)
    assert opt._settings.count() == opt.update_count == n == 12
    assert opt.learning_rate.get_value() == schedule(11)  # the value the latest step used


# ----------------------------------------------------------------------
# schedules on every numeric hyperparameter

OTHERS = {
    "momentum": Linear(0.0, 0.9, steps=10),
    "weight_decay": StepDecay(0.5, 0.5, every=4),
    "max_gradient_norm": ExponentialDecay(2.0, halflife=6.0, min_value=0.5),
    "max_gradient_global_norm": Constant(3.0),
    "rms_halflife": Sequence([Constant(2.0), Linear(2.0, 20.0, 10)], [5]),
    "rms_regularizer": CosineWithWarmup(1e-2, warmup=3, total=20, final=1e-4),
}


@pytest.mark.parametrize("mode", MODES)
def test_schedules_on_every_hyperparameter_match_python(mode):
    hypers = dict(OTHERS, learning_rate=SCHEDULES["cosine"])
    python_hypers = {k: (lambda n, s=s: s(n)) for k, s in hypers.items()}
    graph, opt = run(hypers.pop("learning_rate"), mode, algo="rmsprop", **hypers)
    python, opt2 = run(python_hypers.pop("learning_rate"), mode, algo="rmsprop",
                       **python_hypers)
    assert set(opt2._settings.per_update) == set(OTHERS) | {"learning_rate"}
    assert not opt._settings.per_update
    for a, b in zip(graph, python):
        np.testing.assert_allclose(a, b, rtol=1e-14, atol=1e-300)
    # the transform (a half-life to a decay rate) applies to the scheduled value in the graph
    assert opt.ewma.get_value() == pytest.approx(math.exp(-math.log(2) / OTHERS["rms_halflife"](
        opt._settings.count() - 1)), rel=1e-15)


def test_scheduled_half_life_against_numpy():
    halflife = Linear(1.0, 9.0, steps=8)
    loss, (w, b), X, y = regression()
    opt = downhill.build("rmsprop", loss)
    fn = pytensor.function(opt.inputs, loss, updates=opt.get_updates(
        learning_rate=0.01, rms_halflife=halflife, rms_regularizer=1e-6))
    pw, pb = np.zeros(3), 0.0
    f = [np.zeros(3), 0.0]
    s = [np.zeros(3), 0.0]
    for n in range(12):
        fn(X, y)
        gamma = math.exp(-math.log(2) / halflife(n))
        grads = reg_grad(X, y, pw, pb)
        new = []
        for i, (p, g) in enumerate(zip((pw, pb), grads)):
            f[i] = gamma * f[i] + (1 - gamma) * g
            s[i] = gamma * s[i] + (1 - gamma) * g * g
            new.append(p - 0.01 * g / np.sqrt(np.maximum(s[i] - f[i] ** 2, 0) + 1e-6))
        pw, pb = new
    np.testing.assert_allclose(w.get_value(), pw, rtol=1e-12)
    np.testing.assert_allclose(b.get_value(), pb, rtol=1e-12)


@pytest.mark.parametrize("name", ["momentum", "weight_decay", "max_gradient_norm",
                                  "max_gradient_elem", "max_gradient_global_norm"])
def test_a_schedule_that_starts_at_zero_turns_the_feature_on(name):
    # 0 turns these off in the graph's structure; a schedule (or a PyTensor
    # value) may leave 0 later, so it builds the feature in
    loss, params, X, y = regression()
    opt = downhill.build("sgd", loss)
    schedule = Linear(0.0, 0.5, steps=4)
    fn = pytensor.function(opt.inputs, loss, updates=opt.get_updates(
        learning_rate=0.05, **{name: schedule}))
    assert (name, True) in opt._structure()
    plain = downhill.build("sgd", regression()[0])
    plain.get_updates(learning_rate=0.05)
    assert (name, False) in plain._structure()
    if name == "momentum":
        assert "w_vel" in opt._used_state()
    for _ in range(6):
        fn(X, y)
    assert opt._settings.count() == 6


# ----------------------------------------------------------------------
# your own compiled function

def test_get_updates_follows_a_schedule_in_your_own_function():
    schedule = StepDecay(0.1, 0.5, every=2)
    loss, (w, b), X, y = regression()
    opt = downhill.build("sgd", loss)
    fn = pytensor.function(opt.inputs, loss, updates=opt.get_updates(learning_rate=schedule))
    assert opt.learning_rate.get_value() == 0.1
    pw, pb = np.zeros(3), 0.0
    for n in range(7):
        fn(X, y)
        gw, gb = reg_grad(X, y, pw, pb)
        pw, pb = pw - schedule(n) * gw, pb - schedule(n) * gb
        assert opt.learning_rate.get_value() == schedule(n)  # the latest step's
    np.testing.assert_allclose(w.get_value(), pw, rtol=1e-13)
    # the next iterate() continues the count that your function advanced
    opt.minimize([X, y], batch_size=0, max_updates=1, learning_rate=schedule)
    assert opt._settings.count() == 8 and opt.learning_rate.get_value() == schedule(7)


def test_a_new_schedule_of_the_same_form_compiles_nothing(monkeypatch):
    loss, _, X, y = regression()
    opt = downhill.build("sgd", loss)
    data = downhill.Dataset([X, y], batch_size=16)
    opt.minimize(data, max_updates=1, learning_rate=CosineWithWarmup(0.05, 2, 10))
    compiled = []
    real = pytensor.function
    monkeypatch.setattr(pytensor, "function",
                        lambda *a, **k: compiled.append(1) or real(*a, **k))
    opt.minimize(data, max_updates=1, learning_rate=CosineWithWarmup(0.02, 5, 30, 0.001))
    assert compiled == [] and opt.learning_rate.get_value() == pytest.approx(
        CosineWithWarmup(0.02, 5, 30, 0.001)(5), rel=1e-15)  # 3 updates per iteration
    opt.minimize(data, max_updates=1, learning_rate=StepDecay(0.02, 0.5, 3))
    assert len(compiled) == 1  # another form: one new step function


def test_python_schedules_are_refused_where_no_loop_evaluates_them():
    loss, _, _, _ = regression()
    opt = downhill.build("sgd", loss, learning_rate=0.01)
    before = dict(opt._values)
    with pytest.raises(ValueError, match=r"learning_rate=<function .* is a Python function.*"
                                         r"get_updates\(\).*keep its first value.*StepDecay"):
        opt.get_updates(learning_rate=lambda n: 0.1)
    with pytest.raises(ValueError, match=r"momentum=ReduceOnPlateau.*validation loss.*"
                                         r"pm\.fit.*callback"):
        opt.get_updates(momentum=ReduceOnPlateau(0.5))
    assert opt._values == before
    python_only = downhill.build("sgd", loss, learning_rate=lambda n: 0.1)
    with pytest.raises(ValueError, match="Python function"):
        python_only.get_updates()
    with pytest.raises(ValueError, match=r"Python function.*downhill\.updates\(\)"):
        downhill.updates("adam", learning_rate=lambda n: 0.1)
    with pytest.raises(ValueError, match=r"validation loss.*pm\.fit"):
        downhill.updates("adam", learning_rate=ReduceOnPlateau(0.1))

    class Mine(S.Schedule):  # the hook of earlier versions: Python only
        def _at(self, n):
            return 0.1
    with pytest.raises(ValueError, match=r"implements _formula\(n, p, ops\)"):
        opt.get_updates(learning_rate=Mine())
    opt.minimize(regression()[2:], max_updates=1, learning_rate=Mine())  # iterate takes it


def test_a_formula_without_a_range_is_checked_in_the_graph():
    class Falling(S.Schedule):  # no _breaks: its range cannot be checked up front
        _NUMBERS = ("start",)
        start = 0.02

        def _formula(self, n, p, ops):
            return p.start - 0.01 * n

    loss, (w, b), X, y = regression()
    opt = downhill.build("sgd", loss)
    fn = pytensor.function(opt.inputs, loss, updates=opt.get_updates(
        learning_rate=Falling(), on_nonfinite="skip"))
    fn(X, y)
    fn(X, y)  # 0.01, then 0: allowed (the open bound itself, as for any schedule)
    moved = w.get_value()
    fn(X, y)  # -0.01: not finite in the graph, so the step is skipped
    np.testing.assert_array_equal(w.get_value(), moved)
    assert opt._settings.count() == 3 and not np.allclose(moved, 0)


# ----------------------------------------------------------------------
# ranges checked when given

@pytest.mark.parametrize("name, schedule, match", [
    ("momentum", Linear(0.0, 1.2, 10), r"invalid momentum: Linear.*span 0.0 to 1.2.*0 <= x < 1"),
    ("rms_halflife", Constant(-1.0), r"invalid rms_halflife: Constant.*must be x > 0"),
    ("weight_decay", Sequence([Constant(0.1), Linear(0.1, -0.1, 5)], [3]),
     r"invalid weight_decay: Sequence.*span -0.1 to 0.1"),
    ("learning_rate", ReduceOnPlateau(0.1), None),   # its range [0, 0.1] is fine
])
def test_a_schedules_range_is_checked_when_given(name, schedule, match):
    loss, _, X, y = regression()
    opt = downhill.build("rmsprop", loss)
    if match is None:
        opt.iterate([X, y], **{name: schedule})
        return
    with pytest.raises(ValueError, match=match):
        opt.iterate([X, y], **{name: schedule})
    with pytest.raises(ValueError, match=match):
        downhill.build("rmsprop", loss, **{name: schedule})


def test_bounds_are_the_range_over_every_update():
    for schedule in list(SCHEDULES.values()) + list(OTHERS.values()):
        values = [schedule(n) for n in range(300)]
        low, high = schedule.bounds(300)
        assert (low, high) == (min(values), max(values)), schedule
        low, high = schedule.bounds()
        assert low <= min(values) and high == max(values), schedule
    assert StepDecay(1.0, 0.5, 2).bounds() == (0.0, 1.0)
    assert ExponentialDecay(1.0, 3.0, min_value=0.25).bounds() == (0.25, 1.0)


# ----------------------------------------------------------------------
# PyTensor shared variables and expressions

def test_a_shared_learning_rate_is_read_as_it_is():
    lr = pytensor.shared(0.1)
    loss, (w, b), X, y = regression()
    opt = downhill.build("sgd", loss)
    fn = pytensor.function(opt.inputs, loss, updates=opt.get_updates(learning_rate=lr))
    assert opt.learning_rate is lr
    pw, pb = np.zeros(3), 0.0
    for rate in (0.1, 0.05, 0.02):
        lr.set_value(rate)
        fn(X, y)
        gw, gb = reg_grad(X, y, pw, pb)
        pw, pb = pw - rate * gw, pb - rate * gb
    np.testing.assert_allclose(w.get_value(), pw, rtol=1e-13)
    # and in iterate, an expression of shared variables
    scale = pytensor.shared(1.0)
    opt.minimize([X, y], batch_size=0, max_updates=2, learning_rate=0.01 * scale, momentum=0.3)
    assert opt.state_dict()["hyperparameters"].get("learning_rate") is None  # an expression


def test_pytensor_values_are_checked():
    loss, _, X, y = regression()
    opt = downhill.build("sgd", loss)
    for bad, match in [(pytensor.shared(1), "of type Scalar\\(int64.*must be a float scalar"),
                       (pytensor.shared(np.zeros(2)), "must be a float scalar"),
                       (pt.vector("v"), "must be a float scalar")]:
        with pytest.raises(ValueError, match=f"invalid learning_rate: .*{match}"):
            opt.get_updates(learning_rate=bad)
    with pytest.raises(ValueError, match=r"invalid momentum: .* holds 1.5 \(must be 0 <= x < 1\)"):
        opt.get_updates(momentum=pytensor.shared(1.5))
    with pytest.raises(ValueError, match=r"invalid patience: .*a number, not a PyTensor"):
        opt.iterate([X, y], patience=pytensor.shared(3.0))
    x = pt.scalar("x")
    with pytest.raises(ValueError, match=r"depends on the input 'x'.*get_updates"):
        opt.iterate([X, y], learning_rate=0.1 * x)
    step = pytensor.function([x] + opt.inputs, loss,
                             updates=opt.get_updates(learning_rate=0.1 * x))
    step(0.5, X, y)  # your own function feeds it


def test_an_out_of_range_shared_value_is_caught_in_the_graph():
    mu = pytensor.shared(0.5)
    loss, (w, b), X, y = regression()
    opt = downhill.build("sgd", loss)
    fn = pytensor.function(opt.inputs, loss, updates=opt.get_updates(
        learning_rate=0.05, momentum=mu, on_nonfinite="skip"))
    fn(X, y)
    kept = w.get_value()
    mu.set_value(1.5)
    fn(X, y)  # momentum 1.5 is NaN in the graph: the step is skipped
    np.testing.assert_array_equal(w.get_value(), kept)
    mu.set_value(0.5)
    fn(X, y)
    assert not np.array_equal(w.get_value(), kept)
    # in the loop, the non-finite policy stops the run
    with pytest.raises(FloatingPointError, match="not finite|non-finite"):
        for _ in opt.iterate([X, y], batch_size=16, max_updates=5, momentum=mu,
                             validate_every=1):
            mu.set_value(1.5)  # from the next iteration on


def test_a_shared_variable_is_the_callers_in_a_checkpoint(tmp_path):
    lr = pytensor.shared(0.02)
    loss, _, X, y = regression()
    opt = downhill.build("sgd", loss, learning_rate=lr)
    opt.minimize([X, y], batch_size=16, max_updates=1)
    state = opt.state_dict()
    assert state["hyperparameters"]["learning_rate"] == 0.02  # recorded
    lr.set_value(0.005)
    opt.load_state_dict(state)
    assert lr.get_value() == 0.005 and opt.learning_rate is lr  # never written
    other = downhill.build("sgd", regression()[0])
    other.load_state_dict(state)
    assert other.learning_rate.get_value() == 0.02  # a number for an optimizer without one


# ----------------------------------------------------------------------
# the update counter and checkpoints

def test_the_counter_counts_skipped_steps_and_your_own_steps():
    loss, (w, b), X, y = regression()
    opt = downhill.build("sgd", loss)
    fn = pytensor.function(opt.inputs, loss, updates=opt.get_updates(
        learning_rate=Linear(0.1, 0.0, 10), on_nonfinite="skip"))
    bad = y.copy()
    bad[0] = np.nan
    fn(X, bad)
    fn(X, y)
    assert opt._settings.count() == 2
    assert opt.learning_rate.get_value() == pytest.approx(0.09)  # the second step's
    assert opt.state_dict()["counters"]["updates"] == 2
    names = [v.name for v in opt.state_variables]
    assert "update_count" not in names  # a counter, not an algorithm's state


def test_resume_with_a_graph_schedule_is_bit_for_bit(tmp_path):
    def make():
        loss, params, X, y = regression(n=80)
        opt = downhill.build("rmsprop", loss)
        train = downhill.Dataset([X, y], batch_size=16, rng=7, name="train")
        valid = downhill.Dataset([X, y], batch_size=40, rng=8, name="valid")
        return opt, params, train, valid

    hypers = dict(learning_rate=SCHEDULES["sequence"], rms_halflife=OTHERS["rms_halflife"],
                  momentum=OTHERS["momentum"], validate_every=1, patience=100)
    opt, params, train, valid = make()
    straight = list(opt.iterate(train, valid, max_updates=6, **hypers))
    path = tmp_path / "run.npz"
    first, _, train1, valid1 = make()
    part1 = list(first.iterate(train1, valid1, max_updates=3, checkpoint=path, **hypers))
    second, params2, train2, valid2 = make()
    part2 = list(second.iterate(train2, valid2, max_updates=3, checkpoint=path, resume=True,
                                **hypers))
    assert part1 + part2 == straight
    for p, q in zip(params, params2):
        np.testing.assert_array_equal(p.get_value(), q.get_value())
    assert second._settings.count() == opt._settings.count() == 30


def test_a_checkpoint_of_the_previous_version_resumes(tmp_path):
    """tests/data/main-d7a7d6d-rmsprop.npz was written before schedules were in the
    graph (see tests/data/make_main_checkpoint.py): same fields, the update
    count in counters.updates; resuming it gives the run of this version."""
    made = runpy.run_path(str(pathlib.Path(__file__).parent / "data" /
                              "make_main_checkpoint.py"))
    fixture = pathlib.Path(__file__).parent / "data" / "main-d7a7d6d-rmsprop.npz"
    header, saved = downhill.checkpoint.read(fixture)
    assert header["downhill"] == "0.5.0" and saved["counters"]["updates"] == 15
    assert "update_count" not in saved["state"]
    path = tmp_path / "old.npz"  # resuming writes the file at the end
    path.write_bytes(fixture.read_bytes())
    schedule = ExponentialDecay(0.01, halflife=7.0)
    opt, params, train, valid = made["problem"]()
    straight = list(opt.iterate(train, valid, max_updates=6, learning_rate=schedule,
                                **made["SETTINGS"]))
    again, params2, train2, valid2 = made["problem"]()
    resumed = list(again.iterate(train2, valid2, max_updates=3, learning_rate=schedule,
                                 checkpoint=path, resume=True, **made["SETTINGS"]))
    assert again._settings.count() == 30
    assert [v["loss"] for _, v in resumed] == pytest.approx(
        [v["loss"] for _, v in straight[3:]], rel=1e-13)
    for p, q in zip(params, params2):
        np.testing.assert_allclose(q.get_value(), p.get_value(), rtol=1e-13)


# ----------------------------------------------------------------------
# downhill.updates: re-binding at call time

def test_update_functions_rebind_keywords_like_pymcs_partials():
    import functools

    fn = downhill.updates("adam", learning_rate=0.01)
    assert isinstance(fn, functools.partial) and fn.func is downhill.updates
    assert fn.args == ("adam",) and fn.keywords == {"learning_rate": 0.01}
    loss, params, X, y = regression()
    ups = fn(loss, params, learning_rate=0.02, beta1_halflife=3.0)
    assert ups.optimizer.learning_rate.get_value() == 0.02 and fn.optimizer is ups.optimizer
    assert ups.optimizer._values["beta1_halflife"] == 3.0
    bound = functools.partial(fn, learning_rate=0.03)
    assert bound(loss, params).optimizer.learning_rate.get_value() == 0.03
    again = fn(momentum=0.5)
    assert isinstance(again, downhill.functional.UpdateFunction)
    assert again.keywords == {"learning_rate": 0.01, "momentum": 0.5}
    assert repr(again) == "downhill.updates('adam', learning_rate=0.01, momentum=0.5)"


@pytest.mark.parametrize("algo", sorted(downhill.ALGORITHMS))
def test_every_algorithm_takes_a_shared_rate_and_call_time_keywords(algo):
    def steps(ups):
        fn = pytensor.function(inputs, loss, updates=ups)
        for _ in range(3):
            fn(X, y)
        return [p.get_value() for p in params]

    loss, params, X, y = regression()
    inputs = downhill.build("sgd", loss).inputs
    rate = 3e-3
    by_number = steps(downhill.updates(algo, loss, params, learning_rate=rate))
    for p in params:
        p.set_value(np.zeros_like(p.get_value()))
    lr = pytensor.shared(rate)
    by_shared = steps(downhill.updates(algo)(loss, params, learning_rate=lr))
    for a, b in zip(by_number, by_shared):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(by_number[0], 0)


def test_scheduled_values_are_computed_once_per_step_not_per_element():
    # PyTensor would otherwise fuse a schedule's arithmetic (and a half-life's
    # exp) into each parameter's elementwise loop
    from pytensor.scalar import Composite
    from pytensor.tensor.elemwise import Elemwise

    x = pt.matrix("x", dtype="float32")
    w = pytensor.shared(np.zeros((3, 2), "float32"), name="w")
    loss = ((x @ w) ** 2).mean()  # one parameter: each value has one reader
    opt = downhill.build("rmsprop", loss)
    opt.get_updates(learning_rate=SCHEDULES["cosine"], rms_halflife=pytensor.shared(7.0),
                    momentum=Linear(0.0, 0.9, 10))
    fn = opt._functions.step()[0]
    loops = [node for node in fn.maker.fgraph.toposort() if isinstance(node.op, Elemwise)
             and any(out.ndim > 0 for out in node.outputs)]
    assert loops
    for node in loops:
        scalar = node.op.scalar_op
        inner = scalar.fgraph.toposort() if isinstance(scalar, Composite) else []
        names = {type(n.op).__name__ for n in inner} | {type(scalar).__name__}
        assert not names & {"Cos", "Exp", "Exp2", "Pow", "IntDiv", "Switch"}, names


# ----------------------------------------------------------------------
# every algorithm, every numeric hyperparameter of its update

#: The common hyperparameters of the update; an algorithm's own are found
#: from its declarations (every schedulable one but these).
COMMON_SCHEDULED = {
    "learning_rate": CosineWithWarmup(2e-2, warmup=3, total=20, final=1e-3),
    "momentum": Linear(0.0, 0.5, steps=8),
    "weight_decay": StepDecay(0.1, 0.5, every=4),
    "max_gradient_norm": ExponentialDecay(3.0, halflife=5.0, min_value=0.5),
}


def varying(hyper):
    """A graph schedule inside ``hyper``'s range that moves away from its default."""
    d = hyper.default
    if hyper.high is not None and d >= hyper.high:  # e.g. beta1_decay, at most 1
        return Linear(d, 0.9 * d, steps=6)
    if hyper.high is not None:  # e.g. rprop_decrease < 1
        return Linear(d, (d + hyper.low) / 2, steps=6)
    if d == 0:  # e.g. rprop_min_step
        return Linear(0.0, 1e-4, steps=6)
    return Sequence([Constant(d), Linear(d, 2 * d, steps=6)], [2])


@pytest.mark.parametrize("algo", sorted(downhill.ALGORITHMS))
def test_every_algorithm_follows_graph_schedules_on_every_hyperparameter(algo):
    # the same steps as the same schedules evaluated in Python before every
    # update (iterate's plain-function path), in float64
    declared = downhill.ALGORITHMS[algo].hyperparameters()
    own = {name: varying(h) for name, h in declared.items()
           if h.schedulable and name not in COMMON_SCHEDULED
           and not name.startswith("max_gradient")}
    hypers = dict(COMMON_SCHEDULED, **own)
    if algo.startswith("schedule_free"):  # refuses momentum: its interpolation is one
        del hypers["momentum"]
    if algo in ("sgd", "nag"):  # plain SGD needs a smaller step on this problem
        hypers["learning_rate"] = CosineWithWarmup(5e-3, warmup=3, total=20)
    python = {name: (lambda n, s=s: s(n)) for name, s in hypers.items()}
    graph, opt = run(hypers.pop("learning_rate"), "NUMBA", algo=algo, **hypers)
    plain, opt2 = run(python.pop("learning_rate"), "NUMBA", algo=algo, **python)
    hypers["learning_rate"] = opt._values["learning_rate"]
    assert not opt._settings.per_update and set(opt2._settings.per_update) == set(hypers)
    for a, b in zip(graph, plain):
        assert np.all(np.isfinite(a))
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-300)
    assert not np.allclose(graph[0], 0)
    # each shared scalar holds the value the last step used (transforms applied)
    last = opt.update_count - 1
    for name, schedule in hypers.items():
        h = declared[name]
        want = h.shared_value(schedule(last))
        assert float(opt._settings.shared[h.shared].get_value()) == pytest.approx(
            want, rel=1e-14), name
