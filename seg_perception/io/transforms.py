"""Transforms: geometry_msgs Transform/Pose ⇄ 4x4 matrices, quaternion maths, and a small tf2-like buffer."""
from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import ConversionError
from .messages import MessageFactory, RosbagsFactory, make_header, stamp_to_ns

TRANSFORM_TYPE = "geometry_msgs/msg/Transform"
TRANSFORM_STAMPED_TYPE = "geometry_msgs/msg/TransformStamped"
POSE_TYPE = "geometry_msgs/msg/Pose"

# How far R^T R of a transform may stray from I: loose enough for matrices composed in float32.
_ORTHONORMAL_TOLERANCE = 1e-4
# Quaternion norms accepted (they are normalised): any sane scale, but neither the zeros of an unset
# message nor the huge values of uninitialised memory (whose squares overflow to inf, and divided by
# that norm would silently become a zero quaternion).
QUATERNION_NORM_RANGE = (1e-6, 1e6)


def _normalized(q: np.ndarray, what: str) -> np.ndarray:
    """(..., 4) quaternions divided by their norms; ConversionError naming `what` for unusable ones."""
    with np.errstate(over="ignore", invalid="ignore"):
        norm = np.linalg.norm(q, axis=-1, keepdims=True)
    low, high = QUATERNION_NORM_RANGE
    good = np.isfinite(q).all(axis=-1) & (norm[..., 0] >= low) & (norm[..., 0] <= high)
    if not good.all():
        raise ConversionError(
            f"{what} {q[~good][0].tolist()} is invalid; finite values with a norm in [{low:g}, {high:g}] expected"
        )
    return q / norm


def quaternion_to_matrix(q: Any) -> np.ndarray:
    """Unit quaternions (x, y, z, w), the ROS order, → rotation matrices.

    Args:
        q: (..., 4) array; normalised here, so any norm in QUATERNION_NORM_RANGE is accepted.

    Returns:
        (..., 3, 3) float64 rotation matrices.

    Raises:
        ConversionError: the last axis is not 4, or a quaternion is non-finite or has a norm
            outside QUATERNION_NORM_RANGE (e.g. all zeros, or components of 1e154).
    """
    q = np.asarray(q, dtype=np.float64)
    if q.ndim == 0 or q.shape[-1] != 4:
        raise ConversionError(f"quaternions of shape {q.shape} are invalid; (..., 4) x, y, z, w expected")
    x, y, z, w = np.moveaxis(_normalized(q, "quaternion"), -1, 0)
    return np.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
            2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
            2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y),
        ],
        axis=-1,
    ).reshape(q.shape[:-1] + (3, 3))


def matrix_to_quaternion(R: Any) -> np.ndarray:
    """Rotation matrices → unit quaternions (x, y, z, w) with w >= 0, by Shepperd's method.

    Shepperd's method divides by the largest of 4w², 4x², 4y², 4z², so it stays accurate for every
    rotation, including those near 180° where the trace-only formula loses all precision.

    Args:
        R: (..., 3, 3) array of rotation matrices (orthonormality is not checked here).

    Returns:
        (..., 4) float64 unit quaternions.

    Raises:
        ConversionError: the trailing shape is not 3x3, or R has non-finite values.
    """
    R = np.asarray(R, dtype=np.float64)
    if R.ndim < 2 or R.shape[-2:] != (3, 3):
        raise ConversionError(f"rotation matrices of shape {R.shape} are invalid; (..., 3, 3) expected")
    if not np.isfinite(R).all():
        raise ConversionError("rotation matrix has non-finite values; finite values expected")
    (m00, m01, m02), (m10, m11, m12), (m20, m21, m22) = (np.moveaxis(row, -1, 0) for row in np.moveaxis(R, -2, 0))
    # Row k of A is 4·q_k·(w, x, y, z); the row with the largest diagonal entry gives q best.
    A = np.stack(
        [
            np.stack([1 + m00 + m11 + m22, m21 - m12, m02 - m20, m10 - m01], axis=-1),
            np.stack([m21 - m12, 1 + m00 - m11 - m22, m01 + m10, m02 + m20], axis=-1),
            np.stack([m02 - m20, m01 + m10, 1 + m11 - m00 - m22, m12 + m21], axis=-1),
            np.stack([m10 - m01, m02 + m20, m12 + m21, 1 + m22 - m00 - m11], axis=-1),
        ],
        axis=-2,
    )
    best = np.argmax(np.diagonal(A, axis1=-2, axis2=-1), axis=-1)
    wxyz = np.take_along_axis(A, best[..., None, None], axis=-2)[..., 0, :]
    wxyz /= np.linalg.norm(wxyz, axis=-1, keepdims=True)
    wxyz *= np.where(wxyz[..., :1] < 0, -1.0, 1.0)
    return np.concatenate([wxyz[..., 1:], wxyz[..., :1]], axis=-1)


