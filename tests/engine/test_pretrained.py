"""Model folders (save_pretrained / from_pretrained): identical outputs, strict loading, atomic writes, the card,
the Hugging Face Hub conventions (offline), and ``unetfamily export --format pretrained`` from a trained run."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

import unetfamily
from unetfamily.cli import main
from unetfamily.config import config_from_dict
from unetfamily.engine.checkpoint import load_checkpoint, load_model
from unetfamily.engine.train import fit
from unetfamily.errors import ConfigError, MissingExtraError
from unetfamily.models import (
    FCN, ModelCard, PretrainedError, SegmentationModel, UNet, UNet3Plus, UNetPlusPlus, create_model, family_of,
    fold_batchnorm, list_models,
)
from unetfamily.models import pretrained as pretrained_mod
from unetfamily.models.input_norm import attach_input_norm

pytestmark = pytest.mark.usefixtures("single_thread")

#: Tiny widths per family (FCN keeps its 5 stages); any registered name builds with them.
TINY = {"fcn": {"channels": [4, 8, 8, 16, 16], "fc_channels": 16},
        "unet": {"channels": [4, 8, 16]}, "unet_plusplus": {"channels": [4, 8, 16]},
        "unet_3plus": {"channels": [4, 8, 16], "cat_channels": 4}}


def tiny(name: str, num_classes: int = 2, in_channels: int = 3, **kwargs: object) -> SegmentationModel:
    torch.manual_seed(0)
    return create_model(name, in_channels=in_channels, num_classes=num_classes,
                        **{**TINY[family_of(name)], **kwargs}).eval()


def outputs(out: object) -> list[torch.Tensor]:
    return [out] if isinstance(out, torch.Tensor) else [t for o in out for t in outputs(o)]


def assert_same_outputs(a: torch.nn.Module, b: torch.nn.Module, shape: tuple[int, ...]) -> None:
    x = torch.rand(shape)
    with torch.no_grad():
        expected, actual = outputs(a(x)), outputs(b(x))
    assert len(expected) == len(actual) and all(torch.equal(e, o) for e, o in zip(expected, actual))


def randomise_norms(model: torch.nn.Module) -> None:
    """Non-trivial BatchNorm statistics, so a loader that dropped them would give other outputs."""
    torch.manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)


@pytest.mark.parametrize("name", list_models())
def test_every_registered_model_reloads_to_identical_outputs(name: str, tmp_path: Path) -> None:
    model = tiny(name)
    randomise_norms(model)
    folder = model.save_pretrained(tmp_path / name)
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    loaded = unetfamily.from_pretrained(folder)
    assert type(loaded) is type(model) and not loaded.training
    assert json.loads((folder / "config.json").read_text())["model"]["name"] == name
    assert_same_outputs(model, loaded, (2, 3, 37, 45))  # odd sizes: padded and cropped


@pytest.mark.parametrize("name, kwargs", [
    ("unet", {"input_norm": {"mean": [0.4, 0.5, 0.6], "std": [0.2, 0.25, 0.3], "clip": [0.05, 0.95]}}),
    ("unet_plusplus", {"num_classes": 1, "deep_supervision": True}),
    ("unet_3plus", {"num_classes": 1, "deep_supervision": True, "cgm": True,
                    "input_norm": {"mean": [0.5] * 3, "std": [0.2] * 3, "clip": None}}),
], ids=["input_norm", "unetpp_deep_supervision", "unet3p_ds_cgm_input_norm"])
def test_models_with_input_norm_and_several_outputs_reload(name: str, kwargs: dict, tmp_path: Path) -> None:
    model = tiny(name, **kwargs)
    randomise_norms(model)
    loaded = unetfamily.from_pretrained(model.save_pretrained(tmp_path / "m"))
    assert_same_outputs(model, loaded, (2, 3, 29, 35))
    saved = json.loads((tmp_path / "m" / "config.json").read_text())["model"]["kwargs"]
    assert {k: saved[k] for k in kwargs} == kwargs  # exactly the arguments create_model was given
    if "input_norm" in kwargs:
        assert loaded.input_norm.spec() == model.input_norm.spec()


@pytest.mark.parametrize("model, name", [
    (lambda: UNet3Plus(in_channels=1, num_classes=3, channels=(4, 8, 16), cat_channels=4, decoder="efficient"),
     "unet_3plus"),
    (lambda: FCN(in_channels=1, num_classes=3, variant="16s", channels=(4, 8, 8, 16, 16), fc_channels=16), "fcn16s"),
    (lambda: UNetPlusPlus(in_channels=1, num_classes=3, channels=[4, 8, 16, 16], deep_supervision=True).pruned(2),
     "unet_plusplus"),
    (lambda: attach_input_norm(UNet(in_channels=1, num_classes=2, channels=(4, 8)), {"mean": [0.3], "std": [0.7]}),
     "unet"),
], ids=["unet3p_class", "fcn16s_class", "unetpp_pruned", "unet_norm_attached_later"])
def test_models_built_from_their_class_reload(model, name: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    built = model().eval()
    loaded = unetfamily.from_pretrained(built.save_pretrained(tmp_path / "m"))
    assert json.loads((tmp_path / "m" / "config.json").read_text())["model"]["name"] == name
    assert loaded.size_multiple == built.size_multiple  # a pruned UNet++ pads like its parent
    assert_same_outputs(built, loaded, (1, 1, 21, 19))


def test_classmethod_checks_the_class_and_the_mixin_hook_refuses_overrides(tmp_path: Path) -> None:
    folder = tiny("unet_plusplus").save_pretrained(tmp_path / "m")
    assert isinstance(UNetPlusPlus.from_pretrained(folder), UNetPlusPlus)
    assert isinstance(SegmentationModel.from_pretrained(folder), UNetPlusPlus)
    with pytest.raises(PretrainedError, match="holds a UNetPlusPlus, not a UNet; load it with unetfamily.from_pretrained"):
        UNet.from_pretrained(folder)
    with pytest.raises(ConfigError, match="strict=False, channels"):
        SegmentationModel._from_pretrained(model_id=str(folder), strict=False, channels=[8, 16])


def test_a_model_changed_after_it_was_built_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PretrainedError, match="changed after it was built"):
        fold_batchnorm(tiny("unet")).save_pretrained(tmp_path / "m")
    assert not (tmp_path / "m").exists()


def _rewrite_weights(folder: Path, change) -> None:  # noqa: ANN001
    """Apply ``change`` to the saved state dict and record the new file's checksum, as a consistent save would."""
    state = load_file(folder / "model.safetensors")
    change(state)
    save_file(state, folder / "model.safetensors")
    config = json.loads((folder / "config.json").read_text())
    config["weights"]["sha256"] = hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
    (folder / "config.json").write_text(json.dumps(config))


