"""One pass over a dataset's batches through a compiled function: the hot loop
of training and evaluation.

:func:`run_batches` calls an evaluation function on every batch of a pass
and averages its outputs; :func:`training_pass` is its form for training
steps, the run state's unfinished iteration (Python schedules before each
batch, the counters after each step, the non-finite guard's skips), which
the training loop (:mod:`downhill.training`) sets up once per run through
:func:`feeder`, since an iteration is often a single update.
"""

import collections
import functools
import itertools
import math

from . import accumulate
from .interrupts import SIGINT
from .util import log

__all__ = ["EndOfData", "feeder", "run_batches", "training_pass"]


class EndOfData(Exception):
    """A one-shot iterator of training batches has ended (the loop's signal)."""


def _unheld(batches):
    """Batches from a callable or an iterable: the caller's code, where a Ctrl-C
    raises at once."""
    iterator = iter(batches)
    end = object()
    while True:
        batch = SIGINT.call_unheld(next, iterator, end)
        if batch is end:
            return
        yield batch


def _training_batches(settings, run, batches, count, cycle=None):
    """The batches of a training pass with the Python schedules applied, each
    batch marked as drawn (``RunState.drawn``) until its step is counted.

    With ``count``, the number of batches the pass gives, every schedule is
    evaluated *before* its batch is drawn: a schedule is the caller's code,
    and whatever it raises (a ``KeyboardInterrupt`` too) then leaves the
    datasets where the last whole step left them, so the checkpoint written
    on the way out resumes exactly. A pass of unknown length (a one-shot
    iterator, whose position no checkpoint holds) draws first, so that no
    schedule is asked for an update that never comes. Anything that ends the
    pass between a draw and its step's bookkeeping leaves ``drawn`` set, and
    the loop then writes no checkpoint (it would skip that batch). With
    gradient accumulation (``cycle``) the schedules are applied before a
    step's first micro-batch only.
    """
    before = count is not None
    after = count is None
    iterator = iter(batches)
    for _ in itertools.repeat(None) if count is None else range(count):
        if before and (cycle is None or cycle.starting):
            settings.apply_schedules(run.updates)
        try:
            item = next(iterator)
        except StopIteration:
            return
        run.drawn = True
        if after and (cycle is None or cycle.starting):
            settings.apply_schedules(run.updates)
        yield item


def run_batches(opt, fn, dataset, names=None, guarded=False, train=False, max_skips=0):
    """Call ``fn`` on every batch of one pass; weighted means of its outputs.

    Parameters
    ----------
    opt : Optimizer
        The optimizer (its schedules, run state and compiled functions).
    fn : pytensor Function or Cycle
        A step or evaluation function, or the
        :class:`~downhill.accumulate.Cycle` of a step made of micro-batches.
    dataset : Dataset
        The batches, conformed to the inputs.
    names : list of str, optional
        Names of ``fn``'s outputs; default the optimizer's monitors.
    guarded : bool, optional
        Whether ``fn``'s last output is the finiteness flag (a step function).
    train : bool, optional
        Whether ``fn`` is a training step (see :func:`training_pass`).
    max_skips : int, optional
        With ``guarded``: the skipped steps in a row allowed.

    The hot loop: per batch, one call of the compiled function and a
    running sum of its outputs in Python floats. When the dataset's batches
    already fit the inputs exactly (``Dataset.trusted``, established once
    by :meth:`Dataset.conform`) the function is called without its per-call
    input checks (PyTensor's ``trust_input``), and the batches themselves
    are views of the dataset's buffer, not copies. Data given as PyTensor
    shared variables (``Dataset.in_graph``) is batched inside the graph:
    only the batch number crosses over. After every batch a pending Ctrl-C
    is raised (:meth:`downhill.interrupts.Sigint.check`); a callable
    dataset's own code runs with Ctrl-C unheld.

    Returns
    -------
    monitors : dict
        Weighted means of the outputs by name (of the whole iteration with
        ``train``).
    finite : bool
        Whether the pass stayed finite.
    """
    names = opt._monitor_names if names is None else names
    if train or guarded:
        return training_pass(opt, feeder(opt, fn, dataset), dataset, names,
                             guarded, max_skips)
    fn, batches = opt._functions.feed(fn, dataset, _arguments(dataset))
    sigint = SIGINT
    sums, total = None, 0
    for batch, weight in batches:
        values = fn(*batch)
        if not math.isfinite(values[0]):
            return dict(zip(names, (float(v) for v in values))), False
        if sums is None:
            sums = [weight * float(v) for v in values]
        else:
            for i, v in enumerate(values):
                sums[i] += weight * float(v)
        total += weight
        if sigint.pending:
            sigint.check()
    if sums is None:
        raise ValueError(f"dataset {dataset.name!r} gave no batches")
    return collections.OrderedDict(zip(names, [s / total for s in sums])), True


