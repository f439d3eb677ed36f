"""Races between the parameter callback (executor thread), the model loader thread and the worker.

Where a race window is a few bytecodes wide, the test widens it at the exact point (a gate in the
loader's ``load_models``, a loader thread that is slow to exit) instead of hoping for a lucky
schedule; the threads, the parameter services and the node are the real ones."""
import threading
import time

import pytest
from rcl_interfaces.msg import SetParametersResult

from dpt_ros.ros import node as node_module
from dpt_ros.ros.testing import (get_params, set_params, set_params_atomically, truncated_checkpoint, wait_for,
                                 worker_done)

DOMAIN = 48


def _settled(node) -> bool:
    with node._lock:
        return not node._model_loading


def test_failed_load_does_not_revert_a_newer_change(harness, tmp_path, monkeypatch):
    """input_size=96 with corrupt weights is accepted and loads in the background; before it fails the
    user sets input_size=128. The failure may put depth.weights back (the corrupt file is still what
    the user asked for) but must not put input_size back to the running 64: that undoes the newer change."""
    node = harness.start_node()
    bad = tmp_path / "corrupt.pt"
    truncated_checkpoint(bad)   # a download cut short: accepted when set, its load fails
    gate, entered = threading.Event(), threading.Event()
    real = node_module.load_models

    def gated(s, running=None):
        if s["depth.weights"] == str(bad):
            entered.set()
            gate.wait(30)
        return real(s, running)

    monkeypatch.setattr(node_module, "load_models", gated)
    r = set_params_atomically(harness, node, input_size=96, **{"depth.weights": str(bad)})
    assert r.successful, r.reason
    wait_for(entered.is_set, what="loader building the corrupt model")
    r = set_params(harness, node, input_size=128)[0]       # the user's newer change
    assert r.successful, r.reason
    gate.set()
    wait_for(lambda: node.error_counts().get("model_load", 0) >= 1, timeout=30, what="load failure")
    wait_for(lambda: _settled(node), timeout=60, what="loader finished")
    assert node.settings["input_size"] == 128, "the failed load reverted the user's newer input_size"
    assert get_params(harness, node, "input_size") == [128]
    assert node.settings["depth.weights"] == "random"       # the corrupt file is put back to what runs
    assert node.models.depth_pre.net_size == (128, 128)
    assert node.models.key == node.settings.model_key()


def test_a_failed_load_of_a_variant_whose_weights_are_set_next_does_not_undo_the_variant(harness, tmp_path,
                                                                                           monkeypatch):
    """`ros2 param load /dpt_node tuned.yaml` of a dump with another depth model sets depth.variant, then depth.weights
    (the file's sorted order), one by one. The loader may start on the variant with the running weights, which
    fails (a dpt_tiny checkpoint is no dpt_hybrid); the weights that go with the variant are set meanwhile (here
    the gate holds the loader until then). The failure put depth.variant back to dpt_tiny, and the node ran
    dpt_tiny with the file's random weights, a model asked for by nobody, and not its own checkpoint any more; now
    the combination asked for since, dpt_hybrid with random weights, is loaded."""
    import torch

    from dpt_ros.model.reference import random_state_dict

    tiny = tmp_path / "tiny.pt"
    torch.save(random_state_dict("dpt_tiny", seed=3), tiny)
    node = harness.start_node(**{"depth.weights": str(tiny)})
    gate, entered = threading.Event(), threading.Event()
    real = node_module.load_models

    def gated(s, running=None):
        if (s["depth.variant"], s["depth.weights"]) == ("dpt_hybrid", str(tiny)):
            entered.set()
            gate.wait(30)
        return real(s, running)

    monkeypatch.setattr(node_module, "load_models", gated)
    assert set_params(harness, node, **{"depth.variant": "dpt_hybrid"})[0].successful
    wait_for(entered.is_set, what="loader on dpt_hybrid with the dpt_tiny checkpoint")
    assert set_params(harness, node, **{"depth.weights": "random"})[0].successful
    gate.set()
    wait_for(lambda: node.error_counts().get("model_load", 0) >= 1, timeout=30, what="load failure")
    wait_for(lambda: _settled(node), timeout=60, what="loader finished")
    assert get_params(harness, node, "depth.variant", "depth.weights") == ["dpt_hybrid", "random"]
    assert node.models.key == node.settings.model_key()
    assert node.models.depth.variant.name == "dpt_hybrid"
    assert node.error_counts()["model_load"] == 1


