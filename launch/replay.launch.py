"""A recorded bag through the live nodes: `ros2 bag play --clock` and the nodes on sim time.

Usage:
    seg-perception simulate --out out/sim_bag          # a bag of the synthetic world, if you have none
    ros2 launch seg_perception replay.launch.py bag:=out/sim_bag
    ros2 launch seg_perception replay.launch.py bag:=drive.mcap params_file:=/path/to/robot.yaml rate:=0.5
    ros2 launch seg_perception replay.launch.py bag:=out/sim_bag single_process:=false loop:=true
    ros2 launch seg_perception replay.launch.py --show-args    # every argument, described

The default params_file, sim, subscribes the topics of `seg-perception simulate` bags. Playback
starts after `delay` seconds, so the nodes can load their model first; with shutdown_at_end the
launch ends when the bag has played. `seg-perception replay` scores the same bag offline. The
arguments and what they start are decided in seg_perception.pipeline.launch_arguments, where they
are tested.
"""
from seg_perception.pipeline.launch_arguments import LAUNCH_FILES, plan

ARGUMENTS = LAUNCH_FILES["replay.launch.py"]


def generate_launch_description():
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument, EmitEvent, ExecuteProcess, OpaqueFunction, RegisterEventHandler
    from launch.event_handlers import OnProcessExit
    from launch.events import Shutdown
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import LifecycleNode, Node

    def start(context):
        values = {a.name: LaunchConfiguration(a.name).perform(context) for a in ARGUMENTS}
        setup = plan("replay.launch.py", values)
        player = ExecuteProcess(cmd=list(setup.bag_play), name="bag_play", output="screen")
        actions = [(LifecycleNode if n.lifecycle else Node)(**n.node_kwargs()) for n in setup.nodes] + [player]
        if setup.shutdown_at_end:
            actions.append(RegisterEventHandler(OnProcessExit(
                target_action=player, on_exit=[EmitEvent(event=Shutdown(reason="the bag has played"))])))
        return actions

    return LaunchDescription([DeclareLaunchArgument(**a.declaration()) for a in ARGUMENTS]
                             + [OpaqueFunction(function=start)])
