"""dpt_node's topics as names: which it publishes and subscribes per camera, their message types, where a compressed
copy goes, and which of them a configuration puts on one topic (:func:`collision`).

Pure (no rclpy node): names come in as ``resolve`` (a name -> the node's topic, remaps applied: a running node's
``resolve_topic_name``, or rcl's rules applied by hand for a node not started yet) and ``expand`` (the same without
the remaps), so that the node (at start-up, configure and parameter changes) and ``dpt_ros.tools.sros2_policy`` (a
policy for a configuration the node refuses would secure a node that never starts) apply one rule, with one
wording."""
from __future__ import annotations

from typing import Any, Callable, Mapping, Optional

#: output topic (relative to the camera namespace) -> parameter that enables it
OUTPUTS: dict[str, str] = {
    "inverse_depth": "publish.inverse_depth",
    "inverse_depth/colored": "publish.inverse_depth_colored",
    "depth": "publish.depth",
    "depth/camera_info": "publish.depth",
    "segmentation": "publish.segmentation",
    "segmentation/colored": "publish.segmentation_colored",
    "points": "points.enabled",
}
#: compressed copies of image outputs, named as image_transport names them (``publish.compressed``):
#: topic -> (the output it encodes, codec). Encoded only while subscribed, whatever ``lazy`` says.
COMPRESSED_OUTPUTS: dict[str, tuple[str, str]] = {
    "inverse_depth/colored/compressed": ("inverse_depth/colored", "jpeg"),
    "depth/compressedDepth": ("depth", "compressedDepth"),
    "segmentation/compressed": ("segmentation", "png"),
    "segmentation/colored/compressed": ("segmentation/colored", "jpeg"),
}
#: the node's parameters that decide which of those topics it publishes and subscribes (besides the remaps)
TOPIC_PARAMETERS = frozenset(("cameras", "publish.compressed", "image_transport", "camera_info.url", "depth.align",
                              "depth.align_transport"))
#: message types of the node's topics (outputs, inputs, /diagnostics) that are not sensor_msgs/msg/Image
_TYPES = {"depth/camera_info": "sensor_msgs/msg/CameraInfo", "points": "sensor_msgs/msg/PointCloud2",
          "label_info": "vision_msgs/msg/LabelInfo", "/diagnostics": "diagnostic_msgs/msg/DiagnosticArray",
          "image/compressed": "sensor_msgs/msg/CompressedImage", "camera_info": "sensor_msgs/msg/CameraInfo",
          "depth_reference/compressedDepth": "sensor_msgs/msg/CompressedImage",
          **{name: "sensor_msgs/msg/CompressedImage" for name in COMPRESSED_OUTPUTS}}
#: what two different inputs of one type on one topic would do
_INPUT_EFFECTS = {frozenset(("image", "depth_reference")):
                  "camera images taken for reference depth (depth.align), which fails every frame's alignment"}

Resolve = Callable[[str], str]


def camera_topic(ns: str, name: str) -> str:
    """Topic ``name`` of camera namespace ``ns`` ('' is the node's own), unresolved: left/image, image."""
    ns = ns.rstrip("/")
    return f"{ns}/{name}" if ns else name


def type_name(name: str) -> str:
    """The message type of the node's topic ``name`` (an output, an input, /diagnostics), as `ros2 topic info` names
    it: sensor_msgs/msg/Image."""
    return _TYPES.get(name, "sensor_msgs/msg/Image")


def output_topic(ns: str, name: str, resolve: Resolve, expand: Resolve) -> str:
    """The topic of output ``name`` of camera ``ns``. A compressed copy follows its image as image_transport (6.0,
    Kilted) names a transport's topic: the base topic, remaps applied, + the suffix; so `-r depth:=/foo/depth` moves
    depth/compressedDepth to /foo/depth/compressedDepth, where a viewer subscribing /foo/depth through the
    compressedDepth transport looks. A remap of the copy's own name wins."""
    topic = camera_topic(ns, name)
    base = COMPRESSED_OUTPUTS.get(name, (None,))[0]
    if base is None or resolve(topic) != expand(topic):
        return topic
    return resolve(camera_topic(ns, base)).rstrip("/") + name[len(base):]


