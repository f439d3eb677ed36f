"""Camera intrinsics from CameraInfo fields and PointCloud2 buffers built straight from depth.

Layout (little-endian, ``row_step = width * point_step``, invalid points NaN):

======== ====== ========= =====================================================
field    offset datatype  meaning
======== ====== ========= =====================================================
x, y, z  0,4,8  FLOAT32   metres in the camera optical frame (z forward, x right, y down)
rgb      12     FLOAT32   packed 0x00RRGGBB (PCL / RViz convention), when colours are given
label    12/16  UINT32    class label (0 = unlabeled), when labels are given
======== ====== ========= =====================================================

``point_step`` is 12 (xyz), 16 (xyz + rgb or label) or 20 (xyz + rgb + label).
"""

from __future__ import annotations

import array
import dataclasses
import math
import threading
from typing import Any, Sequence

import cv2
import numpy as np

from dpt_ros.pipeline import distortion
from dpt_ros.pipeline._backend import array_module
from dpt_ros.pipeline.encodings import four_byte_pixels

# sensor_msgs/PointField datatype constants
FLOAT32 = 7
UINT32 = 6


class CalibrationError(ValueError):
    """CameraInfo cannot be used for back-projection (uncalibrated or inconsistent); no cloud."""


class UncalibratedError(CalibrationError):
    """CameraInfo of a camera without a calibration (``K[0] == 0``, as drivers publish it without one)."""


