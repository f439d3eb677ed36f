"""Message <-> array conversion: the only place where ROS message types meet arrays.

Reading never copies (``np.frombuffer`` over ``msg.data``); writing fills ``data`` with one copy
through ``array.array('B').frombytes`` (the fast path measured in docs/ros-conventions.md).
"""
from __future__ import annotations

import array
from typing import Any, Optional

import numpy as np
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2, PointField, RegionOfInterest
from std_msgs.msg import Header

from dpt_ros.pipeline import ImageView

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
    out.frombytes(memoryview(buf).cast("B") if isinstance(buf, np.ndarray) else buf)
    return out


def image_view(msg: Image) -> ImageView:
    """A zero-copy view of an Image's payload and layout for :func:`dpt_ros.pipeline.decode`."""
    return ImageView(data=np.frombuffer(msg.data, np.uint8), encoding=msg.encoding, height=msg.height,
                     width=msg.width, step=msg.step, is_bigendian=bool(msg.is_bigendian))


def compressed_payload(msg: CompressedImage) -> tuple[np.ndarray, str]:
    """The encoded bytes (no copy) and format string of a CompressedImage."""
    return np.frombuffer(msg.data, np.uint8), msg.format


def image_msg(header: Header, values: np.ndarray, encoding: Optional[str] = None) -> Image:
    """Wrap an (H, W) or (H, W, C) host array as an Image carrying ``header`` unchanged.

    :param encoding: defaults from dtype and channels (float32 -> 32FC1, uint8 x3 -> rgb8, ...).
    :raises ValueError: the array has no matching encoding.
    """
    values = np.ascontiguousarray(values)
    channels = 1 if values.ndim == 2 else values.shape[2]
    if encoding is None:
        encoding = _ENCODING_OF.get((values.dtype, channels))
        if encoding is None:
            raise ValueError(f"no image encoding for dtype {values.dtype} with {channels} channels")
    msg = Image(header=header, height=values.shape[0], width=values.shape[1], encoding=encoding,
                is_bigendian=int(values.dtype.byteorder == ">"))
    msg.step = values.shape[1] * channels * values.dtype.itemsize
    msg.data = _bytes_array(values)
    return msg


def compressed_msg(header: Header, data: bytes, fmt: str) -> CompressedImage:
    """Wrap already-encoded image bytes (e.g. from cv2.imencode) as a CompressedImage."""
    return CompressedImage(header=header, format=fmt, data=_bytes_array(data))


def camera_info_fields(msg: CameraInfo) -> dict:
    """Keyword arguments of ``pipeline.Intrinsics.from_camera_info`` from a CameraInfo
    (``roi`` as (x_offset, y_offset, height, width))."""
    roi = msg.roi
    return dict(
        k=tuple(float(v) for v in msg.k), p=tuple(float(v) for v in msg.p),
        width=int(msg.width), height=int(msg.height),
        binning_x=int(msg.binning_x), binning_y=int(msg.binning_y),
        roi=(int(roi.x_offset), int(roi.y_offset), int(roi.height), int(roi.width)),
    )


def camera_info_msg(header: Header, width: int, height: int, k, p, source: Optional[CameraInfo] = None) -> CameraInfo:
    """A CameraInfo for an output image of ``width`` x ``height`` with intrinsics ``k`` / ``p``.

    Distortion, rectification and model are copied from ``source``; binning and ROI are reset
    because ``k`` / ``p`` already describe the output pixels.
    """
    msg = CameraInfo(header=header, width=int(width), height=int(height))
    msg.k = [float(v) for v in np.asarray(k, np.float64).ravel()]
    msg.p = [float(v) for v in np.asarray(p, np.float64).ravel()]
    if source is not None:
        msg.distortion_model = source.distortion_model
        msg.d = source.d
        msg.r = source.r
    else:
        msg.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    msg.roi = RegionOfInterest()
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
