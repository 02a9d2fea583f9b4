"""What a run does when it goes wrong or is asked something wrong.

An overflowing step (finite loss and gradient, non-finite new values) is
never applied under ``'skip'`` and never checkpointed; an interrupt at any
update resumes bit for bit; a finished run stays finished; a bad batch
size or axis, bad batches from a callable and a mode of the wrong kind are
refused at the call (unusable checkpoint paths: test_checkpoint_path_call.py);
``downhill.minimize`` takes a seed for shuffling arrays.
"""

import contextlib
import itertools
import logging
import os
import signal
import subprocess
import sys

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

import downhill
from downhill import checkpoint


def regression(n=64, seed=0):
    r = np.random.default_rng(seed)
    X = r.normal(size=(n, 3))
    y = X @ np.array([1.0, -2.0, 0.5]) + 0.3
    w = pytensor.shared(np.zeros(3), name="w")
    b = pytensor.shared(np.asarray(0.0), name="b")
    x = pt.matrix("x")
    t = pt.vector("t")
    return ((x @ w + b - t) ** 2).mean(), (w, b), X, y


# ----------------------------------------------------------------------
# a step that overflows with a finite loss and gradient


def overflowing():
    """A linear loss, finite with a gradient of 1. With SGD and learning_rate=1e308
    the second step overflows (w = -inf) while its loss (-1e308) is finite."""
    w = pytensor.shared(np.zeros(1), name="w")
    return downhill.build("sgd", (w * 1.0).sum()), w


@pytest.mark.parametrize("policy", ["raise", "stop", "skip"])
def test_an_overflowing_step_is_never_checkpointed(tmp_path, policy, caplog):
    path = tmp_path / "run.npz"
    opt, w = overflowing()
    settings = dict(learning_rate=1e308, validate_every=100, patience=1000,
                    checkpoint=path, checkpoint_every=1, on_nonfinite=policy, max_skips=2)
    with caplog.at_level(logging.ERROR, logger="downhill"):
        if policy == "stop":
            opt.minimize(None, max_updates=5, **settings)
            assert any("'w' is not finite" in r.getMessage() for r in caplog.records)
        else:
            with pytest.raises(FloatingPointError) as error:
                opt.minimize(None, max_updates=5, **settings)
            if policy == "raise":
                assert "'w' is not finite after update 2" in str(error.value)
    assert np.isfinite(w.get_value()).all()
    saved = checkpoint.read(path)[1]
    # the last good state: after the first step (w = -1e308)
    np.testing.assert_array_equal(saved["params"]["w"], [-1e308])
    if policy == "skip":   # the later steps were skipped, not applied
        assert saved["counters"]["updates"] == 3 and saved["progress"]["skips"] == 2
    # a later resume works: the file is usable
    again, w2 = overflowing()
    again.minimize(None, max_updates=1, checkpoint=path, resume=True, learning_rate=1e-3)
    assert np.isfinite(w2.get_value()).all()


OVERFLOW = pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")


def state_overflowing():
    """ADAGRAD on a linear loss with gradient 1e160: the accumulated g * g
    overflows to inf while the step g / sqrt(inf) = 0 keeps w finite."""
    w = pytensor.shared(np.ones(2), name="w")
    return downhill.build("adagrad", (w * 1e160).sum()), w


@OVERFLOW  # PyTensor's constant folding of 1e160 ** 2
def test_skip_discards_a_step_whose_state_overflows_though_its_parameter_does_not():
    opt, w = state_overflowing()
    opt.minimize(None, max_updates=1, learning_rate=0.1, on_nonfinite="skip",
                 max_skips=5, validate_every=100)
    np.testing.assert_array_equal(w.get_value(), np.ones(2))
    np.testing.assert_array_equal(opt.state_dict()["state"]["w_g2_acc"], np.zeros(2))


