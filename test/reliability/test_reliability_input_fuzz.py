"""Bad input a fuzzing pass found mishandled, through DDS into a real node: a frame stamped before 1970 (said to be
"ahead of this node's clock"), an empty or lying depth.align reference (a ZeroDivisionError that cost the frame all
its outputs, blamed on the image), a CameraInfo binning that leaves no pixels (blamed on the image size), and
intrinsics that are finite yet put every point at infinity (a cloud of infinite points, no error)."""
import math

import numpy as np
from rcl_interfaces.msg import Log
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Header

from dpt_ros.ros import conversions
from dpt_ros.ros.testing import make_image, make_info, qos, wait_for

DOMAIN = 84
W, H = 64, 48
SEC = 1_000_000_000


def _balanced(node) -> bool:
    c = node.counts()[""]
    errors = sum(n for k, n in c.items() if k.startswith("error:"))
    return c["received"] == c.get("processed", 0) + c.get("dropped", 0) + c.get("idle", 0) + c.get("throttled", 0) \
        + errors


def test_a_frame_stamped_before_1970_is_said_to_be_so_not_ahead_of_the_clock(harness, rosout):
    node = harness.start_node()
    out = harness.collector(Image, "inverse_depth")
    pub = harness.probe.create_publisher(Image, "image", qos())
    wait_for(lambda: pub.get_subscription_count() and node.cameras[0].pubs["inverse_depth"].get_subscription_count(),
             what="discovery")
    img = make_image(0, W, H)
    img.header.stamp.sec, img.header.stamp.nanosec = -5, 0
    pub.publish(img)
    wait_for(lambda: len(out) == 1, what="the frame's output")
    assert (out[0].header.stamp.sec, out[0].header.stamp.nanosec, out[0].header.frame_id) == (-5, 0, "cam_optical")
    wait_for(lambda: any("negative time" in x for x in rosout.lines("dpt_node", Log.WARN)), what="the warning")
    said = [x for x in rosout.lines("dpt_node", Log.WARN) if "/image: frames stamped" in x]
    assert len(said) == 1 and "-5.000 s" in said[0] and "ahead of this node's clock" not in said[0], said
    # a frame really ahead of the clock is still said to be (its own warning, not taken by the negative one)
    future = make_image(harness.probe.get_clock().now().nanoseconds + 3600 * SEC, W, H)
    pub.publish(future)
    wait_for(lambda: len(out) == 2, what="the future frame's output")
    wait_for(lambda: any("ahead of this node's clock" in x for x in rosout.lines("dpt_node", Log.WARN)),
             what="the future-stamp warning")
    assert _balanced(node)
