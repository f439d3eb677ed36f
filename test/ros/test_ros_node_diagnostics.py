"""/diagnostics as its readers take it: status names as diagnostic_updater writes them (what diagnostic_aggregator's
analyzers match), and figures that belong to the model that runs now."""
import contextlib
import re
import time
from pathlib import Path

import pytest
from diagnostic_msgs.msg import DiagnosticStatus
from rcl_interfaces.msg import Log
from sensor_msgs.msg import Image, PointCloud2

from dpt_ros.ros.testing import (assert_no_image_yet, frame_through, gate_engine, make_image, make_info, qos, set_params,
                                 set_params_atomically, wait_for, worker_done)

README = Path(__file__).resolve().parents[2] / "README.md"

DOMAIN = 57


def _status(node, suffix):
    return next(s for s in node.diagnostics().status if s.name.endswith(suffix))


def test_status_names_are_the_node_name_without_its_leading_slash_as_diagnostic_updater_writes_them(harness):
    """rclcpp's diagnostic_updater names a status '<fully qualified node name without the leading slash>: <name>'
    (rclpy's: the node name): an aggregator analyzer set up with `startswith: [robot/dpt_node]` found nothing in
    '/robot/dpt_node: model'."""
    named = harness.start_node(namespace="robot")
    assert [s.name for s in named.diagnostics().status] == ["robot/dpt_node: model", "robot/dpt_node: camera /"]


def test_camera_status_names_and_a_disabled_tasks_keys_are_as_the_readme_says(harness):
    """README (Diagnostics): a camera's status is '<node>: camera <ns>', <ns> as in `cameras` ('/' for '', the
    node's own: the test above); a task that is off has only `<task>.model`: `disabled`."""
    node = harness.start_node(cameras=["left", "/abs/cam"])
    statuses = node.diagnostics().status
    assert [s.name for s in statuses] == ["dpt_node: model", "dpt_node: camera left", "dpt_node: camera /abs/cam"]
    keys = {kv.key: kv.value for kv in statuses[0].values}
    assert keys["segmentation.model"] == "disabled" and keys["depth.model"] == "dpt_tiny"
    assert [k for k in keys if k.startswith("segmentation.")] == ["segmentation.model"]
    assert {"depth.net_size", "depth.dtype", "depth.random_weights"} <= set(keys)


def test_a_silent_camera_of_an_incompatible_qos_is_said_to_be_that_not_a_dev_shm_of_its_own(harness, monkeypatch):
    """A camera that publishes best effort to qos.input_reliability:=reliable is discovered and never heard: its
    status said `1 publisher found on it, so if none is just idle: processes in containers ... /dev/shm ...`, while
    the node had logged the incompatible QoS and what to change. It now says that instead."""
    from dpt_ros.ros import health

    monkeypatch.setattr(health, "_STALL_S", 1.0)
    node = harness.start_node(**{"qos.input_reliability": "reliable", "diagnostics.period": 60.0})
    pub = harness.probe.create_publisher(Image, "image", qos("best_effort"))
    wait_for(lambda: node.count_publishers("/image") == 1, what="discovery")
    wait_for(lambda: "1 publisher found on it" in _status(node, ": camera /").message, what="the silent camera's WARN")
    wait_for(lambda: "incompatible QoS" in _status(node, ": camera /").message, timeout=5.0,
             what=f"the status to name the incompatible QoS; it says {_status(node, ': camera /').message!r}")
    status = _status(node, ": camera /")
    assert status.level == DiagnosticStatus.WARN
    assert status.message.startswith("no image yet (")
    assert status.message.endswith(
        " s since subscribing): check the image topic (/image) and the camera's QoS; 1 publisher found on it, of an "
        "incompatible QoS (policy RELIABILITY): a best-effort publisher cannot feed this reliable subscription: "
        "qos.input_reliability:=best_effort"), status.message
    assert pub.get_subscription_count() == 0


def test_a_qos_mismatch_is_said_only_while_a_publisher_of_that_qos_is_on_the_graph(harness, monkeypatch):
    """The status named the incompatible QoS from the last QoS event met on the topic, kept until it was subscribed
    anew: after the best-effort camera gave way to a reliable one that is silent (or to none), it still blamed QoS
    and told to set qos.input_reliability:=best_effort. It now judges the publishers on the graph at each report:
    how many there are, how many of them this subscription cannot take, and why. The log says each reason once."""
    from dpt_ros.ros import health

    monkeypatch.setattr(health, "_STALL_S", 1.0)
    log = harness.collector(Log, "/rosout")
    node = harness.start_node(**{"qos.input_reliability": "reliable", "diagnostics.period": 60.0})
    probe = harness.probe
    said = "; 1 publisher found on it, of an incompatible QoS (policy RELIABILITY): a best-effort publisher cannot " \
           "feed this reliable subscription: qos.input_reliability:=best_effort"

    def message():
        return _status(node, ": camera /").message

    best_effort = probe.create_publisher(Image, "image", qos("best_effort"))
    wait_for(lambda: node.count_publishers("/image") == 1, what="discovery")
    wait_for(lambda: message().endswith(said), what=f"the incompatible QoS; the status says {message()!r}")

    reliable = probe.create_publisher(Image, "image", qos())   # beside it: only one of the two is refused
    wait_for(lambda: reliable.get_subscription_count() == 1 and node.count_publishers("/image") == 2,
             what="the reliable publisher matched")
    assert message().endswith("; 2 publishers found on it, 1 of an incompatible QoS (policy RELIABILITY): a "
                              "best-effort publisher cannot feed this reliable subscription: "
                              "qos.input_reliability:=best_effort"), message()

    probe.destroy_publisher(best_effort)   # the reliable one stays, silent: nothing to change in QoS
    wait_for(lambda: node.count_publishers("/image") == 1, what="the best-effort publisher gone from the graph")
    status = _status(node, ": camera /")
    assert status.level == DiagnosticStatus.WARN and status.message.startswith("no image yet ("), status.message
    assert "incompatible" not in status.message and "; 1 publisher found on it, so if none is just idle: " \
        "processes in containers" in status.message, status.message

    probe.destroy_publisher(reliable)
    wait_for(lambda: node.count_publishers("/image") == 0, what="no publisher left")
    assert "incompatible" not in message() and "; nothing publishes it (Image topics with a publisher: " in \
        message(), message()

    probe.create_publisher(Image, "image", qos("best_effort"))   # a mismatch again is said again, as at first
    wait_for(lambda: node.count_publishers("/image") == 1, what="the second best-effort publisher discovered")
    assert message().endswith(said), message()

    def logged():
        return [m.msg for m in list(log) if m.name == "dpt_node" and m.msg.startswith("no image yet (")]
    wait_for(lambda: len(logged()) >= 3, what=f"the three reasons logged; got {logged()}")
    time.sleep(0.2)   # (a fourth, the mismatch said again, would be here by now)
    lines = logged()
    assert len(lines) == 3 and lines[0].endswith(said) and "; 1 publisher found on it, so if none is just idle" in \
        lines[1] and "; nothing publishes it (" in lines[2], lines


