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
