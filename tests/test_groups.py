"""Parameter groups and frozen parameters: a group's values equal a separate
optimizer's on its parameters, a decay mask leaves its parameters untouched
by decay, a frozen parameter neither moves nor has its gradient computed
(checked in the compiled step), values change without compiling, groups are
saved and checked in checkpoints. Resuming after a SIGINT:
test_training_features.py."""

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

import downhill
from downhill.schedules import ExponentialDecay

#: Each algorithm's values for the two parts of a separable loss.
VALUES = {
    "adabelief": ({"learning_rate": 0.05}, {"learning_rate": 0.01, "beta2_halflife": 20.0}),
    "adagrad_window": ({"learning_rate": 0.1}, {"learning_rate": 0.02,
                                                "rms_regularizer": 0.01}),
    "adamax": ({"learning_rate": 0.05}, {"learning_rate": 0.01, "beta1_halflife": 3.0}),
    "amsgrad": ({"learning_rate": 0.05}, {"learning_rate": 0.01, "beta2_halflife": 20.0}),
    "nadam": ({"learning_rate": 0.05}, {"learning_rate": 0.01, "beta2_halflife": 20.0}),
    "radam": ({"learning_rate": 0.05}, {"learning_rate": 0.01, "radam_threshold": 6.0}),
    "yogi": ({"learning_rate": 0.05}, {"learning_rate": 0.01, "beta2_halflife": 20.0}),
    "adadelta": ({"rms_halflife": 5.0}, {"rms_halflife": 20.0}),
    "adagrad": ({"learning_rate": 0.1}, {"learning_rate": 0.02}),
    "adam": ({"learning_rate": 0.05}, {"learning_rate": 0.01, "beta2_halflife": 20.0}),
    "esgd": ({"learning_rate": 0.05}, {"learning_rate": 0.01}),
    "nag": ({"learning_rate": 0.01, "momentum": 0.5}, {"learning_rate": 0.003,
                                                       "momentum": 0.9}),
    "rmsprop": ({"learning_rate": 0.02}, {"learning_rate": 0.005, "rms_halflife": 4.0}),
    "rprop": ({"learning_rate": 0.02}, {"learning_rate": 0.005, "rprop_increase": 1.2}),
    "sgd": ({"learning_rate": 0.02, "momentum": 0.5}, {"learning_rate": 0.005}),
    "lion": ({"learning_rate": 0.01}, {"learning_rate": 0.003, "beta2_halflife": 20.0}),
    "lars": ({"learning_rate": 0.05}, {"learning_rate": 0.01, "trust_coefficient": 0.01}),
    "lamb": ({"learning_rate": 0.05}, {"learning_rate": 0.01, "beta2_halflife": 20.0}),
    "adafactor": ({"learning_rate": 0.05}, {"learning_rate": 0.01, "decay_exponent": 0.7}),
    "lookahead": ({"learning_rate": 0.05}, {"learning_rate": 0.01, "slow_step_size": 0.8}),
    # Schedule-Free reads its step size once for all parameters (the average's
    # weights): a group may differ in what each parameter's update reads
    "schedule_free_sgd": ({"learning_rate": 0.01}, {"interpolation": 0.8}),
    # (and its beta2, with the paper's corrected step size)
    "schedule_free_adamw": ({"learning_rate": 0.01}, {"interpolation": 0.8,
                                                      "rms_regularizer": 1e-3}),
}


def parts(seed=0):
    """A loss without inputs that is a sum of one part per parameter."""
    rng = np.random.default_rng(seed)
    A, c = rng.normal(size=(5, 3)), rng.normal(size=5)
    B, d = rng.normal(size=(4, 2)), rng.normal(size=4)
    w = pytensor.shared(np.zeros(3), name="w")
    b = pytensor.shared(np.zeros(2), name="b")
    f = ((pt.constant(A) @ w - c) ** 2).sum()
    g = ((pt.constant(B) @ b - d) ** 2).sum() + (b ** 4).sum()
    return w, b, f, g


