"""Event-camera conversions: dvs_msgs/EventArray and event_camera_msgs/EventPacket (evt3, mono) ⇄ event arrays."""
from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import cdr_roundtrip
from seg_perception.io.errors import ConversionError
from seg_perception.io.events import (
    EVENT_DTYPE,
    TRIGGER_DTYPE,
    Evt3Decoder,
    encode_evt3,
    event_array_to_events,
    events_to_event_array,
    events_to_packet,
    packet_to_events,
    packet_to_events_and_triggers,
)
from seg_perception.io.messages import RosbagsFactory, make_header

PACKET = "event_camera_msgs/msg/EventPacket"
ARRAY = "dvs_msgs/msg/EventArray"
STAMP = 1_700_000_000_123_456_789


def _skip_unless_in_world(factory, typename: str) -> None:
    """The rclpy world has no dvs_msgs / event_camera_msgs Python packages here: only rosbags carries them."""
    if isinstance(factory, RosbagsFactory):
        return
    package = typename.split("/")[0]
    try:
        __import__(f"{package}.msg")
    except ImportError:
        pytest.skip(f"{package} has no rclpy message package in this ROS install; {typename} exists in the rosbags "
                    "world only")


def _events(rows) -> np.ndarray:
    out = np.empty(len(rows), dtype=EVENT_DTYPE)
    for i, (x, y, p, t) in enumerate(rows):
        out[i] = (x, y, p, t)
    return out


def _words(*words: int) -> bytes:
    return b"".join(struct.pack("<H", w) for w in words)


# A hand-written EVT 3.0 stream (Prophesee "EVT 3.0 Format": type in bits 15..12) and the events it holds,
# as (x, y, polarity, sensor µs).
HIGH0 = 0xFFE
HAND_WORDS = [
    0x8000 | HIGH0,            # EVT_TIME_HIGH
    0x6000 | 0x100,            # EVT_TIME_LOW: t = 0xFFE100 µs
    0x0800 | 5,                # EVT_ADDR_Y y=5, system-type bit 11 set (not part of y)
    0x2000 | 0x800 | 10,       # EVT_ADDR_X pol=1 x=10
    0x3000 | 100,              # VECT_BASE_X pol=0 x=100
    0x4000 | 0x805,            # VECT_12 bits 0, 2, 11 -> x 100, 102, 111; base moves to 112
    0x5000 | 0xF81,            # VECT_8 bits 0, 7 (bits 11..8 unused) -> x 112, 119; base moves to 120
    0x4000 | 0x001,            # VECT_12 bit 0 -> x 120
    0x6000 | 0x200,            # EVT_TIME_LOW
    0x0000 | 6,                # EVT_ADDR_Y y=6
    0x2000 | 7,                # EVT_ADDR_X pol=0 x=7
    0xE000 | 0x01A,            # OTHERS (MIPI padding), ignored
    0xF123,                    # CONTINUED_12, ignored
    0xA001,                    # EXT_TRIGGER, not a CD event
    0x9000,                    # padding code, ignored
    0x3800 | 30,               # VECT_BASE_X pol=1 x=30
    0x5000 | 0x003,            # VECT_8 bits 0, 1 -> x 30, 31 (pol 1)
    0x8000 | 0xFFF,            # EVT_TIME_HIGH
    0x6000 | 0x005,            # EVT_TIME_LOW: t = 0xFFF005
    0x2800 | 1,                # EVT_ADDR_X pol=1 x=1
    0x8000 | 0x000,            # EVT_TIME_HIGH wraps 0xFFF -> 0x000: +2**24 µs, low 0x005 kept
    0x2000 | 2,                # EVT_ADDR_X pol=0 x=2
    0x6000 | 0x003,            # EVT_TIME_LOW
    0x8000 | 0x001,            # EVT_TIME_HIGH
    0x2800 | 3,                # EVT_ADDR_X pol=1 x=3
    0x8000 | 0x000,            # EVT_TIME_HIGH one step back: jitter, not a wrap
    0x2000 | 4,                # EVT_ADDR_X pol=0 x=4
]
WRAP = 1 << 24
HAND_EVENTS = [
    (10, 5, 1, 0xFFE100),
    (100, 5, 0, 0xFFE100), (102, 5, 0, 0xFFE100), (111, 5, 0, 0xFFE100),
    (112, 5, 0, 0xFFE100), (119, 5, 0, 0xFFE100),
    (120, 5, 0, 0xFFE100),
    (7, 6, 0, 0xFFE200),
    (30, 6, 1, 0xFFE200), (31, 6, 1, 0xFFE200),
    (1, 6, 1, 0xFFF005),
    (2, 6, 0, WRAP + 0x000005),
    (3, 6, 1, WRAP + 0x001003),
    (4, 6, 0, WRAP + 0x000003),
]


