"""Whether the data keeps up with the training: what the loader can deliver against what the steps consume.

Per epoch the training loop (:func:`~unetfamily.engine.loop.train_one_epoch`) adds up, for the
steps it trained:

* training images/s: the images over the time of the training steps themselves (forward, backward,
  optimiser step; each step ends on a value read back from the device, so on CUDA it is the
  device's time, with no extra synchronisation);
* data images/s: what the loader can deliver, the images over the seconds spent making their
  batches where they were made (``data_seconds``, :func:`unetfamily.data.make_loader` with
  ``timed=True``), times the worker processes making them in parallel (at least 1);
* the share of the loop's wall time spent waiting for the next batch.

Rank 0 logs one line per epoch (``data 412 images/s (4 workers) vs training 180 images/s; waited 2%
of the time for data``) and gives the numbers to the loggers as ``data/images_per_s``,
``data/train_images_per_s`` and ``data/waited_fraction``. The first time the data is the slower
of the two, the line is a warning that says how to feed the steps faster. Measuring costs a few
``time.perf_counter()`` calls per step.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

__all__ = ["DataThroughput", "timed_batches"]


def timed_batches(batches: Iterable[Any]) -> Iterator[tuple[Any, float, float]]:
    """``(batch, seconds waited for it, time.perf_counter() when the wait began)`` for each batch of ``batches``."""
    iterator = iter(batches)
    while True:
        began = time.perf_counter()
        try:
            batch = next(iterator)
        except StopIteration:
            return
        yield batch, time.perf_counter() - began, began


@dataclass
class DataThroughput:
    """The data-vs-training numbers of one interval (an epoch), reported and cleared by :meth:`report`."""

    workers: int  # the loader's worker processes (loader.num_workers resolved)
    images: int = 0  # images trained on
    step_seconds: float = 0.0  # time of their training steps
    made_seconds: float = 0.0  # time spent making their batches, where they were made
    waited_seconds: float = 0.0  # time the loop waited for them
    began: float | None = None  # time.perf_counter() when the interval's first wait began
    warned: bool = False  # the data-bound warning was given (once per run)

    def add(self, images: int, step_seconds: float, made_seconds: float, waited_seconds: float, began: float) -> None:
        """One trained step: its batch's ``images``, the step's time, the batch's making and waiting times."""
        if self.began is None:
            self.began = began
        self.images += images
        self.step_seconds += step_seconds
        self.made_seconds += made_seconds
        self.waited_seconds += waited_seconds

    def rates(self) -> dict[str, float] | None:
        """``{data, training: images/s, waited: fraction of wall time}``; None before any step."""
        if self.began is None or self.images == 0:
            return None
        wall = max(time.perf_counter() - self.began, 1e-9)
        data = self.images / max(self.made_seconds, 1e-9) * max(1, self.workers)
        return {"data": data, "training": self.images / max(self.step_seconds, 1e-9),
                "waited": min(1.0, self.waited_seconds / wall)}

    def report(self, loggers: Any = None, step: int = 0, main: bool = True) -> dict[str, float] | None:
        """Log this interval's line (and give the numbers to ``loggers`` at ``step``), then start a new interval.

        ``main``: this process reports (DDP rank 0); the others only start a new interval.
        """
        rates = self.rates()
        self.images, self.step_seconds, self.made_seconds, self.waited_seconds, self.began = 0, 0.0, 0.0, 0.0, None
        if rates is None or not main:
            return rates
        line = (f"data {_rate(rates['data'])} images/s ({self.workers} worker{'' if self.workers == 1 else 's'}) vs "
                f"training {_rate(rates['training'])} images/s; waited {100 * rates['waited']:.0f}% of the time for data")
        if rates["data"] < rates["training"] and not self.warned:
            self.warned = True
            log.warning("%s: the data is slower than the training steps, which wait for it; raise loader.num_workers "
                        "(the CPUs allow it?) or cache the decoded data (the data config's cache: true)", line)
        else:
            log.info("%s", line)
        if loggers:
            loggers.scalars({"data/images_per_s": rates["data"], "data/train_images_per_s": rates["training"],
                             "data/waited_fraction": rates["waited"]}, step)
        return rates


def _rate(value: float) -> str:
    """Images per second with three significant digits at most and no exponent (412, 18.3, 1.42, 0.0714)."""
    return f"{value:.0f}" if value >= 100 else f"{float(f'{value:.3g}'):g}"
