"""PyTorch-layout import/export of state dicts (plain dicts of NumPy arrays; torch itself is never imported).

Mapping (ours <- PyTorch; export is the inverse):
- Dense.weight (in, out)            <- Linear.weight (out, in) transposed; bias as is.
- Conv2d.weight (N, C/g, kh, kw)    <- Conv2d.weight, the same layout; bias as is.
- Embedding.weight, BatchNorm weight/bias/running_mean/running_var <- as is
  (torch's num_batches_tracked is ignored on import, written as 0 on export).
- LSTM (gate order i, f, g, o = ours input, forget, cell, output) and GRU (r, z, n = ours
  reset, update, state), layer k = our cells[k]:
  weight_ih_l{k} (G H, in) -> cells[k].ih.weight (in, G H) transposed, gate blocks in the same order;
  weight_hh_l{k} (G H, H)  -> cells[k].hh_<gate>.weight = (row block of that gate) transposed;
  bias_ih_l{k}             -> cells[k].ih.bias;
  bias_hh_l{k}             -> cells[k].hh_<gate>.bias (hh_bias=True). With hh_bias=False it is
  folded into ih.bias, which is exact for every LSTM gate and for GRU r and z; GRU's b_hn sits
  inside r * (W_hn h + b_hn) (our GRUCell follows PyTorch), so a non-zero b_hn needs hh_bias=True.
  GRUCell/LSTMCell use the keys weight_ih, weight_hh, bias_ih, bias_hh (torch's nn.GRUCell).
- Any other parameter or buffer (a compressed layer's core, a basis...) passes through by name.

Matching: match='names' pairs our module path with the same torch prefix (or mapping[path]); when
none of our paths is a torch prefix (a torch class with its own names: conv1, fc1, ...) and the layer
counts agree, it pairs them in order as match='order' does, which pairs our convertible layers with
torch's layer prefixes in the order they appear. Shapes are checked either way.

Exported compressed layers (to_torch_state_dict): their parameters pass through by name, and a layer
with a Tucker form adds two int64 arrays (ignored on import) so it can be rebuilt elsewhere:
PATH.tucker_weight_shape (our weight's shape: Dense (n_in, n_out), Conv2d (N, C, kh, kw)) and, for a
permuted reshape (tucker 'paired' / 'spatial' / --tucker-layout), PATH.tucker_pairing G (groups x D
digit sizes). Rebuild: T = core x_1 factor0 x_2 factor1 ... x_D factor{D-1} (factor i: (m_i, k_i); in
NumPy np.einsum over the core's axes); without a pairing, W = T.reshape(weight_shape) (C order);
with one, T.reshape(G[0][0], G[1][0], ..., G[0][1], G[1][1], ...) (digit i of every group in turn),
then transpose so that the axes read G[0][0..D-1], G[1][0..D-1], ..., then reshape to weight_shape.
A Dense W is ours (n_in, n_out): torch's Linear.weight is W.T.
"""
import numpy as np

from engine import backend

from .conv import Conv2d
from .dense import Dense
from .embedding import Embedding
from .norm import _BatchNorm
from .recurrent import GRU, LSTM, GRUCell, LSTMCell, _RecurrentCell

RNN_LAYER_KEYS = ("weight_ih_l", "weight_hh_l", "bias_ih_l", "bias_hh_l")
TUCKER_LAYOUT_KEYS = (".tucker_weight_shape", ".tucker_pairing")   # exported descriptors, ignored on import
CELL_KEYS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
CONVERTED = (Dense, Conv2d, Embedding, _BatchNorm, GRU, LSTM, GRUCell, LSTMCell)


def _join(prefix, name):
    return f"{prefix}.{name}" if prefix else name


def _array(value, key):
    try:
        return np.asarray(value)
    except Exception as e:  # a foreign object that NumPy cannot view
        raise TypeError(f"torch_interop: {key!r} is a {type(value).__name__}, not an array ({e})") from None


def _layers(model):
    """[(path, module)] of the modules converted as a unit, outermost first; their children are skipped."""
    out, inside = [], []
    for path, m in model.named_modules():
        if any(p == "" or path == p or path.startswith(p + ".") for p in inside):
            continue
        if isinstance(m, CONVERTED):
            out.append((path, m))
            inside.append(path)
    return out


