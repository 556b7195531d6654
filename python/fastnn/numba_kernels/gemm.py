"""Numba fallbacks of the GEMM family: ``gemm``, ``linear``, ``linear_backward``.

Same signatures as ``fastnn._C`` (outputs first, then inputs, then parameters; arguments are
trusted, the ops layer validated them). One blocked, parallel GEMM core serves all three:

* C is cut into MT x NT tiles, and one parallel loop hands each thread a run of consecutive
  tiles, so every tile has a single writer and a call costs one fork/join however many k blocks
  it has;
* a tile packs its slices of A and B per KC-deep k block into unit-stride buffers (A as MR-row
  micro-panels), so the hot loop reads the same layout whatever strides the caller had
  (transposed, negative, zero); repacking per tile costs 1/MT + 1/NT of the flops;
* the micro-kernel streams one row of packed B against MR rows of C, which stay in L1;
* the epilogue (alpha, beta*c, bias, activation, keeping z) runs on a tile right after its last
  k block, while the tile is still in cache.

fastmath is limited to 'contract' (fused multiply-add): no flag that lets LLVM assume away NaN
or inf, and no reassociation (no loop here reduces along the index it vectorizes).
"""
from __future__ import annotations

import numba
import numpy as np
from numba import prange, types

from .elementwise import (activation_backward, forward_span, in_array, numba_dtype, out_array,
                          specialize, threads)

__all__ = ["gemm", "linear", "linear_backward"]

# Block sizes (elements). The packed KC x NT slice of B (256 KiB in float32) lives in L2 and is
# reused by every MR-row micro-panel of the tile; MR rows x NT of C (4 KiB) stay in L1.
MR = 4
KC = 256
MT = 32
NT = 256

_FASTMATH = {"contract"}


@numba.njit(cache=True, fastmath=_FASTMATH)
def _micro_rows4(c0, c1, c2, c3, ap, bp, g, ja, jb, kb):
    """c0..c3 (four rows of C, columns ja:jb of the packed panel) += micro-panel g @ bp.

    Every loop counts from a literal 0 over pre-sliced rows: Numba then knows the index is
    non-negative, drops the wraparound test, and LLVM vectorizes the j loop.
    """
    nj = jb - ja
    for p in range(kb):
        a0 = ap[g, p, 0]
        a1 = ap[g, p, 1]
        a2 = ap[g, p, 2]
        a3 = ap[g, p, 3]
        brow = bp[p, ja:jb]
        for j in range(nj):
            bv = brow[j]
            c0[j] += a0 * bv
            c1[j] += a1 * bv
            c2[j] += a2 * bv
            c3[j] += a3 * bv


@numba.njit(cache=True, fastmath=_FASTMATH)
def _micro_row1(c0, ap, bp, g, r, ja, jb, kb):
    nj = jb - ja
    for p in range(kb):
        a0 = ap[g, p, r]
        brow = bp[p, ja:jb]
        for j in range(nj):
            c0[j] += a0 * brow[j]


@numba.njit(cache=True)
def _epilogue_row(row, crow, alpha, beta, use_c, bias, use_bias, zrow, use_z, act, param):
    """row = act(alpha * row + beta * crow + bias), keeping the pre-activation in zrow."""
    nj = row.shape[0]
    if alpha != 1.0:
        for j in range(nj):
            row[j] = alpha * row[j]
    if use_c:
        for j in range(nj):
            row[j] += beta * crow[j]
    if use_bias:
        for j in range(nj):
            row[j] += bias[j]
    if use_z:
        for j in range(nj):
            zrow[j] = row[j]
    if act != 0:
        forward_span(row, row, act, param)


