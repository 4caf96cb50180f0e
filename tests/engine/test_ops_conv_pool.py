"""conv2d, max_pool2d and avg_pool2d against direct-loop references, and their gradient checks."""
import numpy as np
import pytest

import engine
import engine.ops as F
from engine.ops.conv import _with_bias_row
from engine.kernels import im2col as kernels
from tests.engine._helpers import leaf, check, distinct


@pytest.fixture(params=sorted({"numpy", "numba"} & set(kernels.implementations())))
def kernel(request, monkeypatch):
    """Run the test once with the NumPy kernels (im2col/col2im, max pooling) and once with the
    Numba ones (when installed)."""
    from engine.ops import pool
    monkeypatch.setattr(kernels, "PREFERRED", {"im2col": request.param, "col2im": request.param})
    monkeypatch.setattr(pool, "PREFERRED_MAX_POOL", request.param)
    return request.param


@pytest.fixture(params=["one product", "per image"])
def forward_product(request, monkeypatch):
    """Both strategies of a groups=1 convolution: one (N, K) @ (K, B*P) product for the forward and
    the weight gradient, or one per image."""
    from engine.ops import conv
    monkeypatch.setattr(conv, "ONE_PRODUCT_MIN_K", 1 if request.param == "one product" else 10 ** 9)
    return request.param


