"""Damaged states are refused before anything changes; checkpoint keys are unique.

Every field of a state is checked before the optimizer, its schedules or
its datasets change: a damaged one raises one ValueError naming the field,
and the optimizer (parameters, state, counters, hyperparameters in force)
and both datasets (random generator, position, permutation) are as they
were. Parameter names that repeat, or look like another parameter's key,
or are reserved by the file format, still round-trip every value.
"""

import copy

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

import downhill
from downhill.schedules import ReduceOnPlateau, Schedule
from downhill.util import unique_keys


def regression(n=64, seed=0):
    r = np.random.default_rng(seed)
    X = r.normal(size=(n, 3))
    y = X @ np.array([1.0, -2.0, 0.5]) + 0.3
    w = pytensor.shared(np.zeros(3), name="w")
    b = pytensor.shared(np.asarray(0.0), name="b")
    x = pt.matrix("x")
    t = pt.vector("t")
    return ((x @ w + b - t) ** 2).mean(), (w, b), X, y


_BUILT = {}


def setup(algo="rmsprop", **hyper):
    """A trained optimizer, its datasets and a good state of them; then more
    training, so that a partial load would show. Built (and compiled) once
    per algorithm; each call starts again from the good state."""
    key = (algo, tuple(sorted(hyper.items())))
    if key not in _BUILT:
        loss, params, X, y = regression()
        opt = downhill.build(algo, loss)
        train = downhill.Dataset([X, y], batch_size=16, rng=1, name="train")
        valid = downhill.Dataset([X, y], batch_size=24, rng=2, name="valid")
        sets = {"train": train, "valid": valid}
        settings = dict(learning_rate=ReduceOnPlateau(0.01, patience=0), momentum=0.5,
                        validate_every=1, **hyper)
        opt.minimize(train, valid, max_updates=3, **settings)
        _BUILT[key] = opt, sets, opt.state_dict(datasets=sets)
    opt, sets, good = _BUILT[key]
    opt.load_state_dict(good, datasets=sets)
    opt.minimize(sets["train"], sets["valid"], max_updates=2, learning_rate=0.02, momentum=0.5)
    return opt, sets, copy.deepcopy(good)


def snapshot(opt, sets):
    """Everything a load could change, as comparable values."""
    state = opt.state_dict(datasets=sets)
    shared = {name: float(var.get_value()) for name, var in opt._shared.items()}
    return state, shared, dict(opt._defaults), dict(opt._settings.schedule_states)


def assert_unchanged(before, after):
    (s1, shared1, defaults1, pending1), (s2, shared2, defaults2, pending2) = before, after
    for table in ("params", "state"):
        for name, value in s1[table].items():
            np.testing.assert_array_equal(s2[table][name], value, err_msg=f"{table}.{name}")
    assert s2["counters"] == s1["counters"] and s2.get("progress") == s1.get("progress")
    assert s2["hyperparameters"] == s1["hyperparameters"]
    for name in ("train", "valid"):
        d1, d2 = s1["datasets"][name], s2["datasets"][name]
        assert d2["rng"] == d1["rng"], f"dataset {name}: rng changed"
        assert d2["position"] == d1["position"]
        np.testing.assert_array_equal(d2["perm"], d1["perm"])
    stop1, stop2 = s1["early_stopping"], s2["early_stopping"]
    assert {k: v for k, v in stop1.items() if k != "best_params"} == \
        {k: v for k, v in stop2.items() if k != "best_params"}
    assert shared2 == shared1 and defaults2 == defaults1 and pending2 == pending1


def put(path, value):
    """A breakage: set the field at ``path`` (a tuple of keys) to ``value``."""
    def breakage(state):
        table = state
        for key in path[:-1]:
            table = table[key]
        table[path[-1]] = value
    return breakage


