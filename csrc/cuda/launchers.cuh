// Launchers shared between the .cu files of the module (gemm.cu, linear.cu, elementwise.cu).
#pragma once
#include <cuda_runtime.h>

#include "cuda/api.h"
#include "cuda/gemm_kernel.cuh"

namespace fastnn {
namespace cuda {

// Runs p (any strides, any sizes) on the default stream. Fills in vec_a / vec_b itself.
template <class T>
void launch_gemm(GemmParams<T> p);

// Launches gemm_kernel with configuration Cfg; p's strides are final (see launch_gemm).
template <class T, class Cfg>
void run_tiles(const GemmParams<T>& p, bool a_kmajor, bool b_kmajor);

// An N-d strided operand of an elementwise kernel.
template <class T>
struct Strided {
  T* p = nullptr;
  index_t s[kMaxDims] = {};
};

struct Shape {
  int ndim = 0;
  index_t dim[kMaxDims] = {};
  index_t size() const {
    index_t n = 1;
    for (int d = 0; d < ndim; ++d) n *= dim[d];
    return n;
  }
};

template <class T>
void launch_act_forward(const Shape& shape, Strided<T> y, Strided<const T> x, int kind, T param);

// z.p may be null: then y stands in for the pre-activation.
template <class T>
void launch_act_backward(const Shape& shape, Strided<T> dx, Strided<const T> dy,
                         Strided<const T> z, Strided<const T> y, int kind, T param);

}  // namespace cuda
}  // namespace fastnn
