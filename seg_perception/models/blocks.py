"""Building blocks shared by the networks: conv-BN-ReLU, inverted residuals, modality stems and fusion, FPN decoder."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig


class ConvBNReLU(nn.Sequential):
    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1, relu: bool = True) -> None:
        layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
                                   nn.BatchNorm2d(cout)]
        if relu:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand, 3x3 depthwise, 1x1 project; residual when shapes allow."""

    def __init__(self, cin: int, cout: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = cin * expansion
        self.body = nn.Sequential(ConvBNReLU(cin, hidden, 1), ConvBNReLU(hidden, hidden, 3, stride, groups=hidden),
                                  ConvBNReLU(hidden, cout, 1, relu=False))
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) if self.residual else self.body(x)


def stage(cin: int, cout: int, depth: int, expansion: int) -> nn.Sequential:
    """Downsample by 2, then `depth - 1` blocks at that resolution."""
    return nn.Sequential(InvertedResidual(cin, cout, 2, expansion),
                         *(InvertedResidual(cout, cout, 1, expansion) for _ in range(depth - 1)))


class ModalityFusion(nn.Module):
    """One stem per modality down to 1/4 resolution, fused by presence.

    Each present modality contributes its stem's features; an absent one contributes a learned
    "absent" vector instead, so the fused features tell the network what is missing (the models
    are trained with modality dropout). `present` is (N, M) with 1.0 for present modalities, in the
    config's modality order; missing inputs should be zeros but are never read through.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        width = config.stem_width
        self.splits = [config.channels(m) for m in config.modalities]
        self.stems = nn.ModuleList(
            nn.Sequential(ConvBNReLU(c, width // 2, 3, 2), ConvBNReLU(width // 2, width // 2, 3, 2, groups=width // 2),
                          ConvBNReLU(width // 2, width, 1))
            for c in self.splits
        )
        self.absent = nn.Parameter(torch.zeros(len(self.splits), width, 1, 1))
        self.mix = ConvBNReLU(width, width, 1)

    def forward(self, x: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        fused = 0
        for index, (stem, part) in enumerate(zip(self.stems, torch.split(x, self.splits, dim=1))):
            p = present[:, index].view(-1, 1, 1, 1)
            fused = fused + stem(part) * p + self.absent[index] * (1 - p)
        return self.mix(fused)


class FPNDecoder(nn.Module):
    """Top-down feature pyramid over the 1/8, 1/16 and 1/32 encoder outputs, with global context."""

    def __init__(self, widths: tuple[int, int, int], width: int) -> None:
        super().__init__()
        self.lateral = nn.ModuleList(ConvBNReLU(w, width, 1) for w in widths)
        self.context = ConvBNReLU(widths[-1], width, 1)
        self.smooth = nn.Sequential(ConvBNReLU(width, width, 3, groups=width), ConvBNReLU(width, width, 1))

    def forward(self, e8: torch.Tensor, e16: torch.Tensor, e32: torch.Tensor) -> torch.Tensor:
        top = self.lateral[2](e32) + self.context(F.adaptive_avg_pool2d(e32, 1))
        mid = self.lateral[1](e16) + F.interpolate(top, size=e16.shape[-2:], mode="bilinear", align_corners=False)
        low = self.lateral[0](e8) + F.interpolate(mid, size=e8.shape[-2:], mode="bilinear", align_corners=False)
        return self.smooth(low)


class Encoder(nn.Module):
    """Modality fusion at 1/4, then three inverted-residual stages to 1/8, 1/16 and 1/32."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.fusion = ModalityFusion(config)
        w8, w16, w32 = config.widths
        d8, d16, d32 = config.depths
        self.stage8 = stage(config.stem_width, w8, d8, config.expansion)
        self.stage16 = stage(w8, w16, d16, config.expansion)
        self.stage32 = stage(w16, w32, d32, config.expansion)

    def forward(self, x: torch.Tensor, present: torch.Tensor) -> tuple[torch.Tensor, ...]:
        e4 = self.fusion(x, present)
        e8 = self.stage8(e4)
        e16 = self.stage16(e8)
        return e4, e8, e16, self.stage32(e16)