def test_net_input_after_a_live_size_change_is_the_new_models(harness):
    """depth.net_input is the last batch's network input of the model that runs: after `ros2 param set input_size`
    swapped a model in, it said the old model's shape beside the new net_size until the next frame."""
    node = harness.start_node()   # input_size 64: 80x60 frames run at 64x96 (aspect kept)
    out = harness.collector(Image, "inverse_depth")
    pub = harness.probe.create_publisher(Image, "image", qos())
    wait_for(lambda: pub.get_subscription_count() > 0 and
             node.cameras[0].pubs["inverse_depth"].get_subscription_count() > 0, what="discovery")
    pub.publish(make_image(1))
    wait_for(lambda: node.counts()[""].get("processed", 0) == 1, what="the first frame counted")
    kv = {v.key: v.value for v in _status(node, ": model").values}
    assert (kv["depth.net_size"], kv["depth.net_input"]) == ("64x64", "64x96")
    assert set_params(harness, node, input_size=128)[0].successful
    wait_for(lambda: node.models.depth_pre.net_size == (128, 128), timeout=30, what="the 128 px model swapped in")
    kv = {v.key: v.value for v in _status(node, ": model").values}
    assert kv["depth.net_size"] == "128x128" and "depth.net_input" not in kv   # no batch of the new model yet
    pub.publish(make_image(2))
    wait_for(lambda: len(out) == 2 and node.counts()[""].get("processed", 0) == 2, what="the second frame counted")
    h, w = node.models.depth_pre.input_size(60, 80)
    kv = {v.key: v.value for v in _status(node, ": model").values}
    assert kv["depth.net_input"] == f"{h}x{w}" != "64x96"


def _readme_keys(title: str) -> list:
    """The keys README's Diagnostics table under ``title`` names, as patterns: a row's first cell holds backticked
    keys, ``{a,b}`` one key per alternative, ``<reason>`` / ``<topic>`` any text, ``segmentation.*`` its prefix."""
    text = README.read_text()
    section = text[text.index("### Diagnostics (`/diagnostics`)"):text.index("### Launch files")]
    table = section[section.index(title):]
    rows = [line for line in table.split("\n\n", 2)[1].splitlines() if line.startswith("| `")]
    patterns = []
    for row in rows:
        for key in re.findall(r"`([^`]+)`", row.split("|")[1]):
            alternatives = re.match(r"(.*)\{(.*)\}(.*)", key)
            for k in ([alternatives[1] + a + alternatives[3] for a in alternatives[2].split(",")] if alternatives
                      else [key]):
                patterns.append(re.escape(k).replace(re.escape("<reason>"), ".+").replace(re.escape("<topic>"), ".+")
                                .replace(re.escape("*"), ".+"))
    return patterns


def test_every_key_a_node_publishes_is_one_the_readme_diagnostics_tables_name(harness):
    """A user reads README's Diagnostics tables to know what a key means: every key of a running node's two
    statuses (depth and segmentation, points with labels, camera_info, frames processed and some left without
    camera_info, so that counters by reason and per output appear too) must be one of its table's rows."""
    node = harness.start_node(**{"depth.scale": 1.0, "depth.shift": 0.5, "segmentation.variant": "dpt_hybrid_ade20k",
                                 "segmentation.weights": "random", "input_size": 32, "points.label": True})
    got, (pub, info_pub) = harness.connect(node, {"depth": Image, "points": PointCloud2, "segmentation": Image})
    frame = make_image(1)
    pub.publish(frame)   # (no camera_info yet: depth and segmentation go out, points do not)
    wait_for(lambda: len(got["depth"]) == 1, timeout=30, what="the first frame's depth")
    info_pub.publish(make_info(frame))
    wait_for(lambda: node.cameras[0].infos, what="camera_info received")
    pub.publish(make_image(2))
    # (its outputs are counted after they are published)
    wait_for(lambda: len(got["points"]) == 1 and worker_done(node), timeout=30, what="the second frame's points")
    statuses = {s.name.split(": ", 1)[1].split(" ")[0]: {v.key for v in s.values} for s in node.diagnostics().status}
    for status, title in (("model", "**`<node>: model`**"), ("camera", "**`<node>: camera <ns>`**")):
        patterns = _readme_keys(title)
        assert len(patterns) >= 10, patterns
        missing = sorted(k for k in statuses[status] if not any(re.fullmatch(p, k) for p in patterns))
        assert missing == [], f"{status} status keys README's Diagnostics table does not name: {missing}"
    assert {"incomplete.no_camera_info", "out.depth", "out.points", "segmentation.model"} <= \
        statuses["camera"] | statuses["model"]


