"""bench/speed.py: the LeNet rows, and the bare products of a Dense-only step beside them as its floor."""
import numpy as np
import pytest

from bench import speed
from layers.models import lenet300


def test_bare_products_form_each_product_of_a_dense_step():
    model = lenet300()
    shapes = []
    real_matmul = np.ndarray.__matmul__

    class Recorded(np.ndarray):
        def __matmul__(self, other):
            shapes.append((self.shape, np.shape(other)))
            return real_matmul(np.asarray(self), np.asarray(other)).view(Recorded)

        def __rmatmul__(self, other):
            shapes.append((np.shape(other), self.shape))
            return real_matmul(np.asarray(other), np.asarray(self)).view(Recorded)
    for layer in model.modules():     # every product then has a Recorded side, which records it once
        if type(layer).__name__ == "Dense":
            layer.weight.data = layer.weight.data.view(Recorded)
    x = np.ones((4, 784), np.float32).view(Recorded)
    speed._bare_products(model, x, np.array([0, 1, 2, 3]))()
    forward = [((4, 784), (784, 300)), ((4, 300), (300, 100)), ((4, 100), (100, 10))]
    weight_grads = [((100, 4), (4, 10)), ((300, 4), (4, 100)), ((784, 4), (4, 300))]
    input_grads = [((4, 10), (10, 100)), ((4, 100), (100, 300))]
    assert sorted(shapes) == sorted(forward + weight_grads + input_grads)


def test_the_floor_row_follows_the_dense_only_step_and_shares_its_anchor(monkeypatch):
    torch = pytest.importorskip("torch", reason="the LeNet rows compare with PyTorch")
    calls = []

    def one_call_each(fns, repeats):
        for fn in fns:
            fn()
        calls.append(len(fns))
        return [1.0, 2.0, 0.5][:len(fns)]
    monkeypatch.setattr(speed, "rounds_median_seconds", one_call_each)
    rows = []
    speed.bench_mlp_and_cnn(torch, rows, repeats=1)
    assert calls == [3, 2]      # LeNet-300-100: ours, PyTorch, the products; LeNet-5: ours, PyTorch
    assert [r["ours"] for r in rows] == ["engine", "NumPy products", "engine"]
    floor = rows[1]
    assert floor["what"].startswith("LeNet-300-100 train step's matrix products alone")
    assert (floor["ours_s"], floor["anchor_s"], floor["ratio"]) == (0.5, 2.0, 0.25)
