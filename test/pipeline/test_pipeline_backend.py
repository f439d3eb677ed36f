"""Backend helpers: device out-of-memory errors and the release of cached device memory."""


def test_out_of_memory_errors_are_recognised_and_releasing_caches_is_safe_without_a_gpu():
    import torch

    from dpt_ros import pipeline

    assert pipeline.is_out_of_memory(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert not pipeline.is_out_of_memory(RuntimeError("CUDA error: an illegal memory access was encountered"))
    assert not pipeline.is_out_of_memory(MemoryError("host memory"))   # the host's: not the device's caches
    # CUDA libraries allocating outside the caching allocator report it as a plain RuntimeError
    for text in ("CUDA error: out of memory\nCUDA kernel errors might be asynchronously reported",
                 "CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`",
                 "cuDNN error: CUDNN_STATUS_ALLOC_FAILED"):
        assert pipeline.is_out_of_memory(RuntimeError(text)), text
    assert not pipeline.is_out_of_memory(RuntimeError("the model ran out of memory ideas"))
    if hasattr(torch, "AcceleratorError"):   # what torch >= 2.8 raises for a failed CUDA call
        assert pipeline.is_out_of_memory(torch.AcceleratorError("CUDA error: out of memory"))
    assert not pipeline.is_out_of_memory(ValueError("CUDA error: out of memory"))   # only the runtime's own type
    pipeline.release_cached_memory()     # no CuPy imported / no CUDA: nothing to release, no error


def test_a_driver_out_of_memory_is_a_device_out_of_memory():
    """A module of kernels that the driver cannot load for want of device memory (CuPy compiles and loads its
    element-wise kernels on their first use; torch its jit kernels), or a launch refused for it, fails as CuPy's
    CUDADriverError or torch's driver check, RuntimeErrors with the driver's name for it: an out-of-memory error,
    whose frame is counted cuda_oom and whose caches are released so that the next load can succeed (it was
    counted as the stage's failure, and neither torch's nor CuPy's cache was released)."""
    from dpt_ros import pipeline

    for text in ("CUDA_ERROR_OUT_OF_MEMORY: out of memory",       # CuPy's CUDADriverError: '<name>: <string>'
                 "CUDA driver error: out of memory"):             # torch's driver-API check
        assert pipeline.is_out_of_memory(RuntimeError(text)), text
    assert not pipeline.is_out_of_memory(RuntimeError("CUDA_ERROR_INVALID_VALUE: invalid argument"))


def test_cupy_backend_says_why_it_cannot_be_used():
    """Without CuPy, or with CuPy and no usable CUDA device (a pip-installed CuPy on a machine without
    an NVIDIA driver), the CuPy backend is unavailable with a reason that names what is missing; asking
    for the module raises that reason; with it, the reason is empty."""
    import importlib.util

    import pytest

    from dpt_ros import pipeline
    from dpt_ros.pipeline import _backend

    reason = pipeline.cupy_unavailable_reason()
    assert (reason == "") == pipeline.cupy_available()
    # probed once: a GPU node asks on every frame, and a failed import or compile must not be retried
    assert _backend._probe_cupy.cache_info().currsize == 1
    hits = _backend._probe_cupy.cache_info().hits
    assert pipeline.cupy_unavailable_reason() == reason and _backend._probe_cupy.cache_info().hits == hits + 1
    if importlib.util.find_spec("cupy") is None:
        assert "CuPy is not installed" in reason and "cupy-cuda12x" in reason
    elif reason:
        assert "no CUDA device" in reason or "cannot compile" in reason
    if _backend._probe_cupy()[0] is None:   # no CuPy or no device: asking for the module says the same
        with pytest.raises(pipeline.BackendError) as err:
            pipeline.get_xp("cupy")
        assert str(err.value) == reason


def test_the_kernel_check_is_per_device():
    """The kernel check loads a module, which creates a CUDA context: it runs on the device asked about
    (the node's), never on another one. Device forms: an index, "cuda:N", a torch device."""
    import torch

    from dpt_ros import pipeline
    from dpt_ros.pipeline import _backend

    assert _backend._device_index(None, 3) == 3
    assert _backend._device_index(None, "cuda:2") == 2
    assert _backend._device_index(None, torch.device("cuda", 1)) == 1
    if _backend._probe_cupy()[0] is None:   # no CuPy or no device: the same reason whatever the device
        reason = pipeline.cupy_unavailable_reason()
        assert all(pipeline.cupy_unavailable_reason(d) == reason for d in (0, "cuda:1", torch.device("cuda", 2)))
        assert _backend._kernel_probes == {}   # no device was touched


def test_a_kernel_check_that_ran_out_of_device_memory_is_tried_again(monkeypatch):
    """Loading the kernels' module is a device allocation: on a device a model has just filled it can fail for want
    of memory, which is no reason to run the pipeline on PyTorch / NumPy for the rest of the process (the answer was
    cached for good, with advice to install another CuPy build); it is said as that, and the next check loads the
    module again. Another failure (a CuPy build for another CUDA) stays the answer. CuPy cannot run on this
    machine: a stand-in for its two calls the check makes."""
    import contextlib
    import types

    from dpt_ros.pipeline import _backend

    failures = [RuntimeError("CUDA_ERROR_OUT_OF_MEMORY: out of memory")]
    loads = []

    class Module:
        def __init__(self, code):
            loads.append(code)
            if failures:
                raise failures.pop(0)

        def get_function(self, name):
            return name

    cupy = types.SimpleNamespace(RawModule=Module, cuda=types.SimpleNamespace(Device=lambda i: contextlib.nullcontext()))
    monkeypatch.setattr(_backend, "_probe_cupy", lambda: (cupy, ""))
    monkeypatch.setattr(_backend, "_kernel_probes", {})
    reason = _backend.cupy_unavailable_reason(0)
    assert reason.startswith("CuPy could not load the pipeline's CUDA kernels on cuda:0: the device is out of memory")
    assert "install the CuPy build" not in reason
    assert _backend.cupy_unavailable_reason(0) == "" and len(loads) == 2   # loaded now: CuPy serves
    assert _backend.cupy_unavailable_reason(0) == "" and len(loads) == 2   # and that answer is kept
    failures.append(RuntimeError("CUDA_ERROR_UNSUPPORTED_PTX_VERSION: the provided PTX was compiled with an "
                                 "unsupported toolchain"))
    for _ in range(2):
        assert "install the CuPy build for your CUDA version" in _backend.cupy_unavailable_reason(1)
    assert len(loads) == 3   # tried once on cuda:1


def test_backend_selection_and_host_arrays_on_the_cpu():
    """get_xp by name or module (anything else refused with the valid names), the backend of a device
    given as a torch device or a string, the module owning an array, and host copies of torch tensors."""
    import numpy as np
    import pytest
    import torch

    from dpt_ros import pipeline
    from dpt_ros.pipeline import _backend

    assert pipeline.get_xp("numpy") is np and pipeline.get_xp(np) is np
    with pytest.raises(pipeline.BackendError, match="unsupported array module 'torch'"):
        pipeline.get_xp(torch)
    with pytest.raises(pipeline.BackendError, match="unknown backend 'jax'; valid backends: numpy, cupy"):
        pipeline.get_xp("jax")
    assert [_backend.backend_for_device(d) for d in ("cuda", "cuda:1", torch.device("cuda", 0), "cpu",
                                                      torch.device("cpu"), "meta")] == \
        ["cupy", "cupy", "cupy", "numpy", "numpy", "numpy"]
    assert _backend.array_module(np.zeros(2)) is np and _backend.array_module(np.float32(1)) is np
    assert _backend.array_module(torch.zeros(2)) is np   # not CuPy's: the NumPy code path reads it on the host
    a = np.arange(3)
    assert _backend.to_numpy(a) is a
    t = torch.arange(4.0, requires_grad=True)
    np.testing.assert_array_equal(_backend.to_numpy(t * 2), [0.0, 2.0, 4.0, 6.0])
    np.testing.assert_array_equal(_backend.to_numpy([1, 2]), [1, 2])


def test_device_tables_cached_for_every_stream_are_complete_before_they_are_returned():
    """The colour map's and the palette's device tables and the cloud's pixel rays are uploaded once and cached for
    every later caller, whatever CuPy stream it has current; a copy from pageable memory may return before its DMA
    has landed, so each upload synchronises its stream before the table is handed out (a library caller on a side
    stream could read a half-uploaded table on its first frame). Checked in the source: CuPy cannot run here."""
    import ast
    import inspect
    import textwrap

    from dpt_ros.pipeline import _cuda, colormap, postprocess

    for fn in (colormap._device_lut, postprocess._device_palette, _cuda._axes):
        fn = getattr(fn, "__wrapped__", fn)   # (behind functools.lru_cache)
        tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
        calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)]
        uploads = [c for c in calls if isinstance(c.func, ast.Attribute) and c.func.attr == "asarray"]
        syncs = [c for c in calls if isinstance(c.func, ast.Attribute) and c.func.attr == "synchronize"]
        assert uploads and syncs and max(c.lineno for c in uploads) < min(c.lineno for c in syncs), fn.__qualname__


