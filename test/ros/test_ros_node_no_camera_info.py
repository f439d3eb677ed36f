"""A camera whose camera_info never came, or comes from an uncalibrated camera, with only outputs subscribed that need
one (points, depth/camera_info): the model is not run for nothing, and /diagnostics and the log say which topic and
what to do."""
from __future__ import annotations

from diagnostic_msgs.msg import DiagnosticStatus
from rcl_interfaces.msg import Log
from sensor_msgs.msg import CameraInfo, Image, PointCloud2

from dpt_ros.ros.testing import make_image, make_info, publish_until, qos, wait_for, worker_done

DOMAIN = 92   # (82 is test_ros_node_names.py's)


def test_only_the_cloud_subscribed_and_no_camera_info_runs_no_model(harness, monkeypatch):
    """Only ``points`` is subscribed and the camera's camera_info has brought nothing (past the first seconds): each
    frame is counted as error.no_camera_info without a forward pass (the model ran on every frame for a cloud it could
    not build, counted processed), the camera's status names the missing topic; once camera_info comes, clouds do."""
    from dpt_ros.ros import node as node_module

    monkeypatch.setattr(node_module, "_INFO_GRACE_S", 0.0)   # (past the first seconds: none is on its way)
    node = harness.start_node(namespace="cam", **{"depth.scale": 1.0})
    points = harness.collector(PointCloud2, "/cam/points")
    pub = harness.probe.create_publisher(Image, "/cam/image", qos("reliable"))
    wait_for(lambda: pub.get_subscription_count() > 0 and
             node.cameras[0].pubs["points"].get_subscription_count() > 0, what="discovery")
    for i in range(1, 4):   # one at a time: each counted before the next (none replaces a waiting one)
        pub.publish(make_image(i * 10**8))
        wait_for(lambda: sum(n for k, n in node.counts()[""].items() if k.endswith(":no_camera_info")) == i,
                 what=f"frame {i} counted")
    counts = node.counts()[""]
    assert counts["received"] == 3 and counts.get("processed", 0) == 0 and node.error_counts() == {"no_camera_info": 3}
    status = node.diagnostics().status
    values = {kv.key: kv.value for kv in status[0].values}
    assert values["latency.batches"] == "0"   # no forward pass
    cam = {kv.key: kv.value for kv in status[1].values}
    assert status[1].level == DiagnosticStatus.WARN and cam["error.no_camera_info"] == "3"
    assert cam["camera_info"].startswith(
        "none received on /cam/camera_info: check that the camera publishes it there (remap camera_info:=...)"), cam
    # the camera_info comes: the next frames have their clouds, and the status no longer says it is missing
    info_pub = harness.probe.create_publisher(CameraInfo, "/cam/camera_info", qos("reliable"))
    wait_for(lambda: info_pub.get_subscription_count() > 0, what="camera_info discovery")
    publish_until(pub, lambda i: make_image(10**9 + i), points, n=1, info_pub=info_pub)
    wait_for(lambda: worker_done(node), what="the worker done")   # (it counts a frame after publishing its cloud)
    assert node.counts()[""]["processed"] >= 1 and len(points) >= 1
    assert "camera_info" not in {kv.key for kv in node.diagnostics().status[1].values}


def test_only_the_cloud_subscribed_and_an_uncalibrated_camera_runs_no_model(harness):
    """Only ``points`` is subscribed and the camera's camera_info is of an uncalibrated camera (K all zero, as a driver
    without a calibration publishes it with every image): each frame is counted as error.calibration without a forward
    pass (the model ran on every frame for a cloud it could not build, counted processed and incomplete.calibration),
    and the log says what to do; once a calibrated camera_info comes, clouds do."""
    node = harness.start_node(namespace="cam", **{"depth.scale": 1.0})
    points = harness.collector(PointCloud2, "/cam/points")
    log = harness.collector(Log, "/rosout")
    pub = harness.probe.create_publisher(Image, "/cam/image", qos("reliable"))
    info_pub = harness.probe.create_publisher(CameraInfo, "/cam/camera_info", qos("reliable"))
    wait_for(lambda: pub.get_subscription_count() > 0 and info_pub.get_subscription_count() > 0 and
             node.cameras[0].pubs["points"].get_subscription_count() > 0, what="discovery")
    for i in range(1, 4):   # one at a time: each counted before the next (none replaces a waiting one)
        frame = make_image(i * 10**8)
        info = make_info(frame)
        info.k, info.p = [0.0] * 9, [0.0] * 12
        info_pub.publish(info)
        wait_for(lambda: node.cameras[0].infos and node.cameras[0].infos[-1][1] == info, what=f"camera_info {i}")
        pub.publish(frame)
        wait_for(lambda: sum(n for k, n in node.counts()[""].items() if k.endswith(":calibration")) == i,
                 what=f"frame {i} counted")
    counts = node.counts()[""]
    assert counts["received"] == 3 and counts.get("processed", 0) == 0 and counts["error:calibration"] == 3
    assert node.error_counts() == {"calibration": 3}
    assert {kv.key: kv.value for kv in node.diagnostics().status[0].values}["latency.batches"] == "0"   # no forward pass
    wait_for(lambda: any("[calibration]" in m.msg for m in log), what="the log line")
    (line,) = [m.msg for m in log if "[calibration]" in m.msg]
    assert line == ("[calibration] /cam/camera_info: camera is uncalibrated (CameraInfo K[0] == 0); no point cloud can "
                    "be built; calibrate the camera (ROS's camera_calibration) and load the result in its driver, or "
                    "give it to this node as camera_info.url; the model is not run for this camera while points (which "
                    "need a calibration) are its only outputs subscribed"), line
    # the camera is calibrated: the next frames have their clouds
    publish_until(pub, lambda i: make_image(10**9 + i), points, n=1, info_pub=info_pub)
    wait_for(lambda: worker_done(node), what="the worker done")   # (it counts a frame after publishing its cloud)
    assert node.counts()[""]["processed"] >= 1 and len(points) >= 1


def test_a_segmentation_only_node_does_not_ask_for_a_camera_info_it_does_not_need(harness, monkeypatch):
    """Segmentation alone (segmentation.launch.py: depth.variant '') makes nothing from a camera_info: a camera that
    sends none (a webcam without a calibration) is not told in its status to remap camera_info or to give a
    calibration file, and its status stays OK while its labels come."""
    from dpt_ros.ros import node as node_module

    monkeypatch.setattr(node_module, "_INFO_GRACE_S", 0.0)   # (past the first seconds: none is on its way)
    node = harness.start_node(namespace="seg", **{"depth.variant": "", "segmentation.variant": "dpt_hybrid_ade20k",
                                                  "segmentation.weights": "random"})
    labels = harness.collector(Image, "/seg/segmentation")
    pub = harness.probe.create_publisher(Image, "/seg/image", qos("reliable"))
    wait_for(lambda: pub.get_subscription_count() > 0 and
             node.cameras[0].pubs["segmentation"].get_subscription_count() > 0, what="discovery")
    publish_until(pub, lambda i: make_image(i * 10**8), labels, n=1, timeout=60)
    wait_for(lambda: node.counts()[""].get("processed", 0) >= 1, what="the frame counted")
    assert node._never_had_info(node.cameras[0])   # (subscribed, nothing came: what a depth node's status reports)
    status = node.diagnostics().status[1]
    assert status.level == DiagnosticStatus.OK, status
    assert "camera_info" not in {kv.key for kv in status.values}, status.values
    assert node.error_counts() == {}
