"""SROS2 access-control policy of dpt_node, generated from its documented interface set.

``docs/sros2/dpt_ros_interfaces.yaml`` lists every topic, service and parameter the node has; this
tool resolves those names for a namespace / camera list / transport / the node's parameters (its camera topics by
the node's own rule, :func:`dpt_ros.ros.topics.endpoints`) and writes the SROS2 policy
(``<policy version="0.2.0">``, one enclave, one profile) that allows exactly them::

    python -m dpt_ros.tools.sros2_policy                      # writes docs/sros2/dpt_ros_policy.xml
    python -m dpt_ros.tools.sros2_policy --check              # exit 1 if that file is out of date
    python -m dpt_ros.tools.sros2_policy --namespace /front --cameras left,right --out my_policy.xml
    python -m dpt_ros.tools.sros2_policy --remap image:=/camera/image_raw --out -   # to standard output
    python -m dpt_ros.tools.sros2_policy --managed > lifecycle_policy.xml   # + dpt_lifecycle_node's services
    python -m dpt_ros.tools.sros2_policy --params-file my_params.yaml --param publish.compressed:=false --out -
    python -m dpt_ros.tools.sros2_policy --launch depth.launch.py namespace:=robot image:=/cam/image --out -
    (the node a launch file of this package starts with those ros2 launch arguments)
    (the node's own parameters file and -p values: the topics its camera_info.url, publish.compressed, cameras,
    image_transport, depth.align and use_sim_time make, by the node's rule in dpt_ros/ros/topics.py)
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

import os
import shlex
import sys
from pathlib import Path
from types import MappingProxyType
from typing import Any, Iterable, Mapping, Optional
from xml.sax.saxutils import escape

import yaml

from dpt_ros.ros import presets
from dpt_ros.ros.console import write_last
from dpt_ros.tools import output_folder_error, refuse_kernel_folder, write_whole
from dpt_ros.tools.options import ToolParser

ROOT = Path(__file__).resolve().parents[2]
CHECKOUT = ROOT / "docs" / "sros2"   # a source checkout; an install has share/dpt_ros/sros2 (setup.py)


def _sros2_folder() -> Path:
    """docs/sros2 of a source checkout, else the installed share/dpt_ros/sros2 (:func:`presets.share_dir`)."""
    return CHECKOUT if CHECKOUT.is_dir() else presets.share_dir() / "sros2"


INTERFACES = _sros2_folder() / "dpt_ros_interfaces.yaml"
POLICY = _sros2_folder() / "dpt_ros_policy.xml"


def load() -> dict:
    """The interfaces file (:data:`INTERFACES`)."""
    try:
        with open(INTERFACES) as f:
            return yaml.safe_load(f)
    except FileNotFoundError:
        raise SystemExit(f"sros2_policy: {INTERFACES} not found: run it from a dpt_ros checkout or an install that "
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
    """``from:=to`` remapping rules as given to ``--ros-args -r``, also ``node_name:from:=to`` (a rule for one node
    only); rcl applies each to topic and service names alike (``~/get_parameters:=...`` moves that service); the
    node-name and namespace rules (``__node:=``, ``__ns:=``) are refused."""
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


def settings(parameters: Mapping[str, Any] = MappingProxyType({}), cameras: Optional[Iterable[str]] = None,
             transport: Optional[str] = None, depth_align: Optional[bool] = None):
    """The node's settings (:class:`dpt_ros.ros.params.Settings`) for its start-up ``parameters`` (name -> value, as
    :func:`dpt_ros.ros.params.start_values` reads them; the others at their defaults), ``cameras``, ``transport``
    (image_transport) and ``depth_align`` (depth.align) over them where given."""
    from dpt_ros.ros import params, topics  # noqa: PLC0415

    given = {name: parameters[name] for name in topics.TOPIC_PARAMETERS if name in parameters}
    for name, value in (("cameras", cameras), ("image_transport", transport), ("depth.align", depth_align)):
        if value is not None:
            given[name] = list(value) if name == "cameras" else value
    return params.defaults().replace(given)


def expected(namespace: str = "/", cameras: Optional[Iterable[str]] = None, transport: Optional[str] = None,
             optional: bool = True, remaps: Iterable[tuple[str, str]] = (),
             depth_align: Optional[bool] = None, managed: bool = False,
             parameters: Mapping[str, Any] = MappingProxyType({})) -> dict:
    """The resolved interface set: ``{"publish": {name: type}, "subscribe": ..., "reply": ...,
    "parameters": set, "optional_publish": {name: type}}``. ``parameters``: the node's start-up parameter values
    (name -> value: ``--params-file`` and ``-p``, :func:`dpt_ros.ros.params.start_values`), of which those that decide
    its topics count (``cameras``, ``image_transport``, ``camera_info.url``: no camera_info subscription,
    ``depth.align``, ``publish.compressed``; rclpy's ``use_sim_time``: /clock subscribed,
    ``start_type_description_service``); ``cameras``, ``transport`` (image_transport) and ``depth_align``
    (depth.align) over them where given, else as there or at the node's defaults. ``remaps``: ``(from, to)`` rules
    as the node was started with (``-r from:=to``), applied to its topics and its services as rcl applies them; ``managed``: it is ``dpt_lifecycle_node`` (the lifecycle
    services and transition_event too). The camera topics are the node's own rule's
    (:func:`dpt_ros.ros.topics.endpoints`); label_info in ``optional_publish`` (only where vision_msgs is installed)."""
    from dpt_ros.ros import topics  # noqa: PLC0415

    spec = load()
    node = spec["node"]
    remaps = list(remaps)
    s = settings(parameters, cameras, transport, depth_align)
    out = {"publish": {}, "subscribe": {}, "reply": {}, "optional_publish": {}}

    def topic(name: str) -> str:
        return _remapped(resolve(name, namespace, node), remaps, namespace, node)

    for kind, _, name, resolved in topics.endpoints(s, topic, lambda n: resolve(n, namespace, node), label_info=True):
        out["optional_publish" if name == "label_info" else kind][resolved] = topics.type_name(name)
    for name, kind in spec["node_topics"]["publish"].items():
        out["publish"][topic(name)] = kind
    for name, kind in (spec["node_topics"]["subscribe_with_sim_time"].items() if parameters.get("use_sim_time")
                       else ()):
        out["subscribe"][topic(name)] = kind
    for name, kind in spec["services"]["reply"].items():
        if name.endswith("/get_type_description") and parameters.get("start_type_description_service", True) is False:
            continue
        out["reply"][topic(name)] = kind   # (rcl remaps service names by the same rules as topics)
    for name, kind in (spec["managed"]["publish"].items() if managed else ()):
        out["publish"][topic(name)] = kind
    for name, kind in (spec["managed"]["reply"].items() if managed else ()):
        out["reply"][topic(name)] = kind
    if optional:
        out["publish"].update(out["optional_publish"])
    out["parameters"] = set(spec["parameters"]["node"]) | set(spec["parameters"]["dpt"])
    return out


def policy_xml(namespace: str = "/", cameras: Optional[Iterable[str]] = None, transport: Optional[str] = None,
               enclave: str = "", remaps: Iterable[tuple[str, str]] = (),
               depth_align: Optional[bool] = None, managed: bool = False,
               parameters: Mapping[str, Any] = MappingProxyType({})) -> str:
    """The SROS2 policy XML allowing exactly the node's topics and services (:func:`expected`)."""
    spec = load()
    e = expected(namespace, cameras, transport, optional=True, remaps=remaps, depth_align=depth_align,
                 managed=managed, parameters=parameters)
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