def endpoints(s: Mapping[str, Any], resolve: Resolve, expand: Resolve,
              label_info: bool) -> list[tuple[str, str, str, str]]:
    """``(kind, camera namespace, name, topic)`` of every camera topic the node has with settings ``s``
    (:data:`TOPIC_PARAMETERS`) and the remaps in ``resolve``, ``kind`` "publish" or "subscribe", ``topic`` as the
    publisher or subscription has it (resolved, remaps applied). Every output has its publisher whatever its publish.*
    parameter says (they are set live); the compressed copies with publish.compressed, label_info with ``label_info``
    (vision_msgs installed); the inputs as ``s`` subscribes them: image (or image/compressed with
    image_transport:=compressed), camera_info unless camera_info.url gives a calibration file, depth_reference with
    depth.align (depth_reference/compressedDepth with depth.align_transport:=compressedDepth)."""
    out = []
    for ns in s["cameras"]:
        ns = ns.rstrip("/")
        for name in (*OUTPUTS, *(COMPRESSED_OUTPUTS if s["publish.compressed"] else ()),
                     *(("label_info",) if label_info else ())):
            out.append(("publish", ns, name, resolve(output_topic(ns, name, resolve, expand))))
        image = resolve(camera_topic(ns, "image")).rstrip("/")   # (as the node's subscription names it)
        compressed = s["image_transport"] == "compressed"
        # (as the node gives them to rcl, which applies the remaps: the raw image unresolved, so once; a transport's
        # topic the base resolved + its suffix, as image_transport names it)
        wanted = {"image/compressed" if compressed else "image":
                  image + "/compressed" if compressed else camera_topic(ns, "image"),
                  "camera_info": None if s["camera_info.url"] else camera_topic(ns, "camera_info"),
                  "depth_reference": camera_topic(ns, "depth_reference") if s["depth.align"] else None}
        if s["depth.align"] and s["depth.align_transport"] == "compressedDepth":   # (as image/compressed: base + suffix)
            del wanted["depth_reference"]
            out.append(("subscribe", ns, "depth_reference/compressedDepth",
                        resolve(camera_topic(ns, "depth_reference")).rstrip("/") + "/compressedDepth"))
        out += [("subscribe", ns, name, resolve(topic)) for name, topic in wanted.items() if topic is not None]
    return out


