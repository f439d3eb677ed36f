"""CuPy backend against the NumPy backend (same API, same results). Skipped without CUDA + CuPy."""

import numpy as np
import pytest
import torch

from dpt_ros.pipeline import (
    ImageView,
    Intrinsics,
    Preprocessor,
    RunningRange,
    apply_depth_range,
    build_cloud,
    colorize,
    colorize_labels,
    cupy_available,
    decode,
    metric_from_inverse,
    resize_bicubic,
    tensor_to_array,
    upsample,
)
from dpt_ros.pipeline.encodings import _format

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not (torch.cuda.is_available() and cupy_available()), reason="needs CUDA and CuPy"),
]

RNG = np.random.default_rng(12)
ENCODINGS = ["rgb8", "bgr8", "rgba8", "bgra8", "8UC3", "rgb16", "bgra16", "mono8", "mono16", "16UC1", "32FC1",
             "yuv422", "yuv422_yuy2", "bayer_rggb8", "bayer_bggr8", "bayer_gbrg8", "bayer_grbg8", "bayer_rggb16"]


def _view(encoding, h, w, padding=0, big=False):
    fmt = _format(encoding)
    if fmt.kind == "yuv":
        raw = RNG.integers(0, 256, (h, w * 2), dtype=np.uint8)
    elif fmt.kind == "float":
        raw = RNG.random((h, w)).astype(np.float32)
    else:
        shape = (h, w) if fmt.channels == 1 else (h, w, fmt.channels)
        raw = RNG.integers(0, 256 ** fmt.itemsize, shape).astype(np.uint8 if fmt.itemsize == 1 else np.uint16)
    return ImageView.from_array(raw, encoding, padding=padding, bigendian=big)


@pytest.mark.parametrize("big", [False, True])
@pytest.mark.parametrize("padding", [0, 1, 3, 64])
@pytest.mark.parametrize("encoding", ENCODINGS)
def test_gpu_decode_equals_numpy(encoding, padding, big):
    import cupy

    view = _view(encoding, 37, 50, padding, big)
    out = decode(view, "cupy")
    assert isinstance(out, cupy.ndarray) and out.shape == (37, 50, 3) and out.dtype == cupy.uint8
    np.testing.assert_array_equal(out.get(), decode(view, np))


@pytest.mark.parametrize("encoding", ["bgr8", "rgba8", "mono8", "mono16", "yuv422", "bayer_grbg8", "32FC1"])
@pytest.mark.parametrize("hw", [(480, 640), (1080, 1920), (101, 333)])
def test_gpu_preprocess_equals_numpy(encoding, hw):
    if encoding.startswith("yuv422") and hw[1] % 2:
        hw = (hw[0], hw[1] + 1)  # 4:2:2 needs an even width (odd widths are rejected, tested on the CPU)
    view = _view(encoding, *hw, padding=3)
    gpu = Preprocessor(384, device="cuda")
    assert gpu.backend == "cupy"
    t = gpu(view)
    assert t.is_cuda and t.dtype == torch.float32 and t.shape[:2] == (1, 3)
    ref = Preprocessor(384)(view)
    # Upscaling agrees to float32 rounding. Downscaling 1080p (x0.36) the CPU path is OpenCV's float32
    # INTER_CUBIC, which accumulates differently from the kernel's (and from OpenCV's own float64 path) by
    # up to ~1.5e-4 in normalised units = 0.02 of an 8-bit grey level (measured on an H200: 1.3e-4).
    atol = 5e-5 if hw[0] <= 480 else 2e-4  # H200: up to 3.06e-5 upscaling
    torch.testing.assert_close(t.cpu(), ref, atol=atol, rtol=0)


