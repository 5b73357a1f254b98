"""Replaying bags through the pipeline: synchronise, segment, label and fuse, record an output bag,
and score against ground truth.

Every frame is processed, and its results are fused, scored and recorded in frame order
(deterministic; frames may be segmented several at once), unless `realtime`, which plays the bag at
its own rate into the live scheduler, as a node would see it, and counts the frames it drops.
"""
from __future__ import annotations

import logging
import os
import re
import time
from collections import deque
from dataclasses import dataclass, replace
from pathlib import Path
from collections.abc import Iterator
from typing import Any

import numpy as np

from seg_perception.evaluation import SCENARIO, EvaluationError, EvaluationReport
from seg_perception.io import (BagError, BagMessage, BagReader, BagWriter, CameraModel, ConversionError,
                               RosbagsFactory, TransformBuffer, TransformError, array_to_compressed,
                               camera_info_from_model, camera_model_from_yaml, make_header,
                               matrix_to_transform_stamped, stamp_to_ns)
from seg_perception.io.labels import label_set_to_msg
from seg_perception.label_maps import LabelMap, LabelMapError, load_label_map
from seg_perception.labels import LabelSet
from seg_perception.mapping import SemanticVoxelMap, VoxelArrays, voxels_to_cloud, voxels_to_msg
from seg_perception.mapping.evaluate import VoxelTruth

from .config import ConfigError, PipelineConfig
from .label_folder import LabelFolder
from .decode import MessageDecoder
from . import worst_frames
from .outputs import image_messages, info_message, navigation_messages
from .perception import FrameResult, Perception, transforms_needed_until
from .schedulers import LiveScheduler, ReplayScheduler
from .stages import SerialWorker, prefetch
from .sync import FrameBundle, Synchronizer

log = logging.getLogger(__name__)
OUTPUT_NAMESPACE = "/seg_perception"
PARTNERS = ("thermal", "lidar", "labels", "lidar_labels")  # synchronised to the RGB frames, each with its own slop
BAG_FAILED = "bag not replayed"  # the report's skipped reason for a bag that failed as a whole
MAP_EVERY_FRAMES = 10  # the voxel map is recorded every this many frames and at the end
READ_AHEAD_MESSAGES = 32  # decoded messages the reader thread may hold ahead of inference
WRITE_AHEAD_FRAMES = 4  # results the writer thread may hold behind inference
# Words in a bag's name that make it a scenario group of the report (beside its own bag group).
SCENARIO_WORDS = ("day", "dawn", "dusk", "night", "fog", "rain", "snow")


@dataclass
class ReplayOptions:
    """realtime: play at the bag's rate into the live scheduler; record: write the output bag;
    progress: show a progress bar; segment_workers: frames segmented at once on a CPU backend (0:
    `segment_workers(config)`; GPU backends segment one frame at a time)."""

    realtime: bool = False
    record: bool = True
    progress: bool = False
    segment_workers: int = 0


def replay_bag(bag: str | Path, config: PipelineConfig, out_dir: str | Path, options: ReplayOptions | None = None,
               *, segmenter: Any = None, name: str | None = None) -> EvaluationReport:
    """Replay one bag; the output bag goes to `out_dir/<name>` and worst-frame overlays next to it.

    Args:
        segmenter: an engines.Segmenter to reuse (default: one built from `config`).
        name: the bag's name in the outputs and the report (default: its file or folder name without
            the storage suffix; `replay` makes names of several bags unique).

    Raises:
        BagError: the bag is unreadable or lacks the RGB topic (optional topics that are absent are
            skipped and reported).
    """
    started = time.monotonic()
    options = options or ReplayOptions()
    bag, out_dir = Path(bag), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    segmenter = segmenter or _segmenter(config)
    label_set = segmenter.label_set
    report = EvaluationReport(label_set)
    with BagReader(bag) as reader:  # opened once: topics, the event sensor's size, then the messages
        # Only what this run uses: a model without thermal input need not decode the thermal topic.
        unused = {m for m in ("thermal", "events") if m not in segmenter.modalities}
        if not config.mapping.enabled:
            unused |= {"lidar", "lidar_labels"}
        roles = {t: r for t, r in _present_roles(reader, config, report).items() if r not in unused}
        if "lidar" not in roles.values():  # transforms only place LiDAR sweeps; /tf is the bag's busiest topic
            roles = {t: r for t, r in roles.items() if r not in ("tf", "tf_static")}
        semantic_map = None
        if config.mapping.enabled and "lidar" in roles.values():
            semantic_map = SemanticVoxelMap(label_set.num_classes, config.mapping.voxel_size,
                                            radius=config.mapping.radius, max_voxels=config.mapping.max_voxels,
                                            dynamic_classes=label_set.dynamic_ids(),
                                            dynamic_decay_s=config.mapping.dynamic_decay_s)
        transforms = TransformBuffer(cache_duration_ns=60_000_000_000)
        for static in config.static_transforms:  # the bag's /tf_static, if any, adds to these
            transforms.set_transform(static.matrix(), static.parent, static.child, static=True)
        perception = Perception(segmenter, transforms, semantic_map=semantic_map, map_frame=config.mapping.map_frame)
        if config.camera_info_file:  # until the bag's camera_info, if any, replaces it
            perception.camera = camera_model_from_yaml(config.camera_info_file, config.camera_frame)
        run = _Run(reader, out_dir, config, options, perception, report, name or output_names([bag])[str(bag)])
        if options.record:
            run.open_writer()
        try:
            run.play(roles)
        finally:
            run.close()
    report.wall_s = time.monotonic() - started
    return report


