"""sample_camera: frames, encodings and CameraInfo through a real rclpy graph."""
import os
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from rclpy.parameter import Parameter
from rclpy.qos import ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from dpt_ros import pipeline
from dpt_ros.ros import conversions, sample_camera
from dpt_ros.ros.dds_env import localhost_only
from dpt_ros.ros.testing import concurrently, wait_for

DOMAIN = 44
ROOT = Path(__file__).resolve().parents[2]


def _run(cmd):
    """``cmd`` run to its end on this module's domain: its exit status, stdout and stderr apart."""
    env = dict(os.environ, ROS_DOMAIN_ID=str(DOMAIN), **localhost_only())
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_builtin_frames_are_photographs():
    frames = sample_camera.builtin_frames(("astronaut", "coffee"))
    assert [f.shape for f in frames] == [(512, 512, 3), (400, 600, 3)] and frames[0].dtype == np.uint8
    for frame in sample_camera.builtin_frames():   # every built-in is a colour photograph, used as is
        assert frame.ndim == 3 and frame.shape[2] == 3 and frame.dtype == np.uint8 and frame.flags.c_contiguous
    with pytest.raises(ValueError, match="unknown built-in image"):
        sample_camera.builtin_frames(("lena",))


def test_folder_and_video_sources(tmp_path):
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((20, 30, 3), i * 40, np.uint8))
    cv2.imwrite(str(tmp_path / "3.PNG"), np.full((20, 30, 3), 120, np.uint8))   # cameras often write upper case
    frames = list(sample_camera.frame_source(str(tmp_path), loop=False))
    assert len(frames) == 4 and frames[2][0, 0, 0] == 80 and frames[3][0, 0, 0] == 120
    video = tmp_path / "v.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (32, 24))
    for i in range(4):
        writer.write(np.full((24, 32, 3), 60 * i, np.uint8))
    writer.release()
    frames = list(sample_camera.frame_source(str(video), loop=False))
    assert len(frames) == 4 and frames[0].shape == (24, 32, 3)
    # a path that names nothing is said to be that (it was only "is neither 'builtin[:names]', an image folder nor a
    # video file", for a folder mistyped); a file that is neither (a named pipe) is not said to be missing
    missing = str(tmp_path / "missing")
    with pytest.raises(ValueError) as e:
        next(sample_camera.frame_source(missing, loop=False))
    assert str(e.value) == (f"source {missing!r} is neither 'builtin[:names]', an image file, an image folder nor a "
                            f"video file: no file or folder {missing!r} (a typo, or another working folder?)")
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(ValueError) as e:
        next(sample_camera.frame_source(str(tmp_path / "pipe"), loop=False))
    assert str(e.value).endswith("is neither 'builtin[:names]', an image file, an image folder nor a video file")


def test_unusable_sources_are_refused_with_the_reason(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no pictures here")
    with pytest.raises(ValueError, match="holds no images"):
        sample_camera.frame_source(str(empty), loop=True)
    garbage = tmp_path / "clip.avi"
    garbage.write_bytes(b"not a video" * 10)
    with pytest.raises(ValueError, match="cannot open video"):
        sample_camera.frame_source(str(garbage), loop=True)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG but not really")
    with pytest.raises(ValueError, match="cannot read image .*broken.png"):
        pipeline.read_image_file(str(broken))   # what sample_camera reads folder images with
    # in a folder, such a file is skipped (said once) and the others are shown, looping; none readable: refused
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "b_broken.jpg").write_bytes(b"not a jpeg")
    cv2.imwrite(str(folder / "a.png"), np.full((20, 30, 3), 40, np.uint8))
    cv2.imwrite(str(folder / "c.png"), np.full((20, 30, 3), 80, np.uint8))
    frames = sample_camera.frame_source(str(folder), loop=True)
    assert [int(next(frames)[0, 0, 0]) for _ in range(5)] == [40, 80, 40, 80, 40]
    assert capsys.readouterr().err.count("b_broken.jpg") == 1
    (folder / "a.png").write_bytes(b"")
    (folder / "c.png").write_bytes(b"")
    with pytest.raises(ValueError, match="none of the 3 image files of the folder could be read"):
        list(sample_camera.frame_source(str(folder), loop=False))


