"""dpt_node in process through a real rclpy graph: frames in, outputs out, headers, QoS, lazy
outputs, several cameras, per-frame errors. Random dpt_tiny weights at 64 px (fast on 2 cores)."""
import importlib.util
import math
import time

import numpy as np
import pytest
import torch
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import Log
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

from dpt_ros import pipeline
from dpt_ros.ros import conversions
from dpt_ros.ros.testing import (gate_engine, make_image, make_info, model_inverse_depth, publish_until, qos,
                                 set_params, wait_for, watch_waits, worker_done)

DOMAIN = 41


def test_image_in_inverse_depth_out_same_header_and_size(harness):
    node = harness.start_node()
    out = harness.collector(Image, "inverse_depth")
    pub = harness.probe.create_publisher(Image, "image", qos("best_effort"))
    wait_for(lambda: pub.get_subscription_count() > 0 and node.cameras[0].pubs["inverse_depth"].get_subscription_count() > 0,
             what="discovery")
    stamp = 1_700_000_000_123_456_789
    frame = make_image(stamp, width=90, height=50, frame_id="front_optical")
    # best effort (the camera default): repeat until the subscription has matched the publisher
    publish_until(pub, lambda i: frame, out)
    msg = out[0]
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == divmod(stamp, 1_000_000_000)
    assert msg.header.frame_id == "front_optical"
    assert (msg.width, msg.height, msg.encoding) == (90, 50, "32FC1")
    assert msg.step == 90 * 4
    inv = conversions.image_array(msg)
    assert inv.dtype == np.float32 and np.isfinite(inv).all()
    # the same numbers as running the node's engine on the frame directly
    rgb = pipeline.decode(conversions.image_view(frame), np)
    net = node.models.depth.run(node.models.depth_pre(rgb))["inverse_depth"]
    expected = pipeline.upsample(net, (50, 90))[0].numpy()
    np.testing.assert_allclose(inv, expected, rtol=1e-5, atol=1e-6)


def test_every_output_carries_the_input_header(harness):
    """depth.scale makes dpt_tiny metric; a segmentation variant adds labels; camera_info -> cloud."""
    node = harness.start_node(**{"depth.scale": 1.0, "depth.shift": 0.5,
                                 "segmentation.variant": "dpt_hybrid_ade20k", "segmentation.weights": "random",
                                 "points.label": True, "camera_info.policy": "exact"})
    names = {"inverse_depth": Image, "inverse_depth/colored": Image, "depth": Image,
             "depth/camera_info": CameraInfo, "segmentation": Image, "segmentation/colored": Image,
             "points": PointCloud2}
    got = {n: harness.collector(t, n) for n, t in names.items()}
    pub = harness.probe.create_publisher(Image, "image", qos("reliable"))
    info_pub = harness.probe.create_publisher(CameraInfo, "camera_info", qos("reliable"))
    wait_for(lambda: all(node.cameras[0].pubs[n].get_subscription_count() > 0 for n in names)
             and pub.get_subscription_count() > 0 and info_pub.get_subscription_count() > 0, what="discovery")
    stamps = [1_000 + i for i in range(3)]
    for s in stamps:
        img = make_image(s * 1_000_000_000 + 5, width=64, height=48, frame_id="cam_a")
        info_pub.publish(make_info(img))
        wait_for(lambda: len(node.cameras[0].infos) > 0 and node.cameras[0].infos[-1][0] == s * 1_000_000_000 + 5,
                 what="camera_info stored")
        pub.publish(img)
        wait_for(lambda: all(any(m.header.stamp.sec == s for m in got[n]) for n in names), timeout=30,
                 what=f"all outputs of frame {s}")
    for name, msgs in got.items():
        for m in msgs:
            assert m.header.frame_id == "cam_a", name
            assert m.header.stamp.nanosec == 5, name
        assert [m.header.stamp.sec for m in msgs] == sorted({m.header.stamp.sec for m in msgs}), name
    depth = conversions.image_array(got["depth"][-1])
    inv = conversions.image_array([m for m in got["inverse_depth"] if m.header.stamp.sec == got["depth"][-1].header.stamp.sec][0])
    expected = 1.0 / np.maximum(inv * 1.0 + 0.5, 1e-8)
    valid = np.isfinite(depth)
    np.testing.assert_allclose(depth[valid], expected[valid], rtol=1e-5)
    info = got["depth/camera_info"][-1]
    assert (info.width, info.height) == (64, 48) and info.k[0] == pytest.approx(50.0)
    labels = conversions.image_array(got["segmentation"][-1])
    assert labels.dtype == np.uint8 and labels.shape == (48, 64) and labels.min() >= 1 and labels.max() <= 150
    cloud = got["points"][-1]
    assert (cloud.height, cloud.width) == (24, 32)   # organised, points.stride 2
    pts = conversions.cloud_array(cloud)
    assert [f.name for f in cloud.fields] == ["x", "y", "z", "rgb", "label"]
    z = pts["z"]
    d2 = depth[::2, ::2]
    ok = np.isfinite(d2) & (d2 > 0)
    np.testing.assert_allclose(z[ok], d2[ok], rtol=1e-5)
    np.testing.assert_array_equal(pts["label"][ok], labels[::2, ::2][ok])


@pytest.mark.parametrize("camera,subscriber", [("best_effort", "reliable"), ("reliable", "best_effort"),
                                               ("reliable", "reliable"), ("best_effort", "best_effort")])
def test_qos_combinations(harness, camera, subscriber):
    """Sensor-data input accepts best-effort and reliable cameras; reliable outputs reach both kinds."""
    harness.start_node()
    out = harness.collector(Image, "inverse_depth", reliability=subscriber)
    pub = harness.probe.create_publisher(Image, "image", qos(camera))
    wait_for(lambda: pub.get_subscription_count() > 0, what="discovery")
    publish_until(pub, lambda i: make_image(i * 1000), out)
    assert out[0].encoding == "32FC1"


def test_reliable_input_qos_parameter_refuses_best_effort_camera(harness):
    """qos.input_reliability:=reliable: a best-effort camera is incompatible (no match), a reliable one works."""
    node = harness.start_node(**{"qos.input_reliability": "reliable"})
    best_effort = harness.probe.create_publisher(Image, "image", qos("best_effort"))
    reliable = harness.probe.create_publisher(Image, "image", qos("reliable"))
    wait_for(lambda: reliable.get_subscription_count() > 0, what="discovery")
    assert best_effort.get_subscription_count() == 0
    out = harness.collector(Image, "inverse_depth")
    publish_until(reliable, lambda i: make_image(i * 1000), out)
    # the worker publishes a frame's outputs, then counts it: the output can arrive first
    wait_for(lambda: node.counts()[""].get("processed", 0) >= 1, what="the frame counted as processed")


def test_lazy_outputs_skip_work_without_subscribers(harness):
    node = harness.start_node()
    pub = harness.probe.create_publisher(Image, "image", qos("reliable"))
    wait_for(lambda: pub.get_subscription_count() > 0, what="discovery")
    for i in range(3):
        pub.publish(make_image(i * 1000))
        wait_for(lambda: node.counts()[""].get("idle", 0) >= i + 1, what="idle frame")
    assert node.counts()[""].get("processed", 0) == 0
    # one subscriber on the coloured image: only that output is computed and published
    colored = harness.collector(Image, "inverse_depth/colored")
    wait_for(lambda: node.cameras[0].pubs["inverse_depth/colored"].get_subscription_count() > 0, what="discovery")
    publish_until(pub, lambda i: make_image(10_000 + i), colored)
    # the worker publishes a frame's outputs, then counts them: the output can arrive first
    wait_for(lambda: node.counts()[""].get("out:inverse_depth/colored", 0) >= 1, what="the output counted")
    c = node.counts()[""]
    assert c["out:inverse_depth/colored"] >= 1 and "out:inverse_depth" not in c
    assert colored[0].encoding == "rgb8"


def test_lazy_false_computes_without_subscribers(harness):
    node = harness.start_node(lazy=False)
    pub = harness.probe.create_publisher(Image, "image", qos("reliable"))
    wait_for(lambda: pub.get_subscription_count() > 0, what="discovery")
    pub.publish(make_image(5))
    wait_for(lambda: node.counts()[""].get("processed", 0) == 1, what="processed frame")
    assert node.counts()[""]["out:inverse_depth"] == 1


def test_lazy_set_live_applies_from_the_next_frame(harness):
    """`ros2 param set /dpt_node lazy false` (and back to true) with nobody subscribed: the next frame is computed
    and published (then idle again), not the start-up value kept (a change accepted and ignored)."""
    node = harness.start_node()
    pub = harness.probe.create_publisher(Image, "image", qos("reliable"))
    wait_for(lambda: pub.get_subscription_count() > 0, what="discovery")
    for i, (lazy, counter) in enumerate([(True, "idle"), (False, "processed"), (True, "idle")]):
        if i:
            assert set_params(harness, node, lazy=lazy)[0].successful
        before = node.counts()[""].get(counter, 0)
        pub.publish(make_image((i + 1) * 1000))
        wait_for(lambda: node.counts()[""].get(counter, 0) == before + 1, what=f"a frame counted {counter} (lazy {lazy})")
    c = node.counts()[""]
    assert (c["received"], c["idle"], c["processed"], c["out:inverse_depth"]) == (3, 2, 1, 1), c


def test_disabled_output_is_not_published(harness):
    node = harness.start_node(**{"publish.inverse_depth_colored": False})
    colored = harness.collector(Image, "inverse_depth/colored")
    raw = harness.collector(Image, "inverse_depth")
    pub = harness.probe.create_publisher(Image, "image", qos("reliable"))
    wait_for(lambda: pub.get_subscription_count() > 0 and
             node.cameras[0].pubs["inverse_depth/colored"].get_subscription_count() > 0, what="discovery")
    publish_until(pub, lambda i: make_image(i), raw, n=2)
    assert colored == []


def test_multi_camera_one_engine_batched_outputs_per_camera(harness):
    node = harness.start_node(cameras=["left", "right"])
    outs, pubs = harness.cameras(node, ("left", "right"))
    sizes = {"left": (80, 60), "right": (64, 64)}
    gate, _, batches = gate_engine(node.models.depth)   # (records the forward passes; never held)
    gate.set()
    for k in range(3):
        for ns, p in pubs.items():
            p.publish(make_image(k * 1000 + (1 if ns == "left" else 2), *sizes[ns], frame_id=f"{ns}_optical"))
        wait_for(lambda: all(len(o) >= k + 1 for o in outs.values()), what=f"round {k}")
    for ns, msgs in outs.items():
        assert {m.header.frame_id for m in msgs} == {f"{ns}_optical"}
        assert {(m.width, m.height) for m in msgs} == {sizes[ns]}
    # one engine ran both cameras' frames, each at its own network shape (other shapes: batches of their own)
    shapes = {ns: node.models.depth_pre.input_size(h, w) for ns, (w, h) in sizes.items()}
    assert shapes["left"] != shapes["right"]
    assert {b[2:] for b in batches} == set(shapes.values()) and {b[0] for b in batches} == {1}
    # the worker publishes a frame's outputs, then counts it: wait until the last frame is counted
    wait_for(lambda: all(node.counts()[ns].get("processed", 0) + node.counts()[ns].get("dropped", 0) >= 3
                         for ns in ("left", "right")), what="every frame counted")
    c = node.counts()
    assert c["left"]["received"] == c["left"]["processed"] + c["left"].get("dropped", 0)


def test_bad_encoding_is_counted_and_next_frame_processed(harness):
    node = harness.start_node()
    out = harness.collector(Image, "inverse_depth")
    pub = harness.probe.create_publisher(Image, "image", qos("reliable"))
    wait_for(lambda: pub.get_subscription_count() > 0 and
             node.cameras[0].pubs["inverse_depth"].get_subscription_count() > 0, what="discovery")
    bad = make_image(1)
    bad.encoding = "no_such_encoding"
    pub.publish(bad)
    wait_for(lambda: node.error_counts().get("encoding", 0) == 1, what="encoding error counted")
    short = make_image(2)
    short.data = short.data[:-7]   # len(data) != step * height
    pub.publish(short)
    wait_for(lambda: node.error_counts().get("encoding", 0) == 2, what="size error counted")
    pub.publish(make_image(3))
    wait_for(lambda: len(out) == 1, what="next valid frame")
    assert out[0].header.stamp.nanosec == 3


def test_cameras_whose_names_differ_in_digits_each_log_their_own_error(harness):
    """cameras:=[cam1, cam2], each sending a frame of an unsupported encoding: each camera's error is logged with its
    topic. The log throttle blanks a message's numbers to tell kinds of error apart; the digits of the topic it names
    are not figures, and cam2's error is not hidden behind cam1's as "more like it"."""
    log = harness.collector(Log, "/rosout")
    node = harness.start_node(namespace="digits", cameras=["cam1", "cam2"], lazy=False)
    pubs = {ns: harness.probe.create_publisher(Image, f"/digits/{ns}/image", qos()) for ns in ("cam1", "cam2")}
    wait_for(lambda: all(p.get_subscription_count() > 0 for p in pubs.values()), what="discovery")
    for ns, pub in pubs.items():
        bad = make_image(1)
        bad.encoding = "no_such_encoding"
        pub.publish(bad)
        wait_for(lambda: node.counts()[ns].get("error:encoding", 0) == 1, what=f"the error of {ns} counted")

    def said(ns):
        return [m.msg for m in list(log) if m.name == "digits.dpt_node" and
                m.msg.startswith(f"[encoding] /digits/{ns}/image: unsupported image encoding 'no_such_encoding'")]
    wait_for(lambda: said("cam1") and said("cam2"), what="an error line for each camera")


def _torch_oom():
    return torch.cuda.OutOfMemoryError("CUDA out of memory (injected)")


