// The recurrent family on the GPU (LSTM, GRU, Elman RNN), with the semantics, layouts and saved
// gates of the CPU kernels (csrc/cpu/rnn.h): batch-first C-contiguous arrays, gates saved in
// time-major (T, B, S*H), each row in natural order (LSTM [i f g o c], GRU [r z n U_n h + b_hn]),
// lengths masking.
//
// Forward: the input projections of all steps in one GEMM (plus b_ih), then per step one
// recurrent GEMM into a (B, G*H) buffer and one fused kernel, a thread per (row, unit), that adds
// b_hh, applies the gate nonlinearities (common/activations.h, the CPU's scalar math) and
// updates the state in place: the next step's GEMM runs after it on the same stream.
// Backward: per step (in reverse) one fused kernel for the gate derivatives, then the GEMM that
// adds dG_t W_hh to the state gradient; after the loop dx, dW_ih, dW_hh as large GEMMs (dW_hh
// pairs each dG row with the previous row of y and then fixes the sequence starts with h0, as on
// the CPU) and the bias gradients as column sums in a fixed order.
#include <cstdint>
#include <stdexcept>

#include "common/activations.h"
#include "cuda/api.h"
#include "cuda/check.cuh"
#include "cuda/kernel_launch.cuh"
#include "cuda/launchers.cuh"

namespace fastnn {
namespace cuda {
namespace {

constexpr int kThreads = 256;

template <class T>
struct Arrays {  // one call's arrays, from RnnCall
  T *y, *h_n, *c_n, *gates, *dx, *dh0, *dc0, *dw_ih, *dw_hh, *db_ih, *db_hh;
  const T *x, *h0, *c0, *w_ih, *w_hh, *b_ih, *b_hh, *dy, *dh_n, *dc_n;
  const std::int64_t* len;
};

template <class T>
T* ptr(std::uintptr_t p) { return reinterpret_cast<T*>(p); }

template <class T>
Arrays<T> arrays(const RnnCall& c) {
  Arrays<T> a;
  a.y = ptr<T>(c.y); a.h_n = ptr<T>(c.h_n); a.c_n = ptr<T>(c.c_n); a.gates = ptr<T>(c.gates);
  a.dx = ptr<T>(c.dx); a.dh0 = ptr<T>(c.dh0); a.dc0 = ptr<T>(c.dc0);
  a.dw_ih = ptr<T>(c.dw_ih); a.dw_hh = ptr<T>(c.dw_hh);
  a.db_ih = ptr<T>(c.db_ih); a.db_hh = ptr<T>(c.db_hh);
  a.x = ptr<T>(c.x); a.h0 = ptr<T>(c.h0); a.c0 = ptr<T>(c.c0);
  a.w_ih = ptr<T>(c.w_ih); a.w_hh = ptr<T>(c.w_hh); a.b_ih = ptr<T>(c.b_ih);
  a.b_hh = ptr<T>(c.b_hh); a.dy = ptr<T>(c.dy); a.dh_n = ptr<T>(c.dh_n); a.dc_n = ptr<T>(c.dc_n);
  a.len = ptr<const std::int64_t>(c.lengths);
  return a;
}

// A device buffer released at scope exit (stream-ordered, like everything here).
class Scratch {
 public:
  explicit Scratch(std::size_t bytes) : p_(device_malloc(bytes)) {}
  ~Scratch() { device_free(p_); }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  template <class T>
  T* as() const { return reinterpret_cast<T*>(p_); }

