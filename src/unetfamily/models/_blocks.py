"""Building blocks shared by every model of the family.

- :func:`make_norm` / :class:`ConvNormAct` / :class:`DoubleConv`: the conv3x3 (+norm) + ReLU
  units all four papers are built from.
- :func:`make_upsample`: transposed-conv or bilinear+1x1 upsampling by 2.
- :class:`SegmentationModel`: the common contract. It checks the input, pads H and W up to the
  model's ``size_multiple`` (bottom/right, zeros), runs ``forward_padded`` and crops every
  4-D output back to (H, W). Any input size therefore works, odd ones included, and the
  decoder's resizes are exact. Its ``renamed_keys`` let checkpoints of unetfamily 0.1.0 load.
  It remembers the arguments it was built with, so that ``save_pretrained`` can write a folder
  (``config.json`` + ``model.safetensors`` + ``README.md``) that ``from_pretrained`` rebuilds it
  from (:mod:`unetfamily.models.pretrained`).
"""
from __future__ import annotations

import inspect
import math
import re
from collections.abc import Iterable, Mapping, MutableMapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unetfamily.errors import ConfigError, unknown_choice
from unetfamily.models._memory import MEMORY_SAVINGS, MemorySaving, memory_saving, recomputing, remember

Norm = Literal["batch", "instance", "group", "none"]
Upsample = Literal["transpose", "bilinear"]
# A model's raw output: logits, a deep-supervision list (final first), or (segmentation, cls logits).
ModelOutput = Union[Tensor, list[Tensor], tuple[Union[Tensor, list[Tensor]], Tensor]]

_NORMS = ("batch", "instance", "group", "none")


def check_choice(name: str, value: object, choices: tuple) -> None:
    """Raise a :class:`~unetfamily.errors.ConfigError` naming the argument and the close matches
    when ``value`` is not one of ``choices``."""
    if value not in choices:
        raise unknown_choice(name, value, [str(c) for c in choices])


def check_channels(channels: tuple[int, ...] | list[int], min_len: int, max_len: int) -> tuple[int, ...]:
    """Validate an encoder width list and return it as a tuple."""
    channels = tuple(int(c) for c in channels)
    if not min_len <= len(channels) <= max_len or any(c < 1 for c in channels):
        raise ConfigError(
            f"channels={channels} must list {min_len} to {max_len} positive widths "
            f"(one per resolution level, shallowest first)"
        )
    return channels


def make_norm(norm: Norm, channels: int) -> nn.Module:
    """A 2-D normalisation layer over ``channels``; ``"group"`` uses gcd(32, channels) groups."""
    check_choice("norm", norm, _NORMS)
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    if norm == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if norm == "group":
        return nn.GroupNorm(math.gcd(32, channels), channels)
    return nn.Identity()


def _norm_act(norm: nn.Module, x: Tensor) -> Tensor:
    """ReLU(norm(x)) without side effects: BatchNorm updates scratch copies of its running statistics."""
    if isinstance(norm, nn.BatchNorm2d) and norm.training and norm.track_running_stats:
        x = F.batch_norm(x, norm.running_mean.clone(), norm.running_var.clone(), norm.weight, norm.bias,
                         True, norm.momentum if norm.momentum is not None else 0.0, norm.eps)
    else:
        x = norm(x)
    return F.relu(x, inplace=True)


