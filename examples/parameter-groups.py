"""Parameter groups: weight decay on the weights but not on the bias.

    python examples/parameter-groups.py --max-updates 300 --output parameter-groups.png

A linear regression with 30 features (a third of them useful) and an
intercept of 5, fitted to 40 noisy samples with Adam: without weight decay
it overfits; with decay on every parameter the bias is pulled towards 0
too, and every prediction is off by what it lost; with the bias in a group
of its own that has ``weight_decay=0`` (a decay mask,
``groups={"b": {"weight_decay": 0}}``) the weights shrink and the bias
stays. Prints each run's best validation loss and its bias; plots the
validation curves.
"""

import click
import numpy as np
import pytensor
import pytensor.tensor as pt

import downhill
from downhill import plot, problems

RUNS = {
    "no weight decay": {},
    "weight decay on every parameter": {"decay": True},
    "weight decay, the bias masked": {"decay": True, "groups": {"b": {"weight_decay": 0.0}}},
}


def data(seed=0, n=40, features=30):
    rng = np.random.default_rng(seed)
    true = rng.normal(size=features) * (rng.random(features) < 0.3)
    X, Xv = rng.normal(size=(n, features)), rng.normal(size=(1000, features))
    return (X, X @ true + 5 + rng.normal(size=n)), (Xv, Xv @ true + 5 + rng.normal(size=1000))


def run(label, decay, groups, max_updates, weight_decay, learning_rate):
    """One run; returns its History and its bias."""
    (X, y), (Xv, yv) = data()
    w = pytensor.shared(np.zeros(X.shape[1]), name="w")
    b = pytensor.shared(np.asarray(0.0), name="b")
    x, t = pt.matrix("x"), pt.vector("t")
    opt = downhill.build("adam", ((x @ w + b - t) ** 2).mean(), groups=groups)
    settings = dict(learning_rate=learning_rate, weight_decay=weight_decay if decay else 0.0)
    history = problems.History(label, 5, dict(settings, groups=groups))
    every = 5
    for i, (train, valid) in enumerate(opt.iterate(
            downhill.Dataset([X, y], batch_size=8, rng=0), [Xv, yv], max_updates=max_updates,
            validate_every=every, patience=1000, **settings)):
        if i % every == 0:
            history.valid_iterations.append(i)
            history.valid.append(valid)
        history.iterations.append(i + 1)
        history.train.append(train)
    history.valid_iterations.append(len(history.iterations))
    history.valid.append(dict(opt._run.last_validation))
    return history, float(b.get_value()), opt._run.best_loss


@click.command()
@click.option("--max-updates", type=click.IntRange(min=1), default=300, show_default=True,
              help="Iterations (passes over the 40 samples, 5 batches each).")
@click.option("--weight-decay", type=click.FloatRange(min=0, min_open=True), default=0.5,
              show_default=True, help="Decoupled weight decay where it applies.")
@click.option("--learning-rate", type=click.FloatRange(min=0, min_open=True), default=0.05,
              show_default=True, help="Adam's step size.")
@click.option("--output", default="parameter-groups.png", show_default=True,
              type=click.Path(dir_okay=False), help="The PNG of validation curves to write.")
def main(max_updates, weight_decay, learning_rate, output):
    """Weight decay with and without a mask for the bias, and none."""
    histories = []
    for label, spec in RUNS.items():
        history, bias, best = run(label, spec.get("decay", False), spec.get("groups"),
                                  max_updates, weight_decay, learning_rate)
        click.echo(f"{label}: best validation loss {best:.4g}, bias {bias:.3f} (true: 5)")
        histories.append(history)
    plot.loss_curves(histories, output, title="linear regression, 40 samples, 30 features")
    click.echo(f"wrote {output}")


if __name__ == "__main__":
    main()
