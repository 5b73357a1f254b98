"""Label sets: class ids, names and colours, loaded from one YAML per set in config/labels/."""
from __future__ import annotations

import functools
import numbers
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import yaml

from seg_perception.resources import resource_dir


# A model predicts (largest id + 1) logits per pixel, so ids are bounded to bound the model: 4096
# covers every public label set (ADE20K-full, the largest, has 3688 classes).
MAX_CLASSES = 4096
_SHAPE = ("name, ignore_id and classes of {id, name, color: [r, g, b]} (optional per class: "
          "traversability: drivable | rough | obstacle | unknown, dynamic: true | false)")
# How a class counts for navigation (seg_perception.mapping.costmap): drivable and rough ground give their
# cost, obstacles are lethal inside the robot's height band, unknown classes (sky, "other") say nothing.
TRAVERSABILITY = ("drivable", "rough", "obstacle", "unknown")


class LabelSetError(ValueError):
    """A label set file is malformed or a requested label set does not exist."""


def _integer(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


@dataclass(frozen=True)
class LabelClass:
    """One class; construction checks the id (0..MAX_CLASSES - 1), name, sRGB colour, traversability
    (one of TRAVERSABILITY) and the dynamic flag (things that move: people, vehicles, animals)."""

    id: int
    name: str
    color: tuple[int, int, int]
    traversability: str = "unknown"
    dynamic: bool = False

    def __post_init__(self) -> None:
        if not _integer(self.id) or not 0 <= self.id < MAX_CLASSES:
            raise LabelSetError(f"class id {self.id!r} is invalid; accepted: an integer 0..{MAX_CLASSES - 1}")
        if not isinstance(self.name, str) or not self.name:
            raise LabelSetError(f"class {self.id} has name {self.name!r}; accepted: a non-empty string")
        color = tuple(self.color) if isinstance(self.color, (tuple, list)) else None
        if color is None or len(color) != 3 or not all(_integer(v) and 0 <= v <= 255 for v in color):
            raise LabelSetError(f"class {self.name!r} has colour {self.color!r}; accepted: [r, g, b], each 0..255")
        if self.traversability not in TRAVERSABILITY:
            raise LabelSetError(f"class {self.name!r} has traversability {self.traversability!r}; "
                                f"accepted: {', '.join(TRAVERSABILITY)}")
        if not isinstance(self.dynamic, bool):
            raise LabelSetError(f"class {self.name!r} has dynamic {self.dynamic!r}; accepted: true or false")
        object.__setattr__(self, "id", int(self.id))
        object.__setattr__(self, "color", tuple(int(v) for v in color))


@dataclass(frozen=True)
class LabelSet:
    """The classes a model predicts; travels with every checkpoint so palettes never mismatch."""

    name: str
    classes: tuple[LabelClass, ...]
    ignore_id: int = 255

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise LabelSetError(f"label set name {self.name!r} is invalid; accepted: a non-empty string")
        if not _integer(self.ignore_id) or not 0 <= self.ignore_id <= 65535:
            raise LabelSetError(f"label set {self.name!r} has ignore_id {self.ignore_id!r}; accepted: an integer 0..65535")
        if not all(isinstance(c, LabelClass) for c in self.classes):
            raise LabelSetError(f"label set {self.name!r}: classes must be LabelClass instances")
        ids = [c.id for c in self.classes]
        if not ids:
            raise LabelSetError(f"label set {self.name!r} has no classes")
        if len(set(ids)) != len(ids):
            raise LabelSetError(f"label set {self.name!r} repeats class ids: {sorted(ids)}")
        if len({c.name for c in self.classes}) != len(ids):
            raise LabelSetError(f"label set {self.name!r} repeats class names")
        if min(ids) < 0 or self.ignore_id in ids:
            raise LabelSetError(f"label set {self.name!r}: ids must be >= 0 and differ from ignore_id {self.ignore_id}")

    @property
    def num_classes(self) -> int:
        """Number of logits a model needs: the largest id + 1."""
        return max(c.id for c in self.classes) + 1

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.classes]

    def id_of(self, name: str) -> int:
        for c in self.classes:
            if c.name == name:
                return c.id
        raise LabelSetError(f"label set {self.name!r} has no class {name!r}; classes: {', '.join(self.names)}")

    def traversability_by_id(self) -> list[str]:
        """Per id 0..num_classes - 1, the class's traversability ("unknown" for ids without a class)."""
        table = ["unknown"] * self.num_classes
        for c in self.classes:
            table[c.id] = c.traversability
        return table

    def dynamic_ids(self) -> list[int]:
        """Ids of the classes flagged dynamic, ascending."""
        return sorted(c.id for c in self.classes if c.dynamic)

    def palette(self) -> np.ndarray:
        """(65536, 3) uint8 lookup table id → colour (read-only); unknown ids and the ignore id are black."""
        return self._palette

    @functools.cached_property
    def _palette(self) -> np.ndarray:
        # Built once per label set: it is looked up for every published frame.
        table = np.zeros((65536, 3), np.uint8)
        for c in self.classes:
            table[c.id] = c.color
        table.flags.writeable = False
        return table

    @functools.cached_property
    def _packed_palette(self) -> np.ndarray:
        # The palette as one uint32 (RGBA) per id: a 1-D take is 10x faster than indexing (65536, 3) rows.
        table = np.zeros((65536, 4), np.uint8)
        table[:, :3] = self._palette
        return table.view(np.uint32).ravel()

    def colorize(self, labels: np.ndarray) -> np.ndarray:
        """Label image (uint8/uint16) → RGB image."""
        if not labels.size:
            return np.zeros((*labels.shape, 3), np.uint8)
        rgba = np.take(self._packed_palette, labels.reshape(1, -1)).view(np.uint8).reshape(1, -1, 4)
        return cv2.cvtColor(rgba, cv2.COLOR_RGBA2RGB).reshape(*labels.shape, 3)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "ignore_id": self.ignore_id,
            "classes": [_class_dict(c) for c in self.classes],
        }

    @classmethod
    def from_dict(cls, data: Any) -> LabelSet:
        """The label set `to_dict` wrote (or a label-set YAML held); values are taken as they are, not coerced.

        Raises:
            LabelSetError: not a mapping of name, ignore_id (optional) and classes; unknown keys;
                more than MAX_CLASSES classes; or a class that `LabelClass` / `LabelSet` refuses.
        """
        _check_mapping(data, {"name", "classes"}, {"ignore_id"}, "label set")
        classes = data["classes"]
        if not isinstance(classes, list) or len(classes) > MAX_CLASSES:
            size = len(classes) if isinstance(classes, list) else type(classes).__name__
            raise LabelSetError(f"malformed label set: classes is {size}; accepted: a list of 1..{MAX_CLASSES} classes")
        for index, c in enumerate(classes):
            _check_mapping(c, {"id", "name", "color"}, {"traversability", "dynamic"}, f"label set class [{index}]")
        return cls(data["name"], tuple(LabelClass(c["id"], c["name"], c["color"], c.get("traversability", "unknown"),
                                                  c.get("dynamic", False)) for c in classes),
                   data.get("ignore_id", 255))


