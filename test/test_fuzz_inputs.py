"""Fuzzing everything a node or a replay reads from outside: messages, checkpoints, exported models,
cache sidecars, map files, label sets and pipeline configs.

Inputs are wire-valid (every field within its ROS type's range, files of any bytes) but damaged:
odd steps, huge or zero sizes, field counts and offsets beyond a point, NaN/inf, zero or huge
quaternions, truncated or flipped bytes, JSON and YAML of the wrong shape. Each test asserts that
the only exception escaping is the reader's documented one, and that Python/numpy memory (which
OpenCV's decoded images are allocated from) peaks below MEMORY_BOUND for these small inputs.
Deterministic (derandomize) and bounded (max_examples), so that the module runs in about a minute.
"""
from __future__ import annotations

import io
import json
import struct
import tracemalloc
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from seg_perception.engines.cache import artifact_problem, get_or_build_at
from seg_perception.engines.errors import EngineError
from seg_perception.io import (
    ConversionError,
    Evt3Decoder,
    RosbagsFactory,
    TransformBuffer,
    array_to_compressed,
    camera_model_from_info,
    camera_model_from_yaml,
    cloud_to_array,
    cloud_to_columns,
    cloud_to_xyz,
    compressed_to_array,
    event_array_to_events,
    image_to_array,
    image_to_rgb,
    make_header,
    msg_to_label_set,
    packet_to_events,
    transform_to_matrix,
)
from seg_perception.labels import LabelSet, LabelSetError, load_label_set
from seg_perception.mapping import MappingError, load_map, load_voxels, save_voxels
from seg_perception.mapping.voxels import VoxelArrays
from seg_perception.models.checkpoint import load_checkpoint, read_metadata
from seg_perception.models.config import ModelError
from seg_perception.pipeline.config import ConfigError, PipelineConfig
from seg_perception.pipeline.decode import ROLES, MessageDecoder

MEMORY_BOUND = 64 * 2**20
# A compressed image's header may claim any size up to the limit, which is then allocated; the
# fuzzed readers get a 1 Mpx limit so that every accepted claim fits MEMORY_BOUND.
MAX_PIXELS = 1_000_000
FACTORY = RosbagsFactory()
UINT32 = 2**32 - 1


def fuzz(examples: int) -> settings:
    return settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture])


def survives(call: Callable[[], object], *allowed: type[BaseException]) -> None:
    """Run `call`; only `allowed` may escape, and traced memory must stay under MEMORY_BOUND."""
    tracemalloc.start()
    try:
        call()
    except allowed:
        pass
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < MEMORY_BOUND, f"peak {peak} bytes"


# --- building blocks ------------------------------------------------------------------------------

def sizes(small: int) -> st.SearchStrategy[int]:
    """A uint32 size: mostly small, sometimes an edge (0, 2**31 and beyond)."""
    return st.one_of(st.integers(1, small), st.integers(0, small), st.integers(1, small),
                     st.sampled_from([0, 1, 2**15, 2**31 - 1, 2**31, UINT32]), st.integers(0, UINT32))


floats = st.one_of(st.floats(-10, 10), st.sampled_from([0.0, np.nan, np.inf, -np.inf, 1e154, -1e308, 5e-324]),
                   st.floats(allow_nan=True, allow_infinity=True))


@st.composite
def payload(draw, expected: int) -> np.ndarray:
    """uint8[] data: the size the header implies (when small), or any other small size."""
    size = expected if expected <= 4096 and draw(st.integers(0, 3)) < 3 else draw(st.integers(0, 512))
    seed = draw(st.integers(0, 2**32 - 1))
    return np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8)


def mutated(data: bytes) -> st.SearchStrategy[bytes]:
    """`data` truncated, with bytes flipped or overwritten, or untouched."""
    @st.composite
    def mutate(draw):
        out = bytearray(data)
        for _ in range(draw(st.integers(0, 4))):
            position = draw(st.integers(0, max(len(out) - 1, 0)))
            kind = draw(st.sampled_from(["flip", "set", "cut"]))
            if not out:
                break
            if kind == "flip":
                out[position] ^= draw(st.integers(1, 255))
            elif kind == "set":
                out[position: position + 4] = draw(st.binary(min_size=4, max_size=4))
            else:
                del out[position:]
        return bytes(out)

    return mutate()


