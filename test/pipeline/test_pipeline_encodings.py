"""Decoding of every supported encoding, with row padding and both byte orders."""

import array
import struct
import zlib

import cv2
import numpy as np
import pytest

from dpt_ros.pipeline import (
    SUPPORTED_ENCODINGS,
    EncodingError,
    ImageView,
    decode,
    decode_compressed,
    decode_compressed_frame,
    jpeg_truncated,
)
from dpt_ros.pipeline.encodings import four_byte_pixels

RNG = np.random.default_rng(6)
H, W = 14, 22  # even width for yuv422, not a multiple of anything nice
RGB = RNG.integers(0, 256, (H, W, 3), dtype=np.uint8)
GRAY = RGB[:, :, 1].copy()
PADDINGS = (0, 1, 3, 64)


def _to16(a: np.ndarray) -> np.ndarray:
    """16-bit values that round back to ``a`` (v / 257 rounded), with noise to test the rounding."""
    noise = RNG.integers(-128, 129, a.shape)
    return np.clip(a.astype(np.int64) * 257 + noise, 0, 65535).astype(np.uint16)


def _raw_and_expected(encoding: str):
    alpha = RNG.integers(0, 256, (H, W, 1), dtype=np.uint8)
    g3 = np.repeat(GRAY[:, :, None], 3, axis=2)
    table = {
        "rgb8": (RGB, RGB),
        "bgr8": (RGB[:, :, ::-1], RGB),
        "8UC3": (RGB[:, :, ::-1], RGB),
        "rgba8": (np.dstack([RGB, alpha]), RGB),
        "bgra8": (np.dstack([RGB[:, :, ::-1], alpha]), RGB),
        "8UC4": (np.dstack([RGB[:, :, ::-1], alpha]), RGB),
        "rgb16": (_to16(RGB), RGB),
        "bgr16": (_to16(RGB[:, :, ::-1]), RGB),
        "rgba16": (_to16(np.dstack([RGB, alpha])), RGB),
        "bgra16": (_to16(np.dstack([RGB[:, :, ::-1], alpha])), RGB),
        "mono8": (GRAY, g3),
        "8UC1": (GRAY, g3),
        "mono16": (_to16(GRAY), g3),
        "16UC1": (_to16(GRAY), g3),
        "32FC1": (GRAY.astype(np.float32) / 255.0, g3),
    }
    return table[encoding]


SIMPLE = ["rgb8", "bgr8", "8UC3", "rgba8", "bgra8", "8UC4", "rgb16", "bgr16", "rgba16", "bgra16",
          "mono8", "8UC1", "mono16", "16UC1", "32FC1"]


@pytest.mark.parametrize("bigendian", [False, True])
@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("encoding", SIMPLE)
def test_decode_simple_encodings(encoding, padding, bigendian):
    raw, expected = _raw_and_expected(encoding)
    view = ImageView.from_array(raw, encoding, padding=padding, bigendian=bigendian)
    assert view.step == W * raw.dtype.itemsize * (raw.shape[2] if raw.ndim == 3 else 1) + padding
    out = decode(view, np)
    assert out.shape == (H, W, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, expected)


def test_big_endian_bytes_are_really_swapped():
    v = np.array([[0x0102, 0xFF00]], dtype=np.uint16)
    le = ImageView.from_array(v, "mono16", bigendian=False)
    be = ImageView.from_array(v, "mono16", bigendian=True)
    assert bytes(le.data) == b"\x02\x01\x00\xff" and bytes(be.data) == b"\x01\x02\xff\x00"
    np.testing.assert_array_equal(decode(le)[..., 0], decode(be)[..., 0])
    np.testing.assert_array_equal(decode(be)[0, :, 0], [1, 254])  # round(258/257), round(65280/257)


def test_32fc1_clips_and_maps_nan_to_black():
    v = np.array([[np.nan, -1.0, 0.5, 2.0, np.inf]], dtype=np.float32)
    out = decode(ImageView.from_array(v, "32FC1"))[0, :, 0]
    np.testing.assert_array_equal(out, [0, 0, 128, 255, 255])


def _yuv_reference(y, u, v):
    """ITU-R BT.601 limited range, the definition OpenCV implements (tolerance 1 for its fixed point)."""
    y, u, v = (np.asarray(c, np.float64) for c in (y, u, v))
    c = 1.164 * (y - 16)
    r = c + 1.596 * (v - 128)
    g = c - 0.813 * (v - 128) - 0.391 * (u - 128)
    b = c + 2.018 * (u - 128)
    return np.clip(np.rint(np.stack([r, g, b], -1)), 0, 255)


