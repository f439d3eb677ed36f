"""Reliability figures: helpers shared by ``test/reliability`` and a report of what they measured.

The reliability tests (bad input, overload, faults, parameters under load, soak, shutdown, security)
each record the figures they measured with :func:`record` into ``.tmp/reliability/<scenario>.json``
(``DPT_RELIABILITY_DIR`` overrides the folder). This script prints them as a Markdown table for the
README; ``--run`` runs the test suite first::

    python -m dpt_ros.tools.bench_reliability --run      # runs test/reliability (~5 min on 2 cores)
    python -m dpt_ros.tools.bench_reliability            # table from the last run

Environment knobs of the long scenarios: ``DPT_SOAK_FRAMES`` (default 10000),
``DPT_OVERLOAD_SECONDS`` (default 20), ``DPT_SHUTDOWN_RUNS`` (default 20).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Optional

from dpt_ros.ros.dds_env import localhost_only
from dpt_ros.tools import write_whole
from dpt_ros.tools.options import ToolParser

ROOT = Path(__file__).resolve().parents[2]

#: seconds a node may take to exit after SIGINT or SIGTERM, the shutdown tests' bound: ros2 launch sends SIGINT, then
#: SIGTERM 5 s later (its sigterm_timeout) and SIGKILL 5 s after that, so a node slower than this is signalled again
#: and warned about. A bound of behaviour, not of speed: the exits take under 1 s (README's reliability table: 0.38 to
#: 0.82 s), 0.08 to 0.77 s with two busy loops on a 2-core machine's cores too; the times are recorded, not asserted
SHUTDOWN_LIMIT_S = 5.0

#: ``--ros-args`` that make the node cheap on a 2-core CPU machine (random weights, 64 px network)
FAST_ROS_ARGS = ("-p", "depth.variant:=dpt_tiny", "-p", "depth.weights:=random", "-p", "input_size:=64",
                 "-p", "device:=cpu")


def figures_dir() -> Path:
    d = Path(os.environ.get("DPT_RELIABILITY_DIR", ROOT / ".tmp" / "reliability"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def record(scenario: str, **figures: Any) -> dict:
    """Print the figures of one scenario and merge them into ``<dir>/<scenario>.json``."""
    path = figures_dir() / f"{scenario}.json"
    data = {}
    if path.exists():
        try:
            data = json.loads(path.read_text())
        except ValueError:
            data = {}
    data.update(figures)
    data["recorded_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    write_whole(path, json.dumps(data, indent=2, sort_keys=True, default=str))
    print(f"[reliability:{scenario}] " + ", ".join(f"{k}={v}" for k, v in figures.items()), flush=True)
    return data


# ------------------------------------------------------------------ process resources (Linux /proc)
def rss_mb(pid: Optional[int] = None) -> float:
    """Resident set size in MiB (VmRSS) of ``pid`` (default: this process)."""
    with open(f"/proc/{pid or 'self'}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError("VmRSS not found")


def num_threads(pid: Optional[int] = None) -> int:
    """OS threads of the process (Python and native: DDS, torch, OpenMP)."""
    return len(os.listdir(f"/proc/{pid or 'self'}/task"))


def num_fds(pid: Optional[int] = None) -> int:
    """Open file descriptors of the process (files, sockets, pipes)."""
    return len(os.listdir(f"/proc/{pid or 'self'}/fd"))


# ------------------------------------------------------------------ the node as a subprocess
def node_env(domain: int, **extra: str) -> dict:
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain), **localhost_only(), PYTHONUNBUFFERED="1", OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def start_node(domain: int, *ros_args: str, name: str = "dpt_node", env: Optional[dict] = None,
               cwd: Optional[os.PathLike] = None, new_session: bool = False,
               python_code: Optional[str] = None) -> subprocess.Popen:
    """``python -m dpt_ros.ros.node --ros-args -r __node:=<name> <ros_args>`` (what ``ros2 run`` does),
    or ``python -c <python_code> --ros-args ...`` to wrap ``main``; stdout+stderr merged, text."""
    head = [sys.executable, "-c", python_code] if python_code else [sys.executable, "-m", "dpt_ros.ros.node"]
    cmd = [*head, "--ros-args", "-r", f"__node:={name}", *ros_args]
    return subprocess.Popen(cmd, cwd=cwd or ROOT, env=env or node_env(domain), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=new_session)


def stop_node(proc: subprocess.Popen, sig: int = signal.SIGINT, timeout: float = 10.0,
              group: bool = False) -> tuple[Optional[int], str, float]:
    """Send ``sig`` (to the process group with ``group``, as a terminal's Ctrl-C does); return
    (exit code or None if it had to be killed after ``timeout``, output, seconds until exit). With ``group`` the kill
    is the group's too (SIGKILL to each process in it): killing the leader alone left the processes it started (a
    launch file's nodes) running, holding the output pipe open, so that reading it to its end waited for them.

    With a :class:`LineReader` on ``proc``, the output is the reader's (all of it, also what it read before): the
    reader alone reads the pipe, as a communicate() beside it would take part of the output and each would miss
    what the other read."""
    t0 = time.monotonic()
    if proc.poll() is None:
        if group:
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)
    reader = getattr(proc, "line_reader", None)
    if reader is not None:
        try:
            code = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            _kill(proc, group)
            proc.wait()
            code = None
        seconds = time.monotonic() - t0
        return code, reader.join(), seconds
    try:
        out, _ = proc.communicate(timeout=timeout)
        code = proc.returncode
    except subprocess.TimeoutExpired:
        _kill(proc, group)
        out, _ = proc.communicate()
        code = None
    return code, out, time.monotonic() - t0


def _kill(proc: subprocess.Popen, group: bool) -> None:
    """SIGKILL to ``proc``, or with ``group`` to its process group (its pid: started with ``start_new_session``)."""
    if not group:
        proc.kill()
        return
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:   # (the group is gone: its last process ended since the timeout)
        pass


class LineReader:
    """Reads a subprocess's output in a thread, so tests can wait for a line without blocking, and so the process never
    blocks in a write to a full pipe (64 KiB that nobody reads) while its parent waits for something else. The reader
    of ``proc.stdout`` sets itself as ``proc.line_reader``, so that :func:`stop_node` leaves the pipe to it;
    ``stream``: another pipe of ``proc``'s to read instead (its stderr, where it has two). ``keep``: at most this many
    characters are kept, the output's last whole lines (a long run's log: what an error message quotes), the earlier
    lines dropped as more come and counted in ``dropped``; by default all of it."""

    def __init__(self, proc: subprocess.Popen, keep: Optional[int] = None, stream: Any = None) -> None:
        self.lines: list[str] = []
        self.dropped = 0
        self._keep, self._size = keep, 0
        self._pipe = proc.stdout if stream is None else stream
        if self._pipe is proc.stdout:
            proc.line_reader = self
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        with self._pipe as pipe:   # closed at its end (before, left open: a leaked fd, a ResourceWarning)
            for line in pipe:
                self.lines.append(line)
                if self._keep is not None:
                    self._size += len(line)
                    if self._size > self._keep:
                        self._drop()

    def _drop(self) -> None:
        # down to half of keep at once, so that each line is copied a bounded number of times (a whole new list, so
        # that text() in another thread joins one list or the other, never one changing under it)
        n = 0
        while n < len(self.lines) - 1 and self._size > self._keep // 2:
            self._size -= len(self.lines[n])
            n += 1
        self.lines, self.dropped = self.lines[n:], self.dropped + n

    def text(self) -> str:
        """What was read (kept); where earlier lines were dropped (``keep``), a first line says how many."""
        dropped, lines = self.dropped, self.lines
        return (f"[{dropped} earlier lines not kept]\n" if dropped else "") + "".join(lines)

    def join(self, timeout: float = 10.0) -> str:
        self._thread.join(timeout)
        return self.text()


# ------------------------------------------------------------------ report
_ORDER = ("input", "overload", "faults", "params", "soak", "shutdown", "security")


def table(folder: Optional[Path] = None) -> str:
    """The recorded figures as a Markdown table (scenario | figure | value)."""
    folder = folder or figures_dir()
    rows = []
    files = sorted(folder.glob("*.json"), key=lambda p: (_ORDER.index(p.stem) if p.stem in _ORDER else 99, p.stem))
    for path in files:
        data = json.loads(path.read_text())
        for key in sorted(data):
            if key == "recorded_utc":
                continue
            value = data[key]
            if isinstance(value, float):
                value = f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
            rows.append(f"| {path.stem} | {key} | {value} |")
    if not rows:
        return "(no figures recorded yet: run with --run)"
    return "\n".join(["| scenario | figure | value |", "|---|---|---|", *rows])


def main(argv=None) -> int:
    ap = ToolParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", action="store_true", help="run test/reliability first (about 5 minutes)")
    ap.add_argument("-k", default="", help="with --run: pytest -k expression to run a subset")
    args = ap.parse_args(argv)
    if args.k and not args.run:   # (was taken and ignored: the table of the last run came, no test ran)
        ap.error("-k selects the scenarios --run runs; give --run too (without it no test runs: the table of the "
                 "last run is printed)")
    rc = 0
    if args.run:
        cmd = [sys.executable, "-m", "pytest", str(ROOT / "test" / "reliability"), "-q", "-s"]
        if args.k:
            cmd += ["-k", args.k]
        t0 = time.monotonic()
        rc = subprocess.call(cmd, cwd=ROOT)
        print(f"test/reliability finished with exit code {rc} in {time.monotonic() - t0:.0f} s")
    print(table())
    return rc   # --run: pytest's exit code, so that failed scenarios are not reported as success


if __name__ == "__main__":
    from dpt_ros.ros.console import tool_exit, tool_streams

    tool_streams()   # (a closed or full stderr, stdout: see there)
    tool_exit(main())
