"""The training steps: :func:`train_one_epoch` and :func:`train_step`, and the :class:`StopFlag` signals set.

Reproducibility: the data order and every sample's augmentation depend only on the seed and the
epoch (:func:`unetfamily.data.make_loader`), and the global RNG (dropout) is reseeded from
``(seed, step)`` before each step. A resumed run therefore replays the interrupted epoch from the
checkpoint's step and reaches the same weights as an uninterrupted run (same device, same thread
count).

Non-finite values never enter the weights silently. A step is a *non-finite step* when its loss
is not finite, when its forward pass left a buffer (BatchNorm statistics) non-finite (huge
activations can overflow the batch variance while the normalised output, and so the loss, stay
finite), when its gradient norm is not finite, or when its optimiser update left a weight
non-finite (a huge learning rate can). Each check is one fused max-abs per device and rides on a sync the
step makes anyway, except the last, which adds one. Under ``train.nan_policy='stop'`` such a step
raises :class:`TrainingError` naming the step and the tensors; under ``'skip'`` it changes nothing
(weights, buffers and optimizer state are put back as they were), and once more than
``train.max_skipped_fraction`` of the steps so far (counted over at least
:data:`MIN_STEPS_FOR_FRACTION`) were skipped, the run fails: it is diverging, not meeting a rare
bad batch. ``'skip'`` keeps a copy of the weights and optimizer state during each step.

Under DDP every rank must take the same branch: a rank that skips its backward pass, or stops,
while the others go on leaves them waiting in DDP's gradient all-reduce. So "the loss or a buffer
is not finite", "a stop was requested" and "the update is not finite" are decided by all ranks
together.
"""
from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from unetfamily.data.loader import DATA_SECONDS
from unetfamily.engine.run_setup import TrainingError, TrainRun
from unetfamily.engine.schedule import lr_at
from unetfamily.engine.throughput import timed_batches
from unetfamily.models import final_output
from unetfamily.overlay import overlay_rows

log = logging.getLogger(__name__)

__all__ = ["StopFlag", "StopRequested", "StepResult", "train_one_epoch", "train_step", "MIN_STEPS_FOR_FRACTION"]

#: train.max_skipped_fraction is a fraction of at least this many steps: in a run's first steps a
#: few skipped steps are allowed (0.1 of 20 = 2), not a fraction of almost nothing.
MIN_STEPS_FOR_FRACTION = 20


class StopRequested(Exception):
    """Raised after the step during which a stop was requested (on any rank)."""


@dataclass
class StopFlag:
    """Set by SIGINT/SIGTERM while :meth:`catching_signals` is active; the run stops after the current step."""

    requested: bool = False

    def request(self, *_: object) -> None:
        self.requested = True

    @contextlib.contextmanager
    def catching_signals(self) -> Iterator[StopFlag]:
        """SIGINT and SIGTERM set this flag instead of ending the process; the old handlers come back after."""
        if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
            yield self
            return
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        for sig in previous:
            signal.signal(sig, self.request)
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


@dataclass
class StepResult:
    """What one training step reports: its loss terms, learning rate, and whether the ranks agreed to stop."""

    terms: dict[str, torch.Tensor]
    lr: float
    stopping: bool
    out_of_time: bool = False  # the ranks agree that train.max_seconds ran out during this step
    seconds: float = 0.0  # the step's time, forward to optimiser update (ends on a value read from the device)


