"""Writing the synthetic world as a rosbag2 (MCAP or SQLite3) on conventional ROS 2 topics.

Every message is built with the `seg_perception.io` converters. Header stamps are the sensors'
times (the drive starts at `world.stamp_of(0)`, never the wall clock) and each message's log time
is its header stamp, so the same seed and options give a byte-identical bag.

| topic | type | rate | frame_id | content |
|---|---|---|---|---|
| `/camera/image_raw` | sensor_msgs/Image | 10 Hz | camera_optical_frame | rgb8 (default) |
| `/camera/image_raw/compressed` | sensor_msgs/CompressedImage | 10 Hz | camera_optical_frame | jpeg, instead of `/camera/image_raw` with `compress_rgb=True` (`--compress`) |
| `/camera/camera_info` | sensor_msgs/CameraInfo | 10 Hz | camera_optical_frame | plumb_bob intrinsics |
| `/camera/depth` | sensor_msgs/Image | 10 Hz | camera_optical_frame | 32FC1 optical z, metres; +inf = nothing hit (REP 118) |
| `/camera/labels` | sensor_msgs/Image | 10 Hz | camera_optical_frame | mono8 ground-truth class ids |
| `/thermal/image_raw` | sensor_msgs/Image | 10 Hz | thermal_optical_frame | mono16 radiometric counts, kelvin × 100 |
| `/thermal/camera_info` | sensor_msgs/CameraInfo | 10 Hz | thermal_optical_frame | |
| `/events` | event_camera_msgs/EventPacket | ~1 kHz | event_optical_frame | evt3, one packet per millisecond that has events; stamp = its first event |
| `/events/camera_info` | sensor_msgs/CameraInfo | 10 Hz | event_optical_frame | stamped at the camera frames |
| `/lidar/points` | sensor_msgs/PointCloud2 | 10 Hz | lidar | organised beams × columns: x, y, z, intensity (float32), t (uint32 ns since the stamp), ring (uint16); NaN = no return; stamp = scan start |
| `/lidar/labels` | sensor_msgs/PointCloud2 | 10 Hz | lidar | ground truth, index for index the points of `/lidar/points`: x, y, z (float32), label (uint8 class id, 0 where no return), instance (uint16 object id, 0 = none) |
| `/tf` | tf2_msgs/TFMessage | 50 Hz | odom | odom → base_link |
| `/tf_static` | tf2_msgs/TFMessage | latched | | base_link → camera_optical_frame, thermal_optical_frame, event_optical_frame, lidar; map → odom |
| `/odom` | nav_msgs/Odometry | 50 Hz | odom | pose of base_link in odom, twist in base_link (ground truth, zero covariance) |
| `/seg_perception/label_set` | seg_perception/LabelSet | latched | | the sim_offroad classes and colours |

odom is the vehicle's pose at frame 0 (map → odom is constant). The camera images of frame k are
stamped at its frame time; its LiDAR sweep starts half a rotation earlier (the forward column
fires at the frame time); its events cover the interval since frame k - 1, and /tf and /odom
cover that interval at 50 Hz, so LiDAR deskewing and event accumulation can interpolate poses.
Frame 0 has a pre-roll of one frame period: the bag starts one period before the first image.

Size: by default MCAP chunks (SQLite3: messages) are zstd-compressed, which every rosbag2 and MCAP
reader undoes transparently. A frame then takes about 3 MB, most of it the 64 × 1024 LiDAR sweep
(twice: sensor and ground truth) and the float depth image; `compress_rgb` saves another 0.5 MB.
"""
from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from seg_perception.io import (
    BagError,
    BagWriter,
    RosbagsFactory,
    array_to_compressed,
    array_to_image,
    camera_info_from_model,
    events_to_packet,
    invert_transform,
    label_set_to_msg,
    make_header,
    matrix_to_pose,
    matrix_to_transform_stamped,
    xyz_to_cloud,
)
from seg_perception.labels import LabelSet, load_label_set

from .lidar import LidarScan
from .world import Frame, World

MAP, ODOM, BASE, LIDAR = "map", "odom", "base_link", "lidar"
CAMERA, THERMAL, EVENT = "camera_optical_frame", "thermal_optical_frame", "event_optical_frame"
TF_RATE_HZ = 50.0
EVENT_PACKET_NS = 1_000_000  # metavision_driver's default event_message_time_threshold (1 ms)
LABEL_SET = "sim_offroad"
JPEG_QUALITY = 90

# Topic → message type, in the order messages of equal log time are written.
TOPICS: dict[str, str] = {
    "/tf_static": "tf2_msgs/msg/TFMessage",
    "/seg_perception/label_set": "seg_perception/msg/LabelSet",
    "/tf": "tf2_msgs/msg/TFMessage",
    "/odom": "nav_msgs/msg/Odometry",
    "/lidar/points": "sensor_msgs/msg/PointCloud2",
    "/lidar/labels": "sensor_msgs/msg/PointCloud2",
    "/events": "event_camera_msgs/msg/EventPacket",
    "/camera/image_raw": "sensor_msgs/msg/Image",
    "/camera/image_raw/compressed": "sensor_msgs/msg/CompressedImage",
    "/camera/camera_info": "sensor_msgs/msg/CameraInfo",
    "/camera/depth": "sensor_msgs/msg/Image",
    "/camera/labels": "sensor_msgs/msg/Image",
    "/thermal/image_raw": "sensor_msgs/msg/Image",
    "/thermal/camera_info": "sensor_msgs/msg/CameraInfo",
    "/events/camera_info": "sensor_msgs/msg/CameraInfo",
}
_RANK = {topic: rank for rank, topic in enumerate(TOPICS)}
LATCHED = ("/tf_static", "/seg_perception/label_set")


