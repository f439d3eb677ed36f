"""Older rclpy: the node imports where Humble's rclpy lacks ``rclpy.event_handler`` (Iron+)."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CHECK = """
import sys, warnings
warnings.simplefilter("ignore", DeprecationWarning)  # newer rclpy.qos_event re-exports event_handler's classes
import rclpy.executors, rclpy.lifecycle, rclpy.node, rclpy.qos_event   # rclpy's own modules load first (newer ones use it)
sys.modules["rclpy.event_handler"] = None          # as on Humble: importing it raises ImportError
from dpt_ros.ros import node
assert node.SubscriptionEventCallbacks is rclpy.qos_event.SubscriptionEventCallbacks
assert node.PublisherEventCallbacks is rclpy.qos_event.PublisherEventCallbacks
print("ok")
"""


def test_node_imports_without_rclpy_event_handler():
    p = subprocess.run([sys.executable, "-c", CHECK], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and p.stdout.strip() == "ok", p.stderr[-2000:]


def test_every_module_of_the_package_imports():
    """Each module of dpt_ros imports in a fresh interpreter: the check that a syntax or standard-library name newer
    than the interpreter (``make test-compat`` runs it on Python 3.10) breaks nothing that the selected tests do not
    load (the tools, the benchmarks, the lifecycle and launch modules)."""
    code = ("import importlib, pkgutil, dpt_ros\n"
            "names = sorted(m.name for m in pkgutil.walk_packages(dpt_ros.__path__, 'dpt_ros.'))\n"
            "for name in names:\n"
            "    importlib.import_module(name)\n"
            "print(len(names))\n")
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    modules = [path for path in (ROOT / "dpt_ros").rglob("*.py") if path != ROOT / "dpt_ros" / "__init__.py"]
    assert int(p.stdout.split()[-1]) == len(modules), (p.stdout, len(modules))   # (each one, dpt_ros itself first)
