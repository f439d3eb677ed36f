"""A Fast DDS profile whose shared-memory segment does not fit in /dev/shm (Docker's default is 64 MB: one of
config/fastdds_large_data.xml's 32 MB segments): dpt_node says so at its start (dpt_ros.ros.dds_env.shm_shortage),
as the processes without a segment otherwise carry their images as UDP fragments with only Fast DDS's
'Failed to create segment: No such file or directory'. And a /dev/shm of its own (containers on --net=host
without --ipc=host): nothing arrives, with no error from Fast DDS; the node's silent-camera warning says so."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dpt_ros.ros.dds_env import SHM_OVERHEAD, set_profile, shm_segment_size, shm_shortage
from dpt_ros.ros.testing import can_mount_tmpfs, wait_for, with_own_dev_shm
from dpt_ros.tools.bench_reliability import LineReader, node_env, stop_node

DOMAIN = 90
ROOT = Path(__file__).resolve().parents[2]
PACKAGE_PROFILE = ROOT / "config" / "fastdds_large_data.xml"


def _profile(tmp_path, segment_size: int) -> str:
    """The package profile with another segment_size."""
    text = PACKAGE_PROFILE.read_text().replace("<segment_size>33554432</segment_size>",
                                               f"<segment_size>{segment_size}</segment_size>")
    path = tmp_path / f"shm_{segment_size}.xml"
    path.write_text(text)
    return str(path)


def test_segment_size_is_read_from_the_profile(tmp_path):
    assert shm_segment_size(str(PACKAGE_PROFILE)) == 32 * 1024 * 1024
    udp_only = tmp_path / "udp.xml"
    udp_only.write_text('<profiles xmlns="http://www.eprosima.com"><transport_descriptors><transport_descriptor>'
                        '<transport_id>u</transport_id><type>UDPv4</type></transport_descriptor>'
                        '</transport_descriptors></profiles>')
    assert shm_segment_size(str(udp_only)) is None
    assert shm_segment_size(str(tmp_path / "missing.xml")) is None
    (tmp_path / "broken.xml").write_text("<profiles>")
    assert shm_segment_size(str(tmp_path / "broken.xml")) is None


def test_shortage_is_measured_against_the_directory(tmp_path):
    st = os.statvfs(tmp_path)
    total, free = st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize
    # no profile, or Fast DDS's default-sized segment: nothing to say
    assert shm_shortage({}, str(tmp_path)) is None
    assert shm_shortage({"FASTDDS_DEFAULT_PROFILES_FILE": _profile(tmp_path, 512 * 1024)}, str(tmp_path)) is None
    # room for three processes' segments and free space for this one's: nothing to say
    small = int(min(free, total / 3) / SHM_OVERHEAD / 4)
    assert shm_shortage({"FASTDDS_DEFAULT_PROFILES_FILE": _profile(tmp_path, small)}, str(tmp_path)) is None
    # the directory holds fewer segments than the processes that need one (a Humble/Jazzy user's variable is read too)
    segment = int(free / SHM_OVERHEAD / 2)
    fits = int(total // (segment * SHM_OVERHEAD))
    profile = {"FASTRTPS_DEFAULT_PROFILES_FILE": _profile(tmp_path, segment)}
    assert shm_shortage(profile, str(tmp_path), processes=fits) is None
    said = shm_shortage(profile, str(tmp_path), processes=fits + 1)
    assert said is not None and f"{tmp_path} is {total / 2**20:.0f} MiB, room for {fits} of them" in said
    assert "--shm-size=" in said and "--ipc=host" in said
    # larger than the free space: this process gets none
    said = shm_shortage({"FASTDDS_DEFAULT_PROFILES_FILE": _profile(tmp_path, free + 2**20)}, str(tmp_path))
    assert said is not None and "too little for this process's segment" in said


def _output_once_it_says(node: subprocess.Popen, text: str, what: str, *others: subprocess.Popen) -> str:
    """What ``node`` wrote until a line of it held ``text`` or it ended (60 s at the most), once ``others`` (processes
    started beside it) and then ``node`` have been stopped."""
    reader = LineReader(node)
    try:
        wait_for(lambda: text in reader.text() or node.poll() is not None, timeout=60, what=what)
    finally:
        for proc in others:
            stop_node(proc)
        stop_node(node)
    return reader.join()


def _node_with_its_own_dev_shm(size_mb: int, env: dict) -> subprocess.Popen:
    """dpt_node (dpt_tiny, random weights, CPU) with a /dev/shm of its own of ``size_mb``, its output on stdout."""
    return with_own_dev_shm(size_mb, ["dpt_ros.ros.node", "--ros-args", "-p", "depth.variant:=dpt_tiny",
                                      "-p", "depth.weights:=random", "-p", "input_size:=64", "-p", "device:=cpu"],
                            cwd=ROOT, env=env)


@pytest.mark.skipif(not can_mount_tmpfs(), reason="needs root (unshare -m, mount a tmpfs on /dev/shm)")
@pytest.mark.parametrize("size_mb, warned", [(64, True), (256, False)])
def test_node_warns_at_start_when_dev_shm_is_dockers_64_mb(size_mb, warned):
    """dpt_node with the package profile in a mount namespace whose /dev/shm is a tmpfs of ``size_mb``
    (docker run's default, and --shm-size=256m)."""
    proc = _node_with_its_own_dev_shm(size_mb, dict(set_profile(node_env(DOMAIN), str(PACKAGE_PROFILE))))
    # the warning comes before the model loads
    out = _output_once_it_says(proc, "loading depth", "dpt_node to start loading its model")
    assert "loading depth" in out, out
    warning = [line for line in out.splitlines() if "shared-memory segment" in line]
    if warned:
        assert len(warning) == 1 and "/dev/shm is 64 MiB, room for 1 of them" in warning[0], out
        assert "--shm-size=128m" in warning[0] and warning[0].startswith("[WARN]"), out
    else:
        assert warning == [], out


@pytest.mark.skipif(not can_mount_tmpfs(), reason="needs root (unshare -m, mount a tmpfs on /dev/shm)")
def test_node_names_a_separate_dev_shm_when_a_found_camera_sends_nothing():
    """dpt_node in a mount namespace with its own /dev/shm (a container on --net=host without --ipc=host) and a
    camera outside it: the node discovers the camera's publisher, yet no image arrives (Fast DDS's shared-memory
    transport, with no error), so the node's silent-camera warning names the publisher and --ipc=host."""
    env = node_env(DOMAIN)
    cam_cmd = [sys.executable, "-m", "dpt_ros.ros.sample_camera", "--ros-args", "-p", "rate:=10.0",
               "-p", "width:=64", "-p", "height:=48"]
    node = _node_with_its_own_dev_shm(256, env)
    camera = subprocess.Popen(cam_cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    LineReader(camera)   # (its output read as it comes: a camera that filled the pipe would block while the test waits)
    out = _output_once_it_says(node, "publisher found on it", "dpt_node's silent-camera warning", camera)
    hint = [line for line in out.splitlines() if "publisher found on it" in line]
    assert len(hint) == 1 and "no image yet" in hint[0] and "1 publisher found on it" in hint[0], out
    assert "--ipc=host" in hint[0] and hint[0].startswith("[WARN]"), out
