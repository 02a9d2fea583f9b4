"""The optimizer's update on every core: a parallel form of PyTensor's fused
elementwise loops, for the Numba backend, and the ``threads`` setting.

PyTensor's Numba backend runs each fused elementwise loop (an ``Elemwise``
of a ``Composite``, which is what one parameter's update and its state's
become) on the calling thread. :class:`ParallelElemwise` runs one or more
such loops (the updates of several parameters) in one parallel region: their
elements, end to end, are cut into one share per thread, and each thread
runs PyTensor's own serial loop on the pieces of its share. Every element is
computed by the same scalar code in the same order whatever the number of
threads, so the results are bit for bit those of the serial loops (IEEE
arithmetic: downhill compiles without fast-math, see
``downhill.util.compile_function``).

:func:`mode_with_parallel_updates` adds the rewrites to a Numba compile mode:
after fusion and the in-place rewrites, :class:`ParallelUpdates` gathers the
loops that write updates of shared variables holding at least
:data:`MIN_SIZE` elements into one :class:`ParallelElemwise`; smaller
updates keep PyTensor's serial loop and cost no thread wake-up. The C and
JAX backends are left alone. :mod:`downhill.skipguard` does the same for the
guard of ``on_nonfinite='skip'``; the Numba code of both lives in
``downhill.parallel_numba``.

How many threads the loops use is Numba's setting for the calling thread
(``numba.set_num_threads``, at most ``NUMBA_NUM_THREADS``): the training
loop sets it to the optimizer's ``threads`` for each pass
(``on_threads``); :func:`check_threads` checks a ``threads=`` argument
and :func:`default_threads` gives the default, the cores this process may
use.
"""

import os
import sys

import numpy as np
import pytensor.scalar as ps
import pytensor.tensor as pt
from pytensor.graph.basic import Apply
from pytensor.graph.features import ReplaceValidate
from pytensor.graph.op import Op
from pytensor.graph.rewriting.basic import GraphRewriter
from pytensor.tensor.elemwise import Elemwise

from .util import log

__all__ = ["ParallelElemwise", "ParallelUpdates", "mode_with_parallel_updates", "is_numba",
           "is_parallel", "default_threads", "check_threads", "numba_threads",
           "allowed_threads", "on_threads", "flat_twin", "eligible", "size_of",
           "MIN_SIZE", "ALIGN", "POSITION"]

#: Updates of variables with fewer elements keep PyTensor's serial loop.
#: Measured on 2 cores (RMSProp, float32): a parallel loop breaks even at
#: ~16k elements and is 1.3x faster at 32k, 1.5x at 64k.
MIN_SIZE = 2 ** 15

#: Each thread's share of a parallel region starts at a multiple of this
#: many elements (whole cache lines and vector registers).
ALIGN = 64

#: Position of the rewrites in PyTensor's rewrite database: after fusion (49)
#: and the in-place rewrites (50.5), and after the Numba-specific ones (100).
POSITION = 100.5


