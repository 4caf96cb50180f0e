"""Post-training uniform quantization of a model's stored values: n-bit codes plus a per-tensor range.

Every parameter tensor (a shared one once, e.g. SCADA's core) is stored as codes
c in 0 .. 2^bits - 1 with value = low + c * step, low = min and step = (max - min) / (2^bits - 1),
round to nearest; low and step are two float32 per tensor. Codes are bit-packed, so a tensor of
n values takes ceil(n bits / 8) bytes plus 8 for its range: `storage_bytes` counts exactly what
`save_quantized` writes as arrays (the npz container adds its own headers). This is the storage
accounting of "bytes" in the papers that quantize (Deep Compression stores 8-bit or 5-bit indices);
accuracy is always measured on the dequantized values (`quantized_evaluation`), never assumed.
"""
import math

import numpy as np

from engine import backend
from engine import io as engine_io

MIN_BITS, MAX_BITS = 1, 8
RANGE_BYTES = 8                  # low and step, float32 each


def check_bits(bits, where="quantize"):
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not MIN_BITS <= bits <= MAX_BITS:
        raise ValueError(f"{where}: bits must be an int in {MIN_BITS}..{MAX_BITS}, got {bits!r}")
    return int(bits)


def quantize_array(values, bits):
    """values (any float array) -> (codes uint8 of the same shape, low, step) with values ~ low + codes * step."""
    bits = check_bits(bits, "quantize_array")
    x = np.asarray(backend.to_numpy(values), dtype=np.float64)
    if x.size == 0:
        return np.zeros(x.shape, np.uint8), 0.0, 1.0
    low, high = float(x.min()), float(x.max())
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError("quantize_array: values must be finite, got NaN or inf")
    levels = (1 << bits) - 1
    # the range is stored as float32: quantize against the stored low and step, not the float64 ones
    low = float(np.float32(low))
    step = float(np.float32((high - low) / levels)) if high > low else 1.0
    codes = np.clip(np.rint((x - low) / step), 0, levels).astype(np.uint8)
    return codes, low, step


def dequantize_array(codes, low, step, dtype=np.float32):
    return (np.float64(low) + codes.astype(np.float64) * np.float64(step)).astype(dtype)


def pack_codes(codes, bits):
    """uint8 codes < 2^bits -> bytes holding `bits` bits per code (big-endian bit order), padded to a byte."""
    flat = np.asarray(codes, dtype=np.uint8).reshape(-1)
    planes = np.unpackbits(flat[:, None], axis=1)[:, 8 - bits:]
    return np.packbits(planes.reshape(-1))


def unpack_codes(packed, bits, shape):
    count = math.prod(shape)
    planes = np.unpackbits(np.asarray(packed, dtype=np.uint8))[:count * bits].reshape(count, bits)
    full = np.zeros((count, 8), dtype=np.uint8)
    full[:, 8 - bits:] = planes
    return np.packbits(full, axis=1).reshape(shape)


def quantized_state(model, bits):
    """name -> (codes, low, step) for every parameter of `model` (shared tensors once)."""
    bits = check_bits(bits, "quantized_state")
    return {name: quantize_array(p.data, bits) for name, p in model.named_parameters()}


def storage_bytes(state, bits):
    """Bytes of the packed codes plus RANGE_BYTES per tensor."""
    return sum(math.ceil(codes.size * bits / 8) + RANGE_BYTES for codes, _, _ in state.values())


def save_quantized(path, state, bits, metadata=None):
    """Write the packed codes (one byte array, each tensor byte-aligned) and the ranges (tensors x 2
    float32) to `path` (.npz, atomic, checksummed by engine.io.save); names and shapes go in its metadata."""
    bits = check_bits(bits, "save_quantized")
    names = list(state)
    packed = [pack_codes(state[n][0], bits) for n in names]
    ranges = np.array([[state[n][1], state[n][2]] for n in names], dtype=np.float32).reshape(len(names), 2)
    codes = np.concatenate(packed) if packed else np.zeros(0, np.uint8)
    engine_io.save(path, {"codes": codes, "ranges": ranges},
                   dict(metadata or {}, quantized_bits=bits, names=names,
                        shapes=[list(state[n][0].shape) for n in names],
                        offsets=[int(v) for v in np.cumsum([0] + [p.size for p in packed])]))


def load_quantized(path):
    """name -> dequantized float32 array, from a file written by save_quantized."""
    arrays, meta = engine_io.load(path)
    if "quantized_bits" not in meta:
        raise ValueError(f"load_quantized: {path} is not a quantized model file (no 'quantized_bits')")
    bits, offsets = int(meta["quantized_bits"]), meta["offsets"]
    out = {}
    for i, (name, shape) in enumerate(zip(meta["names"], meta["shapes"])):
        codes = unpack_codes(arrays["codes"][offsets[i]:offsets[i + 1]], bits, tuple(shape))
        low, step = (float(v) for v in arrays["ranges"][i])
        out[name] = dequantize_array(codes, low, step)
    return out


def quantized_evaluation(model, bits, evaluate, dense_bytes=None, path=None):
    """Evaluate `model` with every parameter replaced by its dequantized n-bit value, then restore it.

    evaluate(model) -> dict of metrics. Returns {"bits", "bytes", "tensors", "ratio" (dense_bytes /
    bytes, when given), "max_abs_error", "test": evaluate's dict}. path: also save_quantized there.
    """
    bits = check_bits(bits, "quantized_evaluation")
    state = quantized_state(model, bits)
    params = dict(model.named_parameters())
    originals = {name: p.data for name, p in params.items()}
    worst = 0.0
    try:
        for name, (codes, low, step) in state.items():
            p = params[name]
            values = dequantize_array(codes, low, step, p.data.dtype)
            worst = max(worst, float(np.max(np.abs(values - backend.to_numpy(p.data)), initial=0.0)))
            p.data = backend.to_device(values, p.device)      # a new array: cached Tucker weights are rebuilt
        result = evaluate(model)
    finally:
        for name, p in params.items():
            p.data = originals[name]
    size = storage_bytes(state, bits)
    if path is not None:
        save_quantized(path, state, bits)
    return {"bits": bits, "bytes": size, "tensors": len(state),
            "ratio": None if dense_bytes is None else dense_bytes / size,
            "max_abs_error": worst, "test": result}
