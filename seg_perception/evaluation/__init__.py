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
from .plots import Plot, WorstFrame, plot_class_iou, plot_confusion, plot_latency, plot_worst_frames
from .report import SCENARIO, EvaluationReport, FrameRecord, summary_table

__all__ = [
    "SCENARIO", "ConfusionMatrix", "EvaluationError", "EvaluationReport", "FrameRecord", "LatencyStats", "Plot",
    "SegmentationScores", "WorstFrame", "boundary_band", "boundary_confusion", "confusion_matrix", "frame_confusion",
    "plot_class_iou", "plot_confusion", "plot_latency", "plot_worst_frames", "summary_table",
]
