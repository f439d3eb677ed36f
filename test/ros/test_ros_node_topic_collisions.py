"""Remaps (and camera namespaces) that put two of the node's topics on one: two outputs on one topic (their messages
mixed, or, of two types, rcl's refusal of the second publisher after the model loaded), an output on one of the
node's own inputs (it consumed its own output: one frame came back as a new one endlessly) and two inputs on one topic
(rcl's refusal of the second subscription after the model loaded; the camera image taken for reference depth) are
refused before the model loads, at start-up, at configure and when a parameter would make them; what never gets a
publisher or subscription, and one output of several cameras merged onto one topic, are not. The SROS2 policy tool
refuses them with the node's words."""
from __future__ import annotations

import pytest
from rclpy.lifecycle import TransitionCallbackReturn

from dpt_ros.ros.node import StartupError
from dpt_ros.ros.testing import OST_YAML, set_params
from dpt_ros.tools.bench_reliability import FAST_ROS_ARGS, start_node, stop_node

DOMAIN = 66
_TWO_TYPES = "; of two types (sensor_msgs/msg/CameraInfo and sensor_msgs/msg/Image), which ROS refuses on one topic"
_ALIGNED = ", camera images taken for reference depth (depth.align), which fails every frame's alignment"


def _args(*rules: str) -> list[str]:
    return ["--ros-args", *(x for rule in rules for x in ("-r", rule))]


def _refusal(harness, rules, name: str, **overrides) -> str:
    """The StartupError message of a dpt_node started with the remap ``rules`` and ``overrides``."""
    with pytest.raises(StartupError) as e:
        harness.start_node(cli_args=_args(*rules, f"__node:={name}"), **overrides)
    return str(e.value)


def test_two_outputs_remapped_onto_one_topic_are_refused(harness):
    """inverse_depth and depth on one topic: both published there, 32FC1 both, which no subscriber tells apart (it
    started, and /out carried both); depth and points: rcl refused the second publisher after the model had loaded
    (RCLError, "existing topic name rt/out with incompatible type", naming neither output). Both are refused with the
    outputs, the topic and what to do; an output that is off (publish.depth false) still has its publisher, so it
    collides too, and the refusal says why."""
    fix = "remap each output to a topic of its own (or drop the remap)"
    assert _refusal(harness, ["depth:=/out", "inverse_depth:=/out"], "dpt_same_type", **{"depth.scale": 1.0}) == (
        "topics collide: outputs inverse_depth (remapped) and depth (remapped) would both be published on /out: two "
        f"outputs on one topic, their messages mixed, which no subscriber can tell apart; {fix}")
    assert _refusal(harness, ["depth:=/out", "points:=/out"], "dpt_two_types") == (
        "topics collide: outputs depth (remapped) and points (remapped) would both be published on /out: two outputs "
        "on one topic; of two types (sensor_msgs/msg/Image and sensor_msgs/msg/PointCloud2), which ROS refuses on one "
        f"topic; {fix}")
    assert _refusal(harness, ["segmentation:=/out", "inverse_depth/colored:=/out"], "dpt_off",
                    **{"publish.segmentation": False}) == (
        "topics collide: outputs inverse_depth/colored (remapped) and segmentation (remapped; publish.segmentation is "
        "false, but its publisher exists: publish.segmentation can be set while the node runs) would both be "
        f"published on /out: two outputs on one topic, their messages mixed, which no subscriber can tell apart; {fix}")
    # a compressed copy follows its image's remap: onto another output's copy
    assert _refusal(harness, ["depth:=/d", "segmentation:=/d/compressedDepth"], "dpt_copy") == (
        "topics collide: outputs segmentation (remapped) and depth/compressedDepth (following the remap of depth) "
        "would both be published on /d/compressedDepth: two outputs on one topic; of two types "
        "(sensor_msgs/msg/CompressedImage and sensor_msgs/msg/Image), which ROS refuses on one topic; " + fix)
    # and two cameras' different outputs
    assert _refusal(harness, ["a/depth:=/b/inverse_depth"], "dpt_cams", cameras=["a", "b"]) == (
        "topics collide: outputs a/depth (remapped) and b/inverse_depth would both be published on /b/inverse_depth: "
        f"two outputs on one topic, their messages mixed, which no subscriber can tell apart; {fix}")


