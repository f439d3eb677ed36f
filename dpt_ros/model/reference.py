"""Hugging Face transformers DPT as a reference: same-shape configs and shared random weights.

Used by the parity tests and ``dpt_ros.tools.bench_model``. ``transformers`` is a test/benchmark
dependency only and is imported lazily.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn

from .checkpoint import official_to_hf
from .dpt import DPT
from .variants import Variant, get_variant

__all__ = ["hf_config", "build_hf_model", "random_state_dict", "build_pair"]


def hf_config(variant: "Variant | str", image_size: Optional[int] = None, auxiliary_head: bool = True):
    """A ``transformers.DPTConfig`` with the architecture of ``variant``.

    LayerNorm eps is taken from the variant (1e-6, as timm and the official models), not HF's 1e-12
    default, so both implementations compute the same function. ``auxiliary_head`` (segmentation variants): HF's
    training-only auxiliary head, which ``DPTForSemanticSegmentation`` computes in every forward pass when it has
    one (ours holds ``auxlayer`` but never runs it, as the official inference).
    """
    from transformers import DPTConfig

    v = get_variant(variant)
    kw = dict(
        hidden_size=v.embed_dim,
        num_hidden_layers=v.depth,
        num_attention_heads=v.num_heads,
        intermediate_size=int(v.embed_dim * v.mlp_ratio),
        hidden_act="gelu",
        layer_norm_eps=v.layer_norm_eps,
        image_size=image_size or v.pos_grid * v.patch_size,
        patch_size=v.patch_size,
        qkv_bias=True,
        backbone_out_indices=list(v.hooks),
        readout_type=v.readout,
        reassemble_factors=[4, 2, 1, 0.5],
        neck_hidden_sizes=list(v.channels),
        fusion_hidden_size=v.features,
        use_batch_norm_in_fusion_residual=v.use_bn,
        use_auxiliary_head=auxiliary_head and v.task == "segmentation",
        is_hybrid=v.backbone == "hybrid",
    )
    if v.task == "segmentation":
        kw["num_labels"] = v.num_classes
    if v.backbone == "hybrid":
        kw["backbone_config"] = dict(
            model_type="bit",
            global_padding="same",
            layer_type="bottleneck",
            depths=list(v.resnet_layers),
            hidden_sizes=list(v.resnet_channels),
            embedding_size=v.resnet_stem,
            out_features=[f"stage{i + 1}" for i in range(len(v.resnet_layers))],
            embedding_dynamic_padding=True,
        )
        kw["backbone_featmap_shape"] = [1, v.resnet_channels[-1], v.pos_grid, v.pos_grid]
        kw["neck_ignore_stages"] = [0, 1]
    return DPTConfig(**kw)


def build_hf_model(variant: "Variant | str", state_dict: Optional[dict] = None, image_size: Optional[int] = None,
                   auxiliary_head: bool = True):
    """HF ``DPTForDepthEstimation`` / ``DPTForSemanticSegmentation`` for ``variant`` in eval mode.

    With ``state_dict`` (official names) the model is built on the meta device and takes those tensors
    (through :func:`official_to_hf`), strictly. ``auxiliary_head=False``: a segmentation model without HF's
    auxiliary head (see :func:`hf_config`; its ``auxlayer.*`` tensors are left out), for timing what the
    official inference runs.
    """
    from transformers import DPTForDepthEstimation, DPTForSemanticSegmentation

    v = get_variant(variant)
    cls = DPTForSemanticSegmentation if v.task == "segmentation" else DPTForDepthEstimation
    cfg = hf_config(v, image_size, auxiliary_head=auxiliary_head)
    if state_dict is None:
        return cls(cfg).eval()
    with torch.device("meta"):
        model = cls(cfg)
    hf_sd = official_to_hf(state_dict)
    if not cfg.use_auxiliary_head:
        hf_sd = {k: t for k, t in hf_sd.items() if not k.startswith("auxiliary_head.")}
    model.load_state_dict(hf_sd, strict=True, assign=True)
    for name, buf in model.named_buffers():
        if buf.is_meta:  # non-persistent buffers (none expected) would stay on meta
            raise RuntimeError(f"HF buffer {name} not initialised")
    return model.eval()


def random_state_dict(variant: "Variant | str", seed: int = 0) -> dict[str, torch.Tensor]:
    """Random official-named weights for ``variant`` that keep activations in a sane range.

    Faster than module initialisation for full-size models (everything is drawn from one generator):
    matrices ~ N(0, 1/fan_in), biases and norm shifts ~ N(0, 0.05^2), norm scales ~ 1 + N(0, 0.05^2),
    position embedding / class token ~ N(0, 0.02^2), BatchNorm running variance in [0.5, 1.5].
    """
    v = get_variant(variant)
    with torch.device("meta"):
        meta = DPT(v)
    kinds: dict[str, str] = {}
    for name, mod in meta.named_modules():
        if isinstance(mod, (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._BatchNorm)):
            kinds[name] = "norm"
        elif isinstance(mod, nn.ConvTranspose2d):
            kinds[name] = "deconv"
    g = torch.Generator().manual_seed(seed)
    out: dict[str, torch.Tensor] = {}
    for k, t in meta.state_dict().items():
        shape = tuple(t.shape)
        mod_name, _, leaf = k.rpartition(".")
        kind = kinds.get(mod_name)
        if leaf == "num_batches_tracked":
            out[k] = torch.zeros((), dtype=torch.long)
        elif leaf == "running_var":
            out[k] = 0.5 + torch.rand(shape, generator=g)
        elif leaf == "running_mean":
            out[k] = 0.1 * torch.randn(shape, generator=g)
        elif leaf in ("cls_token", "pos_embed"):
            out[k] = 0.02 * torch.randn(shape, generator=g)
        elif kind == "norm":
            out[k] = (1.0 if leaf == "weight" else 0.0) + 0.05 * torch.randn(shape, generator=g)
        elif len(shape) >= 2:
            fan_in = shape[0] if kind == "deconv" else math.prod(shape[1:])
            out[k] = torch.randn(shape, generator=g) / math.sqrt(max(fan_in, 1))
        elif v.task == "depth" and k.startswith("scratch.output_conv.") and leaf == "bias":
            out[k] = 0.2 + 0.05 * torch.randn(shape, generator=g)  # keep the ReLU head mostly active
        else:
            out[k] = 0.05 * torch.randn(shape, generator=g)
    if v.task == "depth":  # positive last conv on ReLU'd inputs: a non-trivial (mostly > 0) output
        out["scratch.output_conv.4.weight"] = out["scratch.output_conv.4.weight"].abs()
    return out


def build_pair(variant: "Variant | str", seed: int = 0, image_size: Optional[int] = None) -> tuple[DPT, nn.Module]:
    """(ours, HF) with identical random weights, both in eval mode, both fp32 on the CPU."""
    v = get_variant(variant)
    sd = random_state_dict(v, seed)
    with torch.device("meta"):
        ours = DPT(v)
    ours.load_state_dict(sd, strict=True, assign=True)
    hf = build_hf_model(v, sd, image_size=image_size)  # shares the tensors (inference only)
    return ours.eval(), hf
