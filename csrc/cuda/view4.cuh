// A 4-D strided array as the conv and pooling kernels index it on the device (T may be const).
// Both files take their arrays from the bindings as Array4 (cuda/api.h): any strides, in
// elements.
#pragma once
#include "cuda/api.h"

namespace fastnn {
namespace cuda {

template <class T>
struct View4 {
  T* p = nullptr;
  index_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  __device__ T& operator()(index_t a, index_t b, index_t c, index_t d) const {
    return p[a * s0 + b * s1 + c * s2 + d * s3];
  }
};

template <class T>
inline View4<T> view4(const Array4& a) {
  View4<T> v;
  v.p = reinterpret_cast<T*>(a.ptr);
  v.s0 = a.stride[0];
  v.s1 = a.stride[1];
  v.s2 = a.stride[2];
  v.s3 = a.stride[3];
  return v;
}

}  // namespace cuda
}  // namespace fastnn
