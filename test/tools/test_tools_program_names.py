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
