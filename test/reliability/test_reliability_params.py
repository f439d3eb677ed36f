"""Parameters under load: hundreds of concurrent calls to the node's real parameter services
(set_parameters and set_parameters_atomically, several clients, all in flight at once), valid and
invalid, while a 30 Hz camera streams. Invalid calls are rejected with a reason; every output was
made with one consistent parameter snapshot; no exception escapes.

How consistency is seen from outside: every valid atomic call sets ``depth.scale = k`` and
``depth.shift = 2 k`` together. The node publishes inverse depth ``v`` and metric depth
``d = 1 / (scale * v + shift)`` of each frame, so fitting ``1/d = a v + b`` per frame gives the
snapshot it used: ``b / a`` must be exactly 2 and ``a`` one of the values sent. A frame that mixed
two snapshots (scale from one, shift from another) shows up as ``b / a != 2``."""
import random
import threading
import time

import numpy as np
from rcl_interfaces.srv import GetParameters, SetParameters, SetParametersAtomically
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image

from dpt_ros.ros import conversions
from dpt_ros.ros.testing import Streaming, make_image, qos, wait_for
from dpt_ros.tools.bench_reliability import record

DOMAIN = 54
SCALES = [round(0.5 + 0.25 * i, 2) for i in range(19)]   # 0.5 .. 5.0

INVALID = [  # (name, value, substring of the reason)
    ("depth.min", 5000.0, "must be below depth.max"),
    ("depth.max", -1.0, "out of range"),
    ("depth.scale", float("nan"), "depth.scale"),
    ("colormap", "no_such_map", "no_such_map"),
    ("colormap_range", "sometimes", "not one of"),
    ("points.stride", 0, "points.stride"),
    ("points.stride", 1000, "points.stride"),
    ("input_size", 33, "input_size"),
    ("precision", "fp16", "fp16"),
    ("device", "cuda:7", "cuda:7"),
    ("depth.variant", "dpt_large_ade20k", "not a depth variant"),
    ("depth.weights", "/nonexistent/dpt.pt", "does not exist"),
    ("depth.scale", "one", "depth.scale is a double; got a string"),
    ("qos.input_depth", 3, "read-only"),
    ("cameras", ["a", "b"], "read-only"),
    ("no.such.parameter", 1, "unknown parameter 'no.such.parameter' refused"),
    ("colourmap", "gray", "did you mean 'colormap'?"),
    ("segmentation.overlay_alpha", 1.5, "overlay_alpha"),
]
VALID_SINGLE = [("colormap", "gray"), ("colormap", "inferno"), ("points.stride", 4), ("points.stride", 2),
                ("colormap_range", "fixed"), ("colormap_range", "running"), ("depth.max", 500.0),
                ("depth.max", 1000.0), ("publish.inverse_depth_colored", True)]


def _fit(inv: np.ndarray, depth: np.ndarray) -> tuple[float, float] | None:
    """(scale, shift) of ``1/depth = scale * inv + shift``; None when the frame cannot tell them apart
    (random weights can give a constant inverse depth, e.g. all zeros after the final ReLU)."""
    ok = np.isfinite(depth) & (depth > 0) & np.isfinite(inv)
    x = inv[ok].astype(np.float64)
    y = 1.0 / depth[ok].astype(np.float64)
    if x.size < 2 or np.ptp(x) < 1e-6 * max(1.0, float(np.abs(x).max())):
        return None
    a, b = np.polyfit(x, y, 1)
    return float(a), float(b)


