"""What the ``downhill`` command does around a run: its logging, the global
options, Ctrl-C, the progress display, and failures turned into messages.

:func:`reports_failures` wraps each command: -v/-q/--debug after the
command (:func:`global_options`), Ctrl-C (:class:`Interrupts`: while a run
trains, SIGINT only asks it to stop at the end of its iteration; exit code
130 with one message), an exception as one line in the command's own
syntax (:func:`cli_syntax`) and exit code 1. :func:`train` runs one problem
with the library's progress display (:class:`RunDisplay`) and turns the
optimizer's rejection of the settings into a usage error naming the option.
The commands themselves are in :mod:`downhill.cli`, the results' text and
JSON in ``downhill._cli_results``.
"""

import contextlib
import functools
import logging
import re
import signal
import sys
import threading

import click

from . import problems, progress
from .base import Optimizer
from .checkpoint import CheckpointError
from ._cli_results import interrupt_message, wrapped
from .registry import ALGORITHMS
from .training import iteration_log
from .util import log

__all__ = ["Settings", "install_logging", "global_options", "one_line", "EXIT_INTERRUPTED",
           "Interrupts", "RunDisplay", "CompileInterrupted", "Interrupted", "reports_failures",
           "DEDICATED", "cli_syntax", "usage_error_from", "train"]

#: Hyperparameters with an option of their own, and the option.
DEDICATED = {"learning_rate": "--learning-rate", "momentum": "--momentum",
             "nesterov": "--nesterov", "patience": "--patience",
             "validate_every": "--validate-every"}


class _StderrHandler(logging.Handler):
    """Write records to whatever ``sys.stderr`` is at the time (CliRunner swaps it)."""

    def emit(self, record):
        try:
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except Exception:  # pragma: no cover - logging must not raise
            self.handleError(record)


class _Formatter(logging.Formatter):
    def format(self, record):
        message = record.getMessage()
        if record.levelno >= logging.WARNING:
            return f"{record.levelname.lower()}: {message}"
        return message


class Settings:
    """The global options (-v, -q, --debug), given before or after the subcommand."""

    def __init__(self, verbose, quiet, debug, terminal):
        self.verbose = verbose
        self.quiet = quiet
        self.debug = debug
        self.terminal = terminal

    @property
    def level(self):
        """The ``downhill`` logger's level: WARNING on a terminal, INFO otherwise."""
        base = logging.WARNING if self.terminal else logging.INFO
        level = min(max(base - 10 * self.verbose + 10 * self.quiet, logging.DEBUG),
                    logging.CRITICAL)
        if self.quiet > self.verbose:
            level = max(level, logging.ERROR)   # -q: errors only, terminal or not
        return level

    @property
    def progress_bar(self):
        """Show the progress display when stderr is a terminal and per-iteration lines are off."""
        return self.terminal and self.level > logging.INFO

    def apply(self):
        """Set the loggers' levels: per-iteration lines only with -v."""
        log.setLevel(self.level)
        every = self.verbose > 0 and self.level <= logging.INFO
        iteration_log.setLevel(logging.NOTSET if every else logging.WARNING)


def install_logging(ctx, settings):
    handler = _StderrHandler()
    handler.setFormatter(_Formatter())
    saved = log.level, log.propagate, iteration_log.level
    log.addHandler(handler)
    log.propagate = False
    settings.apply()

    def restore():
        log.removeHandler(handler)
        log.setLevel(saved[0])
        log.propagate = saved[1]
        iteration_log.setLevel(saved[2])

    ctx.call_on_close(restore)


def _add_global(ctx, param, value):
    """Callback of -v/-q/--debug given after the subcommand."""
    settings = ctx.find_object(Settings)
    if settings is not None and value:
        if param.name == "debug":
            settings.debug = True
        else:
            setattr(settings, param.name, getattr(settings, param.name) + value)
        settings.apply()


