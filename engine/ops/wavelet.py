"""Differentiable fast wavelet analysis/synthesis (zero padding) and the packed forms a layer uses."""
from .. import backend
from ..grad_mode import is_grad_enabled
from ..function import Function
from ..kernels import wavelet as kernels
from ..tensor import Tensor, as_tensor


def _check_filters(name, x, lo, hi):
    for label, f in (("first filter", lo), ("second filter", hi)):
        if f.ndim != 1 or f.shape[0] < 2:
            raise ValueError(f"{name}: the {label} must be 1-D with length >= 2, got shape {f.shape}")
    if lo.shape != hi.shape:
        raise ValueError(f"{name}: the two filters must have one length, got {lo.shape} and {hi.shape}")
    if x.dtype.kind != "f":
        raise TypeError(f"{name}: expected a floating-point signal, got dtype {x.dtype}")
    if lo.dtype != x.dtype or hi.dtype != x.dtype:
        raise TypeError(f"{name}: filters ({lo.dtype}, {hi.dtype}) must have the signal's dtype {x.dtype}")


class FWT(Function):
    """Multi-level analysis along the last axis; outputs [cA_J, cD_J, ..., cD_1]."""

    def __init__(self, levels, impl=None):
        self.levels, self.impl = levels, impl

    def forward(self, x, dec_lo, dec_hi):
        coeffs, self.level_inputs = kernels.fwt(x, dec_lo, dec_hi, self.levels, self.impl,
                                                return_inputs=True)
        self.filters = (dec_lo, dec_hi)
        return tuple(coeffs)

    def backward(self, *grad_coeffs):
        need_x, need_lo, need_hi = self.needs_input_grad
        gx, glo, ghi = kernels.fwt_backward(grad_coeffs, self.level_inputs, *self.filters,
                                            need_x=need_x, need_filters=need_lo or need_hi,
                                            impl=self.impl)
        return gx, glo, ghi


class IFWT(Function):
    """Multi-level synthesis of [cA_J, cD_J, ..., cD_1]; inputs are the bands then the two filters."""

    def __init__(self, lengths=None, impl=None):
        self.lengths, self.impl = lengths, impl

    def forward(self, *arrays):
        coeffs, (rec_lo, rec_hi) = arrays[:-2], arrays[-2:]
        y, self.level_inputs = kernels.ifwt(list(coeffs), rec_lo, rec_hi, self.lengths, self.impl,
                                            return_inputs=True)
        self.filters = (rec_lo, rec_hi)
        return y

    def backward(self, gy):
        need = self.needs_input_grad
        grads, glo, ghi = kernels.ifwt_backward(gy, self.level_inputs, *self.filters,
                                                need_coeffs=any(need[:-2]),
                                                need_filters=need[-2] or need[-1], impl=self.impl)
        grads = grads if grads is not None else [None] * (len(need) - 2)
        return tuple(grads) + (glo, ghi)


def fwt(x, dec_lo, dec_hi, levels, impl=None):
    """J-level wavelet analysis of the last axis, zero padding; list [cA_J, cD_J, ..., cD_1].

    Fed pywt.Wavelet(w).dec_lo/dec_hi it equals pywt.wavedec(x, w, mode='zero', level=levels).
    Differentiable in the signal and both filters.
    """
    x, dec_lo, dec_hi = as_tensor(x), as_tensor(dec_lo), as_tensor(dec_hi)
    _check_filters("fwt", x, dec_lo, dec_hi)
    if not isinstance(levels, int) or levels < 1:
        raise ValueError(f"fwt: levels must be an int >= 1, got {levels!r}")
    if x.ndim < 1 or x.shape[-1] < 1:
        raise ValueError(f"fwt: expected a signal with a non-empty last axis, got shape {x.shape}")
    return list(FWT(levels, impl)(x, dec_lo, dec_hi))


def ifwt(coeffs, rec_lo, rec_hi, lengths=None, impl=None):
    """Wavelet synthesis of [cA_J, cD_J, ..., cD_1] (zero padding).

    Without `lengths` it equals pywt.waverec(coeffs, w, mode='zero') fed rec_lo/rec_hi; with
    lengths = [m_0, ..., m_{J-1}] (the signal length entering each analysis level, m_0 = n) each
    level is cropped to exactly that length, so ifwt(fwt(x), lengths) has x's length.
    """
    coeffs = [as_tensor(c) for c in coeffs]
    rec_lo, rec_hi = as_tensor(rec_lo), as_tensor(rec_hi)
    if len(coeffs) < 2:
        raise ValueError(f"ifwt: expected [cA_J, cD_J, ..., cD_1] (at least 2 arrays), got {len(coeffs)}")
    _check_filters("ifwt", coeffs[0], rec_lo, rec_hi)
    return IFWT(lengths, impl)(*coeffs, rec_lo, rec_hi)


