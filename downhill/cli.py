"""The ``downhill`` command line: run the example problems and look at them.

::

    downhill demo --plot demo.png
    downhill algorithms
    downhill run rosenbrock --dims 10 --algo rmsprop -H rms_halflife=7 --json
    downhill compare rosenbrock --algos sgd,nag,rmsprop --momentum 0.9 --plot cmp.png

The library logs through ``logging.getLogger('downhill')``; the command
installs a handler (``downhill._cli_session``) that writes those lines to stderr (``-v``/``-q`` change
the level, before or after the subcommand). When stderr is a terminal the
library's progress display (:mod:`downhill.progress`) shows each run on
one line instead; otherwise a line per validation and a summary per run
(``-v`` adds one per iteration). Results go to stdout, as text or, with
``--json``, as JSON.

Exit codes: 0 on success, 2 for bad usage (unknown algorithm or problem,
invalid hyperparameter), 1 when a run fails (e.g. the loss becomes
non-finite; one line, or the traceback with ``--debug``), 130 on Ctrl-C:
the run stops at the end of its iteration, the best parameters are kept
(and checkpointed with ``--checkpoint``) and their results printed; a
second Ctrl-C stops at once.
"""

import fnmatch
import importlib.util
import os
import re
import shutil
import sys
import textwrap

import click

from . import __version__, problems, progress
from .base import Optimizer
from ._cli_results import (default_text, dumps, format_monitors, interrupt_message,
                          report_history, report_interrupted, summary, wrapped)
from ._cli_session import (DEDICATED, Interrupted, Settings, cli_syntax, global_options,
                          install_logging, one_line, reports_failures, train)
from .registry import ALGORITHMS
from .util import unknown_name_error

__all__ = ["cli", "main"]

#: Image formats accepted by ``--plot``.
PLOT_FORMATS = (".png", ".pdf", ".svg", ".jpg", ".jpeg")


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



def _split_groups(ctx, param, values):
    items = []
    for text in values:
        pattern, colon, rest = text.partition(":")
        name, sep, value = rest.partition("=")
        name = name.strip().replace("-", "_")
        if not colon or not sep or not pattern.strip() or not name or not value.strip():
            raise click.BadParameter(
                f"{text!r} is not PATTERN:NAME=VALUE (e.g. -G 'b*:weight_decay=0')",
                ctx=ctx, param=param)
        items.append((pattern.strip(), name, value.strip()))
    return items



class _Choice(click.Choice):
    """click.Choice that suggests the closest choice for a misspelt one."""

    def convert(self, value, param, ctx):
        try:
            return super().convert(value, param, ctx)
        except click.BadParameter as err:
            close = unknown_name_error(str(value).lower(), self.choices, "choice")
            match = re.search(r"did you mean '([^']+)'", str(close))
            if match is None:
                raise
            self.fail(f"{err.message.rstrip('.')}; did you mean {match.group(1)!r}?", param, ctx)



