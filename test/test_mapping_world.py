"""The voxel map on the synthetic world, scored against the LiDAR's true classes (issue #6 acceptance)."""
from __future__ import annotations

import numpy as np

from seg_perception.mapping.evaluate import evaluate_on_world, noisy_labels

FRAMES = 10  # one second of driving


def test_ground_truth_labels_give_an_accurate_map():
    scores = evaluate_on_world(0, FRAMES)
    assert scores["voxels"] > 5000 and scores["scored_points"] > 20000
    assert scores["voxel_accuracy"] >= 0.97


def test_fusion_beats_single_scans_on_noisy_labels():
    scores = evaluate_on_world(0, FRAMES, noise=0.25)
    assert scores["fused_point_accuracy"] >= scores["single_scan_point_accuracy"] + 0.05


def test_noisy_labels_flip_blobs_at_the_asked_rate():
    labels = np.zeros((360, 640), np.uint8)
    noisy = noisy_labels(labels, 0.25, 12, np.random.default_rng(0))
    flipped = noisy != 0
    assert abs(flipped.mean() - 0.25) < 0.03
    blocks = flipped.reshape(360 // 8, 8, 640 // 16, 16)  # 16-pixel cells: whole blocks flip together
    assert np.all(blocks.all(axis=(1, 3)) | ~blocks.any(axis=(1, 3)))
