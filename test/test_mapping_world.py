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


def test_voxel_truth_is_the_majority_class_of_the_points_over_scans():
    from seg_perception.mapping import SemanticVoxelMap
    from seg_perception.mapping.evaluate import VoxelTruth

    truth = VoxelTruth(num_classes=4, voxel_size=1.0)
    # voxel (0,0,0): classes 2, 2, 1 over two scans; voxel (5,0,0): class 3; (-1,0,0): class 0 and 1 (tie → 0)
    truth.add(np.array([[0.1, 0.2, 0.3], [0.9, 0.9, 0.9], [5.5, 0.5, 0.5], [np.nan, 0, 0]]), [2, 1, 3, 2])
    truth.add(np.array([[0.5, 0.5, 0.5], [-0.5, 0.5, 0.5], [-0.2, 0.1, 0.1], [0.5, 0.5, 0.5]]), [2, 0, 1, 9])
    assert len(truth) == 3
    semantic_map = SemanticVoxelMap(4, 1.0, radius=None)
    # the map says class 2 at (0,0,0) (right), 0 at (5,0,0) (wrong: 3), 0 at (-1,0,0) (right), and
    # class 1 at (9,0,0), where no ground-truth point fell (not scored)
    semantic_map.integrate(np.array([[0.5, 0.5, 0.5], [5.5, 0.5, 0.5], [-0.5, 0.5, 0.5], [9.5, 0.5, 0.5]], np.float32),
                           np.array([2, 0, 0, 1], np.uint8), None, stamp_ns=1, origin=None)
    assert truth.score(semantic_map.voxels()) == (2, 3)
    assert VoxelTruth(4, 1.0).score(semantic_map.voxels()) == (0, 0)
