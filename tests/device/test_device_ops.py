"""Every differentiable op on device arrays: forward and backward equal the CPU path, gradcheck passes."""
import numpy as np
import pytest

import engine
import engine.ops as F
from engine import Tensor, backend
from engine.ops.wavelet import permute_last
from tests.device.conftest import assert_same
from tests.engine.test_op_coverage import PROMISED_OPS


def _joined(outs):
    """Several outputs as one flat tensor, so one gradcheck covers them all."""
    return F.concat([F.reshape(o, -1) for o in outs])


def _normal(*shapes):
    return lambda rng: [rng.standard_normal(s) for s in shapes]


def _positive(*shapes):
    return lambda rng: [np.abs(rng.standard_normal(s)) + 0.5 for s in shapes]


def _dropout(xp, x):
    engine.manual_seed(3)     # the same mask on every call, or finite differences mean nothing
    return F.dropout(x, 0.4)


def _distillation(xp, student):
    teacher = Tensor(xp.asarray(np.random.default_rng(2).standard_normal(student.shape)))  # no gradient
    hard = F.cross_entropy(student, xp.asarray([0, 3, 1]))
    return F.distillation_loss(student, teacher, hard, temperature=2.0, alpha=0.7)


def _fwt(xp, x, lo, hi):
    return _joined(F.fwt(x, lo, hi, 2))


def _ifwt(xp, a, d1, d0, lo, hi):
    return F.ifwt([a, d1, d0], lo, hi)


