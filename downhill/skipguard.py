"""The guard of ``on_nonfinite='skip'`` on the Numba backend, as two loops
over each large parameter: a read-only test, then the in-place update.

The guard (:func:`downhill.nonfinite.guard`) keeps every variable's old value
unless the loss, the gradients and every new value are finite: per variable
``switch(finite, new, old)``, with ``finite`` reduced from the new values.
PyTensor compiles that as a loop that writes the new values and their
finiteness into fresh arrays, reductions over those, and a copy of new or
old values into place: many passes over memory and fresh allocations in
every step (25 times the unguarded step for a million parameters).

:class:`GuardLoops` rewrites it, after PyTensor's fusion, into what the
guard needs: :class:`FiniteElemwise`, the parameter's fused loop run for its
finiteness alone (each array read once, nothing written but the flags, in
parallel blocks), and then the parameter's update, ``switch(finite, new,
old)`` fused into one in-place loop, which
:class:`~downhill.parallel.ParallelUpdates` then runs on every core. The
step's values are those of the unguarded step, bit for bit. The price is
that the update's arithmetic runs twice (about twice the unguarded step's
time): the new values must be known to be finite before any of them is
written, and keeping them elsewhere meanwhile costs as much in memory
traffic.

Variables below :data:`~downhill.parallel.MIN_SIZE` elements, and graphs
that are not what the guard makes, are left as PyTensor compiled them.
"""

import hashlib

import numpy as np
import pytensor.scalar as ps
import pytensor.tensor as pt
from pytensor.graph.basic import Apply
from pytensor.graph.features import ReplaceValidate
from pytensor.graph.op import Op
from pytensor.graph.rewriting.basic import GraphRewriter
from pytensor.tensor.elemwise import CAReduce, DimShuffle, Elemwise

from . import parallel
from .util import log

__all__ = ["FiniteElemwise", "GuardLoops", "is_guarded_in_loops", "SUB_BLOCK", "POSITION"]

#: Elements per call of the serial loop inside a thread's share; its
#: finiteness flags are counted while they are in the cache.
SUB_BLOCK = 4096

#: Before :class:`~downhill.parallel.ParallelUpdates`, which then makes the
#: guarded updates parallel.
POSITION = parallel.POSITION - 0.1


def is_guarded_in_loops(fn):
    """Whether a compiled function tests a guarded step with :class:`FiniteElemwise`.

    Parameters
    ----------
    fn : pytensor Function

    Returns
    -------
    bool
    """
    return any(isinstance(node.op, FiniteElemwise) for node in fn.maker.fgraph.apply_nodes)


class FiniteElemwise(Op):
    """Whether all elements of some boolean outputs of a fused elementwise
    loop are true, computed without writing the loop's other outputs.

    Parameters
    ----------
    elemwise : pytensor.tensor.elemwise.Elemwise
        The loop (its inputs full-size or single elements).
    roles : tuple of str
        Per output of ``elemwise``: ``"all"`` (a boolean output, given as a
        0-d boolean: all its elements true), ``"fresh"`` (computed into a new
        array, for the rest of the graph) or ``"drop"`` (not computed; given
        as an empty array).
    """

    __props__ = ("elemwise", "roles")
    parallel = True  # runs loops on Numba's threads (see downhill.parallel.is_parallel)

    def __init__(self, elemwise, roles):
        self.elemwise = elemwise
        self.roles = tuple(roles)
        super().__init__()

    def make_node(self, *inputs):
        node = self.elemwise.make_node(*inputs)
        outputs = []
        for role, out in zip(self.roles, node.outputs):
            if role == "all":
                outputs.append(pt.tensor(dtype="bool", shape=()))
            elif role == "drop":
                outputs.append(pt.tensor(dtype=out.type.dtype, shape=(None,) * out.type.ndim))
            else:
                outputs.append(out.type())
        return Apply(self, list(node.inputs), outputs)

    def perform(self, node, inputs, output_storage):
        loop = Elemwise(self.elemwise.scalar_op)  # no input overwritten
        storage = [[None] for _ in self.roles]
        loop.perform(loop.make_node(*node.inputs), inputs, storage)
        for role, (value,), out in zip(self.roles, storage, output_storage):
            if role == "all":
                out[0] = np.asarray(bool(np.all(value)))
            elif role == "drop":
                out[0] = np.empty((0,) * value.ndim, dtype=value.dtype)
            else:
                out[0] = value

    def __str__(self):
        return f"Finite{self.elemwise}"


