"""Official DPT pre-processing: keep aspect ratio, sides multiples of 32, bicubic, (x - 0.5) / 0.5."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import torch

from dpt_ros.pipeline._backend import array_module, backend_for_device, cupy_available, get_xp, host_scratch
from dpt_ros.pipeline.encodings import ImageView, decode, four_byte_pixels

RESIZE_METHODS = ("minimal", "lower_bound", "upper_bound", "fixed")

#: the most pixels of a network input, as a multiple of the network size's: ``lower_bound`` brings the shorter side
#: up to the network size, so a 1x640 frame asks for 384x245760 (a 1 GB tensor, 368 640 ViT tokens); a 16:1
#: panorama still passes
MAX_INPUT_FACTOR = 16


def _resized_float(image: np.ndarray, w: int, h: int) -> np.ndarray:
    """``cv2.resize(image.astype(np.float32), (w, h), INTER_CUBIC)`` of an (H, W[, 3]) uint8 array, both arrays in
    this thread's scratch buffers: the result is overwritten by the next call on this thread."""
    f = host_scratch("preprocess.frame", image.shape, np.float32)
    np.copyto(f, image, casting="unsafe")   # (exact: every uint8 is a float32)
    dst = host_scratch("preprocess.resized", (h, w, *image.shape[2:]), np.float32)
    return cv2.resize(f, (w, h), dst=dst, interpolation=cv2.INTER_CUBIC)


