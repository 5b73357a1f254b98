"""Vectorised ray casting against the synthetic world's primitives and terrain.

Every sensor (RGB, thermal, event camera, LiDAR, the sun's shadow map) samples the same geometry
through `cast`, so their ground truths agree by construction. Rays come as a 2-D grid; each
primitive is tested only against the rectangles of the grid it can cover (its bounding sphere's
footprint), which keeps the cost proportional to what is visible.
"""
from __future__ import annotations

from collections.abc import Callable
import math
from dataclasses import dataclass

import numpy as np
from numba import njit

ELLIPSOID, CYLINDER, BOX = 0, 1, 2
PRIMITIVE_DTYPE = np.dtype([
    ("kind", "u1"),        # ELLIPSOID, CYLINDER (vertical axis) or BOX
    ("cls", "u1"),         # class id of the label set
    ("material", "u1"),    # index into the scene's material table
    ("instance", "<u2"),   # object instance (0: none); parts of one object share it
    ("center", "<f4", 3),  # metres, map frame, at time 0
    ("size", "<f4", 3),    # ellipsoid radii / cylinder (radius, radius, half height) / box half extents
    ("yaw", "<f4"),        # rotation about z, radians
    ("velocity", "<f4", 3),  # metres per second; the object shuttles back and forth over `travel`
    ("travel", "<f4"),     # metres of travel before it turns back (0: static)
    ("radius", "<f4"),     # bounding-sphere radius, metres
])
EPS = 1e-4

Rect = tuple[int, int, int, int]  # row0, row1, col0, col1 (half-open)


@dataclass
class RayGrid:
    """Rays on an (H, W) grid: origins (H, W, 3) or (3,), unit directions (H, W, 3), float32."""

    origins: np.ndarray
    directions: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        return self.directions.shape[:2]


@dataclass
class Hits:
    """What each ray of a grid hit first. Rays that hit nothing have t = inf and cls = 0 (sky)."""

    t: np.ndarray          # (H, W) float32, metres along the ray
    cls: np.ndarray        # (H, W) uint8
    material: np.ndarray   # (H, W) uint8
    instance: np.ndarray   # (H, W) uint16
    normal: np.ndarray     # (H, W, 3) float32, unit, map frame

    @classmethod
    def empty(cls, shape: tuple[int, int]) -> Hits:
        return cls(np.full(shape, np.inf, np.float32), np.zeros(shape, np.uint8), np.zeros(shape, np.uint8),
                   np.zeros(shape, np.uint16), np.zeros(shape + (3,), np.float32))

    def points(self, grid: RayGrid) -> np.ndarray:
        """Hit points (H, W, 3); inf where nothing was hit."""
        return grid.origins + grid.directions * self.t[..., None]


def positions_at(primitives: np.ndarray, time_s: float) -> np.ndarray:
    """Primitive centres (N, 3) at `time_s`: movers shuttle along their velocity over `travel` metres."""
    centers = primitives["center"].astype(np.float64)
    speed = np.linalg.norm(primitives["velocity"], axis=1)
    moving = (primitives["travel"] > 0) & (speed > 0)
    if not moving.any():
        return centers
    travel = primitives["travel"][moving].astype(np.float64)
    phase = np.mod(speed[moving] * time_s, 2 * travel)
    distance = np.where(phase < travel, phase, 2 * travel - phase)  # triangle wave 0..travel..0
    direction = primitives["velocity"][moving] / speed[moving, None]
    centers[moving] += direction * distance[:, None]
    return centers


# The inner loops are compiled with numba: one ray-primitive test is ~20 arithmetic operations, and
# numpy's per-call overhead and temporaries made them ~20x slower than compiled code. Compiled
# functions are cached on disk (`cache=True`), so only the first run of an installation pays for compiling.


@njit(cache=True, inline="always")
def _ellipsoid(ox, oy, oz, dx, dy, dz, sx, sy, sz):
    px, py, pz = ox / sx, oy / sy, oz / sz
    qx, qy, qz = dx / sx, dy / sy, dz / sz
    a = qx * qx + qy * qy + qz * qz
    b = px * qx + py * qy + pz * qz
    c = px * px + py * py + pz * pz - 1.0
    disc = b * b - a * c
    if disc < 0.0:
        return np.inf, 0.0, 0.0, 0.0
    root = math.sqrt(disc)
    t = (-b - root) / a
    if t <= EPS:
        t = (-b + root) / a
        if t <= EPS:
            return np.inf, 0.0, 0.0, 0.0
    return t, (ox + t * dx) / (sx * sx), (oy + t * dy) / (sy * sy), (oz + t * dz) / (sz * sz)


@njit(cache=True, inline="always")
def _cylinder(ox, oy, oz, dx, dy, dz, r, h):
    best, nx, ny, nz = np.inf, 0.0, 0.0, 0.0
    a = dx * dx + dy * dy
    if a > 1e-12:
        b = ox * dx + oy * dy
        c = ox * ox + oy * oy - r * r
        disc = b * b - a * c
        if disc >= 0.0:
            t = (-b - math.sqrt(disc)) / a
            if t > EPS and abs(oz + t * dz) <= h:
                best, nx, ny, nz = t, ox + t * dx, oy + t * dy, 0.0
    if dz != 0.0:
        t = ((h if dz < 0.0 else -h) - oz) / dz
        if EPS < t < best:
            x, y = ox + t * dx, oy + t * dy
            if x * x + y * y <= r * r:
                best, nx, ny, nz = t, 0.0, 0.0, (1.0 if dz < 0.0 else -1.0)
    return best, nx, ny, nz


