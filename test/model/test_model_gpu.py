"""CUDA checks: precisions, CUDA-graph replay, graph cache bound/invalidation, channels_last, threads.

Run on a GPU machine: ``python -m pytest test/model -m gpu -q``. Skipped without CUDA.
"""

import threading

import pytest
import torch

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]

from dpt_ros.model import DPT, Engine, get_variant  # noqa: E402
from dpt_ros.model.reference import build_hf_model, random_state_dict  # noqa: E402

TINY_HYBRID = dict(embed_dim=64, depth=4, num_heads=2, hooks=(0, 1, 2, 3), channels=(128, 256, 64, 64),
                   resnet_layers=(1, 1, 1), resnet_channels=(128, 256, 512), resnet_stem=32, features=32)


@pytest.fixture(autouse=True)
def no_tf32():
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def model_from(v, sd):
    with torch.device("meta"):
        m = DPT(v)
    m.load_state_dict({k: t.clone() for k, t in sd.items()}, assign=True)
    return m


def rel_err(a, b):
    a, b = a.float().cpu(), b.float().cpu()
    return ((a - b).abs().max() / (b.max() - b.min())).item()


def key_out(out):
    return out["logits"] if "logits" in out else out["inverse_depth"]


def test_a_cuda_index_the_machine_lacks_is_refused_before_the_weights_are_read():
    """cuda:N past the devices present is a device error (the node's device parameter refuses it too), said before
    any file is read; it was accepted, and the move to the device failed after reading the weights, under their name
    ("invalid device ordinal")."""
    from dpt_ros.model import load_engine
    from dpt_ros.model.engine import check_target

    n = torch.cuda.device_count()
    assert check_target(f"cuda:{n - 1}", "fp16") == (torch.device("cuda", n - 1), torch.float16)
    for bad in (f"cuda:{n}", torch.device("cuda", n + 2)):
        with pytest.raises(ValueError, match=rf"device 'cuda:\d+': only {n} CUDA device\(s\) present here"):
            check_target(bad, "fp32")
    with pytest.raises(ValueError, match=f"only {n} CUDA device"):
        load_engine("dpt_tiny", "/nowhere/weights.pt", device=f"cuda:{n}")   # (not FileNotFoundError: never read)


@pytest.mark.parametrize("name", ["dpt_tiny", "dpt_hybrid_ade20k"])
@pytest.mark.parametrize("precision,tol", [("fp32", 1e-4), ("fp16", 3e-2), ("bf16", 6e-2)])
def test_cuda_precision_vs_cpu(name, precision, tol):
    v = get_variant(name)
    if v.backbone == "hybrid":
        v = v.replace(**TINY_HYBRID)
    sd = random_state_dict(v, seed=1)
    x = torch.randn(2, 3, 64, 96, generator=torch.Generator().manual_seed(0))
    ref = key_out(Engine(model_from(v, sd)).run(x))
    e = Engine(model_from(v, sd), device="cuda", precision=precision)
    out = key_out(e.run(x))
    assert out.device.type == "cuda" and out.dtype == torch.float32
    assert rel_err(out, ref) <= tol


@pytest.mark.slow
@pytest.mark.parametrize("name", ["dpt_hybrid", "dpt_large"])
def test_full_size_cuda_vs_hf(name):
    v = get_variant(name)
    sd = random_state_dict(v, seed=2)
    hf = build_hf_model(v, {k: t.clone() for k, t in sd.items()}).cuda()
    x = torch.randn(1, 3, 384, 384, generator=torch.Generator().manual_seed(3)).cuda()
    with torch.inference_mode():
        ref = hf(pixel_values=x).predicted_depth
    e = Engine(model_from(v, sd), device="cuda", precision="fp32")
    assert rel_err(e.run(x)["inverse_depth"], ref) <= 1e-4
    # fp16 (random full-size weights) drifts a few % of the range from fp32 in any implementation: ours must
    # be no worse than HF's own fp16 run against the same fp32 reference
    with torch.inference_mode():
        hf16_err = rel_err(hf.half()(pixel_values=x.half()).predicted_depth, ref)
    e16 = Engine(model_from(v, sd), device="cuda", precision="fp16", cuda_graphs=True)
    ours16_err = rel_err(e16.run(x)["inverse_depth"], ref)
    print(f"{name}: fp16 error vs fp32 reference, ours {ours16_err:.4f}, HF {hf16_err:.4f}")
    assert ours16_err <= max(1.5 * hf16_err, 1e-2)
    # non-square (HF cannot run it): finite, right shape, graph == eager
    xs = torch.randn(1, 3, 384, 512, device="cuda")
    g = e16.run(xs)["inverse_depth"]
    eager = Engine(model_from(v, sd), device="cuda", precision="fp16")
    assert g.shape == (1, 384, 512) and torch.isfinite(g).all()
    assert rel_err(g, eager.run(xs)["inverse_depth"]) <= 1e-2


