"""The demo behind ``make demo``: sample camera -> dpt_node -> ``demo_out/``, through real DDS.

Starts ``sample_camera`` and ``dpt_node`` as separate processes (exactly what ``ros2 run`` starts),
subscribes to the node's outputs from this process, and writes for each of ``--frames`` processed frames:

- ``frame_NNN_input.png``               the camera frame that was processed,
- ``frame_NNN_inverse_depth.png``       the node's ``inverse_depth/colored`` output,
- ``frame_NNN_inverse_depth.npy``       the raw float32 ``inverse_depth`` (model units),
- ``summary.json``                      frames, per-frame latency (input stamp -> received here), model,
                                        device, drops and per-stage latency from ``/diagnostics``.

Each file is written whole or not at all (beside its name, then renamed into place): a run killed or out of disk
while it writes leaves no file cut short under these names.

Weights: ``--weights`` or ``weights/<official checkpoint file>`` if it exists, else random
initialisation -- then every output is meaningless and the summary and log say so.
"""
from __future__ import annotations

import argparse
import errno
import io
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import MutableMapping

import cv2
import numpy as np

from dpt_ros.ros.dds_env import env_domain_problem, localhost_only, profile_of, set_profile
from dpt_ros.ros.params import PRECISIONS, device_option, parameter_option, target_refusals, yaml_value
from dpt_ros.ros.presets import fastdds_profile
from dpt_ros.tools import (PARTIAL_SUFFIX_PATTERN, output_folder_error, refuse_kernel_folder, remove_unheld,
                           settings_restored, write_whole)
from dpt_ros.tools.options import add_depth_variant_argument, amount, count, output_folder, ToolParser

REPO = Path(__file__).resolve().parents[2]
NAMESPACE = "/demo"
def random_banner(variant: str, asked: bool) -> str:
    """The loud warning of a run with random weights, saying why: none found, asked for, or none released."""
    from dpt_ros.model import get_variant

    v = get_variant(variant)
    if not v.released:
        why = [f"{variant} has no released weights -- running with RANDOM WEIGHTS."]
        fix = ["For real depth use a released variant with its weights (README, \"Getting the",
               "official weights\"), e.g. --variant dpt_hybrid."]
    elif asked:
        why = ["--weights random -- running with RANDOM WEIGHTS, as asked."]
        fix = [f"For real depth leave --weights out and put {v.checkpoint}",
               "into weights/ (README, \"Getting the official weights\")."]
    else:
        why = ["NO WEIGHTS FILE FOUND -- running with RANDOM WEIGHTS."]
        fix = [f"Get {v.checkpoint} into weights/",
               "(README, \"Getting the official weights\")."]
        others = other_checkpoints()
        if others:   # (a download saved under another name: 'dpt_hybrid-midas-501f0c75 (1).pt', another variant's)
            known = release_files()   # (those first, each with its variant, depth ones first: a --variant runs them)
            others.sort(key=lambda n: (n not in known, n in known and known[n].task != "depth"))
            fix += [f"weights/ holds, not {v.checkpoint}:"]
            # (a Hugging Face snapshot folder is run by its path; renamed to the release file's name it is no file)
            folders = {n for n in others if (REPO / "weights" / n).is_dir()}
            for name in others[:3]:
                of = known.get(name)
                fix.append(f"  {name}/: a Hugging Face snapshot, run it with --weights weights/{name}"
                           if name in folders else f"  {name}" if of is None else
                           f"  {name}: {of.name}'s, run it with --variant {of.name}"
                           if of.task == "depth" else f"  {name}: {of.name}'s (segmentation; the demo runs depth)")
            if len(others) > 3:
                fix.append(f"  and {len(others) - 3} more")
            if any(n not in known and n not in folders for n in others):
                fix += ["Pass another file with --weights weights/FILE, or if it is",
                        f"that file, rename it to {v.checkpoint}."]
    lines = [f"dpt_ros demo: {why[0]}", "Every depth image below is meaningless; only the plumbing and the timings are real.",
             *fix]
    width = max(map(len, lines))
    rule = "#" * (width + 6)
    return "\n".join(["", rule, *(f"#  {line:<{width}}  #" for line in lines), rule, ""])