class PackedFWT(Function):
    """fwt with the bands concatenated along the last axis, in [cA_J, cD_J, ..., cD_1] order."""

    def __init__(self, levels, impl=None):
        self.levels, self.impl = levels, impl

    def forward(self, x, dec_lo, dec_hi):
        packed, self.state = kernels.fwt_packed(x, dec_lo, dec_hi, self.levels, self.impl,
                                                 keep_state=is_grad_enabled())
        self.filters = (dec_lo, dec_hi)
        return packed

    def backward(self, gy):
        need_x, need_lo, need_hi = self.needs_input_grad
        return kernels.fwt_packed_backward(gy, self.state, *self.filters, need_x=need_x,
                                           need_filters=need_lo or need_hi, impl=self.impl)


class PackedIFWT(Function):
    """ifwt of a concatenated coefficient vector, split with cumulative band offsets."""

    def __init__(self, sizes, lengths, impl=None):
        self.sizes, self.lengths, self.impl = list(sizes), lengths, impl

    def forward(self, c, rec_lo, rec_hi):
        y, self.state = kernels.ifwt_packed(c, rec_lo, rec_hi, self.sizes, self.lengths, self.impl,
                                             keep_state=is_grad_enabled())
        self.filters = (rec_lo, rec_hi)
        return y

    def backward(self, gy):
        need_c, need_lo, need_hi = self.needs_input_grad
        return kernels.ifwt_packed_backward(gy, self.state, *self.filters, need_coeffs=need_c,
                                            need_filters=need_lo or need_hi, impl=self.impl)


def fwt_packed(x, dec_lo, dec_hi, levels, impl=None):
    """fwt(x) with the bands concatenated on the last axis (one Tensor of length n')."""
    x, dec_lo, dec_hi = as_tensor(x), as_tensor(dec_lo), as_tensor(dec_hi)
    _check_filters("fwt_packed", x, dec_lo, dec_hi)
    if not isinstance(levels, int) or levels < 1:
        raise ValueError(f"fwt_packed: levels must be an int >= 1, got {levels!r}")
    return PackedFWT(levels, impl)(x, dec_lo, dec_hi)


def ifwt_packed(c, rec_lo, rec_hi, sizes, lengths=None, impl=None):
    """ifwt of a packed coefficient Tensor whose last axis holds bands of the given sizes."""
    c, rec_lo, rec_hi = as_tensor(c), as_tensor(rec_lo), as_tensor(rec_hi)
    _check_filters("ifwt_packed", c, rec_lo, rec_hi)
    if c.shape[-1] != sum(sizes):
        raise ValueError(f"ifwt_packed: band sizes {list(sizes)} sum to {sum(sizes)}, "
                         f"the coefficients' last axis is {c.shape[-1]}")
    return PackedIFWT(sizes, lengths, impl)(c, rec_lo, rec_hi)


class Permute(Function):
    """x[..., perm] for a permutation index vector; backward applies the inverse permutation."""

    def __init__(self, perm, inverse):
        self.perm, self.inverse = perm, inverse

    def forward(self, x):
        return x[..., self.perm]

    def backward(self, gy):
        return gy[..., self.inverse]


def permute_last(x, perm, inverse=None):
    """Reorder the last axis by the permutation `perm` (an index array); cheap exact backward."""
    x = as_tensor(x)
    xp = backend.xp_of(x.data)
    perm = perm.data if isinstance(perm, Tensor) else xp.asarray(perm)
    if perm.ndim != 1 or perm.shape[0] != x.shape[-1]:
        raise ValueError(f"permute_last: perm must be 1-D of length {x.shape[-1]}, got shape {perm.shape}")
    if inverse is None:
        inverse = xp.empty_like(perm)
        inverse[perm] = xp.arange(perm.shape[0], dtype=perm.dtype)
    return Permute(perm, inverse)(x)