def steps(opt, **values):
    fn = pytensor.function([], [], updates=opt.get_updates(**values))
    for _ in range(25):
        fn()


@pytest.mark.parametrize("algo", sorted(downhill.ALGORITHMS))
def test_groups_equal_separate_optimizers_on_disjoint_parameters(algo):
    first, second = VALUES[algo]
    w, b, f, g = parts()
    together = downhill.build(algo, f + g, groups=[dict(second, params=[b], name="b part")])
    steps(together, **first)
    w1, b1, f1, g1 = parts()
    steps(downhill.build(algo, f1), **first)
    steps(downhill.build(algo, g1), **dict(first, **second))
    np.testing.assert_allclose(w.get_value(), w1.get_value(), rtol=1e-13, atol=1e-15)
    if algo == "esgd":
        return  # b's random vectors come from its position's generator: 1 here, 0 alone
    np.testing.assert_allclose(b.get_value(), b1.get_value(), rtol=1e-13, atol=1e-15)
    assert not np.allclose(w.get_value(), 0) and not np.allclose(b.get_value(), 0)


def test_a_decay_mask_leaves_its_parameters_untouched_by_decay():
    # b sits at the minimum of its part: only decay could move it
    w = pytensor.shared(np.zeros(3), name="w")
    bias = pytensor.shared(np.ones(2), name="bias")
    loss = ((w - 2.0) ** 2).sum() + ((bias - 1.0) ** 2).sum()
    opt = downhill.build("adam", loss, groups={"bias*": {"weight_decay": 0.0}})
    steps(opt, learning_rate=0.1, weight_decay=0.1)
    assert bias.get_value().tobytes() == np.ones(2).tobytes()
    # w decays: it ends below where Adam without decay takes it
    w2 = pytensor.shared(np.zeros(3), name="w")
    steps(downhill.build("adam", ((w2 - 2.0) ** 2).sum()), learning_rate=0.1)
    assert (w.get_value() < w2.get_value() - 1e-3).all()
    # and the compiled step has no decay term for the masked parameter
    mask = opt.groups[0]
    assert mask.name == "bias*" and mask.values == {"weight_decay": 0.0}


def mlp(freeze=None):
    rng = np.random.default_rng(0)
    x, y = pt.matrix("x"), pt.vector("y")
    w1 = pytensor.shared(rng.normal(size=(4, 3)), name="w1")
    w2 = pytensor.shared(rng.normal(size=3), name="w2")
    loss = ((pt.tanh(x @ w1) @ w2 - y) ** 2).mean()
    X, Y = rng.normal(size=(32, 4)), rng.normal(size=32)
    return downhill.build("rmsprop", loss, freeze=freeze), (w1, w2), x, X, Y


def test_a_frozen_parameter_does_not_move_and_its_gradient_is_not_computed():
    opt, (w1, w2), x, X, Y = mlp(freeze=["w1"])
    before = w1.get_value().copy()
    opt.minimize([X, Y], max_updates=3, learning_rate=0.01)
    assert w1.get_value().tobytes() == before.tobytes()
    assert opt.params == [w2] and not np.allclose(w2.get_value(), mlp()[1][1].get_value())
    step, _, _ = opt._functions.step()
    graph = step.maker.fgraph
    updated = [graph.inputs[i] for i in graph.update_mapping.values()]
    assert w2 in updated and w1 not in updated and w1 in graph.inputs
    # the batch x enters the gradient of w1 only (x.T @ ...): one use of x fewer
    full, _, _, _, _ = mlp()
    full.minimize([X, Y], max_updates=1, learning_rate=0.01)
    full_step = full._functions.step()[0].maker.fgraph

    def uses_of_x(fgraph):
        (xin,) = [v for v in fgraph.inputs if v.name == "x"]
        return len(fgraph.clients[xin])

    assert uses_of_x(graph) < uses_of_x(full_step)
    # and no state is kept for it
    assert not [v for v in opt.state_variables if v.name.startswith("w1")]


