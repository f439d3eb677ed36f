"""``sample_camera``: publishes Image + CameraInfo at a fixed rate from built-in photographs, an
image file, an image folder or a video file; a stand-in for a camera driver or a bag.

Topics (relative, remappable): ``image`` (sensor_msgs/Image), ``camera_info``, and with
``publish_compressed`` also ``image/compressed`` (JPEG). Every message of one frame carries the
same header (stamp = publish time, ``frame_id`` parameter).

    ros2 run dpt_ros sample_camera --ros-args -p source:=builtin -p rate:=10.0 -p width:=640
    ros2 run dpt_ros sample_camera --help     # the parameters and their defaults
"""
from __future__ import annotations

import difflib
import itertools
import math
import os
import re
import stat
import sys
from typing import Iterator, Optional

import cv2
import numpy as np
import rclpy
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, HistoryPolicy
from rclpy.utilities import remove_ros_args
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header

from dpt_ros.pipeline import IMAGE_FILE_EXTENSIONS, read_image_file
from dpt_ros.pipeline.encodings import ImageFileError
from dpt_ros.ros import conversions, params
from dpt_ros.ros.console import init_ros, shut_down_under

#: scikit-image photographs used by ``source:=builtin`` (shipped with the package, no download).
BUILTIN_IMAGES = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field")
ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8", "mono16")

#: The node's parameters, all read-only: (name, default, description, declared range or None); ``--help`` lists them.
PARAMETERS = (
    ("source", "builtin", "builtin, builtin:astronaut,coffee, an image file (photo.png), an image folder or a "
               "video file", None),
    ("rate", 10.0, "publish rate in Hz", (0.01, 1000.0)),
    ("width", 640, "output width in pixels (0 = source width, or keep aspect)", (0, 8192)),
    ("height", 480, "output height in pixels (0 = source height, or keep aspect)", (0, 8192)),
    ("encoding", "rgb8", "image encoding: " + ", ".join(ENCODINGS), None),
    ("frame_id", "camera_optical_frame", "header frame_id (optical frame, REP 103)", None),
    ("loop", True, "start again at the end of the source", None),
    ("count", 0, "stop after this many frames (0 = never)", (0, 2**31 - 1)),
    ("fov_deg", 60.0, "horizontal field of view of the published CameraInfo", (1.0, 179.0)),
    ("reliability", "reliable", "QoS reliability: reliable or best_effort", None),
    ("publish_compressed", False, "also publish image/compressed (JPEG)", None),
)


def parameter_option(name: str, option: str):
    """argparse's ``type`` for a tool's ``option`` (``--rate``) whose value the tool gives this node's parameter
    ``name`` (``rate``, a number with a declared range): a value outside that range, which the camera would refuse
    at its start in rclpy's ``-p`` words (and the tool find out seconds later), is the tool's usage error instead, in
    the option's words ("argument --rate: 0 out of range 0.01..1000")."""
    import argparse  # noqa: PLC0415

    default, (lo, hi) = next((d, b) for n, d, _, b in PARAMETERS if n == name)
    kind = type(default)

    def convert(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{params.shown(text)} is not "
                                             f"{'a whole number' if kind is int else 'a number'}") from None
        if not (math.isfinite(value) and lo <= value <= hi):
            raise argparse.ArgumentTypeError(f"{value:g} out of range {lo:g}..{hi:g}")
        return value

    return convert


def source_option(text: str) -> str:
    """argparse's ``type`` for a tool's option (demo's ``--source``) whose value the tool gives this node's ``source``
    parameter: a source the camera would refuse at its start (:func:`frame_source`'s reasons, or not one of its frames
    reads), which the tool found out only once its node had loaded the model, is the tool's usage error instead,
    before anything starts. Its first frame is read, as the camera reads it."""
    import argparse  # noqa: PLC0415

    try:
        next(frame_source(text, loop=False), None)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def builtin_frames(names: tuple[str, ...] = BUILTIN_IMAGES) -> list[np.ndarray]:
    """The named scikit-image photographs as (H, W, 3) uint8 RGB arrays."""
    import skimage.data

    frames = []
    for name in names:
        if name not in BUILTIN_IMAGES:
            raise ValueError(f"unknown built-in image {name!r}; choose from {', '.join(BUILTIN_IMAGES)}")
        frames.append(np.asarray(getattr(skimage.data, name)()))   # each is an (H, W, 3) uint8 photograph
    return frames


