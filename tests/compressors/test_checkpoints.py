"""compressors.save_model / load_model rebuild every kind of compressed model; run checkpoints; the model registry."""
import argparse
import importlib
import json

import numpy as np
import pytest

import engine
from engine import io as engine_io
from engine import rng as engine_random
from engine import safetensors as st
from compressors import checkpoints as S
from compressors.layer_swap import module_at, replace_module
from compressors.plugin import Compressor
from layers.module import Module
from layers.models import lenet300, lenet5, sequence_model


def compressor(name):
    """compressors.<name> (an import failure of our own code fails the test)."""
    return importlib.import_module(f"compressors.{name}")


def perturb(model, seed=1):
    """Move every float array away from its init so a load that keeps fresh values is caught."""
    rng = np.random.default_rng(seed)
    for p in model.parameters():
        p.data = (p.data + 0.01 * rng.standard_normal(p.shape)).astype(p.dtype)
    for m in model.modules():
        if hasattr(m, "invalidate_cache"):
            m.invalidate_cache()
    return model


def outputs(model, x):
    with engine.no_grad():
        return np.asarray(model.eval()(x).data)


def images(batch=2):
    return np.random.default_rng(0).standard_normal((batch, 1, 28, 28)).astype(np.float32)


def assert_round_trip(tmp_path, model, arch, x, suffix=".npz"):
    expected = outputs(model, x)
    path = tmp_path / f"model{suffix}"
    S.save_model(str(path), model, arch=arch)
    loaded = S.load_model(str(path))
    assert type(loaded) is type(model)
    assert [type(m).__name__ for m in loaded.modules()] == [type(m).__name__ for m in model.modules()]
    assert loaded.num_parameters() == model.num_parameters()
    np.testing.assert_array_equal(outputs(loaded, x), expected)
    return loaded


@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
def test_tucker_round_trip(tmp_path, suffix):
    tucker = compressor("tucker")
    engine.manual_seed(0)
    model = lenet300()
    tucker.compress(model, ratio=30)
    perturb(model)
    assert_round_trip(tmp_path, model, "lenet300", images(), suffix)


def test_scada_round_trip_keeps_one_shared_core(tmp_path):
    tucker = compressor("tucker")
    engine.manual_seed(0)
    model = lenet300()
    tucker.compress(model, ratio=40, shared_core=True)
    perturb(model)
    loaded = assert_round_trip(tmp_path, model, "lenet300", images())
    cores = {id(m.core) for m in loaded.modules() if type(m).__name__ in ("TuckerDense", "TuckerConv2d")}
    assert len(cores) == 1


def test_basis_round_trip(tmp_path):
    basis = compressor("basis")
    engine.manual_seed(0)
    model = lenet5()
    basis.compress(model, m=[7, 30])
    perturb(model)
    loaded = assert_round_trip(tmp_path, model, "lenet5", images())
    assert [m.num_basis for m in loaded.modules() if type(m).__name__ == "BasisConv2d"] == [7, 30]
    assert not any(m.basis.requires_grad for m in loaded.modules() if type(m).__name__ == "BasisConv2d")


def test_lowrank_round_trip_with_dropped_units_and_dense_kept_layer(tmp_path):
    lowrank = compressor("lowrank")
    engine.manual_seed(0)
    model = lenet300(n_in=64)
    dense = model[1]
    dense.weight.data[:, :40] = 0       # 40 dead units: truncate removes them (and layer 3's inputs)
    dense.bias.data[:40] = 0
    report = lowrank.truncate(model, rank={"1": 16, "3": 12, "5": 10})
    assert report["layers"][0]["units_dropped"] == 40
    assert not report["layers"][2]["factored"]      # 100 x 10 at rank 10 stays dense
    perturb(model)
    x = np.random.default_rng(0).standard_normal((3, 64)).astype(np.float32)
    loaded = assert_round_trip(tmp_path, model, ("lenet300", {"n_in": 64}), x)
    assert loaded[1].second.n_out == 260


def test_lowrank_spatial_conv_round_trip(tmp_path):
    lowrank = compressor("lowrank")
    engine.manual_seed(0)
    model = lenet5()
    lowrank.truncate(model, rank=3, layers=["0", "2"], conv_reshape="spatial")
    perturb(model)
    assert_round_trip(tmp_path, model, "lenet5", images(), ".safetensors")


