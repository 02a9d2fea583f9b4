"""Checkpoint state: what an optimizer saves and restores to continue training.

:func:`state_dict` gathers the parameters, the algorithm's state variables,
the hyperparameters and schedules, the run state (counters, early stopping)
and the datasets' shuffling into plain values; :func:`load_state_dict`
checks such a state against the optimizer, every field first, and only then
restores it. :func:`save` and :func:`load` go through a file, in the format
of :mod:`downhill.checkpoint`.
"""

import os

import numpy as np

from . import checkpoint, validation
from .runstate import RunState
from .util import log

__all__ = ["set_params", "state_dict", "load_state_dict", "save", "load"]


def set_params(opt, targets=None):
    """Set the parameters' values; see :meth:`downhill.Optimizer.set_params`.

    Parameters
    ----------
    opt : Optimizer
        The optimizer.
    targets : list of arrays, ``'best'`` or None
        New values, one array per parameter; ``'best'`` or None: the best
        validated ones.

    Raises
    ------
    ValueError
        If the number of arrays or an array's shape does not match.
    """
    if targets is None or (isinstance(targets, str) and targets == "best"):
        targets = opt._run.best_params
    elif isinstance(targets, str):
        raise ValueError(f"set_params takes a list of arrays or 'best', got {targets!r}")
    targets = list(targets)
    if len(targets) != len(opt._params):
        raise ValueError(
            f"set_params got {len(targets)} arrays for {len(opt._params)} parameters")
    arrays = []
    for name, param, target in zip(opt._names, opt._params, targets):
        current = param.get_value(borrow=True)
        target = np.asarray(target)
        if target.shape != current.shape:
            raise ValueError(
                f"parameter {name!r} has shape {current.shape}, got an array of "
                f"shape {target.shape}")
        arrays.append(target.astype(current.dtype, copy=True))
    for param, array in zip(opt._params, arrays):
        param.set_value(array, borrow=True)
    opt._run.fresh_validation = False


def _value_state(value):
    if isinstance(value, np.random.Generator):
        return {"generator": value.bit_generator.state}
    return np.array(value, copy=True)


def state_dict(opt, datasets=None):
    """Everything needed to continue training later.

    Parameters
    ----------
    opt : Optimizer
        The optimizer.
    datasets : dict of str to Dataset, optional
        Datasets whose shuffling state to include, by name.

    Returns
    -------
    dict
        See :meth:`downhill.Optimizer.state_dict`.
    """
    declared = opt.hyperparameters()
    hypers = {}
    for name, value in opt._values.items():
        if callable(value):
            value = opt._settings.scheduled_value(declared[name], value, opt._run.updates)
        hypers[name] = value
    schedules = {name: f.state_dict() for name, f in opt._schedules.items()
                 if hasattr(f, "state_dict")}
    counters, stopping = opt._run.to_dict(opt._keys)
    return {
        "algorithm": type(opt).__name__,
        "params": {k: p.get_value() for k, p in zip(opt._keys, opt._params)},
        "state": {name: _value_state(var.get_value())
                  for name, var in opt._used_state().items()},
        "hyperparameters": hypers,
        "schedules": schedules,
        "counters": counters,
        "early_stopping": stopping,
        "datasets": {name: d.state_dict() for name, d in (datasets or {}).items()},
    }


def _check_arrays(kind, saved, current):
    """Check saved arrays against current ones: same names, shapes, dtypes."""
    if not isinstance(saved, dict):
        raise ValueError(f"state has no {kind} table")
    missing = sorted(set(current) - set(saved))
    extra = sorted(set(saved) - set(current))
    if missing:
        raise ValueError(f"state lacks {kind} {missing[0]!r}")
    if extra:
        raise ValueError(f"state has an unknown {kind} {extra[0]!r} (not in this optimizer)")
    for name, var in current.items():
        value, now = saved[name], var.get_value(borrow=True)
        if isinstance(now, np.random.Generator):
            kind_now = type(now.bit_generator).__name__
            state = value.get("generator") if isinstance(value, dict) else None
            if not isinstance(state, dict) or state.get("bit_generator") != kind_now:
                raise ValueError(f"{kind} {name!r} must be a {kind_now} generator state")
            try:  # a damaged generator state is refused here, not half-way through
                np.random.Generator(getattr(np.random, kind_now)()).bit_generator.state = state
            except (TypeError, ValueError, KeyError) as error:
                raise ValueError(f"{kind} {name!r} holds a damaged generator state: "
                                 f"{error}") from None
            continue
        value = np.asarray(value)
        if value.shape != now.shape or value.dtype != now.dtype:
            raise ValueError(
                f"{kind} {name!r} has shape {now.shape} and dtype {now.dtype}, but the "
                f"state has shape {value.shape} and dtype {value.dtype}")


def _generator(saved):
    generator = np.random.Generator(getattr(np.random, saved["generator"]["bit_generator"])())
    generator.bit_generator.state = saved["generator"]
    return generator


