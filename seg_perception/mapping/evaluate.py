"""Scoring the voxel map on the synthetic world, where every LiDAR point's true class is known.

Each camera frame's LiDAR scan is deskewed to the frame's stamp, labelled through the camera from
a 2-D segmentation (ground truth, optionally corrupted), and fused. Scores:

- single-scan point accuracy: labelled points whose label (read from that frame's image) is their
  true class;
- fused point accuracy: the same points, read back from the final map;
- voxel accuracy: map voxels whose label is the majority true class of the LiDAR points that fell
  in them over the drive.

Only points within `max_range` of the sensor are labelled, fused and scored.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .projection import deskew, label_points
from .voxels import KEY_MAX, KEY_MIN, VoxelArrays, pack_keys
from .voxel_map import SemanticVoxelMap


def noisy_labels(labels: np.ndarray, fraction: float, num_classes: int, rng: np.random.Generator, *,
                 cell_px: int = 16) -> np.ndarray:
    """Corrupt a label image the way segmenters err: in blobs, not single pixels. Cells of
    cell_px x cell_px pixels are flipped to a random other class with probability `fraction`."""
    height, width = labels.shape
    rows, cols = -(-height // cell_px), -(-width // cell_px)
    flip = rng.random((rows, cols)) < fraction
    shift = rng.integers(1, num_classes, (rows, cols))  # a different class: (label + shift) % C
    flip_px = np.repeat(np.repeat(flip, cell_px, 0), cell_px, 1)[:height, :width]
    shift_px = np.repeat(np.repeat(shift, cell_px, 0), cell_px, 1)[:height, :width]
    return np.where(flip_px, (labels.astype(np.int64) + shift_px) % num_classes, labels).astype(labels.dtype)


@dataclass
class _Tally:
    correct_single: int = 0
    scored: int = 0
    points: list[np.ndarray] = field(default_factory=list)  # labelled points, map frame
    truth: list[np.ndarray] = field(default_factory=list)   # their true classes
    all_points: list[np.ndarray] = field(default_factory=list)  # every in-range point, for voxel truth
    all_truth: list[np.ndarray] = field(default_factory=list)


def evaluate_on_world(seed: int = 0, frames: int = 30, *, noise: float = 0.0, voxel_size: float = 0.2,
                      max_range: float = 40.0, scenario: str = "day", map_options: dict[str, Any] | None = None,
                      noise_seed: int = 0) -> dict[str, Any]:
    """Drive `frames` frames of World(seed) and score the fused map (see the module docstring).

    Args:
        noise: fraction of label-image cells flipped per frame (0: ground-truth labels).
        map_options: extra SemanticVoxelMap arguments.
    """
    from seg_perception.labels import load_label_set
    from seg_perception.sim import World

    classes = load_label_set("sim_offroad").num_classes
    world = World(seed, scenario)
    camera = world.models.camera
    T_camera_lidar = np.linalg.inv(world.T_base_camera) @ world.T_base_lidar
    semantic_map = SemanticVoxelMap(classes, voxel_size, **(map_options or {}))
    rng = np.random.default_rng(noise_seed)
    tally = _Tally()

    def pose_at(stamps: np.ndarray) -> np.ndarray:
        return world.trajectory.poses(world.time_at(stamps)) @ world.T_base_lidar

    for frame in world.frames(frames, events=False):
        scan = frame.lidar
        points = deskew(scan.points.reshape(-1, 3), scan.time_offset_ns.reshape(-1), scan.start_ns, pose_at,
                        frame.stamp_ns)
        truth = scan.labels.reshape(-1)
        in_range = np.isfinite(points).all(axis=1) & (np.linalg.norm(np.nan_to_num(points), axis=1) <= max_range)
        points, truth = points[in_range], truth[in_range]
        image = noisy_labels(frame.labels, noise, classes, rng) if noise > 0 else frame.labels
        labelled = label_points(points, T_camera_lidar, camera, image)
        T_map_lidar = pose_at(np.array([frame.stamp_ns]))[0]
        in_map = points @ T_map_lidar[:3, :3].T + T_map_lidar[:3, 3]
        # Labels only: the map's default sensor model stands for a segmenter's (unknown) reliability.
        semantic_map.integrate(in_map, labelled.labels, stamp_ns=frame.stamp_ns, origin=T_map_lidar[:3, 3])
        mask = labelled.labelled
        tally.correct_single += int((labelled.labels[mask] == truth[mask]).sum())
        tally.scored += int(mask.sum())
        tally.points.append(in_map[mask])
        tally.truth.append(truth[mask])
        tally.all_points.append(in_map)
        tally.all_truth.append(truth)

    voxels = semantic_map.voxels()
    points, truth = np.concatenate(tally.points), np.concatenate(tally.truth)
    found = voxels.lookup(points)
    fused = np.where(found >= 0, voxels.labels[np.maximum(found, 0)], -1)
    return {"frames": frames, "noise": noise, "voxel_size": voxel_size, "max_range": max_range,
            "voxels": len(voxels), "scored_points": tally.scored,
            "single_scan_point_accuracy": tally.correct_single / max(tally.scored, 1),
            "fused_point_accuracy": float((fused == truth).mean()) if len(truth) else 0.0,
            "voxel_accuracy": _voxel_accuracy(voxels, np.concatenate(tally.all_points),
                                              np.concatenate(tally.all_truth), classes)}


class VoxelTruth:
    """The true classes of the LiDAR points that fell in each voxel over a drive, for scoring a map:
    a voxel's truth is the majority class of its points.

    Counts are merged per scan (sorted voxel keys with a (voxels, C) count table), so memory grows
    with the voxels seen, not with the points.

    Args:
        num_classes: C; true classes are 0 … C - 1.
        voxel_size: the map's voxel edge (m).
    """

    def __init__(self, num_classes: int, voxel_size: float) -> None:
        self.num_classes = num_classes
        self.voxel_size = voxel_size
        self._keys = np.empty(0, np.int64)
        self._counts = np.empty((0, num_classes), np.uint32)

    def __len__(self) -> int:
        return len(self._keys)

    def add(self, points: np.ndarray, classes: np.ndarray) -> None:
        """Count (N, 3) map-frame points with their true classes; non-finite points, points outside the
        map's key range and classes outside 0 … C - 1 are left out."""
        classes = np.asarray(classes).reshape(-1).astype(np.int64)
        with np.errstate(invalid="ignore"):
            cells = np.floor(np.asarray(points, np.float64) / self.voxel_size)
            keep = ((cells >= KEY_MIN) & (cells <= KEY_MAX)).all(axis=1)  # False for NaN
        keep &= (classes >= 0) & (classes < self.num_classes)
        if not keep.any():
            return
        keys = pack_keys(cells[keep].astype(np.int64))
        all_keys, inverse = np.unique(np.concatenate([self._keys, keys]), return_inverse=True)
        counts = np.zeros((len(all_keys), self.num_classes), np.uint32)
        counts[inverse[:len(self._keys)]] = self._counts
        counts += np.bincount(inverse[len(self._keys):] * self.num_classes + classes[keep],
                              minlength=counts.size).reshape(counts.shape).astype(np.uint32)
        self._keys, self._counts = all_keys, counts

    def score(self, voxels: VoxelArrays) -> tuple[int, int]:
        """(correct, scored): the map's labelled voxels (observations > 0) that hold counted points, and
        those of them whose label is their points' majority class."""
        voxels = voxels.select(voxels.observations > 0)
        if not len(voxels) or not len(self._keys):
            return 0, 0
        keys = pack_keys(voxels.keys)
        position = np.minimum(np.searchsorted(self._keys, keys), len(self._keys) - 1)
        observed = self._keys[position] == keys
        truth = self._counts[position[observed]].argmax(axis=1)
        return int((truth == voxels.labels[observed]).sum()), int(observed.sum())


def _voxel_accuracy(voxels: Any, points: np.ndarray, truth: np.ndarray, classes: int) -> float:
    """Fraction of map voxels whose label is the majority true class of the points inside them."""
    tally = VoxelTruth(classes, voxels.voxel_size)
    tally.add(points, truth)
    correct, scored = tally.score(voxels)
    return correct / scored if scored else 0.0
