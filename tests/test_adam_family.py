"""Reference checks of AMSGrad, Adamax, NAdam, RAdam, AdaBelief, Yogi and
PyMC's adagrad_window, and a published result per family.

Each update is transcribed independently in NumPy from its docstring's
equations and compared step by step with the compiled PyTensor update
(float64, rtol 1e-9), with and without momentum, Nesterov momentum and
clipping, and in float32; then equivalences, defaults, bad values, and the
results the papers publish: Reddi et al.'s counterexample (Adam goes to +1,
AMSGrad to the optimum -1), RAdam's first steps being momentum steps,
Yogi's second moment not forgetting a rare gradient.
"""

import math

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

import downhill
from test_adaptive import EXTRAS, N_STEPS, compile_step, gamma, problem, reference

# ----------------------------------------------------------------------
# NumPy transcriptions of the docstrings' equations: each factory returns
# make(opt) -> delta(g, state, p), keeping its state in the dict.


def _moments(g, state, b1, b2):
    t = state.get("t", 0) + 1
    m = b1 * state.get("m", np.zeros_like(g)) + (1 - b1) * g
    v = b2 * state.get("v", np.zeros_like(g)) + (1 - b2) * g * g
    state["t"], state["m"], state["v"] = t, m, v
    return t, m, v


def amsgrad_ref(lr, h1, h2, eps, form="corrected"):
    b1, b2 = gamma(h1), gamma(h2)

    def delta(g, state, p):
        t, m, v = _moments(g, state, b1, b2)
        if form == "corrected":
            vmax = np.maximum(state.get("vmax", np.zeros_like(g)), v / (1 - b2 ** t))
            denom = np.sqrt(vmax) + eps
        else:
            vmax = np.maximum(state.get("vmax", np.zeros_like(g)), v)
            denom = np.sqrt(vmax / (1 - b2 ** t)) + eps
        state["vmax"] = vmax
        return lr * (m / (1 - b1 ** t)) / denom
    return lambda opt: delta


def adamax_ref(lr, h1, h2, eps, in_max=True):
    b1, b2 = gamma(h1), gamma(h2)

    def delta(g, state, p):
        t = state.get("t", 0) + 1
        m = b1 * state.get("m", np.zeros_like(g)) + (1 - b1) * g
        u = state.get("u", np.zeros_like(g))
        u = np.maximum(b2 * u, np.abs(g) + eps) if in_max else np.maximum(b2 * u, np.abs(g))
        state["t"], state["m"], state["u"] = t, m, u
        return lr / (1 - b1 ** t) * m / (u if in_max else u + eps)
    return lambda opt: delta


def nadam_ref(lr, h1, h2, eps, psi=0.004, schedule=True):
    b1, b2 = gamma(h1), gamma(h2)

    def mu(t):
        return b1 * (1 - 0.5 * 0.96 ** (t * psi)) if schedule else b1

    def delta(g, state, p):
        t, m, v = _moments(g, state, b1, b2)
        prod = state.get("prod", 1.0) * mu(t)
        state["prod"] = prod
        numer = (1 - mu(t)) / (1 - prod) * g + mu(t + 1) / (1 - prod * mu(t + 1)) * m
        return lr * numer / (np.sqrt(v / (1 - b2 ** t)) + eps)
    return lambda opt: delta


def radam_ref(lr, h1, h2, eps, threshold=5.0):
    b1, b2 = gamma(h1), gamma(h2)
    rho_inf = 2 / (1 - b2) - 1

    def delta(g, state, p):
        t, m, v = _moments(g, state, b1, b2)
        rho = rho_inf - 2 * t * b2 ** t / (1 - b2 ** t)
        m_hat = m / (1 - b1 ** t)
        state["rectified"] = state.get("rectified", 0) + int(rho > threshold)
        if rho <= threshold:
            return lr * m_hat
        r = math.sqrt((rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho))
        return lr * r * m_hat / (np.sqrt(v / (1 - b2 ** t)) + eps)
    return lambda opt: delta


