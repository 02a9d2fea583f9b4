"""Optimizers built from given gradients, downhill.updates (the PyMC/Lasagne
convention), and float32 parameters in float64 losses."""

import collections
import doctest

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

import downhill
import downhill.functional

ALGOS = sorted(downhill.ALGORITHMS)
HYPERS = dict(learning_rate=0.01, momentum=0.5, max_gradient_norm=3.0)
#: Schedule-Free takes no momentum (its interpolation is one)
NO_MOMENTUM = {"schedule_free_sgd", "schedule_free_adamw"}


def regression(dtype="float64", x_dtype=None):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 3))
    Y = X @ np.array([[1.0], [-2.0], [0.5]]) + 0.1 * rng.normal(size=(64, 1))
    x = pt.matrix("x", dtype=x_dtype or dtype)
    y = pt.matrix("y", dtype=x_dtype or dtype)
    w = pytensor.shared(np.full((3, 1), 0.1, dtype), name="w")
    b = pytensor.shared(np.zeros(1, dtype), name="b")
    loss = ((x @ w + b - y) ** 2).mean()
    return loss, [w, b], [x, y], [X.astype(x_dtype or dtype), Y.astype(x_dtype or dtype)]


def trajectory(opt, inputs, data, params, steps=6, **hypers):
    step = pytensor.function(inputs, [], updates=opt.get_updates(**hypers))
    out = []
    for _ in range(steps):
        step(*data)
        out.append([p.get_value().copy() for p in params])
    return out


@pytest.mark.parametrize("algo", ALGOS)
def test_given_gradients_follow_the_same_path_as_the_loss(algo):
    loss, params, inputs, data = regression()
    initial = [p.get_value().copy() for p in params]
    hypers = dict(HYPERS, momentum=0.9) if algo == "nag" else HYPERS
    if algo in NO_MOMENTUM:
        hypers = dict(HYPERS, momentum=0.0)
    from_loss = trajectory(downhill.build(algo, loss), inputs, data, params, **hypers)
    for p, v in zip(params, initial):
        p.set_value(v.copy())
    grads = pytensor.grad(loss, params)
    opt = downhill.build(algo, grads=grads, params=params, inputs=inputs)
    from_grads = trajectory(opt, inputs, data, params, **hypers)
    for a, b in zip(from_loss, from_grads):
        for u, v in zip(a, b):
            np.testing.assert_allclose(u, v, rtol=1e-12, atol=0)


@pytest.mark.parametrize("method", ["rop", "lop", "grad"])
def test_esgd_takes_its_hessian_products_through_the_given_gradients(method):
    # a loss whose Hessian is known: 0.5 * sum(a * w**2) has H = diag(a); with
    # rms_halflife tiny, D is (Hv)^2 of this step's v, and the step is
    # lr * g / (|a * v| + eps), which differs from any gradient-free rule
    a = np.array([1.0, 4.0, 9.0])
    w = pytensor.shared(np.ones(3), name="w")
    grad = a * w  # the gradient of 0.5 * sum(a * w**2), given by hand
    opt = downhill.build("esgd", grads=[grad], params=[w], hv_method=method, seed=3)
    step = pytensor.function([], [], updates=opt.get_updates(
        learning_rate=0.1, rms_halflife=1e-9, rms_regularizer=0.0))
    v = np.random.default_rng(np.random.SeedSequence(3, spawn_key=(0,))).normal(size=3)
    step()
    expected = 1.0 - 0.1 * a / np.abs(a * v)
    np.testing.assert_allclose(w.get_value(), expected, rtol=1e-9)


def test_gradients_need_parameters_in_matching_number_and_shape():
    loss, params, inputs, _ = regression()
    grads = pytensor.grad(loss, params)
    with pytest.raises(ValueError, match="without parameters: pass params"):
        downhill.build("sgd", grads=grads)
    with pytest.raises(ValueError, match="got 1 gradient expressions for 2 parameters"):
        downhill.build("sgd", grads=grads[:1], params=params)
    with pytest.raises(ValueError, match=r"gradient 1 \(of 'b'\) is 2-d, but the parameter is 1-d"):
        downhill.build("sgd", grads=[grads[0], grads[0]], params=params)
    with pytest.raises(ValueError, match="no loss given"):
        downhill.build("sgd")


def test_training_loops_without_a_loss_say_what_they_need():
    loss, params, inputs, data = regression()
    opt = downhill.build("adam", grads=pytensor.grad(loss, params), params=params)
    for call in (lambda: opt.minimize(data), lambda: opt.iterate(data),
                 lambda: opt.evaluate(data)):
        with pytest.raises(ValueError, match="needs a loss to report and validate"):
            call()


