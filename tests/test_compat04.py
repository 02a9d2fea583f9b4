"""downhill 0.4's public behaviour, as its documentation and code describe it.

Each test states the 0.4 behaviour it checks. The scripts in ``scripts04/``
are 0.4-style programs (only ``theano`` renamed to ``pytensor``), run to
completion in subprocesses.
"""

import gc
import os
import pathlib
import subprocess
import sys
import warnings

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
from click.testing import CliRunner

import downhill
from downhill.util import as_float, shared_like

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPTS = sorted((ROOT / "tests" / "scripts04").glob("*.py"))


def regression(n=64, seed=0, dtype="float64"):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3)).astype(dtype)
    Y = (X @ np.array([1.0, -2.0, 0.5])).astype(dtype)
    x = pt.matrix("x", dtype=dtype)
    y = pt.vector("y", dtype=dtype)
    w = pytensor.shared(np.zeros(3, dtype), name="w")
    return x, y, w, ((x @ w - y) ** 2).mean(), X, Y


def rosenbrock():
    p = pytensor.shared(np.array([-1.2, 1.0]), name="p")
    return p, (1 - p[0]) ** 2 + 100 * (p[1] - p[0] ** 2) ** 2


@pytest.fixture
def strict_warnings():
    """Any warning other than those a test expects fails the test."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", downhill.DownhillWarning)
        yield


# ----------------------------------------------------------------------
# 1. iterate() and evaluate() take any iterable of batches


def test_a_list_of_batches_is_passed_positionally_batch_by_batch(strict_warnings):
    # 0.4: "for x in dataset: f(*x)": each batch a list of arrays, one per input
    x, y, w, loss, X, Y = regression()
    w.set_value(np.array([0.5, 0.5, 0.5]))
    opt = downhill.build("sgd", loss)
    batches = [[X[:16], Y[:16]], [X[16:], Y[16:]]]
    whole = opt.evaluate([X, Y])["loss"]             # ours: one array per input
    assert opt.evaluate(batches)["loss"] == pytest.approx(whole, rel=1e-12)
    assert opt.evaluate([(X, Y)])["loss"] == pytest.approx(whole, rel=1e-12)  # tuples
    for _ in opt.iterate(batches, learning_rate=0.1, max_updates=30):
        pass
    np.testing.assert_allclose(w.get_value(), [1.0, -2.0, 0.5], atol=1e-3)


def test_a_list_of_batches_steps_in_order():
    # one pass over the list per iteration, in the order given (0.4 iterated it)
    x = pt.vector("x")
    w = pytensor.shared(np.zeros(()), name="w")
    opt = downhill.build("sgd", ((x - w) ** 2).mean())
    batches = [[np.full(2, float(k))] for k in (1, 2, 3)]
    # learning rate 0.5 moves w onto each batch's value: the losses before the
    # steps are (1 - 0)^2, (2 - 1)^2, (3 - 2)^2 in this order (any other: more)
    (train, _), = opt.iterate(batches, learning_rate=0.5, max_updates=1)
    assert train["loss"] == 1.0
    assert float(w.get_value()) == 3.0


def test_a_loss_without_inputs_takes_a_list_of_one_empty_batch(strict_warnings):
    p, loss = rosenbrock()
    opt = downhill.build("sgd", loss)
    assert opt.evaluate([[]])["loss"] == pytest.approx(24.2)
    history = list(opt.iterate([[]], learning_rate=1e-3, max_updates=3))
    assert len(history) == 3 and history[-1][0]["loss"] < 24.2


def test_a_generator_of_batches_is_read_until_it_ends():
    x, y, w, loss, X, Y = regression()
    opt = downhill.build("sgd", loss)
    stream = ([X[i:i + 16], Y[i:i + 16]] for i in range(0, 64, 16))
    history = list(opt.iterate(stream, valid=[X, Y], learning_rate=0.1, validate_every=1))
    assert len(history) == 1                   # its four batches made one iteration
    assert opt.state_dict()["counters"]["updates"] == 4
    # the loop validated once more when the data ended, on the trained parameters
    last = opt.state_dict()["early_stopping"]["last_validation"]["loss"]
    assert last == pytest.approx(opt.evaluate([X, Y])["loss"])
    assert last < history[0][1]["loss"]


def test_a_generator_without_validation_data_is_refused_with_the_fix():
    x, y, w, loss, X, Y = regression()
    opt = downhill.build("sgd", loss)
    with pytest.raises(ValueError, match="one-shot iterator.*valid="):
        opt.iterate(iter([[X, Y]]))


def test_any_reiterable_gives_one_pass_per_iteration():
    x, y, w, loss, X, Y = regression()

    class Halves:   # an iterable without a length
        def __iter__(self):
            yield X[:32], Y[:32]
            yield X[32:], Y[32:]

    opt = downhill.build("sgd", loss)
    assert opt.evaluate(Halves())["loss"] == pytest.approx(opt.evaluate([X, Y])["loss"])
    history = list(opt.iterate(Halves(), learning_rate=0.1, max_updates=3))
    assert len(history) == 3 and opt.state_dict()["counters"]["updates"] == 6


def test_a_bare_array_is_the_one_input(tmp_path, strict_warnings):
    # 0.4's guide: dataset = np.load(filename); downhill.minimize(..., train=dataset)
    x = pt.matrix("x")
    mean = pytensor.shared(np.zeros(2), name="mean")
    loss = ((x - mean) ** 2).sum(axis=1).mean()
    X = np.random.default_rng(0).normal(size=(200, 2)) + [3.0, -1.0]
    np.save(tmp_path / "x.npy", X)
    downhill.minimize(loss, X, algo="sgd", learning_rate=0.1, max_updates=20)
    np.testing.assert_allclose(mean.get_value(), X.mean(axis=0), atol=0.2)
    mapped = np.load(tmp_path / "x.npy", mmap_mode="r")
    ds = downhill.Dataset(mapped, batch_size=50)
    assert [b[0].shape for b in ds] == [(50, 2)] * 4
    mean.set_value(np.zeros(2))
    downhill.minimize(loss, mapped, algo="sgd", learning_rate=0.1, max_updates=20)
    np.testing.assert_allclose(mean.get_value(), X.mean(axis=0), atol=0.2)
    opt = downhill.build("sgd", loss)
    assert opt.evaluate(mapped)["loss"] == pytest.approx(opt.evaluate([X])["loss"])


# ----------------------------------------------------------------------
# 2. unknown keywords are accepted, never silently


def test_unknown_keywords_warn_once_per_optimizer_and_name():
    # theanets passes its own keywords through iterate()
    x, y, w, loss, X, Y = regression()
    opt = downhill.build("sgd", loss)
    theanets = dict(rng=np.random.RandomState(1), weight_l2=1e-4, hidden_l1=0.1,
                    input_noise=0.0)
    with pytest.warns(downhill.DownhillWarning) as record:
        next(opt.iterate([X, Y], learning_rate=0.01, **theanets))
    messages = sorted(str(r.message) for r in record)
    assert len(messages) == 4
    assert all(r.filename == __file__ for r in record)   # attributed to the caller
    assert "unknown hyperparameter 'weight_l2' for SGD, ignored; did you mean " \
           "'weight_decay'?" in messages
    assert any("'rng'" in m for m in messages)
    assert issubclass(downhill.DownhillWarning, UserWarning)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        next(opt.iterate([X, Y], learning_rate=0.01, **theanets))    # no second warning
        opt.get_updates(weight_l2=1)
    with pytest.warns(downhill.DownhillWarning, match="weight_l2"):  # another optimizer
        downhill.build("sgd", loss).get_updates(weight_l2=1)


@pytest.mark.parametrize("call", ["get_updates", "build", "constructor", "minimize"])
def test_unknown_keywords_everywhere(call):
    x, y, w, loss, X, Y = regression()
    with pytest.warns(downhill.DownhillWarning) as record:
        if call == "get_updates":   # the 0.4 README passed batch_size here
            downhill.build("rmsprop", loss).get_updates(learning_rte=0.1, batch_size=20)
        elif call == "build":
            downhill.build("rmsprop", loss, learning_rte=0.1)
        elif call == "constructor":
            downhill.RMSProp(loss, learning_rte=0.1)
        else:
            downhill.minimize(loss, [X, Y], learning_rte=0.1, max_updates=1)
    assert "unknown hyperparameter 'learning_rte' for RMSProp, ignored; did you mean " \
           "'learning_rate'?" in [str(r.message) for r in record]


def test_known_values_are_still_validated():
    x, y, w, loss, X, Y = regression()
    opt = downhill.build("sgd", loss)
    with pytest.warns(downhill.DownhillWarning):
        with pytest.raises(ValueError, match="invalid momentum: 2"):
            opt.iterate([X, Y], momentum=2, weight_l2=0.1)


def test_the_command_lines_hyperparameters_stay_strict():
    from downhill import cli
    result = CliRunner().invoke(cli.cli, ["run", "rosenbrock", "-H", "learning_rte=0.1"])
    assert result.exit_code == 2
    assert "did you mean 'learning_rate'" in result.output


@pytest.mark.parametrize("synonym", ["gradient_clip", "max_gradient_clip"])
def test_the_documented_gradient_clip_synonyms(synonym):
    # 0.4's docs: "Deprecated synonyms of this parameter are max_gradient_clip and
    # gradient_clip"; its tests: iterate(data, gradient_clip=1) -> max_gradient_elem 1
    p, loss = rosenbrock()
    opt = downhill.build("sgd", loss)
    with pytest.warns(downhill.DownhillWarning, match="synonym of 'max_gradient_elem'"):
        next(opt.iterate([[]], **{synonym: 2}))
    assert opt.max_gradient_elem == 2
    with pytest.raises(ValueError, match="give only max_gradient_elem"):
        opt.get_updates(**{synonym: 1, "max_gradient_elem": 1})


# ----------------------------------------------------------------------
# 3. the extension point: a subclass implementing _get_updates_for


class Straight(downhill.Optimizer):
    """0.4's SGD, as 0.4 wrote it: the parameter's pair holds its step."""

    def _get_updates_for(self, param, grad):
        yield param, self.learning_rate * grad


class Accumulated(downhill.Optimizer):
    """0.4's ADAGRAD, as 0.4 wrote it, with its own state variable."""

    def _get_updates_for(self, param, grad):
        g2_tm1 = shared_like(param, "g2_acc")
        g2_t = g2_tm1 + grad * grad
        yield g2_tm1, g2_t
        yield param, grad * self.learning_rate / pt.sqrt(g2_t + self.epsilon)

    HYPERS = downhill.ADAGRAD.HYPERS   # rms_regularizer -> self.epsilon


