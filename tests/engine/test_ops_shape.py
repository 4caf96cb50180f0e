"""Gradient checks and NumPy comparisons for the shape ops: reshape, transpose, indexing, joins, pad."""
import numpy as np
import pytest

import engine
import engine.ops as F
from tests.engine._helpers import leaf, check


@pytest.mark.parametrize("shape,new", [((2, 3), (3, 2)), ((2, 3), (-1,)), ((1, 6), (2, 1, 3)),
                                       ((4,), (2, 2)), ((1,), ())], ids=str)
def test_reshape(shape, new, rng):
    x = rng.standard_normal(shape)
    np.testing.assert_array_equal(F.reshape(leaf(x), new).data, x.reshape(new))
    assert check(lambda t: F.reshape(t, new), x)


def test_reshape_method_forms_and_error(rng):
    x = rng.standard_normal((2, 3))
    np.testing.assert_array_equal(leaf(x).reshape(3, 2).data, x.reshape(3, 2))
    np.testing.assert_array_equal(leaf(x).reshape((6,)).data, x.reshape(6))
    with pytest.raises(ValueError, match=r"reshape.*\(2, 3\).*\(4,\)"):
        F.reshape(leaf(x), (4,))


@pytest.mark.parametrize("shape,axes", [((2, 3), None), ((2, 3, 4), (1, 2, 0)), ((2, 3, 4), (-1, 0, 1)),
                                        ((1, 3, 1), (2, 0, 1))], ids=str)
def test_transpose(shape, axes, rng):
    x = rng.standard_normal(shape)
    np.testing.assert_array_equal(F.transpose(leaf(x), axes).data, np.transpose(x, axes))
    assert check(lambda t: F.transpose(t, axes), x)


def test_transpose_spellings(rng):
    x = rng.standard_normal((2, 3, 4))
    np.testing.assert_array_equal(leaf(x).transpose(2, 0, 1).data, x.transpose(2, 0, 1))
    np.testing.assert_array_equal(leaf(x).T.data, x.T)
    np.testing.assert_array_equal(F.swapaxes(leaf(x), 0, 2).data, np.swapaxes(x, 0, 2))
    assert check(lambda t: F.swapaxes(t, 0, -1), x)
    with pytest.raises(ValueError, match="transpose"):
        F.transpose(leaf(x), (0, 0, 1))


@pytest.mark.parametrize("shape,target", [((3,), (2, 3)), ((2, 1), (2, 4)), ((1, 3, 1), (2, 3, 2)),
                                          ((), (2, 2))], ids=str)
def test_broadcast_to(shape, target, rng):
    x = rng.standard_normal(shape)
    np.testing.assert_array_equal(F.broadcast_to(leaf(x), target).data, np.broadcast_to(x, target))
    assert check(lambda t: F.broadcast_to(t, target), x)


@pytest.mark.parametrize("shape,axis", [((2, 3), 0), ((2, 3), 1), ((2, 3), -1), ((), 0)], ids=str)
def test_expand_dims(shape, axis, rng):
    x = rng.standard_normal(shape)
    np.testing.assert_array_equal(F.expand_dims(leaf(x), axis).data, np.expand_dims(x, axis))
    assert check(lambda t: F.expand_dims(t, axis), x)


@pytest.mark.parametrize("shape,axis", [((1, 3, 1), None), ((1, 3, 1), 0), ((1, 3, 1), -1),
                                        ((2, 1, 1), (1, 2))], ids=str)
def test_squeeze(shape, axis, rng):
    x = rng.standard_normal(shape)
    np.testing.assert_array_equal(F.squeeze(leaf(x), axis).data, np.squeeze(x, axis))
    assert check(lambda t: F.squeeze(t, axis), x)


def test_squeeze_rejects_a_wide_axis():
    with pytest.raises(ValueError, match="squeeze.*size 3"):
        F.squeeze(leaf(np.ones((1, 3))), 1)


def test_flatten(rng):
    x = rng.standard_normal((2, 3, 4))
    np.testing.assert_array_equal(F.flatten(leaf(x)).data, x.reshape(2, 12))
    np.testing.assert_array_equal(leaf(x).flatten().data, x.reshape(-1))
    assert check(F.flatten, x)