def test_hundreds_of_concurrent_parameter_calls_while_streaming(harness, rosout):
    node = harness.start_node(**{"depth.scale": 1.0, "depth.shift": 2.0})
    inv_msgs, depth_msgs = {}, {}
    key = lambda m: (m.header.stamp.sec, m.header.stamp.nanosec)  # noqa: E731
    harness.probe.create_subscription(Image, "inverse_depth", lambda m: inv_msgs.__setitem__(key(m), m), qos())
    harness.probe.create_subscription(Image, "depth", lambda m: depth_msgs.__setitem__(key(m), m), qos())
    pub = harness.probe.create_publisher(Image, "image", qos("reliable"))
    wait_for(lambda: pub.get_subscription_count() > 0 and
             node.cameras[0].pubs["depth"].get_subscription_count() > 0, what="discovery")
    set_clients = [harness.probe.create_client(SetParameters, "/dpt_node/set_parameters") for _ in range(4)]
    atomic_clients = [harness.probe.create_client(SetParametersAtomically, "/dpt_node/set_parameters_atomically")
                      for _ in range(4)]
    for c in set_clients + atomic_clients:
        assert c.wait_for_service(timeout_sec=10)
    mark = rosout.mark()
    rng = random.Random(7)
    calls = []   # (kind, expected ok, reason needle, future)
    for i in range(120):
        k = rng.choice(SCALES)
        calls.append(("atomic", True, "", k, [("depth.scale", k), ("depth.shift", 2 * k)]))
    for i in range(40):   # an invalid value inside an atomic call rejects the whole call
        k = rng.choice(SCALES)
        name, value, needle = rng.choice([x for x in INVALID[:12] if x[0] != "depth.scale"])
        calls.append(("atomic", False, needle, None, [("depth.scale", k), ("depth.shift", 2 * k), (name, value)]))
    for i in range(170):
        name, value, needle = INVALID[i % len(INVALID)]
        calls.append(("set", False, needle, None, [(name, value)]))
    for i in range(90):
        name, value = VALID_SINGLE[i % len(VALID_SINGLE)]
        calls.append(("set", True, "", None, [(name, value)]))
    calls.append(("atomic", True, "", None, [("input_size", 96)]))   # two model swaps under load
    calls.append(("atomic", True, "", None, [("input_size", 64)]))
    rng.shuffle(calls)

    camera = Streaming(pub, make_image(0, 80, 60))
    futures = [None] * len(calls)
    lock = threading.Lock()

    def fire(indices):   # several threads x several clients: all calls in flight together
        for i in indices:
            kind, _, _, _, values = calls[i]
            msgs = [Parameter(n, value=v).to_parameter_msg() for n, v in values]
            client = (atomic_clients if kind == "atomic" else set_clients)[i % 4]
            req = (SetParametersAtomically if kind == "atomic" else SetParameters).Request(parameters=msgs)
            fut = client.call_async(req)
            with lock:
                futures[i] = fut
            time.sleep(0.005)   # spread the storm over more camera frames

    t0 = time.monotonic()
    try:
        wait_for(lambda: len(depth_msgs) >= 3, what="stream running")
        senders = [threading.Thread(target=fire, args=(range(j, len(calls), 4),)) for j in range(4)]
        for s in senders:
            s.start()
        for s in senders:
            s.join()
        wait_for(lambda: all(f is not None and f.done() for f in futures), timeout=120, what="every reply")
        calls_s = time.monotonic() - t0
        # a depth model asked for in the storm may still be loading: until it is swapped in, the running model's frames
        # keep the calibration they had when it was asked for (by design), so the frames counted from here on are
        # those after the swap
        wait_for(lambda: not node._model_loading, timeout=120, what="the model swap")
        n = len(depth_msgs)
        # on a loaded machine few frames get through during the storm, and the probe (busy with the
        # replies) can miss one of a frame's two outputs: stream on until enough frames have both
        wait_for(lambda: len(depth_msgs) >= n + 5 and len(depth_msgs.keys() & inv_msgs.keys()) >= 15,
                 timeout=30, what="outputs after the storm (15 frames with inverse_depth and depth)")
    finally:
        camera.stop()
    accepted = rejected = 0
    wrong = []
    for (kind, ok, needle, _, values), fut in zip(calls, futures):
        res = fut.result()
        results = [res.result] if kind == "atomic" else list(res.results)
        for r in results:
            if ok:
                accepted += 1
                if not r.successful:
                    wrong.append(("valid value rejected", values, r.reason))
            else:
                rejected += 1
                if r.successful or not (r.reason and needle.lower() in r.reason.lower()):
                    wrong.append(("invalid value accepted or unclear reason", values, r.successful, r.reason))
    assert not wrong, "\n".join(map(str, sorted(set(map(str, wrong)))))
    # every output: one snapshot (shift == 2 * scale, scale one of the values sent)
    pairs = [(inv_msgs[k], depth_msgs[k]) for k in sorted(depth_msgs) if k in inv_msgs]
    seen = set()
    worst = 0.0
    fits = [_fit(conversions.image_array(inv), conversions.image_array(depth)) for inv, depth in pairs]
    degenerate = sum(f is None for f in fits)
    assert len(fits) - degenerate >= 10, f"only {len(fits) - degenerate} of {len(fits)} outputs could be checked"
    for a, b in (f for f in fits if f is not None):
        worst = max(worst, abs(b / a - 2.0))
        k = min(SCALES, key=lambda s: abs(s - a))
        assert abs(a - k) < 1e-3 * k, f"scale {a} is not a value that was set"
        seen.add(k)
    assert worst < 1e-3, f"a frame mixed two parameter snapshots: shift/scale off by {worst}"
    # nothing escaped: no internal errors, no traceback, the node still answers
    assert not set(node.error_counts()) - {"model_load"}, node.error_counts()
    logs = rosout.lines("dpt_node", 0, mark)
    assert not any("Traceback" in x or "Exception" in x for x in logs), [x for x in logs if "Traceback" in x]
    get = harness.probe.create_client(GetParameters, "/dpt_node/get_parameters")
    fut = get.call_async(GetParameters.Request(names=["depth.scale", "depth.shift"]))
    wait_for(fut.done, what="get_parameters")
    scale, shift = (v.double_value for v in fut.result().values)
    assert shift == 2 * scale
    # the last accepted snapshot is the one applied: the newest frame (streamed on after every reply) used it
    last = max(k for k in depth_msgs if k in inv_msgs)
    inv, depth = conversions.image_array(inv_msgs[last]), conversions.image_array(depth_msgs[last])
    finite = np.isfinite(depth)
    assert finite.sum() > 100, "the newest frame has too few finite depths to check"
    expected = 1.0 / np.maximum(scale * inv[finite].astype(np.float64) + shift, 1e-8)
    np.testing.assert_allclose(depth[finite], expected, rtol=1e-5)
    # changes reached the outputs while streaming (how many distinct ones depends on how many frames
    # got through during the ~1 s storm on this machine: 3 or more so far)
    assert len(seen) >= 2, f"only scales {seen} reached the outputs"
    figures = dict(parameter_calls=len(calls), values_accepted=accepted, values_rejected_with_reason=rejected,
                   seconds_for_all_replies=round(calls_s, 2), outputs_checked=len(pairs) - degenerate,
                   distinct_snapshots_seen_in_outputs=len(seen), max_snapshot_mismatch=float(f"{worst:.2g}"),
                   model_swaps_under_load=2)
    record("params", **figures)
