"""The command line, through click's CliRunner."""

import json
import logging
import subprocess
import sys

import pytest
from click.testing import CliRunner

import downhill
from downhill import _cli_results, _cli_session, cli, problems
from downhill.hyperparams import Hyper

PNG = b"\x89PNG\r\n\x1a\n"


def invoke(*args):
    return CliRunner().invoke(cli.cli, [str(a) for a in args])


def last_line(result):
    return result.output.strip().splitlines()[-1]


# ----------------------------------------------------------------------
# algorithms


def test_algorithms_lists_every_declaration():
    result = invoke("algorithms")
    assert result.exit_code == 0, result.output
    words = " ".join(result.output.split())   # long meanings wrap to the width
    for name, cls in downhill.ALGORITHMS.items():
        assert f"{name} ({cls.__module__}.{cls.__name__})" in result.output
        for h in cls.hyperparameters().values():
            assert h.name in result.output
            assert h.range_text() in result.output
            assert h.doc in words


@pytest.mark.parametrize("columns", [80, 120])
def test_algorithms_fits_the_terminal(monkeypatch, columns):
    monkeypatch.setenv("COLUMNS", str(columns))
    result = invoke("algorithms")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(map(len, lines)) < columns
    assert max(map(len, lines)) > columns - 20   # the room is used


def test_algorithms_follows_the_registry():
    @downhill.register(name="cli-test-algo")
    class Tested(downhill.SGD):
        """A registered algorithm the listing has never heard of."""
        HYPERS = (Hyper("wiggle", 0.25, "how much to wiggle", low=0, high=1),)
    try:
        result = invoke("algorithms")
    finally:
        del downhill.ALGORITHMS["cli-test-algo"]
    assert result.exit_code == 0, result.output
    assert "cli-test-algo" in result.output
    assert "A registered algorithm the listing has never heard of." in result.output
    line = next(l for l in result.output.splitlines() if "wiggle" in l)
    assert line.split()[:3] == ["wiggle", "0.25", "0"]
    assert "0 <= x <= 1" in line and "how much to wiggle" in line


def test_algorithms_one_shows_common_hypers_too():
    result = invoke("algorithms", "RMSProp")
    assert result.exit_code == 0, result.output
    assert "rms_halflife" in result.output and "learning_rate" in result.output
    assert "sgd (" not in result.output


# ----------------------------------------------------------------------
# demo and run


def test_demo_prints_monitors_and_plots(tmp_path):
    out = tmp_path / "demo.png"
    result = invoke("demo", "--max-updates", 40, "--plot", out)
    assert result.exit_code == 0, result.output
    assert "RMSProp" in result.stdout
    assert "train:" in result.stdout and "validation:" in result.stdout
    assert "u<0.1=" in result.stdout
    assert out.read_bytes()[:8] == PNG


def test_demo_curve_falls_to_the_end():
    # the demo's run: RMSProp with its suggested settings for the factorization
    history = problems.train(problems.factorization(), "rmsprop")
    valid = [v["loss"] for v in history.valid]
    assert len(history.iterations) == 500            # no early stop: still improving
    assert all(b < a for a, b in zip(valid, valid[1:])), valid
    train = [t["loss"] for t in history.train]
    assert all(b < a * 1.01 for a, b in zip(train, train[1:]))
    assert valid[-1] < 1e-4 * valid[0]


