"""The tools name themselves as they were run: ``python -m dpt_ros.tools.X`` (as README and ``make demo`` run them),
and a console script by its own name (dpt_ros.tools.options.program)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dpt_ros.ros.testing import concurrently

ROOT = Path(__file__).resolve().parents[2]
TOOLS = sorted(p.stem for p in (ROOT / "dpt_ros" / "tools").glob("*.py")
               if p.stem not in ("__init__", "options") and "ToolParser(" in p.read_text())
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



def test_with_stderr_closed_a_usage_error_goes_nowhere(redirected):
    """gpu_check, sros2_policy and bench_reliability started with stderr closed (2>&-): they did not set their streams
    up as the other tools (console.tool_streams, each tested in its own file), and a usage error's usage went onto
    stdout (argparse writes there where sys.stderr is None), among the report lines a user reads. Now nothing; exit
    status 2."""
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    tools = ["gpu_check", "sros2_policy", "bench_reliability"]
    said = concurrently(lambda tool: redirected([sys.executable, "-m", f"dpt_ros.tools.{tool}", "--no-such-option"],
                                                "2>&-", env=env), tools)
    assert dict(zip(tools, said)) == {tool: (2, "") for tool in tools}

def test_every_tools_parser_is_the_tools_parser(monkeypatch):
    """Every tool builds its parser as options.ToolParser (whose --help and usage errors end as the tool's other
    output does): a tool that built a bare argparse.ArgumentParser would end --help with argparse's exit status 0
    whatever became of the help."""
    from dpt_ros.tools.options import ToolParser

    bare = [p.stem for p in (ROOT / "dpt_ros" / "tools").glob("*.py") if "argparse.ArgumentParser(" in p.read_text()]
    assert bare == []
    assert {tool: type(_parser(tool, monkeypatch)[1]).__name__ for tool in TOOLS} == {tool: ToolParser.__name__
                                                                                        for tool in TOOLS}


@pytest.mark.parametrize("tool", ["weights", "bench_pipeline"])
def test_help_into_a_pipe_without_reader_or_a_full_disk_gives_the_tools_exit_status(tool, redirected):
    """`--help | head -c0` and `--help >/dev/full` ended with exit status 0: argparse printed the help and called
    sys.exit(0) itself, before the tools' tool_exit, and the write failed only at the interpreter's flush of stdout
    (for the full disk, the line on stderr even said 'exit status 1'). Now 141 for the reader gone, quietly (as
    `weights --urls | head -3`), and 1 for the full disk, said on stderr; a usage error keeps its 2 with stderr full.
    (The pipe's read end is closed before the tool starts: every write finds no reader.) Every tool's parser is the
    one that does this (test_every_tools_parser_is_the_tools_parser): two of them are run here, one of them a
    benchmark (run_benchmark)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    argv = [sys.executable, "-m", f"dpt_ros.tools.{tool}"]

    def gone() -> tuple:
        read_end, write_end = os.pipe()
        os.close(read_end)
        try:
            done = subprocess.run([*argv, "--help"], stdout=write_end, stderr=subprocess.PIPE, text=True, env=env,
                                  timeout=120)
        finally:
            os.close(write_end)
        return done.returncode, done.stderr

    def full() -> tuple:
        return redirected([*argv, "--help"], "2>&1 >/dev/full", env=env)

    def usage_error_on_a_full_stderr() -> tuple:
        return redirected([*argv, "--no-such-option"], "2>/dev/full", env=env)

    (piped, piped_err), (filled, filled_err), refused = concurrently(
        lambda case: case(), [gone, full, usage_error_on_a_full_stderr])
    assert (piped, piped_err) == (141, "")
    # (the tool ends there: not the line of a report whose tool goes on, 'its work goes on', it said before)
    assert (filled, filled_err) == (1, f"{tool}: cannot write on standard output: No space left on device; what it "
                                       "printed there is incomplete, and it ends with exit status 1\n")
    assert refused == (2, "")


def test_a_console_script_keeps_its_own_name():
    """dpt_predict and calibrate_depth (console scripts: no module spec for __main__) name themselves."""
    for script, entry in (("dpt_predict", "from dpt_ros.ros.console import dpt_predict as main"),
                          ("calibrate_depth", "from dpt_ros.tools.calibrate_depth import run as main")):
        r = _run("-c", f"import sys; sys.argv[0] = '/usr/bin/{script}'; {entry}; sys.exit(main())",
                 "--no-such-option")
        assert r.returncode == 2 and r.stderr.startswith(f"usage: {script} "), r.stderr
        assert r.stderr.splitlines()[-1].startswith(f"{script}: error: "), r.stderr


class _Parser(Exception):
    """Raised in place of parsing, with the tool's parser (:func:`_parser`)."""


def _parser(tool: str, monkeypatch):
    """The tool's module and its argparse parser, as its parse_args (or main) builds it, caught before it parses."""
    import argparse
    import importlib

    module = importlib.import_module(f"dpt_ros.tools.{tool}")

    def caught(self, *args, **kwargs):
        raise _Parser(self)

    with monkeypatch.context() as m:
        m.setattr(argparse.ArgumentParser, "parse_args", caught)
        with pytest.raises(_Parser) as info:
            (getattr(module, "parse_args", None) or module.main)([])
    return module, info.value.args[0]


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

    _, parser = _parser(tool, monkeypatch)
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



#: the tools that run the node's depth model: their --variant takes depth variants only
DEPTH_TOOLS = ("bench_e2e", "bench_lifecycle", "bench_node_stages", "demo")


def test_the_depth_only_tools_are_those_whose_variant_takes_depth_variants_only(monkeypatch):
    """Any other tool with a --variant takes every variant (predict writes either task's files, weights checks either
    task's files; bench_model's --variants times either task's network)."""
    from dpt_ros.model import VARIANTS

    depth = sorted(n for n, v in VARIANTS.items() if v.task == "depth")
    takes = {}
    for tool in TOOLS:
        _, parser = _parser(tool, monkeypatch)
        for action in parser._actions:
            if {"--variant", "--variants"} & set(action.option_strings):
                takes[tool] = sorted(action.choices)
    assert {tool for tool, names in takes.items() if names == depth} == set(DEPTH_TOOLS)
    assert all(names == sorted(VARIANTS) for tool, names in takes.items() if tool not in DEPTH_TOOLS), takes
    assert {"predict", "weights", "bench_model"} <= set(takes)


@pytest.mark.parametrize("tool", DEPTH_TOOLS)
def test_a_depth_tool_refuses_a_segmentation_variant_saying_so_and_where_segmentation_runs(tool, usage_error):
    """--variant dpt_large_ade20k was argparse's bare "invalid choice: 'dpt_large_ade20k' (choose from ...)", as for a
    misspelling, with no word of why a released variant is no choice nor where it runs: now it says it is a
    segmentation variant, that the tool runs depth variants (which), and where segmentation runs (predict, the node's
    segmentation parameters; for a benchmark, bench_model times its network). Exit status 2, before anything starts.
    A name of no variant is still argparse's "invalid choice"."""
    import importlib

    from dpt_ros.model import VARIANTS

    module = importlib.import_module(f"dpt_ros.tools.{tool}")
    call = getattr(module, "parse_args", None) or module.main
    depth = ", ".join(sorted(n for n, v in VARIANTS.items() if v.task == "depth"))
    segmentation = sorted(n for n, v in VARIANTS.items() if v.task == "segmentation")
    assert segmentation == ["dpt_hybrid_ade20k", "dpt_large_ade20k"]
    for name in segmentation:
        err = " ".join(usage_error(call, ["--variant", name]).err.split())
        said = err[err.index("error: ") + len("error: "):]
        assert said.startswith(f"argument --variant: {name} is a segmentation variant; {tool} runs depth variants only "
                               f"(choose from {depth}); segmentation runs in predict (python -m dpt_ros.tools.predict "
                               f"--variant {name} ...) or in the node (segmentation.variant:={name} with "
                               f"segmentation.weights:=<file>, e.g. ros2 launch dpt_ros segmentation.launch.py "
                               f"variant:={name} weights:=<file>)"), said
        assert said.endswith(f"; python -m dpt_ros.tools.bench_model --variants {name} times its network")\
            == tool.startswith("bench_"), said
        assert "invalid choice" not in said
    usage_error(call, ["--variant", "dpt_hybird"], "argument --variant: invalid choice: 'dpt_hybird' (choose from "
                                                  "'dpt_base', 'dpt_hybrid', ")
