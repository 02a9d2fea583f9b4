"""The same seed gives the same numbers whether the compiled code is fresh or cached.

PyTensor keeps compiled Numba code in a cache folder (``base_compiledir``).
With Numba's fast-math flags a function loaded from that cache could compute
other bits than the fresh compile that wrote it (see
:func:`downhill.util.compile_function`), so a training run gave other
numbers on its first (cold) run than on every later (warm) one. These tests
run real subprocesses with fresh cache folders, and check the functions an
optimizer compiles for the IEEE evaluation order that makes them agree (a
sum adds one element after the other, or, from downhill.parallel.MIN_SIZE
elements, in downhill.blocksum's fixed blocked order).
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytensor
import pytensor.tensor as pt

import downhill
from downhill import blocksum, parallel, util

#: The folder holding the downhill package under test, for the subprocesses.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(downhill.__file__)))

#: A small run that came out differently cold and warm with fast-math: SGD
#: with momentum on an L1-penalized loss (as the sparse-digits problem). Its
#: update of ``z`` divides by the number of elements, which fast-math
#: compiled as a fused multiply-add with ``1 / n`` in the fresh code and as
#: ``s * (0.1 / n)`` in the cached copy: several elements of ``z`` were 1 ulp
#: apart after the first update. Prints the parameters' bytes and every
#: training and validation loss.
SCRIPT = r"""
import json
import numpy as np
import pytensor
import pytensor.tensor as pt
import downhill

rng = np.random.default_rng(0)
z = pytensor.shared(rng.normal(size=(20, 4)).astype("float32"), name="z")
target = rng.normal(size=(20, 4)).astype("float32")
loss = pt.sqr(z - target).mean() + np.float32(0.1) * abs(z).mean()
opt = downhill.build("sgd", loss, params=[z])
train, valid = [], []
for tr, va in opt.iterate(max_updates=20, learning_rate=3.0, momentum=0.9,
                          validate_every=5, patience=100):
    train.append(tr["loss"])
    valid.append(va["loss"])
print(json.dumps({"z": z.get_value().tobytes().hex(), "train": train, "valid": valid}))
"""


#: The same kind of run on a parameter large enough that its update runs on
#: Numba's threads (downhill.parallel) and its loss's sums are blocked
#: (downhill.blocksum), with and without the skip guard's loops
#: (downhill.skipguard), on 1 and 2 threads; prints a digest of the
#: parameter's bytes and the training and validation losses after each run.
PARALLEL_SCRIPT = r"""
import hashlib
import json
import numpy as np
import pytensor
import pytensor.tensor as pt
import downhill

rng = np.random.default_rng(0)
n = downhill.parallel.MIN_SIZE + 1000
start = rng.normal(size=n).astype("float32")
big = pytensor.shared(start.copy(), name="big")
target = rng.normal(size=n).astype("float32")
loss = pt.sqr(big - target).mean() + np.float32(0.1) * abs(big).mean()
opt = downhill.build("sgd", loss, params=[big])
digests = {}
for mode in ("raise", "skip"):
    for threads in (1, 2):
        big.set_value(start.copy())
        for var in opt.state_variables:
            var.set_value(np.zeros_like(var.get_value()))
        losses = [(tr["loss"], va["loss"]) for tr, va in opt.iterate(
            max_updates=5, learning_rate=3.0, momentum=0.9, on_nonfinite=mode,
            threads=threads, patience=100, validate_every=2)]
        digest = hashlib.sha256(big.get_value().tobytes() + repr(losses).encode())
        digests[f"{mode} on {threads}"] = digest.hexdigest()
