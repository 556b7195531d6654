// RBM kernels on the GPU, with the semantics of cpu/rbm.cpp: the sigmoid and the Bernoulli draw
// in the GEMM epilogue (gemm_kernel.cuh, common/rbm_math.h), the CD-k / PCD update as the same
// stacked weight product, free energy and pseudo-likelihood one thread per row. Matrices are
// C-contiguous; w is n_hidden x n_visible.
#include <cmath>
#include <limits>
#include <vector>

#include "common/rbm_math.h"
#include "cuda/api.h"
#include "cuda/check.cuh"
#include "cuda/kernel_launch.cuh"
#include "cuda/launchers.cuh"

namespace fastnn {
namespace cuda {
namespace {

constexpr int kThreads = 256;

dim3 blocks_for(index_t n) { return dim3(static_cast<unsigned>((n + kThreads - 1) / kThreads)); }

struct Buffer {
  std::uintptr_t p = 0;
  explicit Buffer(std::size_t nbytes) : p(device_malloc(nbytes)) {}
  ~Buffer() { device_free(p); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  template <class T>
  T* as() const {
    return reinterpret_cast<T*>(p);
  }
};

enum Units : int { kLinear = 0, kSigmoid = 1, kSample = 2 };

// out (rows x n) := units(a (rows x k) @ B + bias), B given by its strides.
template <class T>
void gemm_units(T* out, const T* a, index_t rows, index_t n, index_t k, const T* b, index_t rsb,
                index_t csb, const T* bias, int units, rng::Key key, std::uint32_t stage) {
  GemmParams<T> p;
  p.m = rows; p.n = n; p.k = k;
  p.a = a; p.rsa = k; p.csa = 1;
  p.b = b; p.rsb = rsb; p.csb = csb;
  p.out = out; p.rso = n; p.cso = 1;
  p.bias = bias; p.bias_stride = 1;
  p.act = units == kLinear ? act::NONE : act::SIGMOID;
  p.draw = units == kSample;
  p.key0 = key.k0; p.key1 = key.k1; p.stage = stage;
  p.cnt_rs = n; p.cnt_cs = 1;
  launch_gemm(p);
}

template <class T>
void hidden(T* out, const T* in, index_t rows, const T* w, const T* b_hid, index_t nv, index_t nh,
            int units, rng::Key key, std::uint32_t stage) {
  gemm_units(out, in, rows, nh, nv, w, index_t(1), nv, b_hid, units, key, stage);  // B = w^T
}

template <class T>
void visible(T* out, const T* in, index_t rows, const T* w, const T* b_vis, index_t nv,
             index_t nh, int units, rng::Key key, std::uint32_t stage) {
  gemm_units(out, in, rows, nv, nh, w, nv, index_t(1), b_vis, units, key, stage);
}

template <class T>
__global__ void draw_kernel(T* dst, const T* p, index_t n, rng::Key key, std::uint32_t stage) {
  const index_t i = index_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) dst[i] = rbm::bernoulli<T>(p[i], key, static_cast<std::uint32_t>(i), stage);
}

template <class T>
__global__ void gauss_kernel(T* v, index_t n, rng::Key key) {
  const index_t i = index_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) v[i] += T(rbm::gaussian(key, static_cast<std::uint32_t>(i), 0));
}

template <class T>
__global__ void scale_kernel(T* x, index_t n, T s) {
  const index_t i = index_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) x[i] *= s;
}

// out[j] += scale * sum_i x[i, j]; one thread per column, rows in order (deterministic).
template <class T>
__global__ void column_sums_kernel(double* out, const T* x, index_t rows, index_t cols,
                                   double scale) {
  const index_t j = index_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j >= cols) return;
  double s = 0.0;
  for (index_t i = 0; i < rows; ++i) s += double(x[i * cols + j]);
  out[j] += scale * s;
}

// Per-row squared reconstruction error (summed on the host side of the call: one value back).
template <class T>
__global__ void row_error_kernel(double* out, const T* v0, const T* rec, index_t rows,
                                 index_t cols) {
  const index_t i = index_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= rows) return;
  double s = 0.0;
  for (index_t j = 0; j < cols; ++j) {
    const double d = double(v0[i * cols + j]) - double(rec[i * cols + j]);
    s += d * d;
  }
  out[i] = s;
}

