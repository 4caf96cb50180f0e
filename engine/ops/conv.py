"""2-D convolution (stride, padding, dilation, groups) as im2col + matrix products."""
import sys
import weakref

from .. import backend, buffers
from ..function import Function
from ..kernels.im2col import (im2col, col2im, col2im_into, conv_output_size, cropped, channel_major_shape,
                              channel_major_filler, padded_shape)
from ..grad_mode import is_grad_enabled
from ..tensor import as_tensor

# The forward product over the whole batch, (N, K) @ (K, B*P), needs its (N, B, P) result
# transposed to (B, N, P), an extra pass over the output; it pays when each output element
# takes many multiply-adds (LeNet-5's conv2, K = 500: 11 -> 5 ms at 2 threads), while for a
# small K per-image products on strided views are faster (conv1, K = 25: 2.4 vs 3.9 ms).
ONE_PRODUCT_MIN_K = 64

# Without a graph nothing keeps the patches, so on one thread a convolution runs over the batch a few
# images at a time, each chunk's patches small enough to stay in cache while BLAS packs them: LeNet-5's
# conv2 at batch 128 went from 10.2 to 7.5 ms, and with BasisConv's 12 basis filters from 7.4 to 3.7 ms
# (the whole-batch patch matrix is 16 MB, and packing it cost as much as a skinny product). With more
# threads the small chunks split badly (LeNet-5 at batch 128, 2 threads: 14.5 ms whole, 17.7 chunked),
# so there the batch stays whole.
INFERENCE_CHUNK_BYTES = 1 << 20

# Backward forms the input's gradient chunk by chunk for the same reason: each chunk's patch gradients
# (W^T gy per image) are summed into their images while in cache, where the whole batch's (16 MB at
# LeNet-5's conv2, batch 128) went out to memory and came back for col2im. LeNet-5's train step at batch
# 128, in one process, in turn: 21.8 -> 20.4 ms at 2 threads, 29.0 -> 27.1 ms at 1 (256 KB chunks: 20.1).
GRADIENT_CHUNK_BYTES = 1 << 20


def _one_thread():
    """Whether the kernels run on one thread. Numba's count stands for BLAS's: the engine's thread
    settings (train.py --threads, engine.threads.limit_threads) set both; without Numba loaded, no."""
    numba = sys.modules.get("numba")
    return numba is not None and numba.get_num_threads() == 1


# conv2d_pointwise's pass (BasisConv, a low-rank convolution) keeps a chunk's patches, its M maps and their
# mix into N in cache at once, and multiplies skinny (M-row) products whose packed patches BLAS re-reads:
# smaller chunks pay there. Whole models at batch 128, one thread, three interleaved runs (ms, 256 KB
# against 1 MB): BasisConv LeNet-5 6.68 / 6.23 / 6.08 against 6.90 / 6.29 / 6.12, low-rank LeNet-5
# 5.70 / 5.24 / 5.44 against 6.22 / 5.77 / 5.87, BasisConv widecnn 25.6 / 26.7 / 25.2 against 26.3 / 26.8
# / 25.0; 128 KB was slower for all three (7.1-7.7, 5.9-6.5, 26.1-27.7). The same order after the per-chunk
# dispatch went (bench/results/microbench-session11.md).
POINTWISE_CHUNK_BYTES = 1 << 18


