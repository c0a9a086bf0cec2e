"""Everything a training run needs before its first step: :func:`setup_run` returns a :class:`TrainRun`.

The order in which things are built is part of the reproducibility contract and must not change:
datasets, then ``torch.manual_seed(train.seed)`` immediately followed by the model (its initial
weights), the optimizer (and, on resume, the saved RNG state), the loss, the loaders. Every
training step reseeds the global RNG from ``(seed, step)`` itself (see :mod:`unetfamily.engine.loop`).

Distributed: under ``torchrun`` (``WORLD_SIZE > 1``) the model is wrapped in
DistributedDataParallel (gloo on CPU, nccl on CUDA, SyncBatchNorm only on CUDA), each rank reads
its shard, and only rank 0 logs and writes files.
"""
from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from unetfamily.config import Config, ConfigError, config_from_dict
from unetfamily.engine.checkpoint import Checkpoint, load_checkpoint, rebuild_kwargs, restore_rng, save_checkpoint
from unetfamily.engine.device import resolve_amp, resolve_device
from unetfamily.engine.encoder_training import EncoderTraining, encoder_training
from unetfamily.engine.evaluate import scored_as_validated
from unetfamily.engine.loggers import Loggers, check_loggers, make_loggers
from unetfamily.engine.preflight import check_batch_statistics, with_data_shapes
from unetfamily.engine.run_folder import TrainingError, prepare_run_folder, resumed_config, write_run_config
from unetfamily.engine.run_log import held_setup_log, open_train_log
from unetfamily.engine.throughput import DataThroughput
from unetfamily.engine.trained_cases import recorded_cases
from unetfamily.models import SegmentationModel, create_model

log = logging.getLogger(__name__)

__all__ = ["TrainingError", "RunState", "Distributed", "TrainRun", "setup_run"]

#: Devices whose AdamW and SGD have fused kernels in torch (one pass per parameter).
FUSED_OPTIMIZER_DEVICES = ("cpu", "cuda")


@dataclass
class RunState:
    """How far a run is and how it went; every checkpoint carries it, and a resumed run starts from it."""

    step: int = 0
    best: float | None = None  # best value of train.monitor so far
    bad_evals: int = 0  # evaluations since the best one (early stopping)
    history: list[dict[str, float]] = field(default_factory=list)  # one entry of scores per evaluation
    skipped_steps: int = 0  # steps skipped for a non-finite loss or gradient (nan_policy='skip')
    loss_scale: dict[str, Any] | None = None  # train.amp fp16: the GradScaler's state_dict (scale, growth tracker)

    @classmethod
    def from_checkpoint(cls, ckpt: Checkpoint) -> RunState:
        extra = ckpt.extra
        return cls(ckpt.step, extra.get("best"), extra.get("bad_evals", 0), extra.get("history", []),
                   extra.get("skipped_steps", 0), extra.get("loss_scale"))

    def to_extra(self) -> dict[str, Any]:
        """What a checkpoint's ``extra`` holds besides the data's classes (``step`` is saved apart)."""
        scale = {"loss_scale": self.loss_scale} if self.loss_scale else {}
        return {"best": self.best, "bad_evals": self.bad_evals, "history": self.history,
                "skipped_steps": self.skipped_steps, **scale}


@dataclass
class Distributed:
    """This process's place in a ``torchrun`` job (rank 0 of 1 when not distributed)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0: the process that logs and writes files."""
        return self.rank == 0


