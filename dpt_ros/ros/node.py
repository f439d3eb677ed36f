"""``dpt_node``: camera images in, DPT inverse depth / metric depth / segmentation / point clouds out.

Threads: the executor thread runs callbacks, which only store the newest frame per camera in a
slot (a replaced, unprocessed frame is counted as dropped; one beyond ``max_rate`` is counted as
throttled and not stored), camera_info and ``depth.align`` reference depths, and return. One worker thread takes the
filled slots (several cameras -> one batch per network input shape), runs the stages of
:meth:`DptNode.process` with one settings snapshot and one model set, and publishes. Model
parameter changes build new engines in a loader thread; the worker picks them up between batches.
The compressed copies of the image outputs (``publish.compressed``) are encoded and published by
threads of their own (one per camera, up to half the CPU cores), which keep only each camera's newest frame
waiting (:class:`_CompressedCopies`).
"""
from __future__ import annotations

import array
import atexit
import collections
import ctypes
import faulthandler
import gc
import math
import os
import re
import signal
import sys
import threading
import time
import traceback
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import cv2
import numpy as np
import rclpy
import torch
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException, NameValidationException
from rclpy.clock import Clock, ClockType, JumpThreshold
from rclpy.duration import Duration
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNodeMixin, TransitionCallbackReturn
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_policy_name_from_kind
try:   # Iron and later
    from rclpy.event_handler import PublisherEventCallbacks, SubscriptionEventCallbacks
except ImportError:   # Humble: the same classes in rclpy.qos_event
    from rclpy.qos_event import PublisherEventCallbacks, SubscriptionEventCallbacks
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2

import dpt_ros
from dpt_ros import pipeline
from dpt_ros.model import get_variant, load_engine, outside_graph_capture
from dpt_ros.model.checkpoint import CheckpointError, resolve_weights_path
from dpt_ros.pipeline import distortion
from dpt_ros.ros import camera_calibration, conversions, health, params, topics
from dpt_ros.ros.console import hold_closed_streams, init_ros, shut_down_under, stderr_line, write_last
from dpt_ros.ros.health import _STUCK_S, NodeHealth
from dpt_ros.ros.topic_checks import _qos_hint, _remap_example, TopicChecks
from dpt_ros.ros.params import RANDOM_WEIGHTS, Settings
from dpt_ros.ros.topics import COMPRESSED_OUTPUTS, OUTPUTS

_OUTPUT_TYPES = {"depth/camera_info": CameraInfo, "points": PointCloud2,
                 **{name: CompressedImage for name in COMPRESSED_OUTPUTS}}
_DEPTH_OUTPUTS = ("inverse_depth", "inverse_depth/colored", "depth", "depth/camera_info", "points",
                  "inverse_depth/colored/compressed", "depth/compressedDepth")
_SEG_OUTPUTS = ("segmentation", "segmentation/colored", "segmentation/compressed", "segmentation/colored/compressed")
_INVERSE_OUTPUTS = frozenset(("inverse_depth", "inverse_depth/colored", "inverse_depth/colored/compressed"))
_METRIC_OUTPUTS = frozenset(("depth", "depth/camera_info", "points", "depth/compressedDepth"))
_INFO_OUTPUTS = frozenset(("depth/camera_info", "points"))
#: what the [calibration] line of a camera_info topic with an all-zero K (an uncalibrated camera) tells to do
_UNCALIBRATED_FIX = ("; calibrate the camera (ROS's camera_calibration) and load the result in its driver, or give it "
                     "to this node as camera_info.url")
try:   # vision_msgs is optional (not on PyPI): without it no label_info publisher (the class names are always in the
    # class_names parameter); its one check, for the publishers (_publish_label_info) and the topic checks (collision)
    from vision_msgs.msg import LabelInfo, VisionClass
    _LABEL_INFO = True
except ImportError:
    _LABEL_INFO = False
STAGES = ("decode", "preprocess", "model", "postprocess", "publish")
_INFO_BUFFER = 30
#: more are kept while a frame of the camera, waiting or in the worker, can be given one older than the 30th last (a
#: model slower than _INFO_BUFFER of its periods: DPT-Hybrid on a CPU, 2 s a frame at 30 Hz, matched after the pass), up
#: to this many
_INFO_KEPT_MAX = 2048
_REFERENCE_BUFFER = 10  # depth.align: recent reference depth images per camera (a frame also keeps its own)
_ALIGN_STRIDE = 4  # depth.align fits over every 4th pixel in both directions (19,200 at 640x480)
#: what a frame whose view cannot be fitted gets (the end of its reason)
_ALIGN_FALLBACK = ("such frames fall back to depth.scale / depth.shift where set (a fixed calibration, e.g. from "
                   "calibrate_depth), else publish no depth")
#: depth.align: a frame's reference older than this fraction of the references' period is not kept while the frame's
#: own may be on its way (the next, a period after it, would be nearer by more than a quarter period). Not one half:
#: a depth camera at half the image rate leaves every other frame half a period from the references around it, and
#: stamps jitter (a frame 34 ms after one, 66 and 67 ms apart, waited for the next, 33 ms after it)
_REFERENCE_KEPT = 5 / 8
#: How long post-processing waits for the camera_info of a frame's stamp when the camera has sent
#: camera_info before but not yet one as new as the frame (image and info travel on separate topics); and, with
#: depth.align, for the frame's reference depth likewise (a depth camera sends its registered depth some milliseconds
#: after the colour image of that stamp: on a GPU the node reaches the fit before it)
_INFO_WAIT_S = 0.05
#: with use_sim_time, that wait is of the bag's time: a bag played slowly (ros2 bag play --rate 0.25) brings a
#: camera_info recorded 20 ms after its image 80 ms later. The play rate, /clock's seconds a wall second over the last
#: _PACE_WINDOW_S of wall time, stretches the wait by 1 / rate, up to _SLOW_PLAY_MAX times (never below 1x)
_SLOW_PLAY_MAX, _PACE_WINDOW_S = 4.0, 1.0
#: A camera_info stamped after a frame shows that the frame's own has been passed (it is not waited for), unless it is
#: more than this after it: then it is of before the camera's stamps went back (ros2 bag play --loop: the last pass's
#: end; a camera driver restarted on another clock), which a frame that arrives first after the loop must not go by
_STAMP_JUMP_S = 1.0
#: the stamps and arrival times of a camera's last images kept for :meth:`DptNode._keep` (those of the last second or
#: so are looked at: 256 covers that beyond 200 Hz)
_RECENT_IMAGES = 256
#: for this long after its camera_info is subscribed (start, a camera_info.url cleared) a camera without one yet is
#: waited for once, and a frame without one is reported as early rather than as a missing or misrouted camera_info
_INFO_GRACE_S = 3.0
_ERROR_LOG_PERIOD_S = 5.0  # one log line per kind of per-frame error per period and camera
#: a camera whose lens rays (camera_info.rectified false) were solved again for this many of its last
#: _LENS_WINDOW clouds is told so, again every _LENS_WARN_PERIOD_S while it lasts
_LENS_WINDOW, _LENS_SOLVES, _LENS_WARN_PERIOD_S = 10, 5, 60.0
#: with use_sim_time, a stretch of this many wall seconds or more in which the node's clock stood still (a paused
#: ros2 bag play: no frame comes either; /clock steps 40 times a wall second while it plays) is left out of the rates'
#: seconds: the first report after a pause counted the pause's seconds with no frame in them (0.55 Hz for 5)
_CLOCK_STILL_S = 2.0
#: on the way out of the process after Ctrl-C / SIGTERM / an external shutdown (the context shut down: nothing the
#: worker or the model loader finishes can be published), how long each of them is waited for
_EXIT_WAIT_S = 0.5
#: how long a node whose start failed lingers, where /rosout has a reader, for its FATAL line to be sent (_say_failure)
_ROSOUT_LINGER_S = 0.5
#: a frame already this old when it arrived (its stamp against this node's wall clock) is warned of once per camera:
#: a bag played without use_sim_time, or a camera clock behind this one (a live frame arrives within milliseconds)
_OLD_STAMP_S = 10.0
#: with use_sim_time, a node whose clock is still at 0 (no /clock message yet, or a paused simulator's at 0) this many
#: wall seconds after its start-up says so: its /diagnostics, on that clock, never come, nor the "no image yet"
#: warnings they log
_CLOCK_CHECK_S = health._STALL_S


#: what a failure a remap made says to do (a managed node's configure, one that no configure mends, ends with it)
_REMAP_AT_START = ("remaps are set when the node's process starts (--ros-args -r, a launch file's remappings), so "
                   "start it again with other ones")


class StartupError(RuntimeError):
    """The node cannot start with the given parameters (message says which and what to do)."""


class SubscriptionError(RuntimeError):
    """rcl refused one of a camera's subscriptions (the message names the topic, rcl's reason and what to do)."""


class _ShutDownDuringTransition(BaseException):
    """Raised out of a lifecycle transition callback whose context was shut down during it (SIGTERM while configure
    loaded the model). A BaseException: rclpy's lifecycle code catches only Exception, so this unwinds the executor's
    spin to :func:`main` instead of letting rclpy complete the transition, which publishes its event and logs through
    the context that is gone ("Failed to complete transition", "Failed to publish log message")."""


class _Abandoned(RuntimeError):
    """A worker's batch stops: a cleanup abandoned that worker (see :meth:`DptNode.process`)."""


class _NoService:
    """In place of the type description service that rclpy's Node constructor had not made yet when it failed, for
    its destroy_node (:meth:`DptNode._abandon_rclpy`)."""

    def destroy(self) -> None:
        pass


class ShuttingDown(RuntimeError):
    """The process is being shut down (SIGTERM, an external shutdown) while the node was starting or configuring:
    not a failure, nothing to report (the context's logging to /rosout is gone too)."""


def _type_name(msg_type: type) -> str:
    """A message type as ROS names it (sensor_msgs/msg/Image)."""
    return f"{msg_type.__module__.split('.')[0]}/msg/{msg_type.__name__}"


def weights_help(task: str, variant_name: str, offer_random: bool = True) -> str:
    """How to get weights for ``variant_name``, naming the ``<task>.weights`` parameter."""
    v = get_variant(variant_name)
    param = f"{task}.weights"
    random_hint = (f"; or {param}:=random to run with random weights (outputs not meaningful)"
                   if offer_random else "")
    if v.checkpoint and v.url:
        return (f"set {param} to the official checkpoint file {v.checkpoint} (download: {v.url}; "
                f"its SHA-256 starts with {v.sha256_prefix}), e.g. --ros-args -p {param}:=/path/to/"
                f"{v.checkpoint}{random_hint}")
    if not offer_random:
        return f"variant {v.name} has no released weights; train your own for this architecture"
    return (f"variant {v.name} has no released weights: set {param}:=random (random initialisation, "
            f"outputs not meaningful) or a checkpoint you trained for this architecture")


def resolve_device(name: str) -> torch.device:
    """The device a ``device`` parameter value runs the model on (``auto``: :func:`dpt_ros.resolved_device`'s rule)."""
    return torch.device(dpt_ros.resolved_device(name))


@dataclass(frozen=True)
class ModelSet:
    """Engines and pre-processors built from one settings snapshot (swapped as a whole)."""

    key: tuple
    device: torch.device
    depth: Any = None           # dpt_ros.model Engine or None
    segmentation: Any = None
    depth_pre: Any = None       # pipeline Preprocessor
    segmentation_pre: Any = None
    pipeline_note: str = ""     # on a CUDA device: why pre/post-processing cannot use CuPy ('' when it does)
    reused: tuple = ()          # tasks whose engine and pre-processor are the previous ModelSet's (a swap of the other)
    #: per task, the slowest forward pass of its warm-up, per frame in it (s): /diagnostics' stuck-worker limit is
    #: at least 3x their sum per camera, so a model merely that slow is not taken for stuck (a reused task keeps its own)
    warmup_s: dict = field(default_factory=dict)
    #: per task, the weights it runs as the loading line names them: the value given ('random', a file), a Hugging
    #: Face snapshot folder with the file taken from it ('/path/snapshot: model.safetensors'); a reused task: its own
    weights: dict = field(default_factory=dict)

    def describe(self) -> dict[str, str]:
        out = {"device": str(self.device)}
        pre = self.depth_pre or self.segmentation_pre
        if pre is not None:
            out["pipeline"] = pre.backend
        if self.pipeline_note:
            out["pipeline_note"] = self.pipeline_note
        for task in ("depth", "segmentation"):
            e = getattr(self, task)
            pre = getattr(self, f"{task}_pre")
            out[f"{task}.model"] = e.variant.name if e is not None else "disabled"
            if e is not None:
                out[f"{task}.net_size"] = "x".join(str(v) for v in pre.net_size)
                out[f"{task}.dtype"] = str(e.dtype).replace("torch.", "")
                out[f"{task}.random_weights"] = str(bool(e.random_weights))
                out[f"{task}.weights"] = self.weights.get(task, "")
        return out

    def serving(self, tasks: tuple = ("depth", "segmentation")) -> str:
        """What of ``tasks`` runs, in the loading line's words: 'depth dpt_tiny (/path/snapshot: model.safetensors)'."""
        return ", ".join(f"{t} {getattr(self, t).variant.name} ({self.weights.get(t, '')})" for t in tasks
                         if getattr(self, t) is not None)


def load_models(s: Settings, running: Optional[ModelSet] = None) -> ModelSet:
    """Build the engines and pre-processors that ``s`` asks for. A task whose own parameters and the shared ones
    (size, device, precision, ...) are those of ``running`` (a swap of the other task) keeps ``running``'s engine
    and pre-processor: no second load, no second copy in memory, and random weights stay the same weights.

    :raises StartupError: a task has no weights configured (message names the parameter).
    :raises FileNotFoundError, ValueError, RuntimeError: from the model loader.
    """
    # with its index (cuda -> cuda:<current>): every per-frame torch.cuda call on an index-less device looks the
    # current device up through a chain of Python calls (availability checks included)
    device = _device_identity(s["device"])
    if s["cuda_graphs"] and device.type != "cuda":
        raise StartupError(f"cuda_graphs:=true needs a CUDA device, but device resolves to {device}")
    parts: dict[str, Any] = {}
    reused, warmup_s, taken = [], {}, {}
    for task in ("depth", "segmentation"):
        name = s[f"{task}.variant"]
        if not name:
            continue
        if running is not None and getattr(running, task) is not None and _same_task(task, running.key, s.model_key()):
            parts[task], parts[f"{task}_pre"] = getattr(running, task), getattr(running, f"{task}_pre")
            reused.append(task)
            taken[task] = running.weights.get(task, "")
            if task in running.warmup_s:
                warmup_s[task] = running.warmup_s[task]
            continue
        variant = get_variant(name)
        weights = s[f"{task}.weights"]
        if not weights:
            raise StartupError(f"{task}.weights is not set: {weights_help(task, name)}")
        taken[task] = _weights_shown(weights)
        if weights != RANDOM_WEIGHTS:
            weights = os.path.expanduser(weights)
        # with CUDA graphs, one per network shape and batch size: cameras of one shape form batches of 1..n of them,
        # so the cameras' steady state needs one graph per camera; fewer kept would evict and recapture (two eager
        # passes and a capture) every batch once five cameras of other aspect ratios take turns
        try:
            engine = load_engine(variant, weights, device=device, precision=s["precision"],
                                 cuda_graphs=s["cuda_graphs"], max_graphs=max(4, len(s["cameras"])))
        except (CheckpointError, FileNotFoundError) as e:   # the file's fault: said as the parameter's, which of two
            raise type(e)(f"{task}.weights: {e}") from e     # models it is (a depth file given as segmentation.weights)
        net = (s["input_size"], s["input_size"]) if s["input_size"] else tuple(variant.net_size)
        parts[task] = engine
        parts[f"{task}_pre"] = pipeline.Preprocessor(net, s["resize_method"], device)
    note = pipeline.cupy_unavailable_reason(device) if device.type == "cuda" else ""
    return ModelSet(key=s.model_key(), device=device, pipeline_note=note, reused=tuple(reused), warmup_s=warmup_s,
                    weights=taken, **parts)


def _weights_shown(weights: str) -> str:
    """A task's weights as the loading lines name them: as given ('random', a file), and for a Hugging Face snapshot
    folder the file the loader takes from it (model.safetensors before pytorch_model.bin): '/path/snapshot:
    model.safetensors'."""
    if weights != RANDOM_WEIGHTS and os.path.isdir(os.path.expanduser(weights)):
        try:
            return f"{weights}: {resolve_weights_path(weights).name}"
        except FileNotFoundError:   # (the loader says why)
            pass
    return weights


def _info_size(fields: dict, calib: pipeline.Intrinsics) -> tuple[str, str]:
    """The size of the image a camera_info describes, in the words ``ros2 topic echo`` shows it: its width x height
    (the sensor's, before binning and ROI), and, where binning or an ROI shrink the image, what they leave, which the
    intrinsics are of, to follow 'image': ('1280x960', ' (binned 2x2: 640x480)'), ('1280x960', ' (ROI 800x600 at
    x 100, y 50, binned 2x2: 400x300)'); ('1280x960', '') without them."""
    x0, y0, rh, rw = fields["roi"]
    bx, by = max(fields["binning_x"], 1), max(fields["binning_y"], 1)
    how = ([f"ROI {rw}x{rh} at x {x0}, y {y0}"] if any(fields["roi"]) else []) + \
        ([f"binned {bx}x{by}"] if (bx, by) != (1, 1) else [])
    return (f"{fields['width']}x{fields['height']}",
            f" ({', '.join(how)}: {calib.width}x{calib.height})" if how else "")


def _same_task(task: str, key_a: tuple, key_b: tuple) -> bool:
    """Whether two model keys (:meth:`Settings.model_key`) ask for the same ``task`` model: its variant and
    weights and every parameter that is not another task's."""
    a, b = dict(zip(params.MODEL_PARAMETERS, key_a)), dict(zip(params.MODEL_PARAMETERS, key_b))
    a["device"], b["device"] = _device_identity(a["device"]), _device_identity(b["device"])
    other = tuple(f"{t}." for t in ("depth", "segmentation") if t != task)
    return all(a[n] == b[n] for n in params.MODEL_PARAMETERS if not n.startswith(other))


def _device_identity(name: str) -> torch.device:
    """The device a ``device`` value selects, so that names of one device compare equal: ``auto`` and what it
    resolves to, ``cuda`` and ``cuda:<current device>`` (where CUDA is available; elsewhere ``cuda`` stays, for the
    engine's loader to refuse with its reason)."""
    device = resolve_device(name)
    if device.type == "cuda" and device.index is None and torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return device


class _Pixels:
    """A frame's pixels: for an Image, the zero-copy view of its raw bytes (which a GPU pre-processor
    uploads and decodes on the device) and its host RGB, decoded on first use, so that a GPU node
    needing no host pixels (no overlay, cloud colours on the GPU) never converts a yuv422, bayer or
    16-bit frame on the CPU; for a CompressedImage, the decoded host RGB.

    :raises EncodingError: the message's encoding or layout is unusable (checked here, before inference).
    """

    __slots__ = ("view", "size", "_rgb", "truncated")

    def __init__(self, msg) -> None:
        self._rgb: Optional[np.ndarray] = None
        self.truncated = 0   # a JPEG cut short (no end-of-image marker), decoded as far as it goes: its bytes
        if isinstance(msg, CompressedImage):
            data, fmt = conversions.compressed_payload(msg)
            decoded = pipeline.decode_compressed_frame(data, fmt)   # (the data looked at once: its JPEG end too)
            self._rgb, self.view = decoded.rgb, None
            self.size = self._rgb.shape[:2]
            self.truncated = len(data) if decoded.truncated else 0
        else:
            self.view = conversions.image_view(msg)
            pipeline.check_view(self.view)
            self.size = (self.view.height, self.view.width)

    def rgb(self) -> np.ndarray:
        """(H, W, 3) uint8 host RGB (a zero-copy view where the encoding allows)."""
        if self._rgb is None:
            self._rgb = pipeline.decode(self.view, np)
        return self._rgb


@dataclass
class _Frame:
    camera: "_Camera"
    msg: Any
    received: float          # time.monotonic() at the callback
    clock_ns: int = 0        # the node's clock (ns) at the callback: /clock's with use_sim_time, which may go back
    counted: bool = False    # already counted as idle, processed or an error (never twice)
    reference: Any = None    # depth.align: (|stamp difference| ns, reference depth Image), the nearest offered
    # the seconds max_rate and points.max_rate count (_Throttle): with use_sim_time, once /clock has come, the node's
    # clock's (a bag's seconds at any play rate, to a /clock step, as topic_tools throttle counts); else (None)
    # ``received``
    rate_s: Optional[float] = None
    # its stamp went back more than _STAMP_JUMP_S from its camera's last, and lies that far behind the clock: the first
    # frame of a --loop's next pass, come before the player's /clock of it (ros2 bag play publishes it 25 ms later)
    before_jump: bool = False
    # the camera_info.url whose file gave the frame its calibration (_camera_info), read with it: the url of the
    # frame's settings snapshot may be another by then, the calibration following a change set meanwhile ('' for one
    # from the camera_info topic)
    calibration_url: str = ""
    # the image topic it came on (its camera's at the callback): an image_transport change while the frame is in the
    # worker moves the camera's to the new one ('' for a frame made without a callback: its camera's)
    image_topic: str = ""
    # the image subscription it came on (None without a callback): one an image_transport change or a deactivation
    # (or a refused change's failed subscribing back) has replaced since settles it outside the rate windows that
    # began after that (DptNode._count_settled)
    subscription: Any = None
    # every output of it failed to publish, its compressed copies still to go (DptNode._settle_after_copies): its age
    # at the batch's publish (ms), which counts in /diagnostics' ages only if one of its copies goes out, and whether
    # one did; both under DptNode._lock, whichever of the worker and the copies' thread comes second adds it
    age_ms: Optional[float] = None
    copies_out: bool = False

    def __post_init__(self) -> None:
        if self.rate_s is None:
            self.rate_s = self.received

    @property
    def topic(self) -> str:
        """The image topic to name the frame by in a log line: the one it came on, else its camera's."""
        return self.image_topic or self.camera.image_topic or self.camera.topic("image")

    def offer_reference(self, stamp_ns: int, msg: Any, tolerance_s: float) -> None:
        """depth.align: keep ``msg`` as this frame's reference if within the tolerance and nearer than the one held."""
        dt = abs(stamp_ns - conversions.stamp_ns(self.msg.header))
        if dt <= tolerance_s * 1e9 and (self.reference is None or dt < self.reference[0]):
            self.reference = (dt, msg)


@dataclass
class _Camera:
    """One input namespace: its slot, camera_info buffer, publishers and counters."""

    index: int
    ns: str
    pubs: dict = field(default_factory=dict)
    out_topics: dict = field(default_factory=dict)   # output name -> the topic its publisher has (remaps applied)
    pending: Optional[_Frame] = None
    infos: collections.deque = field(default_factory=lambda: collections.deque(maxlen=_INFO_KEPT_MAX))
    counts: collections.Counter = field(default_factory=collections.Counter)
    colormap_range: Any = None
    image_topic: str = ""    # the image topic subscribed to, remaps applied
    frame_size: Optional[tuple[int, int]] = None   # (height, width) of its last decodable frame
    last_image: Optional[float] = None   # time.monotonic() of its last image
    last_stamp: Optional[int] = None   # the stamp (ns) of its last image: the frames' clock, for :meth:`DptNode._keep`
    run_start: Optional[int] = None   # the first stamp (ns) of its images' run of stamps that did not go back
    # (stamp ns, time.monotonic() received) of its last images, for DptNode._keep
    recent_images: collections.deque = field(default_factory=lambda: collections.deque(maxlen=_RECENT_IMAGES))
    # per waited-in-vain mark: seconds from its last frame's arrival to the frame's look for its camera_info /
    # reference (DptNode._await): a wait in vain then lasted _INFO_WAIT_S more
    reach: dict = field(default_factory=dict)
    throttle: "_Throttle" = field(default_factory=lambda: _Throttle())
    points_throttle: "_Throttle" = field(default_factory=lambda: _Throttle())   # points.max_rate
    references: collections.deque = field(default_factory=lambda: collections.deque(maxlen=_REFERENCE_BUFFER))
    alignment: Optional[tuple[float, float, int]] = None   # depth.align: last (scale, shift, pixels) fitted
    calibration: Optional[CameraInfo] = None   # from camera_info.url: used for every frame, no topic
    # a frame's wait for its camera_info ran out; none has come since that a waiting frame could use (DptNode._keep)
    info_waited_in_vain: bool = False
    reference_waited_in_vain: bool = False   # depth.align: the same for its references
    reference_on_image_clock: bool = False   # depth.align: its last reference came within 1 s of its images' stamps
    # depth.align: why its last frame's reference looks unregistered (another frame_id than the image's; None when
    # not): /diagnostics' depth_reference
    reference_problem: Optional[str] = None
    # its last camera_info came within _STAMP_JUMP_S of its last image stamp (on the images' clock; False before an
    # image): one far older than a frame then stopped coming, it is not of another clock
    info_on_image_clock: bool = False
    # why its last frame had no camera_info (the log's reason; None once one matched): /diagnostics' camera_info
    info_problem: Optional[str] = None
    info_since: float = -math.inf   # time.monotonic() when its camera_info subscription was made
    infos_received: int = 0   # camera_infos received: a camera sends one per frame, so fewer images were lost
    image_since: float = -math.inf   # ... and its image one (an activation, an image_transport change): "no image yet"
    # its received count then: /diagnostics' notices take no rate window that began before its first image on it
    received_at_subscribe: int = 0
    # image subscription -> time.monotonic() when it stopped being the camera's (replaced by another or by none): its
    # frames settled later count as settled before the rate windows that began from then (DptNode._count_settled)
    image_replaced: weakref.WeakKeyDictionary = field(default_factory=weakref.WeakKeyDictionary)
    subs: dict = field(default_factory=dict)   # its camera_info and depth_reference subscriptions, when it has them
    # subscription name -> why it is missing although the settings want it (subscribing it back after a refused
    # parameter change failed too): /diagnostics says so until a subscription of it is made
    unsubscribed: dict = field(default_factory=dict)
    # subscription names that _switch is replacing: _subscribe makes the new one while the old one stays in subs, and
    # puts the new one in its place (read and written by the thread that changes the subscriptions, no other)
    replacing: set = field(default_factory=set)
    # the intrinsics of its last usable camera_info for the last output size: (key, Intrinsics, {frame_id: the
    # serialized depth/camera_info}); a camera sends the same calibration with every frame
    calibration_cache: Optional[tuple] = None
    # its last clouds: the milliseconds their lens rays took to solve (0.0: reused), the intrinsics of its last
    # cloud, and when it was last told that they keep being solved (DptNode._note_lens_solve)
    lens_solves: collections.deque = field(default_factory=lambda: collections.deque(maxlen=_LENS_WINDOW))
    lens_intrinsics: Any = None
    lens_warned: float = -math.inf
    # its last calibration's source and sizes (the calibration's w, h, the frames' w, h): a scaling is said at INFO
    # when they change
    info_scale_said: Optional[tuple] = None

    def topic(self, name: str) -> str:
        return f"{self.ns}/{name}" if self.ns else name


@dataclass
class _Throttle:
    """``max_rate`` for one camera, as a virtual scheduler (the generic cell rate algorithm): a frame is
    admitted when it arrives no more than half a period before it is due, and the next one is then due
    a period after the later of the two. The long-run rate never exceeds 1 / period, and a camera's
    jitter does not turn a 30 -> 10 Hz limit into about 8.6 Hz, as a plain "a period since the last" rule
    does (whenever the third frame comes a little early, it waits for the fourth).

    ``t`` is the frame's :attr:`_Frame.rate_s`: with use_sim_time /clock's seconds, which go back at a bag's --loop;
    a time before the last one seen starts afresh (the schedule ahead of it would hold frames back for the whole
    jump)."""

    period: float = 0.0
    due: float = -math.inf
    _before: float = -math.inf   # ``due`` before the last admission (for refund)
    _last: float = -math.inf     # the last ``t`` seen

    def admit(self, t: float, period: float) -> bool:
        if period != self.period or t < self._last:   # another rate than the last admission's (a long old period
            # must not hold frames back; the worker's batch may still run on the settings before a change: see
            # restart), or a clock gone back: afresh
            self.period, self.due = period, -math.inf
        self._last = t
        # (due inf: a rate so small that 1 / rate overflowed, max_rate:=1e-310; inf - inf / 2 is NaN, which no
        # comparison is below, and every frame was let through)
        if t < self.due - period / 2 or self.due == math.inf:
            return False
        self._before = self.due
        self.due = max(t, self.due) + period
        return True

    def restart(self) -> None:
        """Forget the schedule: its rate was set (also to the value it had, after 0: the frames let through meanwhile
        were on no schedule), so the next frame is let through and the period counts from it."""
        self.period, self.due, self._before, self._last = 0.0, -math.inf, -math.inf, -math.inf

    def refund(self) -> None:
        """Give back the last admission: the frame let through made nothing (points.max_rate: a frame that could
        build no cloud, e.g. without camera_info, must not use up a cloud of the rate)."""
        self.due = self._before


