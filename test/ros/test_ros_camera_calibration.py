"""camera_info.url: calibration files as ROS's camera_calibration writes them (parser, URLs), and the node
using one instead of the camera_info topic, through DDS."""
from __future__ import annotations

import os
import re

import numpy as np
import pytest
from rcl_interfaces.msg import Log
from sensor_msgs.msg import CameraInfo, Image, PointCloud2

from dpt_ros.pipeline.cloud import Intrinsics
from dpt_ros.ros import camera_calibration, conversions
from dpt_ros.ros.node import StartupError
from dpt_ros.ros.testing import (get_params, make_image, make_info, publish_until, qos, set_params, set_params_atomically,
                                 wait_for)

DOMAIN = 76

# what camera_calibration's cameracalibrator writes (ost.yaml), for a 160x120 webcam
OST = """image_width: 160
image_height: 120
camera_name: webcam
camera_matrix:
  rows: 3
  cols: 3
  data: [{fx}, 0., 79.5, 0., {fx}, 59.5, 0., 0., 1.]
distortion_model: plumb_bob
distortion_coefficients:
  rows: 1
  cols: 5
  data: [0., 0., 0., 0., 0.]
rectification_matrix:
  rows: 3
  cols: 3
  data: [1., 0., 0., 0., 1., 0., 0., 0., 1.]
projection_matrix:
  rows: 3
  cols: 4
  data: [{fx}, 0., 79.5, 0., 0., {fx}, 59.5, 0., 0., 0., 1., 0.]
"""


def _camera(harness, ns: str, output: str = "depth/camera_info", **params):
    """A node in namespace ``ns`` with ``params``, a collector of its ``output`` (a camera_info or a cloud), and
    publishers of its image and camera_info, all discovered: (node, collector, image publisher, camera_info
    publisher)."""
    node = harness.start_node(namespace=ns, **params)
    out = harness.collector(CameraInfo if output.endswith("camera_info") else PointCloud2, f"/{ns}/{output}")
    pub = harness.probe.create_publisher(Image, f"/{ns}/image", qos())
    info_pub = harness.probe.create_publisher(CameraInfo, f"/{ns}/camera_info", qos())
    wait_for(lambda: pub.get_subscription_count() > 0 and info_pub.get_subscription_count() > 0 and
             node.cameras[0].pubs[output].get_subscription_count() > 0, what="discovery")
    return node, out, pub, info_pub


def test_parse_reads_every_field():
    info = camera_calibration.parse(OST.format(fx=100.0).replace("[0., 0., 0., 0., 0.]", "[-0.3, 0.1, 0.001, 0.002, 0.]"))
    assert (info.width, info.height, info.distortion_model) == (160, 120, "plumb_bob")
    assert list(info.k) == [100.0, 0.0, 79.5, 0.0, 100.0, 59.5, 0.0, 0.0, 1.0]
    assert list(info.d) == [-0.3, 0.1, 0.001, 0.002, 0.0]
    assert list(info.p) == [100.0, 0.0, 79.5, 0.0, 0.0, 100.0, 59.5, 0.0, 0.0, 0.0, 1.0, 0.0]
    assert list(info.r) == [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]


