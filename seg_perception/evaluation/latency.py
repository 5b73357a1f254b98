"""Per-stage latency samples (milliseconds) with percentiles, exact merging and a lossless dict form."""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from .metrics import EvaluationError

# Pipeline order, for tables; stages not listed follow in first-seen order, "total" comes last.
PIPELINE_STAGES = ("preprocess", "inference", "postprocess", "labelling", "fusion")
TOTAL = "total"
PERCENTILES = (50, 90, 99)


class LatencyStats:
    """Raw latency samples per named stage, e.g. one `Segmentation.timing` dict per frame.

    Samples are kept (a float per stage and frame is small) so that percentiles of merged
    statistics are exact, not approximations from per-worker summaries.

    Args:
        samples: optional initial samples, stage → milliseconds.

    Raises:
        EvaluationError: a sample that is not a finite number >= 0.
    """

    def __init__(self, samples: Mapping[str, Iterable[float]] | None = None) -> None:
        self._samples: dict[str, list[float]] = {}
        for stage, values in (samples or {}).items():
            for value in values:
                self._append(stage, value)

    def add(self, timing: Mapping[str, float]) -> None:
        """Record one frame's timings (stage → ms); stages missing from a frame are simply not sampled.

        Raises:
            EvaluationError: a stage name that is not a string or a value that is not a finite number >= 0.
                Nothing of the frame is recorded then.
        """
        checked = {stage: _check_sample(stage, value) for stage, value in timing.items()}
        for stage, value in checked.items():
            self._samples.setdefault(stage, []).append(value)

    def merge(self, other: LatencyStats) -> LatencyStats:
        """Append another accumulator's samples (e.g. from a worker process) to these; returns self."""
        for stage, values in other._samples.items():
            self._samples.setdefault(stage, []).extend(values)
        return self

    @property
    def stages(self) -> tuple[str, ...]:
        """Sampled stages in pipeline order (see `PIPELINE_STAGES`), others by first appearance, "total" last."""
        known = [s for s in PIPELINE_STAGES if s in self._samples]
        other = [s for s in self._samples if s not in PIPELINE_STAGES and s != TOTAL]
        return tuple(known + other + ([TOTAL] if TOTAL in self._samples else []))

    def samples(self, stage: str) -> np.ndarray:
        """(N,) float64 copy of the samples of `stage`, empty if it was never sampled."""
        return np.array(self._samples.get(stage, []), np.float64)

    def summary(self) -> dict[str, dict[str, float]]:
        """Per sampled stage: p50, p90, p99 (numpy linear interpolation), mean, max (ms) and count."""
        out: dict[str, dict[str, float]] = {}
        for stage in self.stages:
            values = self.samples(stage)
            p50, p90, p99 = np.percentile(values, PERCENTILES, method="linear")
            out[stage] = {"p50": float(p50), "p90": float(p90), "p99": float(p99), "mean": float(values.mean()),
                          "max": float(values.max()), "count": int(values.size)}
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: the raw samples (the only part `from_dict` reads) and the summary. Python floats
        survive a JSON round trip bit for bit."""
        return {"samples": {stage: list(values) for stage, values in self._samples.items()},
                "summary": self.summary()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LatencyStats:
        """Rebuild from `to_dict` output.

        Raises:
            EvaluationError: no "samples" mapping of stage → list of numbers, or a bad sample.
        """
        samples = data.get("samples") if isinstance(data, Mapping) else None
        if not isinstance(samples, Mapping) or not all(isinstance(v, list) for v in samples.values()):
            raise EvaluationError("latency data must hold 'samples': {stage: [milliseconds, ...]}")
        return cls(samples)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LatencyStats):
            return NotImplemented
        return self._samples == other._samples

    def __repr__(self) -> str:
        counts = ", ".join(f"{stage}: {len(self._samples[stage])}" for stage in self.stages)
        return f"LatencyStats({counts})"

    def _append(self, stage: str, value: float) -> None:
        self._samples.setdefault(stage, []).append(_check_sample(stage, value))


def _check_sample(stage: object, value: object) -> float:
    if not isinstance(stage, str):
        raise EvaluationError(f"latency stage names must be strings, got {stage!r}")
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise EvaluationError(f"latency of stage {stage!r} must be a number of milliseconds, got {value!r}")
    number = float(value)
    if not math.isfinite(number) or number < 0:
        raise EvaluationError(f"latency of stage {stage!r} must be finite and >= 0 ms, got {number}")
    return number