def _reference_settled(ref: Any, stamp: int, held: list) -> Optional[bool]:
    """depth.align: True when the frame of ``stamp`` need not wait for a reference: the nearest offered to it so far,
    ``ref`` (|stamp difference| ns, Image), is its own or newer, or older by at most ``_REFERENCE_KEPT`` of the
    references' period (the median step between the ``held`` (stamp, Image); unknown with one), so that the next one
    would be no nearer by more than a quarter period. None: wait (:meth:`DptNode._await` bounds it as for camera_info:
    not past a newer reference within ``_STAMP_JUMP_S``, and once in vain not again until a reference a waiting frame
    would have got; so a depth camera stamping by another clock costs one wait, and the first frame after a looped bag's
    stamps went back, every reference held then seconds newer, still waits for its own as camera_info's does).
    An older one within depth.align_tolerance is the previous frame's at the camera rate (33 ms older at 30 Hz,
    within 50 ms) while the frame's own is on its way; a depth camera at half the image rate gives every other frame
    one half a period older, give or take the stamps' jitter, and that one is kept (the next one, as far the other
    way, is no nearer)."""
    if ref is None:
        return None
    if ref[0] == 0 or conversions.stamp_ns(ref[1].header) > stamp:
        return True
    steps = [b - a for (a, _), (b, _) in zip(held, held[1:]) if b > a]
    return None if steps and ref[0] > float(np.median(steps)) * _REFERENCE_KEPT else True


def _call_on_failure(on_failure: Callable[[BaseException], Any], e: BaseException) -> bool:
    """``on_failure(e)`` (see :class:`DptNode`'s constructor); True where it said a failure (returned a value, as
    ``main``'s does an exit status) or raised. An Exception it raises is said after it, at ERROR under ``e``'s logger
    (the node's: on the console, in the log file and on /rosout), and ``e`` stays the start's failure, the one the
    constructor raises: before, the callback's exception replaced it (``main``'s, failing to write the reason to a full
    stderr: the process ended with exit status 1 and "cannot start: OSError: [Errno 28] No space left on device", not 2
    with the reason). A KeyboardInterrupt in it (Ctrl-C) is the stop, as anywhere in the start."""
    try:
        return on_failure(e) is not None
    except Exception as err:  # noqa: BLE001 - the start's failure is the one to raise
        rclpy.logging.get_logger(getattr(e, "logger_name", "dpt_node")).error(
            f"saying why the start failed failed too: on_failure raised {type(err).__name__}: {err}; the start's "
            f"failure, the one raised: {type(e).__name__}: {e}\n"
            + "".join(traceback.format_exception(type(err), err, err.__traceback__, chain=False)).rstrip())
        return True


