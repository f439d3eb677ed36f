"""camera_info (or, with depth.align, the reference depth) stamped consistently some hundreds of milliseconds before
its images, on their clock (a driver stamping camera_info otherwise than the images, a relay): it matches no frame
within camera_info.tolerance, yet each one came within 1 s of the images' stamps and cleared the camera's
waited-in-vain mark, so every frame waited the 50 ms for its own in vain, holding the worker (and every camera's
frames) back by that on each. A wait is now retried only when a camera_info comes that a waiting frame could have
used. The waits are seen where the worker waits for the node's condition, so nothing here depends on timing.
Random dpt_tiny weights at 64 px."""

import numpy as np
import pytest
from rcl_interfaces.msg import Log
from sensor_msgs.msg import CameraInfo, Image

from dpt_ros.ros import conversions
from dpt_ros.ros import node as node_module
from dpt_ros.ros.testing import make_image, make_info, wait_for, watch_waits

DOMAIN = 50

T0 = 1_764_900_000 * 10**9
STEP = 10**8   # frames every 100 ms
# camera_info / references stamped 900 ms before the images (within 1 s of them: not another clock); the frames of
# these tests span less than that, so that none of them matches one (whatever the time between their arrivals)
OFFSET = 9 * 10**8


def _processed(node, n):
    wait_for(lambda: node.counts()[""].get("processed", 0) == n, what=f"{n} frames processed")
    return node.counts()[""]


def _camera_status(node) -> dict:
    status = next(s for s in node.diagnostics().status if ": camera" in s.name)
    return {kv.key: kv.value for kv in status.values}


def test_camera_info_stamped_consistently_older_than_its_images_is_waited_for_once(harness, monkeypatch):
    """camera_info 900 ms older than the frames, one before each: the first frame waits for its own in vain, the next
    do not (none of those camera_info could have been a waiting frame's). The log and the camera's status in
    /diagnostics say how much older it is and what to do; the status counts the waits in vain. Once camera_info comes
    as new as the frames, a frame waits for its late own again and gets it."""
    node = harness.start_node(**{"depth.scale": 1.0, "diagnostics.period": 60.0})
    log = harness.collector(Log, "/rosout")
    got, (pub, info_pub) = harness.connect(node, {"depth/camera_info": CameraInfo})
    infos_out, cam = got["depth/camera_info"], node.cameras[0]
    waits, waiting = watch_waits(node, monkeypatch)

    def send_info(t, stored=True):
        info_pub.publish(make_info(make_image(t)))
        if stored:
            wait_for(lambda: any(s == t for s, _ in cam.infos), what=f"camera_info {t} stored")

    frames = [T0 + i * STEP for i in range(6)]
    for i, t in enumerate(frames):
        send_info(t - OFFSET)
        pub.publish(make_image(t))
        counts = _processed(node, i + 1)
    assert waits == [frames[0]], [w - T0 for w in waits]
    assert cam.info_waited_in_vain
    assert counts["incomplete:no_camera_info"] == 6 and counts["waited_in_vain:camera_info"] == 1, counts
    assert infos_out == []
    wait_for(lambda: any("[no_camera_info]" in m.msg for m in log), what="the log line")
    line = next(m.msg for m in log if "[no_camera_info]" in m.msg)
    assert "is 900 ms older than the image" in line, line
    assert ("camera_info.tolerance above 0.9 s" in line and "camera_info.policy:=latest" in line and
            "stamp camera_info as the images are" in line), line
    status = _camera_status(node)
    assert "900 ms older than the image" in status["camera_info"], status
    assert "camera_info.tolerance" in status["camera_info"], status
    assert status["waited_in_vain.camera_info"] == "1", status
    # camera_info as new as the frames: the mark is cleared, and a frame waits for its late own again
    monkeypatch.setattr(node_module, "_INFO_WAIT_S", 10.0)   # (a wait that ends is one its camera_info ended)
    send_info(frames[-1])
    assert not cam.info_waited_in_vain
    late = frames[-1] + STEP
    pub.publish(make_image(late))
    wait_for(lambda: waiting.is_set() or node.counts()[""].get("processed", 0) == 7, what="the late frame waiting")
    send_info(late, stored=False)
    counts = _processed(node, 7)
    assert waits == [frames[0], late] and counts["incomplete:no_camera_info"] == 6, counts
    wait_for(lambda: len(infos_out) == 1, what="the late frame's depth/camera_info")
    assert conversions.stamp_ns(infos_out[0].header) == late
    assert "camera_info" not in _camera_status(node)   # (matched again)