DAMAGED = [
    (("counters", "iteration"), "abc", "counters.iteration"),
    (("counters", "iteration"), -5, "counters.iteration"),
    (("counters", "iteration"), 1.5, "counters.iteration"),
    (("counters", "updates"), 1.5, "counters.updates"),
    (("counters", "updates"), True, "counters.updates"),
    (("counters", "run_start"), 99, "counters.run_start"),
    (("early_stopping", "best_loss"), "x", "early_stopping.best_loss"),
    (("early_stopping", "best_loss"), float("nan"), "early_stopping.best_loss"),
    (("early_stopping", "best_iteration"), 99, "early_stopping.best_iteration"),
    (("early_stopping", "fails"), -1, "early_stopping.fails"),
    (("early_stopping", "last_validation"), 5, "early_stopping.last_validation"),
    (("early_stopping", "last_validation"), {"loss": "x"}, "early_stopping.last_validation"),
    (("early_stopping", "fresh_validation"), 1, "early_stopping.fresh_validation"),
    (("schedules", "learning_rate"), {"value": "x"}, "schedules.learning_rate"),
    (("schedules", "learning_rate"), [1], "schedules.learning_rate"),
    (("progress", "batches"), -1, "progress.batches"),
    (("progress", "sums"), ["x"], "progress.sums"),
    (("progress", "sums"), [1.0, 2.0], "progress.weight"),  # sums without a weight
    (("progress", "skips"), 0.5, "progress.skips"),
    (("hyperparameters", "momentum"), 2.0, "hyperparameters"),
    (("hyperparameters", "momentum"), "x", "hyperparameters"),
    (("params", "w"), "abc", "parameter 'w'"),
    (("params", "w"), np.zeros(4), "parameter 'w'"),
    (("state", "w_vel"), [1, 2, 3], "state variable 'w_vel'"),
    (("early_stopping", "best_params", "w"), np.zeros(2), "best parameter 'w'"),
    (("datasets", "valid", "rng"), {"bit_generator": "PCG64", "state": 5}, "datasets.valid"),
    (("datasets", "valid", "rng", "state", "state"), "x", "datasets.valid"),
    (("datasets", "valid", "position"), True, "datasets.valid"),
    (("datasets", "valid", "position"), 99, "datasets.valid"),
    (("datasets", "valid", "perm"), np.arange(64.0), "datasets.valid"),
    (("datasets", "train", "perm"), np.zeros(64, int), "datasets.train"),
]
# a list where a table belongs, at every table
TABLES = ["params", "state", "hyperparameters", "schedules", "counters", "progress",
          "early_stopping", "datasets"]
DAMAGED += [((name,), [1], name) for name in TABLES]
DAMAGED += [(("early_stopping", "best_params"), [1], "best parameter"),
            (("datasets", "train"), [1], "datasets.train"),
            (("datasets", "valid"), [1], "datasets.valid")]


@pytest.mark.parametrize("path,value,field", DAMAGED,
                         ids=[f"{'.'.join(p)}={v!r}"[:40] for p, v, _ in DAMAGED])
def test_a_damaged_field_is_named_and_changes_nothing(path, value, field):
    opt, sets, good = setup()
    bad = copy.deepcopy(good)
    put(path, value)(bad)
    before = snapshot(opt, sets)
    with pytest.raises(ValueError, match="^state") as error:
        opt.load_state_dict(bad, datasets=sets)
    assert field in str(error.value)
    assert_unchanged(before, snapshot(opt, sets))
    opt.load_state_dict(good, datasets=sets)   # the good state still loads


def test_the_valid_dataset_failing_leaves_the_train_dataset_as_it_was():
    opt, sets, good = setup()
    bad = copy.deepcopy(good)
    bad["datasets"]["valid"]["rng"]["state"]["inc"] = "damaged"
    train_before = sets["train"].state_dict()
    assert train_before["rng"] != good["datasets"]["train"]["rng"]  # a load would show
    with pytest.raises(ValueError, match="datasets.valid"):
        opt.load_state_dict(bad, datasets=sets)
    assert sets["train"].state_dict()["rng"] == train_before["rng"]
    assert sets["train"].state_dict()["position"] == train_before["position"]


def test_rprop_steps_that_contradict_each_other_are_refused_before_anything_changes():
    opt, sets, good = setup("rprop", rprop_min_step=1e-6, rprop_max_step=1.0)
    bad = copy.deepcopy(good)
    bad["hyperparameters"]["rprop_min_step"] = 2.0   # > rprop_max_step
    before = snapshot(opt, sets)
    with pytest.raises(ValueError, match="state field hyperparameters.*rprop_min_step"):
        opt.load_state_dict(bad, datasets=sets)
    assert_unchanged(before, snapshot(opt, sets))


class HalfWay(Schedule):
    """A schedule whose load_state_dict changes itself, then fails."""

    def __init__(self, value):
        self.value = value
        self.loads = 0

    def _at(self, n):
        return self.value

    def state_dict(self):
        return {"value": self.value}

    def load_state_dict(self, state):
        self.loads += 1
        self.value = state["value"]
        if state["value"] > 1:
            raise ValueError(f"value {state['value']} > 1")


