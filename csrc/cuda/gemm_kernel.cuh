// The tiled GEMM kernel: out := epilogue(alpha * A @ B), used by gemm, linear and its backward.
//
// Each thread block computes a BM x BN tile of the output, walking K in steps of BK. Tiles of A and
// B go through shared memory (double-buffered: the next tile is fetched into registers while the
// current one is multiplied, so one __syncthreads per step suffices), and each thread keeps a
// TM x TN block of accumulators in registers, reading 4-wide vectors from shared memory.
//
// Both operands are seen the same way, as an R x K matrix with strides (rs_r, rs_k): A is M x K as
// given, B is used as its transpose (N x K). The loader layout is a template parameter: KMAJOR
// fetches runs along K (row-major A, or B = w^T in linear), otherwise runs along R (transposed
// views). 4-wide vector loads are used where the run is unit-stride and 16/32-byte aligned, and
// element loads with bounds checks everywhere else, so any strides and any sizes work without a
// separate packing pass. Shared tiles are stored K-major ([BK][BR + PAD]); the padding spreads the
// transposing stores of the KMAJOR loader over the banks and preserves vector alignment.
#pragma once
#include <cstdint>

#include "common/activations.h"
#include "common/rbm_math.h"

namespace fastnn {
namespace cuda {

using gindex_t = std::int64_t;

template <class T>
struct GemmParams {
  gindex_t m = 0, n = 0, k = 0;
  const T* a = nullptr; gindex_t rsa = 0, csa = 0;  // M x K
  const T* b = nullptr; gindex_t rsb = 0, csb = 0;  // K x N
  T* out = nullptr; gindex_t rso = 0, cso = 0;      // M x N
  T alpha = T(1), beta = T(0);
  const T* c = nullptr; gindex_t rsc = 0, csc = 0;  // beta * c is added when c is non-null
  const T* bias = nullptr; gindex_t bias_stride = 0;  // bias[j] added to column j
  T* z = nullptr; gindex_t rsz = 0, csz = 0;        // receives the pre-activation when non-null
  int act = 0;
  T act_param = T(0);
  // RBM sampling after the activation (common/rbm_math.h): when draw is set, out := u < out for
  // the counter-based uniform of element cnt_off + i * cnt_rs + j * cnt_cs in `stage`.
  bool draw = false;
  std::uint32_t key0 = 0, key1 = 0, stage = 0;
  gindex_t cnt_rs = 0, cnt_cs = 0, cnt_off = 0;
  bool vec_a = false, vec_b = false;  // the unit-stride runs may be read as aligned vectors
};

template <int BM_, int BN_, int BK_, int TM_, int TN_, int MIN_BLOCKS_>
struct TileConfig {
  static constexpr int BM = BM_, BN = BN_, BK = BK_, TM = TM_, TN = TN_;
  static constexpr int THREADS = (BM / TM) * (BN / TN);
  static constexpr int MIN_BLOCKS = MIN_BLOCKS_;  // per multiprocessor: caps registers per thread
  static constexpr int PAD = 4;
  static_assert(TM % 4 == 0 && TN % 4 == 0, "thread tiles are made of 4-wide groups");
  static_assert(BK % 4 == 0 && BM % 4 == 0 && BN % 4 == 0, "tiles are made of 4-wide vectors");
};

// 128x128 tiles, 8x8 per thread: the float32 configuration for large outputs. Two blocks per
// multiprocessor (at most 128 registers per thread) hide the latency of the tile loads.
using LargeTile = TileConfig<128, 128, 8, 8, 8, 2>;
// 64x64 tiles, 4x4 per thread: four times the blocks, for outputs too small to fill the device,
// and for float64 (whose 8x8 accumulators would need twice the registers).
using SmallTile = TileConfig<64, 64, 16, 4, 4, 2>;

template <class T>
struct alignas(4 * sizeof(T)) Vec4 {
  T v[4];
};

// Global -> registers -> shared memory for one operand tile (BR rows of the operand, BK of K).
template <class T, int BR, int BK, int THREADS, bool KMAJOR>
struct TileLoader {
  static constexpr int PER_THREAD = BR * BK / (4 * THREADS);
  static_assert(PER_THREAD * 4 * THREADS == BR * BK, "every thread loads whole vectors");

