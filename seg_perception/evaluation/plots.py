"""PNG figures of an evaluation: confusion matrix, per-class IoU bars, latency histogram, worst-frame strip.

matplotlib is imported inside the functions and drawn on an Agg canvas without pyplot, so importing
this module is cheap and never touches a display or matplotlib's global backend.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from .latency import PERCENTILES, TOTAL, LatencyStats
from .metrics import EvaluationError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# Above this many classes the cell values no longer fit in the confusion matrix plot.
_ANNOTATE_MAX_CLASSES = 20


def plot_confusion(matrix: np.ndarray, names: Sequence[str], path: str | Path) -> Path:
    """Row-normalised confusion matrix (each ground-truth row sums to 1; empty rows stay 0), linear colours.

    Args:
        matrix: (C, C) counts, rows ground truth, columns prediction.
        names: C class names for the axes.
        path: PNG to write.

    Returns:
        The path written.

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
    return _save(figure, path)


def plot_class_iou(iou: Sequence[float] | np.ndarray, names: Sequence[str], path: str | Path) -> Path:
    """Horizontal bars of per-class IoU; classes whose IoU is NaN (absent) get no bar and an "absent" mark.

    Args:
        iou: C values in [0, 1] or NaN.
        names: C class names.
        path: PNG to write.

    Returns:
        The path written.

    Raises:
        EvaluationError: `iou` and `names` differ in length.
    """
    values = np.asarray(iou, np.float64).reshape(-1)
    if values.size != len(names):
        raise EvaluationError(f"got {values.size} IoU values for {len(names)} class names")
    size = len(names)
    figure = _figure(6.0, max(2.5, 0.3 * size + 1.2))
    axes = figure.add_subplot()
    rows = np.arange(size)
    defined = ~np.isnan(values)
    axes.barh(rows[defined], values[defined], color="tab:blue")
    for row in rows:
        label = "absent" if not defined[row] else f"{values[row]:.2f}"
        x = 0.01 if not defined[row] else min(values[row] + 0.01, 0.9)
        axes.text(x, row, label, va="center", fontsize=7, color="grey" if not defined[row] else "black")
    axes.set_yticks(rows, labels=list(names), fontsize=8)
    axes.set_ylim(size - 0.5, -0.5)  # first class on top, no row on the axis line
    axes.set_xlim(0.0, 1.0)
    axes.set_xlabel("IoU")
    present = values[defined]
    mean = f"{present.mean():.3f}" if present.size else "—"
    axes.set_title(f"per-class IoU (mIoU {mean})")
    return _save(figure, path)


def plot_latency(stats: LatencyStats, path: str | Path) -> Path:
    """Histogram of the per-frame "total" latency with vertical lines at p50, p90 and p99.

    Args:
        stats: latency samples with a "total" stage.
        path: PNG to write.

    Returns:
        The path written.

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
    for q, value, color in zip(PERCENTILES, np.percentile(total, PERCENTILES, method="linear"), styles, strict=True):
        axes.axvline(value, color=color, linestyle="--", label=f"p{q} {value:.1f} ms")
    axes.set_xlabel("total latency per frame [ms]")
    axes.set_ylabel("frames")
    axes.legend(fontsize=8)
    axes.set_title(f"latency ({total.size} frames, {1000.0 / total.mean():.1f} frames/s)" if total.mean() > 0
                   else f"latency ({total.size} frames)")
    return _save(figure, path)


def overlay_strip(images: Sequence[np.ndarray], captions: Sequence[str], path: str | Path,
                  height: int | None = None) -> Path:
    """Side-by-side strip of RGB overlays (e.g. the worst frames), each captioned in its top-left corner.

    Args:
        images: (H, W, 3) uint8 RGB images; each is resized to a common height keeping its aspect.
        captions: one caption per image.
        path: PNG to write.
        height: strip height in pixels; default the smallest image height.

    Returns:
        The path written.

    Raises:
        EvaluationError: no images, an image that is not (H, W, 3) uint8, a caption count that differs,
            or a height < 1.
        OSError: the PNG could not be written.
    """
    if not images or len(captions) != len(images):
        raise EvaluationError(f"expected one or more images and as many captions, got {len(images)} images "
                              f"and {len(captions)} captions")
    for i, image in enumerate(images):
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3 \
                or not image.size:
            description = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
            raise EvaluationError(f"overlay {i} must be an (H, W, 3) uint8 RGB image, got {description}")
    target = min(image.shape[0] for image in images) if height is None else height
    if target < 1:
        raise EvaluationError(f"strip height must be >= 1 pixel, got {target}")
    tiles = []
    for image, caption in zip(images, captions, strict=True):
        width = max(1, round(image.shape[1] * target / image.shape[0]))
        tile = cv2.resize(image, (width, target), interpolation=cv2.INTER_AREA) if image.shape[0] != target \
            else image.copy()
        tiles.append(_caption(cv2.cvtColor(tile, cv2.COLOR_RGB2BGR), str(caption)))
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(out), cv2.hconcat(tiles)):
        raise OSError(f"could not write the overlay strip {out}")
    return out


def _caption(tile: np.ndarray, text: str) -> np.ndarray:
    """Caption on a dark box so it reads on any overlay colour; scaled to the tile height."""
    scale = max(0.35, tile.shape[0] / 480.0)
    thickness = max(1, round(scale * 1.5))
    (width, height), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    margin = max(2, round(4 * scale))
    cv2.rectangle(tile, (0, 0), (width + 2 * margin, height + baseline + 2 * margin), (0, 0, 0), cv2.FILLED)
    cv2.putText(tile, text, (margin, margin + height), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thickness,
                cv2.LINE_AA)
    return tile


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
