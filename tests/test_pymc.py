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
