"""Replay end to end on a short synthetic bag: determinism, the output bag (read by the independent
`mcap` reader), parallel bags merged exactly, and bad bags."""
from __future__ import annotations

import shutil
from dataclasses import replace

import numpy as np
import pytest

from seg_perception.io import BagError, BagReader
from seg_perception.pipeline import PipelineConfig
from seg_perception.pipeline.replay import ReplayOptions, replay, replay_bag
from seg_perception.sim import World
from seg_perception.sim.bag import write_bag

FRAMES = 4


@pytest.fixture(scope="module")
def bag(tmp_path_factory):
    path = tmp_path_factory.mktemp("bags") / "drive"
    write_bag(path, World(110_000, "day"), FRAMES, compress_rgb=True)
    return path


@pytest.fixture(scope="module")
def config():
    config = PipelineConfig.load()
    return replace(config, model="student_rgb", topics={**config.topics, "rgb": "/camera/image_raw/compressed"})


def _scores(report):
    data = report.to_dict()
    data.pop("latency", None)
    return data


def test_replay_is_deterministic_and_scores_every_frame(bag, config, tmp_path):
    first = replay_bag(bag, config, tmp_path / "a")
    second = replay_bag(bag, config, tmp_path / "b")
    assert first.frames == FRAMES and first.frames_scored == FRAMES and first.frames_dropped == 0
    assert _scores(first) == _scores(second)
    assert 0.0 < first.confusion.miou() <= 1.0


def test_frames_segmented_at_once_give_the_results_of_one_at_a_time(bag, config, tmp_path):
    """Frame-parallel segmentation changes nothing: the report, and every message of the output bag
    but the per-frame timing, are those of segmenting one frame at a time (the map included: fusion
    stays in frame order)."""
    mapped = replace(config, mapping=replace(config.mapping, enabled=True))
    runs = {workers: replay_bag(bag, mapped, tmp_path / str(workers), ReplayOptions(segment_workers=workers))
            for workers in (1, 3)}
    assert _scores(runs[1]) == _scores(runs[3])
    assert runs[3].frames == FRAMES and runs[3].voxel_counts["voxel_accuracy"][1] > 1000
    from mcap.reader import make_reader

    recorded = {}
    for workers in runs:
        (path,) = (tmp_path / str(workers) / "drive").glob("*.mcap")
        with open(path, "rb") as stream:
            recorded[workers] = [(channel.topic, message.log_time, message.data)
                                 for _, channel, message in make_reader(stream).iter_messages()
                                 if channel.topic != "/seg_perception/info"]
    assert {t for t, _, _ in recorded[1]} >= {"/seg_perception/labels", "/seg_perception/voxel_map"}
    assert recorded[1] == recorded[3]


def test_each_frame_is_fused_with_the_camera_info_read_before_it(bag, config, tmp_path):
    """camera_info that starts late: frames read before it are not labelled, however many frames are
    in flight when it arrives (a frame keeps the camera in force when it was read, not when fused)."""
    from seg_perception.io import BagWriter

    late = tmp_path / "late"
    with BagReader(bag) as reader, BagWriter(late) as writer:
        seen = 0
        for m in reader.messages():
            if m.topic == "/camera/camera_info":
                seen += 1
                if seen <= 2:
                    continue
            writer.write(m.topic, m.msg, m.log_time_ns, latched=m.topic == "/tf_static")
    mapped = replace(config, mapping=replace(config.mapping, enabled=True))
    runs = [replay_bag(late, mapped, tmp_path / str(w), ReplayOptions(record=False, segment_workers=w))
            for w in (1, 3)]
    for report in runs:
        assert report.skipped.get("no camera_info yet", 0) == 2
    assert _scores(runs[0]) == _scores(runs[1])


def test_worst_frames_have_their_overlays_and_the_strip(bag, config, tmp_path):
    import cv2

    report = replay([bag], config, tmp_path, ReplayOptions(record=False))
    assert len(report.worst_frames) == min(FRAMES, report.worst_limit)
    for record in report.worst_frames:
        picture = cv2.imread(str(tmp_path / record.overlay))
        assert picture is not None and picture.shape == (360, 640, 3), record.overlay
        assert picture.std() > 10  # a scene, not a blank image
    assert cv2.imread(str(tmp_path / "worst_frames.png")) is not None


def test_output_bag_is_readable_by_an_independent_mcap_reader(bag, config, tmp_path):
    from mcap.reader import make_reader

    replay_bag(bag, config, tmp_path)
    (mcap_file,) = (tmp_path / "drive").glob("*.mcap")
    counts: dict[str, int] = {}
    schemas = {}
    with open(mcap_file, "rb") as stream:
        for schema, channel, _message in make_reader(stream).iter_messages():
            counts[channel.topic] = counts.get(channel.topic, 0) + 1
            schemas[channel.topic] = schema.name
    for name in ("labels", "color", "overlay", "confidence", "info"):
        assert counts[f"/seg_perception/{name}"] == FRAMES
    assert schemas["/seg_perception/labels"] == "sensor_msgs/msg/Image"
    assert schemas["/seg_perception/info"] == "seg_perception/msg/SegmentationInfo"
    assert schemas["/seg_perception/voxel_map"] == "seg_perception/msg/SemanticVoxelMap"
    assert counts["/seg_perception/voxel_cloud"] >= 1 and counts["/seg_perception/label_set"] == 1


