"""Clouds of unrectified images: each point must project back onto its own pixel through the lens model.

The reference is OpenCV's forward projection (``cv2.projectPoints``, ``cv2.fisheye.projectPoints``), which
shares no code with the Newton inversion in :mod:`dpt_ros.pipeline.distortion`.
"""

import math

import cv2
import numpy as np
import pytest

from dpt_ros.pipeline import CalibrationError, Intrinsics, build_cloud
from dpt_ros.pipeline import distortion
from dpt_ros.pipeline.distortion import distort, pixel_rays, undistort

RNG = np.random.default_rng(31)
K = [410.0, 0.0, 323.4, 0.0, 412.5, 236.8, 0.0, 0.0, 1.0]
P = [380.0, 0.0, 318.0, 0.0, 0.0, 381.0, 240.0, 0.0, 0.0, 0.0, 1.0, 0.0]
# a wide-angle webcam's lens (barrel), the 8-term form of a stronger one, it with OpenCV's thin prism (12) and
# tilted sensor (14) terms, and a fisheye
RATIONAL14 = (2.1, 0.9, 0.0008, -0.0004, 0.02, 2.45, 1.6, 0.15, 0.003, -0.001, -0.002, 0.0008, 0.02, -0.015)
LENSES = {
    "plumb_bob": (-0.31, 0.11, 0.0012, -0.0007, -0.018),
    "plumb_bob4": (-0.28, 0.08, -0.0009, 0.0011),
    "rational_polynomial": RATIONAL14[:8],
    "rational_polynomial12": RATIONAL14[:12],
    "rational_polynomial14": RATIONAL14,
    "equidistant": (0.08, -0.02, 0.004, -0.0006),
}


def _model(name):
    return name.rstrip("0123456789")


def _project(points, k, model, d):
    """(N, 2) pixels of (N, 3) camera-frame points through OpenCV's forward model."""
    km = np.asarray(k, np.float64).reshape(3, 3)
    obj = np.ascontiguousarray(points, np.float64).reshape(-1, 1, 3)
    zero = np.zeros((3, 1))
    if model == "equidistant":
        px, _ = cv2.fisheye.projectPoints(obj, zero, zero, km, np.asarray(d, np.float64))
    else:
        px, _ = cv2.projectPoints(obj, zero, zero, km, np.asarray(d, np.float64))
    return px.reshape(-1, 2)


def _pixel_grid(h, w, stride=1):
    v, u = np.mgrid[0:h:stride, 0:w:stride]
    return u.astype(np.float64), v.astype(np.float64)


@pytest.mark.parametrize("lens", sorted(LENSES))
def test_every_point_projects_back_onto_its_pixel(lens):
    model, d = _model(lens), LENSES[lens]
    h, w = 480, 640
    depth = RNG.uniform(0.5, 8.0, (h, w)).astype(np.float32)
    intr = Intrinsics.from_camera_info(K, P, w, h, rectified=False, distortion_model=model, d=d)
    assert intr.distortion_model == model and intr.d == d
    cloud = build_cloud(depth, intr, stride=3)
    pts = cloud.points.reshape(-1, 3).astype(np.float64)
    u, v = _pixel_grid(h, w, 3)
    assert np.isfinite(pts).all(), "this lens covers the whole image"
    np.testing.assert_array_equal(pts[:, 2], depth[::3, ::3].ravel())   # z is the depth, untouched
    px = _project(pts, K, model, d)
    err = np.hypot(px[:, 0] - u.ravel(), px[:, 1] - v.ravel())
    assert err.max() < 2e-3, f"{lens}: worst reprojection error {err.max():.2e} px"
    # and the lens matters: the pinhole back-projection of the corners is far off
    pinhole = build_cloud(depth, Intrinsics.from_camera_info(K, P, w, h, rectified=False), stride=3)
    wrong = _project(pinhole.points.reshape(-1, 3), K, model, d)
    assert np.hypot(wrong[:, 0] - u.ravel(), wrong[:, 1] - v.ravel()).max() > 5.0


def _undistort_points(pixels, k, d, criteria):
    """cv::undistortPoints with termination ``criteria``: OpenCV 5's Python undistortPoints takes them, OpenCV 4's
    binds that overload as undistortPointsIter (Jazzy's and Humble's OpenCV are 4.x)."""
    if hasattr(cv2, "undistortPointsIter"):
        return cv2.undistortPointsIter(pixels, k, d, None, None, criteria)
    return cv2.undistortPoints(pixels, k, d, None, None, None, criteria)


