"""Helpers shared by the optimizers: logging, warnings, dtype casting, state
variables, graph walking, unique names, close-match suggestions and compiling
functions."""

import collections
import difflib
import logging
import math
import os
import sys
import warnings

import numpy as np
import pytensor
import pytensor.tensor as pt
from pytensor.compile.sharedvalue import SharedVariable
from pytensor.graph.basic import Constant, Variable

__all__ = [
    "log",
    "DownhillWarning",
    "warn",
    "as_float",
    "shared_like",
    "find_inputs_and_params",
    "halflife_to_decay",
    "close_names",
    "unknown_name_error",
    "unique_keys",
    "RESERVED_KEYS",
    "COMPILE_FLAGS",
    "compile_function",
]

#: The logger every part of the library writes to.
log = logging.getLogger("downhill")


class DownhillWarning(UserWarning):
    """A call downhill accepts but partly ignores, e.g. an unknown keyword.

    Issued through ``warnings.warn``, so the usual filters apply:
    ``warnings.simplefilter("error", downhill.DownhillWarning)`` turns these
    into errors, ``"ignore"`` silences them.
    """


_PACKAGE = os.path.dirname(os.path.abspath(__file__))


def warn(message):
    """Issue a :class:`DownhillWarning` attributed to the caller's code.

    The warning points at the first frame outside the downhill package, so
    that the default filters show it once per line of the calling script.

    Parameters
    ----------
    message : str
        The warning's text.
    """
    level, frame = 2, sys._getframe(1)  # stacklevel 2 is warn's caller
    while frame is not None and os.path.dirname(
            os.path.abspath(frame.f_code.co_filename)) == _PACKAGE:
        level += 1
        frame = frame.f_back
    warnings.warn(message, DownhillWarning, stacklevel=level)


def as_float(value, dtype=None):
    """Cast a Python number or symbolic scalar to a float dtype.

    Parameters
    ----------
    value : number or pytensor Variable
        The value to cast.
    dtype : str or numpy.dtype, optional
        The float dtype the result should have (usually the parameter's).
        Default: ``pytensor.config.floatX``, as downhill 0.4's one-argument
        ``as_float(x)``.

    Returns
    -------
    pytensor Variable
        A constant (for numbers) or a cast expression of the requested dtype.
        PyTensor would otherwise turn a Python float such as ``0.1`` into a
        float64 constant and silently upcast a float32 model.
    """
    dtype = str(np.dtype(pytensor.config.floatX if dtype is None else dtype))
    if isinstance(value, Variable):
        return value if value.dtype == dtype else pt.cast(value, dtype)
    return pt.constant(np.asarray(value, dtype=dtype))


