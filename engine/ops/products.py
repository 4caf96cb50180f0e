"""Matrix products: matmul's op, the dense layer's Linear, and the folded GEMMs both use (low_rank too)."""
from .. import backend, buffers
from ..function import Function
from .broadcasting import sum_to, column_sums


class MatMul(Function):
    """Batched matrix product with NumPy's matmul rules (1-D operands, broadcast batch axes)."""

    def forward(self, a, b):
        if a.ndim == 0 or b.ndim == 0:
            raise ValueError("matmul: operands must have at least 1 dimension, got a scalar")
        if a.shape[-1] != b.shape[-2 if b.ndim > 1 else 0]:
            raise ValueError(
                f"matmul: inner dimensions differ: a has shape {a.shape}, b has shape {b.shape}")
        self.a, self.b = a, b
        if b.ndim == 2:
            return fold_matmul(a, b)
        return a @ b

    def backward(self, gy):
        a, b = self.a, self.b
        xp = backend.xp_of(gy)
        a2 = a[None, :] if a.ndim == 1 else a
        b2 = b[:, None] if b.ndim == 1 else b
        # restore the axes NumPy dropped for 1-D operands (both for a vector dot product)
        if a.ndim == 1:
            gy = gy[..., None, :] if b.ndim > 1 else gy[..., None]
        if b.ndim == 1:
            gy = gy[..., None]
        na, nb = self.needs_input_grad
        ga = gb = None
        if na:
            ga = fold_matmul(gy, b2.T) if b2.ndim == 2 else gy @ xp.swapaxes(b2, -1, -2)
            ga = sum_to(ga, a2.shape).reshape(a.shape)
        if nb:
            if b2.ndim == 2 and a2.ndim > 2:
                # fold the batch axes into rows: one large GEMM instead of many small ones
                gb = weight_gradient(a2, gy)
            else:
                gb = sum_to(xp.swapaxes(a2, -1, -2) @ gy, b2.shape)
            gb = gb.reshape(b.shape)
        return ga, gb


def fold_matmul(a, b):
    """a @ b for a 2-D b; leading axes of a are folded into rows so BLAS runs one GEMM
    (NumPy's stacked matmul with a broadcast 2-D operand is many times slower). A large result is
    lent from the buffer pool, so a training step gets back the array its previous step used: for a
    recurrent layer's input projection (10 MB at batch 50, T = 100, 4 x 128 gates) that made the
    LSTM and GRU train steps 7-17% faster (in-process A/B, 2 threads, glibc's default allocator;
    neither side faulted in fresh pages, so the gain is the reused memory, not the allocation)."""
    if a.ndim < 2:
        return a @ b
    xp = backend.xp_of(a)
    rows = a.reshape(-1, a.shape[-1])
    if rows.shape[0] * b.shape[-1] * a.itemsize < buffers.LEND_MIN_BYTES:
        # a result the pool would not keep: the plain product skips the loan and NumPy's out= checks
        # (a batch-1 LeNet-5 dense layer, 800 -> 500: 26.5 against 34.1 us)
        return (rows @ b).reshape(a.shape[:-1] + (b.shape[-1],))
    out = buffers.lend((rows.shape[0], b.shape[-1]), xp.result_type(a, b), like=a)
    xp.matmul(rows, b, out=out)
    return out.reshape(a.shape[:-1] + (b.shape[-1],))


def weight_gradient(x, gy):
    """The (n, m) gradient of a weight applied as x @ w: x (..., n) and gy (..., m) over the same leading
    axes, their rows folded so one GEMM sums the outer products (Linear, matmul, low_rank_linear)."""
    return x.reshape(-1, x.shape[-1]).T @ gy.reshape(-1, gy.shape[-1])


class Linear(Function):
    """x @ w (+ b): the dense layer's product, leading batch axes of x folded into one GEMM."""

    def forward(self, x, w, b=None):
        self.x, self.w = x, w
        return linear_forward(x, w, b)

    def backward(self, gy):
        x, w = self.x, self.w
        needs = self.needs_input_grad
        gx = fold_matmul(gy, w.T) if needs[0] else None
        gw = gb = None
        if needs[1]:
            gw = weight_gradient(x, gy)
        if len(needs) > 2 and needs[2]:
            gb = column_sums(gy.reshape(-1, gy.shape[-1]))
        return (gx, gw, gb) if len(needs) > 2 else (gx, gw)


def linear_forward(x, w, b=None):
    """x @ w (+ b) on raw arrays, the bias in the product when bias_rides_in_product says so."""
    if b is not None and x.ndim >= 2 and bias_rides_in_product(x.shape[-1], w.shape[-1]):
        x_ones, w_bias = _with_ones_column(x, w, b)
        y = fold_matmul(x_ones, w_bias)
        buffers.give_back(x_ones)
        return y
    y = fold_matmul(x, w)
    if b is not None:
        y += b
    return y


def bias_rides_in_product(n_in, n_out):
    """Whether x @ w + b is formed as [x, 1] @ [w; b] (a pooled copy of x with a column of ones) instead
    of a product and then a pass adding b to every output row: when a row of x, grown by one, is at
    most an eighth of an output row. Alone, on one thread, the fold took 0.53x the time of the add at
    4096 rows, 2 -> 768 (a GRU's input projection), 0.74x at 32 -> 768, 0.94x at 5000 rows, 128 -> 512;
    but the LSTM train step of bench/speed.py, whose projection is that last shape, ran 1.00x and 1.09x
    with it, so wider inputs keep the add (bench/results/microbench-session7.md)."""
    return 8 * (n_in + 1) <= n_out


def _with_ones_column(x, w, b):
    """([x, 1], [w; b]) with x's leading axes kept: the operands of the product that adds the bias. The
    first comes from the buffer pool; the caller gives it back once the product is formed."""
    xp = backend.xp_of(x)
    n_in = x.shape[-1]
    dtype = xp.result_type(x, w)
    ones = buffers.take(x.shape[:-1] + (n_in + 1,), dtype, like=x)
    ones[..., :n_in] = x
    ones[..., n_in] = 1
    grown = xp.empty((n_in + 1, w.shape[-1]), dtype=dtype)
    grown[:n_in] = w
    grown[n_in] = b
    return ones, grown
