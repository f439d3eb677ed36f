"""The node's compressed copies of its image outputs (publish.compressed), through DDS, read as
image_transport's compressed and compressedDepth subscribers read them."""
from __future__ import annotations

import contextlib
import threading
import time

import numpy as np
import pytest
from sensor_msgs.msg import CompressedImage, Image

from dpt_ros import pipeline
from dpt_ros.pipeline import depth_quantization
from dpt_ros.ros import conversions
from dpt_ros.ros.testing import (make_image, publish_until, qos, read_compressed, read_compressed_depth, set_params,
                                 wait_for, worker_done)

DOMAIN = 75

COMPRESSED = ("inverse_depth/colored/compressed", "depth/compressedDepth", "segmentation/compressed",
              "segmentation/colored/compressed")


def _connect(harness, node, names: dict) -> tuple[dict, object]:
    got = {n: harness.collector(t, n) for n, t in names.items()}
    pub = harness.probe.create_publisher(Image, "image", qos("reliable"))
    wait_for(lambda: all(node.cameras[0].pubs[n].get_subscription_count() > 0 for n in names)
             and pub.get_subscription_count() > 0, what="discovery")
    return got, pub


def _frame_of(msgs: list, sec: int):
    return next(m for m in msgs if m.header.stamp.sec == sec)


def _model_status(node) -> dict:
    """The node's own /diagnostics status (its ages and latency figures), key -> value."""
    return {kv.key: kv.value for kv in node.diagnostics().status[0].values}


def test_compressed_copies_hold_their_image_outputs_with_the_same_header(harness):
    node = harness.start_node(**{"depth.scale": 1.0, "depth.shift": 0.2, "depth.max": 8.0,
                                 "segmentation.variant": "dpt_hybrid_ade20k", "segmentation.weights": "random"})
    raw = ("inverse_depth/colored", "depth", "segmentation", "segmentation/colored")
    got, pub = _connect(harness, node, {**{n: Image for n in raw}, **{n: CompressedImage for n in COMPRESSED}})
    pub.publish(make_image(7 * 1_000_000_000 + 11, width=64, height=48, frame_id="cam_z"))
    wait_for(lambda: all(len(got[n]) >= 1 for n in got), timeout=60, what="every output of the frame")
    for name, msgs in got.items():
        assert (msgs[0].header.stamp.sec, msgs[0].header.stamp.nanosec, msgs[0].header.frame_id) == (7, 11, "cam_z"), name

    for name, codec in (("inverse_depth/colored", "jpeg"), ("segmentation/colored", "jpeg")):
        msg = _frame_of(got[name + "/compressed"], 7)
        assert msg.format == f"rgb8; {codec} compressed bgr8"
        encoding, back = read_compressed(msg.format, msg.data)
        want = conversions.image_array(_frame_of(got[name], 7))
        assert encoding == "rgb8" and back.shape == want.shape == (48, 64, 3)
        err = np.abs(back.astype(int) - want.astype(int)).mean()
        # JPEG's loss (large here: a 64x48 image of random-weight noise), far below reading it as RGB
        assert err < 12.0 and np.abs(back[..., ::-1].astype(int) - want.astype(int)).mean() > 2 * err, name

    msg = _frame_of(got["segmentation/compressed"], 7)
    assert msg.format == "mono8; png compressed "
    encoding, labels = read_compressed(msg.format, msg.data)
    assert encoding == "mono8"
    np.testing.assert_array_equal(labels, conversions.image_array(_frame_of(got["segmentation"], 7)))

    msg = _frame_of(got["depth/compressedDepth"], 7)
    assert msg.format == "32FC1; compressedDepth png"
    encoding, header, back = read_compressed_depth(msg.format, msg.data)
    code = depth_quantization(10.0, 100.0)   # the parameters' defaults
    assert encoding == "32FC1" and header == (0, code.quant_a, code.quant_b)
    depth = conversions.image_array(_frame_of(got["depth"], 7))
    coded = np.isfinite(depth) & (depth > code.nearest) & (depth < 10.0)
    assert coded.mean() > 0.5   # 1 / (inverse depth + 0.2): most of this frame is nearer than 8 m
    np.testing.assert_allclose(back[coded], depth[coded], rtol=0, atol=float(0.5 * depth.max() ** 2 / code.quant_a))
    assert np.isnan(back[~coded]).all()   # +Inf beyond depth.max (8 m) has no code: NaN when read
    # counted after publication, on the copies' own thread
    wait_for(lambda: all(node.counts()[""].get(f"out:{n}", 0) == 1 for n in COMPRESSED), what="the copies counted")