def trajectory(algo, steps=5, **hyper):
    x, y, w, loss, X, Y = regression()
    opt = downhill.build(algo, loss)
    fn = pytensor.function([x, y], [], updates=opt.get_updates(**hyper))
    path = []
    for k in range(steps):
        fn(X[8 * k:8 * k + 8], Y[8 * k:8 * k + 8])
        path.append(w.get_value())
    return opt, np.array(path)


@pytest.mark.parametrize("hyper", [dict(), dict(momentum=0.5), dict(momentum=0.5, nesterov=True),
                                   dict(max_gradient_norm=0.1)])
def test_a_get_updates_for_subclass_trains_as_the_builtin(hyper):
    hyper = dict(hyper, learning_rate=0.1)
    _, ours = trajectory("straight", **hyper)
    _, builtin = trajectory("sgd", **hyper)
    np.testing.assert_array_equal(ours, builtin)


def test_a_subclass_state_is_kept_saved_and_restored(tmp_path):
    opt, ours = trajectory("accumulated", learning_rate=0.1, rms_regularizer=1e-3)
    _, builtin = trajectory("adagrad", learning_rate=0.1, rms_regularizer=1e-3)
    np.testing.assert_array_equal(ours, builtin)
    assert [v.name for v in opt.state_variables] == ["w_g2_acc"]
    saved = opt.state_dict()
    np.testing.assert_array_equal(saved["state"]["w_g2_acc"],
                                  opt.state_variables[0].get_value())
    opt.save(tmp_path / "acc.npz")
    opt.state_variables[0].set_value(np.zeros(3))
    opt.load(tmp_path / "acc.npz")
    np.testing.assert_array_equal(opt.state_variables[0].get_value(), saved["state"]["w_g2_acc"])
    # a second graph (momentum on) continues from the same state variable
    before = opt.state_variables[0].get_value()
    updates = opt.get_updates(learning_rate=0.1, momentum=0.5)
    assert len([v for v in opt.state_variables if v.name == "w_g2_acc"]) == 1
    assert any(var is opt.state_variables[0] for var, _ in updates)
    np.testing.assert_array_equal(opt.state_variables[0].get_value(), before)


