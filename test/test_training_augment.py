"""CPU training recipe: augmentation (alignment, padding, determinism), class weights, the learning-rate
schedule, and a run with every option on (bf16, channels-last, class weights, validation every N epochs)."""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch

from seg_perception.training.augment import Augment
from seg_perception.training.folders import FolderDataset, FolderDatasetError
from seg_perception.training.losses import enet_class_weights
from seg_perception.training.trainer import TrainConfig, learning_rate, train


def _coded_frame(width: int = 48, height: int = 36) -> tuple[np.ndarray, np.ndarray]:
    """A frame whose red channel encodes the column band and green the row band, with labels of the same bands:
    any pixel's label can be read back from its colour, wherever the augmentation moved it."""
    cols, rows = np.meshgrid(np.arange(width) * 4 // width, np.arange(height) * 3 // height)
    labels = (rows * 4 + cols).astype(np.uint8)
    rgb = np.zeros((height, width, 3), np.uint8)
    rgb[..., 0], rgb[..., 1] = 40 + 60 * cols, 40 + 80 * rows
    return rgb, labels


@pytest.mark.parametrize("seed", range(6))
def test_augmentation_keeps_labels_aligned_and_pads_with_the_ignore_id(seed):
    rgb, labels = _coded_frame()
    augment = Augment(brightness=0.0, contrast=0.0, saturation=0.0)
    image, out_labels, thermal = augment(rgb, labels, (32, 24), 255, np.random.default_rng(seed))
    assert image.shape == (3, 24, 32) and image.dtype == np.float32 and out_labels.shape == (24, 32)
    assert thermal is None and 0.0 <= image.min() and image.max() <= 1.0
    valid = out_labels != 255
    assert valid.any()
    # Away from band edges (resampling blends them), the colour says the label.
    red, green = np.rint(image[0] * 255), np.rint(image[1] * 255)
    clean = valid & (np.abs((red - 40) / 60 - np.rint((red - 40) / 60)) < 0.05) & (
        np.abs((green - 40) / 80 - np.rint((green - 40) / 80)) < 0.05)
    decoded = np.rint((green - 40) / 80) * 4 + np.rint((red - 40) / 60)
    assert clean.sum() > 0.5 * valid.sum()
    assert (decoded[clean] == out_labels[clean]).mean() > 0.97
    padded = ~valid  # where the scaled frame did not reach: black, ignored
    assert np.all(image[:, padded] == 0)


def test_augmentation_is_deterministic_and_varies_with_the_stream():
    rgb, labels = _coded_frame()
    thermal = np.linspace(0, 1, 36 * 48, dtype=np.float32).reshape(36, 48)
    first = Augment()(rgb, labels, (32, 24), 255, np.random.default_rng([1, 2, 3]), thermal)
    again = Augment()(rgb, labels, (32, 24), 255, np.random.default_rng([1, 2, 3]), thermal)
    other = Augment()(rgb, labels, (32, 24), 255, np.random.default_rng([1, 3, 3]), thermal)
    for a, b in zip(first, again):
        assert np.array_equal(a, b)
    assert first[2].shape == (24, 32)
    assert not np.array_equal(first[0], other[0])


def test_folder_dataset_augments_from_the_stored_frame(tmp_path):
    rgb, labels = _coded_frame(96, 72)
    for split in ("train", "trainannot"):
        (tmp_path / split).mkdir()
    cv2.imwrite(str(tmp_path / "train" / "a.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(tmp_path / "trainannot" / "a.png"), labels)
    dataset = FolderDataset(tmp_path, "train", size=(32, 24), cache=True, augment=Augment(), label_set=None)
    samples = []
    for epoch in range(3):
        dataset.set_epoch(epoch)
        samples.append(dataset[0])
    assert all(s["rgb"].shape == (3, 24, 32) and s["labels"].shape == (24, 32) for s in samples)
    assert not torch.equal(samples[0]["rgb"], samples[1]["rgb"])
    assert dataset._cached[0][0].shape == (72, 96, 3)  # kept at the stored resolution, uint8
    assert dataset.class_counts(12).sum() == 96 * 72
    with pytest.raises(FolderDatasetError, match="training size"):
        FolderDataset(tmp_path, "train", augment=Augment())


def test_enet_class_weights_favour_rare_classes_and_keep_the_loss_scale():
    counts = [900, 90, 10, 0]
    weights = enet_class_weights(counts)
    share = torch.tensor(counts, dtype=torch.float32) / sum(counts)
    assert weights[0] < weights[1] < weights[2] < weights[3]
    assert (weights * share).sum().item() == pytest.approx(1.0, rel=1e-5)
    assert weights[3] / weights[0] == pytest.approx(math.log(1.02 + 0.9) / math.log(1.02), rel=1e-5)


def test_learning_rate_warms_up_then_decays_to_zero():
    config = TrainConfig(out="unused", lr=1.0, warmup=0.1, schedule="poly")
    assert learning_rate(config, 0.0) == 0.0
    assert learning_rate(config, 0.05) == pytest.approx(0.5)
    assert learning_rate(config, 0.1) == pytest.approx(1.0)
    assert learning_rate(config, 0.55) == pytest.approx(0.5 ** 0.9)
    assert learning_rate(config, 1.0) == 0.0 and learning_rate(config, 2.0) == 0.0
    cosine = TrainConfig(out="unused", lr=1.0)
    assert learning_rate(cosine, 0.5) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="schedule"):
        TrainConfig(out="unused", schedule="step")


def test_a_run_with_every_cpu_option(tmp_path):
    torch.set_num_threads(1)
    summary = train(TrainConfig(out=tmp_path, train_samples=16, val_samples=4, image_size=(64, 48), epochs=3,
                                batch_size=4, class_weights="enet", precision="bf16", channels_last=True,
                                schedule="poly", warmup=0.2, eval_every=2, ohem_fraction=0.0))
    assert [h["epoch"] for h in summary["history"]] == [2, 3]  # every 2nd epoch and the last
    assert all(math.isfinite(h["train_loss"]) for h in summary["history"])
    assert summary["history"][-1]["steps_per_s"] > 0
    assert (tmp_path / "state.pt").exists() and (tmp_path / "best.safetensors").exists()