@OVERFLOW
@pytest.mark.parametrize("policy", ["raise", "stop"])
def test_a_state_that_overflows_is_detected_by_raise_and_stop(tmp_path, policy, caplog):
    path = tmp_path / "run.npz"
    opt, w = state_overflowing()
    settings = dict(learning_rate=0.1, on_nonfinite=policy, validate_every=100,
                    checkpoint=path, checkpoint_every=1)
    with caplog.at_level(logging.ERROR, logger="downhill"):
        if policy == "raise":
            with pytest.raises(FloatingPointError, match="'w_g2_acc' is not finite"):
                opt.minimize(None, max_updates=3, **settings)
        else:
            opt.minimize(None, max_updates=3, **settings)
            assert any("'w_g2_acc' is not finite" in r.getMessage() for r in caplog.records)
    assert not path.exists()      # no good state to save after the first step
    np.testing.assert_array_equal(w.get_value(), np.ones(2))   # the best, restored


# ----------------------------------------------------------------------
# an interrupt (a real SIGINT) at any update resumes bit for bit


def interrupting_at(update):
    """A learning-rate schedule that sends this process SIGINT before ``update``."""
    def schedule(n):
        if n == update:
            os.kill(os.getpid(), signal.SIGINT)
        return 0.01 / (1 + n / 50)
    return schedule


def resumable():
    loss, params, X, y = regression(n=80)
    opt = downhill.build("rmsprop", loss, monitors={"w0": params[0][0]})
    train = downhill.Dataset([X, y], batch_size=16, rng=7, name="train")  # 5 batches
    valid = downhill.Dataset([X, y], batch_size=40, rng=8, name="valid")
    return opt, params, train, valid


SETTINGS = dict(momentum=0.5, validate_every=2, patience=100)


@pytest.mark.usefixtures("default_sigint")
@pytest.mark.parametrize("update", [1, 4, 7, 9, 23])
def test_a_sigint_at_any_update_resumes_bit_for_bit(tmp_path, update):
    # SIGINT comes as update+1 begins (the schedule is evaluated before it):
    # it is held until that step and its bookkeeping are done
    opt, params, train, valid = resumable()
    straight = list(opt.iterate(train, valid, max_updates=6, learning_rate=interrupting_at(-1),
                                **SETTINGS))
    final = opt.state_dict(datasets={"train": train, "valid": valid})

    path = tmp_path / "run.npz"
    first, _, train1, valid1 = resumable()
    part1 = list(first.iterate(train1, valid1, max_updates=6, checkpoint=path,
                               learning_rate=interrupting_at(update), **SETTINGS))
    assert first._run.interrupted                 # ended by the interrupt, quietly
    saved = checkpoint.read(path)[1]
    # the state after the last whole step: updates done, batches of the iteration
    done, batches = saved["counters"]["iteration"], saved["progress"]["batches"]
    assert saved["counters"]["updates"] == update + 1 == 5 * done + batches
    assert 0 < batches <= 5 and done == len(part1) < 6

    second, params2, train2, valid2 = resumable()
    part2 = list(second.iterate(train2, valid2, max_updates=6 - len(part1), checkpoint=path,
                                resume=True, learning_rate=interrupting_at(-1), **SETTINGS))
    assert part1 + part2 == straight         # the monitors of every iteration, too
    resumed = second.state_dict(datasets={"train": train2, "valid": valid2})
    for table in ("params", "state"):
        for name, value in final[table].items():
            assert resumed[table][name].tobytes() == value.tobytes(), name
    assert resumed["counters"] == final["counters"]
    assert resumed["datasets"]["train"]["rng"] == final["datasets"]["train"]["rng"]
    assert resumed["datasets"]["train"]["position"] == final["datasets"]["train"]["position"]


@contextlib.contextmanager
def sigint_from_a_thread(opt, update):
    """A thread that sends this process SIGINT once ``opt`` has counted ``update``
    updates: a real Ctrl-C, landing wherever the main thread then is (inside a
    compiled step, the bookkeeping, a validation), with no Python schedule.

    A whole run takes a few milliseconds, less than the interpreter's switch
    interval (5 ms): the watcher would often not run before the run ends. So
    the interval is 10 us while the block runs."""
    import threading
    import time

    stop = threading.Event()

    def watch():
        while not stop.is_set():
            if opt._run.updates >= update:
                os.kill(os.getpid(), signal.SIGINT)
                return
            time.sleep(1e-5)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        sys.setswitchinterval(interval)


