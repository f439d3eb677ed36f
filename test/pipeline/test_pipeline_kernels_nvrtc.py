"""The CUDA kernels compiled by the real NVRTC (no GPU needed), and the launch sites checked against them.

CuPy compiles ``KERNEL_SOURCE`` with NVRTC on the first GPU frame; a compile error, a C++-mangled
kernel name or a launch that passes an argument of the wrong width would only show there. NVRTC itself
runs without a driver: PyTorch's CUDA build installs it (``nvidia/*/lib/libnvrtc.so*``), so CI checks
the source here. The PTX gives each kernel's parameter list, which is compared with the argument
tuples that ``dpt_ros/pipeline/_cuda.py`` passes to ``_launch`` (CuPy passes a NumPy scalar by its
own width and an array as a 64-bit pointer, whatever the kernel expects).
"""

import ast
import ctypes
import glob
import inspect
import os
import re
import sys

import pytest

from dpt_ros.pipeline import _cuda
from dpt_ros.pipeline._kernels import KERNEL_SOURCE

KERNELS = ("dpt_decode", "dpt_demosaic", "dpt_resize_normalize", "dpt_upsample", "dpt_depth", "dpt_cloud")
# PTX parameter type of each NumPy scalar constructor used at the launch sites
SCALAR_PTX = {"int32": "u32", "uint32": "u32", "int64": "u64", "uint64": "u64", "float32": "f32", "float64": "f64"}


def _find_nvrtc():
    for root in sys.path:
        for pattern in ("nvidia/*/lib/libnvrtc.so*", "nvidia/cuda_nvrtc/lib/libnvrtc.so*"):
            for path in sorted(glob.glob(os.path.join(root, pattern))):
                if "builtins" not in path and ".alt." not in path:
                    return path
    return None


NVRTC = _find_nvrtc()
pytestmark = pytest.mark.skipif(NVRTC is None, reason="needs libnvrtc (installed with PyTorch's CUDA build)")


def _compile(arch: str, source: str = KERNEL_SOURCE) -> tuple[int, str, str]:
    """(nvrtcResult, log, PTX) of ``source`` for ``compute_<arch>``."""
    lib = ctypes.CDLL(NVRTC)
    prog = ctypes.c_void_p()
    assert lib.nvrtcCreateProgram(ctypes.byref(prog), source.encode(), b"dpt_kernels.cu", 0, None, None) == 0
    try:
        opts = [f"--gpu-architecture=compute_{arch}".encode()]
        result = lib.nvrtcCompileProgram(prog, len(opts), (ctypes.c_char_p * len(opts))(*opts))
        size = ctypes.c_size_t()
        lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
        log = ctypes.create_string_buffer(size.value)
        lib.nvrtcGetProgramLog(prog, log)
        ptx = ""
        if result == 0:
            lib.nvrtcGetPTXSize(prog, ctypes.byref(size))
            buf = ctypes.create_string_buffer(size.value)
            lib.nvrtcGetPTX(prog, buf)
            ptx = buf.value.decode()
        return result, log.value.decode(errors="replace"), ptx
    finally:
        lib.nvrtcDestroyProgram(ctypes.byref(prog))


def _entries(ptx: str) -> dict[str, list[str]]:
    """Kernel name -> PTX parameter types, e.g. ``['u64', 'u32', ...]``."""
    return {m.group(1): re.findall(r"\.param \.(\w+)", m.group(2))
            for m in re.finditer(r"\.visible \.entry (\w+)\(([^)]*)\)", ptx)}


def _launch_sites() -> list[tuple[str, int, list[str]]]:
    """(kernel, line, PTX type of each argument) for every ``_launch("name", n, (args...))`` in _cuda.py."""
    tree = ast.parse(inspect.getsource(_cuda))
    sites = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "_launch":
            name, _, args = node.args
            assert isinstance(name, ast.Constant) and isinstance(args, ast.Tuple), ast.dump(node)
            types = []
            for a in args.elts:
                if (isinstance(a, ast.Call) and isinstance(a.func, ast.Attribute)
                        and isinstance(a.func.value, ast.Name) and a.func.value.id == "np"):
                    types.append(SCALAR_PTX[a.func.attr])
                else:   # a device array (or the np.uint64(0) null pointer held in a variable): 64-bit pointer
                    types.append("u64")
            sites.append((name.value, node.lineno, types))
    return sites


@pytest.mark.parametrize("arch", ["80", "90"])
def test_kernels_compile_with_nvrtc_without_warnings(arch):
    result, log, ptx = _compile(arch)
    assert result == 0, f"NVRTC failed (code {result}) for compute_{arch}:\n{log}"
    assert "warning" not in log.lower(), log
    # extern "C": CuPy's get_function looks the kernels up by these unmangled names
    assert sorted(_entries(ptx)) == sorted(KERNELS)


def test_every_launch_passes_arguments_of_the_kernels_widths():
    _, log, ptx = _compile("90")
    entries = _entries(ptx)
    sites = _launch_sites()
    assert sorted({k for k, _, _ in sites}) == sorted(KERNELS), "every kernel is launched somewhere"
    for kernel, line, types in sites:
        assert types == entries[kernel], (f"_cuda.py line {line}: {kernel} gets {types}, "
                                          f"the kernel takes {entries[kernel]}")


def test_a_broken_source_fails_with_the_line_in_the_log():
    """The compile check can fail: one missing semicolon is an error naming its line."""
    bad = KERNEL_SOURCE.replace("long long t = DPT_TID;", "long long t = DPT_TID", 1)
    line = bad[: bad.index("long long t = DPT_TID\n")].count("\n") + 1
    result, log, ptx = _compile("90", bad)
    assert result != 0 and ptx == ""
    # reported where the statement runs on: the missing ';' line or the next one
    assert re.search(rf"dpt_kernels\.cu\(({line}|{line + 1})\): error", log), log
