"""sros2_policy reads the node's own parameters (--params-file, --param) and allows exactly the topics a node started
with them has: camera_info.url (no camera_info subscription), publish.compressed false (no compressed copies),
use_sim_time (/clock), start_type_description_service false, cameras, image_transport and depth.align, compared with
the publishers, subscriptions and services of a real node started with the same file (rcl parsing it). It described
the node with its parameter defaults: it refused a configuration the node takes (-r depth/camera_info:=camera_info with
a calibration file) and allowed topics the node never has."""
from __future__ import annotations

import importlib.util
import xml.etree.ElementTree as ET

import pytest
import rclpy
import yaml

from dpt_ros.ros import params, presets, topics
from dpt_ros.ros.testing import OST_YAML
from dpt_ros.tools import sros2_policy

DOMAIN = 83
LABEL_INFO = importlib.util.find_spec("vision_msgs") is not None   # the node publishes label_info only then


def _graph(node, namespace: str) -> dict[str, set[str]]:
    return {"publish": {t for t, _ in node.get_publisher_names_and_types_by_node("dpt_node", namespace)},
            "subscribe": {t for t, _ in node.get_subscriber_names_and_types_by_node("dpt_node", namespace)},
            "reply": {s for s, _ in node.get_service_names_and_types_by_node("dpt_node", namespace)}}


def _policy(capsys, argv: list[str]) -> dict[str, set[str]]:
    """What the tool's policy for ``argv`` allows, by kind (subscribe, publish, reply)."""
    assert sros2_policy.main([*argv, "--out", "-"]) == 0
    root = ET.fromstring(capsys.readouterr().out.split("\n", 1)[1])   # (no XML declaration from a str)
    allowed: dict[str, set[str]] = {}
    for group in root.find("enclaves/enclave/profiles/profile"):
        (kind, value), = group.attrib.items()
        assert value == "ALLOW"
        allowed[kind] = {e.text for e in group}
    if not LABEL_INFO:   # (allowed for a node where vision_msgs is installed)
        allowed["publish"] = {t for t in allowed["publish"] if not t.endswith("/label_info")}
    return allowed


def test_calibration_file_no_compressed_copies_and_sim_time(harness, tmp_path, capsys):
    """The reviewer's case: a calibration file (camera_info.url) with -r depth/camera_info:=camera_info. The node
    starts (it subscribes no camera_info); the tool refused (its policy assumed camera_info subscribed, so the remap
    put an output on an input). With the node's parameters file it allows exactly the node's topics: no
    camera_info subscription, no compressed copies, /clock for use_sim_time."""
    (tmp_path / "ost.yaml").write_text(OST_YAML)
    file = tmp_path / "params.yaml"
    file.write_text(f"/**:\n  ros__parameters:\n    camera_info:\n      url: file://{tmp_path}/ost.yaml\n"
                    "    publish:\n      compressed: false\n    use_sim_time: true\n")
    rule = "depth/camera_info:=camera_info"
    node = harness.start_node(cli_args=["--ros-args", "--params-file", str(file), "-r", rule])
    live = _graph(node, "/")
    assert live["subscribe"] == {"/image", "/clock"}
    assert "/camera_info" in live["publish"] and not any("compress" in t for t in live["publish"])
    assert _policy(capsys, ["--params-file", str(file), "--remap", rule]) == live
    # the same values as -p (--param): the same policy
    url = f"camera_info.url:=file://{tmp_path}/ost.yaml"
    assert _policy(capsys, ["--param", url, "--param", "publish.compressed:=false", "--param", "use_sim_time:=true",
                            "--remap", rule]) == live
    # without them the tool describes another node, which the node's rule refuses with this remap
    with pytest.raises(SystemExit) as e:
        sros2_policy.main(["--remap", rule, "--out", "-"])
    assert e.value.code == 2 and "which the node subscribes as its input camera_info" in capsys.readouterr().err


