"""depth.align against a fit written here from the messages alone: the published inverse_depth and the reference
depth sent, ``1 / reference = scale * inverse_depth + shift`` by least squares over every 4th pixel with a
measurement, refitted three times without the 10 % largest residuals (README). Random dpt_tiny weights at 64 px."""
import numpy as np
import pytest
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from dpt_ros.ros import conversions
from dpt_ros.ros.testing import exact_reference, make_image, model_inverse_depth, qos, set_params, wait_for

DOMAIN = 69


def _reference_fit(x, ref_m, stride=4, trim=0.1, refits=3):
    """(scale, shift, pixels) of README's fit, written with np.linalg.lstsq."""
    x = x[::stride, ::stride].astype(np.float64).ravel()
    r = ref_m[::stride, ::stride].astype(np.float64).ravel()
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(x) & np.isfinite(r) & (r > 0)
    x, y = x[ok], 1.0 / r[ok]
    keep = np.ones(x.size, bool)
    for i in range(refits + 1):
        (a, b), *_ = np.linalg.lstsq(np.stack([x[keep], np.ones(keep.sum())], 1), y[keep], rcond=None)
        if i == refits:
            return a, b, x.size
        residual = np.abs(a * x + b - y)
        keep = residual <= np.quantile(residual, 1.0 - trim)


@pytest.fixture
def aligned(harness):
    """A node with depth.align, collectors of depth and inverse_depth, and send(i, make_reference[, reference_frame_id])
    that publishes frame i (frame_id cam_optical) with the reference make_reference(model inverse depth) -> (array,
    encoding) of its stamp (and frame_id, by default the image's) and returns
    (published inverse depth, reference array, published depth or None, the camera's counts of that frame)."""
    node, got, pub, ref_pub = harness.aligned_node(("depth", "inverse_depth"))
    depth, inv, cam = got["depth"], got["inverse_depth"], node.cameras[0]

    def send(i, make_reference, reference_frame_id=None):
        frame = make_image(1_000_000_000 * i, width=80, height=60, seed=i)
        values, encoding = make_reference(model_inverse_depth(node, frame))
        header = frame.header if reference_frame_id is None else Header(stamp=frame.header.stamp,
                                                                         frame_id=reference_frame_id)
        ref_pub.publish(conversions.image_msg(header, values, encoding))
        wait_for(lambda: cam.references and cam.references[-1][0] == 1_000_000_000 * i, what="reference stored")
        before = dict(node.counts()[""])
        pub.publish(frame)
        wait_for(lambda: node.counts()[""].get("processed", 0) > before.get("processed", 0), what=f"frame {i}")
        wait_for(lambda: any(m.header.stamp == frame.header.stamp for m in inv), what=f"inverse depth {i}")
        counts = {k: v - before.get(k, 0) for k, v in node.counts()[""].items() if v != before.get(k, 0)}
        if counts.get("out:depth"):
            wait_for(lambda: any(m.header.stamp == frame.header.stamp for m in depth), what=f"depth {i}")
        x = conversions.image_array(next(m for m in inv if m.header.stamp == frame.header.stamp))
        d = [conversions.image_array(m) for m in depth if m.header.stamp == frame.header.stamp]
        return x, values, (d[0] if d else None), counts

    def set_(**values):
        assert all(r.successful for r in set_params(harness, node, **values))

    return node, send, set_


def _alignment(node):
    values = {kv.key: kv.value for kv in node.diagnostics().status[1].values}
    return float(values["alignment.scale"]), float(values["alignment.shift"]), int(values["alignment.pixels"])


def test_depth_min_max_clip_the_aligned_depth_and_do_not_choose_the_reference_pixels(aligned):
    """depth.min / depth.max apply to the depth published with the fit (-Inf / +Inf, REP 117), as without
    alignment; the fit takes every measured reference pixel. A scene wholly beyond depth.max is a depth image of
    +Inf, not a frame without depth counted incomplete:alignment ('only 0 pixels with a valid reference depth')."""
    node, send, set_ = aligned
    set_(**{"depth.min": 2.0, "depth.max": 4.0})
    x, ref, d, counts = send(1, lambda x: (exact_reference(x)[0], "32FC1"))
    a, b = exact_reference(x)[1]
    assert counts.get("out:depth") == 1 and "incomplete:alignment" not in counts
    assert _alignment(node) == (pytest.approx(a, rel=1e-4), pytest.approx(b, rel=1e-4), 15 * 20)
    full = 1.0 / (a * x + b)
    assert (full < 2.0).sum() > 100 and (full > 4.0).sum() > 100   # both clips in play
    np.testing.assert_array_equal(np.isneginf(d), full < 2.0)
    np.testing.assert_array_equal(np.isposinf(d), full > 4.0)
    inside = np.isfinite(d)
    np.testing.assert_allclose(d[inside], full[inside], rtol=1e-4)

    set_(**{"depth.min": 0.0, "depth.max": 1.0})                      # the whole scene (1.4-5 m) beyond it
    x, ref, d, counts = send(2, lambda x: (exact_reference(x)[0], "32FC1"))
    assert counts.get("out:depth") == 1 and "incomplete:alignment" not in counts
    assert np.isposinf(d).all()
    assert _alignment(node) == (pytest.approx(exact_reference(x)[1][0], rel=1e-4),
                                pytest.approx(exact_reference(x)[1][1], rel=1e-4), 15 * 20)


