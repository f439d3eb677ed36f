"""CuPy implementation of the pipeline (imported only when the CuPy backend is used).

Data path on the GPU: message bytes -> pinned staging buffer (filled by several threads for
large frames) -> asynchronous host->device copies, chunk by chunk as the buffer fills ->
fused decode + INTER_CUBIC resize + normalise kernel (bayer: demosaic kernel first) -> torch via
DLPack. Clouds: back-projection kernel writing the PointCloud2 layout -> pinned device->host
copy. All work is issued on torch's current CUDA stream (wrapped by :func:`wrap_torch_stream`) so no
synchronisation is needed between PyTorch and CuPy.
"""

from __future__ import annotations

import concurrent.futures
import os
import threading
from typing import Any, Callable

import numpy as np

from dpt_ros.pipeline._kernels import KERNEL_SOURCE
from dpt_ros.pipeline.encodings import ImageView, _Format, check_view

_BLOCK = 256
_UPLOAD_CHUNK = 1 << 20
_PARALLEL_MIN = 2 << 20      # frames from this size on (e.g. 1080p rgb8, 6.2 MB) fill the staging buffer in parallel
_COPY_THREADS = 4
_COPY_POOL: Any = None       # ThreadPoolExecutor, False (too few cores) or None (not created yet)
_COPY_POOL_LOCK = threading.Lock()
_COLOR = {"r": 0, "g": 1, "b": 2}
_local = threading.local()


def kernel_params(encoding: str, fmt: _Format) -> tuple[int, int, int]:
    """(kind, bytes per pixel, swap R/B) of the pixel loader for a non-bayer encoding."""
    if fmt.kind in ("rgb", "bgr"):
        return (0 if fmt.itemsize == 1 else 1), fmt.bytes_per_pixel, int(fmt.kind == "bgr")
    if fmt.kind == "mono":
        return (2 if fmt.itemsize == 1 else 3), fmt.bytes_per_pixel, 0
    if fmt.kind == "float":
        return 4, 4, 0
    if fmt.kind == "yuv":
        return (5 if encoding in ("yuv422", "uyvy") else 6), 2, 0
    raise ValueError(f"{encoding} is decoded by the demosaic kernel")


def bayer_pattern(encoding: str) -> int:
    """Colour codes of the 2x2 cell of ``bayer_xxxxN`` packed as the demosaic kernel expects."""
    letters = encoding.split("_", 1)[1][:4]
    return sum(_COLOR[c] << (2 * i) for i, c in enumerate(letters))


def _cp():
    import cupy  # noqa: PLC0415

    return cupy


def _module():
    mod = getattr(_local, "module", None)
    if mod is None:
        cp = _cp()
        mod = cp.RawModule(code=KERNEL_SOURCE)
        _local.module = mod
    return mod


