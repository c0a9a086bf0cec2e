"""The ``compare`` report: files, CSV columns, JSON round trip, NaN handling, the verdict, the HTML."""
from __future__ import annotations

import copy
import csv
import json
import math
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.compare.conftest import nan_to_none
from unetfamily.compare.report import PLOTS, csv_columns, write_report
from unetfamily.compare.results import CompareResults
from unetfamily.compare.summary import summarize
from unetfamily.compare.verdict import compare_scores, verdict, welch_t_test

DOCS = Path(__file__).resolve().parents[2] / "docs" / "compare_report.md"
CORE = ["report.md", "report.html", "results.json", "results.csv"]


def _verdict(results: dict[str, Any]) -> str:
    typed = CompareResults.from_dict(results)
    return "\n".join(verdict(typed, summarize(typed)))


def _write(results: dict[str, Any], root: Path) -> dict[str, Path]:
    return write_report(CompareResults.from_dict(results), root)


def _csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def test_binary_report_writes_every_file(binary_report: tuple) -> None:
    _, paths = binary_report
    assert set(paths) == set(CORE) | {f"plots/{p}" for p in PLOTS}
    for path in paths.values():
        assert path.is_file() and path.stat().st_size > 0
    assert not list(paths["report.md"].parent.rglob(".*tmp*")), "temporary files left behind"


def test_csv_header_is_documented_and_rows_ranked(binary_report: tuple) -> None:
    results, paths = binary_report
    header, rows = _csv(paths["results.csv"])
    assert header == csv_columns(results, summarize(results))
    docs = DOCS.read_text()
    for column in header:
        assert f"`{column}`" in docs, f"column {column} is not documented in {DOCS.name}"
    assert [r["id"] for r in rows] == ["unet_plusplus", "unet", "unet_d2"]
    assert [r["rank"] for r in rows] == ["1", "2", "3"]
    dice = [float(r["dice_mean"]) for r in rows]
    assert dice == sorted(dice, reverse=True)
    assert dice[0] == pytest.approx(np.mean([0.861, 0.857]))
    assert float(rows[0]["dice_std"]) == pytest.approx(np.std([0.861, 0.857], ddof=1), rel=1e-4)
    assert rows[0]["n_seeds"] == "2" and rows[2]["ablation"] == "depth 2"
    assert int(rows[0]["params"]) == 2_263_972 and int(rows[0]["macs"]) == 2_750_000_000
    assert float(rows[0]["hd95_mean"]) > 0


def test_multiclass_report_ranks_by_miou_with_per_class_columns(multiclass_report: tuple) -> None:
    results, paths = multiclass_report
    header, rows = _csv(paths["results.csv"])
    for name in ("background", "disc", "bar"):
        assert f"iou_{name}_mean" in header and f"iou_{name}_std" in header
    assert [r["id"] for r in rows] == ["unet", "unet_3plus", "fcn8s"]
    assert rows[0]["hd95_mean"] == ""  # not measured for multi-class
    assert "plots/pruning.png" not in paths
    md = paths["report.md"].read_text()
    assert "mIoU (%)" in md and "IoU bar (%)" in md and "HD95" not in md
    assert "**U-Net** has the highest mIoU" in md


def test_results_json_round_trips_with_nan_as_null(make_results: Any) -> None:
    scores = {"unet": [0.84, 0.85, 0.83], "unet_plusplus": [0.86, 0.85, 0.87], "unet_d2": [0.8, math.nan, 0.81]}
    results, root = make_results(seeds=(0, 1, 2), scores=scores)
    results["runs"][0]["test"]["hd95"] = math.nan
    results["variants"][2]["peak_memory_mb"] = math.nan
    results["variants"][0]["kwargs"]["channels"] = (16, 32)  # a tuple becomes a list
    given = copy.deepcopy(results)
    typed = CompareResults.from_dict(results)
    before = json.dumps(typed.to_dict())
    paths = write_report(typed, root)
    assert json.dumps(typed.to_dict()) == before, "write_report changed its input"
    text = paths["results.json"].read_text()
    assert "NaN" not in text and "null" in text
    expected = nan_to_none(json.loads(json.dumps(given)))  # JSON turns the tuple into a list
    assert json.loads(text) == expected
    _, rows = _csv(paths["results.csv"])
    d2 = next(r for r in rows if r["id"] == "unet_d2")
    assert float(d2["dice_mean"]) == pytest.approx(0.805) and d2["n_seeds"] == "3"  # the NaN seed is left out
    assert d2["peak_memory_mb"] == ""


