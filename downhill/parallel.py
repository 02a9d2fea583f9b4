"""The optimizer's update on every core: a parallel form of PyTensor's fused
elementwise loop, for the Numba backend.

PyTensor's Numba backend runs each fused elementwise loop (an ``Elemwise``
of a ``Composite``, which is what one parameter's update and its state's
become) on the calling thread. :class:`ParallelElemwise` is the same loop
cut into blocks of :data:`BLOCK` elements that ``numba.prange`` shares out
among Numba's threads; each block runs PyTensor's own serial loop for the
same scalar code, so every element is computed by the same instructions in
the same order whatever the number of threads: the results are bit for bit
those of the serial loop.

:func:`mode_with_parallel_updates` adds the rewrite that makes the swap to a
compile mode: after fusion and the in-place rewrites, the loop that writes an
update of a shared variable holding at least :data:`MIN_SIZE` elements,
wholly in place, becomes a :class:`ParallelElemwise`. Smaller updates keep
PyTensor's serial loop, which costs no thread wake-up (the small step stays
a few microseconds). The other backends (C, JAX) are left alone.

How many threads the loops use is Numba's setting for the calling thread
(``numba.set_num_threads``, at most ``NUMBA_NUM_THREADS``);
:func:`check_threads` checks a ``threads=`` argument and
:func:`default_threads` gives the default, the cores this process may use.
"""

import hashlib
import os
import sys

import numpy as np
import pytensor.scalar as ps
import pytensor.tensor as pt
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op
from pytensor.graph.rewriting.basic import GraphRewriter
from pytensor.tensor.elemwise import Elemwise

from .util import log

__all__ = ["ParallelElemwise", "ParallelUpdates", "mode_with_parallel_updates", "is_numba",
           "is_parallel", "default_threads", "check_threads", "numba_threads",
           "allowed_threads", "on_threads", "flat_twin", "eligible", "numba_helpers",
           "size_of",
           "MIN_SIZE", "ALIGN"]

#: Updates of variables with fewer elements keep PyTensor's serial loop.
MIN_SIZE = 2 ** 15

#: Each thread's share of a parallel loop starts at a multiple of this many
#: elements (whole cache lines and vector registers).
ALIGN = 64

#: Position of the rewrite in PyTensor's rewrite database: after fusion (49)
#: and the in-place rewrites (50.5), and after the Numba-specific ones (100).
POSITION = 100.5



class ParallelElemwise(Op):
    """A fused, in-place elementwise loop run in blocks on Numba's threads.

    The same computation as ``elemwise`` (an in-place ``Elemwise`` whose
    inputs are each either full-size or broadcast from a single element),
    with the same inputs, outputs and in-place pattern. Its Numba
    implementation splits the elements into blocks of :data:`BLOCK` and
    runs PyTensor's serial loop on each block in a ``numba.prange``; inputs
    that are not C-contiguous, sizes below :data:`MIN_SIZE` and shapes that
    do not match run the serial loop on the whole arrays instead. Other
    backends run ``elemwise`` itself.

    Parameters
    ----------
    elemwise : pytensor.tensor.elemwise.Elemwise
        The loop to run in parallel.
    """

    __props__ = ("elemwise",)
    parallel = True  # runs loops on Numba's threads (see is_parallel)

    def __init__(self, elemwise):
        self.elemwise = elemwise
        self.destroy_map = dict(elemwise.destroy_map)
        super().__init__()

    def make_node(self, *inputs):
        node = self.elemwise.make_node(*inputs)
        return Apply(self, list(node.inputs), [out.type() for out in node.outputs])

    def perform(self, node, inputs, output_storage):
        self.elemwise.perform(self.elemwise.make_node(*node.inputs), inputs, output_storage)

    def infer_shape(self, fgraph, node, shapes):
        return self.elemwise.infer_shape(fgraph, self.elemwise.make_node(*node.inputs), shapes)

    def __str__(self):
        return f"Parallel{self.elemwise}"