def invalid_cameras(cameras: list[str], namespace: str = "/", remaps: Iterable[tuple[str, str]] = ()) -> str:
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
    every = {"publish.compressed": True, "camera_info.url": ""}   # (the node checks all names, whatever its settings)
    node_level = expected(namespace, [], remaps=remaps, depth_align=True, parameters=every)
    node_level = set(node_level["publish"]) | set(node_level["subscribe"])
    for cam in cameras:   # as the node checks them: every topic it may have, in either image transport
        for transport in ("raw", "compressed"):
            e = expected(namespace, [cam], transport, optional=True, remaps=remaps, depth_align=True,
                         parameters=every)
            for topic in sorted((set(e["publish"]) | set(e["subscribe"])) - node_level):
                try:
                    validate_full_topic_name(topic)
                except InvalidTopicNameException as ex:
                    why = str(ex).splitlines()[0].rstrip(" :").replace("Invalid topic name: ", "")
                    return (f"camera namespace {params.shown(cam)} cannot be served: its topic {params.shown(topic)} "
                            f"is no valid ROS topic name ({why}); use a shorter namespace")
    node, remaps = load()["node"], list(remaps)
    twice = params.camera_listed_twice(   # the node's rule, its topics resolved by this tool's rcl rules
        cameras, lambda name: _remapped(resolve(name, namespace, node), remaps, namespace, node))
    return twice or check(list(cameras)) or ""


