"""Ready schedules: values against the formulas, plateau logic, state, errors."""

import doctest
import math

import numpy as np
import pytest

import downhill.schedules
import downhill.schedules.base
import downhill.schedules.plateau
import downhill.schedules.ready
from downhill.schedules import CosineWithWarmup, ExponentialDecay, ReduceOnPlateau, StepDecay


def test_module_doctests():
    attempted = 0
    for module in (downhill.schedules, downhill.schedules.base, downhill.schedules.ready,
                   downhill.schedules.plateau):
        result = doctest.testmod(module)
        assert result.failed == 0, module.__name__
        attempted += result.attempted
    assert attempted >= 7


def test_all_is_explicit():
    assert sorted(downhill.schedules.__all__) == sorted(
        ["Schedule", "Constant", "Linear", "StepDecay", "ExponentialDecay", "CosineWithWarmup",
         "Sequence", "ReduceOnPlateau", "PYTHON"])


# ----------------------------------------------------------------------
# values, by hand at chosen update counts

@pytest.mark.parametrize("n, want", [
    (0, 0.3), (1, 0.3), (6, 0.3), (7, 0.3 * 0.4), (13, 0.3 * 0.4), (14, 0.3 * 0.4 ** 2),
    (70, 0.3 * 0.4 ** 10),
])
def test_step_decay(n, want):
    assert StepDecay(0.3, 0.4, every=7)(n) == pytest.approx(want, rel=1e-15)


def test_step_decay_factor_one_is_constant():
    s = StepDecay(0.02, 1.0, every=1)
    assert [s(n) for n in (0, 1, 10, 10 ** 6)] == [0.02] * 4


@pytest.mark.parametrize("n, want", [
    (0, 0.2), (50, 0.1), (100, 0.05), (25, 0.2 / math.sqrt(2)), (1, 0.2 * 0.5 ** (1 / 50)),
    (75, 0.2 * 0.5 ** 1.5),
])
def test_exponential_decay(n, want):
    assert ExponentialDecay(0.2, halflife=50)(n) == pytest.approx(want, rel=1e-14)


def test_exponential_decay_matches_per_step_rate_and_floor():
    s = ExponentialDecay(1.0, halflife=10)
    gamma = math.exp(-math.log(2) / 10)   # util.halflife_to_decay
    for n in (1, 2, 17, 33):
        assert s(n) == pytest.approx(gamma ** n, rel=1e-12)
    floored = ExponentialDecay(1.0, halflife=10, min_value=0.3)
    assert floored(10) == pytest.approx(0.5)
    assert floored(17) == pytest.approx(2 ** -1.7)   # 0.3078... still above the floor
    assert floored(18) == 0.3 and floored(1000) == 0.3


def cosine_reference(n, peak, warmup, total, final):
    if n < warmup:
        return peak * n / warmup
    if n >= total:
        return final
    t = (n - warmup) / (total - warmup)
    return final + (peak - final) * (1 + np.cos(np.pi * t)) / 2


@pytest.mark.parametrize("n, want", [
    (0, 0.0), (1, 0.08 / 10), (5, 0.04), (9, 0.08 * 0.9), (10, 0.08),
    # a quarter of the way down the cosine: final + (peak - final) (1 + cos(pi/4)) / 2
    (35, 0.01 + 0.07 * (1 + math.sqrt(0.5)) / 2),
    (60, 0.01 + 0.07 / 2),       # half way: the mean of peak and final
    (85, 0.01 + 0.07 * (1 - math.sqrt(0.5)) / 2),
    (110, 0.01), (111, 0.01), (10 ** 7, 0.01),
])
def test_cosine_with_warmup(n, want):
    assert CosineWithWarmup(0.08, warmup=10, total=110, final=0.01)(n) == pytest.approx(
        want, rel=1e-14, abs=1e-18)


