"""The one interface nodes and replay use: frames in, labels, confidence and the refined mask out, for
the package's own models and users' carded networks alike."""
from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from seg_perception.io.encoding import EventWindow

from seg_perception.label_maps import LabelMap, LabelMapError, load_label_map
from seg_perception.labels import LabelSet

from .backends import BACKENDS, EngineOptions, choose_backend
from .cache import ArtifactCache
from .card import ModelCard, with_overrides
from .errors import EngineError, SegmenterInputError
from .frames import ImagePreprocessor, OutputDecoder, Postprocessor, Preprocessor
from .quantize import Calibration
from .source import ModelSource

log = logging.getLogger(__name__)
DEFAULT_MODEL = "student_rgb_thermal_events"


@dataclass
class Segmentation:
    """One frame's result, at the resolution of the frame's first given modality.

    Attributes:
        labels: (H, W) class ids, uint8 (uint16 when the label set has more than 255 classes).
        confidence: (H, W) float32 probability of each pixel's label (the max softmax for logits); None
            when the model gives class ids only (confidence unavailable).
        refined: (H, W) bool, True where the student's point head re-predicted the pixel.
        timing: milliseconds: preprocess, inference, postprocess, total.
    """

    labels: np.ndarray
    confidence: np.ndarray | None
    refined: np.ndarray
    timing: dict[str, float] = field(default_factory=dict)


