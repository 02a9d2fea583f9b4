"""The training loop: monitors, validation, early stopping, evaluate, logging."""

import logging

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

import downhill


def regression(rng, n=64, dtype="float64"):
    x = pt.matrix("x", dtype=dtype)
    y = pt.vector("y", dtype=dtype)
    w = pytensor.shared(np.zeros(3, dtype), name="w")
    loss = ((x @ w - y) ** 2).mean()
    X = rng.normal(size=(n, 3)).astype(dtype)
    Y = (X @ np.array([1.0, -2.0, 0.5])).astype(dtype)
    return x, y, w, loss, X, Y


def test_monitors_dict_and_gradients(rng):
    x, y, w, loss, X, Y = regression(rng)
    b = pytensor.shared(np.zeros(()), name=None)
    loss = loss + b ** 2
    opt = downhill.build("sgd", loss, monitors={"wsum": w.sum(), "one": pt.constant(1.0)},
                         monitor_gradients=True)
    train, valid = next(opt.iterate([X, Y], learning_rate=0.1, batch_size=0))
    assert list(train) == ["loss", "wsum", "one", "grad(w)", "grad(unnamed0)"]
    assert list(valid) == list(train)
    assert valid["grad(unnamed0)"] == 0
    # grad(w) is the squared L2 norm of the gradient at the start (w = 0)
    g = -2 * X.T @ Y / len(Y)
    assert valid["grad(w)"] == pytest.approx((g * g).sum(), rel=1e-9)


def test_gradient_monitors_of_parameters_with_the_same_name():
    # two parameters named 'w' must give two monitors, not one that hides the other
    a = pytensor.shared(np.ones(2), name="w")
    b = pytensor.shared(np.ones(3), name="w")
    opt = downhill.build("sgd", (a ** 2).sum() + 2 * (b ** 2).sum(), monitor_gradients=True)
    monitors = opt.evaluate(None)
    assert monitors == {"loss": 8.0, "grad(w#0)": 8.0, "grad(w#1)": 48.0}
    train, _ = opt.minimize(max_updates=1, max_gradient_elem=1.0)
    assert list(train) == ["loss", "grad(w#0)", "grad(w#1)",
                           "grad(w#0) clipped", "grad(w#1) clipped"]
    assert train["grad(w#1) clipped"] == 3.0
    # a monitor of the user's may not take a gradient monitor's name either
    with pytest.raises(ValueError, match=r"monitor name 'grad\(w#0\)' is used twice"):
        downhill.build("sgd", (a ** 2).sum() + (b ** 2).sum(), monitor_gradients=True,
                       monitors={"grad(w#0)": a.sum()})


def test_monitor_errors(rng):
    x, y, w, loss, X, Y = regression(rng)
    with pytest.raises(ValueError, match="monitor 'v' must be a scalar"):
        downhill.build("sgd", loss, monitors=[("v", w)])
    with pytest.raises(ValueError, match="monitor name 'loss' is used twice"):
        downhill.build("sgd", loss, monitors=[("loss", w.sum())])
    with pytest.raises(ValueError, match="monitor 0 must be a"):
        downhill.build("sgd", loss, monitors=["wsum"])


def test_evaluate_is_weighted_by_batch_size(rng):
    x, y, w, loss, X, Y = regression(rng, n=10)
    w.set_value(np.array([0.5, 0.5, 0.5]))
    opt = downhill.build("sgd", loss)
    ds = downhill.Dataset([X, Y], batch_size=4)   # batches of 4, 4, 2
    want = ((X @ w.get_value() - Y) ** 2).mean()
    assert opt.evaluate(ds)["loss"] == pytest.approx(want, rel=1e-12)


def test_validation_schedule_and_repeats(rng):
    x, y, w, loss, X, Y = regression(rng)
    opt = downhill.build("sgd", loss)
    seen = []
    for train, valid in opt.iterate([X, Y], learning_rate=0.01, validate_every=3,
                                    max_updates=7, batch_size=0):
        seen.append(valid["loss"])
    assert len(seen) == 7
    # validations at iterations 0, 3, 6: each repeated until the next one
    assert seen[0] == seen[1] == seen[2]
    assert seen[3] == seen[4] == seen[5]
    assert seen[2] > seen[3] > seen[6]


