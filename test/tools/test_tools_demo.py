"""`make demo` end to end: sample_camera and dpt_node as processes, real DDS, demo_out/ contents."""
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from dpt_ros.ros.dds_env import localhost_only
from dpt_ros.tools import demo
from dpt_ros.tools.bench_reliability import LineReader

DOMAIN = 71


def test_the_random_weights_banner_says_why_and_what_to_do():
    """No file found, --weights random on purpose, or a variant without released weights: each its reason and
    remedy, in one box whose lines are all as wide."""
    cases = {("dpt_hybrid", False): ("NO WEIGHTS FILE FOUND", "Get dpt_hybrid-midas-501f0c75.pt into weights/"),
             ("dpt_hybrid", True): ("--weights random -- running with RANDOM WEIGHTS, as asked", "leave --weights out"),
             ("dpt_tiny", False): ("dpt_tiny has no released weights", "--variant dpt_hybrid"),
             ("dpt_tiny", True): ("dpt_tiny has no released weights", "--variant dpt_hybrid")}
    for (variant, asked), (why, fix) in cases.items():
        text = demo.random_banner(variant, asked)
        flat = " ".join(line.strip("# ") for line in text.splitlines())
        assert why in flat and fix in flat and "meaningless" in flat, text
        box = text.strip("\n").splitlines()
        assert len({len(line) for line in box}) == 1 and box[0] == box[-1] == "#" * len(box[0])


def test_every_demo_option_says_what_it_is(capsys):
    """--help described every option but --precision, --width and --height (the newcomer walkthrough's finding)."""
    with pytest.raises(SystemExit) as e:
        demo.parse_args(["--help"])
    assert e.value.code == 0
    options = capsys.readouterr().out.split("options:", 1)[1]
    text = " ".join(options.split())
    assert "--precision {fp32,fp16,bf16} the node's precision: fp32, fp16 (CUDA only), bf16 (default fp32)" in text
    assert "--width WIDTH sample camera frame width in pixels, 0..8192 (0: from --height with the source's aspect; " \
           "both 0: the source's size; default 640)" in text
    assert "--height HEIGHT sample camera frame height in pixels, 0..8192 (0: from --width with the source's " \
           "aspect; both 0: the source's size; default 480)" in text
    # every option has words of its own: after its name on its line, or on the next line (a long name)
    lines = options.strip("\n").splitlines()
    for i, line in enumerate(lines):
        if line.startswith("  -"):
            parts = line.split("  ", 2)   # ('', '--rate RATE', '  sample camera rate ...')
            words = parts[2].strip() if len(parts) > 2 else ""
            assert words or (i + 1 < len(lines) and not lines[i + 1].lstrip().startswith("-")), line


def _run_demo(out, frames: int) -> subprocess.CompletedProcess:
    """The demo as a user runs it (python -m), dpt_tiny at 64 px on the CPU, ``frames`` frames of a 160x120 camera
    into ``out``, on this module's ROS domain."""
    env = dict(os.environ, ROS_DOMAIN_ID=str(DOMAIN), **localhost_only())
    return subprocess.run([sys.executable, "-m", "dpt_ros.tools.demo", "--frames", str(frames), "--out", str(out),
                           "--variant", "dpt_tiny", "--input-size", "64", "--device", "cpu",
                           "--width", "160", "--height", "120", "--rate", "10", "--timeout", "180"],
                          env=env, capture_output=True, text=True, timeout=400)


@pytest.mark.slow
def test_one_frame_is_said_to_be_one(tmp_path):
    """The demo's last line said 'demo: 1 frames -> ...'."""
    out = tmp_path / "demo_out"
    res = _run_demo(out, 1)
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    assert f"demo: 1 frame -> {out}/ (latency p50 " in res.stdout, res.stdout[-2000:]
    assert json.loads((out / "summary.json").read_text())["frames"] == 1


@pytest.mark.slow
def test_demo_writes_frames_latency_and_random_weight_warning(tmp_path):
    out = tmp_path / "demo_out"
    out.mkdir()
    (out / "frame_099_input.png").write_bytes(b"left from an earlier, longer run")
    (out / "frame_0001.jpg").write_bytes(b"the user's own file")
    res = _run_demo(out, 3)
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    assert "dpt_tiny has no released weights -- running with RANDOM WEIGHTS" in res.stdout   # loud, with why
    p50 = json.loads((out / "summary.json").read_text())["latency_ms"]["p50"]
    assert f"3 frames -> {out}/ (latency p50 {p50:.1f} ms, RANDOM WEIGHTS)" in res.stdout
    # these wheels are Kilted (Fast DDS 3): the profile goes under its name only, so no process warns
    assert "is deprecated" not in res.stdout + res.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames"] == 3 and summary["random_weights"] is True
    assert (summary["device"], summary["device_requested"]) == ("cpu", "cpu")   # as the node reported it
    assert "not meaningful" in summary["warning"]
    lat = summary["latency_ms"]["per_frame"]
    model = next(v for k, v in summary["diagnostics"].items() if k.endswith(": model"))
    # input stamp -> received here: in milliseconds, so at least about the node's own model time
    assert len(lat) == 3 and all(0.5 * float(model["latency.model_ms"]) < x < 60_000 for x in lat), (lat, model)
    assert p50 == sorted(lat)[1] and summary["latency_ms"]["max"] == max(lat)   # the middle of three (health.percentile)
    assert not (out / "frame_099_input.png").exists()   # an earlier run's frames are removed
    assert (out / "frame_0001.jpg").read_bytes() == b"the user's own file"   # nothing else
    from dpt_ros.ros.sample_camera import builtin_frames, resize
    camera = [resize(f, 160, 120) for f in builtin_frames()]
    stamps = [f["stamp_ns"] for f in summary["per_frame"]]
    assert stamps == sorted(stamps) and len(set(stamps)) == 3
    for i in range(3):
        depth = np.load(out / f"frame_{i:03d}_inverse_depth.npy")
        assert depth.dtype == np.float32 and depth.shape == (120, 160)   # the input's size, not the network's
        for name in ("inverse_depth", "input"):   # colour PNGs at the camera's size
            png = cv2.imread(str(out / f"frame_{i:03d}_{name}.png"), cv2.IMREAD_UNCHANGED)
            assert png.shape == (120, 160, 3) and png.dtype == np.uint8 and png.std() > 0, name
        # the input PNG is one of the camera's pictures, in the right channel order
        rgb = cv2.cvtColor(cv2.imread(str(out / f"frame_{i:03d}_input.png")), cv2.COLOR_BGR2RGB)
        assert any(np.array_equal(rgb, c) for c in camera)
    # the node's own counters came back through /diagnostics
    cams = [v for k, v in summary["diagnostics"].items() if "camera" in k]
    assert cams and int(cams[0]["processed"]) >= 3