def _expected(rows, t_of=lambda us: us * 1000) -> np.ndarray:
    return _events([(x, y, p, t_of(us)) for x, y, p, us in rows])


def _packet(factory, payload: bytes, width=640, height=480, encoding="evt3", stamp=STAMP, big_endian=False,
            time_base=0):
    return factory.make(PACKET, header=make_header(factory, stamp, "cam"), width=width, height=height,
                        encoding=encoding, is_bigendian=big_endian, events=np.frombuffer(payload, np.uint8),
                        time_base=time_base)


def _reference_evt3(data: bytes) -> list[tuple[int, int, int, int]]:
    """Word-by-word EVT 3.0 decoder written from the Prophesee spec, to check the encoder independently."""
    out, y, pol, base, high, low, loops = [], None, 0, None, None, 0, 0
    for (word,) in struct.iter_unpack("<H", data):
        kind, payload = word >> 12, word & 0xFFF
        if kind == 0x0:
            y = payload & 0x7FF
        elif kind == 0x8:
            if high is not None and high - payload >= 4085:
                loops += 1
            high = payload
        elif kind == 0x6:
            low = payload
        elif kind == 0x2:
            out.append((payload & 0x7FF, y, payload >> 11, (loops << 24) | (high << 12) | low))
        elif kind == 0x3:
            pol, base = payload >> 11, payload & 0x7FF
        elif kind in (0x4, 0x5):
            size = 12 if kind == 0x4 else 8
            out.extend((base + i, y, pol, (loops << 24) | (high << 12) | low)
                       for i in range(size) if payload >> i & 1)
            base += size
    return out


# ---------------------------------------------------------------------------------------------- evt3 decoding


def test_hand_built_evt3_stream_decodes_to_known_events():
    decoded = Evt3Decoder(640, 480).decode(_words(*HAND_WORDS))
    np.testing.assert_array_equal(decoded, _expected(HAND_EVENTS))
    assert decoded.dtype == EVENT_DTYPE


def test_hand_built_evt3_packet_gets_ros_time_from_header_stamp():
    events = packet_to_events(_packet(RosbagsFactory(), _words(*HAND_WORDS)))
    first_us = HAND_EVENTS[0][3]
    np.testing.assert_array_equal(events, _expected(HAND_EVENTS, lambda us: STAMP + (us - first_us) * 1000))


def test_big_endian_evt3_words():
    payload = b"".join(struct.pack(">H", w) for w in HAND_WORDS)
    events = packet_to_events(_packet(RosbagsFactory(), payload, big_endian=True))
    assert [tuple(int(v) for v in e)[:3] for e in events] == [e[:3] for e in HAND_EVENTS]


@pytest.mark.parametrize("cut", range(1, len(HAND_WORDS)))
def test_stream_decoder_carries_state_across_packets(cut):
    """metavision_driver cuts the raw stream anywhere: y, time, vector base and wrap count carry over."""
    decoder = Evt3Decoder(640, 480)
    parts = [decoder.decode(_words(*HAND_WORDS[:cut])), decoder.decode(_words(*HAND_WORDS[cut:]))]
    np.testing.assert_array_equal(np.concatenate(parts), _expected(HAND_EVENTS))
    assert decoder.dropped == 0


