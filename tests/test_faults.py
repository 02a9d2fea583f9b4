"""Faults during training: the best parameters stay, the optimizer stays usable.

The problem is built so that the validation loss first falls and then rises
(training targets ``w_train``, validation targets ``w_train / 2``): the best
validated parameters are neither the first nor the last, so restoring them
is visible. Each test records the parameters at every validation (with
``validate_every=1`` the loop validates the parameters it last yielded
after), works out the best one with the optimizer's rule, and compares bit
for bit.
"""

import math

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

import downhill

W_TRAIN = np.array([2.0, -1.0, 0.5])


class Batches:
    """A callable dataset: cycles through fixed batches; faults on call ``fault_at``."""

    def __init__(self, X, Y, size, fault_at=None, fault=RuntimeError, on_call=None):
        self.parts = [(X[i:i + size], Y[i:i + size]) for i in range(0, len(X), size)]
        self.calls = 0
        self.fault_at = fault_at
        self.fault = fault
        self.on_call = on_call

    def __call__(self):
        self.calls += 1
        if self.on_call is not None:
            self.on_call(self.calls)
        if self.calls == self.fault_at:
            raise self.fault(f"fault at call {self.calls}")
        return list(self.parts[(self.calls - 1) % len(self.parts)])


def make(algo, seed=0, n=48, **kwargs):
    rng = np.random.default_rng(seed)
    x = pt.matrix("x")
    y = pt.vector("y")
    w = pytensor.shared(np.zeros(3), name="w")
    loss = ((x @ w - y) ** 2).mean()
    X = rng.normal(size=(n, 3))
    Xv = rng.normal(size=(n, 3))
    opt = downhill.build(algo, loss, **kwargs)
    return opt, w, X, X @ W_TRAIN, Xv, Xv @ (W_TRAIN / 2)


def valid_loss(w, Xv, Yv):
    return float(((Xv @ w - Yv) ** 2).mean())


def best_of(snapshots, Xv, Yv, min_improvement=0.0):
    """The parameters the optimizer's early-stopping rule keeps."""
    best, kept = math.inf, None
    for w in snapshots:
        loss = valid_loss(w, Xv, Yv)
        if not math.isfinite(best) or best - loss > abs(best) * min_improvement:
            best, kept = loss, w
    return kept


HYPERS = {
    "rmsprop": dict(learning_rate=0.05, rms_halflife=5),
    "sgd": dict(learning_rate=0.02, momentum=0.8),
}


def state_values(opt):
    return {v.name: v.get_value().copy() for v in opt.state_variables}


def rmsprop_step(w, f, s, g, lr, gamma, eps):
    """Independent NumPy transcription of one RMSProp update (Graves 2013)."""
    f = gamma * f + (1 - gamma) * g
    s = gamma * s + (1 - gamma) * g * g
    return w - lr * g / np.sqrt(np.maximum(s - f * f, 0) + eps), f, s


def grad(w, X, Y):
    return 2 * X.T @ (X @ w - Y) / len(Y)


def check_continues(opt, algo, w, X, Y, Xv, Yv, best, state_before, compiled):
    """Parameters are the best, the state is not reset, and one more update from
    there matches the algorithm's formula without compiling anything."""
    np.testing.assert_array_equal(w.get_value(), best)
    state = state_values(opt)
    assert state.keys() == state_before.keys() and state
    for name in state:
        np.testing.assert_array_equal(state[name], state_before[name])
        assert np.abs(state[name]).max() > 0          # not reset
    g = grad(best, X, Y)
    hypers = HYPERS[algo]
    if algo == "rmsprop":
        gamma = float(opt.ewma.get_value())
        eps = float(opt.epsilon.get_value())
        want, _, _ = rmsprop_step(best, state["w_g1_ewma"], state["w_g2_ewma"], g,
                                  hypers["learning_rate"], gamma, eps)
    else:
        want = best + hypers["momentum"] * state["w_vel"] - hypers["learning_rate"] * g
    before = compiled[0]
    assert before > 0, "the counter must see the first run's compilations"
    it = opt.iterate([X, Y], [Xv, Yv], max_updates=1, batch_size=0, validate_every=1,
                     patience=100, **hypers)
    next(it)
    np.testing.assert_allclose(w.get_value(), want, rtol=1e-12, atol=1e-15)
    it.close()
    assert compiled[0] == before, "continuing compiled a new function"


