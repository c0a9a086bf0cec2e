"""Models of the UNet family and the registry that builds them by name.

Every model maps (N, in_channels, H, W) to logits (N, num_classes, H, W) for any H, W; with
deep supervision it returns a list (final output first), with the UNet3+ CGM a tuple
(segmentation, classification logits).

``model.save_pretrained(DIR)`` writes a folder (config.json, model.safetensors, README.md model
card) that :func:`from_pretrained` loads back (:mod:`unetfamily.models.pretrained`).
"""
from unetfamily.models._blocks import ModelOutput, SegmentationModel, final_output, output_tensors
from unetfamily.models._fold import fold_batchnorm
from unetfamily.models._memory import MemorySaving
from unetfamily.models.families import FAMILIES, Family, family_kwargs, family_of, model_label
from unetfamily.models._registry import (
    create_model, list_models, model_entrypoint, rebuild_kwargs, register_model, resolve_model_name,
)
from unetfamily.models.card import ModelCard
from unetfamily.models.encoder import FeatureInfo, UNetEncoder
from unetfamily.models.fcn import FCN
from unetfamily.models.field import receptive_field
from unetfamily.models.layout import prefers_channels_last
from unetfamily.models.pretrained import PretrainedError
from unetfamily.models.pretrained_load import from_pretrained
from unetfamily.models.unet import UNet
from unetfamily.models.unet_3plus import UNet3Plus
from unetfamily.models.unet_plusplus import UNetPlusPlus

__all__ = [
    "FAMILIES",
    "FCN",
    "FeatureInfo",
    "Family",
    "MemorySaving",
    "ModelCard",
    "ModelOutput",
    "PretrainedError",
    "SegmentationModel",
    "UNet",
    "UNet3Plus",
    "UNetEncoder",
    "UNetPlusPlus",
    "create_model",
    "family_kwargs",
    "family_of",
    "model_label",
    "prefers_channels_last",
    "rebuild_kwargs",
    "receptive_field",
    "final_output",
    "output_tensors",
    "fold_batchnorm",
    "from_pretrained",
    "list_models",
    "model_entrypoint",
    "register_model",
    "resolve_model_name",
]
