"""End-to-end benchmark through DDS: sample_camera -> dpt_node -> subscriber (three processes).

Measures over a window after warm-up: camera and node input rates, output rate per topic,
latency from the input stamp to arrival here (p50/p99), drops and idle frames (from the node's
/diagnostics), the node's CPU use (cores, from /proc), and the node's per-stage means (of the batches between
the same two /diagnostics reports as its rates), with the
share of everything but the model ("node overhead").

    python -m dpt_ros.tools.bench_e2e                                  # CPU, dpt_tiny, random weights
    python -m dpt_ros.tools.bench_e2e --variant dpt_hybrid --device cuda --precision fp16 \\
        --cuda-graphs --weights weights/dpt_hybrid-midas-501f0c75.pt --json bench_e2e.json

Random weights time the same computation as trained ones; the outputs are meaningless.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
from dpt_ros.ros import conversions  # noqa: E402
from dpt_ros.ros.health import percentile  # noqa: E402  (the node's /diagnostics one)
from dpt_ros.ros.node import _DEPTH_OUTPUTS, STAGES  # noqa: E402  (the node's own stage and output names)
from dpt_ros.ros.topics import OUTPUTS  # noqa: E402
from dpt_ros.ros.dds_env import (PUBLICATION_MODE_CHOICES, localhost_only, set_profile,  # noqa: E402
                                 shm_notice)
from dpt_ros.ros.params import PRECISIONS, device_option, parameter_option, target_refusals  # noqa: E402
from dpt_ros.tools import settings_restored, write_whole  # noqa: E402
from dpt_ros.tools.bench_reliability import LineReader, stop_node  # noqa: E402
from dpt_ros.tools.options import (E2E_WINDOW_MIN_S, add_depth_variant_argument, add_domain_argument,  # noqa: E402
                                   amount, output_file, ToolParser)

#: why --duration is at least E2E_WINDOW_MIN_S, in its refusal
WINDOW_NOTE = "the node's rates are read between two of its /diagnostics reports, which come once a second"


def add_target_arguments(ap: argparse.ArgumentParser) -> None:
    """--device and --precision of the node benchmarks (bench_e2e, bench_node_stages, bench_lifecycle): the CPU by
    default, where the node's own default is auto."""
    ap.add_argument("--device", default="cpu", type=device_option,
                    help="auto, cpu, cuda, cuda:N (default cpu, not the node's auto: give cuda or auto "
                         "to run on the GPU)")
    ap.add_argument("--precision", default="fp32", choices=PRECISIONS,
                    help="fp32 (the default), bf16; fp16 with a CUDA --device only")


def add_model_arguments(ap: argparse.ArgumentParser, tool: str, input_size: int, source_size: bool) -> None:
    """The model and frame options shared by the node benchmarks (this one and bench_node_stages). A value the node
    (or the camera) would refuse is a usage error, by the node's own checks (see :func:`check_model_arguments` for
    the combinations). ``tool``: the tool's name, for --variant's refusal of a segmentation variant
    (``options.add_depth_variant_argument``). ``source_size``: whether --width / --height 0 is taken (bench_e2e's
    camera: the built-in photographs' aspect, or their size) or refused by the tool (bench_node_stages makes its frames
    at that size); the help says which."""
    from dpt_ros.ros.sample_camera import parameter_option as camera_option

    add_depth_variant_argument(ap, tool, "dpt_tiny")
    ap.add_argument("--weights", default="random", type=parameter_option("depth.weights", "--weights"),
                    help="checkpoint file or 'random' (default random)")
    add_target_arguments(ap)
    ap.add_argument("--cuda-graphs", action="store_true", help="replay CUDA graphs (a CUDA --device only)")
    ap.add_argument("--input-size", type=parameter_option("input_size", "--input-size"), default=input_size,
                    help=f"network size, a multiple of 32 (0 = the variant's own; default {input_size})")
    for name, default, other in (("width", 640, "height"), ("height", 480, "width")):
        ap.add_argument(f"--{name}", type=camera_option(name, f"--{name}"), default=default,
                        help=f"frame {name} in pixels (default {default}); " + (
                            f"0 keeps each built-in photograph's aspect, or its size with --{other} 0" if source_size
                            else "at least 1: the frames are made at this size"))
    ap.add_argument("--stride", type=parameter_option("points.stride", "--stride"), default=2,
                    help="points.stride, 1..64 (default 2)")
    ap.add_argument("--outputs", default="depth,points", type=output_topics,
                    help="comma-separated output topics to subscribe (lazy node computes only these): "
                         + ", ".join(DEPTH_TOPICS) + " (default depth,points)")


