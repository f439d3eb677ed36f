"""The CUDA kernels of the CuPy backend, compiled as C++ and run thread by thread on the CPU.

CuPy needs a GPU, so this is how CI checks the kernel arithmetic (decoding, demosaicing, fused
resize + normalise, cloud layout) against the NumPy path; the GPU tests re-check it on a device.
"""

import ctypes
import math
import shutil
import subprocess

import cv2
import numpy as np
import pytest
import torch

from dpt_ros.pipeline import (
    ImageView,
    Intrinsics,
    Preprocessor,
    apply_depth_range,
    build_cloud,
    decode,
    metric_from_inverse,
    upsample,
)
from dpt_ros.pipeline._cuda import _BLOCK, bayer_pattern, kernel_params
from dpt_ros.pipeline._kernels import KERNEL_SOURCE
from dpt_ros.pipeline.distortion import pixel_rays
from dpt_ros.pipeline.encodings import _format

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++ to emulate the CUDA kernels")

PRELUDE = r"""
#define DPT_EMULATE
#include <math.h>
static long long g_tid;
#define DPT_TID g_tid
#define DPT_KERNEL static
#define DPT_DEVICE static inline
"""
WRAPPERS = r"""
// As on the device, every launch runs whole blocks (_cuda._BLOCK threads each): the threads past the last
// output must return without touching memory (the tests surround the outputs with guard bytes).
static long long emu_grid(long long n) { return (n + EMU_BLOCK - 1) / EMU_BLOCK * EMU_BLOCK; }
extern "C" {
void emu_decode(long long n, const u8* src, long long step, int h, int w, int kind, int bpp, int swap,
                int big, u8* dst) {
    for (g_tid = 0; g_tid < emu_grid(n); ++g_tid) dpt_decode(src, step, h, w, kind, bpp, swap, big, dst);
}
void emu_demosaic(long long n, const u8* src, long long step, int h, int w, int pattern, int itemsize,
                  int big, u8* dst) {
    for (g_tid = 0; g_tid < emu_grid(n); ++g_tid) dpt_demosaic(src, step, h, w, pattern, itemsize, big, dst);
}
void emu_resize(long long n, const u8* src, long long step, int h, int w, int kind, int bpp, int swap,
                int big, int oh, int ow, double sx, double sy, float* out) {
    for (g_tid = 0; g_tid < emu_grid(n); ++g_tid)
        dpt_resize_normalize(src, step, h, w, kind, bpp, swap, big, oh, ow, sx, sy, out);
}
void emu_upsample(long long total, const float* src, int n, int h, int w, int oh, int ow, double sx, double sy,
                  float* out) {
    for (g_tid = 0; g_tid < emu_grid(total); ++g_tid) dpt_upsample(src, n, h, w, oh, ow, sx, sy, out);
}
void emu_depth(const float* src, long long n, int metric, float scale, float shift, float eps, int ranged,
               float dmin, float dmax, float* out) {
    for (g_tid = 0; g_tid < emu_grid(n); ++g_tid) dpt_depth(src, n, metric, scale, shift, eps, ranged, dmin, dmax, out);
}
void emu_cloud(long long n, const float* depth, long long depth_row, const float* ax, const float* ay,
               int per_pixel, int hs, int ws, int stride, const u8* rgb, long long rgb_row, const u32* labels,
               long long label_row, const long long* idx, int nw, int rgb_word, int label_word, u32* out) {
    for (g_tid = 0; g_tid < emu_grid(n); ++g_tid)
        dpt_cloud(depth, depth_row, ax, ay, per_pixel, hs, ws, stride, rgb, rgb_row, labels, label_row, idx, n, nw,
                  rgb_word, label_word, out);
}
}
"""
P = ctypes.c_void_p
I32, I64, F32, F64 = ctypes.c_int, ctypes.c_longlong, ctypes.c_float, ctypes.c_double


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    d = tmp_path_factory.mktemp("kernels")
    (d / "k.cpp").write_text(PRELUDE + f"#define EMU_BLOCK {_BLOCK}\n" + KERNEL_SOURCE + WRAPPERS)
    subprocess.run(["g++", "-O1", "-shared", "-fPIC", "-ffp-contract=off", "-o", str(d / "k.so"), str(d / "k.cpp")],
                   check=True, capture_output=True)
    so = ctypes.CDLL(str(d / "k.so"))
    so.emu_decode.argtypes = [I64, P, I64, I32, I32, I32, I32, I32, I32, P]
    so.emu_demosaic.argtypes = [I64, P, I64, I32, I32, I32, I32, I32, P]
    so.emu_resize.argtypes = [I64, P, I64, I32, I32, I32, I32, I32, I32, I32, I32, F64, F64, P]
    so.emu_upsample.argtypes = [I64, P, I32, I32, I32, I32, I32, F64, F64, P]
    so.emu_depth.argtypes = [P, I64, I32, F32, F32, F32, I32, F32, F32, P]
    so.emu_cloud.argtypes = [I64, P, I64, P, P, I32, I32, I32, I32, P, I64, P, I64, P, I32, I32, I32, P]
    return so


