"""Message <-> array conversion (no ROS graph): zero-copy reads, one-copy writes, layouts."""
import array
import dataclasses

import numpy as np
import pytest
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2, PointField
from std_msgs.msg import Header

from dpt_ros import pipeline
from dpt_ros.ros import conversions


def _header():
    h = Header(frame_id="cam")
    h.stamp.sec, h.stamp.nanosec = 12, 34
    return h


@pytest.mark.parametrize("padding", [0, 1, 3, 64])
def test_image_view_honours_step_and_decodes_identically(padding):
    rgb = (np.arange(37 * 23 * 3) % 251).astype(np.uint8).reshape(23, 37, 3)
    view = pipeline.ImageView.from_array(rgb, "bgr8", padding=padding)
    msg = Image(height=view.height, width=view.width, encoding="bgr8", step=view.step, data=view.data)
    v = conversions.image_view(msg)
    assert v.step == 37 * 3 + padding and v.encoding == "bgr8"
    assert np.shares_memory(v.data, np.frombuffer(msg.data, np.uint8))  # no copy
    np.testing.assert_array_equal(pipeline.decode(v, np), rgb[..., ::-1])


def test_big_endian_16_bit_reads_the_same():
    mono = (np.arange(20 * 10) * 300).astype(np.uint16).reshape(10, 20)
    views = [pipeline.ImageView.from_array(mono, "mono16", bigendian=be) for be in (False, True)]
    msgs = [Image(height=10, width=20, encoding="mono16", step=v.step, is_bigendian=v.is_bigendian, data=v.data)
            for v in views]
    a, b = (pipeline.decode(conversions.image_view(m), np) for m in msgs)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(conversions.image_array(msgs[0]), conversions.image_array(msgs[1]))


@pytest.mark.parametrize("bigendian", [False, True])
@pytest.mark.parametrize("padding", [0, 1, 3, 64])
@pytest.mark.parametrize("encoding", ["16UC1", "mono16", "32FC1"])
def test_reference_depth_honours_step_and_is_bigendian(encoding, padding, bigendian):
    """depth.align's depth_reference (as the node reads it, reference_metres) honours row padding and byte order as
    the image input does: the same metres, 0 mm as NaN, whatever the layout (an odd padding leaves rows unaligned)."""
    if encoding == "32FC1":
        values = np.linspace(0.25, 7.5, 7 * 5, dtype=np.float32).reshape(5, 7)
        values[1, 2] = np.nan
        want = values
    else:
        values = (np.arange(7 * 5, dtype=np.uint16).reshape(5, 7) * 1873 + 1).astype(np.uint16)   # up to 63.7 m
        values[1, 2] = 0
        want = np.where(values == 0, np.nan, values.astype(np.float32) * np.float32(0.001)).astype(np.float32)
    view = pipeline.ImageView.from_array(values, encoding, padding=padding, bigendian=bigendian)
    msg = Image(height=5, width=7, encoding=encoding, step=view.step, is_bigendian=view.is_bigendian,
                data=bytes(view.data))
    assert msg.step == 7 * values.itemsize + padding
    got_encoding, metres = conversions.reference_metres(msg)
    assert got_encoding == encoding and metres.dtype == np.float32
    np.testing.assert_array_equal(metres, want)   # (NaN where want is NaN)


@pytest.mark.parametrize("values,encoding,channels", [
    (np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4), "32FC1", 1),
    (np.arange(12, dtype=np.uint8).reshape(3, 4), "mono8", 1),
    (np.arange(36, dtype=np.uint8).reshape(3, 4, 3), "rgb8", 3),
    (np.arange(12, dtype=np.uint16).reshape(3, 4) * 5000, "mono16", 1),
    (np.arange(48, dtype=np.uint8).reshape(3, 4, 4), "rgba8", 4),
])
def test_image_msg_round_trip(values, encoding, channels):
    msg = conversions.image_msg(_header(), values)
    assert msg.encoding == encoding and msg.step == 4 * channels * values.dtype.itemsize
    assert (msg.header.stamp.sec, msg.header.frame_id) == (12, "cam")
    assert len(msg.data) == msg.step * msg.height and msg.is_bigendian == 0
    np.testing.assert_array_equal(conversions.image_array(msg), values)


