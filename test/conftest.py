"""Fixtures for every test directory.

A test module that sets ``DOMAIN`` (and ``DOMAINS`` when it uses more than one) holds those ROS domains
while its tests run (:func:`dpt_ros.ros.dds_env.domain_lock`): a second test run on the same machine
(another checkout, a mutation run) waits for them instead of reading this run's topics.

PyTorch runs one OpenMP thread in the tests and in the nodes and tools they start (which inherit the environment)
unless OMP_NUM_THREADS is set already: CI's 2 cores are shared by the test process, a node's worker, its DDS threads
and node subprocesses, and OpenMP's spin-waiting threads made forward passes up to 10x slower under that contention
(a 64 px dpt_tiny forward: 42 ms on one thread, 600 ms on two; test/ros/test_ros_node_topics.py took 298-349 s
instead of 101-107 s). Set here, before anything imports torch (its OpenMP reads it once). Tests of thread counts
set the counts they need themselves."""
import contextlib
import os
import sys

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")

from dpt_ros.ros.dds_env import domain_lock  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def _hold_ros_domains(request):
    domains = getattr(request.module, "DOMAINS", None)
    if domains is None:
        domains = (request.module.DOMAIN,) if hasattr(request.module, "DOMAIN") else ()
    if not domains:
        yield
        return

    def notice(text: str) -> None:   # shown even while pytest captures output: the run is waiting
        capture = request.config.pluginmanager.getplugin("capturemanager")   # None under -p no:capture
        with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
            print(f"\n{request.module.__name__}: {text}", file=sys.stderr, flush=True)

    with domain_lock(domains, notice=notice):
        yield


@pytest.fixture
def usage_error(capsys):
    """``usage_error(call, argv, why)``: ``call(argv)`` (a tool's ``main`` or ``parse_args``) ends as argparse's usage
    error, SystemExit with exit status 2, with ``why`` in what it wrote on stderr; returns what it wrote (capsys's
    ``out`` and ``err``) for the test's other checks."""
    def refused(call, argv: list, why: str = ""):
        with pytest.raises(SystemExit) as info:
            call(argv)
        captured = capsys.readouterr()
        assert info.value.code == 2 and why in captured.err, (argv, captured.err)
        return captured

    return refused


@pytest.fixture
def redirected():
    """``redirected(argv, redirection, env=None)``: ``argv`` run with a shell redirection of its standard streams
    (``2>&-``: stderr closed, as some service managers start a process; ``2>/dev/full``: stderr on a full disk),
    from the working folder; its (exit status, stdout)."""
    import shlex
    import subprocess

    def run(argv: list, redirection: str, env=None) -> tuple:
        done = subprocess.run(["bash", "-c", f"exec {shlex.join(map(str, argv))} {redirection}"], env=env,
                              stdout=subprocess.PIPE, text=True, timeout=120)
        return done.returncode, done.stdout

    return run


@pytest.fixture
def file_size_limit():
    """``with file_size_limit(size):`` this process may write files only up to ``size`` bytes (RLIMIT_FSIZE, its soft
    limit, set back after): a write beyond fails for real, part of it written, with EFBIG 'File too large' (Python
    ignores SIGXFSZ, which would end the process), as a write fails on a disk that fills up meanwhile. Nothing else
    may write a file meanwhile (pytest's own captures write to memory under capsys)."""
    import resource
    import signal

    assert signal.getsignal(signal.SIGXFSZ) == signal.SIG_IGN

    @contextlib.contextmanager
    def limited(size: int):
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, hard))
        try:
            yield
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))

    return limited
