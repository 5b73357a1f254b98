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
_NUMPY = {"tensor(float)": np.float32, "tensor(int32)": np.int32}


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
        config = source.config
        check_io(str(self.path), {i.name: tuple(i.shape) for i in self.session.get_inputs()},
                 {o.name: tuple(o.shape) for o in self.session.get_outputs()}, spec, config.input_channels,
                 len(config.modalities))
        self.outputs = {o.name: o for o in self.session.get_outputs() if o.name in OUTPUT_NAMES}

    def run(self, x: torch.Tensor, present: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.device == "cpu":
            values = self.session.run(list(OUTPUT_NAMES), {"x": x.numpy(), "present": present.numpy()})
            return {name: torch.from_numpy(value) for name, value in zip(OUTPUT_NAMES, values)}
        return self._run_on_device(x, present)

    def _run_on_device(self, x: torch.Tensor, present: torch.Tensor) -> dict[str, torch.Tensor]:
        """CUDA: bind the torch tensors' device memory, so nothing is copied through the host."""
        binding = self.session.io_binding()
        index = self.options.device_index
        for name, tensor in (("x", x), ("present", present)):
            binding.bind_input(name, "cuda", index, np.float32, tuple(tensor.shape), tensor.data_ptr())
        results = {}
        for name, info in self.outputs.items():
            dtype = torch.int32 if info.type == "tensor(int32)" else torch.float32
            results[name] = torch.empty(tuple(info.shape), dtype=dtype, device=x.device)
            binding.bind_output(name, "cuda", index, _NUMPY[info.type], tuple(info.shape), results[name].data_ptr())
        torch.cuda.current_stream().synchronize()  # the inputs were written on torch's stream
        self.session.run_with_iobinding(binding)
        return results

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "onnx": str(self.path), "provider": self.session.get_providers()[0],
                "threads": self.session.get_session_options().intra_op_num_threads}

