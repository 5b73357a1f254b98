"""voxel_mapping_node: LiDAR sweeps labelled through the segmentation's images, fused into a semantic voxel map.

Each cloud is paired (pipeline.Synchronizer, the cloud as anchor) with the label image nearest to the
middle of its sweep within labels_slop_ms, waiting up to labels_wait_s of sensor time for it; it then
waits up to tf_timeout_s for the transforms it needs (camera ← lidar, map ← lidar over the sweep), and is
deskewed, labelled and fused by pipeline.map_sweep, the same code bag replay runs. At most
max_pending_clouds clouds wait for their labels, and as many for transforms: past that the oldest stops
waiting (paired with what has come, or dropped). With confidence_topic set but nothing published on it,
each cloud waits the whole labels_wait_s. Every drop is counted by reason on /diagnostics; a bad
message is logged, counted and skipped.

Subscriptions (relative names, remap freely; sensor QoS from qos_reliability / qos_depth):
    <cloud_topic>           sensor_msgs/PointCloud2   x, y, z (float), optional per-point t (ns since the stamp)
    <labels_topic>          sensor_msgs/Image          mono8 / mono16 class ids (the segmentation's ~/labels)
    <confidence_topic>      sensor_msgs/Image          32FC1 (the segmentation's ~/confidence; "" = none)
    <camera_info_topic>     sensor_msgs/CameraInfo     the segmented camera
    /tf, /tf_static, <odom_topic>, static_transforms   transforms (see ros.transforms.TransformIntake)

Publications (reliable); the map at publish_rate_hz while someone subscribes, stamped with the newest fused labels:
    ~/voxel_cloud   sensor_msgs/PointCloud2          voxel centres in map_frame: x, y, z, rgb, label, confidence
    ~/voxel_map     seg_perception/SemanticVoxelMap   label, confidence, observations and age per voxel
    /diagnostics    diagnostic_msgs/DiagnosticArray   every diagnostics_period_s: clouds received, fused and dropped
                                                      by reason, what waits, voxels, fusion time and latency

Services (std_srvs/Trigger):
    ~/save_map   write the map to save_path (.npz)
    ~/clear_map  forget every voxel
    ~/load_map   replace the map with load_path (or save_path when load_path is empty)

Parameters: pipeline.parameters.MAPPING, each declared with its descriptor (topics, label_set, map_frame,
voxel_size, radius, max_voxels, labels_slop_ms, labels_wait_s, tf_timeout_s, max_pending_clouds,
publish_rate_hz, static_transforms, odom_topic, save_path, save_on_shutdown, load_path, QoS,
diagnostics_period_s); publish_rate_hz changes live.
The map is loaded from load_path at start when set, and saved to save_path on shutdown when save_on_shutdown.
"""
from __future__ import annotations

import bisect
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_srvs.srv import Trigger

from seg_perception.io import CameraModel, ConversionError, image_to_array, stamp_to_ns
from seg_perception.labels import load_label_set
from seg_perception.mapping import MappingError, SemanticVoxelMap, load_map, save_map, voxels_to_cloud, voxels_to_msg
from seg_perception.pipeline import LidarSweep, MessageDecoder, Synchronizer, map_sweep, sweep_middle_ns
from seg_perception.pipeline.parameters import MAPPING

from .common import declare, diagnostic_array, sensor_qos, validating_callback
from .messages import RclpyFactory
from .transforms import TransformIntake, TransformWaiter

DROP_REASONS = ("no_labels", "no_camera_info", "no_tf", "bad_cloud")
_OUTPUT_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)


@dataclass
class _Cloud:
    sweep: LidarSweep
    arrived: float  # time.monotonic() on arrival, for the latency


@dataclass
class _Job:
    """A cloud with its labels, waiting for its transforms."""

    cloud: _Cloud
    labels: np.ndarray
    confidence: np.ndarray | None
    stamp_ns: int  # the label image's
    camera: CameraModel


