"""SROS2 access-control policy of dpt_node, generated from its documented interface set.

``docs/sros2/dpt_ros_interfaces.yaml`` lists every topic, service and parameter the node has; this
tool resolves those names for a namespace / camera list / transport and writes the SROS2 policy
(``<policy version="0.2.0">``, one enclave, one profile) that allows exactly them::

    python -m dpt_ros.tools.sros2_policy                      # writes docs/sros2/dpt_ros_policy.xml
    python -m dpt_ros.tools.sros2_policy --check              # exit 1 if that file is out of date
    python -m dpt_ros.tools.sros2_policy --namespace /front --cameras left,right --out my_policy.xml
    python -m dpt_ros.tools.sros2_policy --remap image:=/camera/image_raw --out -   # to standard output
    python -m dpt_ros.tools.sros2_policy --managed > lifecycle_policy.xml   # + dpt_lifecycle_node's services
    (with any option, the policy goes to standard output unless --out is given: the checkout's file stays the
    documented node's)

Then, with the ``sros2`` package of a ROS install::

    ros2 security create_keystore ~/dpt_keystore
    ros2 security create_permission ~/dpt_keystore /dpt_ros/dpt_node docs/sros2/dpt_ros_policy.xml
    # (or: ros2 security generate_artifacts -k ~/dpt_keystore -p docs/sros2/dpt_ros_policy.xml)
    export ROS_SECURITY_KEYSTORE=~/dpt_keystore ROS_SECURITY_ENABLE=true ROS_SECURITY_STRATEGY=Enforce
    ros2 run dpt_ros dpt_node --ros-args --enclave /dpt_ros/dpt_node -p depth.weights:=...
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Iterable
from xml.sax.saxutils import escape

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHECKOUT = ROOT / "docs" / "sros2"   # a source checkout; an install has share/dpt_ros/sros2 (setup.py)


def _sros2_folder() -> Path:
    """docs/sros2 of a source checkout, else the installed share/dpt_ros/sros2."""
    if CHECKOUT.is_dir():
        return CHECKOUT
    candidates = []
    try:
        from ament_index_python.packages import get_package_share_directory  # noqa: PLC0415

        candidates.append(Path(get_package_share_directory("dpt_ros")) / "sros2")
    except Exception:  # noqa: BLE001 - not a ROS install, or the package is not in the ament index
        pass
    # <prefix>/lib/pythonX.Y/site-packages -> <prefix>/share/dpt_ros (colcon, pip --prefix); pip --target: beside it
    candidates += [d / "share" / "dpt_ros" / "sros2" for d in (ROOT, *ROOT.parents, Path(sys.prefix))]
    for folder in candidates:
        if (folder / "dpt_ros_interfaces.yaml").is_file():
            return folder
    return CHECKOUT


INTERFACES = _sros2_folder() / "dpt_ros_interfaces.yaml"
POLICY = _sros2_folder() / "dpt_ros_policy.xml"


def load(path: Path = INTERFACES) -> dict:
    try:
        with open(path) as f:
            return yaml.safe_load(f)
    except FileNotFoundError:
        raise SystemExit(f"sros2_policy: {path} not found: run it from a dpt_ros checkout or an install that "
                         f"has share/dpt_ros/sros2 (colcon build, pip install)") from None


def _join(*parts: str) -> str:
    return "/" + "/".join(p.strip("/") for p in parts if p.strip("/"))


def resolve(name: str, namespace: str, node: str) -> str:
    """A ROS name as rcl resolves it for ``node`` in ``namespace`` (absolute, ``~/``, relative)."""
    if name.startswith("/"):
        return name
    if name.startswith("~"):
        return _join(namespace, node, name[1:])
    return _join(namespace, name)


def parse_remaps(rules: Iterable[str]) -> list[tuple[str, str]]:
    """``from:=to`` topic remapping rules as given to ``--ros-args -r``, also ``node_name:from:=to`` (a rule for
    one node only); the node-name and namespace rules (``__node:=``, ``__ns:=``) are refused."""
    out = []
    for rule in rules:
        src, sep, dst = rule.partition(":=")
        if not sep or not src or not dst or src.split(":")[-1].startswith("__"):
            raise ValueError(f"remap {rule!r} is not a topic rule FROM:=TO (e.g. image:=/camera/image_raw)")
        out.append((src, dst))
    return out


def _remapped(fqn: str, remaps: list[tuple[str, str]], namespace: str, node: str) -> str:
    """rcl's rule: the first rule whose FROM, resolved in the node's namespace, equals the name wins; a rule
    ``other_node:from:=to`` is for another node and skipped."""
    for src, dst in remaps:
        target, sep, name = src.rpartition(":")
        if sep and target != node:
            continue
        if resolve(name, namespace, node) == fqn:
            return resolve(dst, namespace, node)
    return fqn


def expected(namespace: str = "/", cameras: Iterable[str] = ("",), transport: str = "raw",
             optional: bool = True, path: Path = INTERFACES, remaps: Iterable[tuple[str, str]] = (),
             depth_align: bool = False, managed: bool = False) -> dict:
    """The resolved interface set: ``{"publish": {name: type}, "subscribe": ..., "reply": ...,
    "parameters": set, "optional_publish": {name: type}}``. ``remaps``: ``(from, to)`` topic rules as
    the node was started with (``-r from:=to``); ``depth_align``: the node runs with ``depth.align``;
    ``managed``: it is ``dpt_lifecycle_node`` (the lifecycle services and transition_event too)."""
    from dpt_ros.ros import topics  # noqa: PLC0415

    spec = load(path)
    node = spec["node"]
    remaps = list(remaps)
    out = {"publish": {}, "subscribe": {}, "reply": {}, "optional_publish": {}}

    def topic(name: str, base: str) -> str:
        return _remapped(resolve(name, base, node), remaps, namespace, node)

    def output(name: str, base: str) -> str:
        """The node's rule for a compressed copy (image_transport 6's): its image's topic, remaps applied, + the
        transport's suffix, unless a rule remaps the copy's own name (:func:`dpt_ros.ros.topics.output_topic`)."""
        return topic(topics.output_topic("", name, lambda n: topic(n, base), lambda n: resolve(n, base, node)), base)

    for cam in cameras:
        base = resolve(cam, namespace, node)   # a camera namespace may be relative, absolute or private (~/)
        for name, kind in spec["camera_topics"]["subscribe"].items():
            if name == "image" and transport == "compressed":   # the node's (image_transport's) rule
                out["subscribe"][topic(name, base).rstrip("/") + "/compressed"] = "sensor_msgs/msg/CompressedImage"
                continue
            out["subscribe"][topic(name, base)] = kind
        for name, kind in (spec["camera_topics"]["subscribe_with_depth_align"].items() if depth_align else ()):
            out["subscribe"][topic(name, base)] = kind
        for name, kind in spec["camera_topics"]["publish"].items():
            out["publish"][output(name, base)] = kind
        for name, kind in spec["camera_topics"].get("publish_optional", {}).items():
            out["optional_publish"][output(name, base)] = kind
    for name, kind in spec["node_topics"]["publish"].items():
        out["publish"][topic(name, namespace)] = kind
    for name, kind in spec["services"]["reply"].items():
        out["reply"][resolve(name, namespace, node)] = kind
    for name, kind in (spec["managed"]["publish"].items() if managed else ()):
        out["publish"][topic(name, namespace)] = kind
    for name, kind in (spec["managed"]["reply"].items() if managed else ()):
        out["reply"][resolve(name, namespace, node)] = kind
    if optional:
        out["publish"].update(out["optional_publish"])
    out["parameters"] = set(spec["parameters"]["node"]) | set(spec["parameters"]["dpt"])
    return out


def policy_xml(namespace: str = "/", cameras: Iterable[str] = ("",), transport: str = "raw",
               enclave: str = "", path: Path = INTERFACES, remaps: Iterable[tuple[str, str]] = (),
               depth_align: bool = False, managed: bool = False) -> str:
    """The SROS2 policy XML allowing exactly the node's topics and services."""
    spec = load(path)
    e = expected(namespace, cameras, transport, optional=True, path=path, remaps=remaps, depth_align=depth_align,
                 managed=managed)
    ns = _join(namespace)

    def block(tag: str, item: str, attr: str, names) -> list[str]:
        lines = [f'          <{tag} {attr}="ALLOW">']
        lines += [f"            <{item}>{escape(n)}</{item}>" for n in sorted(names)]
        lines.append(f"          </{tag}>")
        return lines

    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        "<!-- SROS2 access-control policy of dpt_node: exactly the topics and services it uses.",
        "     Generated by `python -m dpt_ros.tools.sros2_policy` from docs/sros2/dpt_ros_interfaces.yaml;",
        "     do not edit by hand (test/reliability/test_reliability_security.py checks it). -->",
        '<policy version="0.2.0">',
        "  <enclaves>",
        f'    <enclave path="{escape(enclave or spec["enclave"])}">',
        "      <profiles>",
        f'        <profile ns="{escape(ns)}" node="{escape(spec["node"])}">',
        *block("topics", "topic", "subscribe", e["subscribe"]),
        *block("topics", "topic", "publish", e["publish"]),
        *block("services", "service", "reply", e["reply"]),
        "        </profile>",
        "      </profiles>",
        "    </enclave>",
        "  </enclaves>",
        "</policy>",
    ]
    return "\n".join(lines) + "\n"


