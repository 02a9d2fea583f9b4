"""The optimizer base class, the algorithm registry and ``build``."""

import collections
import functools
import logging
import math
import os

import numpy as np
import pytensor
import pytensor.tensor as pt
from pytensor.compile.sharedvalue import SharedVariable
from pytensor.graph.basic import Constant, Variable

from . import checkpoint, compat, util
from .dataset import Dataset
from .util import Hyper, log

__all__ = ["ALGORITHMS", "register", "build", "Optimizer"]

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
        A subclass of :class:`Optimizer`.
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


def build(algo, loss, params=None, inputs=None, updates=(), monitors=(),
          monitor_gradients=False, **kwargs):
    """Construct an optimizer by name.

    Parameters
    ----------
    algo : str
        Name of the algorithm, case-insensitive: ``'sgd'``, ``'nag'``,
        ``'rmsprop'``, ... (see :data:`ALGORITHMS`).
    loss : pytensor scalar expression
        The loss to minimize.
    params, inputs, updates, monitors, monitor_gradients
        As for :class:`Optimizer`.
    **kwargs
        Further keywords for the optimizer's constructor (``mode``, and
        hyperparameter defaults such as ``hv_method`` for ESGD).

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


def _unique_keys(names):
    """Names made unique by appending ``#i`` to repeated ones."""
    counts = collections.Counter(names)
    return [f"{n}#{i}" if counts[n] > 1 else n for i, n in enumerate(names)]


class _NonFinite(Exception):
    """Internal: the loss or a gradient became NaN or infinite."""


