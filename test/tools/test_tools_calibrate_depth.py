"""Metric calibration of a relative model (depth.scale / depth.shift) from a reference depth: the fit
(pipeline.calibration) on synthetic frames with known constants, and the ROS tool end to end through DDS
against a running node's parameter service."""
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import yaml

from dpt_ros import pipeline
from dpt_ros.pipeline.calibration import depth_errors, fit_scale_shift, inverse_depth_pairs
from dpt_ros.tools.bench_reliability import LineReader

DOMAIN = 74
tool = pytest.importorskip("dpt_ros.tools.calibrate_depth")   # (imports rclpy only inside its functions)
SCALE, SHIFT = 0.25, 0.08


def _frame(rng, h=60, w=80, noise=0.01, outliers=0.0):
    """(inverse depth, reference metres) of one view with the true calibration SCALE / SHIFT."""
    inv = rng.uniform(0.2, 4.0, (h, w)).astype(np.float32)
    ref = 1.0 / (SCALE * inv.astype(np.float64) + SHIFT) * rng.normal(1.0, noise, (h, w))
    bad = rng.random((h, w)) < outliers
    ref[bad] *= rng.uniform(2.0, 4.0, bad.sum())   # a sensor's wrong returns (e.g. reflections)
    return inv, ref.astype(np.float32)


@pytest.fixture
def tool_node():
    """(harness, the tool's own node, its executor) in domain DOMAIN, taken down after the test."""
    pytest.importorskip("rclpy")
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node

    from dpt_ros.ros.testing import Harness

    harness = Harness(DOMAIN)
    node = executor = None
    try:
        node = Node("calibrate_test", context=harness.context)
        executor = SingleThreadedExecutor(context=harness.context)
        executor.add_node(node)
        yield harness, node, executor
    finally:
        if executor is not None:
            executor.shutdown()
        if node is not None:
            node.destroy_node()
        harness.shutdown()


def _collection_ends_with(match: str, tool_args: list, node, executor, *published: tuple) -> None:
    """calibrate_depth's collection (``tool_args``) on ``node`` / ``executor`` ends with a SystemExit matching
    ``match`` while each (publisher, message) of ``published`` is sent in turn, 50 ms apart, every round (once every
    publisher has a subscriber)."""
    from dpt_ros.tools import calibrate_depth as tool

    done = []

    def run():
        while not done:
            if all(pub.get_subscription_count() > 0 for pub, _ in published):
                for i, (pub, msg) in enumerate(published):
                    if i:
                        time.sleep(0.05)
                    pub.publish(msg)
            time.sleep(0.05)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    try:
        with pytest.raises(SystemExit, match=match):
            tool.collect(tool.parse_args(tool_args), node, executor)
    finally:
        done.append(True)
        t.join(5)


def test_calibration_recovers_the_constants_and_reports_its_error():
    rng = np.random.default_rng(1)
    c = pipeline.calibrate([_frame(rng) for _ in range(4)], min_depth=0.1, max_depth=50.0, stride=2)
    assert c.scale == pytest.approx(SCALE, rel=0.01) and c.shift == pytest.approx(SHIFT, abs=0.003)
    assert c.frames == 4 and c.pixels == 4 * 30 * 40
    assert 0.003 < c.median_abs_rel < 0.012          # 1 % noise on the reference
    assert c.frame_scale_spread < 0.03
    assert c.parameters() == {"depth.scale": c.scale, "depth.shift": c.shift}


def test_trimmed_refit_resists_wrong_reference_returns():
    rng = np.random.default_rng(2)
    frames = [_frame(rng, noise=0.005, outliers=0.08) for _ in range(3)]
    x, y = np.concatenate([inverse_depth_pairs(i, r, 0.1, 50.0, 1)[0] for i, r in frames]), \
        np.concatenate([inverse_depth_pairs(i, r, 0.1, 50.0, 1)[1] for i, r in frames])
    plain = fit_scale_shift(x, y, trim=0.0)
    trimmed = fit_scale_shift(x, y, trim=0.1)
    assert abs(trimmed[0] - SCALE) < 0.2 * abs(plain[0] - SCALE)   # 8 % outliers: the plain fit is pulled
    assert trimmed[0] == pytest.approx(SCALE, rel=0.01)


def test_pixels_without_a_measurement_are_not_used():
    rng = np.random.default_rng(3)
    inv, ref = _frame(rng)
    ref[:10] = np.nan                  # REP 117: no measurement
    ref[10:20] = np.inf                # too far
    ref[20:25] = -np.inf               # too near
    ref[25:30] = 0.0                   # a 16UC1 sensor's "no measurement", converted
    ref[30:32] = 0.05                  # below min_depth
    inv[32:34] = np.nan
    x, y = inverse_depth_pairs(inv, ref, min_depth=0.1, max_depth=50.0, stride=1)
    assert x.size == y.size == (60 - 34) * 80 and np.isfinite(x).all() and np.isfinite(y).all()
    np.testing.assert_allclose(1.0 / y, ref[34:].ravel().astype(np.float64), rtol=1e-6)


