"""The optimizer base class: the update graph of one optimization step.

:class:`Optimizer` holds the loss, parameters and inputs (checked by
:mod:`downhill.validation`), the hyperparameter declarations and their
values in shared scalars, the algorithms' state variables, and builds the
update graph: gradient clipping, the algorithm's step (the ``_step`` hook
each algorithm implements), momentum and weight decay. Its training and
checkpoint methods delegate to :mod:`downhill.training` and
:mod:`downhill.state` (whose ``Checkpoints`` base class holds the latter);
the step's graph is assembled by :mod:`downhill.stepgraph`; compiled
functions live in :mod:`downhill.compiled`.
"""

import numpy as np
import pytensor

from . import (accumulate, averaging, clipping, compat, compiled, hyperparams, legacy,
               nonfinite, stepgraph, training, util, validation)
from . import state as checkpoint_state
from .groups import Groups, split_frozen
from .runstate import RunState
from .settings import Settings
from .util import log
from .variables import StateVariables

__all__ = ["Optimizer"]


def __getattr__(name):
    # downhill 0.4 kept the registry and build() here
    if name in ("ALGORITHMS", "build", "register"):
        from . import registry
        return getattr(registry, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class Optimizer(legacy.Compat, checkpoint_state.Checkpoints):
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
    groups : list of dict, or dict, optional
        Parameter groups whose hyperparameters differ from the optimizer's:
        ``[{"params": [w, "b*"], "learning_rate": 0.1, "weight_decay": 0}]``
        (parameters or ``fnmatch`` patterns of their names, an optional
        ``"name"``), or ``{"b*": {"weight_decay": 0}}``; see
        :mod:`downhill.groups` and :attr:`groups`.
    freeze : list of SharedVariable or str, optional
        Parameters (or name patterns) that stay in the loss but are not
        optimized; their gradients are not computed.
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
    #: :data:`downhill.hyperparams.COMMON`, then :data:`downhill.averaging.HYPERS`
    #: and :data:`downhill.accumulate.HYPERS`). Subclasses add theirs in a
    #: ``HYPERS`` tuple of their own; :meth:`hyperparameters` merges them.
    HYPERS = hyperparams.COMMON + averaging.HYPERS + accumulate.HYPERS

    def __init__(self, loss=None, params=None, inputs=None, updates=(), monitors=(),
                 monitor_gradients=False, mode=None, grads=None, groups=None, freeze=None,
                 **hyperparameters):
        self._loss = validation.check_loss(loss, grads)
        self._mode = compat.default_mode() if mode is None else validation.check_mode(mode)
        self._monitor_names, self._monitor_exprs = validation.check_monitors(monitors)
        self._user_updates = validation.check_updates(updates)

        self._params, self._inputs = validation.check_graph(
            loss, params, inputs, self._user_updates, self._monitor_exprs, grads)
        self._params, grads, self._frozen = split_frozen(self._params, grads, freeze)
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
        self._settings = Settings(
            self.hyperparameters(), self._dtype, type(self).__name__, hyperparameters)
        self._configure({})

        self._variables = StateVariables(self._params, self._names, self._keys)
        self._groups = Groups(self, groups)
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
        checks them here before calling this. Schedules are evaluated at the
        optimizer's update count.
        """
        return self._settings.configure(given)

    # the values in force, their defaults, shared scalars and schedules
    _values = property(lambda self: self._settings.values,
                       lambda self, values: setattr(self._settings, "values", values))
    _defaults = property(lambda self: self._settings.defaults)
    _shared = property(lambda self: self._settings.shared)
    _schedules = property(lambda self: self._settings.schedules)

    def _hyper(self, attr, like):
        """What the update graph reads for a hyperparameter, cast to ``like``'s dtype.

        ``attr`` names its shared scalar (``"learning_rate"``, ``"ewma"``):
        the scalar itself for a number, else the expression of a graph
        schedule or the PyTensor value given, with the declared transform
        (see :meth:`downhill.settings.Settings.graph_value`).
        """
        return util.as_float(self._groups.value(attr, like), like.dtype)

    def _structure(self):
        """The hyperparameter choices that change the shape of the graph."""
        return self._settings.structure() + self._groups.structure()

    # -- graphs ------------------------------------------------------

    def _state_like(self, param, suffix, value=0, trailing=()):
        """The state variable ``suffix`` of ``param``, made on first use
        (see :meth:`downhill.variables.StateVariables.like`)."""
        return self._variables.like(param, suffix, value, trailing)

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
        return clipping.clipping_on(self._values) or self._groups.clips()

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

    def _build_updates(self, grads=None):
        """Update pairs of one step from ``grads`` (default: the loss's gradients),
        and the clipped gradients they used (:func:`downhill.stepgraph.build`)."""
        return stepgraph.build(self, grads)

    def _after_step(self, param, new):
        """The parameter's value after the step; a hook, ``new`` by default.

        Called with the value the step, momentum and weight decay make. A
        rule that makes the whole new value itself returns its own
        (Schedule-Free); a wrapper transforms it (Lookahead's synchronisation).

        Returns
        -------
        new : pytensor expression
            The parameter's new value.
        state : list of (SharedVariable, expression)
            New values of state variables the hook keeps.
        """
        return new, []

    def _evaluation_point(self):
        """The variables validation and the best parameters read; a hook.

        Returns
        -------
        list of SharedVariable or None
            One per parameter (its shape and dtype), updated by the step
            graph, or None for the parameters themselves. By default the
            averages with ``validate_on='average'``; see
            :mod:`downhill.averaging` and the internals page.
        """
        return averaging.evaluation_point(self)

    def _linear_term(self, param, name, make):
        """A per-batch quantity linear in the loss besides the gradient (ESGD's
        Hessian-vector product), ``make(grad)`` from the parameter's unclipped
        gradient; accumulated like gradients (:func:`downhill.accumulate.term`)."""
        return accumulate.term(self, param, name, make)

    def _finite_check(self, grads=None):
        """A boolean scalar: the loss and every gradient are finite."""
        return nonfinite.finite_check(self._grads if grads is None else grads, self._loss)

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
        return self._variables.used(self._updates() + accumulate.extra_updates(self))

    def get_updates(self, **hyperparameters):
        """Update expressions for one optimization step.

        Parameters
        ----------
        **hyperparameters
            Hyperparameter values (see :meth:`hyperparameters`); the rest
            take the optimizer's defaults. Numbers are written into shared
            scalars, so they can be changed later without a new graph
            (``opt.learning_rate.set_value(...)``). A numeric hyperparameter
            also takes a graph schedule from :mod:`downhill.schedules`,
            which the step computes itself from the optimizer's update
            counter at every call, or a PyTensor shared variable or float
            scalar expression, which the step reads as it is (set a shared
            variable between calls to change it).

        Returns
        -------
        list of (SharedVariable, expression) pairs
            New values of the parameters and every state variable, the
            advance of the update counter (:attr:`update_count`) and, for
            each graph schedule or PyTensor value, the value the step used,
            into the hyperparameter's shared scalar
            (``opt.learning_rate.get_value()`` reads it back). Give them to ``pytensor.function(...,
            updates=...)`` to get a step function.

        Raises
        ------
        ValueError
            For a value outside its allowed range (an unknown name is
            ignored with a :class:`~downhill.DownhillWarning`), and for a
            Python schedule (a plain function, ``ReduceOnPlateau``): only
            :meth:`iterate` evaluates those, and your function would keep
            their first value. Nothing changes then.
        """
        self._settings.check_graph_use(self._check_hypers(hyperparameters), "get_updates()")
        self._configure(hyperparameters)
        return list(self._updates())

    # -- parameters (set_params: downhill.state.Checkpoints) -----------

    @property
    def update_count(self):
        """The updates done: the counter that every step advances (steps of
        your own functions from :meth:`get_updates` too) and graph schedules
        read; ``schedule(opt.update_count)`` is the value the next step uses."""
        return self._settings.count()

    @property
    def params(self):
        """The parameters being optimized (not the frozen ones)."""
        return list(self._params)

    @property
    def groups(self):
        """The parameter groups (:class:`downhill.groups.Group`), in order."""
        return list(self._groups)

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
            ``momentum=0.9``, ``patience=5``. Every numeric hyperparameter of
            the update (``learning_rate``, ``momentum``, ``weight_decay``,
            half-lives, clipping limits, epsilon) also takes a schedule (see
            :mod:`downhill.schedules`: a graph schedule is computed inside
            the step, a plain function before every update) or a PyTensor
            shared variable or expression of shared variables.
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
            Loss and monitors of the latest validation (the same dict from
            one validation to the next, as downhill 0.4 yielded it).

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
            iteration when training ends by ``max_updates``. (downhill 0.4
            returned the validation yielded with the last iteration, made
            before it; ``for train, valid in opt.iterate(...): pass`` gives
            that.)
        """
        return training.minimize(self, *args, **kwargs)
