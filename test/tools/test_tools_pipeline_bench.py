"""bench_pipeline and gpu_check run on a CPU-only machine and produce their JSON."""

import json
import subprocess
import sys

import pytest

from dpt_ros.tools import bench_pipeline


def test_bench_pipeline_json_cpu(capsys):
    assert bench_pipeline.main(["--sizes", "160x120", "--repeat", "2", "--device", "cuda", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    cpu = result["cpu"]
    r = cpu["160x120"]
    for stage in ("decode", "preprocess", "postprocess", "cloud", "total"):
        assert r["ours_ms"][stage] > 0 and r["reference_ms"][stage] > 0
        # the speed-up is the ratio of the printed times (where 3 decimals leave them precise to 0.5 %)
        if min(r["ours_ms"][stage], r["reference_ms"][stage]) >= 0.1:
            assert r["speedup"][stage] == pytest.approx(r["reference_ms"][stage] / r["ours_ms"][stage], rel=0.02)
    for side in ("ours_ms", "reference_ms"):
        assert r[side]["total"] == pytest.approx(sum(v for k, v in r[side].items() if k != "total"), abs=0.01)
    assert set(cpu["cloud_640x480_ms"]) >= {"ours_xyzrgb_from_depth", "create_cloud_xyz_from_ready_array"}
    assert "cuda" in result  # measured on a GPU machine, "skipped" here


def test_reference_cloud_equals_ours():
    import numpy as np

    from dpt_ros import pipeline as pl

    depth = np.random.default_rng(0).random((12, 16)).astype(np.float32) + 0.5
    depth[2, 3] = np.nan
    rgb = np.random.default_rng(1).integers(0, 256, (12, 16, 3), dtype=np.uint8)
    intr = pl.Intrinsics(10.0, 11.0, 7.5, 5.5, 16, 12)
    ours = np.frombuffer(pl.build_cloud(depth, intr, rgb=rgb).data, np.float32)
    ref = np.frombuffer(bench_pipeline.ref_cloud_from_depth(depth, rgb, intr), np.float32)
    np.testing.assert_allclose(ours, ref, rtol=1e-6, equal_nan=True)


def test_gpu_check_runs_without_gpu(tmp_path):
    env_out = tmp_path / "out"
    p = subprocess.run([sys.executable, "-m", "dpt_ros.tools.gpu_check", "--quick", "--no-model", "--budget", "200",
                        "--tests", "test/pipeline/test_pipeline_gpu.py"],
                       capture_output=True, text=True, timeout=240, env={**__import__("os").environ, "OUT": str(env_out)})
    summary = json.loads(p.stdout)
    assert summary == json.loads((env_out / "gpu_summary.json").read_text())
    assert summary["pytest_gpu"]["failures"] == 0 and summary["pytest_gpu"]["tests"] > 0
    assert summary["bench_pipeline"]["rc"] == 0 and summary["bench_pipeline"]["result"]["cpu"]
    if not summary["env"]["cuda_available"]:
        assert summary["pytest_gpu"]["skipped"] == summary["pytest_gpu"]["tests"]
        assert summary["bench_pipeline"]["result"]["cuda"] == {"skipped": "CUDA or CuPy not available"}
    assert "bench_model" in summary and p.returncode == (0 if summary["ok"] else 1)
