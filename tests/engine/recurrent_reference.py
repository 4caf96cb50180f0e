"""The reference for the whole-sequence GRU/LSTM ops: the same layer as a loop of per-step gate ops."""
import engine.ops as F


def per_step_layer(kind, gi, hidden_input, h0, c0):
    """(outputs (B, T, H), h_T, c_T) with each step's hidden-side input gh = hidden_input(h)."""
    h, c, outs = h0, c0, []
    for t in range(gi.shape[1]):
        gh = hidden_input(h)
        if kind == "lstm":
            h, c = F.lstm_gates(gi[:, t], c, gh)
        else:
            h = F.gru_gates(gi[:, t], h, gh)
        outs.append(h)
    return F.stack(outs, axis=1), h, c
