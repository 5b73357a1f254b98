"""LiDAR → camera label transfer with a depth-buffer occlusion test, and LiDAR motion de-skewing."""
from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from seg_perception.io.camera import CameraModel
from seg_perception.io.transforms import invert_transform

from .errors import MappingError

# PointLabels.status values, in order of precedence (a point gets the first that applies).
LABELLED = 0  # sampled from the segmentation
INVALID = 1   # a coordinate is NaN or infinite
BEHIND = 2    # behind the camera or closer than min_depth
OUTSIDE = 3   # projects outside the image (or beyond the lens model's one-to-one radius)
OCCLUDED = 4  # the camera sees something nearer along its ray, per the depth buffer


@dataclass
class PointLabels:
    """Per-point result of `label_points`.

    Attributes:
        labels: (N,) int32 class id sampled from the segmentation; -1 where the point is not labelled.
        confidence: (N,) float32 segmentation confidence at the point's pixel; 0 where not labelled.
        status: (N,) uint8, one of LABELLED, INVALID, BEHIND, OUTSIDE, OCCLUDED.
    """

    labels: np.ndarray
    confidence: np.ndarray
    status: np.ndarray

    def __len__(self) -> int:
        return int(self.status.shape[0])

    @property
    def labelled(self) -> np.ndarray:
        """(N,) bool: the points that received a label."""
        return self.status == LABELLED


