"""Fit ``depth.scale`` / ``depth.shift`` of a relative model from a reference depth camera.

Subscribes the node's ``inverse_depth`` and a reference depth image of the same view (e.g. a depth camera's
depth registered to the colour camera: ``/camera/aligned_depth_to_color/image_raw``; 32FC1 metres or
16UC1 / mono16 millimetres, 0 = no measurement; ``--reference-transport compressedDepth``: its image_transport
``compressedDepth`` topic, ``<reference>/compressedDepth``), pairs them by stamp, fits
``1 / reference = scale * inverse_depth + shift`` over ``--frames`` pairs (``dpt_ros.pipeline.calibrate``) and
prints the two parameters, how well they hold, and the commands that set them:

    python -m dpt_ros.tools.calibrate_depth --reference /camera/aligned_depth_to_color/image_raw \\
        --inverse /inverse_depth --frames 30 [--apply /dpt_node] [--yaml calibration.yaml]

``--apply NODE`` sets both on the running node at once (SetParametersAtomically); ``--yaml FILE`` writes them as
a parameter file for ``--params-file`` / the launch files' ``config_file``. ``--evaluate /depth`` instead
compares the node's metric ``depth`` (a metric variant's, or after a calibration) with the reference and prints
the usual error figures (AbsRel, RMSE, delta < 1.25) without fitting anything. A relative model's own scale and
shift change from frame to frame (more between scenes than between frames of one scene), so the result is an
approximation for scenes like the calibration's; the median relative error and the per-frame spread say how
close. Run it while the camera sees a scene with near and far surfaces.
"""
from __future__ import annotations

import argparse
import os
import re
import shlex
import sys
import time

import numpy as np

from dpt_ros.ros.params import yaml_float
from dpt_ros.tools.options import amount, count, output_file, ToolParser

#: the tool's own node, in the root namespace: relative topic names (``inverse_depth``) resolve under it
NODE_NAME = "dpt_calibrate_depth"


def name_problem(name: str) -> str:
    """Why rcl would refuse topic or service ``name`` on the tool's node (:data:`NODE_NAME` in ``/``), '' when it
    takes it: rcl's words, without its source file and line."""
    from rclpy.exceptions import NameValidationException  # noqa: PLC0415
    from rclpy.expand_topic_name import expand_topic_name  # noqa: PLC0415
    from rclpy.validate_full_topic_name import validate_full_topic_name  # noqa: PLC0415

    try:
        validate_full_topic_name(expand_topic_name(name, NODE_NAME, "/"))
    except ValueError as e:   # (expand_topic_name's: "topic name 'x' is invalid: <why>, at <file>:<line>")
        return re.sub(r", at \S+:\d+$", "", str(e)).split(" is invalid: ", 1)[-1]
    except NameValidationException as e:   # ("Invalid topic name: <why>:\n  'x'\n   ^")
        return str(e).splitlines()[0].split(": ", 1)[-1].rstrip(" :")
    return ""


def topic_option(example: str):
    """argparse's ``type`` for a topic option: a name rcl refuses is a usage error naming it and why."""

    def convert(text: str) -> str:
        why = name_problem(text)
        if why:
            raise argparse.ArgumentTypeError(f"{text!r} is no ROS topic name ({why}): give the topic as "
                                             f"'ros2 topic list' shows it, e.g. {example}")
        return text

    return convert


def node_option(text: str) -> str:
    """argparse's ``type`` for ``--apply``: the name of the node whose parameters are set (``/dpt_node``,
    ``/ns/dpt_node``; a relative one is taken from ``/``); one that names no node rcl could have is a usage error,
    rather than rcl's refusal of its parameter service's name after start-up."""
    from rclpy.exceptions import InvalidNodeNameException  # noqa: PLC0415
    from rclpy.validate_node_name import validate_node_name  # noqa: PLC0415

    name = text.rstrip("/")
    why = "" if name else "no node name given"
    if not why:
        try:
            validate_node_name(name.rsplit("/", 1)[-1])
        except InvalidNodeNameException as e:
            why = str(e).splitlines()[0].split(": ", 1)[-1].rstrip(" :")
    # (its namespace, in the name of its parameter service: rcl's words say "topic name" of it)
    why = why or name_problem(f"{name}/set_parameters_atomically").replace("topic name", "the name")
    if why:
        raise argparse.ArgumentTypeError(f"{text!r} is no ROS node name ({why}): give the node's name as "
                                         "'ros2 node list' shows it, e.g. /dpt_node")
    return text


