"""Colour maps and stable value ranges for visualising depth / inverse depth."""

from __future__ import annotations

import functools
import math
from typing import Any

import cv2
import numpy as np

from dpt_ros.pipeline._backend import array_module, host_scratch, where_it_lives

_CV_MAPS = {
    "turbo": cv2.COLORMAP_TURBO,
    "inferno": cv2.COLORMAP_INFERNO,
    "viridis": cv2.COLORMAP_VIRIDIS,
    "magma": cv2.COLORMAP_MAGMA,
    "plasma": cv2.COLORMAP_PLASMA,
    "jet": cv2.COLORMAP_JET,
}
#: Names accepted by :func:`colorize`.
COLORMAPS: tuple[str, ...] = (*_CV_MAPS, "gray")
#: values :func:`colorize` works at a time on the CPU (whole rows of them; float32: 256 KB, which stays in a core's
#: cache from one operation to the next)
COLORIZE_BLOCK = 65536


@functools.lru_cache(maxsize=None)
def colormap_lut(name: str) -> np.ndarray:
    """(256, 3) uint8 RGB lookup table (OpenCV's tables, which sample matplotlib's maps)."""
    if name == "gray":
        ramp = np.arange(256, dtype=np.uint8)
        lut = np.stack([ramp, ramp, ramp], axis=1)
    elif name in _CV_MAPS:
        ramp = np.arange(256, dtype=np.uint8).reshape(-1, 1)
        lut = np.ascontiguousarray(cv2.applyColorMap(ramp, _CV_MAPS[name])[:, 0, ::-1])
    else:
        raise ValueError(f"unknown colormap {name!r}; valid: {', '.join(COLORMAPS)}")
    lut.setflags(write=False)
    return lut


@functools.lru_cache(maxsize=None)
def _cv_user_lut(name: str) -> np.ndarray:
    return np.ascontiguousarray(colormap_lut(name).reshape(256, 1, 3))


@functools.lru_cache(maxsize=None)
def _device_lut(name: str, device_id: int) -> Any:
    import cupy  # noqa: PLC0415

    with cupy.cuda.Device(device_id):
        lut = cupy.asarray(colormap_lut(name))
        # cached for every later caller, whatever its stream: complete before any other stream reads it (a copy from
        # pageable memory may return before its DMA has landed)
        cupy.cuda.get_current_stream().synchronize()
        return lut


