"""Position-embedding resizing and caching, feature taps, any multiple-of-32 size."""

import re
import threading

import pytest
import torch

from dpt_ros.model import DPT, VARIANTS, get_variant, load_engine
from dpt_ros.model.backbone import resize_pos_embed


def test_resize_pos_embed_matches_hf_non_square():
    pytest.importorskip("transformers")
    from transformers.models.dpt.modeling_dpt import DPTViTEmbeddings

    from dpt_ros.model.reference import hf_config

    emb = DPTViTEmbeddings(hf_config(get_variant("dpt_tiny")))
    pe = torch.randn(1, 577, 192)
    for grid in [(24, 32), (22, 76), (8, 8), (24, 24)]:
        ref = emb._resize_pos_embed(pe, grid[0], grid[1])
        ours = resize_pos_embed(pe, grid, 24)
        assert ours.shape == (1, 1 + grid[0] * grid[1], 192)
        assert torch.allclose(ours, ref, atol=1e-6)
    assert resize_pos_embed(pe, (24, 24), 24) is pe  # same grid: no resampling


def test_pos_embed_cache_per_size_and_invalidation():
    torch.manual_seed(0)
    m = DPT("dpt_tiny").eval()
    bb = m.pretrained
    with torch.inference_mode():
        m(torch.randn(1, 3, 64, 96))
        m(torch.randn(1, 3, 96, 64))
        m(torch.randn(1, 3, 64, 96))
        assert len(bb._pos_cache) == 2
        a = bb.pos_embed((4, 6))
        assert bb.pos_embed((4, 6)) is a
    with torch.no_grad():
        m.pretrained.model.pos_embed.add_(1.0)  # weights changed in place: new version, new entry
    with torch.inference_mode():
        b = bb.pos_embed((4, 6))
    assert b is not a and torch.allclose(b, a + 1.0, atol=1e-5)
    m.to(torch.float64)
    assert len(bb._pos_cache) == 0  # .to() drops cached tensors


def test_pos_cache_bounded():
    m = DPT("dpt_tiny").eval()
    bb = m.pretrained
    with torch.inference_mode():
        first = bb.pos_embed((2, 1))
        for w in range(2, 12):
            bb.pos_embed((2, w))
            assert bb.pos_embed((2, 1)) is first   # used every frame: never the one evicted
    assert len(bb._pos_cache) == bb._POS_CACHE_SIZE
    assert [key[0] for key in bb._pos_cache] == [(2, w) for w in range(5, 12)] + [(2, 1)]   # least recent out


def test_pos_cache_follows_a_replaced_parameter():
    """load_state_dict(assign=True) (the loader's memory-mapped path) puts a new tensor in place of the old
    one; its version counter starts again, so the cache key holds the storage too."""
    m = DPT("dpt_tiny").eval()
    pe = m.pretrained.model.pos_embed
    with torch.inference_mode():
        a = m.pretrained.pos_embed((4, 6))
    new = torch.nn.Parameter(pe.detach() + 2.0, requires_grad=False)
    with torch.no_grad():
        while new._version < pe._version:   # the same version number as the tensor it replaces
            new.add_(0.0)
    m.pretrained.model.pos_embed = new
    assert new._version == pe._version
    with torch.inference_mode():
        b = m.pretrained.pos_embed((4, 6))
    assert torch.allclose(b, a + 2.0, atol=1e-5)


def test_a_model_built_in_inference_mode_runs():
    """A caller's loader that builds the model (or the engine) inside torch.inference_mode(): its parameters are
    inference tensors, without the version counter the cache key read (RuntimeError at the first forward)."""
    torch.manual_seed(0)
    reference = DPT("dpt_tiny").eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.inference_mode():
        m = DPT("dpt_tiny").eval()
        m.load_state_dict(reference.state_dict())
        assert m.pretrained.model.pos_embed.is_inference()
        out = m(x)
        again = m(x)                       # from the cache
        expected = reference(x)
    assert len(m.pretrained._pos_cache) == 1
    assert torch.allclose(out, expected, atol=1e-5) and torch.equal(out, again)
    # new weights loaded in place inside inference mode (no version counter to tell): the cache is dropped
    other = DPT("dpt_tiny").eval()
    with torch.inference_mode():
        m.load_state_dict(other.state_dict())
        assert len(m.pretrained._pos_cache) == 0
        assert torch.allclose(m(x), other(x), atol=1e-5)


def test_pos_embed_is_trainable_outside_inference():
    """With gradients on (fine-tuning), the resized embedding is computed, not cached, so gradients reach it."""
    m = DPT("dpt_tiny").train()
    m.pretrained.pos_embed((4, 6)).sum().backward()
    grad = m.pretrained.model.pos_embed.grad
    assert grad is not None and grad.abs().sum() > 0 and len(m.pretrained._pos_cache) == 0


