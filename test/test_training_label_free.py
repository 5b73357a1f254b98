"""Label-free distillation: a student learns from an image folder or a rosbag and a teacher alone (the
teacher's most likely class as the label), validated on a labelled split where one is given."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from seg_perception.cli import main
from seg_perception.labels import load_label_set
from seg_perception.models import build_model, load_checkpoint, save_checkpoint, teacher_config
from seg_perception.training.label_free import pseudo_labels
from seg_perception.training.layouts import FolderDatasetError
from seg_perception.training.unlabelled import UnlabelledFrames

COMMON = ["--epochs", "2", "--batch-size", "2", "--threads", "1", "--lr", "0.01"]


def _teacher(path, label_set: str):
    """A small random teacher (any checkpoint of the label set can teach)."""
    torch.manual_seed(0)
    labels = load_label_set(label_set)
    config = teacher_config(labels.num_classes, ("rgb",), stem_width=8, widths=(8, 16, 16), depths=(1, 1, 1),
                            decoder_width=8)
    return save_checkpoint(path, build_model(config).eval(), labels, model_id="teacher_rgb")


def _camvid(root, frames: int = 4):
    """A tiny dataset in the CamVid layout: train/ and val/ with their *annot/ label folders."""
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        (root / split).mkdir(parents=True)
        (root / f"{split}annot").mkdir()
        for i in range(frames):
            cv2.imwrite(str(root / split / f"f{i}.png"), rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
            cv2.imwrite(str(root / f"{split}annot" / f"f{i}.png"), rng.integers(0, 12, (48, 64), dtype=np.uint8))
    return root


def test_distil_from_an_image_folder_validated_on_a_labelled_split(tmp_path, capsys):
    teacher = _teacher(tmp_path / "teacher.safetensors", "camvid11")
    data = _camvid(tmp_path / "camvid")
    out = tmp_path / "student"
    assert main(["distill", "--teacher", str(teacher), "--images", str(data / "train"), "--data", str(data),
                 "--size", "64", "48", "--out", str(out), "--augment", "--class-weights", "enet", "--precision", "bf16",
                 *COMMON]) == 0
    assert "best val mIoU" in capsys.readouterr().out
    student = load_checkpoint(out / "best.safetensors", label_set="camvid11", architecture="student")
    training = student.metadata["training"]
    assert training["config"]["images"] == str(data / "train") and training["config"]["image_size"] == [64, 48]
    assert training["teacher"]["model"] == str(teacher) and 0.0 <= training["val"]["miou"] <= 1.0


def test_distil_from_a_bag_without_validation(tmp_path, capsys):
    from seg_perception.sim import World
    from seg_perception.sim.bag import write_bag

    bag = tmp_path / "drive"
    write_bag(bag, World(3), 2, lidar=False, events=False)
    teacher = _teacher(tmp_path / "teacher.safetensors", "sim_offroad")
    out = tmp_path / "student"
    assert main(["distill", "--teacher", str(teacher), "--bags", str(bag), "--size", "64", "36", "--out", str(out),
                 *COMMON]) == 0
    assert "not validated" in capsys.readouterr().out
    student = load_checkpoint(out / "best.safetensors", label_set="sim_offroad")
    assert student.metadata["training"]["config"]["bags"] == [str(bag)]
    assert student.metadata["training"]["steps"] == 2  # 2 frames, batch 2, 2 epochs
    frames = UnlabelledFrames.from_bags([bag], size=(64, 36))
    assert len(frames) == 2 and frames.names[0] == "/camera/image_raw[0]"
    assert frames[0]["rgb"].shape == (3, 36, 64)


def test_label_free_errors_name_what_is_wrong(tmp_path, capsys):
    from seg_perception.sim import World
    from seg_perception.sim.bag import write_bag

    bag = tmp_path / "drive"
    write_bag(bag, World(1), 1, lidar=False, events=False)
    teacher = _teacher(tmp_path / "teacher.safetensors", "sim_offroad")
    (tmp_path / "empty").mkdir()
    assert main(["distill", "--teacher", str(teacher), "--images", str(tmp_path / "empty"), "--out",
                 str(tmp_path / "a"), *COMMON]) == 1
    assert "no images" in capsys.readouterr().err
    assert main(["distill", "--teacher", str(teacher), "--bags", str(bag), "--topic", "/odom", "--out",
                 str(tmp_path / "b"), *COMMON]) == 1
    assert "an image topic" in capsys.readouterr().err
    with pytest.raises(FolderDatasetError, match="no frames"):
        UnlabelledFrames([], (64, 48))


def test_pseudo_labels_are_the_teachers_most_likely_class_at_full_resolution():
    logits = torch.zeros(1, 3, 2, 2)
    logits[0, 2, 0, 0] = logits[0, 1, 1, 1] = 5.0
    labels = pseudo_labels(logits, (4, 4))
    assert labels.shape == (1, 4, 4) and labels[0, 0, 0] == 2 and labels[0, 3, 3] == 1
