"""Compressed copies of the output images, in the formats of ROS image_transport's plugins.

A C++ image node gets ``<topic>/compressed`` and ``<topic>/compressedDepth`` from image_transport; a
Python node has no image_transport, so dpt_ros writes the same bytes itself. Anything that reads those
plugins' messages (RViz's and rqt_image_view's "compressed" transports, ``republish``, bags) reads these.

``compress_image``   the ``compressed`` plugin: JPEG or PNG of an 8-bit colour or 8/16-bit mono image;
                     colour goes into the file in OpenCV's BGR order and the ``format`` says so
                     (``"rgb8; jpeg compressed bgr8"``), mono as it is (``"mono8; png compressed "``).
``compress_depth``   the ``compressedDepth`` plugin (PNG): a 12-byte header (int32 0, float32
                     quant_a, float32 quant_b; little-endian) then a 16-bit PNG. 32FC1 metres are
                     quantised in inverse depth, ``q = round(quant_a / d + quant_b)``, read back as
                     ``d = quant_a / (q - quant_b)``; ``quant_a = z0 * (z0 + 1)``, ``quant_b = 1 - quant_a /
                     depth_max`` with ``z0`` the quantization parameter. q = 0 means no data (NaN when read):
                     NaN, +-Inf, depths at or beyond ``depth_max`` and depths nearer than the nearest
                     representable one (q > 65535, :func:`depth_quantization` gives it). 16UC1 millimetres
                     are written as they are (0 beyond ``depth_max``), with zeros in the header.
``decompress_depth`` reads such a message back as the plugin's subscriber does: the encoding is the part of
                     ``format`` before ';'; after it, ``compressedDepth png`` (or a bare ``compressedDepth``, or
                     no ';' at all: older publishers) is PNG, ``compressedDepth rvl`` is RVL, which is not read
                     here (said so). A 32-bit encoding reads ``d = quant_a / (q - quant_b)``, NaN where q = 0.
"""
from __future__ import annotations

import math
import struct
from typing import NamedTuple

import cv2
import numpy as np

from dpt_ros.pipeline.encodings import MAX_COMPRESSED_PIXELS, MAX_SIDE, EncodingError, compressed_size

CODECS = ("jpeg", "png")
_COLOR = {"rgb8": 3}
_MONO = {"mono8": np.uint8, "mono16": np.uint16}
_INV_DEPTH = 0  # image_transport's compressionFormat INV_DEPTH, the header's first field


class DepthQuantization(NamedTuple):
    """Parameters of compressedDepth's inverse-depth code (float32, as the header stores them)."""

    quant_a: float
    quant_b: float
    nearest: float   # a depth (m) needs to be farther than this to have a code (q = 65535 just beyond it)
    depth_max: float  # depths at or beyond this have none


def depth_quantization(depth_max: float, quantization: float) -> DepthQuantization:
    """compressedDepth's code for 32FC1 depth with image_transport's ``depth_max`` (metres) and
    ``depth_quantization`` parameters. The step between codes at depth d is about d**2 / quant_a metres
    (0.1 mm at 1 m, 1 cm at 10 m with the defaults 10 and 100)."""
    if not (math.isfinite(depth_max) and depth_max > 0):
        raise ValueError(f"compressedDepth needs a finite depth_max > 0 (metres); got {depth_max}")
    if not (math.isfinite(quantization) and quantization > 0):
        raise ValueError(f"compressedDepth needs a finite depth_quantization > 0; got {quantization}")
    with np.errstate(over="ignore"):
        z0 = np.float32(quantization)
        a = np.float32(z0 * (z0 + np.float32(1.0)))
        b = np.float32(np.float32(1.0) - a / np.float32(depth_max))
    if not (np.isfinite(a) and np.isfinite(b)):
        raise ValueError(f"compressedDepth's code overflows float32 with depth_quantization {quantization} and "
                         f"depth_max {depth_max}; use a smaller depth_quantization")
    return DepthQuantization(float(a), float(b), float(a) / (65535.5 - float(b)), float(depth_max))


