"""Prophesee EVT 3.0 (what metavision_driver publishes as "evt3"): a stateful decoder and an encoder.

The stream is 16-bit words, the type in bits 15..12; the decoder keeps state (current y, time,
vector base x and polarity). CD (contrast change) events and EXT_TRIGGER edges are decoded (into
EVENT_DTYPE and TRIGGER_DTYPE arrays); OTHERS, CONTINUED and padding words are skipped. A packet
that starts mid-stream (metavision_driver cuts the raw stream at arbitrary points) is only decodable
with the state left by the packets before it: `Evt3Decoder` carries that state across packets.
"""
from __future__ import annotations

import functools
from typing import Any

import numpy as np

from .errors import ConversionError
from .event_layout import (
    EVENT_DTYPE,
    TRIGGER_DTYPE,
    check_events,
    check_range,
    empty_events,
    empty_triggers,
    packed_rows,
)
from .messages import as_bytes

# EVT 3.0 word types (bits 15..12), Prophesee "EVT 3.0 Format".
ADDR_Y, ADDR_X, VECT_BASE_X, VECT_12, VECT_8 = 0x0, 0x2, 0x3, 0x4, 0x5
TIME_LOW, CONTINUED_4, TIME_HIGH, PADDING, EXT_TRIGGER, OTHERS, CONTINUED_12 = 0x6, 0x7, 0x8, 0x9, 0xA, 0xE, 0xF
CLOCK_JUMP_NS = 500_000_000  # a stream whose stamps and sensor clock disagree by more is aligned again
EVT3_MAX_SIZE = 2048  # 11-bit x and y
_KNOWN_TYPES = (ADDR_Y, ADDR_X, VECT_BASE_X, VECT_12, VECT_8, TIME_LOW, CONTINUED_4, TIME_HIGH, PADDING,
                EXT_TRIGGER, OTHERS, CONTINUED_12)
_RESERVED_MASK = (1 << 0x1) | (1 << 0xB) | (1 << 0xC) | (1 << 0xD)
# A TIME_HIGH that falls back by at least this much (of 4096) is a wrap of the 24-bit µs counter;
# a smaller step back is jitter, as in Prophesee's reference decoder (LoopThreshold = 10 << 12).
_WRAP_MIN_STEP = 4096 - 1 - 10
# Set bits and highest set bit (-1 for none) of every 12-bit vector mask.
_POPCOUNT = np.array([bin(m).count("1") for m in range(4096)], np.int64)
_HIGHEST = np.array([m.bit_length() - 1 for m in range(4096)], np.int64)
# report[] slots filled by the compiled decoder.
_REPORT = range(10)
(_R_DROPPED, _R_LAST_BASE, _R_VECTOR_AFTER, _R_MAX_X, _R_MAX_Y, _R_MISSING_Y, _R_MISSING_TIME, _R_MISSING_BASE,
 _R_COUNT, _R_TRIGGERS) = _REPORT


