"""dpt_ros: DPT (Dense Prediction Transformer) depth and segmentation for ROS 2.

Layout (each layer only imports the ones above it):

- :mod:`dpt_ros.model`    -- PyTorch DPT, variant table, checkpoints, inference engine (no ROS).
- :mod:`dpt_ros.pipeline` -- array pre/post-processing, NumPy or CuPy (no ROS).
- :mod:`dpt_ros.ros`      -- rclpy node, parameters, message conversion, sample camera.
- :mod:`dpt_ros.tools`    -- demo, benchmarks, weights helper.
"""

__version__ = "0.1.0"

#: The precision names the node's ``precision`` parameter takes, and so every tool's ``--precision`` (the model's
#: ``parse_precision`` also takes aliases, ``half``, ``float32``, ...: no value for a command line that sets up the
#: node). Here, above the layers, so that each reads this one tuple without importing torch (:mod:`dpt_ros.model`,
#: which the launch files' ``dpt_ros.ros.params`` must not load) or ROS (``dpt_ros.ros``, which bench_model and
#: predict run without).
PRECISIONS = ("fp32", "fp16", "bf16")


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
