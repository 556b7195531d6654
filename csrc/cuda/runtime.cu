// Runtime services for the Python front: device discovery, staging buffers, synchronization.
#include <cuda_runtime.h>

#include "cuda/api.h"
#include "cuda/check.cuh"

namespace fastnn {
namespace cuda {

int device_count(std::string* error) {
  int n = 0;
  const cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess) {
    cudaGetLastError();
    if (error) *error = std::string(cudaGetErrorName(err)) + ": " + cudaGetErrorString(err);
    return 0;
  }
  if (n == 0 && error) *error = "the CUDA runtime reports no device";
  return n;
}

void use_device_of(std::uintptr_t ptr) {
  if (!ptr) return;
  cudaPointerAttributes attr;
  const cudaError_t err = cudaPointerGetAttributes(&attr, reinterpret_cast<const void*>(ptr));
  if (err != cudaSuccess) {  // not a pointer the runtime knows: leave the current device alone
    cudaGetLastError();
    return;
  }
  if (attr.type != cudaMemoryTypeDevice && attr.type != cudaMemoryTypeManaged) return;
  int cur = -1;
  check(cudaGetDevice(&cur), "cudaGetDevice");
  if (cur != attr.device) check(cudaSetDevice(attr.device), "cudaSetDevice");
}

void stream_synchronize(std::uintptr_t stream) {
  // The __cuda_array_interface__ codes: 1 is the legacy default stream, 2 the per-thread one.
  cudaStream_t s = stream == 2 ? cudaStreamPerThread : reinterpret_cast<cudaStream_t>(stream);
  if (stream == 1) s = cudaStreamLegacy;
  check(cudaStreamSynchronize(s), "cudaStreamSynchronize");
}

void synchronize() { check(cudaDeviceSynchronize(), "cudaDeviceSynchronize"); }

namespace {

// Whether the stream-ordered allocator works here (decided once: some virtualized setups lack it).
bool use_pools() {
  static const bool pools = [] {
    int dev = 0, v = 0;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&v, cudaDevAttrMemoryPoolsSupported, dev) != cudaSuccess) {
      cudaGetLastError();
      return false;
    }
    return v != 0;
  }();
  return pools;
}

}  // namespace

// Staging and scratch buffers are stream-ordered on the legacy default stream, like every kernel
// and copy here: allocation and release never synchronize the device (cudaFree would).
std::uintptr_t device_malloc(std::size_t nbytes) {
  if (nbytes == 0) return 0;
  void* p = nullptr;
  if (use_pools()) check(cudaMallocAsync(&p, nbytes, 0), "cudaMallocAsync");
  else check(cudaMalloc(&p, nbytes), "cudaMalloc");
  return reinterpret_cast<std::uintptr_t>(p);
}

void device_free(std::uintptr_t ptr) noexcept {
  if (!ptr) return;
  void* p = reinterpret_cast<void*>(ptr);
  if ((use_pools() ? cudaFreeAsync(p, 0) : cudaFree(p)) != cudaSuccess) cudaGetLastError();
}

void copy_to_device(std::uintptr_t dst, const void* src, std::size_t nbytes) {
  if (nbytes) check(cudaMemcpy(reinterpret_cast<void*>(dst), src, nbytes, cudaMemcpyHostToDevice),
                    "cudaMemcpy (host to device)");
}

void copy_to_host(void* dst, std::uintptr_t src, std::size_t nbytes) {
  if (nbytes) check(cudaMemcpy(dst, reinterpret_cast<const void*>(src), nbytes,
                               cudaMemcpyDeviceToHost),
                    "cudaMemcpy (device to host)");
}

}  // namespace cuda
}  // namespace fastnn
