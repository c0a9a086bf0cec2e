"""Run the ``unetfamily`` command line with one fault injected from outside the library.

A test helper, not a test: ``python faulty_cli.py train --config c.yaml`` (or under ``torchrun``)
patches the library in this process only, as the environment says, then runs
:func:`unetfamily.cli.main`. The library itself carries no fault hooks.

``FAULT=KIND:N`` picks the fault, N counting from 1 over the whole process:

- ``between:N``: block at the start of training step N (nothing of that step computed yet);
- ``step:N``: block inside training step N, after the forward pass and the loss, before the
  backward pass and the optimiser step;
- ``save:N``: block inside the N-th write of ``last.safetensors``, half of the new file written;
- ``update:N``: block after the optimiser update of training step N, before the step ends;
- ``eval:N``: block inside the N-th validation;
- ``nan:N``: make the loss of training step N NaN (runs on).

Blocking touches the file ``FAULT_MARKER`` and waits until ``FAULT_RELEASE`` exists (if set) or
forever, so a test can kill or signal the process at exactly that point. ``FAULT_RANK`` limits
the fault to one ``torchrun`` rank.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import torch

KIND, _, COUNT = os.environ.get("FAULT", "none:0").partition(":")
AT = int(COUNT or 0)
ACTIVE = os.environ.get("FAULT_RANK") in (None, os.environ.get("RANK", "0"))
calls = {"between": 0, "step": 0, "update": 0, "save": 0, "eval": 0, "nan": 0}


def _hit(kind: str) -> bool:
    calls[kind] += 1
    return ACTIVE and KIND == kind and calls[kind] == AT


def _block() -> None:
    Path(os.environ["FAULT_MARKER"]).touch()
    release = os.environ.get("FAULT_RELEASE")
    deadline = time.monotonic() + 120  # a forgotten process ends by itself
    while time.monotonic() < deadline:
        if release and Path(release).exists():
            return
        time.sleep(0.01)
    sys.exit("faulty_cli: nobody released or killed this process")


def _install() -> None:
    import unetfamily.engine.checkpoint as checkpoint
    import unetfamily.engine.loop as loop
    import unetfamily.engine.train as train
    from unetfamily import files
    from unetfamily.losses import SegmentationCriterion

    real_lr_at, real_forward, real_write = loop.lr_at, SegmentationCriterion.forward, checkpoint.atomic_write_bytes
    real_evaluate, real_update = train.evaluate, torch.optim.AdamW.step

    def lr_at(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202 - the first call of every training step
        if _hit("between"):
            _block()
        return real_lr_at(*args, **kwargs)

    def forward(self, output, target):  # noqa: ANN001, ANN202
        total, terms = real_forward(self, output, target)
        if torch.is_grad_enabled():  # a training step, not validation
            if _hit("step"):
                _block()
            if _hit("nan"):
                total = total * float("nan")
                terms = {**terms, "total": total.detach()}
        return total, terms

    def update(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        result = real_update(self, *args, **kwargs)
        if _hit("update"):
            _block()
        return result

    def evaluate(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        if _hit("eval"):
            _block()
        return real_evaluate(*args, **kwargs)

    def atomic_write_bytes(path, data):  # noqa: ANN001, ANN202
        if Path(path).name == "last.safetensors" and _hit("save"):
            def write_half(f):  # noqa: ANN001, ANN202 - the real temporary file, half written, then stuck
                f.write(data[: len(data) // 2])
                f.flush()
                _block()

            return files.atomic_write(path, write_half)
        return real_write(path, data)

    loop.lr_at, train.evaluate, checkpoint.atomic_write_bytes = lr_at, evaluate, atomic_write_bytes
    SegmentationCriterion.forward, torch.optim.AdamW.step = forward, update


if __name__ == "__main__":
    _install()
    from unetfamily.cli import main

    sys.exit(main(sys.argv[1:]))
