"""The buffer pool (engine/buffers.py): reuse, bound, switch, and conv results identical with it on and off."""
import threading

import numpy as np
import pytest

import engine
import engine.ops as F
from engine import buffers, optim
from engine.kernels import im2col as kernels
from engine.ops import conv
from layers import models

DISABLE = buffers.DISABLE_VARIABLE


@pytest.fixture(params=sorted({"numpy", "numba"} & set(kernels.implementations())))
def kernel(request, monkeypatch):
    """Each conv test once with the NumPy im2col/col2im and once with the Numba ones (when installed)."""
    monkeypatch.setattr(kernels, "PREFERRED", {"im2col": request.param, "col2im": request.param})
    return request.param


@pytest.fixture(params=["one product", "per image"])
def forward_product(request, monkeypatch):
    """Both forward strategies of a groups=1 convolution (only the first uses a pooled product)."""
    monkeypatch.setattr(conv, "ONE_PRODUCT_MIN_K", 1 if request.param == "one product" else 10 ** 9)
    return request.param


@pytest.fixture(autouse=True)
def empty_pool(monkeypatch):
    """An empty pool around each test, every array kept and every result lent however small, so the
    small arrays of the tests below go through the pool as large ones do."""
    monkeypatch.setattr(buffers, "LEND_MIN_BYTES", 0)
    monkeypatch.setattr(buffers, "POOL_MIN_BYTES", 0)
    buffers.clear()
    yield
    buffers.clear()


# ---- the pool itself -----------------------------------------------------------------------

def test_take_reuses_what_was_given_back_for_the_same_key_only():
    pool = buffers.BufferPool(1 << 20)
    like = np.zeros(1)
    a = pool.take((4, 5), np.float32, like)
    assert a.shape == (4, 5) and a.dtype == np.float32 and a.flags.c_contiguous
    pool.give_back(a)
    assert pool.held_bytes == a.nbytes
    assert pool.take((4, 5), np.float64, like) is not a
    assert pool.take((5, 4), np.float32, like) is not a
    assert pool.take((4, 5), np.float32, like) is a
    assert pool.held_bytes == 0
    assert pool.take((4, 5), np.float32, like) is not a   # handed out once only


def test_the_bound_is_respected_and_the_least_recent_shapes_go_first():
    pool = buffers.BufferPool(1000)
    like = np.zeros(1)
    arrays = [pool.take((n, 100), np.uint8, like) for n in (1, 2, 3, 4)]   # 100..400 bytes
    for a in arrays:
        pool.give_back(a)
        assert pool.held_bytes <= 1000
    assert pool.held_bytes == 1000   # exactly the bound: nothing evicted
    pool.give_back(pool.take((5, 100), np.uint8, like))   # 1500: the three oldest must go
    assert pool.held_bytes == 900
    assert pool.take((1, 100), np.uint8, like) is not arrays[0]
    assert pool.take((3, 100), np.uint8, like) is not arrays[2]
    assert pool.take((4, 100), np.uint8, like) is arrays[3]


def test_a_shape_taken_back_to_empty_does_not_break_eviction():
    """take() emptied the list of the oldest shape; eviction then reached it (IndexError before the fix)."""
    pool = buffers.BufferPool(max_bytes=3000)
    like = np.empty(1)
    pool.give_back(np.empty(100))                                 # shape (100,) is the oldest
    pool.give_back(np.empty(101))
    assert pool.take((100,), np.float64, like).shape == (100,)    # ... and its list is empty now
    pool.give_back(np.empty(300))                                 # over the bound: evict the oldest
    assert pool.held_bytes <= 3000
    assert pool.take((300,), np.float64, like).shape == (300,)


def test_views_oversized_and_twice_given_arrays_are_not_kept():
    pool = buffers.BufferPool(1000)
    like = np.zeros(1)
    base = pool.take((10, 10), np.uint8, like)
    pool.give_back(base[:5])
    pool.give_back(base.T)
    pool.give_back(np.empty(2000, np.uint8))
    assert pool.held_bytes == 0
    pool.give_back(base)
    pool.give_back(base)
    assert pool.held_bytes == base.nbytes
    assert pool.take((10, 10), np.uint8, like) is base
    assert pool.take((10, 10), np.uint8, like) is not base


@pytest.mark.parametrize("shape, dtype", [((3, 5), np.float32), ((7,), np.float64), ((2, 0, 4), np.int64),
                                          ((127, 33), np.uint8)])
