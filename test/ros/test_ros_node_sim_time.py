"""Replaying recorded data, as users first try the node: `ros2 bag play my.bag --clock` with `use_sim_time:=true`
(the node's clock is /clock's, which starts at 0, stops when the bag is paused and jumps back at each --loop), here a
/clock publisher and frames stamped by that clock."""
import math
import time

import pytest
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rcl_interfaces.msg import Log
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, Image, PointCloud2

from dpt_ros.ros import conversions, health
from dpt_ros.ros import node as node_module
from dpt_ros.ros.testing import gate_engine, make_image, make_info, qos, set_params, wait_for, watch_waits, worker_done

DOMAIN = 85

T0 = 1_764_900_000 * 10**9   # the bag's start (December 2025)


def _replay(harness, sim: bool = True, **overrides):
    """A use_sim_time node with depth and camera_info, a /clock publisher and the camera's publishers, discovered
    (``sim`` false: a node on the wall clock, as with a bag played without --clock; then no /clock)."""
    node = harness.start_node(**{"use_sim_time": sim, "depth.scale": 1.0, "diagnostics.period": 60.0, **overrides})
    log = harness.collector(Log, "/rosout")
    out = harness.collector(Image, "depth")
    clock = harness.probe.create_publisher(Clock, "/clock", 10)
    image = harness.probe.create_publisher(Image, "image", qos())
    info = harness.probe.create_publisher(CameraInfo, "camera_info", qos())
    wait_for(lambda: min(p.get_subscription_count() for p in ((clock, image, info) if sim else (image, info))) > 0
             and node.cameras[0].pubs["depth"].get_subscription_count() > 0, what="discovery")

    def tick(t: int) -> None:   # the player's /clock at t, waited for until the node's clock reads it
        msg = Clock()
        msg.clock.sec, msg.clock.nanosec = divmod(t, 10**9)
        clock.publish(msg)
        wait_for(lambda: node.get_clock().now().nanoseconds == t, what=f"the node's clock at {t}")

    def frame(t: int, late: bool = False) -> None:
        """A frame and its camera_info stamped t (``late``: the info 0.3 s after the image, the worker already
        waiting for it); waited for until its depth is out and the
        worker is done with it (its age, the warnings of it)."""
        n = len(out)
        img = make_image(t)
        if not late:
            info.publish(make_info(img))
        image.publish(img)
        if late:
            time.sleep(0.3)
            info.publish(make_info(img))
        wait_for(lambda: len(out) > n and worker_done(node), what=f"the depth of the frame stamped {t}")

    frame.info, frame.image = info, image   # (the publishers, for a camera_info alone or a frame not waited for)
    return node, log, out, tick, frame


def _ages(node) -> tuple[float, float]:
    values = {kv.key: kv.value for kv in node.diagnostics().status[0].values}
    return float(values["age_p50_ms"]), float(values["age_p99_ms"])


def _warnings(log, needle: str) -> list[str]:
    return [m.msg for m in log if m.name.endswith("dpt_node") and needle in m.msg]


def test_frames_before_the_first_clock_message_are_said_to_be_so_not_days_ahead_of_the_clock(harness, monkeypatch):
    """Before /clock's first message a use_sim_time node's clock is at 0: a bag's frames (or any, where the bag is
    played without --clock) were warned as '1764900000000 ms ahead of this node's clock (clocks not synchronised, ...)',
    and that once-per-camera warning was then spent, so a real offset after /clock began went unsaid. Now, while no
    /clock comes, the check of it (_check_clock, here called as its wall-clock timer calls it) says so once, with the
    frames that came; a frame ahead of the running clock is still warned as ahead, of /clock, which a bag player
    publishes in steps (40 Hz: 25 ms x --rate of the bag's time), not of unsynchronised clocks."""
    monkeypatch.setattr(node_module, "_CLOCK_CHECK_S", 1e6)   # (its timer off: called below)
    node, log, out, tick, frame = _replay(harness)
    assert node.get_clock().now().nanoseconds == 0
    frame(T0)
    frame(T0 + 10**8)
    assert [conversions.stamp_ns(m.header) for m in out] == [T0, T0 + 10**8]   # headers unchanged
    node._check_clock()
    needle = "this node's clock still stands at 0"
    wait_for(lambda: _warnings(log, needle), what="the no-/clock warning")
    assert len(_warnings(log, needle)) == 1 and "--clock" in _warnings(log, needle)[0]
    assert ("2 frames came meanwhile (/image), processed all the same, left out of /diagnostics' age figures. Play "
            "the bag with --clock") in _warnings(log, needle)[0], _warnings(log, needle)
    assert _warnings(log, "ahead of this node's clock") == []
    assert all(math.isnan(a) for a in _ages(node))   # no age to tell at clock 0
    tick(T0 + 2 * 10**8)
    frame(T0 + 10**8)    # 100 ms before the clock
    frame(T0 + 12 * 10**8)   # 1 s ahead of it: a real offset
    wait_for(lambda: _warnings(log, "ahead of this node's clock"), what="the ahead warning")
    assert len(_warnings(log, "ahead of this node's clock")) == 1
    ahead = _warnings(log, "ahead of this node's clock")[0]
    # (not "clocks not synchronised, or use_sim_time differs": both run on /clock, which advances in steps)
    assert "frames stamped 1000 ms ahead of this node's clock, which is /clock's (use_sim_time)" in ahead, ahead
    assert "not synchronised" not in ahead
    assert _ages(node) == (100.0, 100.0)   # in the clock's time, which stands still between /clock messages
    assert len(_warnings(log, needle)) == 1


