"""im2col / col2im for 2-D convolution: patches as columns, and their adjoint (NumPy, Numba, CuPy)."""
import functools

import numpy as np

from .. import backend, buffers
from . import PARALLEL_VARIABLE, env_flag, load_numba_module, pays_to_thread


def conv_output_size(size, k, stride, pad, dilation):
    return (size + 2 * pad - dilation * (k - 1) - 1) // stride + 1


def channel_major_shape(x_shape, kh, kw, stride, padding, dilation):
    """The shape (C, kh, kw, B, OH, OW) of im2col_channel_major's result for an input of x_shape."""
    b, c, h, w = x_shape
    oh = conv_output_size(h, kh, stride[0], padding[0], dilation[0])
    ow = conv_output_size(w, kw, stride[1], padding[1], dilation[1])
    return (c, kh, kw, b, oh, ow)


def _padded(x, ph, pw):
    """x (B, C, H, W) zero-padded by (ph, pw), in an array from the buffer pool that the caller
    gives back once it is done with it (np.pad would allocate a fresh one every call)."""
    b, c, h, w = x.shape
    out = buffers.take((b, c, h + 2 * ph, w + 2 * pw), x.dtype, like=x)
    out[:, :, :ph] = 0
    out[:, :, ph + h:] = 0
    out[:, :, ph:ph + h, :pw] = 0
    out[:, :, ph:ph + h, pw + w:] = 0
    out[:, :, ph:ph + h, pw:pw + w] = x
    return out


# ---- NumPy reference (also the CuPy path: the same code with xp = cupy) ----------

def _patches_numpy(x, kh, kw, stride, padding, dilation, channel_major, out=None):
    """Built by kh*kw strided copies (one per kernel tap), each a whole-batch slice: fast in
    NumPy and identical on CuPy. `out`, when given, is the destination of the result's shape."""
    xp = backend.xp_of(x)
    b, c, h, w = x.shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    oh = conv_output_size(h, kh, sh, ph, dh)
    ow = conv_output_size(w, kw, sw, pw, dw)
    padded = _padded(x, ph, pw) if ph or pw else None
    if padded is not None:
        x = padded
    shape = (c, kh, kw, b, oh, ow) if channel_major else (b, c, kh, kw, oh, ow)
    cols = xp.empty(shape, dtype=x.dtype) if out is None else out
    if channel_major:
        x = x.transpose(1, 0, 2, 3)
    for i in range(kh):
        i0 = i * dh
        for j in range(kw):
            j0 = j * dw
            tap = x[:, :, i0:i0 + sh * (oh - 1) + 1:sh, j0:j0 + sw * (ow - 1) + 1:sw]
            if channel_major:
                cols[:, i, j] = tap
            else:
                cols[:, :, i, j] = tap
    buffers.give_back(padded)
    return cols


def im2col_numpy(x, kh, kw, stride, padding, dilation):
    """Patches of x (B, C, H, W) as cols (B, C, kh, kw, OH, OW)."""
    return _patches_numpy(x, kh, kw, stride, padding, dilation, channel_major=False)


def im2col_cm_numpy(x, kh, kw, stride, padding, dilation, out=None):
    """Patches of x (B, C, H, W) in channel-major order, cols (C, kh, kw, B, OH, OW).

    cols.reshape(C*kh*kw, B*OH*OW) is then the whole batch's patch matrix, so a
    convolution's forward and weight gradient are each one matrix product.
    """
    return _patches_numpy(x, kh, kw, stride, padding, dilation, channel_major=True, out=out)


def col2im_numpy(cols, x_shape, stride, padding, dilation):
    """Adjoint of im2col: sum cols (B, C, kh, kw, OH, OW) back into an image of x_shape."""
    img = backend.xp_of(cols).zeros(padded_shape(x_shape, padding), dtype=cols.dtype)
    col2im_into_numpy(cols, img, stride, dilation)
    return cropped(img, padding)


def col2im_into_numpy(cols, img, stride, dilation):
    """Add every entry of cols (B, C, kh, kw, OH, OW) into its place in img, the images with their padding
    (B, C, H + 2 ph, W + 2 pw)."""
    _, _, kh, kw, oh, ow = cols.shape
    (sh, sw), (dh, dw) = stride, dilation
    for i in range(kh):
        i0 = i * dh
        for j in range(kw):
            j0 = j * dw
            img[:, :, i0:i0 + sh * (oh - 1) + 1:sh, j0:j0 + sw * (ow - 1) + 1:sw] += cols[:, :, i, j]


def padded_shape(x_shape, padding):
    """The shape of images of x_shape (B, C, H, W) with `padding` (ph, pw) added on both sides."""
    b, c, h, w = x_shape
    return (b, c, h + 2 * padding[0], w + 2 * padding[1])


def cropped(img, padding):
    """img (B, C, H + 2 ph, W + 2 pw) without its padding (a view)."""
    ph, pw = padding
    return img[:, :, ph:img.shape[2] - ph, pw:img.shape[3] - pw] if ph or pw else img


