"""Message <-> array conversion: the only place where ROS message types meet arrays.

Reading never copies (``np.frombuffer`` over ``msg.data``). The node's large outputs (images and
clouds) are written straight in ROS 2's wire format (:func:`image_cdr`, :func:`cloud_cdr`: the
payload is copied once, next to a few dozen header bytes) and published as serialized messages,
which skips rclpy's conversion of the message to C (build + publish of a 1.2 MB message: 0.84-0.91x
the time of a message object; ``python -m dpt_ros.tools.bench_publish``). Message objects
(:func:`image_msg`) fill ``data`` with one copy through ``array.array('B').frombytes`` (the fast
path measured in ../shared/docs/ros-conventions.md).
"""
from __future__ import annotations

import array
import functools
import struct
import sys
from typing import Any, Optional

import numpy as np
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2, PointField
from std_msgs.msg import Header

from dpt_ros.pipeline import ImageView, decompress_depth, metres_from_millimetres

_FIELD_DATATYPES = {
    "int8": PointField.INT8, "uint8": PointField.UINT8, "int16": PointField.INT16,
    "uint16": PointField.UINT16, "int32": PointField.INT32, "uint32": PointField.UINT32,
    "float32": PointField.FLOAT32, "float64": PointField.FLOAT64,
}
_ENCODING_OF = {  # (dtype, channels) -> encoding of an output array
    (np.dtype(np.float32), 1): "32FC1",
    (np.dtype(np.uint8), 1): "mono8",
    (np.dtype(np.uint8), 3): "rgb8",
    (np.dtype(np.uint16), 1): "mono16",
    (np.dtype(np.uint8), 4): "rgba8",
}


def _bytes_array(buf: Any) -> array.array:
    """One copy of ``buf`` (bytes, or a C-contiguous ndarray) into the array rclpy stores for uint8[]."""
    out = array.array("B")
    out.frombytes(_payload(buf))
    return out


def stamp_ns(header: Header) -> int:
    """A header's stamp in integer nanoseconds (exact: stamps are matched and compared by equality)."""
    return header.stamp.sec * 1_000_000_000 + header.stamp.nanosec


def image_view(msg: Image) -> ImageView:
    """A zero-copy view of an Image's payload and layout for :func:`dpt_ros.pipeline.decode`."""
    return ImageView(data=np.frombuffer(msg.data, np.uint8), encoding=msg.encoding, height=msg.height,
                     width=msg.width, step=msg.step, is_bigendian=bool(msg.is_bigendian))


def depth_metres(msg: Image) -> np.ndarray:
    """A depth Image in metres, float32 (NaN = no measurement): 32FC1 as it is, 16UC1 / mono16 millimetres
    with 0 as no measurement (the raw-driver convention).

    :raises ValueError: another encoding, an empty image, or a payload that does not fit the layout (the message
        says which, for the log line of the frame it cannot align)."""
    if msg.encoding in ("32FC1", "16UC1", "mono16"):
        # checked here: an empty image (a depth driver with no frame yet) divided by zero further on, and a layout
        # that lies failed with NumPy's reshape error, which names neither the message nor the field
        row = msg.width * (4 if msg.encoding == "32FC1" else 2)
        if msg.width <= 0 or msg.height <= 0:
            raise ValueError(f"reference depth is an empty {msg.encoding} image ({msg.width}x{msg.height}): no pixels "
                             f"to fit to; check the depth driver publishing it")
        if msg.step < row or len(msg.data) != msg.step * msg.height:
            raise ValueError(f"reference depth {msg.encoding} image {msg.width}x{msg.height} has step={msg.step} and "
                             f"len(data)={len(msg.data)}, which do not fit (a row is {row} B; len(data) must be "
                             f"step*height); a corrupt message from the depth driver")
    if msg.encoding == "32FC1":
        return image_array(msg).astype(np.float32)
    if msg.encoding in ("16UC1", "mono16"):
        return metres_from_millimetres(image_array(msg))   # as the node's own 16UC1 depth reads back
    raise ValueError(f"reference depth must be 32FC1 (metres) or 16UC1 / mono16 (millimetres); got {msg.encoding!r}: "
                     f"give the depth camera's depth image (its depth registered to the colour camera, e.g. "
                     f"/camera/aligned_depth_to_color/image_raw), not a colourised or 8-bit view of it")