def test_cuda_errors_that_end_the_process_s_use_of_the_device_are_recognised():
    """CUDA's sticky errors (an illegal memory access, a device-side assert, an uncorrectable ECC error, ...) leave
    every later CUDA call failing until the process ends: they are told apart, in the forms torch and CuPy raise
    them, from errors the next frame can get past (out of memory, a bad argument)."""
    import torch

    from dpt_ros import pipeline

    for text in ("CUDA error: an illegal memory access was encountered\nCUDA kernel errors might be asynchronously "
                 "reported at some other API call, so the stacktrace below might be incorrect.",          # torch
                 "CUDA error: device-side assert triggered\nCompile with `TORCH_USE_CUDA_DSA` to enable "
                 "device-side assertions.",
                 "cudaErrorIllegalAddress: an illegal memory access was encountered",   # CuPy's CUDARuntimeError
                 "CUDA_ERROR_LAUNCH_FAILED: unspecified launch failure",                # CuPy's CUDADriverError
                 "CUDA error: uncorrectable ECC error encountered",
                 "CUDA error: misaligned address"):
        assert pipeline.is_unrecoverable_device_error(RuntimeError(text)), text
        assert not pipeline.is_out_of_memory(RuntimeError(text)), text
    if hasattr(torch, "AcceleratorError"):
        assert pipeline.is_unrecoverable_device_error(torch.AcceleratorError("CUDA error: unspecified launch failure"))
    for text in ("CUDA error: out of memory", "CUDA_ERROR_INVALID_VALUE: invalid argument",
                 "CUDA error: invalid configuration argument"):
        assert not pipeline.is_unrecoverable_device_error(RuntimeError(text)), text
    assert not pipeline.is_unrecoverable_device_error(torch.cuda.OutOfMemoryError("CUDA out of memory."))
    assert not pipeline.is_unrecoverable_device_error(ValueError("an illegal memory access was encountered"))