def test_a_camera_that_went_silent_says_whether_its_topic_still_has_a_publisher_and_of_which_qos(harness, monkeypatch):
    """After a camera had sent images, its status said only "no image for N s", whether the driver had stopped (no
    publisher left), stalled, or come back with a QoS the subscription cannot take (a driver restarted with
    reliability best_effort to a node at qos.input_reliability:=reliable): the last gave no hint at all."""
    from dpt_ros.ros import health

    monkeypatch.setattr(health, "_STALL_S", 1.0)
    node = harness.start_node(**{"qos.input_reliability": "reliable", "diagnostics.period": 60.0})
    probe = harness.probe
    pub = probe.create_publisher(Image, "image", qos())
    wait_for(lambda: pub.get_subscription_count() == 1, what="discovery")
    pub.publish(make_image(80, 60))
    wait_for(lambda: node.counts()[""].get("received", 0) == 1, what="the frame received")
    node.diagnostics()   # (the report the silence counts from)
    time.sleep(1.2)
    status = _status(node, ": camera /")   # stalled: its publisher is still there and matched
    assert status.level == DiagnosticStatus.WARN and re.fullmatch(r"no image for \d+\.\d s", status.message), \
        status.message
    probe.destroy_publisher(pub)
    wait_for(lambda: node.count_publishers("/image") == 0, what="the publisher gone from the graph")
    status = _status(node, ": camera /")
    assert status.level == DiagnosticStatus.WARN and re.fullmatch(
        r"no image for \d+\.\d s; nothing publishes /image now \(the camera stopped, or was renamed\)",
        status.message), status.message
    probe.create_publisher(Image, "image", qos("best_effort"))   # the driver back with another QoS
    wait_for(lambda: node.count_publishers("/image") == 1, what="the best-effort publisher discovered")
    status = _status(node, ": camera /")
    assert re.fullmatch(r"no image for \d+\.\d s; 1 publisher found on it, of an incompatible QoS \(policy "
                        r"RELIABILITY\): a best-effort publisher cannot feed this reliable subscription: "
                        r"qos.input_reliability:=best_effort", status.message), status.message


def test_points_label_or_class_colours_without_segmentation_warn_in_the_cameras_status(harness):
    """points.label, or points.color_source segmentation (with points.color), on a node without a segmentation task
    (depth-only dpt_tiny): each cloud goes out without what was asked (no label field, the image's colours), so the
    camera's status is WARN with those frames counted incomplete.<parameter> (as depth.exclude_classes without
    segmentation is), not 'ok' beside the log's error, whether the parameter was given at start-up or set live; a
    cloud with neither asked for is 'ok' again."""
    # no periodic report: each "since last report" window is the one opened below
    node = harness.start_node(**{"depth.scale": 1.0, "camera_info.policy": "latest", "points.label": True,
                                 "diagnostics.period": 60.0})
    got, (pub, info_pub) = harness.connect(node, {"points": PointCloud2})
    frame = make_image(1)
    info_pub.publish(make_info(frame))
    wait_for(lambda: node.cameras[0].infos, what="camera_info received")
    node.diagnostics()   # the window's start
    sent = 0

    def frames(n):
        nonlocal sent
        for _ in range(n):
            sent += 1
            pub.publish(make_image(sent + 1))
            wait_for(lambda: len(got["points"]) == sent, timeout=30, what=f"cloud {sent}")
        # the worker publishes a frame's outputs, then counts it
        wait_for(lambda: node.counts()[""].get("processed", 0) == sent, what=f"frame {sent} counted")
        status = _status(node, ": camera /")
        return status.level, status.message, {kv.key: kv.value for kv in status.values if "." in kv.key}

    assert frames(3) == (DiagnosticStatus.WARN, "3 frames with outputs skipped since last report",
                         {"incomplete.label": "3", "out.points": "3"})
    assert [f.name for f in got["points"][-1].fields] == ["x", "y", "z", "rgb"]   # no label field
    assert all(r.successful for r in set_params(harness, node, **{"points.label": False,
                                                                  "points.color_source": "segmentation"}))
    assert frames(2) == (DiagnosticStatus.WARN, "2 frames with outputs skipped since last report",
                         {"incomplete.label": "3", "incomplete.color_source": "2", "out.points": "5"})
    assert all(r.successful for r in set_params(harness, node, **{"points.color_source": "image"}))
    assert frames(1) == (DiagnosticStatus.OK, "ok",
                         {"incomplete.label": "3", "incomplete.color_source": "2", "out.points": "6"})
    assert node.error_counts() == {"label": 3, "color_source": 2}


def test_a_camera_resubscribed_has_no_image_yet_not_none_for_n_s(harness, monkeypatch):
    """After an image_transport change (the image topic unsubscribed and subscribed anew, here on /image/compressed)
    or a deactivation and activation of the managed node, a camera that had sent images before and none since said
    "no image for N s", the words of a camera that stalled, and none of the checks of the new subscription's topic.
    Now, with nothing since the subscription was made: "no image yet (N s since subscribing): check the image topic
    (<the new topic>) ...", as at start-up."""
    from rclpy.lifecycle import TransitionCallbackReturn

    from dpt_ros.ros import health

    monkeypatch.setattr(health, "_STALL_S", 1.0)
    node = harness.start_node(managed=True, **{"diagnostics.period": 60.0})
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    pub = harness.probe.create_publisher(Image, "image", qos())
    wait_for(lambda: pub.get_subscription_count() == 1, what="discovery")

    def one_frame_then_silence_after(change) -> tuple[DiagnosticStatus, float]:
        """The camera's status 1.2 s after ``change``, and the seconds from before ``change`` to after it."""
        received = node.counts()[""].get("received", 0)
        pub.publish(make_image(80, 60))
        wait_for(lambda: node.counts()[""].get("received", 0) == received + 1, what="the frame received")
        time.sleep(0.5)   # (the frame 0.5 s older than the new subscription)
        before = time.monotonic()
        change()
        node.diagnostics()   # (the report the silence counts from)
        time.sleep(1.2)
        return _status(node, ": camera /"), time.monotonic() - before

    status, since = one_frame_then_silence_after(lambda: (node.trigger_deactivate(), node.trigger_activate()))
    assert_no_image_yet(status, 1.2, since, ": check the image topic (/image) and the camera's QoS")
    status, since = one_frame_then_silence_after(lambda: set_params(harness, node, image_transport="compressed"))
    assert_no_image_yet(status, 1.2, since, ": check the image topic (/image/compressed) and the camera's QoS")


