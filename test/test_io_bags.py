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