def _own_state_keys(module, path):
    """Our state_dict keys under `path` (parameters and buffers of the module and its children)."""
    return [_join(path, k) for k in module.state_dict()]


def _plain_hh(cell, where):
    for gate, m in zip(cell.gate_names, cell.hh_modules()):
        if type(m) is not Dense:
            raise TypeError(f"{where}: {gate} is a {type(m).__name__}, not a plain Dense; move weights "
                            "into the dense model first, then compress it here")


# ---------------------------------------------------------------- import
def _cell_from_torch(cell, w_ih, w_hh, b_ih, b_hh, where):
    """Our state entries (relative names) of one GRUCell/LSTMCell from torch's four arrays."""
    _plain_hh(cell, where)
    k, h = len(cell.gate_names), cell.hidden
    if w_ih.shape != (k * h, cell.n_in) or w_hh.shape != (k * h, h):
        raise ValueError(f"{where}: expected weight_ih ({k * h}, {cell.n_in}) and weight_hh ({k * h}, {h}), "
                         f"got {w_ih.shape} and {w_hh.shape}")
    out = {"ih.weight": w_ih.T.copy()}
    ih_bias = np.zeros(k * h, dtype=w_ih.dtype) if b_ih is None else b_ih.copy()
    for j, gate in enumerate(cell.gate_names):
        out[f"{gate}.weight"] = w_hh[j * h:(j + 1) * h].T.copy()
    if b_hh is not None:
        if b_hh.shape != (k * h,):
            raise ValueError(f"{where}: expected bias_hh of shape ({k * h},), got {b_hh.shape}")
        if cell.hh_bias:
            for j, gate in enumerate(cell.gate_names):
                out[f"{gate}.bias"] = b_hh[j * h:(j + 1) * h].copy()
        else:
            inside = (2 * h, 3 * h) if isinstance(cell, GRUCell) else None   # GRU's b_hn
            if inside is not None and np.any(b_hh[inside[0]:inside[1]] != 0):
                raise ValueError(f"{where}: the GRU's b_hn (bias_hh rows {inside[0]}:{inside[1]}) is non-zero "
                                 "and acts inside r * (W_hn h + b_hn); build the model with hh_bias=True")
            ih_bias = ih_bias + b_hh
            if inside is not None:
                ih_bias[inside[0]:inside[1]] -= b_hh[inside[0]:inside[1]]
    elif cell.hh_bias:
        for gate in cell.gate_names:
            out[f"{gate}.bias"] = np.zeros(h, dtype=w_hh.dtype)
    out["ih.bias"] = ih_bias
    return out


def _torch_group(state, prefix, names):
    """{name: array} of the torch keys prefix.name that exist."""
    return {n: _array(state[_join(prefix, n)], _join(prefix, n)) for n in names if _join(prefix, n) in state}


def _import_layer(module, path, tprefix, state, used):
    """Our state entries (full names) of one converted module, reading torch keys under tprefix."""
    where = f"load_torch_state_dict ({path or 'model'} <- {tprefix or '<root>'})"

    def take(name, required=True):
        key = _join(tprefix, name)
        if key not in state:
            if required:
                raise KeyError(f"{where}: missing PyTorch key {key!r}")
            return None
        used.add(key)
        return _array(state[key], key)

    out = {}
    if isinstance(module, Dense):
        w = take("weight")
        if w.shape != (module.n_out, module.n_in):
            raise ValueError(f"{where}: Linear weight must be (out, in) = ({module.n_out}, {module.n_in}), "
                             f"got {w.shape}")
        out["weight"] = w.T.copy()
        if module.bias is not None:
            out["bias"] = take("bias")
    elif isinstance(module, (Conv2d, Embedding)):
        out["weight"] = take("weight")
        if isinstance(module, Conv2d) and module.bias is not None:
            out["bias"] = take("bias")
    elif isinstance(module, _BatchNorm):
        for name in ("weight", "bias") if module.weight is not None else ():
            out[name] = take(name)
        for name in ("running_mean", "running_var"):
            out[name] = take(name)
        take("num_batches_tracked", required=False)
    elif isinstance(module, _RecurrentCell):
        w_ih, w_hh, b_ih, b_hh = (take(n, required=n.startswith("weight")) for n in CELL_KEYS)
        out.update(_cell_from_torch(module, w_ih, w_hh, b_ih, b_hh, where))
    else:   # GRU / LSTM layer
        extra = [k for k in state if k.startswith(_join(tprefix, "")) and
                 (k.endswith("_reverse") or "weight_hr_l" in k)]
        if extra:
            raise ValueError(f"{where}: bidirectional or projected (proj_size) recurrent layers are not "
                             f"supported (keys {extra[:4]})")
        for k, cell in enumerate(module.cells):
            arrays = [take(f"{n}{k}", required=n.startswith("weight")) for n in RNN_LAYER_KEYS]
            for name, value in _cell_from_torch(cell, *arrays, f"{where}, layer {k}").items():
                out[f"cells.{k}.{name}"] = value
    return {_join(path, k): v for k, v in out.items()}


