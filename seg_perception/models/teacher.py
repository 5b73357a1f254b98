"""The teacher: a wider, deeper encoder and a decoder that refines to 1/4 resolution everywhere."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import ConvBNReLU, Encoder, FPNDecoder
from .config import ModelConfig


class Teacher(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = FPNDecoder(config.widths, config.decoder_width)
        self.fuse4 = ConvBNReLU(config.decoder_width + config.stem_width, config.decoder_width, 3)
        self.classifier = nn.Conv2d(config.decoder_width, config.num_classes, 1)

    def forward(self, x: torch.Tensor, present: torch.Tensor, k: int | None = None) -> dict[str, torch.Tensor]:
        """Same interface as the student (`k` is ignored): logits (N, classes, H, W), the same before the
        final bilinear upsampling (logits_quarter, 1/4 resolution) and the 1/8 decoder features."""
        e4, e8, e16, e32 = self.encoder(x, present)
        features = self.decoder(e8, e16, e32)
        up = F.interpolate(features, size=e4.shape[-2:], mode="bilinear", align_corners=False)
        logits4 = self.classifier(self.fuse4(torch.cat([up, e4], dim=1)))
        logits = F.interpolate(logits4, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return {"logits": logits, "logits_quarter": logits4, "features": features}
