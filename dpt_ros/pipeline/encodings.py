"""Decoding of ``sensor_msgs/Image`` and ``sensor_msgs/CompressedImage`` payloads to RGB.

The ROS layer builds an :class:`ImageView` from the message fields (no copy of ``data``); this
module validates it *before* touching or allocating anything and returns an (H, W, 3) uint8 RGB
array. On the NumPy backend packed RGB/BGR(A) encodings come back as zero-copy views of the
message buffer (read-only when the buffer is).
"""

from __future__ import annotations

import dataclasses
import errno
import os
import stat
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple, Optional

import cv2
import numpy as np

from dpt_ros.pipeline._backend import get_xp

#: Largest accepted side in pixels; anything above is treated as a corrupt header.
MAX_SIDE = 32768


@dataclasses.dataclass(frozen=True)
class _Format:
    channels: int  # stored channels per pixel (yuv422: 2 bytes per pixel, see bytes_per_pixel)
    itemsize: int  # bytes per channel
    kind: str  # how to turn it into RGB, see _decode_numpy (on the GPU: _cuda.kernel_params)
    cv_code: int | None = None  # OpenCV conversion for yuv / bayer

    @property
    def bytes_per_pixel(self) -> int:
        return self.channels * self.itemsize


# ROS bayer names give the real sensor pattern; OpenCV's COLOR_Bayer* names are shifted by one
# pixel (cv_bridge maps bayer_rggb8 -> COLOR_BayerBG2BGR), so the RGB codes are picked that way.
_FORMATS: dict[str, _Format] = {
    "rgb8": _Format(3, 1, "rgb"),
    "bgr8": _Format(3, 1, "bgr"),
    "rgba8": _Format(4, 1, "rgb"),
    "bgra8": _Format(4, 1, "bgr"),
    "rgb16": _Format(3, 2, "rgb"),
    "bgr16": _Format(3, 2, "bgr"),
    "rgba16": _Format(4, 2, "rgb"),
    "bgra16": _Format(4, 2, "bgr"),
    "mono8": _Format(1, 1, "mono"),
    "mono16": _Format(1, 2, "mono"),
    "8UC1": _Format(1, 1, "mono"),
    "8UC3": _Format(3, 1, "bgr"),  # OpenCV convention: 3-channel 8-bit images are BGR
    "8UC4": _Format(4, 1, "bgr"),
    "16UC1": _Format(1, 2, "mono"),
    "32FC1": _Format(1, 4, "float"),  # intensity in [0, 1], clipped; NaN -> 0
    "yuv422": _Format(2, 1, "yuv", cv2.COLOR_YUV2RGB_UYVY),  # UYVY
    "uyvy": _Format(2, 1, "yuv", cv2.COLOR_YUV2RGB_UYVY),
    "yuv422_yuy2": _Format(2, 1, "yuv", cv2.COLOR_YUV2RGB_YUY2),  # YUYV
    "yuyv": _Format(2, 1, "yuv", cv2.COLOR_YUV2RGB_YUY2),
    "bayer_rggb8": _Format(1, 1, "bayer", cv2.COLOR_BayerBG2RGB),
    "bayer_bggr8": _Format(1, 1, "bayer", cv2.COLOR_BayerRG2RGB),
    "bayer_gbrg8": _Format(1, 1, "bayer", cv2.COLOR_BayerGR2RGB),
    "bayer_grbg8": _Format(1, 1, "bayer", cv2.COLOR_BayerGB2RGB),
    "bayer_rggb16": _Format(1, 2, "bayer", cv2.COLOR_BayerBG2RGB),
    "bayer_bggr16": _Format(1, 2, "bayer", cv2.COLOR_BayerRG2RGB),
    "bayer_gbrg16": _Format(1, 2, "bayer", cv2.COLOR_BayerGR2RGB),
    "bayer_grbg16": _Format(1, 2, "bayer", cv2.COLOR_BayerGB2RGB),
}