@pytest.mark.parametrize("rules, overrides, output, topic, given, effect", [
    (["inverse_depth/colored:=image"], {}, "inverse_depth/colored (remapped)", "/image", "image",
     "every output coming back as a new frame, endlessly"),
    (["image:=inverse_depth/colored"], {}, "inverse_depth/colored", "/inverse_depth/colored", "image (remapped)",
     "every output coming back as a new frame, endlessly"),
    (["image:=inverse_depth/colored"], {"image_transport": "compressed"}, "inverse_depth/colored/compressed",
     "/inverse_depth/colored/compressed",
     "image/compressed (image_transport:=compressed, following the remap of image)",
     "every output coming back as a new frame, endlessly"),
    (["depth/camera_info:=camera_info"], {}, "depth/camera_info (remapped)", "/camera_info", "camera_info",
     "the intrinsics of its own output taken for the camera's"),
    (["depth_reference:=depth"], {"depth.align": True}, "depth", "/depth", "depth_reference (remapped)",
     "its depth aligned to its own output (depth.align)"),
    (["depth_reference:=depth"], {"depth.align": True, "depth.align_transport": "compressedDepth"},
     "depth/compressedDepth", "/depth/compressedDepth",
     "depth_reference/compressedDepth (depth.align_transport:=compressedDepth, following the remap of depth_reference)",
     "its depth aligned to its own output (depth.align)"),
    (["a/inverse_depth/colored:=/b/image"], {"cameras": ["a", "b"]}, "a/inverse_depth/colored (remapped)", "/b/image",
     "b/image", "every output coming back as a new frame, endlessly"),
])
def test_an_output_on_one_of_the_nodes_own_inputs_is_refused(harness, rules, overrides, output, topic, given, effect):
    """An output remapped onto an input (or the input onto the output): the node started and consumed its own output
    (with inverse_depth/colored on image, one frame sent made 177 outputs in 5 s, without end; depth/camera_info on
    camera_info fed its output's scaled intrinsics back as the camera's). Refused with both names and the remedy."""
    assert _refusal(harness, rules, "dpt_loop", **overrides) == (
        f"topics collide: output {output} would be published on {topic}, which the node subscribes as its input "
        f"{given}: the node would consume its own output ({effect}); remap the output to a topic of its own, or the "
        f"input to the camera's (or drop the remap)")


def test_camera_namespaces_nested_in_one_anothers_topics_are_refused(harness):
    """cameras ['', depth], no remap: camera depth subscribes depth/camera_info, which is camera ''s output."""
    assert _refusal(harness, [], "dpt_nested", cameras=["", "depth"]) == (
        "topics collide: output depth/camera_info would be published on /depth/camera_info, which the node subscribes "
        "as its input depth/camera_info: the node would consume its own output (the intrinsics of its own output "
        "taken for the camera's); remap the output to a topic of its own, or the input to the camera's: with no "
        "remap, camera namespaces nested in one another's topics (give each camera a namespace of its own, e.g. left "
        "and right)")


def test_what_gets_no_publisher_or_subscription_and_merged_cameras_are_not_refused(harness, tmp_path):
    """No false alarm: depth_reference on depth without depth.align (no subscription), a compressed copy on
    image/compressed with the raw transport or on image without publish.compressed (no such subscription, no such
    publisher), depth/camera_info on camera_info with camera_info.url (no camera_info subscription), and two
    cameras' points merged onto one topic (one output, one type: may be meant) all start; set live, the parameter
    that would subscribe the colliding topic is refused, and nothing changes."""
    (tmp_path / "cam.yaml").write_text(OST_YAML)
    rules = ("depth_reference:=depth", "depth/camera_info:=camera_info",
             "inverse_depth/colored/compressed:=image/compressed", "__node:=dpt_latent")
    node = harness.start_node(cli_args=_args(*rules), **{"camera_info.url": str(tmp_path / "cam.yaml")})
    refused = set_params(harness, node, **{"depth.align": True})[0]
    assert not refused.successful and refused.reason.startswith(
        "topics collide: output depth would be published on /depth, which the node subscribes as its input "
        "depth_reference (remapped)")
    refused = set_params(harness, node, image_transport="compressed")[0]
    assert not refused.successful and refused.reason.startswith(
        "topics collide: output inverse_depth/colored/compressed (remapped) would be published on /image/compressed, "
        "which the node subscribes as its input image/compressed (image_transport:=compressed)")
    refused = set_params(harness, node, **{"camera_info.url": ""})[0]
    assert not refused.successful and refused.reason.startswith(
        "topics collide: output depth/camera_info (remapped) would be published on /camera_info, which the node "
        "subscribes as its input camera_info: the node would consume its own output (the intrinsics of its own "
        "output taken for the camera's)")
    assert node.settings["depth.align"] is False and node.settings["image_transport"] == "raw"
    assert node.settings["camera_info.url"] == str(tmp_path / "cam.yaml")
    assert set(node.cameras[0].subs) == {"image"}   # (no depth_reference, no camera_info)
    assert node.cameras[0].image_topic == "/image"
    harness.remove_node(node)
    merged = harness.start_node(cameras=["a", "b"], cli_args=_args("a/points:=/merged", "b/points:=/merged",
                                                                   "__node:=dpt_merged"))
    assert [c.pubs["points"].topic_name for c in merged.cameras] == ["/merged", "/merged"]
    harness.remove_node(merged)
    plain = harness.start_node(cli_args=_args("depth/compressedDepth:=image", "__node:=dpt_no_copies"),
                               **{"publish.compressed": False})
    assert "depth/compressedDepth" not in plain.cameras[0].pubs


