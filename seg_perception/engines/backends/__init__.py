"""Backends by name, and the `auto` choice among them."""
from __future__ import annotations

from collections.abc import Callable

from ..errors import BackendUnavailable
from ..spec import DEVICES
from .base import Backend, EngineOptions
from .onnxruntime_backend import OnnxRuntimeBackend
from .tensorrt_backend import TensorRTBackend, engine_cache_fields
from .torch_backend import TorchBackend

BACKENDS: dict[str, type[Backend]] = {"tensorrt": TensorRTBackend, "onnxruntime": OnnxRuntimeBackend,
                                      "torch": TorchBackend}
# What `auto` tries, fastest first.
AUTO_ORDER = (("tensorrt", "cuda"), ("onnxruntime", "cuda"), ("torch", "cuda"), ("onnxruntime", "cpu"),
              ("torch", "cpu"))


def _probe(backend: str, device: str) -> str | None:
    return BACKENDS[backend].unavailable(device)


def choose_backend(backend: str = "auto", device: str = "auto", precision: str = "fp32", *,
                   probe: Callable[[str, str], str | None] = _probe) -> tuple[str, str, list[str]]:
    """(backend, device, notes): the first candidate that runs `precision` here, with why the ones
    before it were passed over.

    Args:
        backend: "auto" or a name in BACKENDS.
        device: "auto", "cpu" or "cuda".
        probe: (backend, device) → why it cannot run here, or None (the backends' own checks by default).

    Raises:
        BackendUnavailable: no candidate can run; the message lists each one's reason.
    """
    if backend != "auto" and backend not in BACKENDS:
        raise BackendUnavailable(f"backend {backend!r} is not known; choose auto or one of {', '.join(BACKENDS)}")
    if device != "auto" and device not in DEVICES:
        raise BackendUnavailable(f"device {device!r} is not known; choose auto, cpu or cuda")
    candidates = [(b, d) for b, d in AUTO_ORDER if backend in ("auto", b) and device in ("auto", d)]
    if not candidates:
        raise BackendUnavailable(f"{backend} does not run on {device}; it runs on "
                                 f"{' or '.join(d for b, d in AUTO_ORDER if b == backend)}")
    notes = []
    for name, dev in candidates:
        if precision not in BACKENDS[name].precisions.get(dev, ()):
            notes.append(f"{name}/{dev}: does not run {precision}")
            continue
        reason = probe(name, dev)
        if reason is None:
            return name, dev, notes
        notes.append(f"{name}/{dev}: {reason}")
    raise BackendUnavailable(f"no backend can run {precision} here (asked for backend={backend}, device={device}): "
                             + "; ".join(notes))


__all__ = ["AUTO_ORDER", "BACKENDS", "Backend", "EngineOptions", "OnnxRuntimeBackend", "TensorRTBackend", "TorchBackend",
           "choose_backend", "engine_cache_fields"]
