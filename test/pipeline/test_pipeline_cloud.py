"""Intrinsics from CameraInfo fields and PointCloud2 buffers against a per-pixel formula."""

import array
import math
import struct

import numpy as np
import pytest

from dpt_ros.pipeline import FLOAT32, UINT32, CalibrationError, Intrinsics, PointField, build_cloud

RNG = np.random.default_rng(9)
K = [525.0, 0.0, 319.5, 0.0, 524.0, 239.5, 0.0, 0.0, 1.0]
P = [500.0, 0.0, 310.0, 0.0, 0.0, 501.0, 230.0, 0.0, 0.0, 0.0, 1.0, 0.0]


def test_intrinsics_p_for_rectified_k_otherwise():
    rect = Intrinsics.from_camera_info(K, P, 640, 480)
    assert (rect.fx, rect.fy, rect.cx, rect.cy) == (500.0, 501.0, 310.0, 230.0)
    raw = Intrinsics.from_camera_info(K, P, 640, 480, rectified=False)
    assert (raw.fx, raw.fy, raw.cx, raw.cy) == (525.0, 524.0, 319.5, 239.5)
    unset_p = Intrinsics.from_camera_info(K, [0.0] * 12, 640, 480)
    assert unset_p.fx == 525.0
    assert (rect.width, rect.height) == (640, 480)


def test_all_zero_k_is_uncalibrated_with_reason():
    with pytest.raises(CalibrationError, match="uncalibrated"):
        Intrinsics.from_camera_info([0.0] * 9, [0.0] * 12, 640, 480)
    with pytest.raises(CalibrationError, match="9 values"):
        Intrinsics.from_camera_info([1.0] * 4, None, 640, 480)
    with pytest.raises(CalibrationError, match="image size"):
        Intrinsics.from_camera_info(K, P, 0, 0)
    for fx, fy in ((0.0, 1.0), (1.0, 0.0), (-1.0, 1.0), (1.0, math.nan)):
        with pytest.raises(CalibrationError, match="fx, fy > 0"):
            Intrinsics(fx, fy, 0.0, 0.0, 10, 10)


def test_binning_and_roi():
    # 1280x960 sensor, ROI x=100 y=50 640x480, binned 2x2 -> 320x240 image
    info = Intrinsics.from_camera_info(K, P, 1280, 960, binning_x=2, binning_y=2, roi=(100, 50, 480, 640))
    assert (info.width, info.height) == (320, 240)
    assert info.fx == pytest.approx(250.0) and info.fy == pytest.approx(250.5)
    assert info.cx == pytest.approx((310.0 - 100) / 2) and info.cy == pytest.approx((230.0 - 50) / 2)
    zero_roi = Intrinsics.from_camera_info(K, P, 640, 480, roi=(0, 0, 0, 0))
    assert zero_roi.cx == 310.0 and zero_roi.width == 640
    # binning differs per axis (2x1): x values halve, y values and the height do not
    wide = Intrinsics.from_camera_info(K, P, 1280, 960, binning_x=2, binning_y=1)
    assert (wide.fx, wide.cx, wide.width) == (250.0, 155.0, 640)
    assert (wide.fy, wide.cy, wide.height) == (501.0, 230.0, 960)
    tall = Intrinsics.from_camera_info(K, P, 1280, 960, binning_x=1, binning_y=2)
    assert (tall.fx, tall.cx, tall.width, tall.fy, tall.cy, tall.height) == (500.0, 310.0, 1280, 250.5, 115.0, 480)
    # a ROI past the right or the bottom edge, or empty, is an error naming the ROI
    for roi in ((600, 0, 480, 640), (0, 100, 480, 640), (0, 0, 0, 640), (0, 0, 480, 0)):
        with pytest.raises(CalibrationError, match="ROI"):
            Intrinsics.from_camera_info(K, P, 640, 480, roi=roi)


def test_scaled_to_other_size():
    info = Intrinsics.from_camera_info(K, P, 1280, 720)
    s = info.scaled_to(640, 480)  # fx, cx by 0.5; fy, cy by 2/3
    assert (s.fx, s.cx) == (250.0, 155.0)
    assert s.fy == pytest.approx(501.0 * 480 / 720) and s.cy == pytest.approx(230.0 * 480 / 720)
    assert info.scaled_to(1280, 720) is info
    k, p = s.camera_info_matrices()
    fy, cy = 501.0 * 480 / 720, 230.0 * 480 / 720
    assert k == pytest.approx([250.0, 0.0, 155.0, 0.0, fy, cy, 0.0, 0.0, 1.0])
    assert p == pytest.approx([250.0, 0.0, 155.0, 0.0, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0])
    # round trip: the published matrices describe the resized image
    back = Intrinsics.from_camera_info(k, p, 640, 480)
    assert (back.fx, back.fy, back.cx, back.cy) == pytest.approx((s.fx, s.fy, s.cx, s.cy))


