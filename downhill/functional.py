"""The update-function convention of PyMC and Lasagne: ``downhill.updates``.

``pymc.variational.updates`` and ``lasagne.updates`` define an optimizer as
a function ``f(loss_or_grads, params, **hyperparameters)`` returning an
``OrderedDict`` of updates; called with neither argument it returns a
``functools.partial`` of itself with the hyperparameters bound, which is
what ``pm.fit(..., obj_optimizer=...)`` takes. :func:`updates` gives every
downhill algorithm that form (:class:`UpdateFunction`).
"""

import collections
import functools

from pytensor.compile.sharedvalue import SharedVariable
from pytensor.graph.basic import Variable

from . import validation
from .registry import _lookup, build
from .settings import check_graph_use

__all__ = ["updates", "Updates", "UpdateFunction"]


class Updates(collections.OrderedDict):
    """An ``OrderedDict`` of updates that also holds the optimizer that made it.

    Parameters
    ----------
    *args, **kwargs
        As for ``collections.OrderedDict``: the (variable, expression) pairs.

    Attributes
    ----------
    optimizer : Optimizer
        The optimizer; its shared hyperparameters (``optimizer.learning_rate``)
        can be changed between steps without a new graph.
    """

    optimizer = None


class UpdateFunction(functools.partial):
    """An algorithm with its hyperparameters bound: ``f(loss_or_grads, params, **hyperparameters)``.

    Made by :func:`updates` when it is called without ``loss_or_grads`` and
    ``params``; PyMC's ``pm.fit(obj_optimizer=...)`` calls it with the
    gradients of its objective. Like the update functions of
    ``pymc.variational.updates`` it is a ``functools.partial`` of
    :func:`updates`: ``func`` is :func:`updates`, ``args`` the algorithm's
    name, and ``keywords`` the hyperparameters bound. Keywords given at the
    call override the bound ones (``fn(loss, params, learning_rate=0.02)``),
    so ``functools.partial(fn, learning_rate=0.02)`` works too; called with
    neither ``loss_or_grads`` nor ``params`` it returns a new function with
    the keywords added.

    Parameters
    ----------
    func : callable
        :func:`updates`.
    algo : str
        The algorithm's name.
    **hyperparameters
        Its hyperparameters.

    Attributes
    ----------
    optimizer : Optimizer or None
        The optimizer made by the latest call (None before the first). Its
        attributes are reachable through this object too:
        ``fn.learning_rate.set_value(...)``, e.g. from a ``pm.fit`` callback.
    """

    optimizer = None

    @property
    def algo(self):
        """The algorithm's name."""
        return self.args[0]

    @property
    def hyperparameters(self):
        """The bound hyperparameters (a copy of ``keywords``)."""
        return dict(self.keywords)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.keywords.items())
        return f"downhill.updates({self.algo!r}{', ' if args else ''}{args})"

    def __call__(self, loss_or_grads=None, params=None, **hyperparameters):
        """Build the updates for a loss or gradients.

        Parameters
        ----------
        loss_or_grads : pytensor expression or list of expressions
            A scalar loss, or one gradient per parameter.
        params : list of SharedVariable
            The parameters.
        **hyperparameters
            Hyperparameters for this call, over the bound ones.

        Returns
        -------
        Updates or UpdateFunction
            An ``OrderedDict`` of updates (its ``optimizer`` attribute holds
            the optimizer); with neither ``loss_or_grads`` nor ``params``, a
            new update function with ``hyperparameters`` bound too.
        """
        keywords = dict(self.keywords, **hyperparameters)
        result = self.func(*self.args, loss_or_grads, params, **keywords)
        if isinstance(result, Updates):
            self.optimizer = result.optimizer
        return result

    def __getattr__(self, name):
        # the latest optimizer's shared hyperparameters: fn.learning_rate.set_value(...)
        optimizer = self.__dict__.get("optimizer")
        if optimizer is None or name.startswith("_"):
            raise AttributeError(
                f"{type(self).__name__!r} object has no attribute {name!r}"
                + ("" if optimizer is not None else " (call it first to build an optimizer)"))
        return getattr(optimizer, name)


