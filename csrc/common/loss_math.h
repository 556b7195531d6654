// Per-element loss math shared by the CPU kernels and a CUDA port: every formula here is the
// numerically stable form (no exp of a positive number, no log of zero).
#pragma once
#include <math.h>

#include "common/activations.h"
#include "common/hd.h"

namespace fastnn {
namespace lmath {

FASTNN_HD float m_log(float x) { return logf(x); }
FASTNN_HD double m_log(double x) { return log(x); }
FASTNN_HD float m_log1p(float x) { return log1pf(x); }
FASTNN_HD double m_log1p(double x) { return log1p(x); }
FASTNN_HD float m_abs(float x) { return fabsf(x); }
FASTNN_HD double m_abs(double x) { return fabs(x); }

// The largest of x[0..n); n >= 1.
template <class T>
FASTNN_HD T row_max(const T* x, long long n) {
  T m = x[0];
  for (long long j = 1; j < n; ++j) m = x[j] > m ? x[j] : m;
  return m;
}

// Log-sum-exp of a row, stable for any finite input: subtracting the row maximum keeps every exp
// argument <= 0. Also returns the sum of exp(x - max) in s and, when e is non-null, the exps.
template <class T>
FASTNN_HD T row_lse(T* e, T& s, const T* x, long long n) {
  T m = row_max(x, n);
  s = T(0);
  if (e) {
    for (long long j = 0; j < n; ++j) {
      e[j] = act::m_exp(x[j] - m);
      s += e[j];
    }
  } else {
    for (long long j = 0; j < n; ++j) s += act::m_exp(x[j] - m);
  }
  return m + m_log(s);
}

// Binary cross-entropy of a logit z against target t: max(z, 0) - z*t + log(1 + exp(-|z|)).
// Equal to -(t log s + (1-t) log(1-s)) with s = sigmoid(z), without ever forming log(0).
template <class T>
FASTNN_HD T bce_logits(T z, T t) {
  T pos = z > T(0) ? z : T(0);
  return pos - z * t + m_log1p(act::m_exp(-m_abs(z)));
}

// Its derivative with respect to z.
template <class T>
FASTNN_HD T bce_logits_grad(T z, T t) {
  return act::sigmoid(z) - t;
}

// Clip a probability into [eps, 1 - eps] (Keras); NaN stays NaN.
template <class T>
FASTNN_HD T clip_prob(T p, T eps) {
  return p < eps ? eps : (p > T(1) - eps ? T(1) - eps : p);
}

// 1 where the clip passed p through (the gradient flows), 0 where it clamped it.
template <class T>
FASTNN_HD T clip_pass(T p, T eps) {
  return (p >= eps && p <= T(1) - eps) ? T(1) : T(0);
}

// Binary cross-entropy of a clipped probability, and its derivative with respect to p.
template <class T>
FASTNN_HD T bce_prob(T p, T t, T eps) {
  T c = clip_prob(p, eps);
  return -(t * m_log(c) + (T(1) - t) * m_log(T(1) - c));
}

template <class T>
FASTNN_HD T bce_prob_grad(T p, T t, T eps) {
  T c = clip_prob(p, eps);
  return clip_pass(p, eps) * (c - t) / (c * (T(1) - c));
}

// sign(x) with sign(0) = 0 (the subgradient of |x| the losses and L1 use); NaN gives NaN.
template <class T>
FASTNN_HD T sign0(T x) {
  return x > T(0) ? T(1) : (x < T(0) ? T(-1) : x * T(0));
}

}  // namespace lmath
}  // namespace fastnn
