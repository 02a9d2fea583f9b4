"""The training loop: batches through the compiled step, validation, early
stopping, the non-finite policy and checkpoints on the way.

:func:`iterate` checks a call's arguments and returns a generator that runs
the loop; :func:`evaluate` computes the monitors on a dataset;
:func:`run_batches` is the hot loop both share. The loop's state (counters,
best validation) lives in the optimizer's :class:`~downhill.runstate.RunState`,
the compiled functions in its :class:`~downhill.compiled.Functions`. The
loop reports to a :class:`~downhill.progress.Progress` (the progress display)
through its hooks, marked ``display.`` below; per-iteration log lines go to
the child logger ``downhill.iterations``, so that they can be silenced apart.
"""

import collections
import itertools
import logging
import math
import os

from . import compiled, nonfinite, parallel, progress, state, validation
from .checkpoint import check_path
from .dataset import Dataset
from .interrupts import SIGINT
from .util import log

#: Per-iteration log lines (INFO); validations and the rest go to ``downhill``.
iteration_log = logging.getLogger("downhill.iterations")

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
        dataset.internal = True  # our own batches: no caller's code runs in them
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
    try:
        dataset.conform(opt._inputs)
    except ValueError as error:
        arrays = data if isinstance(data, (list, tuple)) else getattr(data, "_arrays", None)
        hint = validation.input_order_hint(opt._inputs, arrays or [])
        if not hint:
            raise
        raise ValueError(f"{error}{hint}") from None
    return dataset


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


def run_batches(opt, fn, dataset, names=None, guarded=False, train=False, max_skips=0):
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
    max_skips : int, optional
        With ``guarded``: the skipped steps in a row allowed.

    With ``train`` the pass is the run state's unfinished iteration: it
    goes on from the batches already done (``RunState.batches``, after a
    resume), the schedules are applied before every batch, and the update
    counter, the batches done and the running sums advance in the run state
    after every step, so that the state between two batches is always
    consistent (what a Ctrl-C saves). With ``guarded`` the last output of
    ``fn`` says whether the step was finite: a non-finite step was not
    applied and its batch is left out of the means, until more than
    ``max_skips`` come in a row.

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
    schedules = train and bool(opt._schedules)
    run = opt._run
    sigint = SIGINT
    external = (getattr(dataset, "kind", None) in ("callable", "iterable", "stream")
                and not getattr(dataset, "internal", False))
    source = _unheld(dataset) if external else dataset  # the caller's code
    # the function to call and its batches: in-graph, as given, or (JAX) on the device
    fn, batches = opt._functions.feed(fn, dataset, map(dataset.as_arguments, source))
    if train:
        if run.sums is not None and len(run.sums) != len(names):
            log.warning("the saved iteration's sums do not fit the monitors; they restart")
            run.sums, run.weight = None, 0
        if run.batches:  # a resumed iteration: its remaining batches
            batches = itertools.islice(batches, max(dataset.iteration_size - run.batches, 0))
        sums, total = run.sums, run.weight
    else:
        sums, total = None, 0
    for batch, weight in batches:
        if schedules:
            opt._settings.apply_schedules(run.updates)
        values = fn(*batch)
        if train:
            run.updates += 1
            run.batches += 1
        finite = True
        if guarded:
            finite = bool(values[-1])
            values = values[:-1]
            if finite:
                run.skips = 0
            else:
                run.skips += 1
                log.warning("skipped a non-finite step (%d in a row) at update %d",
                            run.skips, run.updates)
                if run.skips > max_skips:
                    return dict(zip(names, (float(v) for v in values))), False
        elif not math.isfinite(values[0]):
            return dict(zip(names, (float(v) for v in values))), False
        if finite:
            if sums is None:
                sums = [weight * float(v) for v in values]
                if train:
                    run.sums = sums
            else:
                for i, v in enumerate(values):
                    sums[i] += weight * float(v)
            total += weight
            if train:
                run.weight = total
        if sigint.pending:
            sigint.check()
    if sums is None:
        if guarded and run.skips:
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
    try:
        with SIGINT.held():  # Ctrl-C: KeyboardInterrupt once compiled, between batches
            monitors, _ = run_batches(opt, opt._functions.evaluate(), dataset)
    finally:
        opt._functions.release()  # JAX mode: values back on the host
    return monitors


def _log(label, iteration, monitors, marker="", logger=log):
    if not logger.isEnabledFor(logging.INFO):
        return  # formatting the monitors costs more than the update itself
    logger.info("%s %d %s%s", label, iteration, monitors_text(monitors), marker)


def monitors_text(monitors):
    """``'loss=0.5 acc=0.9'``: monitors for messages."""
    return " ".join(f"{k}={v:.6g}" for k, v in monitors.items())


