// AVX-512 row kernel of 2x2 stride-2 max pooling (compiled with AVX-512 flags only in this
// file; chosen at run time).
//
// 16 outputs a step: two loads per input row, split into even and odd columns with one
// two-source permute each, then three compare-and-select steps in the window's order. The NaN
// rule costs one extra masked compare per step: "v is NaN and the running maximum is not".
// Which of the four cells won is kept as a 32-bit offset (0, 1, w, w+1) and widened to the
// int64 argmax only at the store. A row's tail (ow % 16 outputs, all of a 28x28 plane's 14) runs
// the same code on masked loads and stores.
#include <immintrin.h>

// GCC 12's _mm512_cvtepi32_epi64 and friends pass an intentionally undefined vector internally,
// which -Wmaybe-uninitialized reports as a false positive once inlined here.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include "cpu/pool.h"

namespace fastnn {
namespace pool_avx512 {
namespace {

inline __mmask16 take(__m512 v, __m512 m) {
  const __mmask16 gt = _mm512_cmp_ps_mask(v, m, _CMP_GT_OQ);
  const __mmask16 m_ordered = _mm512_cmp_ps_mask(m, m, _CMP_ORD_Q);
  return gt | _mm512_mask_cmp_ps_mask(m_ordered, v, v, _CMP_UNORD_Q);
}

inline __mmask16 lanes(index_t n) {
  return n >= 16 ? __mmask16(0xffff) : n <= 0 ? __mmask16(0) : __mmask16((1u << n) - 1u);
}

void max2x2_f32(float* y, std::int64_t* am, const float* r0, const float* r1, index_t ow,
                std::int64_t base, index_t w) {
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
  const __m512i o1 = _mm512_set1_epi32(1), ow_ = _mm512_set1_epi32(static_cast<int>(w)),
                ow1 = _mm512_set1_epi32(static_cast<int>(w + 1));
  const __m512i lane2 = _mm512_setr_epi64(0, 2, 4, 6, 8, 10, 12, 14);
  for (index_t q = 0; q < ow; q += 16) {
    const index_t n = ow - q < 16 ? ow - q : 16;
    const __mmask16 m0 = lanes(2 * n), m1 = lanes(2 * n - 16), mo = lanes(n);
    const float* a = r0 + 2 * q;
    const float* b = r1 + 2 * q;
    const __m512 a0 = _mm512_maskz_loadu_ps(m0, a), a1 = _mm512_maskz_loadu_ps(m1, a + 16);
    const __m512 b0 = _mm512_maskz_loadu_ps(m0, b), b1 = _mm512_maskz_loadu_ps(m1, b + 16);
    __m512 m = _mm512_permutex2var_ps(a0, even, a1);
    __m512i off = _mm512_setzero_si512();
    __m512 v = _mm512_permutex2var_ps(a0, odd, a1);
    __mmask16 t = take(v, m);
    m = _mm512_mask_mov_ps(m, t, v);
    off = _mm512_mask_mov_epi32(off, t, o1);
    v = _mm512_permutex2var_ps(b0, even, b1);
    t = take(v, m);
    m = _mm512_mask_mov_ps(m, t, v);
    off = _mm512_mask_mov_epi32(off, t, ow_);
    v = _mm512_permutex2var_ps(b0, odd, b1);
    t = take(v, m);
    m = _mm512_mask_mov_ps(m, t, v);
    off = _mm512_mask_mov_epi32(off, t, ow1);
    _mm512_mask_storeu_ps(y + q, mo, m);
    const __m512i at = _mm512_add_epi64(_mm512_set1_epi64(base + 2 * q), lane2);
    const __m512i lo = _mm512_add_epi64(at, _mm512_cvtepi32_epi64(_mm512_castsi512_si256(off)));
    const __m512i hi = _mm512_add_epi64(_mm512_add_epi64(at, _mm512_set1_epi64(16)),
                                        _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(off, 1)));
    _mm512_mask_storeu_epi64(am + q, __mmask8(mo & 0xff), lo);
    _mm512_mask_storeu_epi64(am + q + 8, __mmask8(mo >> 8), hi);
  }
}

// 16 outputs a step: the winners' offsets (0, 1, w, w+1) narrowed to 32 bits, one masked move
// of dy per window cell, and the even and odd columns of each input row interleaved by one
// two-source permute per 16 columns.
bool unpool2x2_f32(float* d0, float* d1, const std::int64_t* am, const float* dy,
                   const float* gate, index_t ow, std::int64_t base, index_t w) {
  __mmask16 outside = 0;
  const __m512i mix_lo =
      _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
  const __m512i mix_hi =
      _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
  const __m512i lane2 = _mm512_setr_epi64(0, 2, 4, 6, 8, 10, 12, 14);
  const __m512i o1 = _mm512_set1_epi32(1), ow_ = _mm512_set1_epi32(static_cast<int>(w)),
                ow1 = _mm512_set1_epi32(static_cast<int>(w + 1));
  const __m512 one = _mm512_set1_ps(1.0f);
  for (index_t q = 0; q < ow; q += 16) {
    const index_t n = ow - q < 16 ? ow - q : 16;
    const __mmask16 mo = lanes(n), m0 = lanes(2 * n), m1 = lanes(2 * n - 16);
    __m512 v = _mm512_maskz_loadu_ps(mo, dy + q);
    if (gate) {
      const __m512 g = _mm512_maskz_loadu_ps(mo, gate + q);
      const __mmask16 pos = _mm512_cmp_ps_mask(g, _mm512_setzero_ps(), _CMP_GT_OQ);
      v = _mm512_mul_ps(v, _mm512_maskz_mov_ps(pos, one));
    }
    const __m512i at = _mm512_add_epi64(_mm512_set1_epi64(base + 2 * q), lane2);
    const __m512i a0 = _mm512_maskz_loadu_epi64(__mmask8(mo & 0xff), am + q);
    const __m512i a1 = _mm512_maskz_loadu_epi64(__mmask8(mo >> 8), am + q + 8);
    const __m256i f0 = _mm512_cvtepi64_epi32(_mm512_sub_epi64(a0, at));
    const __m256i f1 =
        _mm512_cvtepi64_epi32(_mm512_sub_epi64(a1, _mm512_add_epi64(at, _mm512_set1_epi64(16))));
    const __m512i off = _mm512_inserti64x4(_mm512_castsi256_si512(f0), f1, 1);
    const __mmask16 k00 = _mm512_cmpeq_epi32_mask(off, _mm512_setzero_si512()),
                    k01 = _mm512_cmpeq_epi32_mask(off, o1), k10 = _mm512_cmpeq_epi32_mask(off, ow_),
                    k11 = _mm512_cmpeq_epi32_mask(off, ow1);
    // an argmax beyond 32-bit reach of its block narrows to anything: also compare the widths
    const __m512i a_lo = _mm512_cvtepi32_epi64(f0), a_hi = _mm512_cvtepi32_epi64(f1);
    const __mmask16 wide =
        __mmask16(_mm512_cmpneq_epi64_mask(a_lo, _mm512_sub_epi64(a0, at))) |
        __mmask16(__mmask16(_mm512_cmpneq_epi64_mask(
                      a_hi, _mm512_sub_epi64(a1, _mm512_add_epi64(at, _mm512_set1_epi64(16)))))
                  << 8);
    outside |= __mmask16(mo & (~(k00 | k01 | k10 | k11) | wide));
    const __m512 c00 = _mm512_maskz_mov_ps(k00, v);
    const __m512 c01 = _mm512_maskz_mov_ps(k01, v);
    const __m512 c10 = _mm512_maskz_mov_ps(k10, v);
    const __m512 c11 = _mm512_maskz_mov_ps(k11, v);
    _mm512_mask_storeu_ps(d0 + 2 * q, m0, _mm512_permutex2var_ps(c00, mix_lo, c01));
    _mm512_mask_storeu_ps(d0 + 2 * q + 16, m1, _mm512_permutex2var_ps(c00, mix_hi, c01));
    _mm512_mask_storeu_ps(d1 + 2 * q, m0, _mm512_permutex2var_ps(c10, mix_lo, c11));
    _mm512_mask_storeu_ps(d1 + 2 * q + 16, m1, _mm512_permutex2var_ps(c10, mix_hi, c11));
  }
  return outside == 0;
}

template <class T>
void max_cell(T* m, std::int64_t* am, const T* xr, index_t lo, index_t hi, index_t sw, index_t off,
              std::int64_t base) {
  max_cell_loop<T>(m, am, xr, lo, hi, sw, off, base);
}

}  // namespace
}  // namespace pool_avx512

const PoolRowKernels kPoolRowsAvx512 = {"avx512", &pool_avx512::max2x2_f32, &pool_avx512::max_cell<float>,
                                      &pool_avx512::max_cell<double>, &pool_avx512::unpool2x2_f32};

}  // namespace fastnn
