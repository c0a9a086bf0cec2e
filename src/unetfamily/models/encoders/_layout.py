"""Helpers the backbones share: the ``stages`` argument of ``forward`` and renaming a weight layout.

A backbone's ``convert_state_dict`` renames the keys of the layouts it knows and leaves every
other key as it is, so that :func:`~unetfamily.models.encoders.weights.load_weights` reports it
as unexpected: an unknown key is never dropped here.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping

from torch import Tensor

from unetfamily.errors import ConfigError

__all__ = ["check_stages", "rename_state", "unknown_layout"]

#: How many keys of an unrecognised state an error message shows.
_SHOWN = 5


def check_stages(stages: object, available: int) -> int:
    """``stages`` (features wanted, None for all) checked against the ``available`` ones."""
    if stages is None:
        return available
    if isinstance(stages, bool) or not isinstance(stages, int) or not 0 <= stages <= available:
        raise ConfigError(f"stages={stages!r} must be a whole number from 0 to the {available} features this "
                          f"backbone builds")
    return stages


def rename_state(state: Mapping[str, Tensor], rename: Callable[[str], str], encoder: str) -> dict[str, Tensor]:
    """``state`` with each key replaced by ``rename(key)``; two keys landing on one name is a ConfigError."""
    out: dict[str, Tensor] = {}
    origin: dict[str, str] = {}
    for key, value in state.items():
        new = rename(key)
        if new in out:
            raise ConfigError(f"weights for encoder {encoder!r}: keys {origin[new]!r} and {key!r} both name "
                              f"{new!r}; the file mixes two layouts")
        out[new], origin[new] = value, key
    return out


def unknown_layout(encoder: str, reads: str, state: Mapping[str, Tensor]) -> ConfigError:
    """The error for a state dict in none of the layouts encoder ``encoder`` reads (``reads`` says which)."""
    keys = list(state)
    shown = ", ".join(keys[:_SHOWN]) + (f" and {len(keys) - _SHOWN} more" if len(keys) > _SHOWN else "")
    return ConfigError(f"weights for encoder {encoder!r} are in no layout it reads; it reads {reads}; "
                       f"the file's keys are: {shown or '(none)'}")