@pytest.mark.parametrize("bigendian", [False, True])  # 8-bit data: the flag must not matter
@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("encoding", ["yuv422", "uyvy", "yuv422_yuy2", "yuyv"])
def test_decode_yuv422(encoding, padding, bigendian):
    y = RNG.integers(16, 236, (H, W)).astype(np.uint8)
    u = RNG.integers(16, 241, (H, W // 2)).astype(np.uint8)
    v = RNG.integers(16, 241, (H, W // 2)).astype(np.uint8)
    raw = np.empty((H, W // 2, 4), np.uint8)
    if encoding in ("yuv422", "uyvy"):  # U0 Y0 V0 Y1
        raw[..., 0], raw[..., 1], raw[..., 2], raw[..., 3] = u, y[:, 0::2], v, y[:, 1::2]
    else:  # Y0 U0 Y1 V0
        raw[..., 0], raw[..., 1], raw[..., 2], raw[..., 3] = y[:, 0::2], u, y[:, 1::2], v
    view = ImageView.from_array(raw.reshape(H, W * 2), encoding, padding=padding, bigendian=bigendian)
    assert (view.width, view.height) == (W, H)
    out = decode(view).astype(np.int64)
    expected = _yuv_reference(y, np.repeat(u, 2, axis=1), np.repeat(v, 2, axis=1))
    assert np.abs(out - expected).max() <= 1


def _mosaic(rgb: np.ndarray, pattern: str) -> np.ndarray:
    idx = {"r": 0, "g": 1, "b": 2}
    m = np.empty(rgb.shape[:2], rgb.dtype)
    for dy in range(2):
        for dx in range(2):
            m[dy::2, dx::2] = rgb[dy::2, dx::2, idx[pattern[2 * dy + dx]]]
    return m


@pytest.mark.parametrize("bigendian", [False, True])
@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("pattern", ["rggb", "bggr", "gbrg", "grbg"])
def test_decode_bayer8(pattern, padding, bigendian):
    # a constant colour must come back exactly everywhere; a smooth ramp closely in the interior
    const = np.broadcast_to(np.array([200, 90, 30], np.uint8), (H, W, 3))
    out = decode(ImageView.from_array(_mosaic(const, pattern), f"bayer_{pattern}8", padding=padding,
                                      bigendian=bigendian))
    np.testing.assert_array_equal(out, const)
    yy, xx = np.mgrid[0:H, 0:W]
    ramp = np.stack([40 + 4 * xx, 60 + 5 * yy, 200 - 3 * xx], -1).astype(np.uint8)
    out = decode(ImageView.from_array(_mosaic(ramp, pattern), f"bayer_{pattern}8", padding=padding))
    assert np.abs(out[2:-2, 2:-2].astype(int) - ramp[2:-2, 2:-2]).max() <= 3


@pytest.mark.parametrize("bigendian", [False, True])
@pytest.mark.parametrize("pattern", ["rggb", "bggr", "gbrg", "grbg"])
def test_decode_bayer16(pattern, bigendian):
    const = np.broadcast_to(np.array([200, 90, 30], np.uint16) * 257, (H, W, 3))
    view = ImageView.from_array(_mosaic(const, pattern), f"bayer_{pattern}16", padding=3, bigendian=bigendian)
    np.testing.assert_array_equal(decode(view), np.broadcast_to(np.array([200, 90, 30], np.uint8), (H, W, 3)))


def test_every_supported_encoding_is_covered_here():
    covered = set(SIMPLE) | {"yuv422", "uyvy", "yuv422_yuy2", "yuyv"}
    covered |= {f"bayer_{p}{b}" for p in ("rggb", "bggr", "gbrg", "grbg") for b in (8, 16)}
    assert covered == set(SUPPORTED_ENCODINGS)


def test_packed_encodings_decode_without_copy():
    buf = np.zeros((H, W * 3 + 5), np.uint8)  # padded rows in a writable message buffer
    buf[:, : W * 3] = RGB.reshape(H, -1)
    for enc in ("rgb8", "bgr8"):
        out = decode(ImageView(buf, enc, H, W, W * 3 + 5))
        assert np.shares_memory(out, buf)
    arr = array.array("B")
    arr.frombytes(buf.tobytes())  # what rclpy hands over as msg.data
    out = decode(ImageView(arr, "rgb8", H, W, W * 3 + 5))
    assert np.shares_memory(out, np.frombuffer(arr, np.uint8))
    np.testing.assert_array_equal(out, RGB)


@pytest.mark.parametrize("bigendian", [False, True])
@pytest.mark.parametrize(("encoding", "padding"), [("mono16", 1), ("rgba16", 0), ("bgr16", 6)])
def test_every_16_bit_value_rounds_to_v_over_257(encoding, bigendian, padding):
    """Each of the 65536 16-bit values becomes round(v * 255 / 65535) = (v + 128) // 257, in every channel's place,
    whatever the byte order and row padding (an odd one leaves the 16-bit rows unaligned)."""
    values = np.arange(65536, dtype=np.uint32).reshape(256, 256)
    want = ((values + 128) // 257).astype(np.uint8)
    channels = {"mono16": 1, "rgba16": 4, "bgr16": 3}[encoding]
    planes = np.stack([np.roll(values, 997 * c) for c in range(channels)], 2) if channels > 1 else values
    out = decode(ImageView.from_array(planes, encoding, padding=padding, bigendian=bigendian))
    for c in range(3):
        src = c if channels == 1 else (c if encoding == "rgba16" else 2 - c)
        np.testing.assert_array_equal(out[:, :, c], np.roll(want, 997 * src) if channels > 1 else want)


@pytest.mark.parametrize("padding", [0, 5])
def test_four_byte_pixels_of_rgba8_and_bgra8_frames(padding):
    """The 4-byte pixels under an rgba8/bgra8 frame's decode: a read-only view of the message's bytes as sent (alpha
    included), with which order they are in; none for other layouts, nor where a pixel's 4th byte would lie beyond
    the memory the 3-byte view is of (a view of exactly the bytes it reads)."""
    rgba = np.concatenate([RGB, RNG.integers(1, 256, (H, W, 1), dtype=np.uint8)], 2)
    for enc, stored in (("rgba8", rgba), ("bgra8", rgba[..., [2, 1, 0, 3]])):
        view = ImageView.from_array(stored, enc, padding=padding)
        pixels, bgr = four_byte_pixels(decode(view))
        assert bgr == (enc == "bgra8")
        assert np.shares_memory(pixels, np.frombuffer(view.data, np.uint8)) and not pixels.flags.writeable
        np.testing.assert_array_equal(pixels, stored)
    for other in (RGB, RGB[..., ::-1], decode(ImageView.from_array(GRAY, "mono8")), rgba[..., :2]):
        assert four_byte_pixels(other) is None
    buf = np.frombuffer(rgba.tobytes()[:-1], np.uint8)   # ends with the last pixel's 3rd byte
    tight = np.ndarray((H, W, 3), np.uint8, buffer=buf, strides=(W * 4, 4, 1))
    assert four_byte_pixels(tight) is None
    assert four_byte_pixels(tight[:-1])[0].shape == (H - 1, W, 4)   # rows whose 4th bytes are there
    tight_bgr = np.ndarray((H, W, 3), np.uint8, buffer=buf, offset=2, strides=(W * 4, 4, -1))   # its 1st R first
    assert four_byte_pixels(tight_bgr) is None


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(encoding="rgb9"), "unsupported image encoding 'rgb9'; supported: rgb8"),
        (dict(encoding="rgb8", step=W * 3 - 1), "smaller than one row"),
        (dict(encoding="rgb8", step=W * 3 + 1), r"len\(data\)"),
        (dict(encoding="rgb8", data=RGB.tobytes() + b"\0"), r"len\(data\)"),   # one byte too many
        (dict(encoding="rgb8", height=H + 1), r"len\(data\)"),
        (dict(encoding="rgb8", width=0), "invalid width"),
        (dict(encoding="rgb8", height=-3), "invalid height"),
        (dict(encoding="rgb8", width=100_000, height=100_000, step=300_000), "side limit"),
        (dict(encoding="mono8", width=1, height=40_000, step=1), "side limit"),     # each side on its own
        (dict(encoding="mono8", width=40_000, height=1, step=40_000), "side limit"),
        (dict(encoding="mono8", width=20_000, height=20_000, step=20_000), r"len\(data\)"),
        (dict(encoding="yuv422", width=W - 1, step=(W - 1) * 2), "even width"),
    ],
)
def test_invalid_views_are_rejected_before_allocation(kwargs, match):
    fields = dict(data=RGB.tobytes(), encoding="rgb8", height=H, width=W, step=W * 3)
    if kwargs.get("encoding") == "yuv422":
        fields["data"] = bytes(H * (W - 1) * 2)
    fields.update(kwargs)
    with pytest.raises(EncodingError, match=match):
        decode(ImageView(**fields))


def test_encoding_error_is_a_value_error_and_lists_supported():
    with pytest.raises(ValueError) as info:
        decode(ImageView(b"\0" * 12, "yuv420", 2, 2, 6))
    for name in ("yuv420", "bgr8", "mono16", "bayer_rggb8", "yuv422_yuy2"):
        assert name in str(info.value)


def test_decode_compressed_png_exact_and_jpeg_close():
    ok, png = cv2.imencode(".png", cv2.cvtColor(RGB, cv2.COLOR_RGB2BGR))
    assert ok
    np.testing.assert_array_equal(decode_compressed(png.tobytes(), "png"), RGB)
    smooth = cv2.GaussianBlur(RGB, (0, 0), 3)
    ok, jpg = cv2.imencode(".jpg", cv2.cvtColor(smooth, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 98])
    out = decode_compressed(array.array("B", jpg.tobytes()), "rgb8; jpeg compressed bgr8")
    assert out.shape == RGB.shape and np.abs(out.astype(int) - smooth).mean() < 3


@pytest.mark.parametrize(("fmt", "stored"), [
    ("rgb8; png compressed bgr8", "bgr"),   # what image_transport (and dpt_ros) write: BGR handed to the encoder
    ("png", "bgr"),                         # a bare codec name: OpenCV's order
    ("rgb8; png compressed rgb8", "rgb"),   # a publisher that handed its RGB to the encoder as it was
    ("bgr8; png compressed rgb8", "rgb"),
])
def test_decode_compressed_follows_the_colour_order_the_format_names(fmt, stored):
    ok, png = cv2.imencode(".png", RGB[..., ::-1] if stored == "bgr" else RGB)
    assert ok
    np.testing.assert_array_equal(decode_compressed(png.tobytes(), fmt), RGB)


@pytest.mark.parametrize("fmt", [
    "8UC3; png compressed ",    # image_transport's publisher writes 8UC3 (BGR by OpenCV's convention) as it is
    "8UC4; png compressed ",    # the same with a 4th channel (dropped)
    "mono8; png compressed ",   # a format that says mono over a colour file: the file's own colours
    "mono8; jpeg compressed mono8",
])
def test_a_format_without_a_colour_encoding_leaves_the_file_in_opencvs_bgr_order(fmt):
    """image_transport's subscriber applies the format's colour order only to rgb8, bgr8, rgba8, ... (isColor);
    the 8UC3 / 8UC4 frames its publisher writes to PNG are BGR, as the same frames sent raw are read."""
    rgb = cv2.GaussianBlur(RGB, (0, 0), 3)   # (smooth: JPEG's halved chroma keeps its colours)
    bgr = rgb[..., ::-1]
    pixels = np.ascontiguousarray(np.dstack([bgr, GRAY]) if fmt.startswith("8UC4") else bgr)
    ok, data = cv2.imencode(".jpg" if "jpeg" in fmt else ".png", pixels, [cv2.IMWRITE_JPEG_QUALITY, 98])
    assert ok
    out = decode_compressed(data.tobytes(), fmt).astype(int)
    raw = decode(ImageView.from_array(pixels, fmt.split(";")[0] if fmt.startswith("8UC") else "8UC3"))
    np.testing.assert_array_equal(raw, rgb)   # the frame sent raw
    assert np.abs(out - rgb).mean() < (3 if "jpeg" in fmt else 1e-9)


def _with_exif_orientation(jpeg: bytes, orientation: int) -> bytes:
    """The JPEG with an EXIF (APP1) segment whose Orientation tag (0x0112) is ``orientation``."""
    tiff = b"II*\0" + struct.pack("<I", 8) + struct.pack("<H", 1) + struct.pack("<HHIHH", 0x0112, 3, 1, orientation, 0)
    tiff += struct.pack("<I", 0)
    app1 = b"Exif\0\0" + tiff
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + jpeg[2:]


def test_decode_compressed_ignores_an_exif_rotation():
    """image_transport's subscriber reads the pixels as sent; a rotation would turn the frame against its camera_info."""
    img = np.zeros((20, 40, 3), np.uint8)
    img[:, :20] = 255
    ok, jpg = cv2.imencode(".jpg", img)
    assert ok
    rotated = _with_exif_orientation(jpg.tobytes(), 6)   # "rotate 90 degrees clockwise to display"
    assert cv2.imdecode(np.frombuffer(rotated, np.uint8), cv2.IMREAD_COLOR).shape == (40, 20, 3)   # OpenCV would
    out = decode_compressed(rotated, "rgb8; jpeg compressed bgr8")
    assert out.shape == (20, 40, 3) and out[:, :20].mean() > 250 and out[:, 20:].mean() < 5


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header declares ``width`` x ``height`` RGB pixels, with almost no image data."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 10)) + chunk(b"IEND", b""))


@pytest.mark.parametrize(
    ("data", "fmt", "match"),
    [
        (b"\xff\xd8\xff" + b"\0" * 20, "jpeg", "could not decode"),
        (b"GIF89a....", "jpeg", "neither JPEG nor PNG"),
        (b"", "png", "empty"),
        (b"\x89PNG\r\n\x1a\n", "bmp", "unsupported compressed format 'bmp'"),
        (_png_header(100_000, 100_000), "png", "of 100000x100000 exceeds the 32768-pixel side or 64 MP limit"),
        (_png_header(40_000, 64), "png", "of 40000x64 exceeds the 32768-pixel side"),   # as a raw frame's side
        (b"\0" * 12 + _png_header(64, 48), "32FC1; compressedDepth png", r"is a depth stream .image_transport's "
         "compressedDepth., not a camera image: remap image to the colour camera's topic"),
        (_png_header(9_000, 8_000), "png", "of 9000x8000 exceeds the 32768-pixel side or 64 MP limit"),
    ],
)
def test_decode_compressed_rejects_bad_payloads(data, fmt, match):
    with pytest.raises(EncodingError, match=match):
        decode_compressed(data, fmt)


def test_a_jpeg_cut_short_decodes_as_far_as_its_data_goes_and_is_said_to_be_truncated():
    """A JPEG without its last bytes (no end-of-image marker FFD9: a relay or Wi-Fi cut it) decodes as libjpeg decodes
    it, its last blocks grey, whatever the OpenCV build (OpenCV 5 refused it, 4.x took it with a warning on stderr
    only), and jpeg_truncated says so, for the node to say."""
    image = cv2.resize(RGB, (96, 64), interpolation=cv2.INTER_CUBIC)
    jpeg = cv2.imencode(".jpg", cv2.GaussianBlur(image, (0, 0), 2))[1].tobytes()
    full = decode_compressed(jpeg, "jpeg")
    assert not jpeg_truncated(jpeg) and not jpeg_truncated(jpeg + b"\0" * 8)   # (zero padding after the end)
    assert not jpeg_truncated(jpeg + b"\x12\xff\x34") and (decode_compressed(jpeg + b"\x12\xff\x34") == full).all()
    assert not jpeg_truncated(cv2.imencode(".png", image)[1].tobytes())
    changed = {}
    for cut in range(1, 11):
        data = jpeg[:-cut]
        assert jpeg_truncated(data) and jpeg_truncated(data + b"\0" * 8)
        got = decode_compressed(data, "jpeg")
        assert got.shape == full.shape == (64, 96, 3)
        rows = np.flatnonzero((got != full).any(axis=(1, 2)))
        # the last blocks only: the last row of 16x16 blocks (4:2:0), and the row above it that the chroma upsampling
        # smooths with it
        assert rows.size == 0 or rows.min() >= 47, (cut, rows)
        changed[cut] = rows.size
    assert changed[1] == changed[2] == 0 and changed[10] > 0, changed   # the marker alone gone: every block there
    half = decode_compressed(jpeg[:len(jpeg) // 2], "jpeg")
    rows = np.flatnonzero((half != full).any(axis=(1, 2)))
    assert 0 < rows.min() < 64 and (np.abs(half[-8:].astype(int) - 128) <= 1).all()   # the rest grey


def test_the_decode_says_whether_a_jpeg_was_cut_short_and_a_whole_ones_end_is_checked_without_a_copy():
    """The node decoded a CompressedImage, then asked jpeg_truncated of the same data: a second copy and search of
    it every frame (1-1.7 ms a 1080p JPEG of 400-750 KB). decode_compressed_frame says it with the pixels, and a JPEG
    that ends with its marker (but zero padding) is read no further than its last bytes, not copied."""
    import tracemalloc

    image = cv2.resize(RGB, (320, 240), interpolation=cv2.INTER_CUBIC)
    jpeg = cv2.imencode(".jpg", image)[1].tobytes()
    assert len(jpeg) > 20_000
    for data, cut in ((jpeg, False), (jpeg + b"\0" * 100, False), (jpeg + b"\x12\xff\x34", False),
                      (jpeg[:-10], True), (jpeg[:-10] + b"\0" * 8, True), (jpeg[:len(jpeg) // 2], True)):
        got = decode_compressed_frame(data, "jpeg")
        assert (got.truncated, jpeg_truncated(data)) == (cut, cut), (len(data), cut)
        assert got.rgb.shape == (240, 320, 3) and (got.rgb == decode_compressed(data, "jpeg")).all()
    png = decode_compressed_frame(cv2.imencode(".png", image[..., ::-1])[1].tobytes(), "png")
    assert not png.truncated and (png.rgb == image).all()
    data = np.frombuffer(jpeg, np.uint8)   # as the node holds a message's data (no copy)
    tracemalloc.start()
    try:
        assert not jpeg_truncated(data) and not jpeg_truncated(np.concatenate([data, np.zeros(40, np.uint8)]))
        tracemalloc.reset_peak()
        assert not jpeg_truncated(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2_000, peak   # the old check copied all of it: len(jpeg) bytes and more


def test_a_jpeg_with_an_exif_thumbnail_cut_before_its_scan_is_said_to_be_truncated():
    """A camera's JPEG with an EXIF thumbnail (a JPEG of its own, with its own FFDA and FFD9, in an APP1 segment
    before the image's frame header), cut after the image's frame header but before its scan: the end marker was
    looked for after the last FFDA found, and the thumbnail's FFD9 came after it, so the cut one was called 'corrupt
    data'. It is now looked for after the image's frame header: truncated; whole, with bytes after it, it is not."""
    image = cv2.GaussianBlur(cv2.resize(RGB, (96, 64), interpolation=cv2.INTER_CUBIC), (0, 0), 2)
    jpeg = cv2.imencode(".jpg", image)[1].tobytes()
    thumb = cv2.imencode(".jpg", cv2.resize(image, (24, 16)))[1].tobytes()
    exif = b"Exif\0\0" + thumb
    data = jpeg[:2] + b"\xff\xe1" + (2 + len(exif)).to_bytes(2, "big") + exif + jpeg[2:]
    assert data.count(b"\xff\xda") == 2 and data.count(b"\xff\xd9") == 2
    whole = decode_compressed_frame(data, "jpeg")
    assert not whole.truncated and (whole.rgb == decode_compressed(jpeg, "jpeg")).all()
    assert not jpeg_truncated(data + b"\x12\xff\x34") and not jpeg_truncated(data + b"\0" * 8)
    scan = data.rindex(b"\xff\xda")   # the image's own scan, after the thumbnail's end
    assert data.index(b"\xff\xd9") < data.index(b"\xff\xc0", len(thumb)) < scan   # thumbnail's end, frame header
    for cut in (scan, scan + 4):   # after the frame header and tables; in the scan's header
        assert jpeg_truncated(data[:cut]) and jpeg_truncated(data[:cut] + b"\0" * 8)
        with pytest.raises(EncodingError) as info:
            decode_compressed(data[:cut], "jpeg")
        assert str(info.value) == (f"could not decode jpeg image of {cut} bytes: truncated, the data ends before the "
                                   f"JPEG's end-of-image marker (FFD9): the message was cut short by its publisher, a "
                                   f"relay or the recording (check that the camera's own compressed topic decodes, "
                                   f"e.g. in rqt_image_view); the frame is skipped")


def test_an_undecodable_compressed_image_is_said_to_be_truncated_or_corrupt_with_what_to_do():
    """A JPEG or PNG cut short (a relay, a recording; Wi-Fi) or corrupt was refused as 'could not decode ... (corrupt?)',
    and an empty one as 'empty ... payload': now which it is (no end marker: truncated), and what to check."""
    jpeg = cv2.imencode(".jpg", cv2.GaussianBlur(RGB, (0, 0), 2))[1].tobytes()
    png = cv2.imencode(".png", RGB)[1].tobytes()
    check = "check that the camera's own compressed topic decodes, e.g. in rqt_image_view); the frame is skipped"
    # (a JPEG cut in its scan is decoded as far as it goes, test_a_jpeg_cut_short_...: one cut before its scan)
    scan = jpeg.index(b"\xff\xda")
    for data, fmt, end, cuts in ((jpeg, "rgb8; jpeg compressed bgr8", "JPEG's end-of-image marker (FFD9)", (scan + 4,)),
                                 (png, "bgr8; png compressed bgr8", "PNG's IEND chunk",
                                  (len(png) // 2, len(png) * 9 // 10))):
        for cut in cuts:
            with pytest.raises(EncodingError) as info:
                decode_compressed(data[:cut] + b"\0" * 8, fmt)   # (zero padding does not hide the cut)
            assert str(info.value) == (f"could not decode {fmt} image of {cut + 8} bytes: truncated, the data ends "
                                       f"before the {end}: the message was cut short by its publisher, a relay or the "
                                       f"recording ({check}")
    idat = png.index(b"IDAT") + 4
    mangled = png[:idat] + b"\xff" * 64 + png[idat + 64:]   # (its end intact)
    with pytest.raises(EncodingError) as info:
        decode_compressed(mangled, "png")
    assert str(info.value) == f"could not decode png image of {len(png)} bytes: corrupt data, which the decoder " \
                              f"refused ({check}"
    # a JPEG whose Huffman table is bogus (libjpeg refuses it), its end intact and bytes after it (a driver's): not
    # 'truncated' (it was, the data not ending with FFD9), as jpeg_truncated's rule: no FFD9 after the last FFDA
    dht = jpeg.index(b"\xff\xc4")
    bogus = jpeg[:dht + 5] + b"\xff" * 16 + jpeg[dht + 21:]
    for tail in (b"", b"\0" * 8, b"\x12\xff\x34", b"\xff\xd8\xff\xe0"):
        with pytest.raises(EncodingError) as info:
            decode_compressed(bogus + tail, "jpeg")
        assert str(info.value) == f"could not decode jpeg image of {len(bogus + tail)} bytes: corrupt data, which " \
                                  f"the decoder refused ({check}", tail
    with pytest.raises(EncodingError, match="truncated, the data ends before the JPEG's end-of-image marker"):
        decode_compressed(bogus[:-2] + b"\x12\x34", "jpeg")   # (without its end: cut short, whatever else)
    with pytest.raises(EncodingError, match=r"^empty jpeg image payload: the CompressedImage has no data \(its "
                                            r"publisher's encoding failed, or it was emptied on the way\); the frame is "
                                            r"skipped$"):
        decode_compressed(b"", "jpeg")


def test_decode_compressed_16_bit_png_matches_the_raw_frame():
    # a depth-camera-style 16-bit PNG: every value, incl. those whose top byte and rounded value differ
    v = np.arange(0, 65536, 7, dtype=np.uint16)[:64 * 146].reshape(64, 146)
    ok, png = cv2.imencode(".png", v)
    assert ok
    raw = decode(ImageView.from_array(v, "mono16"))
    out = decode_compressed(png.tobytes(), "png")
    np.testing.assert_array_equal(out, raw)
    assert (out[..., 0] != (v >> 8)).any()      # the top byte alone would differ
    # 16-bit colour PNG: the channels are rounded the same way, BGR -> RGB
    c = np.stack([v, 65535 - v, v // 3], axis=-1)
    ok, png = cv2.imencode(".png", c)
    assert ok
    expected = ((c[..., ::-1].astype(np.uint32) + 128) // 257).astype(np.uint8)
    np.testing.assert_array_equal(decode_compressed(png.tobytes(), "png"), expected)


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "mono16", "yuv422_yuy2", "bayer_gbrg8"])
def test_row_padding_never_changes_results(encoding):
    """Sizes 100..700 with 0, 1, 3 and 64 bytes of padding decode (and pre-process) identically."""
    from dpt_ros.pipeline import Preprocessor

    pre = Preprocessor(128)
    for h, w in [(100, 700), (357, 242), (700, 100)]:
        rgb = RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)
        raw = {"rgb8": rgb, "bgr8": rgb, "mono16": rgb[:, :, 0].astype(np.uint16) * 257,
               "yuv422_yuy2": rgb[:, :, :2].reshape(h, w * 2), "bayer_gbrg8": rgb[:, :, 1]}[encoding]
        ref = decode(ImageView.from_array(raw, encoding))
        ref_t = pre(ref)
        for pad in PADDINGS[1:]:
            for big in (False, True):
                out = decode(ImageView.from_array(raw, encoding, padding=pad, bigendian=big))
                np.testing.assert_array_equal(out, ref)
                assert bool((pre(out) == ref_t).all())


@pytest.mark.parametrize("pattern", ["rggb", "bggr", "gbrg", "grbg"])
@pytest.mark.parametrize("hw", [(2, 2), (2, 8), (8, 2), (1, 5), (5, 1)])
def test_bayer_with_a_side_below_3_is_rejected_not_decoded_black(pattern, hw):
    # OpenCV's demosaicing returns all zeros when a side is < 3 (and the CUDA kernel's border rule
    # needs 3 pixels too): such frames must be rejected, not published black.
    mosaic = _mosaic(np.ascontiguousarray(np.broadcast_to(np.array([200, 90, 30], np.uint8), (*hw, 3))), pattern)
    with pytest.raises(EncodingError, match=r"at least 3x3.*supported encodings: rgb8"):
        decode(ImageView.from_array(mosaic, f"bayer_{pattern}8"))
    const = np.broadcast_to(np.array([200, 90, 30], np.uint8), (3, 3, 3))  # the smallest accepted size works
    np.testing.assert_array_equal(decode(ImageView.from_array(_mosaic(np.ascontiguousarray(const), pattern),
                                                              f"bayer_{pattern}8")), const)


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        (dict(data=bytes(10), encoding="rgb8", height=2, width=2, step=6), r"rgb8 image 2x2: len\(data\)=10"),
        (dict(data=bytes(12), encoding="mono16", height=2, width=4, step=6), "mono16 image 4x2: step 6"),
        (dict(data=bytes(6), encoding="yuv422", height=1, width=3, step=6), "yuv422 image needs an even width"),
        (dict(data=bytes(0), encoding="16UC1", height=0, width=4, step=8), "16UC1 image has invalid height"),
    ],
)
def test_layout_errors_name_the_encoding_and_the_supported_list(fields, match):
    with pytest.raises(EncodingError, match=match) as info:
        decode(ImageView(**fields))
    assert "supported encodings: " + ", ".join(SUPPORTED_ENCODINGS) in str(info.value)


def test_the_size_of_a_compressed_image_is_read_from_its_header_before_decoding():
    """A few kB of PNG can declare gigabytes of pixels (every output is of the input's size): the size is read from
    the PNG's IHDR or the JPEG's start-of-frame and checked first; a JPEG's too, also progressive or with EXIF."""
    from dpt_ros.pipeline.encodings import compressed_size

    for shape in ((48, 64, 3), (1, 1, 3), (30, 40), (1080, 1920, 3)):
        img = np.zeros(shape, np.uint8)
        for ext, flags in ((".png", []), (".jpg", []), (".jpg", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])):
            data = np.frombuffer(cv2.imencode(ext, img, flags)[1].tobytes(), np.uint8)
            assert compressed_size(data) == (shape[1], shape[0]), (shape, ext, flags)
    exif = bytes.fromhex("ffd8ffe1000a457869660000aaaa")   # SOI, then an APP1 segment before the frame header
    jpeg = cv2.imencode(".jpg", np.zeros((5, 7, 3), np.uint8))[1].tobytes()
    assert compressed_size(np.frombuffer(exif + jpeg[2:], np.uint8)) == (7, 5)
    assert compressed_size(np.frombuffer(b"\xff\xd8\xff", np.uint8)) is None   # no frame header: the decoder says
    # a frame header behind 200 kB of APP2 segments (an ICC profile; or a hostile one hiding a 40000x40000 frame)
    icc = b"".join(b"\xff\xe2" + (65535).to_bytes(2, "big") + bytes(65533) for _ in range(3))
    hostile = bytearray(cv2.imencode(".jpg", np.zeros((5, 7, 3), np.uint8))[1].tobytes())
    sof = next(i for i in range(2, len(hostile)) if hostile[i] == 0xFF and hostile[i + 1] == 0xC0)
    hostile[sof + 5:sof + 9] = (40000).to_bytes(2, "big") * 2
    assert compressed_size(np.frombuffer(b"\xff\xd8" + icc + jpeg[2:], np.uint8)) == (7, 5)
    data = np.frombuffer(b"\xff\xd8" + icc + bytes(hostile[2:]), np.uint8)
    assert compressed_size(data) == (40000, 40000)
    with pytest.raises(EncodingError, match="of 40000x40000 exceeds"):
        decode_compressed(data, "jpeg")
    # libjpeg skips stray bytes (and stuffed zeros) before a marker and decodes the frame behind them: so does the
    # walk, or a 600-byte JPEG with one stray byte declared 30000x30000 to OpenCV (its limit: 2**30 pixels)
    assert hostile[2:4] == jpeg[2:4] == b"\xff\xe0"   # after SOI, the JFIF APP0 segment: stray bytes go behind it
    app0 = 4 + int.from_bytes(jpeg[4:6], "big")
    for junk in (b"\x00", b"\x12\x34\x56", b"\xff\x00", b"\xff\xff\x00\x07"):
        stray = np.frombuffer(bytes(hostile[:app0]) + junk + bytes(hostile[app0:]), np.uint8)
        assert compressed_size(stray) == (40000, 40000), junk
        with pytest.raises(EncodingError, match="of 40000x40000 exceeds"):
            decode_compressed(stray, "jpeg")
        ok = np.frombuffer(jpeg[:app0] + junk + jpeg[app0:], np.uint8)
        assert compressed_size(ok) == (7, 5) and decode_compressed(ok, "jpeg").shape == (5, 7, 3), junk
    # a header this cannot read is refused, not handed to the decoder: truncated, or hops without end
    for data, why in ((b"\xff\xd8\xff\xe0\x00\x10JFIF", "JPEG's frame header"),
                      (b"\xff\xd8" + b"\xff\xfe\x00\x02" * 5000 + jpeg[2:], "JPEG's frame header"),
                      (b"\xff\xd8\xff\xe0\x00\x04\x00\x00" + b"\x00" * 100, "JPEG's frame header"),
                      (b"\x89PNG\r\n\x1a\n" + bytes(4) + b"IDAT" + bytes(40), "PNG's IHDR")):
        assert compressed_size(np.frombuffer(data, np.uint8)) is None
        with pytest.raises(EncodingError, match=f"could not decode jpeg image of {len(data)} bytes: no image size in "
                                                f"its {why}"):
            decode_compressed(data, "jpeg")
    big = np.zeros((8000, 8000), np.uint8)   # 64 MP: at the limit, still decoded
    assert decode_compressed(cv2.imencode(".png", big)[1].tobytes(), "png").shape == (8000, 8000, 3)


def test_an_opencv_refusal_is_an_encoding_error(monkeypatch):
    """OpenCV raises (cv2.error) rather than returning None for some data, e.g. beyond its own pixel limit
    (CV_IO_MAX_IMAGE_PIXELS, where a header this module cannot read declares it): that frame's encoding error."""
    from dpt_ros.pipeline import encodings

    def refuse(buf, flags):
        raise cv2.error("OpenCV(4.11.0) loadsave.cpp:79: error: (-215:Assertion failed) pixels <= "
                        "CV_IO_MAX_IMAGE_PIXELS in function 'validateInputImageSize'")

    monkeypatch.setattr(encodings.cv2, "imdecode", refuse)
    png = _png_header(64, 48)
    with pytest.raises(EncodingError, match=f"could not decode png image of {len(png)} bytes: its header declares "
                                            r"more pixels than OpenCV decodes \(CV_IO_MAX_IMAGE_PIXELS\)"):
        decode_compressed(png, "png")


def test_a_16_bit_image_file_reads_as_the_node_reads_the_same_png(tmp_path):
    """read_image_file (predict, the sample camera's folders) rounds 16-bit samples as the node does for the same PNG
    sent as a CompressedImage (and for raw rgb16 / mono16): v / 257, not OpenCV's top byte; 8-bit files unchanged."""
    from dpt_ros.pipeline.encodings import read_image_file

    rng = np.random.default_rng(3)
    for shape in ((30, 40, 3), (30, 40)):
        v = rng.integers(0, 65536, shape, dtype=np.uint16)
        path = tmp_path / f"v{len(shape)}.png"
        cv2.imwrite(str(path), v)
        got = read_image_file(str(path))
        want = ((v.astype(np.uint32) + 128) // 257).astype(np.uint8)
        want = want[..., ::-1] if v.ndim == 3 else np.repeat(want[..., None], 3, axis=2)   # BGR file -> RGB
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(got, decode_compressed(path.read_bytes(), "png"))
    eight = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "e.png"), eight)
    np.testing.assert_array_equal(read_image_file(str(tmp_path / "e.png")), eight[..., ::-1])


def test_a_float_tiff_reads_as_the_node_reads_32fc1(tmp_path, capfd):
    """A floating-point TIFF (predict's and the sample camera's image files) is read as the node reads 32FC1 frames:
    intensity in [0, 1], clipped, NaN 0, +inf 1; it was refused as unreadable (OpenCV's 8-bit reading cannot)."""
    from dpt_ros.pipeline.encodings import read_image_file

    v = np.random.default_rng(4).uniform(-0.2, 1.2, (20, 30, 3)).astype(np.float32)
    v[0, 0] = (np.nan, np.inf, -np.inf)
    path = tmp_path / "f.tiff"
    # uncompressed: OpenCV 4.x writes a 3-channel float TIFF as SGILOG (lossy, NaN / inf to 0) by default, 5.x not
    lossless = [cv2.IMWRITE_TIFF_COMPRESSION, 1]
    assert cv2.imwrite(str(path), v, lossless)
    got = read_image_file(str(path))
    want = np.rint(np.clip(np.nan_to_num(v, nan=0.0, posinf=1.0, neginf=0.0), 0, 1) * 255).astype(np.uint8)
    np.testing.assert_array_equal(got, want[..., ::-1])   # BGR file -> RGB
    assert got[0, 0].tolist() == [0, 255, 0]
    gray = tmp_path / "g.tiff"   # one channel (OpenCV's colour reading refuses it)
    assert cv2.imwrite(str(gray), v[..., 1], lossless)
    capfd.readouterr()
    np.testing.assert_array_equal(read_image_file(str(gray)), np.repeat(want[..., 1:2], 3, axis=2))
    # (OpenCV's colour reading, tried first, printed "[ERROR:0@...] global loadsave.cpp ... imread_(...): can't read
    # data: ... ncn == img.channels()" before the one-channel reading)
    assert "imread_" not in capfd.readouterr().err
