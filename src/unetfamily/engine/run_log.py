"""A run's ``train.log``: everything the run logs, from the first choice its setup makes.

``train.log`` can only open once the run folder is known to be usable and the config accepted (a
refused run leaves no trace), but setup logs what it chose and why before that: the device, amp,
memory format, loader workers, the encoder's weights and freezing, what an epoch means.
:func:`held_setup_log` keeps those records in memory while the run is set up, and
:func:`open_train_log` writes them first, so the file holds the whole account.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from unetfamily.engine.run_folder import TrainingError
from unetfamily.text import PrintableFormatter

__all__ = ["LOG_FORMAT", "held_setup_log", "open_train_log", "stderr_handler"]

_LOGGER = "unetfamily"
#: Every log line the project writes: to train.log, and on standard error (the command line, Ray workers).
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _Held(logging.Handler):
    """Keeps every record it is given (INFO and above), in order."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _info_level(logger: logging.Logger) -> None:
    """A logger left at NOTSET reports INFO (what train.log records); a level set on purpose is kept."""
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)


@contextmanager
def held_setup_log() -> Iterator[list[logging.LogRecord]]:
    """The records the ``unetfamily`` loggers emit inside the block, for :func:`open_train_log`."""
    logger = logging.getLogger(_LOGGER)
    _info_level(logger)
    held = _Held()
    logger.addHandler(held)
    try:
        yield held.records
    finally:
        logger.removeHandler(held)


def open_train_log(run_dir: Path, earlier: Sequence[logging.LogRecord] = ()) -> logging.Handler:
    """A handler appending the ``unetfamily`` loggers' records to ``run_dir/train.log``, ``earlier`` ones first."""
    try:
        handler = logging.FileHandler(run_dir / "train.log")
    except OSError as exc:
        raise TrainingError(f"cannot write {run_dir / 'train.log'}: {exc.strerror or exc}; choose a writable output_dir") from exc
    handler.setFormatter(PrintableFormatter(LOG_FORMAT))
    for record in earlier:
        handler.handle(record)
    logger = logging.getLogger(_LOGGER)
    logger.addHandler(handler)
    _info_level(logger)
    return handler


def stderr_handler() -> logging.Handler:
    """A handler writing records to standard error as train.log has them, one record per line whatever names they
    hold (:class:`~unetfamily.text.PrintableFormatter`); for ``logging.basicConfig(handlers=[...])``."""
    handler = logging.StreamHandler()
    handler.setFormatter(PrintableFormatter(LOG_FORMAT))
    return handler
