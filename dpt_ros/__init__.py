"""dpt_ros: DPT (Dense Prediction Transformer) depth and segmentation for ROS 2.

Layout (each layer only imports the ones above it):

- :mod:`dpt_ros.model`    -- PyTorch DPT, variant table, checkpoints, inference engine (no ROS).
- :mod:`dpt_ros.pipeline` -- array pre/post-processing, NumPy or CuPy (no ROS).
- :mod:`dpt_ros.ros`      -- rclpy node, parameters, message conversion, sample camera.
- :mod:`dpt_ros.tools`    -- demo, benchmarks, weights helper.
"""

from typing import Callable, Optional

__version__ = "0.1.0"

#: The precision names the node's ``precision`` parameter takes, and so every tool's ``--precision`` (the model's
#: ``parse_precision`` also takes aliases, ``half``, ``float32``, ...: no value for a command line that sets up the
#: node). Here, above the layers, so that each reads this one tuple without importing torch (:mod:`dpt_ros.model`,
#: which the launch files' ``dpt_ros.ros.params`` must not load) or ROS (``dpt_ros.ros``, which bench_model and
#: predict run without).
PRECISIONS = ("fp32", "fp16", "bf16")

#: The node's ``input_size`` parameter's range, lowest, highest, step (0: the variant's own size), and so predict's
#: ``--input-size``: here, for predict, which runs without ROS (:mod:`dpt_ros.ros.params` imports it).
INPUT_SIZE_RANGE = (0, 2048, 32)


def nearest_allowed(value: int, int_range: tuple[int, int, int],
                    zero: Optional[str] = None) -> tuple[list[int], Optional[str]]:
    """The values of the integer range ``int_range`` (lowest, highest, step) nearest to ``value`` (one or two), and
    ``zero``, what 0 stands for where 0 would be among them but is no value like the others (input_size 16 is
    nearest 32, 0 being the variant's own size, not a size near 16); that is None otherwise."""
    lo, hi, step = int_range
    clamped = min(max(value, lo), hi)
    below = lo + (clamped - lo) // step * step
    nearest = [below] + ([below + step] if below != clamped and below + step <= hi else [])
    if zero is None or 0 not in nearest:
        return nearest, None
    return [v for v in nearest if v != 0] or [step], zero


def int_range_refusal(value: int, int_range: tuple[int, int, int], zero: Optional[str] = None,
                      written: Optional[Callable[[list[str]], str]] = None) -> Optional[str]:
    """Why ``value`` is no value of the integer range ``int_range`` (lowest, highest, step), None when it is one:
    "out of range 1..64"; where the range has steps, with the allowed values nearest to it (:func:`nearest_allowed`,
    ``zero`` as there): "is not a multiple of 32: use 96 or 128 (allowed: 0..2048 in steps of 32)", "out of range
    0..2048 in steps of 32: use 2048". ``written``: those values (as text) -> how to write them (None: "96 or 128";
    the node's: the ``ros2 param set`` commands). The one wording of the node's refusal, the tools' (their options
    that the node's parameters take) and predict's, which runs without ROS."""
    lo, hi, step = int_range
    if lo <= value <= hi and (value - lo) % step == 0:
        return None
    allowed = f"{lo}..{hi}" + (f" in steps of {step}" if step > 1 else "")
    inside = lo <= value <= hi
    what = (f"is not a multiple of {step}" if lo % step == 0 else f"is not {lo} plus a multiple of {step}") \
        if inside else f"out of range {allowed}"
    if step == 1:
        return what
    nearest, zero = nearest_allowed(value, int_range, zero)
    use = (written or " or ".join)([str(v) for v in nearest]) + (f", or 0 for {zero}" if zero else "")
    return f"{what}: use {use}" + (f" (allowed: {allowed})" if inside else "")


def cuda_available() -> bool:
    """Whether PyTorch sees a CUDA device here (torch imported only when asked: the launch files never are)."""
    import torch  # noqa: PLC0415

    return torch.cuda.is_available()


def cuda_missing() -> str:
    """Why PyTorch sees no CUDA device here (call it where :func:`cuda_available` is False): a PyTorch built without
    CUDA (a CPU-only wheel), or no device or driver found. The one wording, for the node's start-up line (device auto
    on the CPU) and every refusal of ``cuda``: the node's, the tools' and the model's (predict, bench_model)."""
    import torch  # noqa: PLC0415

    if torch.version.cuda is None:
        return "this PyTorch is built without CUDA"
    return (f"no CUDA device found, PyTorch built for CUDA {torch.version.cuda}: no NVIDIA GPU, or its driver is not "
            f"loaded (nvidia-smi tells)")


def resolved_device(name: str) -> str:
    """The device a ``device`` value (the node's parameter, every tool's ``--device``) runs the model on: ``auto`` is
    ``cuda`` where CUDA is available (:func:`cuda_available`), else ``cpu``; any other value is itself. The one rule
    for ``auto``: the node, its parameter checks and the model's ``check_target`` all read it here."""
    if name == "auto":
        return "cuda" if cuda_available() else "cpu"
    return name