GRAPH_SETTINGS = dict(validate_every=2, patience=1000)


def graph_schedules():
    from downhill.schedules import CosineWithWarmup, Linear, Sequence
    return dict(learning_rate=CosineWithWarmup(0.02, warmup=10, total=150, final=1e-3),
                momentum=Linear(0.0, 0.8, steps=40),
                rms_halflife=Sequence([Linear(2.0, 14.0, 30), Linear(14.0, 5.0, 60)], [30]))


@pytest.mark.usefixtures("default_sigint")
@pytest.mark.parametrize("mode", ["NUMBA", "JAX"])
@pytest.mark.parametrize("update", [3, 37, 91])
def test_a_sigint_with_graph_schedules_resumes_bit_for_bit(tmp_path, mode, update):
    # the schedules are computed by the step from the update counter, which
    # the checkpoint saves: no Python schedule runs, the SIGINT comes from outside
    if mode == "JAX":
        pytest.importorskip("jax")
    iterations = 200  # 1000 updates: the interrupt lands well inside the run

    settings = dict(graph_schedules(), mode=mode, **GRAPH_SETTINGS)
    opt, params, train, valid = resumable()
    opt.minimize(train, valid, max_updates=iterations, **settings)
    final = opt.state_dict(datasets={"train": train, "valid": valid})
    assert final["counters"]["updates"] == 5 * iterations

    path = tmp_path / "run.npz"
    first, _, train1, valid1 = resumable()
    with sigint_from_a_thread(first, update):
        first.minimize(train1, valid1, max_updates=iterations, checkpoint=path, **settings)
    assert first._run.interrupted
    saved = checkpoint.read(path)[1]
    done = saved["counters"]["updates"]
    assert update <= done < 5 * iterations
    assert done == 5 * saved["counters"]["iteration"] + saved["progress"]["batches"]
    assert first.update_count == done  # the graph's counter, saved as counters.updates

    second, _, train2, valid2 = resumable()
    second.minimize(train2, valid2, max_updates=iterations - saved["counters"]["iteration"],
                    checkpoint=path, resume=True, **settings)
    resumed = second.state_dict(datasets={"train": train2, "valid": valid2})
    for table in ("params", "state"):
        for name, value in final[table].items():
            assert resumed[table][name].tobytes() == value.tobytes(), name
    assert resumed["counters"] == final["counters"]
    assert resumed["hyperparameters"] == final["hyperparameters"]  # the last step's values
    assert resumed["early_stopping"]["best_loss"] == final["early_stopping"]["best_loss"]


def raising_at(update, error):
    """A learning-rate schedule (the caller's code) that raises ``error`` the first
    time it is asked for ``update``."""
    raised = []

    def schedule(n):
        if n == update and not raised:
            raised.append(n)
            raise error
        return 0.01 / (1 + n / 50)
    return schedule


def sgd_run(n=64):
    loss, params, X, y = regression(n=n)
    opt = downhill.build("sgd", loss, monitors={"w0": params[0][0]})
    train = downhill.Dataset([X, y], batch_size=16, rng=7, name="train")  # 4 batches
    valid = downhill.Dataset([X, y], batch_size=32, rng=8, name="valid")
    return opt, params, train, valid


