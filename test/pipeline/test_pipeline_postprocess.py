"""Post-processing: upsampling, metric depth, REP 117 ranges, colour maps, labels and palette."""

import hashlib
import math
import warnings

import cv2
import numpy as np
import pytest
import torch

from dpt_ros.pipeline import (
    ADE20K_CLASSES,
    ADE20K_PALETTE,
    COLORMAPS,
    RunningRange,
    apply_depth_range,
    colorize,
    colorize_labels,
    colormap_lut,
    depth_to_millimetres,
    drop_depth_edges,
    drop_labels,
    labels_from_logits,
    metres_from_millimetres,
    metric_from_inverse,
    overlay,
    upsample,
    upsampled_labels,
)

RNG = np.random.default_rng(8)


def test_upsample_is_bicubic_half_pixel_like_opencv():
    pred = torch.from_numpy(RNG.random((2, 24, 32)).astype(np.float32))
    out = upsample(pred, (60, 80))
    assert out.shape == (2, 60, 80) and out.dtype == torch.float32
    for i in range(2):  # official run_monodepth resizes depth with cv2 INTER_CUBIC: same kernel
        ref = cv2.resize(pred[i].numpy(), (80, 60), interpolation=cv2.INTER_CUBIC)
        np.testing.assert_allclose(out[i].numpy(), ref, atol=2e-6)
    logits = torch.randn(1, 5, 8, 8)
    assert upsample(logits, (16, 24)).shape == (1, 5, 16, 24)
    assert upsample(logits, (8, 8)) is logits  # same size: no work
    wide = torch.randn(1, 3, 6, 10)
    assert upsample(wide, (10, 6)).shape == (1, 3, 10, 6)   # (H, W): the transposed size is another size
    const = torch.full((1, 7, 9), 3.25)
    torch.testing.assert_close(upsample(const, (30, 31)), torch.full((1, 30, 31), 3.25))
    with pytest.raises(ValueError, match=r"\(N, h, w\)"):
        upsample(torch.zeros(5, 5), (10, 10))
    for empty in (torch.zeros(1, 0, 5), torch.zeros(1, 2, 4, 0)):   # a clear error, not OpenCV's assertion
        with pytest.raises(ValueError, match="nothing to upsample"):
            upsample(empty, (10, 10))
    assert upsample(torch.zeros(0, 4, 5), (10, 12)).shape == (0, 10, 12)   # an empty batch is an empty result
    assert upsample(torch.zeros(0, 3, 4, 5), (10, 12)).shape == (0, 3, 10, 12)


@pytest.mark.parametrize(("scale", "shift"), [(6.016e-5, 0.00579), (3.05e-4, 0.1378)])  # KITTI, NYU
def test_metric_from_inverse_official_formula(scale, shift):
    inv = np.array([0.0, 10.0, 1000.0, 5000.0], np.float32)
    expected = 1.0 / np.maximum(scale * inv.astype(np.float64) + shift, 1e-8)
    np.testing.assert_allclose(metric_from_inverse(inv, scale, shift), expected, rtol=1e-6)
    np.testing.assert_allclose(metric_from_inverse(torch.from_numpy(inv), scale, shift).numpy(), expected, rtol=1e-6)
    # a non-positive scale*inv+shift is clamped to eps on both paths (1e8 m: "too far", never NaN or negative)
    assert metric_from_inverse(np.array([-1e9], np.float32), 1.0, 0.0)[0] == pytest.approx(1e8)
    assert metric_from_inverse(torch.tensor([-1e9, 0.5]), 1.0, -1.0).tolist() == pytest.approx([1e8, 1e8])
    with pytest.raises(ValueError, match="scale > 0"):
        metric_from_inverse(inv, 0.0, 1.0)


def test_apply_depth_range_rep117():
    # exactly depth.min (0.3) and depth.max (10) are in range: -inf is "< min", +inf "> max" (REP 117)
    d = np.array([np.nan, 0.0, -1.0, 0.2, 0.3, 0.5, 3.0, 10.0, 11.0, np.inf], np.float32)
    out = apply_depth_range(d, min_depth=0.3, max_depth=10.0)
    exp = [np.nan, np.nan, np.nan, -np.inf, 0.3, 0.5, 3.0, 10.0, np.inf, np.inf]
    np.testing.assert_array_equal(out, np.array(exp, np.float32))
    assert np.isnan(d[0]) and d[3] == np.float32(0.2)  # input untouched unless inplace
    t = apply_depth_range(torch.from_numpy(d), 0.3, 10.0)
    np.testing.assert_array_equal(t.numpy(), np.array(exp, np.float32))
    out = apply_depth_range(d.copy(), 0.0, math.inf)
    assert np.isnan(out[1]) and out[-1] == np.inf and out[8] == 11.0
    with pytest.raises(ValueError, match="min_depth < max_depth"):
        apply_depth_range(d, 5.0, 1.0)


