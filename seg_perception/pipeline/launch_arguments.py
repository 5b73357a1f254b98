"""The launch files' arguments and what a launch starts, without ROS.

`LAUNCH_FILES` holds the arguments each launch/*.launch.py declares (name, default, description,
choices); the arguments that set a node parameter take their description and choices from the
parameter tables. `plan()` turns the values of one launch into the nodes to start (executable,
name, parameters, remappings) and, for a replay, the `ros2 bag play` command line. The launch
files only turn a plan into launch_ros actions, so every decision is made and tested here.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from seg_perception.resources import resource_dir

from .config import ConfigError
from .parameters import MODALITIES, SEGMENTATION, TABLES, check, defaults, load_params_file

PACKAGE = "seg_perception"
PROFILES = ("rgb", "rgb_thermal", "multimodal", "jetson_orin", "sim", "voxel_mapping")  # config/ros/<name>.yaml
LIFECYCLE_NODES = ("segmentation_node", "perception_node")
# Launch arguments handed to the segmenting nodes' parameter of the same name when not empty.
PASSED = ("model", "backend", "device", "precision", "rgb_transport")
CLOCK_HZ = 100  # /clock rate of a replayed bag
BOOL = ("true", "false")
_KEEP = " (empty: as the params file says)"


@dataclass(frozen=True)
class LaunchArgument:
    """One launch argument; a `default` of None makes it required."""

    name: str
    default: str | None
    description: str
    choices: tuple[str, ...] = ()

    def declaration(self) -> dict[str, Any]:
        """Keyword arguments of launch.actions.DeclareLaunchArgument."""
        kwargs: dict[str, Any] = {"name": self.name, "description": self.description}
        if self.default is not None:
            kwargs["default_value"] = self.default
        if self.choices:
            kwargs["choices"] = list(self.choices)
        return kwargs


def _passed(name: str) -> LaunchArgument:
    parameter = next(p for p in SEGMENTATION if p.name == name)
    return LaunchArgument(name, "", parameter.description + _KEEP, ("", *parameter.choices) if parameter.choices else ())


_ARGUMENTS = {a.name: a for a in (
    LaunchArgument("params_file", "multimodal", "ROS parameters YAML: a path, or a profile shipped in config/ros/ ("
                   + ", ".join(PROFILES) + ")"),
    LaunchArgument("namespace", "", "namespace of the nodes; their topics are relative, so they move with it"),
    LaunchArgument("single_process", "true", "true: one perception_node, labels never leave the process; false: "
                   "segmentation_node and voxel_mapping_node, its labels input remapped to the segmentation's", BOOL),
    LaunchArgument("use_thermal", "", "subscribe the thermal camera" + _KEEP, ("", *BOOL)),
    LaunchArgument("use_events", "", "subscribe the event camera" + _KEEP, ("", *BOOL)),
    LaunchArgument("use_lidar", "", "label the LiDAR sweeps and fuse the voxel map (empty: the params file's "
                   "perception_node mapping, true unless it says otherwise)", ("", *BOOL)),
    *(_passed(name) for name in PASSED),
    LaunchArgument("autostart", "true", "lifecycle nodes configure and activate themselves; false: they wait for "
                   "a lifecycle manager", BOOL),
    LaunchArgument("use_sim_time", "false", "follow /clock (a bag played with --clock) instead of the wall clock",
                   BOOL),
    LaunchArgument("log_level", "info", "log level of the nodes", ("debug", "info", "warn", "error", "fatal")),
    LaunchArgument("bag", None, "rosbag2 to play: its folder, or an .mcap or .db3 file"),
    LaunchArgument("rate", "1.0", "playback speed factor (> 0)"),
    LaunchArgument("delay", "3.0", "seconds before playback starts, for the nodes to load their model (raise it "
                   "when a TensorRT engine is built on first use)"),
    LaunchArgument("loop", "false", "play the bag over and over", BOOL),
    LaunchArgument("shutdown_at_end", "true", "stop the nodes when the bag has played (a voxel_mapping_node with "
                   "save_on_shutdown then saves its map)", BOOL),
)}


def _pick(*names: str, **default: str) -> tuple[LaunchArgument, ...]:
    return tuple(replace(_ARGUMENTS[n], default=default[n]) if n in default else _ARGUMENTS[n] for n in names)


_SEGMENTING = ("use_thermal", "use_events", *PASSED, "autostart")
LAUNCH_FILES: dict[str, tuple[LaunchArgument, ...]] = {
    "perception.launch.py": _pick("params_file", "namespace", "single_process", "use_lidar", *_SEGMENTING,
                                  "use_sim_time", "log_level"),
    "segmentation.launch.py": _pick("params_file", "namespace", *_SEGMENTING, "use_sim_time", "log_level"),
    "voxel_mapping.launch.py": _pick("params_file", "namespace", "use_sim_time", "log_level",
                                     params_file="voxel_mapping"),
    # Sim time always: the bag's /clock drives the nodes.
    "replay.launch.py": _pick("bag", "rate", "delay", "loop", "shutdown_at_end", "params_file", "namespace",
                              "single_process", "use_lidar", *_SEGMENTING, "log_level", params_file="sim"),
}


@dataclass(frozen=True)
class NodePlan:
    """One node to start (a launch_ros LifecycleNode when `lifecycle`, else a Node)."""

    name: str  # also its executable
    namespace: str
    lifecycle: bool
    params_file: Path
    overrides: dict[str, Any] = field(default_factory=dict)  # over the params file, from the launch arguments
    remappings: tuple[tuple[str, str], ...] = ()
    log_level: str = "info"

    def node_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of launch_ros.actions.Node and LifecycleNode."""
        return {"package": PACKAGE, "executable": self.name, "name": self.name, "namespace": self.namespace,
                "parameters": [str(self.params_file), dict(self.overrides)], "remappings": list(self.remappings),
                "ros_arguments": ["--log-level", self.log_level], "output": "screen", "emulate_tty": True}