@pytest.mark.parametrize("error", [KeyboardInterrupt, ZeroDivisionError])
@pytest.mark.parametrize("update", [4, 5, 13])
def test_an_exception_from_a_schedule_leaves_a_checkpoint_that_resumes_bit_for_bit(
        tmp_path, update, error):
    # the schedule runs before a step: whatever it raises, the batch that
    # step would have used must still be the next one after a resume
    opt, params, train, valid = sgd_run()
    straight = list(opt.iterate(train, valid, max_updates=6, learning_rate=raising_at(-1, None),
                                **SETTINGS))
    final = opt.state_dict(datasets={"train": train, "valid": valid})

    path = tmp_path / "run.npz"
    first, _, train1, valid1 = sgd_run()
    part1 = []
    expected = KeyboardInterrupt if error is KeyboardInterrupt else ValueError
    try:
        for pair in first.iterate(train1, valid1, max_updates=6, checkpoint=path,
                                  learning_rate=raising_at(update, error), **SETTINGS):
            part1.append(pair)
    except expected:
        assert error is not KeyboardInterrupt  # a KeyboardInterrupt ends the loop quietly
    assert first._run.interrupted == (error is KeyboardInterrupt)
    saved = checkpoint.read(path)[1]
    assert saved["counters"]["updates"] == update

    second, _, train2, valid2 = sgd_run()
    part2 = list(second.iterate(train2, valid2, max_updates=6 - len(part1), checkpoint=path,
                                resume=True, learning_rate=raising_at(-1, None), **SETTINGS))
    assert part1 + part2 == straight
    resumed = second.state_dict(datasets={"train": train2, "valid": valid2})
    for table in ("params", "state"):
        for name, value in final[table].items():
            assert resumed[table][name].tobytes() == value.tobytes(), name
    assert resumed["counters"] == final["counters"]


def test_a_step_that_fails_after_its_batch_was_drawn_writes_no_checkpoint(tmp_path, caplog):
    # the batch is gone from the data, its step not done: a checkpoint now
    # would resume past it, so the last one written stays
    loss, (w, b), X, y = regression()
    calls = {"n": 0}

    def batches():
        calls["n"] += 1
        if calls["n"] == 7:
            return [X[:8, :2], y[:8]]   # the step refuses a matrix of 2 columns
        return [X[:8], y[:8]]

    opt = downhill.build("sgd", loss)
    path = tmp_path / "run.npz"
    with caplog.at_level(logging.ERROR, logger="downhill"), pytest.raises(ValueError):
        opt.minimize(downhill.Dataset(batches, iteration_size=4), valid=[X, y],
                     checkpoint=path, checkpoint_every=1, learning_rate=0.05,
                     validate_every=1, patience=100)
    saved = checkpoint.read(path)[1]
    assert saved["counters"]["updates"] == 4 and saved["progress"]["batches"] == 0
    assert any("not written" in r.getMessage() and "would skip that batch" in r.getMessage()
               for r in caplog.records)


def test_a_schedule_given_to_the_constructor_survives_a_resume(tmp_path):
    from downhill.schedules import StepDecay

    def run(iterations, path=None, resume=False):
        loss, (w, b), X, y = regression()
        opt = downhill.build("sgd", loss, learning_rate=StepDecay(0.05, 0.5, 10))
        opt.minimize(downhill.Dataset([X, y], batch_size=16, rng=1), max_updates=iterations,
                     validate_every=100, checkpoint=path, resume=resume)
        return opt, w.get_value()

    _, straight = run(6)
    path = tmp_path / "run.npz"
    run(3, path)
    opt, resumed = run(3, path, resume=True)
    assert isinstance(opt._values["learning_rate"], StepDecay)   # not its last value
    assert resumed.tobytes() == straight.tobytes()


@pytest.mark.usefixtures("default_sigint")
def test_a_sigint_in_a_callable_dataset_ends_the_loop_there(tmp_path):
    # a callable is the caller's code: the interrupt raises in it at once
    loss, (w, b), X, y = regression()
    calls = {"n": 0}

    def batches():
        calls["n"] += 1
        if calls["n"] == 6:
            os.kill(os.getpid(), signal.SIGINT)
        return [X[:8], y[:8]]

    opt = downhill.build("sgd", loss)
    path = tmp_path / "run.npz"
    opt.minimize(downhill.Dataset(batches, iteration_size=4), valid=[X, y], checkpoint=path,
                 learning_rate=0.05, validate_every=1, patience=100)
    saved = checkpoint.read(path)[1]
    assert saved["counters"]["updates"] == 5 and saved["progress"]["batches"] == 1
    assert calls["n"] == 6