def test_single_seed_says_it_cannot_separate_models(make_results: Any) -> None:
    results, root = make_results(seeds=(0,))
    paths = _write(results, root)
    _, rows = _csv(paths["results.csv"])
    assert all(r["dice_std"] == "" and r["n_seeds"] == "1" for r in rows)
    md = paths["report.md"].read_text()
    assert "single seed cannot separate models" in md and "--seeds 3" in md
    assert "Welch" not in md.split("## Plots")[0]
    table = [line for line in md.split("## Results")[1].split("## Is")[0].splitlines() if line.startswith("| ")]
    assert len(table) == 4 and not any("\u00b1" in line for line in table)  # no std with one seed


def test_verdict_names_the_winner_and_follows_the_numbers(make_results: Any) -> None:
    results, _ = make_results()
    text = _verdict(results)
    assert text.startswith("On synthetic (test split, 8 images), **UNet++ (DS)** has the highest Dice: 85.90")
    assert "within noise" in text
    # The cheapest model within noise of the winner is recommended, with its cost ratio.
    assert "**U-Net depth 2** is within noise and within 2.00 points of it" in text and "1/27 the MACs" in text

    swapped, _ = make_results(scores={"unet": [0.905, 0.903], "unet_plusplus": [0.861, 0.857], "unet_d2": [0.70, 0.71]})
    text = _verdict(swapped)
    assert text.startswith("On synthetic (test split, 8 images), **U-Net** has the highest Dice: 90.40")
    assert "UNet++ (DS) is 4.50 points: beyond noise" in text
    assert "No cheaper model is within noise and within 2.00 points of it: use **U-Net**" in text
    assert "The cheapest, U-Net depth 2, is 19.90 points behind" in text
    assert "UNet++ (DS) costs 2.7\u00d7 the MACs of U-Net and scores 4.50 points lower" in text
    assert "changes Dice by \u221219.90 points against U-Net (beyond noise" in text


def test_verdict_reports_ablations_and_pruning(make_results: Any) -> None:
    results, _ = make_results()
    text = _verdict(results)
    assert "Ablation \u201cdepth 2\u201d: U-Net depth 2 is within 0.30 Dice points of U-Net" in text
    assert "at 1/10 the MACs" in text
    assert re.search(r"Pruned to L\d, UNet\+\+ \(DS\) keeps \d+\.\d% of its L4 Dice", text)
    no_levels, _ = make_results(levels=False)
    assert "Pruned" not in _verdict(no_levels)
    # Shallow levels that keep the score: the smallest such level is named.
    for run in results["runs"]:
        for lvl, vals in run.get("levels", {}).items():
            vals["dice"] = 0.85 + 0.01 * run["seed"] - 0.001 * (4 - int(lvl))
    assert "Pruned to L1, UNet++ (DS) keeps" in _verdict(results)


def test_welch_t_test_matches_scipy() -> None:
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(1)
    for na, nb in ((2, 2), (3, 5), (10, 4)):
        a, b = rng.normal(0.8, 0.02, na), rng.normal(0.82, 0.05, nb)
        t, _, p = welch_t_test(a, b)
        ref = stats.ttest_ind(a, b, equal_var=False)
        assert t == pytest.approx(ref.statistic, rel=1e-9) and p == pytest.approx(ref.pvalue, rel=1e-7)
    assert welch_t_test([1.0, 1.0], [1.0, 1.0])[2] == 1.0 and welch_t_test([1.0, 1.0], [2.0, 2.0])[2] == 0.0
    assert compare_scores([0.8], [0.7, 0.9]).within_noise is True and compare_scores([0.8], [0.81]).within_noise is None
    with pytest.raises(ValueError, match=">= 2 finite values"):
        welch_t_test([0.5, math.nan], [0.4, 0.5])