@pytest.mark.parametrize("topic,overrides", [
    ("depth/compressedDepth", {"depth.scale": 1.0}),
    ("segmentation/colored/compressed", {"depth.variant": "", "segmentation.variant": "dpt_hybrid_ade20k",
                                         "segmentation.weights": "random"}),
])
def test_a_compressed_subscriber_alone_gets_its_copy_and_the_image_is_not_published(harness, topic, overrides):
    node = harness.start_node(**overrides)
    got, pub = _connect(harness, node, {topic: CompressedImage})
    publish_until(pub, lambda i: make_image(i, width=40, height=30), got[topic])
    wait_for(lambda: node.counts()[""].get(f"out:{topic}", 0) >= 1, what="the output counted")
    c = node.counts()[""]
    assert [k for k in c if k.startswith("out:")] == [f"out:{topic}"], c
    msg = got[topic][0]
    shape = (read_compressed_depth(msg.format, msg.data)[2] if "Depth" in topic else read_compressed(msg.format, msg.data)[1]).shape
    assert shape[:2] == (30, 40)


def test_compressed_copies_are_encoded_only_while_subscribed_even_without_lazy(harness):
    node = harness.start_node(lazy=False, **{"depth.scale": 1.0})
    pub = harness.probe.create_publisher(Image, "image", qos("reliable"))
    wait_for(lambda: pub.get_subscription_count() > 0, what="discovery")
    pub.publish(make_image(5))
    wait_for(lambda: node.counts()[""].get("processed", 0) == 1, what="processed frame")
    c = node.counts()[""]
    assert c["out:depth"] == c["out:inverse_depth/colored"] == 1
    assert not any(f"out:{n}" in c for n in COMPRESSED), c


def test_compressed_parameters_apply_from_the_next_frame(harness):
    node = harness.start_node(**{"depth.scale": 1.0, "depth.shift": 0.2})
    names = {"depth": Image, "depth/compressedDepth": CompressedImage,
             "inverse_depth/colored/compressed": CompressedImage}
    got, pub = _connect(harness, node, names)

    def frame(sec: int) -> dict:
        pub.publish(make_image(sec * 1_000_000_000, width=64, height=48))
        wait_for(lambda: all(any(m.header.stamp.sec == sec for m in got[n]) for n in names), timeout=30,
                 what=f"the outputs of frame {sec}")
        return {n: _frame_of(got[n], sec) for n in names}

    first = frame(1)
    assert all(r.successful for r in set_params(harness, node, **{
        "compressed.jpeg_quality": 20, "compressed.depth_max": 3.0, "compressed.depth_quantization": 50.0}))
    second = frame(2)   # same pixels as frame 1 (make_image's seed), new parameters
    assert len(second["inverse_depth/colored/compressed"].data) < 0.7 * len(first["inverse_depth/colored/compressed"].data)
    _, header, back = read_compressed_depth(second["depth/compressedDepth"].format, second["depth/compressedDepth"].data)
    code = depth_quantization(3.0, 50.0)
    assert header == (0, code.quant_a, code.quant_b) == (0, 2550.0, 1.0 - 850.0)
    depth = conversions.image_array(second["depth"])
    assert np.isnan(back[depth >= 3.0]).all() and np.isfinite(back[depth < 3.0]).all()

    assert all(r.successful for r in set_params(harness, node, **{"depth.encoding": "16UC1"}))
    third = frame(3)
    encoding, header, mm = read_compressed_depth(third["depth/compressedDepth"].format, third["depth/compressedDepth"].data)
    assert (encoding, header) == ("16UC1", (0, 0.0, 0.0))
    want = conversions.image_array(third["depth"])
    np.testing.assert_array_equal(mm, np.where(want > 3000, 0, want))   # millimetres, none beyond depth_max

    results = set_params(harness, node, **{"compressed.jpeg_quality": 0})
    assert not results[0].successful and "compressed.jpeg_quality" in results[0].reason
    results = set_params(harness, node, **{"compressed.depth_max": 0.0})
    assert not results[0].successful and "compressed.depth_max" in results[0].reason


@pytest.mark.parametrize("overrides,absent", [
    ({"publish.compressed": False}, COMPRESSED),
    ({"publish.depth": False}, ("depth/compressedDepth",)),
])
def test_compressed_copies_follow_their_switches(harness, overrides, absent):
    node = harness.start_node(**{"depth.scale": 1.0}, **overrides)
    topics = {name for name, _ in node.get_publisher_names_and_types_by_node(node.get_name(), node.get_namespace())}
    if overrides.get("publish.compressed") is False:
        assert not any(t.endswith(("/compressed", "/compressedDepth")) for t in topics), topics
        return
    assert {f"/{n}" for n in COMPRESSED} <= topics
    subscribed = {n: harness.collector(CompressedImage, n) for n in absent}
    colored = harness.collector(CompressedImage, "inverse_depth/colored/compressed")
    pub = harness.probe.create_publisher(Image, "image", qos("reliable"))
    wait_for(lambda: pub.get_subscription_count() > 0 and
             all(node.cameras[0].pubs[n].get_subscription_count() > 0 for n in absent), what="discovery")
    publish_until(pub, lambda i: make_image(i, width=40, height=30), colored)
    wait_for(lambda: node.counts()[""].get("processed", 0) >= 1, what="processed")
    assert all(not msgs for msgs in subscribed.values())
    assert not any(f"out:{n}" in node.counts()[""] for n in absent)