def test_stream_decoder_drops_events_before_state_like_event_camera_codecs():
    decoder = Evt3Decoder(640, 480)
    # Joined mid-stream: an event and a vector with no row/time/base yet, then a full state.
    first = decoder.decode(_words(0x2000 | 1, 0x4000 | 0x00F, 0x8000 | 1, 0x6000 | 2, 0x2000 | 3, 0x0000 | 4,
                                  0x2800 | 5))
    assert decoder.dropped == 1 + 4 + 1  # the ADDR_X, the 4-bit vector, and the ADDR_X before ADDR_Y
    np.testing.assert_array_equal(first, _expected([(5, 4, 1, (1 << 12) | 2)]))
    later = packet_to_events(_packet(RosbagsFactory(), _words(0x6000 | 9, 0x2000 | 6)), decoder=decoder)
    np.testing.assert_array_equal(later, _expected([(6, 4, 0, 0)], lambda us: STAMP))


def test_a_stream_is_aligned_to_ros_time_once_at_its_first_packet():
    decoder = Evt3Decoder(640, 480)
    factory = RosbagsFactory()
    a = packet_to_events(_packet(factory, _words(*HAND_WORDS[:9]), stamp=STAMP), decoder=decoder)
    # the second packet's stamp is 5 µs late against the sensor clock (driver jitter): its events keep
    # the sensor clock's spacing from the first packet's
    b = packet_to_events(_packet(factory, _words(*HAND_WORDS[9:]), stamp=STAMP + 5_000), decoder=decoder)
    first_us = HAND_EVENTS[0][3]
    assert a["t"][0] == STAMP
    np.testing.assert_array_equal(b["t"], [STAMP + (us - first_us) * 1000 for *_, us in HAND_EVENTS[7:]])


def test_event_time_of_a_recorded_stream_is_continuous_and_follows_the_sensor_clock():
    """A metavision_driver-style recording: the raw stream cut into packets at arbitrary words, each stamped
    with the ROS time its buffer arrived (the first at its first event, later ones 0–4 ms late). Anchoring
    each packet to its own stamp made time run backwards at about half of the boundaries."""
    rng = np.random.default_rng(7)
    sensor_us = np.sort(rng.integers(1_000_000, 1_400_000, 20_000))
    events = np.zeros(sensor_us.size, EVENT_DTYPE)
    events["x"], events["y"] = rng.integers(0, 640, sensor_us.size), rng.integers(0, 480, sensor_us.size)
    events["p"], events["t"] = rng.integers(0, 2, sensor_us.size), sensor_us * 1000
    words = np.frombuffer(encode_evt3(events, 640, 480).tobytes(), "<u2")
    cuts = np.sort(rng.choice(np.arange(1, words.size), 60, replace=False))
    offset = STAMP - int(sensor_us[0]) * 1000  # ROS time = sensor time + offset (the truth)
    decoder, factory, decoded, seen = Evt3Decoder(640, 480), RosbagsFactory(), [], 0
    for i, chunk in enumerate(np.split(words, cuts)):
        first = sensor_us[min(seen, sensor_us.size - 1)]  # the sensor time of the packet's first event, roughly
        late = 0 if i == 0 else int(rng.integers(0, 4_000_000))
        out = packet_to_events(_packet(factory, chunk.tobytes(), stamp=int(first) * 1000 + offset + late),
                               decoder=decoder)
        seen += out.size
        decoded.append(out)
    t = np.concatenate(decoded)["t"]
    assert t.size == sensor_us.size and decoder.realigned == 0
    assert (np.diff(t) >= 0).all()  # monotone across packets
    assert np.abs(t - (sensor_us * 1000 + offset)).max() < 1000  # within one sensor-clock tick (1 µs)


def test_a_clock_jump_realigns_the_stream():
    decoder = Evt3Decoder(640, 480)
    factory = RosbagsFactory()
    packet_to_events(_packet(factory, _words(*HAND_WORDS[:9]), stamp=STAMP), decoder=decoder)
    jumped = packet_to_events(_packet(factory, _words(*HAND_WORDS[9:]), stamp=STAMP + 10_000_000_000),
                              decoder=decoder)
    assert decoder.realigned == 1 and jumped["t"][0] == STAMP + 10_000_000_000


