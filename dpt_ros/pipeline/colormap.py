"""Colour maps and stable value ranges for visualising depth / inverse depth."""

from __future__ import annotations

import functools
import math
from typing import Any

import cv2
import numpy as np

from dpt_ros.pipeline._backend import array_module, where_it_lives

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
        t = np.subtract(values, low, dtype=ftype)
        with np.errstate(over="ignore", invalid="ignore"):   # (far beyond a float64 range's ends: +-inf, clipped)
            t *= scale
            t += offset
            np.clip(t, 0.0, 255.0, out=t)
            idx = t.astype(np.uint8)
        # applyColorMap with a user table copies its 3 bytes per entry: RGB table in, RGB out
        out = cv2.applyColorMap(idx, _cv_user_lut(colormap))
    else:   # where the values live (not CuPy's current device and stream), with no host synchronisation
        with where_it_lives(values):
            lut = _device_lut(colormap, values.device.id)
            t = (values.astype(ftype, copy=False) - low) * scale + offset
            idx = xp.clip(xp.nan_to_num(t, nan=0.0), 0.0, 255.0).astype(xp.uint8)
            return xp.where(xp.isfinite(values)[:, :, None], lut[idx], xp.asarray(invalid_color, dtype=xp.uint8))
    valid = np.isfinite(values)
    if not valid.all():
        out[~valid] = invalid_color
    return out


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
        if self.vmin is None:
            self.vmin, self.vmax = lo, hi
        else:
            a = 1.0 - self.momentum
            self.vmin += a * (lo - self.vmin)
            self.vmax += a * (hi - self.vmax)
        if self.vmax <= self.vmin:
            self.vmax = self.vmin + max(abs(self.vmin) * 1e-6, 1e-6)
        return self.vmin, self.vmax
