"""Reference models: exact parameter counts, input handling, tied weights, training signal, errors."""
import numpy as np
import pytest

import engine
import engine.ops as F
import engine.optim
from layers import Dense, GRU, LSTM, detach_state
from layers.models import MODELS, language_model, lenet300, lenet5, sequence_model, widecnn
from tests.layers._helpers import hooked_flops


@pytest.fixture(autouse=True)
def seeded():
    engine.manual_seed(0)


def test_published_parameter_counts():
    assert lenet300().num_parameters() == 266_610
    assert lenet5().num_parameters() == 431_080
    gru = sequence_model(kind="gru", n_in=2, hidden=512, n_out=1, hh_bias=False)
    assert gru.num_parameters() == 791_553  # the wavelet paper's adding-problem GRU
    # Zaremba et al.'s small PTB model: 2 x 200 LSTM (two biases per gate), 10k vocabulary
    lstm_params = 2 * (4 * 200 * (200 + 200) + 2 * 4 * 200)
    assert language_model().num_parameters() == 10000 * 200 + lstm_params + 200 * 10000 + 10000
    assert language_model(tie_weights=True).num_parameters() == 10000 * 200 + lstm_params + 10000


def test_image_models_accept_flat_and_image_input(rng):
    x = rng.random((3, 1, 28, 28)).astype(np.float32)
    for model in (lenet300(), lenet5(), widecnn()):
        y = model(x)
        assert y.shape == (3, 10) and y.dtype == np.float32
    engine.manual_seed(3)
    net = lenet300()
    np.testing.assert_allclose(net(x).data, net(x.reshape(3, 784)).data)
    np.testing.assert_allclose(net(x.astype(np.float64)).data, net(x).data)  # cast to float32
    with pytest.raises(ValueError, match=r"Conv2d.*4-D.*\(3, 784\)"):
        lenet5()(x.reshape(3, 784))
    with pytest.raises(ValueError, match=r"Dense.*size 784.*\(3, 100\)"):
        lenet300()(x.reshape(3, 784)[:, :100])


def test_lenet5_conv_relu_adds_relus_and_no_parameters(rng):
    engine.manual_seed(5)
    plain = lenet5()
    engine.manual_seed(5)
    with_relu = lenet5(conv_relu=True)
    assert with_relu.num_parameters() == plain.num_parameters() == 431_080
    names = [type(m).__name__ for m in with_relu.modules()][1:]
    assert names[:6] == ["Conv2d", "ReLU", "MaxPool2d", "Conv2d", "ReLU", "MaxPool2d"]
    x = rng.standard_normal((2, 1, 28, 28)).astype(np.float32)
    # same weights, and the ReLUs change the function (some conv outputs are negative)
    assert not np.allclose(plain(x).data, with_relu(x).data)


def test_widecnn_shapes_for_basis_conv():
    convs = [m for m in widecnn().modules() if type(m).__name__ == "Conv2d"]
    assert [(c.in_ch, c.out_ch, c.kernel_size, c.padding) for c in convs] == [
        (1, 32, (3, 3), (1, 1)), (32, 64, (3, 3), (1, 1)), (64, 128, (3, 3), (1, 1))]


def test_lenet5_flops_per_layer(rng):
    x = rng.random((2, 1, 28, 28)).astype(np.float32)
    expected = (24 * 24 * 20 * (2 * 25 + 1) + 20 * 12 * 12 * 4 + 8 * 8 * 50 * (2 * 500 + 1)
                + 50 * 4 * 4 * 4 + 500 * (2 * 800 + 1) + 500 + 10 * (2 * 500 + 1))
    assert hooked_flops(lenet5(), x) == 2 * expected


@pytest.mark.parametrize("kind,n_in", [("gru", 2), ("gru", 6), ("lstm", 2)])
def test_sequence_model_last_reads_the_final_state_alone(kind, n_in, rng):
    """output='last' asks the recurrent layer for its final state only: the same values and
    gradients as the head on the last step's output, with and without a graph, two layers deep."""
    model = sequence_model(kind, n_in=n_in, hidden=5, num_layers=2)
    x = rng.standard_normal((3, 4, n_in)).astype(np.float32)
    outputs, _ = model.rnn(x)
    assert model.rnn(x, outputs=False)[0] is None
    full = model.head(F.getitem(outputs, (slice(None), -1)))
    ours = model(x)
    np.testing.assert_allclose(ours.data, full.data, rtol=1e-6, atol=1e-7)
    with engine.no_grad():
        np.testing.assert_allclose(model(x).data, full.data, rtol=1e-5, atol=1e-6)
    grads = []
    for y in (full, ours):
        model.zero_grad()
        F.sum(y * y).backward()
        grads.append([p.grad.copy() for p in model.parameters()])
    for g_full, g_ours in zip(*grads):
        np.testing.assert_allclose(g_ours, g_full, rtol=1e-5, atol=1e-6)