def scenario_tags(bag: str | Path) -> list[str]:
    """The scenarios a bag belongs to: the `SCENARIO_WORDS` in its name (e.g. "drive_night_03" → night) and
    the comma-separated tags of the `scenario` key of a rosbag2 bag's metadata.yaml `custom_data`."""
    bag = Path(bag)
    tags = [word for word in re.split(r"[^a-z0-9]+", bag.name.lower()) if word in SCENARIO_WORDS]
    metadata = bag / "metadata.yaml"
    if metadata.is_file():
        import yaml

        try:
            info = yaml.safe_load(metadata.read_text(encoding="utf-8"))["rosbag2_bagfile_information"]
            custom = info.get("custom_data") or {}
        except (yaml.YAMLError, KeyError, TypeError, AttributeError, UnicodeDecodeError):
            custom = {}  # an unreadable metadata.yaml is the reader's to report, not the scenarios'
        tags += [tag.strip() for tag in str(custom.get("scenario", "")).split(",") if tag.strip()]
    return list(dict.fromkeys(tags))


def _segmenter(config: PipelineConfig) -> Any:
    from seg_perception.engines import Segmenter

    return Segmenter(config.model, backend=config.backend, device=config.device, precision=config.precision,
                     threads=inference_threads(config), card=config.card, class_map=config.class_map)


def inference_threads(config: PipelineConfig) -> int:
    """CPU threads for each inference: `config.threads`, or one (replay segments frames in parallel instead,
    `segment_workers`: a small student gains ~15 % from a second thread, and ~2x from a second frame)."""
    return config.threads or 1


