"""Build dpt_ros with colcon into a temporary folder and check what a ROS user gets installed.

Run by `make colcon-check` (and so by .ci/run). Exits non-zero with a list of problems.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run(cmd: list[str], cwd: Path) -> str:
    print("+", " ".join(cmd), flush=True)
    proc = subprocess.run(cmd, cwd=cwd, text=True, capture_output=True)
    if proc.returncode != 0:
        print(proc.stdout, proc.stderr, sep="\n")
        raise SystemExit(f"command failed with exit code {proc.returncode}: {' '.join(cmd)}")
    return proc.stdout


def check_install(ws: Path, symlink: bool) -> None:
    """``colcon build`` (``--symlink-install``: what most ROS users type) into ``ws``; exits listing what is missing."""
    run(["colcon", "--log-base", str(ws / "log"), "build", "--base-paths", str(REPO),
         "--build-base", str(ws / "build"), "--install-base", str(ws / "install")]
        + (["--symlink-install"] if symlink else []), ws)
    mode = "--symlink-install" if symlink else "copy"
    prefix = ws / "install" / "dpt_ros"
    expected = [
        "lib/dpt_ros/dpt_node",
        "lib/dpt_ros/dpt_lifecycle_node",
        "lib/dpt_ros/sample_camera",
        "lib/dpt_ros/calibrate_depth",
        "lib/dpt_ros/dpt_predict",
        "share/dpt_ros/package.xml",
        "share/ament_index/resource_index/packages/dpt_ros",
        "share/dpt_ros/rviz/dpt.rviz",
        "share/dpt_ros/sros2/dpt_ros_interfaces.yaml",
        "share/dpt_ros/sros2/dpt_ros_policy.xml",
    ]
    expected += [f"share/dpt_ros/launch/{p.name}" for p in sorted((REPO / "launch").glob("*.launch.py"))]
    expected += [f"share/dpt_ros/config/{p.name}" for p in sorted((REPO / "config").iterdir()) if p.is_file()]
    for name in ("depth.launch.py", "segmentation.launch.py", "dpt.launch.py"):
        if f"share/dpt_ros/launch/{name}" not in expected:
            expected.append(f"share/dpt_ros/launch/{name}")
    missing = [p for p in expected if not (prefix / p).exists()]   # exists() follows symlinks: a dangling one is missing
    not_exec = [p for p in expected[:4] if (prefix / p).exists() and not os.access(prefix / p, os.X_OK)]
    if symlink:   # the package is imported from the source tree, through the build folder colcon adds to PYTHONPATH
        pkg_root = ws / "build" / "dpt_ros"
        if not (pkg_root / "dpt_ros" / "ros" / "node.py").exists():
            missing.append("build/dpt_ros/dpt_ros/ros/node.py (the develop link to the sources)")
    else:
        pkgs = list((prefix / "lib").glob("python3*/site-packages/dpt_ros/ros/node.py"))
        pkg_root = pkgs[0].parents[2] if pkgs else None
        if not pkgs:
            missing.append("lib/python3*/site-packages/dpt_ros/ros/node.py")
    for p in expected:
        print(("ok      " if p not in missing else "MISSING ") + p)
    if not missing:   # the policy tool finds its interface list in the install, not in a checkout
        env = dict(os.environ, PYTHONPATH=str(pkg_root), AMENT_PREFIX_PATH=str(prefix))
        out = subprocess.run([sys.executable, "-m", "dpt_ros.tools.sros2_policy", "--namespace", "/robot",
                              "--out", "-"], cwd=ws, env=env, text=True, capture_output=True)
        where = subprocess.run([sys.executable, "-c", "import dpt_ros.tools.sros2_policy as t; print(t.INTERFACES)"],
                               cwd=ws, env=env, text=True, capture_output=True).stdout.strip()
        if out.returncode != 0 or "<topic>/robot/depth</topic>" not in out.stdout:
            missing.append(f"sros2_policy from the install failed: {out.stderr.strip()[-300:]}")
        elif not symlink and not where.startswith(str(prefix)):
            missing.append(f"sros2_policy read {where!r}, not the installed share/dpt_ros/sros2")
        else:
            print(f"ok      sros2_policy runs from the install ({where})")
        # the launch files' presets come from the installed share folder, found through the ament index
        probe = ("from dpt_ros.ros import presets; print(presets.share_dir()); "
                 "print(','.join(presets.preset_variants('depth'))); print(presets.config_path('dpt_hybrid').read_text()[:0])")
        shown = subprocess.run([sys.executable, "-c", probe], cwd=ws, env=env, text=True, capture_output=True)
        lines = shown.stdout.splitlines()
        if shown.returncode != 0 or len(lines) < 2:
            missing.append(f"presets from the install failed: {shown.stderr.strip()[-300:]}")
        elif lines[0] != str(prefix / "share" / "dpt_ros") or "dpt_hybrid" not in lines[1].split(","):
            missing.append(f"presets read {lines[0]!r} (variants {lines[1]!r}), not the installed share/dpt_ros")
        else:
            print(f"ok      launch presets from {lines[0]}: {lines[1]}")
        # the installed executable (what `ros2 run dpt_ros dpt_node` starts) runs the node: without weights it
        # exits 2 with the instructions
        ran = subprocess.run([str(prefix / "lib" / "dpt_ros" / "dpt_node"), "--ros-args", "-p", "depth.variant:=dpt_large"],
                             cwd=ws, env=dict(env, ROS_DOMAIN_ID="83", ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST"),
                             text=True, capture_output=True, timeout=120)
        if ran.returncode != 2 or "depth.weights is not set" not in ran.stderr:
            missing.append(f"lib/dpt_ros/dpt_node did not start the node (exit {ran.returncode}): "
                           f"{(ran.stdout + ran.stderr).strip()[-300:]}")
        else:
            print("ok      lib/dpt_ros/dpt_node starts the node (exit 2 without weights, with the instructions)")
    if missing or not_exec:
        raise SystemExit(f"colcon install ({mode}) is incomplete: missing={missing} not_executable={not_exec}")
    print(f"colcon build ({mode}): dpt_ros installs its executables, share files and ament index marker")
    if not symlink:
        check_colcon_test(ws)


# a few quick tests from each part: `colcon test` finds the suite through pytest.ini from the package folder
_COLCON_TEST_SELECTION = ("test_variant_table or test_depth_to_millimetres or test_readme_parameter_table "
                          "or test_policy_tool_command_line")


def check_colcon_test(ws: Path) -> None:
    """``colcon test`` (what the ROS buildfarm and package maintainers run) on a quick selection of the suite;
    ``colcon test-result`` must count them, with no failure."""
    run(["colcon", "--log-base", str(ws / "log"), "test", "--base-paths", str(REPO), "--build-base",
         str(ws / "build"), "--install-base", str(ws / "install"), "--pytest-args", "-k", _COLCON_TEST_SELECTION], ws)
    result = run(["colcon", "test-result", "--test-result-base", str(ws / "build"), "--all"], ws)
    found = re.search(r"Summary: (\d+) tests, (\d+) errors, (\d+) failures", result)
    tests, errors, failures = (int(v) for v in found.groups()) if found else (0, 0, 0)
    if tests < 4 or errors or failures:
        raise SystemExit(f"colcon test did not run the selected tests cleanly: {result.strip()[-500:]!r}")
    print(f"colcon test: {tests} tests, no error, no failure")


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="dpt_ros_colcon_") as tmp:
        listing = run(["colcon", "list", "--base-paths", str(REPO)], Path(tmp))
        print(listing.strip())
        if "(ros.ament_python)" not in listing:
            raise SystemExit("colcon does not see dpt_ros as (ros.ament_python): package.xml is not valid for catkin_pkg")
        for symlink in (False, True):
            ws = Path(tmp) / ("symlink" if symlink else "copy")
            ws.mkdir()
            check_install(ws, symlink)
    return 0


if __name__ == "__main__":
    sys.exit(main())
