// Row softmax and log-softmax over the last axis of a contiguous (rows, cols) buffer.
#pragma once
#include <cstdint>

namespace fastnn {

using index_t = std::int64_t;

// y = softmax(x) (or log_softmax(x) when `log`) of each row.
template <class T>
void softmax_rows(T* y, const T* x, index_t rows, index_t cols, bool log);

// dx from the forward output y and dy: softmax: y * (dy - <dy, y>); log: dy - exp(y) * sum(dy).
template <class T>
void softmax_rows_backward(T* dx, const T* y, const T* dy, index_t rows, index_t cols, bool log);

}  // namespace fastnn
