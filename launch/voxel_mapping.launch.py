"""The semantic voxel map (voxel_mapping_node alone), fed by any segmenter's label images.

Usage:
    ros2 launch seg_perception voxel_mapping.launch.py
    ros2 launch seg_perception voxel_mapping.launch.py namespace:=robot params_file:=/path/to/mapping.yaml
    ros2 launch seg_perception voxel_mapping.launch.py --show-args    # every argument, described

Its inputs (cloud_topic, labels_topic, confidence_topic, camera_info_topic) are relative: set them in
the params file (default: the shipped config/ros/voxel_mapping.yaml) or move them with the namespace.
The arguments and what they start are decided in seg_perception.pipeline.launch_arguments, where they
are tested.
"""
from seg_perception.pipeline.launch_arguments import LAUNCH_FILES, plan

ARGUMENTS = LAUNCH_FILES["voxel_mapping.launch.py"]


def generate_launch_description():
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument, OpaqueFunction
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import LifecycleNode, Node

    def start(context):
        values = {a.name: LaunchConfiguration(a.name).perform(context) for a in ARGUMENTS}
        return [(LifecycleNode if n.lifecycle else Node)(**n.node_kwargs())
                for n in plan("voxel_mapping.launch.py", values).nodes]

    return LaunchDescription([DeclareLaunchArgument(**a.declaration()) for a in ARGUMENTS]
                             + [OpaqueFunction(function=start)])
