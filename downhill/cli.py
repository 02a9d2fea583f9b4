"""The ``downhill`` command line: run the example problems and look at them.

::

    downhill demo --plot demo.png
    downhill algorithms
    downhill run rosenbrock --dims 10 --algo rmsprop -H rms_halflife=7 --json
    downhill compare rosenbrock --algos sgd,nag,rmsprop --momentum 0.9 --plot cmp.png

The library logs through ``logging.getLogger('downhill')``; this module
installs a handler that writes those lines to stderr (``-v``/``-q`` change
the level) and shows a progress bar instead when stderr is a terminal.
Results go to stdout, as text or, with ``--json``, as JSON.

Exit codes: 0 on success, 2 for bad usage (unknown algorithm or problem,
invalid hyperparameter), 1 when a run fails (e.g. the loss becomes
non-finite); a failure prints one line, or the traceback with ``--debug``.
"""

import functools
import importlib.util
import json
import logging
import math
import os
import re
import sys
import time

import click

from . import __version__, problems
from .base import Optimizer
from .registry import ALGORITHMS
from .checkpoint import CheckpointError
from .util import log, unknown_name_error

__all__ = ["cli", "main"]

#: Image formats accepted by ``--plot``.
PLOT_FORMATS = (".png", ".pdf", ".svg", ".jpg", ".jpeg")


# ----------------------------------------------------------------------
# logging and output


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


class _Settings:
    """Options of the ``downhill`` group, shared with the subcommands."""

    def __init__(self, level, debug, terminal):
        self.level = level
        self.debug = debug
        self.terminal = terminal

    @property
    def progress_bar(self):
        """Show a bar when stderr is a terminal and per-iteration lines are off."""
        return self.terminal and self.level > logging.INFO


def _install_logging(ctx, level):
    handler = _StderrHandler()
    handler.setFormatter(_Formatter())
    saved = log.level, log.propagate
    log.addHandler(handler)
    log.setLevel(level)
    log.propagate = False

    def restore():
        log.removeHandler(handler)
        log.setLevel(saved[0])
        log.propagate = saved[1]

    ctx.call_on_close(restore)


def _one_line(err):
    text = str(err).strip().splitlines()
    return (text[0] if text else type(err).__name__)


def _reports_failures(command):
    """Turn an exception into a one-line error and exit code 1 (unless --debug)."""
    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as err:
            settings = click.get_current_context().find_object(_Settings)
            if settings is not None and settings.debug:
                raise
            raise click.ClickException(f"{type(err).__name__}: {_one_line(err)}") from err
    return wrapper


def _format_monitors(monitors):
    return " ".join(f"{k}={v:.6g}" for k, v in monitors.items())


def _jsonable(monitors):
    return {k: (v if math.isfinite(v) else str(v)) for k, v in monitors.items()}


