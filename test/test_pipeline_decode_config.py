"""Pipeline message decoding by role (both message worlds) and the pipeline configuration file."""
from __future__ import annotations

import numpy as np
import pytest

from seg_perception.io import (
    ConversionError,
    RosbagsFactory,
    array_to_compressed,
    array_to_image,
    make_header,
    xyz_to_cloud,
)
from seg_perception.pipeline.config import ConfigError, PipelineConfig
from seg_perception.pipeline.decode import LidarSweep, MessageDecoder


def test_images_decode_by_role(factory):
    decoder = MessageDecoder()
    rgb = np.random.default_rng(0).integers(0, 256, (4, 6, 3), dtype=np.uint8)
    bgr_msg = array_to_image(np.ascontiguousarray(rgb[..., ::-1]), "bgr8", factory=factory)
    np.testing.assert_array_equal(decoder.decode("rgb", bgr_msg), rgb)
    png = array_to_compressed(rgb, "png", factory=factory)
    np.testing.assert_array_equal(decoder.decode("rgb", png), rgb)
    counts = np.full((4, 6), 29315, np.uint16)
    np.testing.assert_array_equal(decoder.decode("thermal", array_to_image(counts, "mono16", factory=factory)), counts)
    with pytest.raises(ConversionError, match="mono16 radiometric counts"):
        decoder.decode("thermal", array_to_image(rgb, "rgb8", factory=factory))
    with pytest.raises(ConversionError, match="single-channel class ids"):
        decoder.decode("labels", bgr_msg)
    with pytest.raises(ConversionError, match="single-channel class ids"):
        decoder.decode("labels", array_to_image(np.zeros((4, 6), np.float32), "32FC1", factory=factory))


def test_lidar_sweep_keeps_per_point_time(factory):
    points = np.arange(12, dtype=np.float32).reshape(4, 3)
    offsets = np.array([0, 10, 20, 30], np.uint32)
    msg = xyz_to_cloud(points, stamp_ns=5_000, frame_id="lidar", factory=factory, t=offsets)
    sweep = MessageDecoder().decode("lidar", msg)
    assert isinstance(sweep, LidarSweep) and sweep.frame_id == "lidar" and sweep.stamp_ns == 5_000
    np.testing.assert_array_equal(sweep.points, points)
    assert sweep.time_offset_ns.tolist() == [0, 10, 20, 30]
    without_time = MessageDecoder().decode("lidar", xyz_to_cloud(points, factory=factory))
    assert without_time.time_offset_ns.tolist() == [0, 0, 0, 0]


def test_lidar_labels_are_the_per_point_label_field(factory):
    points = np.zeros((2, 3, 3), np.float32)  # an organised cloud: labels come out flat, point for point
    labels = np.array([[0, 3, 7], [2, 2, 9]], np.uint8)
    msg = xyz_to_cloud(points, factory=factory, label=labels)
    np.testing.assert_array_equal(MessageDecoder().decode("lidar_labels", msg), labels.reshape(-1))
    with pytest.raises(ConversionError, match="lack an integer 'label' field"):
        MessageDecoder().decode("lidar_labels", xyz_to_cloud(points, factory=factory))
    with pytest.raises(ConversionError, match="lack an integer 'label' field"):
        MessageDecoder().decode("lidar_labels", xyz_to_cloud(points, factory=factory, label=labels.astype(np.float32)))


def test_libcaer_event_packets_decode_in_the_events_role():
    """A DAVIS on libcaer_driver: its compressed packets reach the pipeline as events (t = time_base + offset)."""
    factory = RosbagsFactory()
    words = np.array([0x2000 | 5, 0x1000 | 2, 0x3000 | 0x800 | 7], "<u2")  # ADDR_X 5, TIME_LOW 2 µs, ADDR_Y 7 ON
    msg = factory.make("event_camera_msgs/msg/EventPacket", header=make_header(factory, 0, "davis"), width=346,
                       height=260, encoding="libcaer_cmp", time_base=10**18, events=words.view(np.uint8))
    events = MessageDecoder().decode("events", msg, "/davis/events")
    assert [tuple(int(v) for v in e) for e in events] == [(5, 7, 1, 10**18 + 2_000)]


def test_unknown_role_is_named():
    with pytest.raises(ConversionError, match="role 'radar' is not known"):
        MessageDecoder().decode("radar", object())