def feeder(opt, step, dataset):
    """What :func:`training_pass` calls to feed a pass's batches to a step.

    Parameters
    ----------
    opt : Optimizer
        The optimizer (its compiled functions).
    step : pytensor Function or Cycle
        The step, or the :class:`~downhill.accumulate.Cycle` of a step made
        of micro-batches.
    dataset : Dataset
        The training batches, conformed to the inputs.

    Returns
    -------
    callable
        ``feed(batches)``: the callable and the batches, with their weights,
        of one pass (see :meth:`downhill.compiled.Functions.feed`).
    """
    if isinstance(step, accumulate.Cycle):  # a micro-batch function and the step take turns
        return functools.partial(step.feed, opt._functions, dataset)
    return opt._functions.feeder(step, dataset)


def _arguments(dataset):
    """One pass's batches as the arguments of a compiled function."""
    if getattr(dataset, "internal", False):
        # our own batches for a loss without inputs: nothing to draw or check
        return itertools.repeat([], dataset.iteration_size)
    external = getattr(dataset, "kind", None) in ("callable", "iterable", "stream")
    source = _unheld(dataset) if external else dataset  # the caller's code
    return map(dataset.as_arguments, source)


def training_pass(opt, feed, dataset, names, guarded, max_skips):
    """One pass of training steps: the run state's unfinished iteration.

    The pass goes on from the batches already done (``RunState.batches``,
    after a resume); the Python schedules (plain functions) are applied
    before every batch (graph schedules are computed by the step itself);
    the update count (mirroring the counter the step advances), the batches
    done and the running sums advance in the run state after every step, so
    that the state between two batches is always consistent (what a Ctrl-C
    saves). With ``guarded`` the step's last output says whether it was
    finite: a non-finite step was not applied and its batch is left out of
    the means, until more than ``max_skips`` come in a row. Otherwise as
    :func:`run_batches`, whose loop this is for training.

    Parameters
    ----------
    opt : Optimizer
        The optimizer (its schedules and run state).
    feed : callable
        :func:`feeder`'s for the step and the dataset: the training loop
        makes it once per run, so that a pass costs no more than its batches.
    dataset : Dataset
        The training batches, conformed to the inputs.
    names : list of str
        Names of the step's outputs (the monitors).
    guarded : bool
        Whether the step's last output is the finiteness flag.
    max_skips : int
        With ``guarded``: the skipped steps in a row allowed.

    Returns
    -------
    monitors : dict
        Weighted means of the outputs by name, over the whole iteration.
    finite : bool
        Whether the pass stayed finite.
    """
    run = opt._run
    fn, batches = feed(_arguments(dataset))
    cycle = fn if isinstance(fn, accumulate.Cycle) else None  # gradient accumulation
    if run.sums is not None and len(run.sums) != len(names):
        log.warning("the saved iteration's sums do not fit the monitors; they restart")
        run.sums, run.weight = None, 0
    schedules = opt._settings.per_update  # Python ones; the graph's need nothing here
    if run.batches or schedules:
        left = dataset.iteration_size
        if left is not None:
            left = max(left - run.batches, 0)
        if run.batches:  # a resumed iteration: its remaining batches
            batches = itertools.islice(batches, left)
        if schedules:
            batches = _training_batches(opt._settings, run, batches, left, cycle)
    sigint = SIGINT
    sums, total = run.sums, run.weight
    for batch, weight in batches:
        run.drawn = True  # until its step is counted (see _training_batches)
        values = fn(*batch)
        if cycle is None or cycle.stepped:  # a micro-batch is not an update
            run.updates += 1
        run.batches += 1
        run.drawn = False
        if guarded:
            finite = values[-1]
            values = values[:-1]
            if not finite:
                if cycle is not None and not cycle.stepped:
                    # a micro-batch: left out of the means; its cycle's step counts
                    if sigint.pending:
                        sigint.check()
                    continue
                run.skips += 1
                log.warning("skipped a non-finite step (%d in a row) at update %d",
                            run.skips, run.updates)
                if run.skips > max_skips:
                    return dict(zip(names, (float(v) for v in values))), False
                if sigint.pending:
                    sigint.check()
                continue
            if cycle is None or cycle.stepped:
                run.skips = 0
        elif not math.isfinite(values[0]):
            return dict(zip(names, (float(v) for v in values))), False
        if sums is None:
            sums = run.sums = list(map(float, values))
            if weight != 1:
                for i, v in enumerate(sums):
                    sums[i] = weight * v
        else:
            for i, v in enumerate(values):
                sums[i] += weight * float(v)
        total += weight
        run.weight = total
        if sigint.pending:
            sigint.check()
    if sums is None:
        if guarded and run.skips:
            return collections.OrderedDict((n, math.nan) for n in names), True
        if dataset.exhausted:
            raise EndOfData()
        raise ValueError(f"dataset {dataset.name!r} gave no batches")
    if total != 1:
        sums = [s / total for s in sums]
    return collections.OrderedDict(zip(names, sums)), True
