"""Where training stands: the counters and early-stopping state, one object.

A :class:`RunState` holds the iteration and update counts, the best
validation so far (its loss, iteration and parameters), the validations
without improvement and the latest validation's monitors. The optimizer
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
                        last_validation=self.last_validation)

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
        early_stopping : dict
            ``best_loss``, ``best_iteration``, ``fails``, ``best_params``
            (arrays by name), ``fresh_validation``, ``last_validation``.
        """
        counters = {"iteration": self.iteration, "updates": self.updates,
                    "run_start": self.run_start}
        stopping = {
            "best_loss": self.best_loss, "best_iteration": self.best_iteration,
            "fails": self.fails,
            "best_params": dict(zip(keys, (np.array(p) for p in self.best_params))),
            "fresh_validation": self.fresh_validation,
            "last_validation": (None if self.last_validation is None
                                else dict(self.last_validation)),
        }
        return counters, stopping

    @classmethod
    def from_dict(cls, counters, stopping, keys):
        """Check a saved state field by field and build it.

        Parameters
        ----------
        counters, early_stopping : dict
            Tables made by :meth:`to_dict`.
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
                              stopping.get("best_iteration", 0))
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
        best = stopping.get("best_params")
        return cls(iteration=iteration, updates=updates, run_start=run_start,
                   best_loss=float(best_loss), best_iteration=best_iteration,
                   best_params=[np.array(best[k], copy=True) for k in keys],
                   fails=fails, fresh_validation=bool(fresh), last_validation=last,
                   resumed=True)