def _scalar_condition(var):
    """The 0-d boolean a broadcast condition comes from, or None."""
    node = var.owner
    if node is not None and isinstance(node.op, DimShuffle) and node.inputs[0].type.ndim == 0:
        var = node.inputs[0]
    return var if var.type.ndim == 0 and var.type.dtype == "bool" else None


def _is_all(node):
    """Whether ``node`` is ``all`` over every axis."""
    op = node.op
    return (isinstance(op, CAReduce) and isinstance(op.scalar_op, ps.AND)
            and (op.axis is None or len(op.axis) == node.inputs[0].type.ndim))


def _guarded_update(loop, switched, condition):
    """The in-place loop ``switch(condition, new, old)`` for the switched
    outputs of ``loop``: the same scalar code, one more input (the
    condition), each output written over its variable's old value."""
    scalar = loop.op.scalar_op
    if isinstance(scalar, ps.Composite):
        inner_in, inner_out = list(scalar.inputs), list(scalar.outputs)
    else:
        inner_in = [ps.get_scalar_type(var.type.dtype)() for var in loop.inputs]
        inner_out = scalar.make_node(*inner_in).outputs
    inputs = list(loop.inputs)
    cond = ps.get_scalar_type("bool")()
    outputs, pattern = [], {}
    for k, (_, v) in sorted(switched.items()):
        position = next((i for i, var in enumerate(inputs) if var is v), None)
        if position is None:  # a variable the new value does not depend on
            position = len(inputs)
            inputs.append(v)
            inner_in.append(ps.get_scalar_type(v.type.dtype)())
        pattern[len(outputs)] = position
        old = inner_in[position]
        outputs.append(ps.switch(cond, inner_out[k], old))
    ndim = loop.outputs[0].type.ndim
    op = Elemwise(ps.Composite(inner_in + [cond], outputs), inplace_pattern=pattern)
    return op(*inputs, condition.dimshuffle(["x"] * ndim), return_list=True)


class GuardLoops(GraphRewriter):
    """Test and apply the guarded steps of large variables in two loops.

    Finds the guard's ``switch(finite, new, old)`` updates of variables of
    at least ``min_size`` elements whose new values come from one fused loop
    (an Elemwise) that also gives boolean outputs reduced by ``all`` (their
    finiteness), and replaces them by a :class:`FiniteElemwise` for those
    reductions and an in-place update loop that reads the finiteness.

    Parameters
    ----------
    min_size : int, optional
        Default :data:`downhill.parallel.MIN_SIZE`.
    """

    def __init__(self, min_size=None):
        super().__init__()
        self.min_size = parallel.MIN_SIZE if min_size is None else min_size

    def add_requirements(self, fgraph):
        fgraph.attach_feature(ReplaceValidate())

    def apply(self, fgraph):
        mapping = getattr(fgraph, "update_mapping", None) or {}
        groups = {}
        for out_index, in_index in mapping.items():
            v = fgraph.inputs[in_index]
            switch = fgraph.outputs[out_index].owner
            if switch is None or not isinstance(switch.op, Elemwise) \
                    or not isinstance(switch.op.scalar_op, ps.Switch) \
                    or switch.inputs[2] is not v or parallel.size_of(v) < self.min_size:
                continue
            condition = _scalar_condition(switch.inputs[0])
            loop = switch.inputs[1].owner
            if condition is None or loop is None or not parallel.eligible(loop):
                continue
            groups.setdefault((loop, condition), {})[
                loop.outputs.index(switch.inputs[1])] = (switch, v)
        for (loop, condition), switched in groups.items():
            if loop in fgraph.apply_nodes:
                self._split(fgraph, loop, switched, condition)

    def _split(self, fgraph, loop, switched, condition):
        roles = []
        for k, out in enumerate(loop.outputs):
            clients = [node for node, _ in fgraph.clients[out]]
            others = [node for node in clients if k not in switched
                      or node is not switched[k][0]]
            if not others:
                roles.append("drop")
            elif out.type.dtype == "bool" and all(
                    isinstance(node, Apply) and _is_all(node) for node in others):
                roles.append("all")
            else:
                roles.append("fresh")
        if "all" not in roles:
            return  # not the guard's loop
        check = FiniteElemwise(loop.op, roles).make_node(*loop.inputs)
        update = _guarded_update(loop, {k: (s, v) for k, (s, v) in switched.items()}, condition)
        pairs = []
        for k, role in enumerate(roles):
            if role == "all":
                pairs.extend((node.outputs[0], check.outputs[k])
                             for node, _ in fgraph.clients[loop.outputs[k]])
            elif role == "fresh":
                pairs.append((loop.outputs[k], check.outputs[k]))
        for j, (k, (switch, _)) in enumerate(sorted(switched.items())):
            pairs.append((switch.outputs[0], update[j]))
        try:
            fgraph.replace_all_validate(pairs, reason="downhill_guard_loops")
        except Exception as error:  # e.g. the in-place update cannot be ordered
            log.debug("the guard's loops are not used: %s", error)


