"""Input validation shared by the layers: errors that name the layer, the expected and the actual."""
from engine.tensor import Tensor, as_tensor


def check_input(layer, x, ndim, axis=None, size=None, what="input"):
    """Return x as a Tensor after checking its rank (an int or a tuple of allowed ranks) and one axis size."""
    if not isinstance(x, Tensor):
        x = as_tensor(x)
    ndims = (ndim,) if isinstance(ndim, int) else tuple(ndim)
    name = type(layer).__name__
    if x.ndim not in ndims:
        expected = " or ".join(f"{d}-D" for d in ndims)
        raise ValueError(f"{name}: expected a {expected} {what}, got shape {x.shape}")
    if x.dtype.kind != "f":
        raise TypeError(f"{name}: expected a floating-point {what}, got dtype {x.dtype}")
    if axis is not None and x.shape[axis] != size:
        raise ValueError(f"{name}: expected {what} size {size} on axis {axis}, got shape {x.shape}")
    if x.size == 0:
        raise ValueError(f"{name}: empty {what} of shape {x.shape}")
    return x
