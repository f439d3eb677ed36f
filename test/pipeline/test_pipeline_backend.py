"""Backend helpers: device out-of-memory errors and the release of cached device memory."""


def test_out_of_memory_errors_are_recognised_and_releasing_caches_is_safe_without_a_gpu():
    import torch

    from dpt_ros import pipeline

    assert pipeline.is_out_of_memory(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert not pipeline.is_out_of_memory(RuntimeError("CUDA error: an illegal memory access was encountered"))
    assert not pipeline.is_out_of_memory(MemoryError("host memory"))   # the host's: not the device's caches
    pipeline.release_cached_memory()     # no CuPy imported / no CUDA: nothing to release, no error