def test_freeze_names_a_parameter_or_pattern_that_exists():
    with pytest.raises(ValueError, match=r"freeze: the pattern 'v\*' matches no parameter "
                                         r"\(parameters: w1, w2\)"):
        mlp(freeze=["v*"])
    with pytest.raises(ValueError, match="freeze leaves no parameter to optimize"):
        mlp(freeze=["w*"])


def test_a_graph_schedule_per_group():
    w, b, f, g = parts()
    schedule = ExponentialDecay(0.05, halflife=5)
    opt = downhill.build("sgd", f + g, groups=[{"params": [b], "learning_rate": schedule}])
    steps(opt, learning_rate=0.02)
    w1, b1, f1, g1 = parts()
    steps(downhill.build("sgd", g1), learning_rate=ExponentialDecay(0.05, halflife=5))
    np.testing.assert_allclose(b.get_value(), b1.get_value(), rtol=1e-13)


def test_a_groups_value_changes_without_compiling():
    w, b, f, g = parts()
    opt = downhill.build("rmsprop", f + g, groups=[{"params": ["b"], "learning_rate": 0.1}])
    opt.minimize(max_updates=2, learning_rate=0.01)
    compiled = len(opt._functions._steps)
    opt.groups[0].set(learning_rate=0.001)
    assert opt.groups[0].shared["learning_rate"].get_value() == 0.001
    opt.minimize(max_updates=2, learning_rate=0.01)
    assert len(opt._functions._steps) == compiled
    with pytest.raises(ValueError, match="group 'group0' does not set momentum"):
        opt.groups[0].set(momentum=0.5)
    with pytest.raises(ValueError, match=r"invalid learning_rate: -1"):
        opt.groups[0].set(learning_rate=-1)


def test_groups_are_saved_and_checked_in_checkpoints(tmp_path):
    path = tmp_path / "run.npz"
    w, b, f, g = parts()
    spec = [{"params": ["b"], "learning_rate": 0.1, "name": "bias"}]
    opt = downhill.build("sgd", f + g, groups=spec)
    opt.minimize(max_updates=2, learning_rate=0.01, checkpoint=path)
    table = opt.state_dict()["groups"]
    assert table == {"groups": [{"name": "bias", "params": ["b"],
                                 "hyperparameters": {"learning_rate": 0.1}}], "frozen": []}
    # the same groups load; a changed number is the saved one again
    w, b, f, g = parts()
    again = downhill.build("sgd", f + g, groups=[dict(spec[0], learning_rate=0.5)])
    again.load(path)
    assert again.groups[0].values == {"learning_rate": 0.1}
    # other groups, or none, do not
    for other, message in [
            (None, r"groups holds the groups \['bias'\], but this optimizer has \[\]"),
            ([{"params": ["w"], "learning_rate": 0.1, "name": "bias"}],
             r"group 'bias' holds \['b'\], but here \['w'\]"),
            ([{"params": ["b"], "momentum": 0.1, "name": "bias"}],
             r"group 'bias' sets \['learning_rate'\], but here \['momentum'\]")]:
        w, b, f, g = parts()
        with pytest.raises(ValueError, match=message):
            downhill.build("sgd", f + g, groups=other).load(path)
        assert not w.get_value().any()   # nothing loaded


def test_frozen_parameters_are_checked_in_checkpoints(tmp_path):
    path = tmp_path / "run.npz"
    opt, params, x, X, Y = mlp(freeze=["w1"])
    opt.minimize([X, Y], max_updates=1, learning_rate=0.01, checkpoint=path)
    assert opt.state_dict()["groups"]["frozen"] == ["w1"]
    mlp(freeze=["w1"])[0].load(path)
    with pytest.raises(ValueError, match=r"groups.frozen is \['w1'\], but this optimizer "
                                         r"freezes \[\]"):
        downhill.build("rmsprop", opt._loss, params=[params[1]]).load(path)


