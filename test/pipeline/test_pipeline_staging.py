"""Filling the pinned staging buffer of the GPU upload (``_cuda.staged_copy``; NumPy only, so it runs
in CI): every chunk is complete when it is handed to the DMA, chunks go out in order and cover the
frame, with and without copy threads."""
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from dpt_ros.pipeline import _cuda


def _run(n: int, pool, parts: int = 8):
    rng = np.random.default_rng(n)
    src = rng.integers(0, 256, n, dtype=np.uint8)
    dst = np.zeros(n + 13, np.uint8)            # staging buffers are reused and may be larger
    sent = []

    def send(a: int, b: int) -> None:
        assert np.array_equal(dst[a:b], src[a:b]), f"chunk {a}:{b} sent before it was copied"
        sent.append((a, b))

    _cuda.staged_copy(src, dst, send, pool, parts)
    np.testing.assert_array_equal(dst[:n], src)
    assert not dst[n:].any()
    if n:
        assert [a for a, _ in sent] == [0] + [b for _, b in sent[:-1]] and sent[-1][1] == n
    return sent


@pytest.mark.parametrize("n", [0, 1, (1 << 20) - 1, (1 << 20) + 1, 1920 * 1080 * 3])
def test_single_thread_chunks(n):
    sent = _run(n, None)
    assert len(sent) == (0 if n == 0 else min(4, -(-n // (1 << 20))))


@pytest.mark.parametrize("n,parts", [(1920 * 1080 * 3, 8), ((2 << 20) + 7, 3), (3840 * 2160 * 3, 16)])
def test_threads_fill_in_parts(n, parts):
    with ThreadPoolExecutor(3) as pool:
        for _ in range(3):                      # the buffer is refilled frame after frame
            sent = _run(n, pool, parts)
            assert len(sent) == parts
            assert max(b - a for a, b in sent) - min(b - a for a, b in sent) <= -(-n // parts)


def test_small_frames_stay_on_the_calling_thread():
    with ThreadPoolExecutor(3) as pool:
        assert len(_run(640 * 480 * 3, pool)) == 1   # 0.9 MB: below _PARALLEL_MIN, one chunk


def test_staging_buffer_too_small():
    with pytest.raises(ValueError, match="smaller than the 10-byte frame"):
        _cuda.staged_copy(np.zeros(10, np.uint8), np.zeros(9, np.uint8), lambda a, b: None)


def test_a_failed_send_leaves_no_copy_running():
    """When the DMA of a chunk fails, staged_copy raises only after every copy thread has stopped:
    the staging buffer is refilled by the next frame, so a straggler would corrupt that frame."""
    n, parts = 64 << 20, 8
    src = np.ones(n, np.uint8)
    dst = np.zeros(n, np.uint8)

    def send(a: int, b: int) -> None:
        raise RuntimeError("cudaMemcpyAsync failed")

    for _ in range(3):
        dst[:] = 0
        with ThreadPoolExecutor(4) as pool:
            with pytest.raises(RuntimeError, match="cudaMemcpyAsync"):
                _cuda.staged_copy(src, dst, send, pool, parts)
            after_raise = dst.copy()
        # leaving the with-block waited for every task: none of the failed call's copies came later
        assert np.array_equal(dst, after_raise)


class _OneSlowThread(ThreadPoolExecutor):
    """One copy thread whose copies each take 200 ms longer; counts the copies that ran."""

    def __init__(self) -> None:
        super().__init__(1)
        self.ran = 0

    def submit(self, fn, *args):
        def slow(*a):
            time.sleep(0.2)
            self.ran += 1
            return fn(*a)
        return super().submit(slow, *args)


def test_a_failed_send_cancels_the_copies_not_started_and_waits_for_the_one_running():
    n, parts = 8 << 20, 8
    src, dst = np.ones(n, np.uint8), np.zeros(n, np.uint8)

    def send(a: int, b: int) -> None:
        raise RuntimeError("cudaMemcpyAsync failed")

    with _OneSlowThread() as pool:
        with pytest.raises(RuntimeError, match="cudaMemcpyAsync"):
            _cuda.staged_copy(src, dst, send, pool, parts)
        ran, after_raise = pool.ran, dst.copy()
        time.sleep(0.5)   # the copy running at the raise, had it been left behind, has finished by now
        # chunk 0 failed its send; chunk 1 may already have been running on the thread; 2..7 never start
        assert pool.ran == ran <= 2 and np.array_equal(dst, after_raise)


def test_a_failed_pinned_allocation_leaves_the_buffer_usable(monkeypatch):
    """The page-locked buffer grows when a larger frame comes; an allocation that fails (pinned memory exhausted)
    is that frame's failure only: the buffer's size stayed the old one, so a later frame between the two sizes
    allocates anew (it was taken as fitting the buffer never allocated: every such frame failed from then on)."""
    import types

    calls = []

    def alloc_pinned_memory(size):
        calls.append(size)
        if len(calls) == 2:
            raise RuntimeError("cudaErrorMemoryAllocation: out of memory")
        return bytearray(size)

    monkeypatch.setattr(_cuda, "_cp", lambda: types.SimpleNamespace(cuda=types.SimpleNamespace(
        alloc_pinned_memory=alloc_pinned_memory)))
    pinned = _cuda._Pinned()
    assert pinned.view(1000).size == 1000
    with pytest.raises(RuntimeError, match="out of memory"):
        pinned.view(5000)
    assert pinned.size == 1000
    assert pinned.view(4000).size == 4000 and calls == [1000, 5000, 4000]
    assert pinned.view(4500).size == 4500 and len(calls) == 4   # grows by at least a quarter: 5000 now
    assert pinned.view(5000).size == 5000 and len(calls) == 4