# An EVT 3.0 stream with EXT_TRIGGER words (type 0xA: edge in bit 0, trigger id in bits 11..8) among CD events;
# the first event of the stream is a trigger.
TRIGGER_WORDS = [
    0x8000 | 0x001,            # EVT_TIME_HIGH
    0x6000 | 0x010,            # EVT_TIME_LOW: t = 0x1010 µs
    0xA000 | 0x300 | 1,        # EXT_TRIGGER id 3, rising edge
    0x0000 | 2,                # EVT_ADDR_Y y=2
    0x2000 | 0x800 | 5,        # EVT_ADDR_X pol=1 x=5
    0x6000 | 0x020,            # EVT_TIME_LOW: t = 0x1020 µs
    0xA000 | 0x300 | 0,        # EXT_TRIGGER id 3, falling edge
    0xA000 | 0x0F0 | 1,        # EXT_TRIGGER id 0, rising edge (bits 7..1 unused)
    0x2000 | 6,                # EVT_ADDR_X pol=0 x=6
]
TRIGGER_CD = [(5, 2, 1, 0x1010), (6, 2, 0, 0x1020)]
TRIGGERS = [(0x1010, 3, 1), (0x1020, 3, 0), (0x1020, 0, 1)]  # (sensor µs, id, edge)


def _triggers(rows, t_of=lambda us: us * 1000) -> np.ndarray:
    out = np.empty(len(rows), dtype=TRIGGER_DTYPE)
    for i, (us, trigger_id, edge) in enumerate(rows):
        out[i] = (t_of(us), trigger_id, edge)
    return out


def test_evt3_stream_with_triggers_decodes_to_known_cd_and_trigger_events():
    events, triggers = Evt3Decoder(640, 480).decode_with_triggers(_words(*TRIGGER_WORDS))
    np.testing.assert_array_equal(events, _expected(TRIGGER_CD))
    np.testing.assert_array_equal(triggers, _triggers(TRIGGERS))
    assert triggers.dtype == TRIGGER_DTYPE


def test_evt3_packet_triggers_get_ros_time_from_the_first_event_even_a_trigger():
    events, triggers = packet_to_events_and_triggers(_packet(RosbagsFactory(), _words(*TRIGGER_WORDS)))
    to_ros = lambda us: STAMP + (us - 0x1010) * 1000  # noqa: E731 - the trigger at 0x1010 µs comes first
    np.testing.assert_array_equal(events, _expected(TRIGGER_CD, to_ros))
    np.testing.assert_array_equal(triggers, _triggers(TRIGGERS, to_ros))
    np.testing.assert_array_equal(packet_to_events(_packet(RosbagsFactory(), _words(*TRIGGER_WORDS))), events)


def test_hand_built_stream_trigger_is_decoded_not_skipped():
    _, triggers = Evt3Decoder(640, 480).decode_with_triggers(_words(*HAND_WORDS))
    np.testing.assert_array_equal(triggers, _triggers([(0xFFE200, 0, 1)]))  # the 0xA001 word


@pytest.mark.parametrize("cut", range(1, len(TRIGGER_WORDS)))
def test_triggers_carry_state_across_packets(cut):
    decoder = Evt3Decoder(640, 480)
    parts = [decoder.decode_with_triggers(_words(*TRIGGER_WORDS[:cut])),
             decoder.decode_with_triggers(_words(*TRIGGER_WORDS[cut:]))]
    np.testing.assert_array_equal(np.concatenate([e for e, _ in parts]), _expected(TRIGGER_CD))
    np.testing.assert_array_equal(np.concatenate([t for _, t in parts]), _triggers(TRIGGERS))


def test_trigger_before_any_time_is_dropped_in_a_stream_and_refused_in_a_packet():
    decoder = Evt3Decoder(640, 480)
    events, triggers = decoder.decode_with_triggers(_words(0xA001, *TRIGGER_WORDS))
    assert decoder.dropped == 1
    np.testing.assert_array_equal(triggers, _triggers(TRIGGERS))
    with pytest.raises(ConversionError, match="before any EVT_TIME_HIGH"):
        packet_to_events_and_triggers(_packet(RosbagsFactory(), _words(0xA001, *TRIGGER_WORDS)))


# ---------------------------------------------------------------------------------------------- libcaer_cmp

