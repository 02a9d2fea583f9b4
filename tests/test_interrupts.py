"""Ctrl-C and SIGKILL at random points of a real training process.

A worker process (``fault_worker.py``) trains a run with checkpoints; the
test sends it a real SIGINT (or SIGKILL) at a random moment: while it
builds the optimizer, compiles, validates, steps, writes a checkpoint or
yields. Every Ctrl-C must end ``minimize`` quietly (no ``SystemError`` out
of a compiled Numba step, no traceback printed by the compiler), and the
run resumed from the file it left (in this process, with fresh datasets)
must end exactly where the uninterrupted run ends: parameters, state,
counters, early stopping and the datasets' shuffling, bit for bit.

``DOWNHILL_FAULT_TRIALS`` sets the number of SIGINT trials (default 6,
sized for a 2-core CI machine; a trial takes about two seconds).
"""

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import fault_worker
from downhill import checkpoint

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TRIALS = int(os.environ.get("DOWNHILL_FAULT_TRIALS", "6"))

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


class Worker:
    """The worker process, driven line by line; killed if it hangs."""

    def __init__(self, folder, log):
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(ROOT), str(HERE)] + [p for p in [env.get("PYTHONPATH")] if p])
        self.stderr = open(log, "w")
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "fault_worker.py"), str(folder)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr, text=True,
            env=env)
        self.watchdog = threading.Timer(300, self.proc.kill)
        self.watchdog.start()

    def line(self):
        text = self.proc.stdout.readline()
        assert text, "the worker died"
        return text.split()

    def trial(self, delay=None, sig=signal.SIGINT):
        """Run one trial; send ``sig`` ``delay`` seconds after it starts.

        Returns
        -------
        status : str or None
            The worker's report (None when killed).
        seconds : float
            How long the trial took.
        """
        ready, k = self.line()
        assert ready == "ready"
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        began = time.monotonic()
        if delay is not None:
            time.sleep(delay)
            self.proc.send_signal(sig)
        if sig == signal.SIGKILL and delay is not None:
            self.proc.wait()
            return None, time.monotonic() - began
        end, k2, *status = self.line()
        assert (end, k2) == ("end", k)
        return " ".join(status), time.monotonic() - began

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.flush()
            self.proc.wait(timeout=60)
        self.watchdog.cancel()
        self.stderr.close()


def run_to_the_end(opt, path=None, resume=False, iterations=fault_worker.ITERATIONS):
    train, valid = fault_worker.datasets()
    opt.minimize(train, valid, max_updates=iterations, checkpoint=path, resume=resume,
                 **fault_worker.settings())
    return opt.state_dict(datasets={"train": train, "valid": valid})


def assert_same(a, b, where="state"):
    """Equal nested states: arrays bit for bit, everything else ==."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"{where}: {sorted(a)} != {sorted(b)}"
        for key in a:
            assert_same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, np.ndarray):
        b = np.asarray(b)
        assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes(), \
            f"{where} differs"
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run's final state, and an optimizer to resume with."""
    folder = tmp_path_factory.mktemp("reference")
    final = run_to_the_end(fault_worker.optimizer(), folder / "run.npz")
    return final, fault_worker.optimizer(), checkpoint.read(folder / "run.npz")[1]


def resume_and_compare(reference, path):
    """Resume ``path`` to the end of the run; compare with the uninterrupted one.

    Returns whether the file was saved inside an iteration.
    """
    final, opt, _ = reference
    saved = checkpoint.read(path)[1]
    done = saved["counters"]["iteration"]
    inside = saved.get("progress", {}).get("batches", 0) > 0
    resumed = run_to_the_end(opt, path, resume=True,
                             iterations=fault_worker.ITERATIONS - done)
    assert_same(final, resumed, f"resumed from iteration {done}"
                f"{' (inside it)' if inside else ''}")
    return inside


def assert_quiet(log):
    text = Path(log).read_text()
    for bad in ("Traceback", "Exception ignored", "SystemError"):
        assert bad not in text, f"the worker printed {bad!r}:\n{text[-3000:]}"


def test_sigint_at_random_points_ends_quietly_and_resumes_bit_for_bit(tmp_path, reference):
    rand = random.Random(13)
    log = tmp_path / "stderr.txt"
    worker = Worker(tmp_path, log)
    statuses = []
    try:
        # an uninterrupted trial first: the worker's numbers equal this
        # process's, and its length spreads the interrupts over a trial
        status, length = worker.trial()
        assert status == "complete"
        assert_same(reference[2], checkpoint.read(tmp_path / "0.npz")[1], "the worker's run")
        for i in range(TRIALS):
            # stratified over the trial: building, compiling, training, the end
            delay = length * (i + rand.random()) / TRIALS
            statuses.append(worker.trial(delay)[0])
    finally:
        worker.close()
    assert_quiet(log)
    assert not [s for s in statuses if s.startswith("error")], statuses
    inside = 0
    for k, status in enumerate(statuses, start=1):
        path = tmp_path / f"{k}.npz"
        if status == "outside":
            # interrupted before the run began, or between its end and the
            # worker's return: the file is the finished run's, or none
            if not path.exists():
                continue
        inside += resume_and_compare(reference, path)
    print(f"{len(statuses)} SIGINT trials: {statuses}; {inside} saved inside an iteration")
    assert "interrupted" in statuses, statuses


def test_sigkill_at_a_random_point_resumes_bit_for_bit(tmp_path, reference):
    worker = Worker(tmp_path, tmp_path / "stderr.txt")
    try:
        _, length = worker.trial()      # uninterrupted: the length of a trial
        worker.trial(length * random.Random(14).uniform(0.5, 1.0), signal.SIGKILL)
    finally:
        worker.close()
    path = tmp_path / "1.npz"
    assert path.exists(), "the kill came before the first checkpoint"
    resume_and_compare(reference, path)     # from the last checkpoint_every one
