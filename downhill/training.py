"""The training loop: batches through the compiled step, validation, early
stopping, the non-finite policy and checkpoints on the way.

:func:`iterate` checks a call's arguments and returns a generator that runs
the loop; :func:`evaluate` computes the monitors on a dataset;
:func:`run_batches` is the hot loop both share. The loop's state (counters,
best validation) lives in the optimizer's :class:`~downhill.runstate.RunState`,
the compiled functions in its :class:`~downhill.compiled.Functions`.
"""

import collections
import logging
import math
import os

from . import state, validation
from .checkpoint import check_path
from .dataset import Dataset
from .util import log

__all__ = ["as_dataset", "run_batches", "evaluate", "iterate", "minimize"]


class _NonFinite(Exception):
    """Internal: the loss or a gradient became NaN or infinite."""


def _need_loss(opt, call):
    if opt._loss is None:
        raise ValueError(
            f"{call}() needs a loss to report and validate, but this {type(opt).__name__} "
            "was built from gradients alone; build it with the loss too "
            "(build(algo, loss, grads=..., params=...)), or use get_updates() in your own "
            "loop")


class _EndOfData(Exception):
    """Internal: a one-shot iterator of training batches has ended."""


def as_dataset(opt, data, name, batch_size=32, ordered=False):
    """Wrap data into a Dataset conformed to the optimizer's inputs.

    Parameters
    ----------
    opt : Optimizer
        The optimizer whose inputs the data must fit.
    data : Dataset, array, list of arrays, callable, iterable of batches or None
        The data (see :class:`~downhill.Dataset`).
    name : str
        ``'train'``, ``'valid'`` or ``'evaluation'``, for messages.
    batch_size : int, optional
        For arrays.
    ordered : bool, optional
        Arrays are read in order, not shuffled.

    Returns
    -------
    Dataset
    """
    if isinstance(data, Dataset):
        dataset = data
    elif data is None:
        if opt._inputs:
            raise ValueError(
                f"no {name} data given, but the loss has inputs "
                f"{[v.name for v in opt._inputs]}; pass {name}=[arrays...]")
        dataset = Dataset(lambda: [], name=name, iteration_size=1)
    else:
        try:
            dataset = Dataset(data, name=name, batch_size=batch_size)
        except ValueError as error:
            if not str(error).startswith("dataset inputs must be"):
                raise
            raise ValueError(
                f"{name} data must be a Dataset, arrays (one per input), a callable, an "
                f"iterable of batches or None, got {type(data).__name__}") from None
        if ordered:
            dataset = dataset.in_order()
    dataset.conform(opt._inputs)
    return dataset


class _Skips:
    """Non-finite steps skipped in a row, against the allowed number."""

    def __init__(self, limit):
        self.limit = limit
        self.count = 0


