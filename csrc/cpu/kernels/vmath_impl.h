// Vector exp, sigmoid and tanh in float32, written once over a SIMD wrapper V and compiled per
// ISA (the recurrent gate kernels' nonlinearities). Accurate to a few ulp over the whole range
// (tests/test_rnn_kernels.py compares them with float64 on extremes, tiny, huge, inf and NaN).
//
// Included inside an ISA's namespace, after that file has defined its wrapper: a struct with
// `R` (the register type), `N` (lanes), and static load/store/set1/add/sub/mul/div/fma/min/max/
// abs/copysign/select_lt/pow2i. min(a, b) and max(a, b) return b when either is NaN (the x86
// rule), which the clamps below use to let NaN through. ScalarF is the one-lane wrapper: the
// generic build and every row's tail run the same algorithm with it.
//
// exp: Cody-Waite reduction x = n ln2 + r, |r| <= ln2/2, with ln2 split in two so n*ln2_hi is
// exact, a degree-7 polynomial for e^r (the published Cephes expf coefficients), then 2^n from
// the exponent bits. The input is clamped to [-87, 88] so 2^n stays a normal float.
// sigmoid = 1 / (1 + e^-x): e^-x overflows nowhere after the clamp, and for large negative x
// the quotient is e^x to within the division's rounding. The reciprocals go through V::rcp (a
// refined estimate where the ISA has a 14-bit one, else a division): their arguments are finite
// and normal, which the estimate needs.
// tanh: an odd Taylor polynomial through x^17 below |x| = 0.55 (where 1 - 2/(e^2x + 1) would
// cancel), above it 1 - 2/(e^2|x| + 1) with the sign put back; |x| is clamped to 9, where tanh
// already rounds to 1 in float.

#include "cpu/kernels/exp_poly_impl.h"

// The one-lane arithmetic shared by ScalarF and the float64 policy of rnn_rows_impl.h.
template <class T>
struct ScalarOf {
  using R = T;
  static constexpr int N = 1;
  static R load(const T* p) { return *p; }
  static void store(T* p, R v) { *p = v; }
  static void stream(T* p, R v) { *p = v; }
  static void fence() {}
  static R set1(T v) { return v; }
  static R add(R a, R b) { return a + b; }
  static R sub(R a, R b) { return a - b; }
  static R mul(R a, R b) { return a * b; }
  static R div(R a, R b) { return a / b; }
  static R rcp(R a) { return R(1) / a; }
  static R fma(R a, R b, R c) { return a * b + c; }
  static R min(R a, R b) { return a < b ? a : b; }
  static R max(R a, R b) { return a > b ? a : b; }
  static R select_lt(R a, R b, R x, R y) { return a < b ? x : y; }
};

struct ScalarF : ScalarOf<float> {
  static R abs(R a) { return a < 0.0f ? -a : a; }
  static R copysign(R mag, R sgn) {
    std::uint32_t m, s;
    std::memcpy(&m, &mag, 4);
    std::memcpy(&s, &sgn, 4);
    m = (m & 0x7fffffffu) | (s & 0x80000000u);
    float out;
    std::memcpy(&out, &m, 4);
    return out;
  }
  static R pow2i(R n) {  // n integral in [-126, 127]
    const std::uint32_t bits = static_cast<std::uint32_t>(static_cast<std::int32_t>(n) + 127) << 23;
    float out;
    std::memcpy(&out, &bits, 4);
    return out;
  }
};

template <class V>
static inline typename V::R v_exp(typename V::R x) {
  using R = typename V::R;
  x = V::max(V::set1(-87.0f), x);
  x = V::min(V::set1(88.0f), x);
  const R magic = V::set1(12582912.0f);  // 1.5 * 2^23: adding it rounds to an integer
  R n = V::sub(V::add(V::mul(x, V::set1(1.44269504088896341f)), magic), magic);
  R r = V::fma(n, V::set1(-0.693359375f), x);
  r = V::fma(n, V::set1(2.12194440e-4f), r);
  return V::mul(exp_poly_f32<V>(r), V::pow2i(n));
}

template <class V>
static inline typename V::R v_sigmoid(typename V::R x) {
  const typename V::R one = V::set1(1.0f);
  return V::rcp(V::add(one, v_exp<V>(V::sub(V::set1(0.0f), x))));
}

template <class V>
static inline typename V::R v_tanh(typename V::R x) {
  using R = typename V::R;
  const R a = V::abs(x);
  // small |x|: x + x^3 P(x^2)
  const R s = V::mul(x, x);
  R p = V::set1(5.90027440945586e-4f);
  p = V::fma(p, s, V::set1(-1.4558343870513183e-3f));
  p = V::fma(p, s, V::set1(3.592128036572481e-3f));
  p = V::fma(p, s, V::set1(-8.863235529902197e-3f));
  p = V::fma(p, s, V::set1(2.1869488536155203e-2f));
  p = V::fma(p, s, V::set1(-5.396825396825397e-2f));
  p = V::fma(p, s, V::set1(1.3333333333333333e-1f));
  p = V::fma(p, s, V::set1(-3.3333333333333333e-1f));
  const R small = V::fma(V::mul(p, s), x, x);
  // large |x|: 1 - 2 / (e^(2|x|) + 1)
  const R e = v_exp<V>(V::mul(V::min(V::set1(9.0f), a), V::set1(2.0f)));
  const R big = V::fma(V::set1(-2.0f), V::rcp(V::add(e, V::set1(1.0f))), V::set1(1.0f));
  return V::select_lt(a, V::set1(0.55f), small, V::copysign(big, x));
}
