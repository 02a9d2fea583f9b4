"""The Numba code of the parallel update loops (:mod:`downhill.parallel`)
and of the skip guard's finiteness test (:mod:`downhill.skipguard`).

Each Op's implementation is Python source generated for its node and
compiled by Numba: a function that checks the arrays, and a
``parallel=True`` function whose ``numba.prange`` gives each thread one
share of the elements, on which it runs PyTensor's own serial loop (the
1-d twin of the fused loop, :func:`downhill.parallel.flat_twin`). The
generated source is part of each function's compile-cache key, so that the
cache never hands back code of another version. The thread count is read in
Numba code through the symbol Numba's own parallel loops call, so that the
functions can be cached (``numba.get_num_threads()`` could not be).

:func:`register` registers the implementations with PyTensor's Numba
backend; :mod:`downhill.parallel` calls it before compiling anything with
these Ops.
"""

import hashlib

import numpy as np

from . import parallel, skipguard

__all__ = ["register"]

_REGISTERED = []


def register():
    """Register the Numba implementations (once per process)."""
    if _REGISTERED:
        return
    import numba
    from numba.core import types
    from numba.extending import overload
    from numba.np.ufunc import parallel as numba_parallel
    from pytensor.link.numba.cache import compile_numba_function_src
    from pytensor.link.numba.dispatch import basic as numba_basic

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
        return lambda x: np.empty(0, dtype=x.dtype)  # never used: contiguous() is False

    def flat_in(x):
        pass

    @overload(flat_in)
    def _flat_in(x):
        # an input that is only read: viewed flat, or copied to be
        if isinstance(x, types.Array) and x.layout == "C":
            return lambda x: x.reshape(x.size)
        return lambda x: np.ascontiguousarray(x).reshape(x.size)

    env = {"np": np, "numba": numba, "threads": numba_parallel._iget_num_threads,
           "contiguous": contiguous, "flat": flat, "flat_in": flat_in}

    def build(source, name, functions, keys, kind):
        namespace = dict(env, **functions)
        # one namespace, so that the entry function finds the parallel one
        fn = numba_basic.numba_njit(
            compile_numba_function_src(source, name, namespace, namespace))
        if any(key is None for key in keys):
            return fn, None
        key = hashlib.sha256(str((kind, source, tuple(keys))).encode()).hexdigest()
        return fn, key

    @numba_basic.register_funcify_and_cache_key(parallel.ParallelElemwise)
    def numba_funcify_ParallelElemwise(op, node, **kwargs):
        functions, keys = {}, []
        for m, (member, member_node) in enumerate(zip(op.members, op.member_nodes(node))):
            serial, serial_key = numba_basic.numba_funcify_and_cache_key(
                member, node=member_node, **kwargs)
            twin = parallel.flat_twin(member_node)
            piece, piece_key = numba_basic.numba_funcify_and_cache_key(
                twin.op, node=twin, **kwargs)
            functions[f"serial_loop{m}"], functions[f"piece_loop{m}"] = serial, piece
            keys += [serial_key, piece_key]
        return build(parallel_source(op, node), "parallel_elemwise", functions, keys,
                     "downhill.ParallelElemwise")

    @numba_basic.register_funcify_and_cache_key(skipguard.FiniteElemwise)
    def numba_funcify_FiniteElemwise(op, node, **kwargs):
        twin = parallel.flat_twin(mask_loop(op.elemwise.make_node(*node.inputs), op.roles),
                                  redirect_all=True)
        piece, piece_key = numba_basic.numba_funcify_and_cache_key(twin.op, node=twin, **kwargs)
        return build(finite_source(node, op.roles), "finite_elemwise", {"piece_loop": piece},
                     [piece_key], "downhill.FiniteElemwise")

    _REGISTERED.append(True)


def _one_element(name, ndim, target, dtype_of):
    """Lines that make ``target``, a one-element vector of input ``name``."""
    if ndim == 1:  # already one
        return [f"    {target} = {name}"]
    index = ", ".join("0" for _ in range(ndim))
    return [f"    {target} = np.empty(1, dtype={dtype_of}.dtype)",
            f"    {target}[0] = {name}[{index}]"]


