"""PyTorch eager: CPU or CUDA, fp32 or autocast fp16/bf16, optionally channels_last."""
from __future__ import annotations

import copy
from typing import Any

import torch

from ..deploy import DeployModel
from .base import Backend, EngineOptions

_AUTOCAST = {"fp16": torch.float16, "bf16": torch.bfloat16}


class TorchBackend(Backend):
    name = "torch"
    precisions = {"cpu": ("fp32", "bf16"), "cuda": ("fp32", "fp16", "bf16")}

    @classmethod
    def unavailable(cls, device: str) -> str | None:
        if device == "cuda" and not torch.cuda.is_available():
            return f"torch {torch.__version__} sees no CUDA device"
        return None

    def __init__(self, source: Any, spec: Any, device: str, options: EngineOptions) -> None:
        super().__init__(source, spec, device, options)
        model = copy.deepcopy(source.checkpoint().model)
        self.model = DeployModel(model, spec.k).to(self.torch_device())
        if options.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.autocast = _AUTOCAST.get(spec.precision)

    def run(self, x: torch.Tensor, present: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.options.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), torch.autocast(self.device, self.autocast or torch.float32,
                                                    enabled=self.autocast is not None):
            labels, confidence, refined = self.model(x, present)
        return {"labels": labels, "confidence": confidence, "refined": refined}

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "channels_last": self.options.channels_last, "threads": torch.get_num_threads()}