def test_remaps_of_service_names_move_the_services_in_the_policy_as_rcl_does(harness, capsys):
    """rcl applies -r rules to service names as to topics (the parameter services, ~/get_type_description and the
    lifecycle services alike): the policy resolved the services without the remaps, so that a node started with
    -r ~/get_parameters:=... was refused its own service under Enforce and the policy allowed one it never had."""
    rules = ["~/get_parameters:=/other/get_parameters", "dpt_node/list_parameters:=list",
             "other_node:~/describe_parameters:=/not_this_node", "~/get_type_description:=/type_description",
             "~/get_state:=/state"]
    remaps = [x for rule in rules for x in ("--remap", rule)]
    node = harness.start_node(namespace="robot", cli_args=["--ros-args", *[x for r in rules for x in ("-r", r)]])
    live = _graph(node, "/robot")
    assert {"/other/get_parameters", "/robot/list", "/type_description", "/robot/dpt_node/describe_parameters"} \
        <= live["reply"] and "/robot/dpt_node/get_parameters" not in live["reply"]
    assert _policy(capsys, ["--namespace", "/robot", *remaps]) == live
    managed = harness.start_node(namespace="lifecycle", managed=True,
                                 cli_args=["--ros-args", *[x for r in rules for x in ("-r", r)]])
    live = _graph(managed, "/lifecycle")["reply"]
    assert {"/state", "/lifecycle/dpt_node/change_state"} <= live
    assert _policy(capsys, ["--namespace", "/lifecycle", "--managed", *remaps])["reply"] == live


# two files as a launch file passes them: a section named again in a later file keeps its first place (here /**, so
# the node's own sections after it win over its later value), wildcards (/**/dpt_node, /robot/*; /* is one name only)
FIRST = """/**:
  ros__parameters:
    image_transport: compressed
    publish: {compressed: true}
robot:
  dpt_node:
    ros__parameters:
      cameras: [left, right]
      publish: {compressed: false}
/other_node:
  ros__parameters: {cameras: [x], depth.align: false}
"""
SECOND = """/**/dpt_node:
  ros__parameters:
    depth: {align: true}
    start_type_description_service: false
/**:
  ros__parameters:
    image_transport: raw
/robot/*:
  ros__parameters:
    camera_info.url: file://%s
/*:
  ros__parameters:
    cameras: [y]
"""   # (/* is /dpt_node, not /robot/dpt_node; a plain y is a bool to rcl, as yes: cameras [true])


def _files(tmp_path) -> list[tuple[str, str]]:
    (tmp_path / "ost.yaml").write_text(OST_YAML)
    (tmp_path / "first.yaml").write_text(FIRST)
    (tmp_path / "second.yaml").write_text(SECOND % (tmp_path / "ost.yaml"))
    return [("file", str(tmp_path / "first.yaml")), ("file", str(tmp_path / "second.yaml"))]


def test_start_values_are_the_values_rclpy_gives_the_node(harness, tmp_path):
    """params.start_values picks the values rclpy (rcl's parser) gives the node from the same files and -p rules, for
    the node in three namespaces and the sources in three orders."""
    from rclpy.node import Node

    files = _files(tmp_path)
    for namespace in ("robot", "", "a/b"):
        for sources in (files, [files[1], ("param", "image_transport:=compressed"), files[0]],
                        [("param", "publish.compressed:=false"), files[0], ("param", "cameras:=[p, q]")]):
            args = [x for kind, v in sources for x in (("--params-file", v) if kind == "file" else ("-p", v))]
            node = Node("dpt_node", namespace=namespace, context=harness.context, cli_args=["--ros-args", *args],
                        automatically_declare_parameters_from_overrides=True)
            try:
                got = {name: p.value for name, p in node.get_parameters_by_prefix("").items()}
                want = params.start_values(sources, node.get_fully_qualified_name())
            finally:
                node.destroy_node()
            for name in ("use_sim_time", "start_type_description_service"):   # (rclpy's, declared anyway)
                if name not in want:
                    got.pop(name)
            assert {k: list(v) if isinstance(v, (list, tuple)) else v for k, v in got.items()} == want, \
                (namespace, sources)
    assert params.start_values(files, "/robot/dpt_node") == {
        "image_transport": "raw", "publish.compressed": False, "cameras": ["left", "right"], "depth.align": True,
        "start_type_description_service": False, "camera_info.url": f"file://{tmp_path / 'ost.yaml'}"}


def test_namespaced_sections_wildcards_and_their_order(harness, tmp_path, capsys):
    """The node in /robot started with the two files (two cameras, depth.align, a calibration file, no compressed
    copies, no type description service): the policy for the same files allows exactly its topics and services; the
    tool's own options apply over the files, as -p after them."""
    files = [x for _, path in _files(tmp_path) for x in ("--params-file", path)]
    node = harness.start_node(namespace="robot", cli_args=["--ros-args", *files])
    live = _graph(node, "/robot")
    assert live["subscribe"] == {f"/robot/{c}/{n}" for c in ("left", "right") for n in ("image", "depth_reference")}
    assert "/robot/dpt_node/get_type_description" not in live["reply"] and "/robot/left/points" in live["publish"]
    assert not any("compress" in t for t in live["publish"])
    assert _policy(capsys, ["--namespace", "/robot", *files]) == live
    policy = _policy(capsys, ["--namespace", "/robot", *files, "--transport", "compressed", "--cameras", "left"])
    assert policy["subscribe"] == {"/robot/left/image/compressed", "/robot/left/depth_reference"}
    assert not any(t.startswith("/robot/right/") for t in policy["publish"])


