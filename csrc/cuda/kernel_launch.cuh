// One way to launch a kernel: on the legacy default stream, with the launch checked at once.
#pragma once
#include <cuda_runtime.h>

#include "cuda/check.cuh"

namespace fastnn {
namespace cuda {

template <class T>
struct same_type {
  using type = T;
};

// The kernel's own parameter types convert the arguments (no deduction from them).
template <class... P>
void launch(const char* what, void (*kernel)(P...), dim3 grid, dim3 block,
            typename same_type<P>::type... args) {
  kernel<<<grid, block>>>(args...);
  check_launch(what);
}

}  // namespace cuda
}  // namespace fastnn