def test_a_node_that_cannot_start_ends_the_demo_with_its_reason_and_no_summary(tmp_path):
    """The node's reason, once; nothing written, and an earlier run's results left as they were (not its frames
    removed and its summary kept). (A checkpoint of no DPT: what only loading it shows; a missing file is the demo's
    own usage error.)"""
    import torch

    out = tmp_path / "out"
    out.mkdir()
    earlier = {"frame_000_input.png": b"an earlier run's frame", "summary.json": b'{"frames": 1}'}
    for name, data in earlier.items():
        (out / name).write_bytes(data)
    torch.save({"x": torch.zeros(1)}, tmp_path / "other.pt")
    res = subprocess.run([sys.executable, "-m", "dpt_ros.tools.demo", "--frames", "2", "--out", str(out),
                          "--variant", "dpt_tiny", "--weights", str(tmp_path / "other.pt"), "--device", "cpu",
                          "--timeout", "120"], env=dict(os.environ, ROS_DOMAIN_ID=str(DOMAIN), **localhost_only()),
                         capture_output=True, text=True, timeout=180)
    assert res.returncode == 1, res.stderr
    assert res.stderr.count("other.pt is not a DPT checkpoint") == 1, res.stderr   # the node's reason, once
    assert "dpt_ros.ros.node exited early with code 2" in res.stderr
    assert f"no frame was processed; nothing written to {out}/ (left as it was)" in res.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir()} == earlier and "frames ->" not in res.stdout
    assert "Traceback" not in res.stderr


def test_demo_refuses_an_unknown_or_non_depth_variant_before_starting_anything(usage_error):
    """(a segmentation variant's refusal, which says where segmentation runs: test_tools_program_names)"""
    assert "dpt_hybrid_kitti" in usage_error(demo.parse_args, ["--variant", "dpt_hybird"],
                                             "invalid choice: 'dpt_hybird'").err
    assert "dpt_hybrid_kitti" in usage_error(demo.parse_args, ["--variant", "dpt_large_ade20k"],
                                             "dpt_large_ade20k is a segmentation variant; demo runs depth variants "
                                             "only").err


def test_a_device_the_node_would_refuse_is_the_demos_usage_error_in_its_own_words(usage_error):
    """--device bogus / cuda without CUDA: argparse's error naming --device and what to give, before anything starts
    (it was the node's FATAL log in -p device:= words, after the random-weights banner, and 'exited early')."""
    import torch

    from dpt_ros.ros import params

    missing = "" if torch.cuda.is_available() else params.cuda_missing()   # (why, as the node's start-up line says)
    for bad, why in (("bogus", "argument --device: 'bogus' is not one of 'auto', 'cpu', 'cuda', 'cuda:N'"),
                     ("cuda:99", f"requested but CUDA is not available on this machine ({missing}); use --device cpu "
                                 f"(or --device auto, the GPU where there is one)" if not torch.cuda.is_available() else
                      f"argument --device: 'cuda:99': only {torch.cuda.device_count()} CUDA device(s) present; "
                      f"use --device cuda")):
        assert "-p device" not in usage_error(demo.parse_args, ["--device", bad], why).err
    assert demo.parse_args(["--device", "cpu"]).device == "cpu" and demo.parse_args([]).device == "auto"


