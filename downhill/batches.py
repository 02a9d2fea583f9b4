"""What a batch may hold: the checks and conversions of one input's data.

:class:`~downhill.Dataset` (``downhill/dataset.py``) cuts batches and
shuffles them; the functions here say whether an object is one input's
array, turn accepted inputs into arrays it can slice, cast the items of a
callable's or an iterable's batch to the inputs' dtypes, refuse a batch
item that is no array, and tell whether an array's batches fit an input
exactly (so compiled functions may skip their input checks), and check
and cast the arrays given whole to a dataset.
"""

import numbers

import numpy as np

from .util import log

__all__ = ["is_array", "is_pandas", "to_array", "dtype_of", "convert", "check_items",
           "check_batch", "fits", "cast_arrays"]


def is_array(x):
    """Whether ``x`` is one input's data (and not a list of them).

    Parameters
    ----------
    x : object
        A candidate: numpy arrays, PyTensor shared variables, pandas and
        scipy.sparse objects are one input's data.

    Returns
    -------
    bool
    """
    if isinstance(x, np.ndarray) or (hasattr(x, "get_value") and hasattr(x, "type")):
        return True
    module = type(x).__module__
    return module.startswith(("pandas", "scipy.sparse")) and hasattr(x, "shape")


def is_pandas(x):
    """Whether ``x`` is a pandas object sliced with ``.iloc``.

    Parameters
    ----------
    x : object
        A candidate.

    Returns
    -------
    bool
    """
    return type(x).__module__.startswith("pandas") and hasattr(x, "iloc")


def to_array(x, index):
    """Turn one accepted input into an array-like the batcher can slice.

    Parameters
    ----------
    x : object
        One input's data, as given to :class:`~downhill.Dataset`.
    index : int
        Its position among the inputs, for messages.

    Returns
    -------
    array-like
        A numpy array (a view for a memory-mapped one; a shared variable's
        value, read once), a pandas Series or DataFrame, or a scipy.sparse
        CSR/CSC matrix.

    Raises
    ------
    ValueError
        For another type, or a sparse matrix of another format.
    """
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
    if is_pandas(x) and type(x).__name__ in ("Series", "DataFrame"):
        return x  # batches stay pandas objects, as in downhill 0.4
    if isinstance(x, np.ndarray):
        # a memory-mapped array (or other subclass) as a plain view: no copy
        return x if type(x) is np.ndarray else np.asarray(x)
    raise ValueError(
        f"input {index} has unsupported type {type(x).__name__}; accepted: numpy arrays, "
        "pandas Series/DataFrame, scipy.sparse CSR/CSC, pytensor shared variables")


def dtype_of(a):
    """The dtype of an array-like from :func:`to_array` (a DataFrame's common one).

    Parameters
    ----------
    a : array-like
        An array, pandas object or sparse matrix.

    Returns
    -------
    numpy.dtype
    """
    dtypes = getattr(a, "dtypes", None)
    if dtypes is not None and not hasattr(a, "dtype"):  # a DataFrame
        return np.result_type(*dtypes) if len(dtypes) else np.dtype("float64")
    return np.dtype(a.dtype)


def convert(x, dtype, name, index):
    """One item of a batch from a callable or an iterable, as the input's dtype.

    A dtype that does not become the input's without changing kind (complex
    for a float input) is refused, as the same array given directly is.

    Parameters
    ----------
    x : array-like
        The item (a nested list becomes an array; a sparse matrix stays one).
    dtype : numpy.dtype
        The input's dtype.
    name : str
        The dataset's name, for messages.
    index : int
        The item's position in the batch.

    Returns
    -------
    array-like
        ``x`` in ``dtype`` (not copied if it already is).

    Raises
    ------
    ValueError
        If ``x``'s dtype cannot become ``dtype`` without changing kind.
    """
    if not (hasattr(x, "tocsr") and hasattr(x, "astype")):  # not scipy.sparse
        x = np.asarray(x)
    if x.dtype != dtype and not np.can_cast(x.dtype, dtype, casting="same_kind"):
        raise ValueError(
            f"{name}: batch input {index} has dtype {x.dtype}, which cannot become {dtype}")
    if hasattr(x, "tocsr"):
        return x if x.dtype == dtype else x.astype(dtype)
    return x.astype(dtype, copy=False)


def _not_an_array(x):
    """Whether ``x`` cannot be one input's part of a batch.

    A batch item is an array with an entry per sample: a numpy array (a 0-d
    one for a scalar input), a pandas or scipy.sparse object, a PyTensor
    shared variable, or a (nested) list or tuple of numbers. A bare number,
    a string, None, a dict or another object is none of these.
    """
    return not (isinstance(x, (list, tuple)) or is_array(x) or hasattr(x, "__array__"))


