"""DDS environment variables under their per-distro names, and the per-process ROS domain lock of the
test harness (dpt_ros.ros.dds_env)."""
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import pytest

from dpt_ros.ros.dds_env import (PROFILE_VARIABLES, DomainBusy, domain_lock, localhost_only, profile_of,
                                 set_profile)
from dpt_ros.ros.testing import as_nobody, wait_for
from dpt_ros.tools import bench_e2e


def test_localhost_only_uses_the_name_the_distro_reads():
    assert localhost_only({"ROS_DISTRO": "humble"}) == {"ROS_LOCALHOST_ONLY": "1"}
    for distro in ("iron", "jazzy", "kilted", "rolling"):
        assert localhost_only({"ROS_DISTRO": distro}) == {"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    assert localhost_only({}) == {"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}   # PyPI wheels: no ROS_DISTRO


def test_profile_is_set_under_the_names_the_distro_reads_and_cleared():
    assert PROFILE_VARIABLES == ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE")
    for distro in ("humble", "iron", "jazzy"):   # Fast DDS 2 reads the old name
        env = {"ROS_DISTRO": distro, "FASTRTPS_DEFAULT_PROFILES_FILE": "/old.xml", "OTHER": "1"}
        assert profile_of(env) == "/old.xml"          # a Humble/Jazzy user's setting is found
        set_profile(env, "/p.xml")
        assert env == {"ROS_DISTRO": distro, "FASTDDS_DEFAULT_PROFILES_FILE": "/p.xml",
                       "FASTRTPS_DEFAULT_PROFILES_FILE": "/p.xml", "OTHER": "1"}
        set_profile(env, None)
        assert env == {"ROS_DISTRO": distro, "OTHER": "1"} and profile_of(env) is None
    # Kilted and later, and the PyPI wheels (no ROS_DISTRO): the new name only; the old one would make
    # rmw_fastrtps log a deprecation warning in every process, and a stale file under it is removed
    for env in ({"ROS_DISTRO": "kilted"}, {"ROS_DISTRO": "rolling"}, {}):
        env["FASTRTPS_DEFAULT_PROFILES_FILE"] = "/stale.xml"
        distro = env.get("ROS_DISTRO")
        set_profile(env, "/p.xml")
        assert env == dict({"ROS_DISTRO": distro} if distro else {}, FASTDDS_DEFAULT_PROFILES_FILE="/p.xml")
    assert profile_of({"FASTDDS_DEFAULT_PROFILES_FILE": "/a.xml", "FASTRTPS_DEFAULT_PROFILES_FILE": "/b.xml"}) == "/a.xml"