def parse_args(argv=None) -> argparse.Namespace:
    ap = ToolParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reference", required=True, type=topic_option("/camera/aligned_depth_to_color/image_raw"),
                    help="reference depth topic (sensor_msgs/Image 32FC1, 16UC1, mono16)")
    ap.add_argument("--reference-transport", choices=("raw", "compressedDepth"), default="raw",
                    help="raw: the --reference topic itself; compressedDepth: <reference>/compressedDepth, image_transport's "
                         "compressedDepth (PNG) of it, as the node's depth.align_transport (default raw)")
    ap.add_argument("--inverse", default=None, type=topic_option("/inverse_depth"),
                    help="the node's inverse_depth topic (default inverse_depth)")
    ap.add_argument("--frames", type=count("pairs"), default=30, help="stamp-matched pairs to fit over, at least 1 "
                                                                      "(default 30)")
    ap.add_argument("--tolerance", type=amount("stamp tolerance", "seconds"), default=0.02,
                    help="largest stamp difference of a pair in seconds (default 0.02; 0 = exact stamps)")
    ap.add_argument("--min-depth", type=amount("depth", "metres"), default=0.2,
                    help="reference depths below this (m) are not used (default 0.2)")
    ap.add_argument("--max-depth", type=amount("depth", "metres", above=True), default=20.0,
                    help="reference depths above this (m) are not used (default 20)")
    ap.add_argument("--stride", type=count("pixels per step"), default=4,
                    help="use every n-th pixel in both directions, at least 1 (default 4)")
    ap.add_argument("--timeout", type=amount("time limit", "seconds", above=True), default=120.0,
                    help="give up after this many seconds (default 120)")
    ap.add_argument("--apply", default=None, metavar="NODE", type=node_option,
                    help="set depth.scale and depth.shift on this node (e.g. /dpt_node) when done")
    ap.add_argument("--yaml", default=None, metavar="FILE", type=output_file(option="--yaml"),
                    help="write the two parameters as a ROS 2 parameter file")
    ap.add_argument("--evaluate", default=None, metavar="DEPTH_TOPIC", type=topic_option("/depth"),
                    help="compare this metric depth topic (e.g. /depth; the node's outputs are in its namespace) with the reference instead of fitting")
    args = ap.parse_args(argv)
    if args.evaluate and (args.apply or args.yaml or args.inverse):
        ap.error("--evaluate measures the depth as it is; it takes no --inverse, --apply or --yaml")
    args.inverse = args.inverse or "inverse_depth"
    if not args.min_depth < args.max_depth:
        ap.error(f"--min-depth {args.min_depth:g} is not below --max-depth {args.max_depth:g}: no reference depth "
                 f"would be used; give a --min-depth below --max-depth")
    return args