def test_gpu_preprocess_from_host_and_device_rgb_and_on_a_side_stream():
    import cupy

    rgb = RNG.integers(0, 256, (240, 320, 3), dtype=np.uint8)
    ref = Preprocessor(384)(rgb)
    gpu = Preprocessor(384, device="cuda")
    torch.testing.assert_close(gpu(rgb).cpu(), ref, atol=5e-5, rtol=0)  # float32 rounding (H200: 3.1e-5)
    torch.testing.assert_close(gpu(cupy.asarray(rgb)).cpu(), ref, atol=5e-5, rtol=0)
    torch.testing.assert_close(gpu(rgb[:, :, ::-1][:, :, ::-1]).cpu(), ref, atol=5e-5, rtol=0)
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        first = gpu(rgb)
        second = gpu(np.ascontiguousarray(rgb[::-1]))  # reuses the pinned staging buffer
        a, b = first * 1.0, second * 1.0
    side.synchronize()
    torch.testing.assert_close(a.cpu(), ref, atol=5e-5, rtol=0)
    torch.testing.assert_close(b.cpu(), Preprocessor(384)(np.ascontiguousarray(rgb[::-1])), atol=5e-5, rtol=0)


def test_torch_stream_wrapper_issues_on_torch_stream_and_leaves_it_alive():
    """The CuPy view of torch's stream has its handle and device, is built without CuPy 14's
    ExternalStream DeprecationWarning where Stream.from_external exists, and dropping it leaves
    torch's stream usable (CuPy must not destroy a stream it does not own)."""
    import gc
    import warnings

    import cupy

    from dpt_ros.pipeline._cuda import wrap_torch_stream

    side = torch.cuda.Stream()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        wrapped = wrap_torch_stream(cupy, side)
    if hasattr(cupy.cuda.Stream, "from_external"):   # CuPy >= 14
        assert not [w for w in caught if issubclass(w.category, DeprecationWarning)], [str(w.message) for w in caught]
    # CuPy 14's from_external leaves the device open (-1: whichever is current where it is used); ExternalStream
    # records the one given
    assert wrapped.ptr == side.cuda_stream and wrapped.device_id in (-1, side.device.index)
    with wrapped:
        total = int(cupy.arange(1 << 20, dtype=cupy.int64).sum())
    assert total == (1 << 20) * ((1 << 20) - 1) // 2
    del wrapped
    gc.collect()
    with torch.cuda.stream(side):
        y = torch.ones(1 << 20, device="cuda").sum()
    side.synchronize()
    assert float(y) == float(1 << 20)


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "bgra8", "mono16", "yuv422_yuy2", "bayer_rggb8"])
def test_gpu_upload_of_an_image_view_decodes_on_the_device(encoding):
    """Preprocessor.upload(view): the raw bytes go up once and are decoded on the GPU; the device RGB
    equals the CPU decode, and pre-processing it equals pre-processing the view directly."""
    import cupy

    view = _view(encoding, 120, 160, padding=3, big=encoding == "mono16")
    gpu = Preprocessor(384, device="cuda")
    rgb = gpu.upload(view)
    assert isinstance(rgb, cupy.ndarray) and rgb.shape == (120, 160, 3) and rgb.flags.c_contiguous
    np.testing.assert_array_equal(rgb.get(), decode(view, np))
    torch.testing.assert_close(gpu(rgb), gpu(view), atol=1e-6, rtol=0)
    assert Preprocessor(384).upload(view) is view   # the NumPy backend reads the view itself