def test_a_camera_without_references_is_told_apart_from_one_whose_references_miss_the_tolerance(harness):
    """Two cameras, references for /a only: /a's depth is the fit, /b's frames publish no depth, counted
    incomplete:alignment on /b alone, and the log says nothing came on /b/depth_reference (it said 'no reference
    depth ... within depth.align_tolerance', as for a late one, which sent users to the tolerance). A reference 2 s
    off the frame is named with its distance and the clocks as the suspect, and what to do (it asked only whether the
    two are stamped by one clock): one time source, or a tolerance above a constant offset, where that is within its
    range (0..10 s)."""
    from rcl_interfaces.msg import Log

    log = harness.collector(Log, "/rosout")
    node = harness.start_node(cameras=["/a", "/b"], **{"depth.align": True, "diagnostics.period": 60.0})
    depth, pubs = harness.cameras(node, ["/a", "/b"], "depth")
    ref_pub = harness.probe.create_publisher(Image, "/a/depth_reference", qos("reliable"))
    wait_for(lambda: ref_pub.get_subscription_count() > 0, what="discovery of /a/depth_reference")
    frame = make_image(3_000_000_000, width=80, height=60)
    x = model_inverse_depth(node, frame)
    ref, _ = exact_reference(x)
    ref[::7, ::5] = np.nan                                   # holes and wrong returns the trimming leaves out
    ref[30:34, 40:] *= 2.5
    ref_pub.publish(conversions.image_msg(frame.header, ref, "32FC1"))
    wait_for(lambda: len(node.cameras[0].references) == 1, what="reference stored")
    pubs["/a"].publish(frame)
    pubs["/b"].publish(frame)
    wait_for(lambda: all(node.counts()[ns].get("processed", 0) == 1 for ns in ("/a", "/b")), what="both frames")
    wait_for(lambda: len(depth["/a"]) == 1, what="/a's depth")
    a, b, n = _reference_fit(x, ref)
    assert n < 15 * 20
    statuses = {st.name: {kv.key: kv.value for kv in st.values} for st in node.diagnostics().status}
    got = statuses["dpt_node: camera /a"]
    assert (float(got["alignment.scale"]), float(got["alignment.shift"]), int(got["alignment.pixels"])) == (
        pytest.approx(a, rel=1e-4), pytest.approx(b, rel=1e-4), n)
    np.testing.assert_allclose(conversions.image_array(depth["/a"][0]), 1.0 / (a * x + b), rtol=1e-4)
    assert not any(k.startswith("alignment.") for k in statuses["dpt_node: camera /b"])
    assert depth["/b"] == [] and node.counts()["/b"]["incomplete:alignment"] == 1
    assert "incomplete:alignment" not in node.counts()["/a"]
    wait_for(lambda: any("[alignment] /b/depth_reference: nothing received on /b/depth_reference" in m.msg
                         for m in log), what="the reason for /b")
    said = next(m.msg for m in log if "[alignment] /b/depth_reference: nothing received" in m.msg)
    # the remap of camera /b's own name (a bare depth_reference:= rule, or the launch files' argument, which is that
    # rule, does not reach /b/depth_reference); only the node's own camera ('') is told the launch argument too
    assert "nothing publishes there: remap /b/depth_reference to the depth of this camera's view, e.g. -r " \
        "/b/depth_reference:=/camera/aligned_depth_to_color/image_raw (a camera without one has no aligned depth)" \
        in said, said

    late = make_image(5_000_000_000, width=80, height=60)   # /a's reference of 2 s before
    pubs["/a"].publish(late)
    wait_for(lambda: node.counts()["/a"].get("incomplete:alignment", 0) == 1, what="/a's frame without reference")
    # (that reference came stamped as the images, before the first of them: the depth camera has stopped)
    wait_for(lambda: any("the nearest of the 1 last received is 2 s older" in m.msg and "the depth camera has stopped"
                         in m.msg for m in log), what="the reason for /a, with what to do")
    other = node._no_reference(node.cameras[0], "/a/depth_reference", 5_000_000_000, [3_000_000_000], 1,
                               node._settings)   # (one that did not come stamped as the images: another clock?)
    assert other.endswith("the nearest of the 1 last received is 2 s older (are the image and the depth camera "
                          "stamped by one clock? Stamp the depth as the images are (one time source for both drivers), "
                          "or, if it is that far from them on every frame, raise depth.align_tolerance above 2 s)"), other
    far = node._no_reference(node.cameras[0], "/a/depth_reference", 15_000_000_000, [3_000_000_000], 1, node._settings)
    assert far.endswith("the nearest of the 1 last received is 12 s older (are the image and the depth camera stamped "
                        "by one clock? Stamp the depth as the images are (one time source for both drivers); an offset "
                        "of 10 s or more is beyond depth.align_tolerance's range)"), far


