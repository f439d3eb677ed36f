"""The published cloud is, byte for byte, the published depth back-projected with the input frame's
colours and the published labels. On CUDA this covers the node's GPU path: one upload of the frame
shared by pre-processing and the cloud colours, labels kept on the device, results copied to the
host through page-locked buffers with one wait per frame."""
import numpy as np
import pytest
import torch
from sensor_msgs.msg import CameraInfo, Image, PointCloud2

from dpt_ros import pipeline
from dpt_ros.ros import conversions
from dpt_ros.ros.testing import make_image, make_info, pattern_image, qos, set_params, wait_for

DOMAIN = 47
CUDA = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def _frame(stamp_s: int, encoding: str, width: int, height: int) -> Image:
    msg = make_image(stamp_s * 1_000_000_000, width=width, height=height, seed=stamp_s)
    if encoding == "mono8":
        grey = pattern_image(width, height, stamp_s)[:, :, 1].copy()
        msg = conversions.image_msg(msg.header, grey, "mono8")
    elif encoding == "bgr8":
        msg = make_image(stamp_s * 1_000_000_000, width=width, height=height, seed=stamp_s, encoding="bgr8")
    return msg


@pytest.mark.parametrize("device,encoding,organized,serialized,color_source,depth_encoding", [
    ("cpu", "rgb8", True, True, "image", "32FC1"),
    ("cpu", "rgb8", False, False, "image", "32FC1"),
    ("cpu", "rgb8", True, True, "segmentation", "32FC1"),
    ("cpu", "rgb8", True, True, "image", "16UC1"),
    pytest.param("cuda", "rgb8", True, True, "image", "32FC1", marks=CUDA),
    pytest.param("cuda", "mono8", True, True, "image", "32FC1", marks=CUDA),
    pytest.param("cuda", "bgr8", False, True, "image", "32FC1", marks=CUDA),
    pytest.param("cuda", "bgr8", True, True, "segmentation", "32FC1", marks=CUDA),
    pytest.param("cuda", "rgb8", False, True, "image", "16UC1", marks=CUDA),
])
def test_cloud_is_the_published_depth_with_input_colours_and_labels(harness, monkeypatch, device, encoding, organized,
                                                                    serialized, color_source, depth_encoding):
    """``serialized``: outputs go out as CDR bytes (this rmw), or as message objects (the fallback for an
    rmw whose wire format differs); subscribers receive the same either way. ``color_source`` segmentation:
    the colours are the labels' palette colours. 16UC1: the cloud is the millimetres as depth_image_proc reads
    them (``mm * 0.001f``, 0 = no point), not the float metres they were rounded from."""
    if not serialized:
        monkeypatch.setattr(conversions, "cdr_matches_rmw", lambda: False)
    node = harness.start_node(device=device, **{
        "depth.scale": 1.0, "depth.shift": 0.5, "camera_info.policy": "latest", "depth.encoding": depth_encoding,
        "segmentation.variant": "dpt_hybrid_ade20k", "segmentation.weights": "random",
        "points.label": True, "points.stride": 3, "points.organized": organized, "points.color_source": color_source})
    names = {"depth": Image, "segmentation": Image, "points": PointCloud2}
    got = {n: harness.collector(t, n) for n, t in names.items()}
    pub = harness.probe.create_publisher(Image, "image", qos())
    info_pub = harness.probe.create_publisher(CameraInfo, "camera_info", qos())
    wait_for(lambda: pub.get_subscription_count() > 0 and info_pub.get_subscription_count() > 0 and
             all(node.cameras[0].pubs[n].get_subscription_count() > 0 for n in names), what="discovery")
    width, height = 101, 76   # odd sizes: the stride does not divide them
    frames = [_frame(s, encoding, width, height) for s in (1, 2, 3)]
    info = make_info(frames[0], fx=70.0)
    info_pub.publish(info)
    wait_for(lambda: len(node.cameras[0].infos) == 1, what="camera_info stored")
    for i, frame in enumerate(frames, start=1):
        pub.publish(frame)
        wait_for(lambda: all(len(v) >= i for v in got.values()), timeout=60, what=f"outputs of frame {i}")
    assert node.error_counts() == {}
    model_kv = {kv.key: kv.value for kv in node.diagnostics().status[0].values}
    assert model_kv["publish_format"] == ("serialized CDR" if serialized else "message objects")
    intr = pipeline.Intrinsics.from_camera_info(**conversions.camera_info_fields(info))
    for frame in frames:
        stamp = frame.header.stamp.sec
        depth_msg, seg_msg, cloud_msg = ([m for m in got[n] if m.header.stamp.sec == stamp][0] for n in names)
        depth = conversions.image_array(depth_msg)
        if depth_encoding == "16UC1":
            assert depth.dtype == np.uint16 and (depth > 0).any()
            depth = np.where(depth == 0, np.float32(np.nan), depth.astype(np.float32) * np.float32(0.001))
        labels = conversions.image_array(seg_msg)
        assert np.isfinite(depth).any()
        rgb = pipeline.decode(conversions.image_view(frame), np)
        if color_source == "segmentation":
            rgb = pipeline.ADE20K_PALETTE[labels]
        ref = pipeline.build_cloud(depth, intr, rgb=rgb, labels=labels, stride=3, organized=organized)
        assert (cloud_msg.height, cloud_msg.width, cloud_msg.point_step, cloud_msg.row_step, cloud_msg.is_dense) == (
            ref.height, ref.width, ref.point_step, ref.row_step, ref.is_dense)
        assert [(f.name, f.offset, f.datatype) for f in cloud_msg.fields] == [
            (f.name, f.offset, f.datatype) for f in ref.fields]
        words = np.frombuffer(cloud_msg.data, np.float32).reshape(-1, 5)
        ref_words = np.frombuffer(ref.data, np.float32).reshape(-1, 5)
        np.testing.assert_array_equal(words[:, :3], ref_words[:, :3])           # xyz (NaN where invalid)
        valid = np.isfinite(ref_words[:, 2])
        np.testing.assert_array_equal(words.view(np.uint32)[valid, 3:], ref_words.view(np.uint32)[valid, 3:])