def test_a_get_updates_for_hook_overrides_an_inherited_step():
    # 0.4: subclassing a built-in and overriding its _get_updates_for
    class Halved(downhill.SGD):
        def _get_updates_for(self, param, grad):
            yield param, 0.5 * self.learning_rate * grad

    x, y, w, loss, X, Y = regression()
    fn = pytensor.function([x, y], [], updates=Halved(loss).get_updates(learning_rate=0.2))
    fn(X, Y)
    halved = w.get_value()
    w.set_value(np.zeros(3))
    fn = pytensor.function([x, y], [], updates=downhill.SGD(loss).get_updates(learning_rate=0.1))
    fn(X, Y)
    np.testing.assert_array_equal(halved, w.get_value())


def test_build_finds_subclasses_by_lower_cased_name_outside_the_registry():
    x, y, w, loss, X, Y = regression()
    assert isinstance(downhill.build("straight", loss), Straight)
    assert isinstance(downhill.build("Straight", loss), Straight)
    assert "straight" not in downhill.ALGORITHMS
    with pytest.raises(ValueError, match="unknown algorithm 'nope'.*subclass"):
        downhill.build("nope", loss)


def test_a_redefined_class_wins_and_a_builtin_name_is_an_error():
    x, y, w, loss, X, Y = regression()
    namespace = {"downhill": downhill}
    cell = ("class Redefined(downhill.Optimizer):\n"
            "    def _get_updates_for(self, param, grad):\n"
            "        yield param, {} * grad\n")
    exec(cell.format(1), namespace)
    first = namespace["Redefined"]
    exec(cell.format(2), namespace)                  # the notebook cell, run again
    assert type(downhill.build("redefined", loss)) is namespace["Redefined"] is not first
    exec("class Adam(downhill.Optimizer):\n    pass\n", namespace)
    try:
        with pytest.raises(ValueError, match="'adam' is ambiguous.*built-in downhill."
                                             "algorithms.adam.Adam.*register it under another "
                                             "name"):
            downhill.build("adam", loss)
    finally:
        del namespace["Adam"], first
        gc.collect()
    assert type(downhill.build("adam", loss)) is downhill.Adam