def _check_transform_matrix(T: Any) -> np.ndarray:
    T = np.asarray(T, dtype=np.float64)
    if T.shape != (4, 4):
        raise ConversionError(f"transform matrix of shape {T.shape} is invalid; a 4x4 homogeneous matrix expected")
    if not np.isfinite(T).all():
        raise ConversionError("transform matrix has non-finite values; finite values expected")
    if not np.allclose(T[3], (0.0, 0.0, 0.0, 1.0), atol=1e-9):
        raise ConversionError(f"transform matrix bottom row is {T[3].tolist()}; [0, 0, 0, 1] expected")
    R = T[:3, :3]
    error = float(np.abs(R.T @ R - np.eye(3)).max())
    if error > _ORTHONORMAL_TOLERANCE or np.linalg.det(R) <= 0:
        raise ConversionError(
            f"transform matrix rotation block is not a rotation (|R^T R - I| = {error:.2g}, "
            f"det = {np.linalg.det(R):.3g}); "
            f"an orthonormal R with det +1 (within {_ORTHONORMAL_TOLERANCE}) expected"
        )
    return T


def _matrix(translation: np.ndarray, quaternion: np.ndarray) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = quaternion_to_matrix(quaternion)
    T[:3, 3] = translation
    return T


def _read_pose(msg: Any) -> tuple[np.ndarray, np.ndarray]:
    """(translation, quaternion xyzw) of a Transform/Pose, or of a message wrapping one."""
    inner = msg
    # TransformStamped.transform, PoseStamped.pose, PoseWithCovarianceStamped.pose.pose
    for _ in range(3):
        if hasattr(inner, "translation") and hasattr(inner, "rotation"):
            t, q = inner.translation, inner.rotation
            break
        if hasattr(inner, "position") and hasattr(inner, "orientation"):
            t, q = inner.position, inner.orientation
            break
        inner = getattr(inner, "transform", None) if hasattr(inner, "transform") else getattr(inner, "pose", None)
    else:
        raise ConversionError(
            f"{type(msg).__name__} holds no transform; geometry_msgs Transform, TransformStamped, "
            "Pose, PoseStamped or PoseWithCovariance(Stamped) expected"
        )
    return (
        np.array([t.x, t.y, t.z], dtype=np.float64),
        np.array([q.x, q.y, q.z, q.w], dtype=np.float64),
    )


def transform_to_matrix(msg: Any) -> np.ndarray:
    """geometry_msgs Transform, TransformStamped or Pose (and PoseStamped) → 4x4 matrix.

    The matrix maps points from the child frame into the parent (header) frame, T_parent_child.

    Args:
        msg: a message of either world; fields are read by name.

    Returns:
        4x4 float64 homogeneous transform.

    Raises:
        ConversionError: no translation/rotation or position/orientation fields, a non-finite
            translation, or an invalid quaternion.
    """
    translation, quaternion = _read_pose(msg)
    if not np.isfinite(translation).all():
        raise ConversionError(f"translation {translation.tolist()} is invalid; finite values expected")
    return _matrix(translation, quaternion)


