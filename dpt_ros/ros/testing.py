"""Helpers for tests, tools and benchmarks that drive the node through a real rclpy graph:
a context per test module on its own ROS domain, an executor spinning in a background thread,
test frames and camera infos, and polling waits (no fixed sleeps). No pytest dependency."""
from __future__ import annotations

import array
import contextlib
import gc
import os
import re
import struct
import subprocess
import sys
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Optional

import cv2
import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticStatus
from rcl_interfaces.msg import ParameterType
from rcl_interfaces.srv import GetParameters, SetParameters, SetParametersAtomically
from rclpy.context import Context
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from dpt_ros import pipeline
from dpt_ros.ros import conversions
from dpt_ros.ros.dds_env import localhost_only
from dpt_ros.tools.bench_reliability import LineReader

#: a calibration file as camera_calibration's cameracalibrator writes it (ost.yaml): a 160x120 camera, focal length
#: 100 px, no distortion
OST_YAML = """image_width: 160
image_height: 120
camera_name: cam
camera_matrix: {rows: 3, cols: 3, data: [100., 0., 79.5, 0., 100., 59.5, 0., 0., 1.]}
distortion_model: plumb_bob
distortion_coefficients: {rows: 1, cols: 5, data: [0., 0., 0., 0., 0.]}
rectification_matrix: {rows: 3, cols: 3, data: [1., 0., 0., 0., 1., 0., 0., 0., 1.]}
projection_matrix: {rows: 3, cols: 4, data: [100., 0., 79.5, 0., 0., 100., 59.5, 0., 0., 0., 1., 0.]}
"""

#: parameters that make the node fast on 2 CPU cores (random weights, 64 px network)
FAST = {"depth.variant": "dpt_tiny", "depth.weights": "random", "input_size": 64, "device": "cpu"}


def wait_for(predicate: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    """Poll ``predicate`` every 10 ms until it is true; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def worker_done(node: Any) -> bool:
    """The node's worker holds no batch. It publishes a frame's outputs, then counts the frame processed (and each
    output), then keeps the batch's stage times, ages and rates, logs what it says of the batch (the first outputs'
    line, the old/ahead/unstamped warnings) and only then lets go of it: a test that waited for an output (or for the
    frame counted processed) waits for this too before it reads any of those, which a slow machine leaves unset for a
    while after the output is out."""
    return not node._in_worker and node._busy is None


def as_nobody(fn: Callable[[], int], raised: Optional[dict] = None) -> int:
    """Exit code of ``fn()`` run in a forked child that has become user nobody (no exec: the interpreter may live where
    nobody cannot read): ``fn``'s return value; an exception of a type in ``raised`` gives its code there, another 98.
    (Tests run as root: how a tool fares without root's rights is seen this way.)"""
    pid = os.fork()
    if pid == 0:
        code = 99
        try:
            os.setgid(65534)
            os.setuid(65534)
            code = fn()
        except BaseException as e:   # noqa: BLE001 - reported through the exit code
            code = (raised or {}).get(type(e), 98)
        finally:
            os._exit(code)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def can_mount_tmpfs() -> bool:
    """Whether this process may give a child a /dev/shm of its own (``unshare -m`` and a tmpfs mount: root)."""
    try:
        return subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c",
                               "mount -t tmpfs -o size=1m tmpfs /dev/shm"], capture_output=True).returncode == 0
    except OSError:
        return False


def with_own_dev_shm(size_mb: int, args: list, before: str = "", **popen: Any) -> subprocess.Popen:
    """``python -m <args>`` in a mount namespace of its own whose /dev/shm is a tmpfs of ``size_mb`` (a
    container's without --ipc=host); stdout and stderr together, as text; ``before``: shell commands run there first
    (e.g. filling the tmpfs to a known size); ``popen``: more Popen arguments (cwd, env, start_new_session)."""
    cmd = ["unshare", "-m", "--propagation", "private", "sh", "-c",
           f'mount -t tmpfs -o size={size_mb}m tmpfs /dev/shm && {before + " && " if before else ""}exec "$@"', "sh",
           sys.executable, "-m", *args]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen)