 private:
  std::uintptr_t p_;
};

// out (m x n, row stride ldo) = beta*out + A (m x k; rsa, csa) @ B (k x n; rsb, csb) [+ bias]
template <class T>
void mm(index_t m, index_t n, index_t k, const T* a, index_t rsa, index_t csa, const T* b,
        index_t rsb, index_t csb, T* out, index_t ldo, T beta, const T* bias = nullptr) {
  if (m <= 0 || n <= 0) return;
  GemmParams<T> p;
  p.m = m; p.n = n; p.k = k;
  p.a = a; p.rsa = rsa; p.csa = csa;
  p.b = b; p.rsb = rsb; p.csb = csb;
  p.out = out; p.rso = ldo; p.cso = 1;
  if (beta != T(0)) {  // each output element reads its own c element first: in place is safe
    p.c = out; p.rsc = ldo; p.csc = 1; p.beta = beta;
  }
  p.bias = bias;
  p.bias_stride = 1;
  launch_gemm(p);
}

// ---- step kernels: one thread per (row b, unit j) --------------------------------------------

template <class T>
__global__ void lstm_fwd_step(Arrays<T> a, const T* xp, const T* rec, index_t B, index_t Tn,
                              index_t H, index_t t) {
  const index_t GH = 4 * H;
  for (index_t e = blockIdx.x * index_t(blockDim.x) + threadIdx.x; e < B * H;
       e += index_t(gridDim.x) * blockDim.x) {
    const index_t b = e / H, j = e - b * H, bt = b * Tn + t;
    if (t >= a.len[b]) {
      a.y[bt * H + j] = T(0);
      continue;
    }
    const T* px = xp + bt * GH;
    const T* pr = rec + b * GH;
    T pre[4];
    for (int q = 0; q < 4; ++q) pre[q] = px[q * H + j] + pr[q * H + j] + a.b_hh[q * H + j];
    const T ig = act::sigmoid(pre[0]), fg = act::sigmoid(pre[1]);
    const T gg = act::m_tanh(pre[2]), og = act::sigmoid(pre[3]);
    const T cn = fg * a.c_n[e] + ig * gg;
    const T hn = og * act::m_tanh(cn);
    a.c_n[e] = cn;
    a.h_n[e] = hn;
    a.y[bt * H + j] = hn;
    if (a.gates) {
      T* g = a.gates + (t * B + b) * 5 * H;
      g[j] = ig; g[H + j] = fg; g[2 * H + j] = gg; g[3 * H + j] = og; g[4 * H + j] = cn;
    }
  }
}

template <class T>
__global__ void lstm_bwd_step(Arrays<T> a, T* dg, T* dh, T* dc, index_t B, index_t Tn,
                              index_t H, index_t t) {
  const index_t GH = 4 * H;
  for (index_t e = blockIdx.x * index_t(blockDim.x) + threadIdx.x; e < B * H;
       e += index_t(gridDim.x) * blockDim.x) {
    const index_t b = e / H, j = e - b * H, bt = b * Tn + t;
    T* g = dg + bt * GH;
    if (t >= a.len[b]) {
      for (int q = 0; q < 4; ++q) g[q * H + j] = T(0);
      continue;
    }
    const T* s = a.gates + (t * B + b) * 5 * H;
    const T ig = s[j], fg = s[H + j], gg = s[2 * H + j], og = s[3 * H + j];
    const T tc = act::m_tanh(s[4 * H + j]);
    const T cp = t ? a.gates[((t - 1) * B + b) * 5 * H + 4 * H + j] : a.c0[e];
    const T dht = dh[e] + a.dy[bt * H + j];
    const T dct = dc[e] + dht * og * (T(1) - tc * tc);
    g[j] = dct * gg * ig * (T(1) - ig);
    g[H + j] = dct * cp * fg * (T(1) - fg);
    g[2 * H + j] = dct * ig * (T(1) - gg * gg);
    g[3 * H + j] = dht * tc * og * (T(1) - og);
    dc[e] = dct * fg;
    dh[e] = T(0);
  }
}

template <class T>
__global__ void gru_fwd_step(Arrays<T> a, const T* xp, const T* rec, index_t B, index_t Tn,
                             index_t H, index_t t) {
  const index_t GH = 3 * H;
  for (index_t e = blockIdx.x * index_t(blockDim.x) + threadIdx.x; e < B * H;
       e += index_t(gridDim.x) * blockDim.x) {
    const index_t b = e / H, j = e - b * H, bt = b * Tn + t;
    if (t >= a.len[b]) {
      a.y[bt * H + j] = T(0);
      continue;
    }
    const T* px = xp + bt * GH;
    const T* pr = rec + b * GH;
    const T r = act::sigmoid(px[j] + pr[j] + a.b_hh[j]);
    const T z = act::sigmoid(px[H + j] + pr[H + j] + a.b_hh[H + j]);
    const T hn = pr[2 * H + j] + a.b_hh[2 * H + j];
    const T n = act::m_tanh(px[2 * H + j] + r * hn);
    const T v = n + z * (a.h_n[e] - n);
    a.h_n[e] = v;
    a.y[bt * H + j] = v;
    if (a.gates) {
      T* g = a.gates + (t * B + b) * 4 * H;
      g[j] = r; g[H + j] = z; g[2 * H + j] = n; g[3 * H + j] = hn;
    }
  }
}

template <class T>
__global__ void gru_bwd_step(Arrays<T> a, T* dgx, T* dgh, T* dh, index_t B, index_t Tn,
                             index_t H, index_t t) {
  const index_t GH = 3 * H;
  for (index_t e = blockIdx.x * index_t(blockDim.x) + threadIdx.x; e < B * H;
       e += index_t(gridDim.x) * blockDim.x) {
    const index_t b = e / H, j = e - b * H, bt = b * Tn + t;
    T* gx = dgx + bt * GH;
    T* gh = dgh + bt * GH;
    if (t >= a.len[b]) {
      for (int q = 0; q < 3; ++q) gx[q * H + j] = gh[q * H + j] = T(0);
      continue;
    }
    const T* s = a.gates + (t * B + b) * 4 * H;
    const T r = s[j], z = s[H + j], n = s[2 * H + j], hn = s[3 * H + j];
    const T hp = t ? a.y[(bt - 1) * H + j] : a.h0[e];
    const T dht = dh[e] + a.dy[bt * H + j];
    const T dn = dht * (T(1) - z) * (T(1) - n * n);
    const T dz = dht * (hp - n) * z * (T(1) - z);
    const T dr = dn * hn * r * (T(1) - r);
    gx[j] = dr; gx[H + j] = dz; gx[2 * H + j] = dn;
    gh[j] = dr; gh[H + j] = dz; gh[2 * H + j] = dn * r;
    dh[e] = dht * z;
  }
}

template <class T>
__global__ void rnn_fwd_step(Arrays<T> a, const T* xp, const T* rec, index_t B, index_t Tn,
                             index_t H, index_t t, bool relu) {
  for (index_t e = blockIdx.x * index_t(blockDim.x) + threadIdx.x; e < B * H;
       e += index_t(gridDim.x) * blockDim.x) {
    const index_t b = e / H, j = e - b * H, bt = b * Tn + t;
    if (t >= a.len[b]) {
      a.y[bt * H + j] = T(0);
      continue;
    }
    const T pre = xp[bt * H + j] + rec[e] + a.b_hh[j];
    const T v = act::forward(relu ? int(act::RELU) : int(act::TANH), pre, T(0));
    a.h_n[e] = v;
    a.y[bt * H + j] = v;
  }
}

template <class T>
__global__ void rnn_bwd_step(Arrays<T> a, T* dg, T* dh, index_t B, index_t Tn, index_t H,
                             index_t t, bool relu) {
  for (index_t e = blockIdx.x * index_t(blockDim.x) + threadIdx.x; e < B * H;
       e += index_t(gridDim.x) * blockDim.x) {
    const index_t b = e / H, j = e - b * H, bt = b * Tn + t;
    if (t >= a.len[b]) {
      dg[bt * H + j] = T(0);
      continue;
    }
    const T v = a.y[bt * H + j];
    const T d = act::derivative(relu ? int(act::RELU) : int(act::TANH), v, v, T(0));
    dg[bt * H + j] = (dh[e] + a.dy[bt * H + j]) * d;
    dh[e] = T(0);
  }
}

// tmp[b, j] = h0[b, j] - y[b - 1, T - 1, j] (0 for b = 0): see param_grads.
template <class T>
__global__ void start_fix(T* tmp, const T* h0, const T* y, index_t B, index_t Tn, index_t H) {
  for (index_t e = blockIdx.x * index_t(blockDim.x) + threadIdx.x; e < B * H;
       e += index_t(gridDim.x) * blockDim.x) {
    const index_t b = e / H, j = e - b * H;
    tmp[e] = h0[e] - (b ? y[((b - 1) * Tn + Tn - 1) * H + j] : T(0));
  }
}

// out[j] = sum over rows of x[r, j], rows in order (deterministic).
template <class T>
__global__ void column_sums(T* out, const T* x, index_t rows, index_t cols) {
  for (index_t j = blockIdx.x * index_t(blockDim.x) + threadIdx.x; j < cols;
       j += index_t(gridDim.x) * blockDim.x) {
    T s = T(0);
    for (index_t r = 0; r < rows; ++r) s += x[r * cols + j];
    out[j] = s;
  }
}

template <class T>
void param_grads(const Arrays<T>& a, const T* dgx, const T* dgh, T* tmp, index_t B, index_t Tn,
                 index_t I, index_t H, index_t GH) {
  const index_t BT = B * Tn;
  mm<T>(BT, I, GH, dgx, GH, 1, a.w_ih, I, 1, a.dx, I, T(0));
  mm<T>(GH, I, BT, dgx, 1, GH, a.x, I, 1, a.dw_ih, I, T(0));
  if (BT > 1) mm<T>(GH, H, BT - 1, dgh + GH, 1, GH, a.y, H, 1, a.dw_hh, H, T(0));
  launch("rnn start_fix", start_fix<T>, grid_for(B * H, kThreads), kThreads, tmp, a.h0, a.y, B,
         Tn, H);
  mm<T>(GH, H, B, dgh, 1, Tn * GH, tmp, H, 1, a.dw_hh, H, BT > 1 ? T(1) : T(0));
  launch("rnn column_sums", column_sums<T>, grid_for(GH, kThreads), kThreads, a.db_ih, dgx, BT,
         GH);
  launch("rnn column_sums", column_sums<T>, grid_for(GH, kThreads), kThreads, a.db_hh, dgh, BT,
         GH);
}

void copy_dd(void* dst, const void* src, std::size_t bytes) {
  check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, 0), "cudaMemcpyAsync");
}

template <class T>
void forward_t(const RnnCall& c) {
  const Arrays<T> a = arrays<T>(c);
  const index_t B = c.B, Tn = c.T, I = c.I, H = c.H;
  const int G = c.kind == 0 ? 4 : c.kind == 1 ? 3 : 1;
  const index_t GH = G * H;
  Scratch xp_s(std::size_t(B * Tn * GH) * sizeof(T)), rec_s(std::size_t(B * GH) * sizeof(T));
  T* xp = xp_s.as<T>();
  T* rec = rec_s.as<T>();
  mm<T>(B * Tn, GH, I, a.x, I, 1, a.w_ih, 1, I, xp, GH, T(0), a.b_ih);  // x @ w_ih^T + b_ih
  copy_dd(a.h_n, a.h0, std::size_t(B * H) * sizeof(T));
  if (c.kind == 0) copy_dd(a.c_n, a.c0, std::size_t(B * H) * sizeof(T));
  const unsigned grid = grid_for(B * H, kThreads);
  for (index_t t = 0; t < Tn; ++t) {
    mm<T>(B, GH, H, a.h_n, H, 1, a.w_hh, 1, H, rec, GH, T(0));  // h @ w_hh^T
    if (c.kind == 0)
      launch("lstm step", lstm_fwd_step<T>, grid, kThreads, a, xp, rec, B, Tn, H, t);
    else if (c.kind == 1)
      launch("gru step", gru_fwd_step<T>, grid, kThreads, a, xp, rec, B, Tn, H, t);
    else
      launch("rnn step", rnn_fwd_step<T>, grid, kThreads, a, xp, rec, B, Tn, H, t,
             c.kind == 3);
  }
}

template <class T>
void backward_t(const RnnCall& c) {
  const Arrays<T> a = arrays<T>(c);
  const index_t B = c.B, Tn = c.T, I = c.I, H = c.H;
  const int G = c.kind == 0 ? 4 : c.kind == 1 ? 3 : 1;
  const index_t GH = G * H;
  const bool two = c.kind == 1;  // the GRU's input and hidden gate gradients differ
  Scratch dgx_s(std::size_t(B * Tn * GH) * sizeof(T));
  Scratch dgh_s(two ? std::size_t(B * Tn * GH) * sizeof(T) : 0);
  Scratch tmp_s(std::size_t(B * H) * sizeof(T));
  T* dgx = dgx_s.as<T>();
  T* dgh = two ? dgh_s.as<T>() : dgx;
  T* dh = a.dh0;  // the running gradients live in the outputs
  T* dc = a.dc0;
  copy_dd(dh, a.dh_n, std::size_t(B * H) * sizeof(T));
  if (c.kind == 0) copy_dd(dc, a.dc_n, std::size_t(B * H) * sizeof(T));
  const unsigned grid = grid_for(B * H, kThreads);
  for (index_t t = Tn - 1; t >= 0; --t) {
    if (c.kind == 0)
      launch("lstm backward step", lstm_bwd_step<T>, grid, kThreads, a, dgx, dh, dc, B, Tn, H, t);
    else if (c.kind == 1)
      launch("gru backward step", gru_bwd_step<T>, grid, kThreads, a, dgx, dgh, dh, B, Tn, H, t);
    else
      launch("rnn backward step", rnn_bwd_step<T>, grid, kThreads, a, dgx, dh, B, Tn, H, t,
             c.kind == 3);
    mm<T>(B, H, GH, dgh + t * GH, Tn * GH, 1, a.w_hh, H, 1, dh, H, T(1));  // dh += dG_t W_hh
  }
  param_grads(a, dgx, dgh, tmp_s.as<T>(), B, Tn, I, H, GH);
}

}  // namespace

void rnn_forward(bool dbl, const RnnCall& c) {
  if (c.kind < 0 || c.kind > 3) throw std::invalid_argument("rnn_forward: unknown kind");
  if (c.B <= 0 || c.T <= 0 || c.I <= 0 || c.H <= 0) return;
  if (dbl) forward_t<double>(c);
  else forward_t<float>(c);
}

void rnn_backward(bool dbl, const RnnCall& c) {
  if (c.kind < 0 || c.kind > 3) throw std::invalid_argument("rnn_backward: unknown kind");
  if (c.B <= 0 || c.T <= 0 || c.I <= 0 || c.H <= 0) return;
  if (dbl) backward_t<double>(c);
  else backward_t<float>(c);
}

}  // namespace cuda
}  // namespace fastnn
