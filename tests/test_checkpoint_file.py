"""The checkpoint file format (downhill.checkpoint): writes killed with SIGKILL,
stale temporaries, unusable paths, file modes, and hostile or broken files.

Writers run as real subprocesses that load ``downhill/checkpoint.py`` by its
path (no PyTensor import, so a trial takes a fraction of a second) and write
to one target in a loop, printing each counter once its write has returned.
"""

import json
import os
import random
import signal
import stat
import subprocess
import sys
import time
import tracemalloc
import zipfile

import numpy as np
import pytest

from downhill import checkpoint

#: Elements of the array each looping writer saves: 2 MB, as in the report.
N = 250_000

WRITER = r"""
import importlib.util, sys
import numpy as np
spec = importlib.util.spec_from_file_location("checkpoint_under_test", sys.argv[1])
ckpt = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ckpt)
target, n, i = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
while True:
    i += 1
    ckpt.write(target, {"i": i, "a": np.full(n, i, dtype=np.float64)}, "test", "Loop")
    print(i, flush=True)
"""

#: Files a test puts beside the target that no write of it may touch: a dead
#: writer's temporary of another target, and names that are not our temporaries.
DECOYS = [".other.npz.downhill-0123abcd.tmp", ".run.npz.tmp", "run.npz.bak",
          ".run.npz.downhill-0123abcd.tmp.keep"]


def start_writer(path, first):
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, checkpoint.__file__, str(path), str(N), str(first)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def leftovers(folder, keep=("run.npz",)):
    return sorted(set(os.listdir(folder)) - set(keep) - set(DECOYS))


def check_complete(path, candidates):
    """The file is one complete checkpoint, written with a counter in ``candidates``."""
    header, state = checkpoint.read(path)
    assert header["algorithm"] == "Loop"
    assert state["i"] in candidates, (state["i"], candidates)
    assert state["a"].shape == (N,) and (state["a"] == state["i"]).all()
    return state["i"]


def kill_while_writing(path, rng):
    """One trial: a looping writer killed with SIGKILL at a random moment.

    The file must then hold the last write the writer finished or the one
    it was making. Returns the counter the file holds.
    """
    before = checkpoint.read(path)[1]["i"]
    proc = start_writer(path, before)
    first = proc.stdout.readline()
    assert first, proc.communicate()[1]
    time.sleep(rng.uniform(0, 0.1))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    last = int(([first] + proc.stdout.read().split())[-1])
    proc.stdout.close()
    proc.stderr.close()
    return check_complete(path, (last, last + 1))


def trials_until_leaks(path, rng, leaks=3, trials=20):
    """Kill writers until ``leaks`` of them left a temporary (or ``trials`` ran)."""
    left = 0
    for _ in range(trials):
        kill_while_writing(path, rng)
        left += bool(leftovers(path.parent))
        if left >= leaks:
            break
    assert left, "no kill landed inside a write: the trials tested nothing"
    return left


def start(path):
    checkpoint.write(path, {"i": 0, "a": np.zeros(N)}, "test", "Loop")
    for name in DECOYS:
        (path.parent / name).write_bytes(b"not ours")


# ----------------------------------------------------------------------
# SIGKILL and stale temporaries


def test_killed_writes_leave_a_complete_file_and_the_next_write_removes_their_temporaries(
        tmp_path):
    path = tmp_path / "run.npz"
    start(path)
    trials_until_leaks(path, random.Random(5))
    i = checkpoint.read(path)[1]["i"]
    checkpoint.write(path, {"i": i + 1, "a": np.full(N, i + 1.0)}, "test", "Loop")
    assert leftovers(tmp_path) == []
    check_complete(path, (i + 1,))
    for name in DECOYS:
        assert (tmp_path / name).read_bytes() == b"not ours"


def stop_while_writing(proc, folder, rng):
    """SIGSTOP ``proc`` at a moment when it is inside a write; returns its temporary."""
    for _ in range(500):
        time.sleep(rng.uniform(0, 0.02))
        proc.send_signal(signal.SIGSTOP)
        os.waitpid(proc.pid, os.WUNTRACED)  # stopped for sure
        # a non-empty temporary: its writer has got past creating (and locking) it
        temps = [e for e in leftovers(folder) if os.path.getsize(folder / e) > 0]
        if temps:
            assert len(temps) == 1, temps
            return temps[0]
        proc.send_signal(signal.SIGCONT)
    pytest.fail("the writer was never stopped inside a write")