@dataclass(frozen=True)
class BagSummary:
    """What `write_bag` wrote."""

    path: Path
    storage: str
    frames: int
    message_counts: dict[str, int]  # topic → messages, in `TOPICS` order
    start_ns: int                   # first log time
    end_ns: int                     # last log time
    size_bytes: int                 # all files of the bag folder, metadata.yaml included

    @property
    def topics(self) -> list[str]:
        return list(self.message_counts)


@dataclass(frozen=True)
class _Record:
    log_ns: int
    topic: str
    msg: Any


def write_bag(path: str | Path, world: World, frames: int, *, storage: str = "mcap", lidar: bool = True,
              events: bool = True, compress_rgb: bool = False, zstd: bool = True,
              label_set: str | LabelSet = LABEL_SET, progress: bool = False) -> BagSummary:
    """Render `frames` frames of `world` and write them, with poses and ground truth, as a new rosbag2.

    Args:
        path: bag folder to create (must not exist).
        world: the world to render; frames 0 … frames-1 are written.
        frames: number of camera frames (≥ 1).
        storage: "mcap" or "sqlite3".
        lidar: write /lidar/points and /lidar/labels.
        events: write /events and /events/camera_info.
        compress_rgb: write the RGB image as jpeg on /camera/image_raw/compressed instead of rgb8 on
            /camera/image_raw (lossy; the other images stay raw, their values are data).
        zstd: lossless zstd compression of the bag (see `BagWriter`).
        label_set: the label set published on /seg_perception/label_set (a name or a LabelSet).
        progress: show a progress bar on stderr.

    Returns:
        A summary: path, message counts per topic, time span and size.

    Raises:
        BagError: `path` exists, an unsupported storage, or `frames` < 1.
        LabelSetError: an unknown label set name.
    """
    if frames < 1:
        raise BagError(f"frames={frames} is invalid; at least 1 frame expected")
    labels = load_label_set(label_set) if isinstance(label_set, (str, Path)) else label_set
    factory = RosbagsFactory()
    counts = {topic: 0 for topic in TOPICS}
    start_ns = world.stamp_of(world.time_of(-1))
    end_ns = start_ns
    T_map_odom = world.trajectory.pose(world.time_of(0))
    with BagWriter(path, storage=storage, typestore=factory.typestore, compress=zstd) as writer:
        def write(records: Iterable[_Record]) -> None:
            nonlocal end_ns
            for record in sorted(records, key=lambda r: (r.log_ns, _RANK[r.topic])):
                writer.write(record.topic, record.msg, record.log_ns, latched=record.topic in LATCHED)
                counts[record.topic] += 1
                end_ns = max(end_ns, record.log_ns)

        write(_static_records(world, labels, T_map_odom, start_ns, factory))
        packet_seq = 0
        stream: Iterable[Frame] = world.frames(frames, lidar=lidar, events=events)
        if progress:
            from tqdm import tqdm

            stream = tqdm(stream, total=frames, unit="frame", desc="simulate", file=sys.stderr)
        for frame in stream:
            records = _camera_records(world, frame, compress_rgb, events, factory)
            records += _motion_records(world, frame.index, T_map_odom, factory)
            if frame.lidar is not None:
                records += _lidar_records(world, frame.lidar, factory)
            if events:
                packets = _event_records(world, frame, packet_seq, factory)
                packet_seq += len(packets)
                records += packets
            write(records)
    size = sum(f.stat().st_size for f in Path(path).iterdir() if f.is_file())
    return BagSummary(Path(path), storage, frames, {t: n for t, n in counts.items() if n}, start_ns, end_ns, size)


def _static_records(world: World, labels: LabelSet, T_map_odom: np.ndarray, stamp_ns: int,
                    factory: RosbagsFactory) -> list[_Record]:
    transforms = [matrix_to_transform_stamped(T_map_odom, MAP, ODOM, stamp_ns, factory=factory)]
    transforms += [matrix_to_transform_stamped(T, BASE, child, stamp_ns, factory=factory)
                   for child, T in world.rig.frames().items()]
    return [_Record(stamp_ns, "/tf_static", factory.make(TOPICS["/tf_static"], transforms=transforms)),
            _Record(stamp_ns, "/seg_perception/label_set", label_set_to_msg(labels, stamp_ns=stamp_ns, factory=factory))]


