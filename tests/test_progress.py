"""The progress display's hooks and text, and the messages a first real task meets.

The display drawn on a real terminal is tested in test_terminal.py; here its
line and summary are checked directly, and the display without a terminal.
"""

import logging

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

import downhill
from downhill import problems, progress
from downhill.interrupts import SIGINT
from downhill.runstate import RunState
from downhill.util import close_names, unknown_name_error


def quadratic():
    w = pytensor.shared(np.full(3, 2.0), name="w")
    return w, (w ** 2).sum()


def reported(run_to, total=100, reason=None, best=(0.25, 40)):
    """A Progress told about a run up to iteration ``run_to``."""
    shown = progress.Progress(False, "RMSProp")
    run = RunState()
    shown.on_start(run, total)
    run.iteration = run.updates = run_to
    run.best_loss, run.best_iteration = best
    shown.on_validation(run, {"loss": best[0]}, True)
    shown.on_iteration(run, {"loss": 0.125})
    if reason is not None:
        shown.on_finish(run, reason)
    return shown


@pytest.mark.parametrize("width", [10, 30, 50, 79, 119, 200])
@pytest.mark.parametrize("reason", [None, "max_updates", "interrupted"])
def test_line_never_exceeds_the_width(width, reason):
    shown = reported(37, reason=reason)
    line = shown.line(width)
    assert len(line) <= width, line
    assert line.startswith("RMSProp"[:width - 1])


def test_line_keeps_the_important_parts_and_drops_the_rest():
    wide = reported(37).line(200)
    assert wide.startswith("RMSProp  37/100  ")
    assert "loss 0.125" in wide and "best 0.25 (it 40)" in wide and "ETA " in wide
    assert "\u2501" in wide and "37%" in wide          # the bar
    narrow = reported(37).line(40)
    assert narrow.startswith("RMSProp  37/100  loss 0.125")
    assert "%" not in narrow                            # no room for a bar
    done = reported(100, reason="patience").line(79)
    assert done.startswith("RMSProp  it 100  stopped by patience  loss 0.125  best 0.25 (it 40)")


def test_compile_phase_line():
    shown = progress.Progress(False, "Adam")
    with shown.compiling():
        line = shown.line(120)
        assert "compiling the Adam step (slow the first time, cached afterwards)" in line
        assert line.endswith(" s")
        assert shown.line(40).endswith(" s") and "slow" not in shown.line(40)
        assert len(shown.line(20)) == 20 and shown.line(20).endswith("\u2026")
        # a Ctrl-C the library holds until the compilation ends: the line says so
        SIGINT.pending = True
        try:
            assert "compiling the Adam step: Ctrl-C, stopping when it ends" in shown.line(80)
        finally:
            SIGINT.pending = False
    with pytest.raises(KeyboardInterrupt):
        with shown.compiling():
            raise KeyboardInterrupt
    assert shown.phase == "compiling" and shown.reason == "interrupted"
    assert shown.line(80).startswith("compiling the Adam step: interrupted after ")


def test_summary_says_why_and_where_the_run_ended():
    shown = reported(100, reason="patience")
    assert shown.summary().startswith(
        "RMSProp: stopped by patience at iteration 100 (100 iterations, 100 updates in ")
    assert shown.summary().endswith("; best validation loss 0.25 at iteration 40")
    assert reported(1, reason="closed").summary().startswith(
        "RMSProp: stopped by the caller at iteration 1 (1 iteration, 1 update in ")


def test_a_run_reports_to_the_display_and_logs_its_summary(caplog):
    w, loss = quadratic()
    shown = progress.Progress(False)
    with caplog.at_level(logging.INFO, logger="downhill"):
        downhill.minimize(loss, algo="sgd", learning_rate=0.1, max_updates=7,
                          validate_every=2, progressbar=shown)
    assert shown.label == "SGD" and shown.phase == "done" and shown.reason == "max_updates"
    assert shown.iteration == shown.updates == shown.best_iteration == 7
    assert shown.best_loss == pytest.approx(12 * 0.8 ** 14)
    summaries = [r.message for r in caplog.records if r.message.startswith("SGD: reached")]
    assert summaries == [shown.summary()]


