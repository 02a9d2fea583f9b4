"""Argument checks: the loss, parameters, inputs, updates, monitors, compile
modes, hyperparameter names, counts and batch sizes given to an optimizer.

Each check either returns the argument in the form the rest of the library
uses or raises one ``ValueError`` that names the offending item and what
would be accepted, so the optimizer's own code reads as its algorithm.
"""

import numbers

import numpy as np
import pytensor
from pytensor.compile.sharedvalue import SharedVariable
from pytensor.graph.basic import Constant, Variable

from . import util

__all__ = [
    "check_loss",
    "check_mode",
    "check_monitors",
    "check_updates",
    "check_params",
    "check_inputs",
    "check_graph",
    "check_gradients",
    "add_gradient_monitors",
    "check_hypers",
    "check_count",
    "check_batch_size",
    "check_axis",
    "input_order_hint",
]


def check_loss(loss, grads=None):
    """Check that the loss is a float scalar expression.

    Parameters
    ----------
    loss : object
        What the caller gave as the loss.
    grads : object, optional
        Gradients given instead; then the loss may be None.

    Returns
    -------
    pytensor Variable or None
        The loss, unchanged.

    Raises
    ------
    ValueError
        If it is not a PyTensor expression, not 0-d, or not of float dtype.
    """
    if loss is None and grads is not None:
        return None
    if loss is None:
        raise ValueError("no loss given: pass a scalar PyTensor expression, or grads=[...] "
                         "with params=[...]")
    if not isinstance(loss, Variable):
        raise ValueError(
            f"loss must be a scalar PyTensor expression, got {type(loss).__name__}")
    if loss.ndim != 0:
        shape = tuple("?" if s is None else s for s in loss.type.shape)
        raise ValueError(
            f"loss must be a scalar expression, but it is {loss.ndim}-d with shape "
            f"{shape}; reduce it, e.g. with .mean() or .sum()")
    if not loss.dtype.startswith("float"):
        raise ValueError(f"loss must have a float dtype, got {loss.dtype}")
    return loss


def check_mode(mode):
    """Check that PyTensor knows a compile mode.

    Parameters
    ----------
    mode : str, pytensor Mode or None
        A compile mode (None: PyTensor's default).

    Returns
    -------
    str, pytensor Mode or None
        The mode, unchanged.

    Raises
    ------
    ValueError
        If PyTensor does not know it.
    """
    if mode is not None:
        if not isinstance(mode, (str, pytensor.compile.mode.Mode)):
            raise ValueError(
                f"unknown compile mode {mode!r}: a mode is a name such as 'NUMBA', 'CVM', "
                "'JAX' or a pytensor Mode")
        try:
            pytensor.compile.mode.get_mode(mode)
        except (ValueError, TypeError, AttributeError) as error:
            raise ValueError(f"unknown compile mode {mode!r}: {error}") from None
    return mode


def check_monitors(monitors):
    """Check named monitor expressions.

    Parameters
    ----------
    monitors : dict or sequence of (str, expression) pairs
        The monitors the caller gave.

    Returns
    -------
    names : list of str
        ``'loss'`` first, then each monitor's name.
    exprs : list of pytensor Variable
        The monitors' expressions, in the same order (without the loss).

    Raises
    ------
    ValueError
        For an item that is not a (str, scalar expression) pair, or a name
        used twice.
    """
    if isinstance(monitors, dict):
        monitors = list(monitors.items())
    names, exprs = ["loss"], []
    for i, item in enumerate(monitors):
        if not (isinstance(item, (tuple, list)) and len(item) == 2):
            raise ValueError(
                f"monitor {i} must be a (name, expression) pair, got {item!r}")
        name, expr = item
        if not isinstance(name, str) or not isinstance(expr, Variable):
            raise ValueError(
                f"monitor {i} must be a (str, PyTensor expression) pair, "
                f"got ({type(name).__name__}, {type(expr).__name__})")
        if name in names:
            raise ValueError(f"monitor name {name!r} is used twice ('loss' is reserved)")
        if expr.ndim != 0:
            raise ValueError(
                f"monitor {name!r} must be a scalar expression, but it is {expr.ndim}-d")
        names.append(name)
        exprs.append(expr)
    return names, exprs