def test_missing_optional_fields_and_nan_scores(make_results: Any) -> None:
    results, root = make_results(hd95=False, levels=False, artifacts=False)
    del results["artifacts"]
    for key in ("schedule", "threads"):
        del results["protocol"][key]
    del results["protocol"]["config"]["command"], results["protocol"]["data"]["augment"]
    for v in results["variants"]:
        for key in ("latency_ms", "peak_memory_mb", "throughput", "train_step_ms"):
            del v[key]
    for run in results["runs"]:
        del run["history"], run["per_image"], run["test"]["per_class_iou"]
    results["runs"][-1]["test"]["dice"] = results["runs"][-2]["test"]["dice"] = math.nan  # unet_d2: no score
    results["runs"].append({"variant": "not_a_variant", "seed": 0, "test": {"dice": 0.99}})
    paths = _write(results, root)
    assert set(paths) == set(CORE) | {"plots/cost.png"}
    md = paths["report.md"].read_text()
    assert "HD95" not in md and "UNet++ pruning levels" not in md and "| 3 | U-Net depth 2 | 2 | \u2014 |" in md
    _, rows = _csv(paths["results.csv"])
    assert rows[-1]["id"] == "unet_d2" and rows[-1]["dice_mean"] == "" and rows[-1]["latency_ms"] == ""
    assert "U-Net depth 2" not in _verdict(results).split("Ablation")[0]


def test_rewrite_removes_stale_plots(make_results: Any) -> None:
    results, root = make_results()
    assert "plots/pruning.png" in _write(results, root)
    for run in results["runs"]:
        run.pop("levels", None)
    paths = _write(results, root)
    assert "plots/pruning.png" not in paths and not (root / "plots" / "pruning.png").exists()
    assert not [p for p in root.rglob("*") if ".tmp-" in p.name]


def test_report_states_the_protocol(binary_report: tuple) -> None:
    results, paths = binary_report
    md = paths["report.md"].read_text()
    for text in ("## Verdict", "## Results", "## Is the difference real?", "## Protocol", "train 64, val 16, test 8",
                 "epochs=10", "name=adamw, lr=0.001", "name=cosine", "dice_ce", "| Augmentation | light |",
                 "| Widths | small, base width 16 |", "| Models | unet, unet_plusplus; ablations: unet_depth |",
                 "cpu, 2 threads", results.protocol.config.command):
        assert text in md, text
    for name in PLOTS:
        assert f"](plots/{name})" in md


def test_html_is_self_contained(binary_report: tuple) -> None:
    _, paths = binary_report
    page = paths["report.html"].read_text()
    assert "http://" not in page and "https://" not in page
    refs = re.findall(r"""(?:src|href)\s*=\s*["']?([^"'\s>]*)""", page, flags=re.I)
    assert refs and all(r.startswith("data:image/png;base64,") for r in refs)
    assert not re.search(r"""(?:src|href)\s*=\s*["']?//""", page, flags=re.I)
    assert page.count("<img ") == len(PLOTS)
    assert "<link" not in page and "<script" not in page and "@import" not in page and "url(" not in page


def test_html_renders_in_headless_chromium(binary_report: tuple, tmp_path: Path) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("no chromium or chromium-browser on PATH (CI installs it with apt-get install -y chromium)")
    from PIL import Image

    _, paths = binary_report
    shot = tmp_path / "report.png"
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1280,2000",
           paths["report.html"].resolve().as_uri()]
    subprocess.run(cmd, capture_output=True, timeout=120, check=False)
    assert shot.is_file(), "chromium wrote no screenshot"
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float32)
    assert pixels.shape == (2000, 1280)
    assert pixels.std() > 20, "the screenshot is blank"
    assert (pixels[:300] < 100).mean() > 0.005, "no dark text at the top of the page"


def test_large_gap_within_noise_is_not_recommended(make_results: Any) -> None:
    # Two noisy seeds: the t-test cannot call a 20-point gap, but the verdict must not recommend it.
    results, _ = make_results(scores={"unet": [0.905, 0.903], "unet_plusplus": [0.80, 0.60], "unet_d2": [0.88, 0.50]})
    text = _verdict(results)
    assert "**U-Net** has the highest Dice" in text
    assert "Use **U-Net depth 2**" not in text and "Use **UNet++ (DS)**" not in text
    assert "more seeds would likely show it is real" in text
