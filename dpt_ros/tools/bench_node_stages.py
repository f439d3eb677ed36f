"""In-process per-stage timing of the node's worker (no camera process, no DDS transport timing).

Builds a :class:`~dpt_ros.ros.node.DptNode` in this process, subscribes the chosen outputs (so the
lazy node computes them), gives it a camera_info, then calls ``DptNode.process`` on one frame at a
time and reports the node's own stage means (decode, preprocess, model, postprocess, publish) and
the share of everything but the model. The subscribers run in a separate process by default
(``--subscribers process``), as in a real deployment: subscribers in this process would take every
output message on this process's executor thread and hold the GIL the node's stages need. ``--profile N`` prints the top N functions by own
time (cProfile) of as many frames again, run after the measured ones (the stage times are never the profiled frames').
Interrupted (SIGINT, e.g. gpu_check's time limit) after a run's frames, it reports the runs measured so far, with
``interrupted``, and exits with status 130.

``--rates 0 30`` measures the same node twice: frames back to back, then paced as a 30 Hz camera delivers
them. Paced, the worker sleeps between frames and each frame starts on colder caches (and perhaps a
clocked-down core), which is what the node meets in service; the difference between the two is that
cost, not the code's.

    python -m dpt_ros.tools.bench_node_stages                          # CPU, dpt_tiny at 64 px
    python -m dpt_ros.tools.bench_node_stages --variant dpt_hybrid --device cuda --precision fp16 \\
        --cuda-graphs --input-size 0

Random weights time the same computation as trained ones; the outputs are meaningless.
"""
from __future__ import annotations

import argparse
import cProfile
import io
import json
import math
import os
import pstats
import signal
import subprocess
import sys
import time
from pathlib import Path

from dpt_ros.tools import settings_restored, write_whole  # noqa: E402
from dpt_ros.tools.bench_e2e import (LOG_KEPT, STAGES, add_dds_profile_argument, add_model_arguments,  # noqa: E402
                                     check_model_arguments, dds_profile)
from dpt_ros.tools.bench_reliability import LineReader, stop_node  # noqa: E402
from dpt_ros.ros.dds_env import localhost_only, set_profile, shm_notice  # noqa: E402
from dpt_ros.ros.health import percentile  # noqa: E402
from dpt_ros.tools.options import add_domain_argument, amount, count, output_file, ToolParser  # noqa: E402

#: the stage times the node keeps (its last 300 batches: node.py's _stage_ms deques), which --frames must fit in
STAGE_WINDOW = 300


