"""Numba CPU kernels for im2col/col2im (imported only when Numba is wanted; see im2col.py)."""
import numba
import numpy as np

from .serial_and_parallel import serial_and_parallel


@numba.njit(cache=True)
def _im2col_image(x, cols, sh, sw, ph, pw, dh, dw):
    """Fill cols (C, kh, kw, OH, OW) from one image x (C, H, W); padding reads as zeros."""
    c, h, w = x.shape
    _, kh, kw, oh, ow = cols.shape
    for ch in range(c):
        for i in range(kh):
            for j in range(kw):
                for p in range(oh):
                    r = p * sh + i * dh - ph
                    row_inside = 0 <= r < h
                    for q in range(ow):
                        s = q * sw + j * dw - pw
                        if row_inside and 0 <= s < w:
                            cols[ch, i, j, p, q] = x[ch, r, s]
                        else:
                            cols[ch, i, j, p, q] = 0


@numba.njit(cache=True)
def _col2im_image(cols, img, sh, sw, dh, dw):
    """Add every entry of cols (C, kh, kw, OH, OW) into its place in one zero-padded image img
    (C, H + 2 ph, W + 2 pw). The padding takes the entries that land outside the image, so the loop
    has no bounds test and, with unsigned indices as in _im2col_cm_row, vectorises (LeNet-5's conv2
    at batch 128: 1.7 against 2.8 ms with bounds tests, measured interleaved)."""
    c = img.shape[0]
    _, kh, kw, oh, ow = cols.shape
    ush, usw = np.uint64(sh), np.uint64(sw)
    for ch in range(c):
        for i in range(kh):
            row0 = np.uint64(i) * np.uint64(dh)
            for j in range(kw):
                col0 = np.uint64(j) * np.uint64(dw)
                for p in range(oh):
                    r = np.uint64(p) * ush + row0
                    for q in range(ow):
                        img[ch, r, np.uint64(q) * usw + col0] += cols[ch, i, j, p, q]


def _im2col(x, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow):
    """cols (B, C, kh, kw, OH, OW) from x (B, C, H, W); the parallel copy shares out the images.
    (The serial copy suits small inputs, where waking threads costs more than it saves.)"""
    cols = np.empty((x.shape[0], x.shape[1], kh, kw, oh, ow), dtype=x.dtype)
    for n in numba.prange(x.shape[0]):
        _im2col_image(x[n], cols[n], sh, sw, ph, pw, dh, dw)
    return cols


def _col2im_into(cols, img, sh, sw, dh, dw):
    """Adjoint of im2col: add every patch entry of cols (B, C, kh, kw, OH, OW) into img (B, C, H + 2 ph,
    W + 2 pw), the images with their padding (the caller zeroes img and crops the padding off); the
    parallel copy shares out the images."""
    for n in numba.prange(cols.shape[0]):
        _col2im_image(cols[n], img[n], sh, sw, dh, dw)


im2col_serial, im2col_parallel = serial_and_parallel(_im2col, "im2col")
col2im_serial, col2im_parallel = serial_and_parallel(_col2im_into, "col2im_into")


# ---- channel-major patches (C, kh, kw, B, OH, OW): one GEMM over the whole batch -------------

@numba.njit(cache=True)
def _im2col_cm_row(x, cols, ch, i, sh, sw, dh, dw):
    """Fill cols[ch, i] (kw, B, OH, OW), kernel row i of channel ch, from an already padded x.

    Each input row is read once for all kw taps of the row (0.5 ms less than a pass per tap at
    LeNet-5's conv2, batch 128: 1.9 against 2.4 ms, measured interleaved). Indices are unsigned so
    Numba adds no negative-index wraparound check, which would keep LLVM from vectorising the copy
    (3x slower at LeNet-5's shapes).
    """
    _, _, kw, b, oh, ow = cols.shape
    row0 = np.uint64(i) * np.uint64(dh)
    ush, usw, udw = np.uint64(sh), np.uint64(sw), np.uint64(dw)
    for n in range(b):
        for p in range(oh):
            src = x[n, ch, np.uint64(p) * ush + row0]
            for j in range(kw):
                dst = cols[ch, i, j, n, p]
                col0 = np.uint64(j) * udw
                for q in range(ow):
                    dst[q] = src[np.uint64(q) * usw + col0]


def _im2col_cm(x, cols, sh, sw, dh, dw):
    """Fill cols (C, kh, kw, B, OH, OW) from a padded x (B, C, H, W); the parallel copy shares out
    the (channel, kernel row) pairs. The caller allocates cols (engine/buffers.py may recycle it)."""
    c, kh = cols.shape[:2]
    for t in numba.prange(c * kh):
        _im2col_cm_row(x, cols, t // kh, t % kh, sh, sw, dh, dw)


im2col_cm_serial, im2col_cm_parallel = serial_and_parallel(_im2col_cm, "im2col_cm")