def _camera_records(world: World, frame: Frame, compress_rgb: bool, events: bool,
                    factory: RosbagsFactory) -> list[_Record]:
    """Images and camera infos, all at the frame's stamp."""
    stamp = frame.stamp_ns
    camera, thermal, event = (make_header(factory, stamp, frame_id) for frame_id in (CAMERA, THERMAL, EVENT))
    models = world.models
    records = []
    if compress_rgb:
        jpeg = array_to_compressed(frame.rgb, "jpeg", header=camera, factory=factory, quality=JPEG_QUALITY)
        records.append(_Record(stamp, "/camera/image_raw/compressed", jpeg))
    else:
        records.append(_Record(stamp, "/camera/image_raw", array_to_image(frame.rgb, "rgb8", header=camera,
                                                                          factory=factory)))
    records += [
        _Record(stamp, "/camera/camera_info", camera_info_from_model(models.camera, header=camera, factory=factory)),
        _Record(stamp, "/camera/depth", array_to_image(frame.depth, "32FC1", header=camera, factory=factory)),
        _Record(stamp, "/camera/labels", array_to_image(frame.labels, "mono8", header=camera, factory=factory)),
        _Record(stamp, "/thermal/image_raw", array_to_image(frame.thermal, "mono16", header=thermal, factory=factory)),
        _Record(stamp, "/thermal/camera_info", camera_info_from_model(models.thermal, header=thermal, factory=factory)),
    ]
    if events:
        records.append(_Record(stamp, "/events/camera_info",
                               camera_info_from_model(models.event, header=event, factory=factory)))
    return records


def _motion_records(world: World, index: int, T_map_odom: np.ndarray, factory: RosbagsFactory) -> list[_Record]:
    """/tf (odom → base_link) and /odom at TF_RATE_HZ over (frame index-1, frame index]; for frame 0 the
    interval is closed, so that the poses cover the whole pre-roll."""
    steps = max(1, round(world.frame_period_s * TF_RATE_HZ))
    first = 0 if index == 0 else 1
    times = world.time_of(index - 1) + world.frame_period_s * np.arange(first, steps + 1) / steps
    T_odom_base = invert_transform(T_map_odom) @ world.trajectory.poses(times)
    records = []
    for time_s, T in zip(times, T_odom_base):
        stamp = world.stamp_of(float(time_s))
        transform = matrix_to_transform_stamped(T, ODOM, BASE, stamp, factory=factory)
        records.append(_Record(stamp, "/tf", factory.make(TOPICS["/tf"], transforms=[transform])))
        linear, angular = world.trajectory.velocity(float(time_s))
        twist = factory.make("geometry_msgs/msg/Twist", linear=_vector3(linear, factory),
                             angular=_vector3(angular, factory))
        odometry = factory.make(
            TOPICS["/odom"], header=make_header(factory, stamp, ODOM), child_frame_id=BASE,
            pose=factory.make("geometry_msgs/msg/PoseWithCovariance", pose=matrix_to_pose(T, factory=factory)),
            twist=factory.make("geometry_msgs/msg/TwistWithCovariance", twist=twist))
        records.append(_Record(stamp, "/odom", odometry))
    return records


def _vector3(values: np.ndarray, factory: RosbagsFactory) -> Any:
    x, y, z = (float(v) for v in values)
    return factory.make("geometry_msgs/msg/Vector3", x=x, y=y, z=z)


def _lidar_records(world: World, scan: LidarScan, factory: RosbagsFactory) -> list[_Record]:
    """The sweep as /lidar/points and its ground truth as /lidar/labels, both stamped at the scan start."""
    stamp = scan.start_ns
    points = xyz_to_cloud(scan.points, stamp_ns=stamp, frame_id=LIDAR, is_dense=False, factory=factory,
                          intensity=scan.intensity, t=scan.time_offset_ns, ring=scan.ring)
    truth = xyz_to_cloud(scan.points, stamp_ns=stamp, frame_id=LIDAR, is_dense=False, factory=factory,
                         label=scan.labels, instance=scan.instance)
    return [_Record(stamp, "/lidar/points", points), _Record(stamp, "/lidar/labels", truth)]


def _event_records(world: World, frame: Frame, first_seq: int, factory: RosbagsFactory) -> list[_Record]:
    """The frame's events as evt3 packets of EVENT_PACKET_NS each (empty ones skipped), stamped at their first
    event as metavision_driver stamps them."""
    width, height = world.models.event.image_size
    t = frame.events["t"]
    begin = world.stamp_of(world.time_of(frame.index - 1))
    packets = (frame.stamp_ns - begin + EVENT_PACKET_NS - 1) // EVENT_PACKET_NS
    # Packet i holds the events in (begin + i * EVENT_PACKET_NS, begin + (i + 1) * EVENT_PACKET_NS].
    edges = begin + EVENT_PACKET_NS * np.arange(1, packets)
    bounds = np.concatenate([[0], np.searchsorted(t, edges, side="right"), [len(t)]])
    records = []
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        if hi > lo:
            packet = events_to_packet(frame.events[lo:hi], width, height, frame_id=EVENT,
                                      seq=first_seq + len(records), factory=factory)
            records.append(_Record(int(t[lo]), "/events", packet))
    return records