class DptNode(NodeHealth, TopicChecks, Node):
    """The DPT node; see the module docstring and README for topics and parameters."""

    def __init__(self, node_name: str = "dpt_node", command_line: Optional[list[str]] = None, *,
                 on_failure: Optional[Callable[[BaseException], Any]] = None, **kwargs) -> None:
        """``command_line``: the process's arguments (``main`` passes them), whose ``--params-file`` files are checked
        for a section that is this node's (rclpy ignores a file without one silently). ``on_failure``: called with
        the exception of a start that fails, before the node is taken down (``main`` logs the reason then, while the
        node's /rosout publisher still exists); an Exception it raises is logged, and the start's is raised."""
        # serialises whole set-parameter calls (callback + rclpy storing the values): the executor
        # serves the parameter services while the loader thread reverts a failed load
        self._param_lock = threading.RLock()
        # while a failed model load sets its parameters back (_model_failed, under _param_lock): name -> (the value
        # the user set, the running model's it is set back to), so that a line about that set says what it was
        self._reverting: dict[str, tuple[Any, Any]] = {}
        # what /diagnostics' startup.* figures count from (a managed node's: its configure's start)
        self._started_at = time.monotonic()
        self._command_line = [*(command_line or []), *(kwargs.get("cli_args") or [])]
        try:
            super().__init__(node_name, **kwargs)
        except BaseException as e:   # rclpy's own start refused, e.g. -p use_sim_time:=1 (it declares use_sim_time)
            failure = self._abandon_rclpy(e, on_failure)
            if failure is e:
                raise
            raise failure from None
        try:
            self._start()
        except BaseException as e:   # (KeyboardInterrupt too: Ctrl-C or SIGTERM while it loads or subscribes)
            # what main() says of the failure names this node as it was remapped (__node, __ns), as its logger does
            e.logger_name = self.get_logger().name
            try:
                self._say_failure(on_failure, e)
            finally:
                self._abandon()
            raise

    def _start(self) -> None:
        """The constructor's work after the node exists: parameters, state, and (unless managed) configure and
        activate."""
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._info_arrived = threading.Condition(self._lock)
        self._stopping = False
        # the worker publishes a batch under it, and the stop closes the outputs under it (stop): a frame is
        # either published or counted dropped, never both
        self._publish_lock = threading.Lock()
        self._outputs_closed = False
        self._unfinished_dropped = 0   # frames the stop found accepted but not done (_drop_unfinished)
        self._unfinished_copies_dropped = 0   # compressed copies the stop found unpublished (_CompressedCopies.stop)
        self._settings = self._declare_parameters()
        self._model_error = ""
        self._model_loading = False
        self._wanted: Optional[Settings] = None
        # while a depth model of other settings loads: the running one's calibration to metres (depth.scale,
        # depth.shift), which its frames keep (see _track_calibration and process); None: the settings' own
        self._running_calibration: Optional[dict[str, float]] = None
        self._loader: Optional[threading.Thread] = None
        self._errors: collections.Counter = collections.Counter()
        self._stage_ms = {st: collections.deque(maxlen=300) for st in STAGES}
        self._ages_ms: collections.deque = collections.deque(maxlen=300)
        # time.monotonic() at the end of each batch in _stage_ms and of each frame in _ages_ms, in the same order
        self._batch_done: collections.deque = collections.deque(maxlen=300)
        self._age_done: collections.deque = collections.deque(maxlen=300)
        self._batches = 0
        #: the start-up's figures (s): model ready (loaded and warmed up), its warm-up, and once the first outputs
        #: went out, their time, their frame's arrival and its batch's time (ms): nowhere before, not even the log
        self._startup: dict[str, float] = {}
        # per stage, the ms of every batch since start (with _batches: means over any stretch, from two snapshots)
        self._stage_sums = dict.fromkeys(STAGES, 0.0)
        # task -> (a weak reference to its pre-processor, "HxW" of the last network input)
        self._net_inputs: dict[str, tuple] = {}
        self._finalized = False   # a managed node shut down: no configure follows, so no parameter takes effect
        self._last_diag = (time.monotonic(), {})
        self._rate_history = collections.deque([self._last_diag])   # (time, counts) of the reports in the rate window
        self._subscribed_at = time.monotonic()   # (set again at each activation)
        # with use_sim_time: time.monotonic() when the node's clock last moved, and the (start, end) of the stretches
        # of at least _CLOCK_STILL_S in which it stood still (a paused bag), which the rates leave out
        self._clock_moved: Optional[float] = None
        self._clock_still: collections.deque = collections.deque(maxlen=64)
        self._clock_pace: collections.deque = collections.deque()   # (time.monotonic(), clock ns) of its last moves
        self._wait_scale = 1.0   # 1 / the play rate they give (use_sim_time), between 1 and _SLOW_PLAY_MAX
        self._clock_jumps = self.get_clock().create_jump_callback(JumpThreshold(
            min_forward=Duration(nanoseconds=1), min_backward=Duration(nanoseconds=-1), on_clock_change=False),
            post_callback=self._on_clock_moved)
        # (image topic, its reason: "qos", "silent" or "none") whose "no image yet" was logged since its subscription
        self._silent_logged: set = set()
        self._default_threads = (torch.get_num_threads(), cv2.getNumThreads())   # what cpu_threads 0 restores
        self._cpu_threads = 0   # the cpu_threads value in effect
        self._threads_in_use = self._default_threads   # (PyTorch in the worker, OpenCV), for /diagnostics
        self._warned: set[str] = set()
        self._no_depth_said: dict[tuple, float] = {}   # (image topic, 32FC1) -> when a depth without a measurement was said
        self._before_clock = (0, "")   # (frames, the last one's image topic) published while the clock was at 0
        # the check that /clock comes (_check_clock): use_sim_time as this node last saw it set, and what its wait
        # counts from, in the log's words: its timer's start, or use_sim_time set true at runtime
        self._sim_time_on = bool(self.get_parameter("use_sim_time").value)
        self._clock_wait_from = self._start_word()
        # the time (ns) /clock last moved the node's clock to (kept when use_sim_time goes false: rclpy's clock keeps it
        # and resumes from it when use_sim_time is set true again), and that time while the clock, so resumed, has not
        # moved since (no /clock since the switch): None otherwise
        self._last_clock_ns = 0
        self._clock_resumed: Optional[int] = None
        self._error_log: collections.OrderedDict = collections.OrderedDict()  # kind -> {topic: [last log, not logged]}
        self._pinned: dict = {}  # page-locked host buffers of the worker's device->host copies
        self._in_worker: list[_Frame] = []   # the batch the worker is on (depth.align offers it references)
        self._busy: Optional[tuple[str, float]] = None   # (stage, time.monotonic() it began) of the running batch
        self._stuck_logged: Optional[tuple[str, float]] = None
        # what _configure() builds and _cleanup() takes down again (a managed node starts without them)
        self._models: Optional[ModelSet] = None
        self._cameras: list[_Camera] = []
        self._compressed: Optional[_CompressedCopies] = None
        self._worker: Optional[threading.Thread] = None
        self._diag_pub = self._diag_timer = None
        self._clock_timer = None   # (wall time) the check that /clock comes with use_sim_time
        self._label_pubs: list = []
        self._active = False   # subscribed to the cameras
        self._idle = threading.Condition(self._lock)   # the worker finished a batch (deactivation waits for it)

        self.add_on_set_parameters_callback(self._guarded_set_parameters)
        if not self._MANAGED:
            self._configure()
            self._activate()

    #: a managed (lifecycle) node configures and activates on request, not in its constructor
    _MANAGED = False

    def _start_word(self) -> str:
        """What /diagnostics' startup.* seconds count from, in the log's words."""
        return "the configure transition began" if self._MANAGED else "start-up"

    # ------------------------------------------------------------------ bring-up and take-down
    def _configure(self) -> None:
        """Check the parameters, load the models, create the publishers and start the worker threads.

        :raises StartupError, FileNotFoundError, ValueError, RuntimeError, OSError: as :func:`load_models`

        Bring-up and take-down hold ``_param_lock`` while they change the node's interfaces, so that they never
        interleave with a parameter change (the model loader's revert of a failed swap comes from its own thread).
        """
        with self._param_lock:
            s = self._settings
            if self._MANAGED:   # (a plain node's start is its constructor's)
                self._started_at = time.monotonic()
            self._startup = {}
            self._models = self._load_initial()
            self._startup["ready_s"] = time.monotonic() - self._started_at
            self._running_calibration = None   # (the models are the settings' own)
            self._warned -= {"task_off:depth", "task_off:segmentation"}   # a task off is said once per configuration
            if not self.context.ok():   # SIGTERM (or an external shutdown) arrived during the load: stop here
                raise ShuttingDown("the ROS context was shut down while the model loaded")
            self._said_anew(self._models)
            self._log_model(self._models)
            cameras = [_Camera(i, ns.rstrip("/"), calibration=c)  # "/ns" stays absolute
                       for i, (ns, c) in enumerate(zip(s["cameras"], self._calibrations))]
            with self._lock:   # a new configuration's cameras count from zero: so do its diagnostics' rates
                self._cameras, self._last_diag = cameras, (time.monotonic(), {})
                self._rate_history = collections.deque([self._last_diag])
            self._create_interfaces(s)
            self._stopping = self._outputs_closed = False
            self._compressed = _CompressedCopies(self, len(self._cameras))
            self._worker = threading.Thread(target=self._worker_loop, name="dpt_inference", daemon=True)
            self._worker.start()

    def _activate(self) -> None:
        """Subscribe every camera's inputs: frames flow from here on."""
        with self._param_lock:
            s = self._settings
            with self._lock:
                self._active = True
                self._subscribed_at = time.monotonic()   # what the rates count from
                # and the rates: frames from before a deactivation are no input of now
                self._rate_history = collections.deque([(self._subscribed_at, {
                    c.index: collections.Counter(c.counts) for c in self._cameras})])
            for cam in self._cameras:
                self._subscribe(cam, "image", True)
                with self._lock:   # (its subscription's "no image yet" counts from the activation, as its rates do)
                    cam.image_since = self._subscribed_at
                self._subscribe(cam, "camera_info", cam.calibration is None)   # (camera_info.url: a file instead)
                if s["depth.align"]:
                    self._subscribe(cam, "depth_reference", True)

    def _deactivate(self, timeout: Optional[float] = None) -> bool:
        """Unsubscribe the cameras' images, let the worker finish the frames it has accepted (published as
        usual, compressed copies too), then unsubscribe camera_info and depth_reference. False (and a
        warning) when the worker did not finish within ``timeout``; what it finishes later is still
        published. ``timeout`` defaults to the stuck-worker limit."""
        timeout = _STUCK_S if timeout is None else timeout
        with self._param_lock:
            with self._lock:
                self._active = False
                self._info_arrived.notify_all()   # a frame waiting for its camera_info or reference stops waiting
            for cam in self._cameras:
                self._subscribe(cam, "image", False)
        # (not holding _param_lock: the model loader may need it to revert a failed swap meanwhile)
        deadline = time.monotonic() + timeout
        with self._idle:
            done = self._idle.wait_for(lambda: self._stopping or not (self._in_worker or any(
                c.pending for c in self._cameras)), timeout)
        done = done and (self._compressed is None or self._compressed.wait_idle(max(deadline - time.monotonic(), 0.0)))
        if not done:
            self.get_logger().warning(f"deactivating: the worker has not finished its frames within {timeout:.0f} s; "
                                      f"it publishes them when it does")
        with self._param_lock:
            for cam in self._cameras:
                for name in list(cam.subs):
                    self._subscribe(cam, name, False)
        return done

    def _cleanup(self, timeout: float = _STUCK_S) -> None:
        """Undo :meth:`_configure`: stop the threads, destroy the publishers and release the models (and the
        GPU memory they held); the parameters keep their values. A worker that does not stop within ``timeout`` (by
        default the stuck-worker limit: a hung forward pass) is left behind: it leaves without touching the node's
        state."""
        if self._active:
            self._deactivate(timeout)
        self.stop(timeout)   # (not holding _param_lock: a failing model load takes it to revert its parameters)
        with self._param_lock:
            self._take_down()

    def _abandon(self, steps: Optional[list[Callable[[], Any]]] = None) -> None:
        """Take down what a failed constructor built (the worker threads, publishers, subscriptions, timers, the models)
        and destroy the node, whose exception is raised next. Before, all of it stayed alive with the exception's
        traceback: a half-built node in the graph, its threads and model in memory, and, once the garbage collector
        finalised it, rcl unregistered the /rosout publisher of its logger name, a newer node's of the same name too,
        whose log lines then no longer reached /rosout. The threads have taken no frame (nothing spun the node), so
        they are given the exit wait only; a failure here is logged, and the constructor's exception still raised.
        ``steps``: other steps to run so (:meth:`_abandon_rclpy`'s)."""
        # (_idle is the last of _start's state: without it, nothing of _configure was built)
        steps = steps or ([lambda: self._cleanup(_EXIT_WAIT_S)] if hasattr(self, "_idle") else []) + \
            [lambda: self.destroy_node(_EXIT_WAIT_S)]
        for step in steps:   # (the node is destroyed even when the cleanup failed)
            try:
                step()
            except Exception as e:  # noqa: BLE001 - the constructor's exception is the one to raise
                self.get_logger().error(f"taking down the node that failed to start: {type(e).__name__}: {e}; please "
                                        f"report this with the stack:\n{traceback.format_exc().rstrip()}")

    def _abandon_rclpy(self, e: BaseException, on_failure: Optional[Callable[[BaseException], Any]]) -> BaseException:
        """Take down what rclpy's Node constructor built before it raised ``e`` (the rcl node with its /rosout
        publisher, the /parameter_events publisher, the parameter services) and return the exception to raise.
        Before, rclpy left all of it to the garbage collector: the node stayed in the graph, held by the exception's
        traceback. A parameter of rclpy's own that it refused (``use_sim_time``, ``start_type_description_service``:
        bools, e.g. given as 1) becomes the StartupError our parameters' refusals are, which says what to write
        instead (the bare InvalidParameterTypeException ended the process with a traceback, exit 1). ``on_failure``
        (see the constructor) is called with it before the node is destroyed."""
        failure = e
        made = getattr(self, "_logger", None) is not None   # (set once rcl made the node, right after it)
        if made:   # (its name as remapped, as the node's own failures say it)
            e.logger_name = self.get_logger().name
            name = re.match(r"Trying to set parameter '([^']*)'", str(e))
            if isinstance(e, InvalidParameterTypeException) and name:
                failure = self._start_value_refused(name.group(1), bool, e)
                failure.logger_name = e.logger_name
        try:
            if made:
                self._say_failure(on_failure, failure)
            elif on_failure is not None:
                _call_on_failure(on_failure, failure)
        finally:
            if made:
                if not hasattr(self, "_type_description_service"):   # (rclpy's destroy_node ends it: not made yet)
                    self._type_description_service = _NoService()
                self._abandon([lambda: Node.destroy_node(self)])   # (rclpy's: DptNode's takes down what _start built)
        return failure

    def _say_failure(self, on_failure: Optional[Callable[[BaseException], Any]], e: BaseException) -> None:
        """``on_failure(e)``; where it said a failure (an exit status) and /rosout has a reader, then a moment for rcl's
        /rosout publisher to send the line: the node is destroyed and the process ends right after, and the line went
        with them (under load 1 failed start in about 4: rqt_console and the test's reader got no FATAL). rcl offers
        no wait for that publisher's acknowledgements, hence a fixed wait; Ctrl-C's way out does not wait."""
        if on_failure is None or not _call_on_failure(on_failure, e):
            return
        try:
            readers = self.count_subscribers("/rosout")
        except Exception:  # noqa: BLE001 - a graph query of a half-built node: no wait rather than a second failure
            readers = 0
        if readers:
            time.sleep(_ROSOUT_LINGER_S)

    def _start_value_refused(self, name: str, kind: type, e: Exception) -> StartupError:
        """The start's error for rclpy's refusal ``e`` of the start-up value of parameter ``name`` (Python type
        ``kind``): what was wrong and how to write it, in the form it was given (a -p rule, a parameters file)."""
        given = params.value_source(self._command_line, self.get_fully_qualified_name(), name)
        return StartupError(f"invalid parameter {name}: {params.declare_refusal(name, kind, str(e), given)}")

    def _take_down(self) -> None:
        """Cleanup's second half, once the threads have stopped (under ``_param_lock``): destroy the interfaces,
        drop the models and reset what belonged to this configuration."""
        with self._lock:   # first: a worker or loader left behind stops at its next step; the timer publishes no more
            self._worker = self._loader = None
            diag_pub, diag_timer, clock_timer = self._diag_pub, self._diag_timer, self._clock_timer
            self._diag_pub = self._diag_timer = self._clock_timer = None
        for cam in self._cameras:
            for name in list(cam.subs):
                self._subscribe(cam, name, False)
            for pub in cam.pubs.values():
                self.destroy_publisher(pub)
            cam.pubs.clear()
        for timer in (diag_timer, clock_timer):
            if timer is not None:
                self.destroy_timer(timer)
        for pub in [*self._label_pubs, *([diag_pub] if diag_pub is not None else [])]:
            self.destroy_publisher(pub)
        device = self._models.device if self._models is not None else None
        with self._lock:
            self._models, self._cameras, self._compressed, self._worker = None, [], None, None
            self._diag_pub = self._diag_timer = None
            self._label_pubs = []
            self._wanted, self._in_worker, self._busy = None, [], None
            self._model_error, self._model_loading = "", False   # the next configure's model starts clean
            for values in (*self._stage_ms.values(), self._ages_ms, self._batch_done, self._age_done):
                values.clear()
            self._pinned = {}   # (a new one: an abandoned worker may still copy into the old one's buffers)
            self._net_inputs = {}   # (a new one, as _pinned)
            self._stopping = self._outputs_closed = False
        gc.collect()   # tensors held only by reference cycles (CUDA graph pools, engines) are freed now
        if device is not None and device.type == "cuda":
            with outside_graph_capture():   # (an abandoned loader may still be capturing)
                pipeline.release_cached_memory(device, host=True)   # cached blocks back to the driver (nvidia-smi)
        _trim_host_heap()

    # ------------------------------------------------------------------ parameters
    def _declare_parameters(self) -> Settings:
        values = {}
        base = params.defaults()
        # start-up values rclpy holds for declaration (private, but there since Foxy: see below); a renamed
        # parameter's old name serves its new one, with a warning to rename it
        overrides = getattr(self, "_parameter_overrides", None)
        moved = [old for old, new in params.RENAMED.items()
                 if overrides is not None and old in overrides and new not in overrides]
        for old in moved:
            overrides[params.RENAMED[old]] = Parameter(params.RENAMED[old], value=overrides[old].value)
        for spec in params.PARAMETERS:
            try:
                value = self.declare_parameter(spec.name, base[spec.name], spec.descriptor(self._MANAGED)).value
            except (InvalidParameterValueException, InvalidParameterTypeException) as e:
                raise self._start_value_refused(spec.name, spec.type, e) from None
            values[spec.name] = list(value) if isinstance(value, (list, tuple)) else value
        if values["class_names"] != base["class_names"]:
            raise StartupError(params.read_only_reason("class_names", self._MANAGED))
        # start-up values of parameters nobody declared (a misspelt name): rclpy drops them silently. rclpy
        # has no public accessor for them; its private dict has been there since Foxy (test_ros_node_params checks
        # it) and, should it ever go, only this warning is lost
        for name in moved:
            self.get_logger().warning(params.renamed(name) + "; its value is used this time: rename it in your "
                                                               "parameters file or command line")
        self._ignored_parameters = sorted(n for n in (overrides or {}) if not self.has_parameter(n) and n not in moved)
        for name in self._ignored_parameters:
            self.get_logger().warning(params.unknown_parameter(name))
        # a parameters file none of whose sections names this node (a misspelt node name, or dpt_node: for a node
        # in a namespace): rclpy drops all its values silently, and the start failed later for their absence
        for path in params.params_files(self._command_line):
            unused = params.params_file_unused(path, self.get_fully_qualified_name())
            if unused:
                self.get_logger().warning(unused)
        return base.replace(values)

    def _cameras_refused(self, cameras: list[str]) -> Optional[str]:
        """Why ``cameras`` cannot be served: a namespace that makes one of the node's topics a name rcl refuses
        (longer than its limit once resolved: a namespace of some 200 characters; refused here, before the model
        loads, rather than by the publisher or subscription it would break), or :func:`params.camera_listed_twice`
        with this node's topic resolution."""
        for ns in cameras:
            cam = _Camera(0, ns.rstrip("/"))
            topic = ""
            try:
                for name in (*OUTPUTS, *COMPRESSED_OUTPUTS, "label_info", "image", "camera_info", "depth_reference"):
                    topic = cam.topic(name)   # (named in the refusal should the compressed copy's base fail)
                    topic = self.resolve_topic_name(self._output_topic(cam, name) if name in COMPRESSED_OUTPUTS
                                                    else topic)
                # image_transport:=compressed subscribes the resolved image topic + /compressed (depth_reference's
                # compressedDepth likewise)
                for name, suffix in (("image", "/compressed"), ("depth_reference", "/compressedDepth")):
                    topic = self.resolve_topic_name(cam.topic(name)).rstrip("/") + suffix
                    self.resolve_topic_name(topic)
            except (RuntimeError, NameValidationException) as e:
                why = re.sub(r", at \S+:\d+$", "", str(e))   # (rcl's source file and line)
                return (f"camera namespace {params.shown(ns)} cannot be served: its topic {params.shown(topic)} is "
                        f"no valid ROS topic name ({why}); use a shorter namespace")
        return params.camera_listed_twice(cameras, self.resolve_topic_name)

    def _topics_refused(self, s: Settings) -> Optional[str]:
        """Why the node cannot have its topics with settings ``s`` and its remaps (:func:`topics.collision`: two
        outputs, an output and an input, or two inputs on one topic), or None. One output of several cameras on one
        topic (one points for all) may be meant: :meth:`_cameras_refused` judges that."""
        return topics.collision(s, self.resolve_topic_name, self._expand_topic_name, _LABEL_INFO)

    def _expand_topic_name(self, topic: str) -> str:
        """``topic`` resolved in the node's namespace and name, without the remaps."""
        return self.resolve_topic_name(topic, only_expand=True)

    def _load_calibration(self, ns: str, s: Settings, log: bool = True) -> Optional[CameraInfo]:
        """The CameraInfo of camera_info.url for camera namespace ``ns`` (None without a url); ``log``: say which
        file the camera uses (not for a check of a managed node's value before its configure)."""
        if not s["camera_info.url"]:
            return None
        name = _camera_name(ns)
        try:
            info = camera_calibration.load(s["camera_info.url"], name)
        except camera_calibration.CalibrationFileError as e:
            raise StartupError(f"camera_info.url: {e}") from None
        try:   # the checks a frame would make, now: a file that cannot give intrinsics stops the start
            pipeline.Intrinsics.from_camera_info(**conversions.camera_info_fields(info),
                                                 rectified=s["camera_info.rectified"])
        except pipeline.CalibrationError as e:
            raise StartupError(f"camera_info.url: {e}") from None
        if log:
            # (a lens in D is used only for raw images: with camera_info.rectified true, the default, it is not, and
            # "plumb_bob distortion" alone read as if it were)
            if not any(float(v) for v in info.d):
                lens = "no distortion"
            elif s["camera_info.rectified"]:
                lens = (f"{info.distortion_model} distortion not applied: camera_info.rectified is true, so the images "
                        f"are taken as rectified, with P; set camera_info.rectified:=false for the raw images of the "
                        f"camera this file calibrates")
            else:
                lens = f"{info.distortion_model} distortion, applied: camera_info.rectified is false"
            self.get_logger().info(f"camera {ns or '/'}: calibration from "
                                   f"{camera_calibration.resolve(s['camera_info.url'], name)} ({info.width}x{info.height}, "
                                   f"{lens}); the camera_info topic is not used")
        return info

    def _load_initial(self) -> ModelSet:
        s = self._settings
        for task in ("depth", "segmentation"):
            name, weights = s[f"{task}.variant"], s[f"{task}.weights"]
            if name and name in params._variant_names(task) and weights not in ("", RANDOM_WEIGHTS):
                try:   # a Hugging Face snapshot folder stands for its weights file, as when set live
                    path = resolve_weights_path(weights)
                except FileNotFoundError as e:
                    raise StartupError(f"{task}.weights: {e}") from None
                if path.exists() and not path.is_file():   # a device, pipe or socket: not "not found"
                    raise StartupError(f"{task}.weights: {weights!r} exists but is not a regular file (a device, "
                                       f"pipe or socket); give the checkpoint file itself")
                if not path.is_file():
                    where = params.relative_path_text(weights)
                    raise StartupError(f"{task}.weights: file {weights!r} not found{where}; {weights_help(task, name)}")
            if name and name in params._variant_names(task) and not weights:
                raise StartupError(f"{task}.weights is not set; {weights_help(task, name)}")
        reasons = params.check_all(s, lambda name: params.value_source(self._command_line,
                                                                       self.get_fully_qualified_name(), name))
        if reasons:
            raise StartupError("invalid parameters: " + "; ".join(reasons))
        why = self._cameras_refused(s["cameras"]) or self._topics_refused(s)
        if why and self._MANAGED and why.endswith(topics.DROP_REMAP):   # (no configure can change a remap)
            why += ": " + _REMAP_AT_START
        if why:
            raise StartupError(why)
        self._calibrations = [self._load_calibration(ns, s) for ns in s["cameras"]]   # before the (slow) model
        tasks = [f"{t} {s[f'{t}.variant']} ({_weights_shown(s[f'{t}.weights'])})" for t in ("depth", "segmentation")
                 if s[f"{t}.variant"]]
        if s["cpu_threads"] != self._cpu_threads:   # the load and its warm-up (seconds of a big model on the CPU) run
            self._set_cpu_threads(s["cpu_threads"])  # on the threads it leaves to the robot too, and /diagnostics says so
        self.get_logger().info(f"loading {', '.join(tasks)} on device {s['device']} ...")   # (seconds with a big model)
        models = load_models(s)
        t0 = time.monotonic()
        self._warmup(models)
        self._startup["warmup_s"] = time.monotonic() - t0
        return models

    def _said_anew(self, m: ModelSet) -> None:
        """What the node says once per model is said again of the models ``m`` loaded (not those it reused). Called
        as ``m`` becomes the running set, under ``_lock`` at a swap: done after the swap, while the loader logged the
        model, the new model's first batch (a frame already waiting) found the old model's warnings still marked
        said, and said nothing (e.g. that it has no metres)."""
        for task in ("depth", "segmentation"):
            e = getattr(m, task)
            if e is None or task in m.reused:
                continue
            if task == "depth":   # a new depth model: that it has no metres is said again (it was said once in the
                self._warned.discard("no_metric")   # node's life: a swap back to a relative model was silent)
            self._warned.discard(f"task_off:{task}")   # on: its turning off again (a swap) is said again
            # a new model: its pace is said anew (a copy iterated, taken at once: the worker and the executor add
            # warnings meanwhile, and a set that grows while iterated raises; this runs on the loader's thread)
            self._warned -= {k for k in list(self._warned) if k.startswith("slow:")}

    def _log_model(self, m: ModelSet) -> None:
        for task in ("depth", "segmentation"):
            e = getattr(m, task)
            if e is None or task in m.reused:   # (logged when it was loaded)
                continue
            if e.random_weights:
                bar = "!" * 78
                self.get_logger().warning(
                    f"\n{bar}\n  {task}: {e.variant.name} runs with RANDOM WEIGHTS ({task}.weights:=random)."
                    f"\n  Its outputs are NOT meaningful. For real results: {weights_help(task, e.variant.name, False)}"
                    f"\n{bar}")
            rep = getattr(e.model, "load_report", None)   # what the loader did with the file's keys
            loaded = ""
            if rep is not None:
                loaded = f"; weights: {rep.loaded} tensors ({rep.source_format} names)"
                if rep.dropped:
                    loaded += f", {len(rep.dropped)} unused tensors skipped ({', '.join(rep.dropped[:4])})"
                if rep.absent_optional:
                    loaded += f", no auxiliary head in the file ({len(rep.absent_optional)} tensors; not used for inference)"
                if rep.absent_counters:
                    loaded += f", {len(rep.absent_counters)} BatchNorm step counters absent (not used for inference)"
                if rep.conversions():   # what the file held: its wrapper, a prefix, fp16 / bf16 tensors
                    loaded += f"; {rep.conversions()}"
            self.get_logger().info(f"{task}: {e.variant.name} on {m.device} ({str(e.dtype).replace('torch.', '')}"
                                   f"{_why_device(self._settings['device'], m)}), "
                                   f"net size {getattr(m, task + '_pre').net_size}{loaded}")
        if m.pipeline_note:
            self.get_logger().warning(f"pre/post-processing runs on the CPU (OpenCV, NumPy) and clouds are built "
                                      f"there, not on {m.device}: {m.pipeline_note}")

    def set_parameters(self, parameter_list: list[Parameter]) -> list[SetParametersResult]:
        with self._param_lock:
            return [self._unchanged_read_only([p]) or self._refused([p]) or
                    super(DptNode, self).set_parameters([p])[0] for p in parameter_list]

    def set_parameters_atomically(self, parameter_list: list[Parameter]) -> SetParametersResult:
        with self._param_lock:   # what the set_parameters(_atomically) services call
            unchanged = self._unchanged_read_only(parameter_list)
            if unchanged is not None:
                return unchanged
            rest = [p for p in parameter_list if self._unchanged_read_only([p]) is None]
            return self._refused(rest) or super().set_parameters_atomically(rest)

    def _unchanged_read_only(self, parameter_list: list[Parameter]) -> Optional[SetParametersResult]:
        """Success, changing nothing, when every parameter of ``parameter_list`` is read-only and given the value it
        holds: `ros2 param load` of what `ros2 param dump` wrote sets each read-only parameter to the value it runs
        with, which rclpy refuses as a change ("read-only parameter"), a failure line for each in a file of the
        node's own values. A read-only parameter given another value is refused as before (:meth:`_refused`)."""
        def plain(v: Any) -> Any:
            return list(v) if isinstance(v, (list, tuple, array.array)) else v

        for p in parameter_list:
            if not self.has_parameter(p.name) or not self.describe_parameter(p.name).read_only:
                return None
            held = self.get_parameter(p.name)
            if held.type_ != p.type_ or plain(held.value) != plain(p.value):
                return None
        if not parameter_list:
            return None
        return SetParametersResult(successful=True, reason="; ".join(
            f"{p.name} is read-only; unchanged (the value it runs with)" for p in parameter_list))

    def _refused(self, parameter_list: list[Parameter]) -> Optional[SetParametersResult]:
        """A refusal naming the types when a value has the wrong one (instead of rclpy's "expected '3' got '2'"),
        or, for a name the node does not have, the new name of a renamed parameter or the closest real one (instead
        of "undeclared parameter(s): []"); for a read-only parameter or a value of no type (NOT_SET), how the value
        can be given instead (rclpy says only "read-only parameter" / "cannot be undeclared"); for a value outside its
        range, the allowed values nearest to it (rclpy says only "not a valid step. Min: 0, max: 2048, value: 100,
        step: 32"; the descriptors keep their ranges for `ros2 param describe` and rqt_reconfigure)."""
        reasons = [params.unknown_parameter(p.name, live=True) for p in parameter_list
                   if not self.has_parameter(p.name)]
        fqn = self.get_fully_qualified_name()   # (the remedies are `ros2 param set <fqn> <name> <value>`)
        for p in parameter_list:
            spec = params.SPECS.get(p.name)
            if spec is None:
                continue
            if spec.read_only(self._MANAGED):
                reasons.append(params.read_only_reason(p.name, self._MANAGED, self.get_name()))
            elif p.type_ == Parameter.Type.NOT_SET:
                reasons.append(params.unset_refusal(p.name, fqn))
            elif (r := params.type_mismatch(p.name, p.type_.value, p.value, fqn)) is not None:
                reasons.append(r)
            elif (r := params.range_refusal(spec, p.value, node=fqn)) is not None:   # (before rclpy's descriptor check)
                reasons.append(r)
        return SetParametersResult(successful=False, reason=params.clip("; ".join(reasons))) if reasons else None

    def _guarded_set_parameters(self, changed: list[Parameter]) -> SetParametersResult:
        """:meth:`_on_set_parameters`, with an unforeseen failure turned into a refusal with its reason: raised out
        of the callback it would end the executor's spin, and with it the node. A refused change leaves the node as
        the parameters (set back by rclpy) say: settings, the cameras' calibrations (camera_info.url) and their
        subscriptions (image_transport, camera_info, depth.align), which the change may have altered before the step
        that failed (a subscription rcl refused: the old one was already destroyed)."""
        with self._lock:   # (the loader's swap writes the calibration under _lock alone)
            before, calibration, wanted = self._settings, self._running_calibration, self._wanted
            cameras = [(cam, cam.calibration, cam.info_since, cam.info_waited_in_vain) for cam in self._cameras]
        period = self._diag_timer.timer_period_ns if self._diag_timer is not None else None
        try:
            result = self._on_set_parameters(changed)
            if result.successful:
                self._sim_time_switched(changed)
            return result
        except Exception as e:  # noqa: BLE001
            with self._lock:   # refused: what runs is what `ros2 param get` says (a failure after the swap undone)
                self._settings, self._running_calibration = before, calibration
                if self._wanted is not wanted and self._wanted is not None:
                    # the model this refused change asked for: a load of it (started, or one running that loops
                    # back for it) must not be swapped in; the loader sets it only to None meanwhile
                    self._wanted = wanted
                for cam, info, since, waited in cameras:   # the calibration files of the values set back
                    if cam.calibration is not info:
                        cam.calibration, cam.info_since, cam.info_waited_in_vain = info, since, waited
            if self._diag_timer is not None and period is not None and self._diag_timer.timer_period_ns != period:
                self._diag_timer.timer_period_ns = period
                self._diag_timer.reset()
            names = ", ".join(p.name for p in changed)
            lost = self._subscribe_as_settings_say()   # (those the change destroyed or made, back as they were)
            why = params.clip(str(e) if isinstance(e, SubscriptionError)   # (its message says what to do)
                              else f"{type(e).__name__}: {e}")   # (an OSError quotes a path, which may be huge)
            if lost:
                setting = self._set_said({p.name: p.value for p in changed}, refused=True)
                self.get_logger().error(f"{setting} failed: {why}; refused")
                self._say_unsubscribed(lost, f"{setting} failed and was refused, and subscribing back to what the "
                                             f"parameters say failed too")
                return SetParametersResult(successful=False, reason=params.clip(
                    f"{names}: {why}; refused, and subscribing back to what the parameters say failed too: the node "
                    f"is not subscribed to {', '.join(self._lost_topics(lost))} (its log says what to do)"))
            self.get_logger().error(f"setting {names} failed: {why}; refused, the node runs on as before")
            one = len(changed) == 1
            kept = (f"; {names} {'keeps its value' if one else 'keep their values'} and the node its subscriptions: "
                    f"set {'it' if one else 'them'} again once the topic can be subscribed"
                    if isinstance(e, SubscriptionError) else "")
            return SetParametersResult(successful=False, reason=params.clip(f"{names}: {why}{kept}"))

    def _subscribe_as_settings_say(self) -> list[tuple[_Camera, str, str]]:
        """Make each camera's subscriptions those its settings and calibration ask for: destroy any the settings do
        not want or that has another topic or message type than they give, and (active) subscribe what is missing.
        Returns the (camera, subscription name, why) of each wanted one that could not be made."""
        lost = []
        for cam in self._cameras:
            wanted = {"image": True, "camera_info": cam.calibration is None,
                      "depth_reference": self._settings["depth.align"]}
            for name, on in wanted.items():
                try:
                    sub = cam.subs.get(name)
                    if sub is not None and (not on or (sub.topic_name, sub.msg_type) !=
                                            self._subscription_of(cam, name)):
                        if on and self._active and name != "camera_info":   # (the new one first, as a change)
                            try:
                                self._switch(cam, name, True)
                            except Exception:   # not left on a topic the settings do not give: said as lost
                                self._subscribe(cam, name, False)
                                raise
                        else:
                            self._subscribe(cam, name, False)
                    if not on:
                        with self._lock:   # (/diagnostics reads it under _lock)
                            cam.unsubscribed.pop(name, None)
                    elif self._active:   # (inactive: activate subscribes; one left during a deactivation stays)
                        self._subscribe(cam, name, True)
                except Exception as e:  # noqa: BLE001 - said with what the node is subscribed to now
                    lost.append((cam, name, str(e)))
                    with self._lock:
                        cam.unsubscribed[name] = str(e)
        return lost

    def _lost_topics(self, lost: list[tuple[_Camera, str, str]]) -> list[str]:
        return [self._subscription_of(cam, name)[0] for cam, name, _ in lost]

    def _say_unsubscribed(self, lost: list[tuple[_Camera, str, str]], what: str) -> None:
        """Log (ERROR) the subscriptions the settings want that could not be made, what the node is subscribed to
        now, and how to subscribe again."""
        # (cam.subs read without _lock: this runs in a set-parameter callback, under _param_lock, which every change
        # of cam.subs holds too: the set-parameter calls, configure, activate, deactivate, cleanup)
        now = [f"{s.topic_name} ({_type_name(s.msg_type)})" for c in self._cameras for s in c.subs.values()]
        missing = "; ".join(f"camera {cam.ns or '/'}: {topic} ({why})"
                            for (cam, _, why), topic in zip(lost, self._lost_topics(lost)))
        again = (f"ros2 lifecycle set {self.get_fully_qualified_name()} deactivate, then activate" if self._MANAGED
                 else "restart the node")
        blind = " (so no frames of that camera are received)" if any(name == "image" for _, name, _ in lost) else ""
        self.get_logger().error(
            f"{what}, so the node is NOT subscribed to: {missing}{blind}; it is subscribed to: "
            f"{', '.join(now) or 'nothing'}. Once the topic can be subscribed, any successful `ros2 param set` on this "
            f"node subscribes it again (the value a parameter already holds will do), or {again}")

    def _on_set_parameters(self, changed: list[Parameter]) -> SetParametersResult:
        # rclpy's own parameters (use_sim_time, ...) are not in our table: rclpy handles them
        changes = {p.name: p.value for p in changed if p.name in params.SPECS}
        if not changes:
            return SetParametersResult(successful=True)
        if self._finalized:   # (accepted, it would be ignored for good)
            return SetParametersResult(successful=False, reason=(
                f"{', '.join(changes)}: the node is finalized (lifecycle shutdown): no value takes effect any more; "
                "start the node again"))
        with self._lock:
            current = self._settings
            configured = self._models is not None
            new, reasons = params.validate(current, changes, self.get_fully_qualified_name())
            if new is None:
                return SetParametersResult(successful=False, reason=params.clip("; ".join(reasons)))
        # (only the managed node gets here with these: the plain node declares them read-only)
        why = self._cameras_refused(new["cameras"]) if "cameras" in changes else None
        if not why and topics.TOPIC_PARAMETERS.intersection(changes):   # the topics they make: on one another's?
            why = self._topics_refused(new)
            # (but not for a collision there already, unless cameras are set: that of a managed node's remaps or
            # start-up cameras, which its configure refuses, is not the doing of image_transport or depth.align)
            why = None if why and why == self._topics_refused(current) and "cameras" not in changes else why
        if why:   # refused now, as configure would refuse it
            return SetParametersResult(successful=False, reason=why)
        fixed = [n for n in params.CONFIGURE_PARAMETERS if n in changes and changes[n] != current[n]]
        if fixed and configured:
            return SetParametersResult(successful=False, reason=(
                f"{', '.join(fixed)}: applied at configure, so set while the node is unconfigured: "
                f"ros2 lifecycle set {self.get_fully_qualified_name()} deactivate (if active), then cleanup, "
                f"set it, then configure and activate"))
        calibrations = None
        # (a file set again, also to the path it holds, is read again: a camera recalibrated, its new file copied over
        # the old one, is taken up by that set, as README's "set live, the file is read at once" says)
        if (new["camera_info.url"], new["camera_info.rectified"]) != (current["camera_info.url"],
                                                                      current["camera_info.rectified"]) or \
                (new["camera_info.url"] and (new["cameras"] != current["cameras"] or "camera_info.url" in changes)):
            try:   # read (and checked) before anything changes: a file that cannot be used is refused
                namespaces = [cam.ns for cam in self._cameras] if configured else \
                    [ns.rstrip("/") for ns in new["cameras"]]   # unconfigured: checked for the cameras to come
                calibrations = [self._load_calibration(ns, new, log=configured) for ns in namespaces]
            except StartupError as e:
                return SetParametersResult(successful=False, reason=params.clip(str(e)))
        with self._lock:   # (set-parameter calls are serialised by _param_lock: ``current`` is still current)
            if configured:   # (in the section that sets the settings: a swap cannot come in between)
                self._track_calibration(current, new)
                if new.model_key() != current.model_key():
                    # wanted with the settings, not after: a load of what they move away from that ends in between
                    # must not be swapped in (it would serve, while `ros2 param get` says otherwise, until the
                    # model asked for now is loaded once more)
                    self._wanted = new
            self._settings = new
            active = self._active
            for name, throttle in (("max_rate", "throttle"), ("points.max_rate", "points_throttle")):
                if new[name] != current[name]:   # a rate set (also back after 0) starts afresh
                    for cam in self._cameras:
                        getattr(cam, throttle).restart()
            if calibrations is not None and configured:   # (together with the settings they go with)
                for cam, info in zip(self._cameras, calibrations):
                    if info is None and cam.calibration is not None:
                        # back to the camera_info topic: its grace wait starts now, not when the subscription below
                        # is made (a frame in between is early, not one whose camera_info is missing or misrouted)
                        cam.info_since, cam.info_waited_in_vain = time.monotonic(), False
                    cam.calibration = info
        if not configured:   # a managed node before configure / after cleanup: the values apply at configure
            return SetParametersResult(successful=True)
        if new.model_key() != current.model_key():
            self._request_models(new)
        if any(n.startswith("colormap") for n in changes):
            for cam in self._cameras:
                cam.colormap_range = None
        if calibrations is not None and active:   # back to the topic (a refused subscription refuses the change)
            for cam, info in zip(self._cameras, calibrations):
                if info is None:
                    self._subscribe(cam, "camera_info", True)
        if new["image_transport"] != current["image_transport"]:
            for cam in self._cameras:
                self._switch(cam, "image", active)
            self._restart_rates()   # (inactive too: no frame from before it is an input of the new topics' rates)
        if new["depth.align"] != current["depth.align"] or \
                new["depth.align_transport"] != current["depth.align_transport"]:
            for cam in self._cameras:
                if new["depth.align_transport"] != current["depth.align_transport"]:
                    self._switch(cam, "depth_reference", new["depth.align"] and active)
                else:
                    self._subscribe(cam, "depth_reference", new["depth.align"] and active)
        if calibrations is not None:
            # a camera_info subscription a file replaces goes once nothing else of the change can be refused: refused,
            # the camera keeps it and the camera_infos it buffered, which frames waiting for theirs need (destroyed
            # first, a refusal's subscribing back made it anew, empty)
            for cam, info in zip(self._cameras, calibrations):
                if info is not None:
                    self._subscribe(cam, "camera_info", False)
        if any(cam.unsubscribed for cam in self._cameras):   # left out by a refused change (_say_unsubscribed)
            lost = self._subscribe_as_settings_say()   # (still failing: said again; the set itself stands)
            if lost:
                self._say_unsubscribed(lost, f"{self._set_said(changes)}, but subscribing what the parameters say "
                                             f"failed again")
        if new["diagnostics.period"] != current["diagnostics.period"]:
            self._diag_timer.timer_period_ns = int(new["diagnostics.period"] * 1e9)
            self._diag_timer.reset()
        return SetParametersResult(successful=True)

    def _set_said(self, changes: dict, refused: bool = False) -> str:
        """A log line's words for the parameter set ``changes``: ``NAMES set`` for one a user made; for a failed model
        load's revert (:meth:`_model_failed`), which the user did not make, what the user had set and what the node
        set back. ``refused``: the words for the set as one that failed (``setting NAMES``, for "... failed")."""
        reverting = self._reverting
        if not reverting or set(reverting) != set(changes):
            return f"setting {', '.join(changes)}" if refused else f"{', '.join(changes)} set"
        asked = ", ".join(f"{n}={_value_shown(a)}" for n, (a, _) in reverting.items())
        back = ", ".join(f"{n} back to {_value_shown(b)}" for n, (_, b) in reverting.items())
        if refused:
            return f"the node's setting {back} (the running model's: the model load of {asked} failed)"
        return f"the model load of {asked} failed (the next line says why), so the node set {back}, the running model's"

    def _track_calibration(self, current: Settings, new: Settings) -> None:
        """Under ``_lock``, as ``new`` replaces ``current``: a relative model's calibration to metres belongs to
        it, so while the settings ask for another depth model than the running one, the running one's frames keep
        its calibration (the one set when it was asked for; see :meth:`process`), and a depth.scale / depth.shift
        set meanwhile applies from the swap. Back on the running depth model, the settings' own apply again; and
        after a failed load (whose parameters could not be set back) nothing is held for a model that will not come."""
        if _same_task("depth", self._models.key, new.model_key()):
            self._running_calibration = None
        elif self._running_calibration is None and not _same_task("depth", current.model_key(), new.model_key()):
            self._running_calibration = {n: current[n] for n in params.MODEL_CALIBRATION}   # this asks for another

    # ------------------------------------------------------------------ model swap
    def _request_models(self, s: Settings) -> None:
        with self._lock:
            self._wanted = s
            # _model_loading is cleared by the loader, under this lock, when it leaves its loop: a
            # loader thread that has left it may still be alive for a moment, and would miss ``s``
            running = self._model_loading
            self._model_loading = True
            if not running or self._loader is None or not self._loader.is_alive():
                self._loader = threading.Thread(target=self._loader_loop, name="dpt_model_loader", daemon=True)
                self._loader.start()

    def _loader_loop(self) -> None:
        me = threading.current_thread()
        while True:
            with self._lock:
                if self._loader is not me:   # left behind by a cleanup: the next configuration has its own loader
                    return
                s, running = self._wanted, self._models
                if s is None or self._stopping or self._models is None or s.model_key() == self._models.key:
                    self._wanted = None
                    self._model_loading = False
                    return
            try:
                models = load_models(s, running)
                self._warmup(models)
            except Exception as e:  # noqa: BLE001 - any failure keeps the old model; reported
                self._model_failed(s, e)
                continue
            with self._lock:
                # never swap into a stopped node, nor one whose cleanup left this loader behind
                current_wanted = None if self._stopping or self._loader is not me else self._wanted
                if current_wanted is not None and current_wanted.model_key() == s.model_key():
                    self._models = models   # the worker picks it up at its next batch
                    # (with it: its first batch, which may begin before the lines below are logged, says them)
                    self._said_anew(models)
                    self._model_error = ""
                    # the settings ask for this depth model (its calibration is theirs), or for yet another one
                    # meanwhile: this one keeps the calibration it was asked for with
                    self._running_calibration = None if _same_task("depth", models.key, self._settings.model_key()) \
                        else {n: s[n] for n in params.MODEL_CALIBRATION}
            if current_wanted is not None and current_wanted.model_key() == s.model_key():
                # what now runs, as the loading line names it (the weights, a snapshot folder's file); a task kept
                tasks = ("depth", "segmentation")
                loaded = [t for t in tasks if getattr(models, t) is not None and t not in models.reused]
                kept = models.serving(models.reused)
                off = [t for t in tasks if getattr(models, t) is None and getattr(running, t) is not None]
                said = [models.serving(tuple(loaded))] + ([f"kept: {kept}"] if kept else []) + [f"{t} off" for t in off]
                self.get_logger().info(f"model swapped in: {'; '.join(x for x in said if x)}")
                self._log_model(models)

    def _model_failed(self, s: Settings, e: Exception) -> None:
        msg = f"{type(e).__name__}: {e}"
        with self._lock:
            # a managed node cleaned up while this load ran (and maybe configured again, with a loader of its own), or
            # a node stopping now (a cleanup or shutdown waiting for this load): no running model to keep, and nothing
            # of this load's to revert (the parameters keep the values asked for, as any set after a cleanup does)
            mine = self._loader is threading.current_thread() and not self._stopping
            models = self._models if mine else None
            if models is None:
                self._errors["model_load"] += 1
        if models is None:
            self.get_logger().error(f"model load failed (the node was cleaned up or shut down meanwhile; the parameters "
                                    f"keep the values of this load, which a managed node's next configure loads "
                                    f"again): {msg}")
            return
        running = {n: v for n, v in zip(params.MODEL_PARAMETERS, models.key) if v is not None}
        with self._lock:
            self._model_error = msg
            self._errors["model_load"] += 1
            # the parameters have changed since a model parameter this load had at the running value (the next
            # value of one request, as `ros2 param load` sets a dump's depth.variant, then its depth.weights): the
            # new combination loads next (its failure puts the parameters back); setting this load's values back
            # would undo the newer ones (the variant back with the new weights: a model nobody asked for)
            superseded = self._wanted is not None and any(
                w != f and f == r for w, f, r in zip(self._wanted.model_key(), s.model_key(), models.key))
            if self._wanted is not None and self._wanted.model_key() == s.model_key():
                self._wanted = None
            if _same_task("depth", s.model_key(), self._settings.model_key()):
                # the depth model the settings ask for will not come: their calibration applies from now on (not
                # when they ask for yet another one, whose load may not have been requested yet: that one's waits)
                self._running_calibration = None
        serving = models.serving() or "no model"   # which weights still serve
        if superseded:
            self.get_logger().error(f"model load failed, keeping the running model ({serving}) until the one the "
                                    f"parameters have asked for since is loaded (next): {msg}")
            return
        # put the parameters back to what is running, so `ros2 param get` tells the truth; but not
        # one that the user has changed again since this load was asked for (that change stands)
        r = None
        with self._param_lock:
            current = self._settings
            revert = [Parameter(n, value=v) for n, v in running.items() if s[n] != v and current[n] == s[n]]
            if revert and not self._stopping:   # all at once: one by one, an intermediate set can be invalid
                self._reverting = {p.name: (s[p.name], p.value) for p in revert}
                try:
                    r = self.set_parameters_atomically(revert)   # (both variants empty) or start another load
                finally:
                    self._reverting = {}
        # the line says which parameters were set back, and to what: the user's `ros2 param set` said successful,
        # and `ros2 param get` now gives another value
        back = "; " + ", ".join(f"{p.name} set back to {_value_shown(p.value)}"
                                for p in revert) if r is not None and r.successful else ""
        self.get_logger().error(f"model load failed, keeping the running model ({serving}): "
                                f"{msg.rstrip('.') if back else msg}{back}")
        if r is not None and not r.successful:   # e.g. the running model's own file is gone since: say what runs
            self.get_logger().warning(
                f"could not set {', '.join(p.name for p in revert)} back to the running model's values "
                f"({', '.join(f'{p.name}={p.value!r}' for p in revert)}): {r.reason}; they keep the values "
                f"of the load that failed, and the running model serves on")

    def _warmup(self, m: ModelSet) -> None:
        """Forward passes at the network shapes the node serves, so that the first frame after a start
        or a swap does not pay for lazy initialisation. The shapes come from the cameras' last frame
        sizes; before the first frame, the variant's network size. With ``cuda_graphs`` every batch
        size that cameras of one shape can form (1..N) is a graph of its own, captured here (two eager
        passes and the capture each); without, one pass per shape (on the CPU a pass of DPT-Hybrid
        takes seconds, and a first pass there costs no more than the next)."""
        sizes = [cam.frame_size for cam in getattr(self, "_cameras", ()) if cam.frame_size is not None]
        for task in ("depth", "segmentation"):
            engine, pre = getattr(m, task), getattr(m, f"{task}_pre")
            if engine is None or task in m.reused:   # (a reused engine is warm, and the worker may be running it)
                continue
            shapes = collections.Counter()
            for h, w in sizes:
                try:
                    shapes[pre.input_size(h, w)] += 1
                except ValueError:   # a size these settings refuse (the frames will be refused too): no pass
                    pass
            if not shapes:
                shapes[tuple(_round32(v) for v in pre.net_size)] = 1
            batches = [(n, shape) for shape, cams in shapes.items()
                       for n in range(1, (cams if engine.cuda_graphs else 1) + 1)]
            slowest = 0.0
            for n, (h, w) in batches[:engine.max_graphs]:   # more would evict the first captures
                t0 = time.monotonic()
                engine.run(torch.zeros((n, 3, h, w), device=m.device))
                if m.device.type == "cuda":   # (the pass is queued: its time is the wait for it)
                    torch.cuda.synchronize(m.device)
                slowest = max(slowest, (time.monotonic() - t0) / n)
            m.warmup_s[task] = slowest

    # ------------------------------------------------------------------ topics
    def _qos(self, reliability: str, depth: int) -> QoSProfile:
        return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                          reliability=ReliabilityPolicy.RELIABLE if reliability == "reliable"
                          else ReliabilityPolicy.BEST_EFFORT,
                          durability=DurabilityPolicy.VOLATILE)

    def _create_interfaces(self, s: Settings) -> None:
        self._in_qos = self._qos(s["qos.input_reliability"], s["qos.input_depth"])
        # a latched camera_info (published once: transient local, reliable) reaches only a subscription asking for it
        self._info_qos = self._in_qos if s["qos.camera_info_durability"] == "volatile" else QoSProfile(
            history=HistoryPolicy.KEEP_LAST, depth=s["qos.input_depth"], reliability=ReliabilityPolicy.RELIABLE,
            durability=DurabilityPolicy.TRANSIENT_LOCAL)
        out_qos = self._qos(s["qos.output_reliability"], s["qos.output_depth"])
        for cam in self._cameras:
            for name in (*OUTPUTS, *(COMPRESSED_OUTPUTS if s["publish.compressed"] else ())):
                topic = cam.out_topics[name] = self._output_topic(cam, name)
                events = PublisherEventCallbacks(incompatible_qos=self._incompatible_qos(topic, output=True))
                cam.pubs[name] = self.create_publisher(_OUTPUT_TYPES.get(name, Image), topic, out_qos,
                                                       event_callbacks=events)
        if not conversions.cdr_matches_rmw():
            self.get_logger().warning(
                f"this rmw ({rclpy.get_rmw_implementation_identifier()}) does not read little-endian CDR as "
                "dpt_ros writes it: outputs are published as message objects (slower; nothing else changes)")
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._diag_timer = self.create_timer(s["diagnostics.period"], self._publish_diagnostics)
        # on the wall clock: with use_sim_time and no /clock, the node's own timers (/diagnostics) never fire. Each
        # configuration waits afresh, as a switch of use_sim_time does: the frames it names and its warning are its own
        # (before, a lifecycle cleanup -> configure named the frames of the configuration before too, and said nothing
        # where that one had said it)
        with self._lock:
            self._clock_wait_from = self._start_word()
            self._before_clock = (0, "")
            self._warned.discard("no_clock")
        self._clock_timer = self.create_timer(_CLOCK_CHECK_S, self._check_clock,
                                              clock=Clock(clock_type=ClockType.STEADY_TIME))
        self._publish_label_info(s)

    def _output_topic(self, cam: _Camera, name: str) -> str:
        """The topic of output ``name`` (:func:`topics.output_topic`: a compressed copy follows its image's remap)."""
        return topics.output_topic(cam.ns, name, self.resolve_topic_name, self._expand_topic_name)

    def _image_topic(self, cam: _Camera) -> str:
        """The topic the camera's images are (or would be) subscribed on: as image_transport does, the transport's
        topic is the base topic, remaps applied, + "/compressed", so `-r image:=/camera/image_raw` also moves the
        compressed input to /camera/image_raw/compressed."""
        compressed = self._settings["image_transport"] == "compressed"
        return self.resolve_topic_name(cam.topic("image")).rstrip("/") + ("/compressed" if compressed else "")

    def _reference_topic(self, cam: _Camera, s: Optional[Settings] = None) -> str:
        """The topic the camera's depth.align references are (or would be) subscribed on: depth_reference, remaps
        applied, + "/compressedDepth" with depth.align_transport:=compressedDepth (as image_transport names it), of
        the settings ``s`` (a frame's snapshot; by default the node's)."""
        compressed = (s or self._settings)["depth.align_transport"] == "compressedDepth"
        return self.resolve_topic_name(cam.topic("depth_reference")).rstrip("/") + \
            ("/compressedDepth" if compressed else "")

    def _subscription_of(self, cam: _Camera, name: str) -> tuple[str, type]:
        """The (topic, message type) the settings give the camera's ``name`` subscription (``image``, ``camera_info``
        or ``depth_reference``), the topic as the subscription reports it (resolved, remaps applied)."""
        if name == "image":
            compressed = self._settings["image_transport"] == "compressed"
            return self.resolve_topic_name(self._subscription_name(cam, name)), \
                CompressedImage if compressed else Image
        if name == "camera_info":
            return self.resolve_topic_name(cam.topic(name)), CameraInfo
        compressed = self._settings["depth.align_transport"] == "compressedDepth"
        return self.resolve_topic_name(self._subscription_name(cam, name)), CompressedImage if compressed else Image

    def _subscription_name(self, cam: _Camera, name: str) -> str:
        """The name the camera's ``name`` subscription is created with, which rcl resolves (remaps applied) once:
        ``image`` / ``depth_reference`` as they are (before, resolved by the node first, so a chain of remaps,
        ``-r image:=cam_b -r cam_b:=cam_c``, moved them twice, to /cam_c); a compressed transport's topic is the base
        topic resolved + its suffix (:meth:`_image_topic`, :meth:`_reference_topic`, as image_transport names it)."""
        if name == "image" and self._settings["image_transport"] == "compressed":
            return self._image_topic(cam)
        if name == "depth_reference" and self._settings["depth.align_transport"] == "compressedDepth":
            return self._reference_topic(cam)
        return cam.topic(name)

    def _subscribe(self, cam: _Camera, name: str, on: bool) -> None:
        """Subscribe the camera's ``image`` (in the image_transport of the settings), ``camera_info`` (none with
        camera_info.url) or ``depth_reference`` (depth.align) topic, or unsubscribe it and forget what it
        brought."""
        if on and (name not in cam.subs or name in cam.replacing):
            topic = cam.topic(name)
            made: list = []   # (a weak reference to the subscription once rcl has made it: no reference cycle)
            if name == "image":
                topic = self._image_topic(cam)
                compressed = self._settings["image_transport"] == "compressed"
                # each image is its own subscription's, not the camera's when its callback runs: an image_transport
                # change made off the executor's thread (node.set_parameters called from another) replaces the
                # camera's while the executor hands on what it took from the old one; one handed on before
                # create_subscription has returned the new one (rclpy wakes the executor first) is named by its topic
                msg_type, handler = (CompressedImage if compressed else Image), \
                    lambda c, m, t=topic: self._on_image(c, m, made[0]() if made else None, t)
            elif name == "camera_info":
                msg_type, handler = CameraInfo, self._on_info
            else:   # (depth.align_transport compressedDepth: depth_reference's topic + /compressedDepth)
                topic = self._reference_topic(cam)
                compressed = self._settings["depth.align_transport"] == "compressedDepth"
                msg_type, handler = (CompressedImage if compressed else Image), self._on_reference
            # a latched camera_info subscription is reliable whatever qos.input_reliability says: its warning says so
            latched = name == "camera_info" and self._info_qos.durability == DurabilityPolicy.TRANSIENT_LOCAL
            events = SubscriptionEventCallbacks(incompatible_qos=self._incompatible_qos(
                topic, output=False, latched_info=self._settings["qos.input_reliability"] if latched else None))
            try:   # (not under _lock: rcl may block, and the executor's callbacks take the lock)
                # (given unresolved, as the raw image / reference: rcl applies the remaps, once; ``topic`` says it)
                sub = self.create_subscription(msg_type, self._subscription_name(cam, name),
                                               lambda m, c=cam: handler(c, m),
                                               self._info_qos if name == "camera_info" else self._in_qos,
                                               event_callbacks=events)
                made.append(weakref.ref(sub))
            except Exception as e:  # noqa: BLE001 - rcl's RCLError: said with the topic and what to do
                raise SubscriptionError(self._refused_subscription(topic, msg_type, e)) from e
            # (once made: a refused one leaves the camera as it was) under _lock, as the worker (_await,
            # _never_had_info) and /diagnostics read them: a refused change's subscribing back, or a failed model
            # load's revert, runs on the model loader's thread while the executor and the worker read them
            with self._lock:
                cam.subs[name] = sub
                if name == "camera_info":
                    cam.info_since, cam.info_waited_in_vain = time.monotonic(), False   # (a grace wait of its own)
                elif name == "depth_reference":
                    cam.reference_waited_in_vain = False
                else:
                    cam.image_topic = topic
                    cam.image_since, cam.received_at_subscribe = time.monotonic(), cam.counts["received"]
                    # a new subscription (an activation, an image_transport change): its "no image yet" is said again
                    self._silent_logged = {said for said in self._silent_logged if said[0] != topic}
                cam.unsubscribed.pop(name, None)
        elif not on and name in cam.subs:
            with self._lock:
                sub = cam.subs.pop(name)
            self._destroy_subscription(cam, name, sub)

    def _destroy_subscription(self, cam: _Camera, name: str, sub: Any) -> None:
        """Destroy the camera's ``name`` subscription ``sub`` and forget what it brought; an image one's messages that
        DDS holds for it, not yet taken (they came while the executor ran another callback: the parameter change that
        switches the topic), are taken first and handed to :meth:`_on_image` as if the executor had: received, and
        then processed or counted dropped (inactive: dropped), never lost with the subscription unsaid."""
        if name == "image":
            with self._lock:
                cam.image_replaced[sub] = time.monotonic()
            with sub.handle:
                while (taken := sub.handle.take_message(sub.msg_type, sub.raw)) is not None:
                    self._on_image(cam, taken[0], sub)
        self.destroy_subscription(sub)
        with self._wake:   # (the lock of _info_arrived too)
            if name == "camera_info":
                cam.infos.clear()
                cam.info_problem = None
            elif name == "depth_reference":
                cam.references.clear()
                cam.alignment = cam.reference_problem = None
            # a frame waiting for one (_await) waits no more: nothing comes now (camera_info.url set: the frame
            # takes the file's, see _camera_info; depth.align off: it goes out without alignment)
            self._info_arrived.notify_all()

    def _count_settled(self, frame: _Frame, key: str) -> None:
        """Under ``_lock``: count the frame ``key`` (``processed``, ``dropped``) on its camera. A frame of an image
        subscription that an image_transport change (or a deactivation: a frame the deactivation's wait left in the
        worker; or a refused change whose subscribing back failed) has replaced since, by another or by none, is one
        of the rate windows before that: those that began at it or later (the change, an activation, starts them
        afresh, of the new subscription's frames) count it as settled before them, so that their received and their
        processed and dropped are of the same frames. (Not by the camera's subscription now: without one, inactive or
        unsubscribed, a window begun after the frame's was replaced counted it as processed.)"""
        cam = frame.camera
        cam.counts[key] += 1
        replaced = cam.image_replaced.get(frame.subscription) if frame.subscription is not None else None
        if replaced is not None:
            for t, counts in self._rate_history:
                if t >= replaced and cam.index in counts:
                    counts[cam.index][key] += 1

    def _drop_frame(self, frame: _Frame) -> None:
        """Under ``_lock``: count ``frame`` dropped, unless it is counted already."""
        if not frame.counted:
            self._count_settled(frame, "dropped")
            frame.counted = True

    def _switch(self, cam: _Camera, name: str, on: bool) -> None:
        """image_transport (``image``) or depth.align_transport (``depth_reference``) changed: the camera's ``name``
        subscription on the new topic (``on``) is made before the old one goes, so the camera is never without one;
        refused (rcl: :class:`SubscriptionError`), the old one stays, with the references it brought, as the refused
        change leaves the settings."""
        if not on:
            self._subscribe(cam, name, False)
            return
        # the old one stays in cam.subs until the new one takes its place, under _lock (_subscribe): the worker
        # (_await, _align) and /diagnostics, which read it, never find the camera without one meanwhile (rcl's
        # create_subscription, not under the lock, may take a while, or be refused)
        old = cam.subs.get(name)
        cam.replacing.add(name)
        try:
            self._subscribe(cam, name, True)
        finally:
            cam.replacing.discard(name)
        if old is not None:
            self._destroy_subscription(cam, name, old)
            if name == "image" and name in cam.subs:   # (the old one's last images, just received: not the new one's)
                with self._lock:
                    cam.image_since, cam.received_at_subscribe = time.monotonic(), cam.counts["received"]
                    # and the rates with it: a refused change's subscribing back too (a window begun before this, for
                    # the topic it tried, would count the old one's frames settled from here as processed, not
                    # received)
                    self._restart_rates_locked()

    def _restart_rates(self) -> None:
        """Start the rate windows afresh (an image subscription replaced): the rates are the new subscriptions' from
        here; a frame of a replaced one, settled later, counts as settled before them (:meth:`_count_settled`)."""
        with self._lock:
            self._restart_rates_locked()

    def _restart_rates_locked(self) -> None:
        """:meth:`_restart_rates`, the caller holding ``_lock``."""
        self._rate_history = collections.deque([(time.monotonic(), {c.index: collections.Counter(
            c.counts, camera_infos=c.infos_received) for c in self._cameras})])

    def _refused_subscription(self, topic: str, msg_type: type, e: Exception) -> str:
        """What rcl's refusal to subscribe ``topic`` was, and what to do."""
        why = re.sub(r", at \S+:\d+", "", str(e))   # (rcl's and the rmw's source files and lines)
        topic = self.resolve_topic_name(topic)
        if "incompatible type" in why:   # Fast DDS: one participant (process) has one type per topic
            fix = (f"another node in this process (one DDS participant: a component container, nodes started in one "
                   f"Python process) has a publisher or subscription of {topic} with another message type than "
                   f"{_type_name(msg_type)}: give that one another topic, or remap this node's input")
        else:
            fix = (f"check the topic name and, with SROS2 security enforced (ROS_SECURITY_ENFORCEMENT), that the "
                   f"node's permissions allow subscribing {topic} (python -m dpt_ros.tools.sros2_policy writes a "
                   f"policy for the node's parameters)")
        return f"cannot subscribe {topic} ({_type_name(msg_type)}): {why}; {fix}"

    def _incompatible_qos(self, topic: str, output: bool, latched_info: Optional[str] = None):
        """The warning callback for one of this node's publishers (``output``) or subscriptions: which policy
        did not match and what to change, on this node or on the peer. ``latched_info``: the subscription is the
        transient-local (so reliable) camera_info one, and this is qos.input_reliability."""
        last = [-float("inf")]   # throttled per topic (rclpy's throttle is per call site: shared by all topics)
        topic = self.resolve_topic_name(topic)   # the name peers see (namespace and remaps applied)

        def warn(event) -> None:
            now = time.monotonic()
            if now - last[0] < 10.0:
                return
            last[0] = now
            policy = qos_policy_name_from_kind(event.last_policy_kind)
            hint = _qos_hint(policy, output, latched_info)
            self.get_logger().warning(f"incompatible QoS on {topic} (policy {policy}): {hint}")
        return warn

    def _publish_label_info(self, s: Settings) -> None:
        if not _LABEL_INFO:
            return
        qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self._label_pubs = []
        # class_id = the label value in `segmentation`; threshold 0: every pixel gets its argmax class
        msg = LabelInfo(class_map=[VisionClass(class_id=i, class_name=n) for i, n in enumerate(s["class_names"])],
                        threshold=0.0)
        msg.header.stamp = self.get_clock().now().to_msg()   # when the mapping was published
        for cam in self._cameras:
            pub = self.create_publisher(LabelInfo, cam.topic("label_info"), qos)
            pub.publish(msg)
            self._label_pubs.append(pub)

    # ------------------------------------------------------------------ callbacks (never wait)
    def _on_image(self, cam: _Camera, msg, sub: Any = None, topic: str = "") -> None:
        """``sub``: the subscription it came on (its callback's own; the one :meth:`_destroy_subscription` takes the
        last messages of). ``topic``: that subscription's topic, given by its callback when it runs before rcl's
        create_subscription has returned the subscription (``sub`` None). Neither (a call by hand): the camera's
        subscription now."""
        clock = self.get_clock()
        now_ns = clock.now().nanoseconds
        if sub is None and not topic:
            sub = cam.subs.get("image")
        frame = _Frame(cam, msg, time.monotonic(), now_ns,
                       rate_s=now_ns / 1e9 if now_ns and clock.ros_time_is_active else None,
                       image_topic=sub.topic_name if sub is not None else topic or cam.image_topic, subscription=sub)
        s = self._settings
        rate = s["max_rate"]
        with self._wake:
            stamp = conversions.stamp_ns(msg.header)
            jump = _STAMP_JUMP_S * 1e9
            # (a loop of a bag shorter than 1 s goes back less: to at or before its run's first stamp, the pass's start)
            frame.before_jump = (clock.ros_time_is_active and cam.last_stamp is not None and
                                 ((cam.last_stamp - stamp > jump and now_ns - stamp > jump) or
                                  (stamp < cam.last_stamp and stamp <= cam.run_start and now_ns > stamp)))
            if cam.last_stamp is None or stamp < cam.last_stamp:
                cam.run_start = stamp
            if cam.last_stamp is None:   # the first image: camera_info (a reference) that came before it, above all a
                # latched one, is judged against it, not left as of another clock (what a stop then was said to be)
                cam.info_on_image_clock |= bool(cam.infos) and abs(cam.infos[-1][0] - stamp) <= _STAMP_JUMP_S * 1e9
                cam.reference_on_image_clock |= (bool(cam.references) and
                                                 abs(cam.references[-1][0] - stamp) <= _STAMP_JUMP_S * 1e9)
            cam.last_image, cam.last_stamp = frame.received, stamp
            cam.recent_images.append((cam.last_stamp, frame.received))
            cam.counts["received"] += 1
            # a message taken before a deactivation unsubscribed the camera, or once the stop counted the unfinished
            # frames (an executor still spinning the node while it is destroyed): no worker takes it any more
            if not self._active or self._stopping:
                cam.counts["dropped"] += 1
                return
            if rate > 0.0 and not cam.throttle.admit(frame.rate_s, 1.0 / rate):
                cam.counts["throttled"] += 1
                return
            if cam.pending is not None:
                self._count_settled(cam.pending, "dropped")
            if s["depth.align"]:
                for stamp, ref in cam.references:
                    frame.offer_reference(stamp, ref, s["depth.align_tolerance"])
            cam.pending = frame
            self._wake.notify()

    def _on_reference(self, cam: _Camera, msg: Image) -> None:
        """depth.align: keep the reference, and offer it to the camera's waiting frame and the one in the
        worker (a reference may arrive after its image, and the buffer only holds the recent ones)."""
        stamp = conversions.stamp_ns(msg.header)
        tolerance = self._settings["depth.align_tolerance"]
        with self._info_arrived:   # (the lock of _wake too)
            for frame in [cam.pending, *self._in_worker]:
                if frame is not None and frame.camera is cam:
                    frame.offer_reference(stamp, msg, tolerance)
            # (a waiting frame gets a reference only if it ends its wait: one older than the image by more than
            # _REFERENCE_KEPT of the references' period does not, the frame waits on for a nearer one)
            cam.reference_on_image_clock = self._keep(
                cam, cam.references, "reference_waited_in_vain", stamp, msg, tolerance,
                lambda t: _reference_settled((abs(stamp - t), msg), t, list(cam.references)) is not None)

    def _on_info(self, cam: _Camera, msg: CameraInfo) -> None:
        s = self._settings
        # (exact: only the frame's own stamp matches; latest never waits)
        tolerance = s["camera_info.tolerance"] if s["camera_info.policy"] == "nearest" else 0.0
        with self._info_arrived:
            cam.info_on_image_clock = self._keep(cam, cam.infos, "info_waited_in_vain",
                                                 conversions.stamp_ns(msg.header), msg, tolerance)
            cam.infos_received += 1
            # the last _INFO_BUFFER, and those a frame still to be matched may need: a frame is matched after its
            # forward pass, and one of a model slower than _INFO_BUFFER of the camera_info's periods (DPT-Hybrid on a
            # CPU, 2 s a frame at 30 Hz) found its own camera_info gone, every frame: no depth/camera_info, no points
            # (kept beyond the last _INFO_BUFFER: from the oldest one such a frame can be given, within tolerance of
            # its stamp, on. Not under latest, which gives every frame the last one; nor one that no such frame can
            # be given: camera_info stamped by another clock than the images, or images stamped 0, kept 2048 while
            # frames came, 3 MB a camera and 0.6 ms a frame's match; nor, as the last at or before the oldest such
            # frame's stamp, one older than it beyond tolerance; and one that arrives out of stamp order, older
            # than the frame's own, no longer pushes the frame's own out)
            stamps = [conversions.stamp_ns(fr.msg.header) for fr in (cam.pending, *self._in_worker)
                      if fr is not None and fr.camera is cam] if s["camera_info.policy"] != "latest" else []
            infos, reach = cam.infos, tolerance * 1e9
            while len(infos) > _INFO_BUFFER and not any(abs(infos[0][0] - t) <= reach for t in stamps):
                infos.popleft()

    def _keep(self, cam: _Camera, buffer: collections.deque, in_vain: str, stamp: int, msg: Any,
              tolerance_s: float, ends_wait: Callable[[int], bool] = lambda t: True) -> bool:
        """Keep ``msg`` of ``stamp`` (camera_info or reference) in the camera's ``buffer`` and wake the frame waiting
        for it (:meth:`_await`; the caller holds the lock). It clears the camera's mark ``in_vain`` (a wait ran out:
        no more waits) only when a wait can pay off again: no image has come yet; or ``msg`` is as new as the
        camera's last image (up to ``_STAMP_JUMP_S`` newer: more is of another clock); or it matches, within
        ``tolerance_s``, one of the camera's images that arrived no longer ago than a frame's wait reaches after its
        arrival (its last frame's time to the look for it, ``cam.reach``, plus ``_INFO_WAIT_S``), and ends a wait for
        that image's stamp (``ends_wait``: a reference older than it by more than ``_REFERENCE_KEPT`` of the
        references' period does not, the frame would wait on for a nearer one): a frame waiting for it would have got
        it. One stamped by another clock than the images (a driver stamping camera_info with its own now() while the
        images carry the sensor's time, a relay restamping it), or on their clock but further behind them than a wait
        makes up (a driver or relay stamping camera_info some hundreds of milliseconds before the images; references
        so, also with a depth.align_tolerance raised above that: each is older than its image by more than a period),
        matches no frame in time, and each such would otherwise have the next frame wait in vain again: every frame,
        holding the worker, which serves all cameras, back by ``_INFO_WAIT_S`` each. A looped bag's next
        pass clears it with its first camera_info after its first image. Returns whether it is within
        ``_STAMP_JUMP_S`` of the last image stamp (False before an image)."""
        buffer.append((stamp, msg))
        last = cam.last_stamp
        near = last is not None and abs(stamp - last) <= _STAMP_JUMP_S * 1e9
        if last is None or 0 <= stamp - last <= _STAMP_JUMP_S * 1e9:
            setattr(cam, in_vain, False)
        elif getattr(cam, in_vain):
            now, window = time.monotonic(), cam.reach.get(in_vain, 0.0) + self._wait_s()
            for t, received in reversed(cam.recent_images):
                if now - received > window:
                    break
                if abs(stamp - t) <= tolerance_s * 1e9 and ends_wait(t):
                    setattr(cam, in_vain, False)
                    break
        self._info_arrived.notify_all()
        return near

    # ------------------------------------------------------------------ worker
    def _worker_loop(self) -> None:
        me = threading.current_thread()   # a worker that outlived its node's cleanup (stuck) leaves, never serves
        while True:
            with self._wake:
                # no polling: a frame (_on_image) and stop() notify, so a lost notification shows up
                # as a stalled worker in the tests instead of as up to a poll period of latency
                while not self._stopping and self._worker is me and not any(c.pending for c in self._cameras):
                    self._wake.wait()
                if self._stopping or self._worker is not me:
                    return
                frames = []
                for cam in self._cameras:
                    if cam.pending is not None:
                        frames.append(cam.pending)
                        cam.pending = None
                self._in_worker = frames
                self._busy = ("decode", time.monotonic())
            try:
                self.process(frames, worker=me)
            except Exception as e:  # noqa: BLE001 - the worker must survive anything
                if not self.context.ok():
                    return   # Ctrl-C / external shutdown while publishing: not an error, nothing to log
                with self._lock:   # (where the stop counts the batch's frames dropped: seen at once with its flag)
                    if self._stopping or self._worker is not me:
                        return   # the stop or a cleanup settled the batch's frames: not an error, nothing to log
                    left = [f for f in frames if not f.counted]
                # (none left: the batch counted them all, then failed: one error of no frame's, as a copy's)
                self._count_error("internal", f"unexpected error: {type(e).__name__}: {e}", left)
            with self._wake:
                if self._worker is not me:
                    return   # cleaned up (and maybe configured again) while this batch ran: that state is not ours
                self._busy = None
                self._in_worker = []
                self._idle.notify_all()

    def _set_cpu_threads(self, n: int) -> None:
        """PyTorch's intra-op threads and OpenCV's pool to ``n`` threads, 0 = their defaults as found at
        start-up. torch.set_num_threads sets the calling thread's OpenMP count and PyTorch's count for the process,
        which a thread takes on its first use of PyTorch's pool and keeps (OpenMP's count is per thread): threads
        that used the pool before keep theirs, threads that use it first after take ``n``. So it is called in the
        thread that runs the model: at start-up (and a managed node's configure) in the one that loads and warms
        up the model, before the worker of that configuration, a new thread, first runs it; for a live change in
        the worker, between frames. OpenCV's pool is process-wide."""
        torch.set_num_threads(n or self._default_threads[0])
        cv2.setNumThreads(n or self._default_threads[1])
        self._cpu_threads = n
        self._threads_in_use = (torch.get_num_threads(), cv2.getNumThreads())

    def wanted_outputs(self, cam: _Camera, s: Settings) -> set[str]:
        """Outputs enabled by parameter and, with ``lazy``, subscribed to; compressed copies (enabled with their
        image output) only while subscribed."""
        out = set()
        for name, param in OUTPUTS.items():
            if s[param] and (not s["lazy"] or cam.pubs[name].get_subscription_count() > 0):
                out.add(name)
        for name, (base, _) in COMPRESSED_OUTPUTS.items():
            pub = cam.pubs.get(name)   # (none without publish.compressed)
            if pub is not None and s[OUTPUTS[base]] and pub.get_subscription_count() > 0:
                out.add(name)
        return out

    def process(self, frames: list[_Frame], worker: Optional[threading.Thread] = None) -> None:
        """Run one batch of frames (at most one per camera) through every stage and publish.

        Uses one settings snapshot and one model set for the whole batch. Per-frame failures are
        counted by reason and logged (rate-limited); the node keeps going. ``worker``: the worker thread running it,
        which stops between stages once a cleanup has abandoned it (a forward pass that outlasted the cleanup's
        wait): from then on the node's state is the next configuration's, not this batch's to write.
        """
        with self._lock:
            s, m = self._settings, self._models
            if self._running_calibration is not None:
                # a depth model of other settings is loading: the running one serves on with its own calibration to
                # metres (depth.scale / depth.shift set since, e.g. with depth.variant, apply from the swap)
                s = s.replace(self._running_calibration)
        if s["cpu_threads"] != self._cpu_threads:
            self._set_cpu_threads(s["cpu_threads"])
        t0 = time.perf_counter()
        jobs = []
        # a pre-processor on the host needs every frame's host RGB; GPU ones upload the raw bytes
        host_pre = any(p is not None and p.backend != "cupy" for p in (m.depth_pre, m.segmentation_pre))
        for f in frames:
            wanted = self.wanted_outputs(f.camera, s)
            if m.depth is None:        # a task that is disabled (or not loaded) produces nothing
                self._warn_task_off("depth", f.camera, wanted, s)
                wanted -= set(_DEPTH_OUTPUTS)
            if m.segmentation is None:
                self._warn_task_off("segmentation", f.camera, wanted, s)
                wanted -= set(_SEG_OUTPUTS)
            if m.depth is not None and not wanted.isdisjoint(_METRIC_OUTPUTS) and not s["depth.align"] \
                    and _metric(m.depth.variant, s) is None:   # no metres to make: nor their outputs
                wanted -= _METRIC_OUTPUTS
                self._warn_once("no_metric", "depth and points need metric depth: use a metric variant "
                                "(dpt_hybrid_kitti, dpt_hybrid_nyu) or set depth.scale / depth.shift (python -m "
                                "dpt_ros.tools.calibrate_depth fits them from a depth camera)")
            if wanted and wanted <= _INFO_OUTPUTS and self._never_had_info(f.camera):
                # all it would publish needs a camera_info and none has come: the model is not run for nothing
                self._count_error("no_camera_info", f"no camera_info: {self._no_info_reason(f.camera, s)}; the model "
                                  f"is not run for this camera while {' and '.join(sorted(wanted))} (which need it) "
                                  f"are its only outputs subscribed", [f])
                continue
            uncalibrated = self._uncalibrated(f.camera, s) if wanted and wanted <= _INFO_OUTPUTS else None
            if uncalibrated is not None:   # (a driver without a calibration sends such a camera_info with every image)
                self._count_error("calibration", f"{uncalibrated}; the model is not run for this camera while "
                                  f"{' and '.join(sorted(wanted))} (which need a calibration) are its only outputs "
                                  f"subscribed", [f])
                continue
            if "points" in wanted and s["points.max_rate"] > 0.0 and not f.camera.points_throttle.admit(
                    f.rate_s, 1.0 / s["points.max_rate"]):   # this frame's cloud is not built
                wanted.discard("points")
                with self._lock:
                    f.camera.counts["throttled:points"] += 1
            needs_labels = _needs_labels(wanted, s)
            if not wanted:
                with self._lock:   # (unless the stop counted it dropped meanwhile: settled, counted once)
                    if not f.counted:
                        f.camera.counts["idle"] += 1
                        f.counted = True
                continue
            try:
                px = _Pixels(f.msg)
                for pre in (m.depth_pre, m.segmentation_pre):   # a size the network input refuses, before decoding
                    if pre is not None:
                        pre.input_size(*px.size)
                if host_pre:   # decoded now, not inside the pre-processing stage
                    px.rgb()
            except Exception as e:  # noqa: BLE001 - a decoder's own failure is this frame's, not the batch's
                known = isinstance(e, (pipeline.EncodingError, ValueError))
                self._count_error("encoding", f"{_topics([f])}: " + (str(e) if known else f"{type(e).__name__}: {e}"),
                                  [f])
                if "points" in wanted and s["points.max_rate"] > 0.0:   # no cloud: its turn goes to the next frame
                    f.camera.points_throttle.refund()
                continue
            if px.truncated:   # processed all the same, as image_transport's subscriber takes it
                self._count_error(
                    "truncated_jpeg", f"{_topics([f])}: JPEG of {px.truncated} bytes ends before its end-of-image "
                    "marker (FFD9): the message was cut short by its publisher, a relay or the recording (Wi-Fi). "
                    "Decoded as far as its data goes, the rest of the image (its last blocks, from the bottom right) "
                    "grey, and processed: the outputs there are of grey (check that the camera's own compressed "
                    "topic decodes whole, e.g. in rqt_image_view)", [f], partial=True, warn=True)
            f.camera.frame_size = px.size
            jobs.append(dict(frame=f, px=px, wanted=wanted, labels=needs_labels and m.segmentation is not None,
                             rate_limited_points="points" in wanted and s["points.max_rate"] > 0.0))
        if not jobs:
            return
        t1 = time.perf_counter()
        self._enter_stage("model", worker)   # pre-processing and the forward pass
        # on a GPU the forward passes are queued, not waited for: post-processing queues its kernels and copies
        # behind them while the device runs the model, and the model stage is their device time (CUDA events)
        passes: list[tuple[Any, Any]] = []
        try:
            self._infer(jobs, m, worker, passes)   # (takes out the frames it counted failed)
        except _Abandoned:
            raise
        except Exception as e:  # noqa: BLE001
            reason, text = self._failure("inference", e, m.device)
            self._count_error(reason, f"{_topics([j['frame'] for j in jobs])}: {text}", [j["frame"] for j in jobs])
            for j in jobs:   # no clouds: their turns go to the next frames
                if j["rate_limited_points"]:
                    j["frame"].camera.points_throttle.refund()
            return
        if not jobs:
            return
        t2 = time.perf_counter()
        self._enter_stage("postprocess", worker)
        messages = []
        for job in jobs:
            # on a GPU the worker first waits for the forward passes here: one hung past a cleanup's limit leaves it
            # in this loop, and the next frames' post-processing would use the next configuration's state (its
            # page-locked buffers, _pinned)
            if worker is not None and self._worker is not worker:
                raise _Abandoned()
            msgs = {}
            try:
                msgs = self._postprocess(job, s)
                messages.append((job, msgs))
            except Exception as e:  # noqa: BLE001
                reason, text = self._failure("postprocess", e, m.device)
                self._count_error(reason, f"{_topics([job['frame']])}: {text}", [job["frame"]])
            if job["rate_limited_points"] and "points" not in msgs:   # no cloud: it used none of points.max_rate
                job["frame"].camera.points_throttle.refund()
        if passes:
            # the forward passes end before the post-processing stage does (done already where a frame waited for
            # its host copies; not where no output needed device data, e.g. depth/camera_info alone), so that the
            # stages add up to the batch; an error the device reports for them fails the frames here, unpublished
            try:
                for _, end in passes:
                    end.synchronize()
            except Exception as e:  # noqa: BLE001
                passes = []   # (no device time to read: the stage split falls back to the wall clock's)
                reason, text = self._failure("postprocess", e, m.device)
                if messages:
                    self._count_error(reason, f"{_topics([job['frame'] for job, _ in messages])}: {text}",
                                      [job["frame"] for job, _ in messages])
                for job, msgs in messages:
                    if job["rate_limited_points"] and "points" in msgs:
                        job["frame"].camera.points_throttle.refund()
                messages = []
        t3 = time.perf_counter()
        self._enter_stage("publish", worker)
        with self._publish_lock:   # the point of no return: the stop closes the outputs under it
            if self._outputs_closed or (worker is not None and self._worker is not worker):
                return   # the stop counted this batch's frames dropped (before, it published them all the same)
            sent = []   # (job, the names of its outputs published)
            for job, msgs in messages:
                cam = job["frame"].camera
                failed = {name: e for name, msg in msgs.items()
                          if (e := self._publish_output(cam, name, msg)) is not None}
                published = [name for name in msgs if name not in failed]
                copies = bool(job.get("compress"))   # (they still go out: messages of their own, on their own topics)
                # every output failed, its compressed copies still to go: what the frame counts (processed and
                # incomplete:publish, or error:publish) waits for them (_settle_after_copies)
                after_copies = failed if failed and not published and copies else None
                if failed and after_copies is None:   # (before it is counted processed: counted once)
                    self._publish_failed(job["frame"], failed, bool(published), copies)
                if after_copies is not None:
                    job["after_copies"] = True   # (its age too waits for its copies)
                    sent.append((job, published))
                elif published or copies or not failed:   # (nothing of it to go out: counted error:publish)
                    with self._lock:   # counted as it goes out: the stop drops only what was not published
                        self._count_settled(job["frame"], "processed")
                        job["frame"].counted = True
                        for name in published:
                            cam.counts["out:" + name] += 1
                    sent.append((job, published))
                if job.get("compress"):   # (outputs of their own: a failure here is its copies', not the frame's)
                    try:
                        self._compressed.submit(cam, job["frame"].msg.header, job["compress"], s, bool(failed),
                                                (job["frame"], after_copies) if after_copies is not None else None)
                    except Exception as e:  # noqa: BLE001 - counted as the copies' own failure
                        self._compressed.failed(cam, {name: e for name, *_ in job["compress"]})
                        if after_copies is not None:
                            self._settle_after_copies(job["frame"], after_copies, False)
        t4 = time.perf_counter()
        pre_ms = sum(j["pre_s"] for j in jobs) * 1000.0
        model_ms, post_ms = (t2 - t1) * 1000.0 - pre_ms, (t3 - t2) * 1000.0
        if passes:   # the device's time for the forward passes; post-processing is the rest of the wall time
            model_ms = _device_ms(passes)
            post_ms = max(0.0, (t3 - t1) * 1000.0 - pre_ms - model_ms)
        now_ns = self.get_clock().now().nanoseconds
        sim_time = self.get_clock().ros_time_is_active   # use_sim_time, the clock /clock's
        with self._lock:
            if worker is not None and self._worker is not worker:
                return   # cleaned up while it published: the figures are the next configuration's
            self._batches += 1
            for stage, dt in zip(STAGES, ((t1 - t0) * 1000.0, pre_ms, model_ms, post_ms, (t4 - t3) * 1000.0)):
                self._stage_ms[stage].append(dt)
                self._stage_sums[stage] += dt
            done = time.monotonic()
            self._batch_done.append(done)
            first = ("first_output_s" not in self._startup and "ready_s" in self._startup
                     and any(published for _, published in sent))
            if first:   # (the first image: of the frames published, not one of the batch whose copies go out later)
                self._startup.update(first_output_s=done - self._started_at, first_batch_ms=(t4 - t0) * 1000.0,
                                     first_image_s=min(j["frame"].received for j, published in sent if published)
                                     - self._started_at)
                startup = dict(self._startup)
            odd_stamps, old_stamps = [], []
            # (counted processed as they were published; one none of whose outputs went out, once its copies did)
            for job, _ in sent:
                cam = job["frame"].camera
                stamp = conversions.stamp_ns(job["frame"].msg.header)
                if stamp > 0 and now_ns >= stamp and job["frame"].before_jump and now_ns >= job["frame"].clock_ns:
                    # no age to tell: published before the clock went back to its pass (on a GPU, within the 25 ms
                    # before the player's next /clock), its age would be the whole bag's length
                    pass
                elif stamp > 0 and now_ns >= stamp:
                    if not job.get("after_copies") or job["frame"].copies_out:
                        self._ages_ms.append((now_ns - stamp) / 1e6)
                        self._age_done.append(done)
                    else:   # nothing of it went out yet: an age only if a copy of it does (before, one all the same)
                        job["frame"].age_ms = (now_ns - stamp) / 1e6
                    # how old it already was when it arrived (the rest of its age is this node's own delay)
                    before_s = (now_ns - stamp) / 1e9 - (done - job["frame"].received)
                    if before_s > _OLD_STAMP_S and not sim_time:
                        old_stamps.append((cam, job["frame"].topic, before_s))
                elif stamp > 0 and now_ns < job["frame"].clock_ns:
                    # no age to tell, and nothing wrong: the clock went back while the frame was in the node (at each
                    # ros2 bag play --loop, the pass's last frames are ahead of the clock at the bag's start)
                    pass
                else:   # no age to tell: an unset or negative stamp (57+ years old) or one ahead of this clock would skew
                    # them all
                    odd_stamps.append((cam, job["frame"].topic, stamp))
                if not job["frame"].msg.header.frame_id:
                    odd_stamps.append((cam, job["frame"].topic, None))
        if first:   # how long a start-up takes until outputs flow, and where the time went (once per configuration)
            self.get_logger().info(
                f"first outputs published {startup['first_output_s']:.2f} s after {self._start_word()}: model loaded "
                f"and warmed up after {startup['ready_s']:.2f} s (warm-up passes {startup['warmup_s']:.2f} s), the "
                f"first image came at {startup['first_image_s']:.2f} s, its batch took "
                f"{startup['first_batch_ms']:.1f} ms (/diagnostics: startup.*)")
        # said once per camera: keyed by its name, not by its place in the list (a managed node's next configuration
        # may list other cameras)
        for cam, topic, before_s in old_stamps:   # (topic: the one the frame came on, not the camera's now)
            key = cam.topic("image")
            hours = f" ({before_s / 3600:.1f} h)" if before_s >= 3600 else ""
            self._warn_once(f"old:{key}", f"{topic}: frames stamped {before_s:.0f} s{hours} before they arrived, by "
                            "this node's clock (use_sim_time is false): recorded data played on the wall clock, or a "
                            "camera clock behind this one; /diagnostics' age figures include that, so they tell how "
                            "old the frames are, not this node's delay (the latency figures are its own). To replay a "
                            "bag on its own time: ros2 bag play my.bag --clock, with use_sim_time:=true")
        for cam, topic, stamp in odd_stamps:
            key = cam.topic("image")
            if stamp is None:
                self._warn_once(f"no_frame_id:{key}", f"{topic}: frames with an empty frame_id: the outputs "
                                "carry it (as every header), and neither tf nor RViz can place them; set the camera "
                                "driver's frame_id (its optical frame)")
            elif stamp == 0:
                self._warn_once(f"unstamped:{key}", f"{topic}: frames stamped 0 (the driver sets no time): "
                                "outputs carry that header, and /diagnostics' age figures leave them out")
            elif stamp < 0:   # (not "ahead of this node's clock": it is before 1970, whatever the clock says)
                self._warn_once(f"negative:{key}", f"{topic}: frames stamped {stamp / 1e9:.3f} s, a negative "
                                "time (before 1970: the driver's clock, or its conversion to a ROS stamp, is broken): "
                                "outputs carry that header, and /diagnostics' age figures leave them out; fix the "
                                "camera driver's time stamps")
            elif now_ns == 0:   # use_sim_time and no /clock message yet: every stamp is ahead of 0, none is wrong
                # ("ahead" stays free for a real offset later). Not said now: a bag player's first messages come before
                # its first /clock (ros2 bag play publishes it from 25 ms after its start, and after each --loop), so
                # every bag played right had a warning; _check_clock says it if /clock still has not come
                self._before_clock = (self._before_clock[0] + 1, topic)
            elif sim_time:   # /clock advances in steps: a frame stamped at its bag time may be past the last one
                self._warn_once(f"future:{key}", f"{topic}: frames stamped {_ms_text(stamp - now_ns)} "
                                "ahead of this node's clock, which is /clock's (use_sim_time): a bag player publishes "
                                "it in steps (ros2 bag play --clock: 40 Hz, i.e. up to 25 ms times --rate of the "
                                "bag's time between them; --clock 200 makes them finer), or the frames are not stamped "
                                "in the time /clock gives; /diagnostics' age figures leave them out")
            else:
                self._warn_once(f"future:{key}", f"{topic}: frames stamped {_ms_text(stamp - now_ns)} "
                                "ahead of this node's clock (clocks not synchronised, or use_sim_time differs): "
                                "/diagnostics' age figures leave them out")

    def _publish_output(self, cam: _Camera, name: str, msg: Any) -> Optional[Exception]:
        """Publish ``msg`` on the camera's output ``name`` (under ``_publish_lock``); None, or why it did not go out:
        the exception of a publish that raised (a message rclpy refuses, an rmw's failure), which costs that output
        alone (:meth:`_publish_failed`), not the frame's other outputs and the batch's other frames. Before, it left
        the batch: the frame's outputs after it and every later frame of the batch, other cameras' too, were lost,
        all counted error:internal. A publish that fails as the context shuts down raises: the worker leaves, as at
        any shutdown."""
        try:
            cam.pubs[name].publish(msg)
        except Exception as e:  # noqa: BLE001 - this output's failure: the others still go out
            if not self.context.ok():
                raise
            return e
        return None

    def _publish_failed(self, f: _Frame, failed: dict[str, Exception], published: bool, copies: bool,
                        after_copies: bool = False) -> None:
        """Count and say the outputs of frame ``f`` whose publish raised (``failed``: name -> exception), before the
        frame is counted processed (``published``: its other outputs went out; ``copies``: it has compressed copies,
        which are still handed to their threads): per output ``publish_failed:<name>``, and the frame
        ``incomplete:publish``, or ``error:publish`` when nothing of it goes out (before, also when its compressed
        copies still went out: counted error, said "none of its outputs was published"); the line names each output's
        topic and why (``after_copies``: said once its compressed copies were done, :meth:`_settle_after_copies`)."""
        with self._lock:
            for name in failed:
                f.camera.counts["publish_failed:" + name] += 1
        rest = ("its other outputs were published" if published else
                "its compressed copies were published" if copies else
                "none of its outputs was published" + (", nor its compressed copies" if after_copies else ""))
        self._count_error("publish", f"{_topics([f])}: {self._publish_failures(f.camera, failed)}; {rest} (if it "
                          "repeats, report it with this line)", [f], partial=published or copies)

    def _settle_after_copies(self, f: _Frame, failed: dict[str, Exception], copies_out: bool) -> None:
        """Count frame ``f``, every output of which failed to publish (``failed``: name -> exception), once its
        compressed copies are done (``copies_out``: one or more of them went out): ``processed`` and
        ``incomplete:publish`` if so, else ``error:publish``, not processed (before, counted processed and
        incomplete:publish when its copies were handed to their threads, though none of them went out either). Not
        counted when the stop counted it dropped. Its age (input stamp -> the batch's publish) counts in /diagnostics'
        ages only if processed (before, also when nothing of it went out)."""
        with self._lock:
            if f.counted:
                return
        self._publish_failed(f, failed, False, copies_out, after_copies=True)
        if copies_out:
            with self._lock:
                if not f.counted:
                    self._count_settled(f, "processed")
                    f.counted = True
                    f.copies_out = True   # (the worker, if it has not taken the frame's age yet, adds it)
                    # (not a frame of a configuration cleaned up since: the figures are the next one's)
                    if f.age_ms is not None and any(c is f.camera for c in self._cameras):
                        self._ages_ms.append(f.age_ms)
                        self._age_done.append(time.monotonic())

    def _publish_failures(self, cam: _Camera, failed: dict[str, Exception]) -> str:
        """The outputs of ``cam`` whose publish raised (``failed``: name -> exception), for a ``[publish]`` line."""
        return "; ".join(f"publishing {self.resolve_topic_name(cam.out_topics[name])} failed: {type(e).__name__}: {e}"
                         for name, e in failed.items())

    def _enter_stage(self, stage: str, worker: Optional[threading.Thread]) -> None:
        """Mark the worker's stage (/diagnostics' stuck-worker check), unless a cleanup abandoned ``worker``: then
        stop the batch (:class:`_Abandoned`), before it writes the next configuration's state."""
        with self._lock:
            if worker is not None and self._worker is not worker:
                raise _Abandoned()
            self._busy = (stage, time.monotonic())

    @staticmethod
    def _failure(stage: str, e: Exception, device: Optional[torch.device] = None) -> tuple[str, str]:
        """(reason, message) of a frame that failed in ``stage``. Out of device memory (PyTorch's or CuPy's
        allocator) is its own reason, and both caches (of ``device``) are released so that the next frame can
        succeed. A CUDA error the device cannot recover from in this process (an illegal memory access, a
        device-side assert, an uncorrectable ECC error) says that every later frame will fail until a restart."""
        if pipeline.is_out_of_memory(e):
            with outside_graph_capture():   # (a swap may be capturing the next model's graphs on the loader thread)
                pipeline.release_cached_memory(device)
            return "cuda_oom", f"CUDA out of memory in {stage}: {e}"
        if device is not None and device.type == "cuda" and pipeline.is_unrecoverable_device_error(e):
            return stage, (f"{type(e).__name__}: {e} -- a CUDA error this process cannot recover from: every later "
                           "frame on this GPU fails the same way (and a model load too) until the node is restarted "
                           "(a launch file's respawn=True does it); if it comes back after a restart, check "
                           "nvidia-smi and the kernel log (dmesg: Xid errors), and report it with this log")
        return stage, f"{type(e).__name__}: {e}"

    def _infer(self, jobs: list[dict], m: ModelSet, worker: Optional[threading.Thread] = None,
               passes: Optional[list] = None) -> list[dict]:
        """Pre-process and run the engines; frames with equal network shapes share one batch.

        Every task's pre-processing comes first, then every forward pass: on a GPU the pre-processing of all frames
        and tasks is waited for once (its copies and kernels are its own stage's), the passes are queued and not
        waited for, so a second task's pre-processing does not wait for the first task's model. Each pass on a CUDA
        device appends its (start, end) CUDA events to ``passes``.

        One task failing (say, the segmentation model out of GPU memory) leaves the other's outputs: its frames
        go on with what they have, counted incomplete:<reason>, and a frame left with nothing is counted an
        error (under its own failure's reason and message: one camera's frame out of memory at its shape is
        cuda_oom, another's failing otherwise is not) and taken out of ``jobs``, which may end empty."""
        failures, ready = [], {}
        selected = {}
        for task in ("depth", "segmentation"):
            if worker is not None and self._worker is not worker:   # abandoned: no next task's work
                raise _Abandoned()
            engine = getattr(m, task)
            selected[task] = [j for j in jobs if engine is not None and
                              (j["labels"] if task == "segmentation" else bool(j["wanted"] & set(_DEPTH_OUTPUTS)))]
            try:
                ready[task], failed = self._preprocess_task(task, selected[task], m)
                failures += [(task, e, lost) for e, lost in failed]
            except Exception as e:  # noqa: BLE001 - counted below, or by the caller
                failures.append((task, e, selected[task]))
        devices = {getattr(m, f"{task}_pre").device for task, groups in ready.items() if groups}
        if any(d.type == "cuda" for d in devices):
            # one wait for every frame's and task's GPU pre-processing (their copies and kernels are this stage's,
            # not the model's), charged to the first frame: the stage is the sum of its frames'
            t = time.perf_counter()
            try:
                for d in devices:
                    if d.type == "cuda":
                        _wait_for_stream(d)
            except Exception as e:  # noqa: BLE001 - an error the device reports for the pre-processing
                failures += [(task, e, [j for group in groups.values() for j, _ in group]) for task, groups in
                             ready.items()]
                ready = {}
            finally:
                jobs[0]["pre_s"] = jobs[0].get("pre_s", 0.0) + time.perf_counter() - t
        for task, groups in ready.items():
            if worker is not None and self._worker is not worker:
                raise _Abandoned()
            try:
                failures += [(task, e, lost) for e, lost in self._run_task(task, groups, m, passes)]
            except Exception as e:  # noqa: BLE001 - counted below, or by the caller
                failures.append((task, e, [j for j in selected[task] if task not in j.get("variant", {})]))
        for j in jobs:
            j.setdefault("pre_s", 0.0)
            j.setdefault("net", {})
        for task, e, failed in failures:   # each with its own reason and message, also when no frame is left
            failed = [j for j in failed if any(j is k for k in jobs)]   # (not one already counted lost)
            reason, text = self._failure("inference", e, m.device)
            kept = [j["frame"] for j in failed if j["net"]]
            if kept:
                self._count_error(reason, f"{_topics(kept)}: {task} model: {text}; the frame's other outputs are "
                                  "published", kept, partial=True)
            lost = [j for j in failed if not j["net"]]
            if lost:
                self._count_error(reason, f"{_topics([j['frame'] for j in lost])}: {task} model: {text}",
                                  [j["frame"] for j in lost])
                for j in lost:
                    if j["rate_limited_points"]:   # no cloud: its turn goes to the next frame
                        j["frame"].camera.points_throttle.refund()
                jobs[:] = [j for j in jobs if not any(j is k for k in lost)]
        return jobs

    def _preprocess_task(self, task: str, selected: list[dict],
                         m: ModelSet) -> tuple[dict[tuple, list], list[tuple[Exception, list[dict]]]]:
        """One task's pre-processing of the ``selected`` jobs: their network inputs grouped by shape, and the
        failures (a frame whose pre-processing failed, with its job)."""
        pre = getattr(m, f"{task}_pre")
        groups: dict[tuple, list] = {}
        failures = []
        for j in selected:
            t = time.perf_counter()
            try:
                # one upload per frame (GPU pre-processing), shared by both tasks and the cloud colours:
                # the raw bytes, decoded on the device (a bgr8 frame's host RGB is a strided view whose
                # contiguous copy would cost ~1 ms at 640x480 on the CPU), or the host RGB (compressed input)
                where = (pre.backend, pre.device)
                if j.get("rgb_in_where") != where:
                    px = j["px"]
                    src = px.view if pre.backend == "cupy" and px.view is not None else px.rgb()
                    j["rgb_in"], j["rgb_in_where"] = pre.upload(src), where
                x = pre(j["rgb_in"])   # (on a GPU queued; _infer waits for it)
            except Exception as e:  # noqa: BLE001 - this frame's, counted by the caller
                failures.append((e, [j]))
                continue
            finally:
                j["pre_s"] = j.get("pre_s", 0.0) + time.perf_counter() - t
            groups.setdefault(tuple(x.shape[2:]), []).append((j, x))
        if groups:   # every shape of this batch (cameras of other aspect ratios run at shapes of their own), with the
            # pre-processor that made them: a swapped-in model's size is not reported with the last model's shapes
            # (weak: the old one's buffers are not held for it)
            self._net_inputs[task] = (weakref.ref(pre), ", ".join("x".join(str(v) for v in shape) for shape in groups))
        return groups, failures

    @staticmethod
    def _run_task(task: str, groups: dict[tuple, list], m: ModelSet,
                  passes: Optional[list]) -> list[tuple[Exception, list[dict]]]:
        """One task's forward passes, one per network shape (``net``, ``variant`` of each job). Returns the
        failures, each with the frames it cost: those of one shape whose pass failed (say, out of GPU memory at the
        larger shape); frames of the other shapes still run."""
        engine = getattr(m, task)
        failures = []
        for group in groups.values():
            try:
                batch = torch.cat([x for _, x in group]) if len(group) > 1 else group[0][1]
                timed = passes is not None and engine.device.type == "cuda"
                if timed:
                    stream = _current_stream(engine.device)
                    start = torch.cuda.Event(enable_timing=True)
                    start.record(stream)
                out = engine.run(batch)
                if timed:
                    end = torch.cuda.Event(enable_timing=True)
                    end.record(stream)
                    passes.append((start, end))
            except Exception as e:  # noqa: BLE001 - these frames', counted by the caller
                failures.append((e, [j for j, _ in group]))
                continue
            for i, (j, _) in enumerate(group):
                j.setdefault("net", {}).update({k: v[i:i + 1] for k, v in out.items()})
                j.setdefault("variant", {})[task] = engine.variant
        return failures

    def _postprocess(self, job: dict, s: Settings) -> dict[str, Any]:
        """Network outputs of one frame -> messages, all carrying the input header.

        Results stay where the model ran until a message needs host bytes; on a GPU every such
        device->host copy of the frame goes into a reused page-locked buffer without blocking, the
        cloud is built on the GPU from the device depth, colours and labels, and the host waits
        once. Each output is then copied once more, into the message's byte array.
        """
        f: _Frame = job["frame"]
        header = f.msg.header
        px, wanted, net = job["px"], job["wanted"], job["net"]
        # the image outputs to make: those published and those a wanted compressed copy encodes
        needed = wanted | {COMPRESSED_OUTPUTS[n][0] for n in wanted.intersection(COMPRESSED_OUTPUTS)}
        h, w = px.size
        host = _HostCopies(self._pinned)
        depth_t = labels_t = mm_t = None
        if "logits" in net:
            labels_t = pipeline.upsampled_labels(net["logits"], (h, w))[0]
        if "inverse_depth" in net:
            # stays where the model ran (GPU or CPU) until a host copy is needed for a message
            variant = job["variant"]["depth"]
            inv_t = pipeline.upsample(net["inverse_depth"], (h, w))[0]
            if not wanted.isdisjoint(_INVERSE_OUTPUTS):
                host.request("inverse_depth", inv_t)
            aligned = None
            if s["depth.align"] and not wanted.isdisjoint(_METRIC_OUTPUTS):
                aligned = self._align(f, inv_t, s)
            metric = aligned or _metric(variant, s)
            if metric is not None and not wanted.isdisjoint(_METRIC_OUTPUTS):
                if aligned is None and s["depth.scale"] == 0.0 and "depth" in net:
                    # metric variant: upsample the model's metres, as the official code does
                    depth_t = pipeline.upsample(net["depth"], (h, w))[0]
                else:
                    depth_t = pipeline.metric_from_inverse(inv_t, metric[0], metric[1])
                # in place unless it is the model's own output (an inference tensor: camera at network size)
                depth_t = pipeline.apply_depth_range(depth_t, s["depth.min"], s["depth.max"],
                                                     inplace=not depth_t.is_inference())
                depth_t = self._exclude_from_depth(f, depth_t, labels_t, s)
                if depth_t is not None and "depth" in needed and s["depth.encoding"] == "16UC1":
                    mm_t = pipeline.depth_to_millimetres(depth_t)
                    host.request("depth_mm", mm_t)
                elif depth_t is not None and "depth" in needed:
                    host.request("depth", depth_t)
        intr = info = None
        if depth_t is not None and not wanted.isdisjoint(_INFO_OUTPUTS):
            info = self._camera_info(f, s)
            key = _calibration_key(info, s["camera_info.rectified"], w, h) if info is not None else None
            cached = f.camera.calibration_cache
            if key is not None and cached is not None and cached[0] == key:
                intr = cached[1]
            elif info is not None:
                try:
                    fields = conversions.camera_info_fields(info)
                    if fields["width"] <= 0 or fields["height"] <= 0:
                        self._take_frame_size(f.camera, fields, w, h)
                    calib = pipeline.Intrinsics.from_camera_info(**fields, rectified=s["camera_info.rectified"])
                    intr = calib.scaled_to(w, h)
                    f.camera.calibration_cache = (key, intr, {})
                    self._warn_if_raw(f.topic, info, s)
                    sx, sy = w / calib.width, h / calib.height
                    source, _ = self._info_source(f.camera, info, f.calibration_url)
                    size, binned = _info_size(fields, calib)
                    sizes = (source, calib.width, calib.height, w, h)   # (said once per camera, source and sizes)
                    if abs(sx / sy - 1.0) <= 0.01 and (sx, sy) != (1.0, 1.0) and f.camera.info_scale_said != sizes:
                        self.get_logger().info(
                            f"{source} describes a {size} image{binned}, the frames are {w}x{h}: the "
                            f"intrinsics are scaled by {sx:.4g} (depth/camera_info publishes them, for consumers of "
                            f"depth)")
                    f.camera.info_scale_said = sizes
                    if abs(sx / sy - 1.0) > 0.01:
                        source, from_file = self._info_source(f.camera, info, f.calibration_url)
                        fix = ("If this file is of another camera or resolution, set camera_info.url to the "
                               "calibration of these images" if from_file else "If this camera_info belongs to "
                               "another stream or resolution, remap camera_info to the one of these images")
                        self._warn_once(f"aspect:{source}", (
                            f"{source} describes a {size} image{binned} but the frames are {w}x{h}, "
                            f"another aspect ratio: the intrinsics are scaled per axis (x {sx:.4g}, y {sy:.4g}), as "
                            f"for an anamorphic resize. {fix} (depth/camera_info and points use it). Said once "
                            f"per camera."))
                except pipeline.CalibrationError as e:
                    source, from_file = self._info_source(f.camera, info, f.calibration_url)
                    fix = _UNCALIBRATED_FIX if isinstance(e, pipeline.UncalibratedError) and not from_file else ""
                    self._count_error("calibration", f"{source}: {e}{fix}; depth/camera_info and points skipped", [f],
                                      partial=True)
        want_cloud = intr is not None and "points" in wanted
        exclude = params.class_labels(s["points.exclude_classes"]) if want_cloud else ()
        if exclude and labels_t is None:   # publishing the classes the user asked to leave out is no option
            self._count_error("exclude_classes", "points.exclude_classes needs segmentation labels: set "
                              "segmentation.variant (and segmentation.weights); no points published", [f], partial=True)
            want_cloud = False
        cloud_labels = want_cloud and s["points.label"]
        if cloud_labels and labels_t is None:
            # (a WARN, as color_source's: the cloud is published, without one field; exclude_classes' is an ERROR,
            # no cloud at all)
            self._count_error("label", "points.label needs segmentation labels: set segmentation.variant (and "
                              "segmentation.weights); points published without the label field", [f], partial=True,
                              warn=True)
            cloud_labels = False
        # points.color_source segmentation: each point in its class's palette colour instead of the image's
        class_colors = want_cloud and s["points.color"] and s["points.color_source"] == "segmentation"
        if class_colors and labels_t is None:
            self._count_error("color_source", "points.color_source=segmentation needs segmentation labels: set "
                              "segmentation.variant (and segmentation.weights); points coloured from the image", [f],
                              partial=True, warn=True)
            class_colors = False
        cloud_on_device = want_cloud and depth_t.device.type == "cuda" and pipeline.cupy_available(depth_t.device)
        if labels_t is not None and (not needed.isdisjoint(_SEG_OUTPUTS) or
                                     (want_cloud and (cloud_labels or class_colors) and not cloud_on_device)):
            host.request("labels", labels_t)
        cloud_depth_t = depth_t
        if want_cloud and s["points.edge_filter"] > 0:   # the cloud only: depth stays as the model made it
            cloud_depth_t = pipeline.drop_depth_edges(depth_t, s["points.edge_filter"])
        if want_cloud and exclude:
            cloud_depth_t = pipeline.drop_labels(cloud_depth_t, labels_t, exclude)
        if want_cloud and s["depth.encoding"] == "16UC1":
            # the cloud of the depth as published: whole millimetres, none past 65.535 m (what depth_image_proc
            # makes of the 16UC1 image)
            cloud_depth_t = pipeline.metres_from_millimetres(
                mm_t if mm_t is not None and cloud_depth_t is depth_t else pipeline.depth_to_millimetres(cloud_depth_t))
        if want_cloud and not cloud_on_device:
            host.request("cloud_depth" if cloud_depth_t is not depth_t else "depth", cloud_depth_t)
        cloud = None
        solves = (distortion.stats["grids"], distortion.stats["seconds"])   # (whether this cloud solves its rays)
        if cloud_on_device:
            # back-projection on the GPU; its blocking copy also completes the copies requested above
            rgb = None
            if class_colors:
                rgb = pipeline.colorize_labels(pipeline.tensor_to_array(labels_t))
            elif s["points.color"]:
                rgb = job["rgb_in"] if "rgb_in" in job else px.rgb()
            cloud = pipeline.build_cloud(pipeline.tensor_to_array(cloud_depth_t), intr, rgb=rgb,
                                         labels=pipeline.tensor_to_array(labels_t) if cloud_labels else None,
                                         stride=s["points.stride"], organized=s["points.organized"],
                                         reuse_buffer=True)   # serialised below, before the next frame's cloud
        host.wait()
        if depth_t is not None:
            self._say_if_no_valid_depth(f, host, s)
        images: dict[str, tuple[np.ndarray, str]] = {}   # image output -> (values, encoding)
        if "inverse_depth" in host:
            inv = host["inverse_depth"]
            images["inverse_depth"] = (inv, "32FC1")
            if "inverse_depth/colored" in needed:
                images["inverse_depth/colored"] = (self._colorize(f.camera, inv, s), "rgb8")
        if depth_t is not None and "depth" in needed:
            images["depth"] = (host["depth_mm"], "16UC1") if "depth_mm" in host else (host["depth"], "32FC1")
        if "labels" in host:
            labels = host["labels"]
            images["segmentation"] = (labels, "mono8" if labels.dtype == np.uint8 else "mono16")
            if "segmentation/colored" in needed:
                images["segmentation/colored"] = (pipeline.overlay(px.rgb(), pipeline.colorize_labels(labels),
                                                                   s["segmentation.overlay_alpha"]), "rgb8")
        out: dict[str, Any] = {name: conversions.image_output(header, *images[name])
                               for name in wanted.intersection(images)}
        # compressed copies: encoded on their own thread (_CompressedCopies); the host arrays may be pinned
        # buffers that the next frame reuses, so the copies get arrays of their own
        job["compress"] = [(name, np.array(images[base][0]), images[base][1], codec)
                           for name, (base, codec) in COMPRESSED_OUTPUTS.items() if name in wanted and base in images]
        if intr is not None:
            if "depth/camera_info" in wanted:
                out["depth/camera_info"] = _info_output(f.camera, header, intr, w, h,
                                                        None if s["camera_info.rectified"] else info)
            if want_cloud:
                if cloud is None:
                    cloud_depth = host["cloud_depth"] if "cloud_depth" in host else host["depth"]
                    rgb = None
                    if class_colors:
                        rgb = pipeline.colorize_labels(host["labels"])
                    elif s["points.color"]:
                        rgb = px.rgb()
                    cloud = pipeline.build_cloud(cloud_depth, intr, rgb=rgb,
                                                 labels=host["labels"] if cloud_labels else None,
                                                 stride=s["points.stride"], organized=s["points.organized"],
                                                 reuse_buffer=True)   # serialised just below
                out["points"] = conversions.cloud_output(header, cloud)
                self._note_lens_solve(f, intr, solves)
        return out

    def _note_lens_solve(self, f: _Frame, intr: pipeline.Intrinsics, before: tuple[int, float]) -> None:
        """After frame ``f``'s cloud of ``intr``: whether it solved its lens rays afresh (a raw camera's,
        camera_info.rectified false: tenths of a second at 1080p, on the worker, so every camera's frames wait), by
        distortion.stats since ``before``. Counted per camera (lens_rays.solved, lens_rays.solve_ms); a camera
        whose calibration changes with every frame (a zooming lens, a driver republishing a jittered
        auto-calibration) solves them for every cloud, and its output rate falls with no error: warned when
        _LENS_SOLVES of its last _LENS_WINDOW clouds did, with what changed and what to do, named as of the frame (its
        topic and calibration's source: camera_info.url may be set or cleared meanwhile)."""
        cam = f.camera
        solved = distortion.stats["grids"] - before[0]
        ms = (distortion.stats["seconds"] - before[1]) * 1000.0 if solved else 0.0
        previous, cam.lens_intrinsics = cam.lens_intrinsics, intr
        cam.lens_solves.append(ms)
        if not solved:
            return
        with self._lock:
            cam.counts["lens_rays:solved"] += 1
            cam.counts["lens_rays:solve_ms"] += round(ms)
        slow = [t for t in cam.lens_solves if t > 0.0]
        now = time.monotonic()
        if len(slow) < _LENS_SOLVES or now - cam.lens_warned < _LENS_WARN_PERIOD_S:
            return
        cam.lens_warned = now
        changed = [] if previous is None else [
            name for name, a, b in (("fx", previous.fx, intr.fx), ("fy", previous.fy, intr.fy),
                                    ("cx", previous.cx, intr.cx), ("cy", previous.cy, intr.cy),
                                    ("D", previous.d, intr.d), ("distortion_model", previous.distortion_model,
                                                                intr.distortion_model),
                                    ("size", (previous.width, previous.height), (intr.width, intr.height)))
            if a != b]
        source = "camera_info.url" if f.calibration_url else self.resolve_topic_name(cam.topic("camera_info"))
        why = (f"its calibration changes from frame to frame ({', '.join(changed)} of {source} differ from the "
               f"last cloud's)" if changed else
               f"the solved rays of {distortion.RAYS_CALIBRATIONS} calibrations, at most "
               f"{distortion.RAYS_BUDGET_BYTES // 2**20} MiB of them (the newest always), are kept, for all cameras "
               f"and points.stride values together, and more are in use")
        self.get_logger().warning(
            f"{_topics([f])}: the lens rays of points (camera_info.rectified false: "
            f"{intr.distortion_model} distortion) were solved afresh for {len(slow)} of its last "
            f"{len(cam.lens_solves)} clouds, {sum(slow) / len(slow):.0f} ms each, which the worker spends before every camera's next "
            f"frame: {why}. A driver republishing a jittered auto-calibration: give the node one fixed calibration "
            f"(camera_info.url, the camera's calibration file); a zooming lens: rectify the image upstream "
            f"(image_proc) and set camera_info.rectified true, or lower the cost with a larger points.stride (4x "
            f"fewer rays at 2 than at 1) or points.max_rate. Counted per camera as lens_rays.solved in "
            f"/diagnostics; said again every {_LENS_WARN_PERIOD_S:.0f} s while so.")

    def _take_frame_size(self, cam: _Camera, fields: dict, w: int, h: int) -> None:
        """A camera_info without an image size (width or height 0, or both; some drivers fill only K / P): its
        intrinsics are taken for the frames as they come, ``w`` x ``h`` (the size they imply at the info's binning and
        ROI), without scaling, as depth_image_proc uses them; said once per camera."""
        bx, by = max(fields["binning_x"], 1), max(fields["binning_y"], 1)
        x0, y0, rh, rw = fields["roi"]
        full = (x0 + rw if rw else w * bx, y0 + rh if rh else h * by)
        said = f"{fields['width']}x{fields['height']}"
        # (both sides: one side alone, 40x0 for 80x60 frames, scaled fx by 2 and fy by 1, though said unscaled)
        fields["width"], fields["height"] = full
        topic = self.resolve_topic_name(cam.topic("camera_info"))   # (a calibration file always has a size)
        self._warn_once(f"no_size:{topic}", (
            f"{topic} gives no image size ({said}): its K / P are taken as they are for the {w}x{h} frames (as "
            f"depth_image_proc uses them), i.e. as a calibration of a {fields['width']}x{fields['height']} image; "
            f"if the frames are resized from the calibrated resolution, set width and height in the camera's "
            f"calibration so that the intrinsics can be scaled. Said once per camera."))

    def _exclude_from_depth(self, f: _Frame, depth_t: torch.Tensor, labels_t: Optional[torch.Tensor],
                            s: Settings) -> Optional[torch.Tensor]:
        """depth.exclude_classes: the depth with NaN (no measurement) on those classes; None, counted as
        incomplete:exclude_classes, when the frame has no labels (no depth rather than one with them)."""
        drop = params.class_labels(s["depth.exclude_classes"])
        if not drop:
            return depth_t
        if labels_t is None:
            self._count_error("exclude_classes", "depth.exclude_classes needs segmentation labels: set "
                              "segmentation.variant (and segmentation.weights); no depth or points published", [f],
                              partial=True)
            return None
        return pipeline.drop_labels(depth_t, labels_t, drop)

    def _align(self, f: _Frame, inv_t: torch.Tensor, s: Settings) -> Optional[tuple[float, float]]:
        """depth.align: (scale, shift) fitted to the frame's reference depth (``1 / reference = scale *
        inverse_depth + shift``, trimmed least squares over every _ALIGN_STRIDE-th pixel), or None, counted as
        incomplete:alignment with the reason, when there is no usable reference or fit."""
        cam = f.camera
        topic = self._reference_topic(cam, s)   # (the frame's: depth.align_transport may be set while it is in the worker)
        stamp = conversions.stamp_ns(f.msg.header)
        try:
            # (_on_reference offers each reference that comes to this frame, which is in the worker)
            _, refs = self._await(cam, stamp, cam.references, "reference_waited_in_vain",
                                  lambda held: _reference_settled(f.reference, stamp, held), received=f.received)
            with self._wake:
                ref = f.reference   # the nearest offered: after a wait in vain, an older one within the tolerance too
            held = [t for t, _ in refs]
            if ref is None and "depth_reference" not in cam.subs:
                # depth.align was set meanwhile (off: unsubscribed, its references forgotten; on: the subscription
                # is made just after the settings): no depth camera or remap is at fault, no error; the frame goes
                # out as without alignment
                return None
            if ref is None:
                publishers = self.count_publishers(topic) if not held else 0
                raise ValueError(self._no_reference(cam, topic, stamp, held, publishers, s,
                                                    cam.reference_on_image_clock))
            self._reference_frame(cam, topic, f.msg.header.frame_id, ref[1].header.frame_id)
            encoding, ref = conversions.reference_metres(ref[1])   # (a compressedDepth one decoded here: once)
            ref = pipeline.reference_to_size(ref, tuple(inv_t.shape))
            step = _ALIGN_STRIDE
            x = inv_t[::step, ::step].float().cpu().numpy()
            # every measured pixel (finite, > 0): depth.min / depth.max clip the published depth after the fit, they
            # do not choose the reference's pixels (a scene beyond depth.max is all +Inf, not a frame without depth)
            xs, ys = pipeline.inverse_depth_pairs(x, ref[::step, ::step], 0.0, math.inf, stride=1)
            if xs.size < pipeline.MIN_FIT_PIXELS:   # (said here with what the node samples and what to do)
                raise ValueError(
                    f"only {xs.size} of the {x.size} pixels the fit samples (every {step}th in both directions) have a "
                    f"reference depth (finite, above 0); at least {pipeline.MIN_FIT_PIXELS} are needed: the depth "
                    f"camera measured next to nothing of this view (0 or NaN: beyond its range or nearer than its "
                    f"minimum, glass, a covered lens, its first frames after start-up, or depth not registered to this "
                    f"camera); {_ALIGN_FALLBACK}")
            if encoding == "32FC1" and (median := float(np.median(1.0 / ys))) > pipeline.MAX_REFERENCE_M:
                raise ValueError(
                    f"the reference's median depth is {median:.4g} m (32FC1), beyond {pipeline.MAX_REFERENCE_M:g} m, "
                    f"more than any depth camera measures: millimetres in a 32FC1 image, it seems (REP 118: 32FC1 depth is "
                    f"in metres; 16UC1 is the millimetre encoding); fitted, every depth would be 1000x too far. "
                    f"Publish the reference as 32FC1 metres, or as 16UC1 millimetres (a depth driver's raw depth; a "
                    f"bag converted to 32FC1 without dividing by 1000: convert it again); {_ALIGN_FALLBACK}")
            try:
                scale, shift = pipeline.fit_scale_shift(xs, ys)
            except pipeline.CalibrationFitError as e:   # (a view that cannot be fitted, e.g. a flat wall ahead)
                raise ValueError(f"{e}; {_ALIGN_FALLBACK}") from None
            if not (scale > 0.0 and math.isfinite(scale) and math.isfinite(shift)):
                rule, _ = _remap_example(cam, "depth_reference", "/camera/aligned_depth_to_color/image_raw")
                raise ValueError(
                    f"fitted scale {scale:.4g} is not positive: the reference does not get nearer where the model's "
                    f"inverse depth grows. If so on every frame, {topic} is not the depth of this camera's view: remap "
                    f"it to the depth camera's depth registered to this camera ({rule}), a depth image (32FC1 metres "
                    f"or 16UC1 millimetres), not a disparity or inverse depth image nor another camera's; with random "
                    f"weights the model's depth follows no view. If only now and then, the model and the depth camera "
                    f"disagree on that view; {_ALIGN_FALLBACK}")
        except ValueError as e:   # CalibrationFitError included
            self._count_error("alignment", f"{topic}: {e}", [f], partial=True)
            return None
        with self._wake:   # (_subscribe's lock: a fit that ends after depth.align went off is not kept)
            if "depth_reference" in cam.subs:
                cam.alignment = (scale, shift, int(xs.size))
        return scale, shift

    def _reference_frame(self, cam: _Camera, topic: str, image_frame: str, reference_frame: str) -> None:
        """depth.align: a frame's reference whose frame_id is not the image's (both set; a leading '/' aside) is most
        likely the depth camera's own, unregistered depth (registered depth carries the colour camera's frame_id),
        whose pixels are not the image's: a fit to it is wrong. Warned once per camera, and the camera's status says so
        while its references are so. Not refused: a driver may register its depth and name another frame."""
        problem = None
        if image_frame.lstrip("/") and reference_frame.lstrip("/") and \
                image_frame.lstrip("/") != reference_frame.lstrip("/"):
            rule, launch = _remap_example(cam, "depth_reference", "/camera/aligned_depth_to_color/image_raw")
            problem = (f"frame_id {reference_frame!r} is not the images' {image_frame!r}: depth registered (aligned) "
                       f"to this camera carries the images' frame_id, so this is most likely the depth camera's own "
                       f"depth (e.g. /camera/depth/image_rect_raw), whose pixels do not lie on the image's, and the "
                       f"fitted depth is wrong. Remap depth_reference to the depth registered to this camera, e.g. "
                       f"{rule} ({launch + '; ' if launch else ''}a RealSense: align_depth.enable:=true). If it is "
                       f"registered and its driver names another frame, the frames are fitted as they are")
            # (keyed by the camera's name, not its place in the list: a managed node's next configuration may list
            # other cameras)
            self._warn_once(f"reference_frame:{cam.topic('depth_reference')}",
                            f"{topic}: {problem}. Said once per camera.")
        with self._wake:   # (_subscribe's lock: not left behind for a later subscription)
            if "depth_reference" in cam.subs:
                cam.reference_problem = problem

    def _no_reference(self, cam: _Camera, topic: str, stamp: int, held: list[int], publishers: int, s: Settings,
                      on_image_clock: bool = False) -> str:
        """Why a frame of ``stamp`` has no reference depth, given the stamps of the references ``held`` and the
        number of ``publishers`` on ``topic``: none came and nothing publishes there (not remapped, or no depth
        camera for this one), none came yet from the publishers there (at start-up: the first is on its way), or how
        far the nearest one is (more than 1 s older, when the last came stamped as the images then were
        (``on_image_clock``): the depth camera has stopped, not another clock; more than 1 s newer: once, a looped bag's
        first frame, else another clock)."""
        tolerance = s["depth.align_tolerance"]
        compressed = s["depth.align_transport"] == "compressedDepth"
        if not held and not publishers:
            # the depth camera is there, in the other transport (a bag or a Wi-Fi robot with only its compressedDepth)
            other = self._other_transport(topic, "/compressedDepth", compressed, "depth camera",
                                          "depth.align_transport", "depth_reference_transport")
            if other:
                return f"nothing received on {topic} since it was subscribed, and nothing publishes there, but {other}"
            rule, launch = _remap_example(cam, "depth_reference", "/camera/aligned_depth_to_color/image_raw")
            return (f"nothing received on {topic} since it was subscribed, and nothing publishes there: remap "
                    f"{cam.topic('depth_reference')} to the depth of this camera's view, e.g. {rule} "
                    f"({launch + '; ' if launch else ''}a camera without one has no aligned depth)")
        wanted = f"sensor_msgs/msg/{'CompressedImage' if compressed else 'Image'}"
        types = "" if held else self._types_instead(topic, wanted)
        if types:   # (DDS matches none of another type's publishers to this subscription, silently)
            text = (f"nothing received on {topic}: its {publishers} publisher(s) are of type {types}, which this "
                    f"subscription ({wanted}, depth.align_transport:={s['depth.align_transport']}) does not receive: ")
            if compressed and "sensor_msgs/msg/Image" in types.split(", "):
                return text + "it is a raw depth topic: set depth.align_transport:=raw"
            if not compressed and "sensor_msgs/msg/CompressedImage" in types.split(", ") and \
                    topic.endswith("/compressedDepth"):
                rule = _remap_example(cam, "depth_reference", topic.removesuffix("/compressedDepth"))[0]
                return text + (f"it is a compressedDepth transport: set depth.align_transport:=compressedDepth and "
                               f"remap depth_reference to its base topic ({rule}; the node adds /compressedDepth, as "
                               f"image_transport does)")
            return text + (f"remap {cam.topic('depth_reference')} to the depth camera's registered depth topic, "
                           f"e.g. /camera/aligned_depth_to_color/image_raw")
        if not held:   # (a frame just after subscribing, before the depth camera's first message: no remap is wrong)
            return (f"nothing received on {topic} yet from its {publishers} publisher(s): at start-up the first "
                    f"reference is most likely on its way; if this persists, check that the depth camera publishes "
                    f"there")
        nearest = min(held, key=lambda t: abs(t - stamp))
        dt = (nearest - stamp) / 1e9
        text = (f"no reference depth on {topic} within depth.align_tolerance ({tolerance:g} s) of the image stamp: "
                f"the nearest of the {len(held)} last received is {abs(dt):.3g} s {'newer' if dt > 0 else 'older'}")
        # more than 1 s apart on every frame: another clock, or an offset that large, which a tolerance within its
        # range (up to 10 s) takes in (one wait in vain, then none: _keep)
        most = params.SPECS["depth.align_tolerance"].float_range[1]
        remedy = ("Stamp the depth as the images are (one time source for both drivers)" +
                  (f", or, if it is that far from them on every frame, raise depth.align_tolerance above "
                   f"{abs(dt):.3g} s" if float(f"{abs(dt):.3g}") < most else
                   f"; an offset of {most:g} s or more is beyond depth.align_tolerance's range"))
        if dt < -1.0 and on_image_clock:   # (the last came stamped as the images then were)
            text += (f": the depth camera has stopped (or sends less than once a second) while the images go on; "
                     f"check its publisher (ros2 topic hz {topic})")
        elif dt > 1.0:   # (as camera_info's: the frame may be a looped bag's first, the references of its last pass)
            text += (f" (if only once: the images' stamps went back, as at each ros2 bag play --loop, and the frame's "
                     f"own did not come within {self._wait_s() * 1e3:.0f} ms; if on every frame: are the image and "
                     f"the depth camera stamped by one clock? {remedy})")
        elif dt < -1.0:
            text += f" (are the image and the depth camera stamped by one clock? {remedy})"
        elif dt > 0:   # (a newer one shows that the frame's own was passed: not waited for)
            text += (f" (if only now and then, the frame's own was lost; if so on every frame, the depth camera stamps "
                     f"its depth that far after the images, or is not synchronised with them: raise "
                     f"depth.align_tolerance above {abs(dt):.3g} s, or stamp the depth as the images are)")
        elif dt < 0:
            text += (f" (the frame's own did not come within the {self._wait_s() * 1e3:.0f} ms the node waits for it, "
                     f"or the last such wait of this camera ran out; the depth camera's may be lost, or slower than the "
                     f"images: then raise the tolerance; if so on every frame, the depth camera stamps that far before "
                     f"the images, and the node no longer waits for it: raise depth.align_tolerance above "
                     f"{abs(dt):.3g} s, or stamp the depth as the images are)")
        return text

    def _colorize(self, cam: _Camera, inv: np.ndarray, s: Settings) -> np.ndarray:
        if s["colormap_range"] == "fixed":
            lo, hi = s["colormap_min"], s["colormap_max"]
        else:
            rr = cam.colormap_range   # read once: a parameter change may reset it from another thread
            if rr is None:
                rr = cam.colormap_range = pipeline.RunningRange()
            lo, hi = rr.update(inv)
        return pipeline.colorize(inv, s["colormap"], lo, hi)

    def _await(self, cam: _Camera, stamp: int, buffer: collections.deque, in_vain: str,
               match: Callable[[list], Any], since: float = -math.inf, *, received: float) -> tuple[Any, list]:
        """(``match(held)``, ``held``): what a frame of ``stamp`` gets from the camera's ``buffer`` of (stamp, message)
        received on a topic of their own (its camera_info, or its depth.align references), waiting up to
        ``_INFO_WAIT_S`` for a match while it may still be on its way: while nothing in ``buffer`` is as new as the
        frame (they come in stamp order, so a newer one shows that the frame's own has been passed; one more than
        ``_STAMP_JUMP_S`` newer does not count: it is of before the stamps went back, a looped bag), and the buffer
        is not empty unless within ``_INFO_GRACE_S`` after ``since`` (a first one most likely on its way). Not again
        for this camera once such a wait ran out (the camera flag ``in_vain``, counted ``waited_in_vain:<topic>``;
        cleared when one arrives that a waiting frame could use, :meth:`_keep`; not by those of another clock, nor by
        those stamped consistently further behind the images, which match no frame in time): the worker serves
        every camera, and would hold all of them back by that wait on each of this camera's frames. No wait while
        deactivating or stopping (the executor that would deliver it is the one waiting for this frame), nor once its
        topic is unsubscribed (camera_info.url or depth.align set meanwhile: nothing more comes)."""
        wait = self._wait_s()
        topic = "camera_info" if buffer is cam.infos else "depth_reference"
        deadline = time.monotonic() + wait
        with self._info_arrived:
            cam.reach[in_vain] = deadline - wait - received
            while True:
                held = list(buffer)
                chosen = match(held)
                now = time.monotonic()
                passed = any(0 <= t - stamp <= _STAMP_JUMP_S * 1e9 for t, _ in held)
                if chosen is not None or (not held and now - since >= _INFO_GRACE_S) or passed \
                        or self._stopping or getattr(cam, in_vain) or not self._active or topic not in cam.subs:
                    return chosen, held
                if now >= deadline:
                    setattr(cam, in_vain, True)
                    # (in /diagnostics: each held the worker, and every camera's frames, back by _INFO_WAIT_S)
                    cam.counts["waited_in_vain:" + ("camera_info" if buffer is cam.infos else "depth_reference")] += 1
                    return None, held
                self._info_arrived.wait(deadline - now)

    def _camera_info(self, f: _Frame, s: Settings) -> Optional[CameraInfo]:
        """The CameraInfo for frame ``f`` under ``camera_info.policy``. With ``exact`` or ``nearest``,
        when nothing matches yet but the camera has sent camera_info before, none of it as new as the
        frame, wait up to ``_INFO_WAIT_S`` for the matching one (it may still be on its way; see :meth:`_await`), but
        not again for this camera after one such wait ran out (its camera_info has stopped, comes slower than its
        images, or is stamped further behind them) until a camera_info comes that a waiting frame could use
        (:meth:`_keep`). With ``camera_info.url``, the file's."""
        with self._lock:   # (read once, with the url it came from, as a change sets both: it may clear it meanwhile)
            calibration, url = f.camera.calibration, self._settings["camera_info.url"]
        if calibration is not None:
            f.calibration_url = url
            return calibration
        stamp = conversions.stamp_ns(f.msg.header)
        policy = s["camera_info.policy"]
        tolerance = s["camera_info.tolerance"]
        chosen, infos = self._await(f.camera, stamp, f.camera.infos, "info_waited_in_vain",
                                    lambda held: self._match_info(held, stamp, policy, tolerance), f.camera.info_since,
                                    received=f.received)
        if chosen is None:
            with self._lock:   # camera_info.url set while it looked (its wait ended by that): the file's, as the next
                calibration, url = f.camera.calibration, self._settings["camera_info.url"]   # frames'
            if calibration is not None:
                f.calibration_url = url
                return calibration
            topic = self.resolve_topic_name(f.camera.topic("camera_info"))   # (namespace and remaps applied)
            age = time.monotonic() - f.camera.info_since
            if not infos and age < _INFO_GRACE_S:   # (a WARN: most likely its first one is still on its way)
                self._count_error("no_camera_info", f"no camera_info yet: none received on {topic} in the {age:.1f} s "
                                  f"since it was subscribed; depth/camera_info and points skipped", [f], partial=True,
                                  warn=True)
                return None
            latched = self._info_qos.durability == DurabilityPolicy.TRANSIENT_LOCAL
            if not infos:
                why = self._no_info_reason(f.camera, s)
            elif (latched and len(infos) == 1 and stamp > infos[0][0]) or \
                    (all(abs(t - stamp) > _STAMP_JUMP_S * 1e9 for t, _ in infos) and stamp > max(t for t, _ in infos)
                     and (f.camera.info_on_image_clock or latched)):   # (the last came stamped as the images then were,
                # or latched: published once, maybe long before the images, of any age)
                why = (f"none on {topic} matching the image stamp (camera_info.policy={policy}): the closest of the "
                       f"{len(infos)} last received is {(stamp - max(t for t, _ in infos)) / 1e6:.0f} ms older than "
                       f"the image")
                if latched:   # (README's way for a driver that publishes it once)
                    why += (": a latched camera_info (qos.camera_info_durability is transient_local) is published "
                            f"once, and camera_info.policy={policy} gives it to no frame of a later stamp: set "
                            "camera_info.policy:=latest (the last one for every frame)")
                else:
                    why += (f", and it came stamped as the images then were: camera_info has stopped coming (or comes "
                            f"less than once a second) while the images go on; check its publisher (ros2 topic hz "
                            f"{topic}), or set camera_info.policy:=latest (the last one for every frame)")
            elif all(abs(t - stamp) > _STAMP_JUMP_S * 1e9 for t, _ in infos):
                nearest = min((t for t, _ in infos), key=lambda t: abs(t - stamp))
                loop = (f" (if only once: the images' stamps went back, as at each ros2 bag play --loop, and the "
                        f"frame's own did not come within {self._wait_s() * 1e3:.0f} ms)" if nearest > stamp else "")
                why = (f"none on {topic} matching the image stamp (camera_info.policy={policy}): the closest of the "
                       f"{len(infos)} last received is {abs(nearest - stamp) / 1e6:.0f} ms "
                       f"{'newer' if nearest > stamp else 'older'} than the image{loop}: camera_info stamped by "
                       f"another clock than the images (a driver stamping it with its own time while the images carry "
                       f"the sensor's, or a relay restamping it) matches no frame, and after one wait in vain the node "
                       f"no longer waits for it; stamp camera_info as the images are, or set "
                       f"camera_info.policy:=latest (one calibration for every frame)")
            else:
                gap = min((t - stamp for t, _ in infos), key=abs)
                need = f"{abs(gap) / 1e9:.3g} s"
                fix = (f"camera_info.policy:=nearest with a camera_info.tolerance above {need}" if policy == "exact"
                       else f"a camera_info.tolerance above {need}")
                why = (f"none on {topic} matching the image stamp (camera_info.policy={policy}): the closest is "
                       f"{abs(gap) / 1e6:.0f} ms {'newer' if gap > 0 else 'older'} than the image; if so on every "
                       f"frame, camera_info is stamped that far from its images (a driver stamping it otherwise than "
                       f"the images, a relay restamping it; the node then no longer waits for it) or comes slower than "
                       f"them: set {fix}, or camera_info.policy:=latest, or stamp camera_info as the images are")
            self._info_problem(f.camera, why)
            self._count_error("no_camera_info", f"no camera_info: {why}; depth/camera_info and points skipped", [f],
                              partial=True)
        else:
            self._info_problem(f.camera, None)
        return chosen

    def _info_source(self, cam: _Camera, info: CameraInfo, url: str = "") -> tuple[str, bool]:
        """Where a frame's camera_info ``info`` came from, as the log names it, and whether that is a file:
        camera_info.url's file for this camera (``url``, the value that gave it: :attr:`_Frame.calibration_url`), or
        its camera_info topic with the namespace and remaps applied (the name `ros2 topic list` shows; the topic as
        written, ``left/camera_info``, need not exist)."""
        if url:
            try:
                path = camera_calibration.resolve(url, _camera_name(cam.ns))
            except camera_calibration.CalibrationFileError:   # (it resolved when loaded: a later change of the url)
                path = url
            return f"camera_info.url's {path}", True
        return self.resolve_topic_name(cam.topic("camera_info")), False

    def _uncalibrated(self, cam: _Camera, s: Settings) -> Optional[str]:
        """The [calibration] line's reason when the camera's latest camera_info is of an uncalibrated camera (K all
        zero): its frames can have neither points nor depth/camera_info. None otherwise (a calibration file, none
        received yet, or a calibrated one)."""
        with self._info_arrived:
            if cam.calibration is not None or not cam.infos:
                return None
            info = cam.infos[-1][1]
        try:
            pipeline.Intrinsics.from_camera_info(**conversions.camera_info_fields(info),
                                                 rectified=s["camera_info.rectified"])
        except pipeline.UncalibratedError as e:
            return f"{self._info_source(cam, info)[0]}: {e}{_UNCALIBRATED_FIX}"
        except pipeline.CalibrationError:   # (another fault: said with the frame's own camera_info, post-processing)
            pass
        return None

    def _info_problem(self, cam: _Camera, why: Optional[str]) -> None:
        """Set the camera's camera_info reason for its status (the worker's, for its frame), under the lock the
        executor clears it with when it unsubscribes camera_info: a reason found while the subscription went away is
        not left behind for the next subscription's status (it was, until that camera's next frame)."""
        with self._wake:
            if "camera_info" in cam.subs:
                cam.info_problem = why

    def _never_had_info(self, cam: _Camera) -> bool:
        """The camera has no calibration file and its camera_info subscription has brought nothing, past the first
        ``_INFO_GRACE_S`` (when its first camera_info is most likely on its way): no frame of it can have one."""
        with self._info_arrived:
            return (cam.calibration is None and not cam.infos and "camera_info" in cam.subs
                    and time.monotonic() - cam.info_since >= _INFO_GRACE_S)

    def _no_info_reason(self, cam: _Camera, s: Settings) -> str:
        """Why a camera that has received no camera_info has none, and what to do (log and /diagnostics)."""
        topic = self.resolve_topic_name(cam.topic("camera_info"))   # (namespace and remaps applied)
        # (a transient-local subscription is reliable whatever qos.input_reliability says)
        qos_ = ("latched (reliable, transient local: qos.camera_info_durability is transient_local)"
                if s["qos.camera_info_durability"] == "transient_local" else
                "with a QoS this node's qos.input_reliability accepts; a driver that publishes it once "
                "(latched) needs qos.camera_info_durability:=transient_local" +
                (" with camera_info.policy:=latest" if s["camera_info.policy"] != "latest" else ""))
        return (f"none received on {topic}: check that the camera publishes it there "
                f"(remap {cam.topic('camera_info')}:=...) {qos_}, or give a calibration file (camera_info.url)")

    @staticmethod
    def _match_info(infos: list, stamp: int, policy: str, tolerance_s: float) -> Optional[CameraInfo]:
        if not infos:
            return None
        if policy == "latest":
            return infos[-1][1]
        if policy == "exact":
            return next((m for t, m in reversed(infos) if t == stamp), None)
        t, m = min(infos, key=lambda tm: abs(tm[0] - stamp))
        return m if abs(t - stamp) <= tolerance_s * 1e9 else None

    # ------------------------------------------------------------------ errors and diagnostics
    def _count_error(self, reason: str, text: str, frames: list[_Frame], partial: bool = False,
                     warn: bool = False, count: bool = True) -> None:
        """Count a per-frame failure and log it: one line per kind of error (reason + message with
        its numbers blanked, not the digits of the topics it names: cam1's error is not cam2's) every
        ``_ERROR_LOG_PERIOD_S`` per camera whose frames it cost, so a different problem is never hidden
        behind a repeated one (rclpy's own throttle is per call site, i.e. shared by all reasons).

        ``partial``: the frame is still processed and published without some outputs; per camera it
        is counted as ``incomplete:<reason>``, not ``error:<reason>``, so that received = processed +
        dropped + idle + throttled + errors holds. ``warn``: logged as a warning (an expected passing state).
        ``count``: False for a failure of a frame counted already for this reason (a compressed copy's publish after
        an image output's): only said.
        Frames already counted (the stop dropped them while the worker still ran them) are not counted or said."""
        # the kind is of the message after the topics it names ahead (``_topics(frames)``), and it is said at most once
        # a period for each of those cameras: a batch's line names the cameras whose frames were in it, which with
        # cameras that are not synchronised is another set nearly every batch (8 cameras, one error on every frame:
        # 66 lines in 10 s, as a text per set of topics)
        topics = _topics(frames)
        named = bool(topics) and text.startswith(topics + ": ")
        body = text[len(topics) + 2:] if named else text
        cameras = [f.topic for f in frames] if named else [""]
        kind = (reason, _blank_numbers(body)[:200])
        now = time.monotonic()
        with self._lock:
            if frames:   # a frame the stop counted dropped meanwhile (_drop_unfinished) is settled: counted no more
                frames = [f for f in frames if not f.counted]
                if not frames:
                    return
            for f in frames if count else []:
                f.camera.counts[("incomplete:" if partial else "error:") + reason] += 1
                f.counted = f.counted or not partial
            if count:   # per frame, as the cameras' counts (a frame's compressed copies: one)
                self._errors[reason] += len(frames) or 1
            # per camera's topic: [when it was last named in a line of this kind, its errors of it not logged since]
            said = self._error_log.get(kind, {})
            if said and all(now - said.get(c, (-math.inf,))[0] < _ERROR_LOG_PERIOD_S for c in cameras):
                for c in cameras:
                    said[c][1] += 1
                return
            suppressed = sum(said[c][1] for c in cameras if c in said)
            said.update({c: [now, 0] for c in cameras})
            self._error_log[kind] = said
            self._error_log.move_to_end(kind)
            while len(self._error_log) > 256:
                self._error_log.popitem(last=False)
        more = f" ({suppressed} more like it in the last {_ERROR_LOG_PERIOD_S:g} s)" if suppressed else ""
        if len(text) > 1000:   # a hostile message (e.g. a megabyte-long encoding string) stays one short line
            text = text[:1000] + f"... ({len(text) - 1000} more characters)"
        if warn:   # (two call sites: rclpy refuses one that logs at two severities)
            self.get_logger().warning(f"[{reason}] {text}{more}")
        else:
            self.get_logger().error(f"[{reason}] {text}{more}")

    def _say_if_no_valid_depth(self, f: _Frame, host: "_HostCopies", s: Settings) -> None:
        """A frame whose metric depth has not one measurement (every pixel -Inf, +Inf or NaN; 16UC1: 0) is published
        as it is, REP 117's values, but a mapper gets nothing from it and its cloud has no point: said at WARN (every
        5 s per camera while so) with how many pixels are of each kind and what sets them (not counted: every output
        went out). Before, such frames went out without a word: a depth.shift of the wrong sign made every depth +Inf
        (1 / (scale * inverse_depth + shift) has no positive value there) and RViz showed an empty cloud."""
        if "depth" in host:
            d = host["depth"]
            # (a sparse look first: a frame with any measurement, nearly all of them, costs a few microseconds)
            if d.size == 0 or np.isfinite(d[::8, ::8]).any() or np.isfinite(d).any():
                return
            above, below = int(np.count_nonzero(np.isposinf(d))), int(np.count_nonzero(np.isneginf(d)))
            kinds = (f"{above} of {d.size} pixels +Inf (above depth.max, {s['depth.max']:g} m), {below} -Inf (below "
                     f"depth.min, {s['depth.min']:g} m), {d.size - above - below} NaN (no data)")
        elif "depth_mm" in host:
            mm = host["depth_mm"]
            if mm.size == 0 or mm[::8, ::8].any() or mm.any():
                return
            kinds = (f"all {mm.size} pixels of the 16UC1 depth are 0 (below depth.min, {s['depth.min']:g} m, above "
                     f"depth.max, {s['depth.max']:g} m, beyond 65.535 m, or no data)")
        else:
            return
        topic, now = f.topic, time.monotonic()
        key = (topic, "depth" in host)   # (32FC1 and 16UC1 each said)
        if now - self._no_depth_said.get(key, -math.inf) < _ERROR_LOG_PERIOD_S:
            return
        self._no_depth_said[key] = now
        if s["depth.align"]:
            source = "the depth.align fit (or its fallback)"
        elif s["depth.scale"] > 0:
            source = (f"depth.scale {s['depth.scale']:g} / depth.shift {s['depth.shift']:g}: depth_m = 1 / (scale * "
                      "inverse_depth + shift), beyond depth.max where that is not positive; check the sign of "
                      "depth.shift, or calibrate with calibrate_depth")
        else:
            source = "the metric variant's metres"
        self.get_logger().warning(
            f"{topic}: this frame's depth has no measurement: {kinds}, so its cloud has no point. Check depth.min / "
            f"depth.max and {source}. Said every {_ERROR_LOG_PERIOD_S:g} s per camera while so.")

    #: the last name of an image topic that image_proc's convention gives to images before rectification
    _RAW_IMAGE_NAMES = ("image_raw", "image_color", "image_mono")

    def _warn_if_raw(self, topic: str, info, s: Settings) -> None:
        """camera_info.rectified (the default) on a topic named as a raw image, from a lens with distortion: the
        cloud and depth/camera_info take the image as rectified (no distortion), off by up to the lens's bend;
        camera_info.rectified false on one named as rectified (image_rect...) with a lens in D: the distortion is
        undone twice. Said once per camera; a rectified image next to the raw camera_info (image_rect) with
        camera_info.rectified true says nothing. ``topic``: the image topic the frame came on (not its camera's now,
        which a `ros2 param set` of image_transport may have changed while the frame was in the node)."""
        name = topic.removesuffix("/compressed").rsplit("/", 1)[-1]
        if s["camera_info.rectified"] and name in self._RAW_IMAGE_NAMES and any(float(v) != 0.0 for v in info.d):
            self._warn_once(f"raw:{topic}", (
                f"{topic} looks like a raw (unrectified) image and its camera_info has lens distortion "
                f"({info.distortion_model}), but camera_info.rectified is true: points and depth/camera_info treat the "
                f"image as distortion-free. Set camera_info.rectified:=false to back-project through the lens model, "
                f"or subscribe to the rectified image (image_rect from image_proc). Said once per camera."))
        elif not s["camera_info.rectified"] and name.startswith("image_rect") and any(float(v) != 0.0 for v in info.d):
            # image_proc publishes no camera_info of its own: image_rect comes with the raw camera's, D and all
            self._warn_once(f"rect:{topic}", (
                f"{topic} looks like a rectified image, but camera_info.rectified is false: points and "
                f"depth/camera_info undo the lens distortion of its camera_info ({info.distortion_model}) a second "
                f"time, bending straight lines the other way (the camera_info beside image_rect is the raw camera's, "
                f"D included). Set camera_info.rectified:=true (the default: P, no distortion) for a rectified image, "
                f"or subscribe to the raw one (image_raw). Said once per camera."))

    def _warn_task_off(self, task: str, cam: _Camera, wanted: set, s: Settings) -> None:
        """Said once each time a task is off (a configure, a swap that turns it off): outputs of ``task`` have
        subscribers while the task is off (its variant '', e.g. RViz's segmentation display on depth.launch.py, or a
        cloud on segmentation.launch.py). Their publishers exist
        (README: every output counts), so the subscriber connects and would otherwise wait in silence."""
        if s[f"{task}.variant"] or f"task_off:{task}" in self._warned:   # (on, its model loading: its outputs come
            return                                                        # once it is in; or said already)
        outputs = _DEPTH_OUTPUTS if task == "depth" else _SEG_OUTPUTS
        subscribed = [cam.pubs[n].topic_name for n in outputs
                      if n in wanted and cam.pubs[n].get_subscription_count() > 0]
        if not subscribed:
            return
        fqn = self.get_fully_qualified_name()
        example = "dpt_hybrid" if task == "depth" else "dpt_hybrid_ade20k"
        self._warn_once(f"task_off:{task}", (
            f"{task} is off ({task}.variant is '') while its outputs have subscribers ({', '.join(subscribed)}): "
            f"nothing is published there. To publish them, give {task} its weights and then its variant: ros2 param "
            f"set {fqn} {task}.weights <file> (or random), then ros2 param set {fqn} {task}.variant {example}; or run "
            f"depth and segmentation in one node (dpt.launch.py)"))

    def _warn_once(self, key: str, text: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            self.get_logger().warning(text)

    def _sim_time_switched(self, changed: list[Parameter]) -> None:
        """A set this node accepted (called in its set-parameters callback: Humble's rclpy has no post-set callbacks;
        rclpy's own use_sim_time callback accepts any bool): use_sim_time set true at runtime (``ros2 param set
        /dpt_node use_sim_time true``) starts the wait for /clock afresh: :meth:`_check_clock` comes
        ``_CLOCK_CHECK_S`` after the switch, says so, names the frames since it, and says it again at each switch on.
        Before, the check's next tick (its timer running since start-up) said "5 s after start-up", after however
        short a wait, and after a switch off and on again it said nothing (once per node). Set true again after /clock
        had come, rclpy's clock resumes from the last /clock time (not 0): said at once, and by the check (with one
        /diagnostics report, its model status WARN with a ``clock`` key) while no /clock has moved it since; before,
        nothing was said and /diagnostics stood still, OK."""
        for p in changed:
            if p.name != "use_sim_time":
                continue
            on = bool(p.value)
            if on and not self._sim_time_on:
                with self._lock:
                    self._clock_wait_from = "use_sim_time was set true"
                    self._before_clock = (0, "")
                    self._warned.discard("no_clock")
                    timer = self._clock_timer
                    resumed = self._clock_resumed = self._last_clock_ns or None
                if resumed is not None:
                    # rclpy's clock keeps the last /clock time through use_sim_time false and resumes from it: the
                    # stamps this node gives (/diagnostics, label_info's) go back to it, and it stands there until
                    # /clock comes again
                    self.get_logger().warning(
                        f"use_sim_time was set true again: this node's clock resumes from the last /clock time it "
                        f"received, {resumed / 1e9:.3f} s (before use_sim_time was set false), not from the wall "
                        f"time it ran on meanwhile, and stands there until /clock comes again: the stamps it gives "
                        f"(/diagnostics, label_info) go back to that time and /diagnostics, published on that clock, "
                        f"waits for /clock; checked again {_CLOCK_CHECK_S:g} s from now")
                if timer is not None:
                    timer.reset()   # (its period from now)
            elif not on:
                self._clock_resumed = None
            self._sim_time_on = on   # (last: the check waits for the switch's wait above)

    def _check_clock(self) -> None:
        """With use_sim_time, while the node's clock is at 0 (no /clock message has come, or only ones at 0, as a
        simulator paused at its start sends), ``_CLOCK_CHECK_S`` after start-up (or after use_sim_time was set true at
        runtime: :meth:`_sim_time_switched`): a warning, once per wait, with the frames published meanwhile. Without
        it a bag played without --clock, or no bag yet, left the node silent: /diagnostics and its "no image yet"
        checks run on that clock, so they never came."""
        clock = self.get_clock()
        # (rclpy switches the clock before the set is done; this node's bookkeeping of it, after)
        if not (self._sim_time_on and clock.ros_time_is_active):
            return
        now_ns, resumed = clock.now().nanoseconds, self._clock_resumed
        if resumed is not None and now_ns == resumed:   # set true again, no /clock since: stands where it resumed
            publishers = self.count_publishers("/clock")
            found = ("nothing publishes /clock now" if not publishers else
                     f"{publishers} publisher{'s' * (publishers != 1)} of /clock found, none has moved the clock "
                     "since: a bag player paused or at its end, or a simulator paused")
            if "no_clock" not in self._warned:
                self._warn_once("no_clock", f"use_sim_time is true and this node's clock still stands at the last "
                                f"/clock time it received before use_sim_time was set false, {resumed / 1e9:.3f} s, "
                                f"{_CLOCK_CHECK_S:g} s after {self._clock_wait_from} again ({found}): no /clock "
                                "message has come since, so /diagnostics, published on that clock, waits for it (this "
                                "report aside) and the stamps it gives stay at that time. Play the bag with --clock, "
                                "resume the simulation, or set use_sim_time:=false (a live camera)")
                self._publish_diagnostics()   # (its timer is on the standing clock: one report says the state)
            return
        if now_ns != 0:
            return
        publishers = self.count_publishers("/clock")
        # (a simulator paused at its start publishes /clock at its time, 0: messages come, the clock stays at 0)
        found = ("nothing publishes /clock: no /clock message has come" if not publishers else
                 f"{publishers} publisher{'s' * (publishers != 1)} of /clock found, none has sent a time other than 0 "
                 "here yet, as a bag player not yet playing does, or a simulator paused at its start")
        n, topic = self._before_clock
        frames = (f"{n} frame{'s' * (n != 1)} came meanwhile ({topic}), processed all the same, left out of "
                  "/diagnostics' age figures" if n else "no frame has come either")
        self._warn_once("no_clock", f"use_sim_time is true and this node's clock still stands at 0, "
                        f"{_CLOCK_CHECK_S:g} s after {self._clock_wait_from} ({found}): "
                        "/diagnostics, published on that clock, waits for it (and with it the check that images "
                        f"come); {frames}. Play the bag with --clock (ros2 bag play my.bag --clock), start the "
                        "simulation (a paused simulator: its play button, or gz sim -r), or set use_sim_time:=false "
                        "(a live camera)")

    def _on_clock_moved(self, _jump) -> None:
        """Each /clock message that moves the node's clock (use_sim_time): a stretch of ``_CLOCK_STILL_S`` or more
        since the last is one the clock stood still in (a paused ros2 bag play), which /diagnostics' rates leave
        out, unless a frame came after ``_CLOCK_STILL_S`` of it (frames that did not stop with the clock)."""
        now = time.monotonic()
        with self._lock:
            self._last_clock_ns = self.get_clock().now().nanoseconds
            self._clock_resumed = None   # (/clock came again after use_sim_time was set true again)
            if self._clock_moved is not None and now - self._clock_moved >= _CLOCK_STILL_S:
                # frames still came when it had stood that long (a live camera beside a paused bag): their seconds
                # stay in the rates (a paused bag's last frame comes within one /clock step of its last move)
                if not any(c.last_image is not None and c.last_image - self._clock_moved >= _CLOCK_STILL_S
                           for c in self._cameras):
                    self._clock_still.append((self._clock_moved, now))
                self._clock_pace.clear()   # (a pause is no slow play)
                self._wait_scale = 1.0
            self._clock_moved = now
            pace = self._clock_pace
            if _jump.delta.nanoseconds < 0:
                pace.clear()   # (a --loop's jump back: its pace counts from there)
            pace.append((now, self.get_clock().now().nanoseconds))
            while len(pace) > 2 and now - pace[0][0] > _PACE_WINDOW_S:
                pace.popleft()
            (w0, t0), (w1, t1) = pace[0], pace[-1]
            if w1 <= w0:   # (one move since a --loop's jump back: no rate yet, the last one's stretch kept)
                return
            rate = (t1 - t0) / 1e9 / (w1 - w0)
            # (read by _wait_s without the lock, which _keep's callers hold)
            self._wait_scale = _SLOW_PLAY_MAX if rate <= 1 / _SLOW_PLAY_MAX else max(1.0, 1.0 / rate)

    def _wait_s(self) -> float:
        """How long a frame waits for its camera_info or depth.align reference (:meth:`_await`): ``_INFO_WAIT_S``,
        with use_sim_time stretched by 1 / the play rate measured from /clock (a bag played at --rate 0.25: 4x), up to
        ``_SLOW_PLAY_MAX`` times; 1x while the clock has stood still ``_CLOCK_STILL_S`` (a pause is no slow play)."""
        if not self.get_clock().ros_time_is_active:
            return _INFO_WAIT_S
        moved = self._clock_moved
        still = moved is not None and time.monotonic() - moved >= _CLOCK_STILL_S
        return _INFO_WAIT_S * (1.0 if still else self._wait_scale)

    # ------------------------------------------------------------------ lifecycle
    @property
    def settings(self) -> Settings:
        return self._settings

    @property
    def models(self) -> ModelSet:
        return self._models

    @property
    def cameras(self) -> list[_Camera]:
        return self._cameras

    def counts(self) -> dict[str, dict[str, int]]:
        """Per-camera counters (received, processed, dropped, idle, error:<reason>, incomplete:<reason>,
        out:<topic>)."""
        with self._lock:
            return {c.ns: dict(c.counts) for c in self._cameras}

    def error_counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._errors)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the worker (and wait for a running model load); idempotent. Also safe on a node whose
        construction failed (recent rclpy destroys such a node when its context shuts down)."""
        wake = getattr(self, "_wake", None)
        if wake is None:
            return
        with wake:
            self._stopping = True
            wake.notify_all()
            self._info_arrived.notify_all()   # a frame waiting for its camera_info stops waiting
            idle = getattr(self, "_idle", None)   # (absent when construction failed before it)
            if idle is not None:
                idle.notify_all()   # a deactivation waiting for the worker stops waiting
        for thread in (getattr(self, "_worker", None), getattr(self, "_loader", None)):
            if thread is not None and thread.is_alive():
                thread.join(timeout)
        publish_lock = getattr(self, "_publish_lock", None)
        if publish_lock is not None:   # (absent when construction failed before it)
            with publish_lock:   # (a batch being published goes out first: its frames are not dropped)
                self._outputs_closed = True   # a worker still on a batch publishes none of it
                self._drop_unfinished()
        compressed = getattr(self, "_compressed", None)
        if compressed is not None:   # (after the outputs closed: no copy comes in any more)
            self._unfinished_copies_dropped += compressed.stop(timeout)

    def _drop_unfinished(self) -> int:
        """The frames accepted but not done when the node stops (one waiting per camera; the batch of a forward pass
        still running, which after Ctrl-C can no longer be published) counted as ``dropped``, so that received =
        processed + dropped + idle + throttled + errors holds after the stop: before, they were counted nowhere.
        Returns how many. Called as the outputs close (under ``_publish_lock``): a worker that finishes such a frame
        later publishes none of it (before, it published a frame counted dropped)."""
        cameras = getattr(self, "_cameras", None)
        if cameras is None:   # (construction failed before it)
            return 0
        with self._lock:
            frames = [c.pending for c in cameras if c.pending is not None] + list(getattr(self, "_in_worker", []))
            for cam in cameras:
                cam.pending = None
            n = 0
            for f in frames:
                if not f.counted:
                    f.camera.counts["dropped"] += 1
                    f.counted = True
                    n += 1
            self._unfinished_dropped += n
        return n

    def destroy_node(self, timeout: float = 10.0) -> None:
        """Stop (``timeout``: as :meth:`stop`), then destroy the node. Frames the stop dropped unfinished are said in
        one line at INFO, after the node is destroyed (its /rosout publisher gone: after Ctrl-C the context is shut
        down and a line to /rosout would fail), on the console and in the log file."""
        counters = ("_unfinished_dropped", "_unfinished_copies_dropped")
        before = [getattr(self, k, 0) for k in counters]   # (a managed node's cleanups may have dropped some)
        self.stop(timeout)
        super().destroy_node()
        frames, copies = (getattr(self, k, 0) - b for k, b in zip(counters, before))
        said = ([f"{frames} frame(s) received but not yet published"] if frames else []) + \
            ([f"{copies} compressed copy(ies) not yet published"] if copies else [])
        if said:
            self.get_logger().info(f"stopped: {' and '.join(said)} were dropped")


class DptLifecycleNode(LifecycleNodeMixin, DptNode):
    """``dpt_lifecycle_node``: the DPT node as a managed (lifecycle) node, for nav2's lifecycle manager, launch_ros's
    ``LifecycleNode`` and ``ros2 lifecycle set``. The parameters are declared at start; nothing else happens until:

    - configure: the parameters are checked, the models loaded (weights, GPU memory) and the publishers created;
      a failure (a missing weights file, an invalid value, CUDA out of memory) is logged, the transition fails
      and the node stays unconfigured, to be configured again once the parameters are fixed.
    - activate: the cameras' topics are subscribed; frames flow.
    - deactivate: the cameras are unsubscribed; the frames already taken are finished and published first.
    - cleanup: the publishers are destroyed and the models released (their GPU memory too).
    - shutdown: as cleanup, from any state.

    Parameters can be set in every state but finalized; before configure (and after cleanup) they are only checked,
    and take effect at the next configure. Those the topics are made of (``cameras``, ``qos.*``,
    ``publish.compressed``; read-only on ``dpt_node``) can be set only then: while configured they are refused with
    that reason."""

    _MANAGED = True

    #: the names of rclpy's lifecycle services and topic (LifecycleNodeMixin's: rcl_lifecycle's state machine)
    _LIFECYCLE_SERVICES = ("~/change_state", "~/get_state", "~/get_available_states", "~/get_available_transitions",
                           "~/get_transition_graph")
    _LIFECYCLE_TOPIC = "~/transition_event"

    def __init__(self, node_name: str = "dpt_node", **kwargs) -> None:
        DptNode.__init__(self, node_name, **kwargs)   # (LifecycleNodeMixin's part: in _start)

    def _start(self) -> None:
        """:meth:`DptNode._start`, then rclpy's lifecycle part (the state machine, its services and transition_event
        publisher), inside the constructor's failure path: a failure there (a remap that puts two of its services of
        different types on one name: RCLError "Failed to create lifecycle state machine") is a failed start as one
        of DptNode's, said under the node's name (as remapped) and the half-built node destroyed. Before, it came
        after the constructor: ``main`` said it under ``[dpt_node]`` (so it never reached /rosout) and left the node
        to the garbage collector. Where a remap renamed one of them, the start's error says which, exit status 2."""
        super()._start()
        try:
            LifecycleNodeMixin.__init__(self)
        except RuntimeError as e:   # (rclpy's RCLError)
            remaps = self._lifecycle_remaps()
            if not remaps:
                raise
            raise StartupError(
                f"the lifecycle services could not be created with the remap(s) {', '.join(remaps)} "
                f"({type(e).__name__}: {e}); each lifecycle service needs a name of its own{topics.DROP_REMAP}: "
                f"{_REMAP_AT_START}") from e

    def _lifecycle_remaps(self) -> list[str]:
        """``NAME:=RESOLVED`` of each of rclpy's lifecycle services and topic that a remap renamed."""
        found = []
        for name in (*self._LIFECYCLE_SERVICES, self._LIFECYCLE_TOPIC):
            resolve = self.resolve_topic_name if name == self._LIFECYCLE_TOPIC else self.resolve_service_name
            try:
                to = resolve(name)
                if to != resolve(name, only_expand=True):
                    found.append(f"{name}:={to}")
            except Exception:  # noqa: BLE001 - an unresolvable name: rclpy's error is the one said
                pass
        return found

    def destroy_node(self, timeout: float = 10.0) -> None:
        """As :meth:`DptNode.destroy_node`, and the lifecycle state machine too: rclpy's lifecycle mixin leaves it (its
        transition_event publisher and lifecycle services, and a hold on the node) to the garbage collector, so the
        node stayed in the ROS graph after destroy_node, and was finalised whenever the cycle collector ran. rcl then
        unregistered the /rosout publisher of the logger name, even one a newer node of the same name had
        registered in this process meanwhile: that node's log lines no longer reached /rosout."""
        super().destroy_node(timeout)
        machine = getattr(self, "_state_machine", None)   # (absent when construction failed before it)
        if machine is not None:
            machine.destroy_when_not_in_use()

    def _unforeseen(self, transition: str, e: Exception) -> None:
        """Log an exception a transition did not foresee, with its stack, before it leaves the callback: rclpy's
        lifecycle code turns it into ERROR without a word (its own "TODO: log sth here"), so `ros2 lifecycle set`
        said only "Transitioning failed" and the log nothing. rclpy then runs :meth:`on_error` (cleaned up,
        unconfigured)."""
        stack = "".join(traceback.format_exception(type(e), e, e.__traceback__)).rstrip()
        then = "the node is finalized (start it again)" if transition == "error processing" else \
            "the node cleans up and goes back to unconfigured (configure it again)"
        self.get_logger().error(f"{transition} failed: {type(e).__name__}: {e}; {then}; please report this with "
                                f"the stack:\n{stack}")

    def on_configure(self, state) -> TransitionCallbackReturn:
        try:
            self._configure()
        except ShuttingDown:
            self._cleanup()
            raise _ShutDownDuringTransition() from None
        except (StartupError, FileNotFoundError, ValueError, RuntimeError, OSError) as e:
            if not self.context.ok():   # shut down during the configuration (creating an interface failed)
                self._cleanup()
                raise _ShutDownDuringTransition() from None
            reason = str(e) if isinstance(e, StartupError) else f"{type(e).__name__}: {e}"
            if not reason.endswith("start it again with other ones"):   # (a remap's: no configure mends it)
                # (dpt_node exits on these: said, so that the process is not restarted for what a parameter mends)
                reason += (f"; the node keeps running: fix that (ros2 param set), then configure again: ros2 "
                           f"lifecycle set {self.get_fully_qualified_name()} configure")
            self.get_logger().error(f"configure failed, the node stays unconfigured: {reason}")
            self._cleanup()
            return TransitionCallbackReturn.FAILURE
        except Exception as e:
            self._unforeseen("configure", e)
            raise
        self.get_logger().info("configured: model loaded, publishers created; activate to subscribe the cameras")
        return TransitionCallbackReturn.SUCCESS

    def _transition(self, name: str, step, done: str = "") -> TransitionCallbackReturn:
        try:
            step()
        except Exception as e:
            self._unforeseen(name, e)
            raise
        if done:
            self.get_logger().info(done)
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state) -> TransitionCallbackReturn:
        return self._transition("activate", self._activate, "active: cameras subscribed")

    def on_deactivate(self, state) -> TransitionCallbackReturn:
        return self._transition("deactivate", self._deactivate, "inactive: cameras unsubscribed")

    def on_cleanup(self, state) -> TransitionCallbackReturn:
        return self._transition("cleanup", self._cleanup, "cleaned up: model released, publishers destroyed")

    def on_shutdown(self, state) -> TransitionCallbackReturn:
        def shutdown():
            self._cleanup()
            self._finalized = True
        # (from unconfigured there was no model nor publisher to release)
        done = "model released, publishers destroyed" if self._models is not None else "it was unconfigured"
        return self._transition("shutdown", shutdown, f"finalized: {done}; the process stays up until stopped "
                                "(Ctrl-C), and no transition follows")

    def on_error(self, state) -> TransitionCallbackReturn:
        return self._transition("error processing", self._cleanup)   # back to unconfigured


