r"""Gradient accumulation: one step from the gradients of several batches.

With ``accumulate=k`` (a setting of the training loop) every ``k`` batches
(*micro-batches*) of the training data make one step. Each micro-batch's
gradient :math:`g_i` is added to a sum weighted by its number of samples
:math:`n_i` (its first input's length along the batch axis); the k-th
micro-batch's call takes the step with

.. math::
    g = \frac{\sum_i n_i\, g_i}{\sum_i n_i}

so that for a loss that is a mean over its batch, k micro-batches of b
samples step as one batch of k b samples does (to rounding). Clipping,
momentum, weight decay, the averages and the non-finite guard act on that
step as on any other; ``opt._params`` are only written by it.

Two compiled functions make a cycle: the *micro* function adds a batch to
the sums (the state variables ``NAME_acc_grad`` and ``acc_weight``), the
*step* function adds the last batch, steps and sets the sums back to
zero. The training loop calls them through a :class:`Cycle`, which counts
the micro-batches of the current cycle in the run state
(``RunState.micro``, saved with a checkpoint), so that a run interrupted
in the middle of a cycle resumes it exactly. The update count, schedules,
``max_updates`` and early stopping count steps; an iteration is still
``iteration_size`` batches of the training data (a pass), so a run with
micro-batches of b and ``accumulate=k`` validates after the same steps as a
run with batches of k b.

Quantities besides the gradient that an algorithm takes from each batch
and that are linear in the loss (ESGD's Hessian-vector products) are
accumulated the same way when the algorithm asks for them through
``Optimizer._linear_term``: the step reads their weighted mean over the
cycle. Random draws that such a term needs (ESGD's vector :math:`v`) are
made once per step: the micro function draws from the generator without
advancing it, the step function draws the same and advances it.

With ``on_nonfinite='skip'`` a micro-batch whose loss, gradient or terms
are not finite is left out of the sums and marks the cycle (the state
``acc_bad``); the cycle's step is then skipped, as one big batch holding
that micro-batch would be, and counted as one skip.
"""

import numpy as np
import pytensor.tensor as pt

from . import nonfinite
from .hyperparams import Hyper
from .util import as_float, log

__all__ = ["HYPERS", "extra_updates", "term", "settle", "Cycle"]

#: The setting of gradient accumulation.
HYPERS = (
    Hyper("accumulate", 1,
          "batches (micro-batches) whose gradients, weighted by their sizes, make one "
          "step; 1 = every batch steps", kind=int, low=1),
)


class _Build:
    """What an accumulation graph is built with: the batch's weight and the
    sum of weights so far; collects the algorithm's linear terms."""

    def __init__(self, weight, total):
        self.weight = weight
        self.total = total
        self.terms = []   # (state variable, this batch's expression)


def _weight(opt, axis):
    """The batch's number of samples as a scalar of the optimizer's dtype."""
    if not opt._inputs:
        return as_float(1, opt._dtype)
    return pt.cast(opt._inputs[0].shape[axis], opt._dtype)


def _graphs(opt, axis):
    """The step and micro update pairs of the current structure, built once."""
    cache = opt.__dict__.setdefault("_accumulation_graphs", {})
    key = (opt._structure(), axis)
    if key in cache:
        return cache[key]
    skip = opt._values["on_nonfinite"] == "skip"
    weight = _weight(opt, axis)
    acc_weight = opt._global_state("acc_weight", 0, opt._dtype)
    build = _Build(weight, acc_weight + weight)
    bad = opt._global_state("acc_bad") if skip else None
    grads, micro, sums = [], [], [acc_weight]
    for param, grad in zip(opt._params, opt._grads):
        acc = opt._state_like(param, "acc_grad")
        n, total = as_float(weight, grad.dtype), as_float(build.total, grad.dtype)
        mean = (acc + n * grad) / total
        if skip:  # a marked cycle's gradient is not finite: the guard skips its step
            mean = mean + pt.switch(pt.gt(bad, 0), as_float(np.nan, grad.dtype),
                                    as_float(0, grad.dtype))
        grads.append(mean)
        micro.append((acc, acc + n * grad))
        sums.append(acc)
    opt._building = build
    try:
        step, clipped = opt._build_updates(grads)
    finally:
        opt._building = None
    terms = [grad for grad in opt._grads]
    for var, expr in build.terms:
        micro.append((var, var + as_float(weight, expr.dtype) * expr))
        sums.append(var)
        terms.append(expr)
    micro.append((acc_weight, build.total))
    if skip:  # a batch that is not finite leaves the sums alone and marks the cycle
        micro = nonfinite.guard(micro, nonfinite.finite_check(terms, opt._loss))
        micro.append((bad, pt.switch(micro.finite, bad, np.int64(1))))
    resets = [(var, pt.zeros_like(var)) for var in sums]
    if skip:
        resets.append((bad, pt.zeros_like(bad)))
    if isinstance(step, nonfinite.Guarded):
        finite = step.finite
        step = nonfinite.Guarded(list(step) + resets)
        step.finite = finite
    else:
        step = list(step) + resets
    cache[key] = (step, micro)
    return cache[key]


def extra_updates(opt):
    """The update pairs of the accumulation graphs, when ``accumulate`` is on.

    ``Optimizer._used_state()`` adds their state (the sums) to
    the step's, so that checkpoints save it.

    Parameters
    ----------
    opt : Optimizer
        The optimizer.

    Returns
    -------
    list of (SharedVariable, expression)
    """
    if opt._values["accumulate"] <= 1:
        return []
    step, micro = _graphs(opt, 0)
    return list(step) + list(micro)