def test_cpu_tensors_take_the_numpy_arithmetic_with_torch_semantics():
    """On the CPU, metric_from_inverse and apply_depth_range run in NumPy (a torch tensor in, one out): the values
    are torch's, bit for bit; ``inplace`` writes into a float32 tensor's own storage but never into a model's
    output (an inference tensor), and other dtypes are converted."""
    inv = torch.from_numpy(RNG.normal(1.0, 2.0, (48, 64)).astype(np.float32))
    inv[0, :4] = torch.tensor([math.nan, 0.0, -3.0, math.inf])
    inv_before = inv.numpy().copy()
    metres = metric_from_inverse(inv, 0.7, 0.05)
    torch_metres = inv.float().mul(0.7).add_(0.05).clamp_min_(1e-8).reciprocal_()   # the CUDA path's arithmetic
    assert isinstance(metres, torch.Tensor) and metres.dtype == torch.float32
    np.testing.assert_array_equal(metres.numpy(), torch_metres.numpy())
    np.testing.assert_array_equal(inv.numpy(), inv_before)   # ``inv`` left alone
    ranged = apply_depth_range(metres.clone(), 0.5, 2.0)
    torch_ranged = torch_metres.clone()
    torch_ranged.masked_fill_(~(torch_ranged > 0), math.nan)
    torch_ranged.masked_fill_(torch_ranged < 0.5, -math.inf)
    torch_ranged.masked_fill_(torch_ranged > 2.0, math.inf)
    np.testing.assert_array_equal(ranged.numpy(), torch_ranged.numpy())
    own = metres.clone()
    assert apply_depth_range(own, 0.5, 2.0, inplace=True).data_ptr() == own.data_ptr()
    np.testing.assert_array_equal(own.numpy(), torch_ranged.numpy())
    with torch.inference_mode():
        model_output = metres.clone()
    before = model_output.clone()
    out = apply_depth_range(model_output, 0.5, 2.0, inplace=True)
    assert out.data_ptr() != model_output.data_ptr()
    np.testing.assert_array_equal(model_output.numpy(), before.numpy())
    np.testing.assert_array_equal(out.numpy(), torch_ranged.numpy())
    half = metres.to(torch.bfloat16)
    np.testing.assert_array_equal(apply_depth_range(half, 0.5, 2.0).numpy(), apply_depth_range(half.float(), 0.5, 2.0).numpy())


def _frames_with_every_kind_of_value():
    """float32 frames with NaN (also negative NaN), +-inf, -0.0, 0, negatives and values about 0.3 .. 10 m (at
    either end)."""
    plain = RNG.uniform(0.5, 9.0, (300, 400)).astype(np.float32)
    edges = plain.copy()
    edges.reshape(-1)[:9] = edges.reshape(-1)[-9:] = [np.nan, -np.nan, np.inf, -np.inf, 0.0, -0.0, -2.0, 0.3, 10.0]
    no_nan = plain.copy()
    no_nan.reshape(-1)[:6] = [np.inf, -np.inf, 0.0, -0.0, -2.0, 0.2]
    limits = plain.copy()
    limits.reshape(-1)[:4] = [0.3, 10.0, 2.0, 8.0]   # each limit itself is in range
    beyond = plain.copy()
    beyond[::5, ::7] = 12.0
    return {"in range": plain, "every kind": edges, "no NaN": no_nan, "-0.0 least": (plain * [[-0.0] + [1] * 399]).astype(np.float32),
            "limits": limits, "beyond max": beyond, "all NaN": np.full((300, 400), np.nan, np.float32)}


def _rep117_by_the_rules(d: np.ndarray, min_depth: float, max_depth: float) -> np.ndarray:
    """Each REP 117 rule written over every value, in float32, as the torch path does (canonical NaN)."""
    d = d.astype(np.float32, copy=True)
    with np.errstate(invalid="ignore"):
        d = np.where(~(d > 0), np.float32(np.nan), d)
        if min_depth > 0:
            d = np.where(d < np.float32(min_depth), np.float32(-np.inf), d)
        if max_depth < math.inf:
            d = np.where(d > np.float32(max_depth), np.float32(np.inf), d)
    return d.astype(np.float32)


@pytest.mark.parametrize("frame", ["in range", "every kind", "no NaN", "-0.0 least", "limits", "beyond max", "all NaN"])
@pytest.mark.parametrize(("min_depth", "max_depth"), [(0.3, 10.0), (0.0, math.inf), (0.0, 1000.0), (2.0, 8.0)])
def test_apply_depth_range_skips_only_the_rules_nothing_needs(frame, min_depth, max_depth):
    """On the CPU a rule runs only where the frame's extremes say it can apply (a NaN anywhere: every rule): the
    result is each rule applied to every value, byte for byte (NaN written as float32's own NaN, also over a NaN of
    another sign), in place or not, for float64 input and for a strided float32 view written in place. A guard for
    the skipping path (the old code ran every rule; it passes there too)."""
    d = _frames_with_every_kind_of_value()[frame]
    want = _rep117_by_the_rules(d, min_depth, max_depth)
    assert apply_depth_range(d, min_depth, max_depth).tobytes() == want.tobytes()
    own = d.copy()
    assert apply_depth_range(own, min_depth, max_depth, inplace=True) is own and own.tobytes() == want.tobytes()
    assert apply_depth_range(d.astype(np.float64), min_depth, max_depth).tobytes() == want.tobytes()
    t = torch.from_numpy(d.copy())
    assert apply_depth_range(t, min_depth, max_depth, inplace=True).numpy().tobytes() == want.tobytes()
    wide = np.stack([d, d * 3, d * 5], -1)   # (H, W, 3): the middle channel is a strided view
    got = apply_depth_range(wide[..., 1], min_depth, max_depth, inplace=True)
    np.testing.assert_array_equal(got, _rep117_by_the_rules(d * 3, min_depth, max_depth))
    np.testing.assert_array_equal(wide[..., 0], d)   # the other channels untouched
    np.testing.assert_array_equal(wide[..., 2], d * 5)
    assert apply_depth_range(np.zeros((0, 4), np.float32), min_depth, max_depth).shape == (0, 4)
    assert np.isnan(apply_depth_range(np.array(-1.0, np.float32), min_depth, max_depth))   # (0-d)