#: Every ``sensor_msgs/Image`` encoding :func:`decode` accepts.
SUPPORTED_ENCODINGS: tuple[str, ...] = tuple(_FORMATS)
#: ``sensor_msgs/CompressedImage`` formats :func:`decode_compressed` accepts (image_transport style).
SUPPORTED_COMPRESSED_FORMATS: tuple[str, ...] = ("jpeg", "jpg", "png")
#: the encodings whose colour order a CompressedImage's format string names (sensor_msgs' ``isColor``)
_COLOR_ENCODINGS = frozenset(("rgb8", "bgr8", "rgba8", "bgra8", "rgb16", "bgr16", "rgba16", "bgra16"))


class EncodingError(ValueError):
    """An image cannot be decoded: unknown encoding, inconsistent sizes or corrupt payload."""


@dataclasses.dataclass(frozen=True)
class ImageView:
    """The fields of a ``sensor_msgs/Image`` needed to decode it, without ROS types.

    :param data: the payload (``msg.data``: array.array, bytes, memoryview or a uint8 ndarray).
    :param encoding: the ROS encoding string (see :data:`SUPPORTED_ENCODINGS`).
    :param height: rows.
    :param width: columns.
    :param step: bytes per row including padding (>= width * bytes per pixel).
    :param is_bigendian: byte order of multi-byte channels (ignored for 8-bit encodings).
    """

    data: Any
    encoding: str
    height: int
    width: int
    step: int
    is_bigendian: bool = False

    @classmethod
    def from_array(cls, image: np.ndarray, encoding: str, *, padding: int = 0,
                   bigendian: bool = False) -> ImageView:
        """Pack an (H, W[, C]) array into message layout (for tests, tools and the sample camera).

        ``padding`` bytes are appended to every row; 16/32-bit data is written in the requested
        byte order. yuv422 / bayer arrays must already be in their raw (H, W*2) / (H, W) form.
        """
        fmt = _format(encoding)
        arr = np.asarray(image)
        height = arr.shape[0]
        if fmt.itemsize > 1:
            dt = np.dtype(np.float32 if fmt.kind == "float" else f"u{fmt.itemsize}")
            arr = arr.astype(dt.newbyteorder(">" if bigendian else "<"), copy=False)
        raw = np.ascontiguousarray(arr).view(np.uint8).reshape(height, -1)
        width = raw.shape[1] // fmt.bytes_per_pixel
        step = raw.shape[1] + padding
        rows = np.zeros((height, step), np.uint8)
        rows[:, : raw.shape[1]] = raw
        if padding:
            rows[:, raw.shape[1]:] = 0xA5  # non-zero garbage so padding bugs show up
        return cls(rows.tobytes(), encoding, height, width, step, bool(bigendian))


def _format(encoding: str) -> _Format:
    try:
        return _FORMATS[encoding]
    except (KeyError, TypeError):
        raise EncodingError(
            f"unsupported image encoding {encoding!r}; supported: {', '.join(SUPPORTED_ENCODINGS)}"
        ) from None


def _nbytes(data: Any) -> int:
    if isinstance(data, np.ndarray) or type(data).__module__.split(".", 1)[0] == "cupy":
        return int(data.nbytes)
    try:
        return memoryview(data).nbytes
    except TypeError:
        raise EncodingError(f"image data of type {type(data).__name__} is not a byte buffer") from None


def _layout_error(message: str) -> EncodingError:
    return EncodingError(f"{message}; supported encodings: {', '.join(SUPPORTED_ENCODINGS)}")


