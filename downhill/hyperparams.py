"""Hyperparameters: how each is declared (:class:`Hyper`), the ones every
algorithm shares (:data:`COMMON`), and :class:`Settings`, the values an
optimizer has in force: defaults, shared scalars and schedules.

One declaration (name, default, type, range) drives validation, the
documentation tables, the command line's options and ``downhill
algorithms``. A keyword no declaration knows is ignored with one
:class:`~downhill.DownhillWarning` per optimizer and name, as downhill 0.4
accepted every keyword; values of known names are always validated.
"""

import math
import numbers

import numpy as np
import pytensor

from . import util, validation

__all__ = ["Hyper", "COMMON", "ALIASES", "declarations", "Settings"]


class Hyper:
    """Declaration of one hyperparameter: name, default, type and range.

    One declaration drives validation, the documentation table, the command
    line and the ``downhill algorithms`` listing.

    Parameters
    ----------
    name : str
        Keyword name, e.g. ``"learning_rate"``.
    default : object
        Value used when the caller gives none.
    doc : str
        One line saying what it does.
    kind : type, optional
        ``float`` (default), ``int``, ``bool`` or ``str``.
    low, high : float, optional
        Bounds of the allowed range; ``None`` for unbounded.
    low_open, high_open : bool, optional
        Whether the bound itself is excluded.
    choices : tuple of str, optional
        For ``kind=str``: the allowed values.
    shared : str, optional
        The optimizer attribute holding the value in a shared scalar, e.g.
        ``"learning_rate"``, or ``"ewma"`` for ``rms_halflife``.
    transform : callable, optional
        Maps the value to what the shared scalar holds (e.g. a half-life to
        a decay rate).
    switch : bool, optional
        For numeric hyperparameters whose value 0 turns a feature off
        (momentum, clipping): whether it is non-zero is part of the graph's
        structure, so changing 0 to non-zero compiles a new step function.
    structural : bool or callable, optional
        The value itself is part of the graph's structure (``nesterov``,
        ``hv_method``); a callable maps the value to the part that is (e.g.
        ``on_nonfinite``, where only ``'skip'`` changes the graph).
    schedulable : bool, optional
        The value may also be a callable ``f(update_count) -> float`` (a
        schedule, see :mod:`downhill.schedules`), evaluated before every
        update; each value it returns is validated like a number.
    """

    def __init__(self, name, default, doc, kind=float, low=None, high=None,
                 low_open=False, high_open=False, choices=(), shared=None,
                 transform=None, switch=False, structural=False, schedulable=False):
        self.name = name
        self.default = default
        self.doc = doc
        self.kind = kind
        self.low = low
        self.high = high
        self.low_open = low_open
        self.high_open = high_open
        self.choices = tuple(choices)
        self.shared = shared
        self.transform = transform
        self.switch = switch
        self.structural = structural
        self.schedulable = schedulable

    def __repr__(self):
        return f"Hyper({self.name!r}, default={self.default!r}, range={self.range_text()!r})"

    def range_text(self):
        """Describe the allowed values, e.g. ``'0 <= x < 1'`` or ``'> 0'``."""
        if self.kind is bool:
            return "True or False"
        if self.kind is str:
            return "one of " + ", ".join(repr(c) for c in self.choices)
        text = self._number_range()
        return text + " or a schedule" if self.schedulable else text

    def _number_range(self):
        low, high = self.low, self.high
        lo_op = "<" if self.low_open else "<="
        hi_op = "<" if self.high_open else "<="
        kind = "integer" if self.kind is int else "x"
        if low is not None and high is not None:
            return f"{low:g} {lo_op} {kind} {hi_op} {high:g}"
        if low is not None:
            return f"{kind} {'>' if self.low_open else '>='} {low:g}"
        if high is not None:
            return f"{kind} {hi_op} {high:g}"
        return "any " + ("integer" if self.kind is int else "number")

    def validate(self, value):
        """Check a value against this declaration.

        Parameters
        ----------
        value : object
            The value the caller gave.

        Returns
        -------
        object
            The value converted to the declared kind.

        Raises
        ------
        ValueError
            If the value has the wrong type or lies outside the range; the
            message names the hyperparameter, the value and what is allowed.
        """
        bad = f"invalid {self.name}: {value!r} (must be {self.range_text()})"
        if self.schedulable and callable(value):
            return value
        if self.kind is bool:
            if isinstance(value, (bool, np.bool_)):
                return bool(value)
            raise ValueError(bad)
        if self.kind is str:
            if isinstance(value, str) and value.lower() in self.choices:
                return value.lower()
            raise ValueError(bad)
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
            raise ValueError(bad)
        if self.kind is int:
            if not math.isfinite(value) or int(value) != value:
                raise ValueError(bad)
            value = int(value)
        else:
            value = float(value)
            if not math.isfinite(value):
                raise ValueError(bad)
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            raise ValueError(bad)
        if self.high is not None and (value > self.high or (self.high_open and value == self.high)):
            raise ValueError(bad)
        return value

    def shared_value(self, value):
        """The number stored in this hyperparameter's shared scalar.

        Parameters
        ----------
        value : float
            A validated value.

        Returns
        -------
        float
            ``transform(value)`` if a transform is declared, else ``value``.
        """
        return self.transform(value) if self.transform else value

    def structure(self, value):
        """The part of a value that decides the graph's shape.

        Parameters
        ----------
        value : object
            A validated value.

        Returns
        -------
        object or None
            The value itself (structural), whether it is non-zero or a
            schedule (switch), the declared function's result, or None when
            the value does not change the graph.
        """
        if callable(self.structural):
            return self.structural(value)
        if self.structural:
            return value
        if self.switch:
            return callable(value) or value != 0
        return None


