"""Compiled functions: an optimizer's step and evaluation functions.

A :class:`Functions` object compiles the training step and the evaluation
function of one optimizer and keeps them, one per graph structure (which
features are on) and compile mode, so a new learning rate or a second
``iterate()`` compiles nothing. For data held in PyTensor shared variables
it also compiles each function's in-graph twin, which slices its batch out
of the shared data inside the compiled function. :meth:`Functions.feed`
hands the training loop the function to call and its batches for one pass:
as the dataset gives them, as batch numbers for an in-graph twin, or, in
JAX mode, placed on the device(s) by the :class:`~downhill.jaxmode.Runtime`.
:func:`jit_now` makes the Numba backend's machine code at once rather than
at a function's first call.
"""

import functools
import itertools

import numpy as np
import pytensor
import pytensor.tensor as pt

from . import averaging, jaxmode, parallel
from .util import compile_function, log

__all__ = ["Functions", "jit_now"]


class Functions:
    """The compiled functions of one optimizer, made on first use and kept.

    Parameters
    ----------
    optimizer : Optimizer
        The optimizer whose graphs to compile: its inputs, loss, monitors,
        extra updates, and its update graph for the current structure.
    """

    def __init__(self, optimizer):
        self._opt = optimizer
        self._steps = {}    # (structure, mode) -> (fn, names, guarded)
        self._evals = {}    # mode, or (mode, evaluation point) -> fn
        self._recipes = {}  # id(fn) -> (fn, outputs, updates, name)
        self._twins = {}    # id(fn) -> (fn, in-graph twin)
        self._data = None   # (shared buffers, shared batch size)
        self._runtime = None  # jaxmode.Runtime, made on first use of JAX mode
        self._threads = None  # threads of the parallel update loops (None: the default)
        self._parallel = {}   # id(fn) -> (fn, whether it runs parallel loops)

    def _compile(self, inputs, outputs, updates, name, **kwargs):
        mode = self._opt._mode
        jax = jaxmode.is_jax(mode)
        # Numba: the updates of large variables on every core (downhill.parallel)
        mode = jaxmode.compile_mode(mode) if jax else parallel.mode_with_parallel_updates(mode)
        fn = compile_function(inputs, outputs, updates=updates, name=name, mode=mode, **kwargs)
        if jax:
            fn.trust_input = True  # feed() checks and places the batches itself
        return fn

    @property
    def runtime(self):
        """The :class:`~downhill.jaxmode.Runtime` of JAX mode, made on first use."""
        if self._runtime is None:
            self._runtime = jaxmode.Runtime()
        return self._runtime

    @staticmethod
    def check_devices(devices, mode):
        """Check a ``devices`` argument against the mode it will run in.

        Parameters
        ----------
        devices : int, list of jax Device or None
            See :meth:`downhill.Optimizer.iterate`.
        mode : str, pytensor Mode or None
            The compile mode of the run.

        Returns
        -------
        list of jax Device or None
            The devices, or None to keep the current choice.

        Raises
        ------
        ValueError
            If devices are given but the mode is not JAX, or they are not
            valid (see :func:`downhill.jaxmode.check_devices`).
        """
        if devices is None:
            return None
        if not jaxmode.is_jax(mode):
            raise ValueError(
                f"devices={devices!r} needs mode='JAX' (the mode is {mode!r}); "
                "pass mode='JAX' too")
        return jaxmode.check_devices(devices)

    def use_devices(self, devices):
        """Shard batches over ``devices`` (from :meth:`check_devices`) from now on.

        Parameters
        ----------
        devices : list of jax Device or None
            None keeps the current choice.
        """
        if devices is not None:
            self.runtime.use_devices(devices)

    def use_threads(self, threads):
        """Run the parallel update loops on ``threads`` threads from now on.

        Parameters
        ----------
        threads : int or None
            A number checked by :func:`downhill.parallel.check_threads`; None
            keeps the current choice (initially
            :func:`downhill.parallel.default_threads`).
        """
        if threads is not None:
            self._threads = threads

    @property
    def threads(self):
        """The threads the parallel update loops run on (Numba backend)."""
        if self._threads is None:
            self._threads = parallel.default_threads()
        return parallel.allowed_threads(self._threads)

    def _runs_parallel(self, fn):
        if id(fn) not in self._parallel:
            self._parallel[id(fn)] = (fn, parallel.is_parallel(fn))
        return self._parallel[id(fn)][1]

    def release(self):
        """After a run in JAX mode: parameters, state and generators back on
        the host (numpy arrays); nothing to do in other modes."""
        if self._runtime is not None:
            self._runtime.release()

    def step(self):
        """The step function for the optimizer's current structure and mode.

        Returns
        -------
        fn : pytensor Function
            Takes a batch; returns the loss and monitors (then, when clipping
            and gradient monitors are on, the clipped gradients' squared
            norms; then, with ``on_nonfinite='skip'``, whether the step was
            finite and applied: its loss, gradients and new values).
        names : list of str
            Names of the monitors ``fn`` returns.
        guarded : bool
            Whether ``fn``'s last output is the finiteness flag.
        """
        opt = self._opt
        structure = opt._structure()
        key = (structure, opt._mode)
        if key not in self._steps:
            updates, clipped = opt._graph()
            finite = getattr(updates, "finite", None)  # nonfinite.Guarded, with 'skip'
            updates = opt._user_updates + updates
            names = list(opt._monitor_names)
            outputs = [opt._loss] + opt._monitor_exprs
            if opt._monitor_gradients and opt._clipping():
                for name, grad in zip(opt._keys, clipped):
                    names.append(f"grad({name}) clipped")
                    outputs.append((grad * grad).sum())
            guarded = opt._values["on_nonfinite"] == "skip"
            if guarded:
                # the guard's whole condition: loss, gradients and new values
                outputs.append(finite)
            label = type(opt).__name__
            log.info("compiling %s step function", label)
            fn = self._compile(opt._inputs, outputs, updates, f"{label}_step")
            self._recipes[id(fn)] = (fn, outputs, updates, f"{label}_step")
            self._steps[key] = fn, names, guarded
        return self._steps[key]

    def evaluate(self, point=None):
        """The evaluation function (loss and monitors, no step) for the mode.

        Parameters
        ----------
        point : list of SharedVariable, optional
            Variables read in place of the parameters (the optimizer's
            evaluation point, see :mod:`downhill.averaging`); default the
            parameters.
        """
        opt = self._opt
        key = opt._mode if point is None else (opt._mode, tuple(id(v) for v in point))
        if key not in self._evals:
            outputs, updates = averaging.at_point(
                opt, point, [opt._loss] + opt._monitor_exprs, opt._user_updates)
            log.info("compiling %s evaluation function", type(opt).__name__)
            fn = self._compile(opt._inputs, outputs, updates, "evaluate")
            self._recipes[id(fn)] = (fn, outputs, updates, "evaluate")
            self._evals[key] = fn
        return self._evals[key]

    def make(self, outputs, updates, name):
        """Compile a function of the inputs (a batch) that the loop calls like
        the step, e.g. the micro-batch function of :mod:`downhill.accumulate`.

        Parameters
        ----------
        outputs : list of expressions
            Its outputs.
        updates : list of (SharedVariable, expression)
            Its updates.
        name : str
            Its name.

        Returns
        -------
        pytensor Function
            Compiled in the optimizer's mode; :meth:`in_graph` and
            :meth:`feed` take it.
        """
        fn = self._compile(self._opt._inputs, outputs, updates, name)
        self._recipes[id(fn)] = (fn, outputs, updates, name)
        return fn

    def also(self, fn, dataset):
        """``fn`` ready for a pass over ``dataset`` that calls it beside the
        function :meth:`feed` prepares (the same inputs, the same batches).

        Parameters
        ----------
        fn : pytensor Function
            A function made by :meth:`make`, :meth:`step` or :meth:`evaluate`.
        dataset : Dataset
            The pass's dataset.

        Returns
        -------
        pytensor Function
            ``fn`` or its in-graph twin, its input checks set as
            :meth:`feed` sets them, and in JAX mode its shared values on the
            device(s).
        """
        in_graph = getattr(dataset, "in_graph", False)
        if not jaxmode.is_jax(self._opt._mode):
            if in_graph:
                return self.in_graph(fn)
            fn.trust_input = getattr(dataset, "trusted", False)
            return fn
        runtime, buffers = self.runtime, ()
        if in_graph and not runtime.sharded:
            fn = self.in_graph(fn)
            buffers = [b.container.storage for b in self.data_variables()[0]]
        runtime.prepare(fn, skip=buffers)
        return fn

    def data_variables(self):
        """Shared variables holding the current dataset's arrays, one per input,
        and the shared batch size; made on first use."""
        if self._data is None:
            buffers = []
            for i, var in enumerate(self._opt._inputs):
                shape = tuple(var.type.shape)
                empty = np.zeros((0,) + tuple(s or 0 for s in shape[1:]), dtype=var.dtype)
                buffers.append(pytensor.shared(empty, name=f"{var.name or f'input{i}'}_data",
                                               shape=(None,) + shape[1:]))
            size = pytensor.shared(np.int64(1), name="batch_size")
            self._data = (buffers, size)
        return self._data

    def in_graph(self, fn):
        """``fn``'s twin that slices its batch out of shared data in the graph.

        Its only input is the batch number (in JAX mode: the batch's sample
        positions, since JAX slices only by static sizes and the last batch
        of a pass can be shorter); the data, the batch size and the slicing
        stay inside the compiled function.

        Parameters
        ----------
        fn : pytensor Function
            A function made by :meth:`step` or :meth:`evaluate`.

        Returns
        -------
        pytensor Function
            The twin, compiled on first use and kept.
        """
        if id(fn) not in self._twins:
            _, outputs, updates, name = self._recipes[id(fn)]
            buffers, size = self.data_variables()
            if isinstance(fn.maker.linker, jaxmode.Linker):
                number = pt.vector("positions", dtype="int64")
                givens = [(var, buffer[number])
                          for var, buffer in zip(self._opt._inputs, buffers)]
            else:
                number = pt.scalar("batch", dtype="int64")
                start = number * size
                givens = [(var, buffer[start:start + size])
                          for var, buffer in zip(self._opt._inputs, buffers)]
            log.info("compiling %s %s function with in-graph batches",
                     type(self._opt).__name__, name)
            twin = self._compile([number], outputs, updates, f"{name}_in_graph",
                                 givens=givens)
            twin.trust_input = True
            self._twins[id(fn)] = (fn, twin)
        return self._twins[id(fn)][1]

    def feed(self, fn, dataset, batches=None):
        """The function to call and its batches for one pass over ``dataset``.

        Parameters
        ----------
        fn : pytensor Function
            A function made by :meth:`step` or :meth:`evaluate`.
        dataset : Dataset
            The batches, conformed to the inputs.
        batches : iterator of lists of arrays, optional
            The pass's batches as arguments of ``fn`` (the training loop
            gives them converted, see ``Dataset.as_arguments``); default
            iterating ``dataset``. Unused for a dataset batched in the graph.

        Returns
        -------
        fn : pytensor Function
            ``fn``, or its in-graph twin for a shared-variable dataset.
        batches : iterator of (tuple, int)
            The arguments of each call and the batch's number of samples.

        Notes
        -----
        A dataset whose batches fit the inputs exactly (``Dataset.trusted``)
        is passed without PyTensor's per-call input checks. In JAX mode the
        function's shared values are put on the device(s) first, the batches
        placed there (sharded with ``devices``), and after the pass the
        random generators' states are brought back into their variables.
        """
        trusted = getattr(dataset, "trusted", False)
        batches = iter(dataset) if batches is None else batches
        if not jaxmode.is_jax(self._opt._mode):
            if getattr(dataset, "in_graph", False):
                fn, batches = self.in_graph(fn), self.graph_batches(dataset)
                if self._runs_parallel(fn):
                    batches = parallel.on_threads(self.threads, batches)
                return fn, batches
            return self.feeder(fn, dataset)(batches)
        runtime, buffers = self.runtime, ()
        if getattr(dataset, "in_graph", False) and not runtime.sharded:
            fn = self.in_graph(fn)
            batches = self.graph_batches(dataset, runtime.put_data)
            buffers = [b.container.storage for b in self.data_variables()[0]]
        else:
            batches = self._placed_batches(fn, dataset, trusted, batches)
        runtime.prepare(fn, skip=buffers)
        return fn, self._then_pull(batches)

    def feeder(self, fn, dataset):
        """:meth:`feed` for many passes of one function over one dataset, set up once.

        Parameters
        ----------
        fn : pytensor Function
            A function made by :meth:`step` or :meth:`evaluate`.
        dataset : Dataset
            The batches, conformed to the inputs.

        Returns
        -------
        callable
            ``feed(batches)``, returning what :meth:`feed` returns for one
            pass. The training loop makes one per run: outside JAX mode and
            in-graph batches, a pass then costs no more than its batches.
        """
        if jaxmode.is_jax(self._opt._mode) or getattr(dataset, "in_graph", False):
            return functools.partial(self.feed, fn, dataset)
        trusted = getattr(dataset, "trusted", False)
        if getattr(dataset, "internal", False):  # no inputs: empty batches of weight 1
            def feed(batches):
                fn.trust_input = trusted
                return fn, zip(batches, itertools.repeat(1))
        else:
            weight = dataset.batch_weight

            def feed(batches):
                fn.trust_input = trusted
                return fn, ((batch, weight(batch)) for batch in batches)
        if self._runs_parallel(fn):  # large updates on Numba's threads (downhill.parallel)
            threads, serial = self.threads, feed

            def feed(batches):
                fn, pairs = serial(batches)
                return fn, parallel.on_threads(threads, pairs)
        return feed

    def _placed_batches(self, fn, dataset, trusted, batches):
        runtime, axis = self.runtime, getattr(dataset, "axis", 0)
        containers = fn.input_storage
        for batch in batches:
            weight = dataset.batch_weight(batch)
            if not trusted:  # PyTensor's own per-call checks
                batch = [c.type.filter(a, strict=c.strict, allow_downcast=c.allow_downcast)
                         for c, a in zip(containers, batch)]
            yield runtime.place_batch(batch, axis), weight

    def _then_pull(self, batches):
        try:
            yield from batches
        finally:
            self._runtime.pull()

    def graph_batches(self, dataset, put=None):
        """Batches of a shared-variable dataset for the twins of :meth:`in_graph`.

        Parameters
        ----------
        dataset : Dataset
            A dataset whose ``in_graph`` is true.
        put : callable, optional
            JAX mode: ``put(storage, array)`` stores a buffer in a shared
            variable's storage on the device, again after every reshuffle,
            and the batches are given as sample positions. Default: the
            buffers are set with ``set_value`` and the batches given as
            batch numbers.

        Yields
        ------
        batch : tuple
            ``(number,)`` or ``(positions,)``, the arguments of the twin.
        weight : int
            The batch's number of samples.
        """
        buffers, size = self.data_variables()
        size.set_value(np.int64(dataset.batch_size))
        current = None
        positions = {}
        for number, weight, arrays in dataset.batch_numbers():
            # a pass that shuffles samples permutes into the same arrays: a
            # device copy must follow (shuffled batches leave the arrays alone)
            moved = put is not None and getattr(dataset, "shuffle_samples", True)
            now = (arrays, getattr(dataset, "_perm", None) if moved else None)
            if current is None or now[0] is not current[0] or now[1] is not current[1]:
                for shared, array in zip(buffers, arrays):
                    if put is None:
                        shared.set_value(array, borrow=True)
                    else:
                        put(shared.container.storage, array)
                current = now
            if put is None:
                yield (number,), weight
                continue
            key = (int(number), weight)
            if key not in positions:
                start = key[0] * dataset.batch_size
                positions[key] = np.arange(start, start + weight, dtype=np.int64)
            yield (positions[key],), weight


