"""Benchmark: dpt_ros.model vs Hugging Face transformers DPT, same weights, same input, same run.

Prints, per variant / precision / input size: our time, HF's time, their ratio, peak memory (on the CPU the
process's peak RSS, both models included) and parameter count. Timings are medians; on CUDA they use events after warm-up. Compare ratios, not
absolute times, across machines (see docs/benchmarks.md). Random weights (no downloads); the
numbers are speed only.

Examples::

    python -m dpt_ros.tools.bench_model                       # CPU, fp32, dpt_hybrid + dpt_large, 384
    python -m dpt_ros.tools.bench_model --quick               # CPU smoke run: 64x64 (hybrid: 384), 2 iters
    python -m dpt_ros.tools.bench_model --device cuda --precision fp16 bf16 fp32 --cuda-graphs \\
        --sizes 384x384 384x512 --json bench.json
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import resource
import statistics
import sys
import time
from typing import Callable, Optional

import torch

from dpt_ros.tools import settings_restored, write_whole
from dpt_ros.tools.options import count, output_file, ToolParser


def _device(value: str) -> str:
    """--device (argparse's type): one the model would refuse (a misspelling, CUDA where there is none, a cuda:N this
    machine lacks) by the model's own check, before anything loads (it was a traceback from torch, 'Found no NVIDIA
    driver' for --device cuda on a machine without one). auto is resolved here (CUDA where there is one)."""
    from dpt_ros.model.engine import check_target  # noqa: PLC0415

    try:
        device, _ = check_target(value, "fp32", use_cpu="--device cpu")
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return str(device)


