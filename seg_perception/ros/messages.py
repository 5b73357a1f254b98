"""A MessageFactory for rclpy's generated message classes (the io converters' rclpy world)."""
from __future__ import annotations

import array
import importlib
import re
from typing import Any

import numpy as np

from seg_perception.io.messages import BASE_DTYPES

# rosidl type name -> array.array typecode used by rclpy's sequence fields.
_TYPECODES = {
    "int8": "b", "uint8": "B", "int16": "h", "uint16": "H", "int32": "i", "uint32": "I",
    "int64": "q", "uint64": "Q", "float": "f", "double": "d",
}
_SCALAR_ALIASES = {"float": "float32", "double": "float64"}
_SEQUENCE = re.compile(r"^sequence<([\w/]+)(?:, \d+)?>$")
_FIXED = re.compile(r"^([\w/]+)\[(\d+)\]$")


def message_class(typename: str) -> type:
    """'sensor_msgs/msg/Image' (or 'sensor_msgs/Image') → the rclpy message class."""
    package, *_, name = typename.split("/")
    return getattr(importlib.import_module(f"{package}.msg"), name)


class RclpyFactory:
    """Builds rclpy messages; numpy arrays become the containers rclpy's setters accept without per-item checks."""

    def make(self, typename: str, **fields: Any) -> Any:
        cls = message_class(typename)
        types = cls.get_fields_and_field_types()
        msg = cls()
        for name, value in fields.items():
            if name not in types:
                raise TypeError(f"{typename} has no field {name!r}; fields: {sorted(types)}")
            setattr(msg, name, _coerce(types[name], value))
        return msg


def _coerce(field_type: str, value: Any) -> Any:
    sequence = _SEQUENCE.match(field_type)
    if sequence and sequence.group(1) in _TYPECODES:
        base = sequence.group(1)
        dtype = BASE_DTYPES[_SCALAR_ALIASES.get(base, base)]
        return array.array(_TYPECODES[base], np.ascontiguousarray(value, dtype=dtype).reshape(-1).tobytes())
    fixed = _FIXED.match(field_type)
    if fixed and fixed.group(1) in _TYPECODES:
        base = fixed.group(1)
        return np.ascontiguousarray(value, dtype=BASE_DTYPES[_SCALAR_ALIASES.get(base, base)]).reshape(-1)
    if sequence or fixed:
        return list(value)
    if field_type == "boolean":
        return bool(value)
    if field_type in _TYPECODES:
        return float(value) if field_type in ("float", "double") else int(value)
    return value
