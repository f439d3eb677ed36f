"""The installed launch files run the node, as `ros2 launch dpt_ros depth.launch.py ...` does.

Needs `launch` / `launch_ros` (a ROS 2 installation; not on PyPI) and dpt_ros installed in an ament
prefix (`colcon build` + `source install/setup.bash`): skipped otherwise, so it runs on a ROS user's
machine (`colcon test`, or pytest in a sourced shell) and not in this project's CI. The launch service
runs in a subprocess (its own process group and signal handling, like `ros2 launch`); the test drives
the launched node over DDS.
"""
import importlib.util
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from lifecycle_msgs.srv import GetState
from rcl_interfaces.srv import GetParameters
from rclpy.parameter import parameter_value_to_python
from sensor_msgs.msg import Image

from dpt_ros.ros.dds_env import localhost_only
from dpt_ros.ros.testing import call_service, frame_through, make_image, publish_until, qos, wait_for
from dpt_ros.tools.bench_reliability import LineReader, stop_node


def _installed_launch_dir():
    if importlib.util.find_spec("launch") is None or importlib.util.find_spec("launch_ros") is None:
        return None
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
    except ImportError:
        return None
    try:
        path = Path(get_package_share_directory("dpt_ros")) / "launch"
    except PackageNotFoundError:
        return None
    return path if (path / "depth.launch.py").exists() else None


LAUNCH_DIR = _installed_launch_dir()
pytestmark = pytest.mark.skipif(LAUNCH_DIR is None,
                                reason="needs launch/launch_ros and an installed dpt_ros (source a ROS 2 workspace)")
DOMAIN = 58

RUNNER = textwrap.dedent("""
    import sys
    from launch import LaunchDescription, LaunchService
    from launch.actions import IncludeLaunchDescription
    from launch.launch_description_sources import PythonLaunchDescriptionSource

    path, args = sys.argv[1], dict(a.split(":=", 1) for a in sys.argv[2:])
    service = LaunchService(argv=sys.argv[2:])   # (as ros2 launch makes it: the arguments are the context's argv)
    service.include_launch_description(LaunchDescription([
        IncludeLaunchDescription(PythonLaunchDescriptionSource(path), launch_arguments=args.items())]))
    sys.exit(service.run())
""")


# a parent launch file that sets configurations of its own (one named as dpt.launch.py's argument, for a dpt.launch.py
# it includes too; one close to an argument's name) before it includes the launch file, which the context shows it
PARENT = RUNNER.replace("service.include_launch_description(LaunchDescription([", """from launch.actions import \
    SetLaunchConfiguration
service.include_launch_description(LaunchDescription([
    SetLaunchConfiguration("segmentation_weights", "seg.pt"), SetLaunchConfiguration("device_id", "1"),""")


