"""A frame's results as ROS messages (either message world): what the nodes publish and replay records."""
from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from seg_perception.io import MessageFactory, RosbagsFactory, array_to_image, make_header
from seg_perception.mapping import class_costs, costmap_to_msg, traversability_costmap, voxels_to_markers

OVERLAY_ALPHA = 0.5


def overlay(rgb: np.ndarray, color: np.ndarray, alpha: float = OVERLAY_ALPHA) -> np.ndarray:
    """The camera image with the class colours blended over it (same size as the labels)."""
    if rgb.shape[:2] != color.shape[:2]:
        rgb = cv2.resize(rgb, color.shape[1::-1], interpolation=cv2.INTER_AREA)
    return cv2.addWeighted(np.ascontiguousarray(rgb), 1.0 - alpha, color, alpha, 0.0)


def image_messages(rgb: np.ndarray, segmentation: Any, color: np.ndarray, *, stamp_ns: int, frame_id: str,
                   factory: MessageFactory | None = None) -> dict[str, Any]:
    """labels (mono8, or mono16 above 255 classes), color and overlay (rgb8), confidence (32FC1; left
    out for a model that gives class ids only, whose confidence is unavailable).

    Args:
        color: the labels colourised (`LabelSet.colorize`), computed once by the caller, who often needs it too.
    """
    factory = factory or RosbagsFactory()
    labels = segmentation.labels
    common = {"header": make_header(factory, stamp_ns, frame_id), "factory": factory}
    messages = {
        "labels": array_to_image(labels, "mono8" if labels.dtype == np.uint8 else "mono16", **common),
        "color": array_to_image(color, "rgb8", **common),
        "overlay": array_to_image(overlay(rgb, color), "rgb8", **common),
    }
    if segmentation.confidence is not None:
        messages["confidence"] = array_to_image(np.ascontiguousarray(segmentation.confidence, np.float32), "32FC1",
                                                **common)
    return messages


def info_message(segmenter: Any, segmentation: Any, timing: dict[str, float], *, stamp_ns: int, frame_id: str,
                 given: tuple[str, ...], input_size: tuple[int, int], latency_ms: float = 0.0,
                 frames_dropped: int = 0, factory: MessageFactory | None = None) -> Any:
    """seg_perception/msg/SegmentationInfo for one frame (mean_confidence NaN when the model gives none)."""
    factory = factory or RosbagsFactory()
    spec, modalities = segmenter.spec, segmenter.modalities
    height, width = segmentation.labels.shape
    stages = [factory.make("seg_perception/msg/StageTiming", stage=name, duration_ms=float(ms))
              for name, ms in timing.items()]
    return factory.make(
        "seg_perception/msg/SegmentationInfo", header=make_header(factory, stamp_ns, frame_id),
        model_id=segmenter.source.model_id, label_set=segmenter.label_set.name,
        num_classes=segmenter.label_set.num_classes, modalities=[m for m in modalities if m in given],
        missing_modalities=[m for m in modalities if m not in given],
        backend=segmenter.backend_name, device=segmenter.device, precision=spec.precision,
        input_width=input_size[0], input_height=input_size[1], model_width=spec.width, model_height=spec.height,
        output_width=width, output_height=height, refine_k=spec.k,
        refined_fraction=float(segmentation.refined.mean()),
        mean_confidence=float(segmentation.confidence.mean()) if segmentation.confidence is not None else float("nan"),
        stages=stages, latency_ms=float(latency_ms), frames_dropped=int(frames_dropped))


NAVIGATION_OUTPUTS = ("costmap", "voxel_markers")


def navigation_messages(semantic_map: Any, label_set: Any, mapping: Any, robot_xyz: np.ndarray, *, stamp_ns: int,
                        wanted: tuple[str, ...] = NAVIGATION_OUTPUTS,
                        factory: MessageFactory | None = None) -> dict[str, Any]:
    """The map around the robot for planners and viewers: "costmap" (nav_msgs/OccupancyGrid, the rolling
    traversability window of `mapping`'s settings, a `MappingConfig`) and "voxel_markers"
    (visualization_msgs/MarkerArray, cubes by class, coarser with distance, and a legend), those `wanted`.
    Reads the live map: call it where the map is not being fused into."""
    factory = factory or RosbagsFactory()
    frame = mapping.map_frame
    messages = {}
    if "costmap" in wanted:
        grid = traversability_costmap(semantic_map, class_costs(label_set), robot_xyz=robot_xyz,
                                      resolution=max(mapping.costmap_resolution, semantic_map.voxel_size),
                                      size=(mapping.costmap_size_m, mapping.costmap_size_m),
                                      height_band=mapping.costmap_height_band, stamp_ns=stamp_ns, frame_id=frame)
        messages["costmap"] = costmap_to_msg(grid, factory=factory)
    if "voxel_markers" in wanted:
        messages["voxel_markers"] = voxels_to_markers(semantic_map.voxels(), label_set, robot_xyz=robot_xyz,
                                                      stamp_ns=stamp_ns, frame_id=frame, factory=factory)
    return messages
