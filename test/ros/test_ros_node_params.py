"""Parameters through the real parameter services (what `ros2 param set` calls), model hot-swap
under a stream of frames, and /diagnostics content."""
import re
import shlex
import threading
import time

import numpy as np
import torch
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.srv import DescribeParameters, SetParameters
from rclpy.parameter import Parameter, get_parameter_value
from sensor_msgs.msg import CameraInfo, Image

from dpt_ros.ros import conversions, params
from dpt_ros.ros.testing import (call_service, get_params, make_image, qos, set_params, set_params_atomically,
                                 truncated_checkpoint, wait_for)

DOMAIN = 42
# the nodes refused at start-up take contexts of their own, on 64 and 65, held too (test/conftest.py)
DOMAINS = (DOMAIN, DOMAIN + 22, DOMAIN + 23)


def test_valid_live_change_applies_from_the_next_frame(harness):
    node = harness.start_node()
    colored = harness.collector(Image, "inverse_depth/colored")
    pub = harness.probe.create_publisher(Image, "image", qos())
    wait_for(lambda: pub.get_subscription_count() > 0 and
             node.cameras[0].pubs["inverse_depth/colored"].get_subscription_count() > 0, what="discovery")
    pub.publish(make_image(1))
    wait_for(lambda: len(colored) == 1, what="first frame")
    rgb = conversions.image_array(colored[0])
    assert not (np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2]))
    results = set_params(harness, node, colormap="gray")
    assert results[0].successful, results[0].reason
    assert node.settings["colormap"] == "gray"
    pub.publish(make_image(2))
    wait_for(lambda: len(colored) == 2, what="second frame")
    rgb = conversions.image_array(colored[1])
    assert np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2])
    assert get_params(harness, node, "colormap") == ["gray"]


@pytest.mark.parametrize("name,value,reason", [
    ("depth.variant", "dpt_huge", "valid: dpt_large"),
    ("depth.variant", "dpt_large_ade20k", "is not a depth variant"),
    # the allowed values nearest to the one given (rclpy alone: "not a valid step. Min: 0, max: 2048, value: 100,
    # step: 32"), said as the `ros2 param set` commands that set them; 0, the variant's own size, is no size near 16
    ("input_size", 100, "input_size=100 is not a multiple of 32: use ros2 param set /dpt_node input_size 96 or "
                        "ros2 param set /dpt_node input_size 128 (allowed: 0..2048 in steps of 32)"),
    ("input_size", 16, "input_size=16 is not a multiple of 32: use ros2 param set /dpt_node input_size 32, or 0 for "
                       "the variant's own size (allowed: "),
    ("input_size", 4096, "input_size=4096 out of range 0..2048 in steps of 32: use ros2 param set /dpt_node input_size "
                         "2048"),
    ("depth.min", 2000.0, "must be below depth.max"),
    ("segmentation.overlay_alpha", 1.5, "segmentation.overlay_alpha=1.5 out of range 0..1"),
    ("colormap", "rainbow_unicorn", "turbo"),
    ("camera_info.policy", "sometimes", "exact, nearest, latest"),
    ("depth.encoding", "16UC2", "32FC1, 16UC1"),
    ("device", "tpu", "'auto', 'cpu', 'cuda', 'cuda:N'"),
    ("depth.weights", "/no/such/file.pt", "does not exist"),
    ("depth.weights", "", "depth.weights is empty"),   # not accepted and then reverted by a failed load
    ("cameras", ["a", "b"], "cameras is read-only on dpt_node: give it at start-up (--ros-args -p cameras:=..., a "
                            "params file), or run dpt_lifecycle_node, where it can be set while unconfigured"),
    ("class_names", ["x"], "class_names is read-only: it reports the segmentation classes"),
    ("qos.input_reliability", "reliable", "qos.input_reliability is read-only on dpt_node: give it at start-up"),
    ("depth.min", [1, 2], "depth.min is a double; got an integer array"),
    ("segmentation.variant", "dpt_tiny", "it is a depth variant: ros2 param set /dpt_node depth.variant dpt_tiny"),
    ("points.stride", 1.5, "points.stride is an integer; got a double (1.5)"),
    # `ros2 param set /dpt_node depth.scale 2` sends an integer; rclpy alone says "expected '3' got '2'"
    ("depth.scale", 2, "depth.scale is a double; got an integer (2): write it with a decimal point, "
                       "ros2 param set /dpt_node depth.scale 2.0"),
    ("points.enabled", "yes", "points.enabled is a bool; got a string ('yes')"),
])
def test_invalid_values_rejected_with_reason(harness, name, value, reason):
    node = harness.start_node()
    before = node.settings
    results = set_params(harness, node, **{name: value})
    assert not results[0].successful
    assert reason in results[0].reason, results[0].reason
    assert "weights is empty" not in results[0].reason or name.endswith(".weights")   # one reason, not two
    assert node.settings is before  # nothing accepted


def test_a_value_of_no_type_is_refused_with_what_to_give(harness):
    """A parameter message of type NOT_SET (what unsetting sends) is refused with the default to give instead (rclpy
    said only "Static parameter cannot be undeclared")."""
    from rcl_interfaces.msg import Parameter as ParameterMsg

    node = harness.start_node()
    req = SetParameters.Request(parameters=[ParameterMsg(name="colormap")])   # value type NOT_SET
    r = call_service(harness, SetParameters, f"/{node.get_name()}/set_parameters", req).results[0]
    assert not r.successful and r.reason == ("colormap cannot be unset: give it a value, e.g. its default: "
                                             "ros2 param set /dpt_node colormap inferno")


def _ros2_param_set(harness, command: str):
    """Run ``command`` (``ros2 param set NODE NAME VALUE``, as a shell splits it) as `ros2 param set` does: its value
    read by rclpy.parameter.get_parameter_value, the function ros2param's set verb calls (ros2cli's
    ros2param/verb/set.py; ros2param itself is not installed here): yaml.safe_load, a bool, int, float or a list of
    one of them or of strings sent as that type, a string YAML reads (``'1'`` -> 1 as a str) as that string; sent to
    NODE's SetParameters service. The result."""
    from rcl_interfaces.msg import Parameter as ParameterMsg

    words = shlex.split(command)
    assert words[:3] == ["ros2", "param", "set"] and len(words) == 6, words
    req = SetParameters.Request(parameters=[ParameterMsg(name=words[4], value=get_parameter_value(words[5]))])
    return call_service(harness, SetParameters, f"{words[3]}/set_parameters", req).results[0]


#: (the word typed after `ros2 param set /robot/dpt_node NAME`, the refusal, the value and type its command gives)
LIVE_REFUSALS = [
    ("depth.scale", "2", "depth.scale is a double; got an integer (2): write it with a decimal point, "
                         "ros2 param set /robot/dpt_node depth.scale 2.0", 2.0),
    # (PyYAML reads a float only with a point and a signed exponent: 1e-3 is a string to ros2 param set)
    ("depth.scale", "1e-3", "depth.scale is a double; got a string ('1e-3'): a number, unquoted and with a decimal "
                            "point, ros2 param set /robot/dpt_node depth.scale 0.001", 0.001),
    ("depth.max", "abc", "depth.max is a double; got a string ('abc'): a number, unquoted, e.g. "
                         "ros2 param set /robot/dpt_node depth.max 1000.0", 1000.0),
    ("points.enabled", "0", "points.enabled is a bool; got an integer (0): write true or false, unquoted, "
                            "ros2 param set /robot/dpt_node points.enabled false", False),
    ("points.enabled", "y", "points.enabled is a bool; got a string ('y'): write true or false, unquoted, "
                            "ros2 param set /robot/dpt_node points.enabled true", True),
    ("points.stride", "4.0", "points.stride is an integer; got a double (4.0): a whole number, unquoted and without "
                             "a decimal point, ros2 param set /robot/dpt_node points.stride 4", 4),
    ("points.stride", "'3'", "points.stride is an integer; got a string ('3'): a whole number, unquoted and without "
                             "a decimal point, ros2 param set /robot/dpt_node points.stride 3", 3),
    ("points.stride", "1.5", "points.stride is an integer; got a double (1.5): a whole number, unquoted and without "
                             "a decimal point, e.g. ros2 param set /robot/dpt_node points.stride 2", 2),
    ("input_size", "100", "input_size=100 is not a multiple of 32: use ros2 param set /robot/dpt_node input_size 96 or "
                          "ros2 param set /robot/dpt_node input_size 128 (allowed: 0..2048 in steps of 32)", 96),
    # a number written as a word YAML reads as a bool (off: no limit, as the user meant): the number, e.g. the default
    ("max_rate", "off", "max_rate is a double; got a bool (False): a number, unquoted (YAML reads on, off, yes, no, "
                        "true, false as a bool), e.g. ros2 param set /robot/dpt_node max_rate 0.0", 0.0),
    ("points.stride", "true", "points.stride is an integer; got a bool (True): a whole number, unquoted (YAML reads "
                              "on, off, yes, no, true, false as a bool), e.g. ros2 param set /robot/dpt_node "
                              "points.stride 2", 2),
    # segmentation classes written as a YAML list: one comma-separated string is what the parameter takes
    ("points.exclude_classes", "[person, car]",
     "points.exclude_classes is a string; got a string array (['person', 'car']): one string of comma-separated "
     "class names, not a list, ros2 param set /robot/dpt_node points.exclude_classes \"'person, car'\"",
     "person, car"),
    # a string YAML reads as a number: quoted for YAML, and the quotes quoted for the shell (the type is right then;
    # the value, no variant, is refused for that: no string parameter here takes '1')
    ("depth.variant", "1", "depth.variant is a string; got an integer (1): quote it (YAML reads it as a number or "
                           "bool), ros2 param set /robot/dpt_node depth.variant \"'1'\"", None),
]


def test_live_refusals_say_the_ros2_param_set_command_that_is_taken(harness):
    """A live refusal that says how to write the value says it as the `ros2 param set` command for this node (its
    fully qualified name, here in a namespace) that would work, after the reason (which a Python client gets too):
    each value below is sent as `ros2 param set` sends the word typed (:func:`_ros2_param_set`), refused with that
    command; the command, split as a shell splits it and its value read as ros2param reads it, is accepted through
    the same service and gives the value and type meant (`ros2 param get` through GetParameters). Before, the
    remedies were bare YAML ("write it with a decimal point, 2.0"; "use 96 or 128")."""
    node = harness.start_node(namespace="robot")
    assert node.get_fully_qualified_name() == "/robot/dpt_node"
    for name, typed, reason, meant in LIVE_REFUSALS:
        r = _ros2_param_set(harness, f"ros2 param set /robot/dpt_node {name} {shlex.quote(typed)}")
        assert not r.successful and r.reason == reason, (typed, r.reason)
        command = re.search(r"ros2 param set \S+ \S+ (\"[^\"]*\"|'[^']*'|[^\s,()]+)", r.reason).group(0)
        r = _ros2_param_set(harness, command)
        if meant is None:   # (the string: its type taken, its value refused as no variant)
            assert get_parameter_value(shlex.split(command)[5]).string_value == "1"
            assert not r.successful and r.reason.startswith("depth.variant='1' is not a depth variant"), r.reason
            continue
        assert r.successful, (command, r.reason)
        got = get_params(harness, node, name)[0]
        assert got == meant and type(got) is type(meant), (command, got)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal of device cuda where there is no CUDA")
