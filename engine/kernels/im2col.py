"""im2col / col2im for 2-D convolution: patches as columns, and their adjoint."""
from .. import backend


def conv_output_size(size, k, stride, pad, dilation):
    return (size + 2 * pad - dilation * (k - 1) - 1) // stride + 1


def im2col(x, kh, kw, stride, padding, dilation):
    """Patches of x (B, C, H, W) as cols (B, C, kh, kw, OH, OW).

    Built by kh*kw strided copies (one per kernel tap), each a whole-batch
    slice: fast in NumPy and identical on CuPy.
    """
    xp = backend.xp_of(x)
    b, c, h, w = x.shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    oh = conv_output_size(h, kh, sh, ph, dh)
    ow = conv_output_size(w, kw, sw, pw, dw)
    if ph or pw:
        x = xp.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    cols = xp.empty((b, c, kh, kw, oh, ow), dtype=x.dtype)
    for i in range(kh):
        i0 = i * dh
        for j in range(kw):
            j0 = j * dw
            cols[:, :, i, j] = x[:, :, i0:i0 + sh * (oh - 1) + 1:sh, j0:j0 + sw * (ow - 1) + 1:sw]
    return cols


def col2im(cols, x_shape, stride, padding, dilation):
    """Adjoint of im2col: sum cols (B, C, kh, kw, OH, OW) back into an image of x_shape."""
    xp = backend.xp_of(cols)
    b, c, h, w = x_shape
    _, _, kh, kw, oh, ow = cols.shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    img = xp.zeros((b, c, h + 2 * ph, w + 2 * pw), dtype=cols.dtype)
    for i in range(kh):
        i0 = i * dh
        for j in range(kw):
            j0 = j * dw
            img[:, :, i0:i0 + sh * (oh - 1) + 1:sh, j0:j0 + sw * (ow - 1) + 1:sw] += cols[:, :, i, j]
    if ph or pw:
        img = img[:, :, ph:ph + h, pw:pw + w]
    return img
