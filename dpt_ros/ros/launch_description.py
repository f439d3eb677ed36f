"""Builds the launch descriptions of ``launch/*.launch.py`` with the real ``launch`` / ``launch_ros``
API (a ROS 2 installation provides them; they are not on PyPI). All decisions live in
:mod:`dpt_ros.ros.presets`; this module only turns them into launch actions."""
from __future__ import annotations

from dpt_ros.ros import presets


def generate(task: str):
    """``LaunchDescription`` for ``task`` (depth, segmentation or dpt)."""
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument, OpaqueFunction
    from launch.substitutions import LaunchConfiguration

    arguments = presets.launch_arguments(task)

    def nodes(context, *args, **kwargs):
        from launch_ros.actions import Node

        values = {a.name: LaunchConfiguration(a.name).perform(context) for a in arguments}
        actions = [Node(package=presets.PACKAGE, executable="dpt_node", name="dpt_node",
                        namespace=values["namespace"], output="screen", emulate_tty=True,
                        parameters=presets.node_parameters(task, values),
                        remappings=presets.remappings(task, values))]
        if presets.use_rviz(task, values):
            actions.append(Node(package="rviz2", executable="rviz2", name="rviz2", output="screen",
                                **presets.rviz_node_options(task, values)))
        return actions

    declared = [DeclareLaunchArgument(a.name, default_value=a.default, description=a.description,
                                      choices=list(a.choices) if a.choices else None)
                for a in arguments]
    return LaunchDescription([*declared, OpaqueFunction(function=nodes)])