@dataclasses.dataclass(frozen=True)
class Intrinsics:
    """Intrinsics for an image of ``width`` x ``height`` pixels (pixel centres at integers): pinhole, and
    for an unrectified image the lens distortion (``distortion_model``, ``d`` as in CameraInfo; see
    :mod:`.distortion`). An all-zero ``d`` is stored as no distortion.

    ``projection``: the CameraInfo's projection P for these pixels, (fx', fy', cx', cy', Tx, Ty), when it had one
    (a raw image's rectified camera; a stereo camera's baseline term Tx); empty: P is the pinhole of fx..cy. It is
    not used for back-projection, only carried into the CameraInfo of outputs (:meth:`camera_info_matrices`)."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int
    distortion_model: str = ""
    d: tuple[float, ...] = ()
    projection: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        vals = (self.fx, self.fy, self.cx, self.cy)
        if not all(math.isfinite(v) for v in vals) or self.fx <= 0 or self.fy <= 0:
            raise CalibrationError(f"intrinsics need finite fx, fy > 0; got fx={self.fx}, fy={self.fy}")
        if self.width <= 0 or self.height <= 0:
            raise CalibrationError(f"intrinsics need a positive image size; got {self.width}x{self.height}")
        # the rays of the corner pixels, (u - cx) / fx and (v - cy) / fy, as the cloud's float32 holds them: a
        # denormal focal length or an absurd centre is finite and positive, yet put every point at infinity
        # (plain floats: this runs for every frame's scaled copy too; float division overflows to inf)
        rays = ((0.0 - self.cx) / self.fx, (self.width - 1.0 - self.cx) / self.fx,
                (0.0 - self.cy) / self.fy, (self.height - 1.0 - self.cy) / self.fy)
        if not all(abs(r) < float(_FLOAT32_MAX) for r in rays):
            raise CalibrationError(
                f"intrinsics fx={self.fx}, fy={self.fy}, cx={self.cx}, cy={self.cy} put the rays of a "
                f"{self.width}x{self.height} image beyond float range (infinite points): a corrupt calibration; "
                "no point cloud can be built")
        d = tuple(float(v) for v in self.d)
        model = self.distortion_model if any(d) else ""
        if any(d):
            if not all(math.isfinite(v) for v in d):
                raise CalibrationError(
                    f"CameraInfo D has non-finite coefficients {list(d)} (distortion_model {model!r}): fix D in the "
                    "camera driver or calibration file; for a rectified image set camera_info.rectified true (D is "
                    "not used then)")
            if model not in distortion.MODELS:
                # (image_geometry, and so image_proc, cannot rectify with a model it does not know either: a driver
                # naming a model of ROS's its own way, e.g. Kalibr's radtan or OpenCV's fisheye, needs the ROS name)
                raise CalibrationError(
                    f"CameraInfo distortion_model {model!r} with a non-zero D is not supported (supported: "
                    f"{', '.join(distortion.MODELS)}, ROS's names, the only ones image_proc knows too). If D is "
                    f"one of these under another name (plumb_bob: k1, k2, p1, p2, k3, OpenCV's default model, "
                    f"radial-tangential, 'radtan'; rational_polynomial: 8 of OpenCV's; equidistant: the 4 of OpenCV's "
                    f"fisheye model, Kannala-Brandt, 'fisheye', 'kannala_brandt4'), have the camera driver or "
                    f"calibration file name it so; else rectify the image with a tool that knows the model and set "
                    "camera_info.rectified true, so that P is used and D is not")
            lengths = distortion.MODELS[model]
            fits = [n for n in lengths if n <= len(d)]
            if not fits or any(d[fits[-1]:]):
                form = ("k1, k2, k3, k4" if model == "equidistant" else
                        "k1, k2, p1, p2[, k3[, k4, k5, k6[, s1, s2, s3, s4[, tau_x, tau_y]]]]")
                raise CalibrationError(
                    f"CameraInfo distortion_model {model!r} takes {', '.join(map(str, lengths[:-1]))}"
                    f"{' or ' if len(lengths) > 1 else ''}{lengths[-1]} D coefficients ({form}), as image_geometry "
                    f"and OpenCV read them; got {len(d)}: fix D in the camera driver or calibration file (missing "
                    "terms written as 0); image_proc cannot rectify the image with this D either (OpenCV refuses it)")
            # trailing zeros past the model's own form (5 plumb_bob, 8 rational_polynomial, 4 equidistant) and past
            # every non-zero term are the same lens, also beyond a form OpenCV takes (a plumb_bob D of 6 ending in 0):
            # dropped, so that equal lenses hash alike
            last = max(i for i, v in enumerate(d) if v) + 1
            d = d[:max(distortion.FORM_LENGTH[model], min(n for n in lengths if n >= last))]
        object.__setattr__(self, "d", d if model else ())   # frozen: normalised once, so equal cameras hash alike
        object.__setattr__(self, "distortion_model", model)

    @classmethod
    def from_camera_info(cls, k: Sequence[float], p: Sequence[float] | None, width: int, height: int,
                         binning_x: int = 0, binning_y: int = 0,
                         roi: tuple[int, int, int, int] | None = None,
                         rectified: bool = True, distortion_model: str = "",
                         d: Sequence[float] = ()) -> Intrinsics:
        """Intrinsics of the image a ``sensor_msgs/CameraInfo`` describes.

        :param k: ``K`` (9 values, row-major).
        :param p: ``P`` (12 values); used when ``rectified`` and ``P[0] != 0`` (fx=P[0], fy=P[5],
            cx=P[2], cy=P[6]), else ``K`` (fx=K[0], fy=K[4], cx=K[2], cy=K[5]).
        :param width: ``width`` (full sensor resolution the calibration refers to).
        :param height: ``height``.
        :param binning_x: ``binning_x`` (0 or 1 = none): divides fx, cx.
        :param binning_y: ``binning_y``: divides fy, cy.
        :param roi: (x_offset, y_offset, roi_height, roi_width) of ``roi``; all zero / None = full image.
        :param rectified: the image is rectified (``image_rect``): prefer ``P``, ignore the distortion.
        :param distortion_model: ``distortion_model``; applied only when not ``rectified``.
        :param d: ``D``; applied only when not ``rectified`` (all zero: none).
        :raises CalibrationError: all-zero/uncalibrated ``K`` (``K[0] == 0``) or inconsistent values,
            a non-zero ``D`` of an unsupported model or length on an unrectified image;
            the message says why so the caller can log it once and publish no cloud.
        """
        k = [float(v) for v in k]
        if len(k) != 9:
            raise CalibrationError(f"CameraInfo K must have 9 values; got {len(k)}")
        if k[0] == 0.0:
            raise UncalibratedError("camera is uncalibrated (CameraInfo K[0] == 0); no point cloud can be built")
        use_p, proj = False, ()
        if p is not None:
            p = [float(v) for v in p]
            if len(p) != 12 and rectified:
                raise CalibrationError(f"CameraInfo P must have 12 values; got {len(p)}")
            use_p = rectified and p[0] != 0.0
            if len(p) == 12 and p[0] > 0.0 and p[5] > 0.0 and all(math.isfinite(v) for v in p):
                proj = (p[0], p[5], p[2], p[6], p[3], p[7])   # (a raw image's P that cannot be used: none)
        fx, fy, cx, cy = (p[0], p[5], p[2], p[6]) if use_p else (k[0], k[4], k[2], k[5])
        if not all(math.isfinite(v) for v in (fx, fy, cx, cy)) or fx <= 0.0 or fy <= 0.0:
            raise CalibrationError(
                f"CameraInfo {'P' if use_p else 'K'} has unusable intrinsics fx={fx}, fy={fy}, cx={cx}, cy={cy} "
                "(must be finite, focal lengths > 0); no point cloud can be built")
        if width <= 0 or height <= 0:
            raise CalibrationError(f"CameraInfo has no image size ({width}x{height})")
        bx, by = max(int(binning_x), 1), max(int(binning_y), 1)
        w, h = int(width), int(height)
        if roi is not None and any(int(v) for v in roi):
            x0, y0, rh, rw = (int(v) for v in roi)
            if rw <= 0 or rh <= 0 or x0 + rw > w or y0 + rh > h:
                raise CalibrationError(
                    f"CameraInfo ROI (x={x0}, y={y0}, {rw}x{rh}) does not fit the {w}x{h} image")
            cx, cy, w, h = cx - x0, cy - y0, rw, rh
            if proj:
                proj = (*proj[:2], proj[2] - x0, proj[3] - y0, *proj[4:])
        if w // bx <= 0 or h // by <= 0:
            raise CalibrationError(
                f"CameraInfo binning_x={binning_x}, binning_y={binning_y} leaves no pixels of its {w}x{h} image "
                "(binning is a small factor such as 1, 2 or 4; 0 means none): fix the camera driver's binning")
        lens = {} if rectified else {"distortion_model": distortion_model, "d": tuple(d)}
        if proj:   # binning divides P's x terms (fx', cx', Tx) and y terms as it does K's
            proj = tuple(v / (bx if i % 2 == 0 else by) for i, v in enumerate(proj))
        return cls(fx / bx, fy / by, cx / bx, cy / by, w // bx, h // by, **lens, projection=proj)

    def scaled_to(self, width: int, height: int) -> Intrinsics:
        """Intrinsics for the same view resized to ``width`` x ``height`` (fx, cx by sx; fy, cy by sy)."""
        if (width, height) == (self.width, self.height):
            return self
        if width <= 0 or height <= 0:
            raise CalibrationError(f"cannot scale intrinsics to {width}x{height}")
        sx, sy = width / self.width, height / self.height
        # normalised coordinates, and with them the distortion, do not change with the pixel grid
        return dataclasses.replace(self, fx=self.fx * sx, fy=self.fy * sy, cx=self.cx * sx, cy=self.cy * sy,
                                   width=int(width), height=int(height),
                                   projection=tuple(v * (sx if i % 2 == 0 else sy)
                                                    for i, v in enumerate(self.projection)))

    def camera_info_matrices(self) -> tuple[list[float], list[float]]:
        """(K, P) lists for a CameraInfo describing this (e.g. resized) image: K of fx..cy, P the source's
        projection (its rectified camera, baseline term Tx included) scaled like K, or K's pinhole (the
        distortion, if any, goes in D and distortion_model, unchanged)."""
        k = [self.fx, 0.0, self.cx, 0.0, self.fy, self.cy, 0.0, 0.0, 1.0]
        pfx, pfy, pcx, pcy, tx, ty = self.projection or (self.fx, self.fy, self.cx, self.cy, 0.0, 0.0)
        p = [pfx, 0.0, pcx, tx, 0.0, pfy, pcy, ty, 0.0, 0.0, 1.0, 0.0]
        return k, p


@dataclasses.dataclass(frozen=True)
class PointField:
    """One ``sensor_msgs/PointField``: name, byte offset, datatype constant, count."""

    name: str
    offset: int
    datatype: int
    count: int = 1


@dataclasses.dataclass
class CloudBuffer:
    """A PointCloud2 payload ready to wrap: ``msg.data = buf.data`` (array.array('B'), no copy; with
    ``build_cloud(..., reuse_buffer=True)`` a uint8 NumPy view of a reused buffer, pinned on the GPU, which the
    message setter copies).

    ``points`` is a (height, width, point_step // 4) float32 NumPy view of ``data`` (for tests and
    tools); ``rgb`` / ``label`` words are stored bit-exactly inside it.
    """

    data: "array.array | np.ndarray"
    height: int
    width: int
    point_step: int
    row_step: int
    fields: tuple[PointField, ...]
    is_dense: bool
    is_bigendian: bool = False

    @property
    def points(self) -> np.ndarray:
        words = np.frombuffer(self.data, dtype="<f4")
        return words.reshape(self.height, self.width, self.point_step // 4)

    def field(self, name: str) -> np.ndarray:
        """(height, width) view of one field (float32, or uint32 for ``label``; ``rgb`` as uint32)."""
        for f in self.fields:
            if f.name == name:
                words = self.points[:, :, f.offset // 4]
                return words.view(np.uint32) if name in ("rgb", "label") else words
        raise KeyError(f"cloud has no field {name!r}; fields: {[f.name for f in self.fields]}")


def cloud_fields(with_rgb: bool, with_label: bool) -> tuple[tuple[PointField, ...], int]:
    """(fields, point_step) for the chosen layout (see the module docstring)."""
    fields = [PointField("x", 0, FLOAT32), PointField("y", 4, FLOAT32), PointField("z", 8, FLOAT32)]
    off = 12
    if with_rgb:
        fields.append(PointField("rgb", off, FLOAT32))
        off += 4
    if with_label:
        fields.append(PointField("label", off, UINT32))
        off += 4
    return tuple(fields), off


def new_byte_array(nbytes: int) -> array.array:
    """A zero-filled ``array.array('B')`` of ``nbytes`` (what rclpy stores for uint8[] without copying)."""
    return array.array("B", b"\0") * nbytes


_reused = threading.local()


def _reused_bytes(nbytes: int) -> np.ndarray:
    """``nbytes`` of this thread's reused host buffer (uint8; grown, never shrunk), for ``reuse_buffer``: a fresh
    4.9 MB buffer per 640x480 cloud is page-faulted in anew whenever the allocator has given the last one back to
    the system (9.5 instead of 1.5 ms for the cloud's message here, in a loop that also allocated other arrays)."""
    buf = getattr(_reused, "buf", None)
    if buf is None or buf.size < nbytes:
        buf = _reused.buf = np.empty(max(nbytes, 1), np.uint8)
    return buf[:nbytes]


def _check_inputs(depth: Any, rgb: Any, labels: Any, stride: int) -> tuple[int, int]:
    if depth.ndim != 2:
        raise ValueError(f"depth must be (H, W); got shape {depth.shape}")
    h, w = depth.shape
    if not isinstance(stride, (int, np.integer)) or stride < 1:
        raise ValueError(f"stride must be an integer >= 1; got {stride!r}")
    if rgb is not None and (rgb.shape != (h, w, 3) or rgb.dtype != np.uint8):
        raise ValueError(f"rgb must be (H, W, 3) uint8 matching depth {h}x{w}; got {rgb.shape} {rgb.dtype}")
    if labels is not None and labels.shape != (h, w):
        raise ValueError(f"labels must be (H, W) matching depth {h}x{w}; got {labels.shape}")
    return h, w


_FLOAT32_MAX = np.finfo(np.float32).max


def _colour_words(rgb: np.ndarray) -> np.ndarray:
    """(H, W) uint32 words whose little-endian bytes are B, G, R and one more of an (H, W, 3) uint8 RGB image. A
    bgr8 frame's RGB is a view of its bytes with the channels reversed (channel stride -1): those bytes are already
    B, G, R, converted as they lie (BGR -> BGRA); a mono frame's is its grey plane broadcast (GRAY -> BGRA). The
    compact copy of such a view cost more than the cloud's geometry (640x480 xyz+rgb: 2.9 (bgr8) and 3.3 (mono8)
    instead of 1.1 ms here)."""
    if rgb.strides[1:] == (3, -1):
        return cv2.cvtColor(rgb[..., ::-1], cv2.COLOR_BGR2BGRA).view(np.uint32)[..., 0]
    if rgb.strides[2] == 0 and rgb.strides[1] == 1:   # a mono frame's decode: one grey plane seen three times
        return cv2.cvtColor(rgb[..., 0], cv2.COLOR_GRAY2BGRA).view(np.uint32)[..., 0]
    four = four_byte_pixels(rgb)
    if four is not None:
        # an rgba8/bgra8 frame's decode, 4 bytes a pixel: a bgra8 frame's bytes are the words already (the 4th byte,
        # its alpha, is cleared where they are written); an rgba8 frame's are swapped whole (a compact copy of the
        # 3-byte view first made the 640x480 xyz+rgb cloud 3.9 instead of 1.1 ms here)
        pixels, bgr = four
        return (pixels if bgr else cv2.cvtColor(pixels, cv2.COLOR_RGBA2BGRA)).view(np.uint32)[..., 0]
    if rgb.strides[1:] != (3, 1):
        rgb = np.ascontiguousarray(rgb)
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGRA).view(np.uint32)[..., 0]


