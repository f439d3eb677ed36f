"""Compressed outputs in image_transport's formats (dpt_ros.pipeline.compression).

The readers (dpt_ros.ros.testing.read_compressed / read_compressed_depth) follow image_transport_plugins'
decoders (compressed: the part of ``format`` before ';' is the encoding and the file holds BGR for colour;
compressedDepth: a 12-byte ConfigHeader {int32 format, float32 depthParam[2]} then a PNG, ``d = depthParam[0]
/ (q - depthParam[1])``, q = 0 -> NaN); they share no code with the writer.
"""
from __future__ import annotations

import struct

import cv2
import numpy as np
import pytest

from dpt_ros.pipeline import compression
from dpt_ros.ros.testing import pattern_image, read_compressed, read_compressed_depth


def test_rgb_jpeg_is_bgr_inside_and_says_so():
    rgb = pattern_image(96, 64, seed=3)
    fmt, data = compression.compress_image(rgb, "rgb8", "jpeg", jpeg_quality=95)
    assert fmt == "rgb8; jpeg compressed bgr8"
    assert data[:2] == b"\xff\xd8"
    encoding, back = read_compressed(fmt, data)
    assert encoding == "rgb8" and back.shape == rgb.shape
    err = np.abs(back.astype(int) - rgb.astype(int)).mean()
    assert err < 8.0 < np.abs(back[..., ::-1].astype(int) - rgb.astype(int)).mean() / 4   # noise of +-15 in it
    # the channel order: a red patch stays red after the round trip
    red = np.zeros((32, 32, 3), np.uint8)
    red[..., 0] = 255
    _, back = read_compressed(*compression.compress_image(red, "rgb8", "jpeg"))
    assert back[..., 0].min() > 240 and back[..., 2].max() < 15


def test_jpeg_quality_trades_size_for_error():
    rgb = pattern_image(160, 120, seed=1)
    sizes, errors = [], []
    for quality in (30, 75, 98):
        fmt, data = compression.compress_image(rgb, "rgb8", "jpeg", jpeg_quality=quality)
        sizes.append(len(data))
        errors.append(np.abs(read_compressed(fmt, data)[1].astype(int) - rgb.astype(int)).mean())
    assert sizes[0] < sizes[1] < sizes[2]
    assert errors[0] > errors[1] > errors[2]


@pytest.mark.parametrize("encoding,dtype,top", [("mono8", np.uint8, 150), ("mono16", np.uint16, 65535)])
@pytest.mark.parametrize("level", [0, 3, 9])
def test_mono_png_is_lossless(encoding, dtype, top, level):
    rng = np.random.default_rng(level)
    labels = rng.integers(0, top + 1, (37, 53)).astype(dtype)
    fmt, data = compression.compress_image(labels, encoding, "png", png_level=level)
    assert fmt == f"{encoding}; png compressed "
    back_encoding, back = read_compressed(fmt, data)
    assert back_encoding == encoding and back.dtype == dtype
    np.testing.assert_array_equal(back, labels)


