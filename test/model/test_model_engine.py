"""Engine behaviour on the CPU with random weights (dpt_tiny and small inputs)."""

import re

import pytest
import torch

import dpt_ros
from dpt_ros.model import (
    DPT,
    VARIANTS,
    CheckpointError,
    Engine,
    get_variant,
    load_engine,
    metric_depth,
    parse_precision,
)
from dpt_ros.model.reference import random_state_dict


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return load_engine("dpt_tiny", "random")


def test_tiny_runs_non_square(tiny):
    assert tiny.random_weights is True
    assert tiny.device == torch.device("cpu") and tiny.dtype == torch.float32
    out = tiny.run(torch.randn(2, 3, 64, 96))
    assert set(out) == {"inverse_depth"}
    inv = out["inverse_depth"]
    assert inv.shape == (2, 64, 96) and inv.dtype == torch.float32
    assert torch.isfinite(inv).all() and (inv >= 0).all()  # final ReLU (non_negative)
    assert not any(p.requires_grad for p in tiny.model.parameters())  # frozen for inference
    assert tiny.num_parameters == 7_340_161  # all of dpt_tiny's parameters, biases and norms included


def test_run_is_inference_mode_and_deterministic(tiny):
    x = torch.randn(1, 3, 96, 64)
    a = tiny.run(x)["inverse_depth"]
    b = tiny.run(x)["inverse_depth"]
    assert a.is_inference()
    assert torch.equal(a, b)


@pytest.mark.parametrize("shape,match", [
    ((1, 3, 64, 80), "multiples of 32"),
    ((1, 3, 70, 64), "multiples of 32"),
    ((1, 4, 64, 64), "3 input channels"),
    ((1, 1, 64, 64), "3 input channels"),
    ((3, 64, 64), r"\(N, 3, H, W\)"),
])
def test_bad_input_shapes(tiny, shape, match):
    with pytest.raises(ValueError, match=match):
        tiny.run(torch.zeros(shape))


def test_cuda_graphs_on_the_cpu_are_refused_before_the_weights_are_read(tmp_path):
    """load_engine(..., device="cpu", cuda_graphs=True) read the whole weights file (hash, CRC-32s, NaN check: 4.9 s
    for a DPT-Hybrid-sized file here) and only then refused the graphs, though it checks its cheap arguments first
    (an fp16 on the CPU is refused at once). A file that is not there shows the order: the graphs are said first."""
    missing = tmp_path / "not_downloaded.pt"
    with pytest.raises(ValueError, match=r"^cuda_graphs=True needs a CUDA device; set cuda_graphs=False on the CPU$"):
        load_engine("dpt_tiny", missing, device="cpu", cuda_graphs=True)
    with pytest.raises(ValueError, match="^fp16 is not supported on the CPU"):   # (as before)
        load_engine("dpt_tiny", missing, device="cpu", precision="fp16")
    with pytest.raises(FileNotFoundError):   # without the graphs: the file is looked for
        load_engine("dpt_tiny", missing, device="cpu")


def test_max_graphs_below_one_is_refused_before_the_weights_are_read(tmp_path):
    """load_engine(..., max_graphs=0) read (and hashed, CRC-checked, NaN-checked) the whole weights file before Engine
    refused the value, as cuda_graphs on the CPU was. A file that is not there shows the order: max_graphs is said
    first; Engine, given a model, still refuses it."""
    missing = tmp_path / "not_downloaded.pt"
    for bad in (0, -1):
        with pytest.raises(ValueError, match=rf"^max_graphs must be >= 1, got {bad}$"):
            load_engine("dpt_tiny", missing, device="cpu", max_graphs=bad)
    with pytest.raises(FileNotFoundError):   # max_graphs=1 is fine: the file is looked for
        load_engine("dpt_tiny", missing, device="cpu", max_graphs=1)
    with pytest.raises(ValueError, match=r"^max_graphs must be >= 1, got 0$"):
        Engine(DPT("dpt_tiny"), max_graphs=0)


def test_bad_input_dtype(tiny):
    with pytest.raises(ValueError, match="float batch"):
        tiny.run(torch.zeros(1, 3, 64, 64, dtype=torch.uint8))
    with pytest.raises(TypeError):
        tiny.run([[0.0]])