def test_the_projection_is_carried_with_roi_binning_and_scale():
    """P (a raw camera's rectified one, here with a stereo baseline term Tx and Ty) follows the pixels as K
    does: ROI offsets cx', cy'; binning divides x terms by binning_x and y terms by binning_y; a resize scales
    them; an unusable raw P (zero, NaN) is left out and P is then K's pinhole."""
    p = [500.0, 0.0, 310.0, -50.0, 0.0, 501.0, 230.0, 4.0, 0.0, 0.0, 1.0, 0.0]
    raw = Intrinsics.from_camera_info(K, p, 640, 480, binning_x=2, binning_y=4, roi=(100, 60, 240, 400),
                                      rectified=False)
    assert raw.projection == pytest.approx((250.0, 125.25, 105.0, 42.5, -25.0, 1.0))
    assert (raw.fx, raw.cx) == pytest.approx((262.5, 109.75))   # K's, for the raw pixels
    k, pm = raw.scaled_to(400, 120).camera_info_matrices()     # 200x60 -> 400x120: x2 both ways
    assert pm == pytest.approx([500.0, 0.0, 210.0, -50.0, 0.0, 250.5, 85.0, 2.0, 0.0, 0.0, 1.0, 0.0])
    assert k == pytest.approx([525.0, 0.0, 219.5, 0.0, 262.0, 89.75, 0.0, 0.0, 1.0])
    rect = Intrinsics.from_camera_info(K, p, 640, 480)   # rectified: the pinhole is P's, and so is P
    assert rect.camera_info_matrices()[1] == p
    for unusable in ([0.0] * 12, [math.nan] + p[1:]):
        none = Intrinsics.from_camera_info(K, unusable, 640, 480, rectified=False)
        assert none.projection == () and none.camera_info_matrices()[1] == [525.0, 0.0, 319.5, 0.0, 0.0, 524.0,
                                                                             239.5, 0.0, 0.0, 0.0, 1.0, 0.0]


def _point(buf, v, u, point_step, row_step, n=3):
    return struct.unpack_from("<" + "f" * n, bytes(buf.data), v * row_step + u * point_step)


