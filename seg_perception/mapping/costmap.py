"""Navigation output: a rolling 2-D traversability costmap (the data of a nav_msgs/OccupancyGrid) from the
semantic voxel map, and per-class masks of label images for users who do not map."""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from seg_perception.io.messages import MessageFactory, RosbagsFactory, make_header, make_stamp
from seg_perception.labels import TRAVERSABILITY, LabelSet

from .errors import MappingError
from .voxel_map import SemanticVoxelMap
from .voxels import _KEY_MASK, KEY_BITS, KEY_OFFSET, pack_keys

LETHAL = 100
UNKNOWN = -1
# Cost of each traversability category (nav_msgs/OccupancyGrid scale: 0 free .. 100 lethal, -1 unknown).
DEFAULT_COSTS: dict[str, int] = {"drivable": 0, "rough": 50, "obstacle": LETHAL, "unknown": UNKNOWN}


@dataclass(frozen=True)
class CostGrid:
    """The data of a nav_msgs/OccupancyGrid.

    Attributes:
        data: (height, width) int8, row r and column c is the cell [origin + (c, r) * resolution, + resolution)
            in the map frame; 0..100 cost, -1 unknown. Row-major as OccupancyGrid.data.
        resolution: cell edge, metres.
        origin: (x, y, z) of the corner of cell (0, 0) in the map frame; the grid is axis-aligned (identity
            orientation).
        frame_id: the map frame.
        stamp_ns: the stamp of the map state it was made from.
    """

    data: np.ndarray
    resolution: float
    origin: tuple[float, float, float]
    frame_id: str
    stamp_ns: int

    @property
    def width(self) -> int:
        return int(self.data.shape[1])

    @property
    def height(self) -> int:
        return int(self.data.shape[0])

    def cell(self, x: float, y: float) -> tuple[int, int]:
        """(row, column) of the cell holding map point (x, y)."""
        return (math.floor((y - self.origin[1]) / self.resolution), math.floor((x - self.origin[0]) / self.resolution))


def class_costs(label_set: LabelSet, costs: dict[str, int] | None = None) -> np.ndarray:
    """(num_classes,) int16 cost of each class id from its traversability (`DEFAULT_COSTS` unless `costs`
    overrides categories); ids without a class are unknown (-1).

    Raises:
        MappingError: a category that is not a traversability or a cost outside -1..100.
    """
    table = dict(DEFAULT_COSTS)
    for category, cost in (costs or {}).items():
        if category not in TRAVERSABILITY:
            raise MappingError(f"cost category {category!r} is not known; accepted: {', '.join(TRAVERSABILITY)}")
        if isinstance(cost, bool) or not isinstance(cost, (int, np.integer)) or not -1 <= cost <= 100:
            raise MappingError(f"cost {cost!r} for {category!r} is not usable; accepted: an integer -1..100")
        table[category] = int(cost)
    return np.array([table[t] for t in label_set.traversability_by_id()], np.int16)


def _rasterise(keys, q, occupancy, n, voxel_size, costs, ox, oy, resolution, z_low, z_high, grid):
    """Each present voxel (occupancy > 0) whose centre lies in the height band and the window raises its cell to
    its most probable class's cost (unknown classes, -1, leave the cell as it is)."""
    height, width = grid.shape
    num_classes = q.shape[1]
    for d in range(n):
        if occupancy[d] <= 0:
            continue
        key = keys[d]
        z = ((key & _KEY_MASK) - KEY_OFFSET + 0.5) * voxel_size
        if z < z_low or z > z_high:
            continue
        column = np.int64(np.floor(((((key >> (2 * KEY_BITS)) - KEY_OFFSET) + 0.5) * voxel_size - ox) / resolution))
        row = np.int64(np.floor((((((key >> KEY_BITS) & _KEY_MASK) - KEY_OFFSET) + 0.5) * voxel_size - oy)
                                / resolution))
        if column < 0 or column >= width or row < 0 or row >= height:
            continue
        if grid[row, column] == LETHAL:
            continue
        # argmin of the row (the smallest q is the most probable class; ties: the smaller id) as one branch-free
        # min over q << 8 | c, which LLVM vectorises
        packed = 65535
        for c in range(num_classes):
            packed = min(packed, (np.int64(q[d, c]) << 8) | c)
        cost = costs[packed & 255]
        if cost > grid[row, column]:
            grid[row, column] = cost


@functools.cache
def _kernel() -> Any:
    from numba import njit

    return njit(cache=True)(_rasterise)


