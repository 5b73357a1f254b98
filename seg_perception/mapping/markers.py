"""RViz markers of a semantic voxel map: one CUBE_LIST per class and level of detail (voxels merged into
coarser cubes the farther they lie from the robot) and a legend of the classes shown."""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from seg_perception.io.messages import MessageFactory, RosbagsFactory, make_header
from seg_perception.labels import LabelSet

from .errors import MappingError
from .voxels import VoxelArrays

CUBE_LIST, TEXT_VIEW_FACING = 6, 9  # visualization_msgs/Marker types
ADD, DELETEALL = 0, 3               # and actions
# (distance from the robot in metres up to which, cube edge in voxels): full detail near, coarser beyond
DEFAULT_LEVELS: tuple[tuple[float, int], ...] = ((20.0, 1), (50.0, 2), (math.inf, 4))
LEGEND_NS = "legend"


def decimate(voxels: VoxelArrays, robot_xyz: Any, levels: tuple[tuple[float, int], ...] = DEFAULT_LEVELS
             ) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """Cubes to draw per level of detail: [(factor, (K, 3) float64 cube centres, (K,) labels)].

    A voxel belongs to the first level whose distance (voxel centre to robot_xyz, metres) it lies within;
    at factor f its level's voxels are merged f x f x f into cubes of edge f * voxel_size on the grid of that
    size, each taking the label of its first voxel in key order.

    Raises:
        MappingError: levels that are not (distance, factor >= 1) pairs with rising distances.
    """
    distances = [float(d) for d, _ in levels]
    if not levels or distances != sorted(distances) or any(int(f) != f or f < 1 for _, f in levels):
        raise MappingError(f"levels {levels!r} are not usable; accepted: (distance, factor) pairs, distances rising, "
                           "factors integers >= 1")
    robot = np.asarray(robot_xyz, np.float64).reshape(3)
    distance = np.linalg.norm(voxels.centers.astype(np.float64) - robot, axis=1)
    level = np.searchsorted(np.asarray(distances), distance, side="left")
    labels = voxels.labels
    out = []
    for index, (_, factor) in enumerate(levels):
        mine = level == index
        if not mine.any():
            continue
        coarse = np.floor_divide(voxels.keys[mine], int(factor))
        unique, first = np.unique(coarse, axis=0, return_index=True)
        centres = (unique.astype(np.float64) + 0.5) * factor * voxels.voxel_size
        out.append((int(factor), centres, labels[mine][first]))
    return out


def voxels_to_markers(voxels: VoxelArrays, label_set: LabelSet, *, robot_xyz: Any, stamp_ns: int = 0,
                      frame_id: str = "map", levels: tuple[tuple[float, int], ...] = DEFAULT_LEVELS,
                      alpha: float = 1.0, factory: MessageFactory | None = None) -> Any:
    """A visualization_msgs/MarkerArray: DELETEALL (so classes that vanished disappear), then per level and class
    a CUBE_LIST (namespace "voxels/<factor>", id = class id, the class colour), then one TEXT_VIEW_FACING per
    class shown (namespace "legend", id = class id, the class name in its colour, stacked 0.6 m apart 3 m
    above the robot). Dynamic voxels are drawn by passing them in `voxels` too (e.g. concatenated).

    Raises:
        MappingError: as `decimate`, or a label set without the map's classes.
    """
    if label_set.num_classes < voxels.num_classes:
        raise MappingError(f"label set {label_set.name!r} has {label_set.num_classes} classes; the map has "
                           f"{voxels.num_classes}")
    factory = factory or RosbagsFactory()
    header = make_header(factory, stamp_ns, frame_id)
    palette = label_set.palette().astype(np.float64) / 255.0
    names = {c.id: c.name for c in label_set.classes}
    identity = factory.make("geometry_msgs/msg/Pose",
                            orientation=factory.make("geometry_msgs/msg/Quaternion", x=0.0, y=0.0, z=0.0, w=1.0))
    markers = [factory.make("visualization_msgs/msg/Marker", header=header, action=DELETEALL, pose=identity)]
    shown: set[int] = set()
    for factor, centres, labels in decimate(voxels, robot_xyz, levels):
        edge = factor * voxels.voxel_size
        for label in np.unique(labels):
            points = [factory.make("geometry_msgs/msg/Point", x=float(x), y=float(y), z=float(z))
                      for x, y, z in centres[labels == label]]
            markers.append(factory.make(
                "visualization_msgs/msg/Marker", header=header, ns=f"voxels/{factor}", id=int(label), type=CUBE_LIST,
                action=ADD, pose=identity, scale=factory.make("geometry_msgs/msg/Vector3", x=edge, y=edge, z=edge),
                color=_color(factory, palette[label], alpha), points=points))
            shown.add(int(label))
    robot = np.asarray(robot_xyz, np.float64).reshape(3)
    for row, label in enumerate(sorted(shown)):
        position = factory.make("geometry_msgs/msg/Point", x=float(robot[0]), y=float(robot[1]),
                                z=float(robot[2]) + 3.0 + 0.6 * row)
        pose = factory.make("geometry_msgs/msg/Pose", position=position, orientation=identity.orientation)
        markers.append(factory.make(
            "visualization_msgs/msg/Marker", header=header, ns=LEGEND_NS, id=label, type=TEXT_VIEW_FACING,
            action=ADD, pose=pose, scale=factory.make("geometry_msgs/msg/Vector3", z=0.5),
            color=_color(factory, palette[label], 1.0), text=names.get(label, str(label))))
    return factory.make("visualization_msgs/msg/MarkerArray", markers=markers)


def _color(factory: MessageFactory, rgb: np.ndarray, alpha: float) -> Any:
    return factory.make("std_msgs/msg/ColorRGBA", r=float(rgb[0]), g=float(rgb[1]), b=float(rgb[2]), a=float(alpha))