MATRIX, CUBE = (3, 4), (2, 3, 4)
# name -> (inputs from a NumPy generator, fn(xp, *leaf tensors) -> Tensor, gradcheck options)
CASES = {
    "add": (_normal(MATRIX, (4,)), lambda xp, a, b: F.add(a, b)),
    "sub": (_normal((3, 1), MATRIX), lambda xp, a, b: F.sub(a, b)),
    "mul": (_normal(MATRIX, MATRIX), lambda xp, a, b: F.mul(a, b)),
    "div": (lambda rng: [rng.standard_normal(MATRIX), np.abs(rng.standard_normal(4)) + 0.5],
            lambda xp, a, b: F.div(a, b)),
    "pow": (_positive(MATRIX, MATRIX), lambda xp, a, b: F.pow(a, b)),
    "square": (_normal(MATRIX), lambda xp, a: F.pow(a, 2)),     # its own gradient path (no power)
    "neg": (_normal(MATRIX), lambda xp, a: F.neg(a)),
    "matmul": (_normal(CUBE, (4, 2)), lambda xp, a, b: F.matmul(a, b)),
    "exp": (_normal(MATRIX), lambda xp, a: F.exp(a)),
    "log": (_positive(MATRIX), lambda xp, a: F.log(a)),
    "sqrt": (_positive(MATRIX), lambda xp, a: F.sqrt(a)),
    "abs": (_normal(MATRIX), lambda xp, a: F.abs(a)),
    "tanh": (_normal(MATRIX), lambda xp, a: F.tanh(a)),
    "sigmoid": (_normal(MATRIX), lambda xp, a: F.sigmoid(a)),
    "relu": (_normal(MATRIX), lambda xp, a: F.relu(a)),
    "leaky_relu": (_normal(MATRIX), lambda xp, a: F.leaky_relu(a, 0.1)),
    "softplus": (_normal(MATRIX), lambda xp, a: F.softplus(a)),
    "maximum": (_normal(MATRIX, (4,)), lambda xp, a, b: F.maximum(a, b)),
    "minimum": (_normal(MATRIX, (4,)), lambda xp, a, b: F.minimum(a, b)),
    "where": (_normal(MATRIX, (4,)),
              lambda xp, a, b: F.where(xp.asarray(np.arange(12).reshape(MATRIX) % 3 == 0), a, b)),
    "clip": (_normal(MATRIX), lambda xp, a: F.clip(a, -0.5, 0.7)),
    "cast": (_normal(MATRIX), lambda xp, a: F.cast(F.cast(a, np.float32), np.float64) * a,
             {"eps": 1e-2, "atol": 1e-4}),
    "reshape": (_normal(CUBE), lambda xp, a: F.reshape(a, 4, 6)),
    "transpose": (_normal(CUBE), lambda xp, a: F.transpose(a, 2, 0, 1)),
    "swapaxes": (_normal(CUBE), lambda xp, a: F.swapaxes(a, 0, 2)),
    "broadcast_to": (_normal((3, 1)), lambda xp, a: F.broadcast_to(a, (2, 3, 4))),
    "expand_dims": (_normal(MATRIX), lambda xp, a: F.expand_dims(a, 1)),
    "squeeze": (_normal((3, 1, 4)), lambda xp, a: F.squeeze(a, 1)),
    "flatten": (_normal(CUBE), lambda xp, a: F.flatten(a)),
    # repeated indices: the backward runs scatter_add (cupyx.scatter_add on the device)
    "getitem": (_normal(CUBE), lambda xp, a: a[1:, xp.asarray([0, 2, 2, 1])]),
    "concat": (_normal(MATRIX, (3, 2)), lambda xp, a, b: F.concat([a, b], axis=1)),
    "stack": (_normal(MATRIX, MATRIX), lambda xp, a, b: F.stack([a, b], axis=1)),
    "split": (_normal((3, 6)), lambda xp, a: _joined([p * (i + 1) for i, p in enumerate(F.split(a, 3, axis=1))])),
    "unstack": (_normal(CUBE), lambda xp, a: _joined([p * (i + 1) for i, p in enumerate(F.unstack(a, 1))])),
    "pad": (_normal(MATRIX), lambda xp, a: F.pad(a, [(1, 0), (0, 2)], 0.5)),
    "sum": (_normal(CUBE), lambda xp, a: F.sum(a, axis=1)),
    "mean": (_normal(CUBE), lambda xp, a: F.mean(a, axis=(0, 2), keepdims=True)),
    "max": (_normal(CUBE), lambda xp, a: F.max(a, axis=1)),
    "min": (_normal(CUBE), lambda xp, a: F.min(a)),
    "softmax": (_normal(MATRIX), lambda xp, a: F.softmax(a, axis=1)),
    "log_softmax": (_normal(MATRIX), lambda xp, a: F.log_softmax(a, axis=0)),
    "cross_entropy": (_normal((4, 5)), lambda xp, a: F.cross_entropy(a, xp.asarray([0, 3, 1, 4]))),
    "mse_loss": (_normal(MATRIX, MATRIX), lambda xp, a, b: F.mse_loss(a, b)),
    "dropout": (_normal(MATRIX), _dropout),
    "embedding": (_normal((3, 4)), lambda xp, w: F.embedding(xp.asarray([[0, 2], [2, 1]]), w)),
    "conv2d": (_normal((2, 2, 5, 5), (3, 2, 3, 3), (3,)), lambda xp, x, w, b: F.conv2d(x, w, b, padding=1)),
    "conv2d_grouped": (_normal((1, 4, 5, 5), (4, 2, 2, 2)),
                       lambda xp, x, w: F.conv2d(x, w, stride=2, padding=1, dilation=1, groups=2)),
    "max_pool2d": (_normal((1, 2, 4, 4)), lambda xp, x: F.max_pool2d(x, 2)),
    "avg_pool2d": (_normal((1, 2, 4, 4)), lambda xp, x: F.avg_pool2d(x, 2, stride=1, padding=1)),
    "linear": (_normal(MATRIX, (4, 2), (2,)), lambda xp, x, w, b: F.linear(x, w, b)),
    "low_rank_linear": (_normal(MATRIX, (4, 2), (2, 3), (3,)),
                        lambda xp, x, u, v, b: F.low_rank_linear(x, u, v, b)),
    "gru_gates": (_normal((2, 9), (2, 3), (2, 9)), lambda xp, gi, h, gh: F.gru_gates(gi, h, gh)),
    "lstm_gates": (_normal((2, 12), (2, 3), (2, 12)), lambda xp, gi, c, gh: _joined(F.lstm_gates(gi, c, gh))),
    "gru_sequence": (_normal((2, 3, 9), (3, 9), (9,), (2, 3)),
                     lambda xp, gi, w, b, h0: _joined(F.gru_sequence(gi, w, b, h0))),
    "lstm_sequence": (_normal((2, 3, 12), (3, 12), (12,), (2, 3), (2, 3)),
                      lambda xp, gi, w, b, h0, c0: _joined(F.lstm_sequence(gi, w, b, h0, c0))),
    # a low-rank hidden weight: first factors a (H, k r), second factors c (k, r, H), each gate's
    # second product taken in one batched call (engine/ops/recurrent_product.py)
    "gru_sequence_factored": (_normal((2, 3, 9), (3, 6), (3, 2, 3), (9,), (2, 3)),
                              lambda xp, gi, a, c, b, h0: _joined(F.gru_sequence(gi, (a, c), b, h0))),
    "lstm_sequence_factored": (_normal((2, 3, 12), (3, 8), (4, 2, 3), (12,), (2, 3), (2, 3)),
                               lambda xp, gi, a, c, b, h0, c0: _joined(F.lstm_sequence(gi, (a, c), b, h0, c0))),
    "distillation_loss": (_normal(MATRIX), _distillation),
    # the kernels with a GPU branch of their own: wavelet transforms, Tucker products, permutations
    "fwt": (_normal((2, 16), (4,), (4,)), _fwt),
    "ifwt": (_normal((2, 6), (2, 6), (2, 9), (4,), (4,)), _ifwt),   # the bands of 16 samples
    "tucker_to_tensor": (_normal((2, 2, 2), (3, 2), (4, 2), (2, 2)),
                         lambda xp, core, *factors: F.tucker_to_tensor(core, list(factors))),
    "mode_product": (_normal(CUBE, (5, 3)), lambda xp, x, m: F.mode_product(x, m, 1)),
    "permute_last": (_normal(MATRIX), lambda xp, a: permute_last(a, xp.asarray([2, 0, 3, 1]))),
}


