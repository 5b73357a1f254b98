"""Stacking modality tensors into the networks' input, with the presence mask."""
from __future__ import annotations

from collections.abc import Mapping

import torch

from .config import ModelConfig, ModelError


def stack_inputs(tensors: Mapping[str, torch.Tensor | None], config: ModelConfig,
                 drop: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, present) for a batch: modalities in the config's order, zeros and present = 0 where absent.

    Args:
        tensors: modality → (N, C, H, W) tensor, or None / missing key when absent.
        drop: optional (N, M) bool, True to withhold a modality of a sample (modality dropout).

    Raises:
        ModelError: no modality present, wrong channel counts, or mismatched sizes.
    """
    given = [tensors.get(m) for m in config.modalities]
    reference = next((t for t in given if t is not None), None)
    if reference is None:
        raise ModelError(f"none of the model's modalities {list(config.modalities)} was given")
    n, _, height, width = reference.shape
    parts, present = [], []
    for modality, tensor in zip(config.modalities, given):
        channels = config.channels(modality)
        if tensor is None:
            parts.append(reference.new_zeros(n, channels, height, width))
            present.append(reference.new_zeros(n))
            continue
        if tensor.shape != (n, channels, height, width):
            raise ModelError(f"{modality} input has shape {tuple(tensor.shape)}; expected {(n, channels, height, width)}")
        parts.append(tensor)
        present.append(reference.new_ones(n))
    x, mask = torch.cat(parts, dim=1), torch.stack(present, dim=1)
    if drop is not None:
        mask = mask * (~drop).to(mask.dtype)
        x = x * torch.repeat_interleave(mask, torch.tensor([config.channels(m) for m in config.modalities]), dim=1)[..., None, None]
    return x, mask


def modality_dropout(n: int, modalities: int, probability: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """(n, modalities) bool: which modalities to withhold per sample; at least one always stays."""
    drop = torch.rand(n, modalities, generator=generator) < probability
    keep = torch.randint(0, modalities, (n,), generator=generator)
    drop[torch.arange(n), keep] = False
    return drop
