"""The tools name themselves as they were run: ``python -m dpt_ros.tools.X`` (as README and ``make demo`` run them),
and a console script by its own name (dpt_ros.tools.options.program)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOLS = sorted(p.stem for p in (ROOT / "dpt_ros" / "tools").glob("*.py")
               if p.stem not in ("__init__", "options") and "argparse.ArgumentParser(" in p.read_text())
PY = os.path.basename(sys.executable)


def _run(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_every_tool_is_checked():
    assert len(TOOLS) == 13 and {"demo", "weights", "predict", "gpu_check", "sros2_policy"} <= set(TOOLS), TOOLS


@pytest.mark.parametrize("tool", TOOLS)
def test_a_tool_run_with_dash_m_names_itself_so(tool):
    """argparse named the module's file, 'usage: demo.py ...' and 'demo.py: error: ...' (a name that runs nothing):
    `make demo` printed those."""
    r = _run("-m", f"dpt_ros.tools.{tool}", "--no-such-option")
    prog = f"{PY} -m dpt_ros.tools.{tool}"
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith(f"usage: {prog} "), r.stderr
    assert r.stderr.splitlines()[-1].startswith(f"{prog}: error: "), r.stderr   # (unknown option, or a required one)


def test_a_console_script_keeps_its_own_name():
    """dpt_predict and calibrate_depth (console scripts: no module spec for __main__) name themselves."""
    for script, entry in (("dpt_predict", "from dpt_ros.ros.console import dpt_predict as main"),
                          ("calibrate_depth", "from dpt_ros.tools.calibrate_depth import run as main")):
        r = _run("-c", f"import sys; sys.argv[0] = '/usr/bin/{script}'; {entry}; sys.exit(main())",
                 "--no-such-option")
        assert r.returncode == 2 and r.stderr.startswith(f"usage: {script} "), r.stderr
        assert r.stderr.splitlines()[-1].startswith(f"{script}: error: "), r.stderr


class _Parser(Exception):
    """Raised in place of parsing, with the tool's parser (see the test below)."""


def _said(value) -> str:
    """A default as a help text writes it: 30.0 -> '30', ['dpt_hybrid', 'dpt_large'] -> 'dpt_hybrid dpt_large'."""
    if isinstance(value, (list, tuple)):
        return " ".join(map(_said, value))
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@pytest.mark.parametrize("tool", TOOLS)
def test_every_option_with_a_default_says_it_in_help(tool, monkeypatch):
    """--help of the node benchmarks said no default for --device, whose default is cpu (the node's own is auto: a
    user on a GPU machine who left it out was told '--cuda-graphs needs a CUDA device (--device cpu)'), nor for
    --precision, --weights, --stride, --outputs, --rate or --depth-scale; bench_node_stages' and bench_lifecycle's
    --input-size said '0 = the variant's default' while they run at 64 and 384 when it is left out; bench_pipeline's
    --repeat, --sizes and --encoding, gpu_check's --e2e-seconds and --node-stages-profile said none either. Every
    option whose default is a value (not 'not given': None, False, '' or nothing) now names it in its help, as
    'default VALUE', 'default: ...' or 'VALUE (the default'."""
    import argparse
    import importlib

    module = importlib.import_module(f"dpt_ros.tools.{tool}")

    def caught(self, *args, **kwargs):
        raise _Parser(self)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", caught)
    with pytest.raises(_Parser) as info:
        (getattr(module, "parse_args", None) or module.main)([])
    parser = info.value.args[0]
    unsaid = []
    for action in parser._actions:
        default = action.default
        if not action.option_strings or default in (None, False, "", [], argparse.SUPPRESS):
            continue
        words = " ".join((action.help or "").split())
        value = _said(default)
        if not any(form in words for form in (f"default {value}", f"default '{value}'", f"{value} (the default",
                                              f"'{value}' (the default", "(default: ")):
            unsaid.append(f"{action.option_strings[-1]} (default {value}): {words!r}")
    assert unsaid == []
