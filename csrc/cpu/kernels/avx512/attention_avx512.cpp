// AVX-512 attention tile kernels (compiled with AVX-512 flags only in this file; chosen at run
// time). Register tile 6 rows x 4 vectors: 24 accumulators, 4 vectors of B and a broadcast
// fit the 32 zmm registers, and each k step issues 24 FMAs for 10 loads.
//
// exp: x = n ln2 + r with n = round(x / ln2), |r| <= ln2/2, exp(r) by a polynomial (Cephes'
// degree-6 minimax for float, the Taylor series to r^13 for double), and 2^n applied by
// vscalefps/pd, which needs no integer exponent arithmetic and saturates cleanly. Inputs below
// the underflow bound (-inf included: a masked score) give exactly 0; NaN stays NaN.
#include <immintrin.h>

// GCC 12's _mm512_reduce_* and _mm512_roundscale_* pass an intentionally undefined vector
// internally, which -W(maybe-)uninitialized reports as a false positive once inlined here.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

#include <cmath>
#include <limits>

#include "cpu/attention.h"

namespace fastnn {
namespace attn_avx512 {

#include "cpu/kernels/exp_poly_impl.h"

struct VF {
  using T = float;
  using Reg = __m512;
  static constexpr int W = 16, RM = 6, NV = 4;
  static Reg zero() { return _mm512_setzero_ps(); }
  static Reg set1(T x) { return _mm512_set1_ps(x); }
  static Reg load(const T* p) { return _mm512_loadu_ps(p); }
  static Reg loadn(const T* p, int n) {
    return _mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << n) - 1u), p);
  }
  static void store(T* p, Reg x) { _mm512_storeu_ps(p, x); }
  static Reg bcast(const T* p) { return _mm512_set1_ps(*p); }
  static Reg fma(Reg a, Reg b, Reg c) { return _mm512_fmadd_ps(a, b, c); }
  static Reg add(Reg a, Reg b) { return _mm512_add_ps(a, b); }
  static Reg sub(Reg a, Reg b) { return _mm512_sub_ps(a, b); }
  static Reg mul(Reg a, Reg b) { return _mm512_mul_ps(a, b); }
  static Reg max(Reg a, Reg b) { return _mm512_max_ps(a, b); }
  static T hsum(Reg a) { return _mm512_reduce_add_ps(a); }
  static Reg exp(Reg x) {
    const __mmask16 under = _mm512_cmp_ps_mask(x, set1(-87.33654f), _CMP_LT_OQ);
    x = _mm512_min_ps(set1(88.7f), x);  // min(hi, x) keeps a NaN x
    const Reg n = _mm512_roundscale_ps(mul(x, set1(1.44269504088896341f)),
                                       _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    Reg r = _mm512_fnmadd_ps(n, set1(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, set1(-2.12194440e-4f), r);
    const Reg y = exp_poly_f32<VF>(r);
    return _mm512_maskz_mov_ps(static_cast<__mmask16>(~under), _mm512_scalef_ps(y, n));
  }
};

struct VD {
  using T = double;
  using Reg = __m512d;
  static constexpr int W = 8, RM = 6, NV = 4;
  static Reg zero() { return _mm512_setzero_pd(); }
  static Reg set1(T x) { return _mm512_set1_pd(x); }
  static Reg load(const T* p) { return _mm512_loadu_pd(p); }
  static Reg loadn(const T* p, int n) {
    return _mm512_maskz_loadu_pd(static_cast<__mmask8>((1u << n) - 1u), p);
  }
  static void store(T* p, Reg x) { _mm512_storeu_pd(p, x); }
  static Reg bcast(const T* p) { return _mm512_set1_pd(*p); }
  static Reg fma(Reg a, Reg b, Reg c) { return _mm512_fmadd_pd(a, b, c); }
  static Reg add(Reg a, Reg b) { return _mm512_add_pd(a, b); }
  static Reg sub(Reg a, Reg b) { return _mm512_sub_pd(a, b); }
  static Reg mul(Reg a, Reg b) { return _mm512_mul_pd(a, b); }
  static Reg max(Reg a, Reg b) { return _mm512_max_pd(a, b); }
  static T hsum(Reg a) { return _mm512_reduce_add_pd(a); }
  static Reg exp(Reg x) {
    const __mmask8 under = _mm512_cmp_pd_mask(x, set1(-708.39), _CMP_LT_OQ);
    x = _mm512_min_pd(set1(709.78), x);
    const Reg n = _mm512_roundscale_pd(mul(x, set1(1.4426950408889634074)),
                                       _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    Reg r = _mm512_fnmadd_pd(n, set1(6.93145751953125e-1), x);
    r = _mm512_fnmadd_pd(n, set1(1.42860682030941723212e-6), r);
    const Reg p = exp_poly_f64<VD>(r);
    return _mm512_maskz_mov_pd(static_cast<__mmask8>(~under), _mm512_scalef_pd(p, n));
  }
};

#include "cpu/attention_tiles_impl.h"

}  // namespace attn_avx512

const AttnIsaKernels kAttnAvx512 = {"avx512", attn_avx512::make_attn_ops<attn_avx512::VF>(),
                                    attn_avx512::make_attn_ops<attn_avx512::VD>()};

}  // namespace fastnn