def test_values_the_node_or_camera_would_refuse_are_the_demos_usage_errors_in_its_own_words(usage_error):
    """fp16 on the CPU, an --input-size or --weights the node refuses, a --rate / --width / --height outside the
    camera's range: argparse's error naming the option and what to give, before anything starts (each was the node's
    or the camera's log in -p words, after the random-weights banner, then 'exited early')."""
    import torch

    cases = [(["--input-size", "100"], "argument --input-size: 100 is not a multiple of 32: use 96 or 128 (allowed: "
                                       "0..2048 in steps of 32)"),
             (["--input-size", "4096"], "argument --input-size: 4096 out of range 0..2048 in steps of 32: use 2048"),
             (["--input-size", "16"], "argument --input-size: 16 is not a multiple of 32: use 32, or 0 for the "
                                      "variant's own size"),
             (["--input-size", "1.5"], "argument --input-size: '1.5' is not a whole number"),
             (["--weights", "/nonexistent/w.pt"], "argument --weights: file '/nonexistent/w.pt' does not exist (give "
                                                  "a checkpoint path, or 'random')"),
             (["--rate", "0"], "argument --rate: 0 out of range 0.01..1000"),
             (["--width", "-1"], "argument --width: -1 out of range 0..8192"),
             (["--height", "9000"], "argument --height: 9000 out of range 0..8192"),
             (["--device", "cpu", "--precision", "fp16"], "error: --precision fp16 is not supported on the CPU "
                                                          "(--device cpu); use --precision fp32 or bf16")]
    if not torch.cuda.is_available():
        cases.append((["--precision", "fp16"], "error: --precision fp16 is not supported on the CPU (--device auto "
                                               "finds no CUDA on this machine); use --precision fp32 or bf16"))
    for argv, why in cases:
        assert ":=" not in usage_error(demo.parse_args, argv, why).err
    args = demo.parse_args(["--input-size", "0", "--weights", "random", "--rate", "0.5", "--width", "0",
                            "--device", "cpu", "--precision", "bf16"])
    assert (args.input_size, args.weights, args.rate, args.width, args.precision) == (0, "random", 0.5, 0, "bf16")


def test_the_demo_gives_its_processes_the_installed_packages_fastdds_profile(tmp_path, monkeypatch):
    """From a colcon install the demo pointed FASTDDS_DEFAULT_PROFILES_FILE at <site-packages>/config/..., where no
    config/ is installed: every process then logged Fast DDS's XMLPARSER error and ran without the large
    shared-memory segment. It takes the installed share/dpt_ros/config/ file (the checkout's without an install),
    and a profile the shell names stays."""
    prefix = tmp_path / "install"
    (prefix / "share" / "ament_index" / "resource_index" / "packages").mkdir(parents=True)
    (prefix / "share" / "ament_index" / "resource_index" / "packages" / "dpt_ros").write_text("")
    (prefix / "share" / "dpt_ros" / "config").mkdir(parents=True)
    installed = prefix / "share" / "dpt_ros" / "config" / "fastdds_large_data.xml"
    installed.write_bytes((Path(__file__).resolve().parents[2] / "config" / "fastdds_large_data.xml").read_bytes())
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(prefix))
    env = demo.dds_environment({"ROS_DOMAIN_ID": "71"})
    assert env == {"ROS_DOMAIN_ID": "71", **localhost_only({}), "FASTDDS_DEFAULT_PROFILES_FILE": str(installed)}
    own = demo.dds_environment({"ROS_DOMAIN_ID": "71", "FASTDDS_DEFAULT_PROFILES_FILE": "/etc/my_profile.xml"})
    assert own["FASTDDS_DEFAULT_PROFILES_FILE"] == "/etc/my_profile.xml"
    monkeypatch.delenv("AMENT_PREFIX_PATH")
    checkout = Path(__file__).resolve().parents[2] / "config" / "fastdds_large_data.xml"
    assert demo.dds_environment({"ROS_DOMAIN_ID": "71"})["FASTDDS_DEFAULT_PROFILES_FILE"] == str(checkout)


def test_default_weights_are_the_official_file_in_weights_when_present(tmp_path, monkeypatch):
    monkeypatch.setattr(demo, "REPO", tmp_path)
    assert demo.default_weights("dpt_hybrid") == "random"
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "dpt_hybrid-midas-501f0c75.pt").write_bytes(b"x")
    assert demo.default_weights("dpt_hybrid") == str(tmp_path / "weights" / "dpt_hybrid-midas-501f0c75.pt")
    assert demo.default_weights("dpt_large") == "random"   # another variant's file is not taken
    assert demo.default_weights("dpt_tiny") == "random"    # no release at all



@pytest.mark.parametrize("argv, why", [
    (["--frames", "0"], "argument --frames: 0 is no number of frames: give at least 1"),
    (["--frames", "-8"], "argument --frames: -8 is no number of frames: give at least 1"),
    # (a negative limit gave up at once, with the node and the camera started; NaN never gave up)
    (["--timeout", "-1"], "argument --timeout: -1 is no time limit: give more than 0 seconds"),
    (["--timeout", "0"], "argument --timeout: 0 is no time limit: give more than 0 seconds"),
    (["--timeout", "nan"], "argument --timeout: nan is no time limit"),
    # (the camera refused it at its start, and the demo said 'sample_camera exited early with code 2' once the node
    # had loaded its model)
    (["--source", "/nonexistent/frames"], "argument --source: source '/nonexistent/frames' is neither "
                                          "'builtin[:names]', an image file, an image folder nor a video file"),
    (["--source", "builtin:astronaut,nosuch"], "argument --source: unknown built-in image 'nosuch'; choose from"),
    # (said to be a typo of a file or folder, where the camera reads no streams)
    (["--source", "rtsp://cam/stream"], "argument --source: source 'rtsp://cam/stream' is neither 'builtin[:names]', an "
                                        "image file, an image folder nor a video file: the sample camera reads files, "
                                        "not streams (rtsp://): run the camera's ROS driver"),
    # (Path('') is the working folder: the frames and summary.json were written there)
    (["--out", ""], "argument --out: no folder given (an empty path); give the folder to write into (made if it does "
                    "not exist), or . for the working folder"),
])
def test_demo_refuses_what_it_cannot_use_as_a_usage_error_before_anything_starts(argv, why, usage_error, monkeypatch,
                                                                                   tmp_path):
    import subprocess

    monkeypatch.setattr(subprocess, "Popen", lambda *a, **k: pytest.fail(f"{argv} was taken and a process started"))
    usage_error(demo.main, ["--out", str(tmp_path / "out"), *argv], why)
    assert not (tmp_path / "out").exists()


