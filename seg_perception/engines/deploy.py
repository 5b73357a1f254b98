"""The network as every engine runs it: one stacked input in, per-pixel labels and confidence out.

Class ids and confidence are computed inside the graph, so an engine hands back H x W results
instead of C x H x W logits: nothing large crosses from the device to the host, and the
post-processing left on the host is a crop, a resize and a cast.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

INPUT_NAMES = ("x", "present")
OUTPUT_NAMES = ("labels", "confidence", "refined")
LOGITS_NAME = "logits"
_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class DeployModel(nn.Module):
    """Wraps a student or teacher: (x, present) → labels (N, H, W) int32, confidence (N, H, W) float32
    (softmax probability of the chosen class), refined (N, 1, H/4, W/4) float32 (1 where the point
    head re-predicted; all 0 for a teacher) and, with `with_logits`, the logits (N, C, H, W) float32.

    `precision` "fp16"/"bf16" stores the weights in that type and casts the fp32 inputs inside the
    graph, so an exported fp16 model carries its precision with it (TensorRT strong typing) while
    its inputs and outputs stay fp32.
    """

    def __init__(self, model: Any, k: int, *, precision: str = "fp32", with_logits: bool = False) -> None:
        super().__init__()
        self.dtype = _DTYPES[precision]
        self.model = model.to(self.dtype).eval()
        self.k = k
        self.with_logits = with_logits

    def forward(self, x: torch.Tensor, present: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(x.to(self.dtype), present.to(self.dtype), self.k)
        logits = out["logits"].float()
        top, labels = logits.max(dim=1)
        # max softmax = 1 / sum(exp(l - max)): no division of every class, no overflow.
        confidence = torch.reciprocal(torch.exp(logits - top.unsqueeze(1)).sum(dim=1))
        refined = out["refined"] if "refined" in out else torch.zeros_like(out["logits_quarter"][:, :1])
        results = (labels.to(torch.int32), confidence, refined.float())
        return results + (logits,) if self.with_logits else results
