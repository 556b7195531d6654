// The GEMM launcher, defined once and instantiated per dtype in gemm_f32.cu and gemm_f64.cu (two
// translation units, so that a parallel build compiles them side by side): it picks the tile
// configuration and the operand layouts, then runs gemm_kernel (gemm_kernel.cuh).
#pragma once
#include <cstdlib>

#include "cuda/check.cuh"
#include "cuda/kernel_launch.cuh"
#include "cuda/launch.cuh"

namespace fastnn {
namespace cuda {
namespace {

// How one operand, seen as R x K with strides (rs_r, rs_k), is best fetched.
struct Layout {
  bool kmajor;  // runs along K (else along R)
  bool vec;     // those runs can be read as aligned 4-wide vectors
};

Layout choose_layout(const void* p, index_t R, index_t K, index_t& rs_r, index_t& rs_k,
                     std::size_t elem) {
  // The stride of a length-1 dimension is arbitrary (NumPy leaves odd values there); zero makes it
  // harmless for both the layout choice and the alignment test.
  if (R == 1) rs_r = 0;
  if (K == 1) rs_k = 0;
  Layout l;
  if (rs_k == 1) l.kmajor = true;
  else if (rs_r == 1) l.kmajor = false;
  else l.kmajor = R == 1 || (K != 1 && std::llabs(rs_k) <= std::llabs(rs_r));
  const bool aligned = reinterpret_cast<std::uintptr_t>(p) % (4 * elem) == 0;
  l.vec = aligned && (l.kmajor ? (rs_k == 1 && rs_r % 4 == 0) : (rs_r == 1 && rs_k % 4 == 0));
  return l;
}

template <class T, class Cfg, bool AK, bool BK>
void run(GemmParams<T> p) {
  // gridDim.y is limited to 65535: wider outputs go in column slabs, one launch each. Slab offsets
  // are multiples of BN (a multiple of 4), so vector alignment is preserved.
  constexpr index_t kMaxCols = index_t(65535) * Cfg::BN;
  const index_t n = p.n;
  for (index_t n0 = 0; n0 < n; n0 += kMaxCols) {
    GemmParams<T> q = p;
    q.n = n - n0 < kMaxCols ? n - n0 : kMaxCols;
    q.b += n0 * p.csb;
    q.out += n0 * p.cso;
    if (q.c) q.c += n0 * p.csc;
    if (q.bias) q.bias += n0 * p.bias_stride;
    if (q.z) q.z += n0 * p.csz;
    const dim3 grid(static_cast<unsigned>((q.m + Cfg::BM - 1) / Cfg::BM),
                    static_cast<unsigned>((q.n + Cfg::BN - 1) / Cfg::BN));
    launch("gemm kernel launch", gemm_kernel<T, Cfg, AK, BK>, grid, dim3(Cfg::THREADS), q);
  }
}

template <class T, class Cfg>
void run_layouts(const GemmParams<T>& p, bool ak, bool bk) {
  if (ak) {
    if (bk) run<T, Cfg, true, true>(p);
    else run<T, Cfg, true, false>(p);
  } else {
    if (bk) run<T, Cfg, false, true>(p);
    else run<T, Cfg, false, false>(p);
  }
}

int multiprocessors() {
  int dev = 0, sms = 0;
  check(cudaGetDevice(&dev), "cudaGetDevice");
  check(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev),
        "cudaDeviceGetAttribute");
  return sms;
}

}  // namespace

template <class T>
void launch_gemm(GemmParams<T> p) {
  if (p.m <= 0 || p.n <= 0) return;
  // The loaders see B as N x K: rows of that view are columns of B.
  index_t rsbt = p.csb, ksbt = p.rsb;
  const Layout la = choose_layout(p.a, p.m, p.k, p.rsa, p.csa, sizeof(T));
  const Layout lb = choose_layout(p.b, p.n, p.k, rsbt, ksbt, sizeof(T));
  p.csb = rsbt;
  p.rsb = ksbt;
  p.vec_a = la.vec;
  p.vec_b = lb.vec;
  // Large tiles (float32 only) when they fill every multiprocessor; else 4x as many small ones.
  if constexpr (sizeof(T) == 4) {
    const index_t large_tiles = ((p.m + LargeTile::BM - 1) / LargeTile::BM) *
                                ((p.n + LargeTile::BN - 1) / LargeTile::BN);
    if (large_tiles >= multiprocessors()) {
      run_layouts<T, LargeTile>(p, la.kmajor, lb.kmajor);
      return;
    }
  }
  run_layouts<T, SmallTile>(p, la.kmajor, lb.kmajor);
}

}  // namespace cuda
}  // namespace fastnn