def test_image_msg_from_non_contiguous_view():
    base = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
    view = base[:, ::2]
    np.testing.assert_array_equal(conversions.image_array(conversions.image_msg(_header(), view)), view)


def test_image_msg_rejects_unknown_layout():
    with pytest.raises(ValueError, match="no image encoding"):
        conversions.image_msg(_header(), np.zeros((2, 2), np.float64))


def test_camera_info_fields_feed_intrinsics():
    info = CameraInfo(width=1280, height=720, binning_x=2, binning_y=2)
    info.k = [1000.0, 0.0, 640.0, 0.0, 1000.0, 360.0, 0.0, 0.0, 1.0]
    info.p = [900.0, 0.0, 600.0, 0.0, 0.0, 900.0, 300.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    info.roi.x_offset, info.roi.y_offset, info.roi.width, info.roi.height = 100, 50, 800, 400
    f = conversions.camera_info_fields(info)
    assert f["roi"] == (100, 50, 400, 800)
    intr = pipeline.Intrinsics.from_camera_info(**f, rectified=True)
    assert (intr.fx, intr.cx, intr.cy, intr.width, intr.height) == (450.0, 250.0, 125.0, 400, 200)
    info.distortion_model, info.d = "plumb_bob", [0.1, -0.2, 0.001, 0.002, 0.0]
    info.r = [0.0, -1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0]
    out = conversions.camera_info_msg(_header(), 400, 200, *intr.camera_info_matrices(), source=info)
    assert out.k[0] == 450.0 and out.p[6] == 125.0 and out.roi.width == 0 and out.header.frame_id == "cam"
    assert (out.width, out.height, out.binning_x, out.binning_y) == (400, 200, 0, 0)   # k/p describe these pixels
    assert out.distortion_model == "plumb_bob" and list(out.d) == pytest.approx([0.1, -0.2, 0.001, 0.002, 0.0])
    assert list(out.r) == list(info.r)
    # without a source (a rectified image): no distortion, stated as image_geometry reads it (an empty
    # distortion_model is its "unknown": rectifyPoint/rectifyImage throw), identity rectification
    bare = conversions.camera_info_msg(_header(), 4, 3, *intr.camera_info_matrices())
    assert list(bare.r) == [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    assert (bare.distortion_model, list(bare.d)) == ("plumb_bob", [0.0] * 5)
    # the lens: ignored for a rectified image (P), used for a raw one (K)
    f = conversions.camera_info_fields(info)
    assert (f["distortion_model"], f["d"]) == ("plumb_bob", (0.1, -0.2, 0.001, 0.002, 0.0))
    assert pipeline.Intrinsics.from_camera_info(**f, rectified=True).d == ()
    raw = pipeline.Intrinsics.from_camera_info(**f, rectified=False)
    assert (raw.fx, raw.distortion_model, raw.d) == (500.0, "plumb_bob", (0.1, -0.2, 0.001, 0.002, 0.0))


def test_camera_info_fields_keep_binning_per_axis():
    info = CameraInfo(width=1280, height=960, binning_x=2, binning_y=1)
    info.k = [1000.0, 0.0, 640.0, 0.0, 990.0, 480.0, 0.0, 0.0, 1.0]
    f = conversions.camera_info_fields(info)
    assert (f["binning_x"], f["binning_y"], f["roi"]) == (2, 1, (0, 0, 0, 0))
    intr = pipeline.Intrinsics.from_camera_info(**f, rectified=False)
    assert (intr.fx, intr.cx, intr.width, intr.fy, intr.cy, intr.height) == (500.0, 320.0, 640, 990.0, 480.0, 960)


def test_cloud_msg_wraps_the_buffer_without_copy():
    depth = np.full((4, 6), 2.0, np.float32)
    depth[0, 0] = np.nan
    intr = pipeline.Intrinsics(10.0, 10.0, 2.5, 1.5, 6, 4)
    rgb = np.zeros((4, 6, 3), np.uint8)
    rgb[..., 0] = 255
    cloud = pipeline.build_cloud(depth, intr, rgb=rgb, stride=1, organized=True)
    msg = conversions.cloud_msg(_header(), cloud)
    assert msg.data is cloud.data or len(msg.data) == len(cloud.data)
    assert (msg.height, msg.width, msg.row_step) == (4, 6, 6 * msg.point_step)
    # count 1 each: a reader such as sensor_msgs_py or PCL reads count elements of a field (0 = none)
    assert [(f.name, f.offset, f.datatype, f.count) for f in msg.fields] == [
        ("x", 0, PointField.FLOAT32, 1), ("y", 4, PointField.FLOAT32, 1), ("z", 8, PointField.FLOAT32, 1),
        ("rgb", 12, PointField.FLOAT32, 1)]
    assert (msg.point_step, msg.is_bigendian, msg.header.frame_id) == (16, False, "cam")
    pts = conversions.cloud_array(msg)
    assert np.isnan(pts["z"][0, 0]) and pts["z"][1, 1] == 2.0 and not msg.is_dense
    assert pts["x"][1, 0] == pytest.approx((0 - 2.5) * 2.0 / 10.0)
    assert (pts["rgb"].view(np.uint32)[1, 1] & 0xFFFFFF) == 0xFF0000


def test_cloud_msg_carries_is_dense():
    depth = np.array([[1.0, np.nan], [2.0, 3.0]], np.float32)
    intr = pipeline.Intrinsics(1.0, 1.0, 0.5, 0.5, 2, 2)
    dense = conversions.cloud_msg(_header(), pipeline.build_cloud(depth, intr, organized=False))
    assert dense.is_dense is True and (dense.height, dense.width) == (1, 3)
    assert conversions.cloud_msg(_header(), pipeline.build_cloud(depth, intr)).is_dense is False


def _same_as_rmw(ours: bytes, msg) -> None:
    """``ours`` is what the rmw writes for ``msg``: same length, reads back as ``msg``, and where the
    bytes differ ours are zeros (alignment padding, which the rmw leaves uninitialised)."""
    theirs = serialize_message(msg)
    assert len(ours) == len(theirs)
    assert deserialize_message(ours, type(msg)) == msg
    a, b = np.frombuffer(ours, np.uint8), np.frombuffer(theirs, np.uint8)
    differ = np.flatnonzero(a != b)
    assert not a[differ].any(), f"non-padding bytes differ at {differ[:8]}"


@pytest.mark.parametrize("frame_id", ["", "c", "ca", "cam", "camera_optical_frame", "kamera_über"])
@pytest.mark.parametrize("values,encoding", [
    (np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4), "32FC1"),
    (np.arange(3 * 5 * 3, dtype=np.uint8).reshape(3, 5, 3), "rgb8"),
    (np.arange(2 * 3, dtype=">u2").reshape(2, 3), "mono16"),
    (np.arange(7, dtype=np.uint8).reshape(1, 7), "mono8"),
    (np.zeros((0, 4), np.float32), "32FC1"),
])
def test_image_cdr_is_the_rmw_wire_format(frame_id, values, encoding):
    h = _header()
    h.frame_id, h.stamp.sec = frame_id, -5     # a stamp before the epoch is a valid int32
    ours = conversions.image_cdr(h, values, encoding)
    _same_as_rmw(ours, conversions.image_msg(h, values, encoding))
    back = deserialize_message(ours, Image)
    assert (back.is_bigendian, back.step) == (int(values.dtype.byteorder == ">"), values.dtype.itemsize * int(np.prod(values.shape[1:])))


def test_a_string_with_a_nul_is_cut_there_as_rclpy_cuts_it():
    h = _header()
    h.frame_id = "cam\0era"
    values = np.zeros((1, 1), np.uint8)
    ours = conversions.image_cdr(h, values, "mono8\0x")
    theirs = serialize_message(conversions.image_msg(h, values, "mono8\0x"))
    assert len(ours) == len(theirs) and ours[:20] == theirs[:20]   # (a NUL's padding follows)
    back = deserialize_message(ours, Image)
    assert (back.header.frame_id, back.encoding) == (deserialize_message(theirs, Image).header.frame_id, "mono8")
    assert back.header.frame_id == "cam"


def test_image_cdr_of_a_strided_view_is_its_values():
    base = np.arange(4 * 6, dtype=np.float32).reshape(4, 6)
    back = deserialize_message(conversions.image_cdr(_header(), base[:, ::2]), Image)
    np.testing.assert_array_equal(conversions.image_array(back), base[:, ::2])


@pytest.mark.parametrize("frame_id", ["", "c", "ca", "cam"])
@pytest.mark.parametrize("fmt,data", [("rgb8; jpeg compressed bgr8", bytes(range(256)) * 3),
                                      ("32FC1; compressedDepth png", b"\x00" * 13), ("", b""), ("png", b"\x89P")])
def test_compressed_cdr_is_the_rmw_wire_format(frame_id, fmt, data):
    h = _header()
    h.frame_id = frame_id
    ours = conversions.compressed_cdr(h, data, fmt)
    _same_as_rmw(ours, conversions.compressed_msg(h, data, fmt))
    back = deserialize_message(ours, CompressedImage)
    assert (back.format, bytes(back.data), back.header.frame_id) == (fmt, data, frame_id)
    assert conversions.compressed_cdr(h, np.frombuffer(data, np.uint8), fmt) == ours


@pytest.mark.parametrize("frame_id", ["", "cam", "camera_optical_frame"])
@pytest.mark.parametrize("kw", [dict(rgb=True, organized=True, stride=1), dict(rgb=False, organized=False, stride=2),
                                dict(rgb=True, labels=True, organized=False, stride=1)])
def test_cloud_cdr_is_the_rmw_wire_format(frame_id, kw):
    depth = np.array([[1.0, np.nan, 2.0], [3.0, 4.0, 0.0]], np.float32)
    intr = pipeline.Intrinsics(2.0, 2.0, 1.0, 0.5, 3, 2)
    rgb = np.arange(18, dtype=np.uint8).reshape(2, 3, 3) if kw["rgb"] else None
    labels = np.array([[1, 2, 3], [4, 5, 150]], np.uint8) if kw.get("labels") else None
    cloud = pipeline.build_cloud(depth, intr, rgb=rgb, labels=labels, stride=kw["stride"], organized=kw["organized"])
    h = _header()
    h.frame_id = frame_id
    ours = conversions.cloud_cdr(h, cloud)
    _same_as_rmw(ours, conversions.cloud_msg(h, cloud))
    back = conversions.cloud_array(deserialize_message(ours, PointCloud2))
    assert back.shape == (cloud.height, cloud.width)
    np.testing.assert_array_equal(back["z"], cloud.field("z"))
    # the GPU node's cloud (build_cloud(..., reuse_buffer=True)) holds a uint8 view of a pinned buffer
    as_view = dataclasses.replace(cloud, data=np.frombuffer(cloud.data, np.uint8))
    assert conversions.cloud_cdr(h, as_view) == ours
    assert conversions.cloud_msg(h, as_view) == conversions.cloud_msg(h, cloud)


def test_cloud_cdr_of_a_dense_cloud_without_points():
    cloud = pipeline.build_cloud(np.full((2, 2), np.nan, np.float32), pipeline.Intrinsics(1, 1, 1, 1, 2, 2),
                                 organized=False)
    back = deserialize_message(conversions.cloud_cdr(_header(), cloud), PointCloud2)
    assert (back.width, len(back.data), back.is_dense) == (0, 0, cloud.is_dense)
    _same_as_rmw(conversions.cloud_cdr(_header(), cloud), conversions.cloud_msg(_header(), cloud))


def test_cloud_cdr_carries_a_big_endian_flag():
    # the pipeline writes little-endian clouds; cloud_cdr serialises whatever CloudBuffer it is given
    cloud = pipeline.build_cloud(np.ones((2, 2), np.float32), pipeline.Intrinsics(1, 1, 1, 1, 2, 2))
    swapped = dataclasses.replace(cloud, is_bigendian=True)
    ours = conversions.cloud_cdr(_header(), swapped)
    _same_as_rmw(ours, conversions.cloud_msg(_header(), swapped))
    assert deserialize_message(ours, PointCloud2).is_bigendian


def test_wire_format_check_passes_here_and_catches_a_misaligned_writer(monkeypatch):
    assert conversions.cdr_matches_rmw()
    assert isinstance(conversions.image_output(_header(), np.zeros((2, 2), np.float32)), bytes)
    cloud = pipeline.build_cloud(np.ones((2, 2), np.float32), pipeline.Intrinsics(1, 1, 1, 1, 2, 2))
    assert conversions.cloud_output(_header(), cloud) == conversions.cloud_cdr(_header(), cloud)
    monkeypatch.setattr(conversions._CdrWriter, "_align", lambda self, n: None)
    conversions.cdr_matches_rmw.cache_clear()
    try:
        assert not conversions.cdr_matches_rmw()
        out = conversions.image_output(_header(), np.ones((2, 2), np.float32))
        assert isinstance(out, Image) and conversions.image_array(out).sum() == 4.0
    finally:
        conversions.cdr_matches_rmw.cache_clear()


def test_wire_format_check_refuses_a_big_endian_host(monkeypatch):
    # ROS 2's rmw write little-endian CDR; this host is little-endian, so the big-endian case is the
    # check's decision alone, seen through a stand-in for ``sys``
    monkeypatch.setattr(conversions, "sys", type("BigEndianSys", (), {"byteorder": "big"}))
    conversions.cdr_matches_rmw.cache_clear()
    try:
        assert not conversions.cdr_matches_rmw()
        cloud = pipeline.build_cloud(np.array([[1.0, 2.0], [3.0, np.nan]], np.float32),
                                     pipeline.Intrinsics(1, 1, 1, 1, 2, 2))
        msg = conversions.cloud_output(_header(), cloud)   # the message object, not CDR bytes
        assert isinstance(msg, PointCloud2) and msg.header == _header()
        assert (msg.height, msg.width, msg.point_step, msg.is_dense) == (2, 2, 12, False)
        np.testing.assert_array_equal(conversions.cloud_array(msg)["z"], [[1.0, 2.0], [3.0, np.nan]])
    finally:
        conversions.cdr_matches_rmw.cache_clear()


def test_make_image_writes_every_encoding_it_names_as_the_pattern():
    """The test frames (and bench_node_stages --encoding's) in each encoding decode to the pattern: a 4-channel or
    16-bit one was a 3-byte rgb8 payload labelled with that encoding, refused by the node for its step."""
    import cv2

    from dpt_ros.ros import testing
    from dpt_ros.tools import bench_node_stages

    rgb = testing.pattern_image(24, 10, 3)
    for encoding in testing.MAKE_IMAGE_ENCODINGS:
        msg = testing.make_image(5, 24, 10, encoding=encoding, seed=3)
        assert (msg.encoding, msg.width, msg.height) == (encoding, 24, 10)
        want = np.repeat(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)[..., None], 3, 2) if encoding.startswith("mono") else rgb
        np.testing.assert_array_equal(pipeline.decode(conversions.image_view(msg)), want, err_msg=encoding)
    with pytest.raises(ValueError, match="make_image writes rgb8, bgr8, .*; got encoding 'yuv422'"):
        testing.make_image(5, encoding="yuv422")
    for encoding in testing.MAKE_IMAGE_ENCODINGS:   # the tool offers what make_image writes, and no other
        assert bench_node_stages.parse_args(["--encoding", encoding]).encoding == encoding
    with pytest.raises(SystemExit):
        bench_node_stages.parse_args(["--encoding", "yuv422"])


