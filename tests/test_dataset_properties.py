"""Properties of Dataset for any sizes, batch sizes, axes and seeds (hypothesis).

Every input holds its sample index at every position of the sample's slice
(offset per input), so a batch tells exactly which samples it carries, and
batches of different inputs can be checked to carry the same samples in the
same order.
"""

import numpy as np
import pytensor.tensor as pt
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from downhill import Dataset

OFFSET = 1000   # input k holds OFFSET * k + sample index


def indexed(n, shape, axis, k, dtype="float64"):
    """An array of ``shape`` (with n along ``axis``) holding k*OFFSET + sample index."""
    shape = list(shape)
    shape[axis] = n
    view = [1] * len(shape)
    view[axis] = n
    return np.broadcast_to((OFFSET * k + np.arange(n)).reshape(view), shape).astype(dtype)


def samples_of(batch, axis):
    """The sample indices a batch carries; checks that all inputs agree."""
    found = None
    for k, part in enumerate(batch):
        part = part.toarray() if sp.issparse(part) else np.asarray(part)
        moved = np.moveaxis(part, axis, 0).reshape(part.shape[axis], -1) - OFFSET * k
        # every position of a sample's slice holds that sample's index
        assert (moved == moved[:, :1]).all()
        index = moved[:, 0].astype(int)
        if found is None:
            found = index
        else:
            np.testing.assert_array_equal(index, found)   # aligned across inputs
    return found


@st.composite
def datasets(draw, max_n=40):
    """Arguments of a Dataset over 1 to 3 indexed inputs of 1 to 3 dimensions."""
    n = draw(st.integers(1, max_n))
    ndim_axis = draw(st.integers(0, 2))          # the axis counted from the front
    negative = draw(st.booleans())
    shapes, arrays = [], []
    inputs = draw(st.integers(1, 3))
    ndims = [draw(st.integers(ndim_axis + 1, 3)) for _ in range(inputs)]
    if negative:
        # a negative axis must denote the same position in every input: give
        # them all the same number of dimensions
        ndims = [ndims[0]] * inputs
        axis = ndim_axis - ndims[0]
    else:
        axis = ndim_axis
    for k, ndim in enumerate(ndims):
        shape = tuple(draw(st.integers(1, 3)) for _ in range(ndim))
        shapes.append(shape)
        arrays.append(indexed(n, shape, axis, k))
    batch_size = draw(st.integers(-3, max_n + 5))
    return n, arrays, axis, batch_size


def batches_per_pass(n, batch_size):
    return 1 if batch_size <= 0 or batch_size >= n else -(-n // batch_size)


@settings(max_examples=150, deadline=None)
@given(datasets(), st.one_of(st.none(), st.integers(1, 7)), st.integers(0, 2 ** 32 - 1),
       st.booleans())
def test_every_sample_once_per_pass_and_aligned(args, iteration_size, seed, shuffle_samples):
    n, arrays, axis, batch_size = args
    ds = Dataset(arrays, batch_size=batch_size, iteration_size=iteration_size, axis=axis,
                 rng=seed, shuffle_samples=shuffle_samples)
    per_pass = batches_per_pass(n, batch_size)
    assert ds.iteration_size == (iteration_size or per_pass)
    size = n if per_pass == 1 else batch_size
    seen = []
    for _ in range(3):                      # three iterations, passes may straddle them
        count = 0
        for batch in ds:       # look at each batch before asking for the next
            count += 1
            assert len(batch) == len(arrays)
            for part, array in zip(batch, arrays):
                assert part.dtype == array.dtype
                assert part.ndim == array.ndim
                other = [s for i, s in enumerate(part.shape) if i != axis % array.ndim]
                assert other == [s for i, s in enumerate(array.shape) if i != axis % array.ndim]
            index = samples_of(batch, axis)
            assert ds.batch_weight(batch) == len(index)
            seen.append(index)
        assert count == ds.iteration_size
    # consecutive groups of per_pass batches are the passes
    for start in range(0, len(seen) - per_pass + 1, per_pass):
        group = seen[start:start + per_pass]
        if shuffle_samples:
            # the samples are reshuffled: only the last batch of a pass is short
            assert [len(b) for b in group[:-1]] == [size] * (per_pass - 1)
        else:
            # downhill 0.4's fixed contiguous batches, in a shuffled order
            assert sorted(b.tolist() for b in group) == [
                list(range(k, min(k + size, n))) for k in range(0, n, size)]
        np.testing.assert_array_equal(np.sort(np.concatenate(group)), np.arange(n))
    if per_pass == 1:
        # one batch of everything: the arrays as they are, in order
        for index in seen:
            np.testing.assert_array_equal(index, np.arange(n))


@settings(max_examples=60, deadline=None)
@given(datasets(), st.one_of(st.none(), st.integers(1, 5)), st.integers(0, 2 ** 32 - 1))
def test_a_seed_fixes_the_order(args, iteration_size, seed):
    n, arrays, axis, batch_size = args
    orders = []
    for rng in (seed, seed, np.random.default_rng(seed)):
        ds = Dataset([a.copy() for a in arrays], batch_size=batch_size,
                     iteration_size=iteration_size, axis=axis, rng=rng,
                     shuffle_samples=seed % 2 == 0)
        orders.append([samples_of(b, axis).tolist() for _ in range(3) for b in ds])
    assert orders[0] == orders[1] == orders[2]


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 30), st.integers(1, 12), st.sampled_from([0, 1, -1, -2]),
       st.sampled_from(["csr", "csc"]), st.integers(0, 2 ** 32 - 1))