def _ptr(a):
    return None if a is None else a.ctypes.data


GUARD = 0xA5


class _Guarded:
    """An output array with a block's worth of guard bytes after it (a thread past the end writes there)."""

    def __init__(self, shape, dtype, slack_items: int = _BLOCK * 8) -> None:
        n = int(np.prod(shape))
        self.buf = np.full((n + slack_items) * np.dtype(dtype).itemsize, GUARD, np.uint8)
        self.array = self.buf[: n * np.dtype(dtype).itemsize].view(dtype).reshape(shape)
        self.array[...] = 0
        self._n = self.array.nbytes

    def checked(self) -> np.ndarray:
        tail = self.buf[self._n:]
        assert np.all(tail == GUARD), f"a kernel thread wrote past its output ({np.count_nonzero(tail != GUARD)} bytes)"
        return self.array


RNG = np.random.default_rng(11)
H, W = 13, 18


def _view(encoding, padding, big):
    fmt = _format(encoding)
    if fmt.kind == "yuv":
        raw = RNG.integers(0, 256, (H, W * 2), dtype=np.uint8)
    elif fmt.kind == "float":
        raw = RNG.random((H, W)).astype(np.float32) * 1.2 - 0.1
        raw[0, :3] = np.nan, np.inf, -np.inf   # -> 0, 255, 0 as in the NumPy decoder
    elif fmt.kind == "bayer":
        raw = RNG.integers(0, 256 ** fmt.itemsize, (H, W)).astype(np.uint8 if fmt.itemsize == 1 else np.uint16)
    else:
        shape = (H, W) if fmt.channels == 1 else (H, W, fmt.channels)
        raw = RNG.integers(0, 256 ** fmt.itemsize, shape).astype(np.uint8 if fmt.itemsize == 1 else np.uint16)
    return ImageView.from_array(raw, encoding, padding=padding, bigendian=big), fmt


def _device_rgb(lib, view, fmt):
    src = np.frombuffer(view.data, np.uint8)
    out = _Guarded((view.height, view.width, 3), np.uint8)
    if fmt.kind == "bayer":
        lib.emu_demosaic(view.height * view.width, _ptr(src), view.step, view.height, view.width,
                         bayer_pattern(view.encoding), fmt.itemsize, int(view.is_bigendian), _ptr(out.array))
    else:
        kind, bpp, swap = kernel_params(view.encoding, fmt)
        lib.emu_decode(view.height * view.width, _ptr(src), view.step, view.height, view.width, kind, bpp, swap,
                       int(view.is_bigendian), _ptr(out.array))
    return out.checked()


ENCODINGS = ["rgb8", "bgr8", "rgba8", "bgra8", "8UC3", "8UC4", "rgb16", "bgr16", "rgba16", "bgra16", "mono8",
             "mono16", "16UC1", "32FC1", "yuv422", "yuv422_yuy2", "uyvy", "yuyv", "bayer_rggb8", "bayer_bggr8", "bayer_gbrg8",
             "bayer_grbg8", "bayer_rggb16", "bayer_gbrg16"]


@pytest.mark.parametrize("big", [False, True])
@pytest.mark.parametrize("padding", [0, 3])
@pytest.mark.parametrize("encoding", ENCODINGS)
def test_kernel_decode_matches_numpy(lib, encoding, padding, big):
    view, fmt = _view(encoding, padding, big)
    np.testing.assert_array_equal(_device_rgb(lib, view, fmt), decode(view, np))


@pytest.mark.parametrize(("encoding", "src", "dst"), [
    ("rgb8", (48, 64), (64, 96)), ("bgra8", (97, 131), (64, 96)), ("mono16", (30, 40), (96, 128)),
    ("yuv422", (40, 60), (32, 32)), ("bayer_grbg8", (41, 57), (64, 64)), ("32FC1", (24, 24), (32, 64)),
])
def test_kernel_fused_preprocess_matches_numpy(lib, encoding, src, dst):
    global H, W
    H, W = src
    try:
        view, fmt = _view(encoding, 1, False)
    finally:
        H, W = 13, 18
    pre = Preprocessor(dst, method="fixed")
    expected = pre(view)[0].numpy()
    if fmt.kind == "bayer":
        rgb = _device_rgb(lib, view, fmt)
        data, step, kind, bpp, swap, big = rgb, src[1] * 3, 0, 3, 0, 0
    else:
        data = np.frombuffer(view.data, np.uint8)
        (kind, bpp, swap), step, big = kernel_params(encoding, fmt), view.step, 0
    out = _Guarded((3, *dst), np.float32)
    oh, ow = dst
    lib.emu_resize(oh * ow, _ptr(data), step, src[0], src[1], kind, bpp, swap, big, oh, ow,
                   1.0 / (ow / src[1]), 1.0 / (oh / src[0]), _ptr(out.array))
    np.testing.assert_allclose(out.checked(), expected, atol=3e-5, rtol=0)  # float summation order vs OpenCV SIMD


