"""JAX mode: every algorithm against its Numba result, checkpoints, generator
state, values kept on the device, and data parallel runs over 4 CPU devices
(tests/conftest.py sets XLA_FLAGS before jax is imported).

UserWarnings (PyTensor's JAX linker's kind) are errors here, and every
warning in the README problem's JAX run: a JAX-mode run must not warn
about anything but the user's own graph.
"""

import json
import logging
import os
import subprocess
import sys

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

import downhill

try:
    import jax
except ImportError:
    jax = None

needs_jax = pytest.mark.skipif(jax is None, reason="jax is not installed (pip install "
                                                   "'downhill[jax]')")
# PyTensor's JAX linker warns with UserWarning; Numba's performance hints
# about the user's graph (NumbaPerformanceWarning) may come with a cold cache
pytestmark = pytest.mark.filterwarnings("error::UserWarning")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def readme_problem():
    """The README's factorization (float32 factors, a float64 input)."""
    rng = np.random.default_rng(0)
    A, B, K = 20, 30, 3
    y = (rng.normal(size=(A, K)) @ rng.normal(size=(K, B))).astype("float32")
    x = pt.matrix("x")
    u = pytensor.shared(rng.normal(size=(A, K)).astype("float32") * 0.1, name="u")
    v = pytensor.shared(rng.normal(size=(K, B)).astype("float32") * 0.1, name="v")
    loss = pt.sqr(x - u @ v).mean()
    return loss, [y], [u, v], [("u<0.1", (abs(u) < 0.1).mean())]


