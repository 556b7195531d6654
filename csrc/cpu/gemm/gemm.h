// The GEMM family's C++ entry points and the problem description the ISA drivers share.
//
// C := alpha * A * B + beta * C, then (optionally) C := act(C + bias). Every operand is a strided
// view (strides in elements, any sign): transposes are just swapped strides, and the driver packs
// whatever is not unit-stride where it needs unit stride. With beta == 0, C is never read.
#pragma once
#include <cstdint>

namespace fastnn {

using index_t = std::int64_t;

template <class T>
struct Epilogue {
  const T* bias = nullptr;  // added before the activation
  int bias_axis = 1;        // 1: bias[j] per column of C, 0: bias[i] per row
  int act = 0;              // act::Kind
  T act_param = T(0);
  // RBM units (cpu/rbm.cpp), applied after the bias instead of `act`: 1 = sigmoid (vectorized),
  // 2 = sigmoid then a Bernoulli draw (common/rbm_math.h) of the counter-based uniform of
  // element (i, j) = cnt0 + i * cnt_rs + j * cnt_cs in stage `stage` of the key (key0, key1);
  // cnt0 places a sub-block of a larger matrix (one thread's columns) at its counters.
  int rbm = 0;
  std::uint32_t key0 = 0, key1 = 0, stage = 0;
  index_t cnt_rs = 0, cnt_cs = 0, cnt0 = 0;
};

template <class T>
struct GemmProblem {
  index_t m = 0, n = 0, k = 0;
  T alpha = T(1), beta = T(0);
  const T* a = nullptr; index_t rsa = 0, csa = 0;
  const T* b = nullptr; index_t rsb = 0, csb = 0;
  T* c = nullptr; index_t rsc = 0, csc = 0;
  Epilogue<T> ep;
};

// The public C++ API (sizes must be > 0; ops/ validated the arguments).
void gemm(const GemmProblem<float>& p);
void gemm(const GemmProblem<double>& p);

}  // namespace fastnn
