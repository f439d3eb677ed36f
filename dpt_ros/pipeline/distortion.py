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

The inverse has no closed form; :func:`undistort` solves it by Newton's method in float64 and
marks a pixel invalid (NaN) where the solution does not reproduce the pixel to 1e-6 (a thousandth
of a pixel at f = 1000) or lies beyond the first fold, where the model stops being one-to-one
(strong barrel distortion at the corners; its polynomial may rise again far out, but that branch is
not the lens) and for fisheye rays at 90 degrees and more.
"""

from __future__ import annotations

import functools
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


def _undistort_rational(d: tuple[float, ...], xd: np.ndarray, yd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    k1, k2, k3, k4, k5, k6, p1, p2, s1, s2, s3, s4 = _coefficients(d)
    tilt = _tilt(d)
    if tilt is not None:   # the tilt is a homography: undone exactly, before the polynomial
        xd, yd = _homography(np.linalg.inv(tilt), xd, yd)
    prism = any((s1, s2, s3, s4))
    x, y = xd.copy(), yd.copy()
    det = np.ones_like(x)
    for _ in range(_NEWTON_STEPS):
        r2 = x * x + y * y
        a = 1 + r2 * (k1 + r2 * (k2 + r2 * k3))
        b = 1 + r2 * (k4 + r2 * (k5 + r2 * k6))
        g = a / b
        dg = ((k1 + r2 * (2 * k2 + 3 * k3 * r2)) * b - a * (k4 + r2 * (2 * k5 + 3 * k6 * r2))) / (b * b)  # dg/dr2
        fx = x * g + 2 * p1 * x * y + p2 * (r2 + 2 * x * x) - xd
        fy = y * g + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y - yd
        jxx = g + 2 * x * x * dg + 2 * p1 * y + 6 * p2 * x
        jxy = 2 * x * y * dg + 2 * p1 * x + 2 * p2 * y   # d fx / dy = d fy / dx without the thin prism
        jyx = jxy
        jyy = g + 2 * y * y * dg + 6 * p1 * y + 2 * p2 * x
        if prism:   # s1 r2 + s2 r2^2 in x'', s3 r2 + s4 r2^2 in y'': d/dx = 2 x (s + 2 s' r2), d/dy likewise
            px, py = r2 * (s1 + s2 * r2), r2 * (s3 + s4 * r2)
            fx, fy = fx + px, fy + py
            ex, ey = 2 * (s1 + 2 * s2 * r2), 2 * (s3 + 2 * s4 * r2)
            jxx, jxy, jyx, jyy = jxx + ex * x, jxy + ex * y, jyx + ey * x, jyy + ey * y
        det = jxx * jyy - jxy * jyx
        step_x, step_y = (jyy * fx - jxy * fy) / det, (jxx * fy - jyx * fx) / det
        x -= step_x
        y -= step_y
        if not ((np.abs(step_x) > _STEP_DONE) | (np.abs(step_y) > _STEP_DONE)).any():
            break   # converged (points that diverged are NaN by now and fail the checks below)
    # Only the branch around the optical axis is the lens: beyond the radius where r * g(r^2) stops
    # growing, the polynomial folds back (and may rise again far out), giving pixels a second pre-image.
    r = np.linspace(0.0, _MAX_RADIUS, 20001)[1:]
    q = r * r
    a = 1 + q * (k1 + q * (k2 + q * k3))
    b = 1 + q * (k4 + q * (k5 + q * k6))
    slope = a / b + 2 * q * ((k1 + q * (2 * k2 + 3 * k3 * q)) * b - a * (k4 + q * (2 * k5 + 3 * k6 * q))) / (b * b)
    folds = np.flatnonzero(~(slope > 0))
    r_fold = r[folds[0]] if folds.size else np.inf
    ok = (det > 0) & (x * x + y * y < r_fold * r_fold)   # det: the tangential and prism terms can fold it too
    return np.where(ok, x, np.nan), np.where(ok, y, np.nan)


def _undistort_equidistant(d: tuple[float, ...], xd: np.ndarray, yd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    def slope(t: np.ndarray) -> np.ndarray:   # d theta_d / d theta
        t2 = t * t
        return 1 + t2 * (3 * d[0] + t2 * (5 * d[1] + t2 * (7 * d[2] + t2 * 9 * d[3])))

    theta_d = np.hypot(xd, yd)
    theta = np.minimum(theta_d, 1.5)
    for _ in range(_NEWTON_STEPS):
        t2 = theta * theta
        f = theta * (1 + t2 * (d[0] + t2 * (d[1] + t2 * (d[2] + t2 * d[3])))) - theta_d
        step = f / slope(theta)
        theta -= step
        if not (np.abs(step) > _STEP_DONE).any():
            break
    # a ray at 90 degrees or more has no depth along the optical axis; past the first angle where
    # theta_d(theta) stops growing, the model folds back and pixels have a second pre-image
    t = np.linspace(0.0, np.pi / 2, 20001)[1:]
    folds = np.flatnonzero(~(slope(t) > 0))
    ok = (theta >= 0) & (theta < (t[folds[0]] if folds.size else np.pi / 2))
    s = np.where(theta_d > 0, np.tan(np.where(ok, theta, 0.0)) / theta_d, 1.0)
    return np.where(ok, xd * s, np.nan), np.where(ok, yd * s, np.nan)


def undistort(model: str, d: tuple[float, ...], xd: np.ndarray, yd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Undistorted normalised coordinates (float64) of distorted ones; NaN where there is none."""
    xd, yd = np.asarray(xd, np.float64), np.asarray(yd, np.float64)
    if not model:
        return xd, yd
    solve = _undistort_equidistant if model == "equidistant" else _undistort_rational
    with np.errstate(all="ignore"):   # iterations far outside the image's field may overflow: NaN below
        x, y = solve(d, xd, yd)
        rx, ry = distort(model, d, x, y)
        bad = ~(np.hypot(rx - xd, ry - yd) <= _TOLERANCE)   # also NaN
    x[bad] = np.nan
    y[bad] = np.nan
    return x, y


@functools.lru_cache(maxsize=8)
def pixel_rays(intr: Intrinsics, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """``(ax, ay)``, float32, such that pixel (u, v) = (i * stride, j * stride) at depth z is the point
    ``(z * ax, z * ay, z)``: shapes (1, W') and (H', 1) for a pinhole camera (``ax = (u - cx) / fx``),
    (H', W') each for a distorted one, NaN where a pixel has no ray. Read-only; cached (a camera keeps
    its calibration, and a distorted 1080p grid takes a few hundred milliseconds to solve)."""
    u = (np.arange(0, intr.width, stride, dtype=np.float64) - intr.cx) / intr.fx
    v = (np.arange(0, intr.height, stride, dtype=np.float64) - intr.cy) / intr.fy
    if intr.distortion_model:
        x, y = undistort(intr.distortion_model, intr.d, *np.meshgrid(u, v))
        ax, ay = x.astype(np.float32), y.astype(np.float32)
    else:
        ax, ay = u.astype(np.float32)[None, :], v.astype(np.float32)[:, None]
    ax.flags.writeable = ay.flags.writeable = False
    return ax, ay
