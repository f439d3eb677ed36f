"""Combinations of the node's live post-processing parameters, set together through the real
set_parameters_atomically service, each followed by a frame (varied size, encoding, row padding, camera_info
scale and lens); every output of that frame is checked against an oracle written here from the frame itself and
the published messages: depth = 1 / (scale * inverse_depth + shift) with REP 117's -Inf / +Inf / NaN (16UC1: its
millimetres), the cloud's layout and its points as the published depth back-projected (or projected through the
lens), its colours as the input pattern and its labels as the published segmentation, the overlay, a fixed colour
range, the compressed copies as image_transport's subscribers read them, the counters, and refusals that change
nothing. A fixed seed: the same draws every run. Distilled from an exploratory fuzz (2000 draws) that found
compressedDepth reading REP 117's -Inf back as compressed.depth_max; its configuration is the first draw here. The
input is drawn too (image_transport, set with the parameters): a third of the frames come as image/compressed, PNG
or JPEG as image_transport's compressed plugin writes them, and every output is checked against what the node must
see in them. So are max_rate, points.max_rate and depth.align (from a generator of their own): a frame beyond
max_rate is skipped on arrival and counted throttled, a cloud beyond points.max_rate is not built and counted
throttled.points (a frame that can build none gives its turn back), and an aligned frame's metres are the fit to a
reference depth made here from the model's own inverse depth; the counters add up (received = processed + dropped +
idle + throttled + errors) after every frame."""
import collections
import copy
import random
from typing import Optional

import cv2
import numpy as np
from rcl_interfaces.srv import SetParametersAtomically
from rclpy.parameter import Parameter
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2

from dpt_ros import pipeline
from dpt_ros.ros import conversions, params
from dpt_ros.ros.testing import (MAKE_IMAGE_ENCODINGS, call_service, exact_reference, get_params, make_image,
                                 make_info, model_inverse_depth, padded, pattern_image, qos, read_compressed,
                                 read_compressed_depth, wait_for)

DOMAIN = 93
SEED, DRAWS = 20261205, 48
#: the input's draws (image_transport, codec, format string) come from a generator of their own, so that adding them
#: left the parameters' draws of SEED, and the classes they cover, as they were (SEED + 1 and + 2 had no compressed
#: frame whose colours an output shows of one codec or the other; + 3 has each)
TRANSPORT_SEED = SEED + 3
#: max_rate, points.max_rate and depth.align (and a reference's holes, the frames sent beyond max_rate) likewise
RATE_SEED = SEED + 4
#: the rates drawn, for which frame a throttle lets through not to depend on the clock: the top of the range, whose
#: period (1 ms; a frame may come half of it early) is far shorter than this test's frames are apart, lets every frame
#: through; a slow rate, one frame in 500 .. 1000 s (each drawn anew, so a new setting), lets through the first frame
#: after it was set and none after it while it stays (a turn comes again half a period on: after the test)
TOP_RATE, SLOW_RATES = 1000.0, (1.0 / 1000.0, 1.0 / 500.0)

TYPES = {"inverse_depth": Image, "inverse_depth/colored": Image, "depth": Image, "depth/camera_info": CameraInfo,
         "segmentation": Image, "segmentation/colored": Image, "points": PointCloud2,
         "inverse_depth/colored/compressed": CompressedImage, "segmentation/colored/compressed": CompressedImage,
         "segmentation/compressed": CompressedImage, "depth/compressedDepth": CompressedImage}
COPIES = {"inverse_depth/colored/compressed": "inverse_depth/colored", "depth/compressedDepth": "depth",
          "segmentation/compressed": "segmentation", "segmentation/colored/compressed": "segmentation/colored"}
CLASS_NAMES = params._class_names()   # label value = index ("unlabeled" is 0)

#: live parameters drawn from generators of their own (so that adding them left the draws of SEED as they were):
#: image_transport (TRANSPORT_SEED) and the throttles and depth.align (RATE_SEED: _draw_rates)
OWN_DRAWS = {"image_transport", "max_rate", "points.max_rate", "depth.align"}
#: live parameters not drawn: depth.align_tolerance (every reference here has its frame's stamp), depth.align_transport
#: (the references here are sent raw), the inputs and the
#: node's own set-up (camera_info.url, diagnostics.period, cpu_threads), and the two outputs the oracle reads
#: (publish.inverse_depth, publish.segmentation: the depth oracle is computed from the published inverse depth, the
#: exclusions from the published labels)
NOT_DRAWN = {"depth.align_tolerance", "depth.align_transport", "camera_info.url", "diagnostics.period", "cpu_threads",
             "publish.inverse_depth", "publish.segmentation"}
LIVE = [p for p in params.PARAMETERS if p.apply == "live" and p.name not in NOT_DRAWN | OWN_DRAWS]

#: the combination that exposed the compressedDepth bug (fixed in c3da476): with shift 0.5 every depth is <= 2 m,
#: so depth.min 3 makes it all REP 117's -Inf; compressed.depth_max 100 >= 2 q (q + 1) with q 5, where the old code
#: gave -Inf a valid code, read back as 100 m. The other depth.min draws below (1.5, 2.0, 3.0 with
#: compressed.depth_max 4 .. 1000 and quantization 1, 5) revisit the class on parts of frames.
FIRST = {"depth.scale": 1.0, "depth.shift": 0.5, "depth.min": 3.0, "depth.max": 1000.0, "depth.encoding": "32FC1",
         "compressed.depth_max": 100.0, "compressed.depth_quantization": 5.0, "points.organized": True}

