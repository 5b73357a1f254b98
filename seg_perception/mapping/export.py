"""Getting a voxel map out: PointCloud2 and the package's SemanticVoxelMap message, PLY/PCD
through open3d, and a lossless file format to save and load maps."""
from __future__ import annotations

import glob
import inspect
import json
import os
import sys
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib import format as npy

from seg_perception.io.messages import MessageFactory, RosbagsFactory, make_header
from seg_perception.io.pointcloud import pack_rgb, xyz_to_cloud
from seg_perception.labels import LabelSet, LabelSetError

from .errors import MappingError
from .voxels import VoxelArrays

FILE_FORMAT = "seg_perception.voxel_map/1"
# The arrays a map file holds: dtype and trailing shape (after the voxel count M).
_ARRAYS: dict[str, tuple[np.dtype, tuple[int, ...] | None]] = {
    "keys": (np.dtype(np.int32), (3,)), "log_probs": (np.dtype(np.float32), None),
    "observations": (np.dtype(np.uint16), ()), "last_seen_ns": (np.dtype(np.int64), ()),
    "occupancy": (np.dtype(np.float32), ()),
}
# Deflate expands at most about 1032:1, so a member claiming more than that over its compressed
# size is damaged or hostile; checked before numpy allocates the array its header claims.
_MAX_DEFLATE_RATIO = 1032
_TEMPORARY = ".tmp.npz"


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

    The file is written aside (`<name>.<pid>.<random>.tmp.npz`) and renamed into place, so a
    reader never sees half a map; the temporary is removed when the save fails, and one left by a
    killed process (whose pid no longer runs) is removed by the next save to the same path.

    Args:
        params: the map's construction parameters, stored so that the map can be rebuilt as it was.
    """
    path = Path(path)
    document = {"format": FILE_FORMAT, "voxel_size": voxels.voxel_size, "params": params or {},
                "label_set": label_set.to_dict() if label_set is not None else None}
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_orphans(path)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{path.name}.{os.getpid()}.", suffix=_TEMPORARY)
    os.close(handle)
    try:
        np.savez_compressed(tmp, meta=np.array(json.dumps(document)), **{k: getattr(voxels, k) for k in _ARRAYS})
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _remove_orphans(path: Path) -> None:
    """Remove the temporaries of saves to `path` whose process is gone (killed mid-save)."""
    for orphan in glob.glob(f"{glob.escape(str(path))}.*.*{_TEMPORARY}"):
        pid = Path(orphan).name[len(path.name) + 1:].split(".", 1)[0]
        if pid.isdigit() and not _running(int(pid)):
            try:
                os.unlink(orphan)
            except FileNotFoundError:  # another saver removed it first
                pass


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def load_voxels(path: str | Path) -> tuple[VoxelArrays, LabelSet | None, dict[str, Any]]:
    """(voxels, label set or None, map parameters) from a file written by `save_voxels`.

    Every array's header is checked against its zip entry before it is read, so a damaged file
    cannot make numpy allocate more than the file can hold.

    Raises:
        MappingError: missing, unreadable, truncated or damaged file (bad zip, short entries,
            arrays of the wrong dtype or shape), or not a seg_perception voxel map file.
    """
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            for name in ("meta", *_ARRAYS):
                _check_entry(archive, f"{name}.npy")
        with np.load(path, allow_pickle=False) as data:
            document = json.loads(str(data["meta"]))
            arrays = {k: data[k] for k in _ARRAYS}
    # zipfile reports damage as BadZipFile, EOFError, zlib.error, NotImplementedError (a compression
    # method it lacks) or RuntimeError (an entry flagged as encrypted); numpy's as ValueError.
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error, NotImplementedError,
            RuntimeError) as exc:
        raise MappingError(f"{path} is not a readable voxel map file ({exc}); write maps with save_voxels") from None
    if not isinstance(document, dict) or document.get("format") != FILE_FORMAT:
        found = document.get("format") if isinstance(document, dict) else type(document).__name__
        raise MappingError(f"{path} has format {found!r}; this version reads {FILE_FORMAT!r}")
    voxel_size, label_set, params = document.get("voxel_size"), document.get("label_set"), document.get("params")
    # Compared, not converted: a JSON integer of 400 digits has no float.
    finite = isinstance(voxel_size, (int, float)) and not isinstance(voxel_size, bool) and (
        -sys.float_info.max <= voxel_size <= sys.float_info.max)
    if not finite or not isinstance(params, dict) or (label_set is not None and not isinstance(label_set, dict)):
        raise MappingError(f"{path}: damaged metadata (voxel_size {voxel_size!r}, params {type(params).__name__}, "
                           f"label_set {type(label_set).__name__}); a finite number, a mapping and a mapping or null "
                           "expected")
    _check_arrays(arrays, path)
    try:
        labels = LabelSet.from_dict(label_set) if label_set is not None else None
    except LabelSetError as exc:
        raise MappingError(f"{path}: {exc}") from None
    return VoxelArrays(float(voxel_size), **arrays), labels, params


def _check_entry(archive: zipfile.ZipFile, name: str) -> None:
    """Raise ValueError unless the .npy entry `name` holds a plain array whose size fits the entry."""
    info = archive.getinfo(name)  # KeyError when absent
    with archive.open(info) as stream:
        version = npy.read_magic(stream)
        shape, fortran, dtype = (npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0)(stream)
        header = stream.tell()
    claimed = header + int(np.prod(shape, dtype=object)) * dtype.itemsize
    if dtype.hasobject or claimed != info.file_size or info.file_size > max(info.compress_size, 1) * _MAX_DEFLATE_RATIO:
        raise ValueError(f"entry {name} ({dtype} {shape}) does not fit its {info.file_size} bytes")


def _check_arrays(arrays: dict[str, np.ndarray], path: Path) -> None:
    count = arrays["keys"].shape[0] if arrays["keys"].ndim else -1
    for name, (dtype, trailing) in _ARRAYS.items():
        array = arrays[name]
        fits = array.ndim >= 1 and array.shape[0] == count and (
            array.ndim == 2 and array.shape[1] >= 1 if trailing is None else array.shape[1:] == trailing)
        if array.dtype != dtype or not fits:
            shape = "(M, C)" if trailing is None else str((("M",) + trailing)).replace("'", "")
            raise MappingError(f"{path}: array {name} is {array.dtype} {array.shape}; {dtype} {shape} expected")


def save_map(path: str | Path, semantic_map: Any, label_set: LabelSet | None = None) -> Path:
    """Save a SemanticVoxelMap with its parameters; `load_map` rebuilds it exactly."""
    return save_voxels(path, semantic_map.voxels(), label_set=label_set, params=semantic_map.parameters())


def load_map(path: str | Path, **overrides: Any) -> tuple[Any, LabelSet | None]:
    """(SemanticVoxelMap, label set or None) from a `save_map` file; `overrides` replace saved parameters
    (e.g. backend="torch", device="cuda").

    Raises:
        MappingError: an unreadable file, unknown parameters, or contents the map refuses.
    """
    from .voxel_map import SemanticVoxelMap

    voxels, label_set, params = load_voxels(path)
    accepted = set(inspect.signature(SemanticVoxelMap).parameters)
    unknown = sorted(set(params) - accepted, key=str)
    if unknown:
        raise MappingError(f"{path} holds unknown map parameter(s) {unknown}; accepted: {', '.join(sorted(accepted))}")
    params = {k: tuple(v) if isinstance(v, list) else v for k, v in params.items()}  # JSON made tuples lists
    return SemanticVoxelMap.from_voxels(voxels, **{**params, **overrides}), label_set