def test_device_cuda_without_cuda_is_refused_with_why_and_the_remedy_as_typed(harness, tmp_path):
    """device cuda on a machine without CUDA: refused at start-up and live with why CUDA is missing (the start-up
    line's words for device auto: a CPU-only PyTorch, or no device or driver) and the remedy in the form the value
    was given: -p rules, a parameters file's lines, or the `ros2 param set` commands for this node, which are taken.
    Before: "use 'cpu' or 'auto'", and no why."""
    import rclpy
    from rclpy.context import Context

    from dpt_ros.ros.node import DptNode, StartupError

    why = ("this PyTorch is built without CUDA" if torch.version.cuda is None else
           f"no CUDA device found, PyTorch built for CUDA {torch.version.cuda}: no NVIDIA GPU, or its driver is not "
           f"loaded (nvidia-smi tells)")
    head = f"device 'cuda' requested but CUDA is not available on this machine ({why}); use "
    path = tmp_path / "device.yaml"
    path.write_text("/**:\n  ros__parameters:\n    device: cuda\n")
    model = ["-p", "depth.variant:=dpt_tiny", "-p", "depth.weights:=random"]
    context = Context()
    rclpy.init(context=context, domain_id=DOMAIN + 22)
    try:
        for cli, use in ((["-p", "device:=cuda"], "-p device:=cpu or -p device:=auto"),
                         (["--params-file", str(path)], "device: cpu or device: auto")):
            with pytest.raises(StartupError) as info:
                DptNode(context=context, cli_args=["--ros-args", *model, *cli])
            assert str(info.value) == f"invalid parameters: {head}{use}", str(info.value)
    finally:
        rclpy.shutdown(context=context)
    node = harness.start_node(namespace="robot")
    r = _ros2_param_set(harness, "ros2 param set /robot/dpt_node device cuda")
    assert not r.successful and r.reason == (f"{head}ros2 param set /robot/dpt_node device cpu or ros2 param set "
                                             f"/robot/dpt_node device auto"), r.reason
    r = _ros2_param_set(harness, "ros2 param set /robot/dpt_node device cpu")
    assert r.successful, r.reason
    assert get_params(harness, node, "device") == ["cpu"]


def test_a_list_refused_live_is_said_as_the_command_that_sets_it(harness):
    """cameras, settable on the managed node while unconfigured: `ros2 param set /robot/dpt_node cameras left` sends
    a string; the refusal says the command with the list, quoted for the shell, and that command is taken."""
    node = harness.start_node(namespace="robot", managed=True)
    fqn = node.get_fully_qualified_name()
    r = _ros2_param_set(harness, f"ros2 param set {fqn} cameras left")
    assert not r.successful and r.reason == (f"cameras is a string array; got a string ('left'): write a list, "
                                             f"ros2 param set {fqn} cameras \"[left]\""), r.reason
    r = _ros2_param_set(harness, r.reason.split(", ", 1)[1])
    assert r.successful, r.reason
    assert get_params(harness, node, "cameras") == [["left"]]
    # "[]": ros2param reads an empty list as a bool array (no element type); it was refused as "got a bool array
    # ([])", as if the user had typed booleans
    r = _ros2_param_set(harness, f"ros2 param set {fqn} cameras \"[]\"")
    assert not r.successful and r.reason == (
        f"cameras is a string array; got an empty list (sent as a bool array: [] has no element type): cameras must "
        f"list at least one namespace ('' = the node's own namespace); e.g. its default: ros2 param set {fqn} "
        f"cameras \"['']\""), r.reason
    r = _ros2_param_set(harness, r.reason.split("default: ", 1)[1])
    assert r.successful and get_params(harness, node, "cameras") == [[""]], r.reason


def test_refusals_across_parameters_say_the_ros2_param_set_commands_that_are_taken(harness):
    """The refusals of a value that does not go with the others (params.validate's) say their remedy as the `ros2
    param set` commands for this node, in the order they take, a weights file as the placeholder <file>: each
    refusal pinned, then its commands, split as a shell splits them, their values read as ros2param reads them (<file>
    given as random), are accepted one after the other through the same service. The managed node, unconfigured (no
    model loads). Before, the remedies were words ("it is a segmentation variant: set segmentation.variant")."""
    node = harness.start_node(namespace="robot", managed=True)
    fqn = node.get_fully_qualified_name()
    assert fqn == "/robot/dpt_node"
    depth_valid = ("valid: dpt_large, dpt_hybrid, dpt_base, dpt_hybrid_kitti, dpt_hybrid_nyu, dpt_tiny (or '' to "
                   "disable)")
    steps = [
        # a segmentation variant given as the depth one: the segmentation weights (empty) first, then its variant
        ("depth.variant", "dpt_hybrid_ade20k",
         f"depth.variant='dpt_hybrid_ade20k' is not a depth variant; {depth_valid}; it is a segmentation variant: "
         f"ros2 param set {fqn} segmentation.weights <file> (or random), then "
         f"ros2 param set {fqn} segmentation.variant dpt_hybrid_ade20k",
         {"segmentation.weights": "random", "segmentation.variant": "dpt_hybrid_ade20k"}),
        # the weights of a running task cleared: a file, or (segmentation runs now) depth disabled, "''" for ''
        ("depth.weights", "''",
         f"depth.weights is empty but depth.variant is 'dpt_tiny': ros2 param set {fqn} depth.weights <file> (or "
         f"random), or to disable depth: ros2 param set {fqn} depth.variant \"''\"",
         {"depth.variant": ""}),
        ("depth.weights", "''", None, {"depth.weights": ""}),   # (taken, depth being off)
        # a depth variant given as the segmentation one; the depth weights are empty now: they go first
        ("segmentation.variant", "dpt_tiny",
         "segmentation.variant='dpt_tiny' is not a segmentation variant; valid: dpt_large_ade20k, dpt_hybrid_ade20k "
         f"(or '' to disable); it is a depth variant: ros2 param set {fqn} depth.weights <file> (or random), then "
         f"ros2 param set {fqn} depth.variant dpt_tiny",
         {"depth.weights": "random", "depth.variant": "dpt_tiny"}),
        # the variant set without weights: they go first
        ("segmentation.variant", "''", None, {"segmentation.variant": ""}),
        ("segmentation.weights", "''", None, {"segmentation.weights": ""}),
        ("segmentation.variant", "dpt_large_ade20k",
         "segmentation.weights is empty but segmentation.variant is 'dpt_large_ade20k': set its weights first, "
         f"ros2 param set {fqn} segmentation.weights <file> (or random); from a file, `ros2 param load` sets "
         "segmentation.variant before segmentation.weights (one by one, in the file's order, as ros2 param dump sorts "
         "them): load the file again", {"segmentation.weights": "random"}),
        # fp16 on the CPU
        ("precision", "fp16",
         f"precision fp16 is not supported on the CPU (device 'cpu'); use ros2 param set {fqn} precision fp32 or "
         f"ros2 param set {fqn} precision bf16", {"precision": "fp32"}),
    ]
    for name, typed, reason, meant in steps:
        r = _ros2_param_set(harness, f"ros2 param set {fqn} {name} {shlex.quote(typed)}")
        if reason is None:
            assert r.successful, (name, typed, r.reason)
            assert get_params(harness, node, *meant) == list(meant.values())
            continue
        assert not r.successful and r.reason == reason, (name, typed, r.reason)
        commands = re.findall(r"ros2 param set \S+ \S+ (?:\"[^\"]*\"|'[^']*'|[^\s,()]+)", r.reason)
        wanted = list(meant)
        if name == "precision":
            commands = commands[:1]   # (either; fp32 here)
        if name == "depth.weights":
            commands = commands[-1:]   # (the other remedy, depth off: <file> is the first's)
        assert [shlex.split(c)[4] for c in commands] == wanted, commands
        for command in commands:
            r = _ros2_param_set(harness, command.replace("<file>", "random"))
            assert r.successful, (command, r.reason)
        got = get_params(harness, node, *wanted)
        assert got == list(meant.values()) and all(type(g) is str for g in got), (commands, got)


def test_rclpy_standard_parameters_can_be_set(harness):
    """use_sim_time is declared by rclpy, not in our table: `ros2 param set /dpt_node use_sim_time true` works."""
    node = harness.start_node()
    before = node.settings
    r = set_params(harness, node, use_sim_time=True)[0]
    assert r.successful, r.reason
    assert get_params(harness, node, "use_sim_time") == [True]
    assert node.settings is before


def test_precision_fp16_on_cpu_rejected(harness):
    node = harness.start_node()
    r = set_params(harness, node, precision="fp16")[0]
    assert not r.successful and "not supported on the CPU" in r.reason


def test_atomic_set_checks_values_together(harness):
    node = harness.start_node()
    r = set_params_atomically(harness, node, **{"depth.min": 5.0, "depth.max": 4.0})
    assert not r.successful and "below depth.max" in r.reason
    r = set_params_atomically(harness, node, **{"depth.min": 5.0, "depth.max": 8.0})
    assert r.successful
    assert (node.settings["depth.min"], node.settings["depth.max"]) == (5.0, 8.0)


def test_descriptors_and_class_names(harness):
    node = harness.start_node()
    names = ["input_size", "segmentation.overlay_alpha", "cameras", "resize_method"]
    res = call_service(harness, DescribeParameters, f"/{node.get_name()}/describe_parameters",
                DescribeParameters.Request(names=names))
    d = {x.name: x for x in res.descriptors}
    assert d["input_size"].integer_range[0].step == 32 and d["input_size"].integer_range[0].to_value == 2048
    assert d["segmentation.overlay_alpha"].floating_point_range[0].to_value == 1.0
    assert d["cameras"].read_only and not d["input_size"].read_only
    assert "minimal" in d["resize_method"].description and "background" in d["resize_method"].description
    class_names = get_params(harness, node, "class_names")[0]
    assert len(class_names) == 151 and class_names[0] == "unlabeled" and class_names[1] == "wall"
    # every parameter of the table is declared, with its description
    assert set(node._parameters) >= {p.name for p in params.PARAMETERS}


