"""The ``compare`` report: files, CSV columns, JSON round trip, NaN handling, the verdict, the case-level
section, byte-identical rewrites, the HTML."""
from __future__ import annotations

import base64
import copy
import hashlib
import csv
import dataclasses
import json
import math
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.compare.conftest import case_results, nan_to_none
from unetfamily.compare.evidence import case_evidence
from unetfamily.compare.report import PLOTS, csv_columns, write_report
from unetfamily.compare.results import CompareResults, RunResult
from unetfamily.compare.summary import summarize
from unetfamily.compare.verdict import (compare_scores, format_p, format_share, p_adj_phrase, verdict,
                                        welch_t_test)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "compare_report.md"
CORE = ["report.md", "report.html", "results.json", "results.csv"]


def _verdict(results: dict[str, Any] | CompareResults) -> str:
    typed = results if isinstance(results, CompareResults) else CompareResults.from_dict(results)
    return "\n".join(verdict(typed, summarize(typed)))


def _write(results: dict[str, Any], root: Path) -> dict[str, Path]:
    return write_report(CompareResults.from_dict(results), root)


def _csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def test_binary_report_writes_every_file(binary_report: tuple) -> None:
    _, paths = binary_report
    cases = {name for name in paths if name.startswith("cases/")}
    assert set(paths) - cases == set(CORE) | {f"plots/{p}" for p in PLOTS}
    results, _ = binary_report
    folders = {name.rsplit("/", 1)[0] for name in cases}
    assert len(folders) == len(results.runs_of("unet")[0].per_image)  # one folder per evaluated case
    for folder in folders:  # the image, the truth and each model's prediction at full resolution
        assert {name.rsplit("/", 1)[1] for name in cases if name.startswith(folder + "/")} == \
            {"image.png", "gt.png"} | {f"{v.id}.png" for v in results.variants}
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
    assert [r["receptive_field"] for r in rows] == ["140", "140", "44"] and rows[0]["lr"] == "0.001"
    ev = case_evidence(results, [v.id for v in results.variants], "dice")
    assert [r["id"] for r in rows] == ev.order()  # ranked by the mean per-case score
    for r in rows:
        i = ev.variants.index(r["id"])
        assert float(r["case_mean"]) == pytest.approx(ev.mean(r["id"]), rel=1e-5)
        assert float(r["case_ci_low"]) <= float(r["case_mean"]) <= float(r["case_ci_high"])
        assert float(r["case_ci_low"]) == pytest.approx(ev.ranks.ci_low[i], rel=1e-5)
        assert float(r["p_first"]) == pytest.approx(ev.p_first(r["id"]), rel=1e-5)
        assert float(r["seed_std"]) == pytest.approx(ev.seed_std(r["id"]), rel=1e-5)
    assert rows[0]["median_rank"] == "1"


def test_multiclass_report_ranks_by_foreground_dice_with_per_class_tables(multiclass_report: tuple) -> None:
    results, paths = multiclass_report
    assert results.primary_metric == "dice"
    header, rows = _csv(paths["results.csv"])
    for name in ("background", "disc", "bar"):
        for metric in ("iou", "dice"):
            assert f"{metric}_{name}_mean" in header and f"{metric}_{name}_std" in header
    assert [r["id"] for r in rows] == ["unet", "unet_3plus", "fcn8s"]
    assert rows[0]["hd95_mean"] == ""  # not measured for multi-class
    assert float(rows[0]["iou_bar_mean"]) == pytest.approx(np.mean([0.74 - 0.02, 0.73 - 0.02]))
    assert "plots/pruning.png" not in paths
    md = paths["report.md"].read_text()
    assert "mIoU (%)" in md and "HD95" not in md
    per_class = md.split("## Per-class scores")[1].split("## ")[0]
    assert "IoU bar (%)" in per_class and "Dice disc (%)" in per_class
    assert "| U-Net | **95.00 \u00b1 0.00**" in per_class
    assert "**U-Net** has the highest mean Dice per case" in md
    assert "Its weakest class is \u201cbar\u201d" in md


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


