"""The non-finite policy inside the graph: a test that a step's loss and
gradients are finite, and the guard that keeps every variable's old value
when they are not (``on_nonfinite='skip'``).

What the training loop does with a non-finite loss (raise, stop, count
skips) lives in :mod:`downhill.training`.
"""

import functools

import pytensor.tensor as pt

from .compat import isfinite

__all__ = ["finite_check", "guard"]


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
    checks = [pt.all(isfinite(g)) for g in grads]
    if loss is not None:
        checks.insert(0, isfinite(loss))
    return functools.reduce(pt.and_, checks)


def guard(updates, ok):
    """Updates that keep every variable's old value unless ``ok``.

    Parameters
    ----------
    updates : list of (SharedVariable, expression)
        The step's updates.
    ok : pytensor Variable
        A boolean scalar, e.g. from :func:`finite_check`.

    Returns
    -------
    list of (SharedVariable, expression)
        Tensor variables switch between new and old; others (random
        generators) advance regardless.
    """
    return [(var, pt.switch(ok, new, var) if isinstance(var.type, pt.TensorType) else new)
            for var, new in updates]
