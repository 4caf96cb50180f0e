"""Wavelet filter banks computed in our own code (Daubechies, symlets by spectral factorisation) and the wavelet losses."""
import itertools
from math import comb

import numpy as np

import engine.ops as F
from engine import backend

NAMED = ("haar",) + tuple(f"db{n}" for n in range(1, 11)) + tuple(f"sym{n}" for n in range(2, 11))


# ---------------------------------------------------------------- filter construction
def _half_band_root_groups(moments):
    """Roots of the Daubechies factor Q(z), grouped so conjugate pairs stay together.

    |Q(e^iw)|^2 = P(sin^2(w/2)) with P(y) = sum_{k<N} C(N-1+k, k) y^k. Every root y of P gives a
    pair z, 1/z of z^2 - (2 - 4y) z + 1 = 0; we return the root inside the unit circle of each.
    """
    if moments == 1:
        return []
    poly = [comb(moments - 1 + k, k) for k in range(moments)][::-1]   # highest power first
    ys = list(np.roots(poly))
    groups = []
    while ys:
        y = ys.pop(0)
        zs = np.roots([1.0, -(2.0 - 4.0 * y), 1.0])
        inside = zs[np.argmin(np.abs(zs))]
        if abs(y.imag) > 1e-9:
            partner = min(range(len(ys)), key=lambda k: abs(ys[k] - np.conj(y)))
            ys.pop(partner)
            groups.append([inside, np.conj(inside)])
        else:
            groups.append([complex(inside.real)])
    return groups


def _scaling_filter(moments, choice):
    """Scaling filter (sum sqrt 2) from (1 + z)^N times Q(z) with each root group inside (0) or mirrored (1)."""
    roots = [-1.0 + 0j] * moments
    for group, mirrored in zip(_half_band_root_groups(moments), choice):
        roots += [1.0 / z if mirrored else z for z in group]
    h = np.real(np.poly(roots))
    return h / h.sum() * np.sqrt(2.0)


def _phase_nonlinearity(h):
    """Squared deviation of the unwrapped phase of H(e^iw) from its best linear fit."""
    w = np.linspace(0.01, 0.99 * np.pi, 512)
    response = np.exp(-1j * np.outer(w, np.arange(len(h)))) @ h
    phase = np.unwrap(np.angle(response))
    design = np.stack([w, np.ones_like(w)], axis=1)
    fit, *_ = np.linalg.lstsq(design, phase, rcond=None)
    return float(np.sum((design @ fit - phase) ** 2))


def daubechies(moments):
    """Daubechies scaling filter with `moments` vanishing moments (length 2N): minimum-phase root choice."""
    return _scaling_filter(moments, [0] * len(_half_band_root_groups(moments)))


def symlet(moments):
    """Least-asymmetric (symlet) scaling filter: the root choice whose phase is closest to linear.

    A root choice and its complement give time-reversed filters with the same phase error; we keep
    the orientation PyWavelets tabulates (Daubechies' table): for N <= 3 the symlet is the
    Daubechies filter, for larger N the one whose energy centre lies past the middle.
    """
    if moments <= 3:
        return daubechies(moments)
    groups = _half_band_root_groups(moments)
    best = min(itertools.product((0, 1), repeat=len(groups)),
               key=lambda c: _phase_nonlinearity(_scaling_filter(moments, c)))
    h = _scaling_filter(moments, best)
    centre = np.sum(np.arange(len(h)) * h ** 2)
    return h if centre > (len(h) - 1) / 2 else h[::-1].copy()


def scaling_filter(name):
    """The scaling (reconstruction low-pass) filter of a named orthogonal wavelet, float64."""
    if name == "haar":
        return daubechies(1)
    if name.startswith("db") and name[2:].isdigit() and int(name[2:]) >= 1:
        return daubechies(int(name[2:]))
    if name.startswith("sym") and name[3:].isdigit() and int(name[3:]) >= 2:
        return symlet(int(name[3:]))
    raise ValueError(f"wavelet filters: unknown wavelet {name!r}; use 'haar', 'dbN' (N >= 1), "
                     "'symN' (N >= 2) or 'random'")