def test_single_seed_says_the_seed_spread_is_unknown(make_results: Any) -> None:
    results, root = make_results(seeds=(0,))
    paths = _write(results, root)
    _, rows = _csv(paths["results.csv"])
    assert all(r["dice_std"] == "" and r["n_seeds"] == "1" and r["seed_std"] == "" for r in rows)
    md = paths["report.md"].read_text()
    assert "trained with a single seed, so the seed-to-seed spread is unknown" in md and "--seeds 3" in md
    assert "Welch" not in md.split("## Plots")[0]
    table = [line for line in md.split("## Results")[1].split("## Case")[0].splitlines() if line.startswith("| ")]
    assert len(table) == 4 and not any("\u00b1" in line for line in table)  # no std with one seed


def test_verdict_names_the_winner_and_follows_the_numbers() -> None:
    rng = np.random.default_rng(7)
    base = np.tile(rng.uniform(0.6, 0.9, 24), (2, 1))
    # UNet++ leads by 0.05 points: wins and losses alternate with ever larger margins, so no pattern.
    small = np.linspace(0.001, 0.024, 24) * np.where(np.arange(24) % 2 == 0, -1.0, 1.0)
    scores = {"unet_plusplus": base + small, "unet": base, "unet_d2": base - 0.2 + rng.normal(0, 0.01, base.shape)}
    results = case_results(scores, macs={"unet_plusplus": 2.75e9, "unet": 1.02e9, "unet_d2": 1.02e8})
    ev = case_evidence(results, list(scores), "dice")
    text = _verdict(results)
    mean = 100 * ev.mean("unet_plusplus")
    assert text.startswith(f"On injected (test split, 24 cases), **UNet++** has the highest mean Dice per case: "
                           f"{mean:.2f} (95% CI ")
    t = ev.pair("unet", "unet_plusplus")
    assert "UNet++ and U-Net cannot be separated on this data (p_adj >= 0.05; UNet++ first in" in text
    assert f"UNet++ is better than U-Net depth 2 ({p_adj_phrase(ev.pair('unet_plusplus', 'unet_d2').p_adj)})" in text
    # The cheapest model inseparable from the winner and within the margin is recommended, with its cost ratio.
    assert t.p_adj >= 0.05 and t.mean_diff == pytest.approx(-0.0005)
    assert (f"**U-Net** cannot be separated from UNet++ and is within 2.00 points of it (\u22120.05 points, "
            f"{p_adj_phrase(t.p_adj)}) at 1/3 the MACs") in text
    assert "Use **U-Net** where compute matters; UNet++ only if its 0.05-point edge is worth the cost." in text

    swapped = case_results({"unet": base + 0.045, "unet_plusplus": base + small, "unet_d2": scores["unet_d2"]},
                           macs={"unet": 1.02e9, "unet_plusplus": 2.75e9, "unet_d2": 1.02e8})
    ev = case_evidence(swapped, ["unet", "unet_plusplus", "unet_d2"], "dice")
    text = _verdict(swapped)
    assert "**U-Net** has the highest mean Dice per case" in text
    p_adj = p_adj_phrase(ev.pair("unet", "unet_plusplus").p_adj)
    assert (f"**U-Net** ranks first in {format_share(ev.p_first('unet'))} of bootstrap samples; U-Net vs UNet++: "
            f"{p_adj} (better on 24 of 24 cases)") in text
    assert "No cheaper model is both inseparable from it and within 2.00 points of it: use **U-Net**" in text
    assert f"The cheapest, U-Net depth 2, is {100 * (ev.mean('unet') - ev.mean('unet_d2')):.2f} points behind" in text
    assert f"UNet++ costs 2.7\u00d7 the MACs of U-Net and scores 4.45 points worse ({p_adj})" in text


def test_verdict_reports_ablations_and_pruning(make_results: Any) -> None:
    results, _ = make_results()
    typed = CompareResults.from_dict(results)
    t = case_evidence(typed, [v.id for v in typed.variants], "dice").pair("unet_d2", "unet")  # Holm over all pairs
    text = _verdict(results)
    assert t.p_adj >= 0.05 and abs(t.mean_diff) <= 0.01
    assert (f"Ablation \u201cdepth 2\u201d: U-Net depth 2 is within {100 * abs(t.mean_diff):.2f} Dice points of U-Net "
            f"(cannot be separated: {p_adj_phrase(t.p_adj)}, better on {t.wins} and worse on {t.losses} cases)") \
        in text
    assert "at 1/10 the MACs" in text and "receptive field 44 vs 140 px" in text
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
    for text in ("## Verdict", "## Results", "## Case-level statistics", "## Protocol", "train 64, val 16, test 8",
                 "epochs=10", "name=adamw, lr=0.001", "name=cosine", "dice_ce", "| Augmentation | light |",
                 "| Widths | small, base width 16 |", "| Models | unet, unet_plusplus; ablations: unet_depth |",
                 "| Device | cpu; costs measured with 2 threads |", "evaluated on the test split (8 cases)", "| Primary metric | Dice per case; NSD "
                 "tolerance 2 px |", results.protocol.config.command):
        assert text in md, text
    for name in PLOTS:
        assert f"](plots/{name})" in md


