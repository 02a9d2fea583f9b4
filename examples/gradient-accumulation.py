"""Gradient accumulation on the digits classifier: batches of 64 from micro-batches of 16.

    python examples/gradient-accumulation.py --max-updates 20 --output accumulation.png

The same MLP (32 tanh units, SGD with momentum) trained three ways on the
same images in the same order: batches of 64; micro-batches of 16 with
``accumulate=4``, whose steps equal the first run's (to float32 rounding:
the largest difference of a weight is printed) while the step's batch never
holds more than 16 images; and plain batches of 16 (four times as many
steps, each noisier). Prints each run's steps and best validation loss,
plots the validation curves. Needs scikit-learn.
"""

import click
import numpy as np

import downhill
from downhill import plot, problems


def run(label, micro, accumulate, max_updates, learning_rate, momentum, big):
    """Train on batches of ``micro`` images, ``accumulate`` per step."""
    problem = problems.digits(hidden=32)
    X, Y = problem.train
    n = len(X) // big * big   # whole big batches, so that every run sees the same images
    batches = [[X[i:i + micro], Y[i:i + micro]] for i in range(0, n, micro)]
    opt = downhill.build("sgd", problem.loss, params=problem.params, monitors=problem.monitors)
    history = problems.History(label, len(batches) // accumulate,
                               dict(learning_rate=learning_rate, momentum=momentum,
                                    accumulate=accumulate))
    # a list of batches is read in order, one pass per iteration
    for i, (train, valid) in enumerate(opt.iterate(
            downhill.Dataset(batches), problem.valid, max_updates=max_updates,
            learning_rate=learning_rate, momentum=momentum, accumulate=accumulate,
            validate_every=1, patience=1000, final_params="last")):
        history.valid_iterations.append(i)
        history.valid.append(valid)
        history.iterations.append(i + 1)
        history.train.append(train)
    history.valid_iterations.append(len(history.iterations))
    history.valid.append(dict(opt._run.last_validation))
    return history, [p.get_value() for p in problem.params], opt._run.updates


@click.command()
@click.option("--max-updates", type=click.IntRange(min=1), default=20, show_default=True,
              help="Iterations (passes over the training images).")
@click.option("--learning-rate", type=click.FloatRange(min=0, min_open=True), default=0.1,
              show_default=True, help="SGD's step size.")
@click.option("--momentum", type=click.FloatRange(0, 1, max_open=True), default=0.9,
              show_default=True, help="SGD's momentum.")
@click.option("--micro", type=click.IntRange(min=1), default=16, show_default=True,
              help="Images per micro-batch.")
@click.option("--accumulate", type=click.IntRange(min=2), default=4, show_default=True,
              help="Micro-batches per step.")
@click.option("--output", default="gradient-accumulation.png", show_default=True,
              type=click.Path(dir_okay=False), help="The PNG of validation curves to write.")
def main(max_updates, learning_rate, momentum, micro, accumulate, output):
    """Batches of k m images against k accumulated micro-batches of m, and plain ones."""
    big = micro * accumulate
    settings = (max_updates, learning_rate, momentum, big)
    runs = [run(f"batches of {big}", big, 1, *settings),
            run(f"{accumulate} x {micro} accumulated", micro, accumulate, *settings),
            run(f"batches of {micro}", micro, 1, *settings)]
    for history, _, steps in runs:
        best = min(history.valid, key=lambda v: v["loss"])
        click.echo(f"{history.label}: {steps} steps, best validation loss "
                   f"{best['loss']:.4f}, accuracy {best['acc']:.1%}")
    difference = max(float(np.abs(a - b).max()) for a, b in zip(runs[0][1], runs[1][1]))
    click.echo(f"largest difference of a weight, batches of {big} against accumulated: "
               f"{difference:.2g}")
    plot.loss_curves([h for h, _, _ in runs], output, monitor=["loss", "acc"],
                     title="digits MLP, SGD: one step per batch of "
                           f"{big}, accumulated or not, and per batch of {micro}")
    click.echo(f"wrote {output}")


if __name__ == "__main__":
    main()
