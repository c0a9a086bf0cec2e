"""Writing files so that nothing is ever half-written, and JSON that is always strict.

Every file the project writes (checkpoints, reports, predictions, exports, run results) goes
through :func:`atomic_write_bytes` or :func:`atomic_write`: the data is written to a hidden
temporary file beside the target, flushed and fsynced, renamed over the target, and the folder
is fsynced, so a crash or a full disk leaves either the old file or the new one, never a part.
JSON is written by :func:`dump_json`, which turns NaN and infinities into ``null`` (Python's
``json`` would write the non-standard ``NaN`` that browsers and ``jq`` reject).
"""
from __future__ import annotations

import contextlib
import errno
import json
import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from unetfamily.errors import UnetFamilyError, special_kind

__all__ = ["WriteError", "atomic_write", "atomic_write_bytes", "to_jsonable", "dump_json", "fsync_dir", "write_json"]

_WHAT_TO_DO = {
    errno.ENOSPC: "free disk space or choose a folder on another disk",
    errno.EDQUOT: "free disk space (your quota is used up) or choose a folder on another disk",
    errno.EROFS: "the file system is read-only; choose a writable folder",
    errno.EACCES: "you may not write there; choose a writable folder",
    errno.EPERM: "you may not write there; choose a writable folder",
    errno.EEXIST: "choose another file name",
}


class WriteError(UnetFamilyError, OSError):
    """A file could not be written; the message names the target (never the temporary file) and what to do.

    It is an :class:`OSError` too (``errno`` is kept), so code that catches ``OSError`` still does.
    """

    def __init__(self, path: Path, cause: OSError) -> None:
        reason = cause.strerror or str(cause) or type(cause).__name__
        todo = _WHAT_TO_DO.get(cause.errno or 0, "check the folder and try again")
        super().__init__(cause.errno, f"could not write {path}: {reason}; nothing was written there ({todo})")
        self.path = path

    def __str__(self) -> str:
        return str(self.strerror)


def fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable, where the platform can open a folder (errors are ignored)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. a folder that cannot be opened for reading on this platform
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | Path, write: Callable[[BinaryIO], None], *, shown_as: str | Path | None = None,
                 durable: bool = True) -> Path:
    """Create or replace ``path`` with what ``write(file)`` writes; parent folders are created.

    The target appears only once the data is complete and (``durable``, the default) on disk; without
    ``durable`` nothing is fsynced: readers still never see a partial file, but a power cut may lose it
    (for files rewritten every few seconds, such as a run's status, on filesystems where fsync is slow). An :class:`OSError` on the
    way (a full disk, a read-only folder) becomes a :class:`WriteError` naming ``path``, or
    ``shown_as`` where ``path`` is a staging place the user never sees (the file's destination);
    a symlink is written through (the file it names is replaced), and a folder, device, pipe or socket at
    ``path`` is refused the same way;
    other errors from ``write`` propagate as they are. Either way the temporary file is removed and
    the target is untouched.
    """
    path = Path(path)
    if path.is_symlink():  # the file the link names is replaced; the link stays
        path = Path(os.path.realpath(path))
    kind = special_kind(path)
    if kind is not None:  # a rename would put a plain file in place of a folder, a device or a pipe
        raise WriteError(Path(shown_as) if shown_as is not None else path,
                         OSError(errno.EEXIST, f"it is {kind}, which is never replaced by a file"))
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.replace(tmp, path)
        if durable:
            fsync_dir(path.parent)
    except WriteError:
        raise
    except OSError as exc:
        raise WriteError(Path(shown_as) if shown_as is not None else path, exc) from exc
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
    return path


def atomic_write_bytes(path: str | Path, data: bytes, *, shown_as: str | Path | None = None,
                       durable: bool = True) -> Path:
    """Create or replace ``path`` with ``data`` atomically (see :func:`atomic_write`)."""
    return atomic_write(path, lambda f: f.write(data), shown_as=shown_as, durable=durable)


def to_jsonable(obj: Any) -> Any:
    """``obj`` as plain JSON types: NaN/inf -> None, numpy scalars/arrays, tuples, sets and paths converted."""
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset, np.ndarray)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def dump_json(obj: Any, indent: int | None = 1) -> str:
    """Strict JSON text of ``obj`` (no NaN/Infinity tokens; see :func:`to_jsonable`)."""
    return json.dumps(to_jsonable(obj), indent=indent, allow_nan=False)


def write_json(path: str | Path, obj: Any, indent: int | None = 1) -> Path:
    """Write ``obj`` as strict JSON to ``path`` atomically."""
    return atomic_write_bytes(path, dump_json(obj, indent).encode())
