from __future__ import annotations

import pytest

from unetfamily.cli import main


def test_models_lists_registry(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "unet*", "--params"]) == 0
    out = capsys.readouterr().out
    assert "unet_zhou2018" in out and "7,759,521 parameters" in out
    assert "fcn8s" not in out


def test_models_forward(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "unet_3plus", "--forward"]) == 0
    assert "(1, 1, 64, 64)" in capsys.readouterr().out


def test_models_unknown_pattern_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "nothing*"]) == 1
    assert "no model matches" in capsys.readouterr().err


def test_unknown_command_exits_2() -> None:
    with pytest.raises(SystemExit) as exc:
        main(["fly"])
    assert exc.value.code == 2
