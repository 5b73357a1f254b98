"""Node-side glue shared by segmentation_node and perception_node. No rclpy here: it works on whatever
messages and publishers it is handed, so it is exercised without a ROS graph too.

- `FrameIntake`: messages in → decoded (a bad message is counted by reason and skipped) → synchronised
  on RGB → held, if asked, until a bundle is ready (the transforms its sweep needs) → submitted to
  the live scheduler, where the newest frame wins.
- `ResultPublisher`: a frame's semantic images and ~/info, published only while enabled and subscribed.
"""
from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from seg_perception.io import CameraModel, ConversionError, stamp_to_ns
from seg_perception.pipeline import FrameBundle, FrameResult, MessageDecoder, Synchronizer
from seg_perception.pipeline.outputs import image_messages, info_message

SYNCHRONISED = ("rgb", "thermal", "events", "lidar")
IMAGE_OUTPUTS = ("labels", "color", "overlay", "confidence")
MAX_REASONS = 32  # distinct bad-message reasons kept; further ones are counted as "<role>: other"


def short_reason(exc: BaseException) -> str:
    """A short, countable reason: the first clause of the message."""
    return str(exc).split(";")[0][:120]


@dataclass(frozen=True)
class Frame:
    """The RGB payload the synchroniser carries: the image, and what the outputs copy from its message."""

    rgb: np.ndarray
    frame_id: str
    received_ns: int  # monotonic clock, for the output latency


class FrameIntake:
    """Decodes, counts and synchronises the sensor messages of one activation and submits frame bundles.

    The synchroniser's wait deadline runs on stream time: the newest stamp received, advanced by the
    monotonic time since it arrived. So a frame whose partner never comes waits `wait_ns` of wall time
    whatever the stamps' epoch (live, sim time or a replayed bag), and `poll` emits it even when no
    further message arrives.

    Args:
        submit: takes each bundle (the scheduler's submit); `bundle.rgb` is a `Frame`.
        slops_ns: partner stream ("thermal", "lidar") → slop.
        events_window_ns: events accumulated before each frame; the event stream is set up by the first
            event message, which gives the sensor's size.
        wait_ns: how long a frame waits for partners that have not settled.
        ready: a bundle is held until ready(bundle) (e.g. the transforms its sweep needs have arrived)
            or `ready_timeout_ns` has passed, then submitted anyway; None: never held.
        max_waiting: the most bundles held; the oldest beyond it are dropped.
        clock: monotonic ns.
    """

    def __init__(self, submit: Callable[[FrameBundle], None], *, slops_ns: dict[str, int], events_window_ns: int,
                 wait_ns: int, ready: Callable[[FrameBundle], bool] | None = None, ready_timeout_ns: int = 0,
                 max_waiting: int = 1, clock: Callable[[], int] = time.monotonic_ns) -> None:
        self._submit = submit
        self._slops = dict(slops_ns)
        self._events_window_ns = events_window_ns
        self._wait_ns = wait_ns
        self._ready = ready
        self._ready_timeout_ns = ready_timeout_ns
        self._max_waiting = max_waiting
        self._clock = clock
        self.decoder = MessageDecoder()
        self.sync = Synchronizer(self._slops, wait_ns=wait_ns)
        self.event_sensor: tuple[int, int] | None = None
        self.camera: CameraModel | None = None
        self.received: Counter[str] = Counter()
        self.bad: Counter[str] = Counter()
        self.held = {"timed_out": 0, "dropped": 0}  # bundles submitted before ready / dropped while held
        self._waiting: deque[tuple[FrameBundle, int]] = deque()
        self._newest: tuple[int, int] | None = None  # (stamp, arrival) of the newest synchronised message

    def add(self, role: str, msg: Any, topic: str = "") -> Any:
        """Take one message of `role` (see MessageDecoder.ROLES).

        Returns:
            The decoded payload, or None when the message was bad (counted and skipped). camera_info
            is kept as `camera`; RGB frames of another size than it are bad.
        """
        self.received[role] += 1
        try:
            payload = self.decoder.decode(role, msg, topic)
            if role == "rgb":
                self._check_size(payload)
        except ConversionError as exc:
            self.count_bad(role, exc)
            return None
        if role == "camera_info":
            self.camera = payload
        elif role in SYNCHRONISED:
            self._synchronise(role, msg, payload)
            self.poll()
        return payload

    def count_bad(self, role: str, exc: BaseException) -> None:
        """Count a message that could not be used, by role and reason."""
        key = f"{role}: {short_reason(exc)}"
        if key not in self.bad and len(self.bad) >= MAX_REASONS:
            key = f"{role}: other"
        self.bad[key] += 1

    def poll(self) -> None:
        """Emit the bundles whose partners have settled or whose wait ran out, and submit the held ones
        that are ready or waited long enough; call it now and then when no message comes."""
        if self._newest is not None:
            stamp, arrival = self._newest
            emitted = self.sync.ready(stamp + self._clock() - arrival)
            now = self._clock()
            self._waiting.extend((bundle, now) for bundle in emitted)
        while self._waiting:
            bundle, since = self._waiting[0]
            if self._ready is not None and not self._ready(bundle):
                if self._clock() - since < self._ready_timeout_ns:
                    break
                self.held["timed_out"] += 1
            self._waiting.popleft()
            self._submit(bundle)
        while len(self._waiting) > self._max_waiting:
            self._waiting.popleft()
            self.held["dropped"] += 1

    def _check_size(self, rgb: np.ndarray) -> None:
        camera = self.camera
        if camera is not None and (rgb.shape[1], rgb.shape[0]) != tuple(camera.image_size):
            raise ConversionError(f"image size {rgb.shape[1]}x{rgb.shape[0]} differs from camera_info's "
                                  f"{camera.image_size[0]}x{camera.image_size[1]}; check the topics' remappings")

    def _synchronise(self, role: str, msg: Any, payload: Any) -> None:
        if role == "events":
            if not payload.size:
                return
            sensor = (int(msg.width), int(msg.height))
            if sensor != self.event_sensor:  # the first packet (or a new sensor size) sets up the stream
                self.event_sensor = sensor
                self.sync = Synchronizer(self._slops, events_window_ns=self._events_window_ns, event_sensor=sensor,
                                         wait_ns=self._wait_ns)
            self.sync.add_events(payload)
            stamp = int(payload["t"].max())
        else:
            stamp = stamp_to_ns(msg.header.stamp)
            if role == "rgb":
                self.sync.add_rgb(stamp, Frame(payload, str(msg.header.frame_id), self._clock()))
            else:
                self.sync.add(role, stamp, payload)
        if self._newest is None or stamp > self._newest[0]:
            self._newest = (stamp, self._clock())


