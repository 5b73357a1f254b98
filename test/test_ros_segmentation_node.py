"""segmentation_node on real rclpy, in process: the node under test and a probe node on one executor.

Each test makes its own node in a fresh namespace; the graph runs in a private context and ROS
domain, so runs beside other ROS processes do not see each other.
"""
from __future__ import annotations

import array
import dataclasses
import os
import threading
import time
import uuid
import weakref
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from conftest import require_ros
from seg_perception.io import array_to_image, image_to_array, make_header, stamp_to_ns

MODEL = {"model": "student_rgb", "backend": "torch", "device": "cpu", "input_width": 160, "input_height": 96,
         "modalities": ["rgb"], "qos_depth": 10, "diagnostics_period_s": 0.2}
IMAGE_SIZE = (200, 120)  # width, height: not the model's input size, so the outputs' size is checked
STAMP0 = 1_700_000_000_123_456_789
FRAME_ID = "camera_optical_frame"
TIMEOUT_S = 15.0


@pytest.fixture(scope="module")
def graph():
    require_ros("rclpy.lifecycle", "sensor_msgs.msg", "diagnostic_msgs.msg", "seg_perception.msg")
    graph = Graph()
    yield graph
    graph.close()


@pytest.fixture(scope="module")
def segmenter():
    from seg_perception.engines import Segmenter

    return Segmenter("student_rgb", backend="torch", device="cpu", input_size=(160, 96))


class Inbox:
    """Messages of one subscription, with their arrival time (monotonic s)."""

    def __init__(self) -> None:
        self.messages: list[tuple[float, Any]] = []
        self._lock = threading.Lock()

    def __call__(self, msg: Any) -> None:
        with self._lock:
            self.messages.append((time.monotonic(), msg))

    def all(self) -> list[Any]:
        with self._lock:
            return [m for _, m in self.messages]

    def stamped(self, stamp_ns: int) -> Any | None:
        return next((m for m in self.all() if stamp_to_ns(m.header.stamp) == stamp_ns), None)


class Graph:
    """A probe node and the nodes under test on a MultiThreadedExecutor spinning in the background."""

    def __init__(self) -> None:
        import rclpy
        from rclpy.executors import MultiThreadedExecutor

        from seg_perception.ros.messages import RclpyFactory

        self.factory = RclpyFactory()
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=int(os.environ.get("SEG_PERCEPTION_TEST_DOMAIN",
                                                                        100 + os.getpid() % 100)))
        self.probe = rclpy.create_node(f"probe_{uuid.uuid4().hex[:8]}", context=self.context)
        self.executor = MultiThreadedExecutor(num_threads=4, context=self.context)
        self.executor.add_node(self.probe)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def node(self, node_class: type, name: str = "segmentation_node", **params: Any) -> Any:
        """A node under test in a namespace of its own, with MODEL and `params` as parameter overrides."""
        from rclpy.parameter import Parameter

        overrides = [Parameter(k, value=v) for k, v in {**MODEL, **params}.items()]
        node = node_class(name, namespace=f"/t{uuid.uuid4().hex[:8]}", context=self.context,
                          parameter_overrides=overrides)
        self.executor.add_node(node)
        return node

    def remove(self, node: Any) -> None:
        self.executor.remove_node(node)
        node.destroy_node()

    def inbox(self, msg_type: type, topic: str, qos: Any = 50) -> Inbox:
        inbox = Inbox()
        self.probe.create_subscription(msg_type, topic, inbox, qos)
        return inbox

    def publisher(self, msg_type: type, topic: str) -> Any:
        return self.probe.create_publisher(msg_type, topic, 10)

    def close(self) -> None:
        import rclpy

        self.executor.shutdown()
        self.probe.destroy_node()
        rclpy.shutdown(context=self.context)