def test_missing_and_unexpected_keys_are_named(tmp_path: Path) -> None:
    folder = tiny("unet").save_pretrained(tmp_path / "m")
    key = "head.weight"
    _rewrite_weights(folder, lambda s: s.pop(key))
    with pytest.raises(PretrainedError, match=rf"model.safetensors does not fit .*missing keys: {key}"):
        unetfamily.from_pretrained(folder)
    folder = tiny("unet").save_pretrained(tmp_path / "n")
    _rewrite_weights(folder, lambda s: s.update(extra_bias=torch.zeros(3)))
    with pytest.raises(PretrainedError, match="unexpected keys: extra_bias"):
        unetfamily.from_pretrained(folder)


def test_format_version_checksum_and_missing_files_are_named(tmp_path: Path) -> None:
    folder = tiny("unet").save_pretrained(tmp_path / "m")
    config_path = folder / "config.json"
    config = json.loads(config_path.read_text())
    config_path.write_text(json.dumps({**config, "format_version": 99, "unetfamily_version": "9.0"}))
    with pytest.raises(PretrainedError, match=r"config.json: format version 99 is unknown .*upgrade unetfamily"):
        unetfamily.from_pretrained(folder)
    config_path.write_text(json.dumps({**config, "format": "something-else"}))
    with pytest.raises(PretrainedError, match=r"config.json: not a unetfamily model config"):
        unetfamily.from_pretrained(folder)
    config_path.write_text(json.dumps({**config, "weights": {"sha256": "0" * 64}}))
    with pytest.raises(PretrainedError, match=r"model.safetensors does not match the checksum in .*config.json"):
        unetfamily.from_pretrained(folder)
    config_path.write_text(json.dumps(config))
    (folder / "model.safetensors").unlink()  # what an interrupted non-atomic writer leaves
    with pytest.raises(PretrainedError, match=r"m/model.safetensors not found: the model folder is incomplete"):
        unetfamily.from_pretrained(folder)
    config_path.unlink()
    with pytest.raises(PretrainedError, match=r"m/config.json not found: .*m is not a unetfamily model folder; write"):
        unetfamily.from_pretrained(folder)