def is_parallel(fn):
    """Whether a compiled function runs loops on Numba's threads (a
    :class:`ParallelElemwise`, or another Op whose ``parallel`` is true).

    Parameters
    ----------
    fn : pytensor Function
        A compiled function (anything else: False).

    Returns
    -------
    bool
    """
    fgraph = getattr(getattr(fn, "maker", None), "fgraph", None)
    return fgraph is not None and any(getattr(node.op, "parallel", False)
                                      for node in fgraph.apply_nodes)


def flat_twin(node, redirect_all=False):
    """The 1-d, wholly in-place twin of an Elemwise node, whose serial loop
    runs one block.

    Its inputs are the node's full inputs as vectors, the others as
    broadcast one-element vectors, then one more vector per output that is
    not written in place (with ``redirect_all``: per output), into which the
    output's block is written (an input the scalar code does not read). The
    scalar code is the node's own, so every element comes out bit for bit
    as in the node's loop.

    Parameters
    ----------
    node : Apply
        An Elemwise node whose inputs are full-size or single elements.
    redirect_all : bool, optional
        Write every output into a vector of its own, in place outputs too.

    Returns
    -------
    Apply
        The twin's node.
    """
    op = node.op
    scalar = op.scalar_op
    if isinstance(scalar, ps.Composite):
        inner_in, inner_out = list(scalar.inputs), list(scalar.outputs)
    else:
        inner_in = [ps.get_scalar_type(var.type.dtype)() for var in node.inputs]
        inner_out = scalar.make_node(*inner_in).outputs
    pattern = {} if redirect_all else dict(op.inplace_pattern)
    extra = []
    for k, out in enumerate(node.outputs):
        if k not in pattern:
            pattern[k] = len(inner_in) + len(extra)
            extra.append(ps.get_scalar_type(out.type.dtype)())
    twin = Elemwise(ps.Composite(inner_in + extra, inner_out), inplace_pattern=pattern)
    inputs = []
    for var in node.inputs:
        shape = (1,) if all(var.type.broadcastable) else (None,)
        inputs.append(pt.tensor(dtype=var.type.dtype, shape=shape))
    inputs.extend(pt.tensor(dtype=var.type.dtype, shape=(None,)) for var in extra)
    return twin.make_node(*inputs)


def eligible(node):
    """Whether ``node`` is an Elemwise this module can run in blocks: every
    input full-size or a single element."""
    op = node.op
    if not isinstance(op, Elemwise) or not node.outputs:
        return False
    out_type = node.outputs[0].type
    if out_type.ndim == 0 or any(out_type.broadcastable):
        return False
    for var in node.inputs:
        bcast = var.type.broadcastable
        if var.type.ndim != out_type.ndim or (any(bcast) and not all(bcast)):
            return False
    return any(not any(var.type.broadcastable) for var in node.inputs)


def size_of(var):
    """The number of elements of a shared variable's value (0 if unknown)."""
    try:
        return int(np.size(var.get_value(borrow=True)))
    except Exception:  # not a shared variable, or a value without a size
        return 0


class ParallelUpdates(GraphRewriter):
    """Run large in-place update loops as :class:`ParallelElemwise`.

    A loop qualifies when it writes, in place, the new value of a shared
    variable (an update of the compiled function) holding at least
    ``min_size`` elements, and every output of the loop is in place.

    Parameters
    ----------
    min_size : int, optional
        The smallest variable, in elements, whose update runs in parallel;
        default :data:`MIN_SIZE`.
    """

    def __init__(self, min_size=None):
        super().__init__()
        self.min_size = MIN_SIZE if min_size is None else min_size

    def apply(self, fgraph):
        mapping = getattr(fgraph, "update_mapping", None) or {}
        sizes = {}
        for out_index, in_index in mapping.items():
            node = fgraph.outputs[out_index].owner
            if node is not None:
                size = size_of(fgraph.inputs[in_index])
                sizes[node] = max(sizes.get(node, 0), size)
        for node, size in sizes.items():
            if size < self.min_size or node not in fgraph.apply_nodes or not eligible(node):
                continue
            new = ParallelElemwise(node.op).make_node(*node.inputs)
            fgraph.replace_all_validate(list(zip(node.outputs, new.outputs)),
                                        reason="downhill_parallel_updates")