@pytest.mark.parametrize("clock_publisher", ["none", "silent", "paused"])
def test_a_node_on_sim_time_that_gets_no_clock_says_so_though_no_frame_comes(harness, monkeypatch, clock_publisher):
    """use_sim_time:=true and no /clock message (a bag played without --clock, one not started yet, or none at all):
    the node's clock stays at 0, and /diagnostics, a timer on that clock, never came, nor the 'no image yet' warning
    it logs, so a node with no frames (a wrong image topic) said nothing at all, where on the wall clock it says 'no
    image yet' after 5 s. Now, _CLOCK_CHECK_S (5 s; 0.5 here) of wall time after start-up, one warning says that the
    clock still stands at 0, whether anything publishes /clock, and what to do. A simulator paused at its start
    publishes /clock at 0 (Gazebo's clock publisher sends its sim time, 0 until it runs): the warning said 'no /clock
    message has come yet' and to play a bag with --clock; it now says that no time other than 0 has come, as from a
    simulator paused at its start, and to start the simulation."""
    monkeypatch.setattr(node_module, "_CLOCK_CHECK_S", 0.5, raising=False)   # (5 s in the node)
    log: list = []   # (transient local: the warning may come before this subscription is matched with the node)
    harness.probe.create_subscription(Log, "/rosout", log.append, QoSProfile(
        depth=1000, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL))
    if clock_publisher != "none":   # a player that publishes no message (yet), or a paused simulator: its time, 0
        clock = harness.probe.create_publisher(Clock, "/clock", 10)
        if clock_publisher == "paused":
            harness.probe.create_timer(0.05, lambda: clock.publish(Clock()))
    node = harness.start_node(**{"use_sim_time": True})
    needle = "this node's clock still stands at 0"
    wait_for(lambda: _warnings(log, needle), what="the no-/clock warning")
    text = _warnings(log, needle)[0]
    found = ("nothing publishes /clock: no /clock message has come" if clock_publisher == "none" else
             "1 publisher of /clock found, none has sent a time other than 0 here yet, as a bag player not yet playing "
             "does, or a simulator paused at its start")
    assert text.startswith(f"use_sim_time is true and this node's clock still stands at 0, 0.5 s after start-up "
                           f"({found}): /diagnostics, published on that clock, waits for it"), text
    assert "ros2 bag play my.bag --clock" in text and "use_sim_time:=false" in text
    assert "start the simulation (a paused simulator: its play button, or gz sim -r)" in text, text
    assert node.get_clock().now().nanoseconds == 0 and node.counts()[""].get("received", 0) == 0
    node._check_clock()   # said once
    assert len(_warnings(log, needle)) == 1


def test_use_sim_time_set_true_at_runtime_without_clock_is_said_counted_from_the_switch_each_time(harness,
                                                                                                    monkeypatch):
    """`ros2 param set /dpt_node use_sim_time true` on a running node (rclpy's own parameter, through the real
    SetParameters service), no /clock: the check, a wall-clock timer running since start-up, said "0.5 s after
    start-up" at its next tick, however long the node had run and however short the switch's wait (a bag started right
    after the switch could get the warning); after turning it off and on again, still without /clock, nothing was said
    (once per node). Now the wait counts from the switch, is said so, and each switch on gets its own warning, the
    frames it names counted from that switch (the one frame of the first is not the second's)."""
    monkeypatch.setattr(node_module, "_CLOCK_CHECK_S", 0.5, raising=False)   # (5 s in the node)
    log: list = []   # (transient local: the warning may come before this subscription is matched with the node)
    harness.probe.create_subscription(Log, "/rosout", log.append, QoSProfile(
        depth=1000, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL))
    node = harness.start_node(**{"depth.scale": 1.0})
    out = harness.collector(Image, "depth")
    image = harness.probe.create_publisher(Image, "image", qos())
    wait_for(lambda: image.get_subscription_count() > 0 and node.cameras[0].pubs["depth"].get_subscription_count() > 0,
             what="discovery")
    node._check_clock()   # (as its timer calls it) on the wall clock: nothing to say
    needle = "this node's clock still stands at 0"
    for n in (1, 2):
        assert [r.successful for r in set_params(harness, node, use_sim_time=True)] == [True]
        assert node.get_clock().now().nanoseconds == 0
        wait_for(lambda: len(_warnings(log, needle)) == n, what="the no-/clock warning")
        assert _warnings(log, needle)[-1].startswith(
            "use_sim_time is true and this node's clock still stands at 0, 0.5 s after use_sim_time was set true "
            "(nothing publishes /clock: no /clock message has come): /diagnostics, published on that clock, waits for "
            "it (and with it the check that images come); no frame has come either. "), _warnings(log, needle)
        image.publish(make_image(T0))   # a frame while the clock stands at 0, after the warning: not the next one's
        # (the worker counts it as come before /clock after it published its depth: done before the switch)
        wait_for(lambda: len(out) == n and worker_done(node), what="its depth")
        assert [r.successful for r in set_params(harness, node, use_sim_time=False)] == [True]
    node._check_clock()   # off: nothing more
    assert len(_warnings(log, needle)) == 2