def test_hook_errors_name_the_problem():
    x, y, w, loss, X, Y = regression()

    class Neither(downhill.Optimizer):
        pass

    class NoStep(downhill.Optimizer):
        def _get_updates_for(self, param, grad):
            yield from ()

    with pytest.raises(NotImplementedError, match="neither _step.*_get_updates_for"):
        Neither(loss).get_updates()
    with pytest.raises(ValueError, match="no pair for parameter 'w'.*param - step"):
        NoStep(loss).get_updates()


# ----------------------------------------------------------------------
# 4. hyperparameters as attributes


def test_hyperparameters_read_as_attributes_as_in_0_4():
    # 0.4's tests: opt.learning_rate.eval(), opt.momentum, opt.patience, ... while iterating
    p, loss = rosenbrock()
    opt = downhill.build("sgd", loss)
    for _ in opt.iterate([[]], learning_rate=0.3, momentum=0.5, patience=20,
                         min_improvement=0.1, max_gradient_elem=4, max_gradient_norm=5,
                         nesterov=True, validate_every=3):
        assert opt.nesterov is True
        assert np.allclose(opt.learning_rate.eval(), 0.3)
        assert opt.momentum == 0.5 and opt.patience == 20 and opt.validate_every == 3
        assert opt.min_improvement == 0.1
        assert opt.max_gradient_norm == 5 and opt.max_gradient_elem == 4
        break
    opt.learning_rate.set_value(0.01)                # a shared scalar: no recompilation
    assert opt.learning_rate.eval() == pytest.approx(0.01)
    assert opt.momentum.eval() == 0.5               # ours: also reads its shared scalar
    nag = downhill.build("nag", loss)
    next(nag.iterate([[]], momentum=0.9))
    assert nag.nesterov is True and nag.momentum == 0.9


def test_float32_values_read_as_given():
    x, y, w, loss, X, Y = regression(dtype="float32")
    opt = downhill.build("rmsprop", loss, momentum=0.9)
    assert opt.momentum == 0.9 and opt.rms_halflife == 14
    opt.learning_rate.set_value(0.01)               # a Python float into a float32 scalar
    assert opt.learning_rate.get_value().dtype == np.float32


