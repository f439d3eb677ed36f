"""bench_node_stages: the node's per-stage times, in process, on the CPU (figures are not asserted)."""
import json
import os

import pytest

pytest.importorskip("rclpy")

from dpt_ros.tools import bench_node_stages  # noqa: E402

DOMAIN = 72   # its own ROS domain (48 is test_ros_node_concurrency's)


def test_bench_node_stages_reports_every_stage(tmp_path, capfd):
    from dpt_ros.ros.dds_env import PROFILE_VARIABLES

    env_before = {key: os.environ.get(key) for key in PROFILE_VARIABLES}
    out = tmp_path / "stages.json"
    assert bench_node_stages.main(["--frames", "3", "--warmup", "1", "--width", "80", "--height", "60",
                                   "--input-size", "32", "--rates", "0", "25", "--profile", "5",
                                   "--also-with", "depth.encoding=16UC1,points.stride=4",
                                   "--domain", str(DOMAIN), "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    captured = capfd.readouterr()   # (the node's log lines come from C, on the process's stderr)
    printed = captured.out
    assert "back to back:" in printed and "at 25 Hz:" in printed
    # its frames are stamped as a camera stamps them: no warning of frames hours old (they were stamped in 1970)
    assert "before they arrived" not in captured.err, captured.err
    assert r["device"] == "cpu" and r["outputs"] == ["depth", "points"] and r["errors"] == {}
    assert r["subscribers"] == "process"   # and that process received every output (checked by the tool)
    # the Fast DDS profile the README recommends for images, as bench_e2e's processes use it (without it a 1.2 MB
    # output goes through UDP fragments, and the publish stage measures that); this process's own env is put back
    assert r["dds_profile"] == "fastdds_large_data.xml" and "DDS: fastdds_large_data.xml" in printed
    assert {key: os.environ.get(key) for key in PROFILE_VARIABLES} == env_before
    assert set(r["stages_ms"]) == set(bench_node_stages.STAGES)
    assert all(v >= 0 for v in r["stages_ms"].values()) and r["stages_ms"]["model"] > 0
    assert 0 < r["node_overhead_fraction"] < 1
    assert r["overhead_ms"] == pytest.approx(r["node_total_ms"] - r["stages_ms"]["model"], abs=0.01)
    # the first run's figures are the top level; the second was paced at 25 Hz (40 ms per frame at least)
    first, paced, also = r["runs"]
    assert first == {k: r[k] for k in first} and first["rate_hz"] == 0 and paced["rate_hz"] == 25
    # --also-with: the same node once more at the first rate, with those parameters set live (typed as YAML)
    assert also["rate_hz"] == 0 and also["parameters"] == {"depth.encoding": "16UC1", "points.stride": 4}
    assert "back to back with depth.encoding=16UC1, points.stride=4:" in printed and printed.count("cProfile, ") == 3
    assert paced["wall_ms_per_frame"] >= 40.0 and set(paced["stages_ms"]) == set(bench_node_stages.STAGES)
    assert "profile" not in r and not any("profile" in run for run in r["runs"])   # printed, not in the JSON


def _children() -> set[int]:
    """This process's child processes, running or ended but not yet reaped (zombies)."""
    children = set()
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except (FileNotFoundError, ProcessLookupError):   # (ended meanwhile)
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == os.getpid():   # (its parent: the field after the state)
            children.add(int(entry))
    return children


def test_an_interrupted_run_reports_the_runs_it_measured(tmp_path, monkeypatch):
    """gpu_check ends a step past its time with SIGINT: the runs measured by then are written and printed (status
    130) instead of lost with the rest. Here the interrupt lands in the 25 Hz run, after the back-to-back run and
    its profiled frames."""
    calls = []
    frames = bench_node_stages._frames

    def interrupted_in_the_third(*args, **kwargs):
        calls.append(args[1])
        if len(calls) == 3:   # back to back, its profile, then the 25 Hz run's frames
            raise KeyboardInterrupt   # what SIGINT's default handler raises where the run is
        return frames(*args, **kwargs)

    monkeypatch.setattr(bench_node_stages, "_frames", interrupted_in_the_third)
    out = tmp_path / "stages.json"
    try:
        code = bench_node_stages.main(["--frames", "3", "--warmup", "1", "--width", "80", "--height", "60",
                                       "--input-size", "32", "--rates", "0", "25", "--profile", "5",
                                       "--domain", str(DOMAIN), "--json", str(out)])
    except KeyboardInterrupt:
        pytest.fail("the interrupt escaped: the run measured was lost")
    assert code == 130 and calls == [0.0, 0.0, 25.0]
    r = json.loads(out.read_text())
    assert [run["rate_hz"] for run in r["runs"]] == [0.0] and r["rate_hz"] == 0.0
    assert r["stages_ms"]["model"] > 0 and "after 1 of 2 runs" in r["interrupted"]


def test_a_failed_run_leaves_no_subscriber_process_behind(monkeypatch):
    """A run that fails midway ends its subscriber process and reaps it before the error reaches the caller. Was:
    killed, never waited for, so a zombie stayed for as long as the caller held on to the error (a caller that
    catches it and goes on), the killed process's entry left in the process table."""
    def failing(*args, **kwargs):
        raise RuntimeError("injected: the node failed a frame")

    monkeypatch.setattr(bench_node_stages, "_frames", failing)
    before = _children()
    with pytest.raises(RuntimeError, match="injected") as failed:   # (held here: the run's frame with it)
        bench_node_stages.main(["--frames", "3", "--warmup", "1", "--width", "80", "--height", "60",
                                "--input-size", "32", "--rates", "0", "--profile", "0", "--domain", str(DOMAIN)])
    assert failed.value and _children() <= before, f"not reaped: {_children() - before}"


def test_also_with_refused_values_say_why():
    assert bench_node_stages._parse_changes("depth.scale=1, depth.encoding=16UC1,points.enabled=false") == \
        {"depth.scale": 1, "depth.encoding": "16UC1", "points.enabled": False}
    assert bench_node_stages.parse_args(["--also-with", "depth.encoding=16UC1", "--also-with",
                                         "points.stride=4,depth.shift=0.5"]).also_with \
        == [{"depth.encoding": "16UC1"}, {"points.stride": 4, "depth.shift": 0.5}]
    # the node's -p form, NAME:=VALUE, as sros2_policy --param and the README's commands write it (was: "unknown
    # parameter 'colormap:' refused: ... did you mean 'colormap'?", the name the user had written)
    assert bench_node_stages._parse_changes("colormap:=turbo, points.stride:=4,depth.shift=0.5") == \
        {"colormap": "turbo", "points.stride": 4, "depth.shift": 0.5}


@pytest.mark.parametrize("argv, why", [
    # (--frames over 300 was refused by run, exit status 1; the others reached the run)
    (["--frames", "0"], "argument --frames: 0 is no number of frames: give 1..300 (the node keeps its last 300 stage "
                        "times)"),
    (["--frames", "301"], "argument --frames: 301 is no number of frames: give 1..300"),
    (["--frames", "1.5"], "argument --frames: '1.5' is not a whole number"),
    (["--warmup", "-1"], "argument --warmup: -1 is no number of warm-up frames: give at least 0"),
    # a negative or NaN rate ran back to back but was reported as that rate; infinity likewise
    (["--rates", "0", "-30"], "argument --rates: -30 is no rate: give more than 0 Hz, or 0 to run the frames back to "
                              "back"),
    (["--rates", "nan"], "argument --rates: nan is no rate"),
    (["--rates", "inf"], "argument --rates: inf is no rate"),
    # a negative one printed all but the last N functions of the profile
    (["--profile", "-5"], "argument --profile: -5 is no number of functions: give at least 1, or 0 to profile "
                          "nothing"),
    # (found only after every rate had been measured, with a SystemExit)
    (["--also-with", "depth.encoding"], "argument --also-with: 'depth.encoding' is not NAME=VALUE[,NAME=VALUE]: give "
                                        "e.g. depth.encoding=16UC1"),
    (["--also-with", "depth.encoding=16UC1,=2"], "argument --also-with: 'depth.encoding=16UC1,=2' is not NAME=VALUE"),
    # what the node refuses of a live change (found by its set_parameters after every rate had been measured: 'the
    # node refused ...', a SystemExit), by its own checks
    (["--also-with", "depth.encodng=16UC1"], "argument --also-with: unknown parameter 'depth.encodng' refused: this "
                                             "node does not have it: did you mean 'depth.encoding'?"),
    (["--also-with", "depth.encoding=16UC2"], "argument --also-with: depth.encoding='16UC2' is not one of 32FC1, "
                                              "16UC1"),
    (["--also-with", "qos.output_depth=2"], "argument --also-with: qos.output_depth is read-only on dpt_node: give it "
                                            "at start-up"),
    # what the node's set_parameters refuses beyond one value's type, range and choices: the colour maps and the checks
    # across parameters, from the benchmark's start-up values (these too were found only after every rate)
    (["--also-with", "colormap=nope"], "argument --also-with: colormap='nope' is not one of turbo, inferno, "),
    (["--also-with", "depth.min=2000.0"], "argument --also-with: depth.min (2000) must be below depth.max (1000)"),
    (["--also-with", "depth.variant=dpt_hybrid_ade20k"], "argument --also-with: depth.variant='dpt_hybrid_ade20k' is "
                                                         "not a depth variant"),
    (["--device", "cpu", "--also-with", "precision=fp16"], "argument --also-with: precision fp16 is not supported on "
                                                           "the CPU (device 'cpu'); use fp32 or bf16"),
])
def test_bench_node_stages_refuses_counts_rates_and_changes_it_cannot_use_before_it_starts(argv, why, usage_error,
                                                                                          monkeypatch):
    """Every bad value is argparse's usage error (exit 2, naming the option and what to give), before the node or
    anything else starts: run is never reached."""
    monkeypatch.setattr(bench_node_stages, "run", lambda args: pytest.fail(f"{argv} was taken and the run started"))
    usage_error(bench_node_stages.main, argv, why)
    args = bench_node_stages.parse_args(["--frames", "300", "--warmup", "0", "--rates", "0", "30", "--profile", "0"])
    assert (args.frames, args.warmup, args.rates, args.profile) == (300, 0, [0.0, 30.0], 0)


def test_domains_default_to_ros_domain_id(monkeypatch):
    """Like bench_e2e, the ROS benchmarks run on ROS_DOMAIN_ID when no --domain is given (else their own)."""
    from dpt_ros.tools import bench_lifecycle, bench_publish

    monkeypatch.setenv("ROS_DOMAIN_ID", "77")
    for parse in (bench_node_stages.parse_args, bench_lifecycle.parse_args, bench_publish.parse_args):
        assert parse([]).domain == 77
    for unset in ("", " ", None):   # empty (rcl's default domain) or unset: the tool's own
        if unset is None:
            monkeypatch.delenv("ROS_DOMAIN_ID")
        else:
            monkeypatch.setenv("ROS_DOMAIN_ID", unset)
        assert [p([]).domain for p in (bench_node_stages.parse_args, bench_lifecycle.parse_args,
                                       bench_publish.parse_args)] == [88, 87, 89]


def test_the_ros_benchmarks_refuse_a_domain_no_node_can_use_as_a_usage_error(usage_error, monkeypatch):
    """--domain (and ROS_DOMAIN_ID, its default) outside 0..232: a negative one was refused by rclpy.init only after
    bench_e2e had started its node, one above 232 ended every process of the run at its first node (Fast DDS's
    ports pass 65535); both are argparse's error, naming the range, before anything starts."""
    from dpt_ros.ros.dds_env import DOMAIN_MAX
    from dpt_ros.tools import bench_e2e, bench_lifecycle, bench_publish

    parsers = (bench_e2e.parse_args, bench_node_stages.parse_args, bench_lifecycle.parse_args, bench_publish.parse_args)
    refused = [(["--domain", "233"], "argument --domain: 233 is no usable ROS domain (Fast DDS's ports for a domain "
                                     "above 232 pass 65535: its first node ends the process): give 0..232"),
               (["--domain", "1000"], "argument --domain: 1000 is no usable ROS domain"),
               (["--domain", "-1"], "argument --domain: -1 is no usable ROS domain: give 0..232"),
               (["--domain", "8x"], "argument --domain: '8x' is not a whole number")]
    assert DOMAIN_MAX == 232
    for parse in parsers:
        for argv, why in refused:
            usage_error(parse, argv, why)
        assert [parse(["--domain", d]).domain for d in ("0", "232")] == [0, 232]
    monkeypatch.setenv("ROS_DOMAIN_ID", "233")
    for parse in parsers:
        err = usage_error(parse, [], "argument --domain: ROS_DOMAIN_ID=233, the default, is no usable ROS domain "
                                     "(Fast DDS's").err
        assert "give --domain 0..232, or set ROS_DOMAIN_ID to one" in err, err
        assert parse(["--domain", str(DOMAIN)]).domain == DOMAIN   # (an explicit --domain is not the default's)


def test_the_ros_benchmarks_refuse_a_json_file_they_cannot_write_before_they_start(tmp_path, usage_error, monkeypatch):
    """--json naming a folder, a file in a folder that does not exist, or nothing: the write after the whole run
    failed (IsADirectoryError, FileNotFoundError), its results lost; now argparse's usage error before anything
    starts."""
    from dpt_ros.tools import bench_e2e, bench_lifecycle, bench_publish

    refused = [(str(tmp_path), f"argument --json: '{tmp_path}' is a folder; give a file name"),
               (str(tmp_path / "no_dir" / "r.json"), f"argument --json: {tmp_path / 'no_dir' / 'r.json'}: no folder "
                                                     f"{tmp_path / 'no_dir'}; give a file in a folder that exists"),
               ("", "argument --json: no file name given (an empty path); give a file name")]
    for tool in (bench_e2e, bench_node_stages, bench_lifecycle, bench_publish):
        monkeypatch.setattr(tool, "run", lambda *a, **k: pytest.fail("the run started"))
        for path, why in refused:
            usage_error(tool.main, ["--json", path], why)
        assert tool.parse_args(["--json", str(tmp_path / "r.json")]).json == str(tmp_path / "r.json")
        assert tool.parse_args([]).json is None


@pytest.mark.skipif(not __import__("os").path.isdir("/sys/fs/cgroup"), reason="needs Linux's /sys and /proc")
def test_a_json_file_in_a_folder_of_the_kernels_is_refused_before_anything_starts(tmp_path, usage_error):
    """--json /sys/fs/cgroup/r.json or /dev/r.json was taken (as root the folder is there and writable), and the run's
    results were written there (a tmpfs under /sys, a devtmpfs) or lost when the write failed after the whole run: the
    file's folder now gets the check the tools' --out gets (refuse_kernel_folder), in output_folder_error's words; a
    file in /dev/shm (the user's tmpfs) is taken. (bench_model: test_tools_model_cli.py)"""
    import os
    from pathlib import Path

    from dpt_ros.tools import bench_e2e, bench_lifecycle, bench_publish, kernel_folder

    (tmp_path / "link").symlink_to("/sys/fs/cgroup")
    elsewhere = f"give --json a path elsewhere, e.g. under your home folder ({Path.home()})"
    for path, folder in (("/sys/fs/cgroup/dpt_ros_r.json", "/sys/fs/cgroup"), ("/dev/dpt_ros_r.json", "/dev"),
                         ("/proc/dpt_ros/r.json", "/proc/dpt_ros"),
                         (str(tmp_path / "link" / "dpt_ros_r.json"), "/sys/fs/cgroup")):
        why = f"argument --json: {path}: {kernel_folder(Path(folder))}, where no folder or file of yours belongs; "
        for tool in (bench_e2e, bench_node_stages, bench_lifecycle, bench_publish):
            usage_error(tool.parse_args, ["--json", path], why + elsewhere)
    assert not os.path.exists("/sys/fs/cgroup/dpt_ros_r.json") and not os.path.exists("/dev/dpt_ros_r.json")
    assert bench_publish.parse_args(["--json", "/dev/shm/dpt_ros_r.json"]).json == "/dev/shm/dpt_ros_r.json"


def test_a_domain_above_the_range_ends_the_process_at_its_first_node():
    """Why 232 is the limit: rclpy.init takes 233, but the first node's Fast DDS participant cannot have its ports,
    and the process ends (exit status 1, Fast DDS's 'port number is too high'); no Python exception is raised."""
    import os
    import subprocess
    import sys

    code = "import rclpy; rclpy.init(domain_id=233); print('init', flush=True); rclpy.create_node('x'); print('node')"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       env={k: v for k, v in os.environ.items() if k != "RMW_IMPLEMENTATION"})
    lines = p.stdout.splitlines()
    assert p.returncode == 1 and lines[0] == "init" and "node" not in lines, (p.stdout, p.stderr)
    assert "port number is too high" in p.stdout + p.stderr, (p.stdout, p.stderr)


def test_the_benchmarks_refuse_a_device_the_node_would_refuse_as_a_usage_error(usage_error):
    """The benchmarks that start the node pass --device on to it: one it would refuse is refused by argparse, naming
    --device and what to give (it was a traceback with the node's reason in -p device:= words, or 'configure failed
    (see the log above)')."""
    import torch

    from dpt_ros.tools import bench_e2e, bench_lifecycle

    cuda = "use --device cpu (or --device auto, the GPU where there is one)" if not torch.cuda.is_available() else \
        f"only {torch.cuda.device_count()} CUDA device(s) present; use --device cuda"
    for parse in (bench_e2e.parse_args, bench_lifecycle.parse_args, bench_node_stages.parse_args):
        for bad, why in (("bogus", "argument --device: 'bogus' is not one of 'auto', 'cpu', 'cuda', 'cuda:N'"),
                         ("cuda:99", cuda)):
            assert why in usage_error(parse, ["--device", bad], "argument --device: ").err
        assert parse(["--device", "auto"]).device == "auto" and parse([]).device == "cpu"


def test_the_benchmarks_refuse_values_the_node_would_refuse_as_usage_errors(usage_error):
    """--variant, --weights, --input-size, --stride, --outputs, --rate, --width / --height and the combinations fp16
    or --cuda-graphs on the CPU: argparse's error naming the option and what to give, by the node's (camera's) own
    checks (they were a traceback with the node's reason in -p words, 'configure failed (see the log above)', a
    KeyError, or bench_e2e waiting 120 s for a topic no node publishes)."""
    from dpt_ros.tools import bench_e2e, bench_lifecycle

    outputs = "give one or more of inverse_depth, inverse_depth/colored, depth, depth/camera_info, points, separated " \
              "by commas"
    common = [(["--variant", "bogus"], "argument --variant: invalid choice: 'bogus'"),
              (["--input-size", "100"], "argument --input-size: 100 is not a multiple of 32: use 96 or 128"),
              (["--precision", "fp16"], "error: --precision fp16 is not supported on the CPU (--device cpu); use "
                                        "--precision fp32 or bf16")]
    node = common + [(["--weights", "/nonexistent/w.pt"], "argument --weights: file '/nonexistent/w.pt' does not exist"),
                     # (the parameter's "not set": the node refused it at start-up, bench_node_stages with a traceback)
                     (["--weights", ""], "error: --weights: no weights file given (an empty path); give a checkpoint "
                                         "file, or 'random'"),
                     (["--stride", "0"], "argument --stride: 0 out of range 1..64"),
                     (["--outputs", "bogus"], f"argument --outputs: 'bogus' is no output of the benchmarks' node; "
                                              f"{outputs}"),
                     (["--outputs", "depth,x,y/z"], "argument --outputs: 'x', 'y/z' are no outputs of"),
                     (["--outputs", ","], f"argument --outputs: no topic named; {outputs}"),
                     (["--cuda-graphs"], "error: --cuda-graphs needs a CUDA device (--device cpu); leave --cuda-graphs "
                                         "out"),
                     (["--height", "-5"], "argument --height: -5 out of range 0..8192")]
    cases = {bench_e2e.parse_args: node + [(["--rate", "0"], "argument --rate: 0 out of range 0.01..1000")],
             bench_node_stages.parse_args: node + [(["--width", "0"], "error: --width and --height are the size of the "
                                                                      "frames it makes: at least 1; got 0x480")],
             bench_lifecycle.parse_args: common + [(["--precision", "fp64"], "argument --precision: invalid choice")]}
    for parse, refused in cases.items():
        for argv, why in refused:
            assert ":=" not in usage_error(parse, argv, why).err
    args = bench_e2e.parse_args(["--outputs", "inverse_depth,depth/camera_info", "--stride", "4", "--width", "0",
                                 "--input-size", "64", "--precision", "bf16"])
    assert (args.outputs, args.stride, args.width, args.input_size) == ("inverse_depth,depth/camera_info", 4, 0, 64)
    args = bench_node_stages.parse_args([])
    assert (args.outputs, args.stride, args.input_size, args.weights) == ("depth,points", 2, 64, "random")


def test_each_benchmark_s_help_gives_the_width_and_height_it_takes(capsys):
    """--width / --height's help is shared by the node benchmarks, and said what 0 means to bench_e2e's camera (the
    photographs' aspect, or their size) in bench_node_stages' --help too, which refuses 0 (it makes its frames at the
    size given): each --help now says what its tool takes, and the tool takes what its help says."""
    import re

    from dpt_ros.tools import bench_e2e

    def helps(parse):
        with pytest.raises(SystemExit) as info:
            parse(["--help"])
        assert info.value.code == 0
        text = " ".join(capsys.readouterr().out.split())
        return {name: re.search(rf"--{name} {name.upper()} (.*?) (?=--[a-z-]+ [A-Z_]+ )", text).group(1) for name in ("width", "height")}

    e2e, stages = helps(bench_e2e.parse_args), helps(bench_node_stages.parse_args)
    assert e2e == {"width": "frame width in pixels (default 640); 0 keeps each built-in photograph's aspect, or its "
                            "size with --height 0",
                   "height": "frame height in pixels (default 480); 0 keeps each built-in photograph's aspect, or its "
                             "size with --width 0"}, e2e
    assert stages == {"width": "frame width in pixels (default 640); at least 1: the frames are made at this size",
                      "height": "frame height in pixels (default 480); at least 1: the frames are made at this size"}
    for name in ("width", "height"):
        assert getattr(bench_e2e.parse_args([f"--{name}", "0"]), name) == 0
        with pytest.raises(SystemExit):
            bench_node_stages.parse_args([f"--{name}", "0"])
        assert "at least 1" in capsys.readouterr().err
        assert getattr(bench_node_stages.parse_args([f"--{name}", "1"]), name) == 1


@pytest.mark.parametrize("width, height", [(640, 480), (0, 480), (0, 0), (320, 0)])
def test_bench_e2e_records_the_sizes_of_the_frames_its_camera_sends(width, height):
    """--width / --height 0 is the camera's "keep the aspect" (both 0: each photograph's own size): the camera then
    sends frames of several sizes, and bench_e2e recorded "0x480" / "0x0" as the image size. It now records the sizes
    a sample_camera with those parameters sends, each once, in the order sent."""
    import rclpy
    from rclpy.parameter import Parameter

    from dpt_ros.ros.sample_camera import BUILTIN_IMAGES, SampleCamera
    from dpt_ros.tools import bench_e2e

    args = bench_e2e.parse_args(["--width", str(width), "--height", str(height)])
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=DOMAIN)
    try:
        cam = SampleCamera(context=context, parameter_overrides=[Parameter("width", value=args.width),
                                                                 Parameter("height", value=args.height)])
        try:
            sent = [cam.next_frame()[0].shape[:2] for _ in BUILTIN_IMAGES]
        finally:
            cam.destroy_node()
    finally:
        rclpy.try_shutdown(context=context)
    expected = ", ".join(dict.fromkeys(f"{w}x{h}" for h, w in sent))
    assert bench_e2e.camera_frame_sizes(args.width, args.height) == expected
    assert all(int(side) > 0 for size in expected.split(", ") for side in size.split("x")), expected
    if width and height:
        assert expected == f"{width}x{height}"
    elif height:
        assert expected == "480x480, 722x480, 720x480, 719x480, 550x480"   # the six photographs at height 480


