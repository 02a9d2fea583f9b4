"""The Rosenbrock function in 100 dimensions: loss curves of several algorithms.

    python examples/rosenbrock-100d.py --output rosenbrock-100d.png

Its minimum is 0 at (1, ..., 1); the monitor ``dist`` is the distance to it.
"""

import click

import downhill
from downhill import plot, problems


@click.command()
@click.option("--dims", default=100, show_default=True, help="Dimensions (>= 2).")
@click.option("--algos", default=",".join(sorted(downhill.ALGORITHMS)), show_default=True,
              help="Comma-separated algorithms.")
@click.option("--max-updates", default=500, show_default=True, help="Updates per algorithm.")
@click.option("--learning-rate", default=1e-3, show_default=True, help="Step size.")
@click.option("--momentum", default=0.9, show_default=True, help="Momentum (0 <= m < 1).")
@click.option("--output", default="rosenbrock-100d.png", show_default=True,
              type=click.Path(dir_okay=False), help="The PNG to write.")
def main(dims, algos, max_updates, learning_rate, momentum, output):
    """Loss and distance to the minimum on the N-D Rosenbrock function."""
    histories = []
    for algo in [a.strip() for a in algos.split(",") if a.strip()]:
        problem = problems.rosenbrock(dims=dims)
        try:
            history = problems.train(problem, algo, max_updates=max_updates,
                                     learning_rate=learning_rate, momentum=momentum)
        except FloatingPointError as err:
            click.echo(f"{algo}: failed: {err}")
            continue
        click.echo(f"{algo}: loss {history.final_valid['loss']:.4g}, "
                   f"distance {history.final_valid['dist']:.3g}")
        histories.append(history)
    plot.comparison(histories, output, monitor=["loss", "dist"],
                    title=f"{dims}-D Rosenbrock, learning_rate={learning_rate:g}, "
                          f"momentum={momentum:g}")
    click.echo(f"wrote {output}")


if __name__ == "__main__":
    main()
