// AVX2 build of the recurrent gate passes and their float32 sigmoid/tanh (compiled with AVX2 and
// FMA flags only in this file): 8 lanes, two vectors per block of 16 hidden units.
#include <immintrin.h>

#include <cmath>
#include <cstdint>
#include <cstring>

#include "common/activations.h"
#include "cpu/rnn.h"

namespace fastnn {
namespace rnn_avx2 {

struct VecF {
  using R = __m256;
  static constexpr int N = 8;
  static R load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, R v) { _mm256_storeu_ps(p, v); }
  // A store that bypasses the caches, for data read back much later (see rnn_avx512.cpp).
  static void stream(float* p, R v) {
    if ((reinterpret_cast<std::uintptr_t>(p) & 31) == 0) _mm256_stream_ps(p, v);
    else _mm256_storeu_ps(p, v);
  }
  static void fence() { _mm_sfence(); }
  static R set1(float v) { return _mm256_set1_ps(v); }
  static R add(R a, R b) { return _mm256_add_ps(a, b); }
  static R sub(R a, R b) { return _mm256_sub_ps(a, b); }
  static R mul(R a, R b) { return _mm256_mul_ps(a, b); }
  static R div(R a, R b) { return _mm256_div_ps(a, b); }
  // A true division: the 12-bit estimate would need two Newton steps to stay within a few ulp.
  static R rcp(R a) { return _mm256_div_ps(_mm256_set1_ps(1.0f), a); }
  static R fma(R a, R b, R c) { return _mm256_fmadd_ps(a, b, c); }
  static R min(R a, R b) { return _mm256_min_ps(a, b); }
  static R max(R a, R b) { return _mm256_max_ps(a, b); }
  static R abs(R a) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), a); }
  static R copysign(R mag, R sgn) {
    const R s = _mm256_set1_ps(-0.0f);
    return _mm256_or_ps(_mm256_andnot_ps(s, mag), _mm256_and_ps(s, sgn));
  }
  static R select_lt(R a, R b, R x, R y) {
    return _mm256_blendv_ps(y, x, _mm256_cmp_ps(a, b, _CMP_LT_OQ));
  }
  static R pow2i(R n) {
    const __m256i e = _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127));
    return _mm256_castsi256_ps(_mm256_slli_epi32(e, 23));
  }
};

#include "cpu/kernels/vmath_impl.h"
#include "cpu/kernels/rnn_rows_impl.h"

}  // namespace rnn_avx2

const RnnIsaRows kRnnRowsAvx2 = {"avx2", rnn_avx2::make_rnn_rows<float>(),
                                 rnn_avx2::make_rnn_rows<double>()};

}  // namespace fastnn
