"""Segmentation scores from confusion matrices: IoU, mIoU, accuracies and boundary IoU (numpy + cv2, no torch)."""
from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from seg_perception.labels import LabelSet


class EvaluationError(ValueError):
    """Inputs that cannot be scored: mismatched shapes, non-integer or out-of-range class ids, bad options."""


def confusion_matrix(prediction: np.ndarray, target: np.ndarray, num_classes: int, ignore_id: int | None = 255,
                     mask: np.ndarray | None = None) -> np.ndarray:
    """Count (ground truth, prediction) pairs over the pixels that are scored.

    A pixel is scored when its target is not `ignore_id` and, if `mask` is given, the mask is true
    there. Predictions are only checked at scored pixels, so a prediction may carry any value
    (e.g. the ignore id) where the target is ignored.

    Args:
        prediction: integer class ids, any shape (an image (H, W) or a batch (N, H, W)).
        target: integer ground-truth ids of the same shape.
        num_classes: C; valid ids are 0 … C - 1.
        ignore_id: target value that is never scored; None scores every pixel.
        mask: optional boolean array of the same shape restricting the scored pixels.

    Returns:
        (C, C) int64 matrix M with M[g, p] = number of scored pixels of ground truth g predicted as p
        (rows ground truth, columns prediction).

    Raises:
        EvaluationError: shapes differ, ids are not integers, or a scored target or prediction is
            outside 0 … C - 1.
    """
    classes = _check_num_classes(num_classes)
    index, _ = _scored_pairs(prediction, target, classes, ignore_id, mask)
    return np.bincount(index, minlength=classes * classes).reshape(classes, classes).astype(np.int64, copy=False)


def frame_confusion(prediction: np.ndarray, target: np.ndarray, num_classes: int, width_px: int = 3,
                    ignore_id: int | None = 255) -> tuple[np.ndarray, np.ndarray]:
    """`(confusion_matrix(...), boundary_confusion(...))` of one frame, counted in one compiled pass
    that releases the GIL: replay scores every frame both ways on its writer thread, and numpy's
    passes there (an index array per matrix) held the GIL and cost ~5x more.

    Raises:
        EvaluationError: as `confusion_matrix` and `boundary_band`.
    """
    classes = _check_num_classes(num_classes)
    prediction, target = _label_pair(prediction, target)
    band = boundary_band(target, width_px, ignore_id)
    counts = np.zeros((2, classes, classes), np.int64)
    ignore = -1 if ignore_id is None else int(ignore_id)
    bad = _compiled_pair_counts()(np.ascontiguousarray(target).reshape(-1),
                                  np.ascontiguousarray(prediction).reshape(-1), band.reshape(-1), classes, ignore,
                                  counts)
    if bad >= 0:
        _scored_pairs(prediction, target, classes, ignore_id, None)  # raises, naming the bad ids
    return counts.sum(axis=0), counts[1]


@functools.cache
def _compiled_pair_counts() -> Any:
    """`_pair_counts` compiled with numba, on first use (importing numba costs half a second)."""
    from numba import njit

    return njit(cache=True, nogil=True)(_pair_counts)


def _pair_counts(target, prediction, band, classes, ignore, counts):
    """counts[in band, g, p] += 1 for each scored pixel; returns the index of the first pixel with
    an id outside 0 … classes - 1 (nothing counted after it), else -1."""
    for i in range(target.shape[0]):
        g = target[i]
        if g == ignore:
            continue
        p = prediction[i]
        if g < 0 or g >= classes or p < 0 or p >= classes:
            return i
        counts[1 if band[i] else 0, g, p] += 1
    return -1


