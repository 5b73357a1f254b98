"""TF for the nodes: a transform intake that lookups go through, and a queue of items waiting for late TF.

`TransformIntake` answers `lookup(target, source, stamp_ns)` (the signature of io.TransformBuffer's, so
it can be handed to pipeline.Perception as its `transforms`). Where tf2_ros is installed it wraps a
tf2_ros Buffer fed by a TransformListener. Otherwise it keeps an io.TransformBuffer, fed from /tf and
/tf_static when tf2_msgs is installed. Either way it also takes fixed extrinsics from the
`static_transforms` parameter ('parent child x y z qx qy qz qw') and poses from a nav_msgs/Odometry
topic (header.frame_id → child_frame_id), for robots or installations without a TF broadcaster.

`TransformWaiter` holds items whose transforms have not arrived (LiDAR sweeps outrun odometry) and
retries them when transforms arrive and on a timer, dropping each after its timeout; nothing sleeps,
so the executor never blocks.

Public names: parse_static_transform, TransformIntake, TransformWaiter.
"""
from __future__ import annotations

import importlib
import math
import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

import numpy as np
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from seg_perception.io import (
    ConversionError,
    TransformBuffer,
    TransformError,
    matrix_to_transform_stamped,
    stamp_to_ns,
    transform_to_matrix,
)
from seg_perception.pipeline.config import ConfigError, StaticTransform

from .messages import RclpyFactory

T = TypeVar("T")
_AUTHORITY = "seg_perception"
# tf2's own listener QoS: keep 100; /tf_static transient local, so a late joiner gets the extrinsics.
_TF_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100, reliability=ReliabilityPolicy.RELIABLE)
_TF_STATIC_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100, reliability=ReliabilityPolicy.RELIABLE,
                            durability=DurabilityPolicy.TRANSIENT_LOCAL)


def parse_static_transform(text: str) -> StaticTransform:
    """'parent child x y z qx qy qz qw' (metres, unit quaternion in ROS order) → StaticTransform (T_parent_child).

    Raises:
        ConfigError: not nine fields, a field that is not a finite number, or a quaternion that is not unit length.
    """
    fields = str(text).split()
    accepted = "'parent child x y z qx qy qz qw' (translation in metres, unit quaternion x y z w)"
    if len(fields) != 9:
        raise ConfigError(f"static transform {text!r} has {len(fields)} fields; accepted: {accepted}")
    try:
        values = [float(v) for v in fields[2:]]
    except ValueError:
        raise ConfigError(f"static transform {text!r} has a non-number; accepted: {accepted}") from None
    if not all(math.isfinite(v) for v in values):
        raise ConfigError(f"static transform {text!r} has a non-finite number; accepted: {accepted}")
    if not math.isclose(math.hypot(*values[3:]), 1.0, abs_tol=1e-3):
        raise ConfigError(f"static transform {text!r}: rotation {values[3:]} is not a unit quaternion")
    return StaticTransform(fields[0], fields[1], tuple(values[:3]), tuple(values[3:]))


