"""Core behaviour: reference checks of SGD, NAG and RMSProp, and error cases."""

import math

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

import downhill


def quadratic(dtype="float64", seed=0):
    """A loss whose gradient is known: 0.5 * sum(c * (w - t)^2) + sum(w**4)/4."""
    r = np.random.default_rng(seed)
    c = r.uniform(0.5, 3.0, size=(3, 4)).astype(dtype)
    t = r.normal(size=(3, 4)).astype(dtype)
    w0 = r.normal(size=(3, 4)).astype(dtype)
    w = pytensor.shared(w0.copy(), name="w")
    loss = (pt.constant(c) * (w - pt.constant(t)) ** 2).sum() * np.asarray(0.5, dtype) \
        + (w ** 4).sum() * np.asarray(0.25, dtype)

    def grad(v):
        return c * (v - t) + v ** 3

    return w, loss, w0, grad


def run_steps(opt, n, **hyper):
    fn = pytensor.function([], [], updates=opt.get_updates(**hyper))
    for _ in range(n):
        fn()


def clip(g, elem=0, norm=0):
    if elem > 0:
        return np.clip(g, -elem, elem)
    if norm > 0:
        return g * min(1.0, norm / np.sqrt((g * g).sum()))
    return g


def reference(w0, grad, n, delta_fn, mu=0.0, nesterov=False, elem=0, norm=0):
    """Independent transcription of the documented update equations."""
    p = w0.copy()
    v = np.zeros_like(p)
    state = {}
    for _ in range(n):
        g = clip(grad(p), elem, norm)
        delta = delta_fn(g, state)
        if mu == 0:
            p = p - delta
        else:
            v = mu * v - delta
            p = p + (mu * v - delta if nesterov else v)
    return p


def sgd_delta(lr):
    return lambda g, state: lr * g


def rmsprop_delta(lr, halflife=14.0, eps=1e-8, centered=True, inside=True):
    gamma = math.exp(-math.log(2) / halflife)

    def delta(g, state):
        f = state.get("f", np.zeros_like(g))
        s = state.get("s", np.zeros_like(g))
        f = gamma * f + (1 - gamma) * g
        s = gamma * s + (1 - gamma) * g * g
        state["f"], state["s"] = f, s
        var = np.maximum(s - f * f, 0) if centered else s
        return lr * g / (np.sqrt(var + eps) if inside else np.sqrt(var) + eps)
    return delta


CASES = [
    ("sgd", dict(learning_rate=0.01), sgd_delta(0.01)),
    ("rmsprop", dict(learning_rate=0.01), rmsprop_delta(0.01)),
    ("rmsprop", dict(learning_rate=0.02, rms_halflife=5, rms_regularizer=1e-3),
     rmsprop_delta(0.02, 5, 1e-3)),
    # the switches to torch's and Tieleman and Hinton's forms (a large epsilon,
    # so that its place matters)
    ("rmsprop", dict(learning_rate=0.02, rms_halflife=5, rms_regularizer=0.1,
                     regularizer_in_root=False),
     rmsprop_delta(0.02, 5, 0.1, inside=False)),
    ("rmsprop", dict(learning_rate=0.02, rms_halflife=5, rms_regularizer=0.1, centered=False),
     rmsprop_delta(0.02, 5, 0.1, centered=False)),
    ("rmsprop", dict(learning_rate=0.02, rms_halflife=5, rms_regularizer=0.1, centered=False,
                     regularizer_in_root=False),
     rmsprop_delta(0.02, 5, 0.1, centered=False, inside=False)),
]
EXTRAS = [
    dict(),
    dict(momentum=0.9),
    dict(momentum=0.8, nesterov=True),
    dict(max_gradient_elem=0.5),
    dict(max_gradient_norm=1.0),
    dict(max_gradient_norm=1.0, max_gradient_elem=0.3, momentum=0.5),
]


@pytest.mark.parametrize("algo,hyper,delta", CASES)
@pytest.mark.parametrize("extra", EXTRAS)
def test_reference_float64(algo, hyper, delta, extra):
    w, loss, w0, grad = quadratic()
    opt = downhill.build(algo, loss)
    run_steps(opt, 12, **hyper, **extra)
    want = reference(w0, grad, 12, delta, mu=extra.get("momentum", 0),
                     nesterov=extra.get("nesterov", False),
                     elem=extra.get("max_gradient_elem", 0),
                     norm=extra.get("max_gradient_norm", 0))
    np.testing.assert_allclose(w.get_value(), want, rtol=1e-9, atol=1e-12)