def folder_files(folder: str) -> list[str]:
    files = sorted(os.path.join(folder, f) for f in os.listdir(folder)
                   if f.lower().endswith(IMAGE_FILE_EXTENSIONS))
    if not files:
        raise ValueError(f"folder {folder!r} holds no images ({', '.join(IMAGE_FILE_EXTENSIONS)})")
    return files


def _builtin(source: str) -> bool:
    """Whether ``source`` names the built-in photographs (``builtin``, ``builtin:names``), not a file or folder whose
    name starts with those letters."""
    return source == "builtin" or source.startswith("builtin:")


def _image_file(source: str) -> bool:
    """Whether ``source`` is one image file (a file named as the folder source's images are: ``photo.png``)."""
    return source.lower().endswith(IMAGE_FILE_EXTENSIONS) and os.path.isfile(os.path.expanduser(source))


#: what a source can be, for the refusals' remedies
_SOURCES = "builtin, an image file, a folder of images or a video file"


def _image_file_frame(path: str) -> np.ndarray:
    """One image file's frame, read as the folder source reads each of its images (16-bit, grey, RGBA, float TIFF).

    :raises ValueError: what is wrong with the file (no such file, empty, not an image OpenCV decodes) and what to
        give instead."""
    try:
        return read_image_file(path)
    except ImageFileError as e:
        raise ValueError(f"source {path!r}: {e.reason}; give {_SOURCES}") from None


def frame_source(source: str, loop: bool) -> Iterator[np.ndarray]:
    """RGB frames from ``builtin``, ``builtin:name,name``, an image file (its one frame, again and again), an image
    folder or a video file.

    :raises ValueError: here, not at the first frame: an unknown built-in name, an image file that does not read, a
        folder without images, a video that does not open, or a source that is none of these.
    """
    if _builtin(source):
        names = tuple(n for n in source.partition(":")[2].split(",") if n) or BUILTIN_IMAGES
        return _repeat(builtin_frames(names), loop)
    source = os.path.expanduser(source)   # (-p source:=~/Pictures: no shell expands it there; as depth.weights)
    if os.path.isdir(source):
        return _folder_frames(folder_files(source), loop)
    if _image_file(source):   # (not OpenCV's video reader: it decodes 16-bit, float or RGBA images otherwise, or not)
        return _repeat([_image_file_frame(source)], loop)
    if os.path.isfile(source):
        cap = cv2.VideoCapture(source)
        opened = cap.isOpened()
        cap.release()
        if not opened:
            raise ValueError(f"cannot open video {source!r} (not a video OpenCV reads, an empty or unreadable file?): "
                             f"give {_SOURCES}")
        return _video_frames(source, loop)
    raise ValueError(_no_source(source))


def _no_source(source: str) -> str:
    """Why ``source``, neither a built-in name, a file nor a folder, is no source, with what to give where a first try
    is seen: a stream's URL, a camera (an index as OpenCV takes it, a device), a pattern, a file with a trailing '/',
    an empty string."""
    head = f"source {source!r} is neither 'builtin[:names]', an image file, an image folder nor a video file"
    if not source:
        return f"{head}: none given (an empty string); give {_SOURCES}"
    driver = "run the camera's ROS driver and give dpt_node its topics (image:=..., camera_info:=...)"
    if re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", source):
        return f"{head}: the sample camera reads files, not streams ({source.split(':', 1)[0]}://): {driver}, or " \
               f"record the stream to a video file and give that"
    try:
        device = stat.S_ISCHR(os.stat(source).st_mode)
    except OSError:
        device = False
    device = device or source.startswith("/dev/video")   # (named so by V4L2, also before it is plugged in)
    if source.isdigit() or device:
        return f"{head}: {'a camera index' if source.isdigit() else 'a device'} ({source!r}), and the sample camera " \
               f"reads files, not cameras: {driver}"
    if os.path.lexists(source):
        return head   # (a named pipe, a socket)
    if source.endswith("/") and os.path.isfile(source.rstrip("/")):
        return f"{head}: {source.rstrip('/')!r} is a file, not a folder: give it without the trailing '/'"
    folder = os.path.dirname(source) or "."
    if any(c in source for c in "*?[") and os.path.isdir(folder):
        return f"{head}: a pattern is not expanded here (no file is named {source!r}): give the folder {folder!r} " \
               f"(all its images, in name order) or one image file"
    return f"{head}: no file or folder {source!r} (a typo, or another working folder?)"


