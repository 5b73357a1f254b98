"""Inference engines: one `Segmenter` over PyTorch, ONNX Runtime and TensorRT, with ONNX export,
INT8 quantisation and a cache of built artefacts.

Needs torch; onnx, onnxruntime and tensorrt are imported only by the code paths that use them.
"""
from .backends import AUTO_ORDER, BACKENDS, choose_backend, engine_cache_fields
from .cache import ArtifactCache, cache_key, default_cache_dir
from .errors import BackendUnavailable, EngineError, SegmenterInputError
from .export import export_onnx, read_onnx_metadata
from .frames import Placement, Postprocessor, Preprocessor
from .quantize import Calibration
from .segmenter import DEFAULT_MODEL, Segmentation, Segmenter
from .source import ModelSource
from .spec import EngineSpec

__all__ = [
    "AUTO_ORDER", "BACKENDS", "DEFAULT_MODEL", "ArtifactCache", "BackendUnavailable", "Calibration", "EngineError",
    "EngineSpec", "ModelSource", "Placement", "Postprocessor", "Preprocessor", "Segmentation", "Segmenter",
    "SegmenterInputError", "cache_key", "choose_backend", "default_cache_dir", "engine_cache_fields", "export_onnx",
    "read_onnx_metadata",
]