def test_use_sim_time_set_true_again_after_clock_says_the_clock_resumes_at_the_last_clock_time(harness, monkeypatch):
    """/clock had come (a bag played), then `ros2 param set /dpt_node use_sim_time false` and later `true` again:
    rclpy's clock keeps the last /clock time through the switch and resumes from it, so the node's clock (the stamps it
    gives, /diagnostics' timer) went back to that time and stood there until /clock came again, silently: the check
    of /clock only looks at a clock standing at 0, /diagnostics stayed OK. Now the switch says so at once (WARN, with
    the time), the check says, _CLOCK_CHECK_S later, that no /clock came since and publishes one report, whose model
    status is WARN with a `clock` key; the next /clock clears it."""
    monkeypatch.setattr(node_module, "_CLOCK_CHECK_S", 0.5, raising=False)   # (5 s in the node)
    node, log, out, tick, frame = _replay(harness)
    diags = harness.collector(DiagnosticArray, "/diagnostics")
    wait_for(lambda: node._diag_pub.get_subscription_count() > 0, what="the /diagnostics subscription")
    tick(T0)
    frame(T0)
    assert [r.successful for r in set_params(harness, node, use_sim_time=False)] == [True]
    assert node.get_clock().now().nanoseconds > T0 + 3600 * 10**9   # the wall clock (December 2026 on)
    assert [r.successful for r in set_params(harness, node, use_sim_time=True)] == [True]
    assert node.get_clock().now().nanoseconds == T0   # rclpy: resumed at the last /clock time

    resumed = "use_sim_time was set true again: this node's clock resumes from the last /clock time it received"
    wait_for(lambda: _warnings(log, resumed), what="the resume warning")
    assert _warnings(log, resumed) == [
        f"{resumed}, 1764900000.000 s (before use_sim_time was set false), not from the wall time it ran on "
        "meanwhile, and stands there until /clock comes again: the stamps it gives (/diagnostics, label_info) go "
        "back to that time and /diagnostics, published on that clock, waits for /clock; checked again 0.5 s from now"]
    model = node.diagnostics().status[0]
    values = {kv.key: kv.value for kv in model.values}
    clock_state = ("waiting for /clock: use_sim_time was set true again, the clock resumed from the last /clock time "
                   "received, 1764900000.000 s, and no /clock has come since")
    assert (model.level, model.message, values.get("clock")) == (DiagnosticStatus.WARN, clock_state, clock_state)

    standing = "this node's clock still stands at the last /clock time it received before use_sim_time was set false"
    wait_for(lambda: _warnings(log, standing), what="the check's warning")
    assert _warnings(log, standing) == [
        f"use_sim_time is true and {standing}, 1764900000.000 s, 0.5 s after use_sim_time was set true again (1 "
        "publisher of /clock found, none has moved the clock since: a bag player paused or at its end, or a simulator "
        "paused): no /clock message has come since, so /diagnostics, published on that clock, waits for it (this "
        "report aside) and the stamps it gives stay at that time. Play the bag with --clock, resume the simulation, "
        "or set use_sim_time:=false (a live camera)"]

    def said() -> list:   # the reports that carry the state
        return [d for d in diags if d.status[0].message == clock_state]
    wait_for(said, what="the check's /diagnostics report")
    assert [(conversions.stamp_ns(d.header), d.status[0].level) for d in said()] == [(T0, DiagnosticStatus.WARN)]
    node._check_clock()   # (as its timer calls it) said once per wait
    assert len(_warnings(log, standing)) == 1

    tick(T0 + 10**9)   # /clock again: the state clears
    model = node.diagnostics().status[0]
    assert "clock" not in {kv.key for kv in model.values} and model.message != clock_state, model
    frame(T0 + 10**9)
    assert [conversions.stamp_ns(m.header) for m in out] == [T0, T0 + 10**9]


def test_a_bags_first_frames_before_its_first_clock_message_are_not_warned_of(harness, monkeypatch):
    """ros2 bag play --clock publishes its first message(s) before its first /clock (its clock timer starts with the
    playback, the first /clock 25 ms later; so again after each --loop): every bag played right had the warning
    'frames arrive while this node's clock is at 0: use_sim_time is true and no /clock message has come yet ...' at
    its start. Frames before a /clock that then comes are now left out of the ages without a word; the check of /clock
    (_check_clock, called here as its wall-clock timer calls it) has nothing to say."""
    monkeypatch.setattr(node_module, "_CLOCK_CHECK_S", 1e6)   # (its timer off: called below)
    node, log, out, tick, frame = _replay(harness)
    frame(T0)                             # the bag's first frame, before its first /clock
    tick(T0 + 25 * 10**6)                 # /clock, 25 ms of the bag later
    tick(T0 + 10**8)
    frame(T0 + 10**8)
    node._check_clock()
    tick(T0 + 2 * 10**8)
    frame(T0 + 2 * 10**8)                 # (anything said before this frame's depth is in the log by now)
    assert [conversions.stamp_ns(m.header) for m in out] == [T0, T0 + 10**8, T0 + 2 * 10**8]
    assert _warnings(log, "clock is at 0") == _warnings(log, "still stands at 0") == []
    assert "no_clock" not in node._warned
    assert _warnings(log, "ahead of this node's clock") == []


def test_a_frame_less_than_a_millisecond_ahead_of_the_clock_is_said_to_be_so_not_0_ms_ahead(harness):
    """The warning said '0 ms ahead' of a frame stamped 0.25 ms after /clock's time (the figure rounded to whole
    milliseconds): it says how far ahead, to a hundredth of a millisecond below 10 ms, in ns below that."""
    node, log, out, tick, frame = _replay(harness)
    tick(T0)
    frame(T0 + 250_000)
    wait_for(lambda: _warnings(log, "ahead of this node's clock"), what="the ahead warning")
    ahead = _warnings(log, "ahead of this node's clock")[0]
    assert "frames stamped 0.25 ms ahead of this node's clock" in ahead, ahead
    assert node_module._ms_text(7) == "7 ns" and node_module._ms_text(3_456_000) == "3.46 ms"
    assert node_module._ms_text(1_000_000_000) == "1000 ms"


def test_a_loop_jumping_the_clock_back_keeps_stamps_ages_and_camera_info_matching(harness):
    """`--loop`: at the bag's end the clock and the stamps start again from its beginning. Outputs keep the input
    stamps, ages are of the clock as it is now, and camera_info.policy exact matches by stamp on both passes."""
    node, log, out, tick, frame = _replay(harness, **{"camera_info.policy": "exact"})
    stamps = []
    for _ in range(2):   # two passes of a three-frame bag
        for i in range(3):
            t = T0 + i * 10**8
            tick(t + 5 * 10**7)
            frame(t)
            stamps.append(t)
    assert [conversions.stamp_ns(m.header) for m in out] == stamps
    assert _ages(node) == (50.0, 50.0)
    counts = node.counts()[""]
    assert counts["processed"] == 6 and counts["out:depth"] == 6, counts
    assert not [k for k in counts if "camera_info" in k], counts
    assert _warnings(log, "ahead of this node's clock") == []
    assert _warnings(log, "before they arrived") == []   # (on /clock's time: the bag's stamps are not old)