def test_a_compressed_depth_reference_topic_is_said_to_be_of_another_type(harness):
    """depth_reference remapped to a depth camera's compressedDepth topic (all a Wi-Fi robot offers): the subscription
    of sensor_msgs/Image receives nothing from its CompressedImage publisher, and the frames were logged 'nothing
    received ... yet from its 1 publisher(s): ... check that the depth camera publishes there', which it does; now the
    publisher's type, and to set depth.align_transport:=compressedDepth with the base topic to remap to."""
    from rcl_interfaces.msg import Log
    from sensor_msgs.msg import CompressedImage

    log = harness.collector(Log, "/rosout")
    topic = "/camera/aligned_depth_to_color/image_raw/compressedDepth"
    node = harness.start_node(**{"depth.align": True, "diagnostics.period": 60.0},
                              cli_args=["--ros-args", "-r", f"depth_reference:={topic}"])
    got, (pub,) = harness.connect(node, {"depth": Image}, {"image": Image})
    depth_camera = harness.other_participant().create_publisher(CompressedImage, topic, qos("best_effort"))
    wait_for(lambda: node.count_publishers(topic) == 1, what="discovery of the depth camera")
    pub.publish(make_image(1_000_000_000, width=80, height=60))
    wait_for(lambda: node.counts()[""].get("incomplete:alignment", 0) == 1, what="the frame")
    wait_for(lambda: any(m.msg.startswith(f"[alignment] {topic}: ") for m in log), what="its reason")
    reason = next(m.msg for m in log if m.msg.startswith(f"[alignment] {topic}: "))
    assert reason == (f"[alignment] {topic}: nothing received on {topic}: its 1 publisher(s) are of type "
                      "sensor_msgs/msg/CompressedImage, which this subscription (sensor_msgs/msg/Image, "
                      "depth.align_transport:=raw) does not receive: it is a compressedDepth transport: set "
                      "depth.align_transport:=compressedDepth and remap depth_reference to its base topic (-r "
                      "depth_reference:=/camera/aligned_depth_to_color/image_raw; the node adds /compressedDepth, as "
                      "image_transport does)"), reason
    assert got["depth"] == [] and depth_camera.get_subscription_count() == 0


def _compressed_depth_msg(header, encoding, codes, quant_a=0.0, quant_b=0.0):
    """A CompressedImage as image_transport's compressedDepth plugin sends it, built here: '<encoding>; compressedDepth
    png', the ConfigHeader (int32 0, float32 quant_a, quant_b; little endian) and cv2.imencode's 16-bit PNG."""
    import struct

    import cv2
    from sensor_msgs.msg import CompressedImage

    ok, png = cv2.imencode(".png", codes.astype(np.uint16))
    assert ok
    return CompressedImage(header=header, format=f"{encoding}; compressedDepth png",
                           data=struct.pack("<iff", 0, quant_a, quant_b) + png.tobytes())