def test_a_camera_faster_than_the_model_is_told_once_which_frames_run_and_what_gives_more(harness, monkeypatch):
    """A 30 Hz camera on a laptop's CPU: two of three frames were dropped, counted in /diagnostics (its status 'ok',
    as expected), and the log said nothing; README's remedies were a GPU's (fp16, cuda_graphs: refused on the CPU).
    The node now says once per camera and model, at INFO, what it keeps up with, that the newest frame is processed,
    and the commands for this device: a smaller input_size, bf16, max_rate at the rate it keeps up with."""
    from dataclasses import replace

    import torch

    from dpt_ros.ros import health

    monkeypatch.setattr(health, "_RATE_WINDOW_S", 0.0)   # the window: from the last report on
    log = harness.collector(Log, "/rosout")
    node = harness.start_node(**{"input_size": 256, "diagnostics.period": 60.0, "lazy": False})
    pub = harness.probe.create_publisher(Image, "image", qos(depth=100))
    wait_for(lambda: pub.get_subscription_count() > 0, what="discovery")

    def counts():
        return node.counts()[""]

    def settled():
        c = counts()
        return c.get("processed", 0) + c.get("dropped", 0) == c.get("received", 0)

    pub.publish(make_image(time.time_ns()))
    wait_for(lambda: counts().get("processed", 0) == 1, timeout=30, what="the first frame processed")
    node.diagnostics()   # the window starts with a frame already in: the camera's rate, not its start's

    def said():
        return [m.msg for m in list(log) if m.name == "dpt_node" and " frames/s that arrive (" in m.msg]

    for burst in range(2):
        for _ in range(30):
            pub.publish(make_image(time.time_ns()))
            time.sleep(0.002)
        wait_for(lambda: counts().get("received", 0) >= 10 + 31 * burst and settled(), timeout=30,
                 what=f"the burst's frames processed or dropped; {counts()}")
        node.diagnostics()
        if burst == 0:
            first = dict(counts())
            wait_for(lambda: said(), what="the line")
            lines = said()
    assert said() == lines and len(lines) == 1, said()   # once per camera and model
    line = lines[0]
    m = re.fullmatch(r"/image: the model keeps up with (\d+\.\d) of the (\d+\.\d) frames/s that arrive \((\d+) of the "
                     r"last (\d+) frames dropped; a batch takes \d+\.\d\d ms on cpu, latency\.total_p50_ms\): the "
                     r"newest frame is processed each time and the others are counted as dropped in /diagnostics, as "
                     r"expected with a model slower than the camera\. For more frames per second: a smaller "
                     r"input_size \(network size 256x256 now: ros2 param set /dpt_node input_size 192\); bf16, "
                     r"faster on a CPU with bf16 instructions \(AVX512-BF16, AMX\), less precise \(ros2 param set "
                     r"/dpt_node precision bf16\); a GPU \(device auto takes it\)\. Or ros2 param set /dpt_node "
                     r"max_rate (\d+\.\d): a steady \5 frames/s, each processed as it arrives \(an output's age "
                     r"then about one batch's time, not up to two\), the CPU idle in between for the rest of "
                     r"the robot, the frames skipped "
                     r"counted as throttled \(said once per camera and model\)", line)
    assert m, line
    # the burst's frames since the report before it, which had the first frame in: all of them, as counted
    assert (int(m[3]), int(m[4])) == (first["dropped"], first["received"] - 1), (first, line)
    assert 3 * int(m[3]) >= int(m[4]) and int(m[3]) >= 5 and float(m[1]) < float(m[2]), line
    assert abs(float(m[5]) - max(0.1, float(m[1]))) <= 0.1 + 1e-9, line
    # the max_rate command as written is one ros2 param set takes (a double)
    assert set_params(harness, node, max_rate=float(m[5]))[0].successful

    # on a GPU the commands are the GPU's; fewer CPU threads than cores: the command that gives them all
    s = node._settings.replace({"cpu_threads": 1, "depth.variant": "dpt_large"})
    cpu = health._faster_advice(s, node.models, "/dpt_node", 2, 12.34)
    assert "a lighter variant (dpt_hybrid for dpt_large); more threads (cpu_threads 1 of 2: ros2 param set " \
           "/dpt_node cpu_threads 0)" in cpu and "max_rate 12.3:" in cpu and "fp16" not in cpu, cpu
    gpu = health._faster_advice(s, replace(node.models, device=torch.device("cuda", 0)), "/dpt_node", 2, 0.04)
    assert gpu.startswith("For more frames per second: a smaller input_size (network size 256x256 now: ros2 param "
                          "set /dpt_node input_size 192); ros2 param set /dpt_node precision fp16; ros2 param set "
                          "/dpt_node cuda_graphs true. Or ros2 param set /dpt_node max_rate 0.1: a steady 0.1 "
                          "frames/s"), gpu
    assert "bf16" not in gpu and "cpu_threads" not in gpu and "the GPU idle in between" in gpu, gpu
    # a wide network (kitti's 352x1216): input_size makes it square, of about 3/4 of the side of as many pixels
    from dpt_ros import pipeline

    kitti = replace(node.models, depth_pre=pipeline.Preprocessor((352, 1216), s["resize_method"], torch.device("cpu")))
    wide = health._faster_advice(s, kitti, "/dpt_node", 2, 1.0)
    assert wide.startswith("For more frames per second: a smaller input_size (network size 352x1216 now, input_size "
                           "makes it square: ros2 param set /dpt_node input_size 480);"), wide


