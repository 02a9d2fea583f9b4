"""The algorithm registry: names to optimizer classes, and ``build``.

The registry is an explicit dict filled by the :func:`register` decorator;
``build`` looks names up there and the command line offers the same names.
"""

from .base import Optimizer

__all__ = ["ALGORITHMS", "register", "build"]

#: Registry of algorithm classes by lower-case name; ``build`` looks here and
#: the command line offers these names.
ALGORITHMS = {}


def register(cls=None, *, name=None):
    """Add an optimizer class to the registry, so ``build`` finds it by name.

    Usable as a decorator, with or without a name::

        @downhill.register
        class MySGD(downhill.Optimizer): ...

        @downhill.register(name="my-sgd")
        class MySGD(downhill.Optimizer): ...

    Parameters
    ----------
    cls : type
        A subclass of :class:`~downhill.Optimizer`.
    name : str, optional
        The name to register under; defaults to the class name. Names are
        matched case-insensitively.

    Returns
    -------
    type
        The class, unchanged.

    Raises
    ------
    TypeError
        If ``cls`` is not an Optimizer subclass.
    ValueError
        If the name is already taken by another class.
    """
    def add(cls):
        if not (isinstance(cls, type) and issubclass(cls, Optimizer)):
            raise TypeError(f"only Optimizer subclasses can be registered, got {cls!r}")
        key = (name or cls.__name__).lower()
        if ALGORITHMS.get(key, cls) is not cls:
            raise ValueError(
                f"algorithm name {key!r} is already registered to "
                f"{ALGORITHMS[key].__module__}.{ALGORITHMS[key].__name__}")
        ALGORITHMS[key] = cls
        return cls
    return add if cls is None else add(cls)


def build(algo, loss=None, params=None, inputs=None, updates=(), monitors=(),
          monitor_gradients=False, **kwargs):
    """Construct an optimizer by name.

    Parameters
    ----------
    algo : str
        Name of the algorithm, case-insensitive: ``'sgd'``, ``'nag'``,
        ``'rmsprop'``, ... (see :data:`ALGORITHMS`).
    loss : pytensor scalar expression, optional
        The loss to minimize (optional when ``grads=`` are given).
    params, inputs, updates, monitors, monitor_gradients
        As for :class:`~downhill.Optimizer`.
    **kwargs
        Further keywords for the optimizer's constructor (``grads``,
        ``mode``, and hyperparameter defaults such as ``hv_method`` for
        ESGD).

    Returns
    -------
    Optimizer
        An instance of the named algorithm.

    Raises
    ------
    ValueError
        If no algorithm has that name; the message lists the known names.
    """
    key = algo.lower() if isinstance(algo, str) else algo
    if key not in ALGORITHMS:
        raise ValueError(
            f"unknown algorithm {algo!r}; known algorithms: {', '.join(sorted(ALGORITHMS))}")
    return ALGORITHMS[key](loss, params=params, inputs=inputs, updates=updates,
                           monitors=monitors, monitor_gradients=monitor_gradients,
                           **kwargs)
