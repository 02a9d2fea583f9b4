"""Checkpoint state: what an optimizer saves and restores to continue training.

:func:`state_dict` gathers the parameters, the algorithm's state variables,
the hyperparameters and schedules, the run state (counters, early stopping)
and the datasets' shuffling into plain values; :func:`load_state_dict`
checks such a state against the optimizer, every field first, and only then
restores it. :func:`save` and :func:`load` go through a file, in the format
of :mod:`downhill.checkpoint`.
"""

import copy
import numbers
import os

import numpy as np

from . import checkpoint, validation
from .interrupts import SIGINT
from .runstate import RunState
from .util import log

__all__ = ["set_params", "state_dict", "load_state_dict", "schedule_tables",
           "check_schedule_states", "saved_settings", "save", "read", "load"]


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
    counters, progress, stopping = opt._run.to_dict(opt._keys)
    return {
        "algorithm": type(opt).__name__,
        "params": {k: p.get_value() for k, p in zip(opt._keys, opt._params)},
        "state": {name: _value_state(var.get_value())
                  for name, var in opt._used_state().items()},
        "hyperparameters": hypers,
        "schedules": schedules,
        "counters": counters,
        "progress": progress,
        "early_stopping": stopping,
        "datasets": {name: d.state_dict() for name, d in (datasets or {}).items()},
    }


def _check_arrays(kind, field, saved, current):
    """Check saved arrays against current ones: same names, shapes, dtypes."""
    if not isinstance(saved, dict):
        raise ValueError(f"state has no {kind} table: field {field} must be a table of "
                         f"arrays by name, got {type(saved).__name__}")
    missing = sorted(set(current) - set(saved))
    extra = sorted(set(saved) - set(current))
    if missing:
        raise ValueError(f"state lacks {kind} {missing[0]!r}")
    if extra:
        raise ValueError(f"state has an unknown {kind} {extra[0]!r} (not in this optimizer)")
    what = kind if kind.startswith("state") else f"state {kind}"  # messages open with 'state'
    for name, var in current.items():
        value, now = saved[name], var.get_value(borrow=True)
        if isinstance(now, np.random.Generator):
            kind_now = type(now.bit_generator).__name__
            state = value.get("generator") if isinstance(value, dict) else None
            if not isinstance(state, dict) or state.get("bit_generator") != kind_now:
                raise ValueError(f"{what} {name!r} must be a {kind_now} generator state")
            try:  # a damaged generator state is refused here, not half-way through
                np.random.Generator(getattr(np.random, kind_now)()).bit_generator.state = state
            except (TypeError, ValueError, KeyError) as error:
                raise ValueError(f"{what} {name!r} holds a damaged generator state: "
                                 f"{error}") from None
            continue
        try:
            value = np.asarray(value)
        except (TypeError, ValueError):
            raise ValueError(f"{what} {name!r} must be an array, got {value!r}") from None
        if value.shape != now.shape or value.dtype != now.dtype:
            raise ValueError(
                f"{what} {name!r} has shape {value.shape} and dtype {value.dtype}, but "
                f"this optimizer's has shape {now.shape} and dtype {now.dtype}")


def _generator(saved):
    generator = np.random.Generator(getattr(np.random, saved["generator"]["bit_generator"])())
    generator.bit_generator.state = saved["generator"]
    return generator


