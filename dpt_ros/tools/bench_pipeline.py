"""Per-stage benchmark of the frame pipeline (decode, pre-process, post-process, cloud).

CPU: dpt_ros's NumPy path against a straightforward OpenCV/NumPy implementation of the same
stages (what typical DPT/MiDaS ROS wrappers do), as ratios measured side by side; plus building
a 640x480 xyz+rgb PointCloud2 payload against a sensor_msgs_py-style ``create_cloud`` written
here (structured array + tobytes; sensor_msgs_py itself is not installable from PyPI).
CUDA (``--device cuda``): the CuPy path (pinned upload, fused kernels, GPU cloud, pinned copy
back) against the typical wrapper (OpenCV on the CPU + GPU model tensors + copy back).
Both also time the optional stages: a cloud through a lens model (``camera_info.rectified`` false;
on the CPU also the one-off ray solve), ``points.edge_filter``, ``points.exclude_classes`` (two classes),
and (CPU) ``depth.align``'s fit and the segmentation labels at 640x480 (150 classes); and
(CPU, 640x480) the compressed copies of ``publish.compressed``, with their sizes.

Usage: ``python -m dpt_ros.tools.bench_pipeline [--device cpu|cuda] [--encoding bgr8|rgb8|bgra8|rgba8] [--repeat N]
[--json]``. With ``--device cuda`` the CUDA figures are measured first; interrupted (SIGINT, e.g. gpu_check's time
limit), it prints the JSON of the figures measured so far, with ``interrupted``, and exits with status 130.
Absolute times hold only for the machine they were taken on; compare ratios.
"""

from __future__ import annotations

import argparse
import array
import json
import math
import statistics
import sys
import threading
import time
from functools import partial
from typing import Any, Callable

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from numpy.lib import recfunctions

from dpt_ros import pipeline as pl
from dpt_ros.pipeline.distortion import clear_rays, pixel_rays
from dpt_ros.tools import threads_restored
from dpt_ros.tools.options import count, ToolParser

KITTI = (6.016e-5, 0.00579)  # metric conversion used for the post-processing stage
NET = 384


