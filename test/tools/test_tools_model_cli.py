"""dpt_ros.tools.weights and dpt_ros.tools.bench_model command lines (CPU, dpt_tiny)."""

import hashlib
import json

import pytest
import torch

from dpt_ros.model import VARIANTS, load_engine
from dpt_ros.model.reference import random_state_dict
from dpt_ros.tools import bench_model, weights


@pytest.fixture(scope="module")
def tiny_file(tmp_path_factory):
    d = tmp_path_factory.mktemp("w")
    p = d / "tmp.pt"
    torch.save({"model": random_state_dict("dpt_tiny", seed=5), "optimizer": {}}, p)
    named = d / f"dpt_tiny-{hashlib.sha256(p.read_bytes()).hexdigest()[:8]}.pt"
    p.rename(named)
    return named


def test_urls(capsys):
    assert weights.main(["--urls"]) == 0
    out = capsys.readouterr().out
    for v in VARIANTS.values():
        assert v.name in out
        if v.url:
            assert v.url in out and v.sha256_prefix in out
    assert "huggingface.co/Intel/dpt-hybrid-midas" in out


def test_verify_ok_and_corrupt(tiny_file, tmp_path, capsys):
    assert weights.main(["--verify", str(tiny_file), "--variant", "dpt_tiny"]) == 0
    out = capsys.readouterr().out
    assert "OK" in out and "matches variant(s): dpt_tiny" in out and "strict load as dpt_tiny: OK" in out
    bad = tmp_path / tiny_file.name
    bad.write_bytes(tiny_file.read_bytes()[:-100])
    assert weights.main(["--verify", str(bad)]) == 1
    assert "corrupt or truncated" in capsys.readouterr().err
    # wrong variant: the strict load fails and names the right one
    assert weights.main(["--verify", str(tiny_file), "--variant", "dpt_hybrid"]) == 1
    assert "dpt_tiny" in capsys.readouterr().err
    assert weights.main(["--verify", str(tmp_path / "nope.pt")]) == 1
    capsys.readouterr()
    # a name without a hash (the user's own weights, as the node accepts them): the hash is information only,
    # the architecture check decides (before, any such .pt was called corrupt against the release's hash)
    mine = tmp_path / "my_finetuned.pt"
    mine.write_bytes(tiny_file.read_bytes())
    assert weights.main(["--verify", str(mine), "--variant", "dpt_hybrid"]) == 1
    captured = capsys.readouterr()
    assert "differs from the DPT release file" in captured.out and "corrupt or truncated" not in captured.err
    assert "dpt_tiny" in captured.err


def test_convert_to_hf_and_back(tiny_file, tmp_path):
    hf = tmp_path / "model.safetensors"
    assert weights.main(["--convert", str(tiny_file), str(hf), "--variant", "dpt_tiny", "--to", "hf"]) == 0
    back = tmp_path / "official.pt"
    assert weights.main(["--convert", str(hf), str(back), "--variant", "dpt_tiny", "--to", "official"]) == 0
    x = torch.randn(1, 3, 64, 64)
    ref = load_engine("dpt_tiny", tiny_file).run(x)["inverse_depth"]
    for p in (hf, back):
        assert torch.equal(load_engine("dpt_tiny", p).run(x)["inverse_depth"], ref)


def test_bench_model_quick_json(capsys):
    rc = bench_model.main(["--variants", "dpt_tiny", "--quick", "--iters", "1", "--warmup", "0", "--json", "-"])
    assert rc == 0
    payload = json.loads(capsys.readouterr().out)
    (row,) = payload["results"]
    assert row["variant"] == "dpt_tiny" and row["precision"] == "fp32" and row["device"] == "cpu"
    assert row["ours_ms"] > 0 and row["hf_ms"] > 0 and row["ratio"] == pytest.approx(row["ours_ms"] / row["hf_ms"])
    assert row["params_m"] == pytest.approx(7.34, abs=0.01)


def test_bench_model_non_square_without_hf(capsys):
    rc = bench_model.main(["--variants", "dpt_tiny", "--sizes", "64x64", "64x128", "--iters", "1",
                           "--warmup", "0", "--no-hf"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "64x128" in out and out.count("dpt_tiny  ") == 2 and "time per token" in out
    with pytest.raises(SystemExit):
        bench_model.main(["--sizes", "100x64"])
