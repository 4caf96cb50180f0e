"""to_onnx: write a model (dense, compressed or quantized) as an ONNX file and report its bytes per layer."""

import numpy as np

import engine
from engine import backend
from engine.io import atomic_write
from engine.tensor import Tensor

from .graph import GraphBuilder

OPSET = 21      # DequantizeLinear of uint4 codes; onnxruntime >= 1.17 runs it


class ExportReport:
    """Per layer: operator pattern, parameter and buffer bytes in the file, whether the compression is kept.

    file_bytes = param_bytes + buffer_bytes + graph_bytes, where graph_bytes is the overhead of
    the graph itself (node and tensor descriptions, shape constants, protobuf framing).
    """

    def __init__(self, path, rows, file_bytes, quantize_bits, opset):
        self.path, self.rows, self.file_bytes = path, rows, file_bytes
        self.quantize_bits, self.opset = quantize_bits, opset
        self.param_bytes = sum(r["param_bytes"] for r in rows)
        self.buffer_bytes = sum(r["buffer_bytes"] for r in rows)
        self.graph_bytes = file_bytes - self.param_bytes - self.buffer_bytes
        # codes of <= 4 bits are stored as packed uint4, 5..8 bits as uint8
        self.code_bits = None if quantize_bits is None else (4 if quantize_bits <= 4 else 8)

    @property
    def all_kept(self):
        return all(r["kept"] for r in self.rows)

    def as_dict(self):
        keys = ("path", "rows", "file_bytes", "param_bytes", "buffer_bytes", "graph_bytes",
                "quantize_bits", "code_bits", "opset")
        return {k: getattr(self, k) for k in keys}

    def format(self):
        """A markdown table of the rows and a total line."""
        lines = ["| layer | type | ONNX operators | param bytes | buffer bytes | compression kept |",
                 "|---|---|---|---:|---:|---|"]
        for r in self.rows:
            kept = "yes" if r["kept"] else "no"
            lines.append(f"| {r['name']} | {r['type']} | {r['pattern']} | {r['param_bytes']:,} | "
                         f"{r['buffer_bytes']:,} | {kept + (': ' + r['note'] if r['note'] else '')} |")
        bits = ""
        if self.quantize_bits:
            bits = f", {self.quantize_bits}-bit codes"
            if self.code_bits != self.quantize_bits:
                bits += (f" held as {self.code_bits}-bit integers (ONNX has no {self.quantize_bits}-bit "
                         f"type: the file is larger than quantize.storage_bytes)")
        lines.append(f"\n{self.path}: {self.file_bytes:,} bytes = {self.param_bytes:,} parameters{bits} + "
                     f"{self.buffer_bytes:,} buffers + {self.graph_bytes:,} graph (opset {self.opset})")
        return "\n".join(lines)


def _input_array(example_input):
    data = example_input.data if isinstance(example_input, Tensor) else example_input
    return np.asarray(backend.to_numpy(backend.as_array(data)))


def _has_recurrence(model):
    from layers.recurrent import GRU, LSTM
    return any(isinstance(m, (GRU, LSTM)) for m in model.modules())


def _output_array(model, example_input):
    with engine.no_grad():
        out = model(example_input)
    return np.asarray(backend.to_numpy(out.data if isinstance(out, Tensor) else out))


def to_onnx(model, path, example_input, quantize_bits=None, opset=OPSET):
    """Write `model` (in eval mode) to `path` as ONNX; returns an ExportReport.

    example_input: one batch of what the model takes (its shape fixes every axis but the batch,
    and the time axis of recurrent models). quantize_bits (1..8): every parameter as integer
    codes with DequantizeLinear plus an offset (compressors.quantize's scheme; codes of <= 4 bits
    are stored as packed uint4, 5..8 bits as uint8).
    """
    if quantize_bits is not None:
        from compressors.quantize import check_bits
        quantize_bits = check_bits(quantize_bits, "to_onnx")
    x = _input_array(example_input)
    if x.ndim < 1 or x.shape[0] < 1:
        raise ValueError(f"to_onnx: example_input must have a batch axis, got shape {x.shape}")
    param_dtype = next(model.parameters()).dtype
    in_dtype = np.int64 if x.dtype.kind in "iu" else param_dtype
    g = GraphBuilder(quantize_bits, dtype=param_dtype)
    g.input_is_integer, g.input_rank = x.dtype.kind in "iu", x.ndim
    g.param_names = {id(p): name for name, p in model.named_parameters()}
    training = {id(m): m.training for m in model.modules()}
    model.eval()
    try:
        y = _output_array(model, x.astype(in_dtype))
        output = g.call("", model, "input")
    finally:
        for m in model.modules():
            object.__setattr__(m, "training", training[id(m)])
    g.nodes.append(g.onnx.helper.make_node("Identity", [output], ["output"], name="output"))
    # recurrent models take any sequence length; their output's later axes are left unnamed
    recurrent = _has_recurrence(model)
    in_shape = ["batch"] + list(x.shape[1:])
    if recurrent and x.ndim >= 2:
        in_shape[1] = "time"
    out_shape = ["batch"] + ([None] * (y.ndim - 1) if recurrent else list(y.shape[1:]))
    proto = g.model_proto([("input", in_dtype, in_shape)], [("output", y.dtype, out_shape)], opset,
                          doc=f"compactnet export of {type(model).__name__}")
    g.onnx.checker.check_model(proto)
    data = proto.SerializeToString()
    atomic_write(path, lambda fh: fh.write(data), suffix=".onnx")
    return ExportReport(path, g.rows, len(data), quantize_bits, opset)
