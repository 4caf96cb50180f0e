"""im2col/col2im: every implementation (NumPy, Numba serial/parallel) agrees, and col2im is im2col's adjoint."""
import os
import subprocess
import sys

import numpy as np
import pytest

from engine import buffers
from engine.kernels import im2col as K
from tests.conftest import ROOT, have_module

IMPLEMENTATIONS = K.implementations()
GEOMETRIES = [
    # x shape, kh, kw, stride, padding, dilation
    ((2, 3, 6, 6), 3, 3, (1, 1), (0, 0), (1, 1)),
    ((3, 2, 7, 5), 2, 3, (2, 1), (1, 2), (1, 1)),
    ((1, 1, 9, 9), 3, 3, (2, 2), (1, 1), (2, 2)),
    ((4, 1, 28, 28), 5, 5, (1, 1), (0, 0), (1, 1)),
    ((1, 1, 1, 1), 1, 1, (1, 1), (0, 0), (1, 1)),
]


# the threaded kernels are opt-in and slow to compile, so they are checked in float64 only
NAME_DTYPE = [(n, d) for n in sorted(IMPLEMENTATIONS) for d in (np.float32, np.float64)
              if not (n == "numba_parallel" and d == np.float32)]


@pytest.mark.parametrize("name,dtype", NAME_DTYPE, ids=[f"{n}-{np.dtype(d).name}" for n, d in NAME_DTYPE])
@pytest.mark.parametrize("geometry", GEOMETRIES, ids=str)
def test_implementations_agree_with_numpy_reference(name, dtype, geometry, rng):
    shape, kh, kw, stride, padding, dilation = geometry
    im2col, col2im = IMPLEMENTATIONS[name]
    x = rng.standard_normal(shape).astype(dtype)
    cols = im2col(x, kh, kw, stride, padding, dilation)
    reference = K.im2col_numpy(x, kh, kw, stride, padding, dilation)
    assert cols.dtype == dtype and cols.shape == reference.shape
    np.testing.assert_array_equal(cols, reference)
    g = rng.standard_normal(cols.shape).astype(dtype)
    img = col2im(g, shape, stride, padding, dilation)
    assert img.dtype == dtype and img.shape == shape
    np.testing.assert_allclose(img, K.col2im_numpy(g, shape, stride, padding, dilation),
                               rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-5)


CHANNEL_MAJOR = K.channel_major_implementations()
CM_NAME_DTYPE = [(n, d) for n in sorted(CHANNEL_MAJOR) for d in (np.float32, np.float64)
                 if not (n == "numba_parallel" and d == np.float32)]


# padding: taps whose window lies wholly in it, padding wider than the kernel's reach, strides and
# dilations that skip the image's edge
PADDED_GEOMETRIES = [
    ((2, 2, 5, 5), 3, 3, (3, 3), (2, 2), (1, 1)),
    ((1, 1, 3, 3), 2, 2, (1, 1), (3, 3), (1, 1)),
    ((2, 1, 4, 1), 3, 2, (1, 2), (2, 3), (1, 1)),
    ((1, 2, 6, 7), 3, 3, (2, 3), (4, 1), (3, 2)),
    ((1, 1, 5, 5), 2, 2, (4, 4), (2, 2), (1, 3)),
]


@pytest.mark.parametrize("name,dtype", CM_NAME_DTYPE, ids=[f"{n}-{np.dtype(d).name}" for n, d in CM_NAME_DTYPE])
@pytest.mark.parametrize("transposed_input", [False, True], ids=["contiguous", "strided input"])
@pytest.mark.parametrize("geometry", GEOMETRIES + PADDED_GEOMETRIES, ids=str)
def test_channel_major_patches_are_the_batch_major_ones_transposed(name, dtype, geometry, transposed_input, rng):
    shape, kh, kw, stride, padding, dilation = geometry
    x = rng.standard_normal(shape).astype(dtype)
    if transposed_input:    # the same values, laid out (H, W, B, C) in memory
        x = np.ascontiguousarray(x.transpose(2, 3, 0, 1)).transpose(2, 3, 0, 1)
    cols = CHANNEL_MAJOR[name](x, kh, kw, stride, padding, dilation)
    expected = K.im2col_numpy(x, kh, kw, stride, padding, dilation).transpose(1, 2, 3, 0, 4, 5)
    assert cols.dtype == dtype and cols.flags.c_contiguous
    np.testing.assert_array_equal(cols, expected)