# -- the Numba implementation ----------------------------------------

def _register_numba():
    helpers = parallel.numba_helpers()
    if not helpers:
        return
    numba_basic = helpers["numba_basic"]

    @numba_basic.register_funcify_and_cache_key(FiniteElemwise)
    def numba_funcify_FiniteElemwise(op, node, **kwargs):
        loop_node = op.elemwise.make_node(*node.inputs)
        twin = parallel.flat_twin(_mask_loop(loop_node, op.roles), redirect_all=True)
        block, block_key = numba_basic.numba_funcify_and_cache_key(twin.op, node=twin, **kwargs)
        env = {"np": np, "block_loop": block, **{k: helpers[k] for k in (
            "numba", "threads", "flat", "flat_in")}}
        source = _source(node, op.roles)
        fn = helpers["compile"](source, "finite_elemwise", env, env)
        fn = numba_basic.numba_njit(fn)
        if block_key is None:
            return fn, None
        # the generated source is part of the key: other code, other key
        key = hashlib.sha256(str(("downhill.FiniteElemwise", source, block_key)).encode())
        return fn, key.hexdigest()


def _mask_loop(node, roles):
    """An Elemwise node computing, of ``node``'s outputs, a bit mask of the
    ``"all"`` outputs that are false (bit ``j`` for the ``j``-th of them),
    then the ``"fresh"`` outputs; the ``"drop"`` outputs are not computed."""
    scalar = node.op.scalar_op
    if isinstance(scalar, ps.Composite):
        inner_in, inner_out = list(scalar.inputs), list(scalar.outputs)
    else:
        inner_in = [ps.get_scalar_type(var.type.dtype)() for var in node.inputs]
        inner_out = scalar.make_node(*inner_in).outputs
    counted = [k for k, role in enumerate(roles) if role == "all"]
    dtype = _mask_dtype(len(counted))
    mask = None
    for j, k in enumerate(counted):
        bit = ps.cast(ps.invert(inner_out[k]), dtype) * ps.constant(np.asarray(1 << j, dtype))
        mask = bit if mask is None else mask + bit
    outputs = [mask] + [inner_out[k] for k, role in enumerate(roles) if role == "fresh"]
    return Elemwise(ps.Composite(inner_in, outputs)).make_node(*node.inputs)


def _mask_dtype(count):
    return next(f"uint{bits}" for bits in (8, 16, 32, 64) if count <= bits)


