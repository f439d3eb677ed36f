"""/diagnostics as its readers take it: status names as diagnostic_updater writes them (what diagnostic_aggregator's
analyzers match), and figures that belong to the model that runs now."""

DOMAIN = 57


def test_status_names_are_the_node_name_without_its_leading_slash_as_diagnostic_updater_writes_them(harness):
    """rclcpp's diagnostic_updater names a status '<fully qualified node name without the leading slash>: <name>'
    (rclpy's: the node name): an aggregator analyzer set up with `startswith: [robot/dpt_node]` found nothing in
    '/robot/dpt_node: model'."""
    named = harness.start_node(namespace="robot")
    assert [s.name for s in named.diagnostics().status] == ["robot/dpt_node: model", "robot/dpt_node: camera /"]

