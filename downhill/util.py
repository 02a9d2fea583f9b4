"""Helpers shared by the optimizers: logging, dtype casting, state variables,
graph walking, hyperparameter declarations and compiling functions."""

import difflib
import logging
import math
import numbers

import numpy as np
import pytensor
import pytensor.tensor as pt
from pytensor.compile.sharedvalue import SharedVariable
from pytensor.graph.basic import Constant, Variable

__all__ = [
    "log",
    "as_float",
    "shared_like",
    "find_inputs_and_params",
    "Hyper",
    "halflife_to_decay",
    "COMPILE_FLAGS",
    "compile_function",
]

#: The logger every part of the library writes to.
log = logging.getLogger("downhill")


def as_float(value, dtype):
    """Cast a Python number or symbolic scalar to a float dtype.

    Parameters
    ----------
    value : number or pytensor Variable
        The value to cast.
    dtype : str or numpy.dtype
        The float dtype the result should have (usually the parameter's).

    Returns
    -------
    pytensor Variable
        A constant (for numbers) or a cast expression of the requested dtype.
        PyTensor would otherwise turn a Python float such as ``0.1`` into a
        float64 constant and silently upcast a float32 model.
    """
    dtype = str(np.dtype(dtype))
    if isinstance(value, Variable):
        return value if value.dtype == dtype else pt.cast(value, dtype)
    return pt.constant(np.asarray(value, dtype=dtype))


def shared_like(param, suffix, name=None, value=0):
    """Make a state variable shaped like a parameter.

    Parameters
    ----------
    param : pytensor SharedVariable
        The parameter this state belongs to.
    suffix : str
        Appended to the parameter's name: ``w`` and ``"g2_ewma"`` give
        ``w_g2_ewma``.
    name : str, optional
        The parameter's name to use instead of ``param.name``.
    value : float, optional
        Initial value of every element. Defaults to 0.

    Returns
    -------
    pytensor SharedVariable
        A shared variable with the parameter's dtype, shape and static
        (broadcast) shape.
    """
    current = param.get_value(borrow=True)
    init = np.full(current.shape, value, dtype=current.dtype)
    base = name or param.name
    return pytensor.shared(init, name=f"{base}_{suffix}", shape=param.type.shape)


def _roots(outputs, stop=()):
    """Root variables of a graph in left-to-right depth-first order.

    Variables in ``stop`` count as roots: the walk does not go past them.
    """
    stop = {id(v) for v in stop}
    seen = set()
    roots = []
    stack = list(reversed(outputs))
    while stack:
        var = stack.pop()
        if id(var) in seen:
            continue
        seen.add(id(var))
        if var.owner is None or id(var) in stop:
            roots.append(var)
        else:
            stack.extend(reversed(var.owner.inputs))
    return roots


def find_inputs_and_params(*outputs):
    """Find the inputs and parameters of symbolic expressions.

    Parameters
    ----------
    *outputs : pytensor Variable
        Expressions to walk, in order (the loss first).

    Returns
    -------
    inputs : list of pytensor Variable
        Every root that is neither shared nor constant, in order of first
        appearance in a left-to-right depth-first walk: for
        ``((x @ w - y) ** 2).mean()`` this is ``[x, y]``.
    params : list of pytensor SharedVariable
        Every shared variable of float dtype, in the same order.
    """
    inputs, params = [], []
    for var in _roots(outputs):
        if isinstance(var, SharedVariable):
            if getattr(var, "dtype", "").startswith("float"):
                params.append(var)
        elif not isinstance(var, Constant):
            inputs.append(var)
    return inputs, params


def halflife_to_decay(halflife):
    r"""Convert a half-life into an exponential decay rate.

    Parameters
    ----------
    halflife : float
        Number of steps :math:`h` after which a value's weight halves.

    Returns
    -------
    float
        :math:`\gamma = e^{-\ln 2 / h}`.
    """
    return math.exp(-math.log(2) / halflife)


#: PyTensor flags every function of an optimizer is compiled under (see
#: :func:`compile_function`): Numba's fast-math off.
COMPILE_FLAGS = {"numba__fastmath": False}


def compile_function(inputs, outputs, **kwargs):
    """Compile a PyTensor function whose numbers do not depend on the compile cache.

    The same as ``pytensor.function(inputs, outputs, **kwargs)``, compiled
    under :data:`COMPILE_FLAGS`: without Numba's fast-math flags, so that
    the same inputs give the same numbers bit for bit whether the compiled
    code was made now or loaded from PyTensor's compile cache. The flags hold
    only while the function is built (PyTensor reads them then, and keys its
    cache on them); the user's own functions keep the global settings.

    Parameters
    ----------
    inputs : list of pytensor Variable
        The function's inputs.
    outputs : pytensor Variable or list of them
        The function's outputs.
    **kwargs
        Further keywords of ``pytensor.function`` (``updates``, ``givens``,
        ``name``, ``mode``, ...).

    Returns
    -------
    pytensor Function

    Notes
    -----
    With fast-math (PyTensor's default for the Numba backend: ``reassoc``,
    ``arcp``, ``contract``, ``afn``, ``nsz``), Numba links a copy of each
    called function into its caller and LLVM optimizes that copy again,
    which fast-math lets it turn into other arithmetic: ``(s * 0.1) / n``
    became a fused multiply-add with ``1 / n`` in the callee's own code and
    ``s * (0.1 / n)`` in the caller's copy. Which one runs depends on which
    was loaded first: the callee's own code in a process that compiles
    afresh, the caller's copy in one that loads the caller from the cache.
    So a training run's parameters were 1 ulp apart after the first update,
    cold against warm, and its loss visibly apart after a few hundred.
    Without fast-math LLVM keeps IEEE arithmetic in program order, so every
    copy computes the same bits.

    The price is speed where fast-math vectorized a loop: a sum of a million
    float32 elements took 0.85 ms instead of 0.09 ms here, an RMSProp step
    on a million parameters 1.2 ms instead of 0.7 ms.
    """
    with pytensor.config.change_flags(**COMPILE_FLAGS):
        return pytensor.function(inputs, outputs, **kwargs)


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


def unknown_name_error(name, known, what):
    """A ``TypeError`` for an unknown keyword, suggesting the closest name."""
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return TypeError(
        f"unknown {what} {name!r}{hint} (known: {', '.join(sorted(known))})")
