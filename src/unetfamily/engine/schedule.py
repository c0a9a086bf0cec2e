"""The learning rate as a pure function of the step (nanoGPT's ``get_lr``): warm-up, then decay."""
from __future__ import annotations

import math

from unetfamily.errors import ConfigError

__all__ = ["lr_at"]


def lr_at(step: int, total_steps: int, base_lr: float, name: str, warmup_steps: int = 0,
          min_lr_ratio: float = 0.0, power: float = 0.9, time_used: float | None = None) -> float:
    """Learning rate at ``step`` (0-based): linear warm-up, then cosine / poly decay or constant.

    ``time_used``: the share of a time budget already spent (``schedule.follow_time``); after the
    warm-up the decay follows whichever is further along, the steps or the time, so a run that its
    time budget cuts before ``total_steps`` still ends with its learning rate decayed.
    """
    if warmup_steps > 0 and step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    if name == "constant":
        return base_lr
    progress = min(1.0, max((step - warmup_steps) / max(1, total_steps - warmup_steps), time_used or 0.0))
    floor = base_lr * min_lr_ratio
    if name == "cosine":
        return floor + (base_lr - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
    if name == "poly":
        return floor + (base_lr - floor) * (1.0 - progress) ** power
    raise ConfigError(f"schedule.name={name!r} is not valid; choose cosine, poly or constant")