def label_points(
    points: Any,
    T_camera_lidar: Any,
    camera: CameraModel,
    labels: Any,
    confidence: Any | None = None,
    *,
    occlusion: bool = True,
    occlusion_cell_px: int = 4,
    occlusion_margin_m: float = 0.3,
    occlusion_relative: float = 0.05,
    min_depth: float = 0.3,
    default_confidence: float = 1.0,
) -> PointLabels:
    """Label LiDAR points with the class of the segmentation pixel each projects to.

    Points are moved into the camera optical frame, culled (non-finite, behind the camera, outside
    the image), projected through the camera's lens model and read at the nearest pixel:
    round(u) = floor(u + 0.5), with pixel centres at integer coordinates (OpenCV/ROS), so a point is
    inside when -0.5 <= u < W - 0.5 and -0.5 <= v < H - 0.5.

    Occlusion: the LiDAR and the camera sit apart, so the LiDAR sees background that the camera
    sees hidden behind foreground, and such points would be painted with the foreground's label. A
    depth buffer of `occlusion_cell_px`-square cells keeps the smallest camera depth (optical z) of
    the projected points in each cell; a point whose depth exceeds the minimum over its cell's 3x3
    neighbourhood times (1 + occlusion_relative) plus occlusion_margin_m is OCCLUDED. The
    neighbourhood bridges the gaps between LiDAR rings; the relative and absolute margins limit how
    much of itself a surface seen at a grazing angle (the ground) hides. The test is conservative:
    near depth edges and on such surfaces it drops some points the camera does see rather than
    paint hidden ones with a foreground label.

    Args:
        points: (N, 3) float32 or float64 x, y, z in the LiDAR frame, metres; any N, including 0.
        T_camera_lidar: (4, 4) rigid transform taking LiDAR-frame points into the camera optical
            frame (z forward, x right, y down).
        camera: the camera that took the segmented image.
        labels: (H, W) integer class-id image (uint8 or uint16). A size other than
            `camera.image_size` is read as the same camera resized (e.g. a network's output).
        confidence: optional (H, W) confidence image, read as float32.
        occlusion: run the depth-buffer occlusion test.
        occlusion_cell_px: depth-buffer cell size, pixels of the label image.
        occlusion_margin_m: absolute depth margin of the occlusion test, metres.
        occlusion_relative: relative depth margin of the occlusion test.
        min_depth: points with optical z <= min_depth (metres) are BEHIND.
        default_confidence: confidence of every labelled point when `confidence` is None.

    Returns:
        PointLabels for the N points, in input order.

    Raises:
        MappingError: points not (N, 3); T_camera_lidar not a finite 4x4 rigid transform; labels
            not a non-empty 2-D integer image; confidence not of the labels' shape; a non-positive
            min_depth or occlusion_cell_px, or negative occlusion margins.
    """
    xyz = _check_points(points)
    T = _check_rigid(T_camera_lidar, "T_camera_lidar", batch=False)
    label_image = _check_labels(labels)
    confidence_image = _check_confidence(confidence, label_image.shape)
    if not min_depth > 0:
        raise MappingError(f"min_depth {min_depth} is invalid; a positive depth in metres expected")
    if occlusion and (int(occlusion_cell_px) < 1 or not occlusion_margin_m >= 0 or not occlusion_relative >= 0):
        raise MappingError(
            f"occlusion parameters cell {occlusion_cell_px} px, margin {occlusion_margin_m} m, relative "
            f"{occlusion_relative} are invalid; a cell of at least 1 px and non-negative margins expected"
        )
    height, width = label_image.shape
    if camera.image_size != (width, height):
        camera = _resized(camera, width, height)

    n = xyz.shape[0]
    status = np.empty(n, np.uint8)
    out_labels = np.full(n, -1, np.int32)
    out_confidence = np.zeros(n, np.float32)
    index = np.empty(n, np.int64)
    cam = np.empty((n, 3), np.float32)
    count = _compiled_cull()(xyz, T[:3].astype(np.float32), np.float32(min_depth), _view_box(camera),
                             status, index, cam)
    index, cam = index[:count], cam[:count]

    # The cull has enforced min_depth already; 0 keeps project's own depth test from differing by rounding.
    pixels, valid = camera.project(cam, min_depth=0.0)
    with np.errstate(invalid="ignore"):
        col = np.floor(pixels[:, 0] + np.float32(0.5))
        row = np.floor(pixels[:, 1] + np.float32(0.5))
        valid &= (col >= 0) & (col < width) & (row >= 0) & (row < height)
    index, depth = index[valid], cam[valid, 2]
    col, row = col[valid].astype(np.intp), row[valid].astype(np.intp)

    if occlusion and index.size:
        cell = int(occlusion_cell_px)
        hidden = _occluded(row // cell, col // cell, depth, -(-height // cell), -(-width // cell),
                           float(occlusion_relative), float(occlusion_margin_m))
        status[index[hidden]] = OCCLUDED
        keep = ~hidden
        index, row, col = index[keep], row[keep], col[keep]

    status[index] = LABELLED
    out_labels[index] = label_image[row, col]
    out_confidence[index] = (default_confidence if confidence_image is None else confidence_image[row, col])
    return PointLabels(out_labels, out_confidence, status)


def _occluded(cell_row: np.ndarray, cell_col: np.ndarray, depth: np.ndarray, grid_h: int, grid_w: int,
              relative: float, margin: float) -> np.ndarray:
    """(M,) bool: points deeper than their cells' 3x3-neighbourhood minimum depth by more than the margins."""
    # One cell of +inf padding on each side makes the 3x3 minimum nine plain slices.
    buffer = np.full((grid_h + 2) * (grid_w + 2), np.inf, np.float32)
    flat = (cell_row + 1) * (grid_w + 2) + (cell_col + 1)
    np.minimum.at(buffer, flat, depth)
    buffer = buffer.reshape(grid_h + 2, grid_w + 2)
    nearest = buffer[1:-1, 1:-1].copy()
    for dr in (0, 1, 2):
        for dc in (0, 1, 2):
            np.minimum(nearest, buffer[dr:dr + grid_h, dc:dc + grid_w], out=nearest)
    limit = nearest[cell_row, cell_col] * np.float32(1.0 + relative) + np.float32(margin)
    return depth > limit


@functools.cache
def _compiled_cull() -> Any:
    """`_cull` compiled with numba, on first use (importing numba costs half a second)."""
    from numba import njit

    return njit(cache=True)(_cull)


