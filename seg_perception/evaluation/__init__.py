"""Evaluation: confusion matrices, mIoU, accuracies and boundary IoU of label images; latency
statistics; scored replay reports with plots (matplotlib, imported when plotting)."""
from .latency import LatencyStats
from .metrics import (
    ConfusionMatrix,
    EvaluationError,
    SegmentationScores,
    boundary_band,
    boundary_confusion,
    confusion_matrix,
    frame_confusion,
)
from .plots import overlay_strip, plot_class_iou, plot_confusion, plot_latency
from .report import EvaluationReport, FrameRecord, summary_table

__all__ = [
    "ConfusionMatrix", "EvaluationError", "EvaluationReport", "FrameRecord", "LatencyStats", "SegmentationScores",
    "boundary_band", "boundary_confusion", "confusion_matrix", "frame_confusion", "overlay_strip", "plot_class_iou",
    "plot_confusion", "plot_latency", "summary_table",
]