json_leaves = st.one_of(st.none(), st.booleans(), st.integers(-2**40, 2**40), st.sampled_from([10**400, -(10**400), 2**64]),
                        st.floats(allow_nan=False), st.text(max_size=8))
# Mostly a leaf (a wrong scalar is the likeliest damage), sometimes a nested structure.
json_values = st.one_of(json_leaves, st.recursive(
    json_leaves, lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12))


@st.composite
def damaged_document(draw, document: dict) -> object:
    """A JSON document with one value somewhere replaced, a key removed or added, or replaced whole."""
    if draw(st.integers(0, 9)) == 0:
        return draw(json_values)
    document = json.loads(json.dumps(document))
    node = document
    while isinstance(node, (dict, list)) and node and draw(st.booleans()):
        key = draw(st.sampled_from(sorted(node) if isinstance(node, dict) else range(len(node))))
        if not isinstance(node[key], (dict, list)):
            break
        node = node[key]
    if isinstance(node, dict) and node:
        key = draw(st.sampled_from(sorted(node)))
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "replace":
            node[key] = draw(json_values)
        elif action == "delete":
            del node[key]
        else:
            node[draw(st.text(max_size=6))] = draw(json_values)
    elif isinstance(node, list) and node:
        node[draw(st.integers(0, len(node) - 1))] = draw(json_values)
    return document


# --- messages -------------------------------------------------------------------------------------

ENCODINGS = ["rgb8", "bgr8", "rgba8", "bgra8", "rgb16", "bgr16", "rgba16", "bgra16", "mono8", "mono16",
             "bayer_rggb8", "bayer_gbrg16", "uyvy", "yuyv", "8UC1", "8UC3", "16SC2", "32FC1", "64FC4", "8UC999",
             "32FC", "yuv420", ""]
PIXEL_BYTES = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "rgb16": 6, "bgr16": 6, "rgba16": 8, "bgra16": 8,
               "mono8": 1, "mono16": 2, "bayer_rggb8": 1, "bayer_gbrg16": 2, "uyvy": 2, "yuyv": 2, "8UC1": 1,
               "8UC3": 3, "16SC2": 4, "32FC1": 4, "64FC4": 32}


@st.composite
def images(draw):
    """Mostly a consistent header (so that decoding goes deep), sometimes any header."""
    if draw(st.integers(0, 3)) < 3:
        encoding = draw(st.sampled_from(list(PIXEL_BYTES)))
        height, width = draw(st.integers(1, 6)), draw(st.integers(1, 6))
        step = width * PIXEL_BYTES[encoding] + draw(st.integers(0, 3))
    else:
        encoding = draw(st.one_of(st.sampled_from(ENCODINGS), st.text(max_size=6)))
        height, width = draw(sizes(6)), draw(sizes(6))
        row = width * PIXEL_BYTES.get(encoding, 1)
        step = draw(st.one_of(st.integers(row, row + 3).filter(lambda s: s <= UINT32), sizes(64)))
    return FACTORY.make("sensor_msgs/msg/Image", height=height, width=width, encoding=encoding,
                        is_bigendian=draw(st.sampled_from([0, 0, 1, 255])), step=step, data=draw(payload(height * step)))


VALID_COMPRESSED = [
    array_to_compressed(np.arange(48, dtype=np.uint8).reshape(4, 4, 3), "jpeg"),
    array_to_compressed(np.arange(48, dtype=np.uint8).reshape(4, 4, 3), "png"),
    array_to_compressed(np.arange(16, dtype=np.uint16).reshape(4, 4) * 999, "compressedDepth"),
]


