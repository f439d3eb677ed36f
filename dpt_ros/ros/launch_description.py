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
        from launch_ros.actions import LifecycleNode, Node

        from launch.logging import get_logger

        values = {a.name: LaunchConfiguration(a.name).perform(context) for a in arguments}
        # the names given on the command line (ros2 launch keeps its name:=value arguments as the context's argv):
        # not every configuration in the context, which holds a parent launch file's own and those of the files it
        # included before this one (ros2/launch#313), meant for them
        typed = [a.split(":=", 1)[0] for a in context.argv if ":=" in a]
        for warning in presets.ignored_arguments(task, typed) + presets.config_file_overrides(task, values, typed):
            get_logger(f"{task}.launch.py").warning(warning)
        rviz = presets.use_rviz(task, values)
        if rviz and presets.rviz_unavailable():   # before anything starts: nothing is left running
            raise RuntimeError(presets.rviz_unavailable())
        executable = presets.node_executable(task, values)
        node = (LifecycleNode if executable == "dpt_lifecycle_node" else Node)(
            package=presets.PACKAGE, executable=executable, name="dpt_node", namespace=values["namespace"],
            output="screen", emulate_tty=True, parameters=presets.node_parameters(task, values),
            remappings=presets.remappings(task, values), ros_arguments=presets.ros_arguments(task, values) or None,   # (none: no extra --ros-args)
            additional_env=presets.node_environment(task, values))
        actions = _autostarted(node, presets.autostart_transitions(task, values))
        if rviz:
            actions.append(Node(package="rviz2", executable="rviz2", name="rviz2", output="screen",
                                **presets.rviz_node_options(task, values)))
        return actions

    declared = [DeclareLaunchArgument(a.name, default_value=a.default, description=a.description,
                                      choices=list(a.choices) if a.choices else None)
                for a in arguments]
    return LaunchDescription([*declared, OpaqueFunction(function=nodes)])


def _autostarted(node, transitions: tuple[str, ...]) -> list:
    """``node``, and for a managed one the events that take it through ``transitions`` (configure, activate): the
    first is requested when the node is up, each next one when the previous has first reached its state (once: a
    later configure by the user, e.g. after a cleanup to change ``cameras``, leaves the node inactive)."""
    if not transitions:
        return [node]
    from launch.actions import EmitEvent, RegisterEventHandler
    from launch.events import matches_action
    from launch_ros.event_handlers import OnStateTransition
    from launch_ros.events.lifecycle import ChangeState
    from lifecycle_msgs.msg import Transition

    ids = {"configure": Transition.TRANSITION_CONFIGURE, "activate": Transition.TRANSITION_ACTIVATE}
    # (transition requested -> the transition state it passes and the state it ends in)
    passes = {"configure": ("configuring", "inactive"), "activate": ("activating", "active")}

    def request(name: str):
        return EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(node), transition_id=ids[name]))

    handlers = [RegisterEventHandler(OnStateTransition(target_lifecycle_node=node, start_state=passes[prev][0],
                                                       goal_state=passes[prev][1], entities=[request(name)],
                                                       handle_once=True))
                for prev, name in zip(transitions, transitions[1:])]
    return [*handlers, node, request(transitions[0])]