def reference_metres(msg) -> tuple[str, np.ndarray]:
    """(encoding, float32 metres with NaN = no measurement) of a depth.align reference: a depth Image
    (:func:`depth_metres`) or a CompressedImage of image_transport's compressedDepth plugin (PNG; 16UC1 / mono16
    millimetres become metres as a raw one's do).

    :raises ValueError: what :func:`depth_metres` or :func:`dpt_ros.pipeline.decompress_depth` refuses."""
    if isinstance(msg, CompressedImage):
        encoding, depth = decompress_depth(np.frombuffer(msg.data, np.uint8), msg.format)
        return encoding, (depth if encoding == "32FC1" else metres_from_millimetres(depth))
    return msg.encoding, depth_metres(msg)


def compressed_payload(msg: CompressedImage) -> tuple[np.ndarray, str]:
    """The encoded bytes (no copy) and format string of a CompressedImage."""
    return np.frombuffer(msg.data, np.uint8), msg.format


def _image_layout(values: np.ndarray, encoding: Optional[str]) -> tuple[np.ndarray, str, int, int]:
    """(C-contiguous values, encoding, step, is_bigendian) of an (H, W) or (H, W, C) host array."""
    values = np.ascontiguousarray(values)
    channels = 1 if values.ndim == 2 else values.shape[2]
    if encoding is None:
        encoding = _ENCODING_OF.get((values.dtype, channels))
        if encoding is None:
            raise ValueError(f"no image encoding for dtype {values.dtype} with {channels} channels")
    return values, encoding, values.shape[1] * channels * values.dtype.itemsize, int(values.dtype.byteorder == ">")


def image_msg(header: Header, values: np.ndarray, encoding: Optional[str] = None) -> Image:
    """Wrap an (H, W) or (H, W, C) host array as an Image carrying ``header`` unchanged.

    :param encoding: defaults from dtype and channels (float32 -> 32FC1, uint8 x3 -> rgb8, ...).
    :raises ValueError: the array has no matching encoding.
    """
    values, encoding, step, big = _image_layout(values, encoding)
    msg = Image(header=header, height=values.shape[0], width=values.shape[1], encoding=encoding,
                is_bigendian=big, step=step)
    msg.data = _bytes_array(values)
    return msg


class _CdrWriter:
    """The fields before a message's payload in ROS 2's wire format: an encapsulation header (plain
    CDR, little endian), then each primitive aligned to its own size counted from the end of that
    header, strings as a uint32 length (NUL included), the bytes and a NUL; sequences as a uint32
    count then the elements. Padding is written as zeros (rmw leaves it undefined)."""

    def __init__(self) -> None:
        self.buf = bytearray(b"\x00\x01\x00\x00")

    def _align(self, n: int) -> None:
        pad = -(len(self.buf) - 4) % n
        if pad:
            self.buf += bytes(pad)

    def u8(self, v: int) -> None:
        self.buf.append(int(v))

    def u32(self, v: int) -> None:
        self._align(4)
        self.buf += struct.pack("<I", int(v))

    def string(self, text: str) -> None:
        # up to a NUL, as rclpy's message objects go through a C string (a C++ subscriber would read the rest)
        raw = text.encode("utf-8").split(b"\0", 1)[0]
        self.u32(len(raw) + 1)
        self.buf += raw
        self.buf.append(0)

    def header(self, header: Header) -> None:
        self._align(4)
        self.buf += struct.pack("<iI", int(header.stamp.sec), int(header.stamp.nanosec))
        self.string(header.frame_id)


def _payload(buf: Any) -> Any:
    """A flat byte view of a C-contiguous ndarray, array.array or bytes (no copy)."""
    view = memoryview(buf)
    if view.nbytes == 0:
        return b""
    return view.cast("B") if view.format != "B" or view.ndim != 1 else view


def image_cdr(header: Header, values: np.ndarray, encoding: Optional[str] = None) -> bytes:
    """The serialized ``sensor_msgs/Image`` that :func:`image_msg` would build, for ``Publisher.publish``
    (one copy of ``values``). Only valid where :func:`cdr_matches_rmw` is true."""
    values, encoding, step, big = _image_layout(values, encoding)
    w = _CdrWriter()
    w.header(header)
    w.u32(values.shape[0])
    w.u32(values.shape[1])
    w.string(encoding)
    w.u8(big)
    w.u32(step)
    w.u32(values.nbytes)
    return b"".join((w.buf, _payload(values)))


def compressed_msg(header: Header, data: bytes, fmt: str) -> CompressedImage:
    """Wrap already-encoded image bytes (e.g. from cv2.imencode) as a CompressedImage."""
    return CompressedImage(header=header, format=fmt, data=_bytes_array(data))


