"""Names: the test helpers' parameter calls reach the node they are given in its namespace."""
from __future__ import annotations

from dpt_ros.ros.testing import get_params, set_params

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
