// The recurrent drivers (LSTM, GRU, Elman RNN), forward and backward through time.
//
// Forward: the input projections of all steps are one GEMM into a (B, T, G*H) buffer whose
// columns are permuted so that each block of 16 hidden units owns G*16 contiguous columns (its
// gates side by side). Per step, one parallel job over chunks of unit blocks: a chunk runs its
// slice of the recurrent GEMM, accumulating U h into its columns of the step (beta = 1; the
// GRU keeps U h + b_hn apart, since r multiplies it), then the fused gate pass over the same
// columns while they are in cache. The recurrent weights are transposed and permuted once per
// call, so every slice reads its B panel in place (unit-stride, a chunk's panel sized to stay in
// L2), and no step packs anything. The state alternates between two buffers, since a chunk reads
// all of h_{t-1} while others write their units of h_t.
//
// Backward: per step, one job over unit chunks that first adds dG_{t+1} W_hh (its columns) to the
// gradient flowing into h_t, then runs the fused gate-derivative pass of step t for its units, so
// again one job a step; the bias gradients are summed in that pass, while a row is in L1. dG is
// kept for all steps; dx, dW_ih and dW_hh are large GEMMs after the loop. dW_hh pairs every dG row with the previous row of y (flattened
// (B*T) rows: y[b, t-1] is the state step t started from, for every step that ran) and then
// replaces the pairing at each sequence start by h0, with one small GEMM.
//
// Small problems do not pay for threads: the chunk job runs on threads_for(work) threads.
#include "cpu/rnn.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "common/cpuid.h"
#include "common/parallel.h"
#include "common/threading.h"
#include "common/workspace.h"
#include "cpu/gemm/gemm.h"

namespace fastnn {

const RnnIsaRows& rnn_rows() {
#if defined(FASTNN_HAVE_X86_KERNELS)
  switch (active_isa()) {
    case Isa::avx512: return kRnnRowsAvx512;
    case Isa::avx2: return kRnnRowsAvx2;
    default: break;
  }
#endif
  return kRnnRowsGeneric;
}

namespace {

template <class T>
const RnnRows<T>& rows_for();
template <>
const RnnRows<float>& rows_for<float>() { return rnn_rows().f32; }
template <>
const RnnRows<double>& rows_for<double>() { return rnn_rows().f64; }

// A chunk's recurrent weight panel stays below this (L2 of the smallest target, Zen 3: 512 KiB).
constexpr double kPanelBytes = 256.0 * 1024.0;

// Carves one scratch allocation into 64-byte aligned arrays.
class Carve {
 public:
  template <class T>
  static std::size_t bytes(index_t n) { return (std::size_t(n) * sizeof(T) + 63) / 64 * 64; }
  void bind(char* base) { base_ = base; }
  template <class T>
  T* take(index_t n) {
    T* p = reinterpret_cast<T*>(base_ + used_);
    used_ += bytes<T>(n);
    return p;
  }