def test_final_validation_keeps_last_updates(rng):
    x, y, w, loss, X, Y = regression(rng)
    opt = downhill.build("sgd", loss)
    path = []
    for _ in opt.iterate([X, Y], learning_rate=0.01, validate_every=100, max_updates=5,
                         batch_size=0):
        path.append(w.get_value().copy())
    # the loss falls steadily, so the final (validated) parameters are kept
    np.testing.assert_array_equal(w.get_value(), path[-1])
    _, valid = opt.minimize([X, Y], learning_rate=0.01, max_updates=3, batch_size=0)
    assert valid["loss"] == pytest.approx(opt.evaluate([X, Y])["loss"], rel=1e-12)


def test_early_stopping_counts_validations_without_improvement():
    # SGD with a learning rate too large for (w - 3)^2 diverges.
    w = pytensor.shared(np.array(1.0), name="w")
    opt = downhill.build("sgd", (w - 3.0) ** 2)
    n = sum(1 for _ in opt.iterate(learning_rate=1.5, validate_every=1, patience=2))
    # 1.5 * 2 = 3 > 2: every step overshoots and grows; iteration 0 is the
    # best, then 3 failed validations (> patience 2) stop the loop.
    assert n == 3
    assert w.get_value() == 1.0  # best parameters restored


@pytest.mark.parametrize("offset", [0.0, -100.0])
def test_min_improvement_is_relative_for_negative_losses(offset):
    # loss = offset + (w - 1)^2; SGD with rate 0.25 halves (w - 1) per step.
    w = pytensor.shared(np.array(3.0), name="w")
    opt = downhill.build("sgd", offset + (w - 1.0) ** 2)
    n = sum(1 for _ in opt.iterate(learning_rate=0.25, validate_every=1, patience=0,
                                   min_improvement=0.01, max_updates=50))
    # (w-1)^2 goes 4, 1, 0.25, 1/16, ... The improvement needed is 1% of |best|:
    # with offset 0 every step improves by 75% until max_updates; with offset
    # -100 a step must gain 1% of about 100: -96 -> -99 gains 3 (> 0.96), but
    # -99 -> -99.75 gains 0.75 (< 0.99), a failure beyond patience 0: stop.
    assert n == (50 if offset == 0 else 2)


def test_set_params(rng):
    x, y, w, loss, X, Y = regression(rng)
    opt = downhill.build("sgd", loss)
    opt.set_params([np.ones(3)])
    np.testing.assert_array_equal(w.get_value(), np.ones(3))
    with pytest.raises(ValueError, match="parameter 'w' has shape \\(3,\\)"):
        opt.set_params([np.ones(4)])
    with pytest.raises(ValueError, match="got 2 arrays for 1 parameters"):
        opt.set_params([np.ones(3), np.ones(3)])
    opt.set_params("best")  # the values at construction
    np.testing.assert_array_equal(w.get_value(), np.zeros(3))


def test_logging(rng, caplog):
    x, y, w, loss, X, Y = regression(rng)
    opt = downhill.build("rmsprop", loss)
    with caplog.at_level(logging.INFO, logger="downhill"):
        opt.minimize([X, Y], learning_rate=0.01, max_updates=3, validate_every=2)
    text = caplog.text
    assert text.count("learning_rate=0.01") == 1
    assert "RMSProp 1 loss=" in text and "RMSProp 3 loss=" in text
    assert "validation 0 loss=" in text and " *" in text


def test_data_inputs_pandas_sparse_shared_callable(rng):
    import pandas as pd
    import scipy.sparse as sp

    x, y, w, loss, X, Y = regression(rng)
    opt = downhill.build("sgd", loss)
    want = opt.evaluate([X, Y])["loss"]
    assert opt.evaluate([pd.DataFrame(X), pd.Series(Y)])["loss"] == pytest.approx(want)
    assert opt.evaluate([pytensor.shared(X), Y])["loss"] == pytest.approx(want)
    assert opt.evaluate(downhill.Dataset(lambda: [X, Y], iteration_size=2))["loss"] \
        == pytest.approx(want)

    ds = downhill.Dataset([sp.csr_matrix(np.eye(6)), np.arange(6.0)], batch_size=4, rng=1)
    batches = list(ds)  # one pass: batches of 4 and 2, shuffled
    rows = np.concatenate([b[0].toarray().argmax(axis=1) for b in batches])
    labels = np.concatenate([b[1] for b in batches])
    assert sorted(rows) == list(range(6))
    np.testing.assert_array_equal(rows, labels)  # inputs stay aligned


def test_dataset_errors():
    with pytest.raises(ValueError, match="input 1 has unsupported type list"):
        downhill.Dataset([np.zeros(3), [1, 2, 3]])
    with pytest.raises(ValueError, match=r"input 0 is empty \(shape \(0, 2\)\)"):
        downhill.Dataset([np.zeros((0, 2))])
    with pytest.raises(ValueError, match="differ in length along axis 0"):
        downhill.Dataset([np.zeros(3), np.zeros(4)])
    with pytest.raises(ValueError, match="iteration_size"):
        downhill.Dataset([np.zeros(3)], iteration_size=0)