class Segmenter:
    """A model on a backend, with the pre- and post-processing every backend shares.

    Args:
        model: a shipped model name, a .safetensors checkpoint, an exported .onnx file, or a user's own
            .onnx or TensorRT .plan/.engine network with its model card.
        backend: "auto" (TensorRT → ONNX Runtime CUDA → PyTorch CUDA → ONNX Runtime CPU → PyTorch CPU),
            "tensorrt", "onnxruntime" or "torch".
        device: "auto", "cpu" or "cuda".
        precision: "fp32", "fp16" (CUDA), "bf16" (PyTorch) or "int8" (ONNX Runtime CPU, TensorRT; needs
            `calibration` unless its quantised model is cached).
        input_size: (width, height) of the model input; default the model's training size (an ONNX
            file's export size).
        k: locations the student refines; default its `refine_fraction` of the 1/4-resolution grid.
        fit: "resize" (stretch), "letterbox" (keep the aspect ratio, pad) or "crop" (keep it, cut); a
            carded network takes its card's unless this is given.
        cache_dir: exports, quantised models and TensorRT plans (default `default_cache_dir()`).
        rebuild: rebuild an unusable cached artefact (True) or raise (False).
        threads: CPU threads for the engine (PyTorch or ONNX Runtime intra-op) and for pre- and
            post-processing, which run on torch whatever the backend (torch's pool is process-wide);
            default the libraries' own choice (all cores).
        calibration: INT8 calibration frames.
        channels_last: PyTorch memory format.
        plan: TensorRT: use (or build) the engine at this path instead of the cache.
        card: the model card of a user's network (a path or a ModelCard; default: the one embedded in the
            ONNX file or beside the model as <model>.yaml).
        class_map: remap or merge the model's classes before anything is published or scored: a label
            map name, a YAML path or a LabelMap (model ids → another label set); default the card's.

    Raises:
        EngineError: (or its subclass BackendUnavailable) when the model or backend cannot be set up;
            the message says what to change.
    """

    def __init__(self, model: str | Path = DEFAULT_MODEL, *, backend: str = "auto", device: str = "auto",
                 precision: str = "fp32", input_size: tuple[int, int] | None = None, k: int | None = None,
                 fit: str | None = None, cache_dir: str | Path | None = None, rebuild: bool = True,
                 threads: int | None = None, calibration: Calibration | None = None, channels_last: bool = False,
                 plan: str | Path | None = None, card: str | Path | ModelCard | None = None,
                 class_map: str | Path | LabelMap | None = None) -> None:
        self.source = source = ModelSource.open(model, card)
        if source.card is not None and (input_size is not None or fit is not None):
            source = self.source = source.with_card(with_overrides(source.card, size=input_size, resize=fit))
            input_size = None
        self.class_map = _class_map(class_map, source)
        self.backend_name, self.device, notes = choose_backend(backend, device, precision)
        self.choice = f"{self.backend_name}/{self.device}" + (f" (passed over: {'; '.join(notes)})" if notes else "")
        log.info("%s runs on %s", source.model_id, self.choice)
        self.spec = spec = source.spec(input_size=input_size, k=k, precision=precision)
        options = EngineOptions(ArtifactCache(cache_dir), rebuild=rebuild, threads=threads,
                                channels_last=channels_last)
        if calibration is not None:
            options.calibration_name = calibration.name
            options.calibration_feeds = lambda: self._feeds(calibration, fit or "resize")
        kwargs = {"plan": Path(plan)} if plan is not None and self.backend_name == "tensorrt" else {}
        self.engine = BACKENDS[self.backend_name](source, spec, self.device, options, **kwargs)
        torch_device = self.engine.torch_device()
        if threads and torch_device.type == "cpu":
            torch.set_num_threads(threads)
        published = self.label_set
        label_dtype = np.uint8 if max(published.num_classes, published.ignore_id + 1) <= 256 else np.uint16
        model_labels = source.label_set
        table = (self.class_map.compact(max(model_labels.num_classes, model_labels.ignore_id + 1))
                 if self.class_map is not None else None)
        self.postprocess = Postprocessor(label_dtype, class_map=table, fill=published.ignore_id)
        binding = source.binding
        if binding is not None:
            self.preprocess: Any = ImagePreprocessor(binding, torch_device)
            self.decode = OutputDecoder(binding.kind, binding.output_layout, model_labels.num_classes,
                                        model_labels.ignore_id)
        else:
            config = source.config
            self.preprocess = Preprocessor(config.modalities, config.event_bins, spec.width, spec.height,
                                           fit=fit or "resize", device=torch_device)

    @property
    def label_set(self) -> LabelSet:
        """The label set of the published labels: the class map's target, else the model's own."""
        return self.class_map.label_set if self.class_map is not None else self.source.label_set

    @property
    def config(self) -> Any:
        """The package model's config (a carded network has none: see `modalities`)."""
        return self.source.config

    @property
    def modalities(self) -> tuple[str, ...]:
        """The sensor inputs the model takes."""
        return self.source.modalities

    @property
    def fit(self) -> str:
        return self.preprocess.fit

    def describe(self) -> dict[str, Any]:
        described = {"model": self.source.model_id, "label_set": self.label_set.name, **self.engine.describe(),
                     "fit": self.fit}
        if self.class_map is not None:
            described["class_map"] = self.class_map.name
        if self.source.binding is not None:
            described["card"] = self.source.binding.describe()
        return described

    def segment(self, rgb: np.ndarray | None = None, thermal: np.ndarray | None = None,
                events: EventWindow | np.ndarray | None = None) -> Segmentation:
        """Segment one frame (see `Preprocessor` for the accepted inputs; absent modalities are allowed).

        Raises:
            SegmenterInputError: an input of the wrong type, dtype or shape, or a modality the model lacks.
            EngineError: the engine failed on the frame.
        """
        start = time.perf_counter()
        if self.source.binding is not None:
            if thermal is not None or events is not None or rgb is None:
                raise SegmenterInputError(f"{self.source.model_id} takes ['rgb'] only; got "
                                          f"{[m for m, v in (('rgb', rgb), ('thermal', thermal), ('events', events)) if v is not None]}")
            feeds, placement = self.preprocess(rgb)
            after_pre = self._clock()
            raw = self.engine.infer(feeds, (self.source.binding.output.name,))[self.source.binding.output.name]
            after_run = self._clock()
            outputs = self.decode(raw)
        else:
            x, present, placement = self.preprocess(rgb, thermal, events)
            after_pre = self._clock()
            outputs = self.engine.run(x, present)
            after_run = self._clock()
        labels, confidence, refined = self.postprocess(outputs, placement)
        end = time.perf_counter()
        timing = {"preprocess": after_pre - start, "inference": after_run - after_pre, "postprocess": end - after_run,
                  "total": end - start}
        return Segmentation(labels, confidence, refined, {k: v * 1e3 for k, v in timing.items()})

    def class_log_probabilities(self, rgb: np.ndarray) -> torch.Tensor:
        """A carded network's (C, H, W) class log-probabilities at the frame's resolution, in the published
        label set (a class map sums the probabilities it merges): what a teacher distils.

        Raises:
            EngineError: the model is the package's own (its checkpoint teaches directly).
        """
        binding = self.source.binding
        if binding is None:
            raise EngineError(f"{self.source.model_id} is a seg_perception model: distil from its checkpoint")
        feeds, placement = self.preprocess(rgb)
        raw = self.engine.infer(feeds, (binding.output.name,))[binding.output.name]
        log_p = self.decode.log_probabilities(raw)[0]
        if self.class_map is not None:
            model_classes = self.source.label_set.num_classes
            targets = torch.as_tensor(self.class_map.table[:model_classes], device=log_p.device)
            kept = targets != self.label_set.ignore_id
            merged = torch.zeros((self.label_set.num_classes, *log_p.shape[1:]), device=log_p.device)
            merged.index_add_(0, targets[kept], log_p[kept].exp())
            log_p = torch.log(merged.clamp_min(1e-8) / merged.sum(0, keepdim=True).clamp_min(1e-8))
        return self.postprocess.to_source(log_p, placement, math.log(1.0 / log_p.shape[0]))

    def _clock(self) -> float:
        if self.device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter()

    def _feeds(self, calibration: Calibration, fit: str) -> Iterator[dict[str, np.ndarray]]:
        spec, config = self.spec, self.config
        cpu = Preprocessor(config.modalities, config.event_bins, spec.width, spec.height, fit=fit)
        return (cpu.feed(frame) for frame in calibration.frames())


def _class_map(class_map: str | Path | LabelMap | None, source: ModelSource) -> LabelMap | None:
    """The run-time class map: the one given, else the card's; checked against the model's classes.

    Raises:
        EngineError: it cannot be loaded, or maps ids the model does not have.
    """
    if class_map is None:
        return source.card.class_label_map() if source.card is not None else None
    try:
        label_map = class_map if isinstance(class_map, LabelMap) else load_label_map(class_map)
        label_map.check_source(source.label_set)
    except LabelMapError as exc:
        raise EngineError(f"class map: {exc}") from None
    return label_map
