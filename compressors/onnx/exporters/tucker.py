"""Tucker and SCADA layers (compressors.tucker_layers): core and factors stored, the weight rebuilt in the graph.

One Einsum contracts the core with every factor (W = C x_1 M_1 ... x_D M_D); a Reshape (and,
for a digit pairing, a Transpose) gives the layer's weight, which a MatMul or Conv then applies.
A shared SCADA core is one initializer used by every layer's Einsum.
"""
import string

from compressors.tucker_layers import TuckerConv2d, TuckerDense

from ..registry import register_exporter
from .dense import conv, linear, optional_param


def rebuilt_weight(g, layer, applied_by):
    """The value name of the layer's weight (weight_shape) rebuilt from its core and factors."""
    order = len(layer.modes)
    core_axes, out_axes = string.ascii_lowercase[:order], string.ascii_uppercase[:order]
    equation = ",".join([core_axes] + [o + c for o, c in zip(out_axes, core_axes)]) + "->" + out_axes
    tensor = g.op("Einsum", [g.param(layer.core)] + [g.param(f) for f in layer.factors], equation=equation)
    if layer.pairing is not None:
        groups, axes = layer.pairing
        interleaved = [grp[i] for i in range(order) for grp in groups]
        tensor = g.op("Transpose", [g.op("Reshape", [tensor, g.ints(interleaved)])], perm=list(axes))
    shared = " (shared core)" if layer.shared_core else ""
    g.describe(f"Einsum rebuild of {order}-mode Tucker weight{shared} + {applied_by}")
    return g.op("Reshape", [tensor, g.ints(layer.weight_shape)])


@register_exporter(TuckerDense)
def export_tucker_dense(g, layer, x):
    weight = rebuilt_weight(g, layer, "MatMul")
    return linear(g, x, weight, optional_param(g, layer.bias))


@register_exporter(TuckerConv2d)
def export_tucker_conv(g, layer, x):
    weight = rebuilt_weight(g, layer, "Conv")
    return conv(g, x, weight, optional_param(g, layer.bias), layer.stride, layer.padding, layer.dilation,
                layer.groups)
