"""The optimizer base class: the update graph of one optimization step.

:class:`Optimizer` holds the loss, parameters and inputs (checked by
:mod:`downhill.validation`), the hyperparameter declarations and their
values in shared scalars, the algorithms' state variables, and builds the
update graph: gradient clipping, the algorithm's step (the ``_step`` hook
each algorithm implements), momentum and weight decay. Its training and
checkpoint methods delegate to :mod:`downhill.training` and
:mod:`downhill.state`; compiled functions live in :mod:`downhill.compiled`.
"""

import numpy as np
import pytensor

from . import clipping, compat, compiled, hyperparams, legacy, nonfinite, training, util, validation
from . import state as checkpoint_state
from .runstate import RunState
from .util import log
from .variables import StateVariables

__all__ = ["Optimizer"]


def __getattr__(name):
    # downhill 0.4 kept the registry and build() here
    if name in ("ALGORITHMS", "build", "register"):
        from . import registry
        return getattr(registry, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class Optimizer(legacy.Compat):
    r"""Base class of the optimizers: builds update graphs and runs training.

    A subclass implements one hook, ``_step``, which, given a parameter
    and its (clipped) gradient, returns the step :math:`\delta` and new values
    for the algorithm's state. This class adds gradient clipping, momentum
    and Nesterov momentum, compiles the step function, and runs the training
    loop with validation and early stopping.

    Parameters
    ----------
    loss : pytensor scalar expression, optional
        The loss to minimize; may be None when ``grads`` are given (then
        :meth:`get_updates` works, but training loops need a loss).
    params : list of pytensor SharedVariable, optional
        The variables to adjust. Default: every shared variable of float
        dtype that the loss depends on; needed with ``grads``.
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
        is Numba; see the guide for measured differences.
    grads : list of pytensor expressions, optional
        Gradients to follow, one per parameter, instead of the loss's (e.g.
        PyMC's); ESGD's Hessian-vector products are taken through them.
    **hyperparameters
        Defaults for this optimizer's hyperparameters; each call of
        :meth:`iterate`, :meth:`minimize` or :meth:`get_updates` starts
        from these and applies its own keywords.

    Raises
    ------
    ValueError
        If the loss is not a scalar expression, no parameters are found or
        given, or a parameter, input or monitor is of the wrong kind.

    Warns
    -----
    DownhillWarning
        Once per unknown hyperparameter name, which is ignored (as in downhill
        0.4). Hyperparameters are attributes too: :class:`~downhill.legacy.Compat`.
    """

    #: Hyperparameters common to every algorithm (see
    #: :data:`downhill.hyperparams.COMMON`). Subclasses add theirs in a
    #: ``HYPERS`` tuple of their own; :meth:`hyperparameters` merges them.
    HYPERS = hyperparams.COMMON

    def __init__(self, loss=None, params=None, inputs=None, updates=(), monitors=(),
                 monitor_gradients=False, mode=None, grads=None, **hyperparameters):
        self._loss = validation.check_loss(loss, grads)
        self._mode = compat.default_mode() if mode is None else validation.check_mode(mode)
        self._monitor_names, self._monitor_exprs = validation.check_monitors(monitors)
        self._user_updates = validation.check_updates(updates)

        self._params, self._inputs = validation.check_graph(
            loss, params, inputs, self._user_updates, self._monitor_exprs, grads)
        unnamed = iter(range(len(self._params)))
        self._names = [p.name or f"unnamed{next(unnamed)}" for p in self._params]
        self._dtype = str(np.result_type(*[p.dtype for p in self._params]))
        log.info("%s: inputs %s", type(self).__name__,
                 [v.name or f"<{v.type}>" for v in self._inputs])
        log.info("%s: parameters %s", type(self).__name__,
                 [f"{n} {p.get_value(borrow=True).shape}" for n, p in zip(self._names, self._params)])

        self._grads = validation.check_gradients(  # in the parameters' dtypes
            pytensor.grad(loss, self._params) if grads is None else grads, self._params)
        # unique names: w#0, w#1 for two parameters named w
        self._keys = util.unique_keys(self._names)
        self._monitor_gradients = bool(monitor_gradients)
        if monitor_gradients:
            validation.add_gradient_monitors(
                self._monitor_names, self._monitor_exprs, self._keys, self._grads)

        self._run = RunState(best_params=[p.get_value() for p in self._params])
        self._settings = hyperparams.Settings(
            self.hyperparameters(), self._dtype, type(self).__name__, hyperparameters)
        self._configure({})

        self._variables = StateVariables(self._params, self._names, self._keys)
        self._graphs = {}
        self._functions = compiled.Functions(self)

    # -- hyperparameters ---------------------------------------------

    @classmethod
    def hyperparameters(cls):
        """All hyperparameter declarations of this algorithm.

        Returns
        -------
        dict of str to Hyper
            The common declarations first, then the algorithm's own; a
            subclass's declaration replaces an inherited one of the same name.
        """
        return hyperparams.declarations(cls)

    def _check_hypers(self, given):
        return self._settings.check(given)

    def _configure(self, given):
        """Validate hyperparameters, store them and write the shared scalars.

        A hook: an algorithm whose hyperparameters constrain each other
        checks them here before calling this.
        """
        return self._settings.configure(given, self._run.updates)

    # the values in force, their defaults, shared scalars and schedules
    _values = property(lambda self: self._settings.values,
                       lambda self, values: setattr(self._settings, "values", values))
    _defaults = property(lambda self: self._settings.defaults)
    _shared = property(lambda self: self._settings.shared)
    _schedules = property(lambda self: self._settings.schedules)

    def _hyper(self, attr, like):
        """A hyperparameter's shared scalar, cast to ``like``'s dtype."""
        return util.as_float(self._shared[attr], like.dtype)

    def _structure(self):
        """The hyperparameter choices that change the shape of the graph."""
        return self._settings.structure()

    # -- graphs ------------------------------------------------------

    def _state_like(self, param, suffix, value=0):
        """The state variable ``suffix`` of ``param``, made on first use
        (see :meth:`downhill.variables.StateVariables.like`)."""
        return self._variables.like(param, suffix, value)

    def _global_state(self, suffix, value=0, dtype="int64"):
        """The optimizer-wide state scalar ``suffix``, made on first use.

        For state shared by all parameters, such as Adam's step counter; its
        update belongs in :meth:`_global_updates`, so that it is applied
        once per step however many parameters there are.
        """
        return self._variables.scalar(suffix, value, dtype)

    _state = property(lambda self: self._variables.variables)

    @property
    def state_variables(self):
        """The optimizer's state variables made so far, in creation order."""
        return list(self._state.values())

    def _clipping(self):
        """Whether any gradient clipping is configured."""
        return clipping.clipping_on(self._values)

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
            New values of the algorithm's state variables. By default, runs
            0.4's ``_get_updates_for`` (:func:`~downhill.legacy.step_from_updates_for`).
        """
        return legacy.step_from_updates_for(self, param, grad)

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
        clipped = clipping.clip_gradients(self._grads, self._values, self._shared, self._dtype)
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
            updates = nonfinite.guard(updates, self._finite_check())
        return updates, clipped

    def _finite_check(self):
        """A boolean scalar: the loss and every gradient are finite."""
        return nonfinite.finite_check(self._grads, self._loss)

    def _graph(self):
        """The update pairs and clipped gradients of the current structure, built once."""
        key = self._structure()
        if key not in self._graphs:
            self._graphs[key] = self._build_updates()
        return self._graphs[key]

    def _updates(self):
        return self._graph()[0]

    def _used_state(self):
        """Names and variables of the state used by the current structure's graph."""
        return self._variables.used(self._updates())

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
        ValueError
            For a value outside its allowed range (an unknown name is
            ignored with a :class:`~downhill.DownhillWarning`).
        """
        self._configure(hyperparameters)
        return list(self._updates())

    # -- parameters --------------------------------------------------

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
        checkpoint_state.set_params(self, targets)

    @property
    def params(self):
        """The parameters being optimized."""
        return list(self._params)

    @property
    def inputs(self):
        """The symbolic inputs, in the order data arrays are given."""
        return list(self._inputs)

    # -- training (downhill.training), checkpoints (downhill.state) --

    def evaluate(self, dataset):
        """Compute the loss and monitors on a dataset with the current parameters.

        Parameters
        ----------
        dataset : Dataset, arrays, iterable of batches, callable or None
            As ``train`` of :meth:`iterate`; arrays in batches of 32. All
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
        ``max_updates`` iterations, or on Ctrl-C. However the loop ends, the
        parameters with the best validation loss are restored. State
        (averages, velocities) carries over to the next call, which
        continues training and compiles nothing new for new numbers.

        Parameters
        ----------
        train : Dataset, arrays, iterable of batches, callable or None
            Training data: one array per input (a bare array for one input),
            a list (any iterable) of batches, each a list of arrays, or a
            callable returning one batch per call. None without inputs.
        valid : Dataset, arrays, iterable of batches, callable or None
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
            Also ``progressbar`` (None: on a terminal or in a notebook; see
            :mod:`downhill.progress`); in JAX mode, ``devices`` (an int or
            a list of devices to shard batches over; see :mod:`downhill.jaxmode`);
            with the Numba backend, ``threads`` (the threads that update each
            large parameter; default the cores the process may use, at most
            ``NUMBA_NUM_THREADS``; see :mod:`downhill.parallel`).

        Yields
        ------
        train_monitors : dict
            Loss and monitors averaged over this iteration's batches.
        valid_monitors : dict
            Loss and monitors of the latest validation.

        Raises
        ------
        ValueError
            At the call, for invalid hyperparameters and bad data (unknown
            names warn: :class:`~downhill.DownhillWarning`).
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
            updates); ``progress`` (an unfinished iteration's batches and
            sums); ``early_stopping`` (best loss, its iteration and
            parameters, validations without improvement); ``datasets``.
        """
        return checkpoint_state.state_dict(self, datasets)

    def load_state_dict(self, state, datasets=None):
        """Restore a state made by :meth:`state_dict`, checked first.

        A state that does not fit leaves the optimizer as it was; the next
        :meth:`iterate` continues where the saved run stopped, and the saved
        hyperparameters become this optimizer's defaults (details:
        ``downhill.state.load_state_dict``).

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
        """Write :meth:`state_dict` to a ``.npz`` file, atomically (a crash never
        leaves a half-written checkpoint in its place).

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