def _image_files(folder: Path) -> dict:
    """Image files the folder source decodes its own way, and the first pixel each reads as: a 16-bit PNG (v / 257,
    rounded, as the node reads mono16: OpenCV's video reader kept the top byte, 200), a one-channel float TIFF
    (intensity 0..1; OpenCV's video reader read no frame of it), an RGBA PNG (alpha dropped) and a grey PNG."""
    folder.mkdir()
    cv2.imwrite(str(folder / "deep.png"), np.full((24, 32, 3), 51200, np.uint16))
    cv2.imwrite(str(folder / "float.tiff"), np.full((24, 32), 0.5, np.float32))
    cv2.imwrite(str(folder / "alpha.png"), np.dstack([np.full((24, 32), v, np.uint8) for v in (10, 20, 30, 0)]))
    cv2.imwrite(str(folder / "grey.png"), np.full((24, 32), 77, np.uint8))
    return {"deep.png": [199] * 3, "float.tiff": [128] * 3, "alpha.png": [30, 20, 10], "grey.png": [77] * 3}


def test_an_image_file_is_a_source_read_as_a_folder_of_it_is(tmp_path):
    """A single photo (the first thing a user tries) went through OpenCV's video reader: a float TIFF that a folder
    shows was refused on its own, a 16-bit PNG read otherwise, an empty file was 'cannot open video'. Now it is the
    folder source's reading, again and again, and a file that does not read is said with the reason and what to give."""
    for name, rgb in _image_files(tmp_path / "shots").items():
        path = str(tmp_path / "shots" / name)
        once = tmp_path / f"only_{name}"   # a folder of that one image
        once.mkdir()
        (once / name).write_bytes((tmp_path / "shots" / name).read_bytes())
        folder = list(sample_camera.frame_source(str(once), loop=False))
        frames = sample_camera.frame_source(path, loop=True)
        first = [next(frames) for _ in range(3)]
        assert [f[0, 0].tolist() for f in first] == [rgb] * 3, name
        for f in first:
            np.testing.assert_array_equal(f, folder[0])
        assert len(list(sample_camera.frame_source(path, loop=False))) == 1 == len(folder)
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    notes = tmp_path / "notes.jpg"
    notes.write_text("not a picture")
    remedy = "give builtin, an image file, a folder of images or a video file"
    for path, why in ((empty, "the file is empty (0 bytes)"),
                      (notes, "OpenCV cannot decode it: corrupt or truncated, or not an image of a format it reads "
                              "(png, jpg, jpeg, bmp, tif, tiff, webp, ppm, pgm)")):
        with pytest.raises(ValueError) as e:
            sample_camera.frame_source(str(path), loop=True)   # at once, not at the first frame
        assert str(e.value) == f"source {str(path)!r}: {why}; {remedy}"


def test_an_image_file_is_published_at_the_rate_prepared_once(harness, tmp_path):
    path = tmp_path / "shots" / "deep.png"
    _image_files(tmp_path / "shots")
    cam = sample_camera.SampleCamera(context=harness.context, parameter_overrides=[
        Parameter("source", value=str(path)), Parameter("rate", value=50.0), Parameter("count", value=4),
        Parameter("width", value=16), Parameter("height", value=12), Parameter("encoding", value="mono16")])
    images = harness.collector(Image, "image")
    wait_for(lambda: cam.image_pub.get_subscription_count() > 0, what="discovery")
    harness.nodes.append(cam)
    harness.executor.add_node(cam)
    wait_for(lambda: cam.done and len(images) == 4, what="4 frames")
    assert cam.published == 4 and len(cam._cache) == 1   # the one frame, resized and encoded once
    for img in images:
        assert (img.width, img.height, img.encoding) == (16, 12, "mono16")
        np.testing.assert_array_equal(conversions.image_array(img), np.full((12, 16), 199 * 257, np.uint16))


