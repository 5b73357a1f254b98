"""perception_node: segmentation_node plus LiDAR labelling and a semantic voxel map in one process, so that
the labels never cross a topic (the vehicle set-up).

Everything segmentation_node does (lifecycle, image outputs, /diagnostics, live `k` and `outputs`), and:

Subscriptions:
    cloud_topic        sensor_msgs/PointCloud2 with x, y, z (a per-point "t" field, ns after the stamp,
                       deskews the sweep), synchronised with the RGB frames
    /tf, /tf_static, odom_topic, static_transforms: the transforms (see ros.transforms.TransformIntake:
                       tf2_ros where installed, else /tf and /tf_static where tf2_msgs is, and always
                       the static extrinsics and nav_msgs/Odometry poses given by parameters)
Publications (each only while someone subscribes, every 1 / `publish_rate_hz` s, in `map_frame`,
stamped with the newest fused frame):
    ~/voxel_cloud      sensor_msgs/PointCloud2: voxel centres with rgb, label and confidence
    ~/voxel_map        seg_perception/SemanticVoxelMap
    ~/costmap          nav_msgs/OccupancyGrid: traversability around base_frame (0..100, -1 unknown), for Nav2
    ~/voxel_markers    visualization_msgs/MarkerArray: cubes by class, coarser with distance, and a legend
Parameters: `seg_perception.pipeline.parameters.PERCEPTION`; `publish_rate_hz` changes live too.

A frame with a sweep waits, up to `tf_timeout_s` and `max_pending_clouds` frames, until the transforms
cover the sweep, then goes to the worker anyway (its segmentation is published; the sweep is skipped and
counted when a transform is still missing). Frames keep their order. With `load_path` the map starts
from a saved one; with `save_on_shutdown` it is saved to `save_path` on cleanup and shutdown.
"""
from __future__ import annotations

import threading
from typing import Any

from nav_msgs.msg import OccupancyGrid
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from sensor_msgs.msg import PointCloud2
from visualization_msgs.msg import MarkerArray

from seg_perception.io import TransformError
from seg_perception.mapping import MappingError, SemanticVoxelMap, load_map, save_map, voxels_to_cloud, voxels_to_msg
from seg_perception.msg import SemanticVoxelMap as SemanticVoxelMapMsg
from seg_perception.pipeline import FrameBundle, Perception, transforms_needed_until
from seg_perception.pipeline.outputs import NAVIGATION_OUTPUTS, navigation_messages
from seg_perception.pipeline.parameters import PERCEPTION

from .messages import RclpyFactory
from .segmentation_node import OUTPUT_QOS_DEPTH, SegmentationNode, run
from .transforms import TransformIntake