def test_a_live_writers_temporary_is_kept_while_dead_ones_are_removed(tmp_path):
    path = tmp_path / "run.npz"
    start(path)
    rng = random.Random(7)
    live = start_writer(path, 1000)
    try:
        assert live.stdout.readline()
        mine = stop_while_writing(live, tmp_path, rng)
        size = os.path.getsize(tmp_path / mine)
        # writers that die beside the stopped one; their own writes must not
        # take the live temporary for a dead one either
        trials_until_leaks(path, rng)
        assert mine in leftovers(tmp_path)
        i = checkpoint.read(path)[1]["i"]
        checkpoint.write(path, {"i": i + 1, "a": np.full(N, i + 1.0)}, "test", "Loop")
        assert leftovers(tmp_path) == [mine]
        assert os.path.getsize(tmp_path / mine) == size
        # let it go on: its write completes, over the file
        live.send_signal(signal.SIGCONT)
        deadline = time.monotonic() + 20
        while mine in os.listdir(tmp_path):
            assert time.monotonic() < deadline, "the continued writer did not finish"
            time.sleep(0.01)
        assert checkpoint.read(path)[1]["i"] >= 1001
    finally:
        live.kill()
        live.wait()
        live.stdout.close()
        live.stderr.close()
    i = checkpoint.read(path)[1]["i"]
    checkpoint.write(path, {"i": i + 1, "a": np.full(N, i + 1.0)}, "test", "Loop")
    assert leftovers(tmp_path) == []


def test_a_target_name_too_long_for_the_suffix_still_gets_its_temporaries_removed(tmp_path):
    # the temporary's name is longer than the target's; near the 255-byte
    # limit it uses a digest of the name instead of the name
    path = tmp_path / ("r" * 240 + ".npz")
    checkpoint.write(path, {"i": 0, "a": np.zeros(N)}, "test", "Loop")
    rng = random.Random(3)
    trials_until_leaks(path, rng, leaks=1)
    i = checkpoint.read(path)[1]["i"]
    checkpoint.write(path, {"i": i + 1, "a": np.full(N, i + 1.0)}, "test", "Loop")
    assert os.listdir(tmp_path) == [path.name]


# ----------------------------------------------------------------------
# file modes


def test_a_new_file_follows_the_umask_and_a_replaced_one_keeps_its_mode(tmp_path):
    path = tmp_path / "run.npz"
    old = os.umask(0o027)
    try:
        checkpoint.write(path, {"a": np.zeros(2)}, "test", "Loop")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    os.chmod(path, 0o604)
    checkpoint.write(path, {"a": np.ones(2)}, "test", "Loop")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o604
    np.testing.assert_array_equal(checkpoint.read(path)[1]["a"], np.ones(2))


# ----------------------------------------------------------------------
# unusable paths


def missing_folder(tmp_path):
    return tmp_path / "missing" / "run.npz", "does not exist"


def a_directory(tmp_path):
    (tmp_path / "runs").mkdir()
    return tmp_path / "runs", "is a directory"


