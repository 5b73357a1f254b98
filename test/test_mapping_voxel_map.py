"""SemanticVoxelMap: Bayesian fusion, keys, free-space clearing, eviction, memory, round trips, backends.

Expected values come from hand computations (a scalar normalised Bayesian update written out with
numpy below), geometry with known answers, and the other backend (the torch backend on the CPU against
the numba hash table)."""
from __future__ import annotations

import inspect
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seg_perception.mapping.errors import MappingError
from seg_perception.mapping.voxel_map import SemanticVoxelMap
from seg_perception.mapping.voxels import VoxelArrays

# The documented defaults; test_defaults_are_the_documented_ones keeps this honest.
DEFAULTS = {"log_floor": -7.0, "default_confidence": 0.8, "hit_log_odds": 0.85, "miss_log_odds": -0.5,
            "occupancy_limits": (-2.0, 3.5), "remove_below": -1.0, "azimuth_bins": 2048, "elevation_step_deg": 0.5}


@pytest.fixture(params=["numba", "torch"])
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


def _lse(l: np.ndarray) -> float:
    top = float(np.max(l))
    return top + math.log(sum(math.exp(v - top) for v in l))


def _weight(p: float, num_classes: int) -> float:
    p = min(max(p, 1.0 / num_classes + 1e-3), 1.0 - 1e-3)
    return math.log(p * (num_classes - 1) / (1.0 - p))


def _reference_update(l: np.ndarray, evidence: np.ndarray, floor: float) -> np.ndarray:
    """The issue's update, by hand: add, normalise, floor, normalise."""
    l = l + evidence
    l = l - _lse(l)
    l = np.maximum(l, floor)
    return l - _lse(l)


def _step(floor: float = -7.0) -> float:
    return abs(floor) / 255


def _one_voxel_scan(labels, confidences, centre=(0.1, 0.1, 0.1)):
    n = len(labels)
    return np.tile(np.asarray(centre, np.float32), (n, 1)), np.asarray(labels), np.asarray(confidences, np.float32)


def test_defaults_are_the_documented_ones():
    parameters = inspect.signature(SemanticVoxelMap.__init__).parameters
    for name, value in DEFAULTS.items():
        assert parameters[name].default == value, name


def test_voxel_keys_and_centres(backend):
    voxel_map = SemanticVoxelMap(3, 0.2, backend=backend)
    voxel_map.integrate(np.array([[0.19, -0.01, 0.5]], np.float32), np.array([1]), stamp_ns=7)
    voxels = voxel_map.voxels()
    assert voxels.keys.tolist() == [[0, -1, 2]]
    np.testing.assert_allclose(voxels.centers, [[0.1, -0.1, 0.5]], atol=1e-6)
    assert voxels.last_seen_ns.tolist() == [7] and voxels.observations.tolist() == [1]
    assert voxel_map.num_classes == 3 and voxel_map.voxel_size == 0.2 and len(voxel_map) == 1


def test_bayesian_update_by_hand(backend):
    C, floor = 3, -7.0
    voxel_map = SemanticVoxelMap(C, 0.2, backend=backend)
    # scan 1: two points say class 0 (p = 0.9), one says class 1 (p = 0.6)
    voxel_map.integrate(*_one_voxel_scan([0, 0, 1], [0.9, 0.9, 0.6]), stamp_ns=1)
    expected = _reference_update(np.full(C, -math.log(C)),
                                 np.array([2 * math.log(0.9 * 2 / 0.1), math.log(0.6 * 2 / 0.4), 0.0]), floor)
    got = voxel_map.voxels().log_probs[0]
    # one quantisation: within half a step
    np.testing.assert_allclose(got, expected, atol=_step() / 2 + 1e-6)
    # scan 2: one point says class 2 (p = 0.7)
    voxel_map.integrate(*_one_voxel_scan([2], [0.7]), stamp_ns=2)
    expected = _reference_update(expected, np.array([0.0, 0.0, math.log(0.7 * 2 / 0.3)]), floor)
    voxels = voxel_map.voxels()
    # two quantisations, the first carried through the second update: within one step
    np.testing.assert_allclose(voxels.log_probs[0], expected, atol=_step() + 1e-6)
    assert voxels.observations.tolist() == [4] and voxels.last_seen_ns.tolist() == [2]
    assert voxels.labels.tolist() == [int(np.argmax(expected))]