def _split_algos(ctx, param, value):
    if value is None:
        return sorted(ALGORITHMS)
    names = [n.strip().lower() for n in value.split(",") if n.strip()]
    if not names:
        raise click.BadParameter("give at least one algorithm", ctx=ctx, param=param)
    for name in names:
        if name not in ALGORITHMS:
            raise click.BadParameter(
                str(unknown_name_error(name, ALGORITHMS, "algorithm",
                                       known_label="known algorithms")),
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
        if "inner" in given and hasattr(cls, "wrapping"):  # Lookahead: the inner rule's too
            try:
                cls = cls.wrapping(given["inner"])
            except ValueError as err:
                raise click.BadParameter(str(err), ctx=click.get_current_context(silent=True),
                                         param_hint=source["inner"]) from None
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



def _collect_groups(algos, items, task):
    """The -G items as ``{pattern: {name: value}}``, checked against each
    algorithm's declarations and the problem's parameter names."""
    from .groups import SWITCHES

    def bad(message):
        return click.BadParameter(message, ctx=click.get_current_context(silent=True),
                                  param_hint="'-G'")
    names = [p.name for p in task.params]
    groups = {}
    for pattern, name, text in items:
        if not any(fnmatch.fnmatchcase(n, pattern) for n in names):
            raise bad(f"the pattern {pattern!r} matches no parameter of {task.name} "
                      f"({', '.join(names)})")
        if name in groups.setdefault(pattern, {}):
            raise bad(f"{pattern}:{name} is given twice")
        for algo in algos:
            declared = ALGORITHMS[algo].hyperparameters()
            try:
                if name not in declared:
                    raise unknown_name_error(name, declared,
                                             f"hyperparameter for {ALGORITHMS[algo].__name__}")
                hyper = declared[name]
                if not hyper.shared or hyper.structural or (hyper.switch
                                                            and name not in SWITCHES):
                    raise ValueError(f"{name} cannot differ per group: it is one setting "
                                     "of the whole optimizer")
                groups[pattern][name] = hyper.validate(_parse_value(hyper, text))
            except (TypeError, ValueError) as err:
                raise bad(str(err)) from None
    return groups


def _groups_text(groups):
    return "; ".join(f"{pattern}: " + ", ".join(f"{k}={default_text(v)}" for k, v in
                                                 values.items())
                     for pattern, values in groups.items())



# ----------------------------------------------------------------------
# problems and their settings


def _make_problem(name, seed, dims):
    options = {"seed": seed}
    if dims is not None:
        if name != "rosenbrock":
            raise click.BadParameter("--dims applies to the rosenbrock problem only",
                                     ctx=click.get_current_context(silent=True),
                                     param_hint="'--dims'")
        options["dims"] = dims
    return problems.make_problem(name, **options)



def _settings_used(task, algo, hypers):
    """The hyperparameters of a run that are not the algorithm's defaults:
    those suggested for it on the problem, each replaced by the one given."""
    return dict(task.suggested(algo), **hypers)



def _loop_settings(task, hypers, batch_size, max_updates):
    """The problem's batch size, iterations and validation interval, or those given."""
    used = {k: v for k, v in task.settings.items() if k not in hypers}
    if batch_size is not None:
        used["batch_size"] = batch_size
    if max_updates is not None:
        used["max_updates"] = max_updates
    return used



def _check_nesterov(algo, used, source):
    """--nesterov needs momentum: with momentum 0 it is plain SGD, silently."""
    if algo == "nag" or not used.get("nesterov"):
        return
    momentum = used.get("momentum", ALGORITHMS[algo].hyperparameters()["momentum"].default)
    if momentum == 0:
        where = "given" if "momentum" in source else f"none is suggested for {algo} here"
        raise click.BadParameter(
            f"Nesterov momentum needs momentum > 0, and the momentum is 0 ({where}): "
            "with momentum 0 it is plain gradient descent; give --momentum 0.9, say",
            ctx=click.get_current_context(silent=True), param_hint=source["nesterov"])



def _check_devices(ctx, param, value):
    if value is None:
        return None
    from .jaxmode import check_devices
    try:
        check_devices(value)
    except ValueError as err:
        raise click.BadParameter(str(err), ctx=ctx, param=param) from None
    return value


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
                     help="Use Nesterov momentum (needs momentum > 0)."),
        click.option("--batch-size", type=click.IntRange(min=0), default=None,
                     help="Samples per batch (>= 0); 0 = all in one. Default: the problem's."),
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
        click.option("-G", "--group", "group", multiple=True, callback=_split_groups,
                     metavar="PATTERN:NAME=VALUE",
                     help="A hyperparameter of the update for the parameters whose names "
                          "match PATTERN, e.g. -G 'b*:weight_decay=0' (repeatable; a "
                          "parameter group, see downhill.groups)."),
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
    given = dict(learning_rate=learning_rate, momentum=momentum, nesterov=nesterov,
                 patience=patience, validate_every=validate_every)
    return {name: (f"'{option}'", given[name]) for name, option in DEDICATED.items()}



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

    Start with 'downhill demo'. On a terminal each run shows one progress
    line on stderr; otherwise stderr gets a line per validation and a
    summary per run. Results go to stdout. -v, -q and --debug may also
    follow the command. Ctrl-C stops a run at the end of its iteration,
    keeps its best parameters, prints their results and exits with 130.
    """
    settings = Settings(verbose, quiet, debug, sys.stderr.isatty())
    ctx.obj = settings
    install_logging(ctx, settings)



@cli.command()
@click.argument("algo", required=False, metavar="[ALGO]",
                type=_Choice(sorted(ALGORITHMS), case_sensitive=False))
@global_options
def algorithms(algo):
    """List the algorithms and their hyperparameters.

    Defaults, allowed ranges and meanings come from the declarations the
    optimizers validate with. Give ALGO to see all of one algorithm's
    hyperparameters, the common ones included. Lines fit the terminal.
    """
    common = Optimizer.hyperparameters()
    width = max(shutil.get_terminal_size().columns, 60) - 1

    def table(hypers):
        rows = [(h.name, default_text(h.default), h.range_text(), h.doc) for h in hypers]
        widths = [max(len(r[i]) for r in rows + [("name", "default", "range", "")])
                  for i in range(3)]
        head = ("name", "default", "range", "meaning")
        left = 4 + sum(widths) + 6
        room = width - left
        for row in [head] + rows:
            cells = "    " + "  ".join(row[i].ljust(widths[i]) for i in range(3)) + "  "
            if room >= 30:
                lines = textwrap.wrap(row[3], room) or [""]
                click.echo((cells + lines[0]).rstrip())
                for line in lines[1:]:
                    click.echo(" " * left + line)
            else:   # too narrow for a column: the meaning below its row
                click.echo(cells.rstrip())
                if row[3]:
                    click.echo(textwrap.fill(row[3], width, initial_indent=" " * 8,
                                             subsequent_indent=" " * 8))

    names = [algo.lower()] if algo else sorted(ALGORITHMS)
    if not algo:
        click.echo("Hyperparameters of every algorithm:")
        table(common.values())
        click.echo("")
    for name in names:
        cls = ALGORITHMS[name]
        summary = (cls.__doc__ or "").strip().splitlines()
        title = f"{name} ({cls.__module__}.{cls.__name__}):"
        first = summary[0] if summary else ""
        if len(title) + 1 + len(first) <= width:
            click.echo(f"{title} {first}".rstrip())
        else:   # the summary on lines of its own
            click.echo(title)
            click.echo(textwrap.fill(first, width, initial_indent="    ",
                                     subsequent_indent="    "))
        hypers = cls.hyperparameters()
        own = [h for h in hypers.values() if algo or common.get(h.name) is not h]
        if own:
            table(own)
        else:
            click.echo("    (only the common hyperparameters)")
        click.echo("")



@cli.command()
@click.option("--plot", type=click.Path(dir_okay=False), default=None, callback=_check_plot,
              metavar="FILE.png", help="Write the loss curves to this image (needs matplotlib).")
@click.option("--max-updates", type=click.IntRange(min=0), default=None,
              help="Iterations to run (default 500, as in the README).")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON on stdout.")
@click.pass_obj
@reports_failures
def demo(settings, plot, max_updates, as_json, interrupts):
    """Factorize a matrix with RMSProp: the README's quick start.

    A random 20x30 matrix of rank 3 is approximated by the product of two
    factors u (20x3) and v (3x30), minimizing the mean squared error with
    RMSProp (all data in one batch) and the settings suggested for it on
    this problem (downhill.problems.SUGGESTED: a small learning rate and
    long averages, so that the loss keeps falling to the end instead of
    bouncing around the minimum). Takes a few seconds.
    """
    problem = problems.factorization()
    used = _settings_used(problem, "rmsprop", {})
    loop = _loop_settings(problem, {}, None, max_updates)
    if not as_json:
        click.echo(wrapped(f"Minimizing mean((y - u @ v)^2) for a {problem.description} "
                            "with RMSProp.", indent=""))
    try:
        history, display = train(settings, interrupts, problem, "rmsprop", {}, {}, None,
                                  max_updates)
    except Interrupted as stop:
        report_interrupted(stop, used, as_json, dict(problem="factorization"), loop)
        raise
    report_history(history, display, used, as_json, dict(problem="factorization", plot=plot),
                    loop)
    if plot:
        from . import plot as plotting
        plotting.loss_curves(history, plot, title="downhill demo: RMSProp on the "
                             "README's matrix factorization")
        if not as_json:
            click.echo(f"wrote {plot}")



@cli.command()
@click.argument("problem", metavar="PROBLEM",
                type=_Choice(list(problems.PROBLEMS), case_sensitive=False))
@click.option("--algo", type=_Choice(sorted(ALGORITHMS), case_sensitive=False),
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
@reports_failures
def run(settings, problem, algo, dims, learning_rate, momentum, nesterov, batch_size,
        max_updates, patience, validate_every, seed, devices, hyper, group, plot, as_json,
        checkpoint, checkpoint_every, resume, interrupts):
    """Minimize an example PROBLEM with one algorithm.

    Hyperparameters not given as options are those suggested for the
    algorithm on the problem (downhill.problems.SUGGESTED). PROBLEM is
    rosenbrock (--dims N), factorization (the README's), digits (softmax
    regression on scikit-learn's bundled 8x8 digits, with a validation
    split and an accuracy monitor 'acc') or sparse-digits (sparse coding of
    the digits). Prints the final train and validation monitors of the best
    parameters and the settings used.
    """
    algo = algo.lower()
    hypers, source = _collect_hypers(
        [algo], _dedicated(learning_rate, momentum, nesterov, patience, validate_every), hyper)
    if (resume or checkpoint_every) and checkpoint is None:
        flag = "'--resume'" if resume else "'--checkpoint-every'"
        raise click.BadParameter("needs --checkpoint FILE",
                                 ctx=click.get_current_context(), param_hint=flag)
    task = _make_problem(problem.lower(), seed, dims)
    groups = _collect_groups([algo], group, task)
    used = _settings_used(task, algo, hypers)
    if groups:
        used["groups"] = _groups_text(groups)
    loop = _loop_settings(task, hypers, batch_size, max_updates)
    _check_nesterov(algo, used, source)
    saving = {}
    if checkpoint is not None:
        saving = {"checkpoint": checkpoint, "checkpoint_every": checkpoint_every,
                  "resume": resume}
        source.update(checkpoint="'--checkpoint'")
        if resume:
            source.update(resume="'--resume'")
    extra = dict(problem=task.name, seed=seed)
    if not as_json:
        click.echo(f"{task.name}: {task.description}")
    try:
        history, display = train(settings, interrupts, task, algo, dict(hypers, **saving),
                                  source, batch_size, max_updates, devices=devices,
                                  groups=groups or None)
    except Interrupted as stop:
        report_interrupted(stop, used, as_json, extra, loop)
        raise
    report_history(history, display, used, as_json, dict(extra, plot=plot), loop)
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
                type=_Choice(list(problems.PROBLEMS), case_sensitive=False))
@click.option("--algos", callback=_split_algos, default=None, metavar="A,B,...",
              help="Comma-separated algorithms (default: all: "
                   + ", ".join(sorted(ALGORITHMS)) + ").")
@_training_options
@click.pass_obj
@reports_failures
def compare(settings, problem, algos, dims, learning_rate, momentum, nesterov, batch_size,
            max_updates, patience, validate_every, seed, devices, hyper, group, plot, as_json,
            interrupts):
    """Minimize PROBLEM with several algorithms from the same start.

    Every algorithm gets the same seed, and the hyperparameters suggested
    for it on the problem (downhill.problems.SUGGESTED; the plot's legend
    shows them) except those given as options, which apply to all. Prints
    one line per algorithm; --plot draws one loss curve per algorithm, and for the 2-D
    rosenbrock problem also their paths over the contours. A run that fails
    (e.g. a non-finite loss) is reported, the others still run, and the exit
    code is 1. Ctrl-C stops the whole comparison: the interrupted run's best
    parameters are reported with the runs done, and the plot drawn.
    """
    hypers, source = _collect_hypers(
        algos, _dedicated(learning_rate, momentum, nesterov, patience, validate_every), hyper)
    problem = problem.lower()
    paths = problem == "rosenbrock" and (dims or 2) == 2
    histories, failures, results = [], [], []
    task = _make_problem(problem, seed, dims)
    groups = _collect_groups(algos, group, task)
    for algo in algos:
        _check_nesterov(algo, _settings_used(task, algo, hypers), source)
    interrupted = None
    for algo in algos:
        task = _make_problem(problem, seed, dims)
        used = _settings_used(task, algo, hypers)
        if groups:
            used["groups"] = _groups_text(groups)
        try:
            history, display = train(settings, interrupts, task, algo, hypers, source,
                                      batch_size, max_updates, record_path=paths,
                                      devices=devices, groups=groups or None)
        except FloatingPointError as err:
            if settings.debug:
                raise
            failures.append(algo)
            results.append({"algorithm": algo, "settings": used,
                            "error": cli_syntax(one_line(err))})
            if not as_json:
                click.echo(f"{algo}: failed: {cli_syntax(one_line(err))}")
            continue
        except Interrupted as stop:
            interrupted = stop
            if stop.history is None:
                break
            history, display = stop.history, stop.display
            click.echo(wrapped(interrupt_message(display), ""), err=True)
            stop.reported = True
        histories.append(history)
        results.append(summary(history, used, display))
        if not as_json:
            click.echo(wrapped(f"{algo}: {len(history.iterations)} iterations in "
                                f"{display.elapsed:.1f} s, "
                                f"{progress.REASONS.get(display.reason, display.reason)}; "
                                f"best: train {format_monitors(history.final_train)}; "
                                f"validation {format_monitors(history.final_valid)}",
                                indent=""))
        if interrupted is not None:
            break
    if not as_json and results:
        given = " ".join(f"{k}={default_text(v)}" for k, v in
                         dict(_loop_settings(task, hypers, batch_size, max_updates),
                              **hypers).items())
        click.echo(wrapped(f"settings for all: {given}; and each algorithm's suggested ones "
                            "(--json and the plot's legend list them)", indent=""))
    if plot and histories:
        from . import plot as plotting
        plotting.comparison(histories, plot, paths=paths, title=task.description,
                            monitor=_plotted(task))
        if not as_json:
            click.echo(f"wrote {plot}")
    if as_json:
        click.echo(dumps({"problem": problem, "seed": seed, "runs": results,
                           "interrupted": interrupted is not None,
                           "plot": plot if histories else None}))
    if interrupted is not None:
        raise interrupted
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
