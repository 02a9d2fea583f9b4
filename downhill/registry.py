"""The algorithm registry: names to optimizer classes, and ``build``.

The registry is an explicit dict filled by the :func:`register` decorator;
``build`` looks names up there and the command line offers the same names.
A name not registered is looked up among the subclasses of
:class:`~downhill.Optimizer` by lower-cased class name, as downhill 0.4 found
every subclass; such classes are not added to the registry.
"""

from . import legacy
from .base import Optimizer
from .util import unknown_name_error

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
        An instance of the named algorithm: the registered class, else the
        subclass of :class:`~downhill.Optimizer` of that lower-cased name
        (``'straight'`` finds ``class Straight(downhill.Optimizer)``; of
        several definitions, the newest).

    Raises
    ------
    ValueError
        If no algorithm has that name (the message lists the known names),
        or if a class of yours has the name of a registered algorithm, which
        ``build`` would not give you (downhill 0.4 did).
    """
    return _lookup(algo)(loss, params=params, inputs=inputs, updates=updates,
                         monitors=monitors, monitor_gradients=monitor_gradients, **kwargs)


def _lookup(algo):
    """The class ``build`` makes for a name."""
    key = algo.lower() if isinstance(algo, str) else algo
    found = legacy.find_subclass(Optimizer, key) if isinstance(key, str) else []
    if key in ALGORITHMS:
        registered = ALGORITHMS[key]
        mine = [c for c in found if c is not registered and c not in ALGORITHMS.values()
                and not c.__module__.startswith("downhill.")]
        if mine:
            raise ValueError(
                f"algorithm name {key!r} is ambiguous: it names the built-in "
                f"{registered.__module__}.{registered.__name__}, and your class "
                f"{mine[0].__module__}.{mine[0].__name__} has the same name (downhill 0.4 "
                "gave yours). Rename your class, or register it under another name: "
                "@downhill.register(name='my-name')")
        return registered
    if found:
        return found[0]
    unknown = unknown_name_error(str(key), sorted(ALGORITHMS), "algorithm", error=ValueError,
                                 known_label="known algorithms")
    raise ValueError(f"{unknown} (or the lower-cased name of a subclass of downhill.Optimizer)")
