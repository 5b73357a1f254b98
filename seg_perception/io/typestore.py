"""The rosbags type store used on the ROS-free paths: ROS 2 Kilted types plus event-camera and own messages."""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from seg_perception.resources import PACKAGE, resource_dir

INTERFACES = Path(__file__).resolve().parent / "interfaces"


def own_msg_dir() -> Path:
    """The folder holding this package's .msg files (source tree, ament share or pip package)."""
    return resource_dir("msg", "*.msg")


def msg_definitions() -> dict[str, str]:
    """Type name → .msg text for the event-camera messages and this package's own messages."""
    folders = [(p.parent.name, p) for p in sorted(INTERFACES.glob("*/msg"))]
    folders.append((PACKAGE, own_msg_dir()))
    return {
        f"{package}/msg/{path.stem}": path.read_text(encoding="utf-8")
        for package, folder in folders
        for path in sorted(folder.glob("*.msg"))
    }


@functools.cache
def default_typestore() -> Any:
    """ROS 2 Kilted standard types + dvs_msgs, event_camera_msgs and seg_perception messages."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_KILTED)
    types: dict[str, Any] = {}
    for name, text in msg_definitions().items():
        types.update(get_types_from_msg(text, name))
    store.register(types)
    return store


@functools.lru_cache(maxsize=8)
def bag_typestore(definitions: tuple[tuple[str, str], ...]) -> Any:
    """A type store of the types a bag defines itself: (type name, ros2msg definition) pairs, as an
    MCAP file's schemas give them (what rosbags' AnyReader builds from them). Cached: bags recorded
    alike define the same types, and a store keeps the (de)serialisers it generates.

    Raises:
        rosbags.typesys.TypesysError: a definition does not parse.
    """
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    types: dict[str, Any] = {}
    for name, text in definitions:
        types.update(get_types_from_msg(text, name))
    store = get_typestore(Stores.EMPTY)
    store.register(types)
    return store
