"""dpt_lifecycle_node: the node as a managed (lifecycle) node, driven through rclpy's lifecycle services as
`ros2 lifecycle set` and nav2's lifecycle manager drive it."""
from __future__ import annotations

import contextlib
import gc
import os
import signal
import threading
import time
import weakref

import pytest

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rcl_interfaces.msg import Log
from rclpy.impl.implementation_singleton import rclpy_implementation
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from dpt_ros.ros.testing import assert_no_image_yet, call_service, gate_engine, make_image, publish_until, qos, set_params, truncated_checkpoint, wait_for
from dpt_ros.tools import sros2_policy
from dpt_ros.tools.bench_reliability import FAST_ROS_ARGS, LineReader, start_node, stop_node

DOMAIN = 77


def _change(harness, node, transition: int) -> bool:
    req = ChangeState.Request(transition=Transition(id=transition))
    return call_service(harness, ChangeState, f"/{node}/change_state", req, timeout=60).success


def _state(harness, node) -> str:
    return call_service(harness, GetState, f"/{node}/get_state", GetState.Request()).current_state.label


def _by_node(query, node: str) -> dict:
    """``probe.get_*_names_and_types_by_node`` of ``node`` in "/", {} while the node is not discovered yet."""
    try:
        return dict(query(node, "/"))
    except rclpy_implementation.NodeNameNonExistentError:
        return {}


def _graph(probe, node: str) -> tuple[set, set]:
    return (set(_by_node(probe.get_publisher_names_and_types_by_node, node)),
            set(_by_node(probe.get_subscriber_names_and_types_by_node, node)))


def _connected(harness, node) -> tuple[list, object]:
    """An inverse_depth collector and an image publisher, once discovery has matched both with the active ``node``."""
    out = harness.collector(Image, "inverse_depth")
    pub = harness.probe.create_publisher(Image, "image", qos())
    wait_for(lambda: pub.get_subscription_count() > 0 and
             node.cameras[0].pubs["inverse_depth"].get_subscription_count() > 0, what="discovery")
    return out, pub


def test_states_through_the_lifecycle_services(harness):
    """(The node has a name of its own in this process: the graph is read by node name, and another node named
    dpt_node on the domain, e.g. one a run of older code left there, would be read instead of this one: it waited
    20 s for the /inverse_depth of a destroyed node that had only its transition_event left.)"""
    name = f"dpt_states_{os.getpid()}"
    node = harness.start_node(managed=True, cli_args=["--ros-args", "-r", f"__node:={name}"], **{"depth.weights": ""})
    probe = harness.probe
    out = harness.collector(Image, "inverse_depth")
    log = harness.collector(Log, "/rosout")
    pub = probe.create_publisher(Image, "image", qos())
    assert _state(harness, name) == "unconfigured"
    # unconfigured: no camera topics and no model, only the lifecycle and parameter interfaces
    wait_for(lambda: f"/{name}/transition_event" in _graph(probe, name)[0], what="node discovered")
    pubs, subs = _graph(probe, name)
    assert "/inverse_depth" not in pubs and "/image" not in subs and node.models is None

    # a configure that cannot load the model fails with the reason and leaves the node unconfigured, and says how on
    assert not _change(harness, name, Transition.TRANSITION_CONFIGURE)
    assert _state(harness, name) == "unconfigured" and node.models is None
    wait_for(lambda: any(m.name == name and m.msg.startswith("configure failed") for m in list(log)),
             what="the configure's failure logged")
    failed = next(m.msg for m in list(log) if m.name == name and m.msg.startswith("configure failed"))
    assert failed.startswith("configure failed, the node stays unconfigured: depth.weights is not set; ") and \
        failed.endswith(f"; the node keeps running: fix that (ros2 param set), then configure again: ros2 lifecycle "
                        f"set /{name} configure"), failed
    # parameters are checked in every state; unconfigured, they apply at the next configure
    bad = set_params(harness, node, precision="fp64")[0]
    assert not bad.successful and "precision" in bad.reason
    assert all(r.successful for r in set_params(harness, node, **{"depth.weights": "random", "input_size": 96}))

    assert _change(harness, name, Transition.TRANSITION_CONFIGURE)
    assert _state(harness, name) == "inactive"
    assert node.models.depth_pre.net_size == (96, 96)
    wait_for(lambda: "/inverse_depth" in _graph(probe, name)[0], what="publishers")
    assert "/image" not in _graph(probe, name)[1]   # inactive: the camera is not subscribed
    diag = node.diagnostics()
    values = {kv.key: kv.value for kv in diag.status[0].values}
    assert values["lifecycle_state"] == "inactive" and diag.status[1].message.startswith("inactive")
    # (random weights: WARN, and the state said too)
    assert diag.status[0].message == "random weights: outputs not meaningful; inactive (lifecycle): cameras not subscribed"

    assert _change(harness, name, Transition.TRANSITION_ACTIVATE)
    assert _state(harness, name) == "active"
    publish_until(pub, lambda i: make_image(i * 1_000_000_000 + 5, frame_id="cam_lc"), out)
    assert out[0].header.frame_id == "cam_lc" and out[0].header.stamp.nanosec == 5
    values = {kv.key: kv.value for kv in node.diagnostics().status[0].values}
    assert values["lifecycle_state"] == "active"

    assert _change(harness, name, Transition.TRANSITION_DEACTIVATE)
    wait_for(lambda: "/image" not in _graph(probe, name)[1], what="camera unsubscribed")
    assert "/inverse_depth" in _graph(probe, name)[0]
    received = node.counts()[""]["received"]
    pub.publish(make_image(99))
    # reactivating takes the camera again, and a frame sent while inactive was never taken
    assert _change(harness, name, Transition.TRANSITION_ACTIVATE)
    n = len(out)
    publish_until(pub, lambda i: make_image(100 + i), out, n=n + 1)
    assert all(m.header.stamp.sec != 0 or m.header.stamp.nanosec != 99 for m in out)
    assert node.counts()[""]["received"] > received
    assert _change(harness, name, Transition.TRANSITION_DEACTIVATE)

    # cleanup releases the model (nothing else holds it) and destroys the publishers
    engine = weakref.ref(node.models.depth)
    assert _change(harness, name, Transition.TRANSITION_CLEANUP)
    assert _state(harness, name) == "unconfigured" and node.models is None and node.cameras == []
    gc.collect()
    assert engine() is None, "the model outlived cleanup"
    wait_for(lambda: "/inverse_depth" not in _graph(probe, name)[0], what="publishers destroyed")

    # configured again with another variant: the new value is what loads
    assert set_params(harness, node, **{"depth.variant": "dpt_hybrid", "input_size": 64})[0].successful
    assert _change(harness, name, Transition.TRANSITION_CONFIGURE)
    assert node.models.depth.variant.name == "dpt_hybrid"
    assert _change(harness, name, Transition.TRANSITION_INACTIVE_SHUTDOWN)
    assert _state(harness, name) == "finalized" and node.models is None
    # said in the log as every other transition is (it said nothing): the process stays up, finalized
    wait_for(lambda: any(m.name == name and m.msg.startswith("finalized: model released") for m in list(log)),
             what="the shutdown's log line")
    # finalized: no configure follows, so a value set would never take effect: refused, saying so
    late = set_params(harness, node, input_size=128)[0]
    assert not late.successful and "finalized" in late.reason and "start the node again" in late.reason
    # shut down from unconfigured: nothing was loaded, and the line does not say a model was released
    other = harness.start_node(managed=True, cli_args=["--ros-args", "-r", f"__node:={name}_u"])
    assert other.trigger_shutdown() == TransitionCallbackReturn.SUCCESS
    wait_for(lambda: any(m.name == f"{name}_u" and m.msg.startswith("finalized: ") for m in list(log)),
             what="the shutdown's log line")
    line = next(m.msg for m in list(log) if m.name == f"{name}_u" and m.msg.startswith("finalized: "))
    assert line.startswith("finalized: it was unconfigured; the process stays up until stopped"), line


