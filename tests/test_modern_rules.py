"""Reference checks of Lion, LARS, LAMB and Adafactor, and a published result
per family.

Each update is transcribed independently in NumPy from its docstring's
equations (Adafactor's in the paper's form, with row and column sums) and
compared step by step with the compiled PyTensor update (float64, rtol
1e-9), with and without momentum, Nesterov momentum and clipping, and in
float32; then equivalences, defaults, bad values, and what the papers
show: Lion's steps are signs, and with weight decay it minimises within a
box (L. Chen et al. 2024); LARS's and LAMB's steps have the length the
trust ratio says whatever the gradient's scale; Adafactor keeps n + m
numbers for an n x m matrix, and its factored estimate is exact for a
rank-one squared gradient.
"""

import math

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

import downhill
from test_adaptive import EXTRAS, compile_step, gamma, problem, reference

STEPS = 8


def norm(x):
    return float(np.sqrt((x * x).sum()))


def rms(x):
    return float(np.sqrt((x * x).mean()))


# ----------------------------------------------------------------------
# NumPy transcriptions of the docstrings' equations: each factory returns
# make(opt) -> delta(g, state, p), keeping its state in the dict.


def lion_ref(lr, h1, h2):
    b1, b2 = gamma(h1), gamma(h2)

    def delta(g, state, p):
        m = state.get("m", np.zeros_like(g))
        c = b1 * m + (1 - b1) * g
        state["m"] = b2 * m + (1 - b2) * g
        return lr * np.sign(c)
    return lambda opt: delta


def lars_ref(lr, eta, beta=0.0, eps=0.0, form="sum_of_norms"):
    def delta(g, state, p):
        u = g + beta * p
        u_norm = norm(g) + beta * norm(p) if form == "sum_of_norms" else norm(u)
        ratio = 1.0 if norm(p) == 0 or u_norm == 0 else eta * norm(p) / (u_norm + eps)
        return lr * ratio * u
    return lambda opt: delta


def lamb_ref(lr, h1, h2, eps, lam=0.0):
    b1, b2 = gamma(h1), gamma(h2)

    def delta(g, state, p):
        t = state.get("t", 0) + 1
        m = b1 * state.get("m", np.zeros_like(g)) + (1 - b1) * g
        v = b2 * state.get("v", np.zeros_like(g)) + (1 - b2) * g * g
        state["t"], state["m"], state["v"] = t, m, v
        u = (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps) + lam * p
        ratio = 1.0 if norm(p) == 0 or norm(u) == 0 else norm(p) / norm(u)
        return lr * ratio * u
    return lambda opt: delta


def adafactor_ref(lr=0.01, c=0.8, eps1=1e-30, eps2=1e-3, d=1.0, relative=True, scale=True,
                  floor=False, factored=True):
    """Algorithms 4 and 5 of the paper: row sums R and column sums C."""
    def delta(g, state, p):
        t = state.get("t", 0) + 1
        beta = 1 - t ** -c
        g2 = g * g if floor else g * g + eps1
        if factored and g.ndim >= 2:
            n, m = g.shape
            R = beta * state.get("R", np.zeros(n)) + (1 - beta) * g2 @ np.ones(m)
            C = beta * state.get("C", np.zeros(m)) + (1 - beta) * np.ones(n) @ g2
            state["R"], state["C"] = R, C
            if floor:    # torch's form: the means r = R / m, s = C / n
                V = np.outer(R / m, C / n) / max((R / m).mean(), eps1)
            else:
                V = np.outer(R, C) / R.sum()
        else:
            V = beta * state.get("V", np.zeros_like(g)) + (1 - beta) * g2
            state["V"] = V
        state["t"] = t
        U = g / (np.maximum(np.sqrt(V), eps1) if floor else np.sqrt(V))
        if d:
            U = U / max(1.0, rms(U) / d)
        state["rms_U"] = rms(U)
        rho = min(lr, 1 / math.sqrt(t)) if relative else lr
        return (max(eps2, rms(p)) * rho if scale else rho) * U
    return lambda opt: delta


