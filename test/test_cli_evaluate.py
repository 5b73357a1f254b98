"""`seg-perception evaluate`: a model whose labels are a known function of the pixels (an ONNX 1x1 convolution)
scored on a SegNet-layout dataset, against a confusion matrix computed here with numpy; label maps, label
set mismatches, aspect ratios and one-line errors."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch
import yaml

from seg_perception.cli import main
from seg_perception.engines import EngineSpec, export_onnx
from seg_perception.labels import load_label_set
from seg_perception.models import student_config

WIDTH, HEIGHT = 48, 36
CLASSES, VOID = 11, 11  # camvid11
STEMS = ("0016E5_07959", "0016E5_07961", "0016E5_07963")


class KnownLogits(torch.nn.Module):
    """logits = weight @ rgb + bias per pixel (a fixed 1x1 convolution, rgb in [0, 1]); nothing refined."""

    def __init__(self, weight: np.ndarray, bias: np.ndarray) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, len(bias), 1)
        self.conv.weight.data = torch.from_numpy(weight.astype(np.float32))[:, :, None, None]
        self.conv.bias.data = torch.from_numpy(bias.astype(np.float32))

    def forward(self, x: torch.Tensor, present: torch.Tensor, k: int | None = None) -> dict[str, torch.Tensor]:
        quarter = ((x.shape[-2] + 3) // 4, (x.shape[-1] + 3) // 4)
        # × present (1.0 for RGB): keeps the engine contract's second input in the graph.
        return {"logits": self.conv(x) * present[:, :1, None, None], "refined": torch.zeros(x.shape[0], 1, *quarter)}


@pytest.fixture(scope="module")
def known(tmp_path_factory):
    """An ONNX model of label set camvid11 with known logits, and the palette its test frames are drawn from."""
    rng = np.random.default_rng(5)
    weight, bias = rng.normal(scale=4.0, size=(CLASSES, 3)), rng.normal(scale=0.5, size=CLASSES)
    palette = rng.integers(0, 256, (12, 3), dtype=np.uint8)
    logits = palette / 255.0 @ weight.T + bias
    top2 = np.sort(logits, axis=1)[:, -2:]
    assert (top2[:, 1] - top2[:, 0]).min() > 1e-3, "no near-ties: float32 and float64 agree on every label"
    assert len(set(logits.argmax(1))) >= 4, "several classes are predicted"
    label_set = load_label_set("camvid11")
    config = student_config(label_set.num_classes, ("rgb",))
    checkpoint = SimpleNamespace(model=KnownLogits(weight, bias), config=config, metadata={
        "format": "seg_perception.checkpoint/1", "model_id": "known_logits", "config": config.to_dict(),
        "label_set": label_set.to_dict(), "inputs": {}, "training": {}})
    path = export_onnx(checkpoint, tmp_path_factory.mktemp("model") / "known.onnx", EngineSpec(WIDTH, HEIGHT, 0, "fp32"))
    return SimpleNamespace(path=path, palette=palette, classes_of_palette=logits.argmax(1))


def _dataset(root: Path, known, offset: int = 0, void: int = VOID) -> tuple[Path, list[np.ndarray], list[np.ndarray]]:
    """SegNet layout, split val: frames of palette colours and random ground truth (ids + offset, void too)."""
    rng = np.random.default_rng(3)
    frames, truths = [], []
    for stem in STEMS:
        rgb = known.palette[rng.integers(0, len(known.palette), (HEIGHT, WIDTH))]
        truth = rng.integers(0, CLASSES + 1, (HEIGHT, WIDTH))
        stored = np.where(truth == VOID, void, truth + offset).astype(np.uint8)
        for folder, image in (("val", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)), ("valannot", stored)):
            (root / folder).mkdir(parents=True, exist_ok=True)
            assert cv2.imwrite(str(root / folder / f"{stem}.png"), image)
        frames.append(rgb)
        truths.append(truth)
    return root, frames, truths


def _expected_confusion(known, frames, truths) -> np.ndarray:
    """Rows ground truth, columns prediction; the prediction of a pixel is its palette colour's class."""
    lookup = {tuple(c): k for c, k in zip(known.palette.tolist(), known.classes_of_palette)}
    matrix = np.zeros((CLASSES, CLASSES), np.int64)
    for rgb, truth in zip(frames, truths):
        prediction = np.array([lookup[tuple(p)] for p in rgb.reshape(-1, 3).tolist()]).reshape(truth.shape)
        scored = truth != VOID
        np.add.at(matrix, (truth[scored], prediction[scored]), 1)
    return matrix