def check_view(view: ImageView) -> _Format:
    """Validate sizes against the payload before anything is allocated; return the format.

    :raises EncodingError: unknown encoding, non-positive or absurd sizes, ``step`` smaller than a
        row, ``len(data) != step * height``, odd width for yuv422, bayer smaller than 3x3; every
        message names the encoding and the supported list.
    """
    fmt = _format(view.encoding)
    h, w, step = view.height, view.width, view.step
    for name, value in (("height", h), ("width", w), ("step", step)):
        if not isinstance(value, (int, np.integer)) or value <= 0:
            raise _layout_error(f"{view.encoding} image has invalid {name}={value!r}; must be a positive integer")
    if h > MAX_SIDE or w > MAX_SIDE:
        raise _layout_error(f"{view.encoding} image of {w}x{h} exceeds the {MAX_SIDE}-pixel side limit; corrupt header?")
    row = w * fmt.bytes_per_pixel
    if step < row:
        raise _layout_error(
            f"{view.encoding} image {w}x{h}: step {step} is smaller than one row ({w} px * "
            f"{fmt.bytes_per_pixel} B = {row} B)"
        )
    size = _nbytes(view.data)
    if size != step * h:
        raise _layout_error(
            f"{view.encoding} image {w}x{h}: len(data)={size} but step*height={step}*{h}={step * h}"
        )
    if fmt.kind == "yuv" and w % 2:
        raise _layout_error(f"{view.encoding} image needs an even width (2 pixels share U/V); got {w}")
    if fmt.kind == "bayer" and (w < 3 or h < 3):
        # OpenCV's demosaicing silently returns an all-black image when a side is < 3
        raise _layout_error(f"{view.encoding} image must be at least 3x3 for demosaicing; got {w}x{h}")
    return fmt


def raw_rows(view: ImageView, fmt: _Format | None = None) -> np.ndarray:
    """Zero-copy (H, W, C) view of the pixels (padding dropped, byte order applied)."""
    fmt = fmt or check_view(view)
    data = view.data
    buf = data.reshape(-1) if isinstance(data, np.ndarray) else np.frombuffer(data, np.uint8)
    if buf.dtype != np.uint8:
        buf = buf.view(np.uint8)
    if fmt.kind == "float":
        dtype = np.dtype(">f4" if view.is_bigendian else "<f4")
    elif fmt.itemsize == 2:
        dtype = np.dtype(">u2" if view.is_bigendian else "<u2")
    else:
        dtype = np.dtype(np.uint8)
    return np.ndarray(
        (view.height, view.width, fmt.channels),
        dtype=dtype,
        buffer=buf,
        strides=(view.step, fmt.bytes_per_pixel, fmt.itemsize),
    )


def four_byte_pixels(rgb: np.ndarray) -> Optional[tuple[np.ndarray, bool]]:
    """The 4-byte pixels that an (H, W, 3) uint8 view of rgba8/bgra8 bytes reads from: ``(pixels, bgr)``, pixels an
    (H, W, 4) uint8 view of the same memory (its 4th byte whatever lies there: the frame's alpha), bgr True when its
    bytes are B, G, R (a bgra8 frame's decode, channels reversed). None for any other layout, or where that 4th byte
    of a pixel would lie outside the memory of the array that ``rgb`` views (only read where it is there).

    Such a view is strided (4 bytes a pixel): NumPy and OpenCV read it through a compact copy first, which cost
    pre-processing and the cloud's colours more than their work; the 4-byte pixels they take as they lie."""
    if (rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.strides[1] != 4
            or rgb.strides[2] not in (1, -1)):
        return None
    owner = rgb
    while isinstance(owner.base, np.ndarray):
        owner = owner.base
    if not owner.flags.c_contiguous:
        return None
    h, w = rgb.shape[:2]
    row = rgb.strides[0]
    lo = owner.__array_interface__["data"][0]
    start = rgb.__array_interface__["data"][0] - (2 if rgb.strides[2] < 0 else 0)   # a reversed view starts at R
    first = start + min(0, (h - 1) * row)
    last = start + max(0, (h - 1) * row) + (w - 1) * 4 + 3
    if first < lo or last >= lo + owner.nbytes:
        return None
    try:
        pixels = np.ndarray((h, w, 4), np.uint8, buffer=owner, offset=start - lo, strides=(row, 4, 1))
    except (TypeError, ValueError, BufferError):   # an owner without a byte buffer to export
        return None
    pixels.flags.writeable = False
    return pixels, rgb.strides[2] < 0