def test_the_start_up_line_says_why_device_auto_runs_on_the_cpu(harness):
    """A laptop without a GPU, device auto: the log said 'depth: dpt_tiny on cpu (float32), net size ...' and not
    why, so a user with a GPU whose driver is not loaded took the CPU for the plan. It now says why auto chose it."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("device auto takes the GPU here")
    log = harness.collector(Log, "/rosout")
    harness.start_node(**{"device": "auto"})
    why = ("device auto: this PyTorch is built without CUDA" if torch.version.cuda is None else
           f"device auto: no CUDA device found, PyTorch built for CUDA {torch.version.cuda}: no NVIDIA GPU, or its "
           f"driver is not loaded (nvidia-smi tells)")

    def lines():
        return [m.msg for m in list(log) if m.name in ("dpt_node", "plain.dpt_node") and
                m.msg.startswith("depth: dpt_tiny on ")]
    wait_for(lambda: lines(), what="the model's line")
    assert lines() == [f"depth: dpt_tiny on cpu (float32; {why}), net size (64, 64)"], lines()
    harness.start_node(namespace="plain")   # device:=cpu, as asked: only the device
    wait_for(lambda: len(lines()) == 2, what="the second node's line")
    assert lines()[1] == "depth: dpt_tiny on cpu (float32), net size (64, 64)", lines()


def test_images_lost_on_the_way_while_their_camera_infos_come_are_said_once_with_the_fast_dds_profile(harness,
                                                                                                       monkeypatch):
    """A 640x480 camera at 30 Hz and the node started as README's Node reference says, without the large-data Fast DDS
    profile: 9 to 20 of 30 images a second reached the node (UDP fragments lost in bursts), all 30 camera_infos did,
    and only input_rate_hz below the camera's said so. Fewer than 2/3 as many images as camera_infos in the rate
    window is now said once per camera at WARN, with the profile to set."""
    from dpt_ros.ros import health

    monkeypatch.setattr(health, "_RATE_WINDOW_S", 0.0)   # the window: from the last report on
    monkeypatch.delenv("FASTDDS_DEFAULT_PROFILES_FILE", raising=False)
    monkeypatch.delenv("FASTRTPS_DEFAULT_PROFILES_FILE", raising=False)
    log = harness.collector(Log, "/rosout")
    node = harness.start_node(**{"diagnostics.period": 60.0})
    _, (pub, info_pub) = harness.connect(node, {})
    cam, sent = node.cameras[0], {"images": 0, "infos": 0, "t": 0}

    def frames(n, every=1):   # n frames' camera_infos, every n-th frame's image, each waited for until counted
        for _ in range(n):
            sent["t"] += 1
            image = make_image(sent["t"] * 33_333_333)
            info_pub.publish(make_info(image))
            sent["infos"] += 1
            if sent["t"] % every == 0:
                pub.publish(image)
                sent["images"] += 1
            wait_for(lambda: cam.infos and cam.infos[-1][0] == sent["t"] * 33_333_333 and
                     node.counts()[""].get("received", 0) == sent["images"], what=f"{sent} counted")

    def said():
        return [m.msg for m in list(log) if m.name == "dpt_node" and "images are lost on the way" in m.msg]

    frames(1)
    node.diagnostics()   # the window starts with a frame in
    frames(12)
    node.diagnostics()
    frames(12, every=3)
    node.diagnostics()
    wait_for(lambda: said(), what="the warning")
    frames(12, every=3)
    node.diagnostics()
    frames(1)   # (a later line, if any, is in by the time this is counted)
    lines = said()
    assert len(lines) == 1, lines
    assert re.fullmatch(
        r"/image: \d+\.\d images/s arrive, but \d+\.\d camera_infos/s on /camera_info \(4 images against 12 "
        r"camera_infos in the last \d+\.\d s; a camera publishes one of each per frame\): images are lost on the way\. "
        r"Camera-sized images between processes over Fast DDS without a shared-memory segment large enough for them "
        r"are lost in bursts: set FASTDDS_DEFAULT_PROFILES_FILE \(Humble, Jazzy: FASTRTPS_DEFAULT_PROFILES_FILE\) to "
        r"dpt_ros's config/fastdds_large_data\.xml for the camera, this node and the subscribers \(README: Large "
        r"images between processes\); over a network link that cannot carry them \(Wi-Fi\), the camera's compressed "
        r"transport: image_transport:=compressed\. A relay that thins the images on purpose \(topic_tools throttle, a "
        r"driver publishing camera_info at a higher rate\) gives this too: nothing is lost then \(said once per "
        r"camera\)", lines[0]), lines[0]
    assert [m.level for m in list(log) if "images are lost on the way" in m.msg] == [Log.WARN]


def test_images_lost_with_the_compressed_transport_already_on_do_not_advise_it(harness):
    """With image_transport:=compressed the images-lost warning ended with 'over a network link that cannot carry them
    (Wi-Fi), the camera's compressed transport: image_transport:=compressed': the setting the node already had. It
    now says what is left there: a lower frame rate or JPEG quality at the camera. (The counts of a rate window as
    /diagnostics passes them: 10 images against 40 camera_infos in 5 s.)"""
    import collections

    log = harness.collector(Log, "/rosout")
    node = harness.start_node(image_transport="compressed")
    cam = node.cameras[0]
    node._say_images_lost(cam, collections.Counter(received=11, camera_infos=41),
                          collections.Counter(received=1, camera_infos=1), 5.0)

    def said():
        return [m.msg for m in list(log) if m.name == "dpt_node" and "images are lost on the way" in m.msg]

    wait_for(said, what="the warning")
    assert said()[0].startswith("/image/compressed: 2.0 images/s arrive, but 8.0 camera_infos/s on /camera_info (10 "
                                "images against 40 camera_infos in the last 5.0 s;"), said()[0]
    assert said()[0].endswith("; over a network link that cannot carry them (Wi-Fi), a lower frame rate or JPEG "
                              "quality at the camera (its compressed transport's jpeg_quality). A relay that thins "
                              "the images on purpose (topic_tools throttle, a driver publishing camera_info at a "
                              "higher rate) gives this too: nothing is lost then (said once per camera)"), said()[0]


def test_a_camera_whose_frames_are_mostly_dropped_is_warn_with_the_rates_and_what_to_do_and_max_rate_skips_are_not(
        harness, monkeypatch):
    """A camera far faster than the model (a burst of 30 frames while the model's forward pass is held: all but the
    first and the last replaced by newer ones before the worker took them; 28 of 30 dropped, as a 30 Hz camera on a
    model of 2 Hz): its status said OK 'ok' while rqt_runtime_monitor had nothing to show.
    It is now WARN with the counts, the rates and what gives more frames per second, while more than half of the
    frames admitted in the rate window are dropped. Frames max_rate skips (throttled) are skipped on purpose: under
    max_rate 1 the same burst is OK."""
    from dpt_ros.ros import health

    monkeypatch.setattr(health, "_RATE_WINDOW_S", 0.0)   # the window: from the last report on
    node = harness.start_node(**{"diagnostics.period": 60.0, "lazy": False})
    pub = harness.probe.create_publisher(Image, "image", qos(depth=100))
    wait_for(lambda: pub.get_subscription_count() > 0, what="discovery")

    def counts():
        return node.counts()[""]

    def burst():
        start = dict(counts())
        gate, entered, _ = gate_engine(node.models.depth)   # the model slower than the burst, whatever the machine
        for _ in range(30):
            pub.publish(make_image(time.time_ns()))
            time.sleep(0.002)
        time.sleep(0.5)   # (the burst's frames in, replacing one another while the first one's pass is held)
        gate.set()

        def settled():
            c = counts()
            return c.get("received", 0) >= start.get("received", 0) + 10 and c.get("received", 0) == sum(
                c.get(k, 0) for k in ("processed", "dropped", "throttled"))
        wait_for(settled, timeout=30, what=f"the burst's frames processed, dropped or throttled; {counts()}")
        c = counts()
        status = _status(node, ": camera /")
        return status, {k: c.get(k, 0) - start.get(k, 0) for k in ("received", "processed", "dropped", "throttled")}

    pub.publish(make_image(time.time_ns()))
    wait_for(lambda: counts().get("processed", 0) == 1, timeout=30, what="the first frame processed")
    node.diagnostics()   # the window starts with a frame already in: the camera's rate, not its start's
    status, n = burst()
    assert n["dropped"] > n["received"] / 2 and n["throttled"] == 0, n
    assert status.level == DiagnosticStatus.WARN, (status.message, n)
    m = re.fullmatch(r"(\d+) of (\d+) frames dropped for newer ones: the model keeps up with (\d+\.\d) of the "
                     r"(\d+\.\d) frames/s that arrive \(a batch takes \d+\.\d\d ms on cpu, latency\.total_p50_ms\)\. "
                     r"For more frames per second: a smaller input_size \(network size 64x64 now: ros2 param set "
                     r"/dpt_node input_size 32\); .*; a GPU \(device auto takes it\)\. Or ros2 param set /dpt_node "
                     r"max_rate (\d+\.\d): a steady \5 frames/s, .*, the frames skipped counted as throttled",
                     status.message)
    assert m, status.message
    assert (int(m[1]), int(m[2])) == (n["dropped"], n["received"]), (status.message, n)
    assert float(m[3]) < float(m[4]), status.message
    kv = {v.key: v.value for v in status.values}
    assert float(kv["output_rate_hz"]) < float(kv["input_rate_hz"]) / 2, kv

    # the advice taken: a steady max_rate (1/s here) skips the burst's frames on purpose, and drops none
    assert set_params(harness, node, max_rate=1.0)[0].successful
    node.diagnostics()
    status, n = burst()
    assert n["throttled"] >= n["received"] - 2 and n["dropped"] == 0 and n["processed"] >= 1, n
    assert (status.level, status.message) == (DiagnosticStatus.OK, "ok"), (status.message, n)


def test_rates_and_notices_after_an_image_transport_change_are_of_the_new_topic_alone(harness, monkeypatch):
    """`ros2 param set image_transport compressed` while a raw camera ran: the report right after it gave the new
    topic (/image/compressed, which nothing published) the old topic's frames: input_rate_hz above 0 and 'ok', not
    'no input'; and with the camera's camera_infos still coming, the rate window straddling the change took the
    compressed topic's silence for images lost on the way (the Fast DDS shared-memory warning, '0.0 images/s
    arrive'). The rates now count from the new subscription, and the notices wait, as at start-up, for a window
    that begins after its first image."""
    from dpt_ros.ros import health

    monkeypatch.setattr(health, "_RATE_WINDOW_S", 0.0)   # the window: from the last report on
    log = harness.collector(Log, "/rosout")
    node = harness.start_node(**{"diagnostics.period": 60.0})
    _, (pub, info_pub) = harness.connect(node, {})
    cam, sent = node.cameras[0], {"images": 0, "t": 0}

    def frames(n, images=True):   # n frames' camera_infos (and images), each waited for until counted
        for _ in range(n):
            sent["t"] += 1
            image = make_image(sent["t"] * 33_333_333)
            info_pub.publish(make_info(image))
            if images:
                pub.publish(image)
                sent["images"] += 1
            wait_for(lambda: cam.infos and cam.infos[-1][0] == sent["t"] * 33_333_333 and
                     node.counts()[""].get("received", 0) == sent["images"], what=f"{sent} counted")

    frames(1)
    node.diagnostics()   # the window starts with a frame in
    frames(12)
    node.diagnostics()
    frames(3)
    assert all(r.successful for r in set_params(harness, node, image_transport="compressed"))
    status = _status(node, ": camera /")
    kv = {v.key: v.value for v in status.values}
    assert (kv["topic"], kv["input_rate_hz"], kv["output_rate_hz"]) == ("/image/compressed", "0.00", "0.00"), kv
    assert (status.level, status.message) == (DiagnosticStatus.OK, "no input"), status.message
    frames(12, images=False)   # the camera goes on: camera_info, and images on /image, which is not subscribed now
    node.diagnostics()
    frames(1, images=False)   # (a line, if any, is in by the time this is counted)
    assert [m.msg for m in list(log) if "images are lost on the way" in m.msg] == []


def test_the_start_up_time_until_the_first_outputs_is_in_the_diagnostics_and_logged_once(harness):
    """How long a start takes until outputs flow (the model's load and warm-up passes: seconds of a big model on a
    CPU; then the first frame's batch, the first run of its shape) was nowhere a user could see it: not in
    /diagnostics, not in the log. The model status now has startup.ready_s and startup.warmup_s from the start, and
    startup.first_image_s, startup.first_output_s and startup.first_batch_ms once the first outputs are out (before:
    'none yet'), and the log says it once."""
    log = harness.collector(Log, "/rosout")
    node = harness.start_node()

    def startup():
        return {v.key: v.value for v in _status(node, ": model").values if v.key.startswith("startup.")}

    before = startup()
    assert (before["startup.first_image_s"], before["startup.first_output_s"]) == ("none yet", "none yet"), before
    assert "startup.first_batch_ms" not in before
    ready, warmup = float(before["startup.ready_s"]), float(before["startup.warmup_s"])
    assert 0.0 < warmup <= ready, before
    frame_through(harness, "image", "inverse_depth", make_image(1))
    wait_for(lambda: "startup.first_batch_ms" in startup(), what="the first output's figures")
    after = startup()
    assert (after["startup.ready_s"], after["startup.warmup_s"]) == (before["startup.ready_s"],
                                                                     before["startup.warmup_s"]), after
    first_image, first_output = float(after["startup.first_image_s"]), float(after["startup.first_output_s"])
    assert ready <= first_image <= first_output and float(after["startup.first_batch_ms"]) > 0.0, after

    def said():
        return [m.msg for m in list(log) if m.name == "dpt_node" and m.msg.startswith("first outputs published")]
    wait_for(said, what="the first outputs' line")
    assert said() == [f"first outputs published {after['startup.first_output_s']} s after start-up: model loaded and "
                      f"warmed up after {after['startup.ready_s']} s (warm-up passes {after['startup.warmup_s']} s), "
                      f"the first image came at {after['startup.first_image_s']} s, its batch took "
                      f"{after['startup.first_batch_ms']} ms (/diagnostics: startup.*)"], said()
    frame_through(harness, "image", "inverse_depth", make_image(2))   # a later frame: the figures stay the first's
    assert startup() == after and len(said()) == 1, (startup(), said())


def test_under_max_rate_the_slow_model_notice_counts_the_frames_max_rate_lets_through(harness, monkeypatch):
    """The once-per-camera INFO that the model keeps up with only part of the frames compared the frames dropped with
    all frames received, those max_rate skipped (throttled) too: a burst of 100 frames in 0.5 s or more under
    max_rate 20, the model's forward pass held meanwhile, dropped all but 2 of the frames max_rate let through (10
    of 100 received, 88 throttled, here) and nothing was said, while the camera's status was WARN. The notice now counts the frames max_rate lets through, as the status
    does, and says so."""
    from dpt_ros.ros import health

    monkeypatch.setattr(health, "_RATE_WINDOW_S", 0.0)   # the window: from the last report on
    log = harness.collector(Log, "/rosout")
    node = harness.start_node(**{"diagnostics.period": 60.0, "lazy": False, "max_rate": 20.0})
    pub = harness.probe.create_publisher(Image, "image", qos(depth=100))
    wait_for(lambda: pub.get_subscription_count() > 0, what="discovery")

    def counts():
        return node.counts()[""]

    pub.publish(make_image(time.time_ns()))
    wait_for(lambda: counts().get("processed", 0) == 1, timeout=30, what="the first frame processed")
    node.diagnostics()   # the window starts with a frame already in
    start = dict(counts())
    gate, entered, _ = gate_engine(node.models.depth)   # the model slower than max_rate, whatever the machine
    for _ in range(100):
        pub.publish(make_image(time.time_ns()))
        time.sleep(0.005)
    time.sleep(0.5)   # (the burst's frames in)
    gate.set()

    def settled():
        c = counts()
        return c.get("received", 0) >= start["received"] + 50 and c.get("received", 0) == sum(
            c.get(k, 0) for k in ("processed", "dropped", "throttled"))
    wait_for(settled, timeout=30, what=f"the burst's frames processed, dropped or throttled; {counts()}")
    n = {k: counts().get(k, 0) - start.get(k, 0) for k in ("received", "processed", "dropped", "throttled")}
    status = _status(node, ": camera /")
    admitted = n["received"] - n["throttled"]
    assert n["dropped"] >= 5 and 3 * n["dropped"] < n["received"] and 2 * n["dropped"] > admitted, n

    def said():
        return [m.msg for m in list(log) if m.name == "dpt_node" and "frames/s that max_rate lets through (" in m.msg]
    wait_for(said, what=f"the slow model's line; {n}")
    assert re.match(rf"/image: the model keeps up with \d+\.\d of the \d+\.\d frames/s that max_rate lets through "
                    rf"\({n['dropped']} of the last {admitted} frames dropped; a batch takes ", said()[0]), said()
    assert status.level == DiagnosticStatus.WARN and status.message.startswith(
        f"{n['dropped']} of {admitted} frames dropped for newer ones: the model keeps up with "), status.message
    assert " frames/s that max_rate lets through (a batch takes " in status.message, status.message


@contextlib.contextmanager
def _one_in_its_forward_pass_one_waiting(harness):
    """A node (diagnostics every 60 s, inverse_depth subscribed) with frame 1 held in its forward pass and frame 2
    received, waiting behind it: (node, the outputs got, the image publisher, received()); the forward pass goes on
    at the block's end."""
    node = harness.start_node(**{"diagnostics.period": 60.0})
    got, (pub,) = harness.connect(node, {"inverse_depth": Image}, {"image": Image})
    gate, entered, _ = gate_engine(node.models.depth)
    received = lambda: node.counts()[""].get("received", 0)   # noqa: E731
    try:
        pub.publish(make_image(1))
        wait_for(entered.is_set, what="frame 1 in its forward pass")
        pub.publish(make_image(2))
        wait_for(lambda: received() == 2, what="frame 2 waiting")
        yield node, got, pub, received
    finally:
        gate.set()