def test_a_params_file_with_no_section_of_the_node_is_warned_of(tmp_path, capsys):
    """A file none of whose sections is the node's gives it nothing (rclpy's rule): the policy was silently that of
    the parameters' defaults. It is said, as the node says it; the policy is still written (rc 0)."""
    plain = tmp_path / "plain.yaml"   # dpt_node: is /dpt_node, not the node in /robot
    plain.write_text("dpt_node:\n  ros__parameters:\n    publish.compressed: false\n")
    every = tmp_path / "every.yaml"
    every.write_text("/**:\n  ros__parameters:\n    depth.align: true\n")
    assert sros2_policy.main(["--namespace", "/robot", "--params-file", str(plain), "--params-file", str(every),
                              "--out", "-"]) == 0
    out, err = capsys.readouterr()
    assert "<topic>/robot/depth_reference</topic>" in out and "<topic>/robot/depth/compressedDepth</topic>" in out
    assert f"sros2_policy: warning: parameters file {plain} gives this node (/robot/dpt_node) nothing, all its values " \
           "are ignored: its section /dpt_node names another node" in err, err
    assert str(every) not in err and err.count("warning") == 1, err


def test_section_names_are_read_as_rcl_reads_them(harness, tmp_path):
    """A section that is no valid node name ('/dpt.node', '//dpt_node', '/rob*/dpt_node') makes rcl refuse the whole
    file, and the node does not start; start_values took it (with '.' as a regex wildcard, '/dpt.node' even applied to
    /dpt_node), so sros2_policy wrote a policy for it. Such a file is now refused as rcl refuses it; and a namespace
    key ending in '/' (/robot/: {dpt_node: ...}) is /robot/dpt_node, as rcl joins it (it was /robot//dpt_node,
    matching nothing)."""
    from rclpy.context import Context
    from rclpy.node import Node

    path = tmp_path / "p.yaml"
    for section in ("/dpt.node", "//dpt_node", "/rob*/dpt_node", "/1robot/dpt_node", "robot: {/dpt_node"):
        path.write_text(f"{section}: {{ros__parameters: {{depth.align: true}}}}{'}' * section.count('{')}\n")
        context = Context()
        with pytest.raises(Exception, match="Couldn't parse params file"):
            rclpy.init(args=["x", "--ros-args", "--params-file", str(path)], context=context)
        with pytest.raises(ValueError, match="is no valid node name"):
            params.start_values([("file", str(path))], "/dpt_node")
        with pytest.raises(SystemExit) as e:
            sros2_policy.main(["--params-file", str(path), "--out", "-"])
        assert e.value.code == 2
    path.write_text("/robot/:\n  dpt_node:\n    ros__parameters:\n      depth.align: true\n")
    node = Node("dpt_node", namespace="robot", context=harness.context,
                cli_args=["--ros-args", "--params-file", str(path)], automatically_declare_parameters_from_overrides=True)
    try:
        assert node.get_parameter("depth.align").value is True
    finally:
        node.destroy_node()
    assert params.start_values([("file", str(path))], "/robot/dpt_node") == {"depth.align": True}


def test_the_warning_of_a_params_file_with_no_section_of_the_node_says_why(tmp_path):
    """The warning's hint fits the section it is about: only a plain dpt_node: (/dpt_node) is said to be from the root
    namespace; a wildcard that stands for too few or too many names (/*/dpt_node for /a/b/dpt_node) is said to be
    one (it was said to be 'dpt_node: means /dpt_node'), as is the node's name in another namespace."""
    def warning(section: str, node: str) -> str:
        path = tmp_path / "p.yaml"
        path.write_text(f"{section}:\n  ros__parameters:\n    depth.align: true\n")
        return params.params_file_unused(str(path), node)

    assert warning("dpt_node", "/robot/dpt_node").endswith(
        "its section /dpt_node names another node (a node name in a parameters file is from the root namespace: "
        "dpt_node: means /dpt_node, not this node in /robot); name the section /robot/dpt_node, or /** for every node")
    for section in ("/*/dpt_node", "/a/*"):
        assert warning(section, "/a/b/dpt_node").endswith(
            f"its section {section} names another node (/* stands for exactly one name, /** for any number of "
            f"them); name the section /a/b/dpt_node, or /** for every node")
    assert warning("/other/dpt_node", "/robot/dpt_node").endswith(
        "its section /other/dpt_node names another node (this node is in the namespace /robot); name the section "
        "/robot/dpt_node, or /** for every node")
    assert warning("/robot/dpt_nod", "/robot/dpt_node").endswith("names another node (misspelt?); name the section "
                                                                "/robot/dpt_node, or /** for every node")
    assert warning("/a/**", "/a/b/dpt_node") is None