def test_bad_arguments():
    with pytest.raises(ValueError, match="dpt_large.*dpt_tiny"):
        get_variant("dpt_huge")
    with pytest.raises(ValueError, match="precision"):
        load_engine("dpt_tiny", "random", precision="int8")
    with pytest.raises(ValueError, match="fp16"):
        load_engine("dpt_tiny", "random", precision="fp16")
    with pytest.raises(ValueError, match="cuda_graphs"):
        load_engine("dpt_tiny", "random", cuda_graphs=True)
    with pytest.raises(ValueError, match="max_graphs must be >= 1, got 0"):
        load_engine("dpt_tiny", "random", max_graphs=0)
    for dtype in (torch.float64, torch.int8):
        with pytest.raises(ValueError, match="precision must be one of fp32, fp16, bf16"):
            parse_precision(dtype)
    assert parse_precision(torch.bfloat16) is torch.bfloat16 and parse_precision("HALF") is torch.float16
    if not torch.cuda.is_available():
        # why, as the node says it (no device or driver; a CPU-only PyTorch): the bare "not available" left it open
        with pytest.raises(ValueError, match=re.escape(f"CUDA is not available here ({dpt_ros.cuda_missing()}); use "
                                                       "device='cpu'") + "$"):
            load_engine("dpt_tiny", "random", device="cuda")
    with torch.device("meta"):
        on_meta = DPT("dpt_tiny")
    with pytest.raises(ValueError, match=r"device must be 'auto', 'cpu' or 'cuda\[:N\]', got 'meta'"):
        Engine(on_meta, device="meta")
    for bad in ("gpu", "cuda:x", 3.5):   # not even a torch device name: the same message, before any file is read
        with pytest.raises(ValueError, match=r"device must be 'auto', 'cpu' or 'cuda\[:N\]', got "):
            load_engine("dpt_tiny", "/nowhere/weights.pt", device=bad)


def test_precision_names():
    """Every name parse_precision takes, in any case, gives its own dtype."""
    names = {"fp32": torch.float32, "float32": torch.float32, "fp16": torch.float16, "float16": torch.float16,
             "half": torch.float16, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16}
    for name, dtype in names.items():
        assert parse_precision(name) is dtype and parse_precision(name.upper()) is dtype, name


def test_missing_file_message(tmp_path):
    with pytest.raises(FileNotFoundError) as ei:
        load_engine("dpt_hybrid", tmp_path / "dpt_hybrid-midas-501f0c75.pt")
    msg = str(ei.value)
    assert "dpt_hybrid-midas-501f0c75.pt" in msg and VARIANTS["dpt_hybrid"].url in msg
    # the cheap arguments are checked first: a bad precision is named before the file is looked for
    with pytest.raises(ValueError, match="precision must be one of fp32, fp16, bf16, got 'int8'"):
        load_engine("dpt_hybrid", tmp_path / "dpt_hybrid-midas-501f0c75.pt", precision="int8")
    assert issubclass(CheckpointError, ValueError)


def test_bf16_cpu_close_to_fp32():
    torch.manual_seed(1)
    from dpt_ros.model import DPT

    model = DPT("dpt_tiny").eval()
    sd = model.state_dict()
    e32 = Engine(model, precision="fp32")
    m2 = DPT("dpt_tiny")
    m2.load_state_dict(sd)
    e16 = Engine(m2, precision="bf16")
    assert e16.dtype == torch.bfloat16
    # channels_last is the default for CUDA half precision only: on the CPU the decoder stays NCHW
    assert e16.channels_last is False
    assert not e16.model.scratch.layer1_rn.weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.randn(1, 3, 32, 64)
    a, b = e32.run(x)["inverse_depth"], e16.run(x)["inverse_depth"]
    assert b.dtype == torch.float32
    rng = (a.max() - a.min()).item()
    assert (a - b).abs().max().item() < 0.1 * rng + 1e-3


@pytest.mark.parametrize("name", ["dpt_hybrid_kitti", "dpt_hybrid_nyu"])
def test_metric_variants_exact(name):
    v = get_variant(name)
    torch.manual_seed(2)
    tiny_hybrid = v.replace(embed_dim=64, depth=2, num_heads=2, hooks=(0, 1, 0, 1), channels=(128, 256, 64, 64),
                            resnet_layers=(1, 1, 1), resnet_channels=(128, 256, 512), resnet_stem=32, features=32)
    from dpt_ros.model import DPT

    e = Engine(DPT(tiny_hybrid), random_weights=True)
    out = e.run(torch.randn(1, 3, 64, 96))
    inv, depth = out["inverse_depth"], out["depth"]
    expected = 1.0 / torch.clamp(v.metric.scale * inv + v.metric.shift, min=1e-8)
    assert torch.equal(depth, expected)
    # spec constants
    consts = {"dpt_hybrid_kitti": (6.016e-5, 0.00579), "dpt_hybrid_nyu": (3.05e-4, 0.1378)}
    assert (v.metric.scale, v.metric.shift, v.metric.invert) == (*consts[name], True)
    # zero inverse depth -> 1/shift metres
    z = metric_depth(torch.zeros(1), v.metric)
    assert z.item() == pytest.approx(1.0 / v.metric.shift)
    # the clamp: a negative shift pushed below 1e-8 gives 1e8 m
    from dpt_ros.model import Metric

    assert metric_depth(torch.tensor([0.0]), Metric(1.0, -1.0)).item() == pytest.approx(1e8)


