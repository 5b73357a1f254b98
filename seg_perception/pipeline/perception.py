"""The perception graph for one frame bundle: segment, label the LiDAR sweep through the camera, fuse."""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from seg_perception.io import CameraModel, TransformBuffer, TransformError
from seg_perception.mapping import PointLabels, SemanticVoxelMap, deskew, label_points

from .decode import LidarSweep


@dataclass
class FrameResult:
    """What one bundle gave: the segmentation, the labelled sweep, its points in the map frame and the
    fusion statistics (when a sweep, a camera model and the transforms were there), per-stage
    milliseconds, and notes on what was skipped and why."""

    stamp_ns: int
    segmentation: Any  # engines.Segmentation
    point_labels: PointLabels | None = None
    points_in_map: np.ndarray | None = None  # (N, 3) float32, point for point the sweep's
    map_stats: dict[str, int] | None = None
    timing: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


class Perception:
    """Segments each bundle and, with a voxel map, labels its LiDAR sweep and fuses it.

    Args:
        segmenter: an engines.Segmenter.
        transforms: the TF buffer the caller keeps fed (live TF or the bag's /tf and /tf_static).
        semantic_map: fuse into this map; None: segmentation only.
        map_frame: the fixed frame of the map.
        deskew_slices: time slices for motion compensation of the sweep (0: no deskewing).
    """

    def __init__(self, segmenter: Any, transforms: TransformBuffer, *, semantic_map: SemanticVoxelMap | None = None,
                 map_frame: str = "map", deskew_slices: int = 32) -> None:
        self.segmenter = segmenter
        self.transforms = transforms
        self.semantic_map = semantic_map
        self.map_frame = map_frame
        self.deskew_slices = deskew_slices
        self.camera: CameraModel | None = None  # the latest camera_info, set by the caller

    def process(self, bundle: Any) -> FrameResult:
        """Run the graph on a FrameBundle (rgb required; thermal, events, lidar optional)."""
        return self.fuse(bundle, self.segment(bundle), self.camera)

    def segment(self, bundle: Any) -> FrameResult:
        """The bundle's segmentation. Touches no shared state, so calls on different bundles may run at
        once where the segmenter allows it (CPU backends)."""
        start = time.perf_counter()
        segmentation = self.segmenter.segment(
            **{m: getattr(bundle, m) for m in ("rgb", "thermal", "events")
               if getattr(bundle, m) is not None and m in self.segmenter.modalities})
        result = FrameResult(bundle.stamp_ns, segmentation, timing=dict(segmentation.timing))
        result.timing["total"] = (time.perf_counter() - start) * 1e3
        return result

    def fuse(self, bundle: Any, result: FrameResult, camera: CameraModel | None) -> FrameResult:
        """With a voxel map, label the bundle's LiDAR sweep through `result`'s segmentation, seen by
        `camera` (the camera_info in force at the frame), and fuse it; in bundle order (the map
        accumulates). Returns `result`, completed."""
        start = time.perf_counter()
        sweep = bundle.lidar
        if self.semantic_map is not None and sweep is not None:
            if camera is None:
                result.notes.append("no camera_info yet: the sweep is not labelled")
            else:
                try:
                    self._map(sweep, bundle.stamp_ns, camera, result)
                except TransformError as exc:
                    result.notes.append(f"no transform for the sweep: {exc}")
        result.timing["total"] += (time.perf_counter() - start) * 1e3
        return result

    def _map(self, sweep: LidarSweep, stamp_ns: int, camera: CameraModel, result: FrameResult) -> None:
        segmentation = result.segmentation
        mapped = map_sweep(self.semantic_map, sweep, segmentation.labels, segmentation.confidence, camera,
                           self.transforms.lookup, stamp_ns, map_frame=self.map_frame,
                           deskew_slices=self.deskew_slices)
        result.point_labels, result.points_in_map, result.map_stats = mapped.labels, mapped.points_in_map, mapped.stats
        result.timing.update(mapped.timing)


@dataclass
class MappedSweep:
    """What `map_sweep` did: the sweep's labels, its points in the map frame (point for point the
    sweep's), the map's fusion statistics and per-stage milliseconds (labelling, fusion)."""

    labels: PointLabels
    points_in_map: np.ndarray
    stats: dict[str, int]
    timing: dict[str, float]


def map_sweep(semantic_map: SemanticVoxelMap, sweep: LidarSweep, labels: np.ndarray, confidence: np.ndarray | None,
              camera: CameraModel, lookup: Callable[[str, str, int], np.ndarray], stamp_ns: int, *,
              map_frame: str = "map", deskew_slices: int = 32) -> MappedSweep:
    """Label a LiDAR sweep through a segmented camera image taken at `stamp_ns` and fuse it into the map.

    The sweep is deskewed into its sensor frame at `stamp_ns` (when it has per-point times and
    `deskew_slices` > 0), labelled through `camera` (with occlusion) and fused at the sensor's pose.

    Args:
        labels, confidence: the segmentation of the image: (H, W) class ids and (H, W) float or None.
        lookup: (target, source, stamp_ns) → T_target_source, as `TransformBuffer.lookup`.
        stamp_ns: the image's stamp: the instant the points are labelled and fused at.

    Raises:
        TransformError: a transform the sweep needs is missing; raised before anything is labelled
            or fused, so the call can be repeated once the transform has arrived.
        MappingError: inputs the projection or the map refuse.
    """
    started = time.perf_counter()
    points = sweep.points
    if deskew_slices and sweep.time_offset_ns.any():
        def pose_at(stamps: np.ndarray) -> np.ndarray:
            return np.stack([lookup(map_frame, sweep.frame_id, int(s)) for s in stamps])

        points = deskew(points, sweep.time_offset_ns, sweep.stamp_ns, pose_at, stamp_ns, slices=deskew_slices)
    T_camera_lidar = lookup(camera.frame_id, sweep.frame_id, stamp_ns)
    T_map_lidar = lookup(map_frame, sweep.frame_id, stamp_ns)
    labelled = label_points(points, T_camera_lidar, camera, labels, confidence)
    labelling_done = time.perf_counter()
    in_map = points @ T_map_lidar[:3, :3].T.astype(np.float32) + T_map_lidar[:3, 3].astype(np.float32)
    stats = semantic_map.integrate(in_map, labelled.labels, labelled.confidence, stamp_ns=stamp_ns,
                                   origin=T_map_lidar[:3, 3])
    return MappedSweep(labelled, in_map, stats, {"labelling": (labelling_done - started) * 1e3,
                                                 "fusion": (time.perf_counter() - labelling_done) * 1e3})


def transforms_needed_until(sweep: LidarSweep | None, stamp_ns: int) -> int:
    """The latest stamp labelling a sweep with an image taken at `stamp_ns` needs transforms for: the
    sweep's last point (deskewing looks up poses across the sweep), or the image's stamp when later."""
    if sweep is None or not sweep.time_offset_ns.size:
        return stamp_ns
    return max(stamp_ns, sweep.stamp_ns + int(sweep.time_offset_ns.max()))


def sweep_middle_ns(sweep: LidarSweep) -> int:
    """The middle of the sweep's measurement span (its header stamp when it has no per-point times): the
    instant a cloud is paired with a camera image at, whether its driver stamps the start or the end."""
    offsets = sweep.time_offset_ns
    if not offsets.size:
        return sweep.stamp_ns
    return sweep.stamp_ns + (int(offsets.min()) + int(offsets.max())) // 2