@dataclass
class TrainRun:
    """A run ready to train: what :func:`setup_run` built, and the run state the loop advances."""

    cfg: Config  # resolved: model.kwargs hold in_channels and num_classes; on resume, the saved one + new budget
    run_dir: Path  # the output_dir of the config passed in (also on resume)
    dist: Distributed
    device: torch.device
    info: Any  # the training data's DatasetInfo (classes, ignore_index, in_channels)
    model: nn.Module  # evaluated and saved
    train_model: nn.Module  # what the steps call: the model, or its DDP / torch.compile wrapper
    optimizer: torch.optim.Optimizer
    criterion: nn.Module
    train_loader: Any
    val_loader: Any
    total_steps: int
    state: RunState
    loggers: Loggers = field(default_factory=Loggers)  # train.loggers (rank 0; none on the other ranks)
    log_handler: logging.Handler | None = None  # writes train.log (rank 0)
    deadline: float | None = None  # time.perf_counter() at which train.max_seconds runs out (set by fit)
    time_used: float = 0.0  # share of train.max_seconds spent by the last step, agreed over ranks (follow_time)
    channels_last: bool = False  # train.channels_last, "auto" resolved: the model's and the batches' memory format
    amp: str = "none"  # train.amp, "auto" resolved: the autocast mode of the steps and the validation
    encoder: EncoderTraining = field(default_factory=EncoderTraining)  # train.encoder_lr_mult, freeze_encoder_steps
    throughput: DataThroughput = field(default_factory=lambda: DataThroughput(0))  # its workers: num_workers resolved
    scaler: Any = None  # train.amp fp16: the run's one GradScaler (engine.loop makes it at the first step)
    train_cases: list[str] | None = None  # keys of the images it trains on (engine.trained_cases), which eval checks

    @property
    def steps_per_epoch(self) -> int:
        return len(self.train_loader)

    @property
    def last_path(self) -> Path:
        return self.run_dir / "checkpoints" / "last.safetensors"

    @property
    def best_path(self) -> Path:
        return self.run_dir / "checkpoints" / "best.safetensors"

    def save(self, path: Path, epoch: int) -> None:
        """Checkpoint the model, optimizer and run state to ``path`` (rank 0 only)."""
        if self.scaler is not None and self.scaler.is_enabled():
            self.state.loss_scale = self.scaler.state_dict()
        if self.dist.main:
            info = self.info  # amp: the autocast the steps ran under, train.amp "auto" resolved
            extra = {"classes": list(info.classes), "ignore_index": info.ignore_index,
                     "background": info.has_background, "amp": self.amp, "train_cases": self.train_cases,
                     **self.state.to_extra()}
            save_checkpoint(path, self.model, self.cfg.to_dict(), step=self.state.step, epoch=epoch,
                            optimizer=self.optimizer, extra=extra)

    def close(self, status: str = "finished") -> None:
        """End the loggers (``status``: finished, stopped or failed; the run's files go to them unless it failed)
        and stop writing train.log."""
        if status != "failed":
            self.loggers.artifacts({"config.yaml": self.run_dir / "config.yaml",
                                    "checkpoints/last.safetensors": self.last_path,
                                    "checkpoints/best.safetensors": self.best_path})
        self.loggers.close(status)
        if self.log_handler is not None:
            logging.getLogger("unetfamily").removeHandler(self.log_handler)
            self.log_handler.close()


def setup_run(config: Config, resume: bool = False, overwrite: bool = False) -> TrainRun:
    """Build data, model, optimizer, loss, loaders and run state for ``config``, in the fixed order.

    First the run folder is checked (:func:`~unetfamily.engine.run_folder.prepare_run_folder`): a
    folder holding a run is refused unless ``resume`` continues it or ``overwrite`` replaces it.
    With ``resume`` the run continues from ``<output_dir>/checkpoints/last.safetensors`` under its
    saved config, of which ``config`` may change only the budget and run-time settings
    (:func:`~unetfamily.engine.run_folder.resumed_config`). What setup logs (its choices and their
    reasons) opens ``train.log`` (:mod:`unetfamily.engine.run_log`).
    """
    with held_setup_log() as earlier:
        return _setup_run(config, resume, overwrite, earlier)


