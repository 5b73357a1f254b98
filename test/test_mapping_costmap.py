"""Traversability costmap: a scene of known layout gives known costs cell by cell; dynamic classes decay;
OccupancyGrid data and message metadata against independent computations; drivable-area masks."""
from __future__ import annotations

import math

import numpy as np
import pytest

from seg_perception.labels import load_label_set
from seg_perception.mapping.costmap import (
    CostGrid,
    class_costs,
    costmap_to_msg,
    msg_to_costmap,
    traversability_costmap,
    traversability_mask,
)
from seg_perception.mapping.errors import MappingError
from seg_perception.mapping.voxel_map import SemanticVoxelMap

LABELS = load_label_set("sim_offroad")
ROAD, GRASS, BUILDING, FOLIAGE, PERSON = (LABELS.id_of(n) for n in ("road", "grass", "building", "foliage", "person"))
V, RES = 0.2, 0.4  # voxel size; costmap cells hold 2 x 2 voxel columns


def _block(x0: float, x1: float, y0: float, y1: float, z0: float, z1: float, label: int):
    """One point at the centre of every 0.2 m voxel of the box (bounds on the voxel grid)."""
    axes = [np.arange(round(a / V), round(b / V)) * V + V / 2 for a, b in ((x0, x1), (y0, y1), (z0, z1))]
    points = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    return points, np.full(len(points), label)


# road for x in [-4, 0), grass in [0, 2), a wall (building) in [2, 2.4) from the ground to 2 m, nothing beyond;
# foliage at 3 m over x in [-2, -1.2) (above the 2 m band); the robot's base at (0, 0, 0)
STATIC = [_block(-4, 0, -4, 4, 0, 0.2, ROAD), _block(0, 2, -4, 4, 0, 0.2, GRASS),
          _block(2, 2.4, -4, 4, 0, 2.0, BUILDING), _block(-2, -1.2, -4, 4, 3.0, 3.2, FOLIAGE)]
# a person standing on the road, in the cell x in [-1.2, -0.8), y in [0, 0.4)
PERSON_POINTS = _block(-1.2, -0.8, 0, 0.4, 0.2, 1.8, PERSON)
PERSON_CELL = (10, 7)  # (row, column): (0 + 4) / 0.4, (-1.2 + 4) / 0.4


def _scan(with_person: bool):
    parts = STATIC + ([PERSON_POINTS] if with_person else [])
    return np.concatenate([p for p, _ in parts]), np.concatenate([l for _, l in parts])


def _expected() -> np.ndarray:
    """The costs by the layout's rules, cell by cell from each cell's centre."""
    grid = np.full((20, 20), -1, np.int8)
    for row in range(20):
        for column in range(20):
            x = -4.0 + (column + 0.5) * RES
            grid[row, column] = 0 if x < 0 else 50 if x < 2 else 100 if x < 2.4 else -1
    return grid


def _costmap(voxel_map: SemanticVoxelMap, stamp_ns: int = 0) -> CostGrid:
    return traversability_costmap(voxel_map, class_costs(LABELS), robot_xyz=(0.0, 0.0, 0.0), resolution=RES,
                                  size=(8.0, 8.0), height_band=(-1.0, 2.0), stamp_ns=stamp_ns)


@pytest.mark.parametrize("backend", ["numba", "torch"])
def test_known_layout_gives_known_costs_cell_by_cell(backend):
    voxel_map = SemanticVoxelMap(LABELS.num_classes, V, dynamic_classes=LABELS.dynamic_ids(), backend=backend)
    voxel_map.integrate(*_scan(False), stamp_ns=0)
    grid = _costmap(voxel_map)
    assert (grid.width, grid.height, grid.resolution, grid.origin) == (20, 20, RES, (-4.0, -4.0, 0.0))
    # the foliage overhangs the road above the band: the road cells stay free; beyond the wall is unknown
    np.testing.assert_array_equal(grid.data, _expected())


def test_a_person_is_lethal_while_seen_and_gone_within_the_decay_while_the_wall_stays():
    decay_s, period = 0.5, 100_000_000
    voxel_map = SemanticVoxelMap(LABELS.num_classes, V, dynamic_classes=LABELS.dynamic_ids(),
                                 dynamic_decay_s=decay_s)
    for scan in range(5):
        voxel_map.integrate(*_scan(True), stamp_ns=scan * period, origin=np.array([0.0, 0.0, 1.0]))
    expected = _expected()
    seen = _costmap(voxel_map)
    assert seen.data[PERSON_CELL] == 100
    changed = np.argwhere(seen.data != expected)
    assert changed.tolist() == [list(PERSON_CELL)]
    # the person never entered the static map, nor did it overwrite the road under it
    assert PERSON not in voxel_map.voxels().labels
    assert voxel_map.voxels().labels[voxel_map.voxels().lookup(np.array([[-1.1, 0.1, 0.1]]))[0]] == ROAD
    last_seen = 4 * period
    for scan in range(5, 11):  # the person has left: the same scene without them
        stamp = scan * period
        voxel_map.integrate(*_scan(False), stamp_ns=stamp, origin=np.array([0.0, 0.0, 1.0]))
        grid = _costmap(voxel_map, stamp)
        within = stamp - last_seen <= decay_s * 1e9
        assert grid.data[PERSON_CELL] == (100 if within else 0), scan
        assert (grid.data[:, 15] == 100).all()  # the wall (x in [2, 2.4)) stays lethal
    np.testing.assert_array_equal(grid.data, expected)
    assert len(voxel_map.dynamic_voxels()) == 0