def test_metric_from_inverse_clamps_exactly_where_the_formula_does():
    """On the CPU the clamp to eps is skipped where the frame's minimum is above eps: the values are the formula's,
    byte for byte, with and without values at or below eps, NaN, +-inf, float64 input and a view that is not
    contiguous (a guard for the new path; it passes on the old code too)."""
    inv = RNG.uniform(0.0, 5.0, (400, 300)).astype(np.float32)
    for frame in (inv, np.concatenate([inv, [[0.0] * 300], [[-1.0, np.nan, np.inf, -np.inf] + [1e-9] * 296]])):
        for frame_in in (frame, frame.astype(np.float64), frame[::-1, ::2]):
            for scale, shift, eps in ((0.7, 0.05, 1e-8), (1.0, 0.0, 1e-8), (2.0, -1.0, 1e-3)):
                with np.errstate(invalid="ignore"):
                    x = np.multiply(frame_in, np.float32(scale), dtype=np.float32) + np.float32(shift)
                    want = np.reciprocal(np.maximum(x, np.float32(eps)))
                got = metric_from_inverse(frame_in, scale, shift, eps)
                assert got.dtype == np.float32 and got.tobytes() == want.tobytes()


def test_depth_to_millimetres():
    d = np.array([np.nan, -np.inf, np.inf, 0.0, 0.0004, 0.0006, 1.2345, 65.535, 65.6], np.float32)
    # float32(1.2345) is 1.23450005 m: 1234.50005 mm, nearest 1235
    np.testing.assert_array_equal(depth_to_millimetres(d), [0, 0, 0, 0, 0, 1, 1235, 65535, 0])
    assert depth_to_millimetres(d).dtype == np.uint16
    # a torch tensor stays one (the node converts where the depth lives, then copies half the bytes)
    t = depth_to_millimetres(torch.from_numpy(d))
    assert isinstance(t, torch.Tensor) and t.dtype == torch.uint16
    np.testing.assert_array_equal(t.numpy(), depth_to_millimetres(d))
    r = np.random.default_rng(0).uniform(-1.0, 70.0, (48, 64)).astype(np.float32)
    np.testing.assert_array_equal(depth_to_millimetres(torch.from_numpy(r)).numpy(), depth_to_millimetres(r))


def test_depth_to_millimetres_rounds_the_float32_value_to_nearest():
    # float32 metres a float32 product with 1000 rounds onto the wrong side of the half millimetre
    d = np.array([50.967498779296875, 11.732500076293945, 17.988500595092773, 23.5314998626709], np.float32)
    assert not np.array_equal(np.rint(d * np.float32(1000.0)), [50967, 11733, 17989, 23531])
    exact = [50967, 11733, 17989, 23531]
    np.testing.assert_array_equal(depth_to_millimetres(d), exact)
    np.testing.assert_array_equal(depth_to_millimetres(torch.from_numpy(d)).numpy(), exact)
    # and every value of a frame: float64 holds the product of float32 metres and 1000 exactly
    r = np.random.default_rng(1).uniform(0.0, 65.5, (240, 320)).astype(np.float32)
    expected = np.rint(r.astype(np.float64) * 1000.0)
    expected[(expected <= 0) | (expected > 65535)] = 0
    np.testing.assert_array_equal(depth_to_millimetres(r), expected.astype(np.uint16))
    np.testing.assert_array_equal(depth_to_millimetres(torch.from_numpy(r)).numpy(), expected.astype(np.uint16))
    # a float16 / bfloat16 tensor (fp16 models) and a float64 array take the same path
    np.testing.assert_array_equal(depth_to_millimetres(torch.from_numpy(r).to(torch.bfloat16)).numpy(),
                                  depth_to_millimetres(torch.from_numpy(r).to(torch.bfloat16).float().numpy()))
    np.testing.assert_array_equal(depth_to_millimetres(r.astype(np.float64)), expected.astype(np.uint16))
    # a scalar in, a scalar's worth out (0-d arrays keep working)
    assert int(depth_to_millimetres(np.float32(0.5))) == 500
    assert float(metric_from_inverse(torch.tensor(0.5), 2.0, 0.1)) == pytest.approx(1 / 1.1)


def _edges_by_loop(z, max_jump):
    """The rule of drop_depth_edges written out pixel by pixel."""
    h, w = z.shape
    out = z.copy()
    for v in range(h):
        for u in range(w):
            for nv, nu in ((v - 1, u), (v + 1, u), (v, u - 1), (v, u + 1)):
                if 0 <= nv < h and 0 <= nu < w:
                    a, b = float(z[v, u]), float(z[nv, nu])
                    with np.errstate(invalid="ignore"):
                        if abs(a - b) > max_jump * min(a, b):
                            out[v, u] = np.nan
    return out


def test_drop_depth_edges_matches_the_per_pixel_rule():
    z = RNG.uniform(1.0, 1.3, (13, 17)).astype(np.float32)
    z[4:9, 6:12] += 2.0                              # an object in front of a wall... behind it
    z[0, 3], z[7, 0], z[12, 16] = np.nan, np.inf, -np.inf
    for jump in (0.05, 0.2, 1.0):
        got = drop_depth_edges(torch.from_numpy(z), jump).numpy()
        np.testing.assert_array_equal(got, _edges_by_loop(z, jump))
    assert np.isnan(drop_depth_edges(torch.from_numpy(z), 0.2).numpy()).sum() > 20
    with pytest.raises(ValueError, match="max_jump must be > 0"):
        drop_depth_edges(torch.from_numpy(z), 0.0)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.uint16, torch.int16, torch.int64])
