#include "cpu/softmax.h"

#include "common/activations.h"
#include "common/loss_math.h"
#include "common/parallel.h"
#include "common/threading.h"

namespace fastnn {
namespace {

template <class T>
void softmax_row(T* y, const T* x, index_t n) {
  T s;
  lmath::row_lse(y, s, x, n);
  T inv = T(1) / s;
  for (index_t j = 0; j < n; ++j) y[j] *= inv;
}

template <class T>
void log_softmax_row(T* y, const T* x, index_t n) {
  T s;
  T lse = lmath::row_lse<T>(nullptr, s, x, n);
  for (index_t j = 0; j < n; ++j) y[j] = x[j] - lse;
}

template <class T>
void softmax_row_backward(T* dx, const T* y, const T* dy, index_t n) {
  T dot = T(0);
  for (index_t j = 0; j < n; ++j) dot += dy[j] * y[j];
  for (index_t j = 0; j < n; ++j) dx[j] = y[j] * (dy[j] - dot);
}

template <class T>
void log_softmax_row_backward(T* dx, const T* y, const T* dy, index_t n) {
  T s = T(0);
  for (index_t j = 0; j < n; ++j) s += dy[j];
  for (index_t j = 0; j < n; ++j) dx[j] = dy[j] - act::m_exp(y[j]) * s;
}

// exp dominates: about 20 flop-equivalents per element.
inline int row_threads(index_t rows, index_t cols) {
  return rows > 1 ? threads_for(double(rows) * double(cols) * 20.0) : 1;
}

// Rows per chunk: about four chunks a thread, so a late worker still finds some.
inline index_t row_grain(index_t rows, int nt) {
  return nt > 1 ? (rows + 4 * nt - 1) / (4 * nt) : rows;
}

}  // namespace

template <class T>
void softmax_rows(T* y, const T* x, index_t rows, index_t cols, bool log) {
  if (rows == 0 || cols == 0) return;
  const int nt = row_threads(rows, cols);
  parallel_range(rows, row_grain(rows, nt), nt, [&](index_t lo, index_t hi) {
    for (index_t i = lo; i < hi; ++i) {
      if (log) log_softmax_row(y + i * cols, x + i * cols, cols);
      else softmax_row(y + i * cols, x + i * cols, cols);
    }
  });
}

template <class T>
void softmax_rows_backward(T* dx, const T* y, const T* dy, index_t rows, index_t cols, bool log) {
  if (rows == 0 || cols == 0) return;
  const int nt = row_threads(rows, cols);
  parallel_range(rows, row_grain(rows, nt), nt, [&](index_t lo, index_t hi) {
    for (index_t i = lo; i < hi; ++i) {
      const index_t o = i * cols;
      if (log) log_softmax_row_backward(dx + o, y + o, dy + o, cols);
      else softmax_row_backward(dx + o, y + o, dy + o, cols);
    }
  });
}

template void softmax_rows<float>(float*, const float*, index_t, index_t, bool);
template void softmax_rows<double>(double*, const double*, index_t, index_t, bool);
template void softmax_rows_backward<float>(float*, const float*, const float*, index_t, index_t,
                                           bool);
template void softmax_rows_backward<double>(double*, const double*, const double*, index_t,
                                            index_t, bool);

}  // namespace fastnn
