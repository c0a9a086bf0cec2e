"""What a comparison produces, as dataclasses: the protocol, each variant with its costs, each run.

``results.json`` is :meth:`CompareResults.to_dict` written as strict JSON (NaN and missing values
as ``null``); :meth:`CompareResults.from_dict` reads it back and tolerates missing optional fields
(a report can be written from partial results). ``docs/compare_report.md`` documents the fields.

The primary metric, the one score that ranks variants, is decided here and nowhere else:
:func:`primary_metric`.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Literal

from unetfamily.compare.config import CompareConfig
from unetfamily.engine.score_order import lower_is_better

__all__ = ["Task", "primary_metric", "lower_is_better", "Protocol", "Costs", "VariantResult", "RunResult", "RunFailure", "Artifacts",
           "CompareResults"]

Task = Literal["binary", "multiclass"]


def primary_metric(config: CompareConfig) -> str:
    """The per-case score that ranks variants: ``config.primary`` (Dice unless asked otherwise).

    For multi-class tasks Dice, IoU, NSD and clDice are means over the FOREGROUND classes, or over every class
    when class 0 is not a background (:attr:`Protocol.background`).
    """
    return config.primary


@dataclass
class Protocol:
    """How every variant was trained and evaluated: the request and what it resolved to."""

    config: CompareConfig
    data: dict[str, Any]  # the resolved dataset config every run trains on
    data_name: str
    task: Task
    classes: list[str]
    splits: dict[str, int]  # split name -> number of images
    eval_split: str  # "test" when the data has one, else "val"; "folds" under cross-validation
    input_size: list[int]  # (H, W) of the evaluated images
    folds: int = 1  # K of K-fold cross-validation; 1 = one held-out split
    cases: int = 0  # evaluated cases (under cross-validation: every train and val case, each out of fold)
    optimizer: dict[str, Any] | None = None
    schedule: dict[str, Any] | None = None
    threads: int | None = None
    plan: dict[str, Any] | None = None  # compare --plan: the plan's choices, reasons and per-variant fits
    encoder: dict[str, Any] | None = None  # compare --encoder: {"name", "weights": file name, "sha256"}
    background: bool = True  # class 0 is a background the foreground scores leave out (False: scored like the others)
    version: str = ""
    created: str = ""

    @property
    def primary_metric(self) -> str:
        return primary_metric(self.config)

    @property
    def seeds(self) -> list[int]:
        """The seeds of every variant's runs."""
        return self.config.seed_list

    @property
    def budget(self) -> dict[str, float | None]:
        return {"epochs": self.config.epochs, "steps": self.config.steps, "seconds": self.config.seconds}

    @property
    def augment(self) -> Any:
        """The augmentation every run trains with (the data config's ``augment``)."""
        return self.data.get("augment")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Protocol:
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["config"] = CompareConfig.from_dict(dict(data.get("config") or {}))
        return cls(**{"data": {}, "data_name": "results", "task": "binary", "classes": [], "splits": {},
                      "eval_split": "test", "input_size": [], **values})


@dataclass
class Costs:
    """What a variant costs at the evaluated input size on the comparison's device; None = not measured."""

    params: int | None = None
    macs: int | None = None  # multiply-accumulates per image
    latency_ms: float | None = None  # batch-1 eval forward
    throughput: float | None = None  # images per second at batch 1
    train_step_ms: float | None = None  # forward + backward + optimiser step at the protocol's batch size
    peak_memory_mb: float | None = None  # of one training step

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Costs:
        return cls(**{f.name: data.get(f.name) for f in dataclasses.fields(cls)})


