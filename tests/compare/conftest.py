"""Fake comparison results for the report tests.

:func:`build_results`: a realistic ``results`` dict (``results.json``'s schema) with its
artifacts. Eval images are noisy discs (binary) or a disc and a bar (multi-class); each
variant's seed-0 predictions are the ground truth corrupted by seeded noise whose strength
follows the variant's score, and the per-image Dice in ``results`` is computed from those
predictions, so figures and numbers agree.

:func:`case_results`: a :class:`CompareResults` built directly from injected per-case scores
(seed x case per variant), with K folds, for the case-level statistics and the verdict.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from unetfamily.compare.config import CompareConfig
from unetfamily.compare.report import write_report
from unetfamily.compare.results import Costs, CompareResults, Protocol, RunResult, VariantResult

SIZE, N_IMAGES = 32, 8
# id, label, model, family, ablation, params, macs, latency_ms
BINARY = [
    ("unet", "U-Net", "unet", "unet", None, 1_941_105, 1_020_000_000, 8.1),
    ("unet_plusplus", "UNet++ (DS)", "unet_plusplus", "unet_plusplus", None, 2_263_972, 2_750_000_000, 14.6),
    ("unet_d2", "U-Net depth 2", "unet", "unet", "depth 2", 118_801, 102_000_000, 3.2),
]
RECEPTIVE_FIELD = {"unet": 140, "unet_plusplus": 140, "unet_d2": 44}  # binary variants only
BINARY_DICE = {"unet": [0.842, 0.848], "unet_plusplus": [0.861, 0.857], "unet_d2": [0.839, 0.845]}
MULTICLASS = [
    ("fcn8s", "FCN-8s", "fcn8s", "fcn", None, 3_100_000, 1_500_000_000, 6.0),
    ("unet", "U-Net", "unet", "unet", None, 1_941_105, 1_020_000_000, 8.1),
    ("unet_3plus", "UNet3+ (DS)", "unet_3plus", "unet_3plus", None, 1_700_000, 4_100_000_000, 21.0),
]
MULTICLASS_MIOU = {"fcn8s": [0.61, 0.63], "unet": [0.74, 0.73], "unet_3plus": [0.72, 0.74]}


def _dice(pred: np.ndarray, mask: np.ndarray) -> float:
    """Mean foreground Dice of one image; NaN when no foreground class is in either."""
    valid = mask != 255
    scores = []
    for k in range(1, 256):
        p, t = (pred == k) & valid, (mask == k) & valid
        if p.any() or t.any():
            scores.append(2 * (p & t).sum() / (p.sum() + t.sum()))
    return float(np.mean(scores)) if scores else math.nan


def _samples(rng: np.random.Generator, multiclass: bool) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[:SIZE, :SIZE]
    images = np.zeros((N_IMAGES, 3, SIZE, SIZE), np.uint8)
    masks = np.zeros((N_IMAGES, SIZE, SIZE), np.uint8)
    for i in range(N_IMAGES - 1):  # the last image has no foreground
        cy, cx, r = rng.integers(9, SIZE - 9, 2).tolist() + [int(rng.integers(4, 8))]
        masks[i][(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 1
        if multiclass:
            masks[i][2:6, 4 + i: 20 + i] = 2
    masks[0, :, :2] = 255  # an ignored border
    base = rng.integers(20, 90, (N_IMAGES, 3, SIZE, SIZE))
    images[:] = np.clip(base + 120 * (masks[:, None] % 255 > 0), 0, 255)
    return images, masks


def _corrupt(rng: np.random.Generator, masks: np.ndarray, quality: float, num_classes: int) -> np.ndarray:
    pred = np.where(masks == 255, 0, masks).astype(np.uint8)
    flip = rng.random(pred.shape) < (1 - quality) * 0.25
    pred[flip] = rng.integers(0, num_classes, int(flip.sum()))
    pred[1] = 0 if quality < 0.85 else pred[1]  # weaker models miss image 1 entirely
    return pred


def _history(rng: np.random.Generator, final: float, metric: str, offset: int) -> list[dict[str, Any]]:
    steps = range(10 + offset, 101, 10)
    out = []
    for epoch, step in enumerate(steps, start=1):
        v = final * (1 - math.exp(-step / 25)) + rng.normal(0, 0.005)
        dice, miou = (v + 0.08, v) if metric == "miou" else (v, (v + 0.98) / 2)
        out.append({"step": step, "epoch": epoch, "dice": dice, "iou": dice / (2 - dice), "miou": miou,
                    "loss": 1.0 - step / 120})
    return out


def build_results(root: Path, task: str = "binary", seeds: tuple[int, ...] = (0, 1),
                  scores: dict[str, list[float]] | None = None, hd95: bool = True, levels: bool = True,
                  artifacts: bool = True) -> dict[str, Any]:
    """The results dict for ``task`` with artifacts under ``root`` (the report folder)."""
    rng = np.random.default_rng(0)
    multiclass = task == "multiclass"
    table, metric = (MULTICLASS, "miou") if multiclass else (BINARY, "dice")
    scores = scores or (MULTICLASS_MIOU if multiclass else BINARY_DICE)
    classes = ["background", "disc", "bar"] if multiclass else ["background", "foreground"]
    images, masks = _samples(rng, multiclass)
    names = np.array([f"img_{i:03d}.png" for i in range(N_IMAGES)])
    variants, runs, preds = [], [], {}
    for vid, label, model, family, ablation, params, macs, latency in table:
        variants.append({"id": vid, "label": label, "model": model, "family": family, "ablation": ablation,
                         "kwargs": {"channels": [16, 32, 64, 128, 256]}, "params": params, "macs": macs,
                         "latency_ms": latency, "train_step_ms": 10 * latency, "peak_memory_mb": 50 + params / 1e4,
                         "throughput": 1000 / latency, "lr": 0.001,
                         "receptive_field": None if multiclass else RECEPTIVE_FIELD[vid]})
        preds[vid] = _corrupt(rng, masks, float(np.mean(scores[vid][: len(seeds)])), len(classes))
        if vid == table[1][0]:
            preds[vid][-1] = 0  # empty prediction on the empty image: per-image Dice NaN
        for j, seed in enumerate(seeds):
            score = scores[vid][j]
            per_class = [0.95] + [score - 0.02 * k for k in range(len(classes) - 1)]
            test = {"dice": score if not multiclass else score + 0.08, "iou": score / (2 - score), "miou": score,
                    "pixel_accuracy": 0.9 + score / 20, "per_class_iou": per_class, "per_class_dice": per_class}
            if hd95 and not multiclass:
                test["hd95"] = 40 * (1 - score) + rng.normal(0, 0.3)
            if not multiclass:
                test["nsd"], test["cldice"] = score + 0.05, score - 0.1
            per_image = [{"name": str(n), "dice": _dice(preds[vid][i], masks[i]) + (0 if j == 0 else 0.01),
                          "iou": math.nan} for i, n in enumerate(names)]
            run = {"variant": vid, "seed": seed, "fold": 0, "train_seconds": 30 + macs / 1e8 + j, "steps": 100,
                   "history": _history(rng, score, metric, offset=5 * j), "test": test, "per_image": per_image}
            if levels and vid == "unet_plusplus":
                run["levels"] = {str(lv): {"dice": score - 0.04 * (4 - lv) ** 1.5 + 0.001 * j, "iou": score - 0.1,
                                           "latency_ms": latency * lv / 4.5, "macs": macs * 4 ** (lv - 4)}
                                 for lv in (1, 2, 3, 4)}
            runs.append(run)
    if artifacts:
        (root / "artifacts").mkdir(parents=True, exist_ok=True)
        np.savez_compressed(root / "artifacts" / "samples.npz", images=images, masks=masks, names=names)
        for vid, pred in preds.items():
            np.savez_compressed(root / "artifacts" / f"pred_{vid}.npz", pred=pred, names=names)
    config = CompareConfig(
        models=[row[2] for row in table if not row[4]], ablations=[] if multiclass else ["unet_depth"],
        seeds=len(seeds), epochs=10, base_width=16, size=SIZE, batch_size=8, lr=0.001, augment="light",
        command="unetfamily compare --data synthetic --models unet,unet_plusplus --ablations unet_depth --seeds 2",
    )
    protocol = {
        "config": config.to_dict(), "data": {"type": "synthetic", "size": SIZE, "augment": "light"},
        "data_name": "synthetic", "task": task, "classes": classes, "splits": {"train": 64, "val": 16, "test": N_IMAGES},
        "eval_split": "test", "input_size": [SIZE, SIZE], "folds": 1, "cases": N_IMAGES,
        "optimizer": {"name": "adamw", "lr": 0.001, "weight_decay": 0.0001},
        "schedule": {"name": "cosine", "warmup_steps": 10}, "threads": 2, "plan": None, "encoder": None,
        "background": True, "version": "0.1.0",
        "created": "2025-01-01T00:00:00+00:00",
    }
    return {"protocol": protocol, "variants": variants, "runs": runs,
            "artifacts": {"samples": "artifacts/samples.npz",
                          "predictions": {vid: f"artifacts/pred_{vid}.npz" for vid in preds}}}


@pytest.fixture
def make_results(tmp_path: Path) -> Callable[..., tuple[dict[str, Any], Path]]:
    """``make_results(**build_results options)``: (results, report folder) in a fresh folder."""
    counter = iter(range(1000))

    def make(**options: Any) -> tuple[dict[str, Any], Path]:
        root = tmp_path / f"report{next(counter)}"
        root.mkdir()
        return build_results(root, **options), root

    return make


def _written(tmp_path_factory: pytest.TempPathFactory, task: str) -> tuple[CompareResults, dict[str, Path]]:
    root = tmp_path_factory.mktemp(task)
    results = CompareResults.from_dict(build_results(root, task))
    return results, write_report(results, root)


@pytest.fixture(scope="session")
def binary_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[CompareResults, dict[str, Path]]:
    """(results, written paths) of the binary fixture: U-Net, UNet++ (DS) with levels, U-Net depth 2; 2 seeds."""
    return _written(tmp_path_factory, "binary")


@pytest.fixture(scope="session")
def multiclass_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[CompareResults, dict[str, Path]]:
    """(results, written paths) of the multi-class fixture: FCN-8s, U-Net, UNet3+ (DS); 2 seeds, 3 classes."""
    return _written(tmp_path_factory, "multiclass")


def nan_to_none(obj: Any) -> Any:
    """``obj`` with every float NaN replaced by None, as results.json writes it (nested dicts and lists)."""
    if isinstance(obj, dict):
        return {k: nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [nan_to_none(v) for v in obj]
    return None if isinstance(obj, float) and math.isnan(obj) else obj


LABELS = {"unet": "U-Net", "unet_plusplus": "UNet++", "unet_3plus": "UNet3+", "fcn8s": "FCN-8s",
          "unet_d0": "U-Net depth 0", "unet_d2": "U-Net depth 2"}


def case_results(scores: Mapping[str, Any], metric: str = "dice", folds: int = 1,
                 macs: Mapping[str, float] | None = None, receptive_field: Mapping[str, int] | None = None,
                 ablation: Mapping[str, str] | None = None, names: list[str] | None = None) -> CompareResults:
    """Results whose per-case ``metric`` is ``scores[variant]`` ((S, C): seed x case; NaN allowed).

    Case c is named ``case_{c:03d}`` (or ``names[c]``) and held out by fold ``c % folds``: one run
    per (variant, seed, fold) holds that fold's cases. A variant's MACs default to 1e9 x (its
    position + 1), so earlier variants are cheaper.
    """
    first = np.atleast_2d(np.asarray(next(iter(scores.values())), dtype=float))
    n_seeds, n_cases = first.shape
    names = names or [f"case_{c:03d}" for c in range(n_cases)]
    config = CompareConfig(models=[v for v in scores if v in LABELS and "_d" not in v] or ["unet"], seeds=n_seeds,
                           folds=folds, primary=metric, command="unetfamily compare --data injected")
    protocol = Protocol(config=config, data={"type": "injected"}, data_name="injected", task="binary",
                        classes=["background", "foreground"], splits={"test": n_cases},
                        eval_split="folds" if folds > 1 else "test", input_size=[32, 32], folds=folds,
                        cases=n_cases, version="0.2.0", created="2025-01-01T00:00:00+00:00")
    variants, runs = [], []
    for i, (vid, values) in enumerate(scores.items()):
        model = vid.split("_d")[0] if "_d" in vid else vid
        variants.append(VariantResult(
            id=vid, label=LABELS.get(vid, vid), model=model, family=model, ablation=(ablation or {}).get(vid),
            costs=Costs(params=1_000_000 * (i + 1), macs=int((macs or {}).get(vid, 1e9 * (i + 1))),
                        latency_ms=2.0 * (i + 1)),
            receptive_field=(receptive_field or {}).get(vid)))
        matrix = np.atleast_2d(np.asarray(values, dtype=float))
        for seed in range(matrix.shape[0]):
            for fold in range(folds):
                cases = [c for c in range(n_cases) if c % folds == fold]
                per_image = [{"name": names[c], metric: float(matrix[seed, c])} for c in cases]
                mean = float(np.nanmean(matrix[seed, cases])) if np.isfinite(matrix[seed, cases]).any() else math.nan
                runs.append(RunResult(variant=vid, seed=seed, fold=fold, train_seconds=10.0, steps=10,
                                      test={metric: mean}, per_image=per_image))
    return CompareResults(protocol=protocol, variants=variants, runs=runs)


@pytest.fixture()
def spy_fit(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The output folders of every training run started (``engine.train.fit`` still runs them)."""
    import unetfamily.engine.train as train_mod

    trained: list[str] = []
    real = train_mod.fit

    def spy(cfg, resume=False, overwrite=False):  # noqa: ANN001, ANN202
        trained.append(cfg.output_dir)
        return real(cfg, resume=resume, overwrite=overwrite)

    monkeypatch.setattr(train_mod, "fit", spy)
    return trained
