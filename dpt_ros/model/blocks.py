"""DPT building blocks: readout, reassemble, fusion (with residual conv units) and heads.

Attribute names follow the official implementation (isl-org/DPT) so that official state dicts load
without renaming; :mod:`dpt_ros.model.checkpoint` maps Hugging Face names onto them.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "ProjectReadout",
    "IgnoreReadout",
    "AddReadout",
    "make_readout",
    "Reassemble",
    "ResidualConvUnit",
    "FeatureFusionBlock",
    "Interpolate",
    "make_depth_head",
    "make_segmentation_head",
    "make_aux_head",
]


class ProjectReadout(nn.Module):
    """Readout "project": concatenate every patch token with the class token, Linear(2D -> D), GELU."""

    def __init__(self, dim: int, start_index: int = 1) -> None:
        super().__init__()
        self.start_index = start_index
        self.project = nn.Sequential(nn.Linear(2 * dim, dim), nn.GELU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        patches = x[:, self.start_index:]
        readout = x[:, :1].expand_as(patches)
        return self.project(torch.cat((patches, readout), dim=-1))


class IgnoreReadout(nn.Module):
    """Readout "ignore": drop the class token."""

    def __init__(self, start_index: int = 1) -> None:
        super().__init__()
        self.start_index = start_index

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, self.start_index:]


class AddReadout(nn.Module):
    """Readout "add": add the class token to every patch token."""

    def __init__(self, start_index: int = 1) -> None:
        super().__init__()
        self.start_index = start_index

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, self.start_index:] + x[:, :1]


def make_readout(kind: str, dim: int) -> nn.Module:
    if kind == "project":
        return ProjectReadout(dim)
    if kind == "ignore":
        return IgnoreReadout()
    if kind == "add":
        return AddReadout()
    raise ValueError(f"readout must be 'project', 'ignore' or 'add', got {kind!r}")


class Reassemble(nn.Module):
    """Tokens -> image-like feature map: readout, tokens to the runtime grid, 1x1 conv, resample.

    Children are registered as ``0`` (readout), ``3`` (1x1 conv) and ``4`` (resample) to match the
    official ``act_postprocess{k}`` Sequential indices.
    """

    def __init__(self, readout: str, dim: int, channels: int, factor: float) -> None:
        super().__init__()
        self.add_module("0", make_readout(readout, dim))
        self.add_module("3", nn.Conv2d(dim, channels, kernel_size=1))
        if factor > 1:
            f = int(factor)
            resample: nn.Module = nn.ConvTranspose2d(channels, channels, kernel_size=f, stride=f)
        elif factor == 1:
            resample = nn.Identity()
        else:
            resample = nn.Conv2d(channels, channels, kernel_size=3, stride=int(round(1 / factor)), padding=1)
        self.add_module("4", resample)

    def forward(self, tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        x = getattr(self, "0")(tokens)
        b, n, d = x.shape
        x = x.transpose(1, 2).reshape(b, d, grid[0], grid[1])
        x = getattr(self, "3")(x)
        return getattr(self, "4")(x)


class ResidualConvUnit(nn.Module):
    """ReLU -> 3x3 conv -> [BN] -> ReLU -> 3x3 conv -> [BN] -> + input."""

    def __init__(self, features: int, bn: bool) -> None:
        super().__init__()
        self.bn = bn
        self.conv1 = nn.Conv2d(features, features, 3, padding=1, bias=not bn)
        self.conv2 = nn.Conv2d(features, features, 3, padding=1, bias=not bn)
        if bn:
            self.bn1 = nn.BatchNorm2d(features)
            self.bn2 = nn.BatchNorm2d(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(x))
        if self.bn:
            out = self.bn1(out)
        out = self.conv2(F.relu(out))
        if self.bn:
            out = self.bn2(out)
        return out + x


class FeatureFusionBlock(nn.Module):
    """out = x (+ RCU1(skip)) -> RCU2 -> bilinear x2 (align_corners=True) -> 1x1 conv."""

    def __init__(self, features: int, bn: bool) -> None:
        super().__init__()
        self.resConfUnit1 = ResidualConvUnit(features, bn)
        self.resConfUnit2 = ResidualConvUnit(features, bn)
        self.out_conv = nn.Conv2d(features, features, kernel_size=1, bias=True)

    def forward(self, x: torch.Tensor, skip: Optional[torch.Tensor] = None) -> torch.Tensor:
        if skip is not None:
            x = x + self.resConfUnit1(skip)
        x = self.resConfUnit2(x)
        x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=True)
        return self.out_conv(x)


class Interpolate(nn.Module):
    """Bilinear x2 upsampling as a module (keeps the official Sequential indices)."""

    def __init__(self, scale_factor: float = 2.0, mode: str = "bilinear", align_corners: bool = True) -> None:
        super().__init__()
        self.scale_factor = scale_factor
        self.mode = mode
        self.align_corners = align_corners

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=self.scale_factor, mode=self.mode, align_corners=self.align_corners)


def make_depth_head(features: int, non_negative: bool = True) -> nn.Sequential:
    """Conv3x3 F->F/2, x2, Conv3x3 F/2->32, ReLU, Conv1x1 32->1, ReLU (non_negative), Identity."""
    return nn.Sequential(
        nn.Conv2d(features, features // 2, kernel_size=3, padding=1),
        Interpolate(2.0),
        nn.Conv2d(features // 2, 32, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(32, 1, kernel_size=1),
        nn.ReLU(inplace=True) if non_negative else nn.Identity(),
        nn.Identity(),
    )


def make_segmentation_head(features: int, num_classes: int) -> nn.Sequential:
    """Conv3x3 (no bias), BN, ReLU, Dropout 0.1, Conv1x1 -> classes, bilinear x2."""
    return nn.Sequential(
        nn.Conv2d(features, features, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(features),
        nn.ReLU(inplace=True),
        nn.Dropout(0.1),
        nn.Conv2d(features, num_classes, kernel_size=1),
        Interpolate(2.0),
    )


def make_aux_head(features: int, num_classes: int) -> nn.Sequential:
    """The training-time auxiliary head (the segmentation head without the final upsampling):
    loaded from checkpoints, never run at inference."""
    return nn.Sequential(*list(make_segmentation_head(features, num_classes))[:-1])