def test_sparse_inputs_align_with_dense(n, batch_size, axis, fmt, seed):
    dense = indexed(n, (2, 2), axis, 0)
    sparse = sp.csr_matrix(indexed(n, (3, 3), axis, 1)).asformat(fmt)
    ds = Dataset([dense, sparse], batch_size=batch_size, axis=axis, rng=seed,
                 shuffle_samples=seed % 2 == 1)   # both kinds of shuffling
    per_pass = batches_per_pass(n, batch_size)
    seen = [samples_of(b, axis) for _ in range(2) for b in ds]
    for start in range(0, len(seen), per_pass):
        np.testing.assert_array_equal(
            np.sort(np.concatenate(seen[start:start + per_pass])), np.arange(n))


@settings(max_examples=60, deadline=None)
@given(datasets(), st.integers(1, 6), st.integers(0, 20), st.integers(0, 2 ** 32 - 1))
def test_conform_casting_mid_pass_keeps_the_pass(args, iteration_size, before, seed):
    """A dataset conformed to float32 inputs after some batches (e.g. shared by a
    float64 and a float32 model) finishes its pass with every sample once."""
    n, arrays, axis, batch_size = args
    ds = Dataset(arrays, batch_size=batch_size, iteration_size=iteration_size, axis=axis,
                 rng=seed, shuffle_samples=seed % 2 == 1)   # both kinds of shuffling
    seen = []
    it = (b for _ in range(100) for b in ds)
    for _ in range(before):
        seen.append(samples_of(next(it), axis))
    ds.conform([pt.TensorType("float32", shape=(None,) * a.ndim)() for a in arrays])
    per_pass = batches_per_pass(n, batch_size)
    while len(seen) < 2 * per_pass + before:
        batch = next(it)
        assert all(part.dtype == np.float32 for part in batch)
        seen.append(samples_of(batch, axis))
    for start in range(0, len(seen) - per_pass + 1, per_pass):
        np.testing.assert_array_equal(
            np.sort(np.concatenate(seen[start:start + per_pass])), np.arange(n))


@pytest.mark.parametrize("axis", [2, -3])
def test_axis_out_of_range(axis):
    with pytest.raises(ValueError, match=f"has no axis {axis} to batch along"):
        Dataset([np.zeros((4, 5))], axis=axis)



def test_kept_batches_are_views_of_the_pass_buffer():
    """What the warning in Dataset's docstring says: a batch kept past its pass
    changes when the next pass permutes into the same buffer; a copy does not."""
    ds = Dataset([indexed(6, (6,), 0, 0)], batch_size=3, rng=1, shuffle_samples=True)
    batches = iter(ds)            # iteration_size 2: one pass
    kept = next(batches)[0]
    copied = kept.copy()
    next(batches)
    np.testing.assert_array_equal(kept, copied)   # unchanged within its pass
    next(iter(ds))                # the next pass starts
    assert not np.array_equal(kept, copied)       # seed 1: its first batch differs
    assert kept.base is not None and copied.base is None


class Counter:
    """A callable dataset counting its calls (no len(); see Sized)."""

    def __init__(self, length=None):
        self.calls = 0
        self.length = length

    def __call__(self):
        self.calls += 1
        return [np.full((2, 1), float(self.calls))]


class Sized(Counter):
    def __len__(self):
        return self.length


@settings(max_examples=30, deadline=None)
@given(st.one_of(st.none(), st.integers(1, 50)), st.one_of(st.none(), st.integers(1, 9)))
def test_callable_iteration_size(length, iteration_size):
    source = Counter() if length is None else Sized(length)
    ds = Dataset(source, iteration_size=iteration_size)
    want = iteration_size or (100 if length is None else length)
    assert ds.iteration_size == want
    for k in range(1, 3):
        calls = [float(b[0][0, 0]) for b in ds]
        assert calls == [float(c) for c in range((k - 1) * want + 1, k * want + 1)]
        assert source.calls == k * want