def test_cuda_graph_replay_cache_and_invalidation():
    v = get_variant("dpt_hybrid_kitti").replace(**TINY_HYBRID)
    sd = random_state_dict(v, seed=4)
    eager = Engine(model_from(v, sd), device="cuda", precision="fp16")
    graph = Engine(model_from(v, sd), device="cuda", precision="fp16", cuda_graphs=True, max_graphs=2)
    x1 = torch.randn(1, 3, 64, 96, device="cuda")
    x2 = torch.randn(1, 3, 64, 96, device="cuda")
    o1 = graph.run(x1)
    assert set(o1) == {"inverse_depth", "depth"} and graph.num_graphs == 1
    keep = o1["depth"].clone()
    o2 = graph.run(x2)  # replay of the same graph: o1 must not be overwritten (outputs are copies)
    assert torch.equal(o1["depth"], keep)
    assert rel_err(o2["inverse_depth"], eager.run(x2)["inverse_depth"]) <= 1e-3
    assert rel_err(o2["depth"], eager.run(x2)["depth"]) <= 1e-3
    for shape in [(1, 3, 96, 64), (2, 3, 64, 64), (1, 3, 64, 96)]:
        graph.run(torch.randn(*shape, device="cuda"))
    assert graph.num_graphs == 2  # LRU-bounded
    # new weights: graphs dropped, outputs follow the new model
    sd2 = random_state_dict(v, seed=5)
    graph.set_model(model_from(v, sd2))
    assert graph.num_graphs == 0
    eager2 = Engine(model_from(v, sd2), device="cuda", precision="fp16")
    assert rel_err(graph.run(x1)["inverse_depth"], eager2.run(x1)["inverse_depth"]) <= 1e-3



@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_cuda_graphs_on_each_of_two_devices_replay_their_own_model():
    """torch.cuda.graph's default capture stream belongs to the device of the process's first capture: an engine on
    the other device captured its kernels outside the graph (an empty graph), and every replay returned the capture
    pass's outputs. Engines on cuda:0 and cuda:1, whichever captured first, follow their inputs as eager ones do."""
    v = get_variant("dpt_tiny")
    sd = random_state_dict(v, seed=9)
    xs = [torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(k)) for k in (1, 2)]
    for dev in ("cuda:0", "cuda:1", "cuda:0"):
        graph = Engine(model_from(v, sd), device=dev, precision="fp16", cuda_graphs=True)
        eager = Engine(model_from(v, sd), device=dev, precision="fp16")
        for x in xs:   # the first captures, the second replays
            got = graph.run(x)["inverse_depth"]
            assert got.device == torch.device(dev)
            assert rel_err(got, eager.run(x)["inverse_depth"]) <= 1e-3, dev

def test_channels_last_same_result():
    v = get_variant("dpt_hybrid").replace(**TINY_HYBRID)
    sd = random_state_dict(v, seed=6)
    x = torch.randn(1, 3, 64, 64, device="cuda")
    a = Engine(model_from(v, sd), device="cuda", precision="fp16", channels_last=True).run(x)["inverse_depth"]
    b = Engine(model_from(v, sd), device="cuda", precision="fp16", channels_last=False).run(x)["inverse_depth"]
    assert rel_err(a, b) <= 1e-2


def test_graph_run_while_other_thread_builds_and_captures():
    v = get_variant("dpt_tiny")
    sd = random_state_dict(v, seed=7)
    e = Engine(model_from(v, sd), device="cuda", precision="fp16", cuda_graphs=True)
    x = torch.randn(1, 3, 64, 64, device="cuda")
    ref = e.run(x)["inverse_depth"]
    errors, built = [], []

    def build():
        try:
            e2 = Engine(model_from(v, random_state_dict(v, seed=8)), device="cuda", precision="fp16", cuda_graphs=True)
            e2.run(torch.randn(1, 3, 96, 96, device="cuda"))
            built.append(e2)
        except Exception as exc:  # pragma: no cover
            errors.append(exc)

    t = threading.Thread(target=build)
    t.start()
    outs = []
    while t.is_alive() or not outs:
        outs.append(e.run(x)["inverse_depth"])
    t.join()
    assert not errors, errors
    assert built and built[0].num_graphs == 1
    assert all(torch.equal(o, ref) for o in outs)
