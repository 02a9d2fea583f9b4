"""Sparse coding of scikit-learn's 8x8 digits: the learned basis as an image grid.

    python examples/digits-sparse-factorization.py --output digits-basis.png

Each image x is approximated by z @ d, with a basis d of a few 8x8 images and
codes z kept small and sparse by an L1 penalty:
mean((x - z d)^2) + sparsity * mean(|z|). Needs scikit-learn (bundled data,
no download).
"""

import click

import downhill
from downhill import plot, problems


@click.command()
@click.option("--samples", type=click.IntRange(min=1),
              default=300, show_default=True, help="Digit images to code.")
@click.option("--basis", type=click.IntRange(min=1),
              default=16, show_default=True, help="Basis images to learn.")
@click.option("--sparsity", type=click.FloatRange(min=0),
              default=0.1, show_default=True, help="Weight of the L1 penalty.")
@click.option("--algo", default="rmsprop", show_default=True, help="The algorithm.",
              type=click.Choice(sorted(downhill.ALGORITHMS), case_sensitive=False))
@click.option("--max-updates", type=click.IntRange(min=0),
              default=300, show_default=True, help="Updates.")
@click.option("--learning-rate", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Step size. Default: the one suggested for the algorithm.")
@click.option("--output", default="digits-basis.png", show_default=True,
              type=click.Path(dir_okay=False), help="The PNG of the basis to write.")
@click.option("--curves", default=None, type=click.Path(dir_okay=False),
              help="Also write the loss curves to this PNG.")
def main(samples, basis, sparsity, algo, max_updates, learning_rate, output, curves):
    """Learn a sparse basis for the digits and show it."""
    problem = problems.sparse_digits(samples=samples, basis=basis, sparsity=sparsity)
    given = {} if learning_rate is None else {"learning_rate": learning_rate}
    history = problems.train(problem, algo, max_updates=max_updates, **given)
    final = history.final_train
    click.echo(f"{algo}: loss {final['loss']:.4g}, reconstruction error {final['err']:.4g}, "
               f"near-zero codes {final['z<0.01']:.0%}")
    d = problem.params[0].get_value()
    plot.image_grid(d.reshape(-1, 8, 8), output,
                    title=f"{basis} basis images learned by {algo}")
    click.echo(f"wrote {output}")
    if curves:
        plot.loss_curves(history, curves, monitor=["loss", "err"],
                         title="sparse coding of the digits")
        click.echo(f"wrote {curves}")


if __name__ == "__main__":
    main()