def _parse_size(s: str) -> tuple[int, int]:
    if s.strip().isdigit():   # (the node's input_size N is no network shape: it keeps the frame's aspect)
        n = int(s)
        raise argparse.ArgumentTypeError(
            f"size is the network's HxW (height x width), got {s!r}: give {n}x{n} for a square input. The node's "
            f"and predict's input_size {n} is not one shape: the frame's aspect is kept (resize_method minimal: "
            f"input_size 384 runs 640x480 frames at 384x512)")
    try:
        h, w = (int(t) for t in s.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 384x512, got {s!r}") from None
    if h % 32 or w % 32 or h <= 0 or w <= 0:
        raise argparse.ArgumentTypeError(f"size sides must be positive multiples of 32, got {s!r}")
    return h, w


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_fn(fn: Callable[[], object], device: torch.device, warmup: int, iters: int) -> list[float]:
    """Per-call milliseconds (CUDA events on GPU, perf_counter on CPU)."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(iters):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    return times


def _graph_callable(fn: Callable[[torch.Tensor], object], x: torch.Tensor) -> Callable[[], object]:
    """Capture ``fn(x)`` in a CUDA graph (for HF's model; ours uses Engine's own graphs)."""
    static_x = x.clone()
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(2):
            fn(static_x)
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        fn(static_x)
    return g.replay


def _peak_reset(device: torch.device) -> int:
    """Start a peak measurement; the device memory allocated now (both models' weights, graph pools, ...)."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        return torch.cuda.memory_allocated(device)
    return 0


def _peak_mb(device: torch.device, resident: int, module: torch.nn.Module) -> Optional[float]:
    """One model's peak on the device: its own weights and buffers plus the most its forward passes allocated above
    what was resident when the measurement started (``resident``, from :func:`_peak_reset`), so that the other
    model, on the device at the same time, is not counted. None on the CPU: the process's resident high-water mark
    cannot tell the two models apart (see :func:`_process_peak_rss_mb`)."""
    if device.type != "cuda":
        return None
    own = sum(t.numel() * t.element_size() for t in (*module.parameters(), *module.buffers()) if t.is_cuda)
    return (own + torch.cuda.max_memory_allocated(device) - resident) / 2**20


def _process_peak_rss_mb() -> float:
    """The process's high-water mark of resident memory (Linux: KiB), both models and everything else included."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_variant(name: str, sizes: list[tuple[int, int]], device: torch.device, precisions: list[str],
                  graphs: bool, warmup: int, iters: int, with_hf: bool, hf_graphs: bool, batch: int,
                  log: Callable[[str], None], channels_last: Optional[bool] = None) -> list[dict]:
    from dpt_ros.model import DPT, Engine, get_variant, parse_precision
    from dpt_ros.model.reference import build_hf_model, random_state_dict

    v = get_variant(name)
    sd = random_state_dict(v, seed=0)
    rows = []
    for prec in precisions:
        dtype = parse_precision(prec)
        modes = [False] + ([True] if graphs else [])   # (fp16 or graphs on the CPU: main refused them; Engine would)
        hf = None
        if with_hf:
            try:
                # (a segmentation model without HF's auxiliary head: DPTForSemanticSegmentation computes it in every
                # forward pass, while the official inference, and ours, never run it; it was timed as HF's)
                hf = build_hf_model(v, {k: t.clone() for k, t in sd.items()},
                                    auxiliary_head=False).to(device=device, dtype=dtype)
            except Exception as exc:  # HF missing or unable to build: report ours only
                log(f"HF model unavailable for {name}: {exc}")
        hf_params_m = None if hf is None else round(sum(p.numel() for p in hf.parameters()) / 1e6, 2)
        hf_model = None if hf is None else _reference(hf, hf_params_m)
        if hf is not None and prec == precisions[0]:
            log(f"# {v.name}: HF reference {hf_model}")
        for use_graph in modes:
            with torch.device("meta"):
                model = DPT(v)
            model.load_state_dict({k: t.clone() for k, t in sd.items()}, strict=True, assign=True)
            engine = Engine(model, device=device, precision=prec, cuda_graphs=use_graph, random_weights=True,
                            max_graphs=max(4, len(sizes)), channels_last=channels_last)
            params = engine.num_parameters
            for h, w in sizes:
                x = torch.randn(batch, 3, h, w, generator=torch.Generator().manual_seed(0)).to(device)
                row = {
                    "variant": v.name, "device": str(device), "precision": prec, "height": h, "width": w,
                    "batch": batch, "cuda_graph": use_graph, "params_m": round(params / 1e6, 2),
                    "tokens": (h // 16) * (w // 16), "hf_ms": None, "ratio": None, "hf_peak_mb": None,
                    "hf_note": None, "hf_mode": None, "channels_last": engine.channels_last,
                    "hf_model": hf_model, "hf_params_m": hf_params_m,
                }
                hf_ok = hf is not None and h == w and (v.backbone != "hybrid" or h == v.pos_grid * v.patch_size)
                if hf is not None and not hf_ok:
                    row["hf_note"] = "HF DPT cannot run this size (non-square, or hybrid != 384)"
                hf_fn = None
                if hf_ok:
                    xh = x.to(dtype)
                    try:
                        with torch.inference_mode():
                            # (before the capture: a graph's memory pool is the model's, as ours captures in its run)
                            resident = _peak_reset(device)
                            if use_graph and hf_graphs:
                                hf_fn = _graph_callable(lambda t: hf(pixel_values=t), xh)
                            else:
                                def hf_fn(inp=xh):
                                    with torch.inference_mode():
                                        return hf(pixel_values=inp)
                            time_fn(hf_fn, device, warmup, 1)
                        peak = _peak_mb(device, resident, hf)
                        row["hf_peak_mb"] = None if peak is None else round(peak, 1)
                        row["hf_mode"] = "cuda_graph" if (use_graph and hf_graphs) else "eager"
                    except Exception as exc:
                        row["hf_note"] = f"HF failed: {type(exc).__name__}: {str(exc)[:120]}"
                        hf_fn = None
                resident = _peak_reset(device)
                time_fn(lambda: engine.run(x), device, warmup, 1)
                peak = _peak_mb(device, resident, engine.model)
                row["ours_peak_mb"] = None if peak is None else round(peak, 1)
                if device.type != "cuda":
                    row["process_peak_rss_mb"] = round(_process_peak_rss_mb(), 1)
                # interleave ours / HF iterations so that machine noise hits both alike
                t_ours, t_hf, c_ours, c_hf = [], [], [], []
                for _ in range(iters):
                    c0 = time.process_time()
                    t_ours += time_fn(lambda: engine.run(x), device, 0, 1)
                    c_ours.append((time.process_time() - c0) * 1e3)
                    if hf_fn is not None:
                        c0 = time.process_time()
                        t_hf += time_fn(hf_fn, device, 0, 1)
                        c_hf.append((time.process_time() - c0) * 1e3)
                if device.type == "cpu":  # CPU time of all threads: less sensitive to other processes
                    row["ours_cpu_ms"] = statistics.median(c_ours)
                    if c_hf:
                        row["hf_cpu_ms"] = statistics.median(c_hf)
                        row["cpu_time_ratio"] = row["ours_cpu_ms"] / row["hf_cpu_ms"]
                row["ours_ms"] = statistics.median(t_ours)
                row["ours_min_ms"] = min(t_ours)
                if t_hf:
                    row["hf_ms"] = statistics.median(t_hf)
                    row["hf_min_ms"] = min(t_hf)
                    row["ratio"] = row["ours_ms"] / row["hf_ms"]
                rows.append(row)
                log(_format_row(row))
            engine = model = None   # free before the next mode / precision
        hf = None
        gc.collect()
    # per-token scaling relative to the first size (e.g. 384x512 vs 384x384)
    base = {}
    for r in rows:
        key = (r["precision"], r["cuda_graph"])
        if key not in base:
            base[key] = r
        b = base[key]
        r["per_token_vs_first"] = (r["ours_ms"] / r["tokens"]) / (b["ours_ms"] / b["tokens"])
    return rows


def _reference(hf: torch.nn.Module, params_m: float) -> str:
    """What the HF rows time: the model's class, its parameter count and, for segmentation, that its auxiliary head
    is off (it is no part of DPT's inference: ours holds the checkpoint's ``auxlayer`` and never runs it)."""
    what = f"{type(hf).__name__}, {params_m:.2f} M parameters"
    if hasattr(hf, "auxiliary_head"):
        what += (", auxiliary head off (training-only; ours holds auxlayer and never runs it)"
                 if hf.auxiliary_head is None else ", auxiliary head computed in every forward pass")
    return what


def _mb(value: Optional[float]) -> str:
    return "       - MB" if value is None else f"{value:8.1f} MB"


def _format_row(r: dict) -> str:
    """One result as the table line printed. On the CPU, where no per-model peak is measured, the line gives the
    process's peak RSS (``process_peak_rss_mb``, both models and everything else) and says so."""
    hf = f"{r['hf_ms']:9.2f}" if r["hf_ms"] is not None else "        -"
    if r.get("process_peak_rss_mb") is not None and r["ours_peak_mb"] is None:
        peak = f"process peak RSS {r['process_peak_rss_mb']:.0f} MB"
    else:
        peak = f"peak {_mb(r['ours_peak_mb'])}"
    ratio = f"{r['ratio']:6.3f}" if r["ratio"] is not None else "     -"
    if r.get("cpu_time_ratio") is not None:
        ratio += f" (min {r['ours_min_ms'] / r['hf_min_ms']:.3f}, cpu-time {r['cpu_time_ratio']:.3f})"
    return (f"{r['variant']:<18} {r['precision']:<5} {r['height']:>4}x{r['width']:<5} "
            f"{'graph' if r['cuda_graph'] else 'eager':<6} ours {r['ours_ms']:9.2f} ms  HF {hf} ms  "
            f"ratio {ratio}  {peak}  params {r['params_m']:.1f} M"
            + (f"  ({r['hf_note']})" if r.get("hf_note") else ""))


def main(argv: Optional[list[str]] = None) -> int:
    """The benchmark (see the module). ``--threads N`` sets PyTorch's thread count, and every run TF32 off and
    cuDNN's autotuning as ``--cudnn-benchmark`` says, for the run only: called in-process (from another tool or a
    test), they are set back when main returns or raises (:func:`settings_restored`)."""
    with settings_restored(threads=True, cuda_math=True):
        return _main(argv)


def _main(argv: Optional[list[str]]) -> int:
    ap = ToolParser(description=__doc__.split("\n\n")[0],
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    from dpt_ros.model import VARIANTS
    from dpt_ros import PRECISIONS   # the node's precision names (not the model's aliases, half, float32, ...)

    # (a variant, device or precision the model would refuse is a usage error here, before anything loads)
    ap.add_argument("--variants", nargs="+", default=["dpt_hybrid", "dpt_large"], choices=list(VARIANTS),
                    metavar="VARIANT", help="variants to time (default dpt_hybrid dpt_large): %(choices)s")
    ap.add_argument("--device", default="cpu", type=_device, help="cpu (the default), cuda[:N], or auto (CUDA where there is one)")
    ap.add_argument("--precision", nargs="+", default=None, choices=PRECISIONS,
                    help="fp32 fp16 bf16 (default: fp32 on CPU, fp16 bf16 fp32 on CUDA)")
    ap.add_argument("--sizes", nargs="+", type=_parse_size, default=None,
                    help="HxW, multiples of 32 (default 384x384; CUDA: 384x384 384x512)")
    ap.add_argument("--batch", type=count("images per batch"), default=1, help="images per batch, at least 1 "
                                                                                "(default 1)")
    ap.add_argument("--iters", type=count("timed iterations"), default=None,
                    help="timed iterations, at least 1 (default CPU 3, CUDA 50)")
    ap.add_argument("--warmup", type=count("warm-up iterations", least=0), default=None,
                    help="warm-up iterations, 0 or more (default CPU 1, CUDA 10)")
    ap.add_argument("--cuda-graphs", action="store_true", help="also time CUDA-graph replay (CUDA only)")
    ap.add_argument("--no-hf-graphs", action="store_true", help="time HF eager even in the CUDA-graph rows")
    ap.add_argument("--channels-last", choices=("auto", "on", "off"), default="auto",
                    help="decoder in channels_last (default auto: on for CUDA half precision)")
    ap.add_argument("--cudnn-benchmark", action="store_true", help="torch.backends.cudnn.benchmark = True")
    ap.add_argument("--no-hf", action="store_true", help="skip the Hugging Face reference")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: 64x64 (hybrid 384x384), 1 warm-up, 2 iterations")
    ap.add_argument("--threads", type=count("threads", zero="leave torch's own"), default=None,
                    help="torch CPU threads (0 or none: leave torch's own)")
    ap.add_argument("--json", metavar="FILE", type=output_file(stdout=True),
                    help="also write the results as JSON ('-' = stdout)")
    args = ap.parse_args(argv)
    # fp16 or CUDA graphs where the model runs on the CPU (--device cpu, or auto without CUDA): a usage error, by the
    # model's own check, as in the other tools (they were a "skip ... fp16" line, or timed eager only without a word)
    from dpt_ros.model.engine import check_target  # noqa: PLC0415

    for precision in args.precision or ():
        try:
            check_target(args.device, precision)
        except ValueError as e:
            ap.error(f"argument --precision: {e}")
    try:
        check_target(args.device, "fp32", args.cuda_graphs,
                     graphs=("--cuda-graphs", "leave --cuda-graphs out where the model runs on the CPU"))
    except ValueError as e:
        ap.error(str(e))

    device = torch.device(args.device)
    if device.type == "cuda" and device.index is None:   # the index the tensors carry (peak memory compares devices)
        device = torch.device("cuda", torch.cuda.current_device())
    if args.threads:
        torch.set_num_threads(args.threads)
    cuda = device.type == "cuda"
    precisions = args.precision or (["fp16", "bf16", "fp32"] if cuda else ["fp32"])
    iters = args.iters or (2 if args.quick else (50 if cuda else 3))
    warmup = args.warmup if args.warmup is not None else (1 if args.quick else (10 if cuda else 1))
    log = (lambda s: print(s, file=sys.stderr, flush=True)) if args.json == "-" else (lambda s: print(s, flush=True))

    env = {"torch": torch.__version__, "python": platform.python_version(), "device": str(device),
           "threads": torch.get_num_threads(), "machine": platform.machine()}
    if cuda:
        env["gpu"] = torch.cuda.get_device_name(device)
    # fp32 means fp32 for both implementations. Set on every device (on the CPU they change nothing), so that a run
    # on any machine goes through what main sets back: these are settings of the whole process, which a CUDA run
    # called in-process left changed for its caller (gpu_check, a test)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = bool(args.cudnn_benchmark)
    env["tf32"] = torch.backends.cuda.matmul.allow_tf32 or torch.backends.cudnn.allow_tf32
    env["cudnn_benchmark"] = torch.backends.cudnn.benchmark
    try:
        import transformers

        env["transformers"] = transformers.__version__
    except ImportError:
        env["transformers"] = None
    log(f"# {env}")
    results = []
    for name in args.variants:
        from dpt_ros.model import get_variant

        v = get_variant(name)
        if args.sizes:
            sizes = args.sizes
        elif args.quick:
            sizes = [(384, 384)] if v.backbone == "hybrid" else [(64, 64)]
        else:
            sizes = [(384, 384), (384, 512)] if cuda else [(384, 384)]
        results += bench_variant(name, sizes, device, precisions, args.cuda_graphs, warmup, iters,
                                 with_hf=not args.no_hf, hf_graphs=not args.no_hf_graphs, batch=args.batch, log=log,
                                 channels_last={"auto": None, "on": True, "off": False}[args.channels_last])
    for r in results:
        if r.get("per_token_vs_first") not in (None, 1.0):
            log(f"# {r['variant']} {r['precision']} {'graph' if r['cuda_graph'] else 'eager'} "
                f"{r['height']}x{r['width']}: time per token = {r['per_token_vs_first']:.3f} x the first size's")
    if args.json:
        payload = json.dumps({"env": env, "results": results}, indent=2)
        if args.json == "-":
            print(payload)
        else:
            write_whole(args.json, payload + "\n")
            log(f"# wrote {args.json}")
    return 0


if __name__ == "__main__":
    from dpt_ros.tools import run_benchmark

    run_benchmark("bench_model", main)
