// AVX-512 build of the recurrent gate passes and their float32 sigmoid/tanh (compiled with
// AVX-512 flags only in this file): 16 lanes, so one vector per block of 16 hidden units.
#include <immintrin.h>

// GCC 12's _mm512 conversions pass an intentionally undefined vector internally, which
// -Wmaybe-uninitialized reports as a false positive once inlined here.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include <cmath>
#include <cstdint>
#include <cstring>

#include "common/activations.h"
#include "cpu/rnn.h"

namespace fastnn {
namespace rnn_avx512 {

struct VecF {
  using R = __m512;
  static constexpr int N = 16;
  static R load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, R v) { _mm512_storeu_ps(p, v); }
  // A store that bypasses the caches (whole aligned lines only), for data read back much later:
  // the saved gates, which would otherwise evict the step's weights from L2.
  static void stream(float* p, R v) {
    if ((reinterpret_cast<std::uintptr_t>(p) & 63) == 0) _mm512_stream_ps(p, v);
    else _mm512_storeu_ps(p, v);
  }
  static void fence() { _mm_sfence(); }  // orders the streamed stores before the job ends
  static R set1(float v) { return _mm512_set1_ps(v); }
  static R add(R a, R b) { return _mm512_add_ps(a, b); }
  static R sub(R a, R b) { return _mm512_sub_ps(a, b); }
  static R mul(R a, R b) { return _mm512_mul_ps(a, b); }
  static R div(R a, R b) { return _mm512_div_ps(a, b); }
  // 1/a as the 14-bit estimate and one Newton step (relative error ~2^-28 before rounding), for
  // a finite, normal a: a quarter of a division's cost, which dominated the gate passes.
  static R rcp(R a) {
    const R r = _mm512_rcp14_ps(a);
    return _mm512_fmadd_ps(r, _mm512_fnmadd_ps(a, r, _mm512_set1_ps(1.0f)), r);
  }
  static R fma(R a, R b, R c) { return _mm512_fmadd_ps(a, b, c); }
  static R min(R a, R b) { return _mm512_min_ps(a, b); }
  static R max(R a, R b) { return _mm512_max_ps(a, b); }
  static R abs(R a) { return _mm512_abs_ps(a); }
  static R copysign(R mag, R sgn) {
    const __m512i m = _mm512_set1_epi32(0x7fffffff);
    // m ? mag : sgn, bit by bit (truth table 0xCA)
    return _mm512_castsi512_ps(_mm512_ternarylogic_epi32(m, _mm512_castps_si512(mag),
                                                         _mm512_castps_si512(sgn), 0xCA));
  }
  static R select_lt(R a, R b, R x, R y) {
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(a, b, _CMP_LT_OQ), y, x);
  }
  static R pow2i(R n) {
    const __m512i e = _mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127));
    return _mm512_castsi512_ps(_mm512_slli_epi32(e, 23));
  }
};

#include "cpu/kernels/vmath_impl.h"
#include "cpu/kernels/rnn_rows_impl.h"

}  // namespace rnn_avx512

const RnnIsaRows kRnnRowsAvx512 = {"avx512", rnn_avx512::make_rnn_rows<float>(),
                                   rnn_avx512::make_rnn_rows<double>()};

}  // namespace fastnn