def _invalid_name(name: str) -> str:
    """Why ``name`` is not a valid namespace or enclave (rcl's rules for both: absolute, ``/``-separated tokens of
    letters, digits and ``_``), '' when it is."""
    from rclpy.exceptions import InvalidNamespaceException  # noqa: PLC0415
    from rclpy.validate_namespace import validate_namespace  # noqa: PLC0415

    try:
        validate_namespace(name)
    except InvalidNamespaceException as e:
        return str(e).splitlines()[0].rstrip(" :").replace("Invalid namespace: namespace ", "it ")
    return ""


def invalid_cameras(cameras: list[str], namespace: str = "/", remaps: Iterable[tuple[str, str]] = (),
                    path: Path = INTERFACES) -> str:
    """Why dpt_node would refuse ``cameras`` (its ``cameras`` parameter) in ``namespace`` with ``remaps``, '' when it
    takes them: the node's own check of the parameter (``params.SPECS["cameras"].check``: valid ROS namespaces, none
    twice), each camera first so that the reason names it, then the node's start-up check that no camera is listed
    twice in two spellings (a, /a; ~/x, /<namespace>/<node>/x), its topics resolved by this tool's rcl rules. Also
    the node's refusal of a camera whose topics (any it may publish or subscribe, remaps applied) rcl refuses once
    resolved, most often for their length (rcl's limit: 247 characters), with the node's words."""
    from rclpy.exceptions import InvalidTopicNameException  # noqa: PLC0415
    from rclpy.validate_full_topic_name import validate_full_topic_name  # noqa: PLC0415

    from dpt_ros.ros import params  # noqa: PLC0415

    check = params.SPECS["cameras"].check
    for cam in cameras:
        why = check([cam])
        if why:
            return why
    node_level = expected(namespace, [], path=path, remaps=remaps, depth_align=True)
    node_level = set(node_level["publish"]) | set(node_level["subscribe"])
    for cam in cameras:   # as the node checks them: every topic it may have, in either image transport
        for transport in ("raw", "compressed"):
            e = expected(namespace, [cam], transport, optional=True, path=path, remaps=remaps, depth_align=True)
            for topic in sorted((set(e["publish"]) | set(e["subscribe"])) - node_level):
                try:
                    validate_full_topic_name(topic)
                except InvalidTopicNameException as ex:
                    why = str(ex).splitlines()[0].rstrip(" :").replace("Invalid topic name: ", "")
                    return (f"camera namespace {params.shown(cam)} cannot be served: its topic {params.shown(topic)} "
                            f"is no valid ROS topic name ({why}); use a shorter namespace")
    node, remaps = load(path)["node"], list(remaps)
    twice = params.camera_listed_twice(   # the node's rule, its topics resolved by this tool's rcl rules
        cameras, lambda name: _remapped(resolve(name, namespace, node), remaps, namespace, node))
    return twice or check(list(cameras)) or ""