def test_demo_refuses_a_ros_domain_id_no_node_can_use_before_anything_starts(usage_error, monkeypatch, tmp_path):
    """The demo runs its node, camera and collector on ROS_DOMAIN_ID where it is set: one above 232 ended each of
    them at its first node (exit status 1, Fast DDS's 'port number is too high') once started."""
    import subprocess

    monkeypatch.setattr(subprocess, "Popen", lambda *a, **k: pytest.fail("a process started"))
    monkeypatch.setenv("ROS_DOMAIN_ID", "233")
    usage_error(demo.main, ["--out", str(tmp_path / "out")], "error: ROS_DOMAIN_ID=233 is no usable ROS domain (Fast "
                "DDS's ports for a domain above 232 pass 65535: its first node ends the process): set it to 0..232")
    monkeypatch.setenv("ROS_DOMAIN_ID", "232")
    assert demo.parse_args([]).frames == 8


def test_the_demo_leaves_its_callers_umask_environment_and_signal_handlers_as_they_were(tmp_path, monkeypatch):
    """demo.main() set the umask (no world-writable outputs), the DDS environment its processes share (a ROS domain,
    localhost discovery, the Fast DDS profile) and handlers of SIGINT and SIGTERM, and left them so: called in-process
    (a test, another tool), its caller kept them for good (a Ctrl-C then only set the demo's old flag). Each is set
    back when main returns or raises (one failure injected: the node's process cannot be started, after they were
    set)."""
    import signal
    import subprocess

    from dpt_ros.ros.dds_env import PROFILE_VARIABLES

    def cannot_start(*args, **kwargs):
        raise OSError("a planted failure to start the node's process")

    monkeypatch.setattr(subprocess, "Popen", cannot_start)
    for key in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE", *PROFILE_VARIABLES):
        monkeypatch.delenv(key, raising=False)
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    environ = dict(os.environ)
    own = os.umask(0o020)   # (without 0o002, which the demo adds)
    try:
        with pytest.raises(OSError, match="a planted failure"):
            demo.main(["--out", str(tmp_path / "out"), "--variant", "dpt_tiny", "--weights", "random"])
        assert os.umask(0o020) == 0o020, "the demo left the caller's umask changed"
    finally:
        os.umask(own)
    assert dict(os.environ) == environ, "the demo left the caller's environment changed"
    assert {sig: signal.getsignal(sig) for sig in handlers} == handlers, "the demo left its signal handlers installed"


def test_demo_takes_a_folder_or_video_source_whose_first_frame_reads(tmp_path, usage_error):
    import cv2
    import numpy as np

    (tmp_path / "frames").mkdir()
    (tmp_path / "empty").mkdir()
    cv2.imwrite(str(tmp_path / "frames" / "a.png"), np.zeros((4, 6, 3), np.uint8))
    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    assert demo.parse_args(["--source", str(tmp_path / "frames")]).source == str(tmp_path / "frames")
    assert demo.parse_args([]).source == "builtin"
    for bad in ("empty", "broken.mp4"):
        usage_error(demo.parse_args, ["--source", str(tmp_path / bad)], "argument --source: ")


def test_demo_takes_one_image_file_and_says_why_one_does_not_read(tmp_path, usage_error):
    """--source photo.png (a user's first try) went to OpenCV's video reader: a float TIFF the folder source reads
    was refused on its own, and an empty PNG was "cannot open video"."""
    import cv2
    import numpy as np

    cv2.imwrite(str(tmp_path / "photo.png"), np.zeros((4, 6, 3), np.uint8))
    cv2.imwrite(str(tmp_path / "depthish.tiff"), np.full((4, 6), 0.25, np.float32))
    for name in ("photo.png", "depthish.tiff"):
        assert demo.parse_args(["--source", str(tmp_path / name)]).source == str(tmp_path / name)
    (tmp_path / "empty.png").write_bytes(b"")
    usage_error(demo.parse_args, ["--source", str(tmp_path / "empty.png")],
                f"argument --source: source {str(tmp_path / 'empty.png')!r}: the file is empty (0 bytes); give "
                f"builtin, an image file, a folder of images or a video file\n")


