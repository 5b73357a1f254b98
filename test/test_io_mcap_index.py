"""Reading chosen topics through an MCAP file's message index: the same messages, in the same
order, as rosbags and the mcap library read from the whole file; damage is a BagError."""
from __future__ import annotations

import re
import struct

import numpy as np
import pytest
import yaml
from mcap.reader import make_reader
from mcap.writer import CompressionType, IndexType, Writer
from rosbags.highlevel import AnyReader

from seg_perception.io.bags import BagReader, BagWriter
from seg_perception.io.errors import BagError
from seg_perception.io.mcap_index import IndexedMcap
from seg_perception.io.messages import RosbagsFactory, make_header


def _image(factory, stamp_ns: int, size: int, seed: int):
    data = np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8)
    return factory.make("sensor_msgs/msg/Image", header=make_header(factory, stamp_ns, "camera"),
                        height=1, width=size, encoding="mono8", step=size, data=data)


@pytest.fixture(scope="module")
def sensor_bag(tmp_path_factory):
    """A zstd rosbag2 where a small camera topic shares chunks with large LiDAR-like messages."""
    factory = RosbagsFactory()
    bag = tmp_path_factory.mktemp("bags") / "drive"
    with BagWriter(bag, compress=True) as writer:
        for i in range(40):
            writer.write("/points", _image(factory, i * 100, 300_000, i), i * 100)
            writer.write("/camera", _image(factory, i * 100, 5_000, 1000 + i), i * 100)  # equal log time
            writer.write("/tf", _image(factory, i * 100 + 50, 16, 2000 + i), i * 100 + 50)
    return bag


def _rosbags_raw(bag, topics):
    """(topic, log time, raw CDR) as rosbags reads the whole bag: the independent reference."""
    with AnyReader([bag]) as reader:
        connections = [c for c in reader.connections if c.topic in topics]
        return [(c.topic, t, bytes(raw)) for c, t, raw in reader.messages(connections=connections)]


@pytest.mark.parametrize("topics", [{"/camera"}, {"/camera", "/tf"}, {"/points", "/camera", "/tf"}])
def test_same_messages_and_order_as_rosbags(sensor_bag, topics):
    (path,) = sensor_bag.glob("*.mcap")
    with IndexedMcap.open(path) as indexed:
        got = list(indexed.messages(topics))
    expected = _rosbags_raw(sensor_bag, topics)
    assert len(expected) == 40 * len(topics)
    assert got == expected


@pytest.mark.parametrize("types_from", ["summary", "rosbags"])
def test_bag_reader_uses_the_index_and_deserialises_as_before(sensor_bag, monkeypatch, types_from):
    if types_from == "rosbags":  # as for an MCAP file of other schema encodings, which rosbags opens
        opened = IndexedMcap.open

        def without_ros2_types(path):
            indexed = opened(path)
            indexed.ros2_types = None
            return indexed

        monkeypatch.setattr(IndexedMcap, "open", without_ros2_types)
    with BagReader(sensor_bag) as bag:
        assert bag._indexed is not None
        assert (bag._reader is not None) == (types_from == "rosbags")
        got = [(m.topic, m.log_time_ns, m.msg.header.stamp.sec * 10**9 + m.msg.header.stamp.nanosec,
                m.msg.data.copy()) for m in bag.messages(["/camera"])]
    with AnyReader([sensor_bag]) as reader:
        connections = [c for c in reader.connections if c.topic == "/camera"]
        expected = [(c.topic, t, reader.deserialize(raw, c.msgtype)) for c, t, raw in reader.messages(connections)]
    assert [(topic, t, stamp) for topic, t, stamp, _ in got] == [(c, t, t) for c, t, _ in expected]
    assert all(np.array_equal(data, msg.data) for (*_, data), (*_, msg) in zip(got, expected))


def _mcap_file(path, compression, records, *, chunk_size=64_000, index_types=IndexType.ALL):
    """An MCAP written by the mcap library: records = [(topic, log time, payload)] in file order."""
    with open(path, "wb") as stream:
        writer = Writer(stream, chunk_size=chunk_size, compression=compression, index_types=index_types)
        writer.start("ros2", "test")
        schema = writer.register_schema("std_msgs/msg/String", "ros2msg", b"string data")
        channels = {}
        for topic, log_time, payload in records:
            if topic not in channels:
                channels[topic] = writer.register_channel(topic, "cdr", schema)
            writer.add_message(channels[topic], log_time, payload, log_time)
        writer.finish()
    return path