def test_frames_of_the_old_topic_finished_after_an_image_transport_change_are_not_in_the_new_rates(harness):
    """`ros2 param set image_transport compressed` while raw frames were in the node (one in its forward pass, one
    waiting): the change starts the rate window afresh, of the new topic's frames alone, but those two, published
    after it, counted as processed in it: output_rate_hz above 0 beside an input_rate_hz of 0.00 (a window's
    processed of frames it never received; its dropped likewise, which the 'mostly dropped' share compares with its
    received). Now a frame of a replaced subscription settled after the change counts as settled before the windows
    that began at it."""
    with _one_in_its_forward_pass_one_waiting(harness) as (node, got, pub, received):
        pub.publish(make_image(3))   # (frame 2 dropped for it, before the change)
        wait_for(lambda: received() == 3, what="frame 3 waiting")
        assert set_params(harness, node, image_transport="compressed")[0].successful
    wait_for(lambda: len(got["inverse_depth"]) == 2, what="frames 1 and 3 published")
    wait_for(lambda: node.counts()[""].get("processed", 0) == 2, what="frames 1 and 3 counted")
    assert dict(node.counts()[""]) == {"received": 3, "processed": 2, "dropped": 1, "out:inverse_depth": 2}
    status = _status(node, ": camera /")
    kv = {v.key: v.value for v in status.values}
    assert (kv["topic"], kv["input_rate_hz"], kv["output_rate_hz"]) == ("/image/compressed", "0.00", "0.00"), kv
    assert (status.level, status.message) == (DiagnosticStatus.OK, "no input"), status.message


