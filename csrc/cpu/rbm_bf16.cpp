// The persistent-CD-1 step on bfloat16 products as one phased job.
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
//   (3. with the reconstruction error: per visible slice, sigmoid(h0 w + b_vis) against v0.)
//
// Phase 2 needs all of vk (phase 1) and phase 1 all of the packed w (phase 0); within phase 2 a
// slice's update needs only that slice's hidden units, so it follows without a wait. Part p
// handles the same rows of w in phases 0 and 2 of every step, on the same thread as a rule: those
// rows stay in its core's L2 from one step to the next. Every element is computed as in
// rbm_cd_step's general bfloat16 path (the same packed values, the same tile sums, the same
// counters, the same column sums in double), so the two give the same bits.
#include "cpu/rbm_bf16.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "common/activations.h"
#include "common/fpenv.h"
#include "common/parallel.h"
#include "common/rng.h"
#include "common/threading.h"
#include "cpu/gemm/bf16.h"
#include "cpu/gemm/bf16_dispatch.h"

namespace fastnn {
namespace {

std::atomic<bool> g_fused{true};

#if defined(FASTNN_HAVE_BF16_KERNELS)
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

enum Units : int { kLinear = 0, kSigmoid = 1, kSample = 2 };  // Epilogue::rbm

// C (m x n, row stride rsc) := units(A B + bias) on the packed operands, on this thread.
void product(const Bf16Compute& K, index_t m, index_t n, index_t k, const std::uint16_t* ap,
             const std::uint16_t* bp, float* c, index_t rsc, const float* bias, int units,
             rng::Key key, std::uint32_t stage, index_t cnt_rs, index_t cnt0) {
  GemmProblem<float> q;
  q.m = m; q.n = n; q.k = k;
  q.c = c; q.rsc = rsc; q.csc = 1;
  q.ep.bias = bias;
  q.ep.act = units == kLinear ? act::NONE : act::SIGMOID;
  q.ep.rbm = units;
  q.ep.key0 = key.k0;
  q.ep.key1 = key.k1;
  q.ep.stage = stage;
  q.ep.cnt_rs = cnt_rs;
  q.ep.cnt_cs = 1;
  q.ep.cnt0 = cnt0;
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

}  // namespace

void testing::set_rbm_fused(bool on) { g_fused.store(on, std::memory_order_relaxed); }

bool rbm_cd_step_fused_bf16(float* w, float* b_vis, float* b_hid, float* chain, const float* v0,
                            const RbmStep& s, double* err) {
#if !defined(FASTNN_HAVE_BF16_KERNELS)
  (void)w; (void)b_vis; (void)b_hid; (void)chain; (void)v0; (void)s; (void)err;
  return false;
#else
  if (!g_fused.load(std::memory_order_relaxed) || !bf16_products() || s.particles <= 0 ||
      s.k != 1 || s.momentum != 0.0 || s.weight_decay != 0.0 || s.batch % 2 != 0)
    return false;
  DenormalGuard guard;
  const Bf16Compute& K = bf16_compute();
  const Bf16Pack& pk = kBf16Pack;
  const index_t B = s.batch, P = s.particles, nv = s.nv, nh = s.nh, S = B + P;
  const index_t kv = round_up(nv, 32), kh = round_up(nh, 32), ks = round_up(S, 32);
  const rng::Key key = rng::key_from_seed(s.seed);
  const bool with_error = s.compute_error;
  const int visible_units = s.gaussian ? kLinear : kSample;

  thread_local std::vector<std::uint16_t> b_whid, b_wvis, b_chain, b_ahid, b_aerr, b_aupd, b_bupd;
  thread_local std::vector<float> b_sh, b_vk, b_rec, b_v0;
  thread_local std::vector<double> b_gv, b_gh, b_err;
  // B operands of the hidden product (w^T: k = nv, n = nh) and the visible one (w: k = nh).
  std::uint16_t* w_hid = grow(b_whid, bf16_packed_b_elems(nv, nh));
  std::uint16_t* w_vis = grow(b_wvis, bf16_packed_b_elems(nh, nv));
  std::uint16_t* a_chain = grow(b_chain, bf16_packed_a_elems(P, nh));
  std::uint16_t* a_hid = grow(b_ahid, bf16_packed_a_elems(S, nv));   // [v0; vk]
  std::uint16_t* a_err = grow(b_aerr, bf16_packed_a_elems(B, nh));   // h0
  std::uint16_t* a_upd = grow(b_aupd, bf16_packed_a_elems(nh, S));   // lr [h0 / B; -hk / P]^T
  std::uint16_t* b_upd = grow(b_bupd, bf16_packed_b_elems(S, nv));   // [v0; vk]
  float* sh = grow(b_sh, S * nh);  // [h0; hk]
  float* vk = grow(b_vk, P * nv);
  float* rec = grow(b_rec, B * nv);
  float* gathered = s.rows ? grow(b_v0, B * nv) : nullptr;  // s.rows: v0's panels
  double* gv = grow(b_gv, nv);
  double* gh = grow(b_gh, nh);
  double* err_col = grow(b_err, nv);

  const index_t bh = (nh + 31) / 32, bv = (nv + 31) / 32;
  const int nt = threads_for(3.0 * double(S) * double(nv) * double(nh), 2.0e6);
  const int parts = int(std::min<index_t>({index_t(nt), bh, bv}));
  const double inv_b = 1.0 / double(B), inv_p = 1.0 / double(P);

  // A part's own matrices (sh, vk, rec) are panels of its columns, contiguous, not column
  // slices of shared rows: with slices, each core's stream prefetcher ran on into the other
  // core's columns of the same rows, and every write then had to take those lines back (the
  // hidden phase spent a third of its time so). Panel p starts at column p's offset times rows.
  auto pack_phase = [&](Range h) {
    pk.pack_b(w_hid, kv, h.lo / 16, (h.hi + 15) / 16, nv, nh, w, 1, nv);
    pk.pack_b_rows(w_vis, kh, 0, (nv + 15) / 16, h.lo, h.hi >= nh ? kh : h.hi, nh, nv,
                   w + h.lo * nv, nv);
    pk.pack_a_cols(a_chain, kh, 0, round_up(P, 16), P, h.lo, h.hi, nh, chain + h.lo, nh);
  };
  // Columns c of the batch: of v0 itself, or (s.rows) a panel gathered by phase 1.
  auto batch_cols = [&](Range c, index_t* ld) -> const float* {
    *ld = s.rows ? c.hi - c.lo : nv;
    return s.rows ? gathered + B * c.lo : v0 + c.lo;
  };
  auto visible_phase = [&](Range c) {
    const index_t n = c.hi - c.lo;
    float* vkp = vk + P * c.lo;  // vk's columns c, P x n
    index_t ldv;
    const float* v0p = batch_cols(c, &ldv);
    if (s.rows)
      for (index_t i = 0; i < B; ++i)
        std::memcpy(gathered + B * c.lo + i * n, v0 + s.rows[i] * nv + c.lo,
                    std::size_t(n) * sizeof(float));
    product(K, P, n, nh, a_chain, w_vis + c.lo / 16 * 16 * kh, vkp, n, b_vis + c.lo,
            visible_units, key, 2, nv, c.lo);
    pk.pack_a_cols(a_hid, kv, 0, B, B, c.lo, c.hi, nv, v0p, ldv);
    pk.pack_a_cols(a_hid + B * kv, kv, 0, round_up(S, 16) - B, P, c.lo, c.hi, nv, vkp, n);
    const index_t b0 = c.lo / 16, b1 = (c.hi + 15) / 16;
    pk.pack_b_rows(b_upd + b0 * 16 * ks, ks, 0, b1 - b0, 0, B, S, n, v0p, ldv);
    pk.pack_b_rows(b_upd + b0 * 16 * ks, ks, 0, b1 - b0, B, ks, S, n, vkp, n);
    std::fill(gv + c.lo, gv + c.hi, 0.0);
    pk.column_sums(gv + c.lo, v0p, B, n, ldv, inv_b);
    pk.column_sums(gv + c.lo, vkp, P, n, n, -inv_p);
    if (!with_error)  // else after the error's product, which needs the old biases
      for (index_t j = c.lo; j < c.hi; ++j) b_vis[j] += float(s.lr * gv[j]);
  };
  auto hidden_phase = [&](Range h) {
    const index_t n = h.hi - h.lo;
    float* shp = sh + S * h.lo;  // [h0; hk]'s columns h, S x n
    product(K, S, n, nv, a_hid, w_hid + h.lo / 16 * 16 * kv, shp, n, b_hid + h.lo, kSigmoid,
            key, 0, nh, h.lo);
    const float* hk = shp + B * n;
    for (index_t i = 0; i < P; ++i)
      pk.bernoulli(chain + i * nh + h.lo, hk + i * n, n, i * nh + h.lo, key.k0, key.k1, 3);
    std::fill(gh + h.lo, gh + h.hi, 0.0);
    pk.column_sums(gh + h.lo, shp, B, n, n, inv_b);
    pk.column_sums(gh + h.lo, hk, P, n, n, -inv_p);
    for (index_t j = h.lo; j < h.hi; ++j) b_hid[j] += float(s.lr * gh[j]);
    if (with_error) pk.pack_a_cols(a_err, kh, 0, round_up(B, 16), B, h.lo, h.hi, nh, shp, n);
    // The update's A = the scaled stack, transposed: lr folded in, so that the tiles add the
    // products to w with alpha 1 and no epilogue pass.
    const float sb = float(s.lr * inv_b), sp = float(-s.lr * inv_p);
    for (index_t i = 0; i < S; ++i) {
      float* row = shp + i * n;
      const float f = i < B ? sb : sp;
      for (index_t j = 0; j < n; ++j) row[j] *= f;
    }
    pk.pack_a(a_upd + h.lo * ks, ks, 0, h.hi >= nh ? round_up(n, 16) : n, n, S, shp, 1, n);
    accumulate(K, n, nv, S, a_upd + h.lo * ks, b_upd, w + h.lo * nv, nv);
  };
  auto error_phase = [&](Range c) {
    const index_t n = c.hi - c.lo;
    float* recp = rec + B * c.lo;  // columns c of the reconstruction, B x n
    product(K, B, n, nh, a_err, w_vis + c.lo / 16 * 16 * kh, recp, n, b_vis + c.lo,
            s.gaussian ? kLinear : kSigmoid, key, 0, nv, c.lo);
    std::fill(err_col + c.lo, err_col + c.hi, 0.0);
    index_t ldv;
    const float* v0p = batch_cols(c, &ldv);
    for (index_t i = 0; i < B; ++i) {
      const float* x = v0p + i * ldv;
      const float* r = recp + i * n;
      for (index_t j = 0; j < n; ++j) {
        const double d = double(x[j]) - double(r[j]);
        err_col[c.lo + j] += d * d;
      }
    }
    for (index_t j = c.lo; j < c.hi; ++j) b_vis[j] += float(s.lr * gv[j]);
  };

  parallel_phases(with_error ? 4 : 3, parts, nt, [&](int phase, int part, int) {
    switch (phase) {
      case 0: pack_phase(slice(nh, parts, part)); break;
      case 1: visible_phase(slice(nv, parts, part)); break;
      case 2: hidden_phase(slice(nh, parts, part)); break;
      default: error_phase(slice(nv, parts, part)); break;
    }
  });

  *err = std::numeric_limits<double>::quiet_NaN();
  if (with_error) {
    double acc = 0.0;
    for (index_t j = 0; j < nv; ++j) acc += err_col[j];
    *err = acc / double(B);
  }
  return true;
#endif
}

}  // namespace fastnn