def _hold_compression(monkeypatch) -> tuple[threading.Event, threading.Event]:
    """Hold the encoding thread at each compressedDepth copy until the returned ``gate`` is set; ``entered`` is set
    once it holds."""
    gate, entered = threading.Event(), threading.Event()
    real = pipeline.compress_depth

    def held(*args, **kwargs):
        entered.set()
        gate.wait(20)
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline, "compress_depth", held)
    return gate, entered


@contextlib.contextmanager
def _first_copy_held(harness, monkeypatch):
    """A node (depth.scale 1) whose encoding thread holds at frame 1's depth/compressedDepth copy until the block
    ends: yields the node, its depth and depth/compressedDepth messages received, and the image publisher."""
    gate, entered = _hold_compression(monkeypatch)
    node = harness.start_node(**{"depth.scale": 1.0})
    got, pub = _connect(harness, node, {"depth": Image, "depth/compressedDepth": CompressedImage})
    try:
        pub.publish(make_image(1 * 1_000_000_000, width=40, height=30))
        wait_for(entered.is_set, what="the first copy being encoded")
        yield node, got, pub
    finally:
        gate.set()


def test_slow_compression_never_holds_back_the_images_and_its_drops_are_counted(harness, monkeypatch):
    """The copies are encoded on their own thread: while it is busy (held here at its first copy) every
    frame's depth is published, and of the copies that queue up only each camera's newest is kept; the
    ones it replaces are counted as dropped:<topic>."""
    with _first_copy_held(harness, monkeypatch) as (node, got, pub):
        for sec in (2, 3, 4):
            pub.publish(make_image(sec * 1_000_000_000, width=40, height=30))
            # (the worker counts the frame, then hands its copy to the thread, after it has published its depth)
            wait_for(lambda: any(m.header.stamp.sec == sec for m in got["depth"]) and worker_done(node),
                     what=f"depth of frame {sec}")
        assert got["depth/compressedDepth"] == []   # the thread is still on frame 1
        c = node.counts()[""]
        assert c["dropped:depth/compressedDepth"] == 2 and c["processed"] == 4   # frames 2 and 3 replaced
    wait_for(lambda: len(got["depth/compressedDepth"]) == 2, what="the copies of frames 1 and 4")
    assert [m.header.stamp.sec for m in got["depth/compressedDepth"]] == [1, 4]
    wait_for(lambda: node.counts()[""].get("out:depth/compressedDepth", 0) == 2, what="the copies counted")
    c = node.counts()[""]
    assert c["out:depth"] == c["out:depth/compressedDepth"] + c["dropped:depth/compressedDepth"] == 4
    diag = {kv.key: kv.value for st in node.diagnostics().status for kv in st.values}
    assert diag["dropped.depth/compressedDepth"] == "2" and float(diag["latency.compressed_copies_ms"]) > 0


def test_copies_waiting_or_being_encoded_when_the_node_stops_are_counted_dropped_and_said(harness, monkeypatch,
                                                                                          capfd):
    """A frame's compressed copy still waiting for the encoding thread (busy with an older one) when the node stopped
    was counted nowhere: neither out:<topic> nor dropped:<topic>, and the stop's INFO line left it out. So was the copy
    the thread was encoding, whose publish then failed (the node destroyed). Both are now counted as dropped:<topic>,
    at the stop (the thread publishes no copy after it), and said in that line."""
    with _first_copy_held(harness, monkeypatch) as (node, got, pub):
        threads = list(node._compressed._threads)
        pub.publish(make_image(2 * 1_000_000_000, width=40, height=30))
        wait_for(lambda: any(m.header.stamp.sec == 2 for m in got["depth"]), what="depth of frame 2")
        harness.executor.remove_node(node)
        harness.nodes.remove(node)
        node.destroy_node(0.5)   # (the thread stays on frame 1's copy: frame 2's waits)
        after_stop = dict(node.counts()[""])
    for thread in threads:   # frame 1's copy encoded after the stop (the hold released as the block ended)
        thread.join(20)
        assert not thread.is_alive()
    c = node.counts()[""]
    assert c == after_stop, (after_stop, c)
    assert (c["processed"], c.get("dropped:depth/compressedDepth", 0), c.get("out:depth/compressedDepth", 0)) == \
        (2, 2, 0), c
    err = capfd.readouterr().err
    assert err.count("stopped: 2 compressed copy(ies) not yet published were dropped") == 1, err


def test_a_failed_encoding_is_counted_and_the_next_frame_encoded(harness, monkeypatch):
    calls = []
    real = pipeline.compress_image

    def fails_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("OpenCV could not encode (injected)")
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline, "compress_image", fails_once)
    node = harness.start_node()
    got, pub = _connect(harness, node, {"inverse_depth/colored/compressed": CompressedImage})
    publish_until(pub, lambda i: make_image(i, width=40, height=30), got["inverse_depth/colored/compressed"])
    wait_for(lambda: node.counts()[""].get("incomplete:compression", 0) == 1, what="the failure counted")
    assert node.error_counts()["compression"] == 1
    assert node.counts()[""]["processed"] >= 2