template <class T>
__global__ void bias_update_kernel(T* b, T* vel, const double* g, index_t n, double lr,
                                   double mu) {
  const index_t i = index_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  if (vel) {
    vel[i] = T(mu) * vel[i] + T(lr) * T(g[i]);
    b[i] += vel[i];
  } else {
    b[i] += T(lr * g[i]);
  }
}

template <class T>
__global__ void momentum_kernel(T* w, T* vel, index_t n, T decay) {
  const index_t i = index_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  vel[i] -= decay * w[i];
  w[i] += vel[i];
}

template <class T>
__global__ void free_energy_kernel(double* out, const T* v, const T* z, const T* b_vis,
                                   index_t rows, index_t nv, index_t nh, bool gaussian) {
  const index_t i = index_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= rows) return;
  double vis = 0.0;
  for (index_t j = 0; j < nv; ++j) {
    const double x = double(v[i * nv + j]), b = double(b_vis[j]);
    vis += gaussian ? 0.5 * (x - b) * (x - b) : -x * b;
  }
  double hid = 0.0;
  for (index_t q = 0; q < nh; ++q) hid += rbm::softplus(double(z[i * nh + q]));
  out[i] = vis - hid;
}

template <class T>
__global__ void pseudo_likelihood_kernel(double* out, const T* v, const T* z, const T* w,
                                         const T* b_vis, index_t rows, index_t nv, index_t nh,
                                         rng::Key key) {
  const index_t i = index_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= rows) return;
  const std::uint64_t bits = rng::bits(key, static_cast<std::uint32_t>(i), 0);
  const index_t j = index_t((bits * std::uint64_t(nv)) >> 32);
  const double sign = 1.0 - 2.0 * double(v[i * nv + j]);
  double diff = -sign * double(b_vis[j]);
  for (index_t q = 0; q < nh; ++q) {
    const double a = double(z[i * nh + q]);
    diff -= rbm::softplus(a + sign * double(w[q * nv + j])) - rbm::softplus(a);
  }
  out[i] = -double(nv) * rbm::softplus(-diff);
}