def train_one_epoch(run: TrainRun, epoch: int, stop: StopFlag, progress: Any = None) -> bool:
    """Train the steps of ``epoch`` from ``run.state.step`` on, up to ``run.total_steps``.

    Batches of the epoch that a resumed run had already trained on are drawn again and dropped,
    so the data order stays that of an uninterrupted run. ``progress`` (a tqdm bar, a
    :class:`~unetfamily.engine.status.RunProgress`, or None) counts the steps.
    Returns True when ``run.deadline`` passed and the epoch ended early (after the step during which
    it passed, on every rank alike), so a time budget holds within one step, not one epoch.
    Raises :class:`StopRequested` after the step during which ``stop`` was set. At the epoch's end
    rank 0 logs the data's images/s against the training's (:mod:`~unetfamily.engine.throughput`).
    """
    run.train_loader.sampler.set_epoch(epoch)
    run.train_model.train()
    scaler = _loss_scaler(run)
    skip, late = run.state.step - epoch * run.steps_per_epoch, False
    for index, (batch, waited, began) in enumerate(timed_batches(run.train_loader)):
        made = batch.pop(DATA_SECONDS, 0.0)  # seconds spent making the batch (a timed loader's)
        if index < skip:
            continue
        if run.state.step >= run.total_steps:
            break
        result = train_step(run, batch, scaler, stop)
        run.throughput.add(len(batch["image"]), result.seconds, made, waited, began)
        if progress is not None:
            progress.update(1)
            if getattr(progress, "shows_postfix", True):  # reading the loss waits for the device: only for a bar
                progress.set_postfix(loss=f"{float(result.terms['total']):.4f}", lr=f"{result.lr:.2e}")
        if _checkpoint_due(run):
            run.save(run.last_path, run.state.step // run.steps_per_epoch)
        # Under DDP only the agreed flag counts, so that every rank stops after the same step.
        if result.stopping or (stop.requested and not dist.is_initialized()):
            raise StopRequested
        if result.out_of_time:
            late = True
            break
    run.throughput.report(run.loggers, run.state.step, main=run.dist.main)
    return late


def _loss_scaler(run: TrainRun) -> Any:
    """fp16: the run's one GradScaler, resumed at the scale its checkpoint kept (PyTorch's AMP recipe); else None."""
    if run.amp == "fp16" and run.scaler is None:
        run.scaler = torch.amp.GradScaler(run.device.type)
        if run.state.loss_scale and run.scaler.is_enabled():
            run.scaler.load_state_dict(run.state.loss_scale)
    return run.scaler


def _checkpoint_due(run: TrainRun) -> bool:
    # Not at the end of an epoch: `last` is written there after validation, and one written
    # before it would let a run killed during validation resume without that epoch's metrics.
    step, every = run.state.step, run.cfg.train.checkpoint_every
    return bool(every) and step % every == 0 and step % run.steps_per_epoch != 0 and step < run.total_steps


def train_step(run: TrainRun, batch: dict[str, Any], scaler: Any, stop: StopFlag) -> StepResult:
    """One optimiser step on ``batch`` (``image`` (N, C, H, W), ``mask`` (N, H, W)); advances ``run.state``.

    A non-finite step (see the module docstring) either raises :class:`TrainingError`
    (``nan_policy='stop'``) or changes nothing, BatchNorm statistics and optimizer state included
    (``'skip'``).
    """
    cfg, step = run.cfg, run.state.step
    torch.manual_seed(cfg.train.seed * 1_000_003 + step)  # dropout replays identically on resume
    s = cfg.schedule
    lr = lr_at(step, run.total_steps, cfg.optim.lr, s.name, s.warmup_steps, s.min_lr_ratio, s.power,
               run.time_used if s.follow_time else None)
    for group in run.optimizer.param_groups:  # the encoder's group: x train.encoder_lr_mult, 0 while frozen
        group["lr"] = lr * run.encoder.lr_factor(group, step)
    run.encoder.before_forward(step)  # its norm layers in eval mode while frozen
    memory_format = torch.channels_last if run.channels_last else torch.contiguous_format
    images = batch["image"].to(run.device, non_blocking=True).contiguous(memory_format=memory_format)
    masks = batch["mask"].to(run.device, non_blocking=True)
    start = time.perf_counter()
    run.optimizer.zero_grad(set_to_none=True)  # before the forward pass: the last step's gradients are not held
    buffers = dict(run.model.named_buffers())  # BatchNorm statistics: a skipped step must not change them either
    saved_buffers = [b.clone() for b in buffers.values()]
    undo = _Undo(run.optimizer) if cfg.train.nan_policy == "skip" else None
    with _autocast(run.device, run.amp):
        output = run.train_model(images)
    output = _to_float(output)
    loss, terms = run.criterion(output, masks)
    # One sync for four questions; a stop requested now ends the run after this step.
    late = run.deadline is not None and time.perf_counter() >= run.deadline
    *flags, run.time_used = _agree(
        [~torch.isfinite(loss).all(), _nonfinite_flag(buffers.values(), loss.device), stop.requested, late,
         _time_used(run)], loss.device)
    bad_loss, bad_buffers, stopping, late = (bool(f) for f in flags)
    skipped = bad_loss or bad_buffers
    if skipped:
        _report_forward(step, terms, buffers if bad_buffers and not bad_loss else None, cfg.train.nan_policy)
    if not skipped:
        skipped = _apply_gradients(run, loss, terms, scaler, step) or _check_update(run, step, undo, terms)
    if skipped:
        with torch.no_grad():
            for buffer, saved in zip(buffers.values(), saved_buffers):
                buffer.copy_(saved)
    run.state.step = step + 1
    if skipped:
        _count_skipped(run, step)
    seconds = time.perf_counter() - start  # the update check above read a value back: the device is done
    if run.loggers and step % max(1, cfg.train.log_every) == 0:
        _log_step(run, step, terms, lr, images.shape[0] / seconds)
        if cfg.train.image_every and step % cfg.train.image_every == 0:
            run.loggers.image("train/overlay", _overlay_grid(images, masks, output, run.info.has_background), step)
    return StepResult(terms, lr, stopping, late, seconds)


def _apply_gradients(run: TrainRun, loss: torch.Tensor, terms: dict[str, torch.Tensor], scaler: Any, step: int) -> bool:
    """Backward pass, clipping and optimiser step; True when the step is skipped for a non-finite gradient norm."""
    (scaler.scale(loss) if scaler else loss).backward()
    run.encoder.after_backward(step)  # while frozen: no gradient, so no clipping share and no update
    if scaler:
        scaler.unscale_(run.optimizer)
    params = [p for p in run.train_model.parameters() if p.grad is not None]
    norm = nn.utils.get_total_norm([p.grad for p in params])
    if not torch.isfinite(norm) and scaler is None:  # the fp16 scaler skips such steps itself
        bad = _bad_terms({**terms, "grad_norm": norm})
        return _nonfinite(step, "gradient norm", f"non-finite terms: {', '.join(bad)}" if bad else
                          "non-finite on another rank", terms, run.cfg.train.nan_policy)
    _clip(params, norm, run.cfg.train.grad_clip)
    if scaler:
        scale = scaler.get_scale()
        scaler.step(run.optimizer)
        scaler.update()
        if scaler.get_scale() < scale:  # the scaler skipped the update: inf or NaN in the scaled gradients
            log.info("step %d: fp16 gradients overflowed, step skipped; loss scale %g -> %g", step, scale,
                     scaler.get_scale())
    else:
        run.optimizer.step()
    return False


def _clip(params: list[nn.Parameter], norm: torch.Tensor, max_norm: float | None) -> None:
    """Scale the gradients to ``max_norm`` as ``clip_grad_norm_`` does, but only when they exceed it.

    Bit-identical to ``clip_grad_norm_``: its factor is clamped to 1, and a product with 1.0 changes
    nothing. The test reads a value the finiteness check has already waited for, and it saves a pass
    over every gradient in the usual step where nothing is clipped.
    """
    if max_norm is None or not params:
        return
    if bool(max_norm / (norm + 1e-6) < 1.0):
        nn.utils.clip_grads_with_norm_(params, max_norm, norm)


class _Undo:
    """The weights and optimizer state before a step, put back when its update proves non-finite ('skip')."""

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer = optimizer
        self.params = [p for group in optimizer.param_groups for p in group["params"]]
        self.weights = [p.detach().clone() for p in self.params]
        self.state = {p: {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in optimizer.state[p].items()}
                      for p in self.params if p in optimizer.state}

    @torch.no_grad()
    def restore(self) -> None:
        for p, weight in zip(self.params, self.weights):
            p.copy_(weight)
        for p in self.params:  # state the step created (the optimiser's first step) goes too
            if p in self.state:
                self.optimizer.state[p] = self.state[p]
            else:
                self.optimizer.state.pop(p, None)


def _check_update(run: TrainRun, step: int, undo: _Undo | None, terms: dict[str, torch.Tensor]) -> bool:
    """After the update: True (and the step undone) when it left a weight non-finite.

    The weights only: with finite gradients the optimizer state stays finite (AdamW's moments are
    running means of finite values, SGD's momentum a bounded sum), and a checkpoint refuses any
    non-finite optimizer value anyway (:func:`~unetfamily.engine.checkpoint.save_checkpoint`).
    """
    weights = [p for group in run.optimizer.param_groups for p in group["params"]]
    device = weights[0].device
    (bad,) = _any_rank([_nonfinite_weights(weights, device)], device)
    if not bad:
        return False
    names = [n for n, p in run.model.named_parameters() if not bool(torch.isfinite(p).all())]
    where = f"non-finite: {_names(names)}" if names else "non-finite on another rank"
    _nonfinite(step, "weights after the optimiser update", where, terms, run.cfg.train.nan_policy,
               stopping="the loss and gradients were finite; stopping, the weights in memory are not saved and "
                        "the checkpoints on disk hold finite ones")
    if undo is not None:
        undo.restore()
    return True


def _report_forward(step: int, terms: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor] | None,
                    policy: str) -> None:
    """Report a non-finite loss, or (``buffers`` given) buffers the forward pass left non-finite."""
    if buffers is None:
        bad = _bad_terms(terms)
        _nonfinite(step, "loss", f"non-finite terms: {', '.join(bad)}" if bad else "non-finite on another rank",
                   terms, policy)
        return
    names = [n for n, b in buffers.items() if b.is_floating_point() and not bool(torch.isfinite(b).all())]
    where = f"non-finite after the forward pass: {_names(names)}" if names else "non-finite on another rank"
    _nonfinite(step, "buffers (BatchNorm statistics)", where, terms, policy)


