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
