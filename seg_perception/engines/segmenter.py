"""The one interface nodes and replay use: frames in, labels, confidence and the refined mask out."""
from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from seg_perception.io.encoding import EventWindow

from .backends import BACKENDS, EngineOptions, choose_backend
from .cache import ArtifactCache
from .frames import Postprocessor, Preprocessor
from .quantize import Calibration
from .source import ModelSource

log = logging.getLogger(__name__)
DEFAULT_MODEL = "student_rgb_thermal_events"


@dataclass
class Segmentation:
    """One frame's result, at the resolution of the frame's first given modality.

    Attributes:
        labels: (H, W) class ids, uint8 (uint16 when the label set has more than 255 classes).
        confidence: (H, W) float32 softmax probability of each pixel's label.
        refined: (H, W) bool, True where the student's point head re-predicted the pixel.
        timing: milliseconds: preprocess, inference, postprocess, total.
    """

    labels: np.ndarray
    confidence: np.ndarray
    refined: np.ndarray
    timing: dict[str, float] = field(default_factory=dict)


class Segmenter:
    """A model on a backend, with the pre- and post-processing every backend shares.

    Args:
        model: a shipped model name, a .safetensors checkpoint or an exported .onnx file.
        backend: "auto" (TensorRT → ONNX Runtime CUDA → PyTorch CUDA → ONNX Runtime CPU → PyTorch CPU),
            "tensorrt", "onnxruntime" or "torch".
        device: "auto", "cpu" or "cuda".
        precision: "fp32", "fp16" (CUDA), "bf16" (PyTorch) or "int8" (ONNX Runtime CPU, TensorRT; needs
            `calibration` unless its quantised model is cached).
        input_size: (width, height) of the model input; default the model's training size (an ONNX
            file's export size).
        k: locations the student refines; default its `refine_fraction` of the 1/4-resolution grid.
        fit: "resize" (stretch) or "letterbox" (keep the aspect ratio, pad).
        cache_dir: exports, quantised models and TensorRT plans (default `default_cache_dir()`).
        rebuild: rebuild an unusable cached artefact (True) or raise (False).
        threads: CPU threads for the engine (PyTorch or ONNX Runtime intra-op) and for pre- and
            post-processing, which run on torch whatever the backend (torch's pool is process-wide);
            default the libraries' own choice (all cores).
        calibration: INT8 calibration frames.
        channels_last: PyTorch memory format.
        plan: TensorRT: use (or build) the engine at this path instead of the cache.

    Raises:
        EngineError: (or its subclass BackendUnavailable) when the model or backend cannot be set up;
            the message says what to change.
    """

    def __init__(self, model: str | Path = DEFAULT_MODEL, *, backend: str = "auto", device: str = "auto",
                 precision: str = "fp32", input_size: tuple[int, int] | None = None, k: int | None = None,
                 fit: str = "resize", cache_dir: str | Path | None = None, rebuild: bool = True,
                 threads: int | None = None, calibration: Calibration | None = None, channels_last: bool = False,
                 plan: str | Path | None = None) -> None:
        self.source = ModelSource.open(model)
        self.backend_name, self.device, notes = choose_backend(backend, device, precision)
        self.choice = f"{self.backend_name}/{self.device}" + (f" (passed over: {'; '.join(notes)})" if notes else "")
        log.info("%s runs on %s", self.source.model_id, self.choice)
        self.spec = spec = self.source.spec(input_size=input_size, k=k, precision=precision)
        config = self.source.config
        options = EngineOptions(ArtifactCache(cache_dir), rebuild=rebuild, threads=threads,
                                channels_last=channels_last)
        if calibration is not None:
            options.calibration_name = calibration.name
            options.calibration_feeds = lambda: self._feeds(calibration, fit)
        kwargs = {"plan": Path(plan)} if plan is not None and self.backend_name == "tensorrt" else {}
        self.engine = BACKENDS[self.backend_name](self.source, spec, self.device, options, **kwargs)
        if threads and self.engine.torch_device().type == "cpu":
            torch.set_num_threads(threads)
        self.preprocess = Preprocessor(config.modalities, config.event_bins, spec.width, spec.height, fit=fit,
                                       device=self.engine.torch_device())
        self.postprocess = Postprocessor(config.num_classes, spec.width, spec.height)

    @property
    def label_set(self) -> Any:
        return self.source.label_set

    @property
    def config(self) -> Any:
        return self.source.config

    def describe(self) -> dict[str, Any]:
        return {"model": self.source.model_id, "label_set": self.label_set.name, **self.engine.describe(),
                "fit": self.preprocess.fit}

    def segment(self, rgb: np.ndarray | None = None, thermal: np.ndarray | None = None,
                events: EventWindow | np.ndarray | None = None) -> Segmentation:
        """Segment one frame (see `Preprocessor` for the accepted inputs; absent modalities are allowed).

        Raises:
            SegmenterInputError: an input of the wrong type, dtype or shape, or a modality the model lacks.
        """
        start = time.perf_counter()
        x, present, placement = self.preprocess(rgb, thermal, events)
        after_pre = self._clock()
        outputs = self.engine.run(x, present)
        after_run = self._clock()
        labels, confidence, refined = self.postprocess(outputs, placement)
        end = time.perf_counter()
        timing = {"preprocess": after_pre - start, "inference": after_run - after_pre, "postprocess": end - after_run,
                  "total": end - start}
        return Segmentation(labels, confidence, refined, {k: v * 1e3 for k, v in timing.items()})

    def _clock(self) -> float:
        if self.device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter()

    def _feeds(self, calibration: Calibration, fit: str) -> Iterator[dict[str, np.ndarray]]:
        spec, config = self.spec, self.config
        cpu = Preprocessor(config.modalities, config.event_bins, spec.width, spec.height, fit=fit)
        return (cpu.feed(frame) for frame in calibration.frames())
