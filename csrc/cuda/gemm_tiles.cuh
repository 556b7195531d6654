// The GEMM kernel launches for one tile configuration, over the four operand layouts. Each
// (dtype, configuration) pair is instantiated in its own translation unit (gemm_f32_large.cu,
// gemm_f32_small.cu, gemm_f64.cu): these are the slow files to compile, and a parallel build
// compiles them side by side.
#pragma once
#include "cuda/kernel_launch.cuh"
#include "cuda/launchers.cuh"

namespace fastnn {
namespace cuda {
namespace tiles {

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
    q.cnt_off = p.cnt_off + n0 * p.cnt_cs;
    const dim3 grid(static_cast<unsigned>((q.m + Cfg::BM - 1) / Cfg::BM),
                    static_cast<unsigned>((q.n + Cfg::BN - 1) / Cfg::BN));
    launch("gemm kernel launch", gemm_kernel<T, Cfg, AK, BK>, grid, dim3(Cfg::THREADS), q);
  }
}

}  // namespace tiles

template <class T, class Cfg>
void run_tiles(const GemmParams<T>& p, bool ak, bool bk) {
  if (ak) {
    if (bk) tiles::run<T, Cfg, true, true>(p);
    else tiles::run<T, Cfg, true, false>(p);
  } else {
    if (bk) tiles::run<T, Cfg, false, true>(p);
    else tiles::run<T, Cfg, false, false>(p);
  }
}

}  // namespace cuda
}  // namespace fastnn
