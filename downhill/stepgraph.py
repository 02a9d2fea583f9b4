r"""The update graph of one optimization step, assembled around the algorithm.

:func:`build` is what ``Optimizer._build_updates`` does: it clips the
gradients (``downhill.clipping``), calls the algorithm's hooks
(``_global_updates`` once, ``_step`` and ``_after_step`` per parameter),
adds momentum or Nesterov momentum and decoupled weight decay around each
step, the averages of :mod:`downhill.averaging`, the non-finite guard of
``on_nonfinite='skip'`` (``downhill.nonfinite``) and the update counter's
and graph schedules' updates (:mod:`downhill.settings`). Every
hyperparameter is read for its parameter (``Optimizer._hyper``), so a
parameter group's values (:mod:`downhill.groups`) apply to its parameters,
switches (momentum, weight decay, clipping) included:

.. math::
    v &\leftarrow \mu v - \delta, \qquad
    p \leftarrow p + v \quad (\text{Nesterov: } p + \mu v - \delta) \\
    p &\leftarrow p - \alpha \lambda p_{\text{before}}
"""

from . import averaging, clipping, nonfinite

__all__ = ["build"]


def build(opt, grads=None):
    """Update pairs of one step, and the clipped gradients they used.

    Parameters
    ----------
    opt : Optimizer
        The optimizer: its parameters, hooks, values in force and groups.
    grads : list of expressions, optional
        One gradient per parameter; default the loss's (gradient
        accumulation gives the accumulated ones).

    Returns
    -------
    updates : list of (SharedVariable, expression)
        New values of the parameters, the algorithm's state, the averages,
        and the update counter.
    clipped : list of expressions
        The gradients after clipping.
    """
    grads = opt._grads if grads is None else grads
    groups = opt._groups
    updates = list(opt._global_updates())
    limits = {name: opt._settings.graph_value(name) for name in clipping.LIMITS}
    clipped = clipping.clip_gradients(grads, opt._values, limits, opt._dtype,
                                      each=groups.clipping(opt._params, opt._values, limits))
    steps = []
    for param, grad in zip(opt._params, clipped):
        momentum = groups.on(param, "momentum")
        nesterov = momentum and opt._values["nesterov"]
        delta, state = opt._step(param, grad)
        updates.extend(state)
        if not momentum:
            new = param - delta
        else:
            mu = opt._hyper("momentum", param)
            vel = opt._state_like(param, "vel")
            vel_new = mu * vel - delta
            updates.append((vel, vel_new))
            new = param + mu * vel_new - delta if nesterov else param + vel_new
        if groups.on(param, "weight_decay"):
            new = new - (opt._hyper("learning_rate", param)
                         * opt._hyper("weight_decay", param) * param)
        new, after = opt._after_step(param, new)  # e.g. Lookahead's slow weights
        updates.extend(after)
        updates.append((param, new))
        steps.append((param, new))
    updates.extend(averaging.updates(opt, steps))
    if opt._values["on_nonfinite"] == "skip":
        updates = nonfinite.guard(updates, opt._finite_check(grads))
    # the update counter and the schedules' values in force: a skipped step counts
    updates.extend(opt._settings.graph_updates())
    updates.extend(groups.graph_updates())
    return updates, clipped
