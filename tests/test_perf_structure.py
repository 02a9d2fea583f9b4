"""Structural properties the speed depends on (no timings here).

- Each parameter's update (the parameter and its state variables) compiles to
  one fused elementwise loop (an ``Elemwise`` of a ``Composite``) that writes
  every one of them in place.
- Batches of a float32 C-contiguous array reach the compiled function as views
  of the dataset's buffer, with PyTensor's per-call input checks switched off.
"""

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
from pytensor.compile.mode import get_default_mode
from pytensor.scalar import Composite
from pytensor.tensor.elemwise import Elemwise

import downhill


def regression(dtype="float32"):
    x = pt.matrix("x", dtype=dtype)
    y = pt.vector("y", dtype=dtype)
    w = pytensor.shared(np.zeros(3, dtype), name="w")
    b = pytensor.shared(np.zeros((), dtype), name="b")
    m = pytensor.shared(np.zeros((3, 2), dtype), name="m")
    loss = ((x @ w + b - y) ** 2).mean() + (m ** 2).sum()
    return x, y, loss


def update_problems(opt, fn):
    """Ways in which ``fn``'s parameter updates are not one fused in-place loop each.

    Returns a list of messages, empty when every parameter and all of its
    state variables are outputs of a single ``Elemwise{Composite}`` node that
    overwrites each of them in place.
    """
    fgraph = fn.maker.fgraph
    inputs = [i.variable for i in fn.maker.inputs]
    output_of = {inp: out for out, inp in fgraph.update_mapping.items()}
    problems = []
    for index, param in enumerate(opt.params):
        variables = [param] + [var for (i, _), var in opt._state.items() if i == index]
        nodes = set()
        for var in variables:
            position = inputs.index(var)
            out = fgraph.outputs[output_of[position]]
            node = out.owner
            if node is None or not (isinstance(node.op, Elemwise)
                                    and isinstance(node.op.scalar_op, Composite)):
                problems.append(f"{var.name}: updated by {node and node.op}, not a fused loop")
                continue
            nodes.add(node)
            destroyed = node.op.destroy_map.get(node.outputs.index(out), [])
            if not destroyed or node.inputs[destroyed[0]] is not fgraph.inputs[position]:
                problems.append(f"{var.name}: not updated in place")
        if len(nodes) > 1:
            problems.append(f"{param.name}: updated by {len(nodes)} loops")
    return problems


@pytest.mark.parametrize("hypers", [{}, {"momentum": 0.9}, {"momentum": 0.9, "nesterov": True}])
def test_rmsprop_update_is_one_fused_inplace_loop_per_parameter(hypers):
    _, _, loss = regression()
    opt = downhill.build("rmsprop", loss)
    opt.get_updates(**hypers)
    fn, _, _ = opt._functions.step()
    assert len(opt.params) == 3
    assert len(opt._state) == 3 * (3 if hypers else 2)
    assert update_problems(opt, fn) == []


@pytest.mark.parametrize("excluded", ["fusion", "inplace"])
def test_update_check_detects_unfused_or_copying_graphs(excluded):
    # the check above must be able to fail: without fusion every state
    # variable gets its own loop, without in-place rewrites new arrays
    _, _, loss = regression()
    opt = downhill.build("rmsprop", loss, mode=get_default_mode().excluding(excluded))
    problems = update_problems(opt, opt._functions.step()[0])
    assert problems
    expected = "loop" if excluded == "fusion" else "in place"
    assert all(expected in p for p in problems), problems


class Recorder:
    """Stands in for a compiled function and records what it is called with."""

    def __init__(self, fn):
        self.fn = fn
        self.calls = []

    @property
    def trust_input(self):
        return self.fn.trust_input

    @trust_input.setter
    def trust_input(self, value):
        self.fn.trust_input = value

    def __call__(self, *args):
        self.calls.append((args, self.fn.trust_input))
        return self.fn(*args)


def record_step(opt):
    opt._functions.step()
    (key, (fn, names, guarded)), = opt._functions._steps.items()
    recorder = Recorder(fn)
    opt._functions._steps[key] = recorder, names, guarded
    return recorder