class _CompressedCopies:
    """The compressed copies (``publish.compressed``), encoded and published on threads of their own, so that
    JPEG / PNG encoding (a 640x480 16-bit PNG takes ~18 ms on a small CPU) never holds back the image outputs
    or the next frame. One thread per camera, up to half the CPU cores (at least one): OpenCV's encoders release
    the GIL, so several cameras' copies encode in parallel; a camera's copies are never encoded by two threads at
    once, and go out in frame order. Per camera only the newest frame's copies wait: copies replaced by a newer
    frame's before a thread took them, and those still waiting or being encoded when the node stops (not published
    by the end of its wait), are counted as ``dropped:<topic>``; a failed encoding as
    ``incomplete:compression`` (and logged); a publish that raised as an image output's, ``publish_failed:<topic>``
    and ``incomplete:publish`` (and logged). ``incomplete:<reason>`` and the node's error count frames: a frame whose
    copies fail (two of them, or a copy and an image output) counts once. Published copies count as
    ``out:<topic>``, like every output."""

    def __init__(self, node: "DptNode", cameras: int = 1) -> None:
        self._node = node
        self._cond = threading.Condition()
        # camera index -> (camera, header, copies, settings, whether the frame counted incomplete:publish already,
        # (frame, its outputs' failures) where every output failed: the frame is counted once its copies are done)
        self._pending: dict[int, tuple] = {}
        self._working: set[int] = set()   # cameras whose copies a thread is encoding / publishing
        self._stopping = False
        # a thread publishes a copy under it, and the stop closes under it: a copy is published or counted dropped
        self._publish_lock = threading.Lock()
        self._closed = False
        self._unsent: list[tuple] = []   # (camera, names of the copies a thread took and has not done yet)
        self.encode_ms: collections.deque = collections.deque(maxlen=300)   # per frame, all its copies
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        n = max(1, min(cameras, cores // 2))   # (the cores this process may use: a container's limit)
        self._threads = [threading.Thread(target=self._loop, name=f"dpt_compressed_copies_{i}", daemon=True)
                         for i in range(n)]
        for thread in self._threads:
            thread.start()

    def submit(self, cam: _Camera, header, copies: list, s: Settings, publish_counted: bool = False,
               settle: Optional[tuple] = None) -> None:
        """Hand one frame's ``copies`` to the threads (``publish_counted``: one of its image outputs' publish raised,
        counted ``incomplete:publish`` already: a copy's then counts it no more; ``settle``: (frame, failures) of a
        frame none of whose outputs went out, counted by :meth:`DptNode._settle_after_copies` once they are done:
        processed if one of them goes out, else error:publish, as when they are replaced unsent)."""
        with self._cond:
            replaced = self._pending.get(cam.index)
            self._pending[cam.index] = (cam, header, copies, s, publish_counted, settle)
            self._cond.notify()
        if replaced is not None:
            with self._node._lock:
                for name, *_ in replaced[2]:
                    cam.counts["dropped:" + name] += 1
            if replaced[5] is not None:   # (nothing of that frame went out)
                self._node._settle_after_copies(*replaced[5], False)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no copies wait and none are being encoded; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self._stopping or not (self._pending or self._working), timeout)

    def stop(self, timeout: float) -> int:
        """Stop the threads (waiting up to ``timeout`` for a copy being encoded); the copies still waiting, which no
        thread takes any more, and those a thread took but has not published by then (still being encoded: it
        publishes no more of them), are counted as ``dropped:<topic>`` (before, counted nowhere). Returns how many."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            if thread.is_alive() and thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))
        with self._publish_lock, self._cond:
            self._closed = True
            left = [(cam, [name for name, *_ in copies]) for cam, _, copies, *_ in self._pending.values()]
            frames = [p[5][0] for p in self._pending.values() if p[5] is not None]
            left += self._unsent
            self._pending, self._unsent = {}, []
        with self._node._lock:
            for cam, names in left:
                for name in names:
                    cam.counts["dropped:" + name] += 1
            for f in frames:   # (a frame whose outputs all failed, its copies cut by the stop: dropped, as its own)
                self._node._drop_frame(f)
        return sum(len(names) for _, names in left)

    def _next(self) -> Optional[int]:
        """The camera waiting longest whose copies no other thread is on (a camera's new frame takes the place of
        its old one in ``_pending``, keeping its place)."""
        return next((i for i in self._pending if i not in self._working), None)

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._stopping and self._next() is None:
                    self._cond.wait()
                if self._stopping:
                    return
                index = self._next()
                cam, header, copies, s, publish_counted, settle = self._pending.pop(index)
                self._working.add(index)
                # (their names leave it under _publish_lock as they are done; left there, the stop counts them)
                unsent = (cam, [name for name, *_ in copies])
                self._unsent.append(unsent)
            try:
                self._publish(cam, header, copies, s, unsent[1], publish_counted, settle)
            finally:
                with self._cond:
                    if not unsent[1]:
                        self._unsent = [u for u in self._unsent if u is not unsent]
                    self._working.discard(index)
                    self._cond.notify_all()
            if self._stopping:
                return

    def _publish(self, cam: _Camera, header, copies: list, s: Settings, unsent: list,
                 publish_counted: bool = False, settle: Optional[tuple] = None) -> None:
        """Encode and publish one frame's ``copies``, each taken out of ``unsent`` once published or counted failed;
        from the stop on (``_closed``: it counted what is left in ``unsent`` dropped) none is published. The frame's
        failed copies are counted together once it is done (``publish_counted``, ``settle``: see :meth:`submit`)."""
        t = time.perf_counter()
        encoding_failed: dict[str, Exception] = {}
        publish_failed: dict[str, Exception] = {}
        out = cut = False   # one of them went out; the stop cut the rest
        try:
            for name, values, encoding, codec in copies:
                encoded = False
                try:
                    data, fmt = self.encode(values, encoding, codec, s)
                    encoded = True
                    with self._publish_lock:
                        if self._closed:
                            cut = True
                            return
                        cam.pubs[name].publish(conversions.compressed_output(header, data, fmt))
                        unsent.remove(name)
                        out = True
                        with self._node._lock:
                            cam.counts["out:" + name] += 1
                except Exception as e:  # noqa: BLE001 - this thread must survive anything
                    if self._stopping or not self._node.context.ok():
                        cut = True
                        return   # (the stop counts it, and the rest of the frame's, dropped: still in unsent)
                    with self._publish_lock:
                        if self._closed:
                            cut = True
                            return
                        unsent.remove(name)
                    # its publish raised: as an image output's (before, counted and said as an encoding's)
                    (publish_failed if encoded else encoding_failed)[name] = e
        finally:   # (those taken out of unsent: not counted dropped by a stop)
            if encoding_failed:
                self.failed(cam, encoding_failed)
            if publish_failed:
                self.publish_failed(cam, publish_failed, publish_counted)
            if settle is not None:
                if cut and not out:   # (the stop cut the frame's copies, before any went out: dropped with them)
                    with self._node._lock:
                        self._node._drop_frame(settle[0])
                else:
                    self._node._settle_after_copies(*settle, out)
        self.encode_ms.append((time.perf_counter() - t) * 1000.0)

    def failed(self, cam: _Camera, failed: dict[str, Exception]) -> None:
        """Count and log the copies of one of ``cam``'s frames that failed (``failed``: name -> exception; their
        encoding, or handing them to the threads): the frame's ``incomplete:compression`` and one node-wide
        ``compression`` error, however many of its copies failed (before, one each: a frame with two copies counted
        two), in one line naming each; their frame stays processed, its outputs having gone out."""
        with self._node._lock:
            cam.counts["incomplete:compression"] += 1
        self._node._count_error("compression", "; ".join(f"{cam.out_topics[name]}: {type(e).__name__}: {e}"
                                                         for name, e in failed.items()), [])

    def publish_failed(self, cam: _Camera, failed: dict[str, Exception], publish_counted: bool = False) -> None:
        """Count and log the copies of one of ``cam``'s frames, encoded, whose publish raised (``failed``: name ->
        exception; a message rclpy refuses, an rmw's failure), as an image output's is
        (:meth:`DptNode._publish_failed`): ``publish_failed:<name>`` each, and the frame's ``incomplete:publish`` and
        one node-wide ``publish`` error, unless it counted them already for an image output's (``publish_counted``:
        then only said); its frame stays processed."""
        with self._node._lock:
            for name in failed:
                cam.counts["publish_failed:" + name] += 1
            if not publish_counted:
                cam.counts["incomplete:publish"] += 1
        topic = cam.image_topic or cam.topic("image")
        which = "a compressed copy" if len(failed) == 1 else "compressed copies"
        self._node._count_error("publish", f"{topic}: {self._node._publish_failures(cam, failed)}; {which}: the "
                                "frame's other outputs are published on their own (if it repeats, report it with this "
                                "line)", [], count=not publish_counted)

    @staticmethod
    def encode(values: np.ndarray, encoding: str, codec: str, s: Settings) -> tuple[bytes, str]:
        """(data, format) of an image output's compressed copy, as image_transport's plugins write it."""
        if codec == "compressedDepth":
            fmt, data = pipeline.compress_depth(values, encoding, s["compressed.depth_max"],
                                                s["compressed.depth_quantization"])
        else:
            fmt, data = pipeline.compress_image(values, encoding, codec, s["compressed.jpeg_quality"])
        return data, fmt


class _HostCopies:
    """Host NumPy arrays of one frame's result tensors, with one wait for all device copies.

    A CPU tensor is viewed without a copy. A CUDA tensor is copied without blocking into a
    page-locked buffer from ``pool`` (reused across frames, keyed by name, shape and dtype: the
    worker thread copies each result into its message before the next frame reuses the buffer);
    :meth:`wait` synchronises the stream once, after which the arrays are readable.
    """

    _POOL_LIMIT = 32

    def __init__(self, pool: dict) -> None:
        self._pool = pool
        self._arrays: dict[str, np.ndarray] = {}
        self._streams: dict = {}

    def request(self, name: str, t: torch.Tensor) -> None:
        if name in self._arrays:
            return
        t = t.detach()
        if t.device.type != "cuda":
            self._arrays[name] = t.numpy()
            return
        key = (name, tuple(t.shape), t.dtype)
        buf = self._pool.get(key)
        if buf is None:
            if len(self._pool) >= self._POOL_LIMIT:
                self._pool.clear()
            buf = self._pool[key] = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
        buf.copy_(t, non_blocking=True)
        stream = torch.cuda.current_stream(t.device.index)   # (an int: torch's fast lookup)
        # (keyed by device too: every device's default stream has the handle 0)
        self._streams[(t.device.index, stream.cuda_stream)] = stream
        self._arrays[name] = buf.numpy()

    def wait(self) -> None:
        for stream in self._streams.values():
            stream.synchronize()
        self._streams.clear()

    def __contains__(self, name: str) -> bool:
        return name in self._arrays

    def __getitem__(self, name: str) -> np.ndarray:
        if self._streams:
            raise RuntimeError("host copies read before wait()")
        return self._arrays[name]


def _current_stream(device: torch.device) -> "torch.cuda.Stream":
    """torch's current stream of ``device`` (looked up by index: torch's fast path)."""
    return torch.cuda.current_stream(device.index if device.index is not None else torch.cuda.current_device())


def _device_ms(passes: list[tuple[Any, Any]]) -> float:
    """Milliseconds the device spent between each (start, end) pair of recorded (and completed) CUDA events,
    summed."""
    return sum(start.elapsed_time(end) for start, end in passes)


def _wait_for_stream(device: torch.device) -> None:
    """Wait for the work queued on torch's current stream of ``device``: the worker's frame (the model, and CuPy's
    kernels and copies on the same stream). Never the whole device: a model swap captures the new model's CUDA
    graphs on the loader thread meanwhile, and a device-wide synchronise from another thread invalidates a capture
    in progress (CUDA errors 900 / 906: the swap failed, and this frame with it); a stream synchronise does not
    (torch captures on a non-blocking stream of its own)."""
    _current_stream(device).synchronize()


def _trim_host_heap() -> None:
    """Hand the C heap's free pages back to the operating system (glibc's ``malloc_trim``): after a cleanup about
    0.1 GB of a DPT-Hybrid's host memory that the allocator would keep otherwise. Nothing where there is no glibc."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _why_device(name: str, m: ModelSet) -> str:
    """Why ``device`` auto chose the CPU, for the start-up line (a laptop's user reads 'on cpu' and asks why): the
    PyTorch build without CUDA, or no CUDA device or driver found. '' for any other value or a CUDA device."""
    if name != "auto" or m.device.type != "cpu":
        return ""
    return f"; device auto: {params.cuda_missing()}"