def test_deactivate_publishes_the_frames_it_had_taken(harness):
    """Deactivation lets the worker finish: the frame in the model and the one waiting behind it are published
    before the transition returns, and nothing is published after."""
    node = harness.start_node(managed=True)
    assert _change(harness, "dpt_node", Transition.TRANSITION_CONFIGURE)
    assert _change(harness, "dpt_node", Transition.TRANSITION_ACTIVATE)
    out, pub = _connected(harness, node)
    gate, entered, _ = gate_engine(node.models.depth)
    pub.publish(make_image(1))
    assert entered.wait(20)
    pub.publish(make_image(2))
    wait_for(lambda: node.counts()[""].get("received") == 2, what="second frame waiting")
    done = threading.Event()

    def deactivate():
        node.trigger_deactivate()
        done.set()

    thread = threading.Thread(target=deactivate)
    thread.start()
    assert not done.wait(0.5), "deactivate returned while a taken frame was still in the model"
    gate.set()
    thread.join(30)
    assert done.is_set()
    counts = node.counts()[""]
    assert counts["processed"] == 2 and counts["out:inverse_depth"] == 2 and counts.get("dropped", 0) == 0
    wait_for(lambda: len(out) == 2, what="both frames delivered")
    assert sorted(m.header.stamp.nanosec for m in out) == [1, 2]


def test_a_frame_delivered_after_deactivation_is_counted_dropped(harness):
    """A message the executor took from the camera's subscription before the deactivation removed it reaches the
    callback of an inactive node: counted received and dropped (never processed), so the counts still add up."""
    node = harness.start_node(managed=True)
    assert _change(harness, "dpt_node", Transition.TRANSITION_CONFIGURE)
    assert _change(harness, "dpt_node", Transition.TRANSITION_ACTIVATE)
    out, pub = _connected(harness, node)
    pub.publish(make_image(1))
    wait_for(lambda: len(out) == 1, what="a frame while active")
    assert _change(harness, "dpt_node", Transition.TRANSITION_DEACTIVATE)
    cam = node.cameras[0]
    node._on_image(cam, make_image(2))   # what the executor does with a message it had already taken
    time.sleep(0.3)
    counts = node.counts()[""]
    assert (counts["received"], counts.get("dropped", 0), counts["processed"]) == (2, 1, 1)
    assert cam.pending is None and len(out) == 1


def test_images_waiting_in_dds_at_deactivation_are_counted_received_and_dropped(harness):
    """Images that came while the executor ran another callback (here held), waiting in DDS when the node is
    deactivated: the deactivation takes them before it destroys the image subscription, and counts each received and
    dropped (the node is inactive: never processed), so they are not lost unsaid with the subscription."""
    from rclpy.duration import Duration

    from dpt_ros.ros.testing import executor_held

    node = harness.start_node(managed=True, **{"qos.input_reliability": "reliable"})
    assert _change(harness, "dpt_node", Transition.TRANSITION_CONFIGURE)
    assert _change(harness, "dpt_node", Transition.TRANSITION_ACTIVATE)
    out = harness.collector(Image, "inverse_depth")
    pub = harness.probe.create_publisher(Image, "image", qos("reliable"))
    wait_for(lambda: pub.get_subscription_count() > 0 and
             node.cameras[0].pubs["inverse_depth"].get_subscription_count() > 0, what="discovery")
    with executor_held(harness):
        for i in range(1, 4):
            pub.publish(make_image(i))
        assert pub.wait_for_all_acked(Duration(seconds=20))   # (in the node's reader, waiting for the executor)
        assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
    counts = {k: n for k, n in node.counts()[""].items() if not k.startswith("out:")}
    assert counts == {"received": 3, "dropped": 3}, counts
    assert "image" not in node.cameras[0].subs and node.cameras[0].pending is None and len(out) == 0


def test_configure_failure_is_reported_and_the_process_keeps_serving(harness):
    """dpt_lifecycle_node as a process (what `ros2 run dpt_ros dpt_lifecycle_node` starts): it waits unconfigured;
    its interface set is the documented managed one (docs/sros2); a failed configure leaves it running."""
    NAME = "dpt_managed"
    code = "from dpt_ros.ros.node import run_managed; run_managed()"
    # a name of its own: the graph is read by node name, and another dpt_node on the domain would be read instead
    proc = start_node(DOMAIN, *FAST_ROS_ARGS, "-p", "depth.weights:=/nonexistent/dpt.pt", python_code=code, name=NAME)
    reader = LineReader(proc)
    probe = harness.probe
    try:
        want = {kind: ({name.replace("/dpt_node/", f"/{NAME}/"): v for name, v in names.items()}
                       if isinstance(names, dict) else names)
                for kind, names in sros2_policy.expected("/", [""], "raw", optional=False, managed=True).items()}
        wait_for(lambda: set(_by_node(probe.get_service_names_and_types_by_node, NAME)) >= set(want["reply"])
                 or proc.poll() is not None, timeout=60, what="node up")
        assert proc.poll() is None, reader.text()
        assert _state(harness, NAME) == "unconfigured"
        assert not _change(harness, NAME, Transition.TRANSITION_CONFIGURE)
        wait_for(lambda: "configure failed" in reader.text() or proc.poll() is not None, what="the reason logged")
        assert "/nonexistent/dpt.pt" in reader.text() and proc.poll() is None, reader.text()
        assert set_params(harness, NAME, **{"depth.weights": "random"})[0].successful
        assert _change(harness, NAME, Transition.TRANSITION_CONFIGURE)
        assert _change(harness, NAME, Transition.TRANSITION_ACTIVATE)
        wait_for(lambda: _graph(probe, NAME)[0] >= set(want["publish"]) and
                 _graph(probe, NAME)[1] == set(want["subscribe"]), what="the active interface set")
        services = _by_node(probe.get_service_names_and_types_by_node, NAME)
        assert {k: v[0] for k, v in services.items() if "type_description" not in k} == \
            {k: v for k, v in want["reply"].items() if "type_description" not in k}
        diags = harness.collector(DiagnosticArray, "/diagnostics")
        out = harness.collector(Image, "inverse_depth")
        pub = probe.create_publisher(Image, "image", qos())
        publish_until(pub, make_image, out)
        wait_for(lambda: any(kv.key == "lifecycle_state" and kv.value == "active"
                             for d in diags for kv in d.status[0].values), what="diagnostics")
    finally:
        rc, _, _ = stop_node(proc)
    log = reader.join()
    assert rc == 0 and "Traceback" not in log, log[-2000:]