def test_a_camera_info_that_a_waiting_frame_could_have_used_has_frames_wait_again(harness, monkeypatch):
    """After a wait in vain (one camera_info lost), a camera_info that matches none of the camera's frames leaves the
    mark (200 ms older than the last frame: beyond the 50 ms tolerance); one that a waiting frame would have got
    (40 ms older than the last frame, which arrived less than a wait ago) clears it."""
    node = harness.start_node(**{"depth.scale": 1.0, "diagnostics.period": 60.0})
    _, (pub, info_pub) = harness.connect(node, {"depth/camera_info": CameraInfo})
    cam = node.cameras[0]
    waits, _ = watch_waits(node, monkeypatch)
    info_pub.publish(make_info(make_image(T0)))
    wait_for(lambda: len(cam.infos) == 1, what="camera_info stored")
    pub.publish(make_image(T0 + STEP))   # its camera_info is lost: waited for, in vain
    assert _processed(node, 1)["waited_in_vain:camera_info"] == 1 and cam.info_waited_in_vain
    monkeypatch.setattr(node_module, "_INFO_WAIT_S", 10.0)   # (the frame arrived less than a wait ago)
    info_pub.publish(make_info(make_image(T0 + STEP - 200 * 10**6)))   # 200 ms older than the frame: not yet
    wait_for(lambda: len(cam.infos) == 2, what="camera_info stored")
    assert cam.info_waited_in_vain
    info_pub.publish(make_info(make_image(T0 + STEP - 40 * 10**6)))
    wait_for(lambda: len(cam.infos) == 3, what="camera_info stored")
    assert not cam.info_waited_in_vain
    assert waits == [T0 + STEP]


def test_a_depth_camera_stamped_consistently_older_than_the_images_is_waited_for_once(harness, monkeypatch):
    """depth.align: references 900 ms older than the frames, one before each: only the first frame waits for its own
    (in vain); the camera's status counts that one wait, and the log says how much older they are and what to do."""
    log = harness.collector(Log, "/rosout")
    node, got, pub, ref_pub = harness.aligned_node()
    cam = node.cameras[0]
    waits, _ = watch_waits(node, monkeypatch)
    frames = [T0 + i * STEP for i in range(5)]
    for i, t in enumerate(frames):
        ref = make_image(t - OFFSET, width=80, height=60)
        ref_pub.publish(conversions.image_msg(ref.header, np.full((60, 80), 2.0, np.float32), "32FC1"))
        wait_for(lambda: any(s == t - OFFSET for s, _ in cam.references), what="reference stored")
        pub.publish(make_image(t, width=80, height=60))
        counts = _processed(node, i + 1)
    assert waits == [frames[0]], [w - T0 for w in waits]
    assert cam.reference_waited_in_vain
    assert counts["incomplete:alignment"] == 5 and counts["waited_in_vain:depth_reference"] == 1, counts
    assert _camera_status(node)["waited_in_vain.depth_reference"] == "1"
    wait_for(lambda: any(m.msg.startswith("[alignment]") for m in log), what="the reason")
    line = next(m.msg for m in log if m.msg.startswith("[alignment]"))
    assert "is 0.9 s older" in line and "raise depth.align_tolerance above 0.9 s" in line, line


def test_a_depth_camera_stamped_older_with_the_tolerance_raised_above_the_offset_is_waited_for_once(harness,
                                                                                                    monkeypatch):
    """README's remedy for references stamped consistently T s before the images: raise depth.align_tolerance above T
    (here 0.95 s for 900 ms). Each frame then took its own reference (900 ms older) and yet waited on for a nearer one
    (older than the image by more than 5/8 of the references' period), in vain, counted waited_in_vain, and each
    reference, coming just after its image and within the tolerance of it, cleared the camera's mark: every frame
    waited the whole wait, holding the worker (and every camera's frames) back. A reference that would not end a
    waiting frame's wait no longer clears the mark: one wait, and every frame is fitted to its own reference. The
    references come while each frame's forward pass is held (as a depth camera's registered depth comes just after the
    image, before the node reaches the fit on a CPU); a wait is 1 s, so that each comes well within its reach."""
    from dpt_ros.ros.testing import exact_reference, gate_engine, model_inverse_depth

    monkeypatch.setattr(node_module, "_INFO_WAIT_S", 1.0)
    node, got, pub, ref_pub = harness.aligned_node(**{"depth.align_tolerance": 0.95})
    cam = node.cameras[0]
    waits, _ = watch_waits(node, monkeypatch)
    frames = [T0 + i * STEP for i in range(5)]
    images = {t: make_image(t, width=80, height=60, seed=i) for i, t in enumerate(frames)}
    x = {t: model_inverse_depth(node, img) for t, img in images.items()}

    def send_reference(stamp, values):
        ref_pub.publish(conversions.image_msg(make_image(stamp, width=80, height=60).header, values, "32FC1"))
        wait_for(lambda: any(s == stamp for s, _ in cam.references), what="reference stored")

    for t in (frames[0] - 2 * STEP, frames[0] - STEP):   # the depth camera runs: the references' period is known
        send_reference(t - OFFSET, np.full((60, 80), 2.0, np.float32))
    gate, entered, _ = gate_engine(node.models.depth)
    fits = []
    for i, t in enumerate(frames):
        gate.clear()
        entered.clear()
        pub.publish(images[t])
        wait_for(entered.is_set, what=f"frame {i} in its forward pass")
        ref, fit = exact_reference(x[t], near=1.0 + i, far=6.0 + i)   # each frame's own
        fits.append(fit)
        send_reference(t - OFFSET, ref)
        gate.set()
        counts = _processed(node, i + 1)
        assert cam.alignment[:2] == (pytest.approx(fit[0], rel=1e-4), pytest.approx(fit[1], rel=1e-4)), i
    assert waits == [frames[0]], [w - T0 for w in waits]
    assert counts["out:depth"] == 5 and "incomplete:alignment" not in counts, counts
    assert counts["waited_in_vain:depth_reference"] == 1, counts
    assert _camera_status(node)["waited_in_vain.depth_reference"] == "1"
    wait_for(lambda: len(got["depth"]) == 5, what="the depths")