@pytest.mark.parametrize("lens", ["pinhole", "plumb_bob"])
@pytest.mark.parametrize("organized", [True, False])
@pytest.mark.parametrize("stride", [1, 2, 3])
def test_gpu_cloud_bytes_equal_numpy(stride, organized, lens):
    import cupy

    h, w = 120, 161
    depth = (RNG.random((h, w)) * 5).astype(np.float32)
    depth[::7, ::9] = np.nan
    depth[3, 4], depth[5, 6], depth[8, 8] = 0.0, -np.inf, np.inf
    rgb = RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)
    labels = RNG.integers(0, 151, (h, w)).astype(np.uint8)
    intr = Intrinsics(100.0, 101.0, 80.2, 60.7, w, h)
    if lens == "plumb_bob":   # per-pixel rays, the corners beyond the lens model's fold without one
        intr = Intrinsics(100.0, 101.0, 80.2, 60.7, w, h, "plumb_bob", (-0.5, 0.05, 0.002, -0.001, 0.0))
    for kw in ({}, {"rgb": rgb}, {"labels": labels}, {"rgb": rgb, "labels": labels}):
        ref = build_cloud(depth, intr, stride=stride, organized=organized, **kw)
        dev_kw = {k: cupy.asarray(v) if k == "labels" else v for k, v in kw.items()}  # rgb stays on the host
        got = build_cloud(cupy.asarray(depth), intr, stride=stride, organized=organized, **dev_kw)
        assert (got.height, got.width, got.point_step, got.row_step, got.is_dense, got.fields) == (
            ref.height, ref.width, ref.point_step, ref.row_step, ref.is_dense, ref.fields)
        np.testing.assert_array_equal(np.frombuffer(got.data, np.float32), np.frombuffer(ref.data, np.float32))
        finite = ~np.isnan(np.frombuffer(ref.data, np.float32))
        np.testing.assert_array_equal(np.frombuffer(got.data, np.uint32)[finite], np.frombuffer(ref.data, np.uint32)[finite])


def test_gpu_cloud_in_the_reused_pinned_buffer_is_the_same_cloud_until_the_next_call():
    """reuse_buffer=True skips the host copy into an array.array: the data is the pinned buffer itself,
    byte-identical to the owned cloud, and the next cloud of this thread is written over it."""
    import cupy

    h, w = 48, 64
    depth = (RNG.random((h, w)) * 5 + 0.5).astype(np.float32)
    rgb = RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)
    intr = Intrinsics(50.0, 50.0, 32.0, 24.0, w, h)
    owned = build_cloud(cupy.asarray(depth), intr, rgb=rgb, stride=2)
    reused = build_cloud(cupy.asarray(depth), intr, rgb=rgb, stride=2, reuse_buffer=True)
    assert isinstance(reused.data, np.ndarray) and reused.data.dtype == np.uint8
    assert bytes(reused.data) == bytes(owned.data)
    assert (reused.height, reused.width, reused.row_step, reused.fields) == (
        owned.height, owned.width, owned.row_step, owned.fields)
    before = bytes(reused.data)
    build_cloud(cupy.asarray(depth * 2), intr, rgb=rgb, stride=2, reuse_buffer=True)
    assert bytes(reused.data) != before                     # overwritten: serialise before the next call
    assert bytes(owned.data) == before                      # the owned cloud is not


def test_gpu_dense_cloud_without_a_valid_point_is_empty_on_a_fresh_thread():
    """The first cloud of a thread (no pinned buffer yet) with nothing valid -- all depths beyond range --
    is an empty dense cloud, as on the CPU (it raised TypeError from an unallocated staging buffer)."""
    import threading

    import cupy

    depth = np.full((8, 8), np.inf, np.float32)
    intr = Intrinsics(10.0, 10.0, 4.0, 4.0, 8, 8)
    out = {}

    def run():
        try:
            out["cloud"] = build_cloud(cupy.asarray(depth), intr, organized=False)
        except Exception as e:  # noqa: BLE001 - reported below
            out["error"] = e

    t = threading.Thread(target=run)
    t.start()
    t.join()
    assert "error" not in out, out.get("error")
    ref = build_cloud(depth, intr, organized=False)
    got = out["cloud"]
    assert (got.height, got.width, len(got.data)) == (ref.height, ref.width, len(ref.data)) == (1, 0, 0)


