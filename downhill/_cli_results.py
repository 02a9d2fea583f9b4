"""The results of the ``downhill`` command's runs: text for people, JSON for programs.

Text lines fit the terminal (:func:`wrapped`); JSON is standard
(:func:`dumps`: non-finite numbers as strings). A run's result holds the
final monitors of its best parameters, how it ended, the iteration of the
best parameters, the hyperparameters used (``settings``) and the
checkpoint written or resumed from.
"""

import json
import math
import shutil
import textwrap

import click

from . import progress

__all__ = ["format_monitors", "jsonable", "dumps", "summary", "wrapped", "default_text",
           "settings_line", "print_result", "checkpoint_line", "report_history",
           "report_interrupted", "interrupt_message"]


def format_monitors(monitors):
    return " ".join(f"{k}={v:.6g}" for k, v in monitors.items())


def jsonable(monitors):
    return {k: (v if math.isfinite(v) else str(v)) for k, v in monitors.items()}


def dumps(value):
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


def summary(history, used, display):
    result = {
        "algorithm": history.label,
        "iterations": len(history.iterations),
        "updates": len(history.iterations) * history.updates_per_iteration,
        "settings": used,
        "stopped": display.reason,
        "best_iteration": display.best_iteration,
        "train": jsonable(history.final_train),
        "valid": jsonable(history.final_valid),
    }
    return result


def wrapped(text, indent="  "):
    width = max(shutil.get_terminal_size().columns, 40) - 1
    return textwrap.fill(text, width, initial_indent=indent,
                         subsequent_indent=indent + "  ", break_on_hyphens=False,
                         break_long_words=False)


def default_text(value):
    if isinstance(value, float):
        return f"{value:g}"
    return repr(value) if isinstance(value, str) else str(value)


def settings_line(algo, used):
    text = " ".join(f"{k}={default_text(v)}" for k, v in used.items() if v is not None)
    return wrapped(f"settings: {text}; the rest: defaults (downhill algorithms {algo})")


def print_result(history, used, display, loop):
    stopped = progress.REASONS.get(display.reason, display.reason)
    best = display.best_iteration
    click.echo(wrapped(f"{history.label}: {len(history.iterations)} iterations "
                        f"({len(history.iterations) * history.updates_per_iteration} updates) "
                        f"in {display.elapsed:.1f} s, {stopped}", indent=""))
    if best is not None:
        click.echo(f"  monitors of the best parameters, from iteration {best}:")
    click.echo(f"  train:      {format_monitors(history.final_train)}")
    click.echo(f"  validation: {format_monitors(history.final_valid)}")
    click.echo(settings_line(history.label, dict(loop, **used)))


def checkpoint_line(display):
    parts = []
    if display.resumed_from is not None:
        parts.append(f"resumed from {display.resumed_from[0]} "
                     f"(iteration {display.resumed_from[1]})")
    if display.checkpoint is not None:
        parts.append(f"saved to {display.checkpoint} (iteration {display.iteration})")
    return f"  checkpoint: {'; '.join(parts)}" if parts else None


def report_history(history, display, used, as_json, extra, loop):
    """The results of one run: JSON or text (with ``loop``, the loop's settings)."""
    if as_json:
        click.echo(dumps(dict(summary(history, used, display), **extra,
                               checkpoint=display.checkpoint,
                               resumed_from=display.resumed_from and {
                                   "path": display.resumed_from[0],
                                   "iteration": display.resumed_from[1]})))
        return
    print_result(history, used, display, loop)
    line = checkpoint_line(display)
    if line:
        click.echo(line)


def report_interrupted(stop, used, as_json, extra, loop):
    """Print the interrupt message, then the results of the best parameters (if any)."""
    if stop.history is None:
        return
    click.echo(wrapped(interrupt_message(stop.display), ""), err=True)
    stop.reported = True
    report_history(stop.history, stop.display, used, as_json, dict(extra, plot=None), loop)


def interrupt_message(display):
    """'interrupted at iteration N; best parameters (iteration M) kept' and the checkpoint."""
    if display is None:
        return "interrupted"
    if display.phase == "compiling":
        return f"interrupted while compiling the {display.label or 'training'} step; nothing trained"
    text = f"interrupted at iteration {display.iteration}"
    if display.best_iteration is not None:
        text += f"; best parameters (iteration {display.best_iteration}) kept"
    if display.checkpoint is not None:
        text += f"; checkpoint saved to {display.checkpoint}"
    return text