@pytest.mark.parametrize("stride", [1, 2, 3])
def test_cloud_matches_per_pixel_formula(stride):
    h, w = 37, 53
    depth = (RNG.random((h, w)) * 4 + 0.5).astype(np.float32)
    depth[5, 6] = np.nan
    depth[6, 9] = 0.0
    depth[9, 12] = -np.inf
    depth[12, 15] = np.inf
    rgb = RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)
    labels = RNG.integers(0, 151, (h, w)).astype(np.uint8)
    intr = Intrinsics(60.0, 61.5, 26.2, 18.7, w, h)
    cloud = build_cloud(depth, intr, rgb=rgb, labels=labels, stride=stride)
    hs, ws = math.ceil(h / stride), math.ceil(w / stride)
    assert (cloud.height, cloud.width) == (hs, ws)
    assert cloud.point_step == 20 and cloud.row_step == ws * 20 and not cloud.is_dense and not cloud.is_bigendian
    assert isinstance(cloud.data, array.array) and cloud.data.typecode == "B"
    assert len(cloud.data) == cloud.row_step * cloud.height
    assert cloud.fields == (PointField("x", 0, FLOAT32), PointField("y", 4, FLOAT32),
                            PointField("z", 8, FLOAT32), PointField("rgb", 12, FLOAT32),
                            PointField("label", 16, UINT32))
    raw = bytes(cloud.data)
    for v, u in [(0, 0), (5, 6), (6, 9), (9, 12), (12, 15), (hs - 1, ws - 1), (3, 7), (hs // 2, ws // 3)]:
        pu, pv = u * stride, v * stride
        z = float(depth[pv, pu])
        off = v * cloud.row_step + u * cloud.point_step
        x, y, zz = struct.unpack_from("<fff", raw, off)
        rgb_word, label = struct.unpack_from("<II", raw, off + 12)
        r, g, b = (int(c) for c in rgb[pv, pu])
        assert rgb_word == (r << 16) | (g << 8) | b
        assert label == labels[pv, pu]
        if not (z > 0 and math.isfinite(z)):
            assert math.isnan(x) and math.isnan(y) and math.isnan(zz)
            continue
        assert zz == pytest.approx(z, rel=1e-6)
        assert x == pytest.approx((pu - intr.cx) * z / intr.fx, rel=1e-5, abs=1e-6)
        assert y == pytest.approx((pv - intr.cy) * z / intr.fy, rel=1e-5, abs=1e-6)


def test_cloud_layouts_and_dense_mode():
    depth = np.array([[1.0, np.nan, 2.0], [0.0, 3.0, np.inf]], np.float32)
    intr = Intrinsics(1.0, 1.0, 1.0, 0.5, 3, 2)
    xyz = build_cloud(depth, intr)
    assert xyz.point_step == 12 and [f.name for f in xyz.fields] == ["x", "y", "z"]
    assert build_cloud(depth, intr, labels=np.ones((2, 3), np.uint16)).fields[3] == PointField("label", 12, UINT32)
    dense = build_cloud(depth, intr, rgb=np.zeros((2, 3, 3), np.uint8), organized=False)
    assert (dense.height, dense.width, dense.is_dense) == (1, 3, True)
    np.testing.assert_allclose(dense.points[0, :, :3], [[-1.0, -0.5, 1.0], [2.0, -1.0, 2.0], [0.0, 1.5, 3.0]])
    assert dense.row_step == 3 * 16 and len(dense.data) == 48
    np.testing.assert_array_equal(xyz.field("z")[0], [1.0, np.nan, 2.0])
    with pytest.raises(KeyError, match="no field 'rgb'"):
        xyz.field("rgb")
    # a dense cloud without a valid point, with colours and labels: empty, with the full layout
    nothing = build_cloud(np.full((2, 3), np.nan, np.float32), intr, rgb=np.zeros((2, 3, 3), np.uint8),
                          labels=np.ones((2, 3), np.uint16), organized=False)
    assert (nothing.height, nothing.width, nothing.point_step, len(nothing.data)) == (1, 0, 20, 0)
    assert nothing.is_dense   # no point, so no invalid one (as the GPU path says)
    # colour words 0x00RRGGBB (bytes B, G, R, 0), also from a grey image broadcast to three channels
    grey = np.broadcast_to(np.array([[[7], [8], [9]], [[10], [11], [12]]], np.uint8), (2, 3, 3))
    rgb = np.array([[[1, 2, 3], [4, 5, 6], [7, 8, 9]], [[10, 11, 12], [13, 14, 15], [16, 17, 18]]], np.uint8)
    for colours in (grey, rgb):
        words = build_cloud(depth, intr, rgb=colours).points.view(np.uint32)[:, :, 3]
        expected = (colours[..., 0].astype(np.uint32) << 16) | (colours[..., 1].astype(np.uint32) << 8) | colours[..., 2]
        np.testing.assert_array_equal(words, expected)


@pytest.mark.filterwarnings("error::RuntimeWarning")   # (NumPy 1.x warned of the overflow in x, y)
def test_depth_beyond_float32_is_invalid_like_infinity():
    """A float64 depth larger than float32 can hold is +inf once written as a float32 point: invalid, as the CUDA
    kernel (which casts first) has it; a dense cloud holds finite points only."""
    depth = np.array([[1e39, 2.0, np.finfo(np.float32).max]], np.float64)
    intr = Intrinsics(1.0, 1.0, 0.0, 0.0, 3, 1)
    dense = build_cloud(depth, intr, organized=False)
    assert dense.width == 2 and np.isfinite(dense.points[0, :, 2]).all()
    np.testing.assert_array_equal(build_cloud(depth, intr).field("z")[0, :2], [np.nan, 2.0])


def test_cloud_scales_intrinsics_to_depth_size_and_validates():
    intr = Intrinsics(100.0, 100.0, 50.0, 40.0, 100, 80)  # full-size calibration, half-size depth
    depth = np.full((40, 50), 2.0, np.float32)
    cloud = build_cloud(depth, intr)
    x, y, _ = _point(cloud, 0, 10, cloud.point_step, cloud.row_step)
    assert x == pytest.approx((10 - 25.0) * 2.0 / 50.0) and y == pytest.approx((0 - 20.0) * 2.0 / 50.0)
    with pytest.raises(ValueError, match="stride"):
        build_cloud(depth, intr, stride=0)
    with pytest.raises(ValueError, match="rgb must be"):
        build_cloud(depth, intr, rgb=np.zeros((40, 50), np.uint8))
    with pytest.raises(ValueError, match=r"depth must be \(H, W\)"):
        build_cloud(depth[None], intr)


@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize("layout", ["compact", "padded rows", "bgr view", "bgr view, padded rows", "grey broadcast",
                                    "rgba view", "bgra view, padded rows", "rgba view, no 4th byte at its end"])
def test_colour_words_of_every_stride_and_pixel_layout(stride, layout):
    """The rgb word of each point is its own pixel's (0x00RRGGBB), whatever the colour array's memory layout
    (a compact image, or a bgr8 frame's reversed view of its bytes, is packed whole and read every stride-th word;
    other layouts are gathered first), with the
    label after it, organised and dense."""
    rng = np.random.default_rng(stride)
    h, w = 13, 17
    pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    if layout == "padded rows":
        pixels = np.ascontiguousarray(np.concatenate([pixels, np.zeros((h, 5, 3), np.uint8)], 1))[:, :w]
    elif layout == "bgr view":   # (a bgr8 frame's decode: its bytes, channels reversed; packed without a copy)
        pixels = np.ascontiguousarray(pixels)[..., ::-1]
    elif layout == "bgr view, padded rows":
        pixels = np.ascontiguousarray(np.concatenate([pixels, np.zeros((h, 5, 3), np.uint8)], 1))[:, :w, ::-1]
    elif layout == "grey broadcast":
        pixels = np.broadcast_to(pixels[..., :1], (h, w, 3))
    elif layout.startswith(("rgba", "bgra")):   # (an rgba8/bgra8 frame's decode: 4 bytes a pixel, alpha not 0)
        alpha = rng.integers(1, 256, (h, w + 5, 1), dtype=np.uint8)
        bgr = layout.startswith("bgra")
        stored = np.concatenate([np.pad(pixels[..., ::-1] if bgr else pixels, ((0, 0), (0, 5), (0, 0))), alpha], 2)
        stored = stored[:, :w] if "padded" in layout else np.ascontiguousarray(stored[:, :w])
        if "no 4th byte" in layout:   # a view of exactly the bytes it reads: read as 3 bytes
            buf = np.frombuffer(stored.tobytes()[:-1], np.uint8)
            pixels = np.ndarray((h, w, 3), np.uint8, buffer=buf, strides=(w * 4, 4, 1))
        else:
            pixels = stored[..., 2::-1] if bgr else stored[..., :3]
    depth = rng.uniform(0.5, 4.0, (h, w)).astype(np.float32)
    depth[2, ::2] = np.nan
    labels = rng.integers(0, 150, (h, w), dtype=np.uint16)
    intr = Intrinsics(9.0, 9.0, 8.0, 6.0, w, h)
    sub = pixels[::stride, ::stride].astype(np.uint32)
    want = (sub[..., 0] << 16) | (sub[..., 1] << 8) | sub[..., 2]
    cloud = build_cloud(depth, intr, rgb=pixels, labels=labels, stride=stride)
    words = cloud.points.view(np.uint32)
    np.testing.assert_array_equal(words[:, :, 3], want)
    np.testing.assert_array_equal(words[:, :, 4], labels[::stride, ::stride])
    dense = build_cloud(depth, intr, rgb=pixels, labels=labels, stride=stride, organized=False)
    ok = np.isfinite(depth[::stride, ::stride])
    np.testing.assert_array_equal(dense.points.view(np.uint32)[0, :, 3], want[ok])


def test_reuse_buffer_on_the_host_writes_the_same_bytes_into_one_buffer_per_thread():
    """reuse_buffer on the NumPy path: the bytes of a fresh cloud, written into this thread's one buffer (the next
    call's cloud overwrites the last; a larger one grows it), dense and organised, with colours and labels; another
    thread has a buffer of its own."""
    import threading

    rng = np.random.default_rng(4)
    depth = rng.uniform(0.5, 3.0, (12, 16)).astype(np.float32)
    depth[3, 4:9] = np.nan
    rgb = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
    labels = rng.integers(0, 9, (12, 16), dtype=np.uint16)
    intr = Intrinsics(8.0, 8.0, 7.5, 5.5, 16, 12)
    for kw in (dict(), dict(rgb=rgb), dict(rgb=rgb, labels=labels, stride=2), dict(rgb=rgb, organized=False)):
        fresh = build_cloud(depth, intr, **kw)
        reused = build_cloud(depth, intr, reuse_buffer=True, **kw)
        assert isinstance(reused.data, np.ndarray) and bytes(reused.data) == bytes(fresh.data)
        assert (reused.height, reused.width, reused.row_step, reused.is_dense) == \
            (fresh.height, fresh.width, fresh.row_step, fresh.is_dense)
    first = build_cloud(depth, intr, rgb=rgb, reuse_buffer=True)
    second = build_cloud(depth * 2, intr, rgb=rgb, reuse_buffer=True)
    assert np.shares_memory(first.data, second.data)
    np.testing.assert_array_equal(first.field("z"), depth * 2)   # the first cloud's bytes are the second's now
    bigger = build_cloud(np.ones((24, 32), np.float32), Intrinsics(8.0, 8.0, 15.5, 11.5, 32, 24), reuse_buffer=True)
    assert len(bigger.data) == 24 * 32 * 12 and np.all(bigger.field("z") == 1.0)
    other = []
    thread = threading.Thread(target=lambda: other.append(build_cloud(depth, intr, reuse_buffer=True)))
    thread.start()
    thread.join()
    assert not np.shares_memory(other[0].data, build_cloud(depth, intr, reuse_buffer=True).data)
