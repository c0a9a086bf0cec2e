"""``unetfamily compare``: train family members under one protocol, evaluate, measure, report.

Protocol (the same for every variant, recorded in the report): one data config and split, the
same augmentation, optimiser, schedule, loss, batch size and budget (epochs, steps or seconds),
the same seeds (so the same data order and augmentation per seed), evaluation of the FINAL
weights on the held-out split (``test`` when the data has one, else ``val``; no model selection
on that split). Costs (parameters, MACs, latency, throughput, peak training memory) come from
:func:`unetfamily.bench.measure_isolated` at the evaluated input size on the current device.

Resumable: each run writes ``runs/<variant>/seed<k>/result.json`` atomically when it is done and
is skipped next time; a run interrupted mid-training resumes from its last checkpoint.
"""
from __future__ import annotations

import argparse
import copy
import datetime
import json
import logging
import math
import shlex
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unetfamily import __version__
from unetfamily.compare.variants import ABLATIONS, Variant, build_variants
from unetfamily.engine.checkpoint import atomic_write_bytes, load_checkpoint, load_model

log = logging.getLogger(__name__)

__all__ = ["run_compare", "add_parser"]


def _data_config(spec: str, size: int | None) -> tuple[dict[str, Any], str]:
    """A dataset config from a YAML path, a folder of images/ + masks/, or a dataset type name."""
    from unetfamily.data import load_data_config

    path = Path(spec)
    if path.is_file():
        cfg, name = dict(load_data_config(path)), path.stem
    elif path.is_dir():
        cfg, name = {"type": "folder", "root": str(path)}, path.name
    else:
        cfg, name = {"type": spec}, spec
    if size is not None:
        if cfg["type"] == "synthetic":
            cfg["size"] = size
        else:
            cfg["resize"] = [size, size]
            aug = cfg.get("augment")
            if isinstance(aug, dict) and "crop_size" in aug:  # crops larger than the resized image make no sense
                cfg["augment"] = {**aug, "crop_size": min(int(aug["crop_size"]), size)}
    return cfg, name


def _eval_split(data_cfg: dict[str, Any]) -> tuple[str, Any]:
    """The held-out split to evaluate on ("test" when the data has one, else "val") and its dataset."""
    from unetfamily.data import build_dataset

    try:
        return "test", build_dataset(data_cfg, "test")
    except Exception:  # noqa: BLE001 - the dataset simply has no test split
        return "val", build_dataset(data_cfg, "val")


def _run_config(base: dict[str, Any], variant: Variant, seed: int, run_dir: Path) -> dict[str, Any]:
    cfg = copy.deepcopy(base)
    cfg["model"] = {"name": variant.model, "kwargs": dict(variant.kwargs)}
    cfg["train"] = {**cfg["train"], "seed": seed}
    cfg["output_dir"] = str(run_dir)
    return cfg