def is_numba(mode):
    """Whether a compile mode runs on PyTensor's Numba backend.

    Parameters
    ----------
    mode : str, pytensor Mode or None

    Returns
    -------
    bool
    """
    from pytensor.compile.mode import get_mode
    try:
        return type(get_mode(mode).linker).__name__ == "NumbaLinker"
    except Exception:  # a mode PyTensor cannot make here (e.g. JAX without jax)
        return False


def mode_with_parallel_updates(mode):
    """``mode`` with :class:`ParallelUpdates` added, if it is a Numba mode.

    Parameters
    ----------
    mode : str, pytensor Mode or None
        A compile mode as ``pytensor.function`` takes it.

    Returns
    -------
    str, pytensor Mode or None
        The mode with the rewrite, or ``mode`` unchanged for other linkers
        (C, JAX, Python) or when Numba cannot run parallel loops here.
    """
    from pytensor.compile.mode import get_mode
    from .skipguard import POSITION as GUARD_POSITION, GuardLoops
    if not is_numba(mode) or not _threading_works():
        return mode
    return get_mode(mode).register((GuardLoops(), GUARD_POSITION), (ParallelUpdates(), POSITION))


_THREADING = []


def _threading_works():
    """Whether Numba's thread pool starts (checked once per process)."""
    if not _THREADING:
        try:
            from numba.np.ufunc import parallel
            parallel._launch_threads()
            _THREADING.append(True)
        except Exception as error:  # no threading layer: stay serial
            log.warning("Numba's threads are unavailable, updates run serially: %s", error)
            _THREADING.append(False)
    return _THREADING[0]


# -- threads ----------------------------------------------------------

def numba_threads():
    """The size of Numba's thread pool (``NUMBA_NUM_THREADS``)."""
    import numba
    return int(numba.config.NUMBA_NUM_THREADS)


