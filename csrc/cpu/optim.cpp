#include "cpu/optim.h"

#include <cmath>
#include <vector>

#include "common/fpenv.h"
#include "common/parallel.h"
#include "common/optim_math.h"
#include "common/threading.h"
#include "cpu/nn_dispatch.h"

namespace fastnn {
namespace {

// An update streams 4-7 arrays and costs ~1-2 ns per 16 elements with AVX-512: a second thread
// (a fork/join of a few microseconds, far more on a busy machine) pays off from ~256K elements.
constexpr double kUpdateWork = 0.25;

// Runs body(lo, hi) over [0, n) in about four blocks a thread (a worker that starts late still
// finds some); the pool flushes denormals in each (MXCSR is per-thread state).
template <class F>
void for_blocks(index_t n, double work_per_elem, F&& body) {
  const int nt = threads_for(double(n) * work_per_elem);
  if (nt <= 1) {
    DenormalGuard guard;
    body(index_t(0), n);
    return;
  }
  // Block edges on multiples of 64 elements: whole cache lines and vectors per block.
  const index_t per = ((n + 4 * nt - 1) / (4 * nt) + 63) / 64 * 64;
  parallel_range(n, per, nt, body);
}

// Sums body(lo, hi) over fixed blocks, added in block order: the same result for any thread
// count.
constexpr index_t kSumBlock = 1 << 15;

template <class F>
void sum_blocks(index_t n, int parts, double* out, F&& body) {
  const index_t blocks = (n + kSumBlock - 1) / kSumBlock;
  for (int k = 0; k < parts; ++k) out[k] = 0.0;
  if (blocks == 0) return;
  if (blocks == 1) {
    DenormalGuard guard;
    body(index_t(0), n, out);
    return;
  }
  std::vector<double> part(static_cast<std::size_t>(blocks * parts), 0.0);
  const int nt = threads_for(double(n) * kUpdateWork);
  parallel_for(blocks, nt, [&](index_t b, int) {
    const index_t lo = b * kSumBlock, hi = lo + kSumBlock < n ? lo + kSumBlock : n;
    body(lo, hi, part.data() + b * parts);
  });
  for (index_t b = 0; b < blocks; ++b)
    for (int k = 0; k < parts; ++k) out[k] += part[static_cast<std::size_t>(b * parts + k)];
}

}  // namespace

template <class T>
void sgd_update(T* param, T* velocity, const T* grad, index_t n, double lr, double momentum,
                bool nesterov, double weight_decay) {
  const NnLoops<T>& k = nn_loops_for<T>();
  int variant = 0;
  if (momentum != 0.0 && velocity) variant |= kSgdMomentum | (nesterov ? kSgdNesterov : 0);
  if (weight_decay != 0.0) variant |= kSgdDecay;
  const T tlr = T(lr), mu = T(momentum), wd = T(weight_decay);
  for_blocks(n, kUpdateWork, [&](index_t lo, index_t hi) {
    k.sgd(param, velocity, grad, lo, hi, tlr, mu, wd, variant);
  });
}

template <class T>
void adam_update(T* param, T* m, T* v, const T* grad, index_t n, double lr, double beta1,
                 double beta2, double eps, std::int64_t step, double weight_decay,
                 bool decoupled) {
  const NnLoops<T>& k = nn_loops_for<T>();
  // Bias corrections in double: 1 - beta2^t keeps few digits in float for beta2 near 1.
  const double t = double(step);
  const double alpha = lr * std::sqrt(1.0 - std::pow(beta2, t)) / (1.0 - std::pow(beta1, t));
  const int mode = weight_decay == 0.0 ? optim::kNoDecay
                   : decoupled          ? optim::kDecoupled
                                        : optim::kL2;
  const T decay = T(mode == optim::kDecoupled ? lr * weight_decay : weight_decay);
  const T a = T(alpha), b1 = T(beta1), c1 = T(1.0 - beta1), b2 = T(beta2), c2 = T(1.0 - beta2);
  const T e = T(eps);
  for_blocks(n, kUpdateWork, [&](index_t lo, index_t hi) {
    k.adam(param, m, v, grad, lo, hi, a, b1, c1, b2, c2, e, decay, mode);
  });
}

template <class T>
void rmsprop_update(T* param, T* sq, T* velocity, const T* grad, index_t n, double lr,
                    double rho, double eps, double momentum) {
  const NnLoops<T>& k = nn_loops_for<T>();
  const bool mom = momentum != 0.0 && velocity;
  const T tlr = T(lr), r = T(rho), cr = T(1.0 - rho), e = T(eps), mu = T(momentum);
  for_blocks(n, kUpdateWork, [&](index_t lo, index_t hi) {
    k.rmsprop(param, sq, velocity, grad, lo, hi, tlr, r, cr, e, mu, mom);
  });
}

template <class T>
double sum_squares(const T* x, index_t n) {
  const NnLoops<T>& k = nn_loops_for<T>();
  double s = 0.0;
  sum_blocks(n, 1, &s, [&](index_t lo, index_t hi, double* out) {
    out[0] = k.sum_squares(x, lo, hi);
  });
  return s;
}

template <class T>
double regularizer_value(const T* w, index_t n, double l1, double l2) {
  const NnLoops<T>& k = nn_loops_for<T>();
  double s[2];
  sum_blocks(n, 2, s, [&](index_t lo, index_t hi, double* out) {
    k.abs_square_sums(w, lo, hi, out);
  });
  return l1 * s[0] + l2 * s[1];
}

template <class T>
void regularizer_add_grad(T* grad, const T* w, index_t n, double l1, double l2) {
  const NnLoops<T>& k = nn_loops_for<T>();
  const T a = T(l1), b = T(2.0 * l2);
  for_blocks(n, kUpdateWork, [&](index_t lo, index_t hi) { k.reg_grad(grad, w, lo, hi, a, b); });
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
