"""Neural-network helpers: dropout and embedding lookup."""
from .. import backend
from .. import rng as erandom
from ..function import Function
from ..tensor import Tensor, as_tensor
from .shape import scatter_add


class Dropout(Function):
    def __init__(self, mask):
        self.mask = mask

    def forward(self, x):
        return x * self.mask

    def backward(self, gy):
        return gy * self.mask


def dropout(x, p=0.5, training=True):
    """Zero each element with probability p and scale the rest by 1/(1-p) (identity when not training)."""
    x = as_tensor(x)
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout: p must be in [0, 1), got {p}")
    if not training or p == 0.0:
        return x
    keep = erandom.get_rng().random(x.shape) >= p
    mask = (keep / (1.0 - p)).astype(x.dtype)
    if backend.is_gpu_array(x.data):
        mask = backend.to_device(mask, "gpu")
    return Dropout(mask)(x)


class Embedding(Function):
    def __init__(self, indices):
        self.indices = indices

    def forward(self, weight):
        self.w_shape = weight.shape
        return weight[self.indices]

    def backward(self, gy):
        xp = backend.xp_of(gy)
        gw = xp.zeros(self.w_shape, dtype=gy.dtype)
        scatter_add(gw, self.indices.reshape(-1), gy.reshape(-1, self.w_shape[1]))
        return gw


def embedding(indices, weight):
    """Rows of weight (V, D) picked by integer indices of any shape -> (..., D)."""
    weight = as_tensor(weight)
    idx = indices.data if isinstance(indices, Tensor) else indices
    idx = backend.xp_of(weight.data).asarray(idx)
    if idx.dtype.kind not in "iu":
        raise TypeError(f"embedding: indices must be integers, got dtype {idx.dtype}")
    if weight.ndim != 2:
        raise ValueError(f"embedding: weight must be (vocab, dim), got shape {weight.shape}")
    if idx.size and (int(idx.min()) < 0 or int(idx.max()) >= weight.shape[0]):
        raise ValueError(f"embedding: indices must lie in [0, {weight.shape[0]}), "
                         f"got values in [{int(idx.min())}, {int(idx.max())}]")
    return Embedding(idx)(weight)