def _repeat(frames: list, loop: bool) -> Iterator[np.ndarray]:
    while True:
        yield from frames
        if not loop:
            return


def _folder_frames(files: list, loop: bool) -> Iterator[np.ndarray]:
    """The folder's images in order; a file that does not read as an image (a broken download, a misnamed file) is
    skipped with one line on stderr, once. ValueError when not one of them reads."""
    unreadable: set = set()
    while True:
        shown = 0
        for f in files:
            if f in unreadable:
                continue
            try:
                frame = read_image_file(f)
            except ValueError as e:
                unreadable.add(f)
                print(f"sample_camera: {e}; skipped", file=sys.stderr)
                continue
            shown += 1
            yield frame
        if not shown:
            raise ValueError(f"none of the {len(files)} image files of the folder could be read")
        if not loop:
            return


def _video_frames(source: str, loop: bool) -> Iterator[np.ndarray]:
    while True:
        cap = cv2.VideoCapture(source)
        count = 0
        while True:
            ok, bgr = cap.read()
            if not ok:
                break
            count += 1
            yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        cap.release()
        if count == 0:   # opened, but not one frame decodes (a broken or misnamed file): said, as a bad source
            raise ValueError(f"no frame of {source!r} could be read (not a video or image OpenCV decodes?)")
        if not loop:
            return


