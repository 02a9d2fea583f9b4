"""The non-finite policy's tests: in the graph, that a step's loss, gradients
and new values are finite, and the guard that keeps every variable's old
value when they are not (``on_nonfinite='skip'``); in Python, that the
parameters and state in place are finite (before a checkpoint is written).

What the training loop does with a non-finite step (raise, stop, count
skips) lives in :mod:`downhill.training`.
"""

import cmath
import functools

import numpy as np
import pytensor.tensor as pt

from .compat import isfinite

__all__ = ["finite_check", "guard", "Guarded", "first_nonfinite"]


def _all_finite(x):
    return pt.all(isfinite(x))


def finite_check(grads, loss=None):
    """A boolean scalar: the loss and every gradient element are finite.

    Parameters
    ----------
    grads : list of pytensor Variable
        The gradients.
    loss : pytensor Variable, optional
        The loss (None for an optimizer built from gradients).

    Returns
    -------
    pytensor Variable
        A boolean scalar expression.
    """
    # every element, not the sum: finite elements can sum to inf
    checks = [_all_finite(g) for g in grads]
    if loss is not None:
        checks.insert(0, isfinite(loss))
    return functools.reduce(pt.and_, checks)


class Guarded(list):
    """Update pairs made by :func:`guard`.

    Parameters
    ----------
    pairs : iterable of (SharedVariable, expression)
        The guarded updates.

    Attributes
    ----------
    finite : pytensor Variable
        The boolean scalar that decides whether the step is applied: the
        given check and the finiteness of every new float value.
    """

    finite = None


def _float_tensor(var):
    return isinstance(var.type, pt.TensorType) and var.type.dtype.startswith("float")


def guard(updates, ok):
    """Updates that keep every variable's old value unless the step is finite.

    A step is applied when ``ok`` holds and every new value of a float
    tensor is finite: a finite gradient can still give an overflowing step
    (e.g. with a learning rate of 1e308), and a state variable can overflow
    while its parameter does not.

    Parameters
    ----------
    updates : list of (SharedVariable, expression)
        The step's updates.
    ok : pytensor Variable
        A boolean scalar, e.g. from :func:`finite_check`.

    Returns
    -------
    Guarded
        The pairs: tensor variables switch between new and old; others
        (random generators) advance regardless. Its ``finite`` attribute is
        the whole condition, for the step function to return.
    """
    checks = [ok]
    checks.extend(_all_finite(new) for var, new in updates if _float_tensor(var))
    finite = functools.reduce(pt.and_, checks)
    guarded = Guarded(
        (var, pt.switch(finite, new, var) if isinstance(var.type, pt.TensorType) else new)
        for var, new in updates)
    guarded.finite = finite
    return guarded


#: Arrays of at most this many elements are tested element by element in
#: Python (a NumPy reduction costs ~1.5 us whatever the size).
_SMALL = 16


def first_nonfinite(variables):
    """The name of the first variable holding a NaN or an infinity.

    Parameters
    ----------
    variables : dict of str to SharedVariable
        Parameters and state variables by name; those that do not hold a
        float array (random generators, counters) are passed over.

    Returns
    -------
    str or None
        The name, or None when every value is finite.
    """
    for name, var in variables.items():
        value = var.get_value(borrow=True)
        if getattr(getattr(value, "dtype", None), "kind", None) not in ("f", "c"):
            continue
        if isinstance(value, np.ndarray) and value.size <= _SMALL:
            # a few elements: tested in Python, cheaper than a NumPy call
            if all(map(cmath.isfinite, value.ravel().tolist())):
                continue
            return name
        if isinstance(value, np.ndarray):
            # a sum is non-finite whenever an element is (and sometimes when none
            # is, by overflow): one cheap reduction, then the exact test if needed
            # (cmath: a Python test of the scalar, for real and complex sums alike)
            with np.errstate(over="ignore"):  # large finite values may overflow the sum
                total = value.sum()
            if cmath.isfinite(total) or np.isfinite(value).all():
                continue
            return name
        # the array's own library (a JAX array stays on its device)
        namespace = getattr(value, "__array_namespace__", None)
        xp = namespace() if namespace is not None else np
        if not bool(xp.all(xp.isfinite(value))):
            return name
    return None