def test_drop_labels_puts_nan_exactly_where_the_classes_are(dtype):
    """Every integer type of labels, uint16 (mono16: past 255 classes) among them."""
    labels = torch.from_numpy(RNG.integers(0, 151, (23, 31)).astype(np.int32)).to(dtype)
    z = torch.from_numpy(RNG.uniform(0.5, 9.0, (23, 31)).astype(np.float32))
    z[0, 0] = float("inf")
    got = drop_labels(z, labels, [13, 3, 150, 13]).numpy()
    lab = labels.numpy()
    out = (lab == 13) | (lab == 3) | (lab == 150)
    assert out.any() and not out.all()
    np.testing.assert_array_equal(got, np.where(out, np.nan, z.numpy()))
    assert np.isfinite(z.numpy()[1:]).all()   # a copy: the depth given is unchanged
    assert drop_labels(z, labels, []) is z
    with pytest.raises(ValueError, match="differ in size"):
        drop_labels(z, labels[1:], [3])


def test_drop_depth_edges_removes_the_veil_between_foreground_and_background():
    """A network predicts at low resolution and is upsampled bicubically: a 2 m object in front of a 5 m
    wall becomes a ramp of in-between depths, which back-project as flying points. The filter drops the
    ramp and keeps both surfaces and a tilted floor (depth 2-3 % apart between neighbours)."""
    low = np.full((24, 32), 5.0, np.float32)
    low[8:16, 10:20] = 2.0
    z = upsample(torch.from_numpy(low)[None], (96, 128))[0]          # 4x, as a 384 net to a 1536 frame
    veil = ((z > 2.1) & (z < 4.9)).numpy()
    assert veil.sum() > 100
    kept = drop_depth_edges(z, 0.05).numpy()
    assert np.isnan(kept[veil]).all()
    assert np.isfinite(kept[:20]).all() and np.isfinite(kept[44:52, 50:70]).all()   # wall, object centre
    floor = torch.from_numpy(np.repeat(np.linspace(3.0, 1.0, 60, dtype=np.float32)[:, None], 80, 1))  # 1-3 % steps
    assert torch.isfinite(drop_depth_edges(floor, 0.05)).all()
    assert not z.isnan().any()   # the input is untouched


# matplotlib's published colour map end points (listed data, 0..1 RGB)
REFERENCE = {
    "viridis": {0.0: (0.267004, 0.004874, 0.329415), 1.0: (0.993248, 0.906157, 0.143936)},
    "inferno": {0.0: (0.001462, 0.000466, 0.013866), 1.0: (0.988362, 0.998364, 0.644924)},
    "magma": {0.0: (0.001462, 0.000466, 0.013866), 1.0: (0.987053, 0.991438, 0.749504)},
    "plasma": {0.0: (0.050383, 0.029803, 0.527975), 1.0: (0.940015, 0.975158, 0.131326)},
    "turbo": {0.0: (0.18995, 0.07176, 0.23217), 1.0: (0.4796, 0.01583, 0.01055)},
    "jet": {0.0: (0.0, 0.0, 0.5), 1.0: (0.5, 0.0, 0.0)},
}


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_colormap_tables_match_published_values(name):
    lut = colormap_lut(name)
    assert lut.shape == (256, 3) and lut.dtype == np.uint8
    for t, rgb in REFERENCE[name].items():
        got = lut[round(t * 255)].astype(float)
        assert np.abs(got - np.array(rgb) * 255).max() <= 1.0, (name, t, got)


def test_viridis_midpoint_and_gray_identity():
    mid = (colormap_lut("viridis")[127].astype(float) + colormap_lut("viridis")[128]) / 2
    assert np.abs(mid - np.array([0.127568, 0.566949, 0.550556]) * 255).max() <= 2.0
    np.testing.assert_array_equal(colormap_lut("gray"), np.repeat(np.arange(256)[:, None], 3, 1))
    for name in COLORMAPS:   # the cached tables are shared by every caller: read-only
        assert not colormap_lut(name).flags.writeable
    assert set(COLORMAPS) >= {"turbo", "inferno", "viridis", "magma", "jet", "gray"}


def test_colorize_fixed_range_clip_invalid_and_reverse():
    v = np.array([[0.0, 0.5, 1.0, 2.0, -1.0, np.nan, np.inf]], np.float32)
    out = colorize(v, "gray", 0.0, 1.0, invalid_color=(1, 2, 3))
    np.testing.assert_array_equal(out[0, :, 0], [0, 128, 255, 255, 0, 1, 1])
    np.testing.assert_array_equal(out[0, 5], [1, 2, 3])
    rev = colorize(v, "gray", 1.0, 0.0)
    np.testing.assert_array_equal(rev[0, :3, 0], [255, 128, 0])
    np.testing.assert_array_equal(colorize(v, "turbo", 0, 1)[0, 2], colormap_lut("turbo")[255])
    with pytest.raises(ValueError, match="unknown colormap 'rainbow'"):
        colorize(v, "rainbow")
    with pytest.raises(ValueError, match="non-empty range"):
        colorize(v, "gray", 1.0, 1.0)
    for lo, hi in ((np.nan, 1.0), (0.0, np.inf)):
        with pytest.raises(ValueError, match="finite, non-empty range"):
            colorize(v, "gray", lo, hi)
    with pytest.raises(ValueError, match=r"colorize expects an \(H, W\) array; got shape \(2, 2, 3\)"):
        colorize(np.zeros((2, 2, 3), np.float32), "gray")


