"""Sample bags of the synthetic world: deterministic bytes, readable by rosbags, mcap and rclpy, payloads
equal to the frames they were written from."""
from __future__ import annotations

import subprocess
import sys
from collections import Counter, defaultdict

import cv2
import numpy as np
import pytest
from mcap.reader import make_reader

from conftest import require_ros

from seg_perception.cli import main
from seg_perception.io import (
    BagError,
    TransformBuffer,
    camera_model_from_info,
    cloud_to_array,
    compressed_to_array,
    image_to_array,
    packet_to_events,
    read_messages,
    stamp_to_ns,
    transform_to_matrix,
)
from seg_perception.labels import load_label_set
from seg_perception.sim import CameraSpec, LidarSpec, RigSpec, World
from seg_perception.sim.bag import write_bag

SEED, SCENARIO, FRAMES = 5, "dusk", 3
RIG = RigSpec(camera=CameraSpec(width=160, height=96), lidar=LidarSpec(beams=16, columns=256))
MS = 1_000_000
CAMERA_TOPICS = ["/camera/image_raw", "/camera/camera_info", "/camera/depth", "/camera/labels",
                 "/thermal/image_raw", "/thermal/camera_info", "/events/camera_info"]
TYPES = {
    "/tf_static": "tf2_msgs/msg/TFMessage", "/tf": "tf2_msgs/msg/TFMessage", "/odom": "nav_msgs/msg/Odometry",
    "/seg_perception/label_set": "seg_perception/msg/LabelSet",
    "/camera/image_raw": "sensor_msgs/msg/Image", "/camera/camera_info": "sensor_msgs/msg/CameraInfo",
    "/camera/depth": "sensor_msgs/msg/Image", "/camera/labels": "sensor_msgs/msg/Image",
    "/thermal/image_raw": "sensor_msgs/msg/Image", "/thermal/camera_info": "sensor_msgs/msg/CameraInfo",
    "/events": "event_camera_msgs/msg/EventPacket", "/events/camera_info": "sensor_msgs/msg/CameraInfo",
    "/lidar/points": "sensor_msgs/msg/PointCloud2", "/lidar/labels": "sensor_msgs/msg/PointCloud2",
}


def _world() -> World:
    return World(SEED, SCENARIO, rig=RIG)


@pytest.fixture(scope="module")
def world():
    return _world()


@pytest.fixture(scope="module")
def frames(world):
    return list(world.frames(FRAMES))


@pytest.fixture(scope="module")
def bags(tmp_path_factory, world):
    """The same bag written from two worlds (one fresh), in folders of the same name, plus a SQLite3 one."""
    root = tmp_path_factory.mktemp("bags")
    paths = {"a": root / "a" / "drive", "b": root / "b" / "drive", "sqlite3": root / "sqlite3" / "drive"}
    summaries = {key: write_bag(path, _world() if key == "b" else world, FRAMES,
                                storage="sqlite3" if key == "sqlite3" else "mcap")
                 for key, path in paths.items()}
    return paths, summaries


@pytest.fixture(scope="module")
def messages(bags):
    paths, _ = bags
    by_topic = defaultdict(list)
    for message in read_messages(paths["a"]):
        by_topic[message.topic].append(message)
    return by_topic


