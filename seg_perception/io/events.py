"""Event-camera messages (dvs_msgs/EventArray, event_camera_msgs/EventPacket evt3 and mono) ⇄ event arrays.

Every decoder returns, and every encoder takes, one layout: a 1-D structured array of
`EVENT_DTYPE` in stream order:

    x  uint16  column, 0 ≤ x < width
    y  uint16  row, 0 ≤ y < height
    p  uint8   polarity: 1 = ON (brighter), 0 = OFF (darker)
    t  int64   absolute time in nanoseconds on the ROS clock of the message header

Time of an event, per message type:

- dvs_msgs/EventArray: `t` is the event's own `ts` stamp (the header stamp is not used).
- event_camera_msgs/EventPacket "mono": `t = header.stamp + dt`, as the event_camera_msgs README
  gives for the best ROS-time estimate (`time_base + dt` would be sensor time instead).
- event_camera_msgs/EventPacket "evt3": the stream carries sensor time only (µs, 24 bits plus
  wrap-arounds); metavision_driver sets `time_base = 0` ("not used") and stamps the header with the
  ROS time at which the packet's first raw buffer arrived. So `t = header.stamp + (sensor_t -
  sensor_t_first) * 1000`, `sensor_t_first` being the sensor time of the packet's first event: the
  first event gets the header stamp, and the others keep their exact sensor-time spacing.
  `Evt3Decoder.decode` returns the sensor time itself (`t` = sensor µs × 1000).

evt3 (Prophesee EVT 3.0, what metavision_driver publishes) is a stream of 16-bit words, the type in
bits 15..12; the decoder keeps state (current y, time, vector base x and polarity). Only CD
(contrast change) events are decoded; EXT_TRIGGER, OTHERS, CONTINUED and padding words are skipped. A packet that
starts mid-stream (metavision_driver cuts the raw stream at arbitrary points) is only decodable
with the state left by the packets before it: `Evt3Decoder` carries that state across packets,
while `packet_to_events(msg)` alone decodes a self-contained packet and rejects one that is not.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .errors import ConversionError
from .messages import MessageFactory, RosbagsFactory, as_bytes, make_header, stamp_to_ns

EVENT_DTYPE = np.dtype({
    "names": ["x", "y", "p", "t"],
    "formats": ["<u2", "<u2", "u1", "<i8"],
    "offsets": [0, 2, 4, 8],
    "itemsize": 16,
})

EVENT_ARRAY_TYPE = "dvs_msgs/msg/EventArray"
EVENT_PACKET_TYPE = "event_camera_msgs/msg/EventPacket"
PACKET_ENCODINGS = ("evt3", "mono")

# EVT 3.0 word types (bits 15..12), Prophesee "EVT 3.0 Format".
ADDR_Y, ADDR_X, VECT_BASE_X, VECT_12, VECT_8 = 0x0, 0x2, 0x3, 0x4, 0x5
TIME_LOW, CONTINUED_4, TIME_HIGH, PADDING, EXT_TRIGGER, OTHERS, CONTINUED_12 = 0x6, 0x7, 0x8, 0x9, 0xA, 0xE, 0xF
EVT3_MAX_SIZE = 2048  # 11-bit x and y
_KNOWN_TYPES = (ADDR_Y, ADDR_X, VECT_BASE_X, VECT_12, VECT_8, TIME_LOW, CONTINUED_4, TIME_HIGH, PADDING,
                EXT_TRIGGER, OTHERS, CONTINUED_12)
# A TIME_HIGH that falls back by at least this much (of 4096) is a wrap of the 24-bit µs counter;
# a smaller step back is jitter, as in Prophesee's reference decoder (LoopThreshold = 10 << 12).
_WRAP_MIN_STEP = 4096 - 1 - 10

_HIGHEST_BIT = np.zeros(1 << 12, dtype=np.int32)
_HIGHEST_BIT[1:] = np.floor(np.log2(np.arange(1, 1 << 12))).astype(np.int32)


def _empty_events() -> np.ndarray:
    return np.empty(0, dtype=EVENT_DTYPE)


def _fill(x: Any, y: Any, p: Any, t: Any) -> np.ndarray:
    out = np.empty(len(t), dtype=EVENT_DTYPE)
    out["x"], out["y"], out["p"], out["t"] = x, y, p, t
    return out


def _check_events(events: np.ndarray, width: int, height: int) -> np.ndarray:
    events = np.asarray(events)
    if events.dtype.names is None or not {"x", "y", "p", "t"} <= set(events.dtype.names) or events.ndim != 1:
        raise ConversionError(
            f"events must be a 1-D structured array with fields x, y, p, t (EVENT_DTYPE), got dtype {events.dtype} "
            f"and shape {events.shape}")
    if events.size:
        if int(events["x"].max()) >= width or int(events["y"].max()) >= height:
            raise ConversionError(
                f"event coordinates up to x={int(events['x'].max())}, y={int(events['y'].max())} do not fit a "
                f"{width}x{height} sensor; accepted: 0 <= x < width, 0 <= y < height")
        if int(events["p"].max()) > 1 or int(events["p"].min()) < 0:
            raise ConversionError("event polarity must be 0 (OFF) or 1 (ON)")
    return events


def _check_range(x_max: int, y_max: int, width: int, height: int, what: str) -> None:
    if x_max >= width or y_max >= height:
        raise ConversionError(
            f"{what} has an event at x up to {x_max}, y up to {y_max} outside the {width}x{height} sensor in its "
            f"width/height fields; accepted: 0 <= x < width, 0 <= y < height")


# ------------------------------------------------------------------------------------------------
# dvs_msgs/EventArray


def event_array_to_events(msg: Any) -> np.ndarray:
    """dvs_msgs/EventArray → events (`t` from each event's `ts`).

    The message holds one nested message per event, so reading it is a Python loop over the
    events by nature; the rest is vectorised.

    Args:
        msg: a dvs_msgs/EventArray of either message world.

    Returns:
        EVENT_DTYPE array in message order.

    Raises:
        ConversionError: an event lies outside the message's width x height.
    """
    events = msg.events
    if len(events) == 0:
        return _empty_events()
    fields = np.array([(e.x, e.y, e.polarity, e.ts.sec, e.ts.nanosec) for e in events], dtype=np.int64)
    width, height = int(msg.width), int(msg.height)
    _check_range(int(fields[:, 0].max()), int(fields[:, 1].max()), width, height, "dvs_msgs/EventArray")
    return _fill(fields[:, 0], fields[:, 1], fields[:, 2] != 0, fields[:, 3] * 1_000_000_000 + fields[:, 4])


def events_to_event_array(
    events: np.ndarray,
    width: int,
    height: int,
    *,
    header: Any | None = None,
    factory: MessageFactory | None = None,
    frame_id: str = "",
) -> Any:
    """Events → dvs_msgs/EventArray.

    Builds one nested Event message per event (a Python loop by nature; prefer EventPacket for
    high event rates).

    Args:
        events: EVENT_DTYPE array (any structured array with x, y, p, t).
        width, height: sensor size written to the message.
        header: header to use; default: stamped with the first event's time (as rpg_dvs_ros does)
            and `frame_id`.
        factory: message world to build in; default RosbagsFactory().
        frame_id: frame of the default header.

    Returns:
        A dvs_msgs/EventArray of the factory's world.

    Raises:
        ConversionError: not an event array, or an event outside width x height or with polarity not 0/1.
    """
    factory = factory if factory is not None else RosbagsFactory()
    events = _check_events(events, width, height)
    if header is None:
        header = make_header(factory, int(events["t"][0]) if events.size else 0, frame_id)
    sec, nanosec = np.divmod(events["t"].astype(np.int64), 1_000_000_000)
    items = [
        factory.make("dvs_msgs/msg/Event", x=x, y=y, polarity=bool(p),
                     ts=factory.make("builtin_interfaces/msg/Time", sec=s, nanosec=n))
        for x, y, p, s, n in zip(events["x"].tolist(), events["y"].tolist(), events["p"].tolist(),
                                 sec.tolist(), nanosec.tolist())
    ]
    return factory.make(EVENT_ARRAY_TYPE, header=header, height=height, width=width, events=items)


# ------------------------------------------------------------------------------------------------
# EVT 3.0


class Evt3Decoder:
    """Decodes a stream of EVT 3.0 buffers, carrying the decoder state from one buffer to the next.

    Use one decoder per topic (or .raw file) and feed it the packets in order, as
    event_camera_codecs does: a real packet may start with events whose row, time or vector base
    was set in the previous packet. Events before the stream has established a row and a time
    (a recording that starts mid-stream) are dropped and counted in `dropped`, as
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
        # -1 = not yet set by the stream; base_x includes the auto-increments of vectors seen since.
        self._y, self._high, self._base_x, self._pol, self._loops, self._low = -1, -1, -1, 0, 0, 0

    def decode(self, data: Any, *, big_endian: bool = False) -> np.ndarray:
        """One buffer of the stream → events with `t` in sensor nanoseconds.

        Args:
            data: the evt3 bytes (bytes, uint8 array, or a uint8[] message field).
            big_endian: the words are big-endian (Prophesee sensors send little-endian by default).

        Returns:
            EVENT_DTYPE array in stream order.

        Raises:
            ConversionError: odd byte count, a reserved word type, or an event outside the sensor.
                The state is still advanced past a buffer with events outside the sensor, so the
                stream goes on with the next buffer.
        """
        return self._decode(data, big_endian, strict=False)

    def _decode(self, data: Any, big_endian: bool, strict: bool, stamp: int | None = None) -> np.ndarray:
        """Decode one buffer; `t` is sensor time, or with `stamp` ROS time (stamp at the first event)."""
        raw = as_bytes(data)
        if raw.size % 2:
            raise ConversionError(
                f"evt3 payload has an odd byte count ({raw.size}); accepted: whole 16-bit words")
        words = raw.view(">u2" if big_endian else "<u2")
        if words.size == 0:
            return _empty_events()
        types = words >> 12
        unknown = (types == 0x1) | ((types - np.uint16(0xB)) <= 2)  # 0x1, 0xB..0xD are reserved
        if unknown.any():
            bad = sorted({int(v) for v in np.unique(types[unknown])})
            raise ConversionError(
                f"evt3 word type(s) {[hex(v) for v in bad]} are not EVT 3.0 types; accepted: "
                f"{', '.join(hex(v) for v in _KNOWN_TYPES)}")

        # Split the words into event words (ADDR_X, VECT_12, VECT_8) and state words (the rest).
        # Event word r has ev[r] - r state words before it, so the state it sees is the running
        # count of each kind of state word at that point: a table lookup, no Python loop.
        is_event = (types == ADDR_X) | ((types - np.uint16(VECT_12)) <= 1)
        ev = np.flatnonzero(is_event)
        st = np.flatnonzero(~is_event)
        st_words = words[st]
        st_types = st_words >> 12
        st_payload = st_words & 0x0FFF
        states_before = ev - np.arange(ev.size)

        is_y = st_types == ADDR_Y
        y_vals = _after(self._y, st_payload[is_y] & 0x7FF)
        is_high = st_types == TIME_HIGH
        is_low = st_types == TIME_LOW
        high_vals = self._high_times(st_payload[is_high])
        low_vals = _after(self._low, st_payload[is_low])
        is_base = st_types == VECT_BASE_X
        base_at = np.flatnonzero(is_base)
        base_payload = st_payload[base_at]
        base_vals = _after(self._base_x, base_payload & 0x7FF)
        pol_vals = _after(self._pol, base_payload >> 11)
        self._low = int(low_vals[-1])

        ev_words = words[ev]
        ev_types = ev_words >> 12
        ev_payload = ev_words & 0x0FFF
        # Each vector moves the base x on by its size; the x of a vector's first pixel is the last
        # VECT_BASE_X plus the sizes of the vectors between them.
        sizes = np.where(ev_types == VECT_12, np.int32(12), np.where(ev_types == VECT_8, np.int32(8), np.int32(0)))
        size_sum = _after(0, np.cumsum(sizes, dtype=np.int32))
        size_at_base = _after(0, size_sum[st[base_at] - base_at])
        self._y, self._pol = int(y_vals[-1]), int(pol_vals[-1])
        self._base_x = int(base_vals[-1]) + int(size_sum[-1] - size_at_base[-1]) if base_vals[-1] >= 0 else -1
        if strict:
            self._check_no_truncated_vector(ev_types, st, base_at)
        if ev.size == 0:
            return _empty_events()

        y_ev = y_vals[_running_count(is_y)[states_before]]
        # TIME_HIGH keeps the low 12 bits (Prophesee's reference decoder does the same).
        us_ev = ((high_vals[_running_count(is_high)[states_before]] << 12)
                 | low_vals[_running_count(is_low)[states_before]])
        base_ev = _running_count(is_base)[states_before]
        is_vec = ev_types != ADDR_X
        base_known = ~is_vec | (base_vals[base_ev] >= 0)
        x0 = np.where(is_vec, base_vals[base_ev] + size_sum[:-1] - size_at_base[base_ev], ev_payload & 0x7FF)
        pol = np.where(is_vec, pol_vals[base_ev], ev_payload >> 11)
        mask = np.where(ev_types == VECT_12, ev_payload,
                        np.where(ev_types == VECT_8, ev_payload & 0xFF, np.uint16(1))).astype("<u2", copy=False)

        valid = (y_ev >= 0) & (us_ev >= 0) & base_known
        if not valid.all():
            if strict:
                self._raise_missing_state(y_ev, us_ev, base_known, ev)
            self.dropped += int(np.bitwise_count(mask[~valid]).sum())
            x0, y_ev, pol, us_ev, mask = x0[valid], y_ev[valid], pol[valid], us_ev[valid], mask[valid]
            if x0.size == 0:
                return _empty_events()
        last_x = np.where(mask != 0, x0 + _HIGHEST_BIT[mask], 0)  # an empty vector holds no event
        _check_range(int(last_x.max()), int(y_ev.max()), self.width, self.height, "evt3 stream")

        # One record per event word, repeated once per set validity bit (ADDR_X = a vector with one
        # bit set); each copy's x then gets the index of its bit, found in row-major (stream) order.
        words_out = np.empty(mask.size, dtype=EVENT_DTYPE)
        words_out["x"], words_out["y"], words_out["p"] = x0, y_ev, pol
        words_out["t"] = us_ev * 1000 if stamp is None else (us_ev - us_ev[0]) * 1000 + stamp
        if not is_vec.any():  # no vectors: one event per word
            return words_out
        out = np.repeat(words_out, np.bitwise_count(mask))
        bits = np.unpackbits(mask.view(np.uint8).reshape(-1, 2), axis=1, bitorder="little").view(bool)
        out["x"] += (np.flatnonzero(bits) & 15).astype(np.uint16)
        return out

    def _high_times(self, highs: np.ndarray) -> np.ndarray:
        """TIME_HIGH values with wrap-arounds unwrapped (units of 4096 µs), after the carried-in one (< 0: none)."""
        highs = highs.astype(np.int64)
        previous = np.concatenate(([self._high], highs[:-1]))
        loops = self._loops + np.cumsum((previous >= 0) & (previous - highs >= _WRAP_MIN_STEP))
        carried = self._high + (self._loops << 12) if self._high >= 0 else -(1 << 40)
        if highs.size:
            self._high, self._loops = int(highs[-1]), int(loops[-1])
        return _after(carried, highs + (loops << 12), np.int64)

    @staticmethod
    def _check_no_truncated_vector(ev_types: np.ndarray, st: np.ndarray, base_at: np.ndarray) -> None:
        if base_at.size and not (ev_types[st[base_at[-1]] - base_at[-1]:] != ADDR_X).any():
            raise ConversionError(
                f"evt3 packet ends after a VECT_BASE_X (word {int(st[base_at[-1]])}) with no VECT_12/VECT_8 after it "
                "(truncated vector); accepted: a self-contained packet")

    @staticmethod
    def _raise_missing_state(y_ev: np.ndarray, us_ev: np.ndarray, base_known: np.ndarray, ev: np.ndarray) -> None:
        for missing, what in ((y_ev < 0, "EVT_ADDR_Y"), (us_ev < 0, "EVT_TIME_HIGH"), (~base_known, "VECT_BASE_X")):
            if missing.any():
                raise ConversionError(
                    f"evt3 packet has an event word (word {int(ev[np.argmax(missing)])}) before any {what}; "
                    "accepted: a self-contained packet (use Evt3Decoder to carry state across packets of a stream)")


def _running_count(mask: np.ndarray) -> np.ndarray:
    """counts[k] = number of True among mask[:k] (length mask.size + 1); int32 halves the memory traffic."""
    counts = np.empty(mask.size + 1, dtype=np.int32)
    counts[0] = 0
    np.cumsum(mask, out=counts[1:])
    return counts


def _after(initial: int, values: np.ndarray, dtype: type = np.int32) -> np.ndarray:
    """[initial, *values]: a state table whose entry k is the state after k state words."""
    table = np.empty(values.size + 1, dtype=dtype)
    table[0] = initial
    table[1:] = values
    return table


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
    events = _check_events(events, width, height)
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


# ------------------------------------------------------------------------------------------------
# event_camera_msgs/EventPacket


def packet_to_events(msg: Any, decoder: Evt3Decoder | None = None) -> np.ndarray:
    """event_camera_msgs/EventPacket ("evt3" or "mono") → events with ROS-time `t` (see module docstring).

    Args:
        msg: an EventPacket of either message world.
        decoder: for evt3 streams, the topic's `Evt3Decoder`, which carries the decoder state from
            the previous packets (needed for real metavision_driver recordings). Without it the
            packet must be self-contained (the state it needs set within it).

    Returns:
        EVENT_DTYPE array in stream order.

    Raises:
        ConversionError: unsupported encoding, truncated or malformed payload, events outside the
            sensor, or (without a decoder) events that depend on state from an earlier packet.
    """
    encoding = str(msg.encoding)
    width, height = int(msg.width), int(msg.height)
    stamp = stamp_to_ns(msg.header.stamp)
    big_endian = bool(msg.is_bigendian)
    if encoding == "mono":
        return _mono_to_events(as_bytes(msg.events), width, height, stamp, big_endian)
    if encoding != "evt3":
        raise ConversionError(
            f"event packet encoding {encoding!r} is not supported; supported: {', '.join(PACKET_ENCODINGS)}")
    strict = decoder is None
    if decoder is None:
        decoder = Evt3Decoder(width, height)
    elif (decoder.width, decoder.height) != (width, height):
        raise ConversionError(
            f"event packet is {width}x{height} but its decoder was made for {decoder.width}x{decoder.height}; "
            "accepted: one Evt3Decoder per sensor")
    return decoder._decode(msg.events, big_endian, strict, stamp)


def events_to_packet(
    events: np.ndarray,
    width: int,
    height: int,
    *,
    header: Any | None = None,
    factory: MessageFactory | None = None,
    seq: int = 0,
    frame_id: str = "",
    encoding: str = "evt3",
) -> Any:
    """Events → event_camera_msgs/EventPacket, as metavision_driver ("evt3") or older drivers ("mono") publish.

    With the default header (stamped with the first event's time) `packet_to_events` gives back
    the events' times, floored to µs for evt3 (relative to the first event) and exact for mono.

    Args:
        events: EVENT_DTYPE array sorted by time.
        width, height: sensor size.
        header: header to use; default: stamped with the first event's time and `frame_id`.
        factory: message world to build in; default RosbagsFactory().
        seq: packet sequence number.
        frame_id: frame of the default header.
        encoding: "evt3" (default; sensor time = event time in µs, `time_base` 0 as metavision_driver
            sets it) or "mono" (`time_base` = header stamp, dt = t - stamp in ns).

    Returns:
        An EventPacket of the factory's world.

    Raises:
        ConversionError: unsupported encoding, events outside the sensor or unsorted, or (mono) an
            event earlier than the header stamp or more than 2**32 - 1 ns after it.
    """
    factory = factory if factory is not None else RosbagsFactory()
    events = _check_events(events, width, height)
    if header is None:
        header = make_header(factory, int(events["t"][0]) if events.size else 0, frame_id)
    if encoding == "evt3":
        payload, time_base = encode_evt3(events, width, height), 0
    elif encoding == "mono":
        time_base = stamp_to_ns(header.stamp)
        payload = _events_to_mono(events, time_base)
    else:
        raise ConversionError(
            f"event packet encoding {encoding!r} is not supported; supported: {', '.join(PACKET_ENCODINGS)}")
    return factory.make(EVENT_PACKET_TYPE, header=header, height=height, width=width, seq=seq,
                        time_base=time_base, encoding=encoding, is_bigendian=False, events=payload)


def _mono_to_events(raw: np.ndarray, width: int, height: int, stamp: int, big_endian: bool) -> np.ndarray:
    # 64-bit words: polarity bit 63, y bits 62..48, x bits 47..32, dt (ns) bits 31..0.
    if raw.size % 8:
        raise ConversionError(
            f"mono event payload has {raw.size} bytes, not a multiple of 8; accepted: whole 64-bit words")
    words = raw.view(">u8" if big_endian else "<u8")
    if words.size == 0:
        return _empty_events()
    x = (words >> np.uint64(32)) & np.uint64(0xFFFF)
    y = (words >> np.uint64(48)) & np.uint64(0x7FFF)
    _check_range(int(x.max()), int(y.max()), width, height, "mono event packet")
    t = (words & np.uint64(0xFFFFFFFF)).astype(np.int64) + stamp
    return _fill(x, y, words >> np.uint64(63), t)


def _events_to_mono(events: np.ndarray, time_base: int) -> np.ndarray:
    if events.size == 0:
        return np.empty(0, dtype=np.uint8)
    dt = events["t"].astype(np.int64) - time_base
    if dt.min() < 0 or dt.max() > 0xFFFFFFFF:
        raise ConversionError(
            "mono encoding stores dt = t - header stamp in 32 bits of ns; accepted: 0 <= dt < 2**32 "
            f"(got {int(dt.min())}..{int(dt.max())})")
    words = (
        (events["p"].astype(np.uint64) << np.uint64(63))
        | (events["y"].astype(np.uint64) << np.uint64(48))
        | (events["x"].astype(np.uint64) << np.uint64(32))
        | dt.astype(np.uint64)
    )
    return words.astype("<u8").view(np.uint8)