def test_colorize_of_views_other_types_and_invalid_frames():
    """The CPU path works blocks of rows through reused per-thread buffers: a view that is not contiguous (a bgr-reversed
    channel, a stride, a transpose) is coloured as its contiguous copy, float64 as its float32 values (the index is
    worked in float32), every non-finite value, up to a whole frame, gets invalid_color and every other pixel the
    entry its value has alone, and an earlier result is never overwritten by a later call, of another size or on
    another thread. A guard for the new path (the old code passes it too)."""
    frame = RNG.uniform(-1.0, 6.0, (600, 800)).astype(np.float32)   # (blocks of rows, also in the views)
    first = colorize(frame, "turbo", 0.0, 5.0)
    kept = first.copy()
    views = [np.stack([frame, frame + 1, frame * 2], -1)[..., ::-1][..., 2], frame[::2, 1::3], frame.T]
    for v in views:
        assert not v.flags.c_contiguous
        np.testing.assert_array_equal(colorize(v, "turbo", 0.0, 5.0), colorize(np.ascontiguousarray(v), "turbo", 0, 5))
    np.testing.assert_array_equal(colorize(frame.astype(np.float64), "viridis", 5.0, 0.0),
                                  colorize(frame, "viridis", 5.0, 0.0))
    np.testing.assert_array_equal(colorize(frame.astype(np.float64), "gray", 0.0, 1e-40),   # (float64 index)
                                  colorize(frame, "gray", 0.0, 1e-40))
    holes = frame.copy()
    holes[::3] = np.nan
    holes[1, ::2] = np.inf
    holes[2, 1::2] = -np.inf
    got = colorize(holes, "turbo", 0.0, 5.0, invalid_color=(7, 8, 9))
    bad = ~np.isfinite(holes)
    assert (got[bad] == [7, 8, 9]).all() and bad.sum() > 100000
    np.testing.assert_array_equal(got[~bad], first[~bad])
    nothing = colorize(np.full((30, 40), np.nan, np.float32), "turbo", 0.0, 5.0, invalid_color=(1, 2, 3))
    assert nothing.shape == (30, 40, 3) and (nothing == [1, 2, 3]).all()
    import threading   # noqa: PLC0415
    other = []
    thread = threading.Thread(target=lambda: other.append(colorize(frame[:30] * 2, "turbo", 0.0, 5.0)))
    thread.start()
    thread.join()
    np.testing.assert_array_equal(other[0], colorize(frame[:30] * 2, "turbo", 0.0, 5.0))
    np.testing.assert_array_equal(first, kept)   # the first result is its own array


@pytest.mark.parametrize(("vmin", "vmax"), [(3000.0, 3000.01), (1000.0, 1000.1), (1000.1, 1000.2), (-5.0, 5.0),
                                            (2.0, 1.0)])
def test_colorize_indexes_a_narrow_range_far_from_zero_exactly(vmin, vmax):
    """The map index is round((v - vmin) / (vmax - vmin) * 255) to the nearest entry, as float64 gives it, also
    for a narrow range far from zero (a flat wall in model units): v * scale - vmin * scale lost it in float32
    (7 entries off at [3000, 3000.01])."""
    v = np.linspace(min(vmin, vmax), max(vmin, vmax), 4001, dtype=np.float32).reshape(1, -1)
    expected = np.clip(np.floor((v.astype(np.float64) - vmin) / (vmax - vmin) * 255.0 + 0.5), 0, 255)
    got = colorize(v, "gray", vmin, vmax)[0, :, 0].astype(np.float64)
    assert np.abs(got - expected[0]).max() <= 1 and (got != expected[0]).mean() < 0.002


@pytest.mark.parametrize(("vmin", "vmax"), [(0.0, 1e-40), (0.0, 1e-300), (1e-300, 0.0), (-1e-39, 1e-39),
                                            (1e-39, 3e-39)])