def test_first_tries_that_name_no_file_are_said_with_what_to_give(tmp_path, monkeypatch):
    """A stream's URL, a camera index or device, a pattern the shell did not expand (-p source:=imgs/*.png, a quoted
    --source), a file with a trailing '/': each was "no file or folder ... (a typo, or another working folder?)", and
    ~ (which no shell expands in -p source:=~/...) was not expanded, where depth.weights' is."""
    monkeypatch.chdir(tmp_path)
    Path("imgs").mkdir()
    cv2.imwrite("imgs/a.png", np.full((20, 30, 3), 40, np.uint8))
    head = "is neither 'builtin[:names]', an image file, an image folder nor a video file"
    driver = "run the camera's ROS driver and give dpt_node its topics (image:=..., camera_info:=...)"
    cases = {
        "rtsp://192.168.1.10:554/stream": f"the sample camera reads files, not streams (rtsp://): {driver}, or record "
                                          f"the stream to a video file and give that",
        "0": f"a camera index ('0'), and the sample camera reads files, not cameras: {driver}",
        "/dev/video7": f"a device ('/dev/video7'), and the sample camera reads files, not cameras: {driver}",
        "imgs/*.png": "a pattern is not expanded here (no file is named 'imgs/*.png'): give the folder 'imgs' (all its "
                      "images, in name order) or one image file",
        "imgs/a.png/": "'imgs/a.png' is a file, not a folder: give it without the trailing '/'",
        "": "none given (an empty string); give builtin, an image file, a folder of images or a video file",
        "imgs/b.png": "no file or folder 'imgs/b.png' (a typo, or another working folder?)",   # as before
    }
    for source, why in cases.items():
        with pytest.raises(ValueError) as e:
            sample_camera.frame_source(source, loop=False)
        assert str(e.value) == f"source {source!r} {head}: {why}"
    monkeypatch.setenv("HOME", str(tmp_path))
    for source in ("~/imgs", "~/imgs/a.png"):
        assert [int(f[0, 0, 0]) for f in sample_camera.frame_source(source, loop=False)] == [40]


def test_a_video_without_frames_ends_even_when_looping(tmp_path):
    """OpenCV opens a video file that holds no frame; looping over it must end, not spin forever: with the error of
    a source that gives nothing (the command line's exit code 2), not as if it had run."""
    import threading

    video = tmp_path / "empty.avi"
    cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (32, 24)).release()
    got = []

    def read():
        try:
            list(sample_camera.frame_source(str(video), loop=True))
        except ValueError as e:
            got.append(str(e))

    t = threading.Thread(target=read, daemon=True)
    t.start()
    t.join(10)
    assert got == [f"no frame of {str(video)!r} could be read (not a video or image OpenCV decodes?)"]


def test_resize_keeps_aspect_and_picks_the_interpolation():
    rgb = np.random.default_rng(1).integers(0, 256, (60, 80, 3), dtype=np.uint8)
    assert sample_camera.resize(rgb, 0, 30).shape == (30, 40, 3)   # width from the aspect
    assert sample_camera.resize(rgb, 0, 32).shape == (32, 43, 3)   # 42.67 rounds to the nearest pixel
    np.testing.assert_array_equal(sample_camera.resize(rgb, 40, 30),
                                  cv2.resize(rgb, (40, 30), interpolation=cv2.INTER_AREA))   # shrinking
    np.testing.assert_array_equal(sample_camera.resize(rgb, 160, 120),
                                  cv2.resize(rgb, (160, 120), interpolation=cv2.INTER_CUBIC))   # enlarging
    assert sample_camera.resize(rgb, 80, 60) is rgb