def test_metric_variant_at_network_size_publishes_depth_and_points(harness):
    """A camera whose size is the network size (e.g. NYU at 640x480) gets the model's metres without
    upsampling; the REP 117 range must not be applied in place to the model's output tensor."""
    node = harness.start_node(**{"depth.variant": "dpt_hybrid_nyu", "depth.weights": "random", "input_size": 64,
                                 "depth.max": 5.0, "camera_info.policy": "latest"})
    got, (pub, info_pub) = harness.connect(node, {"depth": Image, "points": PointCloud2})
    frame = make_image(1, width=64, height=64)
    info_pub.publish(make_info(frame))
    wait_for(lambda: len(node.cameras[0].infos) == 1, what="camera_info stored")
    net = node.models.depth.run(node.models.depth_pre(pipeline.decode(conversions.image_view(frame), np)))
    assert tuple(net["depth"].shape[1:]) == (64, 64)
    # depth.max within the model's metres (random weights: about 7.2 m everywhere, all beyond the 5 m it had, so
    # that the depth compared was +Inf throughout): some pixels clipped, some not
    top = float(np.median(net["depth"][0].numpy()))
    assert set_params(harness, node, **{"depth.max": top})[0].successful
    pub.publish(frame)
    wait_for(lambda: all(len(v) == 1 for v in got.values()), timeout=60, what="depth and points")
    assert node.error_counts() == {}
    depth = conversions.image_array(got["depth"][0])
    expected = pipeline.apply_depth_range(net["depth"][0].numpy(), 0.0, top)
    assert np.isposinf(expected).any() and np.isfinite(expected).any()
    np.testing.assert_array_equal(depth, expected)
    assert got["points"][0].width == 32
    # 16UC1 from the same model output (an inference tensor: converted out of place, never modified)
    assert set_params(harness, node, **{"depth.encoding": "16UC1"})[0].successful
    pub.publish(make_image(2, width=64, height=64))
    wait_for(lambda: len(got["depth"]) == 2, timeout=60, what="16UC1 depth")
    assert node.error_counts() == {}
    np.testing.assert_array_equal(conversions.image_array(got["depth"][1]), pipeline.depth_to_millimetres(expected))