def compress_image(values: np.ndarray, encoding: str, codec: str, jpeg_quality: int = 95,
                   png_level: int = 1) -> tuple[str, bytes]:
    """``(format, data)`` of a ``sensor_msgs/CompressedImage`` holding ``values`` (H, W[, 3]) as
    image_transport's ``compressed`` plugin writes it: rgb8 (JPEG or PNG), mono8 (JPEG or PNG) or
    mono16 (PNG)."""
    if codec not in CODECS:
        raise ValueError(f"unknown codec {codec!r}; supported: {', '.join(CODECS)}")
    values = np.asarray(values)
    if encoding in _COLOR:
        if values.ndim != 3 or values.shape[2] != 3 or values.dtype != np.uint8:
            raise ValueError(f"{encoding} needs an (H, W, 3) uint8 array; got {values.shape} {values.dtype}")
        pixels, target = cv2.cvtColor(values, cv2.COLOR_RGB2BGR), "bgr8"
    elif encoding in _MONO:
        if values.ndim != 2 or values.dtype != _MONO[encoding]:
            raise ValueError(f"{encoding} needs an (H, W) {np.dtype(_MONO[encoding]).name} array; "
                             f"got {values.shape} {values.dtype}")
        if codec == "jpeg" and encoding != "mono8":
            raise ValueError(f"JPEG holds 8-bit samples; {encoding} needs codec 'png'")
        pixels, target = values, ""
    else:
        raise ValueError(f"compressed images of encoding {encoding!r} are not supported; supported: "
                         f"{', '.join((*_COLOR, *_MONO))}")
    if codec == "jpeg":
        if not 1 <= int(jpeg_quality) <= 100:
            raise ValueError(f"jpeg_quality must be 1..100; got {jpeg_quality}")
        ok, data = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)])
    else:   # label images: long runs of one value, each row much like the one above
        tuning = ("all", cv2.IMWRITE_PNG_STRATEGY_DEFAULT) if encoding in _COLOR else ("up", cv2.IMWRITE_PNG_STRATEGY_RLE)
        ok, data = cv2.imencode(".png", pixels, _png_options(png_level, *tuning))
    if not ok:
        raise RuntimeError(f"OpenCV could not encode a {values.shape} {encoding} image as {codec}")
    return f"{encoding}; {codec} compressed {target}", data.tobytes()


def compress_depth(depth: np.ndarray, encoding: str, depth_max: float = 10.0, quantization: float = 100.0,
                   png_level: int = 1) -> tuple[str, bytes]:
    """``(format, data)`` of a ``sensor_msgs/CompressedImage`` holding a depth image as image_transport's
    ``compressedDepth`` plugin (PNG) writes it: 32FC1 metres or 16UC1 millimetres (see the module)."""
    depth = np.asarray(depth)
    if encoding == "32FC1":
        if depth.ndim != 2 or depth.dtype != np.float32:
            raise ValueError(f"32FC1 depth needs an (H, W) float32 array; got {depth.shape} {depth.dtype}")
        code = depth_quantization(depth_max, quantization)
        header = struct.pack("<iff", _INV_DEPTH, code.quant_a, code.quant_b)
        pixels = quantize_inverse_depth(depth, code)
    elif encoding == "16UC1":
        if depth.ndim != 2 or depth.dtype != np.uint16:
            raise ValueError(f"16UC1 depth needs an (H, W) uint16 array; got {depth.shape} {depth.dtype}")
        if not (math.isfinite(depth_max) and depth_max > 0):
            raise ValueError(f"compressedDepth needs a finite depth_max > 0 (metres); got {depth_max}")
        header = struct.pack("<iff", _INV_DEPTH, 0.0, 0.0)
        limit = min(int(depth_max * 1000.0), 65535)
        pixels = depth if limit == 65535 or not (depth > limit).any() else np.where(depth > limit, 0, depth)
        pixels = pixels.astype(np.uint16, copy=False)
    else:
        raise ValueError(f"compressedDepth holds 32FC1 or 16UC1 depth; got encoding {encoding!r}")
    # smooth 16-bit depth: Paeth prediction and run-length deflate, half the time of libpng's adaptive filter
    # choice for the same size (bench_pipeline)
    ok, data = cv2.imencode(".png", pixels, _png_options(png_level, "paeth", cv2.IMWRITE_PNG_STRATEGY_RLE))
    if not ok:
        raise RuntimeError(f"OpenCV could not encode a {depth.shape} 16-bit PNG")
    return f"{encoding}; compressedDepth png", header + data.tobytes()


