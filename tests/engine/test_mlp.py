"""A two-layer MLP trained with the engine alone (ops + optimiser) drives a toy loss down."""
import numpy as np

import engine
import engine.ops as F
from engine import optim


def test_two_layer_mlp_learns_xor_like_problem():
    engine.manual_seed(0)
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (256, 2)).astype(np.float32)
    labels = ((x[:, 0] * x[:, 1]) > 0).astype(np.int64)   # XOR of the signs: not linearly separable
    w1 = engine.Tensor(rng.standard_normal((2, 32)).astype(np.float32) * 0.7, requires_grad=True)
    b1 = engine.Tensor(np.zeros(32, np.float32), requires_grad=True)
    w2 = engine.Tensor(rng.standard_normal((32, 2)).astype(np.float32) * 0.2, requires_grad=True)
    b2 = engine.Tensor(np.zeros(2, np.float32), requires_grad=True)
    opt = optim.Adam([w1, b1, w2, b2], lr=0.03)
    xt = engine.Tensor(x)
    losses = []
    for _ in range(150):
        opt.zero_grad()
        logits = F.linear(F.tanh(F.linear(xt, w1, b1)), w2, b2)
        loss = F.cross_entropy(logits, labels)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    accuracy = float((logits.data.argmax(1) == labels).mean())
    assert losses[-1] < 0.25 * losses[0], (losses[0], losses[-1])
    assert accuracy > 0.9
    assert w1.dtype == np.float32 and w1.grad.dtype == np.float32