def default_threads():
    """The default number of threads: the cores this process may use
    (``os.sched_getaffinity``), at most Numba's pool (``NUMBA_NUM_THREADS``)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, numba_threads()))


def check_threads(threads):
    """Check a ``threads`` argument.

    Parameters
    ----------
    threads : int or None
        Threads for the parallel update loops; None keeps the current
        choice.

    Returns
    -------
    int or None
        ``threads`` as an int, or None.

    Raises
    ------
    ValueError
        If ``threads`` is not a whole number from 1 to Numba's pool size.
    """
    if threads is None:
        return None
    limit = numba_threads()
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) \
            or not 1 <= threads <= limit:
        raise ValueError(
            f"invalid threads: {threads!r} (must be a whole number from 1 to {limit}, "
            f"the size of Numba's thread pool; set NUMBA_NUM_THREADS before "
            f"importing numba for more)")
    return int(threads)


_FORKED = []  # set in a child forked after GNU OpenMP's threads started


def allowed_threads(threads):
    """``threads``, or 1 in a process forked from one whose OpenMP threads
    had started (GNU OpenMP's threads do not survive a fork)."""
    return 1 if _FORKED else threads


def on_threads(threads, batches):
    """Yield ``batches`` with Numba's thread count for this thread set to
    ``threads``, as it was before once they are done.

    Parameters
    ----------
    threads : int
        The number of threads (checked by :func:`check_threads`).
    batches : iterable
        What to yield.

    Yields
    ------
    object
        The items of ``batches``.
    """
    import numba
    before = numba.get_num_threads()
    numba.set_num_threads(threads)
    try:
        yield from batches
    finally:
        numba.set_num_threads(before)


def _after_fork_in_child():
    # Numba's OpenMP layer aborts a forked child that starts a parallel loop
    # ("fork() called from a process already using GNU OpenMP"): its loops
    # run serially there (the parallel loops take the serial path on 1 thread)
    numba = sys.modules.get("numba")
    if numba is None:
        return
    try:
        from numba.np.ufunc import parallel as parallel_numba
        if parallel_numba._is_initialized and numba.threading_layer() == "omp":
            _FORKED.append(True)
            numba.set_num_threads(1)
    except Exception:  # nothing started, or an unexpected Numba: leave it
        pass


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


# -- the Numba implementation ----------------------------------------

_HELPERS = {}


def numba_helpers():
    """What the Numba implementations here share: ``numba``, PyTensor's
    Numba dispatch module (``numba_basic``), its source compiler
    (``compile``), and functions callable from Numba code: ``threads()``
    (the calling thread's thread count, by the symbol Numba's own parallel
    loops call, so that the code can be cached), ``contiguous(x)``,
    ``flat(x)`` (a C-contiguous array as a flat view), ``flat_in(x)`` (flat,
    copied if need be) and ``spare(x, shape)`` (``x`` if it is a
    C-contiguous array of that shape, else a new one)."""
    return _HELPERS


def _register_numba():
    """Register the Numba implementation of :class:`ParallelElemwise`."""
    import numba
    from numba.core import types
    from numba.np.ufunc import parallel as parallel_numba
    from numba.extending import overload
    from pytensor.link.numba.cache import compile_numba_function_src
    from pytensor.link.numba.dispatch import basic as numba_basic

    # the thread count by the symbol Numba's own parallel loops call: a
    # function that calls numba.get_num_threads() (a ctypes pointer) cannot be
    # kept in the compile cache
    threads = parallel_numba._iget_num_threads

    def contiguous(x):
        pass

    @overload(contiguous)
    def _contiguous(x):
        # decided by the type: only arrays Numba knows to be C-contiguous are
        # viewed as flat vectors (a view is needed to write in place)
        value = isinstance(x, types.Array) and x.layout == "C"
        return lambda x: value

    def flat(x):
        pass

    @overload(flat)
    def _flat(x):
        if isinstance(x, types.Array) and x.layout == "C":
            return lambda x: x.reshape(x.size)
        return lambda x: np.empty(0, dtype=x.dtype)  # never reached: contiguous() is False

    def flat_in(x):
        pass

    @overload(flat_in)
    def _flat_in(x):
        # an input that is only read: viewed flat, or copied to be
        if isinstance(x, types.Array) and x.layout == "C":
            return lambda x: x.reshape(x.size)
        return lambda x: np.ascontiguousarray(x).reshape(x.size)

    def spare(x, shape):
        pass

    @overload(spare)
    def _spare(x, shape):
        # an output buffer given as an input: used if it fits, else a new one
        if isinstance(x, types.Array) and x.layout == "C":
            return lambda x, shape: x if x.shape == shape else np.empty(shape, dtype=x.dtype)
        return lambda x, shape: np.empty(shape, dtype=x.dtype)

    _HELPERS.update(numba=numba, numba_basic=numba_basic, compile=compile_numba_function_src,
                    threads=threads, contiguous=contiguous, flat=flat, flat_in=flat_in,
                    spare=spare)

    @numba_basic.register_funcify_and_cache_key(ParallelElemwise)
    def numba_funcify_ParallelElemwise(op, node, **kwargs):
        elemwise_node = op.elemwise.make_node(*node.inputs)
        serial, serial_key = numba_basic.numba_funcify_and_cache_key(
            op.elemwise, node=elemwise_node, **kwargs)
        twin = flat_twin(elemwise_node)
        block, block_key = numba_basic.numba_funcify_and_cache_key(
            twin.op, node=twin, **kwargs)
        env = {"np": np, "numba": numba, "threads": threads, "serial_loop": serial,
               "block_loop": block, "contiguous": contiguous, "flat": flat}
        source = _source(node, op.elemwise.inplace_pattern)
        # one namespace, so that parallel_elemwise finds parallel_blocks
        fn = compile_numba_function_src(source, "parallel_elemwise", env, env)
        fn = numba_basic.numba_njit(fn)
        if serial_key is None or block_key is None:
            return fn, None
        # the generated source is part of the key: other code, other key
        key = hashlib.sha256(str(("downhill.ParallelElemwise", source, serial_key,
                                  block_key)).encode()).hexdigest()
        return fn, key


def _source(node, inplace_pattern):
    """Python source of the Numba implementation of a
    :class:`ParallelElemwise` node: ``parallel_elemwise(i0, i1, ...)``,
    which checks the arrays and runs ``parallel_blocks``, a ``prange`` of
    one block per thread, each running ``block_loop`` (the serial loop of
    the node's 1-d twin, see :func:`flat_twin`) on its slice; or, for
    what it cannot cut into blocks, ``serial_loop`` (the node's own loop)."""
    names = [f"i{k}" for k in range(len(node.inputs))]
    full = [not any(var.type.broadcastable) for var in node.inputs]
    first = names[full.index(True)]
    ndim = node.outputs[0].type.ndim
    fresh = [k for k in range(len(node.outputs)) if k not in inplace_pattern]
    # the block kernel's arguments: flat full inputs (f), one-element vectors
    # for the broadcast ones (s), flat new outputs (o)
    params = [f"f{k}" if full[k] else f"s{k}" for k in range(len(names))]
    params += [f"o{k}" for k in fresh]
    sliced = [f"{p}[lo:hi]" if p[0] in "fo" else p for p in params]
    index = "[" + ", ".join("0" for _ in range(ndim)) + "]"
    checks = " and ".join(f"contiguous({names[k]})" for k in range(len(names)) if full[k])
    shapes = "".join(f" or {names[k]}.shape != {first}.shape"
                     for k in range(len(names)) if full[k] and names[k] != first)
    lines = [
        f"def parallel_elemwise({', '.join(names)}):",
        f"    if not ({checks}):",
        f"        return serial_loop({', '.join(names)})",
        f"    n = {first}.size",
        f"    if n < {MIN_SIZE} or threads() < 2{shapes}:",
        f"        return serial_loop({', '.join(names)})",
    ]
    for k in range(len(names)):
        if not full[k]:
            lines.append(f"    s{k} = np.empty(1, dtype={names[k]}.dtype)")
            lines.append(f"    s{k}[0] = {names[k]}{index}")
    for k in fresh:
        dtype = node.outputs[k].type.dtype
        lines.append(f"    o{k} = np.empty({first}.shape, dtype=np.{dtype})")
    args = [f"flat({names[k]})" if full[k] else f"s{k}" for k in range(len(names))]
    args += [f"flat(o{k})" for k in fresh]
    lines.append(f"    parallel_blocks(n, {', '.join(args)})")
    outputs = [f"o{k}" if k in fresh else names[inplace_pattern[k]]
               for k in range(len(node.outputs))]
    lines.append("    return " + (outputs[0] if len(outputs) == 1
                                  else f"({', '.join(outputs)},)"))
    lines += [
        "",
        "@numba.njit(parallel=True, no_cpython_wrapper=True, no_cfunc_wrapper=True)",
        f"def parallel_blocks(n, {', '.join(params)}):",
        "    count = threads()",
        f"    size = ((n + count - 1) // count + {ALIGN - 1}) // {ALIGN} * {ALIGN}",
        "    for b in numba.prange(count):",
        "        lo = b * size",
        "        hi = min(lo + size, n)",
        "        if lo < hi:",
        f"            block_loop({', '.join(sliced)})",
    ]
    return "\n".join(lines) + "\n"


try:
    _register_numba()
except ImportError:  # no numba: the rewrite is never added (see mode_with_parallel_updates)
    pass