def inference_chunk_images(batch, patch_bytes_per_image, recording, budget=None):
    """Images per chunk of an im2col convolution: the whole batch under a graph (backward keeps the
    patches) or on more than one thread, else as many as `budget` bytes of patches hold (at least one;
    INFERENCE_CHUNK_BYTES when not given)."""
    if recording or not _one_thread():
        return batch
    budget = INFERENCE_CHUNK_BYTES if budget is None else budget
    return max(1, min(batch, budget // patch_bytes_per_image))


def pair(v, name):
    """(v, v) for an int, the pair itself for a 2-sequence; ValueError otherwise."""
    if isinstance(v, int):
        return (v, v)
    v = tuple(v)
    if len(v) != 2 or not all(isinstance(i, int) for i in v):
        raise ValueError(f"{name} must be an int or a pair of ints, got {v}")
    return v


def _weight_gradient(gy, patches):
    """The (N, K) sum over images and positions of gy (B, N, P) times patches (K, B, P).

    The reduction runs over all B*P positions. With few patch rows (K < ONE_PRODUCT_MIN_K) it goes
    image by image on gy as it lies, and the B small (N, K) products are summed: one product with
    a 73,728-long inner dimension ran at 19-33 GFLOP/s (LeNet-5's conv1 at batch 128, 2 threads:
    1.8-1.9 ms per image against 4.0-4.6 ms whole). Otherwise gy goes channel-major and the whole
    batch is one product, taken as patches @ gy.T, which BLAS runs faster than gy @ patches.T
    (conv2, K = 500: 3.8-7.0 ms against 4.9-8.6 ms; both measured interleaved)."""
    n, (k, bsz, p) = gy.shape[1], patches.shape
    if k < ONE_PRODUCT_MIN_K:
        return backend.xp_of(gy).matmul(gy, patches.transpose(1, 2, 0)).sum(axis=0)
    gy_rows = buffers.take((n, bsz, p), gy.dtype, like=gy)
    gy_rows[...] = gy.transpose(1, 0, 2)
    gw = (patches.reshape(k, bsz * p) @ gy_rows.reshape(n, bsz * p).T).T
    buffers.give_back(gy_rows)
    return gw


def _with_bias_row(xp, filters, b, combination):
    """(filters, combination) grown so that a row of ones under the patches adds the bias b: one
    more filter column holding b; or, with a combination (whose bias belongs after the mix), one more
    filter that passes the ones through as a map and one more combination column holding b."""
    m, k = filters.shape
    if combination is None:
        return xp.concatenate([filters, b.reshape(m, 1).astype(filters.dtype, copy=False)], axis=1), None
    passing = xp.zeros((m + 1, k + 1), dtype=filters.dtype)
    passing[:m, :k] = filters
    passing[m, k] = 1
    n = combination.shape[0]
    return passing, xp.concatenate([combination, b.reshape(n, 1).astype(combination.dtype, copy=False)], axis=1)


class Conv2d(Function):
    def __init__(self, stride, padding, dilation, groups):
        self.stride, self.padding, self.dilation, self.groups = stride, padding, dilation, groups

    def forward(self, x, w, b=None):
        n, cg, kh, kw = w.shape
        bsz = x.shape[0]
        g = self.groups
        self.x_shape, self.w = x.shape, w
        if not self.recording and g == 1 and (kh, kw) == (1, 1) and self.stride == (1, 1) \
                and self.padding == (0, 0):
            # inference through a 1x1 convolution (BasisConv's combination, a low-rank conv's second
            # half): one product per image on the input as it lies, no patch copy, no transposes
            y = (w.reshape(n, cg) @ x.reshape(bsz, cg, -1)).reshape(bsz, n, x.shape[2], x.shape[3])
            if b is not None:
                y += b.reshape(1, n, 1, 1)
            return y
        if g == 1:
            return self._forward_im2col(x, w, b, keep_patches=self.recording)
        cols = im2col(x, kh, kw, self.stride, self.padding, self.dilation)
        oh, ow = cols.shape[-2:]
        y = w.reshape(g, n // g, -1) @ cols.reshape(bsz, g, cg * kh * kw, oh * ow)
        self.cols = cols
        y = y.reshape(bsz, n, oh, ow)
        if b is not None:
            y += b.reshape(1, n, 1, 1)
        return y

    def _forward_im2col(self, x, w, b, combination=None, keep_patches=False):
        """A groups=1 convolution on channel-major patches (K, B, P). With a graph (keep_patches) the
        whole batch's patches are kept for backward until this Function is dropped, then go back to the
        buffer pool; without one, on one thread, the batch goes through in chunks whose patches fit
        INFERENCE_CHUNK_BYTES (else whole), each chunk's product (and bias) written into its images.
        With `combination` (N, M) each chunk's M maps are mixed into N at once, while in cache."""
        xp = backend.xp_of(x)
        m, cg, kh, kw = w.shape
        n = m if combination is None else combination.shape[0]
        bsz = x.shape[0]
        one = channel_major_shape((1,) + x.shape[1:], kh, kw, self.stride, self.padding, self.dilation)
        k, (oh, ow) = cg * kh * kw, one[-2:]
        p = oh * ow
        chunk = inference_chunk_images(bsz, k * p * x.dtype.itemsize, keep_patches,
                                       None if combination is None else POINTWISE_CHUNK_BYTES)
        # The bias rides in the product as one more row of patches, all ones, so that no pass over the
        # output adds it (LeNet-5's conv1 at batch 128: 0.4 ms a step) and backward reads its gradient off
        # the weight gradient's product. That copies the weight with one more column, which pays only
        # when a map has more positions over the batch than a filter has weights (LeNet-5's conv2 at
        # batch 1, 64 positions against 500 weights, would copy 100 KB to spare a 13 KB pass).
        # With a combination, on the one-product path the bias rides in the mix instead: a row of ones
        # written once under every chunk's maps and one more combination column holding b. An extra
        # filter row would cost BLAS a whole tile of rows (13 rows of BasisConv's conv2 took as long as
        # 16: 2.86 against 3.02 ms at batch 128), and adding b to each chunk's output after the mix took
        # twice the mix itself (LeNet-5's conv2, chunks of 2 images: 5.0 against 2.3 us a chunk).
        fold = b is not None and bsz * p > k and (combination is None or k < ONE_PRODUCT_MIN_K)
        rows_k = k + fold
        w2 = w.reshape(m, k)
        if fold:
            w2, combination = _with_bias_row(xp, w2, b, combination)
        maps_n = w2.shape[0]
        one_product = k >= ONE_PRODUCT_MIN_K
        ones_row = one_product and combination is not None and b is not None
        if ones_row:
            combination = xp.concatenate([combination, b.reshape(n, 1).astype(combination.dtype, copy=False)], axis=1)
        y = buffers.lend((bsz, n, p), xp.result_type(w, x), like=x)
        cols = buffers.take((rows_k, chunk, p), x.dtype, like=x)
        # what every chunk needs, settled once: the patch kernel, and the product's buffer
        fill = channel_major_filler(x, kh, kw, self.stride, self.padding, self.dilation, chunk)
        product_rows = maps_n + ones_row
        products = buffers.take((product_rows, chunk * p), xp.result_type(w2, x), like=x) if one_product else None
        if ones_row:
            products[maps_n] = 1
        for start in range(0, bsz, chunk):
            part = x[start:start + chunk]
            size = part.shape[0]
            rows = cols if size == chunk else cols.reshape(-1)[:rows_k * size * p].reshape(rows_k, size, p)
            fill(part, rows[:k].reshape(one[:3] + (size,) + one[4:]))
            if fold:
                rows[k] = 1
            out = y[start:start + size]
            if products is not None:       # one product for the chunk, read back per image
                product = products
                if size != chunk:
                    product = products.reshape(-1)[:product_rows * size * p].reshape(product_rows, -1)
                    if ones_row:
                        product[maps_n] = 1
                xp.matmul(w2, rows.reshape(rows_k, size * p), out=product[:maps_n])
                maps = product.reshape(product_rows, size, p).transpose(1, 0, 2)
            else:                          # per image, on the patches as they lie
                maps = xp.matmul(w2, rows.transpose(1, 0, 2), out=None if combination is not None else out)
            if combination is not None:
                xp.matmul(combination, maps, out=out)
                if b is not None and not fold and not ones_row:
                    out += b.reshape(1, n, 1)
            elif maps is not out:
                out[...] = maps
        fill.release()
        buffers.give_back(products)
        if b is not None and not fold and combination is None:
            y += b.reshape(1, n, 1)
        if keep_patches:
            weakref.finalize(self, buffers.give_back, cols).atexit = False
            self.cols = cols
        else:
            buffers.give_back(cols)
            self.cols = None
        return y.reshape(bsz, n, oh, ow)

    def backward(self, gy):
        xp = backend.xp_of(gy)
        w, cols, g = self.w, self.cols, self.groups
        n, cg, kh, kw = w.shape
        bsz, _, oh, ow = gy.shape
        p = oh * ow
        needs = self.needs_input_grad
        gx = gw = gb = None
        if g == 1:
            gy2 = gy.reshape(bsz, n, p)
            k = cg * kh * kw
            if needs[1]:
                g_rows = _weight_gradient(gy2, cols)     # (N, K), one more column with the bias folded in
                gw = g_rows[:, :k].reshape(w.shape)
                if cols.shape[0] > k and len(needs) > 2 and needs[2]:
                    gb = xp.ascontiguousarray(g_rows[:, k])
            if needs[0]:
                gx = self._input_gradient(w.reshape(n, k), gy2, (cg, kh, kw, oh, ow))
        else:
            gy2 = gy.reshape(bsz, g, n // g, p)
            cols2 = cols.reshape(bsz, g, cg * kh * kw, p)
            if needs[1]:
                gw = xp.einsum("bgnp,bgkp->gnk", gy2, cols2).reshape(w.shape)
            if needs[0]:
                wg = w.reshape(g, n // g, -1)
                gcols = xp.swapaxes(wg, 1, 2) @ gy2
                gx = col2im(gcols.reshape(cols.shape), self.x_shape, self.stride,
                            self.padding, self.dilation)
        if len(needs) > 2 and needs[2] and gb is None:
            # each image's row sums as one matrix-vector product: 0.14 against 0.36 ms for
            # gy.sum(axis=(0, 2, 3)) at LeNet-5's conv1 (batch 128), measured interleaved
            gb = (gy.reshape(bsz, n, p) @ xp.ones(p, dtype=gy.dtype)).sum(axis=0)
        return (gx, gw, gb) if len(needs) > 2 else (gx, gw)

    def _input_gradient(self, w2, gy2, patch_shape):
        """The input's gradient of a groups=1 convolution: each image's patch gradients w2^T gy (K, P), in
        col2im's batch-major layout, summed into their places. On the CPU a few images at a time, so that
        each chunk's patch gradients are summed while still in cache rather than written out for the whole
        batch and read back (GRADIENT_CHUNK_BYTES)."""
        xp = backend.xp_of(gy2)
        bsz, k, p = gy2.shape[0], w2.shape[1], gy2.shape[2]
        dtype = xp.result_type(w2, gy2)
        chunk = bsz if backend.is_gpu_array(gy2) else \
            max(1, min(bsz, GRADIENT_CHUNK_BYTES // (k * p * dtype.itemsize)))
        img = buffers.lend(padded_shape(self.x_shape, self.padding), dtype, like=gy2)
        gcols = buffers.take((chunk, k, p), dtype, like=gy2)
        w2_t = w2.T
        for start in range(0, bsz, chunk):
            size = min(chunk, bsz - start)
            part, images = gcols[:size], img[start:start + size]
            xp.matmul(w2_t, gy2[start:start + size], out=part)
            images[...] = 0
            col2im_into(part.reshape((size,) + patch_shape), images, self.stride, self.dilation)
        buffers.give_back(gcols)
        return cropped(img, self.padding)


def conv2d(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    """Cross-correlation of x (B, C, H, W) with w (N, C/groups, kh, kw), plus bias b (N,)."""
    x, w = as_tensor(x), as_tensor(w)
    stride, padding, dilation = _geometry(x, w, stride, padding, dilation, groups)
    fn = Conv2d(stride, padding, dilation, groups)
    if b is None:
        return fn(x, w)
    b = as_tensor(b)
    if b.shape != (w.shape[0],):
        raise ValueError(f"conv2d: bias must have shape ({w.shape[0]},), got {b.shape}")
    return fn(x, w, b)


def conv2d_pointwise(x, w, combination, b=None, stride=1, padding=0, dilation=1):
    """conv2d(conv2d(x, w, None, stride, padding, dilation), combination, b): M filters w (M, C, kh, kw),
    then a 1x1 `combination` (N, M, 1, 1) mixing their maps into N, as BasisConv and a low-rank
    convolution do. Without a graph both run chunk by chunk, the M maps never leaving cache (no
    (B, M, OH, OW) intermediate); when a gradient is recorded, as the two convolutions."""
    x, w, combination = as_tensor(x), as_tensor(w), as_tensor(combination)
    if w.ndim != 4 or combination.ndim != 4 or combination.shape[1:] != (w.shape[0], 1, 1):
        raise ValueError(f"conv2d_pointwise: combination must be (out, {w.shape[0] if w.ndim else '?'}, 1, 1) "
                         f"for weight {w.shape}, got {combination.shape}")
    b = None if b is None else as_tensor(b)
    if b is not None and b.shape != (combination.shape[0],):
        raise ValueError(f"conv2d_pointwise: bias must have shape ({combination.shape[0]},), got {b.shape}")
    tensors = [x, w, combination] + ([] if b is None else [b])
    if is_grad_enabled() and any(t.requires_grad for t in tensors):
        return conv2d(conv2d(x, w, None, stride, padding, dilation), combination, b)
    stride, padding, dilation = _geometry(x, w, stride, padding, dilation, 1)
    return Conv2dPointwise(stride, padding, dilation)(*tensors)


class Conv2dPointwise(Conv2d):
    """conv2d_pointwise's pass without a graph, as an op so that function hooks (profilers, op counts)
    see it; conv2d_pointwise records the two convolutions instead whenever a gradient is wanted."""

    def __init__(self, stride, padding, dilation):
        super().__init__(stride, padding, dilation, 1)

    def forward(self, x, w, combination, b=None):
        n, m = combination.shape[:2]
        return self._forward_im2col(x, w, b, combination.reshape(n, m))

    def backward(self, gy):
        raise RuntimeError("Conv2dPointwise runs only without a graph (conv2d_pointwise records two convolutions)")


def _geometry(x, w, stride, padding, dilation, groups):
    """(stride, padding, dilation) as pairs after checking that w fits x; ValueError naming what does not."""
    stride, padding = pair(stride, "conv2d stride"), pair(padding, "conv2d padding")
    dilation = pair(dilation, "conv2d dilation")
    if x.ndim != 4:
        raise ValueError(f"conv2d: input must be (batch, channels, height, width), got shape {x.shape}")
    if w.ndim != 4:
        raise ValueError(f"conv2d: weight must be (out, in/groups, kh, kw), got shape {w.shape}")
    if not isinstance(groups, int) or groups < 1 or x.shape[1] % groups or w.shape[0] % groups:
        raise ValueError(f"conv2d: groups={groups} must divide in channels {x.shape[1]} "
                         f"and out channels {w.shape[0]}")
    if x.shape[1] != w.shape[1] * groups:
        raise ValueError(f"conv2d: input has {x.shape[1]} channels, weight expects "
                         f"{w.shape[1] * groups} (weight shape {w.shape}, groups {groups})")
    if min(stride) < 1 or min(dilation) < 1 or min(padding) < 0:
        raise ValueError(f"conv2d: stride {stride} and dilation {dilation} must be >= 1, "
                         f"padding {padding} >= 0")
    oh = conv_output_size(x.shape[2], w.shape[2], stride[0], padding[0], dilation[0])
    ow = conv_output_size(x.shape[3], w.shape[3], stride[1], padding[1], dilation[1])
    if oh < 1 or ow < 1:
        raise ValueError(f"conv2d: kernel {w.shape[2:]} (dilation {dilation}) does not fit the "
                         f"padded input {x.shape[2:]} + 2*{padding}")
    return stride, padding, dilation
