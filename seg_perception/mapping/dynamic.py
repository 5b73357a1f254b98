"""Dynamic classes in the voxel map: voxels of things that move, shown while seen and forgotten soon after."""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from .errors import MappingError
from .voxels import VoxelArrays, pack_keys, unpack_keys


class DynamicLayer:
    """Voxels of dynamic classes (people, vehicles, animals), kept apart from the static map.

    A labelled point of a dynamic class never enters the static Bayesian update: it neither creates a static
    voxel nor erases the class evidence of the one under it (the road a person stands on stays road), yet it
    still counts as a measurement for free-space clearing. Here each scan's dynamic points set their voxels'
    class (the most frequent among the scan's points in the voxel, then the smaller id) and stamp; a voxel not
    seen again for longer than `decay_s` is dropped, so a person who walks off leaves nothing behind.

    Memory: 8 (key) + 1 (class) + 8 (stamp) bytes per dynamic voxel seen within the last decay_s, apart
    from the static map's budget.
    """

    def __init__(self, num_classes: int, classes: Any, decay_s: Any) -> None:
        try:
            ids = sorted({int(c) for c in classes})
        except (TypeError, ValueError):
            raise MappingError(f"dynamic_classes {classes!r} is not usable; accepted: class ids "
                               f"0..{num_classes - 1}") from None
        if any(not 0 <= c < num_classes for c in ids):
            raise MappingError(f"dynamic_classes {classes!r} is out of range; accepted: class ids 0..{num_classes - 1}")
        try:
            decay = float(decay_s)
        except (TypeError, ValueError):
            decay = math.nan
        if not (math.isfinite(decay) and 0.0 < decay <= 3600.0):
            raise MappingError(f"dynamic_decay_s {decay_s!r} is not usable; accepted: seconds in (0, 3600]")
        self.classes = tuple(ids)
        self.decay_s = decay
        self._decay_ns = round(decay * 1e9)
        self._num_classes = num_classes
        self._is_dynamic = np.zeros(num_classes, np.bool_)
        self._is_dynamic[list(ids)] = True
        self._keys = np.zeros(0, np.int64)
        self._labels = np.zeros(0, np.uint8)
        self._last_seen = np.zeros(0, np.int64)

    def __len__(self) -> int:
        return int(self._keys.shape[0])

    def memory_bytes(self) -> int:
        return self._keys.nbytes + self._labels.nbytes + self._last_seen.nbytes

    def mask(self, labels: np.ndarray) -> np.ndarray:
        """(N,) True where a label is a dynamic class."""
        inside = (labels >= 0) & (labels < self._num_classes)
        return inside & self._is_dynamic[np.where(inside, labels, 0)]

    def update(self, points: np.ndarray, labels: np.ndarray, voxel_size: float, stamp_ns: int) -> None:
        """Fuse one scan's dynamic points (map frame, finite, within the key range), then drop the voxels unseen
        for longer than decay_s before stamp_ns."""
        if points.shape[0]:
            packed = pack_keys(np.floor(points / voxel_size).astype(np.int64))
            keys, inverse = np.unique(packed, return_inverse=True)
            votes = np.bincount(inverse * self._num_classes + labels, minlength=keys.size * self._num_classes)
            classes = votes.reshape(keys.size, self._num_classes).argmax(axis=1).astype(np.uint8)
            stale = ~np.isin(self._keys, keys, assume_unique=True)
            merged = np.concatenate([self._keys[stale], keys])
            order = np.argsort(merged, kind="stable")
            self._keys = merged[order]
            self._labels = np.concatenate([self._labels[stale], classes])[order]
            self._last_seen = np.concatenate([self._last_seen[stale], np.full(keys.size, stamp_ns, np.int64)])[order]
        live = stamp_ns - self._last_seen <= self._decay_ns
        self._keys, self._labels, self._last_seen = self._keys[live], self._labels[live], self._last_seen[live]

    def voxels(self, voxel_size: float, log_floor: float, occupancy: float) -> VoxelArrays:
        """The dynamic voxels as VoxelArrays (sorted by key): their class at probability 1 - (C - 1) e^log_floor,
        every other class on the floor."""
        m, c = len(self), self._num_classes
        log_probs = np.full((m, c), log_floor, np.float32)
        log_probs[np.arange(m), self._labels] = math.log1p(-(c - 1) * math.exp(log_floor))
        return VoxelArrays(voxel_size, unpack_keys(self._keys), log_probs, np.ones(m, np.uint16),
                           self._last_seen.copy(), np.full(m, occupancy, np.float32))