def run_batches(opt, fn, dataset, names=None, guarded=False, train=False, skips=None):
    """Call ``fn`` on every batch of one pass; weighted means of its outputs.

    Parameters
    ----------
    opt : Optimizer
        The optimizer (its schedules, run state and compiled functions).
    fn : pytensor Function
        A step or evaluation function.
    dataset : Dataset
        The batches, conformed to the inputs.
    names : list of str, optional
        Names of ``fn``'s outputs; default the optimizer's monitors.
    guarded : bool, optional
        Whether ``fn``'s last output is the finiteness flag.
    train : bool, optional
        Whether ``fn`` is a training step.
    skips : _Skips, optional
        With ``guarded``: the count of skipped steps in a row.

    With ``train`` the schedules are applied before every batch and the
    update counter advances; with ``guarded`` the last output of ``fn`` says
    whether the step was finite: a non-finite step was not applied and its
    batch is left out of the means, until more than ``skips.limit`` come in
    a row.

    The hot loop: per batch, one call of the compiled function and a
    running sum of its outputs in Python floats. When the dataset's batches
    already fit the inputs exactly (``Dataset.trusted``, established once
    by :meth:`Dataset.conform`) the function is called without its per-call
    input checks (PyTensor's ``trust_input``), and the batches themselves
    are views of the dataset's buffer, not copies. Data given as PyTensor
    shared variables (``Dataset.in_graph``) is batched inside the graph:
    only the batch number crosses over.

    Returns
    -------
    monitors : dict
        Weighted means of the outputs by name.
    finite : bool
        Whether the pass stayed finite.
    """
    names = opt._monitor_names if names is None else names
    schedules = train and bool(opt._schedules)
    run = opt._run
    if getattr(dataset, "in_graph", False):
        fn = opt._functions.in_graph(fn)
        batches = opt._functions.graph_batches(dataset)
    else:
        fn.trust_input = getattr(dataset, "trusted", False)
        convert = dataset.as_arguments
        batches = ((batch, dataset.batch_weight(batch)) for batch in map(convert, dataset))
    sums = None
    total = 0
    for batch, weight in batches:
        if schedules:
            opt._settings.apply_schedules(run.updates)
        values = fn(*batch)
        if train:
            run.updates += 1
        if guarded:
            finite = bool(values[-1])
            values = values[:-1]
            if not finite:
                skips.count += 1
                log.warning("skipped a non-finite step (%d in a row) at update %d",
                            skips.count, run.updates)
                if skips.count > skips.limit:
                    return dict(zip(names, (float(v) for v in values))), False
                continue
            skips.count = 0
        elif not math.isfinite(values[0]):
            return dict(zip(names, (float(v) for v in values))), False
        if sums is None:
            sums = [weight * float(v) for v in values]
        else:
            for i, v in enumerate(values):
                sums[i] += weight * float(v)
        total += weight
    if sums is None:
        if guarded and skips.count:
            return collections.OrderedDict((n, math.nan) for n in names), True
        if train and dataset.exhausted:
            raise _EndOfData()
        raise ValueError(f"dataset {dataset.name!r} gave no batches")
    means = (s / total for s in sums)
    return collections.OrderedDict(zip(names, means)), True


def evaluate(opt, dataset):
    """Compute the loss and monitors on a dataset with the current parameters.

    Parameters
    ----------
    opt : Optimizer
        The optimizer.
    dataset : Dataset or list of arrays
        See :meth:`downhill.Optimizer.evaluate`.

    Returns
    -------
    dict
        ``'loss'`` first, then each monitor.
    """
    _need_loss(opt, "evaluate")
    if isinstance(dataset, Dataset):
        dataset = dataset.in_order()
    dataset = as_dataset(opt, dataset, "evaluation", ordered=True)
    monitors, _ = run_batches(opt, opt._functions.evaluate(), dataset)
    return monitors


def _log(label, iteration, monitors, marker=""):
    if not log.isEnabledFor(logging.INFO):
        return  # formatting the monitors costs more than the update itself
    fields = " ".join(f"{k}={v:.6g}" for k, v in monitors.items())
    log.info("%s %d %s%s", label, iteration, fields, marker)


def iterate(opt, train=None, valid=None, max_updates=None, *, batch_size=32, mode=None,
            checkpoint=None, checkpoint_every=0, resume=False, **hyperparameters):
    """Check the arguments of a training run and return its loop.

    Parameters
    ----------
    opt : Optimizer
        The optimizer to train.
    train, valid, max_updates, batch_size, mode, checkpoint, checkpoint_every, resume
        See :meth:`downhill.Optimizer.iterate`, which documents every argument.
    **hyperparameters
        As there.

    Returns
    -------
    generator
        Yields ``(train_monitors, valid_monitors)`` after every iteration.
    """
    _need_loss(opt, "iterate")
    max_updates = validation.check_count("max_updates", max_updates, optional=True)
    checkpoint_every = validation.check_count("checkpoint_every", checkpoint_every)
    if resume and checkpoint is None:
        raise ValueError("resume=True needs checkpoint=PATH, the file to resume from")
    if checkpoint_every and checkpoint is None:
        raise ValueError("checkpoint_every needs checkpoint=PATH, the file to write")
    if checkpoint is not None:
        checkpoint = check_path(checkpoint)  # unusable paths fail now, not after the run
    validation.check_mode(mode)
    train = as_dataset(opt, train, "train", batch_size)
    if valid is None:
        if train.is_stream:
            raise ValueError(
                "train is a one-shot iterator (a generator), which validating on it would "
                "use up: pass valid=... too, or give train as a list of batches or a callable")
        valid = train.in_order()
        datasets = {"train": train}
    else:
        valid = as_dataset(opt, valid, "valid", batch_size, ordered=True)
        datasets = {"train": train, "valid": valid}
    if resume and os.path.exists(checkpoint):
        opt._check_hypers(hyperparameters)  # a call that fails loads nothing
        state.load(opt, checkpoint, datasets=datasets)
    settings = opt._configure(hyperparameters)
    if mode is not None:
        opt._mode = mode
    opt._settings.restore_schedule_states(opt._run.updates)
    log.info("%s: %s", type(opt).__name__,
             " ".join(f"{k}={v}" for k, v in settings.items()))
    return _loop(opt, train, valid, max_updates, settings, checkpoint,
                 checkpoint_every, datasets)