def term(opt, param, name, make):
    """A per-batch quantity linear in the loss; see ``Optimizer._linear_term``.

    Parameters
    ----------
    opt : Optimizer
        The optimizer.
    param : SharedVariable
        The parameter it belongs to.
    name : str
        Its name, for its sum's state variable (``NAME_acc_<name>``).
    make : callable
        ``make(grad)`` builds it from the parameter's unclipped gradient of
        one batch.

    Returns
    -------
    pytensor expression
        ``make`` of the batch's gradient, or, while an accumulation graph is
        built, the weighted mean over the cycle's micro-batches.
    """
    grad = opt._grads[opt._variables.index(param)]
    expr = make(grad)
    build = getattr(opt, "_building", None)
    if build is None:
        return expr
    acc = opt._state_like(param, f"acc_{name}")
    build.terms.append((acc, expr))
    n, total = as_float(build.weight, expr.dtype), as_float(build.total, expr.dtype)
    return (acc + n * expr) / total


def settle(opt):
    """Before a run without accumulation: drop an unfinished cycle, if any.

    A run with ``accumulate`` that ended in the middle of a cycle leaves its
    sums in the state for the next run to finish; a run that takes every
    batch as a step drops them (with a warning) instead of holding them.

    Parameters
    ----------
    opt : Optimizer
        The optimizer.
    """
    run = opt._run
    if opt._values["accumulate"] > 1 or not run.micro:
        return
    log.warning("accumulate=1: the unfinished step of %d micro-batch(es) is dropped",
                run.micro)
    for (_, suffix), var in opt._state.items():
        if suffix.startswith("acc_"):
            var.set_value(np.zeros_like(var.get_value()))
    run.micro = 0


class Cycle:
    """The training loop's step when each step takes ``accumulate`` batches.

    Made by the training loop for a run; called like a step function, once
    per batch, it calls the micro function or, for the cycle's last batch,
    the step function, and says which (``stepped``).

    Attributes
    ----------
    stepped : bool
        Whether the latest call took the step (else it added a micro-batch).
    step, micro : pytensor Function
        The step function and the micro-batch function.

    Parameters
    ----------
    opt : Optimizer
        The optimizer (its settings, run state and compiled functions).
    dataset : Dataset
        The training data (its batch axis gives the batches' weights).
    """

    def __init__(self, opt, dataset):
        self._opt = opt
        kind = getattr(dataset, "kind", None)
        self.axis = getattr(dataset, "axis", 0) if kind == "arrays" else 0
        self.stepped = False
        self.names = list(opt._monitor_names)
        self.guarded = opt._values["on_nonfinite"] == "skip"
        self.step, self.micro = self._compile()
        self._call_step, self._call_micro = self.step, self.micro
        self._links = ()
        self.k = opt._values["accumulate"]

    def _compile(self):
        opt = self._opt
        cache = opt.__dict__.setdefault("_accumulation_functions", {})
        key = (opt._structure(), opt._mode, self.axis)
        if key not in cache:
            step, micro = _graphs(opt, self.axis)
            outputs = [opt._loss] + opt._monitor_exprs
            label = type(opt).__name__
            made = []
            for updates, name in ((step, "step"), (micro, "micro")):
                extra = [updates.finite] if self.guarded else []
                log.info("compiling %s %s function (accumulate)", label, name)
                made.append(opt._functions.make(
                    outputs + extra, opt._user_updates + list(updates),
                    f"{label}_accumulate_{name}"))
            cache[key] = tuple(made)
        return cache[key]

    @property
    def functions(self):
        """The step and micro functions, compiled."""
        return [self.step, self.micro]

    @property
    def starting(self):
        """Whether the next batch begins a cycle (schedules are applied then)."""
        return self._opt._run.micro == 0

    def feed(self, functions, dataset, batches):
        """The callable and the batches of one pass (see ``Functions.feed``).

        Parameters
        ----------
        functions : downhill.compiled.Functions
            The optimizer's compiled functions.
        dataset : Dataset
            The training data.
        batches : iterator
            The pass's batches as arguments.

        Returns
        -------
        self, iterator
            This cycle, ready to call, and the batches with their weights.
        """
        # the micro function first: in JAX mode a generator's state is then
        # fetched from the step function's copy, which advances it
        self._call_micro = functions.also(self.micro, dataset)
        self._call_step, batches = functions.feed(self.step, dataset, batches)
        self._links = _generator_links(self._call_step, self._call_micro)
        return self, batches

    def __call__(self, *batch):
        run = self._opt._run
        if run.micro + 1 >= self.k:
            values = self._call_step(*batch)
            run.micro = 0
            self.stepped = True
            for step_copy, micro_copy in self._links:
                micro_copy[0] = step_copy[0]  # JAX: the micro function draws as the next step
        else:
            values = self._call_micro(*batch)
            run.micro += 1
            self.stepped = False
        return values


def _generator_links(step, micro):
    """JAX mode: pairs of the storages of the two functions' copies of each
    shared generator (the micro function's copy must follow the step's)."""
    linker = getattr(getattr(step, "maker", None), "linker", None)
    step_rngs = dict((id(var), storage) for var, storage in getattr(linker, "rngs", ()))
    if not step_rngs:
        return ()
    micro_rngs = getattr(micro.maker.linker, "rngs", ())
    return tuple((step_rngs[id(var)], storage) for var, storage in micro_rngs
                 if id(var) in step_rngs)