def test_benchmark_processes_get_the_profile_under_the_distros_names(monkeypatch):
    monkeypatch.setenv("FASTRTPS_DEFAULT_PROFILES_FILE", "/stale.xml")
    monkeypatch.delenv("ROS_DISTRO", raising=False)
    env = bench_e2e._env(7, "/p.xml")
    assert env["FASTDDS_DEFAULT_PROFILES_FILE"] == "/p.xml" and "FASTRTPS_DEFAULT_PROFILES_FILE" not in env
    assert env["ROS_DOMAIN_ID"] == "7" and env["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
    env = bench_e2e._env(7, None)    # --dds-profile none: Fast DDS defaults, a stale user file removed too
    assert not any(k in env for k in PROFILE_VARIABLES)
    monkeypatch.setenv("ROS_DISTRO", "humble")
    assert bench_e2e._env(7, None)["ROS_LOCALHOST_ONLY"] == "1"


def _holder(tmp_path, *domains):
    """A separate process that holds ``domains`` until its stdin closes; returns once it holds them."""
    code = ("import sys; from dpt_ros.ros.dds_env import domain_lock\n"
            f"with domain_lock({list(domains)!r}, lock_dir={str(tmp_path)!r}):\n"
            "    print('held', flush=True); sys.stdin.read()\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_domain_lock_makes_a_second_process_wait_and_names_the_holder(tmp_path):
    """A domain another process holds: the wait is announced once, naming the holder, and ends in DomainBusy once its
    timeout is out (not before); a holder that ends hands the domain over to the waiter. (No bound on how long
    either took: the first wait runs in a thread, waited for with a generous deadline, so that a wait that never
    ends fails the test rather than hanging it; the holder ends once the waiter says it waits.)"""
    proc = _holder(tmp_path, 90)
    try:
        notices, outcome = [], []

        def wait_in_vain() -> None:
            t0 = time.monotonic()
            try:
                with domain_lock([90], timeout=0.3, lock_dir=str(tmp_path), notice=notices.append):
                    outcome.append("entered a domain another process holds")
            except DomainBusy as e:
                outcome.append((e, time.monotonic() - t0))

        threading.Thread(target=wait_in_vain, daemon=True).start()
        wait_for(lambda: outcome, timeout=60, what="domain_lock's DomainBusy after its 0.3 s timeout")
        assert isinstance(outcome[0], tuple), outcome[0]
        e, waited = outcome[0]
        assert waited >= 0.3, waited   # its timeout out, not given up before
        assert f"ROS domain 90 is still in use by process {proc.pid} after 0.3 s" in str(e)
        assert notices == [f"waiting for ROS domain 90: process {proc.pid} is using it "
                           f"({tmp_path / 'dpt_ros_ros_domain_90.lock'})"]       # announced once, not per poll

        def holder_ends(text: str) -> None:   # a holder that ends while the waiter waits (said it waits)
            notices.append(text)
            proc.stdin.close()

        with domain_lock([90], timeout=20, lock_dir=str(tmp_path), notice=holder_ends):
            assert (tmp_path / "dpt_ros_ros_domain_90.lock").read_text() == str(os.getpid())
        assert len(notices) == 2 and proc.stdin.closed   # it waited, then had the domain
    finally:
        proc.kill()
        proc.wait()


def test_free_domains_takes_the_first_unheld_ones_through_the_domain_locks(tmp_path):
    """free_domains: the first ``count`` candidates no other process holds (domain_lock's locks), in the candidates'
    order; held against domain_lock (a test module's DOMAIN waits for them) until the block ends; a wait for more
    than are free is announced once and ends in DomainBusy."""
    from dpt_ros.ros.dds_env import free_domains

    proc = _holder(tmp_path, 30, 32)
    try:
        notices = []
        with free_domains(3, [30, 31, 32, 33, 34], timeout=5, lock_dir=str(tmp_path), notice=notices.append) as got:
            assert got == [31, 33, 34] and notices == []
            assert (tmp_path / "dpt_ros_ros_domain_31.lock").read_text() == str(os.getpid())
            with pytest.raises(DomainBusy, match=f"ROS domain 33 is still in use by process {os.getpid()}"):
                with domain_lock([33], timeout=0, lock_dir=str(tmp_path), notice=notices.append):
                    pytest.fail("entered a domain free_domains holds")
        with domain_lock([31, 33, 34], timeout=0, lock_dir=str(tmp_path)):   # given back
            pass
        notices.clear()
        with pytest.raises(DomainBusy) as e:
            with free_domains(2, [32, 30, 35], timeout=0.3, lock_dir=str(tmp_path), notice=notices.append):
                pytest.fail("entered with one domain of two")
        assert "1 more of ROS domains 32, 30 still in use after 0.3 s" in str(e.value)
        assert notices == [f"waiting for 1 more of ROS domains 32, 30: other processes hold them ({tmp_path})"]
        with domain_lock([35], timeout=0, lock_dir=str(tmp_path)):   # the one it had taken, given back on failure
            pass
        notices.clear()
        # a holder that ends while it waits (once it says it waits): its domain is taken
        with free_domains(2, [32, 30, 35], timeout=20, lock_dir=str(tmp_path),
                          notice=lambda text: (notices.append(text), proc.stdin.close())) as got:
            assert got == [32, 35]   # 35 free at once, 32 once its holder ended (in the candidates' order)
        assert len(notices) == 1   # (it waited for 32)
    finally:
        proc.kill()
        proc.wait()


def test_domain_lock_released_on_failure_and_when_the_holder_dies(tmp_path):
    def lock(domain):
        return tmp_path / f"dpt_ros_ros_domain_{domain}.lock"

    proc = _holder(tmp_path, 97)
    try:
        # ascending order (two runs with overlapping sets cannot deadlock): 95 is taken before the wait for 97
        # (a Python set iterates {95, 97} as 97, 95), and given back with the error
        seen = []
        with pytest.raises(DomainBusy, match="ROS domain 97 is still in use by process .* after 0.2 s"):
            with domain_lock([97, 95], timeout=0.2, lock_dir=str(tmp_path),
                             notice=lambda text: seen.append(lock(95).read_text())):
                pass
        assert seen == [str(os.getpid())]
        with pytest.raises(DomainBusy, match="ROS domain 97 is still in use by process .* after 0 s"):
            with domain_lock([95, 97], timeout=0, lock_dir=str(tmp_path), notice=seen.append):
                pass
        assert len(seen) == 1   # timeout 0: one try, no wait announced (a wait announces itself first)
        with domain_lock([95], timeout=0, lock_dir=str(tmp_path)):
            pass
    finally:
        proc.kill()   # SIGKILL: no clean-up code runs, the kernel drops the lock with the process
        proc.wait()
    lock(95).write_text("4194304 (an old holder's longer pid)")
    with domain_lock([95, 97], timeout=0, lock_dir=str(tmp_path)):
        assert lock(95).read_text() == lock(97).read_text() == str(os.getpid())


def _as_nobody(fn) -> int:
    return as_nobody(fn, {DomainBusy: 3, PermissionError: 4})


@pytest.mark.skipif(not hasattr(os, "fork") or os.geteuid() != 0,
                    reason="needs root (a child process becomes another user)")
def test_domain_lock_between_two_users():
    """Two users' test runs on one machine: the lock file the first created (0644) still works for the second."""
    shared = tempfile.mkdtemp(prefix="dpt_ros_locks_")
    os.chmod(shared, 0o1777)   # like /tmp

    def take(timeout: float):
        def child() -> int:
            with domain_lock([93], timeout=timeout, lock_dir=shared, notice=lambda text: None):
                return 0
        return child

    try:
        with domain_lock([93], lock_dir=shared):   # root's file, mode 0644
            assert _as_nobody(take(0.2)) == 3        # waits its turn (before: PermissionError, exit 4)
        assert _as_nobody(take(0)) == 0
    finally:
        shutil.rmtree(shared)


def test_a_domain_past_232_is_refused_for_fast_dds_only():
    """ROS_DOMAIN_ID above dds_env.DOMAIN_MAX is refused where the rmw is Fast DDS (RMW_IMPLEMENTATION unset, ROS 2's
    default, or a Fast DDS rmw: its ports pass 65535); another rmw (rmw_zenoh_cpp has no DDS ports) is not refused here
    but left to say for itself."""
    from dpt_ros.ros.dds_env import env_domain_problem

    said = ("ROS_DOMAIN_ID=233 is no usable ROS domain (Fast DDS's ports for a domain above 232 pass 65535: its first "
            "node ends the process): set it to 0..232")
    for rmw in (None, "", "rmw_fastrtps_cpp", "rmw_fastrtps_dynamic_cpp"):
        env = {"ROS_DOMAIN_ID": "233", **({} if rmw is None else {"RMW_IMPLEMENTATION": rmw})}
        assert env_domain_problem(env) == said, rmw
        assert env_domain_problem({**env, "ROS_DOMAIN_ID": "232"}) is None, rmw
    assert env_domain_problem({"ROS_DOMAIN_ID": "233", "RMW_IMPLEMENTATION": "rmw_zenoh_cpp"}) is None
    assert env_domain_problem({"ROS_DOMAIN_ID": "abc"}) is None   # (rcl's own refusal at rclpy.init says it)


def test_the_wait_notice_with_stderr_closed_goes_nowhere_not_onto_stdout(tmp_path, capsys, monkeypatch):
    """domain_lock's notice (and shm_notice's warning) printed with print(..., file=sys.stderr): with stderr closed
    (sys.stderr None), print writes onto stdout, among a tool's report lines. Now console.stderr_line: nothing."""
    proc = _holder(tmp_path, 91)
    try:
        monkeypatch.setattr(sys, "stderr", None)
        with pytest.raises(DomainBusy):
            with domain_lock([91], timeout=0.1, lock_dir=str(tmp_path)):
                pass
        monkeypatch.undo()
    finally:
        proc.stdin.close()
        proc.wait(timeout=60)
    assert capsys.readouterr().out == ""