def test_copies_that_cannot_be_handed_to_their_threads_leave_the_frame_processed(harness, monkeypatch):
    """The frame's outputs published, handing its compressed copies to their threads (_CompressedCopies.submit)
    raised: the worker counted the frame error:internal (and an "[internal] unexpected error" line), though its outputs
    had gone out, and not their out:<topic> either. Now the frame is counted processed as its outputs go out, and the
    copies' failure is theirs, as a failed encoding's: incomplete:compression and the node's compression error, once
    for the frame; the next frame's copies go out. (No real path makes submit raise, which takes a lock and sets a
    dict entry: the fault is injected; the node, the frames and the copies' threads are the real ones.)"""
    node = harness.start_node()
    got, pub = _connect(harness, node, {"inverse_depth": Image, "inverse_depth/colored/compressed": CompressedImage})
    real, calls = node._compressed.submit, []

    def fails_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("injected")
        return real(*args, **kwargs)

    monkeypatch.setattr(node._compressed, "submit", fails_once)
    pub.publish(make_image(1 * 1_000_000_000, width=40, height=30))
    wait_for(lambda: len(got["inverse_depth"]) == 1, what="frame 1's output")
    wait_for(lambda: node.counts()[""].get("processed", 0) + node.counts()[""].get("error:internal", 0) == 1,
             what="frame 1 counted")
    c = node.counts()[""]
    assert [c.get(k, 0) for k in ("received", "processed", "out:inverse_depth", "incomplete:compression")] == \
        [1, 1, 1, 1], c
    assert "error:internal" not in c and dict(node.error_counts()) == {"compression": 1}, (c, node.error_counts())
    pub.publish(make_image(2 * 1_000_000_000, width=40, height=30))
    wait_for(lambda: len(got["inverse_depth/colored/compressed"]) == 1, what="frame 2's copy")
    assert got["inverse_depth/colored/compressed"][0].header.stamp.sec == 2
    c = node.counts()[""]
    assert (c["received"], c["processed"], c["out:inverse_depth/colored/compressed"]) == (2, 2, 1), c


def test_cameras_copies_encode_in_parallel_each_camera_in_frame_order(harness, monkeypatch):
    """One copies thread per camera (up to half the cores): a camera whose encoding is held does not hold back
    another camera's copies, and its own next frame waits for it (never two threads on one camera: frame order)."""
    import os

    gate, entered = threading.Event(), threading.Event()
    real = pipeline.compress_depth

    def first_held(*args, **kwargs):
        if not entered.is_set():
            entered.set()
            gate.wait(20)
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline, "compress_depth", first_held)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)))   # 8 cores for this process
    node = harness.start_node(cameras=["left", "right"], **{"depth.scale": 1.0})
    assert len(node._compressed._threads) == 2
    got = {ns: harness.collector(CompressedImage, f"{ns}/depth/compressedDepth") for ns in ("left", "right")}
    depth = {ns: harness.collector(Image, f"{ns}/depth") for ns in ("left", "right")}
    pubs = {ns: harness.probe.create_publisher(Image, f"{ns}/image", qos("reliable")) for ns in ("left", "right")}
    wait_for(lambda: all(c.pubs[n].get_subscription_count() > 0 for c in node.cameras
                         for n in ("depth", "depth/compressedDepth"))
             and all(p.get_subscription_count() > 0 for p in pubs.values()), what="discovery")
    try:
        pubs["left"].publish(make_image(1 * 1_000_000_000, width=40, height=30))
        wait_for(entered.is_set, what="left's first copy being encoded")
        pubs["right"].publish(make_image(2 * 1_000_000_000, width=40, height=30))
        wait_for(lambda: len(got["right"]) == 1, what="right's copy while left's is held")
        pubs["left"].publish(make_image(3 * 1_000_000_000, width=40, height=30))
        wait_for(lambda: len(depth["left"]) == 2, what="left's second depth")
        assert got["left"] == []   # its second copy waits for the first, though a thread is free
    finally:
        gate.set()
    wait_for(lambda: len(got["left"]) == 2, what="left's copies")
    assert [m.header.stamp.sec for m in got["left"]] == [1, 3] and got["right"][0].header.stamp.sec == 2
    from dpt_ros.ros.node import _CompressedCopies

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})   # 2 cores: one thread, as before
    one = _CompressedCopies(node, 2)
    one.stop(1.0)
    assert len(one._threads) == 1