def watch_waits(node: Any, monkeypatch: Any, timeouts: Optional[list] = None) -> tuple[list, threading.Event]:
    """Where the node's worker waits for a frame's camera_info or depth.align reference (its condition
    ``_info_arrived``): the stamps (ns) of the frames that waited, in order, and an Event set while one waits; with
    pytest's ``monkeypatch``. A test of those waits counts them here rather than timing the frames. ``timeouts``: a
    list that gets (stamp, seconds) for each frame's first wait, how long it was to wait (its whole wait, less the
    moments since the worker set its deadline): a test of a wait's length reads it here rather than sending what
    the frame waits for a timed while later."""
    waits, waiting = [], threading.Event()
    real_wait = node._info_arrived.wait

    def wait(timeout=None):   # (the worker, holding the lock: the frame in it is the one waiting)
        stamp = conversions.stamp_ns(node._in_worker[0].msg.header)
        if not waits or waits[-1] != stamp:
            waits.append(stamp)
            if timeouts is not None:
                timeouts.append((stamp, timeout))
        waiting.set()
        try:
            return real_wait(timeout)
        finally:
            waiting.clear()

    monkeypatch.setattr(node._info_arrived, "wait", wait)
    return waits, waiting


def qos(reliability: str = "reliable", depth: int = 10) -> QoSProfile:
    return QoSProfile(depth=depth, reliability=ReliabilityPolicy.RELIABLE if reliability == "reliable"
                      else ReliabilityPolicy.BEST_EFFORT)


def pattern_image(width: int = 80, height: int = 60, seed: int = 0) -> np.ndarray:
    """A deterministic RGB test image with structure (gradient + noise)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1), (x + y) % 256], -1)
    return np.clip(base + rng.integers(0, 30, base.shape), 0, 255).astype(np.uint8)


#: the encodings :func:`make_image` writes
MAKE_IMAGE_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "rgb16", "bgr16", "rgba16", "bgra16", "mono8", "mono16")


def make_image(stamp_ns: int, width: int = 80, height: int = 60, frame_id: str = "cam_optical",
               encoding: str = "rgb8", seed: int = 0) -> Image:
    """An Image of :func:`pattern_image` in ``encoding`` (one of :data:`MAKE_IMAGE_ENCODINGS`), which decodes to that
    pattern (mono: its grey; a 4-channel one has an alpha ramp; 16-bit ones hold v * 257)."""
    header = Header(frame_id=frame_id)
    header.stamp.sec, header.stamp.nanosec = divmod(int(stamp_ns), 1_000_000_000)
    rgb = pattern_image(width, height, seed)
    if encoding in ("rgb8", "bgr8"):
        return conversions.image_msg(header, rgb[..., ::-1] if encoding == "bgr8" else rgb, encoding)
    if encoding not in MAKE_IMAGE_ENCODINGS:
        raise ValueError(f"make_image writes {', '.join(MAKE_IMAGE_ENCODINGS)}; got encoding {encoding!r}")
    if encoding.startswith("mono"):
        px = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    else:
        px = rgb[..., ::-1] if encoding.startswith("bgr") else rgb
        if encoding[3] == "a":
            alpha = (np.arange(width, dtype=np.uint8) * 7)[None, :, None]   # (wraps around: not all 255)
            px = np.concatenate([px, np.broadcast_to(alpha, (height, width, 1))], 2)
    if encoding.endswith("16"):
        px = px.astype(np.uint16) * 257
    view = pipeline.ImageView.from_array(px, encoding)
    msg = Image(header=header, height=height, width=width, encoding=encoding, is_bigendian=False, step=view.step)
    msg.data = array.array("B", view.data)
    return msg


def model_inverse_depth(node: Any, frame: Image) -> np.ndarray:
    """The inverse depth ``node``'s depth model gives ``frame`` (its model run here, as the node runs it, and upsampled
    to the frame's size): what the node publishes on inverse_depth for it, for a reference depth made from it."""
    rgb = pipeline.decode(conversions.image_view(frame), np)
    net = node.models.depth.run(node.models.depth_pre(rgb))["inverse_depth"]
    return pipeline.upsample(net, (frame.height, frame.width))[0].numpy()


