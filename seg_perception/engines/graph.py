"""What a network file says about itself: its inputs and outputs (names, shapes, element types) and, for
ONNX, which operator makes each output — read from ONNX, ONNX Runtime or a TensorRT engine alike."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# ONNX Runtime's type strings → numpy dtype names.
_ORT_TYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(uint8)": "uint8",
              "tensor(int8)": "int8", "tensor(int32)": "int32", "tensor(int64)": "int64", "tensor(bool)": "bool",
              "tensor(double)": "float64", "tensor(uint16)": "uint16", "tensor(int16)": "int16"}


@dataclass(frozen=True)
class TensorInfo:
    """One graph input or output: `shape` has None for a dynamic dimension; `dtype` is a numpy name."""

    name: str
    shape: tuple[int | None, ...]
    dtype: str

    def describe(self) -> str:
        dims = ", ".join("?" if d is None else str(d) for d in self.shape)
        return f"{self.name} ({dims}) {self.dtype}"


@dataclass(frozen=True)
class GraphIO:
    """A network's inputs and outputs; `producers` maps an output to the ONNX operator that makes it."""

    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    producers: dict[str, str] = field(default_factory=dict)

    def input(self, name: str) -> TensorInfo | None:
        return next((t for t in self.inputs if t.name == name), None)


def _dim(value: Any) -> int | None:
    return int(value) if isinstance(value, int) and value > 0 else None


def graph_io_from_onnx(model: Any) -> GraphIO:
    """The IO of a loaded `onnx.ModelProto` (initialisers listed as inputs by old exporters are left out)."""
    import onnx

    initialisers = {i.name for i in model.graph.initializer}

    def info(value: Any) -> TensorInfo:
        tensor = value.type.tensor_type
        dims = tuple(_dim(d.dim_value) if d.HasField("dim_value") else None for d in tensor.shape.dim)
        try:
            dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).name
        except (KeyError, ValueError):
            dtype = f"onnx type {tensor.elem_type}"
        return TensorInfo(value.name, dims, dtype)

    outputs = tuple(info(o) for o in model.graph.output)
    names = {o.name for o in outputs}
    producers = {out: node.op_type for node in model.graph.node for out in node.output if out in names}
    return GraphIO(tuple(info(i) for i in model.graph.input if i.name not in initialisers), outputs, producers)


def graph_io_from_session(session: Any) -> GraphIO:
    """The IO of an `onnxruntime.InferenceSession`."""
    def info(arg: Any) -> TensorInfo:
        return TensorInfo(arg.name, tuple(_dim(d) for d in arg.shape), _ORT_TYPES.get(arg.type, arg.type))

    return GraphIO(tuple(info(i) for i in session.get_inputs()), tuple(info(o) for o in session.get_outputs()))


def graph_io_from_engine(engine: Any, trt: Any) -> GraphIO:
    """The IO of a deserialised TensorRT `ICudaEngine` (-1 dimensions are dynamic)."""
    import numpy as np

    inputs, outputs = [], []
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        shape = tuple(_dim(d) for d in engine.get_tensor_shape(name))
        dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name))).name
        (inputs if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT else outputs).append(
            TensorInfo(name, shape, dtype))
    return GraphIO(tuple(inputs), tuple(outputs))