def test_html_is_self_contained(binary_report: tuple) -> None:
    _, paths = binary_report
    page = paths["report.html"].read_text()
    root = paths["report.html"].parent
    assert "http://" not in page and "https://" not in page
    assert not re.search(r"""(?:src|href)\s*=\s*["']?//""", page, flags=re.I)
    srcs = re.findall(r"""\ssrc\s*=\s*["']?([^"'\s>]*)""", page, flags=re.I)
    assert srcs and all(r.startswith("data:image/png;base64,") for r in srcs)  # every picture is in the page
    ids = set(re.findall(r'\sid="([^"]+)"', page))
    for ref in re.findall(r"""\s(?:xlink:)?href\s*=\s*["']?([^"'\s>]*)""", page, flags=re.I):
        assert ref.startswith("#") and ref[1:] in ids or (root / ref).exists(), ref  # a section, or a file beside
    assert set(re.findall(r"url\((.)", page)) <= {"#"}  # SVG clip paths inside the page only
    assert "<link" not in page and "@import" not in page
    assert page.count("<img ") == len(PLOTS) - 2  # curves and cost are inline SVG
    assert page.count("<svg") == 2 and page.count('class="tip"') > 0
    scripts = re.findall(r"<script>(.*?)</script>", page, flags=re.S)
    assert len(scripts) == 1  # the page's own script, allowed by its hash and nothing else
    digest = base64.b64encode(hashlib.sha256(scripts[0].encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in page and "default-src 'none'" in page
    data = json.loads(re.search(r'<script type="application/json" id="cb-data">(.*?)</script>', page, re.S).group(1))
    for case in data["cases"]:  # the case browser links full-resolution files that exist
        assert all((root / f).is_file() for f in [case["files"]["image"], case["files"]["gt"], *case["files"]["pred"]])


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


def test_large_gap_that_cannot_be_tested_is_not_recommended() -> None:
    # Few, noisy cases: the test cannot call a 20-point gap, but the verdict must not recommend it.
    rng = np.random.default_rng(2)
    base = np.tile(rng.uniform(0.5, 0.9, 6), (2, 1))
    swing = np.array([0.6, -0.2, 0.6, -0.2, 0.6, -0.2]) + 0.0  # mean +0.2, three cases each way
    results = case_results({"unet": base + swing, "unet_plusplus": base, "unet_d2": base - 0.01},
                           macs={"unet": 3e9, "unet_plusplus": 2e9, "unet_d2": 1e9})
    ev = case_evidence(results, ["unet", "unet_plusplus", "unet_d2"], "dice")
    assert ev.pair("unet", "unet_plusplus").p_adj >= 0.05 and ev.pair("unet", "unet_d2").p_adj >= 0.05
    text = _verdict(results)
    assert "**U-Net** has the highest mean Dice per case" in text
    assert "Use **U-Net depth 2**" not in text and "Use **UNet++**" not in text
    assert "more cases (a larger test split or `--folds`) would likely show it is real" in text


def test_case_level_section(binary_report: tuple) -> None:
    results, paths = binary_report
    md = paths["report.md"].read_text()
    section = md.split("## Case-level statistics")[1].split("\n## ")[0]
    assert ("| # | Model | Mean Dice per case (%) [95% CI] | P(first) | Median rank [95%] | Seed-to-seed std (%) "
            "| Seeds |") in section
    assert "| A | B | Mean \u0394 Dice A \u2212 B (points) | A better / worse (cases) | p | p_adj |" in section
    ev = case_evidence(results, [v.id for v in results.variants], "dice")
    i = ev.variants.index("unet_plusplus")
    assert (f"| 1 | UNet++ (DS) | {100 * ev.mean('unet_plusplus'):.2f} [{100 * ev.ranks.ci_low[i]:.2f}, "
            f"{100 * ev.ranks.ci_high[i]:.2f}] | {format_share(ev.p_first('unet_plusplus'))} |") in section
    t = ev.pair("unet_plusplus", "unet")
    assert f"| UNet++ (DS) | U-Net | +{100 * t.mean_diff:.2f} | {t.wins} / {t.losses} | {format_p(t.p)} |" in section
    assert "](plots/ranks.png)" in section and "](plots/significance.png)" in section
    assert "Pooled" not in md  # one fold: no per-fold table
    assert "| RF (px) |" in md.split("## Results")[1].split("## ")[0]


def test_per_fold_table_only_with_folds(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    base = np.tile(rng.uniform(0.5, 0.9, 20), (2, 1))
    scores = {"unet": base + 0.03, "unet_3plus": base}
    md = write_report(case_results(scores, folds=5), tmp_path / "k5")["report.md"].read_text()
    assert "| Model | Fold 0 | Fold 1 | Fold 2 | Fold 3 | Fold 4 | Pooled |" in md
    assert "5-fold cross-validation" in md and "On injected (5-fold cross-validation, 20 cases)" in md
    fold0 = 100 * (base[0, ::5].mean() + 0.03)
    assert f"| U-Net | {fold0:.2f} |" in md
    md = write_report(case_results(scores, folds=1), tmp_path / "k1")["report.md"].read_text()
    assert "Pooled" not in md and "Fold 0" not in md


def test_hd95_primary_ranks_lowest_first(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    base = np.tile(rng.uniform(2, 10, 16), (2, 1))
    results = case_results({"unet": base + 3.0, "unet_plusplus": base}, metric="hd95")
    paths = write_report(results, tmp_path)
    _, rows = _csv(paths["results.csv"])
    assert [r["id"] for r in rows] == ["unet_plusplus", "unet"]
    md = paths["report.md"].read_text()
    assert "**UNet++** has the lowest mean HD95 per case" in md and "Mean HD95 per case (px) [95% CI]" in md
    assert "| UNet++ | U-Net | \u22123.00 | 16 / 0 |" in md  # fewer pixels is a win


def test_report_is_byte_identical_when_written_twice(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    base = np.tile(rng.uniform(0.5, 0.9, 12), (2, 1))
    scores = {"unet": base + rng.normal(0, 0.02, base.shape), "unet_plusplus": base, "unet_3plus": base - 0.01}
    first = write_report(case_results(scores, folds=3), tmp_path / "a")
    later = case_results(scores, folds=3)
    later.protocol.created = "2031-06-30T12:00:00+00:00"
    second = write_report(later, tmp_path / "b")
    assert set(first) == set(second) and {"plots/ranks.png", "plots/significance.png"} <= set(first)
    for name, path in first.items():
        a = path.read_bytes()
        b = second[name].read_bytes().replace(b"2031-06-30T12:00:00+00:00", b"2025-01-01T00:00:00+00:00")
        assert a == b, f"{name} differs between two writes of the same results"


def test_results_json_is_strict(binary_report: tuple) -> None:
    _, paths = binary_report

    def reject(token: str) -> None:
        raise AssertionError(f"results.json holds {token}")

    data = json.loads(paths["results.json"].read_text(), parse_constant=reject)
    assert any(p["dice"] is None for run in data["runs"] for p in run["per_image"])  # NaN written as null


def test_the_device_line_reads_the_threads_the_runs_trained_with(binary_report: Any) -> None:
    # The process writing the report may differ from those that trained (runs reused from another compare).
    from unetfamily.compare.report import _device

    results, _ = binary_report
    one = dataclasses.replace(results, runs=[dataclasses.replace(r, threads=1) for r in results.runs])
    assert _device(one) == "cpu; runs trained with 1 thread; costs measured with 2 threads"
    mixed = dataclasses.replace(results, runs=[dataclasses.replace(r, threads=1 + i % 2) for i, r in enumerate(results.runs)])
    assert _device(mixed) == "cpu; runs trained with 1/2 threads; costs measured with 2 threads"
    assert RunResult.from_dict(one.runs[0].to_dict()).threads == 1