def test_png_level_0_stores_the_pixels_and_9_compresses_them():
    labels = np.repeat(np.repeat(pattern_image(40, 30)[..., 0] // 40, 8, 0), 8, 1)
    sizes = [len(compression.compress_image(labels, "mono8", "png", png_level=lv)[1]) for lv in (0, 9)]
    assert sizes[1] < sizes[0] / 4


def test_quantization_parameters_are_image_transports():
    code = compression.depth_quantization(10.0, 100.0)
    assert code.quant_a == 10100.0 and code.quant_b == 1.0 - 1010.0
    assert code.nearest == pytest.approx(10100.0 / (65535.5 + 1009.0))
    fmt, data = compression.compress_depth(np.array([[1.0, 2.0]], np.float32), "32FC1")
    assert fmt == "32FC1; compressedDepth png"
    assert struct.unpack("<iff", data[:12]) == (0, 10100.0, -1009.0)
    q = cv2.imdecode(np.frombuffer(data[12:], np.uint8), cv2.IMREAD_UNCHANGED)
    # 10100 / 1 - 1009 and 10100 / 2 - 1009
    np.testing.assert_array_equal(q, [[9091, 4041]])


@pytest.mark.parametrize("depth_max,quantization", [(10.0, 100.0), (30.0, 100.0), (5.0, 250.0)])
def test_32fc1_depth_round_trip_within_half_a_code(depth_max, quantization):
    rng = np.random.default_rng(int(depth_max))
    code = compression.depth_quantization(depth_max, quantization)
    depth = rng.uniform(code.nearest * 1.001, depth_max * 0.999, (48, 64)).astype(np.float32)
    depth[0, :3] = [code.nearest * 1.0001, 1.0, depth_max * 0.9999]
    fmt, data = compression.compress_depth(depth, "32FC1", depth_max, quantization, png_level=1)
    encoding, header, back = read_compressed_depth(fmt, data)
    assert encoding == "32FC1" and header[0] == 0 and back.shape == depth.shape
    assert np.isfinite(back).all()
    # one code step at depth d is d**2 / quant_a (derivative of quant_a / d); rounding keeps half of it
    half_step = 0.5 * depth.astype(np.float64) ** 2 / code.quant_a
    err = np.abs(back.astype(np.float64) - depth)
    assert (err <= half_step * 1.01 + 1e-6 * depth).all(), float((err / half_step).max())
    # rounding, not truncation: on average the error is a quarter of a step, not half
    assert (err / half_step).mean() < 0.6


@pytest.mark.parametrize("depth_max,quantization", [(10.0, 100.0), (100.0, 5.0), (4.0, 1.0), (1e6, 100.0)])
def test_32fc1_depth_without_a_code_reads_back_as_nan(depth_max, quantization):
    """Also where depth_max >= 2 quant_a (a coarse quantization, or a far depth_max): there -Inf (below depth.min)
    once got code 1, which reads back as depth_max, the farthest depth there is, instead of no data."""
    code = compression.depth_quantization(depth_max, quantization)
    depth = np.array([[np.nan, np.inf, -np.inf, 0.0, -1.0, depth_max, depth_max * 2.5, code.nearest * 0.99,
                       depth_max * 0.3]], np.float32)
    _, _, back = read_compressed_depth(*compression.compress_depth(depth, "32FC1", depth_max, quantization))
    assert np.isnan(back[0, :8]).all(), back[0, :8]
    step = (depth_max * 0.3) ** 2 / code.quant_a
    assert back[0, 8] == pytest.approx(depth_max * 0.3, abs=0.5 * step * 1.01 + 1e-6 * depth_max)


def test_16uc1_depth_is_exact_with_zero_beyond_depth_max():
    rng = np.random.default_rng(5)
    mm = rng.integers(0, 65536, (30, 40)).astype(np.uint16)
    mm[0, :4] = [0, 4999, 5000, 5001]
    encoding, header, back = read_compressed_depth(*compression.compress_depth(mm, "16UC1", depth_max=5.0))
    assert (encoding, header) == ("16UC1", (0, 0.0, 0.0))
    np.testing.assert_array_equal(back, np.where(mm > 5000, 0, mm))
    assert mm[0, 3] == 5001   # the caller's image is left alone
    _, _, back = read_compressed_depth(*compression.compress_depth(mm, "16UC1", depth_max=100.0))
    np.testing.assert_array_equal(back, mm)
    top = np.array([[65534, 65535]], np.uint16)   # the largest millimetre value stays when depth_max allows it
    np.testing.assert_array_equal(read_compressed_depth(*compression.compress_depth(top, "16UC1", 65.535))[2], top)


@pytest.mark.parametrize("call,message", [
    (lambda: compression.compress_image(np.zeros((4, 4), np.uint8), "rgb8", "jpeg"), "(H, W, 3) uint8"),
    (lambda: compression.compress_image(np.zeros((4, 4), np.uint16), "mono16", "jpeg"), "needs codec 'png'"),
    (lambda: compression.compress_image(np.zeros((4, 4), np.uint8), "mono8", "webp"), "unknown codec 'webp'"),
    (lambda: compression.compress_image(np.zeros((4, 4), np.float32), "32FC1", "png"), "not supported"),
    (lambda: compression.compress_image(np.zeros((4, 4), np.uint8), "mono8", "jpeg", jpeg_quality=0), "1..100"),
    (lambda: compression.compress_image(np.zeros((4, 4), np.uint8), "mono8", "png", png_level=10), "0..9"),
    (lambda: compression.compress_depth(np.zeros((4, 4), np.float64), "32FC1"), "float32"),
    (lambda: compression.compress_depth(np.zeros((4, 4), np.uint16), "mono16"), "32FC1 or 16UC1"),
    (lambda: compression.compress_depth(np.zeros((4, 4), np.float32), "32FC1", depth_max=0.0), "depth_max > 0"),
    (lambda: compression.compress_depth(np.zeros((4, 4), np.float32), "32FC1", quantization=-1.0), "quantization > 0"),
    (lambda: compression.compress_depth(np.zeros((4, 4), np.float32), "32FC1", quantization=1e30), "overflows"),
])
def test_bad_arguments_name_what_is_wrong(call, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        call()


def _row_filters(png: bytes) -> set[int]:
    """The filter type bytes of a non-interlaced PNG's rows after the first (from its inflated IDAT)."""
    import zlib

    pos, idat, width, bytes_per_pixel = 8, b"", 0, 0
    while pos < len(png):
        length, kind = struct.unpack(">I4s", png[pos:pos + 8])
        body = png[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, _, depth, colour = struct.unpack(">IIBB", body[:10])
            bytes_per_pixel = depth // 8 * {0: 1, 2: 3}[colour]
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw, stride = zlib.decompress(idat), 1 + width * bytes_per_pixel
    return {raw[i] for i in range(stride, len(raw), stride)}


def test_png_row_filters_are_chosen_where_opencv_can_and_left_to_libpng_where_it_cannot(monkeypatch):
    """OpenCV >= 4.12 writes labels with the Up filter and depth with Paeth; an older OpenCV (4.11 is what pip
    installs beside NumPy 1.x, for Humble and Jazzy) has no such option: libpng's own choice, the same pixels."""
    labels = np.repeat(np.repeat(pattern_image(40, 30)[..., 0] // 40, 4, 0), 4, 1)
    mm = (np.add.outer(np.arange(60), np.arange(80)) * 37 + 500).astype(np.uint16)
    if hasattr(cv2, "IMWRITE_PNG_FILTER"):
        assert _row_filters(compression.compress_image(labels, "mono8", "png")[1]) == {2}   # Up
        assert _row_filters(compression.compress_depth(mm, "16UC1", 100.0)[1][12:]) == {4}   # Paeth
    monkeypatch.delattr(cv2, "IMWRITE_PNG_FILTER", raising=False)
    assert compression._png_options(1, "paeth", cv2.IMWRITE_PNG_STRATEGY_RLE) == [
        cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]
    np.testing.assert_array_equal(read_compressed(*compression.compress_image(labels, "mono8", "png"))[1], labels)
    rgb = pattern_image(64, 48)
    np.testing.assert_array_equal(read_compressed(*compression.compress_image(rgb, "rgb8", "png"))[1], rgb)
    np.testing.assert_array_equal(read_compressed_depth(*compression.compress_depth(mm, "16UC1", 100.0))[2], mm)


def _compressed_depth(encoding: str, codes: np.ndarray, quant_a: float = 0.0, quant_b: float = 0.0,
                      tail: str = "compressedDepth png") -> tuple[str, bytes]:
    """A compressedDepth message built here, not by the writer: the ConfigHeader (int32 INV_DEPTH = 0, float32
    depthParam[2], little endian) and cv2.imencode's 16-bit PNG of ``codes``."""
    ok, png = cv2.imencode(".png", codes.astype(np.uint16))
    assert ok
    return f"{encoding}; {tail}", struct.pack("<iff", 0, quant_a, quant_b) + png.tobytes()


def test_decompress_depth_reads_16uc1_millimetres_and_32fc1_inverse_depth_codes():
    mm = np.array([[0, 1, 1500], [65535, 800, 4321]], np.uint16)
    for encoding in ("16UC1", "mono16"):
        got_encoding, got = compression.decompress_depth(*reversed(_compressed_depth(encoding, mm)))
        assert got_encoding == encoding and got.dtype == np.uint16
        np.testing.assert_array_equal(got, mm)
    # 32FC1: image_transport's defaults (depth_quantization 100, depth_max 10): a = 100 * 101 = 10100,
    # b = 1 - 10100 / 10 = -1000; q 0 is no data, q 9100 is 10100 / 10100 = 1 m, q 4050 is 10100 / 5050 = 2 m
    codes = np.array([[0, 9100, 4050], [1, 65535, 10100]], np.uint16)
    fmt, data = _compressed_depth("32FC1", codes, 10100.0, -1000.0)
    encoding, depth = compression.decompress_depth(np.frombuffer(data, np.uint8), fmt)
    assert encoding == "32FC1" and depth.dtype == np.float32 and depth.shape == (2, 3)
    assert np.isnan(depth[0, 0])
    np.testing.assert_allclose(depth[0, 1:], [1.0, 2.0], rtol=1e-6)
    np.testing.assert_allclose(depth[1], [10100.0 / 1001.0, 10100.0 / 66535.0, 10100.0 / 11100.0], rtol=1e-6)
    # the writer's message reads back within the code's step (d**2 / a: 0.4 mm at 2 m)
    truth = np.linspace(0.5, 9.0, 48, dtype=np.float32).reshape(6, 8)
    back = compression.decompress_depth(*reversed(compression.compress_depth(truth, "32FC1")))[1]
    assert np.abs(back - truth).max() < 9.0 ** 2 / 10100.0
    # older publishers: a bare 'compressedDepth' after the ';' is PNG too
    assert compression.decompress_depth(_compressed_depth("16UC1", mm, tail="compressedDepth")[1],
                                        "16UC1; compressedDepth")[1][0, 2] == 1500


@pytest.mark.parametrize("case, words", [
    ("rvl", "RVL-coded compressedDepth is not supported, only PNG"),
    ("colour", "is not image_transport's compressedDepth"),
    ("encoding", "compressedDepth of encoding 'rgb8'"),
    ("short", "shorter than its 12-byte header"),
    ("not png", "is not a PNG"),
    ("truncated", "could not be decoded: corrupt or truncated"),
    ("8 bit", "not compressedDepth's 16-bit single channel"),
    ("header", "quantization parameters (nan, -1000) are not a code"),
])
def test_decompress_depth_refuses_with_what_was_wrong(case, words):
    fmt, data = _compressed_depth("32FC1", np.full((4, 4), 9100), 10100.0, -1000.0)
    if case == "rvl":
        fmt = "32FC1; compressedDepth rvl"
    elif case == "colour":
        fmt = "rgb8; jpeg compressed bgr8"
    elif case == "encoding":
        fmt = "rgb8; compressedDepth png"
    elif case == "short":
        data = data[:12]
    elif case == "not png":
        data = data[:12] + b"\xff\xd8\xff" + data[15:]
    elif case == "truncated":
        data = data[:len(data) // 2 + 20]
    elif case == "8 bit":
        data = data[:12] + cv2.imencode(".png", np.full((4, 4), 7, np.uint8))[1].tobytes()
    elif case == "header":
        data = struct.pack("<iff", 0, float("nan"), -1000.0) + data[12:]
    with pytest.raises(ValueError, match=None) as e:
        compression.decompress_depth(data, fmt)
    assert words in str(e.value)