def exact_reference(x: np.ndarray, near: float = 1.4, far: float = 5.0) -> tuple[np.ndarray, tuple[float, float]]:
    """A depth.align reference depth (32FC1 metres) from ``near`` to ``far`` metres that is exactly
    ``1 / (a * x + b)`` of the inverse depth ``x``, and (a, b): what the node's fit of it must give."""
    a = (1.0 / near - 1.0 / far) / float(x.max() - x.min())
    b = 1.0 / far - a * float(x.min())
    return (1.0 / (a * x + b)).astype(np.float32), (a, b)


def padded(image: Image, pad: int) -> Image:
    """A copy of ``image`` whose rows end in ``pad`` bytes of 0xAB beyond its pixels (a larger ``step``, as a
    driver's aligned rows have): a reader that ignores ``step`` reads those bytes as pixels."""
    rows = np.full((image.height, image.step + pad), 0xAB, np.uint8)
    rows[:, :image.step] = np.frombuffer(bytes(image.data), np.uint8).reshape(image.height, image.step)
    out = Image(header=image.header, height=image.height, width=image.width, encoding=image.encoding,
                is_bigendian=image.is_bigendian, step=image.step + pad)
    out.data = rows.tobytes()
    return out


def make_info(image: Image, fx: float = 50.0) -> CameraInfo:
    w, h = image.width, image.height
    k = [fx, 0.0, (w - 1) / 2, 0.0, fx, (h - 1) / 2, 0.0, 0.0, 1.0]
    p = [fx, 0.0, (w - 1) / 2, 0.0, 0.0, fx, (h - 1) / 2, 0.0, 0.0, 0.0, 1.0, 0.0]
    return conversions.camera_info_msg(image.header, w, h, k, p)


def read_compressed(fmt: str, data: bytes) -> tuple[str, np.ndarray]:
    """(encoding, pixels) of a CompressedImage of image_transport's ``compressed`` plugin, read as its
    subscriber does: the encoding is the part of ``format`` before ';', colour files hold BGR."""
    encoding = fmt.split(";")[0]
    img = cv2.imdecode(np.frombuffer(bytes(data), np.uint8), cv2.IMREAD_UNCHANGED)
    return encoding, (img[..., ::-1] if encoding.startswith("rgb") else img)


def read_compressed_depth(fmt: str, data: bytes) -> tuple[str, tuple, np.ndarray]:
    """(encoding, header, depth) of a CompressedImage of image_transport's ``compressedDepth`` plugin (PNG),
    read as its decoder does: a 12-byte header (int32 format, float32 a, float32 b) then a 16-bit PNG;
    32FC1: ``a / (q - b)`` metres, NaN where q = 0; 16UC1: the PNG's values."""
    encoding, _, rest = fmt.partition(";")
    if "compressedDepth png" not in rest:
        raise ValueError(f"not a compressedDepth png format: {fmt!r}")
    data = bytes(data)
    header = struct.unpack("<iff", data[:12])
    q = cv2.imdecode(np.frombuffer(data[12:], np.uint8), cv2.IMREAD_UNCHANGED)
    if q is None or q.dtype != np.uint16 or q.ndim != 2:
        raise ValueError("compressedDepth data after the header is not a 16-bit single-channel PNG")
    if encoding != "32FC1":
        return encoding, header, q
    a, b = np.float32(header[1]), np.float32(header[2])
    with np.errstate(divide="ignore"):
        depth = np.where(q > 0, a / (q.astype(np.float32) - b), np.float32(np.nan)).astype(np.float32)
    return encoding, header, depth


def publish_until(pub, make: Callable[[int], Any], received: list, n: int = 1, info_pub=None,
                  timeout: float = 30.0) -> None:
    """Publish ``make(1)``, ``make(2)``, ... (with a matching camera_info on ``info_pub``) every 0.2 s
    until ``received`` holds ``n`` messages: a best-effort or just-discovered subscription may miss
    the first ones. AssertionError after ``timeout`` seconds."""
    for i in range(1, max(1, int(timeout / 0.2)) + 1):
        if len(received) >= n:
            return
        img = make(i)
        if info_pub is not None:
            info_pub.publish(make_info(img))
        pub.publish(img)
        try:
            wait_for(lambda: len(received) >= n, timeout=0.2)
            return
        except AssertionError:
            continue
    raise AssertionError(f"no output after {timeout} s")