def _vector_fields(factory: MessageFactory, T: np.ndarray) -> tuple[Any, Any]:
    x, y, z = (float(v) for v in T[:3, 3])
    qx, qy, qz, qw = (float(v) for v in matrix_to_quaternion(T[:3, :3]))
    return (x, y, z), factory.make("geometry_msgs/msg/Quaternion", x=qx, y=qy, z=qz, w=qw)


def matrix_to_transform(T: Any, *, factory: MessageFactory | None = None) -> Any:
    """4x4 matrix (T_parent_child) → geometry_msgs/Transform; the inverse of `transform_to_matrix`.

    Args:
        T: 4x4 homogeneous transform with an orthonormal rotation block.
        factory: builds the message; default RosbagsFactory().

    Returns:
        A geometry_msgs/Transform of the factory's world (quaternion with w >= 0).

    Raises:
        ConversionError: not 4x4, non-finite, wrong bottom row, or a rotation block that is not a rotation.
    """
    T = _check_transform_matrix(T)
    factory = factory if factory is not None else RosbagsFactory()
    (x, y, z), rotation = _vector_fields(factory, T)
    translation = factory.make("geometry_msgs/msg/Vector3", x=x, y=y, z=z)
    return factory.make(TRANSFORM_TYPE, translation=translation, rotation=rotation)


def matrix_to_transform_stamped(
    T: Any, parent: str, child: str, stamp_ns: int, *, factory: MessageFactory | None = None
) -> Any:
    """4x4 matrix (T_parent_child) → geometry_msgs/TransformStamped from `parent` to `child`.

    Args:
        T: 4x4 homogeneous transform mapping child-frame points into the parent frame.
        parent: header.frame_id.
        child: child_frame_id.
        stamp_ns: header stamp in nanoseconds.
        factory: builds the message; default RosbagsFactory().

    Raises:
        ConversionError: as `matrix_to_transform`.
    """
    factory = factory if factory is not None else RosbagsFactory()
    return factory.make(
        TRANSFORM_STAMPED_TYPE,
        header=make_header(factory, stamp_ns, parent),
        child_frame_id=child,
        transform=matrix_to_transform(T, factory=factory),
    )


def matrix_to_pose(T: Any, *, factory: MessageFactory | None = None) -> Any:
    """4x4 matrix → geometry_msgs/Pose (the child frame's pose in the parent frame).

    Raises:
        ConversionError: as `matrix_to_transform`.
    """
    T = _check_transform_matrix(T)
    factory = factory if factory is not None else RosbagsFactory()
    (x, y, z), orientation = _vector_fields(factory, T)
    position = factory.make("geometry_msgs/msg/Point", x=x, y=y, z=z)
    return factory.make(POSE_TYPE, position=position, orientation=orientation)


def invert_transform(T: np.ndarray) -> np.ndarray:
    """The inverse of a rigid 4x4 transform (R^T, -R^T t), exact where np.linalg.inv is not."""
    inverse = np.eye(4)
    inverse[:3, :3] = T[:3, :3].T
    inverse[:3, 3] = -T[:3, :3].T @ T[:3, 3]
    return inverse


def slerp(q0: np.ndarray, q1: np.ndarray, ratio: float) -> np.ndarray:
    """Spherical linear interpolation of unit quaternions (x, y, z, w) along the shorter arc."""
    dot = float(np.dot(q0, q1))
    if dot < 0.0:
        q1, dot = -q1, -dot
    if dot > 0.9995:
        # sin(theta) ~ 0 here: normalised lerp is exact to float precision and avoids 0/0.
        q = q0 + ratio * (q1 - q0)
        return q / np.linalg.norm(q)
    theta = math.acos(dot)
    return (math.sin((1.0 - ratio) * theta) * q0 + math.sin(ratio * theta) * q1) / math.sin(theta)