def test_a_compressed_depth_reference_is_decoded_and_fitted(harness):
    """depth.align_transport:=compressedDepth: the node subscribes depth_reference/compressedDepth (a depth camera
    over Wi-Fi) and fits to the decoded depth: 16UC1 millimetres, and 32FC1 quantised in inverse depth with
    image_transport's defaults (quant_a = 100 * 101, quant_b = 1 - quant_a / 10 m), the fit of each the one of the
    depth decoded here. An RVL-coded one is said to be unsupported, with what to do, and the node goes on."""
    from rcl_interfaces.msg import Log
    from sensor_msgs.msg import CompressedImage

    log = harness.collector(Log, "/rosout")
    node = harness.start_node(**{"depth.align": True, "depth.align_transport": "compressedDepth",
                                 "diagnostics.period": 60.0})
    got, (pub, ref_pub) = harness.connect(node, {"depth": Image}, {"image": Image,
                                                                   "depth_reference/compressedDepth": CompressedImage})
    cam = node.cameras[0]
    quant_a = np.float32(100.0 * 101.0)
    quant_b = np.float32(1.0) - quant_a / np.float32(10.0)
    for i, encoding in ((1, "16UC1"), (2, "32FC1")):
        frame = make_image(1_000_000_000 * i, width=80, height=60, seed=i)
        x = model_inverse_depth(node, frame)
        metres = exact_reference(x)[0]
        if encoding == "16UC1":
            codes = np.round(metres * 1000.0)
            msg = _compressed_depth_msg(frame.header, encoding, codes)
            decoded = codes / 1000.0
        else:
            codes = np.floor(quant_a / metres + quant_b + np.float32(0.5))
            msg = _compressed_depth_msg(frame.header, encoding, codes, float(quant_a), float(quant_b))
            decoded = quant_a / (codes.astype(np.float32) - quant_b)
        ref_pub.publish(msg)
        wait_for(lambda: cam.references and cam.references[-1][0] == 1_000_000_000 * i, what="reference stored")
        before = node.counts()[""].get("out:depth", 0)
        pub.publish(frame)
        wait_for(lambda: node.counts()[""].get("out:depth", 0) > before, what=f"frame {i}")
        assert not any(k.startswith("incomplete:") for k in node.counts()[""]), node.counts()[""]
        a, b, n = _reference_fit(x, decoded)
        assert np.abs(decoded - metres).max() > 0   # (the codes do round: the fit is of the decoded depth)
        assert _alignment(node) == (pytest.approx(a, rel=1e-4), pytest.approx(b, rel=1e-4, abs=1e-6), n)
    frame = make_image(3_000_000_000, width=80, height=60, seed=3)
    rvl = _compressed_depth_msg(frame.header, "16UC1", np.full((60, 80), 1500))
    rvl.format = "16UC1; compressedDepth rvl"
    ref_pub.publish(rvl)
    wait_for(lambda: cam.references[-1][0] == 3_000_000_000, what="reference stored")
    pub.publish(frame)
    wait_for(lambda: node.counts()[""].get("incomplete:alignment", 0) == 1, what="frame 3")
    topic = node.resolve_topic_name("depth_reference/compressedDepth")
    wait_for(lambda: any(m.msg.startswith(f"[alignment] {topic}: ") for m in log), what="its reason")
    reason = next(m.msg for m in log if m.msg.startswith(f"[alignment] {topic}: "))
    assert "RVL-coded compressedDepth is not supported, only PNG; set the depth camera's compressedDepth " \
           "publisher to png" in reason, reason
    assert len(got["depth"]) >= 2


def test_a_depth_camera_offering_only_the_other_transport_is_said_so(harness):
    """depth_reference remapped to a depth camera's base topic, as README says, where only its compressedDepth is
    published (a bag, a Wi-Fi robot): the frames were told 'nothing publishes there: remap depth_reference to the
    depth of this camera's view, e.g. -r depth_reference:=/camera/aligned_depth_to_color/image_raw', the remap given;
    now that the camera offers the compressedDepth transport and the parameter to set."""
    from rcl_interfaces.msg import Log
    from sensor_msgs.msg import CompressedImage

    log = harness.collector(Log, "/rosout")
    topic = "/cam_b/aligned_depth_to_color/image_raw"
    node = harness.start_node(**{"depth.align": True, "diagnostics.period": 60.0},
                              cli_args=["--ros-args", "-r", f"depth_reference:={topic}"])
    got, (pub,) = harness.connect(node, {"depth": Image}, {"image": Image})
    harness.other_participant().create_publisher(CompressedImage, topic + "/compressedDepth", qos("best_effort"))
    wait_for(lambda: node.count_publishers(topic + "/compressedDepth") == 1, what="discovery of the depth camera")
    pub.publish(make_image(1_000_000_000, width=80, height=60))
    wait_for(lambda: node.counts()[""].get("incomplete:alignment", 0) == 1, what="the frame")
    wait_for(lambda: any(m.msg.startswith(f"[alignment] {topic}: ") for m in log), what="its reason")
    reason = next(m.msg for m in log if m.msg.startswith(f"[alignment] {topic}: "))
    assert reason == (f"[alignment] {topic}: nothing received on {topic} since it was subscribed, and nothing "
                      f"publishes there, but {topic}/compressedDepth has a publisher of CompressedImage: the depth "
                      "camera offers the compressedDepth transport, set depth.align_transport:=compressedDepth (ros2 "
                      "param set /dpt_node depth.align_transport compressedDepth; -p "
                      "depth.align_transport:=compressedDepth, or the launch files' argument "
                      "depth_reference_transport:=compressedDepth)"), reason