def default_weights(variant: str) -> str:
    """``weights/<official file name>`` (or its MiDaS v3 name) when it exists, else ``random``."""
    from dpt_ros.model import get_variant

    v = get_variant(variant)
    for name in (v.checkpoint, *v.alt_checkpoints):   # (the DPT release's name, then MiDaS v3's: dpt_hybrid_384.pt)
        if name and (REPO / "weights" / name).is_file():
            return str(REPO / "weights" / name)
    return "random"


def release_files() -> dict:
    """{file name: its Variant} of every variant's release file and MiDaS v3 name (dpt_large_384.pt)."""
    from dpt_ros.model import VARIANTS

    return {name: v for v in VARIANTS.values() for name in (v.checkpoint, *v.alt_checkpoints) if name}


def other_checkpoints() -> list[str]:
    """The names of the checkpoint files (and Hugging Face snapshot folders) in weights/, sorted."""
    from dpt_ros.model.checkpoint import HF_WEIGHT_FILES

    folder = REPO / "weights"
    try:
        return sorted(f.name for f in folder.iterdir()
                      if (f.is_file() and f.suffix.lower() in (".pt", ".pth", ".bin", ".ckpt", ".safetensors"))
                      or (f.is_dir() and any((f / n).is_file() for n in HF_WEIGHT_FILES)))
    except OSError:   # (no weights/ folder)
        return []


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = ToolParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=count("frames"), default=8, help="processed frames to collect, at least 1 "
                                                                      "(default 8)")
    ap.add_argument("--out", default="demo_out", type=output_folder, help="output folder (default demo_out)")
    add_depth_variant_argument(ap, "demo", "dpt_hybrid")
    from dpt_ros.ros.sample_camera import parameter_option as camera_option, source_option

    # (a value the node or the camera would refuse at its start is a usage error here, by their own checks)
    ap.add_argument("--weights", default=None, type=parameter_option("depth.weights", "--weights"),
                    help="checkpoint file, or 'random' (default: weights/<file> if present)")
    ap.add_argument("--input-size", type=parameter_option("input_size", "--input-size"), default=0,
                    help="network size, a multiple of 32 (0 = the variant's default)")
    ap.add_argument("--device", default="auto", type=device_option,
                    help="auto (the default: CUDA where there is one, as for the node), cpu, cuda, cuda:N")
    ap.add_argument("--precision", default="fp32", choices=PRECISIONS,
                    help="the node's precision: fp32, fp16 (CUDA only), bf16 (default fp32)")
    ap.add_argument("--rate", type=camera_option("rate", "--rate"), default=5.0,
                    help="sample camera rate in Hz (default 5)")
    ap.add_argument("--width", type=camera_option("width", "--width"), default=640,
                    help="sample camera frame width in pixels, 0..8192 (0: from --height with the source's aspect; "
                         "both 0: the source's size; default 640)")
    ap.add_argument("--height", type=camera_option("height", "--height"), default=480,
                    help="sample camera frame height in pixels, 0..8192 (0: from --width with the source's aspect; "
                         "both 0: the source's size; default 480)")
    ap.add_argument("--source", default="builtin", type=source_option,
                    help="sample camera source: builtin, an image file (photo.png), a folder of images or a video "
                         "(default builtin)")
    ap.add_argument("--timeout", type=amount("time limit", "seconds", above=True), default=600.0,
                    help="give up after this many seconds, more than 0 (default 600)")
    args = ap.parse_args(argv)
    why = env_domain_problem()   # (the node's and the camera's: each process ended at its first node, exit status 1)
    if why:
        ap.error(why)
    why = target_refusals(args.device, args.precision, False, options=True)
    if why:
        ap.error("; ".join(why))
    return args


def _n_frames(n: int) -> str:
    """'1 frame', '3 frames' (it said '1 frames')."""
    return f"{n} frame{'' if n == 1 else 's'}"


def ros_args(params: dict) -> list[str]:
    """``--ros-args`` for the demo's processes: each value as YAML that rcl reads back as that value and type (a
    ``--source 2024`` or ``'shots #2'`` bare would be the integer 2024, refused by the camera, or ``shots``)."""
    out = ["--ros-args", "-r", f"__ns:={NAMESPACE}"]
    for k, v in params.items():
        out += ["-p", f"{k}:={yaml_value(v)}"]
    return out


