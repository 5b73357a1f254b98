"""Event simulator and voxel grid: hand-computed crossings, a scalar reference pixel model, noise statistics."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seg_perception.io.events import EVENT_DTYPE
from seg_perception.sim.events import EventSensorConfig, EventSimulator, log_intensity, suggest_substeps

MS = 1_000_000
T0 = 1_000_000_000
IDEAL = EventSensorConfig(threshold_sigma=0.0, refractory_ns=0, noise_rate_hz=0.0, leak_rate_hz=0.0)


def _ramp(width, height, x, y, values, base=0.0):
    """Frames (S, H, W) at `base`, with pixel (x, y) taking `values` in turn."""
    frames = np.full((len(values), height, width), base, dtype=np.float32)
    frames[:, y, x] = base + np.asarray(values, dtype=np.float64)
    return frames


def _reference_model(frames, times, c_on, c_off, refractory):
    """The documented pixel model, one pixel and one crossing at a time in plain Python floats."""
    events = []
    _, height, width = frames.shape
    for y in range(height):
        for x in range(width):
            log0 = float(frames[0, y, x])
            ref, last = log0, None
            for i in range(1, len(times)):
                log1, t0, t1 = float(frames[i, y, x]), int(times[i - 1]), int(times[i])
                crossings = []
                while log1 - ref >= c_on[y, x]:
                    ref += c_on[y, x]
                    crossings.append((ref, 1))
                while ref - log1 >= c_off[y, x]:
                    ref -= c_off[y, x]
                    crossings.append((ref, 0))
                for level, polarity in crossings:
                    t = t0 + round((level - log0) / (log1 - log0) * (t1 - t0))
                    if last is None or t - last >= refractory:
                        events.append((x, y, polarity, t))
                        last = t
                log0 = log1
    return events


# --------------------------------------------------------------------------------------------
# crossings


@pytest.mark.parametrize("substeps", [1, 5])
@pytest.mark.parametrize(("sign", "polarity"), [(1.0, 1), (-1.0, 0)])
def test_ramp_of_three_and_a_half_thresholds_gives_three_events(substeps, sign, polarity):
    # ON threshold 0.2, OFF threshold 0.25: a ramp of 3.5 thresholds over 7 ms crosses at 2, 4, 6 ms.
    config = EventSensorConfig(threshold_on=0.2, threshold_off=0.25, threshold_sigma=0.0, refractory_ns=0,
                               noise_rate_hz=0.0)
    threshold = 0.2 if sign > 0 else 0.25
    sim = EventSimulator(3, 2, config, seed=4)
    sim.reset(np.full((2, 3), -1.0, np.float32), T0)
    fractions = np.arange(1, substeps + 1) / substeps
    events = sim.step(_ramp(3, 2, 1, 0, sign * 3.5 * threshold * fractions, base=-1.0),
                      T0 + np.rint(7 * MS * fractions).astype(np.int64))
    assert events.dtype == EVENT_DTYPE
    assert events["x"].tolist() == [1, 1, 1] and events["y"].tolist() == [0, 0, 0]
    assert events["p"].tolist() == [polarity] * 3
    # Samples that do not fall on a crossing carry float32 rounding of the log values: 1 ns slack.
    np.testing.assert_allclose(events["t"] - T0, [2 * MS, 4 * MS, 6 * MS], rtol=0, atol=0 if substeps == 1 else 1)
    assert sim.t_ns == T0 + 7 * MS


def test_constant_frames_without_noise_give_no_events():
    sim = EventSimulator(32, 24, EventSensorConfig(noise_rate_hz=0.0, leak_rate_hz=0.0), seed=1)
    frame = log_intensity(np.random.default_rng(0).random((24, 32)))
    sim.reset(frame, 0)
    events = sim.step(np.repeat(frame[None], 6, axis=0), np.arange(1, 7) * 5 * MS)
    assert events.size == 0 and events.dtype == EVENT_DTYPE


def test_shot_noise_count_is_poisson_with_rate_times_duration_times_pixels():
    width, height, rate = 40, 30, 5.0
    sim = EventSimulator(width, height, EventSensorConfig(noise_rate_hz=rate), seed=2)
    frame = np.zeros((height, width), np.float32)
    sim.reset(frame, 0)
    frames = np.zeros((4, height, width), np.float32)
    first = sim.step(frames, np.arange(1, 5) * 250 * MS)
    second = sim.step(frames, 1000 * MS + np.arange(1, 5) * 250 * MS)
    events = np.concatenate((first, second))
    expected = rate * 2.0 * width * height  # 12000
    assert abs(events.size - expected) < 5 * np.sqrt(expected)
    assert abs(events["p"].mean() - 0.5) < 5 * 0.5 / np.sqrt(events.size)
    assert np.all(np.diff(first["t"]) >= 0) and np.all(np.diff(second["t"]) >= 0)
    assert first["t"].min() > 0 and first["t"].max() <= 1000 * MS < second["t"].min()
    assert second["t"].max() <= 2000 * MS
    # Uniform in time: each half-second holds a quarter of the events.
    quarters = np.bincount(events["t"] // (500 * MS + 1), minlength=4)
    assert np.all(np.abs(quarters - events.size / 4) < 5 * np.sqrt(events.size / 4))


def test_refractory_period_keeps_hand_computed_events_and_reference_keeps_tracking():
    # Threshold 0.2, slope 0.1 per ms: crossings every 2 ms (2, 4, ..., 20 ms). Refractory 3 ms keeps
    # 2, 6, 10 | 14, 18: the filter spans render intervals and step calls, and since the reference
    # moves through the dropped crossings, the later crossings stay on the 2 ms grid.
    config = EventSensorConfig(threshold_sigma=0.0, refractory_ns=3 * MS, noise_rate_hz=0.0)
    sim = EventSimulator(2, 2, config, seed=0)
    sim.reset(np.zeros((2, 2), np.float32), T0)
    first = sim.step(_ramp(2, 2, 0, 1, [0.55, 1.1]), T0 + np.array([5_500_000, 11 * MS]))
    second = sim.step(_ramp(2, 2, 0, 1, [1.65, 2.1]), T0 + np.array([16_500_000, 21 * MS]))
    assert (first["t"] - T0).tolist() == [2 * MS, 6 * MS, 10 * MS]
    assert (second["t"] - T0).tolist() == [14 * MS, 18 * MS]
    assert set(first["p"]) == set(second["p"]) == {1}
    assert set(zip(first["x"], first["y"])) == {(0, 1)}


def test_refractory_equal_to_crossing_spacing_keeps_every_crossing():
    config = EventSensorConfig(threshold_sigma=0.0, refractory_ns=2 * MS, noise_rate_hz=0.0)
    sim = EventSimulator(1, 1, config, seed=0)
    sim.reset(np.zeros((1, 1), np.float32), 0)
    events = sim.step(_ramp(1, 1, 0, 0, [1.1]), np.array([11 * MS]))
    assert events["t"].tolist() == [2 * MS, 4 * MS, 6 * MS, 8 * MS, 10 * MS]


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), width=st.integers(1, 4), height=st.integers(1, 3),
       samples=st.integers(2, 6), refractory_ms=st.sampled_from([0.0, 0.5, 1.5, 4.0]),
       sigma=st.sampled_from([0.0, 0.05]))
def test_matches_scalar_reference_model(seed, width, height, samples, refractory_ms, sigma):
    rng = np.random.default_rng(seed)
    frames = rng.uniform(-2.0, 1.0, (samples, height, width)).astype(np.float32)
    times = np.cumsum(rng.integers(1 * MS, 5 * MS, samples)).astype(np.int64)
    config = EventSensorConfig(threshold_on=0.15, threshold_off=0.2, threshold_sigma=sigma,
                               refractory_ns=int(refractory_ms * MS), noise_rate_hz=0.0)
    sim = EventSimulator(width, height, config, seed=seed)
    sim.reset(frames[0], int(times[0]))
    split = int(rng.integers(1, samples))  # state must carry across the two calls
    events = np.concatenate((sim.step(frames[1:split], times[1:split]), sim.step(frames[split:], times[split:])))
    c_on, c_off = sim.thresholds
    expected = sorted(_reference_model(frames, times, c_on, c_off, config.refractory_ns))
    got = sorted(zip(events["x"].tolist(), events["y"].tolist(), events["p"].tolist(), events["t"].tolist()))
    assert [e[:3] for e in got] == [e[:3] for e in expected]
    np.testing.assert_allclose([e[3] for e in got], [e[3] for e in expected], rtol=0, atol=1)
    assert np.all(np.diff(events["t"]) >= 0)


def test_events_concentrate_where_the_moving_bar_changes_the_log_intensity():
    width, height, substeps = 64, 48, 24
    config = EventSensorConfig(noise_rate_hz=0.0)
    columns = np.arange(width) + 0.5

    def render(left):  # a 6 px bright bar with anti-aliased edges on a dark background
        coverage = np.clip(np.minimum(columns - left, left + 6 - columns) + 0.5, 0, 1)
        return log_intensity(np.broadcast_to(0.05 + 0.85 * coverage, (height, width)), config)

    lefts = 10 + 1.3 * np.arange(substeps + 1)
    frames = np.stack([render(left) for left in lefts])
    times = np.arange(substeps + 1, dtype=np.int64) * 2 * MS
    sim = EventSimulator(width, height, config, seed=3)
    sim.reset(frames[0], 0)
    events = sim.step(frames[1:], times[1:])
    assert events.size > 1000
    interval = np.searchsorted(times, events["t"], side="left") - 1
    change = np.diff(frames, axis=0)[interval, events["y"], events["x"]]
    assert np.mean(np.abs(change) > config.threshold_on) >= 0.95
    assert np.mean((change > 0) == (events["p"] == 1)) >= 0.95


def test_split_steps_give_the_same_events_as_one_step():
    rng = np.random.default_rng(5)
    height, width = 20, 30
    start, slope = rng.uniform(-3, 0, (height, width)), rng.uniform(-0.4, 0.4, (height, width))
    times = np.arange(1, 9, dtype=np.int64) * 3 * MS
    frames = (start + slope * np.arange(1, 9)[:, None, None]).astype(np.float32)
    config = EventSensorConfig(threshold_sigma=0.03, refractory_ns=4 * MS, noise_rate_hz=0.0)
    whole, parts = EventSimulator(width, height, config, seed=9), EventSimulator(width, height, config, seed=9)
    whole.reset(start.astype(np.float32), 0)
    parts.reset(start.astype(np.float32), 0)
    expected = whole.step(frames, times)
    got = np.concatenate((parts.step(frames[:3], times[:3]), parts.step(frames[3:], times[3:])))
    assert expected.size > 100
    np.testing.assert_array_equal(got, expected)


def test_threshold_mismatch_map_follows_seed_and_sets_per_pixel_counts():
    config = EventSensorConfig(threshold_on=0.2, threshold_sigma=0.03, refractory_ns=0, noise_rate_hz=0.0)
    sim = EventSimulator(100, 80, config, seed=11)
    c_on, c_off = sim.thresholds
    assert abs(c_on.mean() - 0.2) < 0.002 and abs(c_on.std() - 0.03) < 0.002
    assert not np.array_equal(c_on, c_off)
    np.testing.assert_array_equal(EventSimulator(100, 80, config, seed=11).thresholds[0], c_on)
    assert not np.array_equal(EventSimulator(100, 80, config, seed=12).thresholds[0], c_on)
    sim.reset(np.zeros((80, 100), np.float32), 0)
    events = sim.step(np.full((1, 80, 100), 1.3, np.float32), np.array([10 * MS]))
    counts = np.bincount(events["y"].astype(np.int64) * 100 + events["x"], minlength=8000).reshape(80, 100)
    np.testing.assert_array_equal(counts, np.floor(np.float32(1.3) / c_on))


def test_leak_fires_every_static_pixel_at_the_leak_rate_with_spread_phases():
    config = EventSensorConfig(threshold_sigma=0.03, leak_rate_hz=2.0, noise_rate_hz=0.0)
    sim = EventSimulator(20, 10, config, seed=6)
    frame = np.full((10, 20), -1.0, np.float32)
    sim.reset(frame, 0)
    events = sim.step(np.repeat(frame[None], 5, axis=0), np.arange(1, 6, dtype=np.int64) * 1000 * MS)
    assert set(events["p"]) == {1}
    # A uniform phase in one 0.5 s cycle: exactly 10 events per pixel in 5 s.
    pixel = events["y"].astype(np.int64) * 20 + events["x"]
    np.testing.assert_array_equal(np.bincount(pixel, minlength=200), 10)
    first = np.full(200, np.iinfo(np.int64).max)
    np.minimum.at(first, pixel, events["t"])
    assert first.max() <= 500 * MS and first.max() - first.min() > 400 * MS


def test_reset_replays_the_same_noise():
    sim = EventSimulator(16, 16, EventSensorConfig(noise_rate_hz=50.0), seed=8)
    frames = np.zeros((2, 16, 16), np.float32)
    sim.reset(frames[0], 0)
    first = sim.step(frames, np.array([100 * MS, 200 * MS]))
    sim.reset(frames[0], 0)
    np.testing.assert_array_equal(sim.step(frames, np.array([100 * MS, 200 * MS])), first)


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="thresholds must be >= 0.01"):
        EventSensorConfig(threshold_on=0.0)
    with pytest.raises(ValueError, match="min_substeps <= max_substeps"):
        EventSensorConfig(min_substeps=4, max_substeps=2)
    sim = EventSimulator(4, 3, IDEAL)
    with pytest.raises(ValueError, match="before reset"):
        sim.step(np.zeros((1, 3, 4)), np.array([1]))
    with pytest.raises(ValueError, match=r"shape \(height, width\) = \(3, 4\)"):
        sim.reset(np.zeros((4, 3)), 0)
    sim.reset(np.zeros((3, 4)), 10)
    with pytest.raises(ValueError, match="S = len"):
        sim.step(np.zeros((2, 3, 4)), np.array([20]))
    with pytest.raises(ValueError, match="increase strictly"):
        sim.step(np.zeros((2, 3, 4)), np.array([20, 20]))
    with pytest.raises(ValueError, match="after the last render at 10 ns"):
        sim.step(np.zeros((1, 3, 4)), np.array([10]))
    assert sim.step(np.zeros((0, 3, 4)), np.zeros(0, np.int64)).size == 0


# --------------------------------------------------------------------------------------------
# substeps and log intensity


def test_suggest_substeps():
    assert suggest_substeps(0.0) == 1
    assert suggest_substeps(3.2) == 4
    assert suggest_substeps(1e6) == EventSensorConfig().max_substeps
    config = EventSensorConfig(max_px_per_substep=2.0, min_substeps=2, max_substeps=8)
    assert [suggest_substeps(f, config) for f in (0.5, 5.0, 40.0)] == [2, 3, 8]
    with pytest.raises(ValueError, match="finite number >= 0"):
        suggest_substeps(-1.0)


def test_log_intensity():
    values = np.array([0.0, 0.5, 1.0])
    out = log_intensity(values, EventSensorConfig(log_eps=0.01))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [np.log(0.01), np.log(0.51), np.log(1.01)], rtol=1e-6)


# --------------------------------------------------------------------------------------------
# voxel grid