def parse_args(argv=None) -> argparse.Namespace:
    ap = ToolParser(description=__doc__.splitlines()[0])
    add_model_arguments(ap, "bench_node_stages", input_size=64, source_size=False)
    # (dpt_ros.ros.testing.MAKE_IMAGE_ENCODINGS: not imported here, which would load rclpy before the DDS set-up)
    ap.add_argument("--encoding", default="rgb8", choices=("rgb8", "bgr8", "rgba8", "bgra8", "rgb16", "bgr16", "rgba16",
                                                           "bgra16", "mono8", "mono16"),
                    help="the frames' encoding (default rgb8)")
    ap.add_argument("--frames", type=count("frames", most=STAGE_WINDOW, note=f"the node keeps its last {STAGE_WINDOW} "
                                                                          f"stage times"), default=100,
                    help=f"measured frames, 1..{STAGE_WINDOW} (the node's window; default 100)")
    ap.add_argument("--warmup", type=count("warm-up frames", least=0), default=10,
                    help="frames before the measurement, 0 or more (default 10)")
    ap.add_argument("--rates", type=amount("rate", "Hz", above=True, zero="run the frames back to back"), nargs="+",
                    default=[0.0], help="frame rates (Hz) to measure in turn, each over --frames (0: back to back; "
                                        "default 0; e.g. 0 30)")
    ap.add_argument("--profile", type=count("functions", zero="profile nothing"), default=0,
                    help="print the top N functions (cProfile) of another --frames frames after each measurement "
                         "(0: none)")
    ap.add_argument("--also-with", action="append", default=[], metavar="NAME=VALUE[,NAME=VALUE]", type=_parse_changes,
                    help="then measure the same node once more (at the first rate) with these parameters set live "
                         "(e.g. depth.encoding=16UC1, or as -p takes it, depth.encoding:=16UC1); repeatable, each from the "
                         "start-up values")
    ap.add_argument("--subscribers", default="process", choices=("process", "in-process"),
                    help="where the output subscribers run (default: another process)")
    add_domain_argument(ap, 88)
    add_dds_profile_argument(ap)
    ap.add_argument("--json", default=None, type=output_file(), help="also write the results to this file")
    args = check_model_arguments(ap, ap.parse_args(argv))
    if args.width < 1 or args.height < 1:   # (0, the camera's "source size" in bench_e2e, is no size here)
        ap.error(f"--width and --height are the size of the frames it makes: at least 1; "
                 f"got {args.width}x{args.height}")
    # each --also-with change as the node's set_parameters judges it, from the start-up values: the checks of one
    # value (_parse_changes) leave out the colour maps and those across parameters (depth.min below depth.max, fp16
    # on the CPU, a variant of the other task), which the node refused only after every rate had been measured
    from dpt_ros.ros import params  # noqa: PLC0415

    start = params.defaults().replace(start_parameters(args))
    for changes in args.also_with:
        _, why = params.validate(start, changes)
        if why:
            ap.error("argument --also-with: " + "; ".join(why))
    return args


def start_parameters(args: argparse.Namespace) -> dict:
    """The parameters the benchmark starts its node with (its --also-with changes are set from these)."""
    return {"depth.variant": args.variant, "depth.weights": args.weights, "device": args.device,
            "precision": args.precision, "cuda_graphs": args.cuda_graphs, "input_size": args.input_size,
            "points.stride": args.stride, "depth.scale": 1.0, "camera_info.policy": "latest"}


_SUBSCRIBER = """
import json, signal, sys, rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
types = {"points": PointCloud2, "depth/camera_info": CameraInfo}
rclpy.init()
node = rclpy.create_node("bench_node_stages_subscriber")
counts = {}
for name in sys.argv[1:]:
    counts[name] = 0
    node.create_subscription(types.get(name, Image), name,
                             lambda m, n=name: counts.__setitem__(n, counts[n] + 1),
                             QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE))
signal.signal(signal.SIGTERM, lambda *a: rclpy.try_shutdown())
try:
    while rclpy.ok():
        rclpy.spin_once(node, timeout_sec=0.1)
except Exception:
    pass
print(json.dumps(counts), flush=True)
"""