def adabelief_ref(lr, h1, h2, eps, eps_s):
    b1, b2 = gamma(h1), gamma(h2)

    def delta(g, state, p):
        t = state.get("t", 0) + 1
        m = b1 * state.get("m", np.zeros_like(g)) + (1 - b1) * g
        s = b2 * state.get("s", np.zeros_like(g)) + (1 - b2) * (g - m) ** 2 + eps_s
        state["t"], state["m"], state["s"] = t, m, s
        return lr * (m / (1 - b1 ** t)) / (np.sqrt(s / (1 - b2 ** t)) + eps)
    return lambda opt: delta


def yogi_ref(lr, h1, h2, eps, v0=1e-6):
    b1, b2 = gamma(h1), gamma(h2)

    def delta(g, state, p):
        t = state.get("t", 0) + 1
        m = b1 * state.get("m", np.zeros_like(g)) + (1 - b1) * g
        v = state.get("v", np.full_like(g, v0))
        v = v - (1 - b2) * np.sign(v - g * g) * g * g
        state["t"], state["m"], state["v"] = t, m, v
        return lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)
    return lambda opt: delta


def window_ref(lr, eps, n):
    def delta(g, state, p):
        t = state.get("t", 0)
        window = state.get("W", np.zeros(g.shape + (n,)))
        window[..., t % n] = g * g
        state["t"], state["W"] = t + 1, window
        return lr * g / np.sqrt(window.sum(axis=-1) + eps)
    return lambda opt: delta


H1, H2 = 3.0, 10.0
CASES = [
    ("amsgrad", dict(learning_rate=0.05, beta1_halflife=H1, beta2_halflife=H2,
                     rms_regularizer=1e-3), amsgrad_ref(0.05, H1, H2, 1e-3)),
    ("amsgrad", dict(learning_rate=0.05, beta1_halflife=H1, beta2_halflife=H2,
                     rms_regularizer=1e-3, amsgrad_max="raw"),
     amsgrad_ref(0.05, H1, H2, 1e-3, "raw")),
    ("adam", dict(learning_rate=0.05, beta1_halflife=H1, beta2_halflife=H2,
                  rms_regularizer=1e-3, amsgrad=True), amsgrad_ref(0.05, H1, H2, 1e-3)),
    ("adamax", dict(learning_rate=0.05, beta1_halflife=H1, beta2_halflife=H2,
                    rms_regularizer=0.1), adamax_ref(0.05, H1, H2, 0.1)),
    ("adamax", dict(learning_rate=0.05, beta1_halflife=H1, beta2_halflife=H2,
                    rms_regularizer=0.1, regularizer_in_max=False),
     adamax_ref(0.05, H1, H2, 0.1, in_max=False)),
    # a large psi, so that the schedule moves within the few steps
    ("nadam", dict(learning_rate=0.05, beta1_halflife=H1, beta2_halflife=H2,
                   rms_regularizer=1e-3, mu_decay=0.5), nadam_ref(0.05, H1, H2, 1e-3, 0.5)),
    ("nadam", dict(learning_rate=0.05, beta1_halflife=H1, beta2_halflife=H2,
                   rms_regularizer=1e-3, mu_schedule=False),
     nadam_ref(0.05, H1, H2, 1e-3, schedule=False)),
    # beta2 = 0.5^(1/2): rho_t passes 4.3 at the seventh step, both branches run
    ("radam", dict(learning_rate=0.05, beta1_halflife=H1, beta2_halflife=2.0,
                   rms_regularizer=1e-3, radam_threshold=4.3),
     radam_ref(0.05, H1, 2.0, 1e-3, 4.3)),
    ("adabelief", dict(learning_rate=0.05, beta1_halflife=H1, beta2_halflife=H2,
                       rms_regularizer=1e-3, variance_regularizer=1e-2),
     adabelief_ref(0.05, H1, H2, 1e-3, 1e-2)),
    ("yogi", dict(learning_rate=0.05, beta1_halflife=H1, beta2_halflife=H2,
                  rms_regularizer=1e-2, initial_accumulator=0.5),
     yogi_ref(0.05, H1, H2, 1e-2, 0.5)),
    ("adagrad_window", dict(learning_rate=0.1, rms_regularizer=0.5, window=3),
     window_ref(0.1, 0.5, 3)),
]
IDS = [a + "".join(f"-{k}={v}" for k, v in h.items() if k in (
    "amsgrad_max", "amsgrad", "regularizer_in_max", "mu_schedule")) for a, h, _ in CASES]
