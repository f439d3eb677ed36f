"""Inference engine: a DPT on a device at a precision, with optional CUDA-graph replay per input shape."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import threading
from collections import OrderedDict
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from dpt_ros import cuda_missing, resolved_device

from .dpt import DPT
from .variants import Metric, Variant, get_variant

__all__ = ["Engine", "load_engine", "build_model", "metric_depth", "parse_precision", "PRECISIONS"]

PRECISIONS = {
    "fp32": torch.float32, "float32": torch.float32,
    "fp16": torch.float16, "float16": torch.float16, "half": torch.float16,
    "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
}

# One CUDA-graph capture at a time in this process (captures from two engines must not interleave).
_CAPTURE_LOCK = threading.Lock()


@contextlib.contextmanager
def outside_graph_capture():
    """Hold CUDA-graph captures in this process off (one underway is waited for, the next waits): for work that must
    not run during a capture on another thread, such as returning cached device memory to the driver (freeing
    synchronises the device, which would invalidate the capture)."""
    with _CAPTURE_LOCK:
        yield


def parse_precision(precision: "str | torch.dtype") -> torch.dtype:
    """'fp32' | 'fp16' | 'bf16' (or a torch dtype) -> torch dtype; ValueError otherwise."""
    if isinstance(precision, torch.dtype):
        if precision in (torch.float32, torch.float16, torch.bfloat16):
            return precision
    elif isinstance(precision, str) and precision.lower() in PRECISIONS:
        return PRECISIONS[precision.lower()]
    raise ValueError(f"precision must be one of fp32, fp16, bf16, got {precision!r}")


def check_target(device: "str | torch.device", precision: "str | torch.dtype", cuda_graphs: bool = False,
                 max_graphs: int = 4, *, use_cpu: str = "device='cpu'",
                 graphs: tuple[str, str] = ("cuda_graphs=True", "set cuda_graphs=False on the CPU"),
                 ) -> tuple[torch.device, torch.dtype]:
    """The device and dtype an engine runs on (``cuda`` becomes ``cuda:<current device>``).

    ``use_cpu``: how the caller's user asks for the CPU, named where CUDA is not available (a command line passes
    ``--device cpu``); ``graphs``: how the caller's user asks for CUDA graphs and how to leave them off, named where
    they are asked for on the CPU (a command line passes ``("--cuda-graphs", "leave --cuda-graphs out ...")``).

    :raises ValueError: a device that is not ``cpu`` / ``cuda[:N]``, CUDA where it is not available, a ``cuda:N``
        this machine does not have, an unknown precision, fp16 on the CPU, ``cuda_graphs`` on the CPU (the message
        says what to use instead), or a ``max_graphs`` below 1.
    """
    dtype = parse_precision(precision)
    if isinstance(device, str):
        device = resolved_device(device)   # (auto: CUDA where there is one, as for the node)
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {device!r}")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {str(device)!r} requested but CUDA is not available here ({cuda_missing()}); "
                             f"use {use_cpu}")
        if dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
        elif dev.index >= (n := torch.cuda.device_count()):
            # (said here, before a weights file is read: the move to the device would fail after reading it, with
            # "invalid device ordinal" under the weights' name)
            raise ValueError(f"device {str(dev)!r}: only {n} CUDA device(s) present here "
                             f"({'cuda:0' if n == 1 else f'cuda:0..cuda:{n - 1}'}); use one of them or 'cuda'")
    elif dtype == torch.float16:
        raise ValueError("fp16 is not supported on the CPU (slow or missing kernels); use fp32 or bf16")
    elif cuda_graphs:
        raise ValueError(f"{graphs[0]} needs a CUDA device; {graphs[1]}")
    if max_graphs < 1:
        raise ValueError(f"max_graphs must be >= 1, got {max_graphs}")
    return dev, dtype


def metric_depth(inverse_depth: torch.Tensor, metric: Metric) -> torch.Tensor:
    """Metres from the metric variants' raw output: ``1 / max(scale * inv + shift, 1e-8)`` (if invert)."""
    depth = inverse_depth * metric.scale + metric.shift
    if metric.invert:
        depth = 1.0 / depth.clamp_min(1e-8)
    return depth


