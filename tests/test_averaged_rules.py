"""Reference checks of Schedule-Free SGD and AdamW and of Lookahead, their
evaluation points in the training loop, and a published result each.

Each update is transcribed independently in NumPy from its docstring's
equations and compared step by step with the compiled PyTensor update
(float64, rtol 1e-9), with clipping and weight decay (Schedule-Free takes
no momentum; Lookahead wraps rules with and without it), and in float32.
The training loop validates Schedule-Free's average x and Lookahead's
slow weights and keeps them as the best parameters. Published results:
Schedule-Free with beta = 0 is Polyak-Ruppert averaging of SGD, and with a
constant learning rate it ends as close to the optimum of a noisy problem as
SGD with a decaying schedule (Defazio et al. 2024); Lookahead's slow weights
settle with less variance than SGD on a noisy quadratic (Zhang et al. 2019,
Proposition 1).
"""

import math

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

import downhill
from test_adaptive import adam_ref, clip, compile_step, gamma, problem, reference

STEPS = 8


# ----------------------------------------------------------------------
# NumPy transcriptions


def sf_ref(lr, beta=0.9, power=2.0, wd=0.0, adamw=None, corrected=True):
    """Schedule-Free: SGD, or AdamW when ``adamw=(beta2_halflife, eps)``."""
    def delta(g, state, p):
        t = state.get("t", 0) + 1
        z, x = (p, p) if t == 1 else (state["z"], state["x"])
        if adamw is None:
            step_size, direction = lr, g
        else:
            b2, eps = gamma(adamw[0]), adamw[1]
            v = b2 * state.get("v", np.zeros_like(g)) + (1 - b2) * g * g
            state["v"] = v
            if corrected:
                step_size, direction = lr * math.sqrt(1 - b2 ** t), g / (np.sqrt(v) + eps)
            else:
                step_size, direction = lr, g / (np.sqrt(v / (1 - b2 ** t)) + eps)
        lr_max = max(state.get("lr_max", 0.0), step_size)
        weight = lr_max ** power
        total = state.get("total", 0.0) + weight
        c = weight / total if total > 0 else 0.0
        z = z - step_size * (direction + wd * p)
        x = (1 - c) * x + c * z
        y = (1 - beta) * z + beta * x
        state.update(t=t, z=z, x=x, lr_max=lr_max, total=total)
        return p - y
    return lambda opt: delta


SF_CASES = [
    ("schedule_free_sgd", dict(learning_rate=0.05, interpolation=0.8, weight_lr_power=1.5),
     sf_ref(0.05, 0.8, 1.5)),
    ("schedule_free_sgd", dict(learning_rate=0.05, weight_decay=0.2), sf_ref(0.05, wd=0.2)),
    ("schedule_free_adamw", dict(learning_rate=0.05, interpolation=0.7, beta2_halflife=5,
                                 rms_regularizer=1e-3, weight_decay=0.1),
     sf_ref(0.05, 0.7, wd=0.1, adamw=(5, 1e-3))),
    ("schedule_free_adamw", dict(learning_rate=0.05, beta2_halflife=5, rms_regularizer=1e-3,
                                 corrected_lr=False),
     sf_ref(0.05, adamw=(5, 1e-3), corrected=False)),
]
SF_IDS = ["sgd", "sgd-decay", "adamw", "adamw-uncorrected"]
NO_MOMENTUM = [dict(), dict(max_gradient_norm=1.0), dict(max_gradient_elem=0.5)]


def check(algo, hyper, make, extra, dtype="float64", steps=STEPS, rtol=1e-9, atol=1e-12):
    w, loss, w0, grad, _ = problem(dtype)
    opt = downhill.build(algo, loss)
    fn = compile_step(opt, **hyper, **extra)
    for _ in range(steps):
        fn()
    want, state = reference(w0, grad, steps, make(opt), elem=extra.get("max_gradient_elem", 0),
                            norm=extra.get("max_gradient_norm", 0))
    got = w.get_value()
    assert got.dtype == np.dtype(dtype)
    assert not np.allclose(got, w0.astype(got.dtype), rtol=1e-3), "no progress: test is void"
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)
    return opt, state


def state_of(opt, suffix):
    (var,) = [v for v in opt.state_variables if v.name.endswith(suffix)]
    return var.get_value()