 private:
  char* base_ = nullptr;
  std::size_t used_ = 0;
};

template <class T>
T* ws_alloc(std::size_t total) {
  return static_cast<T*>(scratch(kScratchOp, total));
}

// wt (K x G*H) = w^T with permuted columns (see rnn.h), w (G*H x K); bias_p likewise, the sum of
// the given biases (either may be null).
template <class T>
void pack_weights(T* wt, const T* w, int G, index_t H, index_t K) {
  const index_t GH = G * H;
  for (index_t b0 = 0; b0 < H; b0 += kRnnBlock) {
    const index_t U = std::min(kRnnBlock, H - b0);
    for (index_t k = 0; k < K; ++k) {
      T* dst = wt + k * GH + G * b0;
      for (int q = 0; q < G; ++q)
        for (index_t j = 0; j < U; ++j) dst[q * U + j] = w[(q * H + b0 + j) * K + k];
    }
  }
}

template <class T>
void pack_bias(T* out, const T* b1, const T* b2, int G, index_t H) {
  for (index_t b0 = 0; b0 < H; b0 += kRnnBlock) {
    const index_t U = std::min(kRnnBlock, H - b0);
    for (int q = 0; q < G; ++q)
      for (index_t j = 0; j < U; ++j) {
        const index_t src = q * H + b0 + j;
        out[G * b0 + q * U + j] = (b1 ? b1[src] : T(0)) + (b2 ? b2[src] : T(0));
      }
  }
}

struct Steps {
  index_t chunks = 1, units = 0;
  int threads = 1;
};

Steps plan_steps(index_t B, index_t H, int G, std::size_t elem) {
  const index_t nblocks = (H + kRnnBlock - 1) / kRnnBlock;
  Steps s;
  s.threads = threads_for(double(B) * G * double(H) * double(H));
  const double panel = double(G) * double(H) * double(H) * double(elem);
  index_t chunks = std::max<index_t>(s.threads, index_t(std::ceil(panel / kPanelBytes)));
  chunks = (chunks + s.threads - 1) / s.threads * s.threads;
  chunks = std::min(chunks, nblocks);
  const index_t per = (nblocks + chunks - 1) / chunks;
  s.chunks = (nblocks + per - 1) / per;
  s.units = per * kRnnBlock;
  s.threads = int(std::min<index_t>(s.threads, s.chunks));
  return s;
}

// C (m x n, row stride ldc) = beta*C + A (m x k, rsa, csa) @ B (k x n, row stride ldb, unit
// columns) [+ bias per column].
template <class T>
void mm(index_t m, index_t n, index_t k, const T* a, index_t rsa, index_t csa, const T* b,
        index_t ldb, T* c, index_t ldc, T beta, const T* bias = nullptr) {
  GemmProblem<T> p;
  p.m = m; p.n = n; p.k = k;
  p.a = a; p.rsa = rsa; p.csa = csa;
  p.b = b; p.rsb = ldb; p.csb = 1;
  p.c = c; p.rsc = ldc; p.csc = 1;
  p.beta = beta;
  p.ep.bias = bias;
  p.ep.bias_axis = 1;
  gemm(p);
}

// x (B*T x I) @ wt (I x GH) + bias into xp (B*T x GH).
template <class T>
void project(T* xp, const T* x, const T* wt, const T* bias, const RnnDims& d, index_t GH) {
  mm<T>(d.B * d.T, GH, d.I, x, d.I, 1, wt, GH, xp, GH, T(0), bias);
}

template <class T>
void copy_units(T* dst, const T* src, index_t u0, index_t u1) {
  std::memcpy(dst + u0, src + u0, std::size_t(u1 - u0) * sizeof(T));
}

template <class T>
void zero_units(T* dst, index_t u0, index_t u1) {
  std::memset(dst + u0, 0, std::size_t(u1 - u0) * sizeof(T));
}

// dx = dgx @ w_ih; dw_ih = dgx^T x; dw_hh = sum over steps that ran of dgh_t^T h_{t-1}.
// tmp: B*H elements.
template <class T>
void param_grads(T* dx, T* dw_ih, T* dw_hh, const T* dgx, const T* dgh, const T* x, const T* y,
                 const T* h0, const T* w_ih, const RnnDims& d, index_t GH, T* tmp) {
  const index_t BT = d.B * d.T, H = d.H;
  mm<T>(BT, d.I, GH, dgx, GH, 1, w_ih, d.I, dx, d.I, T(0));
  mm<T>(GH, d.I, BT, dgx, 1, GH, x, d.I, dw_ih, d.I, T(0));
  if (BT > 1) {
    mm<T>(GH, H, BT - 1, dgh + GH, 1, GH, y, H, dw_hh, H, T(0));
  } else {
    std::memset(dw_hh, 0, std::size_t(GH * H) * sizeof(T));
  }
  // Row b*T (a sequence start) was paired with y[b-1, T-1] (or nothing): swap in h0[b].
  for (index_t b = 0; b < d.B; ++b)
    for (index_t j = 0; j < H; ++j)
      tmp[b * H + j] = h0[b * H + j] - (b ? y[((b - 1) * d.T + d.T - 1) * H + j] : T(0));
  mm<T>(GH, H, d.B, dgh, 1, d.T * GH, tmp, H, dw_hh, H, T(1));
}

// db[q*H + j] += g[q*H + j] for the chunk's units: the bias gradients summed in the step pass,
// while the row is in L1 (a pass over all of dG afterwards would read it from memory again).
// The order (steps descending, rows ascending) does not depend on the threads.
template <class T>
void add_units(T* db, const T* g, int G, index_t H, index_t u0, index_t u1) {
  for (int q = 0; q < G; ++q) {
    T* o = db + q * H;
    const T* v = g + q * H;
    for (index_t j = u0; j < u1; ++j) o[j] += v[j];
  }
}

}  // namespace

// ---- LSTM ---------------------------------------------------------------------------------------

template <class T>
void lstm_forward(T* y, T* h_n, T* c_n, T* gates, const T* x, const T* h0, const T* c0,
                  const T* w_ih, const T* w_hh, const T* b_ih, const T* b_hh,
                  const std::int64_t* lengths, const RnnDims& d) {
  constexpr int G = 4;
  const index_t B = d.B, Tn = d.T, I = d.I, H = d.H, GH = G * H;
  Carve cv;
  const std::size_t total = Carve::bytes<T>(I * GH) + Carve::bytes<T>(H * GH) +
                            Carve::bytes<T>(GH) + Carve::bytes<T>(B * Tn * GH) +
                            Carve::bytes<T>(2 * B * H);
  cv.bind(reinterpret_cast<char*>(ws_alloc<T>(total)));
  T* wih_t = cv.take<T>(I * GH);
  T* whh_t = cv.take<T>(H * GH);
  T* bias = cv.take<T>(GH);
  T* xp = cv.take<T>(B * Tn * GH);
  T* hbuf = cv.take<T>(2 * B * H);
  pack_weights(wih_t, w_ih, G, H, I);
  pack_weights(whh_t, w_hh, G, H, H);
  pack_bias(bias, b_ih, b_hh, G, H);
  project(xp, x, wih_t, bias, d, GH);
  std::memcpy(hbuf, h0, std::size_t(B * H) * sizeof(T));
  std::memcpy(c_n, c0, std::size_t(B * H) * sizeof(T));
  const Steps s = plan_steps(B, H, G, sizeof(T));
  const RnnRows<T>& R = rows_for<T>();
  for (index_t t = 0; t < Tn; ++t) {
    const T* hp = hbuf + (t & 1) * B * H;
    T* hn = hbuf + ((t + 1) & 1) * B * H;
    parallel_for(s.chunks, s.threads, [&](std::int64_t ch, int) {
      const index_t u0 = ch * s.units, u1 = std::min(H, u0 + s.units);
      mm<T>(B, G * (u1 - u0), H, hp, H, 1, whh_t + G * u0, GH, xp + t * GH + G * u0, Tn * GH,
            T(1));
      for (index_t b = 0; b < B; ++b) {
        const index_t bt = b * Tn + t;
        if (t < lengths[b]) {
          R.lstm_fwd(xp + bt * GH, c_n + b * H, hn + b * H, y + bt * H,
                     gates ? gates + bt * 5 * H : nullptr, u0, u1, H);
        } else {
          copy_units(hn + b * H, hp + b * H, u0, u1);
          zero_units(y + bt * H, u0, u1);
        }
      }
    });
  }
  std::memcpy(h_n, hbuf + (Tn & 1) * B * H, std::size_t(B * H) * sizeof(T));
}

template <class T>
void lstm_backward(T* dx, T* dh0, T* dc0, T* dw_ih, T* dw_hh, T* db_ih, T* db_hh,
                   const T* gates, const T* y, const T* dy, const T* dh_n, const T* dc_n,
                   const T* x, const T* h0, const T* c0, const T* w_ih, const T* w_hh,
                   const std::int64_t* lengths, const RnnDims& d) {
  constexpr int G = 4;
  const index_t B = d.B, Tn = d.T, H = d.H, GH = G * H;
  Carve cv;
  const std::size_t total = Carve::bytes<T>(B * Tn * GH) + Carve::bytes<T>(B * H);
  cv.bind(reinterpret_cast<char*>(ws_alloc<T>(total)));
  T* dg = cv.take<T>(B * Tn * GH);
  T* tmp = cv.take<T>(B * H);
  T* dh = dh0;  // the running gradients live in the outputs
  T* dc = dc0;
  std::memcpy(dh, dh_n, std::size_t(B * H) * sizeof(T));
  std::memcpy(dc, dc_n, std::size_t(B * H) * sizeof(T));
  std::memset(db_ih, 0, std::size_t(GH) * sizeof(T));
  const Steps s = plan_steps(B, H, G, sizeof(T));
  const RnnRows<T>& R = rows_for<T>();
  for (index_t st = Tn; st >= 0; --st) {
    parallel_for(s.chunks, s.threads, [&](std::int64_t ch, int) {
      const index_t u0 = ch * s.units, u1 = std::min(H, u0 + s.units);
      if (st < Tn) mm<T>(B, u1 - u0, GH, dg + st * GH, Tn * GH, 1, w_hh + u0, H, dh + u0, H, T(1));
      if (st == 0) return;
      const index_t t = st - 1;
      for (index_t b = 0; b < B; ++b) {
        const index_t bt = b * Tn + t;
        T* g = dg + bt * GH;
        if (t < lengths[b]) {
          const T* cprev = t ? gates + (bt - 1) * 5 * H + 4 * H : c0 + b * H;
          R.lstm_bwd(g, dh + b * H, dc + b * H, dy + bt * H, gates + bt * 5 * H, cprev, u0, u1,
                     H);
          add_units(db_ih, g, G, H, u0, u1);
        } else {
          for (int q = 0; q < G; ++q) zero_units(g + q * H, u0, u1);
        }
      }
    });
  }
  param_grads(dx, dw_ih, dw_hh, dg, dg, x, y, h0, w_ih, d, GH, tmp);
  std::memcpy(db_hh, db_ih, std::size_t(GH) * sizeof(T));
}

// ---- GRU ----------------------------------------------------------------------------------------

template <class T>
void gru_forward(T* y, T* h_n, T* gates, const T* x, const T* h0, const T* w_ih, const T* w_hh,
                 const T* b_ih, const T* b_hh, const std::int64_t* lengths, const RnnDims& d) {
  constexpr int G = 3;
  const index_t B = d.B, Tn = d.T, I = d.I, H = d.H, GH = G * H;
  Carve cv;
  const std::size_t total = Carve::bytes<T>(I * GH) + Carve::bytes<T>(H * GH) +
                            2 * Carve::bytes<T>(GH) + Carve::bytes<T>(B * Tn * GH) +
                            Carve::bytes<T>(B * GH) + Carve::bytes<T>(2 * B * H);
  cv.bind(reinterpret_cast<char*>(ws_alloc<T>(total)));
  T* wih_t = cv.take<T>(I * GH);
  T* whh_t = cv.take<T>(H * GH);
  T* bias_i = cv.take<T>(GH);
  T* bias_h = cv.take<T>(GH);
  T* xp = cv.take<T>(B * Tn * GH);
  T* rec = cv.take<T>(B * GH);
  T* hbuf = cv.take<T>(2 * B * H);
  pack_weights(wih_t, w_ih, G, H, I);
  pack_weights(whh_t, w_hh, G, H, H);
  pack_bias<T>(bias_i, b_ih, nullptr, G, H);
  pack_bias<T>(bias_h, b_hh, nullptr, G, H);
  project(xp, x, wih_t, bias_i, d, GH);
  std::memcpy(hbuf, h0, std::size_t(B * H) * sizeof(T));
  const Steps s = plan_steps(B, H, G, sizeof(T));
  const RnnRows<T>& R = rows_for<T>();
  for (index_t t = 0; t < Tn; ++t) {
    const T* hp = hbuf + (t & 1) * B * H;
    T* hn = hbuf + ((t + 1) & 1) * B * H;
    parallel_for(s.chunks, s.threads, [&](std::int64_t ch, int) {
      const index_t u0 = ch * s.units, u1 = std::min(H, u0 + s.units);
      mm<T>(B, G * (u1 - u0), H, hp, H, 1, whh_t + G * u0, GH, rec + G * u0, GH, T(0),
            bias_h + G * u0);
      for (index_t b = 0; b < B; ++b) {
        const index_t bt = b * Tn + t;
        if (t < lengths[b]) {
          R.gru_fwd(xp + bt * GH, rec + b * GH, hp + b * H, hn + b * H, y + bt * H,
                    gates ? gates + bt * 4 * H : nullptr, u0, u1, H);
        } else {
          copy_units(hn + b * H, hp + b * H, u0, u1);
          zero_units(y + bt * H, u0, u1);
        }
      }
    });
  }
  std::memcpy(h_n, hbuf + (Tn & 1) * B * H, std::size_t(B * H) * sizeof(T));
}

template <class T>
void gru_backward(T* dx, T* dh0, T* dw_ih, T* dw_hh, T* db_ih, T* db_hh, const T* gates,
                  const T* y, const T* dy, const T* dh_n, const T* x, const T* h0,
                  const T* w_ih, const T* w_hh, const std::int64_t* lengths, const RnnDims& d) {
  constexpr int G = 3;
  const index_t B = d.B, Tn = d.T, H = d.H, GH = G * H;
  Carve cv;
  const std::size_t total = 2 * Carve::bytes<T>(B * Tn * GH) + Carve::bytes<T>(B * H);
  cv.bind(reinterpret_cast<char*>(ws_alloc<T>(total)));
  T* dgx = cv.take<T>(B * Tn * GH);
  T* dgh = cv.take<T>(B * Tn * GH);
  T* tmp = cv.take<T>(B * H);
  T* dh = dh0;
  std::memcpy(dh, dh_n, std::size_t(B * H) * sizeof(T));
  std::memset(db_ih, 0, std::size_t(GH) * sizeof(T));
  std::memset(db_hh, 0, std::size_t(GH) * sizeof(T));
  const Steps s = plan_steps(B, H, G, sizeof(T));
  const RnnRows<T>& R = rows_for<T>();
  for (index_t st = Tn; st >= 0; --st) {
    parallel_for(s.chunks, s.threads, [&](std::int64_t ch, int) {
      const index_t u0 = ch * s.units, u1 = std::min(H, u0 + s.units);
      if (st < Tn) mm<T>(B, u1 - u0, GH, dgh + st * GH, Tn * GH, 1, w_hh + u0, H, dh + u0, H, T(1));
      if (st == 0) return;
      const index_t t = st - 1;
      for (index_t b = 0; b < B; ++b) {
        const index_t bt = b * Tn + t;
        if (t < lengths[b]) {
          const T* hprev = t ? y + (bt - 1) * H : h0 + b * H;
          R.gru_bwd(dgx + bt * GH, dgh + bt * GH, dh + b * H, dy + bt * H, gates + bt * 4 * H,
                    hprev, u0, u1, H);
          add_units(db_ih, dgx + bt * GH, G, H, u0, u1);
          add_units(db_hh, dgh + bt * GH, G, H, u0, u1);
        } else {
          for (int q = 0; q < G; ++q) {
            zero_units(dgx + bt * GH + q * H, u0, u1);
            zero_units(dgh + bt * GH + q * H, u0, u1);
          }
        }
      }
    });
  }
  param_grads(dx, dw_ih, dw_hh, dgx, dgh, x, y, h0, w_ih, d, GH, tmp);
}

// ---- Elman RNN ----------------------------------------------------------------------------------

template <class T>
void rnn_forward(T* y, T* h_n, const T* x, const T* h0, const T* w_ih, const T* w_hh,
                 const T* b_ih, const T* b_hh, const std::int64_t* lengths, const RnnDims& d,
                 bool relu) {
  const index_t B = d.B, Tn = d.T, I = d.I, H = d.H;
  Carve cv;
  const std::size_t total = Carve::bytes<T>(I * H) + Carve::bytes<T>(H * H) +
                            Carve::bytes<T>(H) + Carve::bytes<T>(B * Tn * H) +
                            Carve::bytes<T>(2 * B * H);
  cv.bind(reinterpret_cast<char*>(ws_alloc<T>(total)));
  T* wih_t = cv.take<T>(I * H);
  T* whh_t = cv.take<T>(H * H);
  T* bias = cv.take<T>(H);
  T* xp = cv.take<T>(B * Tn * H);
  T* hbuf = cv.take<T>(2 * B * H);
  pack_weights(wih_t, w_ih, 1, H, I);
  pack_weights(whh_t, w_hh, 1, H, H);
  pack_bias(bias, b_ih, b_hh, 1, H);
  project(xp, x, wih_t, bias, d, H);
  std::memcpy(hbuf, h0, std::size_t(B * H) * sizeof(T));
  const Steps s = plan_steps(B, H, 1, sizeof(T));
  const RnnRows<T>& R = rows_for<T>();
  for (index_t t = 0; t < Tn; ++t) {
    const T* hp = hbuf + (t & 1) * B * H;
    T* hn = hbuf + ((t + 1) & 1) * B * H;
    parallel_for(s.chunks, s.threads, [&](std::int64_t ch, int) {
      const index_t u0 = ch * s.units, u1 = std::min(H, u0 + s.units);
      mm<T>(B, u1 - u0, H, hp, H, 1, whh_t + u0, H, xp + t * H + u0, Tn * H, T(1));
      for (index_t b = 0; b < B; ++b) {
        const index_t bt = b * Tn + t;
        if (t < lengths[b]) {
          R.rnn_fwd(xp + bt * H, hn + b * H, y + bt * H, u0, u1, relu);
        } else {
          copy_units(hn + b * H, hp + b * H, u0, u1);
          zero_units(y + bt * H, u0, u1);
        }
      }
    });
  }
  std::memcpy(h_n, hbuf + (Tn & 1) * B * H, std::size_t(B * H) * sizeof(T));
}

template <class T>
void rnn_backward(T* dx, T* dh0, T* dw_ih, T* dw_hh, T* db_ih, T* db_hh, const T* y, const T* dy,
                  const T* dh_n, const T* x, const T* h0, const T* w_ih, const T* w_hh,
                  const std::int64_t* lengths, const RnnDims& d, bool relu) {
  const index_t B = d.B, Tn = d.T, H = d.H;
  Carve cv;
  const std::size_t total = Carve::bytes<T>(B * Tn * H) + Carve::bytes<T>(B * H);
  cv.bind(reinterpret_cast<char*>(ws_alloc<T>(total)));
  T* dg = cv.take<T>(B * Tn * H);
  T* tmp = cv.take<T>(B * H);
  T* dh = dh0;
  std::memcpy(dh, dh_n, std::size_t(B * H) * sizeof(T));
  std::memset(db_ih, 0, std::size_t(H) * sizeof(T));
  const Steps s = plan_steps(B, H, 1, sizeof(T));
  const RnnRows<T>& R = rows_for<T>();
  for (index_t st = Tn; st >= 0; --st) {
    parallel_for(s.chunks, s.threads, [&](std::int64_t ch, int) {
      const index_t u0 = ch * s.units, u1 = std::min(H, u0 + s.units);
      if (st < Tn) mm<T>(B, u1 - u0, H, dg + st * H, Tn * H, 1, w_hh + u0, H, dh + u0, H, T(1));
      if (st == 0) return;
      const index_t t = st - 1;
      for (index_t b = 0; b < B; ++b) {
        const index_t bt = b * Tn + t;
        if (t < lengths[b]) {
          R.rnn_bwd(dg + bt * H, dh + b * H, dy + bt * H, y + bt * H, u0, u1, relu);
          add_units(db_ih, dg + bt * H, 1, H, u0, u1);
        } else {
          zero_units(dg + bt * H, u0, u1);
        }
      }
    });
  }
  param_grads(dx, dw_ih, dw_hh, dg, dg, x, y, h0, w_ih, d, H, tmp);
  std::memcpy(db_hh, db_ih, std::size_t(H) * sizeof(T));
}

#define FASTNN_RNN_INSTANTIATE(T)                                                                \
  template void lstm_forward<T>(T*, T*, T*, T*, const T*, const T*, const T*, const T*,          \
                                const T*, const T*, const T*, const std::int64_t*,               \
                                const RnnDims&);                                                 \
  template void lstm_backward<T>(T*, T*, T*, T*, T*, T*, T*, const T*, const T*, const T*,       \
                                 const T*, const T*, const T*, const T*, const T*, const T*,     \
                                 const T*, const std::int64_t*, const RnnDims&);                 \
  template void gru_forward<T>(T*, T*, T*, const T*, const T*, const T*, const T*, const T*,     \
                               const T*, const std::int64_t*, const RnnDims&);                   \
  template void gru_backward<T>(T*, T*, T*, T*, T*, T*, const T*, const T*, const T*, const T*,  \
                                const T*, const T*, const T*, const T*, const std::int64_t*,     \
                                const RnnDims&);                                                 \
  template void rnn_forward<T>(T*, T*, const T*, const T*, const T*, const T*, const T*,         \
                               const T*, const std::int64_t*, const RnnDims&, bool);             \
  template void rnn_backward<T>(T*, T*, T*, T*, T*, T*, const T*, const T*, const T*, const T*,  \
                                const T*, const T*, const T*, const std::int64_t*,               \
                                const RnnDims&, bool);

FASTNN_RNN_INSTANTIATE(float)
FASTNN_RNN_INSTANTIATE(double)
#undef FASTNN_RNN_INSTANTIATE

}  // namespace fastnn