def test_wavelet_recurrent_round_trip(tmp_path):
    wavelet = compressor("wavelet")
    engine.manual_seed(0)
    arch = {"name": "sequence_model", "kwargs": {"kind": "gru", "n_in": 2, "hidden": 16}}
    model = sequence_model(kind="gru", n_in=2, hidden=16)
    wavelet.compress_recurrent(model, "state_reset", levels=2, filter_length=4, init="db2")
    perturb(model)
    x = np.random.default_rng(0).standard_normal((3, 5, 2)).astype(np.float32)
    loaded = assert_round_trip(tmp_path, model, arch, x)
    cell = loaded.rnn.cells[0]
    assert type(cell.hh_state).__name__ == "WaveletLinear" and type(cell.hh_update).__name__ == "Dense"
    np.testing.assert_array_equal(cell.hh_state.permutation, model.rnn.cells[0].hh_state.permutation)


def test_wavelet_cnn_round_trip_float64(tmp_path):
    wavelet = compressor("wavelet")
    engine.manual_seed(0)
    model = S.build_model("wavelet_cnn", levels=3)
    model.astype(np.float64)
    perturb(model)
    loaded = assert_round_trip(tmp_path, model, None, images().astype(np.float64))
    assert next(loaded.parameters()).dtype == np.float64
    assert wavelet.wavelet_layers(loaded)[0].levels == 3


def test_chained_steps_lowrank_then_tucker(tmp_path):
    lowrank, tucker = compressor("lowrank"), compressor("tucker")
    engine.manual_seed(0)
    model = lenet300(n_in=64)
    lowrank.truncate(model, rank={"1": 20, "3": 20, "5": 10}, layers=["1", "3", "5"])
    tucker.compress(model, ranks=2, order=3, layers=["1.first"])
    perturb(model)
    steps = S.describe_compression(model)
    assert [s["method"] for s in steps] == ["lowrank", "tucker"]
    x = np.random.default_rng(0).standard_normal((3, 64)).astype(np.float32)
    assert_round_trip(tmp_path, model, ("lenet300", {"n_in": 64}), x)


def test_train_checkpoint_format_loads(tmp_path):
    """A file laid out as train.py writes it (model/ prefix, architecture, compressor config)."""
    tucker = compressor("tucker")
    engine.manual_seed(0)
    model = lenet300()
    plugin = tucker.TuckerCompressor(argparse.Namespace(tucker_ratio=25.0))
    model = plugin.apply(model, None)
    perturb(model)
    meta = {"kind": S.TRAIN_KIND, "architecture": {"model": "lenet300", "kwargs": {"n_classes": 10}},
            "compressor": {"name": "tucker", "config": plugin.config()}, "config": {"dtype": "float32"}}
    engine_io.save(str(tmp_path / "checkpoint.npz"),
                   {f"model/{k}": v for k, v in model.state_dict().items()}, json.loads(json.dumps(meta)))
    loaded = S.load_model(str(tmp_path))                      # a run folder works too
    np.testing.assert_array_equal(outputs(loaded, images()), outputs(model, images()))


def test_compression_given_as_a_compressor_object(tmp_path):
    tucker = compressor("tucker")
    engine.manual_seed(0)
    plugin = tucker.ScadaCompressor(argparse.Namespace(tucker_ratio=30.0))
    model = plugin.apply(lenet300(), None)
    perturb(model)
    path = str(tmp_path / "m.npz")
    S.save_model(path, model, arch="lenet300", compression=plugin)
    _, meta = engine_io.load(path)
    assert [s["method"] for s in meta["compression"]] == ["scada"]
    np.testing.assert_array_equal(outputs(S.load_model(path), images()), outputs(model, images()))
    fresh = tucker.TuckerCompressor(argparse.Namespace(tucker_ratio=30.0))   # never applied: no layout
    with pytest.raises(ValueError, match="per_layer"):
        S.save_model(path, model, arch="lenet300", compression=fresh)