def _validate(opt, dataset, settings):
    """Validate the parameters in place; record the result in the run state."""
    run = opt._run
    monitors, finite = run_batches(opt, opt._functions.evaluate(), dataset)
    if not finite:
        raise _NonFinite(
            f"non-finite validation loss at iteration {run.iteration}: {dict(monitors)}")
    improved = run.validated(monitors, opt._params, settings["min_improvement"])
    for schedule in opt._schedules.values():
        observe = getattr(schedule, "observe", None)
        if observe is not None:
            observe(monitors["loss"])
    _log("validation", run.iteration, monitors, " *" if improved else "")
    return monitors


def _loop(opt, train, valid, max_updates, settings, checkpoint, every, datasets):
    step, names, guarded = opt._functions.step()
    if opt._run.resumed:
        opt._run.resumed = False
    else:
        opt._run = opt._run.new_run(opt._params)
    run = opt._run
    skips = _Skips(settings["max_skips"])
    label = type(opt).__name__
    count = 0
    failure = None
    ended = False  # a one-shot iterator of training batches ran out
    try:
        while True:
            done = ended or (max_updates is not None and count >= max_updates)
            due = (run.iteration - run.run_start) % settings["validate_every"] == 0
            if (done or due) and not run.fresh_validation:
                _validate(opt, valid, settings)
                if run.fails > settings["patience"]:
                    log.info("patience elapsed after %d validations without improvement",
                             run.fails)
                    break
            if done:
                break
            run.fresh_validation = False  # from the first batch on, even if interrupted
            try:
                training, finite = run_batches(opt, step, train, names, guarded, train=True,
                                               skips=skips)
            except _EndOfData:
                log.info("the training data ended after %d iterations", count)
                ended = True
                continue
            count += 1
            run.iteration += 1
            if not finite:
                raise _NonFinite(
                    f"non-finite loss at iteration {run.iteration}: {training}; "
                    f"restored the best parameters (iteration {run.best_iteration}). "
                    "Try a smaller learning_rate or gradient clipping "
                    "(max_gradient_norm), or on_nonfinite='skip'.")
            _log(label, run.iteration, training)
            if every and count % every == 0:
                state.save(opt, checkpoint, datasets=datasets)
            yield training, dict(run.last_validation)
    except KeyboardInterrupt:
        log.info("interrupted at iteration %d", run.iteration)
    except _NonFinite as error:
        failure = error
    finally:
        try:
            if checkpoint is not None and failure is None:
                # the state as it stands, so that resuming continues exactly;
                # the best parameters are in it too (early_stopping)
                state.save(opt, checkpoint, datasets=datasets)
        finally:
            restore_best(opt)
    if failure is not None:
        if settings["on_nonfinite"] == "stop":
            log.error("stopped: %s", failure)
        else:
            raise FloatingPointError(str(failure)) from None


def restore_best(opt):
    """Put the best validated parameters back, if they are not in place."""
    if opt._run.best_in_place():
        return  # the parameters in place are the best ones
    opt.set_params("best")


def minimize(opt, *args, **kwargs):
    """Run :func:`iterate` to the end.

    Parameters
    ----------
    opt : Optimizer
        The optimizer to train.
    *args, **kwargs
        As for :func:`iterate`.

    Returns
    -------
    train_monitors, valid_monitors : dict
        See :meth:`downhill.Optimizer.minimize`.
    """
    training = None
    for training, _ in iterate(opt, *args, **kwargs):
        pass
    last = opt._run.last_validation
    return training, None if last is None else collections.OrderedDict(last)