def test_a_failed_load_that_switched_tasks_is_reverted_in_one_change(harness, tmp_path):
    """Segmentation runs, depth is off; one atomic request turns depth on with a corrupt file and segmentation off.
    Its failure puts all three parameters back at once: one at a time, depth.variant '' would be refused first
    (no task left) and for a moment the parameters would ask for the corrupt model again, a second failing load."""
    node = harness.start_node(**{"depth.variant": "", "segmentation.variant": "dpt_hybrid_ade20k",
                                 "segmentation.weights": "random"})
    bad = tmp_path / "corrupt.pt"
    truncated_checkpoint(bad)   # a download cut short: accepted when set, its load fails
    r = set_params_atomically(harness, node, **{"depth.variant": "dpt_tiny", "depth.weights": str(bad),
                                                 "segmentation.variant": ""})
    assert r.successful, r.reason
    wait_for(lambda: node.error_counts().get("model_load", 0) >= 1, timeout=30, what="load failure")
    wait_for(lambda: _settled(node), timeout=60, what="loader finished")
    time.sleep(0.5)
    assert node.error_counts()["model_load"] == 1
    # (depth.weights keeps the file asked for: with depth off, no running model says otherwise)
    assert get_params(harness, node, "depth.variant", "segmentation.variant") == ["", "dpt_hybrid_ade20k"]
    assert node.models.key == node.settings.model_key() and node.models.depth is None


def _held_load_of_96(harness, node, monkeypatch) -> tuple[threading.Event, list]:
    """input_size 96 set on ``node``, its load held in the loader until the returned gate is set; the input sizes of
    every load the loader starts are appended to the returned list."""
    gate, entered, loads = threading.Event(), threading.Event(), []
    real = node_module.load_models

    def gated(s, running_models=None):
        loads.append(s["input_size"])
        if s["input_size"] == 96:
            entered.set()
            gate.wait(30)
        return real(s, running_models)

    monkeypatch.setattr(node_module, "load_models", gated)
    assert set_params(harness, node, input_size=96)[0].successful
    wait_for(entered.is_set, what="loader building the 96 model")
    return gate, loads


def test_a_load_ending_while_the_parameters_go_back_is_not_swapped_in(harness, monkeypatch):
    """input_size 64 runs; 96 is asked for and loads; the user sets 64 back. The load of 96 ends just after the
    settings say 64 and before the callback asks for a model: it must not be swapped in (it would serve while
    `ros2 param get` says 64, and 64 would then be loaded a second time). The window is widened at that point: the
    callback's model request waits until the loader has decided."""
    node = harness.start_node(input_size=64)
    running = node.models
    gate, loads = _held_load_of_96(harness, node, monkeypatch)
    loader, real_request = node._loader, node._request_models

    def request_once_the_load_has_ended(s):   # (on the executor thread, in the callback setting 64 back)
        gate.set()
        loader.join(60)   # the 96 model is built, and swapped in or not, before this request
        real_request(s)

    node._request_models = request_once_the_load_has_ended
    assert set_params(harness, node, input_size=64)[0].successful
    assert not loader.is_alive()
    wait_for(lambda: _settled(node), timeout=60, what="loader finished")
    assert node.models is running, "the 96 model was swapped in after the parameters went back to 64"
    assert loads == [96] and node.settings["input_size"] == 64 and node.models.key == node.settings.model_key()


def test_a_refused_change_does_not_leave_its_model_wanted(harness, monkeypatch):
    """input_size 96 is loading when a change to 128 fails after the node took it (here: starting its load): the
    change is refused and `ros2 param get` says 96, so the running load of 96 is swapped in and 128 is never
    loaded (the refused change's model stayed wanted: the loader, back from 96, loaded and served 128)."""
    node = harness.start_node(input_size=64)
    gate, loads = _held_load_of_96(harness, node, monkeypatch)

    def broken(settings):
        raise RuntimeError("cannot start a thread")

    monkeypatch.setattr(node, "_request_models", broken)
    refused = set_params(harness, node, input_size=128)[0]
    assert not refused.successful and refused.reason == "input_size: RuntimeError: cannot start a thread"
    gate.set()
    wait_for(lambda: _settled(node), timeout=60, what="loader finished")
    assert loads == [96], f"loaded {loads}: the refused change's model was loaded"
    assert node.settings["input_size"] == 96 and node.models.depth_pre.net_size == (96, 96)
    assert node.models.key == node.settings.model_key()


