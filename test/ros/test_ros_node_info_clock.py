"""camera_info stamped by another clock than the images (a driver stamping it with its own now() while the images
carry the sensor's time, a relay restamping it): every frame waited the 50 ms for a camera_info of its stamp that
could not come, each camera_info that arrived clearing the camera's waited-in-vain mark, and the log advised a larger
tolerance. The waits are seen where the worker waits for the node's condition, so nothing here depends on timing.
Random dpt_tiny weights at 64 px."""

import pytest
from rcl_interfaces.msg import Log
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image

from dpt_ros.ros import conversions
from dpt_ros.ros import node as node_module
from dpt_ros.ros.testing import make_image, make_info, wait_for, watch_waits, worker_done

DOMAIN = 80

T0 = 1_764_900_000 * 10**9
STEP = 10**8   # frames every 100 ms


@pytest.fixture
def camera(harness, monkeypatch):
    """A node with depth and depth/camera_info (camera_info.policy nearest, the default); send_frame(t), send_info(t)
    publish the frame / a camera_info stamped t (the info waited for until the node holds it); waits lists the stamps
    of the frames that waited for their camera_info, and waiting is set while one waits."""
    node = harness.start_node(**{"depth.scale": 1.0, "diagnostics.period": 60.0})
    log = harness.collector(Log, "/rosout")
    got, (pub, info_pub) = harness.connect(node, {"depth": Image, "depth/camera_info": CameraInfo})
    depth, infos_out = got["depth"], got["depth/camera_info"]
    cam = node.cameras[0]
    waits, waiting = watch_waits(node, monkeypatch)

    def send_frame(t):
        pub.publish(make_image(t))

    def send_info(t, stored=True):
        msg = make_info(make_image(t))
        info_pub.publish(msg)
        if stored:
            wait_for(lambda: any(s == t for s, _ in cam.infos), what=f"camera_info {t} stored")

    def processed(n):
        wait_for(lambda: node.counts()[""].get("processed", 0) == n, what=f"{n} frames processed")
        return node.counts()[""]

    return node, cam, log, depth, infos_out, send_frame, send_info, processed, waits, waiting


