"""Semantic segmentation and the semantic voxel map on a robot.

Usage:
    ros2 launch seg_perception perception.launch.py
    ros2 launch seg_perception perception.launch.py params_file:=jetson_orin namespace:=front
    ros2 launch seg_perception perception.launch.py params_file:=rgb use_lidar:=false
    ros2 launch seg_perception perception.launch.py single_process:=false backend:=onnxruntime
    ros2 launch seg_perception perception.launch.py --show-args    # every argument, described

single_process:=true (default) runs perception_node: segmentation and mapping in one process, labels
never serialised. single_process:=false runs segmentation_node and voxel_mapping_node, the mapping's
labels input remapped to the segmentation's ~/labels. The arguments and what they start are decided
in seg_perception.pipeline.launch_arguments, where they are tested.
"""
from seg_perception.pipeline.launch_arguments import LAUNCH_FILES, plan

ARGUMENTS = LAUNCH_FILES["perception.launch.py"]


def generate_launch_description():
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument, OpaqueFunction
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import LifecycleNode, Node

    def start(context):
        values = {a.name: LaunchConfiguration(a.name).perform(context) for a in ARGUMENTS}
        return [(LifecycleNode if n.lifecycle else Node)(**n.node_kwargs())
                for n in plan("perception.launch.py", values).nodes]

    return LaunchDescription([DeclareLaunchArgument(**a.declaration()) for a in ARGUMENTS]
                             + [OpaqueFunction(function=start)])