@dataclass(frozen=True)
class LaunchPlan:
    nodes: tuple[NodePlan, ...]
    bag_play: tuple[str, ...] = ()  # the `ros2 bag play` command line of a replay
    shutdown_at_end: bool = False  # end the launch when the bag player exits


def params_file_path(value: str) -> Path:
    """The parameters file a `params_file` argument names: a shipped profile (see PROFILES) or a path.

    Raises:
        ConfigError: neither a shipped profile nor an existing file.
    """
    if value in PROFILES:
        return resource_dir("config/ros", f"{value}.yaml") / f"{value}.yaml"
    path = Path(value).expanduser()
    if not value or not path.is_file():
        raise ConfigError(f"params_file {value!r} is neither a file nor a shipped profile ({', '.join(PROFILES)})")
    return path.resolve()


def plan(launch_file: str, values: dict[str, str]) -> LaunchPlan:
    """What `launch_file` starts, given its arguments' values (absent ones take their defaults).

    Raises:
        ConfigError: an unknown launch file or argument, a required one missing, a value not accepted,
            a params file that is missing or does not validate, or a voxel mapping without labels to map.
    """
    args = _values(launch_file, values)
    path = params_file_path(args["params_file"])
    sections = load_params_file(path)

    def current(node: str) -> dict[str, Any]:
        return sections.get(node) or defaults(TABLES[node])

    kind = launch_file.split(".")[0]
    lidar = _flag(args["use_lidar"]) if args.get("use_lidar") else current("perception_node")["mapping"]
    if kind in ("segmentation", "voxel_mapping"):
        names = [f"{kind}_node"]
    elif _flag(args["single_process"]):
        names = ["perception_node"]
    else:
        names = ["segmentation_node"] + (["voxel_mapping_node"] if lidar else [])
    nodes = []
    for name in names:
        overrides = _overrides(name, args, current(name), lidar)
        remappings: tuple[tuple[str, str], ...] = ()
        if name == "voxel_mapping_node" and "segmentation_node" in names:
            remappings = _wire(current("segmentation_node"), current(name), overrides)
        check(TABLES[name], overrides, f"{launch_file}: {name}")
        overrides["use_sim_time"] = kind == "replay" or _flag(args["use_sim_time"])
        nodes.append(NodePlan(name, args["namespace"], name in LIFECYCLE_NODES, path, overrides, remappings,
                              args["log_level"]))
    if kind != "replay":
        return LaunchPlan(tuple(nodes))
    return LaunchPlan(tuple(nodes), _bag_play(args), _flag(args["shutdown_at_end"]))


