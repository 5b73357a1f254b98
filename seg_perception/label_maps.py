"""Label maps: one id space → the classes of a label set (remap, merge, ignore).

The same maps serve three places: dataset label images (raw ids → a training label set), a model's
classes at run time (`--class-map`: what is published and scored), and ground truth whose ids
differ from the model's (`--gt-map`: what is scored against).
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from seg_perception.labels import LabelSet, LabelSetError, load_label_set
from seg_perception.resources import resource_dir

# Label images are 8- or 16-bit, so one table indexed by the raw id covers every possible value.
LOOKUP_SIZE = 65536


class LabelMapError(ValueError):
    """A label map that cannot be read or used, and why."""


@dataclass(frozen=True, eq=False)
class LabelMap:
    """Source ids → class ids of a target label set; ids that are not mapped become its ignore id.

    Attributes:
        name: the map's name.
        table: (65536,) int64 lookup table, `table[source_id]` = target id or `label_set.ignore_id`.
        label_set: the target label set.
        source: the label set of the source ids, when the map names one (then only its ids are mapped).
    """

    name: str
    table: np.ndarray
    label_set: LabelSet
    source: LabelSet | None = None

    def apply(self, labels: np.ndarray) -> np.ndarray:
        """Map a label image of source ids (uint8 or uint16) to int64 target ids.

        Raises:
            LabelMapError: the image is not of unsigned 8- or 16-bit integers.
        """
        labels = np.asarray(labels)
        if labels.dtype not in (np.uint8, np.uint16):
            raise LabelMapError(f"label ids must be uint8 or uint16 to be mapped, got {labels.dtype}")
        return self.table[labels]

    def check_source(self, label_set: LabelSet) -> None:
        """Raise unless the ids this map maps are classes of `label_set` (the model's, for a class map).

        Raises:
            LabelMapError: mapped ids that `label_set` does not have, listed with the accepted ones.
        """
        valid = {c.id for c in label_set.classes}
        mapped = {int(i) for i in np.flatnonzero(self.table != self.label_set.ignore_id)}
        unknown = sorted(mapped - valid)
        if unknown:
            raise LabelMapError(f"label map {self.name!r} maps ids {unknown}, which label set {label_set.name!r} does "
                                f"not have; its ids: {sorted(valid)}")
        if self.source is not None and self.source.num_classes != label_set.num_classes:
            raise LabelMapError(f"label map {self.name!r} is for source label set {self.source.name!r} "
                                f"({self.source.num_classes} classes), not {label_set.name!r} "
                                f"({label_set.num_classes} classes)")

    def compact(self, size: int) -> np.ndarray:
        """The table's first `size` entries, in the smallest unsigned type that holds the targets."""
        dtype = np.uint8 if max(self.label_set.num_classes, self.label_set.ignore_id + 1) <= 256 else np.uint16
        return self.table[:size].astype(dtype)


def available_label_maps() -> list[str]:
    try:
        folder = resource_dir("config/label_maps", "*.yaml")
    except FileNotFoundError:
        return []
    return sorted(p.stem for p in folder.glob("*.yaml"))


def load_label_map(name_or_path: str | os.PathLike) -> LabelMap:
    """A label map by name (config/label_maps/<name>.yaml) or by path to a YAML file.

    The file holds `target` (a label set name or a path to a label set YAML), `mapping` (source id,
    or class name when `source` names the source label set → target class id or name, or "ignore"),
    and optionally `name` and `source`; source ids not listed map to the target's ignore id.

    Raises:
        LabelMapError: no such map, or a malformed one (bad ids or names, targets not in the label set).
    """
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        names = available_label_maps()
        if str(name_or_path) not in names:
            raise LabelMapError(f"no label map {str(name_or_path)!r}; available: {', '.join(names) or 'none'} (or "
                                f"give a path to a .yaml file)")
        path = resource_dir("config/label_maps", "*.yaml") / f"{name_or_path}.yaml"
    try:
        with open(path, encoding="utf-8") as stream:
            data = yaml.safe_load(stream)
    except (OSError, yaml.YAMLError) as exc:
        raise LabelMapError(f"cannot read label map {path}: {exc}") from None
    if not isinstance(data, Mapping) or "target" not in data or not isinstance(data.get("mapping"), Mapping):
        raise LabelMapError(f"label map {path} must hold `target` (a label set) and a `mapping` of "
                            f"source id → target id or 'ignore'")
    unknown = sorted(set(data) - {"name", "target", "source", "mapping"})
    if unknown:
        raise LabelMapError(f"label map {path}: unknown keys {unknown}; accepted: name, source, target, mapping")
    try:
        label_set = load_label_set(data["target"])
        source = load_label_set(data["source"]) if data.get("source") is not None else None
    except (LabelSetError, OSError, yaml.YAMLError) as exc:
        raise LabelMapError(f"label map {path}: {exc}") from None
    return label_map_from_dict(data["mapping"], label_set, source, name=str(data.get("name", path.stem)),
                               where=f"label map {path}")


def label_map_from_dict(mapping: Mapping[Any, Any], label_set: LabelSet, source: LabelSet | None = None, *,
                        name: str = "inline", where: str = "label map") -> LabelMap:
    """A LabelMap from {source id or name: target id, name or "ignore"}.

    Raises:
        LabelMapError: a source or target that is not an id or class name of its label set.
    """
    table = np.full(LOOKUP_SIZE, label_set.ignore_id, np.int64)
    for key, value in mapping.items():
        table[_source_id(key, source, where)] = _target_id(key, value, label_set, where)
    return LabelMap(name, table, label_set, source)


def _source_id(key: Any, source: LabelSet | None, where: str) -> int:
    if isinstance(key, str) and source is not None:
        try:
            return source.id_of(key)
        except LabelSetError as exc:
            raise LabelMapError(f"{where}: {exc}") from None
    if isinstance(key, bool) or not isinstance(key, int) or not 0 <= key < LOOKUP_SIZE:
        named = f", or a class name of {source.name!r}" if source is not None else " (class names need `source`)"
        raise LabelMapError(f"{where}: source id {key!r} is not an integer in 0 … {LOOKUP_SIZE - 1}{named}")
    if source is not None and key not in {c.id for c in source.classes}:
        raise LabelMapError(f"{where}: source id {key} is not a class of {source.name!r}; its ids: "
                            f"{sorted(c.id for c in source.classes)}")
    return key


def _target_id(key: Any, value: Any, label_set: LabelSet, where: str) -> int:
    valid = {c.id for c in label_set.classes}
    if value == "ignore":
        return label_set.ignore_id
    if isinstance(value, str):
        try:
            return label_set.id_of(value)
        except LabelSetError as exc:
            raise LabelMapError(f"{where}: {exc}") from None
    if isinstance(value, bool) or not isinstance(value, int) or (value not in valid and value != label_set.ignore_id):
        raise LabelMapError(f"{where}: source id {key} maps to {value!r}, which is not a class id of label set "
                            f"{label_set.name!r} ({sorted(valid)}), a class name, nor 'ignore'")
    return value