def resize(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize to width x height; a 0 side keeps the aspect ratio; both 0 keeps the size."""
    h, w = rgb.shape[:2]
    if width <= 0 and height <= 0:
        return rgb
    if width <= 0:
        width = max(1, round(w * height / h))
    if height <= 0:
        height = max(1, round(h * width / w))
    if (width, height) == (w, h):
        return rgb
    interp = cv2.INTER_AREA if width < w else cv2.INTER_CUBIC
    return cv2.resize(rgb, (width, height), interpolation=interp)


def encode(rgb: np.ndarray, encoding: str) -> np.ndarray:
    """RGB uint8 -> the array layout of ``encoding``."""
    if encoding == "rgb8":
        return rgb
    if encoding == "bgr8":
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    if encoding == "rgba8":
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2RGBA)
    if encoding == "bgra8":
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGRA)
    if encoding == "mono8":
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    if encoding == "mono16":
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.uint16) * 257
    raise ValueError(f"encoding {encoding!r} not supported; choose from {', '.join(ENCODINGS)}")


def pinhole(width: int, height: int, fov_deg: float) -> tuple[list[float], list[float]]:
    """K and P of an ideal pinhole camera with horizontal field of view ``fov_deg``."""
    f = (width / 2.0) / math.tan(math.radians(fov_deg) / 2.0)
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    return [f, 0.0, cx, 0.0, f, cy, 0.0, 0.0, 1.0], [f, 0.0, cx, 0.0, 0.0, f, cy, 0.0, 0.0, 0.0, 1.0, 0.0]


class SampleCamera(Node):
    """Publishes frames from :func:`frame_source` at ``rate`` Hz; stops after ``count`` frames."""

    def __init__(self, command_line: Optional[list[str]] = None, **kwargs) -> None:
        """``command_line``: the process's arguments (``main`` passes them), which say whether a refused start-up value
        was a ``-p`` rule or in a parameters file, for the remedy's form."""
        self._command_line = [*(command_line or []), *(kwargs.get("cli_args") or [])]
        super().__init__("sample_camera", **kwargs)
        v = {name: self._declare(name, default, description, bounds)
             for name, default, description, bounds in PARAMETERS}
        # a start-up value for a name this camera does not have (-p ratee:=5.0): rclpy drops it without a word, and
        # the camera ran at its default; named, with the closest real name (as dpt_node names its own)
        for name in sorted(n for n in (getattr(self, "_parameter_overrides", None) or {}) if not self.has_parameter(n)):
            close = difflib.get_close_matches(name, [p[0] for p in PARAMETERS], n=1, cutoff=0.6)
            self.get_logger().warning(f"unknown parameter {name!r} ignored: "
                                      + (f"did you mean {close[0]!r}? " if close else "")
                                      + "sample_camera --help lists the ones it has")
        self.source, self.rate, self.width, self.height = v["source"], v["rate"], v["width"], v["height"]
        self.encoding, self.frame_id, self.loop, self.count = v["encoding"], v["frame_id"], v["loop"], v["count"]
        self.fov, self.reliability, self.compressed = v["fov_deg"], v["reliability"], v["publish_compressed"]
        if self.encoding not in ENCODINGS:
            raise ValueError(f"encoding {self.encoding!r} not supported; choose from {', '.join(ENCODINGS)}")
        if self.reliability not in ("reliable", "best_effort"):
            raise ValueError(f"reliability {self.reliability!r}: use reliable or best_effort")
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5,
                         reliability=ReliabilityPolicy.RELIABLE if self.reliability == "reliable"
                         else ReliabilityPolicy.BEST_EFFORT)
        self.frames = frame_source(self.source, self.loop)
        # the first frame read now: a source none of whose frames reads is refused here, before "publishing ..."
        first = next(self.frames, None)
        if first is not None:
            self.frames = itertools.chain([first], self.frames)
        self.image_pub = self.create_publisher(Image, "image", qos)
        self.info_pub = self.create_publisher(CameraInfo, "camera_info", qos)
        self.compressed_pub = self.create_publisher(CompressedImage, "image/compressed", qos) if self.compressed else None
        self.published = 0
        self.done = False
        self._cache: dict[int, tuple] = {}
        # the same arrays on every loop (built-in photographs, an image file's frame): each resized and encoded once;
        # a folder's or video's frames are read afresh
        self._prepare_once = _builtin(self.source) or _image_file(self.source)
        self.timer = self.create_timer(1.0 / self.rate, self.tick)
        self.get_logger().info(f"publishing {self.source} at {self.rate:g} Hz as {self.encoding} "
                               f"on {self.image_pub.topic_name}")

    def _declare(self, name, default, description, bounds=None):
        d = ParameterDescriptor(description=description, read_only=True)
        if bounds and isinstance(default, float):
            d.floating_point_range = [FloatingPointRange(from_value=bounds[0], to_value=bounds[1], step=0.0)]
        elif bounds:
            d.integer_range = [IntegerRange(from_value=bounds[0], to_value=bounds[1], step=1)]
        try:
            return self.declare_parameter(name, default, d).value
        except (InvalidParameterTypeException, InvalidParameterValueException) as e:   # rate:=30, rate:=0.0
            # in the node's words: rclpy's reason, then the allowed range and how to write a value in it, in the
            # form the value was given (a -p rule, a parameters file's line)
            given = params.value_source(self._command_line, self.get_fully_qualified_name(), name)
            spec = params.ParamSpec(name, default, description,
                                    int_range=(*bounds, 1) if bounds and not isinstance(default, float) else None,
                                    float_range=bounds if bounds and isinstance(default, float) else None)
            raise ValueError(f"invalid parameter {name}: "
                             f"{params.declare_refusal(name, type(default), str(e), given, spec)}") from None

    def next_frame(self) -> Optional[np.ndarray]:
        """The next source frame, resized and encoded (built-in frames and an image file's are prepared once)."""
        try:
            rgb = next(self.frames)
        except StopIteration:
            return None
        key = id(rgb)
        if self._prepare_once and key in self._cache:
            return self._cache[key]
        rgb = resize(rgb, self.width, self.height)
        prepared = (rgb, encode(rgb, self.encoding))
        if self._prepare_once:
            self._cache[key] = prepared
        return prepared

    def tick(self) -> None:
        if self.done:
            return
        frame = None if (self.count and self.published >= self.count) else self.next_frame()
        if frame is None:
            self.done = True
            self.timer.cancel()
            self.get_logger().info(f"done after {self.published} frame{'' if self.published == 1 else 's'}")
            return
        rgb, encoded = frame
        header = Header(stamp=self.get_clock().now().to_msg(), frame_id=self.frame_id)
        h, w = rgb.shape[:2]
        image = conversions.image_output(header, encoded, self.encoding)   # serialized where the rmw reads it
        k, p = pinhole(w, h, self.fov)
        info = conversions.camera_info_msg(header, w, h, k, p)
        info.distortion_model = "plumb_bob"
        info.d = [0.0] * 5
        self.info_pub.publish(info)
        self.image_pub.publish(image)
        if self.compressed_pub is not None:
            # as image_transport's compressed publisher: a grey camera's JPEG is grey ("mono8; jpeg compressed "), a
            # colour camera's BGR, the format naming the raw topic's encoding ("rgba8; jpeg compressed bgr8"), which
            # its subscriber gives the decoded image back in
            if self.encoding.startswith("mono"):
                jpeg, fmt = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))[1], "mono8; jpeg compressed "
            else:
                jpeg = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1]
                fmt = f"{self.encoding}; jpeg compressed bgr8"
            self.compressed_pub.publish(conversions.compressed_msg(header, jpeg.tobytes(), fmt))
        self.published += 1


