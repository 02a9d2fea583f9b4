"""The progress display of a training run: one line on stderr, redrawn in place.

:meth:`~downhill.Optimizer.iterate` and :func:`downhill.minimize` take
``progressbar=None`` (the name PyMC uses): None shows the display when
stderr is a terminal or in a Jupyter notebook, True always, False never;
:func:`display` turns that value into a :class:`Progress`. The training
loop (``downhill.training``) reports to it through a few hooks, in this
order::

    on_resume(path, run)                    # when a checkpoint was loaded
    with compiling():                       # compiling the step and evaluation
        ...
    on_start(run, max_updates)
    on_validation(run, monitors, improved)  # before the first iteration, then
    on_iteration(run, monitors)             # every iteration, every validation
    on_finish(run, reason, checkpoint)      # however the loop ends

On a terminal the display first shows the compile phase with its elapsed
time ("compiling the RMSProp step (slow the first time, cached
afterwards) 3.2 s"), then one line with the iteration, a bar and the time
left when ``max_updates`` is known, the loss, the best validation loss and
updates per second. The line never exceeds the terminal's width: narrower
terminals drop the less important parts (rate, bar, time). When the run
ends the line is replaced by a summary that stays on the screen (unless
the display is ``transient``, as the command line's is). Without a
terminal, a display asked for with ``progressbar=True`` writes one line per
validation and the summary. Whether shown or not, :meth:`Progress.on_finish`
logs the summary (logger ``downhill``, INFO), and a :class:`Progress` keeps
what it was told (where the run stopped, why, the best iteration, the
checkpoint written): the command line passes its own and reads them.

The hooks cost a few attribute assignments per iteration; the line is drawn
by `rich <https://rich.readthedocs.io>`_'s ``rich.live.Live`` from its
own thread, four times a second (about 0.3 ms a drawing). rich is imported
only when a display is shown. Measured against tqdm on this project's
machine: importing ``rich.live`` costs about 45 ms after ``import
downhill``, tqdm about 12 ms; an update of ``rich.progress.Progress`` 2.4 us,
of ``tqdm`` 0.8 us (neither is called per update here). rich was chosen for
its width-aware rendering of a custom line, its redirection of other output
above the line while it is drawn, and because every PyMC environment has
it.
"""

import builtins
import contextlib
import math
import os
import sys
import time

from .interrupts import SIGINT
from .util import log

__all__ = ["Progress", "display", "REASONS", "REFRESH_PER_SECOND"]

#: How often the line is redrawn.
REFRESH_PER_SECOND = 4

#: Why a run ended (``Progress.reason``), in words.
REASONS = {
    "max_updates": "reached max_updates",
    "data": "reached the end of the training data",
    "patience": "stopped by patience",
    "interrupted": "interrupted",
    "non-finite": "stopped on a non-finite loss",
    "closed": "stopped by the caller",
    "error": "stopped by an error",
}

_SPINNER = "\u280b\u2819\u2839\u2838\u283c\u2834\u2826\u2827\u2807\u280f"

#: Displays drawing now: a second one at the same time stays hidden.
_LIVE = []


def _wanted():
    """Whether ``progressbar=None`` shows the display: stderr is a terminal, or Jupyter."""
    stderr = sys.stderr
    if stderr is None:
        return False
    in_ipython = getattr(builtins, "get_ipython", None) is not None
    try:
        tty = stderr.isatty()
    except (AttributeError, ValueError, OSError):
        tty = False
    if not (tty or in_ipython):
        return False
    console = _console()
    return console.is_jupyter or (console.is_terminal and not console.is_dumb_terminal)


def _console():
    from rich.console import Console
    return Console(stderr=True)


def _number(value):
    return "-" if value is None else f"{value:.3g}"


def _count(n, word):
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _clock(seconds):
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


def _rate(per_second):
    if per_second >= 1e4:
        return f"{per_second / 1e3:.0f}k upd/s"
    if per_second >= 1e3:
        return f"{per_second / 1e3:.1f}k upd/s"
    return f"{per_second:.3g} upd/s"


