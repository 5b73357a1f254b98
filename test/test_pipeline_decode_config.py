"""Pipeline message decoding by role (both message worlds) and the pipeline configuration file."""
from __future__ import annotations

import numpy as np
import pytest

from seg_perception.io import ConversionError, array_to_compressed, array_to_image, xyz_to_cloud
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
    with pytest.raises(ConfigError, match=r"threads must be a whole number >= 0 \(0: automatic\)"):
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
