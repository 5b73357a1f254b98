"""Scoring a model on an image/label dataset: every frame segmented and scored into the report replay writes
(report.json, report.md, per-class and boundary IoU, confusion, worst frames with overlays, latency)."""
from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

from seg_perception.evaluation import EvaluationError, EvaluationReport
from seg_perception.labels import LabelSet

from . import worst_frames

log = logging.getLogger(__name__)


def scored_label_set(model: LabelSet, data: LabelSet | None) -> LabelSet:
    """The label set a model is scored in on data of label set `data` (None: the model's own): the model's
    classes with the data's ignore id.

    Raises:
        EvaluationError: the two differ in class ids (or number of classes); the message lists the ids
            only one of them has.
    """
    if data is None:
        return model
    model_ids, data_ids = {c.id for c in model.classes}, {c.id for c in data.classes}
    if model_ids != data_ids or model.num_classes != data.num_classes:
        raise EvaluationError(
            f"the model predicts label set {model.name!r} ({len(model_ids)} classes) but the data is labelled in "
            f"{data.name!r} ({len(data_ids)} classes): ids only the model has: {sorted(model_ids - data_ids)}, only "
            f"the data has: {sorted(data_ids - model_ids)}; map the data's ids onto {model.name!r} with a label map, "
            f"or evaluate a model of {data.name!r}")
    data_names = {c.id: c.name for c in data.classes}
    renamed = [f"{c.id}: {c.name} / {data_names[c.id]}" for c in model.classes if data_names[c.id] != c.name]
    if renamed:
        log.warning("the model's and the data's label sets name some ids differently (model / data): %s; the report "
                    "uses the model's names", ", ".join(renamed))
    return dataclasses.replace(model, ignore_id=data.ignore_id)


def evaluate_folder(segmenter: Any, dataset: Any, out_dir: str | Path, *, progress: bool = False,
                    group: str | None = None) -> EvaluationReport:
    """Segment every frame of `dataset` at its own resolution, score it against its labels and write the
    report (`EvaluationReport.write`) and the worst frames' overlays to `out_dir`.

    Args:
        segmenter: an engines.Segmenter.
        dataset: a training.FolderDataset whose (mapped) label ids are the model's (see `scored_label_set`).
        progress: show a progress bar.
        group: the report's group for these frames (default: the dataset's split).

    Raises:
        EvaluationError: label sets that differ; FolderDatasetError: an unreadable frame or label image.
    """
    started = time.monotonic()
    out_dir = Path(out_dir)
    label_set = scored_label_set(segmenter.label_set, dataset.label_set)
    report = EvaluationReport(label_set)
    panels: dict[int, Any] = {}  # frame index → (image, truth, prediction) of a worst-frame candidate
    indices: Any = range(len(dataset))
    if progress:
        from tqdm import tqdm

        indices = tqdm(indices, desc=f"evaluate {dataset.split}", unit="frame", leave=False)
    for index in indices:
        rgb, raw = dataset.read(index)
        result = segmenter.segment(rgb=rgb)
        report.count_frame(result.timing)
        name = dataset.samples[index].image.name
        truth = dataset.map_labels(raw)
        record = report.score_frame(result.labels, truth, groups=group or dataset.split, bag=name, index=index)
        if record is not None:  # kept in memory while among the worst; those still there are written
            worst = {r.index for r in report.worst_frames}
            panels = {i: frame for i, frame in panels.items() if i in worst}
            panels[index] = (rgb, truth, result.labels)
            worst_frames.name_files(record, f"overlays/{Path(name).stem}")
    for record in report.worst_frames:
        worst_frames.write_files(out_dir, record, label_set, *panels[record.index])
    report.wall_s = time.monotonic() - started
    report.write(out_dir)
    return report
