"""Lens distortion of unrectified images: the ROS models, forward and inverse, and per-pixel rays.

A raw (``image_raw``, not rectified) image was taken through a lens that bends straight lines; its
CameraInfo carries the model in ``distortion_model`` and the coefficients in ``D``. Back-projecting
such an image with K alone puts every off-centre point at the wrong angle: several per cent at the
corners of an ordinary webcam, far more with a wide-angle lens. Here each pixel gets the ray of the
undistorted direction instead.

All three models of ``sensor_msgs/distortion_models`` act on normalised image coordinates
(``x_d = (u - cx) / fx``, ``y_d = (v - cy) / fy``), which are the same for any binning, ROI or
resize of the image as long as fx, fy, cx, cy are adjusted with it:

``plumb_bob`` and ``rational_polynomial`` are one model to ROS's image_geometry, which hands D to OpenCV as it
is: D = (k1, k2, p1, p2[, k3[, k4, k5, k6[, s1, s2, s3, s4[, tau_x, tau_y]]]]), 4, 5, 8, 12 or 14 values, the
ones not given zero (so plumb_bob with 8 values is the rational model, rational_polynomial with 5 is plumb_bob)::

    r2 = x^2 + y^2
    g  = (1 + k1 r2 + k2 r2^2 + k3 r2^3) / (1 + k4 r2 + k5 r2^2 + k6 r2^3)
    x'' = x g + 2 p1 x y + p2 (r2 + 2 x^2) + s1 r2 + s2 r2^2
    y'' = y g + p1 (r2 + 2 y^2) + 2 p2 x y + s3 r2 + s4 r2^2
    (x_d, y_d) = (x'', y'') projected onto the sensor tilted by tau_x, tau_y (OpenCV's tilted-sensor
                 model, a homography; the identity when both are zero)

``equidistant`` (fisheye; D = k1, k2, k3, k4; OpenCV's fisheye module takes exactly 4)::

    theta = atan(sqrt(x^2 + y^2));  theta_d = theta (1 + k1 theta^2 + k2 theta^4 + k3 theta^6 + k4 theta^8)
    (x_d, y_d) = (x, y) * theta_d / sqrt(x^2 + y^2)

The inverse has no closed form; :func:`undistort` solves it by Newton's method in float64 (:func:`pixel_rays`
only at every 8th pixel of a large grid, interpolating in between where that passes the same checks; a fisheye's
theta on a 1-D table of theta_d, each pixel's interpolated and refined by one Newton step) and
marks a pixel invalid (NaN) where the solution does not reproduce the pixel to 1e-6 (a thousandth
of a pixel at f = 1000) or lies beyond the first fold, where the model stops being one-to-one
(strong barrel distortion at the corners; its polynomial may rise again far out, but that branch is
not the lens) and for fisheye rays at 90 degrees and more.
"""

from __future__ import annotations

import collections
import functools
import math
import threading
import time
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:   # (cloud imports this module)
    from dpt_ros.pipeline.cloud import Intrinsics

# distortion_model -> the numbers of D coefficients OpenCV takes for it (image_geometry passes D of plumb_bob and
# rational_polynomial to cv::undistortPoints, of equidistant to cv::fisheye::undistortPoints, as it is);
# ``Intrinsics`` checks a CameraInfo's model and D against this
_OPENCV_LENGTHS = (4, 5, 8, 12, 14)
MODELS: dict[str, tuple[int, ...]] = {"plumb_bob": _OPENCV_LENGTHS, "rational_polynomial": _OPENCV_LENGTHS,
                                      "equidistant": (4,)}
# the number of coefficients each model is named for (sensor_msgs/distortion_models)
FORM_LENGTH: dict[str, int] = {"plumb_bob": 5, "rational_polynomial": 8, "equidistant": 4}

_NEWTON_STEPS = 20   # at most; an ordinary lens converges in 4 to 6
_STEP_DONE = 1e-13
_MAX_RADIUS = 20.0   # tan(87 degrees): how far off-axis the fold of a plumb_bob / rational lens is looked for
_TOLERANCE = 1e-6   # normalised units: 1e-3 px at a focal length of 1000 px


def _coefficients(d: tuple[float, ...]) -> tuple[float, ...]:
    """(k1, k2, k3, k4, k5, k6, p1, p2, s1, s2, s3, s4) of a plumb_bob / rational_polynomial D (missing ones zero)."""
    k1, k2, p1, p2, k3, k4, k5, k6, s1, s2, s3, s4 = (tuple(d) + (0.0,) * 12)[:12]
    return k1, k2, k3, k4, k5, k6, p1, p2, s1, s2, s3, s4