def test_resize_encode_pinhole():
    rgb = np.zeros((100, 200, 3), np.uint8)
    assert sample_camera.resize(rgb, 100, 0).shape == (50, 100, 3)
    assert sample_camera.resize(rgb, 0, 0).shape == (100, 200, 3)
    rgb[..., 0] = 200
    for enc in sample_camera.ENCODINGS:
        arr = sample_camera.encode(rgb, enc)
        view = pipeline.ImageView.from_array(arr, enc)
        back = pipeline.decode(view, np)
        if enc.startswith("mono"):
            assert abs(int(back[0, 0, 0]) - 60) <= 1   # 0.299 * 200
        else:
            np.testing.assert_array_equal(back, rgb)
    white = np.full((2, 2, 3), 255, np.uint8)
    assert sample_camera.encode(white, "mono16").max() == 65535 and sample_camera.encode(white, "mono8").max() == 255
    k, p = sample_camera.pinhole(640, 480, 90.0)
    assert k[0] == pytest.approx(320.0) and p[2] == k[2] == pytest.approx(319.5)


def test_publishes_image_and_info_with_one_header(harness):
    cam = sample_camera.SampleCamera(context=harness.context, parameter_overrides=[
        Parameter("rate", value=50.0), Parameter("width", value=64), Parameter("height", value=48),
        Parameter("encoding", value="bgr8"), Parameter("count", value=5), Parameter("frame_id", value="test_cam"),
        Parameter("publish_compressed", value=True), Parameter("source", value="builtin:chelsea")])
    images = harness.collector(Image, "image")
    infos = harness.collector(CameraInfo, "camera_info")
    jpegs = harness.collector(CompressedImage, "image/compressed")
    wait_for(lambda: cam.image_pub.get_subscription_count() > 0 and cam.info_pub.get_subscription_count() > 0
             and cam.compressed_pub.get_subscription_count() > 0, what="discovery")
    harness.nodes.append(cam)
    harness.executor.add_node(cam)
    wait_for(lambda: cam.done, what="5 frames")
    wait_for(lambda: len(images) == 5 and len(infos) == 5 and len(jpegs) == 5, what="messages")
    for img, info in zip(images, infos):
        assert img.header == info.header and img.header.frame_id == "test_cam"
        assert info.distortion_model == "plumb_bob" and list(info.d) == [0.0] * 5
        assert (img.width, img.height, img.encoding, info.width, info.height) == (64, 48, "bgr8", 64, 48)
    rgb = pipeline.decode(conversions.image_view(images[0]), np)
    expected = sample_camera.resize(sample_camera.builtin_frames(("chelsea",))[0], 64, 48)
    np.testing.assert_array_equal(rgb, expected)
    # image_transport's format for a bgr8 camera: the raw encoding, then what the JPEG holds (it was "jpeg")
    assert {j.format for j in jpegs} == {"bgr8; jpeg compressed bgr8"}
    decoded = pipeline.decode_compressed(np.frombuffer(jpegs[0].data, np.uint8), jpegs[0].format)
    assert np.abs(decoded.astype(int) - expected).mean() < 12
    stamps = [i.header.stamp.sec * 10**9 + i.header.stamp.nanosec for i in images]
    assert stamps == sorted(stamps)
    assert cam.image_pub.qos_profile.reliability == ReliabilityPolicy.RELIABLE   # the default


