"""Preparing arrays for training: scaling, standardization, one-hot labels, a validation split.

Statistics are computed once (on the training data) and passed back in for other data, so the
validation and test sets get exactly the transformation the model was trained with.
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

# Elements per chunk when accumulating statistics: the float64 temporaries stay a few MB
# instead of 8 bytes for every element of a uint8 data set.
_CHUNK_ELEMENTS = 1 << 20


def normalize(x, low=None, high=None, *, dtype=np.float32) -> np.ndarray:
    """Map values from [low, high] to [0, 1]: ``(x - low) / (high - low)`` as a new float array.

    For unsigned integer data the range defaults to the dtype's full range, so uint8 images are
    divided by 255 (255 maps to exactly 1.0). Other data has no implied range: pass ``low`` and
    ``high`` as numbers (taken from the training data, then reused). Values outside the range
    are not clipped.
    """
    x = np.asarray(x)
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        raise TypeError(f"normalize: dtype must be a floating-point type, got {dtype}")
    if low is None and high is None:
        if x.dtype.kind != "u":
            raise TypeError(f"normalize: x has dtype {x.dtype}, which has no implied range; "
                            f"pass low= and high= (e.g. the training data's min and max)")
        low, high = 0, np.iinfo(x.dtype).max
    elif low is None or high is None:
        raise TypeError("normalize: pass both low and high, or neither")
    low, high = float(low), float(high)
    if not np.isfinite(low) or not np.isfinite(high) or not high > low:
        raise ValueError(f"normalize: need finite low < high, got low={low}, high={high}")
    out = x.astype(dtype)
    if low != 0:
        out -= dtype.type(low)
    # Division rather than multiplication by the reciprocal keeps high -> 1.0 exact.
    out /= dtype.type(high - low)
    return out


def standardize(x, mean=None, std=None, *, axis: Optional[int] = None, eps: float = 1e-7,
                dtype=None) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return ``((x - mean) / std, mean, std)``: mean 0 and variance 1 on the data the statistics
    came from.

    Without ``mean`` and ``std`` they are computed from ``x`` (in float64): one value for the
    whole array with ``axis=None``, one per feature (over the samples, axis 0) with ``axis=0``.
    Pass the returned pair back to transform other data identically::

        x_train_s, mean, std = standardize(x_train)
        x_test_s, _, _ = standardize(x_test, mean, std)

    A standard deviation below ``eps`` (a constant feature) is replaced by 1 so that feature maps
    to 0 rather than inf; the returned ``std`` holds the value actually used. The output has
    ``dtype``, by default x's dtype when that is floating-point, else float32.
    """
    x = np.asarray(x)
    if x.dtype.kind not in "uif":
        raise TypeError(f"standardize: x must hold numbers, got dtype {x.dtype}")
    if dtype is None:
        dtype = x.dtype if x.dtype.kind == "f" else np.float32
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        raise TypeError(f"standardize: dtype must be a floating-point type, got {dtype}")
    if (mean is None) != (std is None):
        raise TypeError("standardize: pass both mean and std, or neither")
    if mean is None:
        if axis not in (None, 0):
            raise ValueError(f"standardize: axis must be None (one mean for all values) or 0 "
                             f"(one per feature), got {axis!r}")
        if x.ndim == 0 or x.size == 0:
            raise ValueError(f"standardize: cannot compute statistics of an array of shape "
                             f"{x.shape}")
        mean, std = _mean_std(x, axis)
        std = np.where(std < eps, 1.0, std)
    else:
        mean = np.asarray(mean, dtype=np.float64)
        std = np.asarray(std, dtype=np.float64)
        for label, stat in (("mean", mean), ("std", std)):
            try:
                ok = np.broadcast_shapes(stat.shape, x.shape) == x.shape
            except ValueError:
                ok = False
            if not ok:
                raise ValueError(f"standardize: {label} of shape {stat.shape} does not broadcast "
                                 f"to x of shape {x.shape}")
        if not np.all(std > 0):
            raise ValueError("standardize: std must be positive everywhere")
    out = x.astype(dtype)
    out -= mean.astype(dtype)
    out /= std.astype(dtype)
    return out, mean, std


def _mean_std(x: np.ndarray, axis: Optional[int]) -> Tuple[np.ndarray, np.ndarray]:
    # Two passes over row chunks: the centred second pass avoids the cancellation of
    # E[x^2] - E[x]^2, the chunks bound the float64 temporaries.
    rows = max(1, _CHUNK_ELEMENTS // max(1, x[0].size))
    chunks = [x[i:i + rows] for i in range(0, x.shape[0], rows)]
    count = x.size if axis is None else x.shape[0]
    mean = sum(c.sum(axis=axis, dtype=np.float64) for c in chunks) / count
    sq = sum(np.square(c.astype(np.float64) - mean).sum(axis=axis) for c in chunks)
    return np.asarray(mean), np.sqrt(sq / count)


def train_val_split(x, y, val_fraction: float = 0.1, *, seed=0, shuffle: bool = True):
    """Split paired samples into ``((x_train, y_train), (x_val, y_val))``.

    ``round(len(x) * val_fraction)`` samples go to validation. With ``shuffle`` they are drawn at
    random from ``np.random.default_rng(seed)``: the same seed gives the same split (``seed=None``
    draws fresh entropy; a ``numpy.random.Generator`` is used as given). Without ``shuffle`` the
    last samples are the validation set, as Keras' ``validation_split`` does, and the results
    are views of x and y.
    """
    x = np.asarray(x)
    y = np.asarray(y)
    if x.ndim == 0 or y.ndim == 0:
        raise ValueError("train_val_split: x and y must have a sample axis (at least 1-D)")
    if len(x) != len(y):
        raise ValueError(f"train_val_split: x has {len(x)} samples but y has {len(y)}")
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"train_val_split: val_fraction must lie strictly between 0 and 1, "
                         f"got {val_fraction}")
    n = len(x)
    n_val = int(round(n * val_fraction))
    if n_val == 0 or n_val == n:
        raise ValueError(f"train_val_split: {n} samples with val_fraction={val_fraction} leave "
                         f"{n - n_val} for training and {n_val} for validation; both need some")
    if not shuffle:
        cut = n - n_val
        return (x[:cut], y[:cut]), (x[cut:], y[cut:])
    order = np.random.default_rng(seed).permutation(n)
    val, train = order[:n_val], order[n_val:]
    return (x[train], y[train]), (x[val], y[val])


def one_hot(y, num_classes: Optional[int] = None, *, dtype=np.float32) -> np.ndarray:
    """Integer labels of any shape -> array of shape ``y.shape + (num_classes,)`` with one 1 per
    label. ``num_classes`` defaults to ``max(y) + 1``; labels outside 0..num_classes-1 are an
    error."""
    y = np.asarray(y)
    if y.dtype.kind not in "iu":
        raise TypeError(f"one_hot: labels must be integers, got dtype {y.dtype}")
    if num_classes is None:
        if y.size == 0:
            raise ValueError("one_hot: cannot infer num_classes from empty labels; pass it")
        num_classes = int(y.max()) + 1
    num_classes = int(num_classes)
    if num_classes < 1:
        raise ValueError(f"one_hot: num_classes must be at least 1, got {num_classes}")
    if y.size and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        bad = int(y.min()) if int(y.min()) < 0 else int(y.max())
        raise ValueError(f"one_hot: label {bad} is out of range 0..{num_classes - 1}")
    out = np.zeros((y.size, num_classes), dtype=dtype)
    out[np.arange(y.size), y.reshape(-1)] = 1
    return out.reshape(y.shape + (num_classes,))