def test_a_remapped_output_takes_its_compressed_copy_along(harness):
    """As image_transport 6 (Kilted) names a transport's topic: the base topic, remaps applied, + the suffix. With
    -r depth:=/foo/depth the copy is /foo/depth/compressedDepth (where a viewer subscribing /foo/depth through the
    compressedDepth transport looks) and it holds that depth; a remap of the copy's own name wins; copies of
    outputs not remapped keep their names."""
    node = harness.start_node(cli_args=["--ros-args", "-r", "depth:=/foo/depth",
                                        "-r", "inverse_depth/colored:=/bar/colored",
                                        "-r", "segmentation/compressed:=/own/seg"],
                              **{"depth.scale": 1.0, "depth.shift": 0.2, "depth.max": 8.0,
                                 "segmentation.variant": "dpt_hybrid_ade20k",
                                 "segmentation.weights": "random"})
    pubs = node.cameras[0].pubs
    assert {n: pubs[n].topic_name for n in ("depth", *COMPRESSED)} == {
        "depth": "/foo/depth", "depth/compressedDepth": "/foo/depth/compressedDepth",
        "inverse_depth/colored/compressed": "/bar/colored/compressed", "segmentation/compressed": "/own/seg",
        "segmentation/colored/compressed": "/segmentation/colored/compressed"}
    depth, copy = harness.collector(Image, "/foo/depth"), harness.collector(CompressedImage, "/foo/depth/compressedDepth")
    pub = harness.probe.create_publisher(Image, "image", qos("reliable"))
    wait_for(lambda: pubs["depth"].get_subscription_count() > 0 and pub.get_subscription_count() > 0 and
             pubs["depth/compressedDepth"].get_subscription_count() > 0, what="discovery")
    pub.publish(make_image(3 * 1_000_000_000, width=64, height=48))
    wait_for(lambda: depth and copy, what="the depth and its copy")
    encoding, _, back = read_compressed_depth(copy[0].format, copy[0].data)
    want = conversions.image_array(depth[0])
    assert encoding == "32FC1" and back.shape == want.shape == (48, 64)
    ok = np.isfinite(back)   # (depth within depth.max of 8 m, most of it: 1 / (inverse depth + 0.2) < 5 m)
    assert ok.mean() > 0.5 and np.allclose(back[ok], want[ok], rtol=0.01)


def test_a_jpeg_cut_short_is_processed_said_and_counted(harness):
    """image_transport:=compressed, a JPEG without its last bytes (no end-of-image marker: a relay or Wi-Fi cut it):
    it was refused without a word of why on OpenCV 5, and processed in silence on OpenCV 4 (libjpeg's warning on the
    process's stderr only), its last blocks grey. Now it is processed (as image_transport's subscriber takes it),
    said at WARN (once per 5 s per camera, as other per-frame problems) and counted incomplete.truncated_jpeg."""
    import cv2
    from rcl_interfaces.msg import Log

    from dpt_ros.ros.testing import pattern_image

    log = harness.collector(Log, "/rosout")
    node = harness.start_node(namespace="cut", image_transport="compressed")
    out = harness.collector(Image, "/cut/inverse_depth")
    pub = harness.probe.create_publisher(CompressedImage, "/cut/image/compressed", qos())
    wait_for(lambda: pub.get_subscription_count() > 0 and
             node.cameras[0].pubs["inverse_depth"].get_subscription_count() > 0, what="discovery")
    jpeg = cv2.imencode(".jpg", pattern_image(64, 48)[..., ::-1])[1].tobytes()
    for sec, data in ((1, jpeg), (2, jpeg[:-5]), (3, jpeg[:-10])):
        pub.publish(conversions.compressed_msg(make_image(sec * 10**9).header, data, "jpeg"))
        # (counted processed after its output is published)
        wait_for(lambda: len(out) == sec and worker_done(node), what=f"the output of frame {sec}")
    assert [(m.width, m.height, m.header.stamp.sec) for m in out] == [(64, 48, 1), (64, 48, 2), (64, 48, 3)]
    counts = node.counts()[""]
    assert (counts["received"], counts["processed"], counts["incomplete:truncated_jpeg"]) == (3, 3, 2), counts
    assert not [k for k in counts if k.startswith("error:")], counts
    cam = {v.key: v.value for v in node.diagnostics().status[1].values}
    assert cam["incomplete.truncated_jpeg"] == "2", cam
    wait_for(lambda: [m for m in log if "[truncated_jpeg]" in m.msg], what="the warning")
    (line,) = [m for m in log if "[truncated_jpeg]" in m.msg]   # (the second within 5 s not said again)
    assert line.level == Log.WARN and line.msg == (
        f"[truncated_jpeg] /cut/image/compressed: JPEG of {len(jpeg) - 5} bytes ends before its end-of-image marker "
        "(FFD9): the message was cut short by its publisher, a relay or the recording (Wi-Fi). Decoded as far as its "
        "data goes, the rest of the image (its last blocks, from the bottom right) grey, and processed: the outputs "
        "there are of grey (check that the camera's own compressed topic decodes whole, e.g. in rqt_image_view)")