def _u16_to_u8(a: np.ndarray) -> np.ndarray:
    """16-bit samples (any byte order and strides) to 8 bits: round(v * 255 / 65535) == (v + 128) // 257 for every v.
    Computed by OpenCV as v * (1 / 257) in float32 rounded to nearest, which is that value for every 16-bit v (none
    lies within float32's error of a half; the tests try all 65536): 640x480x3 took 9.4 ms as NumPy's integer
    division of a uint32 copy, 0.3 ms so."""
    rows = a.reshape(a.shape[0], -1)   # (a view where the samples of a row are evenly spaced)
    if rows.dtype != np.uint16 or rows.strides[1] != 2 or rows.strides[0] % 2 or not rows.flags.aligned:
        # a native, aligned copy for OpenCV: the other byte order, or rows an odd number of bytes apart (which
        # OpenCV's Python binding reads wrongly, unlike the others that it copies itself)
        rows = np.ascontiguousarray(rows, dtype=np.uint16)
    return cv2.convertScaleAbs(rows, alpha=1.0 / 257.0).reshape(a.shape)


def _mono_to_rgb(g: np.ndarray) -> np.ndarray:
    """Read-only (H, W, 3) broadcast view: no copy; consumers may resize one channel only."""
    return np.broadcast_to(g[:, :, None], (*g.shape, 3))


def _decode_numpy(view: ImageView, fmt: _Format) -> np.ndarray:
    px = raw_rows(view, fmt)
    kind = fmt.kind
    if kind in ("rgb", "bgr"):
        if fmt.itemsize == 2:   # every channel converted (an alpha too: the channels stay evenly spaced in memory)
            px = _u16_to_u8(px)
        return px[:, :, :3] if kind == "rgb" else px[:, :, 2::-1]
    if kind == "mono":
        g = px[:, :, 0]
        return _mono_to_rgb(_u16_to_u8(g) if fmt.itemsize == 2 else g)
    if kind == "float":
        g = np.nan_to_num(px[:, :, 0].astype(np.float32), nan=0.0, posinf=1.0, neginf=0.0)
        g = np.rint(np.clip(g, 0.0, 1.0) * 255.0).astype(np.uint8)
        return _mono_to_rgb(g)
    if kind == "yuv":
        packed = np.ascontiguousarray(px)  # (H, W, 2) bytes as OpenCV expects
        return cv2.cvtColor(packed, fmt.cv_code)
    if kind == "bayer":
        mosaic = np.ascontiguousarray(px[:, :, 0])
        if fmt.itemsize == 2:
            mosaic = mosaic.astype(np.uint16)  # native byte order for OpenCV
            return _u16_to_u8(cv2.cvtColor(mosaic, fmt.cv_code))
        return cv2.cvtColor(mosaic, fmt.cv_code)
    raise AssertionError(kind)  # pragma: no cover


def decode(view: ImageView, xp: ModuleType | str = np) -> Any:
    """Decode an image to (H, W, 3) uint8 RGB on backend ``xp`` (numpy or cupy).

    NumPy: rgb8/rgba8/bgr8/bgra8/8UC3/8UC4 return zero-copy views, mono encodings a read-only
    broadcast view; yuv422 and bayer are converted with OpenCV (bilinear demosaicing). 16-bit
    channels are rounded to 8 bits (v / 257), 32FC1 is read as intensity in [0, 1].
    CuPy: one host->device copy of the raw bytes, then a kernel (see :mod:`._cuda`).

    :raises EncodingError: see :func:`check_view`.
    """
    xp = get_xp(xp)
    fmt = check_view(view)
    if xp is np:
        return _decode_numpy(view, fmt)
    from dpt_ros.pipeline import _cuda  # noqa: PLC0415 - lazy GPU import

    return _cuda.decode(view, fmt)


