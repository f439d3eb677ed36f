"""One-shot GPU check: every GPU test of the repository, the GPU benchmarks, one JSON summary.

Run on a CUDA machine (no ROS needed) from the repository root::

    python -m dpt_ros.tools.gpu_check            # 6 minutes at most (--budget 360; 540 runs every step on an H200)
    OUT=/some/dir python -m dpt_ros.tools.gpu_check   # also writes $OUT/gpu_summary.json + logs

Steps, each under its own timeout inside an overall ``--budget``, the open issues' figures first:

1. environment (GPU, driver-visible memory, torch / CuPy / timm / transformers versions);
2. ``pytest -m gpu test/`` (all areas; files that cannot be imported here, e.g. ROS tests without
   rclpy, are reported as collection errors and do not stop the run);
3. ``python -m dpt_ros.tools.bench_pipeline --device cuda --json`` (issue #6's target);
4. when rclpy is importable (ROS wheels brought along) and CUDA is there:
   ``python -m dpt_ros.tools.bench_e2e`` with DPT-Hybrid fp16 + CUDA graphs, 640x480 at 30 Hz, depth + cloud
   (issue #5's targets; once per ``--e2e-publication-modes`` entry, e.g. ``default,ASYNCHRONOUS`` to compare Fast
   DDS modes, each on a ROS domain of its own: the ROS steps take free ones, :data:`ROS_DOMAINS`, through the test
   modules' domain locks, held until the run ends);
5. then ``python -m dpt_ros.tools.bench_node_stages`` (same model, in-process stages, subscribers in another
   process), frames back to back, then paced at 30 Hz, then back to back with ``depth.encoding=16UC1`` (half
   the depth bytes), each with a cProfile of the top ``--node-stages-profile`` functions (log:
   bench_node_stages.log);
6. ``python -m dpt_ros.tools.bench_model --device cuda --cuda-graphs --json FILE`` (issue #3, resolved: in what
   the budget leaves; on a CPU machine only with ``--rehearse --quick``: dpt_tiny smoke run);
7. then ``python -m dpt_ros.tools.bench_publish`` (message objects vs serialized CDR on this machine's CPU);
8. then ``python -m dpt_ros.tools.bench_lifecycle`` (DPT-Hybrid fp16: the managed node's transition times, and the
   GPU memory configure takes and cleanup gives back).

Each step runs in a process group of its own; one that overruns its time gets SIGINT, then SIGKILL, as a group,
so no node or camera process of it outlives it.

The summary ends with ``targets``: each H200 target of the issues (#6: 1080p decode + pre + post + cloud <= 1.0 ms;
#5 per e2e run: 30 Hz processed, p99 <= 25 ms on every output, node overhead <= 40 %) with its value and
``met`` (None where the step did not run), and the node-stages runs' overhead beside them.

Without CUDA it runs nothing: it says at once why there is no CUDA device (as ``dpt_ros.cuda_missing`` says it) and
what to do, writes the summary with ``skipped`` and ``ok`` null, and ends with exit status 3 (:data:`NO_CUDA`). It
ran every step there (the GPU tests skipping, the benchmarks measuring the CPU) in slices of the budget, each cut
short with ``--budget 60``, and said "ok": false, exit 1, after half a minute. With ``--rehearse`` it runs every step
on a CPU machine, the ROS ones small (dpt_tiny on the CPU), so that a wrong command line or a broken JSON hand-off
shows before the one GPU run. Exit status 0 when no step failed, 1 when one did (or ``$OUT`` could not be written),
2 for a usage error, 3 without CUDA.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import json
import math
import os
import pathlib
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from typing import Any, Callable

from dpt_ros.tools import (PARTIAL_SUFFIX_PATTERN, create_locked, is_temporary, name_max, output_folder_error,
                           partial_suffix, refuse_kernel_folder, remove_unheld, temporary_name, write_whole)
from dpt_ros.tools.options import E2E_WINDOW_MIN_S, amount, count, number, ToolParser

ROOT = pathlib.Path(__file__).resolve().parents[2]

#: the ROS domains the ROS steps may take, the first free ones in this order (87, 88, 89: the benchmarks' own
#: defaults; then 20-39, which no test module uses), through the test modules' domain locks (dds_env.free_domains):
#: a test run or a second gpu_check (another checkout) holding some of them is not joined on its domains
ROS_DOMAINS = (87, 88, 89, *range(20, 40))

#: exit status of a run on a machine without CUDA and without ``--rehearse``: nothing was run (neither passed nor
#: failed; 0 would read as a GPU checked, 1 as a step failed, 2 as a usage error)
NO_CUDA = 3


def _env() -> dict[str, Any]:
    info: dict[str, Any] = {"python": sys.version.split()[0]}
    for mod in ("torch", "cupy", "timm", "transformers", "cv2", "numpy"):
        try:
            info[mod] = importlib.import_module(mod).__version__
        except Exception as exc:  # noqa: BLE001 - report whatever is wrong
            info[mod] = f"unavailable: {type(exc).__name__}: {exc}"[:200]
    try:
        import torch  # noqa: PLC0415

        info["cuda_available"] = torch.cuda.is_available()
        if torch.cuda.is_available():
            props = torch.cuda.get_device_properties(0)
            info["gpu"] = props.name
            info["gpu_memory_gib"] = round(props.total_memory / 2**30, 1)
            info["cuda_runtime"] = torch.version.cuda
    except Exception as exc:  # noqa: BLE001
        info["cuda_available"] = False
        info["cuda_error"] = str(exc)[:200]
    return info


#: seconds a step may take past its timeout: SIGINT to its process group, then SIGKILL, up to 15 s each
GRACE_S = 30.0
#: the pytest step's share of what the budget leaves (the budget less GRACE_S), and the most seconds it gets
PYTEST_SHARE, PYTEST_MOST_S = 0.45, 260.0


def _pytest_threads() -> dict[str, str]:
    """The pytest step's OMP_NUM_THREADS: the one gpu_check was given, else one per CPU of this machine. The test suite
    runs PyTorch on one thread unless OMP_NUM_THREADS is set (test/conftest.py: CI's 2 busy cores), which on the GPU
    machine (16 cores) would slow the CPU side of its GPU tests (CPU references, full-size parity) in a step whose
    time is short already."""
    return {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS") or str(os.cpu_count() or 1)}


def _run(cmd: list[str], timeout: float, log: Callable[[str], None] | None,
         env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``cmd`` in a process group of its own. Past ``timeout`` the whole group gets SIGINT (a benchmark then
    stops the node and camera processes it started), then SIGKILL 15 s later (at most ``GRACE_S`` in all). When
    the step has ended, however it ended, whatever is left of its group is killed: nothing it started outlives it
    (a node left running would hold GPU memory and publish into the next step's measurement). ``log``: given the
    step's command line and output, to write (:meth:`_OutFolder.log`); the output returned of a step that timed out
    has the KeyboardInterrupt tracebacks that SIGINT caused cut to a line each (:func:`_without_interrupt_tracebacks`),
    the log all of it. ``env``: variables set for the step, over gpu_check's own environment."""
    t0 = time.monotonic()
    env = dict(os.environ, **(env or {}), PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    p = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         errors="replace", start_new_session=True, preexec_fn=_sigint_default)
    try:
        out, err = p.communicate(timeout=max(timeout, 1))
        rc, timed_out = p.returncode, False
    except subprocess.TimeoutExpired:
        rc, timed_out, out, err = None, True, "", ""
        for sig in (signal.SIGINT, signal.SIGKILL):
            _signal_group(p.pid, sig)
            try:
                out, err = p.communicate(timeout=15)
                break
            except subprocess.TimeoutExpired:
                continue
        else:
            err = "(gpu_check: output lost: a process of this step kept its pipes open after SIGKILL)"
    _signal_group(p.pid, signal.SIGKILL)   # processes of the step still running after it ended
    if log is not None:
        log(f"$ {' '.join(cmd)}\n--- stdout\n{out}\n--- stderr\n{err}\n")
    if timed_out:   # (the summary's tails: the step's own last output, not the traceback our SIGINT caused; the log
        # keeps it whole)
        out, err = (_without_interrupt_tracebacks(text, logged=log is not None) for text in (out, err))
    return {"cmd": " ".join(cmd), "rc": rc, "timed_out": timed_out, "seconds": round(time.monotonic() - t0, 1),
            "limit_s": round(max(timeout, 1), 1),   # (what the budget left it: a step timed out short of its need)
            "stdout": out, "stderr": err}


def _without_interrupt_tracebacks(text: str, logged: bool = False) -> str:
    """``text`` (a step's output) with each Python traceback that ends in a bare ``KeyboardInterrupt`` (what the
    SIGINT of its timeout makes a process print where it was stopped outside a handler: importing torch, in a
    child process of the step) replaced by one line saying where it was stopped, so that a summary's tail shows the
    step's own last output. Another exception's traceback, one chained before it included, is kept. ``logged``: the
    whole output is in the step's log ($OUT), which the line then says."""
    lines = text.splitlines(keepends=True)
    kept: list[str] = []
    i = 0
    while i < len(lines):
        if lines[i].rstrip() == "Traceback (most recent call last):":
            j = i + 1
            while j < len(lines) and lines[j].startswith(" "):   # (its frames: indented)
                j += 1
            if j < len(lines) and lines[j].rstrip() == "KeyboardInterrupt":
                # (where: its innermost frame of a file, not of the import machinery's frozen modules)
                frames = [ln.strip() for ln in lines[i + 1:j] if ln.lstrip().startswith("File ")]
                where = [f for f in frames if not f.startswith('File "<frozen ')] or frames
                kept.append(f"(gpu_check: stopped past its time (SIGINT){' in ' + where[-1] if where else ''}; its "
                            f"KeyboardInterrupt traceback of {j + 1 - i} lines left out"
                            f"{', see the step log in $OUT' if logged else ''})\n")
                i = j + 1
                continue
        kept.append(lines[i])
        i += 1
    return "".join(kept)


def _sigint_default() -> None:
    """In a step's process before it starts: SIGINT's default action. A process started with SIGINT ignored (what a
    shell does to a command it runs in the background with ``&``) passes that on, and a Python step then never gets
    the KeyboardInterrupt that lets it print what it measured and stop its node and camera processes: the SIGKILL
    15 s later ends it with nothing."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):   # all gone already
        pass


def _last_json(text: str) -> Any:
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                continue
    return None


def _read_result(path: pathlib.Path) -> dict[str, Any]:
    """``{"result": ...}`` with a step's ``--json`` file (None where it wrote none), and ``result_error`` where the file
    cannot be read (a step killed while it wrote it): the summary says so, and the steps after it still run."""
    if not path.exists():
        return {"result": None}
    try:
        return {"result": json.loads(path.read_text())}
    except (ValueError, OSError) as e:   # (JSONDecodeError and UnicodeDecodeError are ValueErrors)
        return {"result": None, "result_error": f"{path.name} unreadable: {type(e).__name__}: {e}"[:300]}


def pytest_step(paths: list[str], timeout: float, junit: pathlib.Path, log: Callable[[str], None] | None,
                env: dict[str, str] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The pytest step: ``pytest -m gpu`` on ``paths`` (:func:`_run`'s result), and its junit report's counts
    (:func:`_junit_summary`). pytest writes the report itself, with a truncating open() as it ends, so it is given
    ``<junit><partial suffix>`` (``gpu_pytest.xml.partial-<pid>.tmp``: :func:`dpt_ros.tools.partial_suffix`) and the
    file is renamed to ``junit`` only once it reads whole: a report cut short (pytest killed at the end of the step's
    grace, a full disk) stays under the partial name, which ``junit_error`` names, never under ``junit`` where it
    would be taken for a finished one. An earlier run's ``junit`` is removed first (a step that writes none must not
    show its counts). The partial file is made and locked here before pytest writes into it, and held until it is
    renamed (:func:`dpt_ros.tools.create_locked`, as write_whole's temporaries): one an earlier run left (killed
    before its rename, or cut short), of any pid, is removed here and named on stderr
    (:func:`dpt_ros.tools.remove_unheld`), never one a running gpu_check holds; only this pid's was, and the others
    stayed for good."""
    junit.unlink(missing_ok=True)
    partial = junit.with_name(temporary_name("", junit.name, partial_suffix(), name_max(junit.parent)))
    remove_unheld(junit.parent, lambda name: is_temporary(name, junit.name, "", PARTIAL_SUFFIX_PATTERN),
                  said=lambda stale: print(f"gpu_check: removed {stale}, a pytest report an earlier run left under its "
                                           f"temporary name (killed before it was renamed to {junit.name}, or cut "
                                           "short)", file=sys.stderr, flush=True))
    try:
        held: int | None = create_locked(partial)   # (empty: a pytest that writes no report leaves it so)
    except OSError:   # (a folder it may not write in: pytest's own write of the report fails, as before)
        held = None
    try:
        try:
            r = _run([sys.executable, "-m", "pytest", "-m", "gpu", *paths, "-q", "-p", "no:cacheprovider",
                      "--continue-on-collection-errors", f"--junitxml={partial}", "-o", "junit_family=xunit1"],
                     timeout, log, env)
        finally:   # (also where the step raised: a Ctrl-C)
            with contextlib.suppress(OSError):
                if held is not None and os.path.getsize(partial) == 0:   # no report written
                    partial.unlink()
        report = _junit_summary(partial)
        if partial.exists() and "junit_error" not in report:
            os.replace(partial, junit)
    finally:
        if held is not None:
            os.close(held)
    return r, report


def _junit_summary(path: pathlib.Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:   # pytest killed while it wrote the report: the counts are lost, the run goes on
        return {"junit_error": f"{path.name} unreadable ({e}): pytest was killed (or its write failed) while writing "
                               f"it; see the tail"}
    suites = [root] if root.tag == "testsuite" else list(root)
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    failed: list[dict[str, str]] = []
    for s in suites:
        for k in counts:
            counts[k] += int(s.get(k, 0))
        for case in s.iter("testcase"):
            for tag in ("failure", "error"):
                bad = case.find(tag)
                if bad is not None:
                    text = (bad.text or "").strip()
                    no_ros = tag == "error" and any(f"No module named '{m}" in text for m in _ROS_MODULES)
                    failed.append({"test": f"{case.get('classname')}::{case.get('name')}", "kind": tag,
                                   "no_ros": no_ros,
                                   "message": ((bad.get("message") or "") + " | " + text[-400:])[:600]})
    counts["passed"] = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    counts["errors_without_ros"] = sum(f["no_ros"] for f in failed)
    return {**counts, "failed": failed[:40]}


# modules whose absence means "this test file needs ROS" (the GPU machine has no ROS)
_ROS_MODULES = ("rclpy", "sensor_msgs", "std_msgs", "builtin_interfaces", "rcl_interfaces", "diagnostic_msgs",
                "geometry_msgs", "launch", "ament_index_python", "vision_msgs")


def _target(value: Any, limit: float, at_most: bool = True) -> dict[str, Any]:
    """{"value", "target", "met"}; ``met`` is None when the figure is missing (the step did not run)."""
    ok = isinstance(value, (int, float)) and value == value
    return {"value": value if ok else None, "target": ("<= " if at_most else ">= ") + f"{limit:g}",
            "met": (value <= limit if at_most else value >= limit) if ok else None}


def issue_targets(summary: dict[str, Any]) -> dict[str, Any]:
    """The issues' H200 targets read from the steps' results: #6 1080p decode + pre + post + cloud <= 1.0 ms
    (bench_pipeline; from the message's pageable bytes, and from a frame in pinned memory); #5 per bench_e2e run (publication mode): 30 Hz processed, p99 <= 25 ms on every output,
    node overhead <= 40 % (with the node-stages runs beside it, for the record, not as targets)."""
    out: dict[str, Any] = {}
    cuda = ((summary.get("bench_pipeline") or {}).get("result") or {}).get("cuda") or {}
    ours = (cuda.get("1920x1080") or {}).get("ours_ms") or {}
    out["issue6_1080p_decode_pre_post_cloud_ms"] = _target(ours.get("target_total"), 1.0)
    # the same stages from a frame already in page-locked memory: the issue's decomposition of its 1.0 ms (its
    # "pinned copy 0.17 ms"), without the host copy out of rclpy's pageable message buffer
    out["issue6_1080p_frame_in_pinned_memory_ms"] = _target(ours.get("target_total_frame_in_pinned_memory"), 1.0)
    e2e = summary.get("bench_e2e") or {}
    # a bench_e2e that did not run is the issue's targets missing (met: None), never their absence from the verdict
    # (one run has no "runs" level: named by the publication mode it ran, which need not be the default)
    runs = e2e.get("runs") or ({_publication_mode(e2e): e2e} if "result" in e2e else {"default": {}})
    for mode, run in runs.items():
        r = (run or {}).get("result") or {}
        outputs = (r.get("outputs") or {}).values()
        p99 = [o.get("latency_p99_ms") for o in outputs]
        worst = _target(max(p99) if p99 and all(isinstance(v, (int, float)) and v == v for v in p99) else None, 25.0)
        if p99 and worst["value"] is None:   # an output without a latency figure received nothing: not met
            worst.update(met=False, note="an output has no latency figure (nothing received)")
        # "30 Hz sustained with depth + cloud": what the subscriber received of every output, not only what the
        # node counted as processed (a frame whose cloud was skipped is processed)
        rates = [o.get("rate_hz") for o in outputs]
        out[f"issue5_e2e_{mode.lower()}"] = entry = {
            "processed_hz": _target(r.get("node_processed_rate_hz"), 29.5, at_most=False),
            "slowest_output_hz": _target(min(rates) if rates and all(isinstance(v, (int, float)) for v in rates)
                                         else None, 29.5, at_most=False),
            "worst_output_p99_ms": worst,
            "node_overhead_fraction": _target(r.get("node_overhead_fraction"), 0.40),
        }
        if not r:
            entry["note"] = f"bench_e2e gave no result: {e2e.get('skipped') or 'see its rc and log'}"
    stages = (summary.get("bench_node_stages") or {}).get("result") or {}
    if stages.get("runs"):
        out["node_stages_overhead_fraction"] = {
            (f"{run['rate_hz']:g} Hz" if run.get("rate_hz") else "back to back")
            + "".join(f" {k}={v}" for k, v in (run.get("parameters") or {}).items()): run.get("node_overhead_fraction")
            for run in stages["runs"]}
    return out


def _publication_mode(run: dict[str, Any]) -> str:
    """The --e2e-publication-modes entry a bench_e2e run was made with, from its result ("default" where the rmw's
    own mode was used, or the result is missing)."""
    mode = ((run or {}).get("result") or {}).get("publication_mode")
    return mode if mode in ("SYNCHRONOUS", "ASYNCHRONOUS") else "default"


def test_path(text: str) -> str:
    """--tests (argparse's type): a test folder or file that exists in the checkout (a pytest node id, file::test, by
    its file); a missing one was pytest's 'file or directory not found' (exit status 4) in the summary after the run,
    whose GPU tests then never ran."""
    path = text.split("::", 1)[0]
    if not (ROOT / path).exists():   # (where the pytest step runs: a relative path is the checkout's)
        raise argparse.ArgumentTypeError(f"{path}: no such test folder or file in {ROOT}, where the pytest step runs; "
                                         f"give one that exists, e.g. test or test/ros")
    return text


def _test_paths(tests: str) -> list[str]:
    """pytest's paths for ``tests``: a folder's sub-folders with ``ros`` first (the ROS node's GPU tests had never run
    on a GPU: a step cut short by the budget should have run those), ``model`` last (its full-size models are the
    slowest GPU tests, and they passed on an H200 on 2026-12-04, while pipeline/ has kernels never run on a GPU),
    the rest in name order between; a file or a missing path as given. A relative path is the checkout's (:data:`ROOT`,
    where the pytest step runs), wherever gpu_check was started from (from another folder the default ``test`` was
    not found there and went to pytest as it was: its ros/ tests ran after pipeline/ and reliability/)."""
    base = ROOT / tests
    if not base.is_dir():
        return [tests]
    parts = sorted((p for p in base.iterdir() if p.name != "__pycache__" and (p.is_dir() or p.name.startswith("test_"))),
                   key=lambda p: (p.name != "ros", p.name == "model", p.name))
    return [str(pathlib.Path(tests) / p.name) for p in parts] or [tests]


def ros_domains(count: int, timeout: float, lock_dir: str | None = None) -> contextlib.AbstractContextManager:
    """The ROS steps' ``count`` domains, held while the context lasts: the first free ones of :data:`ROS_DOMAINS`
    by the test modules' locks (:func:`dpt_ros.ros.dds_env.free_domains`; ``lock_dir`` as its), a wait for them
    said on stderr as gpu_check's."""
    from dpt_ros.ros.dds_env import free_domains   # (no ROS imports: gpu_check runs without ROS)

    return free_domains(count, ROS_DOMAINS, timeout=timeout, lock_dir=lock_dir,
                        notice=lambda text: print(f"gpu_check: {text}", file=sys.stderr, flush=True))


def budget_seconds(text: str) -> float:
    """--budget (argparse's type): the run's seconds, finite and more than :data:`GRACE_S` (what each step is given is
    the budget's rest less that grace: a budget of no more left every step 1 s, each timed out)."""
    value = number(text, float)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{value:g} is no number of seconds: give more than {GRACE_S:g}, e.g. 360")
    if value <= GRACE_S:
        raise argparse.ArgumentTypeError(f"{value:g} s leaves the steps no time (each step is given the budget's "
                                         f"rest less {GRACE_S:g} s): give more than {GRACE_S:g}, e.g. 360")
    return value


def publication_modes(text: str) -> list[str]:
    """--e2e-publication-modes (argparse's type): comma-separated bench_e2e --publication-mode values
    (dds_env.PUBLICATION_MODE_CHOICES, which bench_e2e takes), each once; a wrong one was refused only by bench_e2e
    after the GPU tests (its run failed, the next mode's went on), a mode given twice ran twice and kept one result,
    and none (',') ended the run with a ValueError after the GPU tests."""
    from dpt_ros.ros.dds_env import PUBLICATION_MODE_CHOICES   # (no ROS imports: gpu_check runs without ROS)

    modes = [m for m in text.split(",") if m]
    choices = ", ".join(PUBLICATION_MODE_CHOICES)
    wrong = [m for m in modes if m not in PUBLICATION_MODE_CHOICES]
    twice = sorted({m for m in modes if modes.count(m) > 1})
    if wrong:
        raise argparse.ArgumentTypeError(f"{', '.join(map(repr, wrong))} {'is' if len(wrong) == 1 else 'are'} no "
                                         f"bench_e2e --publication-mode; give one or more of {choices}, separated by "
                                         f"commas")
    if twice:
        raise argparse.ArgumentTypeError(f"{', '.join(map(repr, twice))} given twice: each mode runs once")
    if not modes:
        raise argparse.ArgumentTypeError(f"no mode given; give one or more of {choices}, separated by commas (and "
                                         f"--e2e-seconds 0 to skip bench_e2e)")
    return modes


def _e2e_suffix(mode: str) -> str:
    """What bench_e2e's log and JSON of publication mode ``mode`` add to their names (``bench_e2e_asynchronous.log``;
    none for the default mode)."""
    return "" if mode == "default" else f"_{mode.lower()}"


def output_names() -> list[str]:
    """The files a run may write in ``$OUT``, of every step and publication mode: the summary, pytest's report, the
    steps' logs and their ``--json`` results."""
    from dpt_ros.ros.dds_env import PUBLICATION_MODE_CHOICES   # (no ROS imports: gpu_check runs without ROS)

    with_json = [*(f"bench_e2e{_e2e_suffix(m)}" for m in PUBLICATION_MODE_CHOICES), "bench_node_stages", "bench_model",
                 "bench_publish", "bench_lifecycle"]
    return ["gpu_summary.json", "gpu_pytest.xml", "gpu_pytest.log", "bench_pipeline.log",
            *(f"{step}.log" for step in with_json), *(f"{step}.json" for step in with_json)]


class _OutFolder:
    """``$OUT``, where the steps' logs and gpu_summary.json are written (nowhere without it). A write there that fails
    (a full disk: it was a traceback, the steps' figures lost) is said once on stderr, naming the file, the folder and
    what to do, and nothing more is written there: the steps go on, the summary comes on standard output, and the exit
    status is 1 (:attr:`error`)."""

    def __init__(self, folder: pathlib.Path | None) -> None:
        self.folder = folder
        self.error: str | None = None   # the write that failed, as said

    def clear_earlier_run(self) -> None:
        """Remove an earlier run's files (:func:`output_names`), before this run's first step: a log this run does not
        write (its step skipped, or a write into ``$OUT`` failed before it: nothing more is written there) was left as
        the earlier run's, and read as this run's beside its summary. Only regular files: a link there is the user's,
        written through as :func:`dpt_ros.tools.write_whole` writes (to ``/dev/full``, say, to try a full disk). One
        that cannot be removed is said as a failed write is."""
        for name in [] if self.folder is None else output_names():
            path = self.folder / name
            try:
                if path.is_file() and not path.is_symlink():
                    path.unlink()
            except FileNotFoundError:
                pass
            except OSError as e:
                self._failed(f"cannot remove {path}, an earlier run's: "
                             f"{output_folder_error(self.folder, e, option='OUT')}")
                return

    def log(self, name: str) -> Callable[[str], None] | None:
        """What writes step log ``name`` (:func:`_run`'s ``log``); None without ``$OUT``."""
        return None if self.folder is None else lambda text: self.write(name, text)

    def write(self, name: str, text: str) -> None:
        """``$OUT/name``, written beside it and renamed over it (:func:`dpt_ros.tools.write_whole`): a run killed
        while it writes one (the device tool's limit) or a write that fails (a full disk) leaves no file cut short
        under its name (gpu_summary.json: the last complete one; a step's log, written once the step has ended:
        none, or an earlier run's whole)."""
        if self.folder is None or self.error is not None:
            return
        path = self.folder / name
        try:
            write_whole(path, text)
        except OSError as e:
            self._failed(f"cannot write {path}: {output_folder_error(self.folder, e, option='OUT')}")

    def _failed(self, error: str) -> None:
        """``error`` (what could not be done in ``$OUT``, and why) said once: nothing more is written there."""
        self.error = error
        print(f"gpu_check: {self.error}; nothing more is written there, the summary comes on standard output only",
              file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    with contextlib.ExitStack() as held:   # (the ROS steps' domains, held to the end of the run)
        return _main(argv, held)


def _main(argv: list[str] | None, held: contextlib.ExitStack) -> int:
    from dpt_ros import PRECISIONS   # bench_model's --precision choices: the node's precision names

    # (every value is checked here, before the steps: a value a step refuses would be found after the GPU tests)
    ap = ToolParser(description="Run every GPU test and GPU benchmark; print one JSON summary.")
    ap.add_argument("--budget", type=budget_seconds, default=360.0,
                    help=f"overall seconds, more than {GRACE_S:g} (default 360)")
    ap.add_argument("--tests", default=None, type=test_path,   # (not checked when not given: 'test', as before)
                    help="test path passed to pytest, a folder or file that exists (default: test)")
    ap.add_argument("--quick", action="store_true",
                    help="small benchmarks (with --rehearse: for trying it on a CPU machine)")
    ap.add_argument("--no-model", action="store_true", help="skip bench_model")
    ap.add_argument("--no-pipeline-bench", action="store_true", help="skip bench_pipeline")
    ap.add_argument("--model-precisions", nargs="+", default=["fp16"], choices=PRECISIONS,
                    help="precisions for bench_model on CUDA (default fp16; any of %(choices)s)")
    ap.add_argument("--e2e-seconds", type=amount("window", "seconds", least=E2E_WINDOW_MIN_S, zero="skip bench_e2e",
                                                 note="bench_e2e's shortest --duration"), default=15.0,
                    help=f"bench_e2e window, at least {E2E_WINDOW_MIN_S:g} (0 = skip; default 15)")
    ap.add_argument("--node-stages-profile", type=count("functions", zero="skip bench_node_stages"), default=40,
                    help="with CUDA and rclpy: bench_node_stages on DPT-Hybrid fp16 + CUDA graphs with a cProfile "
                         "of the top N functions (0 = skip; default 40)")
    ap.add_argument("--rehearse", action="store_true",
                    help="without CUDA: run the ROS steps too (bench_e2e, bench_node_stages, bench_publish, "
                         "bench_lifecycle), small, with dpt_tiny on the CPU: checks every step's command line and JSON "
                         "before a GPU run (its figures mean nothing; needs rclpy)")
    ap.add_argument("--e2e-publication-modes", default="default", type=publication_modes,
                    help="comma-separated bench_e2e --publication-mode values (default, SYNCHRONOUS, ASYNCHRONOUS), "
                         "one run each (default 'default': one run in this environment's mode; e.g. "
                         "default,ASYNCHRONOUS)")
    args = ap.parse_args(argv)
    start = time.monotonic()
    out_dir = pathlib.Path(os.environ["OUT"]) if os.environ.get("OUT") else None
    if out_dir is not None:
        try:   # (before any step: a folder under /sys, /proc or /dev is refused before it is made)
            refuse_kernel_folder(out_dir)
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            print(f"gpu_check: cannot use the output folder OUT={out_dir}: "
                  f"{output_folder_error(out_dir, e, option='OUT')}", file=sys.stderr)
            return 2
    out = _OutFolder(out_dir)
    out.clear_earlier_run()
    # what a step may still be given: the budget's rest less the grace a timed-out step takes on top
    left = lambda: args.budget - (time.monotonic() - start) - GRACE_S  # noqa: E731
    summary: dict[str, Any] = {"env": _env()}
    cuda = bool(summary["env"].get("cuda_available"))
    if not cuda and not args.rehearse:   # (every step is the GPU's: said at once, nothing run)
        from dpt_ros import cuda_missing

        why = summary["env"].get("cuda_error") or cuda_missing()   # (cuda_error: torch itself failed)
        summary["skipped"] = (f"CUDA is not available on this machine ({why}): the GPU tests and benchmarks need it, "
                              "so none was run; run gpu_check on a machine with an NVIDIA GPU, or add --rehearse to "
                              "run every step small on this CPU")
        print(f"gpu_check: {summary['skipped']}", file=sys.stderr, flush=True)
        summary["ok"] = None   # (neither passed nor failed)
        summary["elapsed_s"] = round(time.monotonic() - start, 1)
        _give(summary, out)
        return 1 if out.error is not None else NO_CUDA

    def save_partial() -> None:
        """gpu_summary.json as far as the steps done so far: a run killed from outside (the device tool's limit)
        keeps their figures; the final summary replaces it."""
        if out_dir is not None and out.error is None:
            done = [k for k in summary if k != "env"]
            try:   # the issues' figures the steps done so far give
                targets: Any = issue_targets(summary)
            except Exception as e:  # noqa: BLE001 - a missing step's figures: the steps' own are kept
                targets = f"not read from the partial results: {type(e).__name__}: {e}"
            out.write("gpu_summary.json", json.dumps(
                {"partial": f"gpu_check did not finish: the steps done were {', '.join(done)}",
                 **summary, "targets": targets, "elapsed_s": round(time.monotonic() - start, 1)}, indent=1))

    e2e = (cuda or args.rehearse) and args.e2e_seconds > 0 and importlib.util.find_spec("rclpy") is not None
    # the node benchmarks' model: issue #5's on a GPU; a rehearsal runs the same steps small on the CPU
    model = (["--variant", "dpt_hybrid", "--device", "cuda", "--precision", "fp16", "--cuda-graphs"] if cuda else
             ["--variant", "dpt_tiny", "--device", "cpu", "--precision", "fp32", "--input-size", "32"])
    small = args.rehearse and not cuda
    junit = (out_dir or pathlib.Path("/tmp")) / "gpu_pytest.xml"
    threads = _pytest_threads()
    # 2026-12-04 on an H200: 204 model/pipeline/reliability tests took 107 s and the 113 s this step had then stopped
    # it at the first of the 15 ROS node tests (each starts a node and loads a model)
    r, report = pytest_step(_test_paths(args.tests or "test"), min(PYTEST_MOST_S, PYTEST_SHARE * left()), junit,
                            out.log("gpu_pytest.log"), threads)
    tail = (r["stdout"] + r["stderr"]).strip().splitlines()
    summary["pytest_gpu"] = {"rc": r["rc"], "timed_out": r["timed_out"], "seconds": r["seconds"],
                             "limit_s": r["limit_s"], "omp_num_threads": int(threads["OMP_NUM_THREADS"]),
                             **report, "tail": tail[-15:]}
    if not cuda:
        summary["pytest_gpu"]["note"] = "no CUDA device: GPU tests skip"
    save_partial()

    if args.no_pipeline_bench:
        summary["bench_pipeline"] = {"skipped": "--no-pipeline-bench"}
    else:
        bench = [sys.executable, "-m", "dpt_ros.tools.bench_pipeline", "--device", "cuda", "--json"]
        if args.quick:
            bench += ["--sizes", "320x240", "--repeat", "3"]
        r = _run(bench, min(120.0, 0.3 * left()), out.log("bench_pipeline.log"))
        summary["bench_pipeline"] = {"rc": r["rc"], "timed_out": r["timed_out"], "seconds": r["seconds"],
                                     "limit_s": r["limit_s"],
                                     "result": _last_json(r["stdout"]), "stderr_tail": r["stderr"].strip()[-1500:]}
        save_partial()

    modes = args.e2e_publication_modes
    no_ros = None   # why the ROS steps did not run, where it is not the lack of CUDA or rclpy
    if e2e:
        # their domains (a bench_e2e run each, then bench_node_stages and bench_publish on the 2nd and 3rd,
        # bench_lifecycle on the 1st): free ones, locked as the test modules lock theirs, and taken only now,
        # after the pytest step (whose modules would wait for a domain held here)
        from dpt_ros.ros.dds_env import DomainBusy   # (no ROS imports: runs without ROS)

        try:
            domains = held.enter_context(ros_domains(max(3, len(modes)), timeout=max(1.0, 0.3 * left())))
        except DomainBusy as e:
            e2e, no_ros = False, f"no free ROS domain: {e}"
        summary["env"]["ros_domains"] = domains if e2e else no_ros
    if e2e:
        runs = {}
        for i, mode in enumerate(modes):
            suffix = _e2e_suffix(mode)
            json_path = (out_dir or pathlib.Path("/tmp")) / f"bench_e2e{suffix}.json"
            json_path.unlink(missing_ok=True)
            cmd = [sys.executable, "-m", "dpt_ros.tools.bench_e2e", *model, "--duration", str(args.e2e_seconds),
                   "--warmup", "1" if small else "5",
                   "--publication-mode", mode, "--domain", str(domains[i]), "--json", str(json_path)]
            # each run takes 35-45 s (start, graph capture, discovery, warm-up, window); the node stages come next
            budget = min(90.0, 0.7 * left() / (len(modes) - i))
            r = _run(cmd, max(5.0, budget), out.log(f"bench_e2e{suffix}.log"))
            runs[mode] = {"rc": r["rc"], "timed_out": r["timed_out"], "seconds": r["seconds"], "limit_s": r["limit_s"],
                          **_read_result(json_path),
                          "stdout_tail": r["stdout"].strip()[-2000:], "stderr_tail": r["stderr"].strip()[-1500:]}
            summary["bench_e2e"] = {"runs": runs}   # (the runs so far; replaced below)
            save_partial()
        summary["bench_e2e"] = runs[modes[0]] if len(modes) == 1 else {
            "rc": max((v["rc"] if v["rc"] is not None else 1) for v in runs.values()), "runs": runs}
    else:
        summary["bench_e2e"] = {"skipped": no_ros or "needs CUDA and rclpy (bring the ROS 2 wheels)"}

    def json_tool(name: str, args_: list[str], most: float = 1e9, share: float = 1.0) -> dict[str, Any]:
        """Run ``python -m dpt_ros.tools.<name> ... --json FILE`` for at most ``most`` seconds and ``share`` of
        the rest of the budget; its JSON and status."""
        json_path = (out_dir or pathlib.Path("/tmp")) / f"{name}.json"
        json_path.unlink(missing_ok=True)
        r = _run([sys.executable, "-m", f"dpt_ros.tools.{name}", *args_, "--json", str(json_path)],
                 max(5.0, min(most, share * left(), left())), out.log(f"{name}.log"))
        return {"rc": r["rc"], "timed_out": r["timed_out"], "seconds": r["seconds"], "limit_s": r["limit_s"],
                **_read_result(json_path),
                "stderr_tail": r["stderr"].strip()[-1000:]}

    if e2e and args.node_stages_profile > 0 and left() > 20:
        # (a rehearsal: 5 frames a run after 1 warm-up frame, as few as make each run's figures and profile; with the
        # profiled frames, 20 and the default 10 were 140 model calls on the CPU, the longest step of it)
        summary["bench_node_stages"] = json_tool("bench_node_stages", [
            *model, *(["--warmup", "1"] if small else ["--input-size", "0"]),
            "--frames", "5" if small else "200", "--rates", "0", "30", "--profile", str(args.node_stages_profile),
            "--domain", str(domains[1]),
            "--also-with", "depth.encoding=16UC1"], most=120, share=0.6)
        save_partial()
    else:
        summary["bench_node_stages"] = {
            "skipped": no_ros or "needs CUDA, rclpy, --node-stages-profile > 0 and 50 s of budget"}
    # issue #3's figures (resolved): after the open issues' steps, in what the budget leaves
    if args.no_model:
        summary["bench_model"] = {"skipped": "--no-model"}
    elif (ROOT / "dpt_ros/tools/bench_model.py").exists() and (cuda or args.quick):
        json_path = (out_dir or pathlib.Path("/tmp")) / "bench_model.json"
        json_path.unlink(missing_ok=True)
        cmd = [sys.executable, "-m", "dpt_ros.tools.bench_model", "--json", str(json_path)]
        cmd += ["--device", "cuda", "--cuda-graphs", "--precision", *args.model_precisions] if cuda else ["--device", "cpu", "--quick", "--no-hf",
                                                                    "--variants", "dpt_tiny"]
        # bench_publish and bench_lifecycle need about 15 s and 30 s after it
        r = _run(cmd, max(5.0, left() - (50 if e2e else 0)), out.log("bench_model.log"))
        summary["bench_model"] = {"rc": r["rc"], "timed_out": r["timed_out"], "seconds": r["seconds"],
                                  "limit_s": r["limit_s"],
                                  **_read_result(json_path), "stdout_tail": r["stdout"].strip()[-3000:],
                                  "stderr_tail": r["stderr"].strip()[-1500:]}
        save_partial()
    elif not cuda:
        summary["bench_model"] = {"skipped": "no CUDA device (use --quick for a CPU smoke run)"}
    else:
        summary["bench_model"] = {"skipped": "dpt_ros/tools/bench_model.py not present"}

    if e2e and left() > 10:
        summary["bench_publish"] = json_tool(
            "bench_publish", ["--messages", "20" if small else "150", "--domain", str(domains[2])], most=40, share=0.5)
        save_partial()
    else:
        summary["bench_publish"] = {
            "skipped": no_ros or "needs CUDA (the GPU machine's host), rclpy and 10 s of budget"}
    if e2e and left() > 20:   # the model's GPU memory taken by configure and given back by cleanup
        summary["bench_lifecycle"] = json_tool("bench_lifecycle", [
            *(["--variant", "dpt_tiny", "--device", "cpu", "--input-size", "32", "--cycles", "1"] if small else
              ["--variant", "dpt_hybrid", "--device", "cuda", "--precision", "fp16", "--cycles", "2"]),
            "--domain", str(domains[0])])
    else:
        summary["bench_lifecycle"] = {"skipped": no_ros or "needs CUDA, rclpy and 50 s of budget"}

    p = summary["pytest_gpu"]
    only_ros_errors = p.get("errors", 0) == p.get("errors_without_ros", 0)
    steps_ok = [p.get("failures", 0) == 0 and only_ros_errors and not p["timed_out"] and p["rc"] in (0, 1, 5)
                and "junit_error" not in p,
                summary["bench_pipeline"].get("rc", 0) == 0,
                summary["bench_model"].get("rc", 0) == 0,
                summary["bench_e2e"].get("rc", 0) == 0 and (not cuda or "skipped" not in summary["bench_e2e"]),
                summary["bench_node_stages"].get("rc", 0) == 0,
                summary["bench_publish"].get("rc", 0) == 0,
                summary["bench_lifecycle"].get("rc", 0) == 0]
    summary["pytest_gpu"]["note_errors"] = ("errors_without_ros counts test files that could not be imported "
                                            "because ROS is not installed here; they are not failures")
    summary["ok"] = all(steps_ok)
    summary["targets"] = issue_targets(summary)
    if small:
        summary["rehearsal"] = ("a CPU rehearsal (--rehearse) with dpt_tiny at 32 px and random weights: it checks the "
                                "steps and their JSON; its figures are not the issues' (those need an H100/H200)")
    summary["elapsed_s"] = round(time.monotonic() - start, 1)
    _give(summary, out)
    return 0 if summary["ok"] and out.error is None else 1


def _give(summary: dict[str, Any], out: _OutFolder) -> None:
    """The final summary: ``$OUT/gpu_summary.json`` and standard output (with ``out_error`` where a write into
    ``$OUT`` failed, said on stderr when it did)."""
    out.write("gpu_summary.json", json.dumps(summary, indent=1))
    if out.error is not None:
        summary["out_error"] = out.error
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    from dpt_ros.ros.console import tool_exit, tool_streams

    tool_streams()   # (a closed or full stderr, stdout: see there)
    tool_exit(main())
