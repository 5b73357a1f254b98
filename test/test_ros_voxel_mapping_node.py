"""voxel_mapping_node on real rclpy, in-process: the node under test and a probe node on one executor.

The inputs are frames of the synthetic world (sim.bag's messages, built as rclpy messages): LiDAR
sweeps, ground-truth label images, camera_info, odometry (odom → base_link) and the rig's extrinsics
as static_transforms. The fused map is checked against the pipeline's own computation on the same
messages (equal voxels and labels) and against the LiDAR points' ground-truth classes (independent).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import require_ros

from seg_perception.io import (
    TransformBuffer,
    array_to_cloud,
    array_to_image,
    camera_model_from_info,
    cloud_to_array,
    invert_transform,
    make_header,
    matrix_to_pose,
    matrix_to_quaternion,
    quaternion_to_matrix,
    stamp_to_ns,
    transform_to_matrix,
    xyz_to_cloud,
)
from seg_perception.labels import load_label_set
from seg_perception.mapping import SemanticVoxelMap, load_voxels
from seg_perception.pipeline import MessageDecoder, map_sweep
from seg_perception.sim import CameraSpec, LidarSpec, RigSpec, World
from seg_perception.sim.bag import BASE, CAMERA, LIDAR, MAP, ODOM, _camera_records, _lidar_records

ROOT = Path(__file__).resolve().parents[1]
RIG = RigSpec(camera=CameraSpec(width=160, height=96), lidar=LidarSpec(beams=32, columns=512))
FRAMES = 3
ODOM_STEP_NS = 20_000_000  # odometry at 50 Hz, as the sim's bags
NAMESPACE = f"/vmn_test_{os.getpid()}"
NODE = "voxel_mapping_node"
VOXEL = 0.2


@pytest.fixture(scope="module")
def ros():
    """An rclpy context of this module's own (other test modules may init the default one)."""
    require_ros("sensor_msgs.msg", "nav_msgs.msg", "std_srvs.srv", "diagnostic_msgs.msg", "seg_perception.msg")
    import rclpy

    context = rclpy.Context()
    rclpy.init(context=context)
    yield context
    rclpy.shutdown(context=context)