@njit(cache=True, inline="always")
def _box(ox, oy, oz, dx, dy, dz, sx, sy, sz):
    t_enter, t_exit, axis, sign = -np.inf, np.inf, 0, 0.0
    for k in range(3):
        o = ox if k == 0 else (oy if k == 1 else oz)
        d = dx if k == 0 else (dy if k == 1 else dz)
        s = sx if k == 0 else (sy if k == 1 else sz)
        if d == 0.0:
            if o < -s or o > s:
                return np.inf, 0.0, 0.0, 0.0
            continue
        t1, t2 = (-s - o) / d, (s - o) / d
        near, far = min(t1, t2), max(t1, t2)
        if near > t_enter:
            t_enter, axis, sign = near, k, (-1.0 if d > 0.0 else 1.0)
        t_exit = min(t_exit, far)
    if t_exit < t_enter or t_enter <= EPS:
        return np.inf, 0.0, 0.0, 0.0
    return t_enter, (sign if axis == 0 else 0.0), (sign if axis == 1 else 0.0), (sign if axis == 2 else 0.0)


@njit(cache=True)
def _cast_rects(origins, directions, centers, kinds, sizes, yaws, classes, materials, instances,
                rect_index, r0, r1, c0, c1, t_out, cls_out, material_out, instance_out, normal_out):
    for k in range(rect_index.size):
        i = rect_index[k]
        cx, cy, cz = centers[i, 0], centers[i, 1], centers[i, 2]
        cos, sin = math.cos(yaws[i]), math.sin(yaws[i])
        sx, sy, sz = sizes[i, 0], sizes[i, 1], sizes[i, 2]
        kind = kinds[i]
        for row in range(r0[k], r1[k]):
            for col in range(c0[k], c1[k]):
                px = origins[row, col, 0] - cx
                py = origins[row, col, 1] - cy
                pz = origins[row, col, 2] - cz
                wx, wy, wz = directions[row, col, 0], directions[row, col, 1], directions[row, col, 2]
                ox, oy = cos * px + sin * py, cos * py - sin * px
                dx, dy = cos * wx + sin * wy, cos * wy - sin * wx
                if kind == 0:
                    t, nx, ny, nz = _ellipsoid(ox, oy, pz, dx, dy, wz, sx, sy, sz)
                elif kind == 1:
                    t, nx, ny, nz = _cylinder(ox, oy, pz, dx, dy, wz, sx, sz)
                else:
                    t, nx, ny, nz = _box(ox, oy, pz, dx, dy, wz, sx, sy, sz)
                if t < t_out[row, col]:
                    t_out[row, col] = t
                    cls_out[row, col] = classes[i]
                    material_out[row, col] = materials[i]
                    instance_out[row, col] = instances[i]
                    gx, gy = cos * nx - sin * ny, sin * nx + cos * ny
                    norm = math.sqrt(gx * gx + gy * gy + nz * nz) + 1e-12
                    normal_out[row, col, 0] = gx / norm
                    normal_out[row, col, 1] = gy / norm
                    normal_out[row, col, 2] = nz / norm


@dataclass
class Rects:
    """Which primitive to test against which rectangle of a ray grid (rows r0:r1, columns c0:c1)."""

    index: np.ndarray
    r0: np.ndarray
    r1: np.ndarray
    c0: np.ndarray
    c1: np.ndarray

    @classmethod
    def build(cls, index, r0, r1, c0, c1, shape: tuple[int, int]) -> Rects:
        rows, cols = shape
        r0, r1 = np.clip(r0, 0, rows).astype(np.int64), np.clip(r1, 0, rows).astype(np.int64)
        c0, c1 = np.clip(c0, 0, cols).astype(np.int64), np.clip(c1, 0, cols).astype(np.int64)
        keep = (r1 > r0) & (c1 > c0)
        return cls(np.asarray(index)[keep], r0[keep], r1[keep], c0[keep], c1[keep])

    def __len__(self) -> int:
        return len(self.index)

    def subset(self, mask: np.ndarray) -> Rects:
        return Rects(self.index[mask], self.r0[mask], self.r1[mask], self.c0[mask], self.c1[mask])


def cast(
    grid: RayGrid,
    primitives: np.ndarray,
    time_s: float,
    rects: Callable[[np.ndarray, np.ndarray], Rects],
    hits: Hits | None = None,
) -> Hits:
    """First hits of `grid` against `primitives` at `time_s`.

    Args:
        rects: given the primitives' centres (N, 3) at `time_s` and the primitives, says which
            grid rectangles each primitive may cover; primitives it omits are not tested.
        hits: hits to improve on (e.g. terrain), updated in place; a new empty set when None.
    """
    hits = hits if hits is not None else Hits.empty(grid.shape)
    centers = positions_at(primitives, time_s)
    todo = rects(centers, primitives)
    if len(todo) == 0:
        return hits
    origins = np.broadcast_to(grid.origins, grid.directions.shape)
    _cast_rects(origins, grid.directions, centers, primitives["kind"].astype(np.int64),
                primitives["size"].astype(np.float64), primitives["yaw"].astype(np.float64),
                primitives["cls"], primitives["material"], primitives["instance"],
                todo.index.astype(np.int64), todo.r0, todo.r1, todo.c0, todo.c1,
                hits.t, hits.cls, hits.material, hits.instance, hits.normal)
    return hits
