"""`seg-perception replay` on a bag stripped of its label topic, camera_info and /tf_static: the
ground truth from a folder, the calibration from a file and the transforms from the config give the
same scores as the complete bag; and --realtime counts what a live node would drop."""
from __future__ import annotations

import json
import time
from dataclasses import replace

import cv2
import numpy as np
import pytest
import yaml

from seg_perception.cli import main
from seg_perception.io import BagReader, BagWriter, stamp_to_ns
from seg_perception.pipeline import ConfigError, PipelineConfig
from seg_perception.pipeline.replay import ReplayOptions, replay_bag
from seg_perception.resources import resource_dir
from seg_perception.sim import World
from seg_perception.sim.bag import write_bag

FRAMES = 3
RGB = "/camera/image_raw/compressed"
STRIPPED = {"/camera/labels", "/camera/camera_info", "/tf_static"}


@pytest.fixture(scope="module")
def bags(tmp_path_factory):
    """The full bag; the bag without STRIPPED; and the stripped data as a label folder, a calibration
    file and static transforms in a pipeline config (written from the messages, field by field)."""
    root = tmp_path_factory.mktemp("replay-cli")
    full, stripped, labels = root / "full", root / "stripped", root / "labels"
    write_bag(full, World(110_000, "day"), FRAMES, compress_rgb=True)
    labels.mkdir()
    transforms = []
    with BagReader(full) as reader, BagWriter(stripped) as writer:
        for message in reader.messages():
            if message.topic not in STRIPPED:
                writer.write(message.topic, message.msg, message.log_time_ns)
            elif message.topic == "/camera/labels":
                image = np.frombuffer(message.msg.data, np.uint8).reshape(message.msg.height, message.msg.width)
                cv2.imwrite(str(labels / f"frame-{stamp_to_ns(message.msg.header.stamp)}.png"), image)
            elif message.topic == "/camera/camera_info":
                info = message.msg
                calibration = {"image_width": int(info.width), "image_height": int(info.height),
                               "camera_name": "front", "distortion_model": info.distortion_model,
                               "camera_matrix": {"rows": 3, "cols": 3, "data": info.k.tolist()},
                               "distortion_coefficients": {"rows": 1, "cols": len(info.d), "data": info.d.tolist()},
                               "rectification_matrix": {"rows": 3, "cols": 3, "data": info.r.tolist()},
                               "projection_matrix": {"rows": 3, "cols": 4, "data": info.p.tolist()}}
                camera_frame = info.header.frame_id
            else:
                for t in message.msg.transforms:
                    tr, q = t.transform.translation, t.transform.rotation
                    transforms.append({"parent": t.header.frame_id, "child": t.child_frame_id,
                                       "translation": [tr.x, tr.y, tr.z], "rotation": [q.x, q.y, q.z, q.w]})
    (root / "front.yaml").write_text(yaml.safe_dump(calibration))
    config = yaml.safe_load((resource_dir("config/pipeline", "*.yaml") / "sim.yaml").read_text())
    config.update(model="student_rgb", static_transforms=transforms, camera_frame=camera_frame)
    (root / "stripped.yaml").write_text(yaml.safe_dump(config))
    return full, stripped, root


def _scores(out):
    data = json.loads((out / "report.json").read_text())
    return data["confusion_matrix"], data["voxel"], data["frames"]


def test_folder_calibration_file_and_config_transforms_replace_the_missing_topics(bags, tmp_path, capsys):
    full, stripped, root = bags
    assert main(["replay", str(full), "--out", str(tmp_path / "full"), "--model", "student_rgb",
                 "--topic", f"rgb={RGB}"]) == 0
    assert main(["replay", str(stripped), "--out", str(tmp_path / "stripped"), "--config", str(root / "stripped.yaml"),
                 "--topic", f"rgb={RGB}", "--labels-dir", str(root / "labels"),
                 "--camera-info", str(root / "front.yaml")]) == 0
    confusion, voxel, frames = _scores(tmp_path / "full")
    assert frames == FRAMES and sum(map(sum, confusion)) > 0 and voxel["voxel_accuracy"]["scored"] > 0
    assert _scores(tmp_path / "stripped") == (confusion, voxel, frames)
    # and without them: nothing to score, no camera to label the sweeps with, and it says so
    assert main(["replay", str(stripped), "--out", str(tmp_path / "bare"), "--model", "student_rgb",
                 "--topic", f"rgb={RGB}"]) == 0
    bare = json.loads((tmp_path / "bare" / "report.json").read_text())
    assert bare["frames"] == FRAMES and sum(map(sum, bare["confusion_matrix"])) == 0
    assert bare["skipped"]["no camera_info yet"] == FRAMES