_HEADER = struct.Struct("<iff")   # compressedDepth's ConfigHeader: int32 format, float32 depthParam[2]
_DEPTH_ENCODINGS = ("32FC1", "16UC1", "mono16")


def decompress_depth(data, format: str) -> tuple[str, np.ndarray]:  # noqa: A002 - ROS field name
    """``(encoding, depth)`` of a ``sensor_msgs/CompressedImage`` of image_transport's ``compressedDepth`` plugin
    (PNG; see the module): 32FC1 float32 metres (NaN = no data), 16UC1 / mono16 uint16 millimetres as sent
    (0 = no data). ``data``: the message's bytes (bytes or a uint8 array).

    :raises EncodingError: (a ValueError) not a compressedDepth format, RVL (not supported), an encoding that is
        not depth, data too short for the header, a non-finite 32FC1 code, a PNG that is not 16-bit single-channel,
        larger than the compressed-image limits, truncated or corrupt."""
    fmt = format or ""
    encoding, sep, tail = fmt.partition(";")
    encoding = encoding.strip()
    if sep and "compressedDepth" not in tail:
        raise EncodingError(f"format {fmt!r} is not image_transport's compressedDepth ('<encoding>; compressedDepth "
                            f"png'): a compressed colour or mono image, not depth; give the depth camera's "
                            f"compressedDepth topic")
    if sep and "compressedDepth rvl" in tail:
        raise EncodingError(f"format {fmt!r}: RVL-coded compressedDepth is not supported, only PNG; set the depth "
                            f"camera's compressedDepth publisher to png (its '...compressedDepth.format' parameter: "
                            f"ros2 param list <camera node> | grep compressedDepth), or use its raw depth topic")
    if sep and "compressedDepth png" not in tail and "compressedDepth " in tail:
        raise EncodingError(f"format {fmt!r}: unknown compressedDepth codec; supported: '<encoding>; compressedDepth "
                            f"png'")
    if encoding not in _DEPTH_ENCODINGS:
        raise EncodingError(f"compressedDepth of encoding {encoding!r} (format {fmt!r}) is not depth: supported "
                            f"32FC1 (metres) and 16UC1 / mono16 (millimetres)")
    buf = data.reshape(-1) if isinstance(data, np.ndarray) else np.frombuffer(bytes(data), np.uint8)
    if buf.size <= _HEADER.size:
        raise EncodingError(f"{encoding} compressedDepth of {buf.size} bytes: shorter than its {_HEADER.size}-byte "
                            f"header and an image; an empty or cut message from the depth camera's publisher")
    _, quant_a, quant_b = _HEADER.unpack(buf[:_HEADER.size].tobytes())
    png = buf[_HEADER.size:]
    if png[:8].tobytes() != b"\x89PNG\r\n\x1a\n":
        raise EncodingError(f"{encoding} compressedDepth: the data after its {_HEADER.size}-byte header is not a PNG; "
                            f"corrupt data, or not image_transport's compressedDepth")
    size = compressed_size(png)
    if size is None or max(size) > MAX_SIDE or size[0] * size[1] > MAX_COMPRESSED_PIXELS:
        raise EncodingError(f"{encoding} compressedDepth PNG of {png.size} bytes " +
                            ("declares no image size: corrupt or truncated data" if size is None else
                             f"of {size[0]}x{size[1]} exceeds the {MAX_SIDE}-pixel side or "
                             f"{MAX_COMPRESSED_PIXELS // 10**6} MP limit; corrupt or hostile data"))
    try:
        q = cv2.imdecode(png, cv2.IMREAD_UNCHANGED)
    except cv2.error as e:
        raise EncodingError(f"{encoding} compressedDepth PNG of {png.size} bytes could not be decoded: "
                            f"{str(e).split('error: ', 1)[-1].strip()}") from None
    if q is None:
        raise EncodingError(f"{encoding} compressedDepth PNG of {png.size} bytes could not be decoded: corrupt or "
                            f"truncated data (cut by its publisher, a relay or the recording)")
    if q.dtype != np.uint16 or q.ndim != 2:
        raise EncodingError(f"{encoding} compressedDepth PNG holds {q.dtype} samples in "
                            f"{1 if q.ndim == 2 else q.shape[2]} channel(s), not compressedDepth's 16-bit single "
                            f"channel")
    if encoding != "32FC1":
        return encoding, q
    a, b = np.float32(quant_a), np.float32(quant_b)
    if not (np.isfinite(a) and np.isfinite(b) and a > 0):
        raise EncodingError(f"32FC1 compressedDepth header's quantization parameters ({quant_a:g}, {quant_b:g}) are "
                            f"not a code (finite, the first above 0): corrupt data")
    with np.errstate(divide="ignore", invalid="ignore"):
        depth = a / (q.astype(np.float32) - b)
    depth[q == 0] = np.float32(np.nan)
    return encoding, depth


