"""Mini-batches of data for training and validation."""

import copy
import numbers

import numpy as np

from .util import log

__all__ = ["Dataset"]


def _to_array(x, index):
    """Turn one accepted input into an array-like the batcher can slice."""
    try:
        import scipy.sparse as sp
    except ImportError:  # pragma: no cover - scipy comes with pytensor
        sp = None
    if sp is not None and sp.issparse(x):
        if x.format not in ("csr", "csc"):
            raise ValueError(
                f"input {index}: sparse matrices must be CSR or CSC, got {x.format.upper()}; "
                "convert with .tocsr()")
        return x
    if hasattr(x, "get_value") and hasattr(x, "type"):  # a pytensor shared variable
        return np.asarray(x.get_value(borrow=True))
    if hasattr(x, "to_numpy") and type(x).__module__.startswith("pandas"):
        return x.to_numpy()
    if isinstance(x, np.ndarray):
        return x
    raise ValueError(
        f"input {index} has unsupported type {type(x).__name__}; accepted: numpy arrays, "
        "pandas Series/DataFrame, scipy.sparse CSR/CSC, pytensor shared variables")


class Dataset:
    """Batches of data, reshuffled on every pass.

    Parameters
    ----------
    inputs : list of arrays, or callable
        One array per symbolic input of the loss (numpy arrays, pandas
        Series or DataFrames, scipy.sparse CSR/CSC matrices, pytensor shared
        variables), all of the same length along ``axis``. Or a callable
        that returns one batch (a list of arrays) per call.
    name : str, optional
        A name for log messages.
    batch_size : int, optional
        Samples per batch (default 32); 0 or less means one batch holding
        everything.
    iteration_size : int, optional
        Batches per iteration. Default: one full pass over the arrays, or
        ``len(inputs)`` for a callable that has a length, else 100.
    axis : int, optional
        The axis along which samples are stacked. Default 0. A negative
        axis counts from the last axis of each input, as in numpy.
    rng : int or numpy.random.Generator, optional
        Seed or generator for the shuffling.

    Raises
    ------
    ValueError
        If the arrays differ in length along ``axis``, an input is of an
        unsupported type or empty, or ``iteration_size`` is not positive.

    Notes
    -----
    At the start of every pass the samples are permuted once into a buffer
    the dataset owns (your arrays are never changed), and batches are slices
    of that buffer: along axis 0 of a C-contiguous array they are views, so
    nothing is copied per batch. With one batch covering everything, the
    arrays are passed as they are. When every input is a PyTensor shared
    variable (and ``axis`` is 0), the optimizer slices the batches inside its
    compiled graph instead, and only a batch number crosses from Python (see
    :meth:`batch_numbers`); your shared variables are read once and never
    changed.


    .. warning::
        The next pass permutes into the same buffer, so a batch's contents
        change once the pass it came from is over. Use each batch before
        asking for the next pass's (the training loop does), or copy it:
        ``list(dataset)`` over more than one pass does not keep the data.
    """

    def __init__(self, inputs, name=None, batch_size=32, iteration_size=None,
                 axis=0, rng=None):
        self.name = name or "dataset"
        self.axis = axis
        if isinstance(rng, (numbers.Integral, type(None))) and not isinstance(rng, bool):
            rng = np.random.default_rng(rng)
        if not isinstance(rng, np.random.Generator):
            raise ValueError(f"rng must be an int seed or numpy.random.Generator, got {rng!r}")
        self.rng = rng
        if iteration_size is not None and (
                not isinstance(iteration_size, numbers.Integral) or iteration_size <= 0):
            raise ValueError(f"invalid iteration_size: {iteration_size!r} (must be an integer > 0)")

        if callable(inputs):
            self._callable = inputs
            self._arrays = None
            if iteration_size is None:
                try:
                    iteration_size = len(inputs)
                except TypeError:
                    iteration_size = 100
            self.iteration_size = iteration_size
            self._converters = None
            self.trusted = self.in_graph = False
            return

        self._callable = None
        if not isinstance(inputs, (list, tuple)):
            raise ValueError(
                f"dataset inputs must be a list of arrays or a callable, got {type(inputs).__name__}")
        if not inputs:
            raise ValueError("dataset inputs are empty: give one array per input of the loss")
        arrays = [_to_array(x, i) for i, x in enumerate(inputs)]
        lengths = []
        for i, a in enumerate(arrays):
            if not -a.ndim <= axis < a.ndim:
                raise ValueError(
                    f"input {i} has shape {a.shape}: it has no axis {axis} to batch along")
            if a.shape[axis] == 0:
                raise ValueError(f"input {i} is empty (shape {a.shape})")
            lengths.append(a.shape[axis])
        if len(set(lengths)) > 1:
            detail = ", ".join(f"input {i}: {n}" for i, n in enumerate(lengths))
            raise ValueError(
                f"inputs differ in length along axis {axis} ({detail}); every input needs "
                "one entry per sample")
        self._arrays = arrays
        self._from_shared = all(hasattr(x, "get_value") for x in inputs)
        self._count = lengths[0]
        if batch_size is None or batch_size <= 0 or batch_size >= self._count:
            batch_size = self._count
        self.batch_size = int(batch_size)
        self._starts = list(range(0, self._count, self.batch_size))
        self.iteration_size = iteration_size or len(self._starts)
        self._buffers = None
        self._perm = None
        self._shuffles = True
        self._position = len(self._starts)  # a pass starts on first use
        #: Set by :meth:`conform`: every batch fits the inputs exactly, so a
        #: compiled function may skip its input checks (``trust_input``).
        self.trusted = False
        #: Set by :meth:`conform`: the inputs were PyTensor shared variables
        #: and fit exactly, so batches can be sliced inside the compiled graph
        #: (see :meth:`batch_numbers`).
        self.in_graph = False

    def __repr__(self):
        return f"<Dataset {self.name!r}: {self.iteration_size} batches per iteration>"

    @property
    def is_callable(self):
        """Whether batches come from a callable."""
        return self._callable is not None

    def conform(self, variables):
        """Check the data against the symbolic inputs and cast it once.

        Parameters
        ----------
        variables : list of pytensor Variable
            The loss's inputs.

        Raises
        ------
        ValueError
            If the number of arrays, an array's number of dimensions or its
            dtype does not fit the input.

        Notes
        -----
        Afterwards ``trusted`` tells whether every batch is already a
        numpy array of the input's dtype, number of dimensions and fixed
        sizes; the optimizer then calls its compiled functions without their
        per-call input checks. Casting happens here, once, never per batch.
        ``in_graph`` tells whether, moreover, the data came as PyTensor
        shared variables batched along axis 0: the optimizer then slices the
        batches inside its compiled graph and passes only a batch number.
        """
        self.trusted = self.in_graph = False
        if self._callable is not None:
            self._converters = [str(v.dtype) for v in variables]
            # with no inputs there is nothing a compiled function could check
            self.trusted = not variables
            return
        if len(self._arrays) != len(variables):
            raise ValueError(
                f"{self.name} data has {len(self._arrays)} arrays but the loss has "
                f"{len(variables)} inputs {[v.name for v in variables]}")
        changed = False
        for i, (a, v) in enumerate(zip(self._arrays, variables)):
            ndim = getattr(v.type, "ndim", None)
            if ndim is not None and a.ndim != ndim:
                raise ValueError(
                    f"{self.name} input {i} ({v.name}) must be {ndim}-d, got shape {a.shape}")
            dtype = np.dtype(v.dtype)
            if a.dtype != dtype:
                if not np.can_cast(a.dtype, dtype, casting="same_kind"):
                    raise ValueError(
                        f"{self.name} input {i} ({v.name}) has dtype {a.dtype}, which "
                        f"cannot become {dtype}")
                log.debug("%s: casting input %d from %s to %s", self.name, i, a.dtype, dtype)
                self._arrays[i] = a.astype(dtype)
                changed = True
        if changed:
            # rebuild the current pass from the cast arrays, so the pass goes on
            if self._perm is not None:
                self._buffers = None
                self._permute(self._perm)
            elif self._buffers is not None:
                self._buffers = self._arrays
        self.trusted = all(self._fits(a, v) for a, v in zip(self._arrays, variables))
        self.in_graph = self.trusted and self._from_shared and self.axis == 0

    def state_dict(self):
        """The shuffling state: enough to continue the same sequence of batches.

        Returns
        -------
        dict
            ``rng`` (the generator's state), and for arrays ``position``
            (batches of the current pass already given) and ``perm`` (the
            current pass's permutation, or None before the first pass or
            without shuffling). A callable's own state is not included.
        """
        state = {"rng": self.rng.bit_generator.state}
        if self._callable is None:
            state["position"] = self._position
            state["perm"] = None if self._perm is None else self._perm.copy()
        return state

    def load_state_dict(self, state):
        """Restore a state from :meth:`state_dict`.

        Parameters
        ----------
        state : dict
            A state from :meth:`state_dict` of a dataset with the same
            samples and batch size.

        Raises
        ------
        ValueError
            If the state does not fit this dataset (another number of
            samples or batches, or another kind of random generator).
        """
        rng = state.get("rng")
        kind = type(self.rng.bit_generator).__name__
        if not isinstance(rng, dict) or rng.get("bit_generator") != kind:
            raise ValueError(
                f"dataset {self.name!r}: saved random state is not a {kind} state")
        if self._callable is None:
            position, perm = state.get("position"), state.get("perm")
            if not isinstance(position, int) or not 0 <= position <= len(self._starts):
                raise ValueError(
                    f"dataset {self.name!r}: saved position {position!r} does not fit "
                    f"its {len(self._starts)} batches per pass")
            if perm is not None:
                perm = np.asarray(perm)
                if perm.shape != (self._count,) or not np.array_equal(
                        np.sort(perm), np.arange(self._count)):
                    raise ValueError(
                        f"dataset {self.name!r}: saved permutation does not fit its "
                        f"{self._count} samples")
        self.rng.bit_generator.state = rng
        if self._callable is None:
            if perm is not None:
                self._permute(perm)
            self._position = position if perm is not None else len(self._starts)

    def in_order(self):
        """The same data in batches without shuffling, one full pass per iteration.

        Used to validate on the training data without disturbing the
        training batches' order; the arrays are shared, not copied. A
        dataset drawing from a callable is returned as it is.

        Returns
        -------
        Dataset
        """
        if self._callable is not None:
            return self
        view = copy.copy(self)
        view._shuffles = False
        view._buffers = self._arrays
        view._perm = None
        view._position = len(self._starts)
        view.iteration_size = len(self._starts)
        return view

    def _fits(self, array, variable):
        """Whether every batch of ``array`` is a valid value for ``variable`` as it is.

        True for a numpy array of the variable's dtype and number of
        dimensions whose fixed sizes (PyTensor static shape) match on every
        axis but the batch axis, which must be free. Such batches can be
        passed to a compiled function without its per-call input checks.
        """
        shape = getattr(variable.type, "shape", None)
        if (not isinstance(array, np.ndarray) or shape is None
                or array.dtype != np.dtype(variable.dtype) or array.ndim != len(shape)
                or not array.flags.aligned):
            return False
        return all(s is None if axis == self.axis % array.ndim else s in (None, n)
                   for axis, (s, n) in enumerate(zip(shape, array.shape)))

    def _shuffle(self):
        """Start a new pass: permute the samples into the owned buffers."""
        self._position = 0
        if len(self._starts) == 1 or not self._shuffles:
            self._buffers = self._arrays
            return
        self._permute(self.rng.permutation(self._count))

    def _permute(self, perm):
        """Fill the owned buffers with the samples in the order ``perm``."""
        self._perm = perm
        if self._buffers is None or self._buffers is self._arrays:
            self._buffers = [None] * len(self._arrays)
        for i, a in enumerate(self._arrays):
            if isinstance(a, np.ndarray):
                out = self._buffers[i]
                if out is None:
                    out = self._buffers[i] = np.empty_like(
                        a, order="C" if self.axis % a.ndim == 0 else "K")
                np.take(a, perm, axis=self.axis, out=out)
            elif self.axis % a.ndim == 0:
                self._buffers[i] = a[perm]
            else:
                self._buffers[i] = a[:, perm]

    def _slice(self, array, start):
        index = [slice(None)] * array.ndim
        index[self.axis] = slice(start, start + self.batch_size)
        return array[tuple(index)]

    def batch_weight(self, batch):
        """Number of samples in a batch (1 for a batch without arrays).

        Parameters
        ----------
        batch : list of arrays
            A batch this dataset produced.

        Returns
        -------
        int
            Its size along the batch axis (axis 0 for a callable's batches).
        """
        if not batch:
            return 1
        first = batch[0]
        shape = getattr(first, "shape", ())
        if self._callable is not None:
            return shape[0] if shape else 1
        return shape[self.axis]

    def batch_numbers(self):
        """Yield ``iteration_size`` batches as positions in the current buffers.

        For batching inside a compiled graph: yields ``(number, weight,
        buffers)`` where the batch is ``buffer[number * batch_size:][:batch_size]``
        of each array in ``buffers``, ``number`` a 0-d int64 array and
        ``weight`` the batch's number of samples. ``buffers`` is the same
        list object until a pass reshuffles into new arrays; later passes
        permute in place, into the same arrays.
        """
        if self._callable is not None:
            raise ValueError(f"{self.name}: a callable dataset has no buffers to index")
        if getattr(self, "_numbers", None) is None:
            self._numbers = [np.asarray(k, dtype=np.int64) for k in range(len(self._starts))]
        for _ in range(self.iteration_size):
            if self._position >= len(self._starts):
                self._shuffle()
            k = self._position
            self._position += 1
            yield self._numbers[k], min(self.batch_size, self._count - self._starts[k]), \
                self._buffers

    def __iter__(self):
        """Yield ``iteration_size`` batches, each a list of arrays."""
        if self._callable is not None:
            for _ in range(self.iteration_size):
                batch = self._callable()
                if not isinstance(batch, (list, tuple)):
                    batch = [batch]
                if self._converters is not None:
                    if len(batch) != len(self._converters):
                        raise ValueError(
                            f"{self.name}: the callable returned {len(batch)} arrays, but "
                            f"the loss has {len(self._converters)} inputs")
                    batch = [np.asarray(x, dtype=d) for x, d in zip(batch, self._converters)]
                yield batch
            return
        for _ in range(self.iteration_size):
            if self._position >= len(self._starts):
                self._shuffle()
            start = self._starts[self._position]
            self._position += 1
            yield [self._slice(b, start) for b in self._buffers]