def test_new_arrays_start_a_cache_line_and_only_whole_ones_go_back(shape, dtype):
    for zeroed in (False, True):
        array = buffers.aligned_empty(shape, dtype, zeroed=zeroed)
        assert array.shape == shape and array.dtype == dtype and array.flags.c_contiguous
        assert array.ctypes.data % buffers.ALIGNMENT == 0 or not array.size
        assert not zeroed or not array.any()
        array[...] = 1            # all of it is writable memory of its own
    pool = buffers.BufferPool(1 << 20)
    taken = pool.take(shape, dtype, np.zeros(1))
    assert taken.ctypes.data % buffers.ALIGNMENT == 0 or not taken.size
    for part in (taken[:1], taken.T, taken.reshape(-1)[1:]):
        if part.size < taken.size or not part.flags.c_contiguous:
            pool.give_back(part)
    assert pool.held_bytes == 0
    pool.give_back(taken)
    assert pool.held_bytes == taken.nbytes and pool.take(shape, dtype, np.zeros(1)) is taken


def test_arrays_under_the_size_floor_bypass_the_pool(monkeypatch):
    monkeypatch.setattr(buffers, "POOL_MIN_BYTES", 1024)
    pool = buffers.BufferPool(1 << 20)
    like = np.zeros(1)
    small, large = pool.take((255,), np.float32, like), pool.take((256,), np.float32, like)
    pool.give_back(small)
    assert pool.held_bytes == 0 and pool.take((255,), np.float32, like) is not small
    pool.give_back(large)
    assert pool.held_bytes == 1024 and pool.take((256,), np.float32, like) is large


def test_clear_empties_the_pool():
    pool = buffers.BufferPool(1 << 20)
    pool.give_back(pool.take((8, 8), np.float32, np.zeros(1)))
    assert pool.held_bytes > 0
    pool.clear()
    assert pool.held_bytes == 0


def test_the_switch_turns_the_pool_off(monkeypatch):
    monkeypatch.setenv(DISABLE, "1")
    pool = buffers.BufferPool(1 << 20)
    a = pool.take((3, 3), np.float32, np.zeros(1))
    pool.give_back(a)
    assert pool.held_bytes == 0 and pool.take((3, 3), np.float32, np.zeros(1)) is not a
    monkeypatch.setenv(DISABLE, "maybe")
    with pytest.raises(ValueError, match=DISABLE):
        pool.take((3, 3), np.float32, np.zeros(1))


def _address(array):
    return array.__array_interface__["data"][0]


def test_a_lent_result_goes_back_only_when_it_and_every_view_are_gone():
    pool = buffers.BufferPool()
    like = np.empty(0, np.float32)
    shape = (512, 512)                                    # 1 MiB: large enough to be lent
    result = buffers.lend(shape, np.float32, like, pool=pool)
    assert isinstance(result, np.ndarray) and result.flags.c_contiguous and result.flags.writeable
    address = _address(result)
    view = result.reshape(-1)[5:]
    del result
    assert pool.held_bytes == 0                           # the view still holds it
    other = buffers.lend(shape, np.float32, like, pool=pool)
    assert _address(other) != address                     # a live loan is never lent twice
    del view
    assert pool.held_bytes == 512 * 512 * 4
    again = buffers.lend(shape, np.float32, like, pool=pool)
    assert _address(again) == address and pool.held_bytes == 0
    again[...] = 1.0
    del other
    assert (again == 1.0).all()                           # returning another loan leaves it alone


def test_small_results_and_a_disabled_pool_get_plain_arrays(monkeypatch):
    monkeypatch.setattr(buffers, "LEND_MIN_BYTES", 1 << 20)      # the default the fixture lowers
    pool = buffers.BufferPool()
    like = np.empty(0, np.float32)
    small = buffers.lend((8, 8), np.float32, like, pool=pool)
    assert small.base is None and small.shape == (8, 8)
    monkeypatch.setenv(DISABLE, "1")
    plain = buffers.lend((512, 512), np.float32, like, pool=pool)
    assert plain.base is None
    del plain
    assert pool.held_bytes == 0


