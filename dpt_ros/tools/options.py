"""argparse types for the tools' number options, one set for all of them: a value the tool cannot use is refused as
argparse's usage error (exit status 2, ``argument --frames: -1 is no number of frames: give at least 1``), before the
tool starts any process, model or DDS participant, rather than found later (a traceback from ``time.sleep``, a
statistics error of no runs, a value silently taken as another).

The options whose value a tool passes on to the node or the sample camera take that parameter's own check instead
(``dpt_ros.ros.params.parameter_option``, ``dpt_ros.ros.sample_camera.parameter_option``).

No ROS imports: bench_model, bench_pipeline, predict and gpu_check run without ROS.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
from typing import Any, Callable, Optional

from dpt_ros.ros.console import tool_exit, write_last


#: bench_e2e's shortest --duration (also gpu_check's --e2e-seconds, which it passes on): its node reports /diagnostics
#: once a second (diagnostics.period:=1.0) and the node's rates are read between the window's first and last report,
#: so a shorter window may hold fewer than two, which ended the run after it had measured ("use a longer --duration")
E2E_WINDOW_MIN_S = 2.0


def program() -> Optional[str]:
    """argparse's ``prog`` for a tool: ``python -m dpt_ros.tools.demo`` where it runs as ``python -m`` (as README and
    ``make demo`` run it), where argparse (before Python 3.14) names the module's file, ``usage: demo.py`` and
    ``demo.py: error: ...``, a name that runs nothing; None (argparse's own: the program's name) otherwise, e.g. for a
    console script (``dpt_predict``, ``calibrate_depth``), which names itself."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    name = getattr(spec, "name", None) or ""
    if not name.startswith("dpt_ros."):
        return None
    return f"{os.path.basename(sys.executable) or 'python'} -m {name.removesuffix('.__main__')}"


class ToolParser(argparse.ArgumentParser):
    """The argument parser of every tool, named by :func:`program`. ``--help`` and a usage error end the tool as the
    rest of its output does (``dpt_ros.ros.console.tool_exit``): the help is written by ``console.write_last``, so
    that where its reader has gone (``--help | head -c0``) the tool ends quietly with exit status 141, and where
    stdout is on a full disk (``--help >/dev/full``) with 1, said on stderr (where ``console.tool_streams`` set the
    streams up, as each tool's ``__main__`` does). argparse's own ``sys.exit(0)`` came first: the help lost, exit
    status 0 (its write failed only at the interpreter's flush of stdout, after the exit status was set). A usage
    error keeps its 2, its lines on stderr dropped where that cannot be written."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("prog", program())
        super().__init__(*args, **kwargs)
        self._stdout_status = 0   # write_last's status of the help

    def print_help(self, file: Any = None) -> None:
        if file is not None or sys.stdout is None:
            super().print_help(file)
            return
        self._stdout_status = write_last(self.format_help())

    def exit(self, status: int = 0, message: Optional[str] = None) -> None:  # type: ignore[override]
        if message:
            self._print_message(message, sys.stderr)
        tool_exit(status or self._stdout_status)


def number(text: str, kind: type = float) -> Any:
    """``text`` as an int (``kind`` int) or a float; argparse's refusal saying which it is not."""
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {'a whole number' if kind is int else 'a number'}") from None


def count(of: str, least: int = 1, most: Optional[int] = None, zero: Optional[str] = None,
          note: str = "") -> Callable[[str], int]:
    """argparse's ``type`` for a number of ``of`` (frames, cycles): a whole number from ``least`` (to ``most``); with
    ``zero`` (what 0 does: 'skip bench_e2e'), 0 is taken too and said so. ``note``: why the bounds, added to the
    refusal ("the node keeps its last 300 stage times")."""
    lowest = 1 if zero is not None else least

    def convert(text: str) -> int:
        value = number(text, int)
        if not ((value >= lowest or (zero is not None and value == 0)) and (most is None or value <= most)):
            give = f"at least {lowest}" if most is None else f"{lowest}..{most}"
            give += f", or 0 to {zero}" if zero is not None else ""
            raise argparse.ArgumentTypeError(f"{value} is no number of {of}: give {give}"
                                             + (f" ({note})" if note else ""))
        return value

    return convert