def loop_conv2d(x, w, b, stride, padding, dilation, groups):
    """Cross-correlation written as the textbook sum over batch, out channel, position and tap."""
    bsz, c, h, wd = x.shape
    n, cg, kh, kw = w.shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    xp = np.zeros((bsz, c, h + 2 * ph, wd + 2 * pw))
    xp[:, :, ph:ph + h, pw:pw + wd] = x
    oh = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    ow = (wd + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    out = np.zeros((bsz, n, oh, ow))
    per_group = n // groups
    for bi in range(bsz):
        for o in range(n):
            g = o // per_group
            for i in range(oh):
                for j in range(ow):
                    total = 0.0 if b is None else b[o]
                    for ci in range(cg):
                        for u in range(kh):
                            for v in range(kw):
                                total += w[o, ci, u, v] * xp[bi, g * cg + ci, i * sh + u * dh, j * sw + v * dw]
                    out[bi, o, i, j] = total
    return out


CONV_CASES = [
    # x shape, w shape, stride, padding, dilation, groups, bias
    ((2, 1, 5, 5), (2, 1, 3, 3), 1, 0, 1, 1, True),
    ((1, 2, 6, 5), (3, 2, 2, 3), (2, 1), (1, 0), 1, 1, False),
    ((1, 2, 7, 7), (2, 2, 3, 3), 2, 1, 2, 1, True),
    ((2, 4, 4, 4), (4, 2, 3, 3), 1, 1, 1, 2, True),
    ((1, 4, 5, 5), (4, 1, 2, 2), 1, 0, (1, 2), 4, False),   # depthwise, anisotropic dilation
    ((1, 1, 1, 1), (1, 1, 1, 1), 1, 0, 1, 1, True),          # size-1 everything
    ((1, 3, 3, 3), (2, 3, 1, 1), 1, 0, 1, 1, True),          # 1x1 convolution
]


def _pair(v):
    return (v, v) if isinstance(v, int) else v


@pytest.mark.parametrize("case", CONV_CASES, ids=str)
def test_conv2d_matches_loop_reference_and_gradcheck(case, kernel, forward_product, rng):
    xs, ws, stride, padding, dilation, groups, bias = case
    x, w = rng.standard_normal(xs), rng.standard_normal(ws)
    b = rng.standard_normal(ws[0]) if bias else None
    kwargs = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    y = F.conv2d(leaf(x), leaf(w), None if b is None else leaf(b), **kwargs)
    expected = loop_conv2d(x, w, b, _pair(stride), _pair(padding), _pair(dilation), groups)
    np.testing.assert_allclose(y.data, expected, rtol=1e-10, atol=1e-12)
    if bias:
        assert check(lambda *t: F.conv2d(*t, **kwargs), x, w, b)
    else:
        assert check(lambda *t: F.conv2d(*t, **kwargs), x, w)


def test_conv2d_gradient_for_input_only(rng):
    x, w = leaf(rng.standard_normal((1, 2, 4, 4))), leaf(rng.standard_normal((3, 2, 3, 3)), requires_grad=False)
    F.conv2d(x, w, padding=1).sum().backward()
    assert x.grad.shape == x.shape and w.grad is None


@pytest.mark.parametrize("batch", [3, 1])
@pytest.mark.parametrize("frozen", ["weight", "bias"])
def test_conv2d_bias_and_weight_gradients_each_alone_match_both_together(frozen, batch, forward_product, rng):
    """At batch 3 (48 positions a map, 18 weights a filter) the bias rides in the product as a row of
    ones and its gradient comes off the weight gradient's product when both are wanted, on its own
    when the weight is frozen; at batch 1 (16 positions) it is added after the product instead."""
    x, w, b = rng.standard_normal((batch, 2, 6, 6)), rng.standard_normal((4, 2, 3, 3)), rng.standard_normal(4)
    r = rng.standard_normal((batch, 4, 4, 4))
    both = [leaf(x), leaf(w), leaf(b)]
    y = F.conv2d(*both)
    np.testing.assert_allclose(y.data, loop_conv2d(x, w, b, (1, 1), (0, 0), (1, 1), 1), rtol=1e-12, atol=1e-12)
    assert (y.creator.cols.shape[0] == 19) == (batch == 3)     # the ones row under the 18 patch rows
    (y * leaf(r, requires_grad=False)).sum().backward()
    alone = [leaf(x), leaf(w, requires_grad=frozen != "weight"), leaf(b, requires_grad=frozen != "bias")]
    (F.conv2d(*alone) * leaf(r, requires_grad=False)).sum().backward()
    np.testing.assert_allclose(both[2].grad, r.sum(axis=(0, 2, 3)), rtol=1e-12)
    for whole, single in zip(both, alone):
        if single.requires_grad:
            np.testing.assert_allclose(single.grad, whole.grad, rtol=1e-12, atol=1e-12)
        else:
            assert single.grad is None


def test_conv2d_and_pools_keep_float32(kernel, rng):
    x = engine.Tensor(rng.standard_normal((2, 3, 5, 5)).astype(np.float32), requires_grad=True)
    w = engine.Tensor(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), requires_grad=True)
    y = F.conv2d(x, w, padding=1)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y.data, loop_conv2d(x.data, w.data, None, (1, 1), (1, 1), (1, 1), 1),
                               rtol=1e-4, atol=1e-4)
    (F.max_pool2d(y, 2, 1, 1).sum() + F.avg_pool2d(y, 3, 2, 1).sum()).backward()
    assert x.grad.dtype == np.float32 and w.grad.dtype == np.float32
    # the same gradients in float64 agree to float32 precision
    x64, w64 = leaf(x.data), leaf(w.data)
    y64 = F.conv2d(x64, w64, padding=1)
    (F.max_pool2d(y64, 2, 1, 1).sum() + F.avg_pool2d(y64, 3, 2, 1).sum()).backward()
    np.testing.assert_allclose(w.grad, w64.grad, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(x.grad, x64.grad, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("call,match", [
    (lambda: F.conv2d(leaf(np.ones((2, 3, 4))), leaf(np.ones((1, 3, 2, 2)))),
     r"conv2d: input must be.*\(2, 3, 4\)"),
    (lambda: F.conv2d(leaf(np.ones((1, 3, 4, 4))), leaf(np.ones((1, 2, 2, 2)))), "input has 3 channels"),
    (lambda: F.conv2d(leaf(np.ones((1, 3, 4, 4))), leaf(np.ones((2, 1, 2, 2))), groups=2), "groups=2"),
    (lambda: F.conv2d(leaf(np.ones((1, 1, 2, 2))), leaf(np.ones((1, 1, 3, 3)))), "does not fit"),
    (lambda: F.conv2d(leaf(np.ones((1, 1, 4, 4))), leaf(np.ones((2, 1, 3, 3))), leaf(np.ones(3))), "bias"),
    (lambda: F.conv2d(leaf(np.ones((1, 1, 4, 4))), leaf(np.ones((1, 1, 3, 3))), stride=0), "stride"),
])
def test_conv2d_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def loop_pool(x, k, stride, padding, kind):
    """Max or average over each window; padding is -inf for max and counted as zeros for average."""
    bsz, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw) = k, stride, padding
    fill = -np.inf if kind == "max" else 0.0
    xp = np.full((bsz, c, h + 2 * ph, w + 2 * pw), fill)
    xp[:, :, ph:ph + h, pw:pw + w] = x
    oh, ow = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    out = np.zeros((bsz, c, oh, ow))
    for i in range(oh):
        for j in range(ow):
            window = xp[:, :, i * sh:i * sh + kh, j * sw:j * sw + kw]
            out[:, :, i, j] = window.max(axis=(2, 3)) if kind == "max" else window.mean(axis=(2, 3))
    return out


POOL_CASES = [
    # x shape, kernel, stride, padding
    ((2, 2, 4, 4), 2, None, 0),
    ((1, 1, 5, 5), 3, 1, 0),          # overlapping windows
    ((1, 2, 5, 4), (3, 2), (2, 1), 1),  # padding, anisotropic
    ((1, 1, 6, 6), 3, 2, 1),          # overlapping + padding
    ((1, 1, 1, 1), 1, None, 0),
    ((2, 3, 5, 7), 2, None, 0),        # 2x2 stride 2 (the Numba max-pool kernel), odd sizes
    ((1, 2, 4, 5), 2, 2, 1),           # 2x2 stride 2 with padding
]


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("case", POOL_CASES, ids=str)
def test_pooling_matches_loop_reference_and_gradcheck(kind, case, kernel, rng):
    xs, k, stride, padding = case
    x = distinct(rng, xs, gap=0.05)  # no ties inside any window
    op = F.max_pool2d if kind == "max" else F.avg_pool2d
    y = op(leaf(x), k, stride, padding)
    kp, pp = _pair(k), _pair(padding)
    sp = kp if stride is None else _pair(stride)
    np.testing.assert_allclose(y.data, loop_pool(x, kp, sp, pp, kind), rtol=1e-12)
    assert check(lambda t: op(t, k, stride, padding), x)


def test_max_pool_gradient_goes_to_the_maximum(kernel):
    x = leaf([[[[1.0, 5.0], [2.0, 3.0]]]])
    F.max_pool2d(x, 2).sum().backward()
    np.testing.assert_array_equal(x.grad, [[[[0, 1], [0, 0]]]])
    # ties: the first tap in row-major order takes the gradient, as argmax does
    x = leaf([[[[4.0, 4.0, 0.0], [4.0, 4.0, 0.0], [0.0, 0.0, 0.0]]]])
    F.max_pool2d(x, 2, stride=1).sum().backward()
    np.testing.assert_array_equal(x.grad, [[[[1, 1, 0], [1, 1, 0], [0, 0, 0]]]])


def test_max_pool_2x2_numba_and_numpy_paths_agree_with_ties_and_nan(monkeypatch, rng):
    from engine.ops import pool
    x = rng.integers(0, 3, (3, 2, 6, 6)).astype(np.float32)   # many ties
    x[0, 0, 0, 1] = np.nan
    results = []
    for path in sorted({"numpy", "numba"} & set(kernels.implementations())):
        monkeypatch.setattr(pool, "PREFERRED_MAX_POOL", path)
        t = engine.Tensor(x, requires_grad=True)
        y = F.max_pool2d(t, 2)
        F.sum(y * engine.Tensor(np.arange(y.size, dtype=np.float32).reshape(y.shape))).backward()
        results.append((y.data, t.grad))
    assert np.isnan(results[0][0][0, 0, 0, 0]) and not np.isnan(results[0][0][0, 0, 0, 1])
    for y, g in results[1:]:
        np.testing.assert_array_equal(y, results[0][0])
        # the NumPy path drops a NaN window's gradient (no tap equals NaN); compare the others
        np.testing.assert_array_equal(g[:, :, 2:], results[0][1][:, :, 2:])
        np.testing.assert_array_equal(g[1:], results[0][1][1:])


@pytest.mark.parametrize("shape", [(3, 2, 6, 6), (2, 3, 7, 9), (1, 1, 2, 2)])
def test_max_pool_2x2_backward_kernel_puts_each_gradient_at_its_tap(shape, rng):
    """The widened-row backward kernel against a plain loop: odd sizes leave zeros in the last row and
    column, and a NaN gradient stays at its own tap."""
    pool_numba = pytest.importorskip("engine.kernels.pool_numba", reason="numba (the jit extra) is not installed")
    oh, ow = shape[2] // 2, shape[3] // 2
    tap = rng.integers(0, 4, (shape[0], shape[1], oh, ow)).astype(np.uint8)
    gy = rng.standard_normal(tap.shape).astype(np.float32)
    gy[0, 0, 0, 0] = np.nan
    expected = np.zeros(shape, np.float32)
    for index in np.ndindex(tap.shape):
        n, c, p, q = index
        row, col = divmod(int(tap[index]), 2)
        expected[n, c, 2 * p + row, 2 * q + col] = gy[index]
    gx = np.full(shape, 7.0, np.float32)     # every entry must be written, the zeros too
    pool_numba.max_pool_2x2_backward(gy, tap, gx)
    np.testing.assert_array_equal(gx, expected)
    assert np.isnan(gx).sum() == 1


@pytest.mark.parametrize("shape", [(3, 2, 6, 6), (2, 3, 7, 9)])
def test_max_pool_2x2_tree_kernel_matches_the_exact_loop(shape, rng):
    """The vectorized tree kernel against the tap-by-tap loop: ties (first tap wins), +-inf, odd sizes,
    and a NaN in any of the four taps is flagged (the exact loop then answers)."""
    pool_numba = pytest.importorskip("engine.kernels.pool_numba", reason="numba (the jit extra) is not installed")
    x = rng.integers(-2, 3, shape).astype(np.float32)
    x[0, 0, 0, 0], x[-1, -1, 1, 1] = np.inf, -np.inf
    oh, ow = shape[2] // 2, shape[3] // 2
    y, tap, has_nan = pool_numba._max_pool_2x2_tree(x, oh, ow)
    y_exact, tap_exact = pool_numba._max_pool_2x2_exact(x, oh, ow)
    assert not has_nan
    np.testing.assert_array_equal(y, y_exact)
    np.testing.assert_array_equal(tap, tap_exact)
    for row, col in ((0, 0), (0, 1), (1, 0), (1, 1)):
        bad = x.copy()
        bad[1, 1, 2 + row, 2 + col] = np.nan
        assert pool_numba._max_pool_2x2_tree(bad, oh, ow)[2]
        y_nan, tap_nan = pool_numba.max_pool_2x2_forward(bad, oh, ow)
        assert np.isnan(y_nan[1, 1, 1, 1]) and tap_nan[1, 1, 1, 1] == 2 * row + col


@pytest.mark.parametrize("op", [F.max_pool2d, F.avg_pool2d])
def test_pool_bad_input(op):
    name = op.__name__
    with pytest.raises(ValueError, match=f"{name}: input must be"):
        op(leaf(np.ones((2, 4, 4))), 2)
    with pytest.raises(ValueError, match=f"{name}.*padding"):
        op(leaf(np.ones((1, 1, 4, 4))), 2, padding=2)
    with pytest.raises(ValueError, match=f"{name}.*does not fit"):
        op(leaf(np.ones((1, 1, 2, 2))), 3)


@pytest.mark.parametrize("bias", [True, False])
def test_pointwise_conv_without_a_graph_matches_the_recorded_path(bias, rng):
    """The no_grad 1x1 path (one product per image) gives what the im2col path gives with a graph."""
    x = rng.standard_normal((3, 5, 4, 6)).astype(np.float32)
    w = rng.standard_normal((7, 5, 1, 1)).astype(np.float32)
    b = rng.standard_normal(7).astype(np.float32) if bias else None
    recorded = F.conv2d(engine.Tensor(x, requires_grad=True), w, b)
    with engine.no_grad():
        plain = F.conv2d(x, w, b)
    assert plain.shape == recorded.shape == (3, 7, 4, 6)
    np.testing.assert_allclose(plain.data, recorded.data, rtol=1e-5, atol=1e-6)
    reference = np.einsum("nc,bchw->bnhw", w[:, :, 0, 0], x) + (0 if b is None else b[None, :, None, None])
    np.testing.assert_allclose(plain.data, reference, rtol=1e-5, atol=1e-5)


def _chunked_case(case, images_per_chunk, monkeypatch, rng):
    """(x, w, stride, padding, dilation, bias) of a CONV_CASES geometry at batch 5 (float64), with
    convolutions without a graph chunked as on one thread, `images_per_chunk` images at a time."""
    from engine.ops import conv
    xs, ws, stride, padding, dilation, _, bias = case
    xs = (5,) + xs[1:]
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
    oh = (xs[2] + 2 * ph - dh * (ws[2] - 1) - 1) // sh + 1
    ow = (xs[3] + 2 * pw - dw * (ws[3] - 1) - 1) // sw + 1
    monkeypatch.setattr(conv, "_one_thread", lambda: True)
    # one convolution and two in one pass without a graph, and backward's input gradient
    for budget in ("INFERENCE_CHUNK_BYTES", "POINTWISE_CHUNK_BYTES", "GRADIENT_CHUNK_BYTES"):
        monkeypatch.setattr(conv, budget, images_per_chunk * ws[1] * ws[2] * ws[3] * oh * ow * 8)
    return rng.standard_normal(xs), rng.standard_normal(ws), stride, padding, dilation, bias


@pytest.mark.parametrize("images_per_chunk", [1, 2, 3, 5])
@pytest.mark.parametrize("case", [c for c in CONV_CASES if c[5] == 1], ids=str)
def test_conv2d_without_a_graph_runs_in_chunks_and_matches_the_reference(case, images_per_chunk, kernel,
                                                                          forward_product, monkeypatch, rng):
    """No graph: the batch goes through in chunks of images (the last one short), each chunk's patches,
    product and bias written into its images; the result is the textbook convolution's."""
    x, w, stride, padding, dilation, bias = _chunked_case(case, images_per_chunk, monkeypatch, rng)
    b = rng.standard_normal(w.shape[0]) if bias else None
    with engine.no_grad():
        y = F.conv2d(x, w, b, stride=stride, padding=padding, dilation=dilation)
    expected = loop_conv2d(x, w, b, _pair(stride), _pair(padding), _pair(dilation), 1)
    assert y.shape == expected.shape
    np.testing.assert_allclose(y.data, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("images_per_chunk", [1, 2, 3, 5])
@pytest.mark.parametrize("case", [c for c in CONV_CASES if c[5] == 1], ids=str)
def test_conv2d_input_gradient_is_formed_in_chunks_and_passes_the_gradient_check(case, images_per_chunk, kernel,
                                                                                 monkeypatch, rng):
    """Backward sums each chunk's patch gradients into its images (the last chunk short, padding cropped
    after): the input's gradient passes the float64 gradient check."""
    from engine.ops import conv
    x, w, stride, padding, dilation, _ = _chunked_case(case, images_per_chunk, monkeypatch, rng)
    chunks = []
    summed = conv.col2im_into
    monkeypatch.setattr(conv, "col2im_into", lambda cols, *rest: chunks.append(len(cols)) or summed(cols, *rest))
    kwargs = dict(stride=stride, padding=padding, dilation=dilation)
    assert check(lambda t: F.conv2d(t, leaf(w, requires_grad=False), **kwargs), x)
    full, last = divmod(len(x), images_per_chunk)
    assert chunks[:full + bool(last)] == [images_per_chunk] * full + ([last] if last else [])


@pytest.mark.parametrize("images_per_chunk", [1, 2, 5])
@pytest.mark.parametrize("case", [c for c in CONV_CASES if c[5] == 1], ids=str)
def test_conv2d_pointwise_equals_the_two_convolutions(case, images_per_chunk, forward_product, monkeypatch, rng):
    """M filters then a 1x1 mix into N: without a graph one chunked pass, with one the two convolutions
    (and their gradients); both give the textbook result."""
    x, w, stride, padding, dilation, bias = _chunked_case(case, images_per_chunk, monkeypatch, rng)
    mix = rng.standard_normal((3, w.shape[0], 1, 1))
    b = rng.standard_normal(3) if bias else None
    geometry = dict(stride=stride, padding=padding, dilation=dilation)
    maps = loop_conv2d(x, w, None, _pair(stride), _pair(padding), _pair(dilation), 1)
    expected = loop_conv2d(maps, mix, b, (1, 1), (0, 0), (1, 1), 1)
    with engine.no_grad():
        plain = F.conv2d_pointwise(x, w, mix, b, **geometry)
    np.testing.assert_allclose(plain.data, expected, rtol=1e-10, atol=1e-12)
    recorded = F.conv2d_pointwise(leaf(x), leaf(w), leaf(mix), None if b is None else leaf(b), **geometry)
    np.testing.assert_allclose(recorded.data, expected, rtol=1e-10, atol=1e-12)
    args = (x, w, mix) if b is None else (x, w, mix, b)
    assert check(lambda *t: F.conv2d_pointwise(*t, **geometry), *args)


@pytest.mark.parametrize("one_product", [False, True], ids=["per-image", "one-product"])
@pytest.mark.parametrize("batch", [1, 4, 5])
def test_conv2d_pointwise_bias_with_and_without_the_ones_row(batch, one_product, monkeypatch, rng):
    """Without a graph, on the per-image path, the bias goes in through the product (one more filter
    and combination column) when a map has more positions over the batch than a filter has weights
    (batch 4 and 5: 36 and 45 > 27), and is added after the mix otherwise (batch 1: 9); on the
    one-product path it rides in the mix, a row of ones under each chunk's maps (here two images a
    chunk; with batch 5 the last chunk is short, its ones row written again). All give the textbook
    result."""
    from engine.ops import conv
    folded = []
    monkeypatch.setattr(conv, "_with_bias_row", lambda *a: folded.append(1) or _with_bias_row(*a))
    monkeypatch.setattr(conv, "ONE_PRODUCT_MIN_K", 0 if one_product else 10 ** 9)
    monkeypatch.setattr(conv, "_one_thread", lambda: True)
    monkeypatch.setattr(conv, "POINTWISE_CHUNK_BYTES", 2 * 27 * 9 * 8)
    x, w = rng.standard_normal((batch, 3, 5, 5)), rng.standard_normal((4, 3, 3, 3))
    mix, b = rng.standard_normal((2, 4, 1, 1)), rng.standard_normal(2)
    expected = loop_conv2d(loop_conv2d(x, w, None, (1, 1), (0, 0), (1, 1), 1), mix, b, (1, 1), (0, 0), (1, 1), 1)
    with engine.no_grad():
        plain = F.conv2d_pointwise(x, w, mix, b)
    np.testing.assert_allclose(plain.data, expected, rtol=1e-10, atol=1e-12)
    assert bool(folded) == (batch > 1 and not one_product)


def test_conv2d_pointwise_bad_input_names_the_shapes():
    x, w = np.ones((1, 2, 5, 5)), np.ones((3, 2, 3, 3))
    with pytest.raises(ValueError, match=r"combination must be \(out, 3, 1, 1\).*got \(4, 2, 1, 1\)"):
        F.conv2d_pointwise(x, w, np.ones((4, 2, 1, 1)))
    with pytest.raises(ValueError, match=r"bias must have shape \(4,\), got \(3,\)"):
        F.conv2d_pointwise(x, w, np.ones((4, 3, 1, 1)), np.ones(3))
    with pytest.raises(ValueError, match="does not fit"):
        F.conv2d_pointwise(np.ones((1, 2, 2, 2)), w, np.ones((4, 3, 1, 1)))


def test_convolution_without_a_graph_chunks_only_on_one_thread(monkeypatch, rng):
    """Chunks split badly over several threads, so the batch is chunked only when the kernels run on one."""
    from engine.ops import conv
    numba = pytest.importorskip("numba", reason="the thread count is read from Numba's pool")
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        assert conv._one_thread() is True
        if numba.config.NUMBA_NUM_THREADS > 1:
            numba.set_num_threads(2)
            assert conv._one_thread() is False
    finally:
        numba.set_num_threads(before)
    seen = []
    real = conv.channel_major_filler

    def spying(x, *args):           # records the images of every chunk the pass fills patches for
        fill = real(x, *args)

        def spy(part, out):
            seen.append(part.shape[0])
            fill(part, out)
        spy.release = fill.release
        return spy
    monkeypatch.setattr(conv, "channel_major_filler", spying)
    monkeypatch.setattr(conv, "INFERENCE_CHUNK_BYTES", 2 * 2 * 9 * 16 * 8)      # two images' patches
    x, w = rng.standard_normal((5, 2, 6, 6)), rng.standard_normal((3, 2, 3, 3))
    for one, sizes in ((True, [2, 2, 1]), (False, [5])):
        seen.clear()
        monkeypatch.setattr(conv, "_one_thread", lambda one=one: one)
        with engine.no_grad():
            y = F.conv2d(x, w)
        assert seen == sizes
        np.testing.assert_allclose(y.data, loop_conv2d(x, w, None, (1, 1), (0, 0), (1, 1), 1), rtol=1e-10, atol=1e-12)
    # the two-product pass (conv2d_pointwise) chunks by its own budget
    monkeypatch.setattr(conv, "_one_thread", lambda: True)
    monkeypatch.setattr(conv, "POINTWISE_CHUNK_BYTES", 4 * 2 * 9 * 16 * 8)    # four images' patches
    mix = rng.standard_normal((4, 3, 1, 1))
    seen.clear()
    with engine.no_grad():
        y = F.conv2d_pointwise(x, w, mix)
    assert seen == [4, 1]
    expected = loop_conv2d(loop_conv2d(x, w, None, (1, 1), (0, 0), (1, 1), 1), mix, None, (1, 1), (0, 0), (1, 1), 1)
    np.testing.assert_allclose(y.data, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("shape", [(3, 2, 6, 6), (2, 3, 7, 9), (1, 1, 2, 2)])
def test_max_pool_2x2_values_kernel_matches_the_maxima_of_the_tap_kernel(shape, rng):
    """The maxima alone (no graph) against the exact loop's: ties, +-inf, odd sizes, and a NaN in
    any of the four taps wins its window."""
    pool_numba = pytest.importorskip("engine.kernels.pool_numba", reason="numba (the jit extra) is not installed")
    x = rng.integers(-2, 3, shape).astype(np.float32)
    x[0, 0, 0, 0], x[-1, -1, 1, 1] = np.inf, -np.inf
    oh, ow = shape[2] // 2, shape[3] // 2
    y, has_nan = pool_numba._max_pool_2x2_values(x, oh, ow)
    assert not has_nan
    np.testing.assert_array_equal(y, pool_numba._max_pool_2x2_exact(x, oh, ow)[0])
    for row, col in ((0, 0), (0, 1), (1, 0), (1, 1)):
        bad = x.copy()
        bad[0, 0, row, col] = np.nan
        assert pool_numba._max_pool_2x2_values(bad, oh, ow)[1]
        values = pool_numba.max_pool_2x2_values(bad, oh, ow)
        np.testing.assert_array_equal(values, pool_numba._max_pool_2x2_exact(bad, oh, ow)[0])
        assert np.isnan(values[0, 0, 0, 0]) and np.isnan(values).sum() == 1


def test_max_pool_without_a_graph_keeps_no_taps_and_gives_the_graphs_maxima(rng):
    pytest.importorskip("engine.kernels.pool_numba", reason="numba (the jit extra) is not installed")
    from engine.ops import pool
    x = rng.standard_normal((2, 3, 8, 6)).astype(np.float32)
    with_graph = F.max_pool2d(engine.Tensor(x, requires_grad=True), 2)
    op = pool.MaxPool2d((2, 2), (2, 2), (0, 0))
    with engine.no_grad():
        without = op(engine.Tensor(x))
    np.testing.assert_array_equal(without.data, with_graph.data)
    assert not hasattr(op, "tap") and with_graph.creator.tap.shape == with_graph.shape
