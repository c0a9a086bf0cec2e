"""What every fuzz target shares: the time limit, the outcome rule, a private work folder, and
the generic inputs (valid seeds mutated by a few edits; JSON-like trees)."""
from __future__ import annotations

import atexit
import contextlib
import shutil
import signal
import struct
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from unetfamily.errors import UnetFamilyError

TIMEOUT_S = 10.0  # one case; the slowest legitimate case here takes well under a second


class Hang(AssertionError):
    """One fuzz case ran longer than TIMEOUT_S."""


@contextlib.contextmanager
def time_limit(seconds: float = TIMEOUT_S) -> Iterator[None]:
    """Raise :class:`Hang` in the main thread after ``seconds`` (no limit in other threads)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(*_: Any) -> None:
        raise Hang(f"a fuzz case ran longer than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def outcome(fn: Callable[[], Any]) -> str:
    """Run ``fn``: ``"ok"``, or the documented error's class name; anything else propagates."""
    with time_limit():
        try:
            fn()
        except UnetFamilyError as exc:
            return type(exc).__name__
    return "ok"


_work: list[Path] = []


def workdir() -> Path:
    """A private temporary folder for this process, removed at exit."""
    if not _work:
        _work.append(Path(tempfile.mkdtemp(prefix="unetfamily-fuzz-")))
        atexit.register(shutil.rmtree, _work[0], True)
    return _work[0]


def write_case(name: str, data: bytes) -> Path:
    """``data`` written to ``name`` in the work folder (one case's input file)."""
    path = workdir() / name
    path.write_bytes(data)
    return path


BIG_INTS = [0, 1, 255, 256, 0x7FFF, 0xFFFF, 0x10000, 0x7FFFFFFF, 0xFFFFFFFF]


@st.composite
def corrupted(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    """One of ``seeds`` with 1-6 mutations."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 6))):
        i = draw(st.integers(0, max(0, len(data) - 1)))
        op = draw(st.sampled_from(["flip", "byte", "int", "truncate", "insert", "delete"]))
        if op == "flip" and data:
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "byte" and data:
            data[i] = draw(st.integers(0, 255))
        elif op == "int":
            fmt = draw(st.sampled_from(["<H", ">H", "<I", ">I"]))
            value = draw(st.sampled_from(BIG_INTS)) & (0xFFFF if fmt.endswith("H") else 0xFFFFFFFF)
            data[i : i + struct.calcsize(fmt)] = struct.pack(fmt, value)
        elif op == "truncate":
            del data[i:]
        elif op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del data[i : i + draw(st.integers(1, 16))]
    return bytes(data)


#: Any JSON value, nested a few levels deep.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
