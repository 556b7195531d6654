// The persistent-CD-1 step as one phased job, on float32 or on bfloat16 products.
//
// Run as separate kernels, the step is about seventeen parallel jobs of 5-40 us each (packing w
// twice, three products, draws, column sums, packing the update's operands): on two threads a
// wake-up and a join per job cost as much as the work, and each job spreads its data over the
// cores differently, so the next one reads it from the other core's cache. Here it is one job
// (parallel_phases) whose parts own fixed slices of the model, in three phases:
//
//   0. per hidden slice: pack w's rows into both products' B operands, and the chain's columns;
//   1. per visible slice: the batch's columns (gathered, for a batch given as rows of a data
//      set); vk = draw(sigmoid(chain w + b_vis)); pack v0 and vk for the hidden product and the
//      weight update; the visible bias gradient;
//   2. per hidden slice: [h0; hk] = sigmoid([v0; vk] w^T + b_hid); the chain's new sample; the
//      hidden bias gradient; w's rows += lr (h0^T v0 / B - hk^T vk / P), in place in the tiles.
//   (3. with the reconstruction error: per visible slice, sigmoid(h0 w + b_vis) against v0;
//    in float32, which reads w itself there, the update then moves to a phase 4 after it.)
//
// Phase 2 needs all of vk (phase 1) and phase 1 all of the packed w (phase 0); within phase 2 a
// slice's update needs only that slice's hidden units, so it follows without a wait. Part p
// handles the same rows of w in phases 0 and 2 of every step, on the same thread as a rule: those
// rows stay in its core's L2 from one step to the next. Every element is computed as in
// rbm_cd_step's general path of the same precision (the same operand values, the same sums in
// the same order, the same counters, the same column sums in double), so the two give the same
// bits. The precisions differ only in how operands are staged and multiplied (Bf16Ops: packed
// bfloat16 operands and the AMX/AVX512_BF16 tiles; F32Ops: float32 arrays and gemm()); the
// phases are written once, over either.
#include "cpu/rbm_fused.h"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "common/fpenv.h"
#include "common/parallel.h"
#include "common/rng.h"
#include "common/threading.h"
#include "cpu/gemm/bf16.h"
#include "cpu/gemm/bf16_dispatch.h"
#include "cpu/gemm/gemm.h"
#include "cpu/rbm_units.h"

namespace fastnn {
namespace {

std::atomic<bool> g_fused{true};

index_t round_up(index_t x, index_t m) { return (x + m - 1) / m * m; }

// Grow-only buffers of the calling thread (one step per batch: no page faults after the first),
// aligned to cache lines.
template <class U>
U* grow(std::vector<U>& v, index_t n) {
  constexpr std::size_t kLine = 64, pad = kLine / sizeof(U);
  if (v.size() < std::size_t(n) + pad) v.resize(std::size_t(n) + pad);
  const std::uintptr_t p = reinterpret_cast<std::uintptr_t>(v.data());
  return reinterpret_cast<U*>((p + kLine - 1) / kLine * kLine);
}

struct Range {
  index_t lo, hi;
};

// Part p of n columns cut at multiples of 32 (whole AMX blocks, whole packed-A column groups).
Range slice(index_t n, int parts, int p) {
  const index_t blocks = (n + 31) / 32;
  return {blocks * p / parts * 32, std::min(n, blocks * (p + 1) / parts * 32)};
}

using rbm::kLinear;
using rbm::kSample;
using rbm::kSigmoid;

#if defined(FASTNN_HAVE_BF16_KERNELS)
// C (m x n, row stride rsc) := units(A B + bias) on the packed operands, on this thread.
void product(const Bf16Compute& K, index_t m, index_t n, index_t k, const std::uint16_t* ap,
             const std::uint16_t* bp, float* c, index_t rsc, const float* bias, int units,
             rng::Key key, std::uint32_t stage, index_t cnt_rs, index_t cnt0) {
  GemmProblem<float> q;
  q.m = m; q.n = n; q.k = k;
  q.c = c; q.rsc = rsc; q.csc = 1;
  rbm::set_units(q.ep, bias, units, key, stage, cnt_rs, cnt0);
  const index_t tasks = ((m + K.mt - 1) / K.mt) * ((n + K.nt - 1) / K.nt);
  K.run(q, ap, bp, round_up(k, 32), true, 0, tasks);
}

// C (m x n, row stride rsc) += A B, in place (alpha 1, beta 1, no epilogue).
void accumulate(const Bf16Compute& K, index_t m, index_t n, index_t k, const std::uint16_t* ap,
                const std::uint16_t* bp, float* c, index_t rsc) {
  GemmProblem<float> q;
  q.m = m; q.n = n; q.k = k;
  q.c = c; q.rsc = rsc; q.csc = 1;
  q.beta = 1.0f;
  const index_t tasks = ((m + K.mt - 1) / K.mt) * ((n + K.nt - 1) / K.nt);
  K.run(q, ap, bp, round_up(k, 32), true, 0, tasks);
}
#endif

// What both precisions share: the step's arrays and sizes, and its float32 scratch. A part's
// own matrices (sh, vk, rec, the gathered batch) are panels of its columns, contiguous, not
// column slices of shared rows: with slices, each core's stream prefetcher ran on into the other
// core's columns of the same rows, and every write then had to take those lines back (the hidden
// phase spent a third of its time so). Panel p starts at its first column times the rows.
struct Step {
  float *w, *b_vis, *b_hid, *chain;
  const float* x;  // v0, or the data set whose rows s.rows are the batch
  const RbmStep* s;
  index_t B, P, nv, nh, S;
  rng::Key key;
  float *sh, *vk, *rec, *gathered;
  double *gv, *gh, *err_col;

