"""``unetfamily dataset`` sub-commands, run in process."""

from __future__ import annotations

import argparse
import json

from unetfamily.data.cli import add_parser


def run_cli(argv: list[str]) -> int:
    """Parse and run ``argv`` with the data commands only (unetfamily.cli.main adds the others)."""
    parser = argparse.ArgumentParser(prog="unetfamily")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_main_registers_the_dataset_command(capsys):
    from unetfamily.cli import main

    assert main(["dataset", "info", "synthetic", "--samples", "2"]) == 0
    assert "num_model_outputs: 1" in capsys.readouterr().out


def test_info_json_statistics(tmp_path, capsys):
    config = tmp_path / "syn.yaml"
    config.write_text("type: synthetic\nnum_samples: 6\nsize: 48\nnum_classes: 4\n")
    assert run_cli(["dataset", "info", str(config), "--split", "val", "--samples", "6", "--json"]) == 0
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
    assert run_cli(["dataset", "info", str(config), "--split", "all"]) == 2
    assert "no images" in capsys.readouterr().err