#: image file types OpenCV reads (image folders of the sample camera and of tools.predict)
IMAGE_FILE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


class ImageFileError(ValueError):
    """An image file that cannot be read; ``reason`` says why (no such file, empty, cannot be decoded, ...)."""

    def __init__(self, path, reason: str) -> None:
        super().__init__(f"cannot read image {str(path)!r}: {reason}")
        self.path, self.reason = path, reason


def _one_channel_float_tiff(path: Path) -> bool:
    """Whether a file is a classic TIFF whose first image has one floating-point sample per pixel (its first IFD's
    SamplesPerPixel and SampleFormat tags; a few bytes read, nothing decoded)."""
    import struct  # noqa: PLC0415

    try:
        with open(path, "rb") as f:
            head = f.read(8)
            if head[:4] not in (b"II*\0", b"MM\0*"):
                return False
            e = "<" if head[:2] == b"II" else ">"
            f.seek(struct.unpack(e + "I", head[4:8])[0])
            (count,) = struct.unpack(e + "H", f.read(2))
            entries = f.read(12 * count)
    except (OSError, struct.error, ValueError):
        return False
    tags = {}
    for i in range(len(entries) // 12):
        tag, kind, n, value = struct.unpack(e + "HHI4s", entries[12 * i:12 * i + 12])
        if tag in (277, 339) and kind == 3 and n >= 1:   # SamplesPerPixel, SampleFormat (SHORT): the first value
            tags[tag] = struct.unpack(e + "H", value[:2])[0] if n <= 2 else None
    return tags.get(277, 1) == 1 and tags.get(339) == 3   # (SampleFormat 3: IEEE floating point)


def read_image_file(path: str) -> np.ndarray:
    """An image file as (H, W, 3) uint8 RGB; :class:`ImageFileError` (a ValueError) naming the file and the reason
    when it cannot be read."""
    p = Path(path)
    try:   # (said here: OpenCV would also print its own findDecoder warning)
        mode = os.stat(p).st_mode
    except OSError as e:   # (Path.is_file raises for some: a name too long)
        raise ImageFileError(path, "no such file" if e.errno in (errno.ENOENT, errno.ENOTDIR) else
                             f"cannot look at it: {e.strerror or e}") from None
    if not stat.S_ISREG(mode):
        raise ImageFileError(path, "not a regular file (a folder, device or pipe)")
    try:   # (OpenCV says nothing of why it could not open a file)
        with open(p, "rb") as f:
            empty = not f.read(1)
    except OSError as e:
        raise ImageFileError(path, f"cannot open it: {e.strerror or e}") from None
    if empty:
        raise ImageFileError(path, "the file is empty (0 bytes)")
    # 16-bit samples to 8 bits as the node rounds them (v / 257, as for mono16 frames and 16-bit PNG messages);
    # OpenCV's own conversion keeps the top byte. Floating-point samples (a float TIFF) as the node reads 32FC1
    # frames: intensity in [0, 1], clipped, NaN 0 (OpenCV's 8-bit reading refuses a 32-bit float TIFF). Other
    # depths: OpenCV's 8-bit reading.
    if _one_channel_float_tiff(p):   # OpenCV's colour reading refuses it, printing an [ERROR] line: read as it is
        raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        bgr = np.repeat(raw[:, :, None], 3, axis=2) if raw is not None and raw.ndim == 2 else None
    else:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH)
    if bgr is None:   # a one-channel float TIFF the header look missed: its samples as they are
        raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if raw is not None and raw.dtype == np.float32 and raw.ndim == 2:
            bgr = np.repeat(raw[:, :, None], 3, axis=2)
    if bgr is not None and bgr.dtype == np.uint16:
        bgr = _u16_to_u8(bgr)
    elif bgr is not None and bgr.dtype in (np.float32, np.float64):
        bgr = np.nan_to_num(bgr.astype(np.float32), nan=0.0, posinf=1.0, neginf=0.0)
        bgr = np.rint(np.clip(bgr, 0.0, 1.0) * 255.0).astype(np.uint8)
    elif bgr is not None and bgr.dtype != np.uint8:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ImageFileError(path, "OpenCV cannot decode it: corrupt or truncated, or not an image of a format it reads "
                                   f"({', '.join(e.lstrip('.') for e in IMAGE_FILE_EXTENSIONS)})")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