class ParallelElemwise(Op):
    """Fused elementwise loops run together on Numba's threads.

    The same computation as the ``members`` (Elemwise ops, typically the
    in-place updates of several parameters, each with inputs that are
    full-size or broadcast from a single element): its inputs are the
    members' inputs one after the other, its outputs their outputs, with
    their in-place patterns. Its Numba implementation (see
    ``downhill.parallel_numba``) runs a member on one thread, as
    PyTensor's own loop on the whole arrays, when its arrays are not
    C-contiguous or their shapes differ, when it is smaller than
    :data:`MIN_SIZE` or when there is one thread. Other backends run the
    members one by one.

    Parameters
    ----------
    members : tuple of pytensor.tensor.elemwise.Elemwise
        The loops.
    """

    __props__ = ("members",)
    parallel = True  # runs loops on Numba's threads (see is_parallel)

    def __init__(self, members):
        self.members = tuple(members)
        self.destroy_map = {}
        n_in = n_out = 0
        for member in self.members:
            for out, (inp,) in member.destroy_map.items():
                self.destroy_map[n_out + out] = [n_in + inp]
            n_in += member.scalar_op.nin
            n_out += member.scalar_op.nout
        super().__init__()

    def split(self, values):
        """The node's inputs (or anything in their order) cut per member.

        Parameters
        ----------
        values : sequence
            One item per input of the node.

        Returns
        -------
        list of lists
            The items of each member's inputs.
        """
        out, start = [], 0
        for member in self.members:
            out.append(list(values[start:start + member.scalar_op.nin]))
            start += member.scalar_op.nin
        return out

    def member_nodes(self, node):
        """The members' own nodes, on this node's inputs.

        Parameters
        ----------
        node : Apply
            A node of this Op.

        Returns
        -------
        list of Apply
        """
        return [member.make_node(*inputs)
                for member, inputs in zip(self.members, self.split(node.inputs))]

    def make_node(self, *inputs):
        """The node on ``inputs``, the members' inputs one after the other.

        Parameters
        ----------
        *inputs : pytensor Variable

        Returns
        -------
        Apply
        """
        nodes = [member.make_node(*part)
                 for member, part in zip(self.members, self.split(inputs))]
        return Apply(self, [var for n in nodes for var in n.inputs],
                     [out.type() for n in nodes for out in n.outputs])

    def perform(self, node, inputs, output_storage):
        """Run the members one by one (the Python implementation).

        Parameters
        ----------
        node : Apply
        inputs : list of numpy.ndarray
        output_storage : list of lists
            As for every PyTensor Op.
        """
        start = 0
        for member, member_node, part in zip(self.members, self.member_nodes(node),
                                             self.split(inputs)):
            count = len(member_node.outputs)
            member.perform(member_node, part, output_storage[start:start + count])
            start += count

    def infer_shape(self, fgraph, node, shapes):
        """The members' output shapes.

        Parameters
        ----------
        fgraph : FunctionGraph
        node : Apply
        shapes : list of tuples
            As for every PyTensor Op.

        Returns
        -------
        list of tuples
        """
        out = []
        for member, member_node, part in zip(self.members, self.member_nodes(node),
                                             self.split(shapes)):
            out.extend(member.infer_shape(fgraph, member_node, part))
        return out

    def __str__(self):
        return f"Parallel({', '.join(str(member) for member in self.members)})"


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
    runs one piece of the parallel loop.

    Its inputs are the node's full inputs as vectors, the others as
    broadcast one-element vectors, then one more vector per output that is
    not written in place (with ``redirect_all``: per output), into which the
    output's piece is written (an input the scalar code does not read). The
    scalar code is the node's own, so every element comes out bit for bit
    as in the node's loop.

    Parameters
    ----------
    node : Apply
        An Elemwise node whose inputs are full-size or single elements.
    redirect_all : bool, optional
        Write every output into a vector of its own, in-place outputs too.

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
    """Whether ``node`` is an Elemwise this module can run in pieces.

    Parameters
    ----------
    node : Apply

    Returns
    -------
    bool
        True for an Elemwise of at least one dimension whose inputs are each
        full-size or broadcast from a single element.
    """
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
    """The number of elements of a shared variable's value.

    Parameters
    ----------
    var : pytensor Variable

    Returns
    -------
    int
        0 for a variable without a value.
    """
    try:
        return int(np.size(var.get_value(borrow=True)))
    except Exception:  # not a shared variable, or a value without a size
        return 0


def _ancestors(node):
    """Every node ``node`` depends on."""
    seen, stack = set(), [var.owner for var in node.inputs if var.owner is not None]
    while stack:
        current = stack.pop()
        if current not in seen:
            seen.add(current)
            stack.extend(var.owner for var in current.inputs if var.owner is not None)
    return seen