@pytest.mark.usefixtures("default_sigint")
@pytest.mark.parametrize("iteration", [1, 3])
def test_a_sigint_between_two_iterations_of_minimize_ends_its_run(tmp_path, iteration):
    # minimize's own loop body (it drives iterate) is the library's code, held:
    # a Ctrl-C there ends the run quietly, with the checkpoint written. It once
    # raised at once there, out of minimize (CI: a late SIGINT ended pytest).
    # The SIGINT is sent from a trace function as that body begins.
    from downhill import training

    opt, params, train, valid = resumable()
    body = training.minimize.__code__
    seen = {"n": 0}

    def trace(frame, event, arg):
        if frame.f_code is not body:
            return None
        if event == "line" and frame.f_lineno == PASS_LINE:
            seen["n"] += 1
            if seen["n"] == iteration:
                os.kill(os.getpid(), signal.SIGINT)
        return trace

    path = tmp_path / "run.npz"
    previous = sys.gettrace()
    sys.settrace(trace)
    try:
        opt.minimize(train, valid, max_updates=6, checkpoint=path, learning_rate=0.01,
                     **SETTINGS)
    finally:
        sys.settrace(previous)
    assert opt._run.interrupted
    assert checkpoint.read(path)[1]["counters"]["updates"] == 5 * iteration
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def _pass_line():
    """The line of minimize's loop body (``pass``), for the trace above."""
    import inspect

    from downhill import training

    lines, start = inspect.getsourcelines(training.minimize)
    (line,) = [start + i for i, text in enumerate(lines) if text.strip() == "pass"]
    return line


PASS_LINE = _pass_line()


def test_the_validation_monitors_yielded_change_with_each_validation_only():
    # one copy per validation (0.4 yielded the same dict until the next)
    opt, params, train, valid = resumable()
    pairs = list(opt.iterate(train, valid, max_updates=6, learning_rate=0.01, **SETTINGS))
    yielded = [v for _, v in pairs]
    # validate_every=2: validations before iterations 1, 3 and 5
    assert len({id(v) for v in yielded}) == 3
    assert all(yielded[i] is yielded[i + 1] for i in (0, 2, 4))
    assert yielded[1] is not yielded[2] and yielded[1]["loss"] != yielded[2]["loss"]
    assert yielded[-1] is not opt._run.last_validation   # a copy: the run's own stays


@pytest.mark.usefixtures("default_sigint")
def test_a_sigint_outside_the_library_raises_in_the_callers_code():
    # between two iterations of iterate() the caller's own code runs, unheld
    loss, (w, b), X, y = regression()
    opt = downhill.build("sgd", loss)
    seen = []
    with pytest.raises(KeyboardInterrupt):
        for train, _ in opt.iterate([X, y], learning_rate=0.01, max_updates=5):
            seen.append(train)
            os.kill(os.getpid(), signal.SIGINT)
            pytest.fail("the interrupt did not raise in the caller's loop")
    assert len(seen) == 1
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_program_that_ignores_sigint_keeps_ignoring_it():
    # e.g. a script's background job (`cmd &`), which inherits SIGINT ignored
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        opt, params, train, valid = resumable()
        opt.minimize(train, valid, max_updates=2, learning_rate=interrupting_at(3), **SETTINGS)
        assert not opt._run.interrupted and opt._run.updates == 10
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


