"""File names, class names and messages on the terminal and in logs: one record per line, nothing the terminal obeys.

A file whose name holds an escape sequence (``\\x1b[2J``: clear the screen), a carriage return or a newline reached
the terminal as is through the ``error:`` line, ``out``/``err``, the log records (the command line's and each run's
``train.log``) and the failed row of compare's live table: it could clear the screen, recolour it, or forge a line
(a carriage return rewrites the start of the error; a newline starts a record of its own).
"""
from __future__ import annotations

import io
import logging
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from unetfamily.cli import main
from unetfamily.cli._common import err, out
from unetfamily.compare.live import RunRow
from unetfamily.engine.run_log import open_train_log
from unetfamily.text import PrintableFormatter

HOSTILE = "bad\x1b[2J\x1b]0;pwn\x07\rforged\n\u202eRTL"


def _unsafe(text: str) -> bool:
    return any(c in text for c in ("\x1b", "\x07", "\r", "\u202e"))


def test_the_error_line_names_a_hostile_file_escaped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    for i in range(3):
        name = f"{HOSTILE}.png" if i == 0 else f"s{i}.png"
        (tmp_path / "images" / name).write_bytes(b"not an image") if i == 0 else \
            Image.fromarray(np.full((16, 16), 9 * i, np.uint8)).save(tmp_path / "images" / name)
        Image.fromarray((np.arange(256).reshape(16, 16) % 2).astype(np.uint8)).save(tmp_path / "masks" / name)
    assert main(["dataset", "check", str(tmp_path)]) == 2
    text = capsys.readouterr().err
    assert not _unsafe(text)
    last = text.splitlines()[-1]
    assert last.startswith("error: ") and "bad\\x1b[2J" in last and "RTL" in last and "cannot read image" in last


def test_out_and_err_keep_their_own_layout_and_escape_the_rest(capsys: pytest.CaptureFixture[str]) -> None:
    out("name\tcount\nrow", HOSTILE)
    err("warning:", HOSTILE)
    captured = capsys.readouterr()
    assert captured.out.startswith("name\tcount\nrow bad\\x1b[2J")  # the program's tab and newline stay
    assert not _unsafe(captured.out) and not _unsafe(captured.err)
    assert captured.err.startswith("warning: bad\\x1b[2J")


def test_a_log_record_stays_one_line_and_its_traceback_keeps_its_lines() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(PrintableFormatter("%(levelname)s: %(message)s"))
    logger = logging.getLogger("unetfamily.test_terminal")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("skipped %s", HOSTILE)
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("failed on %s", "x\ny")
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("WARNING: skipped bad\\x1b[2J") and "\\n" in lines[0] and not _unsafe(lines[0])
    assert lines[1] == "ERROR: failed on x\\ny"
    assert lines[2] == "Traceback (most recent call last):" and lines[-1] == "ValueError: boom"


def test_train_log_writes_hostile_names_escaped(tmp_path: Path) -> None:
    handler = open_train_log(tmp_path)
    try:
        logging.getLogger("unetfamily.test_terminal").warning("cannot read %s", HOSTILE)
    finally:
        logging.getLogger("unetfamily").removeHandler(handler)
        handler.close()
    text = (tmp_path / "train.log").read_text()
    assert len(text.splitlines()) == 1 and not _unsafe(text) and "bad\\x1b[2J" in text


def test_a_failed_run_in_the_live_table_is_one_line(tmp_path: Path) -> None:
    row = RunRow("unet/seed0", tmp_path, total=10)
    row.finish("failed", f"{HOSTILE}: cannot read image")
    line = row.line(12)
    assert "\n" not in line and not _unsafe(line) and line.endswith("cannot read image")


@pytest.mark.skipif(sys.platform == "win32", reason="a file name with ESC and newline is POSIX-only")
def test_the_command_lines_log_handler_escapes_names(tmp_path: Path) -> None:
    import subprocess

    code = ("import logging, sys; from unetfamily.cli import main; rc = main(['models', 'unet_huang2020']); "
            f"logging.getLogger('unetfamily.t').warning('file %s', {HOSTILE!r}); sys.exit(rc)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if "unetfamily.t" in line]
    assert len(lines) == 1 and "file bad\\x1b[2J" in lines[0] and not _unsafe(done.stderr)