def test_a_loss_beside_gradients_validates_while_the_gradients_steer():
    loss, params, inputs, data = regression()
    w, b = params
    initial = [p.get_value().copy() for p in params]
    # twice the gradient with SGD is the loss's own step at twice the rate
    grads = [2 * g for g in pytensor.grad(loss, params)]
    opt = downhill.build("sgd", loss, grads=grads, params=params, monitor_gradients=True)
    train, valid = opt.minimize(data, batch_size=0, max_updates=3, learning_rate=0.01,
                                validate_every=100)
    doubled = [p.get_value().copy() for p in params]
    assert set(valid) == {"loss", "grad(w)", "grad(b)"}
    for p, v in zip(params, initial):
        p.set_value(v.copy())
    downhill.build("sgd", loss).minimize(data, batch_size=0, max_updates=3,
                                         learning_rate=0.02, validate_every=100)
    for u, v in zip(doubled, params):
        np.testing.assert_allclose(u, v.get_value(), rtol=1e-12)


@pytest.mark.parametrize("algo", ALGOS)
def test_float32_parameters_in_a_float64_loss_train_in_float32(algo):
    loss, params, inputs, data = regression(dtype="float32", x_dtype="float64")
    assert loss.dtype == "float64"
    opt = downhill.build(algo, loss)
    momentum = 0.0 if algo in NO_MOMENTUM else 0.5
    for var, expr in opt.get_updates(learning_rate=0.01, momentum=momentum):
        if hasattr(var, "dtype"):
            assert expr.dtype == var.dtype, var.name
    hypers = dict(learning_rate=0.01, momentum=0.9 if algo == "nag" else momentum)
    if algo == "lars":  # steps of trust_coefficient (default 0.001) * lr * |p|
        hypers.update(learning_rate=0.05, trust_coefficient=1.0)
    before = opt.evaluate(data)["loss"]
    opt2 = downhill.build(algo, loss)
    opt2.minimize(data, batch_size=16, max_updates=5, **hypers)
    assert all(p.get_value().dtype == np.float32 for p in params)
    # every float state is float32; the step counters (t, lookahead_steps) are int64
    kinds = {v.name: v.get_value(borrow=True).dtype for v in opt2.state_variables
             if hasattr(v.get_value(borrow=True), "dtype")}
    assert all(d == np.float32 for d in kinds.values() if d.kind == "f"), kinds
    assert all(d == np.int64 for d in kinds.values() if d.kind != "f"), kinds
    assert opt2.evaluate(data)["loss"] < before


def test_updates_with_a_loss_or_gradients_returns_an_ordered_dict():
    loss, params, inputs, data = regression()
    ups = downhill.updates("rmsprop", loss, params, learning_rate=0.01)
    assert isinstance(ups, collections.OrderedDict)
    assert all(p in ups for p in params)
    assert isinstance(ups.optimizer, downhill.RMSProp)
    grads = pytensor.grad(loss, params)
    assert set(downhill.updates("rmsprop", grads, params)) >= set(params)


def test_updates_without_arguments_binds_the_hyperparameters():
    loss, params, inputs, data = regression()
    fn = downhill.updates("adam", learning_rate=0.05)
    assert callable(fn) and "adam" in repr(fn)
    with pytest.raises(AttributeError, match="call it first"):
        fn.learning_rate
    step = pytensor.function(inputs, loss, updates=fn(pytensor.grad(loss, params), params))
    assert fn.learning_rate.get_value() == pytest.approx(0.05)
    fn.learning_rate.set_value(0.0)  # reachable, e.g. from a pm.fit callback
    step(*data)
    frozen = [p.get_value().copy() for p in params]
    step(*data)
    for a, p in zip(frozen, params):
        np.testing.assert_array_equal(a, p.get_value())


def test_updates_errors_are_pymcs():
    loss, params, _, _ = regression()
    with pytest.raises(ValueError, match="Please provide both `loss_or_grads` and `params`"):
        downhill.updates("sgd", loss)
    with pytest.raises(ValueError, match="Please provide both `loss_or_grads` and `params`"):
        downhill.updates("sgd", params=params)
    with pytest.raises(ValueError, match="Got 1 gradient expressions for 2 parameters"):
        downhill.updates("sgd", pytensor.grad(loss, params)[:1], params)
    with pytest.raises(ValueError, match="shared variables only"):
        downhill.updates("sgd", loss, [params[0], pt.vector("v")])
    with pytest.raises(ValueError, match="unknown algorithm 'adamw'"):
        downhill.updates("adamw", learning_rate=0.1)
    with pytest.raises(ValueError, match="invalid learning_rate"):
        downhill.updates("sgd", learning_rate=-1)


def test_functional_examples_run():
    failures, tried = doctest.testmod(downhill.functional)
    assert tried > 0 and failures == 0
