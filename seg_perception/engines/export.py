"""ONNX export of a checkpoint, with the Top-K refinement inside the graph and the model's metadata in it."""
from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path
from typing import Any

from .deploy import INPUT_NAMES, LOGITS_NAME, OUTPUT_NAMES, DeployModel
from .errors import EngineError
from .spec import EngineSpec

OPSET = 17
METADATA_KEY = "seg_perception"
# Bump when the exported graph's interface or meaning changes; part of every export cache key.
EXPORT_FORMAT = "seg_perception.onnx/1"


def export_onnx(checkpoint: Any, path: str | Path, spec: EngineSpec, *, with_logits: bool = False) -> Path:
    """Export a loaded `Checkpoint` to ONNX for `spec` (batch 1, static shapes) and check the file.

    The graph takes x (1, C, H, W) float32 and present (1, M) float32 and returns labels, confidence
    and refined (see `DeployModel`). The file carries the checkpoint's metadata, the spec and the
    I/O contract under the metadata key "seg_perception", so it is usable without the checkpoint.

    Raises:
        EngineError: the spec asks for int8 (quantise an fp32 export instead), or the export fails the
            ONNX checker.
    """
    import onnx
    import torch

    if spec.precision not in ("fp32", "fp16"):
        raise EngineError(f"ONNX export is fp32 or fp16; got {spec.precision!r} (int8 comes from quantising an "
                          f"fp32 export)")
    config = checkpoint.config
    deploy = DeployModel(copy.deepcopy(checkpoint.model), spec.k, precision=spec.precision, with_logits=with_logits)
    x = torch.zeros(1, config.input_channels, spec.height, spec.width)
    present = torch.ones(1, len(config.modalities))
    outputs = OUTPUT_NAMES + ((LOGITS_NAME,) if with_logits else ())
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():  # the TorchScript exporter's deprecation and tracer notes
        warnings.simplefilter("ignore")
        torch.onnx.export(deploy, (x, present), str(path), input_names=list(INPUT_NAMES), output_names=list(outputs),
                          opset_version=OPSET, dynamo=False, do_constant_folding=True)
    model = onnx.load(str(path))
    document = {"format": EXPORT_FORMAT, "checkpoint": checkpoint.metadata, "spec": spec.to_dict(),
                "inputs": list(INPUT_NAMES), "outputs": list(outputs)}
    onnx.helper.set_model_props(model, {METADATA_KEY: json.dumps(document, sort_keys=True)})
    onnx.save(model, str(path))
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except onnx.checker.ValidationError as exc:
        raise EngineError(f"the exported ONNX model {path} fails the ONNX checker: {exc}") from None
    return path


def read_onnx_metadata(path: str | Path) -> dict[str, Any]:
    """The seg_perception document of an exported ONNX file.

    Raises:
        EngineError: the file is missing, is not a readable ONNX model, was not exported by seg_perception,
            or its document is malformed (not JSON, a wrong format, a checkpoint document that
            `check_document` refuses, or a spec that is not an EngineSpec).
    """
    path = Path(path)
    document = metadata_document(onnx_metadata(path), path)
    if document is None:
        raise EngineError(f"{path} has no seg_perception metadata; export checkpoints with `seg-perception export` "
                          f"so the label set and input contract travel with the model, or describe your own "
                          f"network with a model card (README: Your own model)")
    return document


def load_onnx(path: str | Path) -> Any:
    """An ONNX file's `ModelProto` (weights in external files are not loaded).

    Raises:
        EngineError: the file is missing or is not a readable ONNX model.
    """
    import onnx

    from seg_perception.models.checkpoint import check_document
    from seg_perception.models.config import ModelError

    path = Path(path)
    if not path.is_file():
        raise EngineError(f"ONNX file {path} does not exist")
    try:
        return onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError, OSError, ValueError: all mean "not a model"
        raise EngineError(f"{path} is not a readable ONNX model ({exc}); re-export it") from None