DEFAULTS = [
    ("amsgrad", amsgrad_ref(0.01, 7, 69, 1e-8)),
    ("adamax", adamax_ref(0.01, 7, 69, 1e-8)),
    ("nadam", nadam_ref(0.01, 7, 69, 1e-8)),
    ("radam", radam_ref(0.01, 7, 69, 1e-8)),
    ("adabelief", adabelief_ref(0.01, 7, 69, 1e-16, 1e-16)),
    ("yogi", yogi_ref(0.01, 7, 69, 1e-3, 1e-6)),
    ("adagrad_window", window_ref(0.01, 0.1, 10)),
]
STEPS = 8  # more than the window of 3, so that it wraps around


def check(algo, hyper, make, extra, dtype="float64", steps=STEPS, rtol=1e-9, atol=1e-12):
    w, loss, w0, grad, _ = problem(dtype)
    opt = downhill.build(algo, loss)
    fn = compile_step(opt, **hyper, **extra)
    for _ in range(steps):
        fn()
    want, state = reference(w0, grad, steps, make(opt), mu=extra.get("momentum", 0),
                            nesterov=extra.get("nesterov", False),
                            elem=extra.get("max_gradient_elem", 0),
                            norm=extra.get("max_gradient_norm", 0))
    got = w.get_value()
    assert got.dtype == np.dtype(dtype)
    assert not np.allclose(got, w0.astype(got.dtype), rtol=1e-3), "no progress: test is void"
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)
    return opt, state


@pytest.mark.parametrize("algo,hyper,make", CASES, ids=IDS)
@pytest.mark.parametrize("extra", EXTRAS, ids=["plain", "momentum", "nesterov+norm", "elem"])
def test_reference_float64(algo, hyper, make, extra):
    opt, state = check(algo, hyper, make, extra)
    if algo == "radam" and not extra:
        assert 0 < state["rectified"] < STEPS   # both branches were taken


@pytest.mark.parametrize("algo,make", DEFAULTS, ids=[a for a, _ in DEFAULTS])
def test_reference_defaults(algo, make):
    # radam's defaults rectify from step 6 on: run long enough to see it
    check(algo, dict(learning_rate=0.01), make, {}, steps=12)


