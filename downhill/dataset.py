"""Mini-batches of data for training and validation: :class:`Dataset`.

A Dataset draws batches from arrays (fixed contiguous batches in a new
order every pass, as in downhill 0.4, or freshly reshuffled samples), from
a callable, or from any iterable of batches; it conforms the arrays to the
loss's inputs once, and saves and restores its shuffling for checkpoints.
"""

import copy
import itertools
import numbers

import numpy as np

from . import validation
from .batches import (cast_arrays, check_batch, check_items, convert, fits, is_array,
                      is_pandas, to_array)

__all__ = ["Dataset"]

_names = itertools.count()  # default names: dataset0, dataset1, ...


def _make_rng(rng):
    if rng is None or (isinstance(rng, numbers.Integral) and not isinstance(rng, bool)):
        return np.random.default_rng(rng)
    if isinstance(rng, (np.random.Generator, np.random.RandomState)):
        return rng
    raise ValueError(
        f"rng must be an int seed, a numpy.random.Generator or a numpy.random.RandomState, "
        f"got {rng!r}")


def _rng_state(rng):
    if isinstance(rng, np.random.RandomState):
        return rng.get_state(legacy=False)
    return rng.bit_generator.state


def _check_rng_state(rng, state, name):
    legacy = isinstance(rng, np.random.RandomState)
    kind = "MT19937" if legacy else type(rng.bit_generator).__name__
    if (not isinstance(state, dict) or state.get("bit_generator") != kind
            or legacy != ("has_gauss" in state)):
        what = "numpy.random.RandomState" if legacy else kind
        raise ValueError(f"dataset {name!r}: saved random state is not a {what} state")
    try:  # on a scratch generator first: a damaged state changes nothing
        _set_rng_state(np.random.RandomState() if legacy
                       else np.random.Generator(type(rng.bit_generator)()), state)
    except (TypeError, ValueError, KeyError) as error:
        raise ValueError(
            f"dataset {name!r}: saved random state is damaged: {error!r}") from None


def _set_rng_state(rng, state):
    if isinstance(rng, np.random.RandomState):
        rng.set_state(state)
    else:
        rng.bit_generator.state = state


def _checked_state(ds, state):
    """A saved state of ``ds`` checked: its generator state, position, permutation."""
    if not isinstance(state, dict):
        raise ValueError(f"dataset {ds.name!r}: a saved state must be a table, got {state!r}")
    rng = state.get("rng")
    _check_rng_state(ds.rng, rng, ds.name)
    position, perm = state.get("position"), state.get("perm")
    if ds._kind in ("arrays", "batches"):
        passes = len(ds._starts) if ds._kind == "arrays" else len(ds._source)
        if isinstance(position, bool) or not isinstance(position, numbers.Integral) \
                or not 0 <= position <= passes:
            raise ValueError(
                f"dataset {ds.name!r}: saved position {position!r} does not fit "
                f"its {passes} batches per pass")
        position = int(position)
    if ds._kind == "arrays" and perm is not None:
        saved = state.get("shuffle_samples", True)  # states before 0.5 shuffled samples
        if saved != ds.shuffle_samples:
            raise ValueError(
                f"dataset {ds.name!r}: the saved state shuffles "
                f"{'samples' if saved else 'batches'}; create the dataset with "
                f"shuffle_samples={saved!r} to resume it")
        size = ds._count if ds.shuffle_samples else len(ds._starts)
        perm = np.asarray(perm)
        if perm.dtype.kind not in "iu" or perm.shape != (size,) \
                or not np.array_equal(np.sort(perm), np.arange(size)):
            raise ValueError(
                f"dataset {ds.name!r}: saved permutation does not fit its "
                f"{size} {'samples' if ds.shuffle_samples else 'batches'}")
    return rng, position, perm


