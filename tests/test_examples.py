"""Each example runs in a smoke setting and writes a readable PNG."""

import pathlib
import runpy

import matplotlib.image
import pytest
from click.testing import CliRunner

import downhill

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"
PNG = b"\x89PNG\r\n\x1a\n"


def run_example(name, *args):
    command = runpy.run_path(str(EXAMPLES / name))["main"]
    result = CliRunner().invoke(command, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


def assert_png(path):
    assert path.read_bytes()[:8] == PNG
    pixels = matplotlib.image.imread(path)
    height, width = pixels.shape[:2]
    assert height > 100 and width > 100
    assert pixels.std() > 0.01   # not a blank canvas


def test_rosenbrock_2d(tmp_path):
    out = tmp_path / "r2.png"
    result = run_example("rosenbrock-2d.py", "--max-updates", 20, "--output", out)
    for algo in downhill.ALGORITHMS:
        assert f"{algo}: loss" in result.output
    assert_png(out)


def test_rosenbrock_100d(tmp_path):
    out = tmp_path / "r100.png"
    result = run_example("rosenbrock-100d.py", "--dims", 10, "--algos", "sgd,rmsprop",
                         "--max-updates", 20, "--output", out)
    assert "sgd: loss" in result.output and "rmsprop: loss" in result.output
    assert_png(out)


def test_digits_sparse_factorization(tmp_path):
    out, curves = tmp_path / "basis.png", tmp_path / "curves.png"
    result = run_example("digits-sparse-factorization.py", "--samples", 50, "--basis", 4,
                         "--max-updates", 20, "--output", out, "--curves", curves)
    assert "reconstruction error" in result.output
    assert_png(out)
    assert_png(curves)


def test_digits_classifier(tmp_path):
    out = tmp_path / "digits.png"
    result = run_example("digits-classifier.py", "--hidden", 8, "--max-updates", 2,
                         "--output", out)
    accuracy = float(result.output.split("validation accuracy ")[1].split("%")[0])
    assert 50 < accuracy <= 100
    assert_png(out)


def test_averaged_weights(tmp_path):
    out = tmp_path / "averaged.png"
    result = run_example("averaged-weights.py", "--max-updates", 2, "--output", out)
    for label in ("the iterate", "EMA, half-life 100", "Polyak, second half"):
        assert f"{label}: best validation loss" in result.output
    assert_png(out)


def test_gradient_accumulation(tmp_path):
    out = tmp_path / "accumulation.png"
    result = run_example("gradient-accumulation.py", "--max-updates", 2, "--output", out)
    lines = dict(line.split(": ", 1) for line in result.output.splitlines() if ": " in line)
    # batches of 64 and 4 accumulated micro-batches of 16: the same steps
    assert lines["batches of 64"] == lines["4 x 16 accumulated"]
    assert lines["batches of 64"].startswith("44 steps")
    assert lines["batches of 16"].startswith("176 steps")
    difference = float(lines["largest difference of a weight, batches of 64 against "
                             "accumulated"])
    assert difference < 1e-5   # float32 rounding
    assert_png(out)


@pytest.mark.parametrize("name", ["rosenbrock-2d.py", "rosenbrock-100d.py",
                                  "digits-sparse-factorization.py", "digits-classifier.py",
                                  "averaged-weights.py", "gradient-accumulation.py"])
def test_every_option_has_help(name):
    command = runpy.run_path(str(EXAMPLES / name))["main"]
    for param in command.params:
        assert param.help, f"{name}: --{param.name} has no help"


@pytest.mark.parametrize("name, args, option", [
    ("digits-classifier.py", ["--algo", "foo"], "'--algo'"),
    ("digits-classifier.py", ["--max-updates", "-1"], "'--max-updates'"),
    ("digits-sparse-factorization.py", ["--algo", "foo"], "'--algo'"),
    ("digits-sparse-factorization.py", ["--basis", "0"], "'--basis'"),
    ("rosenbrock-100d.py", ["--algos", "sgd,foo"], "'--algos'"),
    ("rosenbrock-100d.py", ["--dims", "1"], "'--dims'"),
    ("rosenbrock-2d.py", ["--learning-rate", "-1"], "'--learning-rate'"),
    ("rosenbrock-2d.py", ["--momentum", "1"], "'--momentum'"),
    ("averaged-weights.py", ["--halflife", "0"], "'--halflife'"),
    ("gradient-accumulation.py", ["--accumulate", "1"], "'--accumulate'"),
])
def test_bad_option_values_are_usage_errors(name, args, option):
    # a usage error naming the option before anything runs, not a traceback
    command = runpy.run_path(str(EXAMPLES / name))["main"]
    result = CliRunner().invoke(command, args)
    assert result.exit_code == 2, result.output
    assert f"Invalid value for {option}" in result.output