class Optimizer:
    r"""Base class of the optimizers: builds update graphs and runs training.

    A subclass implements one hook, ``_step``, which, given a parameter
    and its (clipped) gradient, returns the step :math:`\delta` and new values
    for the algorithm's state. This class adds gradient clipping, momentum
    and Nesterov momentum, compiles the step function, and runs the training
    loop with validation and early stopping.

    Parameters
    ----------
    loss : pytensor scalar expression
        The loss to minimize.
    params : list of pytensor SharedVariable, optional
        The variables to adjust. Default: every shared variable of float
        dtype that the loss depends on.
    inputs : list of pytensor Variable, optional
        The symbolic inputs the loss needs, in the order the data arrays are
        given. Default: every root of the loss's graph that is neither shared
        nor constant, in order of first appearance in a left-to-right
        depth-first walk (``((x @ w - y) ** 2).mean()`` gives ``[x, y]``).
    updates : sequence of (SharedVariable, expression) pairs, optional
        Extra updates applied with every step, e.g. a random generator's.
    monitors : dict or sequence of (str, expression) pairs, optional
        Named scalar expressions to compute alongside the loss.
    monitor_gradients : bool, optional
        Add a monitor ``grad(NAME)`` per parameter: the squared L2 norm of
        its gradient before clipping. While gradient clipping is on, the
        training monitors also hold ``grad(NAME) clipped``, the squared norm
        after clipping. Default False. Parameters that share a name are
        told apart by their position: ``grad(w#0)``, ``grad(w#1)``.
    mode : str or pytensor Mode, optional
        PyTensor compile mode of the step and evaluation functions, e.g.
        ``"NUMBA"``, ``"CVM"`` (the C backend) or ``"JAX"``; :meth:`iterate`
        can switch it later. Default: PyTensor's default, which in PyTensor 3
        is Numba (``"FAST_RUN"`` is Numba too). Measured on a 2-core CPU
        (``benchmarks/README.md``): Numba runs large updates 4-8x faster than
        the C backend (one fused loop per parameter, at memory speed) and an
        MLP 1.7x faster; the C backend costs the same per call on tiny
        problems (3.3 vs 3.6 us) and starts a tiny model ~0.1 s sooner from a
        warm cache. JAX suits accelerators.
    **hyperparameters
        Defaults for this optimizer's hyperparameters; each call of
        :meth:`iterate`, :meth:`minimize` or :meth:`get_updates` starts
        from these and applies its own keywords.

    Raises
    ------
    ValueError
        If the loss is not a scalar expression, no parameters are found or
        given, or a parameter, input or monitor is of the wrong kind.
    TypeError
        If a hyperparameter name is unknown.
    """

    #: Hyperparameters common to every algorithm. Subclasses add theirs in a
    #: ``HYPERS`` tuple of their own; :meth:`hyperparameters` merges them.
    HYPERS = (
        Hyper("learning_rate", 1e-4, "step size multiplying each update",
              low=0, low_open=True, shared="learning_rate", schedulable=True),
        Hyper("momentum", 0.0, "velocity decay; 0 turns momentum off",
              low=0, high=1, high_open=True, shared="momentum", switch=True,
              schedulable=True),
        Hyper("nesterov", False, "use Nesterov momentum (when momentum > 0)",
              kind=bool, structural=True),
        Hyper("weight_decay", 0.0,
              "decoupled weight decay: p <- p - learning_rate * weight_decay * p; 0 = off",
              low=0, shared="weight_decay", switch=True),
        Hyper("max_gradient_global_norm", 0.0,
              "rescale all gradients together to at most this joint L2 norm; 0 = off",
              low=0, shared="max_gradient_global_norm", switch=True),
        Hyper("max_gradient_norm", 0.0,
              "rescale each parameter's gradient to at most this L2 norm; 0 = off",
              low=0, shared="max_gradient_norm", switch=True),
        Hyper("max_gradient_elem", 0.0,
              "clip each gradient element to [-c, c]; 0 = off (wins over the norm)",
              low=0, shared="max_gradient_elem", switch=True),
        Hyper("patience", 5, "validations without improvement tolerated before stopping",
              kind=int, low=0),
        Hyper("validate_every", 10, "iterations between validations",
              kind=int, low=1),
        Hyper("min_improvement", 0.0,
              "relative decrease of the validation loss that counts as progress",
              low=0),
        Hyper("on_nonfinite", "raise",
              "what a NaN or infinite loss does: 'raise', 'stop' or 'skip' the step",
              kind=str, choices=("raise", "stop", "skip"),
              structural=lambda value: value == "skip"),
        Hyper("max_skips", 10,
              "with on_nonfinite='skip': non-finite steps in a row before giving up",
              kind=int, low=1),
    )

    def __init__(self, loss, params=None, inputs=None, updates=(), monitors=(),
                 monitor_gradients=False, mode=None, **hyperparameters):
        if not isinstance(loss, Variable):
            raise ValueError(
                f"loss must be a scalar PyTensor expression, got {type(loss).__name__}")
        if loss.ndim != 0:
            shape = tuple("?" if s is None else s for s in loss.type.shape)
            raise ValueError(
                f"loss must be a scalar expression, but it is {loss.ndim}-d with shape "
                f"{shape}; reduce it, e.g. with .mean() or .sum()")
        if not loss.dtype.startswith("float"):
            raise ValueError(f"loss must have a float dtype, got {loss.dtype}")
        self._loss = loss
        self._mode = self._check_mode(mode)

        self._monitor_names, self._monitor_exprs = self._check_monitors(monitors)
        self._user_updates = self._check_updates(updates)

        found_inputs, found_params = util.find_inputs_and_params(loss)
        targets = {id(var) for var, _ in self._user_updates}
        found_params = [p for p in found_params if id(p) not in targets]
        self._params = self._check_params(found_params if params is None else params)
        for i, p in enumerate(self._params):
            for j, (var, _) in enumerate(self._user_updates):
                if var is p:
                    raise ValueError(
                        f"parameter {i} ({p.name!r}) is also the target of update {j}; "
                        "the optimizer updates its parameters itself")
        if inputs is None:
            extra, _ = util.find_inputs_and_params(
                *self._monitor_exprs, *(expr for _, expr in self._user_updates))
            known = {id(v) for v in found_inputs}
            inputs = found_inputs + [v for v in extra if id(v) not in known]
        self._inputs = self._check_inputs(
            inputs, [loss, *self._monitor_exprs, *(expr for _, expr in self._user_updates)])

        used = {id(v) for v in util._roots([loss])}
        for i, p in enumerate(self._params):
            if id(p) not in used:
                raise ValueError(
                    f"parameter {i} ({p.name!r}) is not optimizable: the loss does not "
                    "depend on it")
        unnamed = iter(range(len(self._params)))
        self._names = [p.name or f"unnamed{next(unnamed)}" for p in self._params]
        self._dtype = str(np.result_type(*[p.dtype for p in self._params]))
        log.info("%s: inputs %s", type(self).__name__,
                 [v.name or f"<{v.type}>" for v in self._inputs])
        log.info("%s: parameters %s", type(self).__name__,
                 [f"{n} {p.get_value(borrow=True).shape}" for n, p in zip(self._names, self._params)])

        self._grads = pytensor.grad(loss, self._params)
        # unique names: w#0, w#1 for two parameters named w
        self._keys = _unique_keys(self._names)
        self._monitor_gradients = bool(monitor_gradients)
        if monitor_gradients:
            for key, grad in zip(self._keys, self._grads):
                if f"grad({key})" in self._monitor_names:
                    raise ValueError(
                        f"monitor name 'grad({key})' is used twice (monitor_gradients "
                        "makes it)")
                self._monitor_names.append(f"grad({key})")
                self._monitor_exprs.append((grad * grad).sum())

        self._updates_done = 0
        self._defaults = {name: h.default for name, h in self.hyperparameters().items()}
        self._defaults.update(self._check_hypers(hyperparameters))
        self._shared = {
            h.shared: pytensor.shared(np.asarray(0, dtype=self._dtype), name=h.shared)
            for h in self.hyperparameters().values() if h.shared}
        self._configure({})

        self._state = {}
        self._initial = {}  # the value each state variable was made with
        self._graphs = {}
        self._functions = {}
        self._f_eval = None
        self._iteration = 0
        self._run_start = 0
        self._best_loss = math.inf
        self._best_iter = 0
        self._best_params = [p.get_value() for p in self._params]
        self._fails = 0
        self._fresh_validation = False
        self._resume_pending = False
        self._schedule_states = {}
        self._last_validation = None

    # ------------------------------------------------------------------
    # construction helpers

    @staticmethod
    def _check_mode(mode):
        """Check that PyTensor knows a compile mode; return it unchanged."""
        if mode is not None:
            try:
                pytensor.compile.mode.get_mode(mode)
            except (ValueError, TypeError) as error:
                raise ValueError(f"unknown compile mode {mode!r}: {error}") from None
        return mode

    @staticmethod
    def _check_monitors(monitors):
        if isinstance(monitors, dict):
            monitors = list(monitors.items())
        names, exprs = ["loss"], []
        for i, item in enumerate(monitors):
            if not (isinstance(item, (tuple, list)) and len(item) == 2):
                raise ValueError(
                    f"monitor {i} must be a (name, expression) pair, got {item!r}")
            name, expr = item
            if not isinstance(name, str) or not isinstance(expr, Variable):
                raise ValueError(
                    f"monitor {i} must be a (str, PyTensor expression) pair, "
                    f"got ({type(name).__name__}, {type(expr).__name__})")
            if name in names:
                raise ValueError(f"monitor name {name!r} is used twice ('loss' is reserved)")
            if expr.ndim != 0:
                raise ValueError(
                    f"monitor {name!r} must be a scalar expression, but it is {expr.ndim}-d")
            names.append(name)
            exprs.append(expr)
        return names, exprs

    @staticmethod
    def _check_updates(updates):
        if isinstance(updates, dict):
            updates = list(updates.items())
        pairs = []
        for i, item in enumerate(updates):
            if not (isinstance(item, (tuple, list)) and len(item) == 2
                    and isinstance(item[0], SharedVariable)):
                raise ValueError(
                    f"update {i} must be a (shared variable, expression) pair, got {item!r}")
            for j, (var, _) in enumerate(pairs):
                if var is item[0]:
                    raise ValueError(
                        f"update {i} (of {var.name!r}) updates a variable that is also the "
                        f"target of update {j}; a variable can have one update")
            pairs.append(tuple(item))
        return pairs

    @staticmethod
    def _check_params(params):
        params = list(params)
        if not params:
            raise ValueError(
                "no parameters to optimize: the loss depends on no shared variable of "
                "float dtype; create them with pytensor.shared(...) or pass params=[...]")
        for i, p in enumerate(params):
            if not isinstance(p, SharedVariable) or not str(p.dtype).startswith("float"):
                raise ValueError(
                    f"parameter {i} must be a float shared variable (pytensor.shared), "
                    f"got {p!r} of type {type(p).__name__}")
            if any(q is p for q in params[:i]):
                raise ValueError(f"parameter {i} ({p.name!r}) is given twice")
        return params

    @staticmethod
    def _check_inputs(inputs, outputs):
        inputs = list(inputs)
        for i, v in enumerate(inputs):
            if not isinstance(v, Variable) or isinstance(v, (SharedVariable, Constant)):
                raise ValueError(
                    f"input {i} must be a symbolic variable such as pt.matrix('x'), "
                    f"not {type(v).__name__}")
            if any(u is v for u in inputs[:i]):
                raise ValueError(f"input {i} ({v.name!r}) is given twice")
        # the graph's roots, given inputs counting as roots (they may be intermediate)
        roots = util._roots(outputs, stop=inputs)
        given = {id(v) for v in inputs}
        for v in roots:
            if id(v) not in given and not isinstance(v, (SharedVariable, Constant)):
                raise ValueError(
                    f"the loss (or a monitor or update) needs the input {v.name!r}, which is "
                    f"not in inputs {[u.name for u in inputs]}")
        used = {id(v) for v in roots}
        for i, v in enumerate(inputs):
            if id(v) not in used:
                raise ValueError(
                    f"input {i} ({v.name!r}) is not used by the loss, the monitors or the "
                    "updates")
        return inputs

    # ------------------------------------------------------------------
    # hyperparameters

    @classmethod
    def hyperparameters(cls):
        """All hyperparameter declarations of this algorithm.

        Returns
        -------
        dict of str to Hyper
            The common declarations first, then the algorithm's own; a
            subclass's declaration replaces an inherited one of the same name.
        """
        merged = {}
        for klass in reversed(cls.__mro__):
            for h in klass.__dict__.get("HYPERS", ()):
                merged[h.name] = h
        return merged

    def _check_hypers(self, given):
        declared = self.hyperparameters()
        checked = {}
        for name, value in given.items():
            if name not in declared:
                raise util.unknown_name_error(
                    name, declared, f"hyperparameter for {type(self).__name__}")
            checked[name] = declared[name].validate(value)
        return checked

    def _configure(self, given):
        """Validate hyperparameters, store them and write the shared scalars."""
        values = dict(self._defaults)
        values.update(self._check_hypers(given))
        declared = self.hyperparameters()
        schedules = {name: value for name, value in values.items()
                     if declared[name].schedulable and callable(value)}
        numbers = {name: self._scheduled_value(declared[name], f)
                   for name, f in schedules.items()}
        for h in declared.values():
            if h.shared:
                self._shared[h.shared].set_value(
                    np.asarray(h.shared_value(numbers.get(h.name, values[h.name])),
                               dtype=self._dtype))
        self._values = values
        self._schedules = schedules
        return values

    def _scheduled_value(self, hyper, schedule):
        """Evaluate a schedule at the current update count and check the result."""
        try:
            value = schedule(self._updates_done)
        except Exception as error:
            raise ValueError(
                f"the schedule given for {hyper.name} failed at update "
                f"{self._updates_done}: {error!r}") from error
        try:
            value = float(value)
            if value == hyper.low and hyper.low_open:
                return value  # e.g. a learning rate warming up from 0
            return hyper.validate(value)
        except (TypeError, ValueError):
            raise ValueError(
                f"the schedule given for {hyper.name} returned {value!r} at update "
                f"{self._updates_done} (must be {hyper._number_range()})") from None

    def _apply_schedules(self):
        """Write every schedule's current value into its shared scalar."""
        declared = self.hyperparameters()
        for name, schedule in self._schedules.items():
            h = declared[name]
            value = self._scheduled_value(h, schedule)
            self._shared[h.shared].set_value(
                np.asarray(h.shared_value(value), dtype=self._dtype))

    def __getattr__(self, name):
        shared = self.__dict__.get("_shared", {})
        if name in shared:
            return shared[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def _hyper(self, attr, like):
        """A hyperparameter's shared scalar, cast to ``like``'s dtype."""
        return util.as_float(self._shared[attr], like.dtype)

    def _structure(self):
        """The hyperparameter choices that change the shape of the graph."""
        key = []
        for h in self.hyperparameters().values():
            part = h.structure(self._values[h.name])
            if part is not None:
                key.append((h.name, part))
        return tuple(key)

    # ------------------------------------------------------------------
    # graphs

    def _state_like(self, param, suffix, value=0):
        """The state variable ``suffix`` of ``param``, made on first use.

        State lives as long as the optimizer, so averages and velocities
        carry over from one :meth:`iterate` call to the next.
        """
        index = next(i for i, p in enumerate(self._params) if p is param)
        key = (index, suffix)
        if key not in self._state:
            self._state[key] = util.shared_like(param, suffix, self._names[index], value)
            self._initial[key] = value
        return self._state[key]

    def _global_state(self, suffix, value=0, dtype="int64"):
        """The optimizer-wide state scalar ``suffix``, made on first use.

        For state shared by all parameters, such as Adam's step counter. It
        is kept with the per-parameter state (under the key
        ``(None, suffix)``), so it appears in :attr:`state_variables`.
        Its update belongs in :meth:`_global_updates`, so that it is applied
        once per step however many parameters there are.
        """
        key = (None, suffix)
        if key not in self._state:
            self._state[key] = pytensor.shared(np.asarray(value, dtype=dtype), name=suffix)
            self._initial[key] = value
        return self._state[key]

    @property
    def state_variables(self):
        """The optimizer's state variables made so far, in creation order."""
        return list(self._state.values())

    def _clip(self, grad):
        """Apply the configured per-parameter clipping to one gradient."""
        if self._values["max_gradient_elem"] > 0:
            limit = self._hyper("max_gradient_elem", grad)
            return pt.clip(grad, -limit, limit)
        if self._values["max_gradient_norm"] > 0:
            limit = self._hyper("max_gradient_norm", grad)
            norm = compat.l2_norm(grad)
            return grad * pt.minimum(util.as_float(1, grad.dtype), limit / norm)
        return grad

    def _clipping(self):
        """Whether any gradient clipping is configured."""
        return any(self._values[name] > 0 for name in (
            "max_gradient_global_norm", "max_gradient_norm", "max_gradient_elem"))

    def _clipped_grads(self):
        """The gradients after global, per-parameter and elementwise clipping.

        The global limit rescales all gradients together first; the
        per-parameter limits then apply to the result.
        """
        grads = list(self._grads)
        if self._values["max_gradient_global_norm"] > 0:
            dtype = self._dtype
            total = compat.l2_norm(grads, dtype)
            limit = util.as_float(self._shared["max_gradient_global_norm"], dtype)
            scale = pt.minimum(util.as_float(1, dtype), limit / total)
            grads = [g * util.as_float(scale, g.dtype) for g in grads]
        return [self._clip(g) for g in grads]

    def _step(self, param, grad):
        r"""Compute one parameter's step; the hook each algorithm implements.

        Parameters
        ----------
        param : pytensor SharedVariable
            The parameter.
        grad : pytensor expression
            Its gradient, already clipped.

        Returns
        -------
        delta : pytensor expression
            The step :math:`\delta`; without momentum the new parameter value
            is ``param - delta``.
        state : list of (SharedVariable, expression)
            New values of the algorithm's state variables.
        """
        raise NotImplementedError

    def _global_updates(self):
        """New values of optimizer-wide state; a hook, empty by default.

        Called once per graph, before ``_step`` is called for each
        parameter, so an algorithm can make expressions here (e.g. the
        incremented step counter) that its ``_step`` then uses.

        Returns
        -------
        list of (SharedVariable, expression)
            Updates of variables made with :meth:`_global_state`.
        """
        return []

    def _build_updates(self):
        """Update pairs of one step, and the clipped gradients they used."""
        updates = list(self._global_updates())
        momentum = self._values["momentum"] != 0
        nesterov = momentum and self._values["nesterov"]
        decay = self._values["weight_decay"] != 0
        clipped = self._clipped_grads()
        for param, grad in zip(self._params, clipped):
            delta, state = self._step(param, grad)
            updates.extend(state)
            if not momentum:
                new = param - delta
            else:
                mu = self._hyper("momentum", param)
                vel = self._state_like(param, "vel")
                vel_new = mu * vel - delta
                updates.append((vel, vel_new))
                new = param + mu * vel_new - delta if nesterov else param + vel_new
            if decay:
                new = new - (self._hyper("learning_rate", param)
                             * self._hyper("weight_decay", param) * param)
            updates.append((param, new))
        if self._values["on_nonfinite"] == "skip":
            updates = self._guard(updates)
        return updates, clipped

    def _finite_check(self):
        """A boolean scalar: the loss and every gradient are finite."""
        checks = [compat.isfinite(self._loss)]
        # every element, not the sum: finite elements can sum to inf
        checks.extend(pt.all(compat.isfinite(g)) for g in self._grads)
        return functools.reduce(pt.and_, checks)

    def _guard(self, updates):
        """Keep every variable's old value when the step is not finite."""
        ok = self._finite_check()
        return [(var, pt.switch(ok, new, var) if isinstance(var.type, pt.TensorType) else new)
                for var, new in updates]

    def _updates(self):
        key = self._structure()
        if key not in self._graphs:
            self._graphs[key] = self._build_updates()
        return self._graphs[key][0]

    def get_updates(self, **hyperparameters):
        """Update expressions for one optimization step.

        Parameters
        ----------
        **hyperparameters
            Hyperparameter values (see :meth:`hyperparameters`); the rest
            take the optimizer's defaults. Numeric values are written into
            shared scalars, so they can be changed later without a new graph
            (``opt.learning_rate.set_value(...)``). A schedule is evaluated
            once, here, at the current update count: only :meth:`iterate`
            applies schedules before every update.

        Returns
        -------
        list of (SharedVariable, expression) pairs
            New values of the parameters and every state variable. Give them
            to ``pytensor.function(..., updates=...)`` to get a step function.

        Raises
        ------
        TypeError
            For an unknown hyperparameter name.
        ValueError
            For a value outside its allowed range.
        """
        self._configure(hyperparameters)
        return list(self._updates())

    def _compiled_step(self):
        """The step function for the current structure and compile mode.

        Compiled once per (structure, mode) and cached, so a new learning
        rate or a second :meth:`iterate` call compiles nothing.

        Returns
        -------
        fn : pytensor Function
            Takes a batch; returns the loss and monitors (then, when clipping
            and gradient monitors are on, the clipped gradients' squared
            norms; then, with ``on_nonfinite='skip'``, whether the step was
            finite).
        names : list of str
            Names of the monitors ``fn`` returns.
        guarded : bool
            Whether ``fn``'s last output is the finiteness flag.
        """
        structure = self._structure()
        key = (structure, self._mode)
        if key not in self._functions:
            updates = self._user_updates + self._updates()
            names = list(self._monitor_names)
            outputs = [self._loss] + self._monitor_exprs
            if self._monitor_gradients and self._clipping():
                for name, grad in zip(self._keys, self._graphs[structure][1]):
                    names.append(f"grad({name}) clipped")
                    outputs.append((grad * grad).sum())
            guarded = self._values["on_nonfinite"] == "skip"
            if guarded:
                outputs.append(self._finite_check())
            name = f"{type(self).__name__}_step"
            log.info("compiling %s step function", type(self).__name__)
            fn = pytensor.function(
                self._inputs, outputs, updates=updates, name=name, mode=self._mode)
            self._remember(fn, outputs, updates, name)
            self._functions[key] = fn, names, guarded
        return self._functions[key]

    def _compiled_eval(self):
        """The evaluation function (loss and monitors, no step) for the mode."""
        if self._f_eval is None:
            self._f_eval = {}
        if self._mode not in self._f_eval:
            outputs = [self._loss] + self._monitor_exprs
            log.info("compiling %s evaluation function", type(self).__name__)
            self._f_eval[self._mode] = pytensor.function(
                self._inputs, outputs, updates=self._user_updates, name="evaluate",
                mode=self._mode)
            self._remember(self._f_eval[self._mode], outputs, self._user_updates, "evaluate")
        return self._f_eval[self._mode]

    def _remember(self, fn, outputs, updates, name):
        """Keep what ``fn`` was compiled from, to compile its in-graph twin."""
        self.__dict__.setdefault("_recipes", {})[id(fn)] = (fn, outputs, updates, name)

    def _data_variables(self):
        """Shared variables holding the current dataset's arrays, one per input,
        and the shared batch size; made on first use."""
        if "_data_shared" not in self.__dict__:
            buffers = []
            for i, var in enumerate(self._inputs):
                shape = tuple(var.type.shape)
                empty = np.zeros((0,) + tuple(s or 0 for s in shape[1:]), dtype=var.dtype)
                buffers.append(pytensor.shared(empty, name=f"{var.name or f'input{i}'}_data",
                                               shape=(None,) + shape[1:]))
            size = pytensor.shared(np.int64(1), name="batch_size")
            self.__dict__["_data_shared"] = (buffers, size)
        return self.__dict__["_data_shared"]

    def _in_graph(self, fn):
        """``fn``'s twin that slices its batch out of shared data in the graph.

        Its only input is the batch number; the data, the batch size and the
        slicing stay inside the compiled function.
        """
        twins = self.__dict__.setdefault("_twins", {})
        if id(fn) not in twins:
            _, outputs, updates, name = self.__dict__["_recipes"][id(fn)]
            buffers, size = self._data_variables()
            number = pt.scalar("batch", dtype="int64")
            start = number * size
            givens = [(var, buffer[start:start + size])
                      for var, buffer in zip(self._inputs, buffers)]
            log.info("compiling %s %s function with in-graph batches", type(self).__name__, name)
            twin = pytensor.function([number], outputs, updates=updates, givens=givens,
                                     name=f"{name}_in_graph", mode=self._mode)
            twin.trust_input = True
            twins[id(fn)] = (fn, twin)
        return twins[id(fn)][1]

    def _graph_batches(self, dataset):
        """Batches of a shared-variable dataset as batch numbers for :meth:`_in_graph`."""
        buffers, size = self._data_variables()
        size.set_value(np.int64(dataset.batch_size))
        current = None
        for number, weight, arrays in dataset.batch_numbers():
            if arrays is not current:  # a new buffer: point the graph at it
                for shared, array in zip(buffers, arrays):
                    shared.set_value(array, borrow=True)
                current = arrays
            yield (number,), weight

    # ------------------------------------------------------------------
    # data

    def _as_dataset(self, data, name, batch_size=32, ordered=False):
        """Wrap data into a conformed Dataset; ``ordered`` arrays are not shuffled."""
        if isinstance(data, Dataset):
            dataset = data
        elif data is None:
            if self._inputs:
                raise ValueError(
                    f"no {name} data given, but the loss has inputs "
                    f"{[v.name for v in self._inputs]}; pass {name}=[arrays...]")
            dataset = Dataset(lambda: [], name=name, iteration_size=1)
        elif callable(data):
            dataset = Dataset(data, name=name)
        else:
            if not isinstance(data, (list, tuple)):
                raise ValueError(
                    f"{name} data must be a Dataset, a list of arrays (one per input), "
                    f"a callable or None, got {type(data).__name__}")
            dataset = Dataset(data, name=name, batch_size=batch_size)
            if ordered:
                dataset = dataset.in_order()
        dataset.conform(self._inputs)
        return dataset

    def _run_batches(self, fn, dataset, names=None, guarded=False, train=False):
        """Call ``fn`` on every batch of one pass; weighted means of its outputs.

        Returns the monitors and whether the pass stayed finite. With
        ``train`` the schedules are applied before every batch and the
        update counter advances; with ``guarded`` the last output of ``fn``
        says whether the step was finite: a non-finite step was not applied
        and its batch is left out of the means, until more than
        ``max_skips`` come in a row.

        The hot loop: per batch, one call of the compiled function and a
        running sum of its outputs in Python floats. When the dataset's
        batches already fit the inputs exactly (``Dataset.trusted``,
        established once by :meth:`Dataset.conform`) the function is called
        without its per-call input checks (PyTensor's ``trust_input``), and
        the batches themselves are views of the dataset's buffer, not copies.
        Data given as PyTensor shared variables (``Dataset.in_graph``)
        is batched inside the graph: only the batch number crosses over.
        """
        names = self._monitor_names if names is None else names
        schedules = train and bool(self._schedules)
        if getattr(dataset, "in_graph", False):
            fn = self._in_graph(fn)
            batches = self._graph_batches(dataset)
        else:
            fn.trust_input = getattr(dataset, "trusted", False)
            batches = ((batch, dataset.batch_weight(batch)) for batch in dataset)
        sums = None
        total = 0
        for batch, weight in batches:
            if schedules:
                self._apply_schedules()
            values = fn(*batch)
            if train:
                self._updates_done += 1
            if guarded:
                finite = bool(values[-1])
                values = values[:-1]
                if not finite:
                    self._skips += 1
                    log.warning("skipped a non-finite step (%d in a row) at update %d",
                                self._skips, self._updates_done)
                    if self._skips > self._values["max_skips"]:
                        return dict(zip(names, (float(v) for v in values))), False
                    continue
                self._skips = 0
            elif not math.isfinite(values[0]):
                return dict(zip(names, (float(v) for v in values))), False
            if sums is None:
                sums = [weight * float(v) for v in values]
            else:
                for i, v in enumerate(values):
                    sums[i] += weight * float(v)
            total += weight
        if sums is None:
            if guarded and self._skips:
                return collections.OrderedDict((n, math.nan) for n in names), True
            raise ValueError(f"dataset {dataset.name!r} gave no batches")
        means = (s / total for s in sums)
        return collections.OrderedDict(zip(names, means)), True

    def evaluate(self, dataset):
        """Compute the loss and monitors on a dataset with the current parameters.

        Parameters
        ----------
        dataset : Dataset or list of arrays
            The data; a list of arrays is evaluated in batches of 32. All
            of it is read once, in order: a Dataset of arrays is evaluated
            over all its samples whatever its ``iteration_size``, and its
            shuffling is left untouched (see :meth:`Dataset.in_order`). A
            Dataset drawing from a callable gives ``iteration_size``
            batches.

        Returns
        -------
        dict
            ``'loss'`` first, then each monitor: their means over the
            batches, weighted by batch size.
        """
        if isinstance(dataset, Dataset):
            dataset = dataset.in_order()
        dataset = self._as_dataset(dataset, "evaluation", ordered=True)
        monitors, _ = self._run_batches(self._compiled_eval(), dataset)
        return monitors

    # ------------------------------------------------------------------
    # parameters

    def set_params(self, targets=None):
        """Set the parameters' values.

        Parameters
        ----------
        targets : list of arrays, ``'best'`` or None
            New values, one array per parameter in order; ``'best'`` or None
            restores the best values seen during validation.

        Raises
        ------
        ValueError
            If the number of arrays or an array's shape does not match.
        """
        if targets is None or (isinstance(targets, str) and targets == "best"):
            targets = self._best_params
        elif isinstance(targets, str):
            raise ValueError(f"set_params takes a list of arrays or 'best', got {targets!r}")
        targets = list(targets)
        if len(targets) != len(self._params):
            raise ValueError(
                f"set_params got {len(targets)} arrays for {len(self._params)} parameters")
        arrays = []
        for name, param, target in zip(self._names, self._params, targets):
            current = param.get_value(borrow=True)
            target = np.asarray(target)
            if target.shape != current.shape:
                raise ValueError(
                    f"parameter {name!r} has shape {current.shape}, got an array of "
                    f"shape {target.shape}")
            arrays.append(target.astype(current.dtype, copy=True))
        for param, array in zip(self._params, arrays):
            param.set_value(array, borrow=True)
        self._fresh_validation = False

    @property
    def params(self):
        """The parameters being optimized."""
        return list(self._params)

    @property
    def inputs(self):
        """The symbolic inputs, in the order data arrays are given."""
        return list(self._inputs)

    # ------------------------------------------------------------------
    # checkpoints

    def _state_key(self, key):
        index, suffix = key
        return suffix if index is None else f"{self._keys[index]}_{suffix}"

    def _state_targets(self):
        """Names and variables of the state used by the current structure's graph."""
        self._updates()
        used = {id(var) for var, _ in self._graphs[self._structure()][0]}
        return {self._state_key(key): var for key, var in self._state.items()
                if id(var) in used}

    @staticmethod
    def _value_state(value):
        if isinstance(value, np.random.Generator):
            return {"generator": value.bit_generator.state}
        return np.array(value, copy=True)

    def state_dict(self, datasets=None):
        """Everything needed to continue training later, as plain values.

        Parameters
        ----------
        datasets : dict of str to Dataset, optional
            Datasets whose shuffling state to include, by name.

        Returns
        -------
        dict
            ``algorithm``; ``params`` and ``state`` (arrays by name; a random
            generator's state as a dict); ``hyperparameters`` (the current
            values; for a schedule, its latest value) and ``schedules`` (the
            state of schedules that have one); ``counters`` (iterations,
            updates); ``early_stopping`` (best loss, its iteration and
            parameters, validations without improvement); ``datasets``.
        """
        declared = self.hyperparameters()
        hypers = {}
        for name, value in self._values.items():
            if callable(value):
                h = declared[name]
                value = self._scheduled_value(h, value)
            hypers[name] = value
        schedules = {name: f.state_dict() for name, f in self._schedules.items()
                     if hasattr(f, "state_dict")}
        return {
            "algorithm": type(self).__name__,
            "params": {k: p.get_value() for k, p in zip(self._keys, self._params)},
            "state": {name: self._value_state(var.get_value())
                      for name, var in self._state_targets().items()},
            "hyperparameters": hypers,
            "schedules": schedules,
            "counters": {"iteration": self._iteration, "updates": self._updates_done,
                         "run_start": self._run_start},
            "early_stopping": {
                "best_loss": self._best_loss, "best_iteration": self._best_iter,
                "fails": self._fails,
                "best_params": dict(zip(self._keys, (np.array(p) for p in self._best_params))),
                "fresh_validation": self._fresh_validation,
                "last_validation": (None if self._last_validation is None
                                    else dict(self._last_validation)),
            },
            "datasets": {name: d.state_dict() for name, d in (datasets or {}).items()},
        }

    @staticmethod
    def _check_arrays(kind, saved, current):
        """Check saved arrays against current ones: same names, shapes, dtypes."""
        if not isinstance(saved, dict):
            raise ValueError(f"state has no {kind} table")
        missing = sorted(set(current) - set(saved))
        extra = sorted(set(saved) - set(current))
        if missing:
            raise ValueError(f"state lacks {kind} {missing[0]!r}")
        if extra:
            raise ValueError(f"state has an unknown {kind} {extra[0]!r} (not in this optimizer)")
        for name, var in current.items():
            value, now = saved[name], var.get_value(borrow=True)
            if isinstance(now, np.random.Generator):
                kind_now = type(now.bit_generator).__name__
                state = value.get("generator") if isinstance(value, dict) else None
                if not isinstance(state, dict) or state.get("bit_generator") != kind_now:
                    raise ValueError(f"{kind} {name!r} must be a {kind_now} generator state")
                continue
            value = np.asarray(value)
            if value.shape != now.shape or value.dtype != now.dtype:
                raise ValueError(
                    f"{kind} {name!r} has shape {now.shape} and dtype {now.dtype}, but the "
                    f"state has shape {value.shape} and dtype {value.dtype}")

    def load_state_dict(self, state, datasets=None):
        """Restore a state made by :meth:`state_dict`.

        Everything is checked before anything changes, so a state that does
        not fit leaves the optimizer as it was. State variables the saved
        run did not use (e.g. a velocity, saved without momentum) are reset
        to their initial values. The next :meth:`iterate`
        call continues where the saved run stopped (its early-stopping
        state and validation schedule included); the saved hyperparameters
        become this optimizer's defaults.

        Parameters
        ----------
        state : dict
            A state from :meth:`state_dict` (or :meth:`load`).
        datasets : dict of str to Dataset, optional
            Datasets whose shuffling state to restore, by name.

        Raises
        ------
        ValueError
            If the state belongs to another algorithm, or a parameter or
            state variable is missing, extra, or of another shape or dtype;
            the message names it.
        """
        if not isinstance(state, dict):
            raise ValueError(f"a state must be a dict from state_dict(), got {type(state).__name__}")
        algo = state.get("algorithm")
        if algo != type(self).__name__:
            raise ValueError(
                f"state is from algorithm {algo!r}, but this optimizer is {type(self).__name__}")
        try:
            hypers = self._check_hypers(state.get("hyperparameters", {}))
        except TypeError as error:
            raise ValueError(f"state does not fit: {error}") from None
        self._check_arrays("parameter", state.get("params"),
                           dict(zip(self._keys, self._params)))
        stopping = state.get("early_stopping", {})
        self._check_arrays("best parameter", stopping.get("best_params"),
                           dict(zip(self._keys, self._params)))
        values = dict(self._defaults)
        values.update(hypers)
        current, self._values = self._values, values
        try:
            targets = self._state_targets()
        finally:
            self._values = current
        self._check_arrays("state variable", state.get("state"), targets)
        datasets = datasets or {}
        saved_sets = state.get("datasets", {})
        for name in datasets:
            if name not in saved_sets:
                raise ValueError(f"state has no shuffling state for dataset {name!r}")
        previous = {name: d.state_dict() for name, d in datasets.items()}
        try:
            for name, d in datasets.items():
                d.load_state_dict(saved_sets[name])
        except ValueError:
            for name, d in datasets.items():
                d.load_state_dict(previous[name])
            raise

        for key, param in zip(self._keys, self._params):
            param.set_value(np.array(state["params"][key], copy=True))
        for name, var in targets.items():
            value = state["state"][name]
            if isinstance(value, dict):
                generator = np.random.Generator(
                    getattr(np.random, value["generator"]["bit_generator"])())
                generator.bit_generator.state = value["generator"]
                var.set_value(generator)
            else:
                var.set_value(np.array(value, copy=True))
        # state the saved run did not use starts afresh, as in a new optimizer
        for key, var in self._state.items():
            if self._state_key(key) not in targets and key in self._initial:
                var.set_value(np.full_like(var.get_value(borrow=True), self._initial[key]))
        self._defaults.update(hypers)
        self._configure({})
        self._schedule_states = dict(state.get("schedules", {}))
        counters = state.get("counters", {})
        self._iteration = int(counters.get("iteration", 0))
        self._updates_done = int(counters.get("updates", 0))
        self._run_start = int(counters.get("run_start", 0))
        self._best_loss = float(stopping.get("best_loss", math.inf))
        self._best_iter = int(stopping.get("best_iteration", 0))
        self._fails = int(stopping.get("fails", 0))
        self._best_params = [np.array(stopping["best_params"][k], copy=True)
                             for k in self._keys]
        self._fresh_validation = bool(stopping.get("fresh_validation", False))
        last = stopping.get("last_validation")
        self._last_validation = None if last is None else collections.OrderedDict(last)
        self._resume_pending = True

    def _restore_schedule_states(self):
        for name, schedule in self._schedules.items():
            saved = self._schedule_states.pop(name, None)
            if saved is not None and hasattr(schedule, "load_state_dict"):
                schedule.load_state_dict(saved)
                self._apply_schedules()

    def save(self, path, datasets=None):
        """Write :meth:`state_dict` to a ``.npz`` file, atomically.

        The file is written next to ``path`` under a temporary name, flushed
        to disk and renamed, so a crash never leaves a half-written
        checkpoint in its place.

        Parameters
        ----------
        path : str or os.PathLike
            The checkpoint file.
        datasets : dict of str to Dataset, optional
            Datasets whose shuffling state to include.
        """
        from . import __version__
        checkpoint.write(path, self.state_dict(datasets), __version__, type(self).__name__)
        log.info("saved checkpoint %s at iteration %d", os.fspath(path), self._iteration)

    def load(self, path, datasets=None):
        """Read a checkpoint written by :meth:`save` and restore it.

        Parameters
        ----------
        path : str or os.PathLike
            The checkpoint file.
        datasets : dict of str to Dataset, optional
            Datasets whose shuffling state to restore.

        Raises
        ------
        ValueError
            If the file is missing, truncated or corrupt
            (:class:`downhill.checkpoint.CheckpointError`), or its state does
            not fit this optimizer; nothing changes then.
        """
        header, state = checkpoint.read(path)
        if header.get("algorithm") != type(self).__name__:
            raise checkpoint.CheckpointError(
                f"{os.fspath(path)} holds a {header.get('algorithm')} state, but this "
                f"optimizer is {type(self).__name__}")
        self.load_state_dict(state, datasets)
        log.info("loaded checkpoint %s (iteration %d)", os.fspath(path), self._iteration)

    # ------------------------------------------------------------------
    # training

    def _log(self, label, iteration, monitors, marker=""):
        if not log.isEnabledFor(logging.INFO):
            return  # formatting the monitors costs more than the update itself
        fields = " ".join(f"{k}={v:.6g}" for k, v in monitors.items())
        log.info("%s %d %s%s", label, iteration, fields, marker)

    def _validate(self, dataset, settings):
        monitors, finite = self._run_batches(self._compiled_eval(), dataset)
        if not finite:
            raise _NonFinite(
                f"non-finite validation loss at iteration {self._iteration}: "
                f"{dict(monitors)}")
        loss = monitors["loss"]
        best = self._best_loss
        marker = ""
        if not math.isfinite(best) or best - loss > abs(best) * settings["min_improvement"]:
            self._best_loss = loss
            self._best_iter = self._iteration
            self._best_params = [p.get_value() for p in self._params]
            self._fails = 0
            marker = " *"
        else:
            self._fails += 1
        self._fresh_validation = True
        self._last_validation = monitors
        for schedule in self._schedules.values():
            observe = getattr(schedule, "observe", None)
            if observe is not None:
                observe(loss)
        self._log("validation", self._iteration, monitors, marker)
        return monitors

    def iterate(self, train=None, valid=None, max_updates=None, *, batch_size=32,
                mode=None, checkpoint=None, checkpoint_every=0, resume=False,
                **hyperparameters):
        """Optimize the loss, yielding monitor values after every iteration.

        One iteration is one pass over ``train`` (its ``iteration_size``
        batches). The parameters are validated on ``valid`` before the first
        iteration and every ``validate_every`` iterations; training stops
        when the validation loss has not improved by more than the relative
        ``min_improvement`` for more than ``patience`` validations, after
        ``max_updates`` iterations, or on Ctrl-C. However the loop ends
        (also when the caller stops iterating or an exception is raised), the
        parameters with the best validation loss are restored.

        The step function is compiled once per structure (which features
        are on) and kept; optimizer state (averages, velocities) carries
        over to the next call, which continues training. Numeric
        hyperparameters live in shared scalars, so a call with a new
        learning rate compiles nothing.

        Parameters
        ----------
        train : Dataset, list of arrays, callable or None
            Training data: one array per input, or a callable returning one
            batch (a list of arrays) per call. None when the loss has no
            inputs.
        valid : Dataset, list of arrays, callable or None
            Validation data (arrays are evaluated in order, without
            shuffling); defaults to ``train``'s data, evaluated in
            order (see :meth:`Dataset.in_order`) so that validating does not
            change the order of the training batches.
        max_updates : int, optional
            Stop after this many iterations of this call.
        batch_size : int, optional
            Batch size used when ``train`` or ``valid`` are lists of arrays.
            Default 32; 0 or less means one batch of everything.
        mode : str or pytensor Mode, optional
            Switch the PyTensor compile mode from now on (see the
            constructor's ``mode``); functions are compiled once per mode and
            kept, so switching back compiles nothing. Default: keep the
            current mode.
        checkpoint : str or path, optional
            Save the whole training state (see :meth:`save`) to this file
            every ``checkpoint_every`` iterations and when the loop ends, as
            it stands before the best parameters are put back, so that
            ``resume=True`` continues exactly where it stopped (the best
            parameters are saved too: after :meth:`load`,
            ``set_params('best')`` puts them in place). A run that ends on a
            non-finite loss writes nothing more, leaving the last good
            checkpoint.
        checkpoint_every : int, optional
            Iterations between checkpoints; 0 (default) saves only at the end.
        resume : bool, optional
            Load ``checkpoint`` first, if the file exists, and continue where
            it stopped: counters, early-stopping state, optimizer state and
            the datasets' shuffling. Loading a state with :meth:`load` or
            :meth:`load_state_dict` before calling has the same effect.
        **hyperparameters
            See :meth:`hyperparameters`; e.g. ``learning_rate=1e-3``,
            ``momentum=0.9``, ``patience=5``. ``learning_rate`` and
            ``momentum`` also take a schedule (see :mod:`downhill.schedules`).

        Yields
        ------
        train_monitors : dict
            Loss and monitors averaged over this iteration's batches.
        valid_monitors : dict
            Loss and monitors of the latest validation.

        Raises
        ------
        TypeError, ValueError
            At the call, for unknown or invalid hyperparameters and bad data.
        FloatingPointError
            During iteration, when the loss becomes NaN or infinite and
            ``on_nonfinite`` is ``'raise'`` (the default), or after more than
            ``max_skips`` skipped steps in a row with ``'skip'``; the best
            parameters are restored first.
        """
        if max_updates is not None and (
                isinstance(max_updates, bool) or not isinstance(max_updates, int)
                or max_updates < 0):
            raise ValueError(f"invalid max_updates: {max_updates!r} (must be an integer >= 0)")
        if isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, int) \
                or checkpoint_every < 0:
            raise ValueError(
                f"invalid checkpoint_every: {checkpoint_every!r} (must be an integer >= 0)")
        if resume and checkpoint is None:
            raise ValueError("resume=True needs checkpoint=PATH, the file to resume from")
        if checkpoint_every and checkpoint is None:
            raise ValueError("checkpoint_every needs checkpoint=PATH, the file to write")
        self._check_mode(mode)
        train = self._as_dataset(train, "train", batch_size)
        if valid is None:
            valid = train.in_order()
            datasets = {"train": train}
        else:
            valid = self._as_dataset(valid, "valid", batch_size, ordered=True)
            datasets = {"train": train, "valid": valid}
        if resume and os.path.exists(checkpoint):
            self._check_hypers(hyperparameters)  # a call that fails loads nothing
            self.load(checkpoint, datasets=datasets)
        settings = self._configure(hyperparameters)
        if mode is not None:
            self._mode = mode
        self._restore_schedule_states()
        log.info("%s: %s", type(self).__name__,
                 " ".join(f"{k}={v}" for k, v in settings.items()))
        return self._loop(train, valid, max_updates, settings, checkpoint,
                          checkpoint_every, datasets)

    def _loop(self, train, valid, max_updates, settings, checkpoint, every, datasets):
        step, names, guarded = self._compiled_step()
        if self._resume_pending:
            self._resume_pending = False
        else:
            self._run_start = self._iteration
            self._best_loss = math.inf
            self._best_iter = self._iteration
            self._best_params = [p.get_value() for p in self._params]
            self._fails = 0
            self._fresh_validation = False
        self._skips = 0
        label = type(self).__name__
        count = 0
        failure = None
        try:
            while True:
                done = max_updates is not None and count >= max_updates
                due = (self._iteration - self._run_start) % settings["validate_every"] == 0
                if (done or due) and not self._fresh_validation:
                    self._validate(valid, settings)
                    if self._fails > settings["patience"]:
                        log.info("patience elapsed after %d validations without improvement",
                                 self._fails)
                        break
                if done:
                    break
                self._fresh_validation = False  # from the first batch on, even if interrupted
                training, finite = self._run_batches(step, train, names, guarded, train=True)
                count += 1
                self._iteration += 1
                if not finite:
                    raise _NonFinite(
                        f"non-finite loss at iteration {self._iteration}: {training}; "
                        f"restored the best parameters (iteration {self._best_iter}). "
                        "Try a smaller learning_rate or gradient clipping "
                        "(max_gradient_norm), or on_nonfinite='skip'.")
                self._log(label, self._iteration, training)
                if every and count % every == 0:
                    self.save(checkpoint, datasets=datasets)
                yield training, dict(self._last_validation)
        except KeyboardInterrupt:
            log.info("interrupted at iteration %d", self._iteration)
        except _NonFinite as error:
            failure = error
        finally:
            try:
                if checkpoint is not None and failure is None:
                    # the state as it stands, so that resuming continues exactly;
                    # the best parameters are in it too (early_stopping)
                    self.save(checkpoint, datasets=datasets)
            finally:
                self._restore_best()
        if failure is not None:
            if settings["on_nonfinite"] == "stop":
                log.error("stopped: %s", failure)
            else:
                raise FloatingPointError(str(failure)) from None

    def _restore_best(self):
        """Put the best validated parameters back, if they are not in place."""
        if self._best_iter == self._iteration and self._fresh_validation:
            return  # the parameters in place are the best ones
        self.set_params("best")
        self._fresh_validation = False

    def minimize(self, *args, **kwargs):
        """Run :meth:`iterate` to the end.

        Parameters
        ----------
        *args, **kwargs
            As for :meth:`iterate`.

        Returns
        -------
        train_monitors : dict or None
            Monitors of the last training iteration (None if none ran).
        valid_monitors : dict
            Monitors of the last validation, which follows the last
            iteration when training ends by ``max_updates``.
        """
        training = None
        for training, _ in self.iterate(*args, **kwargs):
            pass
        last = self._last_validation
        return training, None if last is None else collections.OrderedDict(last)