def _expected_counts(frames) -> dict[str, int]:
    """Counts from the frames alone: 50 Hz poses over the frame intervals (one extra at the start), one event
    packet per millisecond bin of each frame interval that holds events."""
    packets = 0
    for frame in frames:
        begin = frame.stamp_ns - 100 * MS
        packets += len(np.unique((frame.events["t"] - begin - 1) // MS))
    counts = {topic: FRAMES for topic in CAMERA_TOPICS + ["/lidar/points", "/lidar/labels"]}
    counts.update({"/tf_static": 1, "/seg_perception/label_set": 1, "/tf": 5 * FRAMES + 1, "/odom": 5 * FRAMES + 1,
                   "/events": packets})
    return counts


def test_same_seed_gives_byte_identical_bags(bags, world):
    paths, _ = bags
    for name in ("metadata.yaml", "drive.mcap"):
        assert (paths["a"] / name).read_bytes() == (paths["b"] / name).read_bytes(), name
    with pytest.raises(BagError, match="already exists"):
        write_bag(paths["a"], world, 1)


def test_rosbags_reads_every_topic_with_the_expected_counts(bags, messages, frames):
    paths, summaries = bags
    expected = _expected_counts(frames)
    assert {topic: len(msgs) for topic, msgs in messages.items()} == expected
    assert summaries["a"].message_counts == expected
    assert {topic: msgs[0].typename for topic, msgs in messages.items()} == TYPES
    assert summaries["a"].size_bytes == sum(f.stat().st_size for f in paths["a"].iterdir())


def test_independent_mcap_reader_sees_schemas_channels_and_counts(bags, frames):
    paths, _ = bags
    with open(paths["a"] / "drive.mcap", "rb") as stream:
        reader = make_reader(stream)
        summary = reader.get_summary()
        channels = {c.topic: summary.schemas[c.schema_id].name for c in summary.channels.values()}
        counts = Counter(channel.topic for _, channel, _ in reader.iter_messages())
    assert channels == TYPES
    assert {c.message_encoding for c in summary.channels.values()} == {"cdr"}
    assert dict(counts) == _expected_counts(frames)
    latched = {c.topic for c in summary.channels.values() if "transient_local" in c.metadata["offered_qos_profiles"]}
    assert latched == {"/tf_static", "/seg_perception/label_set"}


def test_sqlite3_bag_holds_the_same_messages(bags, messages):
    paths, summaries = bags
    got = defaultdict(list)
    for message in read_messages(paths["sqlite3"]):
        got[message.topic].append(message)
    assert {t: len(m) for t, m in got.items()} == {t: len(m) for t, m in messages.items()}
    assert summaries["sqlite3"].storage == "sqlite3" and (paths["sqlite3"] / "drive.db3").exists()
    for ours, theirs in zip(got["/camera/labels"], messages["/camera/labels"]):
        assert ours.log_time_ns == theirs.log_time_ns
        np.testing.assert_array_equal(image_to_array(ours.msg), image_to_array(theirs.msg))


def test_log_time_is_the_header_stamp_and_the_sensor_clock(messages, frames):
    first, last = frames[0].stamp_ns - 100 * MS, frames[-1].stamp_ns
    for topic, msgs in messages.items():
        for message in msgs:
            headers = [t.header for t in message.msg.transforms] if topic.startswith("/tf") else [message.msg.header]
            assert {stamp_to_ns(h.stamp) for h in headers} == {message.log_time_ns}, topic
            assert first <= message.log_time_ns <= last, topic
    for topic in CAMERA_TOPICS:
        assert [m.log_time_ns for m in messages[topic]] == [f.stamp_ns for f in frames], topic
    # A 10 Hz sweep starts half a rotation (50 ms) before the frame it belongs to.
    assert [m.log_time_ns for m in messages["/lidar/points"]] == [f.stamp_ns - 50 * MS for f in frames]
    assert [m.log_time_ns for m in messages["/tf"]] == list(range(first, last + 1, 20 * MS))


def test_images_decode_to_the_frames(messages, frames, world):
    for index, frame in enumerate(frames):
        rgb, depth, labels, thermal = (messages[t][index].msg for t in
                                       ("/camera/image_raw", "/camera/depth", "/camera/labels", "/thermal/image_raw"))
        assert (rgb.encoding, depth.encoding, labels.encoding, thermal.encoding) == ("rgb8", "32FC1", "mono8", "mono16")
        np.testing.assert_array_equal(image_to_array(rgb), frame.rgb)
        np.testing.assert_array_equal(image_to_array(depth), frame.depth)
        np.testing.assert_array_equal(image_to_array(labels), frame.labels)
        np.testing.assert_array_equal(image_to_array(thermal), frame.thermal)
        assert np.isposinf(image_to_array(depth)).any()  # the sky: nothing hit (REP 118)
        assert (rgb.header.frame_id, thermal.header.frame_id) == ("camera_optical_frame", "thermal_optical_frame")
    for topic, model in (("/camera/camera_info", world.models.camera), ("/thermal/camera_info", world.models.thermal),
                         ("/events/camera_info", world.models.event)):
        decoded = camera_model_from_info(messages[topic][0].msg)
        assert decoded.frame_id == model.frame_id and decoded.image_size == model.image_size
        np.testing.assert_allclose(decoded.K, model.K)
        np.testing.assert_allclose(decoded.D, model.D)


def test_events_decode_to_the_frames_up_to_microsecond_flooring(messages, frames):
    packets = messages["/events"]
    decoded = [packet_to_events(m.msg) for m in packets]
    for m, events in zip(packets, decoded):
        t0 = stamp_to_ns(m.msg.header.stamp)
        assert m.msg.encoding == "evt3" and m.msg.header.frame_id == "event_optical_frame"
        # One packet per millisecond of the frame interval: all its events in the bin of its first one.
        frame_stamp = min(f.stamp_ns for f in frames if f.stamp_ns >= t0)
        bins = (events["t"] - (frame_stamp - 100 * MS) - 1) // MS
        assert (bins == bins[0]).all()
    assert [int(m.msg.seq) for m in packets] == list(range(len(packets)))
    events = np.concatenate(decoded)
    truth = np.concatenate([f.events for f in frames])
    assert len(events) == len(truth) > 1000
    for name in ("x", "y", "p"):
        np.testing.assert_array_equal(events[name], truth[name])
    # evt3 keeps microseconds: each event's time is its packet's first event time plus the µs difference.
    firsts = np.repeat([stamp_to_ns(m.msg.header.stamp) for m in packets], [len(e) for e in decoded])
    np.testing.assert_array_equal(events["t"], firsts + (truth["t"] // 1000 - firsts // 1000) * 1000)
    assert (np.abs(events["t"] - truth["t"]) < 1000).all()


def test_lidar_clouds_decode_to_the_scan_and_its_ground_truth(messages, frames):
    for index, frame in enumerate(frames):
        scan = frame.lidar
        points, truth = messages["/lidar/points"][index].msg, messages["/lidar/labels"][index].msg
        assert (points.height, points.width) == (RIG.lidar.beams, RIG.lidar.columns)
        assert not points.is_dense and points.header.frame_id == "lidar"
        cloud, labelled = cloud_to_array(points), cloud_to_array(truth)
        assert {n: cloud.dtype[n] for n in cloud.dtype.names} == {
            "x": np.float32, "y": np.float32, "z": np.float32, "intensity": np.float32, "t": np.uint32,
            "ring": np.uint16}
        xyz = np.stack([cloud["x"], cloud["y"], cloud["z"]], -1)
        np.testing.assert_array_equal(xyz, scan.points)  # NaN where no return, in the same places
        assert np.isnan(xyz).any() and np.isfinite(xyz).any()
        np.testing.assert_array_equal(cloud["intensity"], scan.intensity)
        np.testing.assert_array_equal(cloud["t"], scan.time_offset_ns)
        rings = np.broadcast_to(np.arange(RIG.lidar.beams)[:, None], xyz.shape[:2])
        np.testing.assert_array_equal(cloud["ring"], rings)
        # Column j fires j/C of the 100 ms rotation after the stamp.
        np.testing.assert_allclose(cloud["t"][0], np.arange(RIG.lidar.columns) * 100 * MS / RIG.lidar.columns, atol=1)
        for name in ("x", "y", "z"):
            np.testing.assert_array_equal(labelled[name], cloud[name])
        assert labelled.dtype["label"] == np.uint8 and labelled.dtype["instance"] == np.uint16
        np.testing.assert_array_equal(labelled["label"], scan.labels)
        np.testing.assert_array_equal(labelled["instance"], scan.instance)


def test_tf_tree_gives_the_trajectory_at_sensor_stamps(messages, frames, world):
    buffer = TransformBuffer()
    buffer.add_tf_message(messages["/tf_static"][0].msg, static=True)
    for message in messages["/tf"]:
        buffer.add_tf_message(message.msg)
    assert buffer.frames == sorted(["map", "odom", "base_link", "camera_optical_frame", "thermal_optical_frame",
                                    "event_optical_frame", "lidar"])
    T_map_odom = buffer.lookup("map", "odom")
    np.testing.assert_allclose(T_map_odom, frames[0].pose, atol=1e-9)
    for index, frame in enumerate(frames):
        np.testing.assert_allclose(buffer.lookup("map", "camera_optical_frame", frame.stamp_ns),
                                   frame.pose @ RIG.camera.extrinsic(), atol=1e-6)
        # The sweep starts between two 50 Hz poses: interpolated, close to the true pose.
        scan_stamp = stamp_to_ns(messages["/lidar/points"][index].msg.header.stamp)
        T_map_base = world.trajectory.pose(world.time_of(index) - 0.05)
        np.testing.assert_allclose(buffer.lookup("map", "lidar", scan_stamp), T_map_base @ RIG.lidar.extrinsic(),
                                   atol=2e-3)
    for message in messages["/odom"]:
        odom = message.msg
        assert (odom.header.frame_id, odom.child_frame_id) == ("odom", "base_link")
        time_s = world.time_of(0) + (message.log_time_ns - frames[0].stamp_ns) / 1e9
        T_odom_base = np.linalg.inv(frames[0].pose) @ world.trajectory.pose(time_s)
        p = odom.pose.pose.position
        np.testing.assert_allclose([p.x, p.y, p.z], T_odom_base[:3, 3], atol=1e-6)
        linear, angular = world.trajectory.velocity(time_s)
        t = odom.twist.twist
        np.testing.assert_allclose([t.linear.x, t.linear.y, t.linear.z], linear, atol=1e-9)
        np.testing.assert_allclose([t.angular.x, t.angular.y, t.angular.z], angular, atol=1e-9)
        assert linear[0] > 1.0  # driving forwards along base_link x
    tf_at = {m.log_time_ns: transform_to_matrix(m.msg.transforms[0]) for m in messages["/tf"]}
    for message in messages["/odom"]:
        p = message.msg.pose.pose.position
        np.testing.assert_allclose([p.x, p.y, p.z], tf_at[message.log_time_ns][:3, 3])


def test_label_set_is_published(messages):
    expected = load_label_set("sim_offroad")
    msg = messages["/seg_perception/label_set"][0].msg
    assert msg.name == "sim_offroad" and msg.ignore_id == expected.ignore_id
    assert [(c.id, c.name, tuple(int(v) for v in c.color)) for c in msg.classes] == [
        (c.id, c.name, c.color) for c in expected.classes]


def test_every_message_deserialises_with_rclpy(bags):
    """The CDR bytes in the bag, read by the independent mcap reader, deserialise with ROS 2's own typesupport
    (tf2_msgs and event_camera_msgs too: make test builds them in its workspace)."""
    require_ros("sensor_msgs.msg", "nav_msgs.msg", "seg_perception.msg")
    from rclpy.serialization import deserialize_message

    from seg_perception.ros.messages import message_class

    paths, _ = bags
    checked = Counter()
    with open(paths["a"] / "drive.mcap", "rb") as stream:
        for schema, channel, message in make_reader(stream).iter_messages():
            try:
                cls = message_class(schema.name)
            except ImportError:
                continue
            msg = deserialize_message(message.data, cls)
            stamps = [t.header.stamp for t in msg.transforms] if hasattr(msg, "transforms") else [msg.header.stamp]
            assert all(stamp_to_ns(s) <= message.log_time for s in stamps) and stamps, channel.topic
            if not hasattr(msg, "transforms"):
                assert stamp_to_ns(msg.header.stamp) == message.log_time, channel.topic
            checked[schema.name] += 1
    assert set(checked) >= {"sensor_msgs/msg/Image", "sensor_msgs/msg/CameraInfo", "sensor_msgs/msg/PointCloud2",
                            "nav_msgs/msg/Odometry", "seg_perception/msg/LabelSet", "tf2_msgs/msg/TFMessage",
                            "event_camera_msgs/msg/EventPacket"}


def test_compressed_rgb_and_optional_sensors(tmp_path, frames, world):
    summary = write_bag(tmp_path / "small", world, 1, storage="sqlite3", lidar=False, events=False,
                        compress_rgb=True, zstd=False)
    topics = {m.topic: m.msg for m in read_messages(tmp_path / "small")}
    assert "/camera/image_raw" not in topics and not any(t.startswith(("/lidar", "/events")) for t in topics)
    assert set(summary.topics) == set(topics)
    jpeg = topics["/camera/image_raw/compressed"]
    assert jpeg.format.startswith("rgb8; jpeg")
    mse = np.mean((compressed_to_array(jpeg).astype(float) - frames[0].rgb) ** 2)
    assert 10 * np.log10(255**2 / mse) > 28  # PSNR, dB: lossy but faithful (the sensor noise goes first)
    np.testing.assert_array_equal(image_to_array(topics["/camera/labels"]), frames[0].labels)


def test_zstd_compression_is_lossless_and_smaller(tmp_path, bags, world):
    paths, summaries = bags
    plain = write_bag(tmp_path / "drive", world, FRAMES, zstd=False)
    assert plain.size_bytes > 1.2 * summaries["a"].size_bytes
    ours = [(m.topic, m.log_time_ns) for m in read_messages(paths["a"])]
    theirs = [(m.topic, m.log_time_ns) for m in read_messages(plain.path)]
    assert ours == theirs
    a = next(m.msg for m in read_messages(paths["a"], ["/lidar/points"]))
    b = next(m.msg for m in read_messages(plain.path, ["/lidar/points"]))
    assert bytes(a.data) == bytes(b.data)


def test_simulate_command(tmp_path, capsys):
    out = tmp_path / "sample"
    assert main(["simulate", "--out", str(out), "--frames", "1", "--seed", "2", "--scenario", "night",
                 "--no-lidar", "--no-events", "--storage", "sqlite3"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"wrote {out} (sqlite3): 1 frames") and "/camera/labels" in line and "/lidar" not in line
    assert (out / "sample.db3").exists()
    assert {m.topic for m in read_messages(out)} >= {"/camera/image_raw", "/tf", "/tf_static", "/odom"}
    fresh = str(tmp_path / "x")
    for argv, complaint in ((["--out", str(out)], "already exists"),
                            (["--out", fresh, "--frames", "0"], "positive integer"),
                            (["--out", fresh, "--seed", "-3"], "integer >= 0"),
                            (["--out", fresh, "--scenario", "noon"], "invalid choice")):
        with pytest.raises(SystemExit) as exit_info:
            main(["simulate", *argv])
        assert exit_info.value.code == 2
        assert complaint in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_simulate_command_writes_a_contact_sheet(tmp_path, capsys):
    sheet = tmp_path / "sheet.png"
    assert main(["simulate", "--out", str(tmp_path / "bag"), "--frames", "1", "--seed", "1", "--no-lidar",
                 "--preview", str(sheet)]) == 0
    assert f"wrote contact sheet {sheet}" in capsys.readouterr().out
    image = cv2.imread(str(sheet))
    assert image.shape == (4 * 180, 6 * 320, 3)  # one row per scenario, one tile per modality
    day, night = image[:180, :320].astype(float), image[360:540, :320].astype(float)
    assert day.mean() > night.mean() + 30  # the RGB tiles really differ by scenario


def test_command_line_parser_imports_nothing_heavy(tmp_path):
    code = ("import sys; from seg_perception.cli import build_parser; build_parser().parse_args(['simulate', '--out', "
            "'x']); print(sorted(m for m in ('seg_perception.sim', 'numba', 'cv2', 'torch') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=tmp_path)
    assert result.stdout.strip() == "[]"