INDICES = [
    ("int", 1), ("negative int", -1), ("slice", slice(1, 3)), ("step slice", slice(None, None, 2)),
    ("tuple", (slice(None), 0)), ("ellipsis+None", (Ellipsis, None, 1)),
    ("int array", np.array([0, 2])), ("repeated ints", np.array([2, 0, 2, 2])),
    ("2-D int array", np.array([[0, 1], [1, 1]])),
    ("paired arrays with repeats", (np.array([0, 0, 2]), np.array([1, 1, 0]))),
    ("array and slice", (np.array([1, 1]), slice(0, 2))),
    ("list", [2, 2, 0]),
]


@pytest.mark.parametrize("index", [i for _, i in INDICES], ids=[n for n, _ in INDICES])
def test_getitem(index, rng):
    x = rng.standard_normal((3, 4))
    np_index = index if not isinstance(index, list) else np.array(index)
    np.testing.assert_array_equal(leaf(x)[index].data, x[np_index])
    assert check(lambda t: t[index], x)


def test_getitem_repeated_indices_sum_their_gradients():
    x = leaf(np.zeros(4))
    x[np.array([0, 0, 3, 0])].sum().backward()
    np.testing.assert_array_equal(x.grad, [3.0, 0.0, 0.0, 1.0])


def test_getitem_boolean_mask_and_tensor_index(rng):
    data = rng.standard_normal((3, 4))
    mask = data > 0
    assert check(lambda t: t[mask], data)
    index = engine.Tensor(np.array([2, 0]))
    np.testing.assert_array_equal(leaf(data)[index].data, data[[2, 0]])


@pytest.mark.parametrize("shapes,axis", [([(2, 3), (1, 3), (3, 3)], 0), ([(2, 1), (2, 3)], 1),
                                         ([(2, 2), (2, 2)], -1), ([(1, 2, 1)], 2)], ids=str)
def test_concat(shapes, axis, rng):
    xs = [rng.standard_normal(s) for s in shapes]
    np.testing.assert_array_equal(F.concat([leaf(x) for x in xs], axis).data, np.concatenate(xs, axis))
    assert check(lambda *ts: F.concat(ts, axis), *xs)


@pytest.mark.parametrize("shape,n,axis", [((3,), 2, 0), ((2, 3), 3, 1), ((2, 1), 2, -1), ((), 3, 0)],
                         ids=str)
def test_stack(shape, n, axis, rng):
    xs = [rng.standard_normal(shape) for _ in range(n)]
    np.testing.assert_array_equal(F.stack([leaf(x) for x in xs], axis).data, np.stack(xs, axis))
    assert check(lambda *ts: F.stack(ts, axis), *xs)


def test_stack_shape_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match="stack"):
        F.stack([leaf(np.ones(2)), leaf(np.ones(3))])


@pytest.mark.parametrize("shape,sections,axis", [((6,), 3, 0), ((2, 5), [1, 3], 1), ((4, 2), 1, 0),
                                                 ((3, 4), [2], -1)], ids=str)
def test_split(shape, sections, axis, rng):
    x = rng.standard_normal(shape)
    parts = F.split(leaf(x), sections, axis)
    expected = np.split(x, sections, axis)
    assert len(parts) == len(expected)
    for p, e in zip(parts, expected):
        np.testing.assert_array_equal(p.data, e)
    weights = [rng.standard_normal(e.shape) for e in expected]
    # every part weighted differently, so a mixed-up part would show in the gradient
    assert check(lambda t: sum((p * w).sum() for p, w in zip(F.split(t, sections, axis), weights)), x)


def test_split_with_unused_part_gets_zero_gradient(rng):
    x = leaf(rng.standard_normal(6))
    first, _, third = F.split(x, 3)
    (first.sum() + 2 * third.sum()).backward()
    np.testing.assert_array_equal(x.grad, [1, 1, 0, 0, 2, 2])


def test_split_uneven_is_a_clear_error():
    with pytest.raises(ValueError, match="split"):
        F.split(leaf(np.ones(5)), 2)


@pytest.mark.parametrize("shape,width,value", [((3,), 2, 0.0), ((2, 3), ((1, 0), (2, 1)), 1.5),
                                               ((2, 2), (1, 2), -1.0), ((1, 2, 2), [(0, 0), (1, 1), (0, 2)], 0.0)],
                         ids=str)
def test_pad(shape, width, value, rng):
    x = rng.standard_normal(shape)
    np.testing.assert_array_equal(F.pad(leaf(x), width, value).data,
                                  np.pad(x, width, mode="constant", constant_values=value))
    assert check(lambda t: F.pad(t, width, value), x)


def test_pad_bad_width_is_a_clear_error():
    with pytest.raises(ValueError, match="pad"):
        F.pad(leaf(np.ones((2, 2))), [(1, 1)] * 3)
