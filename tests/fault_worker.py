"""A training process for the fault tests: runs trials the test interrupts.

``python fault_worker.py FOLDER`` prints ``ready K`` and waits for a line
on stdin: ``go`` runs trial K (a fresh optimizer trained by ``minimize``
with a checkpoint at ``FOLDER/K.npz``), ``quit`` ends. The test sends a
real SIGINT (or SIGKILL) at a random moment of the trial. After it the
worker prints ``end K STATUS`` where STATUS is ``interrupted``
(``minimize`` returned after logging an interrupt), ``complete`` (it
returned without: the run was over), ``outside`` (the KeyboardInterrupt
came outside ``minimize``, e.g. while building the optimizer) or ``error
NAME`` (an exception escaped: a failure). Everything
else it writes goes to stderr, which the test checks for tracebacks.

The problem (:func:`optimizer`, :func:`datasets`, :func:`settings`) is shared
with the test, which trains the same run without interruption in its own
process and resumes every trial's checkpoint.
"""

import logging
import signal
import sys
import traceback

import numpy as np
import pytensor
import pytensor.tensor as pt

import downhill
from downhill.schedules import ExponentialDecay

#: Iterations of a whole run; 25 batches each.
ITERATIONS = 240


def settings():
    """The run's hyperparameters (a fresh schedule object each time)."""
    return dict(learning_rate=ExponentialDecay(2e-3, halflife=3000), momentum=0.9,
                validate_every=3, patience=1000, checkpoint_every=7)


def datasets():
    """Fresh training and validation datasets (the same seeds every time)."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 8))
    Y = X @ rng.normal(size=8) + 0.1 * rng.normal(size=400)
    train = downhill.Dataset([X, Y], batch_size=16, rng=1, name="train")
    valid = downhill.Dataset([X[:100], Y[:100]], batch_size=50, rng=2, name="valid")
    return train, valid


def optimizer():
    """A fresh optimizer: a linear regression, RMSProp with momentum."""
    x = pt.matrix("x")
    y = pt.vector("y")
    w = pytensor.shared(np.zeros(8), name="w")
    b = pytensor.shared(np.asarray(0.0), name="b")
    loss = ((x @ w + b - y) ** 2).mean()
    return downhill.build("rmsprop", loss, monitors={"w0": w[0]})


class _Interrupted(logging.Handler):
    """Remembers whether the loop logged that it was interrupted."""

    seen = False

    def emit(self, record):
        if record.getMessage().startswith("interrupted"):
            self.seen = True


def trial(path):
    opt = optimizer()
    train, valid = datasets()
    opt.minimize(train, valid, max_updates=ITERATIONS, checkpoint=path, **settings())


def main(folder):
    # SIGINT reaches the worker only during a trial: one meant for a trial
    # that has already ended must not end the worker
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    interrupted = _Interrupted()
    logger = logging.getLogger("downhill")
    logger.addHandler(interrupted)
    logger.setLevel(logging.INFO)
    k = 0
    while True:
        print(f"ready {k}", flush=True)
        if sys.stdin.readline().strip() != "go":
            return
        interrupted.seen = False
        signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            trial(f"{folder}/{k}.npz")
            status = "interrupted" if interrupted.seen else "complete"
        except KeyboardInterrupt:
            status = "outside"
        except BaseException as error:  # noqa: BLE001 - reported to the test
            status = f"error {type(error).__name__}"
            traceback.print_exc()
        finally:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        print(f"end {k} {status}", flush=True)
        k += 1


if __name__ == "__main__":
    main(sys.argv[1])
