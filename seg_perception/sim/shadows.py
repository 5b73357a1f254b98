"""Sun shadows from an orthographic shadow map of the scene's static objects.

Computed once per scene and sun direction: each cell of a grid across the sun's rays stores how
far towards the sun the first static object along that ray is. A point is in shadow when an
object sits further sunwards on its ray (looked up by the compiled shader in render.py). Moving objects (people, vehicles) cast no shadows, and
the terrain does not shadow itself (it is gentle).
"""
from __future__ import annotations

import numpy as np

from .raycast import RayGrid, Rects, cast


class ShadowMap:
    def __init__(self, primitives: np.ndarray, sun: np.ndarray, resolution: float = 0.25, bias: float = 0.2) -> None:
        self.sun = sun / np.linalg.norm(sun)
        self.resolution = resolution
        self.bias = bias
        e1 = np.cross(self.sun, [0.0, 0.0, 1.0])
        if np.linalg.norm(e1) < 1e-6:
            e1 = np.array([1.0, 0.0, 0.0])
        e1 /= np.linalg.norm(e1)
        self.basis = np.stack([e1, np.cross(self.sun, e1), self.sun])  # rows: a, b, depth towards the sun
        static = primitives[primitives["travel"] <= 0]
        coords = static["center"].astype(np.float64) @ self.basis.T
        radii = static["radius"].astype(np.float64)
        if len(static) == 0:
            self.depth = None
            return
        self.lo = (coords[:, :2] - radii[:, None]).min(0) - resolution
        hi = (coords[:, :2] + radii[:, None]).max(0) + resolution
        cols, rows = np.ceil((hi - self.lo) / resolution).astype(int) + 1
        self.top = float((coords[:, 2] + radii).max() + 10.0)
        a = self.lo[0] + np.arange(cols) * resolution
        b = self.lo[1] + np.arange(rows) * resolution
        origins = (a[None, :, None] * self.basis[0] + b[:, None, None] * self.basis[1] + self.top * self.basis[2]).astype(np.float32)
        directions = np.broadcast_to((-self.sun).astype(np.float32), origins.shape)
        hits = cast(RayGrid(origins, directions), static, 0.0, self._rects(coords, radii, rows, cols))
        self.depth = np.where(np.isfinite(hits.t), self.top - hits.t, -np.inf).astype(np.float32)

    def _rects(self, coords: np.ndarray, radii: np.ndarray, rows: int, cols: int):
        def rects(_centers: np.ndarray, _primitives: np.ndarray) -> Rects:
            return Rects.build(
                np.arange(len(coords)),
                np.floor((coords[:, 1] - radii - self.lo[1]) / self.resolution),
                np.ceil((coords[:, 1] + radii - self.lo[1]) / self.resolution) + 1,
                np.floor((coords[:, 0] - radii - self.lo[0]) / self.resolution),
                np.ceil((coords[:, 0] + radii - self.lo[0]) / self.resolution) + 1,
                (rows, cols),
            )
        return rects
