"""What downhill 0.4 code relies on beyond the calls themselves.

Three things live here, each for scripts and libraries written against the
original downhill (Theano) that run after the ``theano`` -> ``pytensor``
rename:

* hyperparameters read and set as optimizer attributes (:class:`Compat`):
  ``opt.learning_rate`` is a shared scalar (``.eval()``, ``.set_value()``),
  or the PyTensor variable given for it, ``opt.momentum`` or
  ``opt.patience`` the plain value in force, and ``opt.hv_method = 'lop'``
  is validated and used from then on;
* the 0.4 extension point, a subclass implementing
  ``_get_updates_for(param, grad)``, adapted to the ``_step`` hook
  (:func:`step_from_updates_for`);
* the creation order of Optimizer subclasses, so that
  :func:`downhill.build` can find an unregistered class by name, the newest
  definition first (:func:`find_subclass`).
"""

import itertools

import numpy as np
from pytensor.compile.sharedvalue import SharedVariable
from pytensor.graph.basic import Variable
from pytensor.graph.replace import clone_replace

from . import util

__all__ = ["SHARED_ATTRIBUTES", "HyperValue", "Compat", "step_from_updates_for",
           "find_subclass"]

#: Hyperparameters whose attribute is their shared scalar, as downhill 0.4
#: kept them as symbolic values (``opt.learning_rate.eval()``). The other
#: hyperparameters read as plain values; an algorithm's derived scalars
#: (``ewma``, ``epsilon``, ``beta1``, ...) read as shared scalars.
SHARED_ATTRIBUTES = ("learning_rate", "beta1_decay")

_defined = itertools.count()


class HyperValue(float):
    """A hyperparameter's number in force that also reads its shared scalar.

    ``opt.momentum`` is this: it compares and computes as the plain number
    (``opt.momentum == 0.5``, as in downhill 0.4), and ``.eval()``,
    ``.get_value()`` and ``.set_value()`` reach the shared scalar the update
    graph reads, as for ``opt.learning_rate``.

    Parameters
    ----------
    value : float
        The value in force (a schedule's latest value).
    shared : pytensor SharedVariable
        The hyperparameter's shared scalar.
    """

    def __new__(cls, value, shared):
        self = super().__new__(cls, value)
        self.shared = shared
        return self

    def eval(self):
        """The shared scalar's value, as ``shared.eval()``."""
        return self.shared.eval()

    def get_value(self):
        """The shared scalar's value, as ``shared.get_value()``."""
        return self.shared.get_value()

    def set_value(self, value):
        """Write the shared scalar directly (no validation).

        The value lasts until the next ``iterate()``/``get_updates()``
        writes the values of its call; ``opt.NAME = value`` validates it and
        keeps it.

        Parameters
        ----------
        value : float
            The new value.
        """
        self.shared.set_value(np.asarray(value, dtype=self.shared.dtype))


def _attribute(opt, name):
    settings = opt.__dict__.get("_settings")
    if settings is not None:
        hyper = settings.declared.get(name)
        if hyper is not None:
            value = settings.values[name]
            if hyper.shared != name or isinstance(value, Variable):
                return value  # a PyTensor value given: the variable the graph reads
            shared = settings.shared[name]
            if name in SHARED_ATTRIBUTES:
                return shared
            if callable(value):  # a schedule: its latest value
                value = float(shared.get_value())
            return HyperValue(value, shared)
        if name in settings.shared:
            return settings.shared[name]
    raise AttributeError(f"{type(opt).__name__!r} object has no attribute {name!r}")


def _set_hyperparameter(opt, name, value):
    """Validate a value and put it in force; it stays the optimizer's default."""
    settings = opt._settings
    if name not in settings.declared:
        owner = next(h.name for h in settings.declared.values() if h.shared == name)
        raise AttributeError(
            f"{name} is the shared scalar derived from {owner}: set opt.{owner} = ..., or "
            f"write the scalar with opt.{name}.set_value(...)")
    saved = settings.defaults
    # the algorithm's own checks (_configure) see the values in force, this one changed
    settings.defaults = dict(settings.values)
    try:
        values = opt._configure({name: value})
    finally:
        settings.defaults = saved
    saved[name] = values[name]


