"""The rosbags type store used on the ROS-free paths: ROS 2 Kilted types plus event-camera and own messages."""
from __future__ import annotations

import functools
import re
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


SCHEMA_ENCODINGS = ("ros2msg", "ros2idl")  # the MCAP schema encodings of ROS 2 message definitions
_IDL_SECTION = "=" * 80 + "\n"  # rosbag2 joins a type's IDL and its dependencies' with "IDL: <type>" headers
# rosidl's .idl files open with #include lines for their dependencies, which rosbags' IDL parser does
# not read; rosbag2 puts every dependency in the schema anyway, so the directives are dropped.
_PREPROCESSOR = re.compile(r"^[ \t]*#[^\n]*$", re.MULTILINE)


@functools.lru_cache(maxsize=8)
def bag_typestore(definitions: tuple[tuple[str, str, str], ...]) -> Any:
    """A type store of the types a bag defines itself: (type name, schema encoding, definition)
    triples, as an MCAP file's schemas give them (what rosbags' AnyReader builds from them). The
    encoding is "ros2msg" (.msg text with its dependencies) or "ros2idl" (IDL, as rosbag2 records
    types defined in .idl files). Cached: bags recorded alike define the same types, and a store
    keeps the (de)serialisers it generates.

    Raises:
        rosbags.typesys.TypesysError: a definition does not parse.
    """
    from rosbags.typesys import Stores, get_types_from_idl, get_types_from_msg, get_typestore

    types: dict[str, Any] = {}
    for name, encoding, text in definitions:
        if encoding == "ros2msg":
            types.update(get_types_from_msg(text, name))
        else:
            sections = ([s.split("\n", 1)[1] for s in text.split(_IDL_SECTION)[1:]]
                        if text.startswith(_IDL_SECTION + "IDL: ") else [text])
            for idl in sections:
                types.update(get_types_from_idl(_PREPROCESSOR.sub("", idl)))
    store = get_typestore(Stores.EMPTY)
    store.register(types)
    return store
