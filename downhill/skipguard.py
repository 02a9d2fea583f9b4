"""The guard of ``on_nonfinite='skip'`` on the Numba backend, as two loops
over each large parameter: a read-only test, then the in-place update.

The guard (``downhill.nonfinite.guard``) keeps every variable's old value
unless the loss, the gradients and every new value are finite: per variable
``switch(finite, new, old)``, with ``finite`` reduced from the new values.
PyTensor compiles that as a loop that writes the new values and their
finiteness into fresh arrays, reductions over those, and a copy of new or
old values into place: many passes over memory and fresh allocations in
every step (25 times the unguarded step for a million parameters).

:class:`GuardLoops` rewrites it, after PyTensor's fusion, into what the
guard needs: :class:`FiniteElemwise`, the parameter's fused loop run for its
finiteness alone (each array read once, nothing written but the flags, on
Numba's threads; its Numba code is in ``downhill.parallel_numba``), and then the parameter's update, ``switch(finite, new,
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
        """The node on the loop's inputs.

        Parameters
        ----------
        *inputs : pytensor Variable

        Returns
        -------
        Apply
        """
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
        """Run the loop and reduce (the Python implementation).

        Parameters
        ----------
        node : Apply
        inputs : list of numpy.ndarray
        output_storage : list of lists
            As for every PyTensor Op.
        """
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
