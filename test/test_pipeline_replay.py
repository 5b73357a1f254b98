"""Replay end to end on a short synthetic bag: determinism, the output bag (read by the independent
`mcap` reader), parallel bags merged exactly, and bad bags."""
from __future__ import annotations

import json
import re
import shutil
from dataclasses import replace
from pathlib import Path

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


def test_worst_frames_have_their_overlays_and_the_grid(bag, config, tmp_path):
    """The worst frames' files are the frame's own: the image, the bag's ground truth and the prediction
    recorded in the output bag; the grid has a row per worst frame."""
    import cv2
    import json

    report = replay([bag], config, tmp_path, ReplayOptions())
    assert len(report.worst_frames) == min(FRAMES, report.worst_limit)
    with BagReader(bag) as reader:
        truths = [np.frombuffer(m.msg.data, np.uint8).reshape(m.msg.height, m.msg.width)
                  for m in reader.messages(["/camera/labels"])]
    with BagReader(tmp_path / "drive") as reader:
        predictions = [np.frombuffer(m.msg.data, np.uint8).reshape(m.msg.height, m.msg.width)
                       for m in reader.messages(["/seg_perception/labels"])]
    for record in report.worst_frames:
        for picture in (record.overlay, record.image):
            image = cv2.imread(str(tmp_path / picture))
            assert image is not None and image.shape == (360, 640, 3), picture
            assert image.std() > 10  # a scene, not a blank image
        truth = cv2.imread(str(tmp_path / record.truth), cv2.IMREAD_UNCHANGED)
        prediction = cv2.imread(str(tmp_path / record.prediction), cv2.IMREAD_UNCHANGED)
        assert np.array_equal(truth, truths[record.index]) and np.array_equal(prediction, predictions[record.index])
    figures = json.loads((tmp_path / "report.json").read_text())["figures"]
    assert len(figures["worst_frames"]["rows"]) == len(report.worst_frames)
    assert cv2.imread(str(tmp_path / "worst_frames.png")) is not None


def test_scenarios_from_bag_names_and_metadata_are_groups_beside_the_bags(bag, config, tmp_path):
    """A bag named drive_night and one tagged `scenario: rain,night` in its metadata: one row per bag and
    one per scenario; the night group holds both bags' pixels (the sum of the two bag groups)."""
    import yaml

    named, tagged = tmp_path / "drive_night", tmp_path / "drive2"
    shutil.copytree(bag, named)
    shutil.copytree(bag, tagged)
    metadata = yaml.safe_load((tagged / "metadata.yaml").read_text())
    metadata["rosbag2_bagfile_information"]["custom_data"] = {"scenario": "rain, night"}
    (tagged / "metadata.yaml").write_text(yaml.safe_dump(metadata))
    report = replay([named, tagged], config, tmp_path / "out", ReplayOptions(record=False))
    assert set(report.groups) == {"drive_night", "drive2", "scenario:night", "scenario:rain"}
    both = report.groups["drive_night"].matrix + report.groups["drive2"].matrix
    assert (report.groups["scenario:night"].matrix == both).all()
    assert (report.groups["scenario:rain"].matrix == report.groups["drive2"].matrix).all()
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert "| scenario:night |" in markdown and "| drive2 |" in markdown


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
    with pytest.raises(BagError, match=r"has no RGB topic '/front/image', and which image topic is the camera's is "
                                       r"ambiguous: \[.*'/camera/image_raw/compressed'"):
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