@pytest.mark.parametrize("algo,hyper,make", CASES, ids=IDS)
def test_float32_stays_float32(algo, hyper, make):
    w, loss, w0, grad, _ = problem("float32")
    opt = downhill.build(algo, loss)
    updates = opt.get_updates(**hyper, momentum=0.5, max_gradient_norm=2.0)
    wide = {"t": "int64", "update_count": "int64"}  # the step counter, the update counter
    for var, expr in updates:
        assert expr.dtype == wide.get(var.name, "float32"), var.name
    fn = pytensor.function([], [], updates=updates)
    for _ in range(STEPS):
        fn()
    assert w.get_value().dtype == np.float32
    want, _ = reference(w0, grad, STEPS, make(opt), mu=0.5, norm=2.0)
    np.testing.assert_allclose(w.get_value(), want, rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------
# equivalences


def trajectory(algo, steps=6, loss_fn=None, **hyper):
    w, loss, w0, grad, _ = problem()
    opt = downhill.build(algo, loss if loss_fn is None else loss_fn(w))
    fn = compile_step(opt, **hyper)
    out = []
    for _ in range(steps):
        fn()
        out.append(w.get_value())
    return np.array(out)


def test_amsgrad_is_adam_with_amsgrad_and_differs_from_adam():
    hyper = dict(learning_rate=0.05, beta1_halflife=3, beta2_halflife=10, momentum=0.5)
    amsgrad = trajectory("amsgrad", **hyper)
    np.testing.assert_array_equal(trajectory("adam", amsgrad=True, **hyper), amsgrad)
    np.testing.assert_array_equal(trajectory("AMSGrad", **hyper), amsgrad)
    assert not np.allclose(trajectory("adam", **hyper), amsgrad, rtol=1e-3)


def test_amsgrad_on_a_constant_gradient_is_adam():
    # v / (1 - beta2^t) = g^2 at every step: its running maximum is itself
    linear = lambda w: (w * np.linspace(-2, 2, 12).reshape(3, 4)).sum()  # noqa: E731
    hyper = dict(learning_rate=0.05, beta1_halflife=3, beta2_halflife=10)
    np.testing.assert_allclose(trajectory("amsgrad", loss_fn=linear, **hyper),
                               trajectory("adam", loss_fn=linear, **hyper), rtol=1e-13)


def test_amsgrad_refuses_to_be_turned_off():
    w, loss, *_ = problem()
    with pytest.raises(ValueError, match="invalid amsgrad: False.*use Adam"):
        downhill.AMSGrad(loss, amsgrad=False)
    opt = downhill.AMSGrad(loss)
    with pytest.raises(ValueError, match="invalid amsgrad: False"):
        opt.get_updates(amsgrad=False)
    with pytest.raises(ValueError, match="invalid amsgrad: False"):
        opt.amsgrad = False
    with pytest.raises(ValueError, match="invalid amsgrad: 'yes'"):
        opt.get_updates(amsgrad="yes")
    opt.get_updates(amsgrad=True)


def test_adagrad_window_longer_than_the_run_is_adagrad():
    hyper = dict(learning_rate=0.1, rms_regularizer=0.5)
    np.testing.assert_allclose(trajectory("adagrad_window", steps=5, window=5, **hyper),
                               trajectory("adagrad", steps=5, **hyper), rtol=1e-13)
    assert not np.allclose(trajectory("adagrad_window", steps=5, window=2, **hyper)[-1],
                           trajectory("adagrad", steps=5, **hyper)[-1], rtol=1e-3)


def test_adagrad_window_state_and_its_window_fixed_once_made():
    w, loss, *_ = problem()
    opt = downhill.build("adagrad_window", loss, window=4)
    opt.get_updates()
    (window,) = [v for v in opt.state_variables if v.name == "w_g2_window"]
    assert window.get_value().shape == (3, 4, 4)
    opt.get_updates(window=4)
    with pytest.raises(ValueError, match=r"invalid window: 6 \(this optimizer's state keeps 4"):
        opt.get_updates(window=6)
    with pytest.raises(ValueError, match="invalid window: 0"):
        downhill.build("adagrad_window", loss, window=0)
    assert downhill.build("adagradwindow", loss).__class__ is downhill.AdagradWindow


def test_yogis_first_step_from_zero_is_adams():
    # with v0 = 0: v1 = (1 - beta2) g^2, Adam's v1
    hyper = dict(learning_rate=0.05, beta1_halflife=3, beta2_halflife=10, rms_regularizer=1e-3)
    np.testing.assert_allclose(trajectory("yogi", steps=1, initial_accumulator=0.0, **hyper),
                               trajectory("adam", steps=1, **hyper), rtol=1e-13)


# ----------------------------------------------------------------------
# published results


def reddi(algo, steps=101 * 100, alpha=0.5, **hyper):
    """Reddi et al. (2018), Section 5 and Figure 1: f_t(x) = 1010 x when
    t mod 101 = 1, else -10 x, on [-1, 1]; the best point is -1 (the
    average gradient is positive). Step size alpha / sqrt(t), beta1 = 0.9,
    beta2 = 0.99, projection onto [-1, 1] after every step."""
    x = pytensor.shared(np.zeros(1), name="x")
    c = pytensor.shared(np.zeros(1), name="c")
    opt = downhill.build(algo, (c * x).sum(), params=[x])
    fn = compile_step(opt, beta1_halflife=-math.log(2) / math.log(0.9),
                      beta2_halflife=-math.log(2) / math.log(0.99), **hyper)
    path = []
    for t in range(1, steps + 1):
        c.set_value(np.array([1010.0 if t % 101 == 1 else -10.0]))
        opt.learning_rate.set_value(alpha / math.sqrt(t))
        fn()
        x.set_value(np.clip(x.get_value(), -1, 1))
        path.append(float(x.get_value()[0]))
    return np.array(path)


@pytest.mark.parametrize("form", ["corrected", "raw"])
def test_reddi_counterexample_adam_goes_to_plus_one_amsgrad_to_minus_one(form):
    adam = reddi("adam")
    amsgrad = reddi("amsgrad", amsgrad_max=form)
    last = slice(-101, None)   # the last period
    assert adam[last].mean() > 0.85 and adam[-1] > 0.9
    assert amsgrad[last].mean() < -0.85 and amsgrad[-1] < -0.85
    # and the trend: Adam climbs towards +1, AMSGrad descends towards -1
    assert adam[last].mean() > adam[-2020:-1919].mean()
    assert amsgrad[last].mean() < amsgrad[-2020:-1919].mean()


def test_radam_takes_momentum_steps_until_rho_passes_the_threshold():
    # Liu et al. (2020), Algorithm 2: with beta2 = 0.999, rho_1..rho_5 <= 5 (so the
    # first five steps are plain bias-corrected momentum), rho_6 > 5
    b2 = 0.999
    rho_inf = 2 / (1 - b2) - 1
    rho = [rho_inf - 2 * t * b2 ** t / (1 - b2 ** t) for t in range(1, 8)]
    assert max(rho[:5]) < 5 < rho[5]
    w, loss, w0, grad, _ = problem()
    opt = downhill.build("radam", loss)
    fn = compile_step(opt, learning_rate=0.01, beta1_halflife=-math.log(2) / math.log(0.9),
                      beta2_halflife=-math.log(2) / math.log(b2))
    p, m = w0.copy(), np.zeros_like(w0)
    for t in range(1, 6):
        m = 0.9 * m + 0.1 * grad(p)
        p = p - 0.01 * m / (1 - 0.9 ** t)
        fn()
        np.testing.assert_allclose(w.get_value(), p, rtol=1e-12)
    fn()   # the sixth is rectified: no longer the momentum step
    m = 0.9 * m + 0.1 * grad(p)
    assert not np.allclose(w.get_value(), p - 0.01 * m / (1 - 0.9 ** 6), rtol=1e-6)


def test_yogi_remembers_a_rare_gradient_adam_forgets_it():
    # Zaheer et al. (2018), Section 3: after a large gradient and a run of
    # zeros, Adam's v decays by beta2 every step, Yogi's does not move
    # (v - (1 - beta2) sign(v - 0) * 0 = v)
    x = pytensor.shared(np.zeros(1), name="x")
    c = pytensor.shared(np.array([100.0]), name="c")
    seconds = {}
    for algo, name in (("adam", "x_g2_ewma"), ("yogi", "x_g2_yogi")):
        x.set_value(np.zeros(1))
        opt = downhill.build(algo, (c * x).sum(), params=[x])
        fn = compile_step(opt, beta2_halflife=10,
                          **(dict(initial_accumulator=0.0) if algo == "yogi" else {}))
        c.set_value(np.array([100.0]))
        fn()
        c.set_value(np.array([0.0]))
        (v,) = [s for s in opt.state_variables if s.name == name]
        seconds[algo] = [float(v.get_value()[0])]
        for _ in range(30):
            fn()
            seconds[algo].append(float(v.get_value()[0]))
    b2 = gamma(10)
    np.testing.assert_allclose(seconds["adam"], (1 - b2) * 1e4 * b2 ** np.arange(31),
                               rtol=1e-12)
    np.testing.assert_array_equal(seconds["yogi"], [seconds["yogi"][0]] * 31)


# ----------------------------------------------------------------------
# declarations, validation, names

DOCUMENTED = {
    "amsgrad": dict(amsgrad=True),
    "adamax": dict(beta1_halflife=7.0, beta2_halflife=69.0, rms_regularizer=1e-8,
                   regularizer_in_max=True),
    "nadam": dict(beta1_halflife=7.0, beta2_halflife=69.0, rms_regularizer=1e-8,
                  mu_decay=0.004, mu_schedule=True),
    "radam": dict(beta1_halflife=7.0, beta2_halflife=69.0, rms_regularizer=1e-8,
                  radam_threshold=5.0),
    "adabelief": dict(beta1_halflife=7.0, beta2_halflife=69.0, rms_regularizer=1e-16,
                      variance_regularizer=1e-16),
    "yogi": dict(beta1_halflife=7.0, beta2_halflife=69.0, rms_regularizer=1e-3,
                 initial_accumulator=1e-6),
    "adagrad_window": dict(window=10, rms_regularizer=0.1),
}


@pytest.mark.parametrize("algo", sorted(DOCUMENTED))
def test_defaults(algo):
    cls = downhill.ALGORITHMS[algo]
    own = {h.name: h.default for h in vars(cls)["HYPERS"]}
    assert own == DOCUMENTED[algo]
    for name, value in DOCUMENTED[algo].items():
        assert type(cls.hyperparameters()[name].default) is type(value), name
        assert f"{name} : " in cls.__doc__, f"{name} is not in the Parameters"


INVALID = [
    ("adam", "amsgrad_max", "max", "one of 'corrected', 'raw'"),
    ("adamax", "rms_regularizer", -1.0, "x >= 0"),
    ("adamax", "regularizer_in_max", 1, "True or False"),
    ("nadam", "mu_decay", -0.1, "x >= 0"),
    ("radam", "radam_threshold", 3.0, "x >= 4"),
    ("adabelief", "variance_regularizer", -1e-3, "x >= 0"),
    ("yogi", "initial_accumulator", -1.0, "x >= 0"),
    ("adagrad_window", "window", 2.5, "integer >= 1"),
]


@pytest.mark.parametrize("algo,name,value,allowed", INVALID)
def test_invalid_values(algo, name, value, allowed):
    w = pytensor.shared(np.zeros(2), name="w")
    loss = (w ** 2).sum()
    opt = downhill.build(algo, loss)
    pattern = f"invalid {name}: {value!r}".replace("(", r"\(").replace(")", r"\)")
    with pytest.raises(ValueError, match=pattern) as info:
        opt.get_updates(**{name: value})
    assert allowed in str(info.value)
    with pytest.raises(ValueError, match=f"invalid {name}"):
        downhill.build(algo, loss, **{name: value})


@pytest.mark.parametrize("name", ["amsgrad", "AMSGrad", "adamax", "NAdam", "radam", "AdaBelief",
                                  "yogi", "adagrad_window"])
def test_build_finds_each_by_name(name):
    w = pytensor.shared(np.zeros(2), name="w")
    opt = downhill.build(name, (w ** 2).sum())
    assert type(opt).__name__ in downhill.__all__
    assert getattr(downhill, type(opt).__name__) is type(opt)
    assert type(opt).__module__.startswith("downhill.algorithms.")


def test_float32_linear_regression_through_minimize_for_each():
    # the new rules in the training loop, float32 end to end
    rng = np.random.default_rng(0)
    X = rng.normal(size=(128, 3)).astype("float32")
    Y = X @ np.array([1, -2, 0.5], "float32")
    for algo in sorted(DOCUMENTED):
        x, y = pt.matrix("x"), pt.vector("y")
        w = pytensor.shared(np.zeros(3, "float32"), name="w")
        opt = downhill.build(algo, ((x @ w - y) ** 2).mean())
        before = opt.evaluate([X, Y])["loss"]
        opt.minimize(downhill.Dataset([X, Y], batch_size=32, rng=0), learning_rate=0.05,
                     max_updates=30, max_gradient_norm=10.0)
        assert w.get_value().dtype == np.float32
        assert opt.evaluate([X, Y])["loss"] < 0.2 * before, algo
