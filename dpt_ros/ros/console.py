"""The console scripts ``dpt_node``, ``dpt_lifecycle_node``, ``sample_camera`` and ``dpt_predict`` (setup.py's entry
points).

Importing the node module takes 1-3 s (torch, rclpy, OpenCV). A Ctrl-C or SIGTERM in that time ends the process
as one does later, quietly with exit code 0, instead of with an import's traceback (``ros2 launch`` users press
Ctrl-C right after starting often). Once the module is imported, :func:`dpt_ros.ros.node.run` takes over and
rclpy handles both signals. ``sample_camera`` and ``dpt_predict`` (torch, OpenCV, rclpy: 1-3 s too) likewise end
quietly with the exit code each gives a Ctrl-C later: 0 (sample_camera), 130 and ``predict: interrupted``
(dpt_predict). Nothing here imports ROS: ``dpt_predict`` runs without it."""
import signal
import sys


def _start(entry: str) -> None:
    signal.signal(signal.SIGTERM, _terminated)
    try:
        from dpt_ros.ros import node
    except KeyboardInterrupt:
        sys.exit(0)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)   # rclpy.init installs its own handler next
    getattr(node, entry)()


def _terminated(signum, frame) -> None:
    sys.exit(0)


def dpt_node() -> None:
    _start("run")


def dpt_lifecycle_node() -> None:
    _start("run_managed")


def sample_camera() -> None:
    signal.signal(signal.SIGTERM, _terminated)
    try:
        from dpt_ros.ros import sample_camera as camera
    except KeyboardInterrupt:
        sys.exit(0)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)   # rclpy.init installs its own handler
    sys.exit(camera.main())


def dpt_predict() -> None:
    try:
        from dpt_ros.tools import predict
    except KeyboardInterrupt:
        print("predict: interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(predict.main())