def test_confidence_is_clipped_and_defaults(backend):
    C = 4
    a = SemanticVoxelMap(C, 0.2, backend=backend)
    a.integrate(*_one_voxel_scan([3], [1.0]), stamp_ns=1)  # p = 1 is clipped to 1 - 1e-3
    expected = _reference_update(np.zeros(C), np.array([0, 0, 0, _weight(1.0, C)]), -7.0)
    np.testing.assert_allclose(a.voxels().log_probs[0], expected, atol=_step() / 2 + 1e-6)
    b = SemanticVoxelMap(C, 0.2, default_confidence=0.55, backend=backend)
    points, labels, _ = _one_voxel_scan([2], [0.0])
    b.integrate(points, labels, stamp_ns=1)  # no confidence: 0.55 for every point
    expected = _reference_update(np.zeros(C), np.array([0, 0, _weight(0.55, C), 0]), -7.0)
    np.testing.assert_allclose(b.voxels().log_probs[0], expected, atol=_step() / 2 + 1e-6)


def test_floor_lets_a_voxel_change_its_mind(backend):
    C, floor, p = 3, -7.0, 0.9
    voxel_map = SemanticVoxelMap(C, 0.2, log_floor=floor, backend=backend)
    w = math.log(p * (C - 1) / (1 - p))
    l = np.full(C, -math.log(C))
    for stamp in range(40):  # long enough for classes 1 and 2 to sit on the floor
        voxel_map.integrate(*_one_voxel_scan([0], [p]), stamp_ns=stamp)
        l = _reference_update(l, np.array([w, 0.0, 0.0]), floor)
    assert l[1] == pytest.approx(l[2]) and l[1] < floor + 0.01
    # scans of class 1: by hand, how many until class 1 leads?
    flips = 0
    margins = []
    while np.argmax(l) != 1:
        l = _reference_update(l, np.array([0.0, w, 0.0]), floor)
        flips += 1
        margins.append(abs(l[1] - l[0]))
    assert flips == 3  # -7 + 3 * log(18) > 0 > -7 + 2 * log(18)
    assert min(margins) > 5 * _step()  # far from a tie, so quantisation cannot move the flip
    for scan in range(1, flips + 1):
        voxel_map.integrate(*_one_voxel_scan([1], [p]), stamp_ns=100 + scan)
        label = int(voxel_map.voxels().labels[0])
        assert label == (1 if scan == flips else 0), scan
    # without a floor that binds (log_floor = -50), the same evidence takes many more scans
    stubborn = SemanticVoxelMap(C, 0.2, log_floor=-50.0, backend=backend)
    for stamp in range(40):
        stubborn.integrate(*_one_voxel_scan([0], [p]), stamp_ns=stamp)
    for scan in range(1, flips + 1):
        stubborn.integrate(*_one_voxel_scan([1], [p]), stamp_ns=100 + scan)
    assert int(stubborn.voxels().labels[0]) == 0


def test_points_in_one_voxel_are_summed_in_any_order(backend):
    C = 4
    labels, confidences = [0, 1, 0, 3, 0], [0.7, 0.95, 0.8, 0.6, 0.51]
    # all five points in voxel (2, 3, -1), at different places inside it
    rng = np.random.default_rng(0)
    points = (np.array([2, 3, -1]) + rng.uniform(0.05, 0.95, (5, 3))) * 0.2
    results = []
    for order in ([0, 1, 2, 3, 4], [4, 3, 2, 1, 0], [2, 0, 4, 1, 3]):
        voxel_map = SemanticVoxelMap(C, 0.2, backend=backend)
        voxel_map.integrate(points[order].astype(np.float32), np.array(labels)[order],
                            np.array(confidences, np.float32)[order], stamp_ns=1)
        results.append(voxel_map.voxels())
    for other in results[1:]:
        np.testing.assert_array_equal(other.log_probs, results[0].log_probs)
    evidence = np.zeros(C)
    for label, p in zip(labels, confidences):
        evidence[label] += _weight(p, C)
    expected = _reference_update(np.zeros(C), evidence, -7.0)
    assert results[0].keys.tolist() == [[2, 3, -1]] and results[0].observations.tolist() == [5]
    np.testing.assert_allclose(results[0].log_probs[0], expected, atol=_step() / 2 + 1e-6)