@pytest.fixture
def compiled(monkeypatch):
    """Counts calls of pytensor.function."""
    count = [0]
    original = pytensor.function

    def counting(*args, **kwargs):
        count[0] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(pytensor, "function", counting)
    return count


def run_until_fault(opt, w, X, Y, Xv, Yv, algo, fault_at, fault, record):
    """Train on a callable dataset that faults on call ``fault_at``.

    Fills ``record``: ``snapshots``, the parameters at each validation;
    ``state``, the state variables when the faulting call came (after every
    update done so far); ``yielded``, the iterations the loop yielded.
    """
    record.update(snapshots=[w.get_value().copy()], yielded=0)

    def on_call(call):
        if call == fault_at:
            record["state"] = state_values(opt)

    train = downhill.Dataset(Batches(X, Y, 16, fault_at, fault, on_call), iteration_size=3)
    for _, valid in opt.iterate(train, [Xv, Yv], batch_size=0, validate_every=1,
                                patience=1000, **HYPERS[algo]):
        record["yielded"] += 1
        last = record["snapshots"][-1]
        assert valid["loss"] == pytest.approx(valid_loss(last, Xv, Yv), rel=1e-12)
        record["snapshots"].append(w.get_value().copy())


@pytest.mark.parametrize("algo", ["rmsprop", "sgd"])
def test_exception_from_callable_dataset(algo, compiled):
    opt, w, X, Y, Xv, Yv = make(algo)
    record = {}
    # 3 batches per iteration: call 23 is the 2nd batch of iteration 8, after
    # one update (call 22) that no validation has seen
    with pytest.raises(RuntimeError, match="fault at call 23"):
        run_until_fault(opt, w, X, Y, Xv, Yv, algo, 23, RuntimeError, record)
    snapshots = record["snapshots"]
    assert record["yielded"] == 7 and len(snapshots) == 8
    best = best_of(snapshots, Xv, Yv)
    assert not any(np.array_equal(best, s) for s in (snapshots[0], snapshots[-1]))
    # state: as after the last update before the fault, neither reset nor rolled back
    check_continues(opt, algo, w, X, Y, Xv, Yv, best, record["state"], compiled)


@pytest.mark.parametrize("algo", ["rmsprop", "sgd"])
def test_keyboard_interrupt_inside_a_batch(algo, compiled):
    opt, w, X, Y, Xv, Yv = make(algo)
    record = {}
    try:
        run_until_fault(opt, w, X, Y, Xv, Yv, algo, 23, KeyboardInterrupt, record)
    except KeyboardInterrupt:   # a failure, reported as such
        pytest.fail("KeyboardInterrupt escaped the training loop")
    snapshots = record["snapshots"]
    assert record["yielded"] == 7           # the loop ended quietly in iteration 8
    best = best_of(snapshots, Xv, Yv)
    assert not any(np.array_equal(best, s) for s in (snapshots[0], snapshots[-1]))
    # state: as after the last update before the interrupt, neither reset nor rolled back
    check_continues(opt, algo, w, X, Y, Xv, Yv, best, record["state"], compiled)


@pytest.mark.parametrize("algo", ["rmsprop", "sgd"])
@pytest.mark.parametrize("how", ["break", "close", "exception in the caller"])
def test_caller_leaving_the_loop(algo, how, compiled):
    opt, w, X, Y, Xv, Yv = make(algo)
    train = downhill.Dataset(Batches(X, Y, 16), iteration_size=3)
    snapshots = [w.get_value().copy()]
    it = opt.iterate(train, [Xv, Yv], batch_size=0, validate_every=1, patience=1000,
                     **HYPERS[algo])
    try:
        for _ in it:
            snapshots.append(w.get_value().copy())
            if len(snapshots) == 9:          # 8 iterations done, the 8th not validated
                if how == "exception in the caller":
                    raise ZeroDivisionError("caller's own error")
                break
    except ZeroDivisionError:
        pass
    if how == "close":
        it.close()
    else:
        del it      # the last reference: Python closes the generator
    best = best_of(snapshots[:8], Xv, Yv)
    assert not any(np.array_equal(best, s) for s in (snapshots[0], snapshots[7], snapshots[8]))
    state = state_values(opt)
    check_continues(opt, algo, w, X, Y, Xv, Yv, best, state, compiled)


