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
  ROS time at which the packet's first raw buffer arrived. A self-contained packet decoded alone gets
  `t = header.stamp + (sensor_t - sensor_t_first) * 1000`, `sensor_t_first` being the sensor time of
  its first event. A stream decoded with its `Evt3Decoder` is aligned to ROS time once, at its first
  packet, and keeps the sensor clock after that (`t = sensor_t * 1000 + offset`): header stamps
  jitter with the driver's buffering (by milliseconds), and anchoring every packet to its own stamp
  made time run backwards at packet boundaries. The offset is set again only on a clock jump.
  `Evt3Decoder.decode` returns the sensor time itself (`t` = sensor µs × 1000).

evt3 (Prophesee EVT 3.0, what metavision_driver publishes) is a stream of 16-bit words, the type in
bits 15..12; the decoder keeps state (current y, time, vector base x and polarity). Only CD
(contrast change) events are decoded; EXT_TRIGGER, OTHERS, CONTINUED and padding words are skipped. A packet that
starts mid-stream (metavision_driver cuts the raw stream at arbitrary points) is only decodable
with the state left by the packets before it: `Evt3Decoder` carries that state across packets,
while `packet_to_events(msg)` alone decodes a self-contained packet and rejects one that is not.
"""
from __future__ import annotations

import functools
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
CLOCK_JUMP_NS = 500_000_000  # a stream whose stamps and sensor clock disagree by more is aligned again
_KNOWN_TYPES = (ADDR_Y, ADDR_X, VECT_BASE_X, VECT_12, VECT_8, TIME_LOW, CONTINUED_4, TIME_HIGH, PADDING,
                EXT_TRIGGER, OTHERS, CONTINUED_12)
# A TIME_HIGH that falls back by at least this much (of 4096) is a wrap of the 24-bit µs counter;
# a smaller step back is jitter, as in Prophesee's reference decoder (LoopThreshold = 10 << 12).
_WRAP_MIN_STEP = 4096 - 1 - 10



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
        self.realigned = 0  # clock jumps the stream's ROS-time alignment was set again for
        self._offset_ns: int | None = None  # ROS time - sensor time, from the stream's first packet
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

        # The stream is a state machine (row, time, vector base carry over), decoded word by word in
        # compiled code (numba): a vectorised numpy decoder was 2-3x slower on dense streams.
        vector_masks = np.where(types == VECT_12, words & 0x0FFF, np.where(types == VECT_8, words & 0x00FF, 0))
        bound = int(np.count_nonzero(types == ADDR_X)) + int(np.bitwise_count(vector_masks.astype(np.uint16)).sum())
        x, y = np.empty(bound, np.uint16), np.empty(bound, np.uint16)
        p, us = np.empty(bound, np.uint8), np.empty(bound, np.int64)
        state = np.array([self._y, self._high, self._base_x, self._pol, self._loops, self._low], np.int64)
        report = np.zeros(8, np.int64)
        count = _compiled_decoder()(words.astype(np.uint16, copy=False), state, x, y, p, us, report)  # native order
        self._y, self._high, self._base_x, self._pol, self._loops, self._low = (int(v) for v in state)
        dropped, last_base, vector_after, max_x = (int(v) for v in report[:4])
        missing = report[4:7]
        if strict and last_base >= 0 and not vector_after:
            raise ConversionError(
                f"evt3 packet ends after a VECT_BASE_X (word {last_base}) with no VECT_12/VECT_8 after it "
                "(truncated vector); accepted: a self-contained packet")
        if strict and (missing >= 0).any():
            kind = int(np.argmax(missing >= 0))
            raise ConversionError(
                f"evt3 packet has an event word (word {int(missing[kind])}) before any "
                f"{('EVT_ADDR_Y', 'EVT_TIME_HIGH', 'VECT_BASE_X')[kind]}; accepted: a self-contained packet "
                "(use Evt3Decoder to carry state across packets of a stream)")
        self.dropped += dropped
        if count == 0:
            return _empty_events()
        _check_range(max_x, int(y[:count].max()), self.width, self.height, "evt3 stream")
        out = np.empty(count, dtype=EVENT_DTYPE)
        out["x"], out["y"], out["p"] = x[:count], y[:count], p[:count]
        if stamp is None:
            out["t"] = us[:count] * 1000
        elif strict:  # a self-contained packet: its first event at its header stamp
            out["t"] = (us[:count] - us[0]) * 1000 + stamp
        else:
            out["t"] = us[:count] * 1000 + self._align(stamp, int(us[0]) * 1000)
        return out

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
def _compiled_decoder() -> Any:
    """`_decode_evt3` compiled with numba, on first use (importing numba costs half a second)."""
    from numba import njit

    return njit(cache=True)(_decode_evt3)


def _decode_evt3(words, state, x_out, y_out, p_out, us_out, report):
    """Decode EVT 3.0 words; state = [y, time_high, base_x, polarity, wrap loops, time_low] (-1: unset)
    is read and written back. report = [dropped events, last VECT_BASE_X word (-1: none), a vector
    followed it, largest x, first event word missing a row, a time, a vector base (-1: none)].
    Returns the number of events written."""
    y, high, base, pol, loops, low = state[0], state[1], state[2], state[3], state[4], state[5]
    count, dropped, last_base, vector_after, max_x = 0, 0, -1, 1, 0
    missing_y, missing_time, missing_base = -1, -1, -1
    for i in range(words.size):
        word = np.int64(words[i])
        kind, payload = word >> 12, word & 0xFFF
        if kind == ADDR_Y:
            y = payload & 0x7FF
        elif kind == TIME_LOW:
            low = payload
        elif kind == TIME_HIGH:
            if high >= 0 and high - payload >= _WRAP_MIN_STEP:
                loops += 1
            high = payload
        elif kind == VECT_BASE_X:
            base, pol, last_base, vector_after = payload & 0x7FF, payload >> 11, i, 0
        elif kind == ADDR_X or kind == VECT_12 or kind == VECT_8:
            if kind == ADDR_X:
                mask, x0, polarity = 1, payload & 0x7FF, payload >> 11
            else:
                mask = payload if kind == VECT_12 else payload & 0xFF
                x0, polarity, vector_after = base, pol, 1
            if y < 0 or high < 0 or x0 < 0:
                if y < 0 and missing_y < 0:
                    missing_y = i
                if high < 0 and missing_time < 0:
                    missing_time = i
                if x0 < 0 and missing_base < 0:
                    missing_base = i
                for bit in range(12):
                    dropped += (mask >> bit) & 1
            else:
                time_us = ((high + (loops << 12)) << 12) | low
                for bit in range(12):
                    if (mask >> bit) & 1:
                        x_out[count], y_out[count], p_out[count], us_out[count] = x0 + bit, y, polarity, time_us
                        max_x = max(max_x, x0 + bit)
                        count += 1
            if kind != ADDR_X and base >= 0:
                base += 12 if kind == VECT_12 else 8
    state[0], state[1], state[2], state[3], state[4], state[5] = y, high, base, pol, loops, low
    report[0], report[1], report[2], report[3] = dropped, last_base, vector_after, max_x
    report[4], report[5], report[6] = missing_y, missing_time, missing_base
    return count


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
