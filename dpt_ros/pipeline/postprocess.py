"""Post-processing of model outputs: upsampling, metric depth, REP 117 ranges, labels, overlays."""

from __future__ import annotations

import functools
import math
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from dpt_ros.pipeline._backend import array_module, cupy_available, host_scratch, where_it_lives
from dpt_ros.pipeline.ade20k import ADE20K_PALETTE


def _kernels_for(t: torch.Tensor) -> bool:
    """Whether a CUDA tensor's post-processing runs as the pipeline's own CUDA kernels (CuPy compiles them on its
    device) rather than as PyTorch operations: one launch each instead of up to 11, outside autograd."""
    return t.device.type == "cuda" and not t.requires_grad and cupy_available(t.device)


def upsample(pred: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bicubic (align_corners=False) resize of (N, h, w) or (N, C, h, w) to ``size`` = (H, W).

    This is the official DPT post-processing for depth and logits; it runs where the tensor lives
    (GPU or CPU). No clipping: bicubic overshoot is kept, as upstream.
    """
    if not isinstance(pred, torch.Tensor):
        raise TypeError(f"upsample expects a torch.Tensor; got {type(pred).__name__}")
    if pred.ndim not in (3, 4):
        raise ValueError(f"upsample expects (N, h, w) or (N, C, h, w); got shape {tuple(pred.shape)}")
    h, w = int(size[0]), int(size[1])
    if h <= 0 or w <= 0:
        raise ValueError(f"target size must be positive; got {size}")
    if tuple(pred.shape[-2:]) == (h, w):
        return pred
    if 0 in pred.shape[-2:]:   # (OpenCV would assert; the CUDA kernel's border clamp needs a pixel to clamp to)
        raise ValueError(f"upsample: nothing to upsample in a tensor of shape {tuple(pred.shape)}")
    if pred.shape[0] == 0:   # an empty batch: an empty result on every path
        return torch.empty((*pred.shape[:-2], h, w), dtype=torch.float32, device=pred.device)
    if pred.ndim == 3 and pred.device.type == "cpu":
        # OpenCV INTER_CUBIC is the same kernel (a = -0.75, half-pixel, replicated border) and, unlike
        # torch's CPU kernel, does not degrade when the few cores are shared with other work.
        src = pred.detach().float().numpy()
        if len(src) == 1:  # no stacking copy for the usual single frame
            return torch.from_numpy(cv2.resize(src[0], (w, h), interpolation=cv2.INTER_CUBIC)[None])
        return torch.from_numpy(np.stack([cv2.resize(p, (w, h), interpolation=cv2.INTER_CUBIC) for p in src]))
    if pred.ndim == 3 and _kernels_for(pred):   # one kernel, OpenCV's coordinates (as the CPU path above)
        from dpt_ros.pipeline import _cuda  # noqa: PLC0415

        return _cuda.upsample_planes(pred, (h, w))
    x = pred.unsqueeze(1) if pred.ndim == 3 else pred
    if tuple(x.shape[-2:]) != (h, w):
        x = F.interpolate(x.float(), size=(h, w), mode="bicubic", align_corners=False)
    return x[:, 0] if pred.ndim == 3 else x


def _host_array(t: torch.Tensor) -> np.ndarray:
    """The NumPy view of a CPU tensor's values (float32 or float64; other dtypes as a float32 copy).

    Element-wise work on a CPU tensor goes through NumPy: torch splits each operation over its intra-op threads,
    and on a machine whose cores are busy with other work every one of those small operations waits for a thread
    to be scheduled (post-processing at 640x480 took 1 ms typically but 70 ms at the 90th percentile on 2 shared
    cores, against 0.7 and 1.1 ms in NumPy, which runs them on the calling thread)."""
    t = t.detach()
    return (t if t.dtype in (torch.float32, torch.float64) else t.float()).numpy()


def metric_from_inverse(inv: Any, scale: float, shift: float, eps: float = 1e-8) -> Any:
    """Metres from network inverse depth: ``1 / max(scale * inv + shift, eps)`` (official formula
    of the KITTI/NYU models, also used for a user calibration of relative models)."""
    if not (math.isfinite(scale) and math.isfinite(shift)) or scale <= 0:
        raise ValueError(f"metric conversion needs a finite scale > 0 and a finite shift; got {scale}, {shift}")
    if isinstance(inv, torch.Tensor) and inv.device.type == "cpu":   # (a new array: ``inv`` is left alone)
        return torch.from_numpy(metric_from_inverse(_host_array(inv), scale, shift, eps))
    if isinstance(inv, torch.Tensor) and _kernels_for(inv):   # one kernel into a new tensor
        from dpt_ros.pipeline import _cuda  # noqa: PLC0415

        return _cuda.depth_values(inv, torch.empty(inv.shape, dtype=torch.float32, device=inv.device),
                                  (scale, shift, eps), None)
    if isinstance(inv, torch.Tensor):  # one new tensor, then in place (never modifies ``inv``)
        return inv.float().mul(scale).add_(shift).clamp_min_(eps).reciprocal_()
    xp = array_module(inv)
    with where_it_lives(inv):
        d = xp.asarray(xp.multiply(inv, np.float32(scale), dtype=xp.float32))   # (an array also for 0-d input)
        d += np.float32(shift)
        # on the CPU the clamp is skipped where nothing needs it: a minimum above eps (not NaN) leaves every value as
        # max(value, eps) would (the minimum reads the values once, the clamp reads and writes them; the four
        # operations done in blocks, as colorize's, were no faster)
        if xp is not np or not (d.size and d.min() > np.float32(eps)):
            xp.maximum(d, np.float32(eps), out=d)
        return xp.reciprocal(d, out=d)


def apply_depth_range(depth: Any, min_depth: float = 0.0, max_depth: float = math.inf,
                      inplace: bool = False) -> Any:
    """REP 117 encoding of a metric depth array (NumPy, CuPy or torch; float32 out).

    NaN or <= 0 -> NaN (no measurement), < ``min_depth`` -> -inf (too close),
    > ``max_depth`` -> +inf (out of range). ``max_depth = inf`` disables the upper limit.
    """
    if not (min_depth >= 0.0 and max_depth > min_depth):
        raise ValueError(f"need 0 <= min_depth < max_depth; got {min_depth}, {max_depth}")
    if isinstance(depth, torch.Tensor) and depth.device.type == "cpu":   # NumPy (see _host_array)
        # in place only on a float32 tensor torch lets us change (never an inference tensor, a model's output, nor
        # one autograd tracks)
        inplace = inplace and depth.dtype == torch.float32 and not depth.is_inference() and not depth.requires_grad
        return torch.from_numpy(apply_depth_range(_host_array(depth), min_depth, max_depth, inplace=inplace))
    if isinstance(depth, torch.Tensor) and _kernels_for(depth):   # one kernel, in place as the CPU path allows
        from dpt_ros.pipeline import _cuda  # noqa: PLC0415

        inplace = (inplace and depth.dtype == torch.float32 and depth.is_contiguous() and not depth.is_inference())
        out = depth if inplace else torch.empty(depth.shape, dtype=torch.float32, device=depth.device)
        return _cuda.depth_values(depth, out, None, (min_depth, max_depth))
    if isinstance(depth, torch.Tensor):  # masked_fill_: no host synchronisation on CUDA
        d = depth if inplace and depth.dtype == torch.float32 else depth.float().clone()
        d.masked_fill_(~(d > 0), math.nan)
        if min_depth > 0:
            d.masked_fill_(d < min_depth, -math.inf)
        if max_depth < math.inf:  # nothing is > inf
            d.masked_fill_(d > max_depth, math.inf)
        return d
    xp = array_module(depth)
    if xp is not np:  # CuPy: where() instead of boolean set-item (which synchronises)
        with where_it_lives(depth):
            d = depth.astype(xp.float32, copy=False)
            out = xp.where(d > np.float32(max_depth), np.float32(np.inf), d)
            if min_depth > 0:
                out = xp.where(d < np.float32(min_depth), np.float32(-np.inf), out)
            return xp.where(d > 0, out, np.float32(np.nan)).astype(xp.float32, copy=False)
    d = depth if inplace and depth.dtype == np.float32 else depth.astype(xp.float32, copy=True)
    if d.size == 0:
        return d
    # each rule only where the frame's extremes say it can apply (NaN if there is a NaN: then each rule runs): a rule's
    # mask and masked write are the costly passes (copyto(where=) moves one value at a time), and a metric frame
    # seldom has anything <= 0 or beyond the limits (depth.max 1000 m, a KITTI model's farthest 173 m). (Worked in
    # blocks of 65 536 values, as colorize is, it was no faster.)
    low, high = d.min(), d.max()
    mask = host_scratch("depth_range.mask", d.shape, bool)   # (one for every rule, in a reused buffer)
    with np.errstate(invalid="ignore"):   # copyto(where=): no index arrays, unlike boolean set-items
        if not low > 0:
            np.greater(d, 0, out=mask)
            np.logical_not(mask, out=mask)   # not (d > 0): NaN included
            np.copyto(d, np.float32(np.nan), where=mask)
        if min_depth > 0 and not low >= np.float32(min_depth):
            np.less(d, np.float32(min_depth), out=mask)
            np.copyto(d, np.float32(-np.inf), where=mask)
        if max_depth < math.inf and not high <= np.float32(max_depth):  # (nothing is > inf)
            np.greater(d, np.float32(max_depth), out=mask)
            np.copyto(d, np.float32(np.inf), where=mask)
    return d


def drop_depth_edges(depth: torch.Tensor, max_jump: float) -> torch.Tensor:
    """A copy of a (H, W) metric depth with NaN at depth edges: pixels whose depth differs from one of their
    4 neighbours by more than ``max_jump`` times the nearer of the two.

    A network's depth is smooth across an object's outline, so back-projected it leaves a veil of
    "flying" points between foreground and background; this removes it (for a point cloud). A
    neighbour without a depth (NaN) is no edge; one beyond the range (+-inf) is. Border pixels are
    compared with their neighbours inside the image only. Torch, on the tensor's device."""
    if not max_jump > 0:
        raise ValueError(f"max_jump must be > 0; got {max_jump}")
    z = depth.float()
    # each neighbour pair once (a jump marks both of its pixels)
    across = (z[:, 1:] - z[:, :-1]).abs() > max_jump * torch.minimum(z[:, 1:], z[:, :-1])
    down = (z[1:] - z[:-1]).abs() > max_jump * torch.minimum(z[1:], z[:-1])
    edge = torch.zeros(z.shape, dtype=torch.bool, device=z.device)
    edge[:, 1:] |= across
    edge[:, :-1] |= across
    edge[1:] |= down
    edge[:-1] |= down
    return z.masked_fill(edge, math.nan)


def drop_labels(depth: torch.Tensor, labels: torch.Tensor, label_values) -> torch.Tensor:
    """A copy of a (H, W) depth with NaN where ``labels`` (same size, integer) holds one of ``label_values``:
    classes left out of a point cloud, e.g. people and cars before mapping. Torch, on the tensors' device."""
    if tuple(labels.shape) != tuple(depth.shape):
        raise ValueError(f"labels {tuple(labels.shape)} and depth {tuple(depth.shape)} differ in size")
    values = sorted({int(v) for v in label_values})
    if not values:
        return depth
    # a table over every value of the labels' type (no look at the labels: on a GPU, no host synchronisation)
    full = {torch.uint8: 255, torch.uint16: 65535}.get(labels.dtype)
    top = max(values[-1], full if full is not None else int(labels.long().max()))
    if values[0] < 0:
        raise ValueError(f"label values are >= 0; got {values[0]}")
    table = torch.zeros(top + 1, dtype=torch.bool, device=labels.device)   # label value -> drop
    table[values] = True
    return depth.float().masked_fill(table.take(labels.long()), math.nan)


def depth_to_millimetres(depth: Any) -> Any:
    """16UC1 depth (REP 118 raw-driver style): millimetres rounded to nearest, 0 = invalid (NaN, +-inf,
    <= 0, > 65.535 m). NumPy, CuPy or torch (where the tensor lives: the device -> host copy is then half
    the bytes of float32 metres).

    The product with 1000 is taken in float64, where it is exact for float32 metres (24 + 10 significant
    bits): in float32 it is rounded first, and about 0.1 % of the values (those within a float32 step of
    a half millimetre) came out 1 mm off."""
    if isinstance(depth, torch.Tensor):
        if depth.device.type == "cpu":   # NumPy (see _host_array)
            return torch.from_numpy(_millimetres(np, _host_array(depth)))
        mm = depth.to(torch.float64, copy=True).mul_(1000.0).round_()   # (a copy: never the caller's float64)
        mm.nan_to_num_(0.0, 0.0, 0.0)
        mm.masked_fill_(mm > 65535, 0.0)
        return mm.clamp_min_(0.0).to(torch.uint16)
    with where_it_lives(depth):
        return _millimetres(array_module(depth), depth)


def metres_from_millimetres(mm: Any) -> Any:
    """float32 metres of a 16UC1 depth as its readers take them (depth_image_proc: ``mm * 0.001f``), NaN where it
    is 0 (no measurement). NumPy, CuPy or torch (where the tensor lives)."""
    if isinstance(mm, torch.Tensor):
        if mm.device.type == "cpu":
            return torch.from_numpy(metres_from_millimetres(mm.numpy()))
        m = mm.to(torch.float32).mul_(0.001)
        return m.masked_fill_(m == 0, math.nan)
    xp = array_module(mm)
    with where_it_lives(mm):
        m = mm.astype(xp.float32)
        m *= np.float32(0.001)
        m[m == 0] = np.nan
        return m


def _millimetres(xp, depth: Any) -> Any:
    mm = xp.array(depth, dtype=xp.float64)   # a new array (also for a scalar): the rest is in place
    mm *= 1000.0
    xp.rint(mm, out=mm)
    with np.errstate(invalid="ignore"):
        bad = ~(mm <= 65535)   # NaN included
        bad |= mm <= 0
    mm[bad] = 0
    return mm.astype(xp.uint16)


def _check_logits(logits: Any, who: str) -> None:
    if not isinstance(logits, torch.Tensor) or logits.ndim != 4:
        raise ValueError(f"{who} expects a (N, C, H, W) torch tensor")
    if logits.shape[1] > 65535:
        raise ValueError(f"{logits.shape[1]} classes do not fit a mono16 label image (at most 65535)")


def labels_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Official label convention: argmax over classes + 1 (1..C; 0 is reserved for unlabeled).

    (N, C, H, W) -> (N, H, W) uint8, or uint16 (a mono16 image) for 256..65535 classes.
    """
    _check_logits(logits, "labels_from_logits")
    labels = logits.argmax(dim=1) + 1
    return labels.to(torch.uint8) if logits.shape[1] <= 255 else labels.to(torch.uint16)


def upsampled_labels(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Labels 1..C at ``size`` = (H, W) from (N, C, h, w) logits: the official bicubic upsample, then argmax + 1.

    The labels of ``labels_from_logits(upsample(logits, size))``, as (N, H, W) uint8 (uint16 past 255 classes),
    where the logits are. On a GPU the classes are upsampled all at once, or in groups of at most
    ``MAX_UPSAMPLED_BYTES`` into a running maximum (the same labels; a small GPU does not keep 1.2 GB for 150
    classes at 1920x1080 in its allocator's cache). On the CPU the classes are upsampled one at a time (OpenCV INTER_CUBIC, the kernel of
    :func:`upsample`) into a running maximum, so the (N, C, H, W) upsampled logits are never held: for the 150
    ADE20K classes they are 184 MB at 640x480 and 1.2 GB at 1080p, and building them took over 4x as long
    (``bench_pipeline``: 386-425 against 90-101 ms at 640x480 from 384x512 logits, 2 cores). A tie keeps the
    lower class, as argmax does; OpenCV and torch round the kernel's sums differently in the last bits, so where
    two classes come within that rounding of each other the pixel can take the other one (9 of 307 200 pixels
    of random logits; a trained model's are rarely that close).
    """
    _check_logits(logits, "upsampled_labels")
    h, w = int(size[0]), int(size[1])
    if h <= 0 or w <= 0:
        raise ValueError(f"target size must be positive; got {size}")
    if tuple(logits.shape[-2:]) == (h, w):
        return labels_from_logits(logits)
    if logits.device.type != "cpu":
        per_class = logits.shape[0] * h * w * 4   # bytes of one class upsampled (float32)
        return _labels_in_groups(logits, (h, w), max(1, MAX_UPSAMPLED_BYTES // per_class))
    src = np.ascontiguousarray(_host_array(logits))
    n, c = src.shape[:2]
    labels = np.empty((n, h, w), np.uint8 if c <= 255 else np.uint16)
    best, score = np.empty((h, w), src.dtype), np.empty((h, w), src.dtype)
    higher = np.empty((h, w), bool)
    for i in range(n):
        cv2.resize(src[i, 0], (w, h), dst=best, interpolation=cv2.INTER_CUBIC)
        labels[i].fill(1)
        for k in range(1, c):
            cv2.resize(src[i, k], (w, h), dst=score, interpolation=cv2.INTER_CUBIC)
            np.greater(score, best, out=higher)
            np.copyto(best, score, where=higher)
            np.putmask(labels[i], higher, k + 1)
    return torch.from_numpy(labels)


#: the most bytes of upsampled logits :func:`upsampled_labels` holds on a GPU: where all classes would take more
#: (150 ADE20K classes at 1920x1080: 1.2 GB), they are upsampled in groups into a running maximum
MAX_UPSAMPLED_BYTES = 256 * 2**20


def _labels_in_groups(logits: torch.Tensor, size: tuple[int, int], group: int) -> torch.Tensor:
    """upsampled_labels with torch where the logits are: ``group`` classes upsampled at a time (torch's bicubic, as
    :func:`upsample`), each group's argmax folded into a running maximum; a tie keeps the lower class. One group
    holding every class is ``labels_from_logits(upsample(logits, size))``."""
    n, c = logits.shape[:2]
    if group >= c:
        return labels_from_logits(upsample(logits, size))
    best = labels = None
    for c0 in range(0, c, group):
        up = F.interpolate(logits[:, c0:c0 + group].float(), size=size, mode="bicubic", align_corners=False)
        index = up.argmax(dim=1, keepdim=True)
        value = up.gather(1, index)[:, 0]
        if best is None:
            best, labels = value, index[:, 0]
        else:
            higher = value > best
            best = torch.where(higher, value, best)
            labels = torch.where(higher, index[:, 0] + c0, labels)
    labels = labels + 1
    return labels.to(torch.uint8) if c <= 255 else labels.to(torch.uint16)


def colorize_labels(labels: Any, palette: Any = ADE20K_PALETTE) -> Any:
    """(H, W) labels -> (H, W, 3) uint8 RGB via ``palette`` ((K, 3) uint8, row 0 = unlabeled).

    Labels beyond the palette are shown black (like unlabeled) instead of raising mid-stream.
    """
    xp = array_module(labels)
    with where_it_lives(labels):   # (not CuPy's current device and stream)
        return _colorize_labels(xp, labels, palette)


def _colorize_labels(xp, labels: Any, palette: Any) -> Any:
    pal = np.asarray(palette.get() if hasattr(palette, "get") else palette, dtype=np.uint8)
    if pal.ndim != 2 or pal.shape[1] != 3:
        raise ValueError(f"palette must be (K, 3) uint8; got shape {pal.shape}")
    if labels.dtype in (np.uint8, np.uint16):
        # every value of the dtype has a row (black past the palette): one lookup, no range check (on a GPU,
        # no host synchronisation); on the CPU a mono8 image through OpenCV's table, 20x NumPy's indexing
        full = _full_palette(pal.tobytes(), 256 if labels.dtype == np.uint8 else 65536)
        if xp is np and labels.ndim == 2 and labels.dtype == np.uint8:
            return cv2.applyColorMap(np.ascontiguousarray(labels), full.reshape(256, 1, 3))
        if xp is np:
            return full[labels]
        # (signed indices: CuPy once read uint8 indices into a 256-row table wrongly, cupy/cupy#3017)
        return _device_palette(full.tobytes(), labels.device.id)[labels.astype(xp.int32)]
    lab = labels.astype(xp.int64, copy=False)
    out = xp.asarray(pal)[xp.clip(lab, 0, pal.shape[0] - 1)]
    bad = lab >= pal.shape[0]
    if bool(bad.any()):
        out[bad] = 0
    return out


@functools.lru_cache(maxsize=8)
def _full_palette(palette: bytes, rows: int) -> np.ndarray:
    """(rows, 3) uint8: the palette's colours, then black."""
    full = np.zeros((rows, 3), np.uint8)
    pal = np.frombuffer(palette, np.uint8).reshape(-1, 3)[:rows]
    full[:len(pal)] = pal
    full.flags.writeable = False
    return full


@functools.lru_cache(maxsize=8)
def _device_palette(full: bytes, device_id: int) -> Any:
    import cupy  # noqa: PLC0415

    with cupy.cuda.Device(device_id):
        palette = cupy.asarray(np.frombuffer(full, np.uint8).reshape(-1, 3))
        cupy.cuda.get_current_stream().synchronize()   # cached for callers on any stream: complete before they read
        return palette


def overlay(rgb: Any, color: Any, alpha: float = 0.5) -> Any:
    """Alpha blend ``rgb + alpha * (color - rgb)`` in float32, truncated to uint8: the arithmetic of PIL's
    ``Image.blend``, which the official ``write_segm_img`` uses (with alpha 0.5)."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1]; got {alpha}")
    if rgb.shape != color.shape:
        raise ValueError(f"overlay needs images of one shape; got {rgb.shape} and {color.shape}")
    xp = array_module(rgb)
    if xp is np and rgb.dtype == np.uint8 and color.dtype == np.uint8:
        # the same float32 arithmetic, done once for each of the 65536 (image, colour) byte pairs: a table lookup
        # per byte instead of two float32 copies of the image and five passes over them
        pair = rgb.astype(np.uint16)
        pair <<= 8
        pair |= color
        return _blend_table(float(alpha)).take(pair)
    with where_it_lives(rgb):
        base = rgb.astype(xp.float32)
        out = color.astype(xp.float32)
        out -= base
        out *= np.float32(alpha)
        out += base
        return xp.clip(out, 0.0, 255.0).astype(xp.uint8)


@functools.lru_cache(maxsize=16)
def _blend_table(alpha: float) -> np.ndarray:
    """overlay's result for every (image byte, colour byte) pair, at index image * 256 + colour."""
    base, color = np.meshgrid(np.arange(256, dtype=np.float32), np.arange(256, dtype=np.float32), indexing="ij")
    color -= base
    color *= np.float32(alpha)
    color += base
    table = np.clip(color, 0.0, 255.0).astype(np.uint8).reshape(-1)
    table.flags.writeable = False
    return table


def tensor_to_array(t: torch.Tensor) -> Any:
    """Zero-copy array view of a tensor: NumPy for CPU tensors, CuPy (DLPack) for CUDA tensors."""
    t = t.detach()
    if t.device.type == "cpu":
        return t.numpy()
    import cupy  # noqa: PLC0415

    from dpt_ros.pipeline._cuda import torch_stream  # noqa: PLC0415

    # torch's device too: its DLPack export checks the tensor is on torch's current device (cuda:N, N > 0)
    with torch.cuda.device(t.device), cupy.cuda.Device(t.device.index), torch_stream(t.device):
        return cupy.from_dlpack(t.contiguous())
