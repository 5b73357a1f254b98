"""PNG figures of an evaluation: confusion matrix, per-class IoU bars, latency histogram, worst-frames grid.
Each function returns the path written and the data it drew (legends, marks), for report.json and tests.

matplotlib is imported inside the functions and drawn on an Agg canvas without pyplot, so importing
this module is cheap and never touches a display or matplotlib's global backend.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from seg_perception.labels import LabelSet

from .latency import PERCENTILES, TOTAL, LatencyStats
from .metrics import EvaluationError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# Above this many classes the cell values no longer fit in the confusion matrix plot.
_ANNOTATE_MAX_CLASSES = 20
PANELS = ("image", "ground truth", "prediction", "errors")
ERROR_COLORS = {"wrong": (230, 25, 25), "ignored": (150, 150, 150)}  # RGB in the errors panel


@dataclass(frozen=True)
class Plot:
    """A written figure: its path and the data it drew (JSON-ready)."""

    path: Path
    data: dict[str, Any] = field(default_factory=dict)


def plot_confusion(matrix: np.ndarray, names: Sequence[str], path: str | Path) -> Plot:
    """Row-normalised confusion matrix (each ground-truth row sums to 1; empty rows stay 0), linear colours.

    Args:
        matrix: (C, C) counts, rows ground truth, columns prediction.
        names: C class names for the axes.
        path: PNG to write.

    Returns:
        The path and what was drawn: the class names and the row-normalised matrix.

    Raises:
        EvaluationError: `matrix` is not square or `names` does not have C entries.
    """
    counts = np.asarray(matrix, np.float64)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1] or len(names) != counts.shape[0]:
        raise EvaluationError(f"expected a (C, C) matrix and C names, got {counts.shape} and {len(names)} names")
    rows = counts.sum(axis=1, keepdims=True)
    normalised = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)
    size = len(names)
    figure = _figure(max(4.0, 0.45 * size + 2.5), max(3.5, 0.45 * size + 2.0))
    axes = figure.add_subplot()
    image = axes.imshow(normalised, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04, label="fraction of ground-truth row")
    axes.set_xticks(range(size), labels=list(names), rotation=60, ha="right", fontsize=8)
    axes.set_yticks(range(size), labels=list(names), fontsize=8)
    axes.set_xlabel("prediction")
    axes.set_ylabel("ground truth")
    if size <= _ANNOTATE_MAX_CLASSES:
        for (row, col), value in np.ndenumerate(normalised):
            if value >= 0.005:
                axes.text(col, row, f"{value:.2f}", ha="center", va="center", fontsize=6,
                          color="white" if value > 0.5 else "black")
    axes.set_title("confusion matrix (row-normalised)")
    return Plot(_save(figure, path), {"names": list(names), "row_normalised": normalised.tolist()})


def plot_class_iou(iou: Sequence[float] | np.ndarray, names: Sequence[str], path: str | Path, *,
                   colors: Sequence[Sequence[int]] | None = None, gt_pixels: Sequence[int] | None = None,
                   miou: float | None = None) -> Plot:
    """Horizontal bars of per-class IoU in percent, each in its class's colour. A class without ground-truth
    pixels gets no bar but a "no ground truth" mark (its IoU is 0 or undefined, but it says nothing of
    how well the class is found); a class absent from both ground truth and prediction is marked "absent".

    Args:
        iou: C values in [0, 1] or NaN.
        names: C class names.
        path: PNG to write.
        colors: C RGB colours (0-255); default all grey.
        gt_pixels: C ground-truth pixel counts; default: every class with a defined IoU has some.
        miou: the mIoU for the title (the report's own); default the mean of the defined values.

    Returns:
        The path and what was drawn: per class its name, colour, IoU drawn (None: no bar) and mark, the
        "no ground truth" classes and the title.

    Raises:
        EvaluationError: `iou`, `names`, `colors` or `gt_pixels` differ in length.
    """
    values = np.asarray(iou, np.float64).reshape(-1)
    size = len(names)
    colors = [(128, 128, 128)] * size if colors is None else [tuple(int(v) for v in c) for c in colors]
    gt = [0 if math.isnan(v) else 1 for v in values] if gt_pixels is None else [int(v) for v in gt_pixels]
    if not values.size == len(colors) == len(gt) == size:
        raise EvaluationError(f"got {values.size} IoU values, {len(colors)} colours and {len(gt)} pixel counts for "
                              f"{size} class names; give one of each per class")
    marks = ["absent" if math.isnan(v) else "no ground truth" if not g else None
             for v, g in zip(values, gt, strict=True)]
    if miou is None:
        miou = float(np.nanmean(values)) if (~np.isnan(values)).any() else math.nan
    title = f"per-class IoU (mIoU {_percent(miou)})"
    figure = _figure(6.0, max(2.5, 0.3 * size + 1.2))
    axes = figure.add_subplot()
    for row, (value, color, mark) in enumerate(zip(values, colors, marks, strict=True)):
        if mark is None:
            axes.barh(row, 100.0 * value, color=[c / 255.0 for c in color], edgecolor="black", linewidth=0.5)
        # A predicted class without ground truth has IoU 0, and that 0 is in the mIoU: say so beside the mark.
        text = f"{mark} (predicted: 0 in the mIoU)" if mark == "no ground truth" and not math.isnan(value) \
            else mark or f"{100.0 * value:.1f}"
        axes.text(1.0 if mark else min(100.0 * value + 1.0, 88.0), row, text, va="center", fontsize=7,
                  color="grey" if mark else "black")
    axes.set_yticks(range(size), labels=list(names), fontsize=8)
    axes.set_ylim(size - 0.5, -0.5)  # first class on top, no row on the axis line
    axes.set_xlim(0.0, 100.0)
    axes.set_xlabel("IoU %")
    axes.set_title(title)
    drawn = [{"name": str(name), "color": list(color), "iou": None if mark else float(value), "mark": mark}
             for name, value, color, mark in zip(names, values, colors, marks, strict=True)]
    return Plot(_save(figure, path), {"title": title, "classes": drawn,
                                      "no_ground_truth": [d["name"] for d in drawn if d["mark"] == "no ground truth"]})


def plot_latency(stats: LatencyStats, path: str | Path, frames_per_second: float = math.nan) -> Plot:
    """Histogram of the per-frame "total" latency with vertical lines at p50, p90 and p99.

    Args:
        stats: latency samples with a "total" stage.
        path: PNG to write.
        frames_per_second: the run's end-to-end throughput, for the title (left out when NaN); latency is
            per frame and not its inverse (frames are segmented side by side).

    Returns:
        The path and what was drawn: the title and the percentile lines (ms).

    Raises:
        EvaluationError: no "total" samples.
    """
    total = stats.samples(TOTAL)
    if not total.size:
        raise EvaluationError(f"no {TOTAL!r} latency samples to plot; sampled stages: {list(stats.stages)}")
    figure = _figure(6.0, 3.5)
    axes = figure.add_subplot()
    axes.hist(total, bins=min(50, max(5, int(math.sqrt(total.size)) * 2)), color="tab:gray")
    styles = ("tab:green", "tab:orange", "tab:red")
    lines = {}
    for q, value, color in zip(PERCENTILES, np.percentile(total, PERCENTILES, method="linear"), styles, strict=True):
        axes.axvline(value, color=color, linestyle="--", label=f"p{q} {value:.1f} ms")
        lines[f"p{q}"] = float(value)
    axes.set_xlabel("total latency per frame [ms]")
    axes.set_ylabel("frames")
    axes.legend(fontsize=8)
    title = f"latency per frame ({total.size} frames, mean {total.mean():.1f} ms)"
    if not math.isnan(frames_per_second):
        title += f"; {frames_per_second:.1f} frames/s end to end"
    axes.set_title(title, fontsize=9)
    return Plot(_save(figure, path), {"title": title, "percentiles_ms": lines})


@dataclass(frozen=True)
class WorstFrame:
    """One row of the worst-frames grid: the camera image, its ground truth and the prediction.

    Attributes:
        caption: the row's title, e.g. "night #12 · mIoU 31.2 %".
        image: (H, W, 3) uint8 RGB.
        truth: (h, w) integer class ids, the ignore id where not labelled.
        prediction: (h, w) integer class ids, the shape of `truth`.
    """

    caption: str
    image: np.ndarray
    truth: np.ndarray
    prediction: np.ndarray


def plot_worst_frames(frames: Sequence[WorstFrame], label_set: LabelSet, path: str | Path) -> Plot:
    """A grid, one row per frame: image | ground truth | prediction | errors (wrong pixels red, unlabelled
    pixels grey, correct ones the dimmed image), under a legend of the classes in the shown truth and
    predictions in their colours.

    Returns:
        The path and what was drawn: per row its caption, panels and pixel counts (wrong, ignored, scored),
        the legend (id, name, colour) and the error colours.

    Raises:
        EvaluationError: no frames, an image that is not (H, W, 3) uint8, or a truth and prediction of
            different shapes.
    """
    if not frames:
        raise EvaluationError("the worst-frames grid needs at least one frame")
    palette = _palette(label_set, max(int(max(f.truth.max(), f.prediction.max())) for f in frames))
    rows, shown = [], set()
    for i, frame in enumerate(frames):
        image, truth, prediction = frame.image, np.asarray(frame.truth), np.asarray(frame.prediction)
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            description = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
            raise EvaluationError(f"worst frame {i}: the image must be (H, W, 3) uint8 RGB, got {description}")
        if truth.shape != prediction.shape or truth.ndim != 2:
            raise EvaluationError(f"worst frame {i}: truth {truth.shape} and prediction {prediction.shape} must be "
                                  "(H, W) label images of one shape")
        if image.shape[:2] != truth.shape:
            image = cv2.resize(image, truth.shape[::-1], interpolation=cv2.INTER_AREA)
        ignored = truth == label_set.ignore_id
        wrong = (truth != prediction) & ~ignored
        errors = (0.5 * cv2.cvtColor(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)).astype(np.uint8)
        errors[wrong], errors[ignored] = ERROR_COLORS["wrong"], ERROR_COLORS["ignored"]
        shown |= set(np.unique(truth[~ignored]).tolist()) | set(np.unique(prediction).tolist())
        rows.append((frame.caption, (image, palette[truth], palette[prediction], errors),
                     {"caption": frame.caption, "panels": list(PANELS), "wrong_pixels": int(wrong.sum()),
                      "ignored_pixels": int(ignored.sum()), "scored_pixels": int((~ignored).sum())}))
    names = {c.id: c for c in label_set.classes}
    shown.discard(label_set.ignore_id)  # grey, in the legend as "not labelled"
    legend = [{"id": i, "name": names[i].name if i in names else str(i), "color": [int(v) for v in palette[i]]}
              for i in sorted(shown)]
    height, width = rows[0][1][0].shape[:2]
    figure = _figure(4 * 3.0, len(rows) * 3.0 * height / width + 1.2)
    grid = figure.add_gridspec(len(rows), 4)
    for r, (caption, panels, _) in enumerate(rows):
        for c, (panel, name) in enumerate(zip(panels, PANELS, strict=True)):
            axes = figure.add_subplot(grid[r, c])
            axes.imshow(panel, interpolation="nearest")
            axes.set_xticks([])
            axes.set_yticks([])
            if r == 0:
                axes.set_title(name, fontsize=9)
            if c == 0:
                axes.set_ylabel(caption, fontsize=7)
    from matplotlib.patches import Patch

    handles = [Patch(facecolor=[v / 255.0 for v in entry["color"]], edgecolor="black", label=entry["name"])
               for entry in legend]
    handles += [Patch(facecolor=[v / 255.0 for v in color], edgecolor="black", label=f"{what} (errors)")
                for what, color in (("wrong", ERROR_COLORS["wrong"]), ("not labelled", ERROR_COLORS["ignored"]))]
    figure.legend(handles=handles, loc="outside lower center", ncols=min(6, len(handles)), fontsize=7)
    return Plot(_save(figure, path), {"rows": [data for _, _, data in rows], "legend": legend,
                                      "error_colors": {k: list(v) for k, v in ERROR_COLORS.items()}})


def _palette(label_set: LabelSet, top: int) -> np.ndarray:
    """(N, 3) uint8 colour per id up to `top` and the ignore id: the class colours, grey for the ignore id,
    black for ids outside the label set."""
    palette = np.zeros((max(top, label_set.ignore_id, label_set.num_classes - 1) + 1, 3), np.uint8)
    for c in label_set.classes:
        palette[c.id] = c.color
    palette[label_set.ignore_id] = ERROR_COLORS["ignored"]
    return palette


def _percent(value: float) -> str:
    return "—" if math.isnan(value) else f"{100.0 * value:.1f} %"


def _figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Figure, path: str | Path) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, format="png")
    return out
