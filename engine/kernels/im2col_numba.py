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
def _col2im_image(cols, img, sh, sw, ph, pw, dh, dw):
    """Add every entry of cols (C, kh, kw, OH, OW) into its place in one image img (C, H, W)."""
    c, h, w = img.shape
    _, kh, kw, oh, ow = cols.shape
    for ch in range(c):
        for i in range(kh):
            for j in range(kw):
                for p in range(oh):
                    r = p * sh + i * dh - ph
                    if r < 0 or r >= h:
                        continue
                    for q in range(ow):
                        s = q * sw + j * dw - pw
                        if 0 <= s < w:
                            img[ch, r, s] += cols[ch, i, j, p, q]


def _im2col(x, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow):
    """cols (B, C, kh, kw, OH, OW) from x (B, C, H, W); the parallel copy shares out the images.
    (The serial copy suits small inputs, where waking threads costs more than it saves.)"""
    cols = np.empty((x.shape[0], x.shape[1], kh, kw, oh, ow), dtype=x.dtype)
    for n in numba.prange(x.shape[0]):
        _im2col_image(x[n], cols[n], sh, sw, ph, pw, dh, dw)
    return cols


def _col2im(cols, h, w, sh, sw, ph, pw, dh, dw):
    """Adjoint of im2col: image (B, C, h, w) summing every patch entry; the parallel copy shares
    out the images."""
    img = np.zeros((cols.shape[0], cols.shape[1], h, w), dtype=cols.dtype)
    for n in numba.prange(cols.shape[0]):
        _col2im_image(cols[n], img[n], sh, sw, ph, pw, dh, dw)
    return img


im2col_serial, im2col_parallel = serial_and_parallel(_im2col, "im2col")
col2im_serial, col2im_parallel = serial_and_parallel(_col2im, "col2im")


# ---- channel-major patches (C, kh, kw, B, OH, OW): one GEMM over the whole batch -------------

@numba.njit(cache=True)
def _im2col_cm_tap(x, cols, ch, i, j, sh, sw, dh, dw):
    """Fill cols[ch, i, j] (B, OH, OW), tap (i, j) of channel ch, from an already padded x.

    Indices are unsigned so Numba adds no negative-index wraparound check, which would keep
    LLVM from vectorising the copy (3x slower at LeNet-5's shapes).
    """
    _, _, _, b, oh, ow = cols.shape
    col0 = np.uint64(j) * np.uint64(dw)
    row0 = np.uint64(i) * np.uint64(dh)
    ush, usw = np.uint64(sh), np.uint64(sw)
    for n in range(b):
        for p in range(oh):
            r = np.uint64(p) * ush + row0
            for q in range(ow):
                cols[ch, i, j, n, p, q] = x[n, ch, r, np.uint64(q) * usw + col0]


def _im2col_cm(x, cols, sh, sw, dh, dw):
    """Fill cols (C, kh, kw, B, OH, OW) from a padded x (B, C, H, W); the parallel copy shares out
    the (channel, tap) triples. The caller allocates cols (engine/buffers.py may recycle it)."""
    c, kh, kw = cols.shape[:3]
    for t in numba.prange(c * kh * kw):
        ch, rest = t // (kh * kw), t % (kh * kw)
        _im2col_cm_tap(x, cols, ch, rest // kw, rest % kw, sh, sw, dh, dw)


im2col_cm_serial, im2col_cm_parallel = serial_and_parallel(_im2col_cm, "im2col_cm")
