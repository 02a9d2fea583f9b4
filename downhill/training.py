"""The training loop: batches through the compiled step, validation, early
stopping, the non-finite policy and checkpoints on the way.

:func:`iterate` checks a call's arguments and returns a generator that runs
the loop; :func:`evaluate` computes the monitors on a dataset; one pass over
a dataset's batches (the hot loop) lives in :mod:`downhill.passes`. The loop's state (counters,
best validation) lives in the optimizer's :class:`~downhill.runstate.RunState`,
the compiled functions in its :class:`~downhill.compiled.Functions`. The
loop reports to a :class:`~downhill.progress.Progress` (the progress display)
through its hooks, marked ``display.`` below; per-iteration log lines go to
the child logger ``downhill.iterations``, so that they can be silenced apart.
"""

import collections
import functools
import logging
import os

from . import accumulate, averaging, compiled, nonfinite, parallel, progress, state, validation
from .passes import EndOfData, feeder, run_batches, training_pass
from .checkpoint import check_path
from .dataset import Dataset
from .interrupts import SIGINT
from .util import log

#: Per-iteration log lines (INFO); validations and the rest go to ``downhill``.
iteration_log = logging.getLogger("downhill.iterations")

__all__ = ["as_dataset", "evaluate", "iterate", "minimize"]


class _NonFinite(Exception):
    """Internal: the loss or a gradient became NaN or infinite."""


def _need_loss(opt, call):
    if opt._loss is None:
        raise ValueError(
            f"{call}() needs a loss to report and validate, but this {type(opt).__name__} "
            "was built from gradients alone; build it with the loss too "
            "(build(algo, loss, grads=..., params=...)), or use get_updates() in your own "
            "loop")


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
    opt._settings.check_loop_use(given)
    saved = None
    if resume and os.path.exists(checkpoint):
        saved = state.read(opt, checkpoint)
    # the settings that will be in force fit together (those of a checkpoint too)
    averaging.check({**opt._defaults, **state.saved_settings(saved), **given})
    if saved is not None:
        # the schedules of this call take the saved states: checked before loading
        state.check_schedule_states(_schedules(opt, given), state.schedule_tables(saved))
        state.load_state_dict(opt, saved, datasets=datasets)
        display.on_resume(checkpoint, opt._run)
    values = dict(opt._defaults, **given)
    state.check_schedule_states(_schedules(opt, values), opt._settings.schedule_states)
    settings = opt._configure(hyperparameters)
    accumulate.settle(opt)
    if mode is not None:
        opt._mode = mode
    opt._functions.use_devices(devices)
    opt._functions.use_threads(threads)
    opt._settings.restore_schedule_states(opt._settings.count())
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
    if opt._values["accumulate"] > 1:  # a step of micro-batches: two functions
        step = accumulate.Cycle(opt, train)
        names, guarded, steps = step.names, step.guarded, step.functions
    else:
        step, names, guarded = opt._functions.step()
        steps = [step]
    evaluate = opt._functions.evaluate(opt._evaluation_point())
    called = [opt._functions.in_graph(fn) if getattr(train, "in_graph", False) else fn
              for fn in steps]
    called.append(opt._functions.in_graph(evaluate) if getattr(valid, "in_graph", False)
                  else evaluate)
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
    # our own batches of a loss without inputs have no position to go back to
    before = None if getattr(dataset, "internal", False) else dataset.state_dict()
    try:
        point = opt._evaluation_point()  # the parameters, or e.g. their average
        monitors, finite = run_batches(opt, opt._functions.evaluate(point), dataset)
    except BaseException:
        if before is not None:
            dataset.load_state_dict(before)
        raise
    if not finite:
        raise _NonFinite(
            f"non-finite validation loss at iteration {run.iteration}: "
            f"{monitors_text(monitors)}")
    improved = run.validated(monitors, point or opt._params, settings["min_improvement"])
    opt._settings.observe(monitors["loss"], run.updates)  # ReduceOnPlateau
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
    """The training loop. A Ctrl-C is held while the loop runs and raised at its
    next safe point; the loop then ends as at any other end: the checkpoint,
    then the best parameters back. While it is suspended at a ``yield`` the
    caller's loop body runs unheld (a Ctrl-C raises there), unless a hold
    outside the loop covers that body too (:func:`minimize`'s)."""
    # a hold outside the loop (minimize's) covers its caller's loop body too
    outer = SIGINT.depth
    SIGINT.hold()
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
        run.updates = opt._settings.count()  # steps of the caller's own functions count
        with display.compiling():
            step, names, guarded = _compile(opt, train, valid)
            SIGINT.check()  # a Ctrl-C during the compilation ends the call here
        averaging.begin_run(opt, run)
        display.on_start(run, max_updates)
        watched = _watched(opt)  # what the finiteness check reads, once per run
        # read once: the loop below runs once per iteration (often once per update)
        validate_every = settings["validate_every"]
        train_pass = functools.partial(training_pass, opt, feeder(opt, step, train),
                                       train, names, guarded, settings["max_skips"])
        sigint = SIGINT
        free = 1 if outer == 0 else 0  # the caller's loop body runs unheld
        shown, shown_of = None, None   # the validation monitors yielded, and their source
        if run.fails > settings["patience"]:
            log.warning(
                "the run already ended: patience elapsed after %d validations without "
                "improvement (iteration %d); pass patience=%d or more to continue it",
                run.fails, run.iteration, run.fails)
            reason = "patience"
            return
        due = (run.iteration - run.run_start) % validate_every == 0
        while True:
            done = ended or (max_updates is not None and count >= max_updates)
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
                training, finite = train_pass()
            except EndOfData:
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
            due = (run.iteration - run.run_start) % validate_every == 0
            saving = every and count % every == 0
            if saving or due:
                # before a checkpoint, and as often as validations: a step that
                # overflowed with a finite loss is caught here (the parameters'
                # next loss would be too, but a state variable's may not be)
                _finite_or_raise(opt, watched)
            if iteration_log.isEnabledFor(logging.INFO):
                _log(label, run.iteration, training, logger=iteration_log)
            display.on_iteration(run, training)
            if saving:
                state.save(opt, checkpoint, datasets=datasets)
            if sigint.pending:
                sigint.check()
            if run.last_validation is not shown_of:  # one copy per validation, as in 0.4
                shown_of = run.last_validation
                shown = dict(shown_of)
            # the caller's loop body runs unheld: a Ctrl-C there raises at once (the
            # handler stays installed, which costs less than swapping it per iteration;
            # the count Sigint.call_unheld keeps, kept here: this runs once per update).
            # Under minimize the body is minimize's own, held: the Ctrl-C waits for
            # the loop's next safe point, inside this generator, and ends the run here
            sigint._unheld += free
            try:
                yield training, shown
            finally:
                sigint._unheld -= free
            if sigint.pending:
                sigint.check()
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
        opt._functions.release()  # JAX mode: values back on the host as numpy arrays
        saved = None
        try:
            if checkpoint is not None and failure is None and opt._run.drawn:
                log.error("checkpoint %s not written: the run ended between drawing a batch "
                          "and counting its step, so the state would not resume exactly (it "
                          "would skip that batch); the last checkpoint written stays",
                          checkpoint)
            elif checkpoint is not None and failure is None:
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
    """Put the parameters that ``final_params`` chooses in place (by default the
    best validated ones, if they are not in place); see :func:`downhill.averaging.finish`."""
    averaging.finish(opt)


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
