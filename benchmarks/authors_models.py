"""Baselines for the speed benchmarks: the UNet3+ authors' PyTorch models, rebuilt module for module.

The UNet3+ authors published one PyTorch repository with all three models (its ``UNet``,
``UNet_2Plus`` and ``UNet_3Plus``; widths 64..1024, 3 input channels, 1 class). This file
rebuilds them from their published structure, written for this project (no code copied), so
that ``benchmarks/speed.py`` can time OUR implementation of the same architectures against
THEIR way of computing it, in the same process and on the same machine:

- ``unetConv2``-style blocks: conv3x3 (+BN) + in-place ReLU, ``n`` times; BN only in the encoder.
- U-Net up step: 4x4 stride-2 transposed conv, concatenation with the skip, two conv3x3 + ReLU.
- UNet++ nodes: the same up step with every earlier node of the row concatenated.
- UNet3+ decoder: one ``nn.MaxPool2d(k, k, ceil_mode=True)`` per shallower source straight from
  the encoder feature (pool by 8 is done from full resolution, not from the pool by 4), one
  ``nn.Upsample(scale_factor=s, mode="bilinear")`` per deeper source, each followed by
  conv3x3 -> 64 + BN + ReLU; the 320-channel concatenation fused by conv3x3 + BN + ReLU; a
  conv3x3 head and a sigmoid baked into the model (their defect, kept here: it is their cost).

Parameter counts and FLOPs equal our ``*_huang2020`` presets (``tests/models/test_authors_baselines.py``).
These classes are benchmark baselines only; they are not part of the package.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

WIDTHS = (64, 128, 256, 512, 1024)


def conv_block(cin: int, cout: int, batchnorm: bool, n: int = 2) -> nn.Sequential:
    """``n`` x (conv3x3 [+ BN] + in-place ReLU), Kaiming-initialised like the authors' ``unetConv2``."""
    layers: list[nn.Module] = []
    for i in range(n):
        conv = nn.Conv2d(cin if i == 0 else cout, cout, 3, 1, 1)
        nn.init.kaiming_normal_(conv.weight)
        layers += [conv, nn.BatchNorm2d(cout)] if batchnorm else [conv]
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class UpConcat(nn.Module):
    """Transposed conv x2 of the deeper input, concatenated with every skip, then two conv3x3 (no BN)."""

    def __init__(self, cin: int, cout: int, n_concat: int = 2) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(cin, cout, 4, 2, 1)
        self.conv = conv_block(cin + (n_concat - 2) * cout, cout, batchnorm=False)

    def forward(self, deeper: Tensor, *skips: Tensor) -> Tensor:
        out = self.up(deeper)
        for skip in skips:
            out = torch.cat([out, skip], 1)
        return self.conv(out)


class Encoder(nn.Module):
    """Five conv blocks with BN, max-pool 2 between them; returns every level's feature."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(conv_block(in_channels if i == 0 else WIDTHS[i - 1], c, True) for i, c in enumerate(WIDTHS))
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: Tensor) -> list[Tensor]:
        feats = []
        for i, block in enumerate(self.blocks):
            x = block(x if i == 0 else self.pool(x))
            feats.append(x)
        return feats


class AuthorsUNet(nn.Module):
    """Their ``UNet``: 39.40M parameters at 3 in, 1 out."""

    def __init__(self, in_channels: int = 3, num_classes: int = 1) -> None:
        super().__init__()
        self.encoder = Encoder(in_channels)
        self.ups = nn.ModuleList(UpConcat(WIDTHS[i + 1], WIDTHS[i]) for i in range(4))
        self.head = nn.Conv2d(WIDTHS[0], num_classes, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.encoder(x)
        d = h[4]
        for i in reversed(range(4)):
            d = self.ups[i](d, h[i])
        return self.head(d)


class AuthorsUNet2Plus(nn.Module):
    """Their ``UNet_2Plus`` (UNet++): nodes x_i_j, 1x1 heads on x_0_1..x_0_4; 47.18M parameters."""

    def __init__(self, in_channels: int = 3, num_classes: int = 1, deep_supervision: bool = False) -> None:
        super().__init__()
        self.encoder = Encoder(in_channels)
        self.deep_supervision = deep_supervision
        self.nodes = nn.ModuleDict(
            {f"x_{i}_{j}": UpConcat(WIDTHS[i + 1], WIDTHS[i], j + 1) for j in range(1, 5) for i in range(5 - j)}
        )
        self.heads = nn.ModuleList(nn.Conv2d(WIDTHS[0], num_classes, 1) for _ in range(4))

    def forward(self, x: Tensor) -> Tensor:
        row: dict[tuple[int, int], Tensor] = {(i, 0): h for i, h in enumerate(self.encoder(x))}
        for j in range(1, 5):
            for i in range(5 - j):
                row[i, j] = self.nodes[f"x_{i}_{j}"](row[i + 1, j - 1], *(row[i, k] for k in range(j)))
        outs = [head(row[0, j + 1]) for j, head in enumerate(self.heads)]
        return sum(outs) / 4 if self.deep_supervision else outs[3]


def branch(cin: int, cout: int = 64) -> nn.Sequential:
    """conv3x3 + BN + ReLU: one full-scale branch (or, with 320 -> 320, the fusion)."""
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class AuthorsUNet3Plus(nn.Module):
    """Their ``UNet_3Plus`` (no deep supervision): 26.97M parameters, sigmoid baked in."""

    def __init__(self, in_channels: int = 3, num_classes: int = 1) -> None:
        super().__init__()
        self.encoder = Encoder(in_channels)
        cat, up_ch = 64, 320
        # decoder[i] holds, per source k, (resampler, conv-BN-ReLU); then the fusion.
        self.resample = nn.ModuleList()
        self.branches = nn.ModuleList()
        for i in range(4):
            res, brs = nn.ModuleList(), nn.ModuleList()
            for k in range(5):
                if k < i:
                    res.append(nn.MaxPool2d(2 ** (i - k), 2 ** (i - k), ceil_mode=True))
                elif k == i:
                    res.append(nn.Identity())
                else:
                    res.append(nn.Upsample(scale_factor=2 ** (k - i), mode="bilinear"))
                brs.append(branch(WIDTHS[k] if k <= i or k == 4 else up_ch, cat))
            self.resample.append(res)
            self.branches.append(brs)
        self.fuse = nn.ModuleList(branch(up_ch, up_ch) for _ in range(4))
        self.head = nn.Conv2d(up_ch, num_classes, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.encoder(x)
        d: dict[int, Tensor] = {4: h[4]}
        for i in reversed(range(4)):
            sources = [h[k] if k <= i else d[k] for k in range(5)]
            parts = [self.branches[i][k](self.resample[i][k](s)) for k, s in enumerate(sources)]
            d[i] = self.fuse[i](torch.cat(parts, 1))
        return torch.sigmoid(self.head(d[0]))


AUTHORS = {"unet_huang2020": AuthorsUNet, "unet_plusplus_huang2020": AuthorsUNet2Plus, "unet_3plus_huang2020": AuthorsUNet3Plus}