@pytest.mark.parametrize("compression", [CompressionType.NONE, CompressionType.LZ4, CompressionType.ZSTD])
def test_chunks_overlapping_in_time_merge_like_the_mcap_library(tmp_path, compression):
    rng = np.random.default_rng(7)
    # Out of log-time order across chunks, with ties: chunks overlap in time.
    records = [(f"/t{i % 3}", int(rng.integers(0, 50)), rng.bytes(int(rng.integers(10, 20_000)))) for i in range(300)]
    path = _mcap_file(tmp_path / "x.mcap", compression, records)
    with open(path, "rb") as stream:
        reader = make_reader(stream)
        assert len(reader.get_summary().chunk_indexes) > 10
        expected = [(c.topic, m.log_time, m.data) for _, c, m in reader.iter_messages(topics=["/t0", "/t2"])]
    with IndexedMcap.open(path) as indexed:
        got = list(indexed.messages({"/t0", "/t2"}))
    assert [t for _, t, _ in got] == sorted(t for _, t, _ in got)
    assert got == expected


def test_a_damaged_tail_of_a_chunk_does_not_stop_the_messages_before_it(tmp_path):
    rng = np.random.default_rng(3)
    path = _mcap_file(tmp_path / "x.mcap", CompressionType.ZSTD,
                      [("/camera", 1, b"wanted"), ("/points", 2, rng.integers(0, 4, 1_000_000, np.uint8).tobytes())],
                      chunk_size=4_000_000)
    with open(path, "rb") as stream:
        (chunk,) = make_reader(stream).get_summary().chunk_indexes
    data = bytearray(path.read_bytes())
    end = chunk.chunk_start_offset + chunk.chunk_length  # the compressed records end the chunk record
    data[end - 64:end] = bytes(64)
    path.write_bytes(bytes(data))
    with IndexedMcap.open(path) as indexed:
        assert list(indexed.messages({"/camera"})) == [("/camera", 1, b"wanted")]  # only the head is decompressed
        assert indexed.damaged == []
        assert list(indexed.messages({"/points"})) == []  # the damaged chunk is skipped and named
        assert len(indexed.damaged) == 1 and re.search("the chunk at byte .*; the file is damaged", indexed.damaged[0])