def test_a_new_configuration_starts_clean_and_unconfigured_values_are_checked(harness, tmp_path):
    """A failed swap's error belongs to the model it failed to replace: after cleanup and configure the new model's
    diagnostics do not report it. Unconfigured, a camera_info.url that cannot be read is refused at once."""
    node = harness.start_node(managed=True)
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    corrupt = tmp_path / "corrupt.pt"
    truncated_checkpoint(corrupt)   # a download cut short: accepted when set, its load fails
    assert set_params(harness, node, **{"depth.weights": str(corrupt)})[0].successful
    wait_for(lambda: node.error_counts().get("model_load") == 1, timeout=30, what="the failed swap")
    values = {kv.key: kv.value for kv in node.diagnostics().status[0].values}
    assert values["last_model_error"] != "none"
    assert node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS
    bad = set_params(harness, node, **{"camera_info.url": f"file://{tmp_path}/missing.yaml"})[0]
    assert not bad.successful and "missing.yaml" in bad.reason
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    status = node.diagnostics().status[0]
    values = {kv.key: kv.value for kv in status.values}
    assert values["last_model_error"] == "none" and values["model_loading"] == "False"
    assert "model load failed" not in status.message and values["latency.model_ms"] == "nan"
    assert values["errors.model_load"] == "1"   # counters are the node's life, not the configuration's


def test_a_camera_of_a_new_configuration_gets_its_own_once_per_camera_warnings(harness):
    """The warnings said once per camera (an empty frame_id, ...) belong to the camera, not to its place in the list:
    after cleanup, cameras:=[b] and configure, camera b's frames without a frame_id are said, though camera a, first
    in the list before, was said already."""
    from rcl_interfaces.msg import Log
    from rclpy.parameter import Parameter

    log = harness.collector(Log, "/rosout")
    # (a namespace of its own: its logger's /rosout publisher is not one that an earlier test's node of the same
    # name, finalised by the cleanup's garbage collection, takes away)
    node = harness.start_node(namespace="percam", managed=True, cameras=["a"], lazy=False)

    def said(topic):
        return [m.msg for m in list(log) if m.name == "percam.dpt_node" and
                m.msg.startswith(f"{topic}: frames with an empty frame_id")]
    for ns in ("a", "b"):
        if ns == "b":
            assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
            assert node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS
            assert node.set_parameters([Parameter("cameras", value=["b"])])[0].successful
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        pub = harness.probe.create_publisher(Image, f"/percam/{ns}/image", qos())
        wait_for(lambda: pub.get_subscription_count() > 0, what=f"discovery of {ns}/image")
        pub.publish(make_image(1, frame_id=""))
        wait_for(lambda: node.counts()[ns].get("processed", 0) == 1, what=f"the frame of {ns} processed")
        wait_for(lambda: len(said(f"/percam/{ns}/image")) == 1, what=f"the empty frame_id of {ns}/image said")


def _worker_left_behind(harness, monkeypatch):
    """A managed node whose worker hangs in a forward pass past cleanup's limit (0.3 s here), then configured and
    activated again: (node, its inverse_depth collector, the image publisher, the gate that wakes the old worker)."""
    from dpt_ros.ros import health
    from dpt_ros.ros import node as node_module

    monkeypatch.setattr(node_module, "_STUCK_S", 0.3)   # cleanup's limit
    monkeypatch.setattr(health, "_STUCK_S", 0.3)   # and /diagnostics' (the same constant)
    node = harness.start_node(managed=True)
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    out, pub = _connected(harness, node)
    old_gate, old_entered, _ = gate_engine(node.models.depth)
    pub.publish(make_image(1))
    assert old_entered.wait(20)
    assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS   # gives up waiting after 0.3 s
    assert node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    return node, out, pub, old_gate


def _wait_for_the_old_worker_to_leave(node) -> None:
    wait_for(lambda: not any(t.is_alive() and t is not node._worker for t in threading.enumerate()
                             if t.name == "dpt_inference"), what="the old worker gone")


def test_a_worker_stuck_past_cleanup_leaves_the_next_configuration_alone(harness, monkeypatch):
    """A forward pass that hangs past cleanup's limit: the next configuration serves frames, and when the old
    worker wakes it publishes nothing, counts no error and does not touch the new worker's state."""
    node, out, pub, old_gate = _worker_left_behind(harness, monkeypatch)
    wait_for(lambda: pub.get_subscription_count() > 0 and
             node.cameras[0].pubs["inverse_depth"].get_subscription_count() > 0, what="rediscovery")
    new_gate, new_entered, _ = gate_engine(node.models.depth)
    pub.publish(make_image(2))
    assert new_entered.wait(20) and len(node._in_worker) == 1
    old_gate.set()   # the old worker wakes up, its frame's publishers gone
    _wait_for_the_old_worker_to_leave(node)
    assert len(node._in_worker) == 1 and node._busy is not None   # the new worker's batch, untouched
    new_gate.set()
    wait_for(lambda: len(out) == 1, what="the new configuration's frame")
    assert out[0].header.stamp.nanosec == 2
    assert "internal" not in node.error_counts()


