"""depth.align waits a bounded time for a frame's reference depth that is still on its way, as for camera_info: a
depth camera publishes its registered depth some milliseconds after the colour image of the same stamp, and on a GPU
the node reached the fit before it (the frame fell back or published no depth, counted incomplete:alignment). The
waits are seen where the worker waits for the node's condition; the references are sent while it does, so nothing
here depends on timing. Random dpt_tiny weights at 64 px."""
import threading

import numpy as np
import pytest
from sensor_msgs.msg import Image

from dpt_ros import pipeline
from dpt_ros.ros import conversions
from dpt_ros.ros import node as node_module
from dpt_ros.ros.testing import make_image, qos, wait_for

DOMAIN = 70
SCALE, SHIFT = 0.7, 0.2   # the reference is exactly 1 / (SCALE * inverse_depth + SHIFT) of the frame it is of


@pytest.fixture
def camera(harness, monkeypatch):
    """A node with depth.align; send_frame(i), send_reference(i) publish frame i / the reference of its stamp; waits
    is a list of the stamps of the frames that waited, and waiting an Event set while one waits."""
    monkeypatch.setattr(node_module, "_INFO_WAIT_S", 10.0)   # a wait that ends is one a reference ended
    node = harness.start_node(**{"depth.align": True, "diagnostics.period": 60.0})
    depth = harness.collector(Image, "depth")
    pub = harness.probe.create_publisher(Image, "image", qos("reliable"))
    ref_pub = harness.probe.create_publisher(Image, "depth_reference", qos("reliable"))
    cam = node.cameras[0]
    wait_for(lambda: pub.get_subscription_count() > 0 and ref_pub.get_subscription_count() > 0 and
             cam.pubs["depth"].get_subscription_count() > 0, what="discovery")
    waits, waiting = [], threading.Event()
    arrived = node._info_arrived
    real_wait = arrived.wait

    def wait(timeout=None):   # (the worker, holding the lock: the frame in it is the one waiting)
        waits.append(conversions.stamp_ns(node._in_worker[0].msg.header))
        waiting.set()
        try:
            return real_wait(timeout)
        finally:
            waiting.clear()

    monkeypatch.setattr(arrived, "wait", wait)
    frames = {}

    def frame(i):
        return frames.setdefault(i, make_image(1_000_000_000 * i, width=80, height=60, seed=i))

    def send_frame(i):
        pub.publish(frame(i))

    def send_reference(i, stored=True):
        img = frame(i)
        rgb = pipeline.decode(conversions.image_view(img), np)
        x = pipeline.upsample(node.models.depth.run(node.models.depth_pre(rgb))["inverse_depth"], (60, 80))[0].numpy()
        ref_pub.publish(conversions.image_msg(img.header, (1.0 / (SCALE * x + SHIFT)).astype(np.float32), "32FC1"))
        if stored:
            wait_for(lambda: any(t == 1_000_000_000 * i for t, _ in cam.references), what=f"reference {i} stored")

    def processed(n):
        wait_for(lambda: node.counts()[""].get("processed", 0) == n, what=f"{n} frames processed")
        return node.counts()[""]

    return node, cam, depth, send_frame, send_reference, processed, waits, waiting


def test_a_reference_that_comes_after_its_frame_reached_the_fit_is_waited_for(camera):
    """The frame is in post-processing before its reference is sent (as on a GPU): the fit waits for it and uses it
    (it published no depth, incomplete:alignment). A frame whose reference is held already does not wait."""
    node, cam, depth, send_frame, send_reference, processed, waits, waiting = camera
    send_reference(1)                     # an earlier reference: the camera sends them (its first is not waited for)
    send_frame(1)
    wait_for(lambda: len(depth) == 1, what="frame 1's depth")
    assert waits == []
    send_frame(2)
    wait_for(lambda: waiting.is_set() or node.counts()[""].get("processed", 0) == 2, what="frame 2 in the fit")
    send_reference(2, stored=False)       # while the worker waits for it
    counts = processed(2)
    assert "incomplete:alignment" not in counts, counts
    assert counts["out:depth"] == 2 and waits == [2_000_000_000]
    assert cam.alignment[:2] == (pytest.approx(SCALE, rel=1e-4), pytest.approx(SHIFT, rel=1e-4))
    assert cam.alignment[2] == 15 * 20 and not cam.reference_waited_in_vain


def test_a_newer_reference_or_a_wait_in_vain_ends_the_waiting_until_the_next_reference(camera, monkeypatch):
    """A reference newer than the frame shows that the frame's own was passed (lost): no wait; one more than 1 s
    newer does not (of before the stamps went back: a looped bag). A wait that runs out (the depth camera stopped)
    is not repeated for the camera's next frames until a reference comes again."""
    node, cam, depth, send_frame, send_reference, processed, waits, waiting = camera
    monkeypatch.setattr(node_module, "_INFO_WAIT_S", 0.05)
    send_reference(3)
    send_frame(2)                         # its own (at 2 s) was passed: the one held is 1 s newer
    assert processed(1)["incomplete:alignment"] == 1 and waits == []
    send_frame(1)                         # the one held is 2 s newer: waited for, in vain (none comes)
    assert processed(2)["incomplete:alignment"] == 2 and waits == [1_000_000_000]
    assert cam.reference_waited_in_vain
    send_frame(5)                         # not waited for again
    assert processed(3)["incomplete:alignment"] == 3 and waits == [1_000_000_000]
    monkeypatch.setattr(node_module, "_INFO_WAIT_S", 10.0)
    send_reference(4)                     # the depth camera is back: the next frame waits again, and gets its own
    assert not cam.reference_waited_in_vain
    send_frame(7)
    wait_for(lambda: waiting.is_set() or node.counts()[""].get("processed", 0) == 4, what="frame 7 in the fit")
    send_reference(7, stored=False)
    counts = processed(4)
    assert counts["incomplete:alignment"] == 3 and counts["out:depth"] == 1, counts
    assert waits == [1_000_000_000, 7_000_000_000]
    assert cam.alignment[:2] == (pytest.approx(SCALE, rel=1e-4), pytest.approx(SHIFT, rel=1e-4))
