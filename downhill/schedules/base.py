"""The base class of the schedules, :class:`Schedule`, and the operations
their formulas use on Python numbers (``downhill.schedules.PYTHON``).

The same operations on PyTensor expressions, and how a schedule becomes a
part of the update graph, live in :mod:`downhill.hypergraph`.
"""

import bisect
import math
import numbers
import operator

from ..hyperparams import Hyper

__all__ = ["Schedule", "PYTHON"]


def _check(owner, name, value, **limits):
    """Validate one constructor argument with a :class:`~downhill.hyperparams.Hyper`.

    The message names the schedule, the argument, the value and the allowed
    range, e.g. ``StepDecay: invalid factor: 2 (must be 0 < x <= 1)``.
    """
    try:
        return Hyper(name, None, "", **limits).validate(value)
    except ValueError as error:
        raise ValueError(f"{owner}: {error}") from None


def _update_count(owner, n):
    """Check an update count: an integer >= 0."""
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 0:
        raise ValueError(f"{owner}: invalid update_count: {n!r} (must be an integer >= 0)")
    return int(n)


class _PythonOps:
    """The operations a formula uses, on Python numbers (see ``downhill.schedules.PYTHON``)."""

    pi = math.pi
    cos = staticmethod(math.cos)
    maximum = staticmethod(max)
    minimum = staticmethod(min)
    floor_div = staticmethod(operator.floordiv)
    float = staticmethod(float)

    @staticmethod
    def where(condition, if_true, if_false):
        """``if_true`` where ``condition`` holds, else ``if_false``."""
        return if_true if condition else if_false

    @staticmethod
    def piecewise(n, starts, pieces):
        """``pieces[i](n - starts[i])`` for the last ``starts[i] <= n``.

        ``starts`` ascend from 0; only the piece in force is evaluated.
        """
        i = bisect.bisect_right(starts, n) - 1
        return pieces[i](n - starts[i])


#: The operations of :meth:`Schedule._formula` on Python numbers; the graph's
#: are in ``downhill.hypergraph.GRAPH``.
PYTHON = _PythonOps()


