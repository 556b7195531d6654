// Flash-style attention and layer norm: the portable frame (tiling, packing, masks, threads)
// around the per-ISA tile kernels of kernels/<isa>/attention_<isa>.cpp.
//
// Scores are computed transposed, S^T = K_j (scale Q_i)^T (keys down, queries across; the scale
// is folded into the packed queries), so that the
// online softmax is lane-wise: each vector lane is one query, its running maximum, sum and
// rescale factor are vectors, and no step needs a horizontal reduction. The products only
// need Q^T packed (a tile in the forward, a head in the backward); K, V, dO and the outputs
// are read in place. Nothing larger than a (keys x queries) tile of scores is ever stored.
//
// Forward: chunks are (batch, head, query tile), claimed by the pool's threads; per key tile,
// S^T, the masks (only on tiles that have any), the online-softmax step, and O := alpha O + P V.
// Key tiles a causal query tile cannot see are never visited.
// Backward (FlashAttention-2): chunks are (batch, head), so dK and dV have one writer; per key
// tile (outer) and query tile (inner) the probabilities are recomputed from the saved
// log-sum-exp, then dV += P^T dO, dP = dO V^T, dS = P (dP - rowsum(dO O)) scale, dK += dS^T Q
// and dQ += dS K: five tile products.
#include "cpu/attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "common/cpuid.h"
#include "common/parallel.h"
#include "common/threading.h"
#include "common/workspace.h"

namespace fastnn {

namespace {

// Measured at B=8, H=8, N=1024, d=64 on one AVX-512 core (CPU time): query tiles of 32 were
// 10% slower than 64 (96 and 128 no better); key tiles of 64 ran 2-4% faster than 128 and 256
// in the forward, where S^T, K_j, V_j, the output tile and Q^T (16 KiB each) then fit L1 two
// at a time; in the backward 64 beat 32 by 10% and 128 by 4%.
constexpr index_t kQueryTile = 64;  // lanes of a score tile: 4 AVX-512 float vectors
constexpr index_t kKeyTileFwd = 64;
constexpr index_t kKeyTileBwd = 64;

const AttnIsaKernels& isa_kernels() {
#if defined(FASTNN_HAVE_X86_KERNELS)
  switch (active_isa()) {
    case Isa::avx512: return kAttnAvx512;
    case Isa::avx2: return kAttnAvx2;
    default: break;
  }
#endif
  return kAttnGeneric;
}

template <class T>
const AttnTileOps<T>& tile_ops();
template <>
const AttnTileOps<float>& tile_ops<float>() { return isa_kernels().f32; }
template <>
const AttnTileOps<double>& tile_ops<double>() { return isa_kernels().f64; }

inline index_t round_up(index_t n, index_t w) { return (n + w - 1) / w * w; }

// Carves aligned arrays out of one scratch block.
class Arena {
 public:
  explicit Arena(char* base) : p_(base) {}
  template <class T>
  T* take(index_t n) {
    T* out = reinterpret_cast<T*>(p_);
    p_ += static_cast<std::size_t>(round_up(n * static_cast<index_t>(sizeof(T)), 64));
    return out;
  }
  static std::size_t bytes(index_t n, std::size_t size) {
    return static_cast<std::size_t>(round_up(n * static_cast<index_t>(size), 64));
  }