def test_a_frame_before_the_first_reference_of_a_publishing_depth_camera_is_not_blamed_on_the_remap(harness):
    """A frame taken before the first reference of a depth camera that does publish on depth_reference (at start-up;
    the remap is right) was logged 'nothing received on /depth_reference since it was subscribed: remap
    depth_reference ...', an ERROR sending the user to a remap that is right; it now says none came yet from its
    publisher. The next frame, with its reference, is fitted."""
    from rcl_interfaces.msg import Log

    log = harness.collector(Log, "/rosout")
    node, got, pub, ref_pub = harness.aligned_node()
    depth, cam = got["depth"], node.cameras[0]
    first = make_image(1_000_000_000, width=80, height=60)
    pub.publish(first)   # its reference not sent yet
    wait_for(lambda: node.counts()[""].get("incomplete:alignment", 0) == 1, what="the first frame")
    wait_for(lambda: any(m.msg.startswith("[alignment] /depth_reference: ") for m in log), what="its reason")
    reason = next(m.msg for m in log if m.msg.startswith("[alignment] /depth_reference: "))
    assert "nothing received on /depth_reference yet from its 1 publisher(s)" in reason, reason
    assert "remap" not in reason, reason
    second = make_image(2_000_000_000, width=80, height=60, seed=2)
    ref = exact_reference(model_inverse_depth(node, second))[0]
    ref_pub.publish(conversions.image_msg(second.header, ref, "32FC1"))
    wait_for(lambda: len(cam.references) == 1, what="reference stored")
    pub.publish(second)
    wait_for(lambda: any(m.header.stamp == second.header.stamp for m in depth), what="the second frame's depth")
    assert node.counts()[""]["incomplete:alignment"] == 1


def test_depth_align_turned_off_during_a_fit_leaves_no_alignment_in_the_status(harness, monkeypatch):
    """depth.align set false while the worker fits a frame's reference: the set-parameters callback unsubscribes
    depth_reference and clears the camera's last fit (/diagnostics' alignment.* are "with depth.align: the last fit");
    the fit that ends after it must not write it back. It did (the worker stored it outside the lock the callback
    clears it under), so the status showed alignment.scale / shift / pixels of a node that no longer aligns, until
    depth.align was set again. The fit is held at pipeline.fit_scale_shift until the set has been answered."""
    import threading

    from dpt_ros import pipeline

    node, got, pub, ref_pub = harness.aligned_node(("depth",))
    cam = node.cameras[0]
    entered, gate = threading.Event(), threading.Event()
    real = pipeline.fit_scale_shift

    def held(xs, ys, *args, **kwargs):
        entered.set()
        gate.wait(30)
        return real(xs, ys, *args, **kwargs)

    monkeypatch.setattr(pipeline, "fit_scale_shift", held)
    frame = make_image(2_000_000_000, width=80, height=60)
    ref, _ = exact_reference(model_inverse_depth(node, frame))
    ref_pub.publish(conversions.image_msg(frame.header, ref, "32FC1"))
    wait_for(lambda: len(cam.references) == 1, what="reference stored")
    pub.publish(frame)
    wait_for(entered.is_set, what="the worker fitting the frame's reference")
    assert all(r.successful for r in set_params(harness, node, **{"depth.align": False}))
    assert "depth_reference" not in cam.subs
    gate.set()
    wait_for(lambda: node.counts()[""].get("processed", 0) == 1, what="the frame")
    wait_for(lambda: len(got["depth"]) == 1, what="its depth")   # (fitted as it began: published as such)
    statuses = {st.name: {kv.key: kv.value for kv in st.values} for st in node.diagnostics().status}
    assert not any(k.startswith("alignment.") for k in statuses["dpt_node: camera /"]), statuses
    assert cam.alignment is None


def test_depth_align_turned_off_before_a_frames_reference_came_is_no_alignment_error(harness):
    """depth.align set false while a frame whose reference has not come yet is in its forward pass: the
    set-parameters callback unsubscribes depth_reference and forgets its references, and the frame then found none:
    an ERROR '[alignment] nothing received on /depth_reference yet from its 1 publisher(s) ... check that the depth
    camera publishes there', counted incomplete.alignment, of a depth camera that was fine and a node that no longer
    aligns. Now such a frame is published as without alignment (depth.scale here), with no error."""
    from rcl_interfaces.msg import Log

    from dpt_ros.ros.testing import gate_engine

    node, got, pub, ref_pub = harness.aligned_node(("depth",), **{"depth.scale": 1.0})
    log = harness.collector(Log, "/rosout")
    gate, entered, _ = gate_engine(node.models.depth)
    try:
        pub.publish(make_image(2_000_000_000, width=80, height=60))   # (its reference never comes)
        wait_for(entered.is_set, what="the frame in its forward pass")
        assert all(r.successful for r in set_params(harness, node, **{"depth.align": False}))
        assert "depth_reference" not in node.cameras[0].subs
    finally:
        gate.set()
    wait_for(lambda: len(got["depth"]) == 1, what="its depth")
    depth = conversions.image_array(got["depth"][0])
    x = model_inverse_depth(node, make_image(2_000_000_000, width=80, height=60))
    np.testing.assert_allclose(depth, 1.0 / x, rtol=1e-4)   # depth.scale 1, shift 0: metres = 1 / inverse depth
    counts = node.counts()[""]
    assert counts.get("processed", 0) == 1 and "incomplete:alignment" not in counts, counts
    assert not any("[alignment]" in m.msg for m in log), [m.msg for m in log if "[alignment]" in m.msg]