def test_the_lifecycle_node_refuses_at_configure_and_when_set(harness):
    """dpt_lifecycle_node: a colliding configuration fails configure (the node stays unconfigured, with the reason in
    its log), and a parameter that would make one is refused when set, as configure would refuse it (one that leaves
    the remaps' own collision as it is is not)."""
    from rcl_interfaces.msg import Log

    from dpt_ros.ros.testing import wait_for

    log = harness.collector(Log, "/rosout")
    node = harness.start_node(namespace="collide", managed=True, cli_args=_args("depth:=/out", "points:=/out"))
    assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
    want = ("configure failed, the node stays unconfigured: topics collide: outputs depth (remapped) and points "
            "(remapped) would both be published on /out")
    wait_for(lambda: any(m.name == "collide.dpt_node" and m.msg.startswith(want) for m in list(log)),
             what="the reason logged")
    # (and that no configure can change a remap: it said "(or drop the remap)" as if the node could be configured again)
    said = next(m.msg for m in list(log) if m.name == "collide.dpt_node" and m.msg.startswith(want))
    assert said.endswith("(or drop the remap): remaps are set when the node's process starts (--ros-args -r, a "
                         "launch file's remappings), so start it again with other ones"), said
    assert node.models is None and node.cameras == []
    # its remaps cannot change while it runs: a parameter that adds no collision is not refused for theirs
    assert set_params(harness, node, **{"depth.align": True})[0].successful
    latent = harness.start_node(namespace="latent", managed=True, cli_args=_args(
        "inverse_depth/colored/compressed:=image"), **{"publish.compressed": False})
    refused = set_params(harness, latent, **{"publish.compressed": True})[0]
    assert not refused.successful and refused.reason.startswith(
        "topics collide: output inverse_depth/colored/compressed (remapped) would be published on /latent/image, "
        "which the node subscribes as its input image: the node would consume its own output")
    refused = set_params(harness, latent, cameras=["", "depth"])[0]
    assert not refused.successful and refused.reason.startswith(
        "topics collide: output depth/camera_info would be published on /latent/depth/camera_info")
    assert latent.get_parameter("publish.compressed").value is False and latent.settings["cameras"] == [""]
    assert latent.trigger_configure() == TransitionCallbackReturn.SUCCESS


def test_dpt_node_refuses_colliding_remaps_with_exit_code_2_before_the_model_loads():
    """As a process (the remaps parsed by rcl from the command line): one FATAL line with the reason, exit code 2 (a
    start-up value of the user's), before the model loads; it was exit code 1 with rcl's RCLError after the load."""
    proc = start_node(DOMAIN, *FAST_ROS_ARGS, "-r", "depth:=/out", "-r", "points:=/out", name="dpt_collide_proc")
    try:
        out, _ = proc.communicate(timeout=60)   # (it stops by itself)
    finally:
        stop_node(proc)
    assert proc.returncode == 2, out
    assert "[FATAL]" in out and "[dpt_collide_proc]: topics collide: outputs depth (remapped) and points (remapped) " \
        "would both be published on /out" in out, out
    assert "loading depth" not in out and "Traceback" not in out and "RCLError" not in out, out


@pytest.mark.parametrize("rules, overrides, first, second, topic, why", [
    (["camera_info:=image"], {}, "image", "camera_info (remapped)", "/image", _TWO_TYPES),
    (["image:=camera_info"], {}, "image (remapped)", "camera_info", "/camera_info", _TWO_TYPES),
    (["camera_info:=image/compressed"], {"image_transport": "compressed"},
     "image/compressed (image_transport:=compressed)", "camera_info (remapped)", "/image/compressed",
     "; of two types (sensor_msgs/msg/CameraInfo and sensor_msgs/msg/CompressedImage), which ROS refuses on one topic"),
    (["depth_reference:=image"], {"depth.align": True}, "image", "depth_reference (remapped)", "/image", _ALIGNED),
    (["a/depth_reference:=/b/image"], {"depth.align": True, "cameras": ["a", "b"]}, "a/depth_reference (remapped)",
     "b/image", "/b/image", _ALIGNED),
])
def test_two_inputs_remapped_onto_one_topic_are_refused(harness, rules, overrides, first, second, topic, why):
    """Two different inputs on one topic: camera_info on image (or image on camera_info) started, loaded the model and
    then failed with rcl's RCLError ("create_subscription() called for existing topic name rt/image with incompatible
    type", naming neither input; dpt_lifecycle_node: at activation); depth_reference on image with depth.align started
    and took every camera image for reference depth: every frame's alignment failed ("reference depth must be 32FC1
    ... got 'rgb8'"). Refused before the model loads, with both names, the topic and what to do, at start-up and at
    configure."""
    want = (f"topics collide: inputs {first} and {second} would both be subscribed on {topic}: two inputs on one "
            f"topic{why}; remap each input to the camera's topic of its own (or drop the remap)")
    assert _refusal(harness, rules, "dpt_inputs", **overrides) == want
    node = harness.start_node(managed=True, cli_args=_args(*rules, "__node:=dpt_inputs_managed"), **overrides)
    assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
    assert node.models is None and node.cameras == []