H1, H2 = 3.0, 10.0
CASES = [
    ("lion", dict(learning_rate=0.05, beta1_halflife=H1, beta2_halflife=H2),
     lion_ref(0.05, H1, H2)),
    ("lars", dict(learning_rate=2.0, momentum=0.0, trust_coefficient=0.05,
                  trust_weight_decay=0.3, trust_regularizer=0.1),
     lars_ref(2.0, 0.05, 0.3, 0.1)),
    ("lars", dict(learning_rate=2.0, momentum=0.0, trust_coefficient=0.05,
                  trust_weight_decay=0.3, trust_regularizer=0.1, trust_norm="norm_of_sum"),
     lars_ref(2.0, 0.05, 0.3, 0.1, "norm_of_sum")),
    ("lamb", dict(learning_rate=0.05, beta1_halflife=H1, beta2_halflife=H2, rms_regularizer=1e-3,
                  trust_weight_decay=0.2), lamb_ref(0.05, H1, H2, 1e-3, 0.2)),
    # a large cap, so that rho_t = 1 / sqrt(t) takes over within the steps, and
    # a threshold that clips some steps and not others
    ("adafactor", dict(learning_rate=0.4, decay_exponent=0.6, rms_regularizer=1e-3,
                       clip_threshold=1.1), adafactor_ref(0.4, 0.6, 1e-3, d=1.1)),
    ("adafactor", dict(learning_rate=0.05, relative_step=False, parameter_scale=False,
                       rms_regularizer=1e-3, regularizer_as_floor=True, clip_threshold=0.0),
     adafactor_ref(0.05, eps1=1e-3, d=0, relative=False, scale=False, floor=True)),
    ("adafactor", dict(learning_rate=0.4, factored=False, parameter_scale_floor=5.0,
                       clip_threshold=1.1), adafactor_ref(0.4, eps2=5.0, d=1.1, factored=False)),
]
IDS = ["lion", "lars", "lars-norm_of_sum", "lamb", "adafactor", "adafactor-floor",
       "adafactor-full"]
DEFAULTS = [
    ("lion", dict(learning_rate=0.01), lion_ref(0.01, 7, 69)),
    ("lars", dict(momentum=0.0), lars_ref(1.0, 0.001)),
    ("lamb", dict(learning_rate=0.01), lamb_ref(0.01, 7, 69, 1e-6)),
    ("adafactor", dict(), adafactor_ref()),
]


def check(algo, hyper, make, extra, dtype="float64", steps=STEPS, rtol=1e-9, atol=1e-12):
    w, loss, w0, grad, _ = problem(dtype)
    given = dict(hyper, **extra)
    opt = downhill.build(algo, loss)
    fn = compile_step(opt, **given)
    for _ in range(steps):
        fn()
    mu = given.get("momentum", opt.hyperparameters()["momentum"].default)
    want, state = reference(w0, grad, steps, make(opt), mu=mu,
                            nesterov=given.get("nesterov", False),
                            elem=given.get("max_gradient_elem", 0),
                            norm=given.get("max_gradient_norm", 0))
    got = w.get_value()
    assert got.dtype == np.dtype(dtype)
    assert not np.allclose(got, w0.astype(got.dtype), rtol=1e-3), "no progress: test is void"
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)
    return opt, state


@pytest.mark.parametrize("algo,hyper,make", CASES, ids=IDS)
@pytest.mark.parametrize("extra", EXTRAS, ids=["plain", "momentum", "nesterov+norm", "elem"])
def test_reference_float64(algo, hyper, make, extra):
    opt, state = check(algo, hyper, make, extra)
    if algo == "adafactor" and hyper.get("clip_threshold") == 1.1 and not extra:
        # rho_t went below the cap, and the clipping both acted and did not
        assert 1 / math.sqrt(STEPS) < 0.4
        assert state["rms_U"] <= 1.1 + 1e-12


@pytest.mark.parametrize("algo,hyper,make", DEFAULTS, ids=[a for a, _, _ in DEFAULTS])
def test_reference_defaults(algo, hyper, make):
    check(algo, hyper, make, {}, steps=12)


