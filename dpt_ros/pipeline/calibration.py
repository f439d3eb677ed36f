"""Metric calibration of a relative model: ``depth.scale`` / ``depth.shift`` from a reference depth.

A relative DPT model predicts inverse depth up to an unknown scale and shift (the MiDaS training is
affine-invariant in inverse depth). The node turns it into metres with
``depth = 1 / (scale * inverse_depth + shift)``, so with a reference depth of the same view (a depth
camera registered to the colour camera, a lidar projected into it) the two numbers are a straight-line
fit of ``1 / reference`` against ``inverse_depth`` over the pixels where the reference is valid.

The fit is least squares, refitted a few times without the pixels with the largest residuals
(``trim``): depth edges, where the two images disagree by a pixel, and reflective or dark surfaces the
reference sensor got wrong would otherwise pull the line. The model's own scale and shift vary from
frame to frame, so one fixed calibration is an approximation; :class:`Calibration` says how good it is
(median relative depth error over the frames) and how much the per-frame fits spread.
"""
from __future__ import annotations

import dataclasses
import math

import cv2
import numpy as np


class CalibrationFitError(ValueError):
    """No usable calibration: too few valid pixels, or the two images do not go together."""


#: the fewest (inverse depth, reference) pairs :func:`fit_scale_shift` fits a line to
MIN_FIT_PIXELS = 10

#: a reference depth whose measured pixels' median is beyond this many metres, which no depth camera reaches, is taken
#: for millimetres in a 32FC1 image (REP 118 has 32FC1 depth in metres): the node's depth.align and calibrate_depth
#: say so rather than fit depths 1000x too far
MAX_REFERENCE_M = 100.0


