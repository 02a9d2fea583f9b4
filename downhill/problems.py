"""Example problems shared by the command line, the examples and the docs.

Each entry of :data:`PROBLEMS` builds a fresh :class:`Problem` (new shared
variables, data and starting point drawn from a seed), so the same problem
can be optimized by several algorithms from the same start. :func:`train`
runs one algorithm on a problem and records a :class:`History` for plotting.

The digits problems need scikit-learn (``pip install 'downhill[data]'``);
its 8x8 digits are bundled with it, so nothing is downloaded.
"""

import numpy as np
import pytensor
import pytensor.tensor as pt

from .registry import build
from .dataset import Dataset
from .util import unknown_name_error

__all__ = [
    "PROBLEMS", "SUGGESTED", "Problem", "History", "make_problem", "train",
    "rosenbrock", "rosenbrock_loss", "rosenbrock_value", "factorization",
    "digits", "sparse_digits", "load_digits",
]

#: The dtype of every example problem.
FLOAT = "float32"


def _const(value):
    """A float32 constant, so the example graphs stay float32."""
    return np.asarray(value, dtype=FLOAT)


class Problem:
    """A loss to minimize, with its data and suggested settings.

    Parameters
    ----------
    name : str
        Registry name, e.g. ``"rosenbrock"``.
    loss : pytensor scalar expression
        The loss.
    params : list of pytensor SharedVariable
        The parameters the optimizer adjusts.
    train, valid : list of arrays or None
        Training and validation data, one array per input of the loss (None
        when the loss has no inputs).
    monitors : list of (str, expression)
        Extra quantities to report besides the loss.
    settings : dict
        Suggested ``batch_size``, ``max_updates`` and ``validate_every``
        (the same for every algorithm); anything given explicitly to
        :func:`train` takes precedence.
    description : str
        One line for listings.

    Notes
    -----
    The step hyperparameters (learning rate, momentum, ...) suggested for
    each algorithm come from :meth:`suggested`, which looks them up in
    :data:`SUGGESTED` under the problem's ``name``.
    """

    def __init__(self, name, loss, params, train=None, valid=None, monitors=(),
                 settings=None, description=""):
        self.name = name
        self.loss = loss
        self.params = list(params)
        self.train = train
        self.valid = valid
        self.monitors = list(monitors)
        self.settings = dict(settings or {})
        self.description = description

    def __repr__(self):
        return f"<Problem {self.name!r}: {self.description}>"

    def suggested(self, algo):
        """Hyperparameters suggested for an algorithm on this problem.

        Parameters
        ----------
        algo : str
            Algorithm name (case-insensitive).

        Returns
        -------
        dict
            A copy of ``SUGGESTED[self.name][algo]``: keywords of
            :meth:`~downhill.Optimizer.iterate` such as
            ``learning_rate`` and ``momentum``. Empty (the algorithm's own
            defaults) for an algorithm or problem the table does not know,
            e.g. an algorithm registered by the user.
        """
        return dict(SUGGESTED.get(self.name, {}).get(algo.lower(), {}))


# ----------------------------------------------------------------------
# Rosenbrock


def rosenbrock_loss(x):
    r"""The Rosenbrock function of a symbolic vector.

    .. math::
        f(x) = \sum_{i=1}^{N-1} 100\,(x_{i+1} - x_i^2)^2 + (1 - x_i)^2

    Its minimum is 0 at :math:`x = (1, \ldots, 1)`.

    Parameters
    ----------
    x : pytensor vector
        The point, of length N >= 2.

    Returns
    -------
    pytensor scalar expression
        :math:`f(x)`, in ``x``'s dtype.
    """
    a, b = x[:-1], x[1:]
    hundred = np.asarray(100, dtype=x.dtype)
    one = np.asarray(1, dtype=x.dtype)
    return (hundred * pt.sqr(b - pt.sqr(a)) + pt.sqr(one - a)).sum()


