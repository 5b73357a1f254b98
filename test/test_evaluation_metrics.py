"""Confusion matrices and scores: against scikit-learn, hand-computed IoU, exact merging, boundary bands."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix as sk_confusion_matrix

from seg_perception.evaluation import (
    ConfusionMatrix,
    EvaluationError,
    boundary_band,
    boundary_confusion,
    confusion_matrix,
    frame_confusion,
)
from seg_perception.labels import load_label_set


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("dtype", [np.uint8, np.int64])
def test_confusion_matrix_matches_scikit_learn_with_ignore_and_absent_classes(seed, dtype):
    rng = np.random.default_rng(seed)
    classes = 7
    # Classes 5 and 6 never occur in the ground truth, class 6 never in the prediction either.
    target = rng.integers(0, 5, (2, 31, 47)).astype(dtype)
    target[rng.random(target.shape) < 0.2] = 255
    prediction = rng.integers(0, 6, target.shape).astype(dtype)
    keep = target != 255
    expected = sk_confusion_matrix(target[keep], prediction[keep], labels=list(range(classes)))
    got = confusion_matrix(prediction, target, classes)
    assert got.dtype == np.int64 and got.shape == (classes, classes)
    np.testing.assert_array_equal(got, expected)
    assert got.sum() == keep.sum()


def test_confusion_matrix_without_ignore_scores_every_pixel():
    rng = np.random.default_rng(3)
    target = rng.integers(0, 4, (20, 20))
    prediction = rng.integers(0, 4, (20, 20))
    np.testing.assert_array_equal(confusion_matrix(prediction, target, 4, ignore_id=None),
                                  sk_confusion_matrix(target.ravel(), prediction.ravel(), labels=[0, 1, 2, 3]))


def test_mask_restricts_the_scored_pixels():
    target = np.array([[0, 1], [1, 1]])
    prediction = np.array([[0, 0], [1, 0]])
    mask = np.array([[True, False], [True, False]])
    np.testing.assert_array_equal(confusion_matrix(prediction, target, 2, mask=mask), [[1, 0], [0, 1]])


def test_prediction_is_not_checked_where_the_target_is_ignored():
    target = np.array([[0, 255]])
    prediction = np.array([[0, 255]])
    np.testing.assert_array_equal(confusion_matrix(prediction, target, 2), [[1, 0], [0, 0]])


# A 4×4 example: ground truth and prediction, with C = 4 (class 3 never appears anywhere).
GT_4X4 = np.array([[0, 0, 1, 1],
                   [0, 0, 1, 1],
                   [2, 2, 1, 1],
                   [2, 2, 255, 255]])
PRED_4X4 = np.array([[0, 0, 0, 1],
                     [0, 1, 1, 1],
                     [2, 2, 2, 1],
                     [0, 2, 3, 0]])  # the last two pixels are ignored in the ground truth


def test_hand_computed_iou_and_accuracies():
    cm = ConfusionMatrix(4)
    cm.update(PRED_4X4, GT_4X4)
    # Scored pixels: 14. Class 0: gt 4, predicted at (0,0),(0,1),(0,2),(1,0),(3,0) = 5, TP 3 → IoU 3/6.
    # Class 1: gt 6, predicted at (0,3),(1,1),(1,2),(1,3),(2,3) = 5, TP 4 → IoU 4/7.
    # Class 2: gt 4, predicted at (2,0),(2,1),(2,2),(3,1) = 4, TP 3 → IoU 3/5.
    # Class 3: absent from scored ground truth and prediction → NaN.
    np.testing.assert_array_equal(cm.matrix, [[3, 1, 0, 0], [1, 4, 1, 0], [1, 0, 3, 0], [0, 0, 0, 0]])
    iou = cm.iou()
    np.testing.assert_allclose(iou[:3], [3 / 6, 4 / 7, 3 / 5])
    assert math.isnan(iou[3])
    assert cm.miou() == pytest.approx((3 / 6 + 4 / 7 + 3 / 5) / 3)
    assert cm.pixel_accuracy() == pytest.approx(10 / 14)
    assert cm.mean_class_accuracy() == pytest.approx((3 / 4 + 4 / 6 + 3 / 4) / 3)
    assert cm.frequency_weighted_iou() == pytest.approx(4 / 14 * 3 / 6 + 6 / 14 * 4 / 7 + 4 / 14 * 3 / 5)


def test_class_only_predicted_counts_as_zero_iou():
    cm = ConfusionMatrix(3)
    cm.update(np.array([0, 0, 2, 1]), np.array([0, 0, 1, 1]))
    np.testing.assert_allclose(cm.iou(), [1.0, 0.5, 0.0])
    assert cm.miou() == pytest.approx(0.5)
    assert math.isnan(cm.class_accuracy()[2])


def test_empty_matrix_scores_are_nan_without_warnings():
    cm = ConfusionMatrix(3)
    with np.errstate(all="raise"):
        scores = cm.scores()
    assert all(math.isnan(v) for v in (scores.miou, scores.pixel_accuracy, scores.mean_class_accuracy,
                                        scores.frequency_weighted_iou))
    assert scores.to_dict()["miou"] is None


def test_scores_named_by_label_set_and_json_ready():
    labels = load_label_set("sim_offroad")
    cm = ConfusionMatrix(labels.num_classes)
    cm.update(np.array([[0, 1], [3, 3]]), np.array([[0, 1], [3, 1]]))
    scores = cm.scores(labels)
    assert scores.names == tuple(labels.names)
    report = json.loads(json.dumps(scores.to_dict()))  # no NaN reaches JSON
    assert report["miou"] == pytest.approx((1 + 0.5 + 0.5) / 3)
    sky, road = report["classes"][0], report["classes"][1]
    assert sky["name"] == "sky" and sky["iou"] == 1.0
    assert road["gt_pixels"] == 2 and road["predicted_pixels"] == 1 and road["iou"] == 0.5
    assert report["classes"][2]["iou"] is None
    assert report["pixels"] == 4


def test_non_contiguous_label_set_names_missing_ids_by_number():
    rellis = load_label_set("rellis3d")
    names = ConfusionMatrix(rellis.num_classes, ignore_id=rellis.ignore_id).scores(rellis).names
    assert names[1] == "dirt" and names[2] == "2" and names[34] == "rubble"


def test_merge_equals_one_matrix_over_all_images_exactly():
    rng = np.random.default_rng(7)
    predictions = rng.integers(0, 6, (9, 24, 32))
    targets = rng.integers(0, 6, (9, 24, 32))
    targets[rng.random(targets.shape) < 0.1] = 255
    parts = []
    for chunk in np.array_split(np.arange(9), 3):
        part = ConfusionMatrix(6)
        for i in chunk:
            part.update(predictions[i], targets[i])
        parts.append(part)
    merged = parts[0].merge(parts[1]).merge(parts[2])
    whole = ConfusionMatrix(6)
    whole.update(predictions, targets)
    np.testing.assert_array_equal(merged.matrix, whole.matrix)
    assert merged.miou() == whole.miou()


def test_merge_refuses_different_class_counts():
    with pytest.raises(EvaluationError, match="cannot merge"):
        ConfusionMatrix(3).merge(ConfusionMatrix(4))


def test_matrix_property_is_read_only():
    cm = ConfusionMatrix(2)
    with pytest.raises(ValueError):
        cm.matrix[0, 0] = 5


def test_boundary_band_of_a_square_counted_by_hand():
    labels = np.zeros((12, 12), np.uint8)
    labels[4:8, 4:8] = 1
    # w = 0: the square's inner ring (16 - 4 = 12) and its 4-neighbours outside (4 per side = 16).
    assert boundary_band(labels, 0).sum() == 28
    # w = 1: rows and columns 2 … 9 (64 pixels) except the 4 corners, whose nearest edge pixel is 2 away.
    band = boundary_band(labels, 1)
    assert band.sum() == 60
    assert band[2:10, 2:10].sum() == 60
    assert not band[2, 2] and not band[9, 9] and band[2, 3] and band[5, 5]
    # w = 2: rows and columns 1 … 10 (100) except the 4 corners.
    assert boundary_band(labels, 2).sum() == 96


def test_boundary_band_excludes_ignore_pixels_but_counts_edges_to_them():
    labels = np.zeros((5, 6), np.uint8)
    labels[:, 3:] = 255
    band = boundary_band(labels, 1)
    # Edge pixels on the class side: column 2; with w = 1 the band reaches column 1; columns 3+ are ignored.
    expected = np.zeros((5, 6), bool)
    expected[:, 1:3] = True
    np.testing.assert_array_equal(band, expected)


def test_boundary_band_of_a_batch_is_per_image():
    a = np.zeros((6, 6), np.uint8)
    b = np.zeros((6, 6), np.uint8)
    b[:, 3:] = 1
    band = boundary_band(np.stack([a, b]), 1)
    assert not band[0].any()
    np.testing.assert_array_equal(band[1], boundary_band(b, 1))


def _vertical_edge(width: int, height: int, edge_column: int) -> np.ndarray:
    labels = np.ones((height, width), np.int64)
    labels[:, :edge_column] = 0
    return labels


def test_boundary_iou_of_a_perfect_prediction_is_one():
    labels = np.zeros((20, 30), np.uint8)
    labels[5:15, 8:20] = 2
    labels[0:4, :] = 1
    cm = ConfusionMatrix(3)
    cm.add(boundary_confusion(labels, labels, 3, width_px=2))
    np.testing.assert_allclose(cm.iou(), [1.0, 1.0, 1.0])
    assert cm.miou() == 1.0


@pytest.mark.parametrize("shift", [1, 2, 3, 4])
def test_boundary_iou_of_a_shifted_prediction_by_hand(shift):
    width, height, edge, w = 20, 8, 10, 3
    target = _vertical_edge(width, height, edge)
    prediction = _vertical_edge(width, height, edge + shift)  # class 0 reaches `shift` columns too far right
    cm = ConfusionMatrix(2)
    cm.add(boundary_confusion(prediction, target, 2, width_px=w))
    # The band spans columns edge-1-w … edge+w: w+1 columns of class 0 and w+1 of class 1.
    # Class 0: TP = (w+1)·H, FP = shift·H → IoU (w+1)/(w+1+shift).
    # Class 1: TP = (w+1-shift)·H, FN = shift·H → IoU (w+1-shift)/(w+1).
    expected = [(w + 1) / (w + 1 + shift), (w + 1 - shift) / (w + 1)]
    np.testing.assert_allclose(cm.iou(), expected)
    assert cm.matrix.sum() == 2 * (w + 1) * height
    # The boundary score falls much faster than the whole-image score for the same error.
    whole = ConfusionMatrix(2)
    whole.update(prediction, target)
    assert cm.miou() < whole.miou()


@pytest.mark.parametrize("ignored", [0.0, 0.2])
def test_frame_confusion_is_the_two_matrices_it_fuses(ignored):
    """Both matrices of one pass against the two separate computations (scikit-learn's for the first)."""
    rng = np.random.default_rng(3)
    target = np.repeat(np.repeat(rng.integers(0, 4, (12, 16)), 6, axis=0), 5, axis=1).astype(np.uint8)
    target[rng.random(target.shape) < ignored] = 255
    prediction = np.where(rng.random(target.shape) < 0.7, target, rng.integers(0, 5, target.shape)).astype(np.uint8)
    overall, edges = frame_confusion(prediction, target, 5, width_px=2)
    keep = target != 255
    np.testing.assert_array_equal(overall, sk_confusion_matrix(target[keep], prediction[keep], labels=range(5)))
    np.testing.assert_array_equal(edges, boundary_confusion(prediction, target, 5, width_px=2))
    assert 0 < edges.sum() <= overall.sum()  # with scattered ignore pixels every pixel is near an edge
    with pytest.raises(EvaluationError, match="prediction holds class id 9"):
        frame_confusion(np.full_like(prediction, 9), target, 5)


@pytest.mark.parametrize("call, message", [
    (lambda: confusion_matrix(np.zeros((2, 2), int), np.zeros((2, 3), int), 2), "shape"),
    (lambda: confusion_matrix(np.zeros((2, 2)), np.zeros((2, 2), int), 2), "integer"),
    (lambda: confusion_matrix(np.array([0, 2]), np.array([0, 1]), 2), "prediction holds class id 2"),
    (lambda: confusion_matrix(np.array([0, 1]), np.array([0, 7]), 2), "target holds class id 7"),
    (lambda: confusion_matrix(np.array([-1, 1]), np.array([0, 1]), 2), "prediction holds class id -1"),
    (lambda: confusion_matrix(np.array([0]), np.array([0]), 0), "num_classes"),
    (lambda: confusion_matrix(np.array([0]), np.array([0]), 1, mask=np.array([1])), "mask"),
    (lambda: boundary_band(np.zeros((3, 3), int), -1), "width_px"),
    (lambda: boundary_band(np.zeros(5, int), 1), r"\(H, W\)"),
    (lambda: ConfusionMatrix(2).add(np.ones((3, 3), np.int64)), "matrix"),
    (lambda: ConfusionMatrix(2).scores(["a"]), "names"),
])
def test_typed_errors(call, message):
    with pytest.raises(EvaluationError, match=message):
        call()
