"""segmentation_node: a lifecycle node that segments camera frames with the package's engines.

Lifecycle: configure builds the engine (a model that fails to load, or whose label set is not
`label_set`, fails the transition with the reason in the log; the node stays unconfigured) and the
publishers; activate subscribes and starts the inference worker; deactivate stops both; cleanup
releases the engine and its GPU memory. With `autostart` (default), `main` configures and activates.

Subscriptions (sensor-data QoS: `qos_reliability`, keep last `qos_depth`; relative names, remap freely):
    rgb_topic           sensor_msgs/Image, or sensor_msgs/CompressedImage with rgb_transport=compressed
    thermal_topic       sensor_msgs/Image mono16, when "thermal" is in `modalities` and the model takes it
    events_topic        event_camera_msgs/EventPacket, when "events" is in `modalities`, the model takes
                        it and event_camera_msgs is installed (else logged and skipped)
    camera_info_topic   sensor_msgs/CameraInfo; RGB frames of another size are refused as bad input
Publications (reliable; each built only while it is in `outputs` and someone subscribes; the header
is the RGB frame's):
    ~/labels      sensor_msgs/Image mono8 (mono16 above 255 classes): class ids
    ~/color       sensor_msgs/Image rgb8: class colours
    ~/overlay     sensor_msgs/Image rgb8: class colours over the camera image
    ~/confidence  sensor_msgs/Image 32FC1: probability of each pixel's class
    ~/info        seg_perception/SegmentationInfo: model, backend, K, timings, latency, drops
    /diagnostics  diagnostic_msgs/DiagnosticArray every `diagnostics_period_s` (and a log line at most
                  every LOG_PERIOD_S): frames received, processed, dropped, errors, bad messages by
                  reason, latency, backend
Parameters: `seg_perception.pipeline.parameters.SEGMENTATION`; `k` and `outputs` change live, the
others are read-only. A new `k` rebuilds the engine on a background thread; frames keep flowing
through the old engine until the new one has run a warm-up frame.

The frames are synchronised on RGB by the pipeline's Synchronizer (message_filters' approximate time
anchored on RGB, the same bundles replay makes) and handed to a LiveScheduler: the executor never
waits for inference, the newest frame wins and the dropped ones are counted.
"""
from __future__ import annotations

import gc
import threading
from collections import Counter
from dataclasses import replace
from typing import Any

import numpy as np
import rclpy
import torch
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.clock import Clock, ClockType
from rclpy.exceptions import InvalidParameterValueException
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from seg_perception.engines import Segmenter
from seg_perception.io import TransformBuffer
from seg_perception.models.config import quarter_size
from seg_perception.msg import SegmentationInfo
from seg_perception.pipeline import FrameBundle, LiveScheduler, Perception, PipelineConfig, SchedulerClosed
from seg_perception.pipeline.parameters import SEGMENTATION, Parameter as TableParameter, pipeline_config

from .common import declare, diagnostic_array, sensor_qos, validating_callback
from .messages import RclpyFactory, message_class
from .worker import IMAGE_OUTPUTS, Frame, FrameIntake, ResultPublisher, short_reason

OUTPUT_QOS_DEPTH = 5
POLL_PERIOD_S = 0.02  # how often frames whose partners never came are let go
LOG_PERIOD_S = 30.0
LATENCY_WINDOW = 100  # recent frames the latency percentiles cover
CLOSE_TIMEOUT_S = 10.0
EVENTS_TYPE = "event_camera_msgs/msg/EventPacket"


