"""The standard augmentations of driving-scene segmentation: random scale, random crop, horizontal flip and
photometric jitter (brightness, contrast, saturation), applied to uint8 frames kept in memory."""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Augment:
    """Random scale of the frame relative to the training size, a random crop of the training size
    (padded with the ignore id where the scaled frame is smaller), a horizontal flip and colour jitter.

    Attributes:
        scale: range of the scale factor, relative to the training size (drawn uniformly).
        flip: mirror half of the samples.
        brightness, contrast, saturation: each factor is drawn from [1 - value, 1 + value].
    """

    scale: tuple[float, float] = (0.5, 2.0)
    flip: bool = True
    brightness: float = 0.3
    contrast: float = 0.3
    saturation: float = 0.3

    def __call__(self, rgb: np.ndarray, labels: np.ndarray, size: tuple[int, int], ignore_id: int,
                 rng: np.random.Generator, thermal: np.ndarray | None = None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """One augmented sample.

        Args:
            rgb: uint8 (H, W, 3) frame at any resolution.
            labels: (H, W) label ids of any integer type, aligned with `rgb`.
            size: (width, height) of the output, the training size.
            ignore_id: the label of padding.
            rng: the random stream (one per sample and epoch, for determinism).
            thermal: float32 (H', W') registered to `rgb` (any resolution), or None.

        Returns:
            float32 (3, height, width) RGB in [0, 1], labels (height, width) of the input's dtype and
            thermal float32 (height, width) (padded with 0) or None.
        """
        width, height = size
        factor = rng.uniform(*self.scale)
        scaled_w, scaled_h = max(1, round(width * factor)), max(1, round(height * factor))
        x0 = int(rng.integers(0, max(0, scaled_w - width) + 1))
        y0 = int(rng.integers(0, max(0, scaled_h - height) + 1))
        flip = self.flip and rng.random() < 0.5
        jitter = [rng.uniform(1 - v, 1 + v) for v in (self.brightness, self.contrast, self.saturation)]

        scaled = cv2.resize(rgb, (scaled_w, scaled_h), interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR)
        out_rgb = np.zeros((height, width, 3), np.uint8)
        crop = scaled[y0:y0 + height, x0:x0 + width]
        out_rgb[:crop.shape[0], :crop.shape[1]] = crop
        out_labels = np.full((height, width), ignore_id, labels.dtype)
        out_labels[:crop.shape[0], :crop.shape[1]] = _nearest(labels, scaled_w, scaled_h, x0, y0, *crop.shape[1::-1])
        out_thermal = None
        if thermal is not None:
            resized = cv2.resize(thermal, (scaled_w, scaled_h), interpolation=cv2.INTER_LINEAR)
            out_thermal = np.zeros((height, width), np.float32)
            out_thermal[:crop.shape[0], :crop.shape[1]] = resized[y0:y0 + height, x0:x0 + width]
        if flip:
            out_rgb, out_labels = out_rgb[:, ::-1], out_labels[:, ::-1]
            out_thermal = out_thermal[:, ::-1] if out_thermal is not None else None
        return _jitter(out_rgb, *jitter), np.ascontiguousarray(out_labels), (
            np.ascontiguousarray(out_thermal) if out_thermal is not None else None)


def _nearest(labels: np.ndarray, scaled_w: int, scaled_h: int, x0: int, y0: int, width: int, height: int) -> np.ndarray:
    """The crop (x0, y0, width, height) of `labels` resized to (scaled_w, scaled_h) by nearest neighbour,
    without resizing the whole map (and for any integer dtype)."""
    rows = np.minimum(((np.arange(y0, y0 + height) + 0.5) * labels.shape[0] / scaled_h).astype(np.int64),
                      labels.shape[0] - 1)
    cols = np.minimum(((np.arange(x0, x0 + width) + 0.5) * labels.shape[1] / scaled_w).astype(np.int64),
                      labels.shape[1] - 1)
    return labels[rows[:, None], cols[None, :]]


def _jitter(rgb: np.ndarray, brightness: float, contrast: float, saturation: float) -> np.ndarray:
    """uint8 (H, W, 3) → float32 (3, H, W) in [0, 1] with the three colour factors applied."""
    image = rgb.astype(np.float32) * (brightness / 255.0)
    gray = image @ np.array([0.299, 0.587, 0.114], np.float32)
    image = (image - gray.mean()) * contrast + gray.mean()
    gray = gray * contrast + gray.mean() * (1 - contrast)
    image = (image - gray[..., None]) * saturation + gray[..., None]
    return np.ascontiguousarray(np.clip(image, 0.0, 1.0).transpose(2, 0, 1))
