"""Checkpoint files: a training state written to one ``.npz`` file, atomically.

A state is a nested dict (see :meth:`downhill.Optimizer.state_dict`). Its
arrays become entries of the ``.npz`` archive; everything else (numbers,
strings, the random generators' states) goes into a JSON header stored in
the same archive, with the library version and the algorithm's name. No
pickles are written or read.

Writing
    :func:`write` writes the archive to a temporary file beside the target,
    named ``.<target name>.downhill-<8 hex digits>.tmp``, flushes it to disk
    and renames it over the target: a crash, even ``SIGKILL``, leaves the
    old file or the new one, never a mixture. The writer holds an exclusive
    ``flock`` on its temporary from creation to rename; a process killed
    meanwhile leaves the file behind but its lock dies with it, so the next
    :func:`write` to the same target removes exactly those temporaries of
    that target that nobody holds (a live writer's stays). Where ``flock``
    does not exist (Windows), only temporaries untouched for
    :data:`STALE_AFTER` seconds are removed. A new file gets the mode the
    umask gives; a replaced file keeps its mode.
:func:`check_path`
    Says before a run whether a path can take a checkpoint at all.
Reading
    :func:`read` checks the archive's directory and each array's ``.npy``
    header before reading any data: members must be stored uncompressed (as
    :func:`write` stores them), lie inside the file, and be named by the
    header; an array's declared shape must match its size in the directory.
    So reading never needs more memory than the file's size, and every
    defect is a :class:`CheckpointError`.
"""

import hashlib
import json
import logging
import math
import os
import re
import secrets
import stat
import time
import zipfile

import numpy as np

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

__all__ = ["write", "read", "check_path", "CheckpointError", "STALE_AFTER"]

log = logging.getLogger("downhill")

_HEADER = "__header__"
_FORMAT = 1
#: The most bytes the JSON header may take (states are numbers and strings;
#: their arrays are members of their own).
_MAX_HEADER_BYTES = 64 * 2 ** 20
#: The deepest nesting of dicts and lists a header's state may have.
_MAX_DEPTH = 64
#: Without ``flock``: seconds since a temporary's last change after which
#: :func:`write` takes it for a dead writer's and removes it.
STALE_AFTER = 3600.0


class CheckpointError(ValueError):
    """A checkpoint file cannot be read: missing, truncated, corrupt or foreign."""


# ----------------------------------------------------------------------
# paths and temporaries


def _fspath(path, error):
    """``path`` as a str, or ``error`` if it is not a file path."""
    try:
        text = os.fspath(path)
    except TypeError:
        raise error(f"invalid checkpoint: {path!r} (of type {type(path).__name__}) is not a "
                    "file path; give a str or os.PathLike, such as 'run.npz'") from None
    if isinstance(text, bytes):
        text = os.fsdecode(text)
    if "\0" in text:
        raise error(f"invalid checkpoint: {text!r} contains a NUL character")
    return text


def _problem(path):
    """What, by the file system's account, keeps ``path`` from taking a
    checkpoint; None if nothing does. Creates nothing."""
    if not path:
        return "the path is empty; give a file name such as 'run.npz'"
    if path.endswith(os.sep) or (os.altsep and path.endswith(os.altsep)):
        return "it ends with a separator, so it names a folder; give a file name"
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.exists(folder):
        return f"the folder {folder!r} does not exist; create it first"
    if not os.path.isdir(folder):
        return f"{folder!r} is not a folder"
    if os.path.isdir(path):
        return ("it is a directory; give a file name inside it, such as "
                f"{os.path.join(path, 'checkpoint.npz')!r}")
    if os.path.lexists(path) and not os.path.isfile(path):
        return "it exists and is not a regular file"
    return None


def _temp_prefix(name):
    """The start of the names of the temporaries for the target called ``name``.

    Names too long to take the suffix use a digest of ``name`` instead.
    """
    if len(os.fsencode(name)) > 200:
        name = "h" + hashlib.sha256(os.fsencode(name)).hexdigest()[:32]
    return f".{name}.downhill-"


def _same_file(fd, path):
    """Whether ``path`` still names the file open as ``fd``."""
    try:
        there = os.stat(path, follow_symlinks=False)
    except OSError:
        return False
    here = os.fstat(fd)
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