def test_parameters_the_node_refuses_are_refused(tmp_path, capsys):
    """A value of the wrong type, an unreadable file or one that is no parameters file: exit code 2 with why, and no
    policy (it would secure a node that never starts)."""
    bad = tmp_path / "bad.yaml"
    for text, why in (("/**:\n  ros__parameters:\n    publish.compressed: 'no'\n",
                       "parameter publish.compressed must be of type bool, got str"),
                      ("/**:\n  ros__parameters:\n    use_sim_time: 1\n",
                       "parameter use_sim_time must be of type bool, got int"),
                      ("- a\n- b\n", "not a ROS 2 parameters file"),
                      ("ros__parameters:\n  cameras: [a]\n", "ros__parameters without a node name above it"),
                      ("/**: {ros__parameters: [a]}\n", "ros__parameters must be a mapping")):
        bad.write_text(text)
        with pytest.raises(SystemExit) as e:
            sros2_policy.main(["--params-file", str(bad), "--out", "-"])
        err = capsys.readouterr().err
        assert e.value.code == 2 and why in err, err
    binary = tmp_path / "weights.pt"   # (was: "error: 'utf-8' codec can't decode byte 0x80 in position 0: ...")
    binary.write_bytes(b"\x80\x02\xd8 not text")
    with pytest.raises(SystemExit) as e:
        sros2_policy.main(["--params-file", str(binary), "--out", "-"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.splitlines()[-1].endswith(
        f" error: parameters file {binary}: not a text file (no UTF-8 YAML); give the parameters YAML file "
        "(/**: {ros__parameters: ...})"), err
    for argv, why in ((["--params-file", str(tmp_path / "missing.yaml")], "missing.yaml: No such file or directory"),
                      (["--param", "image_transport:=jpeg"], "image_transport='jpeg' is not one of raw, compressed"),
                      (["--param", "publish.compressed"], "is not NAME:=VALUE"),
                      (["--param", "cameras:=[a, /a]"], "cameras ['a', '/a']: cameras lists one camera twice")):
        with pytest.raises(SystemExit) as e:
            sros2_policy.main([*argv, "--out", "-"])
        err = capsys.readouterr().err
        assert e.value.code == 2 and why in err, err


def test_the_documented_camera_topics_are_the_nodes_catalogue():
    """docs/sros2/dpt_ros_interfaces.yaml lists the camera topics the tool takes from the node's rule
    (topics.endpoints): names and types agree, so that the documented set and the policy cannot drift apart."""
    spec = sros2_policy.load()["camera_topics"]
    documented = {n: t for group in spec.values() for n, t in group.items()}
    s = params.defaults().replace({"depth.align": True})
    every = set()
    for transport in ("raw", "compressed"):
        for _, _, name, _ in topics.endpoints(s.replace({"image_transport": transport}), str, str, label_info=True):
            every.add(name)
    documented["image/compressed"] = "sensor_msgs/msg/CompressedImage"   # (a comment there: image_transport)
    assert {n: topics.type_name(n) for n in every} == documented


def test_the_policy_of_a_launch_files_node_is_that_nodes(harness, tmp_path, capsys):
    """sros2_policy --launch FILE NAME:=VALUE... describes the node a launch file of this package starts with those
    ``ros2 launch`` arguments: its namespace, remaps (image:=), parameter files (the task's and the variant's
    presets, config_file) and the arguments' values (camera_info_url, use_sim_time, depth_reference), which
    launch_ros hands over as one more file; dpt_lifecycle_node for managed:=true. Compared with a real node given
    what launch_ros gives it. Before, a launch user had to work out from the launch file which argument is a remap,
    which a parameter, and which preset files apply."""
    (tmp_path / "ost.yaml").write_text(OST_YAML)
    (tmp_path / "mine.yaml").write_text("/**:\n  ros__parameters:\n    publish: {compressed: false}\n")
    launch = ["depth.launch.py", "variant:=dpt_tiny", "namespace:=robot", "image:=/camera/image_raw",
              f"camera_info_url:=file://{tmp_path}/ost.yaml", f"config_file:={tmp_path}/mine.yaml",
              "use_sim_time:=true"]
    values = dict(rule.split(":=", 1) for rule in launch[1:])
    *files, overrides = presets.node_parameters("depth", values)
    (tmp_path / "launch_params.yaml").write_text(yaml.safe_dump({"/**": {"ros__parameters": overrides}}))
    cli = ["--ros-args", *[x for f in [*files, tmp_path / "launch_params.yaml"] for x in ("--params-file", str(f))],
           *[x for src, dst in presets.remappings("depth", values) for x in ("-r", f"{src}:={dst}")]]
    live = _graph(harness.start_node(namespace="robot", cli_args=cli), "/robot")
    assert live["subscribe"] == {"/camera/image_raw", "/clock"}   # (a calibration file: no camera_info topic)
    assert "/robot/depth" in live["publish"] and not any("compress" in t for t in live["publish"])
    assert _policy(capsys, ["--launch", *launch]) == live
    # managed:=true and depth_reference: the lifecycle services, depth.align's topic, remapped
    # managed:=true, depth_reference and enclave: the lifecycle services, depth.align's topic remapped, the enclave
    launched = ["--launch", "dpt.launch.py", "managed:=true", "depth_reference:=/cam/depth", "namespace:=/lc",
                "enclave:=/lc/dpt"]
    assert sros2_policy.main([*launched, "--out", "-"]) == 0
    text = capsys.readouterr().out
    assert '<enclave path="/lc/dpt">' in text and "<topic>/cam/depth</topic>" in text \
        and "<service>/lc/dpt_node/change_state</service>" in text
    assert sros2_policy.main(["--namespace", "/lc", "--managed", "--remap", "depth_reference:=/cam/depth",
                              *[x for name in ("dpt", "dpt_hybrid", "dpt_hybrid_ade20k")
                                for x in ("--params-file", str(presets.config_path(name)))],
                              "--param", "depth.align:=true", "--enclave", "/lc/dpt", "--out", "-"]) == 0
    assert capsys.readouterr().out == text
    for argv, why in ((["--launch", "depth.launch.py", "--namespace", "/x", "--enclave", "/x"],
                       "from the launch file and its arguments: leave out --namespace, --enclave"),
                      (["--launch", "depth.launch.py", "resoltion:=512"], "unknown launch argument(s) ['resoltion']"),
                      (["--launch", "depth.launch.py", "variant:=dpt_large_ade20k"],
                       "variant:='dpt_large_ade20k' is not one of dpt_base"),
                      (["--launch", "depth.launch.py", "namespace:=/a/"], "namespace:= '/a/': it must not end"),
                      (["--launch", "camera.launch.py"], "not a launch file of dpt_ros")):
        with pytest.raises(SystemExit) as e:
            sros2_policy.main([*argv, "--out", "-"])
        err = capsys.readouterr().err
        assert e.value.code == 2 and why in err, err


def test_a_parameter_the_node_does_not_have_is_warned_of(tmp_path, capsys):
    """A misspelt name (publish.compresed:=false) decides no topic: the policy was silently that of the default (the
    compressed copies allowed), where the node warns of the name. Said with the closest real name; rclpy's own
    parameters and a renamed one are no such name. The policy is still written (rc 0)."""
    file = tmp_path / "p.yaml"
    file.write_text("/**:\n  ros__parameters:\n    use_sim_time: false\n    colormap.range: fixed\n"
                    "    start_type_description_service: true\n")
    assert sros2_policy.main(["--param", "publish.compresed:=false", "--params-file", str(file), "--out", "-"]) == 0
    out, err = capsys.readouterr()
    assert "<topic>/depth/compressedDepth</topic>" in out
    assert err.splitlines() == [
        "sros2_policy: warning: unknown parameter 'publish.compresed' ignored: did you mean 'publish.compressed'? "
        "`ros2 param list` or the README's parameter table lists the ones this node has; this policy is made without "
        "it"], err


def test_an_out_file_that_cannot_be_written_is_said_as_a_file(tmp_path):
    """--out names the file the policy is written to: one naming a file it may not write was said to be 'a file, not a
    folder; give --out a folder', wrong for this option. It is named with its owner and mode (the error as the kernel
    gives it, EACCES, built here: root, whom tests may run as, is let write it)."""
    import errno
    import os
    import pwd
    from pathlib import Path

    from dpt_ros.tools import output_folder_error

    kept = tmp_path / "policy.xml"
    kept.write_text("<policy/>")
    kept.chmod(0o444)
    user = pwd.getpwuid(os.geteuid()).pw_name
    reason = output_folder_error(kept, PermissionError(errno.EACCES, "Permission denied", str(kept)), file=True)
    assert reason == (f"no permission to write {kept} (owner {user}, -r--r--r--; this tool runs as {user}); give --out "
                      f"a path elsewhere, e.g. under your home folder ({Path.home()})"), reason
    # a folder's --out (demo, predict) naming a file is still said to be one
    assert output_folder_error(kept, FileExistsError(errno.EEXIST, "File exists", str(kept))).startswith(
        f"{kept} is a file, not a folder; give --out a folder")


def test_an_out_file_in_a_folder_of_the_kernels_is_refused_before_it_is_made(capsys):
    """--out /sys/fs/cgroup/x/policy.xml: as root, the folder was made (a tmpfs under /sys here; in a cgroup mount, a
    control group) and the policy written into it. It is refused before anything is made, as the other tools' --out
    is, exit status 1."""
    import os
    from pathlib import Path

    from dpt_ros.tools import kernel_folder, refuse_kernel_folder

    if not os.path.isdir("/sys/fs/cgroup"):
        pytest.skip("needs Linux's /sys/fs/cgroup")
    folder = Path("/sys/fs/cgroup/dpt_ros_policy")
    with pytest.raises(PermissionError):   # (checked first: a tool that made the folder is not run)
        refuse_kernel_folder(folder)
    out = folder / "policy.xml"
    try:
        assert sros2_policy.main(["--out", str(out)]) == 1
    finally:
        made = folder.is_dir()
        if made:   # (not left behind)
            out.unlink(missing_ok=True)
            folder.rmdir()
    assert not made
    assert capsys.readouterr().err == (f"sros2_policy: cannot write {out}: {kernel_folder(folder)}, where no folder or "
                                       f"file of yours belongs; give --out a path elsewhere, e.g. under your home "
                                       f"folder ({Path.home()})\n")


def test_a_full_disk_is_said_with_what_to_do(capsys, tmp_path):
    """The policy written where no space is left (here a link to /dev/full, which refuses every write with ENOSPC, as a
    full disk does): 'cannot write FILE: No space left on device' said neither where nor what to do. It names the file
    system and says to free space or give --out another one, exit status 1, no traceback."""
    from dpt_ros.tools import _file_system

    out = tmp_path / "policy.xml"
    out.symlink_to("/dev/full")
    assert sros2_policy.main(["--out", str(out)]) == 1
    fs_type, mount = _file_system(tmp_path)
    assert capsys.readouterr().err == (
        f"sros2_policy: cannot write {out}: the file system of {tmp_path} is full (No space left on device; {fs_type} "
        f"mounted at {mount}): free some space on it, or give --out a path on another file system\n")


def test_a_policy_write_that_fails_keeps_the_earlier_policy_whole(capsys, tmp_path, file_size_limit):
    """--out was written with Path.write_text, which empties the file first: a write that failed part-way (a disk that
    filled up meanwhile; here for real, the file size limit below the policy's size: EFBIG) left the earlier policy,
    the one the enclave's permissions are made from, cut short. It is written beside it and renamed over it: the
    earlier policy stays as it was, no temporary is left, exit status 1 with the reason."""
    out = tmp_path / "policy.xml"
    earlier = "<policy/>\n" * 10
    out.write_text(earlier)
    with file_size_limit(len(earlier)):
        assert sros2_policy.main(["--out", str(out)]) == 1
    assert out.read_text() == earlier and sorted(p.name for p in tmp_path.iterdir()) == ["policy.xml"]
    assert capsys.readouterr().err == (
        f"sros2_policy: cannot write {out}: the file is larger than this process's file size limit, {len(earlier)} "
        "bytes (File too large; ulimit -f 0 in the shell that started it): raise it (ulimit -f unlimited)\n")
    assert sros2_policy.main(["--out", str(out)]) == 0 and out.read_text().startswith("<")
    assert out.read_text() != earlier and sorted(p.name for p in tmp_path.iterdir()) == ["policy.xml"]