@pytest.mark.slow
def test_ctrl_c_keeps_the_frames_collected_so_far_and_says_so(tmp_path):
    """Ctrl-C in a terminal (SIGINT to the demo's whole process group, its two children too) after a few frames: one
    line, exit 130, no traceback from any of the three processes, the frames collected so far written with their
    summary, and no process left behind."""
    import signal
    import time

    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    out = tmp_path / "out"
    env = dict(os.environ, ROS_DOMAIN_ID=str(DOMAIN), **localhost_only())
    proc = subprocess.Popen([sys.executable, "-m", "dpt_ros.tools.demo", "--frames", "1000", "--out", str(out),
                             "--variant", "dpt_tiny", "--input-size", "64", "--device", "cpu", "--width", "160",
                             "--height", "120", "--rate", "10", "--timeout", "180"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    # both pipes read as they come (the demo's, which its node and camera write to too): a pipe nobody read while the
    # probe below waited for frames filled at 64 KiB, and the demo and its children blocked in their writes
    out_reader, err_reader = LineReader(proc), LineReader(proc, stream=proc.stderr)
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=DOMAIN)
    seen = []
    try:
        probe = rclpy.create_node("demo_probe", context=context)
        probe.create_subscription(Image, "/demo/inverse_depth", seen.append,
                                  QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
        executor = rclpy.executors.SingleThreadedExecutor(context=context)
        executor.add_node(probe)
        end = time.monotonic() + 150
        while len(seen) < 4 and time.monotonic() < end and proc.poll() is None:
            executor.spin_once(timeout_sec=0.1)
        assert len(seen) >= 4, "the demo published no frames:\n" + err_reader.text()[-3000:]
        # the demo keeps a frame once it holds its input too: its own subscriptions (to the camera and the node's
        # outputs) may match later than this probe's to the node's output (under load). So, before Ctrl-C: until
        # this probe sees all three of the demo's, then 5 more outputs (frames the camera sent since)
        topics = ("/demo/image", "/demo/inverse_depth", "/demo/inverse_depth/colored")

        def collector_subscribed():
            return all(any(i.node_name == "demo_collector" for i in probe.get_subscriptions_info_by_topic(t))
                       for t in topics)

        while not collector_subscribed() and time.monotonic() < end and proc.poll() is None:
            executor.spin_once(timeout_sec=0.1)
        assert collector_subscribed(), "the probe never saw the demo's own subscriptions"
        more = len(seen) + 5
        while len(seen) < more and time.monotonic() < end and proc.poll() is None:
            executor.spin_once(timeout_sec=0.1)
        assert len(seen) >= more, "the demo published no more frames"
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=60)
        stdout, stderr = out_reader.join(), err_reader.join()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        rclpy.try_shutdown(context=context)
    assert proc.returncode == 130, stderr[-2000:]
    assert "Traceback" not in stderr + stdout, stderr[-3000:]
    said = [line for line in stderr.splitlines() if line.startswith("demo: interrupted after ")]
    assert len(said) == 1 and said[0].endswith(" of 1000 frames"), stderr[-2000:]
    n = int(said[0].split()[3])
    summary = json.loads((out / "summary.json").read_text())
    assert n >= 1 and summary["frames"] == n
    assert sorted(p.name for p in out.glob("frame_*_inverse_depth.npy")) == [
        f"frame_{i:03d}_inverse_depth.npy" for i in range(n)]
    left = []
    for stat in Path("/proc").glob("[0-9]*/stat"):   # (field 6: the session id; the demo led its own session)
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:   # gone meanwhile
            continue
        if int(fields[3]) == proc.pid:
            left.append(stat.parent.name)
    assert left == [], f"processes of the demo's session still running: {left}"


def test_a_signal_to_the_demo_alone_as_its_children_start_stops_them(tmp_path):
    """SIGINT to the demo's own process only (kill -INT, an IDE's stop button), right after it has started dpt_node
    and sample_camera, before its ROS context is up: the demo stops both, says it was interrupted (130), no traceback
    (was: rclpy's handler or a KeyboardInterrupt ended the demo there and left both children running forever)."""
    import signal
    import time

    # the demo as `python -m` runs it; the real signal is sent to itself as soon as the second child has started
    code = """
import os, runpy, signal, subprocess, sys
signal.signal(signal.SIGINT, signal.default_int_handler)   # (as in a terminal)
real_popen, started = subprocess.Popen, []
class Popen(real_popen):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not any(str(a).startswith("dpt_ros.ros.") for a in args[0]):
            return   # (one started by a library)
        started.append(self.pid)
        print("child", self.pid, file=sys.stderr, flush=True)
        if len(started) == 2:
            os.kill(os.getpid(), signal.SIGINT)
subprocess.Popen = Popen
runpy.run_module("dpt_ros.tools.demo", run_name="__main__", alter_sys=True)
"""
    env = dict(os.environ, ROS_DOMAIN_ID=str(DOMAIN), **localhost_only())
    with open(tmp_path / "log", "w+") as log:   # (not a pipe: children left running would hold it open)
        proc = subprocess.run([sys.executable, "-c", code, "--frames", "2", "--out", str(tmp_path / "out"),
                               "--variant", "dpt_tiny", "--input-size", "64", "--device", "cpu", "--timeout", "60"],
                              env=env, stdout=log, stderr=subprocess.STDOUT, timeout=120)
        log.seek(0)
        proc.stderr = log.read()
    children = [int(line.split()[1]) for line in proc.stderr.splitlines() if line.startswith("child ")]

    def running_children():
        running = []
        for pid in children:
            try:
                state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
            except FileNotFoundError:
                continue
            if state != "Z":
                running.append(pid)
        return running

    # a child that was stopped is gone once it has exited (on a loaded machine, a while); one left running stays
    end = time.monotonic() + 10
    while running_children() and time.monotonic() < end:
        time.sleep(0.1)
    running = running_children()
    for pid in running:
        os.kill(pid, signal.SIGKILL)   # (not left behind by this test either)
    assert len(children) == 2, proc.stderr[-2000:]
    assert running == [], f"left running: {running}\n" + proc.stderr[-2000:]
    assert proc.returncode == 130 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "demo: interrupted after 0 of 2 frames" in proc.stderr, proc.stderr[-2000:]
    assert not (tmp_path / "out" / "summary.json").exists()


@pytest.mark.skipif(not os.path.exists("/proc/self/mountinfo"), reason="needs Linux's /proc")
@pytest.mark.parametrize("out", ["/proc/dpt_ros_demo_out/run", "/sys/fs/cgroup/dpt_ros_demo_out"])
def test_out_in_a_virtual_file_system_is_said_to_be_there(out, tmp_path):
    """--out /proc/x: mkdir said only 'No such file or directory' of a path whose folder, /proc, is there; the demo
    now says that /proc is the kernel's virtual file system, where nothing of the user's belongs, and what to give
    instead, before starting anything (exit 2). --out /sys/fs/cgroup/x, which mkdir made as root (a tmpfs under /sys
    here; in a cgroup mount, a control group), is refused so before it is made."""
    from dpt_ros.tools import kernel_folder, refuse_kernel_folder

    if out.startswith("/sys/") and not os.path.isdir("/sys/fs/cgroup"):
        pytest.skip("no /sys/fs/cgroup here")
    with pytest.raises(PermissionError):   # (checked first: a demo that made the folder is not run)
        refuse_kernel_folder(Path(out))
    try:
        res = subprocess.run([sys.executable, "-m", "dpt_ros.tools.demo", "--out", out,
                              "--variant", "dpt_tiny", "--weights", "random", "--device", "cpu"],
                             env=dict(os.environ, ROS_DOMAIN_ID="68", **localhost_only()),
                             capture_output=True, text=True, timeout=120)
    finally:
        made = os.path.isdir(out)
        if made:   # (not left behind; the demo writes nothing into it before its first frame)
            os.rmdir(out)
    assert res.returncode == 2 and not made, res.stderr
    assert res.stderr == (f"demo: cannot use the output folder {out}: {kernel_folder(Path(out))}, where no folder or "
                          f"file of yours belongs; give --out a path elsewhere, e.g. under your home folder "
                          f"({Path.home()})\n"), res.stderr
    if out.startswith("/proc/"):
        assert kernel_folder(Path(out)) == "/proc is in the kernel's virtual proc file system (mounted at /proc)"


def test_out_naming_a_file_is_said_to_be_a_file(tmp_path):
    """--out naming an existing regular file was refused with mkdir's 'File exists'; the demo now says that it is a
    file and what to do, before starting anything (exit 2), and leaves the file alone."""
    blocker = tmp_path / "results"
    blocker.write_text("mine")
    res = subprocess.run([sys.executable, "-m", "dpt_ros.tools.demo", "--out", str(blocker), "--variant", "dpt_tiny",
                          "--weights", "random", "--device", "cpu"],
                         env=dict(os.environ, ROS_DOMAIN_ID="68", **localhost_only()),
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2, res.stderr
    assert f"demo: cannot use the output folder {blocker}: {blocker} is a file, not a folder; give --out a folder" \
        in res.stderr and "File exists" not in res.stderr
    assert blocker.read_text() == "mine"


def test_a_file_that_cannot_be_written_is_named_and_the_demo_fails(tmp_path):
    """A frame file that could not be written (here the disk is full: frame_001_input.png links to /dev/full, which
    refuses every write with ENOSPC) went unreported: cv2.imwrite's False was ignored, summary.json listed the frame
    and the demo said '2 frames -> ...', exit 0 (np.save's OSError was a traceback). The demo names the file and the
    reason, writes no summary.json, exit 2."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "frame_001_input.png").symlink_to("/dev/full")
    env = dict(os.environ, ROS_DOMAIN_ID="68", **localhost_only())
    res = subprocess.run([sys.executable, "-m", "dpt_ros.tools.demo", "--frames", "2", "--out", str(out),
                          "--variant", "dpt_tiny", "--weights", "random", "--input-size", "64", "--device", "cpu",
                          "--width", "160", "--height", "120", "--rate", "10", "--timeout", "180"],
                         env=env, capture_output=True, text=True, timeout=400)
    assert res.returncode == 2, res.stderr[-2000:]
    assert (f"demo: cannot write {out / 'frame_001_input.png'}: No space left on device; frames written whole "
            f"to {out}/: 1, and no summary.json: free space on its disk") in res.stderr
    assert "Traceback" not in res.stderr and "frames ->" not in res.stdout
    assert not (out / "summary.json").exists()
    assert np.load(out / "frame_000_inverse_depth.npy").shape == (120, 160)
    assert cv2.imread(str(out / "frame_000_input.png")).shape == (120, 160, 3)
    assert cv2.imread(str(out / "frame_001_inverse_depth.png")).shape == (120, 160, 3)


def test_a_frame_file_cut_short_is_never_left_under_its_name(tmp_path, file_size_limit):
    """The frame files were written with a truncating open(): a demo killed while it wrote one (here for real: at the
    file size limit with SIGXFSZ's default action, the kernel ends the process part-way through the .npy, as SIGKILL
    or a power cut would) left a .npy cut short under the frame's name, which np.load then took for a frame. Each file
    is written beside its name and renamed into place: the killed write leaves only its temporary, which the next
    run's clear_previous_run removes; a write that fails (EFBIG here, as a full disk) leaves neither."""
    import signal

    out = tmp_path / "out"
    out.mkdir()
    depth = np.arange(120 * 160, dtype=np.float32).reshape(120, 160)
    rgb = np.zeros((120, 160, 3), np.uint8)
    assert len(demo.npy_bytes(depth)) > 4 * 4096
    code = ("import resource, signal, sys\nfrom pathlib import Path\nimport numpy as np\n"
            "from dpt_ros.tools import demo\n"
            "depth = np.arange(120 * 160, dtype=np.float32).reshape(120, 160)\n"
            "rgb = np.zeros((120, 160, 3), np.uint8)\n"
            "resource.setrlimit(resource.RLIMIT_CORE, (0, 0))\n"   # (no core file of the kill)
            "signal.signal(signal.SIGXFSZ, signal.SIG_DFL)\n"
            "resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))\n"
            "demo.write_frame(Path(sys.argv[1]), 0, depth, rgb, rgb)\n")
    p = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True, text=True, timeout=120)
    assert p.returncode == -signal.SIGXFSZ, p.stderr[-2000:]
    assert not (out / "frame_000_inverse_depth.npy").exists(), "a .npy cut short left under the frame's name"
    left = [f.name for f in out.iterdir()]
    assert left == [f".frame_000_inverse_depth.npy.partial-{left[0].split('-')[-1]}"], left
    demo.clear_previous_run(out)   # (the next run's, before it writes its frames)
    assert list(out.iterdir()) == []
    with file_size_limit(4096), pytest.raises(OSError) as e:
        demo.write_frame(out, 0, depth, rgb, rgb)
    assert e.value.strerror == "File too large" and e.value.filename == str(out / "frame_000_inverse_depth.npy")
    assert list(out.iterdir()) == []
    demo.write_frame(out, 0, depth, rgb, rgb)
    assert np.array_equal(np.load(out / "frame_000_inverse_depth.npy"), depth)
    assert cv2.imread(str(out / "frame_000_input.png")).shape == (120, 160, 3)
    assert sorted(f.name for f in out.iterdir()) == ["frame_000_input.png", "frame_000_inverse_depth.npy",
                                                     "frame_000_inverse_depth.png"]


def test_weights_under_another_name_are_taken_or_named_in_the_banner(tmp_path, monkeypatch):
    """make demo with weights/dpt_hybrid_384.pt (MiDaS v3's name for the same weights, which README says loads) or a
    download saved as 'dpt_hybrid-midas-501f0c75 (1).pt' ran random weights, its banner saying only 'Get
    dpt_hybrid-midas-501f0c75.pt into weights/'. The MiDaS v3 name is now taken; other checkpoint files in weights/
    are named in the banner, with how to use them."""
    monkeypatch.setattr(demo, "REPO", tmp_path)
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "dpt_hybrid_384.pt").write_bytes(b"x")
    assert demo.default_weights("dpt_hybrid") == str(weights / "dpt_hybrid_384.pt")
    (weights / "dpt_hybrid_384.pt").unlink()
    (weights / "dpt_hybrid-midas-501f0c75 (1).pt").write_bytes(b"x")
    (weights / "dpt-large-hf").mkdir()
    (weights / "dpt-large-hf" / "model.safetensors").write_bytes(b"x")
    (weights / "README.txt").write_text("notes")
    assert demo.default_weights("dpt_hybrid") == "random"
    text = demo.random_banner("dpt_hybrid", asked=False)
    flat = " ".join(line.strip("# ") for line in text.splitlines())
    assert ("weights/ holds, not dpt_hybrid-midas-501f0c75.pt: dpt-large-hf/: a Hugging Face snapshot, run it with "
            "--weights weights/dpt-large-hf dpt_hybrid-midas-501f0c75 (1).pt Pass another file with --weights "
            "weights/FILE, or if it is that file, rename it to dpt_hybrid-midas-501f0c75.pt.") in flat
    box = text.strip("\n").splitlines()
    assert len({len(line) for line in box}) == 1
    assert "weights/ holds" not in demo.random_banner("dpt_hybrid", asked=True)   # (random on purpose: no advice)