def test_hybrid_taps_are_resnet_stages():
    """Hybrid stage 1-2 features are R0 (C0, 1/4) and R1 (C1, 1/8) unchanged; stage 3-4 reassembled."""
    v = get_variant("dpt_hybrid").replace(embed_dim=64, depth=4, num_heads=2, hooks=(0, 1, 2, 3),
                                          channels=(128, 256, 64, 64), resnet_layers=(1, 1, 1),
                                          resnet_channels=(128, 256, 512), resnet_stem=32, features=32)
    m = DPT(v).eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        feats = m.pretrained(x)
        rn = m.pretrained.model.patch_embed.backbone
        r0 = rn.stages[0](rn.stem(x))
        r1 = rn.stages[1](r0)
    assert [tuple(f.shape) for f in feats] == [(1, 128, 16, 24), (1, 256, 8, 12), (1, 64, 4, 6), (1, 64, 2, 3)]
    assert torch.equal(feats[0], r0) and torch.equal(feats[1], r1)


@pytest.mark.parametrize("name", ["dpt_large", "dpt_base", "dpt_hybrid", "dpt_large_ade20k"])
def test_vit_feature_shapes(name):
    with torch.device("meta"):
        m = DPT(name)
        feats = m.pretrained(torch.empty(1, 3, 384, 512))
    v = get_variant(name)
    assert [tuple(f.shape) for f in feats] == [
        (1, v.channels[0], 96, 128), (1, v.channels[1], 48, 64), (1, v.channels[2], 24, 32), (1, v.channels[3], 12, 16)]


@pytest.mark.parametrize("hw", [(32, 32), (32, 256), (160, 96), (128, 128)])
def test_any_multiple_of_32(hw):
    torch.manual_seed(0)
    e = load_engine("dpt_tiny", "random")
    out = e.run(torch.randn(1, 3, *hw))["inverse_depth"]
    assert out.shape == (1, *hw) and torch.isfinite(out).all()


def test_variant_table():
    assert set(VARIANTS) == {"dpt_large", "dpt_hybrid", "dpt_base", "dpt_hybrid_kitti", "dpt_hybrid_nyu",
                             "dpt_large_ade20k", "dpt_hybrid_ade20k", "dpt_tiny"}
    for v in VARIANTS.values():
        if v.released:
            assert v.url.endswith(v.checkpoint) and v.checkpoint.split("-")[-1].startswith(v.sha256_prefix)
            assert len(v.sha256_prefix) == 8
        else:
            assert v.checkpoint is None
    assert get_variant("dpt_hybrid_kitti").net_size == (352, 1216)
    assert get_variant("dpt_hybrid_nyu").net_size == (480, 640)
    assert get_variant("dpt_large_ade20k").net_size == (480, 480) and get_variant("dpt_large").net_size == (384, 384)
    assert get_variant("dpt_hybrid").hooks == (0, 1, 8, 11) and get_variant("dpt_large").hooks == (5, 11, 17, 23)
    with pytest.raises(ValueError, match="hook"):
        get_variant("dpt_base").replace(depth=4)
    with pytest.raises(ValueError, match="readout"):
        get_variant("dpt_base").replace(readout="concat")
    # a hybrid's first two hooks are ResNet stages, not transformer blocks: one block is enough
    assert get_variant("dpt_hybrid").replace(depth=1, hooks=(0, 1, 0, 0)).depth == 1
    with pytest.raises(ValueError, match=r"Unknown DPT variant \['dpt_large'\]; valid names: dpt_large, "):
        get_variant(["dpt_large"])


def test_variant_table_matches_the_spec():
    """Architecture, constants, files and URLs of every variant as in the paper / official code
    (docs/dpt-spec.md). Shapes and parameter counts miss a head count, a 768-channel stage or two more
    ResNet blocks (< 1.5 M parameters), yet each breaks loading the released weights."""
    vit_l = dict(embed_dim=1024, depth=24, num_heads=16, hooks=(5, 11, 17, 23), channels=(256, 512, 1024, 1024))
    vit_b = dict(embed_dim=768, depth=12, num_heads=12, hooks=(2, 5, 8, 11), channels=(96, 192, 384, 768))
    hybrid = dict(embed_dim=768, depth=12, num_heads=12, hooks=(0, 1, 8, 11), channels=(256, 512, 768, 768),
                  resnet_layers=(3, 4, 9), resnet_channels=(256, 512, 1024), resnet_stem=64, ws_eps=1e-8)
    arch = {"dpt_large": vit_l, "dpt_large_ade20k": vit_l, "dpt_base": vit_b, "dpt_hybrid": hybrid,
            "dpt_hybrid_kitti": hybrid, "dpt_hybrid_nyu": hybrid, "dpt_hybrid_ade20k": hybrid}
    for name, fields in arch.items():
        v = get_variant(name)
        assert {k: getattr(v, k) for k in fields} == fields, name
        # timm ViT-*/16 at 384 (577 position embeddings), LayerNorm eps 1e-6, readout "project", fusion 256
        assert (v.patch_size, v.pos_grid, v.mlp_ratio, v.layer_norm_eps, v.readout, v.features) == \
            (16, 24, 4.0, 1e-6, "project", 256), name
        if v.task == "depth":
            assert (v.non_negative, v.use_bn, v.num_classes) == (True, False, 0), name
        else:
            assert (v.num_classes, v.use_bn, v.net_size) == (150, True, (480, 480)), name
    assert [n for n, v in VARIANTS.items() if v.is_metric] == ["dpt_hybrid_kitti", "dpt_hybrid_nyu"]

    release = "https://github.com/intel-isl/DPT/releases/download/1_0/"
    assert {n: v.url for n, v in VARIANTS.items() if v.released} == {
        "dpt_large": release + "dpt_large-midas-2f21e586.pt",
        "dpt_hybrid": release + "dpt_hybrid-midas-501f0c75.pt",
        "dpt_hybrid_kitti": release + "dpt_hybrid_kitti-cb926ef4.pt",
        "dpt_hybrid_nyu": release + "dpt_hybrid_nyu-2ce69ec7.pt",
        "dpt_large_ade20k": release + "dpt_large-ade20k-b12dca68.pt",
        "dpt_hybrid_ade20k": release + "dpt_hybrid-ade20k-53898607.pt",
    }
    midas_v3 = "https://github.com/isl-org/MiDaS/releases/download/v3/"
    assert {n: v.alt_urls for n, v in VARIANTS.items() if v.alt_urls} == {
        "dpt_large": (midas_v3 + "dpt_large_384.pt",), "dpt_hybrid": (midas_v3 + "dpt_hybrid_384.pt",)}
    assert {n: v.hf_id for n, v in VARIANTS.items() if v.hf_id} == {
        "dpt_large": "Intel/dpt-large", "dpt_hybrid": "Intel/dpt-hybrid-midas", "dpt_large_ade20k": "Intel/dpt-large-ade"}