  // Columns c of the batch: of v0 itself, or (s.rows) a panel gathered by phase 1.
  const float* batch_cols(Range c, index_t* ld) const {
    *ld = s->rows ? c.hi - c.lo : nv;
    return s->rows ? gathered + B * c.lo : x + c.lo;
  }
};

// float32: the products through gemm() on float32 arrays (nested in the phased job, each runs on
// its part's thread). The update scales the stack by 1/B and -1/P and multiplies by lr in the
// epilogue (alpha), as the general path does.
struct F32Ops {
  static constexpr bool kFoldLr = false;
  // The error's product reads w itself, so the update waits until it has run.
  static constexpr bool kUpdateAfterError = true;
  const Step& t;
  float *sv, *h0;  // [v0; vk] (S x ldsv) and h0 (B x nh), row-major: the products' A operands
  index_t ldsv;

  explicit F32Ops(const Step& st) : t(st) {
    thread_local std::vector<float> b_sv, b_h0;
    ldsv = round_up(t.nv, 16) + 16;  // rows on whole cache lines, not a multiple of 4 KiB apart
    sv = grow(b_sv, t.S * ldsv);
    h0 = grow(b_h0, t.B * round_up(t.nh, 16));
  }
  static void mm(index_t m, index_t n, index_t k, const float* a, index_t rsa, index_t csa,
                 const float* b, index_t rsb, index_t csb, float* c, index_t rsc, float alpha,
                 float beta, const Epilogue<float>* ep) {
    GemmProblem<float> q;
    q.m = m; q.n = n; q.k = k;
    q.alpha = alpha; q.beta = beta;
    q.a = a; q.rsa = rsa; q.csa = csa;
    q.b = b; q.rsb = rsb; q.csb = csb;
    q.c = c; q.rsc = rsc; q.csc = 1;
    if (ep) q.ep = *ep;
    gemm(q);
  }
  void prepare(Range) {}
  void visible(Range c, float* vkp, int units) {
    Epilogue<float> ep;
    rbm::set_units(ep, t.b_vis + c.lo, units, t.key, 2, t.nv, c.lo);
    mm(t.P, c.hi - c.lo, t.nh, t.chain, t.nh, 1, t.w + c.lo, t.nv, 1, vkp, c.hi - c.lo, 1.0f,
       0.0f, &ep);
  }
  void stage_batch(Range c, const float* v0p, index_t ldv, const float* vkp) {
    const index_t n = c.hi - c.lo;
    for (index_t i = 0; i < t.B; ++i)
      std::memcpy(sv + i * ldsv + c.lo, v0p + i * ldv, std::size_t(n) * sizeof(float));
    for (index_t i = 0; i < t.P; ++i)
      std::memcpy(sv + (t.B + i) * ldsv + c.lo, vkp + i * n, std::size_t(n) * sizeof(float));
  }
  void hidden(Range h, float* shp) {
    const index_t n = h.hi - h.lo;
    Epilogue<float> ep;
    rbm::set_units(ep, t.b_hid + h.lo, kSigmoid, t.key, 0, t.nh, h.lo);
    const float* wt = t.w + h.lo * t.nv;  // w^T's columns h: element (k, j) at wt[k + j * nv]
    mm(t.B, n, t.nv, sv, ldsv, 1, wt, 1, t.nv, shp, n, 1.0f, 0.0f, &ep);
    mm(t.P, n, t.nv, sv + t.B * ldsv, ldsv, 1, wt, 1, t.nv, shp + t.B * n, n, 1.0f, 0.0f, &ep);
  }
  void stage_error(Range h, const float* shp) {
    const index_t n = h.hi - h.lo, ld = round_up(t.nh, 16);
    for (index_t i = 0; i < t.B; ++i)
      std::memcpy(h0 + i * ld + h.lo, shp + i * n, std::size_t(n) * sizeof(float));
  }
  void update(Range h, const float* shp) {
    const index_t n = h.hi - h.lo;
    mm(n, t.nv, t.S, shp, 1, n, sv, ldsv, 1, t.w + h.lo * t.nv, t.nv, float(t.s->lr), 1.0f,
       nullptr);
  }
  void error(Range c, float* recp, int units) {
    Epilogue<float> ep;
    rbm::set_units(ep, t.b_vis + c.lo, units, t.key, 0, t.nv, c.lo);
    mm(t.B, c.hi - c.lo, t.nh, h0, round_up(t.nh, 16), 1, t.w + c.lo, t.nv, 1, recp,
       c.hi - c.lo, 1.0f, 0.0f, &ep);
  }
  void bernoulli(float* dst, const float* p, index_t n, index_t first, std::uint32_t stage) {
    rbm::bernoulli_row(dst, p, n, first, t.key, stage);
  }
  void colsums(double* sums, const float* x, index_t rows, index_t cols, index_t ld,
               double scale) {
    rbm::column_sums(sums, x, rows, cols, ld, scale);
  }
};

#if defined(FASTNN_HAVE_BF16_KERNELS)
// bfloat16: w packed by phase 0 into both products' B operands (each part its rows), the other
// operands packed where they are produced, the tiles of the active bfloat16 kernel. lr is folded
// into the update's A, so that the tiles add the products to w with alpha 1 and no epilogue.
struct Bf16Ops {
  static constexpr bool kFoldLr = true;
  static constexpr bool kUpdateAfterError = false;  // the error reads w's packed copy
  const Step& t;
  const Bf16Compute& K = bf16_compute();
  const Bf16Pack& pk = kBf16Pack;
  index_t kv, kh, ks;
  std::uint16_t *w_hid, *w_vis, *a_chain, *a_hid, *a_err, *a_upd, *b_upd;