@pytest.mark.parametrize("algo, names", [
    ("rmsprop", ["ewma", "epsilon"]), ("adagrad", ["epsilon"]), ("adadelta", ["ewma", "epsilon"]),
    ("esgd", ["ewma", "epsilon"]), ("rprop", ["step_increase", "step_decrease", "min_step",
                                              "max_step"]),
    ("adam", ["beta1", "beta2", "beta1_decay", "epsilon"])])
def test_each_algorithms_values_are_shared_as_in_0_4(algo, names):
    p, loss = rosenbrock()
    opt = downhill.build(algo, loss)
    opt.get_updates()
    for name in names:
        value = getattr(opt, name)
        assert hasattr(value, "set_value") and np.isfinite(value.eval()), name


def test_setting_an_attribute_takes_effect_or_raises():
    x, y, w, loss, X, Y = regression()
    esgd = downhill.build("esgd", loss)
    esgd.hv_method = "lop"                    # 0.4: a constructor keyword, set before iterate
    assert esgd.hv_method == "lop"
    lop = downhill.build("esgd", loss, hv_method="lop")
    assert esgd._structure() == lop._structure()
    with pytest.raises(ValueError, match="invalid hv_method: 'nope'"):
        esgd.hv_method = "nope"
    assert esgd.hv_method == "lop"
    sgd = downhill.build("sgd", loss)
    sgd.momentum = 0.9                          # the default from now on
    next(sgd.iterate([X, Y], learning_rate=0.01))
    assert sgd.momentum == 0.9 and [v.name for v in sgd.state_variables] == ["w_vel"]
    next(sgd.iterate([X, Y], learning_rate=0.01, momentum=0.5))   # a call still overrides
    assert sgd.momentum == 0.5
    sgd.learning_rate = 0.25                    # a number: validated, written at once
    assert sgd.learning_rate.eval() == 0.25
    with pytest.raises(ValueError, match="invalid learning_rate"):
        sgd.learning_rate = -1
    with pytest.raises(ValueError, match="NAG always uses Nesterov"):
        downhill.build("nag", loss).nesterov = False
    rms = downhill.build("rmsprop", loss)
    with pytest.raises(AttributeError, match="derived from rms_regularizer"):
        rms.epsilon = 1e-3
    rms.my_note = "kept"                        # other names are ordinary attributes
    assert rms.my_note == "kept"
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        rms.nope


def test_setting_a_seed_reseeds_and_other_settings_keep_the_stream():
    x, y, w, loss, X, Y = regression()
    opt = downhill.build("esgd", loss, seed=3)
    opt.get_updates()
    (rng,) = [v for v in opt.state_variables if v.name == "w_rng"]
    state = rng.get_value().bit_generator.state
    opt.learning_rate = 0.01                   # not the seed: the draws go on
    assert rng.get_value().bit_generator.state == state
    opt.seed = 4
    assert rng.get_value().bit_generator.state != state


# ----------------------------------------------------------------------
# 5. Dataset as in 0.4


def test_default_names_count_up():
    a = downhill.Dataset([np.zeros((4, 2))])
    b = downhill.Dataset([np.zeros((4, 2))])
    assert a.name.startswith("dataset") and a.name[7:].isdigit()
    assert int(b.name[7:]) > int(a.name[7:])
    assert downhill.Dataset([np.zeros((4, 2))], name="foo").name == "foo"


def test_a_callable_dataset_yields_what_the_callable_returns():
    # 0.4's tests: Dataset(lambda: 'hello', iteration_size=10) gives 'hello' ten times
    assert list(downhill.Dataset(lambda: "hello", iteration_size=10)) == ["hello"] * 10

    class Batches:
        called = 0

        def __call__(self):
            self.called += 1
            return "hello"

        def __len__(self):
            return 10

    batches = Batches()
    ds = downhill.Dataset(batches)
    assert list(ds) == ["hello"] * 10 and batches.called == 10
    assert ds.batch_size == 32                       # batch_size on every Dataset