template <class T>
double cd_step_t(const RbmStepArgs& s) {
  const index_t B = s.batch, nv = s.nv, nh = s.nh;
  const bool persistent = s.particles > 0;
  const index_t P = persistent ? s.particles : B;
  const rng::Key key = rng::key_from_seed(s.seed);
  T* w = reinterpret_cast<T*>(s.w);
  T* b_vis = reinterpret_cast<T*>(s.b_vis);
  T* b_hid = reinterpret_cast<T*>(s.b_hid);
  T* chain = reinterpret_cast<T*>(s.chain);
  const T* v0 = reinterpret_cast<const T*>(s.v0);
  Buffer shb(std::size_t((B + P) * nh) * sizeof(T)), svb(std::size_t((B + P) * nv) * sizeof(T));
  Buffer hsb(std::size_t(P * nh) * sizeof(T)), grads(std::size_t(nv + nh) * sizeof(double));
  T *sh = shb.as<T>(), *sv = svb.as<T>(), *hs = hsb.as<T>();
  T *h0 = sh, *hk = sh + B * nh, *vk = sv + B * nv;
  double *gv = grads.as<double>(), *gh = gv + nv;
  check(cudaMemcpyAsync(sv, v0, std::size_t(B * nv) * sizeof(T), cudaMemcpyDeviceToDevice, 0),
        "cudaMemcpyAsync (rbm_cd_step)");
  check(cudaMemsetAsync(gv, 0, std::size_t(nv + nh) * sizeof(double), 0),
        "cudaMemsetAsync (rbm_cd_step)");
  hidden(h0, v0, B, w, b_hid, nv, nh, kSigmoid, key, 0);

  double err = std::numeric_limits<double>::quiet_NaN();
  if (s.compute_error) {
    Buffer rec(std::size_t(B * nv) * sizeof(T)), rows(std::size_t(B) * sizeof(double));
    visible(rec.as<T>(), h0, B, w, b_vis, nv, nh, s.gaussian ? kLinear : kSigmoid, key, 0);
    launch("rbm reconstruction error", row_error_kernel<T>, blocks_for(B), dim3(kThreads),
           rows.as<double>(), static_cast<const T*>(rec.as<T>()), v0, B, nv);
    std::vector<double> host(static_cast<std::size_t>(B));
    copy_to_host(host.data(), rows.p, host.size() * sizeof(double));
    double acc = 0.0;
    for (double e : host) acc += e;
    err = acc / double(B);
  }

  const T* particles = chain;
  if (!persistent) {
    launch("rbm hidden draw", draw_kernel<T>, blocks_for(B * nh), dim3(kThreads), hs,
           static_cast<const T*>(h0), B * nh, key, 1u);
    particles = hs;
  }
  for (int t = 1; t <= s.k; ++t) {
    const std::uint32_t st = std::uint32_t(2 * t);
    visible(vk, particles, P, w, b_vis, nv, nh, s.gaussian ? kLinear : kSample, key, st);
    hidden(hk, vk, P, w, b_hid, nv, nh, kSigmoid, key, 0);
    if (t < s.k || persistent) {
      T* dst = (persistent && t == s.k) ? chain : hs;
      launch("rbm hidden draw", draw_kernel<T>, blocks_for(P * nh), dim3(kThreads), dst,
             static_cast<const T*>(hk), P * nh, key, st + 1);
      particles = hs;
    }
  }
  const double inv_b = 1.0 / double(B), inv_p = 1.0 / double(P);
  launch("rbm column sums", column_sums_kernel<T>, blocks_for(nv), dim3(kThreads), gv, v0, B, nv,
         inv_b);
  launch("rbm column sums", column_sums_kernel<T>, blocks_for(nv), dim3(kThreads), gv,
         static_cast<const T*>(vk), P, nv, -inv_p);
  launch("rbm column sums", column_sums_kernel<T>, blocks_for(nh), dim3(kThreads), gh,
         static_cast<const T*>(h0), B, nh, inv_b);
  launch("rbm column sums", column_sums_kernel<T>, blocks_for(nh), dim3(kThreads), gh,
         static_cast<const T*>(hk), P, nh, -inv_p);
  launch("rbm scale", scale_kernel<T>, blocks_for(B * nh), dim3(kThreads), h0, B * nh,
         T(inv_b));
  launch("rbm scale", scale_kernel<T>, blocks_for(P * nh), dim3(kThreads), hk, P * nh,
         T(-inv_p));

  const bool mom = s.momentum != 0.0;
  T* vel_w = reinterpret_cast<T*>(s.vel_w);
  GemmParams<T> g;  // (vel_w or w) := lr * sh^T sv + beta * itself
  g.m = nh; g.n = nv; g.k = B + P;
  g.a = sh; g.rsa = 1; g.csa = nh;
  g.b = sv; g.rsb = nv; g.csb = 1;
  T* target = mom ? vel_w : w;
  g.out = target; g.rso = nv; g.cso = 1;
  g.c = target; g.rsc = nv; g.csc = 1;
  g.alpha = T(s.lr);
  g.beta = mom ? T(s.momentum) : T(1.0 - s.lr * s.weight_decay);
  launch_gemm(g);
  if (mom) {
    launch("rbm momentum", momentum_kernel<T>, blocks_for(nh * nv), dim3(kThreads), w, vel_w,
           nh * nv, T(s.lr * s.weight_decay));
  }
  launch("rbm bias update", bias_update_kernel<T>, blocks_for(nv), dim3(kThreads), b_vis,
         mom ? reinterpret_cast<T*>(s.vel_b_vis) : static_cast<T*>(nullptr),
         static_cast<const double*>(gv), nv, s.lr, s.momentum);
  launch("rbm bias update", bias_update_kernel<T>, blocks_for(nh), dim3(kThreads), b_hid,
         mom ? reinterpret_cast<T*>(s.vel_b_hid) : static_cast<T*>(nullptr),
         static_cast<const double*>(gh), nh, s.lr, s.momentum);
  return err;
}

template <class T>
void per_row_t(bool pl, double* out, const T* v, const T* w, const T* b_vis, const T* b_hid,
               index_t batch, index_t nv, index_t nh, bool gaussian, std::uint64_t seed) {
  Buffer z(std::size_t(batch * nh) * sizeof(T));
  hidden(z.as<T>(), v, batch, w, b_hid, nv, nh, kLinear, rng::Key{0, 0}, 0);
  if (pl) {
    launch("rbm pseudo-likelihood", pseudo_likelihood_kernel<T>, blocks_for(batch),
           dim3(kThreads), out, v, static_cast<const T*>(z.as<T>()), w, b_vis, batch, nv, nh,
           rng::key_from_seed(seed));
  } else {
    launch("rbm free energy", free_energy_kernel<T>, blocks_for(batch), dim3(kThreads), out, v,
           static_cast<const T*>(z.as<T>()), b_vis, batch, nv, nh, gaussian);
  }
}

}  // namespace