def _class_dict(c: LabelClass) -> dict[str, Any]:
    # the optional keys only where they differ from their defaults, so older label sets round-trip as they were
    out: dict[str, Any] = {"id": c.id, "name": c.name, "color": list(c.color)}
    if c.traversability != "unknown":
        out["traversability"] = c.traversability
    if c.dynamic:
        out["dynamic"] = True
    return out


def _check_mapping(data: Any, required: set[str], optional: set[str], what: str) -> None:
    if not isinstance(data, dict):
        raise LabelSetError(f"malformed {what}: {type(data).__name__} instead of a mapping; expected {_SHAPE}")
    missing, unknown = sorted(required - set(data)), sorted(set(data) - required - optional, key=str)
    if missing or unknown:
        raise LabelSetError(f"malformed {what}: missing {missing}, unknown {unknown}; expected {_SHAPE}")


def available_label_sets() -> list[str]:
    return sorted(p.stem for p in resource_dir("config/labels", "*.yaml").glob("*.yaml"))


def load_label_set(name_or_path: str | Path) -> LabelSet:
    """A label set by name (config/labels/<name>.yaml) or by path to a YAML file.

    Raises:
        LabelSetError: no such label set, an unreadable file or YAML, or contents `from_dict` refuses.
    """
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = resource_dir("config/labels", "*.yaml") / f"{name_or_path}.yaml"
        if not path.exists():
            raise LabelSetError(f"no label set {name_or_path!r}; available: {', '.join(available_label_sets())}")
    try:
        with open(path, encoding="utf-8") as stream:
            data = yaml.safe_load(stream)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise LabelSetError(f"cannot read label set {path}: {exc}") from None
    return LabelSet.from_dict(data)


def with_shipped_semantics(label_set: LabelSet) -> LabelSet:
    """`label_set` with the traversability and dynamic flags of the shipped label set of the same name and
    classes, when it carries none (checkpoints saved before label sets had them); else unchanged."""
    if any(c.traversability != "unknown" or c.dynamic for c in label_set.classes):
        return label_set
    try:
        shipped = load_label_set(label_set.name)
    except (LabelSetError, OSError):
        return label_set
    if [(c.id, c.name) for c in shipped.classes] != [(c.id, c.name) for c in label_set.classes]:
        return label_set
    classes = tuple(replace(c, traversability=s.traversability, dynamic=s.dynamic)
                    for c, s in zip(label_set.classes, shipped.classes))
    return replace(label_set, classes=classes)