#: the names of the files a run writes (an earlier run's are removed, once this run has frames to write; nothing else
#: in the folder is touched)
_OUTPUT_FILE = re.compile(r"frame_\d{3,}_(input\.png|inverse_depth\.png|inverse_depth\.npy)|summary\.json")


def clear_previous_run(out: Path) -> None:
    """Remove what an earlier run wrote into ``out`` (a longer run's frames would otherwise stay beside this one's),
    and the temporaries of those files that a run killed while writing left (``.frame_000_input.png.partial-<pid>.tmp``,
    :func:`write_frame`; none that a running demo is writing); files of any other name, e.g. the user's own
    ``frame_0001.jpg``, are left alone."""
    for old in out.iterdir():
        if _OUTPUT_FILE.fullmatch(old.name) and old.is_file():
            old.unlink()
    temporary = re.compile(rf"\.(?:{_OUTPUT_FILE.pattern}){PARTIAL_SUFFIX_PATTERN}")
    remove_unheld(out, lambda name: temporary.fullmatch(name) is not None)


def write_frame(out: Path, i: int, depth: np.ndarray, colored: np.ndarray, rgb: np.ndarray) -> None:
    """Write frame ``i``'s files into ``out``: the raw inverse depth (float32 .npy), the node's colored output and the
    camera frame (RGB images, as PNG). Each is written whole or not at all (:func:`dpt_ros.tools.write_whole`: beside
    its name, renamed into place once complete), so that a run killed while it writes (SIGKILL, a power cut) or a
    write that fails (a full disk, the file size limit) never leaves a file cut short under a frame's name.

    :raises OSError: a file could not be written (its errno, and its name as ``filename``: cv2.imwrite only returns
        False, and np.save would have left a truncated file)."""
    write_whole(out / f"frame_{i:03d}_inverse_depth.npy", npy_bytes(depth))
    write_whole(out / f"frame_{i:03d}_inverse_depth.png", png_bytes(colored))
    write_whole(out / f"frame_{i:03d}_input.png", png_bytes(rgb))


def png_bytes(rgb: np.ndarray) -> bytes:
    """An RGB image as PNG file bytes (OpenCV writes BGR)."""
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError(f"OpenCV cannot encode a {rgb.shape} {rgb.dtype} image as PNG")
    return buf.tobytes()


def npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def write_failed(e: OSError, written: int, out: Path) -> int:
    """Say which file could not be written and why, and what the folder holds; the exit status (2)."""
    what = ("free space on its disk" if e.errno in (errno.ENOSPC, errno.EDQUOT) else
            "move what is in the way" if e.errno == errno.EISDIR else
            "make the folder writable" if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS) else "fix that")
    print(f"demo: cannot write {e.filename}: {e.strerror or e}; frames written whole to {out}/: {written}, and no "
          f"summary.json: {what} (or give another --out) and run the demo again", file=sys.stderr)
    return 2


def dds_environment(environ: MutableMapping[str, str]) -> MutableMapping[str, str]:
    """``environ`` for the demo's processes: a random ROS domain and localhost discovery unless set, and the Fast DDS
    large-data profile (camera-sized images need its shared-memory segment; README, "Large images between
    processes") unless the shell names one: the installed package's, else the checkout's (presets.fastdds_profile)."""
    environ.setdefault("ROS_DOMAIN_ID", str(random.randint(100, 200)))
    for key, value in localhost_only(environ).items():
        environ.setdefault(key, value)
    return set_profile(environ, profile_of(environ) or fastdds_profile())


def main(argv: list[str] | None = None) -> int:
    """The demo (see the module). It sets settings of the whole process for its run: the umask (no world-writable
    outputs), the DDS environment its processes share (:func:`dds_environment`) and SIGINT's and SIGTERM's handlers;
    called in-process (a test, another tool), each is set back when main returns or raises
    (:func:`dpt_ros.tools.settings_restored`), where they were its caller's for good."""
    with settings_restored(umask=True, environ=True, signals=(signal.SIGINT, signal.SIGTERM)):
        return _main(argv)


