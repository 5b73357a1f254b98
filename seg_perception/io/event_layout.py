"""The array layouts every event decoder returns: CD events (EVENT_DTYPE) and trigger events (TRIGGER_DTYPE)."""
from __future__ import annotations

import numpy as np

from .errors import ConversionError

# x, y: pixel; p: 1 = ON (brighter), 0 = OFF; t: ns on the ROS clock (see events.py per encoding).
EVENT_DTYPE = np.dtype({
    "names": ["x", "y", "p", "t"],
    "formats": ["<u2", "<u2", "u1", "<i8"],
    "offsets": [0, 2, 4, 8],
    "itemsize": 16,
})

# External trigger edges: t as for CD events; id: the trigger input channel; p: 1 = rising edge, 0 = falling.
TRIGGER_DTYPE = np.dtype({
    "names": ["t", "id", "p"],
    "formats": ["<i8", "u1", "u1"],
    "offsets": [0, 8, 9],
    "itemsize": 16,
})


def empty_events() -> np.ndarray:
    return np.empty(0, dtype=EVENT_DTYPE)


def empty_triggers() -> np.ndarray:
    return np.empty(0, dtype=TRIGGER_DTYPE)


def packed_rows(rows: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """(N, 2) int64 rows written by a compiled decoder → the N records of a 16-byte `dtype`, zero-copy.

    The decoders pack a record as two native int64 words (EVENT_DTYPE: x | y << 16 | p << 32, then t;
    TRIGGER_DTYPE: t, then id | p << 8): one pass writes the final layout, no field-by-field copy.
    That is the little-endian byte order of both dtypes, which every ROS 2 platform uses.
    """
    return rows.view(dtype).reshape(-1)


def check_range(x_max: int, y_max: int, width: int, height: int, what: str) -> None:
    if x_max >= width or y_max >= height:
        raise ConversionError(
            f"{what} has an event at x up to {x_max}, y up to {y_max} outside the {width}x{height} sensor in its "
            f"width/height fields; accepted: 0 <= x < width, 0 <= y < height")


def check_events(events: np.ndarray, width: int, height: int) -> np.ndarray:
    """`events` as a 1-D array with fields x, y, p, t, every event inside a width x height sensor."""
    events = np.asarray(events)
    if events.dtype.names is None or not {"x", "y", "p", "t"} <= set(events.dtype.names) or events.ndim != 1:
        raise ConversionError(
            f"events must be a 1-D structured array with fields x, y, p, t (EVENT_DTYPE), got dtype {events.dtype} "
            f"and shape {events.shape}")
    if events.size:
        if int(events["x"].max()) >= width or int(events["y"].max()) >= height:
            raise ConversionError(
                f"event coordinates up to x={int(events['x'].max())}, y={int(events['y'].max())} do not fit a "
                f"{width}x{height} sensor; accepted: 0 <= x < width, 0 <= y < height")
        if int(events["p"].max()) > 1 or int(events["p"].min()) < 0:
            raise ConversionError("event polarity must be 0 (OFF) or 1 (ON)")
    return events
