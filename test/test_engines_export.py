"""ONNX export: parity with PyTorch for every shipped model and K, the metadata contract, bad files."""
from __future__ import annotations

import json
import sys

import numpy as np
import onnx
import pytest

from seg_perception.engines import EngineError, EngineSpec, ModelSource, Preprocessor, export_onnx, read_onnx_metadata
from seg_perception.engines.export import check_parity
from seg_perception.models import SHIPPED
from seg_perception.models.config import quarter_size
from seg_perception.sim.dataset import calibration_frames

WIDTH, HEIGHT = 320, 180


@pytest.fixture(scope="module")
def frames():
    """Two frames of the synthetic world's validation split (real scenes, so labels are meaningful)."""
    return list(calibration_frames(2))


def _feeds(source, frames, spec):
    config = source.config
    pre = Preprocessor(config.modalities, config.event_bins, spec.width, spec.height)
    feeds = [pre.feed(frame) for frame in frames]
    if len(config.modalities) > 1:  # and one with modalities missing (present = 0)
        feeds.append(pre.feed({"rgb": frames[0]["rgb"]}))
    return feeds


def _cases() -> list:
    return [pytest.param(name, k, id=f"{name}-k{'default' if k is None else k}")
            for name in SHIPPED for k in ((None,) if name.startswith("teacher") else (0, None))]


@pytest.mark.parametrize(("name", "k"), _cases())
def test_onnx_runtime_matches_pytorch(name, k, frames, tmp_path):
    source = ModelSource.open(name)
    spec = source.spec(input_size=(WIDTH, HEIGHT), k=k)
    path = export_onnx(source.checkpoint(), tmp_path / "model.onnx", spec, with_logits=True)
    onnx.checker.check_model(str(path), full_check=True)
    parity = check_parity(source.checkpoint(), path, spec, _feeds(source, frames, spec))
    assert parity["label_agreement"] >= 0.999
    assert parity["max_logit_diff"] < 2e-3
    assert parity["max_confidence_diff"] < 1e-4


def test_refined_mask_has_exactly_k_cells(frames, tmp_path):
    import onnxruntime

    source = ModelSource.open("student_rgb")
    spec = source.spec(input_size=(WIDTH, HEIGHT), k=123)
    path = export_onnx(source.checkpoint(), tmp_path / "k.onnx", spec)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    labels, confidence, refined = session.run(None, _feeds(source, frames[:1], spec)[0])
    assert refined.shape == (1, 1, quarter_size(HEIGHT), quarter_size(WIDTH))
    assert refined.sum() == 123 and set(np.unique(refined)) <= {0.0, 1.0}
    assert labels.dtype == np.int32 and labels.shape == (1, HEIGHT, WIDTH)
    # Confidence is a probability of the winning class among C classes: in [1/C, 1].
    classes = source.config.num_classes
    assert confidence.min() >= 1.0 / classes - 1e-6 and confidence.max() <= 1.0 + 1e-6


def test_default_k_is_the_refine_fraction_of_the_quarter_grid():
    source = ModelSource.open("student_rgb")
    spec = source.spec(input_size=(640, 360))
    assert spec.k == round(source.config.refine_fraction * 90 * 160)
    assert ModelSource.open("teacher").spec().k == 0
    assert source.spec() == EngineSpec(320, 180, round(source.config.refine_fraction * 45 * 80))  # training size


def test_exported_file_carries_label_set_and_contract(tmp_path):
    source = ModelSource.open("student_rgb")
    spec = source.spec(k=10)
    path = export_onnx(source.checkpoint(), tmp_path / "m.onnx", spec)
    document = read_onnx_metadata(path)
    assert document["spec"] == spec.to_dict()
    assert document["checkpoint"]["label_set"]["name"] == "sim_offroad"
    assert document["inputs"] == ["x", "present"] and document["outputs"] == ["labels", "confidence", "refined"]
    reopened = ModelSource.open(path)
    assert reopened.kind == "onnx" and reopened.spec() == spec
    assert reopened.label_set == source.label_set


@pytest.mark.parametrize("without", ["onnx", "onnxruntime"])
def test_export_metadata_reads_alike_without_onnx_or_without_onnxruntime(tmp_path, monkeypatch, without):
    """Opening an export (and checking a cached one) reads its metadata through ONNX Runtime, never importing
    onnx (~1 s of a start); where ONNX Runtime is missing, through onnx."""
    source = ModelSource.open("student_rgb")
    path = export_onnx(source.checkpoint(), tmp_path / "m.onnx", source.spec(k=10))
    expected = read_onnx_metadata(path)
    monkeypatch.setitem(sys.modules, without, None)  # `import <without>` raises ImportError
    assert read_onnx_metadata(path) == expected
    assert ModelSource.open(path).exported_spec == source.spec(k=10)
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07garbage" * 100)
    with pytest.raises(EngineError, match="not a readable ONNX model"):
        read_onnx_metadata(corrupt)