def load_state_dict(opt, state, datasets=None):
    """Check a state made by :func:`state_dict`, then restore it.

    A Ctrl-C while it runs is held until the state is restored (see
    :mod:`downhill.interrupts`).

    Everything is checked before anything changes, so a state that does not
    fit leaves the optimizer as it was. State variables the saved run did
    not use (e.g. a velocity, saved without momentum) are reset to their
    initial values. The next ``iterate()`` continues where the saved run
    stopped (its early-stopping state and validation schedule included, and
    inside its unfinished iteration if it was saved in one); the saved
    hyperparameters become the optimizer's defaults, except where the
    optimizer was built with a schedule, which stays (the state holds only
    the schedule's latest value; its own state is restored when the
    schedule is next in force).

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
    with SIGINT.held():
        _load_state_dict(opt, state, datasets)


def _load_state_dict(opt, state, datasets):
    if not isinstance(state, dict):
        raise ValueError(f"a state must be a dict from state_dict(), got {type(state).__name__}")
    algo = state.get("algorithm")
    if algo != type(opt).__name__:
        raise ValueError(
            f"state is from algorithm {algo!r}, but this optimizer is {type(opt).__name__}")
    hypers = _table(state, "hyperparameters")
    declared = opt.hyperparameters()
    # a schedule may end at its open lower bound (a learning rate decayed to 0),
    # and the state holds the schedule's latest value
    ended = {name: float(value) for name, value in hypers.items()
             if name in declared and declared[name].schedulable and declared[name].low_open
             and isinstance(value, (int, float)) and not isinstance(value, bool)
             and value == declared[name].low}
    try:  # strict: a saved state names only this algorithm's hyperparameters
        hypers = validation.check_hypers(
            opt._settings.declared, {k: v for k, v in hypers.items() if k not in ended},
            type(opt).__name__)
    except (TypeError, ValueError) as error:
        raise ValueError(f"state field hyperparameters does not fit: {error}") from None
    hypers.update(ended)
    # a schedule given to the constructor stays: the state holds only its latest value
    hypers = {name: value for name, value in hypers.items()
              if not (declared[name].schedulable and callable(opt._defaults.get(name)))}
    params = dict(zip(opt._keys, opt._params))
    _check_arrays("parameter", "params", state.get("params"), params)
    stopping = _table(state, "early_stopping")
    _check_arrays("best parameter", "early_stopping.best_params", stopping.get("best_params"),
                  params)
    run = RunState.from_dict(_table(state, "counters"), _table(state, "progress"), stopping,
                             opt._keys)
    schedules = schedule_tables(state)
    values = dict(opt._defaults)
    values.update(hypers)
    current, opt._values = opt._values, values
    try:
        targets = opt._used_state()
    finally:
        opt._values = current
    _check_arrays("state variable", "state", state.get("state"), targets)
    datasets = datasets or {}
    saved_sets = _table(state, "datasets")
    for name in datasets:
        if name not in saved_sets:
            raise ValueError(f"state has no shuffling state for dataset {name!r}")

    # the datasets and the hyperparameters check themselves as they load: undone on failure
    previous = {name: d.state_dict() for name, d in datasets.items()}
    defaults = dict(opt._defaults)

    def undo():
        for name, d in datasets.items():
            d.load_state_dict(previous[name])
        opt._defaults.clear()
        opt._defaults.update(defaults)

    try:
        for name, d in datasets.items():
            try:
                d.load_state_dict(saved_sets[name])
            except (TypeError, ValueError, KeyError, AttributeError) as error:
                raise ValueError(f"state field datasets.{name} does not fit: {error}") from None
        opt._defaults.update(hypers)
        try:  # an algorithm's own checks of its hyperparameters together (RProp's steps)
            opt._configure({})
        except ValueError as error:
            raise ValueError(f"state field hyperparameters does not fit: {error}") from None
    except BaseException:
        undo()  # the failed configure wrote nothing: its checks come first
        raise

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
    opt._configure({})  # again, now that the run is the saved one (ESGD's seed)
    opt._settings.schedule_states = dict(schedules)


def _table(state, name):
    """The field ``name`` of a state: a table (missing: empty)."""
    value = state.get(name, {})
    if not isinstance(value, dict):
        raise ValueError(f"state field {name} must be a table, got {value!r}")
    return value


def _number(value):
    if isinstance(value, np.ndarray) and value.shape == () and value.dtype.kind in "iuf":
        value = value.item()
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def schedule_tables(state):
    """The saved schedules' states of a state, checked: tables of numbers.

    Parameters
    ----------
    state : dict
        A state from :func:`state_dict` (or a checkpoint file).

    Returns
    -------
    dict of str to dict
        Its ``schedules`` field, by hyperparameter.

    Raises
    ------
    ValueError
        Naming the first entry that is not a table of numbers.
    """
    if not isinstance(state, dict):
        raise ValueError(f"a state must be a dict from state_dict(), got {type(state).__name__}")
    schedules = _table(state, "schedules")
    for name, table in schedules.items():
        if not isinstance(table, dict) or not all(
                isinstance(k, str) and _number(v) for k, v in table.items()):
            raise ValueError(
                f"state field schedules.{name} must be a table of numbers (a schedule's "
                f"state_dict()), got {table!r}")
    return schedules


def saved_settings(state):
    """The string-valued settings a state saved (``average``, ``validate_on``, ...).

    Parameters
    ----------
    state : dict or None
        A state from :func:`state_dict`, or None.

    Returns
    -------
    dict
        Its hyperparameters whose values are strings, unchecked (loading
        checks them); empty for None or a state without the table.
    """
    table = state.get("hyperparameters") if isinstance(state, dict) else None
    if not isinstance(table, dict):
        return {}
    return {k: v for k, v in table.items() if isinstance(k, str) and isinstance(v, str)}


def check_schedule_states(schedules, saved):
    """Check saved states against the schedules that will take them, on copies.

    Parameters
    ----------
    schedules : dict of str to callable
        The schedules that will be in force, by hyperparameter.
    saved : dict of str to dict
        Saved states by hyperparameter (``state_dict()['schedules']``).

    Raises
    ------
    ValueError
        Naming the hyperparameter whose schedule refuses its saved state;
        no schedule has changed then.
    """
    for name, schedule in schedules.items():
        table = saved.get(name)
        if table is None or not hasattr(schedule, "load_state_dict"):
            continue
        try:
            trial = copy.deepcopy(schedule)
        except Exception:  # noqa: BLE001 - a schedule that cannot be copied is loaded as it is
            continue
        try:
            trial.load_state_dict(table)
        except Exception as error:  # noqa: BLE001 - any failure of the schedule's own code
            raise ValueError(
                f"state field schedules.{name} does not fit the schedule given for "
                f"{name} ({schedule!r}): {error}") from None


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


def read(opt, path):
    """Read a checkpoint file for an optimizer, changing nothing.

    Parameters
    ----------
    opt : Optimizer
        The optimizer it must be for.
    path : str or os.PathLike
        The checkpoint file.

    Returns
    -------
    dict
        The state, for :func:`load_state_dict`.

    Raises
    ------
    CheckpointError
        If the file cannot be read or holds another algorithm's state.
    """
    header, saved = checkpoint.read(path)
    if header.get("algorithm") != type(opt).__name__:
        raise checkpoint.CheckpointError(
            f"{os.fspath(path)} holds a {header.get('algorithm')} state, but this "
            f"optimizer is {type(opt).__name__}")
    return saved


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
    load_state_dict(opt, read(opt, path), datasets)
    log.info("loaded checkpoint %s (iteration %d)", os.fspath(path), opt._run.iteration)
