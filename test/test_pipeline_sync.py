"""The approximate-time synchroniser: hand-computed pairings, readiness, robustness, event windows."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seg_perception.io.encoding import EventWindow
from seg_perception.io.events import EVENT_DTYPE
from seg_perception.pipeline.sync import FrameBundle, Synchronizer, SyncError

MS = 1_000_000


def feed(sync: Synchronizer, messages: list[tuple[str, int, object]]) -> list[FrameBundle]:
    """Add (stream, stamp, payload) messages in the given order, collecting ready bundles after each."""
    out: list[FrameBundle] = []
    for stream, stamp, payload in messages:
        if stream == "rgb":
            sync.add_rgb(stamp, payload)
        elif stream == "events":
            sync.add_events(payload)  # type: ignore[arg-type]
        else:
            sync.add(stream, stamp, payload)
        out += sync.ready()
    return out


def in_stamp_order(*streams: list[tuple[str, int, object]]) -> list[tuple[str, int, object]]:
    return sorted((m for s in streams for m in s), key=lambda m: m[1])


def brute_force_partner(t: int, stamps: list[int], slop: int) -> int | None:
    """Reference pairing: the stamp with the smallest (|stamp - t|, stamp) within slop."""
    within = [s for s in stamps if abs(s - t) <= slop]
    return min(within, key=lambda s: (abs(s - t), s)) if within else None


def make_events(times: list[int] | np.ndarray) -> np.ndarray:
    events = np.zeros(len(times), EVENT_DTYPE)
    events["t"] = times
    events["x"] = np.arange(len(times)) % 7
    events["y"] = np.arange(len(times)) % 5
    events["p"] = np.arange(len(times)) % 2
    return events


def test_rgb_10hz_thermal_9hz_hand_computed_pairs() -> None:
    rgb = [("rgb", k * 100 * MS, f"rgb{k}") for k in range(10)]
    thermal = [("thermal", k * 1_000 * MS // 9, f"th{k}") for k in range(10)]  # 0, 111.1, 222.2 ... ms
    sync = Synchronizer({"thermal": 50 * MS})
    bundles = feed(sync, in_stamp_order(rgb, thermal)) + sync.flush()
    # By hand: rgb 500 ms lies 55.6 ms from thermal 444.4 and 555.6, beyond the 50 ms slop.
    expected = ["th0", "th1", "th2", "th3", "th4", None, "th5", "th6", "th7", "th8"]
    assert [b.stamp_ns for b in bundles] == [k * 100 * MS for k in range(10)]
    assert [b.thermal for b in bundles] == expected
    assert [b.rgb for b in bundles] == [f"rgb{k}" for k in range(10)]
    assert bundles[1].offsets_ns == {"thermal": 111_111_111 - 100_000_000}
    assert "thermal" not in bundles[5].offsets_ns
    assert sync.stats["unmatched_thermal"] == 1 and sync.stats["emitted"] == 10


def test_pairings_match_a_brute_force_reference_on_jittery_streams() -> None:
    rng = np.random.default_rng(3)
    rgb_t = sorted({int(v) for v in np.arange(50) * 100 * MS + rng.integers(-5 * MS, 5 * MS, 50)})
    th_t = sorted({int(v) for v in np.arange(45) * 111 * MS + rng.integers(-20 * MS, 20 * MS, 45)})
    li_t = sorted({int(v) for v in np.arange(25) * 200 * MS + rng.integers(0, 3 * MS, 25)})
    slops = {"thermal": 40 * MS, "lidar": 60 * MS}
    sync = Synchronizer(slops)
    messages = in_stamp_order([("rgb", t, t) for t in rgb_t], [("thermal", t, t) for t in th_t],
                              [("lidar", t, t) for t in li_t])
    bundles = feed(sync, messages) + sync.flush()
    assert [b.stamp_ns for b in bundles] == rgb_t
    for b in bundles:
        assert b.thermal == brute_force_partner(b.stamp_ns, th_t, slops["thermal"])
        assert b.lidar == brute_force_partner(b.stamp_ns, li_t, slops["lidar"])


def test_partner_beyond_slop_is_none_and_extras_carry_other_streams() -> None:
    sync = Synchronizer({"lidar": 10 * MS, "labels": 0})
    feed(sync, [("lidar", 85 * MS, "far"), ("labels", 100 * MS, "gt"), ("rgb", 100 * MS, "img")])
    sync.add("lidar", 130 * MS, "after")
    [bundle] = sync.ready()
    assert bundle.lidar is None
    assert bundle.extras == {"labels": "gt"}
    assert bundle.offsets_ns == {"labels": 0}
    assert sync.stats["unmatched_lidar"] == 1 and sync.stats["unmatched_labels"] == 0


def test_tie_goes_to_the_earlier_partner() -> None:
    sync = Synchronizer({"thermal": 20 * MS})
    bundles = feed(sync, [("thermal", 90 * MS, "early"), ("rgb", 100 * MS, "img"), ("thermal", 110 * MS, "late")])
    assert [b.thermal for b in bundles] == ["early"]
    assert bundles[0].offsets_ns == {"thermal": -10 * MS}


def test_tie_survives_reordering_within_max_delay() -> None:
    sync = Synchronizer({"thermal": 20 * MS}, max_delay_ns=30 * MS)
    bundles = feed(sync, [("rgb", 100 * MS, "img"), ("thermal", 110 * MS, "late"), ("thermal", 90 * MS, "early"),
                          ("thermal", 140 * MS, "next")])
    assert bundles == []  # an RGB frame before 100 ms could still come
    sync.add_rgb(130 * MS, "img2")
    assert [b.thermal for b in sync.ready()] == ["early"]


def test_a_bundle_waits_until_no_closer_partner_can_arrive() -> None:
    sync = Synchronizer({"thermal": 50 * MS})
    sync.add("thermal", 90 * MS, "a")
    sync.add_rgb(100 * MS, "img")
    assert sync.ready() == []  # a message in (90, 110) ms could still come
    sync.add("thermal", 109 * MS, "b")
    # b is 9 ms away and the stream has reached 109 ms = t + 9 ms: nothing closer can come.
    assert [b.thermal for b in sync.ready()] == ["b"]


def test_an_exact_match_is_emitted_at_once() -> None:
    sync = Synchronizer({"thermal": 50 * MS, "labels": 0})
    feed(sync, [("thermal", 100 * MS, "th"), ("labels", 100 * MS, "gt")])
    sync.add_rgb(100 * MS, "img")
    [bundle] = sync.ready()
    assert bundle.thermal == "th" and bundle.extras == {"labels": "gt"}


def test_nothing_within_slop_waits_until_the_stream_passes_t_plus_slop() -> None:
    sync = Synchronizer({"lidar": 30 * MS})
    assert feed(sync, [("rgb", 100 * MS, "img"), ("lidar", 60 * MS, "far")]) == []  # one in [70, 130] ms may come
    sync.add("lidar", 130 * MS + 1, "just beyond")
    [bundle] = sync.ready()
    assert bundle.lidar is None
    edge = Synchronizer({"lidar": 30 * MS})
    [bundle] = feed(edge, [("rgb", 100 * MS, "img"), ("lidar", 60 * MS, "far"), ("lidar", 130 * MS, "at slop")])
    assert bundle.lidar == "at slop"  # the slop is inclusive


def test_missing_stream_is_released_by_the_wait_deadline() -> None:
    sync = Synchronizer({"lidar": 50 * MS}, wait_ns=250 * MS)
    out = feed(sync, [("rgb", k * 100 * MS, k) for k in range(3)])
    assert out == []
    sync.add_rgb(300 * MS, 3)  # the stream clock reaches 300 ms >= 0 + 250 ms
    assert [(b.stamp_ns, b.lidar) for b in sync.ready()] == [(0, None)]
    # 100 and 200 ms by the deadline; 300 ms because, silent since the first frame's wait, the stream is absent
    assert [b.stamp_ns for b in sync.ready(now_ns=500 * MS)] == [100 * MS, 200 * MS, 300 * MS]
    assert sync.flush() == []
    assert sync.stats["unmatched_lidar"] == 4


def test_out_of_order_partner_is_used_while_its_frame_is_pending() -> None:
    sync = Synchronizer({"thermal": 50 * MS})
    bundles = feed(sync, [("thermal", 130 * MS, "newer"), ("thermal", 95 * MS, "older"), ("rgb", 100 * MS, "img")])
    assert [b.thermal for b in bundles] == ["older"]
    assert sync.stats["late"] == 0


def test_partner_arriving_after_its_frames_were_emitted_is_dropped_and_counted() -> None:
    sync = Synchronizer({"thermal": 50 * MS})
    feed(sync, [("thermal", 100 * MS, "th"), ("rgb", 100 * MS, "img")])
    sync.add("thermal", 40 * MS, "too late")  # pairs only with frames <= 90 ms, and 100 ms is out
    assert sync.stats["late"] == 1 and sync.stats["late_thermal"] == 1
    sync.add("thermal", 60 * MS, "still useful")  # a frame in (100, 110] ms could pair with it
    assert sync.stats["late_thermal"] == 1
    sync.add_rgb(105 * MS, "img2")
    sync.add("thermal", 200 * MS, "far")
    # 100 ms (5 ms) beats 60 ms (45 ms) for the frame at 105 ms.
    assert [b.thermal for b in sync.ready()] == ["th"]


def test_duplicated_stamps_keep_the_first_and_are_counted() -> None:
    sync = Synchronizer({"thermal": 50 * MS})
    sync.add_rgb(100 * MS, "first")
    sync.add_rgb(100 * MS, "second")
    sync.add("thermal", 100 * MS, "th-first")
    sync.add("thermal", 100 * MS, "th-second")
    [bundle] = sync.ready()
    assert (bundle.rgb, bundle.thermal) == ("first", "th-first")
    sync.add_rgb(100 * MS, "after emission")
    assert sync.stats["duplicate_rgb"] == 2 and sync.stats["duplicate_thermal"] == 1
    assert sync.stats["duplicate"] == 3
    assert sync.flush() == []


def test_rgb_older_than_the_last_emitted_frame_is_dropped() -> None:
    sync = Synchronizer()
    feed(sync, [("rgb", 200 * MS, "b")])
    sync.add_rgb(100 * MS, "a")
    assert sync.stats["late_rgb"] == 1
    assert sync.ready() == [] and sync.flush() == []


def test_out_of_order_rgb_is_reordered_while_pending() -> None:
    sync = Synchronizer({"lidar": 50 * MS})
    feed(sync, [("rgb", 200 * MS, "b"), ("rgb", 100 * MS, "a")])
    assert [b.rgb for b in sync.flush()] == ["a", "b"]


def test_event_windows_equal_a_numpy_filter() -> None:
    rng = np.random.default_rng(0)
    window = 50 * MS
    times = np.sort(rng.integers(0, 1_000 * MS, 5000))
    frames = [100 * MS, 150 * MS, 333 * MS, 700 * MS, 950 * MS]
    # Events on the window edges and just outside them.
    times = np.sort(np.concatenate([times, [100 * MS - window, 100 * MS, 100 * MS + 1, 700 * MS - window - 1]]))
    events = make_events(times)
    sync = Synchronizer(event_sensor=(7, 5), events_window_ns=window)
    bundles = []
    cuts = np.sort(rng.choice(np.arange(1, events.size), 40, replace=False))
    pending_frames = list(frames)
    for chunk in np.split(events, cuts):
        # Each frame arrives before the chunk that passes its stamp, as from a live camera.
        while pending_frames and pending_frames[0] <= chunk["t"][-1]:
            sync.add_rgb(pending_frames[0], pending_frames[0])
            pending_frames.pop(0)
        sync.add_events(chunk)
        bundles += sync.ready()
    bundles += sync.flush()
    assert [b.stamp_ns for b in bundles] == frames
    for b in bundles:
        t0 = b.stamp_ns
        expected = events[(events["t"] >= t0 - window) & (events["t"] <= t0)]
        assert isinstance(b.events, EventWindow)
        assert b.events.events.dtype == EVENT_DTYPE
        assert b.events.events.tolist() == expected.tolist()
        assert (b.events.t_start_ns, b.events.t_end_ns, b.events.width, b.events.height) == (t0 - window, t0, 7, 5)


def test_event_window_waits_for_an_event_after_the_frame() -> None:
    sync = Synchronizer(event_sensor=(7, 5))
    sync.add_rgb(100 * MS, "img")
    sync.add_events(make_events([60 * MS, 100 * MS]))
    assert sync.ready() == []  # more events stamped 100 ms may be in the next chunk
    sync.add_events(make_events([100 * MS, 100 * MS + 1]))
    [bundle] = sync.ready()
    assert bundle.events is not None
    assert list(bundle.events.events["t"]) == [60 * MS, 100 * MS, 100 * MS]


def test_silent_event_camera_gives_none_and_still_scene_an_empty_window() -> None:
    sync = Synchronizer(event_sensor=(7, 5), wait_ns=100 * MS)
    sync.add_rgb(100 * MS, "a")
    sync.add_rgb(200 * MS, "b")
    # the first released by the deadline, the second at once: the camera, silent so far, is absent
    first, second = sync.ready()
    assert first.events is None and second.events is None and sync.stats["unmatched_events"] == 2
    sync.add_events(make_events([10 * MS, 310 * MS]))  # nothing in [250, 300] ms, but the stream passed 300 ms
    sync.add_rgb(300 * MS, "c")
    [third] = sync.ready()
    assert third.events is not None and third.events.events.size == 0
    assert sync.stats["late_events"] == 1  # the chunk reached back before the emitted frames


def test_partial_event_window_at_the_deadline() -> None:
    sync = Synchronizer(event_sensor=(7, 5), wait_ns=100 * MS)
    sync.add_rgb(100 * MS, "a")
    sync.add_events(make_events([70 * MS, 80 * MS]))
    sync.add_rgb(200 * MS, "b")
    [bundle] = sync.ready()
    assert bundle.events is not None and list(bundle.events.events["t"]) == [70 * MS, 80 * MS]


def test_unsorted_and_overlapping_event_chunks_are_merged_in_time_order() -> None:
    sync = Synchronizer(event_sensor=(7, 5))
    sync.add_rgb(100 * MS, "img")
    sync.add_events(make_events([90 * MS, 60 * MS, 95 * MS]))
    sync.add_events(make_events([70 * MS, 99 * MS]))
    sync.add_events(make_events([130 * MS]))
    [bundle] = sync.ready()
    assert bundle.events is not None
    assert list(bundle.events.events["t"]) == [60 * MS, 70 * MS, 90 * MS, 95 * MS, 99 * MS]


def test_flush_emits_everything_pending_with_what_is_buffered() -> None:
    sync = Synchronizer({"thermal": 50 * MS, "lidar": 50 * MS}, event_sensor=(7, 5))
    feed(sync, [("rgb", 100 * MS, "a"), ("thermal", 120 * MS, "th"), ("rgb", 200 * MS, "b")])
    sync.add_events(make_events([80 * MS]))
    assert sync.ready() == []
    bundles = sync.flush()
    assert [(b.rgb, b.thermal, b.lidar) for b in bundles] == [("a", "th", None), ("b", None, None)]
    assert bundles[0].events is not None and bundles[0].events.events.size == 1
    assert bundles[1].events is None
    assert sync.flush() == [] and sync.buffered()["rgb"] == 0


def test_buffers_stay_bounded_on_a_long_run() -> None:
    sync = Synchronizer({"thermal": 30 * MS, "lidar": 60 * MS}, event_sensor=(7, 5))
    most: dict[str, int] = {}
    for k in range(2000):
        t = k * 10 * MS
        sync.add("thermal", t + 3 * MS, k)
        if k % 10 == 0:
            sync.add("lidar", t, k)
        sync.add_events(make_events(np.arange(t, t + 10 * MS, MS)))
        if k % 3 == 0:
            sync.add_rgb(t, k)
        sync.ready()
        most = {name: max(n, most.get(name, 0)) for name, n in sync.buffered().items()}
    assert sync.stats["emitted"] > 600
    # The last emitted frame lags the newest stamp by < 120 ms (the wait for the next LiDAR sweep), so:
    # <= 4 frames at 30 ms; thermal from 30 ms before that frame to the newest, < 150 ms at 10 ms; LiDAR at
    # 100 ms within 60 ms before it to the newest; events of its 50 ms window and the < 120 ms after, 1 per ms.
    assert most["rgb"] <= 4 and most["thermal"] <= 15 and most["lidar"] <= 2 and most["events"] <= 170


def test_a_dead_rgb_camera_caps_the_partner_buffers() -> None:
    sync = Synchronizer({"thermal": 30 * MS}, event_sensor=(7, 5), max_buffered=5, max_buffered_events=20)
    for k in range(50):
        sync.add("thermal", k * MS, k)
        sync.add_events(make_events([k * MS, k * MS + 1]))
    assert sync.buffered() == {"rgb": 0, "thermal": 5, "events": 20}
    assert sync.stats["overflow_thermal"] == 45 and sync.stats["overflow_events"] == 40


@pytest.mark.parametrize("kwargs, match", [
    ({"streams": {"rgb": 0}}, "partner stream name"),
    ({"streams": {"events": 0}}, "partner stream name"),
    ({"streams": {"thermal": -1}}, "slop of stream 'thermal' must be >= 0"),
    ({"streams": {"thermal": 0.5}}, "must be an int"),
    ({"wait_ns": 0}, "wait_ns"),
    ({"max_delay_ns": -1}, "max_delay_ns"),
    ({"event_sensor": (0, 5)}, "event_sensor"),
    ({"event_sensor": (7, 5), "events_window_ns": None}, "events_window_ns"),
])
def test_bad_configuration_is_rejected(kwargs: dict, match: str) -> None:
    with pytest.raises(SyncError, match=match):
        Synchronizer(**kwargs)


def test_bad_input_is_rejected() -> None:
    sync = Synchronizer({"thermal": 10})
    with pytest.raises(SyncError, match=r"stream 'lidar' is not configured; configured partner streams: \['thermal'\]"):
        sync.add("lidar", 0, None)
    with pytest.raises(SyncError, match="RGB stamp must be an int"):
        sync.add_rgb(1.5, None)  # type: ignore[arg-type]
    with pytest.raises(SyncError, match="no event stream is configured"):
        sync.add_events(make_events([1]))
    with_events = Synchronizer(event_sensor=(7, 5))
    with pytest.raises(SyncError, match="fields x, y, p, t"):
        with_events.add_events(np.zeros(3))


def test_events_of_another_layout_are_converted() -> None:
    packed = np.zeros(2, dtype=[("t", "<i8"), ("x", "<i4"), ("y", "<i4"), ("p", "i1")])
    packed["t"] = [10, 20]
    packed["x"] = [1, 2]
    sync = Synchronizer(event_sensor=(7, 5))
    sync.add_rgb(20, "img")
    sync.add_events(packed)
    [bundle] = sync.flush()
    assert bundle.events is not None and bundle.events.events.dtype == EVENT_DTYPE
    assert list(bundle.events.events["x"]) == [1, 2]


# --- reordered arrival gives the same bundles as ordered arrival -----------------------------------------

SPAN = 10 * MS  # event chunk length
# The thermal slop admits two candidates now and then, so the choice between them is exercised.
SLOPS = {"thermal": 70 * MS, "lidar": 60 * MS, "labels": 0}


@dataclass
class Recording:
    arrivals: list[tuple[str, int, object]]  # messages in arrival order
    ordered: list[tuple[str, int, object]]  # the same messages in stamp order
    max_delay: int
    streams: dict[str, int]
    events: bool


@st.composite
def recordings(draw: st.DrawFn) -> Recording:
    """A short recording of a random subset of the sensors, with missing and repeated messages, arriving
    each after a random delay in [0, max_delay]."""
    def stream(name: str, period_ms: int, jitter_ms: int, count: int) -> list[tuple[str, int, object]]:
        phase = draw(st.integers(0, period_ms * MS))
        jitter = draw(st.lists(st.integers(0, jitter_ms * MS), min_size=count, max_size=count))
        keep = draw(st.lists(st.booleans(), min_size=count, max_size=count))
        stamps = sorted({100 * MS + phase + k * period_ms * MS + j for k, (j, kept) in enumerate(zip(jitter, keep))
                         if kept or name == "rgb" and k % 4})
        return [(name, s, (name, s)) for s in stamps]

    streams = {name: SLOPS[name] for name in draw(st.sets(st.sampled_from(sorted(SLOPS))))}
    with_events = draw(st.booleans())
    rgb = stream("rgb", 100, 8, 15)
    messages = list(rgb)
    if "thermal" in streams:
        messages += stream("thermal", 111, 20, 14)
    if "lidar" in streams:
        messages += stream("lidar", 200, 3, 8)
    if "labels" in streams:
        messages += [("labels", s, ("labels", s)) for _, s, _ in rgb if draw(st.booleans())]
    messages += [m for m in messages if m[0] in ("rgb", "thermal") and draw(st.integers(0, 9)) == 0]
    if with_events:
        chunk_times = draw(st.lists(st.lists(st.integers(0, SPAN - 1), min_size=1, max_size=6), min_size=180,
                                    max_size=180))
        # Keyed by the chunk's end: a chunk is sent once its span is over.
        messages += [("events", (c + 1) * SPAN - 1, make_events(sorted(c * SPAN + np.array(offsets))))
                     for c, offsets in enumerate(chunk_times)]
    max_delay = draw(st.integers(0, 80)) * MS
    delays = draw(st.lists(st.integers(0, max_delay), min_size=len(messages), max_size=len(messages)))
    arrivals = [m for _, _, m in sorted((m[1] + d, i, m) for i, (m, d) in enumerate(zip(messages, delays)))]
    ordered = [m for _, _, m in sorted((m[1], i, m) for i, m in enumerate(messages))]
    return Recording(arrivals, ordered, max_delay, streams, with_events)


def run_recording(recording: Recording, messages: list[tuple[str, int, object]]) -> tuple[list[FrameBundle],
                                                                                          Synchronizer]:
    # Messages of a stream arrive at most max_delay + SPAN (stamp time) behind newer ones of that stream.
    sync = Synchronizer(recording.streams, event_sensor=(7, 5) if recording.events else None,
                        max_delay_ns=recording.max_delay + SPAN,
                        wait_ns=max(SLOPS.values()) + recording.max_delay + SPAN + 5 * MS)
    return feed(sync, messages) + sync.flush(), sync


def bundle_key(b: FrameBundle) -> tuple:
    events = None if b.events is None else (b.events.events.tolist(), b.events.t_start_ns, b.events.t_end_ns)
    return b.stamp_ns, b.rgb, b.thermal, b.lidar, b.extras, b.offsets_ns, events


@settings(max_examples=80, deadline=None)
@given(recordings())
def test_reordered_arrival_within_max_delay_gives_the_bundles_of_ordered_arrival(recording: Recording) -> None:
    expected, _ = run_recording(recording, recording.ordered)
    got, sync = run_recording(recording, recording.arrivals)
    assert [bundle_key(b) for b in got] == [bundle_key(b) for b in expected]
    # Only the deliberately repeated RGB and thermal messages may arrive after their frame went out.
    assert sum(sync.stats.get(f"late_{name}", 0) for name in ("lidar", "labels", "events")) == 0


def test_a_partner_silent_since_start_up_is_absent_and_not_waited_for():
    """Every frame used to wait wait_ns for an optional thermal camera that is not there."""
    from seg_perception.pipeline.sync import Synchronizer

    sync = Synchronizer({"thermal": 30_000_000}, wait_ns=300_000_000)
    emitted = []
    for k in range(10):  # 10 Hz RGB, no thermal at all
        sync.add_rgb(k * 100_000_000, k)
        emitted += [b.stamp_ns for b in sync.ready()]
    # the first frames wait for the sensor, up to wait_ns; after that each frame goes out as it arrives
    assert emitted == [k * 100_000_000 for k in range(10)][:len(emitted)] and len(emitted) >= 7
    assert emitted[-1] == 9 * 100_000_000
    sync.add("thermal", 990_000_000, "late thermal")  # it delivers: from now on it is waited for again
    sync.add_rgb(1_000_000_000, 10)
    assert sync.ready() == []
    sync.add("thermal", 1_040_000_000, "thermal")
    (bundle,) = sync.ready()
    assert bundle.thermal == "late thermal"
