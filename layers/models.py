"""Reference networks: LeNet-300-100, LeNet-5 (Caffe), a wide CNN, RNN sequence models, an LSTM LM."""
import engine.ops as F
from engine import backend
from engine.tensor import Tensor

from .validation import check_input
from .activation import Dropout, Flatten, ReLU
from .conv import Conv2d
from .dense import Dense
from .embedding import Embedding
from .module import Module, Parameter, Sequential
from .pool import MaxPool2d
from .recurrent import GRU, LSTM


def _first_parameter(module):
    """The first of module.parameters(), or None; found without the generators that walk the whole
    tree, since float_input runs on every forward (2-4 us a call for LeNet-300-100)."""
    for p in module._parameters.values():
        return p
    for child in module._modules.values():
        p = _first_parameter(child)
        if p is not None:
            return p
    return None


def float_input(x, model):
    """x as a Tensor of the model's parameter dtype (raw arrays are also moved to its device)."""
    param = _first_parameter(model)
    if param is None:
        raise ValueError(f"{type(model).__name__}: the model has no parameters to take a dtype from")
    if isinstance(x, Tensor):
        if x.dtype.kind == "f" and x.dtype != param.dtype:
            return F.cast(x, param.dtype)
        return x
    data = backend.to_device(backend.as_array(x), param.device)
    return Tensor(data.astype(param.dtype, copy=False) if data.dtype.kind in "fiub" else data)


class FeedForward(Sequential):
    """A Sequential that accepts raw arrays and casts them to its parameter dtype."""

    def forward(self, x):
        return super().forward(float_input(x, self))


def lenet300(n_in=784, n_classes=10):
    """LeNet-300-100: n_in-300-100-n_classes with ReLU; (B, n_in) or image input (flattened)."""
    return FeedForward(Flatten(), Dense(n_in, 300), ReLU(), Dense(300, 100), ReLU(),
                       Dense(100, n_classes))


def lenet5(n_classes=10, conv_relu=False):
    """LeNet-5 in Caffe's form for (B, 1, 28, 28) input: 431,080 parameters with 10 classes.

    conv_relu=True adds a ReLU after each convolution (as many later LeNet-5 versions do; no
    parameters): Caffe's convolutions and pools feed the first dense layer linearly.
    """
    relu = (lambda: [ReLU()]) if conv_relu else (lambda: [])
    return FeedForward(Conv2d(1, 20, 5), *relu(), MaxPool2d(2), Conv2d(20, 50, 5), *relu(), MaxPool2d(2),
                       Flatten(), Dense(800, 500), ReLU(), Dense(500, n_classes))


def widecnn(n_classes=10):
    """Three 3x3 conv blocks (32, 64, 128 channels, ReLU, max-pool 2) and a dense classifier; 28x28 input."""
    return FeedForward(Conv2d(1, 32, 3, padding=1), ReLU(), MaxPool2d(2),
                       Conv2d(32, 64, 3, padding=1), ReLU(), MaxPool2d(2),
                       Conv2d(64, 128, 3, padding=1), ReLU(), MaxPool2d(2),
                       Flatten(), Dense(128 * 3 * 3, n_classes))


class SequenceModel(Module):
    """A GRU/LSTM and a Dense head on the last output ('last': (B, n_out)) or every step ('all').

    Input: float (B, T, n_in), float (B, T) when n_in == 1, or integer symbols (B, T)
    which are one-hot encoded to n_in classes.
    """

    def __init__(self, kind="gru", n_in=2, hidden=128, n_out=1, num_layers=1, hh_bias=False,
                 output="last", dropout=0.0, hh_init="uniform"):
        super().__init__()
        if kind not in ("gru", "lstm"):
            raise ValueError(f"SequenceModel: kind must be 'gru' or 'lstm', got {kind!r}")
        if output not in ("last", "all"):
            raise ValueError(f"SequenceModel: output must be 'last' or 'all', got {output!r}")
        self.kind, self.n_in, self.output = kind, n_in, output
        rnn_class = GRU if kind == "gru" else LSTM
        self.rnn = rnn_class(n_in, hidden, num_layers=num_layers, hh_bias=hh_bias, dropout=dropout,
                             hh_init=hh_init)
        self.head = Dense(hidden, n_out)

    def _encode(self, x):
        data = x.data if isinstance(x, Tensor) else backend.as_array(x)
        if data.dtype.kind in "iu":
            data = backend.to_device(data, self.head.weight.device)
            if data.ndim != 2:
                raise ValueError(f"SequenceModel: expected integer symbols of shape (batch, time), "
                                 f"got shape {data.shape}")
            if data.size and (int(data.min()) < 0 or int(data.max()) >= self.n_in):
                raise ValueError(f"SequenceModel: expected symbols in [0, {self.n_in}), got values "
                                 f"in [{int(data.min())}, {int(data.max())}]")
            xp = backend.xp_of(data)
            dtype = self.head.weight.dtype
            return Tensor(xp.eye(self.n_in, dtype=dtype)[data])
        x = float_input(x, self)
        if x.ndim == 2 and self.n_in == 1:
            x = F.expand_dims(x, -1)
        return x

    def forward(self, x, state=None):
        if self.output == "last":   # the last layer's final state is its last output; the rest is not formed
            _, final = self.rnn(self._encode(x), state, outputs=False)
            h = final[0] if isinstance(final, tuple) else final
            return self.head(F.getitem(h, -1))
        outputs, _ = self.rnn(self._encode(x), state)
        return self.head(outputs)

    def extra_repr(self):
        return f"kind={self.kind!r}, output={self.output!r}"