# fuzzed against message objects built here field by field (not through image_msg / cloud_msg, which the tests
# above compare with): frame_ids of every length modulo 4 and multi-byte UTF-8, stamps at the int32 limits,
# strings of every length, empty and one-row images, fields of every name length. Seeded: the same cases each run.
_FRAME_IDS = ["", "a", "ab", "abc", "abcd", "abcde", "abcdef", "abcdefg", "f" * 257, "über", "カメラ", "a\U0001F600"]
_STAMPS = [(0, 0), (-1, 999_999_999), (-2**31, 0), (2**31 - 1, 999_999_999), (1_700_000_000, 1)]


def _fuzz_header(rng):
    h = Header(frame_id=_FRAME_IDS[rng.integers(len(_FRAME_IDS))])
    h.stamp.sec, h.stamp.nanosec = _STAMPS[rng.integers(len(_STAMPS))]
    return h


def _text(rng, n):
    return "".join(rng.choice(list("abcxyz_ü;"), n)) if n else ""


def test_image_cdr_fuzzed_against_rclpy():
    rng = np.random.default_rng(66)
    for _ in range(200):
        h = _fuzz_header(rng)
        dtype = np.dtype(rng.choice(["u1", "<u2", ">u2", "<f4", ">f4", "<f8", "<i2", "i1"]))
        channels = int(rng.integers(0, 5))
        shape = (int(rng.choice([0, 1, 2, 5])), int(rng.choice([0, 1, 3, 7]))) + ((channels,) if channels else ())
        values = (np.arange(int(np.prod(shape))) % 100).astype(dtype).reshape(shape)
        if rng.random() < 0.3:   # a strided view of a wider array
            wide = np.zeros((shape[0], shape[1] * 2) + shape[2:], dtype)
            wide[:, ::2] = values
            values = wide[:, ::2]
        encoding = _text(rng, int(rng.integers(0, 13)))
        ours = conversions.image_cdr(h, values, encoding)
        want = Image(header=h, height=shape[0], width=shape[1], encoding=encoding,
                     is_bigendian=int(dtype.byteorder == ">"), step=shape[1] * max(channels, 1) * dtype.itemsize,
                     data=np.ascontiguousarray(values).tobytes())
        _same_as_rmw(ours, want)