def test_model_request_while_the_loader_thread_exits_is_not_lost(harness):
    """The loader leaves its loop under the lock, but its thread is still alive for a moment after
    that. A change arriving in that moment must still be loaded (it used to be dropped: is_alive()
    said a loader was running, so none was started, and model_loading stayed true for ever)."""
    node = harness.start_node()
    exited = threading.Event()
    loop = node._loader_loop

    def slow_to_exit():   # the thread outlives its loop a little (widened from microseconds to 1 s)
        loop()
        exited.set()
        time.sleep(1.0)

    node._loader_loop = slow_to_exit
    assert set_params(harness, node, input_size=96)[0].successful
    wait_for(exited.is_set, timeout=30, what="first swap done, loader leaving")
    assert node.models.depth_pre.net_size == (96, 96)
    assert set_params(harness, node, input_size=128)[0].successful
    wait_for(lambda: node.models.depth_pre.net_size == (128, 128), timeout=30, what="second change loaded")
    wait_for(lambda: _settled(node), what="model_loading cleared")




@pytest.mark.parametrize("where", ["before", "after"])
def test_revert_of_a_failed_load_racing_a_user_change(harness, tmp_path, where):
    """After a failed load the loader thread puts parameters back with set_parameters, while the
    executor thread may be serving a user's set_parameters; rclpy's Node does not serialise the two.
    The user's input_size=128 lands while the revert of input_size (to the running 64) is in flight:
    ``before`` the node's callback validates the revert (the revert then undid the user's newer change)
    or ``after`` it, before rclpy stores the value (`ros2 param get` then said 64 while the node ran 128)."""
    node = harness.start_node()
    bad = tmp_path / "corrupt.pt"
    truncated_checkpoint(bad)   # a download cut short: accepted when set, its load fails
    in_revert, user_done = threading.Event(), threading.Event()

    def hold_revert(changed):
        if threading.current_thread().name == "dpt_model_loader" and any(p.name == "input_size" for p in changed):
            in_revert.set()
            user_done.wait(3.0)   # a timeout: with the fix the user's call waits for this one to finish
        return SetParametersResult(successful=True)

    # rclpy calls the callback added last first
    if where == "after":
        node.remove_on_set_parameters_callback(node._guarded_set_parameters)
    node.add_on_set_parameters_callback(hold_revert)
    if where == "after":
        node.add_on_set_parameters_callback(node._guarded_set_parameters)
    assert set_params_atomically(harness, node, input_size=96, **{"depth.weights": str(bad)}).successful
    wait_for(in_revert.is_set, timeout=30, what="loader reverting input_size")
    t = threading.Thread(target=lambda: user_done.set() if set_params(harness, node, input_size=128)[0].successful
                         else None)
    t.start()
    t.join(10)
    user_done.set()
    wait_for(lambda: _settled(node) and node.models.key == node.settings.model_key(), timeout=60,
             what="loader finished")
    assert (node.settings["input_size"], node.get_parameter("input_size").value) == (128, 128)
    assert get_params(harness, node, "input_size") == [128]
    assert node.models.depth_pre.net_size == (128, 128)


def test_an_unexpected_error_counts_each_frame_of_the_batch_once(harness, monkeypatch):
    """Camera a's frame is idle (nobody subscribes), then the batch fails unexpectedly on camera b's:
    a stays idle and only b is counted as error:internal (received = processed + dropped + idle + errors)."""
    from dpt_ros.ros.testing import make_image

    node = harness.start_node(cameras=["a", "b"])
    real = node.wanted_outputs

    def wanted(cam, s):
        if cam.ns == "b":
            raise RuntimeError("injected")
        return real(cam, s)

    monkeypatch.setattr(node, "wanted_outputs", wanted)
    with node._wake:   # both frames waiting when the worker wakes: one batch
        for cam in node.cameras:
            cam.counts["received"] += 1
            cam.pending = node_module._Frame(cam, make_image(1), time.monotonic())
        node._wake.notify()
    wait_for(lambda: node.error_counts().get("internal") == 1, what="internal error counted")
    c = node.counts()
    assert (dict(c["a"]), dict(c["b"])) == ({"received": 1, "idle": 1}, {"received": 1, "error:internal": 1})


