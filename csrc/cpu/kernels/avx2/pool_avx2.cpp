// AVX2 row kernel of 2x2 stride-2 max pooling (compiled with -mavx2 -mfma only in this file;
// chosen at run time).
//
// 8 outputs a step: two loads per input row, split into even and odd columns by an in-lane
// shuffle and a cross-lane 64-bit permute, then three compare-and-blend steps in the window's
// order (the NaN rule is one more compare: "v is NaN and the running maximum is not"). The
// winner is kept as a 32-bit offset (0, 1, w, w+1) and widened to the int64 argmax at the store.
// The row's tail (ow % 8 outputs) uses masked loads and stores.
#include <immintrin.h>

#include "cpu/pool.h"

namespace fastnn {
namespace pool_avx2 {
namespace {

// Lane masks: the 8 ints starting at kMask + 8 - n are n all-ones, then zeros.
alignas(32) const int kMask[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};

inline __m256i lanes(index_t n) {
  n = n < 0 ? 0 : (n > 8 ? 8 : n);
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kMask + 8 - n));
}

inline __m256 take(__m256 v, __m256 m) {
  const __m256 gt = _mm256_cmp_ps(v, m, _CMP_GT_OQ);
  const __m256 nan_v = _mm256_cmp_ps(v, v, _CMP_UNORD_Q);
  const __m256 m_ordered = _mm256_cmp_ps(m, m, _CMP_ORD_Q);
  return _mm256_or_ps(gt, _mm256_and_ps(nan_v, m_ordered));
}

// Even and odd columns of the 16 floats lo:hi, in order.
inline void split(__m256 lo, __m256 hi, __m256& even, __m256& odd) {
  even = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(lo, hi, 0x88)), 0xD8));
  odd = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(lo, hi, 0xDD)), 0xD8));
}

void max2x2_f32(float* y, std::int64_t* am, const float* r0, const float* r1, index_t ow,
                std::int64_t base, index_t w) {
  const __m256 o1 = _mm256_castsi256_ps(_mm256_set1_epi32(1));
  const __m256 ow_ = _mm256_castsi256_ps(_mm256_set1_epi32(static_cast<int>(w)));
  const __m256 ow1 = _mm256_castsi256_ps(_mm256_set1_epi32(static_cast<int>(w + 1)));
  const __m256i lane_lo = _mm256_setr_epi64x(0, 2, 4, 6), lane_hi = _mm256_setr_epi64x(8, 10, 12, 14);
  for (index_t q = 0; q < ow; q += 8) {
    const index_t n = ow - q < 8 ? ow - q : 8;
    const float* a = r0 + 2 * q;
    const float* b = r1 + 2 * q;
    __m256 a0, a1, b0, b1;
    if (n == 8) {
      a0 = _mm256_loadu_ps(a); a1 = _mm256_loadu_ps(a + 8);
      b0 = _mm256_loadu_ps(b); b1 = _mm256_loadu_ps(b + 8);
    } else {
      const __m256i m0 = lanes(2 * n), m1 = lanes(2 * n - 8);
      a0 = _mm256_maskload_ps(a, m0); a1 = _mm256_maskload_ps(a + 8, m1);
      b0 = _mm256_maskload_ps(b, m0); b1 = _mm256_maskload_ps(b + 8, m1);
    }
    __m256 m, v, t;
    split(a0, a1, m, v);
    __m256 off = _mm256_setzero_ps();  // int32 offsets, carried in float registers for blendv
    t = take(v, m);
    m = _mm256_blendv_ps(m, v, t);
    off = _mm256_blendv_ps(off, o1, t);
    __m256 v2, v3;
    split(b0, b1, v2, v3);
    t = take(v2, m);
    m = _mm256_blendv_ps(m, v2, t);
    off = _mm256_blendv_ps(off, ow_, t);
    t = take(v3, m);
    m = _mm256_blendv_ps(m, v3, t);
    off = _mm256_blendv_ps(off, ow1, t);
    const __m256i offi = _mm256_castps_si256(off);
    const __m256i at = _mm256_set1_epi64x(base + 2 * q);
    const __m256i lo = _mm256_add_epi64(_mm256_add_epi64(at, lane_lo),
                                        _mm256_cvtepi32_epi64(_mm256_castsi256_si128(offi)));
    const __m256i hi = _mm256_add_epi64(_mm256_add_epi64(at, lane_hi),
                                        _mm256_cvtepi32_epi64(_mm256_extracti128_si256(offi, 1)));
    if (n == 8) {
      _mm256_storeu_ps(y + q, m);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(am + q), lo);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(am + q + 4), hi);
    } else {
      _mm256_maskstore_ps(y + q, lanes(n), m);
      // 64-bit lane masks: lanes(2k) covers k int64 lanes.
      _mm256_maskstore_epi64(reinterpret_cast<long long*>(am + q), lanes(2 * n), lo);
      _mm256_maskstore_epi64(reinterpret_cast<long long*>(am + q + 4), lanes(2 * n - 8), hi);
    }
  }
}

template <class T>
void max_cell(T* m, std::int64_t* am, const T* xr, index_t lo, index_t hi, index_t sw, index_t off,
              std::int64_t base) {
  max_cell_loop<T>(m, am, xr, lo, hi, sw, off, base);
}

// The four 64-bit lane masks of two int64 vectors (lo: outputs 0-3, hi: 4-7) as eight 32-bit
// lanes, in output order.
inline __m256i narrow_masks(__m256i lo, __m256i hi) {
  const __m256i pick = _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6);
  return _mm256_blend_epi32(_mm256_permutevar8x32_epi32(lo, pick),
                            _mm256_permutevar8x32_epi32(hi, pick), 0xF0);
}