@pytest.mark.parametrize("method, flags", [("wavelet", []), ("lowrank", ["--lowrank-rank", "3"])])
def test_train_py_run_folder_loads(tmp_path, method, flags):
    """A real (tiny) train.py run: its checkpoint rebuilds with every array in place."""
    compressor(method)
    try:
        train = importlib.import_module("train")
    except ImportError as e:
        pytest.skip(f"train.py does not import ({e})")
    out = str(tmp_path / "run")
    status = train.main(["--task", "adding", "--epochs", "1", "--steps", "2", "--hidden", "8", "--seq-len", "5",
                         "--compress", method, "--no-progress", "--out", out] + flags)
    assert status == 0
    model = S.load_model(out)
    arrays, _ = engine_io.load(f"{out}/checkpoint.npz")
    saved = {k[len("model/"):]: v for k, v in arrays.items() if k.startswith("model/")}
    state = model.state_dict()
    assert sorted(state) == sorted(saved)
    for key, value in state.items():
        np.testing.assert_array_equal(value, saved[key], err_msg=key)
    kinds = {type(m).__name__ for m in model.modules()}
    assert ("WaveletLinear" if method == "wavelet" else "LowRankDense") in kinds


def test_load_leaves_engine_rng_alone(tmp_path):
    tucker = compressor("tucker")
    engine.manual_seed(0)
    model = lenet300()
    tucker.compress(model, ratio=30)
    S.save_model(str(tmp_path / "m.npz"), model, arch="lenet300")
    engine.manual_seed(123)
    before = engine_random.get_rng().standard_normal(3)
    engine.manual_seed(123)
    S.load_model(str(tmp_path / "m.npz"))
    np.testing.assert_array_equal(engine_random.get_rng().standard_normal(3), before)


def test_save_needs_an_architecture(tmp_path):
    with pytest.raises(ValueError, match="give arch="):
        S.save_model(str(tmp_path / "m.npz"), lenet300())
    with pytest.raises(ValueError, match="unknown architecture"):
        S.save_model(str(tmp_path / "m.npz"), lenet300(), arch="no_such_net")


def test_save_refuses_a_recipe_that_does_not_rebuild(tmp_path):
    with pytest.raises(ValueError, match="does not rebuild"):
        S.save_model(str(tmp_path / "m.npz"), lenet300(n_classes=7), arch="lenet300")
    assert not (tmp_path / "m.npz").exists()


def test_load_rejects_files_without_architecture(tmp_path):
    engine_io.save(str(tmp_path / "arrays.npz"), {"w": np.zeros(3)}, {"note": "plain"})
    with pytest.raises(ValueError, match="records no architecture"):
        S.load_model(str(tmp_path / "arrays.npz"))
    st.save_safetensors(str(tmp_path / "foreign.safetensors"), {"w": np.zeros(3, np.float32)})
    with pytest.raises(ValueError, match="without compactnet metadata"):
        S.load_model(str(tmp_path / "foreign.safetensors"))


def test_load_detects_corrupted_safetensors_arrays(tmp_path):
    model = S.build_model("lenet300")
    path = str(tmp_path / "m.safetensors")
    S.save_model(path, model)
    blob = bytearray(open(path, "rb").read())
    blob[-1] ^= 0xFF                                   # flip bits of the last array byte
    open(path, "wb").write(bytes(blob))
    with pytest.raises(ValueError, match="checksum"):
        S.load_model(path)


def test_paired_tucker_without_bias_round_trip(tmp_path):
    """A permuted reshape (pairing) and dropped biases are recorded, so the load is exact."""
    tucker = compressor("tucker")
    engine.manual_seed(0)
    model = lenet300(n_in=64)
    tucker.compress(model, ratio=10, order=3, reshape="paired", bias=False)
    assert model[1].pairing is not None and model[1].bias is None
    perturb(model)
    assert_round_trip(tmp_path, model, ("lenet300", {"n_in": 64}), np.ones((2, 64), np.float32))


def test_paired_tucker_run_config_loads(tmp_path):
    """train.py's TuckerCompressor config (no pairing recorded) rebuilds the paired reshape exactly."""
    tucker = compressor("tucker")
    engine.manual_seed(0)
    plugin = tucker.TuckerCompressor(argparse.Namespace(tucker_ratio=10.0, tucker_order=3,
                                                        tucker_reshape="paired"))
    model = perturb(plugin.apply(lenet300(), None))
    meta = {"architecture": {"model": "lenet300", "kwargs": {}},
            "compressor": {"name": "tucker", "config": plugin.config()}, "config": {"dtype": "float32"}}
    S.save_run_checkpoint(str(tmp_path / S.RUN_CHECKPOINT), model, None, json.loads(json.dumps(meta)))
    np.testing.assert_array_equal(outputs(S.load_model(str(tmp_path)), images()), outputs(model, images()))