def _create_temp(folder, name):
    """Create and lock a new temporary for the target ``name`` in ``folder``.

    Returns
    -------
    fd : int
        The file, open for writing and locked (where ``flock`` exists).
    tmp : str
        Its path.
    """
    prefix = _temp_prefix(name)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = os.path.join(folder, prefix + secrets.token_hex(4) + ".tmp")
        try:
            fd = os.open(tmp, flags, 0o666)  # the umask applies
        except FileExistsError:
            continue
        if fcntl is None:
            return fd, tmp
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            # another write() took the new file for a dead one's and is removing it
            os.close(fd)
            continue
        except OSError:
            pass  # no locks on this file system: nobody else can take this one either
        if _same_file(fd, tmp):
            return fd, tmp
        os.close(fd)  # removed by another write() before we held the lock
    raise FileExistsError(f"no free temporary name for {name!r} in {folder!r}")


def _remove_stale(folder, name):
    """Remove the temporaries of the target ``name`` that no live writer holds.

    Only files named as :func:`_create_temp` names them for this target are
    considered; one is removed when its lock can be taken (its writer is
    gone), or without ``flock`` when unchanged for :data:`STALE_AFTER`
    seconds. Errors are ignored: this is tidying, not the write.
    """
    pattern = re.compile(re.escape(_temp_prefix(name)) + r"[0-9a-f]{8}\.tmp\Z")
    try:
        entries = [entry for entry in os.listdir(folder) if pattern.match(entry)]
    except OSError:
        return
    removed = []
    for entry in entries:
        tmp = os.path.join(folder, entry)
        try:
            if fcntl is None:
                if time.time() - os.stat(tmp, follow_symlinks=False).st_mtime > STALE_AFTER:
                    os.unlink(tmp)
                    removed.append(entry)
                continue
            fd = os.open(tmp, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            # the name may have moved on since it was listed (renamed into
            # place by its writer, which then let go of the lock)
            if stat.S_ISREG(os.fstat(fd).st_mode) and _same_file(fd, tmp):
                os.unlink(tmp)
                removed.append(entry)
        except OSError:
            pass  # held by a live writer, or no locks here
        finally:
            os.close(fd)
    if removed:
        log.info("removed %d stale temporary checkpoint file(s) in %s: %s",
                 len(removed), folder, ", ".join(removed))


def check_path(path):
    """Check that ``path`` can take a checkpoint, before a run needs it.

    The folder must exist and let a file be created in it (one is created
    and removed again, as :func:`write` would); ``path`` itself must not be
    a directory or anything but a regular file. Nothing is left behind.

    Parameters
    ----------
    path : str or os.PathLike
        The checkpoint file to be written (it need not exist).

    Returns
    -------
    str
        ``path`` as a str.

    Raises
    ------
    ValueError
        Naming the path and what is wrong with it: not a path (e.g. an
        int), empty, a directory, a missing folder, a folder that takes no
        new files.
    """
    path = _fspath(path, ValueError)
    problem = _problem(path)
    if problem is not None:
        raise ValueError(f"invalid checkpoint: {path!r}: {problem}")
    folder = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = _create_temp(folder, os.path.basename(path))
    except OSError as error:
        raise ValueError(
            f"invalid checkpoint: {path!r}: cannot create files in the folder {folder!r} "
            f"({error.strerror or error}); choose a writable folder") from None
    try:
        os.unlink(tmp)
    finally:
        os.close(fd)
    return path


# ----------------------------------------------------------------------
# writing


def _split(tree, arrays, path):
    """Replace the arrays in ``tree`` by references, collecting them in ``arrays``."""
    if isinstance(tree, dict):
        return {str(k): _split(v, arrays, f"{path}/{k}") for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [_split(v, arrays, f"{path}/{i}") for i, v in enumerate(tree)]
    if isinstance(tree, np.ndarray):
        arrays[path] = tree
        return {"__array__": path}
    if isinstance(tree, np.generic):
        return tree.item()
    return tree


def _write_error(path, error):
    """``error`` (an OSError) told about ``path`` rather than a temporary."""
    reason = _problem(path) or error.strerror or str(error)
    message = f"cannot write checkpoint {path!r}: {reason}"
    if error.errno is None:
        return type(error)(message)
    return type(error)(error.errno, message)


def write(path, state, version, algorithm):
    """Write a state to ``path`` atomically.

    The archive goes to a temporary file in the same folder, is flushed to
    disk, then renamed over ``path``: an interrupted write leaves the old
    file intact. Temporaries that killed writes to ``path`` left behind are
    removed first (see the module's description); a new file's mode follows
    the umask, a replaced file keeps its mode.

    Parameters
    ----------
    path : str or os.PathLike
        The file to write (conventionally ending in ``.npz``).
    state : dict
        Nested dicts and lists of numbers, strings and arrays.
    version : str
        The library version, recorded in the header.
    algorithm : str
        The optimizer's class name, recorded in the header.

    Raises
    ------
    ValueError
        If ``path`` is not a file path.
    OSError
        If the file cannot be written; the message names ``path`` and, where
        it can tell, why (a missing folder, a directory in the way).
    """
    path = _fspath(path, ValueError)
    arrays = {}
    tree = _split(state, arrays, "")
    header = {"format": _FORMAT, "downhill": version, "algorithm": algorithm, "state": tree}
    blob = json.dumps(header).encode("utf-8")
    folder = os.path.dirname(os.path.abspath(path))
    name = os.path.basename(path)
    _remove_stale(folder, name)
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        mode = None  # a new file: the temporary was created under the umask
    try:
        fd, tmp = _create_temp(folder, name)
    except OSError as error:
        raise _write_error(path, error) from error
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **{_HEADER: np.frombuffer(blob, dtype=np.uint8)}, **arrays)
            f.flush()
            os.fsync(f.fileno())
            if mode is not None:
                os.chmod(tmp, mode)
            if fcntl is not None:
                os.replace(tmp, path)  # still holding the lock: nobody takes it for stale
        if fcntl is None:
            os.replace(tmp, path)  # Windows renames closed files only
    except BaseException as error:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(error, OSError):
            raise _write_error(path, error) from error
        raise
    try:
        dirfd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dirfd)
    except OSError:
        pass
    finally:
        os.close(dirfd)


