"""Approximate-time synchronisation into frame bundles, RGB as the anchor (streaming, ROS-free).

Every RGB frame becomes one `FrameBundle`. Each optional partner stream (thermal, LiDAR, labels,
camera info ...) contributes its message closest in time within that stream's slop; events
contribute the window of `events_window_ns` ending at the frame. This is message_filters'
ApproximateTime anchored on one stream: a frame is never held back for a modality that is
missing, only until the closest partner is known or a wait deadline passes.

All stamps are integer nanoseconds on one clock (the sensors' header stamps).
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from seg_perception.io.encoding import EVENT_WINDOW_NS, EventWindow
from seg_perception.io.events import EVENT_DTYPE

ANCHOR = "rgb"
EVENTS = "events"
DEFAULT_WAIT_NS = 300_000_000
DEFAULT_MAX_BUFFERED = 1024
DEFAULT_MAX_BUFFERED_EVENTS = 4_000_000  # 64 MB of EVENT_DTYPE
_FIELD_STREAMS = ("thermal", "lidar")


class SyncError(ValueError):
    """A synchroniser configuration or input that cannot be used; the message says what is accepted."""


@dataclass(frozen=True)
class FrameBundle:
    """One RGB frame and what the other sensors saw at (about) the same time.

    Attributes:
        stamp_ns: the RGB frame's stamp.
        rgb: the RGB payload (e.g. an (H, W, 3) uint8 array).
        thermal: the payload of the "thermal" stream, or None (not configured or no match).
        events: the events of [stamp_ns - window, stamp_ns], or None (not configured, or the event
            camera sent nothing for this window).
        lidar: the payload of the "lidar" stream, or None.
        extras: the payloads of the other partner streams by name (e.g. "labels", "camera_info"),
            None where unmatched; every configured extra stream has a key.
        offsets_ns: partner stamp - stamp_ns of each matched partner stream.
    """

    stamp_ns: int
    rgb: Any
    thermal: Any = None
    events: EventWindow | None = None
    lidar: Any = None
    extras: dict[str, object] = field(default_factory=dict)
    offsets_ns: dict[str, int] = field(default_factory=dict)


class _PartnerBuffer:
    """One partner stream's messages, sorted by stamp."""

    def __init__(self, slop_ns: int) -> None:
        self.slop_ns = slop_ns
        self.stamps: list[int] = []
        self.payloads: list[Any] = []
        self.newest: int | None = None

    def insert(self, stamp: int, payload: Any) -> bool:
        """False (and nothing stored) if the stamp is already buffered."""
        i = bisect.bisect_left(self.stamps, stamp)
        if i < len(self.stamps) and self.stamps[i] == stamp:
            return False
        self.stamps.insert(i, stamp)
        self.payloads.insert(i, payload)
        return True

    def closest(self, t: int) -> int | None:
        """Index of the buffered message closest to t within slop, ties to the earlier; None if none."""
        i = bisect.bisect_left(self.stamps, t)
        best: int | None = None
        # The earlier neighbour is tried first, so that an equally distant later one does not replace it.
        for j in (i - 1, i):
            if 0 <= j < len(self.stamps):
                gap = abs(self.stamps[j] - t)
                if gap <= self.slop_ns and (best is None or gap < abs(self.stamps[best] - t)):
                    best = j
        return best

    def settled(self, t: int, max_delay_ns: int) -> bool:
        """Whether no message still to arrive can be a better partner for t than the buffered ones."""
        if self.newest is None:
            return False
        j = self.closest(t)
        if j is None:
            # Every stamp <= t + slop must have arrived.
            return self.newest > t + self.slop_ns + max_delay_ns
        gap = abs(self.stamps[j] - t)
        # Only a stamp in [t - gap, t + gap) could win; all stamps < newest - max_delay have arrived.
        return gap == 0 or self.newest >= t + gap + max_delay_ns

    def drop_through(self, stamp: int) -> None:
        """Forget the messages stamped <= stamp."""
        i = bisect.bisect_right(self.stamps, stamp)
        del self.stamps[:i], self.payloads[:i]