def test_camera_info_tolerance_set_live_pairs_the_next_frames_by_it(harness):
    """camera_info.tolerance set live (ros2 param set, the SetParameters service) applies from the next frame: with
    camera_info stamped 100 ms after its image, the frame is published without depth/camera_info (counted
    incomplete.no_camera_info, the log and the camera's status saying to raise the tolerance above 0.1 s) under the
    default 0.05 s, paired (depth/camera_info with the image's header, the status clear) under 0.15 s, and unpaired
    again under 0.08 s. Values no tolerance can have (negative, NaN, infinite, above 10 s) are refused with the reason
    and leave it as it was."""
    from rcl_interfaces.msg import Log

    from dpt_ros.ros.testing import get_params, set_params

    node = harness.start_node(**{"depth.scale": 1.0, "diagnostics.period": 60.0})
    log = harness.collector(Log, "/rosout")
    got, (pub, info_pub) = harness.connect(node, {"depth/camera_info": CameraInfo, "depth": Image})
    infos_out, depths, cam = got["depth/camera_info"], got["depth"], node.cameras[0]
    gap = 10**8   # camera_info 100 ms newer than its image (sent first: the frame does not wait for a nearer one)
    sent = 0

    def frame(t: int) -> dict:
        nonlocal sent
        info_pub.publish(make_info(make_image(t + gap)))
        wait_for(lambda: any(s == t + gap for s, _ in cam.infos), what=f"camera_info {t + gap} stored")
        pub.publish(make_image(t))
        sent += 1
        counts = _processed(node, sent)
        wait_for(lambda: len(depths) == sent, what=f"the depth of frame {t}")
        return counts

    def tolerance(value) -> None:
        result = set_params(harness, node, **{"camera_info.tolerance": value})[0]
        assert result.successful, result.reason
        assert node.settings["camera_info.tolerance"] == value

    counts = frame(T0)                                   # 0.05 s: no pair
    assert counts["incomplete:no_camera_info"] == 1 and counts["out:depth"] == 1, counts
    wait_for(lambda: any("[no_camera_info]" in m.msg for m in log), what="the log line")
    line = next(m.msg for m in log if "[no_camera_info]" in m.msg)
    assert "the closest is 100 ms newer than the image" in line and "camera_info.tolerance above 0.1 s" in line, line
    assert "camera_info.tolerance above 0.1 s" in _camera_status(node)["camera_info"]
    tolerance(0.15)
    counts = frame(T0 + 10 * STEP)                       # paired
    assert counts["incomplete:no_camera_info"] == 1 and counts["out:depth/camera_info"] == 1, counts
    wait_for(lambda: len(infos_out) == 1, what="depth/camera_info")
    assert conversions.stamp_ns(infos_out[0].header) == T0 + 10 * STEP   # the image's stamp, not camera_info's
    assert infos_out[0].header.frame_id == depths[-1].header.frame_id == "cam_optical"
    assert "camera_info" not in _camera_status(node)
    tolerance(0.08)
    counts = frame(T0 + 20 * STEP)                       # unpaired again
    assert counts["incomplete:no_camera_info"] == 2 and counts["out:depth/camera_info"] == 1, counts
    assert "camera_info.tolerance above 0.1 s" in _camera_status(node)["camera_info"]
    for bad, why in ((-0.01, "camera_info.tolerance=-0.01 out of range 0..10"),
                     (float("nan"), "camera_info.tolerance=nan out of range 0..10"),
                     (float("inf"), "camera_info.tolerance=inf out of range 0..10"),
                     (10.5, "camera_info.tolerance=10.5 out of range 0..10")):
        result = set_params(harness, node, **{"camera_info.tolerance": bad})[0]
        assert not result.successful and result.reason == why, (bad, result.reason)
    assert node.settings["camera_info.tolerance"] == 0.08
    assert get_params(harness, node, "camera_info.tolerance") == [0.08]
    assert frame(T0 + 30 * STEP)["incomplete:no_camera_info"] == 3   # (0.08 still)