def _count_skipped(run: TrainRun, step: int) -> None:
    """Count a skipped step; TrainingError once more than train.max_skipped_fraction of the steps were skipped."""
    state, limit = run.state, run.cfg.train.max_skipped_fraction
    state.skipped_steps += 1
    if state.skipped_steps > limit * max(state.step, MIN_STEPS_FOR_FRACTION):
        raise TrainingError(
            f"step {step}: {state.skipped_steps} of the {state.step} steps so far were skipped for non-finite "
            f"values, more than train.max_skipped_fraction={limit:g} of them (counted over at least "
            f"{MIN_STEPS_FOR_FRACTION} steps): the run is diverging. Lower optim.lr, set train.grad_clip or check "
            "the data; the checkpoints on disk hold the last finite state"
        )


def _autocast(device: torch.device, amp: str) -> contextlib.AbstractContextManager:
    if amp == "none":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


def _to_float(output: Any) -> Any:
    if isinstance(output, torch.Tensor):
        return output.float()
    return type(output)(_to_float(o) for o in output)


def _nonfinite_flag(tensors: Iterable[torch.Tensor], device: torch.device) -> torch.Tensor:
    """A bool tensor on ``device``: any floating-point tensor holds a NaN or an inf (one fused max-abs per device)."""
    groups: dict[torch.device, list[torch.Tensor]] = {}
    for t in tensors:
        if t.is_floating_point() and t.numel():
            groups.setdefault(t.device, []).append(t.detach())
    flag = torch.zeros((), dtype=torch.bool, device=device)
    for group in groups.values():
        peaks = torch._foreach_norm(group, float("inf"))  # NaN propagates; finite values never overflow
        flag = flag | ~torch.isfinite(torch.stack([p.float() for p in peaks])).all().to(device)
    return flag