def a_file_as_folder(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    return tmp_path / "notes.txt" / "run.npz", "is not a folder"


def trailing_separator(tmp_path):
    return str(tmp_path / "run.npz") + os.sep, "names a folder"


def empty(tmp_path):
    return "", "empty"


def an_int(tmp_path):
    return 5, "(of type int) is not a file path"


BAD_PATHS = [missing_folder, a_directory, a_file_as_folder,
             trailing_separator, empty, an_int]


def listing(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.mark.parametrize("case", BAD_PATHS, ids=lambda case: case.__name__)
def test_check_path_names_the_path_and_the_problem_and_leaves_nothing(tmp_path, case):
    path, problem = case(tmp_path)
    before = listing(tmp_path)
    with pytest.raises(ValueError) as info:
        checkpoint.check_path(path)
    message = str(info.value)
    assert problem in message and "invalid checkpoint" in message
    assert repr(os.fspath(path) if not isinstance(path, int) else path) in message
    assert "downhill-" not in message and ".checkpoint-" not in message
    assert listing(tmp_path) == before


def test_check_path_accepts_a_usable_path_and_leaves_nothing(tmp_path):
    assert checkpoint.check_path(tmp_path / "run.npz") == str(tmp_path / "run.npz")
    (tmp_path / "old.npz").write_bytes(b"an existing file is replaced, not read")
    assert checkpoint.check_path(tmp_path / "old.npz") == str(tmp_path / "old.npz")
    assert listing(tmp_path) == ["old.npz"]


@pytest.mark.parametrize("case", [missing_folder, a_directory, a_file_as_folder],
                         ids=lambda case: case.__name__)
def test_write_errors_name_the_target_not_a_temporary(tmp_path, case):
    path, problem = case(tmp_path)
    before = listing(tmp_path)
    with pytest.raises(OSError) as info:
        checkpoint.write(path, {"a": np.zeros(2)}, "test", "Loop")
    message = str(info.value)
    assert repr(str(path)) in message and problem in message
    assert "downhill-" not in message and ".checkpoint-" not in message
    assert listing(tmp_path) == before


def test_write_refuses_a_path_that_is_not_one(tmp_path):
    with pytest.raises(ValueError, match=r"invalid checkpoint: 5 \(of type int\) is not a file path"):
        checkpoint.write(5, {"a": np.zeros(2)}, "test", "Loop")


# ----------------------------------------------------------------------
# broken and hostile files: always a CheckpointError, never inflated


HEADER = {"format": 1, "downhill": "test", "algorithm": "SGD"}


def npy_member(archive, name, array=None, raw_header=None, data=b"",
               compress=zipfile.ZIP_STORED):
    info = zipfile.ZipInfo(name)
    info.compress_type = compress
    with archive.open(info, "w", force_zip64=True) as f:
        if raw_header is not None:
            np.lib.format.write_array_header_1_0(f, raw_header)
            f.write(data)
        else:
            np.lib.format.write_array(f, array, allow_pickle=array.dtype.hasobject)


def zeros_member(archive, name, nbytes, compress=zipfile.ZIP_DEFLATED):
    """A float64 member of ``nbytes`` zeros, written a MiB at a time."""
    info = zipfile.ZipInfo(name)
    info.compress_type = compress
    chunk = bytes(2 ** 20)
    with archive.open(info, "w", force_zip64=True) as f:
        np.lib.format.write_array_header_1_0(
            f, {"descr": "<f8", "fortran_order": False, "shape": (nbytes // 8,)})
        for _ in range(nbytes // len(chunk)):
            f.write(chunk)


def make_archive(path, state, header_text=None):
    """An archive with the given header state; returns it open for more members."""
    text = header_text if header_text is not None else json.dumps(dict(HEADER, state=state))
    archive = zipfile.ZipFile(path, "w")
    npy_member(archive, "__header__.npy", np.frombuffer(text.encode(), dtype=np.uint8))
    return archive


def npy_saved_as_npz(path):
    np.save(open(path, "wb"), np.zeros(3))


def list_as_array_reference(path):
    with make_archive(path, {"w": {"__array__": ["/w"]}}) as archive:
        npy_member(archive, "/w.npy", np.zeros(3))


def deep_header(path):
    depth = 100_000
    text = json.dumps(dict(HEADER, state=None))[:-len("null}")] + "[" * depth + "]" * depth + "}"
    make_archive(path, None, header_text=text).close()


def huge_declared_shape(path):
    with make_archive(path, {"w": {"__array__": "/w"}}) as archive:
        npy_member(archive, "/w.npy", raw_header={"descr": "<f8", "fortran_order": False,
                                                 "shape": (10 ** 12,)}, data=bytes(16))


def unknown_member(path):
    with make_archive(path, {"w": {"__array__": "/w"}}) as archive:
        npy_member(archive, "/w.npy", np.zeros(3))
        npy_member(archive, "/extra.npy", np.zeros(3))


def duplicate_member(path):
    with make_archive(path, {"w": {"__array__": "/w"}}) as archive:
        npy_member(archive, "/w.npy", np.zeros(3))
        with pytest.warns(UserWarning, match="Duplicate name"):
            npy_member(archive, "/w.npy", np.ones(3))


def state_not_a_dict(path):
    make_archive(path, [1, 2]).close()


BROKEN = {
    state_not_a_dict: "its state is a list, not a dict",
    npy_saved_as_npz: "single .npy array",
    list_as_array_reference: "array reference is ['/w']",
    deep_header: "nested too deeply",
    huge_declared_shape: "declares shape (1000000000000,)",
    unknown_member: "does not name the member(s) '/extra.npy'",
    duplicate_member: "'/w.npy' appears twice",
}


@pytest.mark.parametrize("make", BROKEN, ids=lambda make: make.__name__)
def test_a_broken_file_is_a_checkpoint_error(tmp_path, make):
    path = tmp_path / "run.npz"
    make(path)
    with pytest.raises(checkpoint.CheckpointError) as info:
        checkpoint.read(path)
    assert BROKEN[make] in str(info.value) and str(path) in str(info.value)


BOMB = 64 * 2 ** 20  # 64 MiB of zeros, deflated to some 64 KiB


def unreferenced_bomb(path):
    with make_archive(path, {"w": {"__array__": "/w"}}) as archive:
        npy_member(archive, "/w.npy", np.zeros(3))
        zeros_member(archive, "/junk.npy", BOMB)
    return "'/junk.npy' is compressed"


def referenced_bomb(path):
    with make_archive(path, {"w": {"__array__": "/w"}}) as archive:
        zeros_member(archive, "/w.npy", BOMB)
    return "'/w.npy' is compressed"


@pytest.mark.parametrize("make", [unreferenced_bomb, referenced_bomb],
                         ids=lambda make: make.__name__)
def test_a_compressed_member_is_refused_without_inflating_it(tmp_path, make):
    path = tmp_path / "run.npz"
    problem = make(path)
    assert os.path.getsize(path) < BOMB / 100
    tracemalloc.start()
    try:
        with pytest.raises(checkpoint.CheckpointError, match=problem):
            checkpoint.read(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2 ** 20, f"reading took {peak} bytes"


class Planted:
    """Unpickling this creates the folder ``marker``: proof that a pickle was read."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def test_a_pickle_in_a_member_is_refused_unread(tmp_path):
    # a guard: the reader never unpickles (this passed before the reader's rewrite too)
    path = tmp_path / "run.npz"
    marker = str(tmp_path / "unpickled")
    with make_archive(path, {"w": {"__array__": "/w"}}) as archive:
        npy_member(archive, "/w.npy", np.array([Planted(marker)], dtype=object))
    with pytest.raises(checkpoint.CheckpointError, match="pickle|allow_pickle"):
        checkpoint.read(path)
    assert not os.path.exists(marker)


def test_read_only_folder_is_refused_before_anything_is_written(tmp_path):
    """A folder the user may not create files in. Root may write anywhere
    chmod forbids, so as root (CI) the folder is Linux's /sys, where no one
    can create a file."""
    if os.geteuid() == 0:
        folder = "/sys"
    else:
        folder = tmp_path / "ro"
        folder.mkdir()
        os.chmod(folder, 0o555)
    before = sorted(os.listdir(folder))
    with pytest.raises(ValueError, match="cannot create files in the folder"):
        checkpoint.check_path(os.path.join(folder, "run.npz"))
    assert sorted(os.listdir(folder)) == before


# ----------------------------------------------------------------------
# paths that are not regular files: refused at once, before any read

READER = r"""
import importlib.util, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))  # a runaway read ends here
spec = importlib.util.spec_from_file_location("checkpoint_under_test", sys.argv[1])
ckpt = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ckpt)
try:
    ckpt.read(sys.argv[2])
except ckpt.CheckpointError as error:
    print("CheckpointError:", error)
"""


def endless(tmp_path, kind):
    """A path to something that is not a regular file, and what it is."""
    if kind == "dev-zero link":
        path = tmp_path / "run.npz"
        path.symlink_to("/dev/zero")
        return path, "a character device (/dev/zero)"
    if kind == "fifo":
        path = tmp_path / "run.npz"
        os.mkfifo(path)  # no writer: opening it for reading would block
        return path, "a FIFO (named pipe)"
    if kind == "directory":
        return tmp_path, "a directory"
    return "/dev/null", "a character device"


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX files")
@pytest.mark.parametrize("kind", ["dev-zero link", "fifo", "directory", "dev-null"])
def test_a_path_that_is_not_a_regular_file_is_refused_at_once(tmp_path, kind):
    path, what = endless(tmp_path, kind)
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-c", READER, checkpoint.__file__, str(path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("CheckpointError:"), done.stdout + done.stderr[-2000:]
    assert f"it is {what}" in done.stdout and "not a regular file" in done.stdout
    assert time.monotonic() - start < 60


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX files")
def test_loading_a_fifo_changes_nothing(tmp_path):
    import pytensor
    import downhill

    w = pytensor.shared(np.arange(3.0), name="w")
    opt = downhill.build("rmsprop", ((w - 1) ** 2).sum())
    before = opt.state_dict()
    path, _ = endless(tmp_path, "fifo")
    # were the load to block on the FIFO, a writer would come after a few seconds,
    # so that the test fails rather than hangs
    import threading

    stop = threading.Event()

    def unblock():
        while not stop.wait(0.1):
            try:
                os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
                return
            except OSError:  # no reader (yet)
                pass

    timer = threading.Timer(5, unblock)
    timer.start()
    try:
        with pytest.raises(checkpoint.CheckpointError, match="FIFO"):
            opt.load(path)
    finally:
        timer.cancel()
        stop.set()
    after = opt.state_dict()
    assert after["counters"] == before["counters"]
    np.testing.assert_array_equal(w.get_value(), np.arange(3.0))
