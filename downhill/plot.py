"""Figures of optimization runs: loss curves, Rosenbrock paths, image grids.

matplotlib is an optional dependency (``pip install 'downhill[plot]'``). It
is imported on first use, never by ``import downhill``. Figures are drawn
with matplotlib's object-oriented API on the Agg canvas and written to
files, so they work without a display and leave the pyplot backend of an
interactive session alone.

Every function takes the :class:`~downhill.problems.History` objects that
:func:`downhill.problems.train` records and writes one image file (PNG,
or any format matplotlib knows by the file's extension).
"""

import numpy as np

__all__ = ["loss_curves", "rosenbrock_paths", "comparison", "image_grid", "settings_text"]

INSTALL_HINT = "pip install 'downhill[plot]'"


def _figure(**kwargs):
    """A matplotlib Figure on the Agg canvas, or an ImportError saying how to get it."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as err:
        raise ImportError(
            f"plotting needs matplotlib, which is not installed: {INSTALL_HINT}") from err
    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path):
    fig.savefig(path, dpi=100)
    return path


#: Inches added to a figure's width for the legend on its right, at least.
_LEGEND_WIDTH = 2.5


def _legend_width(histories):
    """Inches for the legend: enough for its longest entry, so the axes keep their width."""
    longest = max((len(_label(h)) for h in histories), default=0)
    return max(_LEGEND_WIDTH, 0.075 * longest + 0.6)


#: Colours after matplotlib's ten (C0-C9), so that a comparison of all the
#: algorithms gives each its own.
_MORE_COLORS = ("black", "gold", "navy", "teal", "lime", "maroon", "magenta", "darkkhaki",
                "slateblue", "chocolate", "deepskyblue", "darkgreen", "salmon", "indigo")


def _color(i):
    i %= 10 + len(_MORE_COLORS)
    return f"C{i}" if i < 10 else _MORE_COLORS[i - 10]


def _draw_losses(ax, histories, monitor="loss"):
    """Train (solid) and validation (dashed, dots) curves against updates."""
    values = []
    for i, h in enumerate(histories):
        color = _color(i)
        if h.iterations:
            ys = [t[monitor] for t in h.train]
            values += ys
            ax.plot(h.updates(h.iterations), ys, color=color, lw=1.5,
                    label=f"{h.label} train")
        if h.valid_iterations:
            ys = [v[monitor] for v in h.valid]
            values += ys
            ax.plot(h.updates(h.valid_iterations), ys, color=color, lw=1, ls="--",
                    marker=".", label=f"{h.label} validation")
    if values and min(values) > 0 and max(values) / min(values) > 20:
        ax.set_yscale("log")
    ax.set_xlabel("updates")
    ax.set_ylabel(monitor)
    ax.grid(True, alpha=0.3)


#: Hyperparameters that do not change the steps, left out of legends.
_NOT_SHOWN = frozenset({
    "patience", "validate_every", "min_improvement", "on_nonfinite", "max_skips",
    "checkpoint", "checkpoint_every", "resume", "seed", "hv_method"})

def _value_text(value):
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, (int, float, np.floating, np.integer)):
        return f"{value:g}"
    return str(value)


def settings_text(hyperparameters):
    """A short text of the hyperparameters that shape the steps, for legends.

    Parameters
    ----------
    hyperparameters : dict
        E.g. :attr:`History.hyperparameters
        <downhill.problems.History>`.

    Returns
    -------
    str
        E.g. ``'learning_rate=0.003, momentum=0.7'``: the names as
        ``downhill algorithms`` lists them and ``-H`` takes them; loop
        settings (``patience``, ``validate_every``, checkpoints ...) are
        left out.
    """
    parts = []
    for name, value in hyperparameters.items():
        if name in _NOT_SHOWN or value is None:
            continue
        if name == "nesterov":
            if value:
                parts.append("nesterov")
            continue
        parts.append(f"{name}={_value_text(value)}")
    return ", ".join(parts)


def _label(history):
    text = settings_text(getattr(history, "hyperparameters", {}))
    return f"{history.label}: {text}" if text else history.label


def _legend(fig, histories, curves=True, paths=False):
    """A legend outside the axes, on the right: one entry per run, then a style key.

    The runs' entries show their colours and the hyperparameters each was
    given; the key says which line style is training, which validation
    (and, with ``paths``, the markers of the contour panel).
    """
    from matplotlib.lines import Line2D

    runs = [Line2D([], [], color=_color(i), lw=2, label=_label(h))
            for i, h in enumerate(histories)]
    key = []
    if curves:
        key += [Line2D([], [], color="0.35", lw=1.5, label="training"),
                Line2D([], [], color="0.35", lw=1, ls="--", marker=".",
                       label="validation")]
    if paths:
        key += [Line2D([], [], color="k", marker="s", ls="", ms=6, label="start"),
                Line2D([], [], color="0.35", marker="o", ls="", ms=5, label="end of a path"),
                Line2D([], [], color="k", marker="*", ls="", ms=12, label="minimum (1, 1)")]
    if key:   # a blank line between the runs and the key
        key.insert(0, Line2D([], [], ls="", label=" "))
    fig.legend(handles=runs + key, loc="outside right upper", fontsize="small",
               title="algorithm: settings", title_fontsize="small", alignment="left")


def _monitors(monitor):
    return [monitor] if isinstance(monitor, str) else list(monitor)


def loss_curves(histories, path, title=None, monitor="loss"):
    """Plot train and validation curves of one or more runs into an image.

    Parameters
    ----------
    histories : History or list of History
        Runs recorded by :func:`downhill.problems.train`.
    path : str or path-like
        The image file to write.
    title : str, optional
        Figure title.
    monitor : str or sequence of str, optional
        Which monitor to plot, or several (one panel each, side by side);
        default ``'loss'``. A panel's y axis is logarithmic when its values
        are positive and span more than a factor of 20.

    Returns
    -------
    path
        The ``path`` written.

    Raises
    ------
    ImportError
        If matplotlib is not installed.
    """
    if not isinstance(histories, (list, tuple)):
        histories = [histories]
    names = _monitors(monitor)
    fig = _figure(figsize=(6 * len(names) + _legend_width(histories), 4), layout="constrained")
    axes = fig.subplots(1, len(names), squeeze=False)[0]
    for ax, name in zip(axes, names):
        _draw_losses(ax, histories, name)
    _legend(fig, histories)
    if title and len(names) == 1:
        axes[0].set_title(title)
    elif title:
        fig.suptitle(title)
    return _save(fig, path)


def _limits(paths):
    """Plot limits covering the classic view and every path, with a margin."""
    (x0, x1), (y0, y1) = (-2.0, 2.0), (-1.0, 3.0)
    for path in paths:
        path = np.asarray(path, dtype=float)
        finite = path[np.isfinite(path).all(axis=1)]
        if len(finite):
            x0, x1 = min(x0, finite[:, 0].min()), max(x1, finite[:, 0].max())
            y0, y1 = min(y0, finite[:, 1].min()), max(y1, finite[:, 1].max())
    dx, dy = 0.05 * (x1 - x0), 0.05 * (y1 - y0)
    return (x0 - dx, x1 + dx), (y0 - dy, y1 + dy)


def _draw_contour(ax, histories):
    from .problems import rosenbrock_value
    paths = [np.asarray(h.path, dtype=float) for h in histories]
    (x0, x1), (y0, y1) = _limits(paths)
    xs, ys = np.meshgrid(np.linspace(x0, x1, 300), np.linspace(y0, y1, 300))
    levels = np.logspace(-1, 3.5, 14)
    ax.contour(xs, ys, rosenbrock_value(xs, ys), levels=levels, colors="0.75",
               linewidths=0.7)
    for i, (h, path) in enumerate(zip(histories, paths)):
        if len(path) == 0:
            continue
        ax.plot(path[:, 0], path[:, 1], color=_color(i), lw=1.5, label=h.label)
        ax.plot(path[-1, 0], path[-1, 1], "o", color=_color(i), ms=5)
    starts = [p[0] for p in paths if len(p)]
    if starts:
        ax.plot(starts[0][0], starts[0][1], "ks", ms=6, label="start")
    ax.plot(1, 1, "k*", ms=12, label="minimum (1, 1)")
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")


def rosenbrock_paths(histories, path, title=None):
    """Plot optimizer paths over the contours of the 2-D Rosenbrock function.

    Parameters
    ----------
    histories : list of History
        Runs on the 2-D Rosenbrock problem recorded with ``record_path=True``.
    path : str or path-like
        The image file to write.
    title : str, optional
        Figure title.

    Returns
    -------
    path
        The ``path`` written.

    Raises
    ------
    ImportError
        If matplotlib is not installed.
    """
    fig = _figure(figsize=(6 + _legend_width(histories), 5), layout="constrained")
    ax = fig.add_subplot()
    _draw_contour(ax, histories)
    _legend(fig, histories, curves=False, paths=True)
    ax.set_title(title or "Rosenbrock function: optimizer paths")
    return _save(fig, path)


def comparison(histories, path, title=None, paths=False, monitor="loss"):
    """Curves of several runs in one panel per monitor, optionally next to their paths.

    Parameters
    ----------
    histories : list of History
        One run per algorithm, on the same problem.
    path : str or path-like
        The image file to write.
    title : str, optional
        Figure title.
    paths : bool, optional
        Also draw the paths over the Rosenbrock contours (2-D Rosenbrock
        runs recorded with ``record_path=True``) in a first panel.
    monitor : str or sequence of str, optional
        The monitors to plot, one panel each; default ``'loss'``.

    Returns
    -------
    path
        The ``path`` written.

    Raises
    ------
    ImportError
        If matplotlib is not installed.
    """
    names = _monitors(monitor)
    panels = len(names) + bool(paths)
    fig = _figure(figsize=(6 * panels + _legend_width(histories), 4.5 + 0.5 * bool(paths)),
                  layout="constrained")
    axes = list(fig.subplots(1, panels, squeeze=False)[0])
    if paths:
        ax = axes.pop(0)
        _draw_contour(ax, histories)
        ax.set_title("paths over the contours")
    for ax, name in zip(axes, names):
        _draw_losses(ax, histories, name)
        ax.set_title(name)
    _legend(fig, histories, paths=paths)
    if title and panels == 1:
        # over the axes alone: a figure title would run into the legend
        axes[0].set_title(title)
    elif title:
        fig.suptitle(title)
    return _save(fig, path)


def image_grid(images, path, title=None, columns=None):
    """Show images (e.g. a learned basis) in a grid.

    Parameters
    ----------
    images : array of shape (n, height, width)
        The images. Each is shown on a symmetric gray scale around zero
        (mid-gray is 0), scaled to its own largest magnitude.
    path : str or path-like
        The image file to write.
    title : str, optional
        Figure title.
    columns : int, optional
        Images per row; default about the square root of ``n``.

    Returns
    -------
    path
        The ``path`` written.

    Raises
    ------
    ImportError
        If matplotlib is not installed.
    """
    images = np.asarray(images, dtype=float)
    n = len(images)
    columns = columns or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / columns))
    fig = _figure(figsize=(1.3 * columns, 1.3 * rows + 0.5), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if i < n:
            scale = np.abs(images[i]).max() or 1.0
            ax.imshow(images[i], cmap="gray", vmin=-scale, vmax=scale,
                      interpolation="nearest")
            ax.set_xlabel(f"{i}", fontsize="small")
        else:
            ax.axis("off")
    if title:
        fig.suptitle(title)
    return _save(fig, path)