// 8 outputs a step: each output's winner offset (argmax minus its window's first cell) compared
// with the four cells' offsets in 64 bits (so an argmax far outside its block never matches a
// cell by truncation), dy masked into four vectors, and each input row's even and odd columns
// interleaved by unpacks and a 128-bit lane swap. The compiler's vectorization of the scalar
// loop had run 5x slower than the AVX-512 kernel (1.9 ms against 0.36 for the CNN's second pool).
bool unpool2x2_f32(float* d0, float* d1, const std::int64_t* am, const float* dy,
                   const float* gate, index_t ow, std::int64_t base, index_t w) {
  const __m256i lane_lo = _mm256_setr_epi64x(0, 2, 4, 6), lane_hi = _mm256_setr_epi64x(8, 10, 12, 14);
  const __m256i c1 = _mm256_set1_epi64x(1), cw = _mm256_set1_epi64x(w),
                cw1 = _mm256_set1_epi64x(w + 1), zero = _mm256_setzero_si256();
  const __m256 one = _mm256_set1_ps(1.0f);
  __m256i outside = _mm256_setzero_si256();
  for (index_t q = 0; q < ow; q += 8) {
    const index_t n = ow - q < 8 ? ow - q : 8;
    const __m256i mo = lanes(n);
    __m256 v;
    __m256i a0, a1;
    if (n == 8) {
      v = _mm256_loadu_ps(dy + q);
      a0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(am + q));
      a1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(am + q + 4));
    } else {
      v = _mm256_maskload_ps(dy + q, mo);
      a0 = _mm256_maskload_epi64(reinterpret_cast<const long long*>(am + q), lanes(2 * n));
      a1 = _mm256_maskload_epi64(reinterpret_cast<const long long*>(am + q + 4), lanes(2 * n - 8));
    }
    if (gate) {  // dy * (gate > 0 ? 1 : 0), as the scalar loop: a NaN dy stays NaN
      const __m256 g = n == 8 ? _mm256_loadu_ps(gate + q) : _mm256_maskload_ps(gate + q, mo);
      v = _mm256_mul_ps(v, _mm256_and_ps(_mm256_cmp_ps(g, _mm256_setzero_ps(), _CMP_GT_OQ), one));
    }
    const __m256i at = _mm256_set1_epi64x(base + 2 * q);
    const __m256i f0 = _mm256_sub_epi64(a0, _mm256_add_epi64(at, lane_lo));
    const __m256i f1 = _mm256_sub_epi64(a1, _mm256_add_epi64(at, lane_hi));
    const __m256i k00 = narrow_masks(_mm256_cmpeq_epi64(f0, zero), _mm256_cmpeq_epi64(f1, zero));
    const __m256i k01 = narrow_masks(_mm256_cmpeq_epi64(f0, c1), _mm256_cmpeq_epi64(f1, c1));
    const __m256i k10 = narrow_masks(_mm256_cmpeq_epi64(f0, cw), _mm256_cmpeq_epi64(f1, cw));
    const __m256i k11 = narrow_masks(_mm256_cmpeq_epi64(f0, cw1), _mm256_cmpeq_epi64(f1, cw1));
    const __m256i any = _mm256_or_si256(_mm256_or_si256(k00, k01), _mm256_or_si256(k10, k11));
    outside = _mm256_or_si256(outside, _mm256_andnot_si256(any, mo));
    const __m256 c00 = _mm256_and_ps(_mm256_castsi256_ps(k00), v);
    const __m256 c01 = _mm256_and_ps(_mm256_castsi256_ps(k01), v);
    const __m256 c10 = _mm256_and_ps(_mm256_castsi256_ps(k10), v);
    const __m256 c11 = _mm256_and_ps(_mm256_castsi256_ps(k11), v);
    // [c0 c1 interleaved]: unpacks give outputs (0,1 | 4,5) and (2,3 | 6,7)
    const __m256 l0 = _mm256_unpacklo_ps(c00, c01), h0 = _mm256_unpackhi_ps(c00, c01);
    const __m256 l1 = _mm256_unpacklo_ps(c10, c11), h1 = _mm256_unpackhi_ps(c10, c11);
    const __m256 r00 = _mm256_permute2f128_ps(l0, h0, 0x20), r01 = _mm256_permute2f128_ps(l0, h0, 0x31);
    const __m256 r10 = _mm256_permute2f128_ps(l1, h1, 0x20), r11 = _mm256_permute2f128_ps(l1, h1, 0x31);
    float* e = d0 + 2 * q;
    float* f = d1 + 2 * q;
    if (n == 8) {
      _mm256_storeu_ps(e, r00);
      _mm256_storeu_ps(e + 8, r01);
      _mm256_storeu_ps(f, r10);
      _mm256_storeu_ps(f + 8, r11);
    } else {
      const __m256i s0 = lanes(2 * n), s1 = lanes(2 * n - 8);
      _mm256_maskstore_ps(e, s0, r00);
      _mm256_maskstore_ps(e + 8, s1, r01);
      _mm256_maskstore_ps(f, s0, r10);
      _mm256_maskstore_ps(f + 8, s1, r11);
    }
  }
  return _mm256_testz_si256(outside, outside) != 0;
}

}  // namespace
}  // namespace pool_avx2

const PoolRowKernels kPoolRowsAvx2 = {"avx2", &pool_avx2::max2x2_f32, &pool_avx2::max_cell<float>,
                                      &pool_avx2::max_cell<double>, &pool_avx2::unpool2x2_f32};

}  // namespace fastnn
