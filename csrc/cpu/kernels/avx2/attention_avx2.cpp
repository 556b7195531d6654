// AVX2 attention tile kernels (compiled with AVX2+FMA flags only in this file; chosen at run
// time). Register tile 6 rows x 2 vectors: 12 accumulators, 2 vectors of B and a broadcast in
// the 16 ymm registers.
//
// exp as in the AVX-512 file, with 2^n built in the exponent field (n + bias) << mantissa bits:
// the clamp keeps n inside the normal range (inputs above 88 / 709 saturate there; softmax only
// ever takes exp of x <= 0). Inputs below the underflow bound (-inf included)
// give exactly 0; NaN stays NaN.
#include <immintrin.h>

#include <cmath>
#include <limits>

#include "cpu/attention.h"

namespace fastnn {
namespace attn_avx2 {

#include "cpu/kernels/exp_poly_impl.h"

struct VF {
  using T = float;
  using Reg = __m256;
  static constexpr int W = 8, RM = 6, NV = 2;
  static Reg zero() { return _mm256_setzero_ps(); }
  static Reg set1(T x) { return _mm256_set1_ps(x); }
  static Reg load(const T* p) { return _mm256_loadu_ps(p); }
  static Reg loadn(const T* p, int n) {
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_maskload_ps(p, _mm256_cmpgt_epi32(_mm256_set1_epi32(n), lane));
  }
  static void store(T* p, Reg x) { _mm256_storeu_ps(p, x); }
  static Reg bcast(const T* p) { return _mm256_broadcast_ss(p); }
  static Reg fma(Reg a, Reg b, Reg c) { return _mm256_fmadd_ps(a, b, c); }
  static Reg add(Reg a, Reg b) { return _mm256_add_ps(a, b); }
  static Reg sub(Reg a, Reg b) { return _mm256_sub_ps(a, b); }
  static Reg mul(Reg a, Reg b) { return _mm256_mul_ps(a, b); }
  static Reg max(Reg a, Reg b) { return _mm256_max_ps(a, b); }
  static T hsum(Reg a) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  static Reg exp(Reg x) {
    const Reg under = _mm256_cmp_ps(x, set1(-87.33654f), _CMP_LT_OQ);
    x = _mm256_min_ps(set1(88.0f), x);  // n <= 127; min(hi, x) keeps a NaN x
    const Reg n = _mm256_round_ps(mul(x, set1(1.44269504088896341f)),
                                  _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    Reg r = _mm256_fnmadd_ps(n, set1(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, set1(-2.12194440e-4f), r);
    const Reg y = exp_poly_f32<VF>(r);
    const __m256i e = _mm256_slli_epi32(
        _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_andnot_ps(under, mul(y, _mm256_castsi256_ps(e)));
  }
};

struct VD {
  using T = double;
  using Reg = __m256d;
  static constexpr int W = 4, RM = 6, NV = 2;
  static Reg zero() { return _mm256_setzero_pd(); }
  static Reg set1(T x) { return _mm256_set1_pd(x); }
  static Reg load(const T* p) { return _mm256_loadu_pd(p); }
  static Reg loadn(const T* p, int n) {
    const __m256i lane = _mm256_setr_epi64x(0, 1, 2, 3);
    return _mm256_maskload_pd(p, _mm256_cmpgt_epi64(_mm256_set1_epi64x(n), lane));
  }
  static void store(T* p, Reg x) { _mm256_storeu_pd(p, x); }
  static Reg bcast(const T* p) { return _mm256_broadcast_sd(p); }
  static Reg fma(Reg a, Reg b, Reg c) { return _mm256_fmadd_pd(a, b, c); }
  static Reg add(Reg a, Reg b) { return _mm256_add_pd(a, b); }
  static Reg sub(Reg a, Reg b) { return _mm256_sub_pd(a, b); }
  static Reg mul(Reg a, Reg b) { return _mm256_mul_pd(a, b); }
  static Reg max(Reg a, Reg b) { return _mm256_max_pd(a, b); }
  static T hsum(Reg a) {
    __m128d s = _mm_add_pd(_mm256_castpd256_pd128(a), _mm256_extractf128_pd(a, 1));
    s = _mm_add_sd(s, _mm_unpackhi_pd(s, s));
    return _mm_cvtsd_f64(s);
  }
  static Reg exp(Reg x) {
    const Reg under = _mm256_cmp_pd(x, set1(-708.39), _CMP_LT_OQ);
    x = _mm256_min_pd(set1(709.0), x);  // n <= 1023: a normal 2^n
    const Reg n = _mm256_round_pd(mul(x, set1(1.4426950408889634074)),
                                  _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    Reg r = _mm256_fnmadd_pd(n, set1(6.93145751953125e-1), x);
    r = _mm256_fnmadd_pd(n, set1(1.42860682030941723212e-6), r);
    const Reg p = exp_poly_f64<VD>(r);
    const __m256i ni = _mm256_cvtepi32_epi64(_mm256_cvtpd_epi32(n));
    const __m256i e = _mm256_slli_epi64(_mm256_add_epi64(ni, _mm256_set1_epi64x(1023)), 52);
    return _mm256_andnot_pd(under, mul(p, _mm256_castsi256_pd(e)));
  }
};

#include "cpu/attention_tiles_impl.h"

}  // namespace attn_avx2

const AttnIsaKernels kAttnAvx2 = {"avx2", attn_avx2::make_attn_ops<attn_avx2::VF>(),
                                  attn_avx2::make_attn_ops<attn_avx2::VD>()};

}  // namespace fastnn
