"""Data augmentation for image batches: random shifts."""
import numpy as np


def random_shift(images, max_shift, rng):
    """Each image of a (B, C, H, W) batch moved by its own random (dy, dx) in [-max_shift, max_shift].

    out[b, :, y + dy, x + dx] = images[b, :, y, x]; the uncovered border takes the image's minimum
    (the background of a normalised MNIST digit). Returns a new array; `rng` a NumPy Generator.
    """
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"random_shift: expected image batches (B, C, H, W), got shape {images.shape}")
    if isinstance(max_shift, bool) or not isinstance(max_shift, (int, np.integer)) or max_shift < 0:
        raise ValueError(f"random_shift: max_shift must be an int >= 0, got {max_shift!r}")
    batch, _, height, width = images.shape
    if max_shift == 0 or batch == 0:
        return images.copy()
    shifts = rng.integers(-max_shift, max_shift + 1, size=(batch, 2))
    out = np.empty_like(images)
    out[...] = images.reshape(batch, -1).min(axis=1)[:, None, None, None]
    for b, (dy, dx) in enumerate(shifts):
        rows_from, rows_to = max(0, -dy), height - max(0, dy)
        cols_from, cols_to = max(0, -dx), width - max(0, dx)
        if rows_from < rows_to and cols_from < cols_to:
            out[b, :, rows_from + dy:rows_to + dy, cols_from + dx:cols_to + dx] = \
                images[b, :, rows_from:rows_to, cols_from:cols_to]
    return out
