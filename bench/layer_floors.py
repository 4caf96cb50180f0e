"""What a converted layer's time could fall to: its bare products, its patch copy, and rate floors.

Used by bench/layer_times.py. Every figure is a median of timed calls on the layer's own input (float32,
one process): the im2col patch copy a convolution pays before its product, the bare BLAS products of
the dense layer and of its two-product form, and the rate floor of a converted Dense or Conv2d (the work
both forms pay plus the product FLOPs at the dense product's rate, or the compressed products timed
at their own shapes, chunked as the pass without a graph forms them).
"""
import statistics
import time


def _middle_width(module):
    """Rows of the first of the two products a converted layer makes: BasisConv's M, a low-rank rank."""
    return getattr(module, "num_basis", None) or getattr(module, "rank", None)


def patch_copy_seconds(conv, x, repeats=15):
    """Median seconds of the im2col patch copy that `conv` (a dense Conv2d) makes of x, into a reused buffer."""
    import numpy as np
    from engine.kernels.im2col import channel_major_shape, im2col_channel_major
    kh, kw = conv.kernel_size
    out = np.empty(channel_major_shape(x.shape, kh, kw, conv.stride, conv.padding, conv.dilation), x.dtype)
    return _median_seconds(lambda: im2col_channel_major(x, kh, kw, conv.stride, conv.padding, conv.dilation,
                                                        out=out), repeats)


def bare_products(dense_layer, compressed_layer, x, repeats=15):
    """(seconds, seconds) of the bare BLAS products alone, the dense layer's one against the converted
    layer's two (float32, the layer's own input; for a convolution on its whole-batch im2col patch
    matrix, made once beforehand). For a dense layer, the floor any engine on this BLAS meets; for a
    convolution no longer one, since the pass without a graph forms and multiplies patches a few images
    at a time while they are in cache (engine/ops/conv.py), faster than this. None when the layer is neither."""
    import numpy as np
    from bench.timing import paired_median_seconds
    from engine.kernels.im2col import channel_major_shape, im2col_channel_major
    middle = _middle_width(compressed_layer)
    rng = np.random.default_rng(0)
    if type(dense_layer).__name__ == "Conv2d":
        kh, kw = dense_layer.kernel_size
        cols = np.empty(channel_major_shape(x.shape, kh, kw, dense_layer.stride, dense_layer.padding,
                                            dense_layer.dilation), x.dtype)
        im2col_channel_major(x, kh, kw, dense_layer.stride, dense_layer.padding, dense_layer.dilation, out=cols)
        k = x.shape[1] * kh * kw
        rhs, n = cols.reshape(k, -1), dense_layer.out_ch
        w = rng.standard_normal((n, k)).astype(x.dtype)
        first = rng.standard_normal((middle, k)).astype(x.dtype)
        second = rng.standard_normal((n, middle)).astype(x.dtype)
        return paired_median_seconds([lambda: w @ rhs, lambda: second @ (first @ rhs)], repeats, 2, 0.02)
    if type(dense_layer).__name__ == "Dense":
        lhs = x.reshape(x.shape[0], -1)
        w = rng.standard_normal((lhs.shape[1], dense_layer.n_out)).astype(x.dtype)
        first = rng.standard_normal((lhs.shape[1], middle)).astype(x.dtype)
        second = rng.standard_normal((middle, dense_layer.n_out)).astype(x.dtype)
        return paired_median_seconds([lambda: lhs @ w, lambda: (lhs @ first) @ second], repeats, 2, 0.02)
    return None


def _median_seconds(fn, repeats):
    samples = []
    for _ in range(repeats + 2):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples[2:])


def rate_floor(dense_layer, compressed_layer, x, repeats=15):
    """The least time the converted layer could take on x in the pass without a graph: the work both forms
    pay (a convolution's im2col patches, formed chunk by chunk as engine/ops/conv.py forms them, and the
    bias), plus the converted form's product FLOPs at the rate the dense form's own product reaches on
    the same chunks (near this core's peak, and above any skinny product's). Beside it, the converted
    form's least time with its two products at the rate this BLAS gives their own shapes, formed as the
    pass forms them (a chunk's M maps in one product when a filter has ONE_PRODUCT_MIN_K weights or
    more, else image by image; then the mix into N per image), the best over the chunks of the dense
    pass and of the two-product pass (POINTWISE_CHUNK_BYTES), a quarter to four times the first, and the
    whole batch (`seconds_own_rate`, patches and bias included, and the chunk
    that gave it). A dict of the parts, or None when the layer is neither a Conv2d nor a Dense."""
    import numpy as np
    from engine.ops.conv import POINTWISE_CHUNK_BYTES, inference_chunk_images
    middle, kind = _middle_width(compressed_layer), type(dense_layer).__name__
    if kind == "Conv2d":
        kh, kw = dense_layer.kernel_size
        image_bytes = x.shape[1] * kh * kw * int(np.prod(_conv_output(dense_layer, x.shape))) * x.dtype.itemsize
        chunk = inference_chunk_images(x.shape[0], image_bytes, recording=False)
        own = inference_chunk_images(x.shape[0], image_bytes, recording=False, budget=POINTWISE_CHUNK_BYTES)
        sizes = sorted({max(1, min(x.shape[0], c)) for c in (own, chunk // 4, chunk // 2, 2 * chunk, 4 * chunk,
                                                              x.shape[0])} - {chunk})
        parts = _conv_chunk_parts(dense_layer, middle, x, chunk, repeats)
        candidates = [(_own_total(parts), chunk)] + [
            (_own_total(_conv_chunk_parts(dense_layer, middle, x, size, repeats, dense=False)), size) for size in sizes]
        parts["seconds_own_rate"], parts["own_rate_chunk"] = min(candidates)
        return parts
    if kind == "Dense":
        return _dense_parts(dense_layer, middle, x, repeats)
    return None


