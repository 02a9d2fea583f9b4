"""Reference checks of RProp, ADAGRAD, ADADELTA, ESGD and Adam.

Each algorithm's update is transcribed independently in NumPy from its
docstring's equations and compared step by step with the compiled PyTensor
update (float64, rtol 1e-9), with and without momentum and clipping.
"""

import math

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

import downhill

N_STEPS = 5


def gamma(halflife):
    return math.exp(-math.log(2) / halflife)


def problem(dtype="float64", seed=0):
    """A separable loss 0.5 * sum(c * (w - t)^2) + sum(w^4) / 4.

    Its gradient is c * (w - t) + w^3 and its Hessian is diagonal,
    diag(c + 3 w^2), so a Hessian-vector product is (c + 3 w^2) * v.
    """
    r = np.random.default_rng(seed)
    c = r.uniform(0.5, 3.0, size=(3, 4)).astype(dtype)
    t = r.normal(size=(3, 4)).astype(dtype)
    w0 = r.normal(size=(3, 4)).astype(dtype)
    w = pytensor.shared(w0.copy(), name="w")
    loss = (pt.constant(c) * (w - pt.constant(t)) ** 2).sum() * np.asarray(0.5, dtype) \
        + (w ** 4).sum() * np.asarray(0.25, dtype)

    def grad(v):
        return c * (v - t) + v ** 3

    def hdiag(v):
        return c + 3 * v ** 2

    return w, loss, w0, grad, hdiag


def clip(g, elem=0, norm=0):
    if elem > 0:
        return np.clip(g, -elem, elem)
    if norm > 0:
        return g * min(1.0, norm / np.sqrt((g * g).sum()))
    return g


def reference(w0, grad, n, delta_fn, mu=0.0, nesterov=False, elem=0, norm=0):
    """Run n documented steps in float64; return the parameter and the state."""
    p = w0.astype(np.float64)
    v = np.zeros_like(p)
    state = {}
    for _ in range(n):
        g = clip(grad(p), elem, norm)
        delta = delta_fn(g, state, p)
        if mu == 0:
            p = p - delta
        else:
            v = mu * v - delta
            p = p + (mu * v - delta if nesterov else v)
    return p, state


# ----------------------------------------------------------------------
# NumPy transcriptions of the docstrings' equations. Each factory takes the
# optimizer (ESGD reads its random generator back from it) and returns a
# function (g, state, p) -> delta that keeps its state in the dict.

def rprop_ref(lr=1e-4, inc=1.01, dec=0.99, lo=0.0, hi=100.0):
    def make(opt):
        def delta(g, state, p):
            g_prev = state.get("grad", np.zeros_like(g))
            step = state.get("step", np.full_like(g, lr))
            test = g * g_prev
            step = np.where(test > 0, step * inc, np.where(test < 0, step * dec, step))
            step = np.minimum(hi, np.maximum(lo, step))
            g = np.where(test < 0, 0.0, g)
            state["grad"], state["step"] = g, step
            state["flips"] = state.get("flips", 0) + int((test < 0).sum())
            state["at_lo"] = state.get("at_lo", 0) + int((step == lo).sum())
            state["at_hi"] = state.get("at_hi", 0) + int((step == hi).sum())
            return np.sign(g) * step
        return delta
    return make


def adagrad_ref(lr=1e-4, eps=1e-8, inside=True):
    def make(opt):
        def delta(g, state, p):
            G = state.get("G", np.zeros_like(g)) + g * g
            state["G"] = G
            return lr * g / (np.sqrt(G + eps) if inside else np.sqrt(G) + eps)
        return delta
    return make


def adadelta_ref(halflife=14.0, eps=1e-8):
    gm = gamma(halflife)

    def make(opt):
        def delta(g, state, p):
            s = gm * state.get("s", np.zeros_like(g)) + (1 - gm) * g * g
            x = state.get("x", np.zeros_like(g))
            d = g * np.sqrt(x + eps) / np.sqrt(s + eps)
            state["s"], state["x"] = s, gm * x + (1 - gm) * d * d
            return d
        return delta
    return make


