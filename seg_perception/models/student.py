"""The hard-region student: coarse logits at 1/8, a selector that scores where they are wrong, and a
point head that re-predicts the Top-K hardest 1/4-resolution locations from fine features
(the idea of FoR-Net's selector-driven Top-K refinement and PointRend's point head).

Only export-friendly operations: TopK, gather and scatter, no data-dependent Python control flow
(K is fixed when a graph is exported); K = 0 gives the base prediction exactly.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import ConvBNReLU, Encoder, FPNDecoder
from .config import ModelConfig, k_for_fraction


class HardRegionStudent(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        classes = config.num_classes
        self.encoder = Encoder(config)
        self.decoder = FPNDecoder(config.widths, config.decoder_width)
        self.classifier = nn.Conv2d(config.decoder_width, classes, 1)
        self.fine = ConvBNReLU(config.stem_width, config.fine_width, 1)
        # Selector: where is the upsampled coarse prediction wrong? Reads fine features, the coarse
        # logits and their top-2 margin (uncertainty).
        self.selector = nn.Sequential(ConvBNReLU(config.fine_width + classes + 1, 32, 1),
                                      ConvBNReLU(32, 32, 3, groups=32), nn.Conv2d(32, 1, 1))
        # Point head: a per-location MLP from fine features and coarse logits to a correction of the
        # coarse logits. Linear layers on (N, K, channels), which also work for K = 0.
        self.point_head = nn.Sequential(
            nn.Linear(config.fine_width + classes, config.point_width), nn.ReLU(inplace=True),
            nn.Linear(config.point_width, config.point_width), nn.ReLU(inplace=True),
            nn.Linear(config.point_width, classes),
        )

    def k_for_fraction(self, fraction: float, height: int, width: int) -> int:
        """K that refines `fraction` of the 1/4-resolution locations of an input of this size."""
        return k_for_fraction(fraction, height, width)

    def default_k(self, height: int, width: int) -> int:
        """K for an input of this size: the config's `refine_fraction`."""
        return self.config.default_k(height, width)

    def forward(self, x: torch.Tensor, present: torch.Tensor, k: int | None = None) -> dict[str, torch.Tensor]:
        """Segment a stacked input.

        Args:
            x: (N, C, H, W) modalities stacked in the config's order (zeros where absent).
            present: (N, M) 1.0 for present modalities.
            k: locations to refine; None: the default fraction; 0: the base prediction.

        Returns:
            logits (N, classes, H, W); coarse (1/8) logits; selector (N, 1, H/4, W/4) difficulty
            logits; point_logits (N, classes, H/4, W/4): the point head applied everywhere (for
            training); refined (N, 1, H/4, W/4) 1.0 where the point head replaced the prediction;
            features: the 1/8 decoder features (for feature distillation).
        """
        height, width = x.shape[-2:]
        e4, e8, e16, e32 = self.encoder(x, present)
        features = self.decoder(e8, e16, e32)
        coarse = self.classifier(features)
        fine = self.fine(e4)
        up = F.interpolate(coarse, size=fine.shape[-2:], mode="bilinear", align_corners=False)
        top2 = torch.topk(torch.softmax(up, dim=1), 2, dim=1).values
        margin = top2[:, :1] - top2[:, 1:]
        selector = self.selector(torch.cat([fine, up, margin], dim=1))

        n, classes = up.shape[:2]
        fine_flat, up_flat = fine.flatten(2), up.flatten(2)
        points = torch.cat([fine_flat, up_flat], dim=1)
        k = self.default_k(int(height), int(width)) if k is None else k
        if k > 0:
            index = torch.topk(selector.flatten(1), k, dim=1).indices  # (N, K) hardest locations
            chosen = torch.gather(points, 2, index.unsqueeze(1).expand(-1, points.shape[1], -1))
            corrected = torch.gather(up_flat, 2, index.unsqueeze(1).expand(-1, classes, -1)) + self._points(chosen)
            refined_flat = up_flat.scatter(2, index.unsqueeze(1).expand(-1, classes, -1), corrected)
            refined_mask = torch.zeros_like(selector.flatten(1)).scatter(1, index, 1.0)
        else:  # the base prediction; no empty tensors in an exported graph (ONNX Runtime rejects them)
            refined_flat, refined_mask = up_flat, torch.zeros_like(selector.flatten(1))
        quarter = up.shape[-2:]
        logits = F.interpolate(refined_flat.view(n, classes, *quarter), size=(height, width), mode="bilinear",
                               align_corners=False)
        out = {"logits": logits, "coarse": coarse, "selector": selector,
               "refined": refined_mask.view(n, 1, *quarter), "features": features}
        if self.training:
            out["point_logits"] = up + self._points(points).view(n, classes, *quarter)
        return out

    def _points(self, points: torch.Tensor) -> torch.Tensor:
        """The point head on (N, channels, K) point features → (N, classes, K) corrections."""
        return self.point_head(points.transpose(1, 2)).transpose(1, 2)