class TransformError(LookupError):
    """A TransformBuffer lookup failed: unknown frame, disconnected trees, or no data at that time.

    The message names the frames, the requested stamp and what the buffer holds.
    """


def _fmt(ns: int) -> str:
    sec, nsec = divmod(int(ns), 1_000_000_000)
    return f"{sec}.{nsec:09d} s"


def _frame(name: Any, role: str) -> str:
    # tf2 strips a leading slash (a tf1 habit); do the same so "/map" and "map" are one frame.
    frame = str(name).lstrip("/")
    if not frame:
        raise ConversionError(f"{role} frame {name!r} is invalid; a non-empty frame id expected")
    return frame


@dataclass
class _Edge:
    """The history of T_parent_child for one child frame, sorted by stamp."""

    parent: str
    static: bool
    stamps: list[int] = field(default_factory=list)
    translations: list[np.ndarray] = field(default_factory=list)
    rotations: list[np.ndarray] = field(default_factory=list)


class TransformBuffer:
    """A small tf2-like transform buffer for the ROS-free paths (bag replay, tests).

    Frames form a tree: each frame has at most one parent (map → odom → base_link → sensors).
    Dynamic edges keep a time-sorted history covering `cache_duration_ns` behind their newest
    stamp and are interpolated (linear translation, slerp rotation) between stamps; static edges
    hold one transform valid at all times. Setting a frame's transform with another parent, or
    switching it between static and dynamic, replaces its history (the newest publisher wins, as
    in tf2).

    Args:
        cache_duration_ns: history kept per dynamic edge (default 10 s, tf2's default).
        extrapolation_tolerance_ns: how far before the oldest or after the newest stamp of an edge
            a lookup may reach, using that end's transform (default 0: none, as tf2).
    """

    def __init__(self, cache_duration_ns: int = 10_000_000_000, extrapolation_tolerance_ns: int = 0) -> None:
        if cache_duration_ns <= 0 or extrapolation_tolerance_ns < 0:
            raise ConversionError(
                f"cache_duration_ns={cache_duration_ns}, extrapolation_tolerance_ns={extrapolation_tolerance_ns} "
                "are invalid; a positive duration and a non-negative tolerance expected"
            )
        self.cache_duration_ns = int(cache_duration_ns)
        self.extrapolation_tolerance_ns = int(extrapolation_tolerance_ns)
        self._edges: dict[str, _Edge] = {}

    @property
    def frames(self) -> list[str]:
        """All frame ids the buffer knows, sorted."""
        return sorted(set(self._edges) | {edge.parent for edge in self._edges.values()})

    def clear(self) -> None:
        """Forget every transform (e.g. when a replay jumps back in time)."""
        self._edges.clear()

    def set_transform(
        self,
        transform: Any,
        parent: str | None = None,
        child: str | None = None,
        stamp_ns: int | None = None,
        *,
        static: bool = False,
    ) -> None:
        """Add T_parent_child at a stamp.

        Args:
            transform: a 4x4 matrix (with `parent`, `child` and, unless static, `stamp_ns`) or a
                TransformStamped-like message, which carries its own frames and stamp.
            parent, child: frame ids; only with a matrix.
            stamp_ns: stamp in nanoseconds; only with a matrix (ignored for static transforms).
            static: the transform holds at all times (/tf_static).

        Raises:
            ConversionError: an invalid matrix or quaternion, missing or extra frame/stamp
                arguments, empty frame ids, a frame as its own parent, or an edge closing a cycle.
        """
        if hasattr(transform, "child_frame_id"):
            if parent is not None or child is not None or stamp_ns is not None:
                raise ConversionError(
                    "a TransformStamped carries its frames and stamp; "
                    "pass parent, child and stamp_ns only with a matrix"
                )
            parent, child = transform.header.frame_id, transform.child_frame_id
            stamp_ns = stamp_to_ns(transform.header.stamp)
            translation, quaternion = _read_pose(transform)
            if not np.isfinite(translation).all():
                raise ConversionError(
                    f"translation {translation.tolist()} of {parent} -> {child} is invalid; finite values expected"
                )
            quaternion = _normalized(quaternion, f"rotation of {parent} -> {child}")
        else:
            if parent is None or child is None or (stamp_ns is None and not static):
                raise ConversionError(
                    "a matrix needs parent, child and stamp_ns (stamp_ns may be omitted for static transforms)"
                )
            T = _check_transform_matrix(transform)
            translation, quaternion = T[:3, 3].copy(), matrix_to_quaternion(T[:3, :3])
        parent, child = _frame(parent, "parent"), _frame(child, "child")
        if parent == child:
            raise ConversionError(f"frame {child!r} cannot be its own parent; a transform between two frames expected")
        ancestor: str | None = parent
        while ancestor is not None:
            if ancestor == child:
                raise ConversionError(
                    f"{parent} -> {child} would close a cycle ({child!r} is an ancestor of {parent!r}); "
                    "frames must form a tree"
                )
            ancestor = self._edges[ancestor].parent if ancestor in self._edges else None
        edge = self._edges.get(child)
        if edge is None or edge.parent != parent or edge.static != static:
            edge = self._edges[child] = _Edge(parent, static)
        if static:
            edge.stamps[:], edge.translations[:], edge.rotations[:] = [0], [translation], [quaternion]
            return
        stamp = int(stamp_ns)  # type: ignore[arg-type]
        index = bisect.bisect_left(edge.stamps, stamp)
        if index < len(edge.stamps) and edge.stamps[index] == stamp:
            edge.translations[index], edge.rotations[index] = translation, quaternion
        else:
            edge.stamps.insert(index, stamp)
            edge.translations.insert(index, translation)
            edge.rotations.insert(index, quaternion)
        # Keep cache_duration_ns behind the newest stamp; data older than that is dropped (even when
        # it has just arrived, as tf2 does).
        drop = bisect.bisect_left(edge.stamps, edge.stamps[-1] - self.cache_duration_ns)
        if drop:
            del edge.stamps[:drop], edge.translations[:drop], edge.rotations[:drop]

    def add_tf_message(self, msg: Any, *, static: bool = False) -> None:
        """Add every TransformStamped of a tf2_msgs/TFMessage-like message (a `.transforms` list).

        Raises:
            ConversionError: the message has no `transforms`, or one of them is invalid (the ones
                before it have been added).
        """
        try:
            transforms = msg.transforms
        except AttributeError:
            raise ConversionError(f"{type(msg).__name__} has no 'transforms'; a tf2_msgs/TFMessage expected") from None
        for transform in transforms:
            self.set_transform(transform, static=static)

    def can_transform(self, target_frame: str, source_frame: str, stamp_ns: int = 0) -> bool:
        """Whether `lookup` with the same arguments would succeed."""
        try:
            self.lookup(target_frame, source_frame, stamp_ns)
        except TransformError:
            return False
        return True

    def lookup(self, target_frame: str, source_frame: str, stamp_ns: int = 0) -> np.ndarray:
        """T_target_source at a stamp: maps points in `source_frame` into `target_frame`.

        The same meaning as tf2's lookup_transform(target, source, time): the chain runs from the
        source up to the common ancestor and down to the target.

        Args:
            target_frame: frame the result maps into.
            source_frame: frame the result maps from.
            stamp_ns: nanoseconds; 0 means the latest time at which every edge on the chain has data.

        Returns:
            4x4 float64 homogeneous transform.

        Raises:
            TransformError: an unknown frame, frames in disconnected trees, or a stamp outside an
                edge's history (beyond the extrapolation tolerance); the message says what the
                buffer holds.
        """
        target, source = str(target_frame).lstrip("/"), str(source_frame).lstrip("/")
        what = f"lookup {target!r} <- {source!r} at t={_fmt(stamp_ns) if stamp_ns else '0 (latest)'}"
        known = self.frames
        for frame in (target, source):
            if frame not in known:
                raise TransformError(f"{what}: frame {frame!r} is unknown; known frames: {', '.join(known) or 'none'}")
        if target == source:
            return np.eye(4)
        source_chain, target_chain = self._chain(source), self._chain(target)
        if source_chain[-1] != target_chain[-1]:
            raise TransformError(
                f"{what}: the frames are not connected: {source!r} is in the tree rooted at {source_chain[-1]!r}, "
                f"{target!r} in the tree rooted at {target_chain[-1]!r}; known frames: {', '.join(known)}"
            )
        # Trim the shared top of both chains, leaving each one up to (not including) the common ancestor.
        while len(source_chain) > 1 and len(target_chain) > 1 and source_chain[-2] == target_chain[-2]:
            source_chain.pop()
            target_chain.pop()
        source_edges, target_edges = source_chain[:-1], target_chain[:-1]
        if not stamp_ns:
            stamp_ns = self._latest_common_time(source_edges + target_edges, what)
        T_common_source = self._compose(source_edges, stamp_ns, what)
        T_common_target = self._compose(target_edges, stamp_ns, what)
        return invert_transform(T_common_target) @ T_common_source

    def _chain(self, frame: str) -> list[str]:
        chain = [frame]
        while chain[-1] in self._edges:
            chain.append(self._edges[chain[-1]].parent)
        return chain

    def _compose(self, children: list[str], stamp_ns: int, what: str) -> np.ndarray:
        T = np.eye(4)
        for child in children:
            T = self._edge_at(child, stamp_ns, what) @ T
        return T

    def _latest_common_time(self, children: list[str], what: str) -> int:
        dynamic = [(child, self._edges[child]) for child in children if not self._edges[child].static]
        if not dynamic:
            return 0
        newest_child, newest = min(((c, e.stamps[-1]) for c, e in dynamic), key=lambda item: item[1])
        oldest_child, oldest = max(((c, e.stamps[0]) for c, e in dynamic), key=lambda item: item[1])
        if newest < oldest:
            raise TransformError(
                f"{what}: the edges have no common time: newest for {self._edges[newest_child].parent}->{newest_child} "
                f"is {_fmt(newest)}, oldest for {self._edges[oldest_child].parent}->{oldest_child} is {_fmt(oldest)}"
            )
        return newest

    def _edge_at(self, child: str, stamp_ns: int, what: str) -> np.ndarray:
        edge = self._edges[child]
        stamps = edge.stamps
        if edge.static or not stamp_ns:
            return _matrix(edge.translations[-1], edge.rotations[-1])
        index = bisect.bisect_left(stamps, stamp_ns)
        if index < len(stamps) and stamps[index] == stamp_ns:
            return _matrix(edge.translations[index], edge.rotations[index])
        held = f"{len(stamps)} stamp(s) held, {_fmt(stamps[0])} to {_fmt(stamps[-1])}"
        if index == 0:
            if stamps[0] - stamp_ns > self.extrapolation_tolerance_ns:
                raise TransformError(
                    f"{what}: extrapolation into the past: requested t={_fmt(stamp_ns)}, oldest for "
                    f"{edge.parent}->{child} is {_fmt(stamps[0])} ({held})"
                )
            return _matrix(edge.translations[0], edge.rotations[0])
        if index == len(stamps):
            if stamp_ns - stamps[-1] > self.extrapolation_tolerance_ns:
                raise TransformError(
                    f"{what}: extrapolation into the future: requested t={_fmt(stamp_ns)}, newest for "
                    f"{edge.parent}->{child} is {_fmt(stamps[-1])} ({held})"
                )
            return _matrix(edge.translations[-1], edge.rotations[-1])
        ratio = (stamp_ns - stamps[index - 1]) / (stamps[index] - stamps[index - 1])
        t0, t1 = edge.translations[index - 1], edge.translations[index]
        return _matrix(t0 + ratio * (t1 - t0), slerp(edge.rotations[index - 1], edge.rotations[index], ratio))