def _tilt(d: tuple[float, ...]) -> np.ndarray | None:
    """The homography from the untilted to the tilted sensor plane (OpenCV's tilted-sensor model: the rotation
    R = R_y(tau_y) R_x(tau_x), then the projection back along the optical axis), or None without tilt."""
    tau_x, tau_y = (tuple(d[12:14]) + (0.0, 0.0))[:2]
    if tau_x == 0.0 and tau_y == 0.0:
        return None
    cx, sx, cy, sy = np.cos(tau_x), np.sin(tau_x), np.cos(tau_y), np.sin(tau_y)
    rot = np.array([[cy, 0.0, -sy], [0.0, 1.0, 0.0], [sy, 0.0, cy]]) @ np.array([[1.0, 0.0, 0.0], [0.0, cx, sx],
                                                                               [0.0, -sx, cx]])
    back = np.array([[rot[2, 2], 0.0, -rot[0, 2]], [0.0, rot[2, 2], -rot[1, 2]], [0.0, 0.0, 1.0]])
    return back @ rot


def _homography(m: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    w = m[2, 0] * x + m[2, 1] * y + m[2, 2]
    w = np.where(w > 0, w, np.nan)   # behind the (tilted) sensor: no image point
    return (m[0, 0] * x + m[0, 1] * y + m[0, 2]) / w, (m[1, 0] * x + m[1, 1] * y + m[1, 2]) / w


def distort(model: str, d: tuple[float, ...], x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distorted normalised coordinates of undistorted ones (the formulas in the module docstring)."""
    if not model:
        return x, y
    if model == "equidistant":
        r = np.hypot(x, y)
        theta = np.arctan(r)
        t2 = theta * theta
        theta_d = theta * (1 + t2 * (d[0] + t2 * (d[1] + t2 * (d[2] + t2 * d[3]))))
        with np.errstate(invalid="ignore", divide="ignore"):
            s = np.where(r > 0, theta_d / r, 1.0)
        return x * s, y * s
    k1, k2, k3, k4, k5, k6, p1, p2, s1, s2, s3, s4 = _coefficients(d)
    r2 = x * x + y * y
    g = (1 + r2 * (k1 + r2 * (k2 + r2 * k3))) / (1 + r2 * (k4 + r2 * (k5 + r2 * k6)))
    xd = x * g + 2 * p1 * x * y + p2 * (r2 + 2 * x * x) + r2 * (s1 + s2 * r2)
    yd = y * g + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y + r2 * (s3 + s4 * r2)
    tilt = _tilt(d)
    return (xd, yd) if tilt is None else _homography(tilt, xd, yd)


def _rational_map(c: tuple[float, ...], x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, ...]:
    """(x'', y'') of the untilted plumb_bob / rational model at (x, y), ``c`` its :func:`_coefficients`, and the
    Jacobian (d x''/dx, d x''/dy, d y''/dx, d y''/dy)."""
    k1, k2, k3, k4, k5, k6, p1, p2, s1, s2, s3, s4 = c
    r2 = x * x + y * y
    a = 1 + r2 * (k1 + r2 * (k2 + r2 * k3))
    b = 1 + r2 * (k4 + r2 * (k5 + r2 * k6))
    g = a / b
    dg = ((k1 + r2 * (2 * k2 + 3 * k3 * r2)) * b - a * (k4 + r2 * (2 * k5 + 3 * k6 * r2))) / (b * b)  # dg/dr2
    fx = x * g + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
    fy = y * g + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    jxx = g + 2 * x * x * dg + 2 * p1 * y + 6 * p2 * x
    jxy = 2 * x * y * dg + 2 * p1 * x + 2 * p2 * y   # d fx / dy = d fy / dx without the thin prism
    jyx = jxy
    jyy = g + 2 * y * y * dg + 6 * p1 * y + 2 * p2 * x
    if any((s1, s2, s3, s4)):   # s1 r2 + s2 r2^2 in x'', s3 r2 + s4 r2^2 in y'': d/dx = 2 x (s + 2 s' r2), ...
        fx, fy = fx + r2 * (s1 + s2 * r2), fy + r2 * (s3 + s4 * r2)
        ex, ey = 2 * (s1 + 2 * s2 * r2), 2 * (s3 + 2 * s4 * r2)
        jxx, jxy, jyx, jyy = jxx + ex * x, jxy + ex * y, jyx + ey * x, jyy + ey * y
    return fx, fy, jxx, jxy, jyx, jyy


@functools.lru_cache(maxsize=64)
def _rational_fold(c: tuple[float, ...]) -> float:
    """The radius where r * g(r^2) of the radial part stops growing (inf: not within _MAX_RADIUS). Only the branch
    around the optical axis is the lens: beyond it the polynomial folds back (and may rise again far out), giving
    pixels a second pre-image."""
    k1, k2, k3, k4, k5, k6 = c[:6]
    r = np.linspace(0.0, _MAX_RADIUS, 20001)[1:]
    q = r * r
    a = 1 + q * (k1 + q * (k2 + q * k3))
    b = 1 + q * (k4 + q * (k5 + q * k6))
    with np.errstate(all="ignore"):
        slope = a / b + 2 * q * ((k1 + q * (2 * k2 + 3 * k3 * q)) * b - a * (k4 + q * (2 * k5 + 3 * k6 * q))) / (b * b)
    folds = np.flatnonzero(~(slope > 0))
    return float(r[folds[0]]) if folds.size else math.inf


def _undistort_rational(d: tuple[float, ...], xd: np.ndarray, yd: np.ndarray,
                        start: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    c = _coefficients(d)
    tilt = _tilt(d)
    if tilt is not None:   # the tilt is a homography: undone exactly, before the polynomial
        xd, yd = _homography(np.linalg.inv(tilt), xd, yd)
    x, y = (xd.copy(), yd.copy()) if start is None else (start[0].copy(), start[1].copy())
    det = np.ones_like(x)
    for _ in range(_NEWTON_STEPS):
        fx, fy, jxx, jxy, jyx, jyy = _rational_map(c, x, y)
        fx, fy = fx - xd, fy - yd
        det = jxx * jyy - jxy * jyx
        step_x, step_y = (jyy * fx - jxy * fy) / det, (jxx * fy - jyx * fx) / det
        x -= step_x
        y -= step_y
        if not ((np.abs(step_x) > _STEP_DONE) | (np.abs(step_y) > _STEP_DONE)).any():
            break   # converged (points that diverged are NaN by now and fail the checks below)
    r_fold = _rational_fold(c)
    ok = (det > 0) & (x * x + y * y < r_fold * r_fold)   # det: the tangential and prism terms can fold it too
    return np.where(ok, x, np.nan), np.where(ok, y, np.nan)


def _equidistant_slope(d: tuple[float, ...], t: np.ndarray) -> np.ndarray:   # d theta_d / d theta
    t2 = t * t
    return 1 + t2 * (3 * d[0] + t2 * (5 * d[1] + t2 * (7 * d[2] + t2 * 9 * d[3])))


@functools.lru_cache(maxsize=64)
def _equidistant_fold(d: tuple[float, ...]) -> float:
    """The angle up to which rays are the lens: a ray at 90 degrees or more has no depth along the optical axis;
    past the first angle where theta_d(theta) stops growing, the model folds back and pixels have a second
    pre-image."""
    t = np.linspace(0.0, np.pi / 2, 20001)[1:]
    folds = np.flatnonzero(~(_equidistant_slope(d, t) > 0))
    return float(t[folds[0]]) if folds.size else np.pi / 2


def _undistort_equidistant(d: tuple[float, ...], xd: np.ndarray, yd: np.ndarray,
                           start: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    theta_d = np.hypot(xd, yd)
    theta = np.minimum(theta_d, 1.5) if start is None else np.arctan(np.hypot(*start))
    for _ in range(_NEWTON_STEPS):
        t2 = theta * theta
        f = theta * (1 + t2 * (d[0] + t2 * (d[1] + t2 * (d[2] + t2 * d[3])))) - theta_d
        step = f / _equidistant_slope(d, theta)
        theta -= step
        if not (np.abs(step) > _STEP_DONE).any():
            break
    ok = (theta >= 0) & (theta < _equidistant_fold(tuple(d)))
    s = np.where(theta_d > 0, np.tan(np.where(ok, theta, 0.0)) / theta_d, 1.0)
    return np.where(ok, xd * s, np.nan), np.where(ok, yd * s, np.nan)


def undistort(model: str, d: tuple[float, ...], xd: np.ndarray, yd: np.ndarray,
              start: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Undistorted normalised coordinates (float64) of distorted ones; NaN where there is none. ``start``: finite
    undistorted coordinates near the solution to start Newton's method from (else the distorted ones)."""
    xd, yd = np.asarray(xd, np.float64), np.asarray(yd, np.float64)
    if not model:
        return xd, yd
    solve = _undistort_equidistant if model == "equidistant" else _undistort_rational
    with np.errstate(all="ignore"):   # iterations far outside the image's field may overflow: NaN below
        x, y = solve(d, xd, yd, start)
        rx, ry = distort(model, d, x, y)
        bad = ~(np.hypot(rx - xd, ry - yd) <= _TOLERANCE)   # also NaN
    x[bad] = np.nan
    y[bad] = np.nan
    return x, y


#: pixel_rays solves the lens exactly at every _GRID_STEP-th ray of its grid in each direction and interpolates
#: between (a cubic through 4 nodes each way), then keeps an interpolated ray only where it passes the checks of
#: an exact one (on the lens's branch) and reprojects onto its pixel to _GRID_TOLERANCE, a hundredth of
#: _TOLERANCE; the others (the band along a fold, where the inverse bends fast; strong lenses at a short focal
#: length) by Newton's method from the interpolated ray (1 or 2 steps) or, without one, as undistort does. 1/64 of
#: the rays and one forward projection instead of up to 20 Newton steps on each: 4 to 8x less time at 1080p and
#: 4K on a 2-core CPU, the same rays to float32's rounding (test_pipeline_distortion.py measures the bound). Where 8
#: rays span more than _GRID_SPAN (normalised units: a focal length under 640 px at stride 1, e.g. a 640x480
#: webcam's 400 to 600), the cubic between nodes 8 apart misses _GRID_TOLERANCE for most rays of an ordinary lens
#: (88 % redone), so every 4th ray is solved (11 %).
#: Fisheye (equidistant) rays are a function of theta_d alone: :func:`_equidistant_grid`. Grids under
#: _GRID_MIN_RAYS take little time: solved directly.
_GRID_STEP = 8
_GRID_SPAN = 0.0125
_GRID_TOLERANCE = 1e-8
_GRID_MIN_RAYS = 100_000


def _cubic_weights(n: int) -> tuple[np.ndarray, ...]:
    """Lagrange weights of the nodes at -1, 0, 1, 2 for the points t = 0, 1/n, ..., (n-1)/n between nodes 0 and 1."""
    t = np.arange(n) / n
    return (-t * (t - 1) * (t - 2) / 6, (t + 1) * (t - 1) * (t - 2) / 2, -(t + 1) * t * (t - 2) / 2,
            (t + 1) * t * (t - 1) / 6)


def _interpolate(nodes: np.ndarray, n: int, rows: int, cols: int) -> np.ndarray:
    """(rows, cols) values between ``nodes`` of every n-th row and column (node (1, 1) at (0, 0)); NaN wherever one
    of the 4 x 4 nodes around is NaN."""
    w = _cubic_weights(n)
    cells_x, cells_y = nodes.shape[1] - 3, nodes.shape[0] - 3
    across = np.zeros((nodes.shape[0], cells_x, n))
    for k, wk in enumerate(w):
        across += nodes[:, k:k + cells_x, None] * wk
    across = across.reshape(nodes.shape[0], cells_x * n)[:, :cols]
    out = np.zeros((cells_y, n, cols))
    tmp = np.empty_like(out)
    for k, wk in enumerate(w):
        np.multiply(across[k:k + cells_y, None, :], wk[:, None], out=tmp)
        out += tmp
    return out.reshape(cells_y * n, cols)[:rows]


def _within_fold(model: str, d: tuple[float, ...], x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Where undistorted (x, y) lie inside the radial fold that :func:`undistort` stops at (for fisheye rays also
    short of 90 degrees)."""
    if model == "equidistant":
        theta = _equidistant_fold(tuple(d))
        return x * x + y * y < (math.tan(theta) ** 2 if theta < np.pi / 2 else np.inf)
    r_fold = _rational_fold(_coefficients(d))
    return x * x + y * y < r_fold * r_fold


@functools.lru_cache(maxsize=64)
def _rational_reach(d: tuple[float, ...]) -> float:
    """A bound on |(x_d, y_d)| of a plumb_bob / rational model at every point inside its radial fold: a pixel
    farther out has no ray :func:`undistort` accepts (inf without a fold, or with OpenCV's tilted sensor). The
    radial part r |g(r^2)|, the tangential one at most 4 (|p1| + |p2|) r^2, the prism's (|s1| + |s3|) r^2 +
    (|s2| + |s4|) r^4, their greatest over [0, fold] sampled finely, with a margin (0.1 % and 1e-3) far beyond
    _TOLERANCE and the sampling's error."""
    k1, k2, k3, k4, k5, k6, p1, p2, s1, s2, s3, s4 = c = _coefficients(d)
    r_fold = _rational_fold(c)
    if not math.isfinite(r_fold) or _tilt(d) is not None:
        return math.inf
    r = np.linspace(0.0, r_fold, 20001)
    q = r * r
    with np.errstate(all="ignore"):
        g = (1 + q * (k1 + q * (k2 + q * k3))) / (1 + q * (k4 + q * (k5 + q * k6)))
        bound = r * np.abs(g) + q * (4 * (abs(p1) + abs(p2)) + abs(s1) + abs(s3) + q * (abs(s2) + abs(s4)))
    top = float(np.max(bound))
    return top * 1.001 + 1e-3 if math.isfinite(top) else math.inf


def _folds_sideways(d: tuple[float, ...], x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Where the Jacobian of a plumb_bob / rational model at undistorted (x, y) is not positive (its tangential
    and prism terms fold the plane too; the radial part alone does only beyond :func:`_rational_fold`)."""
    _, _, jxx, jxy, jyx, jyy = _rational_map(_coefficients(d), x, y)
    return ~(jxx * jyy - jxy * jyx > 0)


#: the least Jacobian determinant of the lens at the nodes around a cell under which its rays are checked for a
#: sideways fold one by one; above it (an ordinary lens: 0.5 to 1.5 everywhere) a fold between nodes 8 rays apart
#: would need the determinant to fall by more than that within a cell, where the cubic would not reproject to
#: _GRID_TOLERANCE either
_DET_MARGIN = 0.25


def undistort_grid(model: str, d: tuple[float, ...], xd: np.ndarray, yd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`undistort` of every (xd[i], yd[j]) of evenly spaced 1-D ``xd`` and ``yd``: arrays of shape
    (len(yd), len(xd)), each ray one that :func:`undistort` would accept (the same checks), by way of a coarse
    grid (_GRID_STEP, or half of it where that spans more than _GRID_SPAN). Adds to :data:`stats`."""
    xd, yd = np.asarray(xd, np.float64), np.asarray(yd, np.float64)
    if model == "equidistant":
        return _equidistant_grid(tuple(d), xd, yd)
    cols, rows = len(xd), len(yd)
    sx, sy = (xd[-1] - xd[0]) / max(cols - 1, 1), (yd[-1] - yd[0]) / max(rows - 1, 1)
    n = _GRID_STEP if _GRID_STEP * max(abs(sx), abs(sy)) <= _GRID_SPAN else _GRID_STEP // 2
    if not model or cols < 4 * n or rows < 4 * n or cols * rows < _GRID_MIN_RAYS:
        x, y = undistort(model, d, *np.meshgrid(xd, yd))
        stats["exact_rays"] += x.size
        return x, y
    # nodes from one before the first ray to two past the cell of the last
    gx = xd[0] + sx * n * np.arange(-1, -(-cols // n) + 2)
    gy = yd[0] + sy * n * np.arange(-1, -(-rows // n) + 2)
    nx, ny = undistort(model, d, *np.meshgrid(gx, gy))
    with np.errstate(all="ignore"):
        x, y = _interpolate(nx, n, rows, cols), _interpolate(ny, n, rows, cols)   # NaN next to a node without ray
        rx, ry = distort(model, d, x, y)
        good = (np.hypot(rx - xd[None, :], ry - yd[:, None]) <= _GRID_TOLERANCE) & _within_fold(model, d, x, y)
        c = _coefficients(d)
        if model != "equidistant" and any(c[6:]):   # tangential or prism terms: a fold sideways is possible
            _, _, jxx, jxy, jyx, jyy = _rational_map(c, nx, ny)
            det = jxx * jyy - jxy * jyx
            cy, cx = det.shape[0] - 3, det.shape[1] - 3
            low = np.zeros((cy, cx), bool)   # cells with a node of its 4 x 4 below the margin
            for i in range(4):
                for j in range(4):
                    low |= det[i:i + cy, j:j + cx] < _DET_MARGIN
            near = np.nonzero(np.repeat(np.repeat(low, n, 0), n, 1)[:rows, :cols] & good)
            if near[0].size:
                good[near] = ~_folds_sideways(d, x[near], y[near])
    redo = np.nonzero(~good)
    if redo[0].size:   # Newton's method from the interpolated ray where there is one (1 or 2 steps), else as usual
        ux, uy, px, py = xd[redo[1]], yd[redo[0]], x[redo], y[redo]
        near = np.isfinite(px) & np.isfinite(py)
        ux[near], uy[near] = undistort(model, d, ux[near], uy[near], (px[near], py[near]))
        far = ~near | np.isnan(ux)   # (a start on another branch: the checks refuse it; solved afresh)
        beyond = far & (np.hypot(xd[redo[1]], yd[redo[0]]) > _rational_reach(tuple(d)))   # no ray: NaN unsolved
        far &= ~beyond
        ux[beyond] = uy[beyond] = np.nan
        ux[far], uy[far] = undistort(model, d, xd[redo[1][far]], yd[redo[0][far]])
        x[redo], y[redo] = ux, uy
        redo = (redo[0][~beyond], redo[1][~beyond])
    stats["exact_rays"] += nx.size + redo[0].size
    return x, y


#: a fisheye's theta is solved exactly at _FISHEYE_NODES + 1 evenly spaced theta_d over the image's range, and each
#: pixel's interpolated between (linearly) and refined by one Newton step; _FISHEYE_ROWS rows at a time (their
#: temporaries stay in the CPU's cache)
_FISHEYE_NODES = 4096
_FISHEYE_ROWS = 1 << 15
_FISHEYE_THETA_ERROR = 1e-12


def _equidistant_theta_d(d: tuple[float, ...], theta: np.ndarray) -> np.ndarray:
    t2 = theta * theta
    return theta * (1 + t2 * (d[0] + t2 * (d[1] + t2 * (d[2] + t2 * d[3]))))


def _equidistant_grid(d: tuple[float, ...], xd: np.ndarray, yd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`undistort_grid` of a fisheye. Its rays depend on theta_d = |(xd, yd)| alone: theta is solved exactly
    on a 1-D table of theta_d over [0, the farthest pixel's] (on the lens's branch: from a start below the fold),
    interpolated for each pixel and refined by one Newton step. A pixel keeps that ray where it passes the checks
    of :func:`undistort` (0 <= theta < the fold / 90 degrees) and reprojects to _GRID_TOLERANCE (a hundredth of
    _TOLERANCE); one whose theta_d lies beyond every theta_d the lens reaches short of its fold (by more than
    1e-4, far beyond _TOLERANCE) has no ray for undistort either; the others (the band along the fold) are solved
    as undistort solves them. Adds to :data:`stats`."""
    fold = _equidistant_fold(d)
    t = np.linspace(0.0, np.pi / 2, 20001)   # (the grid _equidistant_fold looks for the fold on)
    t = t[t <= fold]
    reach = _equidistant_theta_d(d, t)
    top = float(np.maximum.accumulate(reach)[-1]) + 1e-4   # beyond: no theta short of the fold reprojects
    rising = t[:-1] if t[-1] >= fold else t   # where theta_d(theta) rises: a start on the lens's branch
    td_max = float(np.sqrt(np.max(xd * xd) + np.max(yd * yd)))
    h = max(td_max, 1e-300) / _FISHEYE_NODES
    nodes = np.arange(_FISHEYE_NODES + 2) * h   # (one past the last: a pixel at td_max interpolates to it)
    with np.errstate(all="ignore"):
        table, _ = undistort("equidistant", d, nodes, np.zeros_like(nodes),
                             (np.tan(np.interp(nodes, _equidistant_theta_d(d, rising), rising)), np.zeros_like(nodes)))
        table = np.arctan(table)   # theta of each node; NaN where undistort finds none
        step = np.diff(table)
    x = np.empty((len(yd), len(xd)))
    y = np.empty_like(x)
    redo = []
    xd2 = xd * xd
    rows = max(1, _FISHEYE_ROWS // max(len(xd), 1))
    with np.errstate(all="ignore"):
        for r0 in range(0, len(yd), rows):
            yb = yd[r0:r0 + rows, None]
            td = np.sqrt(xd2 + yb * yb)
            q = td * (1.0 / h)
            i = np.minimum(q.astype(np.intp), _FISHEYE_NODES)
            theta = table[i] + (q - i) * step[i]
            t2 = theta * theta
            f = theta * (1 + t2 * (d[0] + t2 * (d[1] + t2 * (d[2] + t2 * d[3])))) - td
            slope = 1 + t2 * (3 * d[0] + t2 * (5 * d[1] + t2 * (7 * d[2] + t2 * 9 * d[3])))
            theta -= f / slope
            # reprojected theta_d off by slope times theta's error: kept where theta is within _FISHEYE_THETA_ERROR
            # of the solution (its rays then float32's to the last bit but for ties), and reprojects to
            # _GRID_TOLERANCE; the ones near a fold (slope ~ 0) are left to undistort
            f = np.abs(_equidistant_theta_d(d, theta) - td)
            good = (f <= _FISHEYE_THETA_ERROR * slope) & (f <= _GRID_TOLERANCE) & (theta >= 0) & (theta < fold)
            s = np.where(td > 0, np.tan(np.where(good, theta, 0.0)) / td, 1.0)
            good |= td > top   # (NaN below)
            s[td > top] = np.nan
            x[r0:r0 + rows] = xd * s
            y[r0:r0 + rows] = yb * s
            bad = np.nonzero(~good)
            if bad[0].size:
                redo.append((bad[0] + r0, bad[1]))
    solved = _FISHEYE_NODES + 2
    if redo:   # the band along the fold: as undistort solves it
        rr, cc = np.concatenate([r for r, _ in redo]), np.concatenate([c for _, c in redo])
        x[rr, cc], y[rr, cc] = undistort("equidistant", d, xd[cc], yd[rr])
        solved += rr.size
    stats["exact_rays"] += solved
    return x, y


#: what pixel_rays has solved since the process started: ``grids`` (each a camera's calibration and decimation not in
#: its cache), ``rays`` (in them), ``exact_rays`` (of those, and of the coarse grids' nodes, solved by Newton's
#: method), ``seconds``, ``reused`` (calibrations given the rays of a nearly equal one instead, :data:`_REUSE_PX`). Read by the node to tell when a camera's calibration keeps changing.
stats: collections.Counter = collections.Counter()


#: a calibration whose pixels the rays solved for an earlier one (same size, stride and model) reproject onto to
#: within this many pixels reuses them: a driver republishing its calibration with noise in the last digits. It is
#: the exact solve's own tolerance (_TOLERANCE: 1e-3 px at a focal length of 1000 px)
_REUSE_PX = 1e-3
#: the solved rays pixel_rays keeps (its cache, whose last solve of each size, stride and model a jittered calibration
#: may reuse): those of at most RAYS_CALIBRATIONS calibrations (with lens distortion, each with its stride; a pinhole
#: camera's rays are a row and a column, kept apart) and RAYS_BUDGET_BYTES (the least recently used dropped first;
#: the newest always kept, however large). A calibration's rays are two float32 arrays of the decimated image's
#: size: 66 MB (63 MiB) at 4K, stride 1 (4 kept in 256 MiB), 16.6 MB at 1080p stride 1 or 4K stride 2 (16 kept),
#: 4 MB at 1080p stride 2. Rays a jittered calibration reuses are the same arrays, counted once.
RAYS_BUDGET_BYTES = 256 * 2**20
RAYS_CALIBRATIONS = 16
#: (Intrinsics, stride) -> (ax, ay), least recently used first; the rays a calibration reused are also under its key
_rays: collections.OrderedDict = collections.OrderedDict()
#: id(ax) of each ray pair held -> [its keys in _rays (the one it was solved for, the newest that reused it), bytes]
_held: dict = {}
_rays_bytes = 0
#: (width, height, distortion_model, stride) -> the _rays key of the last solve of each (or its newest reuse)
_last_solved: dict = {}
_rays_lock = threading.Lock()


def _keep_rays(key: tuple, rays: tuple[np.ndarray, np.ndarray], reused: bool = False) -> None:
    """Keeps ``rays`` under ``key`` as the most recently used, then drops the least recently used beyond
    RAYS_CALIBRATIONS and RAYS_BUDGET_BYTES. ``reused``: rays already kept for another calibration (a jittered
    one): they replace that one's earlier reuse, so a calibration jittering with every frame holds two keys."""
    global _rays_bytes
    holder = _held.get(id(rays[0]))
    if holder is None:
        holder = _held[id(rays[0])] = [[], rays[0].nbytes + rays[1].nbytes]
        _rays_bytes += holder[1]
    elif reused and len(holder[0]) > 1:
        _rays.pop(holder[0].pop(), None)   # the last reuse (never the key it was solved for)
    holder[0].append(key)
    _rays[key] = rays
    _rays.move_to_end(key)
    while len(_rays) > 1 and (_rays_bytes > RAYS_BUDGET_BYTES or len(_held) > RAYS_CALIBRATIONS):
        old, (ax, _) = _rays.popitem(last=False)
        holder = _held[id(ax)]
        holder[0].remove(old)
        if not holder[0]:
            del _held[id(ax)]
            _rays_bytes -= holder[1]
        for size, k in list(_last_solved.items()):
            if k != old:
                continue
            if holder[0]:   # (its rays stay under a newer key)
                _last_solved[size] = holder[0][-1]
            else:
                del _last_solved[size]


def rays_held() -> tuple[int, int]:
    """(calibrations, bytes) of the solved rays pixel_rays keeps."""
    with _rays_lock:
        return len(_held), _rays_bytes


def _reusable(prev_rays: tuple[np.ndarray, np.ndarray], intr: Intrinsics, stride: int) -> bool:
    """Whether rays solved for another calibration put the pixels of ``intr``'s grid within _REUSE_PX of where
    ``intr`` projects them: checked at every _GRID_STEP-th ray in each direction and the last row and column (the
    difference of two smooth lenses is smooth); a pixel there without a ray (beyond the lens's fold, a fisheye's
    beyond 90 degrees) must have none through ``intr`` either (solved for those few)."""
    ax, ay = prev_rays
    rows = np.unique(np.r_[np.arange(0, ax.shape[0], _GRID_STEP), ax.shape[0] - 1])
    cols = np.unique(np.r_[np.arange(0, ax.shape[1], _GRID_STEP), ax.shape[1] - 1])
    x, y = ax[np.ix_(rows, cols)].astype(np.float64), ay[np.ix_(rows, cols)].astype(np.float64)
    none = np.isnan(x) | np.isnan(y)
    u, v = np.broadcast_arrays(cols[None, :] * float(stride), rows[:, None] * float(stride))
    with np.errstate(all="ignore"):
        xd, yd = distort(intr.distortion_model, intr.d, x[~none], y[~none])
        err = np.hypot(intr.fx * xd + intr.cx - u[~none], intr.fy * yd + intr.cy - v[~none])
    if not (err < _REUSE_PX).all():   # (NaN: no)
        return False
    if none.any():
        nx, _ = undistort(intr.distortion_model, intr.d, (u[none] - intr.cx) / intr.fx, (v[none] - intr.cy) / intr.fy)
        return bool(np.isnan(nx).all())
    return True


def pixel_rays(intr: Intrinsics, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """``(ax, ay)``, float32, such that pixel (u, v) = (i * stride, j * stride) at depth z is the point
    ``(z * ax, z * ay, z)``: shapes (1, W') and (H', 1) for a pinhole camera (``ax = (u - cx) / fx``),
    (H', W') each for a distorted one, NaN where a pixel has no ray. Read-only; cached within RAYS_CALIBRATIONS
    and RAYS_BUDGET_BYTES (a camera keeps its calibration, and a distorted 1080p grid takes 0.1 to 0.5 s to solve,
    a fisheye's 0.05 to 0.1 s; :data:`stats` counts the solves). A calibration within _REUSE_PX of the last one
    solved for this size, stride and model (a driver's jitter in the last digits) gets that one's rays."""
    if not intr.distortion_model:
        return _pinhole_rays(intr, stride)
    key = (intr, stride)
    with _rays_lock:
        rays = _rays.get(key)
        if rays is not None:
            _rays.move_to_end(key)
            return rays
        size = (intr.width, intr.height, intr.distortion_model, stride)
        last = _rays.get(_last_solved.get(size))
        last_intr = _last_solved[size][0] if last is not None else None
    if last is not None and len(last_intr.d) == len(intr.d) and _reusable(last, intr, stride):
        with _rays_lock:
            stats["reused"] += 1
            if key in _rays:   # (another thread took them meanwhile)
                return _rays[key]
            _keep_rays(key, last, reused=True)
            _last_solved[size] = key
        return last
    u = (np.arange(0, intr.width, stride, dtype=np.float64) - intr.cx) / intr.fx
    v = (np.arange(0, intr.height, stride, dtype=np.float64) - intr.cy) / intr.fy
    start = time.perf_counter()
    x, y = undistort_grid(intr.distortion_model, intr.d, u, v)
    ax, ay = x.astype(np.float32), y.astype(np.float32)
    stats["grids"] += 1
    stats["rays"] += x.size
    stats["seconds"] += time.perf_counter() - start
    ax.flags.writeable = ay.flags.writeable = False
    with _rays_lock:
        if key in _rays:   # (another thread solved it meanwhile)
            _rays.move_to_end(key)
            return _rays[key]
        _keep_rays(key, (ax, ay))
        _last_solved[size] = key
    return ax, ay


@functools.lru_cache(maxsize=32)
def _pinhole_rays(intr: Intrinsics, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """pixel_rays of a camera without distortion: a row and a column (kB), kept apart from the solved rays."""
    ax = ((np.arange(0, intr.width, stride, dtype=np.float64) - intr.cx) / intr.fx).astype(np.float32)[None, :]
    ay = ((np.arange(0, intr.height, stride, dtype=np.float64) - intr.cy) / intr.fy).astype(np.float32)[:, None]
    ax.flags.writeable = ay.flags.writeable = False
    return ax, ay


def clear_rays() -> None:
    """Forget every solved grid (pixel_rays' cache and the last solve kept for reuse): the next call solves."""
    global _rays_bytes
    _pinhole_rays.cache_clear()
    with _rays_lock:
        _rays.clear()
        _held.clear()
        _last_solved.clear()
        _rays_bytes = 0