def parallel_source(op, node):
    """Python source of a :class:`~downhill.parallel.ParallelElemwise`
    node's Numba implementation.

    ``parallel_elemwise(inputs...)`` decides per member whether it runs in
    pieces (``ok``: at least :data:`~downhill.parallel.MIN_SIZE` elements,
    C-contiguous arrays of one shape, and more than one thread) or whole on
    this thread (``serial_loopM``, PyTensor's loop); ``parallel_pieces``
    cuts the elements of the members that run in pieces, end to end, into
    one share per thread, and each thread runs ``piece_loopM`` on the part
    of each member that falls in its share.
    """
    lines, outputs = [], []
    names = [f"i{k}" for k in range(len(node.inputs))]
    lines.append(f"def parallel_elemwise({', '.join(names)}):")
    lines.append("    many = threads() > 1")
    params = []
    start = 0
    for m, (member, member_node) in enumerate(zip(op.members, op.member_nodes(node))):
        mine = names[start:start + len(member_node.inputs)]
        start += len(member_node.inputs)
        full = [not any(var.type.broadcastable) for var in member_node.inputs]
        first = mine[full.index(True)]
        ndim = member_node.outputs[0].type.ndim
        pattern = member.inplace_pattern
        fresh = [k for k in range(len(member_node.outputs)) if k not in pattern]
        ok = [f"contiguous({name})" for name, f in zip(mine, full) if f]
        ok += [f"{name}.shape == {first}.shape" for name, f in zip(mine, full)
               if f and name != first]
        lines.append(f"    n{m} = {first}.size")
        lines.append(f"    ok{m} = many and n{m} >= {parallel.MIN_SIZE} and "
                     + " and ".join(ok))
        outs = [f"o{m}_{k}" if k in fresh else mine[pattern[k]]
                for k in range(len(member_node.outputs))]
        lines.append(f"    if ok{m}:")
        for k in fresh:
            dtype = member_node.outputs[k].type.dtype
            lines.append(f"        o{m}_{k} = np.empty({first}.shape, dtype=np.{dtype})")
        if not fresh:
            lines.append("        pass")
        lines.append("    else:")
        result = f"r{m}"
        lines.append(f"        {result} = serial_loop{m}({', '.join(mine)})")
        for k in fresh:
            taken = result if len(outs) == 1 else f"{result}[{k}]"
            lines.append(f"        o{m}_{k} = {taken}")
        lines.append("        n" + str(m) + " = 0")  # nothing left to do in pieces
        args = []
        for k, (name, f) in enumerate(zip(mine, full)):
            if f:
                args.append(f"flat({name})")
            else:
                lines.extend(_one_element(name, ndim, f"s{m}_{k}", name))
                args.append(f"s{m}_{k}")
        args += [f"flat(o{m}_{k})" for k in fresh]
        params.append((m, full, fresh, args))
        outputs += outs

    flat_args = [f"n{m}" for m, *_ in params] + [a for *_, args in params for a in args]
    lines.append("    if " + " or ".join(f"n{m} > 0" for m, *_ in params) + ":")
    lines.append(f"        parallel_pieces({', '.join(flat_args)})")
    lines.append("    return " + (outputs[0] if len(outputs) == 1
                                  else f"({', '.join(outputs)},)"))
    # the parallel region: the members end to end, one share per thread
    formal = [f"n{m}" for m, *_ in params]
    for m, full, fresh, args in params:
        formal += [f"a{m}_{k}" if f else f"s{m}_{k}" for k, f in enumerate(full)]
        formal += [f"b{m}_{k}" for k in fresh]
    lines += ["", "@numba.njit(parallel=True, no_cpython_wrapper=True, no_cfunc_wrapper=True)",
              f"def parallel_pieces({', '.join(formal)}):",
              "    count = threads()",
              "    total = " + " + ".join(f"n{m}" for m, *_ in params),
              f"    size = ((total + count - 1) // count + {parallel.ALIGN - 1}) "
              f"// {parallel.ALIGN} * {parallel.ALIGN}",
              "    for t in numba.prange(count):",
              "        lo = t * size",
              "        hi = min(lo + size, total)",
              "        base = 0"]
    for m, full, fresh, _ in params:
        sliced = [f"a{m}_{k}[a - base:b - base]" if f else f"s{m}_{k}"
                  for k, f in enumerate(full)]
        sliced += [f"b{m}_{k}[a - base:b - base]" for k in fresh]
        lines += ["        a = max(lo, base)",
                  f"        b = min(hi, base + n{m})",
                  "        if a < b:",
                  f"            piece_loop{m}({', '.join(sliced)})",
                  f"        base += n{m}"]
    return "\n".join(lines) + "\n"