def sequence_model(kind="gru", n_in=2, hidden=128, n_out=1, num_layers=1, hh_bias=False,
                   output="last", dropout=0.0, hh_init="uniform"):
    """A GRU/LSTM sequence model; kind='gru', n_in=2, hidden=512, n_out=1 has 791,553 params."""
    return SequenceModel(kind, n_in, hidden, n_out, num_layers, hh_bias, output, dropout, hh_init)


class TiedDecoder(Module):
    """Logits h E^T + b sharing the embedding matrix E (vocab, dim); only the bias is its own."""

    def __init__(self, embedding):
        super().__init__()
        object.__setattr__(self, "embedding", embedding)  # not registered: owned by the model
        self.bias = Parameter(backend.xp_of(embedding.weight.data).zeros(
            embedding.vocab, dtype=embedding.weight.dtype))

    def forward(self, h):
        h = check_input(self, h, (2, 3), axis=-1, size=self.embedding.dim)
        return F.linear(h, F.transpose(self.embedding.weight), self.bias)

    def flops(self, inputs, output):
        rows = output.size // self.embedding.vocab
        return rows * self.embedding.vocab * (2 * self.embedding.dim + 1)

    def extra_repr(self):
        return f"tied to embedding {self.embedding.vocab}x{self.embedding.dim}"


class LanguageModel(Module):
    """Embedding -> (dropout) -> stacked LSTM -> dropout -> decoder; tokens (B, T) -> logits (B, T, V).

    Call model(tokens, state=None, return_state=False); with return_state the final
    (h_n, c_n) comes back too, for truncated backpropagation through time.
    """

    def __init__(self, vocab=10000, emb=200, hidden=200, num_layers=2, dropout=0.0,
                 tie_weights=False):
        super().__init__()
        if tie_weights and emb != hidden:
            raise ValueError(f"LanguageModel: tie_weights needs emb == hidden, got emb={emb}, "
                             f"hidden={hidden}")
        self.embedding = Embedding(vocab, emb)
        self.drop = Dropout(dropout)
        self.rnn = LSTM(emb, hidden, num_layers=num_layers, dropout=dropout)
        self.decoder = TiedDecoder(self.embedding) if tie_weights else Dense(hidden, vocab)
        self.tie_weights = tie_weights

    def forward(self, tokens, state=None, return_state=False):
        idx = tokens.data if isinstance(tokens, Tensor) else backend.as_array(tokens)
        if idx.ndim != 2:
            raise ValueError(f"LanguageModel: expected integer tokens of shape (batch, time), "
                             f"got shape {idx.shape}")
        outputs, state = self.rnn(self.drop(self.embedding(idx)), state)
        logits = self.decoder(self.drop(outputs))
        return (logits, state) if return_state else logits


def language_model(vocab=10000, emb=200, hidden=200, num_layers=2, dropout=0.0, tie_weights=False):
    """Zaremba et al.'s "small" PTB LSTM by default (2 layers of 200 units)."""
    return LanguageModel(vocab, emb, hidden, num_layers, dropout, tie_weights)


def gru_model(**kw):
    return sequence_model(kind="gru", **kw)


def lstm_model(**kw):
    return sequence_model(kind="lstm", **kw)


MODELS = {
    "lenet300": lenet300,
    "lenet5": lenet5,
    "widecnn": widecnn,
    "sequence_model": sequence_model,
    "gru": gru_model,
    "lstm": lstm_model,
    "language_model": language_model,
    "lm": language_model,
}
