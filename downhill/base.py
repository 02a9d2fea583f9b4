"""The optimizer base class: the update graph of one optimization step.

:class:`Optimizer` holds the loss, parameters and inputs (checked by
:mod:`downhill.validation`), the hyperparameter declarations and their
values in shared scalars, the algorithms' state variables, and builds the
update graph: gradient clipping, the algorithm's step (the ``_step`` hook
each algorithm implements), momentum and weight decay. Its training and
checkpoint methods delegate to :mod:`downhill.training` and
:mod:`downhill.state`; compiled functions live in :mod:`downhill.compiled`.
"""

import functools

import numpy as np
import pytensor
import pytensor.tensor as pt

from . import compiled, training, util, validation
from . import state as checkpoint_state
from .runstate import RunState
from .util import Hyper, log

__all__ = ["Optimizer"]


def __getattr__(name):
    # downhill 0.4 kept the registry and build() here
    if name in ("ALGORITHMS", "build", "register"):
        from . import registry
        return getattr(registry, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
        self._loss = validation.check_loss(loss)
        self._mode = validation.check_mode(mode)
        self._monitor_names, self._monitor_exprs = validation.check_monitors(monitors)
        self._user_updates = validation.check_updates(updates)

        found_inputs, found_params = util.find_inputs_and_params(loss)
        targets = {id(var) for var, _ in self._user_updates}
        found_params = [p for p in found_params if id(p) not in targets]
        self._params = validation.check_params(
            found_params if params is None else params, self._user_updates)
        if inputs is None:
            extra, _ = util.find_inputs_and_params(
                *self._monitor_exprs, *(expr for _, expr in self._user_updates))
            known = {id(v) for v in found_inputs}
            inputs = found_inputs + [v for v in extra if id(v) not in known]
        self._inputs = validation.check_inputs(
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
        self._keys = util.unique_keys(self._names)
        self._monitor_gradients = bool(monitor_gradients)
        if monitor_gradients:
            for key, grad in zip(self._keys, self._grads):
                if f"grad({key})" in self._monitor_names:
                    raise ValueError(
                        f"monitor name 'grad({key})' is used twice (monitor_gradients "
                        "makes it)")
                self._monitor_names.append(f"grad({key})")
                self._monitor_exprs.append((grad * grad).sum())

        self._run = RunState(best_params=[p.get_value() for p in self._params])
        self._defaults = {name: h.default for name, h in self.hyperparameters().items()}
        self._defaults.update(self._check_hypers(hyperparameters))
        self._shared = {
            h.shared: pytensor.shared(np.asarray(0, dtype=self._dtype), name=h.shared)
            for h in self.hyperparameters().values() if h.shared}
        self._configure({})

        self._state = {}
        self._initial = {}  # the value each state variable was made with
        self._graphs = {}
        self._functions = compiled.Functions(self)
        self._schedule_states = {}

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
        return validation.check_hypers(self.hyperparameters(), given, type(self).__name__)

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
            value = schedule(self._run.updates)
        except Exception as error:
            raise ValueError(
                f"the schedule given for {hyper.name} failed at update "
                f"{self._run.updates}: {error!r}") from error
        try:
            value = float(value)
            if value == hyper.low and hyper.low_open:
                return value  # e.g. a learning rate warming up from 0
            return hyper.validate(value)
        except (TypeError, ValueError):
            raise ValueError(
                f"the schedule given for {hyper.name} returned {value!r} at update "
                f"{self._run.updates} (must be {hyper._number_range()})") from None

    def _apply_schedules(self):
        """Write every schedule's current value into its shared scalar."""
        declared = self.hyperparameters()
        for name, schedule in self._schedules.items():
            h = declared[name]
            value = self._scheduled_value(h, schedule)
            self._shared[h.shared].set_value(
                np.asarray(h.shared_value(value), dtype=self._dtype))

    def _restore_schedule_states(self):
        """Give schedules the state a loaded checkpoint saved for them."""
        for name, schedule in self._schedules.items():
            saved = self._schedule_states.pop(name, None)
            if saved is not None and hasattr(schedule, "load_state_dict"):
                schedule.load_state_dict(saved)
                self._apply_schedules()

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
            norm = pt.sqrt((grad * grad).sum())
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
            total = pt.sqrt(pt.add(*[util.as_float((g * g).sum(), dtype) for g in grads]))
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
        checks = [pt.isfinite(self._loss)]
        # every element, not the sum: finite elements can sum to inf
        checks.extend(pt.all(pt.isfinite(g)) for g in self._grads)
        return functools.reduce(pt.and_, checks)

    def _guard(self, updates):
        """Keep every variable's old value when the step is not finite."""
        ok = self._finite_check()
        return [(var, pt.switch(ok, new, var) if isinstance(var.type, pt.TensorType) else new)
                for var, new in updates]

    def _graph(self):
        """The update pairs and clipped gradients of the current structure, built once."""
        key = self._structure()
        if key not in self._graphs:
            self._graphs[key] = self._build_updates()
        return self._graphs[key]

    def _updates(self):
        return self._graph()[0]

    def _state_key(self, key):
        """The name of a state variable in checkpoints: ``w_g2_ewma``, ``t``."""
        index, suffix = key
        return suffix if index is None else f"{self._keys[index]}_{suffix}"

    def _used_state(self):
        """Names and variables of the state used by the current structure's graph."""
        used = {id(var) for var, _ in self._updates()}
        return {self._state_key(key): var for key, var in self._state.items()
                if id(var) in used}

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
            targets = self._run.best_params
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
        self._run.fresh_validation = False

    @property
    def params(self):
        """The parameters being optimized."""
        return list(self._params)

    @property
    def inputs(self):
        """The symbolic inputs, in the order data arrays are given."""
        return list(self._inputs)

    # ------------------------------------------------------------------
    # training (downhill.training) and checkpoints (downhill.state)

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
        return training.evaluate(self, dataset)

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
        return training.iterate(
            self, train, valid, max_updates, batch_size=batch_size, mode=mode,
            checkpoint=checkpoint, checkpoint_every=checkpoint_every, resume=resume,
            **hyperparameters)

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
        return training.minimize(self, *args, **kwargs)

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
        return checkpoint_state.state_dict(self, datasets)

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
        checkpoint_state.load_state_dict(self, state, datasets)

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
        checkpoint_state.save(self, path, datasets)

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
        checkpoint_state.load(self, path, datasets)