class VoxelMappingNode(Node):
    """Fuses labelled LiDAR sweeps into a SemanticVoxelMap and publishes it (see the module docstring).

    Raises:
        ValueError: a parameter the table refuses; ConfigError: a static transform that does not parse;
        LabelSetError: an unknown label set; MappingError: map parameters or a load_path file the map refuses.
    """

    def __init__(self, node_name: str = "voxel_mapping_node", **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self.params = p = declare(self, MAPPING)
        self.label_set = load_label_set(p["label_set"])
        self.semantic_map = SemanticVoxelMap(self.label_set.num_classes, p["voxel_size"], radius=p["radius"] or None,
                                             max_voxels=p["max_voxels"])
        self.stamp_ns = 0  # the published map's stamp: the newest fused labels' (or loaded voxels')
        self.evicted_total = 0
        self.counts = {"received": 0, "fused": 0, "labels": 0, "bad_labels": 0, "bad_confidence": 0,
                       "bad_camera_info": 0, **{f"dropped_{r}": 0 for r in DROP_REASONS}}
        self._reported_drops = 0
        self._fusion_ms: list[float] = []
        self._latency_ms: list[float] = []
        if p["load_path"]:
            if Path(p["load_path"]).exists():
                self.get_logger().info(self.load(p["load_path"]))
            else:
                self.get_logger().warning(f"load_path {p['load_path']} does not exist; starting with an empty map")
        self._factory = RclpyFactory()
        self._decoder = MessageDecoder()
        self.camera: CameraModel | None = None
        slop_ns = int(p["labels_slop_ms"] * 1e6)
        streams = {"labels": slop_ns, **({"confidence": slop_ns} if p["confidence_topic"] else {})}
        self._sync = Synchronizer(streams, event_sensor=None, wait_ns=int(p["labels_wait_s"] * 1e9),
                                  max_buffered=max(16, 4 * p["max_pending_clouds"]))
        self._waiting_for_labels: list[int] = []  # the pairing stamps of the clouds in the synchroniser, sorted
        self.transforms = TransformIntake(self, static_transforms=p["static_transforms"], odom_topic=p["odom_topic"])
        self._waiter: TransformWaiter[_Job] = TransformWaiter(
            self, self.transforms, self._fuse, self._no_tf, timeout_s=p["tf_timeout_s"],
            capacity=p["max_pending_clouds"])

        qos = sensor_qos(p["qos_reliability"], p["qos_depth"])
        self.create_subscription(PointCloud2, p["cloud_topic"], self._on_cloud, qos)
        self.create_subscription(Image, p["labels_topic"], self._on_labels, qos)
        if p["confidence_topic"]:
            self.create_subscription(Image, p["confidence_topic"], self._on_confidence, qos)
        self.create_subscription(CameraInfo, p["camera_info_topic"], self._on_camera_info, qos)
        from seg_perception.msg import SemanticVoxelMap as SemanticVoxelMapMsg  # generated by the colcon build

        self._cloud_pub = self.create_publisher(PointCloud2, "~/voxel_cloud", _OUTPUT_QOS)
        self._map_pub = self.create_publisher(SemanticVoxelMapMsg, "~/voxel_map", _OUTPUT_QOS)
        self._diagnostics_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_service(Trigger, "~/save_map", self._on_save)
        self.create_service(Trigger, "~/clear_map", self._on_clear)
        self.create_service(Trigger, "~/load_map", self._on_load)
        self._publish_timer = self.create_timer(1.0 / p["publish_rate_hz"], self.publish_map)
        self.create_timer(p["diagnostics_period_s"], self.publish_diagnostics)
        self.add_on_set_parameters_callback(validating_callback(MAPPING, self._apply))
        self.get_logger().info(f"mapping {p['cloud_topic']} with {p['labels_topic']} into {p['map_frame']} "
                               f"({self.label_set.name}, {p['voxel_size']} m voxels; transforms: "
                               f"{self.transforms.backend})")

    # Inputs ------------------------------------------------------------------------------------------

    def _on_cloud(self, msg: PointCloud2) -> None:
        self.counts["received"] += 1
        try:
            sweep = self._decoder.decode("lidar", msg)
        except ConversionError as exc:
            self._drop("bad_cloud", f"cloud skipped: {exc}")
            return
        if not np.isfinite(sweep.points).all(axis=1).any():
            self._drop("bad_cloud", f"cloud skipped: none of its {len(sweep.points)} points is finite")
            return
        middle = sweep_middle_ns(sweep)
        refused = self._sync.stats["late_rgb"] + self._sync.stats["duplicate_rgb"]
        self._sync.add_rgb(middle, _Cloud(sweep, time.monotonic()))
        if self._sync.stats["late_rgb"] + self._sync.stats["duplicate_rgb"] > refused:
            self._drop("bad_cloud", f"cloud stamped {sweep.stamp_ns} skipped: not newer than the clouds already paired")
            return
        bisect.insort(self._waiting_for_labels, middle)
        self._pair()
        # Past max_pending_clouds the oldest stops waiting: it is paired with what has come, or dropped.
        while len(self._waiting_for_labels) > self.params["max_pending_clouds"]:
            self._pair(now_ns=self._waiting_for_labels[0] + self._sync.wait_ns)

    def _on_labels(self, msg: Image) -> None:
        try:
            labels = self._decoder.decode("labels", msg)
        except ConversionError as exc:
            self.counts["bad_labels"] += 1
            self.get_logger().warning(f"label image skipped: {exc}", throttle_duration_sec=5.0)
            return
        self.counts["labels"] += 1
        self._sync.add("labels", stamp_to_ns(msg.header.stamp), labels)
        self._pair()

    def _on_confidence(self, msg: Image) -> None:
        try:
            confidence = image_to_array(msg)
            if confidence.ndim != 2 or confidence.dtype != np.float32:
                raise ConversionError(f"confidence image has dtype {confidence.dtype} and shape {confidence.shape}; "
                                      "32FC1 expected")
        except ConversionError as exc:
            self.counts["bad_confidence"] += 1
            self.get_logger().warning(f"confidence image skipped: {exc}", throttle_duration_sec=5.0)
            return
        self._sync.add("confidence", stamp_to_ns(msg.header.stamp), confidence)
        self._pair()

    def _on_camera_info(self, msg: CameraInfo) -> None:
        try:
            self.camera = self._decoder.decode("camera_info", msg)
        except ConversionError as exc:
            self.counts["bad_camera_info"] += 1
            self.get_logger().warning(f"camera_info skipped: {exc}", throttle_duration_sec=5.0)

    # Pairing and fusion ------------------------------------------------------------------------------

    def _pair(self, now_ns: int | None = None) -> None:
        """Hand the clouds whose label image is settled (or whose wait ran out by `now_ns`, default: the
        newest stamp seen) to the transform waiter."""
        for bundle in self._sync.ready(now_ns):
            self._waiting_for_labels.remove(bundle.stamp_ns)
            labels = bundle.extras["labels"]
            if labels is None:
                self._drop("no_labels", f"cloud at {bundle.stamp_ns} skipped: no label image within "
                                        f"{self.params['labels_slop_ms']:g} ms")
            elif self.camera is None:
                self._drop("no_camera_info", "cloud skipped: no camera_info received yet")
            else:
                offset = bundle.offsets_ns["labels"]
                # The confidence counts only when it belongs to the same image as the labels.
                same = bundle.offsets_ns.get("confidence") == offset
                self._waiter.submit(_Job(bundle.rgb, labels, bundle.extras.get("confidence") if same else None,
                                         bundle.stamp_ns + offset, self.camera))

    def _fuse(self, job: _Job) -> None:
        """Label and fuse one cloud; TransformError (TF not there yet) propagates to the waiter."""
        try:
            mapped = map_sweep(self.semantic_map, job.cloud.sweep, job.labels, job.confidence, job.camera,
                               self.transforms.lookup, job.stamp_ns, map_frame=self.params["map_frame"])
        except MappingError as exc:
            self._drop("bad_cloud", f"cloud skipped: {exc}")
            return
        self.counts["fused"] += 1
        self.evicted_total += mapped.stats["voxels_evicted"]
        self.stamp_ns = max(self.stamp_ns, job.stamp_ns)
        self._fusion_ms.append(sum(mapped.timing.values()))
        self._latency_ms.append((time.monotonic() - job.cloud.arrived) * 1e3)

    def _no_tf(self, job: _Job, reason: str) -> None:
        self._drop("no_tf", f"cloud skipped: {reason}")

    def _drop(self, reason: str, message: str) -> None:
        self.counts[f"dropped_{reason}"] += 1
        self.get_logger().warning(message, throttle_duration_sec=5.0)

    # Outputs -----------------------------------------------------------------------------------------

    def publish_map(self) -> None:
        """Publish ~/voxel_cloud and ~/voxel_map, each only while someone subscribes."""
        cloud_wanted = self._cloud_pub.get_subscription_count() > 0
        map_wanted = self._map_pub.get_subscription_count() > 0
        if not (cloud_wanted or map_wanted):
            return
        voxels = self.semantic_map.voxels()
        frame = self.params["map_frame"]
        if cloud_wanted:
            self._cloud_pub.publish(voxels_to_cloud(voxels, self.label_set, stamp_ns=self.stamp_ns, frame_id=frame,
                                                    factory=self._factory))
        if map_wanted:
            settings = self.semantic_map.parameters()
            self._map_pub.publish(voxels_to_msg(voxels, label_set_name=self.label_set.name, stamp_ns=self.stamp_ns,
                                                frame_id=frame, radius=settings["radius"],
                                                max_voxels=settings["max_voxels"], evicted_total=self.evicted_total,
                                                factory=self._factory))

    def publish_diagnostics(self) -> None:
        """Counts since start, what waits now, the map's size and the fusion timings of the last period."""
        drops = sum(self.counts[f"dropped_{r}"] for r in DROP_REASONS)
        values: dict[str, Any] = {
            "clouds_received": self.counts["received"], "clouds_fused": self.counts["fused"],
            **{f"clouds_dropped_{r}": self.counts[f"dropped_{r}"] for r in DROP_REASONS},
            "labels_received": self.counts["labels"], "labels_refused": self.counts["bad_labels"],
            "confidence_refused": self.counts["bad_confidence"], "camera_info_refused": self.counts["bad_camera_info"],
            "waiting_for_labels": len(self._waiting_for_labels), "waiting_for_tf": len(self._waiter),
            "transforms": self.transforms.backend, "transform_messages_refused": self.transforms.stats["bad"],
            "voxels": len(self.semantic_map), "voxels_evicted": self.evicted_total,
            "fusion_ms_mean": f"{np.mean(self._fusion_ms):.1f}" if self._fusion_ms else "-",
            "latency_ms_mean": f"{np.mean(self._latency_ms):.1f}" if self._latency_ms else "-",
            "latency_ms_max": f"{np.max(self._latency_ms):.1f}" if self._latency_ms else "-",
        }
        self._fusion_ms.clear()
        self._latency_ms.clear()
        refused = sum(self.counts[k] for k in ("bad_labels", "bad_confidence", "bad_camera_info")) \
            + self.transforms.stats["bad"]
        new_drops, self._reported_drops = drops + refused - self._reported_drops, drops + refused
        level, message = DiagnosticStatus.OK, "ok"
        if new_drops:  # WARN while anything is dropped or refused
            level = DiagnosticStatus.WARN
            message = f"{new_drops} cloud(s) dropped or message(s) refused since the last report"
            self.get_logger().warning(message + ": " + ", ".join(
                f"{r} {self.counts[f'dropped_{r}']}" for r in DROP_REASONS if self.counts[f"dropped_{r}"]) + " in all")
        self._diagnostics_pub.publish(diagnostic_array(self, "voxel map", values, level=level, message=message))

    # Services and parameters -------------------------------------------------------------------------

    def save(self) -> str:
        """Save the map to save_path; returns what was done.

        Raises:
            MappingError: save_path is not set; OSError: it cannot be written.
        """
        path = self.params["save_path"]
        if not path:
            raise MappingError("save_path is not set; set the save_path parameter to save the map")
        save_map(path, self.semantic_map, self.label_set)
        return f"saved {len(self.semantic_map)} voxels to {path}"

    def load(self, path: str) -> str:
        """Replace the map with the one saved at `path`; returns what was done.

        Raises:
            MappingError: an unreadable file, or a map of another label set.
        """
        semantic_map, label_set = load_map(path)
        if label_set is not None and label_set.names != self.label_set.names:
            raise MappingError(f"{path} holds a map of label set {label_set.name!r} ({label_set.num_classes} classes); "
                               f"this node maps {self.label_set.name!r}")
        if semantic_map.num_classes != self.label_set.num_classes:
            raise MappingError(f"{path} holds a map of {semantic_map.num_classes} classes; this node maps "
                               f"{self.label_set.name!r} with {self.label_set.num_classes}")
        self.semantic_map, self.evicted_total = semantic_map, 0
        voxels = semantic_map.voxels()
        if len(voxels):
            self.stamp_ns = max(self.stamp_ns, int(voxels.last_seen_ns.max()))
        return f"loaded {len(semantic_map)} voxels ({semantic_map.voxel_size:g} m) from {path}"

    def _on_save(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        return self._serve(response, self.save)

    def _on_load(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        path = self.params["load_path"] or self.params["save_path"]
        if not path:
            response.success, response.message = False, "neither load_path nor save_path is set"
            return response
        return self._serve(response, lambda: self.load(path))

    def _on_clear(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        return self._serve(response, self.clear)

    def clear(self) -> str:
        """Forget every voxel (the map keeps its parameters); returns what was done."""
        cleared = len(self.semantic_map)
        self.semantic_map = SemanticVoxelMap(self.semantic_map.num_classes, self.semantic_map.voxel_size,
                                             **self.semantic_map.parameters())
        self.evicted_total = 0
        return f"cleared {cleared} voxels"

    def _serve(self, response: Trigger.Response, action: Any) -> Trigger.Response:
        try:
            response.message, response.success = action(), True
        except (MappingError, OSError) as exc:
            response.message, response.success = str(exc), False
        (self.get_logger().info if response.success else self.get_logger().error)(response.message)
        return response

    def _apply(self, changes: dict[str, Any]) -> str | None:
        """Live parameter changes (the table has vetted them): only publish_rate_hz is not read-only."""
        self.params.update(changes)
        if "publish_rate_hz" in changes:
            self.destroy_timer(self._publish_timer)
            self._publish_timer = self.create_timer(1.0 / changes["publish_rate_hz"], self.publish_map)
        return None

    def close(self) -> None:
        """Save the map when save_on_shutdown is set (called by main on shutdown); errors are logged."""
        if not self.params["save_on_shutdown"]:
            return
        try:
            self.get_logger().info(self.save())
        except (MappingError, OSError) as exc:
            self.get_logger().error(f"the map was not saved on shutdown: {exc}")


def main(args: list[str] | None = None) -> int:
    """`ros2 run seg_perception voxel_mapping_node`: spin until Ctrl-C or shutdown, then save if configured."""
    rclpy.init(args=args)
    node = None
    try:
        node = VoxelMappingNode()
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except ValueError as exc:  # a parameter, label set, static transform or map file refused (all ValueErrors)
        if node is not None:
            raise
        rclpy.logging.get_logger("voxel_mapping_node").fatal(str(exc))
        return 1
    finally:
        if node is not None:
            node.close()
            node.destroy_node()
        rclpy.try_shutdown()
    return 0

if __name__ == "__main__":
    raise SystemExit(main())