@numba.njit(cache=True)
def _tile(out, a, b, ti, tj, ap, bp, c, alpha, beta, use_c, bias, use_bias, z, use_z, act,
          param):
    """Tile (ti, tj) of C, MT x NT: every k block packed (into ap, bp) and accumulated, then the
    epilogue."""
    m, n = out.shape
    k = a.shape[1]
    ra = ti * MT                 # rows ra:rb of C
    rb = min(ra + MT, m)
    ca = tj * NT                 # columns ca:cb of C
    cb = min(ca + NT, n)
    mt = rb - ra
    nt = cb - ca
    for r in range(mt):
        out[ra + r, ca:cb] = 0.0
    for p0 in range(0, k, KC):
        kb = min(KC, k - p0)
        for p in range(kb):
            brow = bp[p]
            for j in range(nt):
                brow[j] = b[p0 + p, ca + j]
        for r in range(mt):
            g = r // MR
            q = r - g * MR
            for p in range(kb):
                ap[g, p, q] = a[ra + r, p0 + p]
        r = 0
        while r + MR <= mt:
            i = ra + r
            _micro_rows4(out[i, ca:cb], out[i + 1, ca:cb], out[i + 2, ca:cb],
                         out[i + 3, ca:cb], ap, bp, r // MR, 0, nt, kb)
            r += MR
        while r < mt:
            _micro_row1(out[ra + r, ca:cb], ap, bp, r // MR, r % MR, 0, nt, kb)
            r += 1
    for r in range(mt):
        i = ra + r
        _epilogue_row(out[i, ca:cb], c[i, ca:cb] if use_c else c[0, 0:0], alpha, beta, use_c,
                      bias[ca:cb] if use_bias else bias[0:0], use_bias,
                      z[i, ca:cb] if use_z else z[0, 0:0], use_z, act, param)


def _core(out, a, b, c, alpha, beta, use_c, bias, use_bias, z, use_z, act, param, nchunks):
    # One parallel loop over nchunks runs of consecutive tiles of C (nchunks = the threads the
    # call deserves): every tile has a single writer, a call costs one fork/join however many
    # k blocks it has, and each run allocates its packing buffers once. A tile packs its own
    # slices of A and B, an overhead of 1/NT + 1/MT of the flops.
    m, n = out.shape
    k = a.shape[1]
    nti = (m + MT - 1) // MT
    ntj = (n + NT - 1) // NT
    ntiles = nti * ntj
    mcap = min(MT, m)
    kcap = min(KC, k)
    ncap = min(NT, n)
    for ch in prange(nchunks):
        ap = np.empty(((mcap + MR - 1) // MR, kcap, MR), dtype=out.dtype)
        bp = np.empty((kcap, ncap), dtype=out.dtype)
        for t in range(ch * ntiles // nchunks, (ch + 1) * ntiles // nchunks):
            ti = t // ntj
            _tile(out, a, b, ti, t - ti * ntj, ap, bp, c, alpha, beta, use_c, bias, use_bias,
                  z, use_z, act, param)


def _core_kernel(dt):
    t = numba_dtype(dt)
    sig = types.void(out_array(t, 2), in_array(t, 2), in_array(t, 2), in_array(t, 2),
                     types.float64, types.float64, types.boolean, in_array(t, 1),
                     types.boolean, out_array(t, 2), types.boolean, types.int64, types.float64,
                     types.int64)
    return specialize(_core, sig, fastmath=_FASTMATH)


def _run(out, a, b, c=None, alpha=1.0, beta=0.0, bias=None, z=None, act=0, param=0.0):
    dt = out.dtype
    use_c = c is not None and beta != 0.0
    # Absent operands travel as (1, 0) / (0,) placeholders: one compiled signature serves all
    # calls, and row 0 of a placeholder is a valid empty slice.
    cc = c if use_c else np.empty((1, 0), dt)
    bb = bias if bias is not None else np.empty(0, dt)
    zz = z if z is not None else np.empty((1, 0), dt)
    m, n = out.shape
    tiles = -(-m // MT) * -(-n // NT)
    with threads(m * n * max(a.shape[1], 1), tiles) as nthreads:
        _core_kernel(dt)(out, a, b, cc, float(alpha), float(beta), use_c, bb, bias is not None,
                         zz, z is not None, int(act), float(param), nthreads)


def gemm(out, a, b, c, alpha, beta):
    """out := alpha * a @ b + beta * c (c may be None; with beta == 0 it is not read)."""
    if out.size == 0:
        return
    _run(out, a, b, c, alpha, beta)


def linear(y, z, x, w, b, act, param):
    """y := act(x @ w.T + b); z (or None) receives the pre-activation x @ w.T + b."""
    if y.size == 0:
        return
    _run(y, x, w.T, bias=b, z=z, act=act, param=param)


def _colsum(out, x):
    m, n = x.shape
    nch = max(1, min(n // 64, 64))
    # Column blocks, not row blocks: each output element has one writer, no private copies.
    for cidx in prange(nch):
        ja = cidx * n // nch
        jb = (cidx + 1) * n // nch
        acc = out[ja:jb]
        acc[:] = 0.0
        for i in range(m):
            row = x[i, ja:jb]
            for j in range(jb - ja):
                acc[j] += row[j]


def _colsum_kernel(dt):
    t = numba_dtype(dt)
    return specialize(_colsum, types.void(out_array(t, 1), in_array(t, 2, "C")))


def linear_backward(dx, dw, db, dy, x, w, y, z, act, param):
    """dz = dy * act'(z, y); db = column sums of dz; dw = dz.T @ x; dx = dz @ w.

    dx and db may be None (no input gradient wanted / no bias).
    """
    m, n = dy.shape
    if act != 0:
        dz = np.empty((m, n), dy.dtype)
        activation_backward(dz, dy, z, y, act, param)
    else:
        dz = dy
    if db is not None and db.size:
        if m == 0:
            db[...] = 0
        else:
            with threads(m * n, n // 64):
                _colsum_kernel(db.dtype)(db, np.ascontiguousarray(dz))
    if dw.size:
        _run(dw, dz.T, x)
    if dx is not None and dx.size:
        _run(dx, dz, w)