def rng_value(opt, name="w_rng"):
    """A copy of the optimizer's random generator: reads its next draws back."""
    (var,) = [v for v in opt.state_variables if v.name == name]
    gen = var.get_value()
    assert isinstance(gen, np.random.Generator)
    return gen


def esgd_ref(hdiag, lr=1e-4, halflife=14.0, eps=1e-8):
    gm = gamma(halflife)

    def make(opt):
        gen = rng_value(opt)

        def delta(g, state, p):
            v = gen.normal(size=g.shape)
            hv = hdiag(p) * v
            D = gm * state.get("D", np.zeros_like(g)) + (1 - gm) * hv * hv
            state["D"] = D
            return lr * g / (np.sqrt(D) + eps)
        return delta
    return make


def adam_ref(lr=1e-4, h1=7.0, h2=69.0, eps=1e-8, wrong_correction=False):
    b1, b2 = gamma(h1), gamma(h2)

    def make(opt):
        def delta(g, state, p):
            t = state.get("t", 0) + 1
            m = b1 * state.get("m", np.zeros_like(g)) + (1 - b1) * g
            v = b2 * state.get("v", np.zeros_like(g)) + (1 - b2) * g * g
            state["t"], state["m"], state["v"] = t, m, v
            c2 = (1 - b2) if wrong_correction else (1 - b2 ** t)
            return lr * (m / (1 - b1 ** t)) / (np.sqrt(v / c2) + eps)
        return delta
    return make


_, _, _, _, HDIAG = problem()

RPROP_HYPER = dict(learning_rate=0.05, rprop_increase=1.3, rprop_decrease=0.6,
                   rprop_min_step=0.03, rprop_max_step=0.08)
CASES = [
    ("rprop", RPROP_HYPER, rprop_ref(0.05, 1.3, 0.6, 0.03, 0.08)),
    ("adagrad", dict(learning_rate=0.1, rms_regularizer=0.5), adagrad_ref(0.1, 0.5)),
    ("adagrad", dict(learning_rate=0.1, rms_regularizer=0.5, regularizer_in_root=False),
     adagrad_ref(0.1, 0.5, inside=False)),
    ("adadelta", dict(rms_halflife=5, rms_regularizer=1e-2), adadelta_ref(5, 1e-2)),
    ("esgd", dict(learning_rate=0.05, rms_halflife=5, rms_regularizer=1e-2),
     esgd_ref(HDIAG, 0.05, 5, 1e-2)),
    ("esgd", dict(learning_rate=0.05, rms_halflife=5, rms_regularizer=1e-2, hv_method="lop"),
     esgd_ref(HDIAG, 0.05, 5, 1e-2)),
    ("esgd", dict(learning_rate=0.05, rms_halflife=5, rms_regularizer=1e-2, hv_method="grad"),
     esgd_ref(HDIAG, 0.05, 5, 1e-2)),
    ("adam", dict(learning_rate=0.05, beta1_halflife=3, beta2_halflife=10, rms_regularizer=1e-3),
     adam_ref(0.05, 3, 10, 1e-3)),
]
EXTRAS = [
    dict(),
    dict(momentum=0.9),
    dict(momentum=0.8, nesterov=True, max_gradient_norm=1.0),
    dict(max_gradient_elem=0.5),
]
# The algorithms' default hyperparameters (a larger learning rate, so the
# steps are not negligible), without extras.
DEFAULT_CASES = [
    ("rprop", dict(learning_rate=0.01), rprop_ref(0.01)),
    ("adagrad", dict(learning_rate=0.01), adagrad_ref(0.01)),
    ("adadelta", dict(), adadelta_ref()),
    ("esgd", dict(learning_rate=0.01), esgd_ref(HDIAG, 0.01)),
    ("adam", dict(learning_rate=0.01), adam_ref(0.01)),
]