def _timer(fn: Callable[[], Any], repeat: int, warmup: int, cuda: bool) -> float:
    """Median wall time of ``fn`` in ms over ``repeat`` calls, after ``warmup`` untimed ones (synchronising CUDA when
    used)."""
    for _ in range(warmup):
        fn()
    if cuda:
        torch.cuda.synchronize()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        if cuda:
            torch.cuda.synchronize()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def _timers(fns: dict[str, Callable[[], Any]], repeat: int, warmup: int, block: int = 5) -> dict[str, float]:
    """Median wall time in ms of each of ``fns`` over ``repeat`` calls, taken in turns of ``block`` calls each
    (after one untimed call per turn), so that a busy spell of a shared machine slows ours and the reference
    alike and their ratio holds, while each is timed as it runs in a loop: call by call, each function met the
    memory the other had just freed and paid page faults for its own (a 640x480 cloud 7.8 instead of 1.2 ms)."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    while min(map(len, times.values())) < repeat:
        for name, fn in fns.items():
            fn()
            for _ in range(min(block, repeat - len(times[name]))):
                t0 = time.perf_counter()
                fn()
                times[name].append((time.perf_counter() - t0) * 1e3)
    return {name: statistics.median(t) for name, t in times.items()}


def _runs(record: dict[str, int], repeat: int, n: int, *figures: str) -> int:
    """``n``, the number of timed runs the medians of ``figures`` (their paths in the JSON, dotted) are taken over,
    written into ``record`` where it is not ``repeat`` (--repeat): the output's ``timed_runs_where_not_repeat``, so
    that it says truthfully what each figure is the median of."""
    if n != repeat:
        record.update(dict.fromkeys(figures, n))
    return n


#: --encoding's choices: the packed 8-bit colour encodings, and how the reference decode turns each into RGB
ENCODINGS = {"bgr8": cv2.COLOR_BGR2RGB, "rgb8": None, "bgra8": cv2.COLOR_BGRA2RGB, "rgba8": cv2.COLOR_RGBA2RGB}


def _frame(w: int, h: int, encoding: str = "bgr8") -> pl.ImageView:
    """A w x h frame in ``encoding`` (its bytes in that channel order; a 4-channel one with an alpha ramp)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([(xx * 255 // w), (yy * 255 // h), ((xx + yy) % 256)], -1).astype(np.uint8)
    img = cv2.add(img, rng.integers(0, 20, img.shape, dtype=np.uint8))
    if encoding.startswith("bgr"):
        img = img[..., ::-1]
    if len(encoding) == 5:   # rgba8, bgra8
        img = np.concatenate([img, (xx[..., None] % 256).astype(np.uint8)], 2)
    return pl.ImageView.from_array(img, encoding)


def _lens_intrinsics(w: int, h: int) -> pl.Intrinsics:
    """_intrinsics with a wide-angle webcam's plumb_bob distortion (an unrectified camera)."""
    i = _intrinsics(w, h)
    return pl.Intrinsics(i.fx, i.fy, i.cx, i.cy, w, h, "plumb_bob", (-0.31, 0.11, 0.0012, -0.0007, -0.018))


def _intrinsics(w: int, h: int) -> pl.Intrinsics:
    return pl.Intrinsics(0.8 * w, 0.8 * w, (w - 1) / 2, (h - 1) / 2, w, h)


# ----------------------------------------------------------------------------- reference code
def ref_decode(view: pl.ImageView) -> np.ndarray:
    channels = 4 if len(view.encoding) == 5 else 3
    rows = np.frombuffer(view.data, np.uint8).reshape(view.height, view.step)
    px = rows[:, : view.width * channels].reshape(view.height, view.width, channels)
    code = ENCODINGS[view.encoding]
    return px.copy() if code is None else cv2.cvtColor(px, code)


def ref_preprocess(rgb: np.ndarray, device: str = "cpu") -> torch.Tensor:
    h, w = pl.network_input_size(rgb.shape[0], rgb.shape[1], NET)
    img = rgb / 255.0
    img = cv2.resize(img, (w, h), interpolation=cv2.INTER_CUBIC)
    img = (img - 0.5) / 0.5
    img = np.ascontiguousarray(np.transpose(img, (2, 0, 1))).astype(np.float32)
    return torch.from_numpy(img)[None].to(device)


def ref_postprocess(inv: torch.Tensor, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    pred = inv[0].cpu().numpy()
    pred = cv2.resize(pred, (size[1], size[0]), interpolation=cv2.INTER_CUBIC)
    depth = 1.0 / np.maximum(KITTI[0] * pred + KITTI[1], 1e-8)
    depth = np.where(depth < 1.0, -np.inf, np.where(depth > 80.0, np.inf, depth)).astype(np.float32)
    norm = (pred - pred.min()) / (pred.max() - pred.min()) * 255  # what wrappers do (unstable)
    colored = cv2.cvtColor(cv2.applyColorMap(norm.astype(np.uint8), cv2.COLORMAP_TURBO), cv2.COLOR_BGR2RGB)
    return depth, colored


def _fields_dtype(with_rgb: bool) -> np.dtype:
    names = ["x", "y", "z"] + (["rgb"] if with_rgb else [])
    return np.dtype({"names": names, "formats": ["<f4"] * len(names), "offsets": [4 * i for i in range(len(names))],
                     "itemsize": 4 * len(names)})


def ref_create_cloud(points: np.ndarray, with_rgb: bool) -> array.array:
    """sensor_msgs_py ``create_cloud`` from a ready (N, k) float32 array: structured array, bytes."""
    structured = recfunctions.unstructured_to_structured(points, dtype=_fields_dtype(with_rgb))
    data = array.array("B")
    data.frombytes(structured.tobytes())
    return data


def ref_cloud_from_depth(depth: np.ndarray, rgb: np.ndarray, intr: pl.Intrinsics) -> array.array:
    """Typical wrapper: meshgrid back-projection, (N, 4) array with packed rgb, create_cloud."""
    h, w = depth.shape
    u, v = np.meshgrid(np.arange(w), np.arange(h))
    z = np.where(np.isfinite(depth) & (depth > 0), depth, np.nan)
    x = (u - intr.cx) * z / intr.fx
    y = (v - intr.cy) * z / intr.fy
    packed = (rgb[..., 0].astype(np.uint32) << 16) | (rgb[..., 1].astype(np.uint32) << 8) | rgb[..., 2]
    pts = np.stack([x.ravel(), y.ravel(), z.ravel(), packed.ravel().view(np.float32)], -1).astype(np.float32)
    return ref_create_cloud(pts, True)


# ----------------------------------------------------------------------------- dpt_ros stages
def ours_postprocess(inv: torch.Tensor, size: tuple[int, int], rr: pl.RunningRange) -> tuple[Any, Any]:
    inv_arr = pl.tensor_to_array(pl.upsample(inv, size)[0])  # NumPy or CuPy view, no copy
    depth = pl.apply_depth_range(pl.metric_from_inverse(inv_arr, *KITTI), 1.0, 80.0, inplace=True)
    lo, hi = rr.update(inv_arr)
    colored = pl.colorize(inv_arr, "turbo", lo, hi)
    return depth, colored


def cpu_stage_pairs(view: pl.ImageView, pre: pl.Preprocessor, inv: torch.Tensor, depth: np.ndarray,
                    intr: pl.Intrinsics) -> dict[str, tuple[Callable[[], Any], Callable[[], Any]]]:
    """stage -> (ours, the typical wrapper's) for one frame. Each side's later stages take what its own decode
    returns, as in a node: ours a zero-copy view of the frame's bytes (for a bgr8 frame a view with the channels
    reversed, which the node's ``_Pixels.rgb()`` hands pre-processing and the cloud's colours alike), the
    reference's a contiguous RGB copy. (Ours' cloud once took a contiguous copy made outside the timing, so that
    neither its decode nor its cloud paid for it: at 640x480 bgr8 1.6 instead of 7.5 ms on the 2-core machine.)"""
    h, w = depth.shape
    rgb, rgb_ref = pl.decode(view), ref_decode(view)
    rr = pl.RunningRange()
    return {
        "decode": (partial(pl.decode, view), partial(ref_decode, view)),
        "preprocess": (partial(pre, rgb), partial(ref_preprocess, rgb_ref)),
        "postprocess": (partial(ours_postprocess, inv, (h, w), rr), partial(ref_postprocess, inv, (h, w))),
        "cloud": (partial(pl.build_cloud, depth, intr, rgb=rgb), partial(ref_cloud_from_depth, depth, rgb_ref, intr)),
    }


def bench_cpu(sizes: list[tuple[int, int]], repeat: int, encoding: str = "bgr8", out: dict | None = None,
              runs: dict[str, int] | None = None) -> dict:
    """The CPU figures, written into ``out`` (a new dict if None) part by part as each is measured, so that a caller
    interrupted midway still holds the parts done; the figures timed other than ``repeat`` times into ``runs``
    (:func:`_runs`, paths from ``cpu.``)."""
    out = {} if out is None else out
    runs = {} if runs is None else runs
    pre = pl.Preprocessor(NET)
    for w, h in sizes:
        view = _frame(w, h, encoding)
        nh, nw = pre.input_size(h, w)
        inv = torch.rand(1, nh, nw, generator=torch.Generator().manual_seed(2)) * 1000 + 100   # (not the caller's)
        depth = pl.apply_depth_range(pl.metric_from_inverse(pl.upsample(inv, (h, w))[0].numpy(), *KITTI), 1.0, 80.0)
        intr = _intrinsics(w, h)
        pairs = cpu_stage_pairs(view, pre, inv, depth, intr)
        ours, ref = {}, {}
        for stage, (mine, theirs) in pairs.items():
            t = _timers({"ours": mine, "ref": theirs}, repeat, 2)
            ours[stage], ref[stage] = t["ours"], t["ref"]
        ours["total"], ref["total"] = sum(ours.values()), sum(ref.values())
        out[f"{w}x{h}"] = {
            "ours_ms": _round(ours), "reference_ms": _round(ref),
            "speedup": {k: round(ref[k] / ours[k], 2) for k in ours},
        }
    # 640x480 cloud message payload: from depth (ours) vs create_cloud from a ready array
    w, h = 640, 480
    depth = (np.random.default_rng(1).random((h, w)) * 5 + 0.5).astype(np.float32)
    rgb = np.random.default_rng(2).integers(0, 256, (h, w, 3), dtype=np.uint8)
    intr = _intrinsics(w, h)
    lens = _lens_intrinsics(w, h)
    depth_t = torch.from_numpy(depth)
    labels_t = torch.from_numpy(np.random.default_rng(4).integers(1, 151, (h, w), dtype=np.uint8))
    inv_sub = 1.0 / depth[::4, ::4]

    def solve_rays(intr):   # what a new camera_info costs once (the rays are cached afterwards)
        clear_rays()
        return pixel_rays(intr, 1)

    ready_xyz = np.random.default_rng(3).random((h * w, 3)).astype(np.float32)
    ready_xyzrgb = np.random.default_rng(3).random((h * w, 4)).astype(np.float32)
    # ours and the references in turn (their ratios are the figures), then the options on their own
    cloud = _timers({
        "ours_xyz_from_depth": lambda: pl.build_cloud(depth, intr),
        "ours_xyzrgb_from_depth": lambda: pl.build_cloud(depth, intr, rgb=rgb),
        "create_cloud_xyz_from_ready_array": lambda: ref_create_cloud(ready_xyz, False),
        "create_cloud_xyzrgb_from_ready_array": lambda: ref_create_cloud(ready_xyzrgb, True),
        "reference_xyzrgb_from_depth": lambda: ref_cloud_from_depth(depth, rgb, intr),
    }, repeat, 3)
    cloud.update({
        # options: a raw camera's lens (camera_info.rectified false), points.edge_filter, depth.align's fit
        "ours_xyzrgb_from_depth_through_lens": _timer(lambda: pl.build_cloud(depth, lens, rgb=rgb), repeat, 3, False),
        # (a solve takes 0.1 s at 640x480 and 1 s at 1080p: fewer runs, which the output names)
        "lens_rays_solved_once_stride1": _timer(lambda: solve_rays(lens), _runs(
            runs, repeat, max(3, repeat // 10), "cpu.cloud_640x480_ms.lens_rays_solved_once_stride1"), 1, False),
        # (one untimed solve first, as for every figure: the first 1080p solve here took 1.7 s, the next ones 0.98 s)
        "lens_rays_solved_once_1920x1080_stride1": _timer(lambda: solve_rays(_lens_intrinsics(1920, 1080)), _runs(
            runs, repeat, 3, "cpu.cloud_640x480_ms.lens_rays_solved_once_1920x1080_stride1"), 1, False),
        "edge_filter": _timer(lambda: pl.drop_depth_edges(depth_t, 0.05), repeat, 3, False),
        "exclude_classes_2": _timer(lambda: pl.drop_labels(depth_t, labels_t, (13, 21)), repeat, 3, False),
        "align_fit_stride4": _timer(lambda: pl.fit_scale_shift(*pl.inverse_depth_pairs(inv_sub, depth[::4, ::4], stride=1)),
                                    repeat, 3, False),
    })
    # the target is the publishable message: the payload wrapped as the node publishes it (serialized CDR,
    # or a PointCloud2 object where the rmw's format differs), where ROS is installed
    try:
        from std_msgs.msg import Header

        from dpt_ros.ros import conversions

        # as the node makes it: the payload in the thread's reused buffer, then its one copy into the message;
        # beside it with a fresh payload buffer per cloud (what it did before)
        cloud.update(_timers({
            "ours_xyzrgb_message_from_depth": lambda: conversions.cloud_output(
                Header(frame_id="camera"), pl.build_cloud(depth, intr, rgb=rgb, reuse_buffer=True)),
            "ours_xyzrgb_message_from_depth_fresh_buffer": lambda: conversions.cloud_output(
                Header(frame_id="camera"), pl.build_cloud(depth, intr, rgb=rgb)),
        }, repeat, 3))
        target = "ours_xyzrgb_message_from_depth"
    except ImportError:
        target = "ours_xyzrgb_from_depth"
    out["cloud_640x480_ms"] = _round(cloud)
    out["cloud_640x480_target_2ms_met"] = cloud[target] <= 2.0
    out["cloud_640x480_target_measured_as"] = target if target.startswith("ours_xyzrgb_message") else (
        target + " (the payload only: no ROS here to build the message)")
    out["segmentation_labels_640x480_ms"] = bench_labels(pre, w, h, repeat, runs)
    out["compressed_640x480"] = bench_compressed(w, h, repeat)
    out["compressed_two_cameras_640x480"] = bench_compressed_threads(w, h, repeat)
    return out


def bench_labels(pre: pl.Preprocessor, w: int, h: int, repeat: int, runs: dict[str, int]) -> dict:
    """ADE20K labels at the camera's size from 150 classes of logits at network size: ours (class by class into a
    running maximum) against the official order written directly (upsample all 150, then argmax), in turn, over a
    tenth of ``repeat`` runs (at least 3: 0.1 and 0.4 s a call); then segmentation/colored from those labels
    (palette colours blended over the image at alpha 0.5) against the same written directly (palette indexing,
    float32 blend), over ``repeat`` runs, at least 20. The counts other than ``repeat`` go into ``runs``."""
    figure = "cpu.segmentation_labels_640x480_ms."
    logits = torch.randn(1, 150, *pre.input_size(h, w), generator=torch.Generator().manual_seed(5)) * 3
    labels_runs = _runs(runs, repeat, max(3, repeat // 10), figure + "ours", figure + "upsample_all_then_argmax")
    t = _timers({"ours": lambda: pl.upsampled_labels(logits, (h, w)),
                 "upsample_all_then_argmax": lambda: pl.labels_from_logits(pl.upsample(logits, (h, w)))},
                labels_runs, 1)
    labels = pl.upsampled_labels(logits, (h, w))[0].numpy()
    rgb = np.random.default_rng(6).integers(0, 256, (h, w, 3), dtype=np.uint8)

    def colored_reference():
        base = rgb.astype(np.float32)
        return np.clip(base + (pl.ADE20K_PALETTE[labels].astype(np.float32) - base) * np.float32(0.5), 0, 255).astype(
            np.uint8)

    c = _timers({"colored_ours": lambda: pl.overlay(rgb, pl.colorize_labels(labels), 0.5),
                 "colored_reference": colored_reference},
                _runs(runs, repeat, max(repeat, 20), figure + "colored_ours", figure + "colored_reference"), 2)
    return {**_round(t), "speedup": _ratio(t["upsample_all_then_argmax"], t["ours"]),
            **_round(c), "colored_speedup": _ratio(c["colored_reference"], c["colored_ours"])}


def bench_compressed(w: int, h: int, repeat: int) -> dict:
    """publish.compressed's copies at the parameters' defaults (JPEG 95, depth_max 10 m; PNG level 1): ms,
    bytes and raw bytes. Frames like a network's: blobs upsampled from 1/16 size (noise would not
    compress; a real scene's edges compress somewhat worse than these)."""
    seeded = torch.Generator().manual_seed(0)   # (its own: torch.manual_seed reseeded its caller's random numbers)
    inv = pl.upsample(torch.rand(1, h // 16, w // 16, generator=seeded) * 4 + 0.2, (h, w))[0].numpy()
    depth = pl.apply_depth_range(pl.metric_from_inverse(inv, 1.0, 0.0), 0.0, 8.0)
    labels = pl.upsampled_labels(torch.rand(1, 150, h // 16, w // 16, generator=seeded), (h, w))[0].numpy()
    colored = pl.colorize(inv, "inferno", float(inv.min()), float(inv.max()))
    mm = pl.depth_to_millimetres(torch.from_numpy(depth)).numpy()
    cases = {
        "inverse_depth_colored_jpeg": (colored, lambda: pl.compress_image(colored, "rgb8", "jpeg", 95)),
        "segmentation_png": (labels, lambda: pl.compress_image(labels, "mono8", "png", png_level=1)),
        "depth_32FC1_compressedDepth": (depth, lambda: pl.compress_depth(depth, "32FC1", 10.0, 100.0, 1)),
        "depth_16UC1_compressedDepth": (mm, lambda: pl.compress_depth(mm, "16UC1", 10.0, 100.0, 1)),
    }
    return {name: {"ms": round(_timer(fn, repeat, 2, False), 3), "bytes": len(fn()[1]), "raw_bytes": int(values.nbytes)}
            for name, (values, fn) in cases.items()}


def bench_compressed_threads(w: int, h: int, repeat: int) -> dict:
    """Two cameras' 32FC1 compressedDepth copies, ms per pair of frames: encoded one after the other (one copies
    thread) and on two threads at once (the node's copies threads: one per camera, up to half the cores). Not
    medians: each is one timed run of ``pairs_timed`` pairs (``repeat``, at least 10), divided by their number."""
    inv = pl.upsample(torch.rand(1, h // 16, w // 16, generator=torch.Generator().manual_seed(1)) * 4 + 0.2,
                      (h, w))[0].numpy()
    depths = [pl.apply_depth_range(pl.metric_from_inverse(inv * k, 1.0, 0.0), 0.0, 8.0) for k in (1.0, 1.1)]
    n = max(repeat, 10)

    def encode(depth, frames):
        for _ in range(frames):
            pl.compress_depth(depth, "32FC1", 10.0, 100.0, 1)

    encode(depths[0], 2)
    t = time.perf_counter()
    for d in depths:
        encode(d, n)
    one = (time.perf_counter() - t) / n * 1e3
    threads = [threading.Thread(target=encode, args=(d, n)) for d in depths]
    t = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    two = (time.perf_counter() - t) / n * 1e3
    return {"one_thread_ms": round(one, 3), "two_threads_ms": round(two, 3), "speedup": _ratio(one, two),
            "pairs_timed": n}


def _try_timer(errors: dict, name: str, fn: Callable[[], Any], repeat: int, warmup: int) -> float:
    """_timer on CUDA that records a failure instead of aborting a one-shot GPU run."""
    try:
        return _timer(fn, repeat, warmup, True)
    except Exception as exc:  # noqa: BLE001 - reported in the JSON
        errors[name] = f"{type(exc).__name__}: {exc}"[:500]
        return float("nan")


def bench_cuda(sizes: list[tuple[int, int]], repeat: int, encoding: str = "bgr8",
               runs: dict[str, int] | None = None) -> dict:
    """The CUDA figures; those timed other than ``repeat`` times go into ``runs`` (:func:`_runs`, paths from
    ``cuda.``)."""
    import cupy  # noqa: PLC0415

    from dpt_ros.pipeline import _cuda  # noqa: PLC0415

    runs = {} if runs is None else runs

    dev = torch.device("cuda")
    out: dict[str, Any] = {"gpu": torch.cuda.get_device_name(0)}
    pre = pl.Preprocessor(NET, device=dev)
    seeded = torch.Generator(device=dev).manual_seed(7)   # (its own: the CUDA generator's numbers are its caller's)
    for w, h in sizes:
        view = _frame(w, h, encoding)
        dev_view = pl.ImageView(cupy.asarray(np.frombuffer(view.data, np.uint8)), view.encoding, h, w, view.step)
        nh, nw = pre.input_size(h, w)
        inv = torch.rand(1, nh, nw, device=dev, generator=seeded) * 1000 + 100
        intr, lens = _intrinsics(w, h), _lens_intrinsics(w, h)
        errors: dict[str, str] = {}
        try:
            rgb_dev = pl.decode(view, "cupy")
        except Exception as exc:  # noqa: BLE001
            errors["decode"] = f"{type(exc).__name__}: {exc}"[:500]
            rgb_dev = cupy.asarray(np.ascontiguousarray(pl.decode(view)))
        rr = pl.RunningRange()

        def post_depth():
            up = pl.upsample(inv, (h, w))[0]
            return pl.apply_depth_range(pl.metric_from_inverse(up, *KITTI), 1.0, 80.0, inplace=True)

        def post_depth_torch_ops():   # the same stage as PyTorch operations (what the pipeline did before its kernels)
            up = F.interpolate(inv[None], size=(h, w), mode="bicubic", align_corners=False)[0, 0]
            d = up.mul(KITTI[0]).add_(KITTI[1]).clamp_min_(1e-8).reciprocal_()
            d.masked_fill_(~(d > 0), math.nan)
            d.masked_fill_(d < 1.0, -math.inf)
            return d.masked_fill_(d > 80.0, math.inf)

        try:   # the later stages' depth; the pipeline's own kernels (dpt_upsample, dpt_depth) must not cost them
            depth = pl.tensor_to_array(post_depth())
        except Exception as exc:  # noqa: BLE001 - recorded; upsample_metric_range records it again as its own
            errors["depth_for_the_later_stages"] = f"{type(exc).__name__}: {exc}"[:500]
            depth = pl.tensor_to_array(post_depth_torch_ops())
        labels = torch.randint(1, 151, (h, w), dtype=torch.uint8, device=dev, generator=seeded)
        # the parts of the stages above, for the record: the frame's bytes from an already pinned host buffer
        # (the "pinned copy" reference), the upsample alone, and the cloud's device->host copy alone
        pinned_frame = np.frombuffer(cupy.cuda.alloc_pinned_memory(len(view.data)), np.uint8, len(view.data))
        host_frame = np.frombuffer(view.data, np.uint8)
        pinned_frame[:] = host_frame
        frame_dev = cupy.empty(len(view.data), cupy.uint8)
        cloud_bytes = h * w * pl.cloud_fields(False, False)[1]
        cloud_dev = cupy.zeros(cloud_bytes, cupy.uint8)
        cloud_host = np.frombuffer(cupy.cuda.alloc_pinned_memory(cloud_bytes), np.uint8, cloud_bytes)
        stages = {
            "upload_decode_preprocess": lambda: pre(view),
            # as the node does it: the frame decoded to a device RGB first (shared with the cloud's colours), then
            # the resize kernel from that
            "upload_decode_then_preprocess_as_the_node": lambda: pre(pre.upload(view)),
            "decode_preprocess_kernels": lambda: pre(dev_view),
            "upload_pinned_staged": lambda: _cuda._upload(view.data, _cuda.torch_stream()),
            "upload_pageable_direct": lambda: cupy.asarray(np.frombuffer(view.data, np.uint8)),
            "upload_from_pinned_host": lambda: frame_dev.set(pinned_frame),
            # the host side of upload_pinned_staged alone: the frame's bytes into the pinned buffer, by this thread
            # and by the staging pool's threads (does the pool pay on this machine's memory system?)
            "host_copy_into_pinned_1_thread": lambda: np.copyto(pinned_frame, host_frame),
            "host_copy_into_pinned_pool": lambda: _cuda.staged_copy(host_frame, pinned_frame, lambda a, b: None,
                                                                    _cuda._copy_pool()),
            "upsample_only": lambda: pl.upsample(inv, (h, w)),
            "cloud_xyz_copy_back_only": lambda: cloud_dev.get(out=cloud_host),
            "upsample_metric_range": post_depth,
            "upsample_metric_range_torch_ops": post_depth_torch_ops,
            "colorize_running_range": lambda: pl.colorize(depth, "turbo", *rr.update(depth)),
            "cloud_xyz_to_pinned": lambda: _cuda.cloud_to_pinned(depth, intr, None, None, 1, True),
            "cloud_xyz_to_pinned_through_lens": lambda: _cuda.cloud_to_pinned(depth, lens, None, None, 1, True),
            "edge_filter": lambda: pl.drop_depth_edges(torch.as_tensor(depth, device=dev), 0.05),
            "exclude_classes_2": lambda: pl.drop_labels(torch.as_tensor(depth, device=dev), labels, (13, 21)),
            "cloud_xyzrgb_to_pinned": lambda: _cuda.cloud_to_pinned(depth, intr, rgb_dev, None, 1, True),
            # with the host copy into an array.array (build_cloud's default); the node now serialises
            # from the pinned buffer (reuse_buffer=True), i.e. pays cloud_xyzrgb_to_pinned
            "cloud_xyzrgb_message_buffer": lambda: pl.build_cloud(depth, intr, rgb=rgb_dev),
        }
        ours = {name: _try_timer(errors, name, fn, repeat, 5) for name, fn in stages.items()}
        ours["target_total"] = ours["upload_decode_preprocess"] + ours["upsample_metric_range"] + ours["cloud_xyz_to_pinned"]
        # the issue's own decomposition of its 1.0 ms (pinned copy 0.17, GPU resize 0.10, upsample + back-projection
        # 0.25, cloud copy back 0.46 ms): the frame's bytes already in page-locked memory. rclpy hands the node
        # them in pageable memory, so target_total also pays their host copy into the pinned staging buffer.
        ours["target_total_frame_in_pinned_memory"] = (ours["upload_from_pinned_host"] + ours["decode_preprocess_kernels"]
                                                       + ours["upsample_metric_range"] + ours["cloud_xyz_to_pinned"])

        def typical():
            rgb = ref_decode(view)
            x = ref_preprocess(rgb, "cuda")
            up = F.interpolate(inv[None], size=(h, w), mode="bicubic", align_corners=False)[0, 0]
            d = (1.0 / torch.clamp(up * KITTI[0] + KITTI[1], min=1e-8)).cpu().numpy()
            return x, ref_cloud_from_depth(d, rgb, intr)

        typical_ms = _try_timer(errors, "typical_wrapper", typical,
                                _runs(runs, repeat, max(5, repeat // 3), f"cuda.{w}x{h}.typical_wrapper_ms"), 2)
        out[f"{w}x{h}"] = {
            "ours_ms": _round(ours),
            "typical_wrapper_ms": round(typical_ms, 3) if typical_ms == typical_ms else None,
            "speedup_vs_typical": _ratio(typical_ms, ours["target_total"] + ours["cloud_xyzrgb_to_pinned"]
                                         - ours["cloud_xyz_to_pinned"]),
            "target_1080p_1ms_met": (ours["target_total"] <= 1.0) if (w, h) == (1920, 1080) else None,
            "target_1080p_1ms_met_frame_in_pinned_memory": (
                ours["target_total_frame_in_pinned_memory"] <= 1.0) if (w, h) == (1920, 1080) else None,
            "errors": errors,
        }
    return out


def _ratio(a: float, b: float) -> float | None:
    r = a / b if b else float("nan")
    return round(r, 2) if r == r else None


def _round(d: dict) -> dict:
    return {k: (round(v, 3) if v == v else None) for k, v in d.items()}  # NaN (failed stage) -> null


def frame_sizes(text: str) -> list[tuple[int, int]]:
    """--sizes (argparse's type): comma-separated WxH, each side a whole number of at least 1 (a side of 0 ended the
    run with a TypeError, a negative one with NumPy's 'negative dimensions are not allowed', partway through the
    run)."""
    sizes = []
    for item in text.split(","):
        try:
            w, h = (int(v) for v in item.lower().split("x"))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{item!r} is no WxH frame size: give e.g. 640x480,1920x1080") from None
        if w < 1 or h < 1:
            raise argparse.ArgumentTypeError(f"{item!r} has a side under 1 pixel: give each side at least 1, e.g. "
                                             f"640x480")
        sizes.append((w, h))
    return sizes


def main(argv: list[str] | None = None) -> int:
    """The benchmark (see the module). ``--threads N`` sets PyTorch's and OpenCV's thread counts for the run only:
    called in-process (from another tool or a test), both are set back when main returns or raises
    (:func:`dpt_ros.tools.threads_restored`)."""
    with threads_restored(opencv=True):
        return _main(argv)


def _main(argv: list[str] | None) -> int:
    ap = ToolParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                    help="cpu: NumPy path vs OpenCV/NumPy reference; cuda: also the CuPy path (where CUDA or CuPy "
                         "is missing, said at the start, and the CPU figures only); default cpu")
    ap.add_argument("--sizes", type=frame_sizes, default="640x480,1920x1080",
                    help="comma-separated WxH frame sizes, each side at least 1 (default 640x480,1920x1080)")
    ap.add_argument("--repeat", type=count("timed runs"), default=20,
                    help="timed runs per figure (their median reported), each after untimed warm-up calls; at "
                         "least 1 (default 20). A few slow figures take other counts (the CPU's lens ray solves and segmentation "
                         "labels, CUDA's typical wrapper), which the output names (timed_runs_where_not_repeat)")
    ap.add_argument("--encoding", choices=tuple(ENCODINGS), default="bgr8",
                    help="the frames' encoding (the per-stage table's; the other figures use their own inputs; "
                         "default bgr8)")
    ap.add_argument("--threads", type=count("threads", zero="leave them as they are"), default=0,
                    help="torch/OpenCV threads (0: leave as is)")
    ap.add_argument("--json", action="store_true", help="print one JSON object only")
    args = ap.parse_args(argv)
    sizes = args.sizes
    if args.threads:
        torch.set_num_threads(args.threads)
        cv2.setNumThreads(args.threads)
    # each figure is the median of `repeat` timed runs, or of as many as timed_runs_where_not_repeat gives for it
    result: dict[str, Any] = {"device": args.device, "repeat": args.repeat, "timed_runs_where_not_repeat": {},
                              "torch_threads": torch.get_num_threads(), "encoding": args.encoding}
    # CUDA first: issue #6's figures are these, and a caller's time limit (gpu_check: SIGINT) that ends the run during
    # the CPU comparison (the longer part on a slow host) then leaves them measured and printed
    try:
        if args.device == "cuda":
            no_cuda = _cuda_missing()   # (CuPy's check compiles the kernels: within the SIGINT handling)
            if no_cuda:
                # not a usage error: gpu_check rehearses its steps on a CPU machine, and takes the CPU figures
                print(f"bench_pipeline: --device cuda: {no_cuda}: the CUDA figures are skipped, the CPU comparison "
                      f"runs", file=sys.stderr, flush=True)
            result["cuda"] = {"skipped": no_cuda} if no_cuda else \
                _cuda_result(sizes, args.repeat, args.encoding, result["timed_runs_where_not_repeat"])
        bench_cpu(sizes, args.repeat, args.encoding, out=result.setdefault("cpu", {}),
                  runs=result["timed_runs_where_not_repeat"])
    except KeyboardInterrupt:
        result["interrupted"] = ("interrupted (SIGINT) before the end: the figures listed were measured, the others "
                                 "were not; give the run more time for the rest")
        print(json.dumps(result))
        return 130
    if args.json:
        print(json.dumps(result))
    else:
        _print_table(result)
    return 0


def _cuda_missing() -> str:
    """Why the CUDA figures cannot be measured here: no CUDA device, or no usable CuPy (with what to install); ''
    where they can."""
    if not torch.cuda.is_available():
        return "CUDA is not available on this machine"
    return pl.cupy_unavailable_reason()


def _cuda_result(sizes: list[tuple[int, int]], repeat: int, encoding: str, runs: dict[str, int]) -> dict:
    """bench_cuda's figures, or why there are none: one-shot GPU runs report instead of dying."""
    try:
        return bench_cuda(sizes, repeat, encoding, runs)
    except Exception as exc:  # noqa: BLE001 - reported in the JSON
        import traceback  # noqa: PLC0415

        return {"error": f"{type(exc).__name__}: {exc}"[:500], "traceback": traceback.format_exc()[-2000:]}


def _print_table(result: dict) -> None:
    other = result["timed_runs_where_not_repeat"]
    print(f"# dpt_ros pipeline benchmark (torch threads {result['torch_threads']}): each figure the median ms of "
          f"{result['repeat']} timed runs" + (", except" if other else ""))
    for figure, n in other.items():
        print(f"#   {figure}: the median of {n}")
    for size, r in result["cpu"].items():
        if not isinstance(r, dict) or "ours_ms" not in r:
            continue
        print(f"\nCPU {size} {result['encoding']}: stage | dpt_ros | OpenCV/NumPy reference | speed-up")
        for k, v in r["ours_ms"].items():
            print(f"  {k:12s} {v:9.3f} {r['reference_ms'][k]:9.3f} {r['speedup'][k]:7.2f}x")
    print("\nCPU 640x480 cloud payload (ms):")
    for k, v in result["cpu"]["cloud_640x480_ms"].items():
        print(f"  {k:40s} {v:8.3f}")
    print("\nCPU 640x480 compressed copies (publish.compressed, default parameters):")
    for k, v in result["cpu"]["compressed_640x480"].items():
        print(f"  {k:40s} {v['ms']:8.3f} ms  {v['bytes']:9d} of {v['raw_bytes']} bytes")
    lab = result["cpu"]["segmentation_labels_640x480_ms"]
    print(f"\nCPU 640x480 segmentation labels (150 classes): ours {lab['ours']:.1f} ms, upsample all then argmax "
          f"{lab['upsample_all_then_argmax']:.1f} ms ({lab['speedup']}x); segmentation/colored from them: ours "
          f"{lab['colored_ours']:.2f} ms, reference {lab['colored_reference']:.2f} ms ({lab['colored_speedup']}x)")
    two = result["cpu"]["compressed_two_cameras_640x480"]
    print(f"  two cameras' 32FC1 compressedDepth, per pair of frames (the mean of {two['pairs_timed']} pairs, not a "
          f"median): one thread {two['one_thread_ms']:.3f} ms, two threads {two['two_threads_ms']:.3f} ms "
          f"({two['speedup']}x)")
    cuda = result.get("cuda")
    if cuda:
        print("\nCUDA:", json.dumps(cuda, indent=1))


if __name__ == "__main__":
    from dpt_ros.tools import run_benchmark

    run_benchmark("bench_pipeline", main)
