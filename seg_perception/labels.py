"""Label sets: class ids, names and colours, loaded from one YAML per set in config/labels/."""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import yaml

from seg_perception.resources import resource_dir


class LabelSetError(ValueError):
    """A label set file is malformed or a requested label set does not exist."""


@dataclass(frozen=True)
class LabelClass:
    id: int
    name: str
    color: tuple[int, int, int]


@dataclass(frozen=True)
class LabelSet:
    """The classes a model predicts; travels with every checkpoint so palettes never mismatch."""

    name: str
    classes: tuple[LabelClass, ...]
    ignore_id: int = 255

    def __post_init__(self) -> None:
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
            "classes": [{"id": c.id, "name": c.name, "color": list(c.color)} for c in self.classes],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LabelSet:
        try:
            classes = tuple(
                LabelClass(int(c["id"]), str(c["name"]), tuple(int(v) for v in c["color"]))  # type: ignore[arg-type]
                for c in data["classes"]
            )
            return cls(str(data["name"]), classes, int(data.get("ignore_id", 255)))
        except (KeyError, TypeError, ValueError) as exc:
            raise LabelSetError(
                f"malformed label set ({exc!r}); expected name, ignore_id and classes of {{id, name, color: [r, g, b]}}"
            ) from None


def available_label_sets() -> list[str]:
    return sorted(p.stem for p in resource_dir("config/labels", "*.yaml").glob("*.yaml"))


def load_label_set(name_or_path: str | Path) -> LabelSet:
    """A label set by name (config/labels/<name>.yaml) or by path to a YAML file."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = resource_dir("config/labels", "*.yaml") / f"{name_or_path}.yaml"
        if not path.exists():
            raise LabelSetError(f"no label set {name_or_path!r}; available: {', '.join(available_label_sets())}")
    with open(path, encoding="utf-8") as stream:
        return LabelSet.from_dict(yaml.safe_load(stream))
