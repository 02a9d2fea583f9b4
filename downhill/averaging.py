r"""Averaged weights and the evaluation point.

**Averages.** With ``average='ema'`` or ``'polyak'`` the step graph also
keeps, per parameter, an average of the values the parameter takes after
each step (the state variable ``NAME_avg``, with the count of averaged
steps ``avg_count``). With :math:`p'` the parameter after a step,
:math:`\bar p` its average, :math:`n` the steps averaged so far,
:math:`t` the updates done before this one and :math:`s` =
``average_start``:

.. math::
    \bar p &\leftarrow \begin{cases}
        p' & t < s \text{ or } n = 0 \\
        \gamma \bar p + (1 - \gamma)\, p' & \text{ema} \\
        \bar p + (p' - \bar p) / (n + 1) & \text{polyak}
        \end{cases} \\
    n &\leftarrow n + [t \ge s]

where :math:`\gamma = e^{-\ln 2 / h}` for ``average_halflife`` :math:`h`.
Until update :math:`s` the average follows the parameter; from there on
the exponential average (Keras' ``use_ema``, ``torch.optim.swa_utils``'s
EMA) or the running mean of the iterates (Polyak and Juditsky 1992; SWA's
``AveragedModel``) starts from the parameter's value. The update count
:math:`t` is the state scalar ``avg_clock``, advanced by every step (also
a skipped one, as the loop's update count) and set to the loop's count
when a run starts.

**The evaluation point.** An optimizer may validate other values than the
ones its step moves: the average here, Schedule-Free's averaged iterate
:math:`x` or Lookahead's slow weights elsewhere. The hook
``Optimizer._evaluation_point()`` names them (one shared
variable per parameter, or None for the parameters themselves); validation,
early stopping and the best parameters kept read them
(:func:`evaluation_point`, :func:`at_point`), and when a run ends
:func:`finish` puts the chosen values into the parameters
(``final_params``).
"""

import numpy as np
import pytensor.tensor as pt
from pytensor.graph.replace import clone_replace

from .hyperparams import Hyper
from .util import as_float, halflife_to_decay

__all__ = ["HYPERS", "check", "updates", "clock_updates", "evaluation_point", "at_point",
           "begin_run", "finish"]

#: The hyperparameters of averaging and of what validation reads.
HYPERS = (
    Hyper("average", "none",
          "keep an average of the parameters: 'none', 'ema' (exponential, by "
          "average_halflife) or 'polyak' (the running mean of the iterates)",
          kind=str, choices=("none", "ema", "polyak"), structural=True),
    Hyper("average_halflife", 100.0,
          "with average='ema': half-life in updates of the average",
          low=0, low_open=True, shared="average_decay", transform=halflife_to_decay),
    Hyper("average_start", 0,
          "update from which the average starts (it equals the parameters until then)",
          kind=int, low=0, structural=True),
    Hyper("validate_on", "params",
          "what validation, early stopping and the best parameters read: 'params' "
          "or 'average'", kind=str, choices=("params", "average")),
    Hyper("final_params", "best",
          "what the parameters hold when a run ends: 'best' (the best validated "
          "values), 'average' (the average as it stands) or 'last' (the last step's)",
          kind=str, choices=("best", "average", "last")),
)


def check(values):
    """Check that averaging and what reads it fit together.

    Parameters
    ----------
    values : dict
        The hyperparameter values in force.

    Raises
    ------
    ValueError
        If ``validate_on='average'`` or ``final_params='average'`` is asked
        for without an average.
    """
    if values["average"] != "none":
        return
    for name in ("validate_on", "final_params"):
        if values[name] == "average":
            raise ValueError(
                f"invalid {name}: 'average' needs an average of the parameters: pass "
                "average='ema' (with average_halflife=...) or average='polyak'")


