// CUDA error checking for the launchers: errors become C++ exceptions, which pybind11 turns into
// Python RuntimeErrors naming the call that failed.
#pragma once
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

namespace fastnn {
namespace cuda {

inline void check(cudaError_t err, const char* what) {
  if (err != cudaSuccess) {
    cudaGetLastError();  // clear a non-sticky error so later calls do not report it again
    throw std::runtime_error(std::string("CUDA error in ") + what + ": " +
                             cudaGetErrorName(err) + " (" + cudaGetErrorString(err) + ")");
  }
}

// After a kernel launch: configuration errors show up here, execution errors on a later sync.
inline void check_launch(const char* what) { check(cudaGetLastError(), what); }

// Grid size for grid-stride loops: enough blocks to fill the device, never more than needed.
inline unsigned grid_for(long long n, int threads) {
  long long blocks = (n + threads - 1) / threads;
  const long long cap = 65535LL * 8;
  return static_cast<unsigned>(blocks < 1 ? 1 : (blocks > cap ? cap : blocks));
}

}  // namespace cuda
}  // namespace fastnn
