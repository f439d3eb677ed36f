"""Fixtures of the reliability tests: a real rclpy graph per test module (own ROS_DOMAIN_ID),
the node in-process through ``dpt_ros.ros.testing.Harness`` or as a subprocess with ``--ros-args``.
(Torch runs one thread here, as in all the tests: test/conftest.py.)"""
import os
import threading

import pytest

from dpt_ros.ros.dds_env import localhost_only

os.environ.update(localhost_only())
pytest.importorskip("rclpy")

from rcl_interfaces.msg import Log  # noqa: E402

from dpt_ros.ros.testing import Harness, qos  # noqa: E402


@pytest.fixture
def harness(request):
    """A Harness on the test module's ``DOMAIN``."""
    h = Harness(getattr(request.module, "DOMAIN"))
    yield h
    h.shutdown()


class RosoutLog:
    """Log lines of the graph read from ``/rosout`` (rcl_interfaces/Log), as a user's tools see them."""

    def __init__(self, harness: Harness) -> None:
        self.messages: list = []
        self._lock = threading.Lock()
        harness.probe.create_subscription(Log, "/rosout", self._on_log, qos("reliable", 1000))

    def _on_log(self, msg) -> None:
        with self._lock:
            self.messages.append(msg)

    def lines(self, node: str = "", level: int = 0, since: int = 0) -> list[str]:
        with self._lock:
            msgs = self.messages[since:]
        return [m.msg for m in msgs if (not node or m.name.endswith(node)) and m.level >= level]

    def mark(self) -> int:
        with self._lock:
            return len(self.messages)


@pytest.fixture
def rosout(harness):
    return RosoutLog(harness)
