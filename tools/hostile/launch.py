"""Two ways to run ``unetfamily ARGV`` in a folder, with a time limit: fresh processes or forks.

:class:`FreshLauncher` starts ``python -m unetfamily ARGV`` for every run, exactly what a user
types. Each start pays for importing torch and the package (4 s here, more under load).

:class:`ForkLauncher` keeps ``jobs`` servers (``forkserver.py``) that have imported them once;
each run is ``os.fork()`` of a server, whose child changes into the folder, takes the run's
environment, points its standard streams at files and calls :func:`unetfamily.cli.main` the way
``python -m unetfamily`` does (an uncaught exception prints its traceback and exits 1), then
ends as the interpreter would: it joins the threads left running, runs the atexit handlers and
flushes its streams, skipping only the teardown of the imported modules. Only import-time state
is shared with the server, which computes nothing.

Both run the command in its own session and kill the whole process group when it runs past
its limit (a hang) and after it ends (stray workers).
"""
from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from .model import Result

__all__ = ["FreshLauncher", "ForkLauncher", "make_launcher"]

SERVER = Path(__file__).with_name("forkserver.py")


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _killpg(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


class FreshLauncher:
    """``python -m unetfamily ARGV`` in a new process for every run."""

    name = "fresh"

    def run(self, argv: Sequence[str], cwd: Path, env: Mapping[str, str], timeout: float, out: Path,
            err: Path) -> Result:
        start = time.monotonic()
        with open(out, "wb") as fout, open(err, "wb") as ferr:
            proc = subprocess.Popen([sys.executable, "-m", "unetfamily", *argv], cwd=cwd, env=dict(env),
                                    stdin=subprocess.DEVNULL, stdout=fout, stderr=ferr, start_new_session=True)
            hang = False
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                hang = True
                _killpg(proc.pid)
                proc.wait()
            _killpg(proc.pid)
        return Result(proc.returncode, _read(out), _read(err), time.monotonic() - start, hang)

    def close(self) -> None:
        pass


class _Server:
    def __init__(self, env: Mapping[str, str], warm: str) -> None:
        self.proc = subprocess.Popen([sys.executable, str(SERVER), warm], env=dict(env), stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1)
        ready = self.proc.stdout.readline()
        if ready.strip() != "ready":
            raise RuntimeError(f"the fork server did not start (said {ready!r})")

    def call(self, request: dict) -> dict:
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the fork server ended")
        return json.loads(line)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class ForkLauncher:
    """Runs forked from ``jobs`` warm servers (see the module docstring); ``warm``: what they import first.

    ``"all"`` (every command's modules) or ``"core"`` (train, eval, predict, dataset: starts faster
    when few runs export, bench or compare).
    """

    name = "fork"

    def __init__(self, jobs: int, env: Mapping[str, str], warm: str = "all") -> None:
        self.env, self.warm = dict(env), warm
        self._idle: queue.Queue[_Server] = queue.Queue()
        self._all: list[_Server] = []
        self._lock = threading.Lock()
        threads = [threading.Thread(target=self._start) for _ in range(max(1, jobs))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if not self._all:
            raise RuntimeError("no fork server started")

    def _start(self) -> None:
        server = _Server(self.env, self.warm)
        with self._lock:
            self._all.append(server)
        self._idle.put(server)

    def run(self, argv: Sequence[str], cwd: Path, env: Mapping[str, str], timeout: float, out: Path,
            err: Path) -> Result:
        server = self._idle.get()
        request = {"argv": list(argv), "cwd": str(cwd), "env": dict(env), "timeout": timeout,
                   "out": str(out), "err": str(err)}
        try:
            reply = server.call(request)
        except (RuntimeError, OSError, ValueError):
            server.close()
            with self._lock:
                self._all.remove(server)
            self._start()
            raise
        self._idle.put(server)
        return Result(reply["rc"], _read(out), _read(err), reply["seconds"], reply["hang"])

    def close(self) -> None:
        for server in self._all:
            server.close()


def make_launcher(kind: str, jobs: int, env: Mapping[str, str]) -> FreshLauncher | ForkLauncher:
    """``"fresh"`` or ``"fork"``."""
    return ForkLauncher(jobs, env) if kind == "fork" else FreshLauncher()