def _round32(v: int) -> int:
    return max(32, int(round(v / 32.0)) * 32)


def _camera_name(ns: str) -> str:
    """The name of the camera of namespace ``ns`` that camera_info.url's {camera} stands for (its last part)."""
    return ns.strip("/").split("/")[-1].lstrip("~")


def _calibration_key(info: CameraInfo, rectified: bool, width: int, height: int) -> tuple:
    """Everything of a frame's camera_info and settings that its intrinsics and depth/camera_info depend on (not
    the header)."""
    roi = info.roi
    return (width, height, rectified, info.width, info.height, info.binning_x, info.binning_y, roi.x_offset,
            roi.y_offset, roi.height, roi.width, roi.do_rectify, info.distortion_model,
            *(np.asarray(v, np.float64).tobytes() for v in (info.k, info.p, info.r, info.d)))


def _info_output(cam: _Camera, header, intr, width: int, height: int, source: Optional[CameraInfo]) -> Any:
    """depth/camera_info for ``header``: where the rmw reads this process's CDR, the message of the camera's cached
    calibration serialised once per frame_id, with only the stamp written per frame (building and converting a
    CameraInfo object cost 0.25 ms a frame); else the message object."""
    cached = cam.calibration_cache
    if cached is None or cached[1] is not intr or not conversions.cdr_matches_rmw():
        k, p = intr.camera_info_matrices()
        return conversions.camera_info_msg(header, width, height, k, p, source)
    by_frame_id = cached[2]
    cdr = by_frame_id.get(header.frame_id)
    if cdr is None:
        from rclpy.serialization import serialize_message  # noqa: PLC0415

        k, p = intr.camera_info_matrices()
        if len(by_frame_id) >= 8:   # (a driver changing frame_id per frame: keep a few)
            by_frame_id.clear()
        cdr = by_frame_id[header.frame_id] = serialize_message(
            conversions.camera_info_msg(header, width, height, k, p, source))
    return conversions.restamped(cdr, header)


