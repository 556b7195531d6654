// The attention and layer-norm tile kernels, written once over a vector traits type and
// compiled per ISA: kernels/<isa>/attention_<isa>.cpp defines the traits VF (float) and VD
// (double) and then includes this file inside its own namespace, so every copy stays in its
// own translation unit with its own ISA flags (no header, no #pragma once on purpose).
//
// Traits: T, Reg, W (elements per vector), RM x NV (register tile: RM broadcast rows times NV
// vectors of accumulators), zero, set1, load, loadn (the first n elements, zeros after),
// store, bcast, fma (a*b + c), add, sub, mul, max, hsum, exp (exact 0 for -inf and below the
// underflow bound).

using AT = index_t;

// C block (R rows x NV vectors) := MODE(C) + A B over kdim; TAIL: the last vector holds only
// `tail` columns of B (C is padded, so it is stored whole). MODE is a template argument: with
// it a run-time value, GCC spilled the 24 accumulators around the k loop of every block.
template <class V, int R, int NV, bool TAIL, int MODE>
static void gemm_block(typename V::T* __restrict c, AT ldc, const typename V::T* __restrict a,
                       AT rsa, AT csa, const typename V::T* __restrict b, AT ldb, AT kdim,
                       const typename V::T* rowscale, int tail) {
  using Reg = typename V::Reg;
  constexpr int W = V::W;
  Reg acc[R][NV];
  if constexpr (MODE == kSet) {
    for (int r = 0; r < R; ++r)
      for (int v = 0; v < NV; ++v) acc[r][v] = V::zero();
  } else {
    for (int r = 0; r < R; ++r) {
      for (int v = 0; v < NV; ++v) acc[r][v] = V::load(c + r * ldc + v * W);
      if constexpr (MODE == kScaleAdd) {
        const Reg s = V::set1(rowscale[r]);
        for (int v = 0; v < NV; ++v) acc[r][v] = V::mul(acc[r][v], s);
      }
    }
  }
  for (AT kk = 0; kk < kdim; ++kk) {
    const typename V::T* bk = b + kk * ldb;
    const typename V::T* ak = a + kk * csa;
    Reg bv[NV];
    for (int v = 0; v < NV; ++v)
      bv[v] = (TAIL && v == NV - 1) ? V::loadn(bk + v * W, tail) : V::load(bk + v * W);
    for (int r = 0; r < R; ++r) {
      const Reg av = V::bcast(ak + r * rsa);
      for (int v = 0; v < NV; ++v) acc[r][v] = V::fma(av, bv[v], acc[r][v]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < NV; ++v) V::store(c + r * ldc + v * W, acc[r][v]);
}

template <class V, int MODE, int R, int NV>
static void gemm_r(int rows, typename V::T* c, AT ldc, const typename V::T* a, AT rsa, AT csa,
                   const typename V::T* b, AT ldb, AT kdim, const typename V::T* rowscale,
                   int tail) {
  if constexpr (R > 1) {
    if (rows < R) {
      gemm_r<V, MODE, R - 1, NV>(rows, c, ldc, a, rsa, csa, b, ldb, kdim, rowscale, tail);
      return;
    }
  }
  if (tail) gemm_block<V, R, NV, true, MODE>(c, ldc, a, rsa, csa, b, ldb, kdim, rowscale, tail);
  else gemm_block<V, R, NV, false, MODE>(c, ldc, a, rsa, csa, b, ldb, kdim, rowscale, 0);
}

template <class V, int MODE, int NV>
static void gemm_v(int nv, int rows, typename V::T* c, AT ldc, const typename V::T* a, AT rsa,
                   AT csa, const typename V::T* b, AT ldb, AT kdim,
                   const typename V::T* rowscale, int tail) {
  if constexpr (NV > 1) {
    if (nv < NV) {
      gemm_v<V, MODE, NV - 1>(nv, rows, c, ldc, a, rsa, csa, b, ldb, kdim, rowscale, tail);
      return;
    }
  }
  gemm_r<V, MODE, V::RM, NV>(rows, c, ldc, a, rsa, csa, b, ldb, kdim, rowscale, tail);
}

// Column blocks outside, row blocks inside: a block's kdim x NV*W slice of B stays in L1 while
// every row block of A streams past it.
template <class V, int MODE>
static void tile_gemm_mode(typename V::T* c, AT ldc, const typename V::T* a, AT rsa, AT csa,
                           const typename V::T* b, AT ldb, AT rows, AT ncols, AT kdim,
                           const typename V::T* rowscale) {
  constexpr int W = V::W;
  const AT nvec = (ncols + W - 1) / W;
  const int tail = static_cast<int>(ncols % W);
  for (AT v0 = 0; v0 < nvec; v0 += V::NV) {
    const int nv = static_cast<int>(nvec - v0 < V::NV ? nvec - v0 : V::NV);
    const int t = v0 + nv == nvec ? tail : 0;
    for (AT r0 = 0; r0 < rows; r0 += V::RM) {
      const int nr = static_cast<int>(rows - r0 < V::RM ? rows - r0 : V::RM);
      gemm_v<V, MODE, V::NV>(nv, nr, c + r0 * ldc + v0 * W, ldc, a + r0 * rsa, rsa, csa,
                             b + v0 * W, ldb, kdim, rowscale ? rowscale + r0 : nullptr, t);
    }
  }
}

template <class V>
static void tile_gemm(typename V::T* c, AT ldc, const typename V::T* a, AT rsa, AT csa,
                      const typename V::T* b, AT ldb, AT rows, AT ncols, AT kdim, int mode,
                      const typename V::T* rowscale) {
  switch (mode) {
    case kAdd:
      return tile_gemm_mode<V, kAdd>(c, ldc, a, rsa, csa, b, ldb, rows, ncols, kdim, rowscale);
    case kScaleAdd:
      return tile_gemm_mode<V, kScaleAdd>(c, ldc, a, rsa, csa, b, ldb, rows, ncols, kdim,
                                          rowscale);
    default:
      return tile_gemm_mode<V, kSet>(c, ldc, a, rsa, csa, b, ldb, rows, ncols, kdim, rowscale);
  }
}

template <class V>
static void softmax_step(typename V::T* s, AT lds, AT kc, AT lanes, typename V::T* m,
                         typename V::T* l, typename V::T* alpha) {
  using T = typename V::T;
  using Reg = typename V::Reg;
  // The lowest finite value stands in for a running maximum of -inf (no visible key yet), so
  // exp(-inf - it) is 0 and not exp(NaN).
  const Reg lowest = V::set1(-std::numeric_limits<T>::max());
  const Reg ninf = V::set1(-std::numeric_limits<T>::infinity());
  for (AT i = 0; i < lanes; i += V::W) {
    // Two chains of maxima: one would serialize on the max latency.
    Reg mt = ninf, mt2 = ninf;
    AT j = 0;
    for (; j + 1 < kc; j += 2) {
      mt = V::max(mt, V::load(s + j * lds + i));
      mt2 = V::max(mt2, V::load(s + (j + 1) * lds + i));
    }
    if (j < kc) mt = V::max(mt, V::load(s + j * lds + i));
    mt = V::max(mt, mt2);
    const Reg mold = V::load(m + i);
    const Reg mnew = V::max(mold, mt);
    const Reg mu = V::max(mnew, lowest);
    const Reg al = V::exp(V::sub(mold, mu));
    Reg sum = V::zero();
    for (AT j = 0; j < kc; ++j) {
      T* p = s + j * lds + i;
      const Reg e = V::exp(V::sub(V::load(p), mu));
      V::store(p, e);
      sum = V::add(sum, e);
    }
    V::store(l + i, V::fma(V::load(l + i), al, sum));
    V::store(m + i, mnew);
    V::store(alpha + i, al);
  }
}

template <class V>
static void probs(typename V::T* s, AT lds, AT kc, AT lanes, const typename V::T* lse) {
  using Reg = typename V::Reg;
  for (AT i = 0; i < lanes; i += V::W) {
    const Reg ls = V::load(lse + i);
    for (AT j = 0; j < kc; ++j) {
      typename V::T* p = s + j * lds + i;
      V::store(p, V::exp(V::sub(V::load(p), ls)));
    }
  }
}

template <class V>
static void dscores(typename V::T* dp, const typename V::T* p, AT ld, AT kc, AT lanes,
                    typename V::T scale, const typename V::T* dsum) {
  using Reg = typename V::Reg;
  const Reg vs = V::set1(scale);
  for (AT i = 0; i < lanes; i += V::W) {
    const Reg dd = V::load(dsum + i);
    for (AT j = 0; j < kc; ++j) {
      typename V::T* g = dp + j * ld + i;
      V::store(g, V::mul(V::mul(V::load(p + j * ld + i), V::sub(V::load(g), dd)), vs));
    }
  }
}

template <class V>
static void exp_n(typename V::T* y, const typename V::T* x, AT n) {
  AT i = 0;
  for (; i + V::W <= n; i += V::W) V::store(y + i, V::exp(V::load(x + i)));
  if (i < n) {
    typename V::T buf[V::W];
    V::store(buf, V::exp(V::loadn(x + i, static_cast<int>(n - i))));
    for (AT t = i; t < n; ++t) y[t] = buf[t - i];
  }
}

// Layer norm: vector sums over whole vectors of a row, the row's tail in scalars; the variance
// is the mean of squared deviations (two passes, no cancellation).
template <class V>
static void ln_row(typename V::T* y, const typename V::T* x, const typename V::T* gamma,
                   const typename V::T* beta, AT d, typename V::T eps, typename V::T* mean,
                   typename V::T* rstd) {
  using T = typename V::T;
  using Reg = typename V::Reg;
  const AT dw = d - d % V::W;
  Reg acc = V::zero();
  for (AT c = 0; c < dw; c += V::W) acc = V::add(acc, V::load(x + c));
  T s = V::hsum(acc);
  for (AT c = dw; c < d; ++c) s += x[c];
  const T mu = s / T(d);
  const Reg vmu = V::set1(mu);
  acc = V::zero();
  for (AT c = 0; c < dw; c += V::W) {
    const Reg t = V::sub(V::load(x + c), vmu);
    acc = V::fma(t, t, acc);
  }
  T ss = V::hsum(acc);
  for (AT c = dw; c < d; ++c) ss += (x[c] - mu) * (x[c] - mu);
  const T inv = T(1) / std::sqrt(ss / T(d) + eps);
  const Reg vinv = V::set1(inv);
  for (AT c = 0; c < dw; c += V::W) {
    const Reg t = V::mul(V::sub(V::load(x + c), vmu), vinv);
    V::store(y + c, V::fma(t, V::load(gamma + c), V::load(beta + c)));
  }
  for (AT c = dw; c < d; ++c) y[c] = (x[c] - mu) * inv * gamma[c] + beta[c];
  *mean = mu;
  *rstd = inv;
}

template <class V>
static void ln_row_backward(typename V::T* dx, typename V::T* dg, typename V::T* db,
                            const typename V::T* dy, const typename V::T* x,
                            const typename V::T* gamma, AT d, typename V::T mu,
                            typename V::T inv) {
  using T = typename V::T;
  using Reg = typename V::Reg;
  const AT dw = d - d % V::W;
  const Reg vmu = V::set1(mu), vinv = V::set1(inv);
  Reg sa = V::zero(), sb = V::zero();
  for (AT c = 0; c < dw; c += V::W) {
    const Reg dyv = V::load(dy + c);
    const Reg g = V::mul(dyv, V::load(gamma + c));
    const Reg xh = V::mul(V::sub(V::load(x + c), vmu), vinv);
    sa = V::add(sa, g);
    sb = V::fma(g, xh, sb);
    V::store(dg + c, V::fma(dyv, xh, V::load(dg + c)));
    V::store(db + c, V::add(dyv, V::load(db + c)));
  }
  T a = V::hsum(sa), bsum = V::hsum(sb);
  for (AT c = dw; c < d; ++c) {
    const T g = dy[c] * gamma[c];
    const T xh = (x[c] - mu) * inv;
    a += g;
    bsum += g * xh;
    dg[c] += dy[c] * xh;
    db[c] += dy[c];
  }
  a /= T(d);
  bsum /= T(d);
  const Reg va = V::set1(a), vb = V::set1(bsum);
  for (AT c = 0; c < dw; c += V::W) {
    const Reg g = V::mul(V::load(dy + c), V::load(gamma + c));
    const Reg xh = V::mul(V::sub(V::load(x + c), vmu), vinv);
    V::store(dx + c, V::mul(vinv, V::sub(V::sub(g, va), V::mul(xh, vb))));
  }
  for (AT c = dw; c < d; ++c) {
    const T xh = (x[c] - mu) * inv;
    dx[c] = inv * (dy[c] * gamma[c] - a - xh * bsum);
  }
}

template <class V>
static AttnTileOps<typename V::T> make_attn_ops() {
  AttnTileOps<typename V::T> ops;
  ops.width = V::W;
  ops.gemm = &tile_gemm<V>;
  ops.softmax_step = &softmax_step<V>;
  ops.probs = &probs<V>;
  ops.dscores = &dscores<V>;
  ops.exp = &exp_n<V>;
  ops.ln_row = &ln_row<V>;
  ops.ln_row_backward = &ln_row_backward<V>;
  return ops;
}