def test_a_worker_stuck_past_cleanup_that_wakes_while_the_next_configuration_is_idle_writes_nothing(harness,
                                                                                                    monkeypatch):
    """The old worker wakes when the new one has nothing to do: it stops before its next stage, so it does not mark
    the new configuration's worker as busy (/diagnostics said ERROR 'worker stuck in publish' for an idle node)
    nor add its batch to the new configuration's figures."""
    node, out, _, old_gate = _worker_left_behind(harness, monkeypatch)
    assert node._busy is None
    old_gate.set()
    _wait_for_the_old_worker_to_leave(node)
    assert node._busy is None and node._batches == 0 and not node._stage_ms["model"]
    time.sleep(0.5)   # past the stuck-worker limit
    status = node.diagnostics().status[0]
    assert status.level != DiagnosticStatus.ERROR and "stuck" not in status.message, status.message
    assert out == [] and "internal" not in node.error_counts()


def test_a_worker_stuck_past_cleanup_in_post_processing_leaves_the_rest_of_its_batch(harness, monkeypatch):
    """A batch of two cameras whose first frame's post-processing hangs past cleanup's limit (on a GPU the worker
    waits for the queued forward passes there): when the old worker wakes it finishes that frame, then stops; it
    post-processes no other frame of its batch with the next configuration's state (its page-locked buffers)."""
    from dpt_ros.ros import node as node_module

    monkeypatch.setattr(node_module, "_STUCK_S", 0.3)
    node = harness.start_node(managed=True, cameras=["a", "b"])
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    _, pubs = harness.cameras(node, ("a", "b"))
    gate, entered, _ = gate_engine(node.models.depth)
    pubs["a"].publish(make_image(1))   # held in its forward pass while both cameras' next frames arrive
    assert entered.wait(20)
    pubs["a"].publish(make_image(2))
    pubs["b"].publish(make_image(2))
    wait_for(lambda: all(c.pending is not None for c in node.cameras), what="both frames waiting")
    real, done, post_gate, post_entered = node._postprocess, [], threading.Event(), threading.Event()

    def gated(job, s):
        stamp = job["frame"].msg.header.stamp.nanosec
        if stamp == 2 and not post_entered.is_set():
            post_entered.set()
            post_gate.wait(20)
        out = real(job, s)
        done.append((threading.current_thread(), stamp))
        return out

    node._postprocess = gated
    old = node._worker
    gate.set()   # frame 1 goes on; then the batch of both frames 2, stuck in the first one's post-processing
    assert post_entered.wait(20)
    assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS   # gives up waiting after 0.3 s
    assert node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    post_gate.set()
    wait_for(lambda: not old.is_alive(), what="the old worker gone")
    assert [stamp for t, stamp in done if t is old] == [1, 2], done   # frame 1, then only the frame it was in
    assert "internal" not in node.error_counts()


def test_a_loader_left_behind_by_cleanup_does_not_serve_the_next_configuration(harness, monkeypatch):
    """A model load outlasting cleanup's wait: the next configuration starts its own loader; the old one, when its
    load returns, neither swaps it in nor takes up the new configuration's requests (it built each model again)."""
    from dpt_ros.ros import node as node_module

    monkeypatch.setattr(node_module, "_STUCK_S", 0.3)
    node = harness.start_node(managed=True)
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    real, loads = node_module.load_models, []
    gates = {96: threading.Event(), 128: threading.Event()}

    def recorded(s, running=None):
        if threading.current_thread().name == "dpt_model_loader":
            loads.append((threading.current_thread(), s["input_size"]))
            gates[s["input_size"]].wait(30)
        return real(s, running)

    monkeypatch.setattr(node_module, "load_models", recorded)
    assert set_params(harness, node, input_size=96)[0].successful
    wait_for(lambda: len(loads) == 1, what="the first loader loading 96")
    old = loads[0][0]
    assert node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS   # it is left behind
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS   # (at 96, on this thread)
    assert set_params(harness, node, input_size=128)[0].successful
    wait_for(lambda: len(loads) == 2, what="the new loader loading 128")
    gates[96].set()   # the old load returns while the new configuration's request is still being served
    wait_for(lambda: not old.is_alive(), what="the old loader gone")
    gates[128].set()
    wait_for(lambda: node.models.depth_pre.net_size == (128, 128), what="the new loader's swap")
    wait_for(lambda: not any(t.name == "dpt_model_loader" and t.is_alive() for t in threading.enumerate()),
             what="the new loader gone")
    assert [(t is old, size) for t, size in loads] == [(True, 96), (False, 128)]   # not 128 a second time
    assert not node._model_loading


def _slow_failing_swap(harness, monkeypatch, error: str) -> tuple:
    """A configured dpt_lifecycle_node swapping its model (input_size 96), whose load waits for an event and then
    fails with RuntimeError(``error``). Returns (the node, its loader thread, the event) once the load has begun."""
    from dpt_ros.ros import node as node_module

    node = harness.start_node(managed=True)
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    release, loading = threading.Event(), threading.Event()

    def slow_failing_load(s, running=None):
        loading.set()
        release.wait(20)
        raise RuntimeError(error)

    monkeypatch.setattr(node_module, "load_models", slow_failing_load)
    assert set_params(harness, node, input_size=96)[0].successful   # a swap: the loader starts
    loader = node._loader
    # (a cleanup before the loader thread got to its load stops it there: there would be no load to fail)
    wait_for(loading.is_set, what="the swap's load begun")
    return node, loader, release


def test_a_swap_that_fails_after_cleanup_is_reported_and_the_loader_ends_cleanly(harness, monkeypatch):
    from dpt_ros.ros import node as node_module

    monkeypatch.setattr(node_module, "_STUCK_S", 0.3)
    crashes = []   # (from the node's start on: the loader's failure among them, were it to escape)
    monkeypatch.setattr(threading, "excepthook", lambda args: crashes.append(args.exc_value))
    node, loader, release = _slow_failing_swap(harness, monkeypatch, "CUDA out of memory (test)")
    assert node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS   # does not wait past 0.3 s for it
    assert loader.is_alive()
    release.set()
    loader.join(20)
    assert not loader.is_alive() and crashes == []
    assert node.error_counts()["model_load"] == 1
    monkeypatch.undo()
    # configure again: the load it asked for is the one that happens, and nothing reports the old failure
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert node.models.depth_pre.net_size == (96, 96) and node.diagnostics().status[0].message != \
        "model load failed; previous model still serving"



