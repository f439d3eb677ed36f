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
from dpt_ros.ros.testing import make_image, make_info, qos, wait_for, worker_done

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


def test_an_empty_or_lying_reference_depth_costs_only_the_alignment(harness, rosout):
    """depth.align with a reference of 0 rows (a depth driver without a frame yet) divided by zero: the frame was
    counted error:postprocess as "/image: ZeroDivisionError" and lost its inverse depth too. Now such a reference,
    and one whose step / data do not fit, is the frame's incomplete:alignment, with a reason naming the reference."""
    node = harness.start_node(**{"depth.align": True})
    inv = harness.collector(Image, "inverse_depth")
    depth = harness.collector(Image, "depth")
    pub = harness.probe.create_publisher(Image, "image", qos())
    ref_pub = harness.probe.create_publisher(Image, "depth_reference", qos())
    wait_for(lambda: pub.get_subscription_count() and ref_pub.get_subscription_count() and
             all(node.cameras[0].pubs[n].get_subscription_count() for n in ("inverse_depth", "depth")),
             what="discovery")
    cases = [("empty", dict(width=0, height=0, step=0, data=b""), "empty 16UC1 image (0x0)"),
             # (another encoding: a message that differs only in its numbers is rate limited with the one before)
             ("no rows", dict(encoding="32FC1", width=W, height=0, step=4 * W, data=b""), f"empty 32FC1 image ({W}x0)"),
             ("short data", dict(data=b"\0" * 100), "len(data)=100")]
    for i, (what, fields, key) in enumerate(cases, 1):
        img = make_image(i * SEC, W, H)
        ref = conversions.image_msg(Header(frame_id=img.header.frame_id, stamp=img.header.stamp),
                                    np.full((H, W), 2000, np.uint16), "16UC1")
        data = fields.pop("data")
        for k, v in fields.items():
            setattr(ref, k, v)
        ref.data = data
        mark = rosout.mark()
        ref_pub.publish(ref)
        wait_for(lambda: node.cameras[0].references and node.cameras[0].references[-1][0] == i * SEC,
                 what=f"{what} reference stored")
        pub.publish(img)
        wait_for(lambda: len(inv) == i, what=f"inverse depth of the frame with the {what} reference")
        assert conversions.stamp_ns(inv[-1].header) == i * SEC
        wait_for(lambda: node.counts()[""].get("incomplete:alignment", 0) == i, what=f"{what} counted")
        wait_for(lambda: any("[alignment] /depth_reference" in x and key in x
                             for x in rosout.lines("dpt_node", Log.ERROR, mark)), what=f"the reason for {what}")
    assert depth == [] and "postprocess" not in node.error_counts(), node.error_counts()
    wait_for(lambda: worker_done(node), what="the worker done")   # (it counts a frame processed after its outputs)
    assert _balanced(node)


def _calibration_cases(harness, rosout, cases) -> None:
    """Each (mutate, key): a frame with its camera_info changed by ``mutate`` is counted incomplete:calibration with
    a log line holding ``key`` and publishes no cloud; the next valid camera_info gives a finite cloud."""
    node = harness.start_node(**{"depth.scale": 1.0})
    points = harness.collector(PointCloud2, "points")
    pub = harness.probe.create_publisher(Image, "image", qos())
    info_pub = harness.probe.create_publisher(CameraInfo, "camera_info", qos())
    wait_for(lambda: pub.get_subscription_count() and info_pub.get_subscription_count() and
             node.cameras[0].pubs["points"].get_subscription_count(), what="discovery")
    for i, (mutate, key) in enumerate(cases, 1):
        img = make_image(i * SEC, W, H)
        info = make_info(img)
        info.header = Header(frame_id=img.header.frame_id, stamp=img.header.stamp)
        mutate(info)
        mark = rosout.mark()
        info_pub.publish(info)
        wait_for(lambda: node.cameras[0].infos and node.cameras[0].infos[-1][0] == i * SEC, what="info stored")
        pub.publish(img)
        wait_for(lambda: node.counts()[""].get("incomplete:calibration", 0) == i, what=f"{mutate.__name__} counted")
        wait_for(lambda: any("[calibration]" in x and key in x for x in rosout.lines("dpt_node", Log.ERROR, mark)),
                 what=f"the reason for {mutate.__name__}")
    assert points == []
    img = make_image(10 * SEC, W, H)
    info_pub.publish(make_info(img))
    wait_for(lambda: node.cameras[0].infos[-1][0] == 10 * SEC, what="info stored")
    pub.publish(img)
    # (the worker counts the frame processed after it has published the cloud)
    wait_for(lambda: len(points) == 1 and worker_done(node), what="the valid frame's cloud")
    xyz = conversions.cloud_array(points[0])
    assert all(np.isfinite(xyz[f]).all() for f in ("x", "y", "z")) and math.isfinite(float(xyz["z"].max()))
    assert _balanced(node)


def test_a_camera_info_binning_that_leaves_no_pixels_is_refused_as_such(harness, rosout):
    """A binning larger than the image was refused as "intrinsics need a positive image size; got 0x0", of a 64x48
    camera_info: the reason named neither binning nor what to fix."""
    def binning(info):
        info.binning_x = info.binning_y = 1000

    _calibration_cases(harness, rosout, [(binning, "binning_x=1000, binning_y=1000 leaves no pixels of its 64x48 "
                                                   "image")])


def test_intrinsics_that_put_the_points_at_infinity_are_refused(harness, rosout):
    """A denormal fx (finite, > 0) or an absurd cx passed every check and published a cloud of infinite points."""
    def tiny_fx(info):
        info.k = [1e-320, *info.k[1:]]
        info.p = [0.0] * 12   # (K is used)

    def huge_cx(info):
        info.p = [info.p[0], 0.0, 1e308, *info.p[3:]]

    _calibration_cases(harness, rosout, [(tiny_fx, "beyond float range"), (huge_cx, "beyond float range")])
