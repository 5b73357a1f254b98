"""The contract every backend keeps: built for one `EngineSpec` on one device, it maps the stacked
input (x, present) to the `DeployModel` outputs, as torch tensors on that device."""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from ..cache import ArtifactCache, file_sha256
from ..deploy import INPUT_NAMES, OUTPUT_NAMES
from ..errors import EngineError
from ..quantize import quantize_int8
from ..source import ModelSource
from ..spec import EngineSpec


@dataclass
class EngineOptions:
    """Choices that do not change what an engine computes.

    Attributes:
        cache: where exports, quantised models and TensorRT plans are kept.
        rebuild: rebuild an unusable cached artefact (True) or raise (False).
        threads: ONNX Runtime intra-op threads (PyTorch's process-wide pool is set by the
            Segmenter); None: the library default.
        calibration_name: identifies the INT8 calibration frames (part of cache keys).
        calibration_feeds: yields {"x", "present"} numpy feeds for INT8 calibration; None: no INT8.
        channels_last: PyTorch backend memory format.
        workspace_mb: TensorRT builder workspace.
        device_index: CUDA device.
    """

    cache: ArtifactCache
    rebuild: bool = True
    threads: int | None = None
    calibration_name: str | None = None
    calibration_feeds: Callable[[], Iterator[dict[str, np.ndarray]]] | None = None
    channels_last: bool = False
    workspace_mb: int = 1024
    device_index: int = 0


class Backend(ABC):
    """One way of running the model. Subclasses set `name` and `precisions` (device → precisions)."""

    name: ClassVar[str]
    precisions: ClassVar[dict[str, tuple[str, ...]]]

    def __init__(self, source: ModelSource, spec: EngineSpec, device: str, options: EngineOptions) -> None:
        supported = self.precisions.get(device, ())
        if spec.precision not in supported:
            raise EngineError(f"{self.name} on {device} runs {', '.join(supported) or 'nothing'}; not {spec.precision}")
        self.source, self.spec, self.device, self.options = source, spec, device, options

    @classmethod
    @abstractmethod
    def unavailable(cls, device: str) -> str | None:
        """Why this backend cannot run on `device` here, or None when it can."""

    @abstractmethod
    def run(self, x: torch.Tensor, present: torch.Tensor) -> dict[str, torch.Tensor]:
        """labels (1, H, W) int32, confidence (1, H, W) float32, refined (1, 1, H/4, W/4) float32."""

    def describe(self) -> dict[str, Any]:
        """What runs, for logs and benchmark reports."""
        return {"backend": self.name, "device": self.device, **self.spec.to_dict()}

    def torch_device(self) -> torch.device:
        return torch.device("cuda", self.options.device_index) if self.device == "cuda" else torch.device("cpu")


def onnx_for(backend: str, source: ModelSource, spec: EngineSpec, options: EngineOptions, *,
             symmetric_int8: bool) -> Path:
    """The ONNX model a backend runs for `spec`: the fp32/fp16 export, or for int8 its quantised Q/DQ
    model (cached per export, calibration set and activation format; calibration ranges cached too)."""
    if spec.precision != "int8":
        return source.onnx(spec, options.cache, rebuild=options.rebuild)
    fp32 = source.onnx(EngineSpec(spec.width, spec.height, spec.k, "fp32"), options.cache, rebuild=options.rebuild)
    if options.calibration_feeds is None or options.calibration_name is None:
        raise EngineError(f"int8 with {backend} needs calibration frames: pass calibration=Calibration(...) "
                          f"(CLI: --calibration sim)")
    import onnxruntime  # the quantiser, whichever backend runs the result

    fields = {"fp32_onnx_sha256": file_sha256(fp32), "calibration": options.calibration_name,
              "symmetric_activations": symmetric_int8, "onnxruntime": onnxruntime.__version__}
    ranges = options.cache.path_for("calibration", {k: fields[k] for k in ("fp32_onnx_sha256", "calibration")}, ".json")
    feeds = options.calibration_feeds
    return options.cache.get_or_build(
        "onnx-int8", fields, ".onnx",
        lambda tmp: quantize_int8(fp32, tmp, feeds, calibration_cache=ranges, symmetric_activations=symmetric_int8),
        rebuild=options.rebuild)


def check_io(where: str, inputs: dict[str, tuple], outputs: dict[str, tuple], spec: EngineSpec, channels: int,
             modalities: int) -> None:
    """Raise EngineError unless an engine's inputs and outputs are the seg_perception contract for `spec`.

    Args:
        inputs, outputs: name → shape as the engine reports them.
    """
    expected_in = {"x": (1, channels, spec.height, spec.width), "present": (1, modalities)}
    problems = []
    for name in INPUT_NAMES:
        if name not in inputs:
            problems.append(f"input {name!r} is missing (has {sorted(inputs)})")
        elif tuple(inputs[name]) != expected_in[name]:
            problems.append(f"input {name!r} has shape {tuple(inputs[name])}, expected {expected_in[name]}")
    extra = sorted(set(inputs) - set(INPUT_NAMES))
    if extra:
        problems.append(f"unexpected inputs {extra}")
    missing = [name for name in OUTPUT_NAMES if name not in outputs]
    if missing:
        problems.append(f"outputs {missing} are missing (has {sorted(outputs)})")
    if problems:
        raise EngineError(f"{where} does not follow the seg_perception engine contract: {'; '.join(problems)}. Export "
                          f"models with `seg-perception export` (inputs x, present; outputs labels, confidence, refined)")