def test_a_swap_that_fails_while_cleanup_waits_for_it_says_so_and_keeps_the_values_asked_for(harness, monkeypatch):
    """The load fails while the cleanup waits for it (not before, not after): the log says the node was cleaned up
    meanwhile, not "keeping the running model" (there is none), and the parameter keeps the value asked for, as
    when the failure lands after the cleanup; the next configure loads it."""
    from rcl_interfaces.msg import Log

    rosout = harness.collector(Log, "/rosout")
    node, loader, release = _slow_failing_swap(harness, monkeypatch, "the weights file went away (test)")
    results = []
    cleanup = threading.Thread(target=lambda: results.append(node.trigger_cleanup()))
    cleanup.start()
    wait_for(lambda: node._stopping, what="the cleanup waiting for the loader")
    release.set()
    cleanup.join(20)
    assert results == [TransitionCallbackReturn.SUCCESS] and not loader.is_alive()
    assert node.error_counts()["model_load"] == 1 and node.get_parameter("input_size").value == 96
    wait_for(lambda: any("the weights file went away" in m.msg for m in rosout), what="the log line")
    said = [m.msg for m in rosout if "the weights file went away" in m.msg]
    assert len(said) == 1 and said[0].startswith("model load failed (the node was cleaned up or shut down meanwhile; "
                                                 "the parameters keep the values of this load"), said
    monkeypatch.undo()
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert node.models.depth_pre.net_size == (96, 96)


def test_topic_parameters_are_set_while_unconfigured_and_refused_while_configured(harness, tmp_path):
    """cameras, qos.* and publish.compressed (read-only on dpt_node) are what the next configure builds its topics
    from: settable while unconfigured, refused with the way to do it while configured."""
    from rclpy.qos import ReliabilityPolicy

    # a name of its own: an earlier test's "dpt_node" can linger in the graph, and the graph queries below are by name
    node = harness.start_node(managed=True, cli_args=["--ros-args", "-r", "__node:=dpt_topics"])
    probe = harness.probe
    twice = set_params(harness, node, cameras=["left", "/left"])[0]   # refused when set, as configure would refuse it
    assert not twice.successful and twice.reason == (
        "cameras lists one camera twice: 'left' and '/left' both publish /left/inverse_depth; list it once")
    # a namespace whose topics rcl cannot name (too long once resolved): refused when set, not by the next configure
    long = set_params(harness, node, cameras=["c" * 215])[0]
    assert not long.successful and "cannot be served: its topic" in long.reason and "use a shorter namespace" in \
        long.reason, long.reason
    assert node.settings["cameras"] == [""]
    assert all(r.successful for r in set_params(harness, node, cameras=["left", "right"],
                                                **{"qos.output_reliability": "best_effort", "qos.output_depth": 3,
                                                   "qos.input_reliability": "reliable", "publish.compressed": False}))
    assert _change(harness, "dpt_topics", Transition.TRANSITION_CONFIGURE)
    assert [c.ns for c in node.cameras] == ["left", "right"]
    wait_for(lambda: {"/left/inverse_depth", "/right/inverse_depth"} <= _graph(probe, "dpt_topics")[0], what="publishers")
    assert "/inverse_depth" not in _graph(probe, "dpt_topics")[0]
    assert not any(t.endswith("compressed") or t.endswith("compressedDepth") for t in _graph(probe, "dpt_topics")[0])
    assert [i.qos_profile.reliability for i in probe.get_publishers_info_by_topic("/right/inverse_depth")] == \
        [ReliabilityPolicy.BEST_EFFORT]
    assert node.cameras[1].pubs["inverse_depth"].qos_profile.depth == 3   # (DDS discovery does not carry the depth)
    assert _change(harness, "dpt_topics", Transition.TRANSITION_ACTIVATE)
    wait_for(lambda: "/right/image" in _graph(probe, "dpt_topics")[1], what="subscriptions")
    assert [i.qos_profile.reliability for i in probe.get_subscriptions_info_by_topic("/right/image")] == \
        [ReliabilityPolicy.RELIABLE]
    out = harness.collector(Image, "/right/inverse_depth", reliability="best_effort")
    pub = probe.create_publisher(Image, "/right/image", qos())
    publish_until(pub, make_image, out)

    # configured (active or inactive): refused with the reason and the way to do it; nothing changes
    for state in ("active", "inactive"):
        cams, depth = set_params(harness, node, cameras=["front"], **{"qos.output_depth": 7})
        assert not cams.successful and cams.reason.startswith("cameras: applied at configure") and \
            "ros2 lifecycle set /dpt_topics deactivate (if active), then cleanup, set it, then configure and activate" \
            in cams.reason, state
        assert not depth.successful and depth.reason.startswith("qos.output_depth: applied at configure"), state
        assert node.settings["cameras"] == ["left", "right"] and node.settings["qos.output_depth"] == 3
        if state == "active":
            assert _change(harness, "dpt_topics", Transition.TRANSITION_DEACTIVATE)
    assert set_params(harness, node, cameras=["left", "right"])[0].successful   # the value it has: no change

    # unconfigured again: a camera_info.url is checked against the cameras to come, then back to one camera
    assert _change(harness, "dpt_topics", Transition.TRANSITION_CLEANUP)
    (tmp_path / "left.yaml").write_text("image_width: 80\nimage_height: 60\n"
                                        "camera_matrix: {rows: 3, cols: 3, data: [50, 0, 39.5, 0, 50, 29.5, 0, 0, 1]}\n")
    assert not set_params(harness, node, **{"camera_info.url": f"file://{tmp_path}/{{camera}}.yaml"})[0].successful
    assert set_params(harness, node, cameras=["left"])[0].successful
    assert set_params(harness, node, **{"camera_info.url": f"file://{tmp_path}/{{camera}}.yaml"})[0].successful
    res = set_params(harness, node, cameras=["left", "right"])[0]
    assert not res.successful and "right.yaml" in res.reason
    assert set_params(harness, node, **{"camera_info.url": ""})[0].successful
    assert set_params(harness, node, cameras=[""], **{"publish.compressed": True})[0].successful
    assert _change(harness, "dpt_topics", Transition.TRANSITION_CONFIGURE)
    assert [c.ns for c in node.cameras] == [""]
    assert "inverse_depth/colored/compressed" in node.cameras[0].pubs
    wait_for(lambda: "/inverse_depth" in _graph(probe, "dpt_topics")[0] and
             "/left/inverse_depth" not in _graph(probe, "dpt_topics")[0], what="the new topics")


def test_cameras_that_collide_are_refused_when_set_also_after_colliding_start_up_cameras(harness):
    """A cameras value whose topics collide is refused when set, with the reason, also while the start-up value
    (which only configure checks) collides the same way: cameras:=['', depth, front] was accepted then, and failed at
    the next configure. Another topic parameter is not refused for a collision that is not its doing."""
    node = harness.start_node(namespace="lc_nested", managed=True, cameras=["", "depth"])
    res = set_params(harness, node, cameras=["", "depth", "front"])[0]
    assert not res.successful and res.reason.startswith(
        "topics collide: output depth/camera_info would be published on /lc_nested/depth/camera_info, which the node "
        "subscribes as its input depth/camera_info"), res.reason
    assert set_params(harness, node, image_transport="compressed")[0].successful   # (not its doing)
    assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
    assert node.settings["cameras"] == ["", "depth"]
    assert set_params(harness, node, cameras=["", "right"])[0].successful
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert [c.ns for c in node.cameras] == ["", "right"]


