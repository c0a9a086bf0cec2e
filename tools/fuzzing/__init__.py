"""Fuzz targets and the inputs hypothesis draws for them.

Shared by ``tests/reliability/test_fuzz.py`` (a few hundred cases per target, imported as
``tools.fuzzing``) and ``python tools/fuzz.py`` (long runs, which imports it as ``fuzzing``
from its own folder). A target feeds one drawn input to public entry points and returns the
outcome: ``"ok"`` or the name of the documented exception (a
:class:`~unetfamily.errors.UnetFamilyError`) that came out. Any other exception propagates, and
so does :class:`~.common.Hang` when one case runs longer than :data:`~.common.TIMEOUT_S`;
hypothesis then reports the smallest input it can find that does it.

Inputs are either random (bytes, JSON-like trees, text) or valid files and documents corrupted
by a few mutations (bit flips, truncation, inserted bytes, absurd 16/32-bit integers written
over header fields), so the decoders get past their first checks.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypothesis import strategies as st

from .checkpoints import checkpoint_bytes, checkpoint_meta_target, checkpoint_metadata, checkpoint_target
from .common import TIMEOUT_S, Hang
from .configs import (
    config_dict_target,
    config_dicts,
    config_file_target,
    config_files,
    overrides_cases,
    overrides_target,
)
from .readers import (
    image_cases,
    image_target,
    labelme_cases,
    labelme_target,
    mask_cases,
    mask_target,
    volume_cases,
    volume_target,
)

__all__ = ["TARGETS", "TIMEOUT_S", "Hang"]

#: name -> (strategy, target); the order is the order of the report.
TARGETS: dict[str, tuple[st.SearchStrategy, Callable[[Any], str]]] = {
    "read_image": (image_cases, image_target),
    "read_mask": (mask_cases, mask_target),
    "read_volume": (volume_cases, volume_target),
    "labelme": (labelme_cases, labelme_target),
    "config_from_dict": (config_dicts, config_dict_target),
    "load_config": (config_files, config_file_target),
    "apply_overrides": (overrides_cases, overrides_target),
    "checkpoint_bytes": (checkpoint_bytes(), checkpoint_target),
    "checkpoint_metadata": (checkpoint_metadata(), checkpoint_meta_target),
}
