// Activation kernels (forward and backward) on N-d strided device arrays, using the very
// __host__ __device__ functions of common/activations.h that the CPU kernels run.
#include "common/activations.h"
#include "cuda/check.cuh"
#include "cuda/kernel_launch.cuh"
#include "cuda/launchers.cuh"

namespace fastnn {
namespace cuda {
namespace {

constexpr int kThreads = 256;

// Element offset of flat (row-major) index i in an array with strides s.
__device__ inline index_t offset(const Shape& shape, const index_t* s, index_t i) {
  index_t off = 0;
  for (int d = shape.ndim - 1; d >= 0; --d) {
    const index_t q = i / shape.dim[d];
    off += (i - q * shape.dim[d]) * s[d];
    i = q;
  }
  return off;
}

// CONTIG: every operand is C-contiguous, so the flat index is the offset.
template <class T, bool CONTIG>
__global__ void act_forward_kernel(Shape shape, index_t n, Strided<T> y, Strided<const T> x,
                                   int kind, T param) {
  const index_t step = static_cast<index_t>(gridDim.x) * blockDim.x;
  for (index_t i = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += step) {
    const index_t oy = CONTIG ? i : offset(shape, y.s, i);
    const index_t ox = CONTIG ? i : offset(shape, x.s, i);
    y.p[oy] = act::forward<T>(kind, x.p[ox], param);
  }
}

template <class T, bool CONTIG>
__global__ void act_backward_kernel(Shape shape, index_t n, Strided<T> dx, Strided<const T> dy,
                                    Strided<const T> z, Strided<const T> y, int kind, T param) {
  const index_t step = static_cast<index_t>(gridDim.x) * blockDim.x;
  for (index_t i = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += step) {
    const index_t odx = CONTIG ? i : offset(shape, dx.s, i);
    const index_t ody = CONTIG ? i : offset(shape, dy.s, i);
    const index_t oy = CONTIG ? i : offset(shape, y.s, i);
    const T yv = y.p[oy];
    const T zv = z.p ? z.p[CONTIG ? i : offset(shape, z.s, i)] : yv;
    dx.p[odx] = dy.p[ody] * act::derivative<T>(kind, zv, yv, param);
  }
}

bool c_contiguous(const Shape& shape, const index_t* s) {
  index_t want = 1;
  for (int d = shape.ndim - 1; d >= 0; --d) {
    if (shape.dim[d] != 1 && s[d] != want) return false;
    want *= shape.dim[d];
  }
  return true;
}

}  // namespace

template <class T>
void launch_act_forward(const Shape& shape, Strided<T> y, Strided<const T> x, int kind,
                        T param) {
  const index_t n = shape.size();
  if (n <= 0) return;
  const unsigned grid = grid_for(n, kThreads);
  const bool contig = c_contiguous(shape, y.s) && c_contiguous(shape, x.s);
  launch("activation kernel launch",
         contig ? act_forward_kernel<T, true> : act_forward_kernel<T, false>, dim3(grid),
         dim3(kThreads), shape, n, y, x, kind, param);
}

template <class T>
void launch_act_backward(const Shape& shape, Strided<T> dx, Strided<const T> dy,
                         Strided<const T> z, Strided<const T> y, int kind, T param) {
  const index_t n = shape.size();
  if (n <= 0) return;
  const unsigned grid = grid_for(n, kThreads);
  const bool contig = c_contiguous(shape, dx.s) && c_contiguous(shape, dy.s) &&
                      c_contiguous(shape, y.s) && (!z.p || c_contiguous(shape, z.s));
  launch("activation_backward kernel launch",
         contig ? act_backward_kernel<T, true> : act_backward_kernel<T, false>, dim3(grid),
         dim3(kThreads), shape, n, dx, dy, z, y, kind, param);
}

template void launch_act_forward<float>(const Shape&, Strided<float>, Strided<const float>, int,
                                        float);
template void launch_act_forward<double>(const Shape&, Strided<double>, Strided<const double>,
                                         int, double);
template void launch_act_backward<float>(const Shape&, Strided<float>, Strided<const float>,
                                         Strided<const float>, Strided<const float>, int, float);
template void launch_act_backward<double>(const Shape&, Strided<double>, Strided<const double>,
                                          Strided<const double>, Strided<const double>, int,
                                          double);

namespace {

Shape to_shape(const std::vector<index_t>& v) {
  if (v.size() > static_cast<std::size_t>(kMaxDims))
    throw std::invalid_argument("activation: at most 8 dimensions are supported on CUDA");
  Shape s;
  s.ndim = static_cast<int>(v.size());
  for (int d = 0; d < s.ndim; ++d) s.dim[d] = v[d];
  return s;
}

template <class T>
Strided<T> view(const NdArg& a) {
  Strided<T> v;
  v.p = reinterpret_cast<T*>(a.ptr);
  for (int d = 0; d < kMaxDims; ++d) v.s[d] = a.strides[d];
  return v;
}

}  // namespace

void activation(bool dbl, const std::vector<index_t>& shape, NdArg y, NdArg x, int kind,
                double param) {
  const Shape s = to_shape(shape);
  if (dbl) launch_act_forward<double>(s, view<double>(y), view<const double>(x), kind, param);
  else launch_act_forward<float>(s, view<float>(y), view<const float>(x), kind, float(param));
}

void activation_backward(bool dbl, const std::vector<index_t>& shape, NdArg dx, NdArg dy, NdArg z,
                         NdArg y, int kind, double param) {
  const Shape s = to_shape(shape);
  if (dbl)
    launch_act_backward<double>(s, view<double>(dx), view<const double>(dy),
                                view<const double>(z), view<const double>(y), kind, param);
  else
    launch_act_backward<float>(s, view<float>(dx), view<const float>(dy), view<const float>(z),
                               view<const float>(y), kind, float(param));
}

}  // namespace cuda
}  // namespace fastnn
