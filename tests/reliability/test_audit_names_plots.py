"""Hostile case and class names in the ``compare`` report's figures (audit of names in outputs).

matplotlib reads text between two ``$`` as mathtext: a case named ``$\\undefinedxx$`` (or any name with a
bad formula between dollars) raised ``ValueError`` from the figure code and the whole report was lost after
every run had trained. Names drawn in figures are plain text.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.compare.conftest import build_results
from unetfamily.compare.report import write_report
from unetfamily.compare.results import CompareResults

pytest.importorskip("matplotlib")

DOLLAR_NAMES = ["$\\undefinedxx$", "x$^$y", "$$", "cost $5 or $6", "\x1b[31mred\x1b[0m", "tab\there", "nl\nhere",
                "\u202eRTL\U0001F600", "e\u0301", "L" * 300]


def renamed(root: Path, names: list[str], task: str = "binary") -> CompareResults:
    """``build_results`` with its eval cases renamed to ``names`` (cycled), in the results and the artifacts."""
    data = build_results(root, task=task)
    old = [r["name"] for r in data["runs"][0]["per_image"]]
    new = {o: f"{names[i % len(names)]}{'' if i < len(names) else i}" for i, o in enumerate(old)}
    for run in data["runs"]:
        for row in run["per_image"]:
            row["name"] = new[row["name"]]
    for file in (root / "artifacts").glob("*.npz"):
        with np.load(file) as z:
            arrays = dict(z)
        arrays["names"] = np.array([new[str(n)] for n in arrays["names"]])
        np.savez_compressed(file, **arrays)
    return CompareResults.from_dict(data)


def test_case_names_with_dollars_are_drawn_as_plain_text(tmp_path: Path) -> None:
    results = renamed(tmp_path, DOLLAR_NAMES)
    paths = write_report(results, tmp_path)
    for name in ("samples.png", "failures.png"):
        assert f"plots/{name}" in paths
    assert "report.html" in paths
