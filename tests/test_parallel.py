"""The update on every core (downhill.parallel) and the skip guard's loops
(downhill.skipguard): the same bits whatever the number of threads, the same
bits as PyTensor's serial loop, the guard's semantics, the threads= setting,
and which updates run in parallel (checked in the compiled graph, never by
timing).
"""

import multiprocessing
import os
import subprocess
import sys

import numba
import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
from pytensor.tensor.elemwise import Elemwise

import downhill
from downhill import parallel, skipguard

LARGE = parallel.MIN_SIZE + 7345  # not a multiple of anything the blocks use
SMALL = 1000
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(downhill.__file__)))


def model(rng, dtype="float32", order="C"):
    """A least-squares problem with two large and two small parameters."""
    w = pytensor.shared(np.asarray(rng.normal(size=(LARGE // 5, 5)) * 0.1, dtype=dtype,
                                   order=order), name="w")
    u = pytensor.shared(np.zeros(LARGE + 1, dtype), name="u")
    b = pytensor.shared(np.zeros(5, dtype), name="b")
    c = pytensor.shared(np.zeros(SMALL, dtype), name="c")
    x = pt.matrix("x", dtype=dtype)
    y = pt.matrix("y", dtype=dtype)
    loss = (pt.sqr(x @ w + b - y)).mean() + pt.sqr(c - 1).mean() + pt.sqr(u - x.mean()).mean()
    X = rng.normal(size=(16, LARGE // 5)).astype(dtype)
    Y = rng.normal(size=(16, 5)).astype(dtype)
    return loss, [X, Y]


def trained(algo, threads, hypers, steps=3, dtype="float32", order="C"):
    """Parameters and state after ``steps`` updates on ``threads`` threads."""
    rng = np.random.default_rng(3)
    loss, data = model(rng, dtype, order)
    opt = downhill.build(algo, loss)
    # one batch of 16 per iteration: one update each, whatever the shuffling
    for _ in opt.iterate(data, batch_size=16, max_updates=steps, threads=threads, **hypers):
        pass
    values = [p.get_value() for p in opt.params] + [v.get_value() for v in opt.state_variables]
    return opt, values


def same_bits(a, b):
    """Arrays bit for bit equal; random generators (ESGD's) in the same state."""
    def same(x, y):
        if isinstance(x, np.random.Generator):
            return x.bit_generator.state == y.bit_generator.state
        return (x.dtype == y.dtype and x.shape == y.shape
                and np.array_equal(x.view(f"u{x.itemsize}"), y.view(f"u{y.itemsize}")))
    return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))


def update_nodes(opt, fn):
    """The node that writes each parameter's new value, by name."""
    fgraph = fn.maker.fgraph
    inputs = [i.variable for i in fn.maker.inputs]
    output_of = {inp: out for out, inp in fgraph.update_mapping.items()}
    return {p.name: fgraph.outputs[output_of[inputs.index(p)]].owner for p in opt.params}


HYPERS = [
    ("rmsprop", {}),
    ("sgd", {"momentum": 0.9, "nesterov": True, "weight_decay": 1e-3}),
    ("adam", {"max_gradient_norm": 1.0}),
    ("rmsprop", {"on_nonfinite": "skip"}),
]


@pytest.mark.parametrize("algo,hypers", HYPERS)
def test_one_and_two_threads_give_the_same_bits(algo, hypers):
    opt1, one = trained(algo, 1, hypers)
    opt2, two = trained(algo, 2, hypers)
    assert same_bits(one, two)
    # the large parameters' updates ran together in one parallel loop, the
    # small ones' in PyTensor's serial loops
    fn = opt2._functions.step()[0]
    nodes = update_nodes(opt2, fn)
    assert parallel.is_parallel(fn)
    assert isinstance(nodes["w"].op, parallel.ParallelElemwise)
    assert nodes["u"] is nodes["w"] and len(nodes["w"].op.members) == 2
    for name in ("b", "c"):
        assert not isinstance(nodes[name].op, parallel.ParallelElemwise)


@pytest.mark.parametrize("algo", sorted(downhill.ALGORITHMS))
def test_every_rule_gives_the_same_bits_on_one_and_two_threads_and_serially(algo):
    # the rewrites meet every rule's graph: factored moments, wrappers,
    # random draws, the schedule-free averages, layer-wise norms; the run
    # leaves the last step's parameters in place (not the best validated ones,
    # nor Schedule-Free's average or Lookahead's slow weights), as the serial
    # step does
    last = {"final_params": "last"}
    _, one = trained(algo, 1, last)
    opt2, two = trained(algo, 2, last)
    assert same_bits(one, two)
    rng = np.random.default_rng(3)
    loss, (X, Y) = model(rng)
    opt = downhill.build(algo, loss)
    updates = opt.get_updates(learning_rate=opt._defaults.get("learning_rate", 1e-4))
    fn = downhill.util.compile_function(opt.inputs, opt._loss, updates=updates, mode="NUMBA")
    for _ in range(3):
        fn(X, Y)
    serial = [p.get_value() for p in opt.params] + [v.get_value() for v in opt.state_variables]
    assert same_bits(two, serial)


@pytest.mark.parametrize("feature", [dict(accumulate=2), dict(average="ema"),
                                     dict(groups=True)])
def test_training_features_give_the_same_bits_on_one_and_two_threads(feature):
    # accumulated micro-batches (the step runs every second call), averaged
    # weights (more large updates in the loop) and per-group values
    def run(threads):
        rng = np.random.default_rng(3)
        loss, data = model(rng)
        build, fit = {}, dict(batch_size=16)
        if "groups" in feature:
            build["groups"] = {"w": {"learning_rate": 3e-4}, "u": {"weight_decay": 1e-2}}
        elif "accumulate" in feature:
            fit = dict(batch_size=8, accumulate=feature["accumulate"])
        else:
            fit.update(feature)
        opt = downhill.build("adam", loss, **build)
        for _ in opt.iterate(data, max_updates=3, threads=threads, **fit):
            pass
        assert opt.update_count == 3
        return opt, [p.get_value() for p in opt.params] + \
            [v.get_value() for v in opt.state_variables]
    _, one = run(1)
    opt, two = run(2)
    assert same_bits(one, two)
    assert parallel.is_parallel(opt._functions.step()[0])


@pytest.mark.parametrize("algo,hypers", HYPERS)
def test_the_parallel_step_computes_the_serial_loops_bits(algo, hypers):
    # the same optimizer's updates compiled as a caller of get_updates compiles
    # them (PyTensor's serial loops), under the same flags
    _, parallel_values = trained(algo, 2, hypers)
    rng = np.random.default_rng(3)
    loss, (X, Y) = model(rng)
    opt = downhill.build(algo, loss)
    updates = opt.get_updates(learning_rate=opt._defaults.get("learning_rate", 1e-4), **hypers)
    fn = downhill.util.compile_function(opt.inputs, opt._loss, updates=updates, mode="NUMBA")
    assert not parallel.is_parallel(fn)
    for _ in range(3):  # iterate's three updates, each on the one batch
        fn(X, Y)
    serial_values = [p.get_value() for p in opt.params] + \
        [v.get_value() for v in opt.state_variables]
    assert same_bits(parallel_values, serial_values)


def test_the_parallel_update_agrees_with_numpy():
    # centred RMSProp, written out in NumPy (float64), on the large parameter
    # only: the kernel's maths, to float32 rounding
    rng = np.random.default_rng(5)
    n = LARGE
    g = rng.normal(size=n).astype("float32")
    p = pytensor.shared(np.zeros(n, "float32"), name="p")
    probe = pytensor.shared(g, name="g")
    opt = downhill.build("rmsprop", (p * probe).sum(), params=[p])
    lr, halflife, eps = 1e-3, 14.0, 1e-8
    for _ in opt.iterate(max_updates=2, learning_rate=lr, rms_halflife=halflife,
                         rms_regularizer=eps, threads=2, validate_every=100):
        pass
    assert parallel.is_parallel(opt._functions.step()[0])
    ewma = np.exp(-np.log(2) / halflife)
    ref, f, s = np.zeros(n), np.zeros(n), np.zeros(n)
    for _ in range(2):
        f = ewma * f + (1 - ewma) * g
        s = ewma * s + (1 - ewma) * g.astype(float) ** 2
        ref = ref - lr * g / np.sqrt(s - f * f + eps)
    np.testing.assert_allclose(p.get_value(), ref, rtol=2e-5, atol=1e-9)


def test_arrays_that_cannot_be_cut_take_the_serial_loop():
    # a Fortran-ordered parameter (and so state) is not C-contiguous: the
    # parallel node runs PyTensor's loop on its whole arrays (and the other
    # parameter's update in pieces)
    _, c_order = trained("rmsprop", 2, {})
    opt, f_order = trained("rmsprop", 2, {}, order="F")
    assert opt.params[0].get_value(borrow=True).flags.f_contiguous
    assert isinstance(update_nodes(opt, opt._functions.step()[0])["w"].op,
                      parallel.ParallelElemwise)
    assert same_bits(c_order, f_order)


def test_small_updates_and_other_backends_keep_pytensors_loops():
    rng = np.random.default_rng(3)
    small = pytensor.shared(np.zeros(parallel.MIN_SIZE - 1, "float32"), name="small")
    opt = downhill.build("adam", pt.sqr(small - 1).sum())
    opt.get_updates(on_nonfinite="skip")
    fn = opt._functions.step()[0]
    assert not parallel.is_parallel(fn) and not skipguard.is_guarded_in_loops(fn)
    node = update_nodes(opt, fn)["small"]
    assert isinstance(node.op, Elemwise)
    loss, data = model(rng)
    for mode in ("CVM", "FAST_COMPILE"):
        opt = downhill.build("rmsprop", loss, mode=mode)
        opt.get_updates(on_nonfinite="skip")
        fn = opt._functions.step()[0]
        assert not parallel.is_parallel(fn) and not skipguard.is_guarded_in_loops(fn)


def test_the_c_backend_trains_as_numba_does():
    _, numba_values = trained("rmsprop", 2, {})
    rng = np.random.default_rng(3)
    loss, data = model(rng)
    opt = downhill.build("rmsprop", loss, mode="CVM")
    for _ in opt.iterate(data, batch_size=16, max_updates=3):
        pass
    c_values = [p.get_value() for p in opt.params] + [v.get_value() for v in opt.state_variables]
    for a, b in zip(numba_values, c_values):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


# -- the skip guard's loops ---------------------------------------------

def guarded(rng, n=LARGE):
    p = pytensor.shared(np.zeros(n, "float32"), name="p")
    g = pytensor.shared(rng.normal(size=n).astype("float32"), name="g")
    opt = downhill.build("rmsprop", (p * g).sum(), params=[p])
    opt.get_updates(on_nonfinite="skip", learning_rate=1e-3)
    fn, _, guard = opt._functions.step()
    assert guard
    return opt, fn, p, g


def values_of(opt):
    return [p.get_value() for p in opt.params] + [v.get_value() for v in opt.state_variables]


def test_the_guard_runs_as_a_test_then_an_in_place_update():
    opt, fn, p, g = guarded(np.random.default_rng(0))
    assert skipguard.is_guarded_in_loops(fn)
    nodes = [node for node in fn.maker.fgraph.apply_nodes
             if isinstance(node.op, skipguard.FiniteElemwise)]
    assert len(nodes) == 1 and not nodes[0].op.destroy_map  # the test writes nothing
    update = update_nodes(opt, fn)["p"]
    assert isinstance(update.op, parallel.ParallelElemwise)
    assert update.op.destroy_map  # the update is written in place


@pytest.mark.parametrize("threads", [1, 2])
def test_the_guard_keeps_every_value_of_a_non_finite_step(threads):
    rng = np.random.default_rng(0)
    opt, fn, p, g = guarded(rng)
    good = g.get_value().copy()
    numba.set_num_threads(threads)
    try:
        assert bool(fn()[-1])
        before = values_of(opt)
        for bad, where in [(np.inf, 3), (np.nan, LARGE - 1), (3e38, LARGE // 2)]:
            # a non-finite gradient, and a finite one whose square overflows
            # the state (so the new values are not finite)
            values = good.copy()
            values[where] = bad
            g.set_value(values)
            assert not bool(fn()[-1])
            assert same_bits(values_of(opt), before)
        g.set_value(good)
        assert bool(fn()[-1])
        assert not same_bits(values_of(opt), before)
    finally:
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)


def test_a_guarded_step_that_is_finite_is_the_unguarded_step():
    rng = np.random.default_rng(0)
    opt, fn, p, g = guarded(rng)
    for _ in range(3):
        fn()
    skipped = values_of(opt)
    for v in [p] + opt.state_variables:
        v.set_value(np.zeros_like(v.get_value()))
    opt.get_updates(on_nonfinite="raise", learning_rate=1e-3)
    plain = opt._functions.step()[0]
    for _ in range(3):
        plain()
    assert same_bits(values_of(opt), skipped)


# -- threads --------------------------------------------------------------

@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", True, parallel.numba_threads() + 1])
def test_threads_must_be_a_whole_number_within_numbas_pool(bad):
    w = pytensor.shared(np.zeros(3), name="w")
    opt = downhill.build("sgd", pt.sqr(w - 1).sum())
    with pytest.raises(ValueError, match=r"invalid threads: .* \(must be a whole number from 1 "
                                         r"to \d+.*NUMBA_NUM_THREADS"):
        opt.iterate(threads=bad)
    with pytest.raises(ValueError, match="invalid threads"):
        opt.minimize(threads=bad)


def test_the_default_is_the_cores_this_process_may_use():
    expected = min(len(os.sched_getaffinity(0)), numba.config.NUMBA_NUM_THREADS)
    assert parallel.default_threads() == expected
    # NUMBA_NUM_THREADS bounds both the default and what threads= accepts
    script = ("import downhill.parallel as p, numba; print(p.default_threads(), "
              "p.numba_threads())\ntry:\n    p.check_threads(2)\nexcept ValueError as e:\n"
              "    print('refused')")
    env = dict(os.environ, NUMBA_NUM_THREADS="1", PYTHONPATH=ROOT)
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.stdout.split() == ["1", "1", "refused"], out.stderr


def test_steps_run_on_the_threads_asked_for(rng):
    seen = []
    w = pytensor.shared(np.zeros(LARGE, "float32"), name="w")
    opt = downhill.build("sgd", pt.sqr(w - 1).sum())

    def batches():  # called during the pass, between steps
        seen.append(numba.get_num_threads())
        return []
    before = numba.get_num_threads()
    for threads in (1, 2, None):
        seen.clear()
        data = downhill.Dataset(batches, iteration_size=3)
        valid = downhill.Dataset(lambda: [], iteration_size=1)
        for _ in opt.iterate(data, valid, max_updates=1, threads=threads, learning_rate=1e-3):
            pass
        assert seen == [threads or 2] * 3  # None keeps the last choice
        assert numba.get_num_threads() == before  # put back after the pass


def _child(fn, queue):
    fn()
    queue.put("ok")


def test_a_forked_child_runs_the_parallel_step():
    # GNU OpenMP's threads do not survive a fork: a child that started
    # Numba's parallel loops would be terminated; it runs them serially
    w = pytensor.shared(np.zeros(LARGE, "float32"), name="w")
    opt = downhill.build("sgd", pt.sqr(w - 1).sum())
    opt.get_updates(learning_rate=1e-3)
    fn = opt._functions.step()[0]
    fn()
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_child, args=(fn, queue))
    child.start()
    child.join(120)
    assert child.exitcode == 0
    assert queue.get(timeout=10) == "ok"
