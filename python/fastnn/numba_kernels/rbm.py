"""Numba fallbacks of the RBM kernels: ``rbm_hidden``, ``rbm_visible``, ``rbm_cd_step``,
``rbm_free_energy``, ``rbm_pseudo_likelihood`` (the signatures of ``fastnn._C``).

The products run on the Numba GEMM (:mod:`.gemm`); the sampling draws the counter-based uniforms
of csrc/common/rng.h bit for bit (see fastnn.reference.rbm for the stages), so a fixed seed gives
the same samples here as in C++.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from .gemm import gemm, linear
from .nn_kernels import _M32, _S32, _mix32, _splitmix64

__all__ = ["rbm_hidden", "rbm_visible", "rbm_cd_step", "rbm_free_energy",
           "rbm_pseudo_likelihood"]

_JIT = dict(cache=True, nogil=True)
_SIGMOID = 3
_S9 = np.uint64(9)
_GAUSS_STREAM = 0x80000000


def _key(seed):
    h = _splitmix64(int(seed))
    return np.uint64(h & 0xFFFFFFFF), np.uint64(h >> 32)


@njit(inline="always")
def _uniform(k0, k1, idx, stage):
    bits = _mix32(_mix32((idx & _M32) ^ k0) ^ k1 ^ stage)
    return float((bits >> _S9) * np.uint64(2) + np.uint64(1)) * (1.0 / 16777216.0)


@njit(**_JIT)
def _bernoulli(p, k0, k1, stage):
    """p (2-D, C order) := 1 where the uniform of the element < p, else 0."""
    flat = p.reshape(-1)
    st = np.uint64(stage)
    for i in range(flat.size):
        u = _uniform(k0, k1, np.uint64(i), st)
        flat[i] = 1 if u < flat[i] else 0


@njit(**_JIT)
def _add_gaussian(z, k0, k1, stage):
    flat = z.reshape(-1)
    s1, s2 = np.uint64(stage), np.uint64(stage ^ 0x80000000)
    for i in range(flat.size):
        u1 = _uniform(k0, k1, np.uint64(i), s1)
        u2 = _uniform(k0, k1, np.uint64(i), s2)
        flat[i] += math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


@njit(**_JIT)
def _sigmoid_inplace(z):
    flat = z.reshape(-1)
    for i in range(flat.size):
        x = flat[i]
        if x >= 0:
            flat[i] = 1 / (1 + np.exp(-x))
        else:
            e = np.exp(x)
            flat[i] = e / (1 + e)


def rbm_hidden(h, v, w, b_hid, sample, seed):
    """h := sigmoid(v @ w.T + b_hid), Bernoulli-sampled (stage 0) when ``sample``."""
    if h.size == 0:
        return
    linear(h, None, v, w, b_hid, _SIGMOID, 0.0)
    if sample:
        _bernoulli(h, *_key(seed), 0)


def _visible(v, h, w, b_vis, gaussian, sample, k0, k1, stage):
    # v = h @ w + b_vis, then sigmoid (Bernoulli) and the draw.
    gemm(v, h, w, None, 1.0, 0.0)
    v += b_vis
    if gaussian:
        if sample:
            _add_gaussian(v, k0, k1, stage)
        return
    _sigmoid_inplace(v)
    if sample:
        _bernoulli(v, k0, k1, stage)


def rbm_visible(v, h, w, b_vis, gaussian, sample, seed):
    """v := visible means given h (sigmoid, or identity for Gaussian units), or samples."""
    if v.size == 0:
        return
    k0, k1 = _key(seed) if sample else (np.uint64(0), np.uint64(0))
    _visible(v, h, w, b_vis, gaussian, sample, k0, k1, 0)


def rbm_cd_step(w, b_vis, b_hid, chain, vel_w, vel_b_vis, vel_b_hid, v0, k, lr, momentum,
                weight_decay, gaussian, compute_error, seed, rows=None):
    """One CD-k / PCD update in place (fastnn.reference.rbm.rbm_cd_step); returns the
    reconstruction error, or NaN when ``compute_error`` is false. ``rows``: the batch is
    ``v0[rows]``."""
    if rows is not None:
        v0 = np.take(v0, rows, axis=0)
    dt = w.dtype
    nb, nh = v0.shape[0], w.shape[0]
    k0, k1 = _key(seed)
    h0 = np.empty((nb, nh), dt)
    linear(h0, None, v0, w, b_hid, _SIGMOID, 0.0)
    if chain is not None:
        hs = chain.copy()
    else:
        hs = h0.copy()
        _bernoulli(hs, k0, k1, 1)
    npart = hs.shape[0]
    vk = np.empty((npart, w.shape[1]), dt)
    hk = np.empty((npart, nh), dt)
    for t in range(1, k + 1):
        _visible(vk, hs, w, b_vis, gaussian, not gaussian, k0, k1, 2 * t)
        linear(hk, None, vk, w, b_hid, _SIGMOID, 0.0)
        if t < k or chain is not None:
            hs = hk.copy()
            _bernoulli(hs, k0, k1, 2 * t + 1)
    error = math.nan
    if compute_error:
        r = np.empty_like(v0)
        _visible(r, h0, w, b_vis, gaussian, False, k0, k1, 0)
        d = (v0.astype(np.float64) - r)
        error = float(np.sum(d * d) / max(nb, 1))
    a, c = dt.type(1.0 / max(nb, 1)), dt.type(1.0 / max(npart, 1))
    pos, gw = np.empty_like(w), np.empty_like(w)  # the GEMM's out must not alias its c
    gemm(pos, h0.T, v0, None, float(a), 0.0)
    gemm(gw, hk.T, vk, pos, -float(c), 1.0)
    if weight_decay != 0.0:
        gw -= dt.type(weight_decay) * w
    gbv = (v0.sum(0, dtype=dt) * a - vk.sum(0, dtype=dt) * c).astype(dt)
    gbh = (h0.sum(0, dtype=dt) * a - hk.sum(0, dtype=dt) * c).astype(dt)
    lr_t, mu = dt.type(lr), dt.type(momentum)
    if momentum != 0.0:
        for p, vel, g in ((w, vel_w, gw), (b_vis, vel_b_vis, gbv), (b_hid, vel_b_hid, gbh)):
            vel *= mu
            vel += lr_t * g
            p += vel
    else:
        for p, g in ((w, gw), (b_vis, gbv), (b_hid, gbh)):
            p += lr_t * g
    if chain is not None:
        chain[...] = hs
    return error


@njit(**_JIT)
def _softplus_rows(out, z, vb_term):
    n, m = z.shape
    for i in range(n):
        s = 0.0
        for j in range(m):
            x = float(z[i, j])
            s += max(x, 0.0) + math.log1p(math.exp(-abs(x)))
        out[i] = vb_term[i] - s


def rbm_free_energy(out, v, w, b_vis, b_hid, gaussian):
    """out[i] := F(v_i) (fastnn.reference.rbm.rbm_free_energy)."""
    if out.size == 0:
        return
    z = np.empty((v.shape[0], w.shape[0]), v.dtype)
    linear(z, None, v, w, b_hid, 0, 0.0)
    v64 = v.astype(np.float64)
    if gaussian:
        d = v64 - b_vis
        vt = 0.5 * np.sum(d * d, axis=1)
    else:
        vt = -(v64 @ b_vis.astype(np.float64))
    _softplus_rows(out, z, vt)


@njit(**_JIT)
def _pl_rows(out, v, w, z, b_vis, k0, k1):
    n, d = v.shape
    nh = w.shape[0]
    for i in range(n):
        bits = _mix32(_mix32(np.uint64(i) ^ k0) ^ k1)
        j = (bits * np.uint64(d)) >> _S32
        x = float(v[i, j])
        sign = 1.0 - 2.0 * x  # v_j -> 1 - v_j changes v_j by this
        diff = -sign * float(b_vis[j])  # F(flipped) - F(v), visible term
        for q in range(nh):
            a = float(z[i, q])
            b = a + sign * float(w[q, j])
            sa = max(a, 0.0) + math.log1p(math.exp(-abs(a)))
            sb = max(b, 0.0) + math.log1p(math.exp(-abs(b)))
            diff -= sb - sa
        # d * log sigmoid(diff) = -d * softplus(-diff)
        out[i] = -d * (max(-diff, 0.0) + math.log1p(math.exp(-abs(diff))))


def rbm_pseudo_likelihood(out, v, w, b_vis, b_hid, seed):
    """out[i] := the pseudo-likelihood of row i (fastnn.reference.rbm.rbm_pseudo_likelihood)."""
    if out.size == 0:
        return
    z = np.empty((v.shape[0], w.shape[0]), v.dtype)
    linear(z, None, v, w, b_hid, 0, 0.0)
    _pl_rows(out, v, w, z, b_vis, *_key(seed))
