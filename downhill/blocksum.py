"""Large float sums in a fixed blocked order: as fast as fast-math's sums,
the same bits from a cold or a warm compile cache and on any number of
threads (Numba backend).

downhill compiles without Numba's fast-math flags (see
``downhill.util.compile_function``), and so without ``reassoc``: a float sum
is then one chain of additions, element after element, each waiting for the
last (4 cycles on this kind of core). The loss of a large model, say
``(x * d).sum()`` over a million elements, took 1.0 ms that way against
0.23 ms with ``reassoc``, three quarters of the whole step (measured in the
issue's setting, see ``benchmarks/README.md``). ``reassoc`` lets LLVM add in
vector lanes in an order of its choosing, which is what lets two compiled
copies of a function compute other bits.

:class:`BlockSum` fixes the order instead, so that LLVM may vectorize it
without reassociating anything. The elements, flat in C order, are cut into
blocks of :data:`BLOCK` elements (the last one shorter); within a block,
lane ``k`` (``0 <= k <`` :data:`LANES`) adds elements ``k``, ``k + LANES``,
``k + 2 LANES``, ... one after the other, starting from zero, in the
accumulation type (float64 for float32 data, as PyTensor's ``Sum``); the
block's total is ``((0 + lane 0) + lane 1) + ...``, and the sum is
``((0 + block 0) + block 1) + ...``, cast to the output type. The lanes'
additions are independent, so the loop over a row of lanes is an
elementwise loop that LLVM vectorizes under IEEE rules; blocks run on
Numba's threads, each block's total computed whole by one thread, so the
bits depend on neither the thread count nor the cache. A sum is within
rounding of the sequential one (it is another order of the same additions).

:class:`BlockSums` is the rewrite that puts it in a compiled function: every
sum over all axes of a float array (``Sum``, or a ``CAReduce`` of ``Add``).
Below :data:`~downhill.parallel.MIN_SIZE` elements, and for arrays that are
not C-contiguous, the Numba code calls PyTensor's own sequential loop, so
small problems keep their bits. Partial sums (over some axes) are left
alone.
"""

import hashlib

import numpy as np
import pytensor.scalar as ps
import pytensor.tensor as pt
from pytensor.graph.basic import Apply
from pytensor.graph.features import ReplaceValidate
from pytensor.graph.op import Op
from pytensor.graph.rewriting.basic import GraphRewriter
from pytensor.tensor.elemwise import CAReduce

from . import parallel
from .util import log

__all__ = ["BlockSum", "BlockSums", "blocked_sum", "register", "LANES", "BLOCK", "POSITION"]

#: Lanes of a block: independent running sums, a whole number of vector
#: registers. 64 and 256 lanes made the loop vectorize (0.09 and 0.08 ms
#: for a million float32 elements, one thread); 8-32 lanes did not (0.27 ms).
LANES = 256

#: Elements per block, the unit of work of a thread (a multiple of LANES).
BLOCK = 2 ** 16

#: After :class:`~downhill.parallel.ParallelUpdates` (which does not look at
#: sums).
POSITION = parallel.POSITION + 0.1


def blocked_sum(values, acc_dtype, out_dtype):
    """The sum of ``values`` in :class:`BlockSum`'s order, in NumPy.

    Parameters
    ----------
    values : numpy.ndarray
        Any shape; summed flat in C order.
    acc_dtype, out_dtype : str or numpy.dtype
        The type the additions are done in, and the result's type.

    Returns
    -------
    numpy.ndarray
        A 0-d array of ``out_dtype``.
    """
    flat = np.ravel(values).astype(acc_dtype)
    acc = np.dtype(acc_dtype).type
    total = acc(0)
    for lo in range(0, flat.size, BLOCK):
        block = flat[lo:lo + BLOCK]
        block_total = acc(0)
        for k in range(min(LANES, block.size)):
            # lane k: one element after the other, from zero
            block_total += np.add.accumulate(np.concatenate([[acc(0)], block[k::LANES]]))[-1]
        total += block_total
    return np.asarray(total, dtype=out_dtype)


class BlockSum(Op):
    """A sum over all axes of a float array in a fixed blocked order.

    The same result as ``careduce`` to rounding; the order of the additions
    is given in the module's docstring (and transcribed in
    :func:`blocked_sum`). Arrays of fewer than
    :data:`~downhill.parallel.MIN_SIZE` elements, and arrays that are not
    C-contiguous, are summed by ``careduce`` itself.

    Parameters
    ----------
    careduce : pytensor.tensor.elemwise.CAReduce
        The sum it replaces (a ``CAReduce`` of ``Add`` over all axes); its
        accumulation and output types are kept.
    """

    __props__ = ("careduce",)

    def __init__(self, careduce):
        self.careduce = careduce
        super().__init__()

    @property
    def acc_dtype(self):
        """The type the additions are done in."""
        return getattr(self.careduce, "acc_dtype", None) or self.careduce.dtype

    def make_node(self, x):
        """The node on ``x``.

        Parameters
        ----------
        x : pytensor Variable

        Returns
        -------
        Apply
        """
        x = pt.as_tensor_variable(x)
        out = self.careduce.make_node(x).outputs[0]
        return Apply(self, [x], [out.type()])

    def perform(self, node, inputs, output_storage):
        """Sum in the blocked order (the Python implementation).

        Parameters
        ----------
        node : Apply
        inputs : list of numpy.ndarray
        output_storage : list of lists
            As for every PyTensor Op.
        """
        (x,) = inputs
        if x.size < parallel.MIN_SIZE or not x.flags.c_contiguous:
            self.careduce.perform(self.careduce.make_node(node.inputs[0]), inputs, output_storage)
        else:
            output_storage[0][0] = blocked_sum(x, self.acc_dtype, node.outputs[0].type.dtype)

    def infer_shape(self, fgraph, node, shapes):
        """A scalar.

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
        return [()]

    def __str__(self):
        return f"BlockSum{{acc={self.acc_dtype}}}"


def _is_full_float_sum(node):
    """Whether ``node`` adds all elements of a float array of >= 1 dimension."""
    op = node.op
    if not isinstance(op, CAReduce) or not isinstance(op.scalar_op, ps.Add):
        return False
    x = node.inputs[0]
    ndim = x.type.ndim
    axes = op.axis
    acc = getattr(op, "acc_dtype", None) or op.dtype
    return (ndim > 0 and (axes is None or len(axes) == ndim)
            and x.type.dtype.startswith("float") and str(acc).startswith("float")
            and node.outputs[0].type.dtype.startswith("float"))


class BlockSums(GraphRewriter):
    """Replace every sum over all axes of a float array by a :class:`BlockSum`."""

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
        """
        for node in list(fgraph.toposort()):
            if node in fgraph.apply_nodes and _is_full_float_sum(node):
                new = BlockSum(node.op).make_node(node.inputs[0])
                try:
                    fgraph.replace_all_validate([(node.outputs[0], new.outputs[0])],
                                                reason="downhill_block_sums")
                except Exception as error:  # a type PyTensor will not swap
                    log.debug("sum left sequential: %s", error)