def test_frames_of_the_old_topic_finished_after_a_refused_image_transport_change_are_not_in_the_later_rates(harness):
    """image_transport compressed set together with depth.align (`ros2 param load`), whose /depth_reference rcl
    refuses (CameraInfo published on it in this process), while raw frames were in the node (one in its forward pass,
    one waiting): /image/compressed was subscribed and the rate window started afresh for it, then the refusal
    subscribed /image back. The two raw frames, published after that, counted as processed in the window restarted
    for /image/compressed, which never received them (their subscription's replacement was taken for the subscribing
    back, after the window began): output_rate_hz above 0 beside an input_rate_hz of 0.00. Now subscribing back starts
    the window afresh too, as any replaced image subscription does, and the two settle before it."""
    from sensor_msgs.msg import CameraInfo

    harness.probe.create_publisher(CameraInfo, "/depth_reference", qos())   # (rcl refuses Image there)
    with _one_in_its_forward_pass_one_waiting(harness) as (node, got, pub, received):
        refused = set_params_atomically(harness, node, image_transport="compressed", **{"depth.align": True})
        assert not refused.successful and refused.reason.startswith(
            "image_transport, depth.align: cannot subscribe /depth_reference (sensor_msgs/msg/Image): "), refused.reason
        assert node.cameras[0].subs["image"].topic_name == "/image"   # (subscribed back)
    wait_for(lambda: node.counts()[""].get("processed", 0) == 2, what="frames 1 and 2 counted")
    wait_for(lambda: len(got["inverse_depth"]) == 2, what="frames 1 and 2 published")
    assert dict(node.counts()[""]) == {"received": 2, "processed": 2, "out:inverse_depth": 2}
    kv = {v.key: v.value for v in _status(node, ": camera /").values}
    assert (kv["topic"], kv["input_rate_hz"], kv["output_rate_hz"]) == ("/image", "0.00", "0.00"), kv