def wait_for(condition: Callable[[], Any], timeout: float = TIMEOUT_S, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def image(graph: Graph, rgb: np.ndarray, stamp_ns: int, encoding: str = "rgb8") -> Any:
    return array_to_image(rgb, encoding, header=make_header(graph.factory, stamp_ns, FRAME_ID), factory=graph.factory)


def frames(count: int, seed: int = 0) -> list[np.ndarray]:
    """Random RGB frames with some structure (smooth blobs), at IMAGE_SIZE."""
    import cv2

    rng = np.random.default_rng(seed)
    width, height = IMAGE_SIZE
    return [cv2.resize(rng.integers(0, 256, (12, 20, 3), np.uint8), (width, height), interpolation=cv2.INTER_CUBIC)
            for _ in range(count)]


def outputs_of(graph: Graph, node: Any) -> dict[str, Inbox]:
    from sensor_msgs.msg import Image

    from seg_perception.msg import SegmentationInfo

    base = node.get_fully_qualified_name()
    inboxes = {name: graph.inbox(Image, f"{base}/{name}") for name in ("labels", "color", "overlay", "confidence")}
    inboxes["info"] = graph.inbox(SegmentationInfo, f"{base}/info")
    return inboxes


def started(graph: Graph, node: Any, wanted: tuple[str, ...] = ("labels", "color", "overlay", "confidence", "info")):
    """Configure and activate `node`; returns the RGB publisher, once the node hears it and its outputs are heard."""
    from sensor_msgs.msg import Image

    assert node.start()
    rgb = graph.publisher(Image, f"{node.get_namespace()}/image")
    wait_for(lambda: rgb.get_subscription_count() > 0, what="the node's RGB subscription")
    wait_for(lambda: all(node.output_publishers[name].get_subscription_count() > 0 for name in wanted),
             what="the probe's output subscriptions")
    return rgb


def diagnostics_inbox(graph: Graph) -> Inbox:
    from diagnostic_msgs.msg import DiagnosticArray

    return graph.inbox(DiagnosticArray, "/diagnostics")


def latest_status(inbox: Inbox, node: Any) -> dict[str, str] | None:
    """The newest /diagnostics values of `node` (None before its first report)."""
    for array in reversed(inbox.all()):
        for status in array.status:
            if status.hardware_id == node.get_fully_qualified_name():
                return {kv.key: kv.value for kv in status.values}
    return None


def test_lifecycle_walks_configure_activate_deactivate_cleanup(graph):
    from lifecycle_msgs.srv import GetState
    from rclpy.lifecycle import TransitionCallbackReturn
    from sensor_msgs.msg import Image

    from seg_perception.ros.segmentation_node import SegmentationNode

    node = graph.node(SegmentationNode)
    client = graph.probe.create_client(GetState, f"{node.get_fully_qualified_name()}/get_state")
    assert client.wait_for_service(timeout_sec=TIMEOUT_S)

    def state() -> str:
        return client.call(GetState.Request(), timeout_sec=TIMEOUT_S).current_state.label

    rgb_topic = f"{node.get_namespace()}/image"
    rgb_publisher = graph.publisher(Image, rgb_topic)
    try:
        assert state() == "unconfigured" and node.perception is None
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert state() == "inactive"
        assert node.perception.segmenter.spec.size == (160, 96)
        engine = weakref.ref(node.perception.segmenter)
        assert rgb_publisher.get_subscription_count() == 0  # subscribed only while active
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        assert state() == "active"
        wait_for(lambda: rgb_publisher.get_subscription_count() == 1, what="the RGB subscription")
        assert node.scheduler is not None
        assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
        assert state() == "inactive"
        wait_for(lambda: rgb_publisher.get_subscription_count() == 0, what="the RGB subscription to go")
        assert node.scheduler is None and node.perception is not None
        assert node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS
        assert state() == "unconfigured"
        assert node.perception is None and engine() is None  # the engine is released: nothing holds it
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS  # and can be built again
        assert node.trigger_shutdown() == TransitionCallbackReturn.SUCCESS
        assert state() == "finalized"
    finally:
        graph.remove(node)


def test_a_model_that_fails_to_load_fails_configure_and_names_the_model(graph, tmp_path):
    from lifecycle_msgs.srv import GetState
    from rcl_interfaces.msg import Log
    from rclpy.lifecycle import TransitionCallbackReturn
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

    from seg_perception.ros.segmentation_node import SegmentationNode

    log = graph.inbox(Log, "/rosout", QoSProfile(depth=200, reliability=ReliabilityPolicy.RELIABLE,
                                                  durability=DurabilityPolicy.TRANSIENT_LOCAL))
    missing = tmp_path / "no_such_model.safetensors"
    node = graph.node(SegmentationNode, model=str(missing))
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
        client = graph.probe.create_client(GetState, f"{node.get_fully_qualified_name()}/get_state")
        assert client.wait_for_service(timeout_sec=TIMEOUT_S)
        assert client.call(GetState.Request(), timeout_sec=TIMEOUT_S).current_state.label == "unconfigured"
        assert node.perception is None
        error = wait_for(lambda: next((m for m in log.all() if m.name.endswith(node.get_name()) and m.level >= 40
                                       and str(missing) in m.msg), None), what="the error on /rosout")
        assert "configure failed" in error.msg
    finally:
        graph.remove(node)

    for params in ({"label_set": "cityscapes19"}, {"k": 2000}):  # not the model's; beyond its 960 locations
        refused = graph.node(SegmentationNode, **params)
        try:
            assert refused.trigger_configure() == TransitionCallbackReturn.FAILURE
            assert refused.perception is None
        finally:
            graph.remove(refused)


def test_frames_come_back_on_every_output_with_the_input_header_and_the_segmenters_labels(graph, segmenter):
    from seg_perception.ros.segmentation_node import SegmentationNode

    node = graph.node(SegmentationNode)
    out = outputs_of(graph, node)
    try:
        rgb = started(graph, node)
        images = frames(3)
        stamps = [STAMP0 + i * 100_000_000 for i in range(len(images))]
        for frame, stamp in zip(images, stamps):
            rgb.publish(image(graph, frame, stamp))
            wait_for(lambda: all(inbox.stamped(stamp) for inbox in out.values()), what=f"the outputs of {stamp}")
        width, height = IMAGE_SIZE
        label_set = segmenter.label_set
        for frame, stamp in zip(images, stamps):
            expected = segmenter.segment(rgb=frame)
            msgs = {name: inbox.stamped(stamp) for name, inbox in out.items()}
            for name, msg in msgs.items():
                assert (stamp_to_ns(msg.header.stamp), msg.header.frame_id) == (stamp, FRAME_ID), name
            for name, encoding in (("labels", "mono8"), ("color", "rgb8"), ("overlay", "rgb8"),
                                   ("confidence", "32FC1")):
                assert (msgs[name].encoding, msgs[name].width, msgs[name].height) == (encoding, width, height), name
            labels = image_to_array(msgs["labels"])
            np.testing.assert_array_equal(labels, expected.labels)
            np.testing.assert_allclose(image_to_array(msgs["confidence"]), expected.confidence, atol=1e-5)
            np.testing.assert_array_equal(image_to_array(msgs["color"]), label_set.colorize(expected.labels))
            overlay = image_to_array(msgs["overlay"]).astype(int)
            blend = (frame.astype(int) + label_set.colorize(expected.labels).astype(int)) / 2
            assert np.abs(overlay - blend).max() <= 1
            info = msgs["info"]
            assert (info.model_id, info.label_set, info.backend, info.device) == (
                segmenter.source.model_id, "sim_offroad", "torch", "cpu")
            assert (info.input_width, info.input_height, info.output_width, info.output_height) == (
                width, height, width, height)
            assert (info.model_width, info.model_height, info.refine_k) == (160, 96, segmenter.spec.k)
            assert list(info.modalities) == ["rgb"] and info.latency_ms > 0
            assert info.refined_fraction == pytest.approx(float(expected.refined.mean()))
    finally:
        graph.remove(node)


def test_bad_messages_are_counted_on_diagnostics_and_skipped(graph):
    from sensor_msgs.msg import CameraInfo

    from seg_perception.io import CameraModel, camera_info_from_model
    from seg_perception.ros.segmentation_node import SegmentationNode

    diagnostics = diagnostics_inbox(graph)
    node = graph.node(SegmentationNode)
    out = outputs_of(graph, node)
    try:
        rgb = started(graph, node)
        good = frames(1)[0]
        yuv420 = image(graph, good, STAMP0)
        yuv420.encoding = "yuv420"
        short = image(graph, good, STAMP0 + 1)
        short.data = short.data[:-7]
        for msg in (yuv420, short):
            rgb.publish(msg)
        wait_for(lambda: sum(node.intake.bad.values()) == 2, what="two bad messages counted")
        # camera_info of another size: a frame of IMAGE_SIZE is now refused as well.
        info_publisher = graph.publisher(CameraInfo, f"{node.get_namespace()}/camera_info")
        wait_for(lambda: info_publisher.get_subscription_count() > 0, what="the camera_info subscription")
        camera = CameraModel(320, 240, [[300, 0, 160], [0, 300, 120], [0, 0, 1]], frame_id=FRAME_ID)
        info_publisher.publish(camera_info_from_model(camera, header=make_header(graph.factory, STAMP0, FRAME_ID),
                                                      factory=graph.factory))
        wait_for(lambda: node.intake.camera is not None, what="camera_info")
        rgb.publish(image(graph, good, STAMP0 + 2))
        wait_for(lambda: sum(node.intake.bad.values()) == 3, what="the wrongly sized frame counted")
        camera = CameraModel(*IMAGE_SIZE, [[300, 0, 100], [0, 300, 60], [0, 0, 1]], frame_id=FRAME_ID)
        info_publisher.publish(camera_info_from_model(camera, header=make_header(graph.factory, STAMP0, FRAME_ID),
                                                      factory=graph.factory))
        wait_for(lambda: node.intake.camera.image_size == IMAGE_SIZE, what="the matching camera_info")
        rgb.publish(image(graph, good, STAMP0 + 3))
        wait_for(lambda: out["labels"].stamped(STAMP0 + 3), what="the good frame's labels")
        assert not any(out["labels"].stamped(STAMP0 + i) for i in range(3))

        def reported() -> dict[str, str] | None:
            values = latest_status(diagnostics, node)
            return values if values and values.get("processed") == "1" else None

        values = wait_for(reported, what="/diagnostics with the processed frame")
        bad = {k: int(v) for k, v in values.items() if k.startswith("bad ")}
        assert bad == {"bad rgb: image encoding 'yuv420' is not supported": 1,
                       f"bad rgb: image data has {len(short.data)} bytes": 1,
                       "bad rgb: image size 200x120 differs from camera_info's 320x240": 1}, values
        assert (values["received"], values["dropped"], values["errors"]) == ("4", "0", "0")
        assert values["backend"] == "torch/cpu" and float(values["latency p50 ms"]) > 0
        levels = {status.level for array in diagnostics.all() for status in array.status
                  if status.hardware_id == node.get_fully_qualified_name()}
        assert levels >= {b"\x01"}  # WARN while bad messages came in
    finally:
        graph.remove(node)


def test_live_parameter_changes_take_effect_and_invalid_ones_are_refused(graph, segmenter):
    from rclpy.parameter import Parameter

    from seg_perception.engines import Segmenter
    from seg_perception.ros.segmentation_node import SegmentationNode

    node = graph.node(SegmentationNode)
    out = outputs_of(graph, node)
    try:
        rgb = started(graph, node)
        images = iter(frames(40, seed=1))
        sent: dict[int, np.ndarray] = {}

        def send() -> int:
            stamp = STAMP0 + len(sent) * 50_000_000
            sent[stamp] = next(images)
            rgb.publish(image(graph, sent[stamp], stamp))
            return stamp

        first = send()
        wait_for(lambda: out["color"].stamped(first) and out["info"].stamped(first), what="colour and info")
        assert out["info"].stamped(first).refine_k == segmenter.spec.k

        result = node.set_parameters([Parameter("outputs", value=["labels", "info"])])[0]
        assert result.successful, result.reason
        after = send()
        wait_for(lambda: out["labels"].stamped(after), what="labels after the change")
        assert not any(stamp_to_ns(m.header.stamp) >= after for name in ("color", "overlay", "confidence")
                       for m in out[name].all())

        result = node.set_parameters([Parameter("k", value=20)])[0]
        assert result.successful, result.reason

        def rebuilt() -> Any:
            send()
            time.sleep(0.1)
            return next((m for m in out["info"].all() if m.refine_k == 20), None)

        info = wait_for(rebuilt, what="~/info with refine_k 20")
        assert node.get_parameter("k").value == 20
        stamp = stamp_to_ns(info.header.stamp)
        expected = Segmenter("student_rgb", backend="torch", device="cpu", input_size=(160, 96), k=20)
        np.testing.assert_array_equal(image_to_array(out["labels"].stamped(stamp)),
                                      expected.segment(rgb=sent[stamp]).labels)

        refusals = {
            "k": (99999, "out of range"),  # refused by rclpy from the descriptor
            "outputs": (["labels", "bogus"], "'bogus' is not accepted"),
            "model": ("student_rgb_thermal_events", "read-only"),
        }
        for name, (value, reason) in refusals.items():
            result = node.set_parameters([Parameter(name, value=value)])[0]
            assert not result.successful and reason in result.reason, (name, result.reason)
        result = node.set_parameters([Parameter("k", value=2000)])[0]
        assert not result.successful and "exceeds the 960 locations" in result.reason, result.reason
        assert node.get_parameter("k").value == 20
        assert node.get_parameter("outputs").value == ["labels", "info"]
    finally:
        graph.remove(node)


def test_a_publisher_faster_than_the_node_gets_no_backlog_and_counted_drops(graph, monkeypatch):
    from seg_perception.ros.segmentation_node import SegmentationNode

    diagnostics = diagnostics_inbox(graph)
    # The default QoS (reliable, keep last 2): DDS holds no backlog of its own in front of the node's intake.
    node = graph.node(SegmentationNode, qos_depth=2)
    out = outputs_of(graph, node)
    try:
        rgb = started(graph, node, wanted=("labels",))
        segmenter = node.perception.segmenter
        segment = segmenter.segment
        work_s = 0.1

        def slow_segment(**inputs: Any) -> Any:
            time.sleep(work_s)
            return segment(**inputs)

        monkeypatch.setattr(segmenter, "segment", slow_segment)
        images = frames(4)
        sent: dict[int, float] = {}
        for i in range(90):  # 30 Hz for 3 s: three times the node's 10 Hz
            stamp = STAMP0 + i * 33_333_333
            sent[stamp] = time.monotonic()
            rgb.publish(image(graph, images[i % len(images)], stamp))
            time.sleep(1 / 30)
        last = max(sent)
        wait_for(lambda: out["labels"].stamped(last), what="the last frame's labels")
        stamps = [stamp_to_ns(m.header.stamp) for _, m in out["labels"].messages]
        assert stamps == sorted(set(stamps))  # in stamp order, each frame once
        stats = node.scheduler.stats
        # No backlog, whatever the machine's load: the node keeps up by dropping (the newest frame wins), so
        # most frames are dropped and every one received is either processed or counted as dropped.
        assert stats["processed"] + stats["dropped"] == stats["received"] <= len(sent)
        assert stats["dropped"] > stats["processed"] == len(stamps)

        def reported() -> dict[str, str] | None:
            values = latest_status(diagnostics, node)
            return values if values and values.get("processed") == str(stats["processed"]) else None

        values = wait_for(reported, what="/diagnostics after the burst")
        assert int(values["dropped"]) == stats["dropped"] and values["received"] == str(stats["received"])
    finally:
        graph.remove(node)


# The node-side intake, without a ROS graph (rosbags messages; runs everywhere) -------------------------

class FakeClock:
    def __init__(self) -> None:
        self.ns = 0

    def __call__(self) -> int:
        return self.ns


def _rosbags_image(rgb: np.ndarray, stamp_ns: int) -> Any:
    from seg_perception.io import RosbagsFactory

    factory = RosbagsFactory()
    return array_to_image(rgb, "rgb8", header=make_header(factory, stamp_ns, FRAME_ID), factory=factory)


def test_intake_sets_up_the_event_stream_from_the_first_packet_and_pairs_the_window():
    from seg_perception.io import EVENT_DTYPE, RosbagsFactory, events_to_packet
    from seg_perception.ros.worker import FrameIntake

    def packet(times_ns: np.ndarray) -> Any:
        events = np.zeros(len(times_ns), EVENT_DTYPE)
        events["x"], events["y"], events["p"], events["t"] = 3, 4, 1, times_ns
        factory = RosbagsFactory()
        return events_to_packet(events, 64, 48, header=make_header(factory, int(times_ns[0]), "events"),
                                factory=factory, encoding="mono")

    bundles = []
    intake = FrameIntake(bundles.append, slops_ns={}, events_window_ns=50_000_000, wait_ns=300_000_000,
                         clock=FakeClock())
    before = STAMP0 - np.arange(60, 0, -10) * 1_000_000  # 60 … 10 ms before the frame
    intake.add("events", packet(before), "events")
    assert intake.event_sensor == (64, 48)
    intake.add("rgb", _rosbags_image(frames(1)[0], STAMP0))
    assert bundles == []  # the frame waits until an event after it shows the window is complete
    intake.add("events", packet(np.array([STAMP0 + 5_000_000])), "events")
    [bundle] = bundles
    assert bundle.stamp_ns == STAMP0 and bundle.rgb.frame_id == FRAME_ID
    assert (bundle.events.width, bundle.events.height) == (64, 48)
    np.testing.assert_array_equal(bundle.events.events["t"], before[before >= STAMP0 - 50_000_000])
    intake.add("rgb", dataclasses.replace(_rosbags_image(frames(1)[0], STAMP0 + 1), encoding="yuv420"))
    assert intake.bad == {"rgb: image encoding 'yuv420' is not supported": 1}
    assert intake.received == {"events": 2, "rgb": 2}


def test_intake_holds_frames_in_order_until_ready_then_times_out_and_drops_the_oldest_beyond_the_limit():
    from seg_perception.ros.worker import FrameIntake

    clock, ready, submitted = FakeClock(), set(), []
    intake = FrameIntake(submitted.append, slops_ns={}, events_window_ns=50_000_000, wait_ns=300_000_000,
                         ready=lambda bundle: bundle.stamp_ns in ready, ready_timeout_ns=1_000, max_waiting=2,
                         clock=clock)
    rgb = frames(1)[0]
    stamps = [STAMP0 + i for i in range(4)]
    intake.add("rgb", _rosbags_image(rgb, stamps[0]))
    intake.add("rgb", _rosbags_image(rgb, stamps[1]))
    ready.add(stamps[1])
    intake.poll()
    assert submitted == []  # the later frame waits behind the earlier one
    ready.add(stamps[0])
    intake.poll()
    assert [b.stamp_ns for b in submitted] == stamps[:2]
    for stamp in stamps[2:]:
        intake.add("rgb", _rosbags_image(rgb, stamp))
    intake.add("rgb", _rosbags_image(rgb, STAMP0 + 10))
    assert intake.held == {"timed_out": 0, "dropped": 1}  # three waiting, two kept
    clock.ns += 1_000
    intake.poll()
    assert [b.stamp_ns for b in submitted] == [*stamps[:2], stamps[3], STAMP0 + 10]
    assert intake.held == {"timed_out": 2, "dropped": 1}


def test_images_that_used_to_kill_the_node_are_segmented(graph):
    """Wire-valid images that used to kill the node — a bgr16 image with one byte of row padding, a mono8
    image on the RGB topic — are decoded and segmented like any frame, and the node goes on."""
    from seg_perception.ros.segmentation_node import SegmentationNode

    node = graph.node(SegmentationNode)
    out = outputs_of(graph, node)
    try:
        rgb = started(graph, node)
        width, height = IMAGE_SIZE
        padded = image(graph, np.zeros((height, width, 3), np.uint16), STAMP0, "bgr16")
        padded.step = width * 6 + 1
        padded.data = array.array("B", bytes(padded.step * height))
        mono = image(graph, np.zeros((height, width), np.uint8), STAMP0 + 1, "mono8")
        good = image(graph, frames(1)[0], STAMP0 + 2)
        for msg in (padded, mono, good):
            rgb.publish(msg)
            wait_for(lambda msg=msg: out["labels"].stamped(stamp_to_ns(msg.header.stamp)), what="the frame's labels")
        assert sum(node.intake.bad.values()) == 0 and node.scheduler.stats["errors"] == 0
    finally:
        graph.remove(node)


def test_a_misspelt_parameter_refuses_to_start_and_names_the_one_meant(graph):
    from seg_perception.ros.segmentation_node import SegmentationNode

    with pytest.raises(ValueError, match=r"unknown parameter\(s\) 'modle' \(did you mean 'model'\?\); accepted: "):
        graph.node(SegmentationNode, modle="student_rgb")


@pytest.mark.parametrize("module", ["segmentation_node", "perception_node", "voxel_mapping_node"])
def test_node_command_lines_print_help_and_refuse_wrong_types_in_one_line(module):
    import subprocess
    import sys

    require_ros("rclpy", "seg_perception.msg")
    command = [sys.executable, "-m", f"seg_perception.ros.{module}"]
    shown = subprocess.run([*command, "--help"], capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0 and module in shown.stdout and "Traceback" not in shown.stderr
    parameter = "voxel_size:=abc" if module == "voxel_mapping_node" else "k:=abc"
    refused = subprocess.run([*command, "--ros-args", "-p", parameter], capture_output=True, text=True, timeout=120)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "expecting type" in refused.stderr and parameter.split(":")[0] in refused.stderr


def test_a_best_effort_publisher_is_named_instead_of_silently_delivering_nothing(graph):
    """Sensor subscriptions are reliable by default (bench/bench_qos.py): a driver publishing best effort
    cannot match them, and the node says so (a WARN-level count on /diagnostics and a log line)."""
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    from seg_perception.ros.segmentation_node import SegmentationNode

    node = graph.node(SegmentationNode, qos_reliability="reliable")
    try:
        assert node.start()
        topic = f"{node.get_namespace()}/image"
        graph.probe.create_publisher(Image, topic, QoSProfile(depth=2, reliability=ReliabilityPolicy.BEST_EFFORT))
        wait_for(lambda: any(key.startswith("incompatible QoS on") for key in node._errors),
                 what="the incompatible QoS counted")
    finally:
        graph.remove(node)