def test_metric_depth_without_inversion():
    """invert=False: metres are the affine map itself, scale * inv + shift, with no clamp."""
    from dpt_ros.model import Metric

    out = metric_depth(torch.tensor([0.0, 2.0, -4.0]), Metric(scale=0.5, shift=0.25, invert=False))
    assert torch.equal(out, torch.tensor([0.25, 1.25, -1.75]))


def test_segmentation_output():
    torch.manual_seed(3)
    v = get_variant("dpt_hybrid_ade20k").replace(
        embed_dim=64, depth=4, num_heads=2, hooks=(0, 1, 2, 3), channels=(128, 256, 64, 64),
        resnet_layers=(1, 1, 1), resnet_channels=(128, 256, 512), resnet_stem=32, features=32)
    e = load_engine(v, "random")
    out = e.run(torch.randn(1, 3, 64, 96))
    assert set(out) == {"logits"} and out["logits"].shape == (1, 150, 64, 96)


def test_channels_last_decoder_same_result():
    torch.manual_seed(4)
    from dpt_ros.model import DPT

    m = DPT("dpt_tiny")
    sd = m.state_dict()
    m2 = DPT("dpt_tiny")
    m2.load_state_dict(sd)
    a = Engine(m, channels_last=False)
    b = Engine(m2, channels_last=True)
    assert b.model.scratch.layer1_rn.weight.is_contiguous(memory_format=torch.channels_last)
    for k in (1, 2, 4):  # the reassemble resamplers (stage 3's is an identity)
        w = getattr(getattr(b.model.pretrained, f"act_postprocess{k}"), "4").weight
        assert w.is_contiguous(memory_format=torch.channels_last), k
    c = load_engine("dpt_tiny", "random", channels_last=True)  # load_engine passes it on
    assert c.channels_last and c.model.scratch.layer1_rn.weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.randn(1, 3, 64, 96)
    assert torch.allclose(a.run(x)["inverse_depth"], b.run(x)["inverse_depth"], atol=1e-5)


def test_weight_standardisation_folding_exact():
    """Folding the hybrid's weight standardisation once equals standardising on every forward."""
    from dpt_ros.model import DPT
    from dpt_ros.model.engine import fold_weight_standardization

    v = get_variant("dpt_hybrid").replace(embed_dim=64, depth=4, num_heads=2, hooks=(0, 1, 2, 3),
                                          channels=(128, 256, 64, 64), resnet_layers=(1, 1, 1),
                                          resnet_channels=(128, 256, 512), resnet_stem=32, features=32)
    torch.manual_seed(5)
    m = DPT(v).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref = m(x)
        n = fold_weight_standardization(m)
        out = m(x)
    assert n == 1 + 3 * 3 + 3  # stem + 3 convs per bottleneck (3 blocks) + 3 downsample convs
    assert fold_weight_standardization(m) == 0  # idempotent
    assert torch.allclose(out, ref, rtol=1e-5, atol=1e-5 * ref.abs().max().item())
    # an Engine folds them itself, in fp32 before the cast: its bf16 weight is the fp32 fold rounded
    torch.manual_seed(5)
    e = Engine(DPT(v), precision="bf16")
    stem = e.model.pretrained.model.patch_embed.backbone.stem.conv
    assert torch.equal(stem.weight, m.pretrained.model.patch_embed.backbone.stem.conv.weight.to(torch.bfloat16))


