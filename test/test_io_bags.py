"""Bag writing and reading: every stored message comes back, and an independent MCAP reader agrees."""
from __future__ import annotations

import numpy as np
import pytest
from mcap.reader import make_reader

from seg_perception.io.bags import BagWriter, read_messages
from seg_perception.io.errors import BagError
from seg_perception.io.messages import RosbagsFactory, make_header


def _image(factory, stamp_ns: int, value: int):
    return factory.make("sensor_msgs/msg/Image", header=make_header(factory, stamp_ns, "camera"),
                        height=2, width=2, encoding="mono8", step=2, data=np.full(4, value, np.uint8))


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_written_messages_read_back(tmp_path, storage):
    factory = RosbagsFactory()
    bag = tmp_path / "bag"
    with BagWriter(bag, storage=storage) as writer:
        for i in range(5):
            writer.write("/camera/image_raw", _image(factory, 1_000 + i, i), 1_000 + i)
        writer.write("/info", factory.make("seg_perception/msg/StageTiming", stage="inference", duration_ms=3.5), 2_000)
        writer.write("/labels", factory.make("seg_perception/msg/LabelSet", name="sim", ignore_id=255), 0, latched=True)
    got = list(read_messages(bag))
    assert [m.topic for m in got] == ["/labels"] + ["/camera/image_raw"] * 5 + ["/info"]
    assert [int(m.msg.data[0]) for m in got if m.topic == "/camera/image_raw"] == [0, 1, 2, 3, 4]
    assert got[-1].msg.duration_ms == pytest.approx(3.5)
    assert [m.log_time_ns for m in read_messages(bag, topics=["/info"])] == [2_000]


def test_independent_mcap_reader_sees_every_message(tmp_path):
    factory = RosbagsFactory()
    bag = tmp_path / "bag"
    with BagWriter(bag) as writer:
        for i in range(3):
            writer.write("/camera/image_raw", _image(factory, i, i), i)
    (mcap_file,) = bag.glob("*.mcap")
    with open(mcap_file, "rb") as stream:
        reader = make_reader(stream)
        schemas = {s.name for s in reader.get_summary().schemas.values()}
        messages = list(reader.iter_messages())
    assert "sensor_msgs/msg/Image" in schemas
    assert len(messages) == 3
    assert {channel.topic for _, channel, _ in messages} == {"/camera/image_raw"}


def test_bad_bag_requests_raise_bag_error(tmp_path):
    with pytest.raises(BagError, match="does not exist"):
        list(read_messages(tmp_path / "missing"))
    with pytest.raises(BagError, match="not supported; supported: mcap, sqlite3"):
        BagWriter(tmp_path / "x", storage="db3")
    bag = tmp_path / "bag"
    with BagWriter(bag) as writer:
        writer.write("/a", _image(RosbagsFactory(), 0, 0), 0)
        with pytest.raises(BagError, match="already carries"):
            writer.write("/a", RosbagsFactory().make("seg_perception/msg/StageTiming"), 1)
    with pytest.raises(BagError, match=r"not in .*topics there: \['/a'\]"):
        list(read_messages(bag, topics=["/b"]))
    with pytest.raises(BagError, match="already exists"):
        BagWriter(bag)


def test_cut_recording_yields_its_complete_messages_then_says_where_it_breaks(tmp_path):
    factory = RosbagsFactory()
    bag = tmp_path / "bag"
    with BagWriter(bag, compress=True) as writer:  # a recording that spans many compressed chunks
        for i in range(120):
            image = factory.make("sensor_msgs/msg/Image", header=make_header(factory, i, "camera"), height=256,
                                 width=256, encoding="mono8", step=256,
                                 data=np.random.default_rng(i).integers(0, 255, 65536, dtype=np.uint8))
            writer.write("/camera/image_raw", image, i)
            writer.write("/info", factory.make("seg_perception/msg/StageTiming", stage=str(i)), i)
    intact = {(m.topic, m.log_time_ns): m.msg for m in read_messages(bag)}
    (mcap_file,) = bag.glob("*.mcap")
    data = mcap_file.read_bytes()
    mcap_file.write_bytes(data[: len(data) * 6 // 10])  # the recorder died: no footer, half a chunk,
    (bag / "metadata.yaml").unlink()  # and no metadata.yaml (rosbag2 writes it on closing)

    got = []
    with pytest.raises(BagError, match=r"breaks off at byte \d+ of \d+ .*the messages before the break were read"):
        for message in read_messages(bag, topics=["/camera/image_raw"]):
            got.append(message)
    assert 0 < len(got) < 120
    for message in got:  # each one whole and as recorded
        assert np.array_equal(message.msg.data, intact[(message.topic, message.log_time_ns)].data)
    assert [m.log_time_ns for m in got] == list(range(len(got)))


def test_a_file_that_is_not_mcap_at_all_is_still_an_error(tmp_path):
    bag = tmp_path / "bag"
    bag.mkdir()
    (bag / "bag.mcap").write_bytes(b"not a bag" * 100)
    with pytest.raises(BagError, match="cannot read"):
        list(read_messages(bag))


@pytest.mark.parametrize("compress", [False, True])
def test_bags_the_package_writes_carry_chunk_crcs_that_readers_check(tmp_path, compress):
    import zlib

    from mcap.data_stream import ReadDataStream
    from mcap.reader import make_reader
    from mcap.records import Chunk

    from seg_perception.io import BagWriter, RosbagsFactory, array_to_image, make_header

    factory = RosbagsFactory()
    with BagWriter(tmp_path / "bag", compress=compress) as writer:
        for i in range(3):
            image = array_to_image(np.full((8, 8), i, np.uint8), "mono8", header=make_header(factory, i, "cam"),
                                   factory=factory)
            writer.write("/image", image, i + 1)
    (path,) = (tmp_path / "bag").glob("*.mcap")
    with open(path, "rb") as stream:
        summary = make_reader(stream).get_summary()
        assert summary.chunk_indexes
        for index in summary.chunk_indexes:
            stream.seek(index.chunk_start_offset + 9)
            chunk = Chunk.read(ReadDataStream(stream))
            assert chunk.compression == ("zstd" if compress else "")
            import zstandard

            data = zstandard.ZstdDecompressor().decompress(chunk.data, max_output_size=chunk.uncompressed_size) \
                if compress else chunk.data
            assert chunk.uncompressed_crc == zlib.crc32(data) != 0
    with open(path, "rb") as stream:  # the mcap library checks them
        assert len(list(make_reader(stream, validate_crcs=True).iter_messages())) == 3
