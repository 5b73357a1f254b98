"""The pipeline's configuration: model and backend, topics per modality, synchronisation, mapping.

One YAML (see config/pipeline/sim.yaml) serves replay and the nodes; every key is optional, an
unknown key is an error that lists the accepted ones, and values are taken as YAML typed them:
`enabled: "no"` is a string, not a boolean, and is refused.
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from seg_perception.resources import resource_dir

DEFAULT_TOPICS = {"rgb": "/camera/image_raw", "camera_info": "/camera/camera_info", "thermal": "/thermal/image_raw",
                  "events": "/events", "lidar": "/lidar/points", "labels": "/camera/labels",
                  "lidar_labels": "/lidar/labels", "tf": "/tf", "tf_static": "/tf_static"}


class ConfigError(ValueError):
    """A configuration file or value the pipeline cannot use; the message says what is accepted."""


@dataclass(frozen=True)
class MappingConfig:
    enabled: bool = True
    map_frame: str = "map"
    voxel_size: float = 0.2
    radius: float | None = 60.0
    max_voxels: int = 2_000_000
    dynamic_decay_s: float = 2.0  # a voxel of a dynamic class (label set) is forgotten this long after last seen
    base_frame: str = "base_link"  # the robot frame the costmap's window and height band follow
    costmap_resolution: float = 0.2  # m a cell
    costmap_size_m: float = 40.0  # window edge around the robot
    costmap_height_band: tuple[float, float] = (-1.0, 2.0)  # m relative to the base: voxels that count


@dataclass(frozen=True)
class StaticTransform:
    """T_parent_child: translation (m) and rotation as a unit quaternion x, y, z, w (as in a TF message)."""

    parent: str
    child: str
    translation: tuple[float, float, float] = (0.0, 0.0, 0.0)
    rotation: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 1.0)

    def matrix(self) -> np.ndarray:
        from seg_perception.io.transforms import quaternion_to_matrix

        T = np.eye(4)
        T[:3, :3] = quaternion_to_matrix(self.rotation)
        T[:3, 3] = self.translation
        return T


@dataclass(frozen=True)
class PipelineConfig:
    model: str = "student_rgb_thermal_events"
    card: str | None = None  # model card of a user's own network (default: embedded, or <model>.yaml beside it)
    class_map: str | None = None  # label map remapping or merging the model's classes before publishing and scoring
    gt_map: str | None = None  # label map from the ground truth's ids to the published classes, for scoring
    backend: str = "auto"
    device: str = "auto"
    precision: str = "fp32"
    threads: int = 0  # CPU threads per inference; 0: one, with replay segmenting a frame per core at once
    topics: dict[str, str | None] = field(default_factory=lambda: dict(DEFAULT_TOPICS))
    slop_ms: dict[str, float] = field(default_factory=lambda: {"thermal": 30.0, "lidar": 60.0, "labels": 5.0,
                                                                    "lidar_labels": 60.0})
    wait_ms: float = 300.0
    events_window_ms: float = 50.0
    mapping: MappingConfig = field(default_factory=MappingConfig)
    labels_dir: str | None = None  # ground-truth label images named by stamp, for bags without a label topic
    camera_info_file: str | None = None  # camera_calibration YAML, for bags without camera_info
    camera_frame: str = "camera_optical_frame"  # the frame of camera_info_file's camera
    static_transforms: tuple[StaticTransform, ...] = ()  # for bags without (all of) /tf_static

    def __post_init__(self) -> None:
        if isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 0:
            raise ConfigError(f"threads must be a whole number >= 0 (0: automatic), not {self.threads!r}")

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "configuration") -> PipelineConfig:
        """The configuration `data` describes (as YAML gives it).

        Raises:
            ConfigError: unknown keys or topic roles, or a value of the wrong type (naming the key,
                the value and the accepted type).
        """
        _check_keys(data, {f.name for f in fields(cls)}, where)
        _check_types(cls, data, where, skip=("mapping", "static_transforms"))
        values = dict(data)
        if "slop_ms" in values:
            _check_keys(values["slop_ms"], set(DEFAULT_TOPICS), f"{where}: slop_ms")
        if "topics" in values:
            _check_keys(values["topics"], set(DEFAULT_TOPICS), f"{where}: topics")
            values["topics"] = {**DEFAULT_TOPICS, **values["topics"]}
            used = [t for t in values["topics"].values() if t]
            twice = sorted({t for t in used if used.count(t) > 1})
            if twice:
                raise ConfigError(f"{where}: topic(s) {twice} are given more than one role; one role a topic")
        if "mapping" in values:
            _check_keys(values["mapping"], {f.name for f in fields(MappingConfig)}, f"{where}: mapping")
            _check_types(MappingConfig, values["mapping"], f"{where}: mapping")
            values["mapping"] = MappingConfig(**{k: tuple(v) if isinstance(v, list) else v
                                                 for k, v in values["mapping"].items()})
        if "static_transforms" in values:
            if not isinstance(values["static_transforms"], (list, type(None))):
                raise ConfigError(f"{where}: static_transforms is {values['static_transforms']!r}; accepted: a list "
                                  "of {parent, child, translation, rotation}")
            values["static_transforms"] = tuple(_static_transform(t, f"{where}: static_transforms[{i}]")
                                                for i, t in enumerate(values["static_transforms"] or ()))
        return cls(**values)

    @classmethod
    def load(cls, path: str | Path | None = None) -> PipelineConfig:
        """From a YAML file; None: the shipped config/pipeline/sim.yaml.

        Raises:
            ConfigError: unreadable YAML, unknown keys, or values of the wrong type.
        """
        path = Path(path) if path is not None else resource_dir("config/pipeline", "*.yaml") / "sim.yaml"
        try:
            with open(path, encoding="utf-8") as stream:
                data = yaml.safe_load(stream) or {}
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read pipeline configuration {path}: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path} must hold a mapping of settings, not {type(data).__name__}")
        for key in ("labels_dir", "camera_info_file", "card"):  # relative to the configuration file
            if data.get(key) and isinstance(data[key], str):  # other types are named by from_dict
                data[key] = str(path.parent / Path(data[key]).expanduser())
        return cls.from_dict(data, str(path))

    def with_overrides(self, **changes: Any) -> PipelineConfig:
        """A copy with the non-None `changes` applied (command-line flags over the file)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