def mask_loop(node, roles):
    """An Elemwise node computing, of ``node``'s outputs, a bit mask of the
    ``"all"`` outputs that are false (bit ``j`` for the ``j``-th of them),
    then the ``"fresh"`` outputs; the ``"drop"`` outputs are not computed."""
    import pytensor.scalar as ps
    from pytensor.tensor.elemwise import Elemwise
    scalar = node.op.scalar_op
    if isinstance(scalar, ps.Composite):
        inner_in, inner_out = list(scalar.inputs), list(scalar.outputs)
    else:
        inner_in = [ps.get_scalar_type(var.type.dtype)() for var in node.inputs]
        inner_out = scalar.make_node(*inner_in).outputs
    counted = [k for k, role in enumerate(roles) if role == "all"]
    dtype = mask_dtype(len(counted))
    mask = None
    for j, k in enumerate(counted):
        bit = ps.cast(ps.invert(inner_out[k]), dtype) * ps.constant(np.asarray(1 << j, dtype))
        mask = bit if mask is None else mask + bit
    outputs = [mask] + [inner_out[k] for k, role in enumerate(roles) if role == "fresh"]
    return Elemwise(ps.Composite(inner_in, outputs)).make_node(*node.inputs)


def mask_dtype(count):
    """The unsigned integer type with a bit for each of ``count`` flags."""
    return next(f"uint{bits}" for bits in (8, 16, 32, 64) if count <= bits)


def finite_source(node, roles):
    """Python source of a :class:`~downhill.skipguard.FiniteElemwise` node's
    Numba implementation: ``finite_elemwise(i0, ...)`` checks the arrays,
    makes the fresh outputs and runs ``chunk`` (sub-blocks of the serial
    loop of :func:`mask_loop`'s twin, the masks or-ed together while in the
    cache) on the whole range, or on one share per thread in
    ``parallel_chunks``."""
    names = [f"i{k}" for k in range(len(node.inputs))]
    full = [not any(var.type.broadcastable) for var in node.inputs]
    first = names[full.index(True)]
    ndim = node.inputs[full.index(True)].type.ndim
    counted = [k for k, role in enumerate(roles) if role == "all"]
    fresh = [k for k, role in enumerate(roles) if role == "fresh"]
    dtype = mask_dtype(len(counted))
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
            lines.extend(_one_element(name, ndim, f"s{k}", name))
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
    piece_args = [f"a{k}[lo:hi]" if full[k] else f"s{k}" for k in range(len(names))]
    piece_args += ["mask[:m]"] + [f"f{k}[lo:hi]" for k in fresh]
    lines += ["", "@numba.njit(no_cpython_wrapper=True, no_cfunc_wrapper=True)",
              f"def chunk(lo0, hi0, {', '.join(params)}):",
              f"    mask = np.empty({skipguard.SUB_BLOCK}, dtype=np.{dtype})",
              "    bad = 0",
              "    lo = lo0",
              "    while lo < hi0:",
              f"        hi = min(lo + {skipguard.SUB_BLOCK}, hi0)",
              "        m = hi - lo",
              f"        piece_loop({', '.join(piece_args)})",
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
              "    for t in numba.prange(count):",
              "        lo = t * size",
              "        hi = min(lo + size, n)",
              "        if lo < hi:",
              f"            found[t] = chunk(lo, hi, {', '.join(params)})",
              "    bad = 0",
              "    for t in range(count):",
              "        bad |= found[t]",
              "    return bad"]
    return "\n".join(lines) + "\n"