def test_a_refused_jpeg_with_bytes_after_its_end_is_said_to_be_corrupt_not_truncated(harness):
    """A JPEG the decoder refuses (a bogus Huffman table), its end-of-image marker there and bytes after it (as a
    driver pads or a relay leaves them), was logged as 'truncated, the data ends before the JPEG's end-of-image
    marker': now 'corrupt', by jpeg_truncated's rule (no FFD9 after the last FFDA); one cut in its scan before the
    same bytes is still 'truncated'. Both counted error.encoding, the next whole JPEG processed."""
    import cv2
    from rcl_interfaces.msg import Log

    from dpt_ros.ros.testing import pattern_image

    log = harness.collector(Log, "/rosout")
    node = harness.start_node(namespace="bad", image_transport="compressed")
    out = harness.collector(Image, "/bad/inverse_depth")
    pub = harness.probe.create_publisher(CompressedImage, "/bad/image/compressed", qos())
    wait_for(lambda: pub.get_subscription_count() > 0 and
             node.cameras[0].pubs["inverse_depth"].get_subscription_count() > 0, what="discovery")
    jpeg = cv2.imencode(".jpg", pattern_image(64, 48)[..., ::-1])[1].tobytes()
    dht = jpeg.index(b"\xff\xc4")
    bogus = jpeg[:dht + 5] + b"\xff" * 16 + jpeg[dht + 21:] + b"\x12\xff\x34"
    scan = jpeg.index(b"\xff\xda")
    cut = jpeg[:dht + 5] + b"\xff" * 16 + jpeg[dht + 21:scan + 40] + b"\x12\xff\x34"
    for sec, data in ((1, bogus), (2, cut), (3, jpeg)):   # (one at a time: the node keeps only the newest waiting)
        pub.publish(conversions.compressed_msg(make_image(sec * 10**9).header, data, "jpeg"))
        wait_for(lambda: node.counts()[""].get("error:encoding", 0) + len(out) == sec, what=f"frame {sec} counted")
    counts = node.counts()[""]
    assert out[0].header.stamp.sec == 3 and (counts["received"], counts["error:encoding"]) == (3, 2), counts
    check = "(check that the camera's own compressed topic decodes, e.g. in rqt_image_view); the frame is skipped"
    wait_for(lambda: len([m for m in log if "[encoding]" in m.msg]) == 2, what="the two lines")
    assert [(m.level, m.msg) for m in log if "[encoding]" in m.msg] == [
        (Log.ERROR, f"[encoding] /bad/image/compressed: could not decode jpeg image of {len(bogus)} bytes: corrupt "
                    f"data, which the decoder refused {check}"),
        (Log.ERROR, f"[encoding] /bad/image/compressed: could not decode jpeg image of {len(cut)} bytes: truncated, "
                    "the data ends before the JPEG's end-of-image marker (FFD9): the message was cut short by its "
                    f"publisher, a relay or the recording {check}")]


def _refused(msg_type, header):
    """A message of ``msg_type`` that rclpy's publish refuses (a field of the wrong type: its conversion raises)."""
    msg = msg_type(header=header)
    object.__setattr__(msg, "_format" if msg_type is CompressedImage else "_encoding", 5)   # (its setter refuses it)
    return msg


def test_a_frame_whose_outputs_fail_to_publish_but_whose_copies_go_out_is_processed(harness, monkeypatch):
    """inverse_depth and inverse_depth/colored/compressed subscribed; the frame's inverse_depth message is refused by
    rclpy's publish (6d7d546: that output alone is lost). The frame was counted error:publish and said "none of its
    outputs was published" while its compressed copy still went out (out:inverse_depth/colored/compressed). Now the
    frame is processed, incomplete:publish, and the line, said once its copies are done, says they were published."""
    from rcl_interfaces.msg import Log

    log = harness.collector(Log, "/rosout")
    node = harness.start_node()
    real = node._postprocess

    def refused(job, s):
        return {**real(job, s), "inverse_depth": _refused(Image, job["frame"].msg.header)}

    monkeypatch.setattr(node, "_postprocess", refused)
    # its copy held until the batch's figures are in: nothing of the frame has gone out then, and it has no age yet
    gate, encode = threading.Event(), pipeline.compress_image
    monkeypatch.setattr(pipeline, "compress_image", lambda *a, **kw: (gate.wait(30), encode(*a, **kw))[1])
    got, pub = _connect(harness, node, {"inverse_depth": Image, "inverse_depth/colored/compressed": CompressedImage})
    pub.publish(make_image(1 * 1_000_000_000, width=40, height=30))
    wait_for(lambda: _model_status(node)["latency.batches"] == "1", what="the batch's figures")
    assert _model_status(node)["age_p50_ms"] == "nan" and "processed" not in node.counts()[""], node.counts()[""]
    gate.set()
    wait_for(lambda: node.counts()[""].get("processed", 0) == 1 and len(got["inverse_depth/colored/compressed"]) == 1,
             what="the frame counted once its copy went out, and the copy")
    assert got["inverse_depth"] == []
    assert dict(node.counts()[""]) == {"received": 1, "processed": 1, "incomplete:publish": 1,
                                       "publish_failed:inverse_depth": 1, "out:inverse_depth/colored/compressed": 1}
    assert dict(node.error_counts()) == {"publish": 1}
    # processed, a copy of it published: its one age counts, added as its copy went out
    model = _model_status(node)
    assert model["age_p50_ms"] == model["age_p99_ms"] and len(node._ages_ms) == 1, (model, list(node._ages_ms))
    wait_for(lambda: any(m.msg.startswith("[publish]") for m in log), what="the line")
    assert [m.msg for m in log if m.msg.startswith("[")] == [
        "[publish] /image: publishing /inverse_depth failed: TypeError: bad argument type for built-in operation; "
        "its compressed copies were published (if it repeats, report it with this line)"]