def test_rmsprop_switches_change_the_step_and_the_state():
    # each switch gives a clearly different trajectory, and the uncentred
    # form keeps no gradient average
    finals = []
    for hyper in CASES[3:] + CASES[2:3]:
        w, loss, w0, grad = quadratic()
        opt = downhill.build("rmsprop", loss)
        run_steps(opt, 12, **hyper[1])
        finals.append(w.get_value())
        names = {v.name for v in opt.state_variables}
        centered = hyper[1].get("centered", True)
        assert names == ({"w_g1_ewma", "w_g2_ewma"} if centered else {"w_g2_ewma"})
    for i in range(len(finals)):
        for j in range(i):
            assert not np.allclose(finals[i], finals[j], rtol=1e-4), (i, j)


def test_nag_warns_about_zero_momentum_when_run_not_when_built(caplog):
    w, loss, w0, grad = quadratic()
    opt = downhill.build("nag", loss)
    assert "plain SGD" not in caplog.text
    opt.get_updates(learning_rate=0.01, momentum=0.9)
    assert "plain SGD" not in caplog.text
    opt.get_updates(learning_rate=0.01)
    assert "NAG with momentum=0 is plain SGD" in caplog.text


def test_nag_is_nesterov_and_equals_sgd_without_momentum():
    w, loss, w0, grad = quadratic()
    run_steps(downhill.NAG(loss), 10, learning_rate=0.01, momentum=0.9)
    want = reference(w0, grad, 10, sgd_delta(0.01), mu=0.9, nesterov=True)
    np.testing.assert_allclose(w.get_value(), want, rtol=1e-9)

    w, loss, w0, grad = quadratic()
    run_steps(downhill.NAG(loss), 10, learning_rate=0.01)
    np.testing.assert_allclose(w.get_value(), reference(w0, grad, 10, sgd_delta(0.01)),
                               rtol=1e-9)
    with pytest.raises(ValueError, match="Nesterov"):
        downhill.NAG(loss).get_updates(nesterov=False)


def test_nag_nesterov_checked_as_a_validated_value_and_in_the_constructor():
    w, loss, w0, grad = quadratic()
    # the docstring: passing nesterov=False is an error, at construction too
    with pytest.raises(ValueError, match="Nesterov"):
        downhill.NAG(loss, nesterov=False)
    with pytest.raises(ValueError, match="Nesterov"):
        downhill.build("nag", loss, nesterov=np.False_)
    # a value the declaration accepts as True is True
    downhill.NAG(loss, nesterov=np.True_).get_updates(nesterov=np.True_, momentum=0.5)
    with pytest.raises(ValueError, match="invalid nesterov: 'yes'"):
        downhill.NAG(loss).get_updates(nesterov="yes")


def test_float32_stays_float32_and_trains(rng):
    x = pt.matrix("x")
    y = pt.vector("y")
    w = pytensor.shared(np.zeros(3, "float32"), name="w")
    loss = ((x @ w - y) ** 2).mean()
    opt = downhill.build("rmsprop", loss)
    for var, expr in opt.get_updates(learning_rate=0.01, momentum=0.5):
        assert expr.dtype == "float32", var.name
    X = rng.normal(size=(256, 3)).astype("float32")
    Y = X @ np.array([1, -2, 0.5], "float32")
    before = opt.evaluate([X, Y])["loss"]
    train, valid = opt.minimize(downhill.Dataset([X, Y], rng=0), learning_rate=0.01,
                                max_updates=40)
    assert w.get_value().dtype == np.float32
    assert valid["loss"] < 0.01 * before


