"""The nodes' ROS parameters: one table per node, the single source of truth that the nodes declare
from, the launch files pass through and the YAML files in config/ros/ are checked against.

ROS-free: `seg_perception.ros` turns each `Parameter` into a declared parameter with a descriptor
(type, description, range, read-only); everything else here (defaults, validation, turning
parameters into a PipelineConfig) is plain Python and tested without ROS.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from .config import DEFAULT_TOPICS, ConfigError, MappingConfig, PipelineConfig

TYPES = ("bool", "integer", "double", "string", "string_array")
OUTPUTS = ("labels", "color", "overlay", "confidence", "info")
MODALITIES = ("rgb", "thermal", "events")


@dataclass(frozen=True)
class Parameter:
    """One declared parameter.

    Attributes:
        type: one of TYPES.
        read_only: fixed once the node is configured (changing it needs a new engine or new subscriptions).
        choices: the accepted values (strings, or items of a string array).
        low, high: the accepted range of a number (inclusive).
    """

    name: str
    type: str
    default: Any
    description: str
    read_only: bool = True
    choices: tuple[str, ...] = ()
    low: float | None = None
    high: float | None = None

    def check(self, value: Any) -> str | None:
        """Why `value` is not accepted, or None when it is."""
        kind = {"bool": bool, "integer": int, "double": (int, float), "string": str, "string_array": (list, tuple)}
        if not isinstance(value, kind[self.type]) or (self.type in ("integer", "double") and isinstance(value, bool)):
            return f"{self.name} must be a {self.type.replace('_', ' ')}, not {type(value).__name__} {value!r}"
        if self.type == "double" and not math.isfinite(value):
            return f"{self.name} must be finite, not {value}"
        if self.low is not None and value < self.low or self.high is not None and value > self.high:
            return f"{self.name} = {value} is outside [{_num(self.low)}, {_num(self.high)}]"
        items = list(value) if self.type == "string_array" else [value]
        if self.type == "string_array" and not all(isinstance(v, str) for v in items):
            return f"{self.name} must hold strings only, not {value!r}"
        if self.choices:
            bad = [v for v in items if v not in self.choices]
            if bad:
                return f"{self.name}: {bad[0]!r} is not accepted; accepted: {', '.join(self.choices)}"
        return None


def _num(value: float | None) -> str:
    return "…" if value is None else f"{value:g}"


_TOPIC_HELP = "input topic (relative names resolve in the node's namespace; remap freely)"

SEGMENTATION: tuple[Parameter, ...] = (
    Parameter("model", "string", "student_rgb_thermal_events",
              "shipped model name, .safetensors checkpoint, exported .onnx, or your own .onnx or TensorRT .plan "
              "with a model card"),
    Parameter("card", "string", "", "model card YAML of your own network (empty: the card embedded in the "
              ".onnx or <model>.yaml beside it)"),
    Parameter("class_map", "string", "", "label map that remaps or merges the model's classes before publishing "
              "(a name in config/label_maps or a YAML path; empty: none, or the card's)"),
    Parameter("backend", "string", "auto", "inference backend; auto tries tensorrt, onnxruntime, torch",
              choices=("auto", "tensorrt", "onnxruntime", "torch")),
    Parameter("device", "string", "auto", "where inference runs", choices=("auto", "cpu", "cuda")),
    Parameter("precision", "string", "fp32", "engine precision", choices=("fp32", "fp16", "bf16", "int8")),
    Parameter("input_width", "integer", 0, "model input width in pixels (0: the model's training size)",
              low=0, high=8192),
    Parameter("input_height", "integer", 0, "model input height in pixels (0: the model's training size)",
              low=0, high=8192),
    Parameter("modalities", "string_array", ["rgb", "thermal", "events"],
              "inputs to subscribe (the model's others are fed as absent)", choices=MODALITIES),
    Parameter("label_set", "string", "", "expected label set name (empty: the model's); a mismatch fails configure"),
    Parameter("k", "integer", -1, "hard-region budget: pixels the point head re-predicts (-1: the model's "
              "default, 0: none); changes live", read_only=False, low=-1, high=3840),
    Parameter("outputs", "string_array", list(OUTPUTS),
              "outputs to publish (each is computed only while someone subscribes); changes live",
              read_only=False, choices=OUTPUTS),
    Parameter("rgb_transport", "string", "raw", "RGB as sensor_msgs/Image (raw) or CompressedImage (compressed)",
              choices=("raw", "compressed")),
    Parameter("rgb_topic", "string", "image", _TOPIC_HELP),
    Parameter("camera_info_topic", "string", "camera_info", _TOPIC_HELP),
    Parameter("thermal_topic", "string", "thermal/image", _TOPIC_HELP),
    Parameter("events_topic", "string", "events", _TOPIC_HELP),
    Parameter("partner_wait_ms", "double", 300.0, "how long a frame waits for its thermal image or events; a "
              "sensor silent since start-up is not waited for", low=1.0, high=10000.0),
    Parameter("thermal_slop_ms", "double", 30.0, "how far a thermal stamp may be from the RGB frame's",
              low=0.0, high=1000.0),
    Parameter("events_window_ms", "double", 50.0, "events accumulated over the window ending at each RGB frame",
              low=1.0, high=1000.0),
    Parameter("qos_reliability", "string", "reliable", "sensor subscriptions' reliability: reliable delivers large "
              "images over Fast DDS (bench/bench_qos.py); best_effort for drivers that publish best effort",
              choices=("best_effort", "reliable")),
    Parameter("qos_depth", "integer", 2, "sensor subscriptions' queue depth (keep last)", low=1, high=100),
    Parameter("threads", "integer", 0, "CPU threads for inference (0: the backend's default)", low=0, high=256),
    Parameter("diagnostics_period_s", "double", 1.0, "how often /diagnostics and the log report",
              low=0.1, high=60.0),
    Parameter("autostart", "bool", True, "configure and activate at start-up (false: wait for a lifecycle "
              "manager)"),
)

MAPPING: tuple[Parameter, ...] = (
    Parameter("cloud_topic", "string", "points", _TOPIC_HELP),
    Parameter("labels_topic", "string", "segmentation/labels", _TOPIC_HELP + " (the segmentation's labels)"),
    Parameter("confidence_topic", "string", "segmentation/confidence",
              _TOPIC_HELP + " (the segmentation's confidence; empty: none)"),
    Parameter("camera_info_topic", "string", "camera_info", _TOPIC_HELP),
    Parameter("label_set", "string", "sim_offroad", "label set of the incoming labels (name or YAML path)"),
    Parameter("map_frame", "string", "map", "fixed frame of the map"),
    Parameter("voxel_size", "double", 0.2, "voxel edge (m)", low=0.02, high=2.0),
    Parameter("radius", "double", 60.0, "voxels farther than this from the sensor are dropped (m; 0: keep all)",
              low=0.0, high=10_000.0),
    Parameter("max_voxels", "integer", 2_000_000, "voxel budget; the oldest voxels go first", low=1_000,
              high=100_000_000),
    Parameter("dynamic_decay_s", "double", 2.0, "a voxel of a dynamic class (person, vehicle: the label set's "
              "dynamic flag) is forgotten this long after it was last seen (s)", low=0.01, high=3600.0),
    Parameter("base_frame", "string", "base_link", "the robot frame the costmap's window and height band follow"),
    Parameter("costmap_resolution", "double", 0.2, "~/costmap cell edge (m)", low=0.02, high=10.0),
    Parameter("costmap_size_m", "double", 40.0, "~/costmap window edge around the robot (m)", low=1.0, high=1000.0),
    Parameter("costmap_min_height", "double", -1.0, "voxels below this, relative to base_frame, do not count (m)",
              low=-100.0, high=100.0),
    Parameter("costmap_max_height", "double", 2.0, "voxels above this, relative to base_frame (overhanging "
              "branches), do not count (m)", low=-100.0, high=100.0),
    Parameter("labels_slop_ms", "double", 60.0, "how far a label image's stamp may be from the cloud's",
              low=0.0, high=1000.0),
    Parameter("tf_timeout_s", "double", 0.2, "how long to wait for late TF before skipping a cloud",
              low=0.0, high=10.0),
    Parameter("labels_wait_s", "double", 0.5,
              "how long (sensor time: stamps of later clouds and label images) a cloud waits for its label image",
              low=0.01, high=10.0),
    Parameter("max_pending_clouds", "integer", 4, "clouds waiting for labels or TF; older ones are dropped",
              low=1, high=100),
    Parameter("publish_rate_hz", "double", 1.0, "how often the map is published", read_only=False,
              low=0.01, high=50.0),
    Parameter("static_transforms", "string_array", [],
              "extrinsics when no TF is available: 'parent child x y z qx qy qz qw' each"),
    Parameter("odom_topic", "string", "",
              "nav_msgs/Odometry topic taken as the header.frame_id -> child_frame_id transform, for robots "
              "without a TF broadcaster of that edge (empty: none)"),
    Parameter("save_path", "string", "", "where the save service and shutdown write the map (.npz)"),
    Parameter("save_on_shutdown", "bool", False, "save the map to save_path when the node shuts down"),
    Parameter("load_path", "string", "", "a saved map to start from"),
    Parameter("qos_reliability", "string", "reliable", "cloud subscription's reliability (see segmentation_node)",
              choices=("best_effort", "reliable")),
    Parameter("qos_depth", "integer", 2, "cloud subscription's queue depth (keep last)", low=1, high=100),
    Parameter("diagnostics_period_s", "double", 1.0, "how often /diagnostics and the log report",
              low=0.1, high=60.0),
)

# In one process the labels never cross a topic, and the segmentation's camera, label set, QoS and
# diagnostics settings serve the mapping too.
_NOT_IN_PERCEPTION = {"labels_topic", "confidence_topic", "labels_slop_ms", "labels_wait_s", "camera_info_topic",
                      "label_set", "qos_reliability", "qos_depth", "diagnostics_period_s"}
PERCEPTION: tuple[Parameter, ...] = SEGMENTATION + tuple(p for p in MAPPING if p.name not in _NOT_IN_PERCEPTION) + (
    Parameter("mapping", "bool", True, "label the LiDAR sweeps and fuse the voxel map in this process"),
)

TABLES: dict[str, tuple[Parameter, ...]] = {
    "segmentation_node": SEGMENTATION, "voxel_mapping_node": MAPPING, "perception_node": PERCEPTION}


def defaults(table: tuple[Parameter, ...]) -> dict[str, Any]:
    return {p.name: p.default for p in table}


def check(table: tuple[Parameter, ...], values: dict[str, Any], where: str) -> dict[str, Any]:
    """The defaults with `values` applied.

    Raises:
        ConfigError: an unknown name (listing the accepted ones) or a value a parameter does not accept.
    """
    by_name = {p.name: p for p in table}
    unknown = sorted(set(values) - set(by_name))
    if unknown:
        raise ConfigError(f"{where}: unknown parameter(s) {unknown}; accepted: {', '.join(sorted(by_name))}")
    for name, value in values.items():
        reason = by_name[name].check(value)
        if reason:
            raise ConfigError(f"{where}: {reason}")
    return {**defaults(table), **values}


ROS_PARAMETERS = {"use_sim_time": Parameter("use_sim_time", "bool", False, "ROS time from /clock")}
"""Parameters every ROS node has, accepted in any section of a parameters file."""


def load_params_file(path: str | Path) -> dict[str, dict[str, Any]]:
    """A ROS 2 parameters YAML (`node_name: {ros__parameters: {...}}`, node names may carry a namespace
    or the /** wildcard) → node name → checked parameters. Nodes without a table here are refused; a
    section for every node (`/**`) may only hold parameters some node here has, and is checked, not returned.

    Raises:
        ConfigError: unreadable YAML, an unknown node or parameter, or a value not accepted.
    """
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read parameters file {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must map node names to {{ros__parameters: …}}")
    nodes = {}
    for key, body in data.items():
        name = str(key).rsplit("/", 1)[-1]
        if name not in TABLES and name != "**":
            raise ConfigError(f"{path}: node {key!r} is not one of this package's nodes: {', '.join(TABLES)}")
        if not isinstance(body, dict) or set(body) != {"ros__parameters"}:
            raise ConfigError(f"{path}: {key} must hold exactly one key, ros__parameters")
        values = dict(body["ros__parameters"] or {})
        for standard, parameter in ROS_PARAMETERS.items():
            if standard in values and (reason := parameter.check(values.pop(standard))):
                raise ConfigError(f"{path}: {key}: {reason}")
        if name == "**":
            anywhere = {p.name: p for table in TABLES.values() for p in table}
            check(tuple(anywhere[n] for n in values if n in anywhere), {n: v for n, v in values.items()
                                                                         if n in anywhere}, f"{path}: {key}")
            unknown = sorted(set(values) - set(anywhere))
            if unknown:
                raise ConfigError(f"{path}: {key}: no node here has parameter(s) {unknown}")
            continue
        nodes[name] = check(TABLES[name], values, f"{path}: {key}")
    return nodes


def pipeline_config(values: dict[str, Any]) -> PipelineConfig:
    """The core configuration that a segmentation or perception node's parameters describe."""
    topics = {**DEFAULT_TOPICS, "rgb": values["rgb_topic"], "camera_info": values["camera_info_topic"],
              "thermal": values["thermal_topic"] if "thermal" in values["modalities"] else None,
              "events": values["events_topic"] if "events" in values["modalities"] else None,
              "labels": None, "lidar_labels": None}
    mapping = MappingConfig(enabled=False)
    if values.get("mapping"):
        topics["lidar"] = values["cloud_topic"]
        mapping = mapping_config(values)
    else:
        topics["lidar"] = None
    base = PipelineConfig()
    return replace(base, model=values["model"], card=values["card"] or None, class_map=values["class_map"] or None,
                   backend=values["backend"], device=values["device"],
                   precision=values["precision"], threads=values["threads"], topics=topics,
                   slop_ms={**base.slop_ms, "thermal": values["thermal_slop_ms"]}, wait_ms=values["partner_wait_ms"],
                   events_window_ms=values["events_window_ms"], mapping=mapping)


def mapping_config(values: dict[str, Any]) -> MappingConfig:
    """The map and navigation settings of a node's checked parameter values (`MAPPING`'s names)."""
    return MappingConfig(enabled=True, map_frame=values["map_frame"], voxel_size=values["voxel_size"],
                         radius=values["radius"] or None, max_voxels=values["max_voxels"],
                         dynamic_decay_s=values["dynamic_decay_s"], base_frame=values["base_frame"],
                         costmap_resolution=values["costmap_resolution"], costmap_size_m=values["costmap_size_m"],
                         costmap_height_band=(values["costmap_min_height"], values["costmap_max_height"]))


def markdown_table(table: tuple[Parameter, ...]) -> str:
    """The table as Markdown (name, type, default, live, description), as the README shows it."""
    rows = ["| parameter | type | default | live | description |", "| --- | --- | --- | --- | --- |"]
    for p in table:
        default = ", ".join(p.default) if p.type == "string_array" else p.default
        accepted = " (" + " \\| ".join(p.choices) + ")" if p.choices else ""  # \| : a pipe inside a table cell
        rows.append(f"| `{p.name}` | {p.type.replace('_', ' ')} | `{default}` | {'' if p.read_only else 'yes'} | "
                    f"{p.description}{accepted} |")
    return "\n".join(rows)