def _fallback_reason(aligned, harness, reference, i: int = 1):
    """Send frame ``i`` with the reference ``reference(x)`` makes, which cannot be fitted, with depth.scale 2 and
    depth.shift 0.5 set: the frame is counted incomplete:alignment, its depth is that fallback, and the logged reason
    is returned (with the frame's model output ``x`` and the reference)."""
    from rcl_interfaces.msg import Log

    log = harness.collector(Log, "/rosout")
    node, send, set_ = aligned
    set_(**{"depth.scale": 2.0, "depth.shift": 0.5})
    x, ref, d, counts = send(i, reference)
    assert counts.get("incomplete:alignment") == 1 and counts.get("out:depth") == 1, counts
    np.testing.assert_allclose(d, 1.0 / (2.0 * x + 0.5), rtol=1e-4)   # the fallback
    wait_for(lambda: any(m.msg.startswith("[alignment]") for m in log), what="the reason")
    return next(m.msg for m in log if m.msg.startswith("[alignment]")), x, ref


def test_a_reference_with_too_few_measured_pixels_is_said_with_what_to_do(aligned, harness):
    """A reference that measured next to nothing (a depth driver's first frames, all 0; a view beyond its range): the
    frame falls back to depth.scale / depth.shift, counted incomplete:alignment, and the reason said "only 5 pixels
    with a valid reference depth; at least 10 are needed": of the pixels the fit samples (every 4th in both
    directions; the 80x60 reference has 305 measured here), and neither why a depth camera gives so few nor what to
    do. It now says both."""
    def sparse(x):
        full = exact_reference(x)[0]
        ref = np.full(full.shape, np.nan, np.float32)
        ref[0:20:4, 0] = full[0:20:4, 0]   # 5 of the sampled pixels
        ref[1::4, 1::4] = 2.0              # measured, but not sampled
        return ref, "32FC1"

    line = _fallback_reason(aligned, harness, sparse)[0]
    assert line.startswith(
        "[alignment] /depth_reference: only 5 of the 300 pixels the fit samples (every 4th in both directions) have a "
        "reference depth (finite, above 0); at least 10 are needed: the depth camera measured next to nothing of this "
        "view (0 or NaN: beyond its range or nearer than its minimum, glass, a covered lens, its first frames after "
        "start-up, or depth not registered to this camera); such frames fall back to depth.scale / depth.shift where "
        "set (a fixed calibration, e.g. from calibrate_depth), else publish no depth"), line


def test_a_view_that_cannot_be_fitted_is_said_with_the_fallback(aligned, harness):
    """A flat wall square to the cameras (the reference the same at every pixel): no scale and shift can be fitted to
    the frame, which falls back to depth.scale / depth.shift. The reason ended with calibrate_depth's advice, "calibrate
    on a view with near and far surfaces", and not what becomes of such frames; it now says that too."""
    line = _fallback_reason(aligned, harness, lambda x: (np.full(x.shape, 2000, np.uint16), "16UC1"))[0]
    assert line.startswith(
        "[alignment] /depth_reference: the reference depth is the same at every valid pixel (a flat wall square to the "
        "cameras, or a saturated sensor): a scale and a shift cannot both be fitted; calibrate on a view with near and "
        "far surfaces; such frames fall back to depth.scale / depth.shift where set (a fixed calibration, e.g. from "
        "calibrate_depth), else publish no depth"), line


def test_a_reference_that_grows_where_the_model_nears_is_said_with_what_to_do(aligned, harness):
    """A reference farther where the model's inverse depth is larger (a disparity or inverse depth image given as
    depth, another camera's view, random weights): the fitted scale is negative and the frame falls back to
    depth.scale / depth.shift, counted incomplete:alignment. The reason ended in a question, "(another view, or not
    metres / millimetres?)", and said neither what to do nor what becomes of the frame; it now says both."""
    def reversed_(x):   # 1 / reference = 1/5 + a (max - x): 1.4 m where x is least, 5 m where it is most
        a = (1.0 / 1.4 - 1.0 / 5.0) / float(x.max() - x.min())
        return (1.0 / (1.0 / 5.0 + a * (float(x.max()) - x))).astype(np.float32), "32FC1"

    line, x, _ = _fallback_reason(aligned, harness, reversed_)
    a = (1.0 / 1.4 - 1.0 / 5.0) / float(x.max() - x.min())
    assert line.startswith(
        f"[alignment] /depth_reference: fitted scale {-a:.4g} is not positive: the reference does not get nearer where "
        "the model's inverse depth grows. If so on every frame, /depth_reference is not the depth of this camera's "
        "view: remap it to the depth camera's depth registered to this camera (-r depth_reference:=/camera/aligned_"
        "depth_to_color/image_raw), a depth image (32FC1 metres or 16UC1 millimetres), not a disparity or inverse "
        "depth image nor another camera's; with random weights the model's depth follows no view. If only now and "
        "then, the model and the depth camera disagree on that view; such frames fall back to depth.scale / "
        "depth.shift where set (a fixed calibration, e.g. from calibrate_depth), else publish no depth"), line
    assert "?" not in line, line