def updates(algo, loss_or_grads=None, params=None, **hyperparameters):
    """Updates of a downhill algorithm, in the convention of PyMC and Lasagne.

    Parameters
    ----------
    algo : str
        Algorithm name (``'rmsprop'``, ``'adam'``, ``'esgd'``, ...).
    loss_or_grads : pytensor expression or list of expressions, optional
        A scalar loss, or one gradient expression per parameter (PyMC passes
        gradients). ESGD's Hessian-vector products are taken through given
        gradients, which are functions of the parameters.
    params : list of SharedVariable, optional
        The parameters to update.
    **hyperparameters
        The algorithm's hyperparameters, e.g. ``learning_rate=0.01``; each
        numeric one lives in a shared scalar of the optimizer, so it can be
        changed later (``result.optimizer.learning_rate.set_value(0.005)``,
        e.g. from a ``pm.fit`` callback). A numeric one also takes a graph
        schedule from :mod:`downhill.schedules`, which the step computes
        from the optimizer's update counter (so it works inside ``pm.fit``),
        or a PyTensor shared variable or float scalar expression, read as it
        is.

    Returns
    -------
    Updates or UpdateFunction
        With both ``loss_or_grads`` and ``params``: an ``OrderedDict`` of
        updates (parameters, optimizer state, the update counter) for
        ``pytensor.function(..., updates=...)``. With neither: a
        ``functools.partial`` taking ``(loss_or_grads, params,
        **hyperparameters)``, as PyMC's update functions are, e.g. for
        ``pm.fit(obj_optimizer=downhill.updates("rmsprop", learning_rate=0.01))``;
        keywords given when it is called override the bound ones.

    Raises
    ------
    ValueError
        If only one of ``loss_or_grads`` and ``params`` is given, a
        parameter is not a shared variable, the number of gradients differs
        from the number of parameters, a hyperparameter is out of range, or
        a hyperparameter is a Python schedule (a plain function,
        ``ReduceOnPlateau``), which only downhill's training loop can
        evaluate: the message names the graph schedules.

    Examples
    --------
    >>> import numpy as np, pytensor, downhill
    >>> w = pytensor.shared(np.zeros(3), name="w")
    >>> loss = ((w - 1) ** 2).sum()
    >>> ups = downhill.updates("adam", loss, [w], learning_rate=0.1)
    >>> step = pytensor.function([], loss, updates=ups)
    >>> float(step())
    3.0
    """
    cls = _lookup(algo)  # a bad name or value fails here, not inside pm.fit
    declared = cls.hyperparameters()  # unknown names warn when it is built, as elsewhere
    known = validation.check_hypers(
        declared, {k: v for k, v in hyperparameters.items() if k in declared}, cls.__name__)
    check_graph_use(declared, known, "downhill.updates()")
    if loss_or_grads is None and params is None:
        return UpdateFunction(updates, algo, **hyperparameters)
    if loss_or_grads is None or params is None:
        raise ValueError("Please provide both `loss_or_grads` and `params` to get updates")
    params = list(params)
    if any(not isinstance(p, SharedVariable) for p in params):
        bad = next(p for p in params if not isinstance(p, SharedVariable))
        raise ValueError(f"params must contain shared variables only, got {bad!r}")
    if isinstance(loss_or_grads, Variable):
        opt = build(algo, loss_or_grads, params=params, **hyperparameters)
    else:
        grads = list(loss_or_grads)
        if len(grads) != len(params):
            raise ValueError(
                f"Got {len(grads)} gradient expressions for {len(params)} parameters")
        opt = build(algo, params=params, grads=grads, **hyperparameters)
    result = Updates(opt.get_updates())
    result.optimizer = opt
    return result