def test_fp16_export_keeps_fp32_io_and_mostly_agrees(frames, tmp_path):
    source = ModelSource.open("student_rgb")
    spec = source.spec(precision="fp16")
    path = export_onnx(source.checkpoint(), tmp_path / "half.onnx", spec)
    model = onnx.load(str(path))
    weights = [t for t in model.graph.initializer if len(t.dims) == 4]
    assert weights and all(t.data_type == onnx.TensorProto.FLOAT16 for t in weights)
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    parity = check_parity(source.checkpoint(), path, spec, _feeds(source, frames, spec))
    assert parity["label_agreement"] > 0.99


def test_int8_cannot_be_exported_directly(tmp_path):
    source = ModelSource.open("student_rgb")
    with pytest.raises(EngineError, match="int8 comes from quantising"):
        export_onnx(source.checkpoint(), tmp_path / "m.onnx", source.spec(precision="int8"))


def test_foreign_and_corrupt_onnx_files_are_refused(tmp_path):
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07garbage" * 100)
    with pytest.raises(EngineError, match="not a readable ONNX model"):
        ModelSource.open(corrupt)
    foreign = tmp_path / "foreign.onnx"
    node = onnx.helper.make_node("Relu", ["x"], ["y"])
    graph = onnx.helper.make_graph([node], "g", [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
                                   [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])])
    onnx.save(onnx.helper.make_model(graph), str(foreign))
    with pytest.raises(EngineError, match="without seg_perception metadata or a model card"):
        ModelSource.open(foreign)
    with pytest.raises(EngineError, match="does not exist"):
        read_onnx_metadata(tmp_path / "missing.onnx")
    with pytest.raises(EngineError, match="neither a shipped model"):
        ModelSource.open("no_such_model")


def test_onnx_source_refuses_another_spec(tmp_path):
    from seg_perception.engines import ArtifactCache

    source = ModelSource.open("student_rgb")
    spec = source.spec(k=5)
    path = export_onnx(source.checkpoint(), tmp_path / "m.onnx", spec)
    exported = ModelSource.open(path)
    cache = ArtifactCache(tmp_path / "cache")
    assert exported.onnx(spec, cache) == path
    with pytest.raises(EngineError, match="was exported for 320x180, k=5, fp32; asked for 640x360"):
        exported.onnx(EngineSpec(640, 360, 5), cache)
    with pytest.raises(EngineError, match="needs the .safetensors checkpoint"):
        exported.checkpoint()


def _onnx_with_metadata(tmp_path, raw: str):
    path = tmp_path / "m.onnx"
    node = onnx.helper.make_node("Relu", ["x"], ["y"])
    graph = onnx.helper.make_graph([node], "g", [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
                                   [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])])
    model = onnx.helper.make_model(graph)
    onnx.helper.set_model_props(model, {"seg_perception": raw})
    onnx.save(model, str(path))
    return path


def _export_document(**changes):
    from seg_perception.models.checkpoint import read_metadata
    from seg_perception.models.shipped import shipped_weights

    document = {"format": "seg_perception.onnx/1", "checkpoint": read_metadata(shipped_weights("student_rgb")),
                "spec": {"width": 64, "height": 64, "k": 8, "precision": "fp32"}, "inputs": [], "outputs": []}
    return json.dumps({**document, **changes})


@pytest.mark.parametrize(("raw", "match"), [
    ("{not json", r"metadata is not JSON"),
    ("[]", r"has export format 'list'; this version reads"),
    ('{"format": "seg_perception.onnx/0"}', r"has export format 'seg_perception.onnx/0'"),
    (lambda: _export_document(checkpoint=None), r"checkpoint metadata is a NoneType; a JSON object expected"),
    (lambda: _export_document(checkpoint={"format": "seg_perception.checkpoint/1"}), r"'config' is nothing"),
    (lambda: _export_document(spec=[64, 64]), r"its spec \[64, 64\] is not an engine spec"),
    (lambda: _export_document(spec={"width": 64, "height": 64}), r"is not an engine spec"),
    (lambda: _export_document(spec={"width": "64", "height": 64, "k": 1}), r"width '64' is invalid; accepted: an integer"),
])
def test_malformed_onnx_metadata_is_an_engine_error(tmp_path, raw, match):
    path = _onnx_with_metadata(tmp_path, raw() if callable(raw) else raw)
    with pytest.raises(EngineError, match=match):
        read_onnx_metadata(path)