class _EventBuffer:
    """Event chunks, each sorted by time, kept in order of their first event, and the window and sensor."""

    def __init__(self, window_ns: int, width: int, height: int) -> None:
        self.window_ns, self.width, self.height = window_ns, width, height
        self.chunks: list[np.ndarray] = []
        self.starts: list[int] = []
        self.count = 0
        self.newest: int | None = None

    def add(self, chunk: np.ndarray) -> None:
        start = int(chunk["t"][0])
        # After the chunks with the same first time, so equal starts keep arrival order.
        i = bisect.bisect_right(self.starts, start)
        self.starts.insert(i, start)
        self.chunks.insert(i, chunk)
        self.count += chunk.size

    def window(self, start: int, end: int) -> np.ndarray:
        """Copy of the buffered events with start <= t <= end, sorted by t (stable)."""
        parts = []
        for chunk in self.chunks:
            t = chunk["t"]
            if t[0] > end:
                break
            lo, hi = np.searchsorted(t, start, "left"), np.searchsorted(t, end, "right")
            if hi > lo:
                parts.append(chunk[lo:hi])
        # Filled in place: np.concatenate would promote EVENT_DTYPE to a packed layout.
        events = np.empty(sum(part.size for part in parts), EVENT_DTYPE)
        if parts:
            events[:] = np.concatenate(parts)
        if len(parts) > 1 and np.any(np.diff(events["t"]) < 0):
            events = events[np.argsort(events["t"], kind="stable")]
        return events

    def drop_through(self, stamp: int) -> None:
        """Forget the chunks whose events are all at or before stamp."""
        keep = [i for i, chunk in enumerate(self.chunks) if int(chunk["t"][-1]) > stamp]
        self.chunks = [self.chunks[i] for i in keep]
        self.starts = [self.starts[i] for i in keep]
        self.count = sum(chunk.size for chunk in self.chunks)

    def drop_oldest(self) -> None:
        self.count -= self.chunks[0].size
        del self.chunks[0], self.starts[0]


