"""Plot the ready learning-rate schedules of downhill.schedules into one PNG.

    python examples/schedules.py --updates 1000 --output schedules.png

The reduce-on-plateau schedule is driven by a made-up validation loss that
falls and then levels off, observed every ``updates / 40`` updates, which is
drawn in the lower panel.
"""

import click
import numpy as np

from downhill.schedules import CosineWithWarmup, ExponentialDecay, ReduceOnPlateau, StepDecay


def validation_loss(n, updates, rng):
    """A made-up validation loss after n of ``updates`` updates: falls, then levels off."""
    return 0.2 + np.exp(-12.5 * n / updates) + rng.normal(0, 0.003)


def curves(updates, peak, seed=0):
    """Each schedule's value at update counts 0 .. updates - 1.

    Returns
    -------
    dict of str to array
        Schedule label to its values.
    valid : (array, array)
        Update counts of the validations and the losses observed there.
    """
    quarter = max(updates // 4, 1)
    plateau = ReduceOnPlateau(peak, factor=0.5, patience=3, min_improvement=0.02)
    schedules = {
        f"StepDecay(factor=0.5, every={quarter})": StepDecay(peak, 0.5, every=quarter),
        f"ExponentialDecay(halflife={quarter})": ExponentialDecay(peak, halflife=quarter),
        f"CosineWithWarmup(warmup={updates // 10}, total={updates})":
            CosineWithWarmup(peak, warmup=updates // 10, total=updates),
        "ReduceOnPlateau(factor=0.5, patience=3, min_improvement=0.02)": plateau,
    }
    every = max(updates // 40, 1)
    rng = np.random.default_rng(seed)
    values = {label: np.empty(updates) for label in schedules}
    valid_at, valid_loss = [], []
    for n in range(updates):
        if n % every == 0:        # the training loop validates, then observes
            loss = validation_loss(n, updates, rng)
            plateau.observe(loss)
            valid_at.append(n)
            valid_loss.append(loss)
        for label, schedule in schedules.items():
            values[label][n] = schedule(n)
    return values, (np.array(valid_at), np.array(valid_loss))


@click.command()
@click.option("--updates", type=click.IntRange(min=10), default=1000, show_default=True,
              help="Number of updates (mini-batches) to plot.")
@click.option("--peak", type=click.FloatRange(min=0, min_open=True), default=0.1,
              show_default=True, help="Initial or peak learning rate of every schedule.")
@click.option("--output", type=click.Path(dir_okay=False, writable=True),
              default="schedules.png", show_default=True, help="PNG file to write.")
def main(updates, peak, output):
    """Plot every ready schedule over UPDATES updates into one PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values, (valid_at, valid_loss) = curves(updates, peak)
    fig, (top, bottom) = plt.subplots(
        2, 1, sharex=True, figsize=(8, 6), gridspec_kw={"height_ratios": [3, 1]})
    n = np.arange(updates)
    for label, value in values.items():
        top.plot(n, value, label=label, linewidth=1.8)
    top.set_ylabel("learning rate")
    top.set_title("downhill.schedules")
    top.set_ylim(-0.03 * peak, 1.5 * peak)   # room for the legend above the curves
    top.legend(loc="upper right", fontsize="small")
    top.grid(alpha=0.3)
    bottom.plot(valid_at, valid_loss, "o-", markersize=3, color="tab:red")
    bottom.set_ylabel("validation loss\n(drives plateau)")
    bottom.set_xlabel("update count")
    bottom.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(output, dpi=100)
    plt.close(fig)
    click.echo(f"wrote {output}")


if __name__ == "__main__":
    main()
