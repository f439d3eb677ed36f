"""Fixtures of the ROS tests (helpers live in dpt_ros.ros.testing)."""
import os

import pytest

from dpt_ros.ros.dds_env import localhost_only

os.environ.update(localhost_only())
pytest.importorskip("rclpy")

from dpt_ros.ros.testing import Harness  # noqa: E402


@pytest.fixture
def harness(request):
    """A Harness on the test module's ``DOMAIN`` (each test file has its own ROS_DOMAIN_ID)."""
    h = Harness(getattr(request.module, "DOMAIN"))
    yield h
    h.shutdown()