def test_a_grey_camera_publishes_a_grey_jpeg(harness):
    """encoding mono8 / mono16: image/compressed is a one-channel JPEG ("mono8; jpeg compressed ", as image_transport
    writes it for a mono8 image), not a colour one beside a grey image."""
    import cv2

    cam = sample_camera.SampleCamera(context=harness.context, parameter_overrides=[
        Parameter("rate", value=50.0), Parameter("width", value=64), Parameter("height", value=48),
        Parameter("encoding", value="mono8"), Parameter("count", value=2), Parameter("publish_compressed", value=True),
        Parameter("source", value="builtin:chelsea")])
    images = harness.collector(Image, "image")
    jpegs = harness.collector(CompressedImage, "image/compressed")
    wait_for(lambda: cam.image_pub.get_subscription_count() > 0 and cam.compressed_pub.get_subscription_count() > 0,
             what="discovery")
    harness.nodes.append(cam)
    harness.executor.add_node(cam)
    wait_for(lambda: len(images) == 2 and len(jpegs) == 2, what="messages")
    assert jpegs[0].format == "mono8; jpeg compressed "
    grey = cv2.imdecode(np.frombuffer(jpegs[0].data, np.uint8), cv2.IMREAD_UNCHANGED)
    assert grey.ndim == 2 and np.abs(grey.astype(int) - conversions.image_array(images[0])).mean() < 4


def test_best_effort_publishers_and_built_in_frames_prepared_once(harness):
    cam = sample_camera.SampleCamera(context=harness.context, parameter_overrides=[
        Parameter("reliability", value="best_effort"), Parameter("source", value="builtin:coffee,chelsea"),
        Parameter("width", value=64), Parameter("height", value=48)])
    harness.nodes.append(cam)
    assert cam.image_pub.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT
    assert cam.info_pub.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT
    result = cam.set_parameters([Parameter("rate", value=5.0)])[0]   # fixed at start-up: read-only
    assert not result.successful and "read-only" in result.reason and cam.rate == 10.0
    first = [cam.next_frame() for _ in range(2)]
    again = [cam.next_frame() for _ in range(2)]   # the loop starts again: the same prepared frames
    assert all(a is b for a, b in zip(first, again)) and first[0] is not first[1]
    assert first[0][1].shape == (48, 64, 3)


def test_a_folder_named_like_builtin_is_read_afresh_not_kept_frame_by_frame(harness, tmp_path, monkeypatch):
    """Only the built-in photographs (and their names' list) are prepared once: a folder whose name merely starts with
    'builtin' (builtin_shots/) had each frame read kept in the prepared-frame cache, one entry more per frame, for as
    long as the camera ran (about 0.5 GB a minute at 640x480 rgb8 and 10 Hz); given as a relative path, as a user types it."""
    monkeypatch.chdir(tmp_path)
    folder = Path("builtin_shots")
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"{i}.png"), np.full((24, 32, 3), 40 * i, np.uint8))
    cam = sample_camera.SampleCamera(context=harness.context, parameter_overrides=[
        Parameter("source", value=str(folder)), Parameter("width", value=32), Parameter("height", value=24)])
    harness.nodes.append(cam)
    assert [int(cam.next_frame()[0][0, 0, 0]) for _ in range(12)] == [0, 40, 80] * 4
    assert len(cam._cache) == 0