@pytest.mark.parametrize("source_dtype", ["float32", "float64"])
def test_batches_reach_the_step_as_views_of_the_dataset_buffer(rng, source_dtype):
    x, y, loss = regression()
    X = rng.normal(size=(40, 3)).astype(source_dtype)
    Y = rng.normal(size=40).astype(source_dtype)
    data = downhill.Dataset([X, Y], batch_size=8, iteration_size=7)
    opt = downhill.build("rmsprop", loss)
    recorder = record_step(opt)
    next(opt.iterate(data, learning_rate=1e-3))
    assert data.trusted
    assert len(recorder.calls) == 7
    for args, trusted in recorder.calls:
        assert trusted  # no per-call checks (which may copy) in PyTensor
        for arg, buffer in zip(args, data._buffers):
            assert isinstance(arg, np.ndarray) and arg.dtype == np.float32
            assert arg.flags.c_contiguous and arg.base is not None
            assert np.shares_memory(arg, buffer)  # a view, not a copy
    # float64 data is cast once by conform, never per batch
    assert (data._arrays[0] is X) == (source_dtype == "float32")
    # and the step computes with exactly those values
    args, _ = recorder.calls[0]
    assert args[0].shape == (8, 3)


def test_untrusted_batches_keep_pytensor_checks(rng):
    # an input of fixed width: only PyTensor's own per-call check knows it
    x = pt.tensor("x", dtype="float32", shape=(None, 3))
    y = pt.vector("y", dtype="float32")
    w = pytensor.shared(np.zeros(3, "float32"), name="w")
    loss = ((x @ w - y) ** 2).mean()
    X = rng.normal(size=(16, 3)).astype("float32")
    Y = rng.normal(size=16).astype("float32")

    def wrong():  # a callable giving 4 columns where the input has 3
        return [np.hstack([X, X[:, :1]]), Y]

    opt = downhill.build("rmsprop", loss)
    recorder = record_step(opt)
    data = downhill.Dataset(wrong, iteration_size=2)
    with pytest.raises(TypeError, match="shape"):
        next(opt.iterate(data, valid=downhill.Dataset([X, Y])))
    assert not data.trusted
    assert recorder.calls and not any(trusted for _, trusted in recorder.calls)


def test_trusted_only_when_batches_fit_exactly(rng):
    X = rng.normal(size=(16, 3)).astype("float32")
    fixed = pt.tensor("x", dtype="float32", shape=(None, 3))
    other = pt.tensor("x", dtype="float32", shape=(None, 4))
    batch_fixed = pt.tensor("x", dtype="float32", shape=(8, 3))
    for variable, trusted in [(pt.matrix("x", dtype="float32"), True), (fixed, True),
                              (other, False), (batch_fixed, False)]:
        data = downhill.Dataset([X], batch_size=8)
        data.conform([variable])
        assert data.trusted is trusted, variable.type
    data = downhill.Dataset(lambda: [X], iteration_size=1)
    data.conform([fixed])
    assert not data.trusted
    data = downhill.Dataset(lambda: [], iteration_size=1)
    data.conform([])
    assert data.trusted


def test_iterate_mode_switches_and_caches_functions(rng):
    x, y, loss = regression("float64")
    X = rng.normal(size=(16, 3))
    Y = X @ np.array([1.0, -2.0, 0.5])
    results = []
    for mode in [None, "FAST_COMPILE"]:
        opt = downhill.build("sgd", loss)
        data = downhill.Dataset([X, Y], batch_size=4, rng=0)
        train, _ = next(opt.iterate(data, learning_rate=0.01, mode=mode))
        results.append(train["loss"])
    assert results[0] == pytest.approx(results[1], rel=1e-12)
    opt.minimize([X, Y], batch_size=4, learning_rate=0.01, max_updates=1)
    assert [key[1] for key in opt._functions._steps] == ["FAST_COMPILE"]  # kept, nothing new
    opt.minimize([X, Y], batch_size=4, learning_rate=0.01, max_updates=1, mode="NUMBA")
    assert [key[1] for key in opt._functions._steps] == ["FAST_COMPILE", "NUMBA"]
    assert list(opt._functions._evals) == ["FAST_COMPILE", "NUMBA"]