class Schedule:
    """Base class of the ready schedules.

    A graph schedule implements :meth:`_formula`, the value after ``n``
    updates written once for Python numbers and PyTensor expressions, lists
    the attributes holding the numbers it reads in ``_NUMBERS`` (a number, or
    a list of numbers) and those holding schedules it is made of in
    ``_PARTS``, and gives its range through :meth:`_breaks` and
    :meth:`_limit`. A schedule that can only run in Python (it follows the
    validation loss, or implements only ``_at(n)``, the hook of earlier
    versions) works in :meth:`~downhill.Optimizer.iterate` alone. This class
    checks the update count and gives stateless schedules an empty state.
    """

    #: Names of the constructor arguments, shown by ``repr``.
    _ARGS = ()
    #: Attributes holding the numbers the formula reads; in the update graph
    #: each becomes a shared scalar (int64 for an int, float64 otherwise).
    _NUMBERS = ()
    #: The attribute holding the schedules this one is made of, if any.
    _PARTS = None
    #: True for a schedule that runs in Python only, whatever it implements.
    _PYTHON_ONLY = False
    #: Whether the value may change with every update (False: only when
    #: told a validation loss, so the loop writes it after validations).
    per_update = True

    def __call__(self, update_count):
        """The value after ``update_count`` updates (an integer >= 0)."""
        return float(self._at(_update_count(type(self).__name__, update_count)))

    def _at(self, n):
        """The value after ``n`` updates, in Python: the formula on Python numbers."""
        return self._formula(n, self, PYTHON)

    def _formula(self, n, p, ops):
        """The value after ``n`` updates; the hook each graph schedule implements.

        Parameters
        ----------
        n : int or pytensor int64 scalar
            The update count.
        p : object
            Where the numbers come from: the schedule itself in Python; in
            the graph, an object whose attributes named in ``_NUMBERS`` are
            shared scalars (lists of them for a list) and whose ``_PARTS``
            attribute lists such objects for the parts.
        ops : object
            The operations, ``downhill.schedules.PYTHON`` or the graph's: ``where(c, a, b)``,
            ``maximum``, ``minimum``, ``cos``, ``floor_div``, ``float`` (an
            integer as a float64), ``piecewise(n, starts, pieces)`` and
            ``pi``. Arithmetic operators work on both kinds of numbers.

        Returns
        -------
        float or pytensor scalar
        """
        raise NotImplementedError

    def _breaks(self):
        """Where the pieces of the schedule start (0 first), each piece monotone;
        None when unknown (then the range is not checked up front)."""
        return None

    def _limit(self):
        """The value the last piece approaches as the update count grows."""
        raise NotImplementedError

    @property
    def in_graph(self):
        """Whether the optimizer can build this schedule into the update graph."""
        return not self._PYTHON_ONLY and type(self)._formula is not Schedule._formula

    def bounds(self, stop=None):
        """The smallest and the largest value the schedule takes.

        Parameters
        ----------
        stop : int, optional
            Only over the update counts ``0 .. stop - 1``; default all of
            them (a decay's floor or limit counts as reached).

        Returns
        -------
        (float, float) or None
            None when the schedule cannot tell (a subclass without
            :meth:`_breaks`).
        """
        breaks = self._breaks()
        if breaks is None:
            return None
        starts = sorted({0, *(b for b in breaks if stop is None or b < stop)})
        points = set(starts) | {b - 1 for b in starts[1:]}
        values = [self._at(n) for n in points]
        values.append(self._limit() if stop is None else self._at(stop - 1))
        return float(min(values)), float(max(values))

    def skeleton(self):
        """The schedule's form without its numbers: what its graph depends on.

        Two schedules of the same form (same classes, same number of parts)
        share one compiled graph; their numbers are written into shared
        scalars.

        Returns
        -------
        tuple
        """
        sizes = tuple(len(v) if isinstance(v, (list, tuple)) else None
                      for v in (getattr(self, name) for name in self._NUMBERS))
        parts = getattr(self, self._PARTS) if self._PARTS else ()
        return (type(self), sizes, tuple(part.skeleton() for part in parts))

    def numbers(self, prefix=""):
        """The numbers the formula reads, by path.

        Parameters
        ----------
        prefix : str, optional
            Put before every path (a part's place in its whole).

        Yields
        ------
        path : str
            E.g. ``"initial"``, ``"boundaries[0]"``, ``"schedules[1].peak"``.
        value : int or float
        """
        for name in self._NUMBERS:
            value = getattr(self, name)
            if isinstance(value, (list, tuple)):
                for i, v in enumerate(value):
                    yield f"{prefix}{name}[{i}]", v
            else:
                yield prefix + name, value
        if self._PARTS:
            for i, part in enumerate(getattr(self, self._PARTS)):
                yield from part.numbers(f"{prefix}{self._PARTS}[{i}].")

    def __repr__(self):
        args = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._ARGS)
        return f"{type(self).__name__}({args})"

    def state_dict(self):
        """The schedule's mutable state: a plain dict of numbers.

        Returns
        -------
        dict of str to number
            Empty for a schedule that depends on the update count alone.
        """
        return {}

    def load_state_dict(self, state):
        """Restore the state saved by :meth:`state_dict`.

        Parameters
        ----------
        state : dict
            What :meth:`state_dict` returned.

        Raises
        ------
        ValueError
            If a key is missing or unexpected, or a value is invalid; the
            schedule is then left unchanged.
        """
        _check_keys(type(self).__name__, state, ())


def _check_keys(owner, state, keys):
    if not isinstance(state, dict):
        raise ValueError(f"{owner}: state must be a dict, got {type(state).__name__}")
    missing = [k for k in keys if k not in state]
    extra = sorted(str(k) for k in state if k not in keys)
    if missing:
        raise ValueError(f"{owner}: state lacks {', '.join(missing)}")
    if extra:
        raise ValueError(f"{owner}: unexpected state entries {', '.join(extra)}")


