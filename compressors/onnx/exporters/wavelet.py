"""WaveletLinear (compressors.wavelet): the transform itself as operators, each learned filter stored once.

y = S . IFWT(G . P(FWT(B . x))) + b becomes: Mul (B), per analysis level a stride-2 Conv with the
two reversed analysis filters, Concat of the bands, Gather (P, indices stored as uint16/int32),
Mul (G), Split into bands, per synthesis level a stride-2 ConvTranspose with the two synthesis
filters, Mul (S), Add (b). Rows of any leading shape are folded into the Conv batch axis.
Index conventions follow engine/kernels/wavelet.py: analysis c[o] = sum_j f[j] x[2o + 1 - j] is a
correlation with the reversed filter after L - 2 leading zeros; synthesis y[i] = sum_o f[i + L - 2
- 2o] c[o] is a transposed convolution whose first L - 2 outputs are cropped.
"""
import numpy as np

from compressors.wavelet import WaveletLinear
from engine.kernels.wavelet import band_length

from ..graph import INT64_MIN
from ..registry import register_exporter


def _filter_pair(g, lo, hi, reverse):
    """(2, 1, L) Conv weight from two stored 1-D filters (reversed for the analysis correlation)."""
    pair = g.op("Concat", [g.op("Unsqueeze", [g.param(f), g.ints([0])]) for f in (lo, hi)], axis=0)
    if reverse:
        pair = g.op("Slice", [pair, g.ints([-1]), g.ints([INT64_MIN]), g.ints([1]), g.ints([-1])])
    return g.op("Unsqueeze", [pair, g.ints([1])])


def _analysis(g, layer, signal):
    """[cA_J, cD_J, ..., cD_1] value names, each (rows, 1, N_j)."""
    weight, L = _filter_pair(g, layer.dec_lo, layer.dec_hi, reverse=True), layer.filter_length
    details = []
    for m in layer.level_lengths:
        n = band_length(m, L)
        bands = g.op("Conv", [signal, weight], strides=[2], pads=[L - 2, 2 * n - m])
        signal, detail = g.op("Split", [bands, g.ints([1, 1])], outputs=2, axis=1)
        details.append(detail)
    return [signal] + details[::-1]


def _synthesis(g, layer, bands):
    weight, L = _filter_pair(g, layer.rec_lo, layer.rec_hi, reverse=False), layer.filter_length
    approximation = bands[0]
    for detail, m in zip(bands[1:], layer.level_lengths[::-1]):
        pair = g.op("Concat", [approximation, detail], axis=1)
        approximation = _synthesize_level(g, pair, weight, L, m)
    return approximation


def _synthesize_level(g, pair, weight, L, m):
    """One ConvTranspose level giving exactly m samples (crop L - 2 in front, the rest at the end)."""
    full = g.op("ConvTranspose", [pair, weight], strides=[2])
    return g.op("Slice", [full, g.ints([L - 2]), g.ints([L - 2 + m]), g.ints([2])])


def _index_dtype(size):
    return np.uint16 if size <= np.iinfo(np.uint16).max + 1 else np.int32


@register_exporter(WaveletLinear)
def export_wavelet_linear(g, layer, x):
    rows = g.op("Reshape", [g.op("Mul", [x, g.param(layer.input_scale)]), g.ints([-1, 1, layer.n])])
    coeffs = g.op("Concat", _analysis(g, layer, rows), axis=2)
    if layer.permute:
        perm = np.asarray(layer.permutation).astype(_index_dtype(layer.n_coeffs))
        index = g.op("Cast", [g.const(perm, buffer=True)], to=g.elem_type(np.int64))
        coeffs = g.op("Gather", [coeffs, index], axis=2)
    coeffs = g.op("Mul", [coeffs, g.param(layer.coeff_scale)])
    bands = g.op("Split", [coeffs, g.ints(layer.band_sizes)], outputs=len(layer.band_sizes), axis=2)
    y = g.op("Mul", [_synthesis(g, layer, bands), g.param(layer.output_scale)])
    y = g.op("Reshape", [y, g.op("Shape", [x])])
    if layer.bias is not None:
        y = g.op("Add", [y, g.param(layer.bias)])
    g.describe(f"{layer.levels}-level FWT as strided Conv, Gather permutation, {layer.levels}-level "
               "inverse as ConvTranspose (filters stored once)")
    return y
