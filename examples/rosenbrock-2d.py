"""Every registered algorithm on the 2-D Rosenbrock function: paths over the contours.

    python examples/rosenbrock-2d.py --output rosenbrock-2d.png

All algorithms start from the same point, each with the hyperparameters
suggested for it on this problem (``downhill.problems.SUGGESTED``, shown in
the legend) unless ``--learning-rate`` or ``--momentum`` sets one for all;
the figure shows each path over the function's contours and the loss curves
next to it. A run whose loss becomes non-finite is reported and left out of
the figure.
"""

import click

import downhill
from downhill import plot, problems


@click.command()
@click.option("--max-updates", type=click.IntRange(min=0),
              default=300, show_default=True, help="Updates per algorithm.")
@click.option("--learning-rate", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Step size of every algorithm. Default: each algorithm's suggestion.")
@click.option("--momentum", type=click.FloatRange(0, 1, max_open=True), default=None,
              help="Momentum of every algorithm, 0 <= m < 1. Default: each one's suggestion.")
@click.option("--seed", default=0, show_default=True, help="Seed of the starting point.")
@click.option("--output", default="rosenbrock-2d.png", show_default=True,
              type=click.Path(dir_okay=False), help="The PNG to write.")
def main(max_updates, learning_rate, momentum, seed, output):
    """Paths of every registered algorithm over the 2-D Rosenbrock contours."""
    given = {name: value for name, value in
             (("learning_rate", learning_rate), ("momentum", momentum)) if value is not None}
    histories = []
    for algo in sorted(downhill.ALGORITHMS):
        problem = problems.rosenbrock(dims=2, seed=seed)
        try:
            history = problems.train(problem, algo, record_path=True, max_updates=max_updates,
                                     **given)
        except FloatingPointError as err:
            click.echo(f"{algo}: failed: {err}")
            continue
        click.echo(f"{algo}: loss {history.final_valid['loss']:.4g}, "
                   f"distance to the minimum {history.final_valid['dist']:.3g}")
        histories.append(history)
    plot.comparison(histories, output, paths=True,
                    title=f"2-D Rosenbrock, {max_updates} updates per algorithm")
    click.echo(f"wrote {output}")


if __name__ == "__main__":
    main()