def topics_refused(cameras: Optional[Iterable[str]] = None, namespace: str = "/",
                   remaps: Iterable[tuple[str, str]] = (), transport: Optional[str] = None,
                   depth_align: Optional[bool] = None,
                   parameters: Mapping[str, Any] = MappingProxyType({})) -> str:
    """Why dpt_node would refuse its topics with ``cameras``, ``remaps``, ``transport``, ``depth_align`` and its
    start-up ``parameters`` (as for :func:`expected`) in ``namespace``, '' when it takes them: the node's own rule
    (:func:`dpt_ros.ros.topics.collision`: two outputs, an output and an input, or two inputs on one topic), its names
    resolved by this tool's rcl rules, for the node this tool's policy is for: label_info published (the policy
    allows it)."""
    from dpt_ros.ros import topics  # noqa: PLC0415

    node, remaps = load()["node"], list(remaps)
    s = settings(parameters, cameras, transport, depth_align)
    return topics.collision(s, lambda name: _remapped(resolve(name, namespace, node), remaps, namespace, node),
                            lambda name: resolve(name, namespace, node), label_info=True) or ""


#: the parameters rclpy declares on every node itself
RCLPY_PARAMETERS = ("use_sim_time", "start_type_description_service")


def start_parameters(sources: Iterable[tuple[str, str]], namespace: str = "/") -> dict[str, Any]:
    """The start-up values dpt_node in ``namespace`` takes from ``sources`` (``("file", path)`` per --params-file,
    ``("param", "name:=value")`` per -p, in order: :func:`dpt_ros.ros.params.start_values`), those that decide its
    topics checked as the node checks them.

    :raises ValueError: a file that cannot be read, or a value the node (or rclpy) refuses, with what to do"""
    from dpt_ros.ros import params, topics  # noqa: PLC0415

    values = params.start_values(sources, resolve("~", namespace, load()["node"]))
    for name in sorted(topics.TOPIC_PARAMETERS & values.keys()):
        why = params.check_value(name, values[name])
        if why:
            raise ValueError(f"parameter {why if why.startswith(name) else f'{name}: {why}'}; the node refuses it at "
                             f"start-up")
    for name in RCLPY_PARAMETERS:
        if name in values and not isinstance(values[name], bool):
            raise ValueError(f"parameter {name} must be of type bool, got {type(values[name]).__name__} "
                             f"({params.shown(values[name])}); rclpy refuses it at the node's start")
    return values


def launch_options(file: str, arguments: Iterable[str]) -> dict[str, Any]:
    """What a launch file of this package (``depth.launch.py``, ``segmentation.launch.py``, ``dpt.launch.py``; the
    bare task name too) gives its node for the ``ros2 launch`` ``arguments`` (``name:=value``), by the launch files'
    own decisions (:mod:`dpt_ros.ros.presets`): ``namespace``; ``sources`` as :func:`start_parameters` takes them
    (the preset files, then the arguments' values: launch_ros hands them over as one more parameters file);
    ``remap`` rules; ``managed`` (dpt_lifecycle_node); ``enclave``.

    :raises ValueError: an unknown launch file or argument, a value out of an argument's choices, a missing
        config_file, with what to do"""
    from dpt_ros.ros import params, presets  # noqa: PLC0415

    task = Path(file).name.removesuffix(".py").removesuffix(".launch")
    if task not in presets.TASKS:
        raise ValueError(f"--launch {file!r}: not a launch file of dpt_ros; give one of "
                         f"{', '.join(t + '.launch.py' for t in presets.TASKS)}")
    values = {}
    for rule in arguments:
        name, sep, value = rule.partition(":=")
        if not sep or not name:
            raise ValueError(f"--launch {file}: {rule!r} is not a launch argument NAME:=VALUE (e.g. namespace:=robot)")
        values[name] = value
    try:
        *files, overrides = presets.node_parameters(task, values)
    except (ValueError, FileNotFoundError) as e:
        raise ValueError(f"--launch {file}: {e} (ros2 launch dpt_ros {task}.launch.py --show-args lists the "
                         f"arguments)") from None
    # launch_ros writes a dict of parameters into a parameters file of its own, section /**, after the others
    rules = [("param", f"{name}:={params.yaml_value(value)}") for name, value in overrides.items()]
    return {"namespace": presets.resolve(task, values)["namespace"] or "/",
            "sources": [("file", path) for path in files] + rules,
            "remap": [f"{src}:={dst}" for src, dst in presets.remappings(task, values)],
            "managed": presets.node_executable(task, values) == "dpt_lifecycle_node",
            "enclave": presets.resolve(task, values)["enclave"]}