def test_resume_checks_the_schedules_saved_states_before_loading(tmp_path):
    path = tmp_path / "run.npz"
    loss, (w, b), X, y = regression()
    opt = downhill.build("sgd", loss)
    opt.minimize([X, y], max_updates=2, checkpoint=path, learning_rate=HalfWay(0.01),
                 momentum=HalfWay(0.5), validate_every=1)
    saved = downhill.checkpoint.read(path)[1]
    assert saved["schedules"] == {"learning_rate": {"value": 0.01}, "momentum": {"value": 0.5}}
    # the second schedule's state in the file is one it refuses, half-way
    saved["schedules"] = {"learning_rate": {"value": 0.02}, "momentum": {"value": 5.0}}
    downhill.checkpoint.write(path, saved, downhill.__version__, "SGD")

    loss, (w, b), X, y = regression()
    again = downhill.build("sgd", loss)
    w.set_value(np.full(3, 7.0))
    lr, mu = HalfWay(0.01), HalfWay(0.5)
    with pytest.raises(ValueError, match="state field schedules.momentum does not fit"):
        again.iterate([X, y], checkpoint=path, resume=True, learning_rate=lr, momentum=mu)
    np.testing.assert_array_equal(w.get_value(), np.full(3, 7.0))   # nothing loaded
    assert again.state_dict()["counters"]["iteration"] == 0
    assert (lr.value, lr.loads, mu.value, mu.loads) == (0.01, 0, 0.5, 0)  # schedules untouched


def test_iterate_checks_a_loaded_schedule_state_before_anything_changes():
    opt, sets, good = setup()
    good["schedules"]["learning_rate"]["value"] = 0.5   # > the schedule's initial value
    opt.load_state_dict(good, datasets=sets)
    before = snapshot(opt, sets)
    schedule = ReduceOnPlateau(0.01, patience=0)
    with pytest.raises(ValueError, match="schedules.learning_rate does not fit.*value"):
        opt.iterate(sets["train"], sets["valid"], learning_rate=schedule)
    assert_unchanged(before, snapshot(opt, sets))
    assert schedule.state_dict()["value"] == 0.01


# ----------------------------------------------------------------------
# unique keys


def test_unique_keys_whatever_the_names():
    assert unique_keys(["w", "w", "b"]) == ["w#0", "w#1", "b"]   # as before
    for names in (["w", "w", "w#0"], ["a", "a#1", "a", "a#1"], ["x#0", "x", "x"],
                  ["__array__"], ["w#1", "w", "w"]):
        keys = unique_keys(names)
        assert len(set(keys)) == len(keys), (names, keys)
        assert "__array__" not in keys


@pytest.mark.parametrize("names", [["w", "w", "w#0"], ["__array__", "b", "b"]])
def test_a_round_trip_keeps_every_value_whatever_the_names(tmp_path, names):
    params = [pytensor.shared(np.full(2, float(i + 1)), name=n) for i, n in enumerate(names)]
    loss = sum((p ** 2).sum() for p in params)
    opt = downhill.build("sgd", loss, params=params, monitor_gradients=True)
    opt.minimize(None, max_updates=2, learning_rate=0.1, momentum=0.5)
    values = [p.get_value().copy() for p in params]
    assert len(set(opt.state_dict()["params"])) == len(params)
    path = tmp_path / "run.npz"
    opt.save(path)
    for p in params:
        p.set_value(np.zeros(2))
    opt.load(path)
    for p, value in zip(params, values):
        np.testing.assert_array_equal(p.get_value(), value, err_msg=p.name)


def test_a_schedule_that_ends_at_zero_leaves_a_loadable_checkpoint(tmp_path):
    import pytensor
    from downhill.schedules import CosineWithWarmup
    w = pytensor.shared(np.array([1.0, -2.0]), name="w")
    loss = ((w - 3) ** 2).sum()
    path = tmp_path / "run.npz"
    opt = downhill.build("sgd", loss)
    opt.minimize(None, learning_rate=CosineWithWarmup(peak=0.01, warmup=2, total=10),
                 max_updates=10, patience=100, checkpoint=path)
    fresh = downhill.build("sgd", loss)
    fresh.load(path)
    np.testing.assert_array_equal(fresh.params[0].get_value(), w.get_value())
    with pytest.raises(ValueError, match="invalid learning_rate"):
        fresh.minimize(None, learning_rate=0.0)  # a number of 0 is still refused
