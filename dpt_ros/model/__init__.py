"""PyTorch DPT (Dense Prediction Transformer) on timm backbones. No ROS imports.

Public API::

    from dpt_ros.model import VARIANTS, get_variant, Variant, Metric
    from dpt_ros.model import load_engine, Engine, CheckpointError, DPT

    engine = load_engine("dpt_hybrid", "weights/dpt_hybrid-midas-501f0c75.pt", device="cuda",
                         precision="fp16", cuda_graphs=True)
    out = engine.run(batch)   # batch: (N, 3, H, W) float32, normalised, H and W multiples of 32
    out["inverse_depth"]      # (N, H, W) float32; metric variants add out["depth"] in metres;
                              # segmentation variants return out["logits"] (N, 150, H, W)

- :data:`VARIANTS` / :func:`get_variant` / :class:`Variant` -- the variant table (architecture, task,
  network size, normalisation, metric constants, release file, URL, SHA-256 prefix).
- :func:`load_engine` / :class:`Engine` -- inference on cpu (fp32, bf16) or cuda (fp32, fp16, bf16), optional CUDA graphs.
- :class:`DPT` -- the network (one class for every variant; official ``state_dict`` names).
- Checkpoints: :func:`read_state_dict`, :func:`load_checkpoint`, :func:`official_to_hf`,
  :func:`hf_to_official`, :func:`matching_variants`, :func:`verify_sha256_prefix`, :class:`CheckpointError`.
- :func:`metric_depth` -- ``1 / max(scale * inv + shift, 1e-8)`` for the metric variants.

Numerical conventions (documented choices):

- LayerNorm eps 1e-6, as timm and the official training code. Hugging Face's ``Intel/dpt-large`` config
  says 1e-12; that changes the output by about 2.5e-4 x its range (measured with random full-size
  ViT-L weights at 64x64), so the parity tests build the HF reference with 1e-6.
- Weight-standardisation eps 1e-8 in the hybrid's ResNet (timm >= 0.4.12 and HF BiT; timm 0.4.5 used
  1e-5). The engine standardises those weights once at load time (bit-identical in fp32).
- Position embeddings resized bilinearly (align_corners=False) per input size, cached per size.
"""

from .checkpoint import (
    CheckpointError,
    LoadReport,
    describe_state_dict,
    hf_to_official,
    is_hf_state_dict,
    load_checkpoint,
    load_state_dict_into,
    matching_variants,
    official_to_hf,
    read_state_dict,
    verify_sha256_prefix,
)
from .dpt import DPT
from .engine import PRECISIONS, Engine, build_model, load_engine, metric_depth, outside_graph_capture, parse_precision
from .variants import VARIANTS, Metric, Variant, get_variant

__all__ = [
    "VARIANTS",
    "Variant",
    "Metric",
    "get_variant",
    "DPT",
    "Engine",
    "load_engine",
    "build_model",
    "outside_graph_capture",
    "metric_depth",
    "parse_precision",
    "PRECISIONS",
    "CheckpointError",
    "LoadReport",
    "read_state_dict",
    "load_checkpoint",
    "load_state_dict_into",
    "official_to_hf",
    "hf_to_official",
    "is_hf_state_dict",
    "describe_state_dict",
    "matching_variants",
    "verify_sha256_prefix",
]
