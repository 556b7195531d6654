// AVX-512 GEMM kernels (compiled with -mavx512f/dq/bw/vl only in this file; chosen at run time).
//
// Tile 12 x 32 (fp32) / 12 x 16 (fp64): 12 broadcast rows times 2 zmm vectors = 24 accumulators,
// leaving 8 zmm for the two B vectors and broadcasts. Zen 4/5 and Skylake-X retire two 512-bit
// FMAs a cycle with 4-cycle latency, so at least 8 independent chains are needed; 24 hides it with
// room to spare. KC = 256: a 256 x 32 fp32 B micro-panel (32 KiB) stays in a 48 KiB L1 while the
// micro-kernel walks down the A block. MC = 96 keeps the 96 x 256 A block (96 KiB) in L2 with room
// for the B slivers streaming past it; measured on Zen 5 (2 threads), MC = 96 beat 144 and 192 at
// n = 1024-2048 by 2-5%. The B panel (KC x NC) lives in L3.
#include <immintrin.h>

// GCC 12's _mm512_max_ps/pd pass an intentionally undefined vector internally, which
// -Wmaybe-uninitialized reports as a false positive once inlined here.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

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
namespace avx512 {

struct VecF {
  using T = float;
  using V = __m512;
  static constexpr int W = 16;
  static inline V zero() { return _mm512_setzero_ps(); }
  static inline V set1(T x) { return _mm512_set1_ps(x); }
  static inline V load(const T* p) { return _mm512_loadu_ps(p); }
  static inline V loadu(const T* p) { return _mm512_loadu_ps(p); }
  static inline __mmask16 mask(int n) {
    return n >= W ? __mmask16(0xffff) : __mmask16((1u << n) - 1u);
  }
  static inline V loadn(const T* p, int n) { return _mm512_maskz_loadu_ps(mask(n), p); }
  static inline void store(T* p, V v) { _mm512_storeu_ps(p, v); }
  static inline void storen(T* p, V v, int n) { _mm512_mask_storeu_ps(p, mask(n), v); }
  static inline V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static inline V mul(V a, V b) { return _mm512_mul_ps(a, b); }
  static inline V add(V a, V b) { return _mm512_add_ps(a, b); }
  static inline V max(V a, V b) { return _mm512_max_ps(a, b); }

  // dst[c*ldd + r] = src[r*ld + c] for r < nstore, c < ncols; source rows r >= nrows read as 0.
  // A 16x16 in-register transpose: unpack pairs of rows, shuffle 4x4 blocks within 128-bit
  // lanes, then transpose the 4x4 grid of lanes; 64 shuffles for 256 elements.
  static constexpr bool kTranspose = true;
  static inline void transpose(const T* src, index_t ld, int nrows, int ncols, T* dst,
                               index_t ldd, int nstore) {
    const __mmask16 lm = mask(ncols);
    V r[16], t[16];
#pragma GCC unroll 16
    for (int i = 0; i < 16; ++i)
      r[i] = i < nrows ? _mm512_maskz_loadu_ps(lm, src + i * ld) : _mm512_setzero_ps();
#pragma GCC unroll 8
    for (int i = 0; i < 8; ++i) {
      t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
      t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
#pragma GCC unroll 4
    for (int i = 0; i < 4; ++i) {
      r[4 * i + 0] = _mm512_shuffle_ps(t[4 * i + 0], t[4 * i + 2], 0x44);
      r[4 * i + 1] = _mm512_shuffle_ps(t[4 * i + 0], t[4 * i + 2], 0xEE);
      r[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
      r[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
    }
    // r[4i + j], lane L now holds column 4L + j of rows 4i..4i+3.
    const __mmask16 sm = mask(nstore);
#pragma GCC unroll 4
    for (int j = 0; j < 4; ++j) {
      V v0 = _mm512_shuffle_f32x4(r[j], r[4 + j], 0x44);
      V v1 = _mm512_shuffle_f32x4(r[j], r[4 + j], 0xEE);
      V v2 = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0x44);
      V v3 = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0xEE);
      V out[4] = {_mm512_shuffle_f32x4(v0, v2, 0x88), _mm512_shuffle_f32x4(v0, v2, 0xDD),
                  _mm512_shuffle_f32x4(v1, v3, 0x88), _mm512_shuffle_f32x4(v1, v3, 0xDD)};
#pragma GCC unroll 4
      for (int l = 0; l < 4; ++l) {
        int col = 4 * l + j;
        if (col < ncols) _mm512_mask_storeu_ps(dst + col * ldd, sm, out[l]);
      }
    }
  }
};

struct VecD {
  using T = double;
  using V = __m512d;
  static constexpr int W = 8;
  static inline V zero() { return _mm512_setzero_pd(); }
  static inline V set1(T x) { return _mm512_set1_pd(x); }
  static inline V load(const T* p) { return _mm512_loadu_pd(p); }
  static inline V loadu(const T* p) { return _mm512_loadu_pd(p); }
  static inline __mmask8 mask(int n) {
    return n >= W ? __mmask8(0xff) : __mmask8((1u << n) - 1u);
  }
  static inline V loadn(const T* p, int n) { return _mm512_maskz_loadu_pd(mask(n), p); }
  static inline void store(T* p, V v) { _mm512_storeu_pd(p, v); }
  static inline void storen(T* p, V v, int n) { _mm512_mask_storeu_pd(p, mask(n), v); }
  static inline V fma(V a, V b, V c) { return _mm512_fmadd_pd(a, b, c); }
  static inline V mul(V a, V b) { return _mm512_mul_pd(a, b); }
  static inline V add(V a, V b) { return _mm512_add_pd(a, b); }
  static inline V max(V a, V b) { return _mm512_max_pd(a, b); }
  static constexpr bool kTranspose = false;  // fp64 is the checking path, not the fast one
  static void transpose(const T*, index_t, int, int, T*, index_t, int) {}
};

#include "cpu/gemm/driver_impl.h"

using FrameF = Frame<VecF, 12, 2, 256, 96, 4096>;
using FrameD = Frame<VecD, 12, 2, 256, 96, 2048>;

}  // namespace avx512

const IsaKernels kAvx512Kernels = {
    "avx512",
    {avx512::FrameF::blocking(), &avx512::FrameF::run, &avx512::FrameF::packed_a_elems,
     &avx512::FrameF::pack_a_all, &avx512::FrameF::pack_b_all, &avx512::FrameF::packed},
    {avx512::FrameD::blocking(), &avx512::FrameD::run, &avx512::FrameD::packed_a_elems,
     &avx512::FrameD::pack_a_all, &avx512::FrameD::pack_b_all, &avx512::FrameD::packed},
};

}  // namespace fastnn