def test_compressed_cdr_fuzzed_against_rclpy():
    rng = np.random.default_rng(67)
    for _ in range(200):
        h = _fuzz_header(rng)
        fmt = _text(rng, int(rng.integers(0, 30)))
        data = rng.integers(0, 256, int(rng.integers(0, 10)), dtype=np.uint8)
        want = CompressedImage(header=h, format=fmt, data=data.tobytes())
        _same_as_rmw(conversions.compressed_cdr(h, data.tobytes(), fmt), want)
        # cv2.imencode's result: an (N, 1) uint8 array
        _same_as_rmw(conversions.compressed_cdr(h, data.reshape(-1, 1), fmt), want)


def test_cloud_cdr_fuzzed_against_rclpy():
    rng = np.random.default_rng(68)
    for _ in range(200):
        h = _fuzz_header(rng)
        fields = tuple(PointField(name=_text(rng, int(rng.integers(0, 10))), offset=int(rng.integers(0, 2**31)),
                                  datatype=int(rng.integers(1, 9)), count=int(rng.integers(0, 5)))
                       for _ in range(int(rng.integers(0, 6))))
        height, width, point_step = (int(rng.choice(v)) for v in ([0, 1, 2], [0, 1, 3], [0, 1, 3, 16]))
        payload = rng.integers(0, 256, height * width * point_step, dtype=np.uint8)
        cloud = pipeline.CloudBuffer(data=payload if rng.random() < 0.5 else array.array("B", payload.tobytes()),
                                     height=height, width=width, point_step=point_step, row_step=width * point_step,
                                     fields=fields, is_dense=bool(rng.random() < 0.5),
                                     is_bigendian=bool(rng.random() < 0.5))
        want = PointCloud2(header=h, height=height, width=width, fields=list(fields),
                           is_bigendian=cloud.is_bigendian, point_step=point_step, row_step=width * point_step,
                           data=payload.tobytes(), is_dense=cloud.is_dense)
        _same_as_rmw(conversions.cloud_cdr(h, cloud), want)


@pytest.mark.parametrize("model,n_d", [("", 0), ("plumb_bob", 5), ("rational_polynomial", 8), ("x", 14),
                                       ("equidistant", 4)])
def test_restamped_camera_info_is_the_message_with_that_stamp(model, n_d):
    """depth/camera_info is serialised once per frame_id and restamped per frame (node._info_output)."""
    rng = np.random.default_rng(n_d)
    for frame_id in _FRAME_IDS:
        info = CameraInfo(header=Header(frame_id=frame_id), width=640, height=480, distortion_model=model,
                          d=list(rng.normal(size=n_d)), k=list(rng.normal(size=9)), p=list(rng.normal(size=12)))
        cdr = serialize_message(info)
        for sec, nanosec in _STAMPS:
            info.header.stamp.sec, info.header.stamp.nanosec = sec, nanosec
            ours = conversions.restamped(cdr, info.header)
            # the rest is the first serialisation's own bytes (its padding as the rmw left it)
            assert len(ours) == len(serialize_message(info)) and ours[12:] == cdr[12:]
            assert deserialize_message(ours, CameraInfo) == info
