"""Encoders with the architectures of ImageNet classifiers, for every decoder family.

``create_model("unet" | "unet_plusplus" | "unet_3plus", encoder=NAME, encoder_weights=PATH)``
puts one of these under the decoder (:mod:`unetfamily.models.encoders.pyramid`); the weights
are read by :mod:`unetfamily.models.encoders.weights` from the layouts of torchvision and timm.
"""
from unetfamily.models.encoders.base import ENCODERS, Backbone, EncoderSpec, encoder_spec, list_encoders, register_encoder

__all__ = ["ENCODERS", "Backbone", "EncoderSpec", "encoder_spec", "list_encoders", "register_encoder"]
from unetfamily.models.encoders import convnext as _convnext  # noqa: E402,F401  (registers)
from unetfamily.models.encoders import resnet as _resnet  # noqa: E402,F401  (registers)
from unetfamily.models.encoders import efficientnet as _efficientnet  # noqa: E402,F401  (registers)