#: the most pixels of a compressed input image (a 13 MP 4:3 frame is 4160x3120; 64 MP takes 192 MB as RGB and
#: 256 MB per float32 output)
MAX_COMPRESSED_PIXELS = 64 * 10**6


#: the most segments, fill and stray bytes a JPEG header walk passes before its frame header (a camera's JPEG has
#: about ten; every hop is a step of a Python loop)
_MAX_JPEG_HOPS = 4096


def compressed_size(buf: np.ndarray) -> Optional[tuple[int, int]]:
    """(width, height) that a PNG's IHDR or a JPEG's start-of-frame declares, read without decoding; None where the
    header is not found (``decode_compressed`` then refuses the data: a decoder would read what this cannot)."""
    head = buf[:24].tobytes()
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return (int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")) \
            if head[12:16] == b"IHDR" and len(head) >= 24 else None
    i, data = _jpeg_frame(buf), memoryview(buf)
    return None if i is None else (int.from_bytes(data[i + 7:i + 9], "big"), int.from_bytes(data[i + 5:i + 7], "big"))


def _jpeg_frame(buf: np.ndarray) -> Optional[int]:
    """Where the JPEG ``buf``'s start of frame (its frame header, FFCn) is, None where it is not found before a scan."""
    # a JPEG's segments up to its start of frame, over the whole buffer (an ICC profile or a hostile APPn segment
    # can put it far in); the walk hops from segment to segment, its cost is their number, not their bytes. Bytes
    # other than a marker between segments are skipped as libjpeg skips them ("extraneous bytes before marker"):
    # the decoder reads the frame behind them, so must this.
    data = memoryview(buf)
    raw = None   # the payload as bytes, made once a stray byte has to be searched past
    i = 2
    for _ in range(_MAX_JPEG_HOPS):
        if i + 9 > len(data):
            return None
        if data[i] != 0xFF or data[i + 1] == 0x00:   # a stray byte, or a stuffed zero (FF 00): no marker
            raw = raw if raw is not None else buf.tobytes()
            i = raw.find(b"\xff", i + (1 if data[i] != 0xFF else 2))
            if i < 0:
                return None
            continue
        marker = data[i + 1]
        if marker == 0xFF:   # fill bytes
            i += 1
            continue
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):   # a start of frame: P, Y, X
            return i
        if marker == 0xDA:   # the scan data, and no frame header before it: not a JPEG the decoder takes
            return None
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:   # markers without a length
            i += 2
            continue
        i += 2 + int.from_bytes(data[i + 2:i + 4], "big")
    return None


def _jpeg_cut(buf: np.ndarray) -> bool:
    """Whether the JPEG ``buf`` (uint8, 1-D) ends before its end-of-image marker (FFD9): none after its last start of
    scan (FFDA; entropy-coded data holds neither), or none at all, after the image's frame header. Bytes after the
    marker (a driver's padding) do not count, nor an EXIF thumbnail's own end (in an APP1 segment, before the image's
    frame header, which the segment walk of :func:`compressed_size` finds). A JPEG whose data ends with the marker
    (but zero padding), as every whole one from a camera, is read no further than its last 64 bytes, and not copied."""
    if buf[-64:].tobytes().rstrip(b"\0").endswith(b"\xff\xd9"):   # nothing can follow the marker there
        return False
    raw = buf.tobytes()
    end = raw.rfind(b"\xff\xd9", _jpeg_frame(buf) or 0)   # (no frame header found: the whole data)
    return end < 0 or raw.find(b"\xff\xda", end) >= 0


