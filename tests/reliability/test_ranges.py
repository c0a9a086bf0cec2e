"""Every number from a config or a flag is range-checked, with an error that names it.

Each case goes through the command line as a user would type it (``unetfamily.cli.main``) and
must end with exit code 2 and ONE ``error:`` line naming the key or flag, before anything is
trained, written or measured. Config values are tried from a YAML file, a TOML file, a dotted
override and Python; every numeric field of every config dataclass must declare its range.
"""
from __future__ import annotations

import dataclasses
import re
import typing
from pathlib import Path

import pytest

from tests.reliability.conftest import tiny_config, write_config
from unetfamily.cli import main
from unetfamily.compare.config import CompareConfig
from unetfamily.config import Config, ConfigError, Range, TrainConfig, check_config, config_from_dict, load_config

#: Ours (``error: ...``) or argparse's (``unetfamily eval: error: ...``).
ERROR_LINE = re.compile(r"^(unetfamily(?: [\w-]+)*: )?error: ")


def run_cli(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str]:
    """(exit code, stderr) of ``unetfamily ARGV`` run in this process."""
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own errors (a flag that is not a number at all)
        code = exc.code
    return code, capsys.readouterr().err


def assert_refused(argv: list[str], fragment: str, capsys: pytest.CaptureFixture) -> str:
    """``argv`` exits 2 with exactly one error line, the last one, holding ``fragment``; returns that line."""
    code, err = run_cli(argv, capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if ERROR_LINE.match(line)]
    assert code == 2, (code, err)
    assert "Traceback" not in err and len(errors) == 1 and errors[0] == lines[-1], err
    assert fragment in errors[0], (fragment, errors[0])
    return errors[0]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real trained binary U-Net run folder (two steps)."""
    from unetfamily.engine.train import fit

    out = tmp_path_factory.mktemp("ranges") / "run"
    fit(config_from_dict(tiny_config(out, epochs=1, max_steps=2)))
    return out


# ------------------------------------------------------------------------------------------ config


#: (override, key the error must name): one per numeric key and bound, NaN and infinity included.
TRAIN_OVERRIDES = [
    ("train.grad_clip=-1", "train.grad_clip"), ("train.grad_clip=0", "train.grad_clip"),
    ("train.grad_clip=.nan", "train.grad_clip"), ("optim.lr=-1", "optim.lr"), ("optim.lr=0", "optim.lr"),
    ("optim.lr=.inf", "optim.lr"), ("optim.lr=nan", "optim.lr"), ("optim.weight_decay=-0.1", "optim.weight_decay"),
    ("optim.momentum=1", "optim.momentum"), ("optim.momentum=-0.5", "optim.momentum"),
    ("train.epochs=0", "train.epochs"), ("train.epochs=-3", "train.epochs"), ("train.epochs=2.5", "train.epochs"),
    ("train.max_steps=0", "train.max_steps"), ("train.max_steps=-1", "train.max_steps"),
    ("train.max_seconds=0", "train.max_seconds"), ("train.max_seconds=.inf", "train.max_seconds"),
    ("schedule.warmup_steps=-1", "schedule.warmup_steps"), ("schedule.min_lr_ratio=1.5", "schedule.min_lr_ratio"),
    ("schedule.min_lr_ratio=-0.1", "schedule.min_lr_ratio"), ("schedule.power=0", "schedule.power"),
    ("loader.batch_size=0", "loader.batch_size"), ("loader.batch_size=-2", "loader.batch_size"),
    ("loader.val_batch_size=0", "loader.val_batch_size"), ("loader.num_workers=-1", "loader.num_workers"),
    ("train.eval_every=0", "train.eval_every"), ("train.log_every=0", "train.log_every"),
    ("train.image_every=-1", "train.image_every"), ("train.checkpoint_every=-1", "train.checkpoint_every"),
    ("train.early_stop_patience=0", "train.early_stop_patience"), ("loss.cgm_weight=-1", "loss.cgm_weight"),
    ("loss.cgm_weight=.nan", "loss.cgm_weight"), ("train.seed=-1", "train.seed"), ("train.seed=4294967296", "train.seed"),
    ("train.max_skipped_fraction=1.5", "train.max_skipped_fraction"),
    ("train.max_skipped_fraction=-0.1", "train.max_skipped_fraction"),
    ("output_dir=", "output_dir"),
    # free-form sections: no NaN or infinity anywhere, and the model's own keyword arguments
    ("model.kwargs.dropout=.nan", "model.kwargs.dropout"), ("data.size=.inf", "data.size"),
    ("model.kwargs.in_channels=0", "in_channels"), ("model.kwargs.num_classes=0", "num_classes"),
    ("model.kwargs.channels=[4,8.5]", "channels"), ("model.kwargs.channels=[0,8]", "channels"),
]
#: deep-supervision weights on a UNet++ with deep supervision: negative, all zero, not numbers.
DS = ["model.name=unet_plusplus", "model.kwargs.deep_supervision=true"]
DS_OVERRIDES = [("loss.ds_weights=[1,-1]", "loss.ds_weights[1]"), ("loss.ds_weights=[0,0]", "loss.ds_weights"),
                ("loss.ds_weights=[1,.nan]", "loss.ds_weights"), ("loss.ds_weights=[1,x]", "loss.ds_weights")]


@pytest.mark.parametrize("override,key", TRAIN_OVERRIDES, ids=[o for o, _ in TRAIN_OVERRIDES])
def test_train_override_out_of_range_is_refused_naming_the_key(override: str, key: str, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "run"
    config = write_config(tmp_path / "c.yaml", tiny_config(out))
    assert_refused(["train", "--config", str(config), override], key, capsys)
    if not override.startswith("model.kwargs"):  # the model's own arguments are checked when it is built
        assert not out.exists()  # refused before the run folder was made


@pytest.mark.parametrize("override,key", DS_OVERRIDES, ids=[o for o, _ in DS_OVERRIDES])
def test_deep_supervision_weights_are_checked(override: str, key: str, tmp_path: Path,
                                              capsys: pytest.CaptureFixture) -> None:
    config = write_config(tmp_path / "c.yaml", tiny_config(tmp_path / "run"))
    assert_refused(["train", "--config", str(config), *DS, override], key, capsys)


@pytest.mark.parametrize("text,suffix,key", [
    ("train: {grad_clip: .inf}\n", ".yaml", "train.grad_clip"),
    ("optim: {lr: .NaN}\n", ".yaml", "optim.lr"),
    ("loader: {batch_size: 0}\n", ".yaml", "loader.batch_size"),
    ("[optim]\nlr = nan\n", ".toml", "optim.lr"),
    ("[train]\nmax_seconds = -inf\n", ".toml", "train.max_seconds"),
    ("[schedule]\nmin_lr_ratio = 2.0\n", ".toml", "schedule.min_lr_ratio"),
])
def test_config_files_get_the_same_checks(text: str, suffix: str, key: str, tmp_path: Path,
                                          capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / f"c{suffix}"
    path.write_text(text)
    with pytest.raises(ConfigError, match=re.escape(key)):
        load_config(path)
    assert_refused(["train", "--config", str(path), f"output_dir={tmp_path / 'run'}"], key, capsys)


def test_configs_built_in_python_are_checked_too() -> None:
    with pytest.raises(ConfigError, match=r"train\.grad_clip must be a positive number \(or null to turn clipping "
                                          r"off\), got -1"):
        TrainConfig(grad_clip=-1)
    cfg = Config()
    with pytest.raises(ConfigError, match="optim.lr must be a positive number"):
        dataclasses.replace(cfg.optim, lr=0.0)
    cfg.train.epochs = 0  # changed after it was built: check_config (which fit runs) still finds it
    with pytest.raises(ConfigError, match="train.epochs must be at least 1, got 0"):
        check_config(cfg)
    cfg.train.epochs, cfg.train.seed = 3, "7"
    with pytest.raises(ConfigError, match="train.seed"):
        check_config(cfg)


def _numeric(hint: object) -> bool:
    args = typing.get_args(hint) or (hint,)
    return any(a in (int, float) for a in args) or any(typing.get_origin(a) is list and typing.get_args(a) == (float,)
                                                       for a in args)


@pytest.mark.parametrize("cls", [*(type(getattr(Config(), f.name)) for f in dataclasses.fields(Config)
                                   if dataclasses.is_dataclass(getattr(Config(), f.name))), CompareConfig],
                         ids=lambda c: c.__name__)
def test_every_numeric_field_declares_its_range(cls: type) -> None:
    hints = typing.get_type_hints(cls)
    missing = [f.name for f in dataclasses.fields(cls) if _numeric(hints[f.name]) and "check" not in f.metadata]
    assert not missing, f"{cls.__name__}: declare the range of {missing} with integer()/number()"


def test_range_rules_read_as_words() -> None:
    assert Range(ge=1).describe() == "at least 1" and Range(gt=0).describe() == "a positive number"
    assert Range(ge=0, lt=1).describe() == "in [0, 1)" and Range(gt=0, lt=1).describe() == "in (0, 1)"
    assert Range(ge=1, le=20).describe() == "between 1 and 20"
    with pytest.raises(ConfigError, match="--x must be a whole number, got 2.5"):
        Range(ge=1, integer=True)("--x", 2.5)
    with pytest.raises(ConfigError, match="not a number"):
        Range(ge=1)("k", True)


# -------------------------------------------------------------------------------------- flags


def _eval(run: Path, *extra: str) -> list[str]:
    return ["eval", "--checkpoint", str(run), "--out", str(run.parent / "eval.json"), *extra]


def _export(run: Path, *extra: str) -> list[str]:
    return ["export", "--checkpoint", str(run), "--out", str(run.parent / "m.onnx"), *extra]


BENCH = ["bench", "--models", "unet", "--size", "32", "--width", "4", "--repeats", "1", "--no-train", "--device", "cpu"]

#: (command builder or argv, extra flags, fragment the error must hold)
FLAG_CASES = [
    (_eval, ["--threshold", "5"], "--threshold"), (_eval, ["--threshold", "0"], "--threshold"),
    (_eval, ["--threshold", "1"], "--threshold"), (_eval, ["--threshold", "-0.5"], "--threshold"),
    (_eval, ["--threshold", "nan"], "--threshold"), (_eval, ["--threshold", "abc"], "--threshold"),
    (_eval, ["--batch-size", "0"], "--batch-size"), (_eval, ["--device", "gpu"], "--device"),
    (_eval, ["--device", "tpu:0"], "--device"), (_eval, ["--data", "missing.yaml"], "--data missing.yaml"),
    (_eval, ["--data", "synthtic"], "did you mean 'synthetic'"), (_eval, ["--split", "tset"], "tset"),
    (_export, ["--size", "-5", "64"], "--size"), (_export, ["--size", "0", "0"], "--size"),
    (_export, ["--opset", "3"], "--opset"), (_export, ["--opset", "11"], "--opset"),
    (_export, ["--opset", "999"], "--opset"), (_export, ["--opset", "-1"], "--opset"),
    (_export, ["--device", "gpu"], None),  # export has no --device: argparse refuses it
    (None, BENCH + ["--size", "-5"], "--size"), (None, BENCH + ["--size", "0"], "--size"),
    (None, BENCH + ["--batch", "0"], "--batch"), (None, BENCH + ["--repeats", "0"], "--repeats"),
    (None, BENCH + ["--in-channels", "0"], "--in-channels"), (None, BENCH + ["--num-classes", "0"], "--num-classes"),
    (None, BENCH + ["--width", "0"], "--width"), (None, BENCH + ["--width", "wide"], "--width"),
    (None, BENCH + ["--models", ""], "--models"), (None, BENCH + ["--models", ","], "--models"),
    (None, BENCH + ["--models", "unett"], "unett"), (None, BENCH + ["--amp", "fp8"], "--amp"),
    (None, BENCH + ["--amp", ""], "--amp"), (None, BENCH + ["--device", "gpu"], "--device"),
]


@pytest.mark.parametrize("build,extra,fragment", FLAG_CASES,
                         ids=[f"{(b.__name__.strip('_') if b else 'bench')}{' '.join(e[-2:])}" for b, e, _ in FLAG_CASES])
def test_flag_out_of_range_is_refused_naming_it(build, extra: list[str], fragment: str | None, run_dir: Path,
                                                capsys: pytest.CaptureFixture) -> None:
    argv = build(run_dir, *extra) if build else extra
    assert_refused(argv, fragment or "unrecognized arguments", capsys)
    assert not (run_dir.parent / "m.onnx").exists() and not (run_dir.parent / "eval.json").exists()


#: compare: (extra flags, fragment). The budget flags are mutually exclusive, so those cases bring their own.
COMPARE_CASES = [
    (["--seeds", "0"], "--seeds must be at least 1"), (["--seeds", "-1"], "--seeds"),
    (["--steps", "0"], "--steps"), (["--epochs", "0"], "--epochs"), (["--minutes", "0"], "--minutes"),
    (["--minutes", "-1"], "--minutes"), (["--minutes", "nan"], "--minutes"),
    (["--base-width", "0"], "--base-width"), (["--lr", "-1"], "--lr"), (["--lr", "nan"], "--lr"),
    (["--lr", "inf"], "--lr"), (["--batch-size", "0"], "--batch-size"), (["--size", "-5"], "--size"),
    (["--folds", "0"], "--folds"), (["--folds", "-2"], "--folds"), (["--folds", "1000"], "--folds"),
    (["--first-seed", "-1"], "--first-seed"), (["--nsd-tolerance", "-1"], "--nsd-tolerance"),
    (["--nsd-tolerance", "nan"], "--nsd-tolerance"), (["--lr-grid", "1e-3,-1"], "--lr-grid"),
    (["--lr-grid", "1e-3,nan"], "--lr-grid"), (["--lr-grid", "1e-3"], "--lr-grid"), (["--lr-grid", "a,b"], "--lr-grid"),
    (["--lr-grid", "1e-3,1e-3"], "--lr-grid"), (["--models", ""], "--models"), (["--models", ","], "--models"),
    (["--models", "unet,unett"], "unett"), (["--loss", "dicece"], "--loss"), (["--augment", "lite"], "--augment"),
    (["--ablations", "unet_dept"], "--ablations"), (["--primary", "dicee"], "--primary"),
    (["--device", "gpu"], "--device"), (["--widths", "tiny"], "--widths"),
    (["--data", "./nothere/"], "--data ./nothere/"),
]


@pytest.mark.parametrize("extra,fragment", COMPARE_CASES, ids=[" ".join(e) for e, _ in COMPARE_CASES])
def test_compare_flag_out_of_range_is_refused_naming_it(extra: list[str], fragment: str, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    budget = [] if {"--steps", "--epochs", "--minutes"} & set(extra) else ["--steps", "1"]
    argv = ["compare", "--models", "unet", "--seeds", "1", *budget, "--base-width", "4", "--size", "32",
            "--no-costs", "--out", str(tmp_path / "report"), *extra]
    assert_refused(argv, fragment, capsys)
    assert not (tmp_path / "report").exists()


#: Misspelled names in a config: refused with close matches.
NAME_OVERRIDES = [
    ("model.name=unett", "did you mean 'unet'"), ("train.device=gpu", "train.device"),
    ("train.device=cuda:x", "train.device"), ("optim.name=adam", "optim.name"),
    ("schedule.name=cosin", "schedule.name"), ("train.amp=fp8", "train.amp"),
    ("model.kwargs.channel=[4,8]", "did you mean 'channels'"),
    ("loss.name=dicece", "did you mean 'dice_ce'"),
]


@pytest.mark.parametrize("override,fragment", NAME_OVERRIDES)
def test_misspelled_names_in_a_config_list_close_matches(override: str, fragment: str, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture) -> None:
    config = write_config(tmp_path / "c.yaml", tiny_config(tmp_path / "run"))
    assert_refused(["train", "--config", str(config), override], fragment, capsys)