def amount(of: str, unit: str, least: float = 0.0, above: bool = False, zero: Optional[str] = None,
           note: str = "") -> Callable[[str], float]:
    """argparse's ``type`` for a finite ``of`` in ``unit`` (a window in seconds, a rate in Hz) of at least ``least``
    (more than it with ``above``); with ``zero`` (what 0 does), 0 too. NaN and infinity are refused (a sleep of NaN
    raises, of infinity never ends). ``note`` as in :func:`count`."""

    def convert(text: str) -> float:
        value = number(text, float)
        fits = math.isfinite(value) and (value > least if above else value >= least)
        if not (fits or (zero is not None and value == 0)):
            if least == 0 and not above:   # ("give seconds, or 0 to skip bench_e2e")
                give = f"{unit}, or 0 to {zero}" if zero is not None else f"0 or more {unit}"
            else:
                give = f"{'more than' if above else 'at least'} {least:g} {unit}"
                give += f", or 0 to {zero}" if zero is not None else ""
            raise argparse.ArgumentTypeError(f"{value:g} is no {of}: give {give}" + (f" ({note})" if note else ""))
        return value

    return convert


def ros_domain(text: str) -> int:
    """argparse's ``type`` for ``--domain``: a ROS domain, 0..``dds_env.DOMAIN_MAX`` (232). A negative one was
    refused by rclpy.init only after the tool had started its node or camera processes; one above 232 ended each of
    the tool's processes at its first node, with Fast DDS's "port number is too high"."""
    from dpt_ros.ros.dds_env import DOMAIN_MAX, domain_problem   # (no ROS imports)

    value = number(text, int)
    why = domain_problem(value)
    if why:
        if isinstance(text, _FromEnvironment):
            raise argparse.ArgumentTypeError(f"ROS_DOMAIN_ID={value}, the default, {why}: give --domain "
                                             f"0..{DOMAIN_MAX}, or set ROS_DOMAIN_ID to one")
        raise argparse.ArgumentTypeError(f"{value} {why}: give 0..{DOMAIN_MAX}")
    return value


class _FromEnvironment(str):
    """ROS_DOMAIN_ID as ``--domain``'s default: argparse converts a default given as text with the option's
    ``type``, so that one out of range is refused too, saying where it came from."""


def add_domain_argument(ap: argparse.ArgumentParser, default: int) -> None:
    """``--domain`` of a ROS tool: :func:`ros_domain`, by default ROS_DOMAIN_ID as rcl reads it
    (``dds_env.domain_from_env``), else the tool's own ``default``."""
    from dpt_ros.ros.dds_env import DOMAIN_MAX, domain_from_env

    value = domain_from_env(default)
    ap.add_argument("--domain", type=ros_domain, default=_FromEnvironment(value) if value != default else value,
                    help=f"ROS domain, 0..{DOMAIN_MAX} (default: ROS_DOMAIN_ID, else {default})")


def add_depth_variant_argument(ap: argparse.ArgumentParser, tool: str, default: str) -> None:
    """``--variant`` of a tool that runs the node's depth model (demo, bench_e2e, bench_node_stages, bench_lifecycle):
    a depth variant. A segmentation variant is refused saying so, where segmentation runs (predict, the node's
    segmentation.variant / segmentation.weights) and, for a benchmark, that bench_model times its network; it was
    argparse's bare "invalid choice: 'dpt_large_ade20k' (choose from ...)", as for a misspelling (still so). ``tool``:
    the tool's name in that message (``bench_e2e``). bench_model's ``--variants`` takes every variant (it times the
    network, a segmentation head too) and predict's ``--variant`` every variant (it writes either task's files)."""
    from dpt_ros.model import VARIANTS   # (no ROS imports)

    depth = sorted(n for n, v in VARIANTS.items() if v.task == "depth")

    def convert(text: str) -> str:
        if text in VARIANTS and VARIANTS[text].task == "segmentation":
            timed = (f"; python -m dpt_ros.tools.bench_model --variants {text} times its network"
                     if tool.startswith("bench_") else "")
            raise argparse.ArgumentTypeError(
                f"{text} is a segmentation variant; {tool} runs depth variants only (choose from {', '.join(depth)}); "
                f"segmentation runs in predict (python -m dpt_ros.tools.predict --variant {text} ...) or in the node "
                f"(segmentation.variant:={text} with segmentation.weights:=<file>, e.g. ros2 launch dpt_ros "
                f"segmentation.launch.py variant:={text} weights:=<file>){timed}")
        return text   # (a name of no variant: argparse's "invalid choice" with the choices)

    ap.add_argument("--variant", default=default, metavar="VARIANT", type=convert, choices=depth,
                    help=f"depth variant (default {default}): %(choices)s")


