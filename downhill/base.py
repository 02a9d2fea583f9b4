"""The optimizer base class, the algorithm registry and ``build``."""

import collections
import math

import numpy as np
import pytensor
import pytensor.tensor as pt
from pytensor.compile.sharedvalue import SharedVariable
from pytensor.graph.basic import Constant, Variable

from . import util
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


class Optimizer:
    r"""Base class of the optimizers: builds update graphs and runs training.

    A subclass implements one hook, :meth:`_step`, which, given a parameter
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
        its gradient. Default False.
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
              low=0, low_open=True, shared="learning_rate"),
        Hyper("momentum", 0.0, "velocity decay; 0 turns momentum off",
              low=0, high=1, high_open=True, shared="momentum", switch=True),
        Hyper("nesterov", False, "use Nesterov momentum (when momentum > 0)",
              kind=bool, structural=True),
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
        self._mode = mode

        self._monitor_names, self._monitor_exprs = self._check_monitors(monitors)
        self._user_updates = self._check_updates(updates)

        found_inputs, found_params = util.find_inputs_and_params(loss)
        targets = {id(var) for var, _ in self._user_updates}
        found_params = [p for p in found_params if id(p) not in targets]
        self._params = self._check_params(found_params if params is None else params)
        if inputs is None:
            extra, _ = util.find_inputs_and_params(
                *self._monitor_exprs, *(expr for _, expr in self._user_updates))
            known = {id(v) for v in found_inputs}
            inputs = found_inputs + [v for v in extra if id(v) not in known]
        self._inputs = self._check_inputs(inputs)

        unnamed = iter(range(len(self._params)))
        self._names = [p.name or f"unnamed{next(unnamed)}" for p in self._params]
        self._dtype = str(np.result_type(*[p.dtype for p in self._params]))
        log.info("%s: inputs %s", type(self).__name__,
                 [v.name or f"<{v.type}>" for v in self._inputs])
        log.info("%s: parameters %s", type(self).__name__,
                 [f"{n} {p.get_value(borrow=True).shape}" for n, p in zip(self._names, self._params)])

        self._grads = pytensor.grad(loss, self._params)
        if monitor_gradients:
            for name, grad in zip(self._names, self._grads):
                self._monitor_names.append(f"grad({name})")
                self._monitor_exprs.append((grad * grad).sum())

        self._defaults = {name: h.default for name, h in self.hyperparameters().items()}
        self._defaults.update(self._check_hypers(hyperparameters))
        self._values = dict(self._defaults)
        self._shared = {}
        for h in self.hyperparameters().values():
            if h.shared:
                value = np.asarray(h.shared_value(self._values[h.name]), dtype=self._dtype)
                self._shared[h.shared] = pytensor.shared(value, name=h.shared)

        self._state = {}
        self._graphs = {}
        self._functions = {}
        self._f_eval = None
        self._iteration = 0
        self._best_loss = math.inf
        self._best_iter = 0
        self._best_params = [p.get_value() for p in self._params]
        self._fails = 0
        self._last_validation = None

    # ------------------------------------------------------------------
    # construction helpers

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
        return params

    @staticmethod
    def _check_inputs(inputs):
        inputs = list(inputs)
        for i, v in enumerate(inputs):
            if not isinstance(v, Variable) or isinstance(v, (SharedVariable, Constant)):
                raise ValueError(
                    f"input {i} must be a symbolic variable such as pt.matrix('x'), "
                    f"not {type(v).__name__}")
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
        for h in self.hyperparameters().values():
            if h.shared:
                self._shared[h.shared].set_value(
                    np.asarray(h.shared_value(values[h.name]), dtype=self._dtype))
        self._values = values
        return values

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
            if h.structural:
                key.append((h.name, self._values[h.name]))
            elif h.switch:
                key.append((h.name, self._values[h.name] != 0))
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
        return self._state[key]

    @property
    def state_variables(self):
        """The optimizer's state variables made so far, in creation order."""
        return list(self._state.values())

    def _clip(self, grad):
        """Apply the configured gradient clipping to one gradient."""
        if self._values["max_gradient_elem"] > 0:
            limit = self._hyper("max_gradient_elem", grad)
            return pt.clip(grad, -limit, limit)
        if self._values["max_gradient_norm"] > 0:
            limit = self._hyper("max_gradient_norm", grad)
            norm = pt.sqrt((grad * grad).sum())
            return grad * pt.minimum(util.as_float(1, grad.dtype), limit / norm)
        return grad

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

    def _build_updates(self):
        updates = []
        momentum = self._values["momentum"] != 0
        nesterov = momentum and self._values["nesterov"]
        for param, grad in zip(self._params, self._grads):
            delta, state = self._step(param, self._clip(grad))
            updates.extend(state)
            if not momentum:
                updates.append((param, param - delta))
                continue
            mu = self._hyper("momentum", param)
            vel = self._state_like(param, "vel")
            vel_new = mu * vel - delta
            updates.append((vel, vel_new))
            if nesterov:
                updates.append((param, param + mu * vel_new - delta))
            else:
                updates.append((param, param + vel_new))
        return updates

    def _updates(self):
        key = self._structure()
        if key not in self._graphs:
            self._graphs[key] = self._build_updates()
        return self._graphs[key]

    def get_updates(self, **hyperparameters):
        """Update expressions for one optimization step.

        Parameters
        ----------
        **hyperparameters
            Hyperparameter values (see :meth:`hyperparameters`); the rest
            take the optimizer's defaults. Numeric values are written into
            shared scalars, so they can be changed later without a new graph.

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
        """
        key = (self._structure(), self._mode)
        if key not in self._functions:
            updates = self._user_updates + self._updates()
            outputs = [self._loss] + self._monitor_exprs
            name = f"{type(self).__name__}_step"
            log.info("compiling %s step function", type(self).__name__)
            self._functions[key] = pytensor.function(
                self._inputs, outputs, updates=updates, name=name, mode=self._mode)
            self._remember(self._functions[key], outputs, updates, name)
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

    def _as_dataset(self, data, name, batch_size=32):
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
        dataset.conform(self._inputs)
        return dataset

    def _run_batches(self, fn, dataset):
        """Call ``fn`` on every batch of one pass; weighted means of its outputs.

        The hot loop: per batch, one call of the compiled function and a
        running sum of its outputs in Python floats. When the dataset's
        batches already fit the inputs exactly (:attr:`Dataset.trusted`,
        established once by :meth:`Dataset.conform`) the function is called
        without its per-call input checks (PyTensor's ``trust_input``), and
        the batches themselves are views of the dataset's buffer, not copies.
        Data given as PyTensor shared variables (:attr:`Dataset.in_graph`)
        is batched inside the graph: only the batch number crosses over.
        """
        if getattr(dataset, "in_graph", False):
            fn = self._in_graph(fn)
            batches = self._graph_batches(dataset)
        else:
            fn.trust_input = getattr(dataset, "trusted", False)
            batches = ((batch, dataset.batch_weight(batch)) for batch in dataset)
        sums = None
        total = 0
        for batch, weight in batches:
            values = fn(*batch)
            if sums is None:
                sums = [weight * float(v) for v in values]
            else:
                for i, v in enumerate(values):
                    sums[i] += weight * float(v)
            total += weight
            if not math.isfinite(values[0]):
                return dict(zip(self._monitor_names, (float(v) for v in values))), False
        if sums is None:
            raise ValueError(f"dataset {dataset.name!r} gave no batches")
        means = (s / total for s in sums)
        return collections.OrderedDict(zip(self._monitor_names, means)), True

    def evaluate(self, dataset):
        """Compute the loss and monitors on a dataset with the current parameters.

        Parameters
        ----------
        dataset : Dataset or list of arrays
            The data; a list of arrays is evaluated in batches of 32.

        Returns
        -------
        dict
            ``'loss'`` first, then each monitor: their means over the
            dataset's batches, weighted by batch size.
        """
        dataset = self._as_dataset(dataset, "evaluation")
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

    @property
    def params(self):
        """The parameters being optimized."""
        return list(self._params)

    @property
    def inputs(self):
        """The symbolic inputs, in the order data arrays are given."""
        return list(self._inputs)

    # ------------------------------------------------------------------
    # training

    def _log(self, label, iteration, monitors, marker=""):
        fields = " ".join(f"{k}={v:.6g}" for k, v in monitors.items())
        log.info("%s %d %s%s", label, iteration, fields, marker)

    def _validate(self, dataset, settings):
        monitors, finite = self._run_batches(self._compiled_eval(), dataset)
        if not finite:
            raise FloatingPointError(
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
        self._log("validation", self._iteration, monitors, marker)
        return monitors

    def iterate(self, train=None, valid=None, max_updates=None, *, batch_size=32,
                mode=None, **hyperparameters):
        """Optimize the loss, yielding monitor values after every iteration.

        One iteration is one pass over ``train`` (its ``iteration_size``
        batches). The parameters are validated on ``valid`` before the first
        iteration and every ``validate_every`` iterations; training stops
        when the validation loss has not improved by more than the relative
        ``min_improvement`` for more than ``patience`` validations, after
        ``max_updates`` iterations, or on Ctrl-C. However the loop ends
        (also when the caller stops iterating or an exception is raised), the
        parameters with the best validation loss are restored.

        Parameters
        ----------
        train : Dataset, list of arrays, callable or None
            Training data: one array per input, or a callable returning one
            batch (a list of arrays) per call. None when the loss has no
            inputs.
        valid : Dataset, list of arrays, callable or None
            Validation data; defaults to ``train``.
        max_updates : int, optional
            Stop after this many iterations.
        batch_size : int, optional
            Batch size used when ``train`` or ``valid`` are lists of arrays.
            Default 32; 0 or less means one batch of everything.
        mode : str or pytensor Mode, optional
            Switch the PyTensor compile mode from now on (see the
            constructor's ``mode``); functions are compiled once per mode and
            kept, so switching back compiles nothing. Default: keep the
            current mode.
        **hyperparameters
            See :meth:`hyperparameters`; e.g. ``learning_rate=1e-3``,
            ``momentum=0.9``, ``patience=5``.

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
            During iteration, when the loss becomes NaN or infinite; the best
            parameters are restored first.
        """
        if max_updates is not None and (
                isinstance(max_updates, bool) or not isinstance(max_updates, int)
                or max_updates < 0):
            raise ValueError(f"invalid max_updates: {max_updates!r} (must be an integer >= 0)")
        settings = self._configure(hyperparameters)
        if mode is not None:
            self._mode = mode
        train = self._as_dataset(train, "train", batch_size)
        valid = train if valid is None else self._as_dataset(valid, "valid", batch_size)
        log.info("%s: %s", type(self).__name__,
                 " ".join(f"{k}={v}" for k, v in settings.items()))
        return self._loop(train, valid, max_updates, settings)

    def _loop(self, train, valid, max_updates, settings):
        step = self._compiled_step()
        self._best_loss = math.inf
        self._fails = 0
        label = type(self).__name__
        iteration = 0
        validation = None
        try:
            while True:
                done = max_updates is not None and iteration >= max_updates
                if done or iteration % settings["validate_every"] == 0:
                    validation = self._validate(valid, settings)
                    self._last_validation = validation
                    if self._fails > settings["patience"]:
                        log.info("patience elapsed after %d validations without improvement",
                                 self._fails)
                        break
                    if done:
                        break
                training, finite = self._run_batches(step, train)
                iteration += 1
                self._iteration += 1
                if not finite:
                    raise FloatingPointError(
                        f"non-finite loss at iteration {self._iteration}: {training}; "
                        f"restored the best parameters (iteration {self._best_iter}). "
                        "Try a smaller learning_rate or gradient clipping "
                        "(max_gradient_norm).")
                self._log(label, self._iteration, training)
                yield training, dict(validation)
        except KeyboardInterrupt:
            log.info("interrupted at iteration %d", self._iteration)
        finally:
            self.set_params("best")

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
        self._last_validation = None
        for training, _ in self.iterate(*args, **kwargs):
            pass
        return training, self._last_validation
