"""What a person sees in a real terminal: the CLI and the Python API on a pty.

Each test runs a real process on a pseudo-terminal of a given size (the
terminal is its controlling terminal, so Ctrl-C is the byte ``\\x03`` typed
into it, turned into SIGINT by the terminal driver), and replays everything
it wrote through a small terminal emulator: the lines left on the screen,
and whether any line ran past the right edge.
"""

import fcntl
import os
import pathlib
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import textwrap
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX pty")


class Screen:
    """Just enough of a VT100 to replay rich's output: the text left, and overflows.

    Lines that scroll off the top are kept (``lines`` is the whole history).
    A character written past the last column wraps onto the next line, as
    terminals do, and is counted in ``overflows``.
    """

    CSI = re.compile(r"\x1b\[([?0-9;]*)([@-~])")
    OSC = re.compile(r"\x1b\][^\x07\x1b]*(\x07|\x1b\\)")

    def __init__(self, columns):
        self.columns = columns
        self.lines = [[]]
        self.row = self.col = 0
        self.overflows = 0

    def feed(self, text):
        text = self.OSC.sub("", text)
        i = 0
        while i < len(text):
            match = self.CSI.match(text, i)
            if match:
                self._csi(match.group(1), match.group(2))
                i = match.end()
                continue
            char = text[i]
            i += 1
            if char == "\r":
                self.col = 0
            elif char == "\n":
                self._down()
            elif char == "\b":
                self.col = max(self.col - 1, 0)
            elif char == "\x1b":
                i += 1   # a two-byte escape (e.g. ESC 7): nothing to draw
            elif char >= " ":
                if self.col >= self.columns:
                    self.overflows += 1
                    self.col = 0
                    self._down()
                line = self.lines[self.row]
                line.extend(" " * (self.col + 1 - len(line)))
                line[self.col] = char
                self.col += 1

    def _down(self):
        self.row += 1
        if self.row == len(self.lines):
            self.lines.append([])

    def _csi(self, params, final):
        numbers = [int(p) if p.isdigit() else 0 for p in params.lstrip("?").split(";")]
        n = max(numbers[0], 1)
        line = self.lines[self.row]
        if final == "A":
            self.row = max(self.row - n, 0)
        elif final == "B":
            for _ in range(n):
                self._down()
        elif final == "C":
            self.col += n
        elif final == "D":
            self.col = max(self.col - n, 0)
        elif final == "G":
            self.col = n - 1
        elif final == "K":
            mode = numbers[0]
            if mode == 0:
                del line[self.col:]
            elif mode == 1:
                line[:self.col] = " " * min(self.col, len(line))
            else:
                line.clear()

    def text(self):
        """The lines written, without trailing blanks and empty lines."""
        lines = ["".join(line).rstrip() for line in self.lines]
        return [line for line in lines if line]


def run_on_pty(args, columns=80, rows=30, interrupt_when=None, timeout=120, env=None,
               cwd=ROOT):
    """Run a command on a pty; optionally type Ctrl-C once its output matches.

    Returns
    -------
    returncode : int
    screen : Screen
    output : str
        Everything written, raw.
    """
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    environment = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    environment.update({"TERM": "xterm-256color", "PYTHONPATH": str(ROOT), **(env or {})})

    def controlling_terminal():   # in the child, after setsid
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, cwd=cwd,
                            env=environment, start_new_session=True,
                            preexec_fn=controlling_terminal)
    os.close(slave)
    chunks = []
    typed = interrupt_when is None
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:   # the child closed the terminal
                    break
                if not data:
                    break
                chunks.append(data)
            if not typed and re.search(interrupt_when, b"".join(chunks).decode(errors="replace")):
                os.write(master, b"\x03")
                typed = True
            if proc.poll() is not None and not ready:
                break
        else:
            proc.kill()
            pytest.fail(f"{args} did not finish in {timeout} s")
        returncode = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    output = b"".join(chunks).decode(errors="replace")
    screen = Screen(columns)
    screen.feed(output)
    return returncode, screen, output


def downhill(*args):
    return [sys.executable, "-m", "downhill", *map(str, args)]


def test_screen_emulator_replays_redraws_and_counts_overflows():
    screen = Screen(10)
    screen.feed("abc\r\x1b[2Kxy\r\nline two\x1b[1A\r\x1b[2Kup\r\n\r\n0123456789A")
    assert screen.text() == ["up", "line two", "0123456789", "A"]
    assert screen.overflows == 1


