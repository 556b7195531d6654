#include "cpu/rbm.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "common/activations.h"
#include "common/fpenv.h"
#include "common/parallel.h"
#include "common/rbm_math.h"
#include "common/threading.h"
#include "cpu/gemm/bf16.h"
#include "cpu/rbm_fused.h"
#include "cpu/rbm_units.h"

namespace fastnn {
namespace {

// Grow-only buffers of the calling thread: a training loop calls rbm_cd_step once per batch, and
// fresh allocations of a few hundred KiB would come back as mmap'ed pages, faulted in each call.
template <class T>
T* buffer(int which, std::size_t n) {
  thread_local std::vector<T> bufs[6];
  std::vector<T>& b = bufs[which];
  if (b.size() < n) b.resize(n);
  return b.data();
}

using rbm::kLinear;
using rbm::kSample;
using rbm::kSigmoid;

// out (rows x n) := units(in (rows x k) @ W + bias), W (k x n) read at strides (rsw, csw).
template <class T>
void units_gemm(T* out, const T* in, index_t rows, index_t n, index_t k, const T* w, index_t rsw,
                index_t csw, const T* bias, int units, rng::Key key, std::uint32_t stage,
                const std::uint16_t* packed = nullptr) {
  GemmProblem<T> p;
  p.m = rows; p.n = n; p.k = k;
  p.a = in; p.rsa = k; p.csa = 1;
  p.b = w; p.rsb = rsw; p.csb = csw;
  p.c = out; p.rsc = n; p.csc = 1;
  rbm::set_units(p.ep, bias, units, key, stage, n);  // C contiguous: the flat index
  if constexpr (std::is_same_v<T, float>) {
    if (packed) {
      gemm_bf16(p, packed);
      return;
    }
  }
  gemm(p);
}

// out (rows x nh) := units(in w^T + b_hid).
template <class T>
void hidden_gemm(T* out, const T* in, index_t rows, const T* w, const T* b_hid, index_t nv,
                 index_t nh, int units, rng::Key key, std::uint32_t stage,
                 const std::uint16_t* packed = nullptr) {
  units_gemm(out, in, rows, nh, nv, w, 1, nv, b_hid, units, key, stage, packed);  // B = w^T
}

// out (rows x nv) := units(in w + b_vis).
template <class T>
void visible_gemm(T* out, const T* in, index_t rows, const T* w, const T* b_vis, index_t nv,
                  index_t nh, int units, rng::Key key, std::uint32_t stage,
                  const std::uint16_t* packed = nullptr) {
  units_gemm(out, in, rows, nv, nh, w, nv, 1, b_vis, units, key, stage, packed);
}

template <class T>
void draw(T* dst, const T* p, index_t n, rng::Key key, std::uint32_t stage) {
  if constexpr (std::is_same_v<T, float>) {
    if (bf16_products()) return bf16_bernoulli(dst, p, n, key.k0, key.k1, stage);
  }
  rbm::bernoulli_row(dst, p, n, 0, key, stage);
}

// sums[j] += scale * sum_i x[i, j], in double.
template <class T>
void add_column_sums(double* sums, const T* x, index_t rows, index_t cols, double scale) {
  if constexpr (std::is_same_v<T, float>) {
    if (bf16_products()) return bf16_column_sums(sums, x, rows, cols, scale);
  }
  rbm::column_sums(sums, x, rows, cols, cols, scale);
}

}  // namespace

template <class T>
void rbm_hidden(T* h, const T* v, const T* w, const T* b_hid, index_t batch, index_t nv,
                index_t nh, bool sample, std::uint64_t seed) {
  hidden_gemm(h, v, batch, w, b_hid, nv, nh, sample ? kSample : kSigmoid,
              rng::key_from_seed(seed), 0);
}

template <class T>
void rbm_visible(T* v, const T* h, const T* w, const T* b_vis, index_t batch, index_t nv,
                 index_t nh, bool gaussian, bool sample, std::uint64_t seed) {
  const rng::Key key = rng::key_from_seed(seed);
  visible_gemm(v, h, batch, w, b_vis, nv, nh, gaussian ? kLinear : (sample ? kSample : kSigmoid),
               key, 0);
  if (gaussian && sample) {
    for (index_t i = 0; i < batch * nv; ++i)
      v[i] += T(rbm::gaussian(key, static_cast<std::uint32_t>(i), 0));
  }
}

template <class T>
double rbm_cd_step(T* w, T* b_vis, T* b_hid, T* chain, T* vel_w, T* vel_b_vis, T* vel_b_hid,
                   const T* v0, const RbmStep& s) {
  if constexpr (std::is_same_v<T, float>) {  // the common PCD-1 step, one phased job
    double err;
    if (rbm_cd_step_fused(w, b_vis, b_hid, chain, v0, s, &err)) return err;
  }
  if (s.rows) {  // the general path gathers the batch first
    T* batch = buffer<T>(5, std::size_t(s.batch * s.nv));
    for (index_t i = 0; i < s.batch; ++i)
      std::memcpy(batch + i * s.nv, v0 + s.rows[i] * s.nv, std::size_t(s.nv) * sizeof(T));
    RbmStep g = s;
    g.rows = nullptr;
    return rbm_cd_step(w, b_vis, b_hid, chain, vel_w, vel_b_vis, vel_b_hid, batch, g);
  }
  DenormalGuard guard;
  const index_t B = s.batch, nv = s.nv, nh = s.nh;
  const bool persistent = s.particles > 0;
  const index_t P = persistent ? s.particles : B;
  const rng::Key key = rng::key_from_seed(s.seed);
  // Positive and negative phases stacked, so that the weight update is one product:
  // sh = [h0 / B; -hk / P] ((B + P) x nh), sv = [v0; vk] ((B + P) x nv).
  T* sh = buffer<T>(0, std::size_t((B + P) * nh));
  T* sv = buffer<T>(1, std::size_t((B + P) * nv));
  T* hs = buffer<T>(2, std::size_t(P * nh));
  T* h0 = sh;
  T* hk = sh + B * nh;
  T* vk = sv + B * nv;
  // bfloat16 products ("medium" precision): w rounded and packed once for the step's products,
  // in both orientations (w^T for the hidden units, w for the visible ones).
  const std::uint16_t *w_hid = nullptr, *w_vis = nullptr;
  if constexpr (std::is_same_v<T, float>) {
    if (bf16_products()) {
      thread_local std::vector<std::uint16_t> packs[2];
      packs[0].resize(std::size_t(bf16_packed_b_elems(nv, nh)));
      packs[1].resize(std::size_t(bf16_packed_b_elems(nh, nv)));
      const int nt = threads_for(double(nh) * double(nv) * 8.0);
      bf16_pack_b(packs[0].data(), nv, nh, w, 1, nv, nt);
      bf16_pack_b(packs[1].data(), nh, nv, w, nv, 1, nt);
      w_hid = packs[0].data();
      w_vis = packs[1].data();
    }
  }
  // The stacked visible operand of the weight update: v0 is copied in (float32), or packed
  // straight from the caller's array (bfloat16, vk joins it after the Gibbs steps).
  std::uint16_t* sv_packed = nullptr;
  if constexpr (std::is_same_v<T, float>) {
    if (w_hid) {
      thread_local std::vector<std::uint16_t> pack_sv;
      pack_sv.resize(std::size_t(bf16_packed_b_elems(B + P, nv)));
      sv_packed = pack_sv.data();
      if (B % 2 != 0) sv_packed = nullptr;  // v0 and vk share a (k, k+1) pair: pack the copy
    }
  }
  if (!sv_packed) std::memcpy(sv, v0, std::size_t(B * nv) * sizeof(T));
  // PCD-1 on bfloat16 products: h0 does not depend on the chain, so h0 and hk come from one
  // product of the stacked [v0; vk] (one pass over w^T, taller tiles), after vk. Every element
  // is the same sum as in two products.
  const bool stacked = w_hid && persistent && s.k == 1 && B % 16 == 0;
  if (!stacked) hidden_gemm(h0, v0, B, w, b_hid, nv, nh, kSigmoid, key, 0, w_hid);
  if (stacked) {
    if constexpr (std::is_same_v<T, float>) {
      visible_gemm(vk, chain, P, w, b_vis, nv, nh, s.gaussian ? kLinear : kSample, key, 2,
                   w_vis);
      thread_local std::vector<std::uint16_t> pack_a;
      pack_a.resize(std::size_t(bf16_packed_a_elems(B + P, nv)));
      const int nt = threads_for(double(B + P) * double(nv) * 4.0);
      bf16_pack_a_rows(pack_a.data(), B + P, nv, 0, B, v0, nv, 1, nt);
      bf16_pack_a_rows(pack_a.data(), B + P, nv, B, B + P, vk, nv, 1, nt);
      GemmProblem<float> q;
      q.m = B + P; q.n = nh; q.k = nv;
      q.b = w; q.rsb = 1; q.csb = nv;
      q.c = sh; q.rsc = nh; q.csc = 1;
      rbm::set_units(q.ep, b_hid, kSigmoid, key, 0, nh);
      gemm_bf16(q, w_hid, pack_a.data());
      draw(chain, hk, P * nh, key, 3);
    }
  }

  double err = std::numeric_limits<double>::quiet_NaN();
  if (s.compute_error) {
    T* rec = buffer<T>(3, std::size_t(B * nv));
    visible_gemm(rec, h0, B, w, b_vis, nv, nh, s.gaussian ? kLinear : kSigmoid, key, 0, w_vis);
    double acc = 0.0;
    for (index_t i = 0; i < B * nv; ++i) {
      const double d = double(v0[i]) - double(rec[i]);
      acc += d * d;
    }
    err = acc / double(B);
  }

  const T* particles = chain;
  if (!persistent) {
    draw(hs, h0, B * nh, key, 1);
    particles = hs;
  }
  for (int t = 1; t <= (stacked ? 0 : s.k); ++t) {
    const std::uint32_t st = std::uint32_t(2 * t);
    visible_gemm(vk, particles, P, w, b_vis, nv, nh, s.gaussian ? kLinear : kSample, key, st,
                 w_vis);
    hidden_gemm(hk, vk, P, w, b_hid, nv, nh, kSigmoid, key, 0, w_hid);
    if (t < s.k || persistent) {
      T* dst = (persistent && t == s.k) ? chain : hs;
      draw(dst, hk, P * nh, key, st + 1);
      particles = hs;
    }
  }

  // Bias gradients, then the scaled stack for the weight product.
  std::vector<double> gv(std::size_t(nv), 0.0), gh(std::size_t(nh), 0.0);
  const double inv_b = 1.0 / double(B), inv_p = 1.0 / double(P);
  add_column_sums(gv.data(), v0, B, nv, inv_b);
  add_column_sums(gv.data(), vk, P, nv, -inv_p);
  add_column_sums(gh.data(), h0, B, nh, inv_b);
  add_column_sums(gh.data(), hk, P, nh, -inv_p);
  const bool mom = s.momentum != 0.0;
  // A plain update on bfloat16 products (beta 1) folds lr into the stack: alpha 1 lets the AMX
  // kernel add the products to w in its tiles, without an epilogue pass.
  const bool fold_lr = sv_packed && !mom && s.weight_decay == 0.0;
  const double scale = fold_lr ? s.lr : 1.0;
  const T sb = T(scale * inv_b), sp = T(-scale * inv_p);
  for (index_t i = 0; i < B * nh; ++i) h0[i] *= sb;
  for (index_t i = 0; i < P * nh; ++i) hk[i] *= sp;

  if constexpr (std::is_same_v<T, float>) {
    if (sv_packed) {
      const int nt = threads_for(double(B + P) * double(nv) * 4.0);
      bf16_pack_b_rows(sv_packed, B + P, nv, 0, B, v0, nv, nt);
      bf16_pack_b_rows(sv_packed, B + P, nv, B, B + P, vk, nv, nt);
    }
  }
  GemmProblem<T> g;  // (vel_w or w) := lr * sh^T sv + beta * itself
  g.m = nh; g.n = nv; g.k = B + P;
  g.a = sh; g.rsa = 1; g.csa = nh;
  g.b = sv; g.rsb = nv; g.csb = 1;
  g.c = mom ? vel_w : w; g.rsc = nv; g.csc = 1;
  g.alpha = fold_lr ? T(1) : T(s.lr);
  g.beta = mom ? T(s.momentum) : T(1.0 - s.lr * s.weight_decay);
  if constexpr (std::is_same_v<T, float>) {
    if (sv_packed) gemm_bf16(g, sv_packed);
    else gemm(g);
  } else {
    gemm(g);
  }
  if (mom) {
    const T decay = T(s.lr * s.weight_decay);
    const index_t n = nh * nv;
    const int nt = threads_for(double(n) * 0.5);
    parallel_range(n, nt > 1 ? (n + 4 * nt - 1) / (4 * nt) : n, nt, [&](index_t lo, index_t hi) {
      for (index_t i = lo; i < hi; ++i) {
        vel_w[i] -= decay * w[i];
        w[i] += vel_w[i];
      }
    });
    const T mu = T(s.momentum), lr = T(s.lr);
    for (index_t j = 0; j < nv; ++j) {
      vel_b_vis[j] = mu * vel_b_vis[j] + lr * T(gv[j]);
      b_vis[j] += vel_b_vis[j];
    }
    for (index_t j = 0; j < nh; ++j) {
      vel_b_hid[j] = mu * vel_b_hid[j] + lr * T(gh[j]);
      b_hid[j] += vel_b_hid[j];
    }
  } else {
    for (index_t j = 0; j < nv; ++j) b_vis[j] += T(s.lr * gv[j]);
    for (index_t j = 0; j < nh; ++j) b_hid[j] += T(s.lr * gh[j]);
  }
  return err;
}

template <class T>
void rbm_free_energy(double* out, const T* v, const T* w, const T* b_vis, const T* b_hid,
                     index_t batch, index_t nv, index_t nh, bool gaussian) {
  T* z = buffer<T>(4, std::size_t(batch * nh));
  hidden_gemm(z, v, batch, w, b_hid, nv, nh, kLinear, rng::Key{0, 0}, 0);
  const int nt = threads_for(double(batch) * double(nh) * 8.0);
  parallel_range(batch, nt > 1 ? (batch + 4 * nt - 1) / (4 * nt) : batch, nt,
                 [&](index_t lo, index_t hi) {
    for (index_t i = lo; i < hi; ++i) {
      const T* vi = v + i * nv;
      double vis = 0.0;
      for (index_t j = 0; j < nv; ++j) {
        if (gaussian) {
          const double d = double(vi[j]) - double(b_vis[j]);
          vis += 0.5 * d * d;
        } else {
          vis -= double(vi[j]) * double(b_vis[j]);
        }
      }
      double hid = 0.0;
      for (index_t q = 0; q < nh; ++q) hid += rbm::softplus(double(z[i * nh + q]));
      out[i] = vis - hid;
    }
  });
}

template <class T>
void rbm_pseudo_likelihood(double* out, const T* v, const T* w, const T* b_vis, const T* b_hid,
                           index_t batch, index_t nv, index_t nh, std::uint64_t seed) {
  T* z = buffer<T>(4, std::size_t(batch * nh));
  hidden_gemm(z, v, batch, w, b_hid, nv, nh, kLinear, rng::Key{0, 0}, 0);
  const rng::Key key = rng::key_from_seed(seed);
  const int nt = threads_for(double(batch) * double(nh) * 16.0);
  parallel_range(batch, nt > 1 ? (batch + 4 * nt - 1) / (4 * nt) : batch, nt,
                 [&](index_t lo, index_t hi) {
    for (index_t i = lo; i < hi; ++i) {
      const std::uint64_t bits = rng::bits(key, static_cast<std::uint32_t>(i), 0);
      const index_t j = index_t((bits * std::uint64_t(nv)) >> 32);
      const double x = double(v[i * nv + j]);
      const double sign = 1.0 - 2.0 * x;  // v_j -> 1 - v_j moves v_j by this
      double diff = -sign * double(b_vis[j]);  // F(flipped) - F(v)
      for (index_t q = 0; q < nh; ++q) {
        const double a = double(z[i * nh + q]);
        diff -= rbm::softplus(a + sign * double(w[q * nv + j])) - rbm::softplus(a);
      }
      out[i] = -double(nv) * rbm::softplus(-diff);
    }
  });
}

#define FASTNN_RBM_INSTANTIATE(T)                                                              \
  template void rbm_hidden<T>(T*, const T*, const T*, const T*, index_t, index_t, index_t, bool, \
                              std::uint64_t);                                                  \
  template void rbm_visible<T>(T*, const T*, const T*, const T*, index_t, index_t, index_t,     \
                               bool, bool, std::uint64_t);                                     \
  template double rbm_cd_step<T>(T*, T*, T*, T*, T*, T*, T*, const T*, const RbmStep&);        \
  template void rbm_free_energy<T>(double*, const T*, const T*, const T*, const T*, index_t,    \
                                   index_t, index_t, bool);                                    \
  template void rbm_pseudo_likelihood<T>(double*, const T*, const T*, const T*, const T*,       \
                                         index_t, index_t, index_t, std::uint64_t);
FASTNN_RBM_INSTANTIATE(float)
FASTNN_RBM_INSTANTIATE(double)
#undef FASTNN_RBM_INSTANTIATE

}  // namespace fastnn
