"""ADE20K semantic segmentation (labels + coloured overlay).
    ros2 launch dpt_ros segmentation.launch.py variant:=dpt_hybrid_ade20k weights:=<file>

`ros2 launch dpt_ros segmentation.launch.py --show-args` lists every argument with its description and choices.
"""
from dpt_ros.ros.launch_description import generate


def generate_launch_description():
    return generate("segmentation")
