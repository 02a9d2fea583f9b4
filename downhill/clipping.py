"""Gradient clipping: a global norm limit over all gradients, then
per-parameter norm or element limits.

The limits live in the optimizer's shared scalars, so a new limit needs no
new graph (or are schedules or PyTensor values, see
:mod:`downhill.settings`); whether each limit is on (non-zero, or not a
number) is part of the graph's structure.
"""

import pytensor.tensor as pt

from .compat import l2_norm
from .hyperparams import is_on
from .util import as_float

__all__ = ["LIMITS", "clipping_on", "clip_gradients"]

#: The hyperparameters that clip gradients; 0 turns each off.
LIMITS = ("max_gradient_global_norm", "max_gradient_norm", "max_gradient_elem")


def clipping_on(values):
    """Whether any gradient clipping is configured.

    Parameters
    ----------
    values : dict
        The hyperparameter values in force.

    Returns
    -------
    bool
    """
    return any(is_on(values[name]) for name in LIMITS)


def _clip_one(grad, values, shared):
    """Apply the per-parameter clipping to one gradient."""
    if is_on(values["max_gradient_elem"]):
        limit = as_float(shared["max_gradient_elem"], grad.dtype)
        return pt.clip(grad, -limit, limit)
    if is_on(values["max_gradient_norm"]):
        limit = as_float(shared["max_gradient_norm"], grad.dtype)
        norm = l2_norm(grad)
        return grad * pt.minimum(as_float(1, grad.dtype), limit / norm)
    return grad


def clip_gradients(grads, values, shared, dtype, each=None):
    """The gradients after global, per-parameter and elementwise clipping.

    The global limit rescales all gradients together first; the
    per-parameter limits then apply to the result (an element limit wins
    over a norm limit).

    Parameters
    ----------
    grads : list of pytensor Variable
        One gradient per parameter.
    values : dict
        The hyperparameter values in force (which limits are on).
    shared : mapping of str to pytensor scalar
        What the graph reads for each limit, by name (the optimizer's
        shared scalars, or expressions for schedules and PyTensor values).
    dtype : str
        The dtype in which the global norm is computed.
    each : list of (dict, mapping), optional
        Per gradient, the values and limits of its per-parameter clipping
        (a parameter group's); default ``values`` and ``shared`` for all.

    Returns
    -------
    list of pytensor Variable
        The clipped gradients, each of its gradient's dtype.
    """
    grads = list(grads)
    if is_on(values["max_gradient_global_norm"]):
        total = l2_norm(grads, dtype)
        limit = as_float(shared["max_gradient_global_norm"], dtype)
        scale = pt.minimum(as_float(1, dtype), limit / total)
        grads = [g * as_float(scale, g.dtype) for g in grads]
    each = each or [(values, shared)] * len(grads)
    return [_clip_one(g, v, s) for g, (v, s) in zip(grads, each)]
