"""What dpt_lifecycle_node's transitions cost: wall time of configure (model load and warm-up), activate, deactivate
and cleanup, and the memory a configuration holds and cleanup gives back (process RSS; on CUDA, PyTorch's
allocated and reserved memory). RANDOM WEIGHTS (the times do not depend on trained values).

    python -m dpt_ros.tools.bench_lifecycle --variant dpt_hybrid --input-size 384 --device cpu --cycles 2
    python -m dpt_ros.tools.bench_lifecycle --variant dpt_hybrid --device cuda --precision fp16

Prints one line per cycle and a JSON summary (``--json`` writes it to a file too).
"""
from __future__ import annotations

import argparse
import gc
import json
import time

import torch
from rclpy.lifecycle import TransitionCallbackReturn

from dpt_ros.ros.node import resolve_device
from dpt_ros.ros.params import parameter_option, target_refusals
from dpt_ros.ros.testing import Harness
from dpt_ros.tools import write_whole
from dpt_ros.tools.bench_e2e import add_target_arguments
from dpt_ros.tools.bench_reliability import rss_mb
from dpt_ros.tools.options import add_depth_variant_argument, add_domain_argument, count, output_file, ToolParser


def _memory(device: str) -> dict:
    """The process's resident memory, and the CUDA memory of the device the node's model is on (``device`` as the
    node's parameter: ``auto`` is the GPU where there is one, ``cuda`` the current device, ``cuda:N`` device N)."""
    gc.collect()
    out = {"rss_mb": round(rss_mb(), 1)}
    where = resolve_device(device)
    # (a device this machine lacks has no memory to report: the node refuses it at configure, the benchmark then)
    if where.type == "cuda" and torch.cuda.is_available() and (where.index or 0) < torch.cuda.device_count():
        torch.cuda.synchronize(where)
        out["cuda_allocated_mb"] = round(torch.cuda.memory_allocated(where) / 2**20, 1)
        out["cuda_reserved_mb"] = round(torch.cuda.memory_reserved(where) / 2**20, 1)
    return out


def run(variant: str, input_size: int, device: str, precision: str, cycles: int, domain: int) -> dict:
    harness = Harness(domain)
    try:
        node = harness.start_node(managed=True, device=device, precision=precision, input_size=input_size,
                                  **{"depth.variant": variant, "depth.weights": "random"})
        result = {"variant": variant, "input_size": input_size, "device": device, "precision": precision,
                  "weights": "random", "unconfigured": _memory(device), "cycles": []}
        for _ in range(cycles):
            cycle = {}
            for name, trigger in (("configure", node.trigger_configure), ("activate", node.trigger_activate),
                                  ("deactivate", node.trigger_deactivate), ("cleanup", node.trigger_cleanup)):
                t = time.perf_counter()
                if trigger() != TransitionCallbackReturn.SUCCESS:
                    raise RuntimeError(f"{name} failed (see the log above)")
                cycle[f"{name}_ms"] = round((time.perf_counter() - t) * 1000.0, 1)
                if name == "configure":
                    cycle["configured"] = _memory(device)
            cycle["cleaned_up"] = _memory(device)
            result["cycles"].append(cycle)
            print(" ".join(f"{k} {v}" for k, v in cycle.items() if k.endswith("_ms")) +
                  f" | configured {cycle['configured']} | after cleanup {cycle['cleaned_up']}", flush=True)
        return result
    finally:
        harness.shutdown()


def parse_args(argv=None) -> argparse.Namespace:
    ap = ToolParser(description=__doc__.split("\n\n")[0])
    # (a value the node would refuse is a usage error here, by the node's own checks)
    add_depth_variant_argument(ap, "bench_lifecycle", "dpt_hybrid")
    ap.add_argument("--input-size", type=parameter_option("input_size", "--input-size"), default=384,
                    help="network size, a multiple of 32 (0 = the variant's own; default 384)")
    add_target_arguments(ap)
    ap.add_argument("--cycles", type=count("cycles"), default=2,
                    help="configure / activate / deactivate / cleanup cycles, at least 1 (default 2)")
    add_domain_argument(ap, 87)
    ap.add_argument("--json", default=None, type=output_file(), help="also write the results to this file")
    args = ap.parse_args(argv)
    why = target_refusals(args.device, args.precision, False, options=True)
    if why:
        ap.error("; ".join(why))
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    print("RANDOM WEIGHTS: transition times and memory only, no meaningful outputs", flush=True)
    result = run(args.variant, args.input_size, args.device, args.precision, args.cycles, args.domain)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        write_whole(args.json, text + "\n")
    return 0


if __name__ == "__main__":
    from dpt_ros.tools import run_benchmark

    run_benchmark("bench_lifecycle", main)
