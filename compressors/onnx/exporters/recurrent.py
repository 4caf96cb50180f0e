"""GRU and LSTM layers as the ONNX GRU/LSTM operators (PyTorch's gate math, ONNX's gate order).

The weights W, R, B are assembled in the graph from the stored tensors (a Split and Concat put our
gate order into ONNX's, a Transpose turns x @ W into ONNX's W x), so the file stores exactly the
layer's parameters. A replaced hidden-to-hidden transform (WaveletLinear, low rank, Tucker, ...)
keeps its own exporter: the graph applies it to the identity (and a zero row) to obtain its dense
weight and bias, so the file holds the compressed form and the runtime rebuilds the matrix.
"""
from layers.dense import Dense
from layers.recurrent import GRU, LSTM

from ..registry import register_exporter

GRU_ORDER = (1, 0, 2)        # ours r, z, n -> ONNX z, r, h
LSTM_ORDER = (0, 3, 1, 2)    # ours i, f, g, o -> ONNX i, o, f, c


def _zeros(g, shape):
    value = g.onnx.helper.make_tensor("zero", g.elem_type(g.dtype), [1], [0.0])
    return g.op("ConstantOfShape", [g.ints(shape)], value=value)


def affine_form(g, cell, attr, n_in):
    """(weight (n_in, n_out), bias (n_out,) or None) value names for the affine map cell.<attr>."""
    module = getattr(cell, attr)
    if type(module) is Dense and not (module._pre_hooks or module._post_hooks):
        return g.param(module.weight), (None if module.bias is None else g.param(module.bias))
    eye = g.op("EyeLike", [_zeros(g, [n_in, n_in])])
    stacked = g.op("Concat", [eye, _zeros(g, [1, n_in])], axis=0)
    images = g.child(cell, attr, stacked)            # rows: module(e_i), then module(0) = bias
    weight_plus_bias, bias = g.op("Split", [images, g.ints([n_in, 1])], outputs=2, axis=0)
    weight = g.op("Sub", [weight_plus_bias, bias])
    return weight, g.op("Squeeze", [bias, g.ints([0])])


def _onnx_matrix(g, blocks, order):
    """Our (n_in, k*H) gate blocks reordered and transposed to ONNX's (1, k*H, n_in)."""
    joined = g.op("Concat", [blocks[j] for j in order], axis=1)
    return g.op("Unsqueeze", [g.op("Transpose", [joined], perm=[1, 0]), g.ints([0])])


def _cell_weights(g, layer, index, order):
    """W, R, B value names of stacked cell `index` in ONNX's layout."""
    cells = layer.cells
    cell, hidden, k = cells[index], layer.hidden, len(order)
    prefix = g.layer_name
    with g.naming(f"{prefix}.cells.{index}" if prefix else f"cells.{index}"):
        w_ih, b_ih = affine_form(g, cell, "ih", cell.n_in)
        ih_blocks = g.op("Split", [w_ih, g.ints([hidden] * k)], outputs=k, axis=1)
        hh = [affine_form(g, cell, gate, hidden) for gate in cell.gate_names]
    w = _onnx_matrix(g, ih_blocks, order)
    r = _onnx_matrix(g, [weight for weight, _ in hh], order)
    ih_biases = g.op("Split", [b_ih, g.ints([hidden] * k)], outputs=k, axis=0)
    hh_biases = [b if b is not None else _zeros(g, [hidden]) for _, b in hh]
    b = g.op("Concat", [ih_biases[j] for j in order] + [hh_biases[j] for j in order], axis=0)
    return w, r, g.op("Unsqueeze", [b, g.ints([0])])


def _export_recurrent(op_type, order, **attrs):
    def export(g, layer, x):
        sequence = g.op("Transpose", [x], perm=[1, 0, 2])       # (T, B, n): ONNX's layout 0
        for index in range(layer.num_layers):
            w, r, b = _cell_weights(g, layer, index, order)
            y = g.op(op_type, [sequence, w, r, b], hidden_size=layer.hidden, **attrs)
            sequence = g.op("Squeeze", [y, g.ints([1])])         # (T, 1, B, H) -> (T, B, H)
        g.describe(f"{op_type} x{layer.num_layers} (weights assembled from the stored tensors)")
        return g.op("Transpose", [sequence], perm=[1, 0, 2])
    return export


register_exporter(GRU)(_export_recurrent("GRU", GRU_ORDER, linear_before_reset=1))
register_exporter(LSTM)(_export_recurrent("LSTM", LSTM_ORDER))
