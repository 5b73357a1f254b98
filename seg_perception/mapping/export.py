"""Getting a voxel map out: PointCloud2 and the package's SemanticVoxelMap message, PLY/PCD
through open3d, and a lossless file format to save and load maps."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from seg_perception.io.messages import MessageFactory, RosbagsFactory, make_header
from seg_perception.io.pointcloud import pack_rgb, xyz_to_cloud
from seg_perception.labels import LabelSet

from .errors import MappingError
from .voxels import VoxelArrays

FILE_FORMAT = "seg_perception.voxel_map/1"
_ARRAYS = ("keys", "log_probs", "observations", "last_seen_ns", "occupancy")


def voxel_colors(voxels: VoxelArrays, label_set: LabelSet | None) -> np.ndarray:
    """(M, 3) uint8 colour of each voxel's label (grey without a label set)."""
    if label_set is None:
        return np.full((len(voxels), 3), 128, np.uint8)
    return label_set.palette()[voxels.labels]


def voxels_to_cloud(voxels: VoxelArrays, label_set: LabelSet | None = None, *, stamp_ns: int = 0,
                    frame_id: str = "map", factory: MessageFactory | None = None) -> Any:
    """A sensor_msgs/PointCloud2 of voxel centres with fields x, y, z, rgb (PCL-packed), label (uint16),
    confidence (float32): what RViz and PCL tools display directly."""
    colors = voxel_colors(voxels, label_set)
    return xyz_to_cloud(voxels.centers, stamp_ns=stamp_ns, frame_id=frame_id, is_dense=True, factory=factory,
                        rgb=pack_rgb(colors[:, 0], colors[:, 1], colors[:, 2]), label=voxels.labels,
                        confidence=voxels.confidence)


def voxels_to_msg(voxels: VoxelArrays, *, label_set_name: str, stamp_ns: int, frame_id: str = "map",
                  radius: float | None = None, max_voxels: int | None = None, evicted_total: int = 0,
                  factory: MessageFactory | None = None) -> Any:
    """The package's seg_perception/msg/SemanticVoxelMap (label, confidence, observations and age per voxel)."""
    factory = factory or RosbagsFactory()
    age = np.maximum(stamp_ns - voxels.last_seen_ns, 0).astype(np.float64) / 1e9
    return factory.make(
        "seg_perception/msg/SemanticVoxelMap", header=make_header(factory, stamp_ns, frame_id),
        voxel_size=float(voxels.voxel_size), label_set=label_set_name, num_classes=voxels.num_classes,
        keys=np.ascontiguousarray(voxels.keys, np.int32).reshape(-1), labels=voxels.labels,
        confidence=voxels.confidence, observations=voxels.observations.astype(np.uint32),
        last_seen_age=age.astype(np.float32), radius=float(radius or 0.0), max_voxels=int(max_voxels or 0),
        evicted_total=int(evicted_total))


def write_point_cloud(path: str | Path, voxels: VoxelArrays, label_set: LabelSet | None = None) -> Path:
    """Voxel centres as a .ply or .pcd file (open3d) with colours and `label` / `confidence` attributes.

    Raises:
        MappingError: an extension other than .ply or .pcd, or open3d failed to write.
    """
    import open3d as o3d

    path = Path(path)
    if path.suffix.lower() not in (".ply", ".pcd"):
        raise MappingError(f"cannot write {path.name}: the extension must be .ply or .pcd")
    cloud = o3d.t.geometry.PointCloud()
    cloud.point.positions = o3d.core.Tensor(voxels.centers)
    cloud.point.colors = o3d.core.Tensor(voxel_colors(voxels, label_set).astype(np.float32) / 255.0)
    # int32 and float32: the attribute types both PLY and PCD writers of open3d keep.
    cloud.point.label = o3d.core.Tensor(voxels.labels.astype(np.int32)[:, None])
    cloud.point.confidence = o3d.core.Tensor(voxels.confidence[:, None])
    path.parent.mkdir(parents=True, exist_ok=True)
    if not o3d.t.io.write_point_cloud(str(path), cloud):
        raise MappingError(f"open3d could not write {path}")
    return path


def save_voxels(path: str | Path, voxels: VoxelArrays, *, label_set: LabelSet | None = None,
                params: dict[str, Any] | None = None) -> Path:
    """Save a map's contents losslessly (.npz): `load_voxels` gives back equal arrays.

    Args:
        params: the map's construction parameters, stored so that the map can be rebuilt as it was.
    """
    path = Path(path)
    document = {"format": FILE_FORMAT, "voxel_size": voxels.voxel_size, "params": params or {},
                "label_set": label_set.to_dict() if label_set is not None else None}
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp.npz")
    os.close(handle)
    try:
        np.savez_compressed(tmp, meta=np.array(json.dumps(document)), **{k: getattr(voxels, k) for k in _ARRAYS})
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def load_voxels(path: str | Path) -> tuple[VoxelArrays, LabelSet | None, dict[str, Any]]:
    """(voxels, label set or None, map parameters) from a file written by `save_voxels`.

    Raises:
        MappingError: missing, unreadable or not a seg_perception voxel map file.
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            document = json.loads(str(data["meta"]))
            arrays = {k: data[k] for k in _ARRAYS}
    except (OSError, ValueError, KeyError) as exc:
        raise MappingError(f"{path} is not a readable voxel map file ({exc}); write maps with save_voxels") from None
    if document.get("format") != FILE_FORMAT:
        raise MappingError(f"{path} has format {document.get('format')!r}; this version reads {FILE_FORMAT!r}")
    label_set = LabelSet.from_dict(document["label_set"]) if document["label_set"] else None
    return VoxelArrays(float(document["voxel_size"]), **arrays), label_set, document["params"]


def save_map(path: str | Path, semantic_map: Any, label_set: LabelSet | None = None) -> Path:
    """Save a SemanticVoxelMap with its parameters; `load_map` rebuilds it exactly."""
    return save_voxels(path, semantic_map.voxels(), label_set=label_set, params=semantic_map.parameters())


def load_map(path: str | Path, **overrides: Any) -> tuple[Any, LabelSet | None]:
    """(SemanticVoxelMap, label set or None) from a `save_map` file; `overrides` replace saved parameters
    (e.g. backend="torch", device="cuda").

    Raises:
        MappingError: an unreadable file, or contents the map refuses.
    """
    from .voxel_map import SemanticVoxelMap

    voxels, label_set, params = load_voxels(path)
    params = {k: tuple(v) if isinstance(v, list) else v for k, v in params.items()}  # JSON made tuples lists
    return SemanticVoxelMap.from_voxels(voxels, **{**params, **overrides}), label_set