def test_no_map_and_topic_flags(bags, tmp_path, capsys):
    full, _, _ = bags
    assert main(["replay", str(full), "--out", str(tmp_path), "--model", "student_rgb", "--no-map", "--no-bag",
                 "--topic", f"rgb={RGB}", "--topic", "labels=none"]) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["frames"] == FRAMES and report["voxel"] == {} and sum(map(sum, report["confusion_matrix"])) == 0
    assert not list(tmp_path.glob("full"))  # --no-bag
    for flag, message in (("rgb", "expected ROLE=TOPIC"), ("radar=/r", "expected ROLE=TOPIC"),
                          (f"thermal={RGB}", "more than one role")):
        assert main(["replay", str(full), "--out", str(tmp_path), "--topic", f"rgb={RGB}", "--topic", flag]) == 1
        assert message in capsys.readouterr().err


def test_bad_ground_truth_sources_are_named(tmp_path):
    from seg_perception.pipeline.label_folder import LabelFolder, stamp_from_name

    assert stamp_from_name("frame-1700000000100000000") == 1_700_000_000_100_000_000
    assert stamp_from_name("1581624652.150") == 1_581_624_652_150_000_000
    assert stamp_from_name("frame000042") is None
    with pytest.raises(ConfigError, match="does not exist"):
        LabelFolder(tmp_path / "nowhere", 0)
    with pytest.raises(ConfigError, match="holds no label images"):
        LabelFolder(tmp_path, 0)
    cv2.imwrite(str(tmp_path / "frame000042.png"), np.zeros((2, 2), np.uint8))
    with pytest.raises(ConfigError, match="named by stamp.*e.g. frame000042.png"):
        LabelFolder(tmp_path, 0)
    (tmp_path / "frame000042.png").unlink()
    cv2.imwrite(str(tmp_path / "10.5.png"), np.zeros((2, 2, 3), np.uint8))
    cv2.imwrite(str(tmp_path / "11.0.png"), np.full((2, 2), 7, np.uint8))
    folder = LabelFolder(tmp_path, slop_ns=100_000_000)
    assert folder.at(11_050_000_000).tolist() == [[7, 7], [7, 7]]
    assert folder.at(11_200_000_000) is None  # beyond the slop
    with pytest.raises(ConfigError, match=r"uint8 with shape \(2, 2, 3\); single-channel"):
        folder.at(10_500_000_000)
    with pytest.raises(ConfigError, match="not a unit quaternion"):
        PipelineConfig.from_dict({"static_transforms": [{"parent": "a", "child": "b", "rotation": [0, 0, 0, 2]}]})
    with pytest.raises(ConfigError, match="lacks 'child'"):
        PipelineConfig.from_dict({"static_transforms": [{"parent": "a"}]})


class _SlowPerfect:
    """Ground-truth labels after `delay_s`: a model slower than the bag's frame rate."""

    device = "cpu"

    def __init__(self, delay_s):
        from seg_perception.engines.source import ModelSource

        source = ModelSource.open("student_rgb")
        self.label_set, self.config, self.delay_s = source.label_set, source.config, delay_s
        self.modalities = source.modalities

    def segment(self, rgb=None, **_):
        from seg_perception.engines import Segmentation

        time.sleep(self.delay_s)
        shape = rgb.shape[:2]
        return Segmentation(np.zeros(shape, np.uint8), np.ones(shape, np.float32), np.zeros(shape, bool),
                            {"total": self.delay_s * 1e3})


def test_realtime_replay_drops_what_a_live_node_could_not_keep_up_with(tmp_path):
    bag = tmp_path / "drive"
    write_bag(bag, World(110_000, "day"), 8, compress_rgb=True, lidar=False, events=False)
    config = PipelineConfig.load()
    config = replace(config, topics={**config.topics, "rgb": RGB}, mapping=replace(config.mapping, enabled=False))
    # Not real time, a fast model: every frame (this also warms up what a first replay loads and compiles).
    every = replay_bag(bag, config, tmp_path / "all", ReplayOptions(record=False), segmenter=_SlowPerfect(0.01))
    assert every.frames == 8 and every.frames_dropped == 0
    started = time.monotonic()
    # frames every 100 ms, a model that takes 250 ms: the live scheduler keeps the newest frame
    report = replay_bag(bag, config, tmp_path / "out", ReplayOptions(realtime=True, record=False),
                        segmenter=_SlowPerfect(0.25))
    elapsed = time.monotonic() - started
    assert report.frames + report.frames_dropped == 8
    assert 2 <= report.frames <= 5 and report.frames_dropped >= 3
    assert elapsed < 0.7 + 2 * 0.25 + 1.0  # the bag's 0.7 s, the frames in hand, start-up: no backlog