def _static_transform(data: Any, where: str) -> StaticTransform:
    _check_keys(data, {f.name for f in fields(StaticTransform)}, where)
    shape = "give parent, child, translation [x, y, z], rotation [x, y, z, w]"
    missing = sorted({"parent", "child"} - set(data))
    if missing:
        raise ConfigError(f"{where} lacks {', '.join(map(repr, missing))}; {shape}")
    if not (isinstance(data["parent"], str) and isinstance(data["child"], str)):
        raise ConfigError(f"{where}: parent {data['parent']!r} and child {data['child']!r} must be strings (frame ids)")
    translation = data.get("translation", [0.0, 0.0, 0.0])
    rotation = data.get("rotation", [0.0, 0.0, 0.0, 1.0])
    if not (_numbers(translation, 3) and _numbers(rotation, 4)):
        raise ConfigError(f"{where}: translation must be 3 finite numbers and rotation 4 (quaternion x, y, z, w); "
                          f"got {translation!r} and {rotation!r}")
    if not math.isclose(math.hypot(*rotation), 1.0, abs_tol=1e-3):
        raise ConfigError(f"{where}: rotation {list(rotation)} is not a unit quaternion")
    return StaticTransform(data["parent"], data["child"], tuple(float(v) for v in translation),
                           tuple(float(v) for v in rotation))


def _numbers(values: Any, count: int) -> bool:
    return isinstance(values, (list, tuple)) and len(values) == count and all(_fits(v, "float") for v in values)


# Accepted YAML types by annotation; the message names them. A bool is no number here (YAML's `yes`
# would otherwise become 1), and numbers must be finite.
_ACCEPTED = {"bool": "a boolean (true/false)", "int": "a whole number", "float": "a finite number",
             "str": "a string"}


def _check_types(cls: type, data: dict[str, Any], where: str, skip: tuple[str, ...] = ()) -> None:
    """Raise ConfigError unless each value of `data` has the type `cls` annotates its key with (the
    annotations are strings such as "float | None" under `from __future__ import annotations`)."""
    hints = {f.name: str(f.type) for f in fields(cls)}
    for key, value in data.items():
        if key in skip:
            continue
        hint = hints[key]
        if not _fits(value, hint):
            raise ConfigError(f"{where}: {key} is {value!r} ({type(value).__name__}); accepted: {_describe(hint)}")


def _fits(value: Any, hint: str) -> bool:
    if hint.startswith("tuple[float"):
        return _numbers(value, hint.count("float"))
    if hint.startswith("dict[str, "):
        inner = hint[len("dict[str, "):-1]
        return isinstance(value, dict) and all(isinstance(k, str) and _fits(v, inner) for k, v in value.items())
    options = [option.strip() for option in hint.split("|")]
    if "None" in options and value is None:
        return True
    if "bool" in options:
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if "int" in options:
        return isinstance(value, int)
    if "float" in options:  # compared, not converted: a YAML integer of 400 digits has no float
        return isinstance(value, (int, float)) and -sys.float_info.max <= value <= sys.float_info.max
    return "str" in options and isinstance(value, str)


def _describe(hint: str) -> str:
    if hint.startswith("tuple[float"):
        return f"a list of {hint.count('float')} finite numbers"
    if hint.startswith("dict[str, "):
        return f"a mapping of names to {_describe(hint[len('dict[str, '):-1])}"
    return " or ".join("null" if option.strip() == "None" else _ACCEPTED[option.strip()] for option in hint.split("|"))


def _check_keys(data: Any, accepted: set[str], where: str) -> None:
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a mapping, not {type(data).__name__}")
    unknown = sorted(set(data) - accepted)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; accepted: {', '.join(sorted(accepted))}")
