"""ROS 2 layer: the dpt_node, its parameter table, message conversion, presets and the sample camera."""