def updates(opt, steps):
    """The average's update pairs for one step.

    Parameters
    ----------
    opt : Optimizer
        The optimizer (its values in force and state variables).
    steps : list of (SharedVariable, expression)
        Each parameter and its new value.

    Returns
    -------
    list of (SharedVariable, expression)
        New values of each ``NAME_avg`` and of ``avg_count``; empty
        without averaging.
    """
    kind = opt._values["average"]
    if kind == "none" or not steps:
        return []
    count = opt._global_state("avg_count")
    start = opt._values["average_start"]
    first = pt.eq(count, 0)
    follow, active = first, None
    if start > 0:  # not started yet: the average follows the parameter
        active = pt.ge(opt._global_state("avg_clock"), start)
        follow = pt.or_(first, pt.lt(opt._global_state("avg_clock"), start))
    pairs = []
    for param, new in steps:
        avg = opt._state_like(param, "avg")
        if kind == "ema":
            gamma = opt._hyper("average_decay", param)
            mean = gamma * avg + (as_float(1, param.dtype) - gamma) * new
        else:
            mean = avg + (new - avg) / as_float(count + 1, param.dtype)
        pairs.append((avg, pt.switch(follow, new, mean)))
    pairs.append((count, count + 1 if active is None else count + pt.cast(active, "int64")))
    return pairs


def clock_updates(opt):
    """The update counter's pair, when ``average_start`` needs it.

    It advances with every step, applied or skipped, so it goes outside the
    non-finite guard.

    Parameters
    ----------
    opt : Optimizer
        The optimizer.

    Returns
    -------
    list of (SharedVariable, expression)
    """
    if opt._values["average"] == "none" or opt._values["average_start"] == 0:
        return []
    clock = opt._global_state("avg_clock")
    return [(clock, clock + 1)]


def evaluation_point(opt):
    """The default evaluation point: the averages with ``validate_on='average'``.

    Parameters
    ----------
    opt : Optimizer
        The optimizer.

    Returns
    -------
    list of SharedVariable or None
        One average per parameter, or None (the parameters themselves).
    """
    values = opt._values
    if values["validate_on"] != "average":
        return None
    check(values)
    return [opt._state_like(p, "avg") for p in opt._params]


def at_point(opt, point, outputs, updates):
    """Outputs and updates of a function that reads ``point`` for the parameters.

    Parameters
    ----------
    opt : Optimizer
        The optimizer (its parameters).
    point : list of SharedVariable or None
        The evaluation point (None: the parameters, nothing changes).
    outputs : list of expressions
        The loss and monitors.
    updates : list of (SharedVariable, expression)
        The function's extra updates (a random generator's).

    Returns
    -------
    outputs, updates
        Cloned with each parameter replaced by its point's variable.
    """
    if point is None:
        return outputs, updates
    replace = dict(zip(opt._params, point))
    cloned = clone_replace(list(outputs) + [e for _, e in updates], replace=replace)
    return cloned[:len(outputs)], [(v, e) for (v, _), e in zip(updates, cloned[len(outputs):])]


def begin_run(opt, run):
    """Before a run's first step: the clock at the loop's update count, and an
    average that has not started equal to its parameter.

    Parameters
    ----------
    opt : Optimizer
        The optimizer, its step graph built.
    run : RunState
        The run (its update count).
    """
    if opt._values["average"] == "none":
        return
    clock = opt._state.get((None, "avg_clock"))
    if clock is not None:
        clock.set_value(np.asarray(run.updates, dtype=clock.dtype))
    count = opt._state.get((None, "avg_count"))
    if count is not None and int(count.get_value()) == 0:
        for param in opt._params:
            opt._state_like(param, "avg").set_value(param.get_value())


def finish(opt):
    """Put the values ``final_params`` chooses into the parameters at a run's end.

    ``'best'``: the best validated values (the evaluation point's, if it is
    not the parameters), unless they are in place; ``'average'``: the
    average as it stands; ``'last'``: nothing changes.

    Parameters
    ----------
    opt : Optimizer
        The optimizer.
    """
    choice = opt._values["final_params"]
    if choice == "last":
        return
    if choice == "average":
        opt.set_params([opt._state_like(p, "avg").get_value() for p in opt._params])
        return
    if opt._run.best_in_place() and opt._evaluation_point() is None:
        return  # the parameters in place are the best ones
    opt.set_params("best")