def test_an_interrupted_save_leaves_the_earlier_folder_and_no_half_folder(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = tiny("unet"), tiny("unet", channels=[8, 8, 16])
    folder = first.save_pretrained(tmp_path / "m")
    real_write = pretrained_mod._write

    def full_disk(path: Path, data: bytes) -> None:
        if path.name == "model.safetensors":
            real_write(path, data[: len(data) // 2])
            raise OSError(28, "No space left on device")
        real_write(path, data)

    monkeypatch.setattr(pretrained_mod, "_write", full_disk)
    for target in (folder, tmp_path / "new"):
        with pytest.raises(PretrainedError, match=f"could not write {target}: No space left on device"):
            second.save_pretrained(target)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no temporary folder, no half "new"
    assert_same_outputs(first, unetfamily.from_pretrained(folder), (1, 3, 16, 16))


def test_a_folder_holding_other_files_is_not_replaced(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "notes.txt").write_text("mine")
    with pytest.raises(PretrainedError, match=r"holds other files \(notes.txt\)"):
        tiny("unet").save_pretrained(tmp_path / "m")
    assert (tmp_path / "m" / "notes.txt").read_text() == "mine"


def test_bare_card_says_what_is_unknown_and_counts_params_and_macs(tmp_path: Path) -> None:
    model = tiny("unet_3plus", num_classes=1, cgm=True)
    card = (model.save_pretrained(tmp_path / "m") / "README.md").read_text()
    assert "Unknown: the training data was not recorded" in card
    assert "Unknown: no evaluation is recorded" in card and "model-index" not in card
    assert f"| parameters | {sum(p.numel() for p in model.parameters()):,} |" in card
    macs = pretrained_mod.count_macs(model, (1, 3, 256, 256))
    assert f"{macs / 1e6:.3g} M multiply-accumulates per image at 1 x 3 x 256 x 256" in card
    assert "UNet 3+: A Full-Scale Connected UNet for Medical Image Segmentation" in card and "ICASSP 2020" in card
    assert "CGM: a tuple" in card


def test_card_fields_are_checked_and_evaluation_goes_into_the_model_index(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="card: field: unknown value 'evaluations'"):
        tiny("unet").save_pretrained(tmp_path / "m", card={"evaluations": []})
    with pytest.raises(ConfigError, match="needs a 'metric' and a 'split'"):
        ModelCard.of({"evaluation": [{"metric": "dice", "value": 0.5}]})
    rows = [{"metric": "dice", "value": 0.123456789, "split": "test", "dataset": "kvasir", "scope": "seed 0"},
            {"metric": "hd95", "value": None, "split": "test", "dataset": "kvasir"}]
    folder = tiny("unet").save_pretrained(tmp_path / "m", card=ModelCard(evaluation=rows, classes=["bg", "polyp"],
                                                                           resize=[40, 48]))
    text = (folder / "README.md").read_text()
    meta = yaml.safe_load(text.split("---\n")[1])
    assert meta["model-index"][0]["results"][0]["metrics"] == [{"type": "dice", "name": "dice: seed 0",
                                                                 "value": rows[0]["value"]}]
    assert meta["datasets"] == ["kvasir"] and "| dice | test | kvasir | seed 0 | 0.1235 |" in text
    assert "| hd95 | test | kvasir |  | not defined |" in text and "at 1 x 3 x 40 x 48" in text
    config = json.loads((folder / "config.json").read_text())
    assert config["classes"] == ["bg", "polyp"] and config["resize"] == [40, 48]


def test_the_core_install_does_not_import_huggingface_hub(tmp_path: Path) -> None:
    code = ("import sys, unetfamily; m = unetfamily.create_model('unet', channels=[4, 8]); "
            f"unetfamily.from_pretrained(m.save_pretrained({str(tmp_path / 'm')!r})); "
            "assert 'huggingface_hub' not in sys.modules, 'imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_without_huggingface_hub_a_missing_folder_and_push_say_what_to_install(tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # import fails as if not installed
    with pytest.raises(PretrainedError, match=r"nowhere: no such folder.*pip install 'unetfamily\[hub\]'"):
        unetfamily.from_pretrained(tmp_path / "nowhere")
    with pytest.raises(MissingExtraError, match=r"pip install 'unetfamily\[hub\]'"):
        tiny("unet").push_to_hub("me/model")


def test_the_hub_mixin_loads_a_folder_offline(tmp_path: Path) -> None:
    hub = pytest.importorskip("huggingface_hub")

    class Loader(hub.ModelHubMixin):  # the mixin's from_pretrained, calling our _from_pretrained hook
        def __init__(self) -> None:
            pass

        _from_pretrained = SegmentationModel.__dict__["_from_pretrained"]

    model = tiny("unet_plusplus", num_classes=1, deep_supervision=True)
    randomise_norms(model)
    folder = model.save_pretrained(tmp_path / "m")
    assert_same_outputs(model, Loader.from_pretrained(str(folder), local_files_only=True), (1, 3, 20, 24))
    with pytest.raises(PretrainedError, match="no Hugging Face Hub repository could be downloaded"):
        unetfamily.from_pretrained("unetfamily-tests/not-there", local_files_only=True)  # the cache only: offline


def test_push_to_hub_uploads_the_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hub = pytest.importorskip("huggingface_hub")
    uploaded: dict[str, object] = {}

    class FakeApi:  # records what would be uploaded; nothing goes online
        def __init__(self, token: str | None = None) -> None:
            uploaded["token"] = token

        def create_repo(self, repo_id: str, private: bool | None = None, exist_ok: bool = False) -> object:
            return type("RepoUrl", (), {"repo_id": repo_id})()

        def upload_folder(self, repo_id: str, folder_path: Path, **kwargs: object) -> str:
            uploaded["files"] = sorted(p.name for p in Path(folder_path).iterdir())
            uploaded["model"] = unetfamily.from_pretrained(folder_path)
            return f"https://huggingface.co/{repo_id}/commit/0"

    monkeypatch.setattr(hub, "HfApi", FakeApi)
    model = tiny("unet")
    assert model.push_to_hub("me/model", token="t") == "https://huggingface.co/me/model/commit/0"
    assert uploaded["files"] == ["README.md", "config.json", "model.safetensors"] and uploaded["token"] == "t"
    assert_same_outputs(model, uploaded["model"], (1, 3, 16, 16))


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real tiny training run (UNet, 4 classes, images scaled by 1.25 (data.scale), with input normalisation)."""
    root = tmp_path_factory.mktemp("train")
    config = {
        "model": {"name": "unet", "kwargs": {"channels": [4, 8, 16],
                                             "input_norm": {"mean": [0.4], "std": [0.3], "clip": [0.0, 1.0]}}},
        "data": {"type": "synthetic", "num_samples": {"train": 16, "val": 4}, "size": 32, "num_classes": 4,
                 "scale": 1.25},
        "loader": {"batch_size": 8}, "optim": {"lr": 0.005},
        "train": {"epochs": 2, "progress": False, "tensorboard": False}, "output_dir": str(root / "run"),
    }
    fit(config_from_dict(config))
    return root / "run"


def test_export_pretrained_from_a_training_checkpoint(trained_run: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "folder"
    assert main(["export", "--checkpoint", str(trained_run), "--format", "pretrained", "--out", str(out)]) == 0
    assert "exported" in capsys.readouterr().out
    model, ckpt = load_model(trained_run)
    loaded = unetfamily.from_pretrained(out)
    assert_same_outputs(model, loaded, (2, 1, 33, 51))
    config = json.loads((out / "config.json").read_text())
    assert config["scale"] == 1.25 and config["resize"] is None and config["classes"] == ckpt.extra["classes"]
    assert config["model"] == ckpt.config["model"]  # the run's exact name and kwargs, input_norm included
    card = (out / "README.md").read_text()
    entry = load_checkpoint(trained_run).extra["history"][-1]
    meta = yaml.safe_load(card.split("---\n")[1])
    scores = {m["type"]: m["value"] for m in meta["model-index"][0]["results"][0]["metrics"]}
    assert scores["dice"] == entry["dice"] and meta["model-index"][0]["results"][0]["dataset"]["split"] == "val"
    assert "resize images by 1.25 (data.scale)" in card and "at 1 x 1 x 40 x 40" in card
    assert "clip to [0, 1], then (x - mean) / std per channel" in card and "- loss: dice_ce" in card
    assert ckpt.extra["amp"] == "none" and "- amp: none (train.amp auto)" in card  # what "auto" ran as, on the CPU


def test_predict_takes_a_model_folder_with_its_geometry(trained_run: Path, tmp_path: Path) -> None:
    from unetfamily.engine.predict import Predictor

    folder = tmp_path / "folder"
    assert main(["export", "--checkpoint", str(trained_run), "--format", "pretrained", "--out", str(folder)]) == 0
    from_folder, from_run = Predictor.from_checkpoint(folder), Predictor.from_checkpoint(trained_run)
    assert (from_folder.resize, from_folder.scale, from_folder.classes) == \
           (from_run.resize, from_run.scale, from_run.classes) and from_folder.scale == 1.25
    image = torch.rand(1, 37, 53)
    assert torch.equal(from_folder.predict(image).mask, from_run.predict(image).mask)


def test_export_pretrained_refuses_options_it_cannot_apply_and_existing_output(
        trained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["export", "--checkpoint", str(trained_run), "--format", "pretrained", "--out", str(tmp_path / "f")]

    def refused(*extra: str) -> str:
        assert main([*base, *extra]) == 2
        return capsys.readouterr().err

    assert "error: --size, --static apply to ONNX and TorchScript files;" in refused("--size", "64", "64", "--static")
    assert "--level applies to ONNX and TorchScript files; a pretrained folder keeps the whole model" in refused(
        "--level", "2")
    assert not (tmp_path / "f").exists()
    assert main(base) == 0
    assert "exists and would be replaced; pass --overwrite" in refused()
    assert main([*base, "--overwrite", "--no-check"]) == 0
    (tmp_path / "f" / "notes.txt").write_text("mine")
    assert "holds other files (notes.txt)" in refused("--overwrite")
    (tmp_path / "file").write_text("x")
    base[-1] = str(tmp_path / "file")
    assert "is a file; --format pretrained writes a folder" in refused("--overwrite")
