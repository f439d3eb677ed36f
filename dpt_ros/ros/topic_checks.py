"""Why nothing arrives on a DptNode input: its publishers, their QoS and types, and the remap or parameter to set."""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from rclpy.qos import (DurabilityPolicy, QoSCompatibility, QoSPolicyKind, QoSProfile, ReliabilityPolicy,
                       qos_check_compatible, qos_policy_name_from_kind)

if TYPE_CHECKING:
    from dpt_ros.ros.node import _Camera


def _remap_example(cam: _Camera, name: str, target: str) -> tuple[str, str]:
    """How to point ``cam``'s input ``name`` at ``target``, for the words of a missing input: the remap of the camera's
    own relative name (``-r left/image:=...`` for camera ``left``: a rule for the bare ``image`` does not reach it), and
    for the node's own camera (``''``) the launch files' argument of that name, which remaps only that one (else '')."""
    return f"-r {cam.topic(name)}:={target}", "" if cam.ns else f"launch argument {name}:=..."


def _qos_hint(policy: str, output: bool, latched_info: Optional[str] = None) -> str:
    """What to change when a peer's QoS ``policy`` (rclpy's name of it) does not match one of this node's
    publishers (``output``) or subscriptions. ``latched_info``: the subscription is camera_info's with
    qos.camera_info_durability:=transient_local, which makes it reliable whatever qos.input_reliability (this value)
    says, so that qos.input_reliability alone cannot make it take a best-effort publisher."""
    if "RELIABILITY" in policy and latched_info is not None:
        also = (" (a best-effort subscription, which takes best-effort and reliable publishers)"
                if latched_info == "best_effort" else " and qos.input_reliability:=best_effort")
        return ("this camera_info subscription is reliable because qos.camera_info_durability is transient_local, "
                f"and a best-effort publisher cannot feed it: qos.camera_info_durability:=volatile{also}, or a "
                "reliable camera_info publisher")
    if "RELIABILITY" in policy:
        return ("a subscriber asks for reliable and this node publishes best effort: qos.output_reliability:=reliable, "
                "or a best-effort subscriber" if output else
                "a best-effort publisher cannot feed this reliable subscription: qos.input_reliability:=best_effort")
    if "DURABILITY" in policy and output:
        return ("a subscriber asks for transient local durability and this node's outputs are volatile: subscribe "
                "with volatile durability (RViz: Durability Policy 'Volatile')")
    if "DURABILITY" in policy:   # only camera_info's subscription can ask for transient local
        return ("a volatile publisher cannot feed this transient-local camera_info subscription: "
                "qos.camera_info_durability:=volatile (transient_local is for a driver that latches its camera_info)")
    return (f"the peer requires a {policy.lower()} QoS this node does not offer (it sets only reliability, "
            f"durability volatile and history depth): relax it on the peer")