def shared_like(param, suffix, init=0, name=None):
    """Make a state variable shaped like a parameter.

    Parameters
    ----------
    param : pytensor SharedVariable
        The parameter this state belongs to.
    suffix : str
        Appended to the parameter's name: ``w`` and ``"g2_ewma"`` give
        ``w_g2_ewma``.
    init : float, optional
        Initial value of every element. Defaults to 0. (The third
        positional argument, as in downhill 0.4.)
    name : str, optional
        The parameter's name to use instead of ``param.name``.

    Returns
    -------
    pytensor SharedVariable
        A shared variable with the parameter's dtype, shape and static
        (broadcast) shape.
    """
    current = param.get_value(borrow=True)
    value = np.full(current.shape, init, dtype=current.dtype)
    base = name or param.name
    return pytensor.shared(value, name=f"{base}_{suffix}", shape=param.type.shape)


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
    halflife : float or pytensor scalar
        Number of steps :math:`h` after which a value's weight halves; a
        PyTensor scalar (a scheduled half-life inside the update graph)
        gives the same expression in PyTensor.

    Returns
    -------
    float or pytensor scalar
        :math:`\gamma = e^{-\ln 2 / h}`.
    """
    if isinstance(halflife, Variable):
        return pt.exp(-math.log(2) / halflife)
    return math.exp(-math.log(2) / halflife)


def closest_name(name, known):
    """The known name ``name`` most likely meant (:func:`close_names`), or None."""
    close = close_names(name, known, n=1)
    return close[0] if close else None


#: Names other libraries use, and the hyperparameter meant (when it exists).
OTHER_NAMES = {"lr": "learning_rate", "eps": "rms_regularizer", "epsilon": "rms_regularizer",
           "beta1": "beta1_halflife", "beta2": "beta2_halflife", "rho": "rms_halflife",
           "alpha": "rms_halflife", "max_norm": "max_gradient_norm",
           "clipnorm": "max_gradient_norm", "max_iter": "max_updates",
           "epochs": "max_updates",
           # algorithms: AdamW is Adam with weight_decay
           "adamw": "adam"}


def close_names(name, known, n=3):
    """Known names that ``name`` may have meant, best first.

    Parameters
    ----------
    name : str
        The unknown name.
    known : iterable of str
        The names that exist.
    n : int, optional
        At most this many.

    Returns
    -------
    list of str
        A known alias first (``lr`` for ``learning_rate``), then names that
        start with ``name`` or contain it as a part between underscores
        (``beta1`` for ``beta1_halflife``), then close spellings
        (``learning_rte``).
    """
    known = list(known)
    found = []
    if OTHER_NAMES.get(name) in known:
        found.append(OTHER_NAMES[name])
    lowered = name.lower()
    for other in known:
        parts = other.lower().split("_")
        if len(lowered) >= 3 and (other.lower().startswith(lowered) or lowered in parts):
            found.append(other)
    found += difflib.get_close_matches(name, known, n=n)
    return list(dict.fromkeys(found))[:n]


def unknown_name_error(name, known, what, error=TypeError, known_label=None):
    """An exception for an unknown name, suggesting the closest known ones.

    Parameters
    ----------
    name : str
        The unknown name.
    known : iterable of str
        The names that exist.
    what : str
        What the name is, for the message: ``'hyperparameter for Adam'``.
    error : type, optional
        The exception class; default ``TypeError`` (an unknown keyword).
    known_label : str, optional
        With it the known names follow as ``'; known algorithms: ...'``
        in their own order, else sorted in parentheses.

    Returns
    -------
    Exception
        E.g. ``TypeError("unknown hyperparameter for Adam 'beta1'; did you
        mean 'beta1_halflife'? (known: ...)")``.
    """
    close = close_names(name, known)
    hint = ""
    if close:
        hint = "; did you mean " + " or ".join(repr(c) for c in close) + "?"
    if known_label is None:
        return error(f"unknown {what} {name!r}{hint} (known: {', '.join(sorted(known))})")
    hint = f" ({hint[2:]})" if hint else ""
    return error(f"unknown {what} {name!r}{hint}; {known_label}: {', '.join(known)}")


#: Names a checkpoint's format reserves (an array reference in its header):
#: a parameter so named gets a suffix like a repeated one.
RESERVED_KEYS = frozenset({"__array__"})


def unique_keys(names):
    """Names made unique by appending ``#i`` (the position) to repeated ones.

    Parameters
    ----------
    names : list of str
        Names, possibly repeated.

    Returns
    -------
    list of str
        ``['w', 'w', 'b']`` gives ``['w#0', 'w#1', 'b']``. The keys are
        unique whatever the names: a key made for a repeated name that is
        another parameter's own name gets ``#i`` again (``['w', 'w', 'w#0']``
        gives ``['w#0#0', 'w#1', 'w#0']``), and a reserved name
        (:data:`RESERVED_KEYS`) is suffixed like a repeated one.
    """
    counts = collections.Counter(names)
    kept = {n for n in names if counts[n] == 1 and n not in RESERVED_KEYS}
    keys = []
    for i, name in enumerate(names):
        if name in kept:
            keys.append(name)
            continue
        key = f"{name}#{i}"
        while key in kept or key in keys:
            key = f"{key}#{i}"
        keys.append(key)
    return keys


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

    The price was speed where fast-math vectorized a loop, which for the
    step is the loss's sums, not the update. Measured one flag at a time,
    each set in its own process with a fresh cache (PyTensor 3.0.7 and
    2.38.3 take only on or off; Numba takes a set of ``nnan``, ``ninf``,
    ``nsz``, ``arcp``, ``contract``, ``afn``, ``reassoc``), on a million
    float32 parameters: the loss ``(x * d).sum()`` alone takes 1.09 ms
    without flags, 0.23 ms with ``reassoc`` alone or all five, and 1.06-1.19
    ms with ``contract``, ``arcp``, ``afn`` or ``nsz`` alone; the step
    ``iterate`` compiles for RMSProp on that loss, on one thread, 1.41 ms
    without flags, 0.43 ms with ``reassoc``, 0.48 with all five, 1.40-1.46
    with each of the others. Without ``reassoc`` a float sum is one chain of
    additions, each waiting for the last; ``reassoc`` lets LLVM add in
    vector lanes in an order of its choosing, which is also what lets two
    copies of a function compute other bits, so it stays off. Instead the
    functions of an optimizer add large sums in a fixed blocked order that
    vectorizes without it (:mod:`downhill.blocksum`: the same step then
    takes 0.42 ms without flags), and run large updates on every core
    (:mod:`downhill.parallel`); see :func:`downhill.parallel.mode_with_parallel_updates`.
    """
    with pytensor.config.change_flags(**COMPILE_FLAGS):
        return pytensor.function(inputs, outputs, **kwargs)