def _value_shown(value: Any) -> str:
    """A parameter value as a log line says it: as it is, an empty string quoted ('')."""
    return repr(value) if value == "" else str(value)


def _ms_text(ns: int) -> str:
    """A time difference of ``ns`` (> 0) nanoseconds for a log line, never rounded to nothing: a frame stamped 0.3 ms
    ahead of the clock was said to be '0 ms ahead'."""
    ms = ns / 1e6
    return f"{ms:.0f} ms" if ms >= 10 else f"{ms:.2f} ms" if ms >= 0.01 else f"{ns} ns"


def _blank_numbers(text: str) -> str:
    """``text`` with its numbers as '#' (a log line's kind: the same problem with other figures), except in words
    that contain a '/' (topics, paths): cameras named cam1 and cam2 have errors of their own, which the log
    throttle must not take for one."""
    return re.sub(r"[^\s'\"(),;:]+", lambda m: m.group() if "/" in m.group() else re.sub(r"\d+", "#", m.group()),
                  text)


def _topics(frames: list) -> str:
    """The image topics of ``frames``, for a log line (each named once, in order): with several cameras an error
    says whose frames it cost, and one camera's error does not hide another's (the log throttle is per text)."""
    return ", ".join(dict.fromkeys(f.topic for f in frames))


