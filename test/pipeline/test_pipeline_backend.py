"""Backend helpers: device out-of-memory errors and the release of cached device memory."""


def test_out_of_memory_errors_are_recognised_and_releasing_caches_is_safe_without_a_gpu():
    import torch

    from dpt_ros import pipeline

    assert pipeline.is_out_of_memory(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert not pipeline.is_out_of_memory(RuntimeError("CUDA error: an illegal memory access was encountered"))
    assert not pipeline.is_out_of_memory(MemoryError("host memory"))   # the host's: not the device's caches
    pipeline.release_cached_memory()     # no CuPy imported / no CUDA: nothing to release, no error


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
        assert _backend._probe_kernels.cache_info().currsize == 0   # no device was touched