def test_gpu_postprocess_equals_numpy():
    import cupy

    inv = torch.rand(1, 96, 128) * 1000
    up_cpu = upsample(inv, (240, 320))
    up_gpu = upsample(inv.cuda(), (240, 320))
    # same kernel, float32 accumulation in another order: 8e-3 on values up to 1000 (8e-6 of the range)
    torch.testing.assert_close(up_gpu.cpu(), up_cpu, atol=2e-2, rtol=1e-5)
    arr = tensor_to_array(up_gpu[0])
    assert isinstance(arr, cupy.ndarray) and arr.data.ptr == up_gpu.data_ptr()  # zero copy
    host = up_cpu[0].numpy()
    d_np = apply_depth_range(metric_from_inverse(host, 6.016e-5, 0.00579), 1.0, 80.0)
    d_cp = apply_depth_range(metric_from_inverse(cupy.asarray(host), 6.016e-5, 0.00579), 1.0, 80.0)
    np.testing.assert_allclose(d_cp.get(), d_np, rtol=1e-6)
    edge = np.array([np.nan, 0.0, -1.0, -np.inf, 0.2, 0.5, 10.0, 11.0, np.inf], np.float32)
    np.testing.assert_array_equal(apply_depth_range(cupy.asarray(edge), 0.3, 10.0).get(),
                                  apply_depth_range(edge, 0.3, 10.0))
    t_edge = apply_depth_range(torch.from_numpy(edge).cuda(), 0.3, 10.0)
    np.testing.assert_array_equal(t_edge.cpu().numpy(), apply_depth_range(edge, 0.3, 10.0))
    with_nan = host.copy()
    with_nan[0, :5] = np.nan
    np.testing.assert_array_equal(colorize(cupy.asarray(with_nan), "jet", 0, 1000, (1, 2, 3)).get(),
                                  colorize(with_nan, "jet", 0, 1000, (1, 2, 3)))
    np.testing.assert_array_equal(colorize(cupy.asarray(host), "turbo", 0, 1000).get(), colorize(host, "turbo", 0, 1000))
    tiny = np.array([[-1.0, 0.0, 5e-40, 1e-39, 1.0, np.nan]], np.float32)   # (narrower than float32 scales: float64)
    np.testing.assert_array_equal(colorize(cupy.asarray(tiny), "gray", 0, 1e-39).get(), colorize(tiny, "gray", 0, 1e-39))
    labels = RNG.integers(0, 160, (50, 60)).astype(np.uint8)
    np.testing.assert_array_equal(colorize_labels(cupy.asarray(labels)).get(), colorize_labels(labels))
    r_np, r_cp = RunningRange(max_samples=10**9), RunningRange(max_samples=10**9)
    assert r_cp.update(cupy.asarray(host)) == pytest.approx(r_np.update(host), rel=1e-5)
    img = RNG.random((50, 70, 3)).astype(np.float32)
    np.testing.assert_allclose(resize_bicubic(cupy.asarray(img), (90, 33)).get(), resize_bicubic(img, (90, 33)), atol=3e-5)