def test_points_in_different_voxels_do_not_interact(backend):
    together = SemanticVoxelMap(3, 0.2, backend=backend)
    together.integrate(np.array([[0.1, 0.1, 0.1], [0.3, 0.1, 0.1], [5.0, 5.0, 5.0]], np.float32), np.array([0, 1, 2]),
                       np.array([0.9, 0.6, 0.7], np.float32), stamp_ns=3)
    voxels = together.voxels()
    assert len(voxels) == 3
    for point, label, p in (([0.1, 0.1, 0.1], 0, 0.9), ([0.3, 0.1, 0.1], 1, 0.6), ([5.0, 5.0, 5.0], 2, 0.7)):
        alone = SemanticVoxelMap(3, 0.2, backend=backend)
        alone.integrate(np.array([point], np.float32), np.array([label]), np.array([p], np.float32), stamp_ns=3)
        row = np.flatnonzero((voxels.keys == alone.voxels().keys[0]).all(axis=1))
        np.testing.assert_array_equal(voxels.log_probs[row[0]], alone.voxels().log_probs[0])


def test_unlabelled_non_finite_and_empty_input(backend):
    voxel_map = SemanticVoxelMap(5, 0.2, backend=backend)
    points = np.array([[1, 1, 1], [2, 2, 2], [3, 3, 3], [np.nan, 0, 0], [np.inf, 1, 1], [4, 4, 4]], np.float32)
    labels = np.array([-1, 5, 255, 1, 1, 2])
    confidence = np.array([0.9, 0.9, 0.9, 0.9, 0.9, np.nan], np.float32)  # NaN confidence: unlabelled
    stats = voxel_map.integrate(points, labels, confidence, stamp_ns=1, origin=np.zeros(3))
    assert len(voxel_map) == 0
    assert stats == {"points": 4, "labelled": 0, "voxels_touched": 0, "voxels_new": 0, "voxels_cleared": 0,
                     "voxels_evicted": 0, "dynamic_voxels": 0, "points_out_of_reach": 0}
    stats = voxel_map.integrate(np.zeros((0, 3), np.float32), np.zeros(0, np.int64), stamp_ns=2, origin=[0, 0, 0])
    assert stats["points"] == 0 and len(voxel_map) == 0
    stats = voxel_map.integrate(np.full((3, 3), np.nan), np.array([1, 2, 3]), stamp_ns=3)
    assert stats["points"] == 0 and len(voxel_map.voxels()) == 0
    voxels = voxel_map.voxels()
    assert voxels.keys.shape == (0, 3) and voxels.log_probs.shape == (0, 5)


def _wall(distance: float, half: float, spacing: float) -> np.ndarray:
    """A dense grid of points on the plane x = distance, |y|, |z| <= half."""
    axis = np.arange(-half, half + spacing / 2, spacing)
    y, z = np.meshgrid(axis, axis)
    return np.stack([np.full(y.size, distance), y.ravel(), z.ravel()], axis=1).astype(np.float32)


def test_free_space_clearing_erases_a_person_who_walks_away(backend):
    voxel_map = SemanticVoxelMap(3, 0.2, backend=backend)
    origin = np.zeros(3)
    # the person: one voxel deep at x in [5.0, 5.2), y in [-0.2, 0.2), z in [-1.0, 1.0): 2 x 10 voxels
    y, z = np.meshgrid([-0.1, 0.1], np.arange(-0.9, 1.0, 0.2))
    person = np.stack([np.full(y.size, 5.1), y.ravel(), z.ravel()], axis=1).astype(np.float32)
    behind_wall = np.array([[14.1, 0.1, 0.1]], np.float32)       # straight ahead, behind where the wall will be
    near_wall = np.array([[9.9, 1.1, 0.1]], np.float32)          # in front of the wall, within the margin
    outside = np.array([[-5.1, 0.1, 0.1]], np.float32)           # behind the sensor: never scanned again
    first = np.concatenate([person, behind_wall, near_wall, outside])
    voxel_map.integrate(first, np.ones(len(first), np.int64), stamp_ns=0, origin=origin)
    person_scans = 5
    for scan in range(1, person_scans):
        voxel_map.integrate(person, np.ones(len(person), np.int64), stamp_ns=scan, origin=origin)
    before = voxel_map.voxels()
    assert len(before) == 20 + 3
    person_keys = {tuple(k) for k in np.floor(person / 0.2).astype(int)}
    others = {tuple(k): occ for k, occ in zip(before.keys.tolist(), before.occupancy) if tuple(k) not in person_keys}

    # the person leaves: that direction now measures a wall at 10 m (unlabelled points count as measurements)
    hit, miss, upper, remove = DEFAULTS["hit_log_odds"], DEFAULTS["miss_log_odds"], DEFAULTS["occupancy_limits"][1], \
        DEFAULTS["remove_below"]
    start = min(person_scans * hit, upper)
    np.testing.assert_allclose([before.occupancy[i] for i, k in enumerate(before.keys.tolist())
                                if tuple(k) in person_keys], start)
    scans_to_clear = math.ceil((start - remove) / -miss)
    assert scans_to_clear == 9  # (3.5 + 1.0) / 0.5: 0.9 s at 10 Hz
    wall = _wall(10.0, 3.0, 0.02)
    for scan in range(1, scans_to_clear + 1):
        stats = voxel_map.integrate(wall, np.full(len(wall), -1), stamp_ns=100 + scan, origin=origin)
        voxels = voxel_map.voxels()
        remaining = [tuple(k) for k in voxels.keys.tolist() if tuple(k) in person_keys]
        if scan < scans_to_clear:
            assert len(remaining) == 20, scan
            np.testing.assert_allclose(voxels.occupancy[[tuple(k) in person_keys for k in voxels.keys.tolist()]],
                                       start + scan * miss)
            assert stats["voxels_cleared"] == 0
        else:
            assert remaining == [] and stats["voxels_cleared"] == 20
        # behind the wall, within the margin in front of it, and outside the scanned bins: untouched
        now = {tuple(k): occ for k, occ in zip(voxels.keys.tolist(), voxels.occupancy)}
        assert {k: now.get(k) for k in others} == others


