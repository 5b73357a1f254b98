"""A rotating multi-beam LiDAR ray-cast into the scene, with motion during the sweep, noise and dropouts."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .raycast import RayGrid, Rects, cast
from .render import terrain_hits
from .rig import LidarSpec, Trajectory
from .scene import MATERIALS, MUD_WATER, Scene

REFLECTIVITY = np.array([m.reflectivity for m in MATERIALS], np.float32)


@dataclass
class LidarScan:
    """One sweep, organised as (beams, columns); points are NaN where there was no return.

    Points are in the LiDAR frame at each column's firing time (motion-distorted, as real
    drivers publish them); `time_offset_ns` says when, relative to `start_ns`.
    """

    start_ns: int               # stamp of the first column, on the frames' clock
    points: np.ndarray          # (B, C, 3) float32, metres
    intensity: np.ndarray       # (B, C) float32, 0..255
    time_offset_ns: np.ndarray  # (B, C) uint32
    ring: np.ndarray            # (B, C) uint16, 0 = highest beam
    labels: np.ndarray          # (B, C) uint8 ground-truth class (0 where no return)
    instance: np.ndarray        # (B, C) uint16 ground-truth instance

    @property
    def valid(self) -> np.ndarray:
        return np.isfinite(self.points[..., 0])


def _lidar_rects(spec: LidarSpec, T_map_lidar_mid: np.ndarray, shape: tuple[int, int], pad_m: float, pad_rad: float):
    """Culling: the beam and column ranges each primitive's bounding sphere can cover during the sweep."""
    beams, columns = shape
    elevations = spec.elevations()
    R, origin = T_map_lidar_mid[:3, :3], T_map_lidar_mid[:3, 3]

    def rects(centers: np.ndarray, primitives: np.ndarray) -> Rects:
        v = (centers - origin) @ R
        distance = np.linalg.norm(v, axis=1)
        r = primitives["radius"].astype(np.float64) + pad_m
        keep = distance - r < spec.max_range
        enclosing = distance <= r
        alpha = np.arcsin(np.clip(r / np.maximum(distance, 1e-6), 0, 1)) + pad_rad
        azimuth = np.arctan2(v[:, 1], v[:, 0])
        elevation = np.arctan2(v[:, 2], np.hypot(v[:, 0], v[:, 1]))
        centre_col = np.mod((np.pi - azimuth) * columns / (2 * np.pi), columns)
        half = alpha * columns / (2 * np.pi) + 1
        c0 = np.floor(centre_col - half).astype(np.int64)
        c1 = np.ceil(centre_col + half).astype(np.int64) + 1
        # elevations descend with the beam index
        b0 = np.searchsorted(-elevations, -(elevation + alpha), side="left") - 1
        b1 = np.searchsorted(-elevations, -(elevation - alpha), side="right") + 1
        full = enclosing | (half >= columns / 2)
        c0, c1 = np.where(full, 0, c0), np.where(full, columns, c1)
        b0, b1 = np.where(enclosing, 0, b0), np.where(enclosing, beams, b1)
        index = np.arange(len(centers))
        # Column ranges that wrap around the scan seam become two rectangles.
        parts = [(index, b0, b1, c0, c1), (index, b0, b1, c0 + columns, c1 + columns), (index, b0, b1, c0 - columns, c1 - columns)]
        cat = [np.concatenate([p[k][keep] for p in parts]) for k in range(5)]
        return Rects.build(*cat, shape)

    return rects


def scan(scene: Scene, spec: LidarSpec, trajectory: Trajectory, T_base_lidar: np.ndarray, start_s: float,
         start_ns: int, rng: np.random.Generator) -> LidarScan:
    """Sweep from `start_s` (drive time; `start_ns` is its stamp) for one rotation period; moving
    objects are frozen at mid-sweep."""
    period = 1.0 / spec.rate_hz
    columns, beams = spec.columns, spec.beams
    fire = start_s + np.arange(columns) * period / columns
    T = trajectory.poses(fire) @ T_base_lidar  # (C, 4, 4) LiDAR pose per column
    elevation, azimuth = spec.elevations(), spec.azimuths()
    local = np.stack([np.cos(elevation)[:, None] * np.cos(azimuth)[None, :],
                      np.cos(elevation)[:, None] * np.sin(azimuth)[None, :],
                      np.broadcast_to(np.sin(elevation)[:, None], (beams, columns))], -1).astype(np.float32)
    directions = np.einsum("cij,bcj->bci", T[:, :3, :3].astype(np.float32), local)
    origins = np.broadcast_to(T[None, :, :3, 3].astype(np.float32), (beams, columns, 3))
    grid = RayGrid(np.ascontiguousarray(origins), directions)
    middle = T[columns // 2]
    travel = float(np.linalg.norm(T[-1, :3, 3] - T[0, :3, 3]))
    turn = float(np.arccos(np.clip((np.trace(T[0, :3, :3].T @ T[-1, :3, :3]) - 1) / 2, -1, 1)))
    hits = cast(grid, scene.primitives, start_s + period / 2,
         _lidar_rects(spec, middle, (beams, columns), travel / 2 + 0.1, turn / 2 + 0.01))
    terrain_hits(grid, scene.terrain, hits)

    distance = np.where(np.isfinite(hits.t), hits.t, 0) + rng.normal(0.0, spec.range_noise, hits.t.shape).astype(np.float32)
    reflectivity = REFLECTIVITY[hits.material]
    incidence = np.abs(np.einsum("bck,bck->bc", hits.normal, directions))
    lost = rng.random(hits.t.shape) < spec.dropout + np.where(hits.cls == MUD_WATER, 0.6, 0.0) + 0.05 * (1 - reflectivity)
    valid = np.isfinite(hits.t) & (hits.t <= spec.max_range) & (hits.t >= spec.min_range) & ~lost
    points = np.where(valid[..., None], local * distance[..., None], np.nan).astype(np.float32)
    intensity = np.where(valid, np.clip(255 * reflectivity * (0.3 + 0.7 * incidence), 0, 255), 0).astype(np.float32)
    offsets = np.broadcast_to((np.arange(columns) * (period * 1e9 / columns)).astype(np.uint32), (beams, columns))
    ring = np.broadcast_to(np.arange(beams, dtype=np.uint16)[:, None], (beams, columns))
    return LidarScan(start_ns, points, intensity, np.ascontiguousarray(offsets), np.ascontiguousarray(ring),
                     np.where(valid, hits.cls, 0).astype(np.uint8), np.where(valid, hits.instance, 0).astype(np.uint16))
