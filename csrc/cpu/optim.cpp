#include "cpu/optim.h"

#include <cmath>
#include <vector>

#include "common/fpenv.h"
#include "common/loss_math.h"
#include "common/omp_compat.h"
#include "common/optim_math.h"
#include "common/threading.h"

namespace fastnn {
namespace {

// Updates stream 4-7 arrays through memory: a second thread pays off from about 64K elements.
constexpr double kElemWork = 8.0;

// Runs body(lo, hi) over [0, n) in one contiguous block per thread, each under its own
// denormal guard (MXCSR is per-thread state).
template <class F>
void for_blocks(index_t n, double work_per_elem, F&& body) {
  const int nt = threads_for(double(n) * work_per_elem);
  if (nt <= 1) {
    DenormalGuard guard;
    body(index_t(0), n);
    return;
  }
#pragma omp parallel num_threads(nt)
  {
    DenormalGuard guard;
    const int t = omp_get_thread_num(), nth = omp_get_num_threads();
    // Block edges on multiples of 16 elements keep each thread's vectors aligned alike.
    const index_t per = ((n + nth - 1) / nth + 15) / 16 * 16;
    const index_t lo = per * t < n ? per * t : n;
    const index_t hi = lo + per < n ? lo + per : n;
    body(lo, hi);
  }
}

// Sums body(lo, hi) over fixed blocks in a fixed order: the same result for any thread count.
constexpr index_t kSumBlock = 8192;

template <class F>
double sum_blocks(index_t n, F&& body) {
  const index_t blocks = (n + kSumBlock - 1) / kSumBlock;
  if (blocks == 0) return 0.0;
  std::vector<double> part;
  double one = 0.0;
  double* out = &one;
  if (blocks > 1) {
    part.assign(static_cast<std::size_t>(blocks), 0.0);
    out = part.data();
  }
  const int nt = blocks > 1 ? threads_for(double(n) * 2.0) : 1;
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    DenormalGuard guard;
#pragma omp for schedule(static)
    for (index_t b = 0; b < blocks; ++b) {
      const index_t lo = b * kSumBlock, hi = lo + kSumBlock < n ? lo + kSumBlock : n;
      out[b] = body(lo, hi);
    }
  }
  double s = 0.0;
  for (index_t b = 0; b < blocks; ++b) s += out[b];
  return s;
}

template <class T, bool MOM, bool NEST, bool WD>
void sgd_loop(T* p, T* v, const T* g, index_t lo, index_t hi, T lr, T mu, T wd) {
  T dummy = T(0);
  for (index_t i = lo; i < hi; ++i) optim::sgd<T, MOM, NEST, WD>(p[i], MOM ? v[i] : dummy, g[i],
                                                                lr, mu, wd);
}

template <class T, int DECAY>
void adam_loop(T* p, T* m, T* v, const T* g, index_t lo, index_t hi, T alpha, T b1, T b2, T eps,
               T decay) {
  for (index_t i = lo; i < hi; ++i)
    optim::adam<T, DECAY>(p[i], m[i], v[i], g[i], alpha, b1, b2, eps, decay);
}

template <class T, bool MOM>
void rmsprop_loop(T* p, T* sq, T* vel, const T* g, index_t lo, index_t hi, T lr, T rho, T eps,
                  T mu) {
  T dummy = T(0);
  for (index_t i = lo; i < hi; ++i)
    optim::rmsprop<T, MOM>(p[i], sq[i], MOM ? vel[i] : dummy, g[i], lr, rho, eps, mu);
}

}  // namespace

template <class T>
void sgd_update(T* param, T* velocity, const T* grad, index_t n, double lr, double momentum,
                bool nesterov, double weight_decay) {
  const T tlr = T(lr), mu = T(momentum), wd = T(weight_decay);
  const bool mom = momentum != 0.0 && velocity, dec = weight_decay != 0.0;
  for_blocks(n, kElemWork, [&](index_t lo, index_t hi) {
    if (mom) {
      if (nesterov) {
        if (dec) sgd_loop<T, true, true, true>(param, velocity, grad, lo, hi, tlr, mu, wd);
        else sgd_loop<T, true, true, false>(param, velocity, grad, lo, hi, tlr, mu, wd);
      } else {
        if (dec) sgd_loop<T, true, false, true>(param, velocity, grad, lo, hi, tlr, mu, wd);
        else sgd_loop<T, true, false, false>(param, velocity, grad, lo, hi, tlr, mu, wd);
      }
    } else {
      if (dec) sgd_loop<T, false, false, true>(param, velocity, grad, lo, hi, tlr, mu, wd);
      else sgd_loop<T, false, false, false>(param, velocity, grad, lo, hi, tlr, mu, wd);
    }
  });
}

