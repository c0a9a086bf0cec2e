"""What a default training step holds after its forward pass, and at its peak (CPU resident set).

    python benchmarks/stored_activations.py --models unet_plusplus_huang2020

One step of ``unetfamily train`` with no options (benchmarks/speed.py's ``defaults`` row), in a
process whose resident set follows live tensors (``MALLOC_MMAP_THRESHOLD_``, see
``unetfamily.bench``; the script re-runs itself under it). Printed in MB above the level before
the step, to which the last step's gradients are added back (the step frees them first): the
activations autograd keeps once the loss is computed, and the step's peak.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))


def measure(model: str, shape: list[int]) -> None:
    from speed import defaults_run

    from unetfamily.bench import _rss_bytes
    from unetfamily.engine import loop

    with tempfile.TemporaryDirectory() as tmp:
        net, step, _ = defaults_run(model, shape, str(Path(tmp) / "run"), [])
        step()
        step()
        grads = sum(p.numel() * p.element_size() for p in net.parameters())
        marks: list[int] = []
        apply = loop._apply_gradients

        def marked(*args: object) -> bool:
            marks.append(_rss_bytes())  # the forward pass and the loss are done, backward not begun
            return apply(*args)

        loop._apply_gradients = marked
        peak, done = [0], threading.Event()

        def sample() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], _rss_bytes())
                time.sleep(0.001)

        base = _rss_bytes() - grads
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        step()
        done.set()
        sampler.join()
        loop._apply_gradients = apply
    mb = 2**20
    print(f"{model} {shape}: kept after the forward pass {(marks[0] - base) / mb:.0f} MB, "
          f"step peak {(peak[0] - base) / mb:.0f} MB (parameters' gradients {grads / mb:.0f} MB)")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="unet_plusplus_huang2020")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    if os.environ.get("MALLOC_MMAP_THRESHOLD_") is None:
        from unetfamily.bench import memory_env

        return subprocess.run([sys.executable, __file__, *sys.argv[1:]], env=memory_env()).returncode
    torch.set_num_threads(args.threads)
    for model in args.models.split(","):
        measure(model, [args.batch, 3, args.size, args.size])
    return 0


if __name__ == "__main__":
    sys.exit(main())
