"""Classify scikit-learn's 8x8 digits: softmax regression or a small MLP.

    python examples/digits-classifier.py --hidden 32 --output digits.png

A fifth of the images is held out for validation; the monitor ``acc`` is the
fraction classified correctly. Early stopping watches the validation loss.
Needs scikit-learn (bundled data, no download).
"""

import click

import downhill
from downhill import plot, problems


@click.command()
@click.option("--hidden", type=click.IntRange(min=0), default=0, show_default=True,
              help="Hidden tanh units; 0 gives softmax regression.")
@click.option("--algo", default="rmsprop", show_default=True, help="The algorithm.",
              type=click.Choice(sorted(downhill.ALGORITHMS), case_sensitive=False))
@click.option("--max-updates", type=click.IntRange(min=0), default=20, show_default=True,
              help="Iterations (passes over the training images).")
@click.option("--batch-size", type=click.IntRange(min=1),
              default=64, show_default=True, help="Images per batch.")
@click.option("--learning-rate", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Step size. Default: the one suggested for the algorithm.")
@click.option("--output", default="digits-classifier.png", show_default=True,
              type=click.Path(dir_okay=False), help="The PNG of loss and accuracy to write.")
def main(hidden, algo, max_updates, batch_size, learning_rate, output):
    """Train a digit classifier and plot its loss and accuracy."""
    problem = problems.digits(hidden=hidden)
    given = {} if learning_rate is None else {"learning_rate": learning_rate}
    history = problems.train(problem, algo, max_updates=max_updates, batch_size=batch_size,
                             validate_every=1, **given)
    click.echo(f"{problem.description}, {algo}: validation accuracy "
               f"{history.final_valid['acc']:.1%}, loss {history.final_valid['loss']:.4g}")
    plot.loss_curves(history, output, monitor=["loss", "acc"], title=problem.description)
    click.echo(f"wrote {output}")


if __name__ == "__main__":
    main()