def test_bench_e2e_gives_its_node_the_weights_file_it_checked(tmp_path, monkeypatch):
    """--weights is checked from this process's folder; the node, started in the repository, gets that file as an
    absolute path (a relative one would name another file there, or none)."""
    import torch

    from dpt_ros.tools import bench_e2e

    torch.save({"x": torch.zeros(1)}, tmp_path / "w.pt")
    monkeypatch.chdir(tmp_path)
    args = bench_e2e.parse_args(["--weights", "w.pt"])
    assert args.weights == "w.pt" and bench_e2e._absolute_weights(args.weights) == str(tmp_path / "w.pt")
    assert bench_e2e._absolute_weights("random") == "random"
    # a ~ path (quoted, or --weights=~/w.pt, which the shell leaves as it is): the check and the node expand it, and so
    # must the absolute path (it was <cwd>/~/w.pt, a file the node did not find after the check had passed)
    home = tmp_path / "home"
    home.mkdir()
    torch.save({"x": torch.zeros(1)}, home / "w.pt")
    monkeypatch.setenv("HOME", str(home))
    args = bench_e2e.parse_args(["--weights=~/w.pt"])
    assert args.weights == "~/w.pt" and bench_e2e._absolute_weights(args.weights) == str(home / "w.pt")


def test_stage_percentiles_are_the_nodes_one_helper():
    """The node's /diagnostics percentiles and both benchmarks' come from one helper (health.percentile), NumPy's
    linear percentile, NaN for no values."""
    import math

    import numpy as np

    from dpt_ros.ros import health
    from dpt_ros.tools import bench_e2e

    assert bench_node_stages.percentile is health.percentile and bench_e2e.percentile is health.percentile
    values = np.random.default_rng(3).exponential(2.0, 37).tolist()
    for q in (0, 50, 90, 99, 100):
        assert health.percentile(values, q) == float(np.percentile(values, q))
    assert health.percentile([4.0], 90) == 4.0 and math.isnan(health.percentile([], 50))