def _cublas_oom():
    return RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`")


def _cupy_oom():
    import cupy

    return cupy.cuda.memory.OutOfMemoryError(2 << 30, 1 << 30)   # CuPy's pool: GPU pre-processing, clouds


@pytest.mark.parametrize("stage,error", [
    ("forward", _torch_oom),
    ("postprocess", _torch_oom),
    ("forward", _cublas_oom),   # a CUDA library's own allocation: a plain RuntimeError
    pytest.param("postprocess", _cupy_oom, marks=pytest.mark.skipif(importlib.util.find_spec("cupy") is None,
                                                                    reason="needs CuPy")),
])
def test_injected_out_of_memory_is_counted_and_the_third_frame_processed(harness, monkeypatch, stage, error):
    """Out of device memory in the forward or in post-processing, from PyTorch, cuBLAS or CuPy: counted as
    cuda_oom (not as a generic failure of the stage), and the node goes on with the next frame."""

    node = harness.start_node()
    out = harness.collector(Image, "inverse_depth")
    pub = harness.probe.create_publisher(Image, "image", qos("reliable"))
    wait_for(lambda: pub.get_subscription_count() > 0 and
             node.cameras[0].pubs["inverse_depth"].get_subscription_count() > 0, what="discovery")
    failures = {"left": 2}

    def failing(real):
        def call(*args, **kwargs):
            if failures["left"] > 0:
                failures["left"] -= 1
                raise error()
            return real(*args, **kwargs)
        return call

    if stage == "forward":
        node.models.depth.run = failing(node.models.depth.run)
    else:
        monkeypatch.setattr(pipeline, "upsample", failing(pipeline.upsample))
    for i in (1, 2):
        pub.publish(make_image(i))
        wait_for(lambda: node.error_counts().get("cuda_oom", 0) == i, what=f"OOM {i} counted")
    pub.publish(make_image(3))
    wait_for(lambda: len(out) == 1, what="third frame")
    assert out[0].header.stamp.nanosec == 3
    assert node.counts()[""]["error:cuda_oom"] == 2 and set(node.error_counts()) == {"cuda_oom"}


def _streams(harness, node, output: str, second_input: str, second_type):
    """Collectors of ``output`` and inverse_depth, and reliable publishers of image and ``second_input``,
    once discovery has connected them."""
    collected = harness.collector(PointCloud2 if output == "points" else Image, output)
    inv = harness.collector(Image, "inverse_depth")
    pub = harness.probe.create_publisher(Image, "image", qos("reliable"))
    second = harness.probe.create_publisher(second_type, second_input, qos("reliable"))
    wait_for(lambda: pub.get_subscription_count() > 0 and second.get_subscription_count() > 0 and
             node.cameras[0].pubs[output].get_subscription_count() > 0, what="discovery")
    return collected, inv, pub, second


def test_points_need_calibrated_camera_info(harness):
    node = harness.start_node(**{"depth.scale": 1.0, "camera_info.policy": "latest"})
    points, inv, pub, info_pub = _streams(harness, node, "points", "camera_info", CameraInfo)
    img = make_image(1)
    info = make_info(img)
    info.k = [0.0] * 9   # uncalibrated
    info.p = [0.0] * 12
    info_pub.publish(info)
    wait_for(lambda: len(node.cameras[0].infos) == 1, what="info stored")
    pub.publish(img)
    wait_for(lambda: node.error_counts().get("calibration", 0) == 1, what="calibration error")
    # the frame is still processed: everything but depth/camera_info and points goes out
    wait_for(lambda: len(inv) == 1, what="inverse depth of the uncalibrated frame")
    assert inv[0].header.stamp == img.header.stamp and points == []
    # a 2x larger calibration for the same camera: intrinsics are scaled to the image
    big = make_info(make_image(2, width=160, height=120), fx=100.0)
    info_pub.publish(big)
    wait_for(lambda: len(node.cameras[0].infos) == 2, what="info stored")
    publish_until(pub, lambda i: make_image(100 + i), points)
    cloud = conversions.cloud_array(points[0])
    depth_scale = cloud["z"]
    ok = np.isfinite(depth_scale)
    # x = (u - cx) * z / fx with fx = 50 for the 80-px image (100 scaled by 0.5)
    u = np.arange(0, 80, 2)[None, :].repeat(cloud.shape[0], 0)
    cx = (159 / 2) * 0.5
    np.testing.assert_allclose(cloud["x"][ok], ((u - cx) * depth_scale / 50.0)[ok], rtol=1e-4, atol=1e-5)
    assert math.isclose(points[0].row_step, points[0].width * points[0].point_step)


class _Counted:
    """``len()`` of what ``items()`` returns now (publish_until counts a list)."""

    def __init__(self, items) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items())


def test_unrectified_camera_cloud_follows_the_lens(harness):
    """camera_info.rectified false: each point of a raw camera's cloud projects back onto its own pixel
    through K and D (OpenCV's forward model), set live; an unsupported lens model is a calibration
    error with the remedy, and the frame's other outputs still go out."""
    import cv2

    log = harness.collector(Log, "/rosout")
    node = harness.start_node(**{"depth.scale": 1.0, "depth.shift": 0.2, "camera_info.policy": "latest"})
    points, inv, pub, info_pub = _streams(harness, node, "points", "camera_info", CameraInfo)
    img = make_image(1, width=96, height=72)
    info = make_info(img, fx=60.0)
    info.distortion_model, info.d = "plumb_bob", [-0.3, 0.1, 0.001, -0.002, -0.02]
    info_pub.publish(info)
    wait_for(lambda: len(node.cameras[0].infos) == 1, what="info stored")
    assert [r.successful for r in set_params(harness, node, **{"camera_info.rectified": False})] == [True]
    publish_until(pub, lambda i: make_image(10 + i, width=96, height=72), points)
    cloud = conversions.cloud_array(points[0])
    xyz = np.stack([cloud["x"], cloud["y"], cloud["z"]], -1).reshape(-1, 3).astype(np.float64)
    v, u = (a.ravel() for a in np.mgrid[0:72:2, 0:96:2])   # points.stride 2
    ok = np.isfinite(xyz).all(1)
    assert ok.mean() > 0.9
    px, _ = cv2.projectPoints(xyz[ok].reshape(-1, 1, 3), np.zeros(3), np.zeros(3),
                              np.asarray(info.k).reshape(3, 3), np.asarray(info.d))
    err = np.hypot(px[:, 0, 0] - u[ok], px[:, 0, 1] - v[ok])
    assert err.max() < 1e-2, err.max()
    # rectified (the default): P, no distortion, as before
    assert [r.successful for r in set_params(harness, node, **{"camera_info.rectified": True})] == [True]
    # (a frame published above may still be on its way through the node, with the settings it was taken with: the
    # cloud checked is one of a frame published after the change)
    after = lambda: [m for m in list(points) if conversions.stamp_ns(m.header) >= 100]  # noqa: E731
    publish_until(pub, lambda i: make_image(100 + i, width=96, height=72), _Counted(after))
    pin = conversions.cloud_array(after()[0])
    x = ((u - info.p[2]) / info.p[0]).reshape(36, 48) * pin["z"]
    np.testing.assert_allclose(pin["x"], x, rtol=1e-5, atol=1e-6)
    # a lens model this node does not know: no cloud, a reason, inverse_depth still out
    assert [r.successful for r in set_params(harness, node, **{"camera_info.rectified": False})] == [True]
    info.distortion_model = "kannala_brandt"
    info_pub.publish(info)
    wait_for(lambda: len(node.cameras[0].infos) == 2, what="info stored")
    pub.publish(make_image(500, width=96, height=72))
    of_500 = lambda msgs: [m for m in list(msgs) if conversions.stamp_ns(m.header) == 500]  # noqa: E731
    wait_for(lambda: node.error_counts().get("calibration", 0) == 1 and of_500(inv), what="calibration error")
    time.sleep(0.3)   # (its cloud, were there one, goes out with its inverse depth)
    assert not of_500(points)
    wait_for(lambda: any("'kannala_brandt'" in m.msg and "camera_info.rectified" in m.msg for m in list(log)),
             what="the reason in the log")


def test_edge_filter_drops_cloud_points_at_depth_jumps_and_leaves_depth_alone(harness):
    """points.edge_filter: the cloud's z is the published depth with NaN where drop_depth_edges puts it
    (computed here from the depth message), decimated; depth itself keeps every value. Set live."""
    node = harness.start_node(**{"depth.scale": 1.0, "depth.shift": 0.2, "camera_info.policy": "latest",
                                 "points.stride": 1})
    depth = harness.collector(Image, "depth")
    points, _, pub, info_pub = _streams(harness, node, "points", "camera_info", CameraInfo)
    img = make_image(1, width=80, height=60)
    info_pub.publish(make_info(img))
    wait_for(lambda: len(node.cameras[0].infos) == 1, what="info stored")
    assert [r.successful for r in set_params(harness, node, **{"points.edge_filter": 0.002})] == [True]
    publish_until(pub, lambda i: make_image(10 + i, width=80, height=60), points)
    wait_for(lambda: any(d.header.stamp == points[0].header.stamp for d in depth), what="the matching depth")
    d = conversions.image_array(next(m for m in depth if m.header.stamp == points[0].header.stamp))
    z = conversions.cloud_array(points[0])["z"]
    want = pipeline.drop_depth_edges(torch.from_numpy(d.copy()), 0.002).numpy()
    np.testing.assert_array_equal(z, want)
    dropped = np.isnan(z) & np.isfinite(d)
    assert 0.02 < dropped.mean() < 0.98, dropped.mean()   # the filter did something, not everything
    assert np.isfinite(d).all()


def _packed_rgb(cloud) -> np.ndarray:
    words = conversions.cloud_array(cloud)["rgb"].view(np.uint32)
    return np.stack([(words >> 16) & 255, (words >> 8) & 255, words & 255], -1).astype(np.uint8)


def test_points_color_source_segmentation_paints_each_point_in_its_class_colour(harness):
    """points.color_source (set live): 'segmentation' packs the ADE20K palette colour of each point's label into
    rgb, the segmentation model running for it although no segmentation output is subscribed; 'image' the
    input's pixel again."""
    node = harness.start_node(**{"depth.scale": 1.0, "depth.shift": 0.2, "camera_info.policy": "latest",
                                 "points.stride": 1, "segmentation.variant": "dpt_hybrid_ade20k",
                                 "segmentation.weights": "random"})
    points, _, pub, info_pub = _streams(harness, node, "points", "camera_info", CameraInfo)
    info_pub.publish(make_info(make_image(1, width=80, height=60)))
    wait_for(lambda: len(node.cameras[0].infos) == 1, what="info stored")
    assert all(r.successful for r in set_params(harness, node, **{"points.color_source": "segmentation"}))
    first = make_image(100, width=80, height=60)
    pub.publish(first)
    wait_for(lambda: points, what="the cloud")
    rgb = pipeline.decode(conversions.image_view(first), np)
    logits = node.models.segmentation.run(node.models.segmentation_pre(rgb))["logits"]
    labels = pipeline.upsampled_labels(logits, (60, 80))[0].numpy()
    z = conversions.cloud_array(points[0])["z"]
    ok = np.isfinite(z)
    assert ok.mean() > 0.5
    np.testing.assert_array_equal(_packed_rgb(points[0])[ok], pipeline.ADE20K_PALETTE[labels][ok])
    refused = set_params(harness, node, **{"points.color_source": "labels"})[0]
    assert not refused.successful and refused.reason.endswith("is not one of image, segmentation")
    assert all(r.successful for r in set_params(harness, node, **{"points.color_source": "image"}))
    frame = make_image(200, width=80, height=60)
    pub.publish(frame)
    wait_for(lambda: len(points) == 2, what="the next cloud")
    rgb = pipeline.decode(conversions.image_view(frame), np)
    ok = np.isfinite(conversions.cloud_array(points[1])["z"])
    np.testing.assert_array_equal(_packed_rgb(points[1])[ok], rgb[ok])


def _cloud_without_segmentation(harness, **overrides):
    """A depth-only node's first cloud of one 40x30 frame: (node, cloud, frame)."""
    node = harness.start_node(**{"depth.scale": 1.0, "camera_info.policy": "latest", **overrides})
    points, _, pub, info_pub = _streams(harness, node, "points", "camera_info", CameraInfo)
    frame = make_image(5, width=40, height=30)
    info_pub.publish(make_info(frame))
    wait_for(lambda: len(node.cameras[0].infos) == 1, what="info stored")
    pub.publish(frame)
    wait_for(lambda: len(points) == 1, what="the cloud")
    return node, points[0], frame


def _said_at(log, prefix: str) -> int:
    """The level of the first /rosout line of dpt_node that starts with ``prefix`` (waited for)."""
    wait_for(lambda: any(m.name == "dpt_node" and m.msg.startswith(prefix) for m in list(log)), what=prefix)
    return next(m.level for m in list(log) if m.name == "dpt_node" and m.msg.startswith(prefix))


def test_points_color_source_without_segmentation_uses_the_image_and_says_so(harness):
    """(Said at WARN, every 5 s: the cloud is published, coloured from the image; it was an ERROR, which robot log
    monitors take for a failure.)"""
    log = harness.collector(Log, "/rosout")
    node, cloud, frame = _cloud_without_segmentation(harness, **{"points.stride": 1,
                                                                 "points.color_source": "segmentation"})
    ok = np.isfinite(conversions.cloud_array(cloud)["z"])
    np.testing.assert_array_equal(_packed_rgb(cloud)[ok], pipeline.decode(conversions.image_view(frame), np)[ok])
    wait_for(lambda: node.counts()[""].get("incomplete:color_source", 0) == 1, what="counted")
    assert _said_at(log, "[color_source] ") == Log.WARN


def test_points_label_without_segmentation_publishes_the_cloud_without_it_and_says_so(harness):
    """points.label asks for labels no model makes: the cloud comes as x, y, z, counted incomplete.label (not
    accepted and then silently left out), said at WARN (it was an ERROR every 5 s)."""
    log = harness.collector(Log, "/rosout")
    node, cloud, _ = _cloud_without_segmentation(harness, **{"points.color": False, "points.label": True})
    assert [fld.name for fld in cloud.fields] == ["x", "y", "z"]
    wait_for(lambda: node.counts()[""].get("incomplete:label", 0) == 1, what="counted")
    assert _said_at(log, "[label] ") == Log.WARN


def test_a_depth_without_one_measurement_is_said(harness):
    """A depth.shift of the wrong sign: 1 / (scale * inverse_depth + shift) has no positive value, so every depth is
    +Inf (REP 117: out of range) and the cloud has no point, which went out without a word (RViz showed nothing, the
    log nothing). Now said at WARN with the pixels of each kind and the calibration; as 16UC1 (every pixel 0) too;
    the outputs are as before, and a frame with depth again says nothing."""
    log = harness.collector(Log, "/rosout")
    node = harness.start_node(**{"depth.scale": 1.0, "depth.shift": -1000.0, "camera_info.policy": "latest",
                                 "points.stride": 1})
    points, _, pub, info_pub = _streams(harness, node, "points", "camera_info", CameraInfo)
    depth = harness.collector(Image, "depth")
    wait_for(lambda: node.cameras[0].pubs["depth"].get_subscription_count() > 0, what="discovery")
    frame = make_image(5, width=40, height=30)
    info_pub.publish(make_info(frame))
    wait_for(lambda: len(node.cameras[0].infos) == 1, what="info stored")

    def said():
        return [m for m in list(log) if m.name == "dpt_node" and "depth has no measurement" in m.msg]

    def frame_out(n, **params):
        assert all(r.successful for r in set_params(harness, node, **params))
        pub.publish(make_image(n, width=40, height=30))
        wait_for(lambda: len(points) == n and len(depth) == n, what=f"outputs of frame {n}")
        return conversions.image_array(depth[-1]), conversions.cloud_array(points[-1])["z"]

    d, z = frame_out(1)
    assert np.isposinf(d).all() and d.size == 1200 and np.isnan(z).all()   # (REP 117 values, as before)
    wait_for(lambda: len(said()) == 1, what="the warning")
    assert said()[0].level == Log.WARN and said()[0].msg.startswith(
        "/image: this frame's depth has no measurement: 1200 of 1200 pixels +Inf (above depth.max, 1000 m), 0 -Inf "
        "(below depth.min, 0 m), 0 NaN (no data), so its cloud has no point. Check depth.min / depth.max and "
        "depth.scale 1 / depth.shift -1000: ")
    assert "check the sign of depth.shift" in said()[0].msg
    d, z = frame_out(2, **{"depth.encoding": "16UC1"})
    assert d.dtype == np.uint16 and not d.any() and np.isnan(z).all()
    wait_for(lambda: len(said()) == 2, what="the 16UC1 warning")
    assert "all 1200 pixels of the 16UC1 depth are 0 (below depth.min, 0 m, above depth.max, 1000 m" in said()[1].msg
    d, z = frame_out(3, **{"depth.shift": 0.5, "depth.encoding": "32FC1"})
    assert np.isfinite(d).all() and np.isfinite(z).all()
    assert node.error_counts() == {} and not any(k.startswith("incomplete") for k in node.counts()[""])
    d, z = frame_out(4)   # (its log line would have come before its outputs)
    assert len(said()) == 2


def _distorted_lens(harness, topic: str, phrase: str, **params) -> tuple:
    """A node on image ``topic`` whose camera_info (/cam/camera_info) has lens distortion (plumb_bob), two clouds
    made, and its log's warning containing ``phrase`` come: (node, said(): its log lines with ``phrase``)."""
    log = harness.collector(Log, "/rosout")
    node = harness.start_node(cli_args=["--ros-args", "-r", f"image:={topic}", "-r", "camera_info:=/cam/camera_info"],
                              **{"depth.scale": 1.0, "camera_info.policy": "latest", **params})
    points = harness.collector(PointCloud2, "points")
    pub = harness.probe.create_publisher(Image, topic, qos("reliable"))
    info_pub = harness.probe.create_publisher(CameraInfo, "/cam/camera_info", qos("reliable"))
    wait_for(lambda: pub.get_subscription_count() > 0 and info_pub.get_subscription_count() > 0 and
             node.cameras[0].pubs["points"].get_subscription_count() > 0, what="discovery")
    img = make_image(1, width=48, height=36)
    info = make_info(img)
    info.distortion_model, info.d = "plumb_bob", [-0.3, 0.1, 0.0, 0.0, 0.0]
    info_pub.publish(info)
    wait_for(lambda: len(node.cameras[0].infos) == 1, what="info stored")
    publish_until(pub, lambda i: make_image(10 + i, width=48, height=36), points, n=2)

    def said():
        return [m.msg for m in log if phrase in m.msg]

    wait_for(lambda: said(), what="the warning")
    return node, said


def test_a_raw_image_topic_with_a_distorted_lens_taken_as_rectified_is_said_once(harness):
    """camera_info.rectified (the default) on .../image_raw with distortion in camera_info: a WARN naming
    camera_info.rectified:=false, once; the cloud is still made (as documented, distortion-free)."""
    node, said = _distorted_lens(harness, "/cam/image_raw", "looks like a raw (unrectified) image")
    assert len(said()) == 1 and "/cam/image_raw" in said()[0] and "camera_info.rectified:=false" in said()[0]
    assert node.error_counts() == {}


def test_a_rectified_image_topic_with_a_distorted_lens_taken_as_raw_is_said_once(harness):
    """camera_info.rectified false on .../image_rect, whose camera_info (image_proc publishes none of its own) is the
    raw camera's with its D: the cloud undid the lens a second time, bending lines the other way, and nothing said
    so. Now a WARN naming camera_info.rectified:=true, once; the cloud is still made (as set)."""
    node, said = _distorted_lens(harness, "/cam/image_rect", "looks like a rectified image",
                                 **{"camera_info.rectified": False})
    assert len(said()) == 1 and "/cam/image_rect" in said()[0] and "camera_info.rectified:=true" in said()[0]
    assert "a second time" in said()[0]
    assert node.error_counts() == {}


def test_one_model_failing_leaves_the_other_models_outputs(harness):
    """Depth and segmentation in one node: the segmentation model failing (e.g. out of GPU memory) still publishes
    the frame's depth outputs, counted incomplete.inference; the depth model failing still publishes the labels;
    both failing is an error for the frame, as before."""
    node = harness.start_node(**{"segmentation.variant": "dpt_hybrid_ade20k", "segmentation.weights": "random"})
    inv, seg = harness.collector(Image, "inverse_depth"), harness.collector(Image, "segmentation")
    pub = harness.probe.create_publisher(Image, "image", qos("reliable"))
    wait_for(lambda: pub.get_subscription_count() > 0 and node.cameras[0].pubs["segmentation"].get_subscription_count()
             > 0 and node.cameras[0].pubs["inverse_depth"].get_subscription_count() > 0, what="discovery")
    broken = set()
    for task in ("depth", "segmentation"):
        engine = getattr(node.models, task)

        def run(batch, real=engine.run, task=task):
            if task in broken:
                raise RuntimeError(f"{task} engine failed")
            return real(batch)

        engine.run = run
    for i, fails in enumerate((("segmentation",), ("depth",), ("depth", "segmentation")), start=1):
        broken.clear()
        broken.update(fails)
        n_inv, n_seg = len(inv), len(seg)
        pub.publish(make_image(i, width=40, height=30))
        if len(fails) == 2:
            wait_for(lambda: node.counts()[""].get("error:inference", 0) == 1, what="the frame's error")
        else:
            other = seg if fails == ("depth",) else inv
            wait_for(lambda: len(other) == (n_seg if other is seg else n_inv) + 1, what=f"outputs without {fails}")
        time.sleep(0.3)
        assert (len(inv) - n_inv, len(seg) - n_seg) == {1: (1, 0), 2: (0, 1), 3: (0, 0)}[i], fails
    c = node.counts()[""]
    assert c["incomplete:inference"] == 2 and c["error:inference"] == 1 and c["processed"] == 2 and c["received"] == 3


def test_points_max_rate_builds_fewer_clouds_and_keeps_depth_at_the_frame_rate(harness):
    """points.max_rate 1 Hz (set live) on ~10 frames over about a second: 2 clouds (the first, and one half a
    period early), depth for every frame, the others counted throttled.points."""
    node = harness.start_node(**{"depth.scale": 1.0, "camera_info.policy": "latest"})
    depth = harness.collector(Image, "depth")
    points, _, pub, info_pub = _streams(harness, node, "points", "camera_info", CameraInfo)
    info_pub.publish(make_info(make_image(1, width=40, height=30)))
    wait_for(lambda: len(node.cameras[0].infos) == 1, what="info stored")
    assert all(r.successful for r in set_params(harness, node, **{"points.max_rate": 1.0}))
    t0 = time.monotonic()
    for i in range(10):
        pub.publish(make_image(100 + i, width=40, height=30))
        # (counted processed, and its outputs, after they are published)
        wait_for(lambda: len(depth) == i + 1 and worker_done(node), what=f"depth of frame {i}")
        time.sleep(max(0.0, t0 + 0.1 * (i + 1) - time.monotonic()))
    span = time.monotonic() - t0
    c = node.counts()[""]
    assert c["out:depth"] == 10 and c["processed"] == 10
    assert c["out:points"] + c["throttled:points"] == 10
    # the first, then one from half a period early on, and one a period after each: 2 within 1.5 s (a third period's
    # early side), more only as a slow machine's frames spread over more periods
    assert 2 <= c["out:points"] <= int(span + 0.5) + 1, (span, c)
    wait_for(lambda: len(points) == c["out:points"], what="the clouds")


def test_a_frame_that_builds_no_cloud_does_not_use_up_points_max_rate(harness):
    """points.max_rate: a frame let through that can build no cloud (no camera_info for its stamp) leaves the next
    frame its cloud (it was throttled: 2.2 Hz of 4 asked with every other frame unmatched). 0.1 Hz: the three frames
    come within half its period (5 s) of each other however slow the machine (at 1 Hz, a third frame more than 0.5 s
    after the second, each frame's depth waited for, was let through: a slow machine's, not the throttle's doing)."""
    node = harness.start_node(**{"depth.scale": 1.0, "camera_info.policy": "exact", "points.max_rate": 0.1})
    depth = harness.collector(Image, "depth")
    points, _, pub, info_pub = _streams(harness, node, "points", "camera_info", CameraInfo)
    info_pub.publish(make_info(make_image(101, width=40, height=30)))   # for the second frame only
    wait_for(lambda: len(node.cameras[0].infos) == 1, what="info stored")
    for i, stamp in enumerate((100, 101)):
        pub.publish(make_image(stamp, width=40, height=30))
        wait_for(lambda: len(depth) == i + 1, what=f"depth of frame {stamp}")
    # (its outputs are counted after they are published)
    wait_for(lambda: len(points) == 1 and worker_done(node), what="the second frame's cloud")
    c = node.counts()[""]
    assert conversions.stamp_ns(points[0].header) == 101 and c["incomplete:no_camera_info"] == 1
    assert c["out:points"] == 1 and c.get("throttled:points", 0) == 0
    pub.publish(make_image(102, width=40, height=30))   # a cloud was built: the rate holds the next one back
    wait_for(lambda: len(depth) == 3, what="depth of frame 102")
    assert node.counts()[""]["throttled:points"] == 1


def test_excluded_classes_leave_the_cloud_and_need_labels(harness):
    """points.exclude_classes (set live): the cloud's z is the published depth with NaN where the published
    segmentation holds an excluded class; depth keeps every value. An unknown name is refused with the
    closest real ones."""
    node = harness.start_node(**{"depth.scale": 1.0, "depth.shift": 0.2, "camera_info.policy": "latest",
                                 "points.stride": 1, "segmentation.variant": "dpt_hybrid_ade20k",
                                 "segmentation.weights": "random"})
    depth, seg = harness.collector(Image, "depth"), harness.collector(Image, "segmentation")
    points, _, pub, info_pub = _streams(harness, node, "points", "camera_info", CameraInfo)
    img = make_image(1, width=80, height=60)
    info_pub.publish(make_info(img))
    wait_for(lambda: len(node.cameras[0].infos) == 1, what="info stored")
    publish_until(pub, lambda i: make_image(10 + i, width=80, height=60), seg)
    labels = conversions.image_array(seg[0])
    values, counts = np.unique(labels, return_counts=True)
    names = [node.settings["class_names"][v] for v in values[np.argsort(counts)[-2:]]]   # the two commonest
    refused = set_params(harness, node, **{"points.exclude_classes": f"{names[0]}, persn"})
    assert not refused[0].successful and "'persn' is not a segmentation class" in refused[0].reason
    assert "did you mean 'person'" in refused[0].reason
    assert [r.successful for r in set_params(harness, node, **{"points.exclude_classes": ", ".join(names)})] == [True]
    after = []   # clouds of frames sent after the change (stamps from 100 ns on)
    harness.probe.create_subscription(PointCloud2, "points", lambda m: after.append(m) if m.header.stamp.nanosec >= 100
                                      else None, qos())
    wait_for(lambda: node.cameras[0].pubs["points"].get_subscription_count() > 1, what="discovery")
    publish_until(pub, lambda i: make_image(100 + i, width=80, height=60), after)
    cloud = after[0]
    wait_for(lambda: all(any(m.header.stamp == cloud.header.stamp for m in c) for c in (depth, seg)), what="its images")
    d, lab = (conversions.image_array(next(m for m in c if m.header.stamp == cloud.header.stamp)) for c in (depth, seg))
    out = np.isin(lab, [node.settings["class_names"].index(x) for x in names])
    assert 0.05 < out.mean() < 0.95, out.mean()
    z = conversions.cloud_array(cloud)["z"]
    np.testing.assert_array_equal(z, np.where(out, np.nan, d).astype(np.float32))
    assert np.isfinite(d[out]).all()


def test_classes_excluded_from_depth_are_no_measurement_in_depth_and_cloud(harness):
    """depth.exclude_classes (set live): depth is NaN where the segmentation holds those classes (16UC1: 0), the
    cloud follows it, inverse_depth is unchanged; refused names as for points.exclude_classes."""
    node = harness.start_node(**{"depth.scale": 1.0, "depth.shift": 0.2, "camera_info.policy": "latest",
                                 "points.stride": 1, "segmentation.variant": "dpt_hybrid_ade20k",
                                 "segmentation.weights": "random"})
    depth, seg, inv = (harness.collector(Image, n) for n in ("depth", "segmentation", "inverse_depth"))
    points, _, pub, info_pub = _streams(harness, node, "points", "camera_info", CameraInfo)
    info_pub.publish(make_info(make_image(1, width=80, height=60)))
    wait_for(lambda: len(node.cameras[0].infos) == 1, what="info stored")
    publish_until(pub, lambda i: make_image(i, width=80, height=60), seg)
    values, counts = np.unique(conversions.image_array(seg[0]), return_counts=True)
    names = [node.settings["class_names"][v] for v in values[np.argsort(counts)[-2:]]]
    refused = set_params(harness, node, **{"depth.exclude_classes": "sky, cars"})
    assert not refused[0].successful and refused[0].reason.startswith("depth.exclude_classes: 'cars' is not")
    assert all(r.successful for r in set_params(harness, node, **{"depth.exclude_classes": ",".join(names)}))
    for encoding, stamp in (("32FC1", 100), ("16UC1", 200)):
        if encoding == "16UC1":
            assert all(r.successful for r in set_params(harness, node, **{"depth.encoding": "16UC1"}))
        pub.publish(make_image(stamp, width=80, height=60))
        mine = lambda msgs: next((m for m in msgs if m.header.stamp.nanosec == stamp), None)  # noqa: E731
        wait_for(lambda: all(mine(c) is not None for c in (depth, seg, inv, points)), what=f"frame {stamp}")
        d, lab, x = (conversions.image_array(mine(c)) for c in (depth, seg, inv))
        out = np.isin(lab, [node.settings["class_names"].index(n) for n in names])
        assert 0.05 < out.mean() < 0.95 and np.isfinite(x).all()
        if encoding == "32FC1":
            want = np.where(out, np.nan, 1.0 / np.maximum(x + 0.2, 1e-8)).astype(np.float32)
            np.testing.assert_allclose(d, want, rtol=1e-5)
            np.testing.assert_array_equal(np.isnan(conversions.cloud_array(mine(points))["z"]), out)
        else:
            assert (d[out] == 0).all() and (d[~out] > 0).all()


def test_depth_exclude_classes_runs_segmentation_when_only_depth_is_subscribed(harness):
    """Nobody subscribes a segmentation output, yet depth.exclude_classes needs labels: the segmentation model
    runs for them, and depth is NaN exactly where its labels hold the class."""
    node = harness.start_node(**{"depth.scale": 1.0, "depth.shift": 0.2, "segmentation.variant": "dpt_hybrid_ade20k",
                                 "segmentation.weights": "random"})
    depth = harness.collector(Image, "depth")
    pub = harness.probe.create_publisher(Image, "image", qos("reliable"))
    wait_for(lambda: pub.get_subscription_count() > 0 and node.cameras[0].pubs["depth"].get_subscription_count() > 0,
             what="discovery")
    frame = make_image(3, width=80, height=60)
    rgb = pipeline.decode(conversions.image_view(frame), np)
    logits = node.models.segmentation.run(node.models.segmentation_pre(rgb))["logits"]
    labels = pipeline.upsampled_labels(logits, (60, 80))[0].numpy()
    values, counts = np.unique(labels, return_counts=True)
    commonest = int(values[np.argmax(counts)])
    assert all(r.successful for r in set_params(harness, node, **{
        "depth.exclude_classes": node.settings["class_names"][commonest]}))
    pub.publish(frame)
    wait_for(lambda: len(depth) == 1, what="depth")
    np.testing.assert_array_equal(np.isnan(conversions.image_array(depth[0])), labels == commonest)


def test_exclude_classes_of_separators_only_do_not_run_segmentation(harness):
    """depth.exclude_classes / points.exclude_classes of separators only (', ,') name no class: nothing is excluded
    (the post-processing parses them so), and the segmentation model is not run for them when no output needs
    labels; it ran for every frame before. A class name does run it (the check can see a run)."""
    node = harness.start_node(**{"depth.scale": 1.0, "depth.shift": 0.2, "segmentation.variant": "dpt_hybrid_ade20k",
                                 "segmentation.weights": "random", "camera_info.policy": "latest"})
    engine = node.models.segmentation
    runs, real = [], engine.run

    def run(batch):   # the real forward pass, counted
        runs.append(batch.shape[0])
        return real(batch)

    engine.run = run
    points, _, pub, info_pub = _streams(harness, node, "points", "camera_info", CameraInfo)
    depth = harness.collector(Image, "depth")
    wait_for(lambda: node.cameras[0].pubs["depth"].get_subscription_count() > 0, what="discovery of depth")
    img = make_image(1, width=80, height=60)
    info_pub.publish(make_info(img))
    wait_for(lambda: len(node.cameras[0].infos) == 1, what="info stored")
    for stamp, (depth_classes, points_classes, ran) in enumerate(((", ,", " , ", 0), ("", ",", 0), ("person", "", 1)),
                                                                 start=1):
        assert all(r.successful for r in set_params(harness, node, **{"depth.exclude_classes": depth_classes,
                                                                         "points.exclude_classes": points_classes}))
        n = len(points)
        pub.publish(make_image(stamp, width=80, height=60))
        wait_for(lambda: len(points) == n + 1 and len(depth) == stamp, what=f"frame {stamp}'s depth and points")
        assert len(runs) == ran, (depth_classes, points_classes, runs)
        assert not np.isnan(conversions.image_array(depth[-1])).all()
    assert set(node.counts()[""]) >= {"received", "processed"} and not any(
        k.startswith(("error", "incomplete")) for k in node.counts()[""])


def test_excluded_classes_without_segmentation_publish_no_cloud(harness):
    """points.exclude_classes without a segmentation model: no cloud at all (not one with the classes the user
    asked to leave out), the frame counted incomplete.exclude_classes and the reason logged; depth.exclude_classes:
    no depth and no cloud."""
    node = harness.start_node(**{"depth.scale": 1.0, "camera_info.policy": "latest", "points.exclude_classes": "person"})
    log = harness.collector(Log, "/rosout")
    depth = harness.collector(Image, "depth")
    points, _, pub, info_pub = _streams(harness, node, "points", "camera_info", CameraInfo)
    img = make_image(5, width=80, height=60)
    info_pub.publish(make_info(img))
    wait_for(lambda: len(node.cameras[0].infos) == 1, what="info stored")
    pub.publish(img)
    wait_for(lambda: node.counts()[""].get("processed", 0) == 1, what="the frame processed")
    c = node.counts()[""]
    assert c["incomplete:exclude_classes"] == 1 and points == [] and "out:points" not in c
    wait_for(lambda: any("points.exclude_classes needs segmentation labels" in m.msg for m in log), what="the reason")
    wait_for(lambda: len(depth) == 1, what="depth, which points.exclude_classes leaves alone")
    # depth.exclude_classes without labels: neither depth nor points
    assert all(r.successful for r in set_params(harness, node, **{"depth.exclude_classes": "person",
                                                                     "points.exclude_classes": "",
                                                                     "depth.encoding": "16UC1"}))
    pub.publish(make_image(6, width=80, height=60))
    wait_for(lambda: node.counts()[""].get("processed", 0) == 2, what="the second frame processed")
    c = node.counts()[""]
    assert c["incomplete:exclude_classes"] == 2 and len(depth) == 1 and points == [] and c["out:depth"] == 1
    wait_for(lambda: any("depth.exclude_classes needs segmentation labels" in m.msg for m in log), what="the reason")
    assert not any("need metric depth" in m.msg for m in log)


def test_depth_align_fits_every_frame_to_its_reference_depth(harness):
    """depth.align: each frame's depth is 1 / (scale * inverse_depth + shift) fitted to the reference depth of
    its stamp (16UC1 millimetres here), whether the reference comes before the image, after it while the
    frame is in the model, or after it while the frame waits (and is then pushed out of the buffer by
    newer ones); a frame without one is counted incomplete:alignment and publishes no depth."""
    node = harness.start_node(**{"depth.align": True, "diagnostics.period": 60.0})
    depth, inv, pub, ref_pub = _streams(harness, node, "depth", "depth_reference", Image)
    from dpt_ros.tools import sros2_policy   # the policy generator's --depth-align names the same subscriptions
    subscribed = {t for t, _ in node.get_subscriber_names_and_types_by_node("dpt_node", "/")}
    assert subscribed == set(sros2_policy.expected(depth_align=True)["subscribe"]) == {
        "/image", "/camera_info", "/depth_reference"}
    frames = [make_image(5_000_000_000 + i * 33_000_000, width=80, height=60) for i in range(4)]
    refs, fits = [], []
    for i, frame in enumerate(frames):
        x = model_inverse_depth(node, frame)
        a = (0.3 + 0.2 * i) / float(x.max() - x.min())     # a different scale and shift per frame
        b = 0.2 - a * float(x.min())
        mm = np.rint(1000.0 / (a * x + b)).astype(np.uint16)   # 1.4 to 5 m
        refs.append(conversions.image_msg(frame.header, mm, "16UC1"))
        fits.append((a, b))
    cam = node.cameras[0]

    def check(i):
        # (both: the two outputs of a frame reach their subscriptions in either order)
        wait_for(lambda: all(any(m.header.stamp == frames[i].header.stamp for m in out) for out in (depth, inv)),
                 what=f"depth and inverse_depth of frame {i}")
        d = conversions.image_array(next(m for m in depth if m.header.stamp == frames[i].header.stamp))
        x = conversions.image_array(next(m for m in inv if m.header.stamp == frames[i].header.stamp))
        a, b = fits[i]
        np.testing.assert_allclose(d, 1.0 / (a * x + b), rtol=2e-3)
        values = {kv.key: kv.value for kv in node.diagnostics().status[1].values}
        assert float(values["alignment.scale"]) == pytest.approx(a, rel=2e-3)
        assert float(values["alignment.shift"]) == pytest.approx(b, rel=2e-3, abs=1e-4)
        assert int(values["alignment.pixels"]) == 15 * 20

    ref_pub.publish(refs[0])                        # 0: the reference first
    wait_for(lambda: len(cam.references) == 1, what="reference stored")
    pub.publish(frames[0])
    check(0)
    gate, entered, _ = gate_engine(node.models.depth)
    pub.publish(frames[1])                          # 1: the reference while the frame is in the model
    wait_for(entered.is_set, what="frame 1 in the model")
    ref_pub.publish(refs[1])
    wait_for(lambda: len(cam.references) == 2, what="reference stored")
    pub.publish(frames[2])                          # 2: the reference while the frame waits, then pushed out
    wait_for(lambda: cam.pending is not None, what="frame 2 waiting")
    ref_pub.publish(refs[2])
    wait_for(lambda: cam.pending is not None and cam.pending.reference is not None, what="reference given to frame 2")
    for k in range(12):   # one by one: the subscription keeps only the last few undelivered ones
        ref_pub.publish(conversions.image_msg(make_image(9_000_000_000 + k).header, np.ones((60, 80), np.uint16), "16UC1"))
        wait_for(lambda: cam.references[-1][0] == 9_000_000_000 + k, what=f"other reference {k} stored")
    assert cam.references[0][0] >= 9_000_000_000   # those of frames 1 and 2 are gone from the buffer
    gate.set()
    check(1)
    check(2)
    pub.publish(frames[3])                          # 3: no reference at all
    wait_for(lambda: node.counts()[""].get("incomplete:alignment", 0) == 1, what="frame 3 counted")
    wait_for(lambda: any(m.header.stamp == frames[3].header.stamp for m in inv), what="inverse depth of frame 3")
    assert not any(m.header.stamp == frames[3].header.stamp for m in depth)
    assert node.error_counts() == {"alignment": 1}


def test_depth_align_switched_live_subscribes_and_unsubscribes_the_reference(harness):
    """depth.align set with ros2 param: the node subscribes depth_reference from then on and fits the next
    frame; set back, it unsubscribes, forgets the references and the fit, and falls back to depth.scale."""
    node = harness.start_node(**{"depth.scale": 2.0, "depth.shift": 0.1, "diagnostics.period": 60.0})
    subscribed = lambda: {t for t, _ in node.get_subscriber_names_and_types_by_node("dpt_node", "/")}  # noqa: E731
    assert subscribed() == {"/image", "/camera_info"}
    depth = harness.collector(Image, "depth")
    pub = harness.probe.create_publisher(Image, "image", qos("reliable"))
    ref_pub = harness.probe.create_publisher(Image, "depth_reference", qos("reliable"))
    wait_for(lambda: pub.get_subscription_count() > 0 and node.cameras[0].pubs["depth"].get_subscription_count() > 0,
             what="discovery")
    assert ref_pub.get_subscription_count() == 0
    assert all(r.successful for r in set_params(harness, node, **{"depth.align": True}))
    assert subscribed() == {"/image", "/camera_info", "/depth_reference"}
    wait_for(lambda: ref_pub.get_subscription_count() > 0, what="the reference subscription matched")
    frame = make_image(7_000_000_000, width=80, height=60)
    x = model_inverse_depth(node, frame)
    a = 0.5 / float(x.max() - x.min())
    b = 0.25 - a * float(x.min())
    ref_pub.publish(conversions.image_msg(frame.header, (1.0 / (a * x + b)).astype(np.float32), "32FC1"))
    wait_for(lambda: len(node.cameras[0].references) == 1, what="reference stored")
    pub.publish(frame)
    wait_for(lambda: len(depth) == 1, what="the aligned depth")
    np.testing.assert_allclose(conversions.image_array(depth[0]), 1.0 / (a * x + b), rtol=1e-3)

    assert all(r.successful for r in set_params(harness, node, **{"depth.align": False}))
    assert subscribed() == {"/image", "/camera_info"}
    assert len(node.cameras[0].references) == 0 and node.cameras[0].alignment is None
    pub.publish(make_image(8_000_000_000, width=80, height=60))   # same pixels: depth.scale / shift again
    wait_for(lambda: len(depth) == 2, what="depth after the switch")
    np.testing.assert_allclose(conversions.image_array(depth[1]), 1.0 / np.maximum(2.0 * x + 0.1, 1e-8), rtol=1e-5)
    values = {kv.key for kv in node.diagnostics().status[1].values}
    assert "alignment.scale" not in values


def test_diagnostics_period_set_live(harness):
    node = harness.start_node(**{"diagnostics.period": 60.0})
    got = harness.collector(DiagnosticArray, "/diagnostics")
    wait_for(lambda: node._diag_pub.get_subscription_count() > 0, what="discovery")
    time.sleep(0.5)
    assert got == []   # the first of a 60 s period is a minute away
    assert all(r.successful for r in set_params(harness, node, **{"diagnostics.period": 0.1}))
    wait_for(lambda: len(got) >= 5, timeout=5.0, what="five reports at 10 Hz")
    results = set_params(harness, node, **{"diagnostics.period": 0.01})
    assert not results[0].successful


def test_depth_align_overrides_a_metric_variant_and_depth_scale_and_falls_back_to_them(harness):
    """The per-frame fit replaces the metric variant's metres and a stated depth.scale; a reference that does
    not fit (depth growing with the model's inverse depth: a negative scale) leaves the frame to depth.scale,
    counted incomplete:alignment with the reason."""
    log = harness.collector(Log, "/rosout")
    node = harness.start_node(**{"depth.variant": "dpt_hybrid_nyu", "depth.align": True})
    depth, _, pub, ref_pub = _streams(harness, node, "depth", "depth_reference", Image)
    cam = node.cameras[0]

    def frame_with_reference(i, make_ref):
        frame = make_image(7_000_000_000 + i, width=72, height=56)
        x = model_inverse_depth(node, frame)
        ref_pub.publish(conversions.image_msg(frame.header, make_ref(x).astype(np.float32), "32FC1"))
        wait_for(lambda: cam.references and cam.references[-1][0] == 7_000_000_000 + i, what="reference stored")
        pub.publish(frame)
        wait_for(lambda: any(m.header.stamp == frame.header.stamp for m in depth), timeout=30, what=f"depth {i}")
        return x, conversions.image_array(next(m for m in depth if m.header.stamp == frame.header.stamp))

    def fitted(x):
        a = 0.4 / float(x.max() - x.min())
        return 1.0 / (a * x + 0.25 - a * float(x.min()))

    x, d = frame_with_reference(1, fitted)
    np.testing.assert_allclose(d, fitted(x), rtol=1e-4)               # not the model's own metres
    assert set_params(harness, node, **{"depth.scale": 2.0})[0].successful
    x, d = frame_with_reference(2, fitted)
    np.testing.assert_allclose(d, fitted(x), rtol=1e-4)               # not depth.scale
    x, d = frame_with_reference(3, lambda x: 1.0 + x - float(x.min()))   # farther where the model says nearer
    np.testing.assert_allclose(d, 1.0 / (2.0 * x), rtol=1e-5)        # depth.scale 2, shift 0
    assert node.counts()[""]["incomplete:alignment"] == 1
    wait_for(lambda: any("[alignment]" in m.msg and "is not positive" in m.msg for m in list(log)),
             what="the reason in the log")


def test_frames_without_camera_info_are_processed_and_counted_incomplete_not_as_errors(harness, monkeypatch):
    """depth without a matching camera_info still publishes inverse_depth; the skipped points are
    counted as incomplete:no_camera_info, and received = processed + dropped + idle + errors holds. Just after the
    camera_info subscription (its first may be on its way) the log says so, as a warning; later, an error with
    what to check."""
    from diagnostic_msgs.msg import DiagnosticStatus

    from dpt_ros.ros import node as node_module

    # no periodic report during the test: the "since last report" window is the one opened below
    node = harness.start_node(**{"depth.scale": 1.0, "camera_info.policy": "exact", "diagnostics.period": 60.0})
    logs = harness.collector(Log, "/rosout")
    points = harness.collector(PointCloud2, "points")
    inv = harness.collector(Image, "inverse_depth")
    pub = harness.probe.create_publisher(Image, "image", qos("reliable"))
    wait_for(lambda: pub.get_subscription_count() > 0 and
             node.cameras[0].pubs["points"].get_subscription_count() > 0 and
             node.cameras[0].pubs["inverse_depth"].get_subscription_count() > 0, what="discovery")
    node.diagnostics()   # start of the diagnostics window
    for i in range(1, 6):
        pub.publish(make_image(i))
        wait_for(lambda: len(inv) == i, what=f"inverse_depth {i}")
    # the worker publishes a frame's outputs, then counts it: the last output can arrive first
    wait_for(lambda: node.counts()[""].get("processed", 0) >= 5, what="the fifth frame counted")
    c = node.counts()[""]
    errors = sum(n for k, n in c.items() if k.startswith("error:"))
    assert (c["received"], c["processed"], errors, c["incomplete:no_camera_info"]) == (5, 5, 0, 5)
    assert c["received"] == c["processed"] + c.get("dropped", 0) + c.get("idle", 0) + errors
    assert points == [] and node.error_counts() == {"no_camera_info": 5}
    cam = node.diagnostics().status[1]
    values = {kv.key: kv.value for kv in cam.values}
    assert values["incomplete.no_camera_info"] == "5" and "error.no_camera_info" not in values
    assert cam.level == DiagnosticStatus.WARN and cam.message == "5 frames with outputs skipped since last report"
    # the log says which topic (resolved) had nothing: early on, a warning that none has come yet
    wait_for(lambda: any("[no_camera_info]" in m.msg for m in logs), what="the log line")
    first = next(m for m in logs if "[no_camera_info]" in m.msg)
    assert first.level == Log.WARN and first.msg.startswith(
        "[no_camera_info] no camera_info yet: none received on /camera_info in the "), first.msg
    # past the first seconds, an error and what to do
    monkeypatch.setattr(node_module, "_INFO_GRACE_S", 0.0)
    pub.publish(make_image(6))
    wait_for(lambda: len(inv) == 6, what="inverse_depth 6")
    wait_for(lambda: any("none received on /camera_info:" in m.msg for m in logs), what="the error")
    line = next(m for m in logs if "none received on /camera_info:" in m.msg)
    assert line.level == Log.ERROR and line.msg.startswith(
        "[no_camera_info] no camera_info: none received on /camera_info: check that the camera publishes it there "
        "(remap camera_info:=...)") and "camera_info.url" in line.msg, line.msg


def test_camera_info_arriving_just_after_its_image_is_used(harness, monkeypatch):
    """Image and camera_info travel on separate topics: with camera_info.policy exact, an info that
    arrives after its image (the worker already waiting for it) still gives the frame its cloud.
    The wait (50 ms in the node) is widened to 2 s and the info sent 0.3 s late, so that the test
    does not depend on the machine's load."""
    import time

    from dpt_ros.ros import node as node_module

    monkeypatch.setattr(node_module, "_INFO_WAIT_S", 2.0)
    node = harness.start_node(**{"depth.scale": 1.0, "camera_info.policy": "exact"})
    points = harness.collector(PointCloud2, "points")
    pub = harness.probe.create_publisher(Image, "image", qos("reliable"))
    info_pub = harness.probe.create_publisher(CameraInfo, "camera_info", qos("reliable"))
    wait_for(lambda: pub.get_subscription_count() > 0 and info_pub.get_subscription_count() > 0 and
             node.cameras[0].pubs["points"].get_subscription_count() > 0, what="discovery")
    first = make_image(1)
    info_pub.publish(make_info(first))   # the camera has sent camera_info before
    wait_for(lambda: len(node.cameras[0].infos) == 1, what="first info stored")
    pub.publish(first)
    wait_for(lambda: len(points) == 1, what="first cloud")
    for i in range(2, 4):
        img = make_image(i * 10**8)
        pub.publish(img)
        time.sleep(0.3)
        info_pub.publish(make_info(img))
        wait_for(lambda: len(points) == i or node.error_counts().get("no_camera_info", 0), what=f"frame {i}")
    assert node.error_counts() == {} and len(points) == 3
    assert [p.header.stamp.nanosec + p.header.stamp.sec * 10**9 for p in points[1:]] == [i * 10**8 for i in range(2, 4)]


def test_a_camera_info_published_once_latched_reaches_a_transient_local_subscription(harness, monkeypatch):
    """A driver with a static calibration publishes camera_info once, latched (transient local, reliable), before the
    node starts: a volatile subscription never gets it (no depth/camera_info, no points; the reason names the
    parameter); with qos.camera_info_durability:=transient_local every frame has it."""
    from rcl_interfaces.msg import Log

    from dpt_ros.ros import node as node_module

    monkeypatch.setattr(node_module, "_INFO_GRACE_S", 0.2)   # (the frames come 0.5 s after the subscription)

    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    log = harness.collector(Log, "/rosout")
    for ns, durability in (("volatile_info", "volatile"), ("latched_info", "transient_local")):
        info_pub = harness.probe.create_publisher(CameraInfo, f"/{ns}/camera_info", latched)
        first = make_image(10**9, width=80, height=60)
        info_pub.publish(make_info(first, fx=42.0))   # once, before the node is there
        node = harness.start_node(namespace=ns, **{"depth.scale": 1.0, "camera_info.policy": "latest",
                                                   "qos.camera_info_durability": durability})
        infos = harness.collector(CameraInfo, f"/{ns}/depth/camera_info")
        depth = harness.collector(Image, f"/{ns}/depth")
        pub = harness.probe.create_publisher(Image, f"/{ns}/image", qos("reliable"))
        wait_for(lambda: pub.get_subscription_count() > 0 and info_pub.get_subscription_count() > 0 and
                 node.cameras[0].pubs["depth/camera_info"].get_subscription_count() > 0, what="discovery")
        if durability == "transient_local":
            wait_for(lambda: len(node.cameras[0].infos) == 1, what="the latched camera_info")
        else:
            time.sleep(0.5)   # (what a late volatile subscription would get, it has had time to get)
        for i in range(2):
            pub.publish(make_image((2 + i) * 10**9, width=80, height=60))
            wait_for(lambda: len(depth) == i + 1, what=f"depth {i + 1} of {ns}")
        if durability == "transient_local":
            wait_for(lambda: len(infos) == 2, what="depth/camera_info of both frames")
            assert [m.k[0] for m in infos] == [42.0, 42.0]
        else:
            assert infos == [] and node.counts()[""]["incomplete:no_camera_info"] == 2
            wait_for(lambda: any(f"none received on /{ns}/camera_info" in m.msg and
                                 "qos.camera_info_durability:=transient_local" in m.msg for m in log),
                     what="the reason, with the way out")


def test_a_frame_older_than_the_newest_camera_info_does_not_wait_for_one(harness, monkeypatch):
    """camera_info arrives in stamp order: once an info newer than the frame is there, the frame's own
    (exact policy) can no longer come, so the worker does not wait (the wait is widened to 10 s here:
    a wait would hold the frame's outputs that long)."""
    from dpt_ros.ros import node as node_module

    monkeypatch.setattr(node_module, "_INFO_WAIT_S", 10.0)
    node = harness.start_node(**{"depth.scale": 1.0, "camera_info.policy": "exact"})
    out = harness.collector(Image, "inverse_depth")
    harness.collector(PointCloud2, "points")
    pub = harness.probe.create_publisher(Image, "image", qos("reliable"))
    info_pub = harness.probe.create_publisher(CameraInfo, "camera_info", qos("reliable"))
    wait_for(lambda: pub.get_subscription_count() > 0 and info_pub.get_subscription_count() > 0 and
             node.cameras[0].pubs["points"].get_subscription_count() > 0, what="discovery")
    info_pub.publish(make_info(make_image(2 * 10**9)))
    wait_for(lambda: len(node.cameras[0].infos) == 1, what="info stored")
    pub.publish(make_image(10**9))
    wait_for(lambda: len(out) == 1, timeout=4.0, what="inverse depth without a 10 s wait")
    assert node.error_counts() == {"no_camera_info": 1}


def test_a_camera_whose_camera_info_stopped_waits_for_it_once_not_for_every_frame(harness, monkeypatch):
    """The worker serves every camera: waiting for a camera_info that has stopped coming on each of one camera's
    frames would hold all cameras back. After one wait in vain (widened to 5 s here) its next frames go without
    waiting (the waits counted, not timed), until a camera_info comes again; then a late one is waited for again."""
    import time

    from dpt_ros.ros import node as node_module

    monkeypatch.setattr(node_module, "_INFO_WAIT_S", 5.0)
    node = harness.start_node(**{"depth.scale": 1.0, "camera_info.policy": "exact"})
    waits, _ = watch_waits(node, monkeypatch)
    out = harness.collector(Image, "inverse_depth")
    points = harness.collector(PointCloud2, "points")
    pub = harness.probe.create_publisher(Image, "image", qos("reliable"))
    info_pub = harness.probe.create_publisher(CameraInfo, "camera_info", qos("reliable"))
    wait_for(lambda: pub.get_subscription_count() > 0 and info_pub.get_subscription_count() > 0 and
             node.cameras[0].pubs["points"].get_subscription_count() > 0, what="discovery")
    first = make_image(10**9)
    info_pub.publish(make_info(first))
    wait_for(lambda: len(node.cameras[0].infos) == 1, what="first info stored")
    pub.publish(first)
    wait_for(lambda: len(points) == 1, what="first cloud")
    pub.publish(make_image(2 * 10**9))        # camera_info has stopped: this frame waits the 5 s, in vain
    wait_for(lambda: len(out) == 2, timeout=15.0, what="frame 2 after its wait")
    for i in (3, 4):
        pub.publish(make_image(i * 10**9))
        wait_for(lambda: len(out) == i, what=f"frame {i}")
    assert waits == [2 * 10**9], waits   # frames 3 and 4 without another wait
    assert node.error_counts() == {"no_camera_info": 3} and len(points) == 1
    img = make_image(5 * 10**9)               # camera_info is back, late: waited for again
    pub.publish(img)
    time.sleep(0.3)
    info_pub.publish(make_info(img))
    wait_for(lambda: len(out) == 5, timeout=15.0, what="frame 5")
    # (frame 5 went before its info could clear the flag, or waited for it: both are right)
    img = make_image(6 * 10**9)
    pub.publish(img)
    time.sleep(0.3)
    info_pub.publish(make_info(img))
    wait_for(lambda: len(out) == 6, timeout=15.0, what="frame 6")
    assert conversions.stamp_ns(points[-1].header) == 6 * 10**9


def test_compressed_input_transport(harness):
    """image_transport:=compressed subscribes to <image>/compressed with the remap of ``image`` applied
    (as image_transport does), so `-r image:=/cam/image_raw` works for both transports."""
    import cv2
    from sensor_msgs.msg import CompressedImage

    from dpt_ros.ros.testing import pattern_image

    node = harness.start_node(image_transport="compressed", cli_args=["--ros-args", "-r", "image:=/cam/image_raw"])
    out = harness.collector(Image, "inverse_depth")
    pub = harness.probe.create_publisher(CompressedImage, "/cam/image_raw/compressed", qos())
    wait_for(lambda: pub.get_subscription_count() > 0 and
             node.cameras[0].pubs["inverse_depth"].get_subscription_count() > 0, what="discovery")
    ok, jpeg = cv2.imencode(".jpg", pattern_image(72, 40)[..., ::-1])
    header = make_image(99, frame_id="jpeg_cam").header
    pub.publish(conversions.compressed_msg(header, jpeg.tobytes(), "jpeg"))
    wait_for(lambda: len(out) == 1, what="output from a compressed frame")
    assert (out[0].width, out[0].height, out[0].header.frame_id) == (72, 40, "jpeg_cam")
    bad = conversions.compressed_msg(header, b"not a jpeg", "jpeg")
    pub.publish(bad)
    wait_for(lambda: node.error_counts().get("encoding", 0) == 1, what="corrupt jpeg counted")
    cam = {v.key: v.value for v in node.diagnostics().status[1].values}
    assert cam["topic"] == "/cam/image_raw/compressed"
    assert harness.probe.count_subscribers("/image/compressed") == 0


@pytest.mark.parametrize("encoding,fmt", [
    ("rgb8", "rgb8; png compressed bgr8"), ("bgr8", "bgr8; png compressed bgr8"), ("rgb8", "png"),
    ("rgb16", "rgb16; png compressed bgr16"), ("mono16", "mono16; png compressed mono16")])
def test_a_compressed_frame_gives_the_outputs_of_its_raw_frame(harness, encoding, fmt):
    """image_transport:=compressed: a frame as image_transport's compressed plugin writes it (PNG: lossless; the file
    in OpenCV's BGR order whatever the source encoding, 16-bit kept 16-bit; a bare 'png' as older publishers write
    it) gives the outputs of the same samples sent raw: inverse depth, the cloud's rgb words (0x00RRGGBB of the
    image's own colours, not red and blue swapped; 16-bit rounded as a raw frame's) and the overlay on
    segmentation/colored. The test above checks only the size and frame_id of a compressed frame's output."""
    import cv2
    from sensor_msgs.msg import CompressedImage

    node = harness.start_node(image_transport="compressed", **{
        "depth.scale": 1.0, "camera_info.policy": "latest", "points.stride": 2,
        "segmentation.variant": "dpt_hybrid_ade20k", "segmentation.weights": "random"})
    names = {"inverse_depth": Image, "segmentation": Image, "segmentation/colored": Image, "points": PointCloud2}
    got, (pub, info_pub) = harness.connect(node, names, {"image/compressed": CompressedImage,
                                                         "camera_info": CameraInfo})
    raw = make_image(7, width=72, height=40, encoding=encoding, frame_id="png_cam")
    info_pub.publish(make_info(raw))
    wait_for(lambda: len(node.cameras[0].infos) == 1, what="camera_info stored")
    samples = np.frombuffer(bytes(raw.data), "<u2" if encoding.endswith("16") else np.uint8).reshape(
        40, 72, *(() if encoding.startswith("mono") else (3,)))
    if encoding.startswith("rgb"):   # the file holds BGR
        samples = samples[..., ::-1]
    ok, png = cv2.imencode(".png", np.ascontiguousarray(samples))
    assert ok
    pub.publish(conversions.compressed_msg(raw.header, png.tobytes(), fmt))
    wait_for(lambda: all(len(v) == 1 for v in got.values()), timeout=60, what="the outputs of the compressed frame")
    assert node.error_counts() == {}
    out = {n: v[0] for n, v in got.items()}
    assert all(m.header == raw.header for m in out.values())
    rgb = pipeline.decode(conversions.image_view(raw), np).astype(np.uint32)   # the raw frame's colours
    np.testing.assert_allclose(conversions.image_array(out["inverse_depth"]), model_inverse_depth(node, raw),
                               rtol=1e-5, atol=1e-6)
    words = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    cloud = conversions.cloud_array(out["points"])
    np.testing.assert_array_equal(cloud["rgb"].view(np.uint32), words[::2, ::2])
    labels = conversions.image_array(out["segmentation"])
    np.testing.assert_array_equal(conversions.image_array(out["segmentation/colored"]), pipeline.overlay(
        rgb.astype(np.uint8), pipeline.colorize_labels(labels), node.settings["segmentation.overlay_alpha"]))


def test_a_silent_image_topic_whose_other_transport_publishes_says_to_set_image_transport(harness, monkeypatch):
    """A camera over Wi-Fi (or a bag) that offers only image_raw/compressed, the node left at image_transport:=raw:
    "no image yet" says the compressed transport is there and to set image_transport:=compressed (it said only that
    no Image topic had a publisher, and to remap image); and the same the other way round."""
    from sensor_msgs.msg import CompressedImage

    from dpt_ros.ros import health

    monkeypatch.setattr(health, "_STALL_S", 0.0)
    node = harness.start_node(cli_args=["--ros-args", "-r", "image:=/cam/image_raw"], **{"diagnostics.period": 60.0})
    jpeg = harness.probe.create_publisher(CompressedImage, "/cam/image_raw/compressed", qos("best_effort"))
    wait_for(lambda: node.count_publishers("/cam/image_raw/compressed") > 0, what="discovery")
    message = node.diagnostics().status[1].message
    assert message.startswith("no image yet (") and "check the image topic (/cam/image_raw)" in message, message
    assert message.endswith(
        "; nothing publishes it, but /cam/image_raw/compressed has a publisher of CompressedImage: the camera offers "
        "the compressed transport, set image_transport:=compressed (ros2 param set /dpt_node image_transport "
        "compressed; -p image_transport:=compressed, or the launch files' argument image_transport:=compressed)"), \
        message
    assert all(r.successful for r in set_params(harness, node, image_transport="compressed"))
    harness.probe.create_publisher(Image, "/cam/image_raw", qos("best_effort"))
    wait_for(lambda: node.count_publishers("/cam/image_raw") > 0 and node.count_subscribers("/cam/image_raw") == 0,
             what="discovery of the raw publisher")
    time.sleep(0.1)
    message = node.diagnostics().status[1].message
    assert "check the image topic (/cam/image_raw/compressed)" in message and "1 publisher found on it" in message
    # only the raw one left: the node is told to go back to image_transport:=raw
    harness.probe.destroy_publisher(jpeg)
    wait_for(lambda: node.count_publishers("/cam/image_raw/compressed") == 0, what="the compressed publisher gone")
    message = node.diagnostics().status[1].message
    assert message.endswith("; nothing publishes it, but /cam/image_raw has a publisher of Image: the camera offers "
                            "the raw transport, set image_transport:=raw (ros2 param set /dpt_node image_transport "
                            "raw; -p image_transport:=raw, or the launch files' argument image_transport:=raw)"), \
        message


def test_an_image_topic_of_another_message_type_is_said_so_with_the_remap_to_make(harness, monkeypatch):
    """-r image:=/cam/image_raw/compressed, the topic README's user sees in ros2 topic list: with image_transport:=raw
    the Image subscription receives nothing from the CompressedImage publisher and 'no image yet' blamed containers'
    /dev/shm ('1 publisher found on it, so if none is just idle: ...'); now the type, and to set
    image_transport:=compressed with the base topic. With it set, the node adds /compressed (as image_transport does)
    and was told only 'nothing publishes it': now that the remap should name the base topic."""
    from sensor_msgs.msg import CompressedImage

    from dpt_ros.ros import health

    monkeypatch.setattr(health, "_STALL_S", 0.0)
    node = harness.start_node(cli_args=["--ros-args", "-r", "image:=/cam/image_raw/compressed"],
                              **{"diagnostics.period": 60.0})
    harness.other_participant().create_publisher(CompressedImage, "/cam/image_raw/compressed", qos("best_effort"))
    wait_for(lambda: node.count_publishers("/cam/image_raw/compressed") > 0, what="discovery")
    message = node.diagnostics().status[1].message
    assert message.endswith(
        "check the image topic (/cam/image_raw/compressed) and the camera's QoS; 1 publisher found on it, of type "
        "sensor_msgs/msg/CompressedImage, which this subscription (sensor_msgs/msg/Image, image_transport:=raw) does "
        "not receive: it is a compressed transport: set image_transport:=compressed and remap the image to its base "
        "topic (-r image:=/cam/image_raw; the node adds /compressed, as image_transport does)"), message
    assert all(r.successful for r in set_params(harness, node, image_transport="compressed"))
    message = node.diagnostics().status[1].message
    assert message.endswith(
        "check the image topic (/cam/image_raw/compressed/compressed) and the camera's QoS; nothing publishes it, but "
        "/cam/image_raw/compressed has a publisher of CompressedImage: with image_transport:=compressed the node adds "
        "/compressed to the image topic, as image_transport does: remap the image to the base topic "
        "(-r image:=/cam/image_raw)"), message


def test_image_transport_switched_live(harness):
    """image_transport set with ros2 param: the node leaves image (remap applied) for image/compressed and
    back; frames on the new topic are processed, the old topic has no subscriber from the node."""
    import cv2
    from sensor_msgs.msg import CompressedImage

    from dpt_ros.ros.testing import pattern_image

    node = harness.start_node(cli_args=["--ros-args", "-r", "image:=/cam/image_raw"])
    out = harness.collector(Image, "inverse_depth")
    raw = harness.probe.create_publisher(Image, "/cam/image_raw", qos())
    jpeg = harness.probe.create_publisher(CompressedImage, "/cam/image_raw/compressed", qos())
    wait_for(lambda: raw.get_subscription_count() > 0 and
             node.cameras[0].pubs["inverse_depth"].get_subscription_count() > 0, what="discovery")
    assert jpeg.get_subscription_count() == 0
    assert all(r.successful for r in set_params(harness, node, image_transport="compressed"))
    wait_for(lambda: jpeg.get_subscription_count() > 0 and raw.get_subscription_count() == 0, what="the switch")
    ok, data = cv2.imencode(".jpg", pattern_image(72, 40)[..., ::-1])
    jpeg.publish(conversions.compressed_msg(make_image(7).header, data.tobytes(), "jpeg"))
    wait_for(lambda: len(out) == 1, what="output from a compressed frame")
    assert (out[0].width, out[0].height) == (72, 40)
    assert {v.key: v.value for v in node.diagnostics().status[1].values}["topic"] == "/cam/image_raw/compressed"
    assert all(r.successful for r in set_params(harness, node, image_transport="raw"))
    wait_for(lambda: raw.get_subscription_count() > 0 and jpeg.get_subscription_count() == 0, what="the switch back")
    raw.publish(make_image(8, width=50, height=30))
    wait_for(lambda: len(out) == 2, what="output from a raw frame")
    assert (out[1].width, out[1].height) == (50, 30)


def test_cameras_with_equal_shapes_share_one_batch(harness):
    """While the worker is busy, both cameras' newest frames wait; the next forward pass takes both, and
    each camera publishes the outputs of its own frame."""
    node = harness.start_node(cameras=["a", "b"])
    outs, pubs = harness.cameras(node, ("a", "b"))
    from dpt_ros.ros.testing import pattern_image

    # camera b sees another picture: each batch row must reach its own camera
    b = make_image(3, frame_id="b")
    b = conversions.image_msg(b.header, pattern_image(80, 60, seed=5)[::-1, ::-1].copy(), "rgb8")
    frames = {"a": make_image(2, frame_id="a"), "b": b}
    want = {}
    for ns, f in frames.items():
        rgb = pipeline.decode(conversions.image_view(f), np)
        net = node.models.depth.run(node.models.depth_pre(rgb))["inverse_depth"]
        want[ns] = pipeline.upsample(net, (f.height, f.width))[0].numpy()
    tolerance = 1e-5 + 1e-4 * np.abs(want["a"]).max()
    assert np.abs(want["a"] - want["b"]).max() > 10 * tolerance   # distinguishable depth
    gate, entered, batches = gate_engine(node.models.depth)
    pubs["a"].publish(make_image(1, frame_id="a"))
    wait_for(entered.is_set, what="worker busy with the first frame")
    pubs["a"].publish(frames["a"])
    pubs["b"].publish(frames["b"])
    wait_for(lambda: all(c.pending is not None for c in node.cameras), what="both slots filled")
    gate.set()
    wait_for(lambda: len(outs["a"]) == 2 and len(outs["b"]) == 1, what="outputs")
    assert batches == [(1, 3, 64, 96), (2, 3, 64, 96)]
    assert [m.header.stamp.nanosec for m in outs["a"]] == [1, 2] and outs["b"][0].header.stamp.nanosec == 3
    np.testing.assert_allclose(conversions.image_array(outs["a"][1]), want["a"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(conversions.image_array(outs["b"][0]), want["b"], rtol=1e-4, atol=1e-5)


def test_cameras_of_one_batch_each_get_their_own_depth_calibration_cloud_and_labels(harness):
    """Two cameras of one frame size, each with its own camera_info, in one forward pass of each model: every output
    of a camera is of its own frame and its own calibration (header, metres, depth/camera_info K, the cloud's points
    back-projected with its intrinsics, labels in the cloud and on segmentation). The batch test above covers
    inverse_depth alone; a calibration, cloud or label row taken from the other camera of the batch would pass it."""
    from dpt_ros.ros.testing import pattern_image

    node = harness.start_node(cameras=["a", "b"], **{
        "depth.scale": 1.0, "depth.shift": 0.5, "camera_info.policy": "latest", "points.stride": 1,
        "points.label": True, "segmentation.variant": "dpt_hybrid_ade20k", "segmentation.weights": "random"})
    names = {"depth": Image, "depth/camera_info": CameraInfo, "points": PointCloud2, "segmentation": Image}
    got = {(ns, n): harness.collector(t, f"{ns}/{n}") for ns in "ab" for n, t in names.items()}
    pubs = {ns: harness.probe.create_publisher(Image, f"{ns}/image", qos()) for ns in "ab"}
    info_pubs = {ns: harness.probe.create_publisher(CameraInfo, f"{ns}/camera_info", qos()) for ns in "ab"}
    wait_for(lambda: all(p.get_subscription_count() > 0 for p in (*pubs.values(), *info_pubs.values())) and
             all(c.pubs[n].get_subscription_count() > 0 for c in node.cameras for n in names), what="discovery")
    b = make_image(3, frame_id="b")   # camera b sees another picture: distinguishable depth and labels
    frames = {"a": make_image(2, frame_id="a"),
              "b": conversions.image_msg(b.header, pattern_image(80, 60, seed=5)[::-1, ::-1].copy(), "rgb8")}
    intrinsics = {"a": (40.0, 39.5, 29.5), "b": (90.0, 45.0, 25.0)}   # fx = fy, cx, cy
    for ns, (f, cx, cy) in intrinsics.items():
        info = make_info(frames[ns], fx=f)
        info.k[2], info.k[5], info.p[2], info.p[6] = cx, cy, cx, cy
        info_pubs[ns].publish(info)
    wait_for(lambda: all(len(c.infos) == 1 for c in node.cameras), what="both camera_infos stored")
    want = {}
    for ns, frame in frames.items():
        rgb = pipeline.decode(conversions.image_view(frame), np)
        logits = node.models.segmentation.run(node.models.segmentation_pre(rgb))["logits"].float()
        up = torch.nn.functional.interpolate(logits, size=(60, 80), mode="bicubic", align_corners=False)[0]
        top2 = up.topk(2, dim=0).values
        want[ns] = (1.0 / (model_inverse_depth(node, frame) + 0.5), (up.argmax(dim=0) + 1).numpy(),
                    (top2[0] - top2[1]).numpy() > 1e-4)
    assert np.abs(want["a"][0] - want["b"][0]).max() > 1e-3 and (want["a"][1] != want["b"][1]).mean() > 0.05
    gate, entered, batches = gate_engine(node.models.depth)
    pubs["a"].publish(make_image(1, frame_id="a"))
    wait_for(entered.is_set, what="worker busy with the first frame")
    for ns, frame in frames.items():
        pubs[ns].publish(frame)
    wait_for(lambda: all(c.pending is not None for c in node.cameras), what="both slots filled")
    gate.set()
    stamp = {ns: f.header.stamp.nanosec for ns, f in frames.items()}
    wait_for(lambda: all(any(m.header.stamp.nanosec == stamp[ns] for m in got[ns, n]) for ns in "ab" for n in names),
             timeout=60, what="the outputs of both cameras")
    assert batches == [(1, 3, 64, 96), (2, 3, 64, 96)]
    u, v = np.meshgrid(np.arange(80), np.arange(60))
    for ns, frame in frames.items():
        out = {n: next(m for m in got[ns, n] if m.header.stamp.nanosec == stamp[ns]) for n in names}
        assert all(m.header == frame.header for m in out.values()), ns
        depth_want, labels_want, clear = want[ns]
        depth = conversions.image_array(out["depth"])
        np.testing.assert_allclose(depth, depth_want, rtol=1e-4, err_msg=ns)
        labels = conversions.image_array(out["segmentation"])
        assert clear.mean() > 0.95
        np.testing.assert_array_equal(labels[clear], labels_want[clear], err_msg=ns)
        f, cx, cy = intrinsics[ns]
        info = out["depth/camera_info"]
        assert (info.width, info.height) == (80, 60)
        assert list(info.k) == pytest.approx([f, 0.0, cx, 0.0, f, cy, 0.0, 0.0, 1.0]), ns
        pts = conversions.cloud_array(out["points"])
        assert (out["points"].height, out["points"].width) == (60, 80)
        np.testing.assert_array_equal(pts["z"], depth, err_msg=ns)
        np.testing.assert_allclose(pts["x"], (u - cx) * depth / f, rtol=1e-5, atol=1e-6, err_msg=ns)
        np.testing.assert_allclose(pts["y"], (v - cy) * depth / f, rtol=1e-5, atol=1e-6, err_msg=ns)
        np.testing.assert_array_equal(pts["label"], labels, err_msg=ns)
    assert node.error_counts() == {}


def test_metric_variant_publishes_the_models_metres(harness):
    """dpt_hybrid_nyu (random weights): depth = the model's own metres upsampled (official order),
    with REP 117 limits from depth.min / depth.max."""

    node = harness.start_node(**{"depth.variant": "dpt_hybrid_nyu", "depth.max": 7.0})
    depth_out = harness.collector(Image, "depth")
    pub = harness.probe.create_publisher(Image, "image", qos())
    wait_for(lambda: pub.get_subscription_count() > 0 and
             node.cameras[0].pubs["depth"].get_subscription_count() > 0, what="discovery")
    frame = make_image(11, width=72, height=56)
    pub.publish(frame)
    wait_for(lambda: len(depth_out) == 1, timeout=30, what="depth")
    got = conversions.image_array(depth_out[0])
    rgb = pipeline.decode(conversions.image_view(frame), np)
    net = node.models.depth.run(node.models.depth_pre(rgb))
    metres = pipeline.upsample(net["depth"], (56, 72))[0].numpy()
    expected = np.where(metres > 7.0, np.inf, metres)
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    assert node.models.depth.variant.metric is not None
    # a stated calibration overrides the variant's own metres, from the next frame
    from rclpy.parameter import Parameter

    assert all(r.successful for r in node.set_parameters([Parameter("depth.scale", value=2.0),
                                                          Parameter("depth.shift", value=0.1)]))
    pub.publish(make_image(12, width=72, height=56))
    wait_for(lambda: len(depth_out) == 2, timeout=30, what="depth after depth.scale")
    inv = pipeline.upsample(net["inverse_depth"], (56, 72))[0].numpy()   # same pixels (make_image's seed)
    calibrated = 1.0 / np.maximum(2.0 * inv + 0.1, 1e-8)
    np.testing.assert_allclose(conversions.image_array(depth_out[1]),
                               np.where(calibrated > 7.0, np.inf, calibrated), rtol=1e-5)


def test_a_metric_variant_next_to_segmentation_keeps_its_metres(harness):
    """Both tasks in one node, each frame's depth post-processed with the depth variant's own metres
    (the segmentation variant has none)."""
    node = harness.start_node(**{"depth.variant": "dpt_hybrid_nyu", "segmentation.variant": "dpt_hybrid_ade20k",
                                 "segmentation.weights": "random", "input_size": 64})
    got = {n: harness.collector(Image, n) for n in ("depth", "segmentation")}
    pub = harness.probe.create_publisher(Image, "image", qos())
    wait_for(lambda: pub.get_subscription_count() > 0 and
             all(node.cameras[0].pubs[n].get_subscription_count() > 0 for n in got), what="discovery")
    pub.publish(make_image(21, width=64, height=48))
    wait_for(lambda: all(len(v) == 1 for v in got.values()), timeout=30, what="depth and segmentation")
    assert np.isfinite(conversions.image_array(got["depth"][0])).any()
    labels = conversions.image_array(got["segmentation"][0])
    assert labels.min() >= 1 and labels.max() <= 150 and node.error_counts() == {}


def _warnings(log: list) -> list[str]:
    """The WARN lines of dpt_node in messages collected from /rosout."""
    return [m.msg for m in list(log) if m.name == "dpt_node" and m.level == Log.WARN]


def test_incompatible_qos_is_warned_with_the_topic(harness):
    """qos.output_reliability:=best_effort: a reliable subscriber cannot match; the node says so.

    The node's log is read from /rosout (as rqt_console does), not from the captured stderr: capfd's
    readouterr() reads, then truncates the capture file, and a line written in between by the executor
    thread was lost (these two tests failed about 1 run in 4 after test_ros_node_params.py)."""
    log = harness.collector(Log, "/rosout")   # before the node, so that its first lines are seen
    node = harness.start_node(**{"qos.output_reliability": "best_effort"})
    harness.collector(Image, "inverse_depth", reliability="reliable")
    # (what RViz subscribes with when its Durability Policy is set to Transient Local)
    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    harness.probe.create_subscription(Image, "inverse_depth/colored", lambda m: None, latched)
    wanted = {"incompatible QoS on /inverse_depth (policy RELIABILITY): a subscriber asks for reliable and this node "
              "publishes best effort: qos.output_reliability:=reliable, or a best-effort subscriber",
              "incompatible QoS on /inverse_depth/colored (policy DURABILITY): a subscriber asks for transient local "
              "durability and this node's outputs are volatile: subscribe with volatile durability (RViz: Durability "
              "Policy 'Volatile')"}
    wait_for(lambda: wanted <= set(_warnings(log)), what=f"incompatible QoS warnings; got {_warnings(log)}")
    assert node.cameras[0].pubs["inverse_depth"].get_subscription_count() == 0


def test_sros2_policy_tool_resolves_remaps_like_the_node(harness):
    """Remapped inputs and outputs, compressed transport, namespace /robot: the policy generator's
    topic set (``--remap``) is exactly what the running node subscribes and publishes, including a rule
    for this node by name (``dpt_node:depth:=...``) and one for another node, which rcl leaves alone."""
    from dpt_ros.tools import sros2_policy

    rules = ["image:=/camera/image_raw", "camera_info:=/camera/camera_info", "points:=cloud",
             "dpt_node:depth:=metric_depth", "other_node:inverse_depth:=elsewhere", "/diagnostics:=/robot/dpt_diagnostics"]
    node = harness.start_node(namespace="robot", image_transport="compressed",
                              cli_args=["--ros-args"] + [a for r in rules for a in ("-r", r)])
    with_label_info = importlib.util.find_spec("vision_msgs") is not None   # label_info is published only then
    want = sros2_policy.expected("/robot", [""], "compressed", optional=with_label_info,
                                 remaps=sros2_policy.parse_remaps(rules))
    subscribed = {t for t, _ in node.get_subscriber_names_and_types_by_node("dpt_node", "/robot")}
    published = {t for t, _ in node.get_publisher_names_and_types_by_node("dpt_node", "/robot")}
    assert subscribed == set(want["subscribe"]) == {"/camera/image_raw/compressed", "/camera/camera_info"}
    assert published == set(want["publish"]) and "/robot/cloud" in published and "/robot/points" not in published
    assert {"/robot/metric_depth", "/robot/inverse_depth"} <= published and "/robot/depth" not in published
    assert "/robot/dpt_diagnostics" in published and "/diagnostics" not in published   # a node-wide topic too


def test_absolute_and_private_camera_namespaces(harness):
    """cameras:=[/left, ~/right, front] in namespace /robot: /left/..., /robot/dpt_node/right/..., /robot/front/...
    (with depth.align, each camera's depth_reference too)."""
    node = harness.start_node(namespace="robot", cameras=["/left", "~/right", "front"], **{"depth.align": True})
    topics = {t for t, _ in node.get_topic_names_and_types()}
    for ns in ("/left", "/robot/dpt_node/right", "/robot/front"):
        assert {f"{ns}/image", f"{ns}/inverse_depth"} <= topics, (ns, sorted(topics))
    # the SROS2 policy generator resolves the same names as the running node
    from dpt_ros.tools import sros2_policy
    want = sros2_policy.expected("/robot", ["/left", "~/right", "front"], "raw", optional=True, depth_align=True)
    subscribed = {t for t, _ in node.get_subscriber_names_and_types_by_node("dpt_node", "/robot")}
    published = {t for t, _ in node.get_publisher_names_and_types_by_node("dpt_node", "/robot")}
    assert subscribed == set(want["subscribe"])
    assert {"/left/depth_reference", "/robot/dpt_node/right/depth_reference", "/robot/front/depth_reference"} <= subscribed
    assert published <= set(want["publish"]) and "/robot/dpt_node/right/points" in published
    out = harness.collector(Image, "/left/inverse_depth")
    pub = harness.probe.create_publisher(Image, "/left/image", qos())
    wait_for(lambda: pub.get_subscription_count() > 0 and
             node.cameras[0].pubs["inverse_depth"].get_subscription_count() > 0, what="discovery")
    publish_until(pub, lambda i: make_image(i, frame_id="left_optical"), out)
    # the worker publishes a frame's outputs, then counts it: the output can arrive first
    wait_for(lambda: node.counts()["/left"].get("processed", 0) >= 1, what="the frame counted as processed")
    assert out[0].header.frame_id == "left_optical" and node.counts()["/left"]["processed"] >= 1


def test_incompatible_qos_on_each_input_is_warned_with_its_topic(harness):
    """qos.input_reliability:=reliable with best-effort publishers: the compressed image and the
    camera_info subscription each name their own topic (one warning does not hide the other)."""
    from sensor_msgs.msg import CompressedImage

    log = harness.collector(Log, "/rosout")
    harness.start_node(**{"qos.input_reliability": "reliable", "image_transport": "compressed"})
    harness.probe.create_publisher(CompressedImage, "image/compressed", qos("best_effort"))
    harness.probe.create_publisher(CameraInfo, "camera_info", qos("best_effort"))
    wanted = {f"incompatible QoS on {t} (policy RELIABILITY): a best-effort publisher cannot feed this reliable "
              f"subscription: qos.input_reliability:=best_effort" for t in ("/image/compressed", "/camera_info")}
    wait_for(lambda: wanted <= set(_warnings(log)),
             what="incompatible QoS warnings for image/compressed and camera_info")



def test_qos_input_reliability_says_every_input_it_sets_the_depth_reference_too(harness):
    """qos.input_reliability sets the reliability of the depth_reference subscription too (depth.align): with
    reliable, a best-effort depth camera feeds it nothing and is warned of with that parameter; its description
    (README's Parameters row) named only the image and camera_info subscriptions, so a user whose depth camera
    publishes best effort had no word of it there. Every subscription of the camera is named in it now."""
    from dpt_ros.ros import params

    log = harness.collector(Log, "/rosout")
    node = harness.start_node(**{"qos.input_reliability": "reliable", "depth.align": True})
    harness.probe.create_publisher(Image, "depth_reference", qos("best_effort"))
    wait_for(lambda: "incompatible QoS on /depth_reference (policy RELIABILITY): a best-effort publisher cannot feed "
             "this reliable subscription: qos.input_reliability:=best_effort" in _warnings(log),
             what="the depth_reference warning")
    subs = node.cameras[0].subs
    assert set(subs) == {"image", "camera_info", "depth_reference"}
    assert {name: sub.qos_profile.reliability for name, sub in subs.items()} == dict.fromkeys(
        subs, ReliabilityPolicy.RELIABLE)
    description = params.SPECS["qos.input_reliability"].description
    assert [name for name in subs if name not in description] == [], description

def test_a_volatile_camera_info_publisher_for_a_transient_local_subscription_is_warned_with_the_way_out(harness):
    log = harness.collector(Log, "/rosout")
    harness.start_node(namespace="durable", **{"qos.camera_info_durability": "transient_local"})
    harness.probe.create_publisher(CameraInfo, "/durable/camera_info", qos("reliable"))   # volatile
    wanted = ("incompatible QoS on /durable/camera_info (policy DURABILITY): a volatile publisher cannot feed this "
              "transient-local camera_info subscription: qos.camera_info_durability:=volatile (transient_local is for "
              "a driver that latches its camera_info)")
    wait_for(lambda: wanted in [m.msg for m in list(log) if m.name == "durable.dpt_node"], what="the durability warning")


def test_a_best_effort_camera_info_for_a_latched_subscription_is_warned_with_the_parameter_that_made_it_reliable(
        harness):
    """qos.camera_info_durability:=transient_local makes the camera_info subscription reliable whatever
    qos.input_reliability says (best_effort here, the default): a best-effort, transient-local camera_info publisher
    is incompatible in reliability alone, and the warning must not advise qos.input_reliability:=best_effort, which
    is already set and would change nothing."""
    log = harness.collector(Log, "/rosout")
    harness.start_node(namespace="latched", **{"qos.camera_info_durability": "transient_local"})
    latched_best_effort = QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT,
                                     durability=DurabilityPolicy.TRANSIENT_LOCAL)
    harness.probe.create_publisher(CameraInfo, "/latched/camera_info", latched_best_effort)

    def said():
        return [m.msg for m in list(log) if m.name == "latched.dpt_node" and "incompatible QoS" in m.msg]
    wait_for(lambda: said(), what="the reliability warning")
    assert said() == ["incompatible QoS on /latched/camera_info (policy RELIABILITY): this camera_info subscription is "
                      "reliable because qos.camera_info_durability is transient_local, and a best-effort publisher "
                      "cannot feed it: qos.camera_info_durability:=volatile (a best-effort subscription, which takes "
                      "best-effort and reliable publishers), or a reliable camera_info publisher"]


def test_no_camera_info_on_a_latched_subscription_names_its_qos_not_qos_input_reliability(harness, monkeypatch):
    """With qos.camera_info_durability:=transient_local the camera_info subscription is reliable and transient local
    whatever qos.input_reliability says: the error of a camera without camera_info says what QoS it takes, and does
    not send the user to qos.input_reliability, which does not apply to it."""
    from dpt_ros.ros import node as node_module

    monkeypatch.setattr(node_module, "_INFO_GRACE_S", 0.0)   # (past the first seconds: the error, not the warning)
    log = harness.collector(Log, "/rosout")
    node = harness.start_node(namespace="latchedinfo", **{"depth.scale": 1.0,
                                                           "qos.camera_info_durability": "transient_local"})
    points = harness.collector(PointCloud2, "/latchedinfo/points")
    pub = harness.probe.create_publisher(Image, "/latchedinfo/image", qos())
    wait_for(lambda: pub.get_subscription_count() > 0 and
             node.cameras[0].pubs["points"].get_subscription_count() > 0, what="discovery")

    def said():
        return [m.msg for m in list(log) if m.name == "latchedinfo.dpt_node" and "none received on" in m.msg]
    for i in range(1, 100):
        pub.publish(make_image(i))
        try:
            wait_for(said, timeout=0.2)
            break
        except AssertionError:
            continue
    line = said()[0]
    assert "qos.input_reliability" not in line, line
    assert ("check that the camera publishes it there (remap camera_info:=...) latched (reliable, transient local: "
            "qos.camera_info_durability is transient_local), or give a calibration file (camera_info.url)") in line, line
    assert points == []


def test_a_frame_whose_network_input_would_be_huge_is_refused_and_counted(harness):
    """resize_method lower_bound at input_size 64: a 200x1 frame would need a 64x12800 network input (200x the
    network size's pixels): refused before decoding as an encoding error that names the topic and says what to do,
    and the next frame is processed. A frame of that size taken under minimal, then resize_method set to lower_bound
    live: the swap's warm-up leaves that size out (its frames will be refused), and the swap succeeds."""
    log = harness.collector(Log, "/rosout")
    node = harness.start_node()
    out = harness.collector(Image, "inverse_depth")
    pub = harness.probe.create_publisher(Image, "image", qos("reliable"))
    wait_for(lambda: pub.get_subscription_count() > 0 and node.cameras[0].pubs["inverse_depth"].get_subscription_count()
             > 0, what="discovery")
    pub.publish(make_image(1, width=200, height=1))   # minimal: a 32x64 network input
    wait_for(lambda: len(out) == 1, what="the 200x1 frame under minimal")
    assert node.cameras[0].frame_size == (1, 200)
    assert all(r.successful for r in set_params(harness, node, resize_method="lower_bound"))
    wait_for(lambda: node.models.depth_pre.method == "lower_bound", what="the swap")
    assert node.error_counts() == {}
    pub.publish(make_image(2, width=200, height=1))
    wait_for(lambda: node.error_counts().get("encoding") == 1, what="the refusal")
    pub.publish(make_image(3, width=40, height=30))
    wait_for(lambda: len(out) == 2 and worker_done(node), what="the next frame")   # (counted after it is published)
    assert (out[1].width, out[1].height) == (40, 30)
    assert dict(node.counts()[""]) == {"received": 3, "processed": 2, "error:encoding": 1, "out:inverse_depth": 2}
    said = [m.msg for m in log if m.name == "dpt_node" and "network input" in m.msg]
    assert said == ["[encoding] /image: a 200x1 image gives a 64x12800 (height x width) network input with "
                    "resize_method lower_bound at network size 64x64: more than 16x its pixels (memory and time grow "
                    "with them); send frames of a less extreme aspect ratio, or use resize_method minimal or "
                    "upper_bound"], said


def test_a_raw_camera_whose_calibration_changes_every_frame_is_told_and_counted(harness):
    """camera_info.rectified false with a K that changes on every frame (a zooming lens; a driver republishing a
    jittered auto-calibration): every cloud solves its lens rays afresh, tenths of a second at 1080p, which
    silently took the output rate down. Now each solve is counted (lens_rays.solved, lens_rays.solve_ms in the
    camera's /diagnostics) and, once 5 of the last 10 clouds needed one, a warning says what changed and what to
    do; a camera that keeps its calibration reuses the rays (no count, no warning)."""
    log = harness.collector(Log, "/rosout")
    node = harness.start_node(**{"depth.scale": 1.0, "camera_info.policy": "latest", "camera_info.rectified": False})
    points, _, pub, info_pub = _streams(harness, node, "points", "camera_info", CameraInfo)

    def cloud_of(stamp: int, fx: float) -> None:
        img = make_image(stamp, width=96, height=72)
        info = make_info(img, fx=fx)
        info.distortion_model, info.d = "plumb_bob", [-0.3, 0.1, 0.001, -0.002, -0.02]
        info_pub.publish(info)
        wait_for(lambda: any(m.k[0] == fx for _, m in list(node.cameras[0].infos)), what="info stored")
        n = len(points)
        publish_until(pub, lambda i: make_image(stamp * 100 + i, width=96, height=72), points, n=n + 1)

    def camera_kv() -> dict:
        return {kv.key: kv.value for kv in node.diagnostics().status[1].values}

    def said() -> list:
        return [m.msg for m in list(log) if "lens rays of points" in m.msg]

    for i in range(3):   # a steady camera: its rays are solved once (focal lengths no other test here uses: the
        cloud_of(1 + i, 63.25)   # solved rays are kept per process)
    assert camera_kv()["lens_rays.solved"] == "1" and not said()
    for i in range(6):   # zooming: fx 63.5, 64, ...
        cloud_of(10 + i, 63.5 + 0.5 * i)
    wait_for(lambda: said(), what="the warning")
    kv = camera_kv()
    assert kv["lens_rays.solved"] == "7" and int(kv["lens_rays.solve_ms"]) >= 0
    text = said()[0]
    assert len(said()) == 1 and "solved afresh for 5 of its last 7 clouds" in text   # (1 steady, 4 zooming: 5)
    assert "fx, fy of /camera_info differ" in text
    assert "camera_info.url" in text and "image_proc" in text and "points.stride" in text
    assert node.error_counts() == {}


def test_a_chain_of_remaps_applies_once_to_the_input_topics(harness):
    """`-r image:=cam_b -r cam_b:=cam_c` (and the same for depth_reference): rcl applies the first rule matching a
    name, once. The node resolved image (remaps applied: /cam_b) and handed that to create_subscription, whose rcl
    applies the rules again: cam_b:=cam_c moved it on to /cam_c, a topic the rules give no input. Now the name given
    to create_subscription is the unresolved one (image, depth_reference), resolved once by rcl; the resolved one is
    for display. camera_info (always given unresolved) and the outputs keep their single remap; the SROS2 policy
    tool's topic set (`--remap`) agrees with the node's."""
    from dpt_ros.tools import sros2_policy

    rules = ["image:=cam_b", "cam_b:=cam_c", "depth_reference:=ref_b", "ref_b:=ref_c", "camera_info:=info_b",
             "info_b:=info_c", "inverse_depth:=inv_b", "inv_b:=inv_c"]
    node = harness.start_node(cli_args=["--ros-args"] + [a for r in rules for a in ("-r", r)],
                              **{"depth.align": True})
    subscribed = {t for t, _ in node.get_subscriber_names_and_types_by_node("dpt_node", "/")}
    published = {t for t, _ in node.get_publisher_names_and_types_by_node("dpt_node", "/")}
    assert {"/cam_b", "/ref_b", "/info_b"} <= subscribed and not {"/cam_c", "/ref_c", "/info_c"} & subscribed, \
        subscribed
    assert "/inv_b" in published and "/inv_c" not in published
    assert {name: sub.topic_name for name, sub in node.cameras[0].subs.items()} == {
        "image": "/cam_b", "camera_info": "/info_b", "depth_reference": "/ref_b"}
    want = sros2_policy.expected("/", [""], "raw", optional=True, depth_align=True,
                                 remaps=sros2_policy.parse_remaps(rules))
    assert {"/cam_b", "/ref_b", "/info_b"} <= set(want["subscribe"]) and "/cam_c" not in want["subscribe"]
    # a frame on /cam_b is processed: its depth goes out
    out = harness.collector(Image, "inv_b")
    pub = harness.probe.create_publisher(Image, "/cam_b", qos("reliable"))
    wait_for(lambda: pub.get_subscription_count() > 0 and
             node.cameras[0].pubs["inverse_depth"].get_subscription_count() > 0, what="discovery")
    publish_until(pub, lambda i: make_image(10 + i, width=48, height=36), out, n=1)
    wait_for(lambda: worker_done(node), what="the worker done")   # (it counts a frame after publishing its outputs)
    assert node.counts()[""]["processed"] >= 1
