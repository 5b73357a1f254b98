"""The nodes' parameter tables: value checks, parameter files and the core configuration they describe."""
from __future__ import annotations

import math

import pytest

from seg_perception.pipeline import ConfigError
from seg_perception.pipeline.parameters import (MAPPING, PERCEPTION, SEGMENTATION, TABLES, Parameter, check, defaults,
                                                load_params_file, pipeline_config)


@pytest.mark.parametrize("parameter, value, reason", [
    (Parameter("k", "integer", 0, "", low=-1, high=10), 11, "k = 11 is outside [-1, 10]"),
    (Parameter("k", "integer", 0, "", low=-1, high=10), True, "k must be a integer, not bool"),
    (Parameter("k", "integer", 0, "", low=-1, high=10), 2.0, "k must be a integer, not float"),
    (Parameter("rate", "double", 1.0, "", low=0.5), math.nan, "rate must be finite"),
    (Parameter("rate", "double", 1.0, "", low=0.5), 0.25, "rate = 0.25 is outside [0.5, …]"),
    (Parameter("out", "string_array", [], "", choices=("a", "b")), ["a", "c"], "out: 'c' is not accepted; accepted: a, b"),
    (Parameter("out", "string_array", [], ""), ["a", 3], "out must hold strings only"),
    (Parameter("backend", "string", "auto", "", choices=("auto", "torch")), "trt", "accepted: auto, torch"),
])
def test_a_refused_value_says_why(parameter, value, reason):
    assert reason in parameter.check(value)


def test_accepted_values_and_every_default():
    assert Parameter("rate", "double", 1.0, "", low=0.5).check(2) is None  # an integer is a fine double
    for name, table in TABLES.items():
        names = [p.name for p in table]
        assert len(names) == len(set(names)), name
        for parameter in table:
            assert parameter.description and parameter.check(parameter.default) is None, (name, parameter.name)
    assert {p.name for p in SEGMENTATION} <= {p.name for p in PERCEPTION}
    assert "labels_topic" in {p.name for p in MAPPING} - {p.name for p in PERCEPTION}  # in-process: no labels topic


def test_check_applies_values_over_defaults_and_names_unknown_ones():
    values = check(SEGMENTATION, {"k": 100}, "here")
    assert values == {**defaults(SEGMENTATION), "k": 100}
    with pytest.raises(ConfigError, match=r"here: unknown parameter\(s\) \['kk'\]; accepted: .*k, "):
        check(SEGMENTATION, {"kk": 1}, "here")


def test_parameter_files_with_namespaces_wildcards_and_sim_time(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("""
/**:
  ros__parameters:
    use_sim_time: true
    qos_depth: 3
/robot/front/segmentation_node:
  ros__parameters:
    use_sim_time: true
    k: 50
voxel_mapping_node:
  ros__parameters:
    voxel_size: 0.5
""")
    nodes = load_params_file(path)
    assert set(nodes) == {"segmentation_node", "voxel_mapping_node"}
    assert nodes["segmentation_node"]["k"] == 50 and nodes["voxel_mapping_node"]["voxel_size"] == 0.5
    for text, message in (("/**:\n  ros__parameters:\n    bogus: 1\n", r"no node here has parameter\(s\) \['bogus'\]"),
                          ("/**:\n  ros__parameters:\n    use_sim_time: 1\n", "use_sim_time must be a bool"),
                          ("/**:\n  ros__parameters:\n    qos_depth: 0\n", r"qos_depth = 0 is outside \[1, 100\]"),
                          ("camera_node:\n  ros__parameters: {}\n", "not one of this package's nodes"),
                          ("segmentation_node:\n  k: 3\n", "exactly one key, ros__parameters"),
                          ("[1, 2]\n", "must map node names")):
        path.write_text(text)
        with pytest.raises(ConfigError, match=message):
            load_params_file(path)


def test_node_parameters_describe_the_core_configuration():
    values = {**defaults(PERCEPTION), "modalities": ["rgb"], "rgb_topic": "front/image", "radius": 0.0,
              "voxel_size": 0.5, "thermal_slop_ms": 12.0}
    config = pipeline_config(values)
    assert config.topics["rgb"] == "front/image" and config.topics["thermal"] is None and config.topics["events"] is None
    assert config.topics["lidar"] == values["cloud_topic"] and config.topics["labels"] is None
    assert config.mapping.enabled and config.mapping.voxel_size == 0.5 and config.mapping.radius is None
    assert config.slop_ms["thermal"] == 12.0
    assert not pipeline_config({**values, "mapping": False}).mapping.enabled
    assert pipeline_config({**values, "mapping": False}).topics["lidar"] is None
    assert pipeline_config(defaults(SEGMENTATION)).topics["lidar"] is None


def test_readme_parameter_tables_are_the_tables():
    from pathlib import Path

    from seg_perception.pipeline.parameters import markdown_table

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    extra = tuple(p for p in PERCEPTION if p.name not in {q.name for q in SEGMENTATION})
    for table in (SEGMENTATION, MAPPING, extra):
        assert markdown_table(table) in readme
