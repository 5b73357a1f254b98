"""The package's own messages (msg/): they parse, round-trip through CDR, and travel between real nodes."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from rosbags.typesys import get_types_from_msg

from conftest import cdr_roundtrip, require_ros
from seg_perception.io.messages import RosbagsFactory
from seg_perception.io.typestore import default_typestore, own_msg_dir

MSG_DIR = Path(__file__).resolve().parents[1] / "msg"
MSG_TYPES = sorted(f"seg_perception/msg/{p.stem}" for p in MSG_DIR.glob("*.msg"))


def test_every_msg_file_parses_and_is_registered():
    assert MSG_TYPES, "msg/ holds no .msg files"
    assert own_msg_dir() == MSG_DIR
    store = default_typestore()
    for typename in MSG_TYPES:
        text = (MSG_DIR / (typename.rsplit("/", 1)[1] + ".msg")).read_text()
        assert typename in get_types_from_msg(text, typename)
        assert typename in store.fielddefs


def _sample(factory, typename: str, seed: int = 1):
    """A message with every field set to a distinctive non-default value (nested messages recursively)."""
    store = default_typestore()
    fields = {}
    for index, (name, (kind, detail)) in enumerate(store.fielddefs[typename][1]):
        fields[name] = _value(factory, int(kind), detail, seed + index)
    return factory.make(typename, **fields)


def _value(factory, kind: int, detail, seed: int):
    if kind == 1:
        base = detail[0]
        if base == "string":
            return f"v{seed}"
        if base == "bool":
            return seed % 2 == 1
        if base.startswith("float"):
            return seed + 0.5
        return seed % 120 + 1
    if kind == 2:
        return _sample(factory, detail, seed)
    inner, length = detail
    count = length if kind == 3 else 3
    if int(inner[0]) == 1 and inner[1][0] != "string":
        return np.array([_value(factory, 1, inner[1], seed + i) for i in range(count)])
    return [_value(factory, int(inner[0]), inner[1], seed + i) for i in range(count)]


def _plain(msg, typename: str):
    """A message as nested Python values, read by field name (works for both worlds)."""
    store = default_typestore()
    out = {}
    for name, (kind, detail) in store.fielddefs[typename][1]:
        value = getattr(msg, name)
        kind = int(kind)
        if kind == 2:
            out[name] = _plain(value, detail)
        elif kind in (3, 4) and int(detail[0][0]) == 2:
            out[name] = [_plain(item, detail[0][1]) for item in value]
        elif kind in (3, 4) and detail[0][1][0] != "string":
            out[name] = np.asarray(value).tolist()
        else:
            out[name] = list(value) if kind in (3, 4) else value
    return out


@pytest.mark.parametrize("typename", MSG_TYPES)
def test_cdr_roundtrip(factory, typename):
    msg = _sample(factory, typename)
    expected = _plain(_sample(RosbagsFactory(), typename), typename)
    got = _plain(cdr_roundtrip(msg, typename), typename)
    assert got == expected


def test_every_message_travels_between_two_nodes():
    require_ros("rclpy.node", "seg_perception.msg")
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from seg_perception.ros.messages import RclpyFactory, message_class

    factory = RclpyFactory()
    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        talker = rclpy.create_node("interfaces_talker", context=context)
        listener = rclpy.create_node("interfaces_listener", context=context)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(talker)
        executor.add_node(listener)
        received: dict[str, object] = {}
        publishers = {}
        for typename in MSG_TYPES:
            topic = "probe_" + typename.rsplit("/", 1)[1].lower()
            cls = message_class(typename)
            publishers[typename] = talker.create_publisher(cls, topic, 10)
            listener.create_subscription(cls, topic, lambda m, t=typename: received.setdefault(t, m), 10)
        deadline = time.monotonic() + 15.0
        while len(received) < len(MSG_TYPES) and time.monotonic() < deadline:
            for typename, publisher in publishers.items():
                if typename not in received:
                    publisher.publish(_sample(factory, typename))
            executor.spin_once(timeout_sec=0.05)
        assert sorted(received) == MSG_TYPES
        for typename, msg in received.items():
            assert _plain(msg, typename) == _plain(_sample(RosbagsFactory(), typename), typename)
    finally:
        rclpy.shutdown(context=context)