def test_a_copy_whose_publish_raises_is_counted_as_a_publish_failure(harness, monkeypatch):
    """A compressed copy's publish refused by rclpy (its message given a field of the wrong type; the publisher is the
    node's real one): it was counted and said as a failed encoding (incomplete:compression, "[compression] ..."),
    though an image output's publish that raises is publish_failed:<topic> (6d7d546). Now it is counted as one too:
    publish_failed:<topic>, incomplete:publish and the node's publish error, said in a [publish] line."""
    from rcl_interfaces.msg import Log

    log = harness.collector(Log, "/rosout")
    monkeypatch.setattr(conversions, "compressed_output", lambda header, data, fmt: _refused(CompressedImage, header))
    node = harness.start_node()
    got, pub = _connect(harness, node, {"inverse_depth": Image, "inverse_depth/colored/compressed": CompressedImage})
    pub.publish(make_image(1 * 1_000_000_000, width=40, height=30))
    wait_for(lambda: sum(node.error_counts().values()) == 1, what="the copy's failure counted")
    assert len(got["inverse_depth"]) == 1 and got["inverse_depth/colored/compressed"] == []
    assert dict(node.counts()[""]) == {"received": 1, "processed": 1, "out:inverse_depth": 1, "incomplete:publish": 1,
                                       "publish_failed:inverse_depth/colored/compressed": 1}
    assert dict(node.error_counts()) == {"publish": 1}
    diag = {kv.key: kv.value for st in node.diagnostics().status for kv in st.values}
    assert (diag["publish_failed.inverse_depth/colored/compressed"], diag["errors.publish"]) == ("1", "1")
    wait_for(lambda: any(m.msg.startswith("[") for m in log), what="the line")
    assert [m.msg for m in log if m.msg.startswith("[")] == [
        "[publish] /image: publishing /inverse_depth/colored/compressed failed: TypeError: bad argument type for "
        "built-in operation; a compressed copy: the frame's other outputs are published on their own (if it repeats, "
        "report it with this line)"]


def test_a_frame_whose_two_copies_fail_to_encode_counts_one_incomplete_frame(harness, monkeypatch):
    """incomplete.<reason> and errors.<reason> count frames (README): a frame whose two compressed copies both failed
    to encode counted incomplete:compression 2 and the node's compression error 2. Now one each, the line naming both
    copies."""
    from rcl_interfaces.msg import Log

    def fails(*args, **kwargs):
        raise RuntimeError("OpenCV could not encode (injected)")

    log = harness.collector(Log, "/rosout")
    monkeypatch.setattr(pipeline, "compress_image", fails)
    monkeypatch.setattr(pipeline, "compress_depth", fails)
    node = harness.start_node(**{"depth.scale": 1.0, "depth.shift": 0.2, "depth.max": 8.0})
    got, pub = _connect(harness, node, {"inverse_depth": Image, "inverse_depth/colored/compressed": CompressedImage,
                                        "depth/compressedDepth": CompressedImage})
    pub.publish(make_image(1 * 1_000_000_000, width=40, height=30))
    wait_for(lambda: len(got["inverse_depth"]) == 1 and any(m.msg.startswith("[compression]") for m in log),
             what="the frame and its copies' line")
    assert dict(node.counts()[""]) == {"received": 1, "processed": 1, "out:inverse_depth": 1,
                                       "incomplete:compression": 1}
    assert dict(node.error_counts()) == {"compression": 1}
    assert [m.msg for m in log if m.msg.startswith("[")] == [
        "[compression] /inverse_depth/colored/compressed: RuntimeError: OpenCV could not encode (injected); "
        "/depth/compressedDepth: RuntimeError: OpenCV could not encode (injected)"]


def _nothing_goes_out(harness, monkeypatch):
    """A node whose frame of stamp 1 s, sent to it, has its inverse_depth and that one's compressed copy both refused
    by rclpy's publish (until ``monkeypatch.undo()``): (node, received messages by output, image publisher)."""
    node = harness.start_node()
    real = node._postprocess

    def refused(job, s):
        return {**real(job, s), "inverse_depth": _refused(Image, job["frame"].msg.header)}

    monkeypatch.setattr(node, "_postprocess", refused)
    monkeypatch.setattr(conversions, "compressed_output", lambda header, data, fmt: _refused(CompressedImage, header))
    got, pub = _connect(harness, node, {"inverse_depth": Image, "inverse_depth/colored/compressed": CompressedImage})
    pub.publish(make_image(1 * 1_000_000_000, width=40, height=30))
    return node, got, pub