@st.composite
def compressed_images(draw):
    base = draw(st.sampled_from(VALID_COMPRESSED))
    fmt = draw(st.one_of(st.just(base.format), st.sampled_from(
        ["jpeg", "png", "16UC1; compressedDepth png", "32FC1; compressedDepth", "rgb8; jpeg compressed bgr8",
         "bgr16; png compressed bgr16", "x; rvl compressedDepth", ""]), st.text(max_size=12)))
    original = base.data.tobytes()
    if draw(st.integers(0, 3)) == 0:  # rewrite the size fields of the PNG IHDR / JPEG SOF
        start = 12 if fmt.endswith(("compressedDepth png", "compressedDepth")) else 0
        data = bytearray(original)
        size = struct.pack(">II", draw(st.integers(0, UINT32)), draw(st.integers(0, UINT32)))
        sof = data.find(b"\xff\xc0")
        if data[start:start + 4] == b"\x89PNG":
            data[start + 16:start + 24] = size
        elif sof >= 0:
            data[sof + 5:sof + 9] = size[2:4] + size[6:8]
        original = bytes(data)
    data = draw(st.one_of(mutated(original), st.binary(max_size=64)))
    return FACTORY.make("sensor_msgs/msg/CompressedImage", format=fmt, data=np.frombuffer(data, np.uint8))


FIELD_NAMES = ["x", "y", "z", "t", "label", "intensity", "rgb", "_", ""]


@st.composite
def clouds(draw):
    consistent = draw(st.integers(0, 3)) < 3  # mostly a layout that is read, so that decoding goes deep
    xyz = [("x", 0), ("y", 4), ("z", 8)] if consistent or draw(st.booleans()) else []
    fields = [
        FACTORY.make("sensor_msgs/msg/PointField", name=name, offset=offset, datatype=draw(st.sampled_from([7, 7, 8, 2])),
                     count=draw(st.sampled_from([1, 1, 1, 2])))
        for name, offset in xyz
    ] + [
        FACTORY.make("sensor_msgs/msg/PointField", name=draw(st.sampled_from(["t", "label", "intensity", "_", "ring"])),
                     offset=draw(st.integers(0, 12)), datatype=draw(st.integers(1, 8)), count=draw(st.integers(1, 2)))
        if consistent else
        FACTORY.make("sensor_msgs/msg/PointField", name=draw(st.one_of(st.sampled_from(FIELD_NAMES), st.text(max_size=3))),
                     offset=draw(sizes(40)), datatype=draw(st.integers(0, 255)), count=draw(sizes(3)))
        for _ in range(draw(st.integers(0, 3)))
    ]
    unique = {}
    for item in fields:  # duplicate names are refused up front; keep the first of each so that most get read
        unique.setdefault(item.name, item) if consistent else unique.setdefault(len(unique), item)
    fields = list(unique.values())
    if consistent:
        height, width = draw(st.integers(0, 4)), draw(st.integers(0, 6))
        point_step = draw(st.sampled_from([20, 24, 25, 32, 48]))
        row_step = width * point_step + draw(st.sampled_from([0, 0, 1, 4]))
    else:  # edges: empty or single-row clouds whose steps reach the uint32 limits
        height, width = draw(st.one_of(st.sampled_from([0, 1]), sizes(4))), draw(st.one_of(st.sampled_from([0, 1]), sizes(6)))
        point_step = draw(st.one_of(st.sampled_from([0, 1, 2**31 - 1, 2**31, UINT32]), sizes(48)))
        row_step = draw(st.one_of(st.just(min(width * point_step, UINT32)), sizes(300)))
    return FACTORY.make("sensor_msgs/msg/PointCloud2", header=make_header(FACTORY, 0, "lidar"), height=height,
                        width=width, fields=fields, is_bigendian=draw(st.booleans()), point_step=point_step,
                        row_step=row_step, data=draw(payload(height * row_step)), is_dense=draw(st.booleans()))