def test_cosine_without_warmup_and_against_numpy():
    s = CosineWithWarmup(1.0, warmup=0, total=4)
    assert [s(n) for n in range(6)] == pytest.approx(
        [1.0, (1 + math.sqrt(0.5)) / 2, 0.5, (1 - math.sqrt(0.5)) / 2, 0.0, 0.0], abs=1e-15)
    s = CosineWithWarmup(3e-3, warmup=17, total=203, final=1e-4)
    ns = np.arange(250)
    want = [cosine_reference(n, 3e-3, 17, 203, 1e-4) for n in ns]
    np.testing.assert_allclose([s(int(n)) for n in ns], want, rtol=1e-13, atol=0)
    values = np.array([s(int(n)) for n in ns])
    assert (np.diff(values[:18]) > 0).all()       # rising through the warm-up
    assert (np.diff(values[17:204]) < 0).all()    # then falling to the end


def test_numpy_integer_counts_and_float_results():
    s = StepDecay(0.5, 0.5, every=2)
    assert s(np.int64(4)) == 0.125
    assert type(s(np.int32(4))) is float
    assert type(CosineWithWarmup(1, 2, 4)(1)) is float


@pytest.mark.parametrize("n", [-1, 1.5, 2.0, True, "3", None])
def test_bad_update_count(n):
    with pytest.raises(ValueError, match=r"StepDecay: invalid update_count: .* integer >= 0"):
        StepDecay(0.1, 0.5, 10)(n)


# ----------------------------------------------------------------------
# reduce on plateau

def test_plateau_reduces_after_patience():
    s = ReduceOnPlateau(1.0, factor=0.5, patience=2)
    assert s(0) == 1.0
    reduced = [s.observe(x) for x in [5.0, 4.0, 4.0, 4.5]]   # 2 validations tolerated
    assert reduced == [False] * 4 and s(0) == 1.0
    assert s.observe(4.0) is True          # the third without improvement
    assert s(123) == 0.5 and s.fails == 0 and s.reductions == 1
    assert [s.observe(x) for x in [4.0, 4.0]] == [False, False]
    assert s.observe(4.0) is True and s(0) == 0.25
    # an improvement resets the count
    assert [s.observe(x) for x in [4.0, 4.0, 3.0, 3.0, 3.0]] == [False] * 5
    assert s(0) == 0.25 and s.best == 3.0 and s.fails == 2


def test_plateau_patience_zero_and_floor():
    s = ReduceOnPlateau(1.0, factor=0.1, patience=0, min_value=0.005)
    s.observe(1.0)
    assert s.observe(1.0) is True and s(0) == pytest.approx(0.1)
    assert s.observe(1.0) is True and s(0) == pytest.approx(0.01)
    assert s.observe(1.0) is True and s(0) == 0.005      # floor, not 0.001
    assert s.observe(1.0) is True and s(0) == 0.005
    assert s.reductions == 4


@pytest.mark.parametrize("best, loss, improves", [
    # rule: best - loss > |best| * 0.1
    (10.0, 8.9, True), (10.0, 9.5, False),
    (-10.0, -11.5, True),   # -10 - -11.5 = 1.5 > 1.0
    (-10.0, -10.5, False),  # 0.5 < 1.0: without abs() the threshold -1 would accept it
    (-10.0, -9.0, False),   # worse
    (0.0, -1e-12, True),    # abs(0) * rho = 0: any decrease counts
    (0.0, 0.0, False),
])
def test_plateau_relative_improvement(best, loss, improves):
    s = ReduceOnPlateau(1.0, patience=0, min_improvement=0.1)
    s.observe(best)
    assert s.observe(loss) is (not improves)
    assert s.best == (loss if improves else best)


def test_plateau_rule_matches_optimizer_early_stopping():
    """Same losses, same decisions as Optimizer._validate's improvement test."""
    rng = np.random.default_rng(3)
    losses = list(-5 + np.cumsum(rng.normal(-0.05, 0.3, size=200)))
    rho = 0.01
    s = ReduceOnPlateau(1.0, patience=10 ** 6, min_improvement=rho)
    best = math.inf
    for loss in losses:
        s.observe(loss)
        if not math.isfinite(best) or best - loss > abs(best) * rho:
            best = loss
        assert s.best == best


def test_plateau_non_finite_loss_never_improves():
    s = ReduceOnPlateau(1.0, factor=0.5, patience=1)
    assert s.observe(float("nan")) is False and s.best == math.inf and s.fails == 1
    assert s.observe(float("inf")) is True and s(0) == 0.5
    s.observe(2.0)
    assert s.best == 2.0
    s.observe(float("nan"))
    assert s.best == 2.0 and s.fails == 1


