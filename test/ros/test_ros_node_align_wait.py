"""depth.align waits a bounded time for a frame's reference depth that is still on its way, as for camera_info: a
depth camera publishes its registered depth some milliseconds after the colour image of the same stamp, and on a GPU
the node reached the fit before it (the frame fell back or published no depth, counted incomplete:alignment). The
waits are seen where the worker waits for the node's condition; the references are sent while it does, so nothing
here depends on timing. Random dpt_tiny weights at 64 px."""
import threading

import numpy as np
import pytest

from dpt_ros import pipeline
from dpt_ros.ros import conversions
from dpt_ros.ros import node as node_module
from dpt_ros.ros.testing import make_image, wait_for

DOMAIN = 70
SCALE, SHIFT = 0.7, 0.2   # the reference is exactly 1 / (SCALE * inverse_depth + SHIFT) of the frame it is of


@pytest.fixture
def camera(harness, monkeypatch):
    """A node with depth.align; send_frame(ms), send_reference(ms) publish the frame stamped ms milliseconds / its
    reference; waits is a list of the stamps of the frames that waited, and waiting an Event set while one waits."""
    monkeypatch.setattr(node_module, "_INFO_WAIT_S", 10.0)   # a wait that ends is one a reference ended
    node, got, pub, ref_pub = harness.aligned_node()
    depth, cam = got["depth"], node.cameras[0]
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

    def frame(ms):
        return frames.setdefault(ms, make_image(1_000_000 * ms, width=80, height=60, seed=ms))

    def send_frame(ms):
        """Publish the frame stamped ``ms`` milliseconds."""
        pub.publish(frame(ms))

    def send_reference(ms, stored=True, scale=SCALE):
        """Publish the reference of the frame stamped ``ms`` ms: 1 / (scale * its inverse depth + SHIFT)."""
        img = frame(ms)
        rgb = pipeline.decode(conversions.image_view(img), np)
        x = pipeline.upsample(node.models.depth.run(node.models.depth_pre(rgb))["inverse_depth"], (60, 80))[0].numpy()
        ref_pub.publish(conversions.image_msg(img.header, (1.0 / (scale * x + SHIFT)).astype(np.float32), "32FC1"))
        if stored:
            wait_for(lambda: any(t == 1_000_000 * ms for t, _ in cam.references), what=f"reference {ms} stored")

    def processed(n):
        wait_for(lambda: node.counts()[""].get("processed", 0) == n, what=f"{n} frames processed")
        return node.counts()[""]

    return node, cam, depth, send_frame, send_reference, processed, waits, waiting


def test_a_reference_that_comes_after_its_frame_reached_the_fit_is_waited_for(camera):
    """The frame is in post-processing before its reference is sent (as on a GPU): the fit waits for it and uses it
    (it published no depth, incomplete:alignment). A frame whose reference is held already does not wait."""
    node, cam, depth, send_frame, send_reference, processed, waits, waiting = camera
    send_reference(1000)                  # an earlier reference: the camera sends them (its first is not waited for)
    send_frame(1000)
    wait_for(lambda: len(depth) == 1, what="frame 1000's depth")
    assert waits == []
    send_frame(2000)
    wait_for(lambda: waiting.is_set() or node.counts()[""].get("processed", 0) == 2, what="frame 2000 in the fit")
    send_reference(2000, stored=False)    # while the worker waits for it
    counts = processed(2)
    assert "incomplete:alignment" not in counts, counts
    assert counts["out:depth"] == 2 and waits == [2_000_000_000]
    assert cam.alignment[:2] == (pytest.approx(SCALE, rel=1e-4), pytest.approx(SHIFT, rel=1e-4))
    assert cam.alignment[2] == 15 * 20 and not cam.reference_waited_in_vain