class Pairing:
    """Inverse-depth and reference frames matched by stamp (each frame used once).

    A frame waits for its partner while one could still come, by stamp rather than by count: the node publishes
    a frame's inverse depth seconds after its stamp on a CPU (DPT-Hybrid takes about 2 s a frame), and a depth
    camera's references of those seconds (60 of them at 30 Hz) must still be there when it does. A waiting frame
    goes once its stream is ``horizon_ns`` past it, or once the other stream is more than ``tolerance + slack_ns``
    past it (each stream's stamps increase, give or take ``slack_ns``: no partner can come any more); ``keep``
    bounds the waiting frames of one stream all the same (the newest are kept)."""

    def __init__(self, tolerance_ns: int, keep: int = 600, horizon_ns: int = 10_000_000_000,
                 slack_ns: int = 1_000_000_000) -> None:
        self.tolerance_ns, self.keep, self.horizon_ns, self.slack_ns = tolerance_ns, keep, horizon_ns, slack_ns
        self.inverse: dict[int, np.ndarray] = {}
        self.reference: dict[int, np.ndarray] = {}
        self.pairs: list[tuple[np.ndarray, np.ndarray]] = []
        self.newest: dict[str, int] = {}

    def add(self, kind: str, stamp_ns: int, values: np.ndarray) -> None:
        from dpt_ros import pipeline  # noqa: PLC0415

        mine, other = (self.inverse, self.reference) if kind == "inverse" else (self.reference, self.inverse)
        self.newest[kind] = max(self.newest.get(kind, stamp_ns), stamp_ns)
        match = min(other, key=lambda t: abs(t - stamp_ns), default=None)
        if match is not None and abs(match - stamp_ns) <= self.tolerance_ns:
            partner = other.pop(match)
            inv, ref = (values, partner) if kind == "inverse" else (partner, values)
            self.pairs.append((inv, pipeline.reference_to_size(ref, inv.shape)))
        else:
            mine[stamp_ns] = values
        self._prune(mine, self.newest[kind] - self.horizon_ns)
        self._prune(other, self.newest[kind] - self.tolerance_ns - self.slack_ns)
        while len(mine) > self.keep:
            mine.pop(min(mine))

    @staticmethod
    def _prune(waiting: dict[int, np.ndarray], before_ns: int) -> None:
        for t in [t for t in waiting if t < before_ns]:
            del waiting[t]


def collect(args: argparse.Namespace, node, executor) -> list[tuple[np.ndarray, np.ndarray]]:
    """Spin ``node`` (on ``executor``) until ``args.frames`` pairs are matched (or ``args.timeout`` passes)."""
    from rclpy.qos import qos_profile_sensor_data  # noqa: PLC0415
    from sensor_msgs.msg import CompressedImage, Image  # noqa: PLC0415

    from dpt_ros.ros import conversions  # noqa: PLC0415

    pairing = Pairing(int(args.tolerance * 1e9))
    problems: list[str] = []

    def on_inverse(msg) -> None:   # with --evaluate: the node's metric depth, read like the reference
        if args.evaluate:
            on_reference(msg, "inverse")
        else:
            add("inverse", msg, lambda: inverse_values(msg))

    def inverse_values(msg) -> np.ndarray:
        # the node's inverse_depth is 32FC1; another image (inverse_depth/colored rgb8, segmentation mono8) would be
        # fitted as it is, or end with "too many values to unpack"
        if msg.encoding != "32FC1":
            raise ValueError(f"{first} must be the node's inverse_depth (32FC1); got {msg.encoding!r}")
        return conversions.image_array(msg).astype(np.float32)

    def on_reference(msg, kind: str = "reference") -> None:   # (a compressedDepth one decoded as the node does)
        add(kind, msg, lambda: conversions.reference_metres(msg)[1])

    def add(kind: str, msg, values) -> None:
        """Pair one image; a problem with it (its encoding, or a size that does not go with its partner's,
        found by whichever of the two arrives second) ends the collection with that reason."""
        try:
            pairing.add(kind, conversions.stamp_ns(msg.header), values())
        except ValueError as e:
            problems.append(str(e))

    # best effort reaches reliable and best-effort publishers alike
    # (the names said, here and in inverse_values, are the topics as resolved, /inverse_depth for the default
    # inverse_depth: the names ros2 topic list shows)
    first = node.create_subscription(Image, args.evaluate or args.inverse, on_inverse,
                                     qos_profile_sensor_data).topic_name
    compressed = args.reference_transport == "compressedDepth"   # (as image_transport names it: base + /compressedDepth)
    reference = node.create_subscription(CompressedImage if compressed else Image,
                                         node.resolve_topic_name(args.reference).rstrip("/") + "/compressedDepth"
                                         if compressed else args.reference, on_reference,
                                         qos_profile_sensor_data).topic_name
    deadline = time.monotonic() + args.timeout
    while len(pairing.pairs) < args.frames:
        if problems:
            raise SystemExit(f"calibrate_depth: {problems[0]}")
        if time.monotonic() > deadline:
            # (a topic nobody publishes: a wrong name or namespace, another ROS_DOMAIN_ID, a node not started)
            silent = [t for t in (first, reference) if node.count_publishers(t) == 0]
            names = "names" if len(silent) > 1 else "name"
            nobody = (f"No publisher found on {' nor on '.join(silent)}: check the {names} (ros2 topic list; the "
                      "node's topics are under its namespace) and ROS_DOMAIN_ID. ") if silent else ""
            raise SystemExit(
                f"calibrate_depth: {len(pairing.pairs)} of {args.frames} stamp-matched pairs in {args.timeout:g} s "
                f"(waiting: {len(pairing.inverse)} {first}, {len(pairing.reference)} {reference}). {nobody}"
                "Check both topics (ros2 topic hz) and their stamps; --tolerance widens the match")
        executor.spin_once(timeout_sec=0.1)
    return pairing.pairs[: args.frames]