  __device__ static void load(T (&reg)[PER_THREAD][4], const T* __restrict__ p, gindex_t rs_r,
                              gindex_t rs_k, gindex_t R, gindex_t K, gindex_t r0, gindex_t k0,
                              bool vec, int tid) {
#pragma unroll
    for (int v = 0; v < PER_THREAD; ++v) {
      const int idx = tid + v * THREADS;
      gindex_t r, kk;
      if (KMAJOR) {
        r = r0 + idx / (BK / 4);
        kk = k0 + (idx % (BK / 4)) * 4;
        if (vec && r < R && kk + 3 < K) {
          const Vec4<T> t = *reinterpret_cast<const Vec4<T>*>(p + r * rs_r + kk);
#pragma unroll
          for (int j = 0; j < 4; ++j) reg[v][j] = t.v[j];
          continue;
        }
#pragma unroll
        for (int j = 0; j < 4; ++j)
          reg[v][j] = (r < R && kk + j < K) ? p[r * rs_r + (kk + j) * rs_k] : T(0);
      } else {
        kk = k0 + idx / (BR / 4);
        r = r0 + (idx % (BR / 4)) * 4;
        if (vec && kk < K && r + 3 < R) {
          const Vec4<T> t = *reinterpret_cast<const Vec4<T>*>(p + kk * rs_k + r);
#pragma unroll
          for (int j = 0; j < 4; ++j) reg[v][j] = t.v[j];
          continue;
        }
#pragma unroll
        for (int j = 0; j < 4; ++j)
          reg[v][j] = (kk < K && r + j < R) ? p[(r + j) * rs_r + kk * rs_k] : T(0);
      }
    }
  }