def test_parallel_bags_merge_exactly(bag, config, tmp_path):
    other = tmp_path / "copy"
    shutil.copytree(bag, other)
    sequential = replay([bag, other], config, tmp_path / "seq", ReplayOptions(record=False))
    parallel = replay([bag, other], config, tmp_path / "par", ReplayOptions(record=False), workers=2)
    assert (sequential.confusion.matrix == parallel.confusion.matrix).all()
    assert parallel.frames == 2 * FRAMES
    assert (tmp_path / "par" / "report.json").exists() and (tmp_path / "par" / "report.md").exists()


def test_missing_rgb_topic_is_a_clear_error(bag, config, tmp_path):
    wrong = replace(config, topics={**config.topics, "rgb": "/front/image"})
    with pytest.raises(BagError, match=r"has no RGB topic '/front/image' \(set topics.rgb\); topics there: "):
        replay_bag(bag, wrong, tmp_path)


def test_missing_optional_topic_and_wrong_message_type_are_skipped_and_counted(bag, config, tmp_path):
    odd = replace(config, topics={**config.topics, "labels": "/camera/depth", "lidar": "/no/lidar"})
    report = replay_bag(bag, odd, tmp_path)
    assert report.frames == FRAMES and report.frames_scored == 0  # segmented, but nothing to score against
    assert report.skipped["topic absent: /no/lidar"] == 0
    reasons = [r for r in report.skipped if r.startswith("labels on /camera/depth")]
    assert reasons and report.skipped[reasons[0]] == FRAMES


def test_cut_recording_is_replayed_up_to_the_break_and_the_break_is_reported(bag, config, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(bag, broken)
    (mcap_file,) = broken.glob("*.mcap")
    data = mcap_file.read_bytes()
    mcap_file.write_bytes(data[: len(data) * 3 // 4])
    (broken / "metadata.yaml").unlink()  # as a killed recorder leaves it
    report = replay_bag(broken, config, tmp_path / "out")
    assert 0 < report.frames_scored <= report.frames < FRAMES  # the last frame may have lost its labels
    (reason,) = [r for r in report.skipped if r.startswith("bag reading stopped")]
    assert "breaks off at byte" in reason
    # what was computed before the break is in the output bag
    with BagReader(tmp_path / "out" / "broken") as output:
        labels = list(output.messages(["/seg_perception/labels"]))
    assert len(labels) == report.frames


class _PerfectSegmenter:
    """The world's true label images, in call order: what a perfect model would output, when replay
    segments one frame at a time (`segment_workers=1`)."""

    device = "cpu"

    def __init__(self, frames):
        from seg_perception.engines.source import ModelSource

        source = ModelSource.open("student_rgb")
        self.label_set, self.config, self.modalities = source.label_set, source.config, source.modalities
        self._labels = iter([frame.labels for frame in World(110_000, "day").frames(frames, events=False)])

    def segment(self, **inputs):
        from seg_perception.engines import Segmentation

        labels = next(self._labels)
        return Segmentation(labels, np.ones(labels.shape, np.float32), np.zeros(labels.shape, bool), {"total": 1.0})


def test_voxel_map_is_scored_against_the_lidar_ground_truth(bag, config, tmp_path):
    """With perfect image labels, LiDAR points and voxels come out nearly all right (only points the
    camera sees at an object's edge, a pixel off, can be wrong), which checks that truth and map line
    up point for point and voxel for voxel; the shipped student scores lower, but well above chance."""
    mapped = replace(config, mapping=replace(config.mapping, enabled=True))
    perfect = replay_bag(bag, mapped, tmp_path / "perfect", ReplayOptions(record=False, segment_workers=1),
                         segmenter=_PerfectSegmenter(FRAMES))
    student = replay_bag(bag, mapped, tmp_path / "student", ReplayOptions(record=False))
    for report, floor in ((perfect, 0.97), (student, 0.6)):
        accuracy = report.voxel_accuracy()
        assert report.voxel_counts["voxel_accuracy"][1] > 1000
        assert report.voxel_counts["lidar_point_accuracy"][1] > 10_000
        assert accuracy["voxel_accuracy"] >= floor and accuracy["lidar_point_accuracy"] >= floor
    assert student.voxel_accuracy()["voxel_accuracy"] < perfect.voxel_accuracy()["voxel_accuracy"]


def test_only_the_topics_the_run_uses_are_read(bag, config, tmp_path, monkeypatch):
    requested = []
    messages = BagReader.messages

    def spy(self, topics=None):
        requested.append(set(topics or ()))
        return messages(self, topics)

    monkeypatch.setattr(BagReader, "messages", spy)
    camera = {"/camera/image_raw/compressed", "/camera/labels", "/camera/camera_info"}
    replay_bag(bag, replace(config, mapping=replace(config.mapping, enabled=False)), tmp_path / "a",
               ReplayOptions(record=False))
    assert requested[-1] == camera  # RGB model, no map: no thermal, events, LiDAR, nor the TF that places LiDAR
    replay_bag(bag, config, tmp_path / "b", ReplayOptions(record=False))
    assert requested[-1] == camera | {"/lidar/points", "/lidar/labels", "/tf", "/tf_static"}
