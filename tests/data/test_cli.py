"""``unetfamily dataset`` sub-commands, run in process through ``unetfamily.cli.main``."""

from __future__ import annotations

import json

import pytest

from unetfamily.cli import main


def test_info_text(capsys):
    assert main(["dataset", "info", "synthetic", "--samples", "2"]) == 0
    out = capsys.readouterr().out
    assert "num_model_outputs: 1" in out and "class_fractions (over 2 samples):" in out


def test_info_json_statistics(tmp_path, capsys):
    config = tmp_path / "syn.yaml"
    config.write_text("type: synthetic\nnum_samples: 6\nsize: 48\nnum_classes: 4\n")
    assert main(["dataset", "info", str(config), "--split", "val", "--samples", "6", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["samples"] == 6 and report["classes"] == ["background", "blob", "polygon", "vessel"]
    assert (
        report["image_sizes_hw"] == {"distinct": 1, "smallest": [48, 48], "largest": [48, 48]}
        and report["num_model_outputs"] == 4
    )
    assert abs(sum(report["class_fractions"].values()) - 1) < 1e-4


def test_info_reports_data_errors_with_exit_code_2(tmp_path, capsys):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    config = tmp_path / "bad.yaml"
    config.write_text(f"type: folder\nroot: {tmp_path}\n")
    assert main(["dataset", "info", str(config), "--split", "all"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "no images" in err[0]


def test_unknown_dataset_name_suggests_close_matches(capsys):
    assert main(["dataset", "info", "camvd"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: dataset: unknown value 'camvd'; did you mean 'camvid'? (or give a YAML config path)"]


@pytest.mark.parametrize("command", ["info", "labelme"])
def test_help_shows_every_default(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["dataset", command, "--help"])
    assert exc.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert ("(default: train)" in out and "(default: 8)" in out) if command == "info" else "(default: 255)" in out