def test_a_bag_played_without_sim_time_is_said_once_to_be_old_not_left_unexplained(harness):
    """The same bag without --clock / use_sim_time: its frames are a year old by the node's wall clock, and
    /diagnostics' ages said so (age_p50_ms of some 3e10) without a word of why. Now a warning says once per camera how
    old the frames were when they arrived and how to replay a bag on its own time; the ages stay what they are."""
    node = harness.start_node(**{"depth.scale": 1.0, "diagnostics.period": 60.0})
    log = harness.collector(Log, "/rosout")
    out = harness.collector(Image, "inverse_depth")
    image = harness.probe.create_publisher(Image, "image", qos())
    wait_for(lambda: image.get_subscription_count() > 0 and
             node.cameras[0].pubs["inverse_depth"].get_subscription_count() > 0, what="discovery")
    for i in range(3):
        image.publish(make_image(T0 + i * 10**8))
        wait_for(lambda: len(out) == i + 1, what=f"frame {i + 1}")
    assert [conversions.stamp_ns(m.header) for m in out] == [T0, T0 + 10**8, T0 + 2 * 10**8]
    old_h = (harness.probe.get_clock().now().nanoseconds - T0) / 3.6e12
    said = "before they arrived"
    wait_for(lambda: _warnings(log, said), what="the old-stamp warning")
    assert len(_warnings(log, said)) == 1, _warnings(log, said)
    text = _warnings(log, said)[0]
    assert text.startswith("/image: frames stamped ") and "ros2 bag play my.bag --clock" in text
    assert abs(float(text.split(" h)")[0].rsplit("(", 1)[1]) - old_h) < 0.2, (text, old_h)
    assert _ages(node)[0] > 1000 * 3600 * (old_h - 0.2)   # the ages are as old as the frames


@pytest.mark.parametrize("policy, sim", [("exact", True), ("nearest", False)])
def test_the_first_frames_after_a_loop_wait_for_their_late_camera_info_as_the_first_pass_did(harness, monkeypatch,
                                                                                              policy, sim):
    """`--loop` of a bag longer than the node's camera_info buffer (its last 30): at the loop the buffer holds the end
    of the last pass, seconds after the new frames. The wait for a camera_info not yet as new as the frame was skipped
    for the first frame after the loop (the newest held was newer than it), which then went without depth/camera_info
    and points ('the closest is 2000 ms away') when its camera_info came after its image. camera_info stamped more than
    1 s after the frame is now taken to be of before the stamps went back: the frame waits for its own as on the
    first pass. So too without --clock and use_sim_time (or a camera restarted on another clock): it goes by the
    stamps alone. The wait (50 ms in the node) is widened to 2 s and the infos sent 0.3 s late, so that the test does
    not depend on the machine's load."""
    monkeypatch.setattr(node_module, "_INFO_WAIT_S", 2.0)
    node, log, out, tick, frame = _replay(harness, sim, **{"camera_info.policy": policy})
    infos = harness.collector(CameraInfo, "depth/camera_info")
    wait_for(lambda: node.cameras[0].pubs["depth/camera_info"].get_subscription_count() > 0, what="discovery")
    start = [T0, T0 + 10**8]   # the bag's first two frames
    tail = [T0 + 2 * 10**9 + k * 10**8 for k in range(30)]   # the camera_info of its frames from 2 s to 4.9 s
    for _ in range(2):   # two passes
        if sim:
            tick(T0)
        for t in start:
            frame(t, late=True)
        for t in tail:   # (their images left out: only the buffer of camera_info matters here)
            frame.info.publish(make_info(make_image(t)))
            # (one at a time: a burst of 30 would overrun the publisher's history of 10)
            wait_for(lambda: node.cameras[0].infos[-1][0] == t, what="the camera_info stored")
        if sim:
            tick(tail[-1])
    wait_for(lambda: node.counts()[""]["processed"] == 4, what="the four frames counted")
    counts = node.counts()[""]
    wait_for(lambda: len(infos) == counts["out:depth/camera_info"], what="the depth/camera_info published")
    assert [conversions.stamp_ns(m.header) for m in infos] == start * 2
    assert counts["processed"] == 4 and counts["out:depth/camera_info"] == 4, counts
    assert not [k for k in counts if "camera_info" in k and not k.startswith("out:")], counts


def test_the_first_frame_of_a_loops_pass_before_its_clock_jump_is_left_out_of_the_ages(harness):
    """`--loop`: ros2 bag play publishes the next pass's first message right after it jumps its own clock back, and
    the /clock of it 25 ms later (its clock timer restarts then). A frame that the node publishes within those 25 ms
    (a GPU's) is measured against the last pass's clock: its age was the whole bag's length, 5 s here, and
    /diagnostics' age_p99_ms said so for 30 s after each loop. Such a frame (its stamp more than 1 s back from its
    camera's last and that far behind the clock) is left out of the ages while the clock has not gone back."""
    node, log, out, tick, frame = _replay(harness)
    last = T0 + 5 * 10**9
    tick(T0 + 5 * 10**7)
    frame(T0)
    tick(last + 5 * 10**7)
    frame(last)                           # the pass's last frame
    frame(T0)                             # the next pass's first, published before the player's /clock of it
    tick(T0 + 15 * 10**7)
    frame(T0 + 10**8)
    assert [conversions.stamp_ns(m.header) for m in out] == [T0, last, T0, T0 + 10**8]
    assert node.counts()[""]["processed"] == 4
    assert _ages(node) == (50.0, 50.0)    # three frames 50 ms old; not 5050 ms for the loop's first
    assert _warnings(log, "ahead of this node's clock") == []


