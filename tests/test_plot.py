"""The plots: optional matplotlib, histories drawn correctly, the problems' maths."""

import subprocess
import sys

import matplotlib.image
import numpy as np
import pytensor
import pytest

from downhill import plot, problems
from downhill.problems import History

PNG = b"\x89PNG\r\n\x1a\n"


def fake_history(label, n=20, path=False, **hyperparameters):
    h = History(label, updates_per_iteration=3, hyperparameters=hyperparameters)
    h.iterations = list(range(1, n + 1))
    h.train = [{"loss": 10.0 / i, "acc": 1 - 1.0 / i} for i in h.iterations]
    h.valid_iterations = list(range(0, n + 1, 5))
    h.valid = [{"loss": 10.0 / (i + 1), "acc": 1 - 1.0 / (i + 1)} for i in h.valid_iterations]
    if path:
        t = np.linspace(0, 1, n + 1)
        h.path = list(np.stack([-1.2 + 2.2 * t, 1 - t + t ** 2], axis=1))
    return h


def test_importing_downhill_does_not_import_matplotlib():
    code = ("import sys, downhill, downhill.problems, downhill.cli; "
            "print('matplotlib' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


def test_missing_matplotlib_names_the_extra(monkeypatch, tmp_path):
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.backends",
                 "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ImportError, match=r"pip install 'downhill\[plot\]'"):
        plot.loss_curves(fake_history("sgd"), tmp_path / "x.png")


def test_loss_curves_draw_train_and_validation_against_updates(tmp_path, monkeypatch):
    drawn = []
    real = plot._draw_losses

    def spy(ax, histories, monitor="loss"):
        real(ax, histories, monitor)
        drawn.append(ax)

    monkeypatch.setattr(plot, "_draw_losses", spy)
    out = plot.loss_curves([fake_history("a"), fake_history("b")], tmp_path / "c.png",
                           monitor=["loss", "acc"], title="t")
    assert out == tmp_path / "c.png" and out.read_bytes()[:8] == PNG
    loss_ax, acc_ax = drawn
    assert loss_ax.get_xlabel() == "updates" and loss_ax.get_ylabel() == "loss"
    assert loss_ax.get_yscale() == "log"           # 10 down to 0.5, positive
    assert acc_ax.get_yscale() == "linear"          # 0 to 0.95: no log scale
    labels = [line.get_label() for line in loss_ax.get_lines()]
    assert labels == ["a train", "a validation", "b train", "b validation"]
    assert loss_ax.get_legend() is None   # one legend for the figure, outside the axes
    train_line = loss_ax.get_lines()[0]
    assert list(train_line.get_xdata()) == [3 * i for i in range(1, 21)]
    valid_line = loss_ax.get_lines()[1]
    assert list(valid_line.get_xdata()) == [0, 15, 30, 45, 60]


def test_comparison_with_paths_and_image_grid(tmp_path):
    out = plot.comparison([fake_history("a", path=True), fake_history("b", path=True)],
                          tmp_path / "cmp.png", paths=True, title="both")
    pixels = matplotlib.image.imread(out)
    assert pixels.shape[1] > pixels.shape[0] > 100
    grid = plot.image_grid(np.random.default_rng(0).normal(size=(5, 8, 8)),
                           tmp_path / "grid.png", title="five")
    assert matplotlib.image.imread(grid).std() > 0.01


def saved_figures(monkeypatch):
    """Keep the figures that plot functions save, to inspect them."""
    figures = []
    real = plot._save

    def keep(fig, path):
        figures.append(fig)
        return real(fig, path)

    monkeypatch.setattr(plot, "_save", keep)
    return figures


def legend_texts(fig):
    (legend,) = fig.legends
    return [t.get_text() for t in legend.get_texts()]


@pytest.mark.parametrize("paths", [False, True])
def test_comparison_legend_has_one_entry_per_algorithm_and_a_style_key(
        tmp_path, monkeypatch, paths):
    figures = saved_figures(monkeypatch)
    names = ["sgd", "nag", "rmsprop", "rprop", "adagrad", "adadelta", "esgd", "adam"]
    histories = [fake_history(name, path=paths, learning_rate=0.01 * (i + 1), momentum=0.5,
                              validate_every=3, patience=4)
                 for i, name in enumerate(names)]
    plot.comparison(histories, tmp_path / "cmp.png", paths=paths, monitor=["loss", "acc"])
    (fig,) = figures
    texts = legend_texts(fig)
    key = ["training", "validation"] + (["start", "end of a path", "minimum (1, 1)"]
                                         if paths else [])
    # the hyperparameters by the names -H takes
    runs = [f"{name}: learning_rate={0.01 * (i + 1):g}, momentum=0.5"
            for i, name in enumerate(names)]
    assert texts == runs + [" "] + key    # loop settings (patience ...) left out
    (legend,) = fig.legends
    colors = [h.get_color() for h in legend.legend_handles[:len(names)]]
    assert colors == [f"C{i}" for i in range(len(names))]
    styles = [h.get_linestyle() for h in legend.legend_handles[len(names) + 1:][:2]]
    assert styles == ["-", "--"]
    # the legend is outside every axes: no curve hides under it
    fig.canvas.draw()
    box = legend.get_window_extent()
    for ax in fig.axes:
        assert ax.get_legend() is None
        assert box.x0 >= ax.get_window_extent().x1
    # one curve of each kind per run and monitor, in the run's colour
    curves = [ax for ax in fig.axes if ax.get_xlabel() == "updates"]
    assert len(curves) == 2
    for ax in curves:
        assert [line.get_color() for line in ax.get_lines()] == [
            f"C{i}" for i in range(len(names)) for _ in range(2)]


def test_one_panel_title_stays_clear_of_the_legend(tmp_path, monkeypatch):
    figures = saved_figures(monkeypatch)
    long = "sparse coding of 300 digits with 16 basis images"
    runs = [fake_history(name, learning_rate=1e-4, momentum=0.9, rms_regularizer=1e-5,
                         rms_halflife=100.0) for name in ("adadelta", "rmsprop")]
    plot.comparison(runs, tmp_path / "one.png", title=long)
    plot.comparison(runs, tmp_path / "two.png", title="T", monitor=["loss", "acc"])
    one, two = figures
    (ax,) = one.axes
    assert ax.get_title() == long and one.get_suptitle() == ""
    assert two.get_suptitle() == "T"
    for fig in figures:
        fig.canvas.draw()
        legend = fig.legends[0].get_window_extent()
        title = (fig._suptitle or fig.axes[0].title).get_window_extent()
        assert title.x1 <= legend.x0 or title.y0 >= legend.y1


def test_settings_text():
    assert plot.settings_text({}) == ""
    assert plot.settings_text({"learning_rate": 0.003, "momentum": 0.5, "nesterov": True,
                               "rms_regularizer": 100.0, "validate_every": 3,
                               "checkpoint": "x.npz"}) == (
        "learning_rate=0.003, momentum=0.5, nesterov, rms_regularizer=100")   # -H's names
    assert plot.settings_text({"nesterov": False, "hv_method": "rop"}) == ""


def test_rosenbrock_matches_numpy():
    x = pytensor.tensor.vector("x", dtype="float64")
    f = pytensor.function([x], problems.rosenbrock_loss(x))
    point = np.array([0.3, -0.7, 1.9, 0.2])
    want = sum(100 * (point[i + 1] - point[i] ** 2) ** 2 + (1 - point[i]) ** 2
               for i in range(3))
    assert f(point) == pytest.approx(want, rel=1e-12)
    assert problems.rosenbrock_value(point[0], point[1]) == pytest.approx(
        100 * (point[1] - point[0] ** 2) ** 2 + (1 - point[0]) ** 2, rel=1e-12)
    with pytest.raises(ValueError, match="dims"):
        problems.rosenbrock(dims=1)
    with pytest.raises(ValueError, match="known problems: rosenbrock"):
        problems.make_problem("banana")


def test_history_records_every_validation_and_the_path():
    problem = problems.rosenbrock(dims=2)
    start = problem.params[0].get_value().copy()
    history = problems.train(problem, "sgd", record_path=True, max_updates=7,
                             validate_every=3)
    assert history.iterations == list(range(1, 8))
    # validations before iterations 1, 4, 7 and the final one after iteration 7
    assert history.valid_iterations == [0, 3, 6, 7]
    assert len(history.path) == 8
    np.testing.assert_array_equal(history.path[0], start)
    assert history.valid[0]["loss"] == pytest.approx(
        problems.rosenbrock_value(*start), rel=1e-5)
    assert history.final_valid["loss"] == pytest.approx(
        min(v["loss"] for v in history.valid), rel=1e-6)


def test_a_comparison_of_every_algorithm_gives_each_its_own_colour():
    import downhill
    from downhill import plot

    colors = [plot._color(i) for i in range(len(downhill.ALGORITHMS))]
    assert len(set(colors)) == len(colors) > 10