@pytest.mark.parametrize("columns", [80, 120])
def test_demo_leaves_a_few_lines_that_fit(columns):
    code, screen, output = run_on_pty(downhill("demo"), columns=columns)
    assert code == 0, output
    lines = screen.text()
    assert screen.overflows == 0, lines
    assert all(len(line) < columns for line in lines)
    assert len(lines) <= 8, lines
    # the progress line was drawn, then erased: the results say how the run ended
    assert "\r" in output and not any(line.startswith("RMSProp  ") for line in lines)
    assert any(re.match(r"rmsprop: 500 iterations \(500 updates\) in [\d.]+ s, reached "
                        r"max_updates$", line) for line in lines), lines
    assert "  monitors of the best parameters, from iteration 500:" in lines
    assert any(line.startswith("  validation: loss=") for line in lines)


def test_ctrl_c_stops_the_run_with_one_message_and_exit_130(tmp_path):
    code, screen, output = run_on_pty(
        downhill("run", "rosenbrock", "--max-updates", 10 ** 7, "--patience", 10 ** 7,
                 "--checkpoint", "run.npz"),
        interrupt_when=r"ETA", cwd=tmp_path)
    assert code == 130, output
    text = "\n".join(screen.text())
    assert screen.overflows == 0, text
    words = " ".join(text.split())   # the message wraps at the terminal's width
    match = re.search(r"interrupted at iteration (\d+); best parameters \(iteration (\d+)\) "
                      r"kept; checkpoint saved to (\S+)", words)
    assert match, text
    assert int(match.group(1)) >= int(match.group(2)) > 0
    assert match.group(3) == "run.npz" and (tmp_path / "run.npz").exists()
    assert text.count("interrupted at iteration") == 1
    # the progress line was erased, the terminal's "^C" echo notwithstanding
    assert not re.search(r"^RMSProp  ", text, re.M), text
    # the results of the best parameters follow, then where the checkpoint is
    assert re.search(r"\n  train: +loss=", text) and re.search(r"\n  validation: +loss=", text)
    assert f"checkpoint: saved to run.npz (iteration {match.group(1)})" in text
    assert "Traceback" not in output and "Aborted" not in output


def test_ctrl_c_while_compiling_stops_at_once(tmp_path):
    # an empty compile cache: the first compilation takes seconds
    started = time.monotonic()
    code, screen, output = run_on_pty(
        downhill("demo"), interrupt_when=r"compiling the RMSProp step",
        env={"PYTENSOR_FLAGS": f"base_compiledir={tmp_path}"})
    assert code == 130, output
    assert screen.text()[-1] == "interrupted while compiling the RMSProp step; nothing trained"
    assert time.monotonic() - started < 60
    assert "Traceback" not in output and "Exception ignored" not in output


def test_ctrl_c_stops_a_comparison_as_a_whole():
    code, screen, output = run_on_pty(
        downhill("compare", "rosenbrock", "--algos", "sgd,adam", "--max-updates", 10 ** 7,
                 "--patience", 10 ** 7),
        interrupt_when=r"ETA")
    assert code == 130, output
    text = "\n".join(screen.text())
    assert "interrupted at iteration" in text
    assert "sgd: " in text and "adam" not in text.replace("--algos", "")


SCRIPT = textwrap.dedent("""
    import numpy as np, pytensor, pytensor.tensor as pt, downhill
    x = pt.matrix("x")
    rng = np.random.default_rng(0)
    u = pytensor.shared(rng.normal(size=(20, 3)).astype("float32") * 0.1, name="u")
    v = pytensor.shared(rng.normal(size=(3, 30)).astype("float32") * 0.1, name="v")
    y = (rng.normal(size=(20, 3)) @ rng.normal(size=(3, 30))).astype("float32")
    loss = pt.sqr(x - u @ v).mean()
    train, valid = downhill.minimize(loss, [y], batch_size=0, max_updates=300,
                                     learning_rate=0.01, patience=1000{extra})
    print("valid loss", valid["loss"])
""")


def test_python_api_shows_the_progress_on_a_terminal_only(tmp_path):
    script = tmp_path / "quick.py"
    script.write_text(SCRIPT.format(extra=""))
    code, screen, output = run_on_pty([sys.executable, str(script)], columns=80)
    assert code == 0, output
    lines = screen.text()
    assert screen.overflows == 0, lines
    assert len(lines) == 2, lines
    assert lines[0].startswith("RMSProp  it 300  reached max_updates  loss ")
    assert lines[1].startswith("valid loss ")
    # not a terminal: nothing but what the script prints (logging is not configured)
    piped = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                           env=dict(os.environ, PYTHONPATH=str(ROOT)), check=True)
    assert piped.stderr == "" and piped.stdout.startswith("valid loss ")
    # progressbar=False: nothing on the terminal either
    script.write_text(SCRIPT.format(extra=", progressbar=False"))
    code, screen, output = run_on_pty([sys.executable, str(script)], columns=80)
    assert code == 0 and screen.text() == [screen.text()[-1]], output
