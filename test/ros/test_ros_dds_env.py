"""DDS environment variables under their per-distro names (dpt_ros.ros.dds_env)."""
from dpt_ros.ros.dds_env import PROFILE_VARIABLES, localhost_only, profile_of, set_profile
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
