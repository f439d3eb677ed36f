"""The published cloud against a reference written here from the ROS messages alone, as a consumer reads them:
the PointCloud2 bytes decoded by their own fields, the published ``depth`` back-projected with the intrinsics
of the input camera_info (P, binning, ROI, scaled to the frame; as is where it gives no size) and the input
frame's own bytes as the colours (float32 rgb holding 0x00RRGGBB, PCL / RViz), the published segmentation as the
labels. ``depth/camera_info`` must describe the same camera (depth_image_proc's point_cloud_xyz on depth + it gives
these points). test_ros_node_cloud_bytes compares with the pipeline's own build_cloud; this does not use it."""
import numpy as np
import pytest
import torch
from sensor_msgs.msg import CameraInfo, Image, PointCloud2

from dpt_ros.ros.testing import make_image, make_info, padded, qos, set_params, wait_for

DOMAIN = 61
W, H = 101, 77   # odd: no stride divides them


def _cloud(msg: PointCloud2) -> tuple[list, dict]:
    """(fields as (name, offset, datatype, count), {name: (height, width) values}) read from the bytes."""
    assert msg.is_bigendian is False and msg.row_step == msg.width * msg.point_step
    assert len(msg.data) == msg.row_step * msg.height
    raw = np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.width, msg.point_step)
    kinds = {7: "<f4", 6: "<u4"}
    values = {f.name: raw[:, :, f.offset:f.offset + 4].copy().view(kinds[f.datatype])[..., 0] for f in msg.fields}
    if "rgb" in values:
        values["rgb"] = values["rgb"].view("<u4")   # the float's bits, as PCL / RViz unpack them
    return [(f.name, f.offset, f.datatype, f.count) for f in msg.fields], values


def _rows(img: Image) -> np.ndarray:
    return np.frombuffer(bytes(img.data), np.uint8).reshape(img.height, img.step)


def _depth(msg: Image) -> np.ndarray:
    assert msg.encoding == "32FC1" and not msg.is_bigendian
    return _rows(msg)[:, :msg.width * 4].copy().view("<f4")


def _colour_words(img: Image) -> np.ndarray:
    rows = _rows(img).astype(np.uint32)
    if img.encoding == "mono8":
        g = rows[:, :img.width]
        return (g << 16) | (g << 8) | g
    n = 4 if img.encoding in ("rgba8", "bgra8") else 3
    px = rows[:, :img.width * n].reshape(img.height, img.width, n)
    r, g, b = (px[..., 2], px[..., 1], px[..., 0]) if img.encoding.startswith("bgr") else (
        px[..., 0], px[..., 1], px[..., 2])
    return (r << 16) | (g << 8) | b


