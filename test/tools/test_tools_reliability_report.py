"""bench_reliability: the report tool's exit code follows the test run it started (a real pytest run); its helpers that
stop a node subprocess and read its output."""
import os
import signal
import subprocess
import sys

import pytest

from dpt_ros.tools import bench_reliability


def test_run_returns_pytest_exit_code(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("DPT_RELIABILITY_DIR", str(tmp_path))
    # a -k that selects nothing: pytest collects test/reliability, runs nothing and exits 5
    assert bench_reliability.main(["--run", "-k", "no_test_is_called_like_this"]) == 5
    assert "finished with exit code 5" in capsys.readouterr().out
    assert bench_reliability.main([]) == 0                            # table only


def test_k_without_run_is_a_usage_error(monkeypatch, tmp_path, usage_error):
    """`bench_reliability -k soak` ran no test and printed the last run's table, exit 0, as if -k had selected
    something: -k only narrows what --run runs."""
    monkeypatch.setenv("DPT_RELIABILITY_DIR", str(tmp_path))
    captured = usage_error(bench_reliability.main, ["-k", "soak"],
                           "error: -k selects the scenarios --run runs; give --run too (without it no test runs: the "
                           "table of the last run is printed)")
    assert captured.out == ""


# prints 20000 lines, says it is ready, and on Ctrl-C prints 20000 more and exits 0
CHATTY = """
import signal, sys, time
signal.signal(signal.SIGINT, signal.default_int_handler)   # (a background suite inherits SIGINT ignored)
for i in range(20000):
    print(f"before {i}")
print("ready", flush=True)
try:
    while True:
        time.sleep(0.01)
except KeyboardInterrupt:
    for i in range(20000):
        print(f"after {i}")
"""


def test_stop_node_leaves_the_pipe_to_a_line_reader_so_neither_misses_lines():
    """A test with a LineReader on the node that stopped it with stop_node had two readers of one pipe: the reader's
    thread and stop_node's communicate(), each taking part of the output (here: stop_node's output without the 20000
    lines before the signal, the reader's text without most of the 20000 after it), so a line a test asserted present,
    or a Traceback it asserted absent, could be in the other's part. stop_node now waits for the exit and returns the
    reader's text: both hold all 40001 lines."""
    from dpt_ros.ros.testing import wait_for

    proc = subprocess.Popen([sys.executable, "-c", CHATTY], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    reader = bench_reliability.LineReader(proc)
    try:
        wait_for(lambda: "ready" in reader.text() or proc.poll() is not None, timeout=60, what="ready")
        code, out, _ = bench_reliability.stop_node(proc, signal.SIGINT, timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    want = [f"before {i}" for i in range(20000)] + ["ready"] + [f"after {i}" for i in range(20000)]
    assert code == 0, out[-2000:]
    assert out.splitlines() == want, (len(out.splitlines()), out.splitlines()[:1])
    text = reader.join()
    assert text.splitlines() == want, (len(text.splitlines()), text.splitlines()[-1:])


def test_a_line_reader_closes_the_pipe_it_read_to_its_end():
    """stop_node with a LineReader (which reads the pipe instead of communicate()) left proc.stdout open: each such test
    leaked the pipe's file descriptor until the garbage collector closed it, with a ResourceWarning. The reader now
    closes it once it has read the pipe to its end; what it read is kept."""
    proc = subprocess.Popen([sys.executable, "-c", "print('one'); print('two')"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    reader = bench_reliability.LineReader(proc)
    proc.wait(60)   # (exited by itself: stop_node sends no signal)
    code, out, _ = bench_reliability.stop_node(proc, signal.SIGINT, timeout=60)
    assert (code, out, reader.text()) == (0, "one\ntwo\n", "one\ntwo\n")
    assert proc.stdout.closed


def test_a_line_reader_with_keep_drains_a_long_output_and_keeps_its_last_lines():
    """A child that writes far more than a pipe holds (64 KiB) ends while its reader keeps only the last ``keep``
    characters (bench_e2e's node log: a bounded buffer over a long run), the earlier lines counted, not kept."""
    proc = subprocess.Popen([sys.executable, "-c", "for i in range(20000): print(f'line {i:05d}')"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    reader = bench_reliability.LineReader(proc, keep=4096)
    try:
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = reader.join()
    kept = reader.lines
    assert 0 < sum(map(len, kept)) <= 4096 and reader.dropped + len(kept) == 20000, (reader.dropped, len(kept))
    assert kept == [f"line {i:05d}\n" for i in range(reader.dropped, 20000)]
    assert text == f"[{reader.dropped} earlier lines not kept]\n" + "".join(kept)


def test_line_readers_of_both_pipes_let_a_child_fill_stderr_before_it_prints_on_stdout():
    """A child with stdout and stderr on two pipes (the demo's Ctrl-C test) that writes more than a pipe holds to stderr
    before its line on stdout: with a reader of stdout alone it blocks in the stderr write and the line never comes; a
    second reader (``stream=proc.stderr``) drains stderr, and the line comes. Only the stdout reader is
    ``proc.line_reader``."""
    from dpt_ros.ros.testing import wait_for

    code = "import sys\nfor _ in range(2000): sys.stderr.write('e' * 99 + '\\n')\nprint('done')"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = bench_reliability.LineReader(proc), bench_reliability.LineReader(proc, stream=proc.stderr)
    try:
        wait_for(lambda: "done" in out.text() or proc.poll() is not None, timeout=60, what="the stdout line")
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert (out.join(), err.join()) == ("done\n", ("e" * 99 + "\n") * 2000)
    assert proc.line_reader is out and proc.stderr.closed


# a group leader that ignores SIGINT and starts a child that ignores it too (its output not on the leader's pipe), then
# prints the child's pid
STUBBORN_GROUP = """
import signal, subprocess, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)
child = subprocess.Popen([sys.executable, "-c", "import time\\nwhile True: time.sleep(1)"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print(child.pid, flush=True)
child.wait()
"""


def _running(pid: int) -> bool:
    """``pid`` is a process that runs (a zombie, killed and not yet reaped by its new parent, does not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("with_reader", [False, True], ids=["communicate", "line-reader"])
def test_stop_node_with_group_kills_the_whole_group_past_its_timeout(with_reader):
    """stop_node(group=True) sends the signal to the group, yet past the timeout it killed the leader alone: what the
    leader had started (a launch service's nodes) ran on, here a child that ignores SIGINT as its leader does. The
    kill is now the group's: the child is gone too."""
    from dpt_ros.ros.testing import wait_for

    proc = subprocess.Popen([sys.executable, "-c", STUBBORN_GROUP], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    child = int(proc.stdout.readline())
    if with_reader:
        bench_reliability.LineReader(proc)
    try:
        code, _, _ = bench_reliability.stop_node(proc, signal.SIGINT, timeout=1, group=True)
        assert code is None
        # (SIGKILL's delivery is not at once: a while, 5 s at most, not a timed assertion)
        wait_for(lambda: not _running(child), timeout=5, what=f"the group's child {child} gone")
    finally:
        for pid in (proc.pid, child):
            if _running(pid):
                os.kill(pid, signal.SIGKILL)
        proc.wait()
