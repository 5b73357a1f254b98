"""INT8 post-training quantisation of an fp32 export into a Q/DQ ONNX model.

Calibration is entropy (KL-divergence) calibration — the algorithm of TensorRT's
IInt8EntropyCalibrator2 — run by ONNX Runtime over frames the caller provides (the synthetic world
or bag frames), with its tensor ranges kept in a calibration cache. The result is explicit
quantisation (Q/DQ nodes), the one INT8 form that ONNX Runtime, TensorRT 10 and TensorRT 11 (which
removed implicit INT8 calibration) all run.
"""
from __future__ import annotations

import contextlib
import inspect
import logging
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import EngineError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Calibration:
    """Calibration frames: `name` identifies the set (it is part of cache keys, so name different sets
    differently); `frames()` yields frame dicts with the Segmenter's keyword arguments (rgb, thermal, events)."""

    name: str
    frames: Callable[[], Iterable[dict[str, Any]]]


def quantize_int8(fp32_onnx: Path, out: Path, inputs: Callable[[], Iterator[dict[str, np.ndarray]]], *,
                  calibration_cache: Path, symmetric_activations: bool) -> None:
    """Write an INT8 Q/DQ model of `fp32_onnx` to `out`.

    Args:
        inputs: yields the model's input feeds ({"x": ..., "present": ...}); called only when the
            calibration cache does not exist yet.
        calibration_cache: JSON tensor ranges; reused when present (calibration is then skipped).
        symmetric_activations: int8 activations with zero point 0 (what TensorRT requires); otherwise
            uint8 activations, faster with ONNX Runtime on x86 CPUs.
    """
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.feeds: Iterator[dict[str, np.ndarray]] | None = None
            self.count = 0

        def get_next(self) -> dict[str, np.ndarray] | None:
            if self.feeds is None:
                self.feeds = inputs()
            feed = next(self.feeds, None)
            self.count += feed is not None
            return feed

    calibration_cache.parent.mkdir(parents=True, exist_ok=True)
    # onnxruntime >= 1.31 keeps calibration ranges in a cache file; older versions calibrate every time.
    cache = ({"calibration_cache_path": str(calibration_cache)}
             if "calibration_cache_path" in inspect.signature(quantize_static).parameters else {})
    # The calibrator prints its progress to stdout, which belongs to the caller (bench prints JSON there).
    with tempfile.TemporaryDirectory() as scratch, contextlib.redirect_stdout(sys.stderr):
        prepared = Path(scratch) / "prepared.onnx"
        quant_pre_process(str(fp32_onnx), str(prepared))
        reader = None if cache and calibration_cache.is_file() else Reader()
        try:
            quantize_static(
                str(prepared), str(out), reader,
                quant_format=QuantFormat.QDQ, per_channel=True,
                activation_type=QuantType.QInt8 if symmetric_activations else QuantType.QUInt8,
                weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.Entropy,
                # Only the convolutions and the point head's matrix products: the selector's Top-K,
                # the resizes and the label/confidence head keep float precision.
                op_types_to_quantize=["Conv", "MatMul", "Gemm"],
                # Histograms are updated every few frames instead of after holding every activation of
                # every frame in memory (gigabytes at 640x360).
                extra_options={"ActivationSymmetric": symmetric_activations, "WeightSymmetric": True,
                               "CalibMaxIntermediateOutputs": 4},
                **cache,
            )
        except ValueError:
            if reader is not None and reader.count == 0:
                raise EngineError("INT8 calibration got no frames; give at least one calibration frame") from None
            raise
    log.info("quantised %s to INT8 (calibration cache %s)", fp32_onnx, calibration_cache)