class TransformIntake:
    """The transforms a node looks up, fed from every source available (see the module docstring).

    Args:
        node: subscriptions are made on it.
        static_transforms: 'parent child x y z qx qy qz qw' strings (the static_transforms parameter).
        odom_topic: a nav_msgs/Odometry topic taken as header.frame_id → child_frame_id ("": none).
        cache_s: history kept per moving edge.

    Attributes:
        backend: "tf2_ros", "tf_topics" (own /tf and /tf_static subscriptions) or "parameters" (static
            transforms and odometry only).
        stats: {"received": transform messages taken in, "bad": messages refused}.

    Raises:
        ConfigError: a static transform that does not parse (see `parse_static_transform`).
    """

    def __init__(self, node: Node, *, static_transforms: Sequence[str] = (), odom_topic: str = "",
                 cache_s: float = 10.0) -> None:
        statics = [parse_static_transform(text) for text in static_transforms]
        self._node = node
        self._lock = threading.Lock()  # lookups may come from a worker thread while the executor feeds
        self._listeners: list[Callable[[], None]] = []
        self._factory = RclpyFactory()
        self.stats = {"received": 0, "bad": 0}
        self._subscriptions: list[Any] = []
        tf2_ros = _optional("tf2_ros")
        if tf2_ros is not None:
            from rclpy.duration import Duration

            self._tf2 = tf2_ros
            self._buffer: Any = tf2_ros.Buffer(cache_time=Duration(seconds=cache_s), node=node)
            self._listener = tf2_ros.TransformListener(self._buffer, node)
            self.backend = "tf2_ros"
        else:
            self._tf2 = None
            self._buffer = TransformBuffer(cache_duration_ns=int(cache_s * 1e9))
            tf2_msgs = _optional("tf2_msgs.msg")
            if tf2_msgs is not None:
                self._subscriptions += [
                    node.create_subscription(tf2_msgs.TFMessage, "/tf", lambda m: self._on_tf(m, False), _TF_QOS),
                    node.create_subscription(tf2_msgs.TFMessage, "/tf_static", lambda m: self._on_tf(m, True),
                                             _TF_STATIC_QOS)]
            self.backend = "tf_topics" if tf2_msgs is not None else "parameters"
        for static in statics:
            self._set(static.matrix(), static.parent, static.child, 0, static=True)
        if odom_topic:
            from nav_msgs.msg import Odometry

            self._subscriptions.append(node.create_subscription(Odometry, odom_topic, self._on_odometry, _TF_QOS))

    def add_listener(self, callback: Callable[[], None]) -> None:
        """Call `callback` (on the executor) after each transform message taken in; with tf2_ros, whose
        listener feeds its buffer directly, only after static transforms and odometry."""
        self._listeners.append(callback)

    def lookup(self, target_frame: str, source_frame: str, stamp_ns: int = 0) -> np.ndarray:
        """T_target_source at `stamp_ns` (0: the latest), 4x4 float64.

        Raises:
            TransformError: the transform is not (yet) known at that stamp.
        """
        if self._tf2 is None:
            with self._lock:
                return self._buffer.lookup(target_frame, source_frame, stamp_ns)
        from rclpy.time import Time

        try:
            stamped = self._buffer.lookup_transform(target_frame, source_frame, Time(nanoseconds=int(stamp_ns)))
        except self._tf2.TransformException as exc:
            raise TransformError(f"lookup {target_frame!r} <- {source_frame!r} at t={stamp_ns}: {exc}") from None
        return transform_to_matrix(stamped)

    def _on_tf(self, msg: Any, static: bool) -> None:
        try:
            with self._lock:
                self._buffer.add_tf_message(msg, static=static)
        except ConversionError as exc:
            self._refused("/tf_static" if static else "/tf", exc)
        self._taken()

    def _on_odometry(self, msg: Any) -> None:
        try:
            T = transform_to_matrix(msg)
            self._set(T, msg.header.frame_id, msg.child_frame_id, stamp_to_ns(msg.header.stamp), static=False)
        except ConversionError as exc:
            self._refused("odometry", exc)
        self._taken()

    def _set(self, T: np.ndarray, parent: str, child: str, stamp_ns: int, *, static: bool) -> None:
        if self._tf2 is not None:
            stamped = matrix_to_transform_stamped(T, parent, child, stamp_ns, factory=self._factory)
            (self._buffer.set_transform_static if static else self._buffer.set_transform)(stamped, _AUTHORITY)
            return
        with self._lock:
            self._buffer.set_transform(T, parent, child, stamp_ns, static=static)

    def _refused(self, source: str, exc: Exception) -> None:
        self.stats["bad"] += 1
        self._node.get_logger().warning(f"{source} message skipped: {exc}", throttle_duration_sec=5.0)

    def _taken(self) -> None:
        self.stats["received"] += 1
        for callback in self._listeners:
            callback()


class TransformWaiter(Generic[T]):
    """Items waiting for late TF, oldest first; `attempt(item)` raises TransformError while the TF is missing.

    An item is attempted when submitted, then again after each transform the intake takes in and
    every `period_s` on a timer, until `attempt` returns (the item is done) or `timeout_s` has passed
    since its submission on the node's clock (sim time under use_sim_time), when `on_drop(item,
    reason)` is called. At most `capacity` items wait; the oldest is dropped to make room.

    Time during which the executor was blocked (a long fusion, a JIT compile: the timer came more than
    a period late) does not count towards the timeout: the transforms queued meanwhile have not been
    taken in yet.

    Args:
        attempt: does the work; raising TransformError means "not yet", any other exception propagates.
        on_drop: told about each item given up on, with the reason.
    """

    def __init__(self, node: Node, intake: TransformIntake, attempt: Callable[[T], None],
                 on_drop: Callable[[T, str], None], *, timeout_s: float, capacity: int, period_s: float = 0.02) -> None:
        self.timeout_s = float(timeout_s)
        self.capacity = int(capacity)
        self._node, self._attempt, self._on_drop = node, attempt, on_drop
        self._waiting: deque[list[Any]] = deque()  # [item, deadline (ns)]
        self._period_ns = int(period_s * 1e9)
        self._last_tick: int | None = None
        intake.add_listener(lambda: self.retry(expire=False))
        self._timer = node.create_timer(period_s, self._tick)

    def __len__(self) -> int:
        return len(self._waiting)

    def submit(self, item: T) -> None:
        """Attempt `item` now; hold it if its transforms are missing."""
        try:
            self._attempt(item)
            return
        except TransformError:
            pass
        self._waiting.append([item, self._now() + int(self.timeout_s * 1e9)])
        while len(self._waiting) > self.capacity:
            self._on_drop(self._waiting.popleft()[0], f"more than {self.capacity} waiting for transforms; "
                                                       "the oldest was dropped")

    def retry(self, expire: bool = True) -> None:
        """Attempt every waiting item once, in order; with `expire`, drop those past their deadline."""
        now = self._now()
        for _ in range(len(self._waiting)):
            entry = self._waiting.popleft()
            try:
                self._attempt(entry[0])
            except TransformError as exc:
                if expire and now >= entry[1]:
                    self._on_drop(entry[0], f"no transform within {self.timeout_s:g} s: {exc}")
                else:
                    self._waiting.append(entry)

    def _tick(self) -> None:
        now = self._now()
        blocked = now - self._last_tick - self._period_ns if self._last_tick is not None else 0
        if blocked > self._period_ns:
            for entry in self._waiting:
                entry[1] += blocked
        self._last_tick = now
        self.retry()

    def _now(self) -> int:
        return self._node.get_clock().now().nanoseconds


def _optional(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        return None