def test_run_checkpoint_round_trip(tmp_path):
    from engine.optim import Adam
    engine.manual_seed(0)
    model = lenet300(n_in=8)
    optimizer = Adam(model.parameters(), lr=0.01)
    x = engine.Tensor(np.ones((2, 8), np.float32))
    model(x).sum().backward()
    optimizer.step()
    meta = {"architecture": {"model": "lenet300", "kwargs": {"n_in": 8}}, "epoch": 3}
    path = S.save_run_checkpoint(str(tmp_path / S.RUN_CHECKPOINT), model, optimizer, meta)
    state, optim_arrays, read_meta = S.read_run_checkpoint(str(tmp_path))
    assert read_meta["kind"] == S.TRAIN_KIND and read_meta["epoch"] == 3
    assert read_meta["optimizer"]["step_count"] == 1 and S.read_run_meta(path) == read_meta
    saved = optimizer.state_dict()["arrays"]
    assert sorted(optim_arrays) == sorted(saved) and saved
    for key, value in saved.items():
        np.testing.assert_array_equal(optim_arrays[key], value)
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(state[key], value)
    arrays, _ = engine_io.load(path)
    assert all(k.startswith((S.MODEL_PREFIX, S.OPTIM_PREFIX)) for k in arrays)
    np.testing.assert_array_equal(outputs(S.load_model(path), np.ones((2, 8), np.float32)),
                                  outputs(model, np.ones((2, 8), np.float32)))
    with pytest.raises(FileNotFoundError):
        S.read_run_checkpoint(str(tmp_path / "missing.npz"))


def test_model_registry_holds_layers_models_and_method_models():
    from layers.models import MODELS
    wavelet = compressor("wavelet")
    assert set(MODELS) < set(S.model_names()) and "wavelet_cnn" in S.model_names()
    assert S.model_constructor("wavelet_cnn") is wavelet.wavelet_cnn
    assert S.model_constructor("lenet300") is MODELS["lenet300"]
    with pytest.raises(ValueError, match="unknown architecture 'nope'.*wavelet_cnn"):
        S.model_constructor("nope")
    model = S.build_model("lenet300", n_in=12)
    assert model.arch_spec == {"name": "lenet300", "kwargs": {"n_in": 12}} and model[1].n_in == 12


def test_every_registered_method_describes_and_rebuilds():
    from compressors import plugin
    for name in plugin.REGISTRY:
        method = plugin.get(name)
        dense = lenet300(n_in=8)
        assert method.describe(dense) == [], name
        assert callable(method.rebuild)


# ---------------------------------------------------------------- a method added by registration alone
class NegatedDense(Module):
    """-inner(x): a layer no code outside this test knows."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x) * -1.0


class NegateCompressor(Compressor):
    name = "negate"

    @staticmethod
    def describe(model):
        paths = [p for p, m in model.named_modules() if isinstance(m, NegatedDense)]
        return [{"paths": paths}] if paths else []

    @staticmethod
    def rebuild(model, config, state):
        for path in config["paths"]:
            replace_module(model, path, NegatedDense(module_at(model, path, "negate")))
        return model


def test_a_method_registered_in_the_plugin_registry_saves_and_loads(tmp_path, monkeypatch):
    from compressors import plugin
    monkeypatch.setitem(plugin.REGISTRY, "negate", f"{__name__}:NegateCompressor")
    engine.manual_seed(0)
    model = lenet300(n_in=8)
    replace_module(model, "3", NegatedDense(model[3]))
    perturb(model)
    assert S.describe_compression(model) == [{"method": "negate", "config": {"paths": ["3"]}}]
    loaded = assert_round_trip(tmp_path, model, ("lenet300", {"n_in": 8}), np.ones((2, 8), np.float32))
    assert isinstance(loaded[3], NegatedDense)
