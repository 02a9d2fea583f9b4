"""The Rosenbrock function in 100 dimensions: loss curves of several algorithms.

    python examples/rosenbrock-100d.py --output rosenbrock-100d.png

Its minimum is 0 at (1, ..., 1); the monitor ``dist`` is the distance to it.
Each algorithm runs with the hyperparameters suggested for it on this
problem (``downhill.problems.SUGGESTED``, shown in the legend) unless
``--learning-rate`` or ``--momentum`` sets one for all.
"""

import click

import downhill
from downhill import plot, problems


def _split_algos(ctx, param, value):
    names = [a.strip().lower() for a in value.split(",") if a.strip()]
    unknown = [a for a in names if a not in downhill.ALGORITHMS]
    if unknown or not names:
        raise click.BadParameter(
            (f"unknown algorithm {unknown[0]!r}" if unknown else "give at least one algorithm")
            + f"; known algorithms: {', '.join(sorted(downhill.ALGORITHMS))}",
            ctx=ctx, param=param)
    return names


@click.command()
@click.option("--dims", type=click.IntRange(min=2),
              default=100, show_default=True, help="Dimensions (>= 2).")
@click.option("--algos", default=",".join(sorted(downhill.ALGORITHMS)), show_default=True,
              callback=_split_algos,
              help="Comma-separated algorithms.")
@click.option("--max-updates", type=click.IntRange(min=0),
              default=500, show_default=True, help="Updates per algorithm.")
@click.option("--learning-rate", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Step size of every algorithm. Default: each algorithm's suggestion.")
@click.option("--momentum", type=click.FloatRange(0, 1, max_open=True), default=None,
              help="Momentum of every algorithm, 0 <= m < 1. Default: each one's suggestion.")
@click.option("--output", default="rosenbrock-100d.png", show_default=True,
              type=click.Path(dir_okay=False), help="The PNG to write.")
def main(dims, algos, max_updates, learning_rate, momentum, output):
    """Loss and distance to the minimum on the N-D Rosenbrock function."""
    given = {name: value for name, value in
             (("learning_rate", learning_rate), ("momentum", momentum)) if value is not None}
    histories = []
    for algo in algos:
        problem = problems.rosenbrock(dims=dims)
        try:
            history = problems.train(problem, algo, max_updates=max_updates, **given)
        except FloatingPointError as err:
            click.echo(f"{algo}: failed: {err}")
            continue
        click.echo(f"{algo}: loss {history.final_valid['loss']:.4g}, "
                   f"distance {history.final_valid['dist']:.3g}")
        histories.append(history)
    plot.comparison(histories, output, monitor=["loss", "dist"],
                    title=f"{dims}-D Rosenbrock, {max_updates} updates per algorithm")
    click.echo(f"wrote {output}")


if __name__ == "__main__":
    main()