@pytest.mark.parametrize("algo,hyper,make", SF_CASES, ids=SF_IDS)
@pytest.mark.parametrize("extra", NO_MOMENTUM, ids=["plain", "norm", "elem"])
def test_schedule_free_reference_float64(algo, hyper, make, extra):
    opt, state = check(algo, hyper, make, extra)
    # and the average x, the evaluation point, is the transcription's
    np.testing.assert_allclose(state_of(opt, "_x"), state["x"], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(state_of(opt, "_z"), state["z"], rtol=1e-9, atol=1e-12)


def test_schedule_free_warm_up_from_zero_keeps_the_start():
    # a learning rate of 0 gives the average no weight (c = 0): x stays at
    # the start, and the steps after are weighted by the largest rate so far
    w, loss, w0, grad, _ = problem()
    opt = downhill.build("schedule_free_sgd", loss)
    fn = compile_step(opt, learning_rate=0.05)
    state, p = {}, w0.copy()
    for lr in (0.0, 0.02, 0.05, 0.03, 0.05):
        opt.learning_rate.set_value(lr)
        fn()
        p = p - sf_ref(lr)(opt)(grad(p), state, p)
        np.testing.assert_allclose(w.get_value(), p, rtol=1e-12)
        if lr == 0:
            np.testing.assert_array_equal(state_of(opt, "_x"), w0)
    assert state["lr_max"] == 0.05


@pytest.mark.parametrize("algo,hyper,make", SF_CASES, ids=SF_IDS)
def test_schedule_free_float32_stays_float32(algo, hyper, make):
    w, loss, w0, grad, _ = problem("float32")
    opt = downhill.build(algo, loss)
    updates = opt.get_updates(**hyper, max_gradient_norm=2.0)
    for var, expr in updates:
        # the step counter and the update counter are integers
        wide = var.name in ("t", "update_count")
        assert expr.dtype == ("int64" if wide else "float32"), var.name
    fn = pytensor.function([], [], updates=updates)
    for _ in range(STEPS):
        fn()
    want, _ = reference(w0, grad, STEPS, make(opt), norm=2.0)
    np.testing.assert_allclose(w.get_value(), want, rtol=1e-4, atol=1e-5)


def test_schedule_free_refuses_momentum():
    w, loss, *_ = problem()
    with pytest.raises(ValueError, match=r"invalid momentum: 0.9 \(must be 0: Schedule-Free"):
        downhill.build("schedule_free_sgd", loss, momentum=0.9)
    opt = downhill.build("schedule_free_adamw", loss)
    with pytest.raises(ValueError, match="invalid momentum: 0.5"):
        opt.get_updates(momentum=0.5)
    with pytest.raises(ValueError, match="invalid momentum"):
        opt.iterate(momentum=lambda n: 0.5)


# Lookahead: the inner rule's step, momentum and decay, then the synchronisation


def lookahead_reference(w0, grad, steps, inner, k, alpha, lr=0.0, mu=0.0, nesterov=False,
                        wd=0.0, norm=0):
    p, v, slow, s = w0.astype(np.float64), 0.0, w0.astype(np.float64), 0
    state = {}
    for _ in range(steps):
        g = clip(grad(p), norm=norm)
        delta = inner(g, state, p)
        if mu:
            v = mu * v - delta
            new = p + (mu * v - delta if nesterov else v)
        else:
            new = p - delta
        new = new - lr * wd * p
        s += 1
        if s == k:
            slow, s = slow + alpha * (new - slow), 0
            p = slow
        else:
            p = new
    return p, slow


LOOKAHEAD_CASES = [
    (dict(inner="sgd", learning_rate=0.05, sync_period=3, slow_step_size=0.6),
     lambda g, state, p: 0.05 * g, {}),
    (dict(inner="sgd", learning_rate=0.02, sync_period=3, slow_step_size=0.6, momentum=0.9,
          nesterov=True, max_gradient_norm=1.0, weight_decay=0.1),
     lambda g, state, p: 0.02 * g, dict(lr=0.02, mu=0.9, nesterov=True, norm=1.0, wd=0.1)),
    (dict(inner="adam", learning_rate=0.05, beta1_halflife=3, beta2_halflife=10,
          rms_regularizer=1e-3, sync_period=4, slow_step_size=0.3, momentum=0.5),
     adam_ref(0.05, 3, 10, 1e-3)(None), dict(mu=0.5)),
]


@pytest.mark.parametrize("hyper,inner,extra", LOOKAHEAD_CASES, ids=["sgd", "nag-decay", "adam"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_lookahead_reference(hyper, inner, extra, dtype):
    w, loss, w0, grad, _ = problem(dtype)
    hyper = dict(hyper)
    opt = downhill.build("lookahead", loss, inner=hyper.pop("inner"))
    updates = opt.get_updates(**hyper)
    for var, expr in updates:
        assert expr.dtype == var.dtype, var.name
    fn = pytensor.function([], [], updates=updates)
    for _ in range(10):
        fn()
    want, slow = lookahead_reference(w0, grad, 10, inner, hyper["sync_period"],
                                     hyper["slow_step_size"], **extra)
    tol = dict(rtol=1e-9, atol=1e-12) if dtype == "float64" else dict(rtol=1e-4, atol=1e-5)
    assert w.get_value().dtype == np.dtype(dtype)
    np.testing.assert_allclose(w.get_value(), want, **tol)
    np.testing.assert_allclose(state_of(opt, "_slow"), slow, **tol)
    assert not np.allclose(slow, w0, rtol=1e-3) and not np.allclose(want, slow)


def test_lookahead_of_one_step_is_the_inner_rule_with_a_smaller_rate():
    # k = 1: every step synchronises, theta <- theta + alpha (theta' - theta)
    def run(algo, **hyper):
        w, loss, w0, grad, _ = problem()
        opt = downhill.build(algo, loss, **({"inner": "sgd"} if algo == "lookahead" else {}))
        fn = compile_step(opt, **hyper)
        for _ in range(6):
            fn()
        return w.get_value()
    np.testing.assert_allclose(run("lookahead", learning_rate=0.1, sync_period=1,
                                   slow_step_size=0.25), run("sgd", learning_rate=0.025),
                               rtol=1e-13)
    # alpha = 1: the slow weights jump to the fast ones, Lookahead is the inner rule
    np.testing.assert_allclose(run("lookahead", learning_rate=0.1, slow_step_size=1.0),
                               run("sgd", learning_rate=0.1), rtol=1e-13)


def test_lookahead_class_per_inner_rule_and_its_hyperparameters():
    w, loss, *_ = problem()
    opt = downhill.build("lookahead", loss, inner="RMSProp", rms_halflife=5)
    assert type(opt).__name__ == "LookaheadRMSProp" and isinstance(opt, downhill.Lookahead)
    assert isinstance(opt, downhill.RMSProp)
    assert type(downhill.build("lookahead", loss, inner="rmsprop")) is type(opt)
    assert type(downhill.build("lookahead", loss)).__name__ == "LookaheadAdam"  # the default
    assert {"rms_halflife", "sync_period", "inner"} <= set(type(opt).hyperparameters())
    assert opt.state_dict()["algorithm"] == "LookaheadRMSProp"
    assert opt.state_dict()["hyperparameters"]["inner"] == "rmsprop"
    with pytest.raises(ValueError, match=r"invalid inner: 'adam' \(this optimizer wraps "
                                         r"'rmsprop'.*inner='adam'"):
        opt.iterate(inner="adam")
    for bad in ("lookahead", "schedule_free_sgd", "adm", 3):
        with pytest.raises(ValueError, match=f"invalid inner: {bad!r}"):
            downhill.build("lookahead", loss, inner=bad)
    with pytest.raises(ValueError, match="invalid sync_period: 0"):
        downhill.build("lookahead", loss, sync_period=0)
    with pytest.raises(ValueError, match="invalid slow_step_size: 0.0"):
        opt.get_updates(slow_step_size=0.0)
    # a checkpoint of another inner rule is refused by name
    other = downhill.build("lookahead", loss, inner="sgd")
    with pytest.raises(ValueError, match="LookaheadRMSProp"):
        other.load_state_dict(opt.state_dict())


# ----------------------------------------------------------------------
# the evaluation point in the training loop


def regression(n=64, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    Y = X @ np.array([1.0, -2.0, 0.5]) + 0.3 * rng.normal(size=n)
    x, y = pt.matrix("x"), pt.vector("y")
    w = pytensor.shared(np.zeros(3), name="w")
    return ((x @ w - y) ** 2).mean(), w, X, Y


def loss_at(X, Y, w):
    return float(((X @ w - Y) ** 2).mean())


@pytest.mark.parametrize("algo,suffix,build", [
    ("schedule_free_sgd", "_x", dict()),
    ("schedule_free_adamw", "_x", dict()),
    ("lookahead", "_slow", dict(inner="sgd", sync_period=3))])
def test_validation_and_the_best_parameters_read_the_evaluation_point(algo, suffix, build):
    loss, w, X, Y = regression()
    opt = downhill.build(algo, loss, **build)
    points = [w.get_value()]   # the start, validated before the first pass
    for _, valid in opt.iterate(downhill.Dataset([X, Y], batch_size=10, rng=0), [X, Y],
                                max_updates=6, learning_rate=0.02, validate_every=1,
                                patience=100):
        # the validation yielded was made before this pass, of the point then
        assert valid["loss"] == pytest.approx(loss_at(X, Y, points[-1]), rel=1e-12)
        point = state_of(opt, suffix)
        synced = algo == "lookahead" and state_of(opt, "lookahead_steps") == 0
        assert synced or not np.allclose(point, w.get_value())   # they differ in training
        points.append(point)
    # the loop validates once more at the end; the parameters hold the best
    # validated point, not the last y
    best = min(points, key=lambda v: loss_at(X, Y, v))
    np.testing.assert_array_equal(w.get_value(), best)
    np.testing.assert_array_equal(opt._run.best_params[0], best)
    # final_params='last' leaves the gradient point of the last step
    opt.minimize([X, Y], batch_size=10, max_updates=2, learning_rate=0.02,
                 final_params="last")
    assert not np.allclose(w.get_value(), state_of(opt, suffix))


def test_schedule_free_validates_the_average_of_average_ema_when_asked():
    loss, w, X, Y = regression()
    opt = downhill.build("schedule_free_sgd", loss)
    before = w.get_value()
    for _, valid in opt.iterate([X, Y], batch_size=16, max_updates=3, learning_rate=0.02,
                                average="ema", average_halflife=2, validate_on="average",
                                validate_every=1, final_params="last"):
        assert valid["loss"] == pytest.approx(loss_at(X, Y, before), rel=1e-12)
        before = state_of(opt, "_avg")
        assert not np.allclose(before, state_of(opt, "_x"))


# ----------------------------------------------------------------------
# published results


def test_schedule_free_with_no_interpolation_is_polyak_averaging_of_sgd():
    # Defazio et al. (2024), Section 2: beta = 0 takes gradients at z, the SGD
    # iterates, and x is their running mean (constant weights: c = 1/t)
    w, loss, w0, grad, _ = problem()
    opt = downhill.build("schedule_free_sgd", loss)
    fn = compile_step(opt, learning_rate=0.02, interpolation=0.0)
    p, iterates = w0.copy(), []
    for _ in range(20):
        fn()
        p = p - 0.02 * grad(p)
        iterates.append(p)
        np.testing.assert_allclose(w.get_value(), p, rtol=1e-12)
        np.testing.assert_allclose(state_of(opt, "_x"), np.mean(iterates, axis=0), rtol=1e-12)


def noisy_least_squares(algo, steps, seed=1, schedule=None, **hyper):
    """A 10-D quadratic with noisy gradients; the distance of the evaluation
    point (the parameters for SGD) to the optimum after ``steps``."""
    rng = np.random.default_rng(seed)
    scales = np.linspace(0.5, 2.0, 10)
    noise = pytensor.shared(np.zeros(10), name="noise")
    w = pytensor.shared(np.full(10, 1.0), name="w")
    loss = 0.5 * (scales * w ** 2).sum() + (noise * w).sum()
    opt = downhill.build(algo, loss, params=[w], **hyper.pop("build", {}))
    fn = compile_step(opt, **hyper)
    for t in range(steps):
        if schedule is not None:
            opt.learning_rate.set_value(schedule(t))
        noise.set_value(rng.normal(size=10))
        fn()
    point = opt._evaluation_point()
    return float(np.sqrt(((point[0].get_value() if point else w.get_value()) ** 2).sum()))


def test_schedule_free_matches_a_decaying_schedule_without_one():
    # Defazio et al. (2024): with a constant learning rate the average x ends as
    # close to the optimum as the last iterate of SGD with a schedule that
    # decays linearly to 0 over the known horizon, where SGD's last iterate at
    # the constant rate stays at the noise floor (measured, 8 seeds: 0.149,
    # 0.165 and 0.689)
    def mean(algo, schedule=None):
        return np.mean([noisy_least_squares(algo, 2000, seed, schedule, learning_rate=0.1)
                        for seed in range(8)])
    sf, constant = mean("schedule_free_sgd"), mean("sgd")
    decayed = mean("sgd", lambda t: 0.1 * (1 - t / 2000))
    assert sf < 1.25 * decayed and sf < 0.35 * constant, (sf, decayed, constant)


def test_lookahead_slow_weights_settle_closer_than_sgd():
    # Zhang et al. (2019), Proposition 1: on a noisy quadratic the slow weights'
    # steady state has less variance than SGD's with the same learning rate
    # (measured, 6 seeds: 0.68 and 1.01)
    sgd = np.mean([noisy_least_squares("sgd", 1000, seed, learning_rate=0.2)
                   for seed in range(6)])
    slow = np.mean([noisy_least_squares("lookahead", 1000, seed, learning_rate=0.2,
                                        build=dict(inner="sgd")) for seed in range(6)])
    assert slow < 0.8 * sgd, (slow, sgd)


# ----------------------------------------------------------------------
# declarations

DOCUMENTED = {
    "schedule_free_sgd": dict(interpolation=0.9, weight_lr_power=2.0),
    "schedule_free_adamw": dict(interpolation=0.9, weight_lr_power=2.0, beta2_halflife=69.0,
                                rms_regularizer=1e-8, corrected_lr=True),
    "lookahead": dict(inner="adam", sync_period=5, slow_step_size=0.5),
}


@pytest.mark.parametrize("algo", sorted(DOCUMENTED))
def test_defaults(algo):
    cls = downhill.ALGORITHMS[algo]
    own = {name: h.default for name, h in cls.hyperparameters().items()
           if name in DOCUMENTED[algo]}
    assert own == DOCUMENTED[algo]
    for name in DOCUMENTED[algo]:
        assert f"{name} : " in cls.__doc__, f"{name} is not in the Parameters"


@pytest.mark.parametrize("algo,name,value,allowed", [
    ("schedule_free_sgd", "interpolation", 1.5, "0 <= x <= 1"),
    ("schedule_free_adamw", "weight_lr_power", -1.0, "x >= 0"),
    ("schedule_free_adamw", "corrected_lr", "yes", "True or False"),
    ("lookahead", "sync_period", 2.5, "integer >= 1"),
    ("lookahead", "slow_step_size", 1.5, "0 < x <= 1"),
])
def test_invalid_values(algo, name, value, allowed):
    w = pytensor.shared(np.zeros(2), name="w")
    opt = downhill.build(algo, (w ** 2).sum())
    pattern = f"invalid {name}: {value!r}".replace("(", r"\(").replace(")", r"\)")
    with pytest.raises(ValueError, match=pattern) as info:
        opt.get_updates(**{name: value})
    assert allowed in str(info.value)


def test_the_command_line_chooses_lookaheads_inner_rule():
    import json

    from click.testing import CliRunner

    from downhill import cli

    def run(*args):
        return CliRunner().invoke(cli.cli, ["run", "rosenbrock", "--algo", "lookahead",
                                            "--max-updates", "3", "--json", *args])
    # the inner rule's hyperparameters are the wrapper's: accepted with -H inner=...
    result = run("-H", "inner=rmsprop", "-H", "rms_halflife=7", "-H", "sync_period=2")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["settings"]["inner"] == "rmsprop"
    result = run("-H", "rms_halflife=7")   # the default inner rule, Adam, has none
    assert result.exit_code == 2 and "rms_halflife" in result.stderr
    result = run("-H", "inner=adm")
    assert result.exit_code == 2 and "did you mean 'adam'?" in result.stderr