def _run(capsys, *argv) -> tuple[int, str, str]:
    status = main(["evaluate", *map(str, argv)])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_evaluate_scores_like_an_independent_confusion_matrix(tmp_path, known, capsys):
    root, frames, truths = _dataset(tmp_path / "camvid", known)
    out = tmp_path / "report"
    status, stdout, stderr = _run(capsys, "--model", known.path, "--data", root, "--split", "val", "--out", out,
                                  "--backend", "onnxruntime", "--threads", 1)
    assert status == 0, stderr
    report = json.loads((out / "report.json").read_text())
    expected = _expected_confusion(known, frames, truths)
    assert np.array_equal(report["confusion_matrix"], expected)
    union = expected.sum(0) + expected.sum(1) - np.diag(expected)
    iou = np.diag(expected)[union > 0] / union[union > 0]
    assert report["scores"]["miou"] == pytest.approx(iou.mean())
    assert report["frames"] == report["frames_scored"] == len(STEMS)
    assert report["label_set"]["name"] == "camvid11" and report["label_set"]["ignore_id"] == VOID
    assert {r["bag"] for r in report["worst_frames"]} == {f"{s}.png" for s in STEMS}
    assert all((out / r["overlay"]).is_file() for r in report["worst_frames"])
    assert (out / "report.md").is_file() and (out / "confusion.png").is_file()
    assert len(report["figures"]["worst_frames"]["rows"]) == len(report["worst_frames"])  # the grid has them all
    assert report["latency"]["frames_per_second"] > 0  # end to end, the one the table prints
    assert "overall" in stdout and "report:" in stdout and "end to end" in stdout


def test_a_label_map_maps_the_data_onto_the_models_ids(tmp_path, known, capsys):
    root, frames, truths = _dataset(tmp_path / "shifted", known, offset=100, void=255)
    label_map = tmp_path / "shifted_to_camvid.yaml"
    label_map.write_text(yaml.safe_dump({"target": "camvid11", "mapping": {100 + i: i for i in range(CLASSES)}}))
    out = tmp_path / "report"
    status, _, stderr = _run(capsys, "--model", known.path, "--data", root, "--out", out, "--label-map", label_map,
                             "--backend", "onnxruntime", "--threads", 1)
    assert status == 0, stderr
    report = json.loads((out / "report.json").read_text())
    assert np.array_equal(report["confusion_matrix"], _expected_confusion(known, frames, truths))
    # Without the map, the ids are checked against the model's label set.
    status, _, stderr = _run(capsys, "--model", known.path, "--data", root, "--out", out, "--backend", "onnxruntime")
    assert status == 1 and "are not in label set 'camvid11' (accepted: classes 0-10 and ignore 11)" in stderr


def test_label_sets_that_differ_are_named(tmp_path, known, capsys):
    root, _, _ = _dataset(tmp_path / "camvid", known)
    status, _, stderr = _run(capsys, "--model", known.path, "--data", root, "--label-set", "cityscapes19",
                             "--out", tmp_path / "r", "--backend", "onnxruntime")
    assert status == 1
    assert ("the model predicts label set 'camvid11' (11 classes) but the data is labelled in 'cityscapes19' "
            "(19 classes): ids only the model has: [], only the data has: [11, 12, 13, 14, 15, 16, 17, 18]") in stderr


@pytest.mark.parametrize("case, message", [
    ("missing", "is not a folder nor a dataset YAML file"),
    ("split", "no dataset layout found"),
    ("empty", "no images found"),
    ("size", "--size 64x36 (aspect 1.78) would stretch the 48x36 frames"),
    ("model", "is neither a shipped model"),
])
def test_errors_are_one_line_with_a_non_zero_status(tmp_path, known, capsys, case, message):
    root, _, _ = _dataset(tmp_path / "camvid", known)
    args = ["--model", known.path, "--data", root, "--out", tmp_path / "r", "--backend", "onnxruntime"]
    if case == "missing":
        args[3] = tmp_path / "nowhere"
    elif case == "split":
        args += ["--split", "test"]
    elif case == "empty":
        for path in [*(root / "val").iterdir(), *(root / "valannot").iterdir()]:
            path.unlink()
    elif case == "size":
        args += ["--size", "64x36"]
    else:
        args[1] = tmp_path / "no_model.onnx"
    status, stdout, stderr = _run(capsys, *args)
    assert status == 1 and stdout == ""
    assert stderr.startswith("error: ") and message in stderr and stderr.count("\n") == 1, stderr


def test_k_chooses_how_many_locations_a_student_refines(tmp_path, known, capsys):
    """K = 0 is the student's base prediction; a large K lets the (random) point head change labels."""
    from seg_perception.models import build_model, save_checkpoint

    torch.manual_seed(0)
    label_set = load_label_set("camvid11")
    model = build_model(student_config(label_set.num_classes, ("rgb",), widths=(8, 8, 8), decoder_width=8)).eval()
    checkpoint = save_checkpoint(tmp_path / "student.safetensors", model, label_set, model_id="student_rgb",
                                 training={"config": {"image_size": [WIDTH, HEIGHT]}})
    root, _, _ = _dataset(tmp_path / "camvid", known)
    confusions = {}
    for k in (0, 100):
        status, _, stderr = _run(capsys, "--model", checkpoint, "--data", root, "--out", tmp_path / f"k{k}",
                                 "--backend", "torch", "--threads", 1, "--k", k)
        assert status == 0, stderr
        confusions[k] = json.loads((tmp_path / f"k{k}" / "report.json").read_text())["confusion_matrix"]
    assert confusions[0] != confusions[100]
    with pytest.raises(SystemExit):
        main(["evaluate", "--model", str(checkpoint), "--data", str(root), "--k", "-1"])