  template <int LD>
  __device__ static void store(T (*s)[LD], const T (&reg)[PER_THREAD][4], int tid) {
#pragma unroll
    for (int v = 0; v < PER_THREAD; ++v) {
      const int idx = tid + v * THREADS;
      if (KMAJOR) {
        const int r = idx / (BK / 4), kk = (idx % (BK / 4)) * 4;
#pragma unroll
        for (int j = 0; j < 4; ++j) s[kk + j][r] = reg[v][j];
      } else {
        const int kk = idx / (BR / 4), r = (idx % (BR / 4)) * 4;
        Vec4<T> t;
#pragma unroll
        for (int j = 0; j < 4; ++j) t.v[j] = reg[v][j];
        *reinterpret_cast<Vec4<T>*>(&s[kk][r]) = t;
      }
    }
  }
};

template <class T>
__device__ inline T epilogue_value(const GemmParams<T>& p, T acc, gindex_t i, gindex_t j) {
  T v = p.alpha * acc;
  if (p.c) v += p.beta * p.c[i * p.rsc + j * p.csc];
  if (p.bias) v += p.bias[j * p.bias_stride];
  if (p.z) p.z[i * p.rsz + j * p.csz] = v;
  v = act::forward<T>(p.act, v, p.act_param);
  if (p.draw) {
    const auto idx = static_cast<std::uint32_t>(p.cnt_off + i * p.cnt_rs + j * p.cnt_cs);
    v = rbm::bernoulli<T>(v, rng::Key{p.key0, p.key1}, idx, p.stage);
  }
  return v;
}

template <class T, class Cfg, bool A_KMAJOR, bool B_KMAJOR>
__global__ void __launch_bounds__(Cfg::THREADS, Cfg::MIN_BLOCKS)
    gemm_kernel(const GemmParams<T> p) {
  constexpr int BM = Cfg::BM, BN = Cfg::BN, BK = Cfg::BK, TM = Cfg::TM, TN = Cfg::TN;
  constexpr int THREADS = Cfg::THREADS, PAD = Cfg::PAD;
  using LoadA = TileLoader<T, BM, BK, THREADS, A_KMAJOR>;
  using LoadB = TileLoader<T, BN, BK, THREADS, B_KMAJOR>;

  __shared__ __align__(32) T As[2][BK][BM + PAD];
  __shared__ __align__(32) T Bs[2][BK][BN + PAD];

  const int tid = static_cast<int>(threadIdx.x);
  const int tx = tid % (BN / TN), ty = tid / (BN / TN);
  const gindex_t m0 = static_cast<gindex_t>(blockIdx.x) * BM;
  const gindex_t n0 = static_cast<gindex_t>(blockIdx.y) * BN;

  // B seen as N x K: its rows are the columns of B.
  const gindex_t rsbt = p.csb, ksbt = p.rsb;

  T ra[LoadA::PER_THREAD][4], rb[LoadB::PER_THREAD][4];
  T acc[TM][TN];
#pragma unroll
  for (int i = 0; i < TM; ++i)
#pragma unroll
    for (int j = 0; j < TN; ++j) acc[i][j] = T(0);

  const gindex_t ntiles = (p.k + BK - 1) / BK;
  if (ntiles > 0) {
    LoadA::load(ra, p.a, p.rsa, p.csa, p.m, p.k, m0, 0, p.vec_a, tid);
    LoadB::load(rb, p.b, rsbt, ksbt, p.n, p.k, n0, 0, p.vec_b, tid);
    LoadA::store(As[0], ra, tid);
    LoadB::store(Bs[0], rb, tid);
  }
  __syncthreads();

  // Thread (ty, tx) owns rows g * (BM / GM) + 4 * ty + {0..3} for each group g, and columns
  // likewise: consecutive threads read consecutive 16-byte runs of shared memory.
  constexpr int GM = TM / 4, GN = TN / 4;
  for (gindex_t t = 0; t < ntiles; ++t) {
    const int cur = static_cast<int>(t & 1);
    const bool more = t + 1 < ntiles;
    if (more) {
      const gindex_t k0 = (t + 1) * BK;
      LoadA::load(ra, p.a, p.rsa, p.csa, p.m, p.k, m0, k0, p.vec_a, tid);
      LoadB::load(rb, p.b, rsbt, ksbt, p.n, p.k, n0, k0, p.vec_b, tid);
    }
#pragma unroll
    for (int kk = 0; kk < BK; ++kk) {
      T af[TM], bf[TN];
#pragma unroll
      for (int g = 0; g < GM; ++g) {
        const Vec4<T> t4 =
            *reinterpret_cast<const Vec4<T>*>(&As[cur][kk][g * (BM / GM) + 4 * ty]);
#pragma unroll
        for (int j = 0; j < 4; ++j) af[4 * g + j] = t4.v[j];
      }
#pragma unroll
      for (int g = 0; g < GN; ++g) {
        const Vec4<T> t4 =
            *reinterpret_cast<const Vec4<T>*>(&Bs[cur][kk][g * (BN / GN) + 4 * tx]);
#pragma unroll
        for (int j = 0; j < 4; ++j) bf[4 * g + j] = t4.v[j];
      }
#pragma unroll
      for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] += af[i] * bf[j];
    }
    if (more) {
      LoadA::store(As[cur ^ 1], ra, tid);
      LoadB::store(Bs[cur ^ 1], rb, tid);
    }
    __syncthreads();
  }

#pragma unroll
  for (int i = 0; i < TM; ++i) {
    const gindex_t gi = m0 + (i / 4) * (BM / GM) + 4 * ty + (i % 4);
    if (gi >= p.m) continue;
#pragma unroll
    for (int j = 0; j < TN; ++j) {
      const gindex_t gj = n0 + (j / 4) * (BN / GN) + 4 * tx + (j % 4);
      if (gj >= p.n) continue;
      p.out[gi * p.rso + gj * p.cso] = epilogue_value(p, acc[i][j], gi, gj);
    }
  }
}

}  // namespace cuda
}  // namespace fastnn