def test_a_newer_reference_or_a_wait_in_vain_ends_the_waiting_until_a_reference_on_the_images_clock(camera,
                                                                                                     monkeypatch):
    """A reference newer than the frame shows that the frame's own was passed (lost): no wait; one more than 1 s
    newer does not (of before the stamps went back: a looped bag). A wait that runs out (the depth camera stopped, or
    stamps by another clock) is not repeated for the camera's next frames until a reference within 1 s of their
    stamps comes; one of another clock does not end it (so such a depth camera costs one wait, as camera_info's)."""
    node, cam, depth, send_frame, send_reference, processed, waits, waiting = camera
    monkeypatch.setattr(node_module, "_INFO_WAIT_S", 0.05)
    send_reference(3000)
    send_frame(2000)                      # its own (at 2 s) was passed: the one held is 1 s newer
    assert processed(1)["incomplete:alignment"] == 1 and waits == []
    send_frame(1000)                      # the one held is 2 s newer: waited for, in vain (none comes)
    assert processed(2)["incomplete:alignment"] == 2 and waits == [1_000_000_000]
    assert cam.reference_waited_in_vain
    send_frame(5000)                      # not waited for again
    assert processed(3)["incomplete:alignment"] == 3 and waits == [1_000_000_000]
    send_reference(9000)                  # 4 s from the images' stamps: another clock's, the mark holds
    assert cam.reference_waited_in_vain
    send_frame(5100)
    assert processed(4)["incomplete:alignment"] == 4 and waits == [1_000_000_000]
    monkeypatch.setattr(node_module, "_INFO_WAIT_S", 10.0)
    send_reference(5200)                  # the depth camera is back: the next frame waits again, and gets its own
    assert not cam.reference_waited_in_vain
    send_frame(5300)
    wait_for(lambda: waiting.is_set() or node.counts()[""].get("processed", 0) == 5, what="frame 5300 in the fit")
    send_reference(5300, stored=False)
    counts = processed(5)
    assert counts["incomplete:alignment"] == 4 and counts["out:depth"] == 1, counts
    assert cam.alignment[:2] == (pytest.approx(SCALE, rel=1e-4), pytest.approx(SHIFT, rel=1e-4))
    assert waits == [1_000_000_000, 5_300_000_000]


def test_the_first_frame_after_a_loop_waits_for_its_late_reference_as_for_camera_info(camera):
    """`ros2 bag play --loop`: at the loop the stamps go back to the bag's start, and the references held are of the
    end of the last pass, seconds newer than the next pass's first frame. Its reference, coming after it (as a depth
    camera's registered depth does), was not waited for (none held within 1 s of the frame was taken for another
    clock's): that frame went without a fit (incomplete:alignment) on every pass, while its camera_info was waited
    for. It waits for it as for camera_info, and is fitted to it."""
    node, cam, depth, send_frame, send_reference, processed, waits, waiting = camera
    for n, ms in enumerate((4900, 5000), 1):   # the end of the first pass
        send_reference(ms)
        send_frame(ms)
        assert processed(n)["out:depth"] == n
    send_frame(1000)                      # the loop: the next pass's first frame, its reference not yet sent
    wait_for(lambda: waiting.is_set() or node.counts()[""].get("processed", 0) == 3, what="frame 1000 in the fit")
    send_reference(1000, stored=False)
    counts = processed(3)
    assert "incomplete:alignment" not in counts and counts["out:depth"] == 3, counts
    assert waits == [1_000_000_000] and not cam.reference_waited_in_vain
    assert cam.alignment[:2] == (pytest.approx(SCALE, rel=1e-4), pytest.approx(SHIFT, rel=1e-4))


