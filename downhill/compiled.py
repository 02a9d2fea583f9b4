"""Compiled functions: an optimizer's step and evaluation functions.

A :class:`Functions` object compiles the training step and the evaluation
function of one optimizer and keeps them, one per graph structure (which
features are on) and compile mode, so a new learning rate or a second
``iterate()`` compiles nothing. For data held in PyTensor shared variables
it also compiles each function's in-graph twin, which slices its batch out
of the shared data inside the compiled function. :func:`jit_now` makes the
Numba backend's machine code at once rather than at a function's first call.
"""

import numpy as np
import pytensor
import pytensor.tensor as pt

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
        self._evals = {}    # mode -> fn
        self._recipes = {}  # id(fn) -> (fn, outputs, updates, name)
        self._twins = {}    # id(fn) -> (fn, in-graph twin)
        self._data = None   # (shared buffers, shared batch size)

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
            fn = compile_function(opt._inputs, outputs, updates=updates,
                                   name=f"{label}_step", mode=opt._mode)
            self._recipes[id(fn)] = (fn, outputs, updates, f"{label}_step")
            self._steps[key] = fn, names, guarded
        return self._steps[key]

    def evaluate(self):
        """The evaluation function (loss and monitors, no step) for the mode."""
        opt = self._opt
        if opt._mode not in self._evals:
            outputs = [opt._loss] + opt._monitor_exprs
            log.info("compiling %s evaluation function", type(opt).__name__)
            fn = compile_function(opt._inputs, outputs, updates=opt._user_updates,
                                   name="evaluate", mode=opt._mode)
            self._recipes[id(fn)] = (fn, outputs, opt._user_updates, "evaluate")
            self._evals[opt._mode] = fn
        return self._evals[opt._mode]

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

        Its only input is the batch number; the data, the batch size and the
        slicing stay inside the compiled function.

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
            number = pt.scalar("batch", dtype="int64")
            start = number * size
            givens = [(var, buffer[start:start + size])
                      for var, buffer in zip(self._opt._inputs, buffers)]
            log.info("compiling %s %s function with in-graph batches",
                     type(self._opt).__name__, name)
            twin = compile_function([number], outputs, updates=updates, givens=givens,
                                     name=f"{name}_in_graph", mode=self._opt._mode)
            twin.trust_input = True
            self._twins[id(fn)] = (fn, twin)
        return self._twins[id(fn)][1]

    def graph_batches(self, dataset):
        """Batches of a shared-variable dataset as batch numbers for :meth:`in_graph`.

        Parameters
        ----------
        dataset : Dataset
            A dataset whose ``in_graph`` is true.

        Yields
        ------
        batch : tuple
            ``(number,)``, the arguments of the twin.
        weight : int
            The batch's number of samples.
        """
        buffers, size = self.data_variables()
        size.set_value(np.int64(dataset.batch_size))
        current = None
        for number, weight, arrays in dataset.batch_numbers():
            if arrays is not current:  # a new buffer: point the graph at it
                for shared, array in zip(buffers, arrays):
                    shared.set_value(array, borrow=True)
                current = arrays
            yield (number,), weight


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