def parameter_client(node, target: str):
    """A client of node ``target``'s SetParametersAtomically service (made before the frames are collected: the
    service is discovered meanwhile)."""
    from rcl_interfaces.srv import SetParametersAtomically  # noqa: PLC0415

    return node.create_client(SetParametersAtomically, f"{target.rstrip('/')}/set_parameters_atomically")


def apply(client, executor, target: str, values: dict[str, float], timeout: float = 10.0) -> str:
    """Set ``values`` on node ``target`` in one SetParametersAtomically call; '' or the node's reason."""
    from rcl_interfaces.srv import SetParametersAtomically  # noqa: PLC0415
    from rclpy.parameter import Parameter  # noqa: PLC0415

    if not client.wait_for_service(timeout_sec=timeout):
        return f"no parameter service of {target} (is the node running, and is the name right?)"
    request = SetParametersAtomically.Request(
        parameters=[Parameter(k, value=float(v)).to_parameter_msg() for k, v in values.items()])
    future = client.call_async(request)
    executor.spin_until_future_complete(future, timeout_sec=timeout)
    if future.result() is None:
        return f"{target} did not answer within {timeout:g} s"
    result = future.result().result
    return "" if result.successful else (result.reason or "refused")


def report(c, args: argparse.Namespace) -> str:
    node = args.apply or "/dpt_node"
    return "\n".join([
        f"depth.scale {c.scale:.6g}, depth.shift {c.shift:.6g}  (depth = 1 / (scale * inverse_depth + shift))",
        f"  from {c.frames} frames, {c.pixels} pixels with a reference depth in [{args.min_depth:g}, {args.max_depth:g}] m; "
        f"median relative depth error {100 * c.median_abs_rel:.1f} %; per-frame scale spread {100 * c.frame_scale_spread:.1f} %",
        f"  ros2 param set {node} depth.scale {yaml_float(c.scale)}",
        f"  ros2 param set {node} depth.shift {yaml_float(c.shift)}",
    ])


def evaluation_report(e, args: argparse.Namespace) -> str:
    return (f"{args.evaluate} against {args.reference}: {e.frames} frames, {e.pixels} pixels with a reference in "
            f"[{args.min_depth:g}, {args.max_depth:g}] m\n"
            f"  AbsRel median {100 * e.abs_rel_median:.1f} %, mean {100 * e.abs_rel_mean:.1f} %; RMSE {e.rmse_m:.3f} m; "
            f"delta < 1.25: {100 * e.delta_1_25:.1f} % of pixels")


def parameter_yaml(c) -> str:
    return ("# depth.scale / depth.shift fitted by dpt_ros.tools.calibrate_depth "
            f"({c.frames} frames, median relative error {100 * c.median_abs_rel:.1f} %)\n"
            f"/**:\n  ros__parameters:\n    depth.scale: {yaml_float(c.scale)}\n    depth.shift: {yaml_float(c.shift)}\n")