def compile_step(opt, **hyper):
    """The compiled step function of ``opt`` with these hyperparameters."""
    return pytensor.function([], [], updates=opt.get_updates(**hyper))


def check(algo, hyper, make, extra, dtype="float64", rtol=1e-9, atol=1e-12):
    w, loss, w0, grad, _ = problem(dtype)
    opt = downhill.build(algo, loss)
    fn = compile_step(opt, **hyper, **extra)
    delta = make(opt)       # after get_updates: the state (and rng) exist
    for _ in range(N_STEPS):
        fn()
    want, state = reference(w0, grad, N_STEPS, delta, mu=extra.get("momentum", 0),
                            nesterov=extra.get("nesterov", False),
                            elem=extra.get("max_gradient_elem", 0),
                            norm=extra.get("max_gradient_norm", 0))
    got = w.get_value()
    assert got.dtype == np.dtype(dtype)
    assert not np.allclose(got, w0.astype(got.dtype), rtol=1e-3), "no progress: test is void"
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)
    return opt, state


@pytest.mark.parametrize("algo,hyper,make", CASES,
                         ids=[f"{a}-{h.get('hv_method', '')}{h.get('regularizer_in_root', '')}"
                              for a, h, _ in CASES])
@pytest.mark.parametrize("extra", EXTRAS, ids=["plain", "momentum", "nesterov+norm", "elem"])
def test_reference_float64(algo, hyper, make, extra):
    opt, state = check(algo, hyper, make, extra)
    if algo == "rprop" and not extra:
        # The case exercises every branch: sign flips and both step bounds.
        assert state["flips"] > 0 and state["at_lo"] > 0 and state["at_hi"] > 0


@pytest.mark.parametrize("algo,hyper,make", DEFAULT_CASES, ids=[c[0] for c in DEFAULT_CASES])
def test_reference_defaults(algo, hyper, make):
    check(algo, hyper, make, {})


#: One case per algorithm and switch (ESGD's other Hessian-vector products left out)
MAIN = [c for c in CASES if "hv_method" not in c[1]]
MAIN_IDS = [a + ("-outside" if h.get("regularizer_in_root") is False else "") for a, h, _ in MAIN]


@pytest.mark.parametrize("algo,hyper,make", MAIN, ids=MAIN_IDS)
def test_equivalences(algo, hyper, make):
    # huge clip limits equal no clipping; momentum 0 (even with Nesterov)
    # equals the plain step: each matches the unclipped, momentum-free reference
    check(algo, hyper, make, dict(max_gradient_norm=1e30))
    check(algo, hyper, make, dict(max_gradient_elem=1e30))
    check(algo, hyper, make, dict(momentum=0.0, nesterov=True))


