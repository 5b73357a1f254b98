"""Training and distillation of the segmenters: losses, the trainer, dataset adapters, evaluation."""
from .evaluate import evaluate
from .folders import FolderDataset, FolderDatasetError
from .losses import FeatureKD, cross_entropy, logit_kd, selector_loss
from .trainer import TrainConfig, train

__all__ = [
    "FeatureKD", "FolderDataset", "FolderDatasetError", "TrainConfig", "cross_entropy", "evaluate", "logit_kd",
    "selector_loss", "train",
]
