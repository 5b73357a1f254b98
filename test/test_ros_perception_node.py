"""perception_node on real rclpy, in process: synthetic-world frames with LiDAR, odometry and static
extrinsics in; the voxel map out equals the one the pipeline builds from the same messages."""
from __future__ import annotations

import time

import numpy as np
import pytest

from conftest import require_ros
from seg_perception.io import cloud_to_array, invert_transform, make_header, matrix_to_pose, matrix_to_quaternion
from seg_perception.io import stamp_to_ns, xyz_to_cloud
from test_ros_segmentation_node import Graph, image, outputs_of, wait_for

SEED = 110_000
VOXEL_SIZE = 0.5
ODOM_STEP_S = 0.02
FRAMES = 3


@pytest.fixture(scope="module")
def graph():
    require_ros("rclpy.lifecycle", "sensor_msgs.msg", "nav_msgs.msg", "seg_perception.msg")
    graph = Graph()
    yield graph
    graph.close()


def _entry(parent: str, child: str, T: np.ndarray) -> str:
    """A static_transforms entry, 'parent child x y z qx qy qz qw'."""
    values = [*T[:3, 3], *matrix_to_quaternion(T[:3, :3])]
    return " ".join([parent, child, *(repr(float(v)) for v in values)])


def test_sim_frames_with_lidar_and_odometry_give_the_voxel_map_the_pipeline_builds(graph):
    from geometry_msgs.msg import PoseWithCovariance
    from nav_msgs.msg import Odometry
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import CameraInfo, Image, PointCloud2

    from seg_perception.engines import Segmenter
    from seg_perception.io import TransformBuffer, camera_info_from_model, camera_model_from_info
    from seg_perception.mapping import SemanticVoxelMap
    from seg_perception.pipeline import FrameBundle, MessageDecoder, Perception
    from seg_perception.ros.perception_node import PerceptionNode
    from seg_perception.ros.transforms import parse_static_transform
    from seg_perception.sim import CameraSpec, LidarSpec, RigSpec, World

    world = World(SEED, "day", rig=RigSpec(camera=CameraSpec(width=320, height=180),
                                           lidar=LidarSpec(beams=32, columns=512)))
    frames = list(world.frames(FRAMES, events=False))
    T_map_odom = world.trajectory.pose(world.time_of(0))
    statics = [_entry("map", "odom", T_map_odom), _entry("base_link", "camera_optical_frame", world.T_base_camera),
               _entry("base_link", "lidar", world.T_base_lidar)]
    node = graph.node(PerceptionNode, "perception_node", cloud_topic="points", odom_topic="odom",
                      static_transforms=statics, voxel_size=VOXEL_SIZE, publish_rate_hz=10.0, tf_timeout_s=5.0)
    namespace = node.get_namespace()
    out = outputs_of(graph, node)
    voxel_cloud = graph.inbox(PointCloud2, f"{node.get_fully_qualified_name()}/voxel_cloud")
    publishers = {name: graph.publisher(msg_type, f"{namespace}/{name}") for name, msg_type in (
        ("image", Image), ("camera_info", CameraInfo),
        ("points", PointCloud2), ("odom", Odometry))}
    try:
        assert node.start()
        wait_for(lambda: all(p.get_subscription_count() for p in publishers.values()), what="the node's subscriptions")
        wait_for(lambda: node.output_publishers["info"].get_subscription_count(), what="the probe on ~/info")
        camera_info = camera_info_from_model(world.models.camera, header=make_header(
            graph.factory, frames[0].stamp_ns, "camera_optical_frame"), factory=graph.factory)
        publishers["camera_info"].publish(camera_info)
        wait_for(lambda: node.intake.camera is not None, what="camera_info")

        sent: list[tuple[str, object]] = []  # what the node was sent, in order, for the reference pipeline
        odom_until = world.time_of(-1) - ODOM_STEP_S
        for frame in frames:
            time_s = world.time_of(frame.index)
            while odom_until < time_s + 0.06:  # past the sweep's last point, half a sweep after the frame
                odom_until += ODOM_STEP_S
                T_odom_base = invert_transform(T_map_odom) @ world.trajectory.pose(odom_until)
                odometry = Odometry(header=make_header(graph.factory, world.stamp_of(odom_until), "odom"),
                                    child_frame_id="base_link",
                                    pose=PoseWithCovariance(pose=matrix_to_pose(T_odom_base, factory=graph.factory)))
                publishers["odom"].publish(odometry)
                sent.append(("odom", odometry))
            scan = frame.lidar
            cloud = xyz_to_cloud(scan.points, stamp_ns=scan.start_ns, frame_id="lidar", is_dense=False,
                                 factory=graph.factory, t=scan.time_offset_ns)
            for name, msg in (("points", cloud), ("image", image(graph, frame.rgb, frame.stamp_ns))):
                publishers[name].publish(msg)
                sent.append((name, msg))
            wait_for(lambda: out["info"].stamped(frame.stamp_ns), what=f"frame {frame.index} processed")
        assert node.scheduler.stats["dropped"] == 0

        # The reference: the pipeline on the same messages, as replay runs it.
        decoder, transforms = MessageDecoder(), TransformBuffer()
        for entry in statics:
            static = parse_static_transform(entry)
            transforms.set_transform(static.matrix(), static.parent, static.child, static=True)
        reference = Perception(Segmenter("student_rgb", backend="torch", device="cpu", input_size=(160, 96)),
                               transforms, semantic_map=SemanticVoxelMap(14, VOXEL_SIZE, radius=60.0),
                               map_frame="map")
        reference.camera = camera_model_from_info(camera_info)
        sweep = None
        for name, msg in sent:
            if name == "odom":
                transforms.set_transform(msg)
            elif name == "points":
                sweep = decoder.decode("lidar", msg)
            else:
                result = reference.process(FrameBundle(stamp_to_ns(msg.header.stamp), decoder.decode("rgb", msg),
                                                       lidar=sweep))
                assert result.map_stats and not result.notes, result.notes
        expected = reference.semantic_map.voxels()
        assert len(expected) > 1000 and len(np.unique(expected.labels)) > 2

        def complete() -> object:
            return next((m for m in reversed(voxel_cloud.all()) if m.width * m.height == len(expected)), None)

        msg = wait_for(complete, what="~/voxel_cloud of the whole map")
        assert (msg.header.frame_id, stamp_to_ns(msg.header.stamp)) == ("map", frames[-1].stamp_ns)
        cloud = cloud_to_array(msg).reshape(-1)
        got_xyz = np.stack([cloud["x"], cloud["y"], cloud["z"]], axis=1)
        got, want = np.lexsort(got_xyz.T), np.lexsort(expected.centers.T)
        np.testing.assert_allclose(got_xyz[got], expected.centers[want], atol=1e-4)
        np.testing.assert_array_equal(cloud["label"][got], expected.labels[want])
        np.testing.assert_allclose(cloud["confidence"][got], expected.confidence[want], atol=1e-5)
        values = node.status()
        assert values["voxels"] == len(expected) and values["frames sent on after tf_timeout_s"] == 0

        result = node.set_parameters([Parameter("publish_rate_hz", value=1.0)])[0]  # live, from 10 Hz
        assert result.successful, result.reason
        time.sleep(0.5)  # clouds already published at 10 Hz may still be in flight
        since = time.monotonic()
        time.sleep(2.5)
        # 10 Hz would give ~25 clouds here; 1 Hz gives 2 or 3.
        assert len([t for t, _ in voxel_cloud.messages if t > since]) <= 4
    finally:
        graph.remove(node)