def global_options(command):
    """-v, -q and --debug, also accepted after the subcommand."""
    options = [
        click.option("-v", "--verbose", count=True, expose_value=False, callback=_add_global,
                     help="As before the command: more log lines on stderr."),
        click.option("-q", "--quiet", count=True, expose_value=False, callback=_add_global,
                     help="As before the command: errors only on stderr."),
        click.option("--debug", is_flag=True, expose_value=False, callback=_add_global,
                     help="As before the command: show the traceback when a command fails."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def one_line(err):
    text = str(err).strip().splitlines()
    return (text[0] if text else type(err).__name__)


#: Exit code after Ctrl-C (128 + SIGINT, as shells report it).
EXIT_INTERRUPTED = 130


class Interrupts:
    """Ctrl-C during a command, made predictable.

    While a run trains, SIGINT is only counted: the run stops at the end of
    the iteration (``stop_requested``), never inside a compiled call, so
    the best parameters and the checkpoint are always in order. While it
    compiles, and outside runs, SIGINT raises ``KeyboardInterrupt`` at once
    (a compiler that swallows it is caught up with when it returns); a
    second Ctrl-C always does.
    """

    def __init__(self):
        self.count = 0
        self.defer = False
        self._saved = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._saved = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc):
        if self._saved is not None:
            signal.signal(signal.SIGINT, self._saved)
            self._saved = None

    def _handle(self, signum, frame):
        self.count += 1
        if self.count > 1 or not self.defer:
            raise KeyboardInterrupt

    def stop_requested(self, *args):
        """Whether Ctrl-C was pressed (``problems.train`` stops on a true return)."""
        return self.count > 0

    def check(self):
        """Raise the KeyboardInterrupt a compiler swallowed."""
        if self.count:
            raise KeyboardInterrupt


class RunDisplay(progress.Progress):
    """The library's display, with the command's Ctrl-C handling in its hooks."""

    def __init__(self, show, interrupts, label=None):
        # transient: the command prints the results itself
        super().__init__(show, label, transient=True)
        self.interrupts = interrupts

    @contextlib.contextmanager
    def compiling(self):
        try:
            with super().compiling():
                self.interrupts.defer = False
                try:
                    yield
                    self.interrupts.check()
                finally:
                    self.interrupts.defer = True
        except KeyboardInterrupt:
            # not a KeyboardInterrupt: the loop would end quietly and the run go
            # on to its final evaluation; the command stops here instead
            raise CompileInterrupted() from None

    def on_finish(self, run, reason, checkpoint=None):
        if self.interrupts.count and reason in ("closed", "error"):
            reason = "interrupted"   # the command stopped the loop for Ctrl-C
        super().on_finish(run, reason, checkpoint)


class CompileInterrupted(Exception):
    """Ctrl-C while a run compiled: nothing was trained."""


class Interrupted(Exception):
    """Internal: a run was interrupted; carries what it left (or None)."""

    def __init__(self, display, history=None):
        super().__init__("interrupted")
        self.display = display
        self.history = history
        self.reported = False   # the message is out


def reports_failures(command):
    """Ctrl-C, failures and the global options of one command.

    An exception becomes a one-line error and exit code 1 (unless
    --debug), Ctrl-C exit code 130 with one message.
    """
    @global_options
    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        with Interrupts() as interrupts:
            try:
                return command(*args, interrupts=interrupts, **kwargs)
            except KeyboardInterrupt:
                click.echo(interrupt_message(None), err=True)
                raise click.exceptions.Exit(EXIT_INTERRUPTED) from None
            except Interrupted as stop:
                if not stop.reported:
                    click.echo(wrapped(interrupt_message(stop.display), ""), err=True)
                raise click.exceptions.Exit(EXIT_INTERRUPTED) from None
            except (click.ClickException, click.exceptions.Exit, click.Abort):
                raise
            except Exception as err:
                settings = click.get_current_context().find_object(Settings)
                if settings is not None and settings.debug:
                    raise
                raise click.ClickException(
                    f"{type(err).__name__}: {cli_syntax(one_line(err))}") from err
    return wrapper


def cli_syntax(message):
    """A library message with the command line's syntax for hyperparameters.

    ``on_nonfinite='skip'`` becomes ``-H on_nonfinite=skip``, a bare
    ``learning_rate`` ``--learning-rate``.
    """
    declared = set(Optimizer.hyperparameters())
    for cls in ALGORITHMS.values():
        declared.update(cls.hyperparameters())
    options = DEDICATED

    def assignment(match):
        name, value = match.group(1), match.group(3)
        if name not in declared:
            return match.group(0)
        if name in options:
            return f"{options[name]} {value}"
        return f"-H {name}={value}"

    message = re.sub(r"\b([a-z][a-z0-9_]*)=(['\"]?)([\w.+-]+)\2", assignment, message)
    for name, option in options.items():
        if "_" not in name:
            continue   # momentum, patience: words in sentences too
        message = re.sub(rf"(?<![-\w]){name}\b(?!=)", option, message)
    return message


def usage_error_from(err, source):
    """A BadParameter for an optimizer's own rejection of the settings."""
    message = str(err)
    if "resume" in source and (isinstance(err, CheckpointError) or message.startswith("state ")):
        # loading the checkpoint failed: the file, not a hyperparameter, is at fault
        if not isinstance(err, CheckpointError):
            message = ("the checkpoint does not fit this run (problem and algorithm must be "
                       f"the same): {message}")
        return click.BadParameter(message, ctx=click.get_current_context(silent=True),
                                  param_hint=source["resume"])
    # the library's messages start "invalid NAME: ..." or name 'NAME'
    named = re.findall(r"invalid (\w+):|'(\w+)'", message)
    hints = [source[n] for pair in named for n in pair if n in source]
    return click.BadParameter(message, ctx=click.get_current_context(silent=True),
                              param_hint=hints[0] if hints else "hyperparameters")


def train(settings, interrupts, problem, algo, hypers, source, batch_size, max_updates,
          record_path=False, devices=None, groups=None):
    """problems.train with the progress display, Ctrl-C handling and usage errors.

    Returns the run's History and its :class:`RunDisplay`. On Ctrl-C the run
    stops at the end of its iteration and :class:`Interrupted` carries both
    out; a Ctrl-C while compiling (or a second one) leaves no history.
    """
    display = RunDisplay(True if settings.progress_bar else False, interrupts)
    interrupts.defer = True
    try:
        history = problems.train(problem, algo, record_path=record_path,
                                 on_iteration=interrupts.stop_requested,
                                 batch_size=batch_size, max_updates=max_updates,
                                 progressbar=display, devices=devices, groups=groups,
                                 mode=None if devices is None else "JAX", **hypers)
    except (KeyboardInterrupt, CompileInterrupted):
        raise Interrupted(display) from None
    except (TypeError, ValueError) as err:
        if display.phase is not None:
            raise
        raise usage_error_from(err, source) from err
    finally:
        interrupts.defer = False
    if interrupts.count or display.reason == "interrupted":
        raise Interrupted(display, history)
    return history, display