#: the second draw: a raw camera (its frame gets a lens), every pixel a point, with rgb and label
RAW_LENS = {"depth.min": 0.0, "camera_info.rectified": False, "points.enabled": True, "points.stride": 1,
            "points.organized": False, "points.color": True, "points.label": True}

#: sets the node must refuse as a whole (each value alone valid or not), leaving every setting as it was
REFUSED = [{"depth.min": 5.0, "depth.max": 5.0}, {"colormap_min": 2.0, "colormap_max": 1.0},
           {"points.exclude_classes": "person, nosuchclass"}, {"points.stride": 0},
           {"points.stride": 3, "depth.min": 2.0, "depth.max": 1.0}, {"colormap": "nope", "points.stride": 5},
           {"max_rate": 5.0, "points.max_rate": 1001.0, "depth.align": True}]


def _draw(rng: random.Random, spec) -> object:
    """A value for ``spec``: its choices, the ends of its range and values where the outputs change."""
    name = spec.name
    if name.endswith("exclude_classes"):
        return ", ".join(rng.sample(CLASS_NAMES[1:], rng.choice([0, 1, 3, 20])))
    if spec.listed_choices():
        return rng.choice(spec.listed_choices())
    if spec.type is bool:
        return rng.random() < 0.6
    if name == "points.stride":
        return rng.choice([1, 2, 3, 7, 64])
    if name == "compressed.jpeg_quality":
        return rng.choice([1, 50, 100])
    if name == "depth.min":
        return rng.choice([0.0, 0.0, 0.5, 1.0, 1.5, 2.0, 3.0])
    if name == "depth.max":
        return rng.choice([1.0, 2.0, 3.0, 1000.0, 1000.0])
    if name == "depth.scale":
        return rng.choice([0.0, 1.0, 0.5, 3.0, 1e6, 1e-6])
    if name == "depth.shift":
        return rng.choice([0.0, 0.5, -0.5, 1.0, 1e-3, 1e6])
    if name in ("colormap_min", "colormap_max"):
        return rng.choice([-1.0, 0.0, 0.01, 0.1, 1.0, 2.5]) if name == "colormap_min" else rng.choice([0.1, 1.0, 2.5])
    if name == "compressed.depth_max":
        return rng.choice([0.01, 1.0, 4.0, 100.0, 1000.0])
    if name == "compressed.depth_quantization":
        return rng.choice([1.0, 5.0, 100.0, 10000.0])
    if name == "points.edge_filter":
        return rng.choice([0.0, 0.0, 0.001, 0.003, 0.1])   # (neighbours here differ by about 0.1 %)
    if name == "segmentation.overlay_alpha":
        return rng.choice([0.0, 0.3, 1.0])
    if name == "camera_info.tolerance":
        return rng.choice([0.0, 0.05])
    raise AssertionError(f"no draw for {name}: add one")


def _draw_rates(rng: random.Random, s: dict, hold_points: bool) -> dict:
    """max_rate and points.max_rate, each kept as it is (40 %), 0, TOP_RATE or a new slow rate; depth.align switched
    now and then (30 %). Where the settings ``s`` (the draw's) leave the cloud no metres but depth.align's, a frame
    without a fit may give its turn back: there depth.align is on more often and points.max_rate more often a new slow
    rate. ``hold_points``: points.max_rate is kept (a slow one whose turn a cloud just took: the next cloud is
    skipped)."""
    turn_back = s["depth.scale"] == 0 and s["points.enabled"]
    values = {}
    for name in ("max_rate", "points.max_rate")[:1 if hold_points else 2]:
        r = rng.random()
        if turn_back and name == "points.max_rate" and r < 0.5:
            values[name] = rng.uniform(*SLOW_RATES)
        elif r < 0.6:
            values[name] = 0.0 if r < 0.3 else TOP_RATE if r < 0.4 else rng.uniform(*SLOW_RATES)
    if rng.random() < (0.6 if turn_back else 0.3):
        values["depth.align"] = rng.random() < (0.8 if turn_back else 0.5)
    return values


class _Turns:
    """A throttle at the rates drawn here (max_rate, points.max_rate): whether it lets the next frame (cloud)
    through. 0 and TOP_RATE let all through; a slow rate the first after it was set, then none (README: at most that
    many a second, one up to half a period early; a frame that could build no cloud gives its turn back)."""

    def __init__(self) -> None:
        self.rate, self.used = 0.0, False

    def take(self, rate: float) -> bool:
        if rate != self.rate:
            self.rate, self.used = rate, False
        if rate in (0.0, TOP_RATE):
            return True
        taken, self.used = not self.used, True
        return taken

    def give_back(self) -> None:
        self.used = False


def _frame_rgb(encoding: str, w: int, h: int, seed: int) -> np.ndarray:
    """The RGB the node must see in make_image's frame: its pattern (mono: the grey, in all three channels)."""
    rgb = pattern_image(w, h, seed)
    if encoding.startswith("mono"):
        return np.repeat(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)[..., None], 3, 2)
    return rgb