def _values(launch_file: str, values: dict[str, str]) -> dict[str, str]:
    if launch_file not in LAUNCH_FILES:
        raise ConfigError(f"unknown launch file {launch_file!r}; known: {', '.join(LAUNCH_FILES)}")
    declared = {a.name: a for a in LAUNCH_FILES[launch_file]}
    unknown = sorted(set(values) - set(declared))
    if unknown:
        raise ConfigError(f"{launch_file} has no argument(s) {unknown}; accepted: {', '.join(declared)}")
    result = {}
    for argument in declared.values():
        value = values.get(argument.name, argument.default)
        if value is None:
            raise ConfigError(f"{launch_file} needs {argument.name}:=… ({argument.description})")
        if argument.choices and value not in argument.choices:
            raise ConfigError(f"{argument.name}:={value!r} is not accepted; accepted: "
                              + ", ".join(repr(c) for c in argument.choices))
        result[argument.name] = value
    return result


def _flag(value: str) -> bool:
    return value == "true"


def _overrides(node: str, args: dict[str, str], current: dict[str, Any], lidar: bool) -> dict[str, Any]:
    """The parameters of `node` that the launch arguments set over its params file."""
    if node not in LIFECYCLE_NODES:
        return {}
    overrides: dict[str, Any] = {name: args[name] for name in PASSED if args[name]}
    wanted = set(current["modalities"])
    for modality in ("thermal", "events"):
        if args[f"use_{modality}"]:
            (wanted.add if _flag(args[f"use_{modality}"]) else wanted.discard)(modality)
    if wanted != set(current["modalities"]):
        overrides["modalities"] = [m for m in MODALITIES if m in wanted]
    overrides["autostart"] = _flag(args["autostart"])
    if node == "perception_node" and args.get("use_lidar"):
        overrides["mapping"] = lidar
    return overrides


def _wire(segmentation: dict[str, Any], mapping: dict[str, Any], overrides: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    """Remappings that feed the voxel mapping's label inputs from segmentation_node's outputs (~/labels,
    ~/confidence); a confidence input the segmentation does not publish is switched off in `overrides`."""
    if "labels" not in segmentation["outputs"]:
        raise ConfigError("voxel_mapping_node needs segmentation_node's labels: add labels to its outputs in the "
                          "params file, or pass use_lidar:=false")
    remappings = [(mapping["labels_topic"], "segmentation_node/labels")]
    if mapping["confidence_topic"]:
        if "confidence" in segmentation["outputs"]:
            remappings.append((mapping["confidence_topic"], "segmentation_node/confidence"))
        else:
            overrides["confidence_topic"] = ""
    return tuple(remappings)


def _bag_play(args: dict[str, str]) -> tuple[str, ...]:
    bag = Path(args["bag"]).expanduser()
    if not bag.exists():
        raise ConfigError(f"bag {args['bag']!r} does not exist; give a rosbag2 folder or an .mcap or .db3 file")
    rate, delay = _number("rate", args["rate"]), _number("delay", args["delay"])
    if not (0 < rate < math.inf and 0 <= delay < math.inf):
        raise ConfigError(f"rate must be > 0 and delay >= 0, not rate:={args['rate']} delay:={args['delay']}")
    command = ["ros2", "bag", "play", str(bag.resolve()), f"--clock={CLOCK_HZ}", f"--rate={rate:g}"]
    if delay > 0:  # ros2 bag play refuses --delay=0
        command.append(f"--delay={delay:g}")
    if _flag(args["loop"]):
        command.append("--loop")
    return tuple(command)


def _number(name: str, value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise ConfigError(f"{name}:={value!r} is not a number") from None