def _source(node, roles):
    """Python source of a :class:`FiniteElemwise` node's Numba implementation:
    ``finite_elemwise(i0, ...)`` checks the arrays, makes the fresh outputs
    and runs ``chunk`` (sub-blocks of the serial loop of :func:`_mask_loop`'s
    twin, the masks or-ed together while in the cache) on the whole range,
    or on one share per thread in ``parallel_chunks``."""
    names = [f"i{k}" for k in range(len(node.inputs))]
    full = [not any(var.type.broadcastable) for var in node.inputs]
    first = names[full.index(True)]
    ndim = node.inputs[full.index(True)].type.ndim
    counted = [k for k, role in enumerate(roles) if role == "all"]
    fresh = [k for k, role in enumerate(roles) if role == "fresh"]
    dtype = _mask_dtype(len(counted))
    index = "[" + ", ".join("0" for _ in range(ndim)) + "]"
    lines = [f"def finite_elemwise({', '.join(names)}):",
             f"    shape = {first}.shape",
             f"    n = {first}.size"]
    for k, name in enumerate(names):
        if full[k] and name != first:
            lines += [f"    if {name}.shape != shape:",
                      "        raise ValueError('the arrays of the update differ in shape')"]
    args = []
    for k, name in enumerate(names):
        if full[k]:
            args.append(f"flat_in({name})")
        else:
            lines += [f"    s{k} = np.empty(1, dtype={name}.dtype)", f"    s{k}[0] = {name}{index}"]
            args.append(f"s{k}")
    for k in fresh:
        lines.append(f"    o{k} = np.empty(shape, dtype=np.{node.outputs[k].type.dtype})")
        args.append(f"flat(o{k})")
    lines += [f"    if n < {parallel.MIN_SIZE} or threads() < 2:",
              f"        bad = chunk(0, n, {', '.join(args)})",
              "    else:",
              f"        bad = parallel_chunks(n, {', '.join(args)})"]
    returned = []
    for k, role in enumerate(roles):
        if role == "all":
            returned.append(f"np.asarray(bad & {1 << counted.index(k)} == 0)")
        elif role == "drop":
            returned.append(f"np.empty(({'0, ' * ndim}), dtype=np.{node.outputs[k].type.dtype})")
        else:
            returned.append(f"o{k}")
    lines.append("    return " + (returned[0] if len(returned) == 1
                                  else f"({', '.join(returned)},)"))
    params = [f"a{k}" if full[k] else f"s{k}" for k in range(len(names))]
    params += [f"f{k}" for k in fresh]
    block_args = [f"a{k}[lo:hi]" if full[k] else f"s{k}" for k in range(len(names))]
    block_args += ["mask[:m]"] + [f"f{k}[lo:hi]" for k in fresh]
    lines += ["", "@numba.njit(no_cpython_wrapper=True, no_cfunc_wrapper=True)",
              f"def chunk(lo0, hi0, {', '.join(params)}):",
              f"    mask = np.empty({SUB_BLOCK}, dtype=np.{dtype})",
              "    bad = 0",
              "    lo = lo0",
              "    while lo < hi0:",
              f"        hi = min(lo + {SUB_BLOCK}, hi0)",
              "        m = hi - lo",
              f"        block_loop({', '.join(block_args)})",
              f"        found = np.{dtype}(0)",
              "        for i in range(m):",
              "            found |= mask[i]",
              "        bad |= found",
              "        lo = hi",
              "    return bad",
              "",
              "@numba.njit(parallel=True, no_cpython_wrapper=True, no_cfunc_wrapper=True)",
              f"def parallel_chunks(n, {', '.join(params)}):",
              "    count = threads()",
              f"    size = ((n + count - 1) // count + {parallel.ALIGN - 1}) "
              f"// {parallel.ALIGN} * {parallel.ALIGN}",
              f"    found = np.zeros(count, dtype=np.{dtype})",
              "    for b in numba.prange(count):",
              "        lo = b * size",
              "        hi = min(lo + size, n)",
              "        if lo < hi:",
              f"            found[b] = chunk(lo, hi, {', '.join(params)})",
              "    bad = 0",
              "    for b in range(count):",
              "        bad |= found[b]",
              "    return bad"]
    return "\n".join(lines) + "\n"


_register_numba()