def load_state_dict(opt, state, datasets=None):
    """Check a state made by :func:`state_dict`, then restore it.

    Everything is checked before anything changes, so a state that does not
    fit leaves the optimizer as it was. State variables the saved run did
    not use (e.g. a velocity, saved without momentum) are reset to their
    initial values. The next ``iterate()`` continues where the saved run
    stopped (its early-stopping state and validation schedule included);
    the saved hyperparameters become the optimizer's defaults.

    Parameters
    ----------
    opt : Optimizer
        The optimizer to restore.
    state : dict
        The state.
    datasets : dict of str to Dataset, optional
        Datasets whose shuffling state to restore, by name.

    Raises
    ------
    ValueError
        Naming the first field that does not fit; nothing has changed then.
        See :meth:`downhill.Optimizer.load_state_dict`.
    """
    if not isinstance(state, dict):
        raise ValueError(f"a state must be a dict from state_dict(), got {type(state).__name__}")
    algo = state.get("algorithm")
    if algo != type(opt).__name__:
        raise ValueError(
            f"state is from algorithm {algo!r}, but this optimizer is {type(opt).__name__}")
    hypers = state.get("hyperparameters", {})
    if not isinstance(hypers, dict):
        raise ValueError(f"state field hyperparameters must be a table, got {hypers!r}")
    try:  # strict: a saved state names only this algorithm's hyperparameters
        hypers = validation.check_hypers(opt._settings.declared, hypers, type(opt).__name__)
    except TypeError as error:
        raise ValueError(f"state does not fit: {error}") from None
    params = dict(zip(opt._keys, opt._params))
    _check_arrays("parameter", state.get("params"), params)
    stopping = state.get("early_stopping", {})
    if not isinstance(stopping, dict):
        raise ValueError(f"state field early_stopping must be a table, got {stopping!r}")
    _check_arrays("best parameter", stopping.get("best_params"), params)
    run = RunState.from_dict(state.get("counters", {}), stopping, opt._keys)
    schedules = state.get("schedules", {})
    if not isinstance(schedules, dict) or not all(
            isinstance(v, dict) for v in schedules.values()):
        raise ValueError(f"state field schedules must be a table of tables, got {schedules!r}")
    values = dict(opt._defaults)
    values.update(hypers)
    current, opt._values = opt._values, values
    try:
        targets = opt._used_state()
    finally:
        opt._values = current
    _check_arrays("state variable", state.get("state"), targets)
    datasets = datasets or {}
    saved_sets = state.get("datasets", {})
    if not isinstance(saved_sets, dict):
        raise ValueError(f"state field datasets must be a table, got {saved_sets!r}")
    for name in datasets:
        if name not in saved_sets:
            raise ValueError(f"state has no shuffling state for dataset {name!r}")
    previous = {name: d.state_dict() for name, d in datasets.items()}
    try:
        for name, d in datasets.items():
            d.load_state_dict(saved_sets[name])
    except (TypeError, ValueError, KeyError) as error:
        for name, d in datasets.items():
            d.load_state_dict(previous[name])
        if isinstance(error, ValueError):
            raise
        raise ValueError(f"state field datasets is damaged: {error!r}") from None

    # everything checked: from here on nothing fails
    for key, param in params.items():
        param.set_value(np.array(state["params"][key], copy=True))
    for name, var in targets.items():
        value = state["state"][name]
        var.set_value(_generator(value) if isinstance(value, dict)
                      else np.array(value, copy=True))
    # state the saved run did not use starts afresh, as in a new optimizer
    opt._variables.reset_unused(targets)
    opt._run = run
    opt._defaults.update(hypers)
    opt._configure({})
    opt._settings.schedule_states = dict(schedules)


def save(opt, path, datasets=None):
    """Write :func:`state_dict` to a checkpoint file, atomically.

    The file is written next to ``path`` under a temporary name, flushed to
    disk and renamed (see :func:`downhill.checkpoint.write`).

    Parameters
    ----------
    opt : Optimizer
        The optimizer.
    path : str or os.PathLike
        The checkpoint file.
    datasets : dict of str to Dataset, optional
        Datasets whose shuffling state to include.
    """
    from . import __version__
    checkpoint.write(path, state_dict(opt, datasets), __version__, type(opt).__name__)
    log.info("saved checkpoint %s at iteration %d", os.fspath(path), opt._run.iteration)


def load(opt, path, datasets=None):
    """Read a checkpoint file and restore it.

    Parameters
    ----------
    opt : Optimizer
        The optimizer to restore.
    path : str or os.PathLike
        The checkpoint file.
    datasets : dict of str to Dataset, optional
        Datasets whose shuffling state to restore.

    Raises
    ------
    ValueError
        See :meth:`downhill.Optimizer.load`.
    """
    header, saved = checkpoint.read(path)
    if header.get("algorithm") != type(opt).__name__:
        raise checkpoint.CheckpointError(
            f"{os.fspath(path)} holds a {header.get('algorithm')} state, but this "
            f"optimizer is {type(opt).__name__}")
    load_state_dict(opt, saved, datasets)
    log.info("loaded checkpoint %s (iteration %d)", os.fspath(path), opt._run.iteration)