def _levels(model: torch.nn.Module, loader: Any, info: Any, shape: tuple[int, ...]) -> dict[str, dict[str, float]]:
    """Dice/IoU, latency and MACs of a deep-supervised UNet++ pruned to each level."""
    from unetfamily.bench import count_flops, time_call
    from unetfamily.engine.evaluate import evaluate

    class Level(torch.nn.Module):
        def __init__(self, level: int) -> None:
            super().__init__()
            self.net, self.level = model, level

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net.forward_level(x, self.level)

    out = {}
    x = torch.randn(1, *shape[1:])
    for level in range(1, model.depth + 1):
        scores = evaluate(Level(level), loader, "cpu", info.num_classes, info.ignore_index)
        with torch.no_grad():
            latency = time_call(lambda: model.forward_level(x, level), torch.device("cpu"), repeats=10, stat="min")
        out[str(level)] = {"dice": scores["dice"], "iou": scores["iou"], "miou": scores["miou"],
                           "latency_ms": latency * 1e3, "macs": count_flops(model.pruned(level), (1, *shape[1:])) // 2}
    return out


def _predict_all(model: torch.nn.Module, loader: Any, num_classes: int) -> np.ndarray:
    from unetfamily.metrics import logits_to_labels

    preds = []
    with torch.no_grad():
        for batch in loader:
            preds.append(logits_to_labels(model(batch["image"]), num_classes).to(torch.uint8).numpy())
    return np.concatenate(preds)


def _save_npz(path: Path, **arrays: np.ndarray) -> None:
    import io

    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


def _one_run(base: dict[str, Any], variant: Variant, seed: int, out: Path, eval_split: str, save_pred: bool) -> dict:
    """Train (or resume, or skip) one (variant, seed) run and evaluate it; returns its result dict."""
    from unetfamily.config import config_from_dict
    from unetfamily.data import build_dataset, make_loader
    from unetfamily.engine.evaluate import evaluate
    from unetfamily.engine.train import fit

    run_dir = out / "runs" / variant.id / f"seed{seed}"
    done = run_dir / "result.json"
    if done.is_file():
        log.info("skip %s seed %d: already finished (%s)", variant.id, seed, done)
        return json.loads(done.read_text())
    cfg = config_from_dict(_run_config(base, variant, seed, run_dir))
    resume = (run_dir / "checkpoints" / "last.safetensors").is_file()
    log.info("%s %s seed %d", "resume" if resume else "train", variant.id, seed)
    summary = fit(cfg, resume=resume)
    if summary["interrupted"]:
        raise KeyboardInterrupt(f"compare interrupted during {variant.id} seed {seed}; run it again to continue")
    seconds = summary["seconds"]  # of this process only when the run was resumed
    model, ckpt = load_model(run_dir / "checkpoints" / "last.safetensors")
    dataset = build_dataset(base["data"], eval_split)
    info = dataset.info
    loader = make_loader(dataset, base["loader"]["batch_size"], shuffle=False)
    scores = evaluate(model, loader, "cpu", info.num_classes, info.ignore_index, per_image=True, hd95=info.num_classes == 2)
    keep = ("dice", "iou", "miou", "mdice", "pixel_accuracy", "precision", "recall", "hd95", "per_class_iou", "per_class_dice")
    result = {
        "variant": variant.id, "seed": seed, "train_seconds": seconds, "steps": ckpt.step,
        "history": summary["history"] or load_checkpoint(run_dir / "checkpoints" / "last.safetensors").extra.get("history", []),
        "test": {k: scores[k] for k in keep if k in scores},
        "per_image": [{k: r[k] for k in ("name", "dice", "iou") if k in r} for r in scores["per_image"]],
    }
    if variant.levels:
        result["levels"] = _levels(model, loader, info, (1, info.in_channels, *next(iter(loader))["image"].shape[-2:]))
    if save_pred:
        _save_npz(out / "artifacts" / f"pred_{variant.id}.npz", pred=_predict_all(model, loader, info.num_classes),
                  names=np.array([r["name"] for r in scores["per_image"]]))
    atomic_write_bytes(done, json.dumps(result, indent=1).encode())
    return result


def _costs(variant: Variant, in_channels: int, num_classes: int, size: tuple[int, int], batch: int, device: str) -> dict:
    from unetfamily.bench import measure_isolated

    kwargs = {**variant.kwargs, "in_channels": in_channels, "num_classes": num_classes}
    # Minimum over repeats: the figure a busy machine disturbs least (a comparison runs for long).
    infer = measure_isolated(variant.model, kwargs, (1, in_channels, *size), device, repeats=10, train=False, stat="min")
    trained = measure_isolated(variant.model, kwargs, (batch, in_channels, *size), device, repeats=3, train=True, stat="min")
    return {"params": infer["params"], "macs": infer["flops"] // 2, "latency_ms": infer["forward_s"] * 1e3,
            "throughput": infer["images_per_s"], "train_step_ms": trained["train_step_s"] * 1e3,
            "peak_memory_mb": trained["train_peak_bytes"] / 2**20}


def run_compare(
    data: str,
    models: list[str],
    out: str | Path,
    *,
    seeds: int = 3,
    epochs: int = 10,
    steps: int | None = None,
    seconds: float | None = None,
    ablations: list[str] | None = None,
    widths: str = "small",
    base_width: int = 16,
    size: int | None = None,
    batch_size: int = 8,
    lr: float = 1e-3,
    loss: str = "dice_ce",
    augment: str | None = None,
    device: str = "cpu",
    command: str = "",
) -> dict[str, Any]:
    """Train and evaluate every variant for every seed, measure costs and write the report.

    Returns the results dict (see ``docs/compare_report.md``); the report folder is ``out``.
    """
    from unetfamily.compare.report import write_report
    from unetfamily.data import build_dataset

    out = Path(out)
    data_cfg, data_name = _data_config(data, size)
    if augment is not None:
        data_cfg["augment"] = augment if augment != "none" else None
    train_set = build_dataset(data_cfg, "train")
    info = train_set.info
    eval_split, eval_set = _eval_split(data_cfg)
    sample_shape = tuple(eval_set[0]["image"].shape)
    variants = build_variants(models, ablations or [], widths, base_width, info.in_channels, info.num_model_outputs)
    base = {
        "data": data_cfg,
        "loader": {"batch_size": batch_size},
        "loss": {"name": loss},
        "optim": {"name": "adamw", "lr": lr, "weight_decay": 1e-4},
        "schedule": {"name": "cosine", "warmup_steps": 10},
        "train": {"epochs": epochs, "max_steps": steps, "max_seconds": seconds, "device": device,
                  "progress": False, "tensorboard": True, "eval_every": 1},
    }
    protocol = {
        "data": data_cfg, "data_name": data_name, "task": "binary" if info.num_classes == 2 else "multiclass",
        "classes": list(info.classes),
        "splits": {"train": len(train_set), "val": len(eval_set if eval_split == "val" else build_dataset(data_cfg, "val")),
                   eval_split: len(eval_set)},
        "budget": {"epochs": epochs, "steps": steps, "seconds": seconds}, "seeds": list(range(seeds)),
        "optimizer": base["optim"], "schedule": base["schedule"], "loss": loss, "augment": data_cfg.get("augment"),
        "widths": widths, "base_width": base_width, "input_size": list(sample_shape[-2:]), "batch_size": batch_size,
        "device": device, "threads": torch.get_num_threads(), "eval_split": eval_split, "version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), "command": command,
    }
    out.mkdir(parents=True, exist_ok=True)
    samples = out / "artifacts" / "samples.npz"
    if not samples.is_file():
        images = np.stack([(eval_set[i]["image"].numpy() * 255).round().astype(np.uint8) for i in range(len(eval_set))])
        masks = np.stack([eval_set[i]["mask"].numpy().astype(np.uint8) for i in range(len(eval_set))])
        _save_npz(samples, images=images, masks=masks, names=np.array([eval_set.sample_name(i) for i in range(len(eval_set))]))
    runs, variant_rows = [], []
    for variant in variants:
        for seed in range(seeds):
            runs.append(_one_run(base, variant, seed, out, eval_split, save_pred=seed == 0))
        cost_file = out / "runs" / variant.id / "cost.json"
        if cost_file.is_file():
            cost = json.loads(cost_file.read_text())
        else:
            cost = _costs(variant, info.in_channels, info.num_model_outputs, sample_shape[-2:], batch_size, device)
            atomic_write_bytes(cost_file, json.dumps(cost).encode())
        variant_rows.append({"id": variant.id, "label": variant.label, "model": variant.model, "family": variant.family,
                             "ablation": variant.ablation, "kwargs": variant.kwargs, **cost})
    results = {
        "protocol": protocol, "variants": variant_rows, "runs": runs,
        "artifacts": {"samples": "artifacts/samples.npz",
                      "predictions": {v.id: f"artifacts/pred_{v.id}.npz" for v in variants}},
    }
    write_report(results, out)
    return results


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``unetfamily compare``."""
    p = subparsers.add_parser(
        "compare", help="train UNet-family models under one protocol and report which fits the data",
        description="Train the chosen models with the same data, budget, optimiser and seeds; evaluate them on the "
                    "held-out split; measure their cost; write report.md, report.html, results.json and results.csv.")
    p.add_argument("--data", default="synthetic", help="dataset config YAML, a folder with images/ and masks/, or a type name")
    p.add_argument("--models", default="fcn8s,unet,unet_plusplus,unet_3plus", help="comma-separated registry names")
    p.add_argument("--ablations", default="", help=f"comma-separated: {', '.join(ABLATIONS)}, or 'all'")
    p.add_argument("--seeds", type=int, default=3)
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--epochs", type=int, default=10, help="training budget in epochs (default)")
    budget.add_argument("--steps", type=int, help="training budget in optimiser steps")
    budget.add_argument("--minutes", type=float, help="training budget in wall-clock minutes per run")
    p.add_argument("--widths", choices=["small", "paper", "matched"], default="small",
                   help="small: one base width for all; paper: the papers' widths; matched: parameter counts matched to U-Net")
    p.add_argument("--base-width", type=int, default=16)
    p.add_argument("--size", type=int, help="resize images to SIZE x SIZE (synthetic: generate at SIZE)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--loss", default="dice_ce")
    p.add_argument("--augment", help="augmentation preset (light, medical, natural, none); default: the data config's")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default="reports/compare", help="report folder (re-running it resumes)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    ablations = list(ABLATIONS) if args.ablations == "all" else [a for a in args.ablations.split(",") if a]
    epochs = args.epochs if args.steps is None else max(1, args.steps)  # steps cap the epochs below
    seconds = args.minutes * 60 if args.minutes is not None else None
    if seconds is not None:
        epochs = 10_000
    try:
        results = _compare_from_args(args, ablations, epochs, seconds)
    except KeyboardInterrupt as exc:  # a stopped run saved its checkpoint; finished runs are kept
        print(f"stopped: {exc or 'interrupted'}; run the same command again to continue", file=sys.stderr)
        return 130
    report = Path(args.out) / "report.html"
    best = max(results["variants"], key=lambda v: _mean(results, v["id"]))
    print(f"best: {best['label']}  report: {report.resolve()}")
    return 0


def _compare_from_args(args: argparse.Namespace, ablations: list[str], epochs: int, seconds: float | None) -> dict:
    return run_compare(
        args.data, [m for m in args.models.split(",") if m], args.out, seeds=args.seeds, epochs=epochs, steps=args.steps,
        seconds=seconds, ablations=ablations, widths=args.widths, base_width=args.base_width, size=args.size,
        batch_size=args.batch_size, lr=args.lr, loss=args.loss, augment=args.augment, device=args.device,
        command="unetfamily " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
    )


def _mean(results: dict[str, Any], variant: str) -> float:
    key = "dice" if results["protocol"]["task"] == "binary" else "miou"
    values = [r["test"][key] for r in results["runs"] if r["variant"] == variant and r["test"].get(key) is not None]
    values = [v for v in values if not math.isnan(v)]
    return sum(values) / len(values) if values else float("-inf")
