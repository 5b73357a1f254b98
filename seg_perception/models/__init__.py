"""Segmentation networks: the hard-region student, the teacher, modality fusion, checkpoints.

Needs torch (the CPU wheel is enough).
"""
from .checkpoint import Checkpoint, load_checkpoint, read_metadata, save_checkpoint
from .config import MODALITIES, ModelConfig, ModelError, student_config, teacher_config
from .inputs import modality_dropout, stack_inputs
from .registry import build_model
from .shipped import SHIPPED, shipped_weights

__all__ = [
    "MODALITIES", "SHIPPED", "shipped_weights", "Checkpoint", "ModelConfig", "ModelError", "build_model", "load_checkpoint", "read_metadata",
    "modality_dropout", "save_checkpoint", "stack_inputs", "student_config", "teacher_config",
]