def test_every_promised_op_has_a_device_case():
    missing = sorted(set(PROMISED_OPS) - set(CASES))
    assert not missing, f"ops without a device case: {missing}"


def _run(name, where):
    """Forward and backward of one case on 'cpu' or 'gpu': (output, gradients, leaves)."""
    make, fn = CASES[name][:2]
    xp = backend.xp_for(where)
    leaves = [Tensor(backend.to_device(a, where), requires_grad=True) for a in make(np.random.default_rng(0))]
    out = fn(xp, *leaves)
    out.backward(backend.to_device(np.random.default_rng(1).standard_normal(out.shape), where))
    return out, [leaf.grad for leaf in leaves], leaves


@pytest.mark.parametrize("name", sorted(CASES))
def test_op_on_device_equals_cpu_and_passes_gradcheck(name, device):
    out_cpu, grads_cpu, _ = _run(name, "cpu")
    out_gpu, grads_gpu, leaves = _run(name, "gpu")
    assert out_gpu.device == "gpu"
    assert_same(out_gpu.data, out_cpu.data, what=f"{name} forward")
    for i, (g_gpu, g_cpu) in enumerate(zip(grads_gpu, grads_cpu)):
        assert_same(g_gpu, g_cpu, what=f"{name} gradient of input {i}")
    options = CASES[name][2] if len(CASES[name]) > 2 else {}
    fn = CASES[name][1]
    xp = backend.xp_for("gpu")
    assert engine.gradcheck(lambda *ts: fn(xp, *ts), *leaves, n_directions=2, **options)
