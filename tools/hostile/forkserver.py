"""A warm ``unetfamily`` command line: imports the package once, then forks one child per request.

Run by :class:`~.launch.ForkLauncher` as ``python forkserver.py [core|all]`` (a script, not a package
module, so it imports nothing of ``tools``). It reads JSON requests from stdin, one a line:
``{"argv", "cwd", "env", "timeout", "out", "err"}``; for each it forks a child that runs
``unetfamily ARGV`` as ``python -m unetfamily`` would, waits for it (killing its process group
after ``timeout`` s: a hang) and answers ``{"rc", "hang", "seconds"}`` on stdout, one a line.
"""
import atexit
import importlib
import json
import os
import signal
import sys
import threading
import time
import traceback

import torch  # noqa: F401 - the expensive import every command needs

from unetfamily.cli import main

#: Modules the commands import lazily; importing them here is what makes a fork cheap. ``core``
#: serves train, eval, predict and dataset; ``all`` adds what export, bench and compare import
#: (5 s more to start, saved on each of their runs).
WARM = {
    "core": ("unetfamily.engine.train", "unetfamily.engine.predict", "unetfamily.engine.evaluate",
             "unetfamily.data", "tifffile", "safetensors.torch"),
    "all": ("unetfamily.engine.export", "unetfamily.compare.run", "unetfamily.bench", "onnx", "scipy.stats"),
}


def _warm(level: str) -> None:
    names = WARM["core"] + (WARM["all"] if level == "all" else ())
    for name in names:
        try:
            importlib.import_module(name)
        except Exception:  # an optional extra: the command will report it itself
            pass


def _child(request: dict) -> int:
    """In the forked child: become the command. Returns the exit code for ``sys.exit``."""
    os.setsid()
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    for fd, path in ((1, request["out"]), (2, request["err"])):
        handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(handle, fd)
        os.close(handle)
    sys.argv = [os.path.join(os.path.dirname(sys.modules["unetfamily"].__file__), "__main__.py"), *request["argv"]]
    try:
        code = main(request["argv"])
    except SystemExit as exc:
        code = exc.code
    except BaseException:  # what the interpreter does with an uncaught exception
        traceback.print_exc()
        code = 1
    if code is None:
        return 0
    if not isinstance(code, int):
        print(code, file=sys.stderr)
        return 1
    return code


def _exit(code: int) -> None:
    """End the child as the interpreter ends a program, less the teardown of every module.

    Python joins the non-daemon threads, runs the atexit handlers (logging's flush among them) and
    flushes the standard streams; then it frees every module, which after a fork copies most of the
    parent's memory page by page (3 s here) and shows the user nothing. That last part is skipped.
    """
    try:
        threading._shutdown()  # waits for non-daemon threads, as the interpreter does
    except Exception:  # noqa: BLE001
        traceback.print_exc()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001
            pass
    os._exit(code)


def _wait(pid: int, timeout: float) -> tuple[int, bool, float]:
    start = time.monotonic()
    deadline = start + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.killpg(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
            return os.waitstatus_to_exitcode(status), True, time.monotonic() - start
        time.sleep(0.01)
    try:
        os.killpg(pid, signal.SIGKILL)  # stray workers of the finished command
    except (ProcessLookupError, PermissionError):
        pass
    return os.waitstatus_to_exitcode(status), False, time.monotonic() - start


def serve(level: str = "all") -> None:
    _warm(level)
    print("ready", flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            _exit(_child(request))
        rc, hang, seconds = _wait(pid, float(request["timeout"]))
        print(json.dumps({"rc": rc, "hang": hang, "seconds": seconds}), flush=True)


if __name__ == "__main__":
    serve(sys.argv[1] if len(sys.argv) > 1 else "all")