def test_random_weights_leave_the_callers_rng_alone(monkeypatch):
    """weights='random' is seeded without touching the process's RNG state: CPU state restored, and the
    CUDA generators (which torch.manual_seed reseeds, even lazily before CUDA starts) never reseeded."""
    from dpt_ros.model import build_model

    reseeded = []
    monkeypatch.setattr(torch.cuda, "manual_seed_all", lambda seed: reseeded.append(seed))
    monkeypatch.setattr(torch.cuda, "manual_seed", lambda seed: reseeded.append(seed))
    torch.manual_seed(123)
    reseeded.clear()
    before = torch.get_rng_state()
    a = build_model("dpt_tiny", "random")
    b = build_model("dpt_tiny", "random")
    assert torch.equal(torch.get_rng_state(), before)
    assert reseeded == []
    assert all(torch.equal(t, b.state_dict()[k]) for k, t in a.state_dict().items())  # still reproducible
    torch.manual_seed(7)   # whatever the caller's RNG state, 'random' is the same model
    c = build_model("dpt_tiny", "random")
    assert all(torch.equal(t, c.state_dict()[k]) for k, t in a.state_dict().items())


def test_set_model_swaps_weights_of_the_same_variant_only(tiny):
    """Engine.set_model serves the new weights and their random/trained flag; another variant is refused."""
    e = load_engine("dpt_tiny", "random")
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    sd = random_state_dict("dpt_tiny", seed=5)
    trained, other = DPT("dpt_tiny"), DPT("dpt_tiny")
    trained.load_state_dict(sd)
    other.load_state_dict(sd)
    ref = Engine(trained).run(x)["inverse_depth"]
    before = e.run(x)["inverse_depth"]
    e.set_model(other, random_weights=False)
    assert e.random_weights is False
    after = e.run(x)["inverse_depth"]
    assert torch.equal(after, ref) and not torch.allclose(after, before)
    with pytest.raises(ValueError, match="variant 'dpt_tiny_b' differs from the engine's 'dpt_tiny'"):
        e.set_model(DPT(get_variant("dpt_tiny").replace(name="dpt_tiny_b")))
    with torch.device("meta"):  # the same name, another configuration: refused before it is touched
        narrower = DPT(get_variant("dpt_tiny").replace(features=32))
    with pytest.raises(ValueError) as err:
        e.set_model(narrower)
    assert str(err.value) == ("set_model: the model's configuration of 'dpt_tiny' differs from the engine's "
                              "(features 32 vs 64); build a new Engine instead")
    assert torch.equal(e.run(x)["inverse_depth"], ref)   # the refused swap changed nothing


def test_random_weights_are_the_same_when_built_in_parallel():
    import threading

    from dpt_ros.model import build_model

    ref = build_model("dpt_tiny", "random").state_dict()
    built, start = [None] * 4, threading.Barrier(4)

    def build(i):
        start.wait()
        built[i] = build_model("dpt_tiny", "random").state_dict()

    threads = [threading.Thread(target=build, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for sd in built:
        assert all(torch.equal(t, sd[k]) for k, t in ref.items())


def test_warmup_runs_height_by_width(tiny, monkeypatch):
    """warmup(height, width, batch) runs one zero batch of exactly (batch, 3, height, width)."""
    seen, run = [], tiny.run
    monkeypatch.setattr(tiny, "run", lambda x: seen.append((tuple(x.shape), x.abs().sum().item())) or run(x))
    tiny.warmup(32, 96, batch=2)
    assert seen == [((2, 3, 32, 96), 0.0)]


def test_cuda_graphs_are_captured_on_a_stream_of_the_engines_device():
    """torch.cuda.graph's default capture stream is made once per process, on the device current at the first capture:
    an engine on another device (the device parameter changed at run time, two nodes in one process) captured on that
    stream while its kernels ran on its own device, outside the graph, and every replay returned the capture pass's
    outputs. The capture names a stream made on the engine's device. (Checked in the source: this machine may have no
    GPU; test_model_gpu runs it on two.)"""
    import ast
    import inspect
    import textwrap

    from dpt_ros.model import engine

    tree = ast.parse(textwrap.dedent(inspect.getsource(engine.Engine._capture)))
    made = {ast.unparse(t): node.value for node in ast.walk(tree) if isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Call) and ast.unparse(node.value.func) == "torch.cuda.Stream"
            for t in node.targets}
    captures = [node for node in ast.walk(tree)
                if isinstance(node, ast.Call) and ast.unparse(node.func) == "torch.cuda.graph"]
    assert len(captures) == 1
    stream = {k.arg: k.value for k in captures[0].keywords}.get("stream")
    assert stream is not None, "torch.cuda.graph without stream= captures on the process's default capture stream"
    assert ast.unparse(stream) in made, f"the capture stream {ast.unparse(stream)} is not a torch.cuda.Stream made here"
    assert {k.arg: ast.unparse(k.value) for k in made[ast.unparse(stream)].keywords} == {"device": "self.device"}
