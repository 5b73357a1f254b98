"""ONNX Runtime: CPU (fp32, or INT8 Q/DQ from static quantisation) and CUDA (fp32, fp16); on CUDA the
TensorRT execution provider goes first where onnxruntime has it (its engines cached beside ours)."""
from __future__ import annotations

import importlib
from typing import Any

import numpy as np
import torch

from ..deploy import OUTPUT_NAMES
from ..errors import BackendUnavailable, EngineError
from .base import Backend, EngineOptions, check_io, onnx_for

_PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}
_NUMPY = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(int32)": np.int32,
          "tensor(int64)": np.int64, "tensor(uint8)": np.uint8}
_TORCH = {"tensor(float)": torch.float32, "tensor(float16)": torch.float16, "tensor(int32)": torch.int32,
          "tensor(int64)": torch.int64, "tensor(uint8)": torch.uint8}
_NUMPY_OF = {torch.float32: np.float32, torch.float16: np.float16, torch.uint8: np.uint8, torch.int64: np.int64,
             torch.int32: np.int32}


def _onnxruntime() -> Any:
    try:
        return importlib.import_module("onnxruntime")
    except ImportError as exc:
        raise BackendUnavailable(f"onnxruntime is not importable ({exc}); pip install onnxruntime "
                                 f"(or onnxruntime-gpu for CUDA)") from None


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    precisions = {"cpu": ("fp32", "int8"), "cuda": ("fp32", "fp16")}

    @classmethod
    def unavailable(cls, device: str) -> str | None:
        try:
            ort = _onnxruntime()
        except BackendUnavailable as exc:
            return str(exc)
        if _PROVIDERS[device] not in ort.get_available_providers():
            return f"onnxruntime {ort.__version__} has no {_PROVIDERS[device]} (has {ort.get_available_providers()})"
        if device == "cuda" and not torch.cuda.is_available():
            return "torch sees no CUDA device (pre- and post-processing run on it)"
        return None

    def __init__(self, source: Any, spec: Any, device: str, options: EngineOptions) -> None:
        super().__init__(source, spec, device, options)
        ort = _onnxruntime()
        self.path = onnx_for(self.name, source, spec, options, symmetric_int8=False)
        session_options = ort.SessionOptions()
        session_options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle worker threads would otherwise spin for a while after each run, taking the cores that
        # pre- and post-processing (and the rest of a node) need.
        session_options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if options.threads:
            session_options.intra_op_num_threads = options.threads
        providers: list[Any] = [_PROVIDERS[device]]
        if device == "cuda":
            providers = [(_PROVIDERS[device], {"device_id": options.device_index})]
            if "TensorrtExecutionProvider" in ort.get_available_providers():
                providers.insert(0, ("TensorrtExecutionProvider", {
                    "device_id": options.device_index, "trt_engine_cache_enable": True,
                    "trt_engine_cache_path": str(options.cache.root / "onnxruntime-tensorrt"),
                    "trt_timing_cache_enable": True}))
        try:
            self.session = ort.InferenceSession(str(self.path), session_options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types, not importable without it
            raise EngineError(f"onnxruntime cannot load {self.path}: {exc}") from None
        active = self.session.get_providers()
        if _PROVIDERS[device] not in active:  # onnxruntime falls back to CPU silently; we do not
            raise EngineError(f"onnxruntime loaded {self.path} on {active[0]}, not {_PROVIDERS[device]}")
        if source.card is None:
            config = source.config
            check_io(str(self.path), {i.name: tuple(i.shape) for i in self.session.get_inputs()},
                     {o.name: tuple(o.shape) for o in self.session.get_outputs()}, spec, config.input_channels,
                     len(config.modalities))
        self.outputs = {o.name: o for o in self.session.get_outputs()}

    def run(self, x: torch.Tensor, present: torch.Tensor) -> dict[str, torch.Tensor]:
        outputs = self.infer({"x": x, "present": present}, OUTPUT_NAMES)
        return {name: outputs[name] for name in OUTPUT_NAMES}

    def infer(self, feeds: dict[str, torch.Tensor], names: tuple[str, ...] | None = None) -> dict[str, torch.Tensor]:
        """Inputs by name → the outputs named (default: all), as torch tensors on the engine's device."""
        names = names or tuple(self.outputs)
        if self.device == "cpu":
            try:
                values = self.session.run(list(names), {k: v.numpy() for k, v in feeds.items()})
            except Exception as exc:  # onnxruntime's own exception types
                raise EngineError(f"onnxruntime failed to run {self.path}: {exc}") from None
            return {name: torch.from_numpy(value) for name, value in zip(names, values)}
        return self._run_on_device(feeds, names)

    def _run_on_device(self, feeds: dict[str, torch.Tensor], names: tuple[str, ...]) -> dict[str, torch.Tensor]:
        """CUDA: bind the torch tensors' device memory, so nothing is copied through the host. Outputs of a
        dynamic shape are allocated by onnxruntime and copied once into torch."""
        binding = self.session.io_binding()
        index = self.options.device_index
        device = next(iter(feeds.values())).device
        for name, tensor in feeds.items():
            binding.bind_input(name, "cuda", index, _NUMPY_OF[tensor.dtype], tuple(tensor.shape), tensor.data_ptr())
        results = {}
        for name in names:
            info = self.outputs[name]
            if all(isinstance(d, int) and d > 0 for d in info.shape):
                results[name] = torch.empty(tuple(info.shape), dtype=_TORCH[info.type], device=device)
                binding.bind_output(name, "cuda", index, _NUMPY[info.type], tuple(info.shape),
                                    results[name].data_ptr())
            else:
                binding.bind_output(name, "cuda", index)
        torch.cuda.current_stream().synchronize()  # the inputs were written on torch's stream
        self.session.run_with_iobinding(binding)
        for name, value in zip(names, binding.get_outputs()):
            if name not in results:
                results[name] = torch.from_numpy(value.numpy()).to(device)
        return results

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "onnx": str(self.path), "provider": self.session.get_providers()[0],
                "threads": self.session.get_session_options().intra_op_num_threads}