@pytest.mark.parametrize("offset_s", [-5, 5])
def test_camera_info_by_another_clock_is_waited_for_once_not_on_every_frame(camera, monkeypatch, offset_s):
    """camera_info 5 s older / newer than the images, one per frame: the first frame waits for its own in vain; the
    next do not wait, though a camera_info comes before each (it is more than 1 s from the images: another clock).
    The log says the stamps are of another clock and what to do. Once camera_info comes on the images' clock again,
    a frame waits for its late own again and gets it."""
    node, cam, log, depth, infos_out, send_frame, send_info, processed, waits, waiting = camera
    frames = [T0 + i * STEP for i in range(5)]
    for i, t in enumerate(frames):
        send_info(t + offset_s * 10**9)
        send_frame(t)
        counts = processed(i + 1)
    assert waits == [frames[0]], [w - T0 for w in waits]
    assert cam.info_waited_in_vain
    assert counts["incomplete:no_camera_info"] == 5 and counts["out:depth"] == 5 and infos_out == [], counts
    side = "older" if offset_s < 0 else "newer"
    wait_for(lambda: any("[no_camera_info]" in m.msg for m in log), what="the log line")
    line = next(m.msg for m in log if "[no_camera_info]" in m.msg)
    assert f"is 5000 ms {side} than the image" in line, line
    assert "stamped by another clock" in line and "camera_info.policy:=latest" in line, line
    assert "camera_info.tolerance" not in line, line   # (no tolerance makes another clock's stamps the frame's)
    # camera_info on the images' clock again: the mark is cleared, and a frame waits for its late own
    monkeypatch.setattr(node_module, "_INFO_WAIT_S", 10.0)   # (a wait that ends is one its camera_info ended)
    send_info(frames[-1] + STEP // 2)
    assert not cam.info_waited_in_vain
    late = frames[-1] + 2 * STEP
    send_frame(late)
    wait_for(lambda: waiting.is_set() or node.counts()[""].get("processed", 0) == 6, what="the late frame waiting")
    send_info(late, stored=False)
    counts = processed(6)
    assert waits == [frames[0], late] and counts["incomplete:no_camera_info"] == 5, counts
    wait_for(lambda: len(infos_out) == 1, what="the late frame's depth/camera_info")
    assert conversions.stamp_ns(infos_out[0].header) == late


def test_after_a_wait_in_vain_a_looped_bags_next_pass_waits_again_once_its_camera_info_comes(camera, monkeypatch):
    """A wait in vain near the end of a bag's pass (its camera_info stopped first) is not repeated; after the loop the
    stamps are 10 s back, and the next pass's camera_info, within 1 s of its images, clears the mark again (it is not
    taken for another clock's): a frame waits for its late own again and gets it."""
    node, cam, log, depth, infos_out, send_frame, send_info, processed, waits, waiting = camera
    send_info(T0)
    send_frame(T0)
    assert processed(1).get("incomplete:no_camera_info", 0) == 0
    send_frame(T0 + STEP)                 # its camera_info never comes: waited for, in vain
    assert processed(2)["incomplete:no_camera_info"] == 1 and cam.info_waited_in_vain
    back = T0 - 10 * 10**9                # the next pass
    send_frame(back)                      # not waited for: the mark holds
    assert processed(3)["incomplete:no_camera_info"] == 2 and waits == [T0 + STEP]
    send_info(back + STEP // 2)           # within 1 s of the images again
    assert not cam.info_waited_in_vain
    monkeypatch.setattr(node_module, "_INFO_WAIT_S", 10.0)   # (a wait that ends is one its camera_info ended)
    late = back + 2 * STEP
    send_frame(late)
    wait_for(lambda: waiting.is_set() or node.counts()[""].get("processed", 0) == 4, what="the late frame waiting")
    send_info(late, stored=False)
    counts = processed(4)
    assert waits == [T0 + STEP, late] and counts["incomplete:no_camera_info"] == 2, counts
    wait_for(lambda: len(infos_out) == 2, what="the late frame's depth/camera_info")
    assert [conversions.stamp_ns(m.header) for m in infos_out] == [T0, late]


def test_camera_info_that_stopped_is_not_said_to_be_of_another_clock(camera):
    """camera_info on the images' clock that stops (its publisher gone) while the images go on: once the last one
    held is more than 1 s older than a frame, the log said it was stamped by another clock than the images and to
    stamp it as the images are, which it was. It says that camera_info stopped coming, when the last came, and what
    to do."""
    node, cam, log, depth, infos_out, send_frame, send_info, processed, waits, waiting = camera
    for t in (T0, T0 + STEP):
        send_info(t)
        send_frame(t)
    assert processed(2).get("incomplete:no_camera_info", 0) == 0
    assert not cam.info_waited_in_vain
    send_frame(T0 + 25 * STEP)            # 2.4 s later: no camera_info since
    assert processed(3)["incomplete:no_camera_info"] == 1
    wait_for(lambda: any("[no_camera_info]" in m.msg for m in log), what="the log line")
    line = next(m.msg for m in log if "[no_camera_info]" in m.msg)
    assert "is 2400 ms older than the image" in line, line
    assert "another clock" not in line and "stopped" in line and "camera_info.policy:=latest" in line, line


@pytest.mark.parametrize("durability, info_at", [("volatile", T0), ("transient_local", T0 - 60 * 10**9),
                                                  ("transient_local", T0 - 2 * STEP)])
def test_a_camera_info_sent_once_before_the_images_is_said_to_be_so_not_of_another_clock(harness, durability,
                                                                                          info_at):
    """camera_info published once, before the images: a bag that holds it only at its start (volatile), or a
    latched driver's (README: qos.camera_info_durability:=transient_local), stamped when the driver started, a
    minute before. Under camera_info.policy nearest (the default) no later frame gets it, and the log said
    'camera_info stamped by another clock than the images (a driver stamping it with its own time ...)': a camera_info
    that came before any image was never judged against the images' stamps, and a latched one's age was taken for
    another clock; README's way for a latched camera_info did not say that it needs camera_info.policy:=latest. Now
    the bag's is said to have stopped coming (judged against the first image's stamp) and the latched one to be
    published once, with camera_info.policy:=latest to do (also when it is less than 1 s older than the frame, where
    the reason said to raise camera_info.tolerance, which only puts off the frame that it gives none)."""
    node = harness.start_node(**{"depth.scale": 1.0, "diagnostics.period": 60.0,
                                 "qos.camera_info_durability": durability})
    log = harness.collector(Log, "/rosout")
    got, (pub,) = harness.connect(node, {"depth": Image, "depth/camera_info": CameraInfo}, {"image": Image})
    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    info_pub = harness.probe.create_publisher(CameraInfo, "camera_info", latched)
    wait_for(lambda: info_pub.get_subscription_count() > 0, what="the camera_info subscription")
    cam = node.cameras[0]
    info_pub.publish(make_info(make_image(info_at)))
    wait_for(lambda: len(cam.infos) == 1, what="the camera_info stored")
    frames = [T0, T0 + 15 * STEP]   # the bag's first frame (its camera_info's stamp) and one 1.5 s on
    for i, t in enumerate(frames):
        pub.publish(make_image(t))
        wait_for(lambda: node.counts()[""].get("processed", 0) == i + 1, what=f"frame {i + 1} processed")
    counts = node.counts()[""]
    assert counts["incomplete:no_camera_info"] == (1 if durability == "volatile" else 2), counts
    wait_for(lambda: any("[no_camera_info]" in m.msg for m in log), what="the log line")
    line = next(m.msg for m in log if "[no_camera_info]" in m.msg)   # (the first frame without: one a 5 s)
    assert "another clock" not in line, line
    if durability == "volatile":   # (the second frame, 1.5 s after the camera_info)
        assert ("the closest of the 1 last received is 1500 ms older than the image, and it came stamped as the images "
                "then were: camera_info has stopped coming") in line, line
    else:   # (the first frame, a minute or 200 ms after the driver latched it; not 'set a camera_info.tolerance')
        assert "camera_info.tolerance" not in line, line
        assert (f"the closest of the 1 last received is {(T0 - info_at) // 10**6} ms older than the image: a latched "
                "camera_info (qos.camera_info_durability is transient_local) is published once, and "
                "camera_info.policy=nearest gives it to no frame of a later stamp: set camera_info.policy:=latest"
                ) in line, line


def test_a_frame_whose_forward_pass_outlasts_30_camera_infos_is_matched_with_its_own(camera):
    """A 30 Hz camera and DPT-Hybrid on a laptop's CPU (2 s a frame): a frame is matched with its camera_info after its
    forward pass, and the node kept the last 30 camera_infos only (1 s), so the frame's own was gone by then:
    '[no_camera_info] ... the closest of the 30 last received is 1199 ms newer than the image' and no
    depth/camera_info or points for almost every frame. The camera_infos a frame waiting or in the worker may need
    are now kept. The forward pass is held (a pre-hook on the real model) while 40 newer camera_infos come, so
    nothing here depends on timing."""
    import threading

    node, cam, log, depth, infos_out, send_frame, send_info, processed, waits, waiting = camera
    gate, entered = threading.Event(), threading.Event()

    def hold(module, args):
        entered.set()
        assert gate.wait(30)

    hook = node.models.depth.model.register_forward_pre_hook(hold)
    try:
        send_info(T0)
        send_frame(T0)
        assert entered.wait(20), "the frame's forward pass did not start"
        for k in range(1, 41):   # 30 Hz for 1.3 s meanwhile (each waited for until the node holds it)
            send_info(T0 + k * 33_333_333)
        assert cam.infos[0][0] == T0 and len(cam.infos) == 41, [t for t, _ in cam.infos]
    finally:
        gate.set()
        hook.remove()
    c = processed(1)
    wait_for(lambda: len(infos_out) == 1, what="the frame's depth/camera_info")
    assert conversions.stamp_ns(infos_out[0].header) == T0 and "incomplete:no_camera_info" not in c, c
    # no frame left to match: the next camera_info trims the buffer to the last 30 (once the worker has let go of the
    # frame: it counts and publishes it before it does, and a camera_info in between still keeps the frame's own)
    wait_for(lambda: worker_done(node), what="the worker done with the frame")
    send_info(T0 + 41 * 33_333_333)
    assert [t for t, _ in cam.infos] == [T0 + k * 33_333_333 for k in range(12, 42)]


@pytest.mark.parametrize("case, policy, frame_at, infos_at, kept", [
    # camera_info stamped by another clock, 5 s newer than the images: no frame can be given one (old: 40 kept)
    ("another clock", "nearest", T0, [T0 + 5 * 10**9 + k * 33_333_333 for k in range(40)], 30),
    # images stamped 0 (a driver that leaves the stamp unset), camera_info stamped by its clock (old: 40)
    ("images stamped 0", "nearest", 0, [T0 + k * 33_333_333 for k in range(40)], 30),
    # latest gives every frame the last one (old: 41, the frame's own and all after it)
    ("latest", "latest", T0, [T0 + k * 33_333_333 for k in range(41)], 30),
    # one older than the frame's own arrives after it (out of stamp order): the frame's own was pushed out (old: 41,
    # and under exact the frame got no camera_info); now it is kept, and the ones after it
    ("out of order", "exact", T0, [T0, T0 - 10**7] + [T0 + 10**8 + k * 33_333_333 for k in range(40)], 42),
])
def test_the_camera_infos_kept_for_a_frame_in_flight_are_those_it_can_be_given(harness, camera, case, policy,
                                                                                frame_at, infos_at, kept):
    """Beyond the last 30, camera_infos are kept for a frame waiting or in its forward pass (a model slower than 30
    of their periods) only from the oldest one the frame can be given on (within camera_info.tolerance of its stamp;
    exact: its stamp), none under camera_info.policy latest: camera_info of another clock or images stamped 0 kept
    2048 (3 MB a camera, 0.6 ms a frame's match) for as long as frames came. The frame's forward pass is held while
    they come, so nothing here depends on timing."""
    from dpt_ros.ros.testing import gate_engine, set_params

    node, cam, log, depth, infos_out, send_frame, send_info, processed, waits, waiting = camera
    if policy != "nearest":
        assert all(r.successful for r in set_params(harness, node, **{"camera_info.policy": policy}))
    gate, entered, _ = gate_engine(node.models.depth)
    try:
        first = 1 if case == "out of order" else 0   # (the frame's own, before it)
        for t in infos_at[:first]:
            send_info(t)
        send_frame(frame_at)
        assert entered.wait(20), "the frame's forward pass did not start"
        for t in infos_at[first:]:
            send_info(t)
        assert len(cam.infos) == kept, (case, len(cam.infos))
        assert [t for t, _ in cam.infos][-30:] == infos_at[-30:]
        if case == "out of order":
            assert cam.infos[0][0] == T0, [t - T0 for t, _ in cam.infos][:3]
    finally:
        gate.set()
    counts = processed(1)
    if case == "out of order":   # its own camera_info
        wait_for(lambda: len(infos_out) == 1, what="the frame's depth/camera_info")
        assert "incomplete:no_camera_info" not in counts, counts
