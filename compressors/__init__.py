"""The four compression methods (wavelet, basis, tucker, lowrank), the report that counts them, and checkpoints."""
from .checkpoints import build_model, load_model, save_model

__all__ = ["build_model", "load_model", "save_model"]