def check_items(name, batch, where):
    """Refuse a batch (list or tuple) holding an item that is no array.

    Parameters
    ----------
    name : str
        The dataset's name, for messages.
    batch : list or tuple
        The batch's items, one per input.
    where : str
        Whose batch it is, to start the message: ``'batch 3 holds'``,
        ``'the callable returned'``.

    Raises
    ------
    ValueError
        Naming the first item that is a bare number (with the fix: wrap it
        in ``numpy.asarray`` for a 0-d input), a string, None or another
        object that is no array.
    """
    for i, x in enumerate(batch):
        if _not_an_array(x):
            hint = ""
            if isinstance(x, (numbers.Number, np.generic)):
                hint = f"; for a 0-d input pass numpy.asarray({x!r})"
            raise ValueError(
                f"{name}: {where} {x!r} (type {type(x).__name__}) as input {i}, which is "
                "not an array: a batch holds one array per input of the loss (numpy "
                f"arrays, pandas, scipy.sparse, nested lists of numbers){hint}")


def check_batch(name, batch, ndims, names):
    """A converted batch of a callable or an iterable: each item of its input's
    number of dimensions, and a first array that is not empty.

    The arrays of such a batch may differ in length (an index array beside
    a block of rows, say): the loss's graph decides what fits. The batch's
    weight in the monitors' means is the first array's length.

    Parameters
    ----------
    name : str
        The dataset's name, for messages.
    batch : list
        The batch's items (arrays; items without ``ndim`` are not checked).
    ndims : list of int or None
        Each input's number of dimensions (None: any).
    names : list of str
        Each input's name.

    Raises
    ------
    ValueError
        If an item has another number of dimensions than its input, or the
        first array is empty.
    """
    for i, (x, n, var) in enumerate(zip(batch, ndims, names)):
        have = getattr(x, "ndim", None)
        if n is not None and have is not None and have != n:
            raise ValueError(
                f"{name}: batch input {i} has {have} dimension(s) (shape "
                f"{tuple(x.shape)}), but input {i} ({var}) of the loss is {n}-d")
    if batch and getattr(batch[0], "ndim", 0) and batch[0].shape[0] == 0:
        raise ValueError(
            f"{name}: the batch is empty: its first array has shape "
            f"{tuple(batch[0].shape)} (the batch's weight is its first array's length)")


def fits(array, variable, axis):
    """Whether every batch of ``array`` is a valid value for ``variable`` as it is.

    True for a numpy array of the variable's dtype and number of dimensions
    whose fixed sizes (PyTensor static shape) match on every axis but the
    batch axis, which must be free. Such batches can be passed to a compiled
    function without its per-call input checks.

    Parameters
    ----------
    array : array-like
        One input's data.
    variable : pytensor Variable
        The input.
    axis : int
        The batch axis.

    Returns
    -------
    bool
    """
    shape = getattr(variable.type, "shape", None)
    if (not isinstance(array, np.ndarray) or shape is None
            or array.dtype != np.dtype(variable.dtype) or array.ndim != len(shape)
            or not array.flags.aligned):
        return False
    return all(s is None if i == axis % array.ndim else s in (None, n)
               for i, (s, n) in enumerate(zip(shape, array.shape)))


def cast_arrays(name, arrays, variables):
    """Check the arrays given whole to a dataset against the inputs, casting
    them in place where their dtype differs.

    Parameters
    ----------
    name : str
        The dataset's name, for messages.
    arrays : list of arrays
        One per input; an array whose dtype differs is replaced by its cast.
    variables : list of pytensor Variable
        The loss's inputs.

    Returns
    -------
    bool
        Whether an array was cast.

    Raises
    ------
    ValueError
        If the number of arrays, an array's number of dimensions or its
        dtype does not fit its input.
    """
    if len(arrays) != len(variables):
        raise ValueError(
            f"{name} data has {len(arrays)} arrays but the loss has "
            f"{len(variables)} inputs {[v.name for v in variables]}")
    changed = False
    for i, (a, v) in enumerate(zip(arrays, variables)):
        ndim = getattr(v.type, "ndim", None)
        if ndim is not None and a.ndim != ndim:
            raise ValueError(
                f"{name} input {i} ({v.name}) must be {ndim}-d, got shape {a.shape}")
        dtype, have = np.dtype(v.dtype), dtype_of(a)
        if have != dtype:
            if not np.can_cast(have, dtype, casting="same_kind"):
                raise ValueError(
                    f"{name} input {i} ({v.name}) has dtype {have}, which "
                    f"cannot become {dtype}")
            log.debug("%s: casting input %d from %s to %s", name, i, have, dtype)
            arrays[i] = a.astype(dtype)
            changed = True
    return changed