def _launch(name: str, n: int, args: tuple) -> None:
    """Launch kernel ``name`` over ``n`` threads on CuPy's current device and stream. Device memory goes in as a
    CuPy array or as a raw pointer (``np.uint64``, e.g. a torch tensor's ``data_ptr()``: no DLPack export)."""
    if n <= 0:
        return
    functions = getattr(_local, "functions", None)
    if functions is None:
        functions = _local.functions = {}
    fn = functions.get(name)
    if fn is None:
        fn = functions[name] = _module().get_function(name)
    fn(((n + _BLOCK - 1) // _BLOCK,), (_BLOCK,), args)


def torch_stream(device: Any = None):
    """CuPy view of torch's current CUDA stream of ``device`` (an index, a torch device, or None: the current
    device), for ``with`` blocks."""
    import torch  # noqa: PLC0415

    cp = _cp()
    # torch looks an index-less device up through several Python calls (availability checks included): an int
    # index is taken as it is
    if isinstance(device, str):
        device = torch.device(device)
    index = device if isinstance(device, int) else getattr(device, "index", None)
    s = torch.cuda.current_stream(index if index is not None else torch.cuda.current_device())
    cache = getattr(_local, "streams", None)
    if cache is None:
        cache = _local.streams = {}
    key = (s.cuda_stream, s.device.index)
    if key not in cache:
        cache[key] = wrap_torch_stream(cp, s)
    return cache[key]


def wrap_torch_stream(cp, s):
    """A CuPy stream issuing its work on torch's CUDA stream ``s`` (owned by torch, not by CuPy).

    CuPy 14 deprecates ``cupy.cuda.ExternalStream`` (a DeprecationWarning on every construction; it
    is to be removed in CuPy 15) in favour of ``Stream.from_external``, which reads the handle through
    the CUDA stream protocol and records no device (``device_id`` -1: the stream is used on whichever
    device is current), so every caller enters the stream's device (``cp.cuda.Device``) before using it.
    The handle is passed through :class:`_StreamHandle` rather than relying on torch's own
    ``__cuda_stream__``, which older torch releases lack. CuPy < 14: ``ExternalStream``.
    """
    from_external = getattr(cp.cuda.Stream, "from_external", None)
    if from_external is not None:
        with cp.cuda.Device(s.device.index):
            return from_external(_StreamHandle(s))
    return cp.cuda.ExternalStream(s.cuda_stream, s.device.index)


class _StreamHandle:
    """The CUDA stream protocol over a torch stream, which it keeps alive while CuPy holds it."""

    def __init__(self, stream) -> None:
        self.stream = stream

    def __cuda_stream__(self) -> tuple[int, int]:
        return 0, int(self.stream.cuda_stream)


class _Pinned:
    """A growing page-locked host buffer, reused once the previous transfer has completed."""

    def __init__(self) -> None:
        self.mem = None
        self.size = 0
        self.event = None

    def view(self, nbytes: int) -> np.ndarray:
        cp = _cp()
        if self.event is not None:
            self.event.synchronize()
            self.event = None
        if nbytes == 0:   # e.g. a dense cloud without a valid point (no buffer allocated yet)
            return np.empty(0, np.uint8)
        if nbytes > self.size:
            size = max(nbytes, int(self.size * 1.25))
            # (sized only once it is there: a failed allocation must not leave a size the buffer does not have)
            self.mem, self.size = cp.cuda.alloc_pinned_memory(size), size
        return np.frombuffer(self.mem, np.uint8, nbytes)

    def record(self, stream) -> None:
        self.event = stream.record()


def _pinned(name: str) -> _Pinned:
    pool = getattr(_local, "pinned", None)
    if pool is None:
        pool = _local.pinned = {}
    if name not in pool:
        pool[name] = _Pinned()
    return pool[name]


def _copy_pool():
    """Threads for filling large pinned staging buffers, or None on machines with few cores (where a
    single memcpy is as fast). ``np.copyto`` releases the GIL, so the chunks copy in parallel."""
    global _COPY_POOL
    with _COPY_POOL_LOCK:
        if _COPY_POOL is None:
            workers = min(_COPY_THREADS, (os.cpu_count() or 1) // 2)
            _COPY_POOL = concurrent.futures.ThreadPoolExecutor(workers, "dpt_pinned_copy") if workers >= 2 else False
    return _COPY_POOL or None


def staged_copy(src: np.ndarray, dst: np.ndarray, send: Callable[[int, int], None], pool=None,
                parts: int = 2 * _COPY_THREADS) -> None:
    """Copy the 1-D byte array ``src`` into ``dst`` chunk by chunk and call ``send(start, end)`` for
    each chunk, in order, as soon as that chunk of ``dst`` is complete.

    With ``pool`` (a ThreadPoolExecutor) and at least ``_PARALLEL_MIN`` bytes, ``parts`` chunks are
    copied by its threads while ``send`` issues the asynchronous DMA of the chunks already copied;
    otherwise the caller's thread copies chunk k + 1 while the DMA engine moves chunk k.
    """
    n = src.size
    if dst.size < n:
        raise ValueError(f"staging buffer of {dst.size} bytes is smaller than the {n}-byte frame")
    if pool is None or n < _PARALLEL_MIN:
        chunk = max(_UPLOAD_CHUNK, -(-n // 4))
        for start in range(0, n, chunk):
            end = min(n, start + chunk)
            np.copyto(dst[start:end], src[start:end])
            send(start, end)
        return
    chunk = -(-n // parts)
    bounds = [(a, min(n, a + chunk)) for a in range(0, n, chunk)]
    futures = [pool.submit(np.copyto, dst[a:b], src[a:b]) for a, b in bounds]
    try:
        for (a, b), fut in zip(bounds, futures):
            fut.result()
            send(a, b)
    except BaseException:
        for fut in futures:
            fut.cancel()
        concurrent.futures.wait(futures)   # no copy may outlive the call: dst is reused next frame
        raise


def _upload(data: Any, stream) -> Any:
    """Device copy of a byte buffer: host -> pinned staging -> asynchronous copies on ``stream``."""
    cp = _cp()
    if isinstance(data, cp.ndarray):
        return data.reshape(-1).view(cp.uint8)
    host = data.reshape(-1).view(np.uint8) if isinstance(data, np.ndarray) else np.frombuffer(data, np.uint8)
    staging = _pinned("upload")
    buf = staging.view(host.size)
    with stream:   # CuPy's pool hands memory out per stream: allocate on the one the copies use
        dev = cp.empty(host.size, cp.uint8)

    def send(start: int, end: int) -> None:
        dev[start:end].set(buf[start:end], stream=stream)

    try:
        staged_copy(host, buf, send, _copy_pool() if host.size >= _PARALLEL_MIN else None)
    finally:
        staging.record(stream)   # fence the chunks already sent, also when a copy failed
    return dev


def _source(frame: Any, stream) -> tuple[Any, int, int, int, int, int, int, int]:
    """(device bytes, step, h, w, kind, bpp, swap, big) for a view or an RGB array."""
    cp = _cp()
    if isinstance(frame, ImageView):
        fmt = check_view(frame)
        raw = _upload(frame.data, stream)
        h, w, step, big = frame.height, frame.width, frame.step, int(bool(frame.is_bigendian))
        if fmt.kind == "bayer":
            rgb = cp.empty((h, w, 3), cp.uint8)
            _launch("dpt_demosaic", h * w, (raw, np.int64(step), np.int32(h), np.int32(w),
                                            np.int32(bayer_pattern(frame.encoding)),
                                            np.int32(fmt.itemsize), np.int32(big), rgb))
            return rgb, w * 3, h, w, 0, 3, 0, 0
        kind, bpp, swap = kernel_params(frame.encoding, fmt)
        return raw, step, h, w, kind, bpp, swap, big
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image; got shape {frame.shape} dtype {frame.dtype}")
    h, w = frame.shape[:2]
    if isinstance(frame, np.ndarray) and frame.strides[2] == 0:  # mono broadcast view: 1 byte/pixel
        return _upload(np.ascontiguousarray(frame[:, :, 0]), stream), w, h, w, 2, 1, 0, 0
    if isinstance(frame, np.ndarray):
        return _upload(np.ascontiguousarray(frame), stream), w * 3, h, w, 0, 3, 0, 0
    return cp.ascontiguousarray(frame), w * 3, h, w, 0, 3, 0, 0


def _device_rgb(frame: np.ndarray, stream) -> Any:
    """Contiguous (H, W, 3) uint8 CuPy copy of a host RGB frame, uploaded through the pinned
    staging buffer on ``stream`` (a mono broadcast view uploads 1 byte/pixel, expanded on the GPU)."""
    cp = _cp()
    h, w = frame.shape[:2]
    if frame.strides[2] == 0:
        grey = _upload(np.ascontiguousarray(frame[:, :, 0]), stream).reshape(h, w, 1)
        return cp.ascontiguousarray(cp.broadcast_to(grey, (h, w, 3)))
    return _upload(np.ascontiguousarray(frame), stream).reshape(h, w, 3)


def upload_rgb(frame: Any, device: Any) -> Any:
    """(H, W, 3) uint8 RGB CuPy array of a frame on ``device``, on torch's current stream.

    ``frame``: an :class:`ImageView` (its raw bytes are uploaded once and decoded on the GPU: a bgr8,
    rgba8, yuv or bayer frame needs no reordering on the host), a host (H, W, 3) uint8 RGB array
    (uploaded through the pinned staging buffer), or a CuPy array (returned as is). Lets one upload
    serve the pre-processor(s) and the point cloud's colours of the same frame.
    """
    import torch  # noqa: PLC0415

    cp = _cp()
    if isinstance(frame, cp.ndarray):
        return frame
    if not isinstance(frame, ImageView) and (frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8):
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image; got shape {frame.shape} dtype {frame.dtype}")
    dev = torch.device(device)
    with cp.cuda.Device(dev.index if dev.index is not None else torch.cuda.current_device()):
        stream = torch_stream(dev)
        with stream:
            if isinstance(frame, ImageView):
                return _decode_on(frame, check_view(frame), stream)
            return _device_rgb(frame, stream)


def _decode_on(view: ImageView, fmt: _Format, stream) -> Any:
    cp = _cp()
    src, step, h, w, kind, bpp, swap, big = _source(view, stream)
    if fmt.kind == "bayer":
        return src
    out = cp.empty((h, w, 3), cp.uint8)
    _launch("dpt_decode", h * w, (src, np.int64(step), np.int32(h), np.int32(w), np.int32(kind),
                                  np.int32(bpp), np.int32(swap), np.int32(big), out))
    return out


def decode(view: ImageView, fmt: _Format) -> Any:
    """(H, W, 3) uint8 RGB CuPy array decoded on the GPU (same values as the NumPy path), on torch's current
    device and stream."""
    import torch  # noqa: PLC0415

    cp = _cp()
    with cp.cuda.Device(torch.cuda.current_device()):
        stream = torch_stream()
        with stream:
            return _decode_on(view, fmt, stream)


def preprocess(frame: Any, input_size: Callable[[int, int], tuple[int, int]], device: Any) -> Any:
    """Fused decode + resize + normalise; returns a (1, 3, h, w) float32 torch tensor (DLPack)."""
    import torch  # noqa: PLC0415

    cp = _cp()
    dev = torch.device(device)
    with cp.cuda.Device(dev.index if dev.index is not None else torch.cuda.current_device()):
        stream = torch_stream(dev)
        with stream:
            src, step, h, w, kind, bpp, swap, big = _source(frame, stream)
            oh, ow = input_size(h, w)
            # written straight into a tensor of torch's allocator, on its stream (no DLPack hand-over)
            out = torch.empty((1, 3, oh, ow), dtype=torch.float32, device=dev)
            # OpenCV computes the source step as 1 / (dst / src) in double precision
            sx, sy = 1.0 / (ow / w), 1.0 / (oh / h)
            _launch("dpt_resize_normalize", oh * ow,
                    (src, np.int64(step), np.int32(h), np.int32(w), np.int32(kind), np.int32(bpp),
                     np.int32(swap), np.int32(big), np.int32(oh), np.int32(ow), np.float64(sx),
                     np.float64(sy), np.uint64(out.data_ptr())))
            return out


def upsample_planes(planes: Any, size: tuple[int, int]) -> Any:
    """OpenCV INTER_CUBIC resize of a (N, h, w) CUDA tensor to a new (N, H, W) float32 tensor: one kernel on
    torch's current stream of the tensor's device, instead of PyTorch's bicubic kernel (whose source
    coordinates are rounded to float32, OpenCV's are computed in double, as the CPU path's)."""
    import torch  # noqa: PLC0415

    cp = _cp()
    src = planes.detach().float().contiguous()
    n, h, w = src.shape
    oh, ow = int(size[0]), int(size[1])
    out = torch.empty((n, oh, ow), dtype=torch.float32, device=src.device)
    with cp.cuda.Device(src.device.index), torch_stream(src.device):
        _launch("dpt_upsample", n * oh * ow,
                (np.uint64(src.data_ptr()), np.int32(n), np.int32(h), np.int32(w), np.int32(oh), np.int32(ow),
                 np.float64(1.0 / (ow / w)), np.float64(1.0 / (oh / h)), np.uint64(out.data_ptr())))
    return out


def depth_values(src: Any, out: Any, metric: tuple[float, float, float] | None,
                 depth_range: tuple[float, float] | None) -> Any:
    """``out`` (a float32 CUDA tensor shaped as ``src``, or ``src`` itself) = metres from the inverse depth
    ``src`` (``metric`` = (scale, shift, eps)) and/or the REP 117 range (``depth_range`` = (min, max)) of it: one
    kernel instead of PyTorch's ~11 element-wise launches, the same float32 values as the NumPy path."""
    import torch  # noqa: PLC0415

    cp = _cp()
    x = src.detach().float().contiguous()
    if out.dtype != torch.float32 or not out.is_contiguous() or out.shape != x.shape or out.device != x.device:
        raise ValueError(f"depth_values: out must be a contiguous float32 tensor of shape {tuple(x.shape)} on "
                         f"{x.device}; got {out.dtype} {tuple(out.shape)} on {out.device}")
    scale, shift, eps = metric if metric is not None else (1.0, 0.0, 0.0)
    dmin, dmax = depth_range if depth_range is not None else (0.0, float("inf"))
    with cp.cuda.Device(x.device.index), torch_stream(x.device):
        _launch("dpt_depth", x.numel(),
                (np.uint64(x.data_ptr()), np.int64(x.numel()), np.int32(metric is not None), np.float32(scale),
                 np.float32(shift), np.float32(eps), np.int32(depth_range is not None), np.float32(dmin),
                 np.float32(dmax), np.uint64(out.data_ptr())))
    return out


def resize_bicubic(image: Any, size: tuple[int, int]) -> Any:
    """INTER_CUBIC resize of a CuPy float array via torch's identical bicubic kernel (DLPack)."""
    import torch  # noqa: PLC0415
    import torch.nn.functional as F  # noqa: PLC0415

    cp = _cp()
    with torch.cuda.device(image.device.id), cp.cuda.Device(image.device.id), torch_stream(image.device.id):
        img = cp.ascontiguousarray(image, dtype=cp.float32)
        t = torch.from_dlpack(img)
        x = t[None, None] if t.ndim == 2 else t.permute(2, 0, 1)[None]
        y = F.interpolate(x, size=tuple(size), mode="bicubic", align_corners=False)[0]
        y = y[0] if t.ndim == 2 else y.permute(1, 2, 0)
        return cp.from_dlpack(y.contiguous())


def _axes(device_id: int, stride: int, intr: Any) -> tuple[Any, Any]:
    """Device copies of :func:`dpt_ros.pipeline.distortion.pixel_rays` (float32, contiguous; 1-D per column
    and row for a pinhole camera, one per decimated pixel each with distortion), cached: a camera keeps
    its intrinsics, so the host->device copies are paid once, not per frame."""
    from dpt_ros.pipeline.distortion import pixel_rays  # noqa: PLC0415

    cp = _cp()
    key = (device_id, stride, intr)
    cache = getattr(_local, "axes", None)
    if cache is None:
        cache = _local.axes = {}
    if key not in cache:
        if len(cache) >= 16:
            cache.clear()
        ax, ay = pixel_rays(intr, stride)
        cache[key] = (cp.asarray(np.ascontiguousarray(ax).ravel()), cp.asarray(np.ascontiguousarray(ay).ravel()))
        cp.cuda.get_current_stream().synchronize()  # complete before any other stream reads them
    return cache[key]


def cloud_to_pinned(depth: Any, intr: Any, rgb: Any, labels: Any, stride: int,
                    organized: bool) -> tuple[np.ndarray, int, int, int, tuple]:
    """GPU back-projection into the PointCloud2 layout, copied into a pinned host buffer.

    Returns (pinned byte view, height, width, point_step, fields); the view is reused by the next
    call on this thread.
    """
    from dpt_ros.pipeline.cloud import cloud_fields  # noqa: PLC0415

    cp = _cp()
    h, w = depth.shape
    fields, point_step = cloud_fields(rgb is not None, labels is not None)
    nw = point_step // 4
    rgb_word = 3 if rgb is not None else -1
    label_word = (4 if rgb is not None else 3) if labels is not None else -1
    with cp.cuda.Device(depth.device.id):
        stream = torch_stream(depth.device.id)
        with stream:
            ax, ay = _axes(depth.device.id, stride, intr)
            hs, ws = -(-h // stride), -(-w // stride)
            per_pixel = bool(intr.distortion_model)   # rays per decimated pixel, NaN where there is none
            d = cp.ascontiguousarray(depth, dtype=cp.float32)
            if isinstance(labels, np.ndarray):
                labels = np.ascontiguousarray(labels)
            if isinstance(rgb, np.ndarray):
                c = _device_rgb(rgb, stream)
            else:
                c = cp.ascontiguousarray(cp.asarray(rgb, dtype=cp.uint8)) if rgb is not None else None
            lab = cp.ascontiguousarray(cp.asarray(labels).astype(cp.uint32)) if labels is not None else None
            if organized:
                idx, n = None, hs * ws
            else:
                z = d[::stride, ::stride]
                valid = (z > 0) & (z <= np.float32(3.402823466e38))
                if per_pixel:
                    valid &= ~cp.isnan(ax.reshape(hs, ws))
                idx = cp.flatnonzero(valid).astype(cp.int64)
                n = int(idx.size)
            out = cp.empty(max(n, 1) * nw, cp.uint32)
            null = np.uint64(0)
            _launch("dpt_cloud", n, (d, np.int64(w), ax, ay, np.int32(per_pixel), np.int32(hs),
                                     np.int32(ws), np.int32(stride), c if c is not None else null,
                                     np.int64(w * 3), lab if lab is not None else null, np.int64(w),
                                     idx if idx is not None else null, np.int64(n), np.int32(nw),
                                     np.int32(rgb_word), np.int32(label_word), out))
            host = _pinned("cloud").view(n * point_step)
            if n:
                out[: n * nw].get(stream=stream, out=host.view(np.uint32))  # blocking copy
    if organized:
        return host, hs, ws, point_step, fields
    return host, 1, n, point_step, fields


def build_cloud(depth: Any, intr: Any, rgb: Any, labels: Any, stride: int, organized: bool,
                reuse_buffer: bool = False) -> Any:
    """CuPy :func:`dpt_ros.pipeline.build_cloud`: kernel, pinned device->host copy, then (unless
    ``reuse_buffer``) one host copy into the ``array.array`` that a message can keep."""
    import array  # noqa: PLC0415

    from dpt_ros.pipeline.cloud import CloudBuffer  # noqa: PLC0415

    host, hs, ws, point_step, fields = cloud_to_pinned(depth, intr, rgb, labels, stride, organized)
    if reuse_buffer:
        data = host
    else:
        data = array.array("B")
        data.frombytes(host)
    return CloudBuffer(data, hs, ws, point_step, ws * point_step, fields, not organized)
