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
    for it explicitly raises that reason; with it, the reason is empty."""
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
    if reason:
        with pytest.raises(pipeline.BackendError) as err:
            pipeline.get_xp("cupy")
        assert str(err.value) == reason