def _undecodable(buf: np.ndarray) -> str:
    """Why the decoder refused a JPEG or PNG whose header was read, and what to do: cut short (no end marker: JPEG's
    EOI after its last start of scan, as :func:`jpeg_truncated` says; PNG's IEND chunk, zero bytes after it are
    padding), else corrupt."""
    data = buf.tobytes()
    if _jpeg_cut(buf) if data[:1] == b"\xff" else b"IEND" not in data.rstrip(b"\0")[-12:]:
        kind = "JPEG's end-of-image marker (FFD9)" if data[:1] == b"\xff" else "PNG's IEND chunk"
        return (f"truncated, the data ends before the {kind}: the message was cut short by its publisher, a relay "
                "or the recording (check that the camera's own compressed topic decodes, e.g. in rqt_image_view)")
    return ("corrupt data, which the decoder refused (check that the camera's own compressed topic decodes, e.g. in "
            "rqt_image_view)")


def jpeg_truncated(data: Any) -> bool:
    """Whether ``data`` is a JPEG that ends before its end-of-image marker (FFD9): cut short by its publisher, a relay
    or the recording. :func:`decode_compressed` decodes one as far as its data goes, the rest of the image (its last
    blocks, from the bottom right) grey, and :func:`decode_compressed_frame` says so with the pixels (the data looked
    at once). The marker is looked for after the last start of scan (FFDA; entropy-coded data holds neither), so
    bytes after it (a driver's padding) do not count, nor an EXIF thumbnail's own end before the image's frame
    header."""
    buf = data.reshape(-1) if isinstance(data, np.ndarray) else np.frombuffer(data, np.uint8)
    return buf[:3].tobytes() == b"\xff\xd8\xff" and _jpeg_cut(buf)


class DecodedImage(NamedTuple):
    """A decoded ``sensor_msgs/CompressedImage`` (:func:`decode_compressed_frame`)."""

    rgb: np.ndarray   # (H, W, 3) uint8 RGB
    truncated: bool   # a JPEG cut short (no end-of-image marker), decoded as far as its data goes, the rest grey


def decode_compressed(data: Any, format: str = "") -> np.ndarray:  # noqa: A002 - ROS field name
    """Decode a ``sensor_msgs/CompressedImage`` (jpeg or png) to (H, W, 3) uint8 RGB (NumPy).

    ``format`` is the message's format string (e.g. "jpeg", "rgb8; jpeg compressed bgr8", "png");
    the payload's magic bytes decide the codec, the string is checked for an unsupported one and says the
    colour order as image_transport's subscriber reads it (see the end of :func:`decode_compressed_frame`).

    :raises EncodingError: unsupported format or undecodable data.
    """
    return decode_compressed_frame(data, format).rgb


