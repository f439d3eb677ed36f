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
"""
from __future__ import annotations

import math
import struct
from typing import NamedTuple

import cv2
import numpy as np

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
