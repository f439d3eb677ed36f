"""Names: the test helpers' parameter calls reach the node they are given in its namespace, and the SROS2 policy
tool refuses the camera namespaces the node refuses for their topics' length."""
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