def _profiler_on() -> bool:
    """Whether a profiler (cProfile) is switched on in this thread (Python 3.12+: through sys.monitoring)."""
    import sys

    if sys.getprofile() is not None:
        return True
    monitoring = getattr(sys, "monitoring", None)
    return monitoring is not None and monitoring.get_tool(monitoring.PROFILER_ID) is not None


def test_profiled_frames_are_not_the_timed_ones():
    """--profile: the stage figures are of frames run without the profiler (its hook on every Python call slows the
    Python-heavy stages far more than the model: decode +56 % against model +18 % on the CPU, which inflated the
    overhead share gpu_check's run reported). The function table still comes, from frames of its own."""
    import statistics
    import time

    from dpt_ros.ros.node import _Frame
    from dpt_ros.ros.testing import Harness, node_ready_to_process

    harness = Harness(DOMAIN)   # (the first test's node is gone by then)
    try:
        node, cam, frame = node_ready_to_process(harness)
        calls = []   # (profiler on, the decode time the node recorded for the frame)

        def one(i):
            node.process([_Frame(cam, frame, time.monotonic())])
            calls.append((_profiler_on(), node._stage_ms["decode"][-1]))

        r = bench_node_stages._measure(node, one, 0.0, 4, 5)
        unprofiled = [ms for on, ms in calls if not on]
        assert len(unprofiled) == 4, calls
        assert r["stages_ms"]["decode"] == pytest.approx(statistics.fmean(unprofiled), abs=1e-3)
        assert "function calls" in r["profile"] and any(on for on, _ in calls)
    finally:
        harness.shutdown()


