"""README's Topics table against the node it documents: every topic's name, message type and default QoS, and
no topic beyond the table (the Parameters table is checked in test_ros_params_table.py)."""
import importlib
import re
from pathlib import Path

from rclpy.qos import DurabilityPolicy, HistoryPolicy, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage

from dpt_ros.ros.testing import set_params, wait_for

DOMAIN = 78

README = Path(__file__).resolve().parents[2] / "README.md"


def _section(title: str, end: str) -> str:
    text = README.read_text()
    start = text.index(title)
    return text[start:text.index(end, start)]


def _topic_rows() -> list[dict]:
    """The rows of README's Topics table: names, dir, type, QoS text (a 'same' / 'as `image`' resolved)."""
    rows, last = [], {}
    for line in _section("### Topics", "Compressed copies").splitlines():
        if not line.startswith("| `"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        assert len(cells) == 5, f"README Topics row with {len(cells)} cells, not 5: {line[:120]}"
        names, direction, kind, _, qos_text = cells
        qos_text = qos_text.split(";")[0]
        if qos_text == "same" or qos_text.startswith("as `"):
            qos_text = last[direction.split()[0]]
        last.setdefault(direction.split()[0], qos_text)
        rows.append({"names": re.findall(r"`([^`]+)`", names), "dir": direction.split()[0],
                     "type": kind.strip("`"), "qos": qos_text})
    return rows


def _expected_qos(text: str) -> tuple:
    """(reliability, durability, keep-last depth) that a README QoS cell names."""
    reliability = ReliabilityPolicy.BEST_EFFORT if "best effort" in text else ReliabilityPolicy.RELIABLE
    durability = DurabilityPolicy.TRANSIENT_LOCAL if "transient local" in text else DurabilityPolicy.VOLATILE
    depth = re.search(r"(?:keep last|depth) (\d+)", text)
    return reliability, durability, int(depth.group(1)) if depth else None


def _qos_of(entity) -> tuple:
    q = entity.qos_profile
    assert q.history == HistoryPolicy.KEEP_LAST
    return q.reliability, q.durability, q.depth


def _type_name(msg_type) -> str:
    module = msg_type.__module__.split(".")[0]
    return f"{module}/{msg_type.__name__}"


def test_readme_tables_keep_each_row_on_one_line():
    """A Markdown table row broken over two lines renders as a cut row and a bogus one (the Topics table's
    image/compressed row lost its QoS cell that way, the rest of its text becoming a row of its own); a row needs
    its header's number of cells too (a '|' inside a code span splits a cell)."""
    columns = None
    for number, line in enumerate(README.read_text().splitlines(), 1):
        if line.startswith("|"):
            assert line.rstrip().endswith("|"), f"README.md:{number}: table row does not end with '|': {line[-60:]}"
            cells = len(re.split(r"(?<!\\)\|", line.strip()[1:-1]))
            columns = columns or cells
            assert cells == columns, f"README.md:{number}: {cells} cells in a table of {columns} columns"
        elif columns and line.strip():
            raise AssertionError(f"README.md:{number}: a table row goes on past its line: {line[:60]}")
        else:
            columns = None


def test_the_topics_table_is_what_the_node_publishes_and_subscribes(harness):
    node = harness.start_node(**{"depth.align": True})
    cam = node.cameras[0]
    entities = {("out", name): pub for name, pub in cam.pubs.items()}
    entities[("out", "/diagnostics")] = node._diag_pub
    entities.update({("in", name): sub for name, sub in cam.subs.items()})
    for pub in getattr(node, "_label_pubs", []):
        entities[("out", "label_info")] = pub
    assert set_params(harness, node, image_transport="compressed")[0].successful
    wait_for(lambda: cam.subs["image"].msg_type is CompressedImage, what="the image/compressed subscription")
    entities[("in", "image/compressed")] = cam.subs["image"]
    documented = set()
    for row in _topic_rows():
        for name in row["names"]:
            key = (row["dir"], name)
            documented.add(key)
            if key not in entities:
                # published only where vision_msgs is installed
                assert name == "label_info" and importlib.util.find_spec("vision_msgs") is None, key
                continue
            entity = entities[key]
            assert _type_name(entity.msg_type) == row["type"], (name, entity.msg_type)
            reliability, durability, depth = _expected_qos(row["qos"])
            assert _qos_of(entity) == (reliability, durability, depth or entity.qos_profile.depth), (name, row["qos"])
            if depth is None:   # (no depth in the README cell: label_info's latched message needs only the last)
                assert entity.qos_profile.depth == 1, name
    assert set(entities) <= documented, set(entities) - documented
    # what the graph shows of the node: the table's topics, resolved, and the standard /rosout and /parameter_events
    graph = {name: types[0] for name, types in node.get_publisher_names_and_types_by_node(node.get_name(), "/")}
    assert set(graph) == {node.resolve_topic_name(name) for (d, name) in entities if d == "out"} | {
        "/rosout", "/parameter_events"}
    assert graph["/points"] == "sensor_msgs/msg/PointCloud2"
    assert graph["/depth/camera_info"] == "sensor_msgs/msg/CameraInfo"