def test_a_batch_that_fails_as_the_stop_drops_its_frames_counts_them_dropped_only(harness, monkeypatch):
    """The worker's batch fails unexpectedly; between the worker's look at the stop's flag and its taking out of the
    frames already counted, the stop counts the batch's frame dropped (its wait for the worker ran out). The worker
    then had no frame left and called _count_error with none, which counts one error of no frame's (a compressed
    copy's): errors.internal 1 and an "[internal] unexpected error" line for a frame counted dropped. Now the flag and
    the frames are looked at together under _lock: dropped only, nothing counted or said as an error. The window, a
    few bytecodes wide, is widened at the worker's context.ok() call, which lies in it (the frame, the stop and the
    worker are the real ones; the batch's failure is injected as in the tests above)."""
    from sensor_msgs.msg import Image

    from dpt_ros.ros.testing import make_image, qos

    node = harness.start_node()
    worker, context = node._worker, node.context
    entered, gate = threading.Event(), threading.Event()
    real_ok = context.ok

    def ok():
        if threading.current_thread() is worker and not gate.is_set():
            entered.set()
            gate.wait(30)
        return real_ok()

    def wanted(cam, s):
        raise RuntimeError("injected")

    monkeypatch.setattr(node, "wanted_outputs", wanted)
    monkeypatch.setattr(context, "ok", ok)
    pub = harness.probe.create_publisher(Image, "image", qos())
    wait_for(lambda: pub.get_subscription_count() > 0, what="discovery")
    pub.publish(make_image(1))
    assert entered.wait(60), "the worker's batch did not fail"
    node.stop(timeout=0.1)   # (its wait for the held worker runs out: the batch's frame is counted dropped)
    assert dict(node.counts()[""]) == {"received": 1, "dropped": 1}
    gate.set()
    worker.join(30)
    assert not worker.is_alive()
    assert dict(node.counts()[""]) == {"received": 1, "dropped": 1} and "internal" not in node.error_counts(), \
        (node.counts(), node.error_counts())


def test_a_frame_first_incomplete_then_failing_is_still_counted_as_an_error(harness, monkeypatch):
    """A frame without camera_info is counted incomplete:no_camera_info and goes on (points skipped);
    when publishing its one output then fails (here rclpy's own type check), it is counted as error:publish
    too: an incomplete frame is not yet a counted one (received = processed + dropped + idle + errors)."""
    from sensor_msgs.msg import Image, PointCloud2

    from dpt_ros.ros.testing import make_image, qos

    node = harness.start_node(**{"depth.scale": 1.0})
    harness.collector(Image, "inverse_depth")
    harness.collector(PointCloud2, "points")
    real = node._postprocess

    def wrong_type(job, s):
        return {**real(job, s), "inverse_depth": "not a message"}

    monkeypatch.setattr(node, "_postprocess", wrong_type)
    pub = harness.probe.create_publisher(Image, "image", qos())
    wait_for(lambda: pub.get_subscription_count() > 0 and
             all(node.cameras[0].pubs[n].get_subscription_count() > 0 for n in ("inverse_depth", "points")),
             what="discovery")
    pub.publish(make_image(1))
    wait_for(lambda: node.error_counts().get("publish") == 1, what="publish error counted")
    counts = dict(node.counts()[""])
    # (within 3 s of subscribing, the frame waited 50 ms for a first camera_info, in vain: not a frame count)
    assert counts.pop("waited_in_vain:camera_info", 1) == 1
    assert counts == {"received": 1, "incomplete:no_camera_info": 1, "error:publish": 1,
                      "publish_failed:inverse_depth": 1}


