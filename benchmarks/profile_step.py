"""Where the default training step spends its time, by operator group, against the CPU's peak.

    python benchmarks/profile_step.py --models unet_huang2020,unet_plusplus_huang2020,unet_3plus_huang2020

One step of ``unetfamily train`` with no options (the ``defaults`` row of benchmarks/speed.py)
is profiled with ``torch.profiler`` after two warm-up steps. Self CPU time is summed into groups:
convolution forward, convolution backward, copies and layout reorders, normalisation and
activation (forward and backward, recomputation included), concatenation and resizing, the
optimizer, and the rest. The convolutions' FLOPs (``FlopCounterMode``) over their time give
the rate they run at, to set against the best probe kernel (``unetfamily.bench.peak_gflops``)
measured in the same process. With 2 threads, self times add up to about the step's wall time.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))

GROUPS = {
    "conv forward": ("aten::mkldnn_convolution", "aten::_convolution", "aten::convolution",
                     "aten::_slow_conv2d_forward", "aten::conv2d"),
    "conv backward": ("aten::convolution_backward",),
    "copies, reorders": ("aten::copy_", "aten::clone", "aten::contiguous", "aten::to", "aten::_to_copy"),
    "norm, activation": ("aten::native_batch_norm", "aten::native_batch_norm_backward", "aten::relu_",
                         "aten::threshold_backward", "aten::clamp_min_", "aten::_batch_norm_with_update",
                         "aten::batch_norm_backward", "aten::_native_batch_norm_legit"),
    "cat, resize, pool": ("aten::cat", "aten::upsample_bilinear2d", "aten::upsample_bilinear2d_backward",
                          "aten::max_pool2d_with_indices", "aten::max_pool2d_with_indices_backward"),
    "optimizer, clipping, checks": ("aten::_fused_adamw_", "aten::_foreach_norm", "aten::_foreach_mul_",
                                    "Optimizer.zero_grad#AdamW.zero_grad", "aten::linalg_vector_norm"),
}


def profile_defaults(model: str, shape: list[int], by_shape: int = 0) -> None:
    """Print the grouped profile of one default training step of ``model`` at ``shape`` (N, C, H, W);
    ``by_shape``: also the operators with the most self time, by input shapes (that many rows)."""
    from speed import build, defaults_run

    from unetfamily.bench import count_train_flops, peak_gflops

    with tempfile.TemporaryDirectory() as tmp:
        _, step, _ = defaults_run(model, shape, str(Path(tmp) / "run"), [])
        step()
        step()
        with profile(activities=[ProfilerActivity.CPU], record_shapes=by_shape > 0) as prof:
            step()
    events = prof.key_averages()
    if by_shape:
        print(prof.key_averages(group_by_input_shape=True).table(sort_by="self_cpu_time_total", row_limit=by_shape,
                                                                 max_name_column_width=30, max_shapes_column_width=90))
    total = sum(e.self_cpu_time_total for e in events) / 1e6
    grouped = {name: 0.0 for name in GROUPS}
    for event in events:
        group = next((g for g, names in GROUPS.items() if event.key in names), None)
        if group is not None:
            grouped[group] += event.self_cpu_time_total / 1e6
    grouped["other"] = total - sum(grouped.values())
    conv_s = grouped["conv forward"] + grouped["conv backward"]
    flops = count_train_flops(build(model, "plain"), tuple(shape))
    peak = max(peak_gflops("cpu").values())
    print(f"{model} {shape}: step {total:.2f} s (profiled self time), convolutions {flops / 1e9:.0f} GFLOP "
          f"at {flops / conv_s / 1e9:.0f} GFLOP/s = {100 * flops / conv_s / 1e9 / peak:.0f}% of the probe peak "
          f"{peak:.0f}; whole step {100 * flops / total / 1e9 / peak:.0f}%")
    for name, seconds in grouped.items():
        print(f"  {name:<30}{seconds:8.2f} s {100 * seconds / total:5.1f}%")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="unet_huang2020,unet_plusplus_huang2020,unet_3plus_huang2020")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--by-shape", type=int, default=0, metavar="N",
                   help="also print the N operators with the most self time, grouped by input shapes")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    for model in args.models.split(","):
        profile_defaults(model, [args.batch, 3, args.size, args.size], args.by_shape)
    return 0


if __name__ == "__main__":
    sys.exit(main())