class PerceptionNode(SegmentationNode):
    """segmentation_node with the sweeps labelled through the camera and fused into a voxel map."""

    table = PERCEPTION
    status_name = "perception"

    def __init__(self, node_name: str = "perception_node", **kwargs: Any) -> None:
        # Before the base class declares the parameters: a refused override destroys the half-built node.
        self._map_outputs: dict[str, Any] = {}
        self._map_timer: Any = None
        self._map_lock = threading.Lock()  # the map publishers and timer against their teardown
        self._evicted = 0
        self.transforms: TransformIntake | None = None  # made on the first configure, kept for the node's life
        super().__init__(node_name, **kwargs)

    def _make_perception(self, segmenter: Any) -> Perception:
        if self.transforms is None:  # its parameters are read-only, so one intake serves every configure
            self.transforms = TransformIntake(self, static_transforms=self.values["static_transforms"],
                                              odom_topic=self.values["odom_topic"])
            self.transforms.add_listener(self._poll)  # a frame waiting for a transform may go
        mapping, semantic_map = self.config.mapping, None
        if self.values["mapping"] and self.values["load_path"]:
            semantic_map, label_set = load_map(self.values["load_path"])
            if label_set is not None and label_set.name != segmenter.label_set.name:
                raise ValueError(f"the map in {self.values['load_path']} has label set {label_set.name!r}, the model "
                                 f"{segmenter.label_set.name!r}")
            self.get_logger().info(f"map of {len(semantic_map)} voxels loaded from {self.values['load_path']}")
        elif self.values["mapping"]:
            semantic_map = SemanticVoxelMap(segmenter.label_set.num_classes, mapping.voxel_size, radius=mapping.radius,
                                            max_voxels=mapping.max_voxels,
                                            dynamic_classes=segmenter.label_set.dynamic_ids(),
                                            dynamic_decay_s=mapping.dynamic_decay_s)
        self._evicted = 0
        return Perception(segmenter, self.transforms, semantic_map=semantic_map, map_frame=mapping.map_frame)

    def _intake_options(self) -> dict[str, Any]:
        options = super()._intake_options()
        if self.perception.semantic_map is not None:
            options["slops_ns"] = {**options["slops_ns"], "lidar": int(self.config.slop_ms["lidar"] * 1e6)}
            options.update(ready=self._transforms_ready, ready_timeout_ns=int(self.values["tf_timeout_s"] * 1e9),
                           max_waiting=self.values["max_pending_clouds"])
        return options

    def _subscribe(self, qos: Any) -> None:
        super()._subscribe(qos)
        if self.perception.semantic_map is not None:
            self._add_subscription(PointCloud2, self.config.topics["lidar"], "lidar", qos)

    def _transforms_ready(self, bundle: FrameBundle) -> bool:
        """Whether the transforms that labelling and fusing the bundle's sweep need have arrived."""
        sweep, camera = bundle.lidar, self.perception.camera
        if sweep is None or camera is None:
            return True
        map_frame = self.perception.map_frame
        end = transforms_needed_until(sweep, bundle.stamp_ns)
        needed = [(camera.frame_id, bundle.stamp_ns), (map_frame, bundle.stamp_ns), (map_frame, end)]
        if sweep.time_offset_ns.any():
            needed.append((map_frame, sweep.stamp_ns))
        try:
            for target, stamp in needed:
                self.transforms.lookup(target, sweep.frame_id, stamp)
        except TransformError:
            return False
        return True

    def _activate(self) -> None:
        if self.perception.semantic_map is None:
            return
        with self._map_lock:
            self._map_outputs = {
                "voxel_cloud": self.create_publisher(PointCloud2, "~/voxel_cloud", OUTPUT_QOS_DEPTH),
                "voxel_map": self.create_publisher(SemanticVoxelMapMsg, "~/voxel_map", OUTPUT_QOS_DEPTH),
                "costmap": self.create_publisher(OccupancyGrid, "~/costmap", OUTPUT_QOS_DEPTH),
                "voxel_markers": self.create_publisher(MarkerArray, "~/voxel_markers", OUTPUT_QOS_DEPTH)}
            # A group of its own: a map snapshot waits for the frame in progress without holding up the intake.
            self._map_timer = self.create_timer(1.0 / self.values["publish_rate_hz"], self._publish_map,
                                                callback_group=MutuallyExclusiveCallbackGroup(), clock=self._steady)

    def _deactivate(self) -> None:
        with self._map_lock:
            if self._map_timer is not None:
                self.destroy_timer(self._map_timer)
            for publisher in self._map_outputs.values():
                self.destroy_publisher(publisher)
            self._map_timer, self._map_outputs = None, {}

    def _publish_map(self) -> None:
        with self._map_lock:
            wanted = [name for name, publisher in self._map_outputs.items() if publisher.get_subscription_count()]
            perception = self.perception
            if not wanted or perception is None:
                return
            navigation = tuple(name for name in wanted if name in NAVIGATION_OUTPUTS)
            with self._lock:  # no fusion meanwhile: the map is read whole
                voxels = perception.semantic_map.voxels()
                messages = self._navigation(perception, navigation, voxels) if navigation and len(voxels) else {}
            for name, msg in messages.items():
                self._map_outputs[name].publish(msg)
            if not len(voxels):
                return
            stamp, frame_id = int(voxels.last_seen_ns.max()), perception.map_frame
            label_set, mapping, factory = perception.segmenter.label_set, self.config.mapping, RclpyFactory()
            if "voxel_cloud" in wanted:
                self._map_outputs["voxel_cloud"].publish(
                    voxels_to_cloud(voxels, label_set, stamp_ns=stamp, frame_id=frame_id, factory=factory))
            if "voxel_map" in wanted:
                self._map_outputs["voxel_map"].publish(voxels_to_msg(
                    voxels, label_set_name=label_set.name, stamp_ns=stamp, frame_id=frame_id, radius=mapping.radius,
                    max_voxels=mapping.max_voxels, evicted_total=self._evicted, factory=factory))

    def _navigation(self, perception: Perception, wanted: tuple[str, ...], voxels: Any) -> dict[str, Any]:
        """The costmap and markers around base_frame; none (counted, at WARN) while its pose is not known."""
        mapping = self.config.mapping
        try:
            robot = self.transforms.lookup(mapping.map_frame, mapping.base_frame, 0)[:3, 3]
        except TransformError as exc:
            self._notes[f"no costmap: no {mapping.base_frame} pose"] += 1
            self.get_logger().warning(f"no costmap: {exc}", throttle_duration_sec=5.0)
            return {}
        return navigation_messages(perception.semantic_map, perception.segmenter.label_set, mapping, robot,
                                   stamp_ns=int(voxels.last_seen_ns.max()), wanted=wanted, factory=RclpyFactory())

    def _after_frame(self, result: Any) -> None:
        if result.map_stats:
            self._evicted += int(result.map_stats.get("voxels_evicted", 0))

    def _release(self) -> None:
        semantic_map, path = self.perception.semantic_map, self.values["save_path"]
        if semantic_map is None or not (self.values["save_on_shutdown"] and path):
            return
        try:
            save_map(path, semantic_map, self.perception.segmenter.label_set)
            self.get_logger().info(f"map of {len(semantic_map)} voxels saved to {path}")
        except (MappingError, OSError) as exc:
            self.get_logger().error(f"saving the map to {path} failed: {exc}")

    def _status(self, perception: Perception) -> dict[str, Any]:
        semantic_map, intake = perception.semantic_map, self.intake
        if semantic_map is None:
            return {}
        values: dict[str, Any] = {"voxels": len(semantic_map), "map frame": perception.map_frame,
                                  "transforms from": self.transforms.backend,
                                  **{f"transform messages {k}": n for k, n in self.transforms.stats.items()}}
        if intake is not None:
            values.update({"frames sent on after tf_timeout_s": intake.held["timed_out"],
                           "frames dropped waiting for tf": intake.held["dropped"]})
        return values

    def _apply(self, changes: dict[str, Any]) -> str | None:
        refusal = super()._apply(changes)
        if refusal is None and "publish_rate_hz" in changes:
            with self._map_lock:
                if self._map_timer is not None:
                    self._map_timer.timer_period_ns = int(1e9 / changes["publish_rate_hz"])
        return refusal


def main(args: list[str] | None = None) -> None:
    raise SystemExit(run(PerceptionNode, args))


if __name__ == "__main__":
    main()
