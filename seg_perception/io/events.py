"""Event-camera messages (dvs_msgs/EventArray; EventPacket evt3, mono, libcaer, libcaer_cmp) ⇄ event arrays.

Every decoder returns, and every encoder takes, one layout: a 1-D structured array of
`EVENT_DTYPE` in stream order:

    x  uint16  column, 0 ≤ x < width
    y  uint16  row, 0 ≤ y < height
    p  uint8   polarity: 1 = ON (brighter), 0 = OFF (darker)
    t  int64   absolute time in nanoseconds on the ROS clock of the message header

External trigger edges, where the encoding carries them (evt3 EXT_TRIGGER; the "trigger" encoding
of older metavision_driver versions, which carries nothing else), come beside the CD events from
`packet_to_events_and_triggers`, as a `TRIGGER_DTYPE` array: t (ns, same clock as the events), id
(the trigger input), p (1 = rising edge, 0 = falling).

Time of an event, per message type:

- dvs_msgs/EventArray: `t` is the event's own `ts` stamp (the header stamp is not used).
- event_camera_msgs/EventPacket "mono" and "trigger": `t = header.stamp + dt`, as the
  event_camera_msgs README gives for the best ROS-time estimate (`time_base + dt` would be sensor
  time instead).
- event_camera_msgs/EventPacket "evt3": the stream carries sensor time only (µs, 24 bits plus
  wrap-arounds); metavision_driver sets `time_base = 0` ("not used") and stamps the header with the
  ROS time at which the packet's first raw buffer arrived. A self-contained packet decoded alone gets
  `t = header.stamp + (sensor_t - sensor_t_first) * 1000`, `sensor_t_first` being the sensor time of
  its first event (CD or trigger). A stream decoded with its `Evt3Decoder` is aligned to ROS time
  once, at its first packet, and keeps the sensor clock after that (`t = sensor_t * 1000 + offset`):
  header stamps jitter with the driver's buffering (by milliseconds), and anchoring every packet to
  its own stamp made time run backwards at packet boundaries. The offset is set again only on a
  clock jump. `Evt3Decoder.decode` returns the sensor time itself (`t` = sensor µs × 1000).
- event_camera_msgs/EventPacket "libcaer" and "libcaer_cmp" (libcaer_driver: DAVIS, DVXplorer):
  `time_base` is ROS time already, `t = time_base + the event's offset` (see `libcaer.py`).

evt3 packets cut from a stream need the decoder state of the packets before them: pass the topic's
`Evt3Decoder` (see `evt3.py`); `packet_to_events(msg)` alone decodes a self-contained packet and
rejects one that is not. The other encodings are self-contained per message.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .errors import ConversionError
from .event_layout import EVENT_DTYPE, TRIGGER_DTYPE, check_events, check_range, empty_events, empty_triggers
from .evt3 import Evt3Decoder, encode_evt3
from .libcaer import libcaer_cmp_to_events, libcaer_to_events
from .messages import MessageFactory, RosbagsFactory, as_bytes, make_header, stamp_to_ns

__all__ = [
    "EVENT_DTYPE", "TRIGGER_DTYPE", "Evt3Decoder", "encode_evt3", "event_array_to_events", "events_to_event_array",
    "events_to_packet", "packet_to_events", "packet_to_events_and_triggers",
]

EVENT_ARRAY_TYPE = "dvs_msgs/msg/EventArray"
EVENT_PACKET_TYPE = "event_camera_msgs/msg/EventPacket"
PACKET_ENCODINGS = ("evt3", "mono", "libcaer", "libcaer_cmp", "trigger")  # decoded
WRITTEN_ENCODINGS = ("evt3", "mono")


def _fill(x: Any, y: Any, p: Any, t: Any) -> np.ndarray:
    out = np.empty(len(t), dtype=EVENT_DTYPE)
    out["x"], out["y"], out["p"], out["t"] = x, y, p, t
    return out


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
        return empty_events()
    fields = np.array([(e.x, e.y, e.polarity, e.ts.sec, e.ts.nanosec) for e in events], dtype=np.int64)
    width, height = int(msg.width), int(msg.height)
    check_range(int(fields[:, 0].max()), int(fields[:, 1].max()), width, height, "dvs_msgs/EventArray")
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
    events = check_events(events, width, height)
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


# ------------------------------------------------------------------------------------------------
# event_camera_msgs/EventPacket


def packet_to_events(msg: Any, decoder: Evt3Decoder | None = None) -> np.ndarray:
    """event_camera_msgs/EventPacket → CD events with ROS-time `t` (see `packet_to_events_and_triggers`)."""
    return packet_to_events_and_triggers(msg, decoder)[0]


def packet_to_events_and_triggers(msg: Any, decoder: Evt3Decoder | None = None) -> tuple[np.ndarray, np.ndarray]:
    """event_camera_msgs/EventPacket (evt3, mono, libcaer, libcaer_cmp, trigger) → (CD events, trigger edges).

    Args:
        msg: an EventPacket of either message world.
        decoder: for evt3 streams, the topic's `Evt3Decoder`, which carries the decoder state from
            the previous packets (needed for real metavision_driver recordings). Without it the
            packet must be self-contained (the state it needs set within it). The other
            encodings are self-contained and do not use it.

    Returns:
        EVENT_DTYPE array and TRIGGER_DTYPE array (empty for encodings without triggers), each in
        stream order, `t` in ROS time (see the module docstring).

    Raises:
        ConversionError: unsupported encoding, truncated or malformed payload, events outside the
            sensor, or (evt3 without a decoder) events that depend on state from an earlier packet.
    """
    encoding = str(msg.encoding)
    width, height = int(msg.width), int(msg.height)
    big_endian = bool(msg.is_bigendian)
    if encoding == "evt3":
        strict = decoder is None
        if decoder is None:
            decoder = Evt3Decoder(width, height)
        elif (decoder.width, decoder.height) != (width, height):
            raise ConversionError(
                f"event packet is {width}x{height} but its decoder was made for {decoder.width}x{decoder.height}; "
                "accepted: one Evt3Decoder per sensor")
        return decoder.decode_words(msg.events, big_endian, strict, stamp_to_ns(msg.header.stamp))
    if encoding == "mono":
        events = _mono_to_events(as_bytes(msg.events), width, height, stamp_to_ns(msg.header.stamp), big_endian)
    elif encoding == "libcaer_cmp":
        events = libcaer_cmp_to_events(as_bytes(msg.events), width, height, int(msg.time_base), big_endian)
    elif encoding == "libcaer":
        events = libcaer_to_events(as_bytes(msg.events), width, height, int(msg.time_base), big_endian)
    elif encoding == "trigger":
        return empty_events(), _trigger_words_to_triggers(as_bytes(msg.events), stamp_to_ns(msg.header.stamp),
                                                          big_endian)
    else:
        raise ConversionError(
            f"event packet encoding {encoding!r} is not supported; supported: {', '.join(PACKET_ENCODINGS)}")
    return events, empty_triggers()


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
    events = check_events(events, width, height)
    if header is None:
        header = make_header(factory, int(events["t"][0]) if events.size else 0, frame_id)
    if encoding == "evt3":
        payload, time_base = encode_evt3(events, width, height), 0
    elif encoding == "mono":
        time_base = stamp_to_ns(header.stamp)
        payload = _events_to_mono(events, time_base)
    else:
        raise ConversionError(
            f"event packet encoding {encoding!r} is not supported for writing; supported: "
            f"{', '.join(WRITTEN_ENCODINGS)}")
    return factory.make(EVENT_PACKET_TYPE, header=header, height=height, width=width, seq=seq,
                        time_base=time_base, encoding=encoding, is_bigendian=False, events=payload)


def _mono_to_events(raw: np.ndarray, width: int, height: int, stamp: int, big_endian: bool) -> np.ndarray:
    # 64-bit words: polarity bit 63, y bits 62..48, x bits 47..32, dt (ns) bits 31..0.
    if raw.size % 8:
        raise ConversionError(
            f"mono event payload has {raw.size} bytes, not a multiple of 8; accepted: whole 64-bit words")
    words = raw.view(">u8" if big_endian else "<u8")
    if words.size == 0:
        return empty_events()
    x = (words >> np.uint64(32)) & np.uint64(0xFFFF)
    y = (words >> np.uint64(48)) & np.uint64(0x7FFF)
    check_range(int(x.max()), int(y.max()), width, height, "mono event packet")
    t = (words & np.uint64(0xFFFFFFFF)).astype(np.int64) + stamp
    return _fill(x, y, words >> np.uint64(63), t)


def _trigger_words_to_triggers(raw: np.ndarray, stamp: int, big_endian: bool) -> np.ndarray:
    # 64-bit words: edge bit 63, trigger id bits 55..48 (as event_camera_codecs reads them; 0 where the
    # event_camera_msgs README leaves them unused), dt (ns) bits 31..0.
    if raw.size % 8:
        raise ConversionError(
            f"trigger event payload has {raw.size} bytes, not a multiple of 8; accepted: whole 64-bit words")
    words = raw.view(">u8" if big_endian else "<u8")
    out = np.empty(words.size, dtype=TRIGGER_DTYPE)
    out["t"] = (words & np.uint64(0xFFFFFFFF)).astype(np.int64) + stamp
    out["id"] = (words >> np.uint64(48)) & np.uint64(0xFF)
    out["p"] = words >> np.uint64(63)
    return out


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