#: seed of ``weights="random"``: the same random model every time
RANDOM_INIT_SEED = 1
# the random init draws from the process-wide CPU generator: two builds at once (a model swap in the
# background while another task loads) would interleave their draws and get other weights
_RANDOM_INIT_LOCK = threading.Lock()


def build_model(variant: "str | Variant", weights: "str | os.PathLike", verify_hash: bool = True) -> DPT:
    """A DPT in eval mode on the CPU, fp32: random init (``weights="random"``) or loaded from a file.

    A loaded model's tensors are memory-mapped from the file (``model.weights_mapped``); wrap it in an
    :class:`Engine`, which copies them, before serving with it.
    """
    v = get_variant(variant)
    if isinstance(weights, str) and weights == "random":
        # Seeded (without touching the caller's RNG state) so that random-weight runs -- demo, benchmarks,
        # tests, a model swap -- are reproducible. The outputs are meaningless either way.
        with _RANDOM_INIT_LOCK, torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(RANDOM_INIT_SEED)  # not torch.manual_seed: it reseeds CUDA too
            return DPT(v).eval()
    from .checkpoint import load_checkpoint

    # The tensors stay memory-mapped from the file here; Engine copies whatever is still mapped
    # after moving the model to its device and precision (see Engine._prepare).
    return load_checkpoint(weights, v, verify_hash=verify_hash).eval()