DAVIS = (346, 260)  # DAVIS 346 sensor width, height
TIME_BASE = 1_700_000_000_000_000_000  # libcaer_driver: ROS time of the time-stamp reset + sensor time elapsed
# libcaer_driver's compressed encoding: code in bits 15..12 (0 TIME_HIGH, 1 TIME_LOW, 2 ADDR_X, 3 ADDR_Y,
# 4 VECT_BASE_Y, 5 VECT_8); x is a column, events are rows in it.
CMP_WORDS = [
    0x2000 | 10,               # ADDR_X x=10
    0x3000 | 0x800 | 4,        # ADDR_Y pol=1 y=4 -> (10, 4) at 0 µs
    0x1000 | 0x005,            # TIME_LOW: 5 µs
    0x4000 | 16,               # VECT_BASE_Y pol=0 y=16
    0x5000 | 0x081,            # VECT_8 bits 0, 7 -> y 16, 23; base moves to 24
    0x5000 | 0x002,            # VECT_8 bit 1 -> y 25; base moves to 32
    0x0000 | 0x002,            # TIME_HIGH 2: t = 2 << 12 | 5 = 8197 µs
    0x2000 | 300,              # ADDR_X x=300
    0x3000 | 7,                # ADDR_Y pol=0 y=7
    0x4000 | 0x800 | 0,        # VECT_BASE_Y pol=1 y=0
    0x5000 | 0xF00 | 0x003,    # VECT_8 bits 0, 1 (bits 11..8 unused) -> y 0, 1
]
CMP_EVENTS = [
    (10, 4, 1, 0),
    (10, 16, 0, 5), (10, 23, 0, 5), (10, 25, 0, 5),
    (300, 7, 0, 8197),
    (300, 0, 1, 8197), (300, 1, 1, 8197),
]


@pytest.mark.parametrize("big_endian", [False, True])
def test_hand_built_libcaer_cmp_packet_decodes_to_known_events(big_endian):
    payload = b"".join(struct.pack(">H" if big_endian else "<H", w) for w in CMP_WORDS)
    msg = _packet(RosbagsFactory(), payload, *DAVIS, encoding="libcaer_cmp", big_endian=big_endian,
                  time_base=TIME_BASE)
    events, triggers = packet_to_events_and_triggers(msg)
    np.testing.assert_array_equal(events, _expected(CMP_EVENTS, lambda us: TIME_BASE + us * 1000))
    assert triggers.size == 0 and triggers.dtype == TRIGGER_DTYPE


@pytest.mark.parametrize("words, match", [
    ([0x2000 | 1, 0x6000], r"word 1 has code 6; accepted: 0..5"),
    ([0x3000 | 1], "word 0 comes before any ADDR_X"),
    ([0x2000 | 1, 0x5000 | 1], "word 1 comes before any VECT_BASE_Y"),
    ([0x2000 | 346, 0x3000], "outside the 346x260 sensor"),
    ([0x2000 | 1, 0x4000 | 255, 0x5000 | 0x80], "y up to 262 outside the 346x260 sensor"),
])
def test_bad_libcaer_cmp_packets(words, match):
    with pytest.raises(ConversionError, match=match):
        packet_to_events(_packet(RosbagsFactory(), _words(*words), *DAVIS, encoding="libcaer_cmp"))


# ---------------------------------------------------------------------------------------------- libcaer


def _caer(x, y, polarity, timestamp_us, valid=1, order="<") -> bytes:
    """One libcaer polarity event: data (bit 0 valid, bit 1 polarity, y bits 16..2, x bits 31..17), timestamp µs."""
    return struct.pack(f"{order}Ii", x << 17 | y << 2 | polarity << 1 | valid, timestamp_us)


CAER_RECORDS = [
    (345, 259, 1, 100, 1),
    (0, 0, 0, 2**31 - 1, 1),
    (5, 6, 1, 3, 1),           # timestamp fell back: the 31-bit µs counter wrapped
    (7, 7, 1, 4, 0),           # valid mark clear: invalidated by a libcaer filter, dropped
    (8, 9, 0, 10, 1),
]
CAER_EVENTS = [(345, 259, 1, 100), (0, 0, 0, 2**31 - 1), (5, 6, 1, 2**31 + 3), (8, 9, 0, 2**31 + 10)]