def _compressed(img: Image, codec: str, bare: bool) -> tuple[CompressedImage, Optional[np.ndarray]]:
    """``img`` (unpadded, one of make_image's encodings) as image_transport's compressed plugin publishes it: a colour
    frame converted to bgr8 / bgr16 (alpha dropped) and written as PNG or JPEG (8-bit only), a mono one as it is; the
    format '<encoding>; <codec> compressed <bgr8|bgr16|>' or, as some drivers write it, the bare codec name. With the
    RGB the node must see in it where that is not the frame's own (:func:`_frame_rgb`, which PNG keeps): JPEG's as
    libjpeg decodes it. A 16-bit PNG's samples are make_image's v * 257 plus 127 (but 65535), which README's rounding
    to 8 bits reads as v, and OpenCV's own conversion (the top byte) as v + 1 from v = 129 on."""
    wide = img.encoding.endswith("16")
    dtype = np.uint16 if wide else np.uint8
    channels = 1 if img.encoding.startswith("mono") else 4 if img.encoding[3] == "a" else 3
    row = img.width * channels * np.dtype(dtype).itemsize
    px = np.ascontiguousarray(np.frombuffer(bytes(img.data), np.uint8).reshape(img.height, img.step)[:, :row])
    px = px.view(dtype).reshape(img.height, img.width, channels)
    target = ""
    if channels > 1:   # (to BGR, as cv_bridge converts it to the plugin's bgr8 / bgr16)
        px = px[..., :3] if img.encoding.startswith("bgr") else px[..., 2::-1]
        target = "bgr16" if wide else "bgr8"
    px = np.ascontiguousarray(px[..., 0] if channels == 1 else px)
    if wide:   # v * 257 + 127 (65535 as it is): still v rounded to 8 bits, v + 1 from 129 on in the top byte alone
        px = px + np.where(px < 65535, 127, 0).astype(np.uint16)
    ok, data = cv2.imencode(".png" if codec == "png" else ".jpg", px)
    assert ok
    fmt = codec if bare else f"{img.encoding}; {codec} compressed {target}"
    msg = CompressedImage(header=img.header, format=fmt, data=data.tobytes())
    if codec == "png":
        return msg, None
    return msg, cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def _expected_depth(inv: np.ndarray, s, labels: np.ndarray) -> np.ndarray:
    """32FC1 metres: 1 / max(scale * inv + shift, 1e-8) in float32 steps; REP 117: below depth.min -Inf (where
    depth.min > 0), above depth.max +Inf; NaN on depth.exclude_classes."""
    with np.errstate(divide="ignore", over="ignore"):
        m = np.float32(1) / np.maximum(inv * np.float32(s["depth.scale"]) + np.float32(s["depth.shift"]),
                                       np.float32(1e-8))
    lo, hi = np.float32(s["depth.min"]), np.float32(s["depth.max"])
    m = np.where(m > hi, np.float32(np.inf), m)
    if s["depth.min"] > 0:
        m = np.where(m < lo, np.float32(-np.inf), m)
    excluded = [CLASS_NAMES.index(n.strip()) for n in s["depth.exclude_classes"].split(",") if n.strip()]
    return np.where(np.isin(labels, excluded), np.float32(np.nan), m).astype(np.float32)


def _millimetres(depth: np.ndarray) -> np.ndarray:
    """16UC1 (REP 118): rounded millimetres, 0 where there is no depth (NaN, +-Inf, <= 0, beyond 65.535 m)."""
    with np.errstate(invalid="ignore", over="ignore"):
        mm = np.rint(depth.astype(np.float64) * 1000.0)
        return np.where((mm > 0) & (mm <= 65535), mm, 0).astype(np.uint16)


def _edges(depth: np.ndarray, jump: float) -> np.ndarray:
    """points.edge_filter: pixels whose depth differs from a 4-neighbour's by more than ``jump`` times the nearer
    of the two (±Inf neighbours are edges, NaN ones are not)."""
    z = depth.astype(np.float32)
    edge = np.zeros(z.shape, bool)
    with np.errstate(invalid="ignore"):
        across = np.abs(z[:, 1:] - z[:, :-1]) > np.float32(jump) * np.minimum(z[:, 1:], z[:, :-1])
        down = np.abs(z[1:] - z[:-1]) > np.float32(jump) * np.minimum(z[1:], z[:-1])
    edge[:, 1:] |= across
    edge[:, :-1] |= across
    edge[1:] |= down
    edge[:-1] |= down
    return edge


