"""Sparse hashed semantic voxel map: labelled LiDAR points fused over time in the map frame.

Each voxel holds normalised class log-probabilities (a Bayesian update per scan, floored so a voxel
can change its mind), occupancy log-odds (hits raise it, beams passing through lower it, and voxels
that fall low enough are removed: free-space clearing), an observation count and the stamp of the
last scan that hit it. Two backends do the same arithmetic: "numba" (an open-addressing hash table
on the CPU) and "torch" (sorted keys, on a GPU or the CPU).

Storage per voxel: one packed int64 key (21 bits per axis), C uint8 quantised log-probabilities
(q = round(l / log_floor * 255), resolution |log_floor| / 255), int16 fixed-point occupancy
(1/1024 log-odds), uint16 observations (saturating), int64 last-seen stamp; the numba backend adds
its int32 hash slots (power-of-two table kept at most three quarters full) and 32 bytes per chunk of 4096
voxels (the chunk's x-y key box). Dynamic classes live apart (`DynamicLayer`), outside this budget.
"""
from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np

from .dynamic import DynamicLayer
from .errors import MappingError
from .voxels import _KEY_MASK, KEY_BITS, KEY_MAX, KEY_MIN, KEY_OFFSET, VoxelArrays, pack_keys, unpack_keys
OCCUPANCY_SCALE = 1024         # fixed-point steps per unit of occupancy log-odds (int16: |occupancy| < 32)
_OCC_LIMIT = 31.0
_Q_MAX = 255
_OBS_MAX = 65535

# atan(z) ~= z * P(z^2) on [0, 1], least squares on Chebyshev nodes, max error 2.7e-7 rad (a bin is
# >= 1.7e-3 rad). libm's atan2 cost 30 ns a call here, a third of the whole scan budget for 2 calls
# on each of 262 k points and 200 k voxels; this costs a few ns and uses only + - * / so that the
# numba and torch backends bin every direction bit-for-bit identically.
_A0, _A1, _A2, _A3 = 0.9999966342941838, -0.33318301433462283, 0.19813199515207494, -0.13247467497205223
_A4, _A5, _A6 = 0.07981016611308607, -0.033725014806541935, 0.006842312794507904
_PI = math.pi
_HALF_PI = math.pi / 2
_TWO_PI = 2 * math.pi
_FIB = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing: the top bits of key * 2^64 / phi
# Hash slots by 4 x 4 x 4 voxel blocks: a block's Fibonacci hash plus the voxel's place in it, so that a scan's
# neighbouring voxels share cache lines of the table. With a table larger than the cache (a map of millions of
# voxels) a per-voxel hash made every lookup a cache miss: insert took 1.5x as long at 2 M as at 0.2 M voxels.
_BLOCK = ~((3 << (2 * KEY_BITS)) | (3 << KEY_BITS) | 3)
_LOCAL_X, _LOCAL_Y = 2 * KEY_BITS - 4, KEY_BITS - 2  # shifts bringing the low 2 bits of x, y to bits 4-5, 2-3
_EMPTY = -1
_INITIAL_VOXELS = 4096
_INITIAL_SLOTS = 8192
# Dense slots in chunks of 4096, each with the x-y box of the keys it holds (bounds may only loosen until the
# next rehash): a scan skips every chunk whose box lies out of its reach, so its cost stays with the voxels
# near the sensor as the map grows along a drive. Slots fill in insertion order, so a chunk is local.
_CHUNK_BITS = 12
_RETIGHTEN_CHUNKS = 8  # chunk boxes rebuilt each scan, round robin: removals loosen them (the last slot moves in)
_NO_KEY = 1 << KEY_BITS  # a box bound beyond every key field: an empty box


@dataclass(frozen=True)
class _Params:
    """Validated parameters and their fixed-point forms, shared by the backends."""

    num_classes: int
    voxel_size: float
    max_voxels: int
    radius: float | None
    log_floor: float
    default_confidence: float
    hit_log_odds: float
    miss_log_odds: float
    occupancy_limits: tuple[float, float]
    remove_below: float
    azimuth_bins: int
    elevation_step_deg: float

    @property
    def q_scale(self) -> float:
        """floor(l * q_scale + 0.5) is the uint8 stored for log-probability l."""
        return _Q_MAX / self.log_floor

    @property
    def q_step(self) -> float:
        """q * q_step is the log-probability a stored q stands for."""
        return self.log_floor / _Q_MAX

    @property
    def elevation_bins(self) -> int:
        return int(math.ceil(180.0 / self.elevation_step_deg))

    @property
    def elevation_step(self) -> float:
        return math.radians(self.elevation_step_deg)

    @property
    def azimuth_scale(self) -> float:
        """Azimuth + pi times this is the range-image column."""
        return self.azimuth_bins / _TWO_PI

    @property
    def elevation_scale(self) -> float:
        """Elevation + pi/2 times this is the range-image row."""
        return 1.0 / self.elevation_step

    @property
    def clear_margin(self) -> float:
        return self.voxel_size * math.sqrt(3.0)

    @property
    def hit_q(self) -> int:
        return round(self.hit_log_odds * OCCUPANCY_SCALE)

    @property
    def miss_q(self) -> int:
        return round(self.miss_log_odds * OCCUPANCY_SCALE)

    @property
    def occupancy_q(self) -> tuple[int, int]:
        return round(self.occupancy_limits[0] * OCCUPANCY_SCALE), round(self.occupancy_limits[1] * OCCUPANCY_SCALE)

    @property
    def remove_q(self) -> int:
        return round(self.remove_below * OCCUPANCY_SCALE)