def test_kernel_resize_of_a_partial_last_block_matches_opencv(lib):
    """Network sizes are multiples of 32 (whole blocks of outputs); the kernel itself takes any size: 30x42
    outputs leave most of the last block's threads idle, and they must not write."""
    view, fmt = _view("bgr8", 0, False)
    rgb = decode(view, np)
    oh, ow = 30, 42
    assert (oh * ow) % _BLOCK != 0
    kind, bpp, swap = kernel_params("bgr8", fmt)
    out = _Guarded((3, oh, ow), np.float32)
    lib.emu_resize(oh * ow, _ptr(np.frombuffer(view.data, np.uint8)), view.step, H, W, kind, bpp, swap, 0, oh, ow,
                   W / ow, H / oh, _ptr(out.array))
    want = cv2.resize(rgb.astype(np.float32), (ow, oh), interpolation=cv2.INTER_CUBIC) * np.float32(2 / 255) - 1
    np.testing.assert_allclose(out.checked(), want.transpose(2, 0, 1), atol=3e-5, rtol=0)


@pytest.mark.parametrize(("n", "src", "dst"), [(1, (12, 16), (48, 64)), (2, (24, 32), (37, 53)),
                                               (1, (30, 40), (17, 11)), (1, (1, 5), (3, 9))])
def test_kernel_upsample_matches_the_cpu_upsample(lib, n, src, dst):
    """dpt_upsample (the CUDA path of ``upsample``) against the CPU path, OpenCV INTER_CUBIC: up, down, several
    planes, odd sizes whose last block is partial, and a one-row source (replicated border)."""
    planes = (RNG.random((n, *src)) * 1000 - 100).astype(np.float32)
    out = _Guarded((n, *dst), np.float32)
    lib.emu_upsample(n * dst[0] * dst[1], _ptr(planes), n, src[0], src[1], dst[0], dst[1], 1.0 / (dst[1] / src[1]),
                     1.0 / (dst[0] / src[0]), _ptr(out.array))
    want = upsample(torch.from_numpy(planes), dst).numpy()
    # float32 sums of 16 terms (weights up to ~1.1, either sign) in another order than OpenCV's SIMD: some ulp of the
    # values up to 1000 (1.2e-3 seen), far below the 0.1-1 a wrong tap or weight would be off by
    np.testing.assert_allclose(out.checked(), want, atol=5e-3, rtol=0)


EDGES = np.array([np.nan, 0.0, -0.0, -1.0, -np.inf, np.inf, 1e-30, 1e-8, 0.2, 0.5, 1.0, 10.0, 10.000001, 11.0,
                  3.4e38, 5000.0], np.float32)


@pytest.mark.parametrize("metric", [None, (6.016e-5, 0.00579, 1e-8), (0.3, -0.25, 1e-8), (2.5, 0.0, 1e-8),
                                    (1.0, -0.0, 0.0), (1.0, 0.0, -0.0)])
@pytest.mark.parametrize("depth_range", [None, (0.0, np.inf), (0.3, 10.0), (0.0, 80.0), (1.0, np.inf)])
def test_kernel_metric_and_range_equal_numpy_bit_for_bit(lib, metric, depth_range):
    """dpt_depth (the CUDA path of metric_from_inverse and apply_depth_range) gives NumPy's float32 values exactly,
    at the edges (NaN, +-0, +-inf, negative, tiny, huge, the range limits; an eps of +-0 that ties with a +-0 sum,
    where NumPy's maximum picks eps and its sign) and on random values; in place too."""
    x = np.concatenate([EDGES, (RNG.random(1000) * 3000 - 200).astype(np.float32)])
    want = x
    if metric is not None:
        with np.errstate(divide="ignore"):   # (an eps of 0: 1 / 0 is the infinity compared)
            want = metric_from_inverse(want, *metric)
    if depth_range is not None:
        want = apply_depth_range(want, *depth_range)
    out = _Guarded(x.shape, np.float32)
    args = (int(metric is not None), *(metric or (1.0, 0.0, 1e-8)), int(depth_range is not None),
            *(depth_range or (0.0, np.inf)))
    lib.emu_depth(_ptr(x), x.size, *args, _ptr(out.array))
    np.testing.assert_array_equal(out.checked().view(np.uint32), want.view(np.uint32))   # bitwise: NaN, -0, inf
    inplace = x.copy()
    lib.emu_depth(_ptr(inplace), inplace.size, *args, _ptr(inplace))
    np.testing.assert_array_equal(inplace.view(np.uint32), want.view(np.uint32))


