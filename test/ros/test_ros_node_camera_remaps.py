"""Cameras whose topics are remapped onto one another's: refused with what is really wrong."""
from __future__ import annotations

import pytest

from dpt_ros.ros.testing import set_params
from dpt_ros.tools import sros2_policy

DOMAIN = 68


def test_two_cameras_whose_outputs_are_remapped_onto_one_topic_are_said_to_be_two(harness):
    """Two cameras (their own images) whose inverse_depth outputs are remapped onto one topic were refused as 'cameras
    lists one camera twice ... list it once', which they are not; the refusal (when set, at start-up, and the policy
    tool's) says they are two cameras publishing onto one topic and what to do. One camera in two spellings is still
    said to be listed twice."""
    from dpt_ros.ros.node import StartupError

    rules = ["b/inverse_depth:=/a/inverse_depth"]
    args = ["--ros-args", "-r", rules[0]]
    want = ("cameras 'a' and 'b' are two cameras (images /a/image and /b/image) whose inverse_depth outputs are "
            "remapped onto one topic, /a/inverse_depth: both would publish there, one's depth mixed with the other's; "
            "remap each camera's outputs to topics of its own (or drop the remap)")
    node = harness.start_node(managed=True, cli_args=args)
    refused = set_params(harness, node, cameras=["a", "b"])[0]
    assert not refused.successful and refused.reason == want
    assert sros2_policy.invalid_cameras(["a", "b"], "/", sros2_policy.parse_remaps(rules)) == want
    with pytest.raises(StartupError, match="are two cameras .* remapped onto one topic, /a/inverse_depth"):
        harness.start_node(cameras=["a", "b"], cli_args=args + ["-r", "__node:=dpt_remapped"])
    refused = set_params(harness, node, cameras=["b", "/b"])[0]
    assert refused.reason == "cameras lists one camera twice: 'b' and '/b' both publish /a/inverse_depth; list it once"
    assert set_params(harness, node, cameras=["a", "c"])[0].successful