  explicit Bf16Ops(const Step& st) : t(st) {
    thread_local std::vector<std::uint16_t> b_whid, b_wvis, b_chain, b_ahid, b_aerr, b_aupd,
        b_bupd;
    kv = round_up(t.nv, 32); kh = round_up(t.nh, 32); ks = round_up(t.S, 32);
    w_hid = grow(b_whid, bf16_packed_b_elems(t.nv, t.nh));  // w^T: k = nv, n = nh
    w_vis = grow(b_wvis, bf16_packed_b_elems(t.nh, t.nv));  // w: k = nh, n = nv
    a_chain = grow(b_chain, bf16_packed_a_elems(t.P, t.nh));
    a_hid = grow(b_ahid, bf16_packed_a_elems(t.S, t.nv));  // [v0; vk]
    a_err = grow(b_aerr, bf16_packed_a_elems(t.B, t.nh));  // h0
    a_upd = grow(b_aupd, bf16_packed_a_elems(t.nh, t.S));  // lr [h0 / B; -hk / P]^T
    b_upd = grow(b_bupd, bf16_packed_b_elems(t.S, t.nv));  // [v0; vk]
  }
  void prepare(Range h) {
    pk.pack_b(w_hid, kv, h.lo / 16, (h.hi + 15) / 16, t.nv, t.nh, t.w, 1, t.nv);
    pk.pack_b_rows(w_vis, kh, 0, (t.nv + 15) / 16, h.lo, h.hi >= t.nh ? kh : h.hi, t.nh, t.nv,
                   t.w + h.lo * t.nv, t.nv);
    pk.pack_a_cols(a_chain, kh, 0, round_up(t.P, 16), t.P, h.lo, h.hi, t.nh, t.chain + h.lo,
                   t.nh);
  }
  void visible(Range c, float* vkp, int units) {
    product(K, t.P, c.hi - c.lo, t.nh, a_chain, w_vis + c.lo / 16 * 16 * kh, vkp, c.hi - c.lo,
            t.b_vis + c.lo, units, t.key, 2, t.nv, c.lo);
  }
  void stage_batch(Range c, const float* v0p, index_t ldv, const float* vkp) {
    const index_t n = c.hi - c.lo, b0 = c.lo / 16, b1 = (c.hi + 15) / 16;
    pk.pack_a_cols(a_hid, kv, 0, t.B, t.B, c.lo, c.hi, t.nv, v0p, ldv);
    pk.pack_a_cols(a_hid + t.B * kv, kv, 0, round_up(t.S, 16) - t.B, t.P, c.lo, c.hi, t.nv,
                   vkp, n);
    pk.pack_b_rows(b_upd + b0 * 16 * ks, ks, 0, b1 - b0, 0, t.B, t.S, n, v0p, ldv);
    pk.pack_b_rows(b_upd + b0 * 16 * ks, ks, 0, b1 - b0, t.B, ks, t.S, n, vkp, n);
  }
  void hidden(Range h, float* shp) {
    product(K, t.S, h.hi - h.lo, t.nv, a_hid, w_hid + h.lo / 16 * 16 * kv, shp, h.hi - h.lo,
            t.b_hid + h.lo, kSigmoid, t.key, 0, t.nh, h.lo);
  }
  void stage_error(Range h, const float* shp) {
    pk.pack_a_cols(a_err, kh, 0, round_up(t.B, 16), t.B, h.lo, h.hi, t.nh, shp, h.hi - h.lo);
  }
  void update(Range h, const float* shp) {
    const index_t n = h.hi - h.lo;
    pk.pack_a(a_upd + h.lo * ks, ks, 0, h.hi >= t.nh ? round_up(n, 16) : n, n, t.S, shp, 1, n);
    accumulate(K, n, t.nv, t.S, a_upd + h.lo * ks, b_upd, t.w + h.lo * t.nv, t.nv);
  }
  void error(Range c, float* recp, int units) {
    product(K, t.B, c.hi - c.lo, t.nh, a_err, w_vis + c.lo / 16 * 16 * kh, recp, c.hi - c.lo,
            t.b_vis + c.lo, units, t.key, 0, t.nv, c.lo);
  }
  void bernoulli(float* dst, const float* p, index_t n, index_t first, std::uint32_t stage) {
    pk.bernoulli(dst, p, n, first, t.key.k0, t.key.k1, stage);
  }
  void colsums(double* sums, const float* x, index_t rows, index_t cols, index_t ld,
               double scale) {
    pk.column_sums(sums, x, rows, cols, ld, scale);
  }
};
#endif

// The phases (see the top of the file), over either precision's operations.
template <class Ops>
double run_step(Step& t, int nt) {
  const RbmStep& s = *t.s;
  Ops ops(t);
  const index_t B = t.B, P = t.P, nv = t.nv, nh = t.nh, S = t.S;
  const bool with_error = s.compute_error;
  const int parts = int(std::min<index_t>({index_t(nt), (nh + 31) / 32, (nv + 31) / 32}));
  const double inv_b = 1.0 / double(B), inv_p = 1.0 / double(P);

  auto visible_phase = [&](Range c) {
    const index_t n = c.hi - c.lo;
    float* vkp = t.vk + P * c.lo;  // vk's columns c, P x n
    if (s.rows)
      for (index_t i = 0; i < B; ++i)
        std::memcpy(t.gathered + B * c.lo + i * n, t.x + s.rows[i] * nv + c.lo,
                    std::size_t(n) * sizeof(float));
    index_t ldv;
    const float* v0p = t.batch_cols(c, &ldv);
    ops.visible(c, vkp, s.gaussian ? kLinear : kSample);
    ops.stage_batch(c, v0p, ldv, vkp);
    std::fill(t.gv + c.lo, t.gv + c.hi, 0.0);
    ops.colsums(t.gv + c.lo, v0p, B, n, ldv, inv_b);
    ops.colsums(t.gv + c.lo, vkp, P, n, n, -inv_p);
    if (!with_error)  // else after the error's product, which needs the old biases
      for (index_t j = c.lo; j < c.hi; ++j) t.b_vis[j] += float(s.lr * t.gv[j]);
  };
  auto hidden_phase = [&](Range h) {
    const index_t n = h.hi - h.lo;
    float* shp = t.sh + S * h.lo;  // [h0; hk]'s columns h, S x n
    ops.hidden(h, shp);
    const float* hk = shp + B * n;
    for (index_t i = 0; i < P; ++i)
      ops.bernoulli(t.chain + i * nh + h.lo, hk + i * n, n, i * nh + h.lo, 3);
    std::fill(t.gh + h.lo, t.gh + h.hi, 0.0);
    ops.colsums(t.gh + h.lo, shp, B, n, n, inv_b);
    ops.colsums(t.gh + h.lo, hk, P, n, n, -inv_p);
    for (index_t j = h.lo; j < h.hi; ++j) t.b_hid[j] += float(s.lr * t.gh[j]);
    if (with_error) ops.stage_error(h, shp);
    // The update's A: the stack scaled by 1/B and -1/P (and lr, where the precision folds it).
    const double lr = Ops::kFoldLr ? s.lr : 1.0;
    const float sb = float(lr * inv_b), sp = float(-lr * inv_p);
    for (index_t i = 0; i < S; ++i) {
      float* row = shp + i * n;
      const float f = i < B ? sb : sp;
      for (index_t j = 0; j < n; ++j) row[j] *= f;
    }
    if (!(with_error && Ops::kUpdateAfterError)) ops.update(h, shp);
  };
  auto error_phase = [&](Range c) {
    const index_t n = c.hi - c.lo;
    float* recp = t.rec + B * c.lo;  // columns c of the reconstruction, B x n
    ops.error(c, recp, s.gaussian ? kLinear : kSigmoid);
    std::fill(t.err_col + c.lo, t.err_col + c.hi, 0.0);
    index_t ldv;
    const float* v0p = t.batch_cols(c, &ldv);
    for (index_t i = 0; i < B; ++i) {
      const float* xr = v0p + i * ldv;
      const float* r = recp + i * n;
      for (index_t j = 0; j < n; ++j) {
        const double d = double(xr[j]) - double(r[j]);
        t.err_col[c.lo + j] += d * d;
      }
    }
    for (index_t j = c.lo; j < c.hi; ++j) t.b_vis[j] += float(s.lr * t.gv[j]);
  };

  const int phases = with_error ? (Ops::kUpdateAfterError ? 5 : 4) : 3;
  parallel_phases(phases, parts, nt, [&](int phase, int part, int) {
    switch (phase) {
      case 0: ops.prepare(slice(nh, parts, part)); break;
      case 1: visible_phase(slice(nv, parts, part)); break;
      case 2: hidden_phase(slice(nh, parts, part)); break;
      case 3: error_phase(slice(nv, parts, part)); break;
      default: {  // the deferred update: part's hidden rows of w
        const Range h = slice(nh, parts, part);
        ops.update(h, t.sh + S * h.lo);
      }
    }
  });
  if (!with_error) return std::numeric_limits<double>::quiet_NaN();
  double acc = 0.0;
  for (index_t j = 0; j < nv; ++j) acc += t.err_col[j];
  return acc / double(B);
}

}  // namespace

void testing::set_rbm_fused(bool on) { g_fused.store(on, std::memory_order_relaxed); }

bool rbm_cd_step_fused(float* w, float* b_vis, float* b_hid, float* chain, const float* v0,
                       const RbmStep& s, double* err) {
  if (!g_fused.load(std::memory_order_relaxed) || s.particles <= 0 || s.k != 1 ||
      s.momentum != 0.0 || s.weight_decay != 0.0)
    return false;
  const bool bf16 = bf16_products();
  if (bf16 && s.batch % 2 != 0) return false;  // v0 and vk would share a packed (k, k+1) pair
  const index_t B = s.batch, P = s.particles, nv = s.nv, nh = s.nh, S = B + P;
  const int nt = threads_for(3.0 * double(S) * double(nv) * double(nh), 2.0e6);
  DenormalGuard guard;
  thread_local std::vector<float> b_sh, b_vk, b_rec, b_v0;
  thread_local std::vector<double> b_gv, b_gh, b_err;
  Step t{w, b_vis, b_hid, chain, v0, &s, B, P, nv, nh, S, rng::key_from_seed(s.seed),
         grow(b_sh, S * nh), grow(b_vk, P * nv), grow(b_rec, B * nv),
         s.rows ? grow(b_v0, B * nv) : nullptr, grow(b_gv, nv), grow(b_gh, nh),
         grow(b_err, nv)};
#if defined(FASTNN_HAVE_BF16_KERNELS)
  if (bf16) {
    *err = run_step<Bf16Ops>(t, nt);
    return true;
  }
#endif
  *err = run_step<F32Ops>(t, nt);
  return true;
}

}  // namespace fastnn