@pytest.mark.parametrize("model", ["plumb_bob", "rational_polynomial"])
def test_rays_are_opencvs_undistort_points_for_every_length_image_geometry_passes(model):
    """image_geometry hands a plumb_bob or rational_polynomial D to cv::undistortPoints as it is, and OpenCV takes
    4, 5, 8, 12 or 14 coefficients under either name (plumb_bob with 8 is the rational model, rational_polynomial
    with 5 is plumb_bob): each pixel's ray, corners included, is the one cv2.undistortPoints converges to."""
    w, h, stride = 641, 481, 16   # (the last row and column, and so the corners, on the grid)
    u, v = _pixel_grid(h, w, stride)
    pixels = np.stack([u.ravel(), v.ravel()], -1).reshape(-1, 1, 2)
    converged = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 1000, 1e-15)
    for n in (4, 5, 8, 12, 14):
        d = RATIONAL14[:n]
        intr = Intrinsics.from_camera_info(K, P, w, h, rectified=False, distortion_model=model, d=d)
        assert (intr.distortion_model, intr.d) == (model, d)
        ax, ay = pixel_rays(intr, stride)
        ref = _undistort_points(pixels, np.reshape(K, (3, 3)), np.asarray(d), converged).reshape(ax.shape + (2,))
        assert np.isfinite(ax).all() and np.isfinite(ay).all()
        np.testing.assert_allclose(ax, ref[..., 0], atol=1e-6, err_msg=f"{model} with {n} coefficients")
        np.testing.assert_allclose(ay, ref[..., 1], atol=1e-6, err_msg=f"{model} with {n} coefficients")
        pinhole = np.hypot(ax - (u - K[2]) / K[0], ay - (v - K[5]) / K[4])
        assert pinhole[[0, 0, -1, -1], [0, -1, 0, -1]].min() * K[0] > 50.0   # the lens moves the corners
    d = LENSES["equidistant"]   # cv::fisheye::undistortPoints, with 4 coefficients
    ax, ay = pixel_rays(Intrinsics.from_camera_info(K, P, w, h, rectified=False, distortion_model="equidistant",
                                                    d=d), stride)
    ref = cv2.fisheye.undistortPoints(pixels, np.reshape(K, (3, 3)), np.asarray(d), None, None, None,
                                      converged).reshape(ax.shape + (2,))
    np.testing.assert_allclose(ax, ref[..., 0], atol=1e-6)
    np.testing.assert_allclose(ay, ref[..., 1], atol=1e-6)


@pytest.mark.parametrize("lens", ["plumb_bob", "equidistant"])
def test_binning_roi_and_resize_keep_the_lens(lens):
    """Distortion acts on normalised coordinates: a binned, cropped or resized image maps back onto the
    full-resolution pixel it came from."""
    model, d = _model(lens), LENSES[lens]
    full_w, full_h = 1280, 960
    kf = [820.0, 0.0, 645.2, 0.0, 823.0, 474.6, 0.0, 0.0, 1.0]
    x0, y0, rw, rh = 160, 96, 960, 720
    cases = {
        # image size, CameraInfo fields, pixel (u, v) -> full-resolution pixel
        "binned 2x2": ((640, 480), dict(binning_x=2, binning_y=2), lambda u, v: (2 * u, 2 * v)),
        "roi": ((rw, rh), dict(roi=(x0, y0, rh, rw)), lambda u, v: (u + x0, v + y0)),
        "resized to 320x240": ((320, 240), {}, lambda u, v: (4 * u, 4 * v)),
    }
    for name, ((w, h), fields, to_full) in cases.items():
        intr = Intrinsics.from_camera_info(kf, None, full_w, full_h, rectified=False, distortion_model=model, d=d,
                                           **fields).scaled_to(w, h)
        depth = RNG.uniform(0.5, 8.0, (h, w)).astype(np.float32)
        pts = build_cloud(depth, intr, stride=7).points.reshape(-1, 3)
        u, v = _pixel_grid(h, w, 7)
        fu, fv = to_full(u.ravel(), v.ravel())
        px = _project(pts, kf, model, d)
        err = np.hypot(px[:, 0] - fu, px[:, 1] - fv)
        assert err.max() < 5e-3, f"{lens} {name}: {err.max():.2e} px"


