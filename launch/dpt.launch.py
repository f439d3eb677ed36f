"""Depth and segmentation in one node (labelled point cloud).
    ros2 launch dpt_ros dpt.launch.py weights:=<depth file> segmentation_weights:=<seg file>

`ros2 launch dpt_ros dpt.launch.py --show-args` lists every argument with its description and choices.
"""
from dpt_ros.ros.launch_description import generate


def generate_launch_description():
    return generate("dpt")
