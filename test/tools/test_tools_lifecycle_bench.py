"""bench_lifecycle: dpt_lifecycle_node's transition times and memory, in process on the CPU (figures not asserted)."""
import json

import pytest

pytest.importorskip("rclpy")

from dpt_ros.tools import bench_lifecycle  # noqa: E402

DOMAIN = 81


def test_bench_lifecycle_reports_every_transition_and_the_memory(tmp_path, capsys):
    out = tmp_path / "lifecycle.json"
    assert bench_lifecycle.main(["--variant", "dpt_tiny", "--input-size", "32", "--cycles", "2",
                                 "--domain", str(DOMAIN), "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    printed = capsys.readouterr().out
    assert "RANDOM WEIGHTS" in printed and printed.count("configure_ms") >= 2
    assert (r["variant"], r["device"], r["weights"]) == ("dpt_tiny", "cpu", "random") and len(r["cycles"]) == 2
    for cycle in r["cycles"]:
        assert all(cycle[f"{t}_ms"] > 0 for t in ("configure", "activate", "deactivate", "cleanup"))
        assert cycle["configured"]["rss_mb"] > 0 and cycle["cleaned_up"]["rss_mb"] > 0
    assert r["unconfigured"]["rss_mb"] > 0 and "cuda_allocated_mb" not in r["unconfigured"]


def test_a_failed_transition_stops_the_benchmark_with_the_reason():
    with pytest.raises(RuntimeError, match="configure failed"):
        bench_lifecycle.run("dpt_tiny", 32, "cuda:7", "fp32", 1, DOMAIN)


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA device")
def test_memory_is_the_model_devices_for_auto_and_cuda_n():
    """--device auto on a GPU machine runs the model on the GPU: its CUDA memory is reported (it was only for names
    starting with 'cuda'), and cuda:N's is device N's (it was the current device's)."""
    import torch

    n = torch.cuda.device_count() - 1
    before = bench_lifecycle._memory(f"cuda:{n}")["cuda_allocated_mb"]
    held = torch.empty(64 * 2**20, dtype=torch.uint8, device=f"cuda:{n}")   # 64 MiB on device n
    assert bench_lifecycle._memory(f"cuda:{n}")["cuda_allocated_mb"] == pytest.approx(before + 64, abs=1)
    assert "cuda_allocated_mb" in bench_lifecycle._memory("auto")
    del held


def test_memory_on_the_cpu_has_no_cuda_figures():
    assert set(bench_lifecycle._memory("cpu")) == {"rss_mb"}
    assert bench_lifecycle._memory("cpu")["rss_mb"] > 0


@pytest.mark.parametrize("argv, why", [
    # (0 or a negative count started the node, loaded nothing and reported no cycle, exit status 0)
    (["--cycles", "0"], "argument --cycles: 0 is no number of cycles: give at least 1"),
    (["--cycles", "-2"], "argument --cycles: -2 is no number of cycles: give at least 1"),
    (["--cycles", "two"], "argument --cycles: 'two' is not a whole number"),
])
def test_bench_lifecycle_refuses_a_count_of_cycles_it_cannot_run_before_it_starts(argv, why, usage_error, monkeypatch):
    monkeypatch.setattr(bench_lifecycle, "run", lambda *a: pytest.fail(f"{argv} was taken and the run started"))
    usage_error(bench_lifecycle.main, argv, why)
    assert bench_lifecycle.parse_args(["--cycles", "1"]).cycles == 1
