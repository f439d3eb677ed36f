"""Smoke run of the end-to-end benchmark (three processes through DDS); figures are not asserted."""
import json
import os

import pytest

from dpt_ros.tools import bench_e2e

DOMAIN = 45


def test_bench_e2e_runs_and_reports(tmp_path, monkeypatch):
    """The node and the camera run with PYTHONVERBOSE=1 (inherited): each writes a line per import, far more than a pipe
    holds (64 KiB), as a chatty node's log does. bench_e2e read their pipes only after the run, and the node blocked
    in a write while still importing: 'dpt_node did not start' after 120 s. It now reads them as they come."""
    monkeypatch.setenv("PYTHONVERBOSE", "1")
    out = tmp_path / "e2e.json"
    code = bench_e2e.main(["--duration", "4", "--warmup", "3", "--width", "160", "--height", "120", "--rate", "15",
                           "--input-size", "64", "--domain", str(DOMAIN), "--publication-mode", "ASYNCHRONOUS",
                           "--json", str(out)])
    assert code == 0
    r = json.loads(out.read_text())
    assert r["variant"] == "dpt_tiny" and r["device"] == "cpu" and r["net_size"] == "64x64"
    assert r["image"] == "160x120"   # the size of the frames the camera sent
    assert r["publication_mode"] == "ASYNCHRONOUS"   # the node's outputs also arrive in Fast DDS's async mode
    assert set(r["outputs"]) == {"depth", "points"}   # the default: depth + cloud
    assert r["outputs"]["depth"]["count"] > 0 and r["outputs"]["points"]["count"] > 0
    assert r["node_input_rate_hz"] > 0
    assert r["node_processed_rate_hz"] > 0 and r["node_cpu_cores"] > 0
    assert set(r["stages_ms"]) == set(bench_e2e.STAGES) and 0 <= r["node_overhead_fraction"] <= 1
    # the report agrees with itself: rates from counts and the window, ordered percentiles, the node's
    # counters add up (received = processed + dropped + idle, up to the 2 frames in flight at each snapshot)
    for name, o in r["outputs"].items():
        assert o["rate_hz"] == pytest.approx(o["count"] / r["window_s"], abs=0.02), name
        assert 0 < o["latency_p50_ms"] <= o["latency_p99_ms"] <= o["latency_max_ms"], name
    assert r["outputs"]["depth"]["count"] <= 15 * r["window_s"] + 2   # never more outputs than camera frames
    assert not r["errors"]
    assert r["node_input_rate_hz"] == pytest.approx(
        r["node_processed_rate_hz"] + r["dropped_rate_hz"] + r["idle_rate_hz"], abs=1.0)
    assert r["node_input_rate_hz"] <= 15 * 1.2
    assert r["node_cpu_cores"] <= os.cpu_count()
    stages = r["stages_ms"]
    assert r["node_total_ms"] == pytest.approx(sum(stages.values()), abs=0.01)
    assert r["node_overhead_fraction"] == pytest.approx(1 - stages["model"] / sum(stages.values()), abs=0.001)


@pytest.mark.parametrize("argv, why", [
    # a negative or NaN window raised from time.sleep, infinity never ended, both after the processes had started;
    # under 2 s the window may hold fewer than two /diagnostics reports, which ended the run after measuring
    (["--duration", "-1"], "argument --duration: -1 is no window: give at least 2 seconds (the node's rates are read "
                           "between two of its /diagnostics reports, which come once a second)"),
    (["--duration", "0"], "argument --duration: 0 is no window: give at least 2 seconds"),
    (["--duration", "1.5"], "argument --duration: 1.5 is no window: give at least 2 seconds"),
    (["--duration", "nan"], "argument --duration: nan is no window"),
    (["--duration", "inf"], "argument --duration: inf is no window"),
    (["--duration", "20s"], "argument --duration: '20s' is not a number"),
    (["--warmup", "-5"], "argument --warmup: -5 is no warm-up: give 0 or more seconds"),
    (["--warmup", "nan"], "argument --warmup: nan is no warm-up: give 0 or more seconds"),
    (["--warmup", "inf"], "argument --warmup: inf is no warm-up"),
    # (a negative scale was taken as 0, "only metric variants", and no depth.scale given to the node)
    (["--depth-scale", "-1"], "argument --depth-scale: -1.0 out of range 0..1e+06"),
    (["--depth-scale", "2e6"], "argument --depth-scale: 2000000.0 out of range 0..1e+06"),
    (["--depth-scale", "nan"], "argument --depth-scale: nan out of range 0..1e+06"),
])
def test_bench_e2e_refuses_a_window_warm_up_or_scale_it_cannot_use_before_it_starts(argv, why, usage_error,
                                                                                      monkeypatch):
    """--duration, --warmup and --depth-scale are argparse's usage errors (exit 2, naming the option and what to give)
    before any process starts: run is never reached."""
    monkeypatch.setattr(bench_e2e, "run", lambda args: pytest.fail(f"{argv} was taken and the run started"))
    usage_error(bench_e2e.main, argv, why)


