"""Security: pickled code in a checkpoint never runs (torch.load weights_only=True); the node starts
with ``--ros-args --enclave /dpt_ros/dpt_node`` (security off by default, no keystore needed) and
refuses cleanly in SROS2 Enforce mode without keys; its topics, services and parameters are exactly
the documented set in docs/sros2/dpt_ros_interfaces.yaml, and docs/sros2/dpt_ros_policy.xml is
generated from that set; the node creates no world-writable files, even under umask 000."""
import importlib.util
import os
import stat
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest
import torch
from rcl_interfaces.srv import ListParameters
from sensor_msgs.msg import Image

from dpt_ros.model import CheckpointError, load_engine
from dpt_ros.ros import params
from dpt_ros.ros.testing import make_image, publish_until, qos, wait_for
from dpt_ros.tools import sros2_policy
from dpt_ros.tools.bench_reliability import FAST_ROS_ARGS, ROOT, LineReader, node_env, record, start_node, stop_node

DOMAIN = 60
DOMAINS = (DOMAIN, DOMAIN + 1, DOMAIN + 2)   # plain, secured, the umask checks' second node
ENCLAVE = "/dpt_ros/dpt_node"


class _Payload:
    """Unpickling this runs ``exec`` (writes a marker file): what a malicious checkpoint carries."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('code ran')",)


def _evil_checkpoints(tmp_path):
    marker = tmp_path / "pwned"
    files = []
    for legacy in (False, True):
        path = tmp_path / f"evil{'_legacy' if legacy else ''}.pt"
        sd = {"scratch.layer1_rn.weight": torch.zeros(1), "payload": _Payload(str(marker))}
        torch.save(sd, path, _use_new_zipfile_serialization=not legacy)
        files.append(path)
    return marker, files


def test_malicious_pickle_is_refused_without_running_code(tmp_path):
    marker, files = _evil_checkpoints(tmp_path)
    for path in files:
        # the file really is malicious: an unsafe load (in a throw-away process) runs the payload
        subprocess.run([sys.executable, "-c", f"import torch; torch.load({str(path)!r}, weights_only=False)"],
                       capture_output=True, timeout=120)
        assert marker.exists(), "the test payload did not work"
        marker.unlink()
        with pytest.raises(CheckpointError, match="refusing to unpickle"):
            load_engine("dpt_tiny", path)
        assert not marker.exists(), "loading a checkpoint executed pickled code"
    # the node given that file as depth.weights exits with the reason, without running it
    proc = start_node(DOMAIN, "-p", "depth.variant:=dpt_tiny", "-p", f"depth.weights:={files[0]}",
                      "-p", "device:=cpu")
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 2 and "refusing to unpickle" in out, out[-2000:]
    assert "Traceback" not in out
    assert not marker.exists()
    record("security", malicious_pickles_refused=len(files) + 1, payload_executed=False)


def test_malicious_pickle_in_a_hot_swap_keeps_the_old_model(harness, tmp_path):
    marker, files = _evil_checkpoints(tmp_path)
    node = harness.start_node()
    out = harness.collector(Image, "inverse_depth")
    pub = harness.probe.create_publisher(Image, "image", qos("reliable"))
    wait_for(lambda: pub.get_subscription_count() > 0 and
             node.cameras[0].pubs["inverse_depth"].get_subscription_count() > 0, what="discovery")
    old = node.models
    from rclpy.parameter import Parameter
    assert node.set_parameters([Parameter("depth.weights", value=str(files[0]))])[0].successful
    wait_for(lambda: node.error_counts().get("model_load", 0) == 1, timeout=30, what="load refused")
    assert node.models is old and not marker.exists()
    pub.publish(make_image(5))
    wait_for(lambda: len(out) == 1, what="old model serving")


def _names(pairs):
    return {name: types[0] for name, types in pairs}


def test_enclave_and_the_fixed_interface_set(harness):
    env = node_env(DOMAIN)
    for k in ("ROS_SECURITY_ENABLE", "ROS_SECURITY_STRATEGY", "ROS_SECURITY_KEYSTORE"):
        env.pop(k, None)
    proc = start_node(DOMAIN, *FAST_ROS_ARGS, "--enclave", ENCLAVE, env=env)
    reader = LineReader(proc)
    try:
        probe = harness.probe
        wait_for(lambda: ("dpt_node", "/") in probe.get_node_names_and_namespaces() or proc.poll() is not None,
                 timeout=60, what="node up")
        assert proc.poll() is None, reader.text()
        want = sros2_policy.expected("/", [""], "raw", optional=False)
        if importlib.util.find_spec("rclpy.type_description_service") is None:
            # Humble's rclpy has no type description service and parameter (Iron+); the policy allowing them is harmless
            want["reply"] = {k: v for k, v in want["reply"].items() if not k.endswith("/get_type_description")}
            want["parameters"] = want["parameters"] - {"start_type_description_service"}
        optional = set(want["optional_publish"])

        def graph():
            return (_names(probe.get_publisher_names_and_types_by_node("dpt_node", "/")),
                    _names(probe.get_subscriber_names_and_types_by_node("dpt_node", "/")),
                    _names(probe.get_service_names_and_types_by_node("dpt_node", "/")),
                    _names(probe.get_client_names_and_types_by_node("dpt_node", "/")))
        wait_for(lambda: set(graph()[2]) >= set(want["reply"]) and set(graph()[0]) >= set(want["publish"])
                 and set(graph()[1]) >= set(want["subscribe"]), timeout=30, what="all interfaces discovered")
        pubs, subs, services, clients = graph()
        assert {k: v for k, v in pubs.items() if k not in optional} == want["publish"]
        assert subs == want["subscribe"]
        assert services == want["reply"]
        assert clients == {}
        client = probe.create_client(ListParameters, "/dpt_node/list_parameters")
        assert client.wait_for_service(timeout_sec=10)
        fut = client.call_async(ListParameters.Request())
        wait_for(fut.done, what="list_parameters")
        assert set(fut.result().result.names) == want["parameters"]
        # and it works: a frame in, inverse depth out
        out = harness.collector(Image, "inverse_depth")
        pub = probe.create_publisher(Image, "image", qos("reliable"))
        wait_for(lambda: pub.get_subscription_count() > 0 and probe.count_publishers("inverse_depth") > 0,
                 what="discovery")
        wait_for(lambda: probe.get_publishers_info_by_topic("/inverse_depth")[0].node_name == "dpt_node"
                 and len(probe.get_subscriptions_info_by_topic("/inverse_depth")) > 0, what="matched")
        for i in range(50):
            pub.publish(make_image(i + 1))
            try:
                wait_for(lambda: len(out) > 0, timeout=0.5)
                break
            except AssertionError:
                continue
        assert out, "no output from the node started with --enclave"
    finally:
        code, _, _ = stop_node(proc)
    log = reader.join()
    assert code == 0 and "Traceback" not in log, log[-2000:]
    record("security", enclave_arg_accepted=True, topics_published=len(pubs), topics_subscribed=len(subs),
           services=len(services), parameters=len(want["parameters"]),
           interface_set_matches_docs=True)


def test_sros2_enforce_without_keys_refuses_to_start(tmp_path):
    env = node_env(DOMAIN + 1, ROS_SECURITY_ENABLE="true", ROS_SECURITY_STRATEGY="Enforce",
                   ROS_SECURITY_KEYSTORE=str(tmp_path / "no_keystore"))
    proc = start_node(DOMAIN + 1, *FAST_ROS_ARGS, "--enclave", ENCLAVE, env=env)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 2, out[-2000:]
    assert "cannot initialise ROS 2" in out and "dpt_node" in out and "Traceback" not in out, out[-2000:]


def test_policy_is_generated_from_the_documented_set():
    text = sros2_policy.POLICY.read_text()
    assert text == sros2_policy.policy_xml(), "docs/sros2/dpt_ros_policy.xml is stale: python -m dpt_ros.tools.sros2_policy"
    root = ET.fromstring(text.split("\n", 1)[1])   # (ElementTree does not take the XML declaration from str)
    assert root.tag == "policy" and root.get("version") == "0.2.0"
    enclave = root.find("enclaves/enclave")
    assert enclave.get("path") == ENCLAVE
    profile = enclave.find("profiles/profile")
    assert (profile.get("ns"), profile.get("node")) == ("/", "dpt_node")
    allowed = {}
    for group in profile:
        (kind, value), = group.attrib.items()
        assert value == "ALLOW"
        allowed.setdefault(kind, set()).update(e.text for e in group)
    want = sros2_policy.expected("/", [""], "raw", optional=True)
    assert allowed == {"subscribe": set(want["subscribe"]), "publish": set(want["publish"]),
                       "reply": set(want["reply"])}
    # the documented parameters are the node's parameter table
    spec = sros2_policy.load()
    assert spec["parameters"]["dpt"] == [p.name for p in params.PARAMETERS]
    # other layouts resolve per camera namespace and transport
    multi = sros2_policy.expected("/robot", ["left", "right"], "compressed")
    assert {"/robot/left/image/compressed", "/robot/right/camera_info"} <= set(multi["subscribe"])
    assert "/robot/dpt_node/set_parameters" in multi["reply"] and "/robot/right/points" in multi["publish"]


def test_policy_tool_command_line(tmp_path, capsys):
    """The options a user gives the tool reach the policy: --enclave, --cameras (comma-separated), --remap
    (a node-name or namespace rule is refused), and --check says whether a file is up to date."""
    out = tmp_path / "policy.xml"
    argv = ["--namespace", "/robot", "--cameras", "left,right", "--enclave", "/robot/dpt", "--out", str(out)]
    assert sros2_policy.main(argv) == 0
    text = out.read_text()
    assert text == sros2_policy.policy_xml("/robot", ["left", "right"], "raw", "/robot/dpt")
    assert '<enclave path="/robot/dpt">' in text and '<profile ns="/robot" node="dpt_node">' in text
    assert "<topic>/robot/left/image</topic>" in text and "<topic>/robot/right/points</topic>" in text
    capsys.readouterr()
    assert sros2_policy.main(argv + ["--check"]) == 0 and "is up to date" in capsys.readouterr().out
    out.write_text(text.replace("/robot/right/points", "/robot/right/pointz"))
    # the remedy is the command that writes that file (it said "run python -m dpt_ros.tools.sros2_policy", which
    # writes the checkout's policy of the documented node, not this one), and running it brings the file up to date
    assert sros2_policy.main(argv + ["--check"]) == 1
    remedy = " ".join(argv)
    assert capsys.readouterr().err == (f"{out} is out of date: write it with: python -m dpt_ros.tools.sros2_policy "
                                       f"{remedy}\n")
    assert sros2_policy.main(remedy.split()) == 0 and sros2_policy.main(["--check", *argv]) == 0
    capsys.readouterr()
    out.unlink()
    assert sros2_policy.main(["--che", *argv]) == 1
    assert capsys.readouterr().err == (f"{out} does not exist: write it with: python -m dpt_ros.tools.sros2_policy "
                                       f"{remedy}\n")
    assert sros2_policy.main(argv) == 0
    for bad, why in ((["--namespace", "my robot"], "--namespace '/my robot': it must not contain characters other"),
                     (["--enclave", "dpt"], "--enclave 'dpt': it must be absolute")):
        with pytest.raises(SystemExit):
            sros2_policy.main(["--out", "-", *bad])
        assert why in capsys.readouterr().err
    assert sros2_policy.main(["--namespace", "robot", "--out", "-"]) == 0   # relative: read as rclpy reads it
    assert "<topic>/robot/camera_info</topic>" in capsys.readouterr().out
    assert sros2_policy.main(["--out", str(out / "policy.xml")]) == 1   # (out is a file; was: "File exists")
    assert capsys.readouterr().err == (f"sros2_policy: cannot write {out / 'policy.xml'}: {out} is a file, so no "
                                       "folder can be made under it; give --out a path that is not under a file\n")
    for rule in ("__ns:=/other", "dpt_node:__node:=renamed", "image", "image:="):
        with pytest.raises(SystemExit) as e:
            sros2_policy.main(["--out", "-", "--remap", rule])
        assert e.value.code == 2 and "is not a topic rule FROM:=TO" in capsys.readouterr().err
    # with an option and no --out, the policy goes to standard output: the checkout's file (the documented node's,
    # which the README hands to create_permission) is never overwritten by another node's
    before = sros2_policy.POLICY.read_text()
    for option in (["--managed"], ["--depth-align"], ["--cameras", "left"]):
        assert sros2_policy.main(option) == 0
        assert capsys.readouterr().out == sros2_policy.policy_xml(
            "/", option[1:] or [""], "raw", "", depth_align=option == ["--depth-align"], managed=option == ["--managed"])
        assert sros2_policy.POLICY.read_text() == before
    with pytest.raises(SystemExit) as e:
        sros2_policy.main(["--managed", "--check"])
    assert e.value.code == 2 and "--check compares with a file: give it as --out FILE" in capsys.readouterr().err


def test_policy_tool_out_a_folder_or_a_binary_file(tmp_path, capsys):
    """--out naming a folder is a usage error saying to name a file (--check: an IsADirectoryError traceback; the
    write: 'cannot write DIR: Is a directory', exit 1); --check of a file that is no UTF-8 text (a binary given by
    mistake) says it is out of date, as of any other content (was: a UnicodeDecodeError traceback)."""
    for check in ([], ["--check"]):
        with pytest.raises(SystemExit) as e:
            sros2_policy.main(["--managed", "--out", str(tmp_path), *check])
        err = capsys.readouterr().err
        assert e.value.code == 2 and err.splitlines()[-1].endswith(
            f" error: --out '{tmp_path}' is a folder; give the policy file, e.g. {tmp_path / 'my_policy.xml'}"), err
    binary = tmp_path / "policy.xml"
    binary.write_bytes(b"\x80\xff not a policy")
    assert sros2_policy.main(["--managed", "--out", str(binary), "--check"]) == 1
    assert capsys.readouterr().err == (f"{binary} is out of date: write it with: python -m dpt_ros.tools.sros2_policy "
                                       f"--managed --out {binary}\n")
    assert sros2_policy.main(["--managed", "--out", str(binary)]) == 0
    assert sros2_policy.main(["--managed", "--out", str(binary), "--check"]) == 0
    assert binary.read_text() == sros2_policy.policy_xml("/", [""], "raw", "", managed=True)


@pytest.mark.parametrize("cameras, why, parameter_check", [
    ("a,a", "cameras lists one camera twice: 'a' and 'a' both publish /a/inverse_depth; list it once", True),
    ("a,/a", "cameras lists one camera twice: 'a' and '/a' both publish /a/inverse_depth; list it once", False),
    ("~/x,/dpt_node/x", "'~/x' and '/dpt_node/x' both publish /dpt_node/x/inverse_depth", False),
    ("1bad,x y", "camera namespace '1bad' is not a valid ROS namespace: names of letters, digits and '_' (not "
                 "starting with a digit)", True),
    ("left,x y", "camera namespace 'x y' is not a valid ROS namespace", True),
    ("left/", "camera namespace 'left/' is not a valid ROS namespace", True),
])
def test_policy_tool_refuses_the_cameras_the_node_refuses(tmp_path, capsys, cameras, why, parameter_check):
    """A camera list dpt_node refuses (its cameras parameter's check; one camera in two spellings, refused at its
    start) is a usage error naming the camera and why, and no policy is written (it used to write one for a node
    that cannot start)."""
    out = tmp_path / "policy.xml"
    with pytest.raises(SystemExit) as e:
        sros2_policy.main(["--cameras", cameras, "--out", str(out)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and f"error: --cameras {cameras!r}: " in err and why in err, err
    assert not out.exists()
    # the node's parameter check refuses the same lists (the others, two spellings of one camera, it refuses at start)
    assert bool(params.validate(params.defaults(), {"cameras": cameras.split(",")})[1]) == parameter_check


def test_policy_tool_command_refuses_a_camera_listed_twice(tmp_path):
    """The reviewer's command line, as a user runs it: exit code 2, a usage line, nothing written."""
    out = tmp_path / "policy.xml"
    r = subprocess.run([sys.executable, "-m", "dpt_ros.tools.sros2_policy", "--cameras", "a,a", "--out", str(out)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "usage:" in r.stderr, r.stderr
    assert "--cameras 'a,a': cameras lists one camera twice" in r.stderr and not out.exists()
    assert r.stdout == ""


def test_policy_tool_takes_the_cameras_the_node_takes(capsys):
    """The node's own namespace (''), relative, absolute and private camera namespaces, a remap that keeps them
    apart: a policy, as before."""
    for argv in (["--cameras", ",left"], ["--cameras", "~/cam,/stereo/left,left"],
                 ["--namespace", "/robot", "--cameras", "left,/left"]):   # /robot/left and /left
        assert sros2_policy.main([*argv, "--out", "-"]) == 0
        assert capsys.readouterr().out.startswith('<?xml version="1.0"')
    with pytest.raises(SystemExit) as e:   # a remap that makes two cameras publish one topic: refused as the node does
        sros2_policy.main(["--cameras", "a,b", "--remap", "b/inverse_depth:=/a/inverse_depth", "--out", "-"])
    assert e.value.code == 2 and "whose inverse_depth outputs are remapped onto one topic, /a/inverse_depth" in \
        capsys.readouterr().err


def test_policy_tool_refuses_remaps_that_put_two_of_the_nodes_topics_on_one(tmp_path, capsys):
    """Remaps the node refuses at start-up for its topics' collision (two outputs on one topic, an output on one of
    its inputs) are a usage error with the node's reason, and no policy is written (it wrote one for a node that
    never starts); one output of several cameras merged onto one topic, which the node takes, gets its policy."""
    out = tmp_path / "policy.xml"
    for argv, why in (
            (["--remap", "depth:=/out", "--remap", "points:=/out"], "topics collide: outputs depth (remapped) and "
             "points (remapped) would both be published on /out: two outputs on one topic; of two types"),
            (["--namespace", "/robot", "--remap", "inverse_depth/colored:=image"], "topics collide: output "
             "inverse_depth/colored (remapped) would be published on /robot/image, which the node subscribes as its "
             "input image: the node would consume its own output"),
            (["--depth-align", "--remap", "depth_reference:=depth"], "input depth_reference (remapped)")):
        with pytest.raises(SystemExit) as e:
            sros2_policy.main([*argv, "--out", str(out)])
        err = capsys.readouterr().err
        assert e.value.code == 2 and "usage:" in err and why in err, err
        assert not out.exists()
    assert sros2_policy.main(["--remap", "depth_reference:=depth", "--out", str(out)]) == 0   # (not subscribed)
    assert sros2_policy.main(["--cameras", "a,b", "--remap", "a/points:=/all", "--remap", "b/points:=/all",
                              "--out", str(out)]) == 0
    assert "<topic>/all</topic>" in out.read_text()


def _sros2_keystore():
    try:
        from sros2 import keystore
    except Exception:   # not installed, or installed without its ament prefix (ImportError / OSError)
        return None
    return keystore


@pytest.mark.skipif(_sros2_keystore() is None, reason="needs sros2 (a ROS 2 installation; not on PyPI)")
@pytest.mark.parametrize("layout", ["default", "robot_left_right_compressed"])
def test_sros2_turns_the_policy_into_dds_permissions_for_exactly_the_interface_set(tmp_path, layout):
    """What `ros2 security create_permission` makes of the policy: sros2 validates it against its schema and
    writes the DDS permissions; those must grant exactly the node's topics and service request/reply topics."""
    from pathlib import Path

    keystore = _sros2_keystore()
    if layout == "default":
        policy, want = Path(sros2_policy.POLICY), sros2_policy.expected("/", [""], "raw", optional=True)
    else:
        policy = tmp_path / "robot.xml"
        policy.write_text(sros2_policy.policy_xml("/robot", ["left", "right"], "compressed"))
        want = sros2_policy.expected("/robot", ["left", "right"], "compressed", optional=True)
    ks = tmp_path / "keystore"
    keystore.create_keystore(ks)
    keystore.create_enclave(ks, ENCLAVE)
    keystore.create_permission(ks, ENCLAVE, policy)
    root = ET.parse(ks / "enclaves" / ENCLAVE.strip("/") / "permissions.xml").getroot()
    grant = root.find("permissions/grant")
    assert grant.get("name") == ENCLAVE and grant.findtext("subject_name") == f"CN={ENCLAVE}"
    published = {t.text for rule in grant.findall("allow_rule") for t in rule.findall("publish/topics/topic")}
    subscribed = {t.text for rule in grant.findall("allow_rule") for t in rule.findall("subscribe/topics/topic")}
    graph = {"ros_discovery_info"}   # sros2 adds the ROS graph topic to every enclave
    assert published == {"rt" + t for t in want["publish"]} | {f"rr{s}Reply" for s in want["reply"]} | graph
    assert subscribed == {"rt" + t for t in want["subscribe"]} | {f"rq{s}Request" for s in want["reply"]} | graph


def test_no_world_writable_files_under_umask_000(harness, tmp_path):
    home, cwd = tmp_path / "home", tmp_path / "cwd"
    home.mkdir()
    cwd.mkdir()
    env = node_env(DOMAIN, HOME=str(home), ROS_HOME=str(home / ".ros"))
    env.pop("ROS_LOG_DIR", None)
    proc = subprocess.Popen([sys.executable, "-m", "dpt_ros.ros.node", "--ros-args", *FAST_ROS_ARGS,
                             "-p", "lazy:=false"], cwd=cwd, env={**env, "PYTHONPATH": str(ROOT)},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=lambda: os.umask(0))
    reader = LineReader(proc)
    try:
        out = harness.collector(Image, "inverse_depth")
        pub = harness.probe.create_publisher(Image, "image", qos("reliable"))
        wait_for(lambda: pub.get_subscription_count() > 0 or proc.poll() is not None, timeout=60, what="node up")
        assert proc.poll() is None, reader.text()
        publish_until(pub, make_image, out, n=3)   # (frames processed: whatever the node writes as it runs, written)
    finally:
        code, _, _ = stop_node(proc)
    reader.join()
    created, writable = [], []
    for base in (home, cwd):
        for dirpath, dirnames, filenames in os.walk(base):
            for name in dirnames + filenames:
                p = os.path.join(dirpath, name)
                created.append(os.path.relpath(p, tmp_path))
                if os.lstat(p).st_mode & stat.S_IWOTH:
                    writable.append(os.path.relpath(p, tmp_path))
    record("security", files_created_by_node=len(created), world_writable_files_under_umask_000=len(writable))
    assert code == 0
    assert any("log" in c for c in created), created      # the ROS log file was written ...
    assert not writable, writable                          # ... and nothing is world-writable
    assert not os.listdir(cwd), os.listdir(cwd)            # nothing dropped in the working directory


def test_demo_writes_no_world_writable_files_under_umask_000(tmp_path):
    """``make demo`` (sample camera -> dpt_node -> demo_out/) started with umask 000."""
    home, cwd, out = tmp_path / "home", tmp_path / "cwd", tmp_path / "demo_out"
    home.mkdir()
    cwd.mkdir()
    env = node_env(DOMAIN + 2, HOME=str(home), ROS_HOME=str(home / ".ros"))
    env.pop("ROS_LOG_DIR", None)
    res = subprocess.run([sys.executable, "-m", "dpt_ros.tools.demo", "--frames", "2", "--out", str(out),
                          "--variant", "dpt_tiny", "--weights", "random", "--input-size", "64", "--device", "cpu",
                          "--width", "96", "--height", "64", "--rate", "10", "--timeout", "120"],
                         cwd=cwd, env=env, capture_output=True, text=True, timeout=240,
                         preexec_fn=lambda: os.umask(0))
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    written, writable = [], []
    for base in (home, cwd, out):
        for dirpath, dirnames, filenames in os.walk(base):
            for name in dirnames + filenames:
                p = os.path.join(dirpath, name)
                written.append(p)
                if os.lstat(p).st_mode & stat.S_IWOTH:
                    writable.append(os.path.relpath(p, tmp_path))
    assert any(p.endswith(".png") for p in written), written
    record("security", demo_files_written=len(written), demo_world_writable_files_under_umask_000=len(writable))
    assert not writable, writable
