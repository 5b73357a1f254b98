"""Losses: cross-entropy (class-weighted or OHEM), the selector's, logit and feature distillation."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor, *, weight: torch.Tensor | None = None,
                  ignore_id: int = 255, ohem_fraction: float = 0.0) -> torch.Tensor:
    """Pixel cross-entropy; logits are resized to the labels when sizes differ.

    With `ohem_fraction` > 0 only the hardest that fraction of valid pixels count (online hard
    example mining), which keeps rare thin classes from drowning in sky and grass.
    """
    if logits.shape[-2:] != labels.shape[-2:]:
        logits = F.interpolate(logits, size=labels.shape[-2:], mode="bilinear", align_corners=False)
    losses = F.cross_entropy(logits, labels, weight=weight, ignore_index=ignore_id, reduction="none")
    valid = labels != ignore_id
    if not valid.any():
        return logits.sum() * 0.0
    losses = losses[valid]
    if ohem_fraction > 0:
        losses = torch.topk(losses, max(1, int(ohem_fraction * losses.numel()))).values
    return losses.mean()


def enet_class_weights(counts: torch.Tensor | list[int], c: float = 1.02) -> torch.Tensor:
    """Class weights 1 / ln(c + p) of each class's pixel share p (ENet, Paszke et al. 2016), scaled so that
    their pixel-weighted mean is 1 (the loss keeps its scale); classes never seen get the largest weight."""
    counts = torch.as_tensor(counts, dtype=torch.float64)
    share = counts / counts.sum().clamp(min=1)
    weights = 1.0 / torch.log(c + share)
    weights = weights / (weights * share).sum().clamp(min=1e-12)
    return weights.float()


def selector_loss(selector: torch.Tensor, coarse: torch.Tensor, labels: torch.Tensor, ignore_id: int = 255) -> torch.Tensor:
    """Binary cross-entropy teaching the selector where the (upsampled) coarse prediction is wrong."""
    size = selector.shape[-2:]
    target_labels = F.interpolate(labels[:, None].float(), size=size, mode="nearest")[:, 0].long()
    prediction = F.interpolate(coarse, size=size, mode="bilinear", align_corners=False).argmax(1)
    valid = target_labels != ignore_id
    wrong = (prediction != target_labels).float()
    losses = F.binary_cross_entropy_with_logits(selector[:, 0], wrong, reduction="none")
    return losses[valid].mean() if valid.any() else selector.sum() * 0.0


def logit_kd(student: torch.Tensor, teacher: torch.Tensor, temperature: float = 2.0,
             labels: torch.Tensor | None = None, ignore_id: int = 255) -> torch.Tensor:
    """Pixel-wise KL(teacher || student) of temperature-softened distributions, × T² (Hinton et al.).

    Zero when the logits are equal. Pixels labelled `ignore_id` are left out when labels are given.
    """
    if student.shape[-2:] != teacher.shape[-2:]:
        teacher = F.interpolate(teacher, size=student.shape[-2:], mode="bilinear", align_corners=False)
    log_p = F.log_softmax(student / temperature, dim=1)
    log_q = F.log_softmax(teacher / temperature, dim=1)
    kl = (log_q.exp() * (log_q - log_p)).sum(1)
    if labels is not None:
        if labels.shape[-2:] != kl.shape[-2:]:
            labels = F.interpolate(labels[:, None].float(), size=kl.shape[-2:], mode="nearest")[:, 0].long()
        valid = labels != ignore_id
        kl = kl[valid] if valid.any() else kl.flatten()
    return kl.mean() * temperature ** 2


class FeatureKD(nn.Module):
    """Feature distillation through a learned 1x1 projection of the student's features to the teacher's
    width; mean squared error of channel-normalised features (robust to scale differences)."""

    def __init__(self, student_channels: int, teacher_channels: int) -> None:
        super().__init__()
        self.projection = nn.Conv2d(student_channels, teacher_channels, 1)

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        projected = self.projection(student)
        if projected.shape[-2:] != teacher.shape[-2:]:
            projected = F.interpolate(projected, size=teacher.shape[-2:], mode="bilinear", align_corners=False)
        return F.mse_loss(F.normalize(projected, dim=1), F.normalize(teacher.detach(), dim=1)) * teacher.shape[1]