def _subscriber_process(outputs: list[str], domain: int):
    """The subscriber process, its output read from the start (:class:`LineReader`, the last :data:`LOG_KEPT`
    characters kept). Before, its pipe was read only at its end: a subscriber that wrote more than the pipe holds
    (64 KiB, DDS or rclpy warnings) blocked in that write and stopped taking the node's outputs, so the run stalled
    ('discovery' never came) or measured a node whose subscriber took nothing."""
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain))
    for key, value in localhost_only().items():
        env.setdefault(key, value)
    proc = subprocess.Popen([sys.executable, "-c", _SUBSCRIBER, *outputs], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    LineReader(proc, keep=LOG_KEPT)
    return proc


def _stop_subscriber(proc) -> dict:
    time.sleep(0.5)   # the last messages are in flight
    _, out, _ = stop_node(proc, signal.SIGTERM, timeout=20)   # (killed past it: its output has no counts, said below)
    for line in reversed(out.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError(f"subscriber process printed no counts:\n{out[-2000:]}")


def run(args: argparse.Namespace) -> dict:
    """The runs' figures (see the module). The DDS profile is set in this process's environment for them: the node's
    participant (this process) reads it at rclpy.init, the subscriber process inherits it; ``os.environ`` is set back
    when the runs end, or raise (:func:`dpt_ros.tools.settings_restored`): a caller's later processes are not this
    benchmark's."""
    with settings_restored(environ=True):
        return _runs(args)


def _runs(args: argparse.Namespace) -> dict:
    from sensor_msgs.msg import CameraInfo, Image, PointCloud2

    from dpt_ros.ros.node import _Frame
    from dpt_ros.ros.testing import Harness, make_image, make_info, wait_for

    outputs = [o for o in args.outputs.split(",") if o]
    types = {"points": PointCloud2, "depth/camera_info": CameraInfo}
    # the node's participant (this process) reads the profile at rclpy.init; the subscriber process inherits it
    profile = dds_profile(args.dds_profile)
    set_profile(os.environ, profile)
    shm_notice("bench_node_stages", processes=2, who="the node (this process) and its subscriber process")
    harness = None
    subscriber = None
    try:
        harness = Harness(args.domain)
        node = harness.start_node(**start_parameters(args))
        cam = node.cameras[0]
        if args.subscribers == "process":
            subscriber = _subscriber_process(outputs, args.domain)
        else:
            received = {o: harness.collector(types.get(o, Image), o) for o in outputs}
        wait_for(lambda: all(cam.pubs[o].get_subscription_count() > 0 for o in outputs), what="discovery")
        frames = [make_image(i + 1, args.width, args.height, encoding=args.encoding, seed=i % 4) for i in range(4)]
        node._on_info(cam, make_info(frames[0]))

        def one(i: int) -> None:
            frame = frames[i % len(frames)]
            # stamped now, as a camera stamps its frames: stamps of 1970 made the node warn of frames hours old
            # ("recorded data played on the wall clock"), which this run's output has no use for
            frame.header.stamp.sec, frame.header.stamp.nanosec = divmod(time.time_ns(), 1_000_000_000)
            # the camera's last image, as the image callback notes it (these frames do not come through it): else the
            # node's diagnostics warned "no image yet ... point the node at the camera's topic" 5 s into every run
            cam.last_image = arrived = time.monotonic()
            node.process([_Frame(cam, frame, arrived)])

        runs: list[dict] = []   # each run's figures as soon as they are measured (its profile follows)
        interrupted = None
        try:
            for i in range(args.warmup):
                one(i)
            for rate in args.rates:
                _measure(node, one, rate, args.frames, args.profile, into=runs)
            initial = node.settings
            for changes in args.also_with:
                _set_live(node, changes)
                for i in range(args.warmup):
                    one(i)
                _measure(node, one, args.rates[0], args.frames, args.profile, into=runs, parameters=changes)
                _set_live(node, {k: initial[k] for k in changes})
        except KeyboardInterrupt:
            # a caller's time limit (gpu_check: SIGINT): the runs measured so far are reported, not lost
            if not runs:
                raise
            interrupted = (f"interrupted (SIGINT) after {len(runs)} of {len(args.rates) + len(args.also_with)} runs: "
                           "the runs listed were measured; give the run more time for the rest")
        # (interrupted, the outputs' arrival is not waited for: the caller's SIGKILL follows within seconds)
        if subscriber is not None and not interrupted:
            counts = _stop_subscriber(subscriber)
            missing = [o for o in outputs if counts.get(o, 0) == 0]
            if missing:
                raise RuntimeError(f"the subscriber process received nothing on {missing}: {counts}")
        elif not interrupted:
            wait_for(lambda: all(len(r) > 0 for r in received.values()), what="outputs")
        # the first rate's figures also at the top level, where the tools that read this JSON look
        return {"variant": args.variant, "device": str(node.models.device), "precision": args.precision,
                "cuda_graphs": args.cuda_graphs, "image": f"{args.width}x{args.height}", "encoding": args.encoding,
                "outputs": outputs, "points_stride": args.stride, "frames": args.frames,
                "dds_profile": Path(profile).name if profile else "fastdds defaults",
                "subscribers": args.subscribers, **runs[0], "runs": runs, "errors": node.error_counts(),
                **({"interrupted": interrupted} if interrupted else {})}
    finally:
        if subscriber is not None and subscriber.poll() is None:
            # (reaped too: killed alone, it stayed a zombie for as long as a caller held this run's error)
            subscriber.kill()
            subscriber.wait()
        if harness is not None:
            harness.shutdown()


def _parse_changes(text: str) -> dict:
    """``"a=1,b=x"`` (or ``"a:=1,b:=x"``, the node's ``-p`` form) -> ``{"a": 1, "b": "x"}`` (values read as YAML scalars, as ``ros2 param set`` does); --also-with's
    argparse type (a malformed one, or one the node refuses, was found only after the other runs had been measured).
    """
    import yaml  # noqa: PLC0415

    from dpt_ros.ros import params  # noqa: PLC0415

    changes = {}
    for item in text.split(","):
        name, sep, value = item.partition("=")
        name = name.strip().removesuffix(":")   # (NAME:=VALUE, the node's -p form, too)
        if not sep or not name:
            raise argparse.ArgumentTypeError(f"{text!r} is not NAME=VALUE[,NAME=VALUE]: give e.g. "
                                             f"depth.encoding=16UC1")
        changes[name] = yaml.safe_load(value)
    for name, value in changes.items():   # (the node's own checks of a live change, without those across parameters)
        spec = params.SPECS.get(name)
        why = (params.unknown_parameter(name, live=True) if spec is None else
               params.read_only_reason(name, managed=False) if spec.read_only() else params.check_value(name, value))
        if why:
            raise argparse.ArgumentTypeError(why)
    return changes


def _set_live(node, changes: dict) -> None:
    """Set parameters through the node's own parameter interface (what ``ros2 param set`` reaches)."""
    from rclpy.parameter import Parameter  # noqa: PLC0415

    results = node.set_parameters([Parameter(k, value=v) for k, v in changes.items()])
    bad = [f"{k}: {r.reason}" for k, r in zip(changes, results) if not r.successful]
    if bad:
        raise SystemExit("--also-with: the node refused " + "; ".join(bad))


def _frames(one, rate: float, frames: int, prof=None) -> float:
    """``frames`` calls of ``one``, back to back (``rate`` 0) or paced at ``rate`` Hz, each under ``prof`` if given;
    their wall time in seconds. Paced, a frame that overran its period is followed by the camera's next frame at its
    next tick, as the node's newest-frame slot would give it, not by frames run back to back to catch up."""
    period = 1.0 / rate if rate > 0 else 0.0
    t0 = due = time.perf_counter()
    for i in range(frames):
        if period:   # sleep until the frame is due, as if a camera had just delivered it
            due += period
            late = time.perf_counter() - due
            if late > 0:
                due += math.ceil(late / period) * period
            time.sleep(max(0.0, due - time.perf_counter()))
        if prof is not None:
            prof.enable()
        one(i)
        if prof is not None:
            prof.disable()
    return time.perf_counter() - t0


def _measure(node, one, rate: float, frames: int, profile: int, into: list | None = None,
             parameters: dict | None = None) -> dict:
    """Stage means of ``frames`` calls of ``one``, back to back (``rate`` 0) or paced at ``rate`` Hz. With
    ``profile``, another ``frames`` calls under cProfile follow for the function table: the stage times are of
    the frames without the profiler (its hooks on every Python call slow the Python-heavy stages more than the
    model, and would inflate the overhead share). ``into``: a list the run is appended to once its stage times
    are in, before the profiled frames (an interrupt there leaves the figures); ``parameters``: the live
    parameter changes the run was made with, recorded in it."""
    with node._lock:
        for d in node._stage_ms.values():
            d.clear()
    wall = _frames(one, rate, frames)
    with node._lock:
        times = {k: list(v) for k, v in node._stage_ms.items() if v}
    stages = {k: sum(v) / len(v) for k, v in times.items()}
    total = sum(stages.values())
    # means make up the per-frame total (the overhead share is of means, as in /diagnostics); a shared
    # machine's busy spells show in them as a long tail, which the medians and 90th percentiles set apart
    run = {"rate_hz": rate,
           "stages_ms": {k: round(stages.get(k, float("nan")), 3) for k in STAGES},
           "stages_median_ms": {k: round(percentile(times[k], 50), 3) for k in STAGES if k in times},
           "stages_p90_ms": {k: round(percentile(times[k], 90), 3) for k in STAGES if k in times},
           "node_total_ms": round(total, 3),
           "overhead_ms": round(total - stages.get("model", 0.0), 3),
           "node_overhead_fraction": round(1.0 - stages.get("model", 0.0) / total, 3) if total else None,
           "wall_ms_per_frame": round(wall * 1000.0 / frames, 3)}
    if parameters is not None:
        run["parameters"] = parameters
    if into is not None:
        into.append(run)
    if profile:
        prof = cProfile.Profile()
        _frames(one, rate, frames, prof)
        out = io.StringIO()
        # by own time: with the profiler switched on and off around each frame, the cumulative times of the
        # outer calls came out broken on the H200 run (Python 3.12: _postprocess "188/12" calls, 0.1 ms of a
        # 2 ms stage); own times, the C calls' included, still add up
        pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(profile)
        run["profile"] = out.getvalue()
    return run


def _run_label(run: dict) -> str:
    """"back to back", "at 30 Hz", plus " with name=value" for an --also-with run."""
    label = f"at {run['rate_hz']:g} Hz" if run["rate_hz"] else "back to back"
    if run.get("parameters"):
        label += " with " + ", ".join(f"{k}={v}" for k, v in run["parameters"].items())
    return label


def report(r: dict) -> str:
    lines = [f"bench_node_stages: {r['variant']} on {r['device']} {r['precision']}"
             f"{' +CUDA graphs' if r['cuda_graphs'] else ''}, {r['image']} {r['encoding']}, outputs "
             f"{','.join(r['outputs'])} (points stride {r['points_stride']}), {r['frames']} frames per run, "
             f"DDS: {r['dds_profile']}"]
    for run in r["runs"]:
        lines += [f"  {_run_label(run)}: " + ", ".join(f"{k} {v:.3f}" for k, v in run["stages_ms"].items())
                  + " (mean ms per frame)",
                  "    median " + ", ".join(f"{k} {v:.3f}" for k, v in run["stages_median_ms"].items())
                  + "; p90 " + ", ".join(f"{k} {v:.3f}" for k, v in run["stages_p90_ms"].items()),
                  f"    total {run['node_total_ms']} ms, all but the model {run['overhead_ms']} ms "
                  f"({run['node_overhead_fraction']} of node time); wall {run['wall_ms_per_frame']} ms/frame"]
    if r["errors"]:
        lines.append(f"  errors: {r['errors']}")
    if r.get("interrupted"):
        lines.append(f"  {r['interrupted']}")
    for run in r["runs"]:
        if run.get("profile"):
            lines += [f"  cProfile, {_run_label(run)}:", run["profile"]]
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    r = run(args)
    print(report(r))
    if args.json:
        slim = {k: v for k, v in r.items() if k != "profile"}
        slim["runs"] = [{k: v for k, v in run.items() if k != "profile"} for run in r["runs"]]
        write_whole(args.json, json.dumps(slim, indent=2))
    return 130 if r.get("interrupted") else 0


if __name__ == "__main__":
    from dpt_ros.tools import run_benchmark

    run_benchmark("bench_node_stages", main)