def test_float64_data_cast_once_for_float32_model(rng):
    x, y, w, loss, X, Y = regression(rng, dtype="float32")
    opt = downhill.build("sgd", loss)
    ds = downhill.Dataset([X.astype("float64"), Y.astype("float64")], batch_size=16)
    opt.evaluate(ds)
    assert all(b.dtype == np.float32 for b in next(iter(ds)))
    with pytest.raises(ValueError, match="input 0 \\(x\\) must be 2-d"):
        opt.evaluate([Y, Y])


def test_no_inputs_needs_no_data():
    w = pytensor.shared(np.array([3.0, -2.0]), name="w")
    opt = downhill.build("sgd", (w ** 2).sum())
    train, valid = opt.minimize(learning_rate=0.1, max_updates=20)
    assert valid["loss"] < 0.01
    x = pt.vector("x")
    with pytest.raises(ValueError, match="no train data given"):
        downhill.build("sgd", (w * x).sum()).iterate()


def test_minimize_one_liner(rng):
    x, y, w, loss, X, Y = regression(rng)
    train, valid = downhill.minimize(loss, [X, Y], algo="sgd", learning_rate=0.05,
                                     batch_size=8, max_updates=30)
    np.testing.assert_allclose(w.get_value(), [1.0, -2.0, 0.5], atol=1e-3)
    assert set(train) == {"loss"}


def test_minimize_valid_batches_applies_to_the_default_validation_data():
    # valid=None validates on the training arrays; valid_batches must still
    # limit the batches per validation (it was silently ignored)
    x = pt.vector("x")
    w = pytensor.shared(np.zeros(()), name="w")
    loss = ((x - w) ** 2).mean()
    X = np.arange(40.0)
    full = ((X - 0) ** 2).mean()
    _, valid = downhill.minimize(loss, [X], algo="sgd", batch_size=8, max_updates=0)
    assert valid["loss"] == full
    _, valid = downhill.minimize(loss, [X], algo="sgd", batch_size=8, max_updates=0,
                                 valid_batches=1)
    # one batch of 8 distinct samples: its mean square is not the full one
    assert valid["loss"] != full
    squares = np.sort(X ** 2)
    assert squares[:8].mean() <= valid["loss"] <= squares[-8:].mean()


def test_minimize_returns_a_copy_of_the_validation_monitors():
    # changing the returned dict must not change the optimizer's record
    w = pytensor.shared(np.ones(2), name="w")
    opt = downhill.build("sgd", (w ** 2).sum())
    train, valid = opt.minimize(max_updates=1, learning_rate=0.25)
    assert valid == {"loss": 0.5}
    valid["loss"] = -1.0
    assert opt.state_dict()["early_stopping"]["last_validation"] == {"loss": 0.5}


def test_validation_arrays_are_not_shuffled(monkeypatch):
    """Lists given as validation data are read in order: no permutation per pass."""
    x = pt.matrix("x")
    w = pytensor.shared(np.ones(3), name="w")
    opt = downhill.build("sgd", ((x @ w) ** 2).mean())
    X = np.arange(300.0).reshape(100, 3)
    calls = []
    real = downhill.Dataset._permute

    def counted(self, perm):
        calls.append(self.name)
        return real(self, perm)

    monkeypatch.setattr(downhill.Dataset, "_permute", counted)
    first = opt.evaluate([X])
    second = opt.evaluate([X])
    assert first == second and not calls
    opt.minimize(downhill.Dataset([X], batch_size=10, name="train"), valid=[X], max_updates=2,
                 validate_every=1, learning_rate=1e-9)
    assert calls == ["train", "train"]  # one shuffle per training pass, none for validation


def test_evaluate_reads_a_whole_dataset_in_order_and_leaves_its_shuffling_alone():
    x = pt.matrix("x")
    w = pytensor.shared(np.ones(3), name="w")
    opt = downhill.build("sgd", (x @ w).mean())
    X = np.arange(300.0).reshape(100, 3)
    data = downhill.Dataset([X], batch_size=10, iteration_size=2, rng=0)
    before = data.state_dict()
    result = opt.evaluate(data)
    assert result["loss"] == pytest.approx((X @ np.ones(3)).mean(), rel=1e-12)  # all samples
    after = data.state_dict()
    assert after["rng"] == before["rng"] and after["position"] == before["position"]