def test_a_snapshot_folder_in_weights_is_named_with_its_weights_argument_not_to_be_renamed(tmp_path, monkeypatch):
    """weights/ holding only Intel/dpt-hybrid-midas's snapshot folder (huggingface-cli download ... --local-dir
    weights/dpt-hybrid-midas): the random-weights banner listed it and advised 'if it is that file, rename it to
    dpt_hybrid-midas-501f0c75.pt', which, done to a folder, still ran random weights (the demo looks for that file).
    It now names it as a snapshot with the --weights that runs it, and gives no rename advice; the advice given runs
    it (the node takes a snapshot folder as its weights)."""
    from dpt_ros.model.checkpoint import resolve_weights_path

    monkeypatch.setattr(demo, "REPO", tmp_path)
    snap = tmp_path / "weights" / "dpt-hybrid-midas"
    snap.mkdir(parents=True)
    (snap / "config.json").write_text("{}")
    (snap / "model.safetensors").write_bytes(b"x")
    assert demo.default_weights("dpt_hybrid") == "random"
    box = demo.random_banner("dpt_hybrid", asked=False).strip("\n").splitlines()
    lines = [line.strip("#").strip() for line in box[1:-1]]
    assert lines[4:] == ["weights/ holds, not dpt_hybrid-midas-501f0c75.pt:",
                         "dpt-hybrid-midas/: a Hugging Face snapshot, run it with --weights weights/dpt-hybrid-midas"]
    assert len({len(line) for line in box}) == 1
    assert resolve_weights_path(tmp_path / "weights/dpt-hybrid-midas") == snap / "model.safetensors"