def test_a_callable_returning_a_bare_array_or_a_tuple_trains():
    x, y, w, loss, X, Y = regression()
    opt = downhill.build("sgd", loss)
    assert opt.evaluate(downhill.Dataset(lambda: (X, Y), iteration_size=1))["loss"] \
        == pytest.approx(opt.evaluate([X, Y])["loss"])
    z = pt.matrix("z")
    mean = pytensor.shared(np.zeros(3), name="mean")
    fixed = downhill.build("sgd", ((z - mean) ** 2).mean())
    fixed.minimize(lambda: X[:8].astype("float32"), learning_rate=0.5, max_updates=20)
    np.testing.assert_allclose(mean.get_value(), X[:8].mean(axis=0), atol=1e-3)


def test_fixed_contiguous_batches_in_a_shuffled_order():
    # 0.4: slices made once, their order shuffled at every pass
    X = np.arange(10.0)[:, None]
    ds = downhill.Dataset([X], batch_size=3, rng=0)
    passes = [[tuple(b[0][:, 0]) for b in ds] for _ in range(6)]
    contiguous = [(0.0, 1.0, 2.0), (3.0, 4.0, 5.0), (6.0, 7.0, 8.0), (9.0,)]
    for batches in passes:
        assert sorted(batches) == contiguous           # the same batches every pass
    assert len({tuple(p) for p in passes}) > 1         # in changing orders
    fresh = downhill.Dataset([X], batch_size=3, rng=0, shuffle_samples=True)
    compositions = {b for _ in range(6) for b in (tuple(sorted(c[0][:, 0])) for c in fresh)}
    assert len(compositions) > 4                       # ours, as an option


def batches_04(n, batch_size, iteration_size, seed, iterations):
    """downhill 0.4's Dataset, transcribed: slices made once, shuffled with a
    RandomState at construction and whenever a pass is used up."""
    rng = np.random.RandomState(seed)
    slices = [slice(i, min(n, i + batch_size)) for i in range(0, n, batch_size)]
    rng.shuffle(slices)
    index, out = 0, []
    for _ in range(iterations):
        for _ in range(iteration_size):
            out.append((slices[index].start, slices[index].stop))
            index += 1
            if index >= len(slices):
                rng.shuffle(slices)
                index = 0
    return out


@pytest.mark.parametrize("n, batch_size, iteration_size", [(10, 3, None), (40, 8, 3), (7, 2, 9)])
def test_a_random_state_gives_0_4s_batch_order(n, batch_size, iteration_size):
    X = np.arange(float(n))
    ds = downhill.Dataset([X], batch_size=batch_size, iteration_size=iteration_size,
                          rng=np.random.RandomState(42))
    ours = [(int(b[0][0]), int(b[0][-1]) + 1) for _ in range(4) for b in ds]
    assert ours == batches_04(n, batch_size, ds.iteration_size, 42, 4)


def test_shuffle_and_iterate_without_shuffling():
    X = np.arange(12.0)[:, None]
    ds = downhill.Dataset([X], batch_size=2, rng=np.random.RandomState(5))
    first = [b[0][0, 0] for b in ds.iterate(shuffle=False)]
    again = [b[0][0, 0] for b in ds.iterate(shuffle=False)]
    assert again == first                            # the order kept
    orders = set()
    for _ in range(5):
        ds.shuffle()
        orders.add(tuple(b[0][0, 0] for b in ds.iterate(shuffle=False)))
    assert len(orders) > 1 and all(sorted(o) == sorted(first) for o in orders)
    callable_ds = downhill.Dataset(lambda: [X], iteration_size=1)
    callable_ds.shuffle()                            # no effect for a callable, as in 0.4


@pytest.mark.parametrize("make", [lambda s: s, np.random.RandomState, np.random.default_rng])
def test_rng_takes_a_seed_a_random_state_or_a_generator(make, tmp_path):
    x, y, w, loss, X, Y = regression()

    def order(ds):
        return [tuple(b[1][:2]) for _ in range(3) for b in ds]

    assert order(downhill.Dataset([X, Y], batch_size=8, rng=make(7))) \
        == order(downhill.Dataset([X, Y], batch_size=8, rng=make(7)))
    # the shuffling state goes through a checkpoint and resumes the same sequence
    opt = downhill.build("sgd", loss)
    train = downhill.Dataset([X, Y], batch_size=8, rng=make(7), name="train")
    list(opt.iterate(train, learning_rate=0.01, max_updates=1, checkpoint=tmp_path / "c.npz"))
    expected = order(train)
    again = downhill.Dataset([X, Y], batch_size=8, rng=make(99), name="train")
    opt.load(tmp_path / "c.npz", datasets={"train": again})
    assert order(again) == expected
    with pytest.raises(ValueError, match="rng must be"):
        downhill.Dataset([X], rng="seed")