def test_clearing_needs_an_origin(backend):
    voxel_map = SemanticVoxelMap(3, 0.2, backend=backend)
    voxel_map.integrate(np.array([[5.1, 0.1, 0.1]], np.float32), np.array([1]), stamp_ns=0)
    wall = _wall(10.0, 1.0, 0.02)
    for scan in range(20):
        voxel_map.integrate(wall, np.full(len(wall), -1), stamp_ns=scan + 1)
    assert len(voxel_map) == 1


def test_max_voxels_keeps_the_newest(backend):
    voxel_map = SemanticVoxelMap(3, 0.2, max_voxels=1000, backend=backend)
    per_scan = 500
    for scan in range(10):
        index = np.arange(scan * per_scan, (scan + 1) * per_scan)
        points = np.stack([index % 100, index // 100, np.zeros_like(index)], axis=1) * 0.2 + 0.1
        stats = voxel_map.integrate(points.astype(np.float32), np.zeros(per_scan, np.int64), stamp_ns=scan)
        assert len(voxel_map) <= 1000
        assert stats["voxels_evicted"] == (0 if (scan + 1) * per_scan <= 1000 else per_scan)
    voxels = voxel_map.voxels()
    assert len(voxels) == 1000 and set(voxels.last_seen_ns.tolist()) == {8, 9}
    index = voxels.keys[:, 1] * 100 + voxels.keys[:, 0]
    assert sorted(index.tolist()) == list(range(4000, 5000))
    # the table still finds every survivor: seeing them again creates nothing
    again = SemanticVoxelMap.from_voxels(voxels, max_voxels=1000, backend=backend)
    stats = again.integrate(voxels.centers, np.zeros(1000, np.int64), stamp_ns=10)
    assert stats["voxels_new"] == 0 and stats["voxels_touched"] == 1000
    stats = voxel_map.integrate(voxels.centers, np.zeros(1000, np.int64), stamp_ns=10)
    assert stats["voxels_new"] == 0 and stats["voxels_touched"] == 1000


def test_max_voxels_ties_go_farthest_first(backend):
    voxel_map = SemanticVoxelMap(3, 0.2, max_voxels=100, backend=backend)
    x = np.arange(150) * 0.2 + 0.1  # one scan of 150 voxels on a line from the origin
    points = np.stack([x, np.full(150, 0.1), np.full(150, 0.1)], axis=1).astype(np.float32)
    stats = voxel_map.integrate(points, np.zeros(150, np.int64), stamp_ns=1, origin=np.zeros(3))
    assert stats["voxels_evicted"] == 50
    assert sorted(voxel_map.voxels().keys[:, 0].tolist()) == list(range(100))


def test_radius_eviction(backend):
    voxel_map = SemanticVoxelMap(3, 0.2, radius=10.0, backend=backend)
    near = np.array([[2.1, 0.1, 0.1], [8.1, 0.1, 0.1], [15.1, 0.1, 0.1]], np.float32)
    stats = voxel_map.integrate(near, np.zeros(3, np.int64), stamp_ns=1, origin=np.zeros(3))
    assert stats["voxels_new"] == 3 and stats["voxels_evicted"] == 1 and len(voxel_map) == 2
    # the sensor moves 16 m along x: the voxel at 2.1 m is now 13.9 m away, the one at 8.1 m 7.9 m
    stats = voxel_map.integrate(np.array([[20.1, 0.1, 0.1]], np.float32), np.zeros(1, np.int64), stamp_ns=2,
                                origin=np.array([16.0, 0.0, 0.0]))
    assert stats["voxels_evicted"] == 1
    assert sorted(voxel_map.voxels().keys[:, 0].tolist()) == [40, 100]
    # without an origin, the centre is the mean of the scan's points: (40.1, 0.1, 0.1)
    stats = voxel_map.integrate(np.array([[35.1, 0.1, 0.1], [45.1, 0.1, 0.1]], np.float32), np.array([-1, -1]),
                                stamp_ns=3)
    assert stats["voxels_evicted"] == 2 and len(voxel_map) == 0


def test_bytes_per_voxel_at_a_realistic_fill(backend):
    # 32 classes, built scan by scan as a map grows; the target is <= 64 bytes a voxel at every
    # fill (checked after each scan: the hash table's share swings between two doublings).
    voxel_map = SemanticVoxelMap(32, 0.2, backend=backend)
    rng = np.random.default_rng(1)
    for scan in range(10):
        index = np.arange(scan * 20_000, (scan + 1) * 20_000)
        points = np.stack([index % 500, index // 500, np.zeros_like(index)], axis=1) * 0.2 + 0.1
        voxel_map.integrate(points.astype(np.float32), rng.integers(0, 32, index.size), stamp_ns=scan)
        assert voxel_map.bytes_per_voxel() <= 64
    assert len(voxel_map) == 200_000
    floor_bytes = 8 + 32 + 2 + 2 + 8  # key, log-probs, occupancy, observations, stamp: what a voxel must hold
    assert floor_bytes <= voxel_map.bytes_per_voxel() <= 64
    assert voxel_map.memory_bytes() == pytest.approx(voxel_map.bytes_per_voxel() * len(voxel_map))


def _random_scan(rng: np.random.Generator, num_classes: int, extent: float = 3.0):
    n = int(rng.integers(0, 400))
    points = rng.uniform(-extent, extent, (n, 3)).astype(np.float32)
    points[rng.random(n) < 0.05] = np.nan
    labels = rng.integers(-1, num_classes + 1, n)
    confidence = rng.uniform(0.0, 1.0, n).astype(np.float32) if rng.random() < 0.7 else None
    # an origin on the voxel grid puts many voxel centres exactly on range-image bin edges (diagonals)
    origin = [None, np.zeros(3), rng.uniform(-1, 1, 3)][int(rng.integers(3))]
    return points, labels, confidence, origin


def _assert_same(a: VoxelArrays, b: VoxelArrays, steps: int = 0) -> None:
    np.testing.assert_array_equal(a.keys, b.keys)
    np.testing.assert_array_equal(a.observations, b.observations)
    np.testing.assert_array_equal(a.last_seen_ns, b.last_seen_ns)
    np.testing.assert_array_equal(a.occupancy, b.occupancy)
    if steps:
        assert np.all(np.abs(a.log_probs - b.log_probs) <= steps * _step() * (1 + 1e-5))
    else:
        np.testing.assert_array_equal(a.log_probs, b.log_probs)


def _build(backend: str, scans, **params) -> SemanticVoxelMap:
    voxel_map = SemanticVoxelMap(4, 0.2, backend=backend, **params)
    for stamp, (points, labels, confidence, origin) in enumerate(scans):
        voxel_map.integrate(points, labels, confidence, stamp_ns=stamp, origin=origin)
    return voxel_map


def test_from_voxels_round_trip(backend):
    rng = np.random.default_rng(3)
    scans = [_random_scan(rng, 4) for _ in range(6)]
    voxel_map = _build(backend, scans, miss_log_odds=-1.5)
    arrays = voxel_map.voxels()
    assert len(arrays) > 100
    rebuilt = SemanticVoxelMap.from_voxels(arrays, miss_log_odds=-1.5, backend=backend)
    _assert_same(rebuilt.voxels(), arrays)
    # and the rebuilt map carries on exactly like the original
    more = _random_scan(rng, 4)
    voxel_map.integrate(more[0], more[1], more[2], stamp_ns=99, origin=more[3])
    rebuilt.integrate(more[0], more[1], more[2], stamp_ns=99, origin=more[3])
    _assert_same(rebuilt.voxels(), voxel_map.voxels())
    other = "torch" if backend == "numba" else "numba"
    _assert_same(SemanticVoxelMap.from_voxels(arrays, backend=other).voxels(), arrays)


def test_from_voxels_rejects_bad_arrays():
    good = SemanticVoxelMap(3, 0.2)
    good.integrate(np.array([[0.1, 0.1, 0.1], [1.1, 0.1, 0.1]], np.float32), np.array([0, 1]), stamp_ns=1)
    arrays = good.voxels()
    duplicate = VoxelArrays(0.2, np.repeat(arrays.keys[:1], 2, axis=0), arrays.log_probs, arrays.observations,
                            arrays.last_seen_ns, arrays.occupancy)
    with pytest.raises(MappingError, match="duplicate"):
        SemanticVoxelMap.from_voxels(duplicate)
    short = VoxelArrays(0.2, arrays.keys, arrays.log_probs, arrays.observations[:1], arrays.last_seen_ns,
                        arrays.occupancy)
    with pytest.raises(MappingError, match="observations"):
        SemanticVoxelMap.from_voxels(short)
    with pytest.raises(MappingError, match="num_classes"):
        SemanticVoxelMap.from_voxels(arrays, num_classes=5)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), scans=st.integers(1, 5), max_voxels=st.sampled_from([2_000_000, 300]),
       radius=st.sampled_from([None, 2.5]), miss=st.sampled_from([-0.5, -2.0]))
def test_torch_backend_equals_numba(seed, scans, max_voxels, radius, miss):
    rng = np.random.default_rng(seed)
    sequence = [_random_scan(rng, 4) for _ in range(scans)]
    params = {"max_voxels": max_voxels, "radius": radius, "miss_log_odds": miss, "azimuth_bins": 256,
              "elevation_step_deg": 2.0}
    numba_map, torch_map = _build("numba", sequence, **params), _build("torch", sequence, **params)
    # exp and log differ in the last bit between libm and torch: a value on a rounding edge may land a step apart
    _assert_same(torch_map.voxels(), numba_map.voxels(), steps=1)


def _street_scan(x0: float, rng: np.random.Generator, beams: int = 64, columns: int = 1024):
    """A LiDAR-like scan from (x0, 0, 0): ground at z = -2, facades at y = +-8, within 60 m; labels by surface."""
    elevation = np.radians(np.linspace(15.0, -25.0, beams))[:, None]
    azimuth = (2 * np.pi * np.arange(columns) / columns)[None, :]
    d = np.stack(np.broadcast_arrays(np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth),
                                     np.sin(elevation) * np.ones_like(azimuth)), axis=-1)
    with np.errstate(divide="ignore"):
        ground = np.where(d[..., 2] < 0, -2.0 / d[..., 2], np.inf)
        facade = np.where(d[..., 1] != 0, 8.0 / np.abs(d[..., 1]), np.inf)
    t = np.minimum(ground, facade) * (1 + rng.normal(0, 0.002, ground.shape))
    labels = np.where(ground <= facade, 0, 1)
    t[t > 60] = np.nan
    points = d * t[..., None] + np.array([x0, 0.0, 0.0])
    return points.reshape(-1, 3).astype(np.float32), labels.reshape(-1), np.array([x0, 0.0, 0.0])


def test_backends_agree_on_a_street_scene():
    # a moving sensor: voxel centres minus the origin fall exactly on range-image bin edges (diagonals) now
    # and then, so both backends must compute them alike, in float64 (torch once made them float32)
    rng = np.random.default_rng(5)
    maps = [SemanticVoxelMap(3, 0.2, backend=backend, radius=40.0) for backend in ("numba", "torch")]
    for scan in range(8):
        points, labels, origin = _street_scan(1.5 * scan, rng)
        for voxel_map in maps:
            voxel_map.integrate(points, labels, stamp_ns=scan, origin=origin)
    assert len(maps[0]) > 5000
    _assert_same(maps[1].voxels(), maps[0].voxels(), steps=1)


def test_torch_cuda_equals_numba():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("CUDA is not available")
    rng = np.random.default_rng(11)
    sequence = [_random_scan(rng, 4) for _ in range(5)]
    numba_map = _build("numba", sequence)
    cuda_map = SemanticVoxelMap(4, 0.2, backend="torch", device="cuda")
    for stamp, (points, labels, confidence, origin) in enumerate(sequence):
        cuda_map.integrate(points, labels, confidence, stamp_ns=stamp, origin=origin)
    _assert_same(cuda_map.voxels(), numba_map.voxels(), steps=1)


@pytest.mark.parametrize("kwargs, match", [
    ({"num_classes": 1}, "num_classes"),
    ({"num_classes": 256}, "num_classes"),
    ({"voxel_size": 0.01}, "voxel_size"),
    ({"voxel_size": 2.5}, "voxel_size"),
    ({"voxel_size": 10**400}, "voxel_size 1000.* is not a number"),  # beyond float's range (e.g. from a map file)
    ({"log_floor": -1.0}, "log_floor"),
    ({"log_floor": float("nan")}, "log_floor"),
    ({"occupancy_limits": (1.0, 3.5)}, "occupancy_limits"),
    ({"hit_log_odds": -0.2}, "hit_log_odds"),
    ({"miss_log_odds": 0.2}, "miss_log_odds"),
    ({"remove_below": -3.0}, "remove_below"),
    ({"max_voxels": 0}, "max_voxels"),
    ({"radius": -1.0}, "radius"),
    ({"backend": "cupy"}, "backend"),
    ({"backend": "numba", "device": "cuda"}, "device"),
    ({"backend": "torch", "device": "tpu"}, "device"),
])
def test_bad_parameters_raise(kwargs, match):
    arguments = {"num_classes": 5, **kwargs}
    with pytest.raises(MappingError, match=match):
        SemanticVoxelMap(**arguments)


def test_bad_input_raises(backend):
    voxel_map = SemanticVoxelMap(3, 0.2, backend=backend)
    points, labels = np.zeros((4, 3), np.float32), np.zeros(4, np.int64)
    with pytest.raises(MappingError, match="points"):
        voxel_map.integrate(np.zeros((4, 2)), labels, stamp_ns=0)
    with pytest.raises(MappingError, match="labels"):
        voxel_map.integrate(points, labels[:3], stamp_ns=0)
    with pytest.raises(MappingError, match="labels"):
        voxel_map.integrate(points, labels.astype(float), stamp_ns=0)
    with pytest.raises(MappingError, match="confidence"):
        voxel_map.integrate(points, labels, np.ones(5), stamp_ns=0)
    with pytest.raises(MappingError, match="stamp_ns"):
        voxel_map.integrate(points, labels, stamp_ns=1.5)
    with pytest.raises(MappingError, match="origin"):
        voxel_map.integrate(points, labels, stamp_ns=0, origin=[0, np.nan, 0])
    far = np.array([[0.0, 0.0, 0.0], [3e5, 0.0, 0.0]], np.float32)  # 2^20 voxels of 0.2 m is 209.7 km
    stats = voxel_map.integrate(far, np.array([0, 0]), stamp_ns=0)
    assert stats["points_out_of_reach"] == 1  # it costs itself, not the scan: the other point is fused
    assert voxel_map.voxels().keys.tolist() == [[0, 0, 0]]
    voxel_map = SemanticVoxelMap(3, 0.2, backend=backend)
    edge = np.array([[-(2**20) * 0.2 + 0.1, (2**20 - 1) * 0.2 + 0.1, 0.0]], np.float32)
    voxel_map.integrate(edge, np.array([1]), stamp_ns=1)
    assert voxel_map.voxels().keys.tolist() == [[-(2**20), 2**20 - 1, 0]]


def test_max_voxels_holds_inside_one_integrate(backend):
    # one scan of 400 k points in 200 k distinct voxels into a map capped at 20 k: the map never grows past
    # the cap (its storage afterwards is no more than that of a map loaded with its 20 k voxels, and nothing
    # shrinks it in between: no voxel is removed after the insert), and it keeps the 20 k voxels nearest the
    # origin, ties by smaller key
    cap, C = 20_000, 3
    rng = np.random.default_rng(7)
    cells = rng.choice(100 * 100 * 100, 200_000, replace=False)
    ijk = np.stack([cells % 100, (cells // 100) % 100, cells // 10_000], axis=1) - 50
    points = (np.repeat(ijk, 2, axis=0) + rng.uniform(0.05, 0.95, (400_000, 3))) * 0.2
    old = SemanticVoxelMap(C, 0.2, max_voxels=cap, backend=backend)
    old.integrate(np.array([[500.1, 0.1, 0.1]]), np.array([0]), stamp_ns=0)  # an old voxel: evicted first
    stats = old.integrate(points, rng.integers(0, C, 400_000), stamp_ns=1, origin=np.zeros(3))
    assert len(old) == cap and stats["voxels_evicted"] == 200_000 + 1 - cap
    assert stats["voxels_new"] == cap and stats["labelled"] == 2 * cap
    assert old.memory_bytes() <= SemanticVoxelMap.from_voxels(old.voxels(), backend=backend).memory_bytes()
    d2 = (((ijk + 0.5) * 0.2) ** 2).sum(axis=1)
    order = np.lexsort((ijk[:, 2], ijk[:, 1], ijk[:, 0], d2))
    expected = ijk[order[:cap]]
    np.testing.assert_array_equal(old.voxels().keys, expected[np.lexsort(expected.T[::-1])])


def test_memory_is_given_back_when_the_map_shrinks(backend):
    voxel_map = SemanticVoxelMap(32, 0.2, radius=30.0, backend=backend)
    x, y = np.meshgrid(np.arange(200), np.arange(200))
    points = np.stack([x.ravel() * 0.2 + 0.1, y.ravel() * 0.2 + 0.1, np.full(x.size, 0.1)], axis=1)
    voxel_map.integrate(points, np.zeros(len(points), np.int64), stamp_ns=1, origin=np.array([20.0, 20.0, 0.0]))
    assert len(voxel_map) == 40_000
    full = voxel_map.memory_bytes()
    # the sensor drives away: radius eviction leaves 10 voxels, and the storage follows them down
    away = np.array([100.0, 100.0, 0.0])
    voxel_map.integrate(points[:10] + away, np.zeros(10, np.int64), stamp_ns=2, origin=away)
    assert len(voxel_map) == 10
    assert voxel_map.memory_bytes() < full / 8  # the floor: the storage of an empty map


def test_dynamic_classes_stay_apart_and_decay(backend):
    # class 2 is dynamic: a person (2) stands in the voxel above the road (1) for three scans at 10 Hz
    voxel_map = SemanticVoxelMap(3, 0.2, dynamic_classes=(2,), dynamic_decay_s=0.25, backend=backend)
    road, person = np.array([[1.1, 0.1, 0.1]]), np.array([[1.1, 0.1, 0.3], [1.1, 0.1, 0.1]])
    for scan in range(3):
        stats = voxel_map.integrate(np.vstack([road, person]), np.array([1, 2, 2]), stamp_ns=scan * 100_000_000)
        assert stats["dynamic_voxels"] == 2 and stats["labelled"] == 1
    # the static map has the road only, never overwritten by the person's point in the same voxel
    static = voxel_map.voxels()
    assert static.keys.tolist() == [[5, 0, 0]] and static.labels.tolist() == [1]
    dynamic = voxel_map.dynamic_voxels()
    assert dynamic.keys.tolist() == [[5, 0, 0], [5, 0, 1]] and dynamic.labels.tolist() == [2, 2]
    assert dynamic.last_seen_ns.tolist() == [200_000_000] * 2
    # unseen from then on: still there 0.2 s later (<= 0.25 s), gone 0.3 s later
    voxel_map.integrate(road, np.array([1]), stamp_ns=400_000_000)
    assert len(voxel_map.dynamic_voxels()) == 2
    voxel_map.integrate(road, np.array([1]), stamp_ns=500_000_000)
    assert len(voxel_map.dynamic_voxels()) == 0 and len(voxel_map) == 1
    # the parameters rebuild the map, dynamic settings included
    again = SemanticVoxelMap.from_voxels(voxel_map.voxels(), **voxel_map.parameters(), backend=backend)
    assert again.parameters() == voxel_map.parameters()
    with pytest.raises(MappingError, match="dynamic_classes .* out of range; accepted: class ids 0..2"):
        SemanticVoxelMap(3, 0.2, dynamic_classes=(3,), backend=backend)
    with pytest.raises(MappingError, match="dynamic_decay_s 0 is not usable; accepted: seconds in \\(0, 3600\\]"):
        SemanticVoxelMap(3, 0.2, dynamic_decay_s=0, backend=backend)