def compressed_cdr(header: Header, data: bytes, fmt: str) -> bytes:
    """The serialized ``sensor_msgs/CompressedImage`` that :func:`compressed_msg` would build (one copy of
    ``data``). Only valid where :func:`cdr_matches_rmw` is true."""
    w = _CdrWriter()
    w.header(header)
    w.string(fmt)
    payload = _payload(data)
    w.u32(len(payload))
    return b"".join((w.buf, payload))


def compressed_output(header: Header, data: bytes, fmt: str) -> Any:
    """What the node publishes for a compressed image: :func:`compressed_cdr` bytes, or a :func:`compressed_msg`."""
    return (compressed_cdr if cdr_matches_rmw() else compressed_msg)(header, data, fmt)


_STAMP = struct.Struct("<iI")   # builtin_interfaces/Time, right after the 4-byte CDR encapsulation header


def restamped(cdr: bytes, header: Header) -> bytes:
    """A serialized message that starts with a ``std_msgs/Header`` (little-endian CDR, as rclpy serialises on
    every rmw where :func:`cdr_matches_rmw` is true) with ``header``'s stamp instead of its own; the frame_id stays
    the one serialised."""
    return b"".join((cdr[:4], _STAMP.pack(header.stamp.sec, header.stamp.nanosec), cdr[12:]))


def camera_info_fields(msg: CameraInfo) -> dict:
    """Keyword arguments of ``pipeline.Intrinsics.from_camera_info`` from a CameraInfo
    (``roi`` as (x_offset, y_offset, height, width); the lens distortion is used for unrectified images)."""
    roi = msg.roi
    return dict(
        k=tuple(float(v) for v in msg.k), p=tuple(float(v) for v in msg.p),
        width=int(msg.width), height=int(msg.height),
        binning_x=int(msg.binning_x), binning_y=int(msg.binning_y),
        roi=(int(roi.x_offset), int(roi.y_offset), int(roi.height), int(roi.width)),
        distortion_model=str(msg.distortion_model), d=tuple(float(v) for v in msg.d),
    )


def camera_info_msg(header: Header, width: int, height: int, k, p, source: Optional[CameraInfo] = None) -> CameraInfo:
    """A CameraInfo for an output image of ``width`` x ``height`` with intrinsics ``k`` / ``p``.

    Distortion, rectification and model are copied from ``source`` (a raw image's); without one (a rectified
    image) the lens is stated as none: plumb_bob with five zero coefficients and an identity R, which
    image_geometry reads as "no distortion" (an empty model would be "unknown", and its rectify calls
    throw). Binning and ROI stay at their defaults (none, full image) because ``k`` / ``p`` already describe
    the output pixels.
    """
    msg = CameraInfo(header=header, width=int(width), height=int(height))
    msg.k = [float(v) for v in np.asarray(k, np.float64).ravel()]
    msg.p = [float(v) for v in np.asarray(p, np.float64).ravel()]
    if source is not None:
        msg.distortion_model = source.distortion_model
        msg.d = source.d
        msg.r = source.r
    else:
        msg.distortion_model, msg.d = "plumb_bob", [0.0] * 5
        msg.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    return msg


def cloud_msg(header: Header, cloud: Any) -> PointCloud2:
    """Wrap a pipeline ``CloudBuffer`` (ready little-endian PointCloud2 payload) without copying it."""
    msg = PointCloud2(header=header, height=int(cloud.height), width=int(cloud.width),
                      is_bigendian=bool(cloud.is_bigendian), point_step=int(cloud.point_step),
                      row_step=int(cloud.row_step), is_dense=bool(cloud.is_dense))
    msg.fields = [PointField(name=f.name, offset=int(f.offset), datatype=int(f.datatype), count=int(f.count))
                  for f in cloud.fields]
    msg.data = cloud.data if isinstance(cloud.data, array.array) else _bytes_array(cloud.data)
    return msg


def cloud_cdr(header: Header, cloud: Any) -> bytes:
    """The serialized ``sensor_msgs/PointCloud2`` that :func:`cloud_msg` would build from a pipeline
    ``CloudBuffer`` (one copy of its payload). Only valid where :func:`cdr_matches_rmw` is true."""
    w = _CdrWriter()
    w.header(header)
    w.u32(cloud.height)
    w.u32(cloud.width)
    w.u32(len(cloud.fields))
    for f in cloud.fields:
        w.string(f.name)
        w.u32(f.offset)
        w.u8(f.datatype)
        w.u32(f.count)
    w.u8(bool(cloud.is_bigendian))
    w.u32(cloud.point_step)
    w.u32(cloud.row_step)
    data = _payload(cloud.data)
    w.u32(len(data))
    return b"".join((w.buf, data, b"\x01" if cloud.is_dense else b"\x00"))


