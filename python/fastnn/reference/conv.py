"""float64 references of the convolution family: conv2d, conv_transpose2d and their gradients.

Written to be checked by eye, not to be fast: the input is padded explicitly, and one loop over
the kernel window adds, for each tap (i, j), the strided slice of the padded input that tap sees
times that tap's weights (``np.einsum`` without path optimization, so no BLAS). The transposed
convolution is written from its own definition (each input pixel scatters a weighted copy of the
kernel into the output), not as the gradient of conv2d, so the two references check each other.
NaN and inf propagate as IEEE arithmetic says (inf * 0 and inf - inf are NaN), silently.

Images are NCHW; conv2d weights are (C_out, C_in/groups, kh, kw), conv_transpose2d weights
(C_in, C_out/groups, kh, kw), as PyTorch lays them out. ``stride``, ``padding``, ``dilation`` and
``output_padding`` take an int or a pair; conv2d's ``padding`` also takes "same" and "valid".
"""
from __future__ import annotations

import functools
from typing import Optional, Tuple, Union

import numpy as np

__all__ = ["conv2d", "conv2d_backward", "conv_transpose2d", "conv_transpose2d_backward",
           "conv2d_same_padding"]

Pair = Union[int, Tuple[int, int]]


def _f64(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def _quiet(fn):
    """Run fn with NumPy's floating-point warnings off (NaN and inf are results here)."""
    @functools.wraps(fn)
    def call(*args, **kwargs):
        with np.errstate(all="ignore"):
            return fn(*args, **kwargs)
    return call


def _pair(v: Pair) -> Tuple[int, int]:
    if isinstance(v, (tuple, list)):
        return int(v[0]), int(v[1])
    return int(v), int(v)


def conv2d_same_padding(kernel: Pair, dilation: Pair = 1) -> Tuple[Tuple[int, int],
                                                                   Tuple[int, int]]:
    """((top, bottom), (left, right)) for padding="same": a total of ``dilation * (k - 1)``
    per axis, the odd element at the bottom/right (as PyTorch pads)."""
    out = []
    for k, d in zip(_pair(kernel), _pair(dilation)):
        total = d * (k - 1)
        out.append((total // 2, total - total // 2))
    return out[0], out[1]


def _pads(padding, kernel, dilation) -> Tuple[Tuple[int, int], Tuple[int, int]]:
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0), (0, 0)
        if padding == "same":
            return conv2d_same_padding(kernel, dilation)
        raise ValueError(f"unknown padding {padding!r}")
    ph, pw = _pair(padding)
    return (ph, ph), (pw, pw)


def _taps(k: int, d: int, s: int, n_out: int):
    """For each tap i of a kernel axis: the slice of the padded input it reads for outputs
    0..n_out-1 (start i*d, step s)."""
    return [slice(i * d, i * d + s * (n_out - 1) + 1, s) for i in range(k)]


def _geometry(x, w, stride, padding, dilation):
    (pt, pb), (pl, pr) = _pads(padding, w.shape[2:], dilation)
    sh, sw = _pair(stride)
    dh, dw = _pair(dilation)
    kh, kw = w.shape[2:]
    oh = (x.shape[2] + pt + pb - dh * (kh - 1) - 1) // sh + 1
    ow = (x.shape[3] + pl + pr - dw * (kw - 1) - 1) // sw + 1
    return (pt, pb, pl, pr), (sh, sw), (dh, dw), (oh, ow)


@_quiet
def conv2d(x, w, b=None, stride: Pair = 1, padding: Union[Pair, str] = 0, dilation: Pair = 1,
           groups: int = 1) -> np.ndarray:
    """``y[n, o, p, q] = b[o] + sum_{c, i, j} w[o, c, i, j] * xpad[n, g*C_in/groups + c,
    p*sh + i*dh, q*sw + j*dw]`` with o in group g."""
    x, w = _f64(x), _f64(w)
    (pt, pb, pl, pr), (sh, sw), (dh, dw), (oh, ow) = _geometry(x, w, stride, padding, dilation)
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    n = x.shape[0]
    co, cig, kh, kw = w.shape
    cog = co // groups
    y = np.zeros((n, co, oh, ow))
    rows, cols = _taps(kh, dh, sh, oh), _taps(kw, dw, sw, ow)
    for g in range(groups):
        xg = xp[:, g * cig:(g + 1) * cig]
        wg = w[g * cog:(g + 1) * cog]
        for i in range(kh):
            for j in range(kw):
                y[:, g * cog:(g + 1) * cog] += np.einsum(
                    "nchw,oc->nohw", xg[:, :, rows[i], cols[j]], wg[:, :, i, j], optimize=False)
    if b is not None:
        y += _f64(b)[None, :, None, None]
    return y


@_quiet
def conv2d_backward(x, w, b, dy, stride: Pair = 1, padding: Union[Pair, str] = 0,
                    dilation: Pair = 1, groups: int = 1
                    ) -> Tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
    """Gradients ``(dx, dw, db)`` of :func:`conv2d` for the output gradient ``dy`` (``db`` is
    None when ``b`` is None): each tap's slice is read for dw and scattered back for dx."""
    x, w, dy = _f64(x), _f64(w), _f64(dy)
    (pt, pb, pl, pr), (sh, sw), (dh, dw_), (oh, ow) = _geometry(x, w, stride, padding, dilation)
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    dxp = np.zeros_like(xp)
    co, cig, kh, kw = w.shape
    cog = co // groups
    dw = np.zeros_like(w)
    rows, cols = _taps(kh, dh, sh, oh), _taps(kw, dw_, sw, ow)
    for g in range(groups):
        cin, cout = slice(g * cig, (g + 1) * cig), slice(g * cog, (g + 1) * cog)
        for i in range(kh):
            for j in range(kw):
                patch = xp[:, cin, rows[i], cols[j]]
                dw[cout, :, i, j] += np.einsum("nohw,nchw->oc", dy[:, cout], patch,
                                               optimize=False)
                dxp[:, cin, rows[i], cols[j]] += np.einsum("nohw,oc->nchw", dy[:, cout],
                                                           w[cout, :, i, j], optimize=False)
    dx = dxp[:, :, pt:pt + x.shape[2], pl:pl + x.shape[3]]
    db = None if b is None else dy.sum(axis=(0, 2, 3))
    return dx, dw, db


def _transpose_geometry(x, w, stride, padding, output_padding, dilation):
    sh, sw = _pair(stride)
    ph, pw = _pair(padding)
    oph, opw = _pair(output_padding)
    dh, dw = _pair(dilation)
    kh, kw = w.shape[2:]
    # The full scatter before cropping: (H-1)*s + d*(k-1) + 1 rows, plus the output padding.
    full_h = (x.shape[2] - 1) * sh + dh * (kh - 1) + 1 + oph
    full_w = (x.shape[3] - 1) * sw + dw * (kw - 1) + 1 + opw
    out_h, out_w = full_h - 2 * ph, full_w - 2 * pw
    return (sh, sw), (ph, pw), (dh, dw), (full_h, full_w), (out_h, out_w)


@_quiet
def conv_transpose2d(x, w, b=None, stride: Pair = 1, padding: Pair = 0,
                     output_padding: Pair = 0, dilation: Pair = 1,
                     groups: int = 1) -> np.ndarray:
    """Each input pixel ``x[n, c, p, q]`` adds ``x * w[c, o, i, j]`` at
    ``(p*sh + i*dh, q*sw + j*dw)`` of a full-size output, which is then cropped by ``padding``
    on every side (output_padding extends the bottom/right)."""
    x, w = _f64(x), _f64(w)
    (sh, sw), (ph, pw), (dh, dw), (fh, fw), (oh, ow) = _transpose_geometry(
        x, w, stride, padding, output_padding, dilation)
    n, _, h, wd = x.shape
    ci, cog, kh, kw = w.shape
    cig = ci // groups
    full = np.zeros((n, cog * groups, fh, fw))
    rows, cols = _taps(kh, dh, sh, h), _taps(kw, dw, sw, wd)
    for g in range(groups):
        xg = x[:, g * cig:(g + 1) * cig]
        wg = w[g * cig:(g + 1) * cig]
        for i in range(kh):
            for j in range(kw):
                full[:, g * cog:(g + 1) * cog, rows[i], cols[j]] += np.einsum(
                    "nchw,co->nohw", xg, wg[:, :, i, j], optimize=False)
    y = full[:, :, ph:ph + oh, pw:pw + ow].copy()
    if b is not None:
        y += _f64(b)[None, :, None, None]
    return y


@_quiet
def conv_transpose2d_backward(x, w, b, dy, stride: Pair = 1, padding: Pair = 0,
                              output_padding: Pair = 0, dilation: Pair = 1, groups: int = 1
                              ) -> Tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
    """Gradients ``(dx, dw, db)`` of :func:`conv_transpose2d`: the output gradient is placed
    back into the uncropped frame, and each tap gathers from it what that tap scattered."""
    x, w, dy = _f64(x), _f64(w), _f64(dy)
    (sh, sw), (ph, pw), (dh, dw_), (fh, fw), (oh, ow) = _transpose_geometry(
        x, w, stride, padding, output_padding, dilation)
    n, _, h, wd = x.shape
    ci, cog, kh, kw = w.shape
    cig = ci // groups
    full = np.zeros((n, cog * groups, fh, fw))
    full[:, :, ph:ph + oh, pw:pw + ow] = dy
    dx = np.zeros_like(x)
    dw = np.zeros_like(w)
    rows, cols = _taps(kh, dh, sh, h), _taps(kw, dw_, sw, wd)
    for g in range(groups):
        cin, cout = slice(g * cig, (g + 1) * cig), slice(g * cog, (g + 1) * cog)
        for i in range(kh):
            for j in range(kw):
                tap = full[:, cout, rows[i], cols[j]]
                dx[:, cin] += np.einsum("nohw,co->nchw", tap, w[cin, :, i, j], optimize=False)
                dw[cin, :, i, j] += np.einsum("nchw,nohw->co", x[:, cin], tap, optimize=False)
    db = None if b is None else dy.sum(axis=(0, 2, 3))
    return dx, dw, db
