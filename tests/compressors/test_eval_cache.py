"""compressors.eval_cache: rebuilt with a graph in training mode, kept in eval mode until an array is replaced;
WaveletLinear's dense form uses it (its permutation buffers count as sources too)."""
import numpy as np

import engine
from compressors.eval_cache import EvalCache, cache_of
from compressors.wavelet import WaveletLinear
from layers import Dense


def test_kept_in_eval_rebuilt_in_training_and_when_an_array_changes():
    layer, builds = Dense(3, 2), []

    def build():
        builds.append(engine.is_grad_enabled())
        return layer.weight * 2
    cache = EvalCache()
    layer.train()
    cache.get(layer, [layer.weight], build)
    cache.get(layer, [layer.weight], build)
    assert builds == [True, True] and cache.empty            # training: every call, with a graph
    layer.eval()
    first = cache.get(layer, [layer.weight], build)
    assert cache.get(layer, [layer.weight], build) is first and builds == [True, True, False]
    layer.weight.data = layer.weight.data.copy()                # a replaced array: built again
    assert cache.get(layer, [layer.weight], build) is not first and len(builds) == 4
    buffer = np.arange(3)
    kept = cache.get(layer, [layer.weight, buffer], build)
    assert cache.get(layer, [layer.weight, buffer], build) is kept
    assert cache.get(layer, [layer.weight, buffer.copy()], build) is not kept
    cache.clear()
    assert cache.empty


def test_cache_of_makes_one_plain_attribute():
    layer = Dense(2, 2)
    assert cache_of(layer, "_test_cache") is cache_of(layer, "_test_cache")
    assert "_test_cache" not in dict(layer.named_modules()) and len(layer.state_dict()) == 2


def test_wavelet_dense_form_is_kept_in_eval_and_follows_a_new_permutation():
    engine.manual_seed(0)
    layer = WaveletLinear(16, levels=2, filter_length=4, bias=True)
    x = np.random.default_rng(0).standard_normal((3, 16)).astype(layer.input_scale.dtype)
    layer.eval()
    with engine.no_grad():
        w, _ = layer.as_dense()
        assert layer.as_dense()[0] is w
        np.testing.assert_allclose(x @ w.data + layer.bias.data, layer(x).data, rtol=1e-5, atol=1e-6)
        other = WaveletLinear(16, levels=2, filter_length=4, bias=True)
        layer.load_state_dict(other.state_dict())
        w2, _ = layer.as_dense()
        assert w2 is not w
        np.testing.assert_allclose(x @ w2.data + layer.bias.data, layer(x).data, rtol=1e-5, atol=1e-6)
    layer.train()
    w3, _ = layer.as_dense()
    w3.sum().backward()
    assert layer.coeff_scale.grad is not None