def topics_refused(cameras: Iterable[str], namespace: str = "/", remaps: Iterable[tuple[str, str]] = (),
                   transport: str = "raw", depth_align: bool = False, path: Path = INTERFACES) -> str:
    """Why dpt_node would refuse its topics with ``cameras``, ``remaps``, ``transport`` and ``depth_align`` in
    ``namespace``, '' when it takes them: the node's own rule (:func:`dpt_ros.ros.topics.collision`: two outputs,
    an output and an input, or two inputs on one topic), its names resolved by this tool's rcl rules, for the node
    this tool's policy is for: its other parameters at their defaults (the compressed copies published, camera_info
    subscribed) and label_info published (the policy allows it)."""
    from dpt_ros.ros import params, topics  # noqa: PLC0415

    node, remaps = load(path)["node"], list(remaps)
    s = params.defaults().replace({"cameras": list(cameras), "image_transport": transport, "depth.align": depth_align})
    return topics.collision(s, lambda name: _remapped(resolve(name, namespace, node), remaps, namespace, node),
                            lambda name: resolve(name, namespace, node), label_info=True) or ""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Write (or check) the SROS2 policy of dpt_node.")
    ap.add_argument("--out", default=None,
                    help=f"file to write, '-' for standard output (default: {POLICY} in a source checkout "
                         f"for the node as documented, i.e. without the options below; else standard output)")
    ap.add_argument("--check", action="store_true", help="exit 1 if --out differs from the generated policy")
    ap.add_argument("--namespace", default="/")
    ap.add_argument("--cameras", default="", help="comma-separated camera namespaces (default: the node's own)")
    ap.add_argument("--transport", choices=("raw", "compressed"), default="raw")
    ap.add_argument("--remap", action="append", default=[], metavar="FROM:=TO",
                    help="a topic remap the node is started with (-r FROM:=TO), e.g. image:=/camera/image_raw; "
                         "repeatable")
    ap.add_argument("--enclave", default="")
    ap.add_argument("--depth-align", action="store_true",
                    help="the node runs with depth.align: also allow subscribing depth_reference")
    ap.add_argument("--managed", action="store_true",
                    help="the node is dpt_lifecycle_node: also allow its lifecycle services and transition_event")
    args = ap.parse_args(argv)
    try:
        remaps = parse_remaps(args.remap)
    except ValueError as e:
        ap.error(str(e))
    if not args.namespace.startswith("/"):
        args.namespace = "/" + args.namespace   # as rclpy's Node(namespace=...) reads a relative one
    for what, name in (("--namespace", args.namespace), ("--enclave", args.enclave)):
        why = _invalid_name(name) if name else ""
        if why:   # a policy for a name no node can have (or an enclave rcl refuses) would secure nothing
            ap.error(f"{what} {name!r}: {why}")
    cams = args.cameras.split(",") if args.cameras else [""]
    why = invalid_cameras(cams, args.namespace, remaps)
    if why:   # a policy for cameras the node refuses to serve would secure a node that never starts
        ap.error(f"--cameras {args.cameras!r}: {why}")
    why = topics_refused(cams, args.namespace, remaps, args.transport, args.depth_align)
    if why:   # (and so would one for remaps that put two of its topics on one: refused by the node at start-up)
        ap.error(why)
    text = policy_xml(args.namespace, cams, args.transport, args.enclave, remaps=remaps, depth_align=args.depth_align,
                      managed=args.managed)
    # the checkout's file is the documented node's policy: one for other options never overwrites it unasked
    documented = text == policy_xml("/", [""], "raw", "")
    out = args.out or (str(POLICY) if CHECKOUT.is_dir() and documented else "-")
    if args.check and out == "-":
        ap.error("--check compares with a file: give it as --out FILE (without options, the checkout's "
                 f"{POLICY.name})")
    if args.check:
        current = Path(out).read_text() if out != "-" and Path(out).exists() else ""
        if current != text:
            print(f"{out} is out of date: run python -m dpt_ros.tools.sros2_policy", file=sys.stderr)
            return 1
        print(f"{out} is up to date")
        return 0
    if out == "-":
        sys.stdout.write(text)
        return 0
    try:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text)
    except OSError as e:
        print(f"sros2_policy: cannot write {out}: {e.strerror or e}", file=sys.stderr)
        return 1
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
