"""Label-free distillation: a student learns from frames (an image folder or rosbags) and a teacher's outputs
alone; the teacher's most likely class stands in for the labels the student's heads are trained on."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from seg_perception.labels import LabelSet, load_label_set

from .layouts import FolderDatasetError


def resolve(config: Any) -> tuple[Any, LabelSet]:
    """The config with its label set and image size filled in, and that label set: the given one, else the
    teacher checkpoint's; the size given, else 320 wide with the frames' aspect ratio.

    Raises:
        FolderDatasetError: no teacher, no label set known, or frames that cannot be read.
    """
    from seg_perception.models import SHIPPED, ModelError, read_metadata, shipped_weights

    if config.teacher is None:
        raise FolderDatasetError("distilling from frames without labels needs a teacher (--teacher)")
    if config.label_set is not None:
        label_set = load_label_set(config.label_set)
    else:
        path = shipped_weights(str(config.teacher)) if str(config.teacher) in SHIPPED else Path(config.teacher)
        try:
            label_set = LabelSet.from_dict(read_metadata(path)["label_set"])
        except ModelError:
            raise FolderDatasetError(f"the label set the teacher {config.teacher} teaches is not known from it: name "
                                     f"it (--label-set)") from None
    frames = frames_dataset(config)
    return replace(config, label_set=label_set.name, image_size=tuple(frames.size)), label_set


def frames_dataset(config: Any) -> Any:
    """The unlabelled training frames of `config` (`images` folder, or `bags` with `topic`)."""
    from .augment import Augment
    from .unlabelled import UnlabelledFrames

    size = tuple(config.image_size) if config.image_size else None
    options = {"augment": Augment() if config.augment else None, "seed": config.seed}
    if config.images is not None:
        return UnlabelledFrames.from_images(config.images, size, **options)
    return UnlabelledFrames.from_bags(config.bags, config.topic, size, **options)


def datasets(config: Any, label_set: LabelSet) -> tuple[Any, Any]:
    """(the training frames, the validation split of `config.data` where it is a labelled folder dataset, else None)."""
    from seg_perception.label_maps import load_label_map

    from .folders import FolderDataset

    val = None
    if config.data != "sim":
        label_map = load_label_map(config.label_map) if config.label_map else None
        val = FolderDataset(config.data, "val", label_map, config.image_size, label_set=label_set, cache=True)
    return frames_dataset(config), val


def pseudo_labels(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The teacher's most likely class at each pixel of an (height, width) frame: int64 (N, H, W)."""
    if logits.shape[-2:] != size:
        logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
    return logits.argmax(1)


@torch.inference_mode()
def teacher_class_counts(teacher: Any, dataset: Any, num_classes: int, batch_size: int = 8) -> np.ndarray:
    """Pixels of each class in the teacher's predictions on the frames as stored (resized, not augmented),
    for class weights without labels."""
    augment, dataset.augment = dataset.augment, None
    counts = np.zeros(num_classes, np.int64)
    try:
        for start in range(0, len(dataset), batch_size):
            rgb = torch.stack([dataset[i]["rgb"] for i in range(start, min(start + batch_size, len(dataset)))])
            labels = pseudo_labels(teacher({"rgb": rgb})["logits"].float(), tuple(rgb.shape[-2:]))
            counts += np.bincount(labels.flatten().numpy(), minlength=num_classes)[:num_classes]
    finally:
        dataset.augment = augment
    return counts