def test_the_sigint_tests_pass_where_sigint_was_inherited_ignored():
    # the README's test command run as a background job: these tests failed
    # there, because they relied on the disposition the process inherited
    here = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [os.path.dirname(here)] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    # SIGINT ignored, then pytest exec'd: the disposition survives the exec
    # (no preexec_fn, which would fork this multithreaded process)
    ignore_then_exec = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); "
                        "os.execv(sys.executable, [sys.executable] + sys.argv[1:])")
    done = subprocess.run(
        [sys.executable, "-c", ignore_then_exec, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "-k", "sigint_at_any_update and 23 or sigint_in_a_callable or sigint_outside",
         os.path.join(here, "test_run_faults.py")],
        capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "3 passed" in done.stdout


# ----------------------------------------------------------------------
# a finished run stays finished


def test_relaunching_a_run_stopped_by_patience_trains_no_more(tmp_path, caplog):
    path = tmp_path / "run.npz"
    # no validation after the first improves by half: patience ends the run
    settings = dict(learning_rate=1e-3, min_improvement=0.5, validate_every=2, patience=1,
                    checkpoint=path)

    def launch(**more):
        loss, (w, b), X, y = regression()
        opt = downhill.build("sgd", loss)
        opt.minimize([X, y], resume=True, **dict(settings, **more))
        return checkpoint.read(path)[1]["counters"]["iteration"]

    first = launch()
    assert first == 4          # validations at 0, 2, 4: no improvement after the first
    with caplog.at_level(logging.WARNING, logger="downhill"):
        assert launch() == first
        assert launch() == first
    assert any("already ended" in r.getMessage() for r in caplog.records)
    # a larger patience continues the run
    assert launch(patience=3) == first + 4


# ----------------------------------------------------------------------
# refused at the call


@pytest.mark.parametrize("size", ["16", 2.5, float("nan"), True])
def test_a_bad_batch_size_is_refused_naming_it(size):
    loss, (w, b), X, y = regression()
    opt = downhill.build("sgd", loss)
    with pytest.raises(ValueError, match="invalid batch_size"):
        opt.iterate([X, y], batch_size=size)
    with pytest.raises(ValueError, match="invalid batch_size"):
        downhill.Dataset([X, y], batch_size=size)


def test_numpy_integers_are_counts_and_batch_sizes():
    loss, (w, b), X, y = regression()
    opt = downhill.build("sgd", loss)
    results = list(opt.iterate([X, y], max_updates=np.int64(3), batch_size=np.int32(16),
                               checkpoint_every=np.int64(0), learning_rate=0.01))
    assert len(results) == 3 and opt._run.updates == 12


def test_a_bad_axis_is_refused():
    loss, (w, b), X, y = regression()
    with pytest.raises(ValueError, match="invalid axis: '0'"):
        downhill.Dataset([X, y], axis="0")


@pytest.mark.parametrize("batch,message", [
    (lambda X, y: [X[:8, 0], y[:8]], r"batch input 0 has 1 dimension\(s\) \(shape \(8,\)\), "
                                     r"but input 0 \(x\) of the loss is 2-d"),
    (lambda X, y: [X[:8], 1.5], r"the callable returned 1.5 \(type float\) as input 1, which "
                                r"is not an array: .*numpy.asarray\(1.5\)"),
    (lambda X, y: [X[:8], "y"], r"returned 'y' \(type str\) as input 1, which is not"),
    (lambda X, y: [X[:0], y[:0]], "the batch is empty"),
    (lambda X, y: [X[:8] + 1j, y[:8]], "dtype complex128, which cannot become float64"),
])
def test_bad_callable_batches_are_refused(batch, message):
    loss, (w, b), X, y = regression()
    opt = downhill.build("sgd", loss)
    with pytest.raises(ValueError, match=message):
        opt.minimize(lambda: batch(X, y), valid=[X, y], max_updates=1, learning_rate=0.01)


@pytest.mark.parametrize("mode", [5, object()])
def test_a_mode_of_the_wrong_kind_is_refused(mode):
    loss, (w, b), X, y = regression()
    with pytest.raises(ValueError, match="unknown compile mode"):
        downhill.build("sgd", loss, mode=mode)
    opt = downhill.build("sgd", loss)
    with pytest.raises(ValueError, match="unknown compile mode"):
        opt.iterate([X, y], mode=mode)


def test_cli_resume_from_another_problem_blames_the_checkpoint(tmp_path):
    from click.testing import CliRunner

    from downhill.cli import cli
    path = str(tmp_path / "run.npz")
    run = CliRunner().invoke
    first = run(cli, ["run", "rosenbrock", "--max-updates", "1", "--checkpoint", path])
    assert first.exit_code == 0, first.output
    other = run(cli, ["run", "rosenbrock", "--dims", "5", "--max-updates", "1",
                       "--checkpoint", path, "--resume"])
    assert other.exit_code == 2
    assert "Invalid value for '--resume'" in other.output
    assert "hyperparameters" not in other.output


# ----------------------------------------------------------------------
# seeds


def test_minimize_with_a_seed_is_reproducible():
    def once(seed):
        loss, (w, b), X, y = regression()
        downhill.minimize(loss, [X, y], batch_size=8, rng=seed, max_updates=3,
                          learning_rate=0.01, valid_batches=2)
        return w.get_value()

    np.testing.assert_array_equal(once(5), once(5))
    assert not np.array_equal(once(5), once(6))


def test_minimize_with_a_seed_equals_a_dataset_with_that_seed():
    loss, (w, b), X, y = regression()
    downhill.minimize(loss, [X, y], batch_size=8, rng=3, max_updates=2, algo="sgd",
                      learning_rate=0.01)
    seeded = w.get_value().copy()
    loss, (w, b), X, y = regression()
    opt = downhill.build("sgd", loss)
    opt.minimize(downhill.Dataset([X, y], batch_size=8, rng=3),
                 downhill.Dataset([X, y], batch_size=8).in_order(), max_updates=2,
                 learning_rate=0.01)
    assert w.get_value().tobytes() == seeded.tobytes()
    with pytest.raises(ValueError, match="rng must be"):
        downhill.minimize(loss, [X, y], rng="x")


def test_a_callables_batch_may_hold_arrays_of_different_lengths():
    # the loss decides what fits; the monitors weigh each batch by its first array
    x, idx = pt.matrix("x"), pt.ivector("idx")
    w = pytensor.shared(np.ones(3), name="w")
    loss = ((x @ w)[idx] ** 2).mean()
    r = np.random.default_rng(1)
    blocks = [(r.normal(size=(96, 3)), r.integers(96, size=20).astype("int32")),
              (r.normal(size=(50, 3)), r.integers(50, size=10).astype("int32"))]
    calls = itertools.count()

    def batch():
        X, i = blocks[next(calls) % 2]
        return [i, X]   # given in the inputs' order below: idx first

    opt = downhill.build("sgd", loss, inputs=[idx, x])
    got = opt.evaluate(downhill.Dataset(batch, iteration_size=2))["loss"]
    each = [float(((X @ np.ones(3))[i] ** 2).mean()) for X, i in blocks]
    assert got == pytest.approx((20 * each[0] + 10 * each[1]) / 30, rel=1e-12)
    opt.minimize(batch, valid=batch, max_updates=3, learning_rate=0.01)


@pytest.mark.parametrize("batches,message", [
    ([[1]], r"batch 0 holds 1 \(type int\) as input 0, which is not an array: .*"
            r"numpy.asarray\(1\)"),
    ([[np.zeros(3)], [np.zeros(3), None]], r"batch 1 holds None \(type NoneType\) as input 1"),
    ([[np.zeros(3), {"a": 1}]], r"batch 0 holds \{'a': 1\} \(type dict\) as input 1"),
])
def test_a_list_of_batches_holding_a_non_array_is_refused_when_made(batches, message):
    # downhill 0.4 refused Dataset([[1]]) (its test_bad_input_type)
    with pytest.raises(ValueError, match=message):
        downhill.Dataset(batches)


def test_a_list_of_batches_that_does_not_fit_the_inputs_is_refused_before_training():
    loss, (w, b), X, y = regression()
    opt = downhill.build("sgd", loss)
    batches = [[X[:8], y[:8]], [X[8:16], y[8:16]], [X[16:24, 0], y[16:24]]]
    with pytest.raises(ValueError, match=r"batch input 0 has 1 dimension"):
        opt.minimize(batches, valid=[X, y], max_updates=1, learning_rate=0.01)
    np.testing.assert_array_equal(w.get_value(), np.zeros(3))   # nothing trained