def onnx_metadata(path: str | Path) -> dict[str, str]:
    """An ONNX file's metadata properties (key → value), read through ONNX Runtime where it is installed
    (importing onnx alone, for its ml_dtypes, took 0.75-1.4 s of a Segmenter's start on a cached export,
    and ONNX Runtime is imported to run the model anyway), else through onnx.

    Raises:
        EngineError: the file is missing or is not a readable ONNX model.
    """
    path = Path(path)
    try:
        import onnxruntime
    except ImportError:
        return {p.key: p.value for p in load_onnx(path).metadata_props}
    if not path.is_file():
        raise EngineError(f"ONNX file {path} does not exist")
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL  # metadata only
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    try:
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's InvalidProtobuf, InvalidGraph, Fail: all mean "not a usable model"
        raise EngineError(f"{path} is not a readable ONNX model ({exc}); re-export it") from None
    try:
        return dict(session.get_modelmeta().custom_metadata_map)
    except UnicodeDecodeError as exc:  # metadata that is not UTF-8: not written by any exporter
        raise EngineError(f"{path}: its metadata is not UTF-8 text ({exc}); re-export it") from None


def metadata_document(props: dict[str, str], path: Path) -> dict[str, Any] | None:
    """The seg_perception document in an ONNX model's metadata properties, or None when it has none.

    Raises:
        EngineError: a document of another export format, one that is not valid JSON, checkpoint metadata
            that `check_document` refuses, or a spec that is not an EngineSpec.
    """
    from seg_perception.models.checkpoint import check_document
    from seg_perception.models.config import ModelError

    if METADATA_KEY not in props:
        return None
    try:
        document = json.loads(props[METADATA_KEY])
    except ValueError as exc:
        raise EngineError(f"{path}: its seg_perception metadata is not JSON ({exc}); re-export it") from None
    if not isinstance(document, dict) or document.get("format") != EXPORT_FORMAT:
        found = document.get("format") if isinstance(document, dict) else type(document).__name__
        raise EngineError(f"{path} has export format {found!r}; this version reads {EXPORT_FORMAT!r} — re-export it")
    try:
        check_document(document.get("checkpoint"), f"{path} (checkpoint metadata)")
    except ModelError as exc:
        raise EngineError(f"{exc}; re-export it") from None
    spec = document.get("spec")
    try:
        EngineSpec(**spec)
    except TypeError as exc:
        raise EngineError(f"{path}: its spec {spec!r} is not an engine spec ({exc}); re-export it") from None
    return document


def embed_card(source: Path, card: Any, out: Path) -> Path:
    """Copy an ONNX network to `out` with its model card (label set and class map inline) in the
    metadata, so the card travels inside the file."""
    import onnx

    from .card import CARD_KEY

    model = load_onnx(source)
    props = {p.key: p.value for p in model.metadata_props}
    props[CARD_KEY] = json.dumps(card.to_dict(inline=True), sort_keys=True)
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, props)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    onnx.save(model, str(tmp))
    tmp.replace(out)
    return out


def check_parity(checkpoint: Any, onnx_path: str | Path, spec: EngineSpec, feeds: list[dict[str, Any]]) -> dict[str, float]:
    """Compare an ONNX export run by ONNX Runtime (CPU) with the checkpoint run by PyTorch on the same feeds.

    Args:
        feeds: {"x", "present"} numpy inputs at the spec's size.

    Returns:
        label_agreement (fraction of pixels with equal labels), max_confidence_diff, and, when the
        export has a logits output, max_logit_diff.
    """
    import numpy as np
    import onnxruntime
    import torch

    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    reference = DeployModel(copy.deepcopy(checkpoint.model), spec.k, precision=spec.precision, with_logits=LOGITS_NAME in names)
    agree, total, confidence_diff, logit_diff = 0, 0, 0.0, 0.0
    for feed in feeds:
        got = dict(zip(names, session.run(names, feed)))
        with torch.inference_mode():
            want = dict(zip(names, (t.float().numpy() if t.is_floating_point() else t.numpy()
                                    for t in reference(torch.from_numpy(feed["x"]), torch.from_numpy(feed["present"])))))
        agree += int((got["labels"] == want["labels"]).sum())
        total += got["labels"].size
        confidence_diff = max(confidence_diff, float(np.abs(got["confidence"] - want["confidence"]).max()))
        if LOGITS_NAME in names:
            logit_diff = max(logit_diff, float(np.abs(got[LOGITS_NAME] - want[LOGITS_NAME]).max()))
    result = {"label_agreement": agree / max(total, 1), "max_confidence_diff": confidence_diff}
    if LOGITS_NAME in names:
        result["max_logit_diff"] = logit_diff
    return result