def test_parse_fills_r_and_p_from_k_when_absent():
    text = "image_width: 64\nimage_height: 48\ncamera_matrix: {rows: 3, cols: 3, data: [40, 0, 31.5, 0, 41, 23.5, 0, 0, 1]}\n"
    info = camera_calibration.parse(text)
    assert list(info.p) == [40.0, 0.0, 31.5, 0.0, 0.0, 41.0, 23.5, 0.0, 0.0, 0.0, 1.0, 0.0]
    assert list(info.r) == [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    assert (info.distortion_model, list(info.d)) == ("plumb_bob", [])


def test_a_file_without_distortion_model_is_plumb_bob_as_camera_calibration_parsers_reads_it():
    """Files written before CameraInfo had distortion_model (many shipped with drivers) have D alone; the raw image's
    cloud goes through the lens as plumb_bob instead of the file being refused ("distortion_model '' ... not
    supported")."""
    text = OST.format(fx=100.0).replace("distortion_model: plumb_bob\n", "").replace(
        "[0., 0., 0., 0., 0.]", "[-0.3, 0.1, 0.001, 0.002, 0.]")
    info = camera_calibration.parse(text)
    assert (info.distortion_model, list(info.d)) == ("plumb_bob", [-0.3, 0.1, 0.001, 0.002, 0.0])
    intr = Intrinsics.from_camera_info(**conversions.camera_info_fields(info), rectified=False)
    assert (intr.distortion_model, intr.d) == ("plumb_bob", (-0.3, 0.1, 0.001, 0.002, 0.0))


# what camera_info_manager saves (camera_calibration_parsers' writer, yaml-cpp): binning and ROI after P
SAVED = """image_width: 160
image_height: 120
camera_name: webcam
camera_matrix:
  rows: 3
  cols: 3
  data: [100, 0, 79.5, 0, 100, 59.5, 0, 0, 1]
distortion_model: plumb_bob
distortion_coefficients:
  rows: 1
  cols: 5
  data: [0, 0, 0, 0, 0]
rectification_matrix:
  rows: 3
  cols: 3
  data: [1, 0, 0, 0, 1, 0, 0, 0, 1]
projection_matrix:
  rows: 3
  cols: 4
  data: [100, 0, 79.5, 0, 0, 100, 59.5, 0, 0, 0, 1, 0]
binning_x: {bx}
binning_y: {by}
roi:
  x_offset: {x0}
  y_offset: {y0}
  height: {rh}
  width: {rw}
  do_rectify: false
"""


@pytest.mark.parametrize("bx,by,roi,intrinsics", [
    (0, 0, (0, 0, 0, 0), (100.0, 100.0, 79.5, 59.5, 160, 120)),
    (2, 2, (0, 0, 0, 0), (50.0, 50.0, 39.75, 29.75, 80, 60)),
    (0, 0, (40, 30, 60, 80), (100.0, 100.0, 39.5, 29.5, 80, 60)),
    (2, 1, (40, 30, 60, 80), (50.0, 100.0, 19.75, 29.5, 40, 60)),
])
def test_parse_reads_binning_and_roi_as_camera_info_manager_saves_them(bx, by, roi, intrinsics):
    """An 80x60 window at (40, 30) of a 160x120 calibration is not the whole view at half size: its focal length
    stays, its centre moves by the offset (it was scaled by 1/2 as if the ROI were not there)."""
    x0, y0, rh, rw = roi
    info = camera_calibration.parse(SAVED.format(bx=bx, by=by, x0=x0, y0=y0, rh=rh, rw=rw))
    assert (info.binning_x, info.binning_y) == (bx, by)
    assert (info.roi.x_offset, info.roi.y_offset, info.roi.height, info.roi.width, info.roi.do_rectify) == (*roi, False)
    intr = Intrinsics.from_camera_info(**conversions.camera_info_fields(info))
    assert (intr.fx, intr.fy, intr.cx, intr.cy, intr.width, intr.height) == intrinsics


@pytest.mark.parametrize("old,new,message", [
    ("binning_x: 0", "binning_x: -2", "binning_x must be an integer >= 0 .0 or 1: no binning.; got -2"),
    ("binning_y: 0", "binning_y: two", "binning_y must be an integer >= 0"),
    ("  width: 0\n", "  width: 8.5\n", "roi.width must be an integer >= 0 .all 0: the full image.; got 8.5"),
    ("do_rectify: false", "do_rectify: 0", "roi.do_rectify must be true or false; got 0"),
    ("roi:\n", "roi: [0, 0]\nx:\n", "roi must be a mapping with x_offset, y_offset, height, width and do_rectify"),
    ("image_width: 160", "image_width: 4294967296", "image_width must be a positive integer; got 4294967296"),
])
def test_parse_names_what_is_wrong_with_binning_and_roi(old, new, message):
    text = SAVED.format(bx=0, by=0, x0=0, y0=0, rh=0, rw=0)
    assert old in text
    with pytest.raises(camera_calibration.CalibrationFileError, match=message):
        camera_calibration.parse(text.replace(old, new, 1))


def test_parse_reads_numbers_in_exponent_form_as_yaml_cpp_does():
    """1e-05 or 2.5E3 (no dot, or an exponent without its sign: what a shortest-form double writer or a hand edit
    gives) are numbers to yaml-cpp, which camera_calibration_parsers reads with; PyYAML's YAML 1.1 took them for
    strings and the file was refused ('must be a list of numbers')."""
    text = OST.format(fx="1e2").replace("[0., 0., 0., 0., 0.]", "[-2.8e-1, 7E-2, 1e-05, -5.E-4, 3e+0]")
    info = camera_calibration.parse(text.replace("79.5,", "7.95E1,", 1))
    assert list(info.k) == [100.0, 0.0, 79.5, 0.0, 100.0, 59.5, 0.0, 0.0, 1.0]
    assert list(info.d) == [-0.28, 0.07, 1e-05, -5e-04, 3.0]
    with pytest.raises(camera_calibration.CalibrationFileError, match="image_width must be a positive integer"):
        camera_calibration.parse(text.replace("image_width: 160", "image_width: 1.6e2"))


@pytest.mark.parametrize("change,message", [
    (("image_width: 160", "image_width: 0"), "image_width must be a positive integer"),
    (("image_height: 120\n", ""), "image_height must be a positive integer"),
    (("rows: 3\n  cols: 4", "rows: 4\n  cols: 3"), "projection_matrix must be 3x4"),
    (("data: [100.0, 0., 79.5, 0., 100.0, 59.5, 0., 0., 1.]", "data: [100.0, 0., 79.5]"), "camera_matrix has 3 values"),
    (("data: [100.0, 0., 79.5, 0., 100.0, 59.5, 0., 0., 1.]", "data: [0., 0., 79.5, 0., 100.0, 59.5, 0., 0., 1.]"),
     "focal lengths must be > 0"),
    (("[0., 0., 0., 0., 0.]", "[0., .nan, 0., 0., 0.]"), "not finite"),
    (("[0., 0., 0., 0., 0.]", "[0., x, 0., 0., 0.]"), "must be a list of numbers"),
    (("image_width: 160", "image_width: [160"), "not YAML"),
])
def test_parse_names_what_is_wrong(change, message):
    text = OST.format(fx=100.0)
    assert change[0] in text
    with pytest.raises(camera_calibration.CalibrationFileError, match=message):
        camera_calibration.parse(text.replace(*change, 1))


# what camera_calibration's cameracalibrator writes as ost.txt (the INI format), for the 160x120 webcam of OST
OST_INI = """# oST version 5.0 parameters


[image]

width
160

height
120

[webcam]

camera matrix
100.000000 0.000000 79.500000
0.000000 100.000000 59.500000
0.000000 0.000000 1.000000

distortion
-0.300000 0.100000 0.001000 0.002000 0.000000

rectification
1.000000 0.000000 0.000000
0.000000 1.000000 0.000000
0.000000 0.000000 1.000000

projection
100.000000 0.000000 79.500000 0.000000
0.000000 100.000000 59.500000 0.000000
0.000000 0.000000 1.000000 0.000000
"""


def test_parse_reads_the_ini_that_camera_calibration_writes(tmp_path):
    """ost.txt / a .ini (camera_calibration_parsers reads both formats; camera_info_manager takes .ini URLs) was
    refused as 'not YAML'; it gives the same CameraInfo as the YAML of the same calibration."""
    yaml_info = camera_calibration.parse(OST.format(fx=100.0).replace("[0., 0., 0., 0., 0.]",
                                                                      "[-0.3, 0.1, 0.001, 0.002, 0.]"))
    (tmp_path / "ost.ini").write_text(OST_INI)
    info = camera_calibration.load(f"file://{tmp_path}/ost.ini")
    for field in ("width", "height", "distortion_model", "d", "k", "r", "p", "binning_x", "binning_y", "roi"):
        assert np.array_equal(getattr(info, field), getattr(yaml_info, field)) if field in "dkrp" else \
            getattr(info, field) == getattr(yaml_info, field), field
    # camera_calibration_parsers' own writer: 5 decimals, a space after each number; 8 coefficients: rational
    cpp = "\n".join(" ".join(f"{float(w):.5f}" for w in line.split()) + " "
                    if " " in line and line[0] in "-0123456789" else line for line in OST_INI.splitlines())
    info = camera_calibration.parse(cpp.replace("0.00000 \n\nrect", "0.00000 0.5 -0.1 0.02\n\nrect"))
    assert (info.distortion_model, list(info.d)) == ("rational_polynomial", [-0.3, 0.1, 0.001, 0.002, 0.0, 0.5,
                                                                              -0.1, 0.02])
    assert list(info.k) == [100.0, 0.0, 79.5, 0.0, 100.0, 59.5, 0.0, 0.0, 1.0]
    assert list(camera_calibration.parse("\ufeff" + OST_INI).k) == list(yaml_info.k)   # saved with a byte order mark


@pytest.mark.parametrize("change,message", [
    (("[webcam]", "[left]\ncamera matrix\n1 0 1\n0 1 1\n0 0 1\n[right]"),
     r"INI calibration with 2 camera sections \(\[left\], \[right\]\); expected one camera's"),
    (("0.002000 0.000000\n", "0.002000\n"), r"distortion has 4 numbers .*for another lens model .equidistant: 4. "
                                             r"use the YAML calibration .ost.yaml."),
    (("\n0.000000 100.000000 59.500000\n", "\n0.000000 100.000000\n"), r"camera matrix has 2 numbers in "
                                                                          r"'0.000000 100.000000'; expected 3"),
    (("width\n160", "width\nwide"), r"\[image\] needs width followed by a positive integer on the next line; "
                                      r"got 'wide'"),
    (("height\n120", "heights\n120"), r"\[image\] needs height .*; got None"),
    (("camera matrix", "camera"), r"\[webcam\] has no camera matrix"),
    (("0.001000 0.002000", "0.001000 x"), r"distortion has a word that is not a number"),
    (("\n0.000000 0.000000 1.000000\n\ndistortion", "\n\ndistortion"), r"camera matrix must be followed by 3"),
    (("100.000000 0.000000 79.500000\n", "0 0 79.5\n"), "focal lengths must be > 0"),
])
def test_parse_names_what_is_wrong_with_an_ini(change, message):
    assert change[0] in OST_INI
    with pytest.raises(camera_calibration.CalibrationFileError, match=message):
        camera_calibration.parse(OST_INI.replace(*change, 1))


def test_urls_resolve_to_paths(tmp_path):
    (tmp_path / "left.yaml").write_text(OST.format(fx=100.0))
    assert camera_calibration.resolve(f"file://{tmp_path}/{{camera}}.yaml", "left") == str(tmp_path / "left.yaml")
    assert camera_calibration.resolve(str(tmp_path / "a b.yaml")) == str(tmp_path / "a b.yaml")
    assert camera_calibration.resolve(f"file://{tmp_path}/a%20b.yaml") == str(tmp_path / "a b.yaml")
    assert camera_calibration.load(f"file://{tmp_path}/{{camera}}.yaml", "left").k[0] == 100.0
    for url, message in ((f"{tmp_path}/{{camera}}.yaml", "has a {camera} placeholder"),
                         ("http://example.com/c.yaml", "unsupported URL scheme 'http'"),
                         ("file://otherhost/c.yaml", "names a local file"),
                         (str(tmp_path / "missing.yaml"), "cannot read camera calibration")):
        with pytest.raises(camera_calibration.CalibrationFileError, match=message.replace("{", r"\{")):
            camera_calibration.load(url, "")


def test_urls_take_camera_info_managers_ros_home_and_say_why_not_its_name(tmp_path, monkeypatch):
    """file://${ROS_HOME}/camera_info/left.yaml (camera_info_manager's default form) is $ROS_HOME, else ~/.ros;
    it was read as a file:// URL naming the host '${ROS_HOME}' ('names a local file'). ${NAME} (the driver's camera
    name) is not known here: refused with what to write instead."""
    monkeypatch.setenv("ROS_HOME", str(tmp_path / "ros"))
    assert camera_calibration.resolve("file://${ROS_HOME}/camera_info/{camera}.yaml", "left") == \
        str(tmp_path / "ros" / "camera_info" / "left.yaml")
    monkeypatch.delenv("ROS_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert camera_calibration.resolve("${ROS_HOME}/camera_info/left.yaml") == str(tmp_path / ".ros" / "camera_info" /
                                                                                 "left.yaml")
    with pytest.raises(camera_calibration.CalibrationFileError,
                       match=r"\$\{NAME\} is camera_info_manager's camera name .its driver's., which this node does "
                             r"not know: write the file's name, or \{camera\} for each camera's name"):
        camera_calibration.resolve("file://${ROS_HOME}/camera_info/${NAME}.yaml", "left")


def test_package_urls_resolve_through_the_ament_index_and_say_what_is_missing(tmp_path, monkeypatch):
    """package://<pkg>/<path> needs the package in a sourced workspace; without any (AMENT_PREFIX_PATH unset, as in
    the pip quick start) the reason is said, not an OSError from the index that ended the node when set live."""
    monkeypatch.delenv("AMENT_PREFIX_PATH", raising=False)
    with pytest.raises(camera_calibration.CalibrationFileError,
                       match="package:// URLs need a sourced ROS workspace .AMENT_PREFIX_PATH is not set.; source it, "
                             "or give file:///abs/path.yaml"):
        camera_calibration.resolve("package://my_camera/calib/left.yaml")
    # a URL without a package name (package:///calib.yaml: an empty launch substitution) or with no valid one: said
    # so, with the form; it was the index's "ValueError: '' is not a valid package name" (live, an unforeseen
    # failure logged as an ERROR), with or without a workspace
    for url, name in (("package:///calib/left.yaml", ""), ("package://my camera/left.yaml", "my camera")):
        with pytest.raises(camera_calibration.CalibrationFileError) as info:
            camera_calibration.resolve(url)
        assert str(info.value) == (f"{url!r}: {name!r} is no package name (letters, digits, _ and -, REP 127): write "
                                   f"package://<package>/<path>, e.g. package://my_camera/calibration/left.yaml")
    index = tmp_path / "share" / "ament_index" / "resource_index" / "packages"
    index.mkdir(parents=True)
    (index / "my_camera").write_text("")
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(tmp_path))
    assert camera_calibration.resolve("package://my_camera/calib/left.yaml") == \
        str(tmp_path / "share" / "my_camera" / "calib" / "left.yaml")
    with pytest.raises(camera_calibration.CalibrationFileError, match="package 'other_camera' is not installed"):
        camera_calibration.resolve("package://other_camera/calib/left.yaml")