def _fit(pieces, width, bar=None, sep="  "):
    """Lay out pieces of text on one line of at most ``width`` characters.

    Parameters
    ----------
    pieces : list of (int, str)
        ``(priority, text)`` in display order; the highest priority number
        is dropped first while the line is too long (0 is never dropped).
    width : int
        The room.
    bar : (int, int, callable), optional
        ``(position, priority, draw)``: a bar inserted before piece
        ``position``, between 10 and 30 characters wide, taking the room
        left; ``draw(n)`` returns it ``n`` characters wide.

    sep : str, optional
        What joins the pieces.

    Returns
    -------
    str
        The line: the kept pieces, bar included, or the first ones cut
        with an ellipsis when even they do not fit.
    """
    kept = list(range(len(pieces)))
    with_bar = bar is not None

    def length():
        texts = [pieces[i][1] for i in kept]
        return sum(map(len, texts)) + len(sep) * (len(texts) - 1) + \
            (10 + len(sep) if with_bar else 0)

    while length() > width:
        droppable = [i for i in kept if pieces[i][0] > 0]
        # the highest number goes first; of equals, the rightmost
        worst = max(droppable, key=lambda i: (pieces[i][0], i), default=None)
        if with_bar and (worst is None or bar[1] >= pieces[worst][0]):
            with_bar = False
        elif worst is not None:
            kept.remove(worst)
        else:
            break
    texts = [pieces[i][1] for i in kept]
    if with_bar:
        room = min(30, width - length() + 10)
        position = sum(1 for i in kept if i < bar[0])
        texts.insert(position, bar[2](room))
    line = sep.join(texts)
    if len(line) > width:  # only the never-dropped pieces left
        line = line[:max(width - 1, 0)] + "\u2026"
    return line