#: the outputs of the benchmarks' node (depth only, no compressed copies): what --outputs may name
DEPTH_TOPICS = tuple(name for name in OUTPUTS if name in _DEPTH_OUTPUTS)


def output_topics(text: str) -> str:
    """--outputs (argparse's type): comma-separated names of topics the benchmarks' node publishes. Another name was
    subscribed to and waited for (bench_e2e: 120 s, then "dpt_node did not start"; bench_node_stages: KeyError)."""
    names = [o for o in text.split(",") if o]
    wrong = [o for o in names if o not in DEPTH_TOPICS]
    if wrong or not names:
        said = f"{', '.join(map(repr, wrong))} {'is no output' if len(wrong) == 1 else 'are no outputs'} of the " \
               f"benchmarks' node" if wrong else "no topic named"
        raise argparse.ArgumentTypeError(f"{said}; give one or more of {', '.join(DEPTH_TOPICS)}, separated by commas")
    return text


def _absolute_weights(weights: str) -> str:
    # (~ expanded first, as the --weights check and the node expand it: abspath alone made ~/w.pt <cwd>/~/w.pt)
    return weights if weights in ("", "random") else os.path.abspath(os.path.expanduser(weights))


def check_model_arguments(ap: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.Namespace:
    """Refuse (``ap.error``) the combinations of the model options that the node would refuse (fp16 or CUDA graphs
    where the model runs on the CPU), by the node's own check, and an empty --weights (the parameter's "not set",
    which the node refuses at its start for the depth variant these benchmarks give it); ``args`` otherwise."""
    if not args.weights:
        ap.error("--weights: no weights file given (an empty path); give a checkpoint file, or 'random'")
    why = target_refusals(args.device, args.precision, args.cuda_graphs, options=True)
    if why:
        ap.error("; ".join(why))
    return args


def parse_args(argv=None) -> argparse.Namespace:
    ap = ToolParser(description=__doc__.splitlines()[0])
    add_model_arguments(ap, "bench_e2e", input_size=0, source_size=True)
    from dpt_ros.ros.sample_camera import parameter_option as camera_option

    ap.add_argument("--rate", type=camera_option("rate", "--rate"), default=30.0,
                    help="camera rate in Hz (default 30)")
    ap.add_argument("--duration", type=amount("window", "seconds", least=E2E_WINDOW_MIN_S, note=WINDOW_NOTE),
                    default=20.0, help=f"measurement window (s), at least {E2E_WINDOW_MIN_S:g} (default 20)")
    ap.add_argument("--warmup", type=amount("warm-up", "seconds"), default=5.0,
                    help="seconds of frames before the window, 0 or more (default 5)")
    ap.add_argument("--depth-scale", type=parameter_option("depth.scale", "--depth-scale"), default=1.0,
                    help="depth.scale for relative variants (gives depth + points), 0..1e6; 0 = only metric variants "
                         "(default 1)")
    add_domain_argument(ap, 87)
    add_dds_profile_argument(ap)
    ap.add_argument("--publication-mode", default="default", choices=PUBLICATION_MODE_CHOICES,
                    help="RMW_FASTRTPS_PUBLICATION_MODE of the node process ('default' (the default): as in this "
                         "environment). "
                         "ASYNCHRONOUS hands each message to Fast DDS's sender thread instead of copying it to "
                         "the subscribers inside publish()")
    ap.add_argument("--json", default=None, type=output_file(), help="also write the results to this file")
    return check_model_arguments(ap, ap.parse_args(argv))


def add_dds_profile_argument(ap: argparse.ArgumentParser) -> None:
    """``--dds-profile``, shared by the node benchmarks: all of a benchmark's processes use the same one."""
    ap.add_argument("--dds-profile", default="package", type=dds_profile_option,
                    help="Fast DDS profile for all the benchmark's processes: 'package' (the default) = "
                         "config/fastdds_large_data.xml "
                         "(32 MB shared-memory segment, as the README recommends for images), 'none' = Fast DDS "
                         "defaults (a 1.2 MB image then goes through UDP fragments), or an XML file")


def dds_profile_option(text: str) -> str:
    """--dds-profile (argparse's type): 'package', 'none' or a file that exists, as given. Another value (a misspelt
    'packge', a path to nothing) was found only once the run began: a FileNotFoundError traceback, exit 1."""
    if text in ("package", "none") or Path(text).expanduser().is_file():
        return text
    what = "is a folder, not a profile file" if Path(text).expanduser().is_dir() else \
        "names no file (nor is it 'package' or 'none')"
    raise argparse.ArgumentTypeError(f"{text!r} {what}: give 'package' (the package's large-data profile), 'none' "
                                     f"(Fast DDS defaults) or a Fast DDS XML profile file that exists")


def dds_profile(choice: str) -> str:
    """Path of the Fast DDS XML profile for ``--dds-profile`` ('' for Fast DDS defaults)."""
    if choice == "none":
        return ""
    if choice == "package":
        from dpt_ros.ros.presets import fastdds_profile

        return fastdds_profile()
    if not Path(choice).expanduser().is_file():
        raise FileNotFoundError(f"--dds-profile {choice}: no such file")
    return str(Path(choice).expanduser().resolve())


def _env(domain: int, profile: str) -> dict:
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain), PYTHONUNBUFFERED="1", **localhost_only())
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return dict(set_profile(env, profile))


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