 private:
  char* p_;
};

// s (kc keys x lanes, transposed scores of keys j0.., queries i0.., qc of them real) :=
// s + mask, and -inf where the causal rule hides a key. Runs only on tiles that have a mask or
// straddle the causal diagonal.
template <class T>
void mask_tile(T* s, index_t lds, index_t kc, index_t qc, index_t j0, index_t i0,
               const AttnProblem<T>& p, const T* mbh, bool diag) {
  const index_t off = p.nk - p.nq;
  const T ninf = -std::numeric_limits<T>::infinity();
  for (index_t i = 0; i < qc; ++i) {
    const T* mrow = mbh ? mbh + (i0 + i) * p.ms[2] + j0 * p.ms[3] : nullptr;
    // Keys j >= jvis are hidden from query i0 + i.
    const index_t jvis = diag ? std::clamp<index_t>(i0 + i + off + 1 - j0, 0, kc) : kc;
    if (mrow)
      for (index_t j = 0; j < jvis; ++j) s[j * lds + i] += mrow[j * p.ms[3]];
    for (index_t j = jvis; j < kc; ++j) s[j * lds + i] = ninf;
  }
}

// dst[c * ldd + i] := src[i * lds + c] * scale for the rows i < rows and columns c < cols, and 0
// for rows [rows, padded): a block of queries (or of dO) turned lanes-across. The sizes come in
// as plain values: read through the problem struct, the compiler reloaded them for every element
// (it could not rule out the stores aliasing them); passing them so made the backward 8% faster
// at heads of 16 x 16 (the ViT example's). The forward's query tile is packed the same way.
template <class T>
void pack_lanes(T* __restrict dst, index_t ldd, const T* __restrict src, index_t lds,
                index_t rows, index_t padded, index_t cols, T scale) {
  for (index_t c = 0; c < cols; ++c) {
    T* __restrict row = dst + c * ldd;
    for (index_t i = 0; i < rows; ++i) row[i] = src[i * lds + c] * scale;
    for (index_t i = rows; i < padded; ++i) row[i] = T(0);
  }
}

// Keys [0, end) that some query of the tile [i0, i0 + qc) may see.
template <class T>
index_t key_end(const AttnProblem<T>& p, index_t i0, index_t qc) {
  if (!p.causal) return p.nk;
  return std::clamp<index_t>(i0 + qc + p.nk - p.nq, 0, p.nk);
}

template <class T>
bool on_diagonal(const AttnProblem<T>& p, index_t j0, index_t kc, index_t i0) {
  return p.causal && j0 + kc - 1 > i0 + p.nk - p.nq;
}

// Heads a chunk takes: all of a batch item's while there are batch items enough to share out.
// With the heads interleaved in memory (strided views of a (B, N, H, d) array), chunks of one
// head had the threads writing alternate short rows of the same cache lines.
template <class T>
index_t heads_per_chunk(const AttnProblem<T>& p, int nth) {
  return p.b >= 4 * index_t(nth) ? p.h : 1;
}

template <class T>
const T* mask_of(const AttnProblem<T>& p, index_t b, index_t h) {
  return p.mask ? p.mask + b * p.ms[0] + h * p.ms[1] : nullptr;
}

}  // namespace

template <class T>
void attention_forward(T* o, T* lse, const T* q, const T* k, const T* v,
                       const AttnProblem<T>& p) {
  const AttnTileOps<T>& ops = tile_ops<T>();
  const index_t w = ops.width;
  const index_t d = p.d, dv = p.dv, nq = p.nq, nk = p.nk;
  const index_t dvp = round_up(dv, w);
  const index_t nqt = (nq + kQueryTile - 1) / kQueryTile;
  const double flops = 2.0 * double(p.b * p.h) * double(nq) * double(nk) * double(d + dv) *
                       (p.causal ? 0.5 : 1.0);
  const std::size_t ws = Arena::bytes(d * kQueryTile, sizeof(T)) +
                         Arena::bytes(kKeyTileFwd * kQueryTile, sizeof(T)) +
                         Arena::bytes(kQueryTile * dvp, sizeof(T)) +
                         3 * Arena::bytes(kQueryTile, sizeof(T));
  const int nth = threads_for(flops, 1 << 18);
  const index_t hg = heads_per_chunk(p, nth);
  parallel_for(p.b * (p.h / hg) * nqt, nth, [&](index_t chunk, int) {
    const index_t g = chunk / nqt, qt = chunk % nqt;
    for (index_t bh = g * hg; bh < (g + 1) * hg; ++bh) {
      const index_t b = bh / p.h, hh = bh % p.h;
      const index_t i0 = qt * kQueryTile, qc = std::min(kQueryTile, nq - i0);
      const index_t lanes = round_up(qc, w);
      const T* qh = q + p.lq.at(b, hh, i0);
      const T* kh = k + p.lk.at(b, hh, 0);
      const T* vh = v + p.lv.at(b, hh, 0);
      const T* mbh = mask_of(p, b, hh);
      Arena ar(static_cast<char*>(scratch(kScratchOp, ws)));
      T* qt_ = ar.take<T>(d * lanes);
      T* s = ar.take<T>(kKeyTileFwd * lanes);
      T* acc = ar.take<T>(qc * dvp);
      T* m = ar.take<T>(lanes);
      T* l = ar.take<T>(lanes);
      T* alpha = ar.take<T>(lanes);
      pack_lanes(qt_, lanes, qh, p.lq.n, qc, lanes, d, p.scale);
      std::fill(m, m + lanes, -std::numeric_limits<T>::infinity());
      std::fill(l, l + lanes, T(0));
      std::fill(acc, acc + qc * dvp, T(0));
      const index_t jend = key_end(p, i0, qc);
      for (index_t j0 = 0; j0 < jend; j0 += kKeyTileFwd) {
        const index_t kc = std::min(kKeyTileFwd, jend - j0);
        ops.gemm(s, lanes, kh + j0 * p.lk.n, p.lk.n, 1, qt_, lanes, kc, lanes, d, kSet, nullptr);
        const bool diag = on_diagonal(p, j0, kc, i0);
        if (mbh || diag) mask_tile(s, lanes, kc, qc, j0, i0, p, mbh, diag);
        ops.softmax_step(s, lanes, kc, lanes, m, l, alpha);
        ops.gemm(acc, dvp, s, 1, lanes, vh + j0 * p.lv.n, p.lv.n, qc, dv, kc, kScaleAdd, alpha);
      }
      T* oh = o + p.lo.at(b, hh, i0);
      T* lh = lse + bh * nq + i0;
      for (index_t i = 0; i < qc; ++i) {
        T* orow = oh + i * p.lo.n;
        if (l[i] > T(0)) {
          const T inv = T(1) / l[i];
          for (index_t c = 0; c < dv; ++c) orow[c] = acc[i * dvp + c] * inv;
          lh[i] = m[i] + std::log(l[i]);
        } else {  // no visible key: a zero row, and the log of an empty sum
          std::fill(orow, orow + dv, T(0));
          lh[i] = -std::numeric_limits<T>::infinity();
        }
      }
    }
  });
}

template <class T>
void attention_backward(T* dq, T* dk, T* dv, const T* o, const T* lse, const T* dout,
                        const T* q, const T* k, const T* v, const AttnProblem<T>& p) {
  const AttnTileOps<T>& ops = tile_ops<T>();
  const index_t w = ops.width;
  const index_t d = p.d, dvn = p.dv, nq = p.nq, nk = p.nk;
  const index_t dp = round_up(d, w), dvp = round_up(dvn, w), nqp = round_up(nq, w);
  const index_t bc = kKeyTileBwd, br = kQueryTile;
  const double flops = 4.0 * double(p.b * p.h) * double(nq) * double(nk) * double(d + dvn) *
                       (p.causal ? 0.5 : 1.0);
  const std::size_t ws = Arena::bytes(d * nqp, sizeof(T)) + Arena::bytes(dvn * nqp, sizeof(T)) +
                         Arena::bytes(nq * dp, sizeof(T)) + 2 * Arena::bytes(nqp, sizeof(T)) +
                         2 * Arena::bytes(bc * br, sizeof(T)) +
                         Arena::bytes(bc * dp, sizeof(T)) + Arena::bytes(bc * dvp, sizeof(T));
  const int nth = threads_for(flops, 1 << 18);
  const index_t hg = heads_per_chunk(p, nth);
  parallel_for(p.b * (p.h / hg), nth, [&](index_t g, int) {
    for (index_t bh = g * hg; bh < (g + 1) * hg; ++bh) {
      const index_t b = bh / p.h, hh = bh % p.h;
      const T* qh = q + p.lq.at(b, hh, 0);
      const T* kh = k + p.lk.at(b, hh, 0);
      const T* vh = v + p.lv.at(b, hh, 0);
      const T* oh = o + p.lo.at(b, hh, 0);
      const T* doh = dout + p.ldo.at(b, hh, 0);
      const T* lh = lse + bh * nq;
      const T* mbh = mask_of(p, b, hh);
      Arena ar(static_cast<char*>(scratch(kScratchOp, ws)));
      T* qt_ = ar.take<T>(d * nqp);
      T* dot = ar.take<T>(dvn * nqp);
      T* dqa = ar.take<T>(nq * dp);
      T* lse_use = ar.take<T>(nqp);
      T* dsum = ar.take<T>(nqp);
      T* s = ar.take<T>(bc * br);
      T* ds = ar.take<T>(bc * br);
      T* dka = ar.take<T>(bc * dp);
      T* dva = ar.take<T>(bc * dvp);
      const T inf = std::numeric_limits<T>::infinity();
      const index_t ldon = p.ldo.n, lon = p.lo.n;
      for (index_t i = 0; i < nqp; ++i) {
        if (i < nq) {
          const T* dorow = doh + i * ldon;
          const T* orow = oh + i * lon;
          T acc = T(0);
          for (index_t c = 0; c < dvn; ++c) acc += dorow[c] * orow[c];
          dsum[i] = acc;
          // A fully masked query saved -inf; +inf makes every recomputed probability 0.
          lse_use[i] = lh[i] == -inf ? inf : lh[i];
        } else {
          dsum[i] = T(0);
          lse_use[i] = inf;
        }
      }
      pack_lanes(qt_, nqp, qh, p.lq.n, nq, nqp, d, p.scale);
      pack_lanes(dot, nqp, doh, p.ldo.n, nq, nqp, dvn, T(1));
      std::fill(dqa, dqa + nq * dp, T(0));
      const index_t off = nk - nq;
      for (index_t j0 = 0; j0 < nk; j0 += bc) {
        const index_t kc = std::min(bc, nk - j0);
        std::fill(dka, dka + kc * dp, T(0));
        std::fill(dva, dva + kc * dvp, T(0));
        // The first query that sees key j0 is j0 - off; earlier query tiles see none of these keys.
        index_t istart = 0;
        if (p.causal) istart = std::clamp<index_t>((j0 - off) / br * br, 0, round_up(nq, br));
        if (p.causal && j0 - off > nq - 1) istart = nq;
        for (index_t i0 = istart; i0 < nq; i0 += br) {
          const index_t qc = std::min(br, nq - i0);
          const index_t lanes = round_up(qc, w);
          ops.gemm(s, lanes, kh + j0 * p.lk.n, p.lk.n, 1, qt_ + i0, nqp, kc, lanes, d, kSet,
                   nullptr);
          const bool diag = on_diagonal(p, j0, kc, i0);
          if (mbh || diag) mask_tile(s, lanes, kc, qc, j0, i0, p, mbh, diag);
          ops.probs(s, lanes, kc, lanes, lse_use + i0);
          ops.gemm(ds, lanes, vh + j0 * p.lv.n, p.lv.n, 1, dot + i0, nqp, kc, lanes, dvn, kSet,
                   nullptr);
          ops.dscores(ds, s, lanes, kc, lanes, p.scale, dsum + i0);
          ops.gemm(dva, dvp, s, lanes, 1, doh + i0 * p.ldo.n, p.ldo.n, kc, dvn, qc, kAdd, nullptr);
          ops.gemm(dka, dp, ds, lanes, 1, qh + i0 * p.lq.n, p.lq.n, kc, d, qc, kAdd, nullptr);
          ops.gemm(dqa + i0 * dp, dp, ds, 1, lanes, kh + j0 * p.lk.n, p.lk.n, qc, d, kc, kAdd,
                   nullptr);
        }
        T* dkh = dk + p.ldk.at(b, hh, j0);
        T* dvh = dv + p.ldv.at(b, hh, j0);
        for (index_t j = 0; j < kc; ++j) {
          std::memcpy(dkh + j * p.ldk.n, dka + j * dp, sizeof(T) * d);
          std::memcpy(dvh + j * p.ldv.n, dva + j * dvp, sizeof(T) * dvn);
        }
      }
      T* dqh = dq + p.ldq.at(b, hh, 0);
      for (index_t i = 0; i < nq; ++i) std::memcpy(dqh + i * p.ldq.n, dqa + i * dp, sizeof(T) * d);
  }
  });
}

template <class T>
void layer_norm_forward(T* y, T* mean, T* rstd, const T* x, const T* gamma, const T* beta,
                        index_t rows, index_t d, T eps) {
  const AttnTileOps<T>& ops = tile_ops<T>();
  const index_t grain = std::max<index_t>(1, 16384 / d);
  parallel_range(rows, grain, threads_for(4.0 * double(rows) * double(d), 1 << 16),
                 [&](index_t lo, index_t hi) {
                   for (index_t r = lo; r < hi; ++r)
                     ops.ln_row(y + r * d, x + r * d, gamma, beta, d, eps, mean + r, rstd + r);
                 });
}

template <class T>
void layer_norm_backward(T* dx, T* dgamma, T* dbeta, const T* mean, const T* rstd, const T* dy,
                         const T* x, const T* gamma, index_t rows, index_t d) {
  const AttnTileOps<T>& ops = tile_ops<T>();
  // A fixed number of row chunks (set by the sizes only), each with its own dgamma/dbeta
  // partials, summed in chunk order: the result does not depend on the threads.
  const index_t grain = std::max<index_t>(std::max<index_t>(1, 16384 / d), (rows + 63) / 64);
  const index_t nchunks = (rows + grain - 1) / grain;
  T* part = static_cast<T*>(scratch(kScratchOp, sizeof(T) * 2 * nchunks * d));
  std::fill(part, part + 2 * nchunks * d, T(0));
  parallel_for(nchunks, threads_for(8.0 * double(rows) * double(d), 1 << 16),
               [&](index_t c, int) {
                 T* dg = part + 2 * c * d;
                 T* db = dg + d;
                 const index_t hi = std::min(rows, (c + 1) * grain);
                 for (index_t r = c * grain; r < hi; ++r)
                   ops.ln_row_backward(dx + r * d, dg, db, dy + r * d, x + r * d, gamma, d,
                                       mean[r], rstd[r]);
               });
  std::fill(dgamma, dgamma + d, T(0));
  std::fill(dbeta, dbeta + d, T(0));
  for (index_t c = 0; c < nchunks; ++c) {
    const T* dg = part + 2 * c * d;
    for (index_t j = 0; j < d; ++j) {
      dgamma[j] += dg[j];
      dbeta[j] += dg[d + j];
    }
  }
}

template <class T>
void attention_exp(T* y, const T* x, index_t n) {
  tile_ops<T>().exp(y, x, n);
}

#define FASTNN_ATTN_INSTANTIATE(T)                                                             \
  template void attention_forward<T>(T*, T*, const T*, const T*, const T*,                    \
                                     const AttnProblem<T>&);                                   \
  template void attention_backward<T>(T*, T*, T*, const T*, const T*, const T*, const T*,     \
                                      const T*, const T*, const AttnProblem<T>&);              \
  template void layer_norm_forward<T>(T*, T*, T*, const T*, const T*, const T*, index_t,      \
                                      index_t, T);                                             \
  template void layer_norm_backward<T>(T*, T*, T*, const T*, const T*, const T*, const T*,    \
                                       const T*, index_t, index_t);                            \
  template void attention_exp<T>(T*, const T*, index_t);
FASTNN_ATTN_INSTANTIATE(float)
FASTNN_ATTN_INSTANTIATE(double)
#undef FASTNN_ATTN_INSTANTIATE

}  // namespace fastnn