def output_folder(text: str) -> str:
    """argparse's ``type`` for ``--out``, the folder a tool writes its files into (made where missing): an empty path,
    which ``Path`` takes for the working folder (the files landed there), is refused; what making or writing the
    folder meets the tool says itself (``dpt_ros.tools.output_folder_error``)."""
    if not text:
        raise argparse.ArgumentTypeError("no folder given (an empty path); give the folder to write into (made if it "
                                         "does not exist), or . for the working folder")
    return text


def input_path(text: str) -> str:
    """argparse's ``type`` for an input file or folder: an empty path, which ``Path`` takes for the working folder
    (its images were read), is refused."""
    if not text:
        raise argparse.ArgumentTypeError("no file or folder given (an empty path); give an image file or a folder of "
                                         "images, or . for the working folder")
    return text


def output_file(stdout: bool = False, option: str = "--json") -> Callable[[str], str]:
    """argparse's ``type`` for an option naming a file the tool writes when it is done (``--json``, ``--yaml``): one it
    cannot write (a folder, a file in a folder that does not exist or it may not write in, a file it may not write),
    which was found by the write after the whole run, its results then lost, is refused before anything starts; so is
    a file in a folder of the kernel's (``dpt_ros.tools.refuse_kernel_folder``, as for the tools' ``--out``: as root,
    ``--json /sys/fs/cgroup/r.json`` or ``/dev/r.json`` was written there), said in ``output_folder_error``'s words;
    a name longer than the file system takes, or a path longer than the system takes (``dpt_ros.tools.path_too_long``:
    the write said only 'File name too long', after the run; such a path's folder was said not to be there). The
    folder is looked at as given (a file relative to a working folder deeper than that limit can be written).
    The write itself still reports what it meets (a full disk). ``stdout``: ``-`` is taken too (standard output).
    ``option``: the option's name, for what to give instead."""
    from pathlib import Path

    from dpt_ros.tools import output_folder_error, path_too_long, refuse_kernel_folder   # (no ROS imports)

    def convert(text: str) -> str:
        if stdout and text == "-":
            return text
        if not text:
            raise argparse.ArgumentTypeError("no file name given (an empty path); give a file name")
        too_long = path_too_long(text, option)
        if too_long:
            raise argparse.ArgumentTypeError(f"{text}: {too_long}")
        folder = os.path.dirname(os.path.abspath(text))
        given = os.path.dirname(text) or "."   # (the folder as the write will reach it)
        if os.path.isdir(text):
            raise argparse.ArgumentTypeError(f"{text!r} is a folder; give a file name")
        try:
            refuse_kernel_folder(Path(folder))
        except PermissionError as e:
            raise argparse.ArgumentTypeError(
                f"{text}: {output_folder_error(Path(os.path.abspath(text)), e, file=True, option=option)}") from None
        if not os.path.isdir(given):
            raise argparse.ArgumentTypeError(f"{text}: no folder {folder}; give a file in a folder that exists")
        if not os.access(given, os.W_OK | os.X_OK) or (os.path.exists(text) and not os.access(text, os.W_OK)):
            where = "it" if os.path.exists(text) else f"in {folder}"
            raise argparse.ArgumentTypeError(f"{text}: cannot write {where}; give a file you may write")
        return text

    return convert
