"""The processes beside dpt_node that carry camera-sized images through Fast DDS shared memory (sample_camera,
calibrate_depth, the node benchmarks) say at their start, as dpt_node does, when /dev/shm cannot hold the large-data
profile's segments (Docker's 64 MB: one of config/fastdds_large_data.xml's 32 MB segments). They said nothing: a
camera without a segment sent its frames as UDP fragments (most lost) with only Fast DDS's 'Failed to create
segment', and a benchmark reported the halved rates as its figures."""
import os
import signal
import subprocess
from pathlib import Path

import pytest

from dpt_ros.ros.dds_env import set_profile
from dpt_ros.ros.testing import can_mount_tmpfs, wait_for, with_own_dev_shm
from dpt_ros.tools.bench_reliability import LineReader, node_env

DOMAIN = 79
ROOT = Path(__file__).resolve().parents[2]
PACKAGE_PROFILE = ROOT / "config" / "fastdds_large_data.xml"


pytestmark = pytest.mark.skipif(not can_mount_tmpfs(), reason="needs root (unshare -m, mount a tmpfs on /dev/shm)")


def _in_own_dev_shm(size_mb: int, *args: str) -> subprocess.Popen:
    """``python -m <args>`` with the package profile and a /dev/shm of its own of ``size_mb``; a process group of
    its own (with the processes it starts)."""
    return with_own_dev_shm(size_mb, list(args), cwd=ROOT, start_new_session=True,
                            env=dict(set_profile(node_env(DOMAIN), str(PACKAGE_PROFILE))))


def _warnings(text: str) -> list[str]:
    return [line for line in text.splitlines() if "shared-memory segment" in line]


@pytest.mark.parametrize("size_mb, warned", [(64, True), (256, False)])
def test_sample_camera_warns_at_start_when_dev_shm_is_dockers_64_mb(size_mb, warned):
    proc = _in_own_dev_shm(size_mb, "dpt_ros.ros.sample_camera", "--ros-args", "-p", "count:=2", "-p", "rate:=30.0",
                           "-p", "width:=64", "-p", "height:=48")
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    if warned:
        (line,) = _warnings(out)
        assert line.startswith("[WARN]") and "[sample_camera]" in line, out
        assert "/dev/shm is 64 MiB, room for 1 of them" in line and "--shm-size=128m" in line, out
        assert "at least 128 MiB for a camera, dpt_node and one subscriber" in line, out
    else:
        assert _warnings(out) == [], out


def test_calibrate_depth_warns_at_start_when_dev_shm_is_dockers_64_mb():
    """(its node's depth images and the reference camera's come to it through that memory)"""
    proc = _in_own_dev_shm(64, "dpt_ros.tools.calibrate_depth", "--reference", "/reference", "--timeout", "0.5")
    out, _ = proc.communicate(timeout=60)
    (line,) = _warnings(out)
    assert line.startswith("[WARN]") and "[dpt_calibrate_depth]" in line and "room for 1 of them" in line, out


@pytest.mark.parametrize("tool, who", [
    ("bench_e2e", "for bench_e2e's camera, dpt_node and its subscriber (this process)"),
    ("bench_publish", "for bench_publish and its subscriber process"),
    ("bench_node_stages", "for the node (this process) and its subscriber process")])
def test_node_benchmarks_warn_before_they_measure_when_dev_shm_is_dockers_64_mb(tool, who):
    """Each benchmark, for the processes it starts (stopped once it has said it: the figures that follow are not what
    this checks)."""
    proc = _in_own_dev_shm(64, f"dpt_ros.tools.{tool}", "--domain", str(DOMAIN))
    reader = LineReader(proc)
    try:
        wait_for(lambda: _warnings(reader.text()) or proc.poll() is not None, timeout=60, what=f"{tool}'s warning")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)   # (the benchmark and the processes it started)
        proc.wait()
    (line,) = _warnings(reader.join())
    assert line.startswith(f"{tool}: warning: the Fast DDS profile {PACKAGE_PROFILE} gives every process"), line
    assert "/dev/shm is 64 MiB, room for 1 of them" in line and f"at least 128 MiB {who}" in line, line
