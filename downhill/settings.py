"""The hyperparameter values of one optimizer: :class:`Settings`.

The defaults (declared, then given to the constructor), the values in
force, one shared scalar per numeric hyperparameter, the update counter
that the update graph advances, the schedules in force and what the graph
reads for each hyperparameter (:meth:`Settings.graph_value`). How each
kind of value reaches the graph:

- a number: its shared scalar, written here (a new number compiles
  nothing);
- a graph schedule: an expression of the update counter
  (:mod:`downhill.hypergraph`); the step also writes the value it used into
  the shared scalar, so ``opt.learning_rate.get_value()`` reads it back;
- a PyTensor shared variable or expression: read as it is, checked in the
  graph where it could not be checked when given (the value used is
  written into the shared scalar too);
- a Python schedule (a plain function, ``ReduceOnPlateau``): the shared
  scalar, written by the training loop before every update (a function) or
  after every validation (``ReduceOnPlateau``); it cannot apply in a graph
  that runs without the loop (:meth:`Settings.check_graph_use`).
"""

import functools

import numpy as np
import pytensor
import pytensor.tensor as pt
from pytensor.graph.basic import Constant

from . import hypergraph, util, validation
from .hyperparams import ALIASES, is_number, is_on

__all__ = ["Settings", "check_graph_use", "GRAPH_SCHEDULES"]

#: The graph schedules, named in messages.
GRAPH_SCHEDULES = ("Constant, Linear, StepDecay, ExponentialDecay, CosineWithWarmup or "
                   "Sequence (downhill.schedules)")


def check_graph_use(declared, values, call):
    """Refuse Python schedules where no training loop evaluates them.

    Parameters
    ----------
    declared : dict of str to Hyper
        The declarations.
    values : dict
        The values that will be in force (checked).
    call : str
        What builds the graph, for the message: ``'get_updates()'``.

    Raises
    ------
    ValueError
        For a Python function or ``ReduceOnPlateau``: a graph that runs
        without downhill's training loop would keep its first value.
    """
    for name, value in values.items():
        if not (declared[name].schedulable and callable(value)) \
                or hypergraph.is_graph_schedule(value):
            continue
        if not getattr(value, "per_update", True) or hasattr(value, "observe"):
            raise ValueError(
                f"{name}={value!r} follows the validation loss, which only iterate() "
                f"and minimize() see; {call} builds a graph that runs without them. "
                f"Inside pm.fit, change the value from a callback (pm.fit(..., "
                f"callbacks=[...]) calling fn.{name}.set_value(...)), or give a graph "
                f"schedule: {GRAPH_SCHEDULES}")
        hint = ("; a Schedule subclass runs in the graph when it implements "
                "_formula(n, p, ops)") if hasattr(value, "_at") else ""
        raise ValueError(
            f"{name}={value!r} is a Python function, which only iterate() and "
            f"minimize() evaluate before every update; {call} builds a graph that "
            f"runs without them, where it would keep its first value. Give a graph "
            f"schedule, which the compiled step computes itself: {GRAPH_SCHEDULES}; "
            f"or a PyTensor shared variable that you set between steps{hint}")


