"""Overload: a 30 Hz camera for 20 s while every inference takes >= 100 ms (a forward pre-hook on the
real model inside Engine.run sleeps 100 ms, then the real forward runs). The node keeps only the
newest frame: processed + dropped = received, output age p99 <= two batches + 50 ms (250 ms when a
batch is the 100 ms alone; the real forward's share grows with the machine's load), stamps strictly
increasing, memory flat."""
import os
import threading
import time

import numpy as np
import pytest
from sensor_msgs.msg import Image

from dpt_ros.ros.testing import make_image, qos, wait_for
from dpt_ros.tools.bench_reliability import num_threads, record, rss_mb

DOMAIN = 52
RATE_HZ = 30.0
SECONDS = float(os.environ.get("DPT_OVERLOAD_SECONDS", "20"))
SLOW_S = 0.100


@pytest.mark.slow
def test_overload_30hz_with_100ms_inference(harness):
    node = harness.start_node()
    arrivals = []   # (stamp ns, receipt time ns)
    harness.probe.create_subscription(
        Image, "inverse_depth", lambda m: arrivals.append((m.header.stamp.sec * 10**9 + m.header.stamp.nanosec,
                                                           time.time_ns())), qos())
    pub = harness.probe.create_publisher(Image, "image", qos("reliable"))
    wait_for(lambda: pub.get_subscription_count() > 0 and
             node.cameras[0].pubs["inverse_depth"].get_subscription_count() > 0, what="discovery")

    def slow(module, args):
        time.sleep(SLOW_S)

    pre = node.models.depth.model.register_forward_pre_hook(slow)
    frame = make_image(0, 80, 60)
    published = 0
    rss = []
    stop = threading.Event()

    def sample_rss():
        while not stop.wait(1.0):
            rss.append(rss_mb())

    sampler = threading.Thread(target=sample_rss, daemon=True)
    sampler.start()
    threads_before = num_threads()
    t0 = time.monotonic()
    try:
        while True:   # absolute schedule: frame k at t0 + k / 30 s, stamped with the wall clock
            due = t0 + published / RATE_HZ
            if due - t0 >= SECONDS:
                break
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            frame.header.stamp.sec, frame.header.stamp.nanosec = divmod(time.time_ns(), 10**9)
            pub.publish(frame)
            published += 1
        elapsed = time.monotonic() - t0

        last = [None, time.monotonic()]

        def accounted():   # every received frame processed or dropped, and nothing new for 0.5 s
            c = node.counts()[""]
            done = sum(v for k, v in c.items() if k in ("processed", "dropped", "idle") or k.startswith("error:"))
            if c.get("received") != last[0]:
                last[:] = [c.get("received"), time.monotonic()]
            return c.get("received", 0) == done and time.monotonic() - last[1] > 0.5
        wait_for(accounted, timeout=15, what=f"every received frame processed or dropped: {node.counts()}")
        # the last outputs may still be on their way to this process's subscription
        wait_for(lambda: len(arrivals) >= node.counts()[""].get("processed", 0),
                 what=f"an output for every processed frame: {len(arrivals)} received, {node.counts()}")
    finally:
        stop.set()
        sampler.join()
        pre.remove()
    c = node.counts()[""]
    errors = sum(v for k, v in c.items() if k.startswith("error:"))
    assert c["received"] == c.get("processed", 0) + c.get("dropped", 0) + c.get("idle", 0) + errors, c
    assert errors == 0 and c.get("idle", 0) == 0
    stamps = [s for s, _ in arrivals]
    assert len(stamps) == c["processed"]
    assert all(b > a for a, b in zip(stamps, stamps[1:])), "output stamps not strictly increasing"
    ages_ms = np.array([(r - s) / 1e6 for s, r in arrivals])
    p50, p99, worst = (float(np.percentile(ages_ms, q)) for q in (50, 99, 100))
    # the node's own time per batch (decode .. publish: the 100 ms sleep plus the real forward, whose
    # share depends on how loaded the machine is)
    with node._lock:
        batch_ms = np.array([sum(v) for v in zip(*node._stage_ms.values())])
    batch_p99, batch_mean = float(np.percentile(batch_ms, 99)), float(batch_ms.mean())
    # keeping only the newest frame bounds an output's age by two batches (the one running when the
    # frame arrived, then its own) plus 50 ms of transport: 250 ms for a 100 ms batch. A queue of
    # even one more frame would add a third batch.
    age_bound_ms = 2 * batch_p99 + 50.0
    # memory: after the first 5 s the resident size stays flat
    warm = rss[min(4, len(rss) - 1)]
    growth = max(rss[5:] or [warm]) - warm
    figures = dict(camera_hz=RATE_HZ, seconds=round(elapsed, 1), inference_ms=">= 100 (forward pre-hook sleep + real forward)",
                   published=published, received=c["received"], processed=c["processed"], dropped=c["dropped"],
                   output_hz=round(c["processed"] / elapsed, 2), age_p50_ms=round(p50, 1), age_p99_ms=round(p99, 1),
                   age_max_ms=round(worst, 1), batch_p99_ms=round(batch_p99, 1), batch_mean_ms=round(batch_mean, 1),
                   age_bound_ms=round(age_bound_ms, 1), rss_growth_after_5s_mb=round(growth, 1),
                   threads_before=threads_before, threads_after=num_threads())
    record("overload", **figures)
    # the camera -> node hop is best effort (sensor-data QoS): on a loaded 2-core machine DDS may
    # lose a few frames before the node sees them; the node's own accounting above is exact
    assert c["received"] >= 0.95 * published, figures
    assert p99 <= age_bound_ms, figures
    # the worker never idles while frames wait: batches back to back for >= 80 % of the time
    assert c["processed"] >= 0.8 * elapsed / (batch_mean / 1000.0), figures
    assert growth < 20.0, figures