def collision(s: Mapping[str, Any], resolve: Resolve, expand: Resolve, label_info: bool) -> Optional[str]:
    """Why the node cannot have its topics with settings ``s`` (``s["cameras"]``, ``s["publish.compressed"]``, ...)
    and the remaps in ``resolve``, None when nothing collides:

    - two different outputs on one topic (``-r depth:=/out -r inverse_depth:=/out``: their messages mixed there, or,
      of two types, rcl's refusal of the second publisher after the model loaded);
    - an output on a topic the node subscribes (``-r inverse_depth/colored:=image``: every output came back as a new
      frame, endlessly; ``-r depth/camera_info:=camera_info``: its own output's intrinsics taken for the camera's);
    - two different inputs on one topic (``-r camera_info:=image``, ``-r image:=camera_info``: of two types, rcl's
      refusal of the second subscription after the model loaded, naming neither; ``-r depth_reference:=image`` with
      depth.align: camera images taken for reference depth, every frame's alignment failed).

    The topics are those of :func:`endpoints`. One output (or input) of several cameras on one topic (one points for
    all) may be meant: not judged here (two cameras' images or inverse_depth on one topic:
    :func:`dpt_ros.ros.params.camera_listed_twice`)."""
    outputs: dict[str, list[tuple[str, str]]] = {}
    inputs: dict[str, list[tuple[str, str]]] = {}
    for kind, ns, name, topic in endpoints(s, resolve, expand, label_info):
        (outputs if kind == "publish" else inputs).setdefault(topic, []).append((ns, name))
    outputs.setdefault(resolve("/diagnostics"), []).append(("", "/diagnostics"))
    found = None
    for topic, pubs in outputs.items():
        other = next((p for p in pubs if p[1] != pubs[0][1]), None)
        if other is not None:   # (one output of several cameras: see the docstring)
            found = ("outputs", topic, pubs[0], other)
        elif topic in inputs:
            found = ("input", topic, pubs[0], inputs[topic][0])
        if found:
            break
    for topic, subs in ({} if found else inputs).items():
        other = next((p for p in subs if p[1] != subs[0][1]), None)
        if other is not None:   # (one input of several cameras: see the docstring)
            found = ("inputs", topic, subs[0], other)
            break
    if found is None:
        return None
    kind, topic, (ns, name), (ns_b, name_b) = found
    (a, remapped_a), (b, remapped_b) = _origin(ns, name, s, resolve, expand), _origin(ns_b, name_b, s, resolve, expand)
    types = sorted({type_name(name), type_name(name_b)})
    clash = f"; of two types ({' and '.join(types)}), which ROS refuses on one topic" if len(types) > 1 else ""
    if kind == "outputs":
        text = (f"outputs {a} and {b} would both be published on {topic}: two outputs on one topic" +
                (clash or ", their messages mixed, which no subscriber can tell apart"))
        fix = "remap each output to a topic of its own"
    elif kind == "input":
        effect = {"camera_info": "the intrinsics of its own output taken for the camera's",
                  "depth_reference": "its depth aligned to its own output (depth.align)"}.get(
            name_b.removesuffix("/compressedDepth"), "every output coming back as a new frame, endlessly")
        text = (f"output {a} would be published on {topic}, which the node subscribes as its input {b}: the node "
                f"would consume its own output ({effect}{clash})")
        fix = "remap the output to a topic of its own, or the input to the camera's"
    else:
        text = (f"inputs {a} and {b} would both be subscribed on {topic}: two inputs on one topic" +
                (clash or f", {_INPUT_EFFECTS[frozenset((name, name_b))]}"))
        fix = "remap each input to the camera's topic of its own"
    fix += DROP_REMAP if remapped_a or remapped_b else \
        ": with no remap, camera namespaces nested in one another's topics (give each camera a namespace of its own, " \
        "e.g. left and right)"
    return f"topics collide: {text}; {fix}"


#: the end of a collision's advice when a remap made it (:func:`collision`, :func:`dpt_ros.ros.params.camera_listed_twice`):
#: a managed node, whose remaps stay until its process starts again, adds that to its configure's refusal
DROP_REMAP = " (or drop the remap)"


def _origin(ns: str, name: str, s: Mapping[str, Any], resolve: Resolve, expand: Resolve) -> tuple[str, bool]:
    """``name`` of camera ``ns`` as a collision names it (whether remapped, or following a remapped image, whether
    disabled), and whether a remap moved it: for :func:`collision`."""
    def remapped(n: str) -> bool:
        return resolve(camera_topic(ns, n)) != expand(camera_topic(ns, n))

    if name == "/diagnostics":
        return ("/diagnostics (remapped)", True) if remapped(name) else (name, False)
    if name == "image/compressed":   # (the node subscribes image's topic + /compressed: no name of its own)
        moved = remapped("image")
        return (camera_topic(ns, name) + " (image_transport:=compressed" +
                (f", following the remap of {camera_topic(ns, 'image')})" if moved else ")"), moved)
    if name == "depth_reference/compressedDepth":   # (likewise: depth_reference's topic + /compressedDepth)
        moved = remapped("depth_reference")
        return (camera_topic(ns, name) + " (depth.align_transport:=compressedDepth" +
                (f", following the remap of {camera_topic(ns, 'depth_reference')})" if moved else ")"), moved)
    base = COMPRESSED_OUTPUTS.get(name, (None,))[0]
    notes, moved = [], remapped(name)
    if moved:
        notes.append("remapped")
    elif base is not None and remapped(base):
        notes.append(f"following the remap of {camera_topic(ns, base)}")
        moved = True
    enable = OUTPUTS.get(base or name)
    if enable and not s[enable]:
        notes.append(f"{enable} is false, but its publisher exists: {enable} can be set while the node runs")
    return camera_topic(ns, name) + (f" ({'; '.join(notes)})" if notes else ""), moved