def test_config_defaults_overrides_and_errors(tmp_path):
    assert PipelineConfig.load() == PipelineConfig()  # the shipped file states the defaults
    path = tmp_path / "c.yaml"
    path.write_text("model: student_rgb\ntopics:\n  thermal: null\n  rgb: /cam/compressed\nmapping:\n  voxel_size: 0.1\n")
    config = PipelineConfig.load(path)
    assert config.model == "student_rgb" and config.topics["thermal"] is None
    assert config.topics["rgb"] == "/cam/compressed" and config.topics["lidar"] == "/lidar/points"
    assert config.mapping.voxel_size == 0.1 and config.mapping.radius == 60.0
    assert config.with_overrides(backend="torch", model=None).backend == "torch"
    path.write_text("modle: x\n")
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['modle'\]; accepted: .*model"):
        PipelineConfig.load(path)
    path.write_text("topics:\n  radar: /r\n")
    with pytest.raises(ConfigError, match=r"topics: unknown key\(s\) \['radar'\]"):
        PipelineConfig.load(path)
    path.write_text("topics:\n  thermal: /camera/labels\n")
    with pytest.raises(ConfigError, match=r"topic\(s\) \['/camera/labels'\] are given more than one role"):
        PipelineConfig.load(path)
    with pytest.raises(ConfigError, match="cannot read"):
        PipelineConfig.load(tmp_path / "missing.yaml")


@pytest.mark.parametrize("threads", [-1, 1.5, True, "2"])
def test_threads_must_be_a_whole_number(tmp_path, threads):
    path = tmp_path / "c.yaml"
    path.write_text(f"threads: {threads!r}\n" if isinstance(threads, str) else f"threads: {threads}\n")
    # A wrong type is named by the file's type check, a negative count by the config itself.
    with pytest.raises(ConfigError, match=r"threads (must be a whole number >= 0 \(0: automatic\)|is .*; accepted: a whole "
                                          r"number)"):
        PipelineConfig.load(path)


@pytest.mark.parametrize(("configured", "cores", "processes", "threads", "workers"), [
    (0, 2, 1, 1, 2), (0, 16, 1, 1, 16), (0, 16, 4, 1, 4), (0, 2, 4, 1, 1), (0, 1, 1, 1, 1), (3, 16, 1, 3, 5),
    (3, 2, 2, 3, 1), (4, 16, 2, 4, 2)])
def test_replay_segments_a_frame_per_core_share(monkeypatch, configured, cores, processes, threads, workers):
    import os

    from seg_perception.pipeline.replay import inference_threads, segment_workers

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)))
    config = PipelineConfig(threads=configured)
    assert inference_threads(config) == threads
    assert segment_workers(config, processes) == workers


@pytest.mark.parametrize(("data", "match"), [
    ({"mapping": {"enabled": "no"}}, r"mapping: enabled is 'no' \(str\); accepted: a boolean \(true/false\)"),
    ({"mapping": {"enabled": 1}}, r"mapping: enabled is 1 \(int\); accepted: a boolean"),
    ({"mapping": {"voxel_size": "0.2"}}, r"mapping: voxel_size is '0.2' \(str\); accepted: a finite number"),
    ({"mapping": {"voxel_size": float("nan")}}, r"voxel_size is nan \(float\); accepted: a finite number"),
    ({"mapping": {"radius": True}}, r"radius is True \(bool\); accepted: a finite number or null"),
    ({"mapping": {"max_voxels": 2.5}}, r"max_voxels is 2.5 \(float\); accepted: a whole number"),
    ({"mapping": {"colour": 1}}, r"mapping: unknown key\(s\) \['colour'\]; accepted: .*enabled, map_frame"),
    ({"mapping": ["enabled"]}, r"mapping must be a mapping, not list"),
    ({"model": 3}, r"model is 3 \(int\); accepted: a string"),
    ({"wait_ms": "300"}, r"wait_ms is '300' \(str\); accepted: a finite number"),
    ({"wait_ms": 10**400}, r"wait_ms is 1000.* \(int\); accepted: a finite number"),  # no float holds it
    ({"labels_dir": ["a"]}, r"labels_dir is \['a'\] \(list\); accepted: a string or null"),
    ({"topics": {"rgb": 5}}, r"topics is \{'rgb': 5\} \(dict\); accepted: a mapping of names to a string or null"),
    ({"slop_ms": {"lidar": "60"}}, r"slop_ms is .*accepted: a mapping of names to a finite number"),
    ({"slop_ms": {"radar": 60}}, r"slop_ms: unknown key\(s\) \['radar'\]; accepted: camera_info"),
    ({"static_transforms": {"parent": "a"}}, r"static_transforms is .*; accepted: a list of"),
])
def test_config_values_must_have_their_yaml_types(tmp_path, data, match):
    with pytest.raises(ConfigError, match=match):
        PipelineConfig.from_dict(data)
    path = tmp_path / "c.yaml"
    path.write_text(__import__("yaml").safe_dump(data))
    with pytest.raises(ConfigError, match=match):
        PipelineConfig.load(path)