def iterate(opt, train=None, valid=None, max_updates=None, *, batch_size=32, mode=None,
            devices=None, threads=None, checkpoint=None, checkpoint_every=0, resume=False,
            progressbar=None, **hyperparameters):
    """Check the arguments of a training run and return its loop.

    Parameters
    ----------
    opt : Optimizer
        The optimizer to train.
    train, valid, max_updates, batch_size, mode, checkpoint, checkpoint_every, resume
        See :meth:`downhill.Optimizer.iterate`, which documents every argument.
    devices : int, list of jax Device, or None
        JAX mode only: shard every batch along its batch axis over this many
        devices (the first of ``jax.devices()``) or these devices, with the
        parameters and state replicated; see :mod:`downhill.jaxmode` and
        the guide's "Scaling out". None keeps the current choice (initially
        JAX's default device).
    threads : int or None
        Numba backend: run the update of every large parameter on this many
        threads (see :mod:`downhill.parallel`); None keeps the current
        choice (initially the cores the process may use, at most
        ``NUMBA_NUM_THREADS``).
    progressbar : bool, None or Progress, optional
        The progress display (see :mod:`downhill.progress`): None (default)
        shows it when stderr is a terminal or in a notebook.
    **hyperparameters
        As there.

    Returns
    -------
    generator
        Yields ``(train_monitors, valid_monitors)`` after every iteration.

    Raises
    ------
    TypeError, ValueError
        At the call, before anything changes: for an unknown or invalid
        hyperparameter or argument, bad data, an unusable checkpoint path,
        or a checkpoint that does not fit (see :func:`downhill.state.load_state_dict`).
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
    batch_size = validation.check_batch_size(batch_size)
    devices = opt._functions.check_devices(devices, opt._mode if mode is None else mode)
    threads = parallel.check_threads(threads)
    display = progress.display(progressbar, type(opt).__name__)
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
    given = opt._check_hypers(hyperparameters)  # a call that fails loads nothing
    if resume and os.path.exists(checkpoint):
        saved = state.read(opt, checkpoint)
        # the schedules of this call take the saved states: checked before loading
        state.check_schedule_states(_schedules(opt, given), state.schedule_tables(saved))
        state.load_state_dict(opt, saved, datasets=datasets)
        display.on_resume(checkpoint, opt._run)
    values = dict(opt._defaults, **given)
    state.check_schedule_states(_schedules(opt, values), opt._settings.schedule_states)
    settings = opt._configure(hyperparameters)
    if mode is not None:
        opt._mode = mode
    opt._functions.use_devices(devices)
    opt._functions.use_threads(threads)
    opt._settings.restore_schedule_states(opt._run.updates)
    log.info("%s: %s", type(opt).__name__,
             " ".join(f"{k}={v}" for k, v in settings.items()))
    return _loop(opt, train, valid, max_updates, settings, checkpoint,
                 checkpoint_every, datasets, display)


def _schedules(opt, values):
    """The schedules among hyperparameter values, by name."""
    declared = opt.hyperparameters()
    return {name: value for name, value in values.items()
            if declared[name].schedulable and callable(value)}


def _compile(opt, train, valid):
    """Compile every function the loop will call, machine code included,
    so that the display shows it as the compile phase."""
    step, names, guarded = opt._functions.step()
    evaluate = opt._functions.evaluate()
    called = [opt._functions.in_graph(step) if getattr(train, "in_graph", False) else step,
              opt._functions.in_graph(evaluate) if getattr(valid, "in_graph", False)
              else evaluate]
    for fn in called:
        compiled.jit_now(fn)  # found at once when made before
    return step, names, guarded


def _validate(opt, dataset, settings, display):
    """Validate the parameters in place; record the result in the run state.

    A validation that does not finish (Ctrl-C, an exception) leaves no
    trace: the dataset's position and shuffling go back to where it began,
    so that the validation done again on resuming reads the same batches.
    """
    run = opt._run
    before = dataset.state_dict()
    try:
        monitors, finite = run_batches(opt, opt._functions.evaluate(), dataset)
    except BaseException:
        dataset.load_state_dict(before)
        raise
    if not finite:
        raise _NonFinite(
            f"non-finite validation loss at iteration {run.iteration}: "
            f"{monitors_text(monitors)}")
    improved = run.validated(monitors, opt._params, settings["min_improvement"])
    for schedule in opt._schedules.values():
        observe = getattr(schedule, "observe", None)
        if observe is not None:
            observe(monitors["loss"])
    _log("validation", run.iteration, monitors, " *" if improved else "")
    display.on_validation(run, monitors, improved)
    return monitors


def _watched(opt):
    """The parameters and state variables of the current graph, by name."""
    return dict(zip(opt._keys, opt._params), **opt._used_state())


def _finite_or_raise(opt, watched=None):
    """Raise _NonFinite if a parameter or state variable is not finite."""
    bad = nonfinite.first_nonfinite(_watched(opt) if watched is None else watched)
    if bad is not None:
        raise _NonFinite(
            f"{bad!r} is not finite after update {opt._run.updates} (iteration "
            f"{opt._run.iteration}): a step overflowed although its loss and gradients "
            "were finite; restored the best parameters "
            f"(iteration {opt._run.best_iteration}). Try a smaller learning_rate, "
            "gradient clipping (max_gradient_norm=1.0, say) or on_nonfinite='skip'.")


def _save(opt, path, datasets):
    """Write a checkpoint of a finite state; False (and an error logged) otherwise."""
    try:
        _finite_or_raise(opt)
    except _NonFinite as error:
        log.error("checkpoint %s not written: %s", path, error)
        return False
    state.save(opt, path, datasets=datasets)
    return True


def _loop(opt, train, valid, max_updates, settings, checkpoint, every, datasets, display):
    """The training loop. A Ctrl-C is held while the loop runs (not while it is
    suspended at a ``yield``) and raised at its next safe point; the loop then
    ends as at any other end: the checkpoint, then the best parameters back."""
    SIGINT.hold()
    held = True
    label = type(opt).__name__
    count = 0
    failure = None
    ended = False  # a one-shot iterator of training batches ran out
    reason = "error"   # why the loop ended, for the display
    try:
        if opt._run.resumed:
            opt._run.resumed = False
        else:  # first: an end during the compilation restores the parameters in place
            opt._run = opt._run.new_run(opt._params)
        run = opt._run
        with display.compiling():
            step, names, guarded = _compile(opt, train, valid)
            SIGINT.check()  # a Ctrl-C during the compilation ends the call here
        display.on_start(run, max_updates)
        watched = _watched(opt)  # what the finiteness check reads, once per run
        if run.fails > settings["patience"]:
            log.warning(
                "the run already ended: patience elapsed after %d validations without "
                "improvement (iteration %d); pass patience=%d or more to continue it",
                run.fails, run.iteration, run.fails)
            reason = "patience"
            return
        while True:
            done = ended or (max_updates is not None and count >= max_updates)
            due = (run.iteration - run.run_start) % settings["validate_every"] == 0
            # an unfinished iteration (resumed) was validated before it began
            if (done or due) and not run.fresh_validation and not run.batches:
                _validate(opt, valid, settings, display)
                SIGINT.check()
                if run.fails > settings["patience"]:
                    log.info("patience elapsed after %d validations without improvement",
                             run.fails)
                    reason = "patience"
                    break
            if done:
                reason = "data" if ended else "max_updates"
                break
            run.fresh_validation = False  # from the first batch on, even if interrupted
            try:
                training, finite = run_batches(opt, step, train, names, guarded, train=True,
                                               max_skips=settings["max_skips"])
            except _EndOfData:
                log.info("the training data ended after %d iterations", count)
                ended = True
                continue
            if not finite:
                raise _NonFinite(
                    f"non-finite loss at iteration {run.iteration + 1}: "
                    f"{monitors_text(training)}; restored the best parameters (iteration "
                    f"{run.best_iteration}). Try a smaller learning_rate, gradient clipping "
                    "(max_gradient_norm=1.0, say) or on_nonfinite='skip'.")
            run.end_iteration()
            count += 1
            if every and count % every == 0 or (
                    run.iteration - run.run_start) % settings["validate_every"] == 0:
                # before a checkpoint, and as often as validations: a step that
                # overflowed with a finite loss is caught here (the parameters'
                # next loss would be too, but a state variable's may not be)
                _finite_or_raise(opt, watched)
            _log(label, run.iteration, training, logger=iteration_log)
            display.on_iteration(run, training)
            if every and count % every == 0:
                state.save(opt, checkpoint, datasets=datasets)
            SIGINT.check()
            # the caller's loop body runs unheld: a Ctrl-C there raises at once (the
            # handler stays installed, which costs less than swapping it per iteration)
            with SIGINT.unheld():
                yield training, dict(run.last_validation)
    except KeyboardInterrupt:
        reason = "interrupted"
        opt._run.interrupted = True
        log.info("interrupted at iteration %d (update %d)", opt._run.iteration,
                 opt._run.updates)
    except _NonFinite as error:
        reason = "non-finite"
        failure = error
        if opt._run.batches:
            opt._run.end_iteration()  # the failed iteration counts, as its updates do
    except GeneratorExit:
        reason = "closed"
        raise
    finally:
        if not held:
            SIGINT.hold()
        opt._functions.release()  # JAX mode: values back on the host as numpy arrays
        saved = None
        try:
            if checkpoint is not None and failure is None:
                # the state as it stands (after the last whole step), so that
                # resuming continues exactly; the best parameters are in it too
                if _save(opt, checkpoint, datasets):
                    saved = checkpoint
        finally:
            try:
                restore_best(opt)
            finally:
                try:
                    display.on_finish(opt._run, reason, saved)
                finally:
                    if SIGINT.discard():
                        log.info("interrupted while the run was ending")
                    SIGINT.release(deliver=False)
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

    Ctrl-C is held for the whole run, so that one anywhere in it (between
    two iterations too) ends the run as :func:`iterate` does: quietly, with
    the checkpoint written and the best parameters in place.

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
    SIGINT.hold()
    try:
        for training, _ in iterate(opt, *args, **kwargs):
            pass
    finally:
        # a Ctrl-C after the loop's end: the run is over, as the loop's own
        if SIGINT.discard():
            log.info("interrupted while the run was ending")
        SIGINT.release(deliver=False)
    last = opt._run.last_validation
    return training, None if last is None else collections.OrderedDict(last)