void rbm_hidden(bool dbl, index_t batch, index_t nv, index_t nh, std::uintptr_t h,
                std::uintptr_t v, std::uintptr_t w, std::uintptr_t b_hid, bool sample,
                std::uint64_t seed) {
  const rng::Key key = rng::key_from_seed(seed);
  const int units = sample ? kSample : kSigmoid;
  if (dbl) {
    hidden(reinterpret_cast<double*>(h), reinterpret_cast<const double*>(v), batch,
           reinterpret_cast<const double*>(w), reinterpret_cast<const double*>(b_hid), nv, nh,
           units, key, 0);
  } else {
    hidden(reinterpret_cast<float*>(h), reinterpret_cast<const float*>(v), batch,
           reinterpret_cast<const float*>(w), reinterpret_cast<const float*>(b_hid), nv, nh,
           units, key, 0);
  }
}

void rbm_visible(bool dbl, index_t batch, index_t nv, index_t nh, std::uintptr_t v,
                 std::uintptr_t h, std::uintptr_t w, std::uintptr_t b_vis, bool gaussian,
                 bool sample, std::uint64_t seed) {
  const rng::Key key = rng::key_from_seed(seed);
  const int units = gaussian ? kLinear : (sample ? kSample : kSigmoid);
  const index_t n = batch * nv;
  if (dbl) {
    double* out = reinterpret_cast<double*>(v);
    visible(out, reinterpret_cast<const double*>(h), batch, reinterpret_cast<const double*>(w),
            reinterpret_cast<const double*>(b_vis), nv, nh, units, key, 0);
    if (gaussian && sample)
      launch("rbm gaussian noise", gauss_kernel<double>, blocks_for(n), dim3(kThreads), out, n,
             key);
  } else {
    float* out = reinterpret_cast<float*>(v);
    visible(out, reinterpret_cast<const float*>(h), batch, reinterpret_cast<const float*>(w),
            reinterpret_cast<const float*>(b_vis), nv, nh, units, key, 0);
    if (gaussian && sample)
      launch("rbm gaussian noise", gauss_kernel<float>, blocks_for(n), dim3(kThreads), out, n,
             key);
  }
}

double rbm_cd_step(bool dbl, const RbmStepArgs& s) {
  return dbl ? cd_step_t<double>(s) : cd_step_t<float>(s);
}

void rbm_free_energy(bool dbl, index_t batch, index_t nv, index_t nh, std::uintptr_t out,
                     std::uintptr_t v, std::uintptr_t w, std::uintptr_t b_vis,
                     std::uintptr_t b_hid, bool gaussian) {
  double* o = reinterpret_cast<double*>(out);
  if (dbl) {
    per_row_t(false, o, reinterpret_cast<const double*>(v), reinterpret_cast<const double*>(w),
              reinterpret_cast<const double*>(b_vis), reinterpret_cast<const double*>(b_hid),
              batch, nv, nh, gaussian, 0);
  } else {
    per_row_t(false, o, reinterpret_cast<const float*>(v), reinterpret_cast<const float*>(w),
              reinterpret_cast<const float*>(b_vis), reinterpret_cast<const float*>(b_hid),
              batch, nv, nh, gaussian, 0);
  }
}

void rbm_pseudo_likelihood(bool dbl, index_t batch, index_t nv, index_t nh, std::uintptr_t out,
                           std::uintptr_t v, std::uintptr_t w, std::uintptr_t b_vis,
                           std::uintptr_t b_hid, std::uint64_t seed) {
  double* o = reinterpret_cast<double*>(out);
  if (dbl) {
    per_row_t(true, o, reinterpret_cast<const double*>(v), reinterpret_cast<const double*>(w),
              reinterpret_cast<const double*>(b_vis), reinterpret_cast<const double*>(b_hid),
              batch, nv, nh, false, seed);
  } else {
    per_row_t(true, o, reinterpret_cast<const float*>(v), reinterpret_cast<const float*>(w),
              reinterpret_cast<const float*>(b_vis), reinterpret_cast<const float*>(b_hid),
              batch, nv, nh, false, seed);
  }
}

}  // namespace cuda
}  // namespace fastnn