def _outputs_with_the_file(harness, path, **params):
    """A node with ``camera_info.url`` = ``path`` (metres from depth.scale / shift, cloud at stride 1; ``params``
    besides) fed 80x60 frames: (node, depth/camera_info, depth array, cloud array) of one frame."""
    node = harness.start_node(**{"depth.scale": 1.0, "depth.shift": 0.2, "points.stride": 1,
                                 "camera_info.url": f"file://{path}", **params})
    got = {n: harness.collector(t, n) for n, t in (("points", PointCloud2), ("depth", Image),
                                                      ("depth/camera_info", CameraInfo))}
    pub = harness.probe.create_publisher(Image, "image", qos())
    wait_for(lambda: pub.get_subscription_count() > 0 and
             all(node.cameras[0].pubs[n].get_subscription_count() > 0 for n in got), what="discovery")
    publish_until(pub, lambda i: make_image(i, width=80, height=60), got["points"])
    cloud = got["points"][0]
    wait_for(lambda: all(any(m.header.stamp == cloud.header.stamp for m in got[n]) for n in got), what="the outputs")
    info = next(m for m in got["depth/camera_info"] if m.header.stamp == cloud.header.stamp)
    depth = conversions.image_array(next(m for m in got["depth"] if m.header.stamp == cloud.header.stamp))
    return node, info, depth, conversions.cloud_array(cloud)


