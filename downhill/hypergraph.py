"""Hyperparameters inside the update graph: the update counter, graph
schedules as expressions of it, and values given as PyTensor variables.

Every optimizer keeps an update counter, an int64 shared scalar that its
update graph advances by one with every step (skipped steps too). A graph
schedule (see :mod:`downhill.schedules`) becomes an expression of that
counter here, with its numbers in shared scalars of their own
(:class:`Slots`), so the compiled step computes the value itself wherever
it runs and a new schedule of the same form compiles nothing. A value given
as a PyTensor shared variable or scalar expression is read as it is, so the
caller can change it between steps; what cannot be checked against the
hyperparameter's range when it is given is checked in the graph
(:func:`guarded`): an out-of-range value turns the step's new values into
NaN, which the non-finite policy then handles.

Expressions are built in float64 (Python's floats), a transform (a
half-life to a decay rate) applied to the scheduled value there, and cast to
the parameters' dtype at the end, as a number written into a shared scalar
would be.
"""

import functools
import math
import numbers

import numpy as np
import pytensor
import pytensor.tensor as pt
from pytensor.compile.sharedvalue import SharedVariable
from pytensor.graph.basic import Constant, Variable
from pytensor.tensor.type import TensorType

from .compat import isfinite
from .util import find_inputs_and_params

__all__ = ["GRAPH", "is_symbolic", "is_graph_schedule", "check_symbolic", "current_value",
           "free_inputs", "Slots", "schedule_expression", "guarded"]


class _GraphOps:
    """The operations a schedule's formula uses, on PyTensor expressions."""

    pi = math.pi
    cos = staticmethod(pt.cos)
    maximum = staticmethod(pt.maximum)
    minimum = staticmethod(pt.minimum)
    where = staticmethod(pt.switch)

    @staticmethod
    def floor_div(a, b):
        """``a // b`` of two integers."""
        return a // b

    @staticmethod
    def float(x):
        """An integer as a float64."""
        return pt.cast(x, "float64")

    @staticmethod
    def piecewise(n, starts, pieces):
        """``pieces[i](n - starts[i])`` for the last ``starts[i] <= n``: nested switches,
        each piece evaluated at a count clipped at 0 (its value is discarded there)."""
        value = pieces[-1](pt.maximum(n - starts[-1], 0))
        for i in range(len(pieces) - 2, -1, -1):
            value = pt.switch(n < starts[i + 1], pieces[i](pt.maximum(n - starts[i], 0)), value)
        return value


#: The operations of :meth:`downhill.schedules.Schedule._formula` on PyTensor
#: expressions (those on Python numbers: ``downhill.schedules.PYTHON``).
GRAPH = _GraphOps()


def is_symbolic(value):
    """Whether a hyperparameter's value is a PyTensor variable.

    Parameters
    ----------
    value : object

    Returns
    -------
    bool
    """
    return isinstance(value, Variable)


def is_graph_schedule(value):
    """Whether a value is a schedule the update graph can compute itself.

    Parameters
    ----------
    value : object

    Returns
    -------
    bool
        True for the schedules of :mod:`downhill.schedules` except
        ``ReduceOnPlateau``, and subclasses implementing ``_formula``.
    """
    return getattr(value, "in_graph", False) is True and hasattr(value, "skeleton")


def current_value(value):
    """The number a PyTensor variable holds now, when it holds one.

    Parameters
    ----------
    value : pytensor Variable

    Returns
    -------
    float or None
        A shared variable's or a constant's value; None for an expression
        (evaluating it would compile a function).
    """
    if isinstance(value, SharedVariable):
        return float(np.asarray(value.get_value(borrow=True)))
    if isinstance(value, Constant):
        return float(np.asarray(value.data))
    return None


def free_inputs(value):
    """The inputs of a PyTensor expression that are neither shared nor constant.

    Parameters
    ----------
    value : pytensor Variable

    Returns
    -------
    list of pytensor Variable
    """
    return find_inputs_and_params(value)[0]


def check_symbolic(hyper, value):
    """Check a PyTensor variable given for a hyperparameter.

    Parameters
    ----------
    hyper : Hyper
        The hyperparameter's declaration.
    value : pytensor Variable
        A shared variable or scalar expression.

    Returns
    -------
    pytensor Variable
        ``value``.

    Raises
    ------
    ValueError
        If it is not a float scalar, or holds a number outside the range.
    """
    vtype = value.type
    if not isinstance(vtype, TensorType) or vtype.ndim != 0 \
            or not str(vtype.dtype).startswith("float"):
        raise ValueError(
            f"invalid {hyper.name}: {value!r} of type {vtype} (must be a float scalar: a "
            "PyTensor shared variable or scalar expression of dtype float32 or float64, "
            "e.g. pytensor.shared(0.01))")
    now = current_value(value)
    if now is not None and not hyper.accepts(now):
        raise ValueError(f"invalid {hyper.name}: {value!r} holds {now!r} "
                         f"(must be {hyper.number_range()})")
    return value