def rosenbrock_value(x, y):
    """The 2-D Rosenbrock function on NumPy arrays (for contour plots).

    Parameters
    ----------
    x, y : array_like
        Coordinates; broadcast against each other.

    Returns
    -------
    ndarray
        :math:`100 (y - x^2)^2 + (1 - x)^2`.
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    return 100.0 * (y - x ** 2) ** 2 + (1.0 - x) ** 2


def rosenbrock(dims=2, seed=0):
    r"""The Rosenbrock function in ``dims`` dimensions: a loss without data.

    The start is the classic :math:`(-1.2, 1, -1.2, 1, \ldots)` plus normal
    noise of standard deviation 0.1 drawn from ``seed``. Without data, one
    iteration is one update. The monitor ``dist`` is the Euclidean distance
    to the minimum :math:`(1, \ldots, 1)`.

    Parameters
    ----------
    dims : int, optional
        Number of dimensions, >= 2 (default 2).
    seed : int, optional
        Seed of the starting point's noise.

    Returns
    -------
    Problem
    """
    if isinstance(dims, bool) or not isinstance(dims, (int, np.integer)) or dims < 2:
        raise ValueError(f"invalid dims: {dims!r} (must be an integer >= 2)")
    rng = np.random.default_rng(seed)
    start = np.where(np.arange(dims) % 2 == 0, -1.2, 1.0)
    start = (start + 0.1 * rng.normal(size=dims)).astype(FLOAT)
    x = pytensor.shared(start, name="x")
    return Problem(
        "rosenbrock", rosenbrock_loss(x), [x],
        monitors=[("dist", pt.sqrt(pt.sqr(x - _const(1)).sum()))],
        settings=dict(batch_size=0, max_updates=1000,
                      validate_every=10),
        description=f"{dims}-D Rosenbrock function (minimum 0 at x = 1)")


# ----------------------------------------------------------------------
# matrix factorization (the README's quick start)


def factorization(seed=0, rows=20, cols=30, rank=3):
    """The README's quick start: factorize a low-rank matrix into ``u @ v``.

    The loss is the mean squared difference between the matrix ``y`` (made
    from ``seed``) and ``u @ v``; the monitor ``u<0.1`` is the fraction of
    small entries of ``u``. Training and validation use the same matrix.

    Parameters
    ----------
    seed : int, optional
        Seed of the matrix and the starting point.
    rows, cols, rank : int, optional
        Shape of the matrix and rank of the factorization (default 20, 30, 3).

    Returns
    -------
    Problem
    """
    rng = np.random.default_rng(seed)
    y = (rng.normal(size=(rows, rank)) @ rng.normal(size=(rank, cols))).astype(FLOAT)
    x = pt.matrix("x", dtype=FLOAT)
    u = pytensor.shared(rng.normal(size=(rows, rank)).astype(FLOAT) * 0.1, name="u")
    v = pytensor.shared(rng.normal(size=(rank, cols)).astype(FLOAT) * 0.1, name="v")
    loss = pt.sqr(x - u @ v).mean()
    return Problem(
        "factorization", loss, [u, v], train=[y], valid=[y],
        monitors=[("u<0.1", (abs(u) < _const(0.1)).mean())],
        settings=dict(batch_size=0, max_updates=500,
                      validate_every=10),
        description=f"{rows}x{cols} rank-{rank} matrix factorization (the README's)")


# ----------------------------------------------------------------------
# scikit-learn's 8x8 digits


def load_digits(seed=0, valid_fraction=0.2):
    """scikit-learn's bundled 8x8 digits, scaled to [0, 1] and split.

    Parameters
    ----------
    seed : int, optional
        Seed of the shuffle before the split.
    valid_fraction : float, optional
        Fraction held out for validation (default 0.2).

    Returns
    -------
    (x_train, y_train), (x_valid, y_valid)
        float32 images of 64 pixels and int32 labels 0-9.

    Raises
    ------
    ImportError
        If scikit-learn is not installed.
    """
    try:
        from sklearn.datasets import load_digits as sk_load_digits
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the digits problems need scikit-learn, which is not installed: "
            "pip install 'downhill[data]'") from err
    data = sk_load_digits()
    x = (data.data / 16.0).astype(FLOAT)
    y = data.target.astype("int32")
    perm = np.random.default_rng(seed).permutation(len(x))
    n_valid = int(round(valid_fraction * len(x)))
    tr, va = perm[n_valid:], perm[:n_valid]
    return (x[tr], y[tr]), (x[va], y[va])


def digits(seed=0, hidden=0, valid_fraction=0.2):
    """Classify the 8x8 digits: softmax regression, or an MLP with ``hidden`` tanh units.

    The loss is the mean cross-entropy; the monitor ``acc`` is the fraction
    classified correctly. ``valid_fraction`` of the images is held out for
    validation.

    Parameters
    ----------
    seed : int, optional
        Seed of the split and the initial weights.
    hidden : int, optional
        Hidden units; 0 (default) gives softmax regression.
    valid_fraction : float, optional
        Fraction held out for validation (default 0.2).

    Returns
    -------
    Problem
    """
    (xt, yt), (xv, yv) = load_digits(seed, valid_fraction)
    rng = np.random.default_rng(seed)
    x = pt.matrix("x", dtype=FLOAT)
    y = pt.ivector("y")
    params = []
    h, width = x, xt.shape[1]
    if hidden:
        w1 = pytensor.shared(
            (rng.normal(size=(width, hidden)) / np.sqrt(width)).astype(FLOAT), name="w1")
        b1 = pytensor.shared(np.zeros(hidden, FLOAT), name="b1")
        h, width = pt.tanh(x @ w1 + b1), hidden
        params += [w1, b1]
    w = pytensor.shared(np.zeros((width, 10), FLOAT), name="w")
    b = pytensor.shared(np.zeros(10, FLOAT), name="b")
    params += [w, b]
    logp = pt.special.log_softmax(h @ w + b, axis=1)
    loss = -logp[pt.arange(y.shape[0]), y].mean()
    acc = pt.cast(pt.eq(pt.argmax(logp, axis=1), y), FLOAT).mean()
    kind = f"MLP with {hidden} hidden units" if hidden else "softmax regression"
    return Problem(
        "digits", loss, params, train=[xt, yt], valid=[xv, yv], monitors=[("acc", acc)],
        settings=dict(batch_size=64, max_updates=30, validate_every=2),
        description=f"8x8 digits, {kind} (scikit-learn's bundled data)")


def sparse_digits(seed=0, samples=300, basis=16, sparsity=0.1):
    r"""Sparse coding of the 8x8 digits: images :math:`x` approximated by :math:`z d`.

    .. math::
        \mathcal{L} = \operatorname{mean}\,(x - z d)^2
            + \lambda \operatorname{mean}\,|z|

    :math:`d` (``basis`` x 64) is the learned basis, :math:`z` (``samples``
    x ``basis``) the codes and :math:`\lambda` is ``sparsity``. Codes belong
    to samples, so the whole set is one batch. Monitors: ``err`` (the
    reconstruction error) and ``z<0.01`` (the fraction of near-zero codes).

    Parameters
    ----------
    seed : int, optional
        Seed of the images chosen and the starting point.
    samples : int, optional
        Number of images (default 300).
    basis : int, optional
        Number of basis images (default 16).
    sparsity : float, optional
        Weight :math:`\lambda` of the L1 penalty (default 0.1).

    Returns
    -------
    Problem
    """
    (xt, _), _ = load_digits(seed, valid_fraction=0.0)
    xt = xt[:samples]
    rng = np.random.default_rng(seed)
    x = pt.matrix("x", dtype=FLOAT)
    z = pytensor.shared((0.1 * rng.normal(size=(len(xt), basis))).astype(FLOAT), name="z")
    d = pytensor.shared((0.1 * rng.normal(size=(basis, xt.shape[1]))).astype(FLOAT), name="d")
    err = pt.sqr(x - z @ d).mean()
    loss = err + _const(sparsity) * abs(z).mean()
    return Problem(
        "sparse-digits", loss, [d, z], train=[xt], valid=[xt],
        monitors=[("err", err), ("z<0.01", (abs(z) < _const(0.01)).mean())],
        settings=dict(batch_size=0, max_updates=300, validate_every=10),
        description=f"sparse coding of {len(xt)} digits with {basis} basis images")


# ----------------------------------------------------------------------
# suggested hyperparameters

#: Step hyperparameters suggested for every registered algorithm on each
#: problem: ``SUGGESTED[problem][algorithm]`` holds keywords of
#: :meth:`~downhill.Optimizer.iterate`. :func:`train` (and so the
#: command line and the examples) uses them unless given others; they are
#: what :meth:`Problem.suggested` returns.
#:
#: They were picked by short runs of each algorithm with the problem's
#: suggested batch size and number of updates (``rosenbrock`` in 2 and 100
#: dimensions, ``digits`` with 0 and 32 hidden units): each makes steady
#: progress without diverging, not the fastest possible. Momentum helps the
#: first-order methods through the Rosenbrock valley and past the saddle at
#: the start of the factorizations. RMSProp's and Adam's steps keep about
#: the size of the learning rate however small the gradient, so near a
#: minimum they bounce: a large ``rms_regularizer`` (RMSProp on Rosenbrock:
#: plain gradient steps where the gradient is small), long averages or a
#: small learning rate (the demo's factorization) keep the curves falling.
#: ESGD's curvature average starts at zero, so its ``rms_regularizer`` is
#: raised to keep the first steps bounded. ADADELTA has no learning rate;
#: its ``rms_regularizer`` sets the size of its first steps. RProp uses
#: gentler step-size factors than iRprop-'s usual 1.2 and 0.5 where those
#: oscillate. On Rosenbrock's steep start, AMSGrad would keep the first huge
#: gradient as its normaliser for ever, and RAdam's first steps are plain
#: momentum steps of that gradient: a gradient norm limit keeps both (and
#: NAdam and Yogi, which go further with it) in hand.
SUGGESTED = {
    "rosenbrock": {
        "sgd": dict(learning_rate=1e-3, momentum=0.9),
        "nag": dict(learning_rate=7e-4, momentum=0.9),
        "rmsprop": dict(learning_rate=3e-3, momentum=0.9, rms_regularizer=1.0),
        "rprop": dict(learning_rate=1e-3, rprop_increase=1.1, rprop_decrease=0.7),
        "adagrad": dict(learning_rate=0.3, momentum=0.8),
        "adadelta": dict(rms_regularizer=1e-5, rms_halflife=100.0, momentum=0.9),
        "esgd": dict(learning_rate=0.3, momentum=0.9, rms_regularizer=100.0),
        "adam": dict(learning_rate=0.1, beta2_halflife=300.0),
        "amsgrad": dict(learning_rate=0.03, beta2_halflife=1000.0, max_gradient_norm=1.0),
        "adamax": dict(learning_rate=0.1, beta1_halflife=10.0, beta2_halflife=50.0),
        "nadam": dict(learning_rate=0.01, beta1_halflife=30.0, beta2_halflife=1000.0,
                      max_gradient_norm=1.0, mu_schedule=False),
        "radam": dict(learning_rate=0.03, beta2_halflife=300.0, max_gradient_norm=3.0),
        "adabelief": dict(learning_rate=0.1, beta2_halflife=300.0),
        "yogi": dict(learning_rate=0.03, beta2_halflife=1000.0, max_gradient_norm=1.0,
                     rms_regularizer=1e-6),
        "adagrad_window": dict(learning_rate=0.01, momentum=0.9, window=50,
                               rms_regularizer=1e-4),
        "lion": dict(learning_rate=0.02, beta2_halflife=20.0),
        "lars": dict(learning_rate=30.0),
        "lamb": dict(learning_rate=0.03),
        "adafactor": dict(learning_rate=0.01, momentum=0.9),
        "schedule_free_sgd": dict(learning_rate=6e-3, interpolation=0.95,
                                  max_gradient_norm=100.0),
        "schedule_free_adamw": dict(learning_rate=0.1, interpolation=0.98, beta2_halflife=300.0),
        "lookahead": dict(inner="adam", learning_rate=0.05, slow_step_size=0.8),
    },
    "factorization": {
        "sgd": dict(learning_rate=1.0),
        "nag": dict(learning_rate=1.0, momentum=0.5),
        "rmsprop": dict(learning_rate=3e-3, rms_halflife=50.0),
        "rprop": dict(learning_rate=1e-3, rprop_increase=1.2, rprop_decrease=0.5),
        "adagrad": dict(learning_rate=0.1),
        "adadelta": dict(rms_regularizer=1e-4),
        "esgd": dict(learning_rate=0.1, rms_regularizer=0.1),
        "adam": dict(learning_rate=0.01),
        "amsgrad": dict(learning_rate=0.03),
        "adamax": dict(learning_rate=0.01),
        "nadam": dict(learning_rate=0.01),
        "radam": dict(learning_rate=0.01),
        "adabelief": dict(learning_rate=0.01),
        "yogi": dict(learning_rate=0.01),
        "adagrad_window": dict(learning_rate=0.03, momentum=0.9, rms_regularizer=1e-4),
        "lion": dict(learning_rate=0.01),
        "lars": dict(learning_rate=1.0),
        "lamb": dict(learning_rate=0.01),
        "adafactor": dict(learning_rate=0.01, momentum=0.9),
        "schedule_free_sgd": dict(learning_rate=10.0),
        "schedule_free_adamw": dict(learning_rate=0.03),
        "lookahead": dict(inner="adam", learning_rate=0.03),
    },
    "digits": {
        "sgd": dict(learning_rate=0.1, momentum=0.9),
        "nag": dict(learning_rate=0.1, momentum=0.9),
        "rmsprop": dict(learning_rate=5e-3),
        "rprop": dict(learning_rate=3e-3),
        "adagrad": dict(learning_rate=0.1),
        "adadelta": dict(rms_regularizer=1e-4),
        "esgd": dict(learning_rate=0.03),
        "adam": dict(learning_rate=0.01),
        "amsgrad": dict(learning_rate=0.01),
        "adamax": dict(learning_rate=0.01),
        "nadam": dict(learning_rate=0.01),
        "radam": dict(learning_rate=0.01),
        "adabelief": dict(learning_rate=0.01),
        "yogi": dict(learning_rate=0.01),
        "adagrad_window": dict(learning_rate=0.1),
        "lion": dict(learning_rate=3e-3),
        "lars": dict(learning_rate=1.0),
        "lamb": dict(learning_rate=0.01),
        "adafactor": dict(learning_rate=0.01, momentum=0.9),
        "schedule_free_sgd": dict(learning_rate=3.0),
        "schedule_free_adamw": dict(learning_rate=0.03),
        "lookahead": dict(inner="adam", learning_rate=0.03),
    },
    "sparse-digits": {
        "sgd": dict(learning_rate=3.0, momentum=0.9),
        "nag": dict(learning_rate=3.0, momentum=0.9),
        "rmsprop": dict(learning_rate=0.01),
        "rprop": dict(learning_rate=0.01),
        "adagrad": dict(learning_rate=0.1),
        "adadelta": dict(rms_regularizer=1e-4, momentum=0.9),
        "esgd": dict(learning_rate=0.1, rms_regularizer=0.01),
        "adam": dict(learning_rate=0.01),
        "amsgrad": dict(learning_rate=0.01),
        "adamax": dict(learning_rate=0.01),
        "nadam": dict(learning_rate=0.01),
        "radam": dict(learning_rate=0.01),
        "adabelief": dict(learning_rate=0.01),
        "yogi": dict(learning_rate=0.03, rms_regularizer=1e-6),
        "adagrad_window": dict(learning_rate=0.1, momentum=0.9, rms_regularizer=1e-4),
        "lion": dict(learning_rate=0.01),
        "lars": dict(learning_rate=10.0),
        "lamb": dict(learning_rate=0.03),
        "adafactor": dict(learning_rate=0.01, momentum=0.9),
        "schedule_free_sgd": dict(learning_rate=100.0),
        "schedule_free_adamw": dict(learning_rate=0.03),
        "lookahead": dict(inner="adam", learning_rate=0.03),
    },
}


#: Problem builders by name; the command line's ``PROBLEM`` choices.
PROBLEMS = {
    "rosenbrock": rosenbrock,
    "factorization": factorization,
    "digits": digits,
    "sparse-digits": sparse_digits,
}


def make_problem(name, **options):
    """Build a problem by name, e.g. ``make_problem("rosenbrock", dims=5)``.

    Parameters
    ----------
    name : str
        A key of :data:`PROBLEMS`.
    **options
        Keywords of that problem's builder (``seed``, ``dims``, ...).

    Returns
    -------
    Problem

    Raises
    ------
    ValueError
        If no problem has that name; the message lists the known names.
    """
    if name not in PROBLEMS:
        raise unknown_name_error(str(name), PROBLEMS, "problem", error=ValueError,
                                 known_label="known problems")
    return PROBLEMS[name](**options)


# ----------------------------------------------------------------------
# running


class History:
    """What happened during one optimization run.

    Parameters
    ----------
    label : str
        Usually the algorithm's name.
    updates_per_iteration : int, optional
        Batches (parameter updates) in one training iteration; default 1.
    hyperparameters : dict, optional
        The hyperparameters the run was given (suggested or explicit).

    Attributes
    ----------
    label : str
        Usually the algorithm's name.
    updates_per_iteration : int
        Batches (parameter updates) in one training iteration.
    hyperparameters : dict
        The hyperparameters the run was given besides the algorithm's
        defaults (the plots show the step-related ones in their legends).
    iterations : list of int
        Iteration numbers (1, 2, ...) of the training monitors.
    train : list of dict
        Training monitors of each iteration.
    valid_iterations : list of int
        Iterations after which the parameters were validated (0 is before
        the first update); the last one is the final validation.
    valid : list of dict
        Validation monitors at those iterations.
    path : list of arrays
        The first parameter's value at the start and after each iteration,
        when recorded (the 2-D Rosenbrock plots use it).
    final_train, final_valid : dict
        Monitors of the restored best parameters on the training and
        validation data.
    """

    def __init__(self, label, updates_per_iteration=1, hyperparameters=None):
        self.label = label
        self.updates_per_iteration = updates_per_iteration
        self.hyperparameters = dict(hyperparameters or {})
        self.iterations = []
        self.train = []
        self.valid_iterations = []
        self.valid = []
        self.path = []
        self.final_train = None
        self.final_valid = None

    def updates(self, iterations):
        """Convert iteration numbers to numbers of parameter updates.

        Parameters
        ----------
        iterations : list of int
            Iteration numbers.

        Returns
        -------
        list of int
            The number of updates done after each of them.
        """
        return [i * self.updates_per_iteration for i in iterations]


class _CountingDataset(Dataset):
    """A Dataset that calls ``on_batch()`` after each batch is used."""

    on_batch = None

    def __iter__(self):
        for batch in super().__iter__():
            yield batch
            if self.on_batch is not None:
                self.on_batch()


def _dataset(data, name, batch_size, cls=Dataset):
    if data is None:
        return cls(lambda: [], name=name, iteration_size=1)
    return cls(data, name=name, batch_size=batch_size, rng=0)


def train(problem, algo="rmsprop", record_path=False, on_iteration=None, on_batch=None,
          batch_size=None, max_updates=None, progressbar=False, mode=None, devices=None,
          groups=None, **hyperparameters):
    """Optimize a problem with an algorithm and record its history.

    Parameters
    ----------
    problem : Problem
        From :func:`make_problem` or one of the builders.
    algo : str
        Algorithm name from :data:`downhill.ALGORITHMS`.
    record_path : bool, optional
        Record the first parameter after every iteration (``History.path``).
    on_iteration : callable, optional
        Called as ``on_iteration(history)`` after every iteration; when it
        returns true the run stops there, as if the caller left the loop
        (the best parameters are restored).
    on_batch : callable, optional
        Called without arguments after every training batch (progress bars).
    batch_size, max_updates : int, optional
        Default: the problem's suggested settings.
    progressbar : bool, None or Progress, optional
        The progress display, as for :meth:`~downhill.Optimizer.iterate`;
        default False (none).
    mode : str, optional
        PyTensor compile mode (e.g. ``"JAX"``); default PyTensor's.
    devices : int, optional
        JAX mode: shard batches over this many devices (see
        :meth:`downhill.Optimizer.iterate`).
    groups : list of dict or dict, optional
        Parameter groups for the optimizer (see :mod:`downhill.groups`).
    **hyperparameters
        Passed to ``iterate``. Each overrides the same name in the problem's
        ``validate_every`` setting and in the hyperparameters suggested for
        ``algo`` (:meth:`Problem.suggested`), which apply otherwise.

    Returns
    -------
    History
        The run's history, with the final monitors of the restored best
        parameters.

    Raises
    ------
    ValueError
        For bad hyperparameter values, before any update (an unknown name
        is ignored with a :class:`~downhill.DownhillWarning`).
    FloatingPointError
        When the loss becomes NaN or infinite (the best parameters are
        restored first).
    """
    settings = dict(problem.settings)
    suggested_batch = settings.pop("batch_size", 32)
    suggested_updates = settings.pop("max_updates", None)
    batch_size = suggested_batch if batch_size is None else batch_size
    max_updates = suggested_updates if max_updates is None else max_updates
    step = dict(problem.suggested(algo), **hyperparameters)
    settings.update(step)

    # a wrapper's inner rule (Lookahead's) is chosen when the optimizer is built
    opt = build(algo, problem.loss, params=problem.params, monitors=problem.monitors,
                mode=mode, groups=groups,
                **{k: settings[k] for k in ("inner",) if k in settings})
    train_set = _dataset(problem.train, "train", batch_size, _CountingDataset)
    train_set.on_batch = on_batch
    valid_set = _dataset(problem.valid, "valid", batch_size)
    history = History(algo, train_set.iteration_size, hyperparameters=step)
    loop = opt.iterate(train_set, valid_set, max_updates=max_updates, progressbar=progressbar,
                       devices=devices,
                       **settings)
    every = settings.get("validate_every", opt.hyperparameters()["validate_every"].default)
    watched = problem.params[0]
    if record_path:
        history.path.append(np.array(watched.get_value()))
    for i, (tr, va) in enumerate(loop):
        # the validation yielded with iteration i + 1 was made before it
        if i % every == 0:
            history.valid_iterations.append(i)
            history.valid.append(va)
        history.iterations.append(i + 1)
        history.train.append(tr)
        if record_path:
            history.path.append(np.array(watched.get_value()))
        if on_iteration is not None and on_iteration(history):
            loop.close()   # ends the loop now: checkpoint, best parameters restored
            break
    # the loop validates once more when it ends by max_updates or patience
    last = opt._run.last_validation
    if last is not None and (not history.valid or dict(last) != history.valid[-1]):
        history.valid_iterations.append(len(history.iterations))
        history.valid.append(dict(last))
    history.final_train = opt.evaluate(_dataset(problem.train, "train", batch_size))
    history.final_valid = opt.evaluate(valid_set)
    return history
