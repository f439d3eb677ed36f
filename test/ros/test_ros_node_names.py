"""Names: the test helpers' parameter calls reach the node they are given in its namespace, and the SROS2 policy
tool refuses the camera namespaces the node refuses for their topics' length, and the cameras remapped onto one
another's topics, with the node's reason."""
from __future__ import annotations

import pytest

from dpt_ros.ros.testing import get_params, set_params
from dpt_ros.tools import sros2_policy

DOMAIN = 82


def test_set_params_reaches_the_node_in_its_namespace(harness):
    """set_params / get_params of a node in a namespace call that node's services, not those of a node of the same
    name in the root namespace (they called /<name>/set_parameters: the root node's value changed, or the call timed
    out where there was none)."""
    root = harness.start_node(managed=True)
    spaced = harness.start_node(namespace="robot", managed=True)
    assert spaced.get_fully_qualified_name() == "/robot/dpt_node"
    assert set_params(harness, spaced, colormap="gray")[0].successful
    assert spaced.get_parameter("colormap").value == "gray"
    assert root.get_parameter("colormap").value != "gray"
    assert get_params(harness, spaced, "colormap") == ["gray"]
    assert set_params(harness, "/robot/dpt_node", colormap="jet")[0].successful   # a name, fully qualified
    assert spaced.get_parameter("colormap").value == "jet"


@pytest.mark.parametrize("namespace, length", [("/", 213), ("/robot", 207)])
def test_policy_tool_refuses_camera_namespaces_too_long_for_the_node(harness, namespace, length):
    """A camera namespace one character longer than the longest that leaves all its topics within rcl's limit (247
    characters; the longest is <camera>/inverse_depth/colored/compressed): the node refuses it with a reason and the
    advice to shorten it, and so does the policy tool, with the same advice (it wrote a policy for topics that
    cannot exist); one character shorter, both take it."""
    node = harness.start_node(namespace=namespace, managed=True)
    for cam, refused in (("c" * length, False), ("c" * (length + 1), True)):
        result = set_params(harness, node, cameras=[cam])[0]
        tool = sros2_policy.invalid_cameras([cam], namespace)
        assert result.successful is not refused and bool(tool) is refused, (len(cam), result.reason, tool)
        if refused:
            for reason in (tool, result.reason):
                assert reason.startswith(f"camera namespace '{cam[:100]}") and "cannot be served: its topic" in \
                    reason and "topic length should not exceed" in reason and "use a shorter namespace" in reason
            with pytest.raises(SystemExit) as e:
                sros2_policy.main(["--namespace", namespace, "--cameras", cam, "--out", "-"])
            assert e.value.code == 2


def _refused_everywhere(harness, rules: list[str], want: str, node_name: str):
    """The managed node (started with the remap ``rules``) refuses cameras [a, b] with exactly ``want`` when set,
    the policy tool gives the same reason, and a dpt_node started with them fails with it; returns the managed node."""
    from dpt_ros.ros.node import StartupError

    args = ["--ros-args", *(x for rule in rules for x in ("-r", rule))]
    node = harness.start_node(managed=True, cli_args=args)
    refused = set_params(harness, node, cameras=["a", "b"])[0]
    assert not refused.successful and refused.reason == want
    assert sros2_policy.invalid_cameras(["a", "b"], "/", sros2_policy.parse_remaps(rules)) == want
    with pytest.raises(StartupError) as e:
        harness.start_node(cameras=["a", "b"], cli_args=args + ["-r", f"__node:={node_name}"])
    assert want in str(e.value)
    return node


def test_two_cameras_remapped_to_one_image_are_one_camera_listed_twice(harness):
    """Two camera namespaces whose image topics are remapped to one topic are one camera listed twice (the model ran
    twice on each of its frames, publishing the same results under two namespaces): refused by the node, when set
    and at start-up, and by the policy tool; one of them remapped elsewhere is taken."""
    rules = ["a/image:=/cam/image", "b/image:=/cam/image"]
    node = _refused_everywhere(harness, rules, "cameras lists one camera twice: 'a' and 'b' both subscribe /cam/image; "
                               "list it once (or remap their image topics to their own cameras' images)", "dpt_twice")
    assert set_params(harness, node, cameras=["a", "c"])[0].successful   # c/image is its own
    assert sros2_policy.invalid_cameras(["a", "c"], "/", sros2_policy.parse_remaps(rules)) == ""


def test_two_cameras_whose_outputs_are_remapped_onto_one_topic_are_said_to_be_two(harness):
    """Two cameras (their own images) whose inverse_depth outputs are remapped onto one topic were refused as 'cameras
    lists one camera twice ... list it once', which they are not; the refusal (when set, at start-up, and the policy
    tool's) says they are two cameras publishing onto one topic and what to do. One camera in two spellings is still
    said to be listed twice."""
    node = _refused_everywhere(
        harness, ["b/inverse_depth:=/a/inverse_depth"],
        "cameras 'a' and 'b' are two cameras (images /a/image and /b/image) whose inverse_depth outputs are remapped "
        "onto one topic, /a/inverse_depth: both would publish there, one's depth mixed with the other's; remap each "
        "camera's outputs to topics of its own (or drop the remap)", "dpt_remapped")
    refused = set_params(harness, node, cameras=["b", "/b"])[0]
    assert refused.reason == "cameras lists one camera twice: 'b' and '/b' both publish /a/inverse_depth; list it once"
    assert set_params(harness, node, cameras=["a", "c"])[0].successful
