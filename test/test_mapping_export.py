"""Voxel map exports: PointCloud2 and SemanticVoxelMap messages (both message worlds, real CDR),
PLY/PCD through open3d, lossless save/load, crops — checked against hand-built voxels."""
from __future__ import annotations

import io
import os
import zipfile

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


def _saved_bytes(tmp_path) -> bytes:
    return save_voxels(tmp_path / "good.npz", _voxels(), label_set=LABELS, params={"radius": 40.0}).read_bytes()


@pytest.mark.parametrize("cut", [0.3, 0.6, 0.9, 0.999])
def test_truncated_map_files_are_mapping_errors(tmp_path, cut):
    data = _saved_bytes(tmp_path)
    (tmp_path / "cut.npz").write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(MappingError, match="not a readable voxel map file"):
        load_voxels(tmp_path / "cut.npz")


def test_damaged_map_files_are_mapping_errors(tmp_path):
    data = bytearray(_saved_bytes(tmp_path))
    for position in range(40, len(data), max(len(data) // 60, 1)):  # a flipped byte anywhere: CRC, header or data
        damaged = bytearray(data)
        damaged[position] ^= 0xFF
        (tmp_path / "bad.npz").write_bytes(bytes(damaged))
        try:
            load_voxels(tmp_path / "bad.npz")
        except MappingError:
            pass


def _npz(tmp_path, **arrays):
    base = dict(meta=np.array('{"format": "seg_perception.voxel_map/1", "voxel_size": 0.5, "params": {}, '
                              '"label_set": null}'),
                keys=np.zeros((2, 3), np.int32), log_probs=np.zeros((2, 3), np.float32),
                observations=np.zeros(2, np.uint16), last_seen_ns=np.zeros(2, np.int64), occupancy=np.zeros(2, np.float32))
    base.update(arrays)
    np.savez(tmp_path / "m.npz", **{k: v for k, v in base.items() if v is not None})
    return tmp_path / "m.npz"


@pytest.mark.parametrize(("arrays", "match"), [
    (dict(keys=np.zeros((2, 3), np.float64)), r"array keys is float64 \(2, 3\); int32 \(M, 3\) expected"),
    (dict(log_probs=np.zeros(2, np.float32)), r"array log_probs is float32 \(2,\); float32 \(M, C\) expected"),
    (dict(occupancy=np.zeros(3, np.float32)), r"array occupancy is float32 \(3,\); float32 \(M,\) expected"),
    (dict(observations=None), r"not a readable voxel map file .*observations.npy"),
    (dict(meta=np.array("[1]")), r"has format 'list'"),
    (dict(meta=np.array('{"format": "seg_perception.voxel_map/1", "voxel_size": "big", "params": {}}')),
     r"damaged metadata \(voxel_size 'big'"),
    (dict(meta=np.array('{"format": "seg_perception.voxel_map/1", "voxel_size": 1' + "0" * 400 + ', "params": {}}')),
     r"damaged metadata \(voxel_size 1000"),
    (dict(meta=np.array('{"format": "seg_perception.voxel_map/1", "voxel_size": 0.5, "params": {}, '
                        '"label_set": {"name": "x", "classes": []}}')), r"label set 'x' has no classes"),
])
def test_map_files_with_wrong_contents_are_mapping_errors(tmp_path, arrays, match):
    with pytest.raises(MappingError, match=match):
        load_voxels(_npz(tmp_path, **arrays))


def test_entry_claiming_more_than_its_bytes_is_refused_before_reading(tmp_path, monkeypatch):
    header = np.lib.format.header_data_from_array_1_0(np.zeros(1, np.float32))
    header["shape"] = (10**12,)  # 4 TB claimed by a few bytes
    path = _npz(tmp_path, occupancy=None)
    with zipfile.ZipFile(path, "a") as archive:
        stream = io.BytesIO()
        np.lib.format.write_array_header_1_0(stream, header)
        archive.writestr("occupancy.npy", stream.getvalue() + bytes(8))
    monkeypatch.setattr(np, "load", lambda *a, **k: pytest.fail("np.load ran on a damaged file"))
    with pytest.raises(MappingError, match=r"entry occupancy.npy \(float32 \(1000000000000,\)\) does not fit"):
        load_voxels(path)


def test_map_parameters_unknown_to_the_map_are_refused(tmp_path):
    from seg_perception.mapping import load_map

    path = save_voxels(tmp_path / "m.npz", _voxels(), params={"radius": 40.0, "colour": "red"})
    with pytest.raises(MappingError, match=r"unknown map parameter\(s\) \['colour'\]; accepted: .*max_voxels"):
        load_map(path)


def test_a_killed_save_leaves_no_orphan_after_the_next_save(tmp_path):
    import subprocess
    import sys

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    orphan = tmp_path / f"map.npz.{gone.stdout.strip()}.k2j4x9.tmp.npz"  # what save_voxels writes aside
    orphan.write_bytes(b"half a map")
    live = tmp_path / f"map.npz.{os.getpid()}.a8c7q1.tmp.npz"  # a save in progress in a live process
    live.write_bytes(b"being written")
    save_voxels(tmp_path / "map.npz", _voxels())
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["map.npz", live.name])


def test_a_failed_save_leaves_nothing_behind(tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez_compressed", fail)
    with pytest.raises(OSError, match="disk full"):
        save_voxels(tmp_path / "map.npz", _voxels())
    assert list(tmp_path.iterdir()) == []
