"""Score the runs of comparisons at the images' native resolution, whatever geometry each trained at.

    python tools/native_eval.py reports/plan_eval/isbi_plan reports/plan_eval/isbi_hand

A comparison scores its runs at the resolution it trained at (``--size`` resizes the masks too; a plan's
``data.scale`` scales them), so two comparisons of one dataset at different geometries are scored on
different pixel grids. This puts them on one: for each run of each report folder (``--folds 1`` only), the
final checkpoint predicts every image of the evaluated split at its native size
(:class:`unetfamily.engine.predict.Predictor` resizes to the run's training geometry and the
probabilities back), and the per-case Dice (mean over foreground classes, or over every class where the
data's class 0 is not a background; a case with neither prediction nor reference counts as perfect, as in
the compare report) is taken against the native mask.
Prints one markdown table per report folder.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

from unetfamily.data import build_dataset
from unetfamily.engine.predict import Predictor
from unetfamily.metrics import per_image_scores
from unetfamily.plan import native_config


def native_scores(report: Path) -> dict[str, dict[int, float]]:
    """{variant: {seed: mean per-case Dice in percent at native resolution}} of the report folder's runs."""
    results = json.loads((report / "results.json").read_text())
    protocol = results["protocol"]
    if protocol.get("folds", 1) != 1:
        raise SystemExit(f"{report}: cross-validated comparisons are not supported here")
    dataset = build_dataset(native_config(protocol["data"]), protocol["eval_split"])
    info = dataset.info
    out = {}
    for run in results["runs"]:
        folder = report / "runs" / run["variant"] / f"seed{run['seed']}"
        predictor = Predictor.from_checkpoint(folder / "checkpoints" / "last.safetensors", tile_size=None)
        cases = []
        for i in range(len(dataset)):
            sample = dataset[i]
            mask = predictor.predict(sample["image"], keep_probabilities=False).mask.long()
            dice = float(per_image_scores(mask[None], sample["mask"][None], info.num_classes,
                                          ignore_index=info.ignore_index,
                                          include_background=not info.has_background)["dice"][0])
            cases.append(1.0 if math.isnan(dice) else dice)
        out.setdefault(run["variant"], {})[run["seed"]] = 100 * sum(cases) / len(cases)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reports", nargs="+", type=Path)
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    for report in args.reports:
        start = time.perf_counter()
        scores = native_scores(report)
        print(f"\n{report} (native resolution, {time.perf_counter() - start:.0f} s)")
        seeds = sorted({seed for by_seed in scores.values() for seed in by_seed})
        print("| model | Dice per case (%), mean over seeds | " + " | ".join(f"seed {s}" for s in seeds) + " |")
        print("|---|---:|" + "---:|" * len(seeds))
        for variant, by_seed in scores.items():
            mean = sum(by_seed.values()) / len(by_seed)
            print(f"| {variant} | {mean:.2f} | " + " | ".join(f"{by_seed[s]:.2f}" if s in by_seed else "-"
                                                                for s in seeds) + " |")


if __name__ == "__main__":
    main()
