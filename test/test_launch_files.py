"""Launch files, checked without ROS launch: they import, every argument is described, the arguments
agree with the node parameter tables and the shipped params files, and what a launch starts (nodes,
parameters, remappings, the bag player) is what the arguments ask for."""
from __future__ import annotations

import ast
import importlib.util
import itertools
import sys
import types
from pathlib import Path

import pytest
import yaml

from seg_perception.pipeline import ConfigError
from seg_perception.pipeline.launch_arguments import (
    BOOL,
    LAUNCH_FILES,
    LIFECYCLE_NODES,
    PASSED,
    PROFILES,
    LaunchArgument,
    plan,
    params_file_path,
)
from seg_perception.pipeline.parameters import MODALITIES, PERCEPTION, SEGMENTATION, TABLES, check

ROOT = Path(__file__).resolve().parents[1]
LAUNCH_DIR = ROOT / "launch"
ROS_CONFIG = ROOT / "config" / "ros"
NAMES = sorted(LAUNCH_FILES)


def load_launch_file(name: str) -> types.ModuleType:
    """The launch file as a module, the way `ros2 launch` loads it (by path)."""
    spec = importlib.util.spec_from_file_location(name.replace(".", "_"), LAUNCH_DIR / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_launch_folder_holds_exactly_the_planned_launch_files():
    assert sorted(p.name for p in LAUNCH_DIR.glob("*.launch.py")) == NAMES
    assert NAMES == ["perception.launch.py", "replay.launch.py", "segmentation.launch.py", "voxel_mapping.launch.py"]


@pytest.mark.parametrize("name", NAMES)
def test_launch_file_imports_without_launch_and_declares_its_table(name):
    module = load_launch_file(name)
    assert module.ARGUMENTS is LAUNCH_FILES[name]
    assert callable(module.generate_launch_description)
    assert f"ros2 launch seg_perception {name}" in module.__doc__
    tree = ast.parse((LAUNCH_DIR / name).read_text(encoding="utf-8"))
    top_level = {alias.name.split(".")[0] for node in tree.body if isinstance(node, ast.Import) for alias in node.names}
    top_level |= {node.module.split(".")[0] for node in tree.body if isinstance(node, ast.ImportFrom)}
    assert not top_level & {"launch", "launch_ros"}, "launch and launch_ros are imported inside generate_launch_description"
    # Every plan() call names this very file (a copied launch file that plans another's nodes fails here).
    planned = [c.args[0].value for c in ast.walk(tree) if isinstance(c, ast.Call) and getattr(c.func, "id", "") == "plan"]
    assert planned and set(planned) == {name}


@pytest.mark.parametrize("name", NAMES)
def test_every_argument_is_described_and_its_default_accepted(name):
    arguments = LAUNCH_FILES[name]
    assert len({a.name for a in arguments}) == len(arguments)
    for argument in arguments:
        assert argument.description.strip(), argument.name
        if argument.choices and argument.default is not None:
            assert argument.default in argument.choices, argument.name
        declaration = argument.declaration()
        assert declaration["description"] == argument.description
    # Literal DeclareLaunchArgument calls, if a launch file grows any, must be described too.
    tree = ast.parse((LAUNCH_DIR / name).read_text(encoding="utf-8"))
    calls = [c for c in ast.walk(tree) if isinstance(c, ast.Call) and getattr(c.func, "id", "") == "DeclareLaunchArgument"]
    assert calls
    for call in calls:
        keywords = {k.arg: k.value for k in call.keywords}
        if None in keywords:  # **argument.declaration(): described by the table, checked above
            continue
        description = keywords.get("description")
        assert isinstance(description, ast.Constant) and description.value.strip(), ast.unparse(call)


def test_declaration_is_the_keyword_arguments_of_declare_launch_argument():
    assert LaunchArgument("bag", None, "the bag").declaration() == {"name": "bag", "description": "the bag"}
    assert LaunchArgument("loop", "false", "loop", BOOL).declaration() == {
        "name": "loop", "description": "loop", "default_value": "false", "choices": ["true", "false"]}


def test_the_issue_arguments_are_declared():
    perception = {a.name: a for a in LAUNCH_FILES["perception.launch.py"]}
    assert {"params_file", "namespace", "use_thermal", "use_events", "use_lidar", "backend", "use_sim_time"} <= set(perception)
    replay = {a.name: a for a in LAUNCH_FILES["replay.launch.py"]}
    assert {"bag", "rate", "params_file"} <= set(replay)
    assert replay["bag"].default is None, "a replay without a bag makes no sense: bag is required"
    assert "use_sim_time" not in replay, "a replay always runs on the bag's clock"
    assert replay["params_file"].default == "sim" and perception["params_file"].default == "multimodal"
    assert {a.name: a for a in LAUNCH_FILES["voxel_mapping.launch.py"]}["params_file"].default == "voxel_mapping"


@pytest.mark.parametrize("name", PASSED)
def test_passed_arguments_name_a_parameter_of_both_segmenting_nodes_and_offer_its_choices(name):
    for table in (SEGMENTATION, PERCEPTION):
        (parameter,) = [p for p in table if p.name == name]
        assert parameter.type == "string"
    argument = {a.name: a for a in LAUNCH_FILES["perception.launch.py"]}[name]
    assert argument.default == "", "empty keeps the params file's value"
    assert argument.description.startswith(parameter.description)
    if parameter.choices:
        assert argument.choices == ("", *parameter.choices)
    for choice in (c for c in argument.choices if c):
        assert parameter.check(choice) is None
        (node,) = plan("perception.launch.py", {name: choice}).nodes
        assert node.overrides[name] == choice


def test_flag_arguments_feed_existing_parameters():
    for table in (SEGMENTATION, PERCEPTION):
        assert {p.name: p.type for p in table}["autostart"] == "bool"
    assert {"thermal", "events"} <= set(MODALITIES)
    assert {p.name: p.type for p in PERCEPTION}["mapping"] == "bool"


def test_params_file_names_a_shipped_profile_or_a_path(tmp_path):
    assert sorted(PROFILES) == sorted(p.stem for p in ROS_CONFIG.glob("*.yaml"))
    for profile in PROFILES:
        assert params_file_path(profile) == ROS_CONFIG / f"{profile}.yaml"
        assert profile in LAUNCH_FILES["perception.launch.py"][0].description
    own = tmp_path / "robot.yaml"
    own.write_text("/**/segmentation_node: {ros__parameters: {model: student_rgb}}\n")
    assert params_file_path(str(own)) == own
    for bad in ("", "rgb_only", str(tmp_path / "missing.yaml")):
        with pytest.raises(ConfigError, match="neither a file nor a shipped profile.*multimodal"):
            params_file_path(bad)


# --- what a launch starts -----------------------------------------------------------------------

def test_perception_defaults_start_one_lifecycle_perception_node():
    (node,) = plan("perception.launch.py", {}).nodes
    assert (node.name, node.namespace, node.lifecycle) == ("perception_node", "", True)
    assert node.params_file == ROS_CONFIG / "multimodal.yaml"
    assert node.overrides == {"autostart": True, "use_sim_time": False}
    assert node.remappings == ()
    assert node.node_kwargs() == {
        "package": "seg_perception", "executable": "perception_node", "name": "perception_node", "namespace": "",
        "parameters": [str(ROS_CONFIG / "multimodal.yaml"), {"autostart": True, "use_sim_time": False}],
        "remappings": [], "ros_arguments": ["--log-level", "info"], "output": "screen", "emulate_tty": True}


def _resolve(name: str, namespace: str, node: str) -> str:
    """ROS 2 name resolution of a topic (absolute, relative or private ~/) for `node` in `namespace`."""
    base = "/" + namespace.strip("/") if namespace.strip("/") else ""
    if name.startswith("/"):
        return name
    if name.startswith("~/"):
        return f"{base}/{node}/{name[2:]}"
    return f"{base}/{name}"


@pytest.mark.parametrize("namespace", ["", "front"])
def test_two_processes_wire_the_mapping_to_the_segmentation_outputs(namespace):
    segmentation, mapping = plan("perception.launch.py", {"single_process": "false", "namespace": namespace}).nodes
    assert (segmentation.name, segmentation.lifecycle, mapping.name, mapping.lifecycle) == (
        "segmentation_node", True, "voxel_mapping_node", False)
    assert mapping.namespace == segmentation.namespace == namespace
    assert mapping.overrides == {"use_sim_time": False}
    remap = dict(mapping.remappings)
    # The mapping's inputs (its parameter defaults) land on what segmentation_node publishes as ~/labels, ~/confidence.
    for output, input_parameter in (("labels", "labels_topic"), ("confidence", "confidence_topic")):
        subscribed = {p.name: p.default for p in TABLES["voxel_mapping_node"]}[input_parameter]
        assert _resolve(remap[subscribed], namespace, "voxel_mapping_node") == \
            _resolve(f"~/{output}", namespace, "segmentation_node")


def test_the_remapping_follows_the_mapping_inputs_of_the_params_file(tmp_path):
    params = tmp_path / "robot.yaml"
    params.write_text(yaml.safe_dump({
        "/**/segmentation_node": {"ros__parameters": {"outputs": ["labels", "info"]}},
        "/**/voxel_mapping_node": {"ros__parameters": {"labels_topic": "/front/semantic"}}}))
    _, mapping = plan("perception.launch.py", {"single_process": "false", "params_file": str(params)}).nodes
    assert mapping.remappings == (("/front/semantic", "segmentation_node/labels"),)
    assert mapping.overrides["confidence_topic"] == "", "no confidence is published, so none is awaited"


def test_a_mapping_without_the_segmentation_labels_is_refused(tmp_path):
    params = tmp_path / "robot.yaml"
    params.write_text(yaml.safe_dump({"/**/segmentation_node": {"ros__parameters": {"outputs": ["color"]}}}))
    with pytest.raises(ConfigError, match="needs segmentation_node's labels.*use_lidar:=false"):
        plan("perception.launch.py", {"single_process": "false", "params_file": str(params)})
    (node,) = plan("perception.launch.py", {"single_process": "false", "params_file": str(params), "use_lidar": "false"}).nodes
    assert node.name == "segmentation_node"


@pytest.mark.parametrize("single_process", BOOL)
def test_use_lidar_switches_the_mapping(single_process, tmp_path):
    def names(**values: str) -> list[str]:
        return [n.name for n in plan("perception.launch.py", {"single_process": single_process, **values}).nodes]

    if single_process == "true":
        assert names() == ["perception_node"]
        for flag, mapping in (("true", True), ("false", False)):
            (node,) = plan("perception.launch.py", {"use_lidar": flag}).nodes
            assert node.overrides["mapping"] is mapping
        assert "mapping" not in plan("perception.launch.py", {}).nodes[0].overrides
    else:
        assert names() == names(use_lidar="true") == ["segmentation_node", "voxel_mapping_node"]
        assert names(use_lidar="false") == ["segmentation_node"]
        # Empty use_lidar follows the params file's perception_node mapping.
        params = tmp_path / "no_map.yaml"
        params.write_text("/**/perception_node: {ros__parameters: {mapping: false}}\n")
        assert names(params_file=str(params)) == ["segmentation_node"]


@pytest.mark.parametrize("profile, thermal, events, expected", [
    ("multimodal", "", "", None),
    ("multimodal", "false", "", ["rgb", "events"]),
    ("multimodal", "false", "false", ["rgb"]),
    ("multimodal", "true", "true", None),
    ("rgb", "true", "", ["rgb", "thermal"]),
    ("rgb", "", "true", ["rgb", "events"]),
    ("rgb", "false", "false", None),
    ("rgb_thermal", "", "true", ["rgb", "thermal", "events"]),
])
def test_use_thermal_and_use_events_edit_the_params_file_modalities(profile, thermal, events, expected):
    for single_process in BOOL:
        node = plan("perception.launch.py", {"params_file": profile, "use_thermal": thermal, "use_events": events,
                                             "single_process": single_process}).nodes[0]
        assert node.overrides.get("modalities") == expected


def test_segmentation_and_voxel_mapping_launch_files_start_their_node_alone():
    (node,) = plan("segmentation.launch.py", {"backend": "tensorrt", "autostart": "false"}).nodes
    assert (node.name, node.lifecycle) == ("segmentation_node", True)
    assert node.overrides == {"backend": "tensorrt", "autostart": False, "use_sim_time": False}
    (node,) = plan("voxel_mapping.launch.py", {"namespace": "robot", "use_sim_time": "true", "log_level": "debug"}).nodes
    assert (node.name, node.lifecycle, node.namespace) == ("voxel_mapping_node", False, "robot")
    assert node.params_file == ROS_CONFIG / "voxel_mapping.yaml"
    assert node.overrides == {"use_sim_time": True} and node.remappings == ()
    assert node.node_kwargs()["ros_arguments"] == ["--log-level", "debug"]


def test_replay_plays_the_bag_with_its_clock_and_runs_the_nodes_on_sim_time(tmp_path):
    bag = tmp_path / "drive"
    bag.mkdir()
    setup = plan("replay.launch.py", {"bag": str(bag)})
    assert setup.bag_play == ("ros2", "bag", "play", str(bag), "--clock=100", "--rate=1", "--delay=3")
    assert setup.shutdown_at_end is True
    (node,) = setup.nodes
    assert node.name == "perception_node" and node.overrides["use_sim_time"] is True
    assert node.params_file == ROS_CONFIG / "sim.yaml"
    setup = plan("replay.launch.py", {"bag": str(bag), "rate": "0.5", "delay": "0", "loop": "true",
                                      "shutdown_at_end": "false", "single_process": "false"})
    assert setup.bag_play == ("ros2", "bag", "play", str(bag), "--clock=100", "--rate=0.5", "--loop")
    assert setup.shutdown_at_end is False
    assert [n.name for n in setup.nodes] == ["segmentation_node", "voxel_mapping_node"]
    assert all(n.overrides["use_sim_time"] is True for n in setup.nodes)


@pytest.mark.parametrize("values, message", [
    ({}, "needs bag:="),
    ({"bag": "/no/such/bag"}, "does not exist"),
    ({"bag": "BAG", "rate": "0"}, "rate must be > 0"),
    ({"bag": "BAG", "rate": "fast"}, "rate:='fast' is not a number"),
    ({"bag": "BAG", "rate": "nan"}, "rate must be > 0"),
    ({"bag": "BAG", "delay": "-1"}, "delay >= 0"),
    ({"bag": "BAG", "loop": "yes"}, "loop:='yes' is not accepted; accepted: 'true', 'false'"),
    ({"bag": "BAG", "use_sim_time": "false"}, r"has no argument\(s\) \['use_sim_time'\]"),
])
def test_replay_refuses_bad_arguments_with_the_reason(values, message, tmp_path):
    values = {k: str(tmp_path) if v == "BAG" else v for k, v in values.items()}
    with pytest.raises(ConfigError, match=message):
        plan("replay.launch.py", values)


@pytest.mark.parametrize("launch_file, values, message", [
    ("perception.launch.py", {"backend": "cuda"}, "backend:='cuda' is not accepted; accepted: '', 'auto', 'tensorrt'"),
    ("perception.launch.py", {"use_thermal": "True"}, "use_thermal:='True' is not accepted"),
    ("perception.launch.py", {"params_file": "orin"}, "neither a file nor a shipped profile"),
    ("voxel_mapping.launch.py", {"backend": "torch"}, r"has no argument\(s\) \['backend'\]"),
    ("nav2.launch.py", {}, "unknown launch file"),
])
def test_bad_arguments_are_refused_with_the_reason(launch_file, values, message):
    with pytest.raises(ConfigError, match=message):
        plan(launch_file, values)


def test_a_params_file_that_does_not_validate_fails_the_launch(tmp_path):
    params = tmp_path / "typo.yaml"
    params.write_text("/**/perception_node: {ros__parameters: {voxel_sise: 0.1}}\n")
    with pytest.raises(ConfigError, match=r"unknown parameter\(s\) \['voxel_sise'\]"):
        plan("perception.launch.py", {"params_file": str(params)})


@pytest.mark.parametrize("profile", [p for p in PROFILES if p != "voxel_mapping"])
def test_every_profile_launches_in_every_shape(profile, tmp_path):
    combos = itertools.product(BOOL, ("", *BOOL), ("", *BOOL))
    for single_process, lidar, thermal in combos:
        setup = plan("replay.launch.py", {"bag": str(tmp_path), "params_file": profile, "single_process": single_process,
                                          "use_lidar": lidar, "use_thermal": thermal})
        for node in setup.nodes:
            values = {k: v for k, v in node.overrides.items() if k != "use_sim_time"}
            check(TABLES[node.name], values, node.name)  # plan() checked too; the test does not rely on it
            assert node.lifecycle == (node.name in LIFECYCLE_NODES)
    for launch_file in ("segmentation.launch.py", "voxel_mapping.launch.py"):
        assert len(plan(launch_file, {"params_file": profile}).nodes) == 1


# --- the launch files' own code, on launch and launch_ros look-alikes ----------------------------

class _Action:
    def __init__(self, **kwargs):
        self.kwargs = kwargs


def _look_alike_modules() -> dict[str, types.ModuleType]:
    """Stand-ins for launch and launch_ros with the real constructors' signatures (keyword-only where
    the real ones are), recording what the launch files pass."""
    class LaunchDescription:
        def __init__(self, initial_entities=None):
            self.entities = list(initial_entities or [])

    class DeclareLaunchArgument(_Action):
        def __init__(self, name, *, default_value=None, description=None, choices=None):
            super().__init__(name=name, default_value=default_value, description=description, choices=choices)

    class OpaqueFunction(_Action):
        def __init__(self, *, function, args=None, kwargs=None):
            super().__init__(function=function)

    class LaunchConfiguration:
        def __init__(self, variable_name, *, default=None):
            self.name = variable_name

        def perform(self, context):
            return context.launch_configurations[self.name]

    class Node(_Action):
        def __init__(self, *, executable, package=None, name=None, namespace=None, exec_name=None, parameters=None,
                     remappings=None, ros_arguments=None, arguments=None, **kwargs):
            super().__init__(executable=executable, package=package, name=name, namespace=namespace,
                             parameters=parameters, remappings=remappings, ros_arguments=ros_arguments, **kwargs)

    class LifecycleNode(Node):
        def __init__(self, *, name, namespace, **kwargs):
            super().__init__(name=name, namespace=namespace, **kwargs)

    class ExecuteProcess(_Action):
        def __init__(self, *, cmd, name=None, output="log", **kwargs):
            super().__init__(cmd=cmd, name=name, output=output)

    class RegisterEventHandler(_Action):
        def __init__(self, event_handler):
            super().__init__(event_handler=event_handler)

    class OnProcessExit(_Action):
        def __init__(self, *, target_action=None, on_exit):
            super().__init__(target_action=target_action, on_exit=on_exit)

    class EmitEvent(_Action):
        def __init__(self, *, event):
            super().__init__(event=event)

    class Shutdown(_Action):
        def __init__(self, *, reason="reason not given"):
            super().__init__(reason=reason)

    contents = {
        "launch": {"LaunchDescription": LaunchDescription},
        "launch.actions": {c.__name__: c for c in (DeclareLaunchArgument, OpaqueFunction, ExecuteProcess,
                                                   RegisterEventHandler, EmitEvent)},
        "launch.substitutions": {"LaunchConfiguration": LaunchConfiguration},
        "launch.event_handlers": {"OnProcessExit": OnProcessExit},
        "launch.events": {"Shutdown": Shutdown},
        "launch_ros": {},
        "launch_ros.actions": {"Node": Node, "LifecycleNode": LifecycleNode},
    }
    modules = {}
    for name, attributes in contents.items():
        modules[name] = types.ModuleType(name)
        vars(modules[name]).update(attributes)
    return modules


def _launch_with_look_alikes(monkeypatch, name: str, values: dict[str, str]) -> tuple[list, list]:
    """(declared arguments, actions the launch starts), the way `ros2 launch` runs a description:
    argument values from the command line, the declared defaults for the rest, then the actions."""
    for module_name, module in _look_alike_modules().items():
        monkeypatch.setitem(sys.modules, module_name, module)
    description = load_launch_file(name).generate_launch_description()
    declared = [e for e in description.entities if type(e).__name__ == "DeclareLaunchArgument"]
    (opaque,) = [e for e in description.entities if type(e).__name__ == "OpaqueFunction"]
    context = types.SimpleNamespace(launch_configurations=dict(values))
    for declaration in declared:
        if declaration.kwargs["default_value"] is not None:
            context.launch_configurations.setdefault(declaration.kwargs["name"], declaration.kwargs["default_value"])
    return declared, opaque.kwargs["function"](context)


@pytest.mark.parametrize("name", NAMES)
def test_launch_file_declares_its_table_and_starts_the_plan(monkeypatch, name, tmp_path):
    values = {"bag": str(tmp_path)} if name == "replay.launch.py" else {}
    if any(a.name == "single_process" for a in LAUNCH_FILES[name]):
        values["single_process"] = "false"  # two nodes, one of each action class
    declared, actions = _launch_with_look_alikes(monkeypatch, name, values)
    assert [d.kwargs for d in declared] == [
        {"default_value": None, "choices": None, **a.declaration()} for a in LAUNCH_FILES[name]]
    setup = plan(name, values)
    nodes = [a for a in actions if "executable" in a.kwargs]
    assert [type(n).__name__ for n in nodes] == ["LifecycleNode" if n.lifecycle else "Node" for n in setup.nodes]
    assert [n.kwargs for n in nodes] == [n.node_kwargs() for n in setup.nodes]
    if name == "replay.launch.py":
        (player,) = [a for a in actions if type(a).__name__ == "ExecuteProcess"]
        assert player.kwargs["cmd"] == list(setup.bag_play)
        (handler,) = [a for a in actions if type(a).__name__ == "RegisterEventHandler"]
        on_exit = handler.kwargs["event_handler"].kwargs
        assert on_exit["target_action"] is player
        (emit,) = on_exit["on_exit"]
        assert type(emit.kwargs["event"]).__name__ == "Shutdown"
    else:
        assert len(actions) == len(nodes)


def test_replay_without_shutdown_at_end_registers_no_handler(monkeypatch, tmp_path):
    _, actions = _launch_with_look_alikes(monkeypatch, "replay.launch.py",
                                          {"bag": str(tmp_path), "shutdown_at_end": "false"})
    assert [type(a).__name__ for a in actions] == ["LifecycleNode", "ExecuteProcess"]


def test_launch_file_fails_with_the_plan_reason(monkeypatch):
    with pytest.raises(ConfigError, match="backend:='cuda'"):
        _launch_with_look_alikes(monkeypatch, "perception.launch.py", {"backend": "cuda"})


# --- with ROS launch installed: the real description -------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_launch_description_builds_with_ros_launch(name, tmp_path):
    for module in ("launch.actions", "launch_ros.actions"):  # a bare `import launch` finds the launch/ folder
        pytest.importorskip(module, reason="ROS 2 launch and launch_ros are not installed (no Kilted wheels); "
                                           "the launch files ran on look-alikes above")
    from launch import LaunchContext
    from launch.actions import DeclareLaunchArgument, ExecuteProcess, OpaqueFunction
    from launch_ros.actions import LifecycleNode, Node

    description = load_launch_file(name).generate_launch_description()
    declared = [e for e in description.entities if isinstance(e, DeclareLaunchArgument)]
    assert [d.name for d in declared] == [a.name for a in LAUNCH_FILES[name]]
    assert all(d.description for d in declared)
    context = LaunchContext()
    if name == "replay.launch.py":
        context.launch_configurations["bag"] = str(tmp_path)
    for entity in description.entities:
        if isinstance(entity, DeclareLaunchArgument):
            entity.visit(context)
    (opaque,) = [e for e in description.entities if isinstance(e, OpaqueFunction)]
    actions = opaque.visit(context)
    setup = plan(name, {k: context.launch_configurations[k] for k in (a.name for a in LAUNCH_FILES[name])})
    nodes = [a for a in actions if isinstance(a, Node)]
    assert [isinstance(n, LifecycleNode) for n in nodes] == [n.lifecycle for n in setup.nodes]
    assert any(isinstance(a, ExecuteProcess) and not isinstance(a, Node) for a in actions) == (name == "replay.launch.py")