def test_an_output_whose_publish_raises_costs_that_output_alone(harness, monkeypatch):
    """Cameras a and b in one batch, each with inverse_depth and depth subscribed; a's inverse_depth message has a
    field of the wrong type, so rclpy's publish raises (its conversion refuses it; the publisher is the node's real
    one). The exception left the batch: a's depth after it and b's outputs were not published, and both frames
    counted error:internal ("[internal] unexpected error: TypeError: ..."), no output named. Now that output alone
    is lost: counted against it (publish_failed.inverse_depth) and its frame (incomplete.publish, processed; node-wide
    errors.publish), the line says which output failed and why, and the frame's other output and b's go out."""
    from rcl_interfaces.msg import Log
    from sensor_msgs.msg import Image

    from dpt_ros.ros.testing import make_image

    log = harness.collector(Log, "/rosout")
    node = harness.start_node(cameras=["a", "b"], **{"depth.scale": 1.0})
    out = {(ns, name): harness.collector(Image, f"/{ns}/{name}") for ns in "ab" for name in ("inverse_depth", "depth")}
    real = node._postprocess

    def bad_field(job, s):
        msgs = real(job, s)
        if job["frame"].camera.ns == "a":
            bad = Image(header=job["frame"].msg.header, height=1, width=1, step=4, data=bytes(4))
            object.__setattr__(bad, "_encoding", 5)   # (its setter refuses it; rclpy's conversion raises)
            msgs["inverse_depth"] = bad
        return msgs

    monkeypatch.setattr(node, "_postprocess", bad_field)
    wait_for(lambda: all(cam.pubs[n].get_subscription_count() > 0 for cam in node.cameras
                         for n in ("inverse_depth", "depth")), what="discovery")
    with node._wake:   # both frames waiting when the worker wakes: one batch
        for cam in node.cameras:
            cam.counts["received"] += 1
            cam.pending = node_module._Frame(cam, make_image(1), time.monotonic())
        node._wake.notify()
    # (the frames are counted after their outputs are published)
    wait_for(lambda: len(out["a", "depth"]) + len(out["b", "inverse_depth"]) + len(out["b", "depth"]) == 3
             and worker_done(node), what="the frames' other outputs")
    c = node.counts()
    assert (dict(c["a"]), dict(c["b"])) == (
        {"received": 1, "processed": 1, "incomplete:publish": 1, "publish_failed:inverse_depth": 1, "out:depth": 1},
        {"received": 1, "processed": 1, "out:inverse_depth": 1, "out:depth": 1})
    assert dict(node.error_counts()) == {"publish": 1} and out["a", "inverse_depth"] == []
    wait_for(lambda: any(m.msg.startswith("[publish]") for m in log), what="the line")
    assert [m.msg for m in log if m.msg.startswith("[")] == [
        "[publish] /a/image: publishing /a/inverse_depth failed: TypeError: bad argument type for built-in operation; "
        "its other outputs were published (if it repeats, report it with this line)"]


def test_a_failing_network_shape_costs_only_its_own_cameras_frames(harness):
    """Three cameras in one batch, two network shapes: the forward pass of the 64x64 shape (cameras a and b) fails,
    the 64x160 one (camera c, a wider image) still runs and publishes. Each lost frame counts once, per camera and
    node-wide (errors.inference 2, not 1: received = processed + errors holds in /diagnostics too); the error's log
    line names the cameras' image topics; depth.net_input lists both shapes of the batch."""
    from rcl_interfaces.msg import Log

    from dpt_ros.ros.testing import make_image

    node = harness.start_node(cameras=["a", "b", "c"])
    rosout = harness.collector(Log, "/rosout")
    outs, _ = harness.cameras(node, ["a", "b", "c"])
    engine, shapes = node.models.depth, []
    real = engine.run

    def run(batch):
        shapes.append(tuple(batch.shape))
        if tuple(batch.shape[2:]) == (64, 64):
            raise RuntimeError("forward failed (injected)")
        return real(batch)

    engine.run = run
    sizes = {"a": (64, 48), "b": (64, 48), "c": (128, 48)}
    for order in (("a", "b", "c"), ("c", "a", "b")):   # the failing shape first, then last
        shapes.clear()
        n_out = len(outs["c"])
        with node._wake:   # all three frames waiting when the worker wakes: one batch
            for cam in sorted(node.cameras, key=lambda c: order.index(c.ns)):
                cam.counts["received"] += 1
                cam.pending = node_module._Frame(cam, make_image(5, *sizes[cam.ns]), time.monotonic())
            node._wake.notify()
        wait_for(lambda: len(outs["c"]) == n_out + 1, what="camera c's output")
        assert sorted(shapes) == [(1, 3, 64, 160), (2, 3, 64, 64)]
        assert outs["c"][-1].width == 128 and not outs["a"] and not outs["b"]
    # (c's frame is counted processed after its output is published)
    wait_for(lambda: node.error_counts().get("inference") == 4 and worker_done(node), what="4 frames counted")
    c = node.counts()
    assert [dict(c[ns]) for ns in "abc"] == [{"received": 2, "error:inference": 2}] * 2 + [
        {"received": 2, "processed": 2, "out:inverse_depth": 2}]
    wait_for(lambda: any("forward failed (injected)" in m.msg for m in rosout), what="the error's /rosout line")
    lines = [m.msg for m in rosout if "forward failed (injected)" in m.msg]
    assert lines[0].startswith("[inference] /a/image, /b/image: depth model: RuntimeError"), lines
    model = {kv.key: kv.value for kv in node.diagnostics().status[0].values}
    assert model["depth.net_input"] in ("64x64, 64x160", "64x160, 64x64")


