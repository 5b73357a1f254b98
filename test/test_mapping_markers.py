"""RViz markers of the voxel map: class colours, legend, level of detail by distance, message round trip."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import cdr_roundtrip
from seg_perception.labels import load_label_set
from seg_perception.mapping.errors import MappingError
from seg_perception.mapping.markers import CUBE_LIST, DELETEALL, TEXT_VIEW_FACING, decimate, voxels_to_markers
from seg_perception.mapping.voxel_map import SemanticVoxelMap

LABELS = load_label_set("sim_offroad")
ROAD, BUILDING = LABELS.id_of("road"), LABELS.id_of("building")


def _map():
    """Road voxels 0..4 m from the origin (x, 0.1, 0.1) and building voxels at 30..32 m."""
    near = np.stack([np.arange(20) * 0.2 + 0.1, np.full(20, 0.1), np.full(20, 0.1)], axis=1)
    far = np.stack([30.0 + np.arange(10) * 0.2 + 0.1, np.full(10, 0.1), np.full(10, 0.1)], axis=1)
    voxel_map = SemanticVoxelMap(LABELS.num_classes, 0.2)
    voxel_map.integrate(np.concatenate([near, far]), np.array([ROAD] * 20 + [BUILDING] * 10), stamp_ns=1)
    return voxel_map.voxels()


def test_decimation_by_distance():
    levels = decimate(_map(), (0.0, 0.0, 0.0), ((20.0, 1), (100.0, 2)))
    (near_factor, near, near_labels), (far_factor, far, far_labels) = levels
    assert near_factor == 1 and len(near) == 20 and set(near_labels.tolist()) == {ROAD}
    # 10 voxels in a row at 30..32 m merge 2 x 2 x 2: 5 cubes of 0.4 m on the 0.4 m grid
    assert far_factor == 2 and len(far) == 5 and set(far_labels.tolist()) == {BUILDING}
    np.testing.assert_allclose(far[:, 0], 30.0 + np.arange(5) * 0.4 + 0.2)
    np.testing.assert_allclose(far[:, 1:], 0.2)
    with pytest.raises(MappingError, match="distances rising"):
        decimate(_map(), (0, 0, 0), ((50.0, 1), (20.0, 2)))


def test_markers_carry_class_colours_and_a_legend(factory):
    msg = voxels_to_markers(_map(), LABELS, robot_xyz=(0.0, 0.0, 0.0), stamp_ns=3, factory=factory,
                            levels=((20.0, 1), (100.0, 2)))
    back = cdr_roundtrip(msg, "visualization_msgs/msg/MarkerArray")
    markers = back.markers
    assert markers[0].action == DELETEALL
    cubes = {(m.ns, m.id): m for m in markers if m.type == CUBE_LIST}
    assert set(cubes) == {("voxels/1", ROAD), ("voxels/2", BUILDING)}
    for (ns, label), marker in cubes.items():
        color = LABELS.classes[label].color
        assert (marker.color.r, marker.color.g, marker.color.b) == pytest.approx(tuple(v / 255 for v in color))
        assert marker.color.a == 1.0 and marker.header.frame_id == "map"
        edge = 0.2 * int(ns.split("/")[1])
        assert (marker.scale.x, marker.scale.y, marker.scale.z) == pytest.approx((edge, edge, edge))
    assert len(cubes[("voxels/1", ROAD)].points) == 20 and len(cubes[("voxels/2", BUILDING)].points) == 5
    legend = [m for m in markers if m.type == TEXT_VIEW_FACING]
    assert [(m.ns, m.id, m.text) for m in legend] == [("legend", ROAD, "road"), ("legend", BUILDING, "building")]
    assert legend[1].color.r == pytest.approx(LABELS.classes[BUILDING].color[0] / 255)
    assert legend[1].pose.position.z - legend[0].pose.position.z == pytest.approx(0.6)
