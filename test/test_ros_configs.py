"""The shipped configuration files: ROS parameter files (config/ros) validate against the node
parameter tables and turn into the core configuration; pipeline configs and label sets load into the
core; the profiles agree with themselves, with the shipped models and with the replay configuration."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from conftest import require_ros
from seg_perception.labels import load_label_set
from seg_perception.pipeline import PipelineConfig
from seg_perception.pipeline.parameters import MAPPING, PERCEPTION, SEGMENTATION, TABLES, load_params_file, pipeline_config

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "config"
ROS_FILES = sorted((CONFIG / "ros").glob("*.yaml"))
PROFILES = [p for p in ROS_FILES if p.stem != "voxel_mapping"]  # the perception profiles: all three nodes
SEGMENTING = ("segmentation_node", "perception_node")


def ids(paths: list[Path]) -> list[str]:
    return [p.name for p in paths]


def test_the_expected_files_ship():
    assert {p.stem for p in ROS_FILES} == {"rgb", "rgb_thermal", "multimodal", "jetson_orin", "sim", "voxel_mapping"}
    assert {p.stem for p in (CONFIG / "labels").glob("*.yaml")} >= {"sim_offroad", "cityscapes19", "rellis3d", "goose"}


@pytest.mark.parametrize("path", ROS_FILES, ids=ids(ROS_FILES))
def test_ros_params_file_validates_and_matches_nodes_in_any_namespace(path):
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    nodes = load_params_file(path)
    assert set(nodes) <= set(TABLES) and nodes
    # "/**/<node>" reaches the node whatever namespace the launch gives it.
    assert sorted(raw) == sorted(f"/**/{name}" for name in nodes)
    for name, values in nodes.items():
        given = raw[f"/**/{name}"]["ros__parameters"]
        assert {k: values[k] for k in given} == given


@pytest.mark.parametrize("path", PROFILES, ids=ids(PROFILES))
def test_profile_configures_every_node_and_converts_to_the_core_config(path):
    nodes = load_params_file(path)
    assert set(nodes) == set(TABLES)
    for name in SEGMENTING:
        values = nodes[name]
        config = pipeline_config(values)
        assert (config.model, config.backend, config.device, config.precision) == (
            values["model"], values["backend"], values["device"], values["precision"])
        for modality in ("thermal", "events"):
            expected = values[f"{modality}_topic"] if modality in values["modalities"] else None
            assert config.topics[modality] == expected
        assert config.topics["rgb"] == values["rgb_topic"]
        assert config.mapping.enabled is (name == "perception_node" and values["mapping"])
        if config.mapping.enabled:
            assert config.topics["lidar"] == values["cloud_topic"]
            assert config.mapping.voxel_size == values["voxel_size"]


@pytest.mark.parametrize("path", PROFILES, ids=ids(PROFILES))
def test_one_process_and_two_processes_are_configured_alike(path):
    nodes = load_params_file(path)
    perception, segmentation, mapping = nodes["perception_node"], nodes["segmentation_node"], nodes["voxel_mapping_node"]
    for parameter in SEGMENTATION:
        assert perception[parameter.name] == segmentation[parameter.name], parameter.name
    # The mapping settings perception_node shares; QoS and diagnostics are per input, the label set is the model's.
    shared = {p.name for p in MAPPING} & {p.name for p in PERCEPTION} - {"qos_reliability", "qos_depth",
                                                                         "diagnostics_period_s", "label_set"}
    assert "camera_info_topic" in shared and "voxel_size" in shared
    for name in shared:
        assert perception[name] == mapping[name], name


@pytest.mark.parametrize("path", PROFILES, ids=ids(PROFILES))
def test_profile_fits_its_model(path):
    from seg_perception.engines.source import ModelSource

    nodes = load_params_file(path)
    for name in SEGMENTING:
        source = ModelSource.open(nodes[name]["model"])
        assert set(nodes[name]["modalities"]) <= set(source.config.modalities)
        assert nodes[name]["label_set"] in ("", source.label_set.name)
        assert nodes["voxel_mapping_node"]["label_set"] == source.label_set.name


def test_profiles_say_what_their_names_promise():
    load = {p.stem: load_params_file(p) for p in PROFILES}
    expected_modalities = {"rgb": ["rgb"], "rgb_thermal": ["rgb", "thermal"], "multimodal": ["rgb", "thermal", "events"],
                           "jetson_orin": ["rgb", "thermal", "events"], "sim": ["rgb", "thermal", "events"]}
    for profile, modalities in expected_modalities.items():
        for name in SEGMENTING:
            assert load[profile][name]["modalities"] == modalities, (profile, name)
    for name in SEGMENTING:
        jetson = load["jetson_orin"][name]
        assert (jetson["backend"], jetson["device"], jetson["precision"]) == ("tensorrt", "cuda", "fp16")
        assert load["rgb"][name]["model"] == "student_rgb"


def test_sim_profile_subscribes_what_replay_reads_from_simulated_bags():
    """config/ros/sim.yaml (live nodes on a played bag) and config/pipeline/sim.yaml (`seg-perception
    replay`) must see the same topics and map the same way, so both give the same labels."""
    replay = PipelineConfig.load(CONFIG / "pipeline" / "sim.yaml")
    nodes = load_params_file(CONFIG / "ros" / "sim.yaml")
    live = pipeline_config(nodes["perception_node"])
    for role in ("rgb", "camera_info", "thermal", "events", "lidar"):
        assert live.topics[role] == replay.topics[role], role
    assert live.model == replay.model
    assert live.mapping == replay.mapping
    assert live.slop_ms["thermal"] == replay.slop_ms["thermal"]
    assert live.events_window_ms == replay.events_window_ms
    mapping = nodes["voxel_mapping_node"]
    assert (mapping["cloud_topic"], mapping["camera_info_topic"], mapping["map_frame"]) == (
        replay.topics["lidar"], replay.topics["camera_info"], replay.mapping.map_frame)
    assert mapping["labels_slop_ms"] == replay.slop_ms["lidar"]
    # The topics of seg_perception.sim.bag's table, written down independently of both configs.
    assert (live.topics["rgb"], live.topics["camera_info"], live.topics["thermal"], live.topics["events"],
            live.topics["lidar"]) == ("/camera/image_raw", "/camera/camera_info", "/thermal/image_raw", "/events",
                                      "/lidar/points")


def test_the_voxel_mapping_reference_lists_every_parameter_at_its_default():
    raw = yaml.safe_load((CONFIG / "ros" / "voxel_mapping.yaml").read_text(encoding="utf-8"))
    given = raw["/**/voxel_mapping_node"]["ros__parameters"]
    assert given == {p.name: p.default for p in TABLES["voxel_mapping_node"]}


@pytest.mark.parametrize("path", sorted((CONFIG / "pipeline").glob("*.yaml")), ids=lambda p: p.name)
def test_pipeline_config_loads(path):
    config = PipelineConfig.load(path)
    assert config.topics["rgb"]


@pytest.mark.parametrize("path", sorted((CONFIG / "labels").glob("*.yaml")), ids=lambda p: p.name)
def test_label_set_loads_by_path_and_by_name(path):
    by_path, by_name = load_label_set(path), load_label_set(path.stem)
    assert by_path.name == by_name.name == path.stem
    assert by_path.names == by_name.names and by_path.num_classes > 1


def test_label_sets_hold_their_published_class_counts():
    assert len(load_label_set("cityscapes19").names) == 19  # the 19 evaluated Cityscapes classes
    assert load_label_set("cityscapes19").names[:2] == ["road", "sidewalk"]  # trainIds 0 and 1
    assert len(load_label_set("goose").names) == 9  # GOOSE's 9 categories
    assert load_label_set("rellis3d").names[0] == "dirt"  # RELLIS-3D id 1; 0 is void


@pytest.mark.parametrize("path", sorted((CONFIG / "label_maps").glob("*.yaml")), ids=lambda p: p.name)
def test_label_map_loads(path):
    from seg_perception.label_maps import load_label_map

    assert load_label_map(path).label_set.name == yaml.safe_load(path.read_text(encoding="utf-8"))["target"]


def test_rcl_gives_a_namespaced_node_its_section_of_a_profile():
    """The real ROS parameter parser applies the "/**/<node>" sections to a node in a namespace, and
    only the section of that node's name."""
    require_ros("rclpy")
    import rclpy
    from rclpy.node import Node

    path = CONFIG / "ros" / "rgb.yaml"
    expected = load_params_file(path)
    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        for name in ("segmentation_node", "voxel_mapping_node"):
            node = Node(name, namespace="front", context=context, cli_args=["--ros-args", "--params-file", str(path)],
                        automatically_declare_parameters_from_overrides=True)
            try:
                given = yaml.safe_load(path.read_text(encoding="utf-8"))[f"/**/{name}"]["ros__parameters"]
                got = {k: node.get_parameter(k).value for k in given}
                assert {k: list(v) if isinstance(v, (list, tuple)) else v for k, v in got.items()} == \
                    {k: expected[name][k] for k in given}
                assert not node.has_parameter("mapping"), "perception_node's section leaked into another node"
            finally:
                node.destroy_node()
    finally:
        rclpy.shutdown(context=context)