def reference_to_size(reference: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A reference depth at the inverse depth's (H, W) size (nearest neighbour: depths are never blended);
    refused when the aspect ratios differ, as the images would then not be of one view."""
    if reference.shape == shape:
        return reference
    (rh, rw), (h, w) = reference.shape, shape
    if abs((rw / rh) / (w / h) - 1.0) > 0.01:
        raise CalibrationFitError(f"reference depth {rw}x{rh} and inverse depth {w}x{h} have different aspect "
                                  "ratios: register the depth sensor to the colour camera the node sees")
    # the source pixel whose area holds each output pixel's centre (INTER_NEAREST takes floor(i * scale), which
    # shifts the reference by up to a source pixel toward the top-left: 0.75 px from 1280 to 512 columns)
    return cv2.resize(reference, (w, h), interpolation=cv2.INTER_NEAREST_EXACT)


def inverse_depth_pairs(inverse_depth: np.ndarray, reference_m: np.ndarray, min_depth: float = 0.1,
                        max_depth: float = 20.0, stride: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """(model inverse depth, 1 / reference metres) at the pixels (every ``stride``-th in both directions)
    where both are finite and the reference lies in ``[min_depth, max_depth]`` (REP 117 NaN / +-Inf and a
    16UC1 reference's 0 are no measurement). The two images must have one size."""
    if inverse_depth.shape != reference_m.shape or inverse_depth.ndim != 2:
        raise CalibrationFitError(f"inverse depth {inverse_depth.shape} and reference {reference_m.shape} must be "
                                  "two images of one size (register the depth sensor to the colour camera)")
    if not 0.0 <= min_depth < max_depth:
        raise CalibrationFitError(f"need 0 <= min_depth < max_depth; got {min_depth}, {max_depth}")
    x = np.asarray(inverse_depth[::stride, ::stride], np.float64).ravel()
    ref = np.asarray(reference_m[::stride, ::stride], np.float64).ravel()
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(x) & np.isfinite(ref) & (ref >= max(min_depth, 1e-6)) & (ref <= max_depth)
    return x[ok], 1.0 / ref[ok]


def fit_scale_shift(x: np.ndarray, y: np.ndarray, trim: float = 0.1, iterations: int = 3) -> tuple[float, float]:
    """``(scale, shift)`` minimising ``sum((scale * x + shift - y)^2)``, refitted ``iterations`` times
    without the ``trim`` fraction of points with the largest residuals."""
    if not 0.0 <= trim < 0.5:
        raise CalibrationFitError(f"trim must be in [0, 0.5); got {trim}")
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if x.size < MIN_FIT_PIXELS:
        raise CalibrationFitError(f"only {x.size} pixels with a valid reference depth; at least {MIN_FIT_PIXELS} are "
                                  f"needed")
    keep = np.ones(x.size, bool)
    for i in range(iterations + 1):
        xs, ys = x[keep], y[keep]
        var = xs.var()
        if not var > 0.0:
            raise CalibrationFitError("the model's inverse depth is constant over the valid pixels: nothing to fit")
        if not ys.std() > 1e-9 * abs(ys.mean()):   # (rounding leaves a scale of 1e-35 from a constant one)
            raise CalibrationFitError(
                "the reference depth is the same at every valid pixel (a flat wall square to the cameras, or a "
                "saturated sensor): a scale and a shift cannot both be fitted; calibrate on a view with near and far "
                "surfaces")
        scale = float(np.mean((xs - xs.mean()) * (ys - ys.mean())) / var)
        shift = float(ys.mean() - scale * xs.mean())
        if i == iterations or trim == 0.0:
            break
        residual = np.abs(scale * x + shift - y)
        keep = residual <= np.quantile(residual, 1.0 - trim)
    return scale, shift


@dataclasses.dataclass(frozen=True)
class Calibration:
    """A fitted calibration and how well it holds over the frames it came from."""

    scale: float
    shift: float
    frames: int
    pixels: int
    median_abs_rel: float          # median over pixels of |depth - reference| / reference with this calibration
    frame_scale_spread: float      # (max - min) / median of the per-frame fits' scale (0: one frame)

    def parameters(self) -> dict[str, float]:
        return {"depth.scale": self.scale, "depth.shift": self.shift}


def calibrate(pairs: list[tuple[np.ndarray, np.ndarray]], min_depth: float = 0.1, max_depth: float = 20.0,
              stride: int = 4, trim: float = 0.1) -> Calibration:
    """One calibration from several (inverse depth, reference metres) frames, plus per-frame fits for the
    spread. A negative or zero scale means the model's inverse depth does not grow as the reference's does
    (other views, or the reference's units are not metres): refused with that reason."""
    if not pairs:
        raise CalibrationFitError("no frames to calibrate from")
    per_frame = [inverse_depth_pairs(inv, ref, min_depth, max_depth, stride) for inv, ref in pairs]
    x = np.concatenate([p[0] for p in per_frame])
    y = np.concatenate([p[1] for p in per_frame])
    try:
        scale, shift = fit_scale_shift(x, y, trim)
    except CalibrationFitError as e:
        # (millimetres in 32FC1 lie beyond max_depth, all of them: "only 0 pixels" said nothing of why)
        measured = np.concatenate([np.asarray(ref[::stride, ::stride], np.float64).ravel() for _, ref in pairs])
        with np.errstate(invalid="ignore"):
            measured = measured[np.isfinite(measured) & (measured > 0)]
        if x.size < MIN_FIT_PIXELS and measured.size and (median := float(np.median(measured))) > MAX_REFERENCE_M:
            raise CalibrationFitError(
                f"{e}: the reference's median depth is {median:.4g} m, beyond {MAX_REFERENCE_M:g} m, more than any "
                f"depth camera measures: millimetres in a 32FC1 image, it seems (REP 118: 32FC1 depth is in metres; "
                f"16UC1 is the millimetre encoding); publish the reference as 32FC1 metres or 16UC1 millimetres "
                f"(a bag converted to 32FC1 without dividing by 1000: convert it again)") from None
        raise
    if not (scale > 0.0 and math.isfinite(scale) and math.isfinite(shift)):
        raise CalibrationFitError(
            f"fitted scale {scale:.4g} is not positive: the model's inverse depth does not increase where the "
            "reference gets nearer. Are both images of the same view, and is the reference in metres "
            "(32FC1) or millimetres (16UC1)?")
    predicted = scale * x + shift
    with np.errstate(divide="ignore", invalid="ignore"):
        depth, ref = 1.0 / predicted, 1.0 / y
        rel = np.where(predicted > 0, np.abs(depth - ref) / ref, np.inf)
    scales = []
    for fx, fy in per_frame:
        try:
            scales.append(fit_scale_shift(fx, fy, trim)[0])
        except CalibrationFitError:
            continue
    spread = float((max(scales) - min(scales)) / abs(np.median(scales))) if len(scales) > 1 else 0.0
    return Calibration(scale, shift, len(pairs), int(x.size), float(np.median(rel)), spread)


@dataclasses.dataclass(frozen=True)
class DepthErrors:
    """Standard monocular-depth error figures of a metric depth against a reference, over valid pixels."""

    frames: int
    pixels: int
    abs_rel_median: float     # median of |depth - reference| / reference
    abs_rel_mean: float       # mean of the same (AbsRel)
    rmse_m: float             # root mean square error in metres
    delta_1_25: float         # fraction of pixels with max(depth / reference, reference / depth) < 1.25


def depth_errors(pairs: list[tuple[np.ndarray, np.ndarray]], min_depth: float = 0.1, max_depth: float = 20.0,
                 stride: int = 4) -> DepthErrors:
    """Errors of (depth metres, reference metres) frames at the pixels where both are finite and positive and
    the reference lies in ``[min_depth, max_depth]`` (a depth of NaN or +-Inf, REP 117, is no prediction)."""
    if not pairs:
        raise CalibrationFitError("no frames to evaluate")
    d_all, r_all = [], []
    for depth, ref in pairs:
        # 1 / depth as the "inverse depth" of inverse_depth_pairs: one rule for which pixels count
        with np.errstate(divide="ignore", invalid="ignore"):
            depth = np.asarray(depth, np.float64)
            inv_pred = np.where((depth > 0) & np.isfinite(depth), 1.0 / depth, np.nan)
        x, y = inverse_depth_pairs(inv_pred, ref, min_depth, max_depth, stride)
        d_all.append(1.0 / x)
        r_all.append(1.0 / y)
    d, r = np.concatenate(d_all), np.concatenate(r_all)
    if d.size == 0:
        raise CalibrationFitError("no pixel has both a predicted depth and a reference depth in range")
    rel = np.abs(d - r) / r
    ratio = np.maximum(d / r, r / d)
    return DepthErrors(len(pairs), int(d.size), float(np.median(rel)), float(rel.mean()),
                       float(np.sqrt(np.mean((d - r) ** 2))), float(np.mean(ratio < 1.25)))
