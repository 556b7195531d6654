// Elementwise activation kernels on contiguous buffers (used by the activation ops and by linear).
#pragma once
#include <cstdint>

namespace fastnn {

using index_t = std::int64_t;

// y = act(x); y may alias x.
template <class T>
void act_forward(T* y, const T* x, index_t n, int kind, T param);

// dx = dy * act'(z, y); z may be null when the activation does not need it (z == y is used).
template <class T>
void act_backward(T* dx, const T* dy, const T* z, const T* y, index_t n, int kind, T param);

// out[j] = sum_i x[i*ld + j] for i < rows, j < cols (the bias gradient).
template <class T>
void column_sums(T* out, const T* x, index_t rows, index_t cols, index_t ld);

}  // namespace fastnn