def _nonfinite_weights(weights: list[torch.Tensor], device: torch.device) -> torch.Tensor:
    """:func:`_nonfinite_flag` for all the weights, cheaply: their 2-norms first, the max-abs only on alarm.

    On CPU a foreach 2-norm is about ten times faster than the max-abs; it is finite exactly when
    every value is, unless a sum of squares leaves the float range (values beyond ~1e19), so a
    non-finite norm is confirmed by the exact check before anything is reported.
    """
    norms = torch._foreach_norm([w.detach() for w in weights if w.is_floating_point() and w.numel()], 2.0)
    if not norms or bool(torch.isfinite(torch.stack([n.float().to(device) for n in norms])).all()):
        return torch.zeros((), dtype=torch.bool, device=device)
    return _nonfinite_flag(weights, device)


def _agree(values: list[torch.Tensor | bool | float], device: torch.device) -> list[float]:
    """Each value's maximum over all ranks, in one all-reduce and one sync: every rank takes the same branch."""
    stacked = torch.stack([torch.as_tensor(v, device=device).float().reshape(()) for v in values])
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(stacked, op=dist.ReduceOp.MAX)
    return stacked.tolist()


def _any_rank(flags: list[torch.Tensor | bool], device: torch.device) -> list[bool]:
    """Each flag OR-ed over all ranks (:func:`_agree`)."""
    return [bool(v) for v in _agree(list(flags), device)]


