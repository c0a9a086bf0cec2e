"""Faults in a 2-process DDP run (torchrun, gloo on CPU), each bounded by a timeout so a hang fails.

- One worker raises (rank 1 reads a corrupt image in its second step): the whole job exits
  non-zero within seconds, with that worker's error on stderr; the other worker does not wait in
  its all-reduce forever (gloo sees the closed connection, torchrun stops the rest).
- The loss is NaN on one rank only, with ``nan_policy: skip``: every rank skips that step
  together (a rank skipping alone would leave the others blocked in DDP's gradient all-reduce),
  and the run finishes.
- SIGTERM reaches the ranks at different points of a step: every rank stops after the same
  step, and rank 0 saves it.
"""
from __future__ import annotations

import signal
import socket
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from tests.reliability.conftest import finish, start, start_faulty, tiny_config, wait_for, write_config
from unetfamily.data import build_dataset
from unetfamily.data.loader import SeededSampler
from unetfamily.engine.checkpoint import load_checkpoint

TIMEOUT_S = 120


def _torchrun() -> list[str]:
    with socket.socket() as s:  # a free port for the rendezvous
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return [str(Path(sys.executable).with_name("torchrun")), "--nproc_per_node=2", f"--master_port={port}"]


def _folder_data(root: Path) -> dict:
    rng = np.random.default_rng(0)
    for split, n in (("train", 16), ("val", 4)):
        for sub in ("images", "masks"):
            (root / split / sub).mkdir(parents=True)
        for i in range(n):
            image = rng.integers(0, 256, (32, 32), dtype=np.uint8)
            Image.fromarray(image).save(root / split / "images" / f"s{i}.png")
            Image.fromarray(((image > 127) * 255).astype(np.uint8)).save(root / split / "masks" / f"s{i}.png")
    return {"type": "folder", "root": str(root), "images": "{split}/images", "masks": "{split}/masks",
            "mask_encoding": {"kind": "binary", "threshold": 127}, "in_channels": 1}


def test_one_worker_raising_ends_the_job_with_its_error(tmp_path: Path) -> None:
    config = tiny_config(tmp_path / "run", epochs=1, checkpoint_every=0)
    config["data"] = _folder_data(tmp_path / "data")
    dataset = build_dataset(config["data"], "train")
    shards = [[i for i, _ in SeededSampler(len(dataset), True, seed=0, rank=r, world_size=2)] for r in (0, 1)]
    victim = shards[1][4]  # rank 1's second batch of 4; rank 0 never reads it
    assert victim not in shards[0]
    bad = dataset.samples[victim].image
    # Every file is checked before the first step, so the image breaks once training has begun: rank 1 is
    # held at the start of its first step (its first batch read), the file is damaged, then rank 1 goes on.
    path = write_config(tmp_path / "c.yaml", config)
    marker, release = tmp_path / "reached", tmp_path / "release"
    proc = start_faulty(["train", "--config", str(path)], "between:1", marker, release, launcher=_torchrun(),
                        FAULT_RANK="1")
    wait_for(marker, proc)
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)  # a PNG signature, then garbage
    release.touch()
    _, err = finish(proc, TIMEOUT_S)
    assert proc.returncode == 1
    assert f"error: {bad}: cannot read image" in err
    assert "ChildFailedError" in err  # torchrun's summary of the failed workers


def test_nan_on_one_rank_is_skipped_by_every_rank(tmp_path: Path) -> None:
    run = tmp_path / "run"
    path = write_config(tmp_path / "c.yaml", tiny_config(run, epochs=1, nan_policy="skip", checkpoint_every=0))
    proc = start_faulty(["train", "--config", str(path)], "nan:2", tmp_path / "unused", launcher=_torchrun(),
                        FAULT_RANK="1")
    _, err = finish(proc, TIMEOUT_S)
    assert proc.returncode == 0, err[-3000:]
    assert "step 1: non-finite loss (non-finite terms: total;" in err  # rank 1 reports its NaN
    assert "step 1: non-finite loss (non-finite on another rank;" in err  # rank 0 skips with it
    saved = load_checkpoint(run / "checkpoints" / "last.safetensors")
    assert saved.step == 2 and saved.extra["skipped_steps"] == 1  # 16 samples / (2 ranks x 4) = 2 steps
    assert all(torch.isfinite(v.float()).all() for v in saved.model_state.values())


def test_sigterm_stops_every_rank_after_the_same_step(tmp_path: Path) -> None:
    # Rank 1 is held after its third update, before it decides whether to stop; rank 0 goes on
    # into step 4 and waits there for rank 1's gradients. Then torchrun is told to stop (it
    # passes SIGTERM on to both workers). A rank that stopped on its own signal alone would leave
    # the other in the all-reduce and the run without its final checkpoint.
    run, marker, release = tmp_path / "run", tmp_path / "reached", tmp_path / "release"
    path = write_config(tmp_path / "c.yaml", tiny_config(run, epochs=3, checkpoint_every=0))  # 2 steps per epoch
    proc = start_faulty(["train", "--config", str(path)], "update:3", marker, release, launcher=_torchrun(),
                        FAULT_RANK="1")
    wait_for(marker, proc)
    time.sleep(1.0)  # rank 0 reaches step 4
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)  # torchrun passes it on
    release.touch()
    _, err = finish(proc, TIMEOUT_S)
    assert err.count("stopped by signal at step 4; checkpoint saved, continue with --resume") == 2, err[-6000:]
    assert "Connection closed by peer" not in err
    assert load_checkpoint(run / "checkpoints" / "last.safetensors").step == 4