#: Hyperparameters common to every algorithm.
COMMON = (
    Hyper("learning_rate", 1e-4, "step size multiplying each update",
          low=0, low_open=True, shared="learning_rate", schedulable=True),
    Hyper("momentum", 0.0, "velocity decay; 0 turns momentum off",
          low=0, high=1, high_open=True, shared="momentum", switch=True,
          schedulable=True),
    Hyper("nesterov", False, "use Nesterov momentum (when momentum > 0)",
          kind=bool, structural=True),
    Hyper("weight_decay", 0.0,
          "decoupled weight decay: p <- p - learning_rate * weight_decay * p; 0 = off",
          low=0, shared="weight_decay", switch=True),
    Hyper("max_gradient_global_norm", 0.0,
          "rescale all gradients together to at most this joint L2 norm; 0 = off",
          low=0, shared="max_gradient_global_norm", switch=True),
    Hyper("max_gradient_norm", 0.0,
          "rescale each parameter's gradient to at most this L2 norm; 0 = off",
          low=0, shared="max_gradient_norm", switch=True),
    Hyper("max_gradient_elem", 0.0,
          "clip each gradient element to [-c, c]; 0 = off (wins over the norm)",
          low=0, shared="max_gradient_elem", switch=True),
    Hyper("patience", 5, "validations without improvement tolerated before stopping",
          kind=int, low=0),
    Hyper("validate_every", 10, "iterations between validations",
          kind=int, low=1),
    Hyper("min_improvement", 0.0,
          "relative decrease of the validation loss that counts as progress",
          low=0),
    Hyper("on_nonfinite", "raise",
          "what a NaN or infinite loss does: 'raise', 'stop' or 'skip' the step",
          kind=str, choices=("raise", "stop", "skip"),
          structural=lambda value: value == "skip"),
    Hyper("max_skips", 10,
          "with on_nonfinite='skip': non-finite steps in a row before giving up",
          kind=int, low=1),
)


#: Keywords downhill 0.4 documented as deprecated synonyms, and the
#: hyperparameter each stands for (applied as that one, with a warning).
ALIASES = {
    "max_gradient_clip": "max_gradient_elem",
    "gradient_clip": "max_gradient_elem",
}


def declarations(cls):
    """All hyperparameter declarations of an optimizer class.

    Parameters
    ----------
    cls : type
        An :class:`~downhill.Optimizer` subclass.

    Returns
    -------
    dict of str to Hyper
        The ``HYPERS`` of its classes, base classes first; a subclass's
        declaration replaces an inherited one of the same name.
    """
    merged = {}
    for klass in reversed(cls.__mro__):
        for h in klass.__dict__.get("HYPERS", ()):
            merged[h.name] = h
    return merged


class Settings:
    """The hyperparameter values of one optimizer.

    Holds the defaults (declared, then those given to the constructor), the
    values in force, one shared scalar per numeric hyperparameter (so a new
    value needs no new graph), and the schedules given for schedulable ones.

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
        self.values = dict(self.defaults)
        self.schedules = {}
        self.schedule_states = {}  # saved with a checkpoint, for the next run

    def check(self, given):
        """Validate named values; ignore unknown names with a warning.

        A name no declaration knows gives one
        :class:`~downhill.DownhillWarning` per optimizer and name (naming
        the closest known name, if one is close) and is left out; one of
        :data:`ALIASES` stands for its hyperparameter, with a warning. The
        known values are checked by
        :func:`downhill.validation.check_hypers`.

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

    def configure(self, given, updates):
        """Put the defaults with ``given`` applied in force; write the shared scalars.

        Parameters
        ----------
        given : dict
            Values for this call.
        updates : int
            The update count, at which schedules are evaluated.

        Returns
        -------
        dict
            All values in force (a schedule as given, not evaluated).
        """
        values = dict(self.defaults)
        values.update(self.check(given))
        schedules = {name: value for name, value in values.items()
                     if self.declared[name].schedulable and callable(value)}
        numbers = {name: self.scheduled_value(self.declared[name], f, updates)
                   for name, f in schedules.items()}
        for h in self.declared.values():
            if h.shared:
                self._write(h, numbers.get(h.name, values[h.name]))
        self.values = values
        self.schedules = schedules
        return values

    def _write(self, hyper, value):
        self.shared[hyper.shared].set_value(
            np.asarray(hyper.shared_value(value), dtype=self.dtype))

    def scheduled_value(self, hyper, schedule, updates):
        """Evaluate a schedule at an update count and check the result.

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
            value = float(value)
            if value == hyper.low and hyper.low_open:
                return value  # e.g. a learning rate warming up from 0
            return hyper.validate(value)
        except (TypeError, ValueError):
            raise ValueError(
                f"the schedule given for {hyper.name} returned {value!r} at update "
                f"{updates} (must be {hyper._number_range()})") from None

    def apply_schedules(self, updates):
        """Write every schedule's value at ``updates`` into its shared scalar.

        Parameters
        ----------
        updates : int
            The update count.
        """
        for name, schedule in self.schedules.items():
            h = self.declared[name]
            self._write(h, self.scheduled_value(h, schedule, updates))

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
                self.apply_schedules(updates)

    def structure(self):
        """The choices among the values in force that change the graph's shape.

        Returns
        -------
        tuple of (str, object)
            ``(name, part)`` for each hyperparameter whose value decides a
            part of the graph (see :meth:`Hyper.structure`).
        """
        key = []
        for h in self.declared.values():
            part = h.structure(self.values[h.name])
            if part is not None:
                key.append((h.name, part))
        return tuple(key)