@pytest.mark.parametrize("order", ["<", ">"])
def test_hand_built_libcaer_packet_decodes_to_known_events(order):
    payload = b"".join(_caer(*r, order=order) for r in CAER_RECORDS)
    msg = _packet(RosbagsFactory(), payload, *DAVIS, encoding="libcaer", big_endian=order == ">",
                  time_base=TIME_BASE)
    events, triggers = packet_to_events_and_triggers(msg)
    np.testing.assert_array_equal(events, _expected(CAER_EVENTS, lambda us: TIME_BASE + us * 1000))
    assert triggers.size == 0


@pytest.mark.parametrize("payload, time_base, match", [
    (bytes(12), 0, "12 bytes, not a multiple of 8"),
    (_caer(1, 1, 0, -5), 0, "timestamp -5 is negative"),
    (_caer(346, 0, 0, 0), 0, "outside the 346x260 sensor"),
    (_caer(1, 1, 0, 10), 2**63 - 5_000, "beyond int64 nanoseconds"),
])
def test_bad_libcaer_packets(payload, time_base, match):
    with pytest.raises(ConversionError, match=match):
        packet_to_events(_packet(RosbagsFactory(), payload, *DAVIS, encoding="libcaer", time_base=time_base))


def test_libcaer_cmp_time_base_beyond_int64_is_refused():
    with pytest.raises(ConversionError, match="beyond int64 nanoseconds"):
        packet_to_events(_packet(RosbagsFactory(), _words(*CMP_WORDS), *DAVIS, encoding="libcaer_cmp",
                                 time_base=2**64 - 1))


# ---------------------------------------------------------------------------------------------- evt3 encoding