def regression(n=70, dtype="float32"):
    """Linear regression with a bias: float32 throughout."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, 5)).astype(dtype)
    Y = (X @ rng.normal(size=(5, 2)) + 0.1 * rng.normal(size=(n, 2))).astype(dtype)
    x, y = pt.matrix("x", dtype=dtype), pt.matrix("y", dtype=dtype)
    w = pytensor.shared(np.zeros((5, 2), dtype), name="w")
    b = pytensor.shared(np.zeros(2, dtype), name="b")
    return pt.sqr(x @ w + b - y).mean(), [X, Y], [w, b]


def state_values(opt):
    return {k: np.array(v) for k, v in opt.state_dict()["state"].items()
            if not isinstance(v, dict)}


# ----------------------------------------------------------------------
# every algorithm, against Numba

@needs_jax
@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("algo", sorted(downhill.ALGORITHMS))
def test_readme_problem_in_jax_mode_warns_nothing(algo):
    loss, data, params, monitors = readme_problem()
    opt = downhill.build(algo, loss, mode="JAX", monitors=monitors)
    train, valid = opt.minimize(data, batch_size=0, learning_rate=0.01, max_updates=5)
    assert np.isfinite(train["loss"])


@needs_jax
@pytest.mark.parametrize("algo", sorted(set(downhill.ALGORITHMS) - {"esgd"}))
def test_every_algorithm_matches_numba(algo):
    results = {}
    for mode in ("NUMBA", "JAX"):
        loss, data, params, monitors = readme_problem()
        opt = downhill.build(algo, loss, mode=mode, monitors=monitors)
        train, valid = opt.minimize(data, batch_size=0, learning_rate=0.01, max_updates=20,
                                    patience=100)
        values = [p.get_value() for p in params]
        assert all(type(v) is np.ndarray and v.dtype == np.float32 for v in values)
        results[mode] = train, valid, values, state_values(opt)
    (t0, v0, p0, s0), (t1, v1, p1, s1) = results["NUMBA"], results["JAX"]
    assert list(t1) == list(t0) == ["loss", "u<0.1"]
    for key in t0:
        np.testing.assert_allclose(t1[key], t0[key], rtol=1e-5)
        np.testing.assert_allclose(v1[key], v0[key], rtol=1e-5)
    for a, b in zip(p1, p0):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    assert s1.keys() == s0.keys()
    for key in s0:
        assert s1[key].dtype == s0[key].dtype
        np.testing.assert_allclose(s1[key], s0[key], rtol=1e-4, atol=1e-6)


@needs_jax
def test_esgd_reaches_the_same_minimum_as_numba():
    # the random vectors come from each backend's own generator, so the two
    # runs differ step by step; on least squares both reach the minimum
    rng = np.random.default_rng(0)
    X = rng.normal(size=(32, 3))
    Y = X @ np.array([1.0, -2.0, 0.5]) + 0.1 * rng.normal(size=32)
    best = float(((X @ np.linalg.lstsq(X, Y, rcond=None)[0] - Y) ** 2).mean())
    finals = {}
    for mode in ("NUMBA", "JAX"):
        w = pytensor.shared(np.zeros(3), name="w")
        x, y = pt.matrix("x"), pt.vector("y")
        opt = downhill.build("esgd", ((x @ w - y) ** 2).mean(), mode=mode)
        train, _ = opt.minimize([X, Y], batch_size=0, learning_rate=0.05, max_updates=150,
                                patience=1000)
        finals[mode] = train["loss"]
    assert finals["NUMBA"] == pytest.approx(best, rel=1e-3)
    assert finals["JAX"] == pytest.approx(best, rel=1e-3)


@needs_jax
def test_features_match_numba():
    # clipping, momentum (Nesterov), weight decay, a schedule, skip, gradient
    # monitors, and data as arrays, shared variables (batched in the graph)
    # and a callable; then evaluate()
    from downhill.schedules import CosineWithWarmup
    hypers = dict(max_gradient_norm=0.5, momentum=0.5, nesterov=True, weight_decay=1e-3,
                  on_nonfinite="skip", patience=100,
                  learning_rate=CosineWithWarmup(peak=0.05, warmup=3, total=20))
    results = {}
    for mode in ("NUMBA", "JAX"):
        loss, (X, Y), (w, b) = regression(40)
        opt = downhill.build("adam", loss, mode=mode, monitor_gradients=True,
                             monitors=[("wmax", abs(w).max())])
        runs = [opt.minimize(downhill.Dataset([X, Y], batch_size=16, rng=1), max_updates=4,
                             **hypers)]
        shared = [pytensor.shared(X), pytensor.shared(Y)]
        runs.append(opt.minimize(downhill.Dataset(shared, batch_size=16, rng=2),
                                 max_updates=3, **hypers))
        runs.append(opt.minimize(lambda: [X[:8], Y[:8]], [X, Y], max_updates=2, patience=100))
        runs.append((opt.evaluate([X, Y]), opt.evaluate(downhill.Dataset(shared))))
        results[mode] = runs, w.get_value()
    (runs0, w0), (runs1, w1) = results["NUMBA"], results["JAX"]
    for pair0, pair1 in zip(runs0, runs1):
        for m0, m1 in zip(pair0, pair1):
            assert list(m1) == list(m0)
            for key in m0:
                np.testing.assert_allclose(m1[key], m0[key], rtol=1e-4, atol=1e-7)
    assert "grad(w) clipped" in runs0[0][0]
    np.testing.assert_allclose(w1, w0, rtol=1e-4, atol=1e-6)


@needs_jax
def test_skip_keeps_the_old_values_in_jax_mode(caplog):
    loss, (X, Y), (w, b) = regression(32)
    X = X.copy()
    X[16] = np.nan  # the second batch of 16 is not finite
    opt = downhill.build("rmsprop", loss, mode="JAX")
    seen = []
    with caplog.at_level(logging.WARNING, logger="downhill"):
        for train, _ in opt.iterate(downhill.Dataset([X, Y], batch_size=16, rng=None),
                                    downhill.Dataset([X[:16], Y[:16]]), max_updates=1,
                                    on_nonfinite="skip", learning_rate=0.01):
            seen.append(train)
    assert "skipped a non-finite step" in caplog.text
    assert np.isfinite(w.get_value()).all() and np.isfinite(b.get_value()).all()
    # the skipped batch is left out of the means: the loss is the first batch's
    assert np.isfinite(seen[0]["loss"])


# ----------------------------------------------------------------------
# generators, checkpoints, values on the device

@needs_jax
def test_esgd_generator_advances_is_saved_and_reseeds():
    loss, data, params = regression(48)
    opt = downhill.build("esgd", loss, mode="JAX")
    opt.minimize(data, batch_size=16, max_updates=1, learning_rate=0.01)
    first = opt.state_dict()["state"]["w_rng"]["generator"]["state"]["state"]
    opt.minimize(data, batch_size=16, max_updates=1, learning_rate=0.01)
    second = opt.state_dict()["state"]["w_rng"]["generator"]["state"]["state"]
    assert first != second  # the shared variable advances, every pass
    rng = next(v for v in opt.state_variables if v.name == "w_rng")
    assert isinstance(rng.get_value(), np.random.Generator)
    # a new seed starts the draws over: the same steps from the same state
    starts = []
    for _ in range(2):
        for p in params:
            p.set_value(np.zeros_like(p.get_value()))
        for v in opt.state_variables:
            if v.name.endswith("D_ewma"):
                v.set_value(np.zeros_like(v.get_value()))
        opt.minimize(downhill.Dataset(data, batch_size=16, rng=0), max_updates=2,
                     learning_rate=0.01, seed=7)
        starts.append([p.get_value() for p in params])
    for a, b in zip(*starts):
        np.testing.assert_array_equal(a, b)


@needs_jax
@pytest.mark.parametrize("algo", ["rmsprop", "esgd", "schedule_free_adamw", "lookahead"])
def test_checkpoint_and_resume_bit_for_bit_in_jax_mode(tmp_path, algo):
    def run(max_updates, **kwargs):
        loss, data, params = regression(48)
        opt = downhill.build(algo, loss, mode="JAX")
        opt.minimize(downhill.Dataset(data, batch_size=16, rng=3), max_updates=max_updates,
                     learning_rate=0.01, patience=100, **kwargs)
        return [p.get_value() for p in params], state_values(opt), opt

    straight, state, _ = run(6)
    path = tmp_path / "run.npz"
    run(3, checkpoint=path)
    resumed, resumed_state, opt = run(3, checkpoint=path, resume=True)
    assert opt._run.iteration == 6
    for a, b in zip(straight, resumed):
        np.testing.assert_array_equal(a, b)
    for key in state:
        np.testing.assert_array_equal(state[key], resumed_state[key])


@needs_jax
def test_values_stay_on_the_device_during_a_run_and_come_back_as_numpy():
    loss, data, (w, b) = regression(64)
    opt = downhill.build("adam", loss, mode="JAX")
    during = []
    # no implicit host-to-device copy: the values are placed once, explicitly,
    # and the batches are put on the device by downhill, not moved by jit
    with jax.transfer_guard_host_to_device("disallow"):
        for _ in opt.iterate(downhill.Dataset(data, batch_size=16, rng=0), max_updates=2,
                             devices=1, learning_rate=0.01):
            during.append([type(v.get_value(borrow=True)) for v in [w, b] + opt.state_variables
                           if v.name != "t"])
    assert all(issubclass(t, jax.Array) for types in during for t in types)
    for v in [w, b] + opt.state_variables:
        assert type(v.get_value()) is np.ndarray
    assert w.get_value().dtype == np.float32
    # and the next run, or another backend, starts from them
    opt.minimize(data, batch_size=16, max_updates=1, mode="NUMBA", learning_rate=0.01)


@needs_jax
def test_jax_compiles_no_copy_of_the_shared_values():
    # PyTensor's fgraph_to_python would keep a device copy of every shared
    # value in each compiled function's globals
    loss, data, (w, b) = regression(16)
    opt = downhill.build("sgd", loss, mode="JAX")
    opt.get_updates()
    step = opt._functions.step()[0]
    names = step.vm.jit_fn.__wrapped__.__globals__
    assert not [k for k, v in names.items() if isinstance(v, jax.Array)]


# ----------------------------------------------------------------------
# data parallel

@needs_jax
@pytest.mark.parametrize("algo", ["sgd", "rmsprop", "adam", "esgd"])
def test_four_devices_equal_one(algo, caplog):
    assert len(jax.devices()) >= 4, "tests/conftest.py sets XLA_FLAGS for 4 devices"
    results = {}
    for devices in (None, 4):
        loss, data, params = regression(70)  # batches of 16: the last, 6, does not split
        opt = downhill.build(algo, loss, mode="JAX", monitors=[("w0", params[0][0, 0])])
        spread = []
        with caplog.at_level(logging.INFO, logger="downhill"):
            for train, valid in opt.iterate(downhill.Dataset(data, batch_size=16, rng=1),
                                            downhill.Dataset(data, batch_size=32),
                                            max_updates=3, devices=devices,
                                            learning_rate=0.01, patience=100):
                spread.append(len(params[0].get_value(borrow=True).sharding.device_set))
        results[devices] = train, valid, [p.get_value() for p in params], spread
    (t1, v1, p1, s1), (t4, v4, p4, s4) = results[None], results[4]
    assert s1 == [1, 1, 1] and s4 == [4, 4, 4]  # replicated over the mesh
    assert "a batch of 6 samples does not split over 4 devices" in caplog.text
    for key in t1:
        np.testing.assert_allclose(t4[key], t1[key], rtol=1e-5)
        np.testing.assert_allclose(v4[key], v1[key], rtol=1e-5)
    for a, b in zip(p4, p1):
        assert a.dtype == np.float32
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


@needs_jax
def test_devices_given_as_a_list_and_the_batch_is_sharded():
    devices = jax.devices()[:2]
    loss, data, (w, b) = regression(32)
    opt = downhill.build("sgd", loss, mode="JAX")
    opt.get_updates()
    opt._functions.use_devices(downhill.compiled.Functions.check_devices(devices, "JAX"))
    placed = opt._functions.runtime.place_batch(data)
    assert [a.sharding.shard_shape(a.shape) for a in placed] == [(16, 5), (16, 2)]
    opt.minimize(data, batch_size=16, max_updates=1, devices=devices)
    assert type(w.get_value()) is np.ndarray


@needs_jax
def test_devices_errors():
    loss, data, params = regression(16)
    opt = downhill.build("sgd", loss)
    with pytest.raises(ValueError, match=r"devices=2 needs mode='JAX'"):
        opt.iterate(data, devices=2)
    with pytest.raises(ValueError, match="positive"):
        opt.iterate(data, devices=0, mode="JAX")
    with pytest.raises(ValueError, match=r"devices=99, but JAX sees \d+.*XLA_FLAGS"):
        opt.iterate(data, devices=99, mode="JAX")
    with pytest.raises(ValueError, match="not one of jax.devices"):
        opt.iterate(data, devices=["cpu:0"], mode="JAX")
    assert opt._mode is None  # a refused call changed nothing


@needs_jax
def test_cli_devices_runs_sharded_and_matches_numba():
    from click.testing import CliRunner

    from downhill.cli import cli
    outputs = []
    for extra in ([], ["--devices", "4"]):
        result = CliRunner().invoke(cli, ["-q", "run", "factorization", "--max-updates", "3",
                                          "--json"] + extra)
        assert result.exit_code == 0, result.output
        outputs.append(json.loads(result.stdout))
    assert outputs[1]["valid"]["loss"] == pytest.approx(outputs[0]["valid"]["loss"], rel=1e-5)
    result = CliRunner().invoke(cli, ["run", "factorization", "--devices", "99"])
    assert result.exit_code == 2 and "Invalid value for '--devices'" in result.stderr


def test_without_jax_devices_says_what_to_install():
    code = ("import sys; sys.modules['jax'] = None\n"
            "import downhill\n"
            "from downhill import jaxmode\n"
            "try:\n"
            "    jaxmode.check_devices(2)\n"
            "except ValueError as e:\n"
            "    print(e)\n")
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "needs jax: pip install 'downhill[jax]'" in out.stdout


@pytest.mark.parametrize("mode", ["NUMBA", pytest.param("JAX", marks=needs_jax)])
def test_out_of_core_data_as_the_scaling_page_shows(tmp_path, mode):
    # a callable reading windows of a memory-mapped array, and a memory-mapped
    # validation set read in order, without a shuffled copy
    rng = np.random.default_rng(0)
    X = rng.normal(size=(512, 3)).astype("float32")
    Y = (X @ np.array([1.0, -2.0, 0.5], "float32")).astype("float32")
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "Y.npy", Y)
    Xm, Ym = np.load(tmp_path / "X.npy", mmap_mode="r"), np.load(tmp_path / "Y.npy", mmap_mode="r")
    windows = np.random.default_rng(1)

    def batch(size=32):
        start = windows.integers(len(Xm) - size)
        return [Xm[start:start + size], Ym[start:start + size]]

    valid = downhill.Dataset([Xm, Ym], batch_size=128).in_order()
    assert all(np.shares_memory(b[0], Xm) for b in valid)  # views of the mapping, not copies
    w = pytensor.shared(np.zeros(3, "float32"), name="w")
    x, y = pt.matrix("x", dtype="float32"), pt.vector("y", dtype="float32")
    opt = downhill.build("adam", ((x @ w - y) ** 2).mean(), mode=mode)
    _, monitors = opt.minimize(downhill.Dataset(batch, iteration_size=20), valid,
                               learning_rate=0.05, max_updates=10, patience=100)
    assert monitors["loss"] < 0.05


# ----------------------------------------------------------------------
# graph schedules (see test_hypergraph.py for the other modes)

def _schedules():
    from downhill.schedules import (Constant, CosineWithWarmup, ExponentialDecay, Linear,
                                    Sequence, StepDecay)
    return [Constant(0.03), Linear(0.0, 0.05, steps=7), StepDecay(0.05, 0.4, every=3),
            ExponentialDecay(0.05, halflife=5.5, min_value=0.004),
            CosineWithWarmup(0.06, warmup=4, total=17, final=0.002),
            Sequence([Linear(0.0, 0.05, 5), ExponentialDecay(0.05, 7.0), Constant(0.01)],
                     [5, 14])]


@needs_jax
@pytest.mark.parametrize("index", range(6))
def test_graph_schedules_match_python_in_jax_mode(index):
    from downhill.schedules import Linear
    schedule = _schedules()[index]
    finals = []
    for lr in (schedule, lambda n: schedule(n)):
        loss, data, params = regression(48, dtype="float64")
        opt = downhill.build("rmsprop", loss, mode="JAX")
        opt.minimize(downhill.Dataset(data, batch_size=8, rng=1), max_updates=3, patience=100,
                     learning_rate=lr, momentum=Linear(0.0, 0.8, 10), rms_halflife=7.0)
        finals.append([p.get_value() for p in params])
        assert opt._settings.count() == 18
    for a, b in zip(*finals):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-300)
    # the value itself, at every update count, to rounding
    loss, data, params = regression(8, dtype="float64")
    opt = downhill.build("sgd", loss, mode="JAX")
    opt.get_updates(learning_rate=schedule)
    fn = pytensor.function([], opt._settings.graph_value("learning_rate"), mode="JAX")
    values = []
    for n in range(40):
        opt._settings.set_count(n)
        values.append(float(fn()))
    want = [schedule(n) for n in range(40)]
    np.testing.assert_allclose(values, want, rtol=4e-16, atol=4e-16 * max(want))


@needs_jax
def test_a_graph_schedule_over_four_devices_resumes_bit_for_bit(tmp_path):
    from downhill.schedules import CosineWithWarmup, Linear
    hypers = dict(learning_rate=CosineWithWarmup(0.05, 3, 20), momentum=Linear(0.2, 0.8, 9),
                  patience=100, validate_every=1)

    def run(max_updates, devices, **kwargs):
        loss, data, params = regression(64)
        opt = downhill.build("adam", loss, mode="JAX")
        opt.minimize(downhill.Dataset(data, batch_size=16, rng=3), max_updates=max_updates,
                     devices=devices, **hypers, **kwargs)
        return [p.get_value() for p in params], opt

    one, _ = run(4, None)
    four, opt = run(4, 4)
    assert opt._settings.count() == 16
    assert opt.learning_rate.get_value() == pytest.approx(hypers["learning_rate"](15), rel=1e-6)
    for a, b in zip(one, four):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    path = tmp_path / "run.npz"
    run(2, 4, checkpoint=path)
    resumed, opt = run(2, 4, checkpoint=path, resume=True)
    for a, b in zip(four, resumed):
        np.testing.assert_array_equal(a, b)
