// Flash attention on the GPU: forward and backward with the semantics and argument order of
// the CPU kernels (csrc/cpu/attention.h).
//
// Forward: a block of kThreads queries, one per thread; keys and values arrive in tiles staged
// in shared memory, each tile's scores go through one online-softmax step (tile maximum,
// rescale of the running sum and output), so the (Nq, Nk) score matrix never exists. A causal
// block stops at the last key its last query can see.
// Backward (FlashAttention-2 without atomics): one kernel owns dQ (a thread per query, keys in
// shared tiles), another owns dK and dV (a thread per key, queries, dO, their log-sum-exp and
// rowsum(dO * O) in shared tiles); both recompute the probabilities from the saved log-sum-exp.
// Every output element has one writer, so results do not depend on scheduling.
//
// A query whose every key is masked gets a zero output, lse = -inf and zero gradients.
#include <math_constants.h>

#include <stdexcept>
#include <string>

#include "cuda/api.h"
#include "cuda/check.cuh"
#include "cuda/view4.cuh"

namespace fastnn {
namespace cuda {
namespace {

constexpr int kThreads = 64;   // queries (keys) per block
constexpr int kMaxHead = 256;  // per-thread rows of q, k, v, dO and accumulators
constexpr int kMaxTile = 32;   // rows per shared-memory tile
constexpr int kSharedBytes = 40 * 1024;

__device__ inline float ninf(float) { return -CUDART_INF_F; }
__device__ inline double ninf(double) { return -CUDART_INF; }
__device__ inline float pinf(float) { return CUDART_INF_F; }
__device__ inline double pinf(double) { return CUDART_INF; }
__device__ inline float dexp(float x) { return expf(x); }
__device__ inline double dexp(double x) { return exp(x); }
__device__ inline float dlog(float x) { return logf(x); }
__device__ inline double dlog(double x) { return log(x); }

template <class T>
struct Attn {
  View4<const T> q, k, v, mask;
  bool has_mask = false, causal = false;
  index_t b = 0, h = 0, nq = 0, nk = 0, d = 0, dv = 0;
  T scale = T(1);