def _dumps(value):
    """Standard JSON: non-finite numbers (e.g. NaN monitors) as strings."""
    def fix(x):
        if isinstance(x, dict):
            return {k: fix(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [fix(v) for v in x]
        if isinstance(x, float) and not math.isfinite(x):
            return str(x)
        return x
    return json.dumps(fix(value), allow_nan=False)


# ----------------------------------------------------------------------
# option values


def _check_folder(ctx, param, value):
    """The file's folder must exist: a run must not end in a failed save."""
    if value is None:
        return None
    folder = os.path.dirname(os.path.abspath(value))
    if not os.path.isdir(folder):
        raise click.BadParameter(f"folder {folder!r} does not exist", ctx=ctx, param=param)
    return value


def _check_plot(ctx, param, value):
    if value is None:
        return None
    if not value.lower().endswith(PLOT_FORMATS):
        raise click.BadParameter(
            f"{value!r} has no image extension; use one of {', '.join(PLOT_FORMATS)}",
            ctx=ctx, param=param)
    if importlib.util.find_spec("matplotlib") is None:
        raise click.BadParameter(
            "plotting needs matplotlib, which is not installed: "
            "pip install 'downhill[plot]'", ctx=ctx, param=param)
    return _check_folder(ctx, param, value)


def _check_devices(ctx, param, value):
    if value is None:
        return None
    from .jaxmode import check_devices
    try:
        check_devices(value)
    except ValueError as err:
        raise click.BadParameter(str(err), ctx=ctx, param=param) from None
    return value


def _split_hypers(ctx, param, values):
    pairs = []
    for text in values:
        name, sep, value = text.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or not name or not value.strip():
            raise click.BadParameter(
                f"{text!r} is not NAME=VALUE (e.g. -H rms_halflife=7)", ctx=ctx, param=param)
        pairs.append((name, value.strip()))
    return pairs


def _split_algos(ctx, param, value):
    if value is None:
        return sorted(ALGORITHMS)
    names = [n.strip().lower() for n in value.split(",") if n.strip()]
    if not names:
        raise click.BadParameter("give at least one algorithm", ctx=ctx, param=param)
    for name in names:
        if name not in ALGORITHMS:
            raise click.BadParameter(
                f"unknown algorithm {name!r}; known algorithms: {', '.join(sorted(ALGORITHMS))}",
                ctx=ctx, param=param)
    if len(set(names)) != len(names):
        raise click.BadParameter(f"an algorithm is named twice: {value!r}", ctx=ctx, param=param)
    return names


_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")


def _parse_value(hyper, text):
    """Convert -H text to the declared kind; the declaration validates it after."""
    if hyper.kind is bool:
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise ValueError(f"invalid {hyper.name}: {text!r} (must be {hyper.range_text()})")
    if hyper.kind is str:
        return text
    try:
        return int(text) if hyper.kind is int else float(text)
    except ValueError:
        raise ValueError(
            f"invalid {hyper.name}: {text!r} (must be {hyper.range_text()})") from None


def _collect_hypers(algos, options, extra):
    """Check every hyperparameter against each algorithm's declarations.

    ``options`` maps hyperparameter names to (option hint, value) from the
    dedicated options; ``extra`` holds the ``-H`` (name, text) pairs.
    Returns the hyperparameters and, per name, the option it came from.
    """
    given, source = {}, {}
    for name, (hint, value) in options.items():
        if value is not None:
            given[name], source[name] = value, hint
    for name, text in extra:
        if name in given:
            raise click.BadParameter(
                f"{name} is given twice (also by {source[name]})",
                ctx=click.get_current_context(silent=True), param_hint="'-H'")
        given[name], source[name] = text, "'-H'"
    checked = {}
    for algo in algos:
        cls = ALGORITHMS[algo]
        declared = cls.hyperparameters()
        for name, value in given.items():
            try:
                if name not in declared:
                    raise unknown_name_error(name, declared, f"hyperparameter for {cls.__name__}")
                if isinstance(value, str) and source[name] == "'-H'":
                    value = _parse_value(declared[name], value)
                checked[name] = declared[name].validate(value)
            except (TypeError, ValueError) as err:
                raise click.BadParameter(
                    str(err), ctx=click.get_current_context(silent=True),
                    param_hint=source[name]) from None
    return checked, source


def _usage_error_from(err, source):
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


# ----------------------------------------------------------------------
# running


#: Seconds a run goes on before its progress bar appears: quick runs stay quiet.
PROGRESS_DELAY = 0.5


def _train(settings, problem, algo, hypers, source, batch_size, max_updates,
           record_path=False, label=None, devices=None):
    """problems.train with a progress bar and usage errors for bad settings.

    The bar (on a terminal, when per-iteration log lines are off) appears
    once the run has taken more than :data:`PROGRESS_DELAY` seconds.
    """
    started = False
    done = 0
    bar = None
    total = _batches(problem, batch_size, max_updates) if settings.progress_bar else None
    began = time.monotonic()

    def on_batch():
        nonlocal started, done, bar
        started = True
        done += 1
        if bar is not None:
            bar.update(1)
        elif total and time.monotonic() - began > PROGRESS_DELAY:
            bar = click.progressbar(length=total, label=label or algo, file=sys.stderr,
                                    show_pos=True, item_show_func=lambda item: item)
            bar.__enter__()
            bar.update(done)

    def on_iteration(history):
        if bar is not None:
            bar.current_item = _format_monitors(history.train[-1])

    try:
        return problems.train(problem, algo, record_path=record_path,
                              on_batch=on_batch, on_iteration=on_iteration,
                              batch_size=batch_size, max_updates=max_updates,
                              mode=None if devices is None else "JAX", devices=devices,
                              **hypers)
    except (TypeError, ValueError) as err:
        if started:
            raise
        raise _usage_error_from(err, source) from err
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)


def _batches(problem, batch_size, max_updates):
    """Number of training batches a run will have at most."""
    iterations = problem.settings.get("max_updates") if max_updates is None else max_updates
    size = batch_size if batch_size is not None else problem.settings.get("batch_size", 32)
    if problem.train is not None:
        count = len(problem.train[0])
        per_iteration = 1 if size <= 0 or size >= count else math.ceil(count / size)
    else:
        per_iteration = 1
    return iterations * per_iteration


def _make_problem(name, seed, dims):
    options = {"seed": seed}
    if dims is not None:
        if name != "rosenbrock":
            raise click.BadParameter("--dims applies to the rosenbrock problem only",
                                     ctx=click.get_current_context(silent=True),
                                     param_hint="'--dims'")
        options["dims"] = dims
    return problems.make_problem(name, **options)


def _summary(history):
    return {
        "algorithm": history.label,
        "iterations": len(history.iterations),
        "updates": len(history.iterations) * history.updates_per_iteration,
        "settings": history.hyperparameters,
        "train": _jsonable(history.final_train),
        "valid": _jsonable(history.final_valid),
    }


def _print_result(history):
    click.echo(f"{history.label}: {len(history.iterations)} iterations "
               f"({len(history.iterations) * history.updates_per_iteration} updates); "
               "monitors of the best parameters:")
    click.echo(f"  train:      {_format_monitors(history.final_train)}")
    click.echo(f"  validation: {_format_monitors(history.final_valid)}")


def _training_options(command):
    """Options shared by ``run`` and ``compare``."""
    options = [
        click.option("--dims", type=click.IntRange(min=2), default=None,
                     help="Dimensions of the rosenbrock problem (default 2)."),
        click.option("--learning-rate", type=float, default=None,
                     help="Step size (> 0). Default: the one suggested for the algorithm "
                          "on the problem (see downhill.problems.SUGGESTED)."),
        click.option("--momentum", type=float, default=None,
                     help="Momentum, 0 <= m < 1. Default: the one suggested for the "
                          "algorithm on the problem (0, off, where none is)."),
        click.option("--nesterov", is_flag=True, default=None,
                     help="Use Nesterov momentum (with --momentum > 0)."),
        click.option("--batch-size", type=int, default=None,
                     help="Samples per batch; 0 = all in one. Default: the problem's."),
        click.option("--max-updates", type=click.IntRange(min=0), default=None,
                     help="Stop after this many iterations. Default: the problem's."),
        click.option("--patience", type=int, default=None,
                     help="Validations without improvement before stopping (default 5)."),
        click.option("--validate-every", type=int, default=None,
                     help="Iterations between validations. Default: the problem's."),
        click.option("--seed", type=int, default=0, show_default=True,
                     help="Seed of the problem's data and starting point."),
        click.option("--devices", type=click.IntRange(min=1), default=None, metavar="N",
                     callback=_check_devices,
                     help="Train with the JAX backend (needs jax: pip install "
                          "'downhill[jax]'), each batch sharded over N devices. On a "
                          "CPU, N > 1 needs XLA_FLAGS=--xla_force_host_platform_device_"
                          "count=N in the environment."),
        click.option("-H", "--hyper", "hyper", multiple=True, callback=_split_hypers,
                     metavar="NAME=VALUE",
                     help="Any hyperparameter of the algorithm, e.g. -H rms_halflife=7 "
                          "(repeatable; see 'downhill algorithms')."),
        click.option("--plot", type=click.Path(dir_okay=False), default=None,
                     callback=_check_plot, metavar="FILE.png",
                     help="Write the loss curves to this image (needs matplotlib)."),
        click.option("--json", "as_json", is_flag=True,
                     help="Print the results as JSON on stdout."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _dedicated(learning_rate, momentum, nesterov, patience, validate_every):
    return {
        "learning_rate": ("'--learning-rate'", learning_rate),
        "momentum": ("'--momentum'", momentum),
        "nesterov": ("'--nesterov'", nesterov),
        "patience": ("'--patience'", patience),
        "validate_every": ("'--validate-every'", validate_every),
    }


# ----------------------------------------------------------------------
# commands


@click.group(context_settings={"max_content_width": 100})
@click.option("-v", "--verbose", count=True,
              help="More log lines on stderr (-v: one per iteration, -vv: debug).")
@click.option("-q", "--quiet", count=True, help="Fewer log lines on stderr (-q: errors only).")
@click.option("--debug", is_flag=True, help="Show the traceback when a command fails.")
@click.version_option(__version__, prog_name="downhill")
@click.pass_context
def cli(ctx, verbose, quiet, debug):
    """Stochastic gradient optimizers for PyTensor losses: run, compare and plot.

    Start with 'downhill demo'. Log lines go to stderr (a progress bar when
    stderr is a terminal), results to stdout.
    """
    terminal = sys.stderr.isatty()
    base = logging.WARNING if terminal else logging.INFO
    level = min(max(base - 10 * verbose + 10 * quiet, logging.DEBUG), logging.CRITICAL)
    if quiet > verbose:
        level = max(level, logging.ERROR)   # -q: errors only, terminal or not
    ctx.obj = _Settings(level, debug, terminal)
    _install_logging(ctx, level)


@cli.command()
@click.argument("algo", required=False, metavar="[ALGO]",
                type=click.Choice(sorted(ALGORITHMS), case_sensitive=False))
def algorithms(algo):
    """List the algorithms and their hyperparameters.

    Defaults, allowed ranges and meanings come from the declarations the
    optimizers validate with. Give ALGO to see all of one algorithm's
    hyperparameters, the common ones included.
    """
    common = Optimizer.hyperparameters()

    def table(hypers):
        rows = [(h.name, _default_text(h.default), h.range_text(), h.doc) for h in hypers]
        widths = [max(len(r[i]) for r in rows + [("name", "default", "range", "")])
                  for i in range(3)]
        head = ("name", "default", "range", "meaning")
        for row in [head] + rows:
            cells = [row[i].ljust(widths[i]) for i in range(3)]
            click.echo("    " + "  ".join(cells) + "  " + row[3])

    names = [algo.lower()] if algo else sorted(ALGORITHMS)
    if not algo:
        click.echo("Hyperparameters of every algorithm:")
        table(common.values())
        click.echo("")
    for name in names:
        cls = ALGORITHMS[name]
        summary = (cls.__doc__ or "").strip().splitlines()
        click.echo(f"{name} ({cls.__module__}.{cls.__name__}): "
                   f"{summary[0] if summary else ''}")
        hypers = cls.hyperparameters()
        own = [h for h in hypers.values() if algo or common.get(h.name) is not h]
        if own:
            table(own)
        else:
            click.echo("    (only the common hyperparameters)")
        click.echo("")


def _default_text(value):
    if isinstance(value, float):
        return f"{value:g}"
    return repr(value) if isinstance(value, str) else str(value)


@cli.command()
@click.option("--plot", type=click.Path(dir_okay=False), default=None, callback=_check_plot,
              metavar="FILE.png", help="Write the loss curves to this image (needs matplotlib).")
@click.option("--max-updates", type=click.IntRange(min=0), default=None,
              help="Iterations to run (default 500, as in the README).")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON on stdout.")
@click.pass_obj
@_reports_failures
def demo(settings, plot, max_updates, as_json):
    """Factorize a matrix with RMSProp: the README's quick start.

    A random 20x30 matrix of rank 3 is approximated by the product of two
    factors u (20x3) and v (3x30), minimizing the mean squared error with
    RMSProp (all data in one batch) and the settings suggested for it on
    this problem (downhill.problems.SUGGESTED: a small learning rate and
    long averages, so that the loss keeps falling to the end instead of
    bouncing around the minimum). Takes a few seconds.
    """
    problem = problems.factorization()
    if not as_json:
        from .plot import settings_text
        click.echo(f"Minimizing mean((y - u @ v)^2) for a {problem.description} "
                   f"with RMSProp, {settings_text(problem.suggested('rmsprop'))}.")
    history = _train(settings, problem, "rmsprop", {}, {}, None, max_updates, label="demo")
    if as_json:
        click.echo(_dumps(dict(_summary(history), problem="factorization", plot=plot)))
    else:
        _print_result(history)
    if plot:
        from . import plot as plotting
        plotting.loss_curves(history, plot, title="downhill demo: RMSProp on the "
                             "README's matrix factorization")
        if not as_json:
            click.echo(f"wrote {plot}")


@cli.command()
@click.argument("problem", metavar="PROBLEM",
                type=click.Choice(list(problems.PROBLEMS), case_sensitive=False))
@click.option("--algo", type=click.Choice(sorted(ALGORITHMS), case_sensitive=False),
              default="rmsprop", show_default=True, help="The algorithm.")
@_training_options
@click.option("--checkpoint", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              callback=_check_folder,
              help="Save the whole training state to this .npz file when the run ends "
                   "(and every --checkpoint-every iterations).")
@click.option("--checkpoint-every", type=click.IntRange(min=0), default=0, show_default=True,
              help="Iterations between checkpoints; 0 saves only at the end.")
@click.option("--resume", is_flag=True,
              help="Continue from --checkpoint FILE if it exists (same problem, seed and "
                   "algorithm); --max-updates then counts the further iterations.")
@click.pass_obj
@_reports_failures
def run(settings, problem, algo, dims, learning_rate, momentum, nesterov, batch_size,
        max_updates, patience, validate_every, seed, devices, hyper, plot, as_json, checkpoint,
        checkpoint_every, resume):
    """Minimize an example PROBLEM with one algorithm.

    Hyperparameters not given as options are those suggested for the
    algorithm on the problem (downhill.problems.SUGGESTED). PROBLEM is rosenbrock (--dims N), factorization (the README's),
    digits (softmax regression on scikit-learn's bundled 8x8 digits, with a
    validation split and an accuracy monitor 'acc') or sparse-digits (sparse
    coding of the digits). Prints the final train and validation monitors of
    the best parameters.
    """
    algo = algo.lower()
    hypers, source = _collect_hypers(
        [algo], _dedicated(learning_rate, momentum, nesterov, patience, validate_every), hyper)
    if (resume or checkpoint_every) and checkpoint is None:
        flag = "'--resume'" if resume else "'--checkpoint-every'"
        raise click.BadParameter("needs --checkpoint FILE",
                                 ctx=click.get_current_context(), param_hint=flag)
    task = _make_problem(problem.lower(), seed, dims)
    saving = {}
    if checkpoint is not None:
        saving = {"checkpoint": checkpoint, "checkpoint_every": checkpoint_every,
                  "resume": resume}
        source.update(checkpoint="'--checkpoint'")
        if resume:
            source.update(resume="'--resume'")
    history = _train(settings, task, algo, dict(hypers, **saving), source, batch_size,
                     max_updates, devices=devices)
    if as_json:
        click.echo(_dumps(dict(_summary(history), problem=task.name, seed=seed,
                                   hyperparameters=hypers, plot=plot)))
    else:
        click.echo(f"{task.name}: {task.description}")
        _print_result(history)
    if plot:
        from . import plot as plotting
        plotting.loss_curves(history, plot, title=f"{task.description}: {algo}",
                             monitor=_plotted(task))
        if not as_json:
            click.echo(f"wrote {plot}")


def _plotted(task):
    """The monitors to plot: the loss, and the accuracy of a classifier."""
    return ["loss", "acc"] if task.name == "digits" else ["loss"]


@cli.command()
@click.argument("problem", metavar="PROBLEM",
                type=click.Choice(list(problems.PROBLEMS), case_sensitive=False))
@click.option("--algos", callback=_split_algos, default=None, metavar="A,B,...",
              help="Comma-separated algorithms (default: all: "
                   + ", ".join(sorted(ALGORITHMS)) + ").")
@_training_options
@click.pass_obj
@_reports_failures
def compare(settings, problem, algos, dims, learning_rate, momentum, nesterov, batch_size,
            max_updates, patience, validate_every, seed, devices, hyper, plot, as_json):
    """Minimize PROBLEM with several algorithms from the same start.

    Every algorithm gets the same seed, and the hyperparameters suggested
    for it on the problem (downhill.problems.SUGGESTED; the plot's legend
    shows them) except those given as options, which apply to all. Prints
    one line per algorithm; --plot draws one loss curve per algorithm, and for the 2-D
    rosenbrock problem also their paths over the contours. A run that fails
    (e.g. a non-finite loss) is reported, the others still run, and the exit
    code is 1.
    """
    hypers, source = _collect_hypers(
        algos, _dedicated(learning_rate, momentum, nesterov, patience, validate_every), hyper)
    problem = problem.lower()
    paths = problem == "rosenbrock" and (dims or 2) == 2
    histories, failures, results = [], [], []
    for algo in algos:
        task = _make_problem(problem, seed, dims)
        try:
            history = _train(settings, task, algo, hypers, source, batch_size, max_updates,
                             record_path=paths, devices=devices)
        except FloatingPointError as err:
            if settings.debug:
                raise
            failures.append(algo)
            results.append({"algorithm": algo, "error": _one_line(err)})
            if not as_json:
                click.echo(f"{algo}: failed: {_one_line(err)}")
            continue
        histories.append(history)
        results.append(_summary(history))
        if not as_json:
            click.echo(f"{algo}: {len(history.iterations)} iterations; best: "
                       f"train {_format_monitors(history.final_train)}; "
                       f"validation {_format_monitors(history.final_valid)}")
    if plot and histories:
        from . import plot as plotting
        plotting.comparison(histories, plot, paths=paths, title=task.description,
                            monitor=_plotted(task))
        if not as_json:
            click.echo(f"wrote {plot}")
    if as_json:
        click.echo(_dumps({"problem": problem, "seed": seed, "hyperparameters": hypers,
                               "runs": results, "plot": plot if histories else None}))
    if failures:
        raise click.ClickException(
            f"{len(failures)} of {len(algos)} runs failed: {', '.join(failures)}")


def main(args=None):
    """Entry point of the ``downhill`` console script.

    Parameters
    ----------
    args : list of str, optional
        Command-line arguments; default ``sys.argv[1:]``.
    """
    return cli.main(args=args, prog_name="downhill")