class Dataset:
    """Batches of data for one optimization: arrays, a callable or an iterable.

    Parameters
    ----------
    inputs : array, list of arrays, callable, or iterable of batches
        One array per symbolic input of the loss (numpy arrays, including
        memory-mapped ones, pandas Series or DataFrames, scipy.sparse
        CSR/CSC matrices, pytensor shared variables), all of the same length
        along ``axis``; a bare array is the data of a loss with one input.
        Or a callable that returns one batch (a list or tuple of arrays, one
        per input) per call. Or an iterable of such batches, as downhill 0.4
        took: a list of batches (``[[X[:16], Y[:16]], [X[16:], Y[16:]]]``;
        ``[[]]`` for a loss without inputs) is read in order, one pass per
        iteration; a generator or other one-shot iterator is read until it
        ends. A list whose items are arrays is one array per input. The
        arrays of a batch that a callable or an iterable gives may differ in
        length (the loss's graph decides what fits); such a batch weighs in
        the monitors' means by its first array's length. Every item of a
        batch must be an array (or a nested list of numbers): a bare number,
        a string or None is refused, when the Dataset is made for a list of
        batches, else when the batch comes.
    name : str, optional
        A name for messages; default ``dataset0``, ``dataset1``, ...
    batch_size : int, optional
        Samples per batch (default 32); 0 or less means one batch holding
        everything. Kept as given for a callable or an iterable, whose
        batches come made.
    iteration_size : int, optional
        Batches per iteration. Default: one full pass over the arrays or the
        list; ``len(inputs)`` for a callable that has a length, else 100;
        for another iterable, one pass (``None``: until it ends).
    axis : int, optional
        The axis along which samples are stacked. Default 0. A negative
        axis counts from the last axis of each input, as in numpy.
    rng : int, numpy.random.Generator or numpy.random.RandomState, optional
        Seed or generator for the shuffling.
    shuffle_samples : bool, optional
        How arrays are shuffled. False (default, as downhill 0.4): the
        batches are fixed contiguous slices of the arrays, and every pass
        visits them in a new random order, so a batch always holds the same
        samples. True: every pass permutes the samples afresh, so batches
        change their composition.

    Raises
    ------
    ValueError
        If the arrays differ in length along ``axis``, an input is of an
        unsupported type or empty, a batch of a list holds an item that is
        no array, ``batch_size`` or ``axis`` is not an integer, or
        ``iteration_size`` is not positive.

    Notes
    -----
    Batches of arrays are slices along ``axis``: of your arrays (cast to the
    inputs' dtype by :meth:`conform`, once, if they differ) with the default
    shuffling, or with ``shuffle_samples=True`` of a buffer the dataset owns,
    into which each pass permutes the samples once (your arrays are never
    changed). Along axis 0 of a C-contiguous array they are views, so
    nothing is copied per batch. pandas inputs give pandas batches
    (``.iloc`` slices). When every input is a PyTensor shared variable (and
    ``axis`` is 0), the optimizer slices the batches inside its compiled
    graph instead, and only a batch number crosses from Python (see
    :meth:`batch_numbers`); your shared variables are read once and never
    changed.

    Iterating a dataset (``for batch in dataset``, :meth:`iterate`) gives
    ``iteration_size`` batches as downhill 0.4 did: lists of arrays, or
    what the callable or the iterable gives, unchanged; the training loop
    turns each into the step's arguments with :meth:`as_arguments`.

    .. warning::
        With ``shuffle_samples=True`` the next pass permutes into the same
        buffer, so a batch's contents change once the pass it came from is
        over. Use each batch before asking for the next pass's (the training
        loop does), or copy it: ``list(dataset)`` over more than one pass
        does not keep the data.
    """

    def __init__(self, inputs, name=None, batch_size=32, iteration_size=None,
                 axis=0, rng=None, shuffle_samples=False):
        number = next(_names)
        self.name = name or f"dataset{number}"
        self.axis = validation.check_axis(axis)
        if batch_size is not None:
            batch_size = validation.check_batch_size(batch_size)
        self.rng = _make_rng(rng)
        self.shuffle_samples = bool(shuffle_samples)
        if iteration_size is not None and (
                not isinstance(iteration_size, numbers.Integral) or iteration_size <= 0):
            raise ValueError(f"invalid iteration_size: {iteration_size!r} (must be an integer > 0)")
        self.batch_size = batch_size
        self.iteration_size = iteration_size
        #: Set by :meth:`conform`: every batch fits the inputs exactly, so a
        #: compiled function may skip its input checks (``trust_input``).
        self.trusted = False
        #: Set by :meth:`conform`: the inputs were PyTensor shared variables
        #: and fit exactly, so batches can be sliced inside the compiled graph
        #: (see :meth:`batch_numbers`).
        self.in_graph = False
        #: For a one-shot iterator: it has ended.
        self.exhausted = False
        self._converters = None
        self._arrays = self._callable = self._source = self._iter = None
        self._position = 0
        if isinstance(inputs, (str, bytes, dict)):
            raise ValueError(
                f"dataset inputs must be arrays, a list of arrays, a callable or an iterable "
                f"of batches, got {type(inputs).__name__}")
        if is_array(inputs):
            inputs = [inputs]
        if callable(inputs):
            self._kind, self._callable = "callable", inputs
            if iteration_size is None:
                try:
                    self.iteration_size = len(inputs)
                except TypeError:
                    self.iteration_size = 100
        elif isinstance(inputs, (list, tuple)):
            if inputs and all(isinstance(b, (list, tuple)) for b in inputs):
                self._kind, self._source = "batches", list(inputs)
                self.iteration_size = iteration_size or len(inputs)
                for k, batch in enumerate(self._source):
                    check_items(self.name, batch, f"batch {k} holds")
            else:
                self._kind = "arrays"
                self._init_arrays(inputs)
        else:
            try:
                iterator = iter(inputs)
            except TypeError:
                raise ValueError(
                    f"dataset inputs must be arrays, a list of arrays, a callable or an "
                    f"iterable of batches, got {type(inputs).__name__}") from None
            if iterator is inputs:
                self._kind, self._iter = "stream", iterator
            else:
                self._kind, self._source = "iterable", inputs
                if iteration_size is None and hasattr(inputs, "__len__"):
                    self.iteration_size = len(inputs)

    def _init_arrays(self, inputs):
        if not inputs:
            raise ValueError("dataset inputs are empty: give one array per input of the loss")
        axis = self.axis
        arrays = [to_array(x, i) for i, x in enumerate(inputs)]
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
        batch_size = self.batch_size
        if batch_size is None or batch_size <= 0 or batch_size >= self._count:
            batch_size = self._count
        self.batch_size = int(batch_size)
        self._starts = list(range(0, self._count, self.batch_size))
        self.iteration_size = self.iteration_size or len(self._starts)
        self._buffers = None
        self._perm = None  # the current pass's order: of samples or of batches
        self._shuffles = True
        self._position = len(self._starts)  # a pass starts on first use

    def __repr__(self):
        return f"<Dataset {self.name!r}: {self.iteration_size} batches per iteration>"

    @property
    def is_callable(self):
        """Whether batches come from a callable."""
        return self._kind == "callable"

    @property
    def is_stream(self):
        """Whether batches come from a one-shot iterator (a generator), read once."""
        return self._kind == "stream"

    @property
    def kind(self):
        """Where batches come from: ``'arrays'``, ``'callable'``, ``'batches'``
        (a list of them), ``'iterable'`` or ``'stream'`` (a one-shot iterator)."""
        return self._kind

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
        Batches from a callable or an iterable are converted one by one by
        :meth:`as_arguments`.
        """
        self.trusted = self.in_graph = False
        if self._kind != "arrays":
            self._converters = [np.dtype(v.dtype) for v in variables]
            self._ndims = [getattr(v.type, "ndim", None) for v in variables]
            self._input_names = [v.name or f"<{v.type}>" for v in variables]
            if self._kind == "batches":  # a list: every batch can be checked now
                for k, batch in enumerate(self._source):
                    self._check_shape(batch, f"batch {k} holds")
                    check_batch(self.name, batch, self._ndims, self._input_names)
            # with no inputs there is nothing a compiled function could check
            self.trusted = not variables
            return
        changed = cast_arrays(self.name, self._arrays, variables)
        if changed:
            # rebuild the current pass from the cast arrays, so the pass goes on
            if self._perm is not None:
                self._buffers = None
                self._permute(self._perm)
            elif self._buffers is not None:
                self._buffers = self._arrays
        self.trusted = all(fits(a, v, self.axis) for a, v in zip(self._arrays, variables))
        self.in_graph = self.trusted and self._from_shared and self.axis == 0

    def as_arguments(self, batch):
        """The arrays a batch of this dataset passes to a compiled function.

        Parameters
        ----------
        batch : object
            A batch from iterating this dataset.

        Returns
        -------
        list or tuple of arrays
            A batch of arrays as it is; what a callable or an iterable gave
            as a list (a bare array becoming a one-item list) of arrays of the
            inputs' dtypes, once :meth:`conform` has run.

        Raises
        ------
        ValueError
            If the batch holds another number of arrays than the loss has
            inputs, an item that is no array, an array of another number of
            dimensions than its input, an empty first array, or a dtype that
            cannot become its input's without changing kind (complex).
        """
        if self._kind == "arrays":
            return batch
        if not isinstance(batch, (list, tuple)):
            batch = [batch]
        if self._converters is not None:
            source = "the callable returned" if self._kind == "callable" else "the batch holds"
            batch = self._conformed(batch, source)
        return batch

    def _conformed(self, batch, where):
        """A batch of a callable or an iterable checked and cast to the inputs."""
        self._check_shape(batch, where)
        batch = [convert(x, d, self.name, i)
                 for i, (x, d) in enumerate(zip(batch, self._converters))]
        check_batch(self.name, batch, self._ndims, self._input_names)
        return batch

    def _check_shape(self, batch, where):
        """Refuse a batch of the wrong number of arrays, or holding a non-array."""
        if len(batch) != len(self._converters):
            raise ValueError(
                f"{self.name}: {where} {len(batch)} arrays, but the loss has "
                f"{len(self._converters)} inputs")
        check_items(self.name, batch, where)

    def state_dict(self):
        """The shuffling state: enough to continue the same sequence of batches.

        Returns
        -------
        dict
            ``rng`` (the generator's state). For arrays also ``position``
            (batches of the current pass already given), ``perm`` (the
            current pass's order, of the batches or, with
            ``shuffle_samples``, of the samples; None before the first pass
            or without shuffling) and ``shuffle_samples``; for a list of
            batches ``position``. A callable's or an iterator's own state is
            not included.
        """
        state = {"rng": _rng_state(self.rng)}
        if self._kind == "arrays":
            state["position"] = self._position
            state["perm"] = None if self._perm is None else self._perm.copy()
            state["shuffle_samples"] = self.shuffle_samples
        elif self._kind == "batches":
            state["position"] = self._position
        return state

    def load_state_dict(self, state):
        """Restore a state from :meth:`state_dict`.

        Parameters
        ----------
        state : dict
            A state from :meth:`state_dict` of a dataset with the same
            samples, batch size and shuffling.

        Raises
        ------
        ValueError
            If the state does not fit this dataset (another number of
            samples or batches, another shuffling, or another kind of random
            generator).
        """
        rng, position, perm = _checked_state(self, state)  # everything first
        _set_rng_state(self.rng, rng)
        if self._kind == "arrays":
            if perm is not None:
                self._permute(perm)
            self._position = position if perm is not None else len(self._starts)
        elif self._kind == "batches":
            self._position = position

    def in_order(self):
        """The same data in batches without shuffling, one full pass per iteration.

        Used to validate on the training data without disturbing the
        training batches' order; the arrays are shared, not copied. A list
        of batches gives a view reading the whole list from its start; a
        dataset drawing from a callable or an iterator is returned as it is.

        Returns
        -------
        Dataset
        """
        if self._kind == "batches":
            view = copy.copy(self)
            view._position = 0
            view.iteration_size = len(self._source)
            return view
        if self._kind != "arrays":
            return self
        view = copy.copy(self)
        view._shuffles = False
        view._buffers = self._arrays
        view._perm = None
        view._position = len(self._starts)
        view.iteration_size = len(self._starts)
        return view

    def shuffle(self):
        """Start a new pass over the arrays in a new random order now.

        As in downhill 0.4. Without effect for a callable, an iterable, a
        single batch, or a view from :meth:`in_order`.
        """
        if self._kind == "arrays":
            self._new_pass(shuffle=True)

    def _new_pass(self, shuffle=True):
        """Start a pass: a new order (unless ``shuffle`` is false and there is one)."""
        self._position = 0
        if len(self._starts) == 1 or not self._shuffles:
            self._buffers = self._arrays
            return
        if shuffle or self._perm is None:
            size = self._count if self.shuffle_samples else len(self._starts)
            perm = self.rng.permutation(size)
            if not self.shuffle_samples and self._perm is not None:
                perm = self._perm[perm]  # 0.4 shuffled the shuffled batches again
            self._permute(perm)

    def _permute(self, perm):
        """Put the pass in the order ``perm``: of the batches, or of the samples
        (permuted into the owned buffers) with ``shuffle_samples``."""
        self._perm = perm
        if not self.shuffle_samples:
            self._buffers = self._arrays
            return
        if self._buffers is None or self._buffers is self._arrays:
            self._buffers = [None] * len(self._arrays)
        for i, a in enumerate(self._arrays):
            first = self.axis % a.ndim == 0
            if isinstance(a, np.ndarray):
                out = self._buffers[i]
                if out is None:
                    out = self._buffers[i] = np.empty_like(a, order="C" if first else "K")
                np.take(a, perm, axis=self.axis, out=out)
            elif is_pandas(a):
                self._buffers[i] = a.iloc[perm] if first else a.iloc[:, perm]
            else:
                self._buffers[i] = a[perm] if first else a[:, perm]

    def _batch_index(self):
        """The index (in the buffers) of the pass's next batch; advances the pass."""
        k = self._position
        self._position += 1
        if self._perm is not None and not self.shuffle_samples:
            k = int(self._perm[k])
        return k

    def _slice(self, array, start):
        index = [slice(None)] * array.ndim
        index[self.axis] = slice(start, start + self.batch_size)
        if is_pandas(array):
            return array.iloc[tuple(index)]
        return array[tuple(index)]

    def batch_weight(self, batch):
        """Number of samples in a batch (1 for a batch without arrays).

        Parameters
        ----------
        batch : list of arrays
            A batch this dataset produced, through :meth:`as_arguments`.

        Returns
        -------
        int
            Its size along the batch axis (for a callable's or an iterable's
            batches, whose arrays may differ in length, the first array's
            length along axis 0).
        """
        if not batch:
            return 1
        shape = getattr(batch[0], "shape", ())
        if self._kind != "arrays":
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
        if self._kind != "arrays":
            raise ValueError(f"{self.name}: a dataset of batches has no buffers to index")
        if getattr(self, "_numbers", None) is None:
            self._numbers = [np.asarray(k, dtype=np.int64) for k in range(len(self._starts))]
        for _ in range(self.iteration_size):
            if self._position >= len(self._starts):
                self._new_pass()
            k = self._batch_index()
            yield self._numbers[k], min(self.batch_size, self._count - self._starts[k]), \
                self._buffers

    def __iter__(self):
        """Yield ``iteration_size`` batches, as :meth:`iterate` does."""
        return self.iterate(shuffle=True)

    def iterate(self, shuffle=True):
        """Yield ``iteration_size`` batches.

        Parameters
        ----------
        shuffle : bool, optional
            Whether a pass over the arrays that starts on the way comes in a
            new random order (default); False repeats the current order.

        Yields
        ------
        batch
            For arrays, a list with one slice of each array; for a callable
            or an iterable, what it gives, unchanged. A one-shot iterator
            that ends stops the iteration early (and sets ``exhausted``).
        """
        if self._kind != "arrays":
            yield from _external_batches(self)
            return
        for _ in range(self.iteration_size):
            if self._position >= len(self._starts):
                self._new_pass(shuffle)
            start = self._starts[self._batch_index()]
            yield [self._slice(b, start) for b in self._buffers]


def _external_batches(ds):
    """``iteration_size`` batches of a callable, a list of batches or an iterable."""
    count = ds.iteration_size
    given, fresh = 0, False
    while count is None or given < count:
        if ds._kind == "callable":
            batch = ds._callable()
        elif ds._kind == "batches":
            if ds._position >= len(ds._source):
                ds._position = 0
            batch = ds._source[ds._position]
            ds._position += 1
        else:
            if ds._iter is None:
                ds._iter, fresh = iter(ds._source), True
            try:
                batch = next(ds._iter)
            except StopIteration:
                if ds._kind == "stream":
                    ds.exhausted = True
                    return
                ds._iter = None  # the next pass starts over
                if count is None or fresh:
                    return  # one pass per iteration (or an empty iterable)
                continue
            fresh = False
        given += 1
        yield batch
