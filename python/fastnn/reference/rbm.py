"""float64 references of the restricted-Boltzmann-machine ops (fastnn.ops.rbm).

The random numbers are the counter-based ones of csrc/common/rng.h: the uniform of element
(i, j) of an (rows, cols) matrix in sampling stage s is
``(2 * (mix32(mix32(idx ^ k0) ^ k1 ^ s) >> 9) + 1) / 2^24`` (an odd multiple of 2^-24, exact in
float32) with ``idx = i * cols + j`` and
``(k0, k1) = splitmix64(seed)``, so these functions draw exactly the samples every backend draws.
A Bernoulli sample is ``u < p``. Stages of one contrastive-divergence step: the hidden sample of
the data is stage 1, the visible sample of Gibbs step t is stage 2t, the hidden sample after it
stage 2t + 1 (the last one only when a persistent chain keeps it).
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from .nn_ops import _mix32, _splitmix64

__all__ = ["rbm_uniform", "rbm_gaussian_noise", "rbm_hidden", "rbm_visible", "rbm_cd_step",
           "rbm_free_energy", "rbm_pseudo_likelihood", "rbm_flip_index"]

_M32 = 0xFFFFFFFF
GAUSS_STREAM = 0x80000000  # the second uniform of a Box-Muller pair: stage ^ this


def _bits(shape, seed: int, stage: int) -> np.ndarray:
    h = _splitmix64(int(seed))
    k0, k1 = np.uint64(h & _M32), np.uint64(h >> 32)
    n = int(np.prod(shape, dtype=np.int64))
    i = np.arange(n, dtype=np.uint64)
    return _mix32(_mix32(i ^ k0) ^ k1 ^ np.uint64(stage)).reshape(shape)


def rbm_uniform(shape, seed: int, stage: int) -> np.ndarray:
    """The uniforms in (0, 1) every backend draws for (seed, stage), float64."""
    odd = (_bits(shape, seed, stage) >> np.uint64(9)) * np.uint64(2) + np.uint64(1)
    return odd.astype(np.float64) * 2.0 ** -24


def rbm_gaussian_noise(shape, seed: int, stage: int) -> np.ndarray:
    """Standard normal noise by Box-Muller from the stage's uniforms and its partner stream."""
    u1 = rbm_uniform(shape, seed, stage)
    u2 = rbm_uniform(shape, seed, stage ^ GAUSS_STREAM)
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def _f64(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def rbm_hidden(v, w, b_hid, *, sample: bool = False, seed: Optional[int] = None,
               stage: int = 0) -> np.ndarray:
    """sigmoid(v @ w.T + b_hid), or its Bernoulli samples (0/1) drawn with (seed, stage)."""
    p = _sigmoid(_f64(v) @ _f64(w).T + _f64(b_hid))
    if sample:
        p = (rbm_uniform(p.shape, seed, stage) < p).astype(np.float64)
    return p


def rbm_visible(h, w, b_vis, *, visible: str = "bernoulli", sample: bool = False,
                seed: Optional[int] = None, stage: int = 0) -> np.ndarray:
    """Visible means given h (sigmoid for Bernoulli units, the identity for unit-variance
    Gaussian ones), or samples: Bernoulli 0/1, or mean + N(0, 1) noise."""
    z = _f64(h) @ _f64(w) + _f64(b_vis)
    if visible == "gaussian":
        return z + rbm_gaussian_noise(z.shape, seed, stage) if sample else z
    p = _sigmoid(z)
    if sample:
        p = (rbm_uniform(p.shape, seed, stage) < p).astype(np.float64)
    return p


def rbm_cd_step(v0, w, b_vis, b_hid, *, k: int = 1, persistent_chain=None, lr: float,
                momentum: float = 0.0, weight_decay: float = 0.0, seed: int,
                visible: str = "bernoulli", velocity=None, compute_error: bool = True):
    """One CD-k / PCD update, returned (nothing is modified):
    ``(w, b_vis, b_hid, chain, velocity, error)``.

    Positive phase: hidden probabilities h0 of the data. Negative phase: k Gibbs steps from a
    hidden sample of h0 (CD) or from the persistent chain (PCD); visible units are sampled
    (Bernoulli) or taken at their mean (Gaussian), the last hidden layer hk is kept as
    probabilities. Gradient ``g_w = h0.T v0 / B - hk.T vk / P - weight_decay * w`` (P the number
    of negative particles), ``g_b`` alike without decay; update ``vel = momentum * vel + lr * g``,
    ``param += vel`` (``param += lr * g`` without momentum). ``error``: the mean over the batch of
    the summed squared difference between v0 and its mean-field reconstruction (visible means given
    h0), computed with the parameters before the update.
    """
    v0, w, bv, bh = _f64(v0), _f64(w).copy(), _f64(b_vis).copy(), _f64(b_hid).copy()
    gaussian = visible == "gaussian"
    h0 = rbm_hidden(v0, w, bh)
    if persistent_chain is not None:
        hs = _f64(persistent_chain)
    else:
        hs = (rbm_uniform(h0.shape, seed, 1) < h0).astype(np.float64)
    hk = vk = None
    for t in range(1, k + 1):
        vk = rbm_visible(hs, w, bv, visible=visible, sample=not gaussian, seed=seed, stage=2 * t)
        hk = rbm_hidden(vk, w, bh)
        if t < k or persistent_chain is not None:
            hs = (rbm_uniform(hk.shape, seed, 2 * t + 1) < hk).astype(np.float64)
    error = None
    if compute_error:
        r = rbm_visible(h0, w, bv, visible=visible)
        error = float(np.sum((v0 - r) ** 2) / max(v0.shape[0], 1))
    nb, npart = max(v0.shape[0], 1), max(hk.shape[0], 1)
    gw = h0.T @ v0 / nb - hk.T @ vk / npart - weight_decay * w
    gbv = v0.sum(0) / nb - vk.sum(0) / npart
    gbh = h0.sum(0) / nb - hk.sum(0) / npart
    vel = None
    if momentum != 0.0:
        vw, vbv, vbh = (_f64(a).copy() for a in velocity)
        vw = momentum * vw + lr * gw
        vbv = momentum * vbv + lr * gbv
        vbh = momentum * vbh + lr * gbh
        w, bv, bh = w + vw, bv + vbv, bh + vbh
        vel = (vw, vbv, vbh)
    else:
        w, bv, bh = w + lr * gw, bv + lr * gbv, bh + lr * gbh
    chain = hs if persistent_chain is not None else None
    return w, bv, bh, chain, vel, error


def rbm_free_energy(v, w, b_vis, b_hid, *, visible: str = "bernoulli") -> np.ndarray:
    """F(v) = -v.b_vis - sum_j softplus(b_hid_j + v.w_j) (Bernoulli visibles), or with
    ``0.5 * |v - b_vis|^2`` as the visible term (unit-variance Gaussian visibles)."""
    v = _f64(v)
    z = v @ _f64(w).T + _f64(b_hid)
    hidden = np.logaddexp(0.0, z).sum(axis=1)
    if visible == "gaussian":
        return 0.5 * np.sum((v - _f64(b_vis)) ** 2, axis=1) - hidden
    return -(v @ _f64(b_vis)) - hidden


def rbm_flip_index(n_rows: int, n_vis: int, seed: int) -> np.ndarray:
    """The visible unit each row flips in the pseudo-likelihood: ``(bits(row) * n_vis) >> 32``
    with the bits of element ``row`` in stage 0."""
    b = _bits((n_rows,), seed, 0)
    return ((b * np.uint64(n_vis)) >> np.uint64(32)).astype(np.int64)


def rbm_pseudo_likelihood(v, w, b_vis, b_hid, *, seed: int) -> np.ndarray:
    """Per-row pseudo-likelihood as scikit-learn's ``BernoulliRBM.score_samples``: flip one
    visible unit j per row (``v_j -> 1 - v_j``), and return
    ``n_vis * log sigmoid(F(v_flipped) - F(v))``."""
    v = _f64(v)
    n, d = v.shape
    idx = rbm_flip_index(n, d, seed)
    vf = v.copy()
    rows = np.arange(n)
    vf[rows, idx] = 1.0 - vf[rows, idx]
    x = rbm_free_energy(vf, w, b_vis, b_hid) - rbm_free_energy(v, w, b_vis, b_hid)
    return -d * np.logaddexp(0.0, -x)