def test_release_files_in_weights_are_named_first_with_their_variant(tmp_path, monkeypatch):
    """Other variants' release files in weights/ (DPT-Large's download beside fine-tuned files) come first in the
    random-weights banner, each with the variant it is for and how to run it: they were listed alphabetically, the
    first three only, so 'a_finetune.pt, b.pt, c.pt, ...' hid dpt_large-midas-2f21e586.pt, and --weights (the advice)
    with a release file of another variant is refused."""
    monkeypatch.setattr(demo, "REPO", tmp_path)
    (tmp_path / "weights").mkdir()
    for name in ("a_finetune.pt", "b.pt", "c.pt", "dpt_large-midas-2f21e586.pt", "dpt_hybrid-ade20k-53898607.pt",
                 "dpt_large_384.pt"):
        (tmp_path / "weights" / name).write_bytes(b"x")
    box = demo.random_banner("dpt_hybrid", asked=False).strip("\n").splitlines()
    lines = [line.strip("#").strip() for line in box[1:-1]]
    assert lines[4:] == [
        "weights/ holds, not dpt_hybrid-midas-501f0c75.pt:",
        "dpt_large-midas-2f21e586.pt: dpt_large's, run it with --variant dpt_large",
        "dpt_large_384.pt: dpt_large's, run it with --variant dpt_large",
        "dpt_hybrid-ade20k-53898607.pt: dpt_hybrid_ade20k's (segmentation; the demo runs depth)",
        "and 3 more",
        "Pass another file with --weights weights/FILE, or if it is",
        "that file, rename it to dpt_hybrid-midas-501f0c75.pt."]
    assert len({len(line) for line in box}) == 1
    # the advice as given: --variant dpt_large takes the release file from weights/
    assert demo.default_weights("dpt_large") == str(tmp_path / "weights" / "dpt_large-midas-2f21e586.pt")
    # release files only: no --weights advice
    for name in ("a_finetune.pt", "b.pt", "c.pt"):
        (tmp_path / "weights" / name).unlink()
    flat = " ".join(line.strip("# ") for line in demo.random_banner("dpt_hybrid", asked=False).splitlines())
    assert "--variant dpt_large" in flat and "--weights" not in flat and "and 3 more" not in flat