def _setup_run(config: Config, resume: bool, overwrite: bool, earlier: list[logging.LogRecord]) -> TrainRun:
    """:func:`setup_run`'s steps; ``earlier`` are the records logged so far, written first into train.log."""
    from unetfamily.data import build_dataset, check_dataset

    run_dir = Path(config.output_dir)
    prepare_run_folder(run_dir, resume, overwrite, main=int(os.environ.get("RANK", "0")) == 0)
    check_loggers(config)  # a logger that is not installed fails before any data is read
    dist_info, device = _setup_distributed(config.train.device)
    if dist_info.world_size > 1:
        dist.barrier()  # every rank has checked the run folder before rank 0 writes into it
    if not dist_info.main:  # rank-0-only logging: other ranks report only problems
        logging.getLogger("unetfamily").setLevel(logging.WARNING)
    resumed = load_checkpoint(run_dir / "checkpoints" / "last.safetensors") if resume else None
    saved = config_from_dict(resumed.config) if resumed is not None else None
    cfg = config
    if resumed is not None and saved is not None:
        log.info("resuming %s from step %d", run_dir, resumed.step)
        cfg = resumed_config(saved, _same_amp(saved, config, device), run_dir)
    amp = _amp(cfg, device, dist_info.main)
    train_set, val_set = build_dataset(cfg.data, "train"), build_dataset(cfg.data, "val")
    # Every file of both splits read once now, so no data error can surface after training started.
    checked = check_dataset(cfg.data, datasets={"train": train_set, "val": val_set},
                            batch_sizes={"train": cfg.loader.batch_size, "val": _val_batch(cfg)})
    cfg = with_data_shapes(cfg, train_set.info)
    height, width = train_set[0]["image"].shape[-2:]  # one sample read (and decoded) for the size
    input_hw = (int(height), int(width))
    channels_last = _channels_last(cfg, device, input_hw, amp, dist_info.main)
    model, train_model = _build_model(cfg, device, dist_info, resumed, channels_last, input_hw)
    check_batch_statistics(model, min(cfg.loader.batch_size, len(train_set)), train_set.info.in_channels, input_hw)
    encoder = encoder_training(model, cfg)  # refuses its options for a model without an encoder
    optimizer = _build_optimizer(model, cfg, device, encoder)
    if resumed is not None and resumed.optimizer_state is not None:
        optimizer.load_state_dict(resumed.optimizer_state)
        restore_rng(resumed.rng, resumed.rng.get("torch"))
    criterion = _build_criterion(cfg, train_set.info)
    if dist_info.main:  # written once the model and loss accepted the config, so a refused one leaves no trace
        write_run_config(run_dir, cfg)
    train_loader, val_loader, throughput = _build_loaders(cfg, train_set, val_set, dist_info, device)
    _log_epoch_meaning(cfg, len(train_set), len(val_set), len(train_loader))  # info: rank 0 only
    total_steps = _total_steps(cfg, len(train_loader))
    state = RunState.from_checkpoint(resumed) if resumed is not None else RunState()
    if resumed is not None and saved is not None:
        _log_resumed_budget(saved, cfg, len(train_loader), state, total_steps, run_dir)
    run = TrainRun(
        cfg=cfg, run_dir=run_dir, dist=dist_info, device=device, info=_scored_info(train_set.info, resumed), model=model,
        train_model=train_model, optimizer=optimizer, criterion=criterion, train_loader=train_loader,
        val_loader=val_loader, total_steps=total_steps, state=state, channels_last=channels_last, amp=amp,
        encoder=encoder, throughput=throughput, log_handler=open_train_log(run_dir, earlier) if dist_info.main else None,
        train_cases=recorded_cases(checked.contents, earlier=resumed.extra if resumed is not None else None),
    )
    if dist_info.main:
        try:
            run.loggers = make_loggers(cfg, run_dir, resumed is not None)
        except BaseException:
            run.close("failed")  # stops writing train.log
            raise
    return run


def _scored_info(info: Any, resumed: Checkpoint | None) -> Any:
    """The training data's DatasetInfo; a resumed run's scores class 0 as its earlier validations did (its
    checkpoint's ``background``; a run from before the key left it out), so that its best is chosen on one score."""
    return info if resumed is None else scored_as_validated(info, resumed.extra)


def _total_steps(cfg: Config, steps_per_epoch: int) -> int:
    steps = steps_per_epoch * cfg.train.epochs
    return min(cfg.train.max_steps or steps, steps)