def test_calibration_refuses_what_cannot_be_fitted_with_the_reason():
    rng = np.random.default_rng(4)
    inv, ref = _frame(rng)
    with pytest.raises(pipeline.CalibrationFitError, match="one size"):
        pipeline.calibrate([(inv, ref[:, :40])])
    with pytest.raises(pipeline.CalibrationFitError, match="not positive"):   # depth grows where inverse depth grows
        pipeline.calibrate([(inv, (1.0 / ref).astype(np.float32))], max_depth=50.0)
    with pytest.raises(pipeline.CalibrationFitError, match="constant"):
        pipeline.calibrate([(np.ones_like(inv), ref)], max_depth=50.0)
    with pytest.raises(pipeline.CalibrationFitError, match="only 0 pixels"):
        pipeline.calibrate([(inv, np.full_like(ref, np.nan))])
    # a reference of one depth everywhere (a saturated 16UC1 sensor: 65.535 m; a wall square to the cameras) gave a
    # "fit" with scale 5e-35 and 0 % error
    for flat in (65.535, 2.0):
        with pytest.raises(pipeline.CalibrationFitError, match="the reference depth is the same at every valid pixel"):
            pipeline.calibrate([(inv, np.full_like(ref, flat))], max_depth=70.0)
    with pytest.raises(pipeline.CalibrationFitError, match="no frames"):
        pipeline.calibrate([])
    few = np.full_like(ref, np.nan)
    few[0, :9] = ref[0, :9]
    with pytest.raises(pipeline.CalibrationFitError, match="only 9 pixels .* at least 10"):
        pipeline.calibrate([(inv, few)], max_depth=50.0, stride=1)
    # millimetres in a 32FC1 reference: every pixel beyond --max-depth, "only 0 pixels" and no word of why
    with pytest.raises(pipeline.CalibrationFitError) as e:
        pipeline.calibrate([(inv, ref * 1000.0)])
    median = float(np.median(ref[::4, ::4].astype(np.float64) * 1000.0))
    assert str(e.value) == (
        f"only 0 pixels with a valid reference depth; at least 10 are needed: the reference's median depth is "
        f"{median:.4g} m, beyond 100 m, more than any depth camera measures: millimetres in a 32FC1 image, it seems "
        f"(REP 118: 32FC1 depth is in metres; 16UC1 is the millimetre encoding); publish the reference as 32FC1 "
        f"metres or 16UC1 millimetres (a bag converted to 32FC1 without dividing by 1000: convert it again)")


def test_the_spread_of_the_per_frame_fits_is_reported():
    """Two frames whose own scales are 0.25 and 0.30 (a relative model's scale moves between frames):
    the spread is (0.30 - 0.25) / 0.275 and the joint fit lies between them."""
    rng = np.random.default_rng(6)
    a = _frame(rng, noise=0.0)
    inv = rng.uniform(0.2, 4.0, (60, 80)).astype(np.float32)
    b = (inv, (1.0 / (0.30 * inv.astype(np.float64) + SHIFT)).astype(np.float32))
    c = pipeline.calibrate([a, b], min_depth=0.1, max_depth=50.0, stride=1, trim=0.0)
    assert c.frame_scale_spread == pytest.approx(0.05 / 0.275, rel=1e-3)
    assert 0.25 < c.scale < 0.30


def test_reference_images_in_metres_or_millimetres_and_their_size():
    from dpt_ros import pipeline
    from dpt_ros.ros import conversions
    from dpt_ros.ros.testing import make_image

    header = make_image(1, 4, 4).header
    mm = np.array([[0, 1500], [65535, 250]], np.uint16)
    got = conversions.depth_metres(conversions.image_msg(header, mm, "16UC1"))
    np.testing.assert_allclose(got, [[np.nan, 1.5], [65.535, 0.25]], rtol=1e-6)
    # the metres depth_image_proc reads from millimetres (mm * 0.001f), bit for bit: one conversion in the package
    every = np.arange(1, 65536, dtype=np.uint16).reshape(255, 257)
    np.testing.assert_array_equal(conversions.depth_metres(conversions.image_msg(header, every, "16UC1")),
                                  every.astype(np.float32) * np.float32(0.001))
    m = np.array([[np.nan, 2.0], [np.inf, 0.5]], np.float32)
    np.testing.assert_array_equal(conversions.depth_metres(conversions.image_msg(header, m, "32FC1")), m)
    with pytest.raises(ValueError, match="32FC1 .* or 16UC1"):
        conversions.depth_metres(conversions.image_msg(header, np.zeros((2, 2, 3), np.uint8), "rgb8"))
    with pytest.raises(ValueError) as refused:   # (a colourised depth, a depth viewer's 8-bit image): what to give
        conversions.depth_metres(conversions.image_msg(header, np.zeros((2, 2), np.uint8), "8UC1"))
    assert str(refused.value) == (
        "reference depth must be 32FC1 (metres) or 16UC1 / mono16 (millimetres); got '8UC1': give the depth camera's "
        "depth image (its depth registered to the colour camera, e.g. /camera/aligned_depth_to_color/image_raw), not "
        "a colourised or 8-bit view of it")
    big = np.arange(16, dtype=np.float32).reshape(4, 4)
    np.testing.assert_array_equal(pipeline.reference_to_size(big, (2, 2)), big[1::2, 1::2])   # nearest: no blending
    # each output pixel takes the source pixel under its centre: column floor((j + 0.5) * 2.5) of 1280 -> 512
    wide = np.tile(np.arange(1280, dtype=np.float32), (720, 1))
    got = pipeline.reference_to_size(wide, (288, 512))
    np.testing.assert_array_equal(got[0], np.floor((np.arange(512) + 0.5) * 2.5))
    assert got[0, :6].tolist() == [1, 3, 6, 8, 11, 13]
    with pytest.raises(pipeline.CalibrationFitError, match="different aspect ratios"):
        pipeline.reference_to_size(big, (2, 4))


def test_pairing_by_stamp_uses_each_frame_once():
    from dpt_ros.tools.calibrate_depth import Pairing

    p = Pairing(tolerance_ns=5_000_000, keep=3)
    a, b = np.zeros((2, 2), np.float32), np.ones((2, 2), np.float32)
    p.add("inverse", 100_000_000, a)
    p.add("reference", 120_000_000, b)      # 20 ms off: no pair
    p.add("reference", 103_000_000, b)      # 3 ms off: pairs with the inverse frame
    assert len(p.pairs) == 1 and p.pairs[0][0] is a and p.pairs[0][1] is b
    p.add("inverse", 104_000_000, a)        # the 103 ms reference is used up; 120 ms is too far
    assert len(p.pairs) == 1 and set(p.inverse) == {104_000_000} and set(p.reference) == {120_000_000}
    for t in range(5):                      # the waiting frames stay bounded: the newest are kept
        p.add("reference", 200_000_000 + t * 50_000_000, b)
    assert sorted(p.reference) == [300_000_000, 350_000_000, 400_000_000]