def test_a_closed_or_full_stderr_keeps_the_refusal_off_stdout_and_its_exit_status(tmp_path, redirected):
    """--out naming a file, with stderr closed (2>&-): the refusal went onto stdout (a print to sys.stderr, None then,
    prints there); with stderr on a full disk (2>/dev/full), its OSError ended the demo with exit status 1, not the
    refusal's 2. Now the line is dropped, exit status 2, before anything starts."""
    blocker = tmp_path / "results"
    blocker.write_text("mine")
    argv = [sys.executable, "-m", "dpt_ros.tools.demo", "--out", blocker, "--variant", "dpt_tiny", "--weights",
            "random", "--device", "cpu"]
    env = dict(os.environ, ROS_DOMAIN_ID="68", **localhost_only())
    for redirection in ("2>&-", "2>/dev/full"):
        code, out = redirected(argv, redirection, env=env)
        assert code == 2 and "cannot use the output folder" not in out, (redirection, code, out)
    assert blocker.read_text() == "mine"


@pytest.mark.slow
@pytest.mark.parametrize("folder", ["2024", "shots #2"])
def test_a_source_whose_name_yaml_reads_otherwise_is_published_as_given(tmp_path, folder):
    """--source 2024 (a folder of one year's photos) or 'shots #2' passed the demo's check, then went to the camera
    unquoted as -p source:=2024 (YAML: the integer 2024, refused: "sample_camera exited early with code 2") or
    -p source:=shots #2 (YAML: 'shots', a comment after it); the camera gets the name as given."""
    (tmp_path / folder).mkdir()
    frame = np.zeros((120, 160, 3), np.uint8)
    frame[:, :80] = (200, 30, 10)
    cv2.imwrite(str(tmp_path / folder / "a.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    env = dict(os.environ, ROS_DOMAIN_ID=str(DOMAIN), **localhost_only())
    env["PYTHONPATH"] = os.pathsep.join([str(Path(demo.__file__).resolve().parents[2]), env.get("PYTHONPATH", "")])
    res = subprocess.run([sys.executable, "-m", "dpt_ros.tools.demo", "--frames", "1", "--out", "out",
                          "--variant", "dpt_tiny", "--input-size", "64", "--device", "cpu", "--source", folder,
                          "--width", "160", "--height", "120", "--rate", "10", "--timeout", "180"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=400)
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["camera"]["source"] == folder
    written = cv2.cvtColor(cv2.imread(str(tmp_path / "out" / "frame_000_input.png")), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(written, frame)


@pytest.mark.slow
def test_frames_are_collected_when_the_camera_is_much_faster_than_the_model(tmp_path):
    """The collector kept only the newest 200 camera frames, those with outputs too: with a camera some 40 times as
    fast as the model (make demo's 5 Hz beside 2.8 s a frame: 14 times), never more than a few of them had outputs,
    and the demo ended at --timeout with "only 8 of 30 frames processed". Each of the 30 frames is written, with the
    camera frame the node processed (its stamp's)."""
    out = tmp_path / "out"
    env = dict(os.environ, ROS_DOMAIN_ID=str(DOMAIN), **localhost_only())
    res = subprocess.run([sys.executable, "-m", "dpt_ros.tools.demo", "--frames", "30", "--out", str(out),
                          "--variant", "dpt_tiny", "--input-size", "384", "--device", "cpu",
                          "--width", "160", "--height", "120", "--rate", "50", "--timeout", "200"],
                         env=env, capture_output=True, text=True, timeout=400)
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    assert f"demo: 30 frames -> {out}/" in res.stdout
    summary = json.loads((out / "summary.json").read_text())
    stamps = [f["stamp_ns"] for f in summary["per_frame"]]
    assert summary["frames"] == 30 and stamps == sorted(set(stamps)) and len(stamps) == 30
    for i in range(30):
        assert cv2.imread(str(out / f"frame_{i:03d}_input.png")).shape == (120, 160, 3)
        assert np.load(out / f"frame_{i:03d}_inverse_depth.npy").shape == (120, 160)