def quantize_inverse_depth(depth: np.ndarray, code: DepthQuantization) -> np.ndarray:
    """compressedDepth's 16-bit codes of 32FC1 metres (0 where there is no code; see the module)."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        q = np.float32(code.quant_a) / depth
        q += np.float32(code.quant_b)
        q += np.float32(0.5)
        # NaN fails every comparison; +-Inf, 0 and negative depths give q below 1
        # (depth > 0: -Inf, REP 117's "too close", has q = quant_b + 0.5, a code whenever depth_max >= 2 quant_a,
        # which read back as depth_max, the farthest depth there is)
        valid = (depth > 0) & (depth < np.float32(code.depth_max)) & (q >= 1.0) & (q < 65536.0)
    return np.where(valid, q, 0).astype(np.uint16)


_PNG_FILTERS = {"up": "IMWRITE_PNG_FILTER_UP", "paeth": "IMWRITE_PNG_FILTER_PAETH", "all": "IMWRITE_PNG_ALL_FILTERS"}


def _png_options(level: int, png_filter: str, strategy: int) -> list[int]:
    """cv2.imencode options: zlib ``level``, libpng's row filter (``png_filter``: up, paeth or all) and deflate's
    ``strategy`` (any PNG reader reads every combination).

    OpenCV chooses the row filter only from 4.12 on (``cv2.IMWRITE_PNG_FILTER``). With an older one (pip picks
    4.11 beside NumPy 1.x, which Humble's and Jazzy's ROS Python packages need) libpng picks one per row
    itself: the same images, more slowly (640x480 on this project's CPU: 32FC1 depth 7.6 ms instead of 5.2,
    labels 1.6 ms instead of 0.4).
    """
    if not 0 <= int(level) <= 9:
        raise ValueError(f"png_level must be 0..9; got {level}")
    options = [cv2.IMWRITE_PNG_COMPRESSION, int(level), cv2.IMWRITE_PNG_STRATEGY, strategy]
    if hasattr(cv2, "IMWRITE_PNG_FILTER"):
        options += [cv2.IMWRITE_PNG_FILTER, getattr(cv2, _PNG_FILTERS[png_filter])]
    return options
