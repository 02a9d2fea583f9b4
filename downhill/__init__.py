"""downhill: stochastic gradient optimizers for PyTensor losses.

The usual entry point is :func:`minimize`; :func:`build` gives an optimizer
for finer control (``opt.iterate(...)``, ``opt.get_updates()``).
"""

import logging
import numbers

import numpy as np

from . import checkpoint, schedules
from .algorithms import (ADADELTA, ADAGRAD, ESGD, LAMB, LARS, NAG, SGD, AdaBelief, Adafactor,
                         AdagradWindow, Adam, Adamax, AMSGrad, Lion, Lookahead, NAdam, RAdam,
                         RMSProp, RProp, ScheduleFreeAdamW, ScheduleFreeSGD, Yogi)
from .base import Optimizer
from .dataset import Dataset
from .functional import updates
from .registry import ALGORITHMS, build, register
from .util import DownhillWarning

__version__ = "0.5.0"

__all__ = [
    "ADADELTA", "ADAGRAD", "ALGORITHMS", "AMSGrad", "AdaBelief", "Adafactor", "AdagradWindow",
    "Adam", "Adamax", "Dataset", "DownhillWarning", "ESGD", "LAMB", "LARS", "Lion", "Lookahead",
    "NAG", "NAdam", "Optimizer", "RAdam", "RMSProp", "RProp", "SGD", "ScheduleFreeAdamW",
    "ScheduleFreeSGD", "Yogi",
    "build", "checkpoint", "minimize", "register", "schedules", "updates", "__version__",
]

logging.getLogger("downhill").addHandler(logging.NullHandler())


def minimize(loss, train=None, valid=None, params=None, inputs=None, algo="rmsprop",
             updates=(), monitors=(), monitor_gradients=False, batch_size=32,
             train_batches=None, valid_batches=None, rng=None, groups=None, freeze=None,
             **hyperparameters):
    """Minimize a loss with one call.

    Parameters
    ----------
    loss : pytensor scalar expression
        The loss to minimize.
    train : Dataset, array, list of arrays, iterable of batches, callable or None
        Training data: one array per input of the loss (a bare array for a
        loss with one input), or anything :class:`Dataset` takes (None if
        the loss has no inputs).
    valid : same as ``train``, optional
        Validation data; defaults to ``train`` (for arrays with
        ``valid_batches``, that many shuffled batches of them).
    params, inputs, updates, monitors, monitor_gradients
        As for :class:`Optimizer`.
    algo : str, optional
        Algorithm name (case-insensitive), default ``'rmsprop'``.
    batch_size : int, optional
        Samples per batch when arrays are given; default 32.
    train_batches, valid_batches : int, optional
        Batches per training iteration and per validation (default: one
        full pass).
    rng : int, numpy.random.Generator or numpy.random.RandomState, optional
        Seed or generator for shuffling arrays (as :class:`Dataset`'s
        ``rng``): the same seed gives the same run. Default: unseeded.
    groups, freeze : optional
        Parameter groups and frozen parameters, as for :class:`Optimizer`.
    **hyperparameters
        Hyperparameters of the algorithm and the loop, ``max_updates``, and
        the other keywords of :meth:`Optimizer.iterate`, e.g.
        ``progressbar``: None (default) shows the progress display
        (:mod:`downhill.progress`) when stderr is a terminal or in a
        notebook, False never, True always.

    Returns
    -------
    train_monitors : dict
        Monitors of the last training iteration.
    valid_monitors : dict
        Monitors of the last validation.
    """
    if isinstance(rng, np.random.RandomState):
        shuffling = rng  # as downhill 0.4: one generator for both
    elif isinstance(rng, bool) or not isinstance(
            rng, (numbers.Integral, np.random.Generator, type(None))):
        raise ValueError(f"rng must be an int seed, a numpy.random.Generator or a "
                         f"numpy.random.RandomState, got {rng!r}")
    else:
        shuffling = np.random.default_rng(rng)

    def wrap(data, name, batches):
        if data is None or isinstance(data, Dataset):
            return data
        # train draws from the generator itself, a shuffled valid from a child of it
        generator = shuffling if name == "train" or not hasattr(shuffling, "spawn") \
            else shuffling.spawn(1)[0]
        dataset = Dataset(data, name=name, batch_size=batch_size, iteration_size=batches,
                          rng=generator)
        # validation covers all the data in order, unless a subset is asked for
        ordered = name == "valid" and batches is None
        return dataset.in_order() if ordered else dataset

    if valid is None and valid_batches is not None and (
            isinstance(train, (list, tuple)) or hasattr(train, "shape")):
        valid = train  # validate on the training data, valid_batches at a time
    opt = build(algo, loss, params=params, inputs=inputs, updates=updates,
                monitors=monitors, monitor_gradients=monitor_gradients, groups=groups,
                freeze=freeze)
    return opt.minimize(wrap(train, "train", train_batches),
                        wrap(valid, "valid", valid_batches), **hyperparameters)