def test_model_swap_under_a_stream_keeps_serving(harness, monkeypatch):
    """input_size is a model parameter: the new engine is built in the background while frames keep
    flowing (here its build is held until the old model has published 5 more frames: a build in the worker's way
    would publish none meanwhile), then the outputs come from the new model; they never stop for long at the swap."""
    node = harness.start_node()
    out = harness.collector(Image, "inverse_depth")
    pub = harness.probe.create_publisher(Image, "image", qos())
    wait_for(lambda: pub.get_subscription_count() > 0 and
             node.cameras[0].pubs["inverse_depth"].get_subscription_count() > 0, what="discovery")
    old = node.models
    built, building = threading.Event(), threading.Event()
    warmup = node._warmup   # (the loader's last step before the swap: the start-up's already ran)

    def held_warmup(models):
        building.set()
        built.wait(30)
        warmup(models)

    monkeypatch.setattr(node, "_warmup", held_warmup)
    stop = threading.Event()
    arrivals = []

    def stream():
        i = 0
        while not stop.is_set():
            i += 1
            pub.publish(make_image(i * 1_000_000, width=96, height=72))
            time.sleep(0.02)   # 50 Hz camera

    watcher = harness.probe.create_subscription(Image, "inverse_depth", lambda m: arrivals.append(time.monotonic()), qos())
    t = threading.Thread(target=stream, daemon=True)
    t.start()
    try:
        wait_for(lambda: len(out) >= 5, what="stream running")
        r = set_params(harness, node, input_size=96, **{"depth.weights": "random"})[0]
        assert r.successful, r.reason
        wait_for(building.is_set, timeout=30, what="the new model being built")
        n_building = len(out)
        wait_for(lambda: len(out) >= n_building + 5, what="outputs of the old model while the new one is built")
        assert node.models is old
        built.set()
        wait_for(lambda: node.models is not old, timeout=30, what="model swap")
        n_at_swap = len(out)
        wait_for(lambda: len(out) >= n_at_swap + 5, what="outputs after swap")
    finally:
        built.set()
        stop.set()
        t.join()
    harness.probe.destroy_subscription(watcher)
    assert node.models.depth_pre.net_size == (96, 96) and old.depth_pre.net_size == (64, 64)
    gaps = np.diff(arrivals)
    # (a bound for a stop at the swap itself, generous for a loaded machine; the build's is the hold above)
    assert gaps.max() < 10.0, f"output gap {gaps.max():.2f} s during the swap"
    stamps = [m.header.stamp.nanosec + m.header.stamp.sec * 10**9 for m in out]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
    wait_for(lambda: node.counts()[""]["received"] == sum(node.counts()[""].get(k, 0) for k in ("processed", "dropped", "idle")),
             what="all frames accounted for")
    # read after the wait: the worker publishes a frame's outputs before it counts the frame
    c = node.counts()[""]
    assert c["processed"] >= 15


def test_weights_plainly_no_checkpoint_and_huge_values_are_refused_when_set(harness, tmp_path):
    """A weights file whose first bytes are no checkpoint's (text, an HTML page, empty) is refused by the set call,
    with what it is; it was accepted, then set back after the load failed. A 100 kB value gets a short reason."""
    node = harness.start_node()
    (tmp_path / "notes.pt").write_text("hostname\n")
    (tmp_path / "page.pt").write_text("<!DOCTYPE html><html>Sign in</html>")
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "noise.safetensors").write_bytes(bytes(range(64)))
    for name, why in (("notes.pt", "not a PyTorch checkpoint (a zip or pickle file) nor a .safetensors file; it starts "
                                   "with text ('hostname')"),
                      ("page.pt", "is an HTML/XML page"), ("empty.pt", "is empty (0 bytes"),
                      ("noise.safetensors", "not a safetensors file")):
        r = set_params(harness, node, **{"depth.weights": str(tmp_path / name)})[0]
        assert not r.successful and why in r.reason and "or 'random'" in r.reason, r.reason
    assert node.settings["depth.weights"] == "random" and node._loader is None   # nothing was loading
    for name, value in (("depth.weights", "a" * 100_000), ("colormap", "b" * 100_000),
                        ("points.exclude_classes", "c" * 100_000)):
        r = set_params(harness, node, **{name: value})[0]
        assert not r.successful and len(r.reason) < 400 and "(100000 characters)" in r.reason, r.reason[:400]
    assert "cannot be opened: File name too long" in set_params(harness, node, **{"depth.weights": "a" * 100_000})[0].reason


def test_weights_of_a_disabled_task_load_nothing_until_it_is_enabled(harness):
    node = harness.start_node()   # depth only (segmentation.variant '')
    old = node.models
    r = set_params(harness, node, **{"segmentation.weights": "random"})[0]
    assert r.successful, r.reason
    time.sleep(0.5)
    assert node.models is old and node._loader is None   # no reload of the depth model for nothing
    assert get_params(harness, node, "segmentation.weights") == ["random"]
    r = set_params(harness, node, **{"segmentation.variant": "dpt_hybrid_ade20k"})[0]
    assert r.successful, r.reason
    wait_for(lambda: node.models is not old and node.models.segmentation is not None, timeout=30, what="swap")
    assert node.models.segmentation.variant.name == "dpt_hybrid_ade20k"
    assert node.models.key[params.MODEL_PARAMETERS.index("segmentation.weights")] == "random"


def test_failed_model_load_keeps_old_model_and_reports(harness, tmp_path):
    node = harness.start_node()
    bad = tmp_path / "corrupt.pt"
    truncated_checkpoint(bad)   # a download cut short: accepted when set, its load fails
    out = harness.collector(Image, "inverse_depth")
    diags = harness.collector(DiagnosticArray, "/diagnostics")
    pub = harness.probe.create_publisher(Image, "image", qos())
    wait_for(lambda: pub.get_subscription_count() > 0 and
             node.cameras[0].pubs["inverse_depth"].get_subscription_count() > 0, what="discovery")
    old = node.models
    r = set_params(harness, node, **{"depth.weights": str(bad)})[0]
    assert r.successful, r.reason   # the file exists; loading it is what fails
    wait_for(lambda: node.error_counts().get("model_load", 0) == 1, timeout=30, what="load failure")
    assert node.models is old
    # the parameter is put back to what is running
    wait_for(lambda: node.settings["depth.weights"] == "random", what="parameter reverted")
    assert get_params(harness, node, "depth.weights") == ["random"]
    pub.publish(make_image(7))
    wait_for(lambda: len(out) == 1, what="old model still serving")

    def model_status():
        for d in diags:
            for s in d.status:
                if s.name.endswith(": model"):
                    kv = {v.key: v.value for v in s.values}
                    if kv["last_model_error"] != "none":
                        return s, kv
        return None

    wait_for(lambda: model_status() is not None, timeout=10, what="diagnostics with the error")
    status, kv = model_status()
    assert "Error" in kv["last_model_error"]   # the loader's exception, type and message
    assert status.level == status.WARN


def test_diagnostics_content(harness):
    node = harness.start_node(**{"diagnostics.period": 0.2, "colourmap": "turbo"})   # misspelt: ignored, reported
    out = harness.collector(Image, "inverse_depth")
    diags = harness.collector(DiagnosticArray, "/diagnostics")
    pub = harness.probe.create_publisher(Image, "image", qos())
    wait_for(lambda: pub.get_subscription_count() > 0 and
             node.cameras[0].pubs["inverse_depth"].get_subscription_count() > 0, what="discovery")
    for i in range(1, 4):
        pub.publish(make_image(i))
        wait_for(lambda: len(out) == i, what=f"frame {i}")
    # the worker publishes a frame's outputs, then counts it: the reports below must come after that
    wait_for(lambda: node.counts()[""].get("processed", 0) >= 3, what="the third frame counted")
    n = len(diags)
    wait_for(lambda: len(diags) >= n + 2, what="diagnostics")
    last = diags[-1]
    by_name = {s.name: {v.key: v.value for v in s.values} for s in last.status}
    model = by_name["dpt_node: model"]
    cam = by_name["dpt_node: camera /"]
    assert model["depth.model"] == "dpt_tiny" and model["device"] == "cpu"
    assert model["pipeline"] == "numpy" and "pipeline_note" not in model   # CuPy is for CUDA devices only
    assert model["depth.random_weights"] == "True" and model["depth.net_size"] == "64x64"
    h, w = node.models.depth_pre.input_size(60, 80)   # 80x60 frames, aspect kept ("minimal")
    assert model["depth.net_input"] == f"{h}x{w}" and (h, w) != (64, 64)
    for stage in ("decode", "preprocess", "model", "postprocess", "publish"):
        assert float(model[f"latency.{stage}_ms"]) >= 0.0
    assert float(model["latency.total_p99_ms"]) > 0.0
    assert int(cam["received"]) == 3 and int(cam["processed"]) == 3 and int(cam["dropped"]) == 0
    assert "input_rate_hz" in cam and "output_rate_hz" in cam
    assert cam["topic"] == "/image"
    assert model["ignored_parameters"] == "colourmap" and node.get_parameter("colormap").value == "inferno"
    assert model["publish_format"] == "serialized CDR"   # this rmw reads the CDR dpt_ros writes


def test_failed_construction_in_process_shuts_down_cleanly(tmp_path):
    """A node that cannot start raises a StartupError naming the parameter; shutting the context down
    while that error is handled (its traceback keeps the half-built node alive, so rclpy destroys it)
    must not raise."""
    import rclpy
    from rclpy.context import Context

    from dpt_ros.ros.node import DptNode, StartupError

    context = Context()
    rclpy.init(context=context, domain_id=DOMAIN + 22)   # 64 (test_ros_label_info's, held by this module too)
    try:
        DptNode(context=context, parameter_overrides=[
            Parameter("depth.variant", value="dpt_tiny"),
            Parameter("depth.weights", value=str(tmp_path / "missing.pt"))])
    except StartupError as e:
        assert "depth.weights" in str(e)
        rclpy.shutdown(context=context)   # destroys the half-built node
    else:
        rclpy.shutdown(context=context)
        pytest.fail("a missing weights file must stop the node from starting")
    assert not context.ok()


def _log_until_on_rosout(node, log: list, text: str, timeout: float = 30.0) -> None:
    """Log ``text`` from ``node`` every 0.2 s until a line of it arrives in ``log`` (/rosout): a just-discovered
    subscription may miss the first. AssertionError after ``timeout`` seconds."""
    name = node.get_logger().name
    for i in range(int(timeout / 0.2)):
        node.get_logger().info(f"{text} {i}")
        try:
            wait_for(lambda: any(m.name == name and m.msg.startswith(text) for m in list(log)), timeout=0.2)
            return
        except AssertionError:
            continue
    raise AssertionError(f"no line {text!r} of {name} on /rosout after {timeout} s")


def _node_threads() -> list[str]:
    """The names of the live threads a DptNode starts (its worker, its compressed copies' encoders)."""
    return sorted(t.name for t in threading.enumerate() if t.is_alive() and
                  (t.name == "dpt_inference" or t.name.startswith("dpt_compressed_copies")))


def test_a_node_that_cannot_start_leaves_the_graph_and_the_rosout_of_its_name_to_a_new_node(harness, tmp_path):
    """A missing weights file: the constructor raised with the half-built node alive (held by the exception's
    traceback), still in the ROS graph, and when the garbage collector finalised it, rcl unregistered the /rosout
    publisher of its logger name: a node of the same name made meanwhile (a program that retries with other
    parameters) logged to the console only, never to /rosout. Now the node is destroyed before its exception leaves
    the constructor: gone from the graph, and the new node's lines reach /rosout after the old object is collected
    (made here without the gc.collect() that Harness.start_node does first)."""
    from dpt_ros.ros.node import DptNode

    def check(error):
        assert re.search("depth.weights: file .* not found", str(error)), str(error)

    _a_failed_start_leaves_nothing_behind(harness, DptNode, [
        Parameter("depth.variant", value="dpt_tiny"), Parameter("depth.weights", value=str(tmp_path / "no.pt"))], check)


