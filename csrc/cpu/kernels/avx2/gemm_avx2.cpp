// AVX2 + FMA GEMM kernels (compiled with -mavx2 -mfma only in this file; chosen at run time).
//
// Tile 6 x 16 (fp32) / 6 x 8 (fp64): 6 broadcast rows times 2 ymm vectors = 12 accumulators out of
// 16 ymm registers; Haswell-to-Zen 3 retire two FMAs a cycle at 4-5 cycles latency, so 10+
// independent chains keep both pipes busy. KC = 256 keeps the 256 x 16 fp32 B micro-panel (16 KiB)
// in a 32 KiB L1; MC = 96 keeps the A block (96 KiB) in a 256-512 KiB L2.
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "common/activations.h"
#include "common/fpenv.h"
#include "common/parallel.h"
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
  static constexpr bool kTranspose = false;
  static void transpose(const T*, index_t, int, int, T*, index_t, int) {}
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
    {avx2::FrameF::blocking(), &avx2::FrameF::run},
    {avx2::FrameD::blocking(), &avx2::FrameD::run},
};

}  // namespace fastnn