# ---- Numba CPU version (engine/kernels/im2col_numba.py) and the dispatcher ----------

# The implementation the dispatcher uses on CPU arrays when Numba is available, per direction.
# bench/bench_im2col.py at LeNet-5 shapes (batch 128, float32) on a shared 2-core machine: the
# one-thread Numba kernels took 0.36-0.62x the NumPy time for im2col and 0.13-0.23x for col2im,
# so both directions pick Numba.
PREFERRED = {"im2col": "numba", "col2im": "numba"}

# The prange (threaded) kernels ran 2-3x faster than one thread on an idle 2-core machine but
# 2-20x slower when the cores were shared (threads wait for each other), so they are opt-in:
# COMPACTNET_NUMBA_PARALLEL=1 (read like COMPACTNET_DISABLE_NUMBA), and then only for calls that
# copy at least PARALLEL_MIN_WORK column entries (the threshold every kernel family shares).
def _pays_to_thread(batch, entries_per_image):
    return env_flag(PARALLEL_VARIABLE) and batch > 1 and pays_to_thread(batch * entries_per_image)


def numba_enabled():
    """True when Numba imports and COMPACTNET_DISABLE_NUMBA does not disable it."""
    return numba_kernels() is not None


def numba_kernels():
    """The compiled module engine.kernels.im2col_numba, or None (Numba missing or disabled)."""
    return load_numba_module("im2col_numba")


def _patches_nb(name, x, kh, kw, stride, padding, dilation, parallel, channel_major, out=None, kernels=None):
    """`kernels`: the Numba module when the caller has it at hand (the dispatcher), so that a call
    reads the COMPACTNET_DISABLE_NUMBA switch once, not three times (a batch-1 LeNet-5 forward made
    twelve such reads, about 1 us each)."""
    kernels = numba_kernels() if kernels is None else kernels
    if kernels is None:
        raise RuntimeError(f"{name}: Numba is not available (or COMPACTNET_DISABLE_NUMBA disables it)")
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    oh = conv_output_size(x.shape[2], kh, sh, ph, dh)
    ow = conv_output_size(x.shape[3], kw, sw, pw, dw)
    if parallel is None:
        parallel = _pays_to_thread(x.shape[0], x.shape[1] * kh * kw * oh * ow)
    if not channel_major:
        kernel = kernels.im2col_parallel if parallel else kernels.im2col_serial
        return kernel(x, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow)
    cols = np.empty((x.shape[1], kh, kw, x.shape[0], oh, ow), dtype=x.dtype) if out is None else out
    fill = _channel_major_fill(kernels, parallel, stride, padding, dilation)
    fill(x, cols)
    fill.release()
    return cols


def _channel_major_fill(kernels, parallel, stride, padding, dilation):
    """fill(x, out): the Numba channel-major patches of x into out (C, kh, kw, B, OH, OW); then
    fill.release() once no more calls follow.

    With padding, the kernel reads a zero-bordered copy of x (its copy loop then needs no bounds
    tests). The first call makes that copy and keeps it: later calls with as many images or fewer (a
    chunked convolution's next chunks) write only their interior, the border staying zero. Padding
    each chunk afresh cost widecnn's second and third BasisConv layers, one and two images a chunk,
    1.1 and 0.7 ms a forward against 0.34 and 0.33 (bench/results/microbench-session12.md)."""
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    kernel = kernels.im2col_cm_parallel if parallel else kernels.im2col_cm_serial
    if not (ph or pw):
        def fill(x, out):
            kernel(x, out, sh, sw, dh, dw)
        fill.release = lambda: None
        return fill
    frame = []

    def fill(x, out):
        b, _, h, w = x.shape
        if frame and frame[0].shape[0] >= b and frame[0].shape[1:] == (x.shape[1], h + 2 * ph, w + 2 * pw):
            padded = frame[0][:b]
            padded[:, :, ph:ph + h, pw:pw + w] = x
        else:
            release()
            padded = _padded(x, ph, pw)
            frame.append(padded)
        kernel(padded, out, sh, sw, dh, dw)

    def release():
        if frame:
            buffers.give_back(frame.pop())
    fill.release = release
    return fill


def im2col_nb(x, kh, kw, stride, padding, dilation, parallel=None):
    """The Numba version of im2col_numpy (same result); parallel None picks threads by _pays_to_thread."""
    return _patches_nb("im2col_nb", x, kh, kw, stride, padding, dilation, parallel, channel_major=False)


def im2col_cm_nb(x, kh, kw, stride, padding, dilation, parallel=None, out=None):
    """The Numba version of im2col_cm_numpy (same result); parallel None picks threads by _pays_to_thread."""
    return _patches_nb("im2col_cm_nb", x, kh, kw, stride, padding, dilation, parallel,
                       channel_major=True, out=out)


