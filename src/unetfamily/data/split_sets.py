"""Several splits of one dataset config built together, and the one way every split is read.

:func:`build_splits` builds the splits a command needs (and those of its optional ones the config defines);
:func:`shared_info` is the :class:`~unetfamily.data.base.DatasetInfo` they share, or an error naming the splits that
read the data differently. The data check (:mod:`unetfamily.data.check`) and ``dataset convert`` use both.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from unetfamily.data.base import DatasetInfo, SegmentationDataset
from unetfamily.data.errors import DataConfigError, UnknownSplitError
from unetfamily.data.registry import build_dataset

__all__ = ["build_splits", "shared_info"]

log = logging.getLogger(__name__)


def build_splits(cfg: Mapping[str, Any], splits: Sequence[str], optional: Sequence[str],
                 given: Mapping[str, SegmentationDataset]) -> dict[str, SegmentationDataset]:
    """Build ``splits`` (an UnknownSplitError if one is not defined) and those of ``optional`` that are.

    ``given`` splits are used as they are. An UnknownSplitError when none is built.
    """
    built = {}
    for split in dict.fromkeys([*splits, *optional]):
        if split in given:
            built[split] = given[split]
            continue
        try:
            built[split] = build_dataset(cfg, split)
        except UnknownSplitError:
            if split in splits:
                raise
            log.debug("no %s split to check", split)
    if not built:
        raise UnknownSplitError(f"none of the splits {list(optional)} is defined; name the splits to check")
    return built


def shared_info(built: Mapping[str, SegmentationDataset]) -> DatasetInfo:
    """The DatasetInfo every split shares; a DataConfigError naming the splits that differ."""
    def reading(d: SegmentationDataset) -> dict[str, Any]:
        return {"in_channels": d.info.in_channels, "classes": d.info.classes, "ignore_index": d.info.ignore_index,
                "background": d.info.has_background, "resize": d.resize}

    (first, ds), *others = built.items()
    for name, other in others:
        a, b = reading(ds), reading(other)
        differ = [f"{key} {a[key]!r} vs {b[key]!r}" for key in a if a[key] != b[key]]
        if differ:
            raise DataConfigError(
                f"splits {first!r} and {name!r} are read differently ({'; '.join(differ)}); declare in_channels "
                "(and classes) so every split is read the same way"
            )
    return ds.info