def test_sequence_model_outputs(rng):
    x = rng.random((4, 6, 2)).astype(np.float32)
    last = sequence_model(hidden=8)
    assert isinstance(last.rnn, GRU) and last(x).shape == (4, 1)
    # 'last' equals the head applied to the final hidden state
    out, h_n = last.rnn(x)
    np.testing.assert_allclose(last(x).data, last.head(h_n[0]).data, rtol=1e-6)
    every = sequence_model(kind="lstm", n_in=5, hidden=8, n_out=5, output="all", num_layers=2)
    assert isinstance(every.rnn, LSTM) and len(every.rnn.cells) == 2
    symbols = rng.integers(0, 5, (4, 6))
    y = every(symbols)
    one_hot = np.eye(5, dtype=np.float32)[symbols]
    np.testing.assert_allclose(y.data, every(one_hot).data, rtol=1e-6)
    assert y.shape == (4, 6, 5)
    with pytest.raises(ValueError, match=r"SequenceModel.*\[0, 5\).*\[0, 9\]"):
        every(np.array([[0, 9]]))
    with pytest.raises(ValueError, match="SequenceModel: kind"):
        sequence_model(kind="rnn")


def test_language_model_tied_weights_share_storage(rng):
    lm = language_model(vocab=11, emb=6, hidden=6, num_layers=2, tie_weights=True)
    tokens = rng.integers(0, 11, (3, 4))
    logits = lm(tokens)
    assert logits.shape == (3, 4, 11)
    names = [k for k, _ in lm.named_parameters()]
    assert "decoder.bias" in names and not any(k.startswith("decoder.embedding") for k in names)
    loss = F.cross_entropy(logits, tokens)
    loss.backward()
    grad_tied = lm.embedding.weight.grad.copy()
    # the gradient holds both the lookup and the decoder parts: untying by hand gives the sum
    lm.zero_grad()
    h = lm.rnn(lm.embedding(tokens))[0]
    decoder_copy = engine.Tensor(lm.embedding.weight.data.copy(), requires_grad=True)
    F.cross_entropy(F.linear(h, F.transpose(decoder_copy), lm.decoder.bias), tokens).backward()
    lookup_only = lm.embedding.weight.grad
    assert np.abs(decoder_copy.grad).max() > 0 and np.abs(lookup_only).max() > 0
    np.testing.assert_allclose(grad_tied, lookup_only + decoder_copy.grad, rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="tie_weights needs emb == hidden"):
        language_model(vocab=11, emb=6, hidden=8, tie_weights=True)
    with pytest.raises(ValueError, match=r"LanguageModel.*\(batch, time\).*\(4,\)"):
        lm(tokens[0])


def test_language_model_returns_state_for_truncated_bptt(rng):
    lm = language_model(vocab=7, emb=4, hidden=5, num_layers=2)
    tokens = rng.integers(0, 7, (2, 6))
    whole = lm(tokens).data
    first, state = lm(tokens[:, :3], return_state=True)
    second = lm(tokens[:, 3:], state=state)
    np.testing.assert_allclose(np.concatenate([first.data, second.data], 1), whole, rtol=1e-5,
                               atol=1e-6)
    assert state[0].shape == (2, 2, 5) and state[1].shape == (2, 2, 5)
    detached = detach_state(state)
    assert detached[0].creator is None and state[0].creator is not None
    np.testing.assert_array_equal(detached[1].data, state[1].data)
    F.sum(lm(tokens[:, 3:], state=detached)).backward()  # backward stops at the detached state


def test_models_registry_builds_every_model():
    expected = {"lenet300", "lenet5", "widecnn", "sequence_model", "gru", "lstm", "language_model"}
    assert expected <= set(MODELS)
    assert isinstance(MODELS["gru"](hidden=4).rnn, GRU)
    assert isinstance(MODELS["lstm"](hidden=4).rnn, LSTM)


def test_gru_sequence_model_learns_a_running_sum(rng):
    """A few Adam steps on a tiny regression lower the loss well below its start (the graph trains)."""
    model = sequence_model(hidden=8, n_in=1)
    opt = engine.optim.Adam(model.parameters(), lr=0.05)
    x = rng.random((32, 5)).astype(np.float32)
    target = x.sum(axis=1, keepdims=True)
    losses = []
    for _ in range(60):
        loss = F.mse_loss(model(x), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.1 * losses[0]
    assert isinstance(model.head, Dense)