def test_the_shuffling_kind_is_saved_and_checked():
    X = np.arange(10.0)[:, None]
    ds = downhill.Dataset([X], batch_size=3, rng=0)
    next(iter(ds))
    state = ds.state_dict()
    assert state["shuffle_samples"] is False and sorted(state["perm"]) == [0, 1, 2, 3]
    other = downhill.Dataset([X], batch_size=3, shuffle_samples=True)
    with pytest.raises(ValueError, match="shuffles batches.*shuffle_samples=False"):
        other.load_state_dict(state)
    batches = downhill.Dataset([[X[:5]], [X[5:]]])
    next(iter(batches))
    assert batches.state_dict()["position"] == 1
    copy = downhill.Dataset([[X[:5]], [X[5:]]])
    copy.load_state_dict(batches.state_dict())
    np.testing.assert_array_equal(next(iter(copy))[0], X[5:])


@pytest.mark.filterwarnings("ignore:np.dot.. is faster on contiguous arrays")  # Numba's note
def test_pandas_inputs_give_pandas_batches():
    pd = pytest.importorskip("pandas")
    x, y, w, loss, X, Y = regression(dtype="float32")
    frame, series = pd.DataFrame(X.astype("float64")), pd.Series(Y.astype("float64"))
    ds = downhill.Dataset([frame, series], batch_size=16, rng=0)
    first = next(iter(ds))
    assert isinstance(first[0], pd.DataFrame) and isinstance(first[1], pd.Series)
    np.testing.assert_array_equal(first[0].index, first[1].index)   # aligned rows
    opt = downhill.build("sgd", loss)
    assert opt.evaluate(ds)["loss"] == pytest.approx(opt.evaluate([X, Y])["loss"], rel=1e-6)
    opt.minimize(ds, learning_rate=0.1, max_updates=30)
    np.testing.assert_allclose(w.get_value(), [1.0, -2.0, 0.5], atol=1e-2)
    batch = next(iter(ds))
    assert isinstance(batch[0], pd.DataFrame) and batch[0].dtypes.iloc[0] == np.float32
    fresh = downhill.Dataset([frame, series], batch_size=16, shuffle_samples=True)
    assert isinstance(next(iter(fresh))[0], pd.DataFrame)


# ----------------------------------------------------------------------
# 6. 0.4's hyperparameters are accepted


#: Each algorithm's keywords in downhill 0.4 (its _prepare methods and ESGD's
#: constructor), beyond the common ones.
KEYWORDS_04 = {
    "sgd": {}, "nag": {},
    "rprop": dict(rprop_increase=1.2, rprop_decrease=0.5, rprop_min_step=0, rprop_max_step=10),
    "adagrad": dict(rms_regularizer=1e-6),
    "rmsprop": dict(rms_halflife=7, rms_regularizer=1e-6),
    "adadelta": dict(rms_halflife=7, rms_regularizer=1e-6),
    "esgd": dict(rms_halflife=7, rms_regularizer=1e-6, hv_method="grad"),
    "adam": dict(beta1_decay=1 - 1e-6, beta1_halflife=5, beta2_halflife=50,
                 rms_regularizer=1e-6),
}
COMMON_04 = dict(learning_rate=1e-3, momentum=0.5, nesterov=False, patience=3,
                 validate_every=2, min_improvement=0.01, max_gradient_norm=10,
                 max_gradient_elem=0)


@pytest.mark.parametrize("algo", sorted(KEYWORDS_04))
def test_every_04_keyword_is_accepted_and_known(algo, strict_warnings):
    p, loss = rosenbrock()
    hyper = dict(COMMON_04, **KEYWORDS_04[algo])
    if algo == "nag":
        hyper.pop("nesterov")  # ours refuses nesterov=False for NAG (porting notes)
    opt = downhill.build(algo, loss)
    opt.get_updates(**hyper)
    history = list(opt.iterate([[]], max_updates=2, **hyper))
    assert len(history) == 2 and np.isfinite(history[-1][0]["loss"])


