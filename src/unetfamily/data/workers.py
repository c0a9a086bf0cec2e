"""How many DataLoader worker processes a run uses: ``loader.num_workers``, with ``"auto"`` resolved.

``"auto"`` is decided once, when a run starts (:func:`resolve_num_workers`):

* on a CUDA device, the CPUs this process may run on (:func:`available_cpus`) are shared among the
  training processes on the node (``LOCAL_WORLD_SIZE`` under ``torchrun``); of each one's share one
  CPU stays with the training process and the rest make batches, at most :data:`MAX_AUTO_WORKERS`
  and at least 1 (pinned memory and ``non_blocking`` copies then overlap the transfer with the step);
* on any other device 0: the training step already uses every core (torch's threads), and worker
  processes would compete with it for them.

A whole number is used as given (0: batches are made in the training process).
"""
from __future__ import annotations

import os
from typing import Any

from unetfamily.errors import ConfigError, Range

__all__ = ["CPUS_ENV", "MAX_AUTO_WORKERS", "available_cpus", "resolve_num_workers"]

#: Most worker processes ``"auto"`` starts per training process: beyond it they mostly add memory.
MAX_AUTO_WORKERS = 8
#: When set (a whole number >= 1), the CPUs this process may use at most: ``unetfamily compare`` sets it in
#: each Ray task to its ``--cpus-per-run``, which Ray reserves without pinning the task to them.
CPUS_ENV = "UNETFAMILY_CPUS"


def available_cpus() -> int:
    """CPUs this process may run on: its CPU affinity (``os.sched_getaffinity``; ``os.cpu_count()`` where the
    platform has none), bounded by ``$UNETFAMILY_CPUS`` when that is set."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cpus = os.cpu_count() or 1
    limit = os.environ.get(CPUS_ENV, "").strip()
    if limit:
        try:
            bound = int(limit)
        except ValueError:
            bound = 0
        if bound < 1:
            raise ConfigError(f"${CPUS_ENV}={limit!r} must be a whole number >= 1 (the CPUs this process may use), "
                              "or unset")
        cpus = min(cpus, bound)
    return max(1, cpus)


def resolve_num_workers(value: Any, device: Any, local_world_size: int = 1,
                        what: str = "loader.num_workers") -> tuple[int, str]:
    """(worker processes, why) for ``loader.num_workers`` = ``value`` on ``device`` (a ``torch.device``).

    ``local_world_size``: training processes on this node (DDP ranks), which share its CPUs.
    ``what`` names the option in errors. ``"auto"`` as the module docstring says; a whole number >= 0
    is returned as given.
    """
    if value != "auto":
        Range(ge=0, integer=True)(what, value)
        return int(value), "set in the config"
    kind = getattr(device, "type", str(device))
    if kind != "cuda":
        return 0, (f"{kind}: batches are made in the training process, whose step already uses every core "
                   "(worker processes would compete with it)")
    cpus, ranks = available_cpus(), max(1, int(local_world_size))
    share = cpus // ranks
    workers = max(1, min(MAX_AUTO_WORKERS, share - 1))
    shared = f", {share} for each of the {ranks} training processes on this node" if ranks > 1 else ""
    return workers, (f"cuda: {cpus} CPU(s) available{shared}; one kept for the training process, the rest make "
                     f"batches (at most {MAX_AUTO_WORKERS}), in pinned memory")
