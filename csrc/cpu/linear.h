// Fully connected layer on top of the GEMM family: y = act(x @ w^T + b), w of shape (N, K).
#pragma once
#include "cpu/gemm/gemm.h"

namespace fastnn {

// A 2-D strided view (strides in elements).
template <class T>
struct Mat {
  T* p = nullptr;
  index_t rows = 0, cols = 0, rs = 0, cs = 0;
};

// y (M x N, unit-stride rows) = act(x @ w^T + b). z, if non-null (M x N), receives x @ w^T + b
// (needed by the backward of activations whose derivative depends on the input, e.g. GELU).
template <class T>
void linear_forward(Mat<T> y, Mat<T> z, Mat<const T> x, Mat<const T> w, const T* b, int act,
                    T act_param);

// Given dy (M x N, contiguous), computes dz = dy * act'(z, y) and then
// dw = dz^T x (N x K), db = column sums of dz (if db), dx = dz w (M x K, if dx.p).
template <class T>
void linear_backward(Mat<T> dx, Mat<T> dw, T* db, Mat<const T> dy, Mat<const T> x,
                     Mat<const T> w, Mat<const T> y, Mat<const T> z, int act, T act_param);

}  // namespace fastnn