def test_the_previous_frames_reference_within_the_tolerance_does_not_end_the_wait_for_the_frames_own(camera):
    """At 30 Hz the previous frame's reference, 33 ms older, is within the 50 ms depth.align_tolerance: a frame that
    reached the fit before its own reference was fitted to that of the previous view. It now waits for its own while
    the one held is older by more than 5/8 of the references' period (the next one would be nearer). With a depth
    camera at half the image rate a frame between two references, one a little older held, does not wait."""
    node, cam, depth, send_frame, send_reference, processed, waits, waiting = camera
    for ms in (1000, 1033, 1066):
        send_reference(ms, scale=0.3)
    send_frame(1099)
    wait_for(lambda: waiting.is_set() or node.counts()[""].get("processed", 0) == 1, what="frame 1099 in the fit")
    send_reference(1099, stored=False)
    counts = processed(1)
    assert counts["out:depth"] == 1 and "incomplete:alignment" not in counts, counts
    assert cam.alignment[:2] == (pytest.approx(SCALE, rel=1e-4), pytest.approx(SHIFT, rel=1e-4))
    assert waits == [1_099_000_000]
    for ms in range(2000, 2400, 66):      # half the rate: the buffer's steps are 66 ms from now on
        send_reference(ms)
    send_frame(2396 + 28)                 # 28 ms after the last one: the next comes 38 ms after it
    counts = processed(2)
    assert counts["out:depth"] == 2 and "incomplete:alignment" not in counts, counts
    assert waits == [1_099_000_000]


def test_a_depth_camera_at_half_the_image_rate_with_jittered_stamps_keeps_the_half_period_old_reference(
        camera, monkeypatch):
    """A depth camera at 15 Hz beside 30 Hz images: every other frame lies half a period (33 ms) after the last
    reference and as far before the next. Real stamps jitter by a millisecond or so: a frame 34 ms after a reference,
    the references 66 and 67 ms apart, waited for the next one (33 ms later, no nearer to speak of), holding every
    camera's frames back by that on every other frame, or 50 ms in vain when it did not come (and no more waits for
    the camera's own late references after that). It keeps the one held, as with exact stamps."""
    node, cam, depth, send_frame, send_reference, processed, waits, waiting = camera
    monkeypatch.setattr(node_module, "_INFO_WAIT_S", 0.05)
    for ms in (2000, 2067, 2133, 2200, 2267, 2333):   # 15 Hz stamped to the millisecond: steps of 66 and 67 ms
        send_reference(ms)
    send_frame(2367)                      # the 30 Hz frame between 2333 and the next reference (2400)
    counts = processed(1)
    assert counts["out:depth"] == 1 and "incomplete:alignment" not in counts, counts
    assert waits == [] and not cam.reference_waited_in_vain


def test_a_depth_camera_that_stopped_is_not_said_to_be_of_another_clock(camera, harness, monkeypatch):
    """A depth camera on the images' clock that stops while the images go on: once its last reference is more than
    1 s older than a frame, the reason asked whether the image and the depth camera are stamped by one clock (they
    were). It says that the depth camera has stopped, and what to check."""
    from rcl_interfaces.msg import Log

    log = harness.collector(Log, "/rosout")
    node, cam, depth, send_frame, send_reference, processed, waits, waiting = camera
    send_frame(1000)                      # before the depth camera's first reference (not waited for)
    assert processed(1)["incomplete:alignment"] == 1
    send_reference(1100)
    send_frame(1100)
    assert processed(2)["out:depth"] == 1
    monkeypatch.setattr(node_module, "_INFO_WAIT_S", 0.05)
    send_frame(3600)                      # 2.5 s later: no reference since (waited for once, in vain)
    assert processed(3)["incomplete:alignment"] == 2 and waits == [3_600_000_000]
    wait_for(lambda: any("older" in m.msg and m.msg.startswith("[alignment]") for m in log), what="the reason")
    line = next(m.msg for m in log if "older" in m.msg and m.msg.startswith("[alignment]"))
    assert "is 2.5 s older" in line and "the depth camera has stopped" in line, line
    assert "one clock" not in line and "ros2 topic hz /depth_reference" in line, line


