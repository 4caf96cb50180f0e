"""gru_sequence_sideways (a GRU's time loop with the state as (H, B), without a graph) against gru_sequence."""
import numpy as np
import pytest

import engine
import engine.ops as F
from engine import Tensor
from engine.ops import recurrent_sideways

pytestmark = pytest.mark.skipif(not recurrent_sideways.available(np.zeros(1, np.float32)),
                                reason="numba not importable or disabled: the sideways loop is Numba's")


def _setup(batch, steps, n_in, hidden, seed=0):
    rng = np.random.default_rng(seed)
    f32 = lambda *shape: (rng.standard_normal(shape) * 0.4).astype(np.float32)     # noqa: E731
    return rng, f32(batch, steps, n_in), f32(n_in, 3 * hidden), f32(3 * hidden), \
        [f32(hidden, hidden) for _ in range(3)], f32(3 * hidden), f32(batch, hidden)


@pytest.mark.parametrize("batch, n_in, in_step, maps, outputs, with_h0, with_biases", [
    (37, 2, True, (), True, True, True),              # all three gates products (one stacked product)
    (33, 2, True, (0, 2), False, False, True),        # r and n as callables, z a product
    (40, 6, False, (1,), True, True, False),          # the projection by one product a step; z a callable
    (8, 3, True, (0, 1, 2), True, True, True),        # every gate a callable
    (19, 5, False, (0,), False, True, True),          # a short batch (turned back in rows of 8 and the rest)
])
def test_equals_gru_sequence(batch, n_in, in_step, maps, outputs, with_h0, with_biases):
    hidden, steps = 24, 7
    _, x, w_ih, b_ih, ws, b_hh, h0 = _setup(batch, steps, n_in, hidden)
    b_ih, b_hh = (b_ih, b_hh) if with_biases else (None, None)
    h0 = h0 if with_h0 else None
    hidden_parts = []
    for gate, w in enumerate(ws):
        if gate in maps:     # the same product, as a callable on (H, B) arrays
            hidden_parts.append(lambda src, out, w=w: np.matmul(w.T, src, out=out))
        else:
            hidden_parts.append(Tensor(w))
    with engine.no_grad():
        want_out, want_h = F.gru_sequence(Tensor(x @ w_ih + (0 if b_ih is None else b_ih)),
                                          Tensor(np.concatenate(ws, axis=1)), b_hh, h0)
        got_out, got_h = F.gru_sequence_sideways(x, w_ih, b_ih, hidden_parts, b_hh, h0, outputs=outputs,
                                                 project_in_step=in_step)
    np.testing.assert_allclose(got_h.data, want_h.data, rtol=2e-5, atol=2e-6)
    if outputs:
        np.testing.assert_allclose(got_out.data, want_out.data, rtol=2e-5, atol=2e-6)
    else:
        assert got_out is None


def test_refuses_a_graph_and_float64():
    _, x, w_ih, b_ih, ws, b_hh, h0 = _setup(4, 3, 2, 8)
    weight = Tensor(ws[0], requires_grad=True)
    with pytest.raises(ValueError, match="without a graph"):
        F.gru_sequence_sideways(x, w_ih, b_ih, [weight, Tensor(ws[1]), Tensor(ws[2])])
    with engine.no_grad(), pytest.raises(ValueError, match="float32"):
        F.gru_sequence_sideways(x.astype(np.float64), w_ih.astype(np.float64), None,
                                [Tensor(w.astype(np.float64)) for w in ws])
    assert not recurrent_sideways.available(np.zeros(1, np.float64))


@pytest.mark.parametrize("batch, in_step", [(32, True), (21, False)])
def test_a_low_rank_hidden_weight_on_its_side(batch, in_step):
    # one callable writes all three gates' rows: u = a^T h, then every gate's c_g^T u_g in one product
    hidden, steps, rank = 24, 6, 5
    rng, x, w_ih, b_ih, _, b_hh, h0 = _setup(batch, steps, 3, hidden, seed=2)
    a = (0.3 * rng.standard_normal((hidden, 3 * rank))).astype(np.float32)
    c = (0.3 * rng.standard_normal((3, rank, hidden))).astype(np.float32)
    with engine.no_grad():
        want_out, want_h = F.gru_sequence(Tensor(x @ w_ih + b_ih), (Tensor(a), Tensor(c)), b_hh, h0)
        got_out, got_h = F.gru_sequence_sideways(x, w_ih, b_ih, recurrent_sideways.factored_hidden(a, c, batch),
                                                 b_hh, h0, project_in_step=in_step)
    np.testing.assert_allclose(got_h.data, want_h.data, rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(got_out.data, want_out.data, rtol=2e-5, atol=2e-6)