def test_plateau_accepts_numpy_scalars():
    s = ReduceOnPlateau(1.0)
    s.observe(np.float32(2.5))
    assert s.best == 2.5 and type(s.best) is float


# ----------------------------------------------------------------------
# state

def test_plateau_state_round_trip():
    s = ReduceOnPlateau(0.1, factor=0.5, patience=1)
    for loss in [3.0, 2.0, 2.5, 2.1, 2.2]:
        s.observe(loss)
    state = s.state_dict()
    assert state == {"value": 0.05, "best": 2.0, "fails": 1, "reductions": 1}
    assert all(type(v) in (int, float) for v in state.values())
    t = ReduceOnPlateau(0.1, factor=0.5, patience=1)
    t.load_state_dict(state)
    assert t.state_dict() == state
    # both continue identically
    for loss in [2.3, 1.0, 1.5, 1.5, 1.5]:
        assert s.observe(loss) == t.observe(loss)
        assert s(0) == t(0)
    assert t(0) == 0.0125 and t.reductions == 3   # at 2.3 and at the second 1.5


def test_plateau_state_from_npz(tmp_path):
    """The state survives np.savez / np.load, where numbers come back as 0-d arrays."""
    s = ReduceOnPlateau(0.1, patience=0)
    path = tmp_path / "s.npz"
    np.savez(path, **s.state_dict())          # best is still inf
    with np.load(path) as data:
        loaded = {k: data[k] for k in data.files}
    t = ReduceOnPlateau(0.1, patience=0)
    t.load_state_dict(loaded)
    assert t.state_dict() == s.state_dict()
    assert t.best == math.inf and type(t.fails) is int


@pytest.mark.parametrize("change, match", [
    ({"fails": -1}, r"invalid fails: -1 \(must be integer >= 0\)"),
    ({"fails": 1.5}, r"invalid fails: 1.5"),
    ({"value": 0.5}, r"invalid value: 0.5 \(must be 0.001 <= x <= 0.1\)"),
    ({"best": float("nan")}, r"invalid best: nan"),
    ({"reductions": "2"}, r"invalid reductions: '2'"),
])
def test_plateau_bad_state_changes_nothing(change, match):
    s = ReduceOnPlateau(0.1, min_value=0.001)
    s.observe(1.0)
    before = s.state_dict()
    state = dict(before, **change)
    with pytest.raises(ValueError, match=match):
        s.load_state_dict(state)
    assert s.state_dict() == before


def test_plateau_missing_or_extra_state():
    s = ReduceOnPlateau(0.1)
    state = s.state_dict()
    del state["best"]
    with pytest.raises(ValueError, match="ReduceOnPlateau: state lacks best"):
        s.load_state_dict(state)
    with pytest.raises(ValueError, match="unexpected state entries extra"):
        s.load_state_dict(dict(s.state_dict(), extra=1))
    with pytest.raises(ValueError, match="state must be a dict"):
        s.load_state_dict([1, 2])


def test_stateless_schedules_have_empty_state():
    for s in (StepDecay(0.1, 0.5, 3), ExponentialDecay(0.1, 7), CosineWithWarmup(0.1, 2, 9)):
        assert s.state_dict() == {}
        s.load_state_dict({})
        with pytest.raises(ValueError, match="unexpected state entries value"):
            s.load_state_dict({"value": 1.0})


def test_repr_names_the_arguments():
    assert repr(StepDecay(0.1, 0.5, 3)) == "StepDecay(initial=0.1, factor=0.5, every=3)"
    assert repr(CosineWithWarmup(1, 2, 9)) == (
        "CosineWithWarmup(peak=1.0, warmup=2, total=9, final=0.0)")
    assert "min_improvement=0.0" in repr(ReduceOnPlateau(0.1))


# ----------------------------------------------------------------------
# bad arguments