def test_unknown_space_and_the_window_roll_with_the_robot():
    voxel_map = SemanticVoxelMap(LABELS.num_classes, V)
    assert (_costmap(voxel_map).data == -1).all()  # an empty map: all unknown
    voxel_map.integrate(*_scan(False), stamp_ns=0)
    # the robot 10.1 m further along x: the window's origin moves on the cell grid, over space never seen
    grid = traversability_costmap(voxel_map, class_costs(LABELS), robot_xyz=(10.1, 0.0, 0.0), resolution=RES,
                                  size=(8.0, 8.0))
    assert grid.origin[0] == pytest.approx((math.floor(10.1 / RES) - 10) * RES)
    assert (grid.data == -1).all()
    # a robot standing 3.5 m higher: the ground and the wall (up to 2 m) lie below its band [2.5, 5.5] and are
    # ignored; the foliage at 3 m (x in [-2, -1.2): columns 5 and 6) is now in the band, and lethal
    high = traversability_costmap(voxel_map, class_costs(LABELS), robot_xyz=(0.0, 0.0, 3.5), resolution=RES,
                                  size=(8.0, 8.0), height_band=(-1.0, 2.0))
    expected = np.full((20, 20), -1, np.int8)
    expected[:, 5:7] = 100
    np.testing.assert_array_equal(high.data, expected)


def test_occupancy_grid_message_metadata_and_round_trip(factory):
    from conftest import cdr_roundtrip

    voxel_map = SemanticVoxelMap(LABELS.num_classes, V)
    voxel_map.integrate(*_scan(False), stamp_ns=0)
    grid = traversability_costmap(voxel_map, class_costs(LABELS), robot_xyz=(1.3, -0.7, 0.25), resolution=RES,
                                  size=(8.0, 6.0), stamp_ns=5_000_000_007, frame_id="map")
    msg = cdr_roundtrip(costmap_to_msg(grid, factory=factory), "nav_msgs/msg/OccupancyGrid")
    # independent: cells of 0.4 m, 20 x 15, the corner 10 / 7 cells below the robot's own cell
    assert (msg.info.width, msg.info.height) == (20, 15)
    assert msg.info.resolution == pytest.approx(0.4)
    assert msg.info.origin.position.x == pytest.approx(3 * 0.4 - 10 * 0.4)
    assert msg.info.origin.position.y == pytest.approx(-2 * 0.4 - 7 * 0.4)
    assert msg.info.origin.position.z == pytest.approx(0.25)
    assert (msg.info.origin.orientation.w, msg.info.origin.orientation.z) == (1.0, 0.0)
    assert msg.header.frame_id == "map" and (msg.header.stamp.sec, msg.header.stamp.nanosec) == (5, 7)
    data = np.asarray(msg.data, np.int8)
    assert data.size == 300 and data.min() >= -1 and data.max() <= 100
    # row-major from the origin: the cell holding the map point (2.1, 0.1) is the wall
    row, column = grid.cell(2.1, 0.1)
    assert data[row * 20 + column] == 100
    back = msg_to_costmap(msg)
    np.testing.assert_array_equal(back.data, grid.data)
    assert back.origin == pytest.approx(grid.origin) and back.stamp_ns == grid.stamp_ns


def test_class_costs_and_bad_arguments_raise():
    costs = class_costs(LABELS, {"rough": 70})
    assert costs[ROAD] == 0 and costs[GRASS] == 70 and costs[BUILDING] == 100 and costs[LABELS.id_of("sky")] == -1
    with pytest.raises(MappingError, match="'lava' is not known; accepted: drivable"):
        class_costs(LABELS, {"lava": 5})
    with pytest.raises(MappingError, match="accepted: an integer -1..100"):
        class_costs(LABELS, {"rough": 101})
    voxel_map = SemanticVoxelMap(LABELS.num_classes, V)
    for kwargs, match in (({"resolution": 0.1}, "resolution 0.1"), ({"size": (0.0, 5.0)}, "size"),
                          ({"height_band": (1.0, 0.0)}, "height_band"), ({"robot_xyz": (0, np.nan, 0)}, "robot_xyz")):
        arguments = {"robot_xyz": (0, 0, 0), **kwargs}
        with pytest.raises(MappingError, match=match):
            traversability_costmap(voxel_map, class_costs(LABELS), **arguments)
    with pytest.raises(MappingError, match="costs of shape"):
        traversability_costmap(voxel_map, np.zeros(3, np.int16), robot_xyz=(0, 0, 0))


def test_drivable_area_mask_of_a_label_image():
    labels = np.array([[ROAD, GRASS, 255], [BUILDING, LABELS.id_of("trail"), ROAD]], np.uint8)
    np.testing.assert_array_equal(traversability_mask(labels, LABELS), [[1, 0, 0], [0, 1, 1]])
    np.testing.assert_array_equal(traversability_mask(labels, LABELS, ("drivable", "rough")), [[1, 1, 0], [0, 1, 1]])
    with pytest.raises(MappingError, match="accepted: drivable"):
        traversability_mask(labels, LABELS, ("wet",))
    with pytest.raises(MappingError, match="uint8 or uint16"):
        traversability_mask(labels.astype(np.float32), LABELS)