def _kind(value):
    return "int64" if isinstance(value, numbers.Integral) else "float64"


class Slots:
    """The shared scalars that hold graph schedules' numbers, one per
    hyperparameter, place in its schedule and dtype.

    A schedule's numbers are written when it is put in force
    (:meth:`write`); a graph built for a schedule of the same form reads
    them, so a new schedule of that form compiles nothing.
    """

    def __init__(self):
        self.variables = {}  # (hyperparameter, path, dtype) -> SharedVariable

    def get(self, name, path, value):
        """The shared scalar of one number, made (holding ``value``) on first use.

        Parameters
        ----------
        name : str
            The hyperparameter.
        path : str
            The number's place in the schedule, e.g. ``"schedules[1].peak"``.
        value : int or float
            Its value, for its dtype (int64 or float64) and first value.

        Returns
        -------
        SharedVariable
        """
        key = (name, path, _kind(value))
        if key not in self.variables:
            self.variables[key] = pytensor.shared(
                np.asarray(value, dtype=key[2]), name=f"{name}.{path}")
        return self.variables[key]

    def write(self, name, schedule):
        """Write a schedule's numbers into the shared scalars of ``name``.

        Parameters
        ----------
        name : str
            The hyperparameter.
        schedule : Schedule
            A graph schedule.
        """
        for path, value in schedule.numbers():
            var = self.get(name, path, value)
            var.set_value(np.asarray(value, dtype=var.dtype))


class _Numbers:
    """A schedule's numbers as shared scalars: the ``p`` of its formula in the graph."""

    def __init__(self, schedule, slot, prefix=""):
        self._schedule = schedule
        self._slot = slot
        self._prefix = prefix

    def __getattr__(self, name):
        schedule = self.__dict__["_schedule"]
        prefix = self.__dict__["_prefix"]
        if name == schedule._PARTS:
            return [_Numbers(part, self._slot, f"{prefix}{name}[{i}].")
                    for i, part in enumerate(getattr(schedule, name))]
        if name in schedule._NUMBERS:
            value = getattr(schedule, name)
            if isinstance(value, (list, tuple)):
                return [self._slot(f"{prefix}{name}[{i}]", v) for i, v in enumerate(value)]
            return self._slot(prefix + name, value)
        raise AttributeError(
            f"{type(schedule).__name__}._formula reads {name!r}, which is in neither its "
            "_NUMBERS nor its _PARTS: in the update graph a schedule reads only those")


def schedule_expression(schedule, count, slot):
    """A graph schedule's value as an expression of the update count, in float64.

    Parameters
    ----------
    schedule : Schedule
        A graph schedule.
    count : pytensor int64 scalar
        The update count (the optimizer's counter, or one more).
    slot : callable
        ``slot(path, value)``, the shared scalar of one of its numbers
        (:meth:`Slots.get` with the hyperparameter bound).

    Returns
    -------
    pytensor float64 scalar
    """
    # Python floats in the formula become float64 constants, not floatX ones
    with pytensor.config.change_flags(floatX="float64"):
        return pt.cast(schedule._formula(count, _Numbers(schedule, slot), GRAPH), "float64")


def guarded(hyper, value):
    """``value`` where it lies in the hyperparameter's range, NaN elsewhere.

    For values not checked when given (a shared variable the caller may
    set, an expression, a schedule that cannot report its range): a NaN
    step is what the non-finite policy catches (``on_nonfinite='skip'``
    skips the step; otherwise the run stops at its next check).

    Parameters
    ----------
    hyper : Hyper
        The declaration (the lower bound of an open range is let through,
        as for schedules: a learning rate of 0 changes nothing).
    value : pytensor float64 scalar

    Returns
    -------
    pytensor float64 scalar
    """
    checks = [isfinite(value)]
    if hyper.low is not None:
        checks.append(value >= hyper.low)
    if hyper.high is not None:
        checks.append(value < hyper.high if hyper.high_open else value <= hyper.high)
    ok = functools.reduce(pt.and_, checks)
    with pytensor.config.change_flags(floatX="float64"):
        return pt.switch(ok, value, np.float64(np.nan))