def test_gpu_cupy_array_functions_work_on_torchs_stream():
    """A CuPy array's post-processing is queued on torch's current stream of its device, after the work that
    wrote the array there: values written on a side stream behind a ~50 ms GPU sleep are the ones read. On CuPy's
    own current stream (the legacy default stream, which does not wait for torch's non-blocking streams) each
    function ran at once and read the values from before the sleep."""
    from dpt_ros.pipeline import depth_to_millimetres, metres_from_millimetres, overlay

    def two(shape, lo, hi, dtype):   # (values before, values written behind the sleep)
        return tuple(RNG.integers(lo, hi, shape).astype(dtype) for _ in range(2))

    blend_with = RNG.integers(0, 256, (48, 64, 3)).astype(np.uint8)
    cases = {   # name -> (function of one array, its values before, its values written)
        "colorize_labels uint8": (colorize_labels, *two((48, 64), 1, 151, np.uint8)),
        "colorize_labels int32": (colorize_labels, *two((48, 64), 1, 151, np.int32)),
        "colorize": (lambda a: colorize(a, "turbo", 0.0, 150.0), *two((48, 64), 0, 150, np.float32)),
        "overlay": (lambda a: overlay(a, cupy_like(a, blend_with), 0.3), *two((48, 64, 3), 0, 256, np.uint8)),
        "metric_from_inverse": (lambda a: metric_from_inverse(a, 0.5, 0.1), *two((48, 64), 0, 150, np.float32)),
        "apply_depth_range": (lambda a: apply_depth_range(a, 5.0, 100.0), *two((48, 64), 0, 150, np.float32)),
        "depth_to_millimetres": (depth_to_millimetres, *(v / np.float32(8.0) for v in two((48, 64), 0, 500, np.float32))),
        "metres_from_millimetres": (metres_from_millimetres, *two((48, 64), 0, 5000, np.int32)),   # (no uint16: DLPack)
        "RunningRange.update": (lambda a: np.array(RunningRange().update(a)), *two((48, 64), 0, 150, np.float32)),
    }
    for name, (fn, before, written) in cases.items():
        want = fn(written)
        x = torch.from_numpy(before).cuda()
        fn(tensor_to_array(x))   # compiled and cached before the timed round (a compile outlasts the sleep)
        source = torch.from_numpy(written).cuda()
        torch.cuda.synchronize()
        side = torch.cuda.Stream()
        with torch.cuda.stream(side):
            torch.cuda._sleep(100_000_000)
            x.copy_(source)
            got = fn(tensor_to_array(x))
        side.synchronize()
        np.testing.assert_allclose(got.get() if hasattr(got, "get") else got, want, rtol=1e-6, err_msg=name)


def cupy_like(a, values):
    """``values`` (NumPy) on ``a``'s device when ``a`` is a CuPy array, else as they are."""
    if isinstance(a, np.ndarray):
        return values
    import cupy

    with cupy.cuda.Device(a.device.id):
        out = cupy.asarray(values)
        cupy.cuda.get_current_stream().synchronize()
    return out


def test_gpu_depth_kernels_equal_numpy_and_never_write_an_inference_tensor():
    """On a CUDA tensor, upsample, metric_from_inverse and apply_depth_range run the pipeline's own kernels
    (dpt_upsample, dpt_depth: one launch each instead of PyTorch's bicubic + ~11 element-wise launches):
    NumPy's float32 metres and REP 117 values bit for bit (NaN, +-0, +-inf, tiny, huge), OpenCV's upsampling
    within float rounding; in place only where asked, and never into a model's inference tensor."""
    from dpt_ros.pipeline import _cuda

    def same(got, want):   # NaN where NumPy has NaN (a GPU's arithmetic returns its canonical NaN, not the input's
        # payload), every other value to the bit (the sign of zero and of infinity included)
        got = got.cpu().numpy() if isinstance(got, torch.Tensor) else got
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        keep = ~np.isnan(want)
        np.testing.assert_array_equal(got[keep].view(np.uint32), want[keep].view(np.uint32))

    edges = np.array([np.nan, 0.0, -0.0, -1.0, -np.inf, np.inf, 1e-30, 1e-8, 0.2, 0.5, 1.0, 10.0, 11.0, 3.4e38],
                     np.float32)
    x = np.concatenate([edges, (RNG.random(5000) * 3000 - 200).astype(np.float32)])
    t = torch.from_numpy(x).cuda()
    m = metric_from_inverse(t, 6.016e-5, 0.00579)
    want = metric_from_inverse(x, 6.016e-5, 0.00579)
    same(m, want)
    np.testing.assert_array_equal(t.cpu().numpy().view(np.uint32), x.view(np.uint32))   # the input left alone
    r = apply_depth_range(m, 1.0, 80.0, inplace=True)
    assert r.data_ptr() == m.data_ptr()
    same(r, apply_depth_range(want, 1.0, 80.0))
    with torch.inference_mode():
        model_out = torch.from_numpy(x).cuda()
    r2 = apply_depth_range(model_out, 0.3, 10.0, inplace=True)
    assert r2.data_ptr() != model_out.data_ptr()
    np.testing.assert_array_equal(model_out.cpu().numpy().view(np.uint32), x.view(np.uint32))
    same(r2, apply_depth_range(x, 0.3, 10.0))
    planes = torch.rand(2, 24, 32) * 1000 - 100
    up = upsample(planes.cuda(), (37, 53))
    torch.testing.assert_close(up.cpu(), upsample(planes, (37, 53)), atol=5e-3, rtol=0)
    assert {"dpt_depth", "dpt_upsample"} <= set(_cuda._local.functions)   # the kernels ran, not PyTorch's operations