def _needs_labels(wanted: set, s: Settings) -> bool:
    """Whether a frame with these wanted outputs needs segmentation labels: a segmentation output, or a cloud or
    depth that uses them (points.label, points.color_source, points.exclude_classes, depth.exclude_classes)."""
    # (the classes as parsed: a list of separators only, ', ,', excludes nothing, and the post-processing reads it so)
    cloud = "points" in wanted and (s["points.label"] or (s["points.color"] and s["points.color_source"] == "segmentation")
                                    or bool(params.class_labels(s["points.exclude_classes"])))
    return bool(wanted & set(_SEG_OUTPUTS)) or cloud or (
        bool(wanted & _METRIC_OUTPUTS) and bool(params.class_labels(s["depth.exclude_classes"])))


def _metric(variant, s: Settings) -> Optional[tuple[float, float]]:
    """(scale, shift) for depth_m = 1 / (scale * inv + shift): depth.scale, else the variant's constants."""
    if s["depth.scale"] > 0.0:
        return s["depth.scale"], s["depth.shift"]
    if variant.metric is not None:
        return variant.metric.scale, variant.metric.shift
    return None


_USAGE = """usage: {program} [--ros-args -p NAME:=VALUE ... -r FROM:=TO ... --params-file FILE]

The dpt_ros node: subscribes image (or image/compressed) and camera_info, runs DPT, publishes inverse_depth,
depth + depth/camera_info, segmentation, points (and their colored / compressed copies) and /diagnostics.
{managed}
Parameters (all of them, with ranges and defaults: README.md, "Parameters"; live: ros2 param list / describe):
  depth.variant, segmentation.variant   DPT variant; empty disables that task (dpt_hybrid, dpt_large, ...)
  depth.weights, segmentation.weights   checkpoint file (or Hugging Face snapshot folder), or random
  device, precision, cuda_graphs        auto / cpu / cuda[:N]; fp32 / fp16 / bf16; CUDA graphs on a GPU
  input_size, resize_method             network input size (multiple of 32, 0 = the variant's), resize rule
  cameras                               camera namespaces served by this node (default: one, the node's own)

Example:
  {program} --ros-args -p depth.weights:=weights/dpt_hybrid-midas-501f0c75.pt -r image:=/camera/image_raw \\
      -r camera_info:=/camera/camera_info
"""

