"""GraphBuilder: nodes, initializers (each parameter stored once, float or quantized) and per-layer bytes."""
import contextlib

import numpy as np

from engine import backend

INT64_MIN = -(2 ** 63)


def import_onnx():
    """The onnx module, or ImportError naming the extra that provides it."""
    try:
        import onnx
    except ImportError:
        raise ImportError("ONNX export needs the extra 'onnx': pip install 'compactnet[onnx]'") from None
    return onnx


class _Frame:
    """What one layer's exporter added: op types, bytes of its parameters and buffers, notes."""

    def __init__(self, name, module):
        self.name, self.module = name, module
        self.ops, self.param_bytes, self.buffer_bytes = [], 0, 0
        self.pattern, self.kept, self.note = None, True, ""


class GraphBuilder:
    """Collects an ONNX graph; exporters call op(), param(), const() and call() for sub-modules.

    quantize_bits: None stores parameters as float initializers; 1..8 stores each parameter as
    integer codes (uint8, or uint4 for bits <= 4) with DequantizeLinear(codes, step) + low, the
    scheme of compressors.quantize.
    """

    def __init__(self, quantize_bits=None, dtype=np.float32):
        self.onnx = import_onnx()
        self.quantize_bits, self.dtype = quantize_bits, np.dtype(dtype)
        self.nodes, self.initializers, self.rows = [], [], []
        self._params, self._counts, self._frames = {}, {}, [_Frame("", None)]
        self._consts = {}
        self.input_is_integer, self.input_rank = False, None    # of the model's input (to_onnx sets them)
        self.param_names = {}      # id(Parameter) -> its dotted name in the model (to_onnx fills it)

    # ---- names and nodes -------------------------------------------------
    def fresh(self, prefix):
        count = self._counts.get(prefix, 0)
        self._counts[prefix] = count + 1
        return prefix if count == 0 else f"{prefix}_{count}"

    def op(self, op_type, inputs, outputs=1, **attrs):
        """Add a node; returns its output name (or a list of `outputs` names when outputs > 1)."""
        names = [self.fresh("v") for _ in range(outputs)]     # short names keep the graph small
        self.nodes.append(self.onnx.helper.make_node(op_type, list(inputs), names, **attrs))
        self._frames[-1].ops.append(op_type)
        return names[0] if outputs == 1 else names

    def _initializer(self, array, name):
        from onnx import numpy_helper
        self.initializers.append(numpy_helper.from_array(np.array(array, order="C"), name))
        return name, array.nbytes

    def const(self, array, dtype=None, buffer=False):
        """An initializer holding `array`: a buffer (index vector, running statistic) when buffer=True,
        else a small constant of the graph's structure (shapes, axes)."""
        if not isinstance(array, (np.ndarray, list, tuple, int, float)):
            array = backend.to_numpy(array)
        array = np.asarray(array, dtype=dtype)
        key = None if buffer else (array.dtype.str, array.shape, array.tobytes())
        if key in self._consts:          # one initializer per distinct structural constant
            return self._consts[key]
        name, nbytes = self._initializer(array, self.fresh("c"))
        if buffer:
            self._frames[-1].buffer_bytes += nbytes
        else:
            self._consts[key] = name
        return name

    def ints(self, values):
        return self.const(np.asarray(values, dtype=np.int64))

    def floats(self, values):
        return self.const(np.asarray(values, dtype=self.dtype))

    def param(self, parameter, label=None):
        """The value name of a Parameter, stored once however many layers use it."""
        key = id(parameter)
        if key in self._params:
            return self._params[key]
        label = label or self.param_names.get(key) or self.fresh("param")
        values = backend.to_numpy(parameter.data)
        if self.quantize_bits is None:
            name, nbytes = self._initializer(values.astype(self.dtype), label)
        else:
            name, nbytes = self._quantized(values, label)
        self._frames[-1].param_bytes += nbytes
        self._params[key] = name
        return name

    def _quantized(self, values, label):
        from compressors.quantize import RANGE_BYTES, quantize_array
        codes, low, step = quantize_array(values, self.quantize_bits)
        if self.quantize_bits <= 4:
            import ml_dtypes   # a dependency of onnx >= 1.15: the packed 4-bit type
            codes = codes.astype(ml_dtypes.uint4)
            code_bytes = (codes.size + 1) // 2
        else:
            code_bytes = codes.size
        self._initializer(codes, f"{label}/codes")
        self._initializer(np.asarray(step, np.float32), f"{label}/step")
        self._initializer(np.asarray(low, np.float32), f"{label}/low")
        scaled = self.op("DequantizeLinear", [f"{label}/codes", f"{label}/step"])
        value = self.op("Add", [scaled, f"{label}/low"])
        if self.dtype != np.float32:
            value = self.op("Cast", [value], to=self.elem_type(self.dtype))
        return value, code_bytes + RANGE_BYTES

    def elem_type(self, dtype):
        """ONNX's TensorProto type code of a NumPy dtype."""
        return self.onnx.helper.np_dtype_to_tensor_dtype(np.dtype(dtype))

    # ---- layers ------------------------------------------------------------
    def call(self, name, module, x):
        """Export `module` (named `name` in the model) on input value x; returns its output value name."""
        from .registry import exporter_for
        self._frames.append(_Frame(name, module))
        place = len(self.rows)
        self.rows.append(None)          # a layer's row comes before its sub-layers' rows
        try:
            y = exporter_for(module)(self, module, x)
        finally:
            frame = self._frames.pop()
            del self.rows[place]
        if frame.ops or frame.param_bytes or frame.buffer_bytes:
            self.rows.insert(place, {"name": name or "(model)", "type": type(module).__name__,
                              "pattern": frame.pattern or "+".join(dict.fromkeys(frame.ops)),
                              "param_bytes": frame.param_bytes, "buffer_bytes": frame.buffer_bytes,
                              "kept": frame.kept, "note": frame.note})
        return y

    @property
    def layer_name(self):
        """The dotted name of the layer being exported ('' for the model itself)."""
        return self._frames[-1].name

    @contextlib.contextmanager
    def naming(self, name):
        """Name sub-layers as children of `name` (e.g. a recurrent layer's 'rnn.cells.0') meanwhile."""
        frame = self._frames[-1]
        outer, frame.name = frame.name, name
        try:
            yield
        finally:
            frame.name = outer

    def child(self, module, attr, x):
        """call() for the sub-module module.<attr>, named with the current layer's prefix."""
        prefix = self.layer_name
        return self.call(f"{prefix}.{attr}" if prefix else attr, getattr(module, attr), x)

    def describe(self, pattern=None, kept=True, note=""):
        """Set the current layer's report entry: its operator pattern, whether its compression is kept."""
        frame = self._frames[-1]
        frame.pattern = pattern or frame.pattern
        frame.kept = frame.kept and kept
        frame.note = "; ".join(s for s in (frame.note, note) if s)

    # ---- the model -----------------------------------------------------------
    def model_proto(self, inputs, outputs, opset, doc=""):
        """inputs/outputs: [(name, numpy dtype, shape with str for symbolic axes)]; returns a ModelProto."""
        helper = self.onnx.helper
        info = lambda n, dt, shape: helper.make_tensor_value_info(n, self.elem_type(dt), shape)  # noqa: E731
        graph = helper.make_graph(self.nodes, "compactnet", [info(*i) for i in inputs],
                                  [info(*o) for o in outputs], initializer=self.initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                                  producer_name="compactnet", doc_string=doc)
        model.ir_version = min(model.ir_version, 10)   # readable by onnxruntime >= 1.17
        return model
