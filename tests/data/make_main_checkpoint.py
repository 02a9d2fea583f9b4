"""Write tests/data/main-d7a7d6d-rmsprop.npz: a checkpoint made by downhill before
schedules moved into the update graph (main at d7a7d6d), for
tests/test_hypergraph.py::test_a_checkpoint_of_the_previous_version_resumes.

    git archive d7a7d6d downhill | tar -x -C /tmp/old
    PYTHONPATH=/tmp/old python tests/data/make_main_checkpoint.py tests/data/main-d7a7d6d-rmsprop.npz

RMSProp with momentum and an ExponentialDecay learning rate (evaluated in
Python by that version), 3 iterations of 5 batches, on the regression of
``problem()`` below (the test builds the same one).
"""

import sys

import numpy as np
import pytensor
import pytensor.tensor as pt

import downhill
from downhill.schedules import ExponentialDecay


def problem():
    r = np.random.default_rng(3)
    X = r.normal(size=(80, 3))
    y = X @ np.array([1.0, -2.0, 0.5]) + 0.3
    w = pytensor.shared(np.zeros(3), name="w")
    b = pytensor.shared(np.asarray(0.0), name="b")
    x = pt.matrix("x")
    t = pt.vector("t")
    loss = ((x @ w + b - t) ** 2).mean()
    opt = downhill.build("rmsprop", loss)
    train = downhill.Dataset([X, y], batch_size=16, rng=7, name="train")
    valid = downhill.Dataset([X, y], batch_size=40, rng=8, name="valid")
    return opt, (w, b), train, valid


SETTINGS = dict(momentum=0.5, validate_every=1, patience=10, rms_halflife=5.0)

if __name__ == "__main__":
    opt, _, train, valid = problem()
    for _ in opt.iterate(train, valid, max_updates=3, checkpoint=sys.argv[1],
                         learning_rate=ExponentialDecay(0.01, halflife=7.0), **SETTINGS):
        pass
    print(downhill.__file__, opt.state_dict()["counters"])