def _launch(name, *args, runner=RUNNER):
    """The launch service, its output read as it comes (:class:`LineReader`): a launched node that logs more than the
    pipe holds (64 KiB) while the test waits for it over DDS blocked in that write, and the test timed out on it."""
    env = dict(os.environ, ROS_DOMAIN_ID=str(DOMAIN), **localhost_only())
    proc = subprocess.Popen([sys.executable, "-c", runner, str(LAUNCH_DIR / name), *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    LineReader(proc)
    return proc


def _stop(proc, timeout=15.0):
    """Ctrl-C in a terminal, which reaches the whole process group: (exit status, None where the launch had to be
    killed ``timeout`` s later; its output)."""
    code, out, _ = stop_node(proc, signal.SIGINT, timeout, group=True)
    return code, out


def _exited(proc, timeout=60.0):
    """The output of a launch that ends by itself (TimeoutExpired where it still runs ``timeout`` s later)."""
    proc.wait(timeout)
    return proc.line_reader.join()


def test_depth_launch_file_starts_a_configured_node_that_serves_frames(harness, tmp_path):
    config = tmp_path / "mine.yaml"
    config.write_text("/**:\n  ros__parameters:\n    colormap: gray\n    points.stride: 4\n")
    proc = _launch("depth.launch.py", "variant:=dpt_tiny", "weights:=random", "resolution:=256", "device:=cpu",
                   "namespace:=front", "image:=/launch_cam/image_raw", "camera_info:=/launch_cam/camera_info",
                   f"config_file:={config}")
    try:
        names = ["depth.variant", "depth.weights", "input_size", "device", "colormap", "points.stride"]
        res = call_service(harness, GetParameters, "/front/dpt_node/get_parameters",   # namespace:=front
                           GetParameters.Request(names=names), timeout=90)
        values = dict(zip(names, map(parameter_value_to_python, res.values)))
        # launch arguments, then the resolution preset, then the user's config_file on top
        assert values == {"depth.variant": "dpt_tiny", "depth.weights": "random", "input_size": 256,
                          "device": "cpu", "colormap": "gray", "points.stride": 4}
        m = frame_through(harness, "/launch_cam/image_raw", "/front/inverse_depth",
                          make_image(7_000_000_042, width=64, height=48, frame_id="launch_cam_optical"))
        assert (m.header.stamp.sec, m.header.stamp.nanosec, m.header.frame_id) == (7, 42, "launch_cam_optical")
        assert (m.width, m.height, m.encoding) == (64, 48, "32FC1")
    finally:
        code, log = _stop(proc)
    assert code == 0, log
    assert "process has finished cleanly" in log, log


def test_managed_launch_configures_and_activates_the_lifecycle_node(harness):
    """managed:=true (autostart): launch_ros's LifecycleNode runs dpt_lifecycle_node and takes it to active."""
    proc = _launch("depth.launch.py", "variant:=dpt_tiny", "weights:=random", "resolution:=256", "device:=cpu",
                   "namespace:=managed", "managed:=true")
    try:
        def state() -> str:
            return call_service(harness, GetState, "/managed/dpt_node/get_state", GetState.Request(),
                                timeout=90).current_state.label
        wait_for(lambda: state() == "active", timeout=90, what="configured and activated by the launch file")
        out = harness.collector(Image, "/managed/inverse_depth")
        pub = harness.probe.create_publisher(Image, "/managed/image", qos())
        wait_for(lambda: pub.get_subscription_count() > 0, timeout=30, what="the managed node's image subscription")
        publish_until(pub, lambda i: make_image(i, width=64, height=48), out, timeout=30)
        assert (out[0].width, out[0].height, out[0].encoding) == (64, 48, "32FC1")
    finally:
        code, log = _stop(proc)
    assert code == 0, log
    assert "Traceback" not in log, log


def test_launch_rejects_a_variant_outside_the_choices():
    proc = _launch("depth.launch.py", "variant:=dpt_huge")
    try:
        log = _exited(proc)   # launch exits by itself, before starting any node
    finally:
        _stop(proc)
    assert proc.returncode != 0 and "process started" not in log
    assert "dpt_huge" in log and "dpt_hybrid" in log, log   # launch lists the valid choices


def test_launch_names_a_misspelt_or_misplaced_argument_it_ignores(tmp_path):
    """ros2 launch takes any name:=value and the launch file never reads one it does not declare: resoltion:=512 ran
    at the default size and segmentation_weights:= on depth.launch.py loaded nothing, without a word."""
    proc = _launch("depth.launch.py", "resoltion:=512", "segmentation_weights:=seg.pt", f"weights:={tmp_path}/nope.pt")
    try:
        log = _exited(proc)   # the node exits (no weights file), then launch by itself
    finally:
        _stop(proc)
    assert "[depth.launch.py]: launch argument 'resoltion' is not one of depth.launch.py's: ignored; did you mean " \
           "'resolution'?" in log, log
    assert "[depth.launch.py]: launch argument 'segmentation_weights' is one of dpt.launch.py's, not " \
           "depth.launch.py's: ignored" in log, log


def test_launch_names_a_node_parameter_given_as_its_argument():
    """depth.weights:=random, as the node's own 'weights is not set' line says it, given to ros2 launch: ignored, and
    the node exited with that line again. The launch file now says which of its arguments sets it."""
    proc = _launch("depth.launch.py", "depth.weights:=random", "colormap:=turbo")
    try:
        log = _exited(proc)   # the node exits (dpt_hybrid's weights not set), then launch
    finally:
        _stop(proc)
    assert "[depth.launch.py]: launch argument 'depth.weights' is a parameter of the node, not one of " \
           "depth.launch.py's arguments: ignored; the launch argument weights sets it (--show-args)" in log, log
    assert "[depth.launch.py]: launch argument 'colormap' is a parameter of the node, not one of depth.launch.py's " \
           "arguments: ignored; set it in your parameter YAML (/**: ros__parameters: colormap: ...) given as " \
           "config_file:=<file>" in log, log
    assert "depth.weights is not set" in log, log   # (ignored indeed: the node got no weights)


def test_a_parent_launch_files_own_configurations_are_not_taken_for_misspelt_arguments(tmp_path):
    """Only the command line's names are judged: a parent's own configurations (and those of launch files it included
    before) are in the context too, and were warned of as 'one of dpt.launch.py's' or 'did you mean device?'."""
    proc = _launch("depth.launch.py", "resoltion:=512", f"weights:={tmp_path}/nope.pt", runner=PARENT)
    try:
        log = _exited(proc)
    finally:
        _stop(proc)
    assert "launch argument 'resoltion' is not one of depth.launch.py's" in log, log   # (typed: still said)
    assert "'segmentation_weights'" not in log and "'device_id'" not in log, log
