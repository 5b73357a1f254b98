"""TensorRT (10 and newer): strongly typed engines built from the ONNX export, cached, run on device memory.

Precision lives in the ONNX graph, not in builder flags: fp16 is the fp16 export, int8 the Q/DQ
model from entropy calibration (see `quantize`). TensorRT 11 removed the weak-typing flags
(FP16, INT8) and implicit calibration, and strong typing means a precision can never be silently
not applied. A plan is cached under a key of everything it depends on — the ONNX file's hash,
the TensorRT version, the GPU's name and compute capability, the precision and the input shapes —
so an upgrade or a different GPU gets a new engine instead of a stale one.

A carded network (a user's ONNX file and its model card) is built the same way, with an optimisation
profile at its run size for dynamic inputs; a prebuilt .plan with its card is loaded as it is, and
its dynamic inputs take each frame's shape within the plan's own profile.
"""
from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..cache import file_sha256, get_or_build_at, write_atomically
from ..deploy import INPUT_NAMES, OUTPUT_NAMES
from ..errors import BackendUnavailable, EngineError
from ..graph import GraphIO, graph_io_from_engine
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


def load_plan(path: Path) -> tuple[Any, Any, GraphIO]:
    """(runtime, engine, its inputs and outputs) of a serialized TensorRT engine; keep the runtime while
    the engine lives.

    Raises:
        BackendUnavailable: TensorRT is not importable here.
        EngineError: the file is not an engine this TensorRT can load.
    """
    trt = _tensorrt()
    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    engine = runtime.deserialize_cuda_engine(Path(path).read_bytes())
    if engine is None:
        raise EngineError(f"TensorRT {trt.__version__} cannot deserialize {path} (corrupt, or built by another "
                          f"TensorRT version or for another GPU)")
    return runtime, engine, graph_io_from_engine(engine, trt)


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
        self.engine: Any = None
        index = options.device_index
        capability = ".".join(map(str, torch.cuda.get_device_capability(index)))
        self.fields = {"gpu": torch.cuda.get_device_name(index), "compute_capability": capability}
        if source.kind == "plan":  # prebuilt: loaded as it is
            self.plan = source.path
            self._load(self.plan)
        else:
            self.shapes = self._input_shapes(source, spec)
            # Q/DQ must be symmetric for TensorRT
            onnx = source.path if source.card is not None else onnx_for(self.name, source, spec, options,
                                                                        symmetric_int8=True)
            self.fields = engine_cache_fields(file_sha256(onnx), trt.__version__, self.fields["gpu"], capability,
                                              spec.precision, self.shapes)
            self.timing_cache = options.cache.root / "tensorrt" / f"timing-{trt.__version__}-{capability}.cache"
            target = plan or options.cache.path_for("tensorrt", self.fields, ".plan")
            self.plan = get_or_build_at(target, self.fields, lambda tmp: self._build(onnx, tmp),
                                        rebuild=options.rebuild, validate=self._load)
            if self.engine is None:
                self._load(self.plan)
        self.context = self.engine.create_execution_context()
        graph = graph_io_from_engine(self.engine, trt)
        if source.card is None:
            config = source.config
            check_io(str(self.plan), {t.name: t.shape for t in graph.inputs}, {t.name: t.shape for t in graph.outputs},
                     spec, config.input_channels, len(config.modalities))
        self.dynamic = {t.name for t in graph.inputs if None in t.shape}
        self.output_types = {t.name: torch.from_numpy(np.empty(0, t.dtype)).dtype
                             for t in graph.outputs}
        self.buffers: dict[str, torch.Tensor] = {}  # output buffers, reallocated when a shape changes

    @staticmethod
    def _input_shapes(source: Any, spec: EngineSpec) -> dict[str, tuple[int, ...]]:
        """The shape each input is built for: the profile of dynamic ones."""
        if source.card is None:
            config = source.config
            return {"x": (1, config.input_channels, spec.height, spec.width), "present": (1, len(config.modalities))}
        binding = source.binding
        if spec.per_frame:
            raise EngineError(f"TensorRT builds {source.path} for one run size: its input {binding.input.name!r} is "
                              f"dynamic, so set input.size in its card (or the size option)")
        image = (1, 3, spec.height, spec.width) if binding.layout == "NCHW" else (1, spec.height, spec.width, 3)
        return {binding.input.name: image, **{k: tuple(v.shape) for k, v in binding.extra.items()}}

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
        for i in range(network.num_inputs):  # dynamic dimensions (users' networks): a profile at the run size
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
        self.runtime, self.engine, _ = load_plan(path)

    def run(self, x: torch.Tensor, present: torch.Tensor) -> dict[str, torch.Tensor]:
        """Runs on torch's current stream. The outputs are this engine's buffers, overwritten by the next run."""
        outputs = self.infer(dict(zip(INPUT_NAMES, (x, present))))
        return {name: outputs[name] for name in OUTPUT_NAMES}

    def infer(self, feeds: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Any engine's inputs by name → its outputs, on torch's current stream (the outputs are this
        engine's buffers, overwritten by the next run)."""
        device = self.torch_device()
        for name, tensor in feeds.items():
            if name in self.dynamic and not self.context.set_input_shape(name, tuple(tensor.shape)):
                raise EngineError(f"{self.plan}: input {name!r} of shape {tuple(tensor.shape)} is outside the "
                                  f"engine's optimisation profile")
            self.context.set_tensor_address(name, tensor.data_ptr())
        for name, dtype in self.output_types.items():
            shape = tuple(self.context.get_tensor_shape(name))
            buffer = self.buffers.get(name)
            if buffer is None or tuple(buffer.shape) != shape:
                buffer = self.buffers[name] = torch.empty(shape, dtype=dtype, device=device)
            self.context.set_tensor_address(name, buffer.data_ptr())
        stream = torch.cuda.current_stream(device).cuda_stream
        if not self.context.execute_async_v3(stream):
            raise EngineError(f"TensorRT failed to run {self.plan}; its log above says why")
        return dict(self.buffers)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "plan": str(self.plan), "tensorrt": self.trt.__version__,
                "gpu": self.fields["gpu"], "compute_capability": self.fields["compute_capability"]}

