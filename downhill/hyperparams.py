"""Hyperparameters: how each is declared (:class:`Hyper`) and the ones every
algorithm shares (:data:`COMMON`).

One declaration (name, default, type, range) drives validation, the
documentation tables, the command line's options and ``downhill
algorithms``. A keyword no declaration knows is ignored with one
:class:`~downhill.DownhillWarning` per optimizer and name, as downhill 0.4
accepted every keyword; values of known names are always validated.

A numeric hyperparameter that the update graph reads (one declared with a
shared scalar) takes a number, a schedule, or a PyTensor shared variable or
scalar expression. A number lives in the optimizer's shared scalar; a graph
schedule or a PyTensor value becomes part of the graph
(:mod:`downhill.hypergraph`); a Python schedule (a plain function,
``ReduceOnPlateau``) is evaluated by the training loop, which writes its
values into the shared scalar. The values an optimizer has in force live in
:class:`downhill.settings.Settings`.
"""

import math
import numbers

import numpy as np

from . import hypergraph

__all__ = ["Hyper", "COMMON", "ALIASES", "declarations", "is_number", "is_on"]


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
        The value may also be a schedule (see :mod:`downhill.schedules`) or
        a PyTensor shared variable or float scalar expression; its values
        are validated like a number's (see :meth:`validate`). Default: true
        when the value lives in a shared scalar (``shared``), which the
        update graph reads.

    Notes
    -----
    A ``transform`` must take a PyTensor float64 scalar as well as a
    number: it is applied inside the graph to a scheduled or symbolic
    value (:func:`downhill.util.halflife_to_decay` does both).
    """

    def __init__(self, name, default, doc, kind=float, low=None, high=None,
                 low_open=False, high_open=False, choices=(), shared=None,
                 transform=None, switch=False, structural=False, schedulable=None):
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
        self.schedulable = bool(shared) if schedulable is None else bool(schedulable)

    def __repr__(self):
        return f"Hyper({self.name!r}, default={self.default!r}, range={self.range_text()!r})"

    def range_text(self):
        """Describe the allowed values, e.g. ``'0 <= x < 1'`` or ``'> 0'``."""
        if self.kind is bool:
            return "True or False"
        if self.kind is str:
            return "one of " + ", ".join(repr(c) for c in self.choices)
        text = self.number_range()
        return text + " or a schedule" if self.schedulable else text

    def number_range(self):
        """Describe the allowed numbers, e.g. ``'0 <= x < 1'``, without schedules."""
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
            The value the caller gave. For a schedulable hyperparameter
            also a schedule, checked over its whole range when it can tell
            it (:meth:`downhill.schedules.Schedule.bounds`; a plain function
            is checked at every value it returns), or a PyTensor float
            scalar, checked now if it holds a number (a shared variable, a
            constant) and in the graph at every step.

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
        if hypergraph.is_symbolic(value):
            if not self.schedulable:
                raise ValueError(f"invalid {self.name}: {value!r} (must be "
                                 f"{self.range_text()}: a number, not a PyTensor variable)")
            return hypergraph.check_symbolic(self, value)
        if self.schedulable and callable(value):
            return self._check_bounds(value)
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

    def accepts(self, value):
        """Whether a schedule's or a PyTensor scalar's value is in range.

        As :meth:`validate` for a number, except that the lower bound of an
        open range is allowed (a learning rate warming up from 0).

        Parameters
        ----------
        value : float

        Returns
        -------
        bool
        """
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real) \
                or not math.isfinite(value):
            return False
        if self.low is not None and value < self.low:
            return False
        return self.high is None or value < self.high or (
            value == self.high and not self.high_open)

    def _check_bounds(self, schedule):
        bounds = getattr(schedule, "bounds", None)
        found = bounds() if callable(bounds) else None
        if found is not None and not all(self.accepts(v) for v in found):
            low, high = found
            raise ValueError(
                f"invalid {self.name}: {schedule!r} (its values span {low!r} to {high!r}; "
                f"must be {self.number_range()})")
        return schedule

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
            return is_on(value)
        return None


def is_number(value):
    """Whether a hyperparameter's value is a plain number (not a schedule or
    a PyTensor variable).

    Parameters
    ----------
    value : object

    Returns
    -------
    bool
    """
    return isinstance(value, numbers.Real)


def is_on(value):
    """Whether a switch hyperparameter's value turns its feature on: non-zero,
    or a schedule or PyTensor value (which may be non-zero at some step).

    Parameters
    ----------
    value : object

    Returns
    -------
    bool
    """
    return not is_number(value) or value != 0


#: Hyperparameters common to every algorithm.
COMMON = (
    Hyper("learning_rate", 1e-4, "step size multiplying each update",
          low=0, low_open=True, shared="learning_rate"),
    Hyper("momentum", 0.0, "velocity decay; 0 turns momentum off",
          low=0, high=1, high_open=True, shared="momentum", switch=True),
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


def __getattr__(name):
    # Settings moved to downhill.settings
    if name == "Settings":
        from .settings import Settings
        return Settings
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
