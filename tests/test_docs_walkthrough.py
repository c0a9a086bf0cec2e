"""What the docs say a workflow leaves behind, checked by doing it (tiny sizes).

tests/test_docs_commands.py checks that documented commands parse; these check what they do where a
walk through the docs found the program and the page disagreeing.
"""
from __future__ import annotations

from pathlib import Path

from unetfamily.config import config_from_dict
from unetfamily.engine.status import read_status
from unetfamily.engine.train import fit


def _tiny_config(out: Path, epochs: int) -> object:
    return config_from_dict({
        "model": {"name": "unet", "kwargs": {"channels": [4, 8]}},
        "data": {"type": "synthetic", "num_samples": {"train": 4, "val": 2, "test": 2}, "size": 32},
        "loader": {"batch_size": 4},
        "train": {"epochs": epochs, "progress": False, "loggers": []},
        "output_dir": str(out),
    })


def test_status_json_keeps_the_last_validation_scores_after_a_resume(tmp_path: Path) -> None:
    """docs/training.md, "The run folder": status.json holds "the last validation scores". A resume that has
    nothing left to train (or has not validated yet) used to rewrite it with ``"validation": {}``."""
    out = tmp_path / "run"
    fit(_tiny_config(out, epochs=1))
    first = read_status(out)
    assert first is not None and first["state"] == "finished" and "dice" in first["validation"]

    summary = fit(_tiny_config(out, epochs=1), resume=True)  # already at its last step: nothing to train
    assert summary.steps == first["step"]
    again = read_status(out)
    assert again is not None and again["state"] == "finished"
    assert again["validation"] == first["validation"]
