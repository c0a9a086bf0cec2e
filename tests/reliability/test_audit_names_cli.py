"""Hostile class names in the command line's tables (``dataset info``; ``eval`` and ``dataset labelme`` print
names the same way, through ``unetfamily.text.printable``).

A class named ``line\\nbreak`` split the table's row in two, and one holding ESC sequences (``\\x1b[2J``: clear
the screen; ``\\x1b]0;...\\x07``: set the window title) or a right-to-left override reached the terminal as is.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from unetfamily.cli import main
from unetfamily.text import printable as shown

CLASSES = ["background", "line\nbreak\ttab", "\x1b[2J\x1b]0;pwn\x07clear", "\u202eRTL", "plain"]


def _folder(root: Path) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(4):
        mask = np.zeros((32, 32), np.uint8)
        mask[4:20, 4:20], mask[20:28, 20:28] = 1 + i % 4, 1 + (i + 1) % 4
        Image.fromarray(np.full((32, 32), 40 * i, np.uint8)).save(root / "images" / f"s{i}.png")
        Image.fromarray(mask).save(root / "masks" / f"s{i}.png")
    config = root / "data.yaml"
    config.write_text(yaml.safe_dump({"type": "folder", "root": ".", "classes": CLASSES, "mask_encoding": "index"}))
    return config


def test_dataset_info_prints_each_class_on_its_own_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dataset", "info", str(_folder(tmp_path)), "--split", "all"]) == 0
    text = capsys.readouterr().out
    assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text and "\t" not in text
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("class_fractions"))
    rows = lines[start + 1:start + 2 + len(CLASSES)]
    assert [row.split()[-1].replace(".", "").isdigit() for row in rows] == [True] * (len(CLASSES) + 1), rows
    assert rows[1].strip().startswith("line\\nbreak\\ttab")


@pytest.mark.parametrize("name", CLASSES + ["emoji\U0001F600 e\u0301", ""])
def test_shown_keeps_printable_text_and_escapes_the_rest(name: str) -> None:
    text = shown(name)
    assert text.isprintable() and (text == name) == name.isprintable()


def test_a_model_cards_names_read_as_typed(tmp_path: Path) -> None:
    # the card (README.md of a model folder) joined class names and training-data values raw: `a|b` added a
    # column to the Model table, a newline broke it, and <script> or [x](//host) went in as HTML and links
    import re

    from unetfamily import create_model

    hostile = ["background", "a|b", "<script>alert(1)</script>", "[x](//evil.example)", "line\nbreak"]
    model = create_model("unet", channels=[4, 8], in_channels=1, num_classes=len(hostile))
    card = {"classes": hostile, "training_data": {"name": "my|data <b>", "root": "/data/x\ny"}}
    text = (model.save_pretrained(tmp_path / "m", card=card) / "README.md").read_text()
    (row,) = [line for line in text.splitlines() if line.startswith("| classes |")]
    assert len(re.findall(r"(?<!\\)\|", row)) == 3, row  # | classes | ... |: the names add no column
    body = text.split("---", 2)[2]  # after the YAML metadata, which keeps the names as data
    assert "<script>" not in body and not re.search(r"(?<!\\)\]\(//evil", body) and "<b>" not in body
    assert "- root: /data/x\\ny" in body