def check_updates(updates):
    """Check extra (shared variable, expression) updates.

    Parameters
    ----------
    updates : dict or sequence of pairs
        The updates the caller gave.

    Returns
    -------
    list of tuple
        The pairs.

    Raises
    ------
    ValueError
        For an item that is not a pair, or a variable updated twice.
    """
    if isinstance(updates, dict):
        updates = list(updates.items())
    pairs = []
    for i, item in enumerate(updates):
        if not (isinstance(item, (tuple, list)) and len(item) == 2
                and isinstance(item[0], SharedVariable)):
            raise ValueError(
                f"update {i} must be a (shared variable, expression) pair, got {item!r}")
        for j, (var, _) in enumerate(pairs):
            if var is item[0]:
                raise ValueError(
                    f"update {i} (of {var.name!r}) updates a variable that is also the "
                    f"target of update {j}; a variable can have one update")
        pairs.append(tuple(item))
    return pairs


def check_params(params, updates=()):
    """Check the parameters to optimize.

    Parameters
    ----------
    params : sequence of SharedVariable
        The parameters.
    updates : sequence of pairs, optional
        The checked extra updates: a parameter may not be one's target.

    Returns
    -------
    list of SharedVariable
        The parameters.

    Raises
    ------
    ValueError
        If there are none, one is not a float shared variable, one is
        given twice or is also the target of an update.
    """
    params = list(params)
    if not params:
        raise ValueError(
            "no parameters to optimize: the loss depends on no shared variable of "
            "float dtype; create them with pytensor.shared(...) or pass params=[...]")
    for i, p in enumerate(params):
        if not isinstance(p, SharedVariable) or not str(p.dtype).startswith("float"):
            raise ValueError(
                f"parameter {i} must be a float shared variable (pytensor.shared), "
                f"got {p!r} of type {type(p).__name__}")
        if any(q is p for q in params[:i]):
            raise ValueError(f"parameter {i} ({p.name!r}) is given twice")
        for j, (var, _) in enumerate(updates):
            if var is p:
                raise ValueError(
                    f"parameter {i} ({p.name!r}) is also the target of update {j}; "
                    "the optimizer updates its parameters itself")
    return params


def check_inputs(inputs, outputs):
    """Check explicit inputs against the graphs that need them.

    Parameters
    ----------
    inputs : sequence of pytensor Variable
        The symbolic inputs, in the order data arrays will be given.
    outputs : sequence of pytensor Variable
        Every expression computed from them (loss, monitors, updates).

    Returns
    -------
    list of pytensor Variable
        The inputs.

    Raises
    ------
    ValueError
        For an input that is shared or constant, given twice, or unused, and
        for a root of the graph that is not among the inputs.
    """
    inputs = list(inputs)
    for i, v in enumerate(inputs):
        if not isinstance(v, Variable) or isinstance(v, (SharedVariable, Constant)):
            raise ValueError(
                f"input {i} must be a symbolic variable such as pt.matrix('x'), "
                f"not {type(v).__name__}")
        if any(u is v for u in inputs[:i]):
            raise ValueError(f"input {i} ({v.name!r}) is given twice")
    # the graph's roots, given inputs counting as roots (they may be intermediate)
    roots = util._roots(outputs, stop=inputs)
    given = {id(v) for v in inputs}
    for v in roots:
        if id(v) not in given and not isinstance(v, (SharedVariable, Constant)):
            raise ValueError(
                f"the loss (or a monitor or update) needs the input {v.name!r}, which is "
                f"not in inputs {[u.name for u in inputs]}")
    used = {id(v) for v in roots}
    for i, v in enumerate(inputs):
        if id(v) not in used:
            raise ValueError(
                f"input {i} ({v.name!r}) is not used by the loss, the monitors or the "
                "updates")
    return inputs