class Synchronizer:
    """Approximate-time synchroniser: RGB frames in, `FrameBundle`s out in RGB stamp order.

    For an RGB frame at t, each partner stream contributes its message with the smallest |stamp - t|
    within the stream's slop (ties go to the earlier message), or None. A partner message may be
    used by several frames (a 9 Hz thermal camera pairs with a 10 Hz RGB camera by reusing a frame
    now and then); it is never consumed. The events contribute the window [t - events_window_ns, t].

    The bundle of t is emitted by `ready` once it can no longer change: every partner stream has
    settled (a message at or after t + |best gap| arrived, or past t + slop when nothing is within
    slop), an event later than t arrived (events at t itself may continue in the next chunk), and, with `max_delay_ns` > 0, RGB stamps up to t have
    arrived. Or when the wait deadline has passed (`now_ns >= t + wait_ns`): then whatever is
    buffered is used, and missing partners are None. Bundles are emitted in stamp order, so one
    frame waiting holds back the later ones. A partner stream (or the events) that has delivered
    nothing by wait_ns after the first frame is absent: later frames do not wait for it (a sensor
    that is not there costs no latency), until its first message arrives.

    Robustness: a message that arrives out of order on its stream is used if a frame it can pair
    with has not been emitted yet; otherwise it is dropped and counted as late. A repeated stamp on
    a stream keeps the first message. An RGB frame at or before the last emitted frame is dropped.
    An event chunk reaching back to or before the last emitted frame counts as late; its events
    that later windows need are kept. A bundle's `events` is None when its window is empty and no
    later event had arrived when it was emitted (the event camera is silent, not the scene still).
    `stats` counts: "emitted"; "late", "duplicate" (messages and event chunks, all streams) and per
    stream "late_<s>", "duplicate_<s>"; "unmatched_<s>" (bundles emitted without that partner,
    events included); "overflow_<s>" (messages or event chunks dropped by the buffer limits).

    Memory is bounded: partner messages are kept only while an RGB frame not yet emitted can pair
    with them, events only while a future window can contain them, and a stream whose RGB frames
    stop coming is capped at `max_buffered` messages (`max_buffered_events` events).

    Args:
        streams: partner stream name → slop in ns (>= 0). "thermal" and "lidar" fill the bundle's
            fields of those names, any other name goes to `extras`. "rgb" and "events" are reserved.
        events_window_ns: length of the event window ending at each frame (used with `event_sensor`).
        event_sensor: (width, height) of the event camera; None: no event stream.
        wait_ns: how long (stream time) a frame waits for late or missing partners.
        max_delay_ns: how far a message may arrive behind a newer one on the same stream (stamp
            time); 0 assumes every stream arrives in stamp order. Larger values make reordered
            arrival give the same bundles as ordered arrival, at the cost of waiting longer.
        max_buffered: cap on buffered messages per partner stream.
        max_buffered_events: cap on buffered events (whole chunks are dropped, oldest first).

    Raises:
        SyncError: a bad stream name, slop, window, sensor size or limit.
    """

    def __init__(self, streams: dict[str, int] | None = None, *, events_window_ns: int | None = EVENT_WINDOW_NS,
                 event_sensor: tuple[int, int] | None = None, wait_ns: int = DEFAULT_WAIT_NS, max_delay_ns: int = 0,
                 max_buffered: int = DEFAULT_MAX_BUFFERED,
                 max_buffered_events: int = DEFAULT_MAX_BUFFERED_EVENTS) -> None:
        streams = dict(streams or {})
        for name, slop in streams.items():
            if not isinstance(name, str) or not name or name in (ANCHOR, EVENTS):
                raise SyncError(f"partner stream name {name!r} is not accepted: use a non-empty string other than "
                                f"{ANCHOR!r} and {EVENTS!r} (those have their own add methods)")
            _check_int(slop, f"slop of stream {name!r}", minimum=0)
        _check_int(wait_ns, "wait_ns", minimum=1)
        _check_int(max_delay_ns, "max_delay_ns", minimum=0)
        _check_int(max_buffered, "max_buffered", minimum=1)
        _check_int(max_buffered_events, "max_buffered_events", minimum=1)
        if event_sensor is not None:
            if (not isinstance(event_sensor, (tuple, list)) or len(event_sensor) != 2
                    or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0
                               for v in event_sensor)):
                raise SyncError(f"event_sensor must be (width, height) in pixels, positive ints; got {event_sensor!r}")
            if events_window_ns is None:
                raise SyncError("events_window_ns must be a positive int (ns) when event_sensor is given; got None")
            _check_int(events_window_ns, "events_window_ns", minimum=1)
        self.wait_ns = int(wait_ns)
        self.max_delay_ns = int(max_delay_ns)
        self.max_buffered = int(max_buffered)
        self.max_buffered_events = int(max_buffered_events)
        self._partners = {name: _PartnerBuffer(int(slop)) for name, slop in streams.items()}
        self._events = (None if event_sensor is None or events_window_ns is None
                        else _EventBuffer(int(events_window_ns), int(event_sensor[0]), int(event_sensor[1])))
        self._anchors: list[int] = []
        self._anchor_payloads: dict[int, Any] = {}
        self._newest_anchor: int | None = None
        self._first_anchor: int | None = None
        self._last_emitted: int | None = None
        self._clock: int | None = None
        optional = [*self._partners, *([EVENTS] if self._events is not None else [])]
        self.stats: dict[str, int] = {"emitted": 0, "late": 0, "duplicate": 0}
        for name in [ANCHOR, *optional]:
            self.stats[f"late_{name}"] = 0
        for name in [ANCHOR, *self._partners]:
            self.stats[f"duplicate_{name}"] = 0
        for name in optional:
            self.stats.update({f"unmatched_{name}": 0, f"overflow_{name}": 0})

    def buffered(self) -> dict[str, int]:
        """What is held now: pending RGB frames ("rgb"), messages per partner stream, events ("events")."""
        out = {ANCHOR: len(self._anchors), **{name: len(b.stamps) for name, b in self._partners.items()}}
        if self._events is not None:
            out[EVENTS] = self._events.count
        return out

    def add_rgb(self, stamp_ns: int, payload: Any) -> None:
        """Add an RGB frame (the anchor of a future bundle).

        Raises:
            SyncError: a stamp that is not an int.
        """
        stamp = _check_int(stamp_ns, "RGB stamp")
        self._tick(stamp)
        self._newest_anchor = stamp if self._newest_anchor is None else max(self._newest_anchor, stamp)
        self._first_anchor = stamp if self._first_anchor is None else self._first_anchor
        if self._last_emitted is not None and stamp <= self._last_emitted:
            self._count("duplicate" if stamp == self._last_emitted else "late", ANCHOR)
        elif stamp in self._anchor_payloads:
            self._count("duplicate", ANCHOR)
        else:
            bisect.insort(self._anchors, stamp)
            self._anchor_payloads[stamp] = payload

    def add(self, stream: str, stamp_ns: int, payload: Any) -> None:
        """Add a message of a partner stream.

        Raises:
            SyncError: a stream that was not configured, or a stamp that is not an int.
        """
        buffer = self._partners.get(stream)
        if buffer is None:
            raise SyncError(f"stream {stream!r} is not configured; configured partner streams: "
                            f"{sorted(self._partners)} (use add_rgb / add_events for {ANCHOR!r} / {EVENTS!r})")
        stamp = _check_int(stamp_ns, f"stamp on stream {stream!r}")
        self._tick(stamp)
        buffer.newest = stamp if buffer.newest is None else max(buffer.newest, stamp)
        if self._last_emitted is not None and stamp + buffer.slop_ns <= self._last_emitted:
            self._count("late", stream)
        elif not buffer.insert(stamp, payload):
            self._count("duplicate", stream)
        elif len(buffer.stamps) > self.max_buffered:
            del buffer.stamps[0], buffer.payloads[0]
            self.stats[f"overflow_{stream}"] += 1

    def add_events(self, events: np.ndarray) -> None:
        """Add a chunk of events (EVENT_DTYPE, any size; an empty chunk is ignored).

        Chunks should come in time order; an unsorted chunk is sorted, and events at or before the
        last emitted frame count the chunk as late (a bundle already went out without them). The
        chunk is kept by reference until no window needs it: do not modify it after adding it.

        Raises:
            SyncError: no event stream was configured, or the array is not a 1-D array with the
                EVENT_DTYPE fields x, y, p, t.
        """
        buffer = self._events
        if buffer is None:
            raise SyncError("no event stream is configured: pass event_sensor=(width, height) to the Synchronizer")
        chunk = _as_events(events)
        if chunk.size == 0:
            return
        t = chunk["t"]
        if np.any(np.diff(t) < 0):
            chunk = chunk[np.argsort(t, kind="stable")]
            t = chunk["t"]
        last = int(t[-1])
        self._tick(last)
        buffer.newest = last if buffer.newest is None else max(buffer.newest, last)
        if self._last_emitted is not None:
            if int(t[0]) <= self._last_emitted:
                self._count("late", EVENTS)
            # No window of a frame after the last emitted one reaches back to these.
            chunk = chunk[t > self._last_emitted - buffer.window_ns]
        if chunk.size == 0:
            return
        buffer.add(chunk)
        while buffer.count > self.max_buffered_events and len(buffer.chunks) > 1:
            buffer.drop_oldest()
            self.stats[f"overflow_{EVENTS}"] += 1

    def ready(self, now_ns: int | None = None) -> list[FrameBundle]:
        """The bundles that can no longer change (or whose wait ran out), in stamp order.

        Args:
            now_ns: the stream-time clock for the wait deadline; None: the newest stamp seen on any
                stream (what replay wants; a live node may pass its clock's time instead).

        Raises:
            SyncError: a now_ns that is not an int.
        """
        now = self._clock if now_ns is None else _check_int(now_ns, "now_ns")
        out = []
        while self._anchors:
            t = self._anchors[0]
            if not ((now is not None and now >= t + self.wait_ns) or self._settled(t)):
                break
            out.append(self._emit())
        return out

    def flush(self) -> list[FrameBundle]:
        """Emit every pending frame with what is buffered (the end of a bag or a shutdown)."""
        return [self._emit() for _ in range(len(self._anchors))]

    def _settled(self, t: int) -> bool:
        if self.max_delay_ns and (self._newest_anchor is None or self._newest_anchor < t + self.max_delay_ns):
            return False
        # A stream silent since the first frame's wait ran out is absent (a sensor not fitted or down): frames
        # no longer wait for it, until it delivers.
        absent = self._first_anchor is not None and t >= self._first_anchor + self.wait_ns
        if not all(buffer.settled(t, self.max_delay_ns) or (absent and buffer.newest is None)
                   for buffer in self._partners.values()):
            return False
        return self._events is None or (self._events.newest is not None
                                        and self._events.newest > t + self.max_delay_ns) or (
            absent and self._events.newest is None)

    def _emit(self) -> FrameBundle:
        t = self._anchors.pop(0)
        rgb = self._anchor_payloads.pop(t)
        matched: dict[str, Any] = {}
        offsets: dict[str, int] = {}
        for name, buffer in self._partners.items():
            j = buffer.closest(t)
            if j is None:
                matched[name] = None
                self.stats[f"unmatched_{name}"] += 1
            else:
                matched[name] = buffer.payloads[j]
                offsets[name] = buffer.stamps[j] - t
        events = None
        if self._events is not None:
            buffer = self._events
            start = t - buffer.window_ns
            window = buffer.window(start, t)
            # An empty window is "no motion" once the stream has passed t, "no event camera" before that.
            if window.size or (buffer.newest is not None and buffer.newest > t + self.max_delay_ns):
                events = EventWindow(window, buffer.width, buffer.height, start, t)
            else:
                self.stats[f"unmatched_{EVENTS}"] += 1
            # Windows of later frames start after t - window.
            buffer.drop_through(start)
        self._last_emitted = t
        for buffer in self._partners.values():
            buffer.drop_through(t - buffer.slop_ns)
        self.stats["emitted"] += 1
        return FrameBundle(t, rgb, thermal=matched.pop("thermal", None), events=events,
                           lidar=matched.pop("lidar", None), extras=matched, offsets_ns=offsets)

    def _tick(self, stamp: int) -> None:
        self._clock = stamp if self._clock is None else max(self._clock, stamp)

    def _count(self, kind: str, stream: str) -> None:
        self.stats[kind] += 1
        self.stats[f"{kind}_{stream}"] += 1


def _check_int(value: Any, what: str, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise SyncError(f"{what} must be an int (nanoseconds), got {type(value).__name__} {value!r}")
    if minimum is not None and value < minimum:
        raise SyncError(f"{what} must be >= {minimum}, got {value}")
    return int(value)


def _as_events(events: Any) -> np.ndarray:
    array = np.asarray(events)
    names = array.dtype.names or ()
    if array.ndim != 1 or not set(EVENT_DTYPE.names or ()) <= set(names):
        raise SyncError(f"events must be a 1-D structured array with fields x, y, p, t (EVENT_DTYPE), got dtype "
                        f"{array.dtype} and shape {array.shape}")
    if array.dtype == EVENT_DTYPE:
        return array
    out = np.empty(array.size, EVENT_DTYPE)
    for name in EVENT_DTYPE.names or ():
        out[name] = array[name]
    return out
