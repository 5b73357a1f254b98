"""The pipeline's configuration: model and backend, topics per modality, synchronisation, mapping.

One YAML (see config/pipeline/sim.yaml) serves replay and the nodes; every key is optional and an
unknown key is an error that lists the accepted ones.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

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


@dataclass(frozen=True)
class PipelineConfig:
    model: str = "student_rgb_thermal_events"
    backend: str = "auto"
    device: str = "auto"
    precision: str = "fp32"
    topics: dict[str, str | None] = field(default_factory=lambda: dict(DEFAULT_TOPICS))
    slop_ms: dict[str, float] = field(default_factory=lambda: {"thermal": 30.0, "lidar": 60.0, "labels": 5.0,
                                                                    "lidar_labels": 60.0})
    wait_ms: float = 300.0
    events_window_ms: float = 50.0
    mapping: MappingConfig = field(default_factory=MappingConfig)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "configuration") -> PipelineConfig:
        """Raises ConfigError on unknown keys or topic roles."""
        _check_keys(data, {f.name for f in fields(cls)}, where)
        values = dict(data)
        if "topics" in values:
            _check_keys(values["topics"], set(DEFAULT_TOPICS), f"{where}: topics")
            values["topics"] = {**DEFAULT_TOPICS, **values["topics"]}
            used = [t for t in values["topics"].values() if t]
            twice = sorted({t for t in used if used.count(t) > 1})
            if twice:
                raise ConfigError(f"{where}: topic(s) {twice} are given more than one role; one role a topic")
        if "mapping" in values:
            _check_keys(values["mapping"], {f.name for f in fields(MappingConfig)}, f"{where}: mapping")
            values["mapping"] = MappingConfig(**values["mapping"])
        return cls(**values)

    @classmethod
    def load(cls, path: str | Path | None = None) -> PipelineConfig:
        """From a YAML file; None: the shipped config/pipeline/sim.yaml.

        Raises:
            ConfigError: unreadable YAML, or unknown keys.
        """
        path = Path(path) if path is not None else resource_dir("config/pipeline", "*.yaml") / "sim.yaml"
        try:
            with open(path, encoding="utf-8") as stream:
                data = yaml.safe_load(stream) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read pipeline configuration {path}: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path} must hold a mapping of settings, not {type(data).__name__}")
        return cls.from_dict(data, str(path))

    def with_overrides(self, **changes: Any) -> PipelineConfig:
        """A copy with the non-None `changes` applied (command-line flags over the file)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


def _check_keys(data: Any, accepted: set[str], where: str) -> None:
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a mapping, not {type(data).__name__}")
    unknown = sorted(set(data) - accepted)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; accepted: {', '.join(sorted(accepted))}")