def write_yaml(path: str, c) -> str:
    """Write ``c``'s parameters to ``path`` (``--yaml``, checked by parse_args); '' when written, else why not in
    ``output_folder_error``'s words (a full disk or quota: what to do; no permission: the file's owner and mode)."""
    from pathlib import Path  # noqa: PLC0415

    from dpt_ros.tools import output_folder_error, write_whole  # noqa: PLC0415

    try:
        write_whole(path, parameter_yaml(c))   # (a failed write keeps an earlier calibration there whole)
    except OSError as e:
        return output_folder_error(Path(os.path.abspath(path)), e, file=True, option="--yaml")
    return ""


def main(argv=None) -> int:
    args = parse_args(argv)
    import rclpy  # noqa: PLC0415
    from rclpy.executors import SingleThreadedExecutor  # noqa: PLC0415

    from dpt_ros import pipeline  # noqa: PLC0415
    from dpt_ros.ros.console import shut_down_under  # noqa: PLC0415
    from dpt_ros.ros.dds_env import shm_shortage  # noqa: PLC0415

    shm_warning = shm_shortage()   # (before rclpy.init, whose participant takes this process's segment)
    rclpy.init()
    node = rclpy.create_node(NODE_NAME)
    if shm_warning:   # (its images, the node's and the reference's, come through it)
        node.get_logger().warning(shm_warning)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        # (the names were checked by parse_args with rcl's rules for this node: rcl takes them)
        client = parameter_client(node, args.apply) if args.apply else None
        pairs = collect(args, node, executor)
        try:
            if args.evaluate:
                print(evaluation_report(pipeline.depth_errors(pairs, args.min_depth, args.max_depth, args.stride), args))
                return 0
            c = pipeline.calibrate(pairs, args.min_depth, args.max_depth, args.stride)
        except pipeline.CalibrationFitError as e:
            raise SystemExit(f"calibrate_depth: {e}") from None
        print(report(c, args), flush=True)
        code = 0
        if args.yaml:
            why = write_yaml(args.yaml, c)
            if why:   # the fit above stands, and --apply still runs
                print(f"calibrate_depth: cannot write {args.yaml}: {why}", file=sys.stderr)
                code = 1
            else:
                path = shlex.quote(args.yaml)   # (commands to paste: a name with a space is one argument)
                print(f"  wrote {args.yaml} (--params-file {path}, or config_file:={path} in the launch files)")
        if args.apply:
            why = apply(client, executor, args.apply, c.parameters())
            if why:
                print(f"calibrate_depth: {args.apply} did not take the calibration: {why}", file=sys.stderr)
                return 1
            print(f"  set on {args.apply}")
        return code
    except RuntimeError as e:
        if not shut_down_under(e):
            raise
        raise KeyboardInterrupt from None   # (e.g. a stop between the executor's check and its wait set)
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()


def run() -> None:
    """Console entry point (``ros2 run dpt_ros calibrate_depth ...``); Ctrl-C ends it with 130 and one line (rclpy's
    own SIGINT handler shuts the context down: the executor then raises ExternalShutdownException)."""
    from dpt_ros.ros.console import _import, tool_exit, tool_streams  # noqa: PLC0415

    tool_streams()   # (a closed or full stderr, stdout: see there)
    # Ctrl-C while rclpy is being imported (its first second or two): its KeyboardInterrupt, or the ImportError it
    # becomes when it lands while rclpy's C extension initialises
    executors = _import("rclpy.executors", 130, "calibrate_depth: interrupted")
    try:
        tool_exit(main())
    except (KeyboardInterrupt, executors.ExternalShutdownException):
        _interrupted()


def _interrupted() -> None:
    print("calibrate_depth: interrupted", file=sys.stderr)
    sys.exit(130)


if __name__ == "__main__":
    run()