def _torch_prefixes(state):
    """Layer prefixes of a torch state dict, in order of first appearance."""
    prefixes = []
    for key in state:
        head = key.rpartition(".")[0]
        if head not in prefixes:
            prefixes.append(head)
    return prefixes


def _names_unrelated(layers, mapping, state):
    """True when no layer of ours (outside `mapping`) finds its path among the torch prefixes, yet the
    layer counts agree: then the names say nothing and the order is the pairing."""
    prefixes = [p for p in _torch_prefixes(state) if p not in mapping.values()]
    unmapped = [p for p, _ in layers if p not in mapping]
    return bool(unmapped) and len(prefixes) == len(unmapped) and not set(unmapped) & set(prefixes)


def torch_to_state_dict(model, state, match="names", mapping=None, strict=True):
    """Our state_dict for `model` from `state` (torch names and layouts, NumPy arrays or array-likes).

    mapping: {our module path: torch prefix} overriding the default pairing. strict: every torch
    key must be used (num_batches_tracked excepted) and every one of ours filled.
    """
    if match not in ("names", "order"):
        raise ValueError(f"torch_to_state_dict: match must be 'names' or 'order', got {match!r}")
    if not isinstance(state, dict):
        raise TypeError(f"torch_to_state_dict: state must be a dict of arrays, got {type(state).__name__}")
    mapping = dict(mapping or {})
    layers = _layers(model)
    state = {k: v for k, v in state.items() if not k.endswith(TUCKER_LAYOUT_KEYS)}
    if match == "names" and _names_unrelated(layers, mapping, state):
        match = "order"
    if match == "order":
        prefixes = [p for p in _torch_prefixes(state) if p not in mapping.values()]
        unmapped = [(p, m) for p, m in layers if p not in mapping]
        if len(prefixes) != len(unmapped):
            raise ValueError(f"torch_to_state_dict: match='order' pairs {len(unmapped)} layers of ours "
                             f"{[p for p, _ in unmapped]} with {len(prefixes)} PyTorch layer prefixes "
                             f"{prefixes}; give mapping= for the ones that differ")
        mapping.update({p: t for (p, _), t in zip(unmapped, prefixes)})
    ours, used = {}, set()
    covered = set()
    hint = "" if match == "order" else ("; match='names' pairs our module paths with the same PyTorch prefixes: "
                                        "pass match='order' to pair the layers in order, or mapping=")
    for path, module in layers:
        try:
            ours.update(_import_layer(module, path, mapping.get(path, path), state, used))
        except KeyError as e:
            raise KeyError(f"{e.args[0]}{hint}") from None
        covered.update(_own_state_keys(module, path))
    own_keys = model.state_dict()
    for key, value in own_keys.items():      # parameters of other modules pass through by name
        if key in covered or key not in state:
            continue
        ours[key] = _array(state[key], key)
        used.add(key)
    if strict:
        unused = [k for k in state if k not in used and not k.endswith("num_batches_tracked")]
        missing = [k for k in own_keys if k not in ours]
        if unused or missing:
            raise KeyError(f"torch_to_state_dict: PyTorch keys not used {unused[:10]}, our keys not filled "
                           f"{missing[:10]}; pass mapping= or strict=False")
    return ours


def load_torch_state_dict(model, state, match="names", mapping=None, strict=True):
    """Load PyTorch-layout arrays into `model` (see the module docstring for the mapping); returns model."""
    model.load_state_dict(torch_to_state_dict(model, state, match, mapping, strict), strict=strict)
    return model


