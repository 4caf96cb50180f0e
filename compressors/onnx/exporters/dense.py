"""Exporters of the dense layers and reference models: standard ONNX operators, weights as stored."""
import numpy as np

from layers.activation import Dropout, Flatten, LeakyReLU, ReLU, Sigmoid, Tanh
from layers.conv import Conv2d
from layers.dense import Dense
from layers.embedding import Embedding
from layers.models import LanguageModel, SequenceModel, TiedDecoder
from layers.module import Sequential
from layers.norm import _BatchNorm
from layers.pool import AvgPool2d, MaxPool2d

from ..registry import register_exporter


def linear(g, x, weight, bias=None):
    """x @ weight (+ bias) for value names; MatMul broadcasts over (B, n) and (B, T, n) inputs."""
    y = g.op("MatMul", [x, weight])
    return y if bias is None else g.op("Add", [y, bias])


def conv(g, x, weight, bias, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1):
    """A 2-D Conv node in PyTorch's geometry (symmetric padding)."""
    inputs = [x, weight] + ([bias] if bias is not None else [])
    return g.op("Conv", inputs, strides=list(stride), pads=list(padding) * 2, dilations=list(dilation),
                group=int(groups))


def optional_param(g, p):
    return None if p is None else g.param(p)


@register_exporter(Dense)
def export_dense(g, layer, x):
    return linear(g, x, g.param(layer.weight), optional_param(g, layer.bias))


@register_exporter(Conv2d)
def export_conv2d(g, layer, x):
    return conv(g, x, g.param(layer.weight), optional_param(g, layer.bias), layer.stride, layer.padding,
                layer.dilation, layer.groups)


def _pool(op_type, **extra):
    def export(g, layer, x):
        return g.op(op_type, [x], kernel_shape=list(layer.kernel_size), strides=list(layer.stride),
                    pads=list(layer.padding) * 2, **extra)
    return export


register_exporter(MaxPool2d)(_pool("MaxPool"))
register_exporter(AvgPool2d)(_pool("AveragePool", count_include_pad=1))   # the engine counts padding
register_exporter(ReLU)(lambda g, layer, x: g.op("Relu", [x]))
register_exporter(Tanh)(lambda g, layer, x: g.op("Tanh", [x]))
register_exporter(Sigmoid)(lambda g, layer, x: g.op("Sigmoid", [x]))
register_exporter(LeakyReLU)(lambda g, layer, x: g.op("LeakyRelu", [x], alpha=layer.negative_slope))
register_exporter(Dropout)(lambda g, layer, x: x)      # identity at inference


@register_exporter(Flatten)
def export_flatten(g, layer, x):
    if layer.start_axis == 1:
        return g.op("Flatten", [x], axis=1)
    return g.op("Reshape", [x, g.ints([0] * layer.start_axis + [-1])])


@register_exporter(_BatchNorm)
def export_batch_norm(g, layer, x):
    c = layer.num_features
    scale = g.param(layer.weight) if layer.affine else g.const(np.ones(c, g.dtype), buffer=True)
    shift = g.param(layer.bias) if layer.affine else g.const(np.zeros(c, g.dtype), buffer=True)
    mean = g.const(np.asarray(layer.running_mean, g.dtype), buffer=True)
    var = g.const(np.asarray(layer.running_var, g.dtype), buffer=True)
    return g.op("BatchNormalization", [x, scale, shift, mean, var], epsilon=float(layer.eps))


@register_exporter(Embedding)
def export_embedding(g, layer, x):
    return g.op("Gather", [g.param(layer.weight), x], axis=0)


@register_exporter(Sequential)
def export_sequential(g, model, x):
    for name in model._modules:
        x = g.child(model, name, x)
    return x


@register_exporter(TiedDecoder)
def export_tied_decoder(g, layer, x):
    table = g.param(layer.embedding.weight)        # the embedding's matrix, already stored once
    return linear(g, x, g.op("Transpose", [table], perm=[1, 0]), g.param(layer.bias))


@register_exporter(SequenceModel)
def export_sequence_model(g, model, x):
    if g.input_is_integer:
        values = g.const(np.asarray([0, 1], g.dtype))
        x = g.op("OneHot", [x, g.ints([model.n_in]), values], axis=-1)
    elif g.input_rank == 2 and model.n_in == 1:
        x = g.op("Unsqueeze", [x, g.ints([-1])])
    outputs = g.child(model, "rnn", x)
    if model.output == "last":
        outputs = g.op("Gather", [outputs, g.ints(-1)], axis=1)
    return g.child(model, "head", outputs)


@register_exporter(LanguageModel)
def export_language_model(g, model, tokens):
    outputs = g.child(model, "rnn", g.child(model, "embedding", tokens))
    return g.child(model, "decoder", outputs)
