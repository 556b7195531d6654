// AVX2 + FMA GEMM kernels (compiled with -mavx2 -mfma only in this file; chosen at run time).
//
// Tile 6 x 16 (fp32) / 6 x 8 (fp64): 6 broadcast rows times 2 ymm vectors = 12 accumulators out of
// 16 ymm registers; Haswell-to-Zen 3 retire two FMAs a cycle at 4-5 cycles latency, so 10+
// independent chains keep both pipes busy. KC = 256 keeps the 256 x 16 fp32 B micro-panel (16 KiB)
// in a 32 KiB L1; MC = 96 keeps the A block (96 KiB) in a 256-512 KiB L2.
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#include "common/activations.h"
#include "common/rbm_math.h"
#include "common/fpenv.h"
#include "common/parallel.h"
#include "cpu/act_rows.h"
#include "cpu/gemm/dispatch.h"

namespace fastnn {
namespace avx2 {

// Lane masks for partial loads: the 8 entries starting at kMaskTable + 8 - n are n all-ones.
alignas(32) static const int kMaskTable[16] = {-1, -1, -1, -1, -1, -1, -1, -1,
                                                0,  0,  0,  0,  0,  0,  0,  0};

struct VecF {
  using T = float;
  using V = __m256;
  static constexpr int W = 8;
  static inline V zero() { return _mm256_setzero_ps(); }
  static inline V set1(T x) { return _mm256_set1_ps(x); }
  static inline V load(const T* p) { return _mm256_loadu_ps(p); }
  static inline V loadu(const T* p) { return _mm256_loadu_ps(p); }
  static inline __m256i mask(int n) {
    n = n >= W ? W : n;
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kMaskTable + 8 - n));
  }
  static inline V loadn(const T* p, int n) {
    return n >= W ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, mask(n));
  }
  static inline void store(T* p, V v) { _mm256_storeu_ps(p, v); }
  static inline void storen(T* p, V v, int n) {
    if (n >= W) _mm256_storeu_ps(p, v);
    else _mm256_maskstore_ps(p, mask(n), v);
  }
  static inline V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static inline V mul(V a, V b) { return _mm256_mul_ps(a, b); }
  static inline V add(V a, V b) { return _mm256_add_ps(a, b); }
  static inline V max(V a, V b) { return _mm256_max_ps(a, b); }

  // dst[c*ldd + r] = src[r*ld + c] for r < nstore, c < ncols; source rows r >= nrows read as 0.
  // An 8x8 in-register transpose (unpack pairs of rows, shuffle 2x2 blocks, swap 128-bit lanes):
  // it lets the packing routines read a transposed operand (the w of x @ w.T) a row at a time
  // instead of gathering one float per k step, which cost as much as the product at MLP shapes.
  static constexpr bool kTranspose = true;
  static inline void transpose(const T* src, index_t ld, int nrows, int ncols, T* dst,
                               index_t ldd, int nstore) {
    const __m256i lm = mask(ncols);
    V r[8];
#pragma GCC unroll 8
    for (int i = 0; i < 8; ++i) {
      r[i] = i >= nrows ? _mm256_setzero_ps()
             : ncols >= W ? _mm256_loadu_ps(src + i * ld)
                          : _mm256_maskload_ps(src + i * ld, lm);
    }
    V t[8], u[8];
#pragma GCC unroll 4
    for (int i = 0; i < 4; ++i) {
      t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);  // a0 b0 a1 b1 | a4 b4 a5 b5
      t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
#pragma GCC unroll 2
    for (int h = 0; h < 2; ++h) {  // rows 0-3, then rows 4-7
      V* q = t + 4 * h;
      u[4 * h + 0] = _mm256_shuffle_ps(q[0], q[2], 0x44);  // column 0 | column 4 of 4 rows
      u[4 * h + 1] = _mm256_shuffle_ps(q[0], q[2], 0xEE);  // column 1 | column 5
      u[4 * h + 2] = _mm256_shuffle_ps(q[1], q[3], 0x44);  // column 2 | column 6
      u[4 * h + 3] = _mm256_shuffle_ps(q[1], q[3], 0xEE);  // column 3 | column 7
    }
    const __m256i sm = mask(nstore);
#pragma GCC unroll 8
    for (int c = 0; c < 8; ++c) {
      if (c >= ncols) break;
      const int j = c & 3;
      V col = c < 4 ? _mm256_permute2f128_ps(u[j], u[4 + j], 0x20)
                    : _mm256_permute2f128_ps(u[j], u[4 + j], 0x31);
      if (nstore >= W) _mm256_storeu_ps(dst + c * ldd, col);
      else _mm256_maskstore_ps(dst + c * ldd, sm, col);
    }
  }
};

struct VecD {
  using T = double;
  using V = __m256d;
  static constexpr int W = 4;
  static inline V zero() { return _mm256_setzero_pd(); }
  static inline V set1(T x) { return _mm256_set1_pd(x); }
  static inline V load(const T* p) { return _mm256_loadu_pd(p); }
  static inline V loadu(const T* p) { return _mm256_loadu_pd(p); }
  // 64-bit lanes: pairs of the 32-bit table entries.
  static inline __m256i mask(int n) {
    n = n >= W ? W : n;
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kMaskTable + 8 - 2 * n));
  }
  static inline V loadn(const T* p, int n) {
    return n >= W ? _mm256_loadu_pd(p) : _mm256_maskload_pd(p, mask(n));
  }
  static inline void store(T* p, V v) { _mm256_storeu_pd(p, v); }
  static inline void storen(T* p, V v, int n) {
    if (n >= W) _mm256_storeu_pd(p, v);
    else _mm256_maskstore_pd(p, mask(n), v);
  }
  static inline V fma(V a, V b, V c) { return _mm256_fmadd_pd(a, b, c); }
  static inline V mul(V a, V b) { return _mm256_mul_pd(a, b); }
  static inline V add(V a, V b) { return _mm256_add_pd(a, b); }
  static inline V max(V a, V b) { return _mm256_max_pd(a, b); }
  static constexpr bool kTranspose = false;
  static void transpose(const T*, index_t, int, int, T*, index_t, int) {}
};

#include "cpu/gemm/driver_impl.h"

using FrameF = Frame<VecF, 6, 2, 256, 96, 4096>;
using FrameD = Frame<VecD, 6, 2, 256, 48, 2048>;

}  // namespace avx2

const IsaKernels kAvx2Kernels = {
    "avx2",
    {avx2::FrameF::blocking(), &avx2::FrameF::run, &avx2::FrameF::packed_a_elems,
     &avx2::FrameF::pack_a_all, &avx2::FrameF::pack_b_all, &avx2::FrameF::packed},
    {avx2::FrameD::blocking(), &avx2::FrameD::run, &avx2::FrameD::packed_a_elems,
     &avx2::FrameD::pack_a_all, &avx2::FrameD::pack_b_all, &avx2::FrameD::packed},
};

}  // namespace fastnn