@pytest.mark.parametrize("base,changes,message", [
    ("dpt_base", dict(task="normals"), "task must be 'depth' or 'segmentation', got 'normals'"),
    ("dpt_base", dict(backbone="swin"), "backbone must be 'vit' or 'hybrid', got 'swin'"),
    ("dpt_base", dict(channels=(96, 192, 384)), "hooks and channels need 4 entries each"),
    ("dpt_base", dict(hooks=(2, 5, 8)), "hooks and channels need 4 entries each"),
    ("dpt_base", dict(depth=11), "hook 11 >= depth 11"),
    ("dpt_hybrid", dict(depth=11), "hook 11 >= depth 11"),
    ("dpt_hybrid", dict(resnet_layers=(3, 4)), "a hybrid needs resnet_layers and resnet_channels"),
    ("dpt_hybrid", dict(resnet_channels=None), "a hybrid needs resnet_layers and resnet_channels"),
    ("dpt_hybrid", dict(channels=(256, 256, 768, 768)),
     "hybrid stages 1-2 pass R0/R1 through unchanged, so channels[:2] must equal resnet_channels[:2] ((256, 512))"),
    ("dpt_large_ade20k", dict(num_classes=0), "a segmentation variant needs num_classes >= 1"),
])
def test_invalid_variant_refused(base, changes, message):
    with pytest.raises(ValueError, match=re.escape(f"Variant {base!r}: {message}")):
        get_variant(base).replace(**changes)


@pytest.mark.slow
def test_param_counts_match_paper():
    """Paper table 9: 343 M (Large), 123 M (Hybrid), 112 M (Base) with the ViT classifier excluded."""
    counts = {}
    for name in ("dpt_large", "dpt_hybrid", "dpt_base"):
        with torch.device("meta"):
            counts[name] = sum(p.numel() for p in DPT(name).parameters()) / 1e6
    assert counts["dpt_large"] == pytest.approx(343.0, abs=1.5)
    assert counts["dpt_hybrid"] == pytest.approx(122.4, abs=1.5)
    assert counts["dpt_base"] == pytest.approx(110.9, abs=1.5)


def test_run_while_another_thread_builds():
    """Engine.run from a worker while another thread builds a new Engine (the node's model reload)."""
    torch.manual_seed(0)
    e = load_engine("dpt_tiny", "random")
    x = torch.randn(1, 3, 64, 64)
    ref = e.run(x)["inverse_depth"]
    errors, built = [], []

    def build():
        try:
            built.append(load_engine("dpt_base", "random"))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    t = threading.Thread(target=build)
    t.start()
    outs = []
    while t.is_alive():
        outs.append(e.run(x)["inverse_depth"])
    t.join()
    assert not errors and built and built[0].variant.name == "dpt_base"
    assert outs and all(torch.equal(o, ref) for o in outs)


def test_depth_head_ends_in_a_relu_unless_the_variant_says_otherwise():
    """Official DPTDepthModel(non_negative=True): inverse depth is never negative. Random weights rarely
    produce negative outputs, so the last convolution's bias is pushed down to make the ReLU show."""
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    for non_negative in (True, False):
        m = DPT(get_variant("dpt_tiny").replace(non_negative=non_negative)).eval()
        with torch.no_grad():
            m.scratch.output_conv[4].bias.fill_(-100.0)
            out = m(x)
        assert out.shape == (1, 64, 64)
        assert bool((out == 0).all()) if non_negative else bool((out < 0).all())
    assert all(v.non_negative for v in VARIANTS.values() if v.task == "depth")