def _a_failed_start_leaves_nothing_behind(harness, cls, overrides, check, cli_args=None) -> None:
    """``cls`` with ``overrides`` (and ``cli_args``) raises StartupError (``check`` called with it) naming the node's logger; the failed
    node is gone from the graph, and a new node of its name's lines reach /rosout before and after the failed object
    is collected."""
    import gc

    from rcl_interfaces.msg import Log

    from dpt_ros.ros.node import StartupError
    from dpt_ros.ros.testing import FAST

    log = harness.collector(Log, "/rosout")
    with pytest.raises(StartupError) as info:
        cls(context=harness.context, parameter_overrides=overrides, cli_args=cli_args)
    check(info.value)
    assert info.value.logger_name == "dpt_node"
    wait_for(lambda: "dpt_node" not in harness.probe.get_node_names(), what="the failed node to leave the graph")
    node = cls(context=harness.context, parameter_overrides=[Parameter(k, value=v) for k, v in FAST.items()])
    harness.nodes.append(node)
    harness.executor.add_node(node)
    _log_until_on_rosout(node, log, "before the failed node is collected")
    del info   # (the last hold on the failed node)
    gc.collect()
    _log_until_on_rosout(node, log, "after the failed node is collected")


@pytest.mark.parametrize("managed", [False, True], ids=["DptNode", "DptLifecycleNode"])
def test_a_value_rclpys_node_constructor_refuses_is_said_and_leaves_nothing_half_built(harness, managed):
    """use_sim_time given as 1: rclpy's Node constructor, which declares it, raised its bare
    InvalidParameterTypeException (main: a traceback, exit 1) before the node's own start ran, leaving what it had
    built (the rcl node, its /rosout and /parameter_events publishers) alive with the exception's traceback: in the
    graph, and, once collected, taking the /rosout publisher of a newer node of its name with it. Now it is the
    StartupError the node's own parameters give, with what to write, and the node is destroyed before it is raised."""
    from dpt_ros.ros.node import DptLifecycleNode, DptNode

    def check(error):
        assert str(error) == (
            "invalid parameter use_sim_time: Trying to set parameter 'use_sim_time' to '1' of type 'INTEGER', "
            "expecting type 'BOOL' (a bool: write true or false, unquoted: -p use_sim_time:=true on the command line, "
            "use_sim_time: true in a parameters file)"), str(error)

    _a_failed_start_leaves_nothing_behind(harness, DptLifecycleNode if managed else DptNode,
                                          [Parameter("use_sim_time", value=1)], check)


def test_a_lifecycle_remap_rclpys_state_machine_refuses_is_said_and_leaves_nothing_half_built(harness):
    """A remap that puts two of rclpy's lifecycle services, of different types, on one name: LifecycleNodeMixin's
    constructor, after DptNode's, raised RCLError "Failed to create lifecycle state machine" with the node built and
    left to the garbage collector (in the graph; once collected, taking the /rosout publisher of a newer node of its
    name with it), never said under the node's name (main: under [dpt_node]). Now it is a failed start of the node's
    constructor: the StartupError names the remap and what to do, and the node is destroyed before it is raised."""
    from dpt_ros.ros.node import DptLifecycleNode

    def check(error):
        assert str(error).startswith(
            "the lifecycle services could not be created with the remap(s) ~/change_state:=/dpt_node/get_state "
            "(RCLError: Failed to create lifecycle state machine"), str(error)
        assert str(error).endswith("each lifecycle service needs a name of its own (or drop the remap): remaps are "
                                   "set when the node's process starts (--ros-args -r, a launch file's remappings), "
                                   "so start it again with other ones"), str(error)

    _a_failed_start_leaves_nothing_behind(harness, DptLifecycleNode, [], check,
                                          cli_args=["--ros-args", "-r", "~/change_state:=~/get_state"])


def test_a_node_that_fails_after_its_worker_started_stops_its_threads_and_leaves_the_graph(harness):
    """A failure in the constructor after the worker threads started: its image subscription refused by rmw (this
    participant has the topic with another type: the probe's String publisher on image). The inference and
    compressed-copies threads stayed alive, waiting for frames that never came, with the model, the publishers and
    the node in the graph. Now they are stopped, the node destroyed, and the error raised unchanged: rcl's refusal as
    the node's SubscriptionError, which names the topic and what to do (main() says "cannot start: SubscriptionError:
    cannot subscribe /image ...", exit code 1)."""
    from std_msgs.msg import String

    from dpt_ros.ros.node import DptNode
    from dpt_ros.ros.testing import FAST

    harness.probe.create_publisher(String, "image", 10)

    assert _node_threads() == []
    with pytest.raises(RuntimeError, match="cannot subscribe /image .*Failed to create subscription: .* incompatible "
                                           "type.*another node in this process") as info:
        DptNode(context=harness.context, parameter_overrides=[Parameter(k, value=v) for k, v in FAST.items()])
    assert type(info.value).__name__ == "SubscriptionError" and info.value.logger_name == "dpt_node"
    wait_for(lambda: _node_threads() == [], what="the failed node's threads to end")
    wait_for(lambda: "dpt_node" not in harness.probe.get_node_names(), what="the failed node to leave the graph")


def test_a_ctrl_c_once_the_node_subscribed_takes_down_what_it_built_and_raises_the_interrupt(harness, monkeypatch):
    """Ctrl-C or SIGTERM (KeyboardInterrupt in the main thread) that comes while the constructor subscribes, the
    worker threads running: the interrupt left the constructor with all of it alive (the constructor handled
    Exception only). Now the same KeyboardInterrupt is raised (main() ends with exit code 0 as before) with the threads
    stopped and the node gone from the graph. The interrupt is raised where a signal's would be, right after the
    node's real activation."""
    from dpt_ros.ros.node import DptNode
    from dpt_ros.ros.testing import FAST

    interrupt = KeyboardInterrupt()
    activate = DptNode._activate

    def interrupted(node) -> None:
        activate(node)
        assert node.cameras[0].subs.keys() == {"image", "camera_info"} and "dpt_inference" in _node_threads()
        raise interrupt

    monkeypatch.setattr(DptNode, "_activate", interrupted)

    with pytest.raises(KeyboardInterrupt) as info:
        DptNode(context=harness.context, parameter_overrides=[Parameter(k, value=v) for k, v in FAST.items()])
    assert info.value is interrupt
    wait_for(lambda: _node_threads() == [], what="the interrupted node's threads to end")
    wait_for(lambda: "dpt_node" not in harness.probe.get_node_names(), what="the interrupted node to leave the graph")
    assert info.value.logger_name == "dpt_node"   # (as an Exception's, for main())


def test_weights_set_to_a_hugging_face_snapshot_folder_load(harness, tmp_path):
    """`ros2 param set /dpt depth.weights <snapshot folder>`: the folder's model.safetensors is what loads
    (an empty folder is rejected with the reason; the running model keeps serving)."""
    from rcl_interfaces.msg import Log
    from safetensors.torch import save_file

    import rclpy
    from rclpy.context import Context

    from dpt_ros.model import official_to_hf
    from dpt_ros.model.reference import random_state_dict
    from dpt_ros.ros.node import DptNode, StartupError

    node = harness.start_node()
    old = node.models
    snap = tmp_path / "dpt-tiny-snapshot"
    snap.mkdir()
    r = set_params(harness, node, **{"depth.weights": str(snap)})[0]
    assert not r.successful and "is a directory without model.safetensors or pytorch_model.bin" in r.reason
    sd = random_state_dict("dpt_tiny", seed=5)
    save_file({k: v.clone().contiguous() for k, v in official_to_hf(sd).items()}, str(snap / "model.safetensors"))
    r = set_params(harness, node, **{"depth.weights": str(snap)})[0]
    assert r.successful, r.reason
    wait_for(lambda: node.models is not old, timeout=30, what="swap to the snapshot's weights")
    engine = node.models.depth
    assert engine.model.load_report.source_format == "huggingface" and not node.error_counts().get("model_load")
    # the served weights are the file's (through the HF -> official name mapping), not the random ones
    served = engine.model.state_dict()
    for name in ("pretrained.model.pos_embed", "scratch.output_conv.4.weight"):
        assert torch.equal(served[name].float(), sd[name].float()), name
    # and at start-up, as `-p depth.weights:=<folder>` (it used to be refused there as "not found"); its loading line
    # names the file taken: model.safetensors before a pytorch_model.bin beside it (it named only the folder)
    torch.save(official_to_hf(random_state_dict("dpt_tiny", seed=6)), str(snap / "pytorch_model.bin"))
    log = harness.collector(Log, "/rosout")
    started = harness.start_node(namespace="from_snapshot", **{"depth.weights": str(snap)})
    assert started.models.depth.model.load_report.source_format == "huggingface"
    assert torch.equal(started.models.depth.model.state_dict()["pretrained.model.pos_embed"].float(),
                       sd["pretrained.model.pos_embed"].float())
    wait_for(lambda: any(m.name == "from_snapshot.dpt_node" and m.msg.startswith("loading ") for m in list(log)),
             what="the loading line")
    assert [m.msg for m in list(log) if m.name == "from_snapshot.dpt_node" and m.msg.startswith("loading ")] == \
        [f"loading depth dpt_tiny ({snap}: model.safetensors) on device cpu ..."]
    empty = tmp_path / "empty-snapshot"
    empty.mkdir()
    context = Context()   # (its own: the half-built node goes with it)
    rclpy.init(context=context, domain_id=DOMAIN + 22)
    try:
        with pytest.raises(StartupError, match="is a directory without model.safetensors or pytorch_model.bin"):
            DptNode(context=context, parameter_overrides=[Parameter("depth.variant", value="dpt_tiny"),
                                                          Parameter("depth.weights", value=str(empty))])
    finally:
        rclpy.shutdown(context=context)