class SegmentationNode(LifecycleNode):
    """The segmentation pipeline behind ROS topics. Subclasses (perception_node) extend the hooks
    `_make_perception`, `_intake_options`, `_subscribe`, `_activate`, `_deactivate`, `_release`,
    `_after_frame` and `_status`."""

    table: tuple[TableParameter, ...] = SEGMENTATION
    status_name = "segmentation"

    def __init__(self, node_name: str = "segmentation_node", **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self.config: PipelineConfig | None = None
        self.perception: Perception | None = None  # set while configured
        self.scheduler: LiveScheduler | None = None  # set while active
        self.intake: FrameIntake | None = None  # set while active
        self._lock = threading.Lock()  # the pipeline: inference, engine swaps, map snapshots
        self._steady = Clock(clock_type=ClockType.STEADY_TIME)
        self._outputs: dict[str, Any] = {}
        self._results: ResultPublisher | None = None
        self._diagnostics: Any = None
        self._report_timer: Any = None
        self._poll_timer: Any = None
        self._subscriptions_held: list[Any] = []
        self._errors: Counter[str] = Counter()
        self._notes: Counter[str] = Counter()
        self._problems_reported = 0
        self._rebuilding: threading.Thread | None = None
        # Last: a refused override raises here, and the half-built node is still destroyed cleanly.
        self.values = declare(self, self.table)
        self._k_running = self.values["k"]  # the `k` the running engine was built for
        self.add_on_set_parameters_callback(validating_callback(self.table, self._apply))

    @property
    def output_publishers(self) -> dict[str, Any]:
        """Output name → its (lifecycle) publisher, while configured."""
        return dict(self._outputs)

    # Lifecycle -------------------------------------------------------------------------------------

    def start(self) -> bool:
        """configure → activate (what `autostart` does); True when both succeeded."""
        return (self.trigger_configure() == TransitionCallbackReturn.SUCCESS
                and self.trigger_activate() == TransitionCallbackReturn.SUCCESS)

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.config = pipeline_config(self.values)
        try:
            self.perception = self._make_perception(self._build_segmenter(self.values["k"]))
        except Exception as exc:  # any failure to set up is a failed transition, never a crash
            self.get_logger().error(f"configure failed for model {self.values['model']!r}: {exc}")
        if self.perception is None:
            _free_memory(self.values["device"])  # what was built before the failure
            return TransitionCallbackReturn.FAILURE
        self._k_running = self.values["k"]
        self._outputs = {name: self.create_lifecycle_publisher(Image, f"~/{name}", OUTPUT_QOS_DEPTH)
                         for name in IMAGE_OUTPUTS}
        self._outputs["info"] = self.create_lifecycle_publisher(SegmentationInfo, "~/info", OUTPUT_QOS_DEPTH)
        self._results = ResultPublisher(self._outputs, RclpyFactory())
        self._diagnostics = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._report_timer = self.create_timer(self.values["diagnostics_period_s"], self._report, clock=self._steady)
        segmenter = self.perception.segmenter
        self.get_logger().info(f"configured: {segmenter.source.model_id} on {segmenter.choice}, "
                               f"{segmenter.spec.width}x{segmenter.spec.height}, k={segmenter.spec.k}, "
                               f"label set {segmenter.label_set.name}")
        return super().on_configure(state)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        result = super().on_activate(state)  # the lifecycle publishers first: frames may follow at once
        self.scheduler = LiveScheduler(self._process, on_result=self._publish, on_error=self._failed,
                                       name=f"{self.get_name()}-inference")
        self.intake = FrameIntake(self._submit, **self._intake_options())
        self._subscribe(sensor_qos(self.values["qos_reliability"], self.values["qos_depth"]))
        self._poll_timer = self.create_timer(POLL_PERIOD_S, self._poll, clock=self._steady)
        self._activate()
        self.get_logger().info(f"active: subscribed to {', '.join(s.topic_name for s in self._subscriptions_held)}")
        return result

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._teardown()
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop()
        self._teardown()
        return super().on_shutdown(state)

    def destroy_node(self) -> None:
        """Stop the worker and release the engine first, so that no frame is published on a destroyed node."""
        self._stop()
        self._teardown()
        super().destroy_node()

    def _stop(self) -> None:
        """Unsubscribe, stop the worker (it finishes the frame in progress)."""
        for subscription in self._subscriptions_held:
            self.destroy_subscription(subscription)
        self._subscriptions_held = []
        if self._poll_timer is not None:
            self.destroy_timer(self._poll_timer)
            self._poll_timer = None
        self._deactivate()
        if self.scheduler is not None and not self.scheduler.close(CLOSE_TIMEOUT_S):
            self.get_logger().warning(f"the inference worker did not stop within {CLOSE_TIMEOUT_S} s")
        self.scheduler = self.intake = None

    def _teardown(self) -> None:
        """Release publishers, timers and the engine (and its GPU memory)."""
        rebuilding = self._rebuilding
        if rebuilding is not None:
            rebuilding.join()
        for publisher in self._outputs.values():
            self.destroy_lifecycle_publisher(publisher)
        self._outputs, self._results = {}, None
        if self._report_timer is not None:
            self.destroy_timer(self._report_timer)
            self._report_timer = None
        if self._diagnostics is not None:
            self.destroy_publisher(self._diagnostics)
            self._diagnostics = None
        if self.perception is not None:
            self._release()
            self.perception = None
            _free_memory(self.values["device"])

    # Hooks for perception_node ---------------------------------------------------------------------

    def _make_perception(self, segmenter: Segmenter) -> Perception:
        return Perception(segmenter, TransformBuffer())

    def _intake_options(self) -> dict[str, Any]:
        config = self.config
        return {"slops_ns": {"thermal": int(config.slop_ms["thermal"] * 1e6)} if self._uses("thermal") else {},
                "events_window_ns": int(config.events_window_ms * 1e6), "wait_ns": int(config.wait_ms * 1e6)}

    def _subscribe(self, qos: Any) -> None:
        topics = self.config.topics
        rgb_type = CompressedImage if self.values["rgb_transport"] == "compressed" else Image
        self._add_subscription(rgb_type, topics["rgb"], "rgb", qos)
        self._add_subscription(CameraInfo, topics["camera_info"], "camera_info", qos)
        if self._uses("thermal"):
            self._add_subscription(Image, topics["thermal"], "thermal", qos)
        if self._uses("events"):
            try:
                events_type = message_class(EVENTS_TYPE)
            except (ImportError, AttributeError):
                self.get_logger().warning(f"{EVENTS_TYPE} is not installed, so the event topic {topics['events']!r} "
                                          f"is not subscribed; the model runs without events")
            else:
                self._add_subscription(events_type, topics["events"], "events", qos)

    def _activate(self) -> None:
        """Start what runs while active, beside the subscriptions."""

    def _deactivate(self) -> None:
        """Stop what `_activate` started."""

    def _release(self) -> None:
        """Let go of what `_make_perception` made, beside the engine."""

    def _after_frame(self, result: Any) -> None:
        """On the worker thread, after a frame's outputs went out."""

    def _status(self, perception: Perception) -> dict[str, Any]:
        """Extra /diagnostics values."""
        return {}

    # Frames ----------------------------------------------------------------------------------------

    def _uses(self, modality: str) -> bool:
        return modality in self.values["modalities"] and modality in self.perception.segmenter.modalities

    def _add_subscription(self, msg_type: type, topic: str, role: str, qos: Any) -> None:
        def take(msg: Any) -> None:
            intake = self.intake
            if intake is not None:  # None once deactivated
                self._take(intake, role, msg, topic)

        self._subscriptions_held.append(self.create_subscription(msg_type, topic, take, qos))

    def _take(self, intake: FrameIntake, role: str, msg: Any, topic: str) -> Any:
        """On the executor: one message in; returns its payload (None when it was bad)."""
        payload = intake.add(role, msg, topic)
        if role == "camera_info" and payload is not None:
            self.perception.camera = payload
        return payload

    def _poll(self) -> None:
        intake = self.intake
        if intake is not None:
            intake.poll()

    def _submit(self, bundle: FrameBundle) -> None:
        scheduler = self.scheduler
        try:
            if scheduler is not None:
                scheduler.submit(bundle)
        except SchedulerClosed:
            pass  # a frame that arrived while deactivating

    def _process(self, bundle: FrameBundle) -> tuple[Frame, Segmenter, Any]:
        """On the worker thread: the pipeline on one bundle, with the engine it ran on."""
        frame = bundle.rgb
        with self._lock:
            perception = self.perception
            return frame, perception.segmenter, perception.process(replace(bundle, rgb=frame.rgb))

    def _publish(self, bundle: FrameBundle, processed: tuple[Frame, Segmenter, Any]) -> None:
        frame, segmenter, result = processed
        for note in result.notes:
            self._notes[note.split(":")[0]] += 1
        results, scheduler = self._results, self.scheduler
        if results is not None and scheduler is not None:
            results.publish(frame, bundle, result, segmenter, outputs=self.values["outputs"],
                            frames_dropped=scheduler.stats["dropped"])
        self._after_frame(result)

    def _failed(self, bundle: FrameBundle, exc: Exception) -> None:
        self._errors[short_reason(exc)] += 1
        self.get_logger().warning(f"frame at {bundle.stamp_ns} ns failed: {exc}", throttle_duration_sec=LOG_PERIOD_S)

    # Parameters ------------------------------------------------------------------------------------

    def _apply(self, changes: dict[str, Any]) -> str | None:
        """Live changes the table accepted; refuses a `k` the engine cannot take."""
        if "k" in changes and changes["k"] != self._k_running and self.perception is not None:
            refusal = self._rebuild_for(changes["k"])
            if refusal:
                return refusal
        self.values.update(changes)
        return None

    def _rebuild_for(self, k: int) -> str | None:
        """Start building an engine for `k` on a background thread, or say why not."""
        if self._rebuilding is not None:
            return "k: the engine is being rebuilt for another k; set k again when that is done"
        refusal = _k_refusal(self.perception.segmenter, k)
        if refusal:
            return refusal
        self._rebuilding = threading.Thread(target=self._rebuild, args=(k, self._k_running),
                                            name=f"{self.get_name()}-rebuild", daemon=True)
        self._rebuilding.start()
        return None

    def _rebuild(self, k: int, previous: int) -> None:
        """On its own thread: build and warm up the engine for `k`, then swap it in (or restore `previous`)."""
        try:
            segmenter = self._build_segmenter(k)
            # A warm-up frame: a failure shows here, not on a live frame, and the first frame is not slow.
            segmenter.segment(rgb=np.zeros((segmenter.spec.height, segmenter.spec.width, 3), np.uint8))
        except Exception as exc:  # the old engine keeps running; the parameter goes back to it
            self._errors[f"rebuild for k={k}: {short_reason(exc)}"] += 1
            self.get_logger().error(f"rebuilding the engine for k={k} failed, keeping k={previous}: {exc}")
            self._rebuilding = None
            self.set_parameters([Parameter("k", value=previous)])
            return
        with self._lock:
            old, self.perception.segmenter = self.perception.segmenter, segmenter
            self._k_running = k
        del old
        _free_memory(segmenter.device)
        self.get_logger().info(f"engine rebuilt: k={segmenter.spec.k}")
        self._rebuilding = None

    def _build_segmenter(self, k: int) -> Segmenter:
        """The engine the parameters describe, for `k`.

        Raises:
            EngineError: the model or backend cannot be set up.
            ValueError: a label set other than `label_set`, half an input size, or a `k` the model cannot take.
        """
        values = self.values
        size = (values["input_width"], values["input_height"])
        if 0 in size and size != (0, 0):
            raise ValueError(f"input_width and input_height are {size[0]} and {size[1]}; set both, or both to 0 "
                             f"(the model's size)")
        segmenter = Segmenter(values["model"], backend=values["backend"], device=values["device"],
                              precision=values["precision"], input_size=None if size == (0, 0) else size,
                              k=None if k < 0 else k, threads=values["threads"] or None,
                              card=values["card"] or None, class_map=values["class_map"] or None)
        expected, actual = values["label_set"], segmenter.label_set.name
        if expected and expected != actual:
            raise ValueError(f"label_set is {expected!r} but the model's label set is {actual!r}; set label_set to "
                             f"{actual!r} (or empty), or use a model trained on {expected!r}")
        refusal = _k_refusal(segmenter, k) if k >= 0 else None
        if refusal:
            raise ValueError(refusal)
        return segmenter

    # Diagnostics -----------------------------------------------------------------------------------

    def _report(self) -> None:
        diagnostics, values = self._diagnostics, self.status()
        if diagnostics is None or not values:  # cleaned up meanwhile
            return
        counted = {key: n for key, n in values.items() if key.startswith(PROBLEM_KEYS) and isinstance(n, int)}
        problems = sum(counted.values())
        level, message = DiagnosticStatus.OK, "ok"
        if values["state"] == "inactive":
            message = "inactive"
        elif problems > self._problems_reported:
            # WARN while anything is dropped, refused, skipped or fails: a node that only drops is not "ok"
            level = DiagnosticStatus.WARN
            message = f"{problems - self._problems_reported} frame(s) or message(s) dropped, refused or skipped"
            self.get_logger().warning(f"{message} since the last report; in all: "
                                      + ", ".join(f"{key} {n}" for key, n in counted.items() if n),
                                      throttle_duration_sec=LOG_PERIOD_S)
        self._problems_reported = problems
        diagnostics.publish(diagnostic_array(self, self.status_name, values, level=level, message=message))
        self.get_logger().info(
            f"{values.get('received', 0)} frames received, {values.get('processed', 0)} processed, "
            f"{values.get('dropped', 0)} dropped, {problems} bad or failed; latency p50 "
            f"{values.get('latency p50 ms', '-')} ms; {values['backend']}", throttle_duration_sec=LOG_PERIOD_S)

    def status(self) -> dict[str, Any]:
        """What /diagnostics reports: counters of the current activation, the engine and the latency ({}
        while unconfigured)."""
        perception = self.perception
        if perception is None:
            return {}
        segmenter = perception.segmenter
        values: dict[str, Any] = {
            "state": "active" if self.intake is not None else "inactive", "model": segmenter.source.model_id,
            "backend": f"{segmenter.backend_name}/{segmenter.device}", "precision": segmenter.spec.precision,
            "k": segmenter.spec.k, "input": f"{segmenter.spec.width}x{segmenter.spec.height}",
        }
        intake, scheduler = self.intake, self.scheduler
        if intake is not None and scheduler is not None:
            stats = scheduler.stats
            values.update({"received": intake.received["rgb"], "synchronised": stats["received"],
                           "processed": stats["processed"], "dropped": stats["dropped"], "errors": stats["errors"]})
            latencies = scheduler.latencies_ns[-LATENCY_WINDOW:]
            if latencies:
                values["latency p50 ms"] = round(float(np.percentile(latencies, 50)) / 1e6, 2)
                values["latency max ms"] = round(max(latencies) / 1e6, 2)
            values.update({f"received {role}": n for role, n in intake.received.items() if role != "rgb"})
            values.update({f"bad {key}": n for key, n in intake.bad.items()})
            values.update({f"sync {key}": n for key, n in intake.sync.stats.items() if n and key != "emitted"})
        # Copies first: the worker thread adds keys (dict() copies without running Python code in between).
        values.update({f"error {key}": n for key, n in dict(self._errors).items()})
        values.update({f"skipped {key}": n for key, n in dict(self._notes).items()})
        return {**values, **self._status(perception)}


# /diagnostics values that count as problems: refused messages, failures, skipped work and dropped frames.
PROBLEM_KEYS = ("bad ", "error ", "skipped ", "dropped", "frames dropped")


def _k_refusal(segmenter: Segmenter, k: int) -> str | None:
    """Why `segmenter`'s model cannot refine `k` locations (-1: its default), or None."""
    if segmenter.source.card is not None:
        return None if k in (-1, 0) else f"k: {segmenter.source.model_id} is your own network; it has no refinement"
    if segmenter.config.architecture != "student":
        return f"k: {segmenter.source.model_id} is a {segmenter.config.architecture}; only a student refines"
    exported = segmenter.source.exported_spec
    if exported is not None and k not in (-1, exported.k):
        return (f"k: {segmenter.source.path.name} was exported for k={exported.k}; export the model again for "
                f"k={k} (seg-perception export) or run its .safetensors checkpoint")
    spec = segmenter.spec
    locations = quarter_size(spec.height) * quarter_size(spec.width)
    if k > locations:
        return (f"k = {k} exceeds the {locations} locations the {spec.width}x{spec.height} input has at 1/4 "
                f"resolution; accepted: -1 (the model's default) to {locations}")
    return None


def _free_memory(device: str) -> None:
    """Return an engine's memory, once nothing refers to it, to the system (and CUDA memory to the driver)."""
    gc.collect()
    if device != "cpu" and torch.cuda.is_available():
        torch.cuda.empty_cache()


def run(node_class: type[SegmentationNode], args: list[str] | None = None) -> int:
    """Initialise rclpy, create the node, walk it to active with `autostart`, spin until Ctrl-C or an
    external shutdown, then shut the node down (which releases the engine). Returns the exit code."""
    rclpy.init(args=args)
    try:
        node = node_class()
    except (ValueError, InvalidParameterValueException) as exc:  # a parameter override that is refused
        rclpy.logging.get_logger(node_class.__name__).error(str(exc))
        rclpy.try_shutdown()
        return 1
    try:
        if node.values["autostart"] and not node.start():
            return 1
        executor = MultiThreadedExecutor()
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node.context.ok():  # after Ctrl-C rclpy has shut the context down: no transition can be announced
            node.trigger_shutdown()
        node.destroy_node()  # releases what the shutdown transition did not (the worker, the engine, the map)
        rclpy.try_shutdown()
    return 0


def main(args: list[str] | None = None) -> None:
    raise SystemExit(run(SegmentationNode, args))


if __name__ == "__main__":
    main()