  // The scaled, masked score of query i and key j (dot is q_i . k_j), -inf where hidden.
  __device__ T score(T dot, index_t bb, index_t hh, index_t i, index_t j) const {
    if (causal && j > i + nk - nq) return ninf(T(0));
    T s = dot * scale;
    if (has_mask) s += mask(bb, hh, i, j);
    return s;
  }
};

// One past the last key any query of this block (a query per thread) can see: every key unless
// causal, where the block's last query sees the most.
template <class T>
__device__ inline index_t block_key_end(const Attn<T>& a) {
  if (!a.causal) return a.nk;
  index_t last = static_cast<index_t>(blockIdx.x + 1) * blockDim.x;
  last = (last < a.nq ? last : a.nq) - 1;
  const index_t jend = last + a.nk - a.nq + 1;
  return jend < 0 ? 0 : (jend > a.nk ? a.nk : jend);
}

template <class T>
__device__ inline T dot_local(const T* a, const T* b, index_t n) {
  T s = T(0);
  for (index_t c = 0; c < n; ++c) s += a[c] * b[c];
  return s;
}

// Copies rows [r0, r0 + rows) of a (B, H, N, width) view into shared memory, row-major.
template <class T>
__device__ void stage(T* dst, const View4<const T>& src, index_t bb, index_t hh, index_t r0,
                      index_t rows, index_t width) {
  for (index_t e = threadIdx.x; e < rows * width; e += blockDim.x)
    dst[e] = src(bb, hh, r0 + e / width, e % width);
}

// Keys and values [j0, j0 + kc) of head (bb, hh) into shared memory, once every thread is done
// with the previous tile; every thread of the block must call it.
template <class T>
__device__ void stage_kv(T* ks, T* vs, const Attn<T>& a, index_t bb, index_t hh, index_t j0,
                         index_t kc) {
  __syncthreads();
  stage(ks, a.k, bb, hh, j0, kc, a.d);
  stage(vs, a.v, bb, hh, j0, kc, a.dv);
  __syncthreads();
}

template <class T>
__global__ void forward_kernel(View4<T> o, View4<T> lse, Attn<T> a, int tile) {
  extern __shared__ unsigned char smem[];
  T* ks = reinterpret_cast<T*>(smem);
  T* vs = ks + tile * a.d;
  const index_t bb = blockIdx.y / a.h, hh = blockIdx.y % a.h;
  const index_t i = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const bool live = i < a.nq;
  T qr[kMaxHead], acc[kMaxHead], sc[kMaxTile];
  for (index_t c = 0; c < a.d; ++c) qr[c] = live ? a.q(bb, hh, i, c) : T(0);
  for (index_t c = 0; c < a.dv; ++c) acc[c] = T(0);
  T m = ninf(T(0)), l = T(0);
  const index_t jend = block_key_end(a);
  for (index_t j0 = 0; j0 < jend; j0 += tile) {
    const index_t kc = jend - j0 < tile ? jend - j0 : tile;
    stage_kv(ks, vs, a, bb, hh, j0, kc);
    if (!live) continue;
    T tmax = ninf(T(0));
    for (index_t jj = 0; jj < kc; ++jj) {
      const T s = a.score(dot_local(qr, ks + jj * a.d, a.d), bb, hh, i, j0 + jj);
      sc[jj] = s;
      tmax = s > tmax ? s : tmax;
    }
    const T mnew = tmax > m ? tmax : m;
    if (mnew == ninf(T(0))) continue;  // nothing visible yet
    const T alpha = dexp(m - mnew);    // 0 while m is -inf
    l *= alpha;
    for (index_t c = 0; c < a.dv; ++c) acc[c] *= alpha;
    for (index_t jj = 0; jj < kc; ++jj) {
      const T p = dexp(sc[jj] - mnew);
      l += p;
      const T* vr = vs + jj * a.dv;
      for (index_t c = 0; c < a.dv; ++c) acc[c] += p * vr[c];
    }
    m = mnew;
  }
  if (!live) return;
  if (l > T(0)) {
    const T inv = T(1) / l;
    for (index_t c = 0; c < a.dv; ++c) o(bb, hh, i, c) = acc[c] * inv;
    lse(bb, hh, i, 0) = m + dlog(l);
  } else {
    for (index_t c = 0; c < a.dv; ++c) o(bb, hh, i, c) = T(0);
    lse(bb, hh, i, 0) = ninf(T(0));
  }
}

template <class T>
__global__ void backward_dq_kernel(View4<T> dq, View4<const T> o, View4<const T> lse,
                                   View4<const T> dout, Attn<T> a, int tile) {
  extern __shared__ unsigned char smem[];
  T* ks = reinterpret_cast<T*>(smem);
  T* vs = ks + tile * a.d;
  const index_t bb = blockIdx.y / a.h, hh = blockIdx.y % a.h;
  const index_t i = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const bool live = i < a.nq;
  T qr[kMaxHead], dor[kMaxHead], g[kMaxHead];
  for (index_t c = 0; c < a.d; ++c) {
    qr[c] = live ? a.q(bb, hh, i, c) : T(0);
    g[c] = T(0);
  }
  T dsum = T(0);
  for (index_t c = 0; c < a.dv; ++c) {
    dor[c] = live ? dout(bb, hh, i, c) : T(0);
    if (live) dsum += dor[c] * o(bb, hh, i, c);
  }
  T L = live ? lse(bb, hh, i, 0) : ninf(T(0));
  if (L == ninf(T(0))) L = pinf(T(0));  // a fully masked query: every probability is 0
  const index_t jend = block_key_end(a);
  for (index_t j0 = 0; j0 < jend; j0 += tile) {
    const index_t kc = jend - j0 < tile ? jend - j0 : tile;
    stage_kv(ks, vs, a, bb, hh, j0, kc);
    if (!live) continue;
    for (index_t jj = 0; jj < kc; ++jj) {
      const T* kr = ks + jj * a.d;
      const T p = dexp(a.score(dot_local(qr, kr, a.d), bb, hh, i, j0 + jj) - L);
      if (p == T(0)) continue;
      const T ds = p * (dot_local(dor, vs + jj * a.dv, a.dv) - dsum);
      for (index_t c = 0; c < a.d; ++c) g[c] += ds * kr[c];
    }
  }
  if (!live) return;
  for (index_t c = 0; c < a.d; ++c) dq(bb, hh, i, c) = g[c] * a.scale;
}

template <class T>
__global__ void backward_dkv_kernel(View4<T> dk, View4<T> dv, View4<const T> o,
                                    View4<const T> lse, View4<const T> dout, Attn<T> a,
                                    int tile) {
  extern __shared__ unsigned char smem[];
  T* qs = reinterpret_cast<T*>(smem);
  T* ds_ = qs + tile * a.d;           // dO rows
  T* ls = ds_ + tile * a.dv;          // their log-sum-exp (+inf when fully masked)
  T* dsum = ls + tile;                // their rowsum(dO * O)
  const index_t bb = blockIdx.y / a.h, hh = blockIdx.y % a.h;
  const index_t j = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const bool live = j < a.nk;
  T kr[kMaxHead], vr[kMaxHead], gk[kMaxHead], gv[kMaxHead];
  for (index_t c = 0; c < a.d; ++c) {
    kr[c] = live ? a.k(bb, hh, j, c) : T(0);
    gk[c] = T(0);
  }
  for (index_t c = 0; c < a.dv; ++c) {
    vr[c] = live ? a.v(bb, hh, j, c) : T(0);
    gv[c] = T(0);
  }
  // The first query that sees the block's first key.
  index_t istart = 0;
  if (a.causal) {
    istart = static_cast<index_t>(blockIdx.x) * blockDim.x - (a.nk - a.nq);
    istart = istart < 0 ? 0 : (istart > a.nq ? a.nq : istart);
  }
  for (index_t i0 = istart; i0 < a.nq; i0 += tile) {
    const index_t qc = a.nq - i0 < tile ? a.nq - i0 : tile;
    __syncthreads();
    stage(qs, a.q, bb, hh, i0, qc, a.d);
    stage(ds_, dout, bb, hh, i0, qc, a.dv);
    for (index_t r = threadIdx.x; r < qc; r += blockDim.x) {
      T L = lse(bb, hh, i0 + r, 0);
      ls[r] = L == ninf(T(0)) ? pinf(T(0)) : L;
      T s = T(0);
      for (index_t c = 0; c < a.dv; ++c) s += dout(bb, hh, i0 + r, c) * o(bb, hh, i0 + r, c);
      dsum[r] = s;
    }
    __syncthreads();
    if (!live) continue;
    for (index_t ii = 0; ii < qc; ++ii) {
      const T* qr = qs + ii * a.d;
      const T* dor = ds_ + ii * a.dv;
      const T p = dexp(a.score(dot_local(kr, qr, a.d), bb, hh, i0 + ii, j) - ls[ii]);
      if (p == T(0)) continue;
      const T g = p * (dot_local(vr, dor, a.dv) - dsum[ii]);
      for (index_t c = 0; c < a.dv; ++c) gv[c] += p * dor[c];
      for (index_t c = 0; c < a.d; ++c) gk[c] += g * qr[c];
    }
  }
  if (!live) return;
  for (index_t c = 0; c < a.d; ++c) dk(bb, hh, j, c) = gk[c] * a.scale;
  for (index_t c = 0; c < a.dv; ++c) dv(bb, hh, j, c) = gv[c];
}

template <class T>
Attn<T> make_attn(const Array4& q, const Array4& k, const Array4& v, const Array4& mask,
                  double scale, bool causal, const char* op) {
  Attn<T> a;
  a.q = view4<const T>(q);
  a.k = view4<const T>(k);
  a.v = view4<const T>(v);
  a.has_mask = mask.ptr != 0;
  if (a.has_mask) a.mask = view4<const T>(mask);
  a.causal = causal;
  a.scale = static_cast<T>(scale);
  a.b = q.dim[0]; a.h = q.dim[1]; a.nq = q.dim[2]; a.d = q.dim[3];
  a.nk = k.dim[2]; a.dv = v.dim[3];
  if (a.d > kMaxHead || a.dv > kMaxHead)
    throw std::invalid_argument(std::string(op) + ": the CUDA kernels take head sizes up to " +
                                std::to_string(kMaxHead) + ", got d=" + std::to_string(a.d) +
                                ", dv=" + std::to_string(a.dv));
  if (k.dim[0] != a.b || k.dim[1] != a.h || k.dim[3] != a.d || v.dim[0] != a.b ||
      v.dim[1] != a.h || v.dim[2] != a.nk)
    throw std::invalid_argument(std::string(op) + ": q, k, v shapes do not match");
  return a;
}

// Rows per shared tile: as many as fit kSharedBytes, at most kMaxTile.
int tile_rows(index_t width, std::size_t item) {
  const index_t t = static_cast<index_t>(kSharedBytes / item) / (width > 0 ? width : 1);
  return static_cast<int>(t < 1 ? 1 : (t > kMaxTile ? kMaxTile : t));
}

unsigned blocks(index_t n) { return static_cast<unsigned>((n + kThreads - 1) / kThreads); }

template <class T>
void forward_t(Array4 o, Array4 lse, Array4 q, Array4 k, Array4 v, Array4 mask, double scale,
               bool causal) {
  const Attn<T> a = make_attn<T>(q, k, v, mask, scale, causal, "attention_forward");
  if (a.b * a.h == 0 || a.nq == 0) return;
  const int tile = tile_rows(a.d + a.dv, sizeof(T));
  const std::size_t shared = static_cast<std::size_t>(tile) * (a.d + a.dv) * sizeof(T);
  forward_kernel<T><<<dim3(blocks(a.nq), static_cast<unsigned>(a.b * a.h)), kThreads, shared>>>(
      view4<T>(o), view4<T>(lse), a, tile);
  check_launch("attention_forward kernel launch");
}

template <class T>
void backward_t(Array4 dq, Array4 dk, Array4 dv, Array4 o, Array4 lse, Array4 dout, Array4 q,
                Array4 k, Array4 v, Array4 mask, double scale, bool causal) {
  const Attn<T> a = make_attn<T>(q, k, v, mask, scale, causal, "attention_backward");
  if (a.b * a.h == 0) return;
  const dim3 heads_q(blocks(a.nq), static_cast<unsigned>(a.b * a.h));
  if (a.nq > 0) {
    const int tile = tile_rows(a.d + a.dv, sizeof(T));
    const std::size_t shared = static_cast<std::size_t>(tile) * (a.d + a.dv) * sizeof(T);
    backward_dq_kernel<T><<<heads_q, kThreads, shared>>>(view4<T>(dq), view4<const T>(o),
                                                         view4<const T>(lse),
                                                         view4<const T>(dout), a, tile);
    check_launch("attention_backward (dq) kernel launch");
  }
  if (a.nk > 0) {
    const int tile = tile_rows(a.d + a.dv + 2, sizeof(T));
    const std::size_t shared = static_cast<std::size_t>(tile) * (a.d + a.dv + 2) * sizeof(T);
    backward_dkv_kernel<T><<<dim3(blocks(a.nk), static_cast<unsigned>(a.b * a.h)), kThreads,
                             shared>>>(view4<T>(dk), view4<T>(dv), view4<const T>(o),
                                       view4<const T>(lse), view4<const T>(dout), a, tile);
    check_launch("attention_backward (dk, dv) kernel launch");
  }
}

}  // namespace

void attention_forward(bool dbl, Array4 o, Array4 lse, Array4 q, Array4 k, Array4 v, Array4 mask,
                       double scale, bool causal) {
  if (dbl) forward_t<double>(o, lse, q, k, v, mask, scale, causal);
  else forward_t<float>(o, lse, q, k, v, mask, scale, causal);
}

void attention_backward(bool dbl, Array4 dq, Array4 dk, Array4 dv, Array4 o, Array4 lse,
                        Array4 dout, Array4 q, Array4 k, Array4 v, Array4 mask, double scale,
                        bool causal) {
  if (dbl) backward_t<double>(dq, dk, dv, o, lse, dout, q, k, v, mask, scale, causal);
  else backward_t<float>(dq, dk, dv, o, lse, dout, q, k, v, mask, scale, causal);
}

}  // namespace cuda
}  // namespace fastnn