def test_every_frame_failing_counts_each_under_its_own_failure(harness):
    """Two cameras in one batch, two network shapes, both forward passes failing differently: camera a's out of
    device memory, camera b's otherwise. No frame has anything left, and each is still counted under its own
    failure's reason (cuda_oom for a, inference for b), with its own message naming its own topic; not both under
    the first failure's."""
    import torch
    from rcl_interfaces.msg import Log

    from dpt_ros.ros.testing import make_image

    node = harness.start_node(cameras=["a", "b"])
    rosout = harness.collector(Log, "/rosout")
    harness.cameras(node, ["a", "b"])
    engine = node.models.depth
    real = engine.run

    def run(batch):
        if tuple(batch.shape[2:]) == (64, 64):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (injected)")
        if tuple(batch.shape[2:]) == (64, 160):
            raise RuntimeError("wide forward failed (injected)")
        return real(batch)

    engine.run = run
    with node._wake:   # both frames waiting when the worker wakes: one batch
        for cam, size in zip(sorted(node.cameras, key=lambda c: c.ns), ((64, 48), (128, 48))):
            cam.counts["received"] += 1
            cam.pending = node_module._Frame(cam, make_image(5, *size), time.monotonic())
        node._wake.notify()
    wait_for(lambda: sum(node.error_counts().values()) == 2, what="2 frames counted")
    assert node.error_counts() == {"cuda_oom": 1, "inference": 1}
    c = node.counts()
    assert [dict(c[ns]) for ns in "ab"] == [{"received": 1, "error:cuda_oom": 1}, {"received": 1,
                                                                                  "error:inference": 1}]
    wait_for(lambda: sum("(injected)" in m.msg for m in rosout) == 2, what="both errors' /rosout lines")
    lines = sorted(m.msg for m in rosout if "(injected)" in m.msg)
    assert lines[0].startswith("[cuda_oom] /a/image: depth model: CUDA out of memory in inference: "), lines
    assert lines[1].startswith("[inference] /b/image: depth model: RuntimeError: wide forward failed"), lines


def test_device_memory_is_given_back_outside_a_graph_capture():
    """A frame that ran out of device memory returns the cached memory to the driver (the next one can then
    succeed); freeing synchronises the device, which would invalidate a CUDA-graph capture underway on another
    thread (a model swap captures on the loader thread). The release waits for the capture to end, and a capture
    waits for a release. (The node's out-of-memory path, on a thread of its own against a held capture lock.)"""
    import threading
    import time

    import torch

    from dpt_ros.model import engine as engine_module
    from dpt_ros.ros.node import DptNode

    oom = torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    answers = []
    with engine_module._CAPTURE_LOCK:   # a capture underway
        t = threading.Thread(target=lambda: answers.append(DptNode._failure("inference", oom)))
        t.start()
        time.sleep(0.3)
        assert answers == [], "the memory was released during the capture"
    t.join(5)
    assert answers and answers[0][0] == "cuda_oom"
    assert DptNode._failure("inference", ValueError("x")) == ("inference", "ValueError: x")   # (no lock taken)


def test_a_cuda_error_the_process_cannot_recover_from_says_to_restart_the_node():
    """After an illegal memory access (or a device-side assert, an ECC error) every later CUDA call in the process
    fails the same way: the frame's error says so and what to do (restart; respawn), instead of leaving the user
    to read the same error once every 5 s. It stays counted under its stage. A CPU node and errors the next frame can
    get past keep their plain message."""
    import torch

    from dpt_ros.ros.node import DptNode

    sticky = RuntimeError("CUDA error: an illegal memory access was encountered")
    reason, text = DptNode._failure("postprocess", sticky, torch.device("cuda", 0))
    assert reason == "postprocess"
    assert text.startswith("RuntimeError: CUDA error: an illegal memory access was encountered -- ")
    assert "until the node is restarted" in text and "respawn=True" in text and "Xid" in text
    assert DptNode._failure("postprocess", sticky, torch.device("cpu")) == (
        "postprocess", "RuntimeError: CUDA error: an illegal memory access was encountered")
    plain = RuntimeError("CUDA error: invalid configuration argument")
    assert DptNode._failure("inference", plain, torch.device("cuda", 0)) == ("inference", f"RuntimeError: {plain}")