def test_bench_e2e_leaves_its_callers_environment_as_it_was(monkeypatch):
    """run set the Fast DDS profile variable in os.environ (this process's participant reads it at rclpy.init) and
    left it so: bench_e2e's main() called in-process (a test, another tool) gave its caller's later processes the
    benchmark's profile. os.environ is set back when main returns or raises (one failure injected: the node's process
    cannot be started, after the profile was set)."""
    import subprocess

    from dpt_ros.ros.dds_env import PROFILE_VARIABLES

    def cannot_start(*args, **kwargs):
        raise OSError("a planted failure to start the node's process")

    monkeypatch.setattr(subprocess, "Popen", cannot_start)
    for key in PROFILE_VARIABLES:
        monkeypatch.delenv(key, raising=False)
    environ = dict(os.environ)
    with pytest.raises(OSError, match="a planted failure"):
        bench_e2e.main(["--duration", "4", "--domain", str(DOMAIN)])
    assert dict(os.environ) == environ, "bench_e2e left the caller's environment changed"


def test_bench_e2e_takes_the_edges_of_its_window_warm_up_and_scale():
    args = bench_e2e.parse_args(["--duration", "2", "--warmup", "0", "--depth-scale", "0"])
    assert (args.duration, args.warmup, args.depth_scale) == (2.0, 0.0, 0.0)   # (0: only metric variants)
    args = bench_e2e.parse_args(["--depth-scale", "1e6"])
    assert (args.duration, args.warmup, args.depth_scale) == (20.0, 5.0, 1e6)


def test_a_node_failing_every_frame_is_recognised_from_its_diagnostics():
    """bench_e2e stops waiting for outputs when /diagnostics shows errors and nothing processed (twice in a row):
    a GPU run that fails every frame costs seconds, not the two-minute deadline."""
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

    from dpt_ros.tools.bench_e2e import _failing

    def diag(errors: dict, processed: int, incomplete: int = 0) -> DiagnosticArray:
        model = DiagnosticStatus(name="dpt_node: model", values=[KeyValue(key="device", value="cuda:0")] + [
            KeyValue(key=f"errors.{k}", value=str(v)) for k, v in errors.items()])
        camera = DiagnosticStatus(name="dpt_node: camera /", values=[
            KeyValue(key="received", value="5"), KeyValue(key="processed", value=str(processed))] + [
            KeyValue(key=f"error.{k}", value=str(v)) for k, v in errors.items()] + [
            KeyValue(key="incomplete.no_camera_info", value=str(incomplete))])
        if incomplete:
            model.values.append(KeyValue(key="errors.no_camera_info", value=str(incomplete)))
        return DiagnosticArray(status=[model, camera])

    assert _failing(diag({"postprocess": 4}, 0)) == {"error.postprocess": "4"}
    assert _failing(diag({"postprocess": 4}, 1)) == {}   # some frames get through: keep measuring
    assert _failing(diag({}, 0)) == {}                    # nothing processed yet, nothing failed: still starting
    # a first frame published without its cloud (camera_info not there yet), not yet counted processed: not failing
    assert _failing(diag({}, 0, incomplete=1)) == {}


def test_stage_means_are_of_the_window_between_two_reports():
    """bench_e2e's per-stage means are of the batches between the first and the last /diagnostics report of its
    window (as its rates), not the node's own latency.<stage>_ms, which are of the last 30 s (at most 300 batches):
    with a window shorter than that, they took in the warm-up and the node's first frames (a first batch's cold
    pre-processing 6.5 instead of 0.4 ms on the CPU). A real node, frames before and inside the window."""
    import statistics
    import time

    from dpt_ros.ros.node import STAGES, _Frame
    from dpt_ros.ros.testing import Harness, node_ready_to_process

    harness = Harness(DOMAIN)
    try:
        node, cam, frame = node_ready_to_process(harness)

        def batch():
            node.process([_Frame(cam, frame, time.monotonic())])

        def report():
            return bench_e2e._model_values(node.diagnostics())

        for _ in range(3):   # the warm-up, before the window
            batch()
        first = report()
        before = len(node._stage_ms["model"])
        for _ in range(4):
            batch()
        last = report()
        window = {s: list(node._stage_ms[s])[before:] for s in STAGES}
        assert len(window["model"]) == 4 and int(last["latency.batches"]) - int(first["latency.batches"]) == 4
        means = bench_e2e.window_stage_means(first, last)
        for s in STAGES:
            assert means[s] == pytest.approx(statistics.fmean(window[s]), abs=2e-3), s
        # the node's own figure is of all 7 batches (the warm-up's too)
        assert float(last["latency.model_ms"]) == pytest.approx(statistics.fmean(node._stage_ms["model"]), abs=0.01)
        assert all(v != v for v in bench_e2e.window_stage_means(last, last).values())   # no batch between: NaN
    finally:
        harness.shutdown()