def test_a_live_swap_names_the_weights_now_serving_in_the_log_and_diagnostics(harness, tmp_path):
    """`ros2 param set /dpt_node depth.weights ...` (a file, a Hugging Face snapshot folder, random): the log said only
    'model swapped in' and /diagnostics named no weights, so a user could not tell which weights ran after a swap; a
    failed load said 'keeping the running model' without which. The swap line names them as the start-up loading line
    does (a folder with the file taken from it), the failure names the weights still serving, and /diagnostics' model
    status has depth.weights."""
    from rcl_interfaces.msg import Log
    from safetensors.torch import save_file

    from dpt_ros.model import official_to_hf
    from dpt_ros.model.reference import random_state_dict

    log = harness.collector(Log, "/rosout")
    diags = harness.collector(DiagnosticArray, "/diagnostics")
    node = harness.start_node(**{"diagnostics.period": 0.2})

    def swap_line(mark):
        wait_for(lambda: any(m.msg.startswith(("model swapped in", "model load failed")) for m in list(log)[mark:]),
                 timeout=30, what="the swap's line")
        return [m.msg for m in list(log)[mark:] if m.msg.startswith(("model swapped in", "model load failed"))][0]

    def model_status(weights: str, error: str = "none") -> dict:
        """The model status of the first report after this call that names ``weights`` and ``error`` as the last
        model error (reports made before, still on their way under load, are passed over; none in the wait fails the
        test)."""
        n = len(diags)

        def status(msg) -> dict:
            return {v.key: v.value for s in msg.status if s.name == "dpt_node: model" for v in s.values}

        def found() -> list:
            return [st for st in map(status, list(diags)[n:]) if st.get("depth.weights") == weights
                    and st.get("last_model_error", "").startswith(error)]
        wait_for(found, what=f"diagnostics naming {weights} and last_model_error {error}")
        return found()[0]

    assert model_status("random")["depth.weights"] == "random"
    path = tmp_path / "tiny.pt"
    torch.save(random_state_dict("dpt_tiny", seed=3), path)
    snap = tmp_path / "dpt-tiny-snapshot"
    snap.mkdir()
    save_file({k: v.clone().contiguous() for k, v in official_to_hf(random_state_dict("dpt_tiny", seed=5)).items()},
              str(snap / "model.safetensors"))
    torch.save(official_to_hf(random_state_dict("dpt_tiny", seed=6)), str(snap / "pytorch_model.bin"))
    for value, named in ((path, f"{path}"), ("random", "random"), (snap, f"{snap}: model.safetensors")):
        mark, before = len(log), node.models
        assert set_params(harness, node, **{"depth.weights": str(value)})[0].successful
        wait_for(lambda: node.models is not before, timeout=30, what=f"the swap to {value}")
        assert swap_line(mark) == f"model swapped in: depth dpt_tiny ({named})"
        model = model_status(named)
        assert model["depth.random_weights"] == str(value == "random"), model
    # a file that is a checkpoint, but of no DPT (its load fails): the snapshot's weights serve on, and are said to
    wrong = tmp_path / "other.pt"
    torch.save({"fc.weight": torch.zeros(2, 2)}, wrong)
    mark, before = len(log), node.models
    assert set_params(harness, node, **{"depth.weights": str(wrong)})[0].successful
    line = swap_line(mark)
    assert line.startswith(f"model load failed, keeping the running model (depth dpt_tiny ({snap}: "
                           f"model.safetensors)): "
                           f"CheckpointError: depth.weights: {wrong} is not a DPT checkpoint"), line
    wait_for(lambda: node.settings["depth.weights"] == str(snap), what="depth.weights set back")
    model_status(f"{snap}: model.safetensors", error="CheckpointError: depth.weights: ")
    assert node.models is before



def test_a_failed_live_load_says_which_parameters_it_set_back_and_to_what(harness, tmp_path):
    """One atomic request (as `ros2 param load` makes) of depth.weights (a checkpoint of no DPT) and input_size: the
    load fails, the running model serves on and both parameters are put back (so `ros2 param get` tells the truth),
    but the log said only 'model load failed, keeping the running model (...): ...': the user saw `successful: True`
    and then other values. The failure line now ends with each parameter set back and the value it now has."""
    from rcl_interfaces.msg import Log

    log = harness.collector(Log, "/rosout")
    node = harness.start_node()
    wrong = tmp_path / "other.pt"
    torch.save({"fc.weight": torch.zeros(2, 2)}, wrong)
    before = node.models
    assert set_params_atomically(harness, node, **{"depth.weights": str(wrong)}, input_size=96).successful

    def failed():
        return [m.msg for m in list(log) if m.msg.startswith("model load failed")]

    wait_for(failed, timeout=30, what="the failure's line")
    assert failed() == [
        f"model load failed, keeping the running model (depth dpt_tiny (random)): CheckpointError: depth.weights: "
        f"{wrong} is not a DPT checkpoint: none of its 1 tensors (fc.weight) belongs to a DPT decoder (official "
        f"scratch.*, Hugging Face neck.* / head.head.*); a ViT backbone or classifier alone cannot run. Give a DPT "
        f"checkpoint (python -m dpt_ros.tools.weights --urls lists the official ones); depth.weights set back to "
        f"random, input_size set back to 64"]
    assert get_params(harness, node, "depth.weights", "input_size") == ["random", 64]
    assert node.models is before

class _GatedLoads:
    """Holds the node's real model loads until released: ``load_models`` (the real one) runs only after
    ``release()``, so a test can change parameters or stop the node while a load is in progress."""

    def __init__(self, monkeypatch) -> None:
        from dpt_ros.ros import node as node_module

        self.started = threading.Event()
        self._go = threading.Event()
        real = node_module.load_models

        def gated(s, running=None):
            self.started.set()
            assert self._go.wait(30), "gate never released"
            return real(s, running)

        monkeypatch.setattr(node_module, "load_models", gated)

    def release(self) -> None:
        self._go.set()


def test_a_failed_load_does_not_revert_a_weights_change_made_during_it(harness, tmp_path, monkeypatch):
    """weights -> a corrupt file; while that load runs the user sets weights again, to a good file. The
    failure puts back only what the user has not changed since: the good file loads and stays set."""
    from dpt_ros.model.reference import random_state_dict

    node = harness.start_node()
    old = node.models
    bad, good = tmp_path / "corrupt.pt", tmp_path / "good.pt"
    truncated_checkpoint(bad)   # a download cut short: accepted when set, its load fails
    sd = random_state_dict("dpt_tiny", seed=9)
    torch.save(sd, good)
    gate = _GatedLoads(monkeypatch)
    assert set_params(harness, node, **{"depth.weights": str(bad)})[0].successful
    assert gate.started.wait(30)
    assert set_params(harness, node, **{"depth.weights": str(good)})[0].successful
    gate.release()
    wait_for(lambda: node.models is not old, timeout=60, what="swap to the good file")
    wait_for(lambda: not node._model_loading, timeout=30, what="loader idle")
    assert node.error_counts().get("model_load") == 1   # the corrupt file's load failed and was counted
    assert get_params(harness, node, "depth.weights") == [str(good)]
    served = node.models.depth
    assert not served.random_weights
    assert torch.equal(served.model.state_dict()["scratch.output_conv.4.weight"].float(),
                       sd["scratch.output_conv.4.weight"].float())


def test_a_load_that_finishes_after_stop_is_not_swapped_in(harness, monkeypatch):
    node = harness.start_node()
    old = node.models
    gate = _GatedLoads(monkeypatch)
    assert set_params(harness, node, **{"input_size": 96})[0].successful
    assert gate.started.wait(30)
    threading.Timer(0.5, gate.release).start()   # stop() waits for the load
    node.stop()
    assert not node._loader.is_alive()
    assert node.models is old


def test_a_swapped_in_model_is_warmed_up_at_the_shapes_being_served(harness, monkeypatch):
    """Two cameras send 80x60 frames; after an input_size change the new engine's warm-up runs at the
    network shape those frames get (64x96 at input_size 96: the official minimal rule), not at the
    variant's square size; without cuda_graphs one pass per shape (batch sizes are graphs of their own
    only with cuda_graphs: test_ros_node_gpu.py)."""
    from dpt_ros.model.engine import Engine

    node = harness.start_node(cameras=["a", "b"])
    outs, pubs = harness.cameras(node, ("a", "b"))
    for ns, p in pubs.items():
        p.publish(make_image(1, width=80, height=60, frame_id=ns))
    wait_for(lambda: all(len(o) == 1 for o in outs.values()), what="one output per camera")
    assert [c.frame_size for c in node.cameras] == [(60, 80), (60, 80)]
    warmed = []
    real_run = Engine.run

    def recording(self, batch):
        if threading.current_thread().name == "dpt_model_loader":
            warmed.append(tuple(batch.shape))
        return real_run(self, batch)

    monkeypatch.setattr(Engine, "run", recording)
    old = node.models
    assert set_params(harness, node, input_size=96)[0].successful
    wait_for(lambda: node.models is not old, timeout=30, what="swap")
    assert warmed == [(1, 3, 64, 96)]   # the variant's square size would be 96x96
    assert node.models.depth_pre.input_size(60, 80) == (64, 96)


def test_cpu_threads_caps_pytorch_and_opencv_and_0_restores_their_defaults(harness):
    """cpu_threads applies from the next frame to PyTorch's threads in the worker (OpenMP counts them per
    calling thread) and OpenCV's process-wide pool, reported in /diagnostics; 0 gives back the defaults."""
    import cv2

    before = (torch.get_num_threads(), cv2.getNumThreads())
    try:
        torch.set_num_threads(2)   # defaults other than 1 and 3 (the tests run PyTorch on one thread: test/conftest.py)
        defaults = (2, before[1])
        node = harness.start_node(cpu_threads=1)
        out = harness.collector(Image, "inverse_depth")
        pub = harness.probe.create_publisher(Image, "image", qos("reliable"))
        wait_for(lambda: pub.get_subscription_count() > 0 and
                 node.cameras[0].pubs["inverse_depth"].get_subscription_count() > 0, what="discovery")
        for i, (value, want) in enumerate(((1, (1, 1)), (3, (3, 3)), (0, defaults))):
            if i:
                assert set_params(harness, node, cpu_threads=value)[0].successful
            pub.publish(make_image(100 + i))
            wait_for(lambda: len(out) == i + 1, what=f"frame with cpu_threads {value}")
            model = {kv.key: kv.value for kv in node.diagnostics().status[0].values}
            assert model["cpu_threads"] == "torch {}, opencv {}".format(*want), value   # as the worker sees them
            assert cv2.getNumThreads() == want[1]                                      # process-wide
        assert not set_params(harness, node, cpu_threads=-1)[0].successful
    finally:
        torch.set_num_threads(before[0])
        cv2.setNumThreads(before[1])


def test_cpu_threads_given_at_start_up_applies_before_the_models_warm_up_and_is_reported_at_once(harness):
    """-p cpu_threads:=1 (leave a core to the robot): the model's load and warm-up, seconds of DPT-Hybrid on all cores
    of a laptop, ran at PyTorch's default threads, and /diagnostics said 'torch 2, opencv 2' until the first frame came.
    It now applies before the load."""
    import cv2

    before = (torch.get_num_threads(), cv2.getNumThreads())
    try:
        torch.set_num_threads(2)   # a default above 1 (the tests run PyTorch on one thread: test/conftest.py)
        node = harness.start_node(cpu_threads=1)
        model = {kv.key: kv.value for kv in node.diagnostics().status[0].values}
        assert model["cpu_threads"] == "torch 1, opencv 1" and node.counts()[""].get("received", 0) == 0, model
        assert (torch.get_num_threads(), cv2.getNumThreads()) == (1, 1)
    finally:
        torch.set_num_threads(before[0])
        cv2.setNumThreads(before[1])