def _ros_value(value) -> str:
    """A default as written after ``-p name:=`` (``10.0``: a double parameter refuses ``10``)."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def usage() -> str:
    """What ``--help`` prints: what the tool publishes and its ROS parameters with their defaults."""
    lines = ["usage: sample_camera [-h] [--ros-args -p name:=value ...]",
             "",
             "Publishes sensor_msgs/Image on image and sensor_msgs/CameraInfo on camera_info (same header), and with",
             "publish_compressed:=true sensor_msgs/CompressedImage on image/compressed (JPEG), at a fixed rate from",
             "built-in photographs, an image file, an image folder or a video file (relative topics: remap with",
             "--ros-args -r).",
             "",
             "ROS parameters (read-only; give them after --ros-args as -p name:=value):"]
    lines += [f"  {name} (default {_ros_value(default)}): {description}"
              + (f"; {bounds[0]}..{bounds[1]}" if bounds else "") for name, default, description, bounds in PARAMETERS]
    lines += ["",
              "example: ros2 run dpt_ros sample_camera --ros-args -p source:=builtin -p rate:=30.0 -p width:=640 "
              "-p height:=480",
              "Exit codes: 0 after count frames, the end of a non-looping source or Ctrl-C; 2 for a bad argument or "
              "parameter."]
    return "\n".join(lines) + "\n"


def main(args=None) -> int:
    """Entry point of ``sample_camera``. Exit codes: 0 after ``count`` frames, the end of a non-looping
    source, Ctrl-C or ``-h``/``--help``; 2 for bad arguments or parameters (one line on stderr saying which).
    ``args``: the command line without the program name (default: ``sys.argv[1:]``)."""
    argv = sys.argv[1:] if args is None else list(args)
    try:
        rest = remove_ros_args(argv)
    except Exception:  # noqa: BLE001 - malformed --ros-args: rclpy.init below says what is wrong
        rest = []
    if "-h" in rest or "--help" in rest:
        sys.stdout.write(usage())
        return 0
    if rest:
        # (as dpt_node: a parameter without --ros-args -p was ignored, and the camera ran with the defaults)
        print(f"sample_camera: unexpected argument(s) {' '.join(map(repr, rest))}: the tool takes ROS arguments only "
              f"(and -h/--help); parameters go after --ros-args as -p name:=value, e.g. sample_camera --ros-args "
              f"-p rate:=30.0 (--help: all of them)", file=sys.stderr)
        return 2
    code = init_ros("sample_camera", args)   # (as dpt_node's)
    if code is not None:
        return code
    code = 0
    node = None
    try:
        node = SampleCamera(command_line=argv)
        while rclpy.ok() and not node.done:
            rclpy.spin_once(node, timeout_sec=0.1)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except (InvalidParameterTypeException, InvalidParameterValueException) as e:
        # e.g. rate:=30 (an integer; write 30.0) or fov_deg:=200.0 (out of range)
        print(f"sample_camera: invalid parameter: {e}", file=sys.stderr)
        code = 2
    except ValueError as e:
        print(f"sample_camera: {e}", file=sys.stderr)
        code = 2
    except RuntimeError as e:
        if not shut_down_under(e):
            raise
        # SIGTERM shuts the context down, also while a frame is being published: a normal stop
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return code


if __name__ == "__main__":
    from dpt_ros.ros.console import tool_exit, tool_streams

    tool_streams()   # (a closed or full stderr, stdout: see there; the console script: dpt_ros.ros.console)
    tool_exit(main())
