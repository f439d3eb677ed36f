"""vision_msgs/LabelInfo: the label -> class name map, latched per camera (runs where vision_msgs is
installed; it is not on PyPI, so it skips in CI)."""
import pytest
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

from dpt_ros.pipeline import ADE20K_CLASSES
from dpt_ros.ros.testing import wait_for

vision_msgs = pytest.importorskip("vision_msgs.msg")

DOMAIN = 64


def test_label_info_reaches_late_subscribers_of_every_camera(harness):
    node = harness.start_node(cameras=["left", "right"])
    start_ns = node.get_clock().now().nanoseconds
    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    got = {}
    for cam in ("left", "right"):    # subscribed after the node published: transient local delivers it
        got[cam] = []
        harness.probe.create_subscription(vision_msgs.LabelInfo, f"/{cam}/label_info", got[cam].append, latched)
    wait_for(lambda: all(got.values()), timeout=20, what="label_info on both cameras")
    for cam, msgs in got.items():
        assert len(msgs) == 1, cam
        msg = msgs[0]
        assert [(c.class_id, c.class_name) for c in msg.class_map] == list(enumerate(["unlabeled", *ADE20K_CLASSES]))
        assert msg.class_map[1].class_name == "wall" and msg.class_map[150].class_name == "flag"
        assert msg.threshold == 0.0
        stamp_ns = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        assert 0 < stamp_ns <= start_ns
    assert [c.class_name for c in got["left"][0].class_map] == list(node.get_parameter("class_names").value)