def test_a_damaged_chunk_costs_its_own_frames_and_reading_goes_on_after_it(bag, config, tmp_path):
    from mcap.reader import make_reader

    damaged = tmp_path / "damaged"
    shutil.copytree(bag, damaged)
    (mcap_file,) = damaged.glob("*.mcap")
    with open(mcap_file, "rb") as stream:
        chunks = make_reader(stream).get_summary().chunk_indexes
    assert len(chunks) >= 3
    middle = chunks[len(chunks) // 2]
    data = bytearray(mcap_file.read_bytes())
    end = middle.chunk_start_offset + middle.chunk_length
    data[end - 4096:end] = bytes(4096)  # the tail of its compressed records
    mcap_file.write_bytes(bytes(data))
    report = replay_bag(damaged, config, tmp_path / "out")
    assert report.skipped.get("damaged chunk skipped", 0) >= 1
    assert not [r for r in report.skipped if r.startswith("bag reading stopped")]
    with BagReader(tmp_path / "out" / "damaged") as output:
        stamps = [m.log_time_ns for m in output.messages(["/seg_perception/labels"])]
    assert stamps and max(stamps) > middle.message_end_time  # frames after the damaged chunk were replayed


def test_a_bad_transform_is_skipped_not_the_bag(bag, config, tmp_path):
    """One /tf message with an all-zero quaternion: that message is counted and skipped; the bag is replayed."""
    from seg_perception.io import BagWriter, read_messages

    edited = tmp_path / "edited"
    with BagWriter(edited, "mcap") as writer:
        injected = False
        for message in read_messages(bag):
            if message.topic == "/tf" and not injected:
                zero = message.msg.transforms[0].transform.rotation
                zero.x = zero.y = zero.z = zero.w = 0.0
                injected = True
            writer.write(message.topic, message.msg, message.log_time_ns,
                         latched=message.topic == "/tf_static")
    mapped = replace(config, mapping=replace(config.mapping, enabled=True))
    report = replay_bag(edited, mapped, tmp_path / "out")
    assert report.frames == FRAMES
    reasons = [r for r in report.skipped if r.startswith("tf on /tf")]
    assert len(reasons) == 1 and "rotation of odom -> base_link" in reasons[0], report.skipped


def test_a_damaged_sqlite3_bag_is_reported_without_a_traceback(tmp_path, config):
    from seg_perception.io import BagError

    path = tmp_path / "sq"
    write_bag(path, World(5, "day"), 3, storage="sqlite3", lidar=False, events=False, compress_rgb=True)
    (db,) = path.glob("*.db3")
    data = bytearray(db.read_bytes())
    for at in range(len(data) // 3, len(data) * 2 // 3, 4096):
        data[at:at + 64] = bytes(range(64))
    db.write_bytes(bytes(data))
    try:
        report = replay_bag(path, config, tmp_path / "out")
    except BagError as exc:  # the bag as a whole: a typed error naming it
        assert str(path) in str(exc)
    else:
        assert report.frames < 3 or report.skipped


def test_output_bags_open_right_in_players(bag, config, tmp_path):
    """Read with the mcap + mcap_ros2 readers (not rosbags): the bag starts at the first frame, not 1970;
    every image output has a camera_info of its frame; the transforms chain the voxel cloud's frame to
    the camera's; chunks are zstd with CRCs; SegmentationInfo carries a latency."""
    import zlib

    import zstandard
    from mcap.data_stream import ReadDataStream
    from mcap.reader import make_reader
    from mcap.records import Chunk
    from mcap_ros2.decoder import DecoderFactory

    mapped = replace(config, mapping=replace(config.mapping, enabled=True))
    replay_bag(bag, mapped, tmp_path)
    with BagReader(bag) as reader:
        first_input = min(m.log_time_ns for m in reader.messages())
    (path,) = (tmp_path / "drive").glob("*.mcap")
    with open(path, "rb") as stream:
        messages = [(channel.topic, message.log_time, decoded) for _, channel, message, decoded in
                    make_reader(stream, decoder_factories=[DecoderFactory()]).iter_decoded_messages()]
        stream.seek(0)
        summary = make_reader(stream).get_summary()
        for index in summary.chunk_indexes:
            stream.seek(index.chunk_start_offset + 9)
            chunk = Chunk.read(ReadDataStream(stream))
            data = zstandard.ZstdDecompressor().decompress(chunk.data, max_output_size=chunk.uncompressed_size)
            assert chunk.compression == "zstd" and chunk.uncompressed_crc == zlib.crc32(data)
    assert min(t for _, t, _ in messages) >= first_input
    by_topic: dict[str, list] = {}
    for topic, _, msg in messages:
        by_topic.setdefault(topic, []).append(msg)
    infos = {m.header.stamp.sec * 10**9 + m.header.stamp.nanosec: m.header.frame_id
             for m in by_topic["/seg_perception/camera_info"]}
    for name in ("labels", "color", "overlay", "confidence", "image/compressed"):
        images = by_topic[f"/seg_perception/{name}"]
        assert len(images) == FRAMES
        for image in images:
            assert infos[image.header.stamp.sec * 10**9 + image.header.stamp.nanosec] == image.header.frame_id != ""
    edges = {(t.header.frame_id, t.child_frame_id) for topic in ("/tf", "/tf_static") for m in by_topic[topic]
             for t in m.transforms}
    cloud_frame = by_topic["/seg_perception/voxel_cloud"][0].header.frame_id
    camera_frame = by_topic["/seg_perception/labels"][0].header.frame_id
    reached, frontier = {cloud_frame}, [cloud_frame]
    while frontier:  # walk the tree from the map frame
        parent = frontier.pop()
        for a, b in edges:
            if a == parent and b not in reached:
                reached.add(b)
                frontier.append(b)
    assert camera_frame in reached, (cloud_frame, camera_frame, edges)
    assert all(info.latency_ms > 0 for info in by_topic["/seg_perception/info"])
    # navigation outputs in the map frame, stamped with their frame: a costmap around base_link, markers
    costmap, markers = by_topic["/seg_perception/costmap"][-1], by_topic["/seg_perception/voxel_markers"][-1]
    assert costmap.header.frame_id == cloud_frame and costmap.info.width * costmap.info.height == len(costmap.data)
    assert {v for v in costmap.data} >= {-1} and max(costmap.data) > 0  # unknown space and known cells
    assert markers.markers and all(m.header.frame_id == cloud_frame for m in markers.markers)
    layout = json.loads((Path(__file__).resolve().parents[1] / "config" / "foxglove" / "replay_output.json").read_text())
    shown = set(re.findall(r'"(/[a-z_/]+?)(?:\.[a-z_]+)?"', json.dumps(layout)))
    assert shown and shown <= set(by_topic), shown - set(by_topic)  # the Foxglove layout shows what replay writes


def test_bags_of_the_same_name_get_their_own_output_folders(bag, config, tmp_path):
    from seg_perception.pipeline.replay import output_names

    for side in ("a", "b"):
        shutil.copytree(bag, tmp_path / side / "drive")
    names = output_names([tmp_path / "a" / "drive", tmp_path / "b" / "drive"])
    assert sorted(names.values()) == ["a_drive", "b_drive"]
    report = replay([tmp_path / "a" / "drive", tmp_path / "b" / "drive"], config, tmp_path / "out",
                    ReplayOptions())
    assert (tmp_path / "out" / "a_drive").is_dir() and (tmp_path / "out" / "b_drive").is_dir()
    assert report.frames == 2 * FRAMES


def test_topics_of_the_wrong_type_are_counted_and_the_report_is_written(bag, config, tmp_path):
    """The optional label topic carrying point clouds costs the scores, not the bag; an RGB topic of camera
    infos costs every frame, and the report still says why."""
    from seg_perception.io import BagWriter, read_messages

    def rewritten(name: str, topic: str, replacement: str) -> Path:
        out = tmp_path / name
        with BagWriter(out, "mcap") as writer:
            substitutes = [m.msg for m in read_messages(bag, [replacement])]
            for message in read_messages(bag):
                msg = message.msg
                if message.topic == topic:
                    msg = substitutes[min(len(substitutes) - 1, len(substitutes) // 2)]
                writer.write(message.topic + ("_" if message.topic == topic else ""), msg, message.log_time_ns,
                             latched=message.topic == "/tf_static")
        return out

    labels_as_clouds = rewritten("labels", "/camera/labels", "/lidar/points")
    odd = replace(config, topics={**config.topics, "labels": "/camera/labels_"})
    report = replay_bag(labels_as_clouds, odd, tmp_path / "a")
    assert report.frames == FRAMES and report.frames_scored == 0
    assert sum(n for r, n in report.skipped.items() if r.startswith("labels on /camera/labels_")) == FRAMES
    rgb_as_infos = rewritten("rgb", "/camera/image_raw/compressed", "/camera/camera_info")
    odd = replace(config, topics={**config.topics, "rgb": "/camera/image_raw/compressed_"})
    report = replay_bag(rgb_as_infos, odd, tmp_path / "b")
    assert report.frames == 0 and sum(n for r, n in report.skipped.items() if r.startswith("rgb on")) == FRAMES
    assert (tmp_path / "b" / "rgb").is_dir()
