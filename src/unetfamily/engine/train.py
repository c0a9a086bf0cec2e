"""Training: ``fit(config)`` and the ``unetfamily train`` command.

A handful of flat functions (torchvision's reference scripts, nanoGPT): :func:`lr_at` is the
learning rate as a pure function of the step, :func:`train_one_epoch` runs the steps of one
epoch, :func:`fit` wires data, model, loss, optimiser, checkpoints and logging together.

Reproducibility and resume: the data order and every sample's augmentation depend only on the
seed and the epoch (:func:`unetfamily.data.make_loader`), and the global RNG (dropout) is reseeded
from ``(seed, step)`` before each step. A run resumed from ``checkpoints/last.safetensors``
therefore replays the interrupted epoch from the checkpoint's step and reaches the same weights
as an uninterrupted run (same device, same thread count).

Distributed: under ``torchrun`` (``WORLD_SIZE > 1``) the model is wrapped in
DistributedDataParallel (gloo on CPU, nccl on CUDA, SyncBatchNorm only on CUDA), each rank reads
its shard, metrics synchronise through torchmetrics, and only rank 0 logs and writes files.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import yaml
from torch import nn

from unetfamily.config import Config, ConfigError, config_from_dict, load_config
from unetfamily.engine.checkpoint import atomic_write_bytes, load_checkpoint, restore_rng, save_checkpoint
from unetfamily.engine.evaluate import evaluate
from unetfamily.errors import UnetFamilyError
from unetfamily.models import SegmentationModel, create_model, final_output

log = logging.getLogger(__name__)

__all__ = ["fit", "lr_at", "train_one_epoch", "TrainingError", "add_parser"]

#: Exit code of a run stopped by SIGINT/SIGTERM after saving ``last`` (resume with --resume).
EXIT_INTERRUPTED = 130


class TrainingError(UnetFamilyError, RuntimeError):
    """Training cannot go on (non-finite loss under nan_policy='stop', ...)."""


class _StopRequested(Exception):
    pass


def lr_at(step: int, total_steps: int, base_lr: float, name: str, warmup_steps: int = 0,
          min_lr_ratio: float = 0.0, power: float = 0.9) -> float:
    """Learning rate at ``step`` (0-based): linear warm-up, then cosine / poly decay or constant."""
    if warmup_steps > 0 and step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    if name == "constant":
        return base_lr
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    floor = base_lr * min_lr_ratio
    if name == "cosine":
        return floor + (base_lr - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
    if name == "poly":
        return floor + (base_lr - floor) * (1.0 - progress) ** power
    raise ConfigError(f"schedule.name={name!r} is not valid; choose cosine, poly or constant")


@dataclass
class _Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def _setup_distributed(device_name: str) -> tuple[_Dist, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if device_name == "auto":
        device_name = "cuda" if torch.cuda.is_available() else "cpu"
    if world <= 1:
        return _Dist(), torch.device(device_name)
    info = _Dist(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    device = torch.device(device_name)
    if device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return info, device


def _build_optimizer(model: nn.Module, cfg: Config) -> torch.optim.Optimizer:
    o = cfg.optim
    if o.name == "sgd":
        return torch.optim.SGD(model.parameters(), lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)
    return torch.optim.AdamW(model.parameters(), lr=o.lr, weight_decay=o.weight_decay)


def _autocast(device: torch.device, amp: str) -> contextlib.AbstractContextManager:
    if amp == "none":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


def _agree(loss: torch.Tensor, stop_requested: bool) -> tuple[bool, bool]:
    """(loss finite on every rank, a stop requested on any rank), decided by all ranks together.

    Under DDP every rank must take the same branch: a rank that skips its backward pass, or
    stops, while the others go on leaves them waiting in DDP's gradient all-reduce.
    """
    flags = torch.stack([~torch.isfinite(loss).all(), torch.tensor(stop_requested, device=loss.device)]).float()
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(flags, op=dist.ReduceOp.MAX)
    nonfinite, stopping = flags.tolist()
    return not nonfinite, bool(stopping)


def _nonfinite(step: int, what: str, terms: dict[str, torch.Tensor], policy: str) -> bool:
    bad = [k for k, v in terms.items() if not torch.isfinite(v).all()]
    detail = ", ".join(f"{k}={float(v):.4g}" for k, v in terms.items())
    where = f"non-finite terms: {', '.join(bad)}" if bad else "non-finite on another rank"
    msg = f"step {step}: non-finite {what} ({where}; {detail})"
    if policy == "stop":
        raise TrainingError(msg + "; stopping before the weights are changed (train.nan_policy='skip' skips such steps)")
    log.warning("%s; step skipped (train.nan_policy='skip')", msg)
    return True


def train_one_epoch(
    model: nn.Module, criterion: nn.Module, optimizer: torch.optim.Optimizer, loader: Any, *,
    cfg: Config, state: dict[str, Any], total_steps: int, device: torch.device, skip: int = 0,
    writer: Any = None, stop: dict[str, bool] | None = None, on_step: Any = None,
) -> None:
    """Run the steps of one epoch, updating ``state["step"]``; the first ``skip`` batches are replayed unused."""
    model.train()
    scaler = torch.amp.GradScaler("cuda") if cfg.train.amp == "fp16" else None
    memory_format = torch.channels_last if cfg.train.channels_last else torch.contiguous_format
    bar = state.get("bar")
    buffers = list(model.buffers())  # BatchNorm statistics: a skipped step must not change them either
    for index, batch in enumerate(loader):
        if index < skip:
            continue
        step = state["step"]
        if step >= total_steps:
            break
        torch.manual_seed(cfg.train.seed * 1_000_003 + step)
        lr = lr_at(step, total_steps, cfg.optim.lr, cfg.schedule.name, cfg.schedule.warmup_steps,
                   cfg.schedule.min_lr_ratio, cfg.schedule.power)
        for group in optimizer.param_groups:
            group["lr"] = lr
        images = batch["image"].to(device, non_blocking=True).contiguous(memory_format=memory_format)
        masks = batch["mask"].to(device, non_blocking=True)
        start = time.perf_counter()
        saved_buffers = [b.clone() for b in buffers]
        with _autocast(device, cfg.train.amp):
            output = model(images)
        output = _to_float(output)
        loss, terms = criterion(output, masks)
        finite, stopping = _agree(loss, bool(stop and stop.get("now")))  # stop after this step if so
        skipped = not finite and _nonfinite(step, "loss", terms, cfg.train.nan_policy)
        optimizer.zero_grad(set_to_none=True)
        if not skipped:
            (scaler.scale(loss) if scaler else loss).backward()
            if scaler:
                scaler.unscale_(optimizer)
            norm = nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip or float("inf"))
            if not torch.isfinite(norm) and scaler is None:
                skipped = _nonfinite(step, "gradient norm", {**terms, "grad_norm": norm}, cfg.train.nan_policy)
            if not skipped:
                if scaler:
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    optimizer.step()
        if skipped:
            with torch.no_grad():
                for buffer, saved in zip(buffers, saved_buffers):
                    buffer.copy_(saved)
        state["step"] = step + 1
        state["skipped_steps"] = state.get("skipped_steps", 0) + int(skipped)
        if writer is not None and (step % max(1, cfg.train.log_every) == 0):
            for name, value in terms.items():
                writer.add_scalar(f"train/loss/{name}", float(value), step)
            writer.add_scalar("train/lr", lr, step)
            writer.add_scalar("train/images_per_s", images.shape[0] / (time.perf_counter() - start), step)
            if cfg.train.image_every and step % cfg.train.image_every == 0:
                writer.add_image("train/overlay", _overlay_grid(images, masks, output), step)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{float(terms['total']):.4f}", lr=f"{lr:.2e}")
        if on_step is not None:
            on_step(state)
        # Under DDP only the agreed flag counts, so that every rank stops after the same step.
        if stopping or (stop is not None and stop.get("now") and not dist.is_initialized()):
            raise _StopRequested


def _to_float(output: Any) -> Any:
    if isinstance(output, torch.Tensor):
        return output.float()
    return type(output)(_to_float(o) for o in output)


def _overlay_grid(images: torch.Tensor, masks: torch.Tensor, output: Any, n: int = 4) -> torch.Tensor:
    """(3, H, n*W... ) image grid: input, ground truth and prediction overlays side by side."""
    logits = final_output(output)[:n].detach().float()
    pred = (logits.sigmoid()[:, 0] > 0.5).long() if logits.shape[1] == 1 else logits.argmax(1)
    img = images[:n].detach().float()
    img = img.expand(-1, 3, -1, -1) if img.shape[1] == 1 else img[:, :3]
    palette = torch.tensor([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [1, 0, 1], [0, 1, 1]], device=img.device)

    def paint(labels: torch.Tensor) -> torch.Tensor:
        colour = palette[labels.clamp(0, len(palette) - 1) % len(palette)].permute(0, 3, 1, 2).float()
        keep = (labels > 0) & (labels != 255)
        return torch.where(keep[:, None], 0.5 * img + 0.5 * colour, img)

    rows = torch.cat([img, paint(masks[:n]), paint(pred)], dim=3)  # (n, 3, H, 3W)
    return rows.permute(1, 0, 2, 3).reshape(3, -1, rows.shape[-1]).clamp(0, 1).cpu()


def _resolve(cfg: Config, info: Any) -> Config:
    """Fill in what the data decides (in_channels, num_classes) so the saved config rebuilds the model."""
    kwargs = dict(cfg.model.kwargs)
    kwargs.setdefault("in_channels", info.in_channels)
    kwargs.setdefault("num_classes", info.num_model_outputs)
    cfg.model.kwargs = kwargs
    return cfg


def _writer(run_dir: Path, enabled: bool) -> Any:
    if not enabled:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        log.warning("tensorboard is not installed (pip install 'unetfamily[train]'); no TensorBoard logs")
        return None
    return SummaryWriter(str(run_dir / "tensorboard"))


def _progress(total: int, initial: int, enabled: bool) -> Any:
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, leave=False)


def _file_log(run_dir: Path) -> logging.Handler:
    handler = logging.FileHandler(run_dir / "train.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger("unetfamily").addHandler(handler)
    if logging.getLogger("unetfamily").level == logging.NOTSET:
        logging.getLogger("unetfamily").setLevel(logging.INFO)
    return handler


def _metric_value(metrics: dict[str, float], name: str) -> float:
    if name not in metrics:
        raise ConfigError(f"train.monitor={name!r} is not a validation metric; choose one of {', '.join(sorted(metrics))}")
    return metrics[name]


def fit(config: Config | dict | str | Path, resume: bool = False) -> dict[str, Any]:
    """Train a model as ``config`` says; returns a summary (run dir, steps, best and last metrics).

    ``config`` is a :class:`~unetfamily.config.Config`, a mapping or a YAML/TOML path. With
    ``resume`` the run continues from ``<output_dir>/checkpoints/last.safetensors``.
    """
    from unetfamily.data import build_dataset, make_loader
    from unetfamily.losses import SegmentationCriterion

    cfg = config if isinstance(config, Config) else (config_from_dict(dict(config)) if isinstance(config, dict) else load_config(config))
    dist_info, device = _setup_distributed(cfg.train.device)
    if cfg.train.amp == "fp16" and device.type != "cuda":
        raise ConfigError("train.amp='fp16' needs CUDA (loss scaling); use 'bf16' on CPU")
    if not dist_info.main:  # rank-0-only logging: other ranks report only problems
        logging.getLogger("unetfamily").setLevel(logging.WARNING)
    run_dir = Path(cfg.output_dir)
    last_path, best_path = run_dir / "checkpoints" / "last.safetensors", run_dir / "checkpoints" / "best.safetensors"
    resumed = load_checkpoint(last_path) if resume else None
    if resumed is not None:
        cfg = config_from_dict(resumed.config)  # the interrupted run's resolved config wins
        log.info("resuming %s from step %d", run_dir, resumed.step)

    train_set = build_dataset(cfg.data, "train")
    val_set = build_dataset(cfg.data, "val")
    info = train_set.info
    cfg = _resolve(cfg, info)
    handler = None
    if dist_info.main:
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(run_dir / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False).encode())
            handler = _file_log(run_dir)
        except OSError as exc:
            raise TrainingError(
                f"cannot write the run folder {run_dir}: {exc.strerror or exc}; choose a writable output_dir "
                "or free disk space"
            ) from exc
    torch.manual_seed(cfg.train.seed)
    model = create_model(cfg.model.name, **cfg.model.kwargs)
    if resumed is not None:
        model.load_state_dict(resumed.model_state)
    model.to(device)
    if cfg.train.channels_last:
        model.to(memory_format=torch.channels_last)
    if isinstance(model, SegmentationModel):
        model.set_memory_saving(cfg.train.memory_saving)
    train_model: nn.Module = model
    if dist_info.world_size > 1:
        if device.type == "cuda":
            train_model = nn.SyncBatchNorm.convert_sync_batchnorm(train_model)
        train_model = nn.parallel.DistributedDataParallel(
            train_model, device_ids=[device.index] if device.type == "cuda" else None
        )
    if cfg.train.compile:
        train_model = torch.compile(train_model)
    optimizer = _build_optimizer(model, cfg)
    if resumed is not None and resumed.optimizer_state is not None:
        optimizer.load_state_dict(resumed.optimizer_state)
        restore_rng(resumed.rng, resumed.rng.get("torch"))
    criterion = SegmentationCriterion(
        cfg.loss.name, num_classes=info.num_classes, ds_weights=cfg.loss.ds_weights, cgm_weight=cfg.loss.cgm_weight,
        ignore_index=info.ignore_index, **cfg.loss.kwargs,
    )
    loader_kw = dict(num_workers=cfg.loader.num_workers, seed=cfg.train.seed, rank=dist_info.rank,
                     world_size=dist_info.world_size)
    train_loader = make_loader(train_set, cfg.loader.batch_size, shuffle=True, drop_last=len(train_set) > cfg.loader.batch_size, **loader_kw)
    val_loader = make_loader(val_set, cfg.loader.val_batch_size or cfg.loader.batch_size, shuffle=False, **loader_kw)
    steps_per_epoch = len(train_loader)
    total_steps = min(cfg.train.max_steps or steps_per_epoch * cfg.train.epochs, steps_per_epoch * cfg.train.epochs)
    extra = dict(resumed.extra) if resumed is not None else {}
    state: dict[str, Any] = {
        "step": resumed.step if resumed is not None else 0,
        "best": extra.get("best"),
        "bad_evals": extra.get("bad_evals", 0),
        "history": extra.get("history", []),
        "skipped_steps": extra.get("skipped_steps", 0),
    }
    writer = _writer(run_dir, cfg.train.tensorboard) if dist_info.main else None
    state["bar"] = _progress(total_steps, state["step"], cfg.train.progress and dist_info.main)
    config_dict = cfg.to_dict()
    data_extra = {"classes": list(info.classes), "ignore_index": info.ignore_index}

    def save(path: Path, epoch: int) -> None:
        if dist_info.main:
            keep = {k: state[k] for k in ("best", "bad_evals", "history", "skipped_steps")}
            save_checkpoint(path, model, config_dict, step=state["step"], epoch=epoch, optimizer=optimizer,
                            extra={**data_extra, **keep})

    def on_step(s: dict[str, Any]) -> None:
        # Not at the end of an epoch: `last` is written there after validation, and one written
        # before it would let a run killed during validation resume without that epoch's metrics.
        every = cfg.train.checkpoint_every
        if every and s["step"] % every == 0 and s["step"] % steps_per_epoch != 0 and s["step"] < total_steps:
            save(last_path, s["step"] // steps_per_epoch)

    stop = {"now": False}
    time_limit = cfg.train.max_seconds
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)} if _main_thread() else {}
    for sig in previous:
        signal.signal(sig, lambda *_: stop.__setitem__("now", True))
    started = time.perf_counter()
    last_metrics: dict[str, float] = {}
    interrupted = False
    try:
        epoch = state["step"] // steps_per_epoch
        while state["step"] < total_steps:
            train_loader.sampler.set_epoch(epoch)
            skip = state["step"] - epoch * steps_per_epoch
            train_one_epoch(train_model, criterion, optimizer, train_loader, cfg=cfg, state=state,
                            total_steps=total_steps, device=device, skip=skip, writer=writer, stop=stop, on_step=on_step)
            epoch += 1
            finished = state["step"] >= total_steps
            if finished or epoch % max(1, cfg.train.eval_every) == 0:
                last_metrics = evaluate(model, val_loader, device, info.num_classes, info.ignore_index, amp=cfg.train.amp)
                last_metrics["step"], last_metrics["epoch"] = state["step"], epoch
                state["history"].append({k: v for k, v in last_metrics.items() if isinstance(v, (int, float))})
                if writer is not None:
                    for k, v in last_metrics.items():
                        if isinstance(v, float):
                            writer.add_scalar(f"val/{k}", v, state["step"])
                value = _metric_value(last_metrics, cfg.train.monitor)
                log.info("epoch %d step %d: %s", epoch, state["step"], _fmt(last_metrics))
                if state["best"] is None or value > state["best"]:
                    state["best"], state["bad_evals"] = value, 0
                    save(best_path, epoch)
                else:
                    state["bad_evals"] += 1
            save(last_path, epoch)
            if time_limit is not None and time.perf_counter() - started >= time_limit:
                log.info("time budget of %.0f s reached after %d steps", time_limit, state["step"])
                break
            patience = cfg.train.early_stop_patience
            if patience is not None and state["bad_evals"] >= patience:
                log.info("early stop: %s did not improve for %d evaluations", cfg.train.monitor, patience)
                break
    except _StopRequested:
        interrupted = True
        save(last_path, state["step"] // steps_per_epoch)
        log.warning("stopped by signal at step %d; checkpoint saved, continue with --resume", state["step"])
    finally:
        for sig, handler_fn in previous.items():
            signal.signal(sig, handler_fn)
        if state.get("bar") is not None:
            state["bar"].close()
        if writer is not None:
            writer.close()
        if handler is not None:
            logging.getLogger("unetfamily").removeHandler(handler)
            handler.close()
    return {
        "run_dir": str(run_dir),
        "steps": state["step"],
        "best": state["best"],
        "monitor": cfg.train.monitor,
        "metrics": last_metrics,
        "history": state["history"],
        "seconds": time.perf_counter() - started,
        "interrupted": interrupted,
        "skipped_steps": state["skipped_steps"],
    }


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _fmt(metrics: dict[str, Any]) -> str:
    keys = ("dice", "iou", "miou", "pixel_accuracy", "loss")
    return " ".join(f"{k}={metrics[k]:.4f}" for k in keys if isinstance(metrics.get(k), float))


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``unetfamily train``."""
    p = subparsers.add_parser("train", help="train a model from a config file",
                              description="Train a model. Overrides are dotted keys: train.epochs=3 optim.lr=3e-4")
    p.add_argument("--config", help="YAML or TOML config (defaults apply to missing keys)")
    p.add_argument("--resume", action="store_true", help="continue the run in output_dir from its last checkpoint")
    p.add_argument("overrides", nargs="*", help="key.sub=value overrides")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.overrides)
    summary = fit(cfg, resume=args.resume)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"run folder: {summary['run_dir']}  steps: {summary['steps']}  best {summary['monitor']}: "
              f"{summary['best'] if summary['best'] is None else round(summary['best'], 4)}  "
              f"({summary['seconds']:.1f} s)")
    if dist.is_initialized():
        dist.barrier()  # let every rank finish its last collective before gloo tears down
        dist.destroy_process_group()
    return EXIT_INTERRUPTED if summary["interrupted"] else 0