def test_a_swap_of_one_task_keeps_the_other_tasks_model(harness, tmp_path):
    """Depth and segmentation run; a new depth.weights file loads only depth: the segmentation engine is the same
    object (no second load, no second copy in memory, its random weights unchanged, no second RANDOM WEIGHTS
    banner). A change of a shared parameter (input_size) rebuilds both."""
    from rcl_interfaces.msg import Log

    from dpt_ros.model.reference import random_state_dict

    log = harness.collector(Log, "/rosout")
    node = harness.start_node(**{"segmentation.variant": "dpt_hybrid_ade20k", "segmentation.weights": "random"})
    before = node.models
    path = tmp_path / "tiny.pt"
    torch.save(random_state_dict("dpt_tiny", seed=3), path)
    mark = len(log)
    assert set_params(harness, node, **{"depth.weights": str(path)})[0].successful
    wait_for(lambda: node.models is not before, timeout=60, what="depth swapped")
    after = node.models
    assert after.depth is not before.depth and not after.depth.random_weights
    assert after.segmentation is before.segmentation and after.segmentation_pre is before.segmentation_pre
    assert after.reused == ("segmentation",)
    wait_for(lambda: any("depth: dpt_tiny on cpu" in m.msg for m in log[mark:]), what="the new model logged")
    # the swap line names what loaded and what was kept, with their weights (it said only 'model swapped in')
    assert [m.msg for m in log[mark:] if m.msg.startswith("model swapped in")] == \
        [f"model swapped in: depth dpt_tiny ({path}); kept: segmentation dpt_hybrid_ade20k (random)"]
    assert not any("RANDOM WEIGHTS" in m.msg or "segmentation: dpt_hybrid_ade20k" in m.msg for m in log[mark:])

    assert set_params(harness, node, input_size=96)[0].successful
    wait_for(lambda: node.models is not after, timeout=60, what="both rebuilt")
    assert node.models.depth is not after.depth and node.models.segmentation is not after.segmentation
    assert node.models.reused == () and node.models.segmentation_pre.net_size == (96, 96)

    # device auto -> cpu names the device the models already run on (no GPU here): nothing is loaded again
    rebuilt = node.models
    assert str(rebuilt.device) == "cpu" and node.get_parameter("device").value == "cpu"
    assert set_params(harness, node, device="auto")[0].successful
    wait_for(lambda: node.models is not rebuilt, timeout=60, what="the swap to device auto")
    assert node.models.reused == ("depth", "segmentation") and node.models.depth is rebuilt.depth


@pytest.mark.parametrize(("cameras", "node_ns", "same"), [(["left", "/left"], "/", "/left/inverse_depth"),
                                                          (["~/cam", "/dpt_node/cam"], "/", "/dpt_node/cam/inverse_depth"),
                                                          (["", "/rig"], "/rig", "/rig/inverse_depth")])
def test_two_spellings_of_one_camera_are_refused_at_start_up(cameras, node_ns, same):
    """cameras:=[left, /left] in the root namespace names one camera twice: two subscriptions of one topic and two
    publishers per output, every frame processed and published twice. Refused, naming both and the topic."""
    import rclpy
    from rclpy.context import Context

    from dpt_ros.ros.node import DptNode, StartupError
    from dpt_ros.ros.testing import FAST

    context = Context()
    rclpy.init(context=context, domain_id=DOMAIN + 23)
    try:
        with pytest.raises(StartupError, match="cameras lists one camera twice: ") as info:
            DptNode(context=context, namespace=node_ns,
                    parameter_overrides=[Parameter(n, value=v) for n, v in FAST.items()]
                    + [Parameter("cameras", value=cameras)])
        assert f"{cameras[0]!r} and {cameras[1]!r} both publish {same}; list it once" in str(info.value)
        ok = DptNode(context=context, namespace=node_ns, parameter_overrides=[
            Parameter(n, value=v) for n, v in FAST.items()] + [Parameter("cameras", value=[cameras[0], "/other"])])
        assert [c.ns for c in ok.cameras] == [cameras[0], "/other"]
        ok.destroy_node()
    finally:
        rclpy.shutdown(context=context)


def test_cuda_graphs_kept_cover_one_per_camera():
    """With cuda_graphs, the engine keeps a graph per network shape and batch size, and cameras of one shape form
    batches of 1..n of them: the cameras' steady state needs one graph per camera. The engine kept 4 whatever the
    cameras, so five or more cameras of other aspect ratios taking turns evicted and recaptured a graph (two eager
    passes and a capture) on every batch. (Graphs need CUDA; the number kept is the engine's own, set here too.)"""
    from dpt_ros.ros.node import load_models

    base = params.defaults().replace({"depth.variant": "dpt_tiny", "depth.weights": "random", "device": "cpu",
                                      "input_size": 64})
    assert load_models(base).depth.max_graphs == 4
    assert load_models(base.replace({"cameras": ["a", "b"]})).depth.max_graphs == 4
    assert load_models(base.replace({"cameras": [f"cam{i}" for i in range(6)]})).depth.max_graphs == 6


#: start-up values refused by rclpy's declaration, each as a -p value / a parameters file's YAML, and what the
#: remedies the node suggests must give when used (in the order suggested)
REFUSED_AT_START = [("depth.max", "7", [7.0]), ("depth.max", "far", [1000.0]), ("lazy", "1", [True]),
                    ("points.enabled", "'yes'", [True]),   # a bool written as a string
                    ("cameras", "left", [["a", "b"]]), ("depth.variant", "1", ["dpt_hybrid", "1"]),
                    ("input_size", "abc", [0]), ("input_size", "400", [384, 416]), ("input_size", "16", [32]),
                    ("depth.exclude_classes", "[person, car]", ["person, car"]),   # (a list: one string)
                    ("max_rate", "off", [0.0])]   # (a bool to YAML)


def test_start_up_hints_are_in_the_form_given_and_what_they_suggest_is_taken(tmp_path):
    """The node's refusal of a start-up value says how to write it in the form it was given: -p rules for a -p rule,
    a parameters file's lines for a file, both for parameter_overrides (value_source: None). What it suggests,
    given as suggested (the -p rule split as a shell splits it; the line in a parameters file), is declared by
    rclpy with the node's own descriptor, as the node declares it, with the type and value meant: a string that
    looks like a number ('1') is quoted for YAML and for the shell, and reaches rclpy as a string."""
    import rclpy
    from rclpy.context import Context
    from rclpy.node import Node

    from dpt_ros.ros.node import DptNode, StartupError

    def file_of(line):
        path = tmp_path / f"p{len(list(tmp_path.iterdir()))}.yaml"
        path.write_text(f"/**:\n  ros__parameters:\n    {line}\n")
        return str(path)

    def declared(name, cli):   # what rclpy makes of a start-up value, declared as the node declares it
        node = Node("declaring", context=context, cli_args=["--ros-args", *cli])
        try:
            spec = params.SPECS[name]
            value = node.declare_parameter(name, spec.default, spec.descriptor()).value
            return list(value) if isinstance(value, (list, tuple)) else value
        finally:
            node.destroy_node()

    context = Context()
    rclpy.init(context=context, domain_id=DOMAIN + 22)
    try:
        for name, value, wanted in REFUSED_AT_START:
            for form, cli in (("param", ["-p", f"{name}:={value}"]),
                              ("file", ["--params-file", file_of(f"{name}: {value}")])):
                with pytest.raises(StartupError) as info:
                    DptNode(context=context, cli_args=["--ros-args", *cli])
                message = str(info.value)
                assert message.startswith(f"invalid parameter {name}: "), message
                hint = message[message.rindex(" ("):]   # (after rclpy's words)
                if form == "param":
                    assert f"{name}: " not in hint, message   # no YAML line for a -p rule
                    rules = re.findall(r"-p (\S+?:=(?:\"[^\"]*\"|'[^']*'|[^\s;,)]+))", hint)
                    given = [shlex.split(rule) for rule in rules]
                    assert all(len(words) == 1 for words in given), rules
                    got = [declared(name, ["-p", words[0]]) for words in given]
                else:
                    assert "-p " not in hint and ":=" not in hint, message
                    lines = re.findall(rf"{re.escape(name)}: (\[[^\]]*\]|'[^']*'|[^\s;,)]+)", hint)
                    got = [declared(name, ["--params-file", file_of(f"{name}: {line}")]) for line in lines]
                assert got == wanted and [type(v) for v in got] == [type(v) for v in wanted], (form, message)
        # parameter_overrides: the command line does not say, both forms
        with pytest.raises(StartupError) as info:
            DptNode(context=context, parameter_overrides=[Parameter("lazy", value=1)])
        assert str(info.value).endswith(
            "(a bool: write true or false, unquoted: -p lazy:=true on the command line, lazy: true in a parameters "
            "file)"), str(info.value)
    finally:
        rclpy.shutdown(context=context)


def _ros2_param_dump(harness, node_path: str, path) -> None:
    """``ros2 param dump NODE > path`` as ros2param's dump verb does it (ros2cli's ros2param/verb/dump.py; ros2param
    is not installed here): every name ListParameters gives, sorted, their values by GetParameters, nested at the
    dots under ``{NODE: {ros__parameters: ...}}``, written by ``yaml.dump(..., default_flow_style=False)``."""
    import yaml
    from rcl_interfaces.srv import GetParameters, ListParameters
    from rclpy.parameter import parameter_value_to_python

    names = sorted(call_service(harness, ListParameters, f"{node_path}/list_parameters",
                                ListParameters.Request()).result.names)
    values = call_service(harness, GetParameters, f"{node_path}/get_parameters",
                          GetParameters.Request(names=names)).values
    out: dict = {}
    for name, value in zip(names, values):
        *parents, leaf = name.split(".")
        d = out
        for part in parents:
            d = d.setdefault(part, {})
        d[leaf] = parameter_value_to_python(value)
    path.write_text(yaml.dump({node_path: {"ros__parameters": out}}, default_flow_style=False))


def _ros2_param_load(harness, node_path: str, path) -> dict:
    """``ros2 param load NODE path`` as ros2param does it (ros2param/api load_parameter_file: rclpy's
    parameter_dict_from_yaml_file with the wildcard, each value written with str() and read back by
    get_parameter_value, all in one SetParameters request in the file's order). {name: result}."""
    from rclpy.parameter import parameter_dict_from_yaml_file

    parameters = list(parameter_dict_from_yaml_file(str(path), True, target_nodes=[node_path]).values())
    results = call_service(harness, SetParameters, f"{node_path}/set_parameters",
                           SetParameters.Request(parameters=parameters)).results
    return {p.name: r for p, r in zip(parameters, results)}


def test_ros2_param_load_of_a_dump_of_the_same_node_sets_every_value_and_reloads_nothing(harness, tmp_path):
    """`ros2 param dump /dpt_node > tuned.yaml`, then `ros2 param load /dpt_node tuned.yaml`: the read-only
    parameters (cameras, qos.*, publish.compressed, class_names, rclpy's start_type_description_service) hold the
    values they run with, so they are accepted as unchanged; each was 'Set parameter cameras failed: cameras is
    read-only ...' (9 failures for a file of the node's own values). A read-only value that differs is still refused,
    and no model is loaded again for values that did not change."""
    node = harness.start_node(cameras=["left", "right"], **{"depth.scale": 2.0})
    models = node.models
    tuned = tmp_path / "tuned.yaml"
    _ros2_param_dump(harness, "/dpt_node", tuned)
    results = _ros2_param_load(harness, "/dpt_node", tuned)
    assert len(results) == len(node.get_parameters_by_prefix("")) and "cameras" in results, sorted(results)
    failed = {n: r.reason for n, r in results.items() if not r.successful}
    assert failed == {}, failed
    assert results["cameras"].reason == "cameras is read-only; unchanged (the value it runs with)"
    assert node.models is models and not node._model_loading   # nothing loaded again
    assert get_params(harness, node, "cameras", "depth.scale") == [["left", "right"], 2.0]
    tuned.write_text(tuned.read_text().replace("- right", "- rear"))
    r = _ros2_param_load(harness, "/dpt_node", tuned)["cameras"]
    assert not r.successful and r.reason.startswith("cameras is read-only on dpt_node: give it at start-up"), r.reason
    assert get_params(harness, node, "cameras") == [["left", "right"]]