def test_a_warning_said_while_a_swapped_in_model_is_logged_does_not_end_the_loader(harness):
    """A model swap's loader forgets the warnings said of the old model (no metres, a task off, its pace) by iterating
    over the said warnings, while other threads add to them (the worker's lines after a batch, the executor's checks):
    a warning said in between ended the loader with 'RuntimeError: Set changed size during iteration', before the new
    model's RANDOM WEIGHTS banner. Forced: the loader held at its first look at a said warning (a profile hook on
    str.startswith; it holds the node's lock there, as it swaps the model in) until another thread has said one; then
    the banner comes, and the new model's frame says its 'need metric depth' again."""
    import sys

    from rcl_interfaces.msg import Log
    from sensor_msgs.msg import Image

    from dpt_ros.ros.testing import make_image, qos

    log = harness.collector(Log, "/rosout")
    node = harness.start_node()   # (a relative model: its depth needs metres it has not)
    harness.collector(Image, "depth")
    harness.collector(Image, "inverse_depth")
    pub = harness.probe.create_publisher(Image, "image", qos())
    wait_for(lambda: pub.get_subscription_count() > 0 and all(
        node.cameras[0].pubs[n].get_subscription_count() > 0 for n in ("depth", "inverse_depth")), what="discovery")

    def said(text: str) -> int:
        return sum(text in m.msg for m in list(log))

    pub.publish(make_image(1, frame_id=""))   # (an empty frame_id: said once, and kept said)
    wait_for(lambda: said("need metric depth") == 1 and said("empty frame_id") == 1, what="the first warnings")
    inside, added = threading.Event(), threading.Event()

    def profile(frame, event, arg):
        if event == "c_call" and getattr(arg, "__name__", "") == "startswith" and not inside.is_set() and \
                frame.f_code.co_filename == node_module.__file__ and \
                frame.f_code.co_name in ("<setcomp>", "_said_anew"):
            inside.set()
            added.wait(20)

    banners = said("RANDOM WEIGHTS")
    threading.setprofile(profile)   # (threads started from now: the swap's loader)
    try:
        assert set_params(harness, node, input_size=96)[0].successful
    finally:
        threading.setprofile(None)
    try:
        wait_for(inside.is_set, what="the loader at a said warning")
        node._warn_once("meanwhile", "a warning said while the loader looks at the said ones")   # (as the worker's)
        wait_for(lambda: said("a warning said while the loader") == 1, what="the warning said meanwhile")
    finally:
        added.set()
    wait_for(lambda: said("RANDOM WEIGHTS") == banners + 1, what="the new model's banner")
    pub.publish(make_image(2))
    wait_for(lambda: said("need metric depth") == 2, what="the new model's warning")
    assert sys.getprofile() is None


def test_subscribing_off_the_executor_writes_the_cameras_subscription_under_the_lock_and_calls_rcl_outside_it(
        harness):
    """A refused parameter change whose subscribing back failed leaves a camera without its image subscription; a
    failed model load's revert then subscribes it back on the model loader's thread, through _subscribe. That wrote
    the camera's subscription state (cam.subs, image_topic, image_since, received_at_subscribe, the "no image yet"
    said, unsubscribed) without _lock, which the executor's /diagnostics report and the worker hold to read it (a
    report could mix the new subscription's image_since with the old received_at_subscribe, or find cam.unsubscribed
    emptied between its two looks, a KeyError out of the diagnostics timer). Now the state is written under _lock,
    after rcl's create_subscription, which is not called under it (rcl may block; the executor's callbacks take the
    lock). Here the test holds _lock as a report does while another thread subscribes the camera's image: the
    subscription is made (rcl not waiting for the lock), the camera's state stays as it was until the lock is free."""
    node = harness.start_node()
    cam = node.cameras[0]
    node._subscribe(cam, "image", False)   # (as a refused change whose subscribing back failed leaves it)
    before = cam.image_since
    subscriber = threading.Thread(target=node._subscribe, args=(cam, "image", True), name="not_the_executor")
    with node._lock:
        subscriber.start()
        wait_for(lambda: any(s.topic_name == "/image" for s in node.subscriptions), what="the subscription made")
        subscriber.join(2.0)   # (it waits for the lock this test holds: still waiting after 2 s)
        waiting, seen = subscriber.is_alive(), (cam.image_since, "image" in cam.subs)
    subscriber.join(30)
    assert (waiting, seen) == (True, (before, False))
    assert cam.image_since > before and cam.subs["image"].topic_name == "/image"