def _number(name: str, value: Any, lower: float, upper: float, accepted: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an integer beyond float's range
        raise MappingError(f"{name} {value!r} is not a number; accepted: {accepted}") from None
    if not (math.isfinite(number) and lower <= number <= upper):
        raise MappingError(f"{name} {value!r} is out of range; accepted: {accepted}")
    return number


def _integer(name: str, value: Any, lower: int, upper: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not lower <= int(value) <= upper:
        raise MappingError(f"{name} {value!r} is not usable; accepted: an integer in [{lower}, {upper}]")
    return int(value)


def _make_params(num_classes: Any, voxel_size: Any, max_voxels: Any, radius: Any, log_floor: Any,
                 default_confidence: Any, hit_log_odds: Any, miss_log_odds: Any, occupancy_limits: Any,
                 remove_below: Any, azimuth_bins: Any, elevation_step_deg: Any) -> _Params:
    classes = _integer("num_classes", num_classes, 2, 255)
    size = _number("voxel_size", voxel_size, 0.02, 2.0, "metres in [0.02, 2.0]")
    floor_limit = -math.log(classes)
    floor = _number("log_floor", log_floor, -50.0, floor_limit,
                    f"a log-probability in [-50, -log(num_classes)) = [-50, {floor_limit:.4f})")
    if floor >= floor_limit:
        raise MappingError(f"log_floor {log_floor!r} must be below -log(num_classes) = {floor_limit:.4f}, "
                           "or a uniform voxel would already sit on the floor")
    try:
        lower, upper = (float(v) for v in occupancy_limits)
    except (TypeError, ValueError):
        raise MappingError(f"occupancy_limits {occupancy_limits!r} is not a (lower, upper) pair of numbers") from None
    if not (-_OCC_LIMIT <= lower < 0.0 < upper <= _OCC_LIMIT):
        raise MappingError(f"occupancy_limits {occupancy_limits!r} is not usable; accepted: "
                           f"-{_OCC_LIMIT} <= lower < 0 < upper <= {_OCC_LIMIT} (log-odds)")
    step = 1.0 / OCCUPANCY_SCALE
    hit = _number("hit_log_odds", hit_log_odds, step, upper, f"log-odds in [{step}, upper occupancy limit {upper}]")
    miss = _number("miss_log_odds", miss_log_odds, lower, -step,
                   f"log-odds in [lower occupancy limit {lower}, {-step}]")
    remove = _number("remove_below", remove_below, lower, -step,
                     f"log-odds in [lower occupancy limit {lower}, {-step}]")
    return _Params(
        num_classes=classes,
        voxel_size=size,
        max_voxels=_integer("max_voxels", max_voxels, 1, 1 << 30),
        radius=None if radius is None else _number("radius", radius, 1e-3, 1e9, "None or metres > 0"),
        log_floor=floor,
        default_confidence=_number("default_confidence", default_confidence, 0.0, 1.0, "a probability in [0, 1]"),
        hit_log_odds=hit,
        miss_log_odds=miss,
        occupancy_limits=(lower, upper),
        remove_below=remove,
        azimuth_bins=_integer("azimuth_bins", azimuth_bins, 8, 1 << 16),
        elevation_step_deg=_number("elevation_step_deg", elevation_step_deg, 0.01, 10.0, "degrees in [0.01, 10]"),
    )


def _lru_victims(seen: np.ndarray, dist2: np.ndarray, keys: np.ndarray, excess: int) -> np.ndarray:
    """Indices of the `excess` least recently seen voxels; among equal stamps the farthest go first, then
    the larger key (so both backends evict the same voxels)."""
    threshold = np.partition(seen, excess - 1)[excess - 1]
    older = np.flatnonzero(seen < threshold)
    tied = np.flatnonzero(seen == threshold)
    order = np.lexsort((-keys[tied], -dist2[tied]))
    return np.concatenate([older, tied[order[:excess - older.size]]])


def _mean_point(xyz: np.ndarray) -> np.ndarray | None:
    """Mean of points given as rows (3, K) float64 (None for K = 0); both backends call this, so that
    radius eviction without an origin picks the same centre bit for bit."""
    return xyz.mean(axis=1) if xyz.shape[1] else None


def _centre_dist2(keys: np.ndarray, size: float, centre: np.ndarray | None) -> np.ndarray:
    """Squared distance of packed voxels' centres from `centre` (zeros without one), float64."""
    if centre is None:
        return np.zeros(keys.shape[0])
    dx = (((keys >> (2 * KEY_BITS)) - KEY_OFFSET) + 0.5) * size - centre[0]
    dy = ((((keys >> KEY_BITS) & _KEY_MASK) - KEY_OFFSET) + 0.5) * size - centre[1]
    dz = (((keys & _KEY_MASK) - KEY_OFFSET) + 0.5) * size - centre[2]
    return dx * dx + dy * dy + dz * dz


# ---------------------------------------------------------------------------------------------------
# numba backend kernels (plain functions here, compiled on first use by _numba_kernels).
#
# Why a hand-written hash table: each scan looks up or inserts ~80 k keys and then updates every touched
# voxel's quantised log-probabilities in place, and nothing off the shelf does that fast. numba.typed.Dict
# maps a scalar to a scalar, one call at a time. open3d.core.HashMap is vectorised, but on this machine
# (CPU device) activate + find of 80 k int64 keys into a 200 k-entry map took 14.5 + 10 ms, against
# ~1.5 ms for this table's lookup-or-insert, before any value is gathered, updated and scattered back.
# ---------------------------------------------------------------------------------------------------


def _prepare(points, labels, confidence, has_confidence, num_classes, voxel_size, default_confidence,
             keys_out, labels_out, weights_out, xyz_out):
    """Labelled finite points → packed keys, classes and log-likelihood weights, and all finite points →
    rows of xyz_out (3, N) float64, each compacted to the front. Returns (labelled count, finite count,
    index of the first finite point beyond the key range or -1)."""
    p_low, p_high = 1.0 / num_classes + 1e-3, 1.0 - 1e-3
    p = min(max(default_confidence, p_low), p_high)
    default_weight = np.log(p * (num_classes - 1) / (1.0 - p))  # one log, not one a point, without confidences
    count, finite, bad = 0, 0, -1
    for i in range(points.shape[0]):
        x, y, z = np.float64(points[i, 0]), np.float64(points[i, 1]), np.float64(points[i, 2])
        if not (np.isfinite(x) and np.isfinite(y) and np.isfinite(z)):
            continue
        xyz_out[0, finite], xyz_out[1, finite], xyz_out[2, finite] = x, y, z
        finite += 1
        fx, fy, fz = np.floor(x / voxel_size), np.floor(y / voxel_size), np.floor(z / voxel_size)
        if not (KEY_MIN <= fx <= KEY_MAX and KEY_MIN <= fy <= KEY_MAX and KEY_MIN <= fz <= KEY_MAX):
            if bad < 0:
                bad = i
            continue
        label = labels[i]
        if label < 0 or label >= num_classes:
            continue
        weight = default_weight
        if has_confidence:
            p = np.float64(confidence[i])
            if not np.isfinite(p):
                continue
            p = min(max(p, p_low), p_high)
            weight = np.log(p * (num_classes - 1) / (1.0 - p))
        keys_out[count] = (((np.int64(fx) + KEY_OFFSET) << (2 * KEY_BITS)) | ((np.int64(fy) + KEY_OFFSET) << KEY_BITS)
                           | (np.int64(fz) + KEY_OFFSET))
        labels_out[count] = label
        weights_out[count] = weight
        count += 1
    return count, finite, bad


def _insert(keys, count, start, table, shift, dense_keys, state, dense_capacity, voxel_index):
    """Look up or insert keys[start:count] (linear probing); voxel_index[i] = dense slot. Stops and returns i
    where an insert would overfill the dense arrays or the table (the caller grows them); else count.
    state[0] is the voxel count."""
    mask = table.shape[0] - 1
    limit = min(dense_capacity, table.shape[0] * 3 // 4)  # linear probing stays short up to 3/4 full
    n = state[0]
    for i in range(start, count):
        key = keys[i]
        if i > 0 and key == keys[i - 1]:  # consecutive points of a scan often share a voxel: no probe
            voxel_index[i] = voxel_index[i - 1]
            continue
        slot = (np.int64((np.uint64(key & _BLOCK) * _FIB) >> shift)
                + ((key >> _LOCAL_X) & 48 | (key >> _LOCAL_Y) & 12 | key & 3)) & mask
        while True:
            entry = table[slot]
            if entry == _EMPTY:
                if n >= limit:
                    state[0] = n
                    return i
                table[slot] = n
                dense_keys[n] = key
                voxel_index[i] = n
                n += 1
                break
            if dense_keys[entry] == key:
                voxel_index[i] = entry
                break
            slot = (slot + 1) & mask
    state[0] = n
    return count


def _rehash(dense_keys, n, table, shift):
    mask = table.shape[0] - 1
    table[:] = _EMPTY
    for d in range(n):
        key = dense_keys[d]
        slot = (np.int64((np.uint64(key & _BLOCK) * _FIB) >> shift)
                + ((key >> _LOCAL_X) & 48 | (key >> _LOCAL_Y) & 12 | key & 3)) & mask
        while table[slot] != _EMPTY:
            slot = (slot + 1) & mask
        table[slot] = d


def _fuse(voxel_index, labels, weights, count, n_before, n, log_probs, occupancy, observations, last_seen,
          stamp, q_step, q_scale, log_floor, exp_q, hit_q, occ_low, occ_high, hit, positions, positions_shift,
          point_position, touched, start, grouped_labels, grouped_weights):
    """One scan's Bayesian update of every voxel its labelled points touched; marks them in `hit`.
    Returns the number of touched voxels.

    exp() was most of this kernel (2 C calls a voxel at ~6 ns each; numba has no vector exp without SVML),
    so the classes without evidence this scan, whose values are still on the uint8 grid, share one exp via
    exp_q[q] = exp(q * q_step): sum_c exp(l_c - top) = sum_evidence exp(l_c - top) + exp(-top) *
    sum_rest exp_q[q_c]; the same again for the second normalisation. The per-class loops are branch-free
    (with branches the kernel took 1.5x as long)."""
    num_classes = log_probs.shape[1]
    # group the points by voxel, in scan order within a voxel, in time proportional to the scan, not the map
    # (a counting sort over all n dense slots cost ~1 ns a stored voxel a scan): `positions`, a scratch hash
    # table of >= 2 count slots (dense index -> the voxel's position in `touched`), numbers the voxels in
    # order of first hit; then a counting sort over those positions. (point_position, touched, grouped_*:
    # count, start: count + 1; scratch from the caller.)
    mask = positions.shape[0] - 1
    positions[:] = -1
    n_touched = 0
    previous, t = -1, 0
    for i in range(count):
        d = voxel_index[i]
        if d == previous:  # a scan's consecutive points often share a voxel: no probe
            point_position[i] = t
            start[t + 1] += 1
            continue
        previous = d
        slot = np.int64((np.uint64(d) * _FIB) >> positions_shift)
        while True:
            t = positions[slot]
            if t < 0:
                t = n_touched
                positions[slot] = t
                touched[t] = d
                start[t + 1] = 0
                n_touched += 1
                break
            if touched[t] == d:
                break
            slot = (slot + 1) & mask
        point_position[i] = t
        start[t + 1] += 1
    start[0] = 0
    for t in range(n_touched):
        start[t + 1] += start[t]
    for i in range(count):
        t = point_position[i]
        grouped_labels[start[t]] = labels[i]
        grouped_weights[start[t]] = weights[i]
        start[t] += 1
    for t in range(n_touched - 1, 0, -1):  # the filling advanced each start to the next voxel's
        start[t] = start[t - 1]
    if n_touched:
        start[0] = 0
    for d in range(n_before, n):
        log_probs[d, :] = 0  # uniform: any constant start cancels in the normalisation, and q = 0 is l = 0

    evidence = np.zeros(num_classes)
    seen_classes = np.empty(num_classes, np.int64)
    l = np.empty(num_classes)
    exp_floor = np.exp(log_floor)
    for t in range(n_touched):
        d = touched[t]
        k = 0
        for j in range(start[t], start[t + 1]):
            c = grouped_labels[j]
            if evidence[c] == 0.0:
                seen_classes[k] = c
                k += 1
            evidence[c] += grouped_weights[j]
        row = log_probs[d]
        top, shared = -1e300, 0.0
        for c in range(num_classes):
            v = row[c] * q_step + evidence[c]
            l[c] = v
            top = max(top, v)
            shared += exp_q[row[c]] * (evidence[c] == 0.0)
        direct = 0.0
        for j in range(k):
            v = l[seen_classes[j]]
            direct += 1.0 if v == top else np.exp(v - top)
        exp_neg_top = np.exp(-top)
        total = direct + shared * exp_neg_top
        lse = top + np.log(total)
        top2, shared, at_floor, n_low = -1e300, 0.0, 0.0, 0
        for c in range(num_classes):
            v = max(l[c] - lse, log_floor)
            l[c] = v
            top2 = max(top2, v)
            low = v == log_floor
            rest = evidence[c] == 0.0
            n_low += low
            at_floor += rest * low
            shared += exp_q[row[c]] * (rest * (1 - low))
        second = 0.0
        if n_low:
            direct = 0.0
            for j in range(k):
                v = l[seen_classes[j]]
                direct += 1.0 if v == top2 else np.exp(v - top2)
            # exp(l_c - top2) for a class without evidence is exp_q[q_c] exp(-lse) exp(-top2), and
            # exp(-lse) = exp(-top) / total
            second = top2 + np.log(direct + np.exp(-top2) * (shared * exp_neg_top / total + at_floor * exp_floor))
        for c in range(num_classes):
            row[c] = min(max(np.floor((l[c] - second) * q_scale + 0.5), 0.0), 255.0)
        for j in range(k):
            evidence[seen_classes[j]] = 0.0
        new = d >= n_before
        o = (0 if new else np.int64(occupancy[d])) + hit_q
        occupancy[d] = min(max(o, occ_low), occ_high)
        observations[d] = min((0 if new else np.int64(observations[d])) + start[t + 1] - start[t], 65535)
        last_seen[d] = stamp
        hit[d] = True
    return n_touched


def _directions(x, y, z, count, ox, oy, oz, azimuth_bins, azimuth_scale, elevation_bins, elevation_scale,
                cells_out, range2_out):
    """Range-image cell (as float64) and squared range from the origin of points (x, y, z)[:count].
    Branch-free, so LLVM vectorises it (6x faster than a branchy loop with libm atan2)."""
    for i in range(count):
        dx, dy, dz = x[i] - ox, y[i] - oy, z[i] - oz
        h2 = dx * dx + dy * dy
        range2_out[i] = h2 + dz * dz
        ax, ay = abs(dx), abs(dy)
        swap = ay > ax
        big, small = (ay if swap else ax), (ax if swap else ay)
        s = small / (big if big > 0.0 else 1.0)
        t = s * s
        a = s * ((((((_A6 * t + _A5) * t + _A4) * t + _A3) * t + _A2) * t + _A1) * t + _A0)
        a = _HALF_PI - a if swap else a
        a = _PI - a if dx < 0.0 else a
        a = -a if dy < 0.0 else a
        column = np.floor((a + _PI) * azimuth_scale)
        column = column - azimuth_bins if column >= azimuth_bins else column
        ax, ay = np.sqrt(h2), abs(dz)
        swap = ay > ax
        big, small = (ay if swap else ax), (ax if swap else ay)
        s = small / (big if big > 0.0 else 1.0)
        t = s * s
        e = s * ((((((_A6 * t + _A5) * t + _A4) * t + _A3) * t + _A2) * t + _A1) * t + _A0)
        e = _HALF_PI - e if swap else e
        e = -e if dz < 0.0 else e
        row = np.floor((e + _HALF_PI) * elevation_scale)
        row = 0.0 if row < 0.0 else row
        row = elevation_bins - 1.0 if row > elevation_bins - 1.0 else row
        cells_out[i] = row * azimuth_bins + column


def _range_image(point_cells, point_range2, count, image):
    """The scan's minimum range per range-image cell into `image`; returns the largest squared range."""
    farthest2 = 0.0
    for i in range(count):
        r2 = point_range2[i]
        if r2 > 0.0:
            cell = np.int64(point_cells[i])
            image[cell] = min(image[cell], np.float32(np.sqrt(r2)))
            farthest2 = max(farthest2, r2)
    return farthest2


def _candidates(dense_keys, n, boxes, voxel_size, centre, radius2, origin, has_origin, farthest2, hit, evicted_out,
                index_out, xyz_out):
    """The one pass over the stored voxels a scan makes (a key decode and two distances each): lists in
    evicted_out every voxel farther than radius from `centre` (radius2 < 0: none); with an origin, lists in
    index_out (and their centres in the rows of xyz_out) the others not hit this scan that lie nearer to it
    than the scan's farthest point, the only ones a beam can have passed. Chunks whose box is out of reach
    are skipped whole (all evicted with a radius). Returns (listed in index_out, listed in evicted_out), each
    list ascending."""
    # a voxel outside the box of half-size max(radius, farthest range) around the centre (with a voxel's margin)
    # is neither in reach nor within radius: two integer compares on its key tell, before any float work
    half = max(np.sqrt(radius2) if radius2 >= 0.0 else 0.0, np.sqrt(farthest2))
    lo_x = np.int64(np.floor((centre[0] - half) / voxel_size)) - 1 + KEY_OFFSET
    lo_y = np.int64(np.floor((centre[1] - half) / voxel_size)) - 1 + KEY_OFFSET
    span = np.uint64(np.int64(np.ceil(2.0 * half / voxel_size)) + 3)
    m, e = 0, 0
    for chunk in range((n + (1 << _CHUNK_BITS) - 1) >> _CHUNK_BITS):
        first, stop = chunk << _CHUNK_BITS, min(n, (chunk + 1) << _CHUNK_BITS)
        if (boxes[chunk, 2] < lo_x or boxes[chunk, 0] > lo_x + np.int64(span)
                or boxes[chunk, 3] < lo_y or boxes[chunk, 1] > lo_y + np.int64(span)):
            if radius2 >= 0.0:
                for d in range(first, stop):
                    evicted_out[e] = d
                    e += 1
            continue
        for d in range(first, stop):
            key = dense_keys[d]
            if (np.uint64((key >> (2 * KEY_BITS)) - lo_x) > span
                    or np.uint64(((key >> KEY_BITS) & _KEY_MASK) - lo_y) > span):
                if radius2 >= 0.0:
                    evicted_out[e] = d
                    e += 1
                continue
            x = (((key >> (2 * KEY_BITS)) - KEY_OFFSET) + 0.5) * voxel_size
            y = ((((key >> KEY_BITS) & _KEY_MASK) - KEY_OFFSET) + 0.5) * voxel_size
            z = (((key & _KEY_MASK) - KEY_OFFSET) + 0.5) * voxel_size
            if radius2 >= 0.0:
                ex, ey, ez = x - centre[0], y - centre[1], z - centre[2]
                if ex * ex + ey * ey + ez * ez > radius2:
                    evicted_out[e] = d
                    e += 1
                    continue
            if not has_origin or hit[d]:
                continue
            dx, dy, dz = x - origin[0], y - origin[1], z - origin[2]
            r2 = dx * dx + dy * dy + dz * dz
            if r2 == 0.0 or r2 >= farthest2:
                continue
            index_out[m] = d
            xyz_out[0, m], xyz_out[1, m], xyz_out[2, m] = x, y, z
            m += 1
    return m, e


def _clear(index, cells, range2, m, image, margin, miss_q, occ_low, remove_q, occupancy, cleared_out):
    """A miss for each listed voxel whose cell has a measurement farther than its own range plus `margin`;
    listed in cleared_out (ascending, as `index`) once its occupancy is at or below remove_q. Returns how many."""
    c = 0
    for j in range(m):
        measured = image[np.int64(cells[j])]
        if measured != np.inf and np.sqrt(range2[j]) < np.float64(measured) - margin:
            d = index[j]
            o = max(np.int64(occupancy[d]) + miss_q, occ_low)
            occupancy[d] = o
            if o <= remove_q:
                cleared_out[c] = d
                c += 1
    return c


def _expand_boxes(dense_keys, first, stop, boxes):
    """Widen the chunk boxes to hold the keys of dense slots [first, stop)."""
    for d in range(first, stop):
        key, chunk = dense_keys[d], d >> _CHUNK_BITS
        x, y = key >> (2 * KEY_BITS), (key >> KEY_BITS) & _KEY_MASK
        boxes[chunk, 0], boxes[chunk, 1] = min(boxes[chunk, 0], x), min(boxes[chunk, 1], y)
        boxes[chunk, 2], boxes[chunk, 3] = max(boxes[chunk, 2], x), max(boxes[chunk, 3], y)


def _lookup(keys, count, table, shift, dense_keys, voxel_index):
    """voxel_index[i] = dense slot of keys[i], or -1 where the map has none."""
    mask = table.shape[0] - 1
    for i in range(count):
        key = keys[i]
        slot = (np.int64((np.uint64(key & _BLOCK) * _FIB) >> shift)
                + ((key >> _LOCAL_X) & 48 | (key >> _LOCAL_Y) & 12 | key & 3)) & mask
        while True:
            entry = table[slot]
            if entry == _EMPTY or dense_keys[entry] == key:
                voxel_index[i] = entry
                break
            slot = (slot + 1) & mask


def _remove(victims, table, shift, dense_keys, log_probs, occupancy, observations, last_seen, n, boxes):
    """Remove dense slots `victims` (sorted descending): backward-shift deletion from the table, then the
    last voxel moves into the hole so the dense arrays stay compact. Returns the new count."""
    mask = table.shape[0] - 1
    for v in range(victims.shape[0]):
        d = victims[v]
        key = dense_keys[d]
        slot = (np.int64((np.uint64(key & _BLOCK) * _FIB) >> shift)
                + ((key >> _LOCAL_X) & 48 | (key >> _LOCAL_Y) & 12 | key & 3)) & mask
        while table[slot] != d:
            slot = (slot + 1) & mask
        hole = slot
        j = slot
        while True:
            j = (j + 1) & mask
            entry = table[j]
            if entry == _EMPTY:
                break
            moved = dense_keys[entry]
            home = (np.int64((np.uint64(moved & _BLOCK) * _FIB) >> shift)
                    + ((moved >> _LOCAL_X) & 48 | (moved >> _LOCAL_Y) & 12 | moved & 3)) & mask
            # the entry may move back into the hole only if the hole lies on its probe path
            if ((j - home) & mask) >= ((j - hole) & mask):
                table[hole] = entry
                hole = j
        table[hole] = _EMPTY
        last = n - 1
        if d != last:
            key = dense_keys[last]
            slot = (np.int64((np.uint64(key & _BLOCK) * _FIB) >> shift)
                    + ((key >> _LOCAL_X) & 48 | (key >> _LOCAL_Y) & 12 | key & 3)) & mask
            while table[slot] != last:
                slot = (slot + 1) & mask
            table[slot] = d
            dense_keys[d] = key
            chunk, x, y = d >> _CHUNK_BITS, key >> (2 * KEY_BITS), (key >> KEY_BITS) & _KEY_MASK
            boxes[chunk, 0], boxes[chunk, 1] = min(boxes[chunk, 0], x), min(boxes[chunk, 1], y)
            boxes[chunk, 2], boxes[chunk, 3] = max(boxes[chunk, 2], x), max(boxes[chunk, 3], y)
            log_probs[d, :] = log_probs[last, :]
            occupancy[d] = occupancy[last]
            observations[d] = observations[last]
            last_seen[d] = last_seen[last]
        n = last
    return n


@functools.cache
def _numba_kernels() -> SimpleNamespace:
    """The numba backend's kernels, compiled on first use (importing numba costs half a second)."""
    from numba import njit

    return SimpleNamespace(**{fn.__name__.lstrip("_"): njit(cache=True)(fn)
                              for fn in (_prepare, _insert, _rehash, _fuse, _directions, _range_image, _candidates,
                                         _clear, _expand_boxes, _lookup, _remove)})


class _NumbaStore:
    """CPU storage: dense value arrays indexed through an open-addressing table of int32 slots."""

    def __init__(self, params: _Params, device: str) -> None:
        if device != "cpu":
            raise MappingError(f"device {device!r} is not available to backend 'numba'; accepted: 'cpu' "
                               "(use backend='torch' for a GPU)")
        self._p = params
        self._k = _numba_kernels()
        self._n = 0
        self._retighten = 0
        self._exp_q = np.exp(np.arange(_Q_MAX + 1) * params.q_step)
        self._allocate(_INITIAL_VOXELS)
        self._table = np.full(_INITIAL_SLOTS, _EMPTY, np.int32)

    def _allocate(self, capacity: int) -> None:
        self._keys = np.zeros(capacity, np.int64)
        self._log_probs = np.zeros((capacity, self._p.num_classes), np.uint8)
        self._occupancy = np.zeros(capacity, np.int16)
        self._observations = np.zeros(capacity, np.uint16)
        self._last_seen = np.zeros(capacity, np.int64)
        self._boxes = np.empty((0, 4), np.int64)
        self._resize_boxes()

    def _resize_boxes(self) -> None:
        """One box per chunk of the dense capacity; new ones empty."""
        old = self._boxes.shape[0]
        chunks = -(-self._keys.shape[0] // (1 << _CHUNK_BITS))
        self._boxes.resize((chunks, 4), refcheck=False)
        if chunks > old:
            self._boxes[old:, :2], self._boxes[old:, 2:] = _NO_KEY, -1

    def _rebuild_boxes(self, first_chunk: int = 0, chunks: int | None = None) -> None:
        """Tight boxes for `chunks` chunks from `first_chunk` (all by default)."""
        stop_chunk = self._boxes.shape[0] if chunks is None else min(first_chunk + chunks, self._boxes.shape[0])
        self._boxes[first_chunk:stop_chunk, :2], self._boxes[first_chunk:stop_chunk, 2:] = _NO_KEY, -1
        self._k.expand_boxes(self._keys, min(first_chunk << _CHUNK_BITS, self._n),
                             min(stop_chunk << _CHUNK_BITS, self._n), self._boxes)

    @property
    def _shift(self) -> np.uint64:
        return np.uint64(64 - (self._table.shape[0].bit_length() - 1))

    def _grow_dense(self) -> None:
        # Growth by 1/32 keeps the spare capacity of the dense arrays (most of the memory) small. In-place
        # reallocation (mremap for large blocks) makes that cheap: 0.1-0.3 ms here where copying 200 k voxels
        # took ~4 ms. The arrays are private and no view of them outlives a method call, which is what
        # makes refcheck=False safe.
        # Never past max_voxels: `_make_room` keeps the count within it, so no more is ever needed.
        capacity = min(self._keys.shape[0] + max(self._keys.shape[0] // 32, _INITIAL_VOXELS),
                       max(self._p.max_voxels, self._keys.shape[0] + 1))
        for array in (self._keys, self._log_probs, self._occupancy, self._observations, self._last_seen):
            array.resize((capacity,) + array.shape[1:], refcheck=False)
        self._resize_boxes()

    def _grow_table(self, slots: int) -> None:
        self._table = np.empty(slots, np.int32)
        self._k.rehash(self._keys, self._n, self._table, self._shift)
        self._rebuild_boxes()  # tightens the boxes that removals loosened

    def __len__(self) -> int:
        return self._n

    def memory_bytes(self) -> int:
        return sum(a.nbytes for a in (self._table, self._boxes, self._keys, self._log_probs, self._occupancy,
                                      self._observations, self._last_seen))

    def integrate(self, points: np.ndarray, labels: np.ndarray, confidence: np.ndarray | None, stamp_ns: int,
                  origin: np.ndarray | None) -> dict[str, int]:
        p, k = self._p, self._k
        count_all = points.shape[0]
        keys = np.empty(count_all, np.int64)
        classes = np.empty(count_all, np.int32)
        weights = np.empty(count_all, np.float64)
        xyz = np.empty((3, count_all), np.float64)
        has_confidence = confidence is not None
        conf = confidence if confidence is not None else np.empty(0, np.float32)
        count, finite, bad = k.prepare(points, labels, conf, has_confidence, p.num_classes, p.voxel_size,
                                       p.default_confidence, keys, classes, weights, xyz)
        if bad >= 0:
            raise MappingError(_range_message(points[bad], p.voxel_size))
        centre = origin if origin is not None else _mean_point(xyz[:, :finite])
        evicted = 0
        if self._n + count > p.max_voxels:  # only then can the scan's new voxels overfill the map
            kept, evicted = self._make_room(keys[:count], centre)
            if kept is not None:
                keys, classes, weights = keys[:count][kept], classes[:count][kept], weights[:count][kept]
                count = keys.shape[0]

        n_before = self._n
        voxel_index = np.empty(count, np.int32)
        state = np.array([self._n], np.int64)
        start = 0
        while True:
            start = k.insert(keys, count, start, self._table, self._shift, self._keys, state, self._keys.shape[0],
                             voxel_index)
            self._n = int(state[0])
            if start == count:
                break
            if self._n >= self._keys.shape[0]:
                self._grow_dense()
            if self._n >= self._table.shape[0] * 3 // 4:
                self._grow_table(self._table.shape[0] * 2)
        n = self._n
        k.expand_boxes(self._keys, n_before, n, self._boxes)
        # a voxel moved into a hole widens its new chunk's box: a few boxes are made tight again every scan
        used = max(1, -(-n // (1 << _CHUNK_BITS)))
        self._retighten = self._retighten % used
        self._rebuild_boxes(self._retighten, _RETIGHTEN_CHUNKS)
        self._retighten += _RETIGHTEN_CHUNKS
        hit = np.zeros(n, np.bool_)
        occ_low, occ_high = p.occupancy_q
        positions = np.empty(max(2, 1 << (2 * count).bit_length()), np.int32)
        positions_shift = np.uint64(64 - (positions.shape[0].bit_length() - 1))
        touched = k.fuse(voxel_index, classes, weights, count, n_before, n, self._log_probs, self._occupancy,
                         self._observations, self._last_seen, np.int64(stamp_ns), p.q_step, p.q_scale, p.log_floor,
                         self._exp_q, p.hit_q, occ_low, occ_high, hit, positions, positions_shift,
                         np.empty(count, np.int32), np.empty(count, np.int32), np.empty(count + 1, np.int64),
                         np.empty(count, np.int32), np.empty(count, np.float64))

        cleared = 0
        radius2 = p.radius * p.radius if p.radius is not None and centre is not None else -1.0
        if origin is not None or radius2 >= 0.0:
            no_point = np.zeros(3)
            farthest2 = 0.0
            image = np.empty(0, np.float32)
            if origin is not None:
                point_cells, point_range2 = np.empty(finite), np.empty(finite)
                k.directions(xyz[0], xyz[1], xyz[2], finite, origin[0], origin[1], origin[2], p.azimuth_bins,
                             p.azimuth_scale, p.elevation_bins, p.elevation_scale, point_cells, point_range2)
                image = np.full(p.elevation_bins * p.azimuth_bins, np.inf, np.float32)
                farthest2 = k.range_image(point_cells, point_range2, finite, image)
            # n-sized lists, of which only the pages written are ever touched
            index, centres, gone = np.empty(n, np.int64), np.empty((3, n), np.float64), np.empty(n, np.int64)
            m, e = k.candidates(self._keys, n, self._boxes, p.voxel_size, centre if centre is not None else no_point,
                                radius2, origin if origin is not None else no_point, origin is not None, farthest2, hit,
                                gone, index, centres)
            cleared_at = np.empty(m, np.int64)
            if m:
                cells, range2 = np.empty(m), np.empty(m)
                k.directions(centres[0], centres[1], centres[2], m, origin[0], origin[1], origin[2], p.azimuth_bins,
                             p.azimuth_scale, p.elevation_bins, p.elevation_scale, cells, range2)
                cleared = k.clear(index, cells, range2, m, image, p.clear_margin, p.miss_q, occ_low, p.remove_q,
                                  self._occupancy, cleared_at)
            evicted += int(e)
            self._remove(np.sort(np.concatenate([gone[:e], cleared_at[:cleared]])))
        return {"points": finite, "labelled": count, "voxels_touched": touched, "voxels_new": int(state[0]) - n_before,
                "voxels_cleared": cleared, "voxels_evicted": evicted}

    def _make_room(self, keys: np.ndarray, centre: np.ndarray | None) -> tuple[np.ndarray | None, int]:
        """Evict before inserting, so that the map never holds more than max_voxels, even within a scan.

        The voxels the scan touches all become the newest, so the victims are the least recently seen of the
        others (`_lru_victims`); when the scan alone touches more than max_voxels, every other voxel goes and
        of the scan's own voxels the nearest to `centre` are kept (then the smaller key). Returns (mask of the
        points to fuse, or None for all; voxels evicted, the scan's dropped new ones included)."""
        p, n = self._p, self._n
        found = np.empty(keys.shape[0], np.int32)
        self._k.lookup(keys, keys.shape[0], self._table, self._shift, self._keys, found)
        new_keys = np.unique(keys[found < 0])
        if n + new_keys.size <= p.max_voxels:
            return None, 0
        touched = np.unique(found[found >= 0])
        if touched.size + new_keys.size > p.max_voxels:
            scan_keys = np.concatenate([self._keys[touched], new_keys])
            order = np.lexsort((scan_keys, _centre_dist2(scan_keys, p.voxel_size, centre)))
            kept_keys = np.sort(scan_keys[order[:p.max_voxels]])
            others = np.ones(n, np.bool_)
            others[touched[np.isin(self._keys[touched], kept_keys, assume_unique=True)]] = False
            victims = np.flatnonzero(others)
            dropped = new_keys.size - np.count_nonzero(np.isin(new_keys, kept_keys, assume_unique=True))
            self._remove(victims)
            return np.isin(keys, kept_keys), int(victims.size + dropped)
        others = np.ones(n, np.bool_)
        others[touched] = False
        candidates = np.flatnonzero(others)
        chosen = _lru_victims(self._last_seen[candidates],
                              _centre_dist2(self._keys[candidates], p.voxel_size, centre), self._keys[candidates],
                              n + new_keys.size - p.max_voxels)
        victims = np.sort(candidates[chosen])
        self._remove(victims)
        return None, int(victims.size)

    def _remove(self, victims: np.ndarray) -> None:
        """Remove dense slots `victims` (ascending); give memory back once the map holds under a quarter of it."""
        if victims.size:
            self._n = self._k.remove(np.ascontiguousarray(victims[::-1], np.int64), self._table, self._shift,
                                     self._keys, self._log_probs, self._occupancy, self._observations,
                                     self._last_seen, self._n, self._boxes)
            capacity = self._keys.shape[0]
            if capacity > _INITIAL_VOXELS and self._n < capacity // 4:
                for array in (self._keys, self._log_probs, self._occupancy, self._observations, self._last_seen):
                    array.resize((self._n + max(self._n // 32, _INITIAL_VOXELS),) + array.shape[1:], refcheck=False)
                self._resize_boxes()
                self._rebuild_boxes()
            slots = max(_INITIAL_SLOTS, 1 << (2 * self._n).bit_length())
            if slots * 2 <= self._table.shape[0]:
                self._grow_table(slots)

    def contents(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(packed keys, quantised log-probabilities, fixed-point occupancy), views in slot order (no copy)."""
        n = self._n
        return self._keys[:n], self._log_probs[:n], self._occupancy[:n]

    def arrays(self) -> tuple[np.ndarray, ...]:
        n = self._n
        order = np.argsort(self._keys[:n])
        return (self._keys[:n][order], self._log_probs[:n][order], self._occupancy[:n][order],
                self._observations[:n][order], self._last_seen[:n][order])

    def load(self, keys: np.ndarray, log_probs: np.ndarray, occupancy: np.ndarray, observations: np.ndarray,
             last_seen: np.ndarray) -> None:
        n = keys.shape[0]
        self._allocate(max(n, _INITIAL_VOXELS))
        self._keys[:n], self._log_probs[:n], self._occupancy[:n] = keys, log_probs, occupancy
        self._observations[:n], self._last_seen[:n] = observations, last_seen
        self._n = n
        self._grow_table(max(_INITIAL_SLOTS, 1 << (4 * n // 3 + 1).bit_length()))


# ---------------------------------------------------------------------------------------------------
# torch backend: the same arithmetic on sorted keys, on a GPU or the CPU.
# ---------------------------------------------------------------------------------------------------


def _torch_cells(torch: Any, d: Any, p: _Params) -> Any:
    """Range-image cells of direction vectors d (K, 3) float64: `_directions`' arithmetic, op for op."""
    dx, dy, dz = d[:, 0], d[:, 1], d[:, 2]
    h2 = dx * dx + dy * dy
    angles = []
    for y, x, azimuth in ((dy, dx, True), (dz, torch.sqrt(h2), False)):
        ax, ay = x.abs(), y.abs()
        swap = ay > ax
        big, small = torch.where(swap, ay, ax), torch.where(swap, ax, ay)
        s = small / torch.where(big > 0, big, torch.ones_like(big))
        t = s * s
        poly = torch.full_like(t, _A6)
        for coefficient in (_A5, _A4, _A3, _A2, _A1, _A0):
            poly = poly * t + coefficient
        a = s * poly
        a = torch.where(swap, _HALF_PI - a, a)
        if azimuth:
            a = torch.where(x < 0, _PI - a, a)
        angles.append(torch.where(y < 0, -a, a))
    column = torch.floor((angles[0] + _PI) * p.azimuth_scale)
    column = torch.where(column >= p.azimuth_bins, column - p.azimuth_bins, column)
    row = torch.floor((angles[1] + _HALF_PI) * p.elevation_scale).clamp(0.0, p.elevation_bins - 1.0)
    return (row * p.azimuth_bins + column).long()


class _TorchStore:
    """GPU (or CPU) storage: value tensors sorted by packed key; lookups by searchsorted."""

    def __init__(self, params: _Params, device: str) -> None:
        import torch

        self._torch = torch
        self._p = params
        self._device = torch.device(_torch_device(device))
        self._load_empty()

    def _load_empty(self) -> None:
        torch, dev = self._torch, self._device
        self._keys = torch.zeros(0, dtype=torch.int64, device=dev)
        self._log_probs = torch.zeros((0, self._p.num_classes), dtype=torch.uint8, device=dev)
        self._occupancy = torch.zeros(0, dtype=torch.int16, device=dev)
        # uint16 tensors lack indexing kernels in torch; the bits are kept as int16 and viewed as uint16
        self._observations = torch.zeros(0, dtype=torch.int16, device=dev)
        self._last_seen = torch.zeros(0, dtype=torch.int64, device=dev)

    def _fields(self) -> tuple[Any, ...]:
        return self._keys, self._log_probs, self._occupancy, self._observations, self._last_seen

    def _set_fields(self, fields: tuple[Any, ...]) -> None:
        self._keys, self._log_probs, self._occupancy, self._observations, self._last_seen = fields

    def __len__(self) -> int:
        return int(self._keys.shape[0])

    def memory_bytes(self) -> int:
        return sum(t.element_size() * t.numel() for t in self._fields())

    def _centres(self, keys: Any) -> Any:
        size = self._p.voxel_size
        torch = self._torch
        centres = torch.stack([(keys >> (2 * KEY_BITS)) - KEY_OFFSET, ((keys >> KEY_BITS) & _KEY_MASK) - KEY_OFFSET,
                                     (keys & _KEY_MASK) - KEY_OFFSET], dim=1)
        return (centres.to(torch.float64) + 0.5) * size  # int64 + float would be float32 in torch

    @staticmethod
    def _dist2(centres: Any, centre: Any) -> Any:
        d = centres - centre
        return d[:, 0] * d[:, 0] + d[:, 1] * d[:, 1] + d[:, 2] * d[:, 2]

    def _lse(self, l: Any) -> Any:
        top = l.max(dim=1, keepdim=True).values
        return top + self._torch.log(self._torch.exp(l - top).sum(dim=1, keepdim=True))

    def integrate(self, points: np.ndarray, labels: np.ndarray, confidence: np.ndarray | None, stamp_ns: int,
                  origin: np.ndarray | None) -> dict[str, int]:
        torch, p, dev = self._torch, self._p, self._device
        pts = torch.from_numpy(points).to(dev, torch.float64)
        finite = torch.isfinite(pts).all(dim=1)
        valid = pts[finite]
        ijk = torch.floor(valid / p.voxel_size)
        bad = (ijk < KEY_MIN) | (ijk > KEY_MAX)
        if bool(bad.any()):
            first = int(torch.nonzero(finite).flatten()[bad.any(dim=1)][0])
            raise MappingError(_range_message(points[first], p.voxel_size))
        lab = torch.from_numpy(labels).to(dev)[finite]
        if confidence is not None:
            conf = torch.from_numpy(confidence).to(dev, torch.float64)[finite]
        else:
            conf = torch.full((valid.shape[0],), p.default_confidence, dtype=torch.float64, device=dev)
        use = (lab >= 0) & (lab < p.num_classes) & torch.isfinite(conf)
        conf = conf[use].clamp(1.0 / p.num_classes + 1e-3, 1.0 - 1e-3)
        weights = torch.log(conf * (p.num_classes - 1) / (1.0 - conf))
        lab = lab[use]
        offset = ijk[use].long() + KEY_OFFSET
        keys = (offset[:, 0] << (2 * KEY_BITS)) | (offset[:, 1] << KEY_BITS) | offset[:, 2]
        uniq, inverse = torch.unique(keys, sorted=True, return_inverse=True)
        C, U, M = p.num_classes, uniq.shape[0], self._keys.shape[0]
        evidence = torch.zeros(U * C, dtype=torch.float64, device=dev).index_add_(0, inverse * C + lab, weights)
        evidence = evidence.view(U, C)
        hits = torch.bincount(inverse, minlength=U)
        n_finite = int(finite.sum())
        if origin is not None:
            centre_np: np.ndarray | None = origin
        else:
            centre_np = _mean_point(np.ascontiguousarray(points[np.isfinite(points).all(axis=1)].T, np.float64))
        centre = torch.from_numpy(centre_np).to(dev) if centre_np is not None else None

        evicted = 0
        position, found = self._find(uniq)
        if M + int((~found).sum()) > p.max_voxels:
            kept, evicted = self._make_room(uniq, position, found, centre)
            if kept is not None:
                uniq, evidence, hits = uniq[kept], evidence[kept], hits[kept]
                U = uniq.shape[0]
            M = self._keys.shape[0]
            position, found = self._find(uniq)
        old = position[found]
        base = torch.zeros((U, C), dtype=torch.float64, device=dev)
        base[found] = self._log_probs[old].to(torch.float64) * p.q_step
        l = base + evidence
        l = (l - self._lse(l)).clamp_min(p.log_floor)
        floored = (l == p.log_floor).any(dim=1, keepdim=True)
        l = torch.where(floored, l - self._lse(l), l)
        q = torch.floor(l * p.q_scale + 0.5).clamp(0, _Q_MAX).to(torch.uint8)
        occ_low, occ_high = p.occupancy_q
        occ = torch.zeros(U, dtype=torch.int64, device=dev)
        occ[found] = self._occupancy[old].long()
        occ = (occ + p.hit_q).clamp(occ_low, occ_high).to(torch.int16)
        obs = torch.zeros(U, dtype=torch.int64, device=dev)
        obs[found] = self._observations[old].view(torch.uint16).to(torch.int64)
        obs = (obs + hits).clamp_max(_OBS_MAX).to(torch.uint16).view(torch.int16)
        self._log_probs[old], self._occupancy[old], self._observations[old] = q[found], occ[found], obs[found]
        self._last_seen[old] = stamp_ns

        remove = torch.zeros(M, dtype=torch.bool, device=dev)
        cleared = 0
        centres = self._centres(self._keys)
        if p.radius is not None and centre is not None:
            remove = self._dist2(centres, centre) > p.radius * p.radius
            evicted += int(remove.sum())
        if origin is not None and M:
            hit = torch.zeros(M, dtype=torch.bool, device=dev)
            hit[old] = True
            d = valid - centre
            r2 = self._dist2(d, 0.0)
            d, r2 = d[r2 > 0], r2[r2 > 0]
            image = torch.full((p.elevation_bins * p.azimuth_bins,), math.inf, dtype=torch.float32, device=dev)
            image.scatter_reduce_(0, _torch_cells(torch, d, p),
                                  torch.sqrt(r2).to(torch.float32), "amin")
            dv = centres - centre
            rv2 = self._dist2(dv, 0.0)
            candidate = ~hit & ~remove & (rv2 > 0)
            measured = image[_torch_cells(torch, dv, p)]
            miss = candidate & torch.isfinite(measured) & (torch.sqrt(rv2) < measured.to(torch.float64)
                                                           - p.clear_margin)
            occ_now = (self._occupancy[miss].long() + p.miss_q).clamp_min(occ_low)
            self._occupancy[miss] = occ_now.to(torch.int16)
            gone = torch.zeros(M, dtype=torch.bool, device=dev)
            gone[miss] = occ_now <= p.remove_q
            cleared = int(gone.sum())
            remove |= gone
        keep = ~remove
        new = ~found
        new_fields = (uniq[new], q[new], occ[new], obs[new],
                      torch.full((int(new.sum()),), stamp_ns, dtype=torch.int64, device=dev))
        if p.radius is not None and centre is not None:
            inside = self._dist2(self._centres(new_fields[0]), centre) <= p.radius * p.radius
            evicted += int((~inside).sum())
            new_fields = tuple(f[inside] for f in new_fields)
        merged = tuple(torch.cat([f[keep], g]) for f, g in zip(self._fields(), new_fields))
        order = torch.argsort(merged[0])
        self._set_fields(tuple(f[order] for f in merged))

        return {"points": n_finite, "labelled": int(hits.sum()), "voxels_touched": U,
                "voxels_new": int(new.sum()), "voxels_cleared": cleared, "voxels_evicted": evicted}

    def _find(self, uniq: Any) -> tuple[Any, Any]:
        """(position of each of the sorted keys `uniq` in the map's keys, whether it is there)."""
        M = self._keys.shape[0]
        position = self._torch.searchsorted(self._keys, uniq)
        if not M:
            return position, self._torch.zeros(uniq.shape[0], dtype=self._torch.bool, device=self._device)
        return position, (position < M) & (self._keys[position.clamp_max(M - 1)] == uniq)

    def _make_room(self, uniq: Any, position: Any, found: Any, centre: Any) -> tuple[Any, int]:
        """As `_NumbaStore._make_room`, in torch: evict before fusing so that the map never exceeds max_voxels."""
        torch, p, M = self._torch, self._p, self._keys.shape[0]
        others = torch.ones(M, dtype=torch.bool, device=self._device)
        others[position[found]] = False
        if uniq.shape[0] > p.max_voxels:
            dist2 = (self._dist2(self._centres(uniq), centre) if centre is not None
                     else torch.zeros(uniq.shape[0], dtype=torch.float64, device=self._device))
            kept = torch.zeros(uniq.shape[0], dtype=torch.bool, device=self._device)
            kept[torch.argsort(dist2, stable=True)[:p.max_voxels]] = True  # uniq is sorted: ties keep key order
            others[position[found & ~kept]] = True
            dropped = int((~found & ~kept).sum())
            self._set_fields(tuple(f[~others] for f in self._fields()))
            return kept, int(others.sum()) + dropped
        victims = self._lru_victims(centre, M + int((~found).sum()) - p.max_voxels, torch.nonzero(others).flatten())
        keep = torch.ones(M, dtype=torch.bool, device=self._device)
        keep[victims] = False
        self._set_fields(tuple(f[keep] for f in self._fields()))
        return None, int(victims.shape[0])

    def _lru_victims(self, centre: Any, excess: int, candidates: Any) -> Any:
        """As `_lru_victims`, in torch, among `candidates`: oldest first, then farthest, then larger key."""
        torch, seen = self._torch, self._last_seen[candidates]
        threshold = torch.kthvalue(seen, excess).values
        older = candidates[seen < threshold]
        tied = candidates[seen == threshold]
        dist2 = (self._dist2(self._centres(self._keys[tied]), centre) if centre is not None
                 else torch.zeros(tied.shape[0], dtype=torch.float64, device=seen.device))
        by_key = torch.argsort(self._keys[tied], descending=True, stable=True)
        by_distance = torch.argsort(dist2[by_key], descending=True, stable=True)
        return torch.cat([older, tied[by_key[by_distance]][:excess - older.shape[0]]])

    def contents(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self._keys.cpu().numpy(), self._log_probs.cpu().numpy(), self._occupancy.cpu().numpy()

    def arrays(self) -> tuple[np.ndarray, ...]:
        return (self._keys.cpu().numpy(), self._log_probs.cpu().numpy(), self._occupancy.cpu().numpy(),
                self._observations.cpu().numpy().view(np.uint16), self._last_seen.cpu().numpy())

    def load(self, keys: np.ndarray, log_probs: np.ndarray, occupancy: np.ndarray, observations: np.ndarray,
             last_seen: np.ndarray) -> None:
        torch, dev = self._torch, self._device
        self._set_fields((torch.from_numpy(keys).to(dev), torch.from_numpy(log_probs).to(dev),
                          torch.from_numpy(occupancy).to(dev),
                          torch.from_numpy(observations.view(np.int16).copy()).to(dev),
                          torch.from_numpy(last_seen).to(dev)))


def _range_message(point: np.ndarray, voxel_size: float) -> str:
    reach = KEY_OFFSET * voxel_size
    return (f"point {tuple(float(v) for v in point)} is beyond the map's reach at voxel_size {voxel_size} m; "
            f"accepted: coordinates in [-{reach:.0f}, {reach:.0f}) m on each axis (21-bit voxel keys)")


def _torch_device(device: Any) -> str:
    try:
        import torch
    except ImportError:
        raise MappingError("backend 'torch' needs PyTorch installed; use backend='numba'") from None
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise MappingError(f"device {device!r} is not a torch device; accepted: 'cpu', 'cuda', 'cuda:N'") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise MappingError(f"device {device!r} asked for, but CUDA is not available; use device='cpu'")
    if dev.type not in ("cpu", "cuda"):
        raise MappingError(f"device {device!r} is not supported; accepted: 'cpu', 'cuda', 'cuda:N'")
    return str(dev)


_STORES: dict[str, type[_NumbaStore] | type[_TorchStore]] = {"numba": _NumbaStore, "torch": _TorchStore}


class SemanticVoxelMap:
    """A sparse semantic voxel map in the map frame, fused scan by scan.

    Semantics: a point labelled c with confidence p says P(z | c) = p and P(z | k != c) = (1 - p) / (C - 1),
    i.e. it adds w = log(p (C - 1) / (1 - p)) to class c (p clipped to [1/C + 1e-3, 1 - 1e-3], so w > 0).
    The labelled points of one scan in one voxel are summed, then per voxel: l += sum w e_c; l -= lse(l);
    l = max(l, log_floor); l -= lse(l). Because no class drops below log_floor, a few scans of new evidence
    flip a voxel that many scans called something else (a parked car that drives off and a person who
    steps in its place).

    Occupancy (log-odds, clamped to occupancy_limits): +hit_log_odds once per scan for a voxel its
    labelled points hit. With `origin` given, a range image of the scan's finite points (minimum range
    per azimuth x elevation bin) marks as passed-through every voxel not hit this scan whose centre falls in
    a measured bin nearer than the measured range minus voxel_size * sqrt(3); each such voxel gets
    miss_log_odds and is removed once its occupancy is at or below remove_below. With the defaults a voxel at
    full occupancy (3.5) is removed after ceil((3.5 - (-1.0)) / 0.5) = 9 scans of its direction seeing past
    it, 0.9 s at 10 Hz; a voxel seen once (0.85) after ceil(1.85 / 0.5) = 4. Parameters become fixed point
    (1/1024 log-odds steps): hit 0.85 is stored as 870/1024.

    Memory is bounded: with `radius` set, voxels farther than radius from the origin (or the scan's mean
    point without one) are evicted; past `max_voxels` the least recently seen go first, the farthest of
    equally recent ones first. The cap holds within a scan: room is made before the scan's voxels are
    inserted (if the scan alone has more, its nearest are kept). Storage is given back when the map falls
    under a quarter of it. Per voxel: see `bytes_per_voxel` (<= 64 bytes for 32 classes); the dynamic layer
    (`dynamic_classes`) adds 17 bytes per dynamic voxel seen within dynamic_decay_s, nothing to static ones.

    Dynamic classes (people, vehicles): see `DynamicLayer`; `dynamic_voxels()` returns them.
    """

    def __init__(self, num_classes: int, voxel_size: float = 0.2, *, max_voxels: int = 2_000_000,
                 radius: float | None = None, log_floor: float = -7.0, default_confidence: float = 0.8,
                 hit_log_odds: float = 0.85, miss_log_odds: float = -0.5,
                 occupancy_limits: tuple[float, float] = (-2.0, 3.5), remove_below: float = -1.0,
                 azimuth_bins: int = 2048, elevation_step_deg: float = 0.5, dynamic_classes: tuple[int, ...] = (),
                 dynamic_decay_s: float = 2.0, backend: str = "numba", device: str = "cpu") -> None:
        """Args:
            num_classes: C, 2..255.
            voxel_size: edge length, metres, 0.02..2.0.
            max_voxels: the most voxels kept; the least recently seen are evicted beyond it.
            radius: metres; voxels farther from the scan origin are evicted each scan (None: never).
            log_floor: the lowest class log-probability, below -log(C); quantisation step |log_floor| / 255.
            default_confidence: the confidence of labelled points given without one.
            hit_log_odds, miss_log_odds: occupancy change per scan hit / passed through (> 0 / < 0).
            occupancy_limits: (lower < 0, upper > 0) clamp of occupancy log-odds, |.| <= 31.
            remove_below: occupancy at or below which a passed-through voxel is removed, in [lower, 0).
            azimuth_bins: range-image columns over 360 degrees.
            elevation_step_deg: range-image row height.
            dynamic_classes: ids of classes that move (LabelSet.dynamic_ids()): their points are kept apart from
                the static map (see `DynamicLayer`) and shown only while seen.
            dynamic_decay_s: seconds after which an unseen dynamic voxel is forgotten, in (0, 3600].
            backend: "numba" (CPU hash table) or "torch" (sorted tensors).
            device: "cpu" for numba; "cpu", "cuda" or "cuda:N" for torch.

        Raises:
            MappingError: a parameter out of its accepted range, an unknown backend or an unusable device.
        """
        self._p = _make_params(num_classes, voxel_size, max_voxels, radius, log_floor, default_confidence,
                               hit_log_odds, miss_log_odds, occupancy_limits, remove_below, azimuth_bins,
                               elevation_step_deg)
        self._dynamic = DynamicLayer(self._p.num_classes, dynamic_classes, dynamic_decay_s)
        if backend not in _STORES:
            raise MappingError(f"backend {backend!r} is not known; accepted: {', '.join(_STORES)}")
        self._store: _NumbaStore | _TorchStore = _STORES[backend](self._p, device)
        self._backend = backend

    @property
    def num_classes(self) -> int:
        return self._p.num_classes

    @property
    def voxel_size(self) -> float:
        return self._p.voxel_size

    @property
    def backend(self) -> str:
        return self._backend

    def __len__(self) -> int:
        return len(self._store)

    def parameters(self) -> dict[str, Any]:
        """The constructor's keyword arguments this map was made with (backend and device aside), so that
        `from_voxels(voxels(), **parameters())` rebuilds it."""
        parameters = asdict(self._p)
        del parameters["num_classes"], parameters["voxel_size"]
        return {**parameters, "dynamic_classes": self._dynamic.classes, "dynamic_decay_s": self._dynamic.decay_s}

    def memory_bytes(self) -> int:
        """Bytes allocated for the map's contents: value arrays at their capacity plus hash slots
        (per-scan scratch such as the range image not included)."""
        return self._store.memory_bytes() + self._dynamic.memory_bytes()

    def bytes_per_voxel(self) -> float:
        """memory_bytes() / max(len, 1).

        Per voxel 8 (key) + C (log-probabilities) + 2 (occupancy) + 2 (observations) + 8 (stamp) bytes; the
        numba backend adds up to 1/32 of spare dense capacity and 4 bytes per hash slot at 37-75 % load,
        5.3-10.7 bytes a voxel depending on where the count lies between two doublings of the table. For 32
        classes that is 52 bytes (torch) and 58-64 bytes (numba; at most 63.8 measured from 20 k to 1.1 M
        voxels).
        """
        return self.memory_bytes() / max(len(self), 1)

    def integrate(self, points: Any, labels: Any, confidence: Any = None, *, stamp_ns: int,
                  origin: Any = None) -> dict[str, int]:
        """Fuse one scan of labelled points.

        Args:
            points: (N, 3) float, map frame, metres; non-finite rows are ignored.
            labels: (N,) integer classes; values < 0 or >= num_classes mark unlabelled points, which
                create and update no voxel but still count as measurements for free-space clearing.
            confidence: (N,) float probabilities of the labels (None: default_confidence); a point with a
                non-finite confidence is treated as unlabelled.
            stamp_ns: the scan's stamp, stored as the touched voxels' last_seen_ns.
            origin: (3,) sensor position in the map frame; enables free-space clearing and is the centre
                of radius eviction (else the mean of the scan's finite points).

        Returns:
            {"points": finite points, "labelled": labelled finite points fused, "voxels_touched",
            "voxels_new", "voxels_cleared", "voxels_evicted", "dynamic_voxels" (seen within dynamic_decay_s)}.

        Raises:
            MappingError: wrong shapes or dtypes, a non-integer stamp or a non-finite origin. A point beyond
            the 21-bit key range (about +-209 km at 0.2 m) is left out and counted ("points_out_of_reach").
        """
        pts = np.asarray(points)
        if pts.ndim != 2 or pts.shape[1] != 3 or not (np.issubdtype(pts.dtype, np.floating)
                                                      or np.issubdtype(pts.dtype, np.integer)):
            raise MappingError(f"points of shape {pts.shape} and dtype {pts.dtype} are not usable; "
                               "accepted: (N, 3) real numbers")
        if pts.dtype not in (np.float32, np.float64):
            pts = pts.astype(np.float64)
        pts = np.ascontiguousarray(pts)
        lab = np.asarray(labels)
        if lab.shape != (pts.shape[0],) or not (np.issubdtype(lab.dtype, np.integer) or lab.dtype == np.bool_):
            raise MappingError(f"labels of shape {lab.shape} and dtype {lab.dtype} do not fit {pts.shape[0]} "
                               "points; accepted: (N,) integers")
        lab = np.ascontiguousarray(lab, np.int64)
        conf = None
        if confidence is not None:
            conf = np.asarray(confidence)
            if conf.shape != (pts.shape[0],) or not np.issubdtype(conf.dtype, np.number):
                raise MappingError(f"confidence of shape {conf.shape} and dtype {conf.dtype} does not fit "
                                   f"{pts.shape[0]} points; accepted: None or (N,) floats")
            conf = np.ascontiguousarray(conf, np.float32)
        if isinstance(stamp_ns, bool) or not isinstance(stamp_ns, (int, np.integer)):
            raise MappingError(f"stamp_ns {stamp_ns!r} is not usable; accepted: an integer (nanoseconds)")
        where = None
        if origin is not None:
            where = np.asarray(origin, dtype=np.float64).reshape(-1)
            if where.shape != (3,) or not np.isfinite(where).all():
                raise MappingError(f"origin {origin!r} is not usable; accepted: None or 3 finite numbers (map frame)")
        # A point beyond the key range (a corrupt range, a point at 1e19 m) costs itself, not the scan: it is
        # left out like a non-finite one and counted.
        reach = KEY_OFFSET * self._p.voxel_size
        with np.errstate(invalid="ignore"):
            beyond = np.isfinite(pts).all(axis=1) & (np.abs(pts) >= reach).any(axis=1)
        if beyond.any():
            pts = np.where(beyond[:, None], np.nan, pts).astype(pts.dtype, copy=False)
        dynamic = self._dynamic.mask(lab) if self._dynamic.classes else None
        static = np.where(dynamic, -1, lab) if dynamic is not None else lab  # still measurements for clearing
        stats = self._store.integrate(pts, static, conf, int(stamp_ns), where)
        stats["points_out_of_reach"] = int(beyond.sum())
        if dynamic is not None:
            keep = dynamic & np.isfinite(pts).all(axis=1)  # the store has checked the key range
            if conf is not None:
                keep &= np.isfinite(conf)
            self._dynamic.update(pts[keep].astype(np.float64), lab[keep], self._p.voxel_size, int(stamp_ns))
        return {**stats, "dynamic_voxels": len(self._dynamic)}

    def contents(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The static map as stored, for fast readers (the costmap): (M,) packed int64 keys, (M, C) uint8
        quantised log-probabilities (q * log_floor / 255; the smallest q is the most probable class) and (M,)
        int16 occupancy log-odds * OCCUPANCY_SCALE, in storage order. Views: read them before the next
        integrate."""
        return self._store.contents()

    def dynamic_voxels(self) -> VoxelArrays:
        """The voxels of dynamic classes seen within dynamic_decay_s of the last scan, sorted by key (their
        class at full confidence); not part of `voxels()`, the static map."""
        return self._dynamic.voxels(self._p.voxel_size, self._p.log_floor, self._p.hit_log_odds)

    def voxels(self) -> VoxelArrays:
        """The static map's contents, sorted by key, log-probabilities dequantised (q * log_floor / 255)."""
        keys, q, occupancy, observations, last_seen = self._store.arrays()
        return VoxelArrays(
            voxel_size=self._p.voxel_size,
            keys=unpack_keys(keys),
            log_probs=(q.astype(np.float64) * self._p.q_step).astype(np.float32),
            observations=observations.astype(np.uint16),
            last_seen_ns=last_seen.astype(np.int64),
            occupancy=(occupancy.astype(np.float64) / OCCUPANCY_SCALE).astype(np.float32),
        )

    @classmethod
    def from_voxels(cls, arrays: VoxelArrays, **params: Any) -> SemanticVoxelMap:
        """A map holding `arrays` (as from `voxels()`, which it then returns exactly).

        Args:
            arrays: the contents; their voxel_size and class count are the map's.
            **params: the constructor's other keyword arguments (log_floor should be the one the arrays
                were made with: log-probabilities are re-quantised on its grid).

        Raises:
            MappingError: inconsistent shapes, duplicate or out-of-range keys, non-finite values, or
                num_classes / voxel_size given that disagree with the arrays.
        """
        for name, value in (("num_classes", arrays.num_classes), ("voxel_size", arrays.voxel_size)):
            if name in params and params.pop(name) != value:
                raise MappingError(f"{name} given to from_voxels disagrees with the arrays' {value}")
        voxel_map = cls(arrays.num_classes, arrays.voxel_size, **params)
        m = len(arrays)
        keys = np.asarray(arrays.keys)
        shapes = {"keys": (keys.shape, (m, 3)),
                  "log_probs": (np.shape(arrays.log_probs), (m, arrays.num_classes)),
                  "observations": (np.shape(arrays.observations), (m,)),
                  "last_seen_ns": (np.shape(arrays.last_seen_ns), (m,)),
                  "occupancy": (np.shape(arrays.occupancy), (m,))}
        for name, (shape, expected) in shapes.items():
            if shape != expected:
                raise MappingError(f"VoxelArrays.{name} has shape {shape}; expected {expected}")
        log_probs = np.asarray(arrays.log_probs, np.float64)
        occupancy = np.asarray(arrays.occupancy, np.float64)
        if not (np.isfinite(log_probs).all() and np.isfinite(occupancy).all()):
            raise MappingError("VoxelArrays holds non-finite log_probs or occupancy; accepted: finite values")
        if m and (keys.min() < KEY_MIN or keys.max() > KEY_MAX):
            raise MappingError(f"VoxelArrays.keys beyond [{KEY_MIN}, {KEY_MAX}] (21-bit voxel keys)")
        packed = pack_keys(keys)
        order = np.argsort(packed)
        packed = packed[order]
        if m > 1 and np.any(packed[1:] == packed[:-1]):
            raise MappingError("VoxelArrays.keys holds duplicate voxels; accepted: unique keys")
        q = np.clip(np.floor(log_probs * voxel_map._p.q_scale + 0.5), 0, _Q_MAX).astype(np.uint8)
        occ = np.clip(np.round(occupancy * OCCUPANCY_SCALE), -32768, 32767).astype(np.int16)
        voxel_map._store.load(packed, q[order], occ[order],
                              np.asarray(arrays.observations).astype(np.uint16)[order],
                              np.asarray(arrays.last_seen_ns).astype(np.int64)[order])
        return voxel_map
