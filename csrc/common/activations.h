// Activation functions and their derivatives, written once for the CPU kernels, the CUDA kernels
// and the fused GEMM epilogues, so that CPU tests exercise the very code a GPU runs.
#pragma once
#include <math.h>

#include "common/hd.h"

namespace fastnn {
namespace act {

// Keep in sync with fastnn/ops/_activations.py (ACTIVATIONS).
enum Kind : int {
  NONE = 0,
  RELU = 1,
  LEAKY_RELU = 2,  // param: negative slope
  SIGMOID = 3,
  TANH = 4,
  ELU = 5,         // param: alpha
  SELU = 6,
  GELU = 7,        // exact (erf) form, as PyTorch's default: x Phi(x), Phi the normal CDF
};

constexpr double kSeluAlpha = 1.6732632423543772848170429916717;
constexpr double kSeluScale = 1.0507009873554804934193349852946;
constexpr double kInvSqrt2 = 0.70710678118654752440084436210485;
constexpr double kInvSqrt2Pi = 0.39894228040143267793994605993438;

FASTNN_HD float m_exp(float x) { return expf(x); }
FASTNN_HD double m_exp(double x) { return exp(x); }
FASTNN_HD float m_expm1(float x) { return expm1f(x); }
FASTNN_HD double m_expm1(double x) { return expm1(x); }
FASTNN_HD float m_tanh(float x) { return tanhf(x); }
FASTNN_HD double m_tanh(double x) { return tanh(x); }
FASTNN_HD float m_erfc(float x) { return erfcf(x); }
FASTNN_HD double m_erfc(double x) { return erfc(x); }

// Sigmoid without overflow: exp is only ever taken of a non-positive number.
template <class T>
FASTNN_HD T sigmoid(T x) {
  if (x >= T(0)) return T(1) / (T(1) + m_exp(-x));
  T e = m_exp(x);
  return e / (T(1) + e);
}

// y = f(z). NaN propagates: comparisons with NaN are false, and every branch returns z-based math.
template <class T>
FASTNN_HD T forward(int kind, T z, T param) {
  switch (kind) {
    case RELU: return z > T(0) ? z : (z != z ? z : T(0));
    case LEAKY_RELU: return z > T(0) ? z : z * param;
    case SIGMOID: return sigmoid(z);
    case TANH: return m_tanh(z);
    case ELU: return z > T(0) ? z : param * m_expm1(z);
    case SELU: return z > T(0) ? T(kSeluScale) * z : T(kSeluScale * kSeluAlpha) * m_expm1(z);
    // Phi(z) = erfc(-z/sqrt2)/2: unlike (1 + erf(z/sqrt2))/2 it keeps its relative precision
    // in the negative tail.
    case GELU: return T(0.5) * z * m_erfc(-z * T(kInvSqrt2));
    default: return z;
  }
}

// dy/dz, given the pre-activation z and the output y = f(z). Each branch uses whichever of the
// two is cheaper; only GELU needs z (the others can be called with z == y).
template <class T>
FASTNN_HD T derivative(int kind, T z, T y, T param) {
  switch (kind) {
    case RELU: return y > T(0) ? T(1) : T(0);
    case LEAKY_RELU: return y > T(0) ? T(1) : param;
    case SIGMOID: return y * (T(1) - y);
    case TANH: return T(1) - y * y;
    case ELU: return y > T(0) ? T(1) : y + param;
    case SELU: return y > T(0) ? T(kSeluScale) : y + T(kSeluScale * kSeluAlpha);
    case GELU: {
      T cdf = T(0.5) * m_erfc(-z * T(kInvSqrt2));
      return cdf + z * T(kInvSqrt2Pi) * m_exp(T(-0.5) * z * z);
    }
    default: return T(1);
  }
}

// True when derivative() needs the pre-activation z (the forward must keep it).
FASTNN_HD bool needs_preactivation(int kind) { return kind == GELU; }

}  // namespace act
}  // namespace fastnn
