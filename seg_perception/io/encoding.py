"""Model input encodings, shared by the training data and by inference so that both see the same tensors.

- RGB: float32 (3, H, W), rgb8 / 255.
- Thermal: radiometric counts in centikelvin (kelvin x 100, the FLIR "TLinear" convention), encoded
  as `(celsius - THERMAL_CENTER_C) / THERMAL_SCALE_C`, so the usual outdoor range (0 ... 40 C) maps to
  about [-1, 1].
- Events: the voxel grid of the events in the `EVENT_WINDOW_NS` ending at the frame, normalised to a
  robust scale (`events_to_voxel_grid`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

THERMAL_CENTER_C = 20.0
THERMAL_SCALE_C = 20.0
KELVIN_AT_0C = 273.15
EVENT_WINDOW_NS = 50_000_000


def encode_thermal(counts: np.ndarray, counts_per_kelvin: float = 100.0) -> np.ndarray:
    """Radiometric counts (kelvin x `counts_per_kelvin`, any shape) → the float32 thermal input encoding."""
    celsius = np.asarray(counts, np.float32) / np.float32(counts_per_kelvin) - np.float32(KELVIN_AT_0C)
    return ((celsius - THERMAL_CENTER_C) / THERMAL_SCALE_C).astype(np.float32, copy=False)


@dataclass(frozen=True)
class EventWindow:
    """The events an event camera produced over [t_start_ns, t_end_ns], on its width x height sensor."""

    events: np.ndarray  # EVENT_DTYPE
    width: int
    height: int
    t_start_ns: int
    t_end_ns: int

    def voxel_grid(self, bins: int, out_size: tuple[int, int] | None = None) -> np.ndarray:
        """The normalised voxel grid the models take, (bins, rows, cols) float32."""
        return events_to_voxel_grid(self.events, self.width, self.height, bins, self.t_start_ns, self.t_end_ns,
                                    out_size=out_size, normalize=True)


def events_to_voxel_grid(events: np.ndarray, width: int, height: int, bins: int, t_start_ns: int, t_end_ns: int,
                         *, out_size: tuple[int, int] | None = None, normalize: bool = False) -> np.ndarray:
    """Events → voxel grid (Zhu et al. 2019, "Unsupervised event-based learning of optical flow").

    Bin b is centred at `t_start + b (t_end - t_start) / (bins - 1)`: the first bin centre is the
    window start and the last the window end. Each event adds its polarity (+1 ON, -1 OFF) to its
    pixel in the two bins whose centres bracket it, split linearly in time:
    `V[b] += p * max(0, 1 - |b - t*|)` with `t* = (bins - 1)(t - t_start) / (t_end - t_start)`.
    So each event's absolute weights sum to 1 and an event at a bin centre lands in that bin only.
    With `bins == 1` every event adds its full polarity to bin 0.

    Args:
        events: EVENT_DTYPE array (any order); events outside [t_start_ns, t_end_ns] are ignored.
        width: sensor columns.
        height: sensor rows.
        bins: number of temporal bins (>= 1).
        t_start_ns: window start.
        t_end_ns: window end (> t_start_ns).
        out_size: (rows, cols) of the grid; coordinates are binned by integer scaling
            (`x * cols // width`, `y * rows // height`), so the events of a block of pixels add up
            in one cell. Default (height, width).
        normalize: divide by a robust scale, the 98th percentile of |V| over the non-zero cells,
            so typical values lie in [-1, 1] whatever the event rate; cells without events stay 0
            and signs are kept.

    Returns:
        (bins, rows, cols) float32.

    Raises:
        ValueError: bad bins, window or output size, or events outside the sensor.
    """
    rows, cols = out_size if out_size is not None else (height, width)
    if bins < 1 or t_end_ns <= t_start_ns or rows < 1 or cols < 1 or width < 1 or height < 1:
        raise ValueError(f"need bins >= 1, t_end_ns > t_start_ns and positive sizes; got bins={bins}, window "
                         f"[{t_start_ns}, {t_end_ns}], sensor {width}x{height}, out_size {out_size}")
    events = np.asarray(events)
    inside = events[(events["t"] >= t_start_ns) & (events["t"] <= t_end_ns)]
    cells = rows * cols
    if inside.size and (int(inside["x"].max()) >= width or int(inside["y"].max()) >= height):
        raise ValueError(f"events up to x={int(inside['x'].max())}, y={int(inside['y'].max())} do not fit the "
                         f"{width}x{height} sensor")
    x = inside["x"].astype(np.int64) * cols // width
    y = inside["y"].astype(np.int64) * rows // height
    polarity = inside["p"].astype(np.float64) * 2.0 - 1.0
    tn = (inside["t"] - t_start_ns) * ((bins - 1) / (t_end_ns - t_start_ns))
    lower = np.minimum(np.floor(tn), max(bins - 2, 0)).astype(np.int64)
    frac = tn - lower
    pixel = y * cols + x
    # With bins == 1, frac is 0 and the upper share (0) goes to bin 0 as well.
    upper = np.minimum(lower + 1, bins - 1)
    grid = np.bincount(np.concatenate((lower * cells + pixel, upper * cells + pixel)),
                       weights=np.concatenate((polarity * (1.0 - frac), polarity * frac)), minlength=bins * cells)
    if normalize:
        magnitude = np.abs(grid[grid != 0])
        if magnitude.size:
            grid /= np.percentile(magnitude, 98)
    return grid.astype(np.float32).reshape(bins, rows, cols)