def _emu_cloud(lib, depth, intr, rgb, labels, stride, organized):
    h, w = depth.shape
    ax, ay = (np.ascontiguousarray(a).ravel() for a in pixel_rays(intr, stride))
    hs, ws = -(-h // stride), -(-w // stride)
    per_pixel = int(bool(intr.distortion_model))
    nw = 3 + (rgb is not None) + (labels is not None)
    idx = None
    if organized:
        n = hs * ws
    else:
        z = depth[::stride, ::stride]
        with np.errstate(invalid="ignore"):
            valid = (z > 0) & (z < np.inf)
        if per_pixel:
            valid &= ~np.isnan(ax.reshape(hs, ws))
        idx = np.flatnonzero(valid).astype(np.int64)
        n = idx.size
        idx = np.concatenate([idx, np.zeros(_BLOCK, np.int64)])   # a stray thread reads a valid index
    out = _Guarded((n * nw,), np.uint32)
    lab = None if labels is None else np.ascontiguousarray(labels, np.uint32)
    lib.emu_cloud(n, _ptr(depth), w, _ptr(ax), _ptr(ay), per_pixel, hs, ws, stride, _ptr(rgb), w * 3, _ptr(lab), w, _ptr(idx),
                  nw, 3 if rgb is not None else -1, (4 if rgb is not None else 3) if labels is not None else -1,
                  _ptr(out.array))
    return out.checked().view(np.uint8)


@pytest.mark.parametrize("lens", ["pinhole", "plumb_bob"])
@pytest.mark.parametrize("organized", [True, False])
@pytest.mark.parametrize("stride", [1, 3])
def test_kernel_cloud_matches_numpy_bytes(lib, stride, organized, lens):
    h, w = 23, 31
    depth = (RNG.random((h, w)) * 5).astype(np.float32)
    depth[::4, ::5] = np.nan
    depth[1, 2], depth[3, 3], depth[6, 6] = 0.0, -np.inf, np.inf
    rgb = RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)
    labels = RNG.integers(0, 151, (h, w)).astype(np.uint8)
    intr = Intrinsics(40.0, 41.0, 15.3, 11.1, w, h)
    if lens == "plumb_bob":   # so strong that the corners have no ray: those points are invalid too
        intr = Intrinsics(24.0, 24.5, 15.3, 11.1, w, h, "plumb_bob", (-0.5, 0.05, 0.002, -0.001, 0.0))
        assert 0 < np.isnan(pixel_rays(intr, stride)[0]).sum() < 0.3 * pixel_rays(intr, stride)[0].size
    for kw in ({}, {"rgb": rgb}, {"labels": labels}, {"rgb": rgb, "labels": labels}):
        ref = build_cloud(depth, intr, stride=stride, organized=organized, **kw)
        got = _emu_cloud(lib, depth, intr, kw.get("rgb"), kw.get("labels"), stride, organized)
        assert len(got) == len(ref.data)
        want = np.frombuffer(ref.data, np.float32)
        have = got.view(np.float32)
        np.testing.assert_array_equal(have, want)  # NaN == NaN here; packed words compared bitwise below
        nan = np.isnan(want)
        np.testing.assert_array_equal(got.view(np.uint32)[~nan], np.frombuffer(ref.data, np.uint32)[~nan])
        assert math.isnan(have[0]) == math.isnan(want[0])


def test_cuda_macro_path_is_valid_cxx(tmp_path):
    """The non-emulated branch (CUDA builtins via DPT_TID) parses too (NVRTC compiles it on a GPU)."""
    stub = ("#include <math.h>\nstruct U3 { unsigned x, y, z; }; static U3 blockIdx, blockDim, threadIdx;\n"
            "#define __global__\n#define __device__\n#define __forceinline__ inline\n"
            "static float __fmul_rn(float a, float b) { return a * b; }\n"
            "static float __fadd_rn(float a, float b) { return a + b; }\n"
            "static float __frcp_rn(float a) { return 1.0f / a; }\n")
    src = tmp_path / "cuda_path.cpp"
    src.write_text(stub + KERNEL_SOURCE)
    p = subprocess.run(["g++", "-fsyntax-only", "-Wall", "-Werror", "-Wno-unused-function", str(src)],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
