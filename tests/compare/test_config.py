"""CompareConfig: checked once, loaded strictly, turned into each run's training Config without a dict round trip."""
from __future__ import annotations

from pathlib import Path

import pytest

from unetfamily.cli import main
from unetfamily.compare.config import ABLATIONS, CompareConfig
from unetfamily.compare.results import CompareResults, Protocol, primary_metric
from unetfamily.compare.plan import base_config, run_config
from unetfamily.compare.variants import build_variants
from unetfamily.config import config_from_dict
from unetfamily.errors import ConfigError


def test_names_resolve_and_all_ablations_expand() -> None:
    cfg = CompareConfig(models=["unet++", "UNet3+", "fcn8s"], ablations=["all"], lr=1, seconds=60)
    assert cfg.models == ["unet_plusplus", "unet_3plus", "fcn8s"]
    assert cfg.ablations == list(ABLATIONS)
    assert isinstance(cfg.lr, float) and isinstance(cfg.seconds, float)


@pytest.mark.parametrize("options,message", [
    ({"models": []}, "--models is empty"),
    ({"models": ["unet+"]}, "'unet_plusplus'"),
    ({"ablations": ["unet_dept"]}, "did you mean 'unet_depth'"),
    ({"seeds": 0}, "--seeds must be at least 1"),
    ({"epochs": 0}, "--epochs must be at least 1"),
    ({"steps": 0}, "--steps must be at least 1"),
    ({"base_width": 0}, "--base-width must be at least 1"),
    ({"batch_size": 0}, "--batch-size must be at least 1"),
    ({"size": 0}, "--size must be at least 1"),
    ({"lr": 0.0}, "--lr must be a positive number"),
    ({"lr": float("nan")}, "--lr must be a positive number"),
    ({"seconds": -5.0}, "--minutes"),
    ({"widths": "tiny"}, "--widths: unknown value 'tiny'"),
    ({"loss": "dice_cee"}, "did you mean 'dice_ce'"),
    ({"augment": "medic"}, "did you mean 'medical'"),
    ({"device": "gpu"}, "--device: unknown value 'gpu'"),
])
def test_bad_options_are_config_errors_naming_the_option(options: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        CompareConfig(**options)


def test_from_dict_is_strict_and_round_trips() -> None:
    with pytest.raises(ConfigError, match="unknown config key seedz"):
        CompareConfig.from_dict({"seedz": 2})
    with pytest.raises(ConfigError, match="wrong type"):
        CompareConfig.from_dict({"seeds": "two"})
    cfg = CompareConfig(models=["unet"], seeds=2, steps=50, size=64, augment="none", command="unetfamily compare")
    assert CompareConfig.from_dict(cfg.to_dict()) == cfg


def test_primary_metric_is_one_rule() -> None:
    # Dice by default for every task (for multi-class tasks: the mean over foreground classes)
    assert primary_metric(CompareConfig()) == "dice" and primary_metric(CompareConfig(primary="nsd")) == "nsd"
    protocol = Protocol.from_dict({"config": {"primary": "hd95"}, "task": "multiclass"})
    assert CompareResults(protocol, [], []).primary_metric == "hd95"


@pytest.mark.parametrize(("options", "message"), [
    ({"folds": 0}, "--folds must be between 1"), ({"folds": 99}, "--folds must be between 1"),
    ({"primary": "dcie"}, "did you mean 'dice'"), ({"nsd_tolerance": -1.0}, "--nsd-tolerance"),
    ({"lr_grid": [0.001]}, "at least two"), ({"lr_grid": [0.001, -1.0]}, "positive"),
    ({"lr_grid": [0.001, 0.001]}, "twice"), ({"first_seed": -1}, "--first-seed"),
])
def test_issue12_options_are_range_checked(options: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        CompareConfig(**options)


def test_seeds_start_at_first_seed() -> None:
    assert CompareConfig(seeds=3, first_seed=5).seed_list == [5, 6, 7]


def test_each_run_config_is_the_base_with_model_seed_and_folder(tmp_path: Path) -> None:
    cfg = CompareConfig(models=["unet", "unet_plusplus"], seeds=2, steps=6, size=32, batch_size=16, base_width=4,
                        lr=0.005, augment="none")
    data = {"type": "synthetic", "size": 32, "augment": None}
    base = base_config(cfg, data)
    variant = build_variants(cfg.models, [], cfg.widths, cfg.base_width, 1, 1)[1]
    run = run_config(base, variant, 1, tmp_path / "seed1")
    # The protocol as the comparison has always written it, spelt out as a mapping.
    expected = config_from_dict({
        "data": data, "loader": {"batch_size": 16}, "loss": {"name": "dice_ce"},
        "optim": {"name": "adamw", "lr": 0.005, "weight_decay": 1e-4}, "schedule": {"name": "cosine", "warmup_steps": 10},
        "train": {"epochs": 10, "max_steps": 6, "max_seconds": None, "device": "cpu", "progress": False,
                  "tensorboard": True, "eval_every": 1, "seed": 1},
        "model": {"name": "unet_plusplus", "kwargs": dict(variant.kwargs)}, "output_dir": str(tmp_path / "seed1"),
    })
    assert run == expected
    assert base.train.seed == 0 and base.model.name == "unet"  # the base is not changed by a run


@pytest.mark.parametrize("argv,message", [
    (["--models", "unet+"], "did you mean"),
    (["--ablations", "depth"], "--ablations: unknown value 'depth'"),
    (["--seeds", "0"], "--seeds must be at least 1"),
    (["--loss", "dice_cee"], "'dice_ce'"),
    (["--augment", "medic"], "'medical'"),
    (["--device", "gpu"], "--device"),
    (["--mlflow-uri", "sqlite:///x.db"], "--mlflow-uri only acts with the mlflow logger: add --loggers "
                                         "tensorboard,mlflow, or leave it out"),
    (["--mlflow-experiment", "seg"], "--mlflow-experiment only acts with the mlflow logger"),
    (["--loggers", "tensorboard,wandb"], "--loggers: unknown value 'wandb'; choose one of mlflow, tensorboard"),
    (["--loggers", "mlflow,mlflow"], "names a logger twice"),
])
def test_command_line_errors_are_one_line_and_exit_2(argv: list[str], message: str, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    assert main(["compare", *argv, "--out", str(tmp_path / "report")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], lines
    assert not (tmp_path / "report").exists()  # refused before anything is written
    assert not (tmp_path / "report").exists()


def test_help_shows_every_default(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        main(["compare", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for default in ("(default: synthetic)", "(default: 3)", "(default: 10)", "(default: small)", "(default: 16)",
                    "(default: 0.001)", "(default: dice_ce)", "(default: cpu)", "(default: reports/compare)"):
        assert default in text, default
