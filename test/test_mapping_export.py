"""Voxel map exports: PointCloud2 and SemanticVoxelMap messages (both message worlds, real CDR),
PLY/PCD through open3d, lossless save/load, crops — checked against hand-built voxels."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import cdr_roundtrip

from seg_perception.io.pointcloud import cloud_to_array, unpack_rgb
from seg_perception.labels import LabelClass, LabelSet, load_label_set
from seg_perception.mapping.errors import MappingError
from seg_perception.mapping.export import load_voxels, save_voxels, voxels_to_cloud, voxels_to_msg, write_point_cloud
from seg_perception.mapping.voxels import VoxelArrays

LABELS = load_label_set("sim_offroad")


def _voxels() -> VoxelArrays:
    """Four voxels of 0.5 m with known class probabilities."""
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.3, 0.6, 0.1], [0.34, 0.33, 0.33]])
    log_probs = np.full((4, LABELS.num_classes), np.log(1e-6))
    log_probs[:, :3] = np.log(probs)
    log_probs -= np.log(np.exp(log_probs).sum(axis=1, keepdims=True))
    return VoxelArrays(0.5, np.array([[0, 0, 0], [-1, 2, 3], [4, -5, 0], [10, 10, 1]], np.int32),
                       log_probs.astype(np.float32), np.array([5, 1, 65535, 2], np.uint16),
                       np.array([10, 20, 30, 40], np.int64) * 10**9, np.array([3.5, 0.5, -0.2, 1.0], np.float32))


def test_derived_arrays_by_hand():
    voxels = _voxels()
    np.testing.assert_allclose(voxels.centers, [[0.25, 0.25, 0.25], [-0.25, 1.25, 1.75], [2.25, -2.25, 0.25],
                                                [5.25, 5.25, 0.75]])
    assert voxels.labels.tolist() == [0, 2, 1, 0]
    np.testing.assert_allclose(voxels.confidence, [0.7, 0.8, 0.6, 0.34], atol=1e-4)


def test_crops_by_hand():
    voxels = _voxels()
    assert voxels.crop_box([-1, -1, -1], [3, 2, 2]).keys.tolist() == [[0, 0, 0], [-1, 2, 3]]
    assert voxels.crop_radius([2.25, -2.25, 0.25], 0.1).keys.tolist() == [[4, -5, 0]]
    assert len(voxels.crop_radius([100, 0, 0], 1.0)) == 0


def test_point_cloud_carries_centres_colours_labels_confidence(factory):
    voxels = _voxels()
    msg = voxels_to_cloud(voxels, LABELS, stamp_ns=123, frame_id="map", factory=factory)
    cloud = cloud_to_array(cdr_roundtrip(msg, "sensor_msgs/msg/PointCloud2"))
    np.testing.assert_allclose(np.stack([cloud["x"], cloud["y"], cloud["z"]], axis=1), voxels.centers)
    assert cloud["label"].tolist() == [0, 2, 1, 0]
    np.testing.assert_allclose(cloud["confidence"], voxels.confidence)
    colours = unpack_rgb(cloud["rgb"])
    expected = [LABELS.palette()[label] for label in (0, 2, 1, 0)]
    np.testing.assert_array_equal(colours, expected)


def test_voxel_map_message(factory):
    voxels = _voxels()
    msg = voxels_to_msg(voxels, label_set_name="sim_offroad", stamp_ns=50 * 10**9, radius=40.0, max_voxels=1000,
                        evicted_total=7, factory=factory)
    back = cdr_roundtrip(msg, "seg_perception/msg/SemanticVoxelMap")
    assert back.header.frame_id == "map" and back.header.stamp.sec == 50
    assert back.keys.tolist() == [0, 0, 0, -1, 2, 3, 4, -5, 0, 10, 10, 1]
    assert back.labels.tolist() == [0, 2, 1, 0] and back.observations.tolist() == [5, 1, 65535, 2]
    np.testing.assert_allclose(back.last_seen_age, [40, 30, 20, 10])
    assert (back.voxel_size, back.num_classes, back.radius, back.max_voxels, back.evicted_total) == (
        0.5, LABELS.num_classes, 40.0, 1000, 7)


@pytest.mark.parametrize("suffix", [".ply", ".pcd"])
def test_ply_and_pcd_read_back_with_open3d(suffix, tmp_path):
    import open3d as o3d

    voxels = _voxels()
    path = write_point_cloud(tmp_path / f"map{suffix}", voxels, LABELS)
    cloud = o3d.t.io.read_point_cloud(str(path))
    np.testing.assert_allclose(cloud.point.positions.numpy(), voxels.centers, atol=1e-6)
    assert cloud.point.label.numpy().ravel().tolist() == [0, 2, 1, 0]
    np.testing.assert_allclose(cloud.point.confidence.numpy().ravel(), voxels.confidence, atol=1e-6)
    colours = cloud.point.colors.numpy()  # PCD reads back uint8, PLY float in [0, 1]
    colours = colours if colours.dtype == np.uint8 else np.round(colours * 255).astype(np.uint8)
    np.testing.assert_array_equal(colours, LABELS.palette()[voxels.labels])
    with pytest.raises(MappingError, match="must be .ply or .pcd"):
        write_point_cloud(tmp_path / "map.obj", voxels)


def test_save_load_round_trip_is_identical(tmp_path):
    voxels = _voxels()
    path = save_voxels(tmp_path / "map.npz", voxels, label_set=LABELS, params={"voxel_size": 0.5, "radius": 40.0})
    loaded, label_set, params = load_voxels(path)
    assert loaded.voxel_size == voxels.voxel_size and label_set == LABELS and params["radius"] == 40.0
    for name in ("keys", "log_probs", "observations", "last_seen_ns", "occupancy"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(voxels, name))
        assert getattr(loaded, name).dtype == getattr(voxels, name).dtype


def test_unreadable_map_files_are_refused(tmp_path):
    with pytest.raises(MappingError, match="not a readable voxel map file"):
        load_voxels(tmp_path / "missing.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(MappingError, match="not a readable voxel map file"):
        load_voxels(tmp_path / "junk.npz")
    np.savez(tmp_path / "other.npz", meta=np.array('{"format": "other/1"}'), keys=np.zeros((0, 3)),
             log_probs=np.zeros((0, 2)), observations=np.zeros(0), last_seen_ns=np.zeros(0), occupancy=np.zeros(0))
    with pytest.raises(MappingError, match="has format 'other/1'"):
        load_voxels(tmp_path / "other.npz")


def test_lookup_finds_the_voxel_of_each_point():
    voxels = _voxels()
    points = np.array([[0.1, 0.2, 0.3], [-0.01, 1.4, 1.99], [2.49, -2.5, 0.0], [9.0, 9.0, 9.0], [np.nan, 0, 0]])
    assert voxels.lookup(points).tolist() == [0, 1, 2, -1, -1]
    assert voxels.select(np.zeros(4, bool)).lookup(points).tolist() == [-1] * 5


def test_saved_map_loads_back_identically_and_keeps_fusing_alike(tmp_path):
    from seg_perception.mapping import SemanticVoxelMap, load_map, save_map

    rng = np.random.default_rng(4)
    original = SemanticVoxelMap(5, 0.25, radius=30.0, miss_log_odds=-0.7)
    for scan in range(3):
        points = rng.uniform(-10, 10, (2000, 3))
        original.integrate(points, rng.integers(0, 5, 2000), stamp_ns=scan * 10**8, origin=np.zeros(3))
    five = LabelSet("five", tuple(LabelClass(i, f"c{i}", (i, i, i)) for i in range(5)))
    path = save_map(tmp_path / "map.npz", original, five)
    loaded, label_set = load_map(path)
    assert label_set.name == "five" and loaded.parameters() == original.parameters()
    for name in ("keys", "log_probs", "observations", "last_seen_ns", "occupancy"):
        np.testing.assert_array_equal(getattr(loaded.voxels(), name), getattr(original.voxels(), name))
    points = rng.uniform(-10, 10, (2000, 3))
    labels = rng.integers(0, 5, 2000)
    for semantic_map in (original, loaded):
        semantic_map.integrate(points, labels, stamp_ns=10**9, origin=np.zeros(3))
    np.testing.assert_array_equal(loaded.voxels().log_probs, original.voxels().log_probs)