def check_graph(loss, params, inputs, updates, monitors, grads=None):
    """Find or check the parameters and inputs of a loss or of given gradients.

    Parameters
    ----------
    loss : pytensor Variable or None
        The checked loss (None when only gradients are given).
    params : sequence of SharedVariable or None
        The parameters; None finds every float shared variable the loss
        depends on (except targets of ``updates``). Needed with ``grads``.
    inputs : sequence of pytensor Variable or None
        The inputs; None finds every root of the loss, then of the monitors
        and updates, that is neither shared nor constant, in order of first
        appearance in a left-to-right depth-first walk.
    updates : list of pairs
        The checked extra updates.
    monitors : list of pytensor Variable
        The checked monitor expressions.
    grads : list of pytensor Variable, optional
        Gradient expressions given instead of (or beside) the loss.

    Returns
    -------
    params : list of SharedVariable
    inputs : list of pytensor Variable

    Raises
    ------
    ValueError
        As :func:`check_params` and :func:`check_inputs`, for a parameter
        the loss does not depend on, and for gradients without parameters.
    """
    if grads is not None and params is None:
        raise ValueError(
            "gradients were given without parameters: pass params=[...], one shared "
            "variable per gradient, in the same order")
    main = ([] if loss is None else [loss]) + list(grads or [])
    found_inputs, found_params = util.find_inputs_and_params(*main)
    targets = {id(var) for var, _ in updates}
    found_params = [p for p in found_params if id(p) not in targets]
    params = check_params(found_params if params is None else params, updates)
    others = [*monitors, *(expr for _, expr in updates)]
    if inputs is None:
        extra, _ = util.find_inputs_and_params(*others)
        known = {id(v) for v in found_inputs}
        inputs = found_inputs + [v for v in extra if id(v) not in known]
    inputs = check_inputs(inputs, [*main, *others])
    if grads is None:
        used = {id(v) for v in util._roots([loss])}
        for i, p in enumerate(params):
            if id(p) not in used:
                raise ValueError(
                    f"parameter {i} ({p.name!r}) is not optimizable: the loss does not "
                    "depend on it")
    return params, inputs


def check_gradients(grads, params):
    """Check gradient expressions given for the parameters.

    Parameters
    ----------
    grads : sequence of pytensor Variable
        One gradient per parameter, in the parameters' order.
    params : list of SharedVariable
        The checked parameters.

    Returns
    -------
    list of pytensor Variable
        The gradients, each cast to its parameter's dtype.

    Raises
    ------
    ValueError
        If the counts differ, or a gradient is not a float expression of
        its parameter's number of dimensions.
    """
    if isinstance(grads, Variable) or not hasattr(grads, "__iter__"):
        raise ValueError(
            f"grads must be a list of expressions, one per parameter, got "
            f"{type(grads).__name__}")
    grads = list(grads)
    if len(grads) != len(params):
        raise ValueError(
            f"got {len(grads)} gradient expressions for {len(params)} parameters")
    checked = []
    for i, (g, p) in enumerate(zip(grads, params)):
        if not isinstance(g, Variable) or not str(g.dtype).startswith("float"):
            raise ValueError(
                f"gradient {i} (of {p.name!r}) must be a float PyTensor expression, got "
                f"{type(g).__name__}")
        if g.ndim != p.ndim:
            raise ValueError(
                f"gradient {i} (of {p.name!r}) is {g.ndim}-d, but the parameter is "
                f"{p.ndim}-d")
        checked.append(util.as_float(g, p.dtype))
    return checked


def add_gradient_monitors(names, exprs, keys, grads):
    """Add a monitor ``grad(KEY)``, the squared norm of its gradient, per parameter.

    Parameters
    ----------
    names, exprs : list
        The checked monitors' names and expressions, extended in place.
    keys : list of str
        The parameters' unique names.
    grads : list of pytensor Variable
        Their gradients.

    Raises
    ------
    ValueError
        If a user monitor already has one of these names.
    """
    for key, grad in zip(keys, grads):
        if f"grad({key})" in names:
            raise ValueError(
                f"monitor name 'grad({key})' is used twice (monitor_gradients makes it)")
        names.append(f"grad({key})")
        exprs.append((grad * grad).sum())