template <class T>
void adam_update(T* param, T* m, T* v, const T* grad, index_t n, double lr, double beta1,
                 double beta2, double eps, std::int64_t step, double weight_decay,
                 bool decoupled) {
  // Bias corrections in double: 1 - beta^t loses every digit in float for beta2 near 1.
  const double t = double(step);
  const double alpha = lr * std::sqrt(1.0 - std::pow(beta2, t)) / (1.0 - std::pow(beta1, t));
  const T a = T(alpha), b1 = T(beta1), b2 = T(beta2), e = T(eps);
  const int mode = weight_decay == 0.0 ? optim::kNoDecay
                   : decoupled          ? optim::kDecoupled
                                        : optim::kL2;
  const T decay = T(mode == optim::kDecoupled ? lr * weight_decay : weight_decay);
  for_blocks(n, kElemWork, [&](index_t lo, index_t hi) {
    switch (mode) {
      case optim::kL2:
        return adam_loop<T, optim::kL2>(param, m, v, grad, lo, hi, a, b1, b2, e, decay);
      case optim::kDecoupled:
        return adam_loop<T, optim::kDecoupled>(param, m, v, grad, lo, hi, a, b1, b2, e, decay);
      default:
        return adam_loop<T, optim::kNoDecay>(param, m, v, grad, lo, hi, a, b1, b2, e, decay);
    }
  });
}

template <class T>
void rmsprop_update(T* param, T* sq, T* velocity, const T* grad, index_t n, double lr,
                    double rho, double eps, double momentum) {
  const T tlr = T(lr), r = T(rho), e = T(eps), mu = T(momentum);
  const bool mom = momentum != 0.0 && velocity;
  for_blocks(n, kElemWork, [&](index_t lo, index_t hi) {
    if (mom) rmsprop_loop<T, true>(param, sq, velocity, grad, lo, hi, tlr, r, e, mu);
    else rmsprop_loop<T, false>(param, sq, velocity, grad, lo, hi, tlr, r, e, mu);
  });
}

template <class T>
double sum_squares(const T* x, index_t n) {
  return sum_blocks(n, [&](index_t lo, index_t hi) {
    double s = 0.0;
    for (index_t i = lo; i < hi; ++i) s += double(x[i]) * double(x[i]);
    return s;
  });
}

template <class T>
double regularizer_value(const T* w, index_t n, double l1, double l2) {
  return sum_blocks(n, [&](index_t lo, index_t hi) {
    double a = 0.0, q = 0.0;
    for (index_t i = lo; i < hi; ++i) {
      const double x = double(w[i]);
      a += std::fabs(x);
      q += x * x;
    }
    return l1 * a + l2 * q;
  });
}

template <class T>
void regularizer_add_grad(T* grad, const T* w, index_t n, double l1, double l2) {
  const T a = T(l1), b = T(2.0 * l2);
  for_blocks(n, 3.0, [&](index_t lo, index_t hi) {
    if (l1 != 0.0) {
      for (index_t i = lo; i < hi; ++i) grad[i] += a * lmath::sign0(w[i]) + b * w[i];
    } else {
      for (index_t i = lo; i < hi; ++i) grad[i] += b * w[i];
    }
  });
}

#define FASTNN_OPTIM(T)                                                                        \
  template void sgd_update<T>(T*, T*, const T*, index_t, double, double, bool, double);        \
  template void adam_update<T>(T*, T*, T*, const T*, index_t, double, double, double, double,  \
                               std::int64_t, double, bool);                                    \
  template void rmsprop_update<T>(T*, T*, T*, const T*, index_t, double, double, double,       \
                                  double);                                                     \
  template double sum_squares<T>(const T*, index_t);                                           \
  template double regularizer_value<T>(const T*, index_t, double, double);                     \
  template void regularizer_add_grad<T>(T*, const T*, index_t, double, double);
FASTNN_OPTIM(float)
FASTNN_OPTIM(double)
#undef FASTNN_OPTIM

}  // namespace fastnn
