"""Fixtures for every test directory.

A test module that sets ``DOMAIN`` (and ``DOMAINS`` when it uses more than one) holds those ROS domains
while its tests run (:func:`dpt_ros.ros.dds_env.domain_lock`): a second test run on the same machine
(another checkout, a mutation run) waits for them instead of reading this run's topics."""
import contextlib
import sys

import pytest

from dpt_ros.ros.dds_env import domain_lock


@pytest.fixture(autouse=True, scope="module")
def _hold_ros_domains(request):
    domains = getattr(request.module, "DOMAINS", None)
    if domains is None:
        domains = (request.module.DOMAIN,) if hasattr(request.module, "DOMAIN") else ()
    if not domains:
        yield
        return

    def notice(text: str) -> None:   # shown even while pytest captures output: the run is waiting
        capture = request.config.pluginmanager.getplugin("capturemanager")   # None under -p no:capture
        with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
            print(f"\n{request.module.__name__}: {text}", file=sys.stderr, flush=True)

    with domain_lock(domains, notice=notice):
        yield