@dataclass
class VariantResult:
    """One trained configuration (a family member, its widths, maybe an ablation) and its costs."""

    id: str
    label: str
    model: str
    family: str
    ablation: str | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)
    costs: Costs = field(default_factory=Costs)
    receptive_field: int | None = None  # pixels, computed from the network (unetfamily.models.receptive_field)
    lr: float | None = None  # the learning rate its runs trained with (chosen per variant with --lr-grid)

    def to_dict(self) -> dict[str, Any]:
        row = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "costs"}
        return {**row, **dataclasses.asdict(self.costs)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VariantResult:
        return cls(id=data["id"], label=data.get("label") or data["id"], model=data.get("model", ""),
                   family=data.get("family", ""), ablation=data.get("ablation"), kwargs=dict(data.get("kwargs") or {}),
                   costs=Costs.from_dict(data), receptive_field=data.get("receptive_field"), lr=data.get("lr"))


@dataclass
class RunResult:
    """One (variant, seed, fold) run: its training and its scores on the cases it held out (fractions 0..1)."""

    variant: str
    seed: int
    fold: int = 0  # the fold whose cases it was evaluated on (0 without cross-validation)
    train_seconds: float = math.nan  # of the process that finished the run
    steps: int = 0
    history: list[dict[str, float]] = field(default_factory=list)  # one entry of validation scores per evaluation
    test: dict[str, Any] = field(default_factory=dict)  # dice, iou, miou, ..., per_class_iou, per_class_dice
    per_image: list[dict[str, Any]] = field(default_factory=list)  # {"name", "dice", "iou", "nsd", "cldice", ["hd95"]}
    levels: dict[int, dict[str, float]] = field(default_factory=dict)  # UNet++ pruning level -> scores and costs
    threads: int | None = None  # CPU threads of the process that trained it (None: not recorded)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        if self.levels:
            out["levels"] = {str(level): scores for level, scores in self.levels.items()}
        else:
            del out["levels"]  # only variants evaluated at pruning levels have them
        if self.threads is None:
            del out["threads"]  # runs finished before it was recorded
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunResult:
        seconds = data.get("train_seconds")
        return cls(variant=str(data.get("variant")), seed=data.get("seed", 0), fold=data.get("fold") or 0,
                   train_seconds=math.nan if seconds is None else seconds, steps=data.get("steps") or 0,
                   history=list(data.get("history") or []), test=dict(data.get("test") or {}),
                   per_image=list(data.get("per_image") or []),
                   levels={int(k): dict(v) for k, v in (data.get("levels") or {}).items()},
                   threads=data.get("threads"))


@dataclass
class Artifacts:
    """Files under the report folder the figures read: eval images and seed-0 predictions."""

    samples: str | None = None  # npz: images (N, C, H, W) uint8, masks (N, H, W) uint8, names (N,)
    predictions: dict[str, str] = field(default_factory=dict)  # variant id -> npz: pred (N, H, W) uint8, names


@dataclass(frozen=True)
class RunFailure:
    """A run that ended with an error of its own (bad data, bad config): its label, folder and one-line error."""

    label: str
    dir: str
    error: str
    variant: str = ""


@dataclass
class CompareResults:
    """Everything ``results.json`` holds. ``missing``: runs that failed; their variants are left out of the
    comparison (every compared variant has the same runs), and the report lists them."""

    protocol: Protocol
    variants: list[VariantResult]
    runs: list[RunResult]
    artifacts: Artifacts = field(default_factory=Artifacts)
    missing: list[RunFailure] = field(default_factory=list)

    @property
    def primary_metric(self) -> str:
        return self.protocol.primary_metric

    def runs_of(self, variant: str) -> list[RunResult]:
        return [run for run in self.runs if run.variant == variant]

    def to_dict(self) -> dict[str, Any]:
        out = {"protocol": self.protocol.to_dict(), "variants": [v.to_dict() for v in self.variants],
               "runs": [r.to_dict() for r in self.runs], "artifacts": dataclasses.asdict(self.artifacts)}
        if self.missing:  # only where runs failed: results.json of a complete comparison is as before
            out["missing"] = [dataclasses.asdict(m) for m in self.missing]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CompareResults:
        art = data.get("artifacts") or {}
        return cls(protocol=Protocol.from_dict(dict(data.get("protocol") or {})),
                   variants=[VariantResult.from_dict(v) for v in data.get("variants") or []],
                   runs=[RunResult.from_dict(r) for r in data.get("runs") or []],
                   artifacts=Artifacts(art.get("samples"), dict(art.get("predictions") or {})),
                   missing=[RunFailure(**m) for m in data.get("missing") or []])
