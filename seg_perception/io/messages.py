"""Building and reading ROS messages without depending on which message classes are in use.

Every converter in `seg_perception.io` reads messages by field name only, so it accepts rclpy's
generated classes and the rosbags type store's classes alike. Building a message needs the
classes of one world; a `MessageFactory` supplies them. `RosbagsFactory` (the default) builds the
rosbags classes used on the ROS-free paths; `seg_perception.ros` supplies one for rclpy.
"""
from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from .typestore import default_typestore

NSEC_PER_SEC = 1_000_000_000

# rosidl base type -> numpy dtype (little-endian, as CDR on every supported platform).
BASE_DTYPES: dict[str, np.dtype] = {
    name: np.dtype(code)
    for name, code in {
        "bool": "?", "byte": "u1", "char": "u1", "octet": "u1",
        "uint8": "u1", "int8": "i1", "uint16": "<u2", "int16": "<i2",
        "uint32": "<u4", "int32": "<i4", "uint64": "<u8", "int64": "<i8",
        "float32": "<f4", "float64": "<f8", "float": "<f4", "double": "<f8",
    }.items()
}


class MessageFactory(Protocol):
    """Builds a message of one message-class world from field values.

    Fields not given take their ROS defaults (zeros, empty strings and sequences). Array fields
    accept numpy arrays; the factory converts them to whatever its classes store.
    """

    def make(self, typename: str, **fields: Any) -> Any:
        """Return a new `typename` message (e.g. "sensor_msgs/msg/Image") with `fields` set."""


class RosbagsFactory:
    """Builds rosbags type store messages (serialisable to CDR with that store)."""

    def __init__(self, typestore: Any | None = None) -> None:
        self.typestore = typestore if typestore is not None else default_typestore()

    def make(self, typename: str, **fields: Any) -> Any:
        try:
            _, fielddefs = self.typestore.fielddefs[typename]
        except KeyError:
            raise KeyError(f"message type {typename!r} is not in the type store") from None
        known = {name for name, _ in fielddefs}
        unknown = set(fields) - known
        if unknown:
            raise TypeError(f"{typename} has no field(s) {sorted(unknown)}; fields: {sorted(known)}")
        values = {}
        for name, desc in fielddefs:
            values[name] = self._coerce(desc, fields[name]) if name in fields else self._default(desc)
        return self.typestore.types[typename](**values)

    def _default(self, desc: tuple) -> Any:
        kind, detail = desc
        kind = int(kind)
        if kind == 1:  # BASE
            base = detail[0]
            if base == "string":
                return ""
            return BASE_DTYPES[base].type(0).item()
        if kind == 2:  # NAME: a nested message
            return self.make(detail)
        inner, length = detail
        if int(inner[0]) == 1 and inner[1][0] != "string":
            dtype = BASE_DTYPES[inner[1][0]]
            return np.zeros(length if kind == 3 else 0, dtype=dtype)
        return [self._default(inner) for _ in range(length if kind == 3 else 0)]

    def _coerce(self, desc: tuple, value: Any) -> Any:
        kind, detail = desc
        kind = int(kind)
        if kind in (3, 4):
            inner, length = detail
            if int(inner[0]) == 1 and inner[1][0] != "string":
                array = np.ascontiguousarray(value, dtype=BASE_DTYPES[inner[1][0]]).reshape(-1)
                if kind == 3 and array.size != length:
                    raise ValueError(f"fixed array field needs {length} values, got {array.size}")
                return array
            return list(value)
        return value


def stamp_to_ns(stamp: Any) -> int:
    """builtin_interfaces/Time → integer nanoseconds."""
    return int(stamp.sec) * NSEC_PER_SEC + int(stamp.nanosec)


def make_stamp(factory: MessageFactory, ns: int) -> Any:
    """Integer nanoseconds → builtin_interfaces/Time of the factory's world."""
    sec, nanosec = divmod(int(ns), NSEC_PER_SEC)
    return factory.make("builtin_interfaces/msg/Time", sec=sec, nanosec=nanosec)


def make_header(factory: MessageFactory, stamp_ns: int = 0, frame_id: str = "") -> Any:
    """A std_msgs/Header of the factory's world."""
    return factory.make("std_msgs/msg/Header", stamp=make_stamp(factory, stamp_ns), frame_id=frame_id)


def as_bytes(data: Any) -> np.ndarray:
    """A uint8[] field (numpy array, array.array, bytes, list) as a 1-D uint8 array, zero-copy when possible."""
    if isinstance(data, np.ndarray):
        return np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except TypeError:  # a plain list of ints
        return np.asarray(data, dtype=np.uint8)
