"""Build dpt_ros with colcon into a temporary folder and check what a ROS user gets installed.

Run by `make colcon-check` (and so by .ci/run). Exits non-zero with a list of problems.
"""
from __future__ import annotations

import os
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


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="dpt_ros_colcon_") as tmp:
        ws = Path(tmp)
        listing = run(["colcon", "list", "--base-paths", str(REPO)], ws)
        print(listing.strip())
        if "(ros.ament_python)" not in listing:
            raise SystemExit("colcon does not see dpt_ros as (ros.ament_python): package.xml is not valid for catkin_pkg")
        run(["colcon", "--log-base", str(ws / "log"), "build", "--base-paths", str(REPO),
             "--build-base", str(ws / "build"), "--install-base", str(ws / "install")], ws)
        prefix = ws / "install" / "dpt_ros"
        expected = [
            "lib/dpt_ros/dpt_node",
            "lib/dpt_ros/sample_camera",
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
        missing = [p for p in expected if not (prefix / p).exists()]
        not_exec = [p for p in expected[:2] if (prefix / p).exists() and not os.access(prefix / p, os.X_OK)]
        pkgs = list((prefix / "lib").glob("python3*/site-packages/dpt_ros/ros/node.py"))
        if not pkgs:
            missing.append("lib/python3*/site-packages/dpt_ros/ros/node.py")
        for p in expected:
            print(("ok      " if p not in missing else "MISSING ") + p)
        if pkgs and not missing:   # the policy tool finds its interface list in the install, not in a checkout
            env = dict(os.environ, PYTHONPATH=str(pkgs[0].parents[2]))
            out = subprocess.run([sys.executable, "-m", "dpt_ros.tools.sros2_policy", "--namespace", "/robot",
                                  "--out", "-"], cwd=ws, env=env, text=True, capture_output=True)
            where = subprocess.run([sys.executable, "-c", "import dpt_ros.tools.sros2_policy as t; print(t.INTERFACES)"],
                                   cwd=ws, env=env, text=True, capture_output=True).stdout.strip()
            if out.returncode != 0 or "<topic>/robot/depth</topic>" not in out.stdout:
                missing.append(f"sros2_policy from the install failed: {out.stderr.strip()[-300:]}")
            elif not where.startswith(str(prefix)):
                missing.append(f"sros2_policy read {where!r}, not the installed share/dpt_ros/sros2")
            else:
                print("ok      sros2_policy runs from the install")
        if missing or not_exec:
            raise SystemExit(f"colcon install is incomplete: missing={missing} not_executable={not_exec}")
    print("colcon build: dpt_ros installs its executables, share files and ament index marker")
    return 0


if __name__ == "__main__":
    sys.exit(main())
