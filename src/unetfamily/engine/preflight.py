"""Checks of a run's model against its data before anything is written into the run folder.

A model that cannot train on the data must be refused with one line naming the option to change, not by a
traceback from the first step after the run folder was written (and then refused as "already holds a run").
"""
from __future__ import annotations

import dataclasses
from typing import Any

from torch import nn

from unetfamily.config import Config, ConfigError
from unetfamily.models.norm_check import single_value_norms

__all__ = ["with_data_shapes", "check_batch_statistics"]


def with_data_shapes(cfg: Config, info: Any) -> Config:
    """``cfg`` with ``in_channels`` and ``num_classes`` from the data ``info`` filled into ``model.kwargs`` (so the
    saved config rebuilds the model); a ConfigError when the config gives either and the data disagrees.

    ``num_classes`` may be the data's class count or the outputs it needs (1 for two classes, a sigmoid).
    """
    kwargs = {**cfg.model.kwargs}
    given_in, given_out = kwargs.get("in_channels"), kwargs.get("num_classes")
    if given_in is not None and given_in != info.in_channels:
        raise ConfigError(f"model.kwargs.in_channels={given_in!r} but the training images have {info.in_channels} "
                          "channel(s); leave in_channels out (it is taken from the data) or set data.in_channels")
    if given_out is not None and given_out not in (info.num_model_outputs, info.num_classes):
        raise ConfigError(f"model.kwargs.num_classes={given_out!r} but the data has {info.num_classes} classes "
                          f"({', '.join(map(str, info.classes))}); leave num_classes out (a model for this data "
                          f"outputs {info.num_model_outputs}) or fix the data's classes")
    kwargs.setdefault("in_channels", info.in_channels)
    kwargs.setdefault("num_classes", info.num_model_outputs)
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, kwargs=kwargs))


def check_batch_statistics(model: nn.Module, batch: int, in_channels: int, input_hw: tuple[int, int]) -> None:
    """A ConfigError when a training batch of ``batch`` images of ``input_hw`` (H, W) gives one of ``model``'s
    BatchNorm or InstanceNorm layers a single value per channel to compute its statistics from (PyTorch refuses
    it in the first step)."""
    found = single_value_norms(model, (batch, in_channels, *input_hw))
    if not found:
        return
    name, shape = found[0]
    kind = type(model.get_submodule(name)).__name__
    larger = "a larger loader.batch_size, " if "Batch" in kind else ""
    raise ConfigError(
        f"a training batch of {batch} image(s) of {input_hw[0]}x{input_hw[1]} gives the {kind} layer {name} one "
        f"value per channel (its input is {'x'.join(map(str, shape))}), from which no statistics can be computed; "
        f"use {larger}larger images (data.resize), fewer levels (model.kwargs.channels), or group normalisation "
        "(model.kwargs.norm: group, where the model takes it)")