class Drive:
    """The world's first frames as rclpy messages, plus what the test needs to compute answers."""

    def __init__(self) -> None:
        from seg_perception.ros.messages import RclpyFactory

        factory = RclpyFactory()
        self.world = world = World(110_000, "day", rig=RIG)
        self.frames = list(world.frames(FRAMES, events=False))
        self.T_map_odom = world.trajectory.pose(world.time_of(0))
        statics = {(MAP, ODOM): self.T_map_odom, **{(BASE, child): T for child, T in world.rig.frames().items()}}
        self.static_transforms = []
        self.static_matrices = {}
        for (parent, child), T in statics.items():
            q = matrix_to_quaternion(T[:3, :3])
            self.static_transforms.append(" ".join([parent, child, *(repr(float(v)) for v in (*T[:3, 3], *q))]))
            M = np.eye(4)
            M[:3, :3], M[:3, 3] = quaternion_to_matrix(q), T[:3, 3]
            self.static_matrices[parent, child] = M
        self.clouds, self.labels, self.infos = [], [], []
        for frame in self.frames:
            camera = {r.topic: r.msg for r in _camera_records(world, frame, False, False, factory)}
            self.labels.append(camera["/camera/labels"])
            self.infos.append(camera["/camera/camera_info"])
            self.clouds.append(next(r.msg for r in _lidar_records(world, frame.lidar, factory)
                                    if r.topic == "/lidar/points"))
        first = world.stamp_of(world.time_of(-1))
        last = world.stamp_of(world.time_of(FRAMES))
        self.odometry = []
        for stamp in range(first, last + 1, ODOM_STEP_NS):
            T = invert_transform(self.T_map_odom) @ world.trajectory.pose(float(world.time_at(stamp)))
            self.odometry.append(factory.make(
                "nav_msgs/msg/Odometry", header=make_header(factory, stamp, ODOM), child_frame_id=BASE,
                pose=factory.make("geometry_msgs/msg/PoseWithCovariance", pose=matrix_to_pose(T, factory=factory))))
        self.factory = factory

    def odometry_until(self, stamp_ns: int) -> list:
        return [m for m in self.odometry if stamp_to_ns(m.header.stamp) <= stamp_ns]

    def sweep_end(self, k: int) -> int:
        scan = self.frames[k].lidar
        return int(scan.start_ns) + int(scan.time_offset_ns.max())

    def reference_map(self, frames: range) -> SemanticVoxelMap:
        """The pipeline's map of `frames`: map_sweep on the decoded messages with a TransformBuffer."""
        buffer = TransformBuffer()
        for (parent, child), M in self.static_matrices.items():
            buffer.set_transform(M, parent, child, static=True)
        for msg in self.odometry:
            buffer.set_transform(transform_to_matrix(msg), ODOM, BASE, stamp_to_ns(msg.header.stamp))
        decoder = MessageDecoder()
        label_set = load_label_set("sim_offroad")
        semantic_map = SemanticVoxelMap(label_set.num_classes, VOXEL, radius=60.0, max_voxels=2_000_000,
                                        dynamic_classes=label_set.dynamic_ids())
        for k in frames:
            labels = self.labels[k]
            map_sweep(semantic_map, decoder.decode("lidar", self.clouds[k]), decoder.decode("labels", labels), None,
                      camera_model_from_info(self.infos[k]), buffer.lookup, stamp_to_ns(labels.header.stamp))
        return semantic_map

    def truth_majority(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per voxel key: the most common ground-truth class of the LiDAR points in it, each point placed
        with the vehicle's exact pose at its own time (no deskewing slices, no TF interpolation);
        and whether any point fell in it."""
        votes: dict[tuple[int, int, int], np.ndarray] = {}
        for frame in self.frames:
            scan = frame.lidar
            finite = np.isfinite(scan.points).all(axis=-1)
            points, labels = scan.points[finite].astype(np.float64), scan.labels[finite]
            times = self.world.time_at(scan.start_ns + scan.time_offset_ns[finite].astype(np.int64))
            T = self.world.trajectory.poses(times) @ self.world.T_base_lidar
            in_map = np.einsum("nij,nj->ni", T[:, :3, :3], points) + T[:, :3, 3]
            for key, label in zip(map(tuple, np.floor(in_map / VOXEL).astype(np.int64)), labels):
                votes.setdefault(key, np.zeros(256, np.int64))[label] += 1
        majority = np.full(len(keys), -1)
        for i, key in enumerate(map(tuple, keys)):
            if key in votes:
                majority[i] = int(np.argmax(votes[key]))
        return majority, majority >= 0


@pytest.fixture(scope="module")
def drive(ros) -> Drive:
    return Drive()


class Harness:
    """The node under test, a probe node that publishes its inputs and listens to its outputs, one executor."""

    def __init__(self, ros, drive: Drive, **overrides) -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        from nav_msgs.msg import Odometry
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node
        from rclpy.parameter import Parameter
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CameraInfo, Image, PointCloud2
        from std_srvs.srv import Trigger

        from seg_perception.msg import SemanticVoxelMap as SemanticVoxelMapMsg
        from seg_perception.ros.voxel_mapping_node import VoxelMappingNode

        params = {"cloud_topic": "points", "labels_topic": "labels", "confidence_topic": "",
                  "camera_info_topic": "camera_info", "odom_topic": "odom",
                  "static_transforms": drive.static_transforms, "qos_reliability": "reliable", "qos_depth": 10,
                  "voxel_size": VOXEL, "publish_rate_hz": 10.0, "diagnostics_period_s": 0.2, "tf_timeout_s": 1.0,
                  **overrides}
        self.node = VoxelMappingNode(namespace=NAMESPACE, context=ros,  # None: left at its default
                                     parameter_overrides=[Parameter(k, value=v) for k, v in params.items()
                                                          if v is not None])
        self.probe = probe = Node("probe", namespace=NAMESPACE, context=ros)
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.pubs = {"points": probe.create_publisher(PointCloud2, "points", qos),
                     "labels": probe.create_publisher(Image, "labels", qos),
                     "camera_info": probe.create_publisher(CameraInfo, "camera_info", qos),
                     "odom": probe.create_publisher(Odometry, "odom", 100)}
        self.voxel_clouds, self.voxel_maps, self.diagnostics = [], [], []
        probe.create_subscription(PointCloud2, f"{NODE}/voxel_cloud", self.voxel_clouds.append, qos)
        probe.create_subscription(SemanticVoxelMapMsg, f"{NODE}/voxel_map", self.voxel_maps.append, qos)
        fqn = self.node.get_fully_qualified_name()
        probe.create_subscription(DiagnosticArray, "/diagnostics", lambda m: self.diagnostics.extend(
            {kv.key: kv.value for kv in s.values} | {"_level": s.level}
            for s in m.status if s.hardware_id == fqn), 10)
        self.clients = {name: probe.create_client(Trigger, f"{NODE}/{name}") for name in
                        ("save_map", "clear_map", "load_map")}
        self.executor = SingleThreadedExecutor(context=ros)
        self.executor.add_node(self.node)
        self.executor.add_node(probe)
        self.drive = drive
        assert self.spin_until(lambda: all(p.get_subscription_count() for k, p in self.pubs.items()
                                           if k != "odom" or params["odom_topic"]), 10.0)
        self.publish("camera_info", drive.infos[0])

    def publish(self, topic: str, *messages) -> None:
        for msg in messages:
            self.pubs[topic].publish(msg)
        self.spin_for(0.0)

    def frame(self, k: int, *, odometry: bool = True) -> None:
        """Frame k's cloud and label image, with the odometry its sweep needs first."""
        if odometry:
            self.publish("odom", *self.drive.odometry_until(self.drive.sweep_end(k) + ODOM_STEP_NS))
        self.publish("points", self.drive.clouds[k])
        self.publish("labels", self.drive.labels[k])

    def spin_for(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while True:
            self.executor.spin_once(timeout_sec=0.005)
            if time.monotonic() >= end:
                return

    def spin_until(self, predicate, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() >= end:
                return False
            self.executor.spin_once(timeout_sec=0.01)
        return True

    def call(self, name: str):
        from std_srvs.srv import Trigger

        client = self.clients[name]
        assert self.spin_until(client.service_is_ready, 10.0)
        future = client.call_async(Trigger.Request())
        assert self.spin_until(future.done, 10.0)
        return future.result()

    def latest_diagnostics(self, **expected) -> dict:
        """Wait for a /diagnostics report holding `expected` (values as strings) and return it."""
        def matching() -> bool:
            return bool(self.diagnostics) and all(self.diagnostics[-1].get(k) == str(v) for k, v in expected.items())

        assert self.spin_until(matching, 5.0), (expected, self.diagnostics[-1:] if self.diagnostics else None)
        return self.diagnostics[-1]

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self.probe.destroy_node()


@pytest.fixture
def harness(ros, drive, request):
    overrides = getattr(request, "param", {})
    made = Harness(ros, drive, **overrides)
    yield made
    made.close()


def _cloud_voxels(msg) -> tuple[np.ndarray, np.ndarray]:
    cloud = cloud_to_array(msg)
    centres = np.stack([cloud["x"], cloud["y"], cloud["z"]], axis=1).astype(np.float64)
    return np.floor(centres / VOXEL).astype(np.int64), cloud["label"].astype(np.int64)


def test_fused_map_equals_the_pipelines_and_agrees_with_ground_truth(harness, drive):
    for k in range(FRAMES):
        harness.frame(k)
    assert harness.spin_until(lambda: harness.node.counts["fused"] == FRAMES, 20.0), harness.node.counts
    last_stamp = stamp_to_ns(drive.labels[-1].header.stamp)
    reference = drive.reference_map(range(FRAMES)).voxels()

    def arrived() -> bool:
        return any(stamp_to_ns(m.header.stamp) == last_stamp and m.width == len(reference)
                   for m in harness.voxel_clouds)

    assert harness.spin_until(arrived, 5.0), [(m.header.stamp, m.width) for m in harness.voxel_clouds[-3:]]
    msg = next(m for m in reversed(harness.voxel_clouds) if stamp_to_ns(m.header.stamp) == last_stamp)
    assert msg.header.frame_id == "map"
    assert {f.name for f in msg.fields} >= {"x", "y", "z", "rgb", "label", "confidence"}
    keys, labels = _cloud_voxels(msg)
    # The pipeline's computation on the same messages: the same voxels with the same labels.
    assert len(reference) > 300
    np.testing.assert_array_equal(keys, reference.keys)
    np.testing.assert_array_equal(labels, reference.labels)
    # Independently: a voxel's label is the class most of the LiDAR points in it truly have.
    majority, known = drive.truth_majority(keys)
    assert known.mean() > 0.95
    agreement = (labels[known] == majority[known]).mean()
    assert agreement > 0.95, agreement
    # The package's map message says the same.
    assert harness.spin_until(lambda: any(m.header.stamp == msg.header.stamp for m in harness.voxel_maps), 5.0)
    voxel_map = next(m for m in harness.voxel_maps if m.header.stamp == msg.header.stamp)
    np.testing.assert_array_equal(np.asarray(voxel_map.keys).reshape(-1, 3), reference.keys)
    np.testing.assert_array_equal(np.asarray(voxel_map.labels), reference.labels)
    assert voxel_map.label_set == "sim_offroad"
    report = harness.latest_diagnostics(clouds_fused=FRAMES)
    assert report["clouds_received"] == str(FRAMES) and report["voxels"] == str(len(reference))
    assert all(report[f"clouds_dropped_{r}"] == "0" for r in ("no_labels", "no_camera_info", "no_tf", "bad_cloud"))


@pytest.mark.parametrize("harness", [{"tf_timeout_s": 0.5}], indirect=True)
def test_late_tf_is_waited_for_and_missing_tf_drops_the_cloud_after_the_timeout(harness, drive):
    # Odometry only up to before frame 0's sweep: the cloud and its labels arrive first.
    harness.publish("odom", *drive.odometry_until(drive.frames[0].lidar.start_ns - ODOM_STEP_NS))
    harness.frame(0, odometry=False)
    assert harness.spin_until(lambda: len(harness.node._waiter) == 1, 5.0)
    harness.spin_for(0.1)
    assert harness.node.counts["fused"] == 0 and len(harness.node._waiter) == 1
    harness.publish("odom", *drive.odometry_until(drive.sweep_end(0) + ODOM_STEP_NS))  # 100 ms late
    assert harness.spin_until(lambda: harness.node.counts["fused"] == 1, 5.0), harness.node.counts
    assert harness.node.counts["dropped_no_tf"] == 0

    # Frame 1's odometry never comes: the cloud waits tf_timeout_s, then is dropped and counted.
    started = time.monotonic()  # before the cloud is handed to the waiter, so its deadline is >= started + 0.5 s
    harness.frame(1, odometry=False)
    assert harness.spin_until(lambda: len(harness.node._waiter) == 1, 5.0)
    harness.spin_for(started + 0.3 - time.monotonic())
    assert harness.node.counts["dropped_no_tf"] == 0 and len(harness.node._waiter) == 1
    assert harness.spin_until(lambda: harness.node.counts["dropped_no_tf"] == 1, 5.0)
    assert time.monotonic() - started >= 0.5
    report = harness.latest_diagnostics(clouds_dropped_no_tf=1)
    assert report["clouds_fused"] == "1" and report["waiting_for_tf"] == "0"
    from diagnostic_msgs.msg import DiagnosticStatus

    assert any(d["_level"] == DiagnosticStatus.WARN for d in harness.diagnostics)  # in the period of the drop


@pytest.mark.parametrize("harness", [{"max_pending_clouds": 1, "labels_wait_s": 5.0}], indirect=True)
def test_clouds_waiting_for_labels_are_bounded(harness, drive):
    for k in range(FRAMES):  # no label images: each new cloud pushes the one before out
        harness.publish("points", drive.clouds[k])
    report = harness.latest_diagnostics(clouds_dropped_no_labels=FRAMES - 1, waiting_for_labels=1)
    assert report["clouds_received"] == str(FRAMES)
    harness.publish("odom", *drive.odometry_until(drive.sweep_end(FRAMES - 1) + ODOM_STEP_NS))
    harness.publish("labels", drive.labels[FRAMES - 1])  # the cloud still waiting gets its labels and is fused
    assert harness.spin_until(lambda: harness.node.counts["fused"] == 1, 10.0), harness.node.counts
    assert harness.node.counts["dropped_bad_cloud"] == 0


def test_bad_input_is_counted_and_skipped(harness, drive):
    stamp = drive.frames[0].lidar.start_ns
    nan_cloud = xyz_to_cloud(np.full((64, 3), np.nan, np.float32), stamp_ns=stamp, frame_id=LIDAR, is_dense=False,
                             factory=drive.factory)
    no_xyz = array_to_cloud(np.zeros(64, [("intensity", np.float32)]), stamp_ns=stamp, frame_id=LIDAR,
                            factory=drive.factory)
    rgb_labels = array_to_image(np.zeros((96, 160, 3), np.uint8), "rgb8",
                                header=make_header(drive.factory, drive.frames[0].stamp_ns, CAMERA),
                                factory=drive.factory)
    zero = drive.factory.make("geometry_msgs/msg/Quaternion", x=0.0, y=0.0, z=0.0, w=0.0)
    pose = drive.factory.make("geometry_msgs/msg/Pose", orientation=zero)
    bad_odometry = drive.factory.make("nav_msgs/msg/Odometry", header=make_header(drive.factory, stamp, ODOM),
                                      child_frame_id=BASE, pose=drive.factory.make(
                                          "geometry_msgs/msg/PoseWithCovariance", pose=pose))
    harness.publish("points", nan_cloud, no_xyz)
    harness.publish("labels", rgb_labels)
    harness.publish("odom", bad_odometry)
    report = harness.latest_diagnostics(clouds_dropped_bad_cloud=2, labels_refused=1, transform_messages_refused=1)
    assert report["clouds_fused"] == "0" and report["labels_received"] == "0"
    harness.frame(0)  # a good frame after the bad ones is fused
    assert harness.spin_until(lambda: harness.node.counts["fused"] == 1, 10.0), harness.node.counts
    report = harness.latest_diagnostics(clouds_fused=1)
    assert report["clouds_dropped_bad_cloud"] == "2" and report["voxels"] != "0"


def test_map_services_save_clear_and_load(ros, drive, tmp_path):
    saved = tmp_path / "map.npz"
    harness = Harness(ros, drive, save_path=str(saved))
    try:
        for k in range(2):
            harness.frame(k)
        assert harness.spin_until(lambda: harness.node.counts["fused"] == 2, 20.0)
        before = harness.node.semantic_map.voxels()
        assert len(before) > 100

        reply = harness.call("save_map")
        assert reply.success and str(len(before)) in reply.message, reply.message
        on_disk, label_set, _ = load_voxels(saved)
        np.testing.assert_array_equal(on_disk.keys, before.keys)
        np.testing.assert_array_equal(on_disk.log_probs, before.log_probs)
        assert label_set.name == "sim_offroad"

        reply = harness.call("clear_map")
        assert reply.success and len(harness.node.semantic_map) == 0
        # the published map too
        assert harness.spin_until(lambda: harness.voxel_clouds and harness.voxel_clouds[-1].width == 0, 5.0)

        reply = harness.call("load_map")  # load_path is empty: save_path is loaded
        assert reply.success, reply.message
        after = harness.node.semantic_map.voxels()
        for name in ("keys", "log_probs", "observations", "last_seen_ns", "occupancy"):
            np.testing.assert_array_equal(getattr(after, name), getattr(before, name))
        assert harness.spin_until(lambda: harness.voxel_clouds and harness.voxel_clouds[-1].width == len(before), 5.0)
        keys, labels = _cloud_voxels(harness.voxel_clouds[-1])
        np.testing.assert_array_equal(keys, before.keys)
        np.testing.assert_array_equal(labels, before.labels)
    finally:
        harness.close()

    # Without save_path the services refuse with a reason instead of failing.
    harness = Harness(ros, drive)
    try:
        reply = harness.call("save_map")
        assert not reply.success and "save_path" in reply.message
        reply = harness.call("load_map")
        assert not reply.success and "load_path" in reply.message
    finally:
        harness.close()


def test_launcher_loads_at_start_and_saves_on_shutdown(ros, drive, tmp_path):
    """`ros2 run`'s executable in a process of its own: load_path read at start, save_path written on Ctrl-C."""
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from sensor_msgs.msg import PointCloud2

    from seg_perception.mapping import save_map

    start, out = tmp_path / "start.npz", tmp_path / "out.npz"
    semantic_map = drive.reference_map(range(1))
    save_map(start, semantic_map, load_label_set("sim_offroad"))
    namespace = f"{NAMESPACE}_launcher"
    probe = Node("probe", namespace=namespace, context=ros)
    clouds = []
    probe.create_subscription(PointCloud2, f"{NODE}/voxel_cloud", clouds.append, 10)
    executor = SingleThreadedExecutor(context=ros)
    executor.add_node(probe)
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "voxel_mapping_node"), "--ros-args", "-r", f"__ns:={namespace}",
         "-p", f"load_path:={start}", "-p", f"save_path:={out}", "-p", "save_on_shutdown:=true",
         "-p", "publish_rate_hz:=10.0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])})
    try:
        # A published map shows the node spinning, with the loaded voxels.
        deadline = time.monotonic() + 60.0
        while not clouds and time.monotonic() < deadline and process.poll() is None:
            executor.spin_once(timeout_sec=0.05)
        assert clouds and clouds[-1].width == len(semantic_map), process.poll()
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
        executor.shutdown()
        probe.destroy_node()
    assert process.returncode == 0, output
    assert f"saved {len(semantic_map)} voxels" in output, output
    written, _, _ = load_voxels(out)
    expected = semantic_map.voxels()
    np.testing.assert_array_equal(written.keys, expected.keys)
    np.testing.assert_array_equal(written.log_probs, expected.log_probs)


def test_live_parameters_are_validated(harness):
    from rclpy.parameter import Parameter

    node = harness.node
    result = node.set_parameters([Parameter("publish_rate_hz", value=-1.0)])[0]
    assert not result.successful and "publish_rate_hz" in result.reason
    result = node.set_parameters([Parameter("voxel_size", value=0.5)])[0]
    assert not result.successful and "voxel_size" in result.reason  # read-only
    result = node.set_parameters([Parameter("publish_rate_hz", value=20.0)])[0]
    assert result.successful
    assert node._publish_timer.timer_period_ns == 50_000_000
    assert node.get_parameter("publish_rate_hz").value == 20.0


def test_static_transform_strings(ros):
    from seg_perception.pipeline import ConfigError
    from seg_perception.ros.transforms import parse_static_transform

    half = np.sqrt(0.5)
    static = parse_static_transform(f"base_link lidar 0.4 0 2.0 0 0 {half} {half}")
    assert (static.parent, static.child) == ("base_link", "lidar")
    expected = np.array([[0, -1, 0, 0.4], [1, 0, 0, 0], [0, 0, 1, 2.0], [0, 0, 0, 1]], float)  # 90° about z
    np.testing.assert_allclose(static.matrix(), expected, atol=1e-12)
    for text, why in (("base_link lidar 0 0 0 0 0 0", "8 fields"), ("base_link lidar 0 0 x 0 0 0 1", "non-number"),
                      ("base_link lidar 0 0 0 0 0 0 2", "not a unit quaternion"),
                      ("base_link lidar 0 0 nan 0 0 0 1", "non-finite")):
        with pytest.raises(ConfigError, match=why):
            parse_static_transform(text)


def test_crash_inputs_leave_the_node_mapping(harness, drive):
    """Clouds that used to kill the node (an x field of count 2; a point_step of 2**31): refused and
    counted at WARN, and the next good frame is fused."""
    import copy

    good = drive.clouds[0]
    counted = copy.deepcopy(good)
    counted.fields[0].count = 2
    huge_step = copy.deepcopy(good)
    huge_step.point_step = 2 ** 31
    harness.publish("points", counted, huge_step)
    report = harness.latest_diagnostics(clouds_dropped_bad_cloud=2)
    assert report["_level"] in (1, b"\x01")
    harness.frame(0)
    assert harness.spin_until(lambda: harness.node.counts["fused"] == 1, 10.0), harness.node.counts


def test_a_damaged_map_file_is_refused_by_load_map_and_the_node_maps_on(ros, drive, tmp_path):
    truncated = tmp_path / "map.npz"
    truncated.write_bytes(b"PK\x03\x04" + b"\x00" * 40)
    harness = Harness(ros, drive, save_path=str(truncated))  # load_map loads save_path when load_path is empty
    try:
        reply = harness.call("load_map")
        assert not reply.success and str(truncated) in reply.message
        harness.frame(0)
        assert harness.spin_until(lambda: harness.node.counts["fused"] == 1, 10.0), harness.node.counts
    finally:
        harness.close()


def test_costmap_and_markers_arrive_in_the_map_frame_with_the_maps_stamp(harness, drive):
    """Nav2 and RViz outputs: a nav_msgs/OccupancyGrid around base_link and a MarkerArray, stamped with the
    newest fused labels, in map_frame; the grid's cells are costs 0..100 or -1."""
    from nav_msgs.msg import OccupancyGrid
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from visualization_msgs.msg import MarkerArray

    grids, markers = [], []
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    harness.probe.create_subscription(OccupancyGrid, f"{NODE}/costmap", grids.append, qos)
    harness.probe.create_subscription(MarkerArray, f"{NODE}/voxel_markers", markers.append, qos)
    for k in range(2):
        harness.frame(k)
    assert harness.spin_until(lambda: harness.node.counts["fused"] == 2, 20.0)
    stamp = harness.node.stamp_ns
    assert harness.spin_until(lambda: any(stamp_to_ns(g.header.stamp) == stamp for g in grids)
                              and any(m.markers and stamp_to_ns(m.markers[-1].header.stamp) == stamp
                                      for m in markers), 10.0)
    grid = next(g for g in grids if stamp_to_ns(g.header.stamp) == stamp)
    assert grid.header.frame_id == "map" and grid.info.width * grid.info.height == len(grid.data)
    assert abs(grid.info.resolution - 0.2) < 1e-6
    cells = np.asarray(grid.data)
    assert ((cells == -1) | ((cells >= 0) & (cells <= 100))).all() and (cells >= 0).any()
    shown = next(m for m in markers if m.markers and stamp_to_ns(m.markers[-1].header.stamp) == stamp)
    assert {m.header.frame_id for m in shown.markers} == {"map"}


def test_tf_and_tf_static_from_a_probe_drive_the_node_and_withheld_transforms_warn(ros, drive):
    """With tf2_msgs built in the workspace, the node places sweeps from /tf and /tf_static alone (no
    static_transforms, no odometry topic); with the transforms withheld it drops the cloud after tf_timeout_s
    and /diagnostics goes WARN."""
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from tf2_msgs.msg import TFMessage

    from seg_perception.io import matrix_to_transform_stamped, transform_to_matrix

    harness = Harness(ros, drive, static_transforms=None, odom_topic="")
    try:
        assert harness.node.transforms.backend == "tf_topics"
        harness.frame(0, odometry=False)  # no transforms yet: the cloud waits, then is dropped
        assert harness.spin_until(lambda: harness.node.counts["dropped_no_tf"] == 1, 10.0), harness.node.counts
        report = harness.latest_diagnostics(clouds_dropped_no_tf=1)
        assert report["_level"] in (1, b"\x01") and report["transforms"] == "tf_topics"
        static_qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                                durability=DurabilityPolicy.TRANSIENT_LOCAL)
        tf_static = harness.probe.create_publisher(TFMessage, "/tf_static", static_qos)
        tf = harness.probe.create_publisher(TFMessage, "/tf", QoSProfile(depth=100,
                                                                     reliability=ReliabilityPolicy.RELIABLE))
        tf_static.publish(TFMessage(transforms=[
            matrix_to_transform_stamped(M, parent, child, 0, factory=drive.factory)
            for (parent, child), M in drive.static_matrices.items()]))
        k = 1
        moving = [matrix_to_transform_stamped(transform_to_matrix(m.pose.pose), m.header.frame_id, m.child_frame_id,
                                              stamp_to_ns(m.header.stamp), factory=drive.factory)
                  for m in drive.odometry_until(drive.sweep_end(k) + ODOM_STEP_NS)]
        assert harness.spin_until(lambda: tf.get_subscription_count() > 0, 5.0)
        for start in range(0, len(moving), 20):
            tf.publish(TFMessage(transforms=moving[start:start + 20]))
        harness.spin_for(0.2)
        harness.publish("points", drive.clouds[k])
        harness.publish("labels", drive.labels[k])
        assert harness.spin_until(lambda: harness.node.counts["fused"] == 1, 15.0), harness.node.counts
    finally:
        harness.close()
