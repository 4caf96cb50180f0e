"""compactnet's autograd engine: Tensor, Function, ops, gradient checking, optimisers, I/O."""
from . import backend
from .grad_mode import no_grad, enable_grad, is_grad_enabled, detect_anomaly
from .tensor import Tensor, as_tensor
from .function import Function
from . import ops
from .gradcheck import gradcheck, GradcheckError
from .graph import walk, format_graph
from .rng import manual_seed
from .hooks import FunctionHook

__version__ = "0.1.0"


def tensor(data, requires_grad=False, dtype=None):
    """Tensor(data) with PyTorch's spelling."""
    return Tensor(data, requires_grad=requires_grad, dtype=dtype)