#: characters of a child's output (stdout and stderr) kept, its last lines: for an error message and node_log_tail
LOG_KEPT = 1 << 16


def _start(cmd: list, env: dict) -> subprocess.Popen:
    """``cmd`` started in REPO, its output read from the start (:class:`LineReader`, the last :data:`LOG_KEPT`
    characters kept). Before, its pipe was read only at its end: a node or camera that wrote more than the pipe holds
    (64 KiB) during the run blocked in that write, and the run failed ('dpt_node did not start', no output) or
    measured a stalled node."""
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    LineReader(proc, keep=LOG_KEPT)
    return proc


def _stop(proc: subprocess.Popen) -> str:
    """Ctrl-C to ``proc`` (killed where it still runs 15 s later); the last of its output."""
    return stop_node(proc, signal.SIGINT, timeout=15)[1]


def run(args: argparse.Namespace) -> dict:
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo, Image, PointCloud2

    image = camera_frame_sizes(args.width, args.height)   # (several sizes where --width or --height is 0)
    profile = dds_profile(args.dds_profile)
    env = _env(args.domain, profile)
    # a /dev/shm too small for its three processes' segments (Docker's 64 MB) halves the rates measured: said first
    shm_notice("bench_e2e", env, processes=3, who="bench_e2e's camera, dpt_node and its subscriber (this process)")
    # this process's participant reads the profile from its own environment at rclpy.init
    set_profile(os.environ, profile)
    outputs = [o for o in args.outputs.split(",") if o]
    types = {"points": PointCloud2, "depth/camera_info": CameraInfo}
    node_cmd = [sys.executable, "-m", "dpt_ros.ros.node", "--ros-args",
                # (the node runs in REPO: a relative --weights, checked here from this process's folder, made absolute)
                "-p", f"depth.variant:={args.variant}", "-p", f"depth.weights:={_absolute_weights(args.weights)}",
                "-p", f"device:={args.device}", "-p", f"precision:={args.precision}",
                "-p", f"cuda_graphs:={'true' if args.cuda_graphs else 'false'}",
                "-p", f"input_size:={args.input_size}", "-p", f"points.stride:={args.stride}",
                "-p", "diagnostics.period:=1.0", "-p", "camera_info.policy:=nearest"]
    if args.depth_scale > 0:
        node_cmd += ["-p", f"depth.scale:={args.depth_scale}"]
    cam_cmd = [sys.executable, "-m", "dpt_ros.ros.sample_camera", "--ros-args", "-p", f"rate:={args.rate}",
               "-p", f"width:={args.width}", "-p", f"height:={args.height}", "-p", "reliability:=best_effort"]
    node_env = dict(env)
    if args.publication_mode != "default":
        node_env["RMW_FASTRTPS_PUBLICATION_MODE"] = args.publication_mode
    node = _start(node_cmd, node_env)
    camera = None
    context = Context()
    rclpy.init(context=context, domain_id=args.domain)
    probe = Node("bench_e2e", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(probe)
    lock = threading.Lock()
    arrivals: dict[str, list] = {o: [] for o in outputs}
    diags: list = []
    measuring = threading.Event()
    flowing = threading.Event()   # the first output arrived: the warm-up counts from there

    def on_output(name):
        def cb(msg):
            now = time.time_ns()
            flowing.set()
            if measuring.is_set():
                stamp = conversions.stamp_ns(msg.header)
                with lock:
                    arrivals[name].append((now, (now - stamp) / 1e6))
        return cb

    qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
    for name in outputs:
        probe.create_subscription(types.get(name, Image), name, on_output(name), qos)
    probe.create_subscription(DiagnosticArray, "/diagnostics", lambda m: diags.append((time.monotonic(), m)), 10)
    stop = threading.Event()
    spinner = threading.Thread(target=lambda: [executor.spin_once(timeout_sec=0.05) for _ in iter(stop.is_set, True)],
                               daemon=True)
    spinner.start()
    result: dict = {}
    try:
        deadline = time.monotonic() + 120
        while probe.count_publishers(outputs[0]) == 0:
            if node.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("dpt_node did not start:\n" + _stop(node))
            time.sleep(0.05)
        camera = _start(cam_cmd, env)
        # camera start-up and discovery take seconds on a loaded machine: warm up from the first output
        deadline = time.monotonic() + 60
        while not flowing.wait(0.1):
            failing = _failing(diags[-1][1]) if len(diags) >= 2 and _failing(diags[-2][1]) else {}   # twice in a row
            if failing or node.poll() is not None or camera.poll() is not None or time.monotonic() > deadline:
                why = (f"dpt_node fails every frame ({', '.join(f'{k}={v}' for k, v in failing.items())})" if failing
                       else "no output from dpt_node within 60 s of starting the camera")
                raise RuntimeError(why + ":\n" + _stop(node))
        time.sleep(args.warmup)
        cpu0, t0 = _cpu_seconds(node.pid), time.monotonic()
        measuring.set()
        time.sleep(args.duration)
        measuring.clear()
        cpu1, t1 = _cpu_seconds(node.pid), time.monotonic()
        window = t1 - t0
        # node counters: between the first and the last /diagnostics message inside the window
        inside = [(t, m) for t, m in diags if t0 <= t <= t1]
        if len(inside) < 2:
            raise RuntimeError("fewer than two /diagnostics messages in the window; use a longer --duration")
        (ta, first), (tb, last) = inside[0], inside[-1]
        cam_snapshot, cam_end, diag_span = _camera_counts(first), _camera_counts(last), tb - ta
        model = _model_values(last)
        stages_ms = window_stage_means(_model_values(first), model)
        result = {
            "variant": args.variant, "weights": args.weights, "device": model.get("device", args.device),
            "precision": args.precision, "cuda_graphs": args.cuda_graphs,
            # the configured size, and the network input the frames ran at (aspect kept: 384x512 for 640x480)
            "net_size": model.get("depth.net_size"), "net_input": model.get("depth.net_input"),
            "image": image,
            "camera_rate_hz": args.rate, "window_s": round(window, 2), "points_stride": args.stride,
            "dds_profile": Path(profile).name if profile else "fastdds defaults",
            "publication_mode": node_env.get("RMW_FASTRTPS_PUBLICATION_MODE", "rmw default (SYNCHRONOUS)"),
            "node_input_rate_hz": round((cam_end["received"] - cam_snapshot["received"]) / diag_span, 2),
            "node_processed_rate_hz": round((cam_end["processed"] - cam_snapshot["processed"]) / diag_span, 2),
            "dropped_rate_hz": round((cam_end["dropped"] - cam_snapshot["dropped"]) / diag_span, 2),
            "idle_rate_hz": round((cam_end["idle"] - cam_snapshot["idle"]) / diag_span, 2),
            "errors": {k: v for k, v in model.items() if k.startswith("errors.")},
            "node_cpu_cores": round((cpu1 - cpu0) / window, 3),
            "outputs": {},
            # the batches between the same two reports as the node's rates (not the node's own latency.*_ms: of the
            # last 30 s / 300 batches, warm-up and start-up included when the window is shorter)
            "stages_ms": stages_ms,
        }
        for name, rows in arrivals.items():
            lat = [r[1] for r in rows]
            result["outputs"][name] = {"rate_hz": round(len(rows) / window, 2), "count": len(rows),
                                       "latency_p50_ms": round(percentile(lat, 50), 2),
                                       "latency_p99_ms": round(percentile(lat, 99), 2),
                                       "latency_max_ms": round(max(lat), 2) if lat else None}
        st = result["stages_ms"]
        total = sum(v for v in st.values() if v == v)
        result["node_total_ms"] = round(total, 2)
        result["node_overhead_fraction"] = round(1.0 - st["model"] / total, 3) if total > 0 else None
        last = result["outputs"].get(outputs[-1], {})
        p50 = last.get("latency_p50_ms")
        if p50 and p50 == p50:
            result["e2e_overhead_fraction"] = round(max(0.0, 1.0 - st["model"] / p50), 3)
    finally:
        stop.set()
        spinner.join(2)
        if camera is not None:
            _stop(camera)
        log = _stop(node)
        executor.shutdown()
        probe.destroy_node()
        rclpy.try_shutdown(context=context)
    result["node_log_tail"] = log.strip().splitlines()[-3:]
    return result


def camera_frame_sizes(width: int, height: int) -> str:
    """The sizes, ``WxH``, of the frames bench_e2e's camera sends for ``--width`` / ``--height``, in the order of its
    built-in photographs, each size once: the camera's own resize of each. A 0 side keeps a photograph's aspect (both
    0: its own size), so the camera then sends frames of several sizes (recorded as the configured "0x0" before, as if
    that were a size)."""
    from dpt_ros.ros.sample_camera import builtin_frames, resize

    if width > 0 and height > 0:
        return f"{width}x{height}"
    sizes = (resize(f, width, height).shape[:2] for f in builtin_frames())
    return ", ".join(dict.fromkeys(f"{w}x{h}" for h, w in sizes))


def window_stage_means(first: dict, last: dict) -> dict:
    """Per stage, the mean ms per batch of the batches between two of the node's /diagnostics model reports (their
    key -> value): the difference of the cumulative ``latency.<stage>_sum_ms`` over that of ``latency.batches``;
    NaN for a stage without batches between them."""
    batches = int(last.get("latency.batches", 0)) - int(first.get("latency.batches", 0))
    return {s: round((float(last[f"latency.{s}_sum_ms"]) - float(first[f"latency.{s}_sum_ms"])) / batches, 3)
            if batches > 0 else float("nan") for s in STAGES}


def _camera_counts(diag) -> dict:
    for s in diag.status:
        if ": camera" in s.name:
            kv = {v.key: v.value for v in s.values}
            return {k: int(kv.get(k, 0)) for k in ("received", "processed", "dropped", "idle")}
    return {"received": 0, "processed": 0, "dropped": 0, "idle": 0}


def _failing(diag) -> dict:
    """The camera's lost-frame counters (``error.<reason>``; not ``incomplete.*``, frames published without some
    outputs) when it has lost frames and processed none yet (a pipeline that fails on every frame publishes
    nothing: no use waiting for an output), else {}."""
    for s in diag.status:
        if ": camera" in s.name:
            values = {v.key: v.value for v in s.values}
            errors = {k: v for k, v in values.items() if k.startswith("error.") and v != "0"}
            return errors if errors and int(values.get("processed", 0)) == 0 else {}
    return {}


def _model_values(diag) -> dict:
    for s in diag.status:
        if s.name.endswith(": model"):
            return {v.key: v.value for v in s.values}
    return {}


def report(r: dict) -> str:
    lines = [f"bench_e2e: {r['variant']} ({r['weights']}) on {r['device']} {r['precision']}"
             f"{' +CUDA graphs' if r['cuda_graphs'] else ''}, net size {r['net_size']} (input {r.get('net_input')}), "
             f"camera {r['image']} "
             f"@ {r['camera_rate_hz']:g} Hz, window {r['window_s']} s, DDS: {r['dds_profile']}, "
             f"publication mode {r['publication_mode']}",
             f"  node input {r['node_input_rate_hz']} Hz, processed {r['node_processed_rate_hz']} Hz, "
             f"dropped {r['dropped_rate_hz']} Hz, idle {r['idle_rate_hz']} Hz, node CPU {r['node_cpu_cores']} cores",
             "  | output | rate Hz | p50 ms | p99 ms | max ms |", "  |---|---|---|---|---|"]
    for name, o in r["outputs"].items():
        lines.append(f"  | {name} | {o['rate_hz']} | {o['latency_p50_ms']} | {o['latency_p99_ms']} | {o['latency_max_ms']} |")
    st = r["stages_ms"]
    lines.append("  node stages (mean ms per batch): " + ", ".join(f"{k} {v:.2f}" for k, v in st.items())
                 + f"; total {r['node_total_ms']}")
    lines.append(f"  node overhead (all but the model) {r['node_overhead_fraction']} of node time; "
                 f"{r.get('e2e_overhead_fraction')} of the p50 end-to-end latency")
    if r["errors"]:
        lines.append(f"  errors: {r['errors']}")
    return "\n".join(lines)


def main(argv=None) -> int:
    """The benchmark (see the module). Its participant reads the DDS profile from this process's environment, which
    run sets: called in-process (a test, another tool), ``os.environ`` is set back when main returns or raises
    (:func:`dpt_ros.tools.settings_restored`), where the profile was its caller's for good."""
    with settings_restored(environ=True):
        return _main(argv)


def _main(argv) -> int:
    args = parse_args(argv)
    if args.weights == "random":
        print("note: random weights -- timings are real, outputs are meaningless", file=sys.stderr)
    r = run(args)
    print(report(r))
    if args.json:
        write_whole(args.json, json.dumps(r, indent=2))
    return 0


if __name__ == "__main__":
    from dpt_ros.tools import run_benchmark

    run_benchmark("bench_e2e", main)