def _as_hw(net_size: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(net_size, (int, np.integer)):
        h = w = int(net_size)
    else:
        try:
            h, w = (int(v) for v in net_size)
        except (TypeError, ValueError):
            raise ValueError(f"net_size must be an int or (height, width); got {net_size!r}") from None
    if h <= 0 or w <= 0:
        raise ValueError(f"net_size must be positive; got {net_size!r}")
    return h, w


def _constrain(x: float, multiple: int, min_val: int = 0, max_val: int | None = None) -> int:
    y = int(np.round(x / multiple) * multiple)  # np.round: half to even, as the official code
    if max_val is not None and y > max_val:
        y = int(np.floor(x / multiple) * multiple)
    if y < min_val:
        y = int(np.ceil(x / multiple) * multiple)
    return max(y, multiple)


def network_input_size(height: int, width: int, net_size: int | tuple[int, int],
                       method: str = "minimal", multiple: int = 32) -> tuple[int, int]:
    """Network input (h, w) for an image, following the official ``Resize`` transform.

    "minimal": scale both sides by whichever of net_h/H, net_w/W is closer to 1, round each side to
    a multiple of ``multiple`` (half to even). "lower_bound"/"upper_bound": both sides >= / <= the net
    size. "fixed": exactly ``net_size`` (aspect ratio not kept). 640x480 at 384 -> (384, 512).
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive; got {width}x{height}")
    if method not in RESIZE_METHODS:
        raise ValueError(f"unknown resize method {method!r}; valid: {', '.join(RESIZE_METHODS)}")
    if multiple <= 0:
        raise ValueError(f"multiple must be positive; got {multiple}")
    net_h, net_w = _as_hw(net_size)
    if method == "fixed":
        return _constrain(net_h, multiple), _constrain(net_w, multiple)
    sh, sw = net_h / height, net_w / width
    if method == "lower_bound":
        s = max(sh, sw)
        return (_constrain(s * height, multiple, min_val=net_h), _constrain(s * width, multiple, min_val=net_w))
    if method == "upper_bound":
        s = min(sh, sw)
        return (_constrain(s * height, multiple, max_val=net_h), _constrain(s * width, multiple, max_val=net_w))
    s = sw if abs(1 - sw) < abs(1 - sh) else sh
    return _constrain(s * height, multiple), _constrain(s * width, multiple)


def resize_bicubic(image: Any, size: tuple[int, int]) -> Any:
    """Bicubic resize with OpenCV INTER_CUBIC semantics (a = -0.75, half-pixel centres,
    replicated border, no clipping) of an (H, W[, C]) float32 array to ``size`` = (h, w)."""
    h, w = size
    xp = array_module(image)
    if xp is np:
        out = cv2.resize(np.ascontiguousarray(image, dtype=np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
        # OpenCV drops a single channel's axis; (H, W, 1) in is (h, w, 1) out, as on the CuPy path
        return out.reshape(h, w, 1) if image.ndim == 3 and out.ndim == 2 else out
    from dpt_ros.pipeline import _cuda  # noqa: PLC0415

    return _cuda.resize_bicubic(image, size)


class Preprocessor:
    """RGB uint8 frame -> normalised (1, 3, h, w) float32 torch tensor on ``device``.

    Normalisation is DPT's for every variant (official ``NormalizeImage``, mean = std = 0.5):
    ``(x / 255 - 0.5) / 0.5``; one constant pair, so no per-variant setting exists.

    :param net_size: the variant's network size (int or (height, width)).
    :param method: resize rule, see :func:`network_input_size`.
    :param device: torch device of the returned tensor; a CUDA device selects the CuPy backend
        (fused decode + resize + normalise kernel, DLPack hand-off on torch's current stream).
    :param backend: "numpy" / "cupy"; default: "cupy" for a CUDA device when CuPy is usable,
        else "numpy" (OpenCV on the CPU, then one copy to ``device``).
    """

    def __init__(self, net_size: int | tuple[int, int], method: str = "minimal",
                 device: str | torch.device = "cpu", backend: str | None = None) -> None:
        self.net_size = _as_hw(net_size)
        if method not in RESIZE_METHODS:
            raise ValueError(f"unknown resize method {method!r}; valid: {', '.join(RESIZE_METHODS)}")
        self.method = method
        self.device = torch.device(device)
        if backend is None:
            backend = backend_for_device(self.device)
            if backend == "cupy" and not cupy_available(self.device):
                backend = "numpy"
        if backend == "cupy" and self.device.type != "cuda":   # said before CuPy is imported (or missing)
            raise ValueError(f"backend 'cupy' needs a CUDA device; got device {self.device}")
        self.backend = backend
        self.xp = get_xp(self.backend)
        self._sizes: dict[tuple[int, int], tuple[int, int]] = {}   # input_size's answers (a camera keeps its size)

    def input_size(self, height: int, width: int) -> tuple[int, int]:
        """Network (h, w) for an image of ``height`` x ``width``.

        :raises ValueError: more than ``MAX_INPUT_FACTOR`` times the network size's pixels (an image of an
            extreme aspect ratio under ``lower_bound``, or under ``minimal`` one beyond 16:1 whose shorter side is at
            least about half the network size's: the aspect ratio decides, never the size alone), refused before
            anything is allocated."""
        known = self._sizes.get((height, width))
        if known is not None:
            return known
        h, w = network_input_size(height, width, self.net_size, self.method)
        net_h, net_w = self.net_size
        if h * w > MAX_INPUT_FACTOR * net_h * net_w:
            # (minimal scales by the side whose factor is nearer 1: a 200x20000 image keeps its 384-high scale)
            other = "minimal or upper_bound" if self.method == "lower_bound" else "upper_bound (no side above it)"
            raise ValueError(
                f"a {width}x{height} image gives a {h}x{w} (height x width) network input with resize_method "
                f"{self.method} at network size {net_h}x{net_w}: more than {MAX_INPUT_FACTOR}x its pixels (memory "
                f"and time grow with them); send frames of a less extreme aspect ratio, or use resize_method {other}")
        if len(self._sizes) >= 64:
            self._sizes.clear()
        self._sizes[(height, width)] = (h, w)
        return h, w

    def upload(self, frame: Any) -> Any:
        """``frame`` where this pre-processor reads it: on the CuPy backend the device RGB of an
        :class:`ImageView` (raw bytes uploaded once, decoded on the GPU) or of a host (H, W, 3) uint8
        RGB array (on torch's current stream); else ``frame`` itself. Passing the result to
        ``pre(...)`` and to ``build_cloud(rgb=...)`` uploads each frame once."""
        if self.backend != "cupy" or (not isinstance(frame, ImageView) and array_module(frame) is not np):
            return frame
        from dpt_ros.pipeline import _cuda  # noqa: PLC0415

        return _cuda.upload_rgb(frame, self.device)

    def __call__(self, frame: Any) -> torch.Tensor:
        """Pre-process ``frame``: an (H, W, 3) uint8 RGB array (NumPy or CuPy) or an
        :class:`ImageView` (decoded here; on CuPy decode, resize and normalise are fused)."""
        if self.backend == "cupy":
            from dpt_ros.pipeline import _cuda  # noqa: PLC0415

            return _cuda.preprocess(frame, self.input_size, self.device)
        if isinstance(frame, ImageView):
            frame = decode(frame, np)
        rgb = frame
        if array_module(rgb) is not np:
            rgb = rgb.get()
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 RGB image; got shape {rgb.shape} dtype {rgb.dtype}")
        h, w = self.input_size(rgb.shape[0], rgb.shape[1])
        out = np.empty((1, 3, h, w), np.float32)
        if rgb.strides[2] == 0:  # mono broadcast view: resize one channel, replicate
            res = _resized_float(rgb[:, :, 0], w, h)
            np.multiply(res, 2.0 / 255.0, out=out[0, 0])
            out[0, 0] -= 1.0
            out[0, 1] = out[0, 0]
            out[0, 2] = out[0, 0]
        else:
            four = four_byte_pixels(rgb)
            if four is not None:
                # an rgba8/bgra8 frame's RGB (4 bytes a pixel): put in a compact RGB copy by OpenCV, the same values
                # (NumPy's float copy of the strided view made the 640x480 stage 2.4 instead of 1.0 ms here)
                pixels, bgr = four
                rgb = cv2.cvtColor(pixels, cv2.COLOR_BGRA2RGB if bgr else cv2.COLOR_RGBA2RGB)
            # a bgr8 frame's RGB is its bytes with the channels reversed (stride -1): resized as the bytes lie (BGR)
            # and put in RGB order on the way out (the float copy of the reversed view made the 640x480 stage 3x)
            flip = rgb.strides[2] < 0
            res = _resized_float(rgb[..., ::-1] if flip else rgb, w, h)
            chw = res.transpose(2, 0, 1)
            # (x / 255 - 0.5) / 0.5 == x * 2/255 - 1; written channel-first in one pass
            np.multiply(chw[::-1] if flip else chw, np.float32(2.0 / 255.0), out=out[0])
            out -= 1.0
        t = torch.from_numpy(out)
        return t if self.device.type == "cpu" else t.to(self.device)
