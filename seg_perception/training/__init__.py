"""Training and distillation of the segmenters: losses, the trainer, dataset adapters, evaluation."""
from .evaluate import evaluate
from .folders import FolderDataset, FolderDatasetError, LabelMap, available_label_maps, load_label_map
from .losses import FeatureKD, cross_entropy, logit_kd, selector_loss
from .trainer import TrainConfig, train

__all__ = [
    "FeatureKD", "FolderDataset", "FolderDatasetError", "LabelMap", "TrainConfig", "available_label_maps",
    "cross_entropy", "evaluate", "load_label_map", "logit_kd", "selector_loss", "train",
]