def test_inputs_that_get_no_subscription_are_not_refused_until_subscribed(harness, tmp_path):
    """camera_info on image with camera_info.url (no camera_info subscription) and depth_reference on image without
    depth.align (no depth_reference subscription) start with the image subscribed alone; the parameter that would
    subscribe the colliding input is refused when set, and nothing changes."""
    (tmp_path / "cam.yaml").write_text(OST_YAML)
    rules = ("camera_info:=image", "depth_reference:=image", "__node:=dpt_unsubscribed")
    node = harness.start_node(cli_args=_args(*rules), **{"camera_info.url": str(tmp_path / "cam.yaml")})
    assert set(node.cameras[0].subs) == {"image"} and node.cameras[0].image_topic == "/image"
    refused = set_params(harness, node, **{"camera_info.url": ""})[0]
    assert not refused.successful and refused.reason == (
        f"topics collide: inputs image and camera_info (remapped) would both be subscribed on /image: two inputs on "
        f"one topic{_TWO_TYPES}; remap each input to the camera's topic of its own (or drop the remap)")
    refused = set_params(harness, node, **{"depth.align": True})[0]
    assert not refused.successful and refused.reason.startswith(
        f"topics collide: inputs image and depth_reference (remapped) would both be subscribed on /image: two inputs "
        f"on one topic{_ALIGNED}; ")
    assert node.settings["camera_info.url"] == str(tmp_path / "cam.yaml") and node.settings["depth.align"] is False
    assert set(node.cameras[0].subs) == {"image"}
    harness.remove_node(node)
    rules = ("a/camera_info:=/info", "b/camera_info:=/info", "__node:=dpt_shared_info")   # (one input, two cameras)
    shared = harness.start_node(cameras=["a", "b"], cli_args=_args(*rules))
    assert [c.subs["camera_info"].topic_name for c in shared.cameras] == ["/info", "/info"]


@pytest.mark.parametrize("namespace, rules, overrides", [
    ("", ["depth:=/out", "points:=/out"], {}),
    ("", ["depth:=/d", "segmentation:=/d/compressedDepth"], {}),
    ("", ["a/depth:=/b/inverse_depth"], {"cameras": ["a", "b"]}),
    ("", ["inverse_depth/colored:=image"], {}),
    ("", ["image:=inverse_depth/colored"], {"image_transport": "compressed"}),
    ("", ["depth/camera_info:=camera_info"], {}),
    ("", ["depth_reference:=depth"], {"depth.align": True}),
    ("", [], {"cameras": ["", "depth"]}),
    ("robot", ["inverse_depth:=~/out", "/diagnostics:=~/out"], {}),
    ("", ["camera_info:=image"], {}),
    ("", ["a/depth_reference:=/b/image"], {"depth.align": True, "cameras": ["a", "b"]}),
])
def test_the_policy_tool_refuses_what_the_node_refuses_in_its_words(harness, namespace, rules, overrides):
    """sros2_policy applies the node's rule (it checked only a camera listed twice and two cameras' inverse_depth on
    one topic, and wrote a policy for a node that never starts): for the same namespace, cameras, transport, remaps
    and depth.align it gives the node's reason, word for word."""
    from dpt_ros.tools import sros2_policy

    with pytest.raises(StartupError) as e:
        harness.start_node(namespace=namespace, cli_args=_args(*rules), **overrides)
    cameras = overrides.get("cameras", [""])
    tool = sros2_policy.topics_refused(cameras, "/" + namespace, sros2_policy.parse_remaps(rules),
                                       overrides.get("image_transport", "raw"), overrides.get("depth.align", False))
    assert str(e.value).startswith("topics collide: ") and tool == str(e.value)
    if rules:   # without them, nothing collides
        assert sros2_policy.topics_refused(cameras, "/" + namespace) == ""