class ResultPublisher:
    """Publishes a frame's outputs, each only while it is enabled and someone subscribes.

    Args:
        publishers: output name (IMAGE_OUTPUTS and "info") → publisher (`publish`, `get_subscription_count`).
        factory: the message factory of the publishers' message world (RclpyFactory on a node).
        clock: monotonic ns, as `Frame.received_ns`.
    """

    def __init__(self, publishers: dict[str, Any], factory: Any, clock: Callable[[], int] = time.monotonic_ns) -> None:
        self.publishers = publishers
        self.factory = factory
        self._clock = clock

    def publish(self, frame: Frame, bundle: FrameBundle, result: FrameResult, segmenter: Any, *,
                outputs: list[str], frames_dropped: int) -> list[str]:
        """Publish the wanted outputs with the RGB frame's stamp and frame id; returns their names.

        Nothing is built for an output nobody wants; the four images are built together
        (`pipeline.outputs.image_messages`) when any of them is wanted, ~/info on its own.
        """
        wanted = [name for name in outputs if self.publishers[name].get_subscription_count() > 0]
        segmentation, stamp = result.segmentation, bundle.stamp_ns
        images = [name for name in wanted if name in IMAGE_OUTPUTS]
        if images:
            color = segmenter.label_set.colorize(segmentation.labels)
            messages = image_messages(frame.rgb, segmentation, color, stamp_ns=stamp, frame_id=frame.frame_id,
                                      factory=self.factory)
            images = [name for name in images if name in messages]  # no confidence from class-id models
            for name in images:
                self.publishers[name].publish(messages[name])
        if "info" in wanted:
            height, width = frame.rgb.shape[:2]
            given = tuple(m for m in ("rgb", "thermal", "events") if getattr(bundle, m) is not None)
            self.publishers["info"].publish(info_message(
                segmenter, segmentation, result.timing, stamp_ns=stamp, frame_id=frame.frame_id, given=given,
                input_size=(width, height), latency_ms=(self._clock() - frame.received_ns) / 1e6,
                frames_dropped=frames_dropped, factory=self.factory))
        return wanted