class Settings:
    """The hyperparameter values of one optimizer.

    Parameters
    ----------
    declared : dict of str to Hyper
        The optimizer's declarations.
    dtype : str
        The dtype of the shared scalars (the parameters').
    owner : str
        The algorithm's name, for messages.
    given : dict
        Defaults given to the constructor.

    Attributes
    ----------
    counter : SharedVariable
        The update count, an int64 scalar that every step advances by one.
    values : dict
        The values in force (schedules and PyTensor values as given).
    schedules : dict
        The schedules in force, by hyperparameter.
    per_update : dict
        The Python schedules the loop evaluates before every update.
    """

    def __init__(self, declared, dtype, owner, given):
        self.declared = declared
        self.dtype = dtype
        self.owner = owner
        self.warned = set()  # unknown names already warned about
        self.defaults = {name: h.default for name, h in declared.items()}
        self.defaults.update(self.check(given))
        self.shared = {
            # allow_downcast: opt.learning_rate.set_value(0.01) works for float32 too
            h.shared: pytensor.shared(np.asarray(0, dtype=dtype), name=h.shared,
                                      allow_downcast=True)
            for h in declared.values() if h.shared}
        self.by_shared = {h.shared: h for h in declared.values() if h.shared}
        self.counter = pytensor.shared(np.asarray(0, dtype="int64"), name="update_count")
        self.slots = hypergraph.Slots()
        self.values = dict(self.defaults)
        self.schedules = {}
        self.per_update = {}
        self.schedule_states = {}  # saved with a checkpoint, for the next run
        self._expressions = {}     # (shared name, form) -> expression

    # -- checking ------------------------------------------------------

    def check(self, given):
        """Validate named values; ignore unknown names with a warning.

        A name no declaration knows gives one
        :class:`~downhill.DownhillWarning` per optimizer and name (naming
        the closest known name, if one is close) and is left out; one of
        ``downhill.hyperparams.ALIASES`` stands for its hyperparameter,
        with a warning. The known values are checked by
        ``downhill.validation.check_hypers``.

        Parameters
        ----------
        given : dict
            Names and values.

        Returns
        -------
        dict
            The known values converted to their declared kinds.

        Raises
        ------
        ValueError
            For a value outside its allowed range, or a synonym given
            together with its hyperparameter.
        """
        known = {}
        for name, value in given.items():
            target = ALIASES.get(name)
            if name in self.declared:
                known[name] = value
            elif target in self.declared:
                if target in given:
                    raise ValueError(
                        f"{name} and {target} are both given: {name} is downhill 0.4's "
                        f"synonym of {target}; give only {target}")
                self._warn_once(name, f"{name!r} is downhill 0.4's deprecated synonym of "
                                      f"{target!r}, applied as {target}={value!r}")
                known[target] = value
            else:
                close = util.closest_name(name, self.declared)
                hint = f"; did you mean {close!r}?" if close else ""
                self._warn_once(name, f"unknown hyperparameter {name!r} for {self.owner}, "
                                      f"ignored{hint}")
        return validation.check_hypers(self.declared, known, self.owner)

    def _warn_once(self, name, message):
        if name not in self.warned:
            self.warned.add(name)
            util.warn(message)

    def check_graph_use(self, given, call):
        """Refuse Python schedules where no training loop evaluates them
        (see :func:`check_graph_use`).

        Parameters
        ----------
        given : dict
            Values for the call (checked), over the defaults.
        call : str
            What builds the graph, for the message: ``'get_updates()'``.
        """
        check_graph_use(self.declared, dict(self.defaults, **given), call)

    def check_loop_use(self, given):
        """Refuse PyTensor values that the training loop cannot compute.

        Parameters
        ----------
        given : dict
            Values for the call (checked), over the defaults.

        Raises
        ------
        ValueError
            For an expression with inputs other than shared variables and
            constants: the loop's step function takes only the batch.
        """
        for name, value in dict(self.defaults, **given).items():
            if not hypergraph.is_symbolic(value):
                continue
            free = hypergraph.free_inputs(value)
            if free:
                raise ValueError(
                    f"invalid {name}: {value!r} depends on the input "
                    f"{free[0].name or free[0]!r}, which the training loop cannot feed; "
                    "give a shared variable or an expression of shared variables, or "
                    "compile your own step with get_updates()")

    # -- the values in force --------------------------------------------

    def count(self):
        """The update count: the updates the optimizer's steps have done.

        Returns
        -------
        int
        """
        return int(np.asarray(self.counter.get_value()))

    def set_count(self, updates):
        """Set the update count (a loaded checkpoint's).

        Parameters
        ----------
        updates : int
        """
        self.counter.set_value(np.asarray(updates, dtype="int64"))

    def configure(self, given, updates=None):
        """Put the defaults with ``given`` applied in force; write the shared scalars.

        Every schedule is evaluated at ``updates`` and its value written
        into its shared scalar (the value in force for the next update); a
        graph schedule's numbers are written into its own shared scalars. A
        shared variable or constant given for a hyperparameter has its value
        copied into the optimizer's scalar too (which the graph then does
        not read).

        Parameters
        ----------
        given : dict
            Values for this call.
        updates : int, optional
            The update count at which schedules are evaluated; default
            :meth:`count`.

        Returns
        -------
        dict
            All values in force (a schedule as given, not evaluated).
        """
        values = dict(self.defaults)
        values.update(self.check(given))
        updates = self.count() if updates is None else updates
        schedules = {name: value for name, value in values.items()
                     if self.declared[name].schedulable and callable(value)}
        now = {name: self.scheduled_value(self.declared[name], f, updates)
               for name, f in schedules.items()}
        now.update((name, hypergraph.current_value(value)) for name, value in values.items()
                   if hypergraph.is_symbolic(value))
        for name, f in schedules.items():
            if hypergraph.is_graph_schedule(f):
                self.slots.write(name, f)
        for h in self.declared.values():
            value = now.get(h.name, values[h.name])
            if h.shared and value is not None and is_number(value):
                self._write(h, value)
        self.values = values
        self.schedules = schedules
        self.per_update = {name: f for name, f in schedules.items()
                           if not hypergraph.is_graph_schedule(f)
                           and getattr(f, "per_update", True)}
        return values

    def _write(self, hyper, value):
        self.shared[hyper.shared].set_value(
            np.asarray(hyper.shared_value(value), dtype=self.dtype))

    def scheduled_value(self, hyper, schedule, updates):
        """Evaluate a schedule at an update count in Python and check the result.

        Parameters
        ----------
        hyper : Hyper
            The scheduled hyperparameter.
        schedule : callable
            Its schedule.
        updates : int
            The update count.

        Returns
        -------
        float
            The value, validated (the lower bound of an open range is
            allowed, e.g. a learning rate warming up from 0).

        Raises
        ------
        ValueError
            If the schedule fails or returns a value out of range.
        """
        try:
            value = schedule(updates)
        except Exception as error:
            raise ValueError(
                f"the schedule given for {hyper.name} failed at update "
                f"{updates}: {error!r}") from error
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = None
        if number is None or isinstance(value, (bool, str)) or not hyper.accepts(number):
            raise ValueError(
                f"the schedule given for {hyper.name} returned {value!r} at update "
                f"{updates} (must be {hyper.number_range()})")
        return number

    def apply_schedules(self, updates):
        """Write every per-update Python schedule's value at ``updates`` into its
        shared scalar (graph schedules need nothing).

        Parameters
        ----------
        updates : int
            The update count.
        """
        for name, schedule in self.per_update.items():
            h = self.declared[name]
            self._write(h, self.scheduled_value(h, schedule, updates))

    def _write_python(self, updates, only_validated=False):
        for name, schedule in self.schedules.items():
            if hypergraph.is_graph_schedule(schedule) or (
                    only_validated and name in self.per_update):
                continue
            h = self.declared[name]
            self._write(h, self.scheduled_value(h, schedule, updates))

    def observe(self, loss, updates):
        """Tell the schedules in force a validation loss; write the values of those
        that change only then (``ReduceOnPlateau``).

        Parameters
        ----------
        loss : float
            The validation loss.
        updates : int
            The update count.
        """
        for schedule in self.schedules.values():
            observe = getattr(schedule, "observe", None)
            if observe is not None:
                observe(loss)
        self._write_python(updates, only_validated=True)

    def restore_schedule_states(self, updates):
        """Give the schedules in force the states a loaded checkpoint saved.

        Parameters
        ----------
        updates : int
            The update count, to write the restored schedules' values at.
        """
        for name, schedule in self.schedules.items():
            saved = self.schedule_states.pop(name, None)
            if saved is not None and hasattr(schedule, "load_state_dict"):
                schedule.load_state_dict(saved)
                self._write_python(updates)

    def on(self, name):
        """Whether a switch hyperparameter turns its feature on (see
        :func:`~downhill.hyperparams.is_on`).

        Parameters
        ----------
        name : str

        Returns
        -------
        bool
        """
        return is_on(self.values[name])

    def structure(self):
        """The choices among the values in force that change the graph's shape.

        Returns
        -------
        tuple of (str, object)
            ``(name, part)`` for each hyperparameter whose value decides a
            part of the graph (see :meth:`downhill.hyperparams.Hyper.structure`), and
            ``(name, form)`` for each graph schedule (its skeleton) and
            PyTensor value (the variable).
        """
        key = []
        for h in self.declared.values():
            value = self.values[h.name]
            part = h.structure(value)
            if part is not None:
                key.append((h.name, part))
            form = self._form(h, value)
            if form is not None:
                key.append((h.name, form))
        return tuple(key)

    # -- what the update graph reads --------------------------------------

    @staticmethod
    def _form(hyper, value):
        if not hyper.shared:
            return None
        if hypergraph.is_graph_schedule(value):
            return ("schedule", value.skeleton())
        if hypergraph.is_symbolic(value):
            return ("symbolic", value)
        return None

    def graph_value(self, attr):
        """What the update graph reads for a shared scalar's hyperparameter.

        Parameters
        ----------
        attr : str
            The shared scalar's name (``"learning_rate"``, ``"ewma"``).

        Returns
        -------
        pytensor scalar
            Of the parameters' dtype: the shared scalar for a number or a
            Python schedule; for a graph schedule its expression of the
            update counter; for a PyTensor value that value (checked in the
            graph unless it is a constant, which was checked when given);
            with the declared transform applied.
        """
        h = self.by_shared.get(attr)
        form = None if h is None else self._form(h, self.values[h.name])
        if form is None:
            return self.shared[attr]
        return self._expression(h, self.values[h.name], form)

    def _expression(self, hyper, value, form):
        key = (hyper.shared, form)
        if key in self._expressions:
            return self._expressions[key]
        with pytensor.config.change_flags(floatX="float64"):
            if hypergraph.is_graph_schedule(value):
                x = hypergraph.schedule_expression(
                    value, self.counter, functools.partial(self.slots.get, hyper.name))
                checked = value.bounds() is not None
            else:
                x = pt.cast(value, "float64")
                checked = isinstance(value, Constant)
            if not checked:
                x = hypergraph.guarded(hyper, x)
            if hyper.transform:
                try:
                    x = hyper.transform(x)
                except TypeError as error:
                    raise ValueError(
                        f"{hyper.name} cannot take a schedule or a PyTensor value: its "
                        f"transform {hyper.transform!r} does not take a PyTensor scalar "
                        f"({error})") from None
            x = pt.cast(x, self.dtype)
        self._expressions[key] = x
        return x

    def graph_updates(self):
        """The updates the step makes besides the parameters and their state.

        Returns
        -------
        list of (SharedVariable, expression)
            The counter's advance, and for each graph schedule and PyTensor
            value the value this step used (:meth:`graph_value`) into the
            hyperparameter's shared scalar, which so reads it back. The
            non-finite guard does not hold them back: a skipped step counts
            as an update for schedules.

        Notes
        -----
        Writing the value also keeps it one scalar: PyTensor lifts a
        broadcast through an expression that nothing else reads, and would
        then fuse a schedule's arithmetic into every parameter's
        elementwise loop, computing it once per element.
        """
        pairs = []
        for h in self.declared.values():
            value = self.values[h.name]
            form = self._form(h, value)
            if form is not None:
                pairs.append((self.shared[h.shared], self._expression(h, value, form)))
        pairs.append((self.counter, self.counter + 1))
        return pairs