def decode_compressed_frame(data: Any, format: str = "") -> DecodedImage:  # noqa: A002 - ROS field name
    """:func:`decode_compressed`, and whether the data was a JPEG cut short (:func:`jpeg_truncated`), told from the
    one look at the data that decoding takes (a caller asking :func:`jpeg_truncated` again would copy and search a
    1080p frame's 300-700 KB once more).

    :raises EncodingError: unsupported format or undecodable data.
    """
    buf = data.reshape(-1) if isinstance(data, np.ndarray) else np.frombuffer(data, np.uint8)
    fmt = (format or "").lower()
    if "compresseddepth" in fmt:
        raise EncodingError(f"compressed image ({format}) is a depth stream (image_transport's compressedDepth), not "
                            "a camera image: remap image to the colour camera's topic")
    if fmt and not any(k in fmt for k in SUPPORTED_COMPRESSED_FORMATS):
        raise EncodingError(
            f"unsupported compressed format {format!r}; supported: {', '.join(SUPPORTED_COMPRESSED_FORMATS)}"
        )
    if buf.size == 0:
        raise EncodingError(f"empty {format or 'compressed'} image payload: the CompressedImage has no data (its "
                            "publisher's encoding failed, or it was emptied on the way); the frame is skipped")
    if buf[:3].tobytes() != b"\xff\xd8\xff" and buf[:8].tobytes() != b"\x89PNG\r\n\x1a\n":
        raise EncodingError(
            f"compressed image ({format or 'no format'}) is neither JPEG nor PNG data; "
            f"supported: {', '.join(SUPPORTED_COMPRESSED_FORMATS)}"
        )
    size = compressed_size(buf)
    if size is None:
        # refused rather than handed to the decoder: the size limits below need it, and OpenCV's own limit is 2**30
        # pixels (3 GB) - a few hundred bytes whose header this cannot read could still declare that much
        kind = "PNG's IHDR" if buf[:1].tobytes() == b"\x89" else "JPEG's frame header (start of frame before the scan)"
        raise EncodingError(f"could not decode {format or 'compressed'} image of {buf.size} bytes: no image size in "
                            f"its {kind}; corrupt or truncated data")
    if (max(size) > MAX_SIDE or size[0] * size[1] > MAX_COMPRESSED_PIXELS):
        # (before decoding: a few kB of PNG can declare gigabytes of pixels, and every output is of the input's size)
        raise EncodingError(f"compressed image ({format or 'no format'}) of {size[0]}x{size[1]} exceeds the "
                            f"{MAX_SIDE}-pixel side or {MAX_COMPRESSED_PIXELS // 10**6} MP limit; corrupt or hostile "
                            "data, or send a smaller image")
    # ANYDEPTH keeps a 16-bit PNG's samples, rounded to 8 bits below exactly as raw mono16/16UC1 frames are
    # (OpenCV's own conversion keeps only the top byte: one grey level apart from the same frame sent raw).
    # IGNORE_ORIENTATION: the pixels as sent, as image_transport's subscriber reads them (an EXIF rotation
    # would turn the frame against its camera_info)
    coded = buf
    truncated = buf[:1].tobytes() == b"\xff" and _jpeg_cut(buf)
    if truncated:
        # libjpeg's own way with data that ends early (a fake EOI): decoded as far as it goes, the rest grey, as
        # image_transport's subscriber decodes it with OpenCV builds that take such a file; others (OpenCV 5) refuse
        # one without its EOI, so the marker is added here for the same image with every build
        coded = np.concatenate([np.frombuffer(buf.tobytes().rstrip(b"\0"), np.uint8),
                                np.array([0xFF, 0xD9], np.uint8)])
    try:
        img = cv2.imdecode(coded, cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH | cv2.IMREAD_IGNORE_ORIENTATION)
    except cv2.error as e:   # OpenCV refuses rather than fails, e.g. a header declaring more than 2**30 pixels
        why = ("its header declares more pixels than OpenCV decodes (CV_IO_MAX_IMAGE_PIXELS)"
               if "CV_IO_MAX_IMAGE_PIXELS" in str(e) else str(e).split("error: ", 1)[-1].strip())
        raise EncodingError(f"could not decode {format or 'compressed'} image of {buf.size} bytes: {why}") from None
    if img is None:
        raise EncodingError(f"could not decode {format or 'compressed'} image of {buf.size} bytes: "
                            f"{_undecodable(buf)}; the frame is skipped")
    if img.dtype == np.uint16:
        img = _u16_to_u8(img)
    # image_transport's rule (its compressed subscriber): for a colour encoding before the ';', "compressed bgr"
    # after it (what its publisher writes) says the file holds BGR for OpenCV, anything else that the pixels were
    # handed to the encoder as they were, RGB. Any other encoding (8UC3 / 8UC4, BGR by OpenCV's convention, as its
    # publisher writes them to PNG; mono) or a bare codec name: the file holds BGR for OpenCV.
    encoding, sep, tail = fmt.partition(";")
    if sep and encoding.strip() in _COLOR_ENCODINGS and "compressed bgr" not in tail:
        return DecodedImage(img, truncated)
    return DecodedImage(cv2.cvtColor(img, cv2.COLOR_BGR2RGB), truncated)

