"""Users' own networks through model cards: four export conventions built with torch.onnx.export, each run
by Segmenter, replay and segmentation_node and compared with an independent onnxruntime + numpy
computation; card refusals; class maps at run time and in scoring."""
from __future__ import annotations

import copy
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from seg_perception.engines import EngineError, Segmenter
from seg_perception.engines.card import CardError, ModelCard
from seg_perception.labels import LabelSet, LabelClass

IMAGENET = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
MMSEG = {"mean": [103.53, 116.28, 123.675], "std": [57.375, 57.12, 58.395]}  # BGR, 0–255
FRAME_SIZES = ((150, 100), (97, 131))  # (width, height): neither the models' sizes nor their aspect ratios


def _labels(classes: int, name: str) -> dict:
    rng = np.random.default_rng(classes)
    return LabelSet(name, tuple(LabelClass(i, f"c{i}", tuple(int(v) for v in rng.integers(0, 256, 3)))
                                for i in range(classes))).to_dict()


class _Head(nn.Module):
    """A fixed random conv head: stride 4 (1/4-resolution logits) or 1; optional argmax, NHWC uint8 input."""

    def __init__(self, classes: int, stride: int = 1, *, argmax: bool = False, nhwc_uint8: bool = False) -> None:
        super().__init__()
        torch.manual_seed(classes + stride)
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.out = nn.Conv2d(8, classes, stride, stride=stride)
        with torch.no_grad():  # decisive logits: few near ties
            self.out.weight.mul_(24.0)
            self.out.bias.mul_(24.0)
        self.argmax, self.nhwc_uint8 = argmax, nhwc_uint8

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.nhwc_uint8:
            x = x.permute(0, 3, 1, 2).float() / 127.5 - 1.0
        y = self.out(torch.tanh(self.conv(x)))
        return y.argmax(1) if self.argmax else y


# name → (module, example input, input name, output name, dynamic axes, card, label classes)
CONVENTIONS = {
    "segformer": dict(head=lambda: _Head(6, stride=4), shape=(1, 3, 64, 96), dtype=torch.float32,
                      input="pixel_values", output="logits",
                      dynamic={"pixel_values": {2: "height", 3: "width"}, "logits": {2: "h4", 3: "w4"}},
                      card={"input": {**IMAGENET, "size": [96, 64], "multiple": 32, "resize": "letterbox"}},
                      classes=6),
    "mmseg": dict(head=lambda: _Head(5), shape=(1, 3, 48, 96), dtype=torch.float32, input="input", output="seg_logits",
                  dynamic=None, card={"input": {"channels": "BGR", "range": 255, **MMSEG}}, classes=5),
    "class_ids": dict(head=lambda: _Head(4, argmax=True), shape=(1, 3, 40, 40), dtype=torch.float32, input="image",
                      output="labels", dynamic=None, card={"input": {"mean": [0.5] * 3, "std": [0.5] * 3}}, classes=4),
    "nhwc_uint8": dict(head=lambda: _Head(3, nhwc_uint8=True), shape=(1, 56, 72, 3), dtype=torch.uint8,
                       input="frame", output="scores", dynamic=None, card={"input": {"resize": "crop"}}, classes=3),
}


def build(tmp_path: Path, name: str, *, card_beside: bool = True) -> tuple[Path, dict]:
    """Export convention `name` to tmp_path/<name>.onnx with its card beside it; returns (path, card dict)."""
    spec = CONVENTIONS[name]
    model = spec["head"]().eval()
    example = torch.zeros(spec["shape"], dtype=spec["dtype"])
    path = tmp_path / f"{name}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (example,), str(path), input_names=[spec["input"]], output_names=[spec["output"]],
                          dynamic_axes=spec["dynamic"], opset_version=17, dynamo=False)
    card = {"label_set": _labels(spec["classes"], f"{name}_classes"), **copy.deepcopy(spec["card"])}
    if card_beside:
        path.with_suffix(".yaml").write_text(yaml.safe_dump(card))
    return path, card


# --- the independent computation -------------------------------------------------------------

