"""Array backend selection: NumPy on the CPU, CuPy on a CUDA device (imported lazily)."""

from __future__ import annotations

import contextlib
import functools
import math
import sys
import threading
from types import ModuleType
from typing import Any

import numpy as np

BACKENDS = ("numpy", "cupy")


class BackendError(RuntimeError):
    """The requested array backend is not usable here (e.g. CuPy or CUDA missing)."""


def _import_cupy() -> ModuleType:
    cupy, reason = _probe_cupy()
    if cupy is None:
        raise BackendError(reason)
    return cupy


@functools.lru_cache(maxsize=1)
def _probe_cupy() -> tuple[ModuleType | None, str]:
    """(cupy, '') or (None, why not); probed once per process (the node asks for every GPU frame)."""
    try:
        import cupy  # noqa: PLC0415 - lazy on purpose: CuPy needs a driver
    except ImportError:  # pragma: no cover - depends on the machine
        return None, ("backend 'cupy' requested but CuPy is not installed; install cupy-cuda12x/cupy-cuda13x "
                      "matching your CUDA driver, or use backend 'numpy'")
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # pragma: no cover - depends on the machine
        return None, f"backend 'cupy' requested but no CUDA device is usable: {exc}"
    if count < 1:  # pragma: no cover
        return None, "backend 'cupy' requested but no CUDA device is present; use backend 'numpy'"
    return cupy, ""


_kernel_probes: dict[int, str] = {}   # device index -> _probe_kernels' answer


def _probe_kernels(index: int) -> str:
    """'' when CuPy compiles and loads the pipeline's kernels on CUDA device ``index``, else why not (a
    CuPy build for another CUDA major version imports but cannot). Once per device: loading a module
    creates that device's context, so a device the node does not use is never touched. A device out of memory
    (the module load is an allocation, e.g. right after a model filled the device) is no answer for good: it is
    said, and the next call probes again."""
    known = _kernel_probes.get(index)
    if known is not None:
        return known
    cupy = _probe_cupy()[0]
    try:
        from dpt_ros.pipeline._kernels import KERNEL_SOURCE  # noqa: PLC0415

        with cupy.cuda.Device(index):
            cupy.RawModule(code=KERNEL_SOURCE).get_function("dpt_decode")
    except Exception as exc:  # noqa: BLE001  # pragma: no cover - depends on the machine
        if is_out_of_memory(exc):
            return (f"CuPy could not load the pipeline's CUDA kernels on cuda:{index}: the device is out of memory "
                    f"({type(exc).__name__}: {exc}); they are tried again on the next frame (the pre-processor made "
                    f"meanwhile stays on the CPU until the next model load). Free device memory (other processes on "
                    f"this GPU, a smaller input_size or model)")
        _kernel_probes[index] = (
            f"backend 'cupy' requested but CuPy cannot compile and load CUDA kernels on cuda:{index} "
            f"({type(exc).__name__}: {exc}); install the CuPy build for your CUDA version (cupy-cuda12x or "
            f"cupy-cuda13x), or use backend 'numpy'")
        return _kernel_probes[index]
    _kernel_probes[index] = ""
    return ""


def cupy_unavailable_reason(device: Any = None) -> str:
    """Why the CuPy backend cannot be used here ('' when it can): CuPy not installed, no CUDA device,
    or its NVRTC / driver cannot compile and load the pipeline's kernels on ``device`` (a torch device,
    "cuda:N" or an index; default: CuPy's current device)."""
    cupy, reason = _probe_cupy()
    if cupy is not None:
        reason = _probe_kernels(_device_index(cupy, device))
    return reason


def cupy_available(device: Any = None) -> bool:
    """True when CuPy imports, sees a CUDA device and compiles the pipeline's kernels on ``device``."""
    return not cupy_unavailable_reason(device)


