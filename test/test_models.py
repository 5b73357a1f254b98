"""The segmentation networks: shapes, hard-region refinement, modality handling, checkpoints, export."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from seg_perception.labels import load_label_set
from seg_perception.models import (
    ModelError,
    build_model,
    load_checkpoint,
    modality_dropout,
    save_checkpoint,
    stack_inputs,
    student_config,
    teacher_config,
)

ALL = ("rgb", "thermal", "events")
SUBSETS = [s for n in (1, 2, 3) for s in itertools.combinations(ALL, n)]


def _inputs(config, n=2, height=72, width=128, given=None):
    generator = torch.Generator().manual_seed(0)
    tensors = {m: torch.rand(n, config.channels(m), height, width, generator=generator)
               for m in (given or config.modalities)}
    return stack_inputs(tensors, config)


@pytest.fixture(scope="module")
def student():
    torch.manual_seed(0)
    return build_model(student_config(14, ALL)).eval()


@pytest.mark.parametrize("factory", [student_config, teacher_config])
@pytest.mark.parametrize("given", SUBSETS)
def test_every_modality_subset_gives_full_resolution_logits(factory, given):
    torch.manual_seed(0)
    model = build_model(factory(14, ALL)).eval()
    x, present = _inputs(model.config, given=given)
    assert present.tolist() == [[float(m in given) for m in ALL]] * 2
    with torch.inference_mode():
        out = model(x, present)
    assert out["logits"].shape == (2, 14, 72, 128) and out["logits"].dtype == torch.float32
    assert torch.isfinite(out["logits"]).all()
    assert out["features"].shape[-2:] == (9, 16)  # 1/8


def test_absent_modality_is_not_read(student):
    """Whatever sits in an absent modality's channels, the output is the same."""
    x, present = _inputs(student.config, given=("rgb",))
    noisy = x.clone()
    noisy[:, 3:] = torch.randn_like(noisy[:, 3:]) * 100
    with torch.inference_mode():
        assert torch.equal(student(x, present)["logits"], student(noisy, present)["logits"])


def test_k_zero_is_the_base_prediction_exactly(student):
    x, present = _inputs(student.config)
    with torch.inference_mode():
        out = student(x, present, 0)
        quarter = out["selector"].shape[-2:]
        base = F.interpolate(F.interpolate(out["coarse"], size=quarter, mode="bilinear", align_corners=False),
                             size=x.shape[-2:], mode="bilinear", align_corners=False)
    assert torch.equal(out["logits"], base)
    assert out["refined"].sum() == 0


@pytest.mark.parametrize("k", [1, 17, 200])
def test_refinement_touches_exactly_the_k_hardest_locations(student, k):
    x, present = _inputs(student.config)
    with torch.inference_mode():
        out = student(x, present, k)
        base = student(x, present, 0)
    refined = out["refined"].flatten(1)
    assert refined.sum(1).tolist() == [k, k]
    # the refined locations are the selector's top-k (computed independently with argsort)
    scores = out["selector"].flatten(1).numpy()
    for sample in range(2):
        hardest = set(np.argsort(-scores[sample], kind="stable")[:k].tolist())
        assert set(np.flatnonzero(refined[sample].numpy()).tolist()) == hardest
    # outside the bilinear footprint of refined locations the logits equal the base path
    footprint = F.interpolate(F.max_pool2d(out["refined"], 3, 1, 1), size=x.shape[-2:], mode="nearest") > 0
    same = ~footprint.expand_as(out["logits"])
    assert torch.equal(out["logits"][same], base["logits"][same])
    assert not torch.equal(out["logits"], base["logits"])


def test_modality_dropout_keeps_one_modality_per_sample():
    drop = modality_dropout(1000, 3, 0.9, torch.Generator().manual_seed(1))
    assert drop.dtype == torch.bool and (~drop).any(1).all()
    assert 0.4 < drop.float().mean() < 0.7  # 0.9 on 2 of 3 modalities


def test_stack_inputs_rejects_bad_tensors():
    config = student_config(14, ("rgb", "thermal"))
    with pytest.raises(ModelError, match="none of the model's modalities"):
        stack_inputs({"events": torch.zeros(1, 5, 8, 8)}, config)
    with pytest.raises(ModelError, match=r"thermal input has shape \(1, 3, 8, 8\); expected \(1, 1, 8, 8\)"):
        stack_inputs({"rgb": torch.zeros(1, 3, 8, 8), "thermal": torch.zeros(1, 3, 8, 8)}, config)


def test_student_is_small_and_the_teacher_larger():
    student = build_model(student_config(14, ALL))
    teacher = build_model(teacher_config(14, ALL))
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(student) <= 4_000_000
    assert count(teacher) > 4 * count(student)


def test_checkpoint_round_trip_and_rejections(tmp_path, student):
    labels = load_label_set("sim_offroad")
    path = save_checkpoint(tmp_path / "s.safetensors", student, labels, model_id="s", training={"epochs": 1})
    loaded = load_checkpoint(path, label_set="sim_offroad", architecture="student", modalities=("rgb",))
    assert loaded.config == student.config and loaded.label_set == labels and loaded.model_id == "s"
    for name, tensor in student.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[name], tensor)
    x, present = _inputs(student.config)
    with torch.inference_mode():
        assert torch.equal(loaded.model(x, present)["logits"], student(x, present)["logits"])
    with pytest.raises(ModelError, match="trained on label set 'sim_offroad', not 'cityscapes19'"):
        load_checkpoint(path, label_set="cityscapes19")
    with pytest.raises(ModelError, match="is a 'student' model, not 'teacher'"):
        load_checkpoint(path, architecture="teacher")
    with pytest.raises(ModelError, match="cannot use"):
        load_checkpoint(build_path := path, modalities=("lidar",))
    assert build_path == path
    wrong = build_model(student_config(13, ALL))
    with pytest.raises(ModelError, match="has 14 classes but the model predicts 13"):
        save_checkpoint(tmp_path / "w.safetensors", wrong, labels, model_id="w")
    garbage = tmp_path / "g.safetensors"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="not a readable safetensors checkpoint"):
        load_checkpoint(garbage)