def test_reading_goes_on_past_a_damaged_chunk_to_the_intact_ones_after_it(tmp_path):
    rng = np.random.default_rng(5)
    records = [("/a", t, rng.integers(0, 256, 2000, np.uint8).tobytes()) for t in range(1, 31)]
    path = _mcap_file(tmp_path / "x.mcap", CompressionType.ZSTD, records, chunk_size=5000)
    with open(path, "rb") as stream:
        chunks = make_reader(stream).get_summary().chunk_indexes
    assert len(chunks) >= 5
    middle = chunks[len(chunks) // 2]
    data = bytearray(path.read_bytes())
    end = middle.chunk_start_offset + middle.chunk_length
    data[end - 200:end] = bytes(200)
    path.write_bytes(bytes(data))
    in_middle = set(range(middle.message_start_time, middle.message_end_time + 1))  # one log time a message
    with IndexedMcap.open(path) as indexed:
        got = list(indexed.messages({"/a"}))
        assert [t for _, t, _ in got] == [t for _, t, _ in records if t not in in_middle]
        assert len(indexed.damaged) == 1 and str(middle.chunk_start_offset) in indexed.damaged[0]


def test_an_index_pointing_at_no_message_skips_its_chunk_and_names_it(tmp_path):
    path = _mcap_file(tmp_path / "x.mcap", CompressionType.NONE, [("/a", 1, b"one"), ("/b", 2, b"two")])
    with open(path, "rb") as stream:
        summary = make_reader(stream).get_summary()
    (chunk,) = summary.chunk_indexes
    channel = next(c.id for c in summary.channels.values() if c.topic == "/a")
    # MessageIndex record: opcode, length, channel id (u16), entries length (u32), (log time, offset) pairs.
    at = chunk.message_index_offsets[channel] + 9 + 2 + 4 + 8
    data = bytearray(path.read_bytes())
    struct.pack_into("<Q", data, at, struct.unpack_from("<Q", data, at)[0] + 3)
    path.write_bytes(bytes(data))
    with IndexedMcap.open(path) as indexed:
        assert list(indexed.messages({"/a"})) == []
        assert re.search("puts a message of channel .* damaged", indexed.damaged[0])
    struct.pack_into("<Q", data, at, 1 << 40)  # far beyond the chunk: refused before decompressing anything
    path.write_bytes(bytes(data))
    with IndexedMcap.open(path) as indexed:
        assert list(indexed.messages({"/a"})) == []
        assert re.search("fewer than the .* damaged", indexed.damaged[0])


def test_files_without_a_message_index_are_left_to_rosbags(tmp_path):
    path = _mcap_file(tmp_path / "x.mcap", CompressionType.ZSTD, [("/a", 1, b"one")], index_types=IndexType.CHUNK)
    assert IndexedMcap.open(path) is None
    unindexed = _mcap_file(tmp_path / "y.mcap", CompressionType.ZSTD, [("/a", 1, b"one")], index_types=IndexType.NONE)
    assert IndexedMcap.open(unindexed) is None
    (tmp_path / "z.mcap").write_bytes(b"not an mcap file")
    assert IndexedMcap.open(tmp_path / "z.mcap") is None


def test_a_chunk_read_whole_is_checked_against_its_crc(tmp_path):
    path = _mcap_file(tmp_path / "x.mcap", CompressionType.NONE, [("/a", 1, b"payload-one"), ("/b", 2, b"payload-two")])
    data = bytearray(path.read_bytes())
    at = data.index(b"payload-two")
    data[at] ^= 0xFF  # the stored bytes change, the index still holds
    path.write_bytes(bytes(data))
    with IndexedMcap.open(path) as indexed:
        assert list(indexed.messages({"/b"})) == []
        assert "fails its checksum" in indexed.damaged[0]


def test_a_rosbag2_mcap_is_opened_from_its_summary_alone(sensor_bag, monkeypatch):
    """rosbags is not needed to open it (its opening parsed metadata.yaml and every type): same topics
    and types, same messages."""
    with AnyReader([sensor_bag]) as reader:
        topics = {c.topic: c.msgtype for c in reader.connections}
    with BagReader(sensor_bag) as bag:
        expected = [(m.topic, m.log_time_ns, bytes(m.msg.data)) for m in bag.messages(["/camera", "/points"])]

    def refuse(*args, **kwargs):
        raise AssertionError("rosbags' AnyReader was opened")

    monkeypatch.setattr("rosbags.highlevel.AnyReader", refuse)
    with BagReader(sensor_bag) as bag:
        assert bag.topics == topics
        assert [(m.topic, m.log_time_ns, bytes(m.msg.data)) for m in bag.messages(["/camera", "/points"])] == expected


def _cdr_reading(count: int, name: str) -> bytes:
    """my_msgs/msg/Reading {uint32 count, string name} in little-endian CDR, by hand."""
    text = name.encode() + b"\0"
    return b"\x00\x01\x00\x00" + struct.pack("<II", count, len(text)) + text


def test_types_the_bag_defines_are_deserialised_as_stored_and_bad_messages_are_named(tmp_path):
    path = tmp_path / "own.mcap"
    with open(path, "wb") as stream:
        writer = Writer(stream, compression=CompressionType.ZSTD)
        writer.start("ros2", "test")
        schema = writer.register_schema("my_msgs/msg/Reading", "ros2msg", b"uint32 count\nstring name")
        channel = writer.register_channel("/reading", "cdr", schema)
        for i, payload in enumerate([_cdr_reading(7, "first"), _cdr_reading(9, "second"), _cdr_reading(1, "cut")[:9]]):
            writer.add_message(channel, i + 1, payload, i + 1)
        writer.finish()
    with BagReader(path) as bag:
        assert bag.topics == {"/reading": "my_msgs/msg/Reading"}  # a type no type store of ours knows
        messages = bag.messages(["/reading"])
        assert [(m.log_time_ns, m.msg.count, m.msg.name) for m in (next(messages), next(messages))] == [
            (1, 7, "first"), (2, 9, "second")]
        assert list(messages) == []  # the cut message is skipped and named
        assert re.search("my_msgs/msg/Reading message on /reading at 3 ns does not deserialise", bag.damaged[0])


def test_only_rosbag2_style_files_are_opened_without_rosbags(tmp_path):
    def written(name, channels):
        with open(tmp_path / name, "wb") as stream:
            writer = Writer(stream)
            writer.start("ros2", "test")
            for topic, encoding, schema_encoding in channels:
                schema = writer.register_schema("std_msgs/msg/String", schema_encoding, b"string data")
                writer.add_message(writer.register_channel(topic, encoding, schema), 1, b"x", 1)
            writer.finish()
        return IndexedMcap.open(tmp_path / name)

    assert written("ros2.mcap", [("/a", "cdr", "ros2msg")]).ros2_types == {
        "/a": ("std_msgs/msg/String", "ros2msg", "string data")}
    assert written("json.mcap", [("/a", "cdr", "ros2msg"), ("/b", "json", "jsonschema")]).ros2_types is None
    assert written("idl.mcap", [("/a", "cdr", "ros2idl")]).ros2_types == {
        "/a": ("std_msgs/msg/String", "ros2idl", "string data")}
    assert written("twice.mcap", [("/a", "cdr", "ros2msg"), ("/a", "cdr", "ros2msg")]).ros2_types is None


# std_msgs/String and a nested type as rosbag2 records types defined in .idl files: the "ros2idl" schema
# encoding, the type's IDL and its dependencies' joined under "IDL: <type>" headers.
_SEP = "=" * 80 + "\n"
READING_IDL = (
    f"{_SEP}IDL: my_msgs/msg/Reading\n"
    "#include \"my_msgs/msg/Inner.idl\"\n"
    "module my_msgs { module msg { struct Reading { uint32 count; my_msgs::msg::Inner inner; }; }; };\n"
    f"{_SEP}IDL: my_msgs/msg/Inner\n"
    "module my_msgs { module msg { struct Inner { string name; }; }; };\n"
)


def _rosbag2_folder(tmp_path, channels, storage_identifier):
    """A rosbag2 folder (metadata.yaml from rosbags' writer, `storage_identifier` put in it) whose MCAP
    file is written by the mcap library: channels = [(topic, schema encoding, schema data)], three
    my_msgs/msg/Reading messages on each."""
    bag = tmp_path / "bag"
    with BagWriter(bag) as writer:  # a valid metadata.yaml to edit
        writer.write("/reading", RosbagsFactory().make("std_msgs/msg/String", data="x"), 1)
    (path,) = bag.glob("*.mcap")
    with open(path, "wb") as stream:
        writer = Writer(stream, compression=CompressionType.ZSTD)
        writer.start("ros2", "rosbag2")
        for topic, encoding, data in channels:
            channel = writer.register_channel(topic, "cdr", writer.register_schema("my_msgs/msg/Reading", encoding,
                                                                                    data.encode()))
            for i in range(3):
                writer.add_message(channel, i + 1, _cdr_reading(i, f"r{i}"), i + 1)
        writer.finish()
    metadata = bag / "metadata.yaml"
    info = yaml.safe_load(metadata.read_text())
    info["rosbag2_bagfile_information"]["storage_identifier"] = storage_identifier
    metadata.write_text(yaml.safe_dump(info))
    return bag


@pytest.mark.parametrize("storage_identifier", ["mcap", ""])
def test_a_ros2idl_rosbag2_opens_from_its_summary_whatever_its_metadata_says(tmp_path, monkeypatch,
                                                                             storage_identifier):
    bag = _rosbag2_folder(tmp_path, [("/reading", "ros2idl", READING_IDL)], storage_identifier)

    def refuse(*args, **kwargs):
        raise AssertionError("rosbags' AnyReader was opened")

    monkeypatch.setattr("rosbags.highlevel.AnyReader", refuse)
    with BagReader(bag) as reader:
        assert reader._indexed is not None and reader._salvage is None  # the index, not the cut-recording path
        assert reader.topics == {"/reading": "my_msgs/msg/Reading"}
        got = [(m.log_time_ns, m.msg.count, m.msg.inner.name) for m in reader.messages()]
    assert got == [(1, 0, "r0"), (2, 1, "r1"), (3, 2, "r2")]


def test_an_empty_storage_identifier_does_not_send_other_mcap_files_to_the_cut_recording_path(tmp_path):
    """Two channels on one topic (the summary path does not take it): rosbags reads the MCAP file
    itself instead of the folder whose metadata.yaml it refuses."""
    reading = "uint32 count\nmy_msgs/Inner inner\n" + _SEP + "MSG: my_msgs/Inner\nstring name\n"
    bag = _rosbag2_folder(tmp_path, [("/reading", "ros2msg", reading)] * 2, "")
    with BagReader(bag) as reader:
        assert reader._indexed is not None and reader._reader is not None and reader._salvage is None
        got = [(m.log_time_ns, m.msg.count, m.msg.inner.name) for m in reader.messages()]
    assert got == [(1, 0, "r0"), (1, 0, "r0"), (2, 1, "r1"), (2, 1, "r1"), (3, 2, "r2"), (3, 2, "r2")]