def test_node_uses_the_file_instead_of_the_topic(harness, tmp_path):
    """A 160x120 calibration for 80x60 frames: depth/camera_info is it scaled by 1/2 and the cloud's points
    follow it; the node subscribes no camera_info and needs none."""
    (tmp_path / "ost.yaml").write_text(OST.format(fx=100.0))
    node, info, d, pts = _outputs_with_the_file(harness, tmp_path / "ost.yaml")
    subscribed = {name for name, _ in node.get_subscriber_names_and_types_by_node(node.get_name(), node.get_namespace())}
    assert "/image" in subscribed and "/camera_info" not in subscribed
    assert (info.width, info.height) == (80, 60)
    assert list(info.k) == pytest.approx([50.0, 0.0, 39.75, 0.0, 50.0, 29.75, 0.0, 0.0, 1.0])
    u, v = np.meshgrid(np.arange(80), np.arange(60))
    ok = np.isfinite(d)
    np.testing.assert_allclose(pts["x"][ok], ((u - 39.75) * d / 50.0)[ok], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(pts["y"][ok], ((v - 29.75) * d / 50.0)[ok], rtol=1e-5, atol=1e-6)
    assert node.counts()[""].get("incomplete:no_camera_info", 0) == 0
    cam = {kv.key: kv.value for kv in node.diagnostics().status[1].values}
    assert cam["camera_info"] == "camera_info.url"


def test_the_start_up_line_says_whether_the_files_lens_is_applied(harness, tmp_path):
    """The file of camera_calibration describes the raw camera, D included; with camera_info.rectified true (the
    default) D is not used. The start-up line said "(160x120, plumb_bob distortion)" either way, which read as if the
    lens were applied; now it says whether it is, and what to set for raw images."""
    log = harness.collector(Log, "/rosout")
    (tmp_path / "raw.yaml").write_text(OST.format(fx=100.0).replace("[0., 0., 0., 0., 0.]", "[-0.2, 0.05, 0., 0., 0.]"))
    (tmp_path / "zero.yaml").write_text(OST.format(fx=100.0))
    lines = []
    for file, rectified in (("raw.yaml", True), ("raw.yaml", False), ("zero.yaml", False)):
        log.clear()
        node = harness.start_node(**{"camera_info.url": str(tmp_path / file), "camera_info.rectified": rectified})
        wait_for(lambda: any("calibration from" in m.msg for m in list(log)), what="the start-up line")
        lines.append(next(m.msg for m in list(log) if "calibration from" in m.msg))
        assert file in lines[-1]
        harness.remove_node(node)
    assert "(160x120, plumb_bob distortion not applied: camera_info.rectified is true" in lines[0]
    assert "set camera_info.rectified:=false for the raw images" in lines[0]
    assert "(160x120, plumb_bob distortion, applied: camera_info.rectified is false)" in lines[1]
    assert "(160x120, no distortion)" in lines[2]


def test_node_takes_the_roi_of_the_file(harness, tmp_path):
    """A file saved by camera_info_manager for a camera streaming an 80x60 ROI at (40, 30) of its 160x120 sensor:
    depth/camera_info and the cloud have the sensor's focal length and the centre moved by the offset."""
    (tmp_path / "roi.yaml").write_text(SAVED.format(bx=0, by=0, x0=40, y0=30, rh=60, rw=80))
    _, info, d, pts = _outputs_with_the_file(harness, tmp_path / "roi.yaml")
    assert (info.width, info.height) == (80, 60)
    assert list(info.k) == pytest.approx([100.0, 0.0, 39.5, 0.0, 100.0, 29.5, 0.0, 0.0, 1.0])
    assert list(info.p) == pytest.approx([100.0, 0.0, 39.5, 0.0, 0.0, 100.0, 29.5, 0.0, 0.0, 0.0, 1.0, 0.0])
    u, v = np.meshgrid(np.arange(80), np.arange(60))
    ok = np.isfinite(d)
    assert ok.any()
    np.testing.assert_allclose(pts["x"][ok], ((u - 39.5) * d / 100.0)[ok], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(pts["y"][ok], ((v - 29.5) * d / 100.0)[ok], rtol=1e-5, atol=1e-6)


def test_node_takes_a_plumb_bob_file_of_8_coefficients_as_image_geometry_does(harness, tmp_path):
    """A raw camera's file with the rational model's 8 coefficients under the name plumb_bob (image_geometry hands
    either name's D to OpenCV as it is) stopped the start ('takes 4 or 5 D coefficients'); each point now projects
    back onto its pixel through OpenCV's model of the 8 coefficients."""
    import cv2

    d8 = [-0.3, 0.1, 0.001, 0.002, -0.02, 0.05, 0.01, -0.003]
    (tmp_path / "ost.yaml").write_text(OST.format(fx=100.0).replace("cols: 5\n  data: [0., 0., 0., 0., 0.]",
                                                                     f"cols: 8\n  data: {d8}"))
    _, info, _, pts = _outputs_with_the_file(harness, tmp_path / "ost.yaml", **{"camera_info.rectified": False})
    assert (info.distortion_model, list(info.d)) == ("plumb_bob", d8)
    xyz = np.stack([pts["x"], pts["y"], pts["z"]], -1).reshape(-1, 3).astype(np.float64)
    v, u = (a.ravel() for a in np.mgrid[0:60, 0:80])
    ok = np.isfinite(xyz).all(1)
    assert ok.mean() > 0.9
    px, _ = cv2.projectPoints(xyz[ok].reshape(-1, 1, 3), np.zeros(3), np.zeros(3), np.reshape(info.k, (3, 3)),
                              np.asarray(d8))
    assert np.hypot(px[:, 0, 0] - u[ok], px[:, 0, 1] - v[ok]).max() < 1e-2


def test_each_camera_reads_its_own_file(harness, tmp_path):
    (tmp_path / "left.yaml").write_text(OST.format(fx=100.0))
    (tmp_path / "right.yaml").write_text(OST.format(fx=140.0))
    # {camera} is the last part of the namespace: /stereo/left -> left
    node = harness.start_node(**{"depth.scale": 1.0, "cameras": ["/stereo/left", "right"],
                                 "camera_info.url": str(tmp_path / "{camera}.yaml")})
    topics = {"left": "/stereo/left", "right": "right"}
    infos = {ns: harness.collector(CameraInfo, f"{t}/depth/camera_info") for ns, t in topics.items()}
    pubs = {ns: harness.probe.create_publisher(Image, f"{t}/image", qos()) for ns, t in topics.items()}
    wait_for(lambda: all(p.get_subscription_count() > 0 for p in pubs.values()) and
             all(c.pubs["depth/camera_info"].get_subscription_count() > 0 for c in node.cameras), what="discovery")
    for ns, fx in (("left", 50.0), ("right", 70.0)):
        publish_until(pubs[ns], lambda i: make_image(i, width=80, height=60), infos[ns])
        assert infos[ns][0].k[0] == pytest.approx(fx)


@pytest.mark.parametrize("url,extra,message", [
    ("{tmp}/missing.yaml", {}, "camera_info.url: cannot read camera calibration"),
    ("{tmp}/bad.yaml", {}, "camera_info.url: .*bad.yaml: camera_matrix must be 3x3"),
    ("{tmp}/{{camera}}.yaml", {}, "has a {camera} placeholder"),
    ("{tmp}/fisheye.yaml", {"camera_info.rectified": False}, "camera_info.url: .*not supported"),
    ("{tmp}/six.yaml", {"camera_info.rectified": False},
     r"camera_info.url: .*'plumb_bob' takes 4, 5, 8, 12 or 14 D coefficients .*got 6: fix D"),
])
def test_a_calibration_file_that_cannot_be_used_stops_the_start(harness, tmp_path, url, extra, message):
    (tmp_path / "bad.yaml").write_text(OST.format(fx=100.0).replace("rows: 3\n  cols: 3", "rows: 2\n  cols: 3", 1))
    (tmp_path / "fisheye.yaml").write_text(OST.format(fx=100.0).replace("plumb_bob", "kannala_brandt").replace(
        "[0., 0., 0., 0., 0.]", "[0.1, 0., 0., 0., 0.]"))
    (tmp_path / "six.yaml").write_text(OST.format(fx=100.0).replace("cols: 5\n  data: [0., 0., 0., 0., 0.]",
                                                                    "cols: 6\n  data: [0.1, 0., 0., 0., 0., 0.01]"))
    with pytest.raises(StartupError, match=message.replace("{camera}", r"\{camera\}")):
        harness.start_node(**{"camera_info.url": url.format(tmp=tmp_path), **extra})


def test_the_file_can_be_set_changed_and_cleared_live(harness, tmp_path):
    """camera_info.url with ros2 param set: read at once (a file that cannot be used is refused with the
    reason and nothing changes), used from the next frame; '' goes back to the camera_info topic."""
    (tmp_path / "a.yaml").write_text(OST.format(fx=100.0))
    (tmp_path / "b.yaml").write_text(OST.format(fx=160.0))
    node = harness.start_node(**{"depth.scale": 1.0})
    subscribed = lambda: {t for t, _ in node.get_subscriber_names_and_types_by_node("dpt_node", "/")}  # noqa: E731
    assert "/camera_info" in subscribed()
    infos = harness.collector(CameraInfo, "depth/camera_info")
    pub = harness.probe.create_publisher(Image, "image", qos())
    wait_for(lambda: pub.get_subscription_count() > 0 and
             node.cameras[0].pubs["depth/camera_info"].get_subscription_count() > 0, what="discovery")

    def fx_of_next_frame(stamp: int) -> float:
        pub.publish(make_image(stamp, width=80, height=60))
        wait_for(lambda: any(m.header.stamp.nanosec == stamp for m in infos), what=f"depth/camera_info of {stamp}")
        return next(m for m in infos if m.header.stamp.nanosec == stamp).k[0]

    assert all(r.successful for r in set_params(harness, node, **{"camera_info.url": str(tmp_path / "a.yaml")}))
    assert "/camera_info" not in subscribed()
    assert fx_of_next_frame(1) == pytest.approx(50.0)
    refused = set_params(harness, node, **{"camera_info.url": str(tmp_path / "missing.yaml")})
    assert not refused[0].successful and "cannot read camera calibration" in refused[0].reason
    # a relative path is the node's working folder's, which `ros2 param set` cannot see: said, with what to give
    # (it was "cannot read camera calibration 'ost.yaml': No such file or directory", no folder, no remedy)
    refused = set_params(harness, node, **{"camera_info.url": "no_such_ost.yaml"})
    assert not refused[0].successful and refused[0].reason == (
        f"camera_info.url: cannot read camera calibration 'no_such_ost.yaml': no such file (relative to the node's "
        f"working folder, {os.getcwd()}): give the path of a calibration YAML (file:///abs/path.yaml, "
        f"package://<package>/<path> or a plain path), or '' for the camera_info topic"), refused[0].reason
    assert get_params(harness, node, "camera_info.url") == [str(tmp_path / "a.yaml")]
    with pytest.MonkeyPatch.context() as mp:   # no workspace sourced: refused with the reason (it ended the node)
        mp.delenv("AMENT_PREFIX_PATH", raising=False)
        refused = set_params(harness, node, **{"camera_info.url": "package://my_camera/left.yaml"})
    assert not refused[0].successful and "need a sourced ROS workspace" in refused[0].reason
    # a pipe would block the read (and the node's executor with it: no service replied, no frame went out), a huge
    # or binary file is no calibration: each refused at once with what it is
    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "huge.yaml").write_bytes(b"#" * (camera_calibration.MAX_FILE_BYTES + 1))
    (tmp_path / "binary.yaml").write_bytes(bytes(range(256)))
    for name, why in (("pipe", "is not a regular file"), ("huge.yaml", "bytes: a calibration YAML is a few kB"),
                      ("binary.yaml", "is not text")):
        refused = set_params(harness, node, **{"camera_info.url": str(tmp_path / name)})
        assert not refused[0].successful and why in refused[0].reason, refused[0].reason
    assert node.settings["camera_info.url"] == str(tmp_path / "a.yaml") and fx_of_next_frame(2) == pytest.approx(50.0)
    assert all(r.successful for r in set_params(harness, node, **{"camera_info.url": f"file://{tmp_path}/b.yaml"}))
    assert fx_of_next_frame(3) == pytest.approx(80.0)
    node.cameras[0].info_waited_in_vain = True   # (as an earlier wait for the topic's camera_info left it)
    assert all(r.successful for r in set_params(harness, node, **{"camera_info.url": ""}))
    assert "/camera_info" in subscribed() and node.cameras[0].calibration is None
    assert not node.cameras[0].info_waited_in_vain   # the new subscription's first camera_info is waited for once
    pub.publish(make_image(4, width=80, height=60))   # no camera_info on the topic: none, counted
    wait_for(lambda: node.counts()[""].get("incomplete:no_camera_info", 0) == 1, what="the frame without one")
    assert node.cameras[0].info_waited_in_vain


def test_a_frame_between_camera_info_url_cleared_and_its_subscription_is_early_not_missing(harness, tmp_path,
                                                                                           monkeypatch):
    """camera_info.url set to '': the settings (and the cameras' calibrations) change first, the camera_info
    subscription is made after. A frame that looked for its calibration in between found no file and a camera_info
    topic past its grace wait (that wait counted from an earlier subscription, or from none): an ERROR saying the
    camera_info was missing, as for a misrouted topic. Its grace wait now starts with the change, so such a frame
    is early (a warning, as the first frame after any subscription). Forced here: the frame held in its forward pass
    until the set has cleared the calibration, the subscribing held until the frame has been counted (a window of
    a few statements, wider with more cameras: each one's subscription waits for those made before it)."""
    import threading

    from rclpy.parameter import Parameter

    from dpt_ros.ros.testing import gate_engine

    (tmp_path / "a.yaml").write_text(OST.format(fx=100.0))
    node = harness.start_node(**{"depth.scale": 1.0, "camera_info.url": str(tmp_path / "a.yaml")})
    log = harness.collector(Log, "/rosout")
    infos = harness.collector(CameraInfo, "depth/camera_info")
    pub = harness.probe.create_publisher(Image, "image", qos())
    wait_for(lambda: pub.get_subscription_count() > 0 and
             node.cameras[0].pubs["depth/camera_info"].get_subscription_count() > 0, what="discovery")
    gate, entered, _ = gate_engine(node.models.depth)
    real_subscribe, release = node._subscribe, threading.Event()

    def held_subscribe(cam, name, on):   # (the camera_info subscription, made after the settings changed)
        if name == "camera_info":
            release.wait(30)
        return real_subscribe(cam, name, on)

    monkeypatch.setattr(node, "_subscribe", held_subscribe)
    results = []
    setter = threading.Thread(target=lambda: results.append(
        node.set_parameters([Parameter("camera_info.url", value="")])))
    try:
        pub.publish(make_image(1, width=80, height=60))
        wait_for(entered.is_set, what="the frame in its forward pass")
        setter.start()
        wait_for(lambda: node.cameras[0].calibration is None, what="the calibration cleared")
        assert "camera_info" not in node.cameras[0].subs
        gate.set()
        wait_for(lambda: node.counts()[""].get("incomplete:no_camera_info", 0) == 1, what="the frame without one")
    finally:
        gate.set()
        release.set()
        setter.join(30) if setter.is_alive() else None
    assert results and results[0][0].successful
    assert "camera_info" in node.cameras[0].subs and not infos
    wait_for(lambda: any("[no_camera_info]" in m.msg for m in log), what="the log line")
    line = next(m for m in log if "[no_camera_info]" in m.msg)
    assert line.level == Log.WARN and re.search(r"\] no camera_info yet: none received on /camera_info in the "
                                                r"\d+\.\d s since it was subscribed; ", line.msg), (line.level, line.msg)
    assert not [k for k in node.counts()[""] if k.startswith("error:")], node.counts()


def test_a_frame_in_flight_when_camera_info_url_is_set_names_the_file_its_calibration_came_from(harness, tmp_path):
    """camera_info.url set while a frame is in the worker (a user switching to a calibration file, `ros2 param set`,
    with the camera streaming): the frame's settings are of before the set (no url), and it takes the file's
    calibration that is in force when it looks for one. Its size line named that file's 160x120 as the camera_info
    topic's ('/cal/camera_info describes a 160x120 image', which `ros2 topic echo` shows 80x60), as the source was told
    by the frame's settings, not by where its calibration came from. Forced: the frame held in its forward pass until
    the set has returned."""
    from dpt_ros.ros.testing import gate_engine

    (tmp_path / "ost.yaml").write_text(OST.format(fx=120.0))
    log = harness.collector(Log, "/rosout")
    node, out, pub, info_pub = _camera(harness, "cal", **{"depth.scale": 1.0, "camera_info.policy": "latest"})
    frame = make_image(1, width=80, height=60)
    info_pub.publish(make_info(frame))   # (80x60, fx 50: nothing to scale)
    wait_for(lambda: node.cameras[0].infos, what="the camera_info")
    gate, entered, _ = gate_engine(node.models.depth)
    try:
        pub.publish(frame)
        wait_for(entered.is_set, what="the frame in its forward pass")
        assert set_params(harness, node, **{"camera_info.url": str(tmp_path / "ost.yaml")})[0].successful
    finally:
        gate.set()
    wait_for(lambda: len(out) == 1, what="the frame's depth/camera_info")
    assert out[0].k[0] == pytest.approx(60.0)   # the file's 120 px at 160x120, scaled to the 80x60 frame
    wait_for(lambda: any(" the intrinsics are scaled by " in m.msg for m in log), what="the size line")
    assert [(m.level, m.msg) for m in log if " the intrinsics are scaled by " in m.msg] == [
        (Log.INFO, f"camera_info.url's {tmp_path / 'ost.yaml'} describes a 160x120 image, the frames are 80x60: the "
                   f"intrinsics are scaled by 0.5 (depth/camera_info publishes them, for consumers of depth)")]


def test_a_frame_waiting_for_its_camera_info_when_camera_info_url_is_set_takes_the_file(harness, tmp_path,
                                                                                       monkeypatch):
    """camera_info.url set while a frame waits for its camera_info (none as new as it has come yet: it may be on its
    way): the set unsubscribes camera_info and forgets what it brought, so nothing could end the wait, which ran to
    its end (50 ms, the worker and every camera held) and the frame went out without depth/camera_info and points,
    counted incomplete:no_camera_info with an ERROR '[no_camera_info] no camera_info: none received on /wt/camera_info:
    check that the camera publishes it ... or give a calibration file (camera_info.url)', the file just given. The set now
    ends the wait and the frame takes the file's calibration, as the next frames do. Forced: the wait made 10 s long,
    the set made while the frame is in it (not timed: the frame's outputs and counts are asserted once it is done)."""
    from dpt_ros.ros import node as node_module
    from dpt_ros.ros.testing import watch_waits

    monkeypatch.setattr(node_module, "_INFO_WAIT_S", 10.0)
    (tmp_path / "ost.yaml").write_text(OST.format(fx=120.0))
    node, out, pub, info_pub = _camera(harness, "wt", **{"depth.scale": 1.0})
    waits, waiting = watch_waits(node, monkeypatch)
    first = make_image(10**9, width=80, height=60)
    info_pub.publish(make_info(first))
    wait_for(lambda: node.cameras[0].infos, what="the camera_info")
    pub.publish(first)
    wait_for(lambda: len(out) == 1, what="the first frame's depth/camera_info")
    pub.publish(make_image(2 * 10**9, width=80, height=60))   # its camera_info (stamped 2 s) not sent
    wait_for(waiting.is_set, what="the second frame waiting for its camera_info")
    assert set_params(harness, node, **{"camera_info.url": str(tmp_path / "ost.yaml")})[0].successful
    wait_for(lambda: node.counts()[""].get("processed", 0) == 2, timeout=30, what="the second frame")
    wait_for(lambda: len(out) == node.counts()[""]["out:depth/camera_info"], what="what it published")
    assert waits == [2 * 10**9]
    assert len(out) == 2 and out[1].k[0] == pytest.approx(60.0)   # the file's 120 px at 160x120, for 80x60
    assert {k: n for k, n in node.counts()[""].items() if not k.startswith("out:")} == {"received": 2, "processed": 2}


def test_the_log_names_where_a_frames_calibration_came_from(harness, tmp_path):
    """A camera_info that cannot be used, or that describes another aspect ratio, is named in the log as the topic
    it came on, namespace and remaps applied (/cam/camera_info, not the camera_info of the node's rule), with what
    to do; with camera_info.url, as the file, and the remedy is another file, not a remap of a topic the node does
    not subscribe. An uncalibrated camera (K all zero, as a driver without a calibration publishes it) is told how
    to get one. Before, every one of these lines began 'camera_info', and the file's aspect warning said to remap
    camera_info."""
    (tmp_path / "ost.yaml").write_text(OST.format(fx=100.0))
    log = harness.collector(Log, "/rosout")
    node = harness.start_node(namespace="robot", cli_args=["--ros-args", "-r", "camera_info:=/cam/camera_info"],
                              **{"depth.scale": 1.0, "camera_info.policy": "latest"})
    points = harness.collector(PointCloud2, "/robot/points")
    harness.collector(Image, "/robot/depth")   # (an image output too: every frame goes through post-processing)
    pub = harness.probe.create_publisher(Image, "/robot/image", qos())
    info_pub = harness.probe.create_publisher(CameraInfo, "/cam/camera_info", qos())
    wait_for(lambda: pub.get_subscription_count() > 0 and info_pub.get_subscription_count() > 0 and
             all(node.cameras[0].pubs[n].get_subscription_count() > 0 for n in ("points", "depth")), what="discovery")

    def said(stamp: int, info=None, width: int = 80, height: int = 45) -> None:
        """Send a frame of ``stamp`` (with ``info`` on the topic first), and wait until it is processed."""
        if info is not None:
            info_pub.publish(info)
            wait_for(lambda: node.cameras[0].infos and node.cameras[0].infos[-1][1] == info, what="the camera_info")
        pub.publish(make_image(stamp, width=width, height=height))
        wait_for(lambda: node.counts()[""].get("processed", 0) >= stamp, what=f"frame {stamp}")

    def lines(level: int, text: str) -> list[str]:
        return [m.msg for m in log if m.name == "robot.dpt_node" and m.level == level and text in m.msg]

    uncalibrated = make_info(make_image(0, width=80, height=45))
    uncalibrated.k, uncalibrated.p = [0.0] * 9, [0.0] * 12
    said(1, uncalibrated)
    wait_for(lambda: lines(Log.ERROR, "[calibration]"), what="the calibration error")
    assert lines(Log.ERROR, "[calibration]") == [
        "[calibration] /cam/camera_info: camera is uncalibrated (CameraInfo K[0] == 0); no point cloud can be built; "
        "calibrate the camera (ROS's camera_calibration) and load the result in its driver, or give it to this node "
        "as camera_info.url; depth/camera_info and points skipped"]
    said(2, make_info(make_image(0, width=160, height=120), fx=90.0))   # 4:3 for 16:9 frames (not the file's)
    wait_for(lambda: lines(Log.WARN, "another aspect ratio"), what="the topic's aspect warning")
    (topic,) = lines(Log.WARN, "another aspect ratio")
    assert topic.startswith("/cam/camera_info describes a 160x120 image but the frames are 80x45") and \
        "remap camera_info to the one of these images" in topic, topic
    wait_for(lambda: points, what="the cloud of frame 2")   # (counted processed before its cloud is delivered)
    assert len(points) == 1   # (frame 1's uncalibrated camera_info gave none)

    assert all(r.successful for r in set_params(harness, node, **{"camera_info.url": str(tmp_path / "ost.yaml")}))
    said(3)
    wait_for(lambda: len(lines(Log.WARN, "another aspect ratio")) == 2, what="the file's aspect warning")
    file = lines(Log.WARN, "another aspect ratio")[1]
    assert file.startswith(f"camera_info.url's {tmp_path / 'ost.yaml'} describes a 160x120 image but the frames "
                           f"are 80x45") and "set camera_info.url to the calibration of these images" in file and \
        "remap" not in file, file
    wait_for(lambda: len(points) == 2, what="the cloud of the file's frame")


def test_a_calibration_of_another_size_of_the_same_aspect_is_said_at_info_once_per_size(harness, tmp_path):
    """A camera_info (or file) of 160x120 for 80x60 frames is scaled by 1/2, as README says: the node says so at INFO,
    once per camera and pair of sizes (not a warning: a calibration at the sensor's full size is common). Before it
    was silent, and a consumer of depth that took the camera's own camera_info was off by that factor."""
    (tmp_path / "ost.yaml").write_text(OST.format(fx=120.0))
    log = harness.collector(Log, "/rosout")
    node, out, pub, info_pub = _camera(harness, "scl", **{"depth.scale": 1.0, "camera_info.policy": "latest"})

    def lines() -> list:
        return [m for m in log if m.name == "scl.dpt_node" and " the intrinsics are scaled by " in m.msg]

    def send(stamp: int, cw: int = 0, ch: int = 0) -> CameraInfo:
        if cw:
            info_pub.publish(make_info(make_image(0, width=cw, height=ch), fx=100.0 * cw / 160))
            wait_for(lambda: node.cameras[0].infos and node.cameras[0].infos[-1][1].width == cw, what="the info")
        pub.publish(make_image(stamp, width=80, height=60))
        wait_for(lambda: len(out) == stamp, what=f"depth/camera_info of frame {stamp}")
        return out[-1]

    for stamp, size in enumerate(((160, 120), (160, 120), (80, 60), (320, 240), (160, 120)), 1):
        assert send(stamp, *size).k[0] == pytest.approx(50.0)   # the frames' focal length, whatever the info's size
    assert set_params(harness, node, **{"camera_info.url": str(tmp_path / "ost.yaml")})[0].successful
    assert send(6).k[0] == pytest.approx(60.0)   # a file of the size the topic had: another source, said again
    wait_for(lambda: len(lines()) == 4, what="four lines")
    assert [(m.level, m.msg) for m in lines()] == [(Log.INFO, f"{source} describes a {w}x{h} image, the frames are "
                                                   f"80x60: the intrinsics are scaled by {scale} (depth/camera_info "
                                                   f"publishes them, for consumers of depth)")
                                                  for source, w, h, scale in (
                                                      ("/scl/camera_info", 160, 120, "0.5"),
                                                      ("/scl/camera_info", 320, 240, "0.25"),
                                                      ("/scl/camera_info", 160, 120, "0.5"),
                                                      (f"camera_info.url's {tmp_path / 'ost.yaml'}", 160, 120, "0.5"))]


def test_the_size_lines_of_a_binned_or_roi_camera_info_quote_its_width_and_height(harness):
    """A camera_info with binning or an ROI: the size lines said the size binning and ROI leave ('describes a 160x120
    image') where `ros2 topic echo` shows width 320, height 240 (the sensor's, before them): now both, in the user's
    terms ('describes a 320x240 image (binned 2x2: 160x120)')."""
    log = harness.collector(Log, "/rosout")
    node, out, pub, info_pub = _camera(harness, "bin", **{"depth.scale": 1.0, "camera_info.policy": "latest"})

    def send(stamp: int, w: int, h: int, binning: int = 0, roi: tuple = (0, 0, 0, 0)) -> CameraInfo:
        info = make_info(make_image(0, width=w, height=h), fx=w / 2)
        info.binning_x = info.binning_y = binning
        info.roi.x_offset, info.roi.y_offset, info.roi.width, info.roi.height = roi
        info_pub.publish(info)
        wait_for(lambda: node.cameras[0].infos and node.cameras[0].infos[-1][1] == info, what="the info")
        pub.publish(make_image(stamp, width=80, height=60))
        wait_for(lambda: len(out) == stamp, what=f"depth/camera_info of frame {stamp}")
        return out[-1]

    def lines(text: str) -> list:
        return [(m.level, m.msg) for m in log if m.name == "bin.dpt_node" and text in m.msg]

    assert send(1, 320, 240, binning=2).k[0] == pytest.approx(40.0)   # 160 / 2 binned, then / 2 for 80x60
    assert send(2, 640, 480, binning=2, roi=(80, 60, 480, 360)).k[0] == pytest.approx(320 / 2 / 3)
    send(3, 320, 240, roi=(80, 75, 160, 90))   # 16:9 of a 4:3 sensor, for 4:3 frames
    wait_for(lambda: len(lines(" the intrinsics are scaled by ")) == 2 and lines("another aspect ratio"),
             what="the size lines")
    assert lines(" the intrinsics are scaled by ") == [(Log.INFO, f"/bin/camera_info describes a {size}, the "
                                                       f"frames are 80x60: the intrinsics are scaled by {scale} "
                                                       f"(depth/camera_info publishes them, for consumers of depth)")
                                                      for size, scale in (
                                                          ("320x240 image (binned 2x2: 160x120)", "0.5"),
                                                          ("640x480 image (ROI 480x360 at x 80, y 60, binned 2x2: "
                                                           "240x180)", "0.3333"))]
    ((level, aspect),) = lines("another aspect ratio")
    assert level == Log.WARN and aspect.startswith(
        "/bin/camera_info describes a 320x240 image (ROI 160x90 at x 80, y 75: 160x90) but the frames are 80x60, "
        "another aspect ratio: the intrinsics are scaled per axis (x 0.5, y 0.6667)"), aspect


def test_an_unforeseen_failure_while_setting_a_parameter_is_a_refusal_and_the_node_runs_on(harness, tmp_path,
                                                                                          monkeypatch):
    """Whatever a parameter change raises that the node did not foresee is refused with its reason: raised out of
    the callback it ended the executor's spin (every later service call timed out; the process exited)."""
    (tmp_path / "a.yaml").write_text(OST.format(fx=100.0))
    node = harness.start_node()

    def broken(url, camera=""):
        raise KeyError("a failure nobody foresaw")

    monkeypatch.setattr(camera_calibration, "load", broken)
    refused = set_params(harness, node, **{"camera_info.url": str(tmp_path / "a.yaml")})[0]
    assert not refused.successful and refused.reason == "camera_info.url: KeyError: 'a failure nobody foresaw'"
    assert node.settings["camera_info.url"] == ""
    assert set_params(harness, node, colormap="gray")[0].successful and node.settings["colormap"] == "gray"


def test_a_failure_after_the_settings_changed_puts_them_back(harness, monkeypatch):
    """A change that fails after the node took the new values (here: starting the model load) is refused, and the
    node runs on the values `ros2 param get` still says, not the refused ones."""
    node = harness.start_node()

    def broken(settings):
        raise RuntimeError("cannot start a thread")

    monkeypatch.setattr(node, "_request_models", broken)
    refused = set_params(harness, node, input_size=96)[0]
    assert not refused.successful and refused.reason == "input_size: RuntimeError: cannot start a thread"
    assert node.settings["input_size"] == 64 and node.get_parameter("input_size").value == 64
    assert node._running_calibration is None   # nothing held for the load that never started


def test_the_lens_warning_of_a_frame_in_flight_when_camera_info_url_is_set_names_the_topic_its_calibration_came_on(
        harness, tmp_path, monkeypatch):
    """A raw camera (camera_info.rectified false) whose camera_info changes with every frame: the 5th cloud that
    solves its lens rays afresh warns, with what changed and where. The user, told to give a calibration file, sets
    camera_info.url while that frame, matched with the topic's camera_info, is building its cloud: the warning said
    'fx, fy of camera_info.url differ from the last cloud's', the file not yet in use by any cloud. It now names where
    the frame's calibration came from, /lz/camera_info. Forced: the frame's cloud held (pipeline.build_cloud gated)
    until the set has returned."""
    import threading

    from dpt_ros import pipeline

    (tmp_path / "ost.yaml").write_text(OST.format(fx=120.0))
    log = harness.collector(Log, "/rosout")
    node, points, pub, info_pub = _camera(harness, "lz", "points", **{
        "depth.scale": 1.0, "camera_info.policy": "latest", "camera_info.rectified": False})
    real_build, gate, entered = pipeline.build_cloud, threading.Event(), threading.Event()

    def gated(*args, **kwargs):
        entered.set()
        gate.wait(20)
        return real_build(*args, **kwargs)

    def send(i: int) -> None:   # (focal lengths no other test uses: the solved rays are kept per process)
        frame = make_image(i * 10**9, width=96, height=72)
        info = make_info(frame, fx=71.3 + 0.1 * i)
        info.distortion_model, info.d = "plumb_bob", [-0.3, 0.1, 0.001, -0.002, -0.02]
        info_pub.publish(info)
        wait_for(lambda: node.cameras[0].infos and node.cameras[0].infos[-1][0] == i * 10**9, what="info stored")
        pub.publish(frame)

    for i in range(1, 5):   # 4 clouds, each solving its rays
        send(i)
        wait_for(lambda: len(points) == i, what=f"cloud {i}")
    monkeypatch.setattr(pipeline, "build_cloud", gated)
    try:
        send(5)
        wait_for(entered.is_set, what="the 5th frame building its cloud")
        assert set_params(harness, node, **{"camera_info.url": str(tmp_path / "ost.yaml")})[0].successful
    finally:
        gate.set()
    wait_for(lambda: len(points) == 5, what="cloud 5")

    def said_now() -> list:
        return [(m.level, m.msg) for m in list(log) if "lens rays of points" in m.msg]

    wait_for(said_now, what="the lens rays warning on /rosout")   # (its own topic: it may come after cloud 5)
    said = said_now()
    assert len(said) == 1 and said[0][0] == Log.WARN, said
    assert said[0][1].startswith("/lz/image: the lens rays of points (camera_info.rectified false: plumb_bob "
                                 "distortion) were solved afresh for 5 of its last 5 clouds, ") and \
        ": its calibration changes from frame to frame (fx, fy of /lz/camera_info differ from the last cloud's)." \
        in said[0][1], said


def _url_and_compressed_refused(harness, url, ns: str = "") -> str:
    """camera_info.url := ``url`` and image_transport := compressed in one request (`ros2 param load`) to the node
    ``ns``/dpt_node, refused as rcl cannot subscribe ``ns``/image/compressed: the refusal's reason."""
    refused = set_params_atomically(harness, f"{ns}/dpt_node", **{"camera_info.url": str(url)},
                                    image_transport="compressed")
    assert not refused.successful and refused.reason.startswith(
        f"camera_info.url, image_transport: cannot subscribe {ns}/image/compressed"), refused.reason
    return refused.reason


def test_a_refused_camera_info_url_change_leaves_the_calibration_the_parameter_says(harness, tmp_path):
    """A change of camera_info.url whose subscription rcl refuses: another node of the process (one DDS participant)
    has the camera_info topic, or /image/compressed, with another message type. The set was refused and the
    parameter read back the old file, but the camera had already taken the new calibration: after '' none at all (no
    file, no camera_info subscription: its frames had no depth/camera_info, 'no depth/camera_info of frame 2 in
    20 s'), after another file that file's. Now the camera keeps the file the parameter says, its
    frames the outputs of it, also for a refused set of several parameters at once (`ros2 param load`)."""
    (tmp_path / "a.yaml").write_text(OST.format(fx=100.0))
    (tmp_path / "b.yaml").write_text(OST.format(fx=160.0))
    node = harness.start_node(**{"depth.scale": 1.0, "camera_info.url": str(tmp_path / "a.yaml")})
    infos = harness.collector(CameraInfo, "depth/camera_info")
    pub = harness.probe.create_publisher(Image, "image", qos())
    wait_for(lambda: pub.get_subscription_count() > 0 and
             node.cameras[0].pubs["depth/camera_info"].get_subscription_count() > 0, what="discovery")

    def fx_of_next_frame(stamp: int) -> float:   # (sent again until it comes: a refused set may subscribe anew)
        got = lambda: [m.k[0] for m in infos if m.header.stamp.nanosec == stamp]  # noqa: E731
        for _ in range(40):
            pub.publish(make_image(stamp, width=80, height=60))
            try:
                wait_for(lambda: bool(got()), timeout=0.5)
                break
            except AssertionError:
                continue
        assert got(), f"no depth/camera_info of frame {stamp} in 20 s"
        return got()[0]

    assert fx_of_next_frame(1) == pytest.approx(50.0)   # a.yaml's 100 for 160x120, scaled to 80x60
    # (image messages on the camera_info topic, in this process: rcl refuses the node's CameraInfo subscription)
    harness.probe.create_publisher(Image, "camera_info", qos())
    refused = set_params(harness, node, **{"camera_info.url": ""})[0]
    assert not refused.successful
    assert get_params(harness, node, "camera_info.url") == [str(tmp_path / "a.yaml")]
    assert fx_of_next_frame(2) == pytest.approx(50.0)
    assert refused.reason.startswith("camera_info.url: cannot subscribe /camera_info (sensor_msgs/msg/CameraInfo): "), \
        refused.reason
    cam = {kv.key: kv.value for kv in node.diagnostics().status[1].values}
    assert "/camera_info" not in {t for t, _ in node.get_subscriber_names_and_types_by_node("dpt_node", "/")}
    assert cam["camera_info"] == "camera_info.url" and "not_subscribed" not in cam
    # b.yaml and image_transport compressed at once, /image/compressed of another type: b.yaml is not taken either
    harness.probe.create_publisher(Image, "image/compressed", qos())
    reason = _url_and_compressed_refused(harness, tmp_path / "b.yaml")
    assert reason.endswith("; camera_info.url, image_transport keep their values and the node its "
                           "subscriptions: set them again once the topic can be subscribed"), reason
    assert get_params(harness, node, "camera_info.url", "image_transport") == [str(tmp_path / "a.yaml"), "raw"]
    assert fx_of_next_frame(3) == pytest.approx(50.0)


def test_a_refused_camera_info_url_set_keeps_the_camera_infos_the_node_holds(harness, tmp_path):
    """camera_info.url and image_transport set at once (`ros2 param load`), refused as rcl cannot subscribe
    /ri/image/compressed (an Image publisher of it in this process): the set had destroyed the camera_info
    subscription, and with it the camera_infos it had buffered, before the image switch failed, and the refusal's
    subscribing back made it anew, empty: a frame whose camera_info had come just before found none and went out
    without depth/camera_info (incomplete:no_camera_info). Now the subscription a file replaces goes only once the
    change stands: refused, the camera keeps it and what it brought."""
    (tmp_path / "ost.yaml").write_text(OST.format(fx=120.0))
    node, out, pub, info_pub = _camera(harness, "ri", **{"depth.scale": 1.0})
    frame = make_image(10**9, width=80, height=60)
    sub = node.cameras[0].subs["camera_info"]
    info_pub.publish(make_info(frame))
    wait_for(lambda: node.cameras[0].infos, what="the camera_info")
    harness.probe.create_publisher(Image, "/ri/image/compressed", qos())   # (rcl refuses the CompressedImage one)
    _url_and_compressed_refused(harness, tmp_path / "ost.yaml", ns="/ri")
    assert node.cameras[0].subs["camera_info"] is sub and len(node.cameras[0].infos) == 1
    pub.publish(frame)
    wait_for(lambda: node.counts()[""].get("processed") == 1, what="the frame processed")
    wait_for(lambda: len(out) == 1, what="its depth/camera_info")
    assert out[0].k[0] == pytest.approx(make_info(frame).k[0])   # the topic's, not the file's (60 px)
    assert {k: n for k, n in node.counts()[""].items() if not k.startswith("out:")} == {"received": 1, "processed": 1}
