// One parameter element's optimizer update, shared by the CPU kernels and a CUDA port. Scalar
// coefficients (bias corrections and the like) are computed once per step by the caller and
// passed in, so the per-element work is a handful of multiply-adds, one sqrt and one divide.
#pragma once
#include <math.h>

#include "common/hd.h"

namespace fastnn {
namespace optim {

FASTNN_HD float m_sqrt(float x) { return sqrtf(x); }
FASTNN_HD double m_sqrt(double x) { return sqrt(x); }

// How weight decay enters an update.
enum Decay : int { kNoDecay = 0, kL2 = 1, kDecoupled = 2 };

// SGD in PyTorch's formulation: g += wd*p; v = mu*v + g; step along v, or g + mu*v (Nesterov).
template <class T, bool MOMENTUM, bool NESTEROV, bool WD>
FASTNN_HD void sgd(T& p, T& v, T g, T lr, T mu, T wd) {
  if (WD) g += wd * p;
  if (MOMENTUM) {
    v = mu * v + g;
    g = NESTEROV ? g + mu * v : v;
  }
  p -= lr * g;
}

// Adam as Keras writes it: alpha = lr * sqrt(1 - b2^t) / (1 - b1^t) is computed once per step
// by the caller, and eps is added to sqrt(v) itself (the paper's "epsilon hat"). L2 adds wd*p
// to the gradient (Adam's weight_decay in PyTorch); decoupled shrinks p by lr*wd before the
// step (AdamW).
template <class T, int DECAY>
FASTNN_HD void adam(T& p, T& m, T& v, T g, T alpha, T b1, T c1, T b2, T c2, T eps, T decay) {
  if (DECAY == kL2) g += decay * p;
  if (DECAY == kDecoupled) p -= decay * p;
  m = b1 * m + c1 * g;  // c1 = 1 - b1, c2 = 1 - b2: rounded once, in double, by the caller
  v = b2 * v + c2 * g * g;
  p -= alpha * m / (m_sqrt(v) + eps);
}

// RMSprop as Keras writes it: sq = rho*sq + (1-rho)*g^2; inc = lr*g / sqrt(sq + eps);
// with momentum, vel = mu*vel + inc and p -= vel; else p -= inc.
template <class T, bool MOMENTUM>
FASTNN_HD void rmsprop(T& p, T& sq, T& vel, T g, T lr, T rho, T c_rho, T eps, T mu) {
  sq = rho * sq + c_rho * g * g;  // c_rho = 1 - rho
  T inc = lr * g / m_sqrt(sq + eps);
  if (MOMENTUM) {
    vel = mu * vel + inc;
    inc = vel;
  }
  p -= inc;
}

}  // namespace optim
}  // namespace fastnn
