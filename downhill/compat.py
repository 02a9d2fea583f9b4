"""Where PyTensor versions differ: the one place that knows about 2.38 and 3.x.

downhill supports PyTensor 2.38 (the release PyMC 5.28 pins) through 3.0.
Each helper here does one thing the same way on every supported release and
says in its docstring which releases differ and how; the rest of the library
calls these helpers and never tests versions itself.
"""

import re

import pytensor
import pytensor.tensor as pt
from pytensor import gradient

__all__ = [
    "PYTENSOR_VERSION",
    "pullback",
    "pushforward",
    "isfinite",
    "normal_with_next_rng",
    "l2_norm",
    "default_mode",
]


def _release(version):
    """The major and minor release of a version string: ``"2.38.3"`` -> ``(2, 38)``."""
    match = re.match(r"(\d+)\.(\d+)", version)
    if match is None:
        raise ValueError(f"cannot read PyTensor's version {version!r}: expected 'MAJOR.MINOR...'")
    return int(match[1]), int(match[2])


#: The installed PyTensor's (major, minor) release, e.g. ``(3, 0)``.
PYTENSOR_VERSION = _release(pytensor.__version__)

_PULLBACK = getattr(gradient, "pullback", None)
_PUSHFORWARD = getattr(gradient, "pushforward", None)


def pullback(f, wrt, cotangents, disconnected_inputs="raise"):
    r"""The vector-Jacobian product :math:`v^T \partial f / \partial w` (reverse mode).

    Parameters
    ----------
    f, wrt, cotangents : pytensor Variable or list of them
        As for ``pytensor.gradient.pullback``.
    disconnected_inputs : {"raise", "warn", "ignore"}
        What to do when ``f`` does not depend on ``wrt``.

    Returns
    -------
    pytensor Variable or list of them

    Notes
    -----
    PyTensor 3.0 calls this ``pullback`` and warns on the old name ``Lop``;
    2.x has only ``Lop``, with the same arguments.
    """
    if _PULLBACK is not None:
        return _PULLBACK(f, wrt, cotangents, disconnected_inputs=disconnected_inputs)
    return gradient.Lop(f, wrt, cotangents, disconnected_inputs=disconnected_inputs)


def pushforward(f, wrt, tangents, disconnected_outputs="raise"):
    r"""The Jacobian-vector product :math:`(\partial f / \partial w)\, v` (forward mode).

    Parameters
    ----------
    f, wrt, tangents : pytensor Variable or list of them
        As for ``pytensor.gradient.pushforward``.
    disconnected_outputs : {"raise", "warn", "ignore"}
        What to do when ``f`` does not depend on ``wrt``.

    Returns
    -------
    pytensor Variable or list of them

    Notes
    -----
    PyTensor 3.0 calls this ``pushforward`` and warns on the old name
    ``Rop``; 2.x has only ``Rop``, with the same arguments.
    """
    if _PUSHFORWARD is not None:
        return _PUSHFORWARD(f, wrt, tangents, disconnected_outputs=disconnected_outputs)
    return gradient.Rop(f, wrt, tangents, disconnected_outputs=disconnected_outputs)


def isfinite(x):
    """Element-wise: true where ``x`` is neither NaN nor infinite.

    Parameters
    ----------
    x : pytensor tensor

    Returns
    -------
    pytensor boolean tensor shaped like ``x``

    Notes
    -----
    ``pt.isfinite`` is new in PyTensor 3.0; on 2.x this is
    ``~(isnan(x) | isinf(x))``, which the fusion rewrite merges into one loop.
    """
    if hasattr(pt, "isfinite"):
        return pt.isfinite(x)
    return pt.invert(pt.or_(pt.isnan(x), pt.isinf(x)))


def normal_with_next_rng(rng, size, dtype):
    """A standard normal draw from a shared generator, and the generator after it.

    Parameters
    ----------
    rng : pytensor shared Generator variable
        The generator to draw from.
    size : tuple or pytensor vector
        The draw's shape.
    dtype : str
        The draw's float dtype.

    Returns
    -------
    next_rng : pytensor Variable
        The generator's state after the draw: put ``(rng, next_rng)`` in the
        compiled function's updates, or every call repeats the same draw.
    draw : pytensor tensor
        The draw.

    Notes
    -----
    PyTensor 3.0 returns the next generator when asked
    (``return_next_rng=True``) and warns when not; 2.x refuses that keyword
    (``TypeError``) and leaves the next generator as the random node's first
    output.
    """
    if PYTENSOR_VERSION >= (3,):
        return pt.random.normal(0, 1, size=size, rng=rng, dtype=dtype, return_next_rng=True)
    draw = pt.random.normal(0, 1, size=size, rng=rng, dtype=dtype)
    return draw.owner.outputs[0], draw


def l2_norm(tensors, dtype=None):
    r"""The Euclidean norm of a tensor, or of several tensors' elements together.

    Parameters
    ----------
    tensors : pytensor tensor or list of them
        The tensors; each one's sum of squares is computed in its own dtype.
    dtype : str, optional
        The dtype the sums of squares are cast to before they are added;
        by default the first tensor's.

    Returns
    -------
    pytensor scalar
        :math:`\sqrt{\sum_i x_i^2}` over every element of every tensor.

    Notes
    -----
    When the tensors together hold statically one element (a 0-d tensor,
    or a static shape such as ``(1,)``), the norm is written ``abs(x)``:
    PyTensor 2.38's rewrite ``local_sqrt_sqr`` turns ``sqrt(x * x)`` into
    ``switch(x >= 0, x, nan)``, so the plain formula is NaN there for a
    negative ``x`` (3.0 no longer does this). ``abs`` is exact on every
    release, and any other size is left to the plain formula.
    """
    if not isinstance(tensors, (list, tuple)):
        tensors = [tensors]
    tensors = [pt.as_tensor_variable(t) for t in tensors]
    dtype = dtype or tensors[0].dtype
    sizes = [_static_size(t) for t in tensors]
    if None not in sizes and sum(sizes) == 1:
        single = tensors[sizes.index(1)]
        return _cast(pt.abs(single).sum(), dtype)
    return pt.sqrt(pt.add(*[_cast((t * t).sum(), dtype) for t in tensors]))


def _static_size(tensor):
    """The number of elements of a tensor if its shape is static, else None."""
    size = 1
    for dim in tensor.type.shape:
        if dim is None:
            return None
        size *= dim
    return size


def _cast(x, dtype):
    """``x`` cast to ``dtype`` (itself when it already has that dtype)."""
    return x if x.dtype == dtype else pt.cast(x, dtype)


def default_mode():
    """The compile mode downhill uses when none is given (``mode=None``).

    Returns
    -------
    str or None
        ``None`` (PyTensor's own default) on PyTensor 3.x, where that is
        the Numba backend, or wherever ``PYTENSOR_FLAGS`` (or
        ``pytensor.config``) chose a mode or linker. ``"NUMBA"`` on 2.x left
        at its defaults, where the default is the C backend.

    Notes
    -----
    Measured on 2.38.3, the C backend's update step is about three times
    slower than Numba's on large parameters (see the docs' installation
    notes); Numba comes with every PyTensor 2.38 install.
    """
    if PYTENSOR_VERSION >= (3,):
        return None
    config = pytensor.config
    if config.mode == "Mode" and config.linker == "auto":
        return "NUMBA"
    return None