def colorize(values: Any, colormap: str = "turbo", vmin: float = 0.0, vmax: float = 1.0,
             invalid_color: tuple[int, int, int] = (0, 0, 0)) -> Any:
    """Map an (H, W) array to (H, W, 3) uint8 RGB with a fixed range [vmin, vmax].

    Values are clipped to the range; NaN and +-inf get ``invalid_color``. vmin > vmax reverses the
    map (e.g. near = bright for depth). Works on NumPy and CuPy arrays.
    """
    if not (math.isfinite(vmin) and math.isfinite(vmax)) or vmin == vmax:
        raise ValueError(f"colorize needs a finite, non-empty range; got vmin={vmin}, vmax={vmax}")
    if values.ndim != 2:   # (before the branch: the device one would index past it or return (H, W, 1, 3))
        raise ValueError(f"colorize expects an (H, W) array; got shape {values.shape}")
    xp = array_module(values)
    lut = colormap_lut(colormap)
    # float32, unless the range is narrower than float32 can scale (colormap_min 0, colormap_max 1e-40): its scale was
    # infinite there, a value at vmin NaN (NumPy warned of an overflow and an invalid value on every frame) and a value
    # inside the range an end of the map; such a range is worked in float64
    ftype = np.float32 if abs(255.0 / (vmax - vmin)) <= float(np.finfo(np.float32).max) else np.float64
    scale = ftype(255.0 / (vmax - vmin))
    # (v - vmin) * scale, not v * scale - vmin * scale: for a narrow range far from 0 (a flat wall at 3000 model
    # units) the two large float32 terms cancel and the index loses its low bits. vmin is subtracted as a float32,
    # what that rounding left out is added back with the + 0.5 that rounds to the nearest entry
    low = ftype(vmin)
    offset = ftype(0.5 + (float(low) - vmin) * 255.0 / (vmax - vmin))
    if xp is np:
        # rows at a time, each block's floats and indices in the core's cache (and in this thread's reused buffers,
        # host_scratch), coloured into the rows of the result: at 1080p 4.9 instead of 8.4 ms with the whole frame's
        # temporaries (about 19 MB, applyColorMap's own included, through memory and page-faulted in anew whenever the
        # allocator had given them back)
        out = np.empty((*values.shape, 3), np.uint8)
        step = max(1, COLORIZE_BLOCK // max(1, values.shape[1]))
        for r in range(0, values.shape[0] if values.size else 0, step):
            v, rows = values[r:r + step], out[r:r + step]
            t = np.subtract(v, low, dtype=ftype, out=host_scratch("colorize.float", v.shape, ftype))
            idx = host_scratch("colorize.index", v.shape, np.uint8)
            with np.errstate(over="ignore", invalid="ignore"):   # (far beyond a float64 range's ends: +-inf, clipped)
                t *= scale
                t += offset
                np.clip(t, 0.0, 255.0, out=t)
                np.copyto(idx, t, casting="unsafe")
            # applyColorMap with a user table copies its 3 bytes per entry: RGB table in, RGB out
            cv2.applyColorMap(idx, _cv_user_lut(colormap), dst=rows)
            mask = np.isfinite(v, out=host_scratch("colorize.mask", v.shape, bool))
            if not mask.all():
                np.logical_not(mask, out=mask)   # the invalid values
                # (copyto(where=), not a boolean set-item: no index arrays, for a frame of mostly invalid values too)
                np.copyto(rows, np.asarray(invalid_color, np.uint8), where=mask[:, :, None])
        return out
    # CuPy: where the values live (not CuPy's current device and stream), with no host synchronisation
    with where_it_lives(values):
        lut = _device_lut(colormap, values.device.id)
        t = (values.astype(ftype, copy=False) - low) * scale + offset
        idx = xp.clip(xp.nan_to_num(t, nan=0.0), 0.0, 255.0).astype(xp.uint8)
        return xp.where(xp.isfinite(values)[:, :, None], lut[idx], xp.asarray(invalid_color, dtype=xp.uint8))


class RunningRange:
    """Display range from percentiles, smoothed over frames (never per-frame min/max).

    ``update(values)`` takes the ``low``/``high`` percentiles of the finite values (on a subsample of
    about ``max_samples`` pixels) and moves the range toward them by ``1 - momentum``; the first
    frame sets it directly. The range therefore changes slowly and the same scene keeps its colours.
    """

    def __init__(self, low: float = 2.0, high: float = 98.0, momentum: float = 0.9,
                 max_samples: int = 20000) -> None:
        if not 0.0 <= low < high <= 100.0:
            raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100; got {low}, {high}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1); got {momentum}")
        self.low, self.high, self.momentum, self.max_samples = low, high, momentum, max_samples
        self.vmin: float | None = None
        self.vmax: float | None = None

    def reset(self) -> None:
        self.vmin = self.vmax = None

    def update(self, values: Any) -> tuple[float, float]:
        """Fold one frame in; returns the smoothed (vmin, vmax) (always vmax > vmin)."""
        xp = array_module(values)
        if xp is np:
            lo, hi = self._numpy_percentiles(values)
            if lo is None:
                return (0.0, 1.0) if self.vmin is None else (self.vmin, self.vmax)
            return self._fold(lo, hi)
        with where_it_lives(values):
            flat = values.reshape(-1)
            step = max(1, flat.size // self.max_samples)
            sample = flat[::step]
            sample = sample[xp.isfinite(sample)]
            if sample.size == 0:
                if self.vmin is None:
                    return 0.0, 1.0
                return self.vmin, self.vmax
            q = xp.asarray([self.low, self.high], dtype=xp.float64)
            lo, hi = (float(v) for v in xp.percentile(sample.astype(xp.float64), q).tolist())
        return self._fold(lo, hi)

    def _fold(self, lo: float, hi: float) -> tuple[float, float]:
        if self.vmin is None:
            self.vmin, self.vmax = lo, hi
        else:
            a = 1.0 - self.momentum
            self.vmin += a * (lo - self.vmin)
            self.vmax += a * (hi - self.vmax)
        if self.vmax <= self.vmin:
            self.vmax = self.vmin + max(abs(self.vmin) * 1e-6, 1e-6)
        return self.vmin, self.vmax

    def _numpy_percentiles(self, values: np.ndarray) -> tuple[float | None, float | None]:
        """The ``low`` and ``high`` percentiles of a NumPy frame's finite sampled values, the values of
        ``np.percentile(sample, (low, high))`` (its default, linear method) bit for bit, or (None, None) where none
        is finite; the same sample as the CuPy path, every ``step``-th value in C order.

        np.percentile of the 20 000 samples took 0.4 ms of the 0.5 ms update at 640x480 (2 cores): it partitions
        a float64 copy around six positions, with Python steps around it. Here the sample is sorted once in its own
        type (float32 sorts faster than float64, and float64 keeps its order and every value), NaN sorting
        last and -inf / +inf at the ends, so the finite values are one slice, and the two percentiles are read from
        it with np.percentile's arithmetic in Python floats (float64): about 0.1 ms."""
        size = values.size
        step = max(1, size // self.max_samples)
        if values.flags.c_contiguous:
            sample = values.reshape(-1)[::step]
        else:   # every step-th value in C order without a contiguous copy of the frame (reshape would make one)
            sample = values[np.unravel_index(np.arange(0, size, step), values.shape)]
        finite = np.sort(sample)   # (in its own type: the same order as in float64)
        if finite.dtype.kind == "f":   # -inf sorts first, NaN after +inf
            inf = finite.dtype.type(np.inf)
            finite = finite[int(np.searchsorted(finite, -inf, side="right")):int(np.searchsorted(finite, inf))]
        if finite.size == 0:
            return None, None
        return _linear_percentile(finite, self.low), _linear_percentile(finite, self.high)


def _linear_percentile(ordered: np.ndarray, q: float) -> float:
    """np.percentile(ordered, q) (method "linear") of a sorted 1-D array without NaN, in np.percentile's arithmetic:
    the virtual index (n - 1) * (q / 100), the lower neighbour plus the difference times the fraction, or from the
    upper one for a fraction of at least 1/2 (numpy's _lerp), an index past the end the last value.
    test_running_range_percentiles_are_numpys pins it against np.percentile."""
    n = ordered.size
    index = (n - 1) * (float(q) / 100.0)
    below = math.floor(index)
    if index >= n - 1:
        return float(ordered[-1])
    a, b = float(ordered[below]), float(ordered[below + 1])
    t = index - below
    diff = b - a
    return b - diff * (1.0 - t) if t >= 0.5 else a + diff * t