class ConvNormAct(nn.Sequential):
    """Conv(k x k, 'same' padding, with bias as in the authors' code) -> norm -> ReLU.

    Under ``memory_saving`` (:mod:`unetfamily.models._memory`) the output is not stored for
    backward: it is recomputed from the conv output, which the norm's backward keeps anyway.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, norm: Norm = "batch") -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2),
            make_norm(norm, out_channels),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: Tensor) -> Tensor:
        """(N, in_channels, H, W) -> (N, out_channels, H, W)."""
        return self.norm_act(self[0](x))

    def norm_act(self, x: Tensor) -> Tensor:
        """Norm and ReLU of a conv output ``x`` (N, out_channels, H, W)."""
        _, norm, act = self
        if isinstance(norm, nn.Identity):
            return act(x)
        if recomputing():  # a checkpointed block re-run in backward: running statistics already updated
            return _norm_act(norm, x)
        return remember(act(norm(x)), _norm_act, norm, x)


class DoubleConv(nn.Sequential):
    """Two :class:`ConvNormAct` 3x3 units: the node of U-Net, UNet++ and the UNet3+ encoder."""

    def __init__(self, in_channels: int, out_channels: int, norm: Norm = "batch") -> None:
        super().__init__(
            ConvNormAct(in_channels, out_channels, 3, norm),
            ConvNormAct(out_channels, out_channels, 3, norm),
        )


def bilinear_kernel(channels: int, kernel_size: int) -> Tensor:
    """Weights (channels, channels, k, k) that make a transposed conv a per-channel bilinear upsampler.

    Made on the CPU whatever the default device: a model built on the meta device (to be counted) would
    otherwise load torch's meta decompositions for ``arange``, about a second the first time.
    """
    factor = (kernel_size + 1) // 2
    center = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    og = torch.arange(kernel_size, dtype=torch.float64, device="cpu")
    filt1d = 1 - (og - center).abs() / factor
    filt = filt1d[:, None] * filt1d[None, :]
    weight = torch.zeros(channels, channels, kernel_size, kernel_size, dtype=torch.float64, device="cpu")
    weight[range(channels), range(channels)] = filt
    return weight.float()


class BilinearUp(nn.Sequential):
    """Bilinear x2 upsampling followed by a 1x1 conv to ``out_channels``."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
            nn.Conv2d(in_channels, out_channels, 1),
        )