def test_exception_during_validation_keeps_best(compiled):
    """A callable validation set failing at its 6th call (the 6th validation)."""
    opt, w, X, Y, Xv, Yv = make("rmsprop")
    valid = downhill.Dataset(Batches(Xv, Yv, len(Yv), fault_at=6), iteration_size=1)
    snapshots = [w.get_value().copy()]
    with pytest.raises(RuntimeError, match="fault at call 6"):
        for _ in opt.iterate([X, Y], valid, batch_size=16, validate_every=1, patience=1000,
                             **HYPERS["rmsprop"]):
            snapshots.append(w.get_value().copy())
    assert len(snapshots) == 6        # validated 0..4; the 5th iteration's result was not
    best = best_of(snapshots[:5], Xv, Yv)
    np.testing.assert_array_equal(w.get_value(), best)
    assert not np.array_equal(best, snapshots[5])
    check_continues(opt, "rmsprop", w, X, Y, Xv, Yv, best, state_values(opt), compiled)


@pytest.mark.parametrize("fault", [KeyboardInterrupt, RuntimeError])
@pytest.mark.parametrize("when", ["set after build", "set between runs"])
def test_fault_in_first_validation_keeps_the_current_parameters(fault, when):
    """Nothing is trained before the first validation of a run, so a fault
    there (Ctrl-C during a long first validation is the common case) must
    leave the parameters as the caller set them, not bring back the best
    parameters of an earlier run or of the optimizer's construction."""
    opt, w, X, Y, Xv, Yv = make("rmsprop")
    if when == "set between runs":
        opt.minimize([X, Y], [Xv, Yv], batch_size=16, max_updates=3, **HYPERS["rmsprop"])
    mine = np.array([0.25, 0.5, 0.75])       # e.g. pretrained values loaded by the caller
    w.set_value(mine.copy())
    valid = downhill.Dataset(Batches(Xv, Yv, len(Yv), fault_at=1, fault=fault),
                             iteration_size=1)
    try:
        for _ in opt.iterate([X, Y], valid, batch_size=16, **HYPERS["rmsprop"]):
            pytest.fail("no iteration can run: the first validation fails")
    except RuntimeError:
        assert fault is RuntimeError
    except KeyboardInterrupt:   # a failure, reported as such
        pytest.fail("KeyboardInterrupt escaped the training loop")
    np.testing.assert_array_equal(w.get_value(), mine)


@pytest.mark.parametrize("size", [1, 2, 16, 17, 1000])
@pytest.mark.parametrize("dtype", ["float32", "float64", "complex128"])
def test_the_finiteness_check_finds_every_nonfinite_element(size, dtype):
    # arrays of up to nonfinite._SMALL elements are tested in Python, larger
    # ones by a sum first: both must find a NaN or an infinity anywhere, and
    # neither may take a sum that overflows for a non-finite element
    from downhill import nonfinite
    big = np.finfo(np.dtype(dtype).type(0).real.dtype).max
    for bad in (np.nan, np.inf, -np.inf) + ((complex(0, np.inf),) if dtype == "complex128" else ()):
        for where in sorted({0, size // 2, size - 1}):
            value = np.ones(size, dtype)
            value[where] = bad
            variables = {"fine": pytensor.shared(np.full(size, big, dtype)),
                         "count": pytensor.shared(np.int64(3)),
                         "bad": pytensor.shared(value)}
            assert nonfinite.first_nonfinite(variables) == "bad", (bad, where)
    assert nonfinite.first_nonfinite({"fine": pytensor.shared(np.full(size, big, dtype))}) is None