def _grid_words(rgb: np.ndarray, stride: int) -> np.ndarray:
    """:func:`_colour_words` of ``rgb[::stride, ::stride]`` (the little-endian word 0x..RRGGBB = bytes B, G, R of each
    point's pixel). At stride 2 an image in one of the layouts converted as they lie is converted whole and every
    2nd word read: gathering the 3-byte pixels of rgb[::2, ::2] into a compact copy first took 0.45 ms at 640x480,
    this pass 0.2 ms."""
    if stride == 1 or (stride == 2 and rgb.strides[1:] in ((3, 1), (3, -1), (1, 0), (4, 1), (4, -1))):
        return _colour_words(rgb)[::stride, ::stride]
    return _colour_words(rgb[::stride, ::stride])


def build_cloud(depth: Any, intrinsics: Intrinsics, rgb: Any = None, labels: Any = None,
                stride: int = 1, organized: bool = True, reuse_buffer: bool = False) -> CloudBuffer:
    """Back-project a metric depth image into a PointCloud2 byte buffer.

    Pixel (u, v) with depth z (metres along the optical axis) becomes
    ``x = (u - cx) * z / fx``, ``y = (v - cy) * z / fy``, ``z``; only every ``stride``-th pixel in
    each direction is used (u, v = 0, stride, 2*stride, ...; original pixel coordinates). With lens
    distortion in ``intrinsics``, ``x = x_u * z``, ``y = y_u * z`` where (x_u, y_u) are the undistorted
    normalised coordinates of the pixel (:func:`.distortion.pixel_rays`); pixels without one are invalid.

    :param depth: (H, W) float metres (NumPy or CuPy); NaN, +-inf and <= 0 are invalid.
    :param intrinsics: camera intrinsics; scaled automatically when their size differs from (W, H).
    :param rgb: optional (H, W, 3) uint8 colours -> ``rgb`` field.
    :param labels: optional (H, W) integer labels -> ``label`` field (UINT32).
    :param stride: decimation step (>= 1).
    :param organized: True: (ceil(H/stride), ceil(W/stride)) grid with NaN points,
        ``is_dense=False``; False: only valid points, height 1, ``is_dense=True``.
    :param reuse_buffer: for a caller that serialises or copies the cloud before building the next
        one (the node): the cloud is then returned as a uint8 NumPy view of a buffer that the next call
        on this thread overwrites: for a CuPy depth the pinned buffer it was copied into, instead of one
        more host copy into an ``array.array`` (1.2 MB at 640x480 stride 2, 33 MB for a 1080p xyz+rgb
        cloud); for a NumPy depth a reused host buffer, instead of a fresh one to page in.
    """
    h, w = _check_inputs(depth, rgb, labels, stride)
    intr = intrinsics.scaled_to(w, h)
    if array_module(depth) is not np:
        from dpt_ros.pipeline import _cuda  # noqa: PLC0415

        return _cuda.build_cloud(depth, intr, rgb, labels, stride, organized, reuse_buffer)
    fields, point_step = cloud_fields(rgb is not None, labels is not None)
    z = depth[::stride, ::stride]
    hs, ws = z.shape
    ax, ay = distortion.pixel_rays(intr, stride)   # (1, ws) and (hs, 1), or (hs, ws) each with distortion
    nwords = point_step // 4
    with np.errstate(invalid="ignore"):
        # finite as float32, as the CUDA kernel tests it: a float64 depth beyond float32's range is +inf there
        valid = (z > 0) & (z <= _FLOAT32_MAX)
    if intr.distortion_model:
        valid &= ~np.isnan(ax)   # pixels beyond the lens model's reach have no ray
    # (every byte of every point is written below: a reused buffer needs no clearing)
    new_data = _reused_bytes if reuse_buffer else new_byte_array
    if organized:
        data = new_data(hs * ws * point_step)
        pts = np.frombuffer(data, dtype=np.float32).reshape(hs, ws, nwords)
        zc = pts[:, :, 2]
        # invalid -> NaN on a compact float32 copy of the depth, then one strided write (2x faster than masking
        # zc; copyto(where=) rather than where(), which made two more arrays: 0.28 -> 0.21 ms at 640x480 here)
        with np.errstate(over="ignore"):   # (a float64 depth beyond float32's range: invalid, NaN below)
            zz = np.array(z, dtype=np.float32)
        np.copyto(zz, np.float32(np.nan), where=~valid)
        zc[...] = zz
        with np.errstate(over="ignore"):   # a depth near float32's maximum: x, y are +-inf (as on the GPU)
            np.multiply(zc, ax, out=pts[:, :, 0])
            np.multiply(zc, ay, out=pts[:, :, 1])
        word = _grid_words(rgb, stride) if rgb is not None else None
        lab = labels[::stride, ::stride] if labels is not None else None
        out_h, out_w, dense = hs, ws, False
    else:
        # the valid points in row-major order, each array gathered through the boolean mask (indexing with
        # np.nonzero's row and column arrays instead took 14.4 instead of 2.4 ms for a 640x480 xyz+rgb cloud here)
        n = int(np.count_nonzero(valid))
        data = new_data(n * point_step)
        pts = np.frombuffer(data, dtype=np.float32).reshape(1, n, nwords)
        zv = z[valid].astype(np.float32, copy=False)
        pts[0, :, 2] = zv
        with np.errstate(over="ignore"):   # a depth near float32's maximum: x, y are +-inf (as on the GPU)
            np.multiply(zv, np.broadcast_to(ax, (hs, ws))[valid], out=pts[0, :, 0])
            np.multiply(zv, np.broadcast_to(ay, (hs, ws))[valid], out=pts[0, :, 1])
        # (colours as words before the gather: boolean indexing of the (H, W, 3) bytes took 12 ms at 640x480)
        word = _grid_words(rgb, stride)[valid][None] if rgb is not None else None
        lab = labels[::stride, ::stride][valid][None] if labels is not None else None
        out_h, out_w, dense = 1, n, True
    if word is not None:
        # one strided 4-byte write that clears the 4th byte (three strided byte writes took 0.61 ms at 640x480,
        # this 0.37 ms)
        np.bitwise_and(word, np.uint32(0x00FFFFFF), out=pts.view(np.uint32)[:, :, 3])
    if lab is not None:
        off = 16 if word is not None else 12
        pts.view(np.uint32)[:, :, off // 4] = lab
    return CloudBuffer(data, out_h, out_w, point_step, out_w * point_step, fields, dense)