def main(argv=None) -> int:
    ap = ToolParser(description="Write (or check) the SROS2 policy of dpt_node.")
    ap.add_argument("--out", default=None,
                    help=f"file to write, '-' for standard output (default: {POLICY} in a source checkout "
                         f"for the node as documented, i.e. without the options below; else standard output)")
    ap.add_argument("--check", action="store_true", help="exit 1 if --out differs from the generated policy")
    ap.add_argument("--namespace", default="/", help="the node's namespace (default /)")
    ap.add_argument("--params-file", dest="sources", action="append", default=[], metavar="FILE",
                    type=lambda path: ("file", path),
                    help="a parameters file (/**: ros__parameters: ...) the node is started with (--params-file FILE; "
                         "a launch file's parameters=[...] files); repeatable, in the node's order. Its cameras, "
                         "image_transport, camera_info.url (no camera_info subscription), depth.align, "
                         "publish.compressed and use_sim_time (/clock subscribed) decide the topics")
    ap.add_argument("--param", dest="sources", action="append", metavar="NAME:=VALUE",
                    type=lambda rule: ("param", rule),
                    help="a parameter the node is started with (-p NAME:=VALUE), e.g. publish.compressed:=false; "
                         "repeatable")
    ap.add_argument("--cameras", default="", help="comma-separated camera namespaces (the cameras parameter; "
                                                  "default: the parameters' or the node's own)")
    ap.add_argument("--transport", choices=("raw", "compressed"), default=None,
                    help="image_transport (default: the parameters' or raw)")
    ap.add_argument("--remap", action="append", default=[], metavar="FROM:=TO",
                    help="a remap the node is started with (-r FROM:=TO), e.g. image:=/camera/image_raw; rcl applies "
                         "it to topics and services alike; repeatable")
    ap.add_argument("--enclave", default="")
    ap.add_argument("--depth-align", action="store_true", default=None,
                    help="the node runs with depth.align (-p depth.align:=true): also allow subscribing "
                         "depth_reference")
    ap.add_argument("--managed", action="store_true",
                    help="the node is dpt_lifecycle_node: also allow its lifecycle services and transition_event")
    ap.add_argument("--launch", nargs="+", metavar=("FILE", "NAME:=VALUE"),
                    help="the node as a launch file of this package starts it: depth.launch.py, "
                         "segmentation.launch.py or dpt.launch.py and the arguments given to ros2 launch, e.g. "
                         "--launch depth.launch.py namespace:=robot image:=/camera/image_raw (its namespace, remaps, "
                         "parameter files, enclave and managed:=; your own parameters go in its config_file:=)")
    args = ap.parse_args(argv)
    if args.launch:
        given = [name for name, value in (("--namespace", args.namespace != "/"), ("--params-file/--param",
                 args.sources), ("--cameras", args.cameras), ("--transport", args.transport),
                 ("--remap", args.remap), ("--depth-align", args.depth_align), ("--managed", args.managed),
                 ("--enclave", args.enclave)) if value]
        if given:   # (the launch file decides them: two answers to one question would be one too many)
            ap.error(f"--launch takes the node's namespace, parameters, remaps, enclave and executable from the "
                     f"launch file and its arguments: leave out {', '.join(given)} (parameters: the launch argument "
                     f"config_file:=FILE)")
        try:
            launched = launch_options(args.launch[0], args.launch[1:])
        except ValueError as e:
            ap.error(str(e))
        args.namespace, args.sources, args.remap, args.managed, args.enclave = (
            launched["namespace"], launched["sources"], launched["remap"], launched["managed"], launched["enclave"])
    try:
        remaps = parse_remaps(args.remap)
    except ValueError as e:
        ap.error(str(e))
    if not args.namespace.startswith("/"):
        args.namespace = "/" + args.namespace   # as rclpy's Node(namespace=...) reads a relative one
    for what, name in (("--launch namespace:=" if args.launch else "--namespace", args.namespace),
                       ("--launch enclave:=" if args.launch else "--enclave", args.enclave)):
        why = _invalid_name(name) if name else ""
        if why:   # a policy for a name no node can have (or an enclave rcl refuses) would secure nothing
            ap.error(f"{what} {name!r}: {why}")
    try:   # the node's start-up values, as rclpy gives them to /<namespace>/dpt_node
        parameters = start_parameters(args.sources, args.namespace)
    except ValueError as e:   # (a policy for values the node refuses would secure a node that never starts)
        ap.error(str(e))
    from dpt_ros.ros import params  # noqa: PLC0415
    for path in (source for kind, source in args.sources if kind == "file"):   # (as the node warns of it)
        unused = params.params_file_unused(path, resolve("~", args.namespace, load()["node"]))
        if unused:
            print(f"sros2_policy: warning: {unused}; this policy is made without its values", file=sys.stderr)
    # a name the node does not have (a misspelt publish.compresed:=false) decides no topic: said as the node says it,
    # where the policy was silently that of the parameter's default (rclpy's own names and renamed ones are known)
    for name in sorted(parameters.keys() - params.SPECS.keys() - params.RENAMED.keys() - set(RCLPY_PARAMETERS)):
        print(f"sros2_policy: warning: {params.unknown_parameter(name)}; this policy is made without it",
              file=sys.stderr)
    cams = args.cameras.split(",") if args.cameras else list(parameters.get("cameras", [""]))
    why = invalid_cameras(cams, args.namespace, remaps)
    if why:   # a policy for cameras the node refuses to serve would secure a node that never starts
        ap.error(f"--cameras {args.cameras!r}: {why}" if args.cameras else f"cameras {cams!r}: {why}")
    why = topics_refused(cams, args.namespace, remaps, args.transport, args.depth_align, parameters=parameters)
    if why:   # (and so would one for remaps that put two of its topics on one: refused by the node at start-up)
        ap.error(why)
    text = policy_xml(args.namespace, cams, args.transport, args.enclave, remaps=remaps, depth_align=args.depth_align,
                      managed=args.managed, parameters=parameters)
    # the checkout's file is the documented node's policy: one for other options never overwrites it unasked
    documented = text == policy_xml("/", [""], "raw", "")
    out = args.out or (str(POLICY) if CHECKOUT.is_dir() and documented else "-")
    if args.check and out == "-":
        ap.error("--check compares with a file: give it as --out FILE (without options, the checkout's "
                 f"{POLICY.name})")
    if out != "-" and os.path.isdir(out):   # (--check read it, and the write opened it: each a traceback or errno)
        ap.error(f"--out {out!r} is a folder; give the policy file, e.g. {Path(out) / 'my_policy.xml'}")
    if args.check:
        try:   # (as bytes: a file that is no UTF-8 text, e.g. a binary given by mistake, differs like any other)
            current = Path(out).read_bytes() if out != "-" and Path(out).exists() else None
        except OSError as e:
            print(f"sros2_policy: cannot read {out}: {e.strerror or e}", file=sys.stderr)
            return 1
        if current != text.encode():
            # the command that writes it: this one without --check (for a file of other options or another --out,
            # the bare command wrote the checkout's file, or the policy to standard output)
            given = sys.argv[1:] if argv is None else list(argv)
            again = [a for a in given if not (len(a) > 3 and "--check".startswith(a))]
            print(f"{out} {'is out of date' if current is not None else 'does not exist'}: write it with: "
                  + shlex.join(["python", "-m", "dpt_ros.tools.sros2_policy", *again]), file=sys.stderr)
            return 1
        print(f"{out} is up to date")
        return 0
    if out == "-":
        return write_last(text)
    try:
        refuse_kernel_folder(Path(out).parent)
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        write_whole(out, text)
    except OSError as e:   # (under a file: mkdir's "File exists" / "Not a directory" said as that)
        print(f"sros2_policy: cannot write {out}: {output_folder_error(Path(out), e, file=True)}", file=sys.stderr)
        return 1
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    from dpt_ros.ros.console import tool_exit, tool_streams

    tool_streams()   # (a closed or full stderr, stdout: see there)
    tool_exit(main())
