"""Every differentiable operation as a function (import engine.ops as F)."""
from ..tensor import Tensor, as_tensor
from .products import Linear
from .math import (add, sub, mul, div, pow, neg, exp, log, sqrt, abs, tanh, sigmoid, relu,
                   leaky_relu, softplus, maximum, minimum, where, clip, matmul, cast)
from .shape import (reshape, transpose, swapaxes, broadcast_to, expand_dims, squeeze, flatten,
                    getitem, concat, stack, split, pad)
from .reduce import sum, mean, max, min
from .activation import softmax, log_softmax
from .loss import cross_entropy, mse_loss, distillation_loss
from .nn import dropout, embedding
from .conv import conv2d, conv2d_pointwise
from .low_rank import low_rank_linear
from .pool import max_pool2d, avg_pool2d
from .recurrent import gru_gates, lstm_gates, unstack
from .recurrent_sequence import gru_sequence, lstm_sequence
from .recurrent_sideways import gru_sequence_sideways
from .tucker import tucker_to_tensor, mode_product
from .wavelet import fwt, ifwt

concatenate = concat


def linear(x, w, b=None):
    """x @ w + b with w of shape (n_in, n_out), as one op (x may carry leading batch axes)."""
    x, w = as_tensor(x), as_tensor(w)
    if x.ndim < 1 or w.ndim != 2 or x.shape[-1] != w.shape[0]:
        raise ValueError(f"linear: input shape {x.shape} does not fit weight shape {w.shape}")
    if b is None:
        return Linear()(x, w)
    b = as_tensor(b)
    if b.shape != (w.shape[1],):
        raise ValueError(f"linear: bias shape {b.shape} must be ({w.shape[1]},)")
    return Linear()(x, w, b)


def _install_operators():
    """Give Tensor its Python operators and array-like methods."""
    T = Tensor
    T.__add__ = lambda a, b: add(a, b)
    T.__radd__ = lambda a, b: add(b, a)
    T.__sub__ = lambda a, b: sub(a, b)
    T.__rsub__ = lambda a, b: sub(as_tensor(b, like=a), a)
    T.__mul__ = lambda a, b: mul(a, b)
    T.__rmul__ = lambda a, b: mul(b, a)
    T.__truediv__ = lambda a, b: div(a, b)
    T.__rtruediv__ = lambda a, b: div(as_tensor(b, like=a), a)
    T.__pow__ = lambda a, b: pow(a, b)
    T.__rpow__ = lambda a, b: pow(as_tensor(b, like=a), a)
    T.__matmul__ = lambda a, b: matmul(a, b)
    T.__rmatmul__ = lambda a, b: matmul(as_tensor(b, like=a), a)
    T.__neg__ = lambda a: neg(a)
    T.__abs__ = lambda a: abs(a)
    T.__getitem__ = lambda a, index: getitem(a, index)
    # comparisons give plain boolean arrays (not differentiable), as masks for where()
    T.__lt__ = lambda a, b: a.data < (b.data if isinstance(b, Tensor) else b)
    T.__le__ = lambda a, b: a.data <= (b.data if isinstance(b, Tensor) else b)
    T.__gt__ = lambda a, b: a.data > (b.data if isinstance(b, Tensor) else b)
    T.__ge__ = lambda a, b: a.data >= (b.data if isinstance(b, Tensor) else b)
    T.astype = lambda a, dtype: cast(a, dtype)
    T.reshape = lambda a, *shape: reshape(a, *shape)
    T.transpose = lambda a, *axes: transpose(a, *axes)
    T.T = property(lambda a: transpose(a))
    T.sum = lambda a, axis=None, keepdims=False: sum(a, axis, keepdims)
    T.mean = lambda a, axis=None, keepdims=False: mean(a, axis, keepdims)
    T.max = lambda a, axis=None, keepdims=False: max(a, axis, keepdims)
    T.min = lambda a, axis=None, keepdims=False: min(a, axis, keepdims)
    T.exp = lambda a: exp(a)
    T.log = lambda a: log(a)
    T.sqrt = lambda a: sqrt(a)
    T.tanh = lambda a: tanh(a)
    T.sigmoid = lambda a: sigmoid(a)
    T.relu = lambda a: relu(a)
    T.flatten = lambda a, start_axis=0: flatten(a, start_axis) if start_axis else reshape(a, -1)


_install_operators()
