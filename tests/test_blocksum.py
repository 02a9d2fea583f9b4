"""The blocked sums of downhill.blocksum: the documented order, bit for bit,
on 1 and 2 threads, in Numba and in Python; which sums are replaced
(checked in the compiled graph, never by timing); small and non-contiguous
arrays keep PyTensor's sequential loop.
"""

import numba
import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
from pytensor.tensor.elemwise import CAReduce

import downhill
from downhill import blocksum, parallel

NUMBA = parallel.mode_with_parallel_updates("NUMBA")


def reference(values, acc="float64"):
    """The documented order, written out independently of blocksum.blocked_sum:
    per block of BLOCK elements, LANES running sums advanced one row of
    LANES elements at a time (exact elementwise IEEE additions), the tail
    into the first lanes, the lanes added in order, then the blocks."""
    flat = np.ravel(values).astype(acc)
    zero = np.dtype(acc).type(0)
    total = zero
    for lo in range(0, flat.size, blocksum.BLOCK):
        block = flat[lo:lo + blocksum.BLOCK]
        rows = block.size // blocksum.LANES
        lanes = np.zeros(blocksum.LANES, acc)
        for r in range(rows):
            lanes += block[r * blocksum.LANES:(r + 1) * blocksum.LANES]
        tail = block[rows * blocksum.LANES:]
        lanes[:tail.size] += tail
        block_total = zero
        for lane in lanes:
            block_total += lane
        total += block_total
    return total


def sequential(values, acc="float64"):
    """One element after the other, as PyTensor's loop without reassociation."""
    return np.add.accumulate(np.ravel(values).astype(acc))[-1]


def sum_function(dtype, shape, expression=lambda x: x.sum()):
    x = pt.tensor("x", dtype=dtype, shape=(None,) * len(shape))
    return downhill.util.compile_function([x], expression(x), mode=NUMBA)


def same_bits(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.tobytes() == b.tobytes()


def with_threads(threads, fn, *args):
    before = numba.get_num_threads()
    numba.set_num_threads(threads)
    try:
        return fn(*args)
    finally:
        numba.set_num_threads(before)


SIZES = [(parallel.MIN_SIZE,), (3 * blocksum.BLOCK + 17,), (501, 397), (7, 3, 9001)]


@pytest.mark.parametrize("shape", SIZES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_large_sum_is_added_in_the_documented_order_on_any_threads(dtype, shape):
    values = np.random.default_rng(len(shape)).normal(size=shape).astype(dtype) * 3
    fn = sum_function(dtype, shape)
    assert any(isinstance(node.op, blocksum.BlockSum) for node in fn.maker.fgraph.apply_nodes)
    one, two = with_threads(1, fn, values), with_threads(2, fn, values)
    assert same_bits(one, two)
    expected = np.asarray(reference(values), dtype=dtype)  # float64 accumulator, as Sum's
    assert same_bits(one, expected)
    # another order of the same additions: within rounding of the exact sum
    exact = float(np.sum(values.astype(np.longdouble)))
    np.testing.assert_allclose(float(one), exact, rtol=1e-6 if dtype == "float32" else 1e-12)


def test_the_numpy_transcription_and_the_python_implementation_agree():
    values = np.random.default_rng(1).normal(size=2 * blocksum.BLOCK + 1001).astype("float32")
    assert same_bits(blocksum.blocked_sum(values, "float64", "float32"),
                     np.asarray(reference(values), "float32"))
    x = pt.vector("x", dtype="float32")
    node = x.sum().owner
    op = blocksum.BlockSum(node.op)
    new = op.make_node(x)
    storage = [[None]]
    op.perform(new, [values], storage)
    assert same_bits(storage[0][0], np.asarray(reference(values), "float32"))
    assert same_bits(sum_function("float32", (1,))(values), storage[0][0])


def test_small_and_non_contiguous_arrays_keep_the_sequential_loop():
    rng = np.random.default_rng(2)
    small = rng.normal(size=parallel.MIN_SIZE - 1)
    fn = sum_function("float64", (1,))
    assert float(fn(small)) == sequential(small)
    # a strided view (every other element): PyTensor's own loop
    large = rng.normal(size=2 * parallel.MIN_SIZE + 10)
    strided = sum_function("float64", (1,), lambda x: x[::2].sum())
    assert float(strided(large)) == sequential(large[::2])
    # and a Fortran-ordered matrix, summed by PyTensor in memory order
    matrix = np.asfortranarray(rng.normal(size=(300, 400)))
    assert float(sum_function("float64", (1, 1))(matrix)) == sequential(matrix.T)


def test_only_full_float_sums_are_replaced():
    x = pt.matrix("x", dtype="float32")
    i = pt.matrix("i", dtype="int64")
    fn = downhill.util.compile_function([x, i], [x.sum(axis=0), i.sum(), x.max()],
                                        mode=NUMBA)
    nodes = fn.maker.fgraph.apply_nodes
    assert not any(isinstance(node.op, blocksum.BlockSum) for node in nodes)
    assert sum(isinstance(node.op, CAReduce) for node in nodes) == 3
    # other backends keep PyTensor's sums
    for mode in ("CVM", "FAST_COMPILE"):
        assert parallel.mode_with_parallel_updates(mode) == mode


def test_the_loss_and_the_global_norm_of_a_step_are_blocked():
    # what iterate compiles: the loss's sum and max_gradient_norm's sum of squares
    n = parallel.MIN_SIZE + 5
    rng = np.random.default_rng(3)
    w = pytensor.shared(rng.normal(size=n).astype("float32"), name="w")
    d = pytensor.shared(rng.normal(size=n).astype("float32"), name="d")
    opt = downhill.build("sgd", (w * d).sum(), params=[w])
    opt.get_updates(learning_rate=1e-3, max_gradient_norm=1.0)
    step = opt._functions.step()[0]
    sums = [node for node in step.maker.fgraph.apply_nodes
            if isinstance(node.op, blocksum.BlockSum)]
    assert len(sums) == 2
    start = w.get_value()
    loss = float(step()[0])
    assert loss == np.float32(reference(start * d.get_value()))
    # the step's norm is d's (the gradient), summed in the blocked order
    g = d.get_value()
    norm = np.sqrt(np.float32(reference(g * g)))
    np.testing.assert_allclose(w.get_value(), start - 1e-3 * g / norm, rtol=1e-6, atol=1e-9)