def test_a_paced_frame_that_overran_is_followed_at_the_next_tick_not_by_catch_up_frames(monkeypatch):
    """Paced at 64 Hz, frame 2 takes 4 periods: the frames after it start a period apart (the camera's next ticks, its
    frames meanwhile replaced by the newest), not back to back until the lost time is made up. On a clock of the
    test's own, which moves only by the pacing's sleeps and frame 2's work: on the real one, a frame woken a few ms
    late on a busy machine started less than 8 ms before the next one (132 of 200 runs beside two busy loops here)."""
    class Clock:   # (a period and an overrun that binary floating point holds exactly: the ticks are exact)
        now = 0.0

        @classmethod
        def perf_counter(cls):
            return cls.now

        @classmethod
        def sleep(cls, seconds):
            cls.now += max(0.0, seconds)

    monkeypatch.setattr(bench_node_stages, "time", Clock)
    period, starts = 1 / 64, []

    def one(i):
        starts.append(Clock.now)
        if i == 2:
            Clock.now += 4 * period

    bench_node_stages._frames(one, 64.0, 8)
    # frame 2 runs from tick 3 to tick 7; frame 3 starts at tick 7 (its own tick, 4, long gone), then one per tick
    assert starts == [k * period for k in (1, 2, 3, 7, 8, 9, 10, 11)], [s / period for s in starts]