def orthogonal_bank(rec_lo):
    """(dec_lo, dec_hi, rec_lo, rec_hi) of the orthogonal wavelet with scaling filter rec_lo.

    Orientation as in PyWavelets: dec_lo = reversed rec_lo, rec_hi[k] = (-1)^k dec_lo[k],
    dec_hi = reversed rec_hi.
    """
    rec_lo = np.asarray(rec_lo, dtype=np.float64)
    dec_lo = rec_lo[::-1].copy()
    rec_hi = dec_lo * (-1.0) ** np.arange(len(dec_lo))
    return dec_lo, rec_hi[::-1].copy(), rec_lo.copy(), rec_hi


def filter_bank(init="haar", filter_length=None, rng=None, dtype=np.float64):
    """Four filters (dec_lo, dec_hi, rec_lo, rec_hi) for a wavelet layer.

    init: a named orthogonal wavelet (see NAMED; values computed above) or 'random' (uniform in
    [-1, 1), drawn from `rng`). filter_length pads a named wavelet with zeros: analysis filters
    at the end and synthesis filters at the front, which keeps perfect reconstruction of the
    transform (the analysis delay stays even) and both wavelet losses at zero.
    """
    if init == "random":
        if filter_length is None:
            raise ValueError("filter_bank: init='random' needs a filter_length")
        if filter_length < 2:
            raise ValueError(f"filter_bank: filter_length must be >= 2, got {filter_length}")
        if rng is None:
            raise ValueError("filter_bank: init='random' needs a random generator")
        return tuple(rng.uniform(-1.0, 1.0, filter_length).astype(dtype) for _ in range(4))
    dec_lo, dec_hi, rec_lo, rec_hi = orthogonal_bank(scaling_filter(init))
    natural = len(dec_lo)
    length = natural if filter_length is None else int(filter_length)
    if length < natural:
        raise ValueError(f"filter_bank: {init} has {natural} taps, filter_length {length} is shorter")
    pad = length - natural
    dec = [np.concatenate([f, np.zeros(pad)]) for f in (dec_lo, dec_hi)]
    rec = [np.concatenate([np.zeros(pad), f]) for f in (rec_lo, rec_hi)]
    return tuple(f.astype(dtype) for f in dec + rec)


# ---------------------------------------------------------------- wavelet losses
def full_convolution(a, b):
    """Full linear convolution (length La + Lb - 1) of two 1-D Tensors, differentiable in both."""
    xp = backend.xp_of(a.data)
    la, lb = a.shape[0], b.shape[0]
    padded = F.pad(a, ((lb - 1, lb - 1),))
    # toeplitz[k, j] = a[k - j]; the padding makes out-of-range taps zero
    index = xp.arange(la + lb - 1)[:, None] - xp.arange(lb)[None, :] + (lb - 1)
    return F.matmul(F.getitem(padded, index), b)


def perfect_reconstruction_loss(dec_lo, dec_hi, rec_lo, rec_hi):
    """|| dec_lo * rec_lo + dec_hi * rec_hi - 2 delta ||^2 with delta 1 at the centre tap L - 1."""
    product = full_convolution(dec_lo, rec_lo) + full_convolution(dec_hi, rec_hi)
    xp = backend.xp_of(product.data)
    target = xp.zeros(product.shape, dtype=product.dtype)
    target[product.shape[0] // 2] = 2.0
    return F.sum((product - target) ** 2)


def alias_cancellation_loss(dec_lo, dec_hi, rec_lo, rec_hi, variant="modulated"):
    """Alias-cancellation loss.

    variant='modulated' (the true condition, zero for every orthogonal or biorthogonal bank):
    || (m . dec_lo) * rec_lo + (m . dec_hi) * rec_hi ||^2 with m[k] = (-1)^k.
    variant='sign_flip' (the original code's stricter quadrature-mirror form):
    || rec_lo - s . dec_hi ||^2 + || rec_hi + s . dec_lo ||^2 with s[k] = (-1)^(L-1-k).
    """
    xp = backend.xp_of(dec_lo.data)
    length = dec_lo.shape[0]
    if variant == "modulated":
        m = xp.asarray((-1.0) ** np.arange(length), dtype=dec_lo.dtype)
        alias = full_convolution(dec_lo * m, rec_lo) + full_convolution(dec_hi * m, rec_hi)
        return F.sum(alias ** 2)
    if variant == "sign_flip":
        s = xp.asarray((-1.0) ** (length - 1 - np.arange(length)), dtype=dec_lo.dtype)
        return F.sum((rec_lo - dec_hi * s) ** 2) + F.sum((rec_hi + dec_lo * s) ** 2)
    raise ValueError(f"alias_cancellation_loss: variant must be 'modulated' or 'sign_flip', got {variant!r}")