def test_checkpoint_with_weights_of_another_architecture_is_rejected(tmp_path):
    from safetensors.torch import load_file, save_file

    labels = load_label_set("sim_offroad")
    path = save_checkpoint(tmp_path / "s.safetensors", build_model(student_config(14)), labels, model_id="s")
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
    state = load_file(str(path))
    state.pop(next(iter(state)))
    save_file(state, str(tmp_path / "broken.safetensors"), metadata=metadata)
    with pytest.raises(ModelError, match="weights do not fit a student"):
        load_checkpoint(tmp_path / "broken.safetensors")


def test_student_exports_to_onnx_and_runs(tmp_path, student):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    x, present = _inputs(student.config, n=1)

    class Exported(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, x, present):
            out = self.model(x, present, 50)
            return out["logits"], out["refined"]

    path = tmp_path / "student.onnx"
    torch.onnx.export(Exported(student).eval(), (x, present), str(path), input_names=["x", "present"],
                      output_names=["logits", "refined"], opset_version=17, dynamo=False)
    onnx.checker.check_model(str(path))
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert {"TopK", "GatherElements", "ScatterElements"} <= ops
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    logits, refined = session.run(None, {"x": x.numpy(), "present": present.numpy()})
    with torch.inference_mode():
        expected = student(x, present, 50)
    assert refined.sum() == 50
    np.testing.assert_allclose(logits, expected["logits"].numpy(), atol=1e-4)


def _with_metadata(tmp_path, raw: str, name: str = "m.safetensors"):
    """A copy of a saved student checkpoint with its seg_perception metadata replaced by `raw`."""
    from safetensors.torch import save_file

    state = build_model(student_config(14)).state_dict()
    path = tmp_path / name
    save_file(state, str(path), metadata={"seg_perception": raw})
    return path


def _document(**changes):
    import json

    document = {"format": "seg_perception.checkpoint/1", "model_id": "m", "config": student_config(14).to_dict(),
                "label_set": load_label_set("sim_offroad").to_dict(), "inputs": {}, "training": {}}
    document.update(changes)
    return json.dumps({k: v for k, v in document.items() if v is not ...})


@pytest.mark.parametrize(("raw", "match"), [
    ("{not json", r"its seg_perception metadata is not JSON"),
    ("[1, 2]", r"checkpoint metadata is a list; a JSON object expected"),
    (_document(config=...), r"checkpoint metadata 'config' is nothing; a JSON object expected"),
    (_document(label_set=[1]), r"checkpoint metadata 'label_set' is list; a JSON object expected"),
    (_document(model_id=3), r"'model_id' is int; a string expected"),
    (_document(training={"config": {"image_size": [640]}}), r"training image_size \[640\] is invalid"),
    (_document(config={**student_config(14).to_dict(), "num_classes": "14"}), r"num_classes '14' is invalid"),
    (_document(config={**student_config(14).to_dict(), "widths": 128}), r"widths 128 is invalid; accepted: 3"),
    (_document(config={**student_config(14).to_dict(), "depths": [2, 3, 1000]}), r"depths 1000 is invalid"),
    (_document(config={**student_config(14).to_dict(), "modalities": "rgb"}), r"modalities 'rgb' invalid"),
    (_document(config={**student_config(14).to_dict(), "refine_fraction": None}), r"refine_fraction must be a number"),
    (_document(config={**student_config(14).to_dict(), "refine_fraction": 10**400}), r"refine_fraction must be a number"),
    (_document(config={**student_config(14).to_dict(), "colour": 1}), r"unknown \['colour'\]; accepted keys"),
    (_document(config={"num_classes": 14}), r"missing \['architecture'\]"),
    (_document(label_set={"name": "x", "classes": [{"id": 0, "name": "a", "color": [300, 0, 0]}]}),
     r"colour \[300, 0, 0\]; accepted"),
])
def test_malformed_checkpoint_metadata_is_a_model_error(tmp_path, raw, match):
    path = _with_metadata(tmp_path, raw)
    with pytest.raises(ModelError, match=match):
        load_checkpoint(path)


def test_config_claiming_huge_widths_is_refused_before_the_model_is_built(tmp_path, monkeypatch):
    from seg_perception.models import checkpoint

    # The student's weights (about 1.7 MB) with a config that would need gigabytes.
    huge = {**student_config(14).to_dict(), "widths": [2048, 2048, 2048], "expansion": 16, "decoder_width": 2048}
    path = _with_metadata(tmp_path, _document(config=huge))
    assert path.stat().st_size < 2_000_000
    monkeypatch.setattr(checkpoint, "build_model", _fail_outside_meta(checkpoint.build_model))
    with pytest.raises(ModelError, match=r"weights do not fit a student with this config .*wrong shape"):
        load_checkpoint(path)


def _fail_outside_meta(build):
    """`build`, failing unless called on torch's meta device (where tensors have no storage)."""
    def guarded(config):
        if torch.empty(0).device.type != "meta":
            raise AssertionError("built a model with storage for a config the weights do not fit")
        return build(config)

    return guarded