def test_threads_never_share_a_buffer():
    pool = buffers.BufferPool(1 << 20)
    like = np.zeros(1)
    clashes = []

    def work(mark):
        for _ in range(300):
            a = pool.take((64,), np.int64, like)
            a[:] = mark
            if not (a == mark).all():
                clashes.append(mark)
            pool.give_back(a)

    threads = [threading.Thread(target=work, args=(m,)) for m in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert clashes == []
    assert pool.held_bytes <= 4 * 64 * 8


# ---- convolution with the pool on and off ----------------------------------------------------

CASES = [  # (x shape, w shape, stride, padding)
    ((3, 2, 9, 8), (4, 2, 3, 3), 1, 1),
    ((1, 8, 7, 7), (5, 8, 3, 3), 2, 1),    # batch 1, K = 72: the one-product path's transpose
    ((2, 3, 6, 6), (2, 3, 2, 2), 1, 0),
]


def _conv_step(x, w, b, stride, padding):
    xt, wt, bt = (engine.Tensor(a, requires_grad=True) for a in (x, w, b))
    y = F.conv2d(xt, wt, bt, stride=stride, padding=padding)
    gy = np.cos(np.arange(y.data.size, dtype=x.dtype)).reshape(y.shape)
    y.backward(gy)
    return y.data, xt.grad, wt.grad, bt.grad


@pytest.mark.parametrize("case", CASES)
def test_conv_forward_and_backward_are_bit_identical_with_the_pool_off(case, kernel, forward_product,
                                                                       monkeypatch):
    xs, ws, stride, padding = case
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal(xs).astype(np.float32), rng.standard_normal(ws).astype(np.float32)
    b = rng.standard_normal(ws[0]).astype(np.float32)
    pooled = [_conv_step(x, w, b, stride, padding) for _ in range(2)]   # the second reuses buffers
    assert buffers.default_pool().held_bytes > 0
    monkeypatch.setenv(DISABLE, "1")
    plain = _conv_step(x, w, b, stride, padding)
    for run in pooled:
        for got, want in zip(run, plain):
            np.testing.assert_array_equal(got, want)


def test_a_dense_layers_outputs_and_input_gradient_are_lent_and_stay_their_own():
    """Linear's product (leading axes folded into one GEMM) is lent from the pool: the result and its
    input gradient stay as computed while later calls reuse the pool, and the product goes back
    to the pool once dropped."""
    rng = np.random.default_rng(7)
    w = engine.Tensor(rng.standard_normal((16, 32)).astype(np.float32), requires_grad=True)
    b = engine.Tensor(rng.standard_normal(32).astype(np.float32))
    x_data = rng.standard_normal((4, 3, 16)).astype(np.float32)
    x = engine.Tensor(x_data, requires_grad=True)
    y = F.linear(x, w, b)
    y.sum().backward()
    out, grad = y.data, x.grad
    np.testing.assert_allclose(out, x_data @ w.data + b.data, rtol=1e-5, atol=1e-5)
    kept_out, kept_grad = out.copy(), grad.copy()
    for seed in range(3):
        other = engine.Tensor(np.random.default_rng(seed).standard_normal((4, 3, 16)).astype(np.float32),
                              requires_grad=True)
        F.linear(other, w, b).sum().backward()
    np.testing.assert_array_equal(out, kept_out)
    np.testing.assert_array_equal(grad, kept_grad)
    held = buffers.default_pool().held_bytes
    del y, out
    assert buffers.default_pool().held_bytes == held + 4 * 3 * 32 * 4


@pytest.mark.parametrize("case", CASES)
def test_a_returned_output_is_not_overwritten_by_later_calls(case, kernel, forward_product):
    xs, ws, stride, padding = case
    rng = np.random.default_rng(1)
    w = rng.standard_normal(ws).astype(np.float32)
    b = rng.standard_normal(ws[0]).astype(np.float32)
    first_x = rng.standard_normal(xs).astype(np.float32)
    first = _conv_step(first_x, w, b, stride, padding)
    kept = [a.copy() for a in first]
    with engine.no_grad():
        inferred = F.conv2d(engine.Tensor(first_x), engine.Tensor(w), engine.Tensor(b),
                            stride=stride, padding=padding).data
    inferred_kept = inferred.copy()
    for seed in range(3):   # other inputs of the same shapes, with and without a graph
        other = np.random.default_rng(10 + seed).standard_normal(xs).astype(np.float32)
        _conv_step(other, w, b, stride, padding)
        with engine.no_grad():
            F.conv2d(engine.Tensor(other), engine.Tensor(w), stride=stride, padding=padding)
    for now, then in zip(first + (inferred,), kept + [inferred_kept]):
        np.testing.assert_array_equal(now, then)


def test_backward_twice_with_retain_graph_keeps_the_patches(kernel):
    rng = np.random.default_rng(2)
    xt = engine.Tensor(rng.standard_normal((2, 3, 6, 6)).astype(np.float32), requires_grad=True)
    wt = engine.Tensor(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), requires_grad=True)
    y = F.conv2d(xt, wt, padding=1)
    y.sum().backward(retain_graph=True)
    once = wt.grad.copy()
    for _ in range(2):   # other convolutions of the same shapes meanwhile
        F.conv2d(engine.Tensor(rng.standard_normal((2, 3, 6, 6)).astype(np.float32)), wt.detach(),
                 padding=1).sum()
    wt.grad = None
    y.sum().backward()
    np.testing.assert_array_equal(wt.grad, once)


