"""downhill.compat gives the same results on every supported PyTensor.

CI runs these on both ends of the supported range (2.38 under PyMC 5.28, and
the newest 3.0), so each test pins down one difference between them.
"""

import warnings

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

import downhill
from downhill import compat


def compile_(inputs, outputs, **kwargs):
    return pytensor.function(inputs, outputs, mode=compat.default_mode(), **kwargs)


@pytest.mark.parametrize("shape", [(), (1,), (1, 1)])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_l2_norm_of_a_single_negative_element_is_its_magnitude(shape, dtype):
    # 2.38 rewrites sqrt(g * g) to switch(g >= 0, g, nan): NaN here
    g = pt.tensor("g", dtype=dtype, shape=shape)
    value = np.full(shape, -2.5, dtype)
    for mode in [compat.default_mode(), "FAST_RUN", "FAST_COMPILE"]:
        norm = pytensor.function([g], compat.l2_norm(g), mode=mode)(value)
        assert norm == 2.5 and norm.dtype == dtype, mode
        total = pytensor.function([g], compat.l2_norm([g], "float64"), mode=mode)(value)
        assert total == 2.5 and total.dtype == "float64", mode


def test_l2_norm_of_several_tensors_is_the_norm_of_all_their_elements(rng):
    a = pt.scalar("a")
    b = pt.vector("b")
    c = pt.tensor("c", shape=(1,))
    f = compile_([a, b, c], [compat.l2_norm([a, b, c]), compat.l2_norm(b)])
    values = [np.float64(-3.0), rng.normal(size=5), np.array([-0.5])]
    every = np.concatenate([np.ravel(v) for v in values])
    total, of_b = f(*values)
    assert total == pytest.approx(np.linalg.norm(every), rel=1e-12)
    assert of_b == pytest.approx(np.linalg.norm(values[1]), rel=1e-12)


@pytest.mark.parametrize("clip", ["max_gradient_norm", "max_gradient_global_norm"])
def test_a_scalar_parameter_with_a_negative_gradient_is_clipped_not_nan(clip):
    # the gradient sinh(w) times itself is sqr(sinh(w)), which 2.38 rewrote
    w = pytensor.shared(np.float64(-3.0), name="w")
    opt = downhill.build("sgd", pt.cosh(w))
    opt.minimize(learning_rate=0.5, max_updates=1, **{clip: 1.0})
    assert w.get_value() == pytest.approx(-3.0 + 0.5 * 1.0)  # sinh(-3) = -10 clipped to -1


def test_isfinite_matches_numpy():
    for dtype in ["float32", "float64"]:
        info = np.finfo(dtype)
        values = np.array([1.0, -0.0, np.nan, np.inf, -np.inf, info.max, -info.max,
                           info.smallest_subnormal], dtype)
        x = pt.vector("x", dtype=dtype)
        got = compile_([x], compat.isfinite(x))(values)
        assert got.dtype == bool
        np.testing.assert_array_equal(got, [True, True, False, False, False, True, True, True])


def test_normal_with_next_rng_advances_the_generator():
    rng = pytensor.shared(np.random.default_rng(7), name="rng")
    next_rng, draw = compat.normal_with_next_rng(rng, (4,), "float32")
    assert draw.dtype == "float32"
    f = compile_([], draw, updates=[(rng, next_rng)])
    first, second = f(), f()
    assert first.shape == (4,) and not np.array_equal(first, second)
    rng.set_value(np.random.default_rng(7))
    np.testing.assert_array_equal(f(), first)  # the draws come from the generator
    frozen = compile_([], draw)  # without the update every call repeats a draw
    assert np.array_equal(frozen(), frozen())


def test_pullback_and_pushforward_give_the_hessian_vector_product():
    w = pytensor.shared(np.array([1.0, -2.0, 0.5]), name="w")
    v = np.array([0.5, 1.0, -2.0])
    grad = pytensor.grad((w ** 3).sum(), w)
    hv = 6 * w.get_value() * v
    f = compile_([], [compat.pullback(grad, w, pt.constant(v)),
                      compat.pushforward(grad, w, pt.constant(v))])
    for got in f():
        np.testing.assert_allclose(got, hv, rtol=1e-12)
    unrelated = pytensor.shared(np.ones(2), name="unrelated")
    with pytest.raises(pytensor.gradient.DisconnectedInputError):
        compat.pullback(grad, unrelated, pt.constant(np.ones(3)))
    assert compat.pullback(grad, unrelated, pt.constant(np.ones(3)),
                           disconnected_inputs="ignore") is not None


@pytest.mark.parametrize("hv_method", ["rop", "lop", "grad"])
def test_esgd_builds_without_deprecation_warnings(hv_method):
    # 3.x warns on Lop/Rop and on random draws without return_next_rng
    w = pytensor.shared(np.array([1.0, -2.0]), name="w")
    opt = downhill.build("esgd", (w ** 4).sum(), hv_method=hv_method, seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        updates = opt.get_updates(learning_rate=0.1)
    rng = opt._state[(0, "rng")]
    before = rng.get_value().bit_generator.state
    compile_([], [], updates=updates)()
    assert rng.get_value().bit_generator.state != before
    assert np.all(np.isfinite(w.get_value()))


def test_default_mode():
    mode = compat.default_mode()
    if compat.PYTENSOR_VERSION >= (3,):
        assert mode is None  # PyTensor's own default, Numba
    else:
        assert mode == "NUMBA"  # 2.x defaults to the slower C backend
    pytensor.compile.mode.get_mode(mode)  # a mode PyTensor knows
    # a mode chosen through PyTensor's flags is left alone
    with pytensor.config.change_flags(mode="FAST_COMPILE"):
        assert compat.default_mode() is None


def test_version_is_read_from_pytensor():
    assert compat._release("2.38.3") == (2, 38)
    assert compat._release("3.0.0rc1") == (3, 0)
    assert compat._release("3.1.0.dev5+g1234") == (3, 1)
    assert compat.PYTENSOR_VERSION == compat._release(pytensor.__version__)
    assert (2, 38) <= compat.PYTENSOR_VERSION < (3, 1)  # pyproject.toml's range
    with pytest.raises(ValueError, match="cannot read PyTensor's version 'dev'"):
        compat._release("dev")
