// e^r on the reduced range |r| <= ln2/2, the polynomial half of the vector exps (the caller does
// the reduction x = n ln2 + r and applies 2^n its own way). Written once over a SIMD wrapper V
// (static set1/add/mul/fma over register type R) and compiled into each ISA file that includes
// it; internal linkage, so each ISA's copy stays in its own file.
//
// float: Cephes' expf minimax coefficients, 1 + r + r^2 P(r) with P of degree 5.
// double: the Taylor series through r^13 (its remainder is below half an ulp on this range).

template <class V, class R>
static inline R exp_poly_f32(R r) {
  R p = V::set1(1.9875691500e-4f);
  p = V::fma(p, r, V::set1(1.3981999507e-3f));
  p = V::fma(p, r, V::set1(8.3334519073e-3f));
  p = V::fma(p, r, V::set1(4.1665795894e-2f));
  p = V::fma(p, r, V::set1(1.6666665459e-1f));
  p = V::fma(p, r, V::set1(5.0000001201e-1f));
  return V::fma(p, V::mul(r, r), V::add(r, V::set1(1.0f)));
}

template <class V, class R>
static inline R exp_poly_f64(R r) {
  R p = V::set1(1.0 / 6227020800.0);  // 1/13!
  p = V::fma(p, r, V::set1(1.0 / 479001600.0));
  p = V::fma(p, r, V::set1(1.0 / 39916800.0));
  p = V::fma(p, r, V::set1(1.0 / 3628800.0));
  p = V::fma(p, r, V::set1(1.0 / 362880.0));
  p = V::fma(p, r, V::set1(1.0 / 40320.0));
  p = V::fma(p, r, V::set1(1.0 / 5040.0));
  p = V::fma(p, r, V::set1(1.0 / 720.0));
  p = V::fma(p, r, V::set1(1.0 / 120.0));
  p = V::fma(p, r, V::set1(1.0 / 24.0));
  p = V::fma(p, r, V::set1(1.0 / 6.0));
  p = V::fma(p, r, V::set1(0.5));
  p = V::fma(p, r, V::set1(1.0));
  return V::fma(p, r, V::set1(1.0));
}
