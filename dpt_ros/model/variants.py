"""The DPT variant table: architecture, task, network size, metric constants and release files.

Every released checkpoint (and two architecture-only entries) is one frozen :class:`Variant`.
Code never branches on a variant's *name*; it reads the fields.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal, Optional

__all__ = ["Metric", "Variant", "VARIANTS", "get_variant", "RELEASE_URL"]

RELEASE_URL = "https://github.com/intel-isl/DPT/releases/download/1_0/"
MIDAS_V3_URL = "https://github.com/isl-org/MiDaS/releases/download/v3/"

Task = Literal["depth", "segmentation"]
Backbone = Literal["vit", "hybrid"]
Readout = Literal["project", "ignore", "add"]


@dataclass(frozen=True)
class Metric:
    """Conversion of the network's inverse-depth-like output to metres.

    ``depth_m = 1 / max(scale * inv + shift, 1e-8)`` when ``invert`` is true,
    else ``scale * inv + shift``.
    """

    scale: float
    shift: float
    invert: bool = True


@dataclass(frozen=True)
class Variant:
    """One DPT configuration.

    Architecture fields follow the paper / official code:

    - ``backbone``: ``"vit"`` (patch-16 ViT) or ``"hybrid"`` (ResNetV2 stem + 3 stages, then ViT).
    - ``hooks``: four feature taps. ViT: transformer block indices (outputs before the final norm).
      Hybrid: the first two are ResNet stage indices (R0, R1), the last two block indices.
    - ``channels``: reassembled channels per stage; ``features``: fusion width.
    - ``pos_grid``: side of the square position-embedding grid stored in checkpoints (384 / 16 = 24).
    """

    name: str
    task: Task
    backbone: Backbone
    embed_dim: int
    depth: int
    num_heads: int
    hooks: tuple[int, int, int, int]
    channels: tuple[int, int, int, int]
    features: int = 256
    readout: Readout = "project"
    patch_size: int = 16
    pos_grid: int = 24
    mlp_ratio: float = 4.0
    layer_norm_eps: float = 1e-6
    resnet_layers: Optional[tuple[int, ...]] = None
    resnet_channels: Optional[tuple[int, ...]] = None
    resnet_stem: int = 64
    ws_eps: float = 1e-8
    num_classes: int = 0
    use_bn: bool = False
    non_negative: bool = True
    net_size: tuple[int, int] = (384, 384)
    metric: Optional[Metric] = None
    checkpoint: Optional[str] = None
    url: Optional[str] = None
    sha256_prefix: Optional[str] = None
    alt_checkpoints: tuple[str, ...] = ()
    hf_id: Optional[str] = None
    released: bool = False
    description: str = ""

    def __post_init__(self) -> None:
        if self.task not in ("depth", "segmentation"):
            raise ValueError(f"Variant {self.name!r}: task must be 'depth' or 'segmentation', got {self.task!r}")
        if self.backbone not in ("vit", "hybrid"):
            raise ValueError(f"Variant {self.name!r}: backbone must be 'vit' or 'hybrid', got {self.backbone!r}")
        if self.readout not in ("project", "ignore", "add"):
            raise ValueError(f"Variant {self.name!r}: readout must be project/ignore/add, got {self.readout!r}")
        if len(self.hooks) != 4 or len(self.channels) != 4:
            raise ValueError(f"Variant {self.name!r}: hooks and channels need 4 entries each")
        if self.backbone == "hybrid":
            if not self.resnet_layers or not self.resnet_channels or len(self.resnet_channels) != len(self.resnet_layers):
                raise ValueError(f"Variant {self.name!r}: a hybrid needs resnet_layers and resnet_channels")
            if tuple(self.channels[:2]) != tuple(self.resnet_channels[:2]):
                raise ValueError(
                    f"Variant {self.name!r}: hybrid stages 1-2 pass R0/R1 through unchanged, so channels[:2] "
                    f"must equal resnet_channels[:2] ({self.resnet_channels[:2]})"
                )
        max_hook = max(self.hooks[2:] if self.backbone == "hybrid" else self.hooks)
        if max_hook >= self.depth:
            raise ValueError(f"Variant {self.name!r}: hook {max_hook} >= depth {self.depth}")
        if self.task == "segmentation" and self.num_classes < 1:
            raise ValueError(f"Variant {self.name!r}: a segmentation variant needs num_classes >= 1")

    @property
    def is_metric(self) -> bool:
        return self.metric is not None

    @property
    def alt_urls(self) -> tuple[str, ...]:
        """Download URLs of the same weights under other names (MiDaS v3 release)."""
        return tuple(MIDAS_V3_URL + name for name in self.alt_checkpoints)

    def replace(self, **changes) -> "Variant":
        """A copy with some fields changed (for tests and custom configurations)."""
        return dataclasses.replace(self, **changes)


_VIT_L = dict(backbone="vit", embed_dim=1024, depth=24, num_heads=16, hooks=(5, 11, 17, 23),
              channels=(256, 512, 1024, 1024))
_VIT_B = dict(backbone="vit", embed_dim=768, depth=12, num_heads=12, hooks=(2, 5, 8, 11),
              channels=(96, 192, 384, 768))
_HYBRID = dict(backbone="hybrid", embed_dim=768, depth=12, num_heads=12, hooks=(0, 1, 8, 11),
               channels=(256, 512, 768, 768), resnet_layers=(3, 4, 9), resnet_channels=(256, 512, 1024))
_SEG = dict(task="segmentation", num_classes=150, use_bn=True, net_size=(480, 480))


def _release(file: str, **kw) -> dict:
    prefix = file.rsplit("-", 1)[-1].split(".")[0]
    return dict(checkpoint=file, url=RELEASE_URL + file, sha256_prefix=prefix, released=True, **kw)


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant(name="dpt_large", task="depth", **_VIT_L,
                **_release("dpt_large-midas-2f21e586.pt", hf_id="Intel/dpt-large",
                           alt_checkpoints=("dpt_large_384.pt",)),
                description="DPT-Large (ViT-L/16), relative inverse depth (MiDaS v3 training mix)"),
        Variant(name="dpt_hybrid", task="depth", **_HYBRID,
                **_release("dpt_hybrid-midas-501f0c75.pt", hf_id="Intel/dpt-hybrid-midas",
                           alt_checkpoints=("dpt_hybrid_384.pt",)),
                description="DPT-Hybrid (ResNet-50 + ViT-B/16), relative inverse depth"),
        Variant(name="dpt_base", task="depth", **_VIT_B,
                description="DPT-Base (ViT-B/16), architecture only: no released weights"),
        Variant(name="dpt_hybrid_kitti", task="depth", **_HYBRID, net_size=(352, 1216),
                metric=Metric(scale=6.016e-5, shift=0.00579, invert=True),
                **_release("dpt_hybrid_kitti-cb926ef4.pt"),
                description="DPT-Hybrid fine-tuned on KITTI, metric depth in metres"),
        Variant(name="dpt_hybrid_nyu", task="depth", **_HYBRID, net_size=(480, 640),
                metric=Metric(scale=3.05e-4, shift=0.1378, invert=True),
                **_release("dpt_hybrid_nyu-2ce69ec7.pt"),
                description="DPT-Hybrid fine-tuned on NYUv2, metric depth in metres"),
        Variant(name="dpt_large_ade20k", **_SEG, **_VIT_L,
                **_release("dpt_large-ade20k-b12dca68.pt", hf_id="Intel/dpt-large-ade"),
                description="DPT-Large, ADE20K semantic segmentation (150 classes)"),
        Variant(name="dpt_hybrid_ade20k", **_SEG, **_HYBRID,
                **_release("dpt_hybrid-ade20k-53898607.pt"),
                description="DPT-Hybrid, ADE20K semantic segmentation (150 classes)"),
        Variant(name="dpt_tiny", task="depth", backbone="vit", embed_dim=192, depth=12, num_heads=3,
                hooks=(2, 5, 8, 11), channels=(48, 96, 192, 192), features=64, net_size=(128, 128),
                description="ViT-Tiny-sized DPT for tests, CI and CPU smoke runs: random weights only"),
    )
}


def get_variant(name: "str | Variant") -> Variant:
    """Look a variant up by name (a :class:`Variant` passes through).

    :raises ValueError: unknown name; the message lists the valid ones.
    """
    if isinstance(name, Variant):
        return name
    try:
        return VARIANTS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"Unknown DPT variant {name!r}; valid names: {', '.join(VARIANTS)}"
        ) from None