def _cull(points, M, min_depth, box, status, index, cam):
    """Transform points by M = T[:3] and sort out those that cannot be seen, in one pass.

    numpy needs a pass per test here (finite, depth, transform, the view box, compaction), and on a
    full scan those passes cost more than the projection itself. Writes every point's status
    (OUTSIDE for the survivors, until the image tests pass), their indices and optical-frame
    coordinates; returns their count. box = (x_min, x_max, y_min, y_max) bounds x/z and y/z.
    """
    count = 0
    for i in range(points.shape[0]):
        px, py, pz = points[i, 0], points[i, 1], points[i, 2]
        if not (np.isfinite(px) and np.isfinite(py) and np.isfinite(pz)):
            status[i] = INVALID
            continue
        z = M[2, 0] * px + M[2, 1] * py + M[2, 2] * pz + M[2, 3]
        if not z > min_depth:
            status[i] = BEHIND
            continue
        status[i] = OUTSIDE
        x = M[0, 0] * px + M[0, 1] * py + M[0, 2] * pz + M[0, 3]
        y = M[1, 0] * px + M[1, 1] * py + M[1, 2] * pz + M[1, 3]
        if x < box[0] * z or x > box[1] * z or y < box[2] * z or y > box[3] * z:
            continue
        index[count] = i
        cam[count, 0], cam[count, 1], cam[count, 2] = x, y, z
        count += 1
    return count


@functools.lru_cache(maxsize=16)
def _view_box(camera: CameraModel) -> np.ndarray:
    """Bounds (x_min, x_max, y_min, y_max) on x/z and y/z of every optical-frame point that projects
    into the image, so that most of a scan skips the lens model.

    Within the radius where the distortion is one-to-one, the image's pre-image is the region inside
    the pre-image of its border, so the bounding box of the border's pre-image (sampled every pixel,
    widened by twice the largest step between samples) bounds it. Where the border does not survive
    the round trip (part of the image lies beyond that radius, or undistortion did not converge) no
    bound is used.
    """
    width, height = camera.image_size
    u0, v0, u1, v1 = -0.5, -0.5, width - 0.5, height - 0.5
    us, vs = np.linspace(u0, u1, width + 1), np.linspace(v0, v1, height + 1)
    sides = [np.stack(side, axis=1) for side in (
        (us, np.full_like(us, v0)), (us, np.full_like(us, v1)), (np.full_like(vs, u0), vs), (np.full_like(vs, u1), vs))]
    unbounded = np.array([-np.inf, np.inf, -np.inf, np.inf], np.float32)
    lower, upper, step = np.full(2, np.inf), np.full(2, -np.inf), 0.0
    for side in sides:
        rays = camera.unproject(side)
        pixels, valid = camera.project(rays)
        if not (valid.all() and np.abs(pixels - side).max() < 0.01):
            return unbounded
        lower, upper = np.minimum(lower, rays[:, :2].min(axis=0)), np.maximum(upper, rays[:, :2].max(axis=0))
        step = max(step, float(np.abs(np.diff(rays[:, :2], axis=0)).max()))
    return np.array([lower[0] - 2 * step, upper[0] + 2 * step, lower[1] - 2 * step, upper[1] + 2 * step], np.float32)


@functools.lru_cache(maxsize=16)
def _resized(camera: CameraModel, width: int, height: int) -> CameraModel:
    """`camera.resized`, kept per camera and size: a new model recomputes its fold radius on first
    projection, which would otherwise cost every frame of a stream segmented at network resolution."""
    return camera.resized(width, height)


def _check_points(points: Any) -> np.ndarray:
    array = np.asarray(points)
    if array.ndim != 2 or array.shape[1] != 3 or not (
        np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)
    ):
        raise MappingError(
            f"points of shape {array.shape} and dtype {array.dtype} are invalid; an (N, 3) float array expected"
        )
    return np.ascontiguousarray(array, dtype=np.float32)