class Evt3Decoder:
    """Decodes a stream of EVT 3.0 buffers, carrying the decoder state from one buffer to the next.

    Use one decoder per topic (or .raw file) and feed it the packets in order, as
    event_camera_codecs does: a real packet may start with events whose row, time or vector base
    was set in the previous packet. Events (CD or trigger) before the stream has established a row
    and a time (a recording that starts mid-stream) are dropped and counted in `dropped`, as
    event_camera_codecs skips to the first valid time; anything else malformed raises.

    `decode` returns sensor time (`t` = µs × 1000, wrap-arounds of the 24-bit counter unwrapped
    over the whole stream); `packet_to_events(msg, decoder=...)` turns it into ROS time.
    """

    def __init__(self, width: int, height: int) -> None:
        if not (0 < width <= EVT3_MAX_SIZE and 0 < height <= EVT3_MAX_SIZE):
            raise ConversionError(
                f"evt3 sensor size {width}x{height} is not supported; accepted: 1..{EVT3_MAX_SIZE} in each dimension")
        self.width, self.height = int(width), int(height)
        self.dropped = 0
        self.realigned = 0  # clock jumps the stream's ROS-time alignment was set again for
        self._offset_ns: int | None = None  # ROS time - sensor time, from the stream's first packet
        # -1 = not yet set by the stream; base_x includes the auto-increments of vectors seen since.
        self._state = np.array([-1, -1, -1, 0, 0, 0], np.int64)  # y, time high, base x, polarity, loops, time low

    def decode(self, data: Any, *, big_endian: bool = False) -> np.ndarray:
        """One buffer of the stream → CD events with `t` in sensor nanoseconds (see `decode_with_triggers`)."""
        return self.decode_with_triggers(data, big_endian=big_endian)[0]

    def decode_with_triggers(self, data: Any, *, big_endian: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """One buffer of the stream → (CD events, trigger edges), `t` in sensor nanoseconds.

        Args:
            data: the evt3 bytes (bytes, uint8 array, or a uint8[] message field).
            big_endian: the words are big-endian (Prophesee sensors send little-endian by default).

        Returns:
            EVENT_DTYPE array and TRIGGER_DTYPE array, each in stream order.

        Raises:
            ConversionError: odd byte count, a reserved word type, or an event outside the sensor.
                The state is still advanced past a buffer with events outside the sensor, so the
                stream goes on with the next buffer.
        """
        return self.decode_words(data, big_endian, strict=False)

    def decode_words(self, data: Any, big_endian: bool, strict: bool,
                     stamp: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Decode one buffer; `t` is sensor time, or with `stamp` ROS time (stamp at the first event).
        `strict`: the buffer must not depend on state from earlier buffers (a self-contained packet)."""
        raw = as_bytes(data)
        if raw.size % 2:
            raise ConversionError(
                f"evt3 payload has an odd byte count ({raw.size}); accepted: whole 16-bit words")
        words = raw.view(">u2" if big_endian else "<u2").astype(np.uint16, copy=False)  # native order
        if words.size == 0:
            return empty_events(), empty_triggers()
        count_kernel, decode_kernel = _compiled()
        bound, n_triggers, reserved = count_kernel(words, _POPCOUNT)
        if reserved:
            bad = [kind for kind in range(16) if reserved >> kind & 1]
            raise ConversionError(
                f"evt3 word type(s) {[hex(v) for v in bad]} are not EVT 3.0 types; accepted: "
                f"{', '.join(hex(v) for v in _KNOWN_TYPES)}")
        # Allocated by numpy, which asks for huge pages: faulting in 48 MB of numba-allocated output
        # for 3 M events took longer than decoding them.
        cd = np.empty((bound + 12, 2), np.int64)
        triggers = np.empty((n_triggers, 2), np.int64)
        report = np.zeros(len(_REPORT), np.int64)
        state = self._state.copy()
        relative = stamp is not None and strict  # a self-contained packet: its first event at its own stamp
        decode_kernel(words, state, report, int(stamp) if relative else 0, relative, _POPCOUNT, _HIGHEST, cd,
                      triggers)
        self._state = state
        if strict and report[_R_LAST_BASE] >= 0 and not report[_R_VECTOR_AFTER]:
            raise ConversionError(
                f"evt3 packet ends after a VECT_BASE_X (word {int(report[_R_LAST_BASE])}) with no VECT_12/VECT_8 "
                "after it (truncated vector); accepted: a self-contained packet")
        missing = report[_R_MISSING_Y:_R_MISSING_BASE + 1]
        if strict and (missing >= 0).any():
            kind = int(np.argmax(missing >= 0))
            raise ConversionError(
                f"evt3 packet has an event word (word {int(missing[kind])}) before any "
                f"{('EVT_ADDR_Y', 'EVT_TIME_HIGH', 'VECT_BASE_X')[kind]}; accepted: a self-contained packet "
                "(use Evt3Decoder to carry state across packets of a stream)")
        self.dropped += int(report[_R_DROPPED])
        count = int(report[_R_COUNT])
        if count:
            check_range(int(report[_R_MAX_X]), int(report[_R_MAX_Y]), self.width, self.height, "evt3 stream")
        events = packed_rows(cd[:count], EVENT_DTYPE)
        edges = packed_rows(triggers[:int(report[_R_TRIGGERS])], TRIGGER_DTYPE)
        if stamp is not None and not strict and (events.size or edges.size):  # a stream: one alignment
            offset = self._align(int(stamp), min(int(x["t"][0]) for x in (events, edges) if x.size))
            events["t"] += offset
            edges["t"] += offset
        return events, edges

    def _align(self, stamp: int, sensor_first_ns: int) -> int:
        """The offset from sensor time to ROS time: set by the stream's first packet (its first event at its
        header stamp) and kept, so event time is continuous across packets whatever the jitter of the
        header stamps (the time a buffer reached the driver); set again only on a clock jump, when a
        packet's stamp and the kept offset disagree by more than CLOCK_JUMP_NS (a sensor or ROS clock reset)."""
        if self._offset_ns is None or abs(stamp - (sensor_first_ns + self._offset_ns)) > CLOCK_JUMP_NS:
            self.realigned += self._offset_ns is not None
            self._offset_ns = stamp - sensor_first_ns
        return self._offset_ns


@functools.cache
def _compiled() -> tuple[Any, Any]:
    """`_count_evt3` and `_decode_evt3` compiled with numba, on first use (importing numba costs half a second)."""
    from numba import njit

    return njit(cache=True, boundscheck=False)(_count_evt3), njit(cache=True, boundscheck=False)(_decode_evt3)


def _count_evt3(words, popcount):
    """(CD events, EXT_TRIGGER words, bit mask of the reserved word types seen) of EVT 3.0 words."""
    bound, n_triggers, reserved = 0, 0, 0
    for i in range(words.size):
        kind = words[i] >> 12
        if kind == ADDR_X:
            bound += 1
        elif kind == VECT_12:
            bound += popcount[words[i] & 0xFFF]
        elif kind == VECT_8:
            bound += popcount[words[i] & 0xFF]
        elif kind == EXT_TRIGGER:
            n_triggers += 1
        elif (_RESERVED_MASK >> kind) & 1:
            reserved |= 1 << kind
    return bound, n_triggers, reserved


def _decode_evt3(words, state, report, stamp, relative, popcount, highest, cd, triggers):
    """Decode EVT 3.0 words into (N, 2) int64 rows of EVENT_DTYPE (`cd`, 12 rows more than its events)
    and TRIGGER_DTYPE (`triggers`), see `packed_rows`. state = [y, time high, base x, polarity, wrap
    loops, time low] (-1: unset) is read and written back. `report` gets the slots named _R_*
    (missing: first event word without a row, a time, a vector base; -1: none). With `relative`,
    t = stamp + (µs - µs of the first event) * 1000.

    One compiled pass writes the final layout: a vector's 12 candidate events are written
    unconditionally and the count advances by each mask bit, which avoids a mispredicted branch per
    pixel (hence the 12 spare rows)."""
    y, high, base, pol, loops, low = state[0], state[1], state[2], state[3], state[4], state[5]
    count, n_trig, dropped, last_base, vector_after, max_x, max_y = 0, 0, 0, -1, 1, 0, 0
    missing_y, missing_time, missing_base = -1, -1, -1
    offset, pending = 0, relative  # t = µs * 1000 + offset
    now = ((high + (loops << 12)) << 12) | low if high >= 0 else -1
    t = now * 1000
    for i in range(words.size):
        word = np.int64(words[i])
        kind, payload = word >> 12, word & 0xFFF
        if kind == VECT_12 or kind == VECT_8:
            mask, size = (payload, 12) if kind == VECT_12 else (payload & 0xFF, 8)
            vector_after = 1
            if y < 0 or now < 0 or base < 0:
                if y < 0 and missing_y < 0:
                    missing_y = i
                if now < 0 and missing_time < 0:
                    missing_time = i
                if base < 0 and missing_base < 0:
                    missing_base = i
                dropped += popcount[mask]
            elif mask:
                if pending:
                    offset, pending = stamp - now * 1000, False
                    t = now * 1000 + offset
                row = (y << 16) | (pol << 32)
                for bit in range(size):
                    cd[count, 0] = (base + bit) | row
                    cd[count, 1] = t
                    count += (mask >> bit) & 1
                max_x = max(max_x, base + highest[mask])
                max_y = max(max_y, y)
            if base >= 0:
                base += size
        elif kind == ADDR_X:
            if y < 0 or now < 0:
                if y < 0 and missing_y < 0:
                    missing_y = i
                if now < 0 and missing_time < 0:
                    missing_time = i
                dropped += 1
            else:
                if pending:
                    offset, pending = stamp - now * 1000, False
                    t = now * 1000 + offset
                x = payload & 0x7FF
                cd[count, 0] = x | (y << 16) | ((payload >> 11) << 32)
                cd[count, 1] = t
                count += 1
                max_x = max(max_x, x)
                max_y = max(max_y, y)
        elif kind == ADDR_Y:
            y = payload & 0x7FF
        elif kind == TIME_LOW:
            low = payload
            if high >= 0:
                now = ((high + (loops << 12)) << 12) | low
                t = now * 1000 + offset
        elif kind == TIME_HIGH:
            if high >= 0 and high - payload >= _WRAP_MIN_STEP:
                loops += 1
            high = payload
            now = ((high + (loops << 12)) << 12) | low
            t = now * 1000 + offset
        elif kind == VECT_BASE_X:
            base, pol, last_base, vector_after = payload & 0x7FF, payload >> 11, i, 0
        elif kind == EXT_TRIGGER:
            if now < 0:
                if missing_time < 0:
                    missing_time = i
                dropped += 1
            else:
                if pending:
                    offset, pending = stamp - now * 1000, False
                    t = now * 1000 + offset
                triggers[n_trig, 0] = t
                triggers[n_trig, 1] = ((payload >> 8) & 0xF) | ((payload & 1) << 8)
                n_trig += 1
    state[0], state[1], state[2], state[3], state[4], state[5] = y, high, base, pol, loops, low
    report[_R_DROPPED], report[_R_LAST_BASE], report[_R_VECTOR_AFTER] = dropped, last_base, vector_after
    report[_R_MAX_X], report[_R_MAX_Y], report[_R_COUNT], report[_R_TRIGGERS] = max_x, max_y, count, n_trig
    report[_R_MISSING_Y], report[_R_MISSING_TIME], report[_R_MISSING_BASE] = missing_y, missing_time, missing_base


def encode_evt3(events: np.ndarray, width: int, height: int) -> np.ndarray:
    """Events → a self-contained EVT 3.0 word stream (little-endian bytes), sensor time = `t` in µs.

    The stream opens with EVT_TIME_HIGH, EVT_TIME_LOW and EVT_ADDR_Y, like a sensor after reset,
    and emits every EVT_TIME_HIGH step in between (a sensor does, every 4096 µs), so wrap-arounds
    of the 24-bit µs counter decode unambiguously over any duration. Runs of events with the same
    µs, row and polarity and increasing x become VECT_BASE_X + VECT_12 words (consecutive 12-pixel
    groups share one base through the auto-increment); single events become EVT_ADDR_X. Times are
    floored to microseconds (the format's resolution).

    Args:
        events: EVENT_DTYPE array sorted by `t` (non-decreasing), `t` ≥ 0.
        width, height: sensor size (at most 2048 each).

    Returns:
        uint8 array of the encoded words.

    Raises:
        ConversionError: unsorted or negative times, sensor too large, events outside it, polarity not 0/1.
    """
    if not (0 < width <= EVT3_MAX_SIZE and 0 < height <= EVT3_MAX_SIZE):
        raise ConversionError(
            f"evt3 sensor size {width}x{height} is not supported; accepted: 1..{EVT3_MAX_SIZE} in each dimension")
    events = check_events(events, width, height)
    if events.size == 0:
        return np.empty(0, dtype=np.uint8)
    t = events["t"].astype(np.int64)
    if t[0] < 0 or (np.diff(t) < 0).any():
        raise ConversionError("evt3 encoding needs events sorted by time with t >= 0; accepted: non-decreasing t")
    us = t // 1000
    x = events["x"].astype(np.int64)
    y = events["y"].astype(np.int64)
    p = events["p"].astype(np.int64)

    # Runs: same µs, row and polarity, strictly increasing x. Chunks: 12-pixel groups of a run.
    new_run = np.ones(x.size, dtype=bool)
    new_run[1:] = (us[1:] != us[:-1]) | (y[1:] != y[:-1]) | (p[1:] != p[:-1]) | (x[1:] <= x[:-1])
    run_x = x[np.flatnonzero(new_run)][np.cumsum(new_run) - 1]  # x of each event's run start
    group = (x - run_x) // 12
    base = run_x + 12 * group
    new_chunk = new_run.copy()
    new_chunk[1:] |= group[1:] != group[:-1]
    chunk_start = np.flatnonzero(new_chunk)
    is_vec = np.diff(np.append(chunk_start, x.size)) > 1
    c_mask = np.bitwise_or.reduceat(np.left_shift(1, x - base), chunk_start)
    c_us, c_y, c_p, c_x, c_base = us[chunk_start], y[chunk_start], p[chunk_start], x[chunk_start], base[chunk_start]
    c_group = group[chunk_start]
    # A vector needs its own VECT_BASE_X unless the previous chunk was the vector just left of it
    # in the same run (the decoder's base has then moved on by 12 already).
    need_base = is_vec.copy()
    need_base[1:] &= new_run[chunk_start][1:] | ~is_vec[:-1] | (c_group[1:] != c_group[:-1] + 1)

    high = c_us >> 12
    n_high = np.empty_like(high)
    n_high[0] = 1
    n_high[1:] = high[1:] - high[:-1]
    has_low = np.ones(high.size, dtype=bool)
    has_low[1:] = c_us[1:] != c_us[:-1]
    has_y = np.ones(high.size, dtype=bool)
    has_y[1:] = c_y[1:] != c_y[:-1]
    counts = n_high + has_low + has_y + need_base + 1
    start = np.cumsum(counts) - counts
    out = np.empty(int(counts.sum()), dtype="<u2")

    high_pos = np.repeat(start, n_high) + (np.arange(int(n_high.sum())) - np.repeat(np.cumsum(n_high) - n_high, n_high))
    out[high_pos] = (TIME_HIGH << 12) | (np.arange(high[0], high[-1] + 1) & 0xFFF)
    at = start + n_high
    out[at[has_low]] = (TIME_LOW << 12) | (c_us[has_low] & 0xFFF)
    at = at + has_low
    out[at[has_y]] = (ADDR_Y << 12) | c_y[has_y]
    at = at + has_y
    out[at[need_base]] = (VECT_BASE_X << 12) | (c_p[need_base] << 11) | c_base[need_base]
    at = at + need_base
    out[at] = np.where(is_vec, (VECT_12 << 12) | c_mask, (ADDR_X << 12) | (c_p << 11) | c_x)
    return out.view(np.uint8)
