"""Shared fixtures. ROS-dependent tests skip where rclpy or the generated messages are absent,
unless SEG_PERCEPTION_REQUIRE_ROS=1 (set by `make test`), which turns those skips into failures."""
from __future__ import annotations

import os

import pytest

from seg_perception.io.messages import RosbagsFactory
from seg_perception.io.typestore import default_typestore

REQUIRE_ROS = os.environ.get("SEG_PERCEPTION_REQUIRE_ROS") == "1"


def require_ros(*modules: str) -> None:
    """Skip the calling test unless rclpy and `modules` import; fail instead under SEG_PERCEPTION_REQUIRE_ROS=1."""
    try:
        import rclpy  # noqa: F401

        for module in modules:
            __import__(module)
    except ImportError as exc:
        reason = f"ROS 2 Python packages not importable ({exc}); run `make test` for the colcon-built workspace"
        if REQUIRE_ROS:
            pytest.fail(reason + " [SEG_PERCEPTION_REQUIRE_ROS=1]")
        pytest.skip(reason)


@pytest.fixture(params=["rosbags", "rclpy"])
def factory(request: pytest.FixtureRequest):
    """A MessageFactory of each message-class world: the rosbags type store and real rclpy classes."""
    if request.param == "rosbags":
        return RosbagsFactory()
    require_ros("sensor_msgs.msg", "seg_perception.msg")
    from seg_perception.ros.messages import RclpyFactory

    return RclpyFactory()


def cdr_roundtrip(msg, typename: str):
    """Serialise `msg` to real CDR bytes and back through the rosbags type store.

    rclpy messages are serialised with rclpy itself (its C typesupport), then deserialised by
    rosbags, so both worlds are checked against the same wire format.
    """
    store = default_typestore()
    if hasattr(msg, "__msgtype__"):
        data = store.serialize_cdr(msg, typename)
    else:
        from rclpy.serialization import serialize_message

        data = serialize_message(msg)
    return store.deserialize_cdr(bytes(data), typename)
