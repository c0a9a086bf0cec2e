from __future__ import annotations

import pytest
import yaml

from unetfamily.cli import main


def test_models_lists_registry(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "unet*", "--params"]) == 0
    out = capsys.readouterr().out
    assert "unet_zhou2018" in out and "7,759,521 parameters" in out
    assert "fcn8s" not in out


def test_models_forward(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "unet_3plus", "--forward"]) == 0
    assert "(1, 1, 64, 64)" in capsys.readouterr().out


def test_models_lists_encoders(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "--encoders"]) == 0
    lines = {line.split("\t")[0]: line.split("\t") for line in capsys.readouterr().out.splitlines()}
    # parameters of torchvision's resnet34 without its fc layer (21,797,672 - 513,000)
    assert lines["resnet34"][1] == "21,284,672" and lines["resnet34"][3] == "2/4/8/16/32"
    assert lines["convnext_tiny"][3] == "4/8/16/32" and "timm convnext_tiny" in lines["convnext_tiny"][5]


def test_models_unknown_pattern_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "nothing*"]) == 2
    assert "no model matches" in capsys.readouterr().err


def test_unknown_command_exits_2() -> None:
    with pytest.raises(SystemExit) as exc:
        main(["fly"])
    assert exc.value.code == 2


def test_bad_input_is_an_error_line_not_a_traceback(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml: config file not found" in capsys.readouterr().err
    assert main(["train", "train.epochz=3"]) == 2
    assert "unknown config key train.epochz" in capsys.readouterr().err
    assert main(["eval", "--checkpoint", str(tmp_path)]) == 2
    assert "no checkpoint in run folder" in capsys.readouterr().err


def test_unknown_device_names_the_close_match(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", "--checkpoint", str(tmp_path), "--device", "cpux"]) == 2
    assert "error: --device: unknown value 'cpux'; did you mean 'cpu'?" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["train", "eval", "predict", "export"])
def test_every_option_has_help_and_shows_its_default(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    from unetfamily.cli import build_parser

    subparsers = next(a for a in build_parser()._actions if a.dest == "command")
    parser = subparsers.choices[command]
    assert all(action.help for action in parser._actions), [a.dest for a in parser._actions if not a.help]
    with pytest.raises(SystemExit):
        main([command, "--help"])
    assert "(default:" in capsys.readouterr().out


def test_error_types_share_one_base() -> None:
    from unetfamily.config import ConfigError
    from unetfamily.data.errors import DataConfigError
    from unetfamily.data.errors import DataError
    from unetfamily.engine.checkpoint import CheckpointError
    from unetfamily.errors import UnetFamilyError

    for cls in (ConfigError, DataConfigError, DataError, CheckpointError):
        assert issubclass(cls, UnetFamilyError)
    assert issubclass(DataConfigError, ConfigError) and issubclass(DataError, ValueError)


def test_a_message_that_spans_lines_is_printed_as_one_error_line(monkeypatch, capsys) -> None:
    # Third-party messages (tarfile's, PyYAML's) can span lines; the error line must stay the whole message.
    from unetfamily.cli import dataset as dataset_cli
    from unetfamily.errors import ConfigError

    def fail(args):
        raise ConfigError("a.tar: cannot open:\n- method gz: bad\n\n- method tar: 'invalid header'")

    monkeypatch.setattr(dataset_cli, "run_info", fail)
    assert main(["dataset", "info", "synthetic"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1] == "error: a.tar: cannot open: - method gz: bad - method tar: 'invalid header'"


def test_overrides_after_a_flag_are_overrides_and_other_strays_are_refused(tmp_path, capsys) -> None:  # noqa: ANN001
    out = tmp_path / "run"
    assert main(["train", f"output_dir={out}", "data.type=synthetic", "data.size=16", "--overwrite",
                 "train.max_steps=1", "model.kwargs={channels: [4, 8]}", "train.progress=false"]) == 0
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["train"]["max_steps"] == 1 and saved["model"]["kwargs"]["channels"] == [4, 8]
    with pytest.raises(SystemExit):
        main(["train", f"output_dir={out}", "--overwrite", "--bogus", "x=1"])
    assert "unrecognized arguments: --bogus x=1" in capsys.readouterr().err