def _check_cloud(pc, s, info, metres, ranged, labels, rgb, w, h) -> None:
    """The cloud's layout, and its points against the depth of ``metres`` (as the consumer of the published
    depth reads it; the edge filter looks at ``ranged``, the float metres before any millimetres) back-projected
    through the camera_info scaled to the frame (P for a rectified camera, K and D through OpenCV's forward model
    for a raw one), with the frame's colours (or its classes') and the published labels."""
    color, label = s["points.color"], s["points.label"]
    fields = [("x", 0, 7, 1), ("y", 4, 7, 1), ("z", 8, 7, 1)] + ([("rgb", 12, 7, 1)] if color else [])
    fields += [("label", 4 * len(fields), 6, 1)] if label else []   # (FLOAT32 7, UINT32 6)
    assert [(f.name, f.offset, f.datatype, f.count) for f in pc.fields] == fields
    assert (pc.point_step, pc.row_step, pc.is_bigendian) == (4 * len(fields), pc.width * 4 * len(fields), False)
    assert len(pc.data) == pc.row_step * pc.height
    st = s["points.stride"]
    v, u = np.mgrid[0:h:st, 0:w:st]
    z = metres[v, u].astype(np.float64)
    keep = np.isfinite(z) & (z > 0)
    if s["points.edge_filter"] > 0:
        keep &= ~_edges(ranged, s["points.edge_filter"])[v, u]
    excluded = [CLASS_NAMES.index(n.strip()) for n in s["points.exclude_classes"].split(",") if n.strip()]
    keep &= ~np.isin(labels[v, u], excluded)
    got = conversions.cloud_array(pc)
    sx, sy = w / info.width, h / info.height
    scale = np.array([[sx, 0, sx], [0, sy, sy], [0, 0, 1]])   # the camera_info's pixels to the frame's
    k = np.asarray(info.k).reshape(3, 3) * scale
    lens = not s["camera_info.rectified"] and any(info.d)
    if lens:   # a raw camera's rays exist only where its lens model can be inverted: the points are a part of keep,
        # found by projecting each back through K and D (OpenCV's forward model), which must land on its own pixel
        flat = got.reshape(-1)
        flat = flat[np.isfinite(flat["z"])]
        xyz = np.stack([flat["x"], flat["y"], flat["z"]], -1).astype(np.float64).reshape(-1, 1, 3)
        px = cv2.projectPoints(xyz, np.zeros(3), np.zeros(3), k, np.asarray(info.d, float))[0].reshape(-1, 2) \
            if len(xyz) else np.zeros((0, 2))
        col, row = np.rint(px[:, 0] / st).astype(int), np.rint(px[:, 1] / st).astype(int)
        assert len(px) == 0 or np.hypot(px[:, 0] - col * st, px[:, 1] - row * st).max() < 1e-2
        assert np.all((col >= 0) & (col < z.shape[1]) & (row >= 0) & (row < z.shape[0]))
        ray = np.zeros(z.shape, bool)
        ray[row, col] = True
        assert ray.sum() == len(px) and not (ray & ~keep).any()   # each pixel once, and one that has a depth
        if not s["points.organized"]:   # in row-major order
            assert (np.diff(row * z.shape[1] + col) > 0).all()
        keep = ray
    if s["points.organized"]:
        assert (pc.height, pc.width, pc.is_dense) == (*z.shape, False)
        assert np.isnan(got["z"][~keep]).all() and np.isnan(got["x"][~keep]).all()
        got = got[keep]
    else:
        assert (pc.height, pc.width, pc.is_dense) == (1, int(keep.sum()), True)
        got = got[0]
    np.testing.assert_allclose(got["z"], z[keep], rtol=1e-6)
    if not lens:   # back-projected through P (rectified) or K (a raw camera without distortion)
        p = np.asarray(info.p).reshape(3, 4)[:, :3] * scale if s["camera_info.rectified"] else k
        np.testing.assert_allclose(got["x"], (u[keep] - p[0, 2]) / p[0, 0] * z[keep], rtol=2e-5, atol=1e-6)
        np.testing.assert_allclose(got["y"], (v[keep] - p[1, 2]) / p[1, 1] * z[keep], rtol=2e-5, atol=1e-6)
    if color:
        src = pipeline.colorize_labels(labels) if s["points.color_source"] == "segmentation" else rgb
        c = src[v, u][keep].astype(np.uint32)
        np.testing.assert_array_equal(got["rgb"].view(np.uint32), (c[:, 0] << 16) | (c[:, 1] << 8) | c[:, 2])
    if label:
        np.testing.assert_array_equal(got["label"], labels[v, u][keep])


def _check_compressed_depth(msg, s, depth_msg, metres) -> None:
    """depth/compressedDepth as image_transport's decoder reads it. 16UC1: the millimetres, 0 beyond
    compressed.depth_max; 32FC1: NaN wherever the depth is no value in (0, depth_max) (NaN, +-Inf: README),
    elsewhere the depth within half a code step, which in inverse depth is 0.5 / quant_a."""
    encoding, header, back = read_compressed_depth(msg.format, msg.data)
    assert encoding == s["depth.encoding"] and back.shape == metres.shape
    if encoding == "16UC1":
        mm = conversions.image_array(depth_msg)
        limit = min(int(s["compressed.depth_max"] * 1000.0), 65535)
        np.testing.assert_array_equal(back, np.where(mm > limit, 0, mm))
        return
    with np.errstate(invalid="ignore"):
        coded = np.isfinite(metres) & (metres > 0) & (metres < np.float32(s["compressed.depth_max"]))
    stray = np.isfinite(back) & ~coded
    assert not stray.any(), (f"{stray.sum()} compressedDepth pixels read back as depths where depth has "
                             f"{np.unique(metres[stray])[:5]} (compressed.depth_max {s['compressed.depth_max']})")
    a, b = float(header[1]), float(header[2])
    both = coded & np.isfinite(back)
    d, r = metres[both].astype(np.float64), back[both].astype(np.float64)
    # the half step, plus float32's rounding of the code's terms (a / d, b) and of the read-back's (q - b)
    tol = (0.5 + 1e-6 * (a / d + abs(b) + 65536)) / a
    assert (np.abs(1 / r - 1 / d) <= tol).all()