@pytest.mark.parametrize("make, match", [
    (lambda: StepDecay(0, 0.5, 10), r"StepDecay: invalid initial: 0 \(must be x > 0\)"),
    (lambda: StepDecay(0.1, 1.5, 10), r"invalid factor: 1.5 \(must be 0 < x <= 1\)"),
    (lambda: StepDecay(0.1, 0, 10), r"invalid factor: 0 \(must be 0 < x <= 1\)"),
    (lambda: StepDecay(0.1, 0.5, 0), r"invalid every: 0 \(must be integer >= 1\)"),
    (lambda: StepDecay(0.1, 0.5, 2.5), r"invalid every: 2.5"),
    (lambda: StepDecay("0.1", 0.5, 2), r"invalid initial: '0.1'"),
    (lambda: StepDecay(float("nan"), 0.5, 2), r"invalid initial: nan"),
    (lambda: ExponentialDecay(0.1, 0), r"ExponentialDecay: invalid halflife: 0 \(must be x > 0\)"),
    (lambda: ExponentialDecay(0.1, -3), r"invalid halflife: -3"),
    (lambda: ExponentialDecay(0.1, 5, min_value=0.2),
     r"invalid min_value: 0.2 \(must be 0 <= x <= 0.1\)"),
    (lambda: CosineWithWarmup(-1, 0, 10), r"CosineWithWarmup: invalid peak: -1"),
    (lambda: CosineWithWarmup(1, -1, 10), r"invalid warmup: -1 \(must be integer >= 0\)"),
    (lambda: CosineWithWarmup(1, 10, 10), r"invalid total: 10 \(must be integer > 10\)"),
    (lambda: CosineWithWarmup(1, 0, 10, final=2), r"invalid final: 2 \(must be 0 <= x <= 1\)"),
    (lambda: ReduceOnPlateau(0.1, factor=1), r"ReduceOnPlateau: invalid factor: 1 \(must be 0 < x < 1\)"),
    (lambda: ReduceOnPlateau(0.1, patience=-1), r"invalid patience: -1 \(must be integer >= 0\)"),
    (lambda: ReduceOnPlateau(0.1, min_improvement=-0.1), r"invalid min_improvement: -0.1"),
    (lambda: ReduceOnPlateau(0.1, min_value=1), r"invalid min_value: 1 \(must be 0 <= x <= 0.1\)"),
    (lambda: ReduceOnPlateau(True), r"invalid initial: True"),
])
def test_bad_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


# ----------------------------------------------------------------------
# the example script that plots them

def load_example():
    import importlib.util
    import pathlib
    path = pathlib.Path(__file__).resolve().parents[1] / "examples" / "schedules.py"
    spec = importlib.util.spec_from_file_location("schedules_example", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_example_curves():
    example = load_example()
    values, (valid_at, valid_loss) = example.curves(200, 0.3)
    assert len(values) == 4 and all(v.shape == (200,) for v in values.values())
    cosine = values["CosineWithWarmup(warmup=20, total=200)"]
    np.testing.assert_allclose(cosine, [cosine_reference(n, 0.3, 20, 200, 0.0)
                                        for n in range(200)], rtol=1e-13, atol=1e-17)
    step = values["StepDecay(factor=0.5, every=50)"]
    np.testing.assert_array_equal(step, 0.3 * 0.5 ** (np.arange(200) // 50))
    plateau = next(v for k, v in values.items() if k.startswith("ReduceOnPlateau"))
    assert plateau[0] == 0.3 and (np.diff(plateau) <= 0).all() and plateau[-1] < 0.3
    np.testing.assert_array_equal(valid_at, np.arange(0, 200, 5))
    assert valid_loss.shape == (40,)


def test_example_writes_a_png(tmp_path):
    from click.testing import CliRunner
    import matplotlib.image

    example = load_example()
    out = tmp_path / "s.png"
    result = CliRunner().invoke(example.main, ["--updates", "120", "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert f"wrote {out}" in result.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = matplotlib.image.imread(out)
    assert image.shape == (600, 800, 4)
    assert image[..., :3].std() > 0.05        # not a blank canvas
    bad = CliRunner().invoke(example.main, ["--updates", "5", "--output", str(out)])
    assert bad.exit_code == 2 and "Invalid value for '--updates'" in bad.output