def test_diagnostics_count_from_the_configuration_and_activation_they_belong_to(harness, monkeypatch):
    """/diagnostics compares a camera's counters with the same configuration's: after cleanup, configure and
    activate, the first report has no negative rate and no frame errors of the configuration before. A camera not
    heard from is "no input" (OK) for its first seconds after activation, however long the node waited before."""
    from dpt_ros.ros import health

    # (2 s, not 5: each "no input" below is a report that follows an activation by less, on a loaded machine too)
    stall = 2.0
    monkeypatch.setattr(health, "_STALL_S", stall)
    # reports only when this test asks (the timer's would move the baseline between its calls)
    node = harness.start_node(managed=True, **{"diagnostics.period": 60.0})

    def camera_status():
        status = node.diagnostics().status[1]
        return status, {kv.key: kv.value for kv in status.values}

    time.sleep(stall + 0.5)   # unconfigured for longer than the stall limit
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    activated = time.monotonic()
    assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    status, _ = camera_status()
    assert (status.level, status.message) == (DiagnosticStatus.OK, "no input")
    time.sleep(stall + 0.2)
    status, _ = camera_status()
    assert_no_image_yet(status, stall + 0.2, time.monotonic() - activated)

    out, pub = _connected(harness, node)
    publish_until(pub, make_image, out, n=3)
    bad = make_image(7)
    bad.encoding = "no_such_encoding"
    pub.publish(bad)
    wait_for(lambda: node.counts()[""].get("error:encoding") == 1, what="the bad frame counted")
    status, values = camera_status()
    assert status.message == "1 frame error since last report" and int(values["received"]) >= 4

    assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
    assert node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    status, values = camera_status()
    assert (status.level, status.message) == (DiagnosticStatus.OK, "no input"), status
    assert values["input_rate_hz"] == values["output_rate_hz"] == "0.00" and values["received"] == "0"

    # deactivated and activated again (same configuration): the last frame from before is not a stall of now
    out, pub = _connected(harness, node)
    publish_until(pub, make_image, out)
    assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
    camera_status()
    time.sleep(stall + 0.2)
    activated = time.monotonic()
    assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    status, values = camera_status()
    since = time.monotonic() - activated
    assert (status.level, status.message) == (DiagnosticStatus.OK, "no input"), status
    # counted from the activation (the last frame is older than the sleep); 0.05: the figure's rounding
    assert float(values["seconds_since_last_image"]) <= since + 0.05, (values, since)


@contextlib.contextmanager
def _two_frames_left_in_the_worker_by_a_deactivation(harness, monkeypatch):
    """An active managed node (diagnostics when asked) with frame 1 held in its forward pass and frame 2 waiting
    behind it, then deactivated: its wait for the worker runs out (0.3 s). Yields (node, the inverse_depth got, the
    image publisher, rates(): the camera's (input_rate_hz, output_rate_hz) now); the forward pass goes on at the
    block's end, and the block's end waits for both frames to be published."""
    from dpt_ros.ros import node as node_module

    monkeypatch.setattr(node_module, "_STUCK_S", 0.3)   # the deactivation's wait for the worker
    node = harness.start_node(managed=True, **{"diagnostics.period": 60.0})   # reports when asked
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    out, pub = _connected(harness, node)
    gate, entered, _ = gate_engine(node.models.depth)

    def rates():
        values = {kv.key: kv.value for kv in node.diagnostics().status[1].values}
        return values["input_rate_hz"], values["output_rate_hz"]
    try:
        pub.publish(make_image(1))
        assert entered.wait(20)
        pub.publish(make_image(2))
        wait_for(lambda: node.cameras[0].pending is not None, what="frame 2 waiting")
        assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS   # gives up waiting after 0.3 s
        yield node, out, pub, rates
    finally:
        gate.set()
    wait_for(lambda: len(out) == 2 and node.counts()[""].get("processed") == 2, what="frames 1 and 2 published")
    assert node.counts()[""] == {"received": 2, "processed": 2, "out:inverse_depth": 2}


def test_frames_from_before_a_deactivation_finished_after_the_next_activation_are_not_in_its_rates(harness,
                                                                                                   monkeypatch):
    """A deactivation whose wait for the worker ran out (a frame in its forward pass, one waiting behind it), then
    activate: the two frames, published after the activation, counted as processed in its rate window, which begins
    afresh at it: output_rate_hz above 0 beside an input_rate_hz of 0.00 for as long as the window began there (5 s).
    Now they count as settled before it (each once in the totals), as an image_transport change's old frames do; a
    frame of the new subscription counts in it as usual."""
    with _two_frames_left_in_the_worker_by_a_deactivation(harness, monkeypatch) as (node, out, pub, rates):
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    assert rates() == ("0.00", "0.00")
    # the activation's own frames are its window's
    wait_for(lambda: pub.get_subscription_count() > 0 and node.cameras[0].subs["image"].get_publisher_count() > 0,
             what="rediscovery")
    publish_until(pub, lambda i: make_image(2 + i), out, n=3)
    settled = lambda c: c["processed"] + c.get("dropped", 0) == c["received"]   # noqa: E731
    wait_for(lambda: settled(node.counts()[""]), what="the new frames settled")
    input_hz, output_hz = rates()   # (a frame dropped for a newer one, on a loaded machine: received, not processed)
    assert float(input_hz) >= float(output_hz) > 0, (input_hz, output_hz)


def test_frames_from_before_a_deactivation_finished_after_an_image_transport_change_while_inactive_are_not_in_its_rates(
        harness, monkeypatch):
    """As above, but image_transport set while inactive (the change starts the rate window afresh, of the new topic's
    frames alone) and the two frames published before the next activation: the camera had no image subscription
    then, which _count_settled took for the frames' own, so they counted as processed in the change's window, which
    never received them: output_rate_hz above 0 beside an input_rate_hz of 0.00. Now a frame of an image subscription
    that a deactivation destroyed counts as settled before the windows that began after that."""
    with _two_frames_left_in_the_worker_by_a_deactivation(harness, monkeypatch) as (node, out, pub, rates):
        assert set_params(harness, node, image_transport="compressed")[0].successful
    assert rates() == ("0.00", "0.00")
    assert node.cameras[0].subs == {} and node.diagnostics().status[1].hardware_id == "/image/compressed"