def test_gpu_millimetres_equal_cpu_and_leave_the_metres_alone():
    """depth_to_millimetres of a CUDA tensor: the CPU's values (the float64 product), the caller's float64 metres
    and a model's inference tensor untouched."""
    from dpt_ros.pipeline import depth_to_millimetres

    r = RNG.uniform(-1.0, 70.0, (60, 80))
    r[0, :3] = [np.nan, np.inf, 65.5354]
    metres = torch.from_numpy(r).cuda()
    before = metres.clone()
    np.testing.assert_array_equal(depth_to_millimetres(metres).cpu().numpy(), depth_to_millimetres(r))
    assert torch.equal(metres.nan_to_num(), before.nan_to_num())
    with torch.inference_mode():
        frozen = torch.from_numpy(r.astype(np.float32)).cuda()
    np.testing.assert_array_equal(depth_to_millimetres(frozen).cpu().numpy(), depth_to_millimetres(r.astype(np.float32)))


def test_gpu_drop_depth_edges_equals_cpu():
    from dpt_ros.pipeline import drop_depth_edges

    z = torch.from_numpy((RNG.random((120, 161)) * 5 + 0.5).astype(np.float32))
    z[::9, ::7] = float("nan")
    z[3, 4], z[5, 6] = float("inf"), float("-inf")
    got = drop_depth_edges(z.cuda(), 0.1)
    assert got.device.type == "cuda"
    np.testing.assert_array_equal(got.cpu().numpy(), drop_depth_edges(z, 0.1).numpy())


def test_gpu_drop_labels_equals_cpu():
    from dpt_ros.pipeline import drop_labels

    z = torch.from_numpy((RNG.random((120, 161)) * 5 + 0.5).astype(np.float32))
    labels = torch.from_numpy(RNG.integers(1, 151, (120, 161)).astype(np.uint8))
    got = drop_labels(z.cuda(), labels.cuda(), (13, 21))
    assert got.device.type == "cuda"
    np.testing.assert_array_equal(got.cpu().numpy(), drop_labels(z, labels, (13, 21)).numpy())


def test_gpu_labels_in_groups_equal_all_classes_at_once(monkeypatch):
    """Past MAX_UPSAMPLED_BYTES the GPU upsamples the classes in groups into a running maximum: the labels of all
    classes upsampled at once, and the peak memory stays near one group's."""
    from dpt_ros.pipeline import labels_from_logits, postprocess, upsampled_labels

    logits = (torch.randn(1, 150, 96, 128, generator=torch.Generator().manual_seed(2)) * 3).cuda()
    whole = labels_from_logits(upsample(logits, (480, 640)))
    assert torch.equal(upsampled_labels(logits, (480, 640)), whole)     # 184 MB: all at once
    monkeypatch.setattr(postprocess, "MAX_UPSAMPLED_BYTES", 16 * 2**20)   # 13 classes a group
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    grouped = upsampled_labels(logits, (480, 640))
    peak = torch.cuda.max_memory_allocated() - before
    assert grouped.is_cuda and grouped.dtype == torch.uint8 and torch.equal(grouped, whole)
    assert peak < 3 * 16 * 2**20, peak   # not the 184 MB of all 150 classes