def test_channel_major_patch_matrix_by_hand():
    # two 3x3 images, 2x2 kernel: row (tap) k of the (taps, batch * positions) matrix holds that
    # tap's value at every window of image 0, then of image 1
    x = np.stack([np.arange(9.0), 10 + np.arange(9.0)]).reshape(2, 1, 3, 3)
    cols = K.im2col_channel_major(x, 2, 2, (1, 1), (0, 0), (1, 1)).reshape(4, 2 * 4)
    np.testing.assert_array_equal(cols[0], [0, 1, 3, 4, 10, 11, 13, 14])
    np.testing.assert_array_equal(cols[3], [4, 5, 7, 8, 14, 15, 17, 18])


@pytest.mark.parametrize("name", sorted(IMPLEMENTATIONS))
@pytest.mark.parametrize("geometry", GEOMETRIES[:3], ids=str)
def test_col2im_is_the_adjoint_of_im2col(name, geometry, rng):
    # <im2col(x), c> == <x, col2im(c)> for all x, c: the defining property of the backward pass
    shape, kh, kw, stride, padding, dilation = geometry
    im2col, col2im = IMPLEMENTATIONS[name]
    x = rng.standard_normal(shape)
    c = rng.standard_normal(im2col(x, kh, kw, stride, padding, dilation).shape)
    lhs = float((im2col(x, kh, kw, stride, padding, dilation) * c).sum())
    rhs = float((x * col2im(c, shape, stride, padding, dilation)).sum())
    assert lhs == pytest.approx(rhs, rel=1e-12)


def test_im2col_values_by_hand():
    x = np.arange(9.0).reshape(1, 1, 3, 3)
    cols = K.im2col(x, 2, 2, (1, 1), (0, 0), (1, 1))
    # tap (0, 0) sees the top-left 2x2 corner of every window, tap (1, 1) the bottom-right
    np.testing.assert_array_equal(cols[0, 0, 0, 0], [[0, 1], [3, 4]])
    np.testing.assert_array_equal(cols[0, 0, 1, 1], [[4, 5], [7, 8]])
    counts = K.col2im(np.ones_like(cols), x.shape, (1, 1), (0, 0), (1, 1))
    np.testing.assert_array_equal(counts[0, 0], [[1, 2, 1], [2, 4, 2], [1, 2, 1]])


def test_dispatcher_honours_disable_env(monkeypatch):
    monkeypatch.setenv("COMPACTNET_DISABLE_NUMBA", "1")
    assert not K.numba_enabled()
    assert K.implementations().keys() == {"numpy"}
    with pytest.raises(RuntimeError, match="Numba is not available"):
        K.im2col_nb(np.zeros((1, 1, 2, 2)), 1, 1, (1, 1), (0, 0), (1, 1))
    monkeypatch.delenv("COMPACTNET_DISABLE_NUMBA")
    assert K.numba_enabled() == have_module("numba")


def test_dispatcher_picks_numba_when_available(monkeypatch):
    calls = []
    if "numba" not in IMPLEMENTATIONS:
        pytest.skip("numba is not installed or COMPACTNET_DISABLE_NUMBA=1")
    monkeypatch.setattr(K, "im2col_numpy", lambda *a: calls.append("numpy"))
    K.im2col(np.zeros((1, 1, 3, 3)), 2, 2, (1, 1), (0, 0), (1, 1))
    assert calls == []  # the NumPy reference was not used
    monkeypatch.setenv("COMPACTNET_DISABLE_NUMBA", "1")
    K.im2col(np.zeros((1, 1, 3, 3)), 2, 2, (1, 1), (0, 0), (1, 1))
    assert calls == ["numpy"]


