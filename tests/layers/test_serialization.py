"""layers.save_model / load_model of dense models (compressed ones point to compressors); the safetensors reader/writer."""
import importlib
import json
import re
import struct

import numpy as np
import pytest

import engine
from engine import io as engine_io
from engine import safetensors as st
from layers import serialization as S
from layers.models import lenet300


def outputs(model, x):
    with engine.no_grad():
        return np.asarray(model.eval()(x).data)


@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
def test_dense_round_trip(tmp_path, suffix):
    engine.manual_seed(0)
    model = lenet300(n_in=16)
    for p in model.parameters():
        p.data = p.data + np.float32(0.01)
    path = str(tmp_path / f"m{suffix}")
    assert S.save_model(path, model, arch=("lenet300", {"n_in": 16}), metadata={"note": "x"}) == path
    loaded = S.load_model(path)
    x = np.random.default_rng(0).standard_normal((3, 16)).astype(np.float32)
    np.testing.assert_array_equal(outputs(loaded, x), outputs(model, x))
    assert loaded.arch_spec == {"name": "lenet300", "kwargs": {"n_in": 16}}


def test_compressed_models_point_to_compressors(tmp_path):
    from compressors import checkpoints, tucker
    engine.manual_seed(0)
    model = lenet300(n_in=16)
    tucker.compress(model, ratio=5)
    with pytest.raises(ValueError, match="compressors.save_model"):
        S.save_model(str(tmp_path / "m.npz"), model, arch=("lenet300", {"n_in": 16}))
    checkpoints.save_model(str(tmp_path / "m.npz"), model, arch=("lenet300", {"n_in": 16}))
    with pytest.raises(ValueError, match=r"compression \['tucker'\]; compressors.load_model"):
        S.load_model(str(tmp_path / "m.npz"))
    checkpoints.save_model(str(tmp_path / "w.npz"), checkpoints.build_model("wavelet_cnn", levels=2), compression=[])
    with pytest.raises(ValueError, match="architecture 'wavelet_cnn'; compressors.load_model"):
        S.load_model(str(tmp_path / "w.npz"))
    checkpoints.save_run_checkpoint(str(tmp_path / checkpoints.RUN_CHECKPOINT), model, None, {})
    with pytest.raises(ValueError, match="is a folder.*compressors.load_model"):
        S.load_model(str(tmp_path))
    with pytest.raises(ValueError, match="'compactnet-train-checkpoint' file; compressors.load_model"):
        S.load_model(str(tmp_path / checkpoints.RUN_CHECKPOINT))


def test_dense_save_needs_a_known_architecture(tmp_path):
    with pytest.raises(ValueError, match="give arch="):
        S.save_model(str(tmp_path / "m.npz"), lenet300())
    with pytest.raises(ValueError, match="unknown architecture 'no_such_net'"):
        S.save_model(str(tmp_path / "m.npz"), lenet300(), arch="no_such_net")
    engine_io.save(str(tmp_path / "arrays.npz"), {"w": np.zeros(3)}, {"note": "plain"})
    with pytest.raises(ValueError, match="records no architecture"):
        S.load_model(str(tmp_path / "arrays.npz"))


def test_layers_import_nothing_from_compressors():
    import pathlib
    import subprocess
    import sys
    root = pathlib.Path(__file__).resolve().parents[2]
    for path in (root / "layers").glob("*.py"):
        imports = re.findall(r"^\s*(?:from|import)\s+compressors\b", path.read_text(), re.MULTILINE)
        assert not imports, path
    code = ("import sys, layers, layers.serialization, layers.models; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'compressors'))")
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------- safetensors reader/writer
ALL_DTYPES = [np.float64, np.float32, np.float16, np.int64, np.int32, np.int16, np.int8,
              np.uint64, np.uint32, np.uint16, np.uint8, np.bool_]


def sample_arrays():
    rng = np.random.default_rng(0)
    arrays = {f"a_{np.dtype(d).name}": (rng.standard_normal((2, 3)) * 10).astype(d) for d in ALL_DTYPES}
    arrays["empty"] = np.zeros((0, 4), np.float32)
    arrays["scalar"] = np.array(3.5, np.float64)
    arrays["big_endian"] = np.arange(4, dtype=">f4")
    return arrays


