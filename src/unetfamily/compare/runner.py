"""``run_compare``: train family members under one protocol, evaluate, measure, report.

Protocol (the same for every variant, recorded in the report): one data config and split, the
same augmentation, optimiser, schedule, loss, batch size and budget (epochs, steps or seconds),
the same seeds (so the same data order and augmentation per seed), evaluation of the FINAL
weights on the held-out split (``test`` when the data has one, else ``val``; no model selection
on that split). Costs (parameters, MACs, latency, throughput, peak training memory) come from
:func:`unetfamily.bench.measure_isolated` at the evaluated input size on the comparison's device.

Every run's training :class:`~unetfamily.config.Config` is one base config with the variant's
model, the seed and the run folder replaced. Resumable: finished runs are reused, an interrupted
run resumes from its last checkpoint, measured costs are kept in ``runs/<variant>/cost.json``.
"""
from __future__ import annotations

import datetime
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unetfamily import __version__
from unetfamily.compare.config import CompareConfig
from unetfamily.compare.data import ComparisonData, EvalSplit, load_comparison_data
from unetfamily.compare.report import write_report
from unetfamily.compare.results import Artifacts, CompareResults, Costs, Protocol, VariantResult
from unetfamily.compare.run import save_npz, train_and_evaluate
from unetfamily.compare.variants import Variant, build_variants
from unetfamily.config import Config, LoaderConfig, LossConfig, OptimConfig, ScheduleConfig, TrainConfig
from unetfamily.files import write_json

log = logging.getLogger(__name__)

__all__ = ["run_compare", "base_config"]

SAMPLES = "artifacts/samples.npz"


def base_config(cfg: CompareConfig, data: dict[str, Any]) -> Config:
    """The training config every run shares: data, loader, loss, optimiser, schedule and budget."""
    return Config(
        data=data,
        loader=LoaderConfig(batch_size=cfg.batch_size),
        loss=LossConfig(name=cfg.loss),
        optim=OptimConfig(name="adamw", lr=cfg.lr, weight_decay=1e-4),
        schedule=ScheduleConfig(name="cosine", warmup_steps=10),
        train=TrainConfig(epochs=cfg.epochs, max_steps=cfg.steps, max_seconds=cfg.seconds, device=cfg.device,
                          progress=False, tensorboard=True, eval_every=1),
    )


def _protocol(cfg: CompareConfig, data: ComparisonData, base: Config) -> Protocol:
    info = data.info
    return Protocol(
        config=cfg, data=data.config, data_name=data.name, task="binary" if info.num_classes == 2 else "multiclass",
        classes=list(info.classes), splits=data.splits, eval_split=data.eval.name,
        input_size=list(data.eval.image_shape[-2:]),
        optimizer={"name": base.optim.name, "lr": base.optim.lr, "weight_decay": base.optim.weight_decay},
        schedule={"name": base.schedule.name, "warmup_steps": base.schedule.warmup_steps},
        threads=torch.get_num_threads(), version=__version__,
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    )


def _save_samples(path: Path, split: EvalSplit) -> None:
    """The evaluation images (uint8), masks and names, for the report's figures (once per report folder)."""
    if path.is_file():
        return
    samples = [split.dataset[i] for i in range(len(split.dataset))]
    save_npz(path, images=np.stack([(s["image"].numpy() * 255).round().astype(np.uint8) for s in samples]),
             masks=np.stack([s["mask"].numpy().astype(np.uint8) for s in samples]),
             names=np.array([split.dataset.sample_name(i) for i in range(len(samples))]))


def _costs(variant: Variant, in_channels: int, num_classes: int, size: tuple[int, int], batch: int,
           device: str) -> dict[str, float]:
    """The variant's costs (the fields of :class:`Costs`), each measured in fresh processes."""
    from unetfamily.bench import measure_isolated

    kwargs = {**variant.kwargs, "in_channels": in_channels, "num_classes": num_classes}
    # Minimum over repeats: the figure a busy machine disturbs least (a comparison runs for long).
    infer = measure_isolated(variant.model, kwargs, (1, in_channels, *size), device, repeats=10, train=False, stat="min")
    trained = measure_isolated(variant.model, kwargs, (batch, in_channels, *size), device, repeats=3, train=True, stat="min")
    return {"params": infer["params"], "macs": infer["flops"] // 2, "latency_ms": infer["forward_s"] * 1e3,
            "throughput": infer["images_per_s"], "train_step_ms": trained["train_step_s"] * 1e3,
            "peak_memory_mb": trained["train_peak_bytes"] / 2**20}


def _cached_costs(variant: Variant, out: Path, cfg: CompareConfig, data: ComparisonData) -> Costs:
    path = out / "runs" / variant.id / "cost.json"
    if path.is_file():
        return Costs.from_dict(json.loads(path.read_text()))
    cost = _costs(variant, data.info.in_channels, data.info.num_model_outputs, data.eval.image_shape[-2:],
                  cfg.batch_size, cfg.device)
    write_json(path, cost, indent=None)
    return Costs.from_dict(cost)


def run_compare(cfg: CompareConfig, out: str | Path) -> CompareResults:
    """Train and evaluate every variant for every seed, measure costs and write the report into ``out``.

    Returns the results (see ``docs/compare_report.md``). Raises KeyboardInterrupt when a signal
    stops a run (finished runs and the stopped run's checkpoint are kept: call it again to continue).
    """
    from unetfamily.engine.device import resolve_device

    resolve_device(cfg.device, "--device")  # a CUDA device this machine lacks fails here, not after the data
    out = Path(out)
    data = load_comparison_data(cfg)
    variants = build_variants(cfg.models, cfg.ablations, cfg.widths, cfg.base_width, data.info.in_channels,
                              data.info.num_model_outputs)
    base = base_config(cfg, data.config)
    protocol = _protocol(cfg, data, base)
    _save_samples(out / SAMPLES, data.eval)
    runs, rows = [], []
    for variant in variants:
        runs += [train_and_evaluate(base, variant, seed, out, data.eval, save_predictions=seed == 0)
                 for seed in range(cfg.seeds)]
        rows.append(VariantResult(variant.id, variant.label, variant.model, variant.family, variant.ablation,
                                  dict(variant.kwargs), _cached_costs(variant, out, cfg, data)))
    artifacts = Artifacts(SAMPLES, {v.id: f"artifacts/pred_{v.id}.npz" for v in variants})
    results = CompareResults(protocol, rows, runs, artifacts)
    write_report(results, out)
    return results