def _weights(source: int, target: int, scale_in: float) -> np.ndarray:
    """(target, source) bilinear weights with antialiasing when shrinking (PIL's triangle filter)."""
    support = max(scale_in, 1.0)
    centres = (np.arange(target) + 0.5) * scale_in
    taps = np.arange(source) + 0.5
    w = np.clip(1.0 - np.abs(taps[None, :] - centres[:, None]) / support, 0.0, None)
    return w / w.sum(axis=1, keepdims=True)


def resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Bilinear (antialiased when shrinking) float resize of an (H, W, C) image."""
    h, w = image.shape[:2]
    rows, cols = _weights(h, height, h / height), _weights(w, width, w / width)
    return np.einsum("yh,hwc,xw->yxc", rows, image.astype(np.float64), cols)


def reference(path: Path, card: dict, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Labels, confidence and the top-2 logit margin at the frame's size: resize (by the card's policy),
    normalise, run with onnxruntime, argmax, map each frame pixel's centre back into the output."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = session.get_inputs()[0]
    spec = card["input"]
    nhwc = feed.shape[3] == 3
    fixed = feed.shape[1:3] if nhwc else feed.shape[2:]
    width, height = (fixed[1], fixed[0]) if all(isinstance(d, int) for d in fixed) else spec["size"]
    src_h, src_w = frame.shape[:2]
    policy = spec.get("resize", "stretch")
    if policy == "stretch":
        box = (0, 0, width, height)
    else:
        scale = (min if policy == "letterbox" else max)(width / src_w, height / src_h)
        w, h = round(src_w * scale), round(src_h * scale)
        w, h = (min(width, w), min(height, h)) if policy == "letterbox" else (max(width, w), max(height, h))
        box = ((width - w) // 2, (height - h) // 2, w, h)
    x0, y0, w, h = box
    canvas = np.zeros((height, width, 3))
    content = np.round(resize(frame, w, h))  # the package resizes uint8 frames to uint8
    ys, xs = slice(max(0, y0), min(height, y0 + h)), slice(max(0, x0), min(width, x0 + w))
    canvas[ys, xs] = content[ys.start - y0:ys.stop - y0, xs.start - x0:xs.stop - x0]
    if feed.type == "tensor(uint8)":
        tensor = canvas.astype(np.uint8)
    else:
        pixels = canvas[..., ::-1] if spec.get("channels") == "BGR" else canvas
        pixels = pixels / 255.0 if spec.get("range", 1) == 1 else pixels
        tensor = ((pixels - spec.get("mean", [0.0] * 3)) / spec.get("std", [1.0] * 3)).astype(np.float32)
    tensor = tensor[None] if nhwc else tensor.transpose(2, 0, 1)[None]
    out = session.run(None, {feed.name: np.ascontiguousarray(tensor)})[0]
    if out.dtype.kind in "iu":
        labels, confidence, margin = out.reshape(out.shape[-2:]), None, None
    else:
        logits = out[0].astype(np.float64)
        labels = logits.argmax(0)
        p = np.exp(logits - logits.max(0))
        confidence = (p.max(0) / p.sum(0)).astype(np.float32)
        top2 = np.sort(logits, axis=0)[-2:]
        margin = top2[1] - top2[0]
    out_h, out_w = labels.shape
    u = x0 + (np.arange(src_w) + 0.5) * w / src_w
    v = y0 + (np.arange(src_h) + 0.5) * h / src_h
    cols = np.clip(np.floor(u * out_w / width).astype(int), 0, out_w - 1)
    rows = np.clip(np.floor(v * out_h / height).astype(int), 0, out_h - 1)
    inside = ((v >= 0) & (v < height))[:, None] & ((u >= 0) & (u < width))[None, :]
    result = np.where(inside, labels[np.ix_(rows, cols)], 255)
    conf = None if confidence is None else np.where(inside, confidence[np.ix_(rows, cols)], 0.0)
    gap = None if margin is None else np.where(inside, margin[np.ix_(rows, cols)], np.inf)
    return result, conf, gap


def frames_for(seed: int = 0) -> list[np.ndarray]:
    """Smooth random frames (blobs, not noise), at FRAME_SIZES."""
    import cv2

    rng = np.random.default_rng(seed)
    return [cv2.resize(rng.integers(0, 256, (9, 13, 3), np.uint8), size, interpolation=cv2.INTER_CUBIC)
            for size in FRAME_SIZES]


def assert_matches(labels: np.ndarray, confidence: np.ndarray | None, expected: tuple) -> None:
    """Equal wherever the decision is not a near tie (top-2 logit margin > 1), and on >= 97 % of all pixels:
    the package resizes uint8 frames in fixed point, the reference in floats, and one level of
    difference in a pixel can flip a near tie (a flipped 1/4-resolution output pixel covers many frame pixels)."""
    want_labels, want_confidence, margin = expected
    assert labels.shape == want_labels.shape
    assert (labels == want_labels).mean() >= 0.97, (labels != want_labels).sum()
    if margin is not None:
        decisive = margin > 1.0
        assert (labels[decisive] == want_labels[decisive]).all() and decisive.mean() > 0.5
    if want_confidence is None:
        assert confidence is None
    else:
        same = labels == want_labels
        assert np.abs(confidence[same] - want_confidence[same]).mean() < 1e-2


# --- Segmenter ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(CONVENTIONS))
def test_segmenter_runs_each_convention_like_the_independent_computation(tmp_path, name):
    path, card = build(tmp_path, name)
    segmenter = Segmenter(path, backend="onnxruntime", cache_dir=tmp_path / "cache")
    assert segmenter.label_set.name == f"{name}_classes" and segmenter.modalities == ("rgb",)
    for frame in frames_for():
        result = segmenter.segment(rgb=frame)
        assert_matches(result.labels, result.confidence, reference(path, card, frame))
        assert not result.refined.any()


def test_what_the_graph_says_is_read_from_it(tmp_path):
    from seg_perception.engines.source import ModelSource

    bindings = {name: ModelSource.open(build(tmp_path, name)[0]).binding for name in CONVENTIONS}
    segformer = bindings["segformer"]
    assert (segformer.input.name, segformer.layout, segformer.output.name, segformer.kind) == (
        "pixel_values", "NCHW", "logits", "logits")
    assert segformer.size == (96, 64) and segformer.stride is None  # dynamic: measured at run time
    assert bindings["mmseg"].size == (96, 48) and bindings["mmseg"].stride == (1.0, 1.0)
    assert bindings["class_ids"].kind == "class_ids"
    assert (bindings["nhwc_uint8"].layout, bindings["nhwc_uint8"].dtype) == ("NHWC", "uint8")


def test_a_dynamic_network_without_a_size_runs_each_frame_at_its_own_size(tmp_path):
    path, card = build(tmp_path, "segformer", card_beside=False)
    del card["input"]["size"]
    card["input"]["resize"] = "stretch"
    segmenter = Segmenter(path, card=ModelCard.from_dict(card), backend="onnxruntime")
    assert segmenter.spec.per_frame
    frame = frames_for()[0]  # 150x100 → 160x96 (multiples of 32)
    result = segmenter.segment(rgb=frame)
    assert_matches(result.labels, result.confidence,
                   reference(path, {**card, "input": {**card["input"], "size": [160, 96]}}, frame))


def test_letterboxed_quarter_resolution_output_lands_where_the_frame_is(tmp_path):
    """The regression: the letterbox box was applied in input pixels to the 1/4-size output, so labels
    came from the wrong place (and from padding). A model whose label is its input's brightness shows it."""
    path = tmp_path / "bright.onnx"

    class Bright(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:  # logits at 1/4: class 1 where bright
            mean = nn.functional.avg_pool2d(x.mean(1, keepdim=True), 4)
            return torch.cat([0.5 - mean, mean - 0.5], dim=1) * 20

    torch.onnx.export(Bright(), (torch.zeros(1, 3, 64, 64),), str(path), input_names=["x"], output_names=["y"],
                      opset_version=17, dynamo=False)
    card = ModelCard.from_dict({"label_set": _labels(2, "dark_bright"), "input": {"resize": "letterbox"},
                                "output": {"kind": "logits"}})
    frame = np.zeros((32, 128, 3), np.uint8)  # 4:1 into a square: a 64x16 band in the middle of the input
    frame[:, 64:] = 255  # right half bright
    labels = Segmenter(path, card=card, backend="onnxruntime").segment(rgb=frame).labels
    assert (labels[:, :60] == 0).all() and (labels[:, 68:] == 1).all()


# --- refusals ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("change", "message"), [
    ({"input": {"name": "image"}}, r"no input 'image'; its inputs: pixel_values"),
    ({"input": {"layout": "NHWC"}}, r"input layout NHWC does not fit pixel_values \(1, 3, \?, \?\).*input.layout: NCHW"),
    ({"input": {"dtype": "uint8"}}, "the card says input dtype uint8 but the graph's 'pixel_values' is float32"),
    ({"output": {"name": "probs"}}, r"no output 'probs'; its outputs: logits"),
    ({"output": {"kind": "class_ids"}}, "holds floats, so it cannot be class_ids"),
    ({"label_set": "sim_offroad"}, r"has 6 channels \(NCHW\) but label set 'sim_offroad'"),
    ({"inputs": {}}, r"unknown fields \['inputs'\]; accepted: label_set"),
    ({"input": {"mean": [1, 2]}}, "mean must be three finite numbers"),
    ({"extra_inputs": {"scale": 1.0}}, r"extra_inputs \['scale'\] are not graph inputs"),
    ({"class_map": {"target": "sim_offroad", "mapping": {9: 1}}}, "source id 9 is not a class"),
])
def test_every_refusal_names_what_was_wrong_and_what_to_do(tmp_path, change, message):
    from seg_perception.engines.source import ModelSource

    path, card = build(tmp_path, "segformer", card_beside=False)
    changed = {**card, **{k: ({**card.get(k, {}), **v} if k in ("input", "output") else v) for k, v in change.items()}}
    with pytest.raises(CardError, match=message):
        ModelSource.open(path, ModelCard.from_dict(changed))


