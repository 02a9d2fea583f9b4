"""Where training stands: the counters and early-stopping state, one object.

A :class:`RunState` holds the iteration and update counts, the progress of
an unfinished iteration (its batches and running sums, so that a run
interrupted between two batches resumes exactly), the best validation so
far (its loss, iteration and parameters), the validations without
improvement and the latest validation's monitors. The optimizer
keeps one; each :meth:`~downhill.Optimizer.iterate` call starts a new one
(counters carried over) unless it resumes a loaded state. It is saved and
restored as a unit, and a saved one is checked field by field before
anything is restored.
"""

import collections
import dataclasses
import math
import numbers

import numpy as np

__all__ = ["RunState"]


def _int(table, name, value, low=0):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) \
            or value < low:
        raise ValueError(
            f"state field {table}.{name} must be an integer >= {low}, got {value!r}")
    return int(value)


@dataclasses.dataclass
class RunState:
    """Counters and early-stopping state of an optimizer's training.

    Parameters
    ----------
    iteration : int
        Iterations done by the optimizer, over all runs.
    updates : int
        Updates (steps) done, over all runs; schedules read this.
    run_start : int
        The iteration the current run started at (validations fall every
        ``validate_every`` iterations from here).
    best_loss : float
        The best validation loss of the current run.
    best_iteration : int
        The iteration at which it was reached.
    best_params : list of numpy arrays
        The parameters' values then.
    fails : int
        Validations since then without improvement.
    fresh_validation : bool
        Whether the parameters in place are the ones last validated.
    last_validation : dict or None
        The monitors of the latest validation.
    resumed : bool
        Whether this state was loaded, so that the next run continues it
        instead of starting afresh (not saved).
    batches : int
        Batches of the unfinished iteration done (0 between iterations).
    sums : list of float or None
        Their training monitors' sums, weighted by batch size (None before
        the first kept batch).
    weight : int
        The sum of those weights.
    skips : int
        Non-finite steps skipped in a row (``on_nonfinite='skip'``).
    interrupted : bool
        Whether the latest run ended by Ctrl-C (not saved), for a caller
        that reports how a run ended (the CLI).
    drawn : bool
        Whether a training batch has been drawn whose step is not counted
        yet (not saved): a checkpoint written then would not resume exactly.
    micro : int
        With gradient accumulation: micro-batches of the current step done
        (their gradients summed in the optimizer's state); a step's cycle
        may span iterations and calls.
    """

    iteration: int = 0
    updates: int = 0
    run_start: int = 0
    best_loss: float = math.inf
    best_iteration: int = 0
    best_params: list = dataclasses.field(default_factory=list)
    fails: int = 0
    fresh_validation: bool = False
    last_validation: dict = None
    resumed: bool = False
    batches: int = 0
    sums: list = None
    weight: int = 0
    skips: int = 0
    interrupted: bool = False
    drawn: bool = False
    micro: int = 0

    def new_run(self, params):
        """A state for a new run: the counters continue, early stopping starts over.

        Parameters
        ----------
        params : list of SharedVariable
            The parameters, whose current values become the best so far.

        Returns
        -------
        RunState
        """
        return RunState(iteration=self.iteration, updates=self.updates,
                        run_start=self.iteration, best_iteration=self.iteration,
                        best_params=[p.get_value() for p in params],
                        last_validation=self.last_validation, micro=self.micro)

    def validated(self, monitors, params, min_improvement):
        """Record a validation; return whether it improved on the best.

        Parameters
        ----------
        monitors : dict
            The validation's monitors, ``'loss'`` among them.
        params : list of SharedVariable
            The parameters validated.
        min_improvement : float
            The relative decrease of the loss that counts as progress.

        Returns
        -------
        bool
            True if the loss is the new best (its parameters are kept).
        """
        loss = monitors["loss"]
        best = self.best_loss
        improved = not math.isfinite(best) or best - loss > abs(best) * min_improvement
        if improved:
            self.best_loss = float(loss)
            self.best_iteration = self.iteration
            self.best_params = [p.get_value() for p in params]
            self.fails = 0
        else:
            self.fails += 1
        self.fresh_validation = True
        self.last_validation = monitors
        return improved

    def end_iteration(self):
        """Count the unfinished iteration as done; its progress starts over."""
        self.iteration += 1
        self.batches, self.sums, self.weight = 0, None, 0

    def best_in_place(self):
        """Whether the parameters in place are the best validated ones."""
        return self.best_iteration == self.iteration and self.fresh_validation

    def to_dict(self, keys):
        """The state as plain values.

        Parameters
        ----------
        keys : list of str
            The parameters' unique names, for the best parameters' table.

        Returns
        -------
        counters : dict
            ``iteration``, ``updates``, ``run_start``.
        progress : dict
            The unfinished iteration: ``batches``, ``sums``, ``weight``,
            ``skips`` (non-finite steps skipped in a row) and ``micro``
            (the unfinished step's micro-batches, with gradient accumulation).
        early_stopping : dict
            ``best_loss``, ``best_iteration``, ``fails``, ``best_params``
            (arrays by name), ``fresh_validation``, ``last_validation``.
        """
        counters = {"iteration": self.iteration, "updates": self.updates,
                    "run_start": self.run_start}
        progress = {"batches": self.batches,
                    "sums": None if self.sums is None else list(self.sums),
                    "weight": self.weight, "skips": self.skips, "micro": self.micro}
        stopping = {
            "best_loss": self.best_loss, "best_iteration": self.best_iteration,
            "fails": self.fails,
            "best_params": dict(zip(keys, (np.array(p) for p in self.best_params))),
            "fresh_validation": self.fresh_validation,
            "last_validation": (None if self.last_validation is None
                                else dict(self.last_validation)),
        }
        return counters, progress, stopping

    @classmethod
    def from_dict(cls, counters, progress, stopping, keys):
        """Check a saved state field by field and build it.

        Parameters
        ----------
        counters, progress, early_stopping : dict
            Tables made by :meth:`to_dict` (a state saved without
            ``progress`` was saved between iterations: give an empty table).
        keys : list of str
            The parameters' unique names; the best parameters' arrays must
            have been checked against the parameters already.

        Returns
        -------
        RunState
            With ``resumed`` set.

        Raises
        ------
        ValueError
            Naming the first field that is missing or of the wrong kind.
        """
        if not isinstance(counters, dict):
            raise ValueError(f"state field counters must be a table, got {counters!r}")
        if not isinstance(stopping, dict):
            raise ValueError(f"state field early_stopping must be a table, got {stopping!r}")
        if not isinstance(progress, dict):
            raise ValueError(f"state field progress must be a table, got {progress!r}")
        iteration = _int("counters", "iteration", counters.get("iteration", 0))
        updates = _int("counters", "updates", counters.get("updates", 0))
        run_start = _int("counters", "run_start", counters.get("run_start", 0))
        if run_start > iteration:
            raise ValueError(
                f"state field counters.run_start ({run_start}) is after counters.iteration "
                f"({iteration})")
        best_loss = stopping.get("best_loss", math.inf)
        if isinstance(best_loss, (bool, np.bool_)) or not isinstance(best_loss, numbers.Real) \
                or math.isnan(best_loss):
            raise ValueError(
                f"state field early_stopping.best_loss must be a number, got {best_loss!r}")
        best_iteration = _int("early_stopping", "best_iteration",
                              stopping.get("best_iteration", run_start))
        if not run_start <= best_iteration <= iteration:
            raise ValueError(
                f"state field early_stopping.best_iteration ({best_iteration}) is not "
                f"between counters.run_start ({run_start}) and counters.iteration "
                f"({iteration})")
        fails = _int("early_stopping", "fails", stopping.get("fails", 0))
        fresh = stopping.get("fresh_validation", False)
        if not isinstance(fresh, (bool, np.bool_)):
            raise ValueError(
                f"state field early_stopping.fresh_validation must be True or False, "
                f"got {fresh!r}")
        last = stopping.get("last_validation")
        if last is not None:
            if not isinstance(last, dict) or not all(
                    isinstance(k, str) and isinstance(v, numbers.Real)
                    and not isinstance(v, bool) for k, v in last.items()):
                raise ValueError(
                    "state field early_stopping.last_validation must be a table of "
                    f"numbers by monitor name, got {last!r}")
            last = collections.OrderedDict((k, float(v)) for k, v in last.items())
        batches, sums, weight, skips = _progress(progress)
        micro = _int("progress", "micro", progress.get("micro", 0))
        best = stopping.get("best_params")
        return cls(iteration=iteration, updates=updates, run_start=run_start,
                   best_loss=float(best_loss), best_iteration=best_iteration,
                   best_params=[np.array(best[k], copy=True) for k in keys],
                   fails=fails, fresh_validation=bool(fresh), last_validation=last,
                   resumed=True, batches=batches, sums=sums, weight=weight, skips=skips,
                   micro=micro)


def _real(value):
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def _progress(progress):
    """The unfinished iteration's progress in a saved table, checked."""
    batches = _int("progress", "batches", progress.get("batches", 0))
    skips = _int("progress", "skips", progress.get("skips", 0))
    sums = progress.get("sums")
    weight = progress.get("weight", 0)
    if sums is not None and not (isinstance(sums, list) and all(_real(v) for v in sums)):
        raise ValueError(f"state field progress.sums must be a list of numbers, got {sums!r}")
    if not _real(weight) or not weight >= 0 or (sums is not None) != (weight > 0):
        raise ValueError(
            f"state field progress.weight must be a number, > 0 with sums and 0 "
            f"without, got {weight!r}")
    if sums is not None and not batches:
        raise ValueError("state field progress.sums is given for an iteration with no batches")
    return batches, None if sums is None else [float(v) for v in sums], weight, skips