def test_engine_imports_and_convolves_without_numba():
    # numba blocked: the kernels must fall back to NumPy without an ImportError
    code = ("import sys; sys.modules['numba'] = None\n"
            "import numpy as np, engine, engine.ops as F\n"
            "from engine.kernels import im2col as K\n"
            "assert not K.numba_enabled()\n"
            "y = F.conv2d(np.ones((1, 1, 4, 4)), np.ones((1, 1, 3, 3)))\n"
            "assert float(y.data.sum()) == 36.0, y.data\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("numba_path", [True, False], ids=["numba", "numpy"])
@pytest.mark.parametrize("geometry", GEOMETRIES + PADDED_GEOMETRIES, ids=str)
def test_channel_major_filler_fills_each_chunk_as_im2col_does(geometry, numba_path, monkeypatch, rng):
    """The per-chunk patch filler of a chunked convolution, settled once for the whole input, gives each
    chunk (the last one short) the patches im2col_channel_major gives it."""
    if numba_path and not K.numba_enabled():
        pytest.skip("Numba is not installed (or COMPACTNET_DISABLE_NUMBA is set)")
    if not numba_path:
        monkeypatch.setattr(K, "_numba_for", lambda array, direction: None)
    shape, kh, kw, stride, padding, dilation = geometry
    x = rng.standard_normal((3,) + shape[1:])
    fill = K.channel_major_filler(x, kh, kw, stride, padding, dilation, images=2)
    for start in (0, 2):
        part = x[start:start + 2]
        expected = K.im2col_cm_numpy(part, kh, kw, stride, padding, dilation)
        out = np.full(expected.shape, np.nan)
        fill(part, out)
        np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("geometry", PADDED_GEOMETRIES + GEOMETRIES[1:3], ids=str)
def test_channel_major_filler_keeps_its_padded_copy_right_across_chunks_of_any_size(geometry, rng):
    """The padded filler keeps the zero-bordered copy of its first chunk and writes only the interior of
    later ones: chunks of any order and size, a larger one after smaller ones (a new copy), and calls
    after release() all give im2col_channel_major's patches, and released copies go back to the pool."""
    if not K.numba_enabled():
        pytest.skip("Numba is not installed (or COMPACTNET_DISABLE_NUMBA is set)")
    shape, kh, kw, stride, padding, dilation = geometry
    x = rng.standard_normal((4,) + shape[1:])
    fill = K.channel_major_filler(x, kh, kw, stride, padding, dilation, images=2)
    for start, stop in ((0, 2), (2, 3), (3, 4), (0, 4), (1, 3), ("release", None), (2, 4), (0, 1)):
        if start == "release":
            fill.release()
            continue
        part = x[start:stop]
        expected = K.im2col_cm_numpy(part, kh, kw, stride, padding, dilation)
        out = np.full(expected.shape, np.nan)
        fill(part, out)
        np.testing.assert_array_equal(out, expected)
    fill.release()
    fill.release()          # a second release has nothing left to give back


def test_channel_major_filler_gives_its_padded_copy_back_to_the_pool_on_release(rng):
    """A padded copy large enough for the buffer pool is handed back by release(), once."""
    if not K.numba_enabled():
        pytest.skip("Numba is not installed (or COMPACTNET_DISABLE_NUMBA is set)")
    x = rng.standard_normal((2, 4, 126, 126))            # padded by 1: 2 x 4 x 128 x 128 doubles, 1 MiB
    fill = K.channel_major_filler(x, 3, 3, (1, 1), (1, 1), (1, 1), images=2)
    out = np.empty((4, 3, 3, 2, 126, 126))
    fill(x, out)
    pool = buffers.default_pool()
    pool.clear()
    fill.release()
    assert pool.held_bytes == 2 * 4 * 128 * 128 * 8
    fill.release()
    assert pool.held_bytes == 2 * 4 * 128 * 128 * 8
    pool.clear()