@pytest.mark.parametrize("algo,hyper,make", CASES, ids=IDS)
def test_float32_stays_float32(algo, hyper, make):
    w, loss, w0, grad, _ = problem("float32")
    opt = downhill.build(algo, loss)
    updates = opt.get_updates(**dict(hyper, momentum=0.5, max_gradient_norm=2.0))
    for var, expr in updates:
        # the step counter and the update counter are integers
        wide = var.name in ("t", "update_count")
        assert expr.dtype == ("int64" if wide else "float32"), var.name
    fn = pytensor.function([], [], updates=updates)
    for _ in range(STEPS):
        fn()
    assert w.get_value().dtype == np.float32
    want, _ = reference(w0, grad, STEPS, make(opt), mu=0.5, norm=2.0)
    np.testing.assert_allclose(w.get_value(), want, rtol=1e-4, atol=1e-5)


def trajectory(algo, steps=6, loss_fn=None, **hyper):
    w, loss, w0, grad, _ = problem()
    opt = downhill.build(algo, loss if loss_fn is None else loss_fn(w))
    fn = compile_step(opt, **hyper)
    out = []
    for _ in range(steps):
        fn()
        out.append(w.get_value())
    return np.array(out), w0


# ----------------------------------------------------------------------
# equivalences


def test_huge_limits_equal_no_limits():
    for algo, hyper in [("adafactor", dict(learning_rate=0.3)),
                        ("lars", dict(learning_rate=2.0, trust_coefficient=0.05))]:
        plain, _ = trajectory(algo, **hyper)
        np.testing.assert_allclose(trajectory(algo, max_gradient_norm=1e30, **hyper)[0], plain,
                                   rtol=1e-13)
    clipped, _ = trajectory("adafactor", clip_threshold=1e30, learning_rate=0.3)
    unclipped, _ = trajectory("adafactor", clip_threshold=0.0, learning_rate=0.3)
    np.testing.assert_allclose(clipped, unclipped, rtol=1e-13)


def test_lars_denominators_agree_without_decay():
    hyper = dict(learning_rate=2.0, trust_coefficient=0.05, momentum=0.5)
    a, _ = trajectory("lars", **hyper)
    b, _ = trajectory("lars", trust_norm="norm_of_sum", **hyper)
    np.testing.assert_array_equal(a, b)
    c, _ = trajectory("lars", trust_weight_decay=0.3, **hyper)
    d, _ = trajectory("lars", trust_weight_decay=0.3, trust_norm="norm_of_sum", **hyper)
    assert not np.allclose(c, d, rtol=1e-6)


def test_lion_with_no_interpolation_is_sign_descent_on_its_momentum():
    # beta1 -> 0: the step is the sign of the gradient itself (signSGD)
    w, loss, w0, grad, _ = problem()
    opt = downhill.build("lion", loss)
    fn = compile_step(opt, learning_rate=0.01, beta1_halflife=1e-3)
    p = w0.copy()
    for _ in range(5):
        fn()
        p = p - 0.01 * np.sign(grad(p))
        np.testing.assert_array_equal(w.get_value(), p)


# ----------------------------------------------------------------------
# published results


def test_lion_moves_every_element_by_the_learning_rate():
    # Chen et al. (2023), Section 3.2: the sign makes every element's step
    # the same size, however different the gradient's elements are
    path, w0 = trajectory("lion", steps=10, learning_rate=0.01, beta1_halflife=2)
    steps = np.abs(np.diff(np.concatenate([w0[None], path]), axis=0))
    np.testing.assert_allclose(steps, 0.01, rtol=1e-12)