step = opt._functions.step()[0]
assert downhill.parallel.is_parallel(step) and downhill.skipguard.is_guarded_in_loops(step)
assert any(isinstance(node.op, downhill.blocksum.BlockSum) for node in step.maker.fgraph.apply_nodes)
print(json.dumps(digests))
"""


def _start(cache, script=SCRIPT):
    """Start ``script`` in a fresh interpreter whose compile cache is ``cache``."""
    env = dict(os.environ)
    flags = env.get("PYTENSOR_FLAGS", "")
    env["PYTENSOR_FLAGS"] = ",".join(filter(None, [flags, f"base_compiledir={cache}"]))
    env["NUMBA_CACHE_DIR"] = str(cache / "numba")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, env.get("PYTHONPATH")]))
    return subprocess.Popen([sys.executable, "-c", script], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _result(process):
    out, err = process.communicate(timeout=600)
    assert process.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


def _ulps_apart(a, b):
    """How many float32 elements of two hex dumps differ."""
    a = np.frombuffer(bytes.fromhex(a), dtype=np.float32)
    b = np.frombuffer(bytes.fromhex(b), dtype=np.float32)
    return int((a.view(np.int32) != b.view(np.int32)).sum())


def test_cold_and_warm_runs_give_the_same_numbers(tmp_path):
    # two cold runs side by side (each compiles into its own empty cache) ...
    first, second = _start(tmp_path / "a"), _start(tmp_path / "b")
    cold, cold_again = _result(first), _result(second)
    # ... then a warm one that loads everything the first compiled
    warm = _result(_start(tmp_path / "a"))
    assert cold_again == cold, (
        f"two fresh compiles differ ({_ulps_apart(cold['z'], cold_again['z'])} elements)")
    assert warm == cold, (
        f"the cached functions compute other numbers than the fresh ones: "
        f"{_ulps_apart(cold['z'], warm['z'])} of 80 elements of z differ")


def test_parallel_updates_give_the_same_numbers_cold_warm_and_on_any_threads(tmp_path):
    first = _start(tmp_path / "a", PARALLEL_SCRIPT)
    second = _start(tmp_path / "b", PARALLEL_SCRIPT)
    cold, cold_again = _result(first), _result(second)
    warm = _result(_start(tmp_path / "a", PARALLEL_SCRIPT))
    assert len(set(cold.values())) == 1, f"threads or the guard change the numbers: {cold}"
    assert cold_again == cold, "two fresh compiles differ"
    assert warm == cold, "the cached parallel functions compute other numbers than fresh ones"


def _sequential_sum(values):
    """A float64 sum added left to right, as IEEE code without reassociation does."""
    return float(np.add.accumulate(np.ravel(values))[-1])


def test_compile_function_keeps_the_order_of_a_sum():
    # fast-math reassociates the sum into vector lanes; without it the loop adds
    # one element after the other, and 100,000 elements are enough for the two to differ
    x = pt.vector("x", dtype="float64")
    values = np.random.default_rng(1).normal(size=100_000)
    before = pytensor.config.numba__fastmath
    fn = util.compile_function([x], x.sum())
    assert float(fn(values)) == _sequential_sum(values)
    assert pytensor.config.numba__fastmath == before


def _blocked_sum(values):
    """A float64 sum in downhill.blocksum's documented order: blocks of
    BLOCK elements, in each LANES running sums (lane k: elements k,
    k + LANES, ... one after the other), added lane by lane, then block by
    block, each from zero."""
    flat = np.ravel(values).astype(np.float64)
    total = 0.0
    for lo in range(0, flat.size, blocksum.BLOCK):
        block = flat[lo:lo + blocksum.BLOCK]
        rows = block.size // blocksum.LANES
        lanes = np.zeros(blocksum.LANES)
        for r in range(rows):  # one element per lane: exact IEEE additions
            lanes += block[r * blocksum.LANES:(r + 1) * blocksum.LANES]
        tail = block[rows * blocksum.LANES:]
        lanes[:tail.size] += tail
        block_total = 0.0
        for lane in lanes:
            block_total += lane
        total += block_total
    return total


def test_every_function_an_optimizer_compiles_keeps_a_fixed_order_of_a_sum():
    # the step and evaluation functions, for arrays and for shared-variable
    # data (batched in the graph by their twins): a large sum is added in
    # downhill.blocksum's fixed order (within rounding of the sequential sum,
    # and not the same bits), a small one element after element
    rng = np.random.default_rng(2)
    for size in (100_000, parallel.MIN_SIZE - 1):
        start = rng.normal(size=size)
        data = rng.normal(size=(1, size))
        big = size >= parallel.MIN_SIZE
        sums = _blocked_sum if big else _sequential_sum
        expected = sums(np.square(data - start))
        if big:
            assert expected != _sequential_sum(np.square(data - start))
            assert abs(expected - _sequential_sum(np.square(data - start))) < 1e-10 * expected
        x = pt.matrix("x", dtype="float64")
        w = pytensor.shared(start.copy(), name="w")
        opt = downhill.build("sgd", pt.sqr(x - w).sum(), params=[w])
        for given in ([data], [pytensor.shared(data, name="data")]):
            w.set_value(start.copy())
            dataset = downhill.Dataset(given, batch_size=1)
            assert opt.evaluate(dataset)["loss"] == expected
            train, valid = next(iter(opt.iterate(dataset, dataset, max_updates=1,
                                                 learning_rate=1e-9)))
            assert train["loss"] == expected  # the step's loss is taken before the update
            assert valid["loss"] == expected