def test_rmsprop_clamp_keeps_float32_finite():
    # Gradients about 1e4 that change slowly (grad = k + c * w): once the
    # averages converge, s - f^2 rounds negative in float32 and, without the
    # clamp, the square root turns the parameters into NaN within ~350 steps.
    w = pytensor.shared(np.zeros(1000, "float32"), name="w")
    k = pytensor.shared((1e4 + np.linspace(0, 1, 1000)).astype("float32"), name="k")
    loss = (w * k).sum() + np.float32(5e-4) * (w * w).sum()
    opt = downhill.RMSProp(loss, params=[w])
    fn = pytensor.function([], [], updates=opt.get_updates(learning_rate=1e-3))
    for _ in range(600):
        fn()
    assert w.get_value().dtype == np.float32
    assert np.isfinite(w.get_value()).all()


def test_input_order_and_params():
    x = pt.matrix("x")
    y = pt.matrix("y")
    w = pytensor.shared(np.zeros((2, 3)), name="w")
    opt = downhill.build("sgd", ((x @ w - y) ** 2).mean())
    assert opt.inputs == [x, y]
    assert opt.params == [w]


@pytest.mark.parametrize("name", ["rmsprop", "RMSProp", "SGD", "nag"])
def test_build_case_insensitive(name):
    w = pytensor.shared(np.zeros(2), name="w")
    opt = downhill.build(name, (w ** 2).sum())
    assert type(opt).__name__.lower() == name.lower()


def test_errors():
    w = pytensor.shared(np.zeros(2), name="w")
    loss = (w ** 2).sum()
    with pytest.raises(ValueError, match="unknown algorithm 'nope'.*rmsprop"):
        downhill.build("nope", loss)
    with pytest.raises(ValueError, match="scalar.*1-d"):
        downhill.build("sgd", w ** 2)
    with pytest.raises(ValueError, match="no parameters"):
        downhill.build("sgd", pt.scalar("a") ** 2)
    opt = downhill.build("rmsprop", loss)
    # unknown names are accepted, as in downhill 0.4, but never silently
    with pytest.warns(downhill.DownhillWarning, match="learning_rte.*did you mean 'learning_rate'"):
        opt.get_updates(learning_rte=0.1)
    with pytest.raises(ValueError, match=r"invalid learning_rate: -1.*> 0"):
        opt.get_updates(learning_rate=-1)
    with pytest.raises(ValueError, match=r"invalid momentum: 1.*0 <= x < 1"):
        opt.iterate(momentum=1)


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
@pytest.mark.parametrize("name", ["patience", "validate_every", "max_skips"])
def test_integer_hyperparameter_not_finite(name, value):
    # int(inf) raises OverflowError and int(nan) a message without the name
    w = pytensor.shared(np.zeros(2), name="w")
    opt = downhill.build("sgd", (w ** 2).sum())
    with pytest.raises(ValueError, match=f"invalid {name}: {value!r}.*integer"):
        opt.iterate(**{name: value})


def test_a_variable_updated_twice_is_refused_when_built():
    # PyTensor would refuse it only when the step is compiled, inside the
    # training loop, with "this shared variable already has an update expression"
    w = pytensor.shared(np.zeros(2), name="w")
    c = pytensor.shared(np.zeros(()), name="c")
    loss = (w ** 2).sum() + c
    with pytest.raises(ValueError, match="parameter 1 .*'w'.* given twice"):
        downhill.build("sgd", loss, params=[w, w])
    with pytest.raises(ValueError, match="parameter 0 .*'w'.* also the target of update 0"):
        downhill.build("sgd", loss, params=[w], updates=[(w, w * 0.5)])
    with pytest.raises(ValueError, match="update 1 .*'c'.* also the target of update 0"):
        downhill.build("sgd", loss, params=[w], updates=[(c, c + 1), (c, c + 2)])
    # by default, parameters are the shared variables that no update targets
    opt = downhill.build("sgd", loss, updates=[(c, c + 1)])
    assert opt.params == [w]


def test_a_parameter_the_loss_does_not_use_is_named():
    # pytensor.grad raised DisconnectedInputError with an empty message
    w = pytensor.shared(np.zeros(3), name="w")
    v = pytensor.shared(np.zeros(3), name="v")
    with pytest.raises(ValueError, match="parameter 1 \\('v'\\).*loss does not depend"):
        downhill.build("sgd", (w ** 2).sum(), params=[w, v])