def test_an_image_transport_switch_keeps_the_old_subscription_in_the_cameras_state_until_the_new_one_replaces_it(
        harness, monkeypatch):
    """_switch (image_transport, depth.align_transport) took the old subscription out of cam.subs before rcl's
    create_subscription made the new one, outside _lock, and put it back without the lock when rcl refused: meanwhile
    the worker (_await: "or topic not in cam.subs", under _lock, ends a frame's wait for its reference, and _align then
    sends it out unaligned and uncounted as if depth.align had been set off) and /diagnostics (_Subscribed.of: "image"
    in cam.subs, under _lock) found the camera without one. Now the old one stays until the new one takes its place,
    under _lock. Here rcl's create_subscription is wrapped (it is still called) to look at the camera's image
    subscription as those readers do, under _lock, at the moment the new one is being made: refused (a publisher of
    Image on /image/compressed) and then made."""
    from sensor_msgs.msg import Image

    from dpt_ros.ros.testing import qos

    node = harness.start_node()
    cam = node.cameras[0]
    seen, create = [], node.create_subscription

    def create_subscription(msg_type, topic, *args, **kwargs):
        with node._lock:   # (as /diagnostics and the worker read it)
            seen.append((topic, cam.subs["image"].topic_name if "image" in cam.subs else None))
        return create(msg_type, topic, *args, **kwargs)

    monkeypatch.setattr(node, "create_subscription", create_subscription)
    blocker = harness.probe.create_publisher(Image, "/image/compressed", qos())   # (rcl refuses CompressedImage there)
    refused = set_params(harness, node, image_transport="compressed")[0]
    assert not refused.successful and refused.reason.startswith(
        "image_transport: cannot subscribe /image/compressed"), refused.reason
    harness.probe.destroy_publisher(blocker)
    assert set_params(harness, node, image_transport="compressed")[0].successful
    assert seen == [("/image/compressed", "/image"), ("/image/compressed", "/image")], seen
    assert cam.subs["image"].topic_name == "/image/compressed"
    assert [s.topic_name for s in node.subscriptions if s.topic_name.startswith("/image")] == ["/image/compressed"]


def test_an_image_the_replaced_subscription_hands_on_is_its_own_not_the_new_ones(harness, monkeypatch):
    """An image_transport change made off the executor's thread (node.set_parameters called from another thread, as
    here) replaces the camera's image subscription while the executor may hand on an image it took from the old one.
    Its callback passed no subscription, so _on_image took the camera's (`cam.subs.get("image")`), by then the new
    one: the frame was named by the new one's topic (an Image said to have come on /image/compressed) and counted as
    its. Now each subscription's callback hands on its own. rclpy's destroy_subscription is wrapped (it is still
    called) to run the old subscription's callback, as the executor would, once the new one has taken its place."""
    from rcl_interfaces.msg import Log
    from rclpy.parameter import Parameter

    from dpt_ros.ros.testing import make_image

    log = harness.collector(Log, "/rosout")
    node = harness.start_node(lazy=False)   # (frames processed without subscribers: the error is said)
    cam = node.cameras[0]
    old, seen, destroy = cam.subs["image"], [], node.destroy_subscription
    bad = make_image(1)
    bad.encoding = "no_such_encoding"   # (its error line names the frame's topic)

    def destroy_subscription(sub):
        if sub is old:
            with node._lock:
                seen.append(cam.subs["image"].topic_name)
            sub.callback(bad)
        return destroy(sub)

    monkeypatch.setattr(node, "destroy_subscription", destroy_subscription)
    assert node.set_parameters([Parameter("image_transport", value="compressed")])[0].successful
    wait_for(lambda: node.error_counts().get("encoding", 0) == 1, what="the frame's error counted")

    def said():
        return [m.msg for m in list(log) if m.name == "dpt_node" and m.msg.startswith("[encoding]")]
    wait_for(said, what="the frame's error line")
    assert seen == ["/image/compressed"]
    assert said()[0].startswith("[encoding] /image: unsupported image encoding 'no_such_encoding'"), said()
