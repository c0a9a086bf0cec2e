"""Helpers for the fault-injection tests: a tiny training config, and runs of ``faulty_cli.py``."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

FAULTY_CLI = Path(__file__).with_name("faulty_cli.py")
# One thread everywhere: the subprocesses and the test process then compute bit-identical steps.
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def tiny_config(out: Path, **train: object) -> dict:
    """U-Net of widths 4, 8 on 32 px synthetic data: 4 steps per epoch, 3 epochs, light augmentation."""
    return {
        "model": {"name": "unet", "kwargs": {"channels": [4, 8]}},
        "data": {"type": "synthetic", "num_samples": {"train": 16, "val": 8}, "size": 32, "augment": "light"},
        "loader": {"batch_size": 4},
        "optim": {"lr": 0.01},
        "schedule": {"name": "cosine", "warmup_steps": 2},
        "train": {"epochs": 3, "checkpoint_every": 2, "progress": False, "tensorboard": False, **train},
        "output_dir": str(out),
    }


def write_config(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path


def start_faulty(args: list[str], fault: str, marker: Path, release: Path | None = None,
                 launcher: list[str] | None = None, **env: str) -> subprocess.Popen:
    """Start ``unetfamily ARGS`` under faulty_cli.py with ``FAULT=fault`` (see that file)."""
    extra = {"FAULT": fault, "FAULT_MARKER": str(marker), **env}
    if release is not None:
        extra["FAULT_RELEASE"] = str(release)
    cmd = [*(launcher or [sys.executable]), str(FAULTY_CLI), *args]
    return start(cmd, **extra)


def start(cmd: list[str], **env: str) -> subprocess.Popen:
    """Start ``cmd`` in its own process group (so :func:`finish` can end all of it), output piped."""
    return subprocess.Popen(cmd, env={**ENV, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def finish(proc: subprocess.Popen, timeout: float) -> tuple[str, str]:
    """(stdout, stderr) of ``proc``; if it runs past ``timeout`` s, kill its process group and fail: a hang."""
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(f"still running after {timeout} s, killed (a hang):\n{err[-3000:]}") from None


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    """Wait until ``path`` exists; fail with the process's output if it ends or time runs out first."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            out, err = proc.communicate()
            raise AssertionError(f"{path.name} never appeared (exit {proc.returncode}):\n{out[-2000:]}\n{err[-3000:]}")
        time.sleep(0.02)


def assert_same_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6, msg=key)


@pytest.fixture
def small_disk(tmp_path: Path):
    """A factory for real, tiny tmpfs file systems: ``small_disk(kib)`` mounts one and returns its folder.

    A write past its size fails inside the kernel with ENOSPC, the way a full disk does, whichever
    library does the writing (safetensors, Pillow, onnx, ...). Mounting needs root (CI's containers
    run as root); elsewhere the test is skipped with that reason. Everything mounted is unmounted.
    """
    mounted: list[Path] = []

    def mount(kib: int) -> Path:
        if os.geteuid() != 0:
            pytest.skip("a real full disk needs a tmpfs mount, which needs root")
        target = tmp_path / f"disk{len(mounted)}"
        target.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={kib}k", "tmpfs", str(target)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
        mounted.append(target)
        return target

    yield mount
    for target in reversed(mounted):
        subprocess.run(["umount", "-l", str(target)], capture_output=True)