def test_a_depth_camera_whose_only_reference_came_before_the_images_is_said_to_have_stopped(camera, harness,
                                                                                             monkeypatch):
    """A reference that came before the first image (a bag whose depth starts a moment before its images), and none
    after it: the reference was never judged against the images' stamps, so once it was more than 1 s older than a
    frame the reason asked whether the two cameras are stamped by one clock (they were). It is judged against the
    first image's stamp, and the reason says that the depth camera has stopped."""
    from rcl_interfaces.msg import Log

    log = harness.collector(Log, "/rosout")
    node, cam, depth, send_frame, send_reference, processed, waits, waiting = camera
    send_reference(1000)                  # before any image
    send_frame(1000)
    assert processed(1)["out:depth"] == 1
    monkeypatch.setattr(node_module, "_INFO_WAIT_S", 0.05)
    send_frame(3500)                      # 2.5 s later: no reference since (waited for once, in vain)
    assert processed(2)["incomplete:alignment"] == 1 and waits == [3_500_000_000]
    wait_for(lambda: any(m.msg.startswith("[alignment]") for m in log), what="the reason")
    line = next(m.msg for m in log if m.msg.startswith("[alignment]"))
    assert "is 2.5 s older" in line and "the depth camera has stopped" in line, line
    assert "one clock" not in line, line


def test_a_frame_after_a_loop_whose_reference_did_not_come_is_said_to_be_perhaps_after_a_loop(camera, harness,
                                                                                               monkeypatch):
    """At a loop of `ros2 bag play --loop` whose first frame's reference does not come within the wait, the references
    held are seconds newer than the frame: the reason asked only whether the image and the depth camera are stamped by
    one clock; it now says first, as camera_info's does, that once it is the stamps having gone back."""
    from rcl_interfaces.msg import Log

    log = harness.collector(Log, "/rosout")
    node, cam, depth, send_frame, send_reference, processed, waits, waiting = camera
    for n, ms in enumerate((4900, 5000), 1):   # the end of the first pass
        send_reference(ms)
        send_frame(ms)
        assert processed(n)["out:depth"] == n
    monkeypatch.setattr(node_module, "_INFO_WAIT_S", 0.05)
    send_frame(1000)                      # the loop: the next pass's first frame, its reference never sent
    assert processed(3)["incomplete:alignment"] == 1 and waits == [1_000_000_000]
    wait_for(lambda: any("newer" in m.msg and m.msg.startswith("[alignment]") for m in log), what="the reason")
    line = next(m.msg for m in log if "newer" in m.msg and m.msg.startswith("[alignment]"))
    assert ("the nearest of the 2 last received is 3.9 s newer (if only once: the images' stamps went back, as at "
            "each ros2 bag play --loop, and the frame's own did not come within 50 ms; if on every frame: are the "
            "image and the depth camera stamped by one clock? Stamp the depth as the images are (one time source for "
            "both drivers), or, if it is that far from them on every frame, raise depth.align_tolerance above 3.9 "
            "s)") in line, line


def test_a_reference_stamped_after_its_frame_beyond_the_tolerance_is_said_with_what_to_do(camera, harness):
    """A depth camera that stamps its depth 60 ms after the images (depth.align_tolerance 50 ms): the reference held
    is newer than the frame, so the frame's own was passed and is not waited for, and the frame has none. The reason
    named only the gap ('0.06 s newer'), where one older than the frame by as much, and camera_info's in both
    directions, say what to do; it now does too."""
    from rcl_interfaces.msg import Log

    log = harness.collector(Log, "/rosout")
    node, cam, depth, send_frame, send_reference, processed, waits, waiting = camera
    send_reference(1060)                  # the depth of the frame stamped 1000 ms, stamped 60 ms after it
    send_frame(1000)
    assert processed(1)["incomplete:alignment"] == 1 and waits == []
    wait_for(lambda: any(m.msg.startswith("[alignment]") for m in log), what="the reason")
    line = next(m.msg for m in log if m.msg.startswith("[alignment]"))
    assert ("within depth.align_tolerance (0.05 s) of the image stamp: the nearest of the 1 last received is 0.06 s "
            "newer (if only now and then, the frame's own was lost; if so on every frame, the depth camera stamps its "
            "depth that far after the images, or is not synchronised with them: raise depth.align_tolerance above "
            "0.06 s, or stamp the depth as the images are)") in line, line
