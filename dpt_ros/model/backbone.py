"""timm ViT / hybrid ViT backbone with explicit intermediate features and per-size position embeddings.

The timm model is only a container of modules here (key names ``pretrained.model.*`` as in the
official checkpoints). Its ``forward`` is not used: :meth:`Backbone.forward` calls the patch
embedding (or the ResNet stem and stages), the transformer blocks and the reassemble stages
explicitly, so the features are returned directly, with no global hooks. (timm's own
``forward_intermediates`` would resample the position embedding bicubically with antialiasing;
the released models were trained with a bilinear resize, which is what :func:`resize_pos_embed` does.)
"""

from __future__ import annotations

from collections import OrderedDict
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import Reassemble
from .variants import Variant

__all__ = ["Backbone", "build_vit", "resize_pos_embed"]


def build_vit(variant: Variant) -> nn.Module:
    """The timm VisionTransformer (or R50 hybrid) of a variant, randomly initialised (no download)."""
    from timm.models.vision_transformer import VisionTransformer

    norm_layer = partial(nn.LayerNorm, eps=variant.layer_norm_eps)
    img_size = variant.pos_grid * variant.patch_size
    common = dict(
        img_size=img_size,
        embed_dim=variant.embed_dim,
        depth=variant.depth,
        num_heads=variant.num_heads,
        mlp_ratio=variant.mlp_ratio,
        qkv_bias=True,
        num_classes=0,
        norm_layer=norm_layer,
    )
    if variant.backbone == "vit":
        return VisionTransformer(patch_size=variant.patch_size, **common)

    from timm.layers import StdConv2dSame
    from timm.layers.hybrid_embed import HybridEmbed
    from timm.models.resnetv2 import ResNetV2

    resnet = ResNetV2(
        layers=list(variant.resnet_layers),
        channels=tuple(variant.resnet_channels),
        num_classes=0,
        global_pool="",
        preact=False,
        stem_type="same",
        stem_chs=variant.resnet_stem,
        conv_layer=partial(StdConv2dSame, eps=variant.ws_eps),
    )
    # HybridEmbed reads feature_info.channels() (a FeatureInfo API); ResNetV2 keeps a plain list there.
    # Hide it so the embed uses resnet.num_features instead of running a probe forward pass.
    feature_info = resnet.__dict__.pop("feature_info", None)
    embed = partial(HybridEmbed, backbone=resnet, feature_size=variant.pos_grid, feature_ratio=variant.patch_size)
    vit = VisionTransformer(patch_size=1, embed_layer=embed, **common)
    if feature_info is not None:
        resnet.feature_info = feature_info
    return vit


def resize_pos_embed(pos_embed: torch.Tensor, grid: tuple[int, int], old_grid: int) -> torch.Tensor:
    """Keep the class-token entry, bilinearly resize (align_corners=False) the square grid to ``grid``."""
    if grid == (old_grid, old_grid):
        return pos_embed
    tok, pgrid = pos_embed[:, :1], pos_embed[0, 1:]
    d = pgrid.shape[-1]
    pgrid = pgrid.reshape(1, old_grid, old_grid, d).permute(0, 3, 1, 2)
    pgrid = F.interpolate(pgrid, size=grid, mode="bilinear", align_corners=False)
    pgrid = pgrid.permute(0, 2, 3, 1).reshape(1, grid[0] * grid[1], d)
    return torch.cat((tok, pgrid), dim=1)


class Backbone(nn.Module):
    """``model`` (timm ViT) + ``act_postprocess1..4`` (reassemble). Returns the four stage features."""

    _POS_CACHE_SIZE = 8

    def __init__(self, variant: Variant) -> None:
        super().__init__()
        self.variant = variant
        self.hybrid = variant.backbone == "hybrid"
        self.model = build_vit(variant)
        d = variant.embed_dim
        factors = (4.0, 2.0, 1.0, 0.5)
        for k in range(4):
            if self.hybrid and k < 2:
                stage: nn.Module = nn.Identity()  # R0 / R1 are used unchanged
            else:
                stage = Reassemble(variant.readout, d, variant.channels[k], factors[k])
            self.add_module(f"act_postprocess{k + 1}", stage)
        block_hooks = variant.hooks[2:] if self.hybrid else variant.hooks
        self._block_hooks = tuple(int(h) for h in block_hooks)
        self._last_block = max(self._block_hooks)
        self._pos_cache: "OrderedDict[tuple, torch.Tensor]" = OrderedDict()

    def _apply(self, fn, *args, **kwargs):  # .to(), .half(), .cuda() ... drop cached embeddings
        self._pos_cache.clear()
        return super()._apply(fn, *args, **kwargs)

    def _load_from_state_dict(self, *args, **kwargs):  # new weights (copied in place, or assigned): drop them too
        self._pos_cache.clear()
        return super()._load_from_state_dict(*args, **kwargs)

    def pos_embed(self, grid: tuple[int, int]) -> torch.Tensor:
        """Position embedding for a (rows, cols) token grid, cached per size at inference."""
        pe = self.model.pos_embed
        if torch.is_grad_enabled() and pe.requires_grad:
            return resize_pos_embed(pe, grid, self.variant.pos_grid)
        # a parameter made under torch.inference_mode() (a model built or loaded there) has no version counter;
        # it cannot be changed in place outside inference mode, and a load_state_dict (in it or not) clears the
        # cache: its storage identifies it (only an in-place edit by hand inside inference mode goes unseen)
        version = -1 if pe.is_inference() else pe._version
        key = (grid, pe.data_ptr(), version, pe.dtype, pe.device)
        hit = self._pos_cache.get(key)
        if hit is not None:
            self._pos_cache.move_to_end(key)
            return hit
        out = resize_pos_embed(pe.detach(), grid, self.variant.pos_grid)
        self._pos_cache[key] = out
        while len(self._pos_cache) > self._POS_CACHE_SIZE:
            self._pos_cache.popitem(last=False)
        return out

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        b, _, h, w = x.shape
        p = self.variant.patch_size
        grid = (h // p, w // p)
        m = self.model
        feats: list[torch.Tensor] = []
        if self.hybrid:
            resnet = m.patch_embed.backbone
            y = resnet.stem(x)
            for i, stage in enumerate(resnet.stages):
                y = stage(y)
                if i in self.variant.hooks[:2]:
                    feats.append(y)
            y = m.patch_embed.proj(y)
        else:
            y = m.patch_embed.proj(x)
        tokens = y.flatten(2).transpose(1, 2)
        tokens = torch.cat((m.cls_token.expand(b, -1, -1).to(tokens.dtype), tokens), dim=1)
        tokens = tokens + self.pos_embed(grid).to(tokens.dtype)
        for i in range(self._last_block + 1):
            tokens = m.blocks[i](tokens)
            if i in self._block_hooks:
                feats.append(tokens)
        out = []
        for k, f in enumerate(feats):
            stage = getattr(self, f"act_postprocess{k + 1}")
            out.append(f if isinstance(stage, nn.Identity) else stage(f, grid))
        return out
