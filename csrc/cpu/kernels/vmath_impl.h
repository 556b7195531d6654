// Vector exp, sigmoid and tanh in float32, written once over a SIMD wrapper V and compiled per
// ISA (the recurrent gate kernels' nonlinearities). Accurate to a few ulp over the whole range
// (tests/test_rnn_kernels.py compares them with float64 on extremes, tiny, huge, inf and NaN).
//
// Included inside an ISA's namespace, after that file has defined its wrapper: a struct with
// `R` (the register type), `N` (lanes), and static load/store/set1/add/sub/mul/div/fma/min/max/
// abs/copysign/select_lt/pow2i/square_err (x*x - hi exactly). min(a, b) and max(a, b) return b when either is NaN (the x86
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
  // x*x - hi exactly (hi = x*x rounded) without a fused multiply-add: Dekker's split of x into
  // 12-bit halves, whose products are all exact.
  static R square_err(R x, R hi) {
    std::uint32_t bits;
    std::memcpy(&bits, &x, 4);
    bits &= 0xfffff000u;
    float xh;
    std::memcpy(&xh, &bits, 4);
    const float xl = x - xh;
    return ((xh * xh - hi) + 2.0f * xh * xl) + xl * xl;
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

// GELU(x) = x Phi(x) and GELU'(x) = Phi(x) + x phi(x), Phi and phi the standard normal CDF and
// density, to a few ulp over the whole float range (tests/test_gelu_accuracy.py). The textbook
// 0.5 x (1 + erf(x / sqrt2)) cancels in the negative tail, where Phi is tiny; here the tail is
// computed directly:
//   |x| < 1:  Phi(x) = 1/2 + x Q(x^2), Q of degree 5 (relative error 7e-10 against
//             erf(x / sqrt2) / (2x));
//   |x| >= 1: Phi(-|x|) = erfc(a) / 2 = e^(-x^2/2) F(t) / 2, a = |x| / sqrt2, t = 1 / (1 + a/2),
//             F of degree 9 in t (relative error 9e-10 against the scaled erfc e^(a^2) erfc(a)
//             for a in [0.7, 9.5]); Phi(|x|) = 1 - Phi(-|x|).
// Both polynomials were fitted for this file by least squares reweighted toward the minimax
// relative error. The Gaussian is taken of x^2 = hi + lo split exactly (square_err), so the
// tail keeps its relative precision, and as its square root g = e^(-x^2/4) applied twice: the
// tail results are g (g rest), so neither e^(-x^2/2) nor Phi(x) (subnormal from x = -13.1 on,
// and flushed under DenormalGuard) is ever an intermediate of a normal result. Past x^2/4 = 87
// (|x| > 18.6) g is 0. NaN stays NaN; GELU(-inf) and GELU'(+-inf) are NaN (inf * 0), as the
// float64 reference gives.
template <class V>
struct NormalParts {
  typename V::R phi_small;  // Phi(x), valid for |x| < 1
  typename V::R g;          // e^(-x^2/4)
  typename V::R hf;         // Phi(-|x|) / g^2, negated where x >= 0
  typename V::R base;       // 0 where x < 0, else 1
};

template <class V>
static inline NormalParts<V> v_normal_parts(typename V::R x) {
  using R = typename V::R;
  NormalParts<V> n;
  const R s = V::mul(x, x);
  const R slo = V::square_err(x, s);
  R q = V::set1(-7.654239238896727e-06f);
  q = V::fma(q, s, V::set1(1.134864336499105e-04f));
  q = V::fma(q, s, V::set1(-1.1863299793341748e-03f));
  q = V::fma(q, s, V::set1(9.973323415652735e-03f));
  q = V::fma(q, s, V::set1(-6.649035992287114e-02f));
  q = V::fma(q, s, V::set1(3.989422801175768e-01f));
  n.phi_small = V::fma(x, q, V::set1(0.5f));
  const R a = V::mul(V::abs(x), V::set1(0.70710678118654752f));
  const R t = V::div(V::set1(1.0f), V::fma(a, V::set1(0.5f), V::set1(1.0f)));
  R f = V::set1(-7.414947015271546e-02f);
  f = V::fma(f, t, V::set1(3.508034065694276e-01f));
  f = V::fma(f, t, V::set1(-6.1129650651467e-01f));
  f = V::fma(f, t, V::set1(4.078115009572578e-01f));
  f = V::fma(f, t, V::set1(-1.0971473334288327e-01f));
  f = V::fma(f, t, V::set1(2.363543539220042e-01f));
  f = V::fma(f, t, V::set1(2.3450417455829564e-01f));
  f = V::fma(f, t, V::set1(2.8370636296276086e-01f));
  f = V::fma(f, t, V::set1(2.8197338089263324e-01f));
  f = V::fma(f, t, V::set1(4.0084468387712755e-06f));
  const R h = V::mul(V::set1(-0.25f), s);  // -x^2/4, exact
  R g = v_exp<V>(h);
  g = V::mul(g, V::fma(V::set1(-0.25f), slo, V::set1(1.0f)));  // e^(-lo/4) ~ 1 - lo/4
  n.g = V::select_lt(h, V::set1(-87.0f), V::set1(0.0f), g);
  const R zero = V::set1(0.0f);
  n.hf = V::mul(V::select_lt(x, zero, V::set1(0.5f), V::set1(-0.5f)), f);
  n.base = V::select_lt(x, zero, zero, V::set1(1.0f));
  return n;
}

template <class V>
static inline typename V::R v_gelu(typename V::R x) {
  using R = typename V::R;
  const NormalParts<V> n = v_normal_parts<V>(x);
  // x Phi(-|x|) with x capped at 14 (where Phi rounds to 1): +inf gives 0 there, not NaN.
  const R xt = V::mul(V::mul(V::mul(V::min(V::set1(14.0f), x), n.g), n.hf), n.g);
  const R big = V::add(xt, V::mul(n.base, x));
  return V::select_lt(V::abs(x), V::set1(1.0f), V::mul(x, n.phi_small), big);
}

template <class V>
static inline typename V::R v_gelu_grad(typename V::R x) {
  using R = typename V::R;
  const NormalParts<V> n = v_normal_parts<V>(x);
  const R c = V::set1(0.39894228040143268f);  // 1 / sqrt(2 pi)
  const R small = V::fma(x, V::mul(V::mul(n.g, n.g), c), n.phi_small);
  const R big = V::fma(n.g, V::mul(n.g, V::fma(x, c, n.hf)), n.base);
  return V::select_lt(V::abs(x), V::set1(1.0f), small, big);
}