def test_ros2_param_load_of_a_two_task_dump_says_to_load_it_again_and_then_runs_both(harness, tmp_path):
    """A two-task node's `ros2 param dump`, loaded with `ros2 param load` into a node running depth alone: the file's
    sorted order sets segmentation.variant before segmentation.weights, so the variant is refused (its weights
    still empty) and the weights are set after it. The refusal said only to set the weights first; it now says
    that ros2 param load sets the file so and to load the file again, which turns segmentation on."""
    two = harness.start_node(**{"segmentation.variant": "dpt_hybrid_ade20k", "segmentation.weights": "random"})
    tuned = tmp_path / "tuned.yaml"
    _ros2_param_dump(harness, "/dpt_node", tuned)
    harness.remove_node(two)
    node = harness.start_node()
    results = _ros2_param_load(harness, "/dpt_node", tuned)
    failed = {n: r.reason for n, r in results.items() if not r.successful}
    assert list(failed) == ["segmentation.variant"], failed
    assert failed["segmentation.variant"].endswith(
        "from a file, `ros2 param load` sets segmentation.variant before segmentation.weights (one by one, in the "
        "file's order, as ros2 param dump sorts them): load the file again"), failed
    assert results["segmentation.weights"].successful
    results = _ros2_param_load(harness, "/dpt_node", tuned)
    assert all(r.successful for r in results.values()), {n: r.reason for n, r in results.items() if not r.successful}
    wait_for(lambda: node.models.segmentation is not None, timeout=60, what="segmentation model swapped in")
    assert node.models.key == node.settings.model_key()


def test_ros2_param_load_of_a_double_with_an_exponent_says_why_it_is_a_string(harness, tmp_path):
    """A dump of depth.shift 1e-05 holds `shift: 1.0e-05`; `ros2 param load` writes each value with str() (1e-05) and
    reads it back as YAML, a string, and the node's refusal said to write 'a number, unquoted and with a decimal
    point', which the file is. It now says why the string came and what sets it; a round double (depth.scale 2.0) and
    one without an exponent arrive as doubles, and the command it names sets the value. No string is taken as one."""
    tuned_node = harness.start_node(**{"depth.scale": 2.0, "depth.shift": 1e-05, "points.edge_filter": 0.0001})
    tuned = tmp_path / "tuned.yaml"
    _ros2_param_dump(harness, "/dpt_node", tuned)
    harness.remove_node(tuned_node)
    assert "shift: 1.0e-05" in tuned.read_text() and "scale: 2.0" in tuned.read_text()
    node = harness.start_node()
    failed = {n: r.reason for n, r in _ros2_param_load(harness, "/dpt_node", tuned).items() if not r.successful}
    assert failed == {"depth.shift": (
        "depth.shift is a double; got a string ('1e-05'): a number, unquoted and with a decimal point, ros2 param set "
        "/dpt_node depth.shift 0.00001 (from a file: `ros2 param load` writes each value as Python's text and reads "
        "that back as YAML, so a double that Python writes with an exponent, a dump's 1.0e-05 as 1e-05, arrives as "
        "this string however the file writes it: set it after the load with that command)")}, failed
    assert get_params(harness, node, "depth.scale", "depth.shift", "points.edge_filter") == [2.0, 0.0, 0.0001]
    r = _ros2_param_set(harness, failed["depth.shift"].split(" (from")[0].split(", ")[-1])   # the command it names
    assert r.successful, r.reason
    assert get_params(harness, node, "depth.shift") == [1e-05]


def test_ros2_param_load_of_a_lower_range_says_to_load_it_again(harness, tmp_path):
    """A dump with depth.min 0 / depth.max 10 (colormap_min 0 / colormap_max 0.5), loaded into a node running
    depth.min 20 / depth.max 50 (colormap 0.8..2): ros2 param load sets depth.max (sorted before depth.min) while the
    old depth.min holds, and it is refused with only "depth.min (20) must be below depth.max (10)", though the file
    sets depth.min 0 next. The refusal now says so and to load the file again, which sets them all."""
    low = harness.start_node(**{"depth.max": 10.0, "colormap_max": 0.5})
    tuned = tmp_path / "tuned.yaml"
    _ros2_param_dump(harness, "/dpt_node", tuned)
    harness.remove_node(low)
    node = harness.start_node(**{"depth.min": 20.0, "depth.max": 50.0, "colormap_min": 0.8, "colormap_max": 2.0})
    failed = {n: r.reason for n, r in _ros2_param_load(harness, "/dpt_node", tuned).items() if not r.successful}
    assert failed == {
        "colormap_max": "colormap_min (0.8) must be below colormap_max (0.5): set colormap_min first (from a file, "
                        "`ros2 param load` sets colormap_max before colormap_min, one by one, in the file's order, as "
                        "ros2 param dump sorts them: load the file again)",
        "depth.max": "depth.min (20) must be below depth.max (10): set depth.min first (from a file, `ros2 param load` "
                     "sets depth.max before depth.min, one by one, in the file's order, as ros2 param dump sorts "
                     "them: load the file again)"}, failed
    results = _ros2_param_load(harness, "/dpt_node", tuned)
    assert all(r.successful for r in results.values()), {n: r.reason for n, r in results.items() if not r.successful}
    assert get_params(harness, node, "depth.min", "depth.max", "colormap_min", "colormap_max") == [0.0, 10.0, 0.0, 0.5]


def _subscribed(node) -> dict:
    """The node's subscriptions as the ROS graph has them: {topic: [type names]}."""
    return {t: types for t, types in node.get_subscriber_names_and_types_by_node(node.get_name(),
                                                                                   node.get_namespace())}


def test_a_subscription_rcl_refuses_leaves_the_node_subscribed_and_processing_as_before(harness):
    """`ros2 param set image_transport compressed` while another node of the process (one DDS participant) has
    /image/compressed with another message type: rcl refuses the CompressedImage subscription. The set was refused
    (its reason rcl's RCLError alone), but the raw /image subscription was already destroyed: the node, with
    image_transport raw again, was subscribed to /camera_info alone and received no frame at all. Now it is subscribed back to /image, processes frames as before, and the refusal and its
    log line say which topic could not be subscribed, why and what to do; once the topic is free the set succeeds."""
    from rcl_interfaces.msg import Log

    from dpt_ros.ros.testing import frame_through

    log = harness.collector(Log, "/rosout")
    node = harness.start_node(**{"diagnostics.period": 60.0})
    # a raw Image publisher on the compressed topic in this process: Fast DDS has one type per topic per participant
    blocker = harness.probe.create_publisher(Image, "/image/compressed", qos())
    refused = set_params(harness, node, image_transport="compressed")[0]
    assert not refused.successful
    assert get_params(harness, node, "image_transport") == ["raw"] and node.settings["image_transport"] == "raw"
    assert _subscribed(node) == {"/image": ["sensor_msgs/msg/Image"], "/camera_info": ["sensor_msgs/msg/CameraInfo"]}
    out = frame_through(harness, "image", "inverse_depth", make_image(1))
    assert (out.width, out.height) == (80, 60)
    assert refused.reason.startswith("image_transport: cannot subscribe /image/compressed "
                                     "(sensor_msgs/msg/CompressedImage): Failed to create subscription: "), refused.reason
    assert "incompatible type" in refused.reason and ", at /" not in refused.reason   # (rcl's source lines cut)
    assert refused.reason.endswith(
        "another node in this process (one DDS participant: a component container, nodes started in one Python "
        "process) has a publisher or subscription of /image/compressed with another message type than "
        "sensor_msgs/msg/CompressedImage: give that one another topic, or remap this node's input; image_transport "
        "keeps its value and the node its subscriptions: set it again once the topic can be subscribed"), refused.reason
    wait_for(lambda: any("setting image_transport failed" in m.msg for m in log), what="the failure logged")
    line = next(m for m in log if "setting image_transport failed" in m.msg)
    why = refused.reason.removeprefix("image_transport: ").removesuffix(
        "; image_transport keeps its value and the node its subscriptions: set it again once the topic can be subscribed")
    assert line.level == Log.ERROR and line.msg == f"setting image_transport failed: {why}; refused, the node runs on " \
                                                   f"as before", line.msg
    harness.probe.destroy_publisher(blocker)
    assert set_params(harness, node, image_transport="compressed")[0].successful
    assert _subscribed(node) == {"/image/compressed": ["sensor_msgs/msg/CompressedImage"],
                                 "/camera_info": ["sensor_msgs/msg/CameraInfo"]}



def _refuse_raw_image(node, monkeypatch) -> list:
    """Make the node's raw /image subscribing fail as rcl's refusal would (no real trigger found: forced through the
    node's own _subscribe helper, which still makes every other subscription): a new raw /image subscription, or the
    one an image_transport switch is making (cam.replacing), raises while the returned flag's [0] is true."""
    real_subscribe, refusing = node._subscribe, [True]

    def subscribe(cam, name, on):
        if on and name == "image" and (name not in cam.subs or name in cam.replacing) and \
                node.settings["image_transport"] == "raw" and refusing[0]:
            raise RuntimeError("Failed to create subscription: rmw_create_subscription failed")   # (as rcl's RCLError)
        return real_subscribe(cam, name, on)

    monkeypatch.setattr(node, "_subscribe", subscribe)
    return refusing

