"""TensorRT (10 and newer): strongly typed engines built from the ONNX export, cached, run on device memory.

Precision lives in the ONNX graph, not in builder flags: fp16 is the fp16 export, int8 the Q/DQ
model from entropy calibration (see `quantize`). TensorRT 11 removed the weak-typing flags
(FP16, INT8) and implicit calibration, and strong typing means a precision can never be silently
not applied. A plan is cached under a key of everything it depends on — the ONNX file's hash,
the TensorRT version, the GPU's name and compute capability, the precision and the input shapes —
so an upgrade or a different GPU gets a new engine instead of a stale one.
"""
from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import Any

import torch

from ..cache import file_sha256, get_or_build_at, write_atomically
from ..deploy import INPUT_NAMES, OUTPUT_NAMES
from ..errors import BackendUnavailable, EngineError
from ..spec import EngineSpec
from .base import Backend, EngineOptions, check_io, onnx_for

log = logging.getLogger(__name__)
MAX_TOPK = 3840  # TensorRT's ITopKLayer limit on K


def _tensorrt() -> Any:
    try:
        trt = importlib.import_module("tensorrt")
    except Exception as exc:  # ImportError, or OSError from a missing libnvinfer
        raise BackendUnavailable(f"tensorrt is not importable ({exc}); install TensorRT 10 or newer (JetPack 6+, or "
                                 f"pip install tensorrt)") from None
    if int(trt.__version__.split(".")[0]) < 10:
        raise BackendUnavailable(f"TensorRT {trt.__version__} is too old; seg_perception needs TensorRT 10 or newer")
    return trt


def engine_cache_fields(onnx_sha256: str, tensorrt_version: str, gpu_name: str, compute_capability: str,
                        precision: str, input_shapes: dict[str, tuple[int, ...]]) -> dict[str, Any]:
    """Everything a serialized engine depends on: a change in any of them means a different engine."""
    return {"onnx_sha256": onnx_sha256, "tensorrt": tensorrt_version, "gpu": gpu_name,
            "compute_capability": compute_capability, "precision": precision,
            "input_shapes": {name: list(shape) for name, shape in sorted(input_shapes.items())}}


class TensorRTBackend(Backend):
    name = "tensorrt"
    precisions = {"cuda": ("fp32", "fp16", "int8")}

    @classmethod
    def unavailable(cls, device: str) -> str | None:
        if device != "cuda":
            return "TensorRT runs on CUDA devices only"
        try:
            _tensorrt()
        except BackendUnavailable as exc:
            return str(exc)
        if not torch.cuda.is_available():
            return "torch sees no CUDA device (TensorRT buffers are torch CUDA tensors)"
        return None

    def __init__(self, source: Any, spec: EngineSpec, device: str, options: EngineOptions, *,
                 plan: Path | None = None) -> None:
        super().__init__(source, spec, device, options)
        if spec.k > MAX_TOPK:
            raise EngineError(f"TensorRT's TopK takes K <= {MAX_TOPK}; k={spec.k} at {spec.width}x{spec.height}. Lower k "
                              f"or the input size")
        self.trt = trt = _tensorrt()
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        self.engine: Any = None
        config, index = source.config, options.device_index
        self.shapes = {"x": (1, config.input_channels, spec.height, spec.width), "present": (1, len(config.modalities))}
        onnx = onnx_for(self.name, source, spec, options, symmetric_int8=True)  # Q/DQ must be symmetric for TensorRT
        capability = ".".join(map(str, torch.cuda.get_device_capability(index)))
        self.fields = engine_cache_fields(file_sha256(onnx), trt.__version__, torch.cuda.get_device_name(index),
                                          capability, spec.precision, self.shapes)
        self.timing_cache = options.cache.root / "tensorrt" / f"timing-{trt.__version__}-{capability}.cache"
        target = plan or options.cache.path_for("tensorrt", self.fields, ".plan")
        self.plan = get_or_build_at(target, self.fields, lambda tmp: self._build(onnx, tmp), rebuild=options.rebuild,
                                    validate=self._load)
        if self.engine is None:
            self._load(self.plan)
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        mode = {n: self.engine.get_tensor_mode(n) for n in names}
        shape = {n: tuple(self.engine.get_tensor_shape(n)) for n in names}
        check_io(str(self.plan), {n: shape[n] for n in names if mode[n] == trt.TensorIOMode.INPUT},
                 {n: shape[n] for n in names if mode[n] == trt.TensorIOMode.OUTPUT}, spec, config.input_channels,
                 len(config.modalities))
        device_ = self.torch_device()
        self.outputs = {n: torch.empty(shape[n], dtype=torch.int32 if n == "labels" else torch.float32, device=device_)
                        for n in names if mode[n] == trt.TensorIOMode.OUTPUT}
        for name, tensor in self.outputs.items():
            self.context.set_tensor_address(name, tensor.data_ptr())

    def _build(self, onnx: Path, out: Path) -> None:
        trt = self.trt
        log.info("building a TensorRT %s engine from %s (this takes a minute or more, once)", self.spec.precision, onnx)
        builder = trt.Builder(self.logger)
        flags = 0
        strongly_typed = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
        if strongly_typed is not None:  # TensorRT 10 opts in; in 11 strong typing is the only mode
            flags |= 1 << int(strongly_typed)
        network = builder.create_network(flags)
        parser = trt.OnnxParser(network, self.logger)
        if not parser.parse_from_file(str(onnx)):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise EngineError(f"TensorRT cannot parse {onnx}: {errors}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, self.options.workspace_mb << 20)
        profile = None
        for i in range(network.num_inputs):  # dynamic dimensions (custom exports) get a fixed profile
            tensor = network.get_input(i)
            if any(d < 0 for d in tuple(tensor.shape)):
                profile = profile or builder.create_optimization_profile()
                fixed = self.shapes[tensor.name]
                profile.set_shape(tensor.name, fixed, fixed, fixed)
        if profile is not None:
            config.add_optimization_profile(profile)
        timing = config.create_timing_cache(self.timing_cache.read_bytes() if self.timing_cache.is_file() else b"")
        config.set_timing_cache(timing, ignore_mismatch=False)
        plan = builder.build_serialized_network(network, config)
        if plan is None:
            raise EngineError(f"TensorRT could not build an engine from {onnx}; its log above says why")
        out.write_bytes(memoryview(plan))
        write_atomically(self.timing_cache, memoryview(config.get_timing_cache().serialize()))

    def _load(self, path: Path) -> None:
        engine = self.runtime.deserialize_cuda_engine(path.read_bytes())
        if engine is None:
            raise EngineError(f"TensorRT {self.trt.__version__} cannot deserialize {path} (corrupt, or built by "
                              f"another TensorRT version)")
        self.engine = engine

    def run(self, x: torch.Tensor, present: torch.Tensor) -> dict[str, torch.Tensor]:
        """Runs on torch's current stream. The outputs are this engine's buffers, overwritten by the next run."""
        for name, tensor in zip(INPUT_NAMES, (x, present)):
            self.context.set_tensor_address(name, tensor.data_ptr())
        if not self.context.execute_async_v3(torch.cuda.current_stream(x.device).cuda_stream):
            raise EngineError(f"TensorRT failed to run {self.plan}; its log above says why")
        return {name: self.outputs[name] for name in OUTPUT_NAMES}

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "plan": str(self.plan), "tensorrt": self.trt.__version__,
                "gpu": self.fields["gpu"], "compute_capability": self.fields["compute_capability"]}