def test_an_output_kind_that_cannot_be_inferred_is_refused(tmp_path):
    path = tmp_path / "mul.onnx"

    class Scaled(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * 2.0

    torch.onnx.export(Scaled(), (torch.zeros(1, 3, 32, 32),), str(path), input_names=["x"], output_names=["y"],
                      opset_version=17, dynamo=False)
    with pytest.raises(CardError, match="cannot infer what output y .*made by a Mul node.*set output.kind"):
        Segmenter(path, card=ModelCard.from_dict({"label_set": _labels(3, "three")}), backend="onnxruntime")


def test_a_network_without_a_card_says_how_to_describe_it(tmp_path):
    path, _ = build(tmp_path, "mmseg", card_beside=False)
    with pytest.raises(EngineError, match=r"without seg_perception metadata or a model card.*mmseg\.yaml"):
        Segmenter(path, backend="onnxruntime")


def test_a_plan_is_refused_clearly_without_tensorrt(tmp_path):
    pytest.importorskip("yaml")
    try:
        import tensorrt  # noqa: F401
        pytest.skip("TensorRT is installed here: the refusal path does not apply")
    except ImportError:
        pass
    plan = tmp_path / "model.plan"
    plan.write_bytes(b"not an engine")
    plan.with_suffix(".yaml").write_text(yaml.safe_dump({"label_set": "sim_offroad"}))
    with pytest.raises(EngineError, match=r"prebuilt TensorRT engine, which runs only where TensorRT"):
        Segmenter(plan)


def test_the_card_command_embeds_a_card_that_then_travels_inside_the_file(tmp_path, capsys):
    import json

    from seg_perception.cli import main

    path, card = build(tmp_path, "mmseg")
    embedded = tmp_path / "copy" / "mmseg_carded.onnx"
    assert main(["card", str(path), "--embed", str(embedded)]) == 0
    found = json.loads(capsys.readouterr().out)
    assert found["output"]["kind"] == "logits" and found["measured"]["output_shape"] == [1, 5, 48, 96]
    assert not embedded.with_suffix(".yaml").exists()
    frame = frames_for()[0]
    assert_matches(*_run(Segmenter(embedded, backend="onnxruntime"), frame), reference(path, card, frame))
    assert main(["card", str(tmp_path / "nosuch.onnx")]) == 1
    assert "error:" in capsys.readouterr().err


def _run(segmenter: Segmenter, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    result = segmenter.segment(rgb=frame)
    return result.labels, result.confidence


# --- class maps --------------------------------------------------------------------------------

def _cityscapes_to_seven(tmp_path: Path) -> Path:
    """19 Cityscapes classes merged into 7 (a few ignored)."""
    seven = LabelSet("seven", tuple(LabelClass(i, n, (i * 30, 255 - i * 30, 100)) for i, n in enumerate(
        ("flat", "construction", "object", "nature", "sky", "human", "vehicle")))).to_dict()
    (tmp_path / "seven.yaml").write_text(yaml.safe_dump(seven))
    groups = {"flat": [0, 1], "construction": [2, 3, 4], "object": [5, 6, 7], "nature": [8, 9], "sky": [10],
              "human": [11, 12], "vehicle": [13, 14, 15, 16, 17, 18]}
    mapping = {i: name for name, ids in groups.items() for i in ids}
    path = tmp_path / "cityscapes_to_seven.yaml"
    path.write_text(yaml.safe_dump({"source": "cityscapes19", "target": str(tmp_path / "seven.yaml"),
                                    "mapping": mapping}))
    return path


def test_a_19_class_model_merged_to_7_publishes_and_scores_the_merged_classes(tmp_path):
    from seg_perception.evaluation import EvaluationReport

    path = tmp_path / "city.onnx"
    torch.onnx.export(_Head(19).eval(), (torch.zeros(1, 3, 48, 64),), str(path), input_names=["x"],
                      output_names=["y"], opset_version=17, dynamo=False)
    card = {"label_set": "cityscapes19", "input": IMAGENET}
    (tmp_path / "city.yaml").write_text(yaml.safe_dump(card))
    class_map = _cityscapes_to_seven(tmp_path)
    segmenter = Segmenter(path, backend="onnxruntime", class_map=str(class_map))
    assert segmenter.label_set.name == "seven"
    seven = {"flat": 0, "construction": 1, "object": 2, "nature": 3, "sky": 4, "human": 5, "vehicle": 6}
    mapping = yaml.safe_load(class_map.read_text())["mapping"]
    merge = np.array([seven[mapping[i]] for i in range(19)])
    report = EvaluationReport(segmenter.label_set)
    rng = np.random.default_rng(3)
    confusion = np.zeros((7, 7), np.int64)
    for frame in frames_for():
        labels19 = reference(path, card, frame)[0]
        want = merge[labels19]
        got = segmenter.segment(rgb=frame).labels
        assert (got == want).mean() >= 0.97
        truth = rng.integers(0, 7, got.shape).astype(np.uint8)
        report.score_frame(got, truth)
        np.add.at(confusion, (truth.ravel(), got.ravel()), 1)
    iou = np.diag(confusion) / (confusion.sum(0) + confusion.sum(1) - np.diag(confusion))
    assert report.confusion.miou() == pytest.approx(np.nanmean(iou), abs=1e-9)


def test_an_unknown_class_map_id_lists_the_accepted_ones(tmp_path):
    path, _ = build(tmp_path, "class_ids")
    bad = tmp_path / "bad_map.yaml"
    bad.write_text(yaml.safe_dump({"target": "sim_offroad", "mapping": {7: 1}}))
    with pytest.raises(EngineError, match=r"maps ids \[7\], which label set 'class_ids_classes' does not have; its "
                                          r"ids: \[0, 1, 2, 3\]"):
        Segmenter(path, backend="onnxruntime", class_map=str(bad))


# --- replay --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def drive(tmp_path_factory):
    from seg_perception.sim import World
    from seg_perception.sim.bag import write_bag

    path = tmp_path_factory.mktemp("bags") / "drive"
    write_bag(path, World(110_000, "day"), 2, lidar=False, events=False)
    return path


def _images(mcap_dir: Path, topic: str) -> list[np.ndarray]:
    """The images on `topic`, read with the mcap library and rosbags' CDR deserialiser."""
    from mcap.reader import make_reader
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS2_KILTED)
    (path,) = mcap_dir.glob("*.mcap")
    images = []
    with open(path, "rb") as stream:
        for _, channel, message in make_reader(stream).iter_messages(topics=[topic]):
            msg = store.deserialize_cdr(message.data, "sensor_msgs/msg/Image")
            channels = {"rgb8": 3, "mono8": 1, "32FC1": 1}[msg.encoding]
            dtype = np.float32 if msg.encoding == "32FC1" else np.uint8
            images.append(np.frombuffer(msg.data, dtype).reshape(msg.height, msg.width, channels).squeeze(-1)
                          if channels == 1 else np.frombuffer(msg.data, dtype).reshape(msg.height, msg.width, 3))
    return images


@pytest.mark.parametrize("name", sorted(CONVENTIONS))
def test_replay_publishes_what_the_independent_computation_gives(tmp_path, drive, name):
    from dataclasses import replace

    from seg_perception.pipeline import PipelineConfig
    from seg_perception.pipeline.replay import replay_bag

    path, card = build(tmp_path, name)
    config = PipelineConfig.load()
    config = replace(config, model=str(path), backend="onnxruntime", mapping=replace(config.mapping, enabled=False))
    report = replay_bag(drive, config, tmp_path / "out")
    # The drive's ground truth is in the synthetic world's classes, not the model's: counted, not scored.
    assert report.frames == 2 and report.frames_scored == 0
    assert sum(n for reason, n in report.skipped.items() if reason.startswith("ground truth not scored")) == 2
    frames = _images(drive, "/camera/image_raw")
    labels = _images(tmp_path / "out" / "drive", "/seg_perception/labels")
    confidences = _images(tmp_path / "out" / "drive", "/seg_perception/confidence")
    assert len(labels) == len(frames) == 2
    assert len(confidences) == (0 if name == "class_ids" else 2)  # class ids carry no confidence
    for i, frame in enumerate(frames):
        assert_matches(labels[i], confidences[i] if confidences else None, reference(path, card, frame))


def test_replay_publishes_the_merged_classes_and_scores_ground_truth_of_another_id_space(tmp_path, drive):
    """A Cityscapes-19 network merged to 7 classes by --class-map, scored against the drive's synthetic
    ground truth (sim_offroad ids) mapped onto the same 7 by --gt-map: the report's mIoU is the one
    computed here from the output bag's labels and the bag's own ground truth."""
    from dataclasses import replace

    from seg_perception.pipeline import PipelineConfig
    from seg_perception.pipeline.replay import replay_bag

    path = tmp_path / "city.onnx"
    torch.onnx.export(_Head(19).eval(), (torch.zeros(1, 3, 48, 64),), str(path), input_names=["x"],
                      output_names=["y"], opset_version=17, dynamo=False)
    (tmp_path / "city.yaml").write_text(yaml.safe_dump({"label_set": "cityscapes19", "input": IMAGENET}))
    class_map = _cityscapes_to_seven(tmp_path)
    sim_to_seven = {"sky": "sky", "road": "flat", "trail": "flat", "grass": "nature", "mud_water": "flat",
                    "tree_trunk": "nature", "foliage": "nature", "bush": "nature", "rock": "object",
                    "building": "construction", "fence": "construction", "pole": "object", "vehicle": "vehicle",
                    "person": "human"}
    gt_map = tmp_path / "sim_to_seven.yaml"
    gt_map.write_text(yaml.safe_dump({"source": "sim_offroad", "target": str(tmp_path / "seven.yaml"),
                                      "mapping": sim_to_seven}))
    config = PipelineConfig.load()
    config = replace(config, model=str(path), backend="onnxruntime", class_map=str(class_map), gt_map=str(gt_map),
                     mapping=replace(config.mapping, enabled=False))
    report = replay_bag(drive, config, tmp_path / "out")
    assert report.frames_scored == 2 and report.label_set.name == "seven"
    published = _images(tmp_path / "out" / "drive", "/seg_perception/labels")
    truth = _images(drive, "/camera/labels")
    sim = [c["name"] for c in yaml.safe_load(open(_label_file("sim_offroad")))["classes"]]
    seven = ["flat", "construction", "object", "nature", "sky", "human", "vehicle"]
    lookup = np.full(256, 255)
    lookup[:len(sim)] = [seven.index(sim_to_seven[n]) for n in sim]
    confusion = np.zeros((7, 7), np.int64)
    for got, want in zip(published, truth):
        assert got.max() < 7  # every model class lands in one of the seven
        mapped = lookup[want]
        valid = mapped != 255
        np.add.at(confusion, (mapped[valid], got[valid]), 1)
    iou = np.diag(confusion) / (confusion.sum(0) + confusion.sum(1) - np.diag(confusion))
    assert report.confusion.miou() == pytest.approx(np.nanmean(iou), abs=1e-9)


def _label_file(name: str) -> Path:
    from seg_perception.resources import resource_dir

    return resource_dir("config/labels", "*.yaml") / f"{name}.yaml"