def frame_through(harness, image_topic: str, output_topic: str, frame: Image) -> Image:
    """The first image a node (one in another process too) publishes on ``output_topic`` for ``frame``, sent on
    ``image_topic`` (again every 0.2 s until one comes: :func:`publish_until`, 30 s) once discovery has connected this
    test's publisher to the node's subscription and the node's publisher to this test's collector."""
    out = harness.collector(Image, output_topic)
    pub = harness.probe.create_publisher(Image, image_topic, qos())
    wait_for(lambda: pub.get_subscription_count() > 0, timeout=30, what=f"the node's {image_topic} subscription")
    wait_for(lambda: harness.probe.count_subscribers(output_topic) > 0, what="collector discovery")
    wait_for(lambda: harness.probe.get_publishers_info_by_topic(output_topic) != [],
             what=f"the node's {output_topic} publisher")
    publish_until(pub, lambda i: frame, out, timeout=30)
    return out[0]


def assert_no_image_yet(status, slept: float, since: float, then: str = "") -> None:
    """``status``, a camera's DiagnosticStatus, is WARN "no image yet (N s since subscribing)" [+ ``then``], N the
    whole seconds of a silence of at least ``slept`` and at most ``since`` (measured by the test from before the
    subscription to after the report: on a loaded machine the report comes later than the sleep, and N with it)."""
    said = re.match(r"no image yet \((\d+) s since subscribing\)", status.message)
    assert status.level == DiagnosticStatus.WARN and said and status.message[said.end():].startswith(then), \
        status.message
    assert slept - 0.5 <= int(said[1]) <= since + 0.5, (status.message, slept, since)


class Streaming:
    """A camera that always sends the same picture: ``frame`` published on ``pub`` at ``rate`` Hz from a background
    thread until :meth:`stop`, its k-th publish stamped k periods (int(1e9 / rate) ns each) from 0."""

    def __init__(self, pub, frame: Image, rate: float = 30.0) -> None:
        self._pub, self._frame, self._rate = pub, frame, rate
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        k = 0
        while not self._stop.wait(1 / self._rate):
            k += 1
            self._frame.header.stamp.sec, self._frame.header.stamp.nanosec = divmod(k * int(1e9 / self._rate), 10**9)
            self._pub.publish(self._frame)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def truncated_checkpoint(path) -> str:
    """Write at ``path`` a PyTorch checkpoint cut short, as an interrupted download leaves it: it passes the quick
    check a weights parameter gets when set (a zip's first bytes), and its load in the background fails."""
    import torch  # noqa: PLC0415

    torch.save({"weight": torch.zeros(4096)}, path)
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)
    return str(path)


def gate_engine(engine) -> tuple[threading.Event, threading.Event, list]:
    """Hold every forward pass of ``engine`` until the returned ``gate`` is set; ``entered`` is set when
    the first one starts, and ``batches`` records each batch's shape (tests of frame slots and batching)."""
    real_run = engine.run
    gate, entered, batches = threading.Event(), threading.Event(), []

    def gated(batch):
        batches.append(tuple(batch.shape))
        entered.set()
        gate.wait(20)
        return real_run(batch)

    engine.run = gated
    return gate, entered, batches


@contextlib.contextmanager
def executor_held(harness: "Harness"):
    """Hold the harness's executor (which spins its nodes) in a callback of the probe for the block: messages sent
    meanwhile wait in DDS, not taken, as while a node's long callback (a parameter change) runs."""
    entered, release = threading.Event(), threading.Event()

    def hold() -> None:
        timer.cancel()
        entered.set()
        release.wait(60)

    timer = harness.probe.create_timer(0.001, hold)
    try:
        wait_for(entered.is_set, what="the executor held")
        yield
    finally:
        release.set()


