"""downhill's optimizers driving PyMC's ADVI through ``downhill.updates``.

Runs where PyMC is installed (CI's PyMC environment, where PyMC pins
PyTensor 2.38); CI sets DOWNHILL_REQUIRE_PYMC=1 there, so that a missing
PyMC fails instead of skipping.
"""

import os
import pathlib
import runpy

import numpy as np
import pytest

import downhill

pytestmark = pytest.mark.pymc  # CI's first environment deselects these: -m "not pymc"

STEPS = 12000
EXAMPLE = pathlib.Path(__file__).resolve().parents[1] / "examples" / "pymc-advi.py"


@pytest.fixture(scope="module")
def pm():
    if os.environ.get("DOWNHILL_REQUIRE_PYMC"):
        import pymc
        return pymc
    return pytest.importorskip("pymc")


@pytest.fixture(scope="module")
def regression(pm):
    """The example's Bayesian linear regression, y = a + b x + noise."""
    return runpy.run_path(str(EXAMPLE))["regression_model"](pm)


def posterior_means(pm, model, optimizer):
    with model:
        approx = pm.fit(STEPS, method="advi", obj_optimizer=optimizer, random_seed=1,
                        progressbar=False)
    trace = approx.sample(4000, random_seed=2)
    means = {name: float(trace.posterior[name].mean()) for name in ("a", "b", "sigma")}
    return means, np.asarray(approx.hist)


@pytest.fixture(scope="module")
def reference(pm, regression):
    return posterior_means(pm, regression, pm.adam(learning_rate=0.01))[0]


@pytest.mark.parametrize("algo", ["rmsprop", "adam", "esgd", "adagrad_window"])
def test_advi_with_downhill_matches_pymcs_adam(pm, regression, reference, algo):
    means, history = posterior_means(pm, regression,
                                     downhill.updates(algo, learning_rate=0.01))
    assert np.all(np.isfinite(history)), f"{algo}: non-finite loss in the ADVI history"
    for name, value in reference.items():
        assert abs(means[name] - value) < 0.05, (algo, name, means[name], value)


def test_the_learning_rate_stays_reachable_from_a_callback(pm, regression):
    fn = downhill.updates("rmsprop", learning_rate=0.01)
    seen = []

    def halve(approx, losses, i):
        if i == 50:
            fn.learning_rate.set_value(fn.learning_rate.get_value() / 2)
        seen.append(float(fn.learning_rate.get_value()))

    with regression:
        pm.fit(100, method="advi", obj_optimizer=fn, callbacks=[halve], random_seed=1,
               progressbar=False)
    assert seen[0] == pytest.approx(0.01) and seen[-1] == pytest.approx(0.005)


def test_the_advi_example_runs(pm):
    from click.testing import CliRunner

    result = CliRunner().invoke(runpy.run_path(str(EXAMPLE))["main"], ["--steps", "300"])
    assert result.exit_code == 0, result.output
    for label in ("pm.adam", "downhill rmsprop", "downhill adam", "downhill esgd"):
        assert label in result.output


def test_pm_fit_follows_a_downhill_schedule(pm, regression):
    from downhill.schedules import ExponentialDecay, Linear, Sequence
    schedule = Sequence([Linear(0.0, 0.01, 50), ExponentialDecay(0.01, halflife=100)], [50])
    fn = downhill.updates("adam", learning_rate=schedule)
    seen = {}

    def record(approx, losses, i):  # called after step i, which used schedule(i - 1)
        seen[i] = float(fn.learning_rate.get_value())
        assert fn.update_count == i

    with regression:
        graph = pm.fit(400, method="advi", obj_optimizer=fn, callbacks=[record],
                       random_seed=1, progressbar=False)
    assert sorted(seen) == list(range(1, 401))
    for i, value in seen.items():
        assert value == pytest.approx(schedule(i - 1), rel=1e-14, abs=1e-300), i
    assert seen[401 - 1] == pytest.approx(0.01 * 2 ** (-349 / 100), rel=1e-14)

    # the same steps as a shared rate set by a callback to the schedule's values
    import pytensor
    lr = pytensor.shared(schedule(0))

    def drive(approx, losses, i):
        lr.set_value(schedule(i))

    with regression:
        driven = pm.fit(400, method="advi",
                        obj_optimizer=downhill.updates("adam", learning_rate=lr),
                        callbacks=[drive], random_seed=1, progressbar=False)
    assert driven.hist[0] == graph.hist[0]  # the first step runs at schedule(0) = 0
    np.testing.assert_allclose(np.asarray(graph.hist), np.asarray(driven.hist), rtol=1e-12)


@pytest.mark.parametrize("algo", sorted(downhill.ALGORITHMS))
def test_every_algorithm_in_pm_fit_takes_a_shared_rate_and_call_time_keywords(
        pm, regression, algo):
    import functools

    import pytensor

    def fit(optimizer):
        with regression:
            approx = pm.fit(30, method="advi", obj_optimizer=optimizer, random_seed=1,
                            progressbar=False)
        return np.asarray(approx.hist)

    rate = 1e-4  # small enough for plain SGD on this ELBO
    bound = fit(downhill.updates(algo, learning_rate=rate))
    assert np.all(np.isfinite(bound))
    np.testing.assert_array_equal(
        fit(functools.partial(downhill.updates(algo), learning_rate=pytensor.shared(rate))),
        bound)
    fn = downhill.updates(algo, learning_rate=0.5)
    np.testing.assert_array_equal(fit(lambda g, p: fn(g, p, learning_rate=rate)), bound)
    assert fn.keywords == {"learning_rate": 0.5}
    assert fn.optimizer.learning_rate.get_value() == rate
