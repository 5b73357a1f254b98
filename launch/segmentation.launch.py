"""Semantic segmentation of a camera (segmentation_node alone), for robots that map elsewhere.

Usage:
    ros2 launch seg_perception segmentation.launch.py
    ros2 launch seg_perception segmentation.launch.py params_file:=rgb namespace:=front
    ros2 launch seg_perception segmentation.launch.py params_file:=/path/to/my_camera.yaml backend:=tensorrt
    ros2 launch seg_perception segmentation.launch.py --show-args    # every argument, described

It publishes ~/labels, ~/color, ~/overlay, ~/confidence and ~/info. The arguments and what they start
are decided in seg_perception.pipeline.launch_arguments, where they are tested.
"""
from seg_perception.pipeline.launch_arguments import LAUNCH_FILES, plan

ARGUMENTS = LAUNCH_FILES["segmentation.launch.py"]


def generate_launch_description():
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument, OpaqueFunction
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import LifecycleNode, Node

    def start(context):
        values = {a.name: LaunchConfiguration(a.name).perform(context) for a in ARGUMENTS}
        return [(LifecycleNode if n.lifecycle else Node)(**n.node_kwargs())
                for n in plan("segmentation.launch.py", values).nodes]

    return LaunchDescription([DeclareLaunchArgument(**a.declaration()) for a in ARGUMENTS]
                             + [OpaqueFunction(function=start)])