# ----------------------------------------------------------------------
# reading


def _directory(archive, path, size):
    """The archive's members by name, checked from its directory alone."""
    members = {}
    total = 0
    for info in archive.infolist():
        name = info.filename
        if name in members:
            raise CheckpointError(f"{path} is corrupt: member {name!r} appears twice")
        if info.flag_bits & 0x1:
            raise CheckpointError(f"{path} is not a downhill checkpoint: member {name!r} "
                                  "is encrypted")
        if info.compress_type != zipfile.ZIP_STORED:
            raise CheckpointError(
                f"{path} is not a downhill checkpoint: member {name!r} is compressed "
                "(downhill stores its members uncompressed)")
        if info.file_size != info.compress_size or \
                info.header_offset + info.compress_size > size:
            raise CheckpointError(f"cannot read checkpoint {path}: the file is truncated or "
                                  f"corrupt (member {name!r} does not fit in the file)")
        total += info.file_size
        members[name] = info
    if total > size:
        raise CheckpointError(f"cannot read checkpoint {path}: the file is truncated or "
                              "corrupt (its members overlap)")
    return members


def _array_header(archive, info, path):
    """The shape and dtype a member declares, checked against its size."""
    with archive.open(info) as fp:
        version = np.lib.format.read_magic(fp)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fp)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fp)
        else:
            raise CheckpointError(f"{path}: member {info.filename!r} has .npy format "
                                  f"{version}, which downhill does not write")
        start = fp.tell()
    if dtype.hasobject:
        raise CheckpointError(f"{path} is not a downhill checkpoint: member "
                              f"{info.filename!r} holds Python objects (pickles are not read)")
    nbytes = math.prod(shape) * dtype.itemsize
    if start + nbytes != info.file_size:
        raise CheckpointError(
            f"cannot read checkpoint {path}: the file is truncated or corrupt (member "
            f"{info.filename!r} declares shape {shape} of {dtype}, {nbytes} bytes, but "
            f"holds {info.file_size - start})")
    return shape, dtype


def _references(tree, path, found, depth=0):
    """Collect the array references in ``tree``, checking its form."""
    if depth > _MAX_DEPTH:
        raise CheckpointError(f"{path} is not a downhill checkpoint: its state is nested "
                              f"more than {_MAX_DEPTH} levels deep")
    if isinstance(tree, dict):
        if set(tree) == {"__array__"}:
            ref = tree["__array__"]
            if not isinstance(ref, str):
                raise CheckpointError(f"{path} is corrupt: an array reference is {ref!r}, "
                                      "not a name")
            found.add(ref)
            return
        for value in tree.values():
            _references(value, path, found, depth + 1)
    elif isinstance(tree, list):
        for value in tree:
            _references(value, path, found, depth + 1)


def _join(tree, arrays):
    """Put the arrays back where ``_split`` took them from."""
    if isinstance(tree, dict):
        if set(tree) == {"__array__"}:
            return arrays[tree["__array__"]]
        return {k: _join(v, arrays) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_join(v, arrays) for v in tree]
    return tree