def col2im_nb(cols, x_shape, stride, padding, dilation, parallel=None, kernels=None):
    """The Numba version of col2im_numpy (same result); parallel None picks threads by _pays_to_thread."""
    kernels = numba_kernels() if kernels is None else kernels
    if kernels is None:
        raise RuntimeError("col2im_nb: Numba is not available (or COMPACTNET_DISABLE_NUMBA disables it)")
    img = np.zeros(padded_shape(x_shape, padding), dtype=cols.dtype)
    _col2im_into_nb(kernels, cols, img, stride, dilation, parallel)
    return cropped(img, padding)


def _col2im_into_nb(kernels, cols, img, stride, dilation, parallel=None):
    if parallel is None:
        parallel = _pays_to_thread(cols.shape[0], cols[0].size)
    kernel = kernels.col2im_parallel if parallel else kernels.col2im_serial
    kernel(cols, img, stride[0], stride[1], dilation[0], dilation[1])


def _numba_for(array, direction):
    """The Numba kernels module when this direction should run on Numba for `array`, else None."""
    if PREFERRED[direction] != "numba" or backend.is_gpu_array(array) or array.dtype.kind != "f":
        return None
    return numba_kernels()


def im2col(x, kh, kw, stride, padding, dilation):
    """Patches of x (B, C, H, W) as cols (B, C, kh, kw, OH, OW): Numba on CPU when it pays, else NumPy/CuPy."""
    kernels = _numba_for(x, "im2col")
    if kernels is not None:
        return _patches_nb("im2col_nb", x, kh, kw, stride, padding, dilation, None, channel_major=False,
                           kernels=kernels)
    return im2col_numpy(x, kh, kw, stride, padding, dilation)


def im2col_channel_major(x, kh, kw, stride, padding, dilation, out=None):
    """Patches of x (B, C, H, W) as cols (C, kh, kw, B, OH, OW): Numba on CPU when it pays, else
    NumPy/CuPy. `out`, when given, is a C-contiguous array of that shape and x's dtype to fill
    (conv2d passes one from engine/buffers.py)."""
    kernels = _numba_for(x, "im2col")
    if kernels is not None:
        return _patches_nb("im2col_cm_nb", x, kh, kw, stride, padding, dilation, None, channel_major=True,
                           out=out, kernels=kernels)
    return im2col_cm_numpy(x, kh, kw, stride, padding, dilation, out=out)


def channel_major_filler(x, kh, kw, stride, padding, dilation, images):
    """fill(part, out): im2col_channel_major of `part`, a chunk of at most `images` images of x, into out,
    with the implementation and its thread choice settled once for every chunk of x (a chunked
    convolution calls it per chunk, and the dispatch took about 6 us a call, 64 chunks a forward for
    BasisConv LeNet-5's conv2 at batch 128); fill.release() after the last chunk."""
    kernels = _numba_for(x, "im2col")
    if kernels is None:
        def fill(part, out):
            im2col_cm_numpy(part, kh, kw, stride, padding, dilation, out=out)
        fill.release = lambda: None
        return fill
    one = channel_major_shape((1,) + x.shape[1:], kh, kw, stride, padding, dilation)
    parallel = _pays_to_thread(images, one[0] * kh * kw * one[-2] * one[-1])
    return _channel_major_fill(kernels, parallel, stride, padding, dilation)


def col2im(cols, x_shape, stride, padding, dilation):
    """Adjoint of im2col (sums overlapping patches): Numba on CPU when it pays, else NumPy/CuPy."""
    kernels = _numba_for(cols, "col2im")
    if kernels is not None:
        return col2im_nb(cols, x_shape, stride, padding, dilation, kernels=kernels)
    return col2im_numpy(cols, x_shape, stride, padding, dilation)


def col2im_into(cols, img, stride, dilation):
    """Add cols (B, C, kh, kw, OH, OW) into img (B, C, H + 2 ph, W + 2 pw), images with their padding, as
    col2im sums them (a caller that goes through the batch in chunks zeroes img and crops it itself)."""
    kernels = _numba_for(cols, "col2im")
    if kernels is not None:
        _col2im_into_nb(kernels, cols, img, stride, dilation)
    else:
        col2im_into_numpy(cols, img, stride, dilation)


def implementations():
    """name -> (im2col, col2im) for every usable implementation, for tests and benchmarks."""
    impls = {"numpy": (im2col_numpy, col2im_numpy)}
    if numba_enabled():
        impls["numba"] = (functools.partial(im2col_nb, parallel=False),
                          functools.partial(col2im_nb, parallel=False))
        impls["numba_parallel"] = (functools.partial(im2col_nb, parallel=True),
                                   functools.partial(col2im_nb, parallel=True))
    return impls


def channel_major_implementations():
    """name -> im2col_channel_major implementation, for tests and benchmarks."""
    impls = {"numpy": im2col_cm_numpy}
    if numba_enabled():
        impls["numba"] = functools.partial(im2col_cm_nb, parallel=False)
        impls["numba_parallel"] = functools.partial(im2col_cm_nb, parallel=True)
    return impls
