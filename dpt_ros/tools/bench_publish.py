"""Cost of turning the node's host arrays into published messages: message objects vs serialized CDR.

For a 640x480 depth image (32FC1, 1.2 MB) and the node's default cloud (stride 2: 320x240 x y z rgb,
1.2 MB), times "build the output + ``Publisher.publish``" both ways, alternating in rounds within one
run, with a reliable keep-last-1 subscriber in another process (as in a deployment). Prints the median
per message and the ratio serialized / objects, and how many messages the subscriber received of those sent
(keep-last-1: a subscriber slower than the publisher skips some; the timings are the publisher's).

    python -m dpt_ros.tools.bench_publish [--width 640 --height 480 --stride 2 --messages 300]

Uses the DDS environment of this shell; set the Fast DDS large-data profile (README) to time the
shared-memory transport a camera-sized deployment should use.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

from dpt_ros.ros.dds_env import shm_notice
from dpt_ros.tools import write_whole
from dpt_ros.tools.bench_node_stages import _stop_subscriber, _subscriber_process
from dpt_ros.ros.params import parameter_option
from dpt_ros.tools.options import add_domain_argument, amount, count, output_file, ToolParser

FORMATS = ("objects", "serialized")
#: the timed rounds --messages is sent in (after an untimed one), each of both formats in turn
ROUNDS = 10


def parse_args(argv=None) -> argparse.Namespace:
    ap = ToolParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=count("pixels"), default=640, help="frame width, at least 1 (default 640)")
    ap.add_argument("--height", type=count("pixels"), default=480, help="frame height, at least 1 (default 480)")
    ap.add_argument("--stride", type=parameter_option("points.stride", "--stride"), default=2,
                    help="cloud decimation (the node's points.stride, 1..64; default 2)")
    ap.add_argument("--messages", type=count("messages", least=ROUNDS, note=f"they are sent in {ROUNDS} timed rounds "
                                                                            f"of --messages // {ROUNDS}"),
                    default=300, help=f"messages per output and format, at least {ROUNDS} (default 300)")
    ap.add_argument("--rate", type=amount("rate", "Hz", above=True), default=30.0,
                    help="publish rate (Hz), more than 0 (default 30)")
    add_domain_argument(ap, 89)
    ap.add_argument("--json", default=None, type=output_file(), help="also write the results to this file")
    return ap.parse_args(argv)


def run(args: argparse.Namespace) -> dict:
    from sensor_msgs.msg import Image, PointCloud2

    from dpt_ros import pipeline
    from dpt_ros.ros import conversions
    from dpt_ros.ros.testing import Harness, make_image, qos, wait_for

    if not conversions.cdr_matches_rmw():
        raise SystemExit("this rmw does not read dpt_ros's CDR: the node publishes message objects; nothing to compare")
    rng = np.random.default_rng(0)
    depth = rng.uniform(0.5, 10.0, (args.height, args.width)).astype(np.float32)
    rgb = rng.integers(0, 255, (args.height, args.width, 3), dtype=np.uint8)
    intr = pipeline.Intrinsics(500.0, 500.0, args.width / 2, args.height / 2, args.width, args.height)
    cloud = pipeline.build_cloud(depth, intr, rgb=rgb, stride=args.stride, organized=True)
    header = make_image(1, 4, 4).header
    build = {
        "objects": {"depth": lambda: conversions.image_msg(header, depth, "32FC1"),
                    "points": lambda: conversions.cloud_msg(header, cloud)},
        "serialized": {"depth": lambda: conversions.image_cdr(header, depth, "32FC1"),
                       "points": lambda: conversions.cloud_cdr(header, cloud)},
    }
    # (the shell's profile: in a /dev/shm too small for both processes' segments the times are UDP's)
    shm_notice("bench_publish", processes=2, who="bench_publish and its subscriber process")
    harness = Harness(args.domain)
    subscriber = _subscriber_process(["depth", "points"], args.domain)
    times: dict = {f: {"depth": [], "points": []} for f in FORMATS}
    try:
        pubs = {"depth": harness.probe.create_publisher(Image, "depth", qos()),
                "points": harness.probe.create_publisher(PointCloud2, "points", qos())}
        wait_for(lambda: all(p.get_subscription_count() > 0 for p in pubs.values()), timeout=30, what="subscriber")
        time.sleep(0.5)
        rounds, period = ROUNDS, 1.0 / args.rate
        per_round = max(1, args.messages // rounds)
        for r in range(rounds + 1):            # round 0 warms both paths up and is not counted
            for fmt in FORMATS:
                for _ in range(per_round):
                    for name, make in build[fmt].items():
                        t = time.perf_counter()
                        pubs[name].publish(make())
                        dt = time.perf_counter() - t
                        if r:
                            times[fmt][name].append(dt * 1000.0)
                    time.sleep(period)
    finally:
        received = _stop_subscriber(subscriber)
        harness.shutdown()
    sent = (rounds + 1) * per_round * len(FORMATS)
    result = {"width": args.width, "height": args.height, "stride": args.stride,
              "bytes": {"depth": depth.nbytes, "points": len(cloud.data)}, "sent_per_output": sent,
              "received": received}
    for name in ("depth", "points"):
        med = {f: statistics.median(times[f][name]) for f in FORMATS}
        # 4 decimals: a small message takes ~0.05 ms, where 3 would leave 1 % of rounding in each figure
        result[name] = {**{f"{f}_ms": round(v, 4) for f, v in med.items()},
                        "ratio": round(med["serialized"] / med["objects"], 3)}
    return result


def main(argv=None) -> None:
    args = parse_args(argv)
    r = run(args)
    print(f"bench_publish: {r['width']}x{r['height']} depth ({r['bytes']['depth']} B) and stride-{r['stride']} "
          f"xyz+rgb cloud ({r['bytes']['points']} B), build + publish, median ms per message, reliable subscriber "
          "in another process")
    for name in ("depth", "points"):
        v = r[name]
        print(f"  {name:6s}  message objects {v['objects_ms']:.3f}  serialized CDR {v['serialized_ms']:.3f}  "
              f"ratio {v['ratio']:.2f}")
    print(f"  sent {r['sent_per_output']} per output, received {r['received']} (keep-last-1: a slow subscriber "
          "may skip some)")
    if args.json:
        write_whole(args.json, json.dumps(r, indent=2))


if __name__ == "__main__":
    from dpt_ros.tools import run_benchmark

    run_benchmark("bench_publish", main)
