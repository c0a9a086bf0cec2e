"""A model that cannot train on its data is refused in one line before the run folder is written: BatchNorm
layers that a batch gives one value per channel, and model kwargs that disagree with the data."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.reliability.conftest import tiny_config
from unetfamily import create_model
from unetfamily.config import ConfigError, config_from_dict
from unetfamily.engine.train import fit
from unetfamily.models import family_kwargs
from unetfamily.models.norm_check import single_value_norms


def _config(out: Path, size: int = 16, batch: int = 1, **kwargs: object) -> dict:
    cfg = tiny_config(out, epochs=1)
    cfg["model"]["kwargs"] = {"channels": [4, 8, 16, 32, 64], **kwargs}  # four poolings: 16 px -> 1 px
    cfg["data"].update(size=size, num_samples={"train": 3, "val": 2}, augment=None)
    cfg["loader"]["batch_size"] = batch
    return cfg


def test_a_batch_norm_with_one_value_per_channel_is_refused_before_the_run_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"a training batch of 1 image\(s\) of 16x16 gives the BatchNorm2d layer "
                                          r".* one value per channel \(its input is 1x64x1x1\).* loader.batch_size"):
        fit(config_from_dict(_config(tmp_path / "run")))
    with pytest.raises(ConfigError, match=r"InstanceNorm2d layer .* \(its input is 2x64x1x1\)"):  # per image
        fit(config_from_dict(_config(tmp_path / "instance", batch=2, norm="instance")))
    assert not (tmp_path / "run").exists() and not (tmp_path / "instance").exists()
    fit(config_from_dict(_config(tmp_path / "two", batch=2)))  # two images: two values per channel
    fit(config_from_dict(_config(tmp_path / "group", norm="group")))  # statistics over each group's channels


@pytest.mark.parametrize(("name", "norm"), [("unet", "batch"), ("unet", "instance"), ("unet_plusplus", "batch"),
                                          ("unet_3plus", "batch"), ("fcn8s", "batch")])
def test_the_check_finds_what_training_would_refuse_and_leaves_the_model_alone(name: str, norm: str) -> None:
    torch.manual_seed(0)
    model = create_model(name, in_channels=3, num_classes=1, **{**family_kwargs(name, 4), "norm": norm}).eval()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    for shape in ((1, 3, 8, 8), (1, 3, 16, 16), (2, 3, 8, 8), (1, 3, 64, 64), (2, 3, 32, 32)):
        found = single_value_norms(model, shape)
        model.train()
        try:
            model(torch.randn(shape))
            refused = False
        except ValueError as exc:
            refused = "Expected more than 1" in str(exc)
        model.eval().load_state_dict(state)
        assert bool(found) == refused, (name, shape, found)
    assert not model.training and all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"num_classes": 5}, r"model.kwargs.num_classes=5 but the data has 2 classes \(background, foreground\)"),
    ({"in_channels": 3}, r"model.kwargs.in_channels=3 but the training images have 1 channel"),
])
def test_model_kwargs_that_disagree_with_the_data_are_refused(tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        fit(config_from_dict(_config(tmp_path / "run", size=32, batch=2, **kwargs)))
    assert not (tmp_path / "run").exists()
    fit(config_from_dict(_config(tmp_path / "two", size=32, batch=2, num_classes=2)))  # the class count: softmax
