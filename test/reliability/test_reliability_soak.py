"""Soak: 10,000 frames through DDS into the node and out again (dpt_tiny on the CPU, 64x48 frames,
32 px network, every depth output enabled: inverse_depth, inverse_depth/colored, depth,
depth/camera_info and points). Frames are fed at the highest rate the node sustains (a new frame
as soon as the previous output is back, so one frame always waits). After a 1,000-frame warm-up:
resident memory grows < 20 MB, and threads and open files do not grow."""
import gc
import os
import threading
import time

import pytest
from sensor_msgs.msg import CameraInfo, Image, PointCloud2

from dpt_ros.ros.testing import make_image, make_info, qos, wait_for
from dpt_ros.tools.bench_reliability import num_fds, num_threads, record, rss_mb

DOMAIN = 55
FRAMES = int(os.environ.get("DPT_SOAK_FRAMES", "10000"))
WARMUP = min(1000, FRAMES // 10)


@pytest.mark.slow
def test_soak_10000_frames(harness):
    node = harness.start_node(**{"input_size": 32, "depth.scale": 1.0, "depth.shift": 0.5,
                                 "camera_info.policy": "latest", "diagnostics.period": 0.5})
    done = threading.Condition()
    got = {"points": 0}

    def on_points(msg):
        with done:
            got["points"] += 1
            done.notify()

    for topic, kind in (("inverse_depth", Image), ("inverse_depth/colored", Image), ("depth", Image),
                        ("depth/camera_info", CameraInfo)):
        harness.probe.create_subscription(kind, topic, lambda m: None, qos())
    harness.probe.create_subscription(PointCloud2, "points", on_points, qos())
    pub = harness.probe.create_publisher(Image, "image", qos("reliable"))
    info_pub = harness.probe.create_publisher(CameraInfo, "camera_info", qos("reliable"))
    subscribed = ("inverse_depth", "inverse_depth/colored", "depth", "depth/camera_info", "points")
    wait_for(lambda: pub.get_subscription_count() > 0 and info_pub.get_subscription_count() > 0 and
             all(node.cameras[0].pubs[n].get_subscription_count() > 0 for n in subscribed), what="discovery")
    frame = make_image(1, 64, 48)
    info_pub.publish(make_info(frame))
    wait_for(lambda: len(node.cameras[0].infos) == 1, what="camera_info")
    published = 0
    samples = {}
    t0 = time.monotonic()
    while True:
        processed = node.counts()[""].get("processed", 0)
        if processed >= FRAMES:
            break
        if processed >= WARMUP and "warm" not in samples:
            gc.collect()
            samples["warm"] = (rss_mb(), num_threads(), num_fds())
        with done:   # keep one frame waiting: publish when all but the last published are back
            done.wait_for(lambda: got["points"] >= published - 1, timeout=5.0)
        published += 1
        frame.header.stamp.sec, frame.header.stamp.nanosec = divmod(published * 1_000_000, 10**9)
        pub.publish(frame)
    elapsed = time.monotonic() - t0
    wait_for(lambda: node.cameras[0].pending is None, what="last frame taken")
    time.sleep(0.2)
    gc.collect()
    end = (rss_mb(), num_threads(), num_fds())
    warm = samples["warm"]
    c = node.counts()[""]
    figures = dict(frames_processed=c["processed"], frames_published=published, dropped=c.get("dropped", 0),
                   seconds=round(elapsed, 1), frames_per_s=round(c["processed"] / elapsed, 1),
                   rss_after_warmup_mb=round(warm[0], 1), rss_end_mb=round(end[0], 1),
                   rss_growth_mb=round(end[0] - warm[0], 1),
                   rss_growth_per_1000_frames_mb=round((end[0] - warm[0]) / max(c["processed"] - WARMUP, 1) * 1000, 2),
                   threads_warm_end=f"{warm[1]} -> {end[1]}", open_fds_warm_end=f"{warm[2]} -> {end[2]}",
                   outputs_per_frame=5)
    lat = {v.key: v.value for v in node.diagnostics().status[0].values if v.key.startswith("latency.")}
    figures["node_stage_ms"] = ", ".join(f"{k[8:-3]} {v}" for k, v in lat.items()   # the means, not the sums
                                         if not k.startswith("latency.total") and k.endswith("_ms")
                                         and not k.endswith("_sum_ms"))
    record("soak", **figures)
    assert c["processed"] >= FRAMES
    assert not any(k.startswith("error:") for k in c), c
    assert c["out:points"] == c["out:depth"] == c["processed"]
    assert end[0] - warm[0] < 20.0, figures
    assert end[1] <= warm[1], figures
    assert end[2] <= warm[2], figures
