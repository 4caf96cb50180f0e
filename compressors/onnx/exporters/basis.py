"""BasisConv2d (compressors.basis): the shared basis convolution, optional batch norm, the 1x1 combination."""
from compressors.basis import BasisConv2d

from ..registry import register_exporter
from .dense import conv, optional_param


@register_exporter(BasisConv2d)
def export_basis_conv(g, layer, x):
    h = conv(g, x, g.param(layer.basis), None, layer.stride, layer.padding, layer.dilation)
    if layer.norm is not None:
        h = g.child(layer, "norm", h)
    y = conv(g, h, g.param(layer.combination), optional_param(g, layer.bias))
    g.describe(f"Conv (M={layer.num_basis} basis filters) + Conv 1x1 ({layer.num_basis} -> "
               f"{layer.out_channels})")
    return y