def segment_workers(config: PipelineConfig, processes: int = 1) -> int:
    """Frames replay segments at once on a CPU backend: this process's share of the cores over the threads
    each inference takes (at least one)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores // processes // inference_threads(config))


RGB_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")


def _rgb_topic(topics: dict[str, str], configured: str, taken: set[str]) -> str | None:
    """The camera topic when the configured one is absent: its compressed transport (`<topic>/compressed`,
    image_transport's name), else the only image topic no other role takes; None when it is ambiguous."""
    if topics.get(configured + "/compressed") == "sensor_msgs/msg/CompressedImage":
        return configured + "/compressed"
    images = [t for t, kind in topics.items() if kind in RGB_TYPES and t not in taken]
    return images[0] if len(images) == 1 else None


def _present_roles(reader: BagReader, config: PipelineConfig, report: EvaluationReport) -> dict[str, str]:
    """topic → role for the configured topics the bag has; a missing RGB topic is an error, others are skipped."""
    present, bag = set(reader.topics), reader.paths[0]
    roles = {topic: role for role, topic in config.topics.items() if topic}
    if config.topics["rgb"] not in present:
        found = _rgb_topic(reader.topics, config.topics["rgb"], set(roles) - {config.topics["rgb"]})
        if found is None:
            images = sorted(t for t, kind in reader.topics.items() if kind in RGB_TYPES)
            raise BagError(f"{bag} has no RGB topic {config.topics['rgb']!r}, and which image topic is the camera's "
                           f"is ambiguous: {images or 'none'} (set topics.rgb or --topic rgb=...)")
        log.info("%s: no %s; the camera is %s", bag.name, config.topics["rgb"], found)
        del roles[config.topics["rgb"]]
        roles[found] = "rgb"
    for topic, role in list(roles.items()):
        if topic not in present:
            log.warning("%s: no %s topic %s; replaying without it", bag.name, role, topic)
            report.count_skipped(f"topic absent: {topic}", 0)
            del roles[topic]
    return roles


class _Run:
    """The state of one bag's replay.

    Threads share the work, so that reading and writing overlap inference: a reader thread reads and
    decodes messages (`prefetch`), the caller's thread synchronises them and runs the scheduler (on a
    CPU backend, `segment_workers` threads segment frames at once; fusion into the map stays in
    order on the caller's thread), and a writer thread (`SerialWorker`) scores the results and
    writes the output bag. Every stage hands results on in frame order, so the replay stays
    deterministic; the report is only touched by the writer thread.
    """

    def __init__(self, reader: BagReader, out_dir: Path, config: PipelineConfig, options: ReplayOptions,
                 perception: Perception, report: EvaluationReport, name: str) -> None:
        self.reader, self.bag, self.name = reader, reader.paths[0], name
        self.out_dir, self.config, self.options = out_dir, config, options
        self.perception, self.report = perception, report
        self.segmenter = perception.segmenter
        slop = {role: int(config.slop_ms.get(role, 50.0) * 1e6) for role in PARTNERS}
        self.partners = {role: slop[role] for role in PARTNERS if config.topics.get(role)}
        self.sync: Synchronizer | None = None
        self.camera = perception.camera  # the latest camera_info read; each frame keeps the one in force at it
        self.writer: BagWriter | None = None
        self.sink = SerialWorker(WRITE_AHEAD_FRAMES)
        self.frames = 0
        self.last_stamp = 0
        self.costmaps_without_pose = 0
        # frame index → (image, truth, prediction) of a worst-frame candidate, kept while it is among the worst
        self.panels: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self.groups = [self.name, *(SCENARIO + tag for tag in scenario_tags(self.bag))]
        semantic_map = perception.semantic_map
        self.label_folder = (LabelFolder(config.labels_dir, int(config.slop_ms.get("labels", 5.0) * 1e6))
                             if config.labels_dir else None)
        self.voxel_truth = (VoxelTruth(semantic_map.num_classes, semantic_map.voxel_size)
                            if semantic_map is not None and "lidar_labels" in self.partners else None)
        self.gt_map = _gt_map(config.gt_map, self.segmenter.label_set)

    def open_writer(self) -> None:
        path = self.out_dir / self.name
        if path.exists():
            import shutil

            shutil.rmtree(path)
        self.writer = BagWriter(path, "mcap", compress=True).__enter__()  # zstd chunks, with CRCs

    def play(self, roles: dict[str, str]) -> None:
        by_role = {role: topic for topic, role in roles.items()}
        sensor = _event_sensor(self.reader, by_role["events"]) if "events" in by_role else None
        self.sync = Synchronizer({r: s for r, s in self.partners.items() if r in by_role},
                                 events_window_ns=int(self.config.events_window_ms * 1e6), event_sensor=sensor,
                                 wait_ns=int(self.config.wait_ms * 1e6))
        if self.options.realtime:
            scheduler = LiveScheduler(lambda frame: self._fuse(frame, self._segment(frame)), on_result=self._record,
                                      on_error=self._failed)
        else:
            # GPU engines keep one execution context and fixed device buffers: one frame at a time there.
            workers = self.options.segment_workers or segment_workers(self.config)
            if self.segmenter.device != "cpu":
                workers = 1
            scheduler = ReplayScheduler(self._segment, then=self._fuse, workers=workers, on_result=self._record,
                                        on_error=self._failed)
        messages = prefetch(_decoded(self.reader.messages(list(roles)), roles), READ_AHEAD_MESSAGES)
        if self.options.progress:
            from tqdm import tqdm

            messages = tqdm(messages, desc=self.name, unit="msg", leave=False)
        started, first_log, newest = time.monotonic_ns(), None, 0
        # A bundle waits until /tf covers its whole LiDAR sweep (which ends after the image stamp), so
        # that deskewing interpolates instead of failing to extrapolate.
        waiting: deque[FrameBundle] = deque()
        newest_tf = -1 if "tf" in by_role else 1 << 62
        try:
            for message, role, payload, stamp in messages:
                if self.options.realtime:  # play at the recording's rate, as a node would receive it
                    first_log = message.log_time_ns if first_log is None else first_log
                    delay = (message.log_time_ns - first_log) - (time.monotonic_ns() - started)
                    if delay > 0:
                        time.sleep(delay / 1e9)
                if isinstance(payload, ConversionError):
                    self.sink.submit(self.report.count_skipped, f"{role} on {message.topic}: {_reason(payload)}")
                    continue
                newest = max(newest, stamp)
                if role == "rgb":
                    self.sync.add_rgb(stamp, payload)
                elif role in self.partners:
                    self.sync.add(role, stamp, payload)
                elif role == "events":
                    self.sync.add_events(payload)
                elif role == "camera_info":
                    self.camera = payload
                else:
                    try:  # a bad transform is skipped (those before it in the message are kept)
                        self.perception.transforms.add_tf_message(payload, static=role == "tf_static")
                    except ConversionError as exc:
                        self.sink.submit(self.report.count_skipped, f"{role} on {message.topic}: {_reason(exc)}")
                    if self.writer is not None:  # the outputs' frames, placed for players and 3-D panels
                        self.sink.submit(self._write_tf, role, payload, message.log_time_ns)
                    if role == "tf":
                        newest_tf = max([newest_tf, *(stamp_to_ns(t.header.stamp) for t in payload.transforms)])
                waiting.extend(self.sync.ready(newest))
                while waiting and transforms_needed_until(waiting[0].lidar, waiting[0].stamp_ns) <= newest_tf:
                    scheduler.submit(_Frame(waiting.popleft(), self.camera, time.monotonic_ns()))
        except BagError as exc:  # e.g. a corrupt chunk mid-bag: what was read is still replayed and kept
            log.error("%s: reading stopped: %s", self.name, exc)
            self.sink.submit(self.report.count_skipped, f"bag reading stopped: {_reason(exc)}")
        for damage in self.reader.damaged:  # skipped chunks and messages: read past, counted, named in the log
            log.warning("%s: skipped: %s", self.name, damage)
            what = "damaged chunk" if "chunk at byte" in damage else "message that does not deserialise"
            self.sink.submit(self.report.count_skipped, f"{what} skipped")
        waiting.extend(self.sync.flush())
        while waiting:
            scheduler.submit(_Frame(waiting.popleft(), self.camera, time.monotonic_ns()))
        scheduler.close(timeout=60.0)
        self.sink.submit(self.report.count_dropped, scheduler.stats["dropped"])

    def _segment(self, frame: _Frame) -> FrameResult:
        return self.perception.segment(frame.bundle)

    def _fuse(self, frame: _Frame, result: FrameResult) -> FrameResult:
        return self.perception.fuse(frame.bundle, result, frame.camera)

    def _failed(self, frame: _Frame, exc: Exception) -> None:
        """A frame whose processing raised (bad input, engine failure): counted and skipped."""
        self.sink.submit(self.report.count_skipped, f"frame failed: {_reason(exc)}")

    def _record(self, frame: _Frame, result: FrameResult) -> None:
        """On the scheduler's thread, in frame order: number the frame and snapshot the voxel map, then
        hand it to the writer thread."""
        index = self.frames
        self.frames += 1
        semantic_map = self.perception.semantic_map
        latency_ms = (time.monotonic_ns() - frame.received_ns) / 1e6
        voxels, navigation = None, {}
        if semantic_map is not None and index % MAP_EVERY_FRAMES == 0:  # here: fusion is not running meanwhile
            voxels = semantic_map.voxels()
            if self.writer is not None:
                navigation = self._navigation(frame.bundle.stamp_ns)
        self.sink.submit(self._finish, frame.bundle, result, index, frame.camera, latency_ms, voxels, navigation)

    def _navigation(self, stamp_ns: int) -> dict[str, Any]:
        """The costmap and markers around the robot at `stamp_ns`; none when its pose is not known."""
        mapping = self.config.mapping
        try:
            robot = self.perception.transforms.lookup(mapping.map_frame, mapping.base_frame, stamp_ns)[:3, 3]
        except TransformError:
            self.costmaps_without_pose += 1  # counted into the report at close
            return {}
        return navigation_messages(self.perception.semantic_map, self.segmenter.label_set, mapping, robot,
                                   stamp_ns=stamp_ns)

    def _finish(self, bundle: FrameBundle, result: FrameResult, index: int, camera: CameraModel | None,
                latency_ms: float, voxels: VoxelArrays | None, navigation: dict[str, Any]) -> None:
        """On the writer thread: count, score and record one frame."""
        self.report.count_frame(result.timing)
        for note in result.notes:
            self.report.count_skipped(note.split(":")[0])
        segmentation = result.segmentation
        color = self.segmenter.label_set.colorize(segmentation.labels)
        truth = bundle.extras.get("labels")
        if truth is None and self.label_folder is not None:
            try:
                truth = self.label_folder.at(bundle.stamp_ns)
            except ConfigError as exc:
                self.report.count_skipped(f"label image: {_reason(exc)}")
        if truth is not None and self.gt_map is not None:
            truth = self.gt_map.apply(truth).astype(segmentation.labels.dtype)
        record = None
        if truth is not None:
            try:
                record = self.report.score_frame(segmentation.labels, truth, groups=self.groups, bag=self.name,
                                                 stamp_ns=bundle.stamp_ns, index=index)
            except EvaluationError as exc:  # ground truth of another size or id space: this frame is not scored
                self.report.count_skipped(f"ground truth not scored: {_reason(exc)}")
            if record is not None:  # kept in memory while among the worst; those still there are written
                worst = {r.index for r in self.report.worst_frames if r.bag == self.name}
                self.panels = {i: panels for i, panels in self.panels.items() if i in worst}
                self.panels[index] = (bundle.rgb, truth, segmentation.labels)
                worst_frames.name_files(record, f"overlays/{self.name}-{index:05d}")
        self._score_points(result, bundle.extras.get("lidar_labels"))
        if self.writer is not None:
            self._write(bundle, result, color, camera, latency_ms, voxels)
            for name, msg in navigation.items():
                self.writer.write(f"{OUTPUT_NAMESPACE}/{name}", msg, bundle.stamp_ns)

    def _score_points(self, result: FrameResult, truth: np.ndarray | None) -> None:
        """Single-scan LiDAR point accuracy, and the points' true classes for scoring the final map."""
        labelled, points = result.point_labels, result.points_in_map
        if truth is None or labelled is None or self.voxel_truth is None:
            return
        if truth.shape[0] != points.shape[0]:
            self.report.count_skipped("lidar labels: point count differs from the sweep's")
            return
        mask = labelled.labelled
        self.report.add_voxel_counts("lidar_point_accuracy", int((labelled.labels[mask] == truth[mask]).sum()),
                                     int(mask.sum()))
        self.voxel_truth.add(points[mask], truth[mask])  # the points that carried labels into the map

    def _write(self, bundle: FrameBundle, result: FrameResult, color: np.ndarray, camera: CameraModel | None,
               latency_ms: float, voxels: VoxelArrays | None) -> None:
        stamp = bundle.stamp_ns
        frame_id = camera.frame_id if camera is not None else ""
        if not self.last_stamp:  # the bag starts at its first frame, not at time 0
            self.writer.write(f"{OUTPUT_NAMESPACE}/label_set", label_set_to_msg(self.segmenter.label_set), stamp,
                              latched=True)
            if self.config.static_transforms:
                self.writer.write("/tf_static", static_transforms_message(self.config.static_transforms, stamp),
                                  stamp, latched=True)
        header = make_header(RosbagsFactory(), stamp, frame_id)
        self.writer.write(f"{OUTPUT_NAMESPACE}/image/compressed",
                          array_to_compressed(bundle.rgb, "jpeg", header=header, quality=90), stamp)
        if camera is not None:  # every image output shares it: players pair images with it by namespace
            self.writer.write(f"{OUTPUT_NAMESPACE}/camera_info", camera_info_from_model(camera, header=header), stamp)
        for name, msg in image_messages(bundle.rgb, result.segmentation, color, stamp_ns=stamp,
                                        frame_id=frame_id).items():
            self.writer.write(f"{OUTPUT_NAMESPACE}/{name}", msg, stamp)
        given = tuple(m for m in ("rgb", "thermal", "events") if getattr(bundle, m) is not None)
        height, width = bundle.rgb.shape[:2]
        self.writer.write(f"{OUTPUT_NAMESPACE}/info", info_message(
            self.segmenter, result.segmentation, result.timing, stamp_ns=stamp, frame_id=frame_id, given=given,
            input_size=(width, height), latency_ms=latency_ms), stamp)
        if voxels is not None:
            self._write_map(voxels, stamp)
        self.last_stamp = stamp

    def _write_tf(self, role: str, msg: Any, log_time_ns: int) -> None:
        self.writer.write(f"/{role}", msg, log_time_ns, latched=role == "tf_static")

    def _write_map(self, voxels: VoxelArrays, stamp: int) -> None:
        config = self.config.mapping
        self.writer.write(f"{OUTPUT_NAMESPACE}/voxel_map", voxels_to_msg(
            voxels, label_set_name=self.segmenter.label_set.name, stamp_ns=stamp, frame_id=config.map_frame,
            radius=config.radius, max_voxels=config.max_voxels), stamp)
        self.writer.write(f"{OUTPUT_NAMESPACE}/voxel_cloud", voxels_to_cloud(
            voxels, self.segmenter.label_set, stamp_ns=stamp, frame_id=config.map_frame), stamp)

    def close(self) -> None:
        """Drain the writer thread, then write the final map, the worst frames' overlays and close the bag."""
        try:
            self.sink.close()
        finally:
            for record in self.report.worst_frames:
                if record.bag == self.name and record.index in self.panels:
                    worst_frames.write_files(self.out_dir, record, self.segmenter.label_set,
                                             *self.panels[record.index])
            voxels = self.perception.semantic_map.voxels() if self.perception.semantic_map is not None else None
            if self.voxel_truth is not None and len(self.voxel_truth):
                self.report.add_voxel_counts("voxel_accuracy", *self.voxel_truth.score(voxels))
            if self.writer is not None:
                if voxels is not None and self.frames:
                    self._write_map(voxels, self.last_stamp)
                    for name, msg in self._navigation(self.last_stamp).items():  # the final map's, too
                        self.writer.write(f"{OUTPUT_NAMESPACE}/{name}", msg, self.last_stamp)
                if self.costmaps_without_pose:
                    self.report.count_skipped(f"no {self.config.mapping.base_frame} pose for the costmap",
                                              self.costmaps_without_pose)
                self.writer.__exit__(None, None, None)


@dataclass(frozen=True)
class _Frame:
    """A bundle handed to the scheduler, with the camera_info in force when it was (frames are segmented
    out of order, so the camera is taken now, not when the frame is fused)."""

    bundle: FrameBundle
    camera: CameraModel | None
    received_ns: int  # monotonic clock when its bundle was complete: the start of its latency


def static_transforms_message(transforms: tuple[Any, ...], stamp_ns: int) -> Any:
    """The configured static transforms as one tf2_msgs/TFMessage (for an output bag's /tf_static)."""
    factory = RosbagsFactory()
    return factory.make("tf2_msgs/msg/TFMessage", transforms=[
        matrix_to_transform_stamped(t.matrix(), t.parent, t.child, stamp_ns, factory=factory) for t in transforms])


def _gt_map(name: str | None, published: LabelSet) -> LabelMap | None:
    """The map from the ground truth's ids to the published classes, for scoring.

    Raises:
        ConfigError: it cannot be loaded, or maps into another label set than the one published.
    """
    if name is None:
        return None
    try:
        gt_map = load_label_map(name)
    except LabelMapError as exc:
        raise ConfigError(f"gt_map: {exc}") from None
    if gt_map.label_set.classes != published.classes or gt_map.label_set.ignore_id != published.ignore_id:
        raise ConfigError(f"gt_map {gt_map.name!r} maps ground truth into label set {gt_map.label_set.name!r}, but the "
                          f"model publishes {published.name!r}; map into {published.name!r} (or set class_map)")
    return gt_map


def _decoded(messages: Iterator[BagMessage], roles: dict[str, str]) -> Iterator[tuple[BagMessage, str, Any, int]]:
    """(message, role, decoded payload or the ConversionError that refused it, header stamp)."""
    decoder = MessageDecoder()
    for message in messages:
        role = roles[message.topic]
        try:
            payload = decoder.decode(role, message.msg, message.topic)
        except ConversionError as exc:
            payload = exc
        stamp = stamp_to_ns(message.msg.header.stamp) if hasattr(message.msg, "header") else message.log_time_ns
        yield message, role, payload, stamp


def _event_sensor(reader: BagReader, topic: str) -> tuple[int, int] | None:
    """(width, height) of the event camera, from the first message on its topic (None: no message)."""
    first = next(reader.messages([topic]), None)
    return None if first is None else (int(first.msg.width), int(first.msg.height))


def _reason(exc: BaseException) -> str:
    """A short, countable reason: the message's first clause."""
    return str(exc).split(";")[0][:120]


def replay(bags: list[str | Path], config: PipelineConfig, out_dir: str | Path, options: ReplayOptions | None = None,
           *, workers: int = 1) -> EvaluationReport:
    """Replay several bags (in `workers` processes) and merge their reports exactly; writes the merged
    report (report.json, report.md, plots) to `out_dir`.

    A bag that cannot be replayed is reported (logged and counted as skipped) and the others go on.
    """
    started = time.monotonic()
    out_dir = Path(out_dir)
    options = options or ReplayOptions()
    names = output_names(bags)
    reports: list[EvaluationReport] = []
    failures: dict[str, str] = {}
    if workers > 1 and len(bags) > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        processes = min(workers, len(bags))
        options = replace(options, segment_workers=segment_workers(config, processes))
        with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {str(bag): pool.submit(replay_to_dict, bag, config, out_dir, options, names[str(bag)])
                       for bag in bags}
            for bag, future in futures.items():
                try:
                    reports.append(EvaluationReport.from_dict(future.result()))
                except (BagError, ValueError, RuntimeError) as exc:
                    failures[bag] = str(exc)
    else:
        segmenter = _segmenter(config)
        for bag in bags:
            try:
                reports.append(replay_bag(bag, config, out_dir, options, segmenter=segmenter, name=names[str(bag)]))
            except (BagError, ValueError, RuntimeError) as exc:
                failures[str(bag)] = str(exc)
    return merge_bag_reports(reports, failures, out_dir, time.monotonic() - started)


def merge_bag_reports(reports: list[EvaluationReport], failures: dict[str, str], out_dir: str | Path,
                      wall_s: float) -> EvaluationReport:
    """Merge the reports of the bags that were replayed (exactly, in the given order), count each bag of
    `failures` (bag → error) as skipped, set the run's end-to-end `wall_s` and write the merged report to
    `out_dir`.

    Raises:
        BagError: no report, every bag failed.
    """
    if not reports:
        raise BagError("no bag could be replayed: " + "; ".join(f"{b}: {e}" for b, e in failures.items()))
    merged = EvaluationReport.merge(reports)
    for bag, error in failures.items():
        log.error("%s was not replayed: %s", bag, error)
        merged.count_skipped(f"{BAG_FAILED}: {Path(bag).name}")
    merged.wall_s = wall_s
    merged.write(out_dir)
    return merged


def replay_to_dict(bag: str | Path, config: PipelineConfig, out_dir: Path, options: ReplayOptions,
                   name: str | None = None) -> dict[str, Any]:
    """A worker process's or cluster task's replay, as a plain dict (exact: integer matrices, raw latencies)."""
    return replay_bag(bag, config, out_dir, options, name=name).to_dict()


def output_names(bags: list[str | Path]) -> dict[str, str]:
    """bag → its name in the outputs: the file or folder name without the storage suffix, with as many
    parent folders prepended (joined by "_") as it takes to tell bags of the same name apart."""
    paths = [Path(b).resolve() for b in bags]
    depth = 1
    while True:
        names = ["_".join(p.parts[-depth:]).removesuffix(".mcap").removesuffix(".bag").removesuffix(".db3")
                 for p in paths]
        if len(set(names)) == len(names) or depth >= max(len(p.parts) for p in paths):
            return {str(b): n.lstrip("/_") for b, n in zip(bags, names)}
        depth += 1