class Compat:
    """Base of :class:`downhill.Optimizer`: hyperparameters as attributes.

    Reading ``opt.NAME`` for a hyperparameter gives the value in force:
    the shared scalar for those in :data:`SHARED_ATTRIBUTES`, a
    :class:`HyperValue` for the other numbers kept in a shared scalar
    (``momentum``, ``weight_decay``, the clipping limits), and the plain
    value for the rest (``nesterov``, ``patience``, ``hv_method``, ...).
    A schedule's shared scalar holds the value of the latest update (before
    the first, the value in force); a PyTensor shared variable or
    expression given for a hyperparameter reads as itself.
    An algorithm's derived scalars (``ewma``, ``epsilon``) read as shared
    scalars.

    Setting ``opt.NAME = value`` for a hyperparameter validates it (a bad
    value raises ``ValueError`` and changes nothing), puts it in force
    (numbers reach the shared scalars at once; a choice that changes the
    graph, such as ``hv_method``, takes effect with the next
    ``iterate()``/``get_updates()``) and makes it the optimizer's default
    for later calls, which may still override it with a keyword. Setting a
    derived scalar raises ``AttributeError``; other names are ordinary
    attributes.
    """

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls._defined = next(_defined)  # creation order, for find_subclass
        if "_get_updates_for" in cls.__dict__ and "_step" not in cls.__dict__:
            # a 0.4 hook overrides an inherited _step (class MyRMS(downhill.RMSProp))
            cls._step = _step_from_hook

    def __getattr__(self, name):
        return _attribute(self, name)

    def __setattr__(self, name, value):
        settings = self.__dict__.get("_settings")
        if (settings is None or name.startswith("_")
                or (name not in settings.declared and name not in settings.shared)):
            object.__setattr__(self, name, value)
        else:
            _set_hyperparameter(self, name, value)


def _cast(expr, var):
    """``expr`` in ``var``'s dtype, so that it can be ``var``'s update."""
    dtype = getattr(expr, "dtype", None)
    if dtype is None or dtype == var.dtype:
        return expr
    return util.as_float(expr, var.dtype) if var.dtype.startswith("float") else expr


def step_from_updates_for(opt, param, grad):
    """Run a downhill 0.4 ``_get_updates_for`` hook as the ``_step`` hook.

    In 0.4 an algorithm yields ``(variable, expression)`` pairs for one
    parameter: for the parameter itself the expression is its *step*
    :math:`\\delta` (the new value is ``param - delta``, before momentum),
    for every other variable (the algorithm's state) its new value. The
    step goes on through momentum, weight decay and the non-finite guard
    as any algorithm's; the state variables, made by the hook itself
    (``downhill.util.shared_like(param, 'g2')``), are adopted into the
    optimizer's state, so that they are listed, saved and restored (a
    variable the hook makes again for another graph, under the same name, is
    replaced by the first one, so its value carries over).

    Parameters
    ----------
    opt : Optimizer
        An optimizer whose class implements ``_get_updates_for``.
    param : pytensor SharedVariable
        The parameter.
    grad : pytensor expression
        Its gradient, clipped.

    Returns
    -------
    delta : pytensor expression
    state : list of (SharedVariable, expression)

    Raises
    ------
    NotImplementedError
        If the class implements neither ``_step`` nor ``_get_updates_for``.
    ValueError
        If the hook yields no pair, or two, for the parameter, or a pair
        whose first item is not a shared variable.
    """
    hook = getattr(opt, "_get_updates_for", None)
    name = type(opt).__name__
    if hook is None:
        raise NotImplementedError(
            f"{name} implements neither _step(param, grad) nor downhill 0.4's "
            "_get_updates_for(param, grad)")
    delta, pairs = None, []
    for i, item in enumerate(hook(param, grad)):
        if not (isinstance(item, (tuple, list)) and len(item) == 2):
            raise ValueError(f"{name}._get_updates_for yielded {item!r} (item {i}); it must "
                             "yield (variable, expression) pairs")
        var, expr = item
        if var is param:
            if delta is not None:
                raise ValueError(f"{name}._get_updates_for yielded two pairs for parameter "
                                 f"{param.name!r}; yield its step once")
            delta = expr
        elif isinstance(var, SharedVariable):
            pairs.append((var, expr))
        else:
            raise ValueError(f"{name}._get_updates_for yielded a pair for {var!r}, which is "
                             "not a shared variable")
    if delta is None:
        raise ValueError(
            f"{name}._get_updates_for yielded no pair for parameter {param.name!r}: as in "
            "downhill 0.4, yield (param, step), the new value being param - step")
    replace, state = {}, []
    for var, expr in pairs:
        kept = opt._variables.adopt(param, var, taken=[v for v, _ in state])
        if kept is not var:
            replace[var] = kept
        state.append((kept, expr))
    if replace:
        exprs = clone_replace([delta] + [e for _, e in state], replace=replace)
        delta, state = exprs[0], [(v, e) for (v, _), e in zip(state, exprs[1:])]
    return _cast(delta, param), [(v, _cast(e, v)) for v, e in state]


def _step_from_hook(self, param, grad):
    return step_from_updates_for(self, param, grad)


def find_subclass(base, key):
    """The newest subclass of ``base`` whose lower-cased name is ``key``.

    Parameters
    ----------
    base : type
        :class:`downhill.Optimizer`.
    key : str
        A lower-case class name.

    Returns
    -------
    list of type
        The matching classes, newest definition first (a class defined
        again, e.g. by re-running a notebook cell, comes before the old one).
    """
    found, seen, stack = [], set(), list(base.__subclasses__())
    while stack:
        cls = stack.pop()
        if cls in seen:
            continue
        seen.add(cls)
        stack.extend(cls.__subclasses__())
        if cls.__name__.lower() == key:
            found.append(cls)
    return sorted(found, key=lambda c: c.__dict__.get("_defined", -1), reverse=True)
