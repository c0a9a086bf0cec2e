"""unetfamily: the UNet family (FCN-8s/16s/32s, U-Net, UNet++, UNet3+) for 2-D segmentation."""
from __future__ import annotations

import logging

__version__ = "0.1.0"

from unetfamily.models import create_model, from_pretrained, list_models  # noqa: E402

logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = ["__version__", "create_model", "from_pretrained", "list_models"]