class Progress:
    """What the training loop reports about a run, and optionally a display of it.

    Parameters
    ----------
    show : bool or None, optional
        None (default): show the display when stderr is a terminal or in a
        Jupyter notebook; True: always (without a terminal, one line per
        validation and a summary); False: never.
    label : str, optional
        The name in the display; default the optimizer's class name.
    transient : bool, optional
        Erase the line when the run ends instead of leaving its summary
        (the command line does, and prints its own results).

    Attributes
    ----------
    phase : str or None
        ``'compiling'``, ``'running'`` or ``'done'`` (None before); a run
        that ends while compiling stays at ``'compiling'``.
    reason : str or None
        Why the run ended: a key of :data:`REASONS`.
    iteration, updates : int
        The optimizer's counters at the latest report.
    best_loss : float
        The best validation loss of the run (inf before a validation).
    best_iteration : int or None
        The iteration at which it was reached.
    checkpoint : str or None
        The checkpoint file written when the run ended, if any.
    resumed_from : (str, int) or None
        The checkpoint loaded before the run and its iteration.
    """

    def __init__(self, show=None, label=None, transient=False):
        if show is not None and not isinstance(show, bool):
            raise TypeError(f"show must be None, True or False, got {show!r}")
        self.show = show
        self.label = label
        self.transient = bool(transient)
        self.phase = None
        self.reason = None
        self.iteration = self.updates = 0
        self.best_loss = math.inf
        self.best_iteration = None
        self.checkpoint = None
        self.resumed_from = None
        self.loss = None
        self.total = None
        self._first = (0, 0)     # counters when the run started
        self._began = None       # time the run (after compiling) started
        self._compile_began = None
        self._ended = None
        self._mode = "off"       # 'live', 'lines' or 'off'
        self._live = None
        self._ascii = False

    # ------------------------------------------------------------------
    # hooks called by the training loop

    def on_resume(self, path, run):
        """A checkpoint was loaded before the run (logged at INFO).

        Parameters
        ----------
        path : str or path
            The checkpoint file.
        run : RunState
            The state loaded.
        """
        self.resumed_from = (os.fspath(path), run.iteration)
        log.info("%s: resumed from %s (iteration %d, update %d)", self._name(),
                 self.resumed_from[0], run.iteration, run.updates)

    @contextlib.contextmanager
    def compiling(self):
        """Context of the compile phase; the display starts here."""
        self.phase = "compiling"
        self.reason = None
        self.checkpoint = None
        self._compile_began = time.monotonic()
        self._open()
        try:
            yield
        except BaseException as error:
            # the phase stays 'compiling': where the run ended
            self.reason = "interrupted" if isinstance(error, KeyboardInterrupt) else "error"
            self._close()
            raise

    def on_start(self, run, max_updates):
        """Training starts (the functions are compiled).

        Parameters
        ----------
        run : RunState
            The optimizer's run state.
        max_updates : int or None
            Iterations this call will run at most.
        """
        self.phase = "running"
        self.total = max_updates
        self._note(run)
        self._first = (run.iteration, run.updates)
        self._began = time.monotonic()

    def on_iteration(self, run, monitors):
        """An iteration ended.

        Parameters
        ----------
        run : RunState
            The optimizer's run state.
        monitors : dict
            The iteration's training monitors, ``'loss'`` first.
        """
        self.iteration = run.iteration
        self.updates = run.updates
        self.loss = monitors.get("loss")

    def on_validation(self, run, monitors, improved):
        """The parameters were validated.

        Parameters
        ----------
        run : RunState
            The optimizer's run state.
        monitors : dict
            The validation's monitors.
        improved : bool
            Whether the loss is the run's new best.
        """
        self._note(run)
        if self._mode == "lines":
            mark = " (best)" if improved else ""
            self._write(f"{self._name()} iteration {run.iteration}: validation loss "
                        f"{_number(monitors.get('loss'))}{mark}")

    def on_finish(self, run, reason, checkpoint=None):
        """The run ended; the summary is logged (INFO) and shown.

        Parameters
        ----------
        run : RunState
            The optimizer's run state.
        reason : str
            A key of :data:`REASONS`.
        checkpoint : str or path, optional
            The checkpoint file written as the run ended.
        """
        self._note(run)
        self.reason = reason
        self.checkpoint = None if checkpoint is None else os.fspath(checkpoint)
        if self.phase != "compiling":   # a run that ended while compiling stays there
            self.phase = "done"
        self._ended = time.monotonic()
        log.info("%s", self.summary())
        if self._mode == "lines":
            self._write(self.summary())
        self._close()

    # ------------------------------------------------------------------
    # what the display says

    def _note(self, run):
        self.iteration = run.iteration
        self.updates = run.updates
        self.best_loss = run.best_loss
        self.best_iteration = run.best_iteration if math.isfinite(run.best_loss) else None

    def _name(self):
        return self.label or "training"

    @property
    def elapsed(self):
        """Seconds from the start of training (after compiling) to its end, or now."""
        if self._began is None:
            return 0.0
        return (self._ended or time.monotonic()) - self._began

    def _per_second(self):
        elapsed = self.elapsed
        done = self.updates - self._first[1]
        return done / elapsed if elapsed > 0 and done else None

    def summary(self):
        """The run in one sentence, e.g. ``'RMSProp: reached max_updates at
        iteration 500 (500 updates in 2.1 s); best validation loss 1.2e-05
        at iteration 500'``."""
        iterations = self.iteration - self._first[0]
        updates = self.updates - self._first[1]
        text = (f"{self._name()}: {REASONS.get(self.reason, 'running')} at iteration "
                f"{self.iteration} ({_count(iterations, 'iteration')}, "
                f"{_count(updates, 'update')} in {self.elapsed:.1f} s)")
        if self.best_iteration is not None:
            text += (f"; best validation loss {self.best_loss:.6g} at iteration "
                     f"{self.best_iteration}")
        if self.resumed_from is not None:
            text += f"; resumed from {self.resumed_from[0]} (iteration {self.resumed_from[1]})"
        if self.checkpoint is not None:
            text += f"; checkpoint {self.checkpoint}"
        return text

    def line(self, width):
        """The display's line for a terminal ``width`` characters wide.

        Parameters
        ----------
        width : int
            The room.

        Returns
        -------
        str
        """
        name = self._name()
        if self.phase == "compiling" and self.reason is not None:
            spent = time.monotonic() - self._compile_began
            pieces = [(0, f"compiling the {name} step:"), (0, REASONS[self.reason]),
                      (1, f"after {spent:.1f} s")]
            return _fit(pieces, width, sep=" ")
        if self.phase == "compiling" and SIGINT.pending:
            # Ctrl-C is held while compiling (see downhill.interrupts): say so
            spent = time.monotonic() - self._compile_began
            pieces = [(0, f"compiling the {name} step:"), (1, "Ctrl-C,"),
                      (0, "stopping when it ends"), (0, f"{spent:.1f} s")]
            return _fit(pieces, width, sep=" ")
        if self.phase == "compiling":
            spent = time.monotonic() - self._compile_began
            spin = "-\\|/"[int(spent * 4) % 4] if self._ascii else \
                _SPINNER[int(spent * 4) % len(_SPINNER)]
            pieces = [(0, spin), (0, f"compiling the {name} step"),
                      (1, "(slow the first time, cached afterwards)"),
                      (0, f"{spent:.1f} s")]
            return _fit(pieces, width, sep=" ")
        rate = self._per_second()
        best = (f"best {_number(self.best_loss)} (it {self.best_iteration})"
                if self.best_iteration is not None else None)
        if self.phase == "done":
            pieces = [(0, name), (0, f"it {self.iteration}"),
                      (0, REASONS.get(self.reason, "")), (1, f"loss {_number(self.loss)}"),
                      (1, best), (3, rate and _rate(rate)), (2, f"{self.elapsed:.1f} s")]
            return _fit([p for p in pieces if p[1]], width)
        done = self.iteration - self._first[0]
        count = f"{done}/{self.total}" if self.total else f"it {self.iteration}"
        eta = None
        if self.total and done:
            eta = f"ETA {_clock(self.elapsed / done * max(self.total - done, 0))}"
        pieces = [(0, name), (0, count), (1, f"loss {_number(self.loss)}"), (2, best),
                  (4, rate and _rate(rate)), (2, eta)]
        pieces = [p for p in pieces if p[1]]
        bar = None
        if self.total:
            fraction = min(done / self.total, 1.0)
            bar = (2, 3, lambda n: self._bar(n, fraction))
        return _fit(pieces, width, bar)

    def _bar(self, n, fraction):
        cells = n - 5   # room for ' 100%'
        full = int(fraction * cells)
        if self._ascii:
            bar = "#" * full + "-" * (cells - full)
        else:
            bar = "\u2501" * full + "\u2578" * (full < cells) + " " * max(cells - full - 1, 0)
        return f"{bar}{100 * fraction:4.0f}%"

    # ------------------------------------------------------------------
    # drawing

    def _open(self):
        show = _wanted() if self.show is None else self.show
        if not show or _LIVE:
            self._mode = "off"
            return
        console = _console()
        if not (console.is_terminal or console.is_jupyter) or console.is_dumb_terminal:
            self._mode = "lines"
            return
        from rich.live import Live
        self._ascii = console.options.ascii_only
        self._live = Live(_Line(self), console=console, refresh_per_second=REFRESH_PER_SECOND,
                          transient=self.transient)
        self._mode = "live"
        _LIVE.append(self)
        self._live.start()
        if self.resumed_from is not None:
            console.print(f"resumed from {self.resumed_from[0]} "
                          f"(iteration {self.resumed_from[1]})", highlight=False)

    def _close(self):
        live, self._live = self._live, None
        if live is not None:
            try:
                live.stop()
            finally:
                _LIVE.remove(self)
        self._mode = "off"

    def _write(self, text):
        stream = sys.stderr
        if stream is not None:
            stream.write(text + "\n")
            stream.flush()