def test_no_image_yet_is_logged_again_after_a_reactivation(harness, monkeypatch):
    """A camera still silent after deactivate and activate is said in the log again (once per subscription): it was
    said once in the node's life, so a user re-activating a node whose camera had never sent got no hint."""
    from dpt_ros.ros import health

    monkeypatch.setattr(health, "_STALL_S", 0.3)
    log = harness.collector(Log, "/rosout")
    node = harness.start_node(namespace="lc_silent", managed=True, **{"diagnostics.period": 60.0})   # reports when asked

    def said():
        return [m for m in list(log) if m.name == "lc_silent.dpt_node" and m.msg.startswith("no image yet")]
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    for n in (1, 2):
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        wait_for(lambda: node.diagnostics().status[1].message.startswith("no image yet"), what="no image yet")
        wait_for(lambda: len(said()) >= n, what=f"no image yet logged after activation {n}")
        node.diagnostics()   # (the same subscription: not said twice)
        assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
    assert len(said()) == 2 and said()[0].level == Log.WARN
    assert "check the image topic (/lc_silent/image)" in said()[1].msg


def test_a_swapped_in_model_without_metres_is_said_again(harness):
    """'depth and points need metric depth' is said once per depth model (a configure's, a swap's): it was said once
    in the node's life, so after a swap back to a model without metres depth and points stopped without a word."""
    log = harness.collector(Log, "/rosout")
    node = harness.start_node(namespace="lc_metric", managed=True, **{"diagnostics.period": 60.0})
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    depth, out = harness.collector(Image, "/lc_metric/depth"), harness.collector(Image, "/lc_metric/inverse_depth")
    pub = harness.probe.create_publisher(Image, "/lc_metric/image", qos())
    wait_for(lambda: pub.get_subscription_count() > 0 and all(
        node.cameras[0].pubs[n].get_subscription_count() > 0 for n in ("depth", "inverse_depth")), what="discovery")

    def said():
        return [m for m in list(log) if m.name == "lc_metric.dpt_node" and m.msg.startswith("depth and points need")]
    for n, size in ((1, 64), (2, 96)):
        if size != 64:   # another model (dpt_tiny at 96 px), as relative: swapped in, and said again
            assert set_params(harness, node, input_size=size)[0].successful
            wait_for(lambda: node.models.depth_pre.net_size == (size, size), what="the swap")
        publish_until(pub, make_image, out, n=len(out) + 1)
        wait_for(lambda: len(said()) == n, what=f"the warning for model {n}")
    assert depth == [] and said()[1].level == Log.WARN


def test_a_swapped_in_models_first_frame_says_what_it_lacks(harness, monkeypatch):
    """A swap marked what is said once per model (no metres, a task off, a slow pace) unsaid only after the loader had
    logged the new model, while the worker already ran it: its first frames went without 'depth and points need metric
    depth' (the only frame, here: never said). Now they are marked as the model is swapped in. The loader is held
    between the swap and its log lines (a gate in _log_model), so that the frame comes in between."""
    log = harness.collector(Log, "/rosout")
    node = harness.start_node(namespace="lc_first", **{"diagnostics.period": 60.0})
    out = harness.collector(Image, "/lc_first/inverse_depth")
    harness.collector(Image, "/lc_first/depth")   # (wanted: what needs metres)
    pub = harness.probe.create_publisher(Image, "/lc_first/image", qos())
    wait_for(lambda: pub.get_subscription_count() > 0 and all(
        node.cameras[0].pubs[n].get_subscription_count() > 0 for n in ("depth", "inverse_depth")), what="discovery")

    def said():
        return [m for m in list(log) if m.name == "lc_first.dpt_node" and m.msg.startswith("depth and points need")]
    publish_until(pub, make_image, out)
    wait_for(lambda: len(said()) == 1, what="the warning for the first model")
    gate, log_model = threading.Event(), node._log_model

    def held(m):
        gate.wait(30)
        log_model(m)
    monkeypatch.setattr(node, "_log_model", held)
    try:
        assert set_params(harness, node, input_size=96)[0].successful
        wait_for(lambda: node.models.depth_pre.net_size == (96, 96), what="the swap")
        publish_until(pub, make_image, out, n=len(out) + 1)   # the new model's first frame, its lines held back
        wait_for(lambda: len(said()) == 2, timeout=10, what="the warning for the swapped-in model's first frame")
    finally:
        gate.set()
    assert said()[1].level == Log.WARN


def test_a_task_off_is_said_again_after_a_cleanup_and_configure(harness):
    """'segmentation is off ... while its outputs have subscribers' is said once per configuration: it was said once
    in the node's life, so after cleanup and configure the subscriber waited again without a word."""
    log = harness.collector(Log, "/rosout")
    node = harness.start_node(namespace="lc_off", managed=True, **{"diagnostics.period": 60.0})
    colored, out = (harness.collector(Image, f"/lc_off/{o}") for o in ("segmentation/colored", "inverse_depth"))
    pub = harness.probe.create_publisher(Image, "/lc_off/image", qos())

    def said():
        return [m for m in list(log) if m.name == "lc_off.dpt_node" and m.msg.startswith("segmentation is off")]
    for n in (1, 2):
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        wait_for(lambda: pub.get_subscription_count() > 0 and all(
            node.cameras[0].pubs[o].get_subscription_count() > 0 for o in ("inverse_depth", "segmentation/colored")),
            what="discovery")
        publish_until(pub, make_image, out, n=n)
        wait_for(lambda: len(said()) == n, what=f"the warning of configuration {n}")
        assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
        assert node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS
    assert colored == [] and said()[1].level == Log.WARN and said()[1].msg == said()[0].msg


def test_a_frame_error_before_deactivation_is_reported_at_warn_while_inactive(harness):
    """A frame that failed since the last report is a WARN in the next one, also when the node was deactivated
    in between (its camera's status said "inactive", level OK: the error never reached a health monitor)."""
    node = harness.start_node(managed=True, **{"diagnostics.period": 60.0})   # reports only when asked
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    out, pub = _connected(harness, node)
    publish_until(pub, make_image, out)
    node.diagnostics()   # the last report: the window opens here
    bad = make_image(7)
    bad.encoding = "no_such_encoding"
    pub.publish(bad)
    wait_for(lambda: node.counts()[""].get("error:encoding") == 1, what="the bad frame counted")
    assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
    status = node.diagnostics().status[1]
    assert status.level == DiagnosticStatus.WARN, status
    assert status.message == "1 frame error since last report; inactive (lifecycle): not subscribed"
    status = node.diagnostics().status[1]   # nothing new since: the state alone
    assert (status.level, status.message) == (DiagnosticStatus.OK, "inactive (lifecycle): not subscribed")