def test_colorize_of_a_range_narrower_than_float32_scales_indexes_it_as_float64_does(vmin, vmax):
    """colormap_min / colormap_max take any finite pair min < max: one narrower than float32 can scale (0 .. 1e-40)
    made the scale infinite, a value at the range's low end NaN (NumPy warned of an overflow in the cast and an
    invalid value in the multiply on every frame) and a value inside the range an end of the map. Each value's
    entry is now round((v - vmin) / (vmax - vmin) * 255), clipped, as float64 gives it, with no warning."""
    inside = np.linspace(min(vmin, vmax), max(vmin, vmax), 11, dtype=np.float32)   # (float32's denormals, or 0)
    v = np.concatenate([inside, np.array([-1.0, 0.0, 1.0, 3e38, -3e38, np.nan, np.inf], np.float32)]).reshape(1, -1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = colorize(v, "gray", vmin, vmax, invalid_color=(1, 2, 3))[0, :, 0]
    finite = np.isfinite(v[0])
    with np.errstate(over="ignore"):   # (1 / 1e-300: +-inf, clipped)
        expected = np.clip(np.floor((v[0, finite].astype(np.float64) - vmin) / (vmax - vmin) * 255.0 + 0.5), 0, 255)
    np.testing.assert_array_equal(got[finite], expected)
    assert list(got[~finite]) == [1, 1]
    if vmin == -1e-39:
        assert got[list(v[0]).index(0.0)] == 128   # (the middle of the range: was the first entry)


def test_running_range_is_stable_and_smoothed():
    rr = RunningRange(low=0.0, high=100.0, momentum=0.9)
    base = np.linspace(1.0, 5.0, 10000, dtype=np.float32).reshape(100, 100)
    assert rr.update(base) == pytest.approx((1.0, 5.0))
    lo, hi = rr.update(base * 3)  # scene jumps: range moves 10 % of the way per frame
    assert lo == pytest.approx(1.2) and hi == pytest.approx(6.0)
    for _ in range(200):
        lo, hi = rr.update(base * 3)
    assert (lo, hi) == pytest.approx((3.0, 15.0), rel=1e-4)
    with_nan = base.copy()
    with_nan[:50] = np.nan
    rr2 = RunningRange(2, 98, momentum=0.0)
    lo, hi = rr2.update(with_nan)
    assert 3.0 <= lo < hi <= 5.0  # NaN ignored
    assert rr2.update(np.full((4, 4), np.nan)) == (lo, hi)  # nothing valid: keep the range
    for low, high in ((50, 10), (30, 30), (-1, 50), (10, 101)):
        with pytest.raises(ValueError, match=f"percentiles must satisfy 0 <= low < high <= 100; got {low}, {high}"):
            RunningRange(low, high)
    with pytest.raises(ValueError, match=r"momentum must be in \[0, 1\); got 1.0"):
        RunningRange(momentum=1.0)
    rr.reset()   # forget the history: the next frame sets the range directly
    assert rr.update(base) == pytest.approx((1.0, 5.0))


def test_running_range_reads_a_bounded_subsample():
    """Percentiles come from every n-th pixel (n = size // max_samples), so their cost stays bounded."""
    stripes = np.tile(np.array([1.0, 9.0], np.float32), 50)   # 1, 9, 1, 9, ...
    assert RunningRange(0, 100, max_samples=100).update(stripes) == pytest.approx((1.0, 9.0))
    lo, hi = RunningRange(0, 100, max_samples=50).update(stripes)   # every 2nd pixel: only the 1s
    assert lo == pytest.approx(1.0) and hi < 1.001


@pytest.mark.parametrize("frame", [np.full((8, 8), 2.0, np.float32), np.zeros((8, 8), np.float32),
                                   np.full((8, 8), -3.0, np.float32), np.full((8, 8), 3e12, np.float32)],
                         ids=["two", "zero", "negative", "huge"])
def test_running_range_of_a_uniform_frame_is_still_a_range(frame):
    # a lens cap or a blank wall: every percentile is equal, yet colouring needs vmax > vmin (also where
    # a fixed 1e-6 would vanish in the float64 sum: 3e12 + 1e-6 == 3e12)
    lo, hi = RunningRange().update(frame)
    assert lo == pytest.approx(float(frame[0, 0])) and hi > lo
    assert colorize(frame, "turbo", lo, hi).shape == (8, 8, 3)


def test_running_range_ignores_infinities():
    """+-inf (e.g. a zero-depth pixel inverted) would make the range infinite and colorize refuse it."""
    frame = np.linspace(1.0, 2.0, 400, dtype=np.float32).reshape(20, 20)
    frame[:5] = np.inf
    frame[5, :10] = -np.inf
    lo, hi = RunningRange(0, 100).update(frame)
    assert (lo, hi) == pytest.approx((float(frame[5, 10]), 2.0))
    assert colorize(frame, "gray", lo, hi)[10, 10, 0] > 0


def test_running_range_starts_at_0_1_before_any_valid_value():
    rr = RunningRange()
    assert rr.update(np.full((4, 4), np.nan, np.float32)) == (0.0, 1.0)
    assert rr.update(np.full((4, 4), 5.0, np.float32))[0] == pytest.approx(5.0)  # the first valid frame sets it


def _numpys_percentiles(values: np.ndarray, low: float, high: float, max_samples: int) -> tuple[float, float] | None:
    flat = np.ascontiguousarray(values).reshape(-1)
    sample = flat[::max(1, flat.size // max_samples)]
    sample = sample[np.isfinite(sample)].astype(np.float64)
    return None if sample.size == 0 else tuple(float(v) for v in np.percentile(sample, [low, high]))


def test_running_range_percentiles_are_numpys():
    """On the CPU the percentiles come from the sorted sample with np.percentile's own arithmetic: equal to
    np.percentile of the finite sampled values, bit for bit, for every sample size from 2, uneven percentiles,
    float32 / float64 / float16 / integer frames, NaN and +-inf among the values, and views that are not
    contiguous (the sample is every n-th value in C order, as before, without copying the frame). A guard for the
    new path (the old code called np.percentile; it passes there too)."""
    for n in [*range(2, 40), 1000, 20000, 20001, 40000]:   # (from 2: one value is widened to a range)
        v = RNG.normal(3.0, 2.0, n).astype(np.float32)
        for low, high in ((2.0, 98.0), (0.0, 100.0), (33.3, 66.7), (12.5, 87.5)):
            rr = RunningRange(low, high, momentum=0.0)
            assert rr.update(v) == pytest.approx(_numpys_percentiles(v, low, high, 20000), rel=0, abs=0)
    frame = RNG.lognormal(0.0, 1.0, (120, 160)).astype(np.float32)
    frame[::9, ::4] = np.nan
    frame[3, :20] = np.inf
    frame[4, :20] = -np.inf
    frame[5, :3] = -np.nan
    views = {"float32": frame, "float64": frame.astype(np.float64), "float16": frame.astype(np.float16),
             "uint16": np.nan_to_num(frame, nan=0, posinf=0, neginf=0).astype(np.uint16) * 7,
             "bgr reversed": np.stack([frame, frame * 2, frame * 3], -1)[..., ::-1][..., 0],
             "strided": frame[1::3, ::2], "transposed": frame.T}
    for name, v in views.items():
        assert not name.startswith(("bgr", "strided", "trans")) or not v.flags.c_contiguous
        for max_samples in (20000, 500, 7):
            rr = RunningRange(2.0, 98.0, momentum=0.0, max_samples=max_samples)
            assert rr.update(v) == _numpys_percentiles(v, 2.0, 98.0, max_samples), (name, max_samples)
    keep = RunningRange(0, 100, momentum=0.0)
    keep.update(frame)
    assert keep.update(np.full((30, 40), np.nan, np.float32)[:, ::2]) == (keep.vmin, keep.vmax)   # none finite


def test_upsampled_labels_are_the_argmax_of_the_upsampled_logits():
    """Class by class into a running maximum on the CPU: the labels of the whole upsampled logits (torch's
    bicubic, the official order) wherever the top two classes are further apart than float rounding."""
    torch.manual_seed(3)
    logits = torch.randn(2, 40, 24, 32) * 3
    whole = upsample(logits, (50, 70))
    want = labels_from_logits(whole)
    got = upsampled_labels(logits, (50, 70))
    assert got.dtype == torch.uint8 and got.shape == (2, 50, 70)
    top2 = whole.topk(2, dim=1).values
    differ = got != want
    assert differ.float().mean() < 1e-3 and bool(((top2[:, 0] - top2[:, 1])[differ] < 1e-4).all())
    assert int(got.min()) >= 1 and int(got.max()) <= 40
    # a tie keeps the lower class, as argmax does; a constant class wins everywhere
    tied = torch.zeros(1, 4, 5, 5)
    tied[0, 2] = 1.0
    tied[0, 3] = 1.0
    np.testing.assert_array_equal(upsampled_labels(tied, (9, 11))[0].numpy(), np.full((9, 11), 3, np.uint8))
    # at network size there is nothing to upsample
    assert torch.equal(upsampled_labels(logits, (24, 32)), labels_from_logits(logits))
    wide = torch.zeros(1, 300, 3, 3)
    wide[0, 299] = 2.0
    many = upsampled_labels(wide, (6, 5))
    assert many.dtype == torch.uint16 and bool((many == 300).all())
    with pytest.raises(ValueError, match="positive"):
        upsampled_labels(logits, (0, 5))
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        upsampled_labels(logits[0], (5, 5))


@pytest.mark.parametrize("group", [1, 7, 16, 149])
def test_labels_in_groups_are_the_labels_of_all_classes_at_once(group):
    """The GPU's grouped upsample (torch's kernel, run here on the CPU): bit for bit the labels of upsampling all
    classes at once, whatever the group size; a tie across groups keeps the lower class."""
    from dpt_ros.pipeline.postprocess import _labels_in_groups

    logits = torch.randn(2, 150, 24, 32, generator=torch.Generator().manual_seed(4)) * 3
    logits[0, 100, 3:9, 4:12] = 50.0   # the same winning value in classes 100 and 140: label 101 wins
    logits[0, 140, 3:9, 4:12] = 50.0
    want = labels_from_logits(upsample(logits, (50, 70)))
    got = _labels_in_groups(logits, (50, 70), group)
    assert got.dtype == torch.uint8 and torch.equal(got, want)
    assert int(got[0, 15, 20]) == 101


def test_labels_from_logits_official_one_based():
    logits = torch.zeros(1, 150, 2, 3)
    logits[0, 0, 0, 0] = 1  # class index 0 -> label 1 (wall)
    logits[0, 2, 0, 1] = 1  # -> label 3 (sky)
    logits[0, 149, 1, 2] = 5  # -> label 150 (flag)
    labels = labels_from_logits(logits)
    assert labels.dtype == torch.uint8
    assert labels_from_logits(torch.zeros(1, 255, 1, 1)).dtype == torch.uint8   # 255 classes still fit mono8
    assert labels[0, 0, 0] == 1 and labels[0, 0, 1] == 3 and labels[0, 1, 2] == 150
    assert ADE20K_CLASSES[labels[0, 0, 1] - 1] == "sky"
    wide = torch.zeros(1, 300, 2, 2)
    wide[0, 299, 1, 0] = 1
    many = labels_from_logits(wide)
    assert many.dtype == torch.uint16 and many[0, 1, 0] == 300 and many[0, 0, 0] == 1
    # published as mono16: two bytes per pixel, not the four of an int32
    assert many[0].numpy().dtype == np.uint16 and many[0].numpy().nbytes == 2 * 2 * 2


def test_ade20k_names_and_palette():
    assert len(ADE20K_CLASSES) == 150 and len(set(ADE20K_CLASSES)) == 150
    assert ADE20K_CLASSES[:5] == ("wall", "building", "sky", "floor", "tree")
    assert ADE20K_CLASSES[12] == "person" and ADE20K_CLASSES[-1] == "flag"
    assert ADE20K_PALETTE.shape == (151, 3) and ADE20K_PALETTE.dtype == np.uint8
    np.testing.assert_array_equal(ADE20K_PALETTE[0], [0, 0, 0])
    np.testing.assert_array_equal(ADE20K_PALETTE[1], [120, 120, 120])  # wall
    np.testing.assert_array_equal(ADE20K_PALETTE[3], [6, 230, 230])  # sky
    np.testing.assert_array_equal(ADE20K_PALETTE[13], [150, 5, 61])  # person
    np.testing.assert_array_equal(ADE20K_PALETTE[150], [92, 0, 255])  # flag
    # all of both, not only the rows above (two names swapped, or a typo in a row, mislabels a class in every output,
    # label_info and exclude_classes): the SHA-256 of the SceneParsing objectInfo150 short names (as mmsegmentation
    # lists them), one per line, and of the official DPT adepallete's 453 bytes, each checked against those
    # public lists
    assert hashlib.sha256("\n".join(ADE20K_CLASSES).encode()).hexdigest() == \
        "f9dbd8a75a0722c971d8c82db76dc205e06cb422d98153f4e5bbf90408ef5438", "class names differ from objectInfo150's"
    assert hashlib.sha256(ADE20K_PALETTE.tobytes()).hexdigest() == \
        "7ebd74a64a5606f03f97390c429a4b952532e4bf13ae1450908b1008d6b07d9d", "palette differs from DPT's adepallete"


def test_colorize_labels_and_overlay():
    labels = np.array([[0, 1, 3], [150, 151, 13]], np.uint8)
    col = colorize_labels(labels)
    np.testing.assert_array_equal(col[0], [[0, 0, 0], [120, 120, 120], [6, 230, 230]])
    np.testing.assert_array_equal(col[1], [[92, 0, 255], [0, 0, 0], [150, 5, 61]])  # 151: beyond palette
    rgb = np.full((2, 3, 3), 100, np.uint8)
    blended = overlay(rgb, col, 0.5)
    np.testing.assert_array_equal(blended[0, 1], [110, 110, 110])
    np.testing.assert_array_equal(blended[0, 2], [53, 165, 165])
    np.testing.assert_array_equal(overlay(rgb, col, 0.0), rgb)
    np.testing.assert_array_equal(overlay(rgb, col, 1.0), col)
    with pytest.raises(ValueError, match="alpha"):
        overlay(rgb, col, 1.5)


def test_label_colours_of_every_value_of_each_label_dtype():
    """mono8 labels through OpenCV's table, mono16 through a full-range palette, other integers clipped: each
    value its palette row, black past the palette (and below 0)."""
    want = np.zeros((65536, 3), np.uint8)
    want[:151] = ADE20K_PALETTE
    every8 = np.arange(256, dtype=np.uint8).reshape(16, 16)
    np.testing.assert_array_equal(colorize_labels(every8), want[every8])
    np.testing.assert_array_equal(colorize_labels(every8[:, ::2]), want[every8[:, ::2]])   # a strided view
    every16 = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    np.testing.assert_array_equal(colorize_labels(every16), want[every16])
    wide = np.array([[-3, 0, 150], [151, 7, 100000]], np.int32)
    np.testing.assert_array_equal(colorize_labels(wide), want[np.clip(wide, 0, 151)])
    small = np.array([[120, 120, 120], [255, 255, 255]], np.uint8)   # a 2-colour palette
    np.testing.assert_array_equal(colorize_labels(np.array([[0, 1, 2, 3]], np.uint8), small),
                                  [[[120, 120, 120], [255, 255, 255], [0, 0, 0], [0, 0, 0]]])


@pytest.mark.parametrize("alpha", [0.5, 0.3, 0.77, 0.0, 1.0])
def test_overlay_of_every_byte_pair_is_the_float32_blend(alpha):
    """Every (image, colour) byte pair: rgb + alpha * (colour - rgb) in float32, truncated (the table on the CPU
    is that arithmetic done once per pair)."""
    base, color = np.meshgrid(np.arange(256), np.arange(256), indexing="ij")
    rgb = np.repeat(base[..., None], 3, axis=2).astype(np.uint8)
    col = np.repeat(color[..., None], 3, axis=2).astype(np.uint8)
    a = np.float32(alpha)
    want = (rgb.astype(np.float32) + (col.astype(np.float32) - rgb.astype(np.float32)) * a).astype(np.uint8)
    got = overlay(rgb, col, alpha)
    assert got.dtype == np.uint8 and got.shape == rgb.shape
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("alpha", [0.5, 0.3, 0.75, 0.1])
def test_overlay_equals_pil_blend_of_the_official_write_segm_img(alpha):
    pil = pytest.importorskip("PIL.Image")
    rng = np.random.default_rng(11)
    rgb = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    col = colorize_labels(rng.integers(0, 151, (37, 53)).astype(np.uint8))
    ref = np.asarray(pil.blend(pil.fromarray(rgb).convert("RGBA"), pil.fromarray(col).convert("RGBA"), alpha))[..., :3]
    np.testing.assert_array_equal(overlay(rgb, col, alpha), ref)


def test_metres_from_millimetres_read_a_16uc1_image_as_depth_image_proc_does():
    """mm * 0.001f in float32, NaN for 0; and through depth_to_millimetres: no depth past 65.535 m survives."""
    mm = np.array([[0, 1, 1235, 65535]], np.uint16)
    want = np.array([[np.nan, np.float32(1) * np.float32(0.001), np.float32(1235) * np.float32(0.001),
                      np.float32(65535) * np.float32(0.001)]], np.float32)
    for got in (metres_from_millimetres(mm), metres_from_millimetres(torch.from_numpy(mm)).numpy()):
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, want)
    far = metres_from_millimetres(depth_to_millimetres(np.array([1.2345, 65.5, 65.6, np.inf, -1.0], np.float32)))
    np.testing.assert_array_equal(np.isnan(far), [False, False, True, True, True])
    assert far[0] == np.float32(1235) * np.float32(0.001)