@functools.lru_cache(maxsize=None)
def cdr_matches_rmw() -> bool:
    """Whether :func:`image_cdr` / :func:`compressed_cdr` / :func:`cloud_cdr` write what the active rmw reads (checked once per
    process by deserialising samples with every alignment of the variable-length fields through rclpy).
    Every ROS 2 rmw uses little-endian CDR; a big-endian host or another wire format gives False, and
    the node then publishes message objects instead."""
    from rclpy.serialization import deserialize_message  # noqa: PLC0415

    if sys.byteorder != "little":
        return False
    try:
        for n in range(4):
            header = Header(frame_id="f" * n)
            header.stamp.sec, header.stamp.nanosec = -2 + n, 999_999_999 - n
            values = np.arange(6 * (n + 1), dtype=np.uint8).reshape(2, -1)
            if deserialize_message(image_cdr(header, values, "mono8" + "x" * n), Image) != \
                    image_msg(header, values, "mono8" + "x" * n):
                return False
            if deserialize_message(compressed_cdr(header, bytes(range(n + 3)), "png" + "x" * n), CompressedImage) != \
                    compressed_msg(header, bytes(range(n + 3)), "png" + "x" * n):
                return False
            cloud = _SampleCloud(n)
            if deserialize_message(cloud_cdr(header, cloud), PointCloud2) != cloud_msg(header, cloud):
                return False
    except Exception:  # noqa: BLE001 -- unreadable bytes mean the formats differ
        return False
    return True


def image_output(header: Header, values: np.ndarray, encoding: Optional[str] = None) -> Any:
    """What the node publishes for an image: :func:`image_cdr` bytes, or an :func:`image_msg` where the
    rmw's wire format differs."""
    return (image_cdr if cdr_matches_rmw() else image_msg)(header, values, encoding)


def cloud_output(header: Header, cloud: Any) -> Any:
    """What the node publishes for a cloud: :func:`cloud_cdr` bytes, or a :func:`cloud_msg`."""
    return (cloud_cdr if cdr_matches_rmw() else cloud_msg)(header, cloud)


class _SampleCloud:
    """A small CloudBuffer-like payload whose field names and sizes vary with ``n`` (for the check)."""

    def __init__(self, n: int) -> None:
        self.fields = [PointField(name="x" * (k + 1), offset=4 * k, datatype=PointField.FLOAT32, count=1)
                       for k in range(n + 1)]
        self.height, self.width, self.point_step = 1, n + 1, 4 * (n + 1)
        self.row_step = self.point_step * self.width
        self.data = array.array("B", range(self.row_step))
        self.is_dense, self.is_bigendian = bool(n % 2), False


def cloud_array(msg: PointCloud2) -> np.ndarray:
    """A structured (height, width) view of a PointCloud2 (for tests and tools; no copy)."""
    names = {v: k for k, v in _FIELD_DATATYPES.items()}
    dtype = np.dtype({"names": [f.name for f in msg.fields],
                      "formats": [np.dtype(names[f.datatype]).newbyteorder(">" if msg.is_bigendian else "<")
                                  for f in msg.fields],
                      "offsets": [f.offset for f in msg.fields], "itemsize": msg.point_step})
    flat = np.frombuffer(msg.data, np.uint8).reshape(msg.height, msg.row_step)[:, : msg.width * msg.point_step]
    return np.ascontiguousarray(flat).view(dtype).reshape(msg.height, msg.width)


def image_array(msg: Image) -> np.ndarray:
    """An (H, W[, C]) view of a 32FC1 / mono8 / mono16 / rgb8 Image without row padding (tests, tools)."""
    kinds = {"32FC1": (np.float32, 1), "mono8": (np.uint8, 1), "mono16": (np.uint16, 1),
             "rgb8": (np.uint8, 3), "bgr8": (np.uint8, 3), "rgba8": (np.uint8, 4), "16UC1": (np.uint16, 1),
             "8UC1": (np.uint8, 1)}
    if msg.encoding not in kinds:
        raise ValueError(f"image_array does not read encoding {msg.encoding!r}; use the pipeline's decode")
    dtype, channels = kinds[msg.encoding]
    dt = np.dtype(dtype).newbyteorder(">" if msg.is_bigendian else "<")
    rows = np.frombuffer(msg.data, np.uint8).reshape(msg.height, msg.step)
    row_bytes = msg.width * channels * dt.itemsize
    values = np.ascontiguousarray(rows[:, :row_bytes]).view(dt)
    return values.reshape(msg.height, msg.width, channels) if channels > 1 else values.reshape(msg.height, msg.width)
