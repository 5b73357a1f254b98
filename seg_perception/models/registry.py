"""Architectures by name."""
from __future__ import annotations

from typing import Any

from .config import ModelConfig, ModelError


def _architectures() -> dict[str, Any]:
    from .student import HardRegionStudent
    from .teacher import Teacher

    return {"student": HardRegionStudent, "teacher": Teacher}


def build_model(config: ModelConfig) -> Any:
    """A new model (torch.nn.Module) for `config`."""
    architectures = _architectures()
    if config.architecture not in architectures:
        raise ModelError(f"architecture {config.architecture!r} is not known; known: {', '.join(architectures)}")
    return architectures[config.architecture](config)