# How far R^T R of a transform may stray from I: loose enough for matrices composed in float32
# (the tolerance TransformBuffer accepts).
_ORTHONORMAL_TOLERANCE = 1e-4


def _check_rigid(T: Any, what: str, batch: bool) -> np.ndarray:
    """T as float64 (K, 4, 4) rigid transforms (a batch) or one (4, 4) transform, checked all at once."""
    try:
        T = np.asarray(T, dtype=np.float64)
    except (TypeError, ValueError):
        raise MappingError(f"{what} is not numeric; finite 4x4 rigid transforms expected") from None
    if T.shape[-2:] != (4, 4) or T.ndim != (3 if batch else 2):
        expected = "(K, 4, 4)" if batch else "(4, 4)"
        raise MappingError(f"{what} has shape {T.shape}; {expected} rigid transforms expected")
    single = T.ndim == 2
    T = T.reshape(-1, 4, 4)
    if not np.isfinite(T).all():
        raise MappingError(f"{what} has non-finite values; finite 4x4 rigid transforms expected")
    if np.abs(T[:, 3] - (0.0, 0.0, 0.0, 1.0)).max(initial=0.0) > 1e-9:
        raise MappingError(f"{what} has a bottom row other than [0, 0, 0, 1]; 4x4 rigid transforms expected")
    R = T[:, :3, :3]
    error = np.abs(np.einsum("kji,kjl->kil", R, R) - np.eye(3)).max(initial=0.0)
    if error > _ORTHONORMAL_TOLERANCE or (np.linalg.det(R) <= 0).any():
        raise MappingError(
            f"{what} has a rotation block that is not a rotation (|R^T R - I| = {error:.2g}); an orthonormal R "
            f"with det +1 (within {_ORTHONORMAL_TOLERANCE}) expected"
        )
    return T[0] if single else T


def _check_labels(labels: Any) -> np.ndarray:
    image = np.asarray(labels)
    if image.ndim != 2 or image.size == 0 or not np.issubdtype(image.dtype, np.integer):
        raise MappingError(
            f"labels image of shape {image.shape} and dtype {image.dtype} is invalid; "
            "a non-empty (H, W) integer class-id image (uint8 or uint16) expected"
        )
    return image


def _check_confidence(confidence: Any | None, shape: tuple[int, ...]) -> np.ndarray | None:
    if confidence is None:
        return None
    image = np.asarray(confidence)
    if image.shape != shape or not (np.issubdtype(image.dtype, np.floating) or np.issubdtype(image.dtype, np.integer)):
        raise MappingError(
            f"confidence image of shape {image.shape} and dtype {image.dtype} is invalid; "
            f"a float image of the labels' shape {shape} expected"
        )
    return image.astype(np.float32, copy=False)