class TopicChecks:
    """DptNode's look at the graph when an input is silent (a mixin: it reads the node's cameras and settings)."""

    @staticmethod
    def _incompatible_publishers(found: list, sub_qos: QoSProfile) -> tuple[int, str]:
        """Of the publishers ``found`` (get_publishers_info_by_topic: those on the graph now), how many have a QoS
        a subscription of ``sub_qos`` cannot take (rmw's own rule, qos_check_compatible: ERROR; a WARNING is a policy
        left to the system default, which may match), and "(policy P): what to change" for them. P is each policy this
        node sets on a subscription (reliability, durability) that alone refuses one of them: the publisher checked
        against a subscription that asks for that policy's value and the most accepting one of the other."""
        probes = ((QoSPolicyKind.RELIABILITY, QoSProfile(depth=1, reliability=sub_qos.reliability,
                                                         durability=DurabilityPolicy.VOLATILE)),
                  (QoSPolicyKind.DURABILITY, QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT,
                                                        durability=sub_qos.durability)))
        refused, said = 0, []
        for info in found:
            verdict, reason = qos_check_compatible(info.qos_profile, sub_qos)
            if verdict != QoSCompatibility.ERROR:
                continue
            refused += 1
            policies = [qos_policy_name_from_kind(kind) for kind, probe in probes
                        if qos_check_compatible(info.qos_profile, probe)[0] == QoSCompatibility.ERROR]
            # (none: a policy the node leaves at its default, which no publisher refuses today; rmw's words then)
            for text in ([f"(policy {p}): {_qos_hint(p, False)}" for p in policies] or [f"({reason.rstrip(';')})"]):
                if text not in said:
                    said.append(text)
        return refused, "; ".join(said)

    def _publishers_now(self, cam: "_Camera") -> tuple[int, int, str]:
        """The publishers of ``cam``'s image topic on the graph now (not a past QoS event), how many of them its
        subscription cannot take, and what a status adds of those ("; 2 publishers found on it, 1 of an incompatible
        QoS (policy P): what to change"; '' when none)."""
        found = self.get_publishers_info_by_topic(cam.image_topic)
        publishers = len(found)
        incompatible, mismatch = self._incompatible_publishers(found, self._in_qos)
        if not incompatible:
            return publishers, 0, ""
        return publishers, incompatible, (f"; {publishers} publisher{'s' * (publishers != 1)} found on it, "
                                          f"{'' if incompatible == publishers else f'{incompatible} '}of an "
                                          f"incompatible QoS {mismatch}")

    def _types_instead(self, topic: str, wanted: str) -> str:
        """The message types the publishers on ``topic`` have when none of them has ``wanted`` (a subscription of
        ``wanted`` receives none of theirs, with no error from DDS), e.g. 'sensor_msgs/msg/CompressedImage'; '' when
        one has it or nothing publishes there."""
        types = sorted({info.topic_type for info in self.get_publishers_info_by_topic(topic)})
        return "" if not types or wanted in types else ", ".join(types)

    @staticmethod
    def _image_of_another_type(cam: "_Camera", publishers: int, types: str, compressed: bool) -> str:
        """What "no image yet" adds when the image topic's publishers are of another type than the subscription's
        (``compressed``: image_transport:=compressed; raw on a .../compressed topic, or compressed on a raw one)."""
        wanted = "CompressedImage" if compressed else "Image"
        text = (f"; {publishers} publisher{'s' * (publishers != 1)} found on it, of type {types}, which this "
                f"subscription (sensor_msgs/msg/{wanted}, image_transport:={'compressed' if compressed else 'raw'}) "
                f"does not receive: ")
        if compressed and "sensor_msgs/msg/Image" in types.split(", "):
            return text + "set image_transport:=raw"
        if not compressed and "sensor_msgs/msg/CompressedImage" in types.split(", ") and \
                cam.image_topic.endswith("/compressed"):
            rule = _remap_example(cam, "image", cam.image_topic.removesuffix("/compressed"))[0]
            return text + (f"it is a compressed transport: set image_transport:=compressed and remap the image to its "
                           f"base topic ({rule}; the node adds /compressed, as image_transport does)")
        return text + "point the node at the camera's image topic"

    def _nothing_publishes(self, cam: "_Camera") -> str:
        """What "no image yet" adds for an image topic nothing publishes: the topics of the image's type that
        others publish (not this node's outputs), and how to point the node at one."""
        wanted = "sensor_msgs/msg/CompressedImage" if self._settings["image_transport"] == "compressed" else \
            "sensor_msgs/msg/Image"
        own = {pub.topic_name for c in self._cameras for pub in c.pubs.values()}
        seen = sorted(name for name, types in self.get_topic_names_and_types()
                      if wanted in types and name not in own and self.count_publishers(name) > 0)
        listed = ", ".join(seen[:8]) + (f" and {len(seen) - 8} more" if len(seen) > 8 else "")
        # the camera is there, in the other transport (a Wi-Fi camera or a bag with only image_raw/compressed): say so
        compressed = wanted.endswith("CompressedImage")
        doubled = cam.image_topic.removesuffix("/compressed")
        if compressed and doubled.endswith("/compressed") and any(
                info.topic_type == wanted for info in self.get_publishers_info_by_topic(doubled)):
            rule = _remap_example(cam, "image", doubled.removesuffix("/compressed"))[0]
            return (f"; nothing publishes it, but {doubled} has a publisher of CompressedImage: with "
                    f"image_transport:=compressed the node adds /compressed to the image topic, as image_transport "
                    f"does: remap the image to the base topic ({rule})")
        other = self._other_transport(cam.image_topic, "/compressed", compressed, "camera", "image_transport",
                                      "image_transport")
        if other:
            return f"; nothing publishes it, but {other}"
        rule = _remap_example(cam, "image", "/camera/image_raw")
        return (f"; nothing publishes it ({wanted.rsplit('/', 1)[-1]} topics with a publisher: {listed or 'none'}): "
                f"point the node at the camera's topic ({'; '.join(filter(None, rule))}, or the cameras "
                f"parameter's namespaces)")

    def _other_transport(self, topic: str, suffix: str, compressed: bool, device: str, param: str,
                         argument: str) -> str:
        """For an input ``topic`` nothing publishes: when its other transport has a publisher (``compressed``: the
        raw ``topic`` less ``suffix``, '/compressed' or '/compressedDepth'; else ``topic`` + ``suffix``), that and the
        ``param`` (launch ``argument``) to set, e.g. "/cam/image_raw/compressed has a publisher of CompressedImage: the
        camera offers the compressed transport, set image_transport:=compressed (...)"; '' when it has none."""
        other = topic.removesuffix(suffix) if compressed else topic + suffix
        other_type = "sensor_msgs/msg/Image" if compressed else "sensor_msgs/msg/CompressedImage"
        if not any(info.topic_type == other_type for info in self.get_publishers_info_by_topic(other)):
            return ""
        transport = "raw" if compressed else suffix.lstrip("/")
        return (f"{other} has a publisher of {other_type.rsplit('/', 1)[-1]}: the {device} offers the {transport} "
                f"transport, set {param}:={transport} (ros2 param set {self.get_fully_qualified_name()} {param} "
                f"{transport}; -p {param}:={transport}, or the launch files' argument {argument}:={transport})")
