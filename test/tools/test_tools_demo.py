"""`make demo` end to end: sample_camera and dpt_node as processes, real DDS, demo_out/ contents."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from dpt_ros.ros.dds_env import localhost_only
from dpt_ros.tools import demo

DOMAIN = 71


@pytest.mark.slow
def test_demo_writes_frames_latency_and_random_weight_warning(tmp_path):
    out = tmp_path / "demo_out"
    env = dict(os.environ, ROS_DOMAIN_ID=str(DOMAIN), **localhost_only())
    res = subprocess.run([sys.executable, "-m", "dpt_ros.tools.demo", "--frames", "3", "--out", str(out),
                          "--variant", "dpt_tiny", "--input-size", "64", "--device", "cpu",
                          "--width", "160", "--height", "120", "--rate", "10", "--timeout", "180"],
                         env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    assert "RANDOM WEIGHTS" in res.stdout                     # no weights file for dpt_tiny: loud warning
    p50 = json.loads((out / "summary.json").read_text())["latency_ms"]["p50"]
    assert f"3 frames -> {out}/ (latency p50 {p50:.1f} ms, RANDOM WEIGHTS)" in res.stdout
    # these wheels are Kilted (Fast DDS 3): the profile goes under its name only, so no process warns
    assert "is deprecated" not in res.stdout + res.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames"] == 3 and summary["random_weights"] is True
    assert "not meaningful" in summary["warning"]
    lat = summary["latency_ms"]["per_frame"]
    assert len(lat) == 3 and all(0 < x < 60_000 for x in lat)
    stamps = [f["stamp_ns"] for f in summary["per_frame"]]
    assert stamps == sorted(stamps) and len(set(stamps)) == 3
    for i in range(3):
        depth = np.load(out / f"frame_{i:03d}_inverse_depth.npy")
        assert depth.dtype == np.float32 and depth.shape == (120, 160)   # the input's size, not the network's
        assert (out / f"frame_{i:03d}_inverse_depth.png").stat().st_size > 0
        assert (out / f"frame_{i:03d}_input.png").stat().st_size > 0
    # the node's own counters came back through /diagnostics
    cams = [v for k, v in summary["diagnostics"].items() if "camera" in k]
    assert cams and int(cams[0]["processed"]) >= 3


def test_demo_refuses_an_unknown_or_non_depth_variant_before_starting_anything(capsys):
    for bad in ("dpt_hybird", "dpt_large_ade20k"):
        with pytest.raises(SystemExit) as info:
            demo.parse_args(["--variant", bad])
        assert info.value.code == 2
        err = capsys.readouterr().err
        assert f"invalid choice: '{bad}'" in err and "dpt_hybrid_kitti" in err