def _time_used(run: TrainRun) -> float:
    """The share of ``train.max_seconds`` spent so far (0 without a time budget); agreed over ranks by the caller."""
    limit = run.cfg.train.max_seconds
    if run.deadline is None or not limit:
        return 0.0
    return min(1.0, max(0.0, 1.0 - (run.deadline - time.perf_counter()) / limit))


def _bad_terms(terms: dict[str, torch.Tensor]) -> list[str]:
    return [k for k, v in terms.items() if not torch.isfinite(v).all()]


def _names(names: list[str]) -> str:
    return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")


def _nonfinite(step: int, what: str, where: str, terms: dict[str, torch.Tensor], policy: str,
               stopping: str = "stopping before the weights are changed") -> bool:
    """Report a non-finite ``what``: raise under ``policy='stop'``, else log it and return True (skip the step)."""
    detail = ", ".join(f"{k}={float(v):.4g}" for k, v in terms.items())
    msg = f"step {step}: non-finite {what} ({where}; {detail})"
    if policy == "stop":
        raise TrainingError(f"{msg}; {stopping} (train.nan_policy='skip' skips such steps)")
    log.warning("%s; step skipped (train.nan_policy='skip')", msg)
    return True


def _log_step(run: TrainRun, step: int, terms: dict[str, torch.Tensor], lr: float, images_per_s: float) -> None:
    scalars = {f"train/loss/{name}": float(value) for name, value in terms.items()}
    run.loggers.scalars({**scalars, "train/lr": lr, "train/images_per_s": images_per_s}, step)


def _overlay_grid(images: torch.Tensor, masks: torch.Tensor, output: Any, background: bool, n: int = 4) -> torch.Tensor:
    """(3, n*H, 3*W) uint8 for the loggers: per sample the input, truth and prediction overlays (overlay_rows)."""
    logits = final_output(output)[:n].detach().float()
    preds = (logits.sigmoid()[:, 0] > 0.5).long() if logits.shape[1] == 1 else logits.argmax(1)
    images, masks = images[:n].detach().float().cpu().numpy(), masks[:n].cpu().numpy()
    return torch.from_numpy(overlay_rows(images, masks, preds.cpu().numpy(), background)).permute(2, 0, 1)