def test_random_live_parameter_combinations_keep_every_outputs_contract(harness):
    rng = random.Random(SEED)
    node = harness.start_node(**{"depth.scale": 1.0, "depth.shift": 0.5, "diagnostics.period": 60.0,
                                 "segmentation.variant": "dpt_hybrid_ade20k", "segmentation.weights": "random"})
    cam = node.cameras[0]
    got = {n: harness.collector(t, n) for n, t in TYPES.items()}
    pub = harness.probe.create_publisher(Image, "image", qos())
    compressed_pub = harness.probe.create_publisher(CompressedImage, "image/compressed", qos())
    info_pub = harness.probe.create_publisher(CameraInfo, "camera_info", qos())
    ref_pub = harness.probe.create_publisher(Image, "depth_reference", qos())
    transport_rng, rate_rng = random.Random(TRANSPORT_SEED), random.Random(RATE_SEED)
    wait_for(lambda: pub.get_subscription_count() > 0 and info_pub.get_subscription_count() > 0 and
             all(cam.pubs[n].get_subscription_count() > 0 for n in TYPES), timeout=60, what="discovery")

    def set_atomically(values: dict):
        req = SetParametersAtomically.Request(
            parameters=[Parameter(k, value=v).to_parameter_msg() for k, v in values.items()])
        return call_service(harness, SetParametersAtomically,
                            f"{node.get_fully_qualified_name()}/set_parameters_atomically", req).result

    def of_frame(name, stamp):
        return [m for m in list(got[name]) if conversions.stamp_ns(m.header) == stamp]

    # the camera's counters as they must be (out:<topic> aside, checked per frame), the throttles' turns, and the
    # stamps of the frames max_rate skipped (none may have an output)
    expected, frame_turns, cloud_turns, throttled = collections.Counter(), _Turns(), _Turns(), []
    hold_points = False   # (_draw_rates)

    def check_counts():
        c = node.counts()[""]
        # (lens_rays:* count the raw camera's ray solves, not frames: checked by the distortion tests)
        assert {k: n for k, n in c.items() if not k.startswith(("out:", "lens_rays:"))} == +expected, (c, expected)
        # README: received = processed + dropped + idle + throttled + errors
        assert c["received"] == sum(c.get(k, 0) for k in ("processed", "dropped", "idle", "throttled")) + sum(
            n for k, n in c.items() if k.startswith("error:")), c
        assert node.error_counts() == +collections.Counter(alignment=expected["incomplete:alignment"]), c

    def send_throttled(msg, publisher):   # a frame max_rate must skip on arrival: counted, nothing else
        received = node.counts()[""]["received"]
        publisher.publish(msg)
        wait_for(lambda: node.counts()[""]["received"] == received + 1, what="a frame beyond max_rate received")
        expected.update(("received", "throttled"))
        throttled.append(conversions.stamp_ns(msg.header))
        check_counts()

    names = [spec.name for spec in LIVE] + sorted(OWN_DRAWS)
    previous = None   # (stamp, outputs expected) of the frame before: checked for extra outputs once the next is out
    frames, seen = 0, set()   # which classes of combinations the frames covered (asserted at the end)
    for i in range(DRAWS):
        if i % 4 == 3:   # a refusal: nothing changes, through the node's snapshot and rclpy's values alike
            bad = REFUSED[(i // 4) % len(REFUSED)]
            before, before_rclpy = dict(node.settings.values), get_params(harness, node, *names)
            r = set_atomically(bad)
            assert not r.successful and r.reason, bad
            assert dict(node.settings.values) == before and get_params(harness, node, *names) == before_rclpy, bad
        values = {0: FIRST, 1: RAW_LENS}.get(i) or {spec.name: _draw(rng, spec) for spec in LIVE if rng.random() < 0.4}
        transport, align = node.settings["image_transport"], node.settings["depth.align"]
        if i > 1:   # the input and the rates, from their own generators (the first two draws are the fixed ones)
            values = {**values, "image_transport": transport_rng.choice(["raw", "raw", "compressed"])}
            values.update(_draw_rates(rate_rng, {**node.settings.values, **values}, hold_points))
        merged = {**node.settings.values, **values}
        refused = merged["depth.min"] >= merged["depth.max"] or merged["colormap_min"] >= merged["colormap_max"]
        r = set_atomically(values)
        assert r.successful == (not refused), (values, r.reason)
        # rclpy's parameters and the node's snapshot agree, also after a refusal
        assert get_params(harness, node, *names) == [node.settings[n] for n in names], values
        if refused:
            continue
        s = node.settings
        assert all(s[k] == v for k, v in values.items()), values
        compressed = s["image_transport"] == "compressed"
        if s["image_transport"] != transport:   # the node subscribes the other topic: its publisher sees it
            wait_for(lambda: (compressed_pub if compressed else pub).get_subscription_count() > 0, what="the input")
        if s["depth.align"] != align:   # depth_reference subscribed, or unsubscribed (before it is subscribed again)
            wait_for(lambda: (ref_pub.get_subscription_count() > 0) == s["depth.align"], what="depth_reference")

        # a frame, and its camera_info (P other than K; sometimes of twice the frame's resolution, sometimes a lens)
        w, h = rng.choice([(64, 48), (33, 17), (17, 31), (120, 40), (1, 1), (2, 3), (40, 1)])
        encoding = MAKE_IMAGE_ENCODINGS[i % len(MAKE_IMAGE_ENCODINGS)]
        stamp = (100 + i) * 1_000_000_000 + 7
        img = make_image(stamp, w, h, frame_id=f"f{i}", encoding=encoding, seed=i)
        pad = rng.choice([0, 1, 3, 16])
        rgb, codec = _frame_rgb(encoding, w, h, i), None
        if compressed:   # PNG, or JPEG for an 8-bit frame; now and then the bare codec name as format
            codec = transport_rng.choice(["png", "jpeg"]) if not encoding.endswith("16") else "png"
            frame, decoded = _compressed(img, codec, bare=transport_rng.random() < 0.25)
            rgb = rgb if decoded is None else decoded
        else:
            frame = img = padded(img, pad)
        info = make_info(make_image(stamp, 2 * w, 2 * h) if rng.random() < 0.3 else img, fx=rng.choice([10.0, 50.0]))
        info.header = img.header
        info.p[0], info.p[2], info.p[5], info.p[6] = 0.9 * info.k[0], info.k[2] + 1.5, 0.95 * info.k[4], info.k[5] - 1.0
        if rng.random() < 0.3 or i == 1:
            info.distortion_model, info.d = "plumb_bob", [0.1, -0.05, 0.001, 0.0, 0.0]
        info_pub.publish(info)
        wait_for(lambda: any(m.header.stamp == img.header.stamp for _, m in list(cam.infos)), what="camera_info")
        publisher = compressed_pub if compressed else pub
        if not frame_turns.take(s["max_rate"]):   # a slow max_rate kept since a frame it let through
            send_throttled(frame, publisher)
            seen.add("a draw's frame throttled")
            continue
        seen.add(f"max_rate {'slow' if 0 < s['max_rate'] < TOP_RATE else s['max_rate']}")
        fit = None   # with depth.align, its reference: an exact one, 1 / (a * x + b) of the model's inverse depth x
        if s["depth.align"]:
            x = model_inverse_depth(node, conversions.image_msg(img.header, rgb, "rgb8"))
            ref, ab = exact_reference(x) if np.ptp(x) > 0 else (np.full(x.shape, 2.0, np.float32), None)
            # (a frame that may give its cloud's turn back: one with no metres but the fit's, whose turn is there)
            turn_back = s["depth.scale"] == 0 and s["points.enabled"] and 0 < s["points.max_rate"] < TOP_RATE and (
                s["points.max_rate"] != cloud_turns.rate or not cloud_turns.used)
            kind = rate_rng.random() * (0.4 if turn_back else 1.0)
            if kind < 0.2:   # no measurement (0) anywhere: a depth camera seeing nothing
                ref[...] = 0.0
                seen.add("a reference measuring nothing")
            elif kind < 0.4:   # no measurement (NaN, 0) here and there
                ref[::7, ::5], ref[1::6, 2::9] = np.nan, 0.0
                seen.add("a reference with holes")
            ref_pub.publish(conversions.image_msg(img.header, ref, "32FC1"))
            wait_for(lambda: cam.references and cam.references[-1][0] == stamp, what="the reference stored")
            measured = ref[::4, ::4] > 0   # (README: every 4th pixel in both directions with a measurement)
            fits = ab is not None and measured.sum() >= 10 and np.ptp(x[::4, ::4][measured]) > 0
            fit = ab, int(measured.sum()) if fits else 0   # ((a, b), the pixels it is fitted over; 0: none)
        c0 = node.counts()[""]
        publisher.publish(frame)
        wait_for(lambda: node.counts()[""].get("processed", 0) == c0.get("processed", 0) + 1, timeout=60,
                 what=f"frame {i} processed")
        frames += 1

        # what goes out: the enabled outputs; depth, its camera_info and points only with metres: depth.align's fit,
        # made where one of them is still wanted after points.max_rate (a frame whose reference has fewer than 10
        # pixels to fit is counted incomplete:alignment and falls back), or depth.scale > 0
        cloud = s["points.enabled"] and (s["depth.align"] or s["depth.scale"] > 0)   # (wanted: it takes a turn)
        if cloud and not cloud_turns.take(s["points.max_rate"]):
            expected["throttled:points"] += 1
            seen.add("a cloud beyond points.max_rate")
            cloud, hold_points = False, False
        align_tried = fit is not None and (s["publish.depth"] or cloud)
        aligned = align_tried and fit[1] > 0
        metric = aligned or s["depth.scale"] > 0
        gave_back = cloud and not metric and 0 < s["points.max_rate"] < TOP_RATE
        if cloud and not metric:   # no alignment, no metres: no cloud, and its turn goes to the next frame
            cloud_turns.give_back()
            cloud = False
        elif cloud and s["points.max_rate"] > 0:
            seen.add(f"a cloud at points.max_rate {'slow' if s['points.max_rate'] < TOP_RATE else TOP_RATE}")
            hold_points = s["points.max_rate"] < TOP_RATE   # (kept for the next draw: its cloud is skipped)
        if align_tried and not aligned:
            expected["incomplete:alignment"] += 1
            seen.add(f"no alignment, {'metres of depth.scale' if metric else 'no metres'}")
        expected.update(("received", "processed"))
        check_counts()
        expect = {"inverse_depth", "segmentation"}
        expect |= {"inverse_depth/colored"} if s["publish.inverse_depth_colored"] else set()
        expect |= {"segmentation/colored"} if s["publish.segmentation_colored"] else set()
        expect |= {"depth", "depth/camera_info"} if metric and s["publish.depth"] else set()
        expect |= {"points"} if cloud else set()
        expect |= {c for c, base in COPIES.items() if base in expect}
        wait_for(lambda: all(of_frame(n, stamp) for n in expect), timeout=60, what=f"outputs of frame {i}")
        # each counted once as it went out (the copies' counts come from their own thread: waited for)
        sent = lambda: {k[4:]: n - c0.get(k, 0) for k, n in node.counts()[""].items()  # noqa: E731
                        if k.startswith("out:") and n != c0.get(k, 0)}
        wait_for(lambda: sent() == dict.fromkeys(expect, 1), what=f"each output of frame {i} counted once")
        if 0 < s["max_rate"] < TOP_RATE:   # a slow max_rate let this frame through: it skips the next ones
            for k in range(rate_rng.choice([1, 2])):
                beyond = copy.deepcopy(frame)
                beyond.header.stamp.nanosec += (k + 1) * 1_000_000
                assert not frame_turns.take(s["max_rate"])
                send_throttled(beyond, publisher)
            seen.add("frames after the first at a slow max_rate throttled")
        elif gave_back:   # the next frame takes the turn this one gave back: one its reference fits (64 x 48)
            nxt = make_image(stamp + 500_000_000, 64, 48, frame_id=f"f{i}", seed=i)
            info_pub.publish(make_info(nxt))
            wait_for(lambda: any(m.header.stamp == nxt.header.stamp for _, m in list(cam.infos)), what="camera_info")
            ref_pub.publish(conversions.image_msg(nxt.header, exact_reference(model_inverse_depth(node, nxt))[0]))
            wait_for(lambda: cam.references[-1][0] == stamp + 500_000_000, what="the reference stored")
            assert frame_turns.take(s["max_rate"]) and cloud_turns.take(s["points.max_rate"])
            c2 = node.counts()[""]
            publisher.publish(_compressed(nxt, "png", bare=False)[0] if compressed else nxt)
            wait_for(lambda: node.counts()[""]["processed"] == c2["processed"] + 1, what="the next frame processed")
            expected.update(("received", "processed"))
            check_counts()
            wait_for(lambda: node.counts()[""]["out:points"] == c2.get("out:points", 0) + 1, what="its cloud")
            seen.add("a cloud on a turn given back")
        if previous is not None:
            extra = {n for n in TYPES if of_frame(n, previous[0])} - previous[1]
            assert not extra, f"frame {i - 1}: outputs not enabled: {extra}"
        previous = (stamp, expect)
        out = {n: of_frame(n, stamp) for n in expect}
        assert all(len(m) == 1 and m[0].header == img.header for m in out.values()), {n: len(m) for n, m in out.items()}
        out = {n: m[0] for n, m in out.items()}

        inv = conversions.image_array(out["inverse_depth"])
        labels = conversions.image_array(out["segmentation"])
        assert (out["inverse_depth"].encoding, inv.shape, out["segmentation"].encoding) == ("32FC1", (h, w), "mono8")
        assert labels.shape == (h, w) and labels.min() >= 1 and labels.max() <= 150
        if "segmentation/colored" in out:   # the blend rgb + alpha (class colour - rgb), float32, truncated
            alpha = np.float32(s["segmentation.overlay_alpha"])
            base = rgb.astype(np.float32)
            want = (base + alpha * (pipeline.colorize_labels(labels).astype(np.float32) - base)).astype(np.uint8)
            np.testing.assert_array_equal(conversions.image_array(out["segmentation/colored"]), want)
            if compressed and alpha < 1:
                seen.add(f"colours of a compressed {codec} frame" + (" of 16 bits" if encoding.endswith("16") else ""))
        if "inverse_depth/colored" in out:
            colored = conversions.image_array(out["inverse_depth/colored"])
            assert colored.shape == (h, w, 3)
            if s["colormap_range"] == "fixed":   # each value's entry of the map, where it is not half-way between two
                lo, hi = s["colormap_min"], s["colormap_max"]
                t = np.clip((inv.astype(np.float64) - lo) * 255.0 / (hi - lo), 0, 255)
                sure = np.abs(t - np.floor(t) - 0.5) > 0.01
                lut = pipeline.colormap_lut(s["colormap"])
                np.testing.assert_array_equal(colored[sure], lut[np.rint(t[sure]).astype(int)])
        np.testing.assert_array_equal(read_compressed(out["segmentation/compressed"].format,
                                                      out["segmentation/compressed"].data)[1], labels)
        if "inverse_depth/colored/compressed" in out:
            enc, back = read_compressed(out["inverse_depth/colored/compressed"].format,
                                        out["inverse_depth/colored/compressed"].data)
            assert (enc, back.shape) == ("rgb8", (h, w, 3))

        seen |= {f"encoding {encoding}", f"colormap_range {s['colormap_range']}"}
        if not metric:
            seen.add("no metres")
            continue
        calibration = s
        if aligned:   # the node's fit, to the reference made exactly 1 / (a * x + b) of x, with the pixels it had
            a, b, pixels = cam.alignment
            np.testing.assert_allclose(a * inv + b, fit[0][0] * inv + fit[0][1], rtol=1e-4)
            assert pixels == fit[1], (pixels, fit)
            calibration = {**s.values, "depth.scale": a, "depth.shift": b}
            seen |= {tag for tag, hit in {f"aligned {s['depth.encoding']}": "depth" in out,
                                          "an aligned cloud": "points" in out}.items() if hit}
        want = _expected_depth(inv, calibration, labels)
        q = s["compressed.depth_quantization"]
        seen |= {tag for tag, hit in {   # (each counted where the output it is about was checked)
            f"depth {s['depth.encoding']}": "depth" in out, "-Inf": np.isneginf(want).any() and "depth" in out,
            "+Inf": np.isposinf(want).any() and "depth" in out,
            "-Inf with a code for it on the old code": "depth" in out and np.isneginf(want).any() and
            s["depth.encoding"] == "32FC1" and s["compressed.depth_max"] >= 2 * q * (q + 1),
            "depth.exclude_classes": s["depth.exclude_classes"] and "depth" in out}.items() if hit}
        if "points" in out:
            seen |= {tag for tag, hit in {
                f"organized {s['points.organized']}": True, "points.exclude_classes": s["points.exclude_classes"],
                f"rectified {s['camera_info.rectified']}" + (" with a lens" if any(info.d) else ""):
                    bool(np.isfinite(conversions.cloud_array(out["points"])["z"]).any()),
                f"color_source {s['points.color_source']}" if s["points.color"] else "no rgb": True,
                "edge_filter": s["points.edge_filter"] > 0 and bool(
                    (_edges(want, s["points.edge_filter"]) & np.isfinite(want) & (want > 0)).any()),
                "label": s["points.label"],
                "cloud of 16UC1": s["depth.encoding"] == "16UC1", "camera_info of 2x the frame": info.width == 2 * w,
                f"colours of a compressed {codec} frame" + (" of 16 bits" if encoding.endswith("16") else ""):
                    compressed and s["points.color"] and s["points.color_source"] == "image" and
                    bool(np.isfinite(conversions.cloud_array(out["points"])["z"]).any()),
            }.items() if hit}
        metres = want
        if "depth" in out:
            dm = out["depth"]
            assert dm.encoding == s["depth.encoding"]
            if dm.encoding == "32FC1":
                depth = conversions.image_array(dm)
                np.testing.assert_allclose(depth, want, rtol=1e-6, equal_nan=True)
                assert (np.isneginf(depth) == np.isneginf(want)).all() and (np.isnan(depth) == np.isnan(want)).all()
            else:
                np.testing.assert_array_equal(conversions.image_array(dm), _millimetres(want))
            _check_compressed_depth(out["depth/compressedDepth"], s, dm, want)
            # depth/camera_info: the frame's size, P scaled to it, and K of the pixels published: a rectified
            # camera's P (no lens), a raw camera's own K and D
            ci, scale = out["depth/camera_info"], np.array([w / info.width, h / info.height, 1.0])[:, None]
            assert (ci.width, ci.height) == (w, h)
            k = np.reshape(info.p, (3, 4))[:, :3] if s["camera_info.rectified"] else np.reshape(info.k, (3, 3))
            np.testing.assert_allclose(np.reshape(ci.k, (3, 3)), k * scale, rtol=1e-12)
            np.testing.assert_allclose(np.reshape(ci.p, (3, 4)), np.reshape(info.p, (3, 4)) * scale, rtol=1e-12)
            assert list(ci.d) == (list(info.d) if not s["camera_info.rectified"] else [0.0] * len(ci.d))
        if s["depth.encoding"] == "16UC1":   # the cloud of the depth as published: whole millimetres
            mm = _millimetres(want)
            metres = np.where(mm > 0, mm.astype(np.float32) * np.float32(0.001), np.float32(np.nan))
        if "points" in out:
            _check_cloud(out["points"], s, info, metres, want, labels, rgb, w, h)
    assert frames >= DRAWS // 2, frames   # (most draws are accepted: the checks above ran on frames)
    assert not {conversions.stamp_ns(m.header) for n in TYPES for m in got[n]} & set(throttled)
    wanted = {f"encoding {e}" for e in MAKE_IMAGE_ENCODINGS} | {
        "colormap_range fixed", "colormap_range running", "no metres", "depth 32FC1", "depth 16UC1", "organized True",
        "organized False", "rectified True", "rectified False with a lens", "color_source image",
        "color_source segmentation", "no rgb", "-Inf", "+Inf", "-Inf with a code for it on the old code",
        "depth.exclude_classes", "points.exclude_classes", "edge_filter", "label", "cloud of 16UC1",
        "camera_info of 2x the frame", "colours of a compressed png frame",
        "colours of a compressed png frame of 16 bits", "colours of a compressed jpeg frame", "max_rate 1000.0",
        "max_rate slow", "a draw's frame throttled", "frames after the first at a slow max_rate throttled",
        "a cloud at points.max_rate 1000.0", "a cloud at points.max_rate slow", "a cloud beyond points.max_rate",
        "a cloud on a turn given back", "aligned 32FC1", "aligned 16UC1", "an aligned cloud", "a reference with holes",
        "a reference measuring nothing", "no alignment, metres of depth.scale", "no alignment, no metres"}
    assert wanted <= seen, (f"the draws of seeds {SEED}, {TRANSPORT_SEED}, {RATE_SEED} no longer cover "
                            f"{sorted(wanted - seen)}")