def test_adams_rms_halflife_warns():
    # 0.4's Adam inherited rms_halflife from RMSProp and ignored it; ours says so
    p, loss = rosenbrock()
    with pytest.warns(downhill.DownhillWarning, match="'rms_halflife' for Adam, ignored"):
        downhill.build("adam", loss).get_updates(rms_halflife=7)


def test_adams_beta1_decay_follows_its_equation():
    # beta1_t = beta1 * lambda ** (t - 1), the bias correction keeping beta1 ** t
    w0 = np.array([0.3, -1.2, 2.0])
    target = np.array([1.0, 2.0, -1.0])
    w = pytensor.shared(w0.copy(), name="w")
    lam, lr = 0.7, 0.05
    opt = downhill.build("adam", ((w - target) ** 4).sum())
    fn = pytensor.function([], [], updates=opt.get_updates(learning_rate=lr, beta1_decay=lam))
    b1, b2 = np.exp(-np.log(2) / 7), np.exp(-np.log(2) / 69)
    p, m, v = w0.copy(), np.zeros(3), np.zeros(3)
    for t in range(1, 8):
        g = 4 * (p - target) ** 3
        b1t = b1 * lam ** (t - 1)
        m = b1t * m + (1 - b1t) * g
        v = b2 * v + (1 - b2) * g * g
        p = p - lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + 1e-8)
        fn()
        np.testing.assert_allclose(w.get_value(), p, rtol=1e-12)
    with pytest.raises(ValueError, match="invalid beta1_decay"):
        opt.get_updates(beta1_decay=0)
    assert "beta1_decay" in downhill.Adam.__doc__ and r"\lambda^{t - 1}" in downhill.Adam.__doc__


def test_adam_without_beta1_decay_builds_the_same_graph():
    p, loss = rosenbrock()
    a, b = downhill.build("adam", loss), downhill.build("adam", loss)
    assert a._structure() == b._structure()
    b.get_updates(beta1_decay=0.5)
    assert a._structure() != b._structure()


def test_minimize_returns_the_validation_that_ended_the_run_and_the_loop_gives_0_4s():
    # 0.4 returned the pair yielded with the last iteration, whose validation
    # was made before it; downhill returns the one made as the run ends (here
    # after iteration 7, with validate_every=3): the porting notes' loop gives 0.4's
    def run():
        x, y, w, loss, X, Y = regression()
        opt = downhill.build("sgd", loss)
        data = downhill.Dataset([X, Y], batch_size=16, rng=4)
        return opt, data, dict(learning_rate=0.01, max_updates=7, validate_every=3)

    opt, data, kw = run()
    for train, valid in opt.iterate(data, **kw):
        pass
    final_validation = dict(opt._run.last_validation)
    assert valid != final_validation
    opt, data, kw = run()
    got_train, got_valid = opt.minimize(data, **kw)
    assert got_train == train and dict(got_valid) == final_validation


# ----------------------------------------------------------------------
# 7. the porting notes, and 0.4-style scripts


def test_porting_notes_list_the_differences():
    text = (ROOT / "README.rst").read_text()
    notes = text[text.index(".. porting-notes-start"):text.index(".. porting-notes-end")]
    for item in ["nesterov", "on_nonfinite", "DownhillWarning", "ValueError",
                 "beta1_decay", "shuffle_samples", "weighted", "RandomState",
                 # what real 0.4 clients met: each with its one-line change
                 "grad(NAME) clipped", 'name.endswith(" clipped")',
                 "validates once more (0.4 did", "for train, valid in opt.iterate(...): pass",
                 "depth-first", "inputs=[x, y]",
                 "``floatX``", "float(numpy.float32(0.01))", "``break``",
                 "opt.set_params(last)", "first array's length", "Dataset([[1]])"]:
        assert item in notes, item
    guide = (ROOT / "docs" / "guide.rst").read_text()
    assert "Porting from Theano" in guide and "porting-notes-start" in guide  # included


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.stem for s in SCRIPTS])
def test_04_style_scripts_run_to_completion(script, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               # the scripts test the calls, not the backend: skip Numba's compile time
               PYTENSOR_FLAGS="mode=FAST_COMPILE")
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    assert result.stdout.rstrip().endswith("OK")
    assert "Traceback" not in result.stderr