def _main(argv: list[str] | None) -> int:
    args = parse_args(argv)
    os.umask(os.umask(0o022) | 0o002)   # never write world-writable outputs, whatever the caller's umask
    weights = args.weights or default_weights(args.variant)
    random_weights = weights == "random"
    if random_weights:
        print(random_banner(args.variant, asked=args.weights == "random"), flush=True)

    # this process (its subscriber) and the two it starts share one environment
    dds_environment(os.environ)
    env = dict(os.environ)

    import rclpy
    from rclpy.node import Node
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from rclpy.signals import SignalHandlerOptions
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import Image

    from dpt_ros.ros import conversions
    from dpt_ros.ros.health import percentile

    out = Path(args.out)
    try:   # (an earlier run's files stay until this run has frames of its own to write)
        refuse_kernel_folder(out)
        out.mkdir(parents=True, exist_ok=True)
        if not os.access(out, os.W_OK | os.X_OK):
            raise PermissionError(13, "not writable")
    except OSError as e:
        print(f"demo: cannot use the output folder {out}: {output_folder_error(out, e)}", file=sys.stderr)
        return 2

    camera_params = {"source": args.source, "rate": args.rate, "width": args.width, "height": args.height,
                     "encoding": "rgb8", "reliability": "reliable"}
    node_params = {"depth.variant": args.variant, "depth.weights": weights, "input_size": args.input_size,
                   "device": args.device, "precision": args.precision, "points.enabled": False,
                   "qos.input_reliability": "reliable"}
    # Ctrl-C (SIGINT to the terminal's whole process group, the children too) or SIGTERM: stop collecting and keep what
    # came. Installed before the children start, and rclpy told to install none of its own, so that a signal at any
    # moment from here on (also to this process alone, while rclpy starts) ends in the finally below, which stops them
    # (the flag is set before a child's exit can be seen: the handler runs as the spin below returns).
    interrupted = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: interrupted.set())
    procs = []
    node = None
    inputs: dict[int, Image] = {}
    raw: dict[int, tuple[Image, float]] = {}
    colored: dict[int, Image] = {}
    diagnostics: list[DiagnosticArray] = []

    def complete() -> list[int]:
        """Stamps with all three messages (the first frames may reach the node before this collector's
        subscription to the camera has matched)."""
        return sorted(s for s in list(raw) if s in colored and s in inputs)

    code = 0
    try:
        procs.append(subprocess.Popen([sys.executable, "-m", "dpt_ros.ros.node", *ros_args(node_params)], env=env))
        procs.append(subprocess.Popen([sys.executable, "-m", "dpt_ros.ros.sample_camera", *ros_args(camera_params)],
                                      env=env))
        rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
        node = Node("demo_collector")
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)

        def keep_input(msg: Image) -> None:
            """Keep the camera's frame until the node's outputs of it come. A frame the node has output is kept (a
            count of the newest frames alone dropped them: with a camera 14 times as fast as the model, 5 Hz and
            2.8 s a frame, never more than 14 of the newest 200 frames had outputs, and --frames 20 never ended);
            one older than the newest the node output was skipped by it (it takes the newest frame each time), and of
            those still waiting the newest 200 are kept."""
            inputs[conversions.stamp_ns(msg.header)] = msg
            done = raw.keys() | colored.keys()
            newest_done = max(done, default=-1)
            waiting = [t for t in inputs if t not in done]
            for t in [t for t in waiting if t < newest_done] + [t for t in waiting if t > newest_done][:-200]:
                del inputs[t]

        node.create_subscription(Image, f"{NAMESPACE}/image", keep_input, reliable)
        node.create_subscription(Image, f"{NAMESPACE}/inverse_depth",
                                 lambda m: raw.setdefault(conversions.stamp_ns(m.header), (m, time.time())), reliable)
        node.create_subscription(Image, f"{NAMESPACE}/inverse_depth/colored",
                                 lambda m: colored.setdefault(conversions.stamp_ns(m.header), m), reliable)
        node.create_subscription(DiagnosticArray, "/diagnostics", diagnostics.append, 10)
        deadline = time.monotonic() + args.timeout
        while len(complete()) < args.frames and not interrupted.is_set():
            rclpy.spin_once(node, timeout_sec=0.1)
            if interrupted.is_set():
                break
            for p in procs:
                if p.poll() is not None:
                    raise RuntimeError(f"{p.args[2]} exited early with code {p.returncode} (see its log above)")
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {len(complete())} of {_n_frames(args.frames)} processed in "
                                   f"{args.timeout:.0f} s")
        # one more diagnostics message so that its counters include the collected frames
        n_diag = len(diagnostics)
        end = time.monotonic() + 3.0
        while len(diagnostics) == n_diag and time.monotonic() < end and not interrupted.is_set():
            rclpy.spin_once(node, timeout_sec=0.1)
    except (RuntimeError, TimeoutError) as e:
        print(f"demo: {e}", file=sys.stderr)
        code = 1
    finally:
        for p in procs:
            if p.poll() is None:
                # SIGTERM, not SIGINT: a child still importing its modules would print a KeyboardInterrupt traceback,
                # where SIGTERM ends it quietly; one that is up shuts down cleanly on either (rclpy handles both)
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()

    if interrupted.is_set():
        print(f"demo: interrupted after {min(len(complete()), args.frames)} of {_n_frames(args.frames)}",
              file=sys.stderr)
        code = 130
    if not complete():
        print(f"demo: no frame was processed; nothing written to {out}/ (left as it was)", file=sys.stderr)
        return code or 1
    try:
        clear_previous_run(out)
    except OSError as e:
        print(f"demo: cannot clear the earlier run's files in {out}: {e.strerror or e}", file=sys.stderr)
        return 2
    frames = []
    for i, s in enumerate(complete()[: args.frames]):
        msg, received = raw[s]
        depth = conversions.image_array(msg)
        try:
            write_frame(out, i, depth, conversions.image_array(colored[s]), conversions.image_array(inputs[s]))
        except OSError as e:
            return write_failed(e, i, out)
        frames.append({"index": i, "stamp_ns": s, "latency_ms": round((received * 1e9 - s) / 1e6, 2),
                       "width": msg.width, "height": msg.height,
                       "inverse_depth_min": float(np.nanmin(depth)), "inverse_depth_max": float(np.nanmax(depth))})

    diag = {}
    if diagnostics:
        for status in diagnostics[-1].status:
            diag[status.name] = {kv.key: kv.value for kv in status.values}
    latencies = [f["latency_ms"] for f in frames]
    # the device the node reported (``auto`` resolves to cuda or cpu there)
    used = next((v["device"] for k, v in diag.items() if k.endswith(": model") and "device" in v), None)
    summary = {
        "frames": len(frames),
        "variant": args.variant,
        "weights": weights,
        "random_weights": random_weights,
        "warning": "RANDOM WEIGHTS: outputs are not meaningful" if random_weights else None,
        "device": used or args.device,
        "device_requested": args.device,
        "precision": args.precision,
        "camera": {"rate_hz": args.rate, "width": args.width, "height": args.height, "source": args.source},
        # (at least one frame here: a run without one ended above, writing nothing)
        "latency_ms": {"per_frame": latencies, "p50": percentile(latencies, 50), "max": max(latencies)},
        "per_frame": frames,
        "diagnostics": diag,
    }
    try:
        write_whole(out / "summary.json", json.dumps(summary, indent=2))
    except OSError as e:
        return write_failed(e, len(frames), out)
    print(f"demo: {_n_frames(len(frames))} -> {out}/ (latency p50 {summary['latency_ms']['p50']:.1f} ms"
          f"{', RANDOM WEIGHTS' if random_weights else ''})")
    if len(frames) < args.frames:
        code = code or 1
    return code


if __name__ == "__main__":
    from dpt_ros.ros.console import tool_exit, tool_streams

    tool_streams()   # (a closed or full stderr, stdout: see there)
    try:
        tool_exit(main())
    except KeyboardInterrupt:   # Ctrl-C before the children were started or rclpy took over SIGINT
        print("demo: interrupted", file=sys.stderr)
        sys.exit(130)