def test_the_first_frame_of_a_short_loops_pass_before_its_clock_jump_is_left_out_of_the_ages(harness):
    """As above, a bag shorter than 1 s (`--loop` of a 0.4 s bag): the next pass's first frame goes back less than
    the 1 s that told a loop from a camera's jitter, so one that the node published before the player's /clock of it
    was measured against the last pass's clock, its age the bag's length (450 ms in age_p99_ms for three frames of
    50). A frame stamped at or before the first of its camera's run of rising stamps (the pass's start) that the
    clock is past is taken for a loop's too."""
    node, log, out, tick, frame = _replay(harness)
    last = T0 + 4 * 10**8
    tick(T0 + 5 * 10**7)
    frame(T0)
    tick(T0 + 25 * 10**7)
    frame(T0 + 2 * 10**8)
    tick(last + 5 * 10**7)
    frame(last)                           # the pass's last frame
    frame(T0)                             # the next pass's first, published before the player's /clock of it
    tick(T0 + 15 * 10**7)
    frame(T0 + 10**8)
    assert [conversions.stamp_ns(m.header) for m in out] == [T0, T0 + 2 * 10**8, last, T0, T0 + 10**8]
    assert _ages(node) == (50.0, 50.0)    # four frames 50 ms old; not 450 ms for the loop's first
    assert _warnings(log, "ahead of this node's clock") == []


def test_the_last_frame_in_the_node_when_a_loop_jumps_the_clock_back_is_not_warned_as_ahead(harness):
    """`--loop`: the player jumps /clock back to the bag's start right after the pass's last frame, while the node
    still processes it (on a CPU for a few hundred ms). That frame, 5 s ahead of the clock as it then was, was warned
    as 'frames stamped 4950 ms ahead of this node's clock ... a bag player publishes it in steps', and the warning, once
    per camera, was spent: a real offset later went unsaid. A frame during whose stay in the node the clock went back
    is left out of the ages without a word; a real offset is still warned."""
    node, log, out, tick, frame = _replay(harness)
    gate, entered, _ = gate_engine(node.models.depth)
    gate.set()
    tick(T0 + 5 * 10**7)
    frame(T0)
    last = T0 + 5 * 10**9                 # the pass's last frame
    tick(last + 5 * 10**7)
    gate.clear()
    entered.clear()
    frame.info.publish(make_info(make_image(last)))
    frame.image.publish(make_image(last))
    assert entered.wait(20), "the last frame did not reach the model"
    tick(T0 + 5 * 10**7)                  # the loop, while that frame is in the model
    gate.set()
    wait_for(lambda: len(out) == 2, what="the last frame's depth")
    frame(T0)                             # the next pass
    assert [conversions.stamp_ns(m.header) for m in out] == [T0, last, T0]
    assert _warnings(log, "ahead of this node's clock") == []
    assert _ages(node) == (50.0, 50.0)    # the two frames of the bag's start, 50 ms old
    tick(T0 + 2 * 10**8)
    frame(T0 + 12 * 10**8)                # 1 s ahead of the clock: a real offset
    wait_for(lambda: _warnings(log, "ahead of this node's clock"), what="the ahead warning")
    ahead = _warnings(log, "ahead of this node's clock")
    assert len(ahead) == 1 and "frames stamped 1000 ms ahead" in ahead[0], ahead


def test_diagnostics_go_on_in_clocks_time_after_a_loop_jumps_it_back(harness):
    """/diagnostics' timer runs on the node's clock, /clock's with use_sim_time: at each `--loop` that clock jumps
    back by the bag's length. rcl restarts a timer whose clock went back past its last call (a period from the jump),
    so the reports go on after the loop, stamped by the clock, rather than stopping until the clock is past the last
    pass's end. (A guard, no fix: a timer that fires once the clock is a period past its last call, without rcl's
    handling of a jump back, stalls here, at the report a second after the loop.)"""
    node, log, out, tick, frame = _replay(harness, **{"diagnostics.period": 1.0})
    diags = harness.collector(DiagnosticArray, "/diagnostics")
    wait_for(lambda: node._diag_pub.get_subscription_count() > 0, what="the /diagnostics subscription")

    def report_at(t: int) -> None:
        n = len(diags)
        tick(t)
        wait_for(lambda: any(conversions.stamp_ns(d.header) == t for d in diags[n:]), what=f"a report stamped {t}")

    for k in range(3):                    # a 2 s bag's first pass: one report a second of its time
        report_at(T0 + k * 10**9)
    tick(T0)                              # the loop: the clock back at the bag's start
    report_at(T0 + 10**9)                 # a period later, not only once past the last pass's end
    report_at(T0 + 2 * 10**9)