def check_hypers(declared, given, owner):
    """Validate hyperparameter values against their declarations.

    Parameters
    ----------
    declared : dict of str to Hyper
        The algorithm's declarations.
    given : dict
        Names and values the caller gave.
    owner : str
        The algorithm's name, for messages.

    Returns
    -------
    dict
        The values converted to their declared kinds.

    Raises
    ------
    TypeError
        For an unknown name (suggesting the closest known one).
    ValueError
        For a value outside its allowed range.
    """
    checked = {}
    for name, value in given.items():
        if name not in declared:
            raise util.unknown_name_error(name, declared, f"hyperparameter for {owner}")
        checked[name] = declared[name].validate(value)
    return checked


def check_count(name, value, low=0, optional=False):
    """Check an integer count such as ``max_updates`` or ``checkpoint_every``.

    Parameters
    ----------
    name : str
        The argument's name, for the message.
    value : object
        What the caller gave.
    low : int, optional
        The smallest allowed value.
    optional : bool, optional
        Whether None is allowed.

    Returns
    -------
    int or None
        The value as a Python int.

    Raises
    ------
    ValueError
        For a non-integer or a value below ``low``.
    """
    if value is None and optional:
        return None
    if not _integer(value) or value < low:
        raise ValueError(f"invalid {name}: {value!r} (must be an integer >= {low})")
    return int(value)


def _integer(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def check_batch_size(value):
    """Check a batch size: an integer; 0 or less means one batch of everything.

    Parameters
    ----------
    value : object
        What the caller gave (a numpy integer is accepted).

    Returns
    -------
    int
        The value as a Python int.

    Raises
    ------
    ValueError
        For anything else: a string, a float (2.5 is not silently 2), NaN.
    """
    if not _integer(value):
        raise ValueError(
            f"invalid batch_size: {value!r} (must be an integer; 0 or less means one "
            "batch of all the samples)")
    return int(value)


def check_axis(value):
    """Check the axis a dataset batches along: an integer.

    Parameters
    ----------
    value : object
        What the caller gave.

    Returns
    -------
    int

    Raises
    ------
    ValueError
        For a non-integer such as ``"0"``.
    """
    if not _integer(value):
        raise ValueError(f"invalid axis: {value!r} (must be an integer, e.g. 0)")
    return int(value)


def input_order_hint(variables, arrays):
    """Advice for data that does not fit the inputs: the order the loss has them in.

    Parameters
    ----------
    variables : list of pytensor Variable
        The inputs, in the order the data is taken (found in the graph, or
        given as ``inputs=``).
    arrays : list
        The arrays given, one per input.

    Returns
    -------
    str
        Empty, or a sentence to append to the error: the inputs' order and
        numbers of dimensions, and when another order fits the arrays,
        ``inputs=[...]`` in that order. ``minimize(loss, [X, y])`` for a
        loss that mentions ``t`` before ``x`` takes the arrays as ``[t, x]``.
    """
    import itertools

    ndims = [getattr(a, "ndim", None) for a in arrays]
    wanted = [getattr(v.type, "ndim", None) for v in variables]
    if len(ndims) != len(wanted) or None in ndims or None in wanted or len(ndims) > 8 \
            or ndims == wanted:
        return ""
    names = [v.name or f"<input {i}>" for i, v in enumerate(variables)]
    text = (f". The loss's inputs are taken in the order [{', '.join(names)}] "
            f"({', '.join(f'{n}-d' for n in wanted)}); the arrays given are "
            f"{', '.join(f'{n}-d' for n in ndims)}")
    for order in itertools.permutations(range(len(variables))):
        if list(order) != list(range(len(order))) and \
                all(wanted[j] == ndims[i] for i, j in enumerate(order)):
            text += (f": to take them in another order, pass "
                     f"inputs=[{', '.join(names[j] for j in order)}] (to minimize, "
                     "build or the optimizer)")
            break
    return text