def test_lion_with_weight_decay_minimises_within_a_box():
    # L. Chen et al. (2024): Lion with decoupled weight decay lambda solves
    # min f(x) subject to |x|_inf <= 1 / lambda. f(x) = |x - a|^2 / 2 with a
    # outside the box [-2, 2]: the limit is a clipped to the box.
    a = np.array([3.0, -0.5, 5.0, -4.0, 1.5])
    x = pytensor.shared(np.zeros(5), name="x")
    opt = downhill.build("lion", 0.5 * ((x - a) ** 2).sum())
    fn = compile_step(opt, learning_rate=0.01, weight_decay=0.5, beta1_halflife=7,
                      beta2_halflife=69)
    for t in range(4000):
        opt.learning_rate.set_value(0.05 / (1 + t / 200))
        fn()
    np.testing.assert_allclose(x.get_value(), np.clip(a, -2, 2), atol=5e-3)
    # without the decay, Lion goes to a itself
    opt = downhill.build("lion", 0.5 * ((x - a) ** 2).sum())
    x.set_value(np.zeros(5))
    fn = compile_step(opt, learning_rate=0.01)
    for t in range(4000):
        opt.learning_rate.set_value(0.05 / (1 + t / 200))
        fn()
    np.testing.assert_allclose(x.get_value(), a, atol=5e-3)


def layered(scale):
    """Two layers of very different sizes, and a loss scaled by ``scale``."""
    r = np.random.default_rng(3)
    a = pytensor.shared(r.normal(size=(4, 3)) * 10, name="a")
    b = pytensor.shared(r.normal(size=5) * 0.01, name="b")
    t = r.normal(size=(4, 3))
    loss = scale * (((a - t) ** 2).sum() + ((b - 1) ** 4).sum())
    return [a, b], loss


@pytest.mark.parametrize("algo,length", [
    ("lars", lambda lr, p: lr * 0.01 * norm(p)),     # eta = 0.01, beta = 0
    ("lamb", lambda lr, p: lr * norm(p))])
def test_trust_ratio_step_length_is_independent_of_the_gradients_scale(algo, length):
    # You et al. (2017), Section 3, and (2020), Section 3: each layer's step
    # is lr * eta * |p| long (LAMB: lr * |p|), whatever its gradient's size,
    # so a small layer next to a large one moves by the same fraction of itself
    moves = []
    for scale in (1.0, 1e4):
        params, loss = layered(scale)
        before = [p.get_value() for p in params]
        opt = downhill.build(algo, loss)
        fn = compile_step(opt, learning_rate=0.1, momentum=0.0, trust_coefficient=0.01) \
            if algo == "lars" else compile_step(opt, learning_rate=0.1)
        fn()
        steps = [p.get_value() - v for p, v in zip(params, before)]
        for step, value in zip(steps, before):
            assert norm(step) == pytest.approx(length(0.1, value), rel=1e-9)
        moves.append(steps)
    for small, large in zip(*moves):
        np.testing.assert_allclose(small, large, rtol=1e-9 if algo == "lars" else 1e-6)


def test_trust_ratio_is_one_for_a_parameter_at_zero():
    # the authors' and optax's convention: a zero-initialised tensor moves
    a = pytensor.shared(np.zeros(3), name="a")
    opt = downhill.build("lars", ((a - 1) ** 2).sum())
    compile_step(opt, learning_rate=0.1, momentum=0.0)()
    np.testing.assert_allclose(a.get_value(), 0.1 * 2 * np.ones(3), rtol=1e-12)


def test_adafactor_keeps_rows_plus_columns_for_a_matrix():
    # Shazeer and Stern (2018), Section 3: n + m numbers for an n x m matrix,
    # where Adam keeps n m; a vector keeps its full second moment
    w = pytensor.shared(np.ones((30, 50)), name="w")
    b = pytensor.shared(np.ones(50), name="b")
    loss = ((w - 2) ** 2).sum() + ((b + 1) ** 2).sum()
    for algo, sizes in [("adafactor", {"w_g2_rows": 30, "w_g2_cols": 50, "b_g2_ewma": 50}),
                        ("adam", {"w_g1_ewma": 1500, "w_g2_ewma": 1500, "b_g1_ewma": 50,
                                  "b_g2_ewma": 50})]:
        opt = downhill.build(algo, loss)
        opt.get_updates()
        state = {v.name: v.get_value().size for v in opt.state_variables if v.name != "t"}
        assert state == sizes
    opt = downhill.build("adafactor", loss, factor_min_size=40)
    opt.get_updates()
    assert "w_g2_ewma" in [v.name for v in opt.state_variables]


