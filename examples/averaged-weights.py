"""Averaged weights on the digits classifier: the iterate against its averages.

    python examples/averaged-weights.py --max-updates 20 --output averaged-weights.png

An MLP with 32 tanh units trained by SGD with momentum on small batches and a
large step, which leaves the iterate rattling around the minimum. The same
run three times (averaging never changes the steps): validating the
iterate, an exponential moving average (``average='ema'``) and, from the
middle of the run on, the Polyak average (``average='polyak'``), each
validated with ``validate_on='average'`` so that early stopping and the
best parameters kept are the average's. Prints each run's best validation
loss and accuracy; plots the validation curves. Needs scikit-learn.
"""

import click

from downhill import plot, problems


def runs(max_updates, learning_rate, momentum, batch_size, halflife):
    """Train the three runs; return their histories, plain first."""
    per_pass = None
    histories = []
    for average in ("none", "ema", "polyak"):
        problem = problems.digits(hidden=32)
        extra = {}
        if average != "none":
            extra = dict(average=average, validate_on="average")
        if average == "ema":
            extra["average_halflife"] = halflife
        if average == "polyak":   # from the middle of the run on
            extra["average_start"] = per_pass * max_updates // 2
        history = problems.train(problem, "sgd", max_updates=max_updates,
                                 batch_size=batch_size, learning_rate=learning_rate,
                                 momentum=momentum, validate_every=1, patience=1000, **extra)
        per_pass = history.updates_per_iteration
        history.label = {"none": "the iterate", "ema": f"EMA, half-life {halflife:g}",
                         "polyak": "Polyak, second half"}[average]
        histories.append(history)
    return histories


@click.command()
@click.option("--max-updates", type=click.IntRange(min=1), default=20, show_default=True,
              help="Iterations (passes over the training images).")
@click.option("--learning-rate", type=click.FloatRange(min=0, min_open=True), default=0.2,
              show_default=True, help="SGD's step size.")
@click.option("--momentum", type=click.FloatRange(0, 1, max_open=True), default=0.9,
              show_default=True, help="SGD's momentum.")
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True,
              help="Images per batch.")
@click.option("--halflife", type=click.FloatRange(min=0, min_open=True), default=100,
              show_default=True, help="Half-life of the EMA, in updates.")
@click.option("--output", default="averaged-weights.png", show_default=True,
              type=click.Path(dir_okay=False), help="The PNG of validation curves to write.")
def main(max_updates, learning_rate, momentum, batch_size, halflife, output):
    """Validation of the iterate, its EMA and its Polyak average on the digits."""
    histories = runs(max_updates, learning_rate, momentum, batch_size, halflife)
    for history in histories:
        best = min(history.valid, key=lambda v: v["loss"])
        click.echo(f"{history.label}: best validation loss {best['loss']:.4f}, "
                   f"accuracy {best['acc']:.1%}")
    plot.loss_curves(histories, output, monitor=["loss", "acc"],
                     title=f"digits MLP, SGD (learning rate {learning_rate:g}, momentum "
                           f"{momentum:g}, batches of {batch_size})")
    click.echo(f"wrote {output}")


if __name__ == "__main__":
    main()