def test_a_run_longer_than_the_nodes_stall_time_does_not_warn_of_a_missing_camera(tmp_path, capfd):
    """The tool hands its frames to the node's worker stage by stage, not through the image topic, whose callback is
    what notes an image's arrival: 5 s after subscribing, the node's diagnostics found no image and every longer run
    (gpu_check's among them) logged "no image yet (5 s since subscribing): check the image topic (/image) ...
    nothing publishes it (...): point the node at the camera's topic", advice for a camera this benchmark does not
    use. Each frame handed over now counts as the camera's last image."""
    out = tmp_path / "stages.json"
    assert bench_node_stages.main(["--frames", "14", "--warmup", "0", "--width", "80", "--height", "60",
                                   "--input-size", "32", "--rates", "2", "--domain", str(DOMAIN),
                                   "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["runs"][0]["wall_ms_per_frame"] >= 490.0   # (7 s of frames: past the node's 5 s without an image)
    err = capfd.readouterr().err
    assert "no image yet" not in err and "depth: dpt_tiny on cpu" in err, err


def test_a_dds_profile_that_is_no_file_is_a_usage_error(tmp_path, usage_error):
    """--dds-profile packge (or a path to nothing) was taken by argparse and found only once the run began:
    'FileNotFoundError: --dds-profile packge: no such file', a traceback, exit 1. Now both node benchmarks refuse it
    as a usage error before anything starts; 'package', 'none' and a file that exists are taken as given."""
    from dpt_ros.tools import bench_e2e

    profile = tmp_path / "profile.xml"
    profile.write_text("<profiles/>")
    give = "give 'package' (the package's large-data profile), 'none' (Fast DDS defaults) or a Fast DDS XML profile " \
           "file that exists"
    for parse in (bench_e2e.parse_args, bench_node_stages.parse_args):
        usage_error(parse, ["--dds-profile", "packge"],
                    f"argument --dds-profile: 'packge' names no file (nor is it 'package' or 'none'): {give}")
        usage_error(parse, ["--dds-profile", str(tmp_path / "nothing.xml")], "names no file")
        usage_error(parse, ["--dds-profile", str(tmp_path)], f"{str(tmp_path)!r} is a folder, not a profile file: {give}")
        for value in ("package", "none", str(profile)):
            assert parse(["--dds-profile", value]).dds_profile == value
    assert bench_e2e.dds_profile(str(profile)) == str(profile.resolve()) and bench_e2e.dds_profile("none") == ""


def test_a_subscriber_process_that_logs_more_than_a_pipe_holds_subscribes_while_the_run_waits(monkeypatch):
    """The subscriber process's output (a pipe) was read only when it was stopped: one that wrote more than the pipe
    holds (64 KiB, here warnings on stderr before it subscribes: the failure injected) blocked in that write while
    the run waited for its subscriptions ('discovery'), which never came. Its output is now read as it comes: it
    subscribes, and stopped, it gives its counts."""
    from dpt_ros.ros.testing import Harness, wait_for

    chatty = "import sys\nfor _ in range(1000):\n    sys.stderr.write('[WARN] chatty ' + 'w' * 100 + '\\n')\n"
    monkeypatch.setattr(bench_node_stages, "_SUBSCRIBER", chatty + bench_node_stages._SUBSCRIBER)
    harness = Harness(DOMAIN)
    proc = bench_node_stages._subscriber_process(["depth"], DOMAIN)
    try:
        wait_for(lambda: harness.probe.count_subscribers("/depth") > 0 or proc.poll() is not None, timeout=30,
                 what="the subscriber process's subscription of /depth")
        assert bench_node_stages._stop_subscriber(proc) == {"depth": 0}
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        harness.shutdown()