def _scored_pairs(prediction: np.ndarray, target: np.ndarray, classes: int, ignore_id: int | None,
                  mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    """The scored pixels as flat (ground truth, prediction) pair indices g * C + p (intp), and the
    boolean selection of those pixels (None: every pixel). Raises as `confusion_matrix`."""
    prediction, target = _label_pair(prediction, target)
    valid = np.ones(target.shape, bool) if ignore_id is None else target != ignore_id
    if mask is not None:
        mask = np.asarray(mask)
        if mask.shape != target.shape or mask.dtype != np.bool_:
            raise EvaluationError(f"mask must be a bool array of shape {target.shape}, got {mask.dtype} {mask.shape}")
        valid &= mask
    # Boolean indexing copies; skip it when every pixel is scored.
    scored = None if valid.all() else valid
    gt = target.reshape(-1) if scored is None else target[scored]
    pred = prediction.reshape(-1) if scored is None else prediction[scored]
    for name, values in (("target", gt), ("prediction", pred)):
        if values.size and (values.min() < 0 or values.max() >= classes):
            bad = values[(values < 0) | (values >= classes)]
            ignore = "" if ignore_id is None or name == "prediction" else f" or the ignore id {ignore_id}"
            raise EvaluationError(f"{name} holds class id {int(bad[0])} ({bad.size} scored pixels out of range); "
                                  f"accepted: 0 … {classes - 1}{ignore}")
    index = gt.astype(np.intp) * classes
    index += pred.astype(np.intp, copy=False)
    return index, scored


def boundary_band(labels: np.ndarray, width_px: int, ignore_id: int | None = 255) -> np.ndarray:
    """Pixels within `width_px` of a ground-truth label edge (the trimap band of boundary IoU).

    Definition: an edge pixel is a pixel whose label differs from that of one of its 4-neighbours
    inside the image (both pixels of such a pair are edge pixels; a change to or from the ignore id
    counts, as void outlines objects in many ground truths). The band is the set of pixels within
    Chebyshev distance `width_px` of an edge pixel — the edge mask dilated with a (2w+1) × (2w+1)
    square — minus the ignore pixels. A straight vertical edge thus gives a band 2w + 2 columns wide.

    Args:
        labels: integer ground truth, (H, W) or a batch (N, H, W) (each image on its own).
        width_px: w >= 0.
        ignore_id: label never in the band; None if there is none.

    Returns:
        bool array of the shape of `labels`.

    Raises:
        EvaluationError: not an integer 2-D/3-D array, or a negative width.
    """
    labels = _integer_array(labels, "labels")
    if labels.ndim not in (2, 3):
        raise EvaluationError(f"labels must be (H, W) or (N, H, W), got shape {labels.shape}")
    if isinstance(width_px, bool) or not isinstance(width_px, (int, np.integer)) or width_px < 0:
        raise EvaluationError(f"width_px must be an integer >= 0, got {width_px!r}")
    if labels.ndim == 3:
        return np.stack([boundary_band(image, width_px, ignore_id) for image in labels]) if len(labels) \
            else np.zeros(labels.shape, bool)
    edges: np.ndarray = np.zeros(labels.shape, np.uint8)
    across = labels[:, 1:] != labels[:, :-1]
    down = labels[1:, :] != labels[:-1, :]
    edges[:, 1:] |= across
    edges[:, :-1] |= across
    edges[1:, :] |= down
    edges[:-1, :] |= down
    if width_px:
        edges = cv2.dilate(edges, np.ones((2 * width_px + 1, 2 * width_px + 1), np.uint8))
    band = edges.astype(bool)
    if ignore_id is not None:
        band &= labels != ignore_id
    return band


def boundary_confusion(prediction: np.ndarray, target: np.ndarray, num_classes: int, width_px: int = 3,
                       ignore_id: int | None = 255) -> np.ndarray:
    """The confusion matrix restricted to the ground truth's `boundary_band(target, width_px)`.

    Boundary IoU of class c is then the IoU of that matrix (`ConfusionMatrix.add`): TP, FP and FN
    counted only on pixels within `width_px` of a ground-truth edge. Predicted edges that are far
    from every true edge are not in the band, so this measures how well true boundaries are traced
    (the trimap flavour of Cheng et al. 2021's boundary IoU, with the band taken from the ground truth).

    Args:
        prediction: integer class ids, (H, W) or (N, H, W).
        target: ground truth of the same shape.
        num_classes: C.
        width_px: band half-width w (see `boundary_band`).
        ignore_id: target value never scored.

    Returns:
        (C, C) int64 matrix, rows ground truth, columns prediction.

    Raises:
        EvaluationError: as `confusion_matrix` and `boundary_band`.
    """
    return confusion_matrix(prediction, target, num_classes, ignore_id,
                            mask=boundary_band(target, width_px, ignore_id))


@dataclass(frozen=True)
class SegmentationScores:
    """Scores of one confusion matrix. Per-class values are NaN where undefined (see `ConfusionMatrix`).

    Attributes:
        names: class name per id 0 … C - 1 (ids missing from the label set are named by their number).
        iou: per-class intersection over union.
        accuracy: per-class accuracy (recall), TP / ground-truth pixels.
        gt_pixels: ground-truth pixels per class.
        predicted_pixels: predicted pixels per class (over scored pixels).
        miou: mean IoU over the classes whose IoU is defined.
        pixel_accuracy: correctly labelled / scored pixels.
        mean_class_accuracy: mean of the defined per-class accuracies.
        frequency_weighted_iou: IoU weighted by each class's share of ground-truth pixels.
        pixels: scored pixels.
    """

    names: tuple[str, ...]
    iou: tuple[float, ...]
    accuracy: tuple[float, ...]
    gt_pixels: tuple[int, ...]
    predicted_pixels: tuple[int, ...]
    miou: float
    pixel_accuracy: float
    mean_class_accuracy: float
    frequency_weighted_iou: float
    pixels: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; undefined values (NaN) become None."""
        return {
            "miou": _json_float(self.miou),
            "pixel_accuracy": _json_float(self.pixel_accuracy),
            "mean_class_accuracy": _json_float(self.mean_class_accuracy),
            "frequency_weighted_iou": _json_float(self.frequency_weighted_iou),
            "pixels": self.pixels,
            "classes": [
                {"id": i, "name": name, "iou": _json_float(iou), "accuracy": _json_float(acc),
                 "gt_pixels": gt, "predicted_pixels": pred}
                for i, (name, iou, acc, gt, pred) in enumerate(
                    zip(self.names, self.iou, self.accuracy, self.gt_pixels, self.predicted_pixels, strict=True))
            ],
        }


class ConfusionMatrix:
    """Accumulates a (C, C) confusion matrix over many images and derives the scores from it.

    With TP_c = M[c, c], G_c = row sum (ground-truth pixels of c) and P_c = column sum (predicted c):

    - IoU_c = TP_c / (G_c + P_c - TP_c), NaN when the class is absent from both ground truth and
      prediction (a class only predicted has IoU 0 and counts);
    - mIoU = mean of the defined IoU_c;
    - pixel accuracy = Σ TP_c / Σ G_c;
    - class accuracy_c = TP_c / G_c (NaN when G_c = 0); mean class accuracy = mean of the defined ones;
    - frequency-weighted IoU = Σ_c (G_c / Σ G) · IoU_c over classes with G_c > 0.

    Every mean is NaN when nothing was scored. Counts are int64, so merging matrices is exact.

    Args:
        num_classes: C.
        ignore_id: target value that `update` never scores; None scores every pixel.
    """

    def __init__(self, num_classes: int, ignore_id: int | None = 255) -> None:
        self.num_classes = _check_num_classes(num_classes)
        self.ignore_id = ignore_id
        self._matrix = np.zeros((self.num_classes, self.num_classes), np.int64)

    @property
    def matrix(self) -> np.ndarray:
        """The accumulated (C, C) counts (a read-only view; rows ground truth, columns prediction)."""
        view = self._matrix.view()
        view.flags.writeable = False
        return view

    def update(self, prediction: np.ndarray, target: np.ndarray, mask: np.ndarray | None = None) -> None:
        """Add one image or batch (see `confusion_matrix`)."""
        self._matrix += confusion_matrix(prediction, target, self.num_classes, self.ignore_id, mask)

    def add(self, matrix: np.ndarray) -> None:
        """Add a (C, C) matrix of counts, e.g. from `boundary_confusion`.

        Raises:
            EvaluationError: wrong shape, non-integer or negative counts.
        """
        matrix = np.asarray(matrix)
        if matrix.shape != self._matrix.shape or not np.issubdtype(matrix.dtype, np.integer) or (matrix < 0).any():
            raise EvaluationError(f"expected a {self._matrix.shape} matrix of non-negative integer counts, "
                                  f"got {matrix.dtype} {matrix.shape}")
        self._matrix += matrix.astype(np.int64, copy=False)

    def merge(self, other: ConfusionMatrix) -> ConfusionMatrix:
        """Add another accumulator's counts into this one (e.g. from parallel workers); returns self.

        Raises:
            EvaluationError: the class counts or ignore ids differ.
        """
        if other.num_classes != self.num_classes or other.ignore_id != self.ignore_id:
            raise EvaluationError(f"cannot merge a {other.num_classes}-class matrix (ignore {other.ignore_id}) into "
                                  f"a {self.num_classes}-class one (ignore {self.ignore_id})")
        self._matrix += other._matrix
        return self

    def reset(self) -> None:
        self._matrix[:] = 0

    def iou(self) -> np.ndarray:
        """(C,) float64 IoU per class, NaN for classes absent from both ground truth and prediction."""
        tp, gt, pred = self._totals()
        union = gt + pred - tp
        return _ratio(tp, union)

    def class_accuracy(self) -> np.ndarray:
        """(C,) float64 TP / ground-truth pixels, NaN for classes without ground truth."""
        tp, gt, _ = self._totals()
        return _ratio(tp, gt)

    def miou(self) -> float:
        return _nanmean(self.iou())

    def pixel_accuracy(self) -> float:
        total = int(self._matrix.sum())
        return float(np.trace(self._matrix)) / total if total else math.nan

    def mean_class_accuracy(self) -> float:
        return _nanmean(self.class_accuracy())

    def frequency_weighted_iou(self) -> float:
        _, gt, _ = self._totals()
        total = gt.sum()
        if not total:
            return math.nan
        present = gt > 0
        return float(np.sum(gt[present] / total * self.iou()[present]))

    def scores(self, names: LabelSet | Sequence[str] | None = None) -> SegmentationScores:
        """Every score at once, with class names.

        Args:
            names: a LabelSet (names by class id), a list of C names, or None (names are the ids).

        Raises:
            EvaluationError: a list of names whose length is not C.
        """
        _, gt, pred = self._totals()
        return SegmentationScores(
            names=_class_names(names, self.num_classes),
            iou=tuple(float(v) for v in self.iou()),
            accuracy=tuple(float(v) for v in self.class_accuracy()),
            gt_pixels=tuple(int(v) for v in gt),
            predicted_pixels=tuple(int(v) for v in pred),
            miou=self.miou(),
            pixel_accuracy=self.pixel_accuracy(),
            mean_class_accuracy=self.mean_class_accuracy(),
            frequency_weighted_iou=self.frequency_weighted_iou(),
            pixels=int(self._matrix.sum()),
        )

    def _totals(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return np.diag(self._matrix), self._matrix.sum(axis=1), self._matrix.sum(axis=0)


def _check_num_classes(num_classes: int) -> int:
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise EvaluationError(f"num_classes must be an integer >= 1, got {num_classes!r}")
    return int(num_classes)


def _label_pair(prediction: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Prediction and target as integer arrays of one shape, or EvaluationError."""
    prediction, target = _integer_array(prediction, "prediction"), _integer_array(target, "target")
    if prediction.shape != target.shape:
        raise EvaluationError(f"prediction shape {prediction.shape} differs from target shape {target.shape}")
    return prediction, target


def _integer_array(values: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(values)
    if not (np.issubdtype(array.dtype, np.integer) or array.dtype == np.bool_):
        raise EvaluationError(f"{name} must hold integer class ids, got dtype {array.dtype}")
    return array


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    out = np.full(numerator.shape, np.nan)
    defined = denominator > 0
    out[defined] = numerator[defined] / denominator[defined]
    return out


def _nanmean(values: np.ndarray) -> float:
    defined = values[~np.isnan(values)]
    return float(defined.mean()) if defined.size else math.nan


def _json_float(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def _class_names(names: LabelSet | Sequence[str] | None, num_classes: int) -> tuple[str, ...]:
    if names is None:
        return tuple(str(i) for i in range(num_classes))
    if isinstance(names, LabelSet):
        by_id = {c.id: c.name for c in names.classes}
        return tuple(by_id.get(i, str(i)) for i in range(num_classes))
    names = tuple(str(n) for n in names)
    if len(names) != num_classes:
        raise EvaluationError(f"got {len(names)} class names for {num_classes} classes")
    return names