@st.composite
def event_streams(draw, max_groups: int = 40):
    """Sorted events in a random sensor: bursts sharing time/row/polarity (vectors), singles, long gaps (wraps)."""
    width, height = draw(st.integers(1, 2048)), draw(st.integers(1, 2048))
    rows, us = [], draw(st.integers(0, 1 << 26))
    for _ in range(draw(st.integers(0, max_groups))):
        us += draw(st.one_of(st.just(0), st.integers(0, 3), st.integers(0, 5000), st.integers(0, 30_000_000)))
        y, p = draw(st.integers(0, height - 1)), draw(st.integers(0, 1))
        x = draw(st.integers(0, width - 1))
        for _ in range(draw(st.integers(1, 30))):
            rows.append((x, y, p, us * 1000))
            x += draw(st.sampled_from([-5, 0, 1, 1, 1, 2, 3, 11, 12, 13, 40]))
            if not 0 <= x < width:
                break
    return _events(rows), width, height


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(event_streams())
def test_encoder_output_follows_the_evt3_spec(stream):
    events, width, height = stream
    reference = _reference_evt3(encode_evt3(events, width, height).tobytes())
    # A decoder cannot know how often the 24-bit µs counter wrapped before the stream began.
    loops_before = (int(events["t"][0]) // 1000) >> 24 << 24 if events.size else 0
    assert reference == [(int(e["x"]), int(e["y"]), int(e["p"]), int(e["t"]) // 1000 - loops_before) for e in events]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(event_streams())
def test_evt3_packet_round_trip(stream):
    events, width, height = stream
    decoded = packet_to_events(events_to_packet(events, width, height, seq=7))
    np.testing.assert_array_equal(decoded, events)


def test_encoder_uses_vectors_for_bursts():
    row = _events([(x, 3, 1, 5_000) for x in range(100, 136)])  # 36 neighbours: one base + 3 x VECT_12
    words = np.frombuffer(encode_evt3(row, 640, 480).tobytes(), "<u2")
    assert [int(w) >> 12 for w in words] == [0x8, 0x6, 0x0, 0x3, 0x4, 0x4, 0x4]
    np.testing.assert_array_equal(Evt3Decoder(640, 480).decode(words.tobytes()), row)


def test_evt3_times_are_floored_to_microseconds_relative_to_the_first_event():
    events = _events([(1, 1, 0, 10_999), (2, 1, 0, 12_500), (3, 1, 1, 2_000_000_001)])
    decoded = packet_to_events(events_to_packet(events, 8, 8))
    assert decoded["t"].tolist() == [10_999, 10_999 + 2_000, 10_999 + (2_000_000 - 10) * 1000]


# ---------------------------------------------------------------------------------------------- mono


def test_hand_built_mono_packet():
    def word(p, y, x, dt):
        return struct.pack("<Q", p << 63 | y << 48 | x << 32 | dt)

    payload = word(1, 479, 639, 0) + word(0, 0, 0, 1_000) + word(1, 0x7FFF & 12, 34, 0xFFFFFFFF)
    events = packet_to_events(_packet(RosbagsFactory(), payload, encoding="mono"))
    np.testing.assert_array_equal(events, _events([(639, 479, 1, STAMP), (0, 0, 0, STAMP + 1_000),
                                                   (34, 12, 1, STAMP + 0xFFFFFFFF)]))
    big = b"".join(payload[i:i + 8][::-1] for i in range(0, len(payload), 8))
    np.testing.assert_array_equal(packet_to_events(_packet(RosbagsFactory(), big, encoding="mono", big_endian=True)),
                                  events)


@settings(max_examples=50, deadline=None)
@given(event_streams(max_groups=10))
def test_mono_packet_round_trip(stream):
    events, width, height = stream
    events["t"] -= events["t"][0] if events.size else 0
    events = events[events["t"] <= 0xFFFFFFFF]
    np.testing.assert_array_equal(packet_to_events(events_to_packet(events, width, height, encoding="mono")), events)


# ---------------------------------------------------------------------------------------------- trigger


@pytest.mark.parametrize("order", ["<", ">"])
def test_hand_built_trigger_packet(order):
    """The "trigger" encoding: 64-bit words, edge bit 63, id bits 55..48, dt (ns from the header stamp) bits 31..0."""
    payload = b"".join(struct.pack(f"{order}Q", edge << 63 | trigger_id << 48 | dt)
                       for edge, trigger_id, dt in [(1, 0, 0), (0, 0, 1_000), (1, 3, 0xFFFFFFFF)])
    events, triggers = packet_to_events_and_triggers(_packet(RosbagsFactory(), payload, encoding="trigger",
                                                             big_endian=order == ">"))
    assert events.size == 0
    np.testing.assert_array_equal(triggers, _triggers([(0, 0, 1), (1_000, 0, 0), (0xFFFFFFFF, 3, 1)],
                                                      lambda dt: STAMP + dt))
    with pytest.raises(ConversionError, match="not a multiple of 8"):
        packet_to_events(_packet(RosbagsFactory(), payload[:-1], encoding="trigger"))


# ---------------------------------------------------------------------------------------------- both worlds + CDR


@pytest.mark.parametrize("encoding", ["evt3", "mono"])
def test_event_packet_through_cdr(factory, encoding):
    _skip_unless_in_world(factory, PACKET)
    events = _events([(x, 7, x % 2, 3_000_000 + 1_000 * (x // 3)) for x in range(0, 600, 2)])
    header = make_header(factory, 3_000_000, "event_cam")
    msg = cdr_roundtrip(events_to_packet(events, 640, 480, header=header, factory=factory, seq=42,
                                         encoding=encoding), PACKET)
    assert (msg.width, msg.height, msg.seq, msg.encoding, msg.header.frame_id) == (640, 480, 42, encoding, "event_cam")
    np.testing.assert_array_equal(packet_to_events(msg), events)


def test_event_array_through_cdr(factory):
    _skip_unless_in_world(factory, ARRAY)
    events = _events([(0, 0, 0, 0), (345, 259, 1, STAMP), (12, 200, 1, STAMP + 999_999_999)])
    msg = cdr_roundtrip(events_to_event_array(events, 346, 260, factory=factory, frame_id="dvs"), ARRAY)
    assert (msg.width, msg.height, msg.header.frame_id) == (346, 260, "dvs")
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (0, 0)  # the first event's time, as rpg_dvs_ros
    got = [(e.x, e.y, e.polarity, e.ts.sec, e.ts.nanosec) for e in msg.events]
    assert got == [(0, 0, False, 0, 0), (345, 259, True, 1_700_000_000, 123_456_789),
                   (12, 200, True, 1_700_000_001, 123_456_788)]
    np.testing.assert_array_equal(event_array_to_events(msg), events)


def test_hand_built_event_array():
    factory = RosbagsFactory()
    items = [factory.make("dvs_msgs/msg/Event", x=3, y=4, polarity=True,
                          ts=factory.make("builtin_interfaces/msg/Time", sec=5, nanosec=6))]
    msg = factory.make(ARRAY, header=make_header(factory, 0), width=8, height=8, events=items)
    np.testing.assert_array_equal(event_array_to_events(msg), _events([(3, 4, 1, 5_000_000_006)]))
    assert event_array_to_events(factory.make(ARRAY, width=8, height=8)).size == 0


# ---------------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("payload, match", [
    (_words(*HAND_WORDS)[:-1], "odd byte count"),
    (_words(0x8000, 0x6000, 0x0000 | 1, 0x3000 | 4), "truncated vector"),
    (_words(0x8000, 0x6000, 0x2000 | 1), "before any EVT_ADDR_Y"),
    (_words(0x0000 | 1, 0x6000, 0x2000 | 1), "before any EVT_TIME_HIGH"),
    (_words(0x8000, 0x0000 | 1, 0x4000 | 1), "before any VECT_BASE_X"),
    (_words(0x8000, 0x0000 | 1, 0x1000), r"word type\(s\) \['0x1'\].*accepted"),
    (_words(0x8000, 0x0000 | 1, 0x2000 | 640), "outside the 640x480 sensor"),
    (_words(0x8000, 0x0000 | 480, 0x2000 | 1), "outside the 640x480 sensor"),
    (_words(0x8000, 0x0000 | 1, 0x3000 | 630, 0x4000 | 0x400), "outside the 640x480 sensor"),
])
def test_bad_evt3_packets(payload, match):
    with pytest.raises(ConversionError, match=match):
        packet_to_events(_packet(RosbagsFactory(), payload))


def test_bad_packets_and_arguments():
    factory = RosbagsFactory()
    with pytest.raises(ConversionError, match="encoding 'evt2' is not supported; supported: evt3, mono, libcaer, libcaer_cmp, trigger"):
        packet_to_events(_packet(factory, b"", encoding="evt2"))
    with pytest.raises(ConversionError, match="not a multiple of 8"):
        packet_to_events(_packet(factory, bytes(12), encoding="mono"))
    with pytest.raises(ConversionError, match="outside the 640x480 sensor"):
        packet_to_events(_packet(factory, struct.pack("<Q", 640 << 32), encoding="mono"))
    with pytest.raises(ConversionError, match="decoder was made for 320x240"):
        packet_to_events(_packet(factory, _words(*HAND_WORDS)), decoder=Evt3Decoder(320, 240))
    with pytest.raises(ConversionError, match="sensor size 4096x480 is not supported"):
        Evt3Decoder(4096, 480)


def test_bad_events_for_encoders():
    good = _events([(1, 1, 0, 1_000), (2, 1, 1, 2_000)])
    with pytest.raises(ConversionError, match="sorted by time"):
        encode_evt3(good[::-1], 8, 8)
    with pytest.raises(ConversionError, match="sensor size 3000x8 is not supported"):
        encode_evt3(good, 3000, 8)
    with pytest.raises(ConversionError, match="do not fit a 2x8 sensor"):
        events_to_packet(good, 2, 8)
    with pytest.raises(ConversionError, match="do not fit a 8x1 sensor"):
        events_to_event_array(good, 8, 1)
    bad_polarity = good.copy()
    bad_polarity["p"][0] = 2
    with pytest.raises(ConversionError, match="polarity must be 0"):
        events_to_packet(bad_polarity, 8, 8)
    with pytest.raises(ConversionError, match="fields x, y, p, t"):
        events_to_packet(np.zeros(3), 8, 8)
    late = _events([(1, 1, 0, 0), (2, 1, 1, 1 << 32)])
    with pytest.raises(ConversionError, match="32 bits"):
        events_to_packet(late, 8, 8, encoding="mono")
    with pytest.raises(ConversionError, match="encoding 'evt2' is not supported"):
        events_to_packet(good, 8, 8, encoding="evt2")


def test_dvs_event_outside_sensor():
    factory = RosbagsFactory()
    items = [factory.make("dvs_msgs/msg/Event", x=8, y=0)]
    with pytest.raises(ConversionError, match="outside the 8x8 sensor"):
        event_array_to_events(factory.make(ARRAY, width=8, height=8, events=items))