def deskew(
    points: Any,
    time_offset_ns: Any,
    start_ns: int,
    pose_at: Callable[[np.ndarray], np.ndarray],
    reference_ns: int,
    *,
    slices: int = 32,
) -> np.ndarray:
    """Move the points of a motion-distorted LiDAR sweep into the sensor frame at one instant.

    Point i was measured at start_ns + time_offset_ns[i] in the sensor frame of that moment; it is
    mapped through T_sensor(reference)^-1 @ T_sensor(t_i). To stay vectorised, the sweep's time
    span is cut into `slices` equal slices and every point of a slice uses the pose at the slice's
    mid time. A point is then off by the sensor's motion over at most half a slice: with linear
    speed v, angular rate w and range r, |error| <= (v + w r) * span / (2 slices) to first order;
    for a 10 Hz sweep in 32 slices that is 3 cm at 20 m/s, plus 3 cm per rad/s of yaw at 20 m range.

    Args:
        points: (..., 3) x, y, z in the sensor frame, metres (float32 stays float32); NaN points stay NaN.
        time_offset_ns: (...) integer offsets of each point from start_ns, nanoseconds.
        start_ns: stamp the offsets count from.
        pose_at: stamps (K,) int64 → (K, 4, 4) T_map_sensor at those stamps (a trajectory, or a
            TransformBuffer lookup); called once.
        reference_ns: stamp whose sensor frame the points are returned in (often the camera image's).
        slices: number of time slices (>= 1).

    Returns:
        The points in the sensor frame at reference_ns, of the input's shape.

    Raises:
        MappingError: points not (..., 3), offsets not of the points' leading shape or not integers,
            slices < 1, or pose_at returning anything but finite rigid (K, 4, 4) transforms.
    """
    xyz = np.asarray(points)
    offsets = np.asarray(time_offset_ns)
    if xyz.ndim < 1 or xyz.shape[-1] != 3 or not np.issubdtype(xyz.dtype, np.floating):
        raise MappingError(f"points of shape {xyz.shape} and dtype {xyz.dtype} are invalid; (..., 3) floats expected")
    if offsets.shape != xyz.shape[:-1] or not np.issubdtype(offsets.dtype, np.integer):
        raise MappingError(
            f"time_offset_ns of shape {offsets.shape} and dtype {offsets.dtype} does not fit points of shape "
            f"{xyz.shape}; integer offsets of shape {xyz.shape[:-1]} expected"
        )
    if int(slices) < 1:
        raise MappingError(f"slices {slices} is invalid; at least 1 expected")
    dtype = np.float32 if xyz.dtype == np.float32 else np.float64
    flat = np.ascontiguousarray(xyz.reshape(-1, 3), dtype=dtype)
    offsets = np.ascontiguousarray(offsets.reshape(-1))
    if flat.shape[0] == 0:
        return flat.reshape(xyz.shape).copy()

    first, last = int(offsets.min()), int(offsets.max())
    span = last - first + 1
    count = min(int(slices), span)
    # Slice k covers offsets [first + k span / count, first + (k + 1) span / count); integer
    # arithmetic throughout, as float64 cannot hold nanosecond stamps exactly.
    k = np.arange(count, dtype=np.int64)
    mid = int(start_ns) + first + (2 * k * span + span) // (2 * count)
    stamps = np.concatenate([mid, [int(reference_ns)]]).astype(np.int64)
    poses = _check_rigid(pose_at(stamps), "pose_at's result", batch=True)
    if poses.shape[0] != stamps.size:
        raise MappingError(
            f"pose_at returned {poses.shape[0]} poses for {stamps.size} stamps; one T_map_sensor per stamp expected"
        )
    # T_sensor(reference)^-1 @ T_sensor(slice mid time), one 3x4 block per slice.
    relative = (invert_transform(poses[-1]) @ poses[:-1])[:, :3].astype(dtype)
    out = np.empty_like(flat)
    _compiled_transform_slices()(flat, offsets, first, count / span, relative, out)
    return out.reshape(xyz.shape)


@functools.cache
def _compiled_transform_slices() -> Any:
    """`_transform_slices` compiled with numba, on first use."""
    from numba import njit

    return njit(cache=True)(_transform_slices)


def _transform_slices(points, offsets, first, slices_per_ns, transforms, out):
    """out[i] = transforms[slice of offsets[i]] (3x4) applied to points[i]. numpy would build the
    slice indices and gather a matrix per point (or sort the points by slice) first, which costs
    several times the arithmetic. A multiply rather than an integer division finds the slice: the
    offsets from `first` are exact in float64, and a point rounded into the next slice at a
    boundary stays within the slices' error bound."""
    last = transforms.shape[0] - 1
    for i in range(points.shape[0]):
        M = transforms[min(np.int64((np.int64(offsets[i]) - first) * slices_per_ns), last)]
        x, y, z = points[i, 0], points[i, 1], points[i, 2]
        for r in range(3):
            out[i, r] = M[r, 0] * x + M[r, 1] * y + M[r, 2] * z + M[r, 3]
