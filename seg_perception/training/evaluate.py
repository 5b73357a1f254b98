"""Scoring a model on a dataset: mIoU, boundary IoU, pixel accuracy."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader

from seg_perception.evaluation import ConfusionMatrix, boundary_confusion
from seg_perception.models import stack_inputs

BOUNDARY_WIDTH_PX = 3


@torch.inference_mode()
def evaluate(model: Any, dataset: Any, *, modalities: Sequence[str] | None = None, k: int | None = None,
             batch_size: int = 8, ignore_id: int = 255) -> dict[str, Any]:
    """Scores of `model` on `dataset` (dict samples with the model's modalities and "labels").

    Args:
        modalities: inputs to give the model (default: all it takes); the others are absent.
        k: locations the student refines (None: its default; 0: base prediction).
    """
    model.eval()
    config = model.config
    given = tuple(config.modalities if modalities is None else modalities)
    overall = ConfusionMatrix(config.num_classes, ignore_id)
    boundary = ConfusionMatrix(config.num_classes, ignore_id)
    for batch in DataLoader(dataset, batch_size=batch_size):
        x, present = stack_inputs({m: batch[m] for m in given if m in batch and m in config.modalities}, config)
        prediction = model(x, present, k)["logits"].argmax(1).numpy()
        target = batch["labels"].numpy()
        overall.update(prediction, target)
        boundary.add(boundary_confusion(prediction, target, config.num_classes, BOUNDARY_WIDTH_PX, ignore_id))
    return {"miou": overall.miou(), "boundary_miou": boundary.miou(), "pixel_accuracy": overall.pixel_accuracy(),
            "iou": overall.iou().tolist(), "boundary_iou": boundary.iou().tolist(), "samples": len(dataset)}