def test_adafactor_factored_estimate_is_exact_for_a_rank_one_square():
    # Section 3: the factored estimate R C / 1'R reproduces a non-negative
    # rank-one matrix; a gradient a b' has the rank-one square (a^2)(b^2)',
    # so the factored and the full second moments give the same steps
    a, b = np.array([0.5, -2.0, 3.0]), np.array([1.0, -0.1, 4.0, 0.3])
    c = pytensor.shared(np.outer(a, b), name="c")
    results = []
    for factored in (True, False):
        w = pytensor.shared(np.ones((3, 4)), name="w")
        opt = downhill.build("adafactor", (w * c).sum(), params=[w])
        fn = compile_step(opt, factored=factored, rms_regularizer=0.0)
        for _ in range(5):
            fn()
        results.append(w.get_value())
    np.testing.assert_allclose(results[0], results[1], rtol=1e-13)
    assert not np.allclose(results[0], 1.0)


# ----------------------------------------------------------------------
# declarations, validation, names

DOCUMENTED = {
    "lion": dict(beta1_halflife=7.0, beta2_halflife=69.0),
    "lars": dict(learning_rate=1.0, momentum=0.9, trust_coefficient=0.001,
                 trust_weight_decay=0.0, trust_regularizer=0.0, trust_norm="sum_of_norms"),
    "lamb": dict(beta1_halflife=7.0, beta2_halflife=69.0, rms_regularizer=1e-6,
                 trust_weight_decay=0.0),
    "adafactor": dict(learning_rate=0.01, relative_step=True, parameter_scale=True,
                      parameter_scale_floor=1e-3, decay_exponent=0.8, rms_regularizer=1e-30,
                      regularizer_as_floor=False, clip_threshold=1.0, factored=True,
                      factor_min_size=1),
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
    ("lion", "beta1_halflife", 0.0, "x > 0"),
    ("lars", "trust_coefficient", 0.0, "x > 0"),
    ("lars", "trust_weight_decay", -0.1, "x >= 0"),
    ("lars", "trust_norm", "sum", "one of 'sum_of_norms', 'norm_of_sum'"),
    ("lamb", "rms_regularizer", -1.0, "x >= 0"),
    ("adafactor", "decay_exponent", -0.8, "x >= 0"),
    ("adafactor", "clip_threshold", -1.0, "x >= 0"),
    ("adafactor", "factor_min_size", 0, "integer >= 1"),
    ("adafactor", "relative_step", 1, "True or False"),
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


@pytest.mark.parametrize("name", ["lion", "Lion", "LARS", "lamb", "Adafactor"])
def test_build_finds_each_by_name(name):
    w = pytensor.shared(np.zeros(2), name="w")
    opt = downhill.build(name, (w ** 2).sum())
    assert type(opt).__name__ in downhill.__all__
    assert getattr(downhill, type(opt).__name__) is type(opt)


def test_float32_linear_regression_through_minimize_for_each():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(128, 3)).astype("float32")
    Y = X @ np.array([1, -2, 0.5], "float32")
    settings = {"lion": dict(learning_rate=0.02), "lars": dict(learning_rate=5.0),
                "lamb": dict(learning_rate=0.05), "adafactor": dict(learning_rate=0.05)}
    for algo, hyper in settings.items():
        x, y = pt.matrix("x"), pt.vector("y")
        w = pytensor.shared(np.full(3, 0.1, "float32"), name="w")
        opt = downhill.build(algo, ((x @ w - y) ** 2).mean())
        before = opt.evaluate([X, Y])["loss"]
        opt.minimize(downhill.Dataset([X, Y], batch_size=32, rng=0), max_updates=30,
                     **hyper)
        assert w.get_value().dtype == np.float32
        assert opt.evaluate([X, Y])["loss"] < 0.2 * before, algo