def _intrinsics(info: CameraInfo, w: int, h: int) -> tuple[float, float, float, float]:
    """fx, fy, cx, cy of a rectified frame of w x h pixels from its camera_info."""
    fx, fy, cx, cy = (info.p[0], info.p[5], info.p[2], info.p[6])
    full_w, full_h = info.width, info.height
    if info.roi.width and info.roi.height:
        cx, cy, full_w, full_h = cx - info.roi.x_offset, cy - info.roi.y_offset, info.roi.width, info.roi.height
    bx, by = max(info.binning_x, 1), max(info.binning_y, 1)
    fx, cx, fy, cy = fx / bx, cx / bx, fy / by, cy / by
    if not (full_w and full_h):
        return fx, fy, cx, cy
    sx, sy = w / (full_w // bx), h / (full_h // by)
    return fx * sx, fy * sy, cx * sx, cy * sy


def _check(img, info, depth_msg, cloud_msg, seg_msg, dinfo, stride, organized, color, label) -> int:
    """Asserts the cloud is the reference; returns its number of valid points."""
    assert cloud_msg.header == img.header and depth_msg.header == img.header and dinfo.header == img.header
    fx, fy, cx, cy = _intrinsics(info, img.width, img.height)
    assert (dinfo.width, dinfo.height) == (img.width, img.height)
    # the intrinsics of the published pixels: no binning or ROI left for a consumer to apply once more
    roi = dinfo.roi
    assert (dinfo.binning_x, dinfo.binning_y, roi.x_offset, roi.y_offset, roi.width, roi.height) == (0,) * 6
    np.testing.assert_allclose([dinfo.p[0], dinfo.p[5], dinfo.p[2], dinfo.p[6]], [fx, fy, cx, cy], rtol=1e-12)
    assert dinfo.p[3] == pytest.approx(info.p[3] * fx / info.p[0])   # Tx scaled with fx': the same baseline
    fields, got = _cloud(cloud_msg)
    want = [("x", 0, 7, 1), ("y", 4, 7, 1), ("z", 8, 7, 1)] + ([("rgb", 12, 7, 1)] if color else [])
    want += [("label", 12 + 4 * len(want[3:]), 6, 1)] if label else []
    assert fields == want and cloud_msg.point_step == 4 * len(want)
    v, u = np.mgrid[0:img.height:stride, 0:img.width:stride]
    z = _depth(depth_msg)[v, u].astype(np.float64)
    valid = np.isfinite(z) & (z > 0)   # NaN, -Inf (below depth.min), +Inf (above depth.max): no point
    ref = {"x": (u - cx) * z / fx, "y": (v - cy) * z / fy, "z": z, "rgb": _colour_words(img)[v, u]}
    if label:
        ref["label"] = _rows(seg_msg)[:, :seg_msg.width][v, u].astype(np.uint32)
    if organized:
        assert (cloud_msg.height, cloud_msg.width, cloud_msg.is_dense) == (*z.shape, False)
        assert np.isnan(got["x"][~valid]).all() and np.isnan(got["y"][~valid]).all()
        assert np.isnan(got["z"][~valid]).all()
        got = {k: a[valid] for k, a in got.items()}
    else:
        assert (cloud_msg.height, cloud_msg.width, cloud_msg.is_dense) == (1, int(valid.sum()), True)
        got = {k: a[0] for k, a in got.items()}
    for k in "xyz":
        np.testing.assert_allclose(got[k], ref[k][valid], rtol=2e-6, atol=1e-7, err_msg=k)
    for k in ("rgb", "label"):
        if k in got:
            np.testing.assert_array_equal(got[k], ref[k][valid], err_msg=k)
    return int(valid.sum())


class _Rig:
    def __init__(self, harness, **params):
        self.harness, self.stamp = harness, 0
        self.node = harness.start_node(**{"depth.scale": 1.0, "depth.shift": 0.5, "camera_info.policy": "latest",
                                          **params})
        topics = {"depth": Image, "points": PointCloud2, "depth/camera_info": CameraInfo}
        if "segmentation.variant" in params:
            topics["segmentation"] = Image
        self.got = {n: harness.collector(t, n) for n, t in topics.items()}
        self.pub = harness.probe.create_publisher(Image, "image", qos())
        self.info_pub = harness.probe.create_publisher(CameraInfo, "camera_info", qos())
        cam = self.node.cameras[0]
        wait_for(lambda: self.pub.get_subscription_count() > 0 and self.info_pub.get_subscription_count() > 0 and
                 all(cam.pubs[n].get_subscription_count() > 0 for n in topics), what="discovery")

    def frame(self, encoding="rgb8", pad=0, info=None, stride=2, organized=True, color=True, label=False, **params):
        assert all(r.successful for r in set_params(self.harness, self.node, **{
            "points.stride": stride, "points.organized": organized, "points.color": color, "points.label": label,
            **params}))
        self.stamp += 1
        img = make_image(self.stamp * 1_000_000_000, width=W, height=H, encoding=encoding, seed=self.stamp)
        img = padded(img, pad) if pad else img
        if info is None:
            # P (used for the rectified image) other than K, of a stereo pair's right camera: Tx = -fx' * 0.1 m, the
            # baseline, which depth_image_proc leaves out of its points (they are in this camera's frame), and
            # image_geometry's projectPixelTo3dRay would take off u
            info = make_info(img, fx=70.0)
            info.p[0], info.p[5], info.p[2], info.p[6], info.p[3] = 64.0, 66.0, 52.25, 36.5, -6.4
        info.header = img.header
        self.info_pub.publish(info)
        cam = self.node.cameras[0]
        wait_for(lambda: any(m.header.stamp == img.header.stamp for _, m in list(cam.infos)), what="camera_info")
        self.pub.publish(img)
        wait_for(lambda: all(any(m.header.stamp == img.header.stamp for m in list(v)) for v in self.got.values()),
                 timeout=60, what=f"outputs of frame {self.stamp}")
        assert self.node.error_counts() == {}
        out = {n: next(m for m in v if m.header.stamp == img.header.stamp) for n, v in self.got.items()}
        n = _check(img, info, out["depth"], out["points"], out.get("segmentation"), out["depth/camera_info"],
                   stride, organized, color, label)
        return _depth(out["depth"]), n


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs CUDA")])])   # on a GPU: decoded and built by the device kernels
def test_cloud_is_the_published_depth_back_projected_as_consumers_read_it(harness, device):
    """rgb8 / bgr8 / mono8 / rgba8 / bgra8 frames (with row padding), strides 1-3 of an odd-sized image, organised
    and dense, with and without rgb and label; depth.min / depth.max: their points NaN when organised, absent when
    dense; a camera_info of a binned ROI of a larger sensor, one of twice the frame's resolution (scaled), one with
    width / height 0 (taken as is): the cloud and depth/camera_info follow each. One node for all (each frame sets
    its parameters first)."""
    rig = _Rig(harness, device=device,
               **{"segmentation.variant": "dpt_hybrid_ade20k", "segmentation.weights": "random"})
    depth, n = rig.frame("rgb8", stride=1, label=True)
    assert n == W * H
    rig.frame("bgr8", pad=3, stride=2, organized=False)
    rig.frame("mono8", pad=1, stride=3, color=False, label=True)
    rig.frame("rgba8", pad=3, stride=3, organized=False, label=True)
    rig.frame("bgra8", stride=2)
    lo, hi = (float(q) for q in np.nanquantile(depth, [0.3, 0.7]))
    for organized in (True, False):
        depth, n = rig.frame("rgb8", stride=1, organized=organized, **{"depth.min": lo, "depth.max": hi})
        assert np.isneginf(depth).any() and np.isposinf(depth).any() and 0 < n < W * H
    assert all(r.successful for r in set_params(harness, rig.node, **{"depth.min": 0.0, "depth.max": 1000.0}))

    binned = CameraInfo(width=2 * W + 20, height=2 * H + 10, binning_x=2, binning_y=2)
    binned.k = [140.0, 0.0, 110.0, 0.0, 138.0, 80.0, 0.0, 0.0, 1.0]
    binned.p = [141.0, 0.0, 111.0, 0.0, 0.0, 139.0, 81.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    binned.roi.x_offset, binned.roi.y_offset, binned.roi.width, binned.roi.height = 10, 4, 2 * W, 2 * H
    rig.frame(info=binned, stride=2)
    double = make_info(make_image(0, width=2 * W, height=2 * H), fx=140.0)
    rig.frame(info=double, stride=3, organized=False)
    sizeless = make_info(make_image(0, width=W, height=H), fx=70.0)
    sizeless.p[2] += 4.0
    sizeless.width = sizeless.height = 0
    rig.frame(info=sizeless, stride=1)