def test_demo_json_shows_progress_from_the_start():
    result = invoke("demo", "--max-updates", 40, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["algorithm"] == "rmsprop" and data["problem"] == "factorization"
    assert data["iterations"] == 40
    # the loss starts near 2.67 (see the log lines) and decreases steadily
    assert data["valid"]["loss"] < 2.0
    assert "validation 0 loss=2.66689" in result.stderr


def test_run_json_with_hyperparameters():
    result = invoke("run", "rosenbrock", "--dims", 3, "--algo", "RMSPROP", "--max-updates", 12,
                    "--validate-every", 4, "-H", "rms_halflife=7", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["algorithm"] == "rmsprop"
    assert data["iterations"] == 12 and data["updates"] == 12
    # one key: every setting not left to the algorithm's defaults, given or suggested
    assert "hyperparameters" not in data
    assert data["settings"] == dict(problems.SUGGESTED["rosenbrock"]["rmsprop"],
                                    rms_halflife=7.0, validate_every=4)
    assert data["stopped"] == "max_updates" and data["best_iteration"] == 12
    assert set(data["train"]) == {"loss", "dist"}
    # the optimizer really received it: its settings line is logged
    assert "rms_halflife=7.0" in result.stderr and "validate_every=4" in result.stderr


def test_run_digits_reports_accuracy():
    result = invoke("run", "digits", "--algo", "sgd", "--learning-rate", 0.1,
                    "--max-updates", 2, "--validate-every", 1, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["updates"] == 2 * 23   # 1437 training images in batches of 64
    assert 0.5 < data["valid"]["acc"] <= 1


def test_run_text_output():
    result = invoke("run", "factorization", "--max-updates", 3, "--batch-size", 0,
                    "--patience", 2, "--seed", 1)
    assert result.exit_code == 0, result.output
    assert "factorization:" in result.stdout
    assert "rmsprop: 3 iterations (3 updates)" in result.stdout


def test_run_text_output_states_the_settings():
    result = invoke("run", "factorization", "--max-updates", 3, "--patience", 2,
                    "-H", "rms_halflife=9")
    assert result.exit_code == 0, result.output
    words = " ".join(result.stdout.split())
    assert ("settings: batch_size=0 max_updates=3 validate_every=10 learning_rate=0.003 "
            "rms_halflife=9 patience=2; the rest: defaults (downhill algorithms rmsprop)") in words
    assert "reached max_updates monitors of the best parameters, from iteration 3:" in words


def test_run_text_says_what_checkpoint_it_wrote_and_resumed_from(tmp_path):
    path = tmp_path / "run.npz"
    first = invoke("run", "factorization", "--max-updates", 4, "--checkpoint", path)
    assert first.exit_code == 0, first.output
    assert f"checkpoint: saved to {path} (iteration 4)" in " ".join(first.stdout.split())
    second = invoke("run", "factorization", "--max-updates", 4, "--checkpoint", path,
                    "--resume", "--json")
    assert second.exit_code == 0, second.output
    data = json.loads(second.stdout)
    assert data["resumed_from"] == {"path": str(path), "iteration": 4}
    assert data["checkpoint"] == str(path)
    assert f"RMSProp: resumed from {path} (iteration 4, update 4)" in second.stderr


def test_nesterov_flag_and_hyper_bool():
    result = invoke("run", "rosenbrock", "--algo", "sgd", "--momentum", 0.5, "--nesterov",
                    "--max-updates", 2, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["settings"]["nesterov"] is True
    result = invoke("run", "rosenbrock", "--algo", "sgd", "-H", "nesterov=yes",
                    "-H", "momentum=0.5", "--max-updates", 2, "--json")
    assert result.exit_code == 0, result.output
    settings = json.loads(result.stdout)["settings"]
    assert settings["nesterov"] is True and settings["momentum"] == 0.5


# ----------------------------------------------------------------------
# bad input: exit code 2 and a message naming the option


@pytest.mark.parametrize("args, option, words", [
    (["run", "rosenbrock", "--algo", "adamax-typo"], "'--algo'", ["'rmsprop'", "'sgd'"]),
    (["run", "banana"], "'PROBLEM'", ["'rosenbrock'", "'digits'"]),
    (["run", "rosenbrock", "-H", "rms_halflif=3"], "'-H'", ["did you mean 'rms_halflife'"]),
    (["run", "rosenbrock", "-H", "rms_halflife=-3"], "'-H'", ["rms_halflife", "x > 0"]),
    (["run", "rosenbrock", "-H", "rms_halflife=abc"], "'-H'", ["'abc'", "x > 0"]),
    (["run", "rosenbrock", "-H", "patience=1.5"], "'-H'", ["patience", "integer >= 0"]),
    (["run", "rosenbrock", "-H", "rms_halflife"], "'-H'", ["NAME=VALUE"]),
    (["run", "rosenbrock", "-H", "learning_rate=1", "--learning-rate", "2"], "'-H'",
     ["given twice"]),
    (["run", "rosenbrock", "--algo", "sgd", "-H", "rms_halflife=3"], "'-H'",
     ["unknown hyperparameter for SGD"]),
    (["run", "rosenbrock", "--momentum", "1"], "'--momentum'", ["0 <= x < 1"]),
    (["run", "rosenbrock", "--learning-rate", "0"], "'--learning-rate'", ["x > 0"]),
    # NAG's own rule, checked by the optimizer when the loop starts
    (["run", "rosenbrock", "--algo", "nag", "-H", "nesterov=false"], "'-H'",
     ["NAG always uses Nesterov"]),
    (["run", "factorization", "--dims", "3"], "'--dims'", ["rosenbrock"]),
    (["run", "rosenbrock", "--plot", "out.txt"], "'--plot'", [".png"]),
    (["compare", "rosenbrock", "--algos", "sgd,nope"], "'--algos'", ["'nope'", "rmsprop"]),
    (["algorithms", "nope"], "'[ALGO]'", ["'sgd'"]),
    # suggestions for every unknown name
    (["run", "rosenbrok"], "'PROBLEM'", ["did you mean 'rosenbrock'?"]),
    (["run", "rosenbrock", "--algo", "adamw"], "'--algo'", ["did you mean 'adam'?"]),
    (["compare", "rosenbrock", "--algos", "sgd,rmsprp"], "'--algos'",
     ["did you mean 'rmsprop'?"]),
    (["run", "rosenbrock", "--algo", "adam", "-H", "beta1=0.9"], "'-H'",
     ["did you mean 'beta1_halflife'"]),
    # values that used to pass silently
    (["run", "factorization", "--batch-size", "-5"], "'--batch-size'", ["x>=0"]),
    (["run", "rosenbrock", "--algo", "sgd", "--nesterov", "--momentum", "0"], "'--nesterov'",
     ["needs momentum > 0", "(given)"]),
    (["run", "factorization", "--algo", "sgd", "--nesterov"], "'--nesterov'",
     ["needs momentum > 0", "none is suggested for sgd"]),
    (["run", "factorization", "--algo", "sgd", "-H", "nesterov=yes"], "'-H'",
     ["needs momentum > 0"]),
    (["compare", "factorization", "--algos", "sgd,nag", "--nesterov"], "'--nesterov'",
     ["needs momentum > 0"]),
])
def test_bad_input_is_a_usage_error(args, option, words):
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert f"Invalid value for {option}" in result.stderr
    for word in words:
        assert word in result.stderr
    assert "Traceback" not in result.output


def test_failed_run_exits_1_with_one_line():
    result = invoke("run", "rosenbrock", "--algo", "sgd", "--learning-rate", 0.05)
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    error_lines = [l for l in result.stderr.splitlines() if l.startswith("Error:")]
    assert len(error_lines) == 1
    assert error_lines[0].startswith("Error: FloatingPointError: non-finite loss at iteration")
    # the monitors as text, and the hints in the command line's own syntax
    assert ": loss=" in error_lines[0] and "{" not in error_lines[0]
    assert "--learning-rate" in error_lines[0] and "-H on_nonfinite=skip" in error_lines[0]
    assert "-H max_gradient_norm=" in error_lines[0]
    assert "on_nonfinite='skip'" not in error_lines[0]


def test_debug_shows_the_exception():
    result = invoke("--debug", "run", "rosenbrock", "--algo", "sgd", "--learning-rate", 0.05)
    assert result.exit_code == 1
    assert isinstance(result.exception, FloatingPointError)


def test_missing_matplotlib_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    result = invoke("demo", "--plot", "demo.png")
    assert result.exit_code == 2
    assert "pip install 'downhill[plot]'" in result.stderr


# ----------------------------------------------------------------------
# compare


def test_compare_plots_every_algorithm(tmp_path):
    out = tmp_path / "cmp.png"
    result = invoke("compare", "rosenbrock", "--algos", "SGD,rmsprop", "--max-updates", 15,
                    "--plot", out, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [r["algorithm"] for r in data["runs"]] == ["sgd", "rmsprop"]
    assert all(r["iterations"] == 15 for r in data["runs"])
    assert out.read_bytes()[:8] == PNG


def test_compare_defaults_to_the_whole_registry():
    result = invoke("compare", "rosenbrock", "--dims", 4, "--max-updates", 2)
    assert result.exit_code == 0, result.output
    for name in downhill.ALGORITHMS:
        assert f"{name}: 2 iterations" in result.stdout


def test_compare_reports_a_failed_run_and_exits_1():
    result = invoke("compare", "rosenbrock", "--algos", "sgd,rmsprop", "--learning-rate", 0.05,
                    "--max-updates", 20, "--json")
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert "non-finite loss" in data["runs"][0]["error"]
    assert data["runs"][1]["iterations"] == 20
    assert "1 of 2 runs failed: sgd" in result.stderr


# ----------------------------------------------------------------------
# logging and progress


def test_verbosity_levels_and_cleanup():
    handlers = list(logging.getLogger("downhill").handlers)
    quiet = invoke("-q", "run", "rosenbrock", "--max-updates", 3)
    loud = invoke("-v", "run", "rosenbrock", "--max-updates", 3)
    assert quiet.exit_code == loud.exit_code == 0
    assert "RMSProp 3 loss=" not in quiet.stderr
    assert "RMSProp 3 loss=" in loud.stderr
    assert logging.getLogger("downhill").handlers == handlers


def test_progress_display_without_a_terminal(monkeypatch):
    # the CLI hands the library's display to the run; without a terminal it
    # writes a line per validation and a summary (the pty tests see it drawn)
    monkeypatch.setattr(_cli_session.Settings, "progress_bar", property(lambda self: True))
    result = invoke("-q", "run", "digits", "--max-updates", 2, "--patience", 100)
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    assert lines[0] == "RMSProp iteration 0: validation loss 2.3 (best)"
    assert len(lines) == 3   # validations before the first and after the last iteration
    assert lines[-1].startswith("RMSProp: reached max_updates at iteration 2 "
                                "(2 iterations, 46 updates in ")


def test_log_lines_without_a_terminal_per_validation_not_per_iteration():
    args = ["run", "factorization", "--max-updates", 30, "--validate-every", 10]
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    assert "RMSProp 1 loss=" not in result.stderr
    assert [l.split()[:2] for l in result.stderr.splitlines() if l.startswith("validation")] \
        == [["validation", str(i)] for i in (0, 10, 20, 30)]
    assert "RMSProp: reached max_updates at iteration 30 (30 iterations, 30 updates" \
        in result.stderr
    assert "RMSProp 30 loss=" in invoke("-v", *args).stderr


def test_global_options_after_the_command():
    before = invoke("-q", "run", "factorization", "--max-updates", 2)
    after = invoke("run", "factorization", "--max-updates", 2, "-q")
    assert before.exit_code == after.exit_code == 0, after.output
    assert before.stderr == after.stderr == ""
    loud = invoke("run", "factorization", "--max-updates", 2, "-v")
    assert "RMSProp 2 loss=" in loud.stderr
    debug = invoke("run", "rosenbrock", "--algo", "sgd", "--learning-rate", 0.05, "--debug")
    assert isinstance(debug.exception, FloatingPointError)


def test_python_dash_m():
    result = subprocess.run([sys.executable, "-m", "downhill", "--help"],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    for command in ("algorithms", "demo", "run", "compare"):
        assert command in result.stdout


def test_every_option_has_help():
    commands = [cli.cli] + list(cli.cli.commands.values())
    for command in commands:
        for param in command.params:
            if param.param_type_name == "option":
                assert param.help, f"{command.name} {param.opts} has no help"


def test_run_checkpoint_and_resume_continue_the_same_run(tmp_path):
    path = tmp_path / "run.npz"
    common = ["run", "factorization", "--max-updates", 4, "--validate-every", 1,
              "--patience", 100, "--json"]
    straight = invoke(*common[:2], "--max-updates", 8, *common[4:])
    assert straight.exit_code == 0, straight.output
    first = invoke(*common, "--checkpoint", path, "--checkpoint-every", 2)
    assert first.exit_code == 0, first.output
    assert path.exists()
    second = invoke(*common, "--checkpoint", path, "--resume")
    assert second.exit_code == 0, second.output
    assert json.loads(second.stdout)["valid"] == json.loads(straight.stdout)["valid"]
    assert json.loads(first.stdout)["valid"] != json.loads(straight.stdout)["valid"]


@pytest.mark.parametrize("flag", [["--resume"], ["--checkpoint-every", "3"]])
def test_run_resume_needs_a_checkpoint_file(flag):
    result = invoke("run", "rosenbrock", *flag)
    assert result.exit_code == 2
    assert "needs --checkpoint FILE" in result.output
    assert flag[0] in result.output


def test_run_resume_from_a_corrupt_file_fails_cleanly(tmp_path):
    path = tmp_path / "bad.npz"
    path.write_bytes(b"garbage")
    result = invoke("run", "rosenbrock", "--checkpoint", path, "--resume")
    assert result.exit_code in (1, 2)
    assert "truncated or corrupt" in result.output
    assert "Traceback" not in result.output


def test_run_checkpoint_in_a_missing_folder_is_a_usage_error(tmp_path):
    # checked before training: the run must not end in a failed save
    path = tmp_path / "missing" / "run.npz"
    result = invoke("run", "factorization", "--max-updates", 2, "--checkpoint", path)
    assert result.exit_code == 2, result.output
    assert "'--checkpoint'" in result.output and "does not exist" in result.output
    assert "factorization:" not in result.output   # no run started


@pytest.mark.parametrize("other", [["factorization", "--algo", "adam"], ["rosenbrock"]])
def test_run_resume_from_another_run_names_resume(tmp_path, other):
    # a checkpoint of another algorithm or problem is the file's fault, not a hyperparameter's
    path = tmp_path / "run.npz"
    first = invoke("run", "factorization", "--max-updates", 1, "--checkpoint", path)
    assert first.exit_code == 0, first.output
    result = invoke("run", *other, "--max-updates", 1, "--checkpoint", path, "--resume")
    assert result.exit_code == 2, result.output
    assert "Invalid value for '--resume'" in result.output
    assert "hyperparameters" not in result.output
    assert "Traceback" not in result.output


def test_quiet_shows_errors_only_when_stderr_is_not_a_terminal():
    # NAG warns about momentum 0; -q promises "errors only", not warnings
    args = ["run", "factorization", "--algo", "nag", "--momentum", 0, "--max-updates", 1]
    loud, quiet = invoke(*args), invoke("-q", *args)
    assert loud.exit_code == quiet.exit_code == 0, quiet.output
    assert "warning: NAG with momentum=0" in loud.stderr
    assert "warning" not in quiet.stderr


@pytest.mark.parametrize("command", [["demo"], ["run", "rosenbrock"],
                                     ["compare", "rosenbrock", "--algos", "sgd"]])
def test_plot_in_a_missing_folder_is_a_usage_error(tmp_path, command):
    # checked before training: a long comparison must not end in a failed save
    result = invoke(*command, "--max-updates", 2, "--plot", tmp_path / "missing" / "p.png")
    assert result.exit_code == 2, result.output
    assert "'--plot'" in result.output and "does not exist" in result.output


def test_json_output_is_standard_json():
    # json.dumps writes inf and nan as Infinity and NaN, which parsers other than Python's reject
    def strict(text):
        return json.loads(text, parse_constant=lambda c: pytest.fail(f"JSON has {c}"))

    data = strict(_cli_results.dumps({"loss": float("nan"), "runs": [{"limit": float("inf")}]}))
    assert data == {"loss": "nan", "runs": [{"limit": "inf"}]}


@pytest.mark.parametrize("option", [["-H", "max_gradient_norm=inf"], ["--learning-rate", "inf"],
                                    ["--momentum", "nan"]])
def test_non_finite_hyperparameters_are_usage_errors(option):
    result = invoke("run", "rosenbrock", *option, "--max-updates", 2)
    assert result.exit_code == 2, result.output
    assert "invalid" in result.output and "Traceback" not in result.output


def test_the_peer_form_switches_and_the_new_rules_from_the_command_line():
    result = invoke("run", "rosenbrock", "--algo", "rmsprop", "-H", "centered=false",
                    "-H", "regularizer_in_root=false", "--max-updates", 2, "--json")
    assert result.exit_code == 0, result.output
    settings = json.loads(result.stdout)["settings"]
    assert settings["centered"] is False and settings["regularizer_in_root"] is False
    for algo in ("amsgrad", "adamax", "nadam", "radam", "adabelief", "yogi", "adagrad_window"):
        result = invoke("run", "rosenbrock", "--algo", algo, "--max-updates", 2, "--json")
        assert result.exit_code == 0, (algo, result.output)
        assert json.loads(result.stdout)["iterations"] == 2
    result = invoke("run", "rosenbrock", "--algo", "adam", "-H", "amsgrad_max=maxi")
    assert result.exit_code == 2
    assert "invalid amsgrad_max: 'maxi' (must be one of 'corrected', 'raw')" in result.output
