"""The DPT network: backbone + reassemble (``pretrained``), fusion (``scratch``), task head."""

from __future__ import annotations

import torch
from torch import nn

from .backbone import Backbone
from .blocks import FeatureFusionBlock, make_aux_head, make_depth_head, make_segmentation_head
from .variants import Variant, get_variant

__all__ = ["DPT"]


class DPT(nn.Module):
    """One model class for every variant (depth or segmentation, ViT or hybrid).

    ``forward(x)`` takes a normalised (N, 3, H, W) batch, H and W multiples of 32, and returns the raw
    network output at input resolution: (N, H, W) inverse depth for depth variants (metric variants
    included: the metre conversion is :func:`dpt_ros.model.metric_depth`), (N, C, H, W) logits for
    segmentation variants. The auxiliary segmentation head (``auxlayer``) holds checkpoint weights
    but is never run.
    """

    def __init__(self, variant: "Variant | str") -> None:
        super().__init__()
        self.variant = v = get_variant(variant)
        self.pretrained = Backbone(v)
        self.scratch = nn.Module()
        for k in range(4):
            setattr(self.scratch, f"layer{k + 1}_rn",
                    nn.Conv2d(v.channels[k], v.features, kernel_size=3, padding=1, bias=False))
        for k in range(4):
            setattr(self.scratch, f"refinenet{k + 1}", FeatureFusionBlock(v.features, bn=v.use_bn))
        if v.task == "depth":
            self.scratch.output_conv = make_depth_head(v.features, v.non_negative)
        else:
            self.scratch.output_conv = make_segmentation_head(v.features, v.num_classes)
            self.auxlayer = make_aux_head(v.features, v.num_classes)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ValueError for a batch this network cannot take (shape, channels, size)."""
        if x.ndim != 4:
            raise ValueError(f"DPT expects a (N, 3, H, W) batch, got a tensor of shape {tuple(x.shape)}")
        if x.shape[1] != 3:
            raise ValueError(
                f"DPT expects 3 input channels (normalised RGB), got {x.shape[1]} (shape {tuple(x.shape)}); "
                "convert the image to RGB before pre-processing"
            )
        h, w = x.shape[-2:]
        if h % 32 or w % 32 or h == 0 or w == 0:
            raise ValueError(
                f"DPT input height and width must be positive multiples of 32, got {h}x{w}; "
                "resize with the pre-processor (network_input_size(..., multiple=32)) first"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        l1, l2, l3, l4 = self.pretrained(x)
        s = self.scratch
        path = s.refinenet4(s.layer4_rn(l4))
        path = s.refinenet3(path, s.layer3_rn(l3))
        path = s.refinenet2(path, s.layer2_rn(l2))
        path = s.refinenet1(path, s.layer1_rn(l1))
        out = s.output_conv(path)
        if self.variant.task == "depth":
            return out.squeeze(1)
        return out