@st.composite
def camera_infos(draw):
    def matrix(n):
        return np.array(draw(st.lists(floats, min_size=n, max_size=n)), np.float64)

    def calibrated(n, base):
        return base if draw(st.integers(0, 3)) < 3 else matrix(n)

    k = np.array([500.0, 0, 320, 0, 500, 240, 0, 0, 1])
    roi = FACTORY.make("sensor_msgs/msg/RegionOfInterest", x_offset=draw(sizes(8)), y_offset=draw(sizes(8)),
                       height=draw(sizes(8)), width=draw(sizes(8)), do_rectify=draw(st.booleans()))
    if not draw(st.booleans()):  # hypothesis favours False: mostly the full image
        roi = FACTORY.make("sensor_msgs/msg/RegionOfInterest")
    consistent = draw(st.integers(0, 3)) < 3
    return FACTORY.make(
        "sensor_msgs/msg/CameraInfo", header=make_header(FACTORY, 0, "camera"),
        height=draw(st.integers(1, 48) if consistent else sizes(48)),
        width=draw(st.integers(1, 64) if consistent else sizes(64)),
        distortion_model=draw(st.sampled_from(["plumb_bob"] * 3 + ["", "rational_polynomial", "equidistant", "fisheye"])),
        d=np.array(draw(st.one_of(st.lists(st.floats(-1, 1), min_size=5, max_size=5), st.lists(floats, max_size=14))),
                   np.float64), k=calibrated(9, k),
        r=calibrated(9, np.eye(3).ravel()), p=calibrated(12, np.hstack([k.reshape(3, 3), np.zeros((3, 1))]).ravel()),
        binning_x=draw(st.integers(0, 2) if consistent else sizes(4)), binning_y=draw(st.integers(0, 2) if consistent
                                                                                       else sizes(4)), roi=roi)


