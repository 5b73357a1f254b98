"""Evaluation: confusion matrices, mIoU, accuracies and boundary IoU of label images."""
from .metrics import (
    ConfusionMatrix,
    EvaluationError,
    SegmentationScores,
    boundary_band,
    boundary_confusion,
    confusion_matrix,
)

__all__ = [
    "ConfusionMatrix", "EvaluationError", "SegmentationScores", "boundary_band", "boundary_confusion",
    "confusion_matrix",
]
