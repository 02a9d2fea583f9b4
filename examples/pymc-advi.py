"""ADVI in PyMC driven by downhill's optimizers, beside PyMC's own adam.

A Bayesian linear regression, y = a + b x + noise, fitted with
``pm.fit(method="advi", obj_optimizer=...)``; prints the posterior means and
the final ELBO loss for each optimizer. Needs PyMC (``pip install
'downhill[pymc]'``)::

    python examples/pymc-advi.py --steps 12000
"""

import time

import click
import numpy as np

import downhill


def regression_model(pm, seed=0):
    """y = a + b x + noise on 200 points (true a = 1, b = 2.5, sigma = 0.5)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=200)
    y = 1.0 + 2.5 * x + rng.normal(scale=0.5, size=200)
    with pm.Model() as model:
        a = pm.Normal("a", 0, 10)
        b = pm.Normal("b", 0, 10)
        sigma = pm.HalfNormal("sigma", 1)
        pm.Normal("y", a + b * x, sigma, observed=y)
    return model


@click.command()
@click.option("--steps", default=12000, show_default=True, type=click.IntRange(min=1),
              help="ADVI iterations per optimizer.")
@click.option("--learning-rate", default=0.01, show_default=True,
              type=click.FloatRange(min=0, min_open=True), help="Learning rate of every optimizer.")
def main(steps, learning_rate):
    """Fit one model with PyMC's adam and downhill's RMSProp, Adam and ESGD."""
    import pymc as pm

    model = regression_model(pm)
    optimizers = {
        "pm.adam": pm.adam(learning_rate=learning_rate),
        "downhill rmsprop": downhill.updates("rmsprop", learning_rate=learning_rate),
        "downhill adam": downhill.updates("adam", learning_rate=learning_rate),
        "downhill esgd": downhill.updates("esgd", learning_rate=learning_rate),
    }
    click.echo(f"{'optimizer':<18} {'a':>7} {'b':>7} {'sigma':>7} {'final loss':>11} {'time':>7}")
    for label, optimizer in optimizers.items():
        start = time.perf_counter()
        with model:
            approx = pm.fit(steps, method="advi", obj_optimizer=optimizer, random_seed=1,
                            progressbar=False)
        elapsed = time.perf_counter() - start
        post = approx.sample(4000, random_seed=2).posterior
        final = float(np.mean(approx.hist[-500:]))
        click.echo(f"{label:<18} {float(post['a'].mean()):7.3f} {float(post['b'].mean()):7.3f} "
                   f"{float(post['sigma'].mean()):7.3f} {final:11.2f} {elapsed:6.1f}s")


if __name__ == "__main__":
    main()