class ParallelUpdates(GraphRewriter):
    """Run the loops that write large updates together on Numba's threads.

    A loop (an eligible Elemwise, see ``eligible``) qualifies when it
    writes the new value of a shared variable (an update of the compiled
    function) holding at least ``min_size`` elements. The qualifying loops
    that do not depend on one another become one :class:`ParallelElemwise`
    (one parallel region per step however many parameters); a loop that
    another depends on gets its own.

    Parameters
    ----------
    min_size : int, optional
        The smallest variable, in elements, whose update runs in parallel;
        default :data:`MIN_SIZE`.
    """

    def __init__(self, min_size=None):
        super().__init__()
        self.min_size = MIN_SIZE if min_size is None else min_size

    def add_requirements(self, fgraph):
        """Replacements are validated (PyTensor's ``ReplaceValidate``).

        Parameters
        ----------
        fgraph : FunctionGraph
        """
        fgraph.attach_feature(ReplaceValidate())

    def apply(self, fgraph):
        """Rewrite ``fgraph`` in place.

        Parameters
        ----------
        fgraph : FunctionGraph
            A compiled function's graph (its ``update_mapping`` names the
            updates).
        """
        mapping = getattr(fgraph, "update_mapping", None) or {}
        loops = []
        for out_index, in_index in sorted(mapping.items()):
            node = fgraph.outputs[out_index].owner
            if node is not None and node not in loops and eligible(node) \
                    and size_of(fgraph.inputs[in_index]) >= self.min_size:
                loops.append(node)
        groups = []  # loops none of which depends on another
        for node in loops:
            before = _ancestors(node)
            for group in groups:
                if not any(other in before or node in group[other] for other in group):
                    group[node] = before
                    break
            else:
                groups.append({node: before})
        for group in groups:
            self._replace(fgraph, list(group))

    @staticmethod
    def _replace(fgraph, nodes):
        new = ParallelElemwise([node.op for node in nodes]).make_node(
            *[var for node in nodes for var in node.inputs])
        pairs = list(zip([out for node in nodes for out in node.outputs], new.outputs))
        try:
            fgraph.replace_all_validate(pairs, reason="downhill_parallel_updates")
        except Exception as error:  # e.g. an order the in-place writes cannot take
            log.debug("updates not run together (%s): one by one", error)
            for node in nodes if len(nodes) > 1 else ():
                ParallelUpdates._replace(fgraph, [node])


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
    """``mode`` with the parallel updates' rewrites, if it is a Numba mode.

    Adds :class:`ParallelUpdates`, the skip guard's
    :class:`~downhill.skipguard.GuardLoops` and the blocked sums of
    :class:`~downhill.blocksum.BlockSums`.

    Parameters
    ----------
    mode : str, pytensor Mode or None
        A compile mode as ``pytensor.function`` takes it.

    Returns
    -------
    str, pytensor Mode or None
        The mode with the rewrites, or ``mode`` unchanged for other linkers
        (C, JAX, Python) or when Numba cannot run parallel loops here.
    """
    from pytensor.compile.mode import get_mode

    from . import blocksum, skipguard
    if not is_numba(mode) or not _threading_works():
        return mode
    return get_mode(mode).register((skipguard.GuardLoops(), skipguard.POSITION),
                                   (ParallelUpdates(), POSITION),
                                   (blocksum.BlockSums(), blocksum.POSITION))


_THREADING = []


def _threading_works():
    """Whether Numba's thread pool starts, and the Numba code is registered
    (checked once per process)."""
    if not _THREADING:
        try:
            from numba.np.ufunc import parallel

            from . import blocksum, parallel_numba
            parallel._launch_threads()
            parallel_numba.register()
            blocksum.register()
            _THREADING.append(True)
        except Exception as error:  # no threading layer: stay serial
            log.warning("Numba's threads are unavailable, updates run serially: %s", error)
            _THREADING.append(False)
    return _THREADING[0]


# -- threads ----------------------------------------------------------

def numba_threads():
    """The size of Numba's thread pool (``NUMBA_NUM_THREADS``; without
    Numba, the cores this process may use)."""
    try:
        import numba
    except ImportError:
        return _cores()
    return int(numba.config.NUMBA_NUM_THREADS)


def _cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def default_threads():
    """The default number of threads: the cores this process may use
    (``os.sched_getaffinity``), at most Numba's pool (``NUMBA_NUM_THREADS``)."""
    return max(1, min(_cores(), numba_threads()))


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
    """The threads a parallel loop may use here.

    Parameters
    ----------
    threads : int
        The threads asked for.

    Returns
    -------
    int
        ``threads``, or 1 in a process forked from one whose OpenMP threads
        had started (GNU OpenMP's threads do not survive a fork).
    """
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
    # Numba's OpenMP layer ends a forked child that starts a parallel loop
    # ("fork() called from a process already using GNU OpenMP"): there the
    # loops run on 1 thread, which takes the serial path and starts none
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