@st.composite
def event_packets(draw):
    words = draw(st.lists(st.one_of(st.integers(0, 0xFFFF), st.sampled_from(
        [0x8000 | 5, 0x6000 | 3, 0x0000 | 7, 0x2000 | 9, 0x4000 | 0xFFF, 0x3000 | 4, 0xA000 | 2])), max_size=64))
    data = struct.pack(f"<{len(words)}H", *words) + draw(st.binary(max_size=1))
    if draw(st.booleans()):
        data = struct.pack(f"<{len(data) // 8 * 2}I", *draw(st.lists(st.integers(0, UINT32), min_size=len(data) // 8 * 2,
                                                                     max_size=len(data) // 8 * 2)))
    header = make_header(FACTORY, draw(st.integers(-2**31, 2**31 - 1)) * 10**9, "events")
    return FACTORY.make("event_camera_msgs/msg/EventPacket", header=header, height=draw(sizes(2048)),
                        width=draw(sizes(2048)), seq=draw(st.integers(0, 2**64 - 1)),
                        time_base=draw(st.integers(0, 2**64 - 1)),
                        encoding=draw(st.sampled_from(["evt3", "evt3", "mono", "mono", "libcaer", "libcaer_cmp", "trigger", "evt2", ""])),
                        is_bigendian=draw(st.booleans()),
                        events=np.frombuffer(data, np.uint8))


@st.composite
def event_arrays(draw):
    events = [FACTORY.make("dvs_msgs/msg/Event", x=draw(st.integers(0, 0xFFFF)), y=draw(st.integers(0, 0xFFFF)),
                           ts=FACTORY.make("builtin_interfaces/msg/Time", sec=draw(st.integers(-2**31, 2**31 - 1)),
                                           nanosec=draw(st.integers(0, UINT32))),
                           polarity=draw(st.booleans()))
              for _ in range(draw(st.integers(0, 6)))]
    return FACTORY.make("dvs_msgs/msg/EventArray", header=make_header(FACTORY, 0, "events"), height=draw(sizes(480)),
                        width=draw(sizes(640)), events=events)


@st.composite
def transforms(draw):
    translation = FACTORY.make("geometry_msgs/msg/Vector3", **{a: draw(floats) for a in "xyz"})
    rotation = FACTORY.make("geometry_msgs/msg/Quaternion", **{a: draw(floats) for a in "xyzw"})
    header = make_header(FACTORY, draw(st.integers(0, 2**40)), draw(st.sampled_from(["map", "odom", "/", "", "a"])))
    return FACTORY.make("geometry_msgs/msg/TransformStamped", header=header,
                        child_frame_id=draw(st.sampled_from(["base_link", "map", "", "a", "//"])),
                        transform=FACTORY.make("geometry_msgs/msg/Transform", translation=translation, rotation=rotation))


messages = st.one_of(images(), compressed_images(), clouds(), camera_infos(), event_packets(), event_arrays(),
                     transforms().map(lambda t: FACTORY.make("tf2_msgs/msg/TFMessage", transforms=[t])))


# --- converters -----------------------------------------------------------------------------------

@fuzz(500)
@given(images())
def test_images(msg):
    survives(lambda: image_to_array(msg), ConversionError)
    survives(lambda: image_to_rgb(msg), ConversionError)


@fuzz(400)
@given(compressed_images())
def test_compressed_images(msg):
    survives(lambda: compressed_to_array(msg, max_pixels=MAX_PIXELS), ConversionError)


@fuzz(500)
@given(clouds())
def test_point_clouds(msg):
    survives(lambda: cloud_to_array(msg), ConversionError)
    survives(lambda: cloud_to_xyz(msg), ConversionError)
    survives(lambda: cloud_to_columns(msg), ConversionError)


@fuzz(300)
@given(camera_infos())
def test_camera_infos(msg):
    def read_and_use():
        model = camera_model_from_info(msg, max_pixels=MAX_PIXELS)
        model.project(np.array([[0.1, -0.2, 2.0], [0.0, 0.0, 0.0]]))

    survives(read_and_use, ConversionError)


@fuzz(300)
@given(event_packets(), st.booleans())
def test_event_packets(msg, streamed):
    def read():
        decoder = Evt3Decoder(int(msg.width), int(msg.height)) if streamed else None
        packet_to_events(msg, decoder)

    survives(read, ConversionError)


@fuzz(150)
@given(event_arrays())
def test_event_arrays(msg):
    survives(lambda: event_array_to_events(msg), ConversionError)


@fuzz(300)
@given(transforms())
def test_transforms(msg):
    def accepted_means_right():
        T = transform_to_matrix(msg)
        # An accepted rotation is that of the quaternion scaled by its largest component first (so that
        # squaring cannot overflow), as scipy computes it: no garbage quaternion may become the identity.
        q = msg.transform.rotation
        q = np.array([q.x, q.y, q.z, q.w])
        assert np.allclose(T[:3, :3], Rotation.from_quat(q / np.abs(q).max()).as_matrix(), atol=1e-9)

    survives(accepted_means_right, ConversionError)
    buffer = TransformBuffer()
    survives(lambda: buffer.set_transform(msg), ConversionError)
    survives(lambda: buffer.lookup("map", "base_link"), ConversionError, LookupError)


@fuzz(800)
@given(st.sampled_from(ROLES), messages)
def test_message_decoder(role, msg):
    survives(lambda: MessageDecoder(max_pixels=MAX_PIXELS).decode(role, msg, "/topic"), ConversionError)


@fuzz(150)
@given(st.lists(st.tuples(st.integers(0, 0xFFFF), st.text(max_size=4), st.lists(st.integers(0, 255), min_size=3,
                                                                              max_size=3)), max_size=6),
       st.text(max_size=6), st.integers(0, 0xFFFF))
def test_label_set_messages(classes, name, ignore_id):
    msg = FACTORY.make("seg_perception/msg/LabelSet", header=make_header(FACTORY), name=name, ignore_id=ignore_id,
                       classes=[FACTORY.make("seg_perception/msg/LabelClass", id=i, name=n, color=np.array(c, np.uint8))
                                for i, n, c in classes])
    survives(lambda: msg_to_label_set(msg), LabelSetError)


# --- files ----------------------------------------------------------------------------------------

LABELS = load_label_set("sim_offroad")


@fuzz(300)
@given(damaged_document(LABELS.to_dict()))
def test_label_sets(document):
    survives(lambda: LabelSet.from_dict(document), LabelSetError)


@fuzz(80)
@given(st.one_of(damaged_document(LABELS.to_dict()).map(yaml.safe_dump), st.text(max_size=40),
                 st.binary(max_size=40).map(lambda b: b.decode("latin-1"))))
def test_label_set_files(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("labels") / "set.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogateescape")
    survives(lambda: load_label_set(path), LabelSetError)


CALIBRATION = {"image_width": 64, "image_height": 48, "distortion_model": "plumb_bob",
               "camera_matrix": {"rows": 3, "cols": 3, "data": [50.0, 0.0, 32.0, 0.0, 50.0, 24.0, 0.0, 0.0, 1.0]},
               "distortion_coefficients": {"rows": 1, "cols": 5, "data": [-0.1, 0.01, 0.0, 0.0, 0.0]},
               "rectification_matrix": {"rows": 3, "cols": 3, "data": [1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0]},
               "projection_matrix": {"rows": 3, "cols": 4, "data": [50.0, 0, 32.0, 0, 0, 50.0, 24.0, 0, 0, 0, 1.0, 0]}}


@fuzz(100)
@given(st.one_of(damaged_document(CALIBRATION).map(yaml.safe_dump), st.text(max_size=40)))
def test_camera_calibration_files(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("calibration") / "camera.yaml"
    path.write_text(text)
    survives(lambda: camera_model_from_yaml(path, "camera", max_pixels=MAX_PIXELS), ConversionError)


PIPELINE = {"model": "student_rgb", "threads": 2, "topics": {"rgb": "/cam", "labels": None},
            "slop_ms": {"lidar": 60.0}, "wait_ms": 300.0, "labels_dir": "labels",
            "mapping": {"enabled": True, "voxel_size": 0.2, "radius": None, "max_voxels": 1000},
            "static_transforms": [{"parent": "base", "child": "cam", "translation": [0, 0, 1],
                                   "rotation": [0, 0, 0, 1]}]}


@fuzz(400)
@given(damaged_document(PIPELINE))
def test_pipeline_configs(document):
    survives(lambda: PipelineConfig.from_dict(document), ConfigError)


@fuzz(80)
@given(st.one_of(damaged_document(PIPELINE).map(yaml.safe_dump), st.text(max_size=40)))
def test_pipeline_config_files(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("config") / "pipeline.yaml"
    path.write_text(text)
    survives(lambda: PipelineConfig.load(path), ConfigError)


def _student_checkpoint(directory: Path) -> Path:
    from seg_perception.models import build_model, save_checkpoint, student_config

    return save_checkpoint(directory / "student.safetensors", build_model(student_config(LABELS.num_classes)),
                           LABELS, model_id="fuzz", training={"config": {"image_size": [64, 48]}})


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> tuple[Path, dict]:
    path = _student_checkpoint(tmp_path_factory.mktemp("checkpoint"))
    return path, read_metadata(path)


@fuzz(40)
@given(st.data())
def test_checkpoint_metadata(tmp_path_factory, checkpoint, data):
    from safetensors.torch import load_file, save_file

    path, document = checkpoint
    raw = data.draw(st.one_of(damaged_document(document).map(json.dumps), st.text(max_size=30)))
    damaged = tmp_path_factory.mktemp("ckpt") / "m.safetensors"
    save_file(load_file(str(path)), str(damaged), metadata={"seg_perception": raw})
    survives(lambda: load_checkpoint(damaged), ModelError)


@fuzz(40)
@given(st.data())
def test_checkpoint_bytes(tmp_path_factory, checkpoint, data):
    path, _ = checkpoint
    original = path.read_bytes()
    header = 8 + int.from_bytes(original[:8], "little")  # the JSON header and a little of the weights
    damaged = tmp_path_factory.mktemp("ckpt") / "m.safetensors"
    damaged.write_bytes(data.draw(mutated(original[:header + 64])) + original[header + 64:])
    survives(lambda: load_checkpoint(damaged), ModelError)


@pytest.fixture(scope="module")
def onnx_document(checkpoint) -> dict:
    _, document = checkpoint
    return {"format": "seg_perception.onnx/1", "checkpoint": document,
            "spec": {"width": 64, "height": 64, "k": 8, "precision": "fp32"}, "inputs": ["x"], "outputs": ["y"]}


@fuzz(60)
@given(st.data())
def test_onnx_metadata(tmp_path_factory, onnx_document, data):
    onnx = pytest.importorskip("onnx")
    from seg_perception.engines.export import read_onnx_metadata

    node = onnx.helper.make_node("Relu", ["x"], ["y"])
    graph = onnx.helper.make_graph([node], "g", [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
                                   [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])])
    model = onnx.helper.make_model(graph)
    raw = data.draw(st.one_of(damaged_document(onnx_document).map(json.dumps), st.text(max_size=30)))
    onnx.helper.set_model_props(model, {"seg_perception": raw})
    path = tmp_path_factory.mktemp("onnx") / "m.onnx"
    serialised = model.SerializeToString()
    path.write_bytes(data.draw(st.one_of(st.just(serialised), mutated(serialised))))
    survives(lambda: read_onnx_metadata(path), EngineError)


@fuzz(100)
@given(st.data())
def test_cache_sidecars(tmp_path_factory, data):
    fields = {"onnx_sha256": "a" * 64, "precision": "fp16", "shape": [1, 3, 64, 64]}
    artefact = tmp_path_factory.mktemp("cache") / "engine.plan"
    artefact.write_bytes(b"plan")
    sidecar = {"fields": fields, "sha256": "0" * 64}
    text = data.draw(st.one_of(damaged_document(sidecar).map(json.dumps), st.text(max_size=30)))
    artefact.with_name("engine.plan.json").write_text(text)

    def use():
        assert isinstance(artifact_problem(artefact, fields), (str, type(None)))
        get_or_build_at(artefact, fields, lambda path: path.write_bytes(b"plan"), rebuild=False)

    survives(use, EngineError)


def _npy(array: np.ndarray) -> bytes:
    stream = io.BytesIO()
    np.save(stream, array)
    return stream.getvalue()


def _voxels() -> VoxelArrays:
    keys = np.array([[0, 0, 0], [1, -2, 3], [40, 5, -6]], np.int32)
    log_probs = np.log(np.full((3, 4), 0.25, np.float32))
    return VoxelArrays(0.5, keys, log_probs, np.array([1, 2, 3], np.uint16), np.array([5, 6, 7], np.int64) * 10**9,
                       np.array([0.5, 1.0, -0.5], np.float32))


@pytest.fixture(scope="module")
def saved_map(tmp_path_factory) -> bytes:
    path = save_voxels(tmp_path_factory.mktemp("map") / "map.npz", _voxels(), label_set=LABELS,
                       params={"log_floor": -7.0, "radius": 30.0})
    return path.read_bytes()


@fuzz(200)
@given(st.data())
def test_map_files(tmp_path_factory, saved_map, data):
    path = tmp_path_factory.mktemp("map") / "map.npz"
    if data.draw(st.booleans()):
        path.write_bytes(data.draw(mutated(saved_map)))
    else:  # an intact zip whose entries hold other arrays or metadata
        with zipfile.ZipFile(io.BytesIO(saved_map)) as original, zipfile.ZipFile(path, "w") as archive:
            for name in original.namelist():
                content = original.read(name)
                if data.draw(st.integers(0, 2)) == 0:
                    content = _npy(data.draw(st.sampled_from([
                        np.zeros((2, 3), np.float64), np.zeros(5, np.int32), np.zeros((3, 3), np.int32),
                        np.array(json.dumps(data.draw(json_values))), np.zeros((0, 3), np.int32), np.zeros(()),
                        np.array([np.nan, np.inf, 1e30], np.float32), np.full((3, 3), 2**30, np.int32)])))
                archive.writestr(name, content)
    survives(lambda: load_voxels(path), MappingError)
    survives(lambda: load_map(path), MappingError)