def traversability_costmap(voxel_map: SemanticVoxelMap, costs: np.ndarray, *, robot_xyz: Any,
                           resolution: float = 0.2, size: tuple[float, float] = (40.0, 40.0),
                           height_band: tuple[float, float] = (-1.0, 2.0), stamp_ns: int = 0,
                           frame_id: str = "map") -> CostGrid:
    """A rolling costmap around the robot from the static map and its live dynamic voxels.

    The window is size[0] x size[1] metres around robot_xyz's (x, y): its origin is (floor(x / resolution) -
    width // 2, floor(y / resolution) - height // 2) * resolution, on the resolution grid, so that cells stay
    put as the robot moves. A voxel counts in the cell holding its centre when it is
    present (occupancy log-odds > 0: voxels that beams passed through are not) and its centre's height relative
    to the robot's base height robot_xyz[2] lies in height_band: voxels above it (overhanging branches) and
    below it are ignored. A cell's cost is the largest of its voxels' class costs: obstacle classes are lethal
    (100), ground classes give theirs, unknown classes (sky) nothing; a cell without any stays unknown (-1).
    Dynamic voxels count while the map keeps them (dynamic_decay_s).

    Args:
        voxel_map: the map.
        costs: (num_classes,) cost per class id, from `class_costs`.
        robot_xyz: (3,) the robot's base position in the map frame.
        resolution: cell edge, metres, at least the map's voxel size.
        size: (x, y) extent of the window, metres.
        height_band: (low, high) metres relative to robot_xyz[2].
        stamp_ns, frame_id: copied to the result.

    Raises:
        MappingError: costs of the wrong length, a non-finite robot position, a resolution below the voxel
            size, an empty window or an empty height band.
    """
    costs = np.asarray(costs)
    if costs.shape != (voxel_map.num_classes,) or not np.issubdtype(costs.dtype, np.integer):
        raise MappingError(f"costs of shape {costs.shape} do not fit {voxel_map.num_classes} classes; accepted: "
                           "(num_classes,) integers from class_costs()")
    robot = np.asarray(robot_xyz, np.float64).reshape(-1)
    if robot.shape != (3,) or not np.isfinite(robot).all():
        raise MappingError(f"robot_xyz {robot_xyz!r} is not usable; accepted: 3 finite numbers (map frame)")
    if not (math.isfinite(resolution) and voxel_map.voxel_size <= resolution <= 100.0):
        raise MappingError(f"resolution {resolution!r} is not usable; accepted: metres in "
                           f"[voxel_size {voxel_map.voxel_size}, 100]")
    width, height = (int(round(float(extent) / resolution)) for extent in size)
    if not (1 <= width <= 100_000 and 1 <= height <= 100_000):
        raise MappingError(f"size {size!r} gives a {width} x {height} grid; accepted: 1..100000 cells a side")
    low, high = (float(v) for v in height_band)
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise MappingError(f"height_band {height_band!r} is not usable; accepted: (low, high) metres, low < high")
    ox = (math.floor(robot[0] / resolution) - width // 2) * resolution
    oy = (math.floor(robot[1] / resolution) - height // 2) * resolution
    grid = np.full((height, width), UNKNOWN, np.int8)
    table = costs.astype(np.int8)
    keys, q, occupancy = voxel_map.contents()
    kernel = _kernel()
    z_low, z_high = robot[2] + low, robot[2] + high
    kernel(keys, q, occupancy, keys.shape[0], voxel_map.voxel_size, table, ox, oy, resolution, z_low, z_high, grid)
    dynamic = voxel_map.dynamic_voxels()
    if len(dynamic):
        # stored as q = 0 (probability 1) for its class, 255 elsewhere: the same kernel reads them
        q_dynamic = np.where(dynamic.log_probs == dynamic.log_probs.max(axis=1, keepdims=True), 0, 255).astype(np.uint8)
        kernel(pack_keys(dynamic.keys), q_dynamic, np.ones(len(dynamic), np.int16), len(dynamic),
               voxel_map.voxel_size, table, ox, oy, resolution, z_low, z_high, grid)
    return CostGrid(grid, float(resolution), (ox, oy, float(robot[2])), frame_id, int(stamp_ns))


def costmap_to_msg(grid: CostGrid, *, factory: MessageFactory | None = None) -> Any:
    """A nav_msgs/OccupancyGrid of `grid` (header stamp and frame, info, row-major data)."""
    factory = factory or RosbagsFactory()
    origin = factory.make("geometry_msgs/msg/Pose",
                          position=factory.make("geometry_msgs/msg/Point", x=grid.origin[0], y=grid.origin[1],
                                                z=grid.origin[2]),
                          orientation=factory.make("geometry_msgs/msg/Quaternion", x=0.0, y=0.0, z=0.0, w=1.0))
    info = factory.make("nav_msgs/msg/MapMetaData", map_load_time=make_stamp(factory, grid.stamp_ns),
                        resolution=grid.resolution, width=grid.width, height=grid.height, origin=origin)
    return factory.make("nav_msgs/msg/OccupancyGrid", header=make_header(factory, grid.stamp_ns, grid.frame_id),
                        info=info, data=grid.data.reshape(-1))


def msg_to_costmap(msg: Any) -> CostGrid:
    """The CostGrid a nav_msgs/OccupancyGrid carries (axis-aligned grids; orientation is not read).

    Raises:
        MappingError: data whose length is not width * height.
    """
    info = msg.info
    data = np.asarray(msg.data, np.int8)
    if data.size != int(info.width) * int(info.height):
        raise MappingError(f"OccupancyGrid has {data.size} cells for {info.width} x {info.height}; "
                           "accepted: width * height")
    position = info.origin.position
    stamp = int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)
    return CostGrid(data.reshape(int(info.height), int(info.width)).copy(), float(info.resolution),
                    (float(position.x), float(position.y), float(position.z)), str(msg.header.frame_id), stamp)


def traversability_mask(labels: np.ndarray, label_set: LabelSet,
                        categories: tuple[str, ...] = ("drivable",)) -> np.ndarray:
    """Bool image, True where a label image's class has one of `categories` (e.g. the drivable area), for
    users who segment but do not map. Ids without a class (the ignore id) are False.

    Raises:
        MappingError: a category that is not a traversability, or labels that are not an integer image.
    """
    unknown = sorted(set(categories) - set(TRAVERSABILITY))
    if unknown:
        raise MappingError(f"categories {unknown} are not known; accepted: {', '.join(TRAVERSABILITY)}")
    labels = np.asarray(labels)
    if labels.dtype not in (np.uint8, np.uint16):
        raise MappingError(f"labels of dtype {labels.dtype} are not a label image; accepted: uint8 or uint16")
    table = np.zeros(65536, np.bool_)
    for c in label_set.classes:
        table[c.id] = c.traversability in categories
    return table[labels]