def test_a_frame_of_which_nothing_goes_out_counts_one_failed_frame_not_a_processed_one(harness, monkeypatch):
    """The frame's inverse_depth and its inverse_depth/colored/compressed copy both refused by rclpy's publish:
    nothing of the frame went out. It counted incomplete:publish 2 and the node's publish error 2 (the image output's,
    then the copy's); then (35a9a0d) processed and incomplete:publish once, though processed counts frames whose
    outputs went out and error:publish is README's count for a frame of which nothing did. Now error:publish once and
    not processed (received = processed + ... + errors still holds); publish_failed:<topic> still says each output, the
    line says that nothing went out."""
    from rcl_interfaces.msg import Log

    log = harness.collector(Log, "/rosout")
    node, got, pub = _nothing_goes_out(harness, monkeypatch)
    wait_for(lambda: node.counts()[""].get("publish_failed:inverse_depth/colored/compressed", 0) == 1,
             what="the copy's failure counted")
    wait_for(lambda: node.counts()[""].get("error:publish", 0) == 1, what="the frame counted")
    assert dict(node.counts()[""]) == {"received": 1, "error:publish": 1, "publish_failed:inverse_depth": 1,
                                       "publish_failed:inverse_depth/colored/compressed": 1}
    assert dict(node.error_counts()) == {"publish": 1}
    camera = {kv.key: kv.value for kv in node.diagnostics().status[1].values}
    assert (camera["processed"], camera["error.publish"]) == ("0", "1"), camera
    assert got["inverse_depth"] == [] and got["inverse_depth/colored/compressed"] == []
    wait_for(lambda: len([m for m in log if m.msg.startswith("[publish]")]) == 2, what="the lines")
    assert [m.msg for m in log if m.msg.startswith("[publish]")] == [
        "[publish] /image: publishing /inverse_depth/colored/compressed failed: TypeError: bad argument type for "
        "built-in operation; a compressed copy: the frame's other outputs are published on their own (if it repeats, "
        "report it with this line)",
        "[publish] /image: publishing /inverse_depth failed: TypeError: bad argument type for built-in operation; "
        "none of its outputs was published, nor its compressed copies (if it repeats, report it with this line)"]


def test_a_frame_of_which_nothing_goes_out_has_no_age(harness, monkeypatch):
    """/diagnostics' ages are of frames published (input stamp -> publish, README). A frame whose inverse_depth and its
    compressed copy were both refused by rclpy's publish, counted error:publish and not processed, still added an age
    (the batch's loop took every frame whose count waited for its copies): one age of a frame of which nothing went
    out. Now it adds none; the next frame, published, adds its one."""
    node, got, pub = _nothing_goes_out(harness, monkeypatch)
    wait_for(lambda: node.counts()[""].get("error:publish", 0) == 1 and _model_status(node)["latency.batches"] == "1",
             what="the frame counted and the batch's figures")
    model = _model_status(node)
    assert (model["age_p50_ms"], model["age_p99_ms"]) == ("nan", "nan"), model
    monkeypatch.undo()   # the next frame's outputs and copy go out
    pub.publish(make_image(2 * 1_000_000_000, width=40, height=30))
    wait_for(lambda: len(got["inverse_depth"]) == 1 and _model_status(node)["latency.batches"] == "2",
             what="frame 2 published and the batch's figures")
    model = _model_status(node)
    assert model["age_p50_ms"] == model["age_p99_ms"] != "nan" and len(node._ages_ms) == 1, (model, node._ages_ms)


def test_the_first_image_is_of_a_frame_whose_outputs_were_published(harness, monkeypatch):
    """startup.first_image_s is the arrival of the first frame whose outputs were published (README). In a batch of
    two cameras' frames, the earlier one's inverse_depth refused by rclpy's publish (its compressed copy still to go,
    nothing of it published in the batch), the later one's published: the batch's earliest arrival was taken, that
    of the frame none of whose outputs went out. Now the published frame's."""
    from dpt_ros.ros import node as node_module

    node = harness.start_node(cameras=["a", "b"])
    real = node._postprocess

    def refused(job, s):   # (camera a's frame alone)
        msgs = real(job, s)
        return {**msgs, "inverse_depth": _refused(Image, job["frame"].msg.header)} if job["frame"].camera.ns == "a" \
            else msgs

    monkeypatch.setattr(node, "_postprocess", refused)
    names = {"a": ("inverse_depth", "inverse_depth/colored/compressed"), "b": ("inverse_depth",)}
    got = {(ns, n): harness.collector(CompressedImage if n.endswith("compressed") else Image, f"{ns}/{n}")
           for ns, ns_names in names.items() for n in ns_names}
    wait_for(lambda: all(c.pubs[n].get_subscription_count() > 0 for c in node.cameras for n in names[c.ns.strip("/")]),
             what="discovery")
    assert "first_output_s" not in node._startup
    now = time.monotonic()
    arrived = {"a": now - 0.5, "b": now - 0.25}   # (a's first)
    with node._wake:   # both frames waiting when the worker wakes: one batch
        for cam in node.cameras:
            ns = cam.ns.strip("/")
            cam.counts["received"] += 1
            cam.pending = node_module._Frame(cam, make_image(1 * 1_000_000_000, width=40, height=30), arrived[ns])
        node._wake.notify()
    wait_for(lambda: len(got["b", "inverse_depth"]) == 1 and len(got["a", "inverse_depth/colored/compressed"]) == 1,
             what="b's output and a's copy")
    assert got["a", "inverse_depth"] == [] and node._batches == 1
    assert node._startup["first_image_s"] == pytest.approx(arrived["b"] - node._started_at), node._startup
