"""Model input encodings: the event voxel grid (hand-computed cases and invariants) and thermal counts."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seg_perception.io.encoding import EventWindow, encode_thermal, events_to_voxel_grid
from seg_perception.io.events import EVENT_DTYPE


def test_thermal_encoding_known_temperatures():
    # 20 C is the centre (0), 0 C and 40 C are -1 and +1; counts are centikelvin.
    counts = np.array([29315, 27315, 31315], np.uint16)
    np.testing.assert_allclose(encode_thermal(counts), [0.0, -1.0, 1.0], atol=1e-4)
    # A camera with 10 counts per kelvin: 3131.5 counts is 40 C.
    np.testing.assert_allclose(encode_thermal(np.array([3131.5]), counts_per_kelvin=10.0), [1.0], atol=1e-4)
    assert encode_thermal(counts).dtype == np.float32


def test_event_window_grid_is_the_normalised_voxel_grid():
    events = _events([(1, 1, 1, 10), (2, 1, 0, 60), (2, 1, 0, 90)])
    window = EventWindow(events, 4, 3, 0, 100)
    np.testing.assert_array_equal(window.voxel_grid(2), events_to_voxel_grid(events, 4, 3, 2, 0, 100, normalize=True))
    assert window.voxel_grid(3, out_size=(1, 2)).shape == (3, 1, 2)


def _events(rows):
    out = np.zeros(len(rows), dtype=EVENT_DTYPE)
    for i, (x, y, p, t) in enumerate(rows):
        out[i] = (x, y, p, t)
    return out


def test_voxel_event_at_a_bin_centre_goes_to_that_bin_only():
    # 5 bins over [0, 4000] ns: centres at 0, 1000, 2000, 3000, 4000.
    for t, b in ((0, 0), (2000, 2), (4000, 4)):
        grid = events_to_voxel_grid(_events([(3, 1, 1, t)]), 6, 4, 5, 0, 4000)
        expected = np.zeros((5, 4, 6), np.float32)
        expected[b, 1, 3] = 1.0
        np.testing.assert_array_equal(grid, expected)


def test_voxel_event_between_centres_is_split_linearly():
    grid = events_to_voxel_grid(_events([(2, 0, 1, 1250), (5, 3, 0, 3900)]), 6, 4, 5, 0, 4000)
    expected = np.zeros((5, 4, 6), np.float32)
    expected[1, 0, 2], expected[2, 0, 2] = 0.75, 0.25
    expected[3, 3, 5], expected[4, 3, 5] = -0.1, -0.9
    np.testing.assert_allclose(grid, expected, atol=1e-7)


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 300), bins=st.integers(1, 7))
def test_voxel_total_absolute_weight_equals_event_count(seed, n, bins):
    rng = np.random.default_rng(seed)
    cells = rng.choice(12 * 9, size=min(n, 12 * 9), replace=False)  # distinct pixels: no cancellation
    events = np.zeros(cells.size, dtype=EVENT_DTYPE)
    events["x"], events["y"] = cells % 12, cells // 12
    events["p"] = rng.integers(0, 2, cells.size)
    events["t"] = rng.integers(100, 10_100, cells.size, endpoint=True)
    grid = events_to_voxel_grid(events, 12, 9, bins, 100, 10_100)
    assert grid.shape == (bins, 9, 12)
    assert np.isclose(np.abs(grid).sum(), cells.size, rtol=1e-6)
    np.testing.assert_allclose(grid.sum(axis=0)[events["y"], events["x"]], events["p"] * 2.0 - 1.0, atol=1e-6)


def test_voxel_empty_input_outside_window_and_single_bin():
    empty = np.empty(0, dtype=EVENT_DTYPE)
    np.testing.assert_array_equal(events_to_voxel_grid(empty, 8, 6, 3, 0, 100), np.zeros((3, 6, 8), np.float32))
    np.testing.assert_array_equal(events_to_voxel_grid(empty, 8, 6, 3, 0, 100, normalize=True), 0)
    outside = _events([(1, 1, 1, -1), (2, 2, 0, 101)])
    np.testing.assert_array_equal(events_to_voxel_grid(outside, 8, 6, 3, 0, 100), 0)
    one_bin = events_to_voxel_grid(_events([(1, 1, 1, 30), (1, 1, 1, 100), (2, 1, 0, 0)]), 8, 6, 1, 0, 100)
    expected = np.zeros((1, 6, 8), np.float32)
    expected[0, 1, 1], expected[0, 1, 2] = 2.0, -1.0
    np.testing.assert_array_equal(one_bin, expected)


def test_voxel_downscaling_bins_integer_blocks():
    # 10x6 sensor to 5x3: 2x2 blocks; x=9,y=5 → (4, 2); x=0 and x=1 of row 0..1 share cell (0, 0).
    events = _events([(9, 5, 1, 0), (0, 0, 1, 0), (1, 1, 1, 0), (4, 2, 0, 0)])
    grid = events_to_voxel_grid(events, 10, 6, 2, 0, 10, out_size=(3, 5))
    expected = np.zeros((2, 3, 5), np.float32)
    expected[0, 2, 4], expected[0, 0, 0], expected[0, 1, 2] = 1.0, 2.0, -1.0
    np.testing.assert_array_equal(grid, expected)


def test_voxel_normalisation_divides_by_robust_scale():
    rng = np.random.default_rng(3)
    events = np.zeros(2000, dtype=EVENT_DTYPE)
    events["x"], events["y"] = rng.integers(0, 16, 2000), rng.integers(0, 12, 2000)
    events["p"], events["t"] = rng.integers(0, 2, 2000), rng.integers(0, 1000, 2000)
    raw = events_to_voxel_grid(events, 16, 12, 4, 0, 1000)
    scaled = events_to_voxel_grid(events, 16, 12, 4, 0, 1000, normalize=True)
    scale = np.percentile(np.abs(raw[raw != 0]).astype(np.float64), 98)
    np.testing.assert_allclose(scaled, raw / scale, rtol=1e-5, atol=1e-6)
    assert np.array_equal(scaled == 0, raw == 0) and np.array_equal(np.sign(scaled), np.sign(raw))


def test_voxel_rejects_bad_arguments():
    with pytest.raises(ValueError, match="bins >= 1"):
        events_to_voxel_grid(np.empty(0, dtype=EVENT_DTYPE), 4, 4, 0, 0, 10)
    with pytest.raises(ValueError, match="t_end_ns > t_start_ns"):
        events_to_voxel_grid(np.empty(0, dtype=EVENT_DTYPE), 4, 4, 2, 10, 10)
    with pytest.raises(ValueError, match="do not fit the 4x4 sensor"):
        events_to_voxel_grid(_events([(4, 0, 1, 5)]), 4, 4, 2, 0, 10)