def test_explicit_inputs_that_do_not_fit_the_graph_are_refused_when_built():
    # PyTensor refused them only at the first compilation, inside the loop
    x = pt.matrix("x")
    y = pt.vector("y")
    w = pytensor.shared(np.zeros(3), name="w")
    loss = ((x @ w - y) ** 2).mean()
    with pytest.raises(ValueError, match="needs the input 'y'.*not in inputs"):
        downhill.build("sgd", loss, inputs=[x])
    z = pt.vector("z")
    with pytest.raises(ValueError, match="input 2 \\('z'\\) is not used"):
        downhill.build("sgd", loss, inputs=[x, y, z])
    with pytest.raises(ValueError, match="input 2 \\('x'\\) is given twice"):
        downhill.build("sgd", loss, inputs=[x, y, x])
    # an input that only a monitor uses is used
    opt = downhill.build("sgd", loss, inputs=[x, y, z], monitors={"z": z.sum()})
    assert opt.inputs == [x, y, z]
    # an intermediate variable may be an input: the graph is cut there
    scaled = x / 10
    loss = ((scaled @ w - y) ** 2).mean()
    opt = downhill.build("sgd", loss, inputs=[scaled, y])
    assert opt.evaluate([np.ones((2, 3)), np.ones(2)])["loss"] == 1.0


def test_mismatched_data(rng):
    x = pt.matrix("x")
    y = pt.vector("y")
    w = pytensor.shared(np.zeros(3), name="w")
    opt = downhill.build("sgd", ((x @ w - y) ** 2).mean())
    with pytest.raises(ValueError, match="differ in length.*input 0: 10, input 1: 9"):
        opt.iterate([np.zeros((10, 3)), np.zeros(9)])
    with pytest.raises(ValueError, match="1 arrays but the loss has 2 inputs"):
        opt.iterate([np.zeros((10, 3))])


def test_nonfinite_loss_restores_best_and_raises():
    w = pytensor.shared(np.ones(3), name="w")
    loss = (w ** 4).sum()
    opt = downhill.build("sgd", loss)
    with pytest.raises(FloatingPointError, match="non-finite loss at iteration"):
        opt.minimize(learning_rate=10.0, max_updates=50)
    np.testing.assert_array_equal(w.get_value(), np.ones(3))


def test_break_restores_best_and_state_survives():
    w = pytensor.shared(np.full(3, 2.0), name="w")
    loss = (w ** 2).sum()
    opt = downhill.build("rmsprop", loss)
    for i, (train, valid) in enumerate(opt.iterate(learning_rate=0.1, validate_every=1)):
        if i == 3:
            break
    # best is the last validated (at iteration 3), not the un-validated 4th update
    after_break = w.get_value().copy()
    assert (np.abs(after_break) < 2).all()
    state = opt.state_variables
    assert {v.name for v in state} == {"w_g1_ewma", "w_g2_ewma"}
    snapshot = [v.get_value().copy() for v in state]
    opt.minimize(learning_rate=0.1, max_updates=2)
    assert opt.state_variables == state
    assert not np.allclose(snapshot[1], state[1].get_value())


def test_common_defaults_are_the_documented_ones():
    declared = downhill.Optimizer.hyperparameters()
    assert {name: h.default for name, h in declared.items()} == {
        "learning_rate": 1e-4, "momentum": 0.0, "nesterov": False, "weight_decay": 0.0,
        "max_gradient_global_norm": 0.0, "max_gradient_norm": 0.0, "max_gradient_elem": 0.0,
        "patience": 5, "validate_every": 10, "min_improvement": 0.0,
        "on_nonfinite": "raise", "max_skips": 10,
        "average": "none", "average_halflife": 100.0, "average_start": 0,
        "validate_on": "params", "final_params": "best", "accumulate": 1,
    }
    w = pytensor.shared(np.ones(2), name="w")
    opt = downhill.SGD((w ** 2).sum())
    assert opt.learning_rate.eval() == 1e-4
    assert opt.momentum.eval() == 0.0


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan")])
def test_non_finite_hyperparameters_are_refused(value):
    w = pytensor.shared(np.ones(2), name="w")
    opt = downhill.SGD((w ** 2).sum())
    for name in ("learning_rate", "max_gradient_norm", "weight_decay"):
        with pytest.raises(ValueError, match=f"invalid {name}: {value}"):
            opt.get_updates(**{name: value})