def _device_index(cupy: ModuleType, device: Any) -> int:
    """CUDA device index of ``device``: None -> CuPy's current device; an int; a torch device or string
    ("cuda", "cuda:N"; without an index, torch's current device, where torch would put a tensor)."""
    if device is None:
        return int(cupy.cuda.runtime.getDevice())
    if isinstance(device, int):
        return device
    import torch  # noqa: PLC0415

    index = torch.device(device).index
    return int(torch.cuda.current_device()) if index is None else int(index)


# Device allocations outside the caching allocators (cuBLAS / cuDNN workspaces, a kernel launch's CUDA_CHECK, a
# module of kernels loaded by the driver: CuPy compiles and loads its element-wise kernels on their first use, torch
# its jit kernels) fail as a RuntimeError (torch >= 2.8: its subclass torch.AcceleratorError; CuPy: CUDARuntimeError,
# CUDADriverError "CUDA_ERROR_OUT_OF_MEMORY: out of memory") with one of these in the message; releasing the caches
# helps them too.
_OOM_RUNTIME_MESSAGES = ("CUDA error: out of memory", "CUBLAS_STATUS_ALLOC_FAILED", "CUDNN_STATUS_ALLOC_FAILED",
                         "cudaErrorMemoryAllocation", "CUDA_ERROR_OUT_OF_MEMORY", "CUDA driver error: out of memory")


# CUDA's "sticky" errors: the runtime's documentation says of each that the process is left in an inconsistent state,
# every later CUDA call fails with the same error, and only a new process can use the device again. The texts are
# the runtime's own descriptions, which torch ("CUDA error: <text>"), CuPy's runtime errors ("cudaErrorIllegalAddress:
# <text>") and its driver errors ("CUDA_ERROR_ILLEGAL_ADDRESS: <text>") all carry.
_STICKY_CUDA_MESSAGES = ("an illegal memory access was encountered", "device-side assert triggered",
                         "unspecified launch failure", "an illegal instruction was encountered", "misaligned address",
                         "hardware stack error", "invalid program counter",
                         "operation not supported on global/shared address space",
                         "uncorrectable ECC error encountered", "the launch timed out and was terminated")


def is_unrecoverable_device_error(exc: BaseException) -> bool:
    """True for a CUDA error after which no work on the device can succeed in this process (an illegal memory access,
    a device-side assert, an uncorrectable ECC error, ...): the caller should say that the process must be restarted.
    Out of memory is not one (see :func:`is_out_of_memory`)."""
    return isinstance(exc, RuntimeError) and any(m in str(exc) for m in _STICKY_CUDA_MESSAGES)


def is_out_of_memory(exc: BaseException) -> bool:
    """True for a device out-of-memory error: PyTorch's allocator, CuPy's memory pool, or a CUDA library's or the
    driver's own allocation (a RuntimeError such as "CUDA error: out of memory", "CUBLAS_STATUS_ALLOC_FAILED" or
    "CUDA_ERROR_OUT_OF_MEMORY")."""
    import torch  # noqa: PLC0415

    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    if isinstance(exc, RuntimeError) and any(m in str(exc) for m in _OOM_RUNTIME_MESSAGES):   # incl. AcceleratorError
        return True
    cupy = sys.modules.get("cupy")   # imported only if the CuPy backend ever ran
    return cupy is not None and isinstance(exc, cupy.cuda.memory.OutOfMemoryError)


def release_cached_memory(device: Any = None, host: bool = False) -> None:
    """Return the device memory cached by PyTorch and by CuPy's pool (they do not share one) to the
    driver, so that the next frame's allocations can succeed after an out-of-memory error.

    ``device``: the CUDA device (``torch.device``, "cuda:N" or index) whose CuPy pool to empty (CuPy's pool frees
    only the current device's blocks; default: the current device); PyTorch empties every device's cache.
    ``host``: also the caches of page-locked host buffers, CuPy's (staging and cloud copies) and PyTorch's (the
    node's device->host copies), for a node taking its model down.
    """
    import torch  # noqa: PLC0415

    cupy = sys.modules.get("cupy")
    if cupy is not None:
        index = torch.device(device).index if isinstance(device, (str, torch.device)) else device
        if index is None:
            cupy.get_default_memory_pool().free_all_blocks()
        else:
            with cupy.cuda.Device(index):
                cupy.get_default_memory_pool().free_all_blocks()
        if host:
            cupy.get_default_pinned_memory_pool().free_all_blocks()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        if host and hasattr(torch._C, "_host_emptyCache"):   # (no public API for it; absent in old releases)
            torch._C._host_emptyCache()