def _log_resumed_budget(saved: Config, cfg: Config, steps_per_epoch: int, state: RunState, total: int,
                        run_dir: Path) -> None:
    """Say what a resumed run's budget means: nothing left to train, an early stop to come, a new LR curve."""
    patience = cfg.train.early_stop_patience
    if state.step >= total:
        log.warning("%s is already at step %d of %d; nothing to train (raise train.epochs or train.max_steps "
                    "to train longer)", run_dir, state.step, total)
        return
    if patience is not None and state.bad_evals >= patience:
        log.warning("%s stopped early (%s did not improve for %d evaluations); it stops again after its next "
                    "evaluation unless that one improves or train.early_stop_patience is raised",
                    run_dir, cfg.train.monitor, state.bad_evals)
    before = _total_steps(saved, steps_per_epoch)
    if before != total and cfg.schedule.name != "constant":
        log.info("the %s learning-rate schedule now spans %d steps instead of %d: from step %d on, the learning "
                 "rate follows the new curve", cfg.schedule.name, total, before, state.step)


def _setup_distributed(device_name: str) -> tuple[Distributed, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = resolve_device(device_name, "train.device")
    if world <= 1:
        return Distributed(), device
    info = Distributed(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return info, device


def _same_amp(saved: Config, config: Config, device: torch.device) -> Config:
    """``config`` with ``saved``'s train.amp when both mean the same autocast here ("auto" and what it resolves to).

    A run saved before ``"auto"`` became the default (``amp: none``) then resumes under a config that
    leaves amp unset, as it should: nothing it computes changes.
    """
    a, b = saved.train.amp, config.train.amp
    if a != b and "fp16" not in (a, b) and resolve_amp(a, device)[0] == resolve_amp(b, device)[0]:
        return dataclasses.replace(config, train=dataclasses.replace(config.train, amp=a))
    return config


def _amp(cfg: Config, device: torch.device, main: bool) -> str:
    """``train.amp`` with ``"auto"`` resolved (:func:`~unetfamily.engine.device.resolve_amp`); fp16 needs CUDA."""
    if cfg.train.amp == "fp16" and device.type != "cuda":
        raise ConfigError("train.amp='fp16' needs CUDA (loss scaling); use 'bf16' on CPU")
    amp, why = resolve_amp(cfg.train.amp, device)
    if main and cfg.train.amp == "auto":
        log.info("train.amp auto -> %s: %s", amp, why)
    return amp


def _channels_last(cfg: Config, device: torch.device, input_hw: tuple[int, int], amp: str, main: bool) -> bool:
    """``train.channels_last``, with ``"auto"`` decided by the measured rule for this model, device and the
    training images' (H, W) ``input_hw``."""
    from unetfamily.models import prefers_channels_last

    if cfg.train.channels_last != "auto":
        return bool(cfg.train.channels_last)
    chosen, why = prefers_channels_last(cfg.model.name, device, input_hw, amp)
    if main:
        log.info("train.channels_last auto -> %s: %s", str(chosen).lower(), why)
    return chosen


def _build_model(cfg: Config, device: torch.device, dist_info: Distributed, resumed: Checkpoint | None,
                 channels_last: bool, input_hw: tuple[int, int]) -> tuple[nn.Module, nn.Module]:
    """(model, train_model): the seeded model on ``device``, and the DDP / compiled wrapper the steps call;
    ``input_hw``: the training images' (H, W), for the log."""
    torch.manual_seed(cfg.train.seed)  # the initial weights depend on the seed alone
    if resumed is not None:  # the checkpoint holds every weight: an encoder_weights file is not read again
        model = create_model(cfg.model.name, **rebuild_kwargs(cfg.model.kwargs))
        model.load_state_dict(resumed.model_state)
    else:
        model = create_model(cfg.model.name, **cfg.model.kwargs)
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    if isinstance(model, SegmentationModel):
        model.set_memory_saving(cfg.train.memory_saving)
        note = model.memory_saving_note(input_hw)
        if note is not None and dist_info.main:
            log.info("train.memory_saving %s: %s", cfg.train.memory_saving, note)
    train_model: nn.Module = model
    if dist_info.world_size > 1:
        if device.type == "cuda":
            train_model = nn.SyncBatchNorm.convert_sync_batchnorm(train_model)
        train_model = nn.parallel.DistributedDataParallel(
            train_model, device_ids=[device.index] if device.type == "cuda" else None
        )
    if cfg.train.compile:
        train_model = torch.compile(train_model)
    return model, train_model


def _build_optimizer(model: nn.Module, cfg: Config, device: torch.device,
                     encoder: EncoderTraining | None = None) -> torch.optim.Optimizer:
    """AdamW or SGD, through torch's fused kernel where it has one (CPU, CUDA); the encoder's own param group
    when ``encoder`` has one (:mod:`~unetfamily.engine.encoder_training`).

    The fused kernel updates each parameter in one pass instead of a dozen foreach passes over all
    of them: for 39M parameters on 2 CPU cores, 20 ms against 195 ms per step
    (``python benchmarks/step_parts.py``, docs/speed.md). Its results equal the foreach path's to rounding.
    """
    o = cfg.optim
    fused = {"fused": True} if device.type in FUSED_OPTIMIZER_DEVICES else {}
    params = (encoder or EncoderTraining()).param_groups(model)
    if o.name == "sgd":
        return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay, **fused)
    return torch.optim.AdamW(params, lr=o.lr, weight_decay=o.weight_decay, **fused)


def _build_criterion(cfg: Config, info: Any) -> nn.Module:
    from unetfamily.losses import SegmentationCriterion

    return SegmentationCriterion(
        cfg.loss.name, num_classes=info.num_classes, ds_weights=cfg.loss.ds_weights, cgm_weight=cfg.loss.cgm_weight,
        ignore_index=info.ignore_index, **cfg.loss.kwargs,
    )


def _val_batch(cfg: Config) -> int:
    """Validation images per batch: 1 with train.val_window (images of any sizes; their windows are batched)."""
    if cfg.train.val_window is not None:
        return 1
    return cfg.loader.val_batch_size or cfg.loader.batch_size


def _build_loaders(cfg: Config, train_set: Any, val_set: Any, dist_info: Distributed,
                   device: torch.device) -> tuple[Any, Any, DataThroughput]:
    """(train, val) loaders and the meter of the train loader's throughput, for its worker processes (loader.num_workers,
    "auto" resolved for ``device`` and the ranks on this node, and logged); a train epoch is train.steps_per_epoch
    batches when set, else one pass.
    Batches are made in pinned memory for a CUDA device; the train loader's say how long they took to make."""
    from unetfamily.data import make_loader
    from unetfamily.data.workers import resolve_num_workers

    local_ranks = int(os.environ.get("LOCAL_WORLD_SIZE", dist_info.world_size))  # torchrun sets it
    workers, why = resolve_num_workers(cfg.loader.num_workers, device, local_ranks)
    if dist_info.main:
        log.info("loader.num_workers %s -> %d: %s", cfg.loader.num_workers, workers, why)
    shared = dict(num_workers=workers, pin_memory=device.type == "cuda", seed=cfg.train.seed, rank=dist_info.rank,
                  world_size=dist_info.world_size)
    batch, steps = cfg.loader.batch_size, cfg.train.steps_per_epoch
    train_loader = make_loader(train_set, batch, shuffle=True, drop_last=len(train_set) > batch, timed=True,
                               num_samples=None if steps is None else steps * batch, **shared)
    val_loader = make_loader(val_set, _val_batch(cfg), shuffle=False, **shared)
    return train_loader, val_loader, DataThroughput(workers)


def _log_epoch_meaning(cfg: Config, train_images: int, val_images: int, steps_per_epoch: int) -> None:
    """Say once what an epoch is and how validation predicts its images."""
    batch, window = cfg.loader.batch_size, cfg.train.val_window
    if cfg.train.steps_per_epoch is not None:
        log.info("epoch = %d steps of %d samples (train.steps_per_epoch), drawn from %d training images",
                 steps_per_epoch, batch, train_images)
    else:
        log.info("epoch = one pass over %d training images (%d steps of %d)", train_images, steps_per_epoch, batch)
    if window is None:
        log.info("validation predicts each of %d images whole", val_images)
    else:
        log.info("validation predicts each of %d images in sliding windows of %dx%d (overlap %g, Gaussian "
                 "blending of probabilities), one image at a time", val_images, window[0], window[1],
                 cfg.train.val_overlap)