def test_a_32fc1_reference_in_millimetres_is_refused_with_what_to_do(aligned, harness):
    """A 32FC1 reference in millimetres (some drivers and bag conversions write them; REP 118 has 32FC1 depth in
    metres): it was fitted as it came, so the published depth was 1000x too far (a scale and shift 1000x too small),
    and nothing was said. Its median, 1400-5000 "metres", is beyond any depth camera's range: the frame now falls
    back to depth.scale / depth.shift, counted incomplete:alignment, with a reason that says so and what to publish.
    A 32FC1 reference in metres of a far view (40-95 m) is fitted as before, as is the same view as 16UC1
    millimetres."""
    node, send, _ = aligned
    # (the fallback, not 1000x the fit)
    line, x, ref = _fallback_reason(aligned, harness, lambda x: (exact_reference(x)[0] * 1000.0, "32FC1"))
    median = float(np.median(ref[::4, ::4].astype(np.float64)))
    assert 1400 < median < 5000
    assert line.startswith(
        f"[alignment] /depth_reference: the reference's median depth is {median:.4g} m (32FC1), beyond 100 m, more "
        "than any depth camera measures: millimetres in a 32FC1 image, it seems (REP 118: 32FC1 depth is in metres; "
        "16UC1 is the millimetre encoding); fitted, every depth would be 1000x too far. Publish the reference as "
        "32FC1 metres, or as 16UC1 millimetres (a depth driver's raw depth; a bag converted to 32FC1 without "
        "dividing by 1000: convert it again); such frames fall back to depth.scale / depth.shift where set (a fixed "
        "calibration, e.g. from calibrate_depth), else publish no depth"), line

    x, ref, d, counts = send(2, lambda x: (exact_reference(x, near=40.0, far=95.0)[0], "32FC1"))
    a, b = exact_reference(x, near=40.0, far=95.0)[1]
    assert counts.get("out:depth") == 1 and "incomplete:alignment" not in counts, counts
    assert _alignment(node)[:2] == (pytest.approx(a, rel=1e-4), pytest.approx(b, rel=1e-4))
    np.testing.assert_allclose(d, 1.0 / (a * x + b), rtol=1e-4)

    x, ref, d, counts = send(3, lambda x: (np.round(exact_reference(x)[0] * 1000.0).astype(np.uint16), "16UC1"))
    assert counts.get("out:depth") == 1 and "incomplete:alignment" not in counts, counts
    a, b, _ = _reference_fit(x, ref.astype(np.float64) / 1000.0)
    assert _alignment(node)[:2] == (pytest.approx(a, rel=1e-3), pytest.approx(b, rel=1e-3))


def test_a_reference_of_another_frame_id_is_warned_once_and_shown_in_the_status(aligned, harness):
    """depth_reference remapped to a depth camera's own depth (/camera/depth/image_rect_raw, frame
    camera_depth_optical_frame) instead of the depth registered to the colour camera (which carries the images'
    frame_id): of the same aspect ratio, it was fitted without a word, a wrong fit. The node now says so once per
    camera, naming both frame_ids and the remap, and the camera's status has it (depth_reference) while its references
    are so; the frames are still fitted (a driver may register its depth and name another frame). An empty frame_id on
    either side, or one with a leading '/', is no mismatch."""
    from rcl_interfaces.msg import Log

    log = harness.collector(Log, "/rosout")
    node, send, set_ = aligned
    said = ("frame_id 'camera_depth_optical_frame' is not the images' 'cam_optical': depth registered (aligned) to "
            "this camera carries the images' frame_id, so this is most likely the depth camera's own depth (e.g. "
            "/camera/depth/image_rect_raw), whose pixels do not lie on the image's, and the fitted depth is wrong. "
            "Remap depth_reference to the depth registered to this camera, e.g. -r depth_reference:=/camera/aligned_"
            "depth_to_color/image_raw (launch argument depth_reference:=...; a RealSense: align_depth.enable:=true). "
            "If it is registered and its driver names another frame, the frames are fitted as they are")

    def status():
        return {kv.key: kv.value for kv in node.diagnostics().status[1].values}

    for i in (1, 2):   # fitted as before, said once
        x, ref, d, counts = send(i, lambda x: (exact_reference(x)[0], "32FC1"), "camera_depth_optical_frame")
        assert counts.get("out:depth") == 1 and "incomplete:alignment" not in counts, counts
        assert _alignment(node)[:2] == tuple(pytest.approx(v, rel=1e-4) for v in exact_reference(x)[1])
        assert status()["depth_reference"] == said
    for i, frame_id in ((3, ""), (4, "/cam_optical")):   # no mismatch: the status has none
        x, ref, d, counts = send(i, lambda x: (exact_reference(x)[0], "32FC1"), frame_id)
        assert counts.get("out:depth") == 1 and "incomplete:alignment" not in counts, counts
        assert "depth_reference" not in status()
    send(5, lambda x: (exact_reference(x)[0], "32FC1"), "camera_depth_optical_frame")
    assert status()["depth_reference"] == said
    # a log line after all of them (a flat wall: no fit), so that every earlier one has arrived
    send(6, lambda x: (np.full(x.shape, 2000, np.uint16), "16UC1"))
    wait_for(lambda: any(m.msg.startswith("[alignment]") for m in log), what="the last frame's reason")
    warned = [m for m in log if "frame_id 'camera_depth_optical_frame'" in m.msg]
    assert [(m.level, m.msg) for m in warned] == [(Log.WARN, f"/depth_reference: {said}. Said once per camera.")]
    assert "depth_reference" not in status()   # (the flat wall's reference has the images' frame_id)