def _read_archive(archive, path, size):
    """The header and the arrays of an open archive (see :func:`read`)."""
    members = _directory(archive, path, size)
    info = members.get(_HEADER + ".npy")
    if info is None:
        raise CheckpointError(f"{path} is not a downhill checkpoint (no header entry)")
    if info.file_size > _MAX_HEADER_BYTES:
        raise CheckpointError(f"{path} is not a downhill checkpoint: its header takes "
                              f"{info.file_size} bytes (at most {_MAX_HEADER_BYTES})")
    shape, dtype = _array_header(archive, info, path)
    if dtype != np.uint8 or len(shape) != 1:
        raise CheckpointError(f"{path} is not a downhill checkpoint: its header is "
                              f"{dtype} of shape {shape}, not bytes")
    with archive.open(info) as fp:
        raw = np.lib.format.read_array(fp, allow_pickle=False)
    try:
        header = json.loads(raw.tobytes().decode("utf-8"))
    except RecursionError:
        raise CheckpointError(f"{path} is not a downhill checkpoint: its header is nested "
                              "too deeply") from None
    if not isinstance(header, dict) or header.get("format") != _FORMAT or "state" not in header:
        raise CheckpointError(f"{path} has an unknown checkpoint format")
    if not isinstance(header["state"], dict):
        raise CheckpointError(f"{path} is not a downhill checkpoint: its state is a "
                              f"{type(header['state']).__name__}, not a dict")
    refs = set()
    _references(header["state"], path, refs)
    names = {ref + ".npy": ref for ref in refs}
    unknown = sorted(set(members) - set(names) - {_HEADER + ".npy"})
    if unknown:
        raise CheckpointError(f"{path} is not a downhill checkpoint: its header does not "
                              f"name the member(s) {', '.join(map(repr, unknown[:5]))}")
    missing = sorted(ref for name, ref in names.items() if name not in members)
    if missing:
        raise CheckpointError(f"{path} is incomplete: array {missing[0]!r} is missing")
    for name in names:
        _array_header(archive, members[name], path)
    arrays = {}
    for name, ref in names.items():
        with archive.open(members[name]) as fp:
            arrays[ref] = np.lib.format.read_array(fp, allow_pickle=False)
    return header, arrays


#: What a file that is not a regular file is, by its ``stat`` mode.
_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
          (stat.S_ISSOCK, "a socket"))


def _not_regular(path, mode):
    """The error for a path that is not a regular file (``mode`` from stat)."""
    kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
    target = os.path.realpath(path)
    where = f" ({target})" if target != os.path.abspath(path) else ""
    return CheckpointError(
        f"cannot read checkpoint {path}: it is {kind}{where}, not a regular file; "
        "a checkpoint is a .npz file written by Optimizer.save or iterate(checkpoint=...)")


def _open_regular(path):
    """Open ``path`` for reading, refusing at once anything but a regular file.

    A device, FIFO or socket could be read without end (``/dev/zero``) or
    block forever (a FIFO without a writer): the file is opened without
    blocking and its kind checked on the open descriptor, before anything is
    read.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path} does not exist") from None
    except OSError as error:
        try:
            mode = os.stat(path).st_mode
        except OSError:
            mode = None
        if mode is not None and not stat.S_ISREG(mode):
            raise _not_regular(path, mode) from None
        raise CheckpointError(f"cannot read checkpoint {path}: "
                              f"{_problem(path) or error.strerror or error}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise _not_regular(path, mode)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read(path):
    """Read a state written by :func:`write`.

    The archive's directory and the arrays' ``.npy`` headers are checked
    before any array is read (see the module's description), so a corrupt
    or hostile file costs no more memory than its size.

    Parameters
    ----------
    path : str or os.PathLike
        The checkpoint file.

    Returns
    -------
    header : dict
        ``format``, ``downhill`` (version) and ``algorithm``.
    state : dict
        The state, arrays included.

    Raises
    ------
    CheckpointError
        If the file is missing, unreadable, truncated, corrupt or not a
        downhill checkpoint; also if ``path`` is not a file path.
    """
    path = _fspath(path, CheckpointError)
    file = _open_regular(path)
    with file:
        try:
            size = os.fstat(file.fileno()).st_size
            if file.read(6) == b"\x93NUMPY":
                raise CheckpointError(f"{path} is not a downhill checkpoint: it holds a "
                                      "single .npy array, not an .npz archive")
            file.seek(0)
            with zipfile.ZipFile(file) as archive:
                header, arrays = _read_archive(archive, path, size)
        except CheckpointError:
            raise
        except (OSError, ValueError, EOFError, KeyError, OverflowError, NotImplementedError,
                zipfile.BadZipFile, UnicodeDecodeError) as error:
            raise CheckpointError(
                f"cannot read checkpoint {path}: the file is truncated or corrupt "
                f"({type(error).__name__}: {error})") from None
    state = _join(header.pop("state"), arrays)
    return header, state