def jit_now(fn):
    """Make a Numba-backed function's machine code now, not at its first call.

    PyTensor's Numba backend (the default mode) turns a compiled function
    into machine code when it is first called, which takes most of a first
    run's wait (seconds to tens of seconds, less once Numba's disk cache
    has it). This does it at once, for the argument types the training loop
    passes: C-contiguous arrays of the inputs' dtypes and numbers of
    dimensions, and the shared variables' current values. Other backends,
    or anything unexpected, are left to the first call.

    Parameters
    ----------
    fn : pytensor Function
        A compiled function.

    Returns
    -------
    bool
        Whether machine code was made (or found in Numba's cache).
    """
    vm = getattr(fn, "vm", None)
    jit = getattr(vm, "jit_fn", None)
    if jit is None or not type(jit).__module__.startswith("numba") \
            or not hasattr(jit, "compile"):
        return False
    if getattr(jit, "overloads", None):
        # made before (by an earlier run, or its first call): typing the
        # arguments again costs more than a short run's updates
        return True
    try:
        import numba
        types = []
        for var, cell in zip(fn.maker.fgraph.inputs, vm.inputs, strict=True):
            value = cell[0]
            if value is None:  # an explicit input: an empty array like its batches
                value = np.empty((0,) * var.type.ndim, dtype=var.type.dtype)
            types.append(numba.typeof(value))
        # the thunk calls it as f(*inputs): Numba sees one tuple of them
        jit.compile((numba.types.BaseTuple.from_types(types),))
    except Exception as error:  # the first call compiles instead
        log.debug("could not compile %s ahead of its first call: %s", fn.name, error)
        return False
    return True