def test_unknown_mode_is_refused_at_the_call_and_changes_nothing():
    # a bad mode used to be kept and fail only at the first compilation, inside
    # the loop, leaving the optimizer unable even to evaluate
    w = pytensor.shared(np.ones(2), name="w")
    with pytest.raises(ValueError, match="unknown compile mode 'nope'"):
        downhill.build("sgd", (w ** 2).sum(), mode="nope")
    opt = downhill.build("sgd", (w ** 2).sum())
    with pytest.raises(ValueError, match="unknown compile mode 'nope'"):
        opt.iterate(mode="nope")
    assert opt.evaluate(None)["loss"] == 2.0
    opt.minimize(max_updates=1, learning_rate=0.25)
    np.testing.assert_array_equal(w.get_value(), [0.5, 0.5])


def test_shared_data_is_batched_inside_the_graph(rng):
    # the same seeds and data as numpy arrays or as shared variables give
    # exactly the same training, but for shared data the compiled function's
    # only input is the batch number
    x, y, loss = regression("float64")
    X = rng.normal(size=(36, 3))  # 5 batches of 8 and one of 4 per pass
    Y = X @ np.array([1.0, -2.0, 0.5])
    V = rng.normal(size=(12, 3))  # a separate validation set
    W = V @ np.array([1.0, -2.0, 0.5]) + 0.1
    shared_X, shared_Y = pytensor.shared(X.copy()), pytensor.shared(Y.copy())
    runs = []
    for data, valid in (([X, Y], [V, W]), ([shared_X, shared_Y],
                                           [pytensor.shared(V), pytensor.shared(W)])):
        _, _, loss = regression("float64")
        opt = downhill.build("sgd", loss)
        ds = downhill.Dataset(data, batch_size=8, iteration_size=7, rng=0)
        valid = downhill.Dataset(valid, batch_size=5, rng=1)
        history = list(opt.iterate(ds, valid, learning_rate=0.05, max_updates=3,
                                   validate_every=1))
        runs.append((opt, ds, history, [p.get_value() for p in opt.params]))
    (_, plain, h0, p0), (opt, ds, h1, p1) = runs
    assert not plain.in_graph and ds.in_graph
    assert h0 == h1
    for a, b in zip(p0, p1):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(shared_X.get_value(), X)  # the user's data is untouched
    twins = [twin for _, twin in opt._functions._twins.values()]
    assert len(twins) == 2  # step and evaluation
    for twin in twins:
        explicit = [i for i in twin.maker.inputs if not i.shared]
        assert len(explicit) == 1 and explicit[0].variable.type.ndim == 0
        assert explicit[0].variable.dtype == "int64"
    # the graph reads the dataset's own arrays, not copies: evaluation reads
    # them in order, training the dataset's shuffled buffer
    opt.evaluate(ds)  # the validation set was last; evaluate points back at ds's data
    buffers, size = opt._functions.data_variables()
    assert size.get_value() == 8  # the validation batches had 5
    for shared, array in zip(buffers, ds._arrays):
        assert np.shares_memory(shared.get_value(borrow=True), array)
    next(opt.iterate(ds, valid=ds, learning_rate=1e-3, validate_every=100))
    for shared, array in zip(buffers, ds._buffers):
        assert np.shares_memory(shared.get_value(borrow=True), array)


def test_in_graph_only_for_fitting_shared_data(rng):
    X = pytensor.shared(rng.normal(size=(16, 3)).astype("float32"))
    x32, x64 = pt.matrix("x", dtype="float32"), pt.matrix("x", dtype="float64")
    for data, variable, in_graph in [([X], x32, True), ([X], x64, True),
                                     ([X.get_value()], x32, False)]:
        ds = downhill.Dataset(data, batch_size=4)
        ds.conform([variable])
        assert ds.in_graph is in_graph
    ds = downhill.Dataset([pytensor.shared(np.zeros((3, 16)))], batch_size=4, axis=1)
    ds.conform([pt.matrix("x")])
    assert ds.trusted and not ds.in_graph