# -- the Numba implementation ---------------------------------------------

def source(acc_dtype, out_dtype):
    """Python source of :class:`BlockSum`'s Numba implementation:
    ``block_sum(x)``, with ``serial_sum`` (PyTensor's loop), ``threads``
    (Numba's thread count) and ``flat`` (a flat view of a C-contiguous
    array) from its namespace."""
    acc = f"np.{np.dtype(acc_dtype).name}"
    return f"""
@numba.njit(no_cpython_wrapper=True, no_cfunc_wrapper=True)
def block_total(y, b, n):
    lo = b * {BLOCK}
    hi = min(lo + {BLOCK}, n)
    rows = (hi - lo) // {LANES}
    lanes = np.zeros({LANES}, dtype={acc})
    grid = y[lo:lo + rows * {LANES}].reshape((rows, {LANES}))
    for r in range(rows):
        for k in range({LANES}):
            lanes[k] += {acc}(grid[r, k])
    tail = lo + rows * {LANES}
    for k in range(hi - tail):
        lanes[k] += {acc}(y[tail + k])
    total = {acc}(0)
    for k in range({LANES}):
        total += lanes[k]
    return total

@numba.njit(no_cpython_wrapper=True, no_cfunc_wrapper=True)
def serial_blocks(y, count, n):
    totals = np.empty(count, dtype={acc})
    for b in range(count):
        totals[b] = block_total(y, b, n)
    return totals

@numba.njit(parallel=True, no_cpython_wrapper=True, no_cfunc_wrapper=True)
def parallel_blocks(y, count, n):
    totals = np.empty(count, dtype={acc})
    for b in numba.prange(count):
        totals[b] = block_total(y, b, n)
    return totals

def block_sum(x):
    n = x.size
    if n < {parallel.MIN_SIZE} or not x.flags.c_contiguous:
        return serial_sum(x)
    y = flat(x)
    count = (n + {BLOCK - 1}) // {BLOCK}
    if count > 1 and threads() > 1:
        totals = parallel_blocks(y, count, n)
    else:
        totals = serial_blocks(y, count, n)
    total = {acc}(0)
    for b in range(count):
        total += totals[b]
    return np.array(total, dtype=np.{np.dtype(out_dtype).name})
"""


_REGISTERED = []


def register():
    """Register the Numba implementation (once per process)."""
    if _REGISTERED:
        return
    import numba
    from numba.core import cgutils, types
    from numba.extending import intrinsic, overload
    from numba.np.ufunc import parallel as numba_parallel
    from pytensor.link.numba.cache import compile_numba_function_src
    from pytensor.link.numba.dispatch import basic as numba_basic

    @intrinsic
    def as_pointer(typingctx, address):
        # an address (an integer) as a pointer, for numba.carray
        def codegen(context, builder, signature, args):
            return builder.inttoptr(args[0], cgutils.voidptr_t)
        return types.voidptr(types.uintp), codegen

    def flat_view(x):
        pass

    @overload(flat_view)
    def _flat_view(x):
        # the elements of an array found C-contiguous at run time, as a vector
        # (Numba types most arrays as of any layout, and reshapes only those
        # it knows to be contiguous)
        return lambda x: numba.carray(as_pointer(x.ctypes.data), (x.size,), dtype=x.dtype)

    @numba_basic.register_funcify_and_cache_key(BlockSum)
    def numba_funcify_BlockSum(op, node, **kwargs):
        serial, serial_key = numba_basic.numba_funcify_and_cache_key(
            op.careduce, node=op.careduce.make_node(node.inputs[0]), **kwargs)
        text = source(op.acc_dtype, node.outputs[0].type.dtype)
        namespace = {"np": np, "numba": numba, "serial_sum": serial, "flat": flat_view,
                     "threads": numba_parallel._iget_num_threads}
        fn = numba_basic.numba_njit(
            compile_numba_function_src(text, "block_sum", namespace, namespace))
        if serial_key is None:
            return fn, None
        return fn, hashlib.sha256(str(("downhill.BlockSum", text, serial_key)).encode()
                                  ).hexdigest()

    _REGISTERED.append(True)