def test_safetensors_round_trip(tmp_path):
    arrays = sample_arrays()
    path = str(tmp_path / "a.safetensors")
    st.save_safetensors(path, arrays, {"who": "compactnet", "n": "3"})
    loaded, meta = st.load_safetensors(path)
    assert meta == {"who": "compactnet", "n": "3"}
    assert sorted(loaded) == sorted(arrays)
    for name, a in arrays.items():
        assert loaded[name].dtype == a.dtype.newbyteorder("=") and loaded[name].shape == a.shape
        np.testing.assert_array_equal(loaded[name], a)
    (n,) = struct.unpack("<Q", open(path, "rb").read(8))
    assert n % 8 == 0                                  # array bytes start aligned


def test_safetensors_reads_bfloat16_as_float32():
    values = np.array([1.0, -2.5, 3.140625], np.float32)
    bits = (values.view(np.uint32) >> 16).astype("<u2").tobytes()
    header = json.dumps({"x": {"dtype": "BF16", "shape": [3], "data_offsets": [0, 6]}}).encode()
    arrays, _ = st.decode(struct.pack("<Q", len(header)) + header + bits)
    np.testing.assert_array_equal(arrays["x"], values)


def _blob(header, data=b""):
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + data


@pytest.mark.parametrize("blob, words", [
    (b"\x01\x02", "shorter than the 8-byte"),
    (struct.pack("<Q", 10 ** 12) + b"{}", "header length"),
    (struct.pack("<Q", 4) + b"\xff\xfe{}", "not UTF-8 JSON"),
    (_blob([1, 2]), "JSON list"),
    (_blob({"x": {"dtype": "F32", "shape": [2]}}), "lacks dtype"),
    (_blob({"x": {"dtype": "Q7", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 4), "unsupported dtype"),
    (_blob({"x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}, b"\0" * 4), "need 8"),
    (_blob({"x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 5), "truncated"),
    (_blob({"x": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, b"\0" * 8), "hole"),
    (_blob({"x": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 9), "after the last"),
    (_blob({"__metadata__": {"k": 1}}), "strings to strings"),
])
def test_safetensors_rejects_bad_files(blob, words):
    with pytest.raises(ValueError, match=words):
        st.decode(blob, "f.safetensors")


def test_safetensors_truncated_and_foreign_files(tmp_path):
    path = str(tmp_path / "a.safetensors")
    st.save_safetensors(path, {"w": np.ones((4, 4), np.float32)})
    blob = open(path, "rb").read()
    open(path, "wb").write(blob[:-10])
    with pytest.raises(ValueError, match="truncated"):
        st.load_safetensors(path)
    npz = str(tmp_path / "x.npz")
    np.savez(npz, w=np.ones(3))
    with pytest.raises(ValueError, match="not a valid safetensors file"):
        st.load_safetensors(npz)
    assert not st.is_safetensors(npz) and not st.is_safetensors(str(tmp_path / "missing"))


def test_safetensors_writer_errors(tmp_path):
    with pytest.raises(TypeError, match="str to str"):
        st.save_safetensors(str(tmp_path / "a.safetensors"), {"w": np.ones(2)}, {"n": 3})
    with pytest.raises(TypeError, match="complex128"):
        st.save_safetensors(str(tmp_path / "a.safetensors"), {"w": np.ones(2, complex)})
    with pytest.raises(ValueError, match="invalid array name"):
        st.save_safetensors(str(tmp_path / "a.safetensors"), {"__metadata__": np.ones(2)})


@pytest.mark.skipif(importlib.util.find_spec("safetensors") is None,
                    reason="the optional safetensors package is not installed (pip install safetensors)")
def test_safetensors_matches_the_reference_package(tmp_path):
    from safetensors.numpy import load_file, save_file
    arrays = {k: v for k, v in sample_arrays().items() if k != "big_endian"}
    ours, theirs = str(tmp_path / "ours.safetensors"), str(tmp_path / "theirs.safetensors")
    st.save_safetensors(ours, arrays, {"k": "v"})
    save_file(arrays, theirs, metadata={"k": "v"})
    for name, a in load_file(ours).items():
        np.testing.assert_array_equal(a, arrays[name])
    loaded, meta = st.load_safetensors(theirs)
    assert meta == {"k": "v"}
    for name, a in arrays.items():
        np.testing.assert_array_equal(loaded[name], a)