def test_frames_of_the_old_topic_finished_after_a_refused_change_whose_subscribing_back_failed_are_not_in_the_rates(
        harness, monkeypatch):
    """As above, but subscribing /image back fails too (the node is left without an image subscription, and says so):
    the camera had no image subscription when the two raw frames were published, which _count_settled took for the
    frames' own, so they counted as processed in the window restarted for /image/compressed, which never received them:
    output_rate_hz above 0 beside an input_rate_hz of 0.00. No real refusal can come between the change and its
    subscribing back (the old /image subscription holds the topic's type until then), so the subscribing back's
    refusal is injected into the node's _subscribe. Now a frame counts as settled before the windows that began after
    its subscription was replaced, whether by another or by none."""
    from sensor_msgs.msg import CameraInfo

    from dpt_ros.ros.node import SubscriptionError

    harness.probe.create_publisher(CameraInfo, "/depth_reference", qos())   # (rcl refuses Image there)
    with _one_in_its_forward_pass_one_waiting(harness) as (node, got, pub, received):
        subscribe = node._subscribe

        def refusing_raw_image(cam, name, on):   # (image_transport raw again: the refusal's subscribing back)
            if name == "image" and on and ("image" not in cam.subs or "image" in cam.replacing) and \
                    node._settings["image_transport"] == "raw":
                raise SubscriptionError("cannot subscribe /image (injected)")
            subscribe(cam, name, on)
        monkeypatch.setattr(node, "_subscribe", refusing_raw_image)
        refused = set_params_atomically(harness, node, image_transport="compressed", **{"depth.align": True})
        assert not refused.successful and "subscribing back to what the parameters say failed too" in refused.reason, \
            refused.reason
        assert "image" not in node.cameras[0].subs
    wait_for(lambda: node.counts()[""].get("processed", 0) == 2, what="frames 1 and 2 counted")
    wait_for(lambda: len(got["inverse_depth"]) == 2, what="frames 1 and 2 published")
    assert dict(node.counts()[""]) == {"received": 2, "processed": 2, "out:inverse_depth": 2}
    kv = {v.key: v.value for v in _status(node, ": camera /").values}
    assert (kv["topic"], kv["input_rate_hz"], kv["output_rate_hz"]) == ("/image", "0.00", "0.00"), kv