# (dpt_lifecycle_node's --help: run from there, nothing happens until these transitions)
_MANAGED_USAGE = """
A managed (lifecycle) node: it starts unconfigured, with no model loaded and nothing subscribed, and waits for
  ros2 lifecycle set /dpt_node configure     (loads the model, creates the publishers)
  ros2 lifecycle set /dpt_node activate      (subscribes the cameras)
from you or a lifecycle manager; a launch file with managed:=true does both at start (README.md, "Managed
(lifecycle) node").
"""


def main(args=None, managed: bool = False, *, exiting: bool = False) -> int:
    """Entry point of ``dpt_node``: ``ros2 run dpt_ros dpt_node --ros-args -p depth.weights:=...``; with
    ``managed``, of ``dpt_lifecycle_node`` (:class:`DptLifecycleNode`). ``args``: the command line without the
    program name (``["--ros-args", "-p", "input_size:=384"]``); None: ``sys.argv``. ``exiting``: the process ends
    when this returns (:func:`run`), so a Ctrl-C, SIGTERM or SIGHUP after the node's stop began stays ignored;
    otherwise the SIGINT, SIGTERM and SIGHUP handlers found are set back."""
    # Never create world-writable files (ROS log files, anything written later), even when started
    # with a permissive umask such as 000: keep the caller's umask and add the "others: write" bit.
    os.umask(os.umask(0o022) | 0o002)
    program = "dpt_lifecycle_node" if managed else "dpt_node"
    try:   # the node takes ROS arguments only: anything else is a mistake (a parameter without --ros-args -p ...)
        rest = rclpy.utilities.remove_ros_args(sys.argv)[1:] if args is None else \
            rclpy.utilities.remove_ros_args(list(args))
    except Exception:  # noqa: BLE001 - malformed ROS arguments: rclpy.init below says what
        rest = []
    if any(a in ("-h", "--help") for a in rest):
        return write_last(_USAGE.format(program=program, managed=_MANAGED_USAGE if managed else "") + "\n", program)
    if rest:
        stderr_line(f"{program}: unexpected argument(s) {' '.join(map(repr, rest))}: the node takes ROS arguments "
                    f"only; parameters go after --ros-args, e.g. {program} --ros-args -p depth.weights:=<file> "
                    f"(--help: the main ones)")
        return 2
    # SIGTERM (systemd, docker stop, ros2 launch 5 s after its SIGINT) stops the node as Ctrl-C does: rclpy.init's
    # handler shuts the context down, then calls the handler it found, this one, which interrupts the main thread
    # wherever it is. Without it a model load or warm-up (dpt_hybrid on a small CPU: 10-30 s) ran to its end first.
    # SIGHUP (the terminal closed, the ssh session dropped) stops it as SIGTERM does: by default it killed the process
    # (exit 129) without the node's stop. Under nohup (SIGHUP ignored) it stays ignored.
    found = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, *_HANG_UP)} \
        if threading.current_thread() is threading.main_thread() else {}
    found = {sig: h for sig, h in found.items() if h is not None}   # (None: not Python's to replace)
    for sig in _HANG_UP:
        if found.get(sig) == signal.SIG_IGN or signal.SIGTERM not in found:
            found.pop(sig, None)
    if signal.SIGTERM in found:
        signal.signal(signal.SIGTERM, _interrupt)
    for sig in _HANG_UP:
        if sig in found:
            signal.signal(sig, _hang_up)
    try:
        code = init_ros(program, args)
    except KeyboardInterrupt:   # Ctrl-C or SIGTERM while rclpy initialised
        code = 0
        rclpy.try_shutdown()
    if code is not None:
        _set_handlers(found)
        return code
    # the reason a start fails is said once: on the console through the logger (also its log file), or, where the
    # console logger is off (--disable-stdout-logs), as a plain line on stderr
    stdout_logs = "--disable-stdout-logs" not in (sys.argv if args is None else args)

    def cannot_start(error: BaseException) -> Optional[int]:
        """The exit status for ``error``, None where it is no failure (Ctrl-C shut the context down), its reason said
        once: the node calls this before it takes itself down, while its /rosout publisher still exists (logged after,
        the line reached the console and log file only), main again with the exception that left the node."""
        if isinstance(error, StartupError):
            message, code = str(error), 2
        elif isinstance(error, (FileNotFoundError, PermissionError, ValueError)):   # a file or value the user gave
            message, code = f"cannot start: {error}", 2
        elif isinstance(error, (RuntimeError, OSError)) and rclpy.ok():   # e.g. CUDA out of memory in the model load
            message, code = f"cannot start: {type(error).__name__}: {error}", 1
        else:   # (Ctrl-C shut the context down under the executor: RCLError from its wait set, a normal exit)
            return None
        if not getattr(error, "said", False):
            error.said = True
            say(getattr(error, "logger_name", "dpt_node"), message, error, "start")   # (the node's name, where made)
        return code

    def say(name: str, message: str, error: BaseException, stage: str) -> None:
        """``message`` at FATAL under logger ``name`` (console, log file, /rosout) and, where the console logger is
        off, as a plain line on stderr (none where the process has no stderr, ``2>&-``: it went onto stdout, which a
        user may pipe as data; the FATAL line is in the log file and on /rosout). A plain line that cannot be written (stderr on a full disk, a closed pipe) is
        said at ERROR after the FATAL one, with ``error``, the failure of the ``stage`` (``"start"``, ``"stop"``):
        before, its OSError left ``main`` in place of the exit status (:func:`_call_on_failure` caught it for a start
        that failed in the node's constructor, not for one that failed after it or for a stop)."""
        logger = rclpy.logging.get_logger(name)
        logger.fatal(message)
        if stdout_logs:
            return
        try:
            stderr_line(f"{name}: {message}")
        except OSError as err:
            logger.error(f"saying why the {'node stopped' if stage == 'stop' else 'start failed'} failed too: writing "
                         f"it to stderr raised {type(err).__name__}: {err}; the {stage}'s error: "
                         f"{type(error).__name__}: {error}")

    def failed_after_start(error: Exception) -> int:
        """Exit status 1 for ``error``, out of the executor's spin once the node had started (no value or file the
        user gave at start-up: a callback, or rclpy's executor, failed in a way the node did not foresee), said once
        as a stop with its stack; 0 where it is no failure (Ctrl-C shut the context down under the executor: rclpy's
        RCLError or InvalidHandle from its wait set, RuntimeErrors). A plain line that cannot be written: ``say``."""
        if shut_down_under(error, node.context):
            return 0
        stack = "".join(traceback.format_exception(type(error), error, error.__traceback__)).rstrip()
        say(node.get_logger().name, f"stopped: {type(error).__name__}: {error}, after the node had started: an error it "
                                    f"did not foresee ended it; start it again to go on, and please report this with "
                                    f"the stack:\n{stack}", error, "stop")
        return 1

    node = None
    started = False   # the node made and added to the executor: what ends the spin is no failed start
    code = 0
    stopped = False   # by Ctrl-C, SIGTERM or an external shutdown
    # single-threaded, managed or not: the node destroys subscriptions and publishers in callbacks (transitions,
    # image_transport / depth.align / camera_info.url changes), which on rclpy's multi-threaded executor can raise
    # InvalidHandle in the spinning thread and end the process (ros2/rclpy#1206)
    executor = SingleThreadedExecutor()
    try:
        command_line = sys.argv[1:] if args is None else list(args)
        node = (DptLifecycleNode if managed else DptNode)(command_line=command_line, on_failure=cannot_start)
        executor.add_node(node)
        started = True
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException, _ShutDownDuringTransition):
        stopped = True
    except Exception as e:
        if started:
            code = failed_after_start(e)
        elif isinstance(e, (RuntimeError, OSError, ValueError)):
            code = cannot_start(e) or 0
        else:
            raise
    finally:
        # from here on a second Ctrl-C or SIGTERM (pressed twice; ros2 launch's SIGTERM 5 s after its SIGINT) is
        # ignored: it broke off this stop with a traceback (and a C++ abort, exit -6), or killed the process once
        # rclpy had uninstalled its handlers (exit -15). A function, not SIG_IGN: rclpy's uninstall puts Python's
        # C-level handler back, which with SIG_IGN in Python's table says "Signal 2 ignored due to race condition"
        _set_handlers(dict.fromkeys(found, _ignore))
        if node is not None:
            # after Ctrl-C, SIGTERM or an external shutdown the context is shut down: what the worker (a forward pass
            # of a big model on a CPU: seconds) or the model loader (a reload after `ros2 param set`: tens of
            # seconds) would finish can no longer be published, and is not waited for (ros2 launch sends SIGTERM 5 s
            # after SIGINT); the process ends right after this. Known by how the spin ended, not by the context
            # alone: rclpy shuts it down from its own signal thread, which under load comes after the main thread's
            # KeyboardInterrupt (2 busy cores: a Ctrl-C exit waited the full 10 s for a forward pass)
            node.destroy_node(_EXIT_WAIT_S if stopped or not node.context.ok() else 10.0)
        executor.shutdown()
        rclpy.try_shutdown()   # (its handlers uninstalled: the ones set above again)
        if not exiting:
            _set_handlers(found)
    return code


def _interrupt(signum, frame) -> None:
    """SIGTERM's handler while :func:`main` runs (after rclpy's, which shuts the context down): the stop a Ctrl-C
    makes, KeyboardInterrupt in the main thread."""
    raise KeyboardInterrupt


#: SIGHUP where there is one (not on Windows)
_HANG_UP = (signal.SIGHUP,) if hasattr(signal, "SIGHUP") else ()


def _hang_up(signum, frame) -> None:
    """SIGHUP's handler while :func:`main` runs: SIGTERM sent to this process, so that the stop is SIGTERM's (rclpy's
    handler shuts the context down, then :func:`_interrupt`), exit status 0."""
    os.kill(os.getpid(), signal.SIGTERM)


def _ignore(signum, frame) -> None:
    """SIGINT's, SIGTERM's and SIGHUP's handler once :func:`main` stops the node."""


def _set_handlers(handlers: dict) -> None:
    for sig, handler in handlers.items():
        signal.signal(sig, handler)


def run(managed: bool = False) -> None:
    """The process entry point (``ros2 run dpt_ros dpt_node``, ``python -m dpt_ros.ros.node``): :func:`main`,
    then the exit handlers (rclpy's logging shutdown among them) and a stdio flush, then the process ends
    without the interpreter's finalisation. Tearing torch down there takes 1-2 s on a 2-core machine
    (``python -c "import torch"`` alone: 1.0 s after its last statement), which made every Ctrl-C exit wait
    for it; the node itself has already stopped its worker and shut its context down by then."""
    hold_closed_streams()   # (started with 2>&- or 1>&-: see there)
    # a crash in native code (rcl, DDS, CUDA) prints every thread's Python stack; without a stderr (2>&-: sys.stderr
    # None) faulthandler.enable raised RuntimeError, and the process ended there, exit status 1, without a word
    if sys.stderr is not None:
        faulthandler.enable()
    try:
        code = main(managed=managed, exiting=True)
    except KeyboardInterrupt:   # a second signal in the instant before main's stop began to ignore it
        code = 0
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:   # (None: the process started with it closed)
            stream.flush()
    os._exit(code)


def run_managed() -> None:
    """The process entry point of ``ros2 run dpt_ros dpt_lifecycle_node``: :func:`run` with the managed node."""
    run(managed=True)


if __name__ == "__main__":
    run()
