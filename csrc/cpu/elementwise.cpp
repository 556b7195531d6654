#include "cpu/elementwise.h"

#include <type_traits>

#include "common/activations.h"
#include "common/cpuid.h"
#include "common/fpenv.h"
#include "common/parallel.h"
#include "common/threading.h"
#include "cpu/act_rows.h"

namespace fastnn {

const ActRows& act_rows() {
#if defined(FASTNN_HAVE_X86_KERNELS)
  switch (active_isa()) {
    case Isa::avx512: return kActRowsAvx512;
    case Isa::avx2: return kActRowsAvx2;
    default: break;
  }
#endif
  return kActRowsGeneric;
}

namespace {

// One loop per activation kind, so the compiler sees a branch-free body it can vectorize.
template <class T, int KIND>
void fwd_loop(T* y, const T* x, index_t n, T param) {
  for (index_t i = 0; i < n; ++i) y[i] = act::forward<T>(KIND, x[i], param);
}

template <class T, int KIND>
void bwd_loop(T* dx, const T* dy, const T* z, const T* y, index_t n, T param) {
  for (index_t i = 0; i < n; ++i) dx[i] = dy[i] * act::derivative<T>(KIND, z[i], y[i], param);
}

}  // namespace

template <class T>
void act_forward(T* y, const T* x, index_t n, int kind, T param) {
  DenormalGuard guard;
  switch (kind) {
    case act::RELU: return fwd_loop<T, act::RELU>(y, x, n, param);
    case act::LEAKY_RELU: return fwd_loop<T, act::LEAKY_RELU>(y, x, n, param);
    case act::SIGMOID: return fwd_loop<T, act::SIGMOID>(y, x, n, param);
    case act::TANH: return fwd_loop<T, act::TANH>(y, x, n, param);
    case act::ELU: return fwd_loop<T, act::ELU>(y, x, n, param);
    case act::SELU: return fwd_loop<T, act::SELU>(y, x, n, param);
    case act::GELU:
      // float32: the vector normal CDF of the active ISA (a scalar erfc per element cost a
      // quarter of a small Transformer's training step).
      if constexpr (std::is_same_v<T, float>) {
        const ActRows& rows = act_rows();
        // ~40 flops an element; the pool runs every chunk under flush-to-zero, like the guard.
        parallel_range(n, 16384, threads_for(40.0 * double(n), 1 << 17),
                       [&](index_t lo, index_t hi) { rows.gelu(y + lo, x + lo, hi - lo); });
        return;
      }
      else return fwd_loop<T, act::GELU>(y, x, n, param);
    default:
      if (y != x) for (index_t i = 0; i < n; ++i) y[i] = x[i];
  }
}

template <class T>
void act_backward(T* dx, const T* dy, const T* z, const T* y, index_t n, int kind, T param) {
  DenormalGuard guard;
  if (!z) z = y;
  switch (kind) {
    case act::RELU: return bwd_loop<T, act::RELU>(dx, dy, z, y, n, param);
    case act::LEAKY_RELU: return bwd_loop<T, act::LEAKY_RELU>(dx, dy, z, y, n, param);
    case act::SIGMOID: return bwd_loop<T, act::SIGMOID>(dx, dy, z, y, n, param);
    case act::TANH: return bwd_loop<T, act::TANH>(dx, dy, z, y, n, param);
    case act::ELU: return bwd_loop<T, act::ELU>(dx, dy, z, y, n, param);
    case act::SELU: return bwd_loop<T, act::SELU>(dx, dy, z, y, n, param);
    case act::GELU:
      if constexpr (std::is_same_v<T, float>) {
        const ActRows& rows = act_rows();
        parallel_range(n, 16384, threads_for(40.0 * double(n), 1 << 17),
                       [&](index_t lo, index_t hi) {
                         rows.gelu_backward(dx + lo, dy + lo, z + lo, hi - lo);
                       });
        return;
      }
      else return bwd_loop<T, act::GELU>(dx, dy, z, y, n, param);
    default:
      if (dx != dy) for (index_t i = 0; i < n; ++i) dx[i] = dy[i];
  }
}

template <class T>
void column_sums(T* out, const T* x, index_t rows, index_t cols, index_t ld) {
  for (index_t j = 0; j < cols; ++j) out[j] = T(0);
  for (index_t i = 0; i < rows; ++i) {
    const T* row = x + i * ld;
    for (index_t j = 0; j < cols; ++j) out[j] += row[j];
  }
}

template void act_forward<float>(float*, const float*, index_t, int, float);
template void act_forward<double>(double*, const double*, index_t, int, double);
template void act_backward<float>(float*, const float*, const float*, const float*, index_t, int,
                                  float);
template void act_backward<double>(double*, const double*, const double*, const double*, index_t,
                                   int, double);
template void column_sums<float>(float*, const float*, index_t, index_t, index_t);
template void column_sums<double>(double*, const double*, index_t, index_t, index_t);

}  // namespace fastnn