class _FoldedStdConv(nn.Conv2d):
    """A weight-standardised conv whose weight was standardised once (inference only)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if getattr(self, "same_pad", False):
            from timm.layers.padding import pad_same

            x = pad_same(x, self.kernel_size, self.stride, self.dilation)
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)


def fold_weight_standardization(model: nn.Module) -> int:
    """Standardise every timm StdConv2d/StdConv2dSame weight once and skip it per forward.

    Numerically the same in fp32; it removes a batch-norm over the weights from every forward and is
    done in fp32 before any cast to half precision. Returns the number of convs folded.
    """
    from timm.layers import StdConv2d, StdConv2dSame

    n = 0
    for m in model.modules():
        if isinstance(m, (StdConv2d, StdConv2dSame)) and not isinstance(m, _FoldedStdConv):
            with torch.no_grad():
                w = m.weight.float()
                w = F.batch_norm(w.reshape(1, m.out_channels, -1), None, None, training=True,
                                 momentum=0.0, eps=m.eps).reshape_as(w)
                m.weight = nn.Parameter(w.to(m.weight.dtype), requires_grad=False)
            m.__class__ = _FoldedStdConv
            n += 1
    return n


class _Graph:
    __slots__ = ("graph", "static_in", "static_out", "keep")

    def __init__(self, graph, static_in, static_out, keep) -> None:
        self.graph = graph
        self.static_in = static_in
        self.static_out = static_out
        # Tensors made outside the capture that the graph reads (cached position embeddings):
        # holding them keeps their memory from being reused while the graph may be replayed.
        self.keep = keep


class Engine:
    """Runs one DPT on one device at one precision.

    :ivar variant: the :class:`Variant`.
    :ivar device: ``torch.device`` of the model and of the outputs.
    :ivar dtype: compute dtype (float32, float16 or bfloat16); outputs are always float32.
    :ivar random_weights: true when the weights are a random initialisation, not a trained model.
    """

    def __init__(
        self,
        model: DPT,
        device: "str | torch.device" = "cpu",
        precision: "str | torch.dtype" = "fp32",
        cuda_graphs: bool = False,
        random_weights: bool = False,
        max_graphs: int = 4,
        channels_last: Optional[bool] = None,
    ) -> None:
        self.device, self.dtype = check_target(device, precision, cuda_graphs, max_graphs)
        self.variant: Variant = model.variant
        self.random_weights = bool(random_weights)
        self.cuda_graphs = bool(cuda_graphs)
        self.max_graphs = int(max_graphs)
        if channels_last is None:
            channels_last = self.device.type == "cuda" and self.dtype != torch.float32
        self.channels_last = bool(channels_last)
        self._lock = threading.RLock()
        self._graphs: "OrderedDict[tuple, _Graph]" = OrderedDict()
        self._pool = None
        self.model = self._prepare(model)

    # -- model preparation ---------------------------------------------------------------------
    def _prepare(self, model: DPT) -> DPT:
        model.eval()
        tensors = list(model.parameters()) + list(model.buffers())
        file_storages = {t.untyped_storage().data_ptr() for t in tensors} if getattr(
            model, "weights_mapped", False) else set()
        for p in model.parameters():
            p.requires_grad_(False)
        fold_weight_standardization(model)
        model = model.to(device=self.device, dtype=self.dtype)
        if file_storages:
            # A running model must own its weights: tensors still memory-mapped from the checkpoint
            # (CPU fp32 keeps them as they are) would change, or kill the process with SIGBUS, when the
            # file is replaced or truncated in place (a re-download over it). Copy only those; a move
            # to CUDA or to another dtype has already copied the rest.
            with torch.no_grad():
                for t in list(model.parameters()) + list(model.buffers()):
                    if t.device.type == "cpu" and t.untyped_storage().data_ptr() in file_storages:
                        t.data = t.data.clone()
            model.weights_mapped = False
        if self.channels_last:
            # Only the convolution-heavy decoder (reassemble convs, fusion, heads): cuDNN's half-precision
            # convs run NHWC natively. The ResNet stem/stages stay NCHW (GroupNorm), tokens are 3-D anyway.
            for name, child in model.named_children():
                if name in ("scratch", "auxlayer"):
                    child.to(memory_format=torch.channels_last)
            for k in range(1, 5):
                getattr(model.pretrained, f"act_postprocess{k}").to(memory_format=torch.channels_last)
        return model

    def set_model(self, model: DPT, random_weights: bool = False) -> None:
        """Swap in another model of the same variant; cached CUDA graphs are dropped."""
        if model.variant != self.variant:
            if model.variant.name != self.variant.name:
                what = f"variant {model.variant.name!r} differs from the engine's {self.variant.name!r}"
            else:   # a custom configuration under the same name: say which fields differ
                diffs = [f"{f.name} {getattr(model.variant, f.name)!r} vs {getattr(self.variant, f.name)!r}"
                         for f in dataclasses.fields(self.variant)
                         if getattr(model.variant, f.name) != getattr(self.variant, f.name)]
                what = (f"the model's configuration of {self.variant.name!r} differs from the engine's "
                        f"({', '.join(diffs)})")
            raise ValueError(f"set_model: {what}; build a new Engine instead")
        prepared = self._prepare(model)
        with self._lock:
            self.clear_graphs()
            self.model = prepared
            self.random_weights = bool(random_weights)

    def clear_graphs(self) -> None:
        """Forget every captured CUDA graph (they pin the old model's tensors)."""
        with self._lock:
            self._graphs.clear()
            self._pool = None

    def warmup(self, height: int, width: int, batch: int = 1) -> None:
        """Run once at (batch, 3, height, width): lazy initialisation (and graph capture) before real frames."""
        self.run(torch.zeros(batch, 3, height, width, device=self.device))

    def close(self) -> None:
        """Drop captured graphs and the model's device memory (the engine is unusable afterwards)."""
        with self._lock:
            self.clear_graphs()
            self.model = None  # type: ignore[assignment]
            if self.device.type == "cuda":
                torch.cuda.empty_cache()

    @property
    def num_graphs(self) -> int:
        return len(self._graphs)

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    # -- inference ------------------------------------------------------------------------------
    def _check(self, batch: torch.Tensor) -> None:
        if self.model is None:
            raise RuntimeError("Engine.run after close(); build a new engine with load_engine()")
        if not isinstance(batch, torch.Tensor):
            raise TypeError(f"Engine.run expects a torch.Tensor batch, got {type(batch).__name__}")
        if not batch.is_floating_point():
            raise ValueError(f"Engine.run expects a float batch (normalised RGB), got dtype {batch.dtype}")
        self.model.check_input(batch)

    def _forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.model(x).float()
        if self.variant.task == "segmentation":
            return {"logits": out}
        res = {"inverse_depth": out}
        if self.variant.metric is not None:
            res["depth"] = metric_depth(out, self.variant.metric)
        return res

    def _to_input(self, batch: torch.Tensor) -> torch.Tensor:
        return batch.to(device=self.device, dtype=self.dtype, non_blocking=True)

    def run(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        """Run a normalised (N, 3, H, W) float batch (H, W multiples of 32).

        :returns: float32 tensors on ``self.device`` at network resolution: ``inverse_depth`` (N, H, W)
            [+ ``depth`` in metres for metric variants], or ``logits`` (N, C, H, W).
        :raises ValueError: wrong rank, channel count, dtype or a size that is not a multiple of 32.
        """
        self._check(batch)
        with self._lock, torch.inference_mode():
            if self.cuda_graphs:
                return self._run_graph(self._to_input(batch))
            return self._forward(self._to_input(batch))

    __call__ = run

    def _run_graph(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        key = (tuple(x.shape), x.dtype)
        g = self._graphs.get(key)
        if g is None:
            g = self._capture(x)
            self._graphs[key] = g
            while len(self._graphs) > self.max_graphs:
                self._graphs.popitem(last=False)
        else:
            self._graphs.move_to_end(key)
        g.static_in.copy_(x)
        g.graph.replay()
        return {k: v.clone() for k, v in g.static_out.items()}

    def _capture(self, x: torch.Tensor) -> _Graph:
        static_in = x.clone()
        with _CAPTURE_LOCK, torch.cuda.device(self.device):
            stream = torch.cuda.Stream(device=self.device)
            stream.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(stream):
                for _ in range(2):  # warm-up: cuDNN/cuBLAS choices, position-embedding cache
                    self._forward(static_in)
            torch.cuda.current_stream(self.device).wait_stream(stream)
            if self._pool is None:
                self._pool = torch.cuda.graph_pool_handle()
            graph = torch.cuda.CUDAGraph()
            # captured on this engine's stream: torch.cuda.graph's own capture stream is one per process, made on
            # the device current at the first capture, so an engine on cuda:1 after one on cuda:0 (a device change,
            # two nodes in one process) would capture on a cuda:0 stream while its kernels ran on cuda:1: an empty
            # graph, every replay returning the capture pass's outputs
            with torch.cuda.graph(graph, pool=self._pool, stream=stream, capture_error_mode="thread_local"):
                static_out = self._forward(static_in)
        keep = list(self.model.pretrained._pos_cache.values())
        return _Graph(graph, static_in, static_out, keep)

    def __repr__(self) -> str:
        return (f"Engine({self.variant.name}, device={self.device}, dtype={self.dtype}, "
                f"cuda_graphs={self.cuda_graphs}, random_weights={self.random_weights})")


def load_engine(
    variant: "str | Variant",
    weights: "str | os.PathLike",
    device: "str | torch.device" = "cpu",
    precision: "str | torch.dtype" = "fp32",
    cuda_graphs: bool = False,
    *,
    verify_hash: bool = True,
    max_graphs: int = 4,
    channels_last: Optional[bool] = None,
) -> Engine:
    """Build an :class:`Engine`.

    :param variant: registry name (see ``VARIANTS``) or a :class:`Variant`.
    :param weights: ``"random"`` (random init; ``engine.random_weights`` is True, the caller should warn)
        or a checkpoint path: official ``.pt``/``.pth`` (also MiDaS v3), Hugging Face ``.safetensors``/``.bin``.
    :param device: ``"cpu"`` or ``"cuda[:N]"``.
    :param precision: ``"fp32"``, ``"fp16"`` (CUDA only) or ``"bf16"``.
    :param cuda_graphs: capture one CUDA graph per input shape and replay it (CUDA only).
    :param verify_hash: check the SHA-256 prefix carried by release file names.
    :raises FileNotFoundError: the weights file does not exist (the message says where to get it).
    :raises CheckpointError: the file is corrupt, truncated, unsafe or of another variant.
    :raises ValueError: unknown variant, precision or device, cuda_graphs on the CPU, or max_graphs below 1 (all
        said before the weights file is read).
    """
    v = get_variant(variant)
    # Validate the cheap arguments before reading a large file.
    check_target(device, precision, cuda_graphs, max_graphs)
    model = build_model(v, weights, verify_hash=verify_hash)
    random_weights = isinstance(weights, str) and weights == "random"
    return Engine(model, device=device, precision=precision, cuda_graphs=cuda_graphs,
                  random_weights=random_weights, max_graphs=max_graphs, channels_last=channels_last)