def test_executable_stops_after_count_and_rejects_bad_encoding(tmp_path):
    cmd = [sys.executable, "-m", "dpt_ros.ros.sample_camera", "--ros-args", "-p", "rate:=100.0", "-p", "count:=3"]
    rate_file, encoding_file = tmp_path / "rate.yaml", tmp_path / "encoding.yaml"   # (a file each: run at one time)
    rate_file.write_text("sample_camera:\n  ros__parameters:\n    rate: 30\n")
    encoding_file.write_text("sample_camera:\n  ros__parameters:\n    encoding: 1\n")
    # (the eight processes started some at a time, each checked on its own below, in this order)
    three, one, yuv9, rate_p, rate_in_file, encoding_p, encoding_in_file, fov = concurrently(_run, [
        cmd, cmd[:-1] + ["count:=1"], cmd + ["-p", "encoding:=yuv9"], cmd[:-2] + ["-p", "rate:=30"],
        cmd[:-4] + ["-p", "count:=1", "--params-file", str(rate_file)], cmd + ["-p", "encoding:=1"],
        cmd[:-4] + ["-p", "count:=1", "--params-file", str(encoding_file)], cmd + ["-p", "fov_deg:=200.0"]])
    r = three
    assert r.returncode == 0 and "done after 3 frames" in r.stderr + r.stdout
    assert one.returncode == 0 and re.search(r"done after 1 frame$", one.stderr + one.stdout, re.M), one.stderr
    r = yuv9
    assert r.returncode == 2 and "yuv9" in r.stderr
    # a whole number for a double parameter: refused with the way to write it (as the node says it)
    # in the form it was given: a -p rule as one (it said YAML's 'rate: 30.0' to `-p rate:=30` too), a file's as YAML
    r = rate_p
    assert r.returncode == 2 and r.stderr.endswith("write it with a decimal point, -p rate:=30.0)\n"), r.stderr
    r = rate_in_file
    assert r.returncode == 2 and r.stderr.endswith("write it with a decimal point, rate: 30.0)\n"), r.stderr
    # a number for a string: how to write one (rclpy's words without the name it repeats at their end)
    r = encoding_p
    assert r.returncode == 2 and r.stderr.endswith(
        "of type 'INTEGER', expecting type 'STRING' (a string: e.g. -p encoding:=rgb8; one that YAML reads as a number "
        "or bool is quoted: -p encoding:=\"'1'\")\n"), r.stderr
    # in the form it was given too: a parameters file's line (it said the name:=value form for both)
    r = encoding_in_file
    assert r.returncode == 2 and r.stderr.endswith("is quoted: encoding: '1')\n"), r.stderr
    # out of its range: rclpy's reason
    r = fov
    assert r.returncode == 2 and "fov_deg" in r.stderr and "decimal point" not in r.stderr


def test_a_value_out_of_range_is_refused_with_the_range_and_a_value_to_write(tmp_path):
    """rate:=0.0, width:=-5, count:=-1: one line naming the parameter, rclpy's reason with the value given, the allowed
    range and the nearest value in it, written as it was given (a -p rule, a parameters file's line); exit code 2.
    It said rclpy's words alone, ending in the parameter's name (': rate'), with no range to keep to."""
    cmd = [sys.executable, "-m", "dpt_ros.ros.sample_camera", "--ros-args", "-p", "count:=1"]
    yaml_file = tmp_path / "camera.yaml"
    yaml_file.write_text("sample_camera:\n  ros__parameters:\n    count: -1\n")
    cases = (("rate:=0.0", "0.0", "(allowed: 0.01..1000; nearest: {})"),
             ("rate:=5000.0", "5000.0", "(allowed: 0.01..1000; nearest: {})"),
             ("width:=-5", "-5", "(allowed: 0..8192; nearest: {})"),
             ("fov_deg:=0.5", "0.5", "(allowed: 1..179; nearest: {})"))
    # (the five processes started some at a time, each checked on its own below, in this order)
    *results, in_file = concurrently(_run, [*[cmd + ["-p", rule] for rule, _, _ in cases],
                                            cmd[:-2] + ["--params-file", str(yaml_file)]])
    for (rule, value, allowed), r in zip(cases, results, strict=True):
        name = rule.split(":=")[0]
        nearest = {"rate:=0.0": "0.01", "rate:=5000.0": "1000.0", "width:=-5": "0", "fov_deg:=0.5": "1.0"}[rule]
        assert r.returncode == 2, r.stderr
        assert r.stderr.startswith(f"sample_camera: invalid parameter {name}: Invalid parameter value ({value})"), \
            r.stderr
        assert r.stderr.endswith(f"value: {value} " + allowed.format(f"-p {name}:={nearest}") + "\n"), r.stderr
    r = in_file
    assert r.returncode == 2 and r.stderr.startswith("sample_camera: invalid parameter count: "), r.stderr
    assert r.stderr.endswith("value: -1 (allowed: 0..2147483647; nearest: count: 0)\n"), r.stderr