def test_pairing_waits_for_a_node_that_publishes_seconds_after_the_stamp():
    """DPT-Hybrid on a CPU: a frame every 2 s, its inverse depth published 3 s after its stamp, a 30 Hz depth camera.
    The references of those 3 s (90 frames) were dropped after 60, so no frame ever paired (the tool timed out);
    frames that can no longer pair still go, so the waiting references stay bounded."""
    from dpt_ros.tools.calibrate_depth import Pairing

    img = np.zeros((6, 8), np.float32)
    for latency, period, frames, most in ((3.0, 2.0, 10, 200), (0.05, 0.1, 200, 40)):   # CPU, then a GPU's node
        p = Pairing(tolerance_ns=20_000_000)
        events = [(i / 30, "reference", round(i * 1e9 / 30)) for i in range(round(30 * period * frames))]
        events += [(k * period + latency, "inverse", round(k * period * 1e9)) for k in range(frames)]
        waiting = 0
        for _, kind, stamp in sorted(events):
            p.add(kind, stamp, img)
            if kind == "inverse":
                waiting = max(waiting, len(p.reference))
        assert len(p.pairs) == frames
        assert not p.inverse and waiting <= most, (latency, waiting)


def test_the_tool_fits_from_topics_and_sets_the_running_node(tmp_path):
    """Through DDS: a probe publishes an inverse-depth stream and a 16UC1 reference stream 3 ms apart; the
    tool (its own process) pairs them, fits, writes the parameter file and sets both parameters on a running
    dpt_node with one atomic call."""
    pytest.importorskip("rclpy")
    from sensor_msgs.msg import Image

    from dpt_ros.ros import conversions
    from dpt_ros.ros.dds_env import localhost_only
    from dpt_ros.ros.testing import Harness, make_image, qos, wait_for

    harness = Harness(DOMAIN)
    try:
        node = harness.start_node()
        assert node.settings["depth.scale"] == 0.0
        inv_pub = harness.probe.create_publisher(Image, "calib/inverse_depth", qos())
        ref_pub = harness.probe.create_publisher(Image, "calib/reference", qos())
        out = tmp_path / "my calibration.yaml"   # (a name with a space: the commands printed quote it)
        env = dict(os.environ, ROS_DOMAIN_ID=str(DOMAIN), **localhost_only())
        tool = subprocess.Popen([sys.executable, "-m", "dpt_ros.tools.calibrate_depth", "--inverse", "/calib/inverse_depth",
                                 "--reference", "/calib/reference", "--frames", "5", "--tolerance", "0.005",
                                 "--min-depth", "0.1", "--max-depth", "50", "--stride", "2", "--timeout", "60",
                                 "--apply", "/dpt_node", "--yaml", str(out)],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        reader = LineReader(tool)   # (its output read as it comes: one that filled the pipe would block the tool)
        wait_for(lambda: inv_pub.get_subscription_count() > 0 and ref_pub.get_subscription_count() > 0
                 or tool.poll() is not None, timeout=30, what="the tool's subscriptions")
        rng = np.random.default_rng(5)
        i = 0
        while tool.poll() is None and i < 200:   # until the tool has its frames (best effort may lose some)
            inv, ref = _frame(rng, h=96, w=128)
            stamp = 10_000_000_000 + i * 100_000_000
            header = make_image(stamp, 4, 4).header
            ref_header = make_image(stamp + 3_000_000, 4, 4).header     # the depth sensor's own clock, 3 ms later
            mm = np.rint(ref * 1000.0).astype(np.uint16)
            mm[:4] = 0                                                   # no measurement
            inv_pub.publish(conversions.image_msg(header, inv, "32FC1"))
            ref_pub.publish(conversions.image_msg(ref_header, mm, "16UC1"))
            i += 1
            time.sleep(0.05)
        tool.wait(60)
        text = reader.join()
        assert tool.returncode == 0, text[-3000:]
        assert "ros2 param set /dpt_node depth.scale" in text and "set on /dpt_node" in text
        assert f"  wrote {out} (--params-file '{out}', or config_file:='{out}' in the launch files)\n" in text, text
        values = yaml.safe_load(out.read_text())["/**"]["ros__parameters"]
        assert values["depth.scale"] == pytest.approx(SCALE, rel=0.02)
        assert values["depth.shift"] == pytest.approx(SHIFT, abs=0.005)
        wait_for(lambda: node.settings["depth.scale"] == values["depth.scale"], what="the node's new scale")
        assert node.settings["depth.shift"] == values["depth.shift"]
        # the file is a parameter file rcl reads (--params-file, or config_file:= in the launch files)
        other = harness.start_node(namespace="from_file", cli_args=["--ros-args", "--params-file", str(out)])
        assert (other.settings["depth.scale"], other.settings["depth.shift"]) == (values["depth.scale"],
                                                                                  values["depth.shift"])
    finally:
        harness.shutdown()


def test_collect_stops_at_a_reference_it_cannot_read_and_apply_reports_refusals(tool_node):
    """In process, on the tool's own executor: a colour image sent as the reference ends the collection with
    the reason; a value the node refuses comes back as its reason; an absent node is named."""
    from sensor_msgs.msg import Image

    from dpt_ros.ros import conversions
    from dpt_ros.ros.testing import make_image, qos
    from dpt_ros.tools import calibrate_depth as tool

    harness, node, executor = tool_node
    harness.start_node()
    _collection_ends_with("must be 32FC1 .* got 'rgb8'", ["--reference", "/calib/colour", "--inverse", "/calib/inverse",
                          "--timeout", "20"], node, executor,
                          (harness.probe.create_publisher(Image, "/calib/colour", qos()), make_image(1)))
    # a reference of another aspect ratio, found when the node's image arrives second: the same one-line reason
    # (the inverse-depth callback let it escape as a traceback)
    square = conversions.image_msg(make_image(1).header, np.full((160, 160), 2.0, np.float32), "32FC1")
    inverse = conversions.image_msg(make_image(1).header, np.full((60, 80), 0.5, np.float32), "32FC1")
    _collection_ends_with("reference depth 160x160 and inverse depth 80x60 have different aspect",
                          ["--reference", "/calib/square", "--inverse", "/calib/inverse", "--timeout", "20"],
                          node, executor, (harness.probe.create_publisher(Image, "/calib/square", qos()), square),
                          (harness.probe.create_publisher(Image, "/calib/inverse", qos()), inverse))
    why = tool.apply(tool.parameter_client(node, "/dpt_node"), executor, "/dpt_node",
                     {"depth.scale": -1.0, "depth.shift": 0.0})
    assert "depth.scale" in why and "range" in why, why
    assert tool.apply(tool.parameter_client(node, "/no_such_node"), executor, "/no_such_node", {"depth.scale": 1.0},
                      timeout=0.5).startswith("no parameter service of /no_such_node")


def test_a_compressed_depth_reference_is_decoded_or_refused_with_the_reason(tool_node):
    """--reference-transport compressedDepth: the tool subscribes <reference>/compressedDepth and pairs the depth decoded
    from it (16UC1 millimetres built here: ConfigHeader + cv2.imencode PNG); an RVL-coded one ends the collection with
    the reason."""
    import struct

    import cv2
    from sensor_msgs.msg import CompressedImage, Image

    from dpt_ros.ros import conversions
    from dpt_ros.ros.testing import make_image, qos
    from dpt_ros.tools import calibrate_depth as tool

    harness, node, executor = tool_node
    mm = np.tile(np.arange(1000, 1080, dtype=np.uint16), (60, 1))
    mm[0, 0] = 0
    header = make_image(1).header
    msg = CompressedImage(header=header, format="16UC1; compressedDepth png",
                          data=struct.pack("<iff", 0, 0.0, 0.0) + cv2.imencode(".png", mm)[1].tobytes())
    inverse = conversions.image_msg(header, np.full((60, 80), 0.5, np.float32), "32FC1")
    ref_pub = harness.probe.create_publisher(CompressedImage, "/calib/cd/compressedDepth", qos())
    inv_pub = harness.probe.create_publisher(Image, "/calib/inverse", qos())
    done = []

    def run():
        while not done:
            if ref_pub.get_subscription_count() and inv_pub.get_subscription_count():
                ref_pub.publish(msg)
                inv_pub.publish(inverse)
            time.sleep(0.05)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    try:
        pairs = tool.collect(tool.parse_args(["--reference", "/calib/cd", "--reference-transport", "compressedDepth",
                                              "--inverse", "/calib/inverse", "--frames", "1", "--timeout", "20"]),
                             node, executor)
    finally:
        done.append(True)
        t.join(5)
    ref = pairs[0][1]
    assert np.isnan(ref[0, 0]) and ref[0, 1] == np.float32(1001 * 0.001) and ref[5, 79] == np.float32(1079 * 0.001)
    msg.format = "16UC1; compressedDepth rvl"
    _collection_ends_with("RVL-coded compressedDepth is not supported, only PNG",
                          ["--reference", "/calib/cd", "--reference-transport", "compressedDepth", "--inverse",
                           "/calib/inverse", "--timeout", "20"], node, executor, (ref_pub, msg))


def test_an_inverse_topic_that_is_not_32fc1_ends_the_collection_with_the_reason(tool_node):
    """--inverse /inverse_depth/colored (rgb8) ended with "too many values to unpack (expected 2)"; a mono8 image
    (segmentation labels) of the reference's size was fitted as if it were inverse depth. The topic is named as
    resolved (--inverse calib/enc_inverse: /calib/enc_inverse, as ros2 topic list shows it)."""
    from sensor_msgs.msg import Image

    from dpt_ros.ros import conversions
    from dpt_ros.ros.testing import make_image, qos

    harness, node, executor = tool_node
    ref_pub = harness.probe.create_publisher(Image, "/calib/enc_reference", qos())
    inv_pub = harness.probe.create_publisher(Image, "/calib/enc_inverse", qos())
    reference = conversions.image_msg(make_image(1).header, np.full((60, 80), 2.0, np.float32), "32FC1")
    for wrong in (make_image(1),                                                              # rgb8
                  conversions.image_msg(make_image(1).header, np.ones((60, 80), np.uint8), "mono8")):
        _collection_ends_with(
            f"/calib/enc_inverse must be the node's inverse_depth \\(32FC1\\); got '{wrong.encoding}'",
            ["--reference", "/calib/enc_reference", "--inverse", "calib/enc_inverse", "--frames", "1",
             "--timeout", "20"], node, executor, (ref_pub, reference), (inv_pub, wrong))


def test_a_topic_without_a_publisher_is_named_when_the_collection_gives_up(tool_node):
    """'0 of 30 pairs ... check both topics' said nothing of a topic that nobody publishes (a wrong name or
    namespace, another ROS_DOMAIN_ID): it now names each topic without a publisher, and none when both have one."""
    from sensor_msgs.msg import Image

    from dpt_ros.ros.testing import qos, wait_for
    from dpt_ros.tools import calibrate_depth as tool

    harness, node, executor = tool_node
    common = ["--frames", "2", "--timeout", "0.5"]
    with pytest.raises(SystemExit) as e:
        tool.collect(tool.parse_args(["--reference", "/calib/nobody_ref", "--inverse", "/calib/nobody_inv", *common]),
                     node, executor)
    assert str(e.value) == (
        "calibrate_depth: 0 of 2 stamp-matched pairs in 0.5 s (waiting: 0 /calib/nobody_inv, 0 /calib/nobody_ref). "
        "No publisher found on /calib/nobody_inv nor on /calib/nobody_ref: check the names (ros2 topic list; the "
        "node's topics are under its namespace) and ROS_DOMAIN_ID. Check both topics (ros2 topic hz) and their "
        "stamps; --tolerance widens the match")
    # the default --inverse, inverse_depth, and a relative --reference are said as resolved, the names ros2 topic list
    # shows (they were said as given: "0 inverse_depth", "No publisher found on inverse_depth nor on nobody_ref")
    with pytest.raises(SystemExit) as e:
        tool.collect(tool.parse_args(["--reference", "calib/nobody_ref", *common]), node, executor)
    assert str(e.value).startswith(
        "calibrate_depth: 0 of 2 stamp-matched pairs in 0.5 s (waiting: 0 /inverse_depth, 0 /calib/nobody_ref). "
        "No publisher found on /inverse_depth nor on /calib/nobody_ref: check the names (ros2 topic list;"), e.value
    harness.probe.create_publisher(Image, "/calib/quiet_ref", qos())   # published, but nothing sent
    wait_for(lambda: node.count_publishers("/calib/quiet_ref") == 1, what="the reference's publisher")
    with pytest.raises(SystemExit) as e:
        tool.collect(tool.parse_args(["--reference", "/calib/quiet_ref", "--inverse", "/calib/nobody_inv", *common]),
                     node, executor)
    assert "(waiting: 0 /calib/nobody_inv, 0 /calib/quiet_ref). No publisher found on /calib/nobody_inv: check the " \
           "name (ros2 topic list;" in str(e.value)
    harness.probe.create_publisher(Image, "/calib/quiet_inv", qos())
    wait_for(lambda: node.count_publishers("/calib/quiet_inv") == 1, what="the inverse depth's publisher")
    with pytest.raises(SystemExit) as e:
        tool.collect(tool.parse_args(["--reference", "/calib/quiet_ref", "--inverse", "/calib/quiet_inv", *common]),
                     node, executor)
    assert str(e.value).endswith("0 /calib/quiet_ref). Check both topics (ros2 topic hz) and their stamps; "
                                 "--tolerance widens the match")


def test_depth_errors_are_the_usual_figures_over_pixels_with_both_depths():
    ref = np.full((10, 10), 2.0, np.float32)
    depth = ref * 1.1
    depth[:, 5:] = ref[:, 5:] * 1.5            # half the pixels 50 % too far
    depth[9, :5] = ref[9, :5] * 0.7            # 5 pixels 30 % too near: outside delta 1.25 too (1 / 0.7)
    depth[0] = np.nan                          # REP 117: no prediction
    depth[1] = np.inf
    depth[2] = -np.inf
    depth[3] = 0.0
    ref[4, :2] = np.nan                        # no reference
    e = depth_errors([(depth, ref)], min_depth=0.1, max_depth=20.0, stride=1)
    assert (e.frames, e.pixels) == (1, 58)     # rows 4..9, minus 2 pixels without a reference
    n_ok, n_near, n_far = 23, 5, 30            # 1.1x: row 4 has 3 (cols 2-4), rows 5-8 have 5 each; 1.5x: 6 rows x 5
    assert e.delta_1_25 == pytest.approx(n_ok / 58)
    assert e.abs_rel_mean == pytest.approx((0.1 * n_ok + 0.3 * n_near + 0.5 * n_far) / 58, rel=1e-6)
    assert e.abs_rel_median == pytest.approx(0.5, rel=1e-6)
    assert e.rmse_m == pytest.approx(np.sqrt((n_ok * 0.2 ** 2 + n_near * 0.6 ** 2 + n_far * 1.0 ** 2) / 58), rel=1e-6)
    with pytest.raises(pipeline.CalibrationFitError, match="no pixel has both"):
        depth_errors([(np.full_like(ref, np.nan), ref)])


def test_the_tool_evaluates_a_metric_depth_topic_against_the_reference(capsys):
    """--evaluate: the node-side depth as 16UC1 millimetres 4 % too far, the reference 32FC1 metres."""
    pytest.importorskip("rclpy")
    from sensor_msgs.msg import Image

    from dpt_ros.ros import conversions
    from dpt_ros.ros.dds_env import localhost_only
    from dpt_ros.ros.testing import Harness, make_image, qos, wait_for
    from dpt_ros.tools import calibrate_depth as tool

    for extra in (["--apply", "/dpt_node"], ["--inverse", "/dpt_node/inverse_depth"]):   # (it would ignore them)
        with pytest.raises(SystemExit):
            tool.parse_args(["--reference", "r", "--evaluate", "d", *extra])
    assert "takes no --inverse, --apply or --yaml" in capsys.readouterr().err
    for bad, why in ((["--tolerance", "inf"], "argument --tolerance: inf is no stamp tolerance: give 0 or more "
                                              "seconds"),   # (inf ended in an OverflowError traceback)
                     (["--tolerance", "nan"], "argument --tolerance: nan is no stamp tolerance"),
                     (["--tolerance", "-0.01"], "argument --tolerance: -0.01 is no stamp tolerance"),
                     # (-5 waited 0 s)
                     (["--timeout", "-5"], "argument --timeout: -5 is no time limit: give more than 0 seconds"),
                     (["--timeout", "0"], "argument --timeout: 0 is no time limit: give more than 0 seconds"),
                     (["--frames", "0"], "argument --frames: 0 is no number of pairs: give at least 1"),
                     (["--stride", "0"], "argument --stride: 0 is no number of pixels per step: give at least 1"),
                     (["--min-depth", "-1"], "argument --min-depth: -1 is no depth: give 0 or more metres"),
                     (["--max-depth", "inf"], "argument --max-depth: inf is no depth: give more than 0 metres"),
                     (["--min-depth", "5", "--max-depth", "3"], "error: --min-depth 5 is not below --max-depth 3: no "
                                                                "reference depth would be used; give a --min-depth "
                                                                "below --max-depth")):
        with pytest.raises(SystemExit) as info:
            tool.parse_args(["--reference", "r", *bad])
        err = capsys.readouterr().err
        assert info.value.code == 2 and why in err, (bad, err)
    assert tool.parse_args(["--reference", "r"]).inverse == "inverse_depth"
    harness = Harness(DOMAIN)
    try:
        depth_pub = harness.probe.create_publisher(Image, "eval/depth", qos())
        ref_pub = harness.probe.create_publisher(Image, "eval/reference", qos())
        env = dict(os.environ, ROS_DOMAIN_ID=str(DOMAIN), **localhost_only())
        proc = subprocess.Popen([sys.executable, "-m", "dpt_ros.tools.calibrate_depth", "--evaluate", "/eval/depth",
                                 "--reference", "/eval/reference", "--frames", "3", "--stride", "1", "--timeout", "60"],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        reader = LineReader(proc)   # (its output read as it comes: one that filled the pipe would block the tool)
        wait_for(lambda: depth_pub.get_subscription_count() > 0 and ref_pub.get_subscription_count() > 0
                 or proc.poll() is not None, timeout=30, what="the tool's subscriptions")
        rng = np.random.default_rng(7)
        i = 0
        while proc.poll() is None and i < 200:
            ref = rng.uniform(1.0, 9.0, (48, 64)).astype(np.float32)
            header = make_image(10_000_000_000 + i * 100_000_000, 4, 4).header
            depth_pub.publish(conversions.image_msg(header, np.rint(ref * 1040.0).astype(np.uint16), "16UC1"))
            ref_pub.publish(conversions.image_msg(header, ref, "32FC1"))
            i += 1
            time.sleep(0.05)
        proc.wait(60)
        text = reader.join()
        assert proc.returncode == 0, text[-3000:]
        assert "/eval/depth against /eval/reference: 3 frames, 9216 pixels" in text, text
        assert "AbsRel median 4.0 %, mean 4.0 %" in text and "delta < 1.25: 100.0 % of pixels" in text, text
    finally:
        harness.shutdown()


def test_printed_and_written_values_read_back_as_the_same_doubles():
    """``ros2 param set`` and parameter files read values as YAML: 1e-05 would be a string there; and ros2's argument
    parser (argparse) takes -3.2e-05 for an option: only -1 or -1.5 pass as negative numbers before Python 3.13."""
    import argparse
    import re

    from dpt_ros.ros.params import yaml_float
    from dpt_ros.tools.calibrate_depth import parameter_yaml

    negative_number = re.compile(r"^-\d+$|^-\d*\.\d+$")   # argparse's rule (Python 3.10-3.12)
    ros2_param_set = argparse.ArgumentParser()
    for name in ("node_name", "parameter_name", "value"):
        ros2_param_set.add_argument(name)
    for v in (1e-05, 6.016e-05, 0.25, -0.0057, 3.0e12, 1e-300, 2.0, -3.2e-05, -12.630812, -1e-300, 332.0):
        text = yaml_float(v)
        assert isinstance(yaml.safe_load(text), float) and yaml.safe_load(text) == v, (v, text)
        assert v > 0 or negative_number.match(text), text
        assert float(ros2_param_set.parse_args(["/dpt_node", "depth.shift", text]).value) == v
    c = pipeline.Calibration(1e-05, -2e-06, 3, 100, 0.05, 0.01)
    values = yaml.safe_load(parameter_yaml(c))["/**"]["ros__parameters"]
    assert values == {"depth.scale": 1e-05, "depth.shift": -2e-06}


@pytest.mark.parametrize(("flags", "said"), [
    (["--reference", "/bad topic"], "argument --reference: '/bad topic' is no ROS topic name (topic name must not "
     "contain characters other than alphanumerics, '_', '~', '{', or '}'): give the topic as 'ros2 topic list' shows "
     "it, e.g. /camera/aligned_depth_to_color/image_raw"),
    (["--inverse", "1inv"], "argument --inverse: '1inv' is no ROS topic name (topic name token must not start with a "
     "number): give the topic as 'ros2 topic list' shows it, e.g. /inverse_depth"),
    (["--inverse", ""], "argument --inverse: '' is no ROS topic name (topic name must not be empty string)"),
    (["--evaluate", "{foo}/depth"], "argument --evaluate: '{foo}/depth' is no ROS topic name (unknown substitution: "
     "{foo}): give the topic as 'ros2 topic list' shows it, e.g. /depth"),
    (["--apply", "bad node"], "argument --apply: 'bad node' is no ROS node name (node name must not contain characters "
     "other than alphanumerics or '_'): give the node's name as 'ros2 node list' shows it, e.g. /dpt_node"),
    (["--apply", ""], "argument --apply: '' is no ROS node name (no node name given)"),
    (["--apply", "/"], "argument --apply: '/' is no ROS node name (no node name given)"),
    (["--apply", "/robot//dpt_node"], "argument --apply: '/robot//dpt_node' is no ROS node name (the name must not "
     "contain repeated '/')"),
])
def test_a_name_that_is_no_ros_name_is_a_usage_error(flags, said, capsys):
    """An invalid topic or node name is a usage error (exit 2) naming the option, the name, rcl's reason and what to
    give, before rclpy starts (was: rcl's raw refusal after start-up, exit 1, --apply's of a service name the user
    never typed, 'bad node/set_parameters_atomically'; an empty --inverse / --apply was taken as not given)."""
    with pytest.raises(SystemExit) as e:
        tool.parse_args(["--reference", "/ref", *flags])
    err = capsys.readouterr().err
    assert e.value.code == 2 and f": error: {said}" in err, err


def test_names_rcl_takes_are_taken_as_given():
    """Relative, private and absolute names, and a node name with a trailing '/', pass the check unchanged."""
    args = tool.parse_args(["--reference", "camera/depth", "--inverse", "~/inverse_depth", "--apply", "/ns/dpt_node/"])
    assert (args.reference, args.inverse, args.apply) == ("camera/depth", "~/inverse_depth", "/ns/dpt_node/")
    assert tool.parse_args(["--reference", "/r", "--apply", "dpt_node"]).apply == "dpt_node"
    assert tool.parse_args(["--reference", "/r", "--evaluate", "/front/depth"]).evaluate == "/front/depth"


def test_ctrl_c_while_collecting_is_one_line_and_130(tmp_path):
    """SIGINT while waiting for frames: rclpy's handler shuts the context down; the tool says so in one line and
    exits 130, as documented (was: ExternalShutdownException traceback, exit 1). The signal goes once the tool's
    subscription of the reference is seen (a fixed 4 s stood for that: on 2 busy cores, before rclpy.init at times)."""
    pytest.importorskip("rclpy")
    from dpt_ros.ros.dds_env import localhost_only
    from dpt_ros.ros.testing import Harness, wait_for

    env = dict(os.environ, ROS_DOMAIN_ID=str(DOMAIN), PYTHONUNBUFFERED="1", **localhost_only())
    harness = Harness(DOMAIN)
    proc = subprocess.Popen([sys.executable, "-c", "from dpt_ros.tools.calibrate_depth import run; run()",
                             "--reference", "/nothing_here", "--frames", "3", "--timeout", "60"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # (both pipes read as they come: one that filled would block the tool before it subscribed)
    out_reader, err_reader = LineReader(proc), LineReader(proc, stream=proc.stderr)
    try:
        wait_for(lambda: harness.probe.count_subscribers("/nothing_here") > 0 or proc.poll() is not None, timeout=60,
                 what="the tool's subscription")
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        proc.wait(30)
        out, err = out_reader.join(), err_reader.join()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        harness.shutdown()
    assert proc.returncode == 130 and err.strip() == "calibrate_depth: interrupted", (proc.returncode, err[-2000:])


# A stop signal lands after the executor has checked the context and before it makes its wait set: the signal is
# sent from the wait set's constructor (its name the script's first argument), which goes on once rclpy's handler has
# shut the context down
_SIGNAL_BEFORE_THE_WAIT_SET = """
import os, signal, sys, time
import rclpy
from rclpy import executors
sig = getattr(signal, sys.argv.pop(1))
real = executors._rclpy.WaitSet
def wait_set(*args):
    executors._rclpy.WaitSet = real
    os.kill(os.getpid(), sig)
    deadline = time.monotonic() + 10
    while rclpy.ok() and time.monotonic() < deadline:
        time.sleep(0.01)
    print("context ok:", rclpy.ok(), file=sys.stderr, flush=True)
    return real(*args)
executors._rclpy.WaitSet = wait_set
from dpt_ros.tools.calibrate_depth import run
run()
"""


def test_a_stop_just_before_the_executor_waits_is_one_line_and_130():
    """SIGTERM (ros2 launch's, after its SIGINT) shuts the context down from rclpy's handler thread; landing between
    the executor's check of the context and the wait set it makes, rclpy raises RCLError ("failed to initialize wait
    set: the given context is not valid"). The tool says it was interrupted, as for a stop anywhere else (was: that
    traceback, exit 1; a full suite run showed it once for a Ctrl-C in the test above)."""
    pytest.importorskip("rclpy")
    from dpt_ros.ros.dds_env import localhost_only

    env = dict(os.environ, ROS_DOMAIN_ID=str(DOMAIN), PYTHONUNBUFFERED="1", **localhost_only())
    proc = subprocess.run([sys.executable, "-c", _SIGNAL_BEFORE_THE_WAIT_SET, "SIGTERM", "--reference", "/nothing_here",
                           "--frames", "3", "--timeout", "60"], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 130, (proc.returncode, proc.stderr[-2000:])
    assert proc.stderr.split("\n", 1)[0] == "context ok: False"   # (the race as it happens: the context already down)
    assert proc.stderr.strip().splitlines()[1:] == ["calibrate_depth: interrupted"], proc.stderr[-2000:]


def test_a_yaml_file_it_cannot_write_is_said_before_collecting(tmp_path, capsys):
    """--yaml naming a folder, or a file in a folder that does not exist: a usage error at once (exit 2), not after
    --frames pairs were collected."""
    for path, said in ((tmp_path, "is a folder"), (tmp_path / "no_dir" / "c.yaml", "no folder"),
                       # (a folder of the kernel's, as for the tools' --out: the option named in what to give instead)
                       ("/dev/dpt_ros_c.yaml", "where no folder or file of yours belongs; give --yaml a path "
                                               "elsewhere")):
        with pytest.raises(SystemExit) as e:
            tool.parse_args(["--reference", "/ref", "--yaml", str(path)])
        assert e.value.code == 2 and said in capsys.readouterr().err
    assert tool.parse_args(["--reference", "/ref", "--yaml", str(tmp_path / "c.yaml")]).yaml == str(tmp_path / "c.yaml")


def test_a_yaml_file_that_cannot_be_written_after_collecting_is_said_with_what_to_do(tmp_path):
    """A write of --yaml that fails after the pairs were collected (a full disk: here a name linked to /dev/full,
    which parse_args takes) said only the system's 'No space left on device'; it says the file system is full, where,
    and what to do, as the tools' --out."""
    from dpt_ros.tools import _file_system

    full = tmp_path / "c.yaml"
    full.symlink_to("/dev/full")
    assert tool.parse_args(["--reference", "/ref", "--yaml", str(full)]).yaml == str(full)
    c = pipeline.Calibration(0.25, 0.08, 3, 100, 0.05, 0.01)
    fs_type, mount = _file_system(tmp_path)
    assert tool.write_yaml(str(full), c) == (f"the file system of {tmp_path} is full (No space left on device; "
                                              f"{fs_type} mounted at {mount}): free some space on it, or give --yaml "
                                              "a path on another file system")
    written = tmp_path / "d.yaml"
    assert tool.write_yaml(str(written), c) == "" and written.read_text() == tool.parameter_yaml(c)


def test_a_yaml_write_that_fails_keeps_the_earlier_calibration_whole(tmp_path, file_size_limit):
    """--yaml was opened with open(path, "w"), which empties the file first: a write that failed part-way (a disk that
    filled up meanwhile; here for real, the process's file size limit below the file's size: EFBIG) left the earlier
    calibration, the one the node loads with --params-file, cut short. It is written to a temporary beside it and
    renamed over it: a failed write leaves the earlier file as it was and no temporary; a write that succeeds leaves
    the new file alone, with the earlier one's mode; a link is written through (its target replaced, the link kept)."""
    earlier = pipeline.Calibration(0.5, 0.1, 3, 100, 0.05, 0.01)
    later = pipeline.Calibration(0.25, 0.08, 3, 100, 0.05, 0.01)
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text(tool.parameter_yaml(earlier))
    yaml_file.chmod(0o640)
    with file_size_limit(64):   # (the file is about 170 bytes)
        why = tool.write_yaml(str(yaml_file), later)
    assert why == ("the file is larger than this process's file size limit, 64 bytes (File too large; ulimit -f 0 in "
                   "the shell that started it): raise it (ulimit -f unlimited)"), why
    assert yaml_file.read_text() == tool.parameter_yaml(earlier)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml"]   # (no temporary left)
    assert tool.write_yaml(str(yaml_file), later) == "" and yaml_file.read_text() == tool.parameter_yaml(later)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml"] and yaml_file.stat().st_mode & 0o777 == 0o640
    link = tmp_path / "current.yaml"
    link.symlink_to(yaml_file.name)
    assert tool.write_yaml(str(link), earlier) == "" and link.is_symlink()
    assert yaml_file.read_text() == tool.parameter_yaml(earlier)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml", "current.yaml"]


def test_a_yaml_name_or_path_too_long_is_said_with_its_length_and_the_limit_before_collecting(tmp_path, monkeypatch,
                                                                                                usage_error):
    """--yaml with a name longer than the file system takes was accepted, and after --frames pairs were collected the
    write said only "cannot write <name>: File name too long" (exit status 1); a path longer than PATH_MAX in folders
    that are there was refused as "no folder <its folder>". Both are refused at once (exit status 2) with the length,
    the limit and what to give; a short name relative to a working folder deeper than PATH_MAX is taken (the write
    reaches it)."""
    limit = os.pathconf(tmp_path, "PC_NAME_MAX")
    name = str(tmp_path / ("c" * (limit + 1 - len(".yaml")) + ".yaml"))
    usage_error(tool.parse_args, ["--reference", "/ref", "--yaml", name],
                f"argument --yaml: {name}: File name too long ({limit + 1} bytes; the file system of {tmp_path} takes "
                f"names of {limit} bytes at most): give --yaml a shorter name\n")
    monkeypatch.chdir(tmp_path)
    folder = "d" * 200
    for _ in range(os.pathconf("/", "PC_PATH_MAX") // 201 + 1):   # (made and entered one at a time: each fits)
        os.mkdir(folder)
        os.chdir(folder)
    deep = os.path.join(os.getcwd(), "c.yaml")
    usage_error(tool.parse_args, ["--reference", "/ref", "--yaml", deep],
                f"argument --yaml: {deep}: File name too long (the path is {len(deep)} bytes; the system takes paths "
                f"shorter than {os.pathconf('/', 'PC_PATH_MAX')} bytes): give --yaml a shorter path (e.g. relative to "
                "a folder nearer it, cd there first)\n")
    assert tool.parse_args(["--reference", "/ref", "--yaml", "c.yaml"]).yaml == "c.yaml"


def test_ctrl_c_while_the_console_script_imports_rclpy_is_one_line_and_130():
    """`ros2 run dpt_ros calibrate_depth`, Ctrl-C in its first second (rclpy being imported): the same one line and
    130 as later (was: a KeyboardInterrupt traceback from inside the import)."""
    from dpt_ros.ros.testing import CTRL_C_DURING_IMPORT, console_script

    env = dict(os.environ, ROS_DOMAIN_ID=str(DOMAIN))
    r = subprocess.run([sys.executable, "-c", CTRL_C_DURING_IMPORT + console_script("calibrate_depth"), "rclpy",
                        "--reference", "/nothing_here", "--frames", "1", "--timeout", "30"],
                       env=env, capture_output=True, text=True, timeout=60)
    assert (r.returncode, r.stderr) == (130, "calibrate_depth: interrupted\n"), r.stderr[-2000:]


def test_ctrl_c_that_breaks_rclpys_c_extension_import_is_one_line_and_130():
    """A Ctrl-C landing while rclpy's C extension initialises reaches the import as ImportError('initialization
    failed') caused by the KeyboardInterrupt (seen in CI with dpt_node): the same one line and 130, not a traceback."""
    breaker = ("import sys\n"
               "class Breaker:\n"
               "    def find_spec(self, name, path=None, target=None):\n"
               "        if name == 'rclpy.executors':\n"
               "            raise ImportError('initialization failed') from KeyboardInterrupt()\n"
               "sys.meta_path.insert(0, Breaker())\n"
               "from dpt_ros.tools.calibrate_depth import run; run()\n")
    env = dict(os.environ, ROS_DOMAIN_ID=str(DOMAIN))
    r = subprocess.run([sys.executable, "-c", breaker, "--reference", "/nothing_here", "--frames", "1"],
                       env=env, capture_output=True, text=True, timeout=60)
    assert (r.returncode, r.stderr) == (130, "calibrate_depth: interrupted\n"), r.stderr[-2000:]


def test_a_usage_error_with_stderr_closed_writes_nothing_on_stdout(redirected):
    """calibrate_depth started with stderr closed (2>&-): argparse wrote a usage error's usage onto stdout (it prints
    the usage to sys.stdout where sys.stderr is None). Now nothing; exit status 2."""
    assert redirected([sys.executable, "-m", "dpt_ros.tools.calibrate_depth", "--frames", "-1"], "2>&-") == (2, "")