def _own_total(parts):
    """The converted layer's time with its own products: patches and bias, which both forms pay, and its products."""
    return parts["seconds_patches"] + parts["seconds_bias"] + parts["seconds_own_products"]


def _conv_output(conv, x_shape):
    """(OH, OW) of a Conv2d on an input of x_shape."""
    from engine.kernels.im2col import channel_major_shape
    return channel_major_shape((1,) + tuple(x_shape[1:]), *conv.kernel_size, conv.stride, conv.padding,
                               conv.dilation)[-2:]


def _conv_chunk_parts(conv, middle, x, chunk, repeats, dense=True):
    """rate_floor's parts for a Conv2d with `chunk` images a chunk (whole chunks timed, scaled to the batch);
    dense=False leaves the dense product untimed (its keys out)."""
    import numpy as np
    from engine.kernels.im2col import channel_major_shape, im2col_channel_major
    from engine.ops.conv import ONE_PRODUCT_MIN_K
    rng = np.random.default_rng(0)
    kh, kw = conv.kernel_size
    geometry = (conv.stride, conv.padding, conv.dilation)
    one = channel_major_shape((1,) + x.shape[1:], kh, kw, *geometry)
    k, p, batch, n = x.shape[1] * kh * kw, one[-2] * one[-1], x.shape[0], conv.out_ch
    cols = np.empty(one[:3] + (chunk,) + one[4:], x.dtype)
    starts = range(0, batch - chunk + 1, chunk)        # whole chunks: the product's shape stays one

    def patches():
        for start in starts:
            im2col_channel_major(x[start:start + chunk], kh, kw, *geometry, out=cols)
    patches()
    w, rows = rng.standard_normal((n, k)).astype(x.dtype), cols.reshape(k, chunk * p)
    product, out = np.empty((n, chunk * p), x.dtype), np.zeros((chunk, n, p), x.dtype)
    first, second = rng.standard_normal((middle, k)).astype(x.dtype), rng.standard_normal((n, middle)).astype(x.dtype)
    maps = np.empty((middle, chunk * p), x.dtype)

    def dense_product():
        for _ in starts:
            np.matmul(w, rows, out=product)

    def own_products():
        for _ in starts:
            if k >= ONE_PRODUCT_MIN_K:
                np.matmul(first, rows, out=maps)
                np.matmul(second, maps.reshape(middle, chunk, p).transpose(1, 0, 2), out=out)
            else:
                np.matmul(second, np.matmul(first, rows.reshape(k, chunk, p).transpose(1, 0, 2)), out=out)
    return _parts(x.dtype, n, k, middle, len(starts) * chunk * p, batch / (len(starts) * chunk), out, starts,
                  patches, dense_product if dense else None, own_products, repeats)


def _dense_parts(dense, middle, x, repeats):
    """rate_floor's parts for a Dense layer (one whole-batch product, no patches)."""
    import numpy as np
    rng = np.random.default_rng(0)
    lhs = x.reshape(x.shape[0], -1)
    k, n = lhs.shape[1], dense.n_out
    w, product = rng.standard_normal((k, n)).astype(x.dtype), np.empty((x.shape[0], n), x.dtype)
    first, second = rng.standard_normal((k, middle)).astype(x.dtype), rng.standard_normal((middle, n)).astype(x.dtype)
    mid = np.empty((x.shape[0], middle), x.dtype)
    parts = _parts(x.dtype, n, k, middle, x.shape[0], 1.0, np.zeros((x.shape[0], n, 1), x.dtype), range(1),
                   None, lambda: np.matmul(lhs, w, out=product),
                   lambda: np.matmul(np.matmul(lhs, first, out=mid), second, out=product), repeats)
    parts["seconds_own_rate"] = _own_total(parts)
    return parts


def _parts(dtype, n, k, middle, outputs, scale, out, starts, patches, dense_product, own_products, repeats):
    """The timed parts of a rate floor: `outputs` output positions were timed, `scale` times as many
    make the batch; the bias goes on `out` once per chunk in `starts`, as the pass adds it in cache; without
    a dense_product, its keys are left out."""
    import numpy as np
    bias = np.ones((1, n, 1), dtype)

    def add_bias():
        for _ in starts:
            np.add(out, bias, out=out)
    parts = {"seconds_patches": 0.0 if patches is None else scale * _median_seconds(patches, repeats),
             "seconds_bias": scale * _median_seconds(add_bias, repeats),
             "seconds_own_products": scale * _median_seconds(own_products, repeats)}
    if dense_product is not None:
        dense_flops, compressed_flops = 2 * n * k * outputs, 2 * middle * (k + n) * outputs
        product_seconds = _median_seconds(dense_product, repeats)
        parts.update(seconds_dense_product=scale * product_seconds,
                     seconds_compressed_products=scale * product_seconds * compressed_flops / dense_flops,
                     dense_product_gflops=dense_flops / product_seconds / 1e9)
    return parts


def pass_seconds(x, repeats=15):
    """Median seconds of one pass over an array the size of x: a copy into a reused buffer (read once,
    written once), the least any operation that reads its input and writes its output costs."""
    import numpy as np
    out = np.empty_like(x)
    return _median_seconds(lambda: np.copyto(out, x), repeats)
