// RBM sampling math shared by the GEMM epilogue, the RBM kernels and the CUDA kernels.
//
// The uniform of element idx in sampling stage s is an odd multiple of 2^-24,
// (2 * (rng::bits(key, idx, s) >> 9) + 1) * 2^-24: exact in float and double, never 0 or 1, so a
// float32 and a float64 kernel compare it with their probability the same way and differ only
// where the probabilities themselves round differently. A Bernoulli sample is u < p.
#pragma once
#include <stdint.h>

#include "common/activations.h"
#include "common/hd.h"
#include "common/rng.h"

namespace fastnn {
namespace rbm {

// The second uniform of a Box-Muller pair uses stage ^ kGaussStream.
constexpr uint32_t kGaussStream = 0x80000000u;

FASTNN_HD uint32_t odd24(rng::Key k, uint32_t idx, uint32_t stage) {
  return ((rng::bits(k, idx, stage) >> 9) << 1) | 1u;
}

// Through int32: the value is below 2^24, and a signed conversion vectorizes on every ISA.
FASTNN_HD float uniform_f(rng::Key k, uint32_t idx, uint32_t stage) {
  return float(int32_t(odd24(k, idx, stage))) * (1.0f / 16777216.0f);
}
FASTNN_HD double uniform_d(rng::Key k, uint32_t idx, uint32_t stage) {
  return double(int32_t(odd24(k, idx, stage))) * (1.0 / 16777216.0);
}
// The uniform in T's precision (overloaded on a T argument: the value of `like` is unused).
FASTNN_HD float uniform_as(float, rng::Key k, uint32_t idx, uint32_t stage) {
  return uniform_f(k, idx, stage);
}
FASTNN_HD double uniform_as(double, rng::Key k, uint32_t idx, uint32_t stage) {
  return uniform_d(k, idx, stage);
}

template <class T>
FASTNN_HD T bernoulli(T p, rng::Key k, uint32_t idx, uint32_t stage) {
  return uniform_as(p, k, idx, stage) < p ? T(1) : T(0);
}

// Standard normal noise (Box-Muller), in double whatever T is.
FASTNN_HD double gaussian(rng::Key k, uint32_t idx, uint32_t stage) {
  const double u1 = uniform_d(k, idx, stage), u2 = uniform_d(k, idx, stage ^ kGaussStream);
  return sqrt(-2.0 * log(u1)) * cos(6.283185307179586476925286766559 * u2);
}

// exp(x) for x <= 0 without a library call, so that loops over it vectorize: x = n ln2 + f ln2
// with n = round(x / ln2), |f| <= 1/2, and 2^f from its degree-7 Taylor polynomial (relative
// error < 1e-8, below float's rounding); 2^n goes straight into the exponent bits. Inputs below
// -87 are clamped (the result, ~1.6e-38, is negligible next to the 1 it is added to).
FASTNN_HD float exp_nonpos(float x) {
  x = x < -87.0f ? -87.0f : x;
  const float t = x * 1.44269504088896341f;
  const int32_t n = int32_t(t - 0.5f);  // truncation toward zero of a negative: round(t)
  const float f = (t - float(n)) * 0.693147180559945309f;
  float p = 1.0f / 5040.0f;
  p = p * f + 1.0f / 720.0f;
  p = p * f + 1.0f / 120.0f;
  p = p * f + 1.0f / 24.0f;
  p = p * f + 1.0f / 6.0f;
  p = p * f + 0.5f;
  p = p * f + 1.0f;
  p = p * f + 1.0f;
  union { int32_t i; float f; } s;
  s.i = (n + 127) << 23;
  return p * s.f;
}

// The sigmoid an RBM epilogue applies: vectorizable for float (about 1 ulp), the exact
// activations.h one for double.
FASTNN_HD float sigmoid(float z) {
  const float az = z < 0.0f ? -z : z;
  const float e = exp_nonpos(-az);
  const float r = 1.0f / (1.0f + e);
  return z >= 0.0f ? r : e * r;
}
FASTNN_HD double sigmoid(double z) { return act::sigmoid(z); }

// log(1 + exp(x)) without overflow, in double.
FASTNN_HD double softplus(double x) {
  return (x > 0.0 ? x : 0.0) + log1p(exp(x > 0.0 ? -x : x));
}

}  // namespace rbm
}  // namespace fastnn