def test_when_subscribing_back_fails_too_the_log_and_diagnostics_say_what_is_subscribed_and_what_to_do(
        harness, monkeypatch):
    """image_transport compressed set together with depth.align, whose /depth_reference rcl refuses (CameraInfo
    published on it in this process): /image/compressed was subscribed (and /image, made before it, destroyed), so
    the refusal subscribes /image back, and that fails too (rcl refuses it as well: forced here through the node's
    own _subscribe helper, no real trigger found). The node is then subscribed to /camera_info alone (not left on
    /image/compressed, which the parameters do not say): the refusal says that it is not subscribed to /image, the
    log (ERROR) what it is subscribed to and what to do, /diagnostics an ERROR for the camera; and, as the log says,
    a later successful set (the value image_transport has) subscribes /image again and frames flow. (A refused
    image_transport alone leaves /image as it was: its new subscription is made before the old one goes.)"""
    from diagnostic_msgs.msg import DiagnosticStatus
    from rcl_interfaces.msg import Log

    from dpt_ros.ros.testing import frame_through

    log = harness.collector(Log, "/rosout")
    node = harness.start_node(**{"diagnostics.period": 60.0})
    blocker = harness.probe.create_publisher(Image, "/image/compressed", qos())   # (rcl refuses CompressedImage there)
    refusing = _refuse_raw_image(node, monkeypatch)
    refused = set_params(harness, node, image_transport="compressed")[0]   # alone: /image kept, nothing lost
    assert not refused.successful and refused.reason.startswith(
        "image_transport: cannot subscribe /image/compressed (sensor_msgs/msg/CompressedImage): "), refused.reason
    assert "subscribing back" not in refused.reason and not node.cameras[0].unsubscribed, refused.reason
    assert _subscribed(node) == {"/image": ["sensor_msgs/msg/Image"], "/camera_info": ["sensor_msgs/msg/CameraInfo"]}
    harness.probe.destroy_publisher(blocker)
    harness.probe.create_publisher(CameraInfo, "/depth_reference", qos())   # (rcl refuses Image there)
    refused = set_params_atomically(harness, node, image_transport="compressed", **{"depth.align": True})
    assert not refused.successful and refused.reason.startswith(
        "image_transport, depth.align: cannot subscribe /depth_reference (sensor_msgs/msg/Image): "), refused.reason
    assert refused.reason.endswith("; refused, and subscribing back to what the parameters say failed too: the node "
                                   "is not subscribed to /image (its log says what to do)"), refused.reason
    assert get_params(harness, node, "image_transport", "depth.align") == ["raw", False]
    assert _subscribed(node) == {"/camera_info": ["sensor_msgs/msg/CameraInfo"]}
    wait_for(lambda: any("subscribing back" in m.msg for m in log), what="the log line")
    line = next(m for m in log if "subscribing back" in m.msg)
    assert line.level == Log.ERROR and line.msg == (
        "setting image_transport, depth.align failed and was refused, and subscribing back to what the parameters "
        "say failed too, "
        "so the node is NOT subscribed to: camera /: /image (Failed to create subscription: rmw_create_subscription "
        "failed) (so no frames of that camera are received); it is subscribed to: /camera_info "
        "(sensor_msgs/msg/CameraInfo). Once the topic can be subscribed, any successful `ros2 param set` on this node "
        "subscribes it again (the value a parameter already holds will do), or restart the node"), line.msg
    cam = node.diagnostics().status[1]
    assert cam.level == DiagnosticStatus.ERROR and cam.message == (
        "not subscribed to /image: subscribing back after a refused parameter change failed (Failed to create "
        "subscription: rmw_create_subscription failed); once it can be subscribed, any successful ros2 param set on "
        "the node subscribes it again"), cam.message
    assert {kv.key: kv.value for kv in cam.values}["not_subscribed"] == "/image"
    refusing[0] = False   # what the log says to do, once /image can be subscribed
    assert set_params(harness, node, image_transport="raw")[0].successful
    assert _subscribed(node) == {"/image": ["sensor_msgs/msg/Image"], "/camera_info": ["sensor_msgs/msg/CameraInfo"]}
    assert node.diagnostics().status[1].level != DiagnosticStatus.ERROR
    assert frame_through(harness, "image", "inverse_depth", make_image(1)).width == 80


def _unsubscribed_then_a_failing_load(harness, node, tmp_path):
    """With :func:`_refuse_raw_image` on: a refused change whose subscribing back fails leaves the node without /image,
    then depth.weights is set to a file whose load fails (returned)."""
    harness.probe.create_publisher(CameraInfo, "/depth_reference", qos())   # (rcl refuses Image there)
    refused = set_params_atomically(harness, node, image_transport="compressed", **{"depth.align": True})
    assert not refused.successful and node.cameras[0].unsubscribed, refused.reason
    bad = tmp_path / "corrupt.pt"
    truncated_checkpoint(bad)   # a download cut short: accepted when set, its load fails
    assert set_params(harness, node, **{"depth.weights": str(bad)})[0].successful
    return bad


def test_a_failed_model_loads_revert_that_cannot_subscribe_back_says_what_the_user_set_and_what_the_node_set_back(
        harness, tmp_path, monkeypatch):
    """The node is left unsubscribed from /image by a refused change whose subscribing back failed (as in the test
    above); the user then sets depth.weights to a file whose load fails. The loader sets depth.weights back to the
    running model's (random), and that set tries to subscribe /image again, which still fails. Its line said
    "depth.weights set, but subscribing what the parameters say failed again": a set the user did not make (the
    user set the file; the node set random back). Now it says what the user set, what the node set back, and, as
    before, what it is subscribed to and what to do."""
    from rcl_interfaces.msg import Log

    log = harness.collector(Log, "/rosout")
    node = harness.start_node(**{"diagnostics.period": 60.0})
    _refuse_raw_image(node, monkeypatch)
    bad = _unsubscribed_then_a_failing_load(harness, node, tmp_path)
    wait_for(lambda: any(m.msg.startswith("model load failed") for m in log), timeout=60, what="the load's failure")
    again = [m.msg for m in log if "failed again" in m.msg]
    assert len(again) == 2, again   # the user's set, then the node's set back
    assert again[0].startswith("depth.weights set, but subscribing what the parameters say failed again, "), again[0]
    assert again[1] == (
        f"the model load of depth.weights={bad} failed (the next line says why), so the node set depth.weights back "
        "to random, the running model's, but subscribing what the parameters say failed again, so the node is NOT "
        "subscribed to: camera /: /image (Failed to create subscription: rmw_create_subscription failed) (so no "
        "frames of that camera are received); it is subscribed to: /camera_info (sensor_msgs/msg/CameraInfo). Once "
        "the topic can be subscribed, any successful `ros2 param set` on this node subscribes it again (the value a "
        "parameter already holds will do), or restart the node"), again[1]
    assert get_params(harness, node, "depth.weights") == ["random"]


def test_a_failed_model_loads_refused_revert_that_cannot_subscribe_back_says_what_the_user_set_and_the_node_tried(
        harness, tmp_path, monkeypatch):
    """As above, but the node's set back itself fails (raises: forced here through the node's own _request_models,
    on the loader's thread alone, no real trigger found), so it is refused, and its subscribing back to what the
    parameters say fails too. Its two lines said "setting depth.weights failed: ...; refused" and "setting
    depth.weights failed and was refused, and subscribing back ... failed too": a set the user did not make (the user
    set the file, whose set stands; the node tried to set random back). Now they say what the node tried to set back,
    and what the user set, whose value the parameter keeps."""
    from rcl_interfaces.msg import Log

    log = harness.collector(Log, "/rosout")
    node = harness.start_node(**{"diagnostics.period": 60.0})
    real_request = node._request_models
    _refuse_raw_image(node, monkeypatch)

    def request_models(s):   # (the set back, on the loader's thread: refused)
        if threading.current_thread() is node._loader:
            raise RuntimeError("the set back failed (injected)")
        return real_request(s)

    monkeypatch.setattr(node, "_request_models", request_models)
    bad = _unsubscribed_then_a_failing_load(harness, node, tmp_path)
    wait_for(lambda: any(m.msg.startswith("could not set depth.weights back") for m in log), timeout=60,
             what="the set back's refusal")
    tried = (f"the node's setting depth.weights back to random (the running model's: the model load of "
             f"depth.weights={bad} failed)")
    failed = [m.msg for m in log if "failed: RuntimeError: the set back failed (injected)" in m.msg]
    assert failed == [f"{tried} failed: RuntimeError: the set back failed (injected); refused"], failed
    too = [m.msg for m in log if "failed and was refused, and subscribing back" in m.msg]
    assert len(too) == 2, too   # the refused change's at the start, then the set back's
    assert too[1] == (
        f"{tried} failed and was refused, and subscribing back to what the parameters say failed too, so the node is "
        "NOT subscribed to: camera /: /image (Failed to create subscription: rmw_create_subscription failed) (so no "
        "frames of that camera are received); it is subscribed to: /camera_info (sensor_msgs/msg/CameraInfo). Once "
        "the topic can be subscribed, any successful `ros2 param set` on this node subscribes it again (the value a "
        "parameter already holds will do), or restart the node"), too[1]
    assert get_params(harness, node, "depth.weights") == [str(bad)]   # (the user's set stands)


def test_camera_info_url_set_again_reads_the_file_again(harness, tmp_path):
    """camera_info.url is read when set (README: "Set live, the file is read at once"): set again to the path it
    holds, after the calibration there was replaced (a camera recalibrated, its new ost.yaml copied over the old), the
    next frame has the new calibration; a file that cannot be read any more is refused with the reason and the node
    keeps the calibration it has. Before, a set to the value it held was accepted and the file not read: the node
    kept the old calibration until restarted, and `ros2 param set` said it had succeeded."""
    from dpt_ros.ros.testing import OST_YAML

    url = tmp_path / "ost.yaml"
    url.write_text(OST_YAML)   # a 160x120 camera, fx 100
    node = harness.start_node(**{"depth.scale": 1.0, "camera_info.url": str(url), "diagnostics.period": 60.0})
    infos = harness.collector(CameraInfo, "depth/camera_info")
    pub = harness.probe.create_publisher(Image, "image", qos())
    wait_for(lambda: pub.get_subscription_count() > 0 and
             node.cameras[0].pubs["depth/camera_info"].get_subscription_count() > 0, what="discovery")

    def fx_of_next_frame(stamp: int) -> float:
        pub.publish(make_image(stamp, width=80, height=60))   # half the file's size: fx scaled by 0.5
        wait_for(lambda: any(m.header.stamp.nanosec == stamp for m in infos), what=f"depth/camera_info of {stamp}")
        return next(m for m in infos if m.header.stamp.nanosec == stamp).k[0]

    assert fx_of_next_frame(1) == pytest.approx(50.0)
    url.write_text(OST_YAML.replace("100.", "160."))   # (K and P: fx, fy 160)
    assert set_params(harness, node, **{"camera_info.url": str(url)})[0].successful
    assert fx_of_next_frame(2) == pytest.approx(80.0)
    url.unlink()
    refused = set_params(harness, node, **{"camera_info.url": str(url)})[0]
    assert not refused.successful and "cannot read camera calibration" in refused.reason, refused.reason
    assert fx_of_next_frame(3) == pytest.approx(80.0)


def test_a_range_end_no_value_of_the_other_end_goes_with_is_refused_with_a_remedy_that_is_taken(harness):
    """depth.max 0 (read as 'no limit', as max_rate 0 is), or depth.min / colormap_min at the top of the other end's
    range: no value of the other end goes with it. The refusal says so and gives the command of a value that does (the
    parameter's default), which is accepted. Before, depth.max 0 was told "set depth.min first", though depth.min
    cannot go below 0, and depth.min 1e6 was told only that it must be below depth.max (1000), whose top is 1e6."""
    node = harness.start_node()
    cases = [
        ("depth.max", 0.0, "depth.max (0) must be above 0, the lowest value of depth.min (no depth.min is below it): "
                           "e.g. its default, ros2 param set /dpt_node depth.max 1000.0"),
        ("depth.min", 1.0e6, "depth.min (1e+06) must be below 1e+06, the highest value of depth.max (no depth.max is "
                             "above it): e.g. its default, ros2 param set /dpt_node depth.min 0.0"),
        ("colormap_max", -1.0e9, "colormap_max (-1e+09) must be above -1e+09, the lowest value of colormap_min (no "
                                 "colormap_min is below it): e.g. its default, ros2 param set /dpt_node colormap_max "
                                 "1.0"),
    ]
    for name, value, reason in cases:
        before = node.settings
        r = set_params(harness, node, **{name: value})[0]
        assert not r.successful and r.reason == reason, r.reason
        assert node.settings is before
        command = re.search(r"ros2 param set .*$", r.reason).group(0)
        assert _ros2_param_set(harness, command).successful, command
    assert get_params(harness, node, "depth.min", "depth.max", "colormap_max") == [0.0, 1000.0, 1.0]