@pytest.mark.parametrize("algo,hyper,make", MAIN, ids=MAIN_IDS)
def test_float32_stays_float32(algo, hyper, make):
    w, loss, w0, grad, _ = problem("float32")
    opt = downhill.build(algo, loss)
    updates = opt.get_updates(**hyper, momentum=0.5, max_gradient_norm=2.0)
    for var, expr in updates:
        if var.name.endswith("_rng"):
            continue
        want = "int64" if var.name in ("t", "update_count") else "float32"
        assert expr.dtype == want, var.name
    fn = pytensor.function([], [], updates=updates)
    delta = make(opt)
    for _ in range(N_STEPS):
        fn()
    assert w.get_value().dtype == np.float32
    for var in opt.state_variables:
        value = var.get_value()
        if isinstance(value, np.random.Generator):
            continue
        assert value.dtype == (np.int64 if var.name == "t" else np.float32), var.name
    want, _ = reference(w0, grad, N_STEPS, delta, mu=0.5, norm=2.0)
    np.testing.assert_allclose(w.get_value(), want, rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------
# defaults and validation

DOCUMENTED = {
    "rprop": dict(rprop_increase=1.01, rprop_decrease=0.99, rprop_min_step=0.0,
                  rprop_max_step=100.0),
    "adagrad": dict(rms_regularizer=1e-8, regularizer_in_root=True),
    "adadelta": dict(rms_halflife=14.0, rms_regularizer=1e-8),
    "esgd": dict(rms_halflife=14.0, rms_regularizer=1e-8, hv_method="rop", seed=0),
    "adam": dict(beta1_halflife=7.0, beta2_halflife=69.0, rms_regularizer=1e-8,
                 beta1_decay=1.0, amsgrad=False, amsgrad_max="corrected"),
}
COMMON = set(downhill.Optimizer.hyperparameters())


@pytest.mark.parametrize("algo", sorted(DOCUMENTED))
def test_defaults(algo):
    cls = downhill.ALGORITHMS[algo]
    declared = cls.hyperparameters()
    own = {name: h.default for name, h in declared.items() if name not in COMMON}
    assert own == DOCUMENTED[algo]
    for name, value in DOCUMENTED[algo].items():
        assert type(declared[name].default) is type(value), name
        assert name in (cls.__doc__ or ""), f"{name} is not documented"
    w = pytensor.shared(np.zeros(2), name="w")
    opt = cls((w ** 2).sum())
    shared = {"rms_halflife": ("ewma", gamma(14)), "rms_regularizer": ("epsilon", 1e-8),
              "beta1_halflife": ("beta1", gamma(7)), "beta2_halflife": ("beta2", gamma(69)),
              "rprop_increase": ("step_increase", 1.01),
              "rprop_decrease": ("step_decrease", 0.99),
              "rprop_min_step": ("min_step", 0.0), "rprop_max_step": ("max_step", 100.0),
              "beta1_decay": ("beta1_decay", 1.0)}
    for name in DOCUMENTED[algo]:
        if name in shared:
            attr, value = shared[name]
            assert getattr(opt, attr).get_value() == pytest.approx(value, rel=1e-15), name


def test_halflife_defaults_match_the_original_decay_rates():
    # beta1 = exp(-ln 2 / 7) ~ 0.906, beta2 = exp(-ln 2 / 69) ~ 0.990
    assert gamma(7) == pytest.approx(0.9057, abs=1e-4)
    assert gamma(69) == pytest.approx(0.99000, abs=1e-4)


INVALID = [
    ("rprop", "rprop_increase", 0.5, "x >= 1"),
    ("rprop", "rprop_decrease", 0.0, "0 < x <= 1"),
    ("rprop", "rprop_decrease", 1.5, "0 < x <= 1"),
    ("rprop", "rprop_min_step", -1e-3, "x >= 0"),
    ("rprop", "rprop_max_step", 0.0, "x > 0"),
    ("adagrad", "rms_regularizer", -1.0, "x >= 0"),
    ("adadelta", "rms_halflife", 0.0, "x > 0"),
    ("adadelta", "rms_regularizer", float("nan"), "x >= 0"),
    ("esgd", "rms_halflife", -2.0, "x > 0"),
    ("esgd", "hv_method", "hessian", "one of 'rop', 'lop', 'grad'"),
    ("esgd", "hv_method", 1, "one of 'rop', 'lop', 'grad'"),
    ("esgd", "seed", -1, "integer >= 0"),
    ("esgd", "seed", 1.5, "integer >= 0"),
    ("adam", "beta1_halflife", 0.0, "x > 0"),
    ("adam", "beta2_halflife", -1.0, "x > 0"),
    ("adam", "rms_regularizer", "1e-8", "x >= 0"),
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
        opt.iterate(**{name: value})
    with pytest.raises(ValueError, match=f"invalid {name}"):
        downhill.build(algo, loss, **{name: value})


def test_rprop_min_step_above_max_step():
    w = pytensor.shared(np.zeros(2), name="w")
    opt = downhill.RProp((w ** 2).sum(), rprop_max_step=0.5)
    with pytest.raises(ValueError, match="invalid rprop_min_step: 1.0.*rprop_max_step.*0.5"):
        opt.get_updates(rprop_min_step=1.0)
    with pytest.raises(ValueError, match="invalid rprop_min_step"):
        opt.iterate(rprop_min_step=1.0)
    opt.get_updates(rprop_min_step=0.5)


@pytest.mark.parametrize("name", ["RProp", "rprop", "ADAGRAD", "adagrad", "AdaDelta",
                                  "esgd", "ESGD", "adam", "ADAM"])
def test_build_finds_each_by_name(name):
    w = pytensor.shared(np.zeros(2), name="w")
    opt = downhill.build(name, (w ** 2).sum())
    assert type(opt).__name__.lower() == name.lower()
    assert type(opt).__name__ in downhill.__all__
    assert getattr(downhill, type(opt).__name__) is type(opt)


# ----------------------------------------------------------------------
# RProp

def test_rprop_sign_changes_and_step_bounds():
    # A linear loss sum(w * k): its gradient is k, set by hand each step.
    k = pytensor.shared(np.zeros(4), name="k")
    w = pytensor.shared(np.zeros(4), name="w")
    opt = downhill.RProp((w * k).sum(), params=[w])
    fn = compile_step(opt, learning_rate=0.01, rprop_increase=1.5, rprop_decrease=0.5,
             rprop_min_step=0.008, rprop_max_step=0.012)
    grad_var, step_var = opt.state_variables
    assert (grad_var.name, step_var.name) == ("w_grad", "w_step")
    # the step sizes start at the learning rate
    np.testing.assert_array_equal(step_var.get_value(), np.full(4, 0.01))

    def step(g):
        before = w.get_value()
        k.set_value(np.asarray(g, float))
        fn()
        return w.get_value() - before

    # g_prev = 0 everywhere: t = 0, step sizes unchanged, move by -sign(g) * 0.01
    np.testing.assert_allclose(step([1, -2, 3, 0]), [-0.01, 0.01, -0.03 / 3, 0])
    np.testing.assert_array_equal(grad_var.get_value(), [1, -2, 3, 0])
    # same sign: * 1.5 = 0.015, clipped to the max 0.012; a flip: 0.01 * 0.5
    # = 0.005, clipped up to the min 0.008, no move, gradient stored as 0;
    # t = 0 (previous gradient 0): unchanged 0.01
    np.testing.assert_allclose(step([2, 1, 3, -4]), [-0.012, 0, -0.012, 0.01])
    np.testing.assert_array_equal(grad_var.get_value(), [2, 0, 3, -4])
    np.testing.assert_allclose(step_var.get_value(), [0.012, 0.008, 0.012, 0.01])
    # after a flip the element restarts (t = 0) with its reduced step size
    np.testing.assert_allclose(step([2, 1, -3, -4]), [-0.012, -0.008, 0, 0.012])
    np.testing.assert_array_equal(grad_var.get_value(), [2, 1, 0, -4])
    np.testing.assert_allclose(step_var.get_value(), [0.012, 0.008, 0.008, 0.012])


def test_rprop_initial_step_is_learning_rate_at_first_build():
    w = pytensor.shared(np.zeros(3), name="w")
    opt = downhill.RProp((w ** 2).sum(), learning_rate=0.2)
    opt.get_updates(learning_rate=0.3)
    (step,) = [v for v in opt.state_variables if v.name == "w_step"]
    np.testing.assert_array_equal(step.get_value(), np.full(3, 0.3))
    opt.get_updates(learning_rate=0.5)       # state already made: unchanged
    np.testing.assert_array_equal(step.get_value(), np.full(3, 0.3))


def test_rprop_initial_step_from_a_learning_rate_schedule():
    # a schedule is a valid learning_rate for every algorithm; RProp's step
    # sizes start at its value at the current update count
    from downhill.schedules import Linear
    w = pytensor.shared(np.zeros(3), name="w")
    opt = downhill.RProp((w ** 2).sum())
    opt._settings.set_count(3)
    opt.get_updates(learning_rate=Linear(0.25, 1.25, steps=4))
    (step,) = [v for v in opt.state_variables if v.name == "w_step"]
    np.testing.assert_array_equal(step.get_value(), np.full(3, 1.0))


# ----------------------------------------------------------------------
# ADAGRAD

def test_adagrad_epsilon_inside_the_square_root():
    w, loss, w0, grad, _ = problem()
    opt = downhill.ADAGRAD(loss)
    fn = compile_step(opt, learning_rate=0.1, rms_regularizer=4.0)
    fn()
    g = grad(w0)
    inside = w0 - 0.1 * g / np.sqrt(g * g + 4.0)
    outside = w0 - 0.1 * g / (np.sqrt(g * g) + 4.0)
    np.testing.assert_allclose(w.get_value(), inside, rtol=1e-12)
    assert not np.allclose(w.get_value(), outside, rtol=1e-3)


# ----------------------------------------------------------------------
# ADADELTA

def test_adadelta_ignores_learning_rate():
    results = []
    for lr in (1e-4, 10.0):
        w, loss, w0, grad, _ = problem()
        opt = downhill.ADADELTA(loss)
        fn = compile_step(opt, learning_rate=lr)
        for _ in range(3):
            fn()
        results.append(w.get_value())
    np.testing.assert_array_equal(results[0], results[1])
    assert "no effect" in downhill.ADADELTA.__doc__


@pytest.mark.parametrize("algo", ["adadelta", "rprop"])
def test_learning_rate_still_scales_weight_decay(algo):
    # the docstrings say learning_rate has no effect on these steps: true of
    # the algorithm's step, but the decoupled weight decay is lr * wd * p
    results = []
    for lr in (0.01, 0.02):
        w, loss, w0, grad, _ = problem()
        opt = downhill.build(algo, loss)
        fn = compile_step(opt, learning_rate=0.05, weight_decay=0.5)
        opt.get_updates(learning_rate=lr, weight_decay=0.5)  # same graph, new numbers
        fn()
        results.append(w.get_value())
    # one step from w0 with the same step; the decay differs by (0.02 - 0.01) * 0.5 * w0
    np.testing.assert_allclose(results[0] - results[1], 0.005 * w0, rtol=1e-9)
    doc = " ".join(downhill.ALGORITHMS[algo].__doc__.replace("**", "").split())
    assert "no effect on the step" in doc
    assert "scale ``weight_decay``" in doc


# ----------------------------------------------------------------------
# Adam

def test_adam_bias_correction_uses_beta2_to_the_t():
    hyper = dict(learning_rate=0.05, beta1_halflife=3, beta2_halflife=10, rms_regularizer=1e-8)
    opt, _ = check("adam", hyper, adam_ref(0.05, 3, 10, 1e-8), {})
    # the released original's 1 - beta2 form gives a clearly different result
    w, loss, w0, grad, _ = problem()
    wrong, _ = reference(w0, grad, N_STEPS,
                         adam_ref(0.05, 3, 10, 1e-8, wrong_correction=True)(None))
    right, _ = reference(w0, grad, N_STEPS, adam_ref(0.05, 3, 10, 1e-8)(None))
    assert not np.allclose(wrong, right, rtol=1e-2)


def test_adam_one_step_counter_for_all_parameters():
    r = np.random.default_rng(1)
    a0, b0 = r.normal(size=3), r.normal(size=(2, 2))
    a = pytensor.shared(a0.copy(), name="a")
    b = pytensor.shared(b0.copy(), name="b")
    loss = ((a - 1) ** 2).sum() + (b ** 4).sum()
    opt = downhill.Adam(loss)
    updates = opt.get_updates(learning_rate=0.05, beta1_halflife=3, beta2_halflife=10)
    names = [var.name for var, _ in updates]
    assert names.count("t") == 1
    (t,) = [v for v in opt.state_variables if v.name == "t"]
    assert opt.state_variables[0] is t
    fn = pytensor.function([], [], updates=updates)
    for _ in range(N_STEPS):
        fn()
    assert int(t.get_value()) == N_STEPS
    want_a, _ = reference(a0, lambda p: 2 * (p - 1), N_STEPS, adam_ref(0.05, 3, 10)(None))
    want_b, _ = reference(b0, lambda p: 4 * p ** 3, N_STEPS, adam_ref(0.05, 3, 10)(None))
    np.testing.assert_allclose(a.get_value(), want_a, rtol=1e-9)
    np.testing.assert_allclose(b.get_value(), want_b, rtol=1e-9)


def test_adam_counter_is_state_that_can_be_restored():
    w, loss, w0, grad, _ = problem()
    opt = downhill.Adam(loss)
    fn = compile_step(opt, learning_rate=0.05)
    (t,) = [v for v in opt.state_variables if v.name == "t"]
    t.set_value(np.asarray(9, dtype=t.dtype))
    fn()
    assert int(t.get_value()) == 10
    b1, b2 = gamma(7), gamma(69)
    g = grad(w0)
    m, v = (1 - b1) * g, (1 - b2) * g * g
    want = w0 - 0.05 * (m / (1 - b1 ** 10)) / (np.sqrt(v / (1 - b2 ** 10)) + 1e-8)
    np.testing.assert_allclose(w.get_value(), want, rtol=1e-9)
    # a second iterate continues the count: state survives between calls
    opt.minimize(learning_rate=0.05, max_updates=2)
    assert int(t.get_value()) == 12


# ----------------------------------------------------------------------
# ESGD

def coupled_problem():
    """0.5 w'Aw + sum(w^4)/4, whose Hessian A + diag(3 w^2) is not diagonal."""
    r = np.random.default_rng(7)
    m = r.normal(size=(4, 4))
    A = m @ m.T + np.eye(4)
    w0 = r.normal(size=4)
    w = pytensor.shared(w0.copy(), name="w")
    loss = 0.5 * w @ pt.constant(A) @ w + 0.25 * (w ** 4).sum()
    return w, loss, w0, A


@pytest.mark.parametrize("method", ["rop", "lop", "grad"])
def test_esgd_hessian_vector_product_is_exact(method):
    gm = gamma(14)
    # separable: H = diag(c + 3 w^2), so Hv = (c + 3 w^2) * v
    w, loss, w0, grad, hdiag = problem()
    opt = downhill.ESGD(loss, hv_method=method)
    fn = compile_step(opt, learning_rate=0.05)
    v = rng_value(opt).normal(size=w0.shape)
    fn()
    (D,) = [s for s in opt.state_variables if s.name == "w_D_ewma"]
    np.testing.assert_allclose(D.get_value(), (1 - gm) * (hdiag(w0) * v) ** 2, rtol=1e-12)
    np.testing.assert_allclose(
        w.get_value(), w0 - 0.05 * grad(w0) / (np.sqrt(D.get_value()) + 1e-8), rtol=1e-12)
    # coupled: Hv = (A + diag(3 w^2)) v, the full block product
    w, loss, w0, A = coupled_problem()
    opt = downhill.ESGD(loss, hv_method=method)
    fn = compile_step(opt, learning_rate=0.05)
    v = rng_value(opt).normal(size=w0.shape)
    fn()
    (D,) = [s for s in opt.state_variables if s.name == "w_D_ewma"]
    hv = (A + np.diag(3 * w0 ** 2)) @ v
    np.testing.assert_allclose(D.get_value(), (1 - gm) * hv ** 2, rtol=1e-10)


def test_esgd_methods_agree():
    results = []
    for method in ("rop", "lop", "grad"):
        w, loss, w0, A = coupled_problem()
        opt = downhill.build("esgd", loss, hv_method=method, seed=5)
        fn = compile_step(opt, learning_rate=0.05, momentum=0.5)
        for _ in range(N_STEPS):
            fn()
        results.append(w.get_value())
    assert not np.allclose(results[0], w0)
    np.testing.assert_allclose(results[1], results[0], rtol=1e-10)
    np.testing.assert_allclose(results[2], results[0], rtol=1e-10)


def test_esgd_constructor_hv_method_is_the_default():
    w, loss, w0, _, _ = problem()
    opt = downhill.ESGD(loss, hv_method="LOP")
    opt.get_updates()
    assert opt._values["hv_method"] == "lop"
    assert ("hv_method", "lop") in opt._structure()
    opt.get_updates(hv_method="grad")
    assert ("hv_method", "grad") in opt._structure()


def esgd_trajectory(seed=None, n=3, **hyper):
    w, loss, w0, _, _ = problem()
    kwargs = {} if seed is None else dict(seed=seed)
    opt = downhill.ESGD(loss, **kwargs)
    fn = compile_step(opt, learning_rate=0.05, **hyper)
    out = []
    for _ in range(n):
        fn()
        out.append(w.get_value())
    return np.array(out), opt, fn, w, w0


def test_esgd_seeds_reproducible_and_different():
    same1, *_ = esgd_trajectory(seed=3)
    same2, *_ = esgd_trajectory(seed=3)
    other, *_ = esgd_trajectory(seed=4)
    default, *_ = esgd_trajectory()
    zero, *_ = esgd_trajectory(seed=0)
    np.testing.assert_array_equal(same1, same2)
    assert not np.allclose(same1[-1], other[-1], rtol=1e-6)
    np.testing.assert_array_equal(default, zero)       # the default seed is 0
    # the keyword of get_updates seeds like the constructor's
    w, loss, w0, _, _ = problem()
    opt = downhill.ESGD(loss)
    fn = compile_step(opt, learning_rate=0.05, seed=3)
    for i in range(3):
        fn()
        np.testing.assert_array_equal(w.get_value(), same1[i])


def test_esgd_documented_generator_per_parameter():
    a = pytensor.shared(np.zeros(3), name="a")
    b = pytensor.shared(np.zeros(3), name="b")
    opt = downhill.ESGD((a ** 2).sum() + (b ** 2).sum(), seed=11)
    opt.get_updates()
    for i, name in enumerate(["a_rng", "b_rng"]):
        want = np.random.default_rng(np.random.SeedSequence(11, spawn_key=(i,)))
        np.testing.assert_array_equal(rng_value(opt, name).normal(size=5), want.normal(size=5))
    # the two parameters draw different vectors
    assert not np.allclose(rng_value(opt, "a_rng").normal(size=3),
                           rng_value(opt, "b_rng").normal(size=3))


def test_esgd_passing_seed_reseeds_and_omitting_it_continues():
    first, opt, fn, w, w0 = esgd_trajectory(seed=3)
    gen = rng_value(opt)
    # a call without seed keeps the stream going
    opt.get_updates(learning_rate=0.05)
    assert rng_value(opt).normal(size=4).tolist() == gen.normal(size=4).tolist()
    # passing the seed again restarts it: same trajectory from the same start
    w.set_value(w0.copy())
    for var in opt.state_variables:
        if var.name == "w_D_ewma":
            var.set_value(np.zeros_like(var.get_value()))
    opt.get_updates(seed=3, learning_rate=0.05)
    again = []
    for _ in range(3):
        fn()
        again.append(w.get_value())
    np.testing.assert_array_equal(np.array(again), first)


@pytest.mark.parametrize("method", ["rop", "lop", "grad"])
def test_esgd_zero_hessian(method):
    # a loss linear in w: Hv = 0, so D = 0 and the step is lr * g / eps
    w = pytensor.shared(np.zeros(3), name="w")
    opt = downhill.ESGD((w * np.array([1.0, 2.0, 3.0])).sum(), hv_method=method)
    fn = compile_step(opt, learning_rate=1e-9, rms_regularizer=1e-3)
    fn()
    np.testing.assert_allclose(w.get_value(), [-1e-6, -2e-6, -3e-6], rtol=1e-12)