@pytest.mark.parametrize("spec,message", [
    ([{"params": ["b"], "learning_rte": 0.1}],
     r"group 'group0': unknown hyperparameter 'learning_rte'; did you mean 'learning_rate'"),
    ([{"params": ["b"], "patience": 3}], r"group 'group0': patience cannot differ per group"),
    ([{"params": ["b"], "max_gradient_global_norm": 1.0}],
     "max_gradient_global_norm cannot differ per group"),
    ([{"params": ["b"], "learning_rate": -1}], r"invalid learning_rate: -1"),
    ([{"params": ["b"], "learning_rate": lambda n: 0.1}],
     "is a Python function or a validation-driven schedule, which a group cannot take"),
    ([{"params": ["c*"], "learning_rate": 0.1}],
     r"group 'group0': the pattern 'c\*' matches no parameter \(parameters: w, b\)"),
    ([{"learning_rate": 0.1}], "group 'group0' has no 'params'"),
    ([{"params": ["b"], "learning_rate": 0.1}, {"params": ["*"], "momentum": 0.5}],
     "parameter 'b' is in group 'group0' and in group 'group1'"),
    ({"b": 0.1}, r"the values given for 'b' must be a dict of hyperparameters"),
    ("b", "groups must be a list of dicts or a dict"),
])
def test_bad_groups_are_refused_naming_the_problem(spec, message):
    w, b, f, g = parts()
    with pytest.raises(ValueError, match=message):
        downhill.build("sgd", f + g, groups=spec)


def test_a_switch_a_group_turns_on_builds_it_for_that_group_only():
    w, b, f, g = parts()
    opt = downhill.build("sgd", f + g, groups=[{"params": [b], "momentum": 0.9}])
    steps(opt, learning_rate=0.01)
    names = {v.name for v in opt.state_variables}
    assert names == {"b_vel"}


def test_the_cli_sets_a_hyperparameter_per_name_pattern():
    import json

    from click.testing import CliRunner

    from downhill.cli import cli
    run = CliRunner().invoke
    base = ["run", "rosenbrock", "--algo", "sgd", "--max-updates", "3", "--json"]
    given = run(cli, base + ["--learning-rate", "1e-4"])
    grouped = run(cli, base + ["-G", "x:learning_rate=1e-4"])
    assert given.exit_code == 0 and grouped.exit_code == 0, grouped.output
    given, grouped = json.loads(given.stdout), json.loads(grouped.stdout)
    assert grouped["settings"]["groups"] == "x: learning_rate=0.0001"
    assert grouped["train"] == given["train"]   # the group's rate was the one used
    for args, message in [(["-G", "y*:learning_rate=1e-4"], "matches no parameter"),
                          (["-G", "x:patience=2"], "patience cannot differ per group"),
                          (["-G", "x:learning_rate=-1"], "invalid learning_rate: -1.0"),
                          (["-G", "x=1"], "is not PATTERN:NAME=VALUE")]:
        result = run(cli, base + args)
        assert result.exit_code == 2 and "Invalid value for '-G'" in result.output, args
        assert message in result.output, result.output


def test_a_value_read_once_for_all_parameters_cannot_differ_per_group():
    # NAdam's momentum schedule is one product over all the parameters
    w, b, f, g = parts()
    opt = downhill.build("nadam", f + g, groups=[{"params": [b], "beta1_halflife": 3.0}],
                         mu_schedule=True)
    with pytest.raises(ValueError, match="group 'group0': beta1_halflife cannot differ per "
                                         "group for NAdam with these settings"):
        opt.get_updates(learning_rate=0.01)
    opt.get_updates(learning_rate=0.01, mu_schedule=False)


def test_minimize_takes_groups_and_freeze():
    w, b, f, g = parts()
    downhill.minimize(f + g, algo="sgd", groups={"b": {"learning_rate": 0.0001}},
                      freeze=["w"], max_updates=2, learning_rate=0.01)
    assert not w.get_value().any() and b.get_value().any()
    w1, b1, f1, g1 = parts()
    downhill.minimize(g1, algo="sgd", max_updates=2, learning_rate=0.0001)
    np.testing.assert_allclose(b.get_value(), b1.get_value(), rtol=1e-13)