def make_upsample(in_channels: int, out_channels: int, mode: Upsample = "transpose", kernel_size: int = 2) -> nn.Module:
    """Exact x2 upsampling: transposed conv (kernel 2, or 4 with padding 1) or bilinear + 1x1 conv."""
    check_choice("upsample", mode, ("transpose", "bilinear"))
    if mode == "bilinear":
        return BilinearUp(in_channels, out_channels)
    check_choice("up_kernel_size", kernel_size, (2, 4))
    return nn.ConvTranspose2d(in_channels, out_channels, kernel_size, stride=2, padding=(kernel_size - 2) // 2)


def final_output(out: ModelOutput) -> Tensor:
    """The final logits (N, num_classes, H, W) of any raw model output (tensor, DS list, CGM tuple)."""
    if isinstance(out, tuple):
        out = out[0]
    return out[0] if isinstance(out, list) else out


def output_tensors(out: ModelOutput) -> list[Tensor]:
    """Every tensor of a raw model output (tensor, DS list, CGM tuple), in order: final logits first."""
    if isinstance(out, Tensor):
        return [out]
    return [t for item in out for t in output_tensors(item)]


def _crop(out: object, height: int, width: int) -> object:
    if isinstance(out, Tensor):
        return out[..., :height, :width] if out.dim() == 4 else out
    if isinstance(out, list):
        return [_crop(o, height, width) for o in out]
    if isinstance(out, tuple):
        return tuple(_crop(o, height, width) for o in out)
    raise TypeError(f"unexpected model output type {type(out).__name__}")


def _key_renames(keys: Iterable[str], renamed_keys: Sequence[tuple[str, str]], prefix: str = "") -> list[tuple[str, str]]:
    """(old, new) for each key under ``prefix`` that a (regex, replacement) of ``renamed_keys`` matches."""
    renames = []
    for key in keys:
        if not key.startswith(prefix):
            continue
        for pattern, replacement in renamed_keys:
            new, count = re.subn(pattern, replacement, key[len(prefix):], count=1)
            if count:
                renames.append((key, prefix + new))
                break
    return renames


class SegmentationModel(nn.Module):
    """Base class: input checks, padding to ``size_multiple`` and cropping back.

    Subclasses set ``in_channels``, ``num_classes`` and ``size_multiple`` and implement
    :meth:`forward_padded`, which sees inputs whose H and W are multiples of ``size_multiple``.
    """

    in_channels: int
    num_classes: int
    size_multiple: int = 1
    #: How training forward passes trade compute for memory; see :meth:`set_memory_saving`.
    memory_saving: MemorySaving = "recompute"
    #: State-dict keys renamed since unetfamily 0.1.0: (regex on the old key, replacement).
    renamed_keys: ClassVar[tuple[tuple[str, str], ...]] = ()
    #: The registry name that builds this class from its constructor arguments (None: not registered).
    registry_name: ClassVar[str | None] = None

    def __new__(cls, *args: Any, **kwargs: Any) -> SegmentationModel:
        # Remember every constructor argument (defaults filled in), as huggingface_hub's ModelHubMixin
        # does, so a model built from its class can be saved and rebuilt by name. Arguments the
        # constructor refuses are left to it; copies (deepcopy, pickle) restore their original's.
        self = super().__new__(cls)
        try:
            bound = inspect.signature(cls.__init__).bind(self, *args, **kwargs)
        except TypeError:
            bound = None
        if bound is not None:
            bound.apply_defaults()
            self.__dict__["_init_kwargs"] = dict(list(bound.arguments.items())[1:])
        return self

    def encoder_modules(self) -> list[nn.Module]:
        """The modules ``encoder_weights`` initialise (an ImageNet backbone); [] when the model has none."""
        backbone = getattr(getattr(self, "encoder", None), "backbone", None)
        return [backbone] if isinstance(backbone, nn.Module) else []

    def load_encoder_weights(self, state: Mapping[str, Tensor], source: str) -> None:
        """Copy an ImageNet classifier's state dict (torchvision's or timm's layout) into the encoder.

        Every key must find its place (a ConfigError naming ``source`` lists missing, unexpected
        and wrongly shaped ones); the classifier head and stages deeper than the model's are dropped.
        """
        encoder = getattr(self, "encoder", None)
        if not hasattr(encoder, "load_weights"):
            raise ConfigError(f"{source}: {type(self).__name__} has no pretrained-architecture encoder; "
                              f"give encoder=NAME (e.g. resnet34) to load ImageNet weights")
        encoder.load_weights(state, source)

    def pretrained_name(self) -> str | None:
        """The registry name :meth:`save_pretrained` records when the model was not built by ``create_model``."""
        return self.registry_name

    def save_pretrained(self, save_directory: str | Path, *, card: Any = None, push_to_hub: bool = False,
                        repo_id: str | None = None, **push_to_hub_kwargs: Any) -> Path:
        """Write ``config.json``, ``model.safetensors`` and a ``README.md`` model card into ``save_directory``.

        ``card``: a :class:`~unetfamily.models.card.ModelCard` (or its dict) with what the model
        alone does not know (training data and config, evaluation, classes, input geometry);
        without one the card says those are unknown. The folder is written atomically (a temporary
        sibling renamed into place) and replaces an earlier model folder there; a folder holding
        other files is refused. ``push_to_hub=True`` then uploads it (:meth:`push_to_hub`).
        Returns the folder. See :func:`unetfamily.models.pretrained.save_pretrained`.
        """
        from unetfamily.models.pretrained import save_pretrained
        from unetfamily.models.pretrained_load import push_to_hub as push

        folder = save_pretrained(self, save_directory, card=card)
        if push_to_hub:
            push(self, repo_id or folder.name, card=card, **push_to_hub_kwargs)
        return folder

    def _save_pretrained(self, save_directory: Path) -> None:
        """ModelHubMixin's hook: write the three files into the existing folder ``save_directory``."""
        from unetfamily.models.pretrained import write_files

        write_files(self, Path(save_directory), None)

    def push_to_hub(self, repo_id: str, *, card: Any = None, **kwargs: Any) -> str:
        """Upload the model folder to the Hugging Face Hub repository ``repo_id``; returns the commit URL.

        Needs ``pip install 'unetfamily[hub]'``; ``kwargs`` go to huggingface_hub (``token``,
        ``private``, ``commit_message``, ``branch``, ``create_pr``).
        """
        from unetfamily.models.pretrained_load import push_to_hub

        return push_to_hub(self, repo_id, card=card, **kwargs)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, *, map_location: str = "cpu",
                        **hub_kwargs: Any) -> SegmentationModel:
        """The model saved by :meth:`save_pretrained` in a folder (or a Hub repository), in eval mode.

        Loading is strict (missing or unexpected weights are an error naming them) and never
        unpickles. Called on a subclass, the folder must hold that class. ``hub_kwargs``
        (``revision``, ``token``, ``cache_dir``, ``force_download``, ``local_files_only``) apply
        to a Hub repository id; see :func:`unetfamily.models.pretrained.from_pretrained`.
        """
        from unetfamily.models.pretrained_load import from_pretrained

        return from_pretrained(pretrained_model_name_or_path, map_location=map_location, expected=cls, **hub_kwargs)

    @classmethod
    def _from_pretrained(cls, *, model_id: str, revision: str | None = None, cache_dir: str | Path | None = None,
                         force_download: bool = False, local_files_only: bool = False, token: str | bool | None = None,
                         map_location: str = "cpu", strict: bool = True, config: Any = None,
                         proxies: Any = None, resume_download: Any = None, **model_kwargs: Any) -> SegmentationModel:
        """ModelHubMixin's hook, with its keyword arguments: load ``model_id`` (a folder or Hub repository).

        ``config`` (what the mixin read from config.json) is read again from the folder and checked
        there; ``strict`` must stay True and no ``model_kwargs`` are taken: the folder alone decides the model.
        """
        from unetfamily.models.pretrained_load import from_pretrained

        if not strict or model_kwargs:
            given = ["strict=False"] * (not strict) + sorted(model_kwargs)
            raise ConfigError(f"from_pretrained takes no {', '.join(given)}: the model is rebuilt exactly as "
                              "config.json says and every weight must fit; leave them out")
        return from_pretrained(model_id, map_location=map_location, expected=cls, revision=revision,
                               cache_dir=cache_dir, force_download=force_download, local_files_only=local_files_only,
                               token=token)

    def upgrade_state_dict(self, state: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """``state`` with the keys that unetfamily 0.1.0 wrote renamed to this model's; others unchanged.

        ``load_state_dict`` does this by itself; call it to compare keys or shapes before loading.
        """
        renames = dict(_key_renames(state, self.renamed_keys))
        return {renames.get(k, k): v for k, v in state.items()}

    def _load_from_state_dict(self, state_dict: MutableMapping[str, Tensor], prefix: str, *args: object) -> None:
        # PyTorch calls this before loading the children, which read the same dict: renaming the
        # 0.1.0 keys here makes every loader (load_state_dict, checkpoints, wrappers) accept them.
        for old, new in _key_renames(list(state_dict), self.renamed_keys, prefix):
            state_dict[new] = state_dict.pop(old)
        super()._load_from_state_dict(state_dict, prefix, *args)

    def set_memory_saving(self, mode: MemorySaving) -> SegmentationModel:
        """Choose how training saves memory (measured in docs/speed.md).

        - ``"recompute"`` (default): cheap tensors (norm + ReLU outputs, resized features,
          concatenations) are recomputed in backward instead of stored; the only convolutions
          re-run are UNet++'s two finest rows of nested nodes on inputs from 256 x 256
          (:meth:`memory_saving_note` says so for a given size). Outputs and gradients are
          bit-identical to ``"none"``.
        - ``"checkpoint"``: also re-run UNet++'s nested nodes in backward from their inputs, and
          convolve UNet3+'s up-sampled sources by channel groups: least memory. Bit-identical,
          except UNet3+ sources wider than 128 channels (equal to float rounding).
        - ``"none"``: store everything autograd asks for (PyTorch's default behaviour).

        Inference (no gradients recorded) is the same in every mode. Returns ``self``.
        """
        check_choice("memory_saving", mode, MEMORY_SAVINGS)
        self.memory_saving = mode
        return self

    def memory_saving_note(self, input_hw: tuple[int, int]) -> str | None:
        """What the memory-saving mode does beyond its description for (H, W) ``input_hw`` inputs, for the log."""
        return None

    def forward(self, x: Tensor) -> ModelOutput:
        """Logits for ``x`` of shape (N, in_channels, H, W); every 4-D output is (N, num_classes, H, W)."""
        with memory_saving(self.memory_saving):
            return self.run_padded(self.forward_padded, x)

    def forward_padded(self, x: Tensor) -> ModelOutput:  # pragma: no cover - abstract
        raise NotImplementedError

    def run_padded(self, fn, x: Tensor, *args: object) -> ModelOutput:
        """Call ``fn(x_padded, *args)`` and crop its 4-D outputs back to the input's H, W."""
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ConfigError(
                f"{type(self).__name__} expects input of shape (N, {self.in_channels}, H, W), got "
                f"{tuple(x.shape)}; build the model with in_channels={x.shape[1] if x.dim() == 4 else '?'} "
                f"or convert the images"
            )
        height, width = x.shape[-2:]
        m = self.size_multiple
        pad_h, pad_w = (-height) % m, (-width) % m
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
            return _crop(fn(x, *args), height, width)
        return fn(x, *args)