def test_pixels_beyond_the_fold_have_no_point():
    """A lens model that folds back (strong barrel, corners far out) gives two pre-images; those pixels
    are invalid: NaN in an organised cloud (z too), absent from a dense one."""
    h, w = 120, 160
    intr = Intrinsics(120.0, 120.0, 79.5, 59.5, w, h, "plumb_bob", (-0.5, 0.05, 0.0, 0.0, 0.0))
    ax, ay = pixel_rays(intr, 1)
    none = np.isnan(ax)
    assert np.array_equal(none, np.isnan(ay))
    assert none[0, 0] and none[-1, -1] and not none[h // 2, w // 2] and 0.01 < none.mean() < 0.5
    # the invalid pixels are exactly those outside the radius where the model turns back:
    # r_d(r) = r (1 - 0.5 r^2 + 0.05 r^4) peaks where 1 - 1.5 r^2 + 0.25 r^4 = 0: r^2 = (1.5 - sqrt(1.25)) / 0.5
    r_fold = math.sqrt((1.5 - math.sqrt(1.25)) / 0.5)
    rd_max = r_fold * (1 - 0.5 * r_fold**2 + 0.05 * r_fold**4)
    u, v = _pixel_grid(h, w)
    rd = np.hypot((u - 79.5) / 120.0, (v - 59.5) / 120.0)
    far = np.abs(rd - rd_max) > 1e-3
    np.testing.assert_array_equal(none[far], (rd > rd_max)[far])
    depth = np.full((h, w), 2.0, np.float32)
    org = build_cloud(depth, intr)
    assert np.isnan(org.points[none]).all() and np.isfinite(org.points[~none]).all()
    dense = build_cloud(depth, intr, organized=False)
    assert dense.width == int((~none).sum())
    np.testing.assert_array_equal(dense.points[0], org.points[~none])


def test_fisheye_rays_at_90_degrees_and_more_are_invalid():
    h, w = 200, 200
    intr = Intrinsics(40.0, 40.0, 99.5, 99.5, w, h, "equidistant", (0.0, 0.0, 0.0, 1e-9))
    ax, _ = pixel_rays(intr, 1)
    u, v = _pixel_grid(h, w)
    theta = np.hypot(u - 99.5, v - 99.5) / 40.0    # an (almost) ideal equidistant lens: theta_d = theta
    np.testing.assert_array_equal(np.isnan(ax)[np.abs(theta - np.pi / 2) > 1e-3],
                                  (theta >= np.pi / 2)[np.abs(theta - np.pi / 2) > 1e-3])
    ok = theta < 1.5
    np.testing.assert_allclose(np.hypot(*(a[ok] for a in pixel_rays(intr, 1))), np.tan(theta[ok]), rtol=1e-5)


def test_a_fisheye_that_folds_and_rises_again_keeps_only_the_first_branch():
    """theta_d = theta (1 - 0.6 theta^2 + 0.15 theta^4) rises to a maximum, falls, and rises again before
    90 degrees: a pixel beyond the maximum has a pre-image only on the far branch, which is not the lens."""
    d = (-0.6, 0.15, 0.0, 0.0)
    roots = np.sort(np.sqrt(np.roots([0.75, -1.8, 1.0]).real))     # d theta_d / d theta = 0 (in theta^2)
    assert roots[1] < np.pi / 2                                    # it does rise again before 90 degrees
    peak = roots[0] * (1 - 0.6 * roots[0] ** 2 + 0.15 * roots[0] ** 4)
    theta_d = np.linspace(0.0, 0.7, 701)
    x, _ = undistort("equidistant", d, theta_d, np.zeros_like(theta_d))
    np.testing.assert_array_equal(np.isnan(x)[np.abs(theta_d - peak) > 2e-3], (theta_d > peak)[np.abs(theta_d - peak) > 2e-3])
    assert np.arctan(x[theta_d < peak - 2e-3]).max() < roots[0]


def test_a_tangential_fold_has_no_point():
    """Strong decentring (p1, p2) folds the image plane without any radial fold: a pixel's solution
    there has a negative Jacobian (the lens would map a neighbourhood mirrored). Every ray kept has a
    positive one under OpenCV's forward model and reprojects; the folded ones are NaN."""
    d = (0.22, 0.172, -0.185, 0.181, -0.062)
    g = np.linspace(-1.5, 1.5, 121)
    xd, yd = np.meshgrid(g, g)
    x, y = undistort("plumb_bob", d, xd, yd)
    ok = ~np.isnan(x)
    assert 0.3 < ok.mean() < 0.9
    h = 1e-6
    pts = np.stack([x[ok], y[ok], np.ones(ok.sum())], -1)

    def proj(p):
        return _project(p, [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0], "plumb_bob", d)

    base, dx, dy = proj(pts), proj(pts + [h, 0.0, 0.0]), proj(pts + [0.0, h, 0.0])
    det = ((dx[:, 0] - base[:, 0]) * (dy[:, 1] - base[:, 1]) - (dx[:, 1] - base[:, 1]) * (dy[:, 0] - base[:, 0])) / h**2
    assert det.min() > 0
    np.testing.assert_allclose(base, np.stack([xd[ok], yd[ok]], -1), atol=1e-6)


@pytest.mark.parametrize("lens", sorted(LENSES))
def test_undistort_inverts_distort(lens):
    model, d = _model(lens), LENSES[lens]
    x, y = RNG.uniform(-0.9, 0.9, (2, 5000))
    xd, yd = distort(model, d, x, y)
    ux, uy = undistort(model, d, xd, yd)
    np.testing.assert_allclose(ux, x, atol=1e-12)
    np.testing.assert_allclose(uy, y, atol=1e-12)


def test_rectified_images_and_zero_d_are_pinhole():
    d = LENSES["plumb_bob"]
    depth = RNG.uniform(0.5, 8.0, (48, 64)).astype(np.float32)
    rect = Intrinsics.from_camera_info(K, P, 64, 48, rectified=True, distortion_model="plumb_bob", d=d)
    assert rect.distortion_model == "" and rect.d == () and rect.fx == P[0]   # image_rect: P, D already applied
    zero = Intrinsics.from_camera_info(K, P, 64, 48, rectified=False, distortion_model="plumb_bob", d=[0.0] * 5)
    plain = Intrinsics.from_camera_info(K, P, 64, 48, rectified=False)
    assert zero == plain and hash(zero) == hash(plain)
    for organized in (True, False):
        assert build_cloud(depth, zero, organized=organized).data == build_cloud(depth, plain, organized=organized).data
    # unknown models are fine as long as D is zero (many drivers fill the name and leave D empty), and an empty D is
    # no distortion for every model, as image_geometry has it
    assert Intrinsics(1.0, 1.0, 0.0, 0.0, 4, 4, "kannala_brandt", ()).distortion_model == ""
    for model in ("plumb_bob", "rational_polynomial", "equidistant"):
        assert Intrinsics.from_camera_info(K, P, 64, 48, rectified=False, distortion_model=model, d=()) == plain


def test_unusable_distortion_is_refused_with_the_remedy():
    with pytest.raises(CalibrationError, match=r"'kannala_brandt'.*supported: plumb_bob, rational_polynomial, "
                                               r"equidistant.*camera_info.rectified"):
        Intrinsics.from_camera_info(K, P, 64, 48, rectified=False, distortion_model="kannala_brandt", d=[0.1] * 4)
    with pytest.raises(CalibrationError, match=r"'' with a non-zero D"):
        Intrinsics.from_camera_info(K, P, 64, 48, rectified=False, distortion_model="", d=[0.1] * 5)
    # (it said only "CameraInfo D has non-finite coefficients [...]": no what to do)
    with pytest.raises(CalibrationError, match=r"non-finite coefficients \[0.1, nan, 0.0, 0.0, 0.0\] \(distortion_model "
                                               r"'plumb_bob'\): fix D in the camera driver or calibration file; for a "
                                               r"rectified image set camera_info.rectified true"):
        Intrinsics(1.0, 1.0, 0.0, 0.0, 4, 4, "plumb_bob", (0.1, math.nan, 0.0, 0.0, 0.0))
    # lengths OpenCV (and so image_geometry) cannot use: the forms it takes, the remedy
    for model, d, lengths in (("plumb_bob", (0.1, -0.02, 0.001, 0.002, 0.003, 0.01), "4, 5, 8, 12 or 14"),
                              ("rational_polynomial", (0.1, -0.02, 0.001), "4, 5, 8, 12 or 14"),
                              ("rational_polynomial", RATIONAL14 + (0.01,), "4, 5, 8, 12 or 14"),
                              ("equidistant", (0.1,) * 5, "4"),
                              ("equidistant", (0.1,) * 3, "4")):
        # (the remedy was "..., or rectify the image (image_proc)": image_proc passes such a D to OpenCV, which refuses
        # it as well)
        with pytest.raises(CalibrationError, match=rf"'{model}' takes {lengths} D coefficients \(k1, k2, .*got "
                                                   rf"{len(d)}: fix D .*; image_proc cannot rectify the image with "
                                                   rf"this D either \(OpenCV refuses it\)$"):
            Intrinsics.from_camera_info(K, P, 64, 48, rectified=False, distortion_model=model, d=d)
    # trailing zeros are the same lens, also past a form OpenCV takes (a D of 6 ending in 0 is the 5-term lens)
    rational = (0.1, -0.02, 0.001, 0.002, 0.003, 0.01, 0.0, 0.001)
    same = Intrinsics.from_camera_info(K, P, 64, 48, rectified=False, distortion_model="rational_polynomial",
                                       d=rational + (0.0,) * 6)
    assert same == Intrinsics.from_camera_info(K, P, 64, 48, rectified=False, distortion_model="rational_polynomial",
                                               d=rational)
    for n in (6, 8):
        assert Intrinsics.from_camera_info(K, P, 64, 48, rectified=False, distortion_model="plumb_bob",
                                           d=(0.1, -0.02, 0.001, 0.002, 0.003) + (0.0,) * (n - 5)).d == (
            0.1, -0.02, 0.001, 0.002, 0.003)
    assert Intrinsics(1.0, 1.0, 0.0, 0.0, 4, 4, "equidistant", (0.1, 0.0, 0.0, 0.0, 0.0)).d == (0.1, 0.0, 0.0, 0.0)


def test_rays_are_cached_and_read_only():
    intr = Intrinsics(300.0, 300.0, 160.0, 120.0, 320, 240, "plumb_bob", LENSES["plumb_bob"])
    first = pixel_rays(intr, 2)
    again = pixel_rays(Intrinsics(300.0, 300.0, 160.0, 120.0, 320, 240, "plumb_bob", list(LENSES["plumb_bob"])), 2)
    assert first[0] is again[0] and first[0].shape == (120, 160)
    with pytest.raises(ValueError):
        first[0][0, 0] = 1.0


GRID_LENSES = {**LENSES, "fold": (-0.5, 0.05, 0.0, 0.0, 0.0), "tangential_fold": (0.22, 0.172, -0.185, 0.181, -0.062)}


@pytest.mark.parametrize("lens", sorted(set(GRID_LENSES) - {"equidistant"}))
def test_grid_rays_are_the_exact_solution(lens):
    """pixel_rays solves a plumb_bob / rational lens exactly on a coarse grid only, interpolates between and keeps
    what reprojects to 1e-8, solving the rest (fold bands) by Newton's method: the same pixels without a ray as
    the exact solve of every pixel, the same rays to 5e-8 (measured 2.5e-8 at most over these strong lenses at a
    410 px focal length, where 8 px of grid are a wide angle; the rays are float32, which rounds 1.0 by 6e-8)."""
    model, d = _model(lens), GRID_LENSES[lens]
    if lens in ("fold", "tangential_fold"):
        model = "plumb_bob"
    intr = Intrinsics.from_camera_info(K, P, 640, 480, rectified=False, distortion_model=model, d=d)
    u = (np.arange(640) - intr.cx) / intr.fx
    v = (np.arange(480) - intr.cy) / intr.fy
    distortion.stats.clear()
    x, y = distortion.undistort_grid(model, intr.d, u, v)
    ex, ey = undistort(model, intr.d, *np.meshgrid(u, v))
    np.testing.assert_array_equal(np.isnan(x), np.isnan(ex))
    np.testing.assert_array_equal(np.isnan(y), np.isnan(ey))
    assert max(np.nanmax(np.abs(x - ex)), np.nanmax(np.abs(y - ey))) < 5e-8
    assert distortion.stats["exact_rays"] < 1.05 * x.size   # (the nodes and the rays redone: not much more)


def test_a_large_image_solves_few_rays_exactly():
    """At 1080p, stride 1, an ordinary lens (the webcam's above at a 1536 px focal length) is solved exactly at 1.6 %
    of its rays (the grid's nodes): a changing calibration (a zooming camera) re-solves its grid in about a fifth of
    the time (372 instead of 1648 ms on a 2-core CPU; 242 instead of 1177 ms at 4K, stride 2)."""
    intr = Intrinsics(1536.0, 1536.0, 959.5, 539.5, 1920, 1080, "plumb_bob", LENSES["plumb_bob"])
    distortion.stats.clear()
    ax, _ = pixel_rays(intr, 1)
    assert distortion.stats["grids"] == 1 and distortion.stats["rays"] == ax.size == 1920 * 1080
    assert distortion.stats["exact_rays"] < 0.02 * ax.size and distortion.stats["seconds"] > 0
    assert np.isfinite(ax).all()


FISHEYES = {   # (D, focal length in px of a 640x480 image)
    "webcam": (LENSES["equidistant"], 410.0),
    "barrel": ((-0.05, 0.01, -0.002, 0.0002), 300.0),
    "pincushion": ((0.3, 0.1, 0.02, 0.005), 250.0),
    "beyond_90_degrees": ((0.0, 0.0, 0.0, 1e-9), 200.0),
    "fold_and_rise": ((-0.6, 0.15, 0.0, 0.0), 700.0),
    "fold_at_the_edge": ((-0.25, 0.02, 0.0, 0.0), 300.0),
}


@pytest.mark.parametrize("lens", sorted(FISHEYES))
def test_fisheye_rays_are_the_exact_solution_from_a_table(lens):
    """A fisheye's rays depend on theta_d alone: theta is solved exactly on a 1-D table and each pixel's interpolated
    and refined by one Newton step, kept where it reprojects and lies short of the fold / 90 degrees, the band
    along a fold solved as undistort solves it. The same pixels without a ray as the exact solve of every pixel
    (lenses folding inside the image, rays beyond 90 degrees), the same float32 rays to the last bit but for
    rounding ties (measured: 0 ulp but 1 ray at 1 ulp near a fold, 1e-11 relative in float64), with 1.3 to 5 % of
    the rays solved by Newton's method (all of them before: 0.3 to 0.5 s at 1080p on a 2-core CPU, now 0.05 to
    0.1 s)."""
    d, f = FISHEYES[lens]
    u, v = (np.arange(640) - 323.4) / f, (np.arange(480) - 236.8) / f
    distortion.stats.clear()
    x, y = distortion.undistort_grid("equidistant", d, u, v)
    ex, ey = undistort("equidistant", d, *np.meshgrid(u, v))
    none = np.isnan(ex)
    np.testing.assert_array_equal(np.isnan(x), none)
    np.testing.assert_array_equal(np.isnan(y), none)
    if lens.startswith(("fold", "beyond")):
        assert 0.0 < none.mean() < 0.5   # (the checks are exercised)
    for a, e in ((x, ex), (y, ey)):
        np.testing.assert_array_max_ulp(a[~none].astype(np.float32), e[~none].astype(np.float32), maxulp=1)
        np.testing.assert_allclose(a[~none], e[~none], rtol=1e-10, atol=1e-13)
    assert distortion.stats["exact_rays"] < 0.06 * x.size


@pytest.mark.parametrize("lens, f", [("plumb_bob", 410.0), ("plumb_bob", 600.0), ("rational_polynomial", 410.0)])
def test_a_webcam_at_a_short_focal_length_solves_few_rays_exactly(lens, f):
    """At a 640x480 webcam's focal length (400 to 600 px) the cubic between grid nodes 8 rays apart missed the 1e-8
    reprojection for most rays of an ordinary lens, which were then solved by Newton's method (88 % of them for
    the webcam lens at 410 px, 92 % for the rational one: 175 and 125 ms on a 2-core CPU). Nodes 4 rays apart
    there: 11 % (8 % rational), 35 to 60 ms; test_grid_rays_are_the_exact_solution checks the rays (all its lenses
    at 410 px)."""
    intr = Intrinsics(f, f, 319.7, 240.7, 640, 480, _model(lens), LENSES[lens])
    distortion.clear_rays()
    distortion.stats.clear()
    ax, _ = pixel_rays(intr, 1)
    assert np.isfinite(ax).all() and distortion.stats["rays"] == ax.size
    assert distortion.stats["exact_rays"] < 0.15 * ax.size, distortion.stats["exact_rays"] / ax.size
    distortion.clear_rays()


def test_pixels_beyond_every_point_a_lens_reaches_are_not_solved():
    """A strong wide-angle lens whose corners lie beyond its fold: their pixels have no ray, yet each was solved by
    up to 20 Newton steps (88 % of the rays of the fold lens at 640x480, 410 px: 330 ms on a 2-core CPU). A pixel
    farther from the centre than any point inside the fold can be distorted to (a bound of the radial, tangential
    and prism terms) is now NaN unsolved: 44 %, 120 ms; test_grid_rays_are_the_exact_solution[fold] checks the
    rays and the pixels without one. The bound holds for 200000 points inside the fold of lenses with
    tangential and thin-prism terms (within 0.2 % of it for the fold lens)."""
    d = GRID_LENSES["fold"]
    intr = Intrinsics(410.0, 412.5, 323.4, 236.8, 640, 480, "plumb_bob", d)
    distortion.clear_rays()
    distortion.stats.clear()
    ax, _ = pixel_rays(intr, 1)
    assert 0.2 < np.isnan(ax).mean() < 0.6
    assert distortion.stats["exact_rays"] < 0.5 * ax.size, distortion.stats["exact_rays"] / ax.size
    distortion.clear_rays()
    for d in (GRID_LENSES["fold"], LENSES["plumb_bob"], GRID_LENSES["tangential_fold"], RATIONAL14[:12],
              (-0.4, 0.02, 0.03, -0.05, 0.0, 0.0, 0.0, 0.0, 0.01, -0.02, -0.03, 0.01)):
        reach = distortion._rational_reach(tuple(d))
        r_fold = distortion._rational_fold(distortion._coefficients(tuple(d)))
        if not math.isfinite(r_fold):   # (no fold: every pixel may have a ray)
            assert reach == math.inf
            continue
        r = r_fold * np.sqrt(RNG.uniform(0.0, 1.0, 200000))
        phi = RNG.uniform(0.0, 2 * np.pi, r.size)
        xd, yd = distort("plumb_bob", d, r * np.cos(phi), r * np.sin(phi))
        assert np.hypot(xd, yd).max() < reach, d


def test_an_unknown_model_name_is_told_the_ros_name_of_its_lens():
    """A driver that names its lens model its own way ('fisheye', 'kannala_brandt4', Kalibr's 'radtan') gets no cloud;
    the message named image_proc as the remedy, which cannot rectify a model image_geometry does not know either.
    It now gives ROS's names for those models (equidistant for OpenCV's 4-coefficient fisheye, plumb_bob for the
    radial-tangential one) and keeps rectification as the way for a model that is none of them."""
    for name, d in (("fisheye", LENSES["equidistant"]), ("kannala_brandt4", LENSES["equidistant"]),
                    ("radtan", LENSES["plumb_bob"])):
        with pytest.raises(CalibrationError) as err:
            Intrinsics.from_camera_info(K, P, 64, 48, rectified=False, distortion_model=name, d=d)
        text = str(err.value)
        assert f"{name!r} with a non-zero D is not supported" in text
        assert "equidistant: the 4 of OpenCV's fisheye model, Kannala-Brandt" in text
        assert "plumb_bob: k1, k2, p1, p2, k3, OpenCV's default model, radial-tangential, 'radtan'" in text
        assert "the only ones image_proc knows too" in text and "rectify the image (image_proc)" not in text
        assert "camera_info.rectified true" in text


def test_a_camera_switching_among_a_few_calibrations_solves_each_once():
    """The solved rays of the last 16 (calibration, stride) pairs are kept (within 256 MiB): a camera alternating
    between two
    calibrations (two zoom steps, a driver toggling between two values) solves each once."""
    a = Intrinsics(300.0, 300.0, 159.5, 119.5, 320, 240, "plumb_bob", (-0.21, 0.05, 0.0, 0.0, 0.0))
    b = Intrinsics(310.0, 310.0, 159.5, 119.5, 320, 240, "plumb_bob", (-0.21, 0.05, 0.0, 0.0, 0.0))
    distortion.stats.clear()
    for intr in (a, b, a, b, a, b):
        pixel_rays(intr, 2)
    assert distortion.stats["grids"] == 2


def test_a_calibration_jittered_in_its_last_digits_reuses_the_rays():
    """A driver republishing its calibration with noise in the last digits (fx, cx and D off by parts in 1e9) would
    solve the rays afresh for every frame; the rays of the last solve put every pixel of the new calibration within
    1e-3 px (the solve's own tolerance) of its place, so they are reused. A change of a tenth of a pixel is solved."""
    base = Intrinsics(300.0, 301.0, 159.5, 119.5, 320, 240, "plumb_bob", LENSES["plumb_bob"])
    distortion.clear_rays()
    distortion.stats.clear()
    rays = pixel_rays(base, 2)
    for i in range(1, 4):
        e = 1 + i * 1e-9
        jittered = Intrinsics(300.0 * e, 301.0, 159.5 * e, 119.5, 320, 240, "plumb_bob",
                              tuple(v * e for v in LENSES["plumb_bob"]))
        assert pixel_rays(jittered, 2)[0] is rays[0]
        # every pixel, not only the checked ones: within 1e-3 px through the jittered calibration
        xd, yd = distort("plumb_bob", jittered.d, rays[0].astype(np.float64), rays[1].astype(np.float64))
        u, v = _pixel_grid(240, 320, 2)
        assert np.hypot(jittered.fx * xd + jittered.cx - u, jittered.fy * yd + jittered.cy - v).max() < 1e-3
    assert (distortion.stats["grids"], distortion.stats["reused"]) == (1, 3)
    moved = Intrinsics(300.0, 301.0, 159.6, 119.5, 320, 240, "plumb_bob", LENSES["plumb_bob"])
    assert pixel_rays(moved, 2)[0] is not rays[0] and distortion.stats["grids"] == 2
    np.testing.assert_allclose(pixel_rays(moved, 2)[0], undistort("plumb_bob", moved.d, *np.meshgrid(
        (np.arange(0, 320, 2) - 159.6) / 300.0, (np.arange(0, 240, 2) - 119.5) / 301.0))[0], atol=1e-6)


@pytest.mark.parametrize("lens", ["fold", "fisheye_beyond_90_degrees"])
def test_a_jittered_calibration_of_a_lens_with_corners_without_rays_reuses_them(lens):
    """The corners of a strong wide-angle lens (beyond its fold) and of a fisheye of more than 180 degrees (beyond
    90) have no ray; such a calibration jittered in its last digits solved its rays afresh with every frame (a
    pixel without a ray failed the reuse check). Now those pixels must have no ray through the new calibration
    either: reused (3 of 3; 28 % and 22 % of the pixels without a ray, as a solve gives), and a calibration whose
    corners do get rays is solved."""
    model, d, f = {"fold": ("plumb_bob", (-0.5, 0.05, 0.0, 0.0, 0.0), 120.0),
                   "fisheye_beyond_90_degrees": ("equidistant", FISHEYES["barrel"][0], 50.0)}[lens]
    distortion.clear_rays()
    distortion.stats.clear()
    rays = pixel_rays(Intrinsics(f, f, 79.5, 59.5, 160, 120, model, d), 1)
    none = np.isnan(rays[0])
    assert 0.2 < none.mean() < 0.3
    for i in range(1, 4):
        e = 1 + i * 1e-9
        jittered = Intrinsics(f * e, f, 79.5, 59.5 * e, 160, 120, model, tuple(v * e for v in d))
        assert pixel_rays(jittered, 1)[0] is rays[0]
        x, _ = undistort(model, jittered.d, *np.meshgrid((np.arange(160) - jittered.cx) / jittered.fx,
                                                         (np.arange(120) - jittered.cy) / jittered.fy))
        np.testing.assert_array_equal(np.isnan(x), none)
    assert (distortion.stats["grids"], distortion.stats["reused"]) == (1, 3)
    wider = Intrinsics(f * 1.2, f * 1.2, 79.5, 59.5, 160, 120, model, d)   # (the rays of its inner pixels differ too)
    assert pixel_rays(wider, 1)[0] is not rays[0] and np.isnan(pixel_rays(wider, 1)[0]).mean() < none.mean()
    distortion.clear_rays()


def test_a_zooming_4k_camera_holds_at_most_the_rays_budget():
    """A 4K fisheye's rays at stride 1 are 66 MB (two float32 arrays); a zooming camera kept its last 8 in the
    cache: 398 MB here after 6 zoom steps, 531 MB from the 8th on (more with other sizes and strides). Now the
    rays kept are bounded by RAYS_BUDGET_BYTES (256 MiB: 4 at this size), the newest kept. Measured by tracemalloc
    (NumPy's allocations): 265 MB held after the 6 steps (398 MB on the old code)."""
    import gc
    import tracemalloc

    distortion.clear_rays()
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(6):
            intr = Intrinsics(1400.0 + 50 * i, 1400.0 + 50 * i, 1919.5, 1079.5, 3840, 2160, "equidistant",
                              LENSES["equidistant"])
            ax, _ = pixel_rays(intr, 1)
            assert ax.nbytes == 3840 * 2160 * 4
        del ax
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert held <= 256 * 2**20, f"{held / 1e6:.0f} MB held"
    assert distortion.RAYS_BUDGET_BYTES == 256 * 2**20
    assert distortion.rays_held() == (4, 4 * 2 * 3840 * 2160 * 4)
    grids = distortion.stats["grids"]
    assert pixel_rays(intr, 1)[0] is pixel_rays(intr, 1)[0] and distortion.stats["grids"] == grids   # (kept)
    distortion.clear_rays()


def test_rays_over_the_budget_keep_the_newest_and_a_reuse_counts_once(monkeypatch):
    """With a budget smaller than one calibration's rays the newest is still kept (a camera is not re-solved every
    frame); a jittered calibration reusing the last rays holds no more bytes, and a camera whose driver jitters its
    calibration with every frame (30 reuses here) no longer pushes the rays of a steady camera of the same size
    (the other of a stereo pair) out of the cache (on the old code each reuse took one of its 8 places, and the
    last solve kept for reuse was the jittering one's: the steady camera was solved again)."""
    steady = Intrinsics(305.0, 305.0, 161.5, 118.5, 320, 240, "plumb_bob", LENSES["plumb_bob"])
    base = Intrinsics(300.0, 301.0, 159.5, 119.5, 320, 240, "plumb_bob", LENSES["plumb_bob"])
    distortion.clear_rays()
    distortion.stats.clear()
    kept = pixel_rays(steady, 1)
    rays = pixel_rays(base, 1)
    for i in range(1, 31):
        e = 1 + i * 1e-10
        jittered = Intrinsics(300.0 * e, 301.0, 159.5, 119.5 * e, 320, 240, "plumb_bob", LENSES["plumb_bob"])
        assert pixel_rays(jittered, 1)[0] is rays[0]
    for i in range(20):   # pinhole cameras' rays (a row and a column) take none of the places
        pinhole = Intrinsics(200.0 + i, 200.0, 79.5, 59.5, 160, 120)
        assert pixel_rays(pinhole, 1)[0].shape == (1, 160) and pixel_rays(pinhole, 1) is pixel_rays(pinhole, 1)
    assert pixel_rays(steady, 1)[0] is kept[0]
    assert (distortion.stats["grids"], distortion.stats["reused"]) == (2, 30)
    assert distortion.rays_held() == (2, 2 * 320 * 240 * 2 * 4)   # (the reused rays counted once)
    monkeypatch.setattr(distortion, "RAYS_BUDGET_BYTES", 1000)
    pixel_rays(base, 1)   # the newest (after the drop of what is beyond the budget)
    moved = Intrinsics(300.0, 301.0, 160.5, 119.5, 320, 240, "plumb_bob", LENSES["plumb_bob"])
    assert pixel_rays(moved, 1)[0] is pixel_rays(moved, 1)[0]
    assert distortion.rays_held() == (1, 320 * 240 * 2 * 4) and distortion.stats["grids"] == 3
    pixel_rays(base, 1)
    assert distortion.stats["grids"] == 4   # (dropped for moved)
    distortion.clear_rays()
