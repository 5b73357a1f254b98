"""The voxel map's contents as plain arrays: what queries return, exports write and files store."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Voxel keys packed into one int64: 21 bits per axis, offset so that negative indices pack too.
KEY_BITS = 21
KEY_OFFSET = 1 << (KEY_BITS - 1)
KEY_MIN = -KEY_OFFSET          # smallest representable voxel index on each axis
KEY_MAX = KEY_OFFSET - 1       # largest
_KEY_MASK = (1 << KEY_BITS) - 1


@dataclass
class VoxelArrays:
    """M voxels of a semantic voxel map, in the map frame, sorted by key (so equal maps give equal arrays).

    Attributes:
        voxel_size: edge length in metres.
        keys: (M, 3) int32 integer voxel coordinates: voxel (i, j, k) spans [i, i + 1) * voxel_size in x, etc.
        log_probs: (M, C) float32 normalised class log-probabilities (logsumexp over C is 0), each >= the
            map's floor.
        observations: (M,) uint16 labelled points fused into the voxel (saturating).
        last_seen_ns: (M,) int64 stamp of the last scan that hit the voxel.
        occupancy: (M,) float32 occupancy log-odds (hits raise it, rays passing through lower it).
    """

    voxel_size: float
    keys: np.ndarray
    log_probs: np.ndarray
    observations: np.ndarray
    last_seen_ns: np.ndarray
    occupancy: np.ndarray

    def __len__(self) -> int:
        return int(self.keys.shape[0])

    @property
    def num_classes(self) -> int:
        return int(self.log_probs.shape[1])

    @property
    def centers(self) -> np.ndarray:
        """(M, 3) float32 voxel centres, metres."""
        return ((self.keys.astype(np.float64) + 0.5) * self.voxel_size).astype(np.float32)

    @property
    def labels(self) -> np.ndarray:
        """(M,) uint16 most probable class."""
        return np.argmax(self.log_probs, axis=1).astype(np.uint16) if len(self) else np.zeros(0, np.uint16)

    @property
    def confidence(self) -> np.ndarray:
        """(M,) float32 probability of the most probable class."""
        return np.exp(self.log_probs.max(axis=1)).astype(np.float32) if len(self) else np.zeros(0, np.float32)

    def select(self, mask: np.ndarray) -> VoxelArrays:
        """The voxels where `mask` (M,) is True."""
        return VoxelArrays(self.voxel_size, self.keys[mask], self.log_probs[mask], self.observations[mask],
                           self.last_seen_ns[mask], self.occupancy[mask])

    def lookup(self, points: np.ndarray) -> np.ndarray:
        """(N,) int64 index of the voxel containing each point (map frame, metres); -1 where there is none."""
        points = np.asarray(points, np.float64).reshape(-1, 3)
        if not len(self):
            return np.full(len(points), -1, np.int64)
        finite = np.isfinite(points).all(axis=1)
        keys = np.floor(np.where(finite[:, None], points, 0.0) / self.voxel_size).astype(np.int64)
        valid = finite & np.all((keys >= KEY_MIN) & (keys <= KEY_MAX), axis=1)  # beyond the key range: in no map
        mine, theirs = pack_keys(self.keys), pack_keys(keys)
        order = np.argsort(mine, kind="stable")
        position = np.minimum(np.searchsorted(mine[order], theirs), len(self) - 1)
        return np.where(valid & (mine[order][position] == theirs), order[position], -1)

    def crop_box(self, lower: np.ndarray, upper: np.ndarray) -> VoxelArrays:
        """Voxels whose centre lies in the axis-aligned box [lower, upper] (metres, map frame)."""
        centers = self.centers
        return self.select(np.all((centers >= np.asarray(lower)) & (centers <= np.asarray(upper)), axis=1))

    def crop_radius(self, center: np.ndarray, radius: float) -> VoxelArrays:
        """Voxels whose centre lies within `radius` metres of `center`."""
        return self.select(np.linalg.norm(self.centers - np.asarray(center, np.float32), axis=1) <= radius)


def pack_keys(ijk: np.ndarray) -> np.ndarray:
    """(M, 3) integer voxel indices in [KEY_MIN, KEY_MAX] → (M,) int64; packed order is (i, j, k) order."""
    offset = ijk.astype(np.int64) + KEY_OFFSET
    return (offset[:, 0] << (2 * KEY_BITS)) | (offset[:, 1] << KEY_BITS) | offset[:, 2]


def unpack_keys(keys: np.ndarray) -> np.ndarray:
    """(M,) packed int64 → (M, 3) int32 voxel indices."""
    out = np.empty((keys.shape[0], 3), np.int32)
    out[:, 0] = (keys >> (2 * KEY_BITS)) - KEY_OFFSET
    out[:, 1] = ((keys >> KEY_BITS) & _KEY_MASK) - KEY_OFFSET
    out[:, 2] = (keys & _KEY_MASK) - KEY_OFFSET
    return out
