"""Which images a model trained on, so that evaluating it on them is never silent.

A split is a function of the data config: change its seed, the order of its ``fractions`` keys, a list file or the
files themselves, and the ``test`` split ``eval`` reads holds images the model trained on. Their scores are
optimistic, and nothing in the numbers shows it. A training checkpoint therefore records its training cases
(``extra["train_cases"]``): the content identity :func:`~unetfamily.data.check_dataset` computes of every training
sample (a digest of its image file's bytes, or of a stack slice's pixels), shortened to :data:`KEY_CHARS` hex
characters. ``eval`` computes the same of the split it scores and names the overlap: by content, so a training image
under another name or in another folder is found, and an external test set whose files share the training files'
names (``1.png``, ``2.png``) is not mistaken for them. Synthetic data and dataset types the check cannot read file
by file record nothing.
"""
from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["KEY_CHARS", "MAX_CASES", "check_train_cases", "recorded_cases", "trained_on", "warn_trained_on"]

log = logging.getLogger(__name__)

#: Hex characters kept of each digest: 64 bits, so two different images share a key with odds of about 1e-10 in a
#: comparison of 100 000 evaluation cases with 100 000 training cases.
KEY_CHARS = 16
#: Training cases a checkpoint records at most (17 bytes each in its header); a larger training set records none.
MAX_CASES = 1_000_000
_KEY = re.compile(rf"[0-9a-f]{{{KEY_CHARS}}}")


def recorded_cases(contents: Mapping[str, Sequence[tuple[str, str]]], split: str = "train",
                   earlier: Mapping[str, Any] | None = None) -> list[str] | None:
    """The sorted keys of ``split``'s content identities (``DatasetCheck.contents``), with those a resumed run's
    checkpoint (its ``extra``, ``earlier``) recorded: a model resumed on changed data has trained on both. None when
    the split's samples have no content identity (synthetic data) or they are more than :data:`MAX_CASES`."""
    if split not in contents:
        return None
    keys = {identity[:KEY_CHARS] for _, identity in contents[split]}
    before = (earlier or {}).get("train_cases")
    keys.update(before if isinstance(before, list) else [])
    return sorted(keys) if len(keys) <= MAX_CASES else None


def check_train_cases(extra: Mapping[str, Any]) -> None:
    """ValueError unless a checkpoint's ``extra["train_cases"]`` is absent or a list of keys (a damaged file)."""
    cases = extra.get("train_cases")
    if cases is None:
        return
    if not isinstance(cases, list) or len(cases) > MAX_CASES or not all(
            isinstance(c, str) and _KEY.fullmatch(c) for c in cases):
        raise ValueError(f"extra.train_cases must be a list of at most {MAX_CASES} keys of {KEY_CHARS} hex digits")


def trained_on(extra: Mapping[str, Any], samples: Sequence[tuple[str, str]] | None) -> list[str] | None:
    """The names of the evaluated ``samples`` ((name, content identity) pairs) that are among the checkpoint's
    training cases (its ``extra``), sorted; None when either side has none recorded (a checkpoint from before the
    record, synthetic data)."""
    cases = extra.get("train_cases")
    if not isinstance(cases, list) or samples is None:
        return None
    trained = set(cases)
    return sorted(name for name, identity in samples if identity[:KEY_CHARS] in trained)


def warn_trained_on(found: list[str] | None, total: int, split: str, option: str | None) -> None:
    """A WARNING when samples of ``split`` (``total`` of them) are among the model's training cases (``found``)."""
    if not found or split == "train":
        return
    where = f"the data of {option}" if option else "the run's data config, as read today"
    log.warning("%d of the %d cases of split %r (%s) are images the model trained on (the same pixels; e.g. %s): "
                "their scores are optimistic. If this is the run's own data, its split changed since training (its "
                "seed, the order of its fractions, a list file or the files); evaluate on the cases the run held "
                "out, or on data the model never saw", len(found), total, split, where,
                ", ".join(repr(n) for n in found[:3]))