def get_xp(backend: str | ModuleType = "numpy") -> ModuleType:
    """Return the array module for ``backend`` ("numpy" or "cupy", or a module already)."""
    if isinstance(backend, ModuleType):
        if backend.__name__ not in BACKENDS:
            raise BackendError(f"unsupported array module {backend.__name__!r}; use one of {BACKENDS}")
        return backend
    if backend == "numpy":
        return np
    if backend == "cupy":
        return _import_cupy()
    raise BackendError(f"unknown backend {backend!r}; valid backends: {', '.join(BACKENDS)}")


def backend_for_device(device: Any) -> str:
    """"cupy" for a CUDA torch device (or string), "numpy" otherwise."""
    kind = getattr(device, "type", None) or str(device).split(":", 1)[0]
    return "cupy" if kind == "cuda" else "numpy"


def array_module(a: Any) -> ModuleType:
    """The array module (numpy or cupy) that owns ``a``."""
    if isinstance(a, np.ndarray):
        return np
    mod = type(a).__module__.split(".", 1)[0]
    if mod == "cupy":
        return _import_cupy()
    return np


def where_it_lives(a: Any):
    """A ``with`` context for work on array ``a``: for a CuPy array its device and torch's current CUDA stream
    there (where the model's output was queued: CuPy's own current stream is the legacy default stream in a
    worker thread, which does not wait for a torch stream of its own), so the work needs no synchronisation with
    PyTorch; nothing for a NumPy array."""
    if array_module(a) is np:
        return contextlib.nullcontext()
    from dpt_ros.pipeline._cuda import torch_stream  # noqa: PLC0415

    scope = contextlib.ExitStack()
    scope.enter_context(_import_cupy().cuda.Device(a.device.id))
    scope.enter_context(torch_stream(a.device.id))
    return scope


def to_numpy(a: Any) -> np.ndarray:
    """Host NumPy array from a NumPy, CuPy or torch array (copies only when on a device)."""
    if isinstance(a, np.ndarray):
        return a
    mod = type(a).__module__.split(".", 1)[0]
    if mod == "cupy":
        return a.get()
    if mod == "torch":
        return a.detach().cpu().numpy()
    return np.asarray(a)


_scratch = threading.local()


def host_scratch(key: str, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """An uninitialised NumPy array of ``shape`` and ``dtype`` in this thread's reused host buffer ``key`` (grown,
    never shrunk), for a temporary that a function is done with before it returns: the next call on this thread
    with the same ``key`` overwrites it.

    A fresh temporary of a frame's size is page-faulted in anew on every frame whenever the allocator has given the
    last one back to the system (glibc trims the top of its heap once it holds more than twice the largest block
    freed): pre-processing at 640x480 took 8.9-11.9 instead of 1.2-1.5 ms so in a loop that also built clouds, as a
    node does; bench_pipeline's post-processing stage faulted in 1170 pages (4.6 MB) per 640x480 frame, 800 with its
    temporaries here (the rest are the arrays it returns)."""
    bufs = _scratch.__dict__.setdefault("bufs", {})
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    buf = bufs.get(key)
    if buf is None or buf.size < nbytes:
        buf = bufs[key] = np.empty(max(nbytes, dtype.itemsize), np.uint8)
    return buf[:nbytes].view(dtype).reshape(shape)