class _Line:
    """The rich renderable of a :class:`Progress`: its line at the console's width."""

    def __init__(self, progress):
        self.progress = progress

    def __rich_console__(self, console, options):
        from rich.text import Text
        # three columns spare: a line that fills the last column wraps in some
        # terminals, and the "^C" a terminal echoes must not wrap it either
        # (the line could not be redrawn in place then)
        width = max(options.max_width - 3, 1)
        yield Text(self.progress.line(width), no_wrap=True, overflow="ellipsis", end="")


def display(progressbar, label):
    """The :class:`Progress` of a run from the ``progressbar`` argument.

    Parameters
    ----------
    progressbar : bool, None or Progress
        None: shown when stderr is a terminal (or in a Jupyter notebook);
        True or False: shown or not; a :class:`Progress`: that one (its
        ``label`` set if it has none).
    label : str
        The name to show, usually the optimizer's class name.

    Returns
    -------
    Progress

    Raises
    ------
    TypeError
        For any other value.
    """
    if isinstance(progressbar, Progress):
        if progressbar.label is None:
            progressbar.label = label
        return progressbar
    if progressbar is None or isinstance(progressbar, bool):
        return Progress(progressbar, label)
    raise TypeError(
        f"invalid progressbar: {progressbar!r} (must be None, True, False or a "
        "downhill.progress.Progress)")