def test_caller_leaving_the_loop_and_a_checkpoint_are_reported(tmp_path):
    w, loss = quadratic()
    opt = downhill.build("sgd", loss)
    shown = progress.Progress(False)
    for i, _ in enumerate(opt.iterate(learning_rate=0.1, checkpoint=tmp_path / "c.npz",
                                      progressbar=shown)):
        if i == 2:
            break
    assert shown.reason == "closed" and shown.iteration == 3
    assert shown.checkpoint == str(tmp_path / "c.npz")
    again = progress.Progress(False)
    opt2 = downhill.build("sgd", quadratic()[1])
    opt2.minimize(learning_rate=0.1, max_updates=1, checkpoint=tmp_path / "c.npz",
                  resume=True, progressbar=again)
    assert again.resumed_from == (str(tmp_path / "c.npz"), 3)
    assert "; resumed from " in again.summary()


def test_without_a_terminal_true_writes_a_line_per_validation_and_a_summary(capfd):
    w, loss = quadratic()
    downhill.minimize(loss, algo="sgd", learning_rate=0.1, max_updates=4, validate_every=2,
                      progressbar=True)
    lines = capfd.readouterr().err.splitlines()
    assert [l.split(":")[0] for l in lines] == [
        "SGD iteration 0", "SGD iteration 2", "SGD iteration 4", "SGD"]
    assert lines[-1].startswith("SGD: reached max_updates at iteration 4")
    # None: no terminal here, so nothing
    downhill.minimize(loss, algo="sgd", learning_rate=0.1, max_updates=4)
    assert capfd.readouterr().err == ""


@pytest.mark.parametrize("value", ["yes", 1, object()])
def test_progressbar_must_be_a_bool_none_or_a_progress(value):
    w, loss = quadratic()
    with pytest.raises(TypeError, match="invalid progressbar"):
        downhill.build("sgd", loss).iterate(progressbar=value)


# ----------------------------------------------------------------------
# messages


def test_inferred_input_order_hint():
    # logistic regression whose loss mentions t before x: inputs are [t, x]
    x, t = pt.matrix("x"), pt.vector("t")
    w = pytensor.shared(np.zeros(30), name="w")
    p = pt.sigmoid(x @ w)
    loss = -(t * pt.log(p) + (1 - t) * pt.log(1 - p)).mean()
    X, y = np.zeros((426, 30)), np.zeros(426)
    with pytest.raises(ValueError) as error:
        downhill.minimize(loss, [X, y], max_updates=1)
    message = str(error.value)
    assert message.startswith("train input 0 (t) must be 1-d, got shape (426, 30)")
    assert "taken in the order [t, x] (1-d, 2-d)" in message
    assert "pass inputs=[x, t]" in message
    downhill.minimize(loss, [X, y], inputs=[x, t], max_updates=1)   # as advised


def test_no_order_hint_when_the_order_is_not_the_problem():
    x, t = pt.matrix("x"), pt.vector("t")
    w = pytensor.shared(np.zeros(3), name="w")
    loss = ((x @ w - t) ** 2).mean()
    with pytest.raises(ValueError) as error:
        downhill.minimize(loss, [np.zeros((4, 3)), np.zeros((4, 2))], max_updates=1)
    assert "inputs=" not in str(error.value)


@pytest.mark.parametrize("name, meant", [
    ("beta1", ["beta1_halflife"]),              # a prefix
    ("lr", ["learning_rate"]),                  # another library's name
    # a part of the names (the common average_halflife is declared first)
    ("halflife", ["average_halflife", "beta1_halflife", "beta2_halflife"]),
    ("learning_rte", ["learning_rate"]),        # a misspelling
])
def test_close_names(name, meant):
    known = downhill.Adam.hyperparameters()
    assert close_names(name, known)[:len(meant)] == meant
    assert f"did you mean {meant[0]!r}" in str(
        unknown_name_error(name, known, "hyperparameter for Adam"))


def test_unknown_hyperparameter_for_adam_suggests_the_halflife():
    # torch's beta1 is a decay rate; downhill's is given as a half-life
    w, loss = quadratic()
    with pytest.warns(downhill.DownhillWarning,
                      match="'beta1' for Adam, ignored; did you mean 'beta1_halflife'"):
        downhill.build("adam", loss).minimize(beta1=0.9, max_updates=1)


def test_unknown_algorithm_and_problem_suggest_the_closest():
    w, loss = quadratic()
    # the closest first; AdamW is Adam with weight_decay: 'adam' before schedule_free_adamw
    with pytest.raises(ValueError, match=r"unknown algorithm 'adamw' \(did you mean 'adam'[ ?]"):
        downhill.build("adamw", loss)
    with pytest.raises(ValueError, match=r"'rosenbrok' \(did you mean 'rosenbrock'\?\)"):
        problems.make_problem("rosenbrok")
