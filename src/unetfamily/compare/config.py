"""``CompareConfig``: everything a comparison is asked to do, typed and checked once.

The command line builds one from its options; a script builds one directly or with
:meth:`CompareConfig.from_dict` (the same strict loading as the training :class:`~unetfamily.config.Config`:
unknown keys and wrong types are errors that name the key). Out-of-range values, unknown model,
ablation, loss, augmentation and device names raise a :class:`~unetfamily.errors.ConfigError`
naming the option and the close matches. Model names are resolved to their registry spelling
(``unet++`` -> ``unet_plusplus``). The config is saved in ``results.json`` and shown in the report.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from unetfamily.config import LOGGERS, Range, check_fields, dataclass_from_dict, integer, number
from unetfamily.errors import ConfigError, resolve_choice, unknown_choice

__all__ = ["CompareConfig", "Widths", "Primary", "ABLATIONS", "DEFAULT_MODELS", "AUGMENT_CHOICES", "PRIMARY_METRICS"]

Widths = Literal["small", "paper", "matched"]
Executor = Literal["local", "ray"]
#: The per-case scores a comparison can rank on (HD95: lower is better).
Primary = Literal["dice", "iou", "nsd", "cldice", "hd95"]
PRIMARY_METRICS: tuple[str, ...] = ("dice", "iou", "nsd", "cldice", "hd95")
#: Most folds a cross-validation may have (more is leave-few-out, rarely what a user means).
MAX_FOLDS = 20
DEFAULT_MODELS = ("fcn8s", "unet", "unet_plusplus", "unet_3plus")
#: The ablation studies ``--ablations`` accepts (:func:`~unetfamily.compare.variants.build_variants` says what each adds).
ABLATIONS = ("unet_depth", "unetpp_ds", "unet3p")
#: ``none`` switches off the data config's augmentation; unset keeps it.
AUGMENT_CHOICES = ("light", "medical", "natural", "none")
DEVICE = re.compile(r"^(cpu|mps|cuda(:\d+)?)$")


@dataclass
class CompareConfig:
    """The options of one comparison (``unetfamily compare --help`` describes each).

    ``epochs``, ``steps`` and ``seconds`` are all caps on each run's training: the run stops at the
    first one reached. ``seeds`` runs per variant use seeds ``first_seed .. first_seed + seeds - 1``.
    ``folds``: K-fold cross-validation over the train and val cases (every case evaluated out of
    fold once per seed); 1 trains on train and evaluates on the test split (val without one);
    None picks 5 when the data has no test split, else 1. ``lr_grid``: each variant picks its
    learning rate from these on an inner validation split carved from its training data.
    """

    data: str = "synthetic"  # dataset config YAML, a folder with images/ and masks/, or a type name
    models: list[str] = field(default_factory=lambda: list(DEFAULT_MODELS))
    ablations: list[str] = field(default_factory=list)  # of ABLATIONS, or ["all"]
    seeds: int = integer(3, ge=1)
    epochs: int = integer(10, ge=1)
    steps: int | None = integer(None, ge=1, null="train by epochs")
    seconds: float | None = number(None, gt=0, null="set no time budget")
    widths: Widths = "small"
    base_width: int = integer(16, ge=1)
    size: int | None = integer(None, ge=16, null="keep the images' own size")  # images resized to size x size
    batch_size: int = integer(8, ge=1)
    lr: float = number(1e-3, gt=0)
    loss: str = "dice_ce"
    augment: str | None = None  # a preset, "none", or None for the data config's own
    device: str = "cpu"
    folds: int | None = integer(None, ge=1, le=MAX_FOLDS, null="pick 5 without a test split, else 1")
    first_seed: int = integer(0, ge=0, le=2**32 - 1)
    primary: Primary = "dice"  # the per-case score that ranks the variants
    nsd_tolerance: float = number(2.0, ge=0)  # pixels of boundary disagreement the normalised surface Dice forgives
    lr_grid: list[float] | None = field(default=None, metadata={"check": lambda what, grid: _lr_grid(grid)})
    costs: bool = True  # measure parameters, MACs, latency and memory of each variant (fresh processes)
    # Every model on this pretrained-architecture backbone (unetfamily.models.encoders), initialised from
    # encoder_weights (a file; made absolute here, so that every worker reads the same one) when given.
    encoder: str | None = None
    encoder_weights: str | None = None
    encoder_lr_mult: float = number(1.0, gt=0)  # train.encoder_lr_mult of every run (with an encoder)
    freeze_encoder_steps: int = integer(0, ge=0)  # train.freeze_encoder_steps of every run (with an encoder)
    # "auto": each variant trains with the recipe `unetfamily plan` fits to the data, device and budget; a path:
    # that plan file; "none": the options above. Unset: "auto" unless a recipe option (TUNING) is set.
    plan: str | None = None
    command: str = ""  # the command line that asked for it, recorded in the report
    # A folder: after the report, the winner's model folder (config.json, model.safetensors, README.md card;
    # compare/export_best.py). Where a result is written, not what it is: not in any run's fingerprint.
    export_best: str | None = field(default=None, metadata={"check": lambda what, path: _folder(what, path)})
    # How the runs are executed (not what they compute: a run's result does not depend on it).
    executor: Executor = "local"  # local: one after another in this process; ray: Ray tasks in parallel
    ray_address: str | None = None  # None: start a local Ray instance; "auto" or "ray://host:port": join a cluster
    cpus_per_run: int | None = integer(None, ge=1, null="fill the machine's CPUs")
    gpus_per_run: float | None = number(None, ge=0, null="1 on a CUDA --device, else 0")
    # Where the runs log (not what they compute): tensorboard, mlflow (one parent run, a child per run).
    loggers: list[str] = field(default_factory=lambda: ["tensorboard"])
    mlflow_uri: str | None = None  # None: $MLFLOW_TRACKING_URI, else a SQLite store in <out>/mlflow/
    mlflow_experiment: str = "unetfamily"

    def __post_init__(self) -> None:
        self.plan = _plan(self)
        self.models = _models(self.models)
        self.ablations = _ablations(self.ablations)
        _check_encoder(self)
        check_fields(self, _option)  # ranges, declared with each field above
        self.lr = float(self.lr)
        self.seconds = None if self.seconds is None else float(self.seconds)
        self.nsd_tolerance = float(self.nsd_tolerance)
        if self.lr_grid is not None:
            self.lr_grid = [float(v) for v in self.lr_grid]
        if self.widths not in ("small", "paper", "matched"):
            raise unknown_choice("--widths", self.widths, ("small", "paper", "matched"))
        _check_loss(self.loss)
        if self.augment is not None and self.augment not in AUGMENT_CHOICES:
            raise unknown_choice("--augment", self.augment, AUGMENT_CHOICES, "unset keeps the data config's")
        if self.primary not in PRIMARY_METRICS:
            raise unknown_choice("--primary", self.primary, PRIMARY_METRICS)
        if not DEVICE.match(self.device):
            raise unknown_choice("--device", self.device, ("cpu", "cuda", "mps"), "or cuda:N for GPU N")
        _check_executor(self)
        _check_loggers(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CompareConfig:
        """A config from a mapping (e.g. a YAML file's); missing keys take their defaults."""
        return dataclass_from_dict(cls, data)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def seed_list(self) -> list[int]:
        """The seeds every variant trains with."""
        return list(range(self.first_seed, self.first_seed + self.seeds))

    @property
    def encoder_kwargs(self) -> dict[str, str]:
        """The model arguments ``--encoder``/``--encoder-weights`` give every variant ({} without an encoder)."""
        given = {"encoder": self.encoder, "encoder_weights": self.encoder_weights}
        return {k: v for k, v in given.items() if v is not None}


def _option(name: str) -> str:
    """The command-line option a field is set by, as errors name it."""
    return "--minutes (in seconds)" if name == "seconds" else f"--{name.replace('_', '-')}"


#: The options a plan chooses itself (with their command-line names): setting one means "my recipe, not a plan".
TUNING = {"size": "--size", "batch_size": "--batch-size", "lr": "--lr", "loss": "--loss", "augment": "--augment",
          "lr_grid": "--lr-grid"}


def _plan(cfg: CompareConfig) -> str:
    """``cfg.plan`` resolved: unset -> "auto", or "none" when a recipe option is set; a plan with one is refused."""
    defaults = {f.name: f.default for f in dataclasses.fields(CompareConfig) if f.name in TUNING}
    tuned = [flag for name, flag in TUNING.items() if getattr(cfg, name) != defaults[name]]
    if cfg.encoder is not None and cfg.plan in (None, "none"):
        return "none"  # a plan does not fit a pretrained encoder (below): the command's recipe
    if cfg.encoder is not None:
        raise ConfigError(
            f"--plan {cfg.plan} cannot train models on --encoder {cfg.encoder}: a plan gives every model a z-score "
            "of this data as its input normalisation and picks its normalisation layers (instance norm below batch "
            "8), while pretrained weights need the ImageNet normalisation they were trained with and the backbone "
            "keeps its BatchNorm layers. Leave --plan out (or give --plan none): the comparison then trains with "
            "the recipe options (--size, --batch-size, --lr, ...)")
    if cfg.plan is None:
        return "none" if tuned else "auto"
    if not isinstance(cfg.plan, str) or not cfg.plan:
        raise ConfigError(f"--plan {cfg.plan!r} is invalid; give auto, none or a plan file from `unetfamily plan`")
    if cfg.plan != "none" and tuned:
        raise ConfigError(f"--plan {cfg.plan} chooses the recipe itself, so {', '.join(tuned)} would be ignored: "
                          f"leave {'them' if len(tuned) > 1 else 'it'} out, or use --plan none to train with your own")
    return cfg.plan


def _check_encoder(cfg: CompareConfig) -> None:
    """A known encoder; no FCN, width or depth option beside it (they size the families' own encoders)."""
    from unetfamily.models import family_of
    from unetfamily.models.encoders import list_encoders

    if cfg.encoder is None:
        if cfg.encoder_weights is not None:
            raise ConfigError("--encoder-weights needs --encoder NAME: the backbone architecture the weights are for")
        unused = [flag for flag, default in (("--encoder-lr-mult", cfg.encoder_lr_mult == 1),
                                             ("--freeze-encoder-steps", cfg.freeze_encoder_steps == 0)) if not default]
        if unused:
            raise ConfigError(f"{', '.join(unused)} would have no effect without --encoder NAME: the families' own "
                              "encoders train with the decoder")
        return
    cfg.encoder = resolve_choice("--encoder", cfg.encoder, list_encoders(),
                                 hint="`unetfamily models --encoders` lists them")
    fcn = [name for name in cfg.models if family_of(name) == "fcn"]
    if fcn:
        raise ConfigError(f"--encoder {cfg.encoder}: {', '.join(fcn)} cannot take it (an FCN's trunk is VGG-16, "
                          f"and FCN is the baseline without a pretrained-encoder variant); leave "
                          f"{'it' if len(fcn) == 1 else 'them'} out of --models, e.g. --models "
                          "unet,unet_plusplus,unet_3plus")
    sized = [flag for flag, unset in (("--widths", cfg.widths == "small"), ("--base-width", cfg.base_width == 16),
                                      ("--ablations unet_depth", "unet_depth" not in cfg.ablations)) if not unset]
    if sized:
        raise ConfigError(f"{', '.join(sized)} would have no effect with --encoder {cfg.encoder}: "
                          f"{'they size' if len(sized) > 1 else 'it sizes'} the families' own encoders, while "
                          "every model is built on the backbone, its decoder sized from the backbone's features "
                          "(UNet3+'s branches at the paper's 64 channels); leave "
                          f"{'them' if len(sized) > 1 else 'it'} out")
    if cfg.encoder_weights is not None:
        if not isinstance(cfg.encoder_weights, str) or not cfg.encoder_weights.strip():
            raise ConfigError(f"--encoder-weights {cfg.encoder_weights!r} is not a file name")
        cfg.encoder_weights = str(Path(cfg.encoder_weights).expanduser().resolve())


def _check_executor(cfg: CompareConfig) -> None:
    """The executor is known, and its options are set only where they act."""
    if cfg.executor not in ("local", "ray"):
        raise unknown_choice("--executor", cfg.executor, ("local", "ray"))
    if cfg.executor == "local":
        given = [_option(n) for n in ("ray_address", "cpus_per_run", "gpus_per_run") if getattr(cfg, n) is not None]
        if given:
            raise ConfigError(f"{', '.join(given)} only act with --executor ray (the local executor trains one run at "
                              "a time in this process): add --executor ray, or leave them out")
    elif cfg.device == "mps":
        raise ConfigError("--device mps cannot be shared out to Ray workers; use --device cpu or cuda with --executor ray")
    elif cfg.device.startswith("cuda") and cfg.gpus_per_run == 0:
        raise ConfigError(f"--device {cfg.device} with --gpus-per-run 0 would give each run no GPU; "
                          "give --gpus-per-run > 0 (default 1), or --device cpu")
    elif cfg.device == "cpu" and (cfg.gpus_per_run or 0) > 0:
        raise ConfigError("--gpus-per-run reserves GPUs for runs that train on --device cpu; "
                          "use --device cuda, or leave --gpus-per-run out")


def _check_loggers(cfg: CompareConfig) -> None:
    """Known logger names, each once; the MLflow options only with the mlflow logger."""
    cfg.loggers = [resolve_choice("--loggers", name, LOGGERS) for name in cfg.loggers]
    if len(set(cfg.loggers)) < len(cfg.loggers):
        raise ConfigError(f"--loggers {','.join(cfg.loggers)} names a logger twice; name each once")
    given = [_option(n) for n in ("mlflow_uri", "mlflow_experiment") if getattr(cfg, n) != _DEFAULT_MLFLOW[n]]
    if given and "mlflow" not in cfg.loggers:
        one = len(given) == 1
        raise ConfigError(f"{', '.join(given)} only act{'s' if one else ''} with the mlflow logger: add --loggers "
                          f"{','.join([*cfg.loggers, 'mlflow'])}, or leave {'it' if one else 'them'} out")


_DEFAULT_MLFLOW = {"mlflow_uri": None, "mlflow_experiment": "unetfamily"}


def _lr_grid(values: list[float] | None) -> None:
    if values is None:
        return
    if not isinstance(values, (list, tuple)) or len(values) < 2:
        raise ConfigError(f"--lr-grid needs at least two learning rates to choose from, got {values!r}")
    for value in values:
        Range(gt=0)("each --lr-grid value", value)
    if len(set(values)) != len(values):
        raise ConfigError(f"--lr-grid lists a learning rate twice: {list(values)!r}")


def _models(names: list[str]) -> list[str]:
    from unetfamily.models import resolve_model_name

    if not names:
        raise ConfigError("--models is empty; name at least one model (`unetfamily models` lists them)")
    return [resolve_model_name(name) for name in names]


def _ablations(names: list[str]) -> list[str]:
    if list(names) == ["all"]:
        return list(ABLATIONS)
    return [resolve_choice("--ablations", name, ABLATIONS, hint="or 'all'") for name in names]


def _check_loss(name: str) -> None:
    from unetfamily.losses import list_losses

    if name not in list_losses():
        raise unknown_choice("--loss", name, list_losses())


def _folder(what: str, path: str | None) -> None:
    if path is not None and (not isinstance(path, str) or not path.strip()):
        raise ConfigError(f"{what} {path!r} is not a folder name; give the folder to write the best model to, or "
                          "leave it out")