@pytest.mark.parametrize("name", ["max_rate", "points.max_rate"])
def test_rates_count_seconds_of_the_clock_a_bag_played_at_any_rate(harness, name):
    """With use_sim_time, max_rate (points.max_rate) count seconds of the node's clock, /clock's, as topic_tools
    throttle does: a bag played fast (--rate 10) or slowly (--rate 0.1) gives as many frames (clouds) per second of
    the bag as played at 1x, and a --loop's jump back starts afresh. They counted wall seconds: frames a bag-second
    apart but a few milliseconds apart here were skipped, and one a tenth of a bag-second after the last but more
    than a wall second later went through."""
    node, log, out, tick, frame = _replay(harness, **{name: 1.0, "camera_info.policy": "exact"})
    points = harness.collector(PointCloud2, "points")
    wait_for(lambda: node.cameras[0].pubs["points"].get_subscription_count() > 0, what="the points subscription")
    limited, key = (out, "throttled") if name == "max_rate" else (points, "throttled:points")
    sent = 0

    def through(t: int, wall_s: float = 0.0) -> bool:
        """The clock at t (``wall_s`` wall seconds later: a slow bag), a frame stamped t: whether it went through."""
        nonlocal sent
        tick(t)
        time.sleep(wall_s)
        before, sent = len(limited), sent + 1
        img = make_image(t)
        frame.info.publish(make_info(img))
        frame.image.publish(img)

        def settled() -> bool:   # every frame processed or throttled, each processed one's outputs (a cloud or
            c = node.counts()[""]   # throttled.points) out
            processed = c.get("processed", 0)
            return (processed + c.get("throttled", 0) == sent and len(out) == processed and
                    len(points) + c.get("throttled:points", 0) == processed)
        wait_for(settled, timeout=30, what=f"the frame stamped {t} settled")
        return len(limited) > before

    second = 10**9
    assert through(T0)
    assert not through(T0 + second // 5)         # 0.2 s of the bag after the last: within half a period
    assert through(T0 + second)                  # a bag-second after it, whatever the wall clock says
    assert through(T0 + 2 * second)
    assert not through(T0 + 21 * second // 10, wall_s=1.2)   # a slow bag: 0.1 s of the bag, 1.2 s here
    assert through(T0)                           # --loop: the clock back at the bag's start
    assert not through(T0 + 3 * second // 10)
    assert node.counts()[""][key] == 3 and len(limited) == 4


def test_the_first_report_after_a_paused_bag_gives_the_rate_of_its_frames_not_of_the_pause(harness, monkeypatch):
    """A paused ros2 bag play stops /clock (and /diagnostics, a timer on that clock) and its frames: the first report
    after it counted the pause's wall seconds, with no frame in them, in its rates (0.55 Hz for a 5 Hz bag after an
    8 s pause). Now a stretch of _CLOCK_STILL_S (2 s; 0.5 here) or more in which the clock stood still is left out:
    the rates are the frames over the wall seconds of the window in which the clock moved."""
    monkeypatch.setattr(node_module, "_CLOCK_STILL_S", 0.5, raising=False)   # (2 s in the node)
    monkeypatch.setattr(health, "_RATE_WINDOW_S", 1.0)   # (the report before the pause begins the window)
    node, log, out, tick, frame = _replay(harness)
    tick(T0)
    start = time.monotonic()
    node.diagnostics()                     # the report before: the window's start
    for k in range(1, 4):                  # 3 frames while the bag plays
        tick(T0 + k * 10**8)
        frame(T0 + k * 10**8)
    paused = time.monotonic()
    time.sleep(1.5)                        # paused: neither /clock nor frames
    slept = time.monotonic() - paused
    tick(T0 + 4 * 10**8)                   # resumed
    values = {kv.key: kv.value for kv in node.diagnostics().status[1].values}
    played = time.monotonic() - start - slept   # at least the wall seconds the window had the clock moving
    assert node.counts()[""]["received"] == 3 and node.counts()[""]["processed"] == 3
    for key in ("input_rate_hz", "output_rate_hz"):   # (old code: 3 / (played + slept))
        assert float(values[key]) >= 3 / played - 0.01, (key, values[key], 3 / played, 3 / (played + slept))


def test_frames_that_come_while_the_clock_stands_still_keep_its_seconds_in_the_rates(harness, monkeypatch):
    """A clock that stands still while frames still come (a paused ros2 bag play beside a live camera; a simulator
    paused while a camera topic goes on): the stretch was left out of the rates' seconds as a pause with no frame in
    it, but its frames were counted, so the first report after it gave them over the seconds the clock moved (about
    16 Hz here for 7 frames in 2 s). A stretch in which a frame came after _CLOCK_STILL_S of it is kept: 7 frames over
    the window's wall seconds."""
    monkeypatch.setattr(node_module, "_CLOCK_STILL_S", 0.5, raising=False)   # (2 s in the node)
    monkeypatch.setattr(health, "_RATE_WINDOW_S", 1.0)
    node, log, out, tick, frame = _replay(harness)
    tick(T0)
    node.diagnostics()                     # the report before: the window's start
    start = time.monotonic()
    for k in range(1, 4):                  # 3 frames while the clock moves
        tick(T0 + k * 10**8)
        frame(T0 + k * 10**8)
    for k in range(4):                     # 4 more over 1.5 s while it stands still
        time.sleep(0.35)
        frame(T0 + 3 * 10**8 - k)
    tick(T0 + 4 * 10**8)                   # it moves again
    end = time.monotonic()
    values = {kv.key: kv.value for kv in node.diagnostics().status[1].values}
    assert node.counts()[""]["received"] == 7 and node.counts()[""]["processed"] == 7
    for key in ("input_rate_hz", "output_rate_hz"):   # (old code: 7 / (end - start - the still stretch))
        assert float(values[key]) <= 7 / (end - start) + 0.01, (key, values[key], 7 / (end - start))


def test_a_slowly_played_bags_frame_waits_for_its_camera_info_in_the_bags_time(harness, monkeypatch):
    """A frame waits _INFO_WAIT_S (50 ms) of wall time for a camera_info not yet come: a bag played at --rate 0.25
    brings a camera_info recorded 20 ms after its image 80 ms later, which the frame missed. With use_sim_time the
    wait is now stretched by 1 / the play rate measured from /clock against the wall clock, up to 4x. Here the wait
    is widened to 1 s and the clock crawls (4x): the frame whose camera_info has not come waits 4 s for it (old
    code: 1 s), read from the worker's wait (watch_waits) rather than by sending the camera_info a timed while
    later, and gets the one that comes meanwhile."""
    monkeypatch.setattr(node_module, "_INFO_WAIT_S", 1.0)
    node, log, out, tick, frame = _replay(harness, **{"camera_info.policy": "exact"})
    infos = harness.collector(CameraInfo, "depth/camera_info")
    wait_for(lambda: node.cameras[0].pubs["depth/camera_info"].get_subscription_count() > 0, what="discovery")
    timeouts: list = []
    waits, waiting = watch_waits(node, monkeypatch, timeouts)
    tick(T0)
    frame(T0)                              # a camera_info with its image: the camera sends them
    for k in range(1, 4):                  # a microsecond of the bag a few milliseconds apart: a slow play
        tick(T0 + k * 1000)
    n = len(out)
    img = make_image(T0 + 3000)
    frame.image.publish(img)
    wait_for(lambda: waits and waits[-1] == T0 + 3000 and waiting.is_set(), what="the frame waiting for its info")
    wait = dict(timeouts)[T0 + 3000]
    assert 2.0 < wait <= 4.0, timeouts    # 4 s less the moments since its deadline was set (old code: 1 s)
    frame.info.publish(make_info(img))     # its camera_info, while it waits
    wait_for(lambda: len(out) > n, what="the depth of the second frame")
    counts = node.counts()[""]
    wait_for(lambda: len(infos) == node.counts()[""].get("out:depth/camera_info"), what="the depth/camera_info")
    assert [conversions.stamp_ns(m.header) for m in infos] == [T0, T0 + 3000], counts
    assert not [k for k in counts if "camera_info" in k and not k.startswith("out:")], counts
    tick(T0 + 4000)                        # it crawls on
    tick(T0 + 5000)
    assert node._wait_s() == 4.0           # (at most 4x, however slow)
    tick(T0 + 10**9)                       # the bag played at 1x or faster: the wait back at 1x
    tick(T0 + 2 * 10**9)
    wait_for(lambda: node._wait_s() == 1.0, what="the wait back at 1 s")


def test_a_slowly_played_short_loops_jump_back_keeps_the_waits_stretched(harness, monkeypatch):
    """ros2 bag play --loop --rate 0.25 of a bag shorter than 1 s: at each jump back the play-rate measure started
    afresh from the one /clock message of the new pass, which gave no rate, and the waits fell to 1x (50 ms) until the
    next, 25 ms later: a pass's first frames, which come then (the player publishes them before its /clock), missed a
    camera_info 4x would have waited for, once a pass. The stretch is now kept until the new pass gives a rate."""
    monkeypatch.setattr(node_module, "_INFO_WAIT_S", 1.0)
    node, log, out, tick, frame = _replay(harness)
    for k in range(4):                     # a microsecond of the bag a few milliseconds apart: a slow play
        tick(T0 + k * 1000)
    assert node._wait_s() == 4.0
    tick(T0)                               # --loop: back to the bag's start
    assert node._wait_s() == 4.0           # (old code: 1.0)
    tick(T0 + 1000)
    assert node._wait_s() == 4.0


def test_the_waits_are_not_stretched_while_the_clock_stands_still(harness, monkeypatch):
    """A slowly played bag paused (ros2 bag play --rate 0.25, then space) while frames still come (a live camera
    beside it): the waits for their camera_info stayed at the slow play's 4x (200 ms of wall time each, a wait in
    vain holding every camera's frames back that long) for the whole pause, the stretch reset only when the clock
    moved again. A clock that has stood still _CLOCK_STILL_S (2 s; 0.5 here) is no slow play: 1x until it moves."""
    monkeypatch.setattr(node_module, "_INFO_WAIT_S", 1.0)
    monkeypatch.setattr(node_module, "_CLOCK_STILL_S", 0.5, raising=False)
    node, log, out, tick, frame = _replay(harness)
    for k in range(4):                     # a slow play
        tick(T0 + k * 1000)
    assert node._wait_s() == 4.0
    time.sleep(0.6)                        # paused
    assert node._wait_s() == 1.0           # (old code: 4.0)
    tick(T0 + 4000)                        # it plays again: measured afresh
    tick(T0 + 5000)
    assert node._wait_s() == 4.0


def test_before_the_first_clock_message_outputs_carry_the_image_stamps_and_rates_waits_and_reports_run(harness,
                                                                                                        monkeypatch):
    """use_sim_time:=true and nothing on /clock yet (the node's clock at 0): every output of a frame carries the
    image's header (stamp and frame_id), not the clock's 0; max_rate counts wall seconds meanwhile, a camera_info wait
    is the plain 50 ms, /diagnostics' figures are numbers (rates over wall seconds, ages NaN: none to tell at clock 0)
    and a camera gone silent is 'no image for N s' with N its wall seconds. When /clock then jumps from 0 to the
    bag's time, the reports come, stamped by it, max_rate counts its seconds from the next frame, and the wait stays
    50 ms."""
    monkeypatch.setattr(node_module, "_CLOCK_CHECK_S", 1e6)   # (its timer off)
    monkeypatch.setattr(health, "_STALL_S", 0.3)              # (5 s in the node)
    outputs = {"inverse_depth": Image, "inverse_depth/colored": Image, "depth": Image,
               "depth/camera_info": CameraInfo, "points": PointCloud2}
    node = harness.start_node(**{"use_sim_time": True, "depth.scale": 1.0, "diagnostics.period": 1.0,
                                 "max_rate": 0.1, "camera_info.policy": "exact"})   # (a frame each 10 s at most)
    harness_log = harness.collector(Log, "/rosout")
    got, (image, info) = harness.connect(node, outputs)
    diags = harness.collector(DiagnosticArray, "/diagnostics")
    clock = harness.probe.create_publisher(Clock, "/clock", 10)
    wait_for(lambda: clock.get_subscription_count() > 0 and node._diag_pub.get_subscription_count() > 0,
             what="discovery")
    timeouts: list = []
    watch_waits(node, monkeypatch, timeouts)
    sent = 0

    def frame(t: int, late: bool = False) -> bool:
        """A frame stamped t, its camera_info with it (``late``: after the frame began to wait for it); whether it
        went through max_rate (waited for until processed or throttled)."""
        nonlocal sent
        processed, sent = node.counts()[""].get("processed", 0), sent + 1
        img = make_image(t, frame_id=f"cam_{sent}")
        if not late:
            info.publish(make_info(img))
        image.publish(img)
        if late:
            wait_for(lambda: timeouts and timeouts[-1][0] == t, what=f"the frame stamped {t} waiting")
            info.publish(make_info(img))
        wait_for(lambda: sum(node.counts()[""].get(k, 0) for k in ("processed", "throttled")) == sent,
                 what=f"the frame stamped {t} settled")
        if node.counts()[""].get("processed", 0) == processed:
            return False
        wait_for(lambda: all(len(got[k]) == processed + 1 for k in outputs), what=f"the outputs of the frame {t}")
        for name in outputs:
            header = got[name][-1].header
            assert (conversions.stamp_ns(header), header.frame_id) == (t, f"cam_{sent}"), (name, header)
        return True

    assert node.get_clock().now().nanoseconds == 0
    assert frame(T0, late=True)                 # at clock 0: its outputs stamped as the image
    assert not frame(T0 + 10**8)                # milliseconds later here: max_rate's wall seconds
    assert timeouts == [(T0, pytest.approx(node_module._INFO_WAIT_S, abs=0.01))]
    report = node.diagnostics()
    time.sleep(0.4)                             # silent: past _STALL_S
    report = node.diagnostics()
    assert conversions.stamp_ns(report.header) == 0   # (the node's clock)
    model = {kv.key: kv.value for kv in report.status[0].values}
    camera = {kv.key: kv.value for kv in report.status[1].values}
    assert math.isnan(float(model["age_p50_ms"])) and math.isnan(float(model["age_p99_ms"]))
    assert all(math.isfinite(float(camera[k])) and float(camera[k]) > 0 for k in ("input_rate_hz", "output_rate_hz"))
    assert report.status[1].message.startswith("no image for "), report.status[1].message
    silent = float(report.status[1].message.split()[3])
    assert silent >= 0.3 and silent == float(camera["seconds_since_last_image"]), report.status[1].message
    assert diags == []                          # (the reports' timer runs on the clock, still at 0)

    def tick(t: int) -> None:
        msg = Clock()
        msg.clock.sec, msg.clock.nanosec = divmod(t, 10**9)
        clock.publish(msg)
        wait_for(lambda: node.get_clock().now().nanoseconds == t, what=f"the node's clock at {t}")

    tick(T0 + 2 * 10**9)                        # /clock begins: from 0 to the bag's time
    wait_for(lambda: any(conversions.stamp_ns(d.header) == T0 + 2 * 10**9 for d in diags), what="a report")
    first = next(d for d in diags if conversions.stamp_ns(d.header) == T0 + 2 * 10**9)
    camera = {kv.key: kv.value for kv in first.status[1].values}
    assert all(math.isfinite(float(camera[k])) for k in ("input_rate_hz", "output_rate_hz")), camera
    assert frame(T0 + 2 * 10**9, late=True)     # max_rate on the clock's seconds from here
    assert timeouts[-1] == (T0 + 2 * 10**9, pytest.approx(node_module._INFO_WAIT_S, abs=0.01))
    tick(T0 + 5 * 10**9)
    assert not frame(T0 + 5 * 10**9)            # 3 s of the clock after the last: within half a period (10 s)
    tick(T0 + 12 * 10**9)
    assert frame(T0 + 12 * 10**9)
    counts = node.counts()[""]
    assert counts["processed"] == 3 and counts["throttled"] == 2, counts
    assert not [k for k in counts if k.startswith(("error", "incomplete"))], counts
    assert _warnings(harness_log, "ahead of this node's clock") == []


def test_each_configuration_of_a_managed_node_waits_for_clock_afresh(harness, monkeypatch):
    """dpt_lifecycle_node on use_sim_time without /clock: the frames the no-/clock warning names ("N frames came
    meanwhile") were counted over the node's life, so after a cleanup -> configure it named the frames of the
    configuration before too (2 + 1 here), and once said, it was not said in any later configuration. Now each
    configuration waits afresh, as a switch of use_sim_time does: its own frames, its own warning."""
    from rclpy.lifecycle import TransitionCallbackReturn

    monkeypatch.setattr(node_module, "_CLOCK_CHECK_S", 1e6)   # (its timer off: called below)
    log = harness.collector(Log, "/rosout")
    node = harness.start_node(managed=True, **{"use_sim_time": True, "depth.scale": 1.0})
    out = harness.collector(Image, "depth")
    image = harness.probe.create_publisher(Image, "image", qos())
    needle = "this node's clock still stands at 0"

    def configuration(frames: int) -> None:
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        wait_for(lambda: image.get_subscription_count() > 0
                 and node.cameras[0].pubs["depth"].get_subscription_count() > 0, what="discovery")
        for i in range(frames):
            n = len(out)
            image.publish(make_image(T0))
            wait_for(lambda: len(out) > n, what="its depth")
            # (the worker counts it after its outputs went out: what the check reads, at least this configuration's)
            wait_for(lambda: node._before_clock[0] > i, what="the frame counted before /clock")

    def cleanup() -> None:
        assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
        assert node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS

    configuration(2)   # cleaned up before its check came (5 s)
    cleanup()
    configuration(1)
    node._check_clock()
    wait_for(lambda: _warnings(log, needle), what="the no-/clock warning")
    assert "1 frame came meanwhile (/image)" in _warnings(log, needle)[0], _warnings(log, needle)
    cleanup()
    configuration(0)
    node._check_clock()
    wait_for(lambda: len(_warnings(log, needle)) == 2, timeout=5, what="the next configuration's warning")
    assert _warnings(log, needle)[1].startswith("use_sim_time is true and this node's clock still stands at 0, "
                                                "1e+06 s after the configure transition began")
    assert "no frame has come either" in _warnings(log, needle)[1]
