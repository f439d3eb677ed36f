"""Ctrl-C (SIGINT) in the middle of a benchmark run from the command line: one line and exit status 130, as the
demo, predict and calibrate_depth end, not a KeyboardInterrupt traceback (and, for the ROS benchmarks, their node
and camera processes stopped by then)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Optional

import pytest

DOMAIN = 81   # test_tools_lifecycle_bench's too (88 is one of gpu_check's ROS_DOMAINS, off the tests' range)
pytest.importorskip("torch")

from dpt_ros.ros.testing import killed_at_end, wait_for  # noqa: E402
from dpt_ros.tools.bench_reliability import LineReader, stop_node  # noqa: E402


def _interrupted(argv: list[str], marker: str, timeout: float = 120.0) -> tuple[Optional[int], str]:
    """``python -m`` ``argv`` with SIGINT at its default action (a background job's is ignored), sent a SIGINT once
    ``marker`` appears in its output (the tool's main is running); its exit status (None: killed, as it still ran
    60 s after the SIGINT) and output."""
    env = dict(os.environ, ROS_DOMAIN_ID=str(DOMAIN), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", *argv], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    reader = LineReader(proc)   # (its output read as it comes, by stop_node too: a full pipe would block the tool)
    with killed_at_end(proc):
        wait_for(lambda: marker in reader.text() or proc.poll() is not None, timeout, what=f"{marker!r} in its output")
        time.sleep(1.0)   # (into the run: whatever it is doing then)
        assert proc.poll() is None, "the run ended before the SIGINT: make it longer\n" + reader.text()[-3000:]
        code, out, _ = stop_node(proc, signal.SIGINT, timeout=60)
    return code, out


@pytest.mark.parametrize("tool, args, marker", [
    ("bench_model", ["--variants", "dpt_tiny", "--no-hf", "--sizes", "64x64", "--iters", "100000"], "# {"),
    ("bench_e2e", ["--variant", "dpt_tiny", "--input-size", "64", "--rate", "5", "--duration", "600",
                   "--domain", str(DOMAIN)], "note: random weights"),
    ("bench_lifecycle", ["--variant", "dpt_tiny", "--input-size", "64", "--cycles", "100000",
                         "--domain", str(DOMAIN)], "configure_ms"),   # (its first cycle done)
])
def test_ctrl_c_midway_is_one_line_and_130(tool, args, marker):
    """Was: a KeyboardInterrupt traceback from wherever the run was (a sleep, a forward pass, gc.collect)."""
    rc, out = _interrupted([f"dpt_ros.tools.{tool}", *args], marker)
    # (130, or now and then the process ends by SIGINT after the line: CPython's exit for a KeyboardInterrupt it
    # marked unhandled on its way, seen here twice in eight runs; a shell reports both as 130)
    assert rc in (130, -signal.SIGINT) and "Traceback" not in out, (rc, out[-3000:])
    assert out.rstrip().splitlines()[-1] == f"{tool}: interrupted (Ctrl-C) before the run finished", out[-3000:]
