"""Module behaviour the layers rely on: state_dict round trip and errors, repr counts, ModuleList."""
import numpy as np
import pytest

import engine
from layers import Dense, ModuleList, Sequential
from layers.models import lenet300


def test_state_dict_round_trip_restores_outputs(rng):
    engine.manual_seed(0)
    a = lenet300()
    engine.manual_seed(1)
    b = lenet300()
    x = rng.standard_normal((2, 784)).astype(np.float32)
    assert not np.allclose(a(x).data, b(x).data)
    b.load_state_dict(a.state_dict())
    np.testing.assert_array_equal(a(x).data, b(x).data)
    # a copy, not shared storage
    a[1].weight.data[0, 0] += 1.0
    assert not np.allclose(a(x).data, b(x).data)


def test_load_state_dict_errors_name_the_keys():
    model = Sequential(Dense(3, 2), Dense(2, 1))
    state = dict(model.state_dict())
    missing = {k: v for k, v in state.items() if k != "1.bias"}
    with pytest.raises(KeyError, match=r"missing keys \['1.bias'\]"):
        model.load_state_dict(missing)
    with pytest.raises(KeyError, match=r"unexpected keys \['2.weight'\]"):
        model.load_state_dict({**state, "2.weight": np.zeros(1)})
    with pytest.raises(ValueError, match=r"0.weight has shape \(2, 3\).*expects \(3, 2\)"):
        model.load_state_dict({**state, "0.weight": np.zeros((2, 3), np.float32)})
    report = model.load_state_dict(missing, strict=False)
    assert report["missing"] == ["1.bias"]


def test_repr_shows_parameter_counts():
    text = repr(lenet300())
    assert "Dense(784, 300)  # 235,500 params" in text
    assert "Dense(100, 10)  # 1,010 params" in text
    assert text.rstrip().endswith("# 266,610 params")


def test_module_list():
    items = ModuleList([Dense(2, 2), Dense(2, 3)])
    assert len(items) == 2 and items[1].n_out == 3
    items[0] = Dense(2, 4)
    assert [m.n_out for m in items] == [4, 3]
    assert sum(1 for _ in items.parameters()) == 4
    with pytest.raises(TypeError, match="ModuleList"):
        items.append(3)
