"""/diagnostics as its readers take it: status names as diagnostic_updater writes them (what diagnostic_aggregator's
analyzers match), and figures that belong to the model that runs now."""
from sensor_msgs.msg import Image

from dpt_ros.ros.testing import make_image, qos, set_params, wait_for

DOMAIN = 57


def _status(node, suffix):
    return next(s for s in node.diagnostics().status if s.name.endswith(suffix))


def test_status_names_are_the_node_name_without_its_leading_slash_as_diagnostic_updater_writes_them(harness):
    """rclcpp's diagnostic_updater names a status '<fully qualified node name without the leading slash>: <name>'
    (rclpy's: the node name): an aggregator analyzer set up with `startswith: [robot/dpt_node]` found nothing in
    '/robot/dpt_node: model'."""
    named = harness.start_node(namespace="robot")
    assert [s.name for s in named.diagnostics().status] == ["robot/dpt_node: model", "robot/dpt_node: camera /"]


def test_net_input_after_a_live_size_change_is_the_new_models(harness):
    """depth.net_input is the last batch's network input of the model that runs: after `ros2 param set input_size`
    swapped a model in, it said the old model's shape beside the new net_size until the next frame."""
    node = harness.start_node()   # input_size 64: 80x60 frames run at 64x96 (aspect kept)
    out = harness.collector(Image, "inverse_depth")
    pub = harness.probe.create_publisher(Image, "image", qos())
    wait_for(lambda: pub.get_subscription_count() > 0 and
             node.cameras[0].pubs["inverse_depth"].get_subscription_count() > 0, what="discovery")
    pub.publish(make_image(1))
    wait_for(lambda: node.counts()[""].get("processed", 0) == 1, what="the first frame counted")
    kv = {v.key: v.value for v in _status(node, ": model").values}
    assert (kv["depth.net_size"], kv["depth.net_input"]) == ("64x64", "64x96")
    assert set_params(harness, node, input_size=128)[0].successful
    wait_for(lambda: node.models.depth_pre.net_size == (128, 128), timeout=30, what="the 128 px model swapped in")
    kv = {v.key: v.value for v in _status(node, ": model").values}
    assert kv["depth.net_size"] == "128x128" and "depth.net_input" not in kv   # no batch of the new model yet
    pub.publish(make_image(2))
    wait_for(lambda: len(out) == 2 and node.counts()[""].get("processed", 0) == 2, what="the second frame counted")
    h, w = node.models.depth_pre.input_size(60, 80)
    kv = {v.key: v.value for v in _status(node, ": model").values}
    assert kv["depth.net_input"] == f"{h}x{w}" != "64x96"
