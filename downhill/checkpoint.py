"""Checkpoint files: a training state written to one ``.npz`` file, atomically.

A state is a nested dict (see :meth:`downhill.Optimizer.state_dict`). Its
arrays become entries of the ``.npz`` archive; everything else (numbers,
strings, the random generators' states) goes into a JSON header stored in
the same archive, with the library version and the algorithm's name. No
pickles are written or read.
"""

import json
import os
import tempfile
import zipfile

import numpy as np

__all__ = ["write", "read", "CheckpointError"]

_HEADER = "__header__"
_FORMAT = 1


class CheckpointError(ValueError):
    """A checkpoint file cannot be read: missing, truncated, corrupt or foreign."""


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


def _join(tree, archive):
    """Put the arrays of ``archive`` back where ``_split`` took them from."""
    if isinstance(tree, dict):
        if set(tree) == {"__array__"}:
            return archive[tree["__array__"]]
        return {k: _join(v, archive) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_join(v, archive) for v in tree]
    return tree


def write(path, state, version, algorithm):
    """Write a state to ``path`` atomically.

    The archive goes to a temporary file in the same folder, is flushed to
    disk, then renamed over ``path``: an interrupted write leaves the old
    file intact.

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
    """
    path = os.fspath(path)
    arrays = {}
    tree = _split(state, arrays, "")
    header = {"format": _FORMAT, "downhill": version, "algorithm": algorithm, "state": tree}
    blob = json.dumps(header).encode("utf-8")
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".checkpoint-", suffix=".npz.tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **{_HEADER: np.frombuffer(blob, dtype=np.uint8)}, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
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


def read(path):
    """Read a state written by :func:`write`.

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
        If the file is missing, truncated, corrupt or not a downhill checkpoint.
    """
    path = os.fspath(path)
    try:
        with np.load(path, allow_pickle=False) as archive:
            if _HEADER not in archive.files:
                raise CheckpointError(
                    f"{path} is not a downhill checkpoint (no header entry)")
            header = json.loads(archive[_HEADER].tobytes().decode("utf-8"))
            arrays = {name: archive[name] for name in archive.files if name != _HEADER}
    except CheckpointError:
        raise
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path} does not exist") from None
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile,
            UnicodeDecodeError) as error:
        raise CheckpointError(
            f"cannot read checkpoint {path}: the file is truncated or corrupt "
            f"({type(error).__name__}: {error})") from None
    if not isinstance(header, dict) or header.get("format") != _FORMAT or "state" not in header:
        raise CheckpointError(f"{path} has an unknown checkpoint format")
    try:
        state = _join(header.pop("state"), arrays)
    except KeyError as error:
        raise CheckpointError(f"{path} is incomplete: array {error} is missing") from None
    return header, state