# ---------------------------------------------------------------- export
def _cell_to_torch(cell, where):
    _plain_hh(cell, where)
    to = backend.to_numpy
    hh = cell.hh_modules()
    w_ih = to(cell.ih.weight.data).T.copy()
    w_hh = np.concatenate([to(m.weight.data).T for m in hh], axis=0)
    b_ih = to(cell.ih.bias.data).copy()
    b_hh = (np.concatenate([to(m.bias.data) for m in hh]) if cell.hh_bias
            else np.zeros_like(b_ih))
    return w_ih, w_hh, b_ih, b_hh


def to_torch_state_dict(model, mapping=None):
    """{torch key: NumPy array} in PyTorch's names and layouts (the inverse of torch_to_state_dict)."""
    mapping = dict(mapping or {})
    to = backend.to_numpy
    out, covered = {}, set()
    for path, module in _layers(model):
        t = mapping.get(path, path)
        where = f"to_torch_state_dict ({path or 'model'})"
        if isinstance(module, Dense):
            out[_join(t, "weight")] = to(module.weight.data).T.copy()
            if module.bias is not None:
                out[_join(t, "bias")] = to(module.bias.data).copy()
        elif isinstance(module, (Conv2d, Embedding, _BatchNorm)):
            for key, value in module.state_dict().items():
                out[_join(t, key)] = to(value).copy()
            if isinstance(module, _BatchNorm):
                out[_join(t, "num_batches_tracked")] = np.array(0, dtype=np.int64)
        elif isinstance(module, _RecurrentCell):
            for name, value in zip(CELL_KEYS, _cell_to_torch(module, where)):
                out[_join(t, name)] = value
        else:
            for k, cell in enumerate(module.cells):
                for name, value in zip(RNN_LAYER_KEYS, _cell_to_torch(cell, f"{where}, layer {k}")):
                    out[_join(t, f"{name}{k}")] = value
        covered.update(_own_state_keys(module, path))
    for key, value in model.state_dict().items():
        if key not in covered:
            out[key] = to(value).copy()
    out.update(_tucker_layouts(model))
    return out


def _tucker_layouts(model):
    """{PATH.tucker_weight_shape, PATH.tucker_pairing: int64 arrays} of every layer with a Tucker form
    (read by duck typing: layers/ does not import compressors)."""
    out = {}
    for path, module in model.named_modules():
        if not hasattr(module, "weight_shape") or not hasattr(module, "modes"):
            continue
        out[_join(path, "tucker_weight_shape")] = np.asarray(module.weight_shape, dtype=np.int64)
        pairing = getattr(module, "pairing", None)
        if pairing is not None:
            out[_join(path, "tucker_pairing")] = np.asarray(pairing[0], dtype=np.int64)
    return out


# ---------------------------------------------------------------- files
TORCH_SAVE_HELP = ("in PyTorch, write the weights as safetensors.torch.save_file(model.state_dict(), "
                   "'model.safetensors') or numpy.savez('model.npz', **{k: v.numpy() for k, v in "
                   "model.state_dict().items()})")


def load_torch_file(path):
    """A dict of arrays from a .npz (np.savez of a state_dict) or .safetensors file, both checked against
    their size before reading (engine.npz_reader, engine.safetensors). A torch.save file (a zip holding a
    pickle) is refused with how to write one of those instead: it is never unpickled."""
    import zipfile
    from engine import safetensors as st
    from engine.npz_reader import read_npz
    if str(path).endswith(".safetensors") or st.is_safetensors(path):
        return st.load_safetensors(path)[0]
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            foreign = [n for n in archive.namelist() if not n.endswith(".npy")]
        if foreign:
            kind = "a torch.save file (a zip with a pickle)" if any(n.endswith(".pkl") for n in foreign) else \
                f"a zip with non-array entries ({foreign[0]})"
            raise ValueError(f"load_torch_file: {path} is {kind}, not a .npz of arrays; it is not unpickled; "
                             f"{TORCH_SAVE_HELP}")
    return read_npz(path, where=f"load_torch_file: {path}")


def save_torch_file(path, state, metadata=None):
    """Write a torch-layout dict to .safetensors (loadable by safetensors.torch.load_file) or .npz."""
    from engine import safetensors as st
    if str(path).endswith(".safetensors"):
        st.save_safetensors(path, state, metadata)
    else:
        np.savez(path, **state)
    return path