def test_config_accepts_yaml_typed_values():
    config = PipelineConfig.from_dict({"mapping": {"enabled": False, "voxel_size": 1, "radius": None},
                                       "wait_ms": 100, "topics": {"labels": None}})
    assert config.mapping.enabled is False and config.mapping.voxel_size == 1 and config.topics["labels"] is None


@pytest.mark.parametrize(("transform", "match"), [
    ({"parent": 5, "child": "b"}, r"parent 5 and child 'b' must be strings"),
    ({"parent": "a", "child": "b", "translation": ["1", 0, 0]}, r"translation must be 3 finite numbers"),
    ({"parent": "a", "child": "b", "translation": [float("inf"), 0, 0]}, r"translation must be 3 finite numbers"),
    ({"parent": "a", "child": "b", "rotation": [0, 0, 0, True]}, r"rotation 4 \(quaternion x, y, z, w\)"),
    ({"child": "b"}, r"lacks 'parent'; give parent, child"),
])
def test_static_transforms_are_strictly_typed(transform, match):
    with pytest.raises(ConfigError, match=match):
        PipelineConfig.from_dict({"static_transforms": [transform]})


def test_config_file_that_is_not_text_is_a_config_error(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError, match="cannot read pipeline configuration"):
        PipelineConfig.load(path)


def _cloud(layout, count=2, point_step=16, data=None):
    factory = RosbagsFactory()
    fields = [factory.make("sensor_msgs/msg/PointField", name=n, offset=o, datatype=d, count=c) for n, o, d, c in layout]
    return factory.make("sensor_msgs/msg/PointCloud2", height=1, width=count, fields=fields, point_step=point_step,
                        row_step=count * point_step, data=np.zeros(count * point_step, np.uint8) if data is None else data)


@pytest.mark.parametrize(("role", "msg", "match"), [
    ("lidar", lambda: array_to_image(np.zeros((2, 2), np.uint8)), r"Image on the lidar topic lacks fields, point_step"),
    ("rgb", lambda: _cloud([("x", 0, 7, 1)]), r"PointCloud2 on the rgb topic lacks encoding, step; sensor_msgs/Image expected"),
    ("events", lambda: array_to_image(np.zeros((2, 2), np.uint8)), r"Image on the events topic lacks events"),
    ("lidar", lambda: _cloud([("x", 0, 7, 2), ("y", 8, 7, 1), ("z", 12, 7, 1)]),
     r"a lidar sweep needs one value per point in field\(s\) \['x'\]"),
    ("lidar", lambda: _cloud([("x", 0, 7, 1), ("y", 4, 7, 1), ("z", 8, 7, 1), ("t", 12, 7, 1)],
                             data=np.frombuffer(np.full(8, np.nan, np.float32).tobytes(), np.uint8)),
     r"lidar 't' field holds non-finite or huge values"),
    ("lidar_labels", lambda: _cloud([("label", 0, 4, 3)]), r"lidar_labels needs one value per point"),
    ("rgb", lambda: array_to_compressed(np.zeros((4, 4), np.uint8), "png"),
     r"rgb compressed image decodes to uint8 \(4, 4\); an 8-bit colour"),
])
def test_messages_unfit_for_their_role_are_conversion_errors(role, msg, match):
    with pytest.raises(ConversionError, match=match):
        MessageDecoder().decode(role, msg())


def test_decoder_refuses_images_beyond_its_pixel_limit():
    image = array_to_image(np.zeros((40, 50, 3), np.uint8))
    assert MessageDecoder(max_pixels=2000).decode("rgb", image).shape == (40, 50, 3)
    with pytest.raises(ConversionError, match=r"exceeds the limit of 1999 pixels"):
        MessageDecoder(max_pixels=1999).decode("rgb", image)