def _reference_sent(harness, cam, frame, ref):
    """An image publisher, once ``ref`` (32FC1) has been sent as ``frame``'s reference and stored by camera ``cam``."""
    pub = harness.probe.create_publisher(Image, "image", qos())
    ref_pub = harness.probe.create_publisher(Image, "depth_reference", qos())
    wait_for(lambda: pub.get_subscription_count() > 0 and ref_pub.get_subscription_count() > 0, what="discovery")
    ref_pub.publish(conversions.image_msg(frame.header, ref, "32FC1"))
    wait_for(lambda: cam.references and cam.references[-1][0] == conversions.stamp_ns(frame.header),
             what="reference stored")
    return pub


def test_an_alignment_line_of_a_frame_in_flight_when_the_transport_changes_names_the_frames_reference_topic(aligned,
                                                                                                          harness):
    """depth.align_transport set raw -> compressedDepth (`ros2 param set`) while a frame, its raw reference held, is in
    its forward pass: the frame is fitted to that raw reference, but its [alignment] line named the topic of the
    settings at the time of the line, /depth_reference/compressedDepth, which sent it nothing. Now the frame's own
    settings name it. Forced: the frame held in its forward pass until the set has returned."""
    from rcl_interfaces.msg import Log

    from dpt_ros.ros.testing import gate_engine

    log = harness.collector(Log, "/rosout")
    node, _, _ = aligned
    cam = node.cameras[0]
    frame = make_image(1_000_000_000, width=80, height=60, seed=1)
    pub = _reference_sent(harness, cam, frame, np.full((60, 80), np.nan, np.float32))
    gate, entered, _ = gate_engine(node.models.depth)
    try:
        pub.publish(frame)
        wait_for(entered.is_set, what="the frame in its forward pass")
        assert set_params(harness, node, **{"depth.align_transport": "compressedDepth"})[0].successful
    finally:
        gate.set()
    wait_for(lambda: node.counts()[""].get("incomplete:alignment") == 1, what="the frame's fallback")
    wait_for(lambda: any(m.msg.startswith("[alignment]") for m in list(log)), what="its line")
    lines = [m.msg for m in list(log) if m.msg.startswith("[alignment]")]
    assert len(lines) == 1 and lines[0].startswith(
        "[alignment] /depth_reference: only 0 of the 300 pixels the fit samples"), lines


def test_a_refused_depth_align_transport_keeps_the_references_the_node_holds(aligned, harness):
    """`ros2 param set depth.align_transport compressedDepth` refused (rcl could not subscribe
    /depth_reference/compressedDepth: an Image publisher of it in this process): the change had destroyed the raw
    reference subscription first, and with it the references it had brought, so the refusal's subscribing back left
    the camera none: a frame whose reference had come just before found none, and went out without depth
    (incomplete:alignment). Now the new subscription is made before the old one goes, and a refused change leaves the old one
    and its references as they were."""
    node, _, _ = aligned
    cam = node.cameras[0]
    frame = make_image(1_000_000_000, width=80, height=60, seed=1)
    ref, (a, b) = exact_reference(model_inverse_depth(node, frame))
    pub = _reference_sent(harness, cam, frame, ref)
    harness.probe.create_publisher(Image, "depth_reference/compressedDepth", qos())   # (rcl refuses CompressedImage)
    refused = set_params(harness, node, **{"depth.align_transport": "compressedDepth"})[0]
    assert not refused.successful and refused.reason.startswith(
        "depth.align_transport: cannot subscribe /depth_reference/compressedDepth"), refused.reason
    pub.publish(frame)
    wait_for(lambda: node.counts()[""].get("processed") == 1, what="the frame processed")
    counts = dict(node.counts()[""])
    assert counts.get("out:depth") == 1, counts
    assert "waited_in_vain:depth_reference" not in counts and "incomplete:alignment" not in counts, counts
    assert _alignment(node)[:2] == (pytest.approx(a, rel=1e-4), pytest.approx(b, rel=1e-4))
