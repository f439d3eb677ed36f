"""Depth: inverse depth, metric depth (metric variants or depth.scale), point cloud.
    ros2 launch dpt_ros depth.launch.py variant:=dpt_large resolution:=384 weights:=<file>

`ros2 launch dpt_ros depth.launch.py --show-args` lists every argument with its description and choices.
"""
from dpt_ros.ros.launch_description import generate


def generate_launch_description():
    return generate("depth")
