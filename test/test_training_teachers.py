"""Any carded network teaches the student: its class log-probabilities (class maps summed), and a
`seg-perception distill --teacher net.onnx` run that records the teacher in the checkpoint."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch
import yaml

from test_engines_cards import _Head, _labels

from seg_perception.labels import LabelSet, load_label_set


def _network(tmp_path, classes: int, size=(64, 48), label_set=None):
    path = tmp_path / f"teacher{classes}.onnx"
    torch.onnx.export(_Head(classes).eval(), (torch.zeros(1, 3, size[1], size[0]),), str(path), input_names=["x"],
                      output_names=["y"], opset_version=17, dynamo=False)
    path.with_suffix(".yaml").write_text(yaml.safe_dump({"label_set": label_set or _labels(classes, f"t{classes}")}))
    return path


def _softmax(path, frame: np.ndarray) -> np.ndarray:
    """The network's class probabilities on a frame at its own input size (no resize: exact)."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    logits = session.run(None, {"x": (frame.astype(np.float32) / 255.0).transpose(2, 0, 1)[None]})[0][0]
    e = np.exp(logits - logits.max(0))
    return e / e.sum(0)


def test_a_network_teacher_gives_its_class_probabilities_merged_by_its_class_map(tmp_path):
    from seg_perception.training.teachers import NetworkTeacher

    path = _network(tmp_path, 6)
    target = LabelSet.from_dict(_labels(3, "three"))
    (tmp_path / "three.yaml").write_text(yaml.safe_dump(target.to_dict()))
    groups = {0: [0, 3], 1: [1, 4], 2: [2]}  # class 5 is ignored: its probability is left out
    (tmp_path / "six_to_three.yaml").write_text(yaml.safe_dump({
        "target": str(tmp_path / "three.yaml"), "mapping": {s: t for t, ids in groups.items() for s in ids}}))
    teacher = NetworkTeacher(path, target, class_map=str(tmp_path / "six_to_three.yaml"))
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (2, 48, 64, 3), np.uint8)
    out = teacher({"rgb": torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0})["logits"]
    assert out.shape == (2, 3, 48, 64)
    for frame, log_p in zip(frames, out):
        p = _softmax(path, frame)
        merged = np.stack([p[ids].sum(0) for ids in groups.values()])
        np.testing.assert_allclose(log_p.exp().numpy(), merged / merged.sum(0), atol=1e-4)


def test_a_teacher_of_other_classes_without_a_class_map_is_refused(tmp_path):
    from seg_perception.training.teachers import TeacherError, load_teacher

    with pytest.raises(TeacherError, match=r"predicts label set 't6' \(6 classes\) but the student learns "
                                           r"'sim_offroad'.*class map"):
        load_teacher(_network(tmp_path, 6), load_label_set("sim_offroad"))
    with pytest.raises(TeacherError, match="neither a shipped model"):
        load_teacher(tmp_path / "nosuch.onnx", LabelSet.from_dict(_labels(2, "two")))


def test_distill_from_a_carded_network_finishes_and_records_the_teacher(tmp_path, capsys):
    from seg_perception.cli import main
    from seg_perception.models import read_metadata

    labels = _labels(4, "four")
    (tmp_path / "four.yaml").write_text(yaml.safe_dump(labels))
    teacher = _network(tmp_path, 4, label_set=labels)
    rng = np.random.default_rng(1)
    for split, count in (("train", 4), ("val", 2)):
        for i in range(count):
            for folder, image in (("images", rng.integers(0, 256, (48, 64, 3), np.uint8)),
                                  ("labels", rng.integers(0, 4, (48, 64), np.uint8))):
                (tmp_path / "data" / split / folder).mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(tmp_path / "data" / split / folder / f"f{i}.png"), image)
    code = main(["distill", "--teacher", str(teacher), "--data", str(tmp_path / "data"), "--label-set",
                 str(tmp_path / "four.yaml"), "--out", str(tmp_path / "run"), "--epochs", "1", "--batch-size", "2",
                 "--size", "64", "48"])
    assert code == 0, capsys.readouterr().err
    recorded = read_metadata(tmp_path / "run" / "last.safetensors")["training"]["teacher"]
    assert recorded["kind"] == "network" and recorded["model"] == str(teacher)
    assert recorded["label_set"] == "four" and recorded["card"]["label_set"]["name"] == "four"
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["steps"] == 2