class Harness:
    """One rclpy context on ``domain``; nodes added to a background single-threaded executor.

    The executor's thread outlives an exception out of ``spin_once`` (a test's callback that raised, an entity
    destroyed from the test thread while it waited): it is kept in ``spin_errors`` and printed (pytest shows it with
    a failing test's output), and spinning goes on. Before, the thread ended there, and every later message, service
    reply and discovery wait of the test timed out with no word of why."""

    def __init__(self, domain: int) -> None:
        for key, value in localhost_only().items():
            os.environ.setdefault(key, value)
        self.context = Context()
        rclpy.init(context=self.context, domain_id=domain)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.probe = Node("probe", context=self.context)
        self.executor.add_node(self.probe)
        self.nodes: list[Node] = []
        self.spin_errors: list[BaseException] = []
        self._others: list[tuple[Context, Node]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        while not self._stop.is_set() and self.context.ok():
            try:
                self.executor.spin_once(timeout_sec=0.02)
            except ExternalShutdownException:   # a test shut the context down
                return
            except Exception as exc:  # noqa: BLE001 - kept and shown; the harness must keep serving the test
                if self._stop.is_set() or not self.context.ok():
                    return
                self.spin_errors.append(exc)
                traceback.print_exception(exc)

    def start_node(self, namespace: str = "", cli_args: Optional[list] = None, managed: bool = False, **overrides):
        """A DptNode (with ``managed``, an unconfigured DptLifecycleNode) in this process with the FAST parameters,
        ``overrides`` on top, and ``cli_args`` (e.g. ``["--ros-args", "-r", "image:=/cam/image_raw"]``) parsed by
        rcl as on a command line."""
        from dpt_ros.ros.node import DptLifecycleNode, DptNode

        # a node of an earlier test left to the garbage collector unregisters, when the collector finalises it, the
        # /rosout publisher of its logger name: that of this new node too, whose log lines then stop reaching /rosout
        # (a test waiting for one failed 1 run in 3). Finalised now, before this node registers its own. (A DptNode
        # whose start failed, in its own start or in rclpy's Node constructor (-p use_sim_time:=1), destroys itself
        # before its exception leaves the constructor: what this guards against is a node nobody destroyed.)
        gc.collect()
        values = dict(FAST)
        values.update(overrides)
        node = (DptLifecycleNode if managed else DptNode)(
            context=self.context, namespace=namespace, cli_args=cli_args,
            parameter_overrides=[Parameter(k, value=v) for k, v in values.items()])
        self.nodes.append(node)
        self.executor.add_node(node)
        return node

    def remove_node(self, node) -> None:
        self.executor.remove_node(node)
        node.destroy_node()
        self.nodes.remove(node)

    def collector(self, msg_type, topic: str, reliability: str = "reliable") -> list:
        received: list = []
        # /rosout comes in bursts (a node's start-up, a warning with its context): a deep history, as rosout's own
        # publisher has (1000), so that a busy probe thread loses none of a burst
        depth = 1000 if msg_type.__name__ == "Log" else 10
        self.probe.create_subscription(msg_type, topic, received.append, qos(reliability, depth))
        return received

    def aligned_node(self, outputs: tuple = ("depth",), **overrides) -> tuple:
        """A node with depth.align (and ``overrides``), collectors of its ``outputs``, and reliable publishers of
        image and depth_reference, once discovery has connected them all. Returns (node, {output: received},
        image publisher, reference publisher)."""
        node = self.start_node(**{"depth.align": True, "diagnostics.period": 60.0, **overrides})
        got, (pub, ref_pub) = self.connect(node, dict.fromkeys(outputs, Image),
                                           {"image": Image, "depth_reference": Image})
        return node, got, pub, ref_pub

    def connect(self, node, outputs: dict, inputs: Optional[dict] = None) -> tuple[dict, list]:
        """Collectors of ``outputs`` ({topic: message type}) of ``node``'s first camera and reliable publishers of its
        ``inputs`` (likewise; by default image and camera_info), once discovery has connected them all. Returns
        ({output: received}, [the publisher of each input, in their order])."""
        got = {name: self.collector(msg_type, name) for name, msg_type in outputs.items()}
        pubs = [self.probe.create_publisher(msg_type, name, qos("reliable"))
                for name, msg_type in (inputs or {"image": Image, "camera_info": CameraInfo}).items()]
        cam = node.cameras[0]
        wait_for(lambda: all(p.get_subscription_count() > 0 for p in pubs) and
                 all(cam.pubs[name].get_subscription_count() > 0 for name in outputs), what="discovery")
        return got, pubs

    def cameras(self, node, namespaces, output: str = "inverse_depth") -> tuple[dict, dict]:
        """Per camera namespace of a multi-camera ``node``: a collector of its ``output`` images and an
        image publisher, once discovery has connected them. Returns ({ns: received}, {ns: publisher})."""
        outs = {ns: self.collector(Image, f"{ns}/{output}") for ns in namespaces}
        pubs = {ns: self.probe.create_publisher(Image, f"{ns}/image", qos()) for ns in namespaces}
        wait_for(lambda: all(p.get_subscription_count() > 0 for p in pubs.values()) and
                 all(c.pubs[output].get_subscription_count() > 0 for c in node.cameras), what="discovery")
        return outs, pubs

    def other_participant(self) -> Node:
        """A node in a context (so a DDS participant) of its own on the harness's domain, as another process's: its
        publisher may give a topic another message type than the node's subscription (one participant refuses that,
        create_publisher raises). Not spun; shut down with the harness."""
        context = Context()
        rclpy.init(context=context, domain_id=self.context.get_domain_id())
        node = Node("other_process", context=context)
        self._others.append((context, node))
        return node

    def shutdown(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for node in list(self.nodes):
            self.remove_node(node)
        self.executor.shutdown()
        self.probe.destroy_node()
        for context, node in self._others:
            node.destroy_node()
            rclpy.shutdown(context=context)
        rclpy.shutdown(context=self.context)




def call_service(harness: Harness, srv_type, name: str, request, timeout: float = 10.0):
    """Call a service from the harness's probe node and return the response (AssertionError on timeout)."""
    client = harness.probe.create_client(srv_type, name)
    try:
        if not client.wait_for_service(timeout_sec=timeout):
            raise AssertionError(f"service {name} not available")
        future = client.call_async(request)
        wait_for(future.done, timeout=timeout, what=f"{name} response")
        return future.result()
    finally:
        harness.probe.destroy_client(client)


def _node_path(node) -> str:
    """The fully qualified name of ``node`` (a node, in whatever namespace; or a name: ``/ns/name``, or a plain
    ``name`` of one in the root namespace, e.g. in another process), where its parameter services are."""
    if isinstance(node, str):
        return node if node.startswith("/") else f"/{node}"
    return node.get_fully_qualified_name()


def set_params(harness: Harness, node, **values) -> list:
    """What `ros2 param set` does: the SetParameters service of ``node`` (a node, or the name of one: ``/ns/name``,
    or ``name`` in the root namespace, e.g. in another process); returns the results."""
    req = SetParameters.Request(parameters=[Parameter(k, value=v).to_parameter_msg() for k, v in values.items()])
    return call_service(harness, SetParameters, f"{_node_path(node)}/set_parameters", req).results


def set_params_atomically(harness: Harness, node, **values):
    """What `ros2 param load` does: the values in one SetParametersAtomically request to ``node`` (as for
    :func:`set_params`; names with a dot as ``**{"depth.align": True}``), all set or none; returns its result."""
    req = SetParametersAtomically.Request(parameters=[Parameter(k, value=v).to_parameter_msg()
                                                      for k, v in values.items()])
    return call_service(harness, SetParametersAtomically, f"{_node_path(node)}/set_parameters_atomically", req).result


def get_params(harness: Harness, node, *names: str) -> list:
    """The values of ``names`` through the node's GetParameters service (``node`` as for :func:`set_params`), as
    Python values."""
    res = call_service(harness, GetParameters, f"{_node_path(node)}/get_parameters",
                       GetParameters.Request(names=list(names)))
    kinds = {ParameterType.PARAMETER_BOOL: "bool_value", ParameterType.PARAMETER_INTEGER: "integer_value",
             ParameterType.PARAMETER_DOUBLE: "double_value", ParameterType.PARAMETER_STRING: "string_value",
             ParameterType.PARAMETER_STRING_ARRAY: "string_array_value"}
    return [list(getattr(pv, kinds[pv.type])) if pv.type == ParameterType.PARAMETER_STRING_ARRAY
            else getattr(pv, kinds[pv.type]) for pv in res.values]


def node_ready_to_process(harness: Harness) -> tuple[Any, Any, Image]:
    """A dpt_tiny node (random weights, 32 px, metric through depth.scale 1) whose ``depth`` has a subscriber (the
    lazy node computes only subscribed outputs) and whose camera has a camera_info, with a frame: ``node.process``
    takes that frame through every stage. Returns (node, its camera, the frame)."""
    node = harness.start_node(**{"depth.variant": "dpt_tiny", "depth.weights": "random", "input_size": 32,
                                 "depth.scale": 1.0})
    cam = node.cameras[0]
    harness.collector(Image, "depth")
    wait_for(lambda: cam.pubs["depth"].get_subscription_count() > 0, what="discovery")
    frame = make_image(1)
    node._on_info(cam, make_info(frame))
    return node, cam, frame


#: run before a tool in a fresh interpreter: SIGINT (Ctrl-C, its default handler as in a terminal) arrives while the
#: module named by the first argument is being imported
CTRL_C_DURING_IMPORT = """
import os, signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)
class CtrlCAtImportOf:
    module = sys.argv.pop(1)
    def find_spec(self, name, path=None, target=None):
        if name == self.module:
            sys.meta_path.remove(self)
            os.kill(os.getpid(), signal.SIGINT)
        return None
sys.meta_path.insert(0, CtrlCAtImportOf())
"""


def console_script(name: str) -> str:
    """Python code that runs setup.py's console script ``name`` as its generated wrapper does."""
    setup = (Path(__file__).resolve().parents[2] / "setup.py").read_text()   # (the source tree's)
    module, function = re.search(rf'"{name} = ([\w.]+):(\w+)"', setup).groups()
    return f"import importlib; sys.exit(getattr(importlib.import_module({module!r}), {function!r})())"


#: the first lines of a script that runs a console script as from a terminal: Ctrl-C raises KeyboardInterrupt and a
#: hang-up kills (a suite run in the background inherits SIGINT ignored, one under nohup SIGHUP)
AS_IN_A_TERMINAL = """
import signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)
signal.signal(signal.SIGHUP, signal.SIG_DFL)
"""


def held_console_script(name: str, module: str, function: str, marker: str) -> str:
    """Python code that runs setup.py's console script ``name`` as from a terminal (:data:`AS_IN_A_TERMINAL`), held
    where it calls ``module``'s ``function``: that prints ``marker`` and waits for signals, as long as a test needs."""
    return AS_IN_A_TERMINAL + f"""import importlib
def held(*args, **kwargs):
    print({marker!r}, flush=True)
    while True:
        signal.pause()
setattr(importlib.import_module({module!r}), {function!r}, held)
""" + console_script(name)


def concurrently(fn: Callable, cases, workers: int = 4) -> list:
    """``fn(case)`` for each case, ``workers`` at a time, the results in the cases' order. For cases that each start a
    process and read how it ended (each its own process: its exit status and output are its alone): such a start is
    mostly Python's start and imports (torch, cv2, rclpy: about 2 s), which one after another made up most of a
    test's time (the 16 starts of test_out_of_range_or_mistyped_... took 35 s of CI's)."""
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(fn, cases))


@contextlib.contextmanager
def killed_at_end(proc: subprocess.Popen):
    """The block's process killed (and reaped) at the block's end where it still runs: a test that failed midway
    leaves no node behind."""
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def signalled_at(proc: subprocess.Popen, marker: str, sig: int, what: str = "", *,
                 timed: bool = False) -> tuple:
    """Send ``sig`` to ``proc`` (its output a text pipe, read here, by its :class:`LineReader` where a test made one)
    once its output holds ``marker`` (waited for as ``what``, 60 s at most): (its exit status, all its output), and
    with ``timed`` the seconds from the signal to its exit third. Fails, with the output, where the process ended
    before it printed ``marker``, and, killed, where it still ran 30 s after the signal."""
    reader = getattr(proc, "line_reader", None) or LineReader(proc)
    with killed_at_end(proc):
        wait_for(lambda: marker in reader.text() or proc.poll() is not None, timeout=60, what=what or marker)
        assert proc.poll() is None, reader.text()
        proc.send_signal(sig)
        sent = time.monotonic()
        try:
            code = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running 30 s after signal {sig}:\n{reader.text()}") from None
        seconds = time.monotonic() - sent
    return (code, reader.join(), seconds) if timed else (code, reader.join())