def test_an_inactive_cameras_status_names_the_topic_activate_subscribes(harness):
    """A camera's status names its image topic (`topic`, and the hardware_id) also while inactive: remaps and
    image_transport applied, as activate will subscribe it. Before the first activation it said '' for both."""
    node = harness.start_node(managed=True, namespace="lc_topic", cli_args=["--ros-args", "-r", "image:=/cam/image_raw"],
                              image_transport="compressed", **{"diagnostics.period": 60.0})

    def topics():
        status = node.diagnostics().status[1]
        return status.hardware_id, {kv.key: kv.value for kv in status.values}["topic"]

    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert topics() == ("/cam/image_raw/compressed",) * 2
    assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    assert topics() == ("/cam/image_raw/compressed",) * 2
    assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
    assert all(r.successful for r in set_params(harness, node, image_transport="raw"))
    assert topics() == ("/cam/image_raw",) * 2   # what the next activation subscribes, not the last one's
    assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    assert topics() == ("/cam/image_raw",) * 2


@pytest.mark.parametrize("transition", ["configure", "activate"])
def test_an_unforeseen_failure_of_a_transition_is_logged_with_its_stack(harness, monkeypatch, transition):
    """An exception a transition does not foresee fails it (rclpy: ERROR, then error processing back to
    unconfigured), and the log says what it was and where: rclpy's lifecycle code swallowed it without a word."""
    from rcl_interfaces.msg import Log

    log = harness.collector(Log, "/rosout")
    node = harness.start_node(managed=True)
    if transition == "activate":
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS

    def broken():
        raise KeyError("a failure nobody foresaw")

    monkeypatch.setattr(node, f"_{transition}", broken)
    assert not _change(harness, "dpt_node", getattr(Transition, f"TRANSITION_{transition.upper()}"))
    assert _state(harness, "dpt_node") == "unconfigured" and node.models is None
    wait_for(lambda: any(f"{transition} failed: KeyError" in m.msg for m in log), what="the failure logged")
    msg = next(m.msg for m in log if f"{transition} failed: KeyError" in m.msg)
    assert "'a failure nobody foresaw'; the node cleans up and goes back to unconfigured" in msg
    assert "Traceback (most recent call last)" in msg and "in broken" in msg
    monkeypatch.undo()   # and it configures again
    assert _change(harness, "dpt_node", Transition.TRANSITION_CONFIGURE) and node.models is not None


def test_sigterm_during_configure_exits_zero_without_a_configure_error(harness):
    """SIGTERM while configure loads the model: the process exits 0 once the load returns, and the interrupted
    configure is not reported as a failure (it used to log `configure failed ... context is invalid`)."""
    NAME = "dpt_managed_term"
    code = "from dpt_ros.ros.console import dpt_lifecycle_node; dpt_lifecycle_node()"
    proc = start_node(DOMAIN, "-p", "depth.variant:=dpt_large", "-p", "depth.weights:=random", "-p", "input_size:=64",
                      "-p", "device:=cpu", python_code=code, name=NAME)
    reader = LineReader(proc)
    client = harness.probe.create_client(ChangeState, f"/{NAME}/change_state")
    rosout: list = []   # (transient local: the line is had though this subscription matched the node's after it)
    harness.probe.create_subscription(Log, "/rosout", rosout.append, QoSProfile(
        depth=1000, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL))
    try:
        assert client.wait_for_service(timeout_sec=60), reader.text()
        client.call_async(ChangeState.Request(transition=Transition(id=Transition.TRANSITION_CONFIGURE)))
        # the line is printed before it is published to /rosout: SIGTERM once it is on /rosout, not in between
        wait_for(lambda: any(m.name == NAME and "loading depth dpt_large" in m.msg for m in rosout)
                 or proc.poll() is not None, timeout=60, what="the load begins (its line on /rosout)")
    finally:
        rc, _, _ = stop_node(proc, signal.SIGTERM, timeout=60)
        harness.probe.destroy_client(client)
    log = reader.join()
    assert rc == 0, log
    assert "dpt_large on cpu" not in log, "the load ended before SIGTERM arrived: this test did not test it"
    for bad in ("Traceback", "configure failed", "[ERROR]", "Failed to publish log message"):
        assert bad not in log, log


def test_a_cleanup_from_another_thread_never_has_diagnostics_published_on_a_destroyed_publisher(harness, monkeypatch):
    """trigger_cleanup() from a thread of the caller's (rclpy allows it; the tests do it) while the /diagnostics timer
    fires on the executor's: the publisher is detached before it is destroyed, and a publish that read it just
    before is dropped, not raised (InvalidHandle ended the executor's thread: the node went deaf)."""
    crashes = []
    monkeypatch.setattr(threading, "excepthook", lambda args: crashes.append(args.exc_value))
    node = harness.start_node(managed=True, **{"diagnostics.period": 0.1})
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    real_destroy_timer = node.destroy_timer

    def slow_destroy_timer(timer):   # the timer fires (more than once) while cleanup takes the interfaces down
        time.sleep(0.3)
        return real_destroy_timer(timer)

    monkeypatch.setattr(node, "destroy_timer", slow_destroy_timer)
    assert node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS
    time.sleep(0.3)
    assert harness._thread.is_alive() and crashes == []
    monkeypatch.setattr(node, "destroy_timer", real_destroy_timer)
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS   # and it serves on
    probe = harness.collector(DiagnosticArray, "/diagnostics")
    wait_for(lambda: len(probe) > 0, what="diagnostics again")


def test_a_destroyed_node_leaves_the_graph_at_once_and_takes_no_later_nodes_rosout_with_it(harness):
    """destroy_node takes the managed node out of the ROS graph then, not whenever the garbage collector gets to it.
    rclpy's lifecycle mixin left its state machine, which holds the node, to the collector: the destroyed node stayed
    in the graph, a second /dpt_node with only its transition_event publisher (a test of the next run on the domain
    waited 20 s for that node's /inverse_depth), and when it was collected, rcl unregistered the /rosout publisher
    of its logger name, a newer node's of the same name in this process: that node's lines never reached /rosout
    (the next test waited 20 s for a logged error)."""
    from rcl_interfaces.msg import Log

    old = harness.start_node(managed=True)
    assert old.trigger_configure() == TransitionCallbackReturn.SUCCESS
    harness.remove_node(old)   # destroy_node; `old` is still referenced here, as it may be anywhere until collected
    wait_for(lambda: ("dpt_node", "/") not in harness.probe.get_node_names_and_namespaces(),
             what="the destroyed node out of the graph")
    rosout = harness.collector(Log, "/rosout")
    new = harness.start_node(managed=True)
    del old
    gc.collect()   # the collector runs when it will: here, after the new node registered its /rosout publisher
    new.get_logger().warning("the new node's line")
    wait_for(lambda: any(m.name == "dpt_node" and m.msg == "the new node's line" for m in rosout),
             what="the new node's line on /rosout")