def _lenet5_steps(model, start, images, labels):
    for p, value in zip(model.parameters(), start):
        p.data[...] = value
    optimizer = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for batch in range(images.shape[0]):
        optimizer.zero_grad()
        loss = F.cross_entropy(model(engine.Tensor(images[batch])), labels[batch])
        loss.backward()
        optimizer.step()
        losses.append(float(loss.data))
    return losses, [p.data.copy() for p in model.parameters()]


def test_lenet5_training_steps_are_bit_identical_with_the_pool_off(kernel, monkeypatch):
    rng = np.random.default_rng(3)
    images = rng.standard_normal((3, 8, 1, 28, 28)).astype(np.float32)
    labels = rng.integers(0, 10, size=(3, 8))
    model = models.lenet5()
    start = [p.data.copy() for p in model.parameters()]
    pooled = _lenet5_steps(model, start, images, labels)
    assert buffers.default_pool().held_bytes > 0
    monkeypatch.setenv(DISABLE, "1")
    plain = _lenet5_steps(model, start, images, labels)
    assert pooled[0] == plain[0]
    for got, want in zip(pooled[1], plain[1]):
        np.testing.assert_array_equal(got, want)


def test_patches_stay_out_of_the_pool_while_their_graph_lives(kernel):
    rng = np.random.default_rng(4)
    x = engine.Tensor(rng.standard_normal((2, 3, 6, 6)).astype(np.float32))
    w = engine.Tensor(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), requires_grad=True)
    y = F.conv2d(x, w, padding=1)
    patches = y.creator.cols
    shape = patches.shape
    assert buffers.take(shape, np.float32, like=patches) is not patches   # held by the graph
    y.sum().backward()
    del y   # the graph goes with its last tensor; the patches go back to the pool
    assert buffers.take(shape, np.float32, like=patches) is patches
    buffers.give_back(patches)
    with engine.no_grad():   # no graph at all: back in the pool as soon as the call returns
        F.conv2d(x, w, padding=1)
    assert buffers.take(shape, np.float32, like=patches) is patches


def _sequence_run(kind, batch, steps, seed=0):
    """Outputs and gradients of one whole-sequence GRU/LSTM op (float64)."""
    rng = np.random.default_rng(seed)
    gates, hidden = (3 if kind == "gru" else 4), 4
    gi = engine.Tensor(rng.standard_normal((batch, steps, gates * hidden)), requires_grad=True)
    w = engine.Tensor(rng.standard_normal((hidden, gates * hidden)) * 0.3, requires_grad=True)
    op = F.gru_sequence if kind == "gru" else F.lstm_sequence
    outs = op(gi, w)
    loss = F.sum(outs[0] * outs[0]) + F.sum(outs[1])
    loss.backward()
    return [o.data for o in outs] + [gi.grad, w.grad]


@pytest.mark.parametrize("kind", ["gru", "lstm"])
@pytest.mark.parametrize("batch, steps", [(1, 5), (3, 1), (1, 1), (3, 4)])
def test_sequence_workspaces_never_leak_into_results(kind, batch, steps, monkeypatch):
    """Outputs stay as they were after later calls reuse the pooled workspaces (length 1 in the batch or in
    time made ascontiguousarray return the workspace itself), and match a run with the pool off."""
    first = _sequence_run(kind, batch, steps)
    kept = [a.copy() for a in first]
    for seed in (1, 2):
        _sequence_run(kind, batch, steps, seed)            # takes the buffers the first run gave back
    for a, b in zip(first, kept):
        np.testing.assert_array_equal(a, b)
    monkeypatch.setenv(DISABLE, "1")
    for a, b in zip(_sequence_run(kind, batch, steps), kept):
        np.testing.assert_array_equal(a, b)


def test_sequence_workspaces_go_back_when_the_op_is_dropped():
    buffers.clear()
    with engine.no_grad():
        F.gru_sequence(np.ones((2, 3, 6)), np.ones((2, 6)) * 0.1)
    assert buffers.default_pool().held_bytes > 0
    buffers.clear()
