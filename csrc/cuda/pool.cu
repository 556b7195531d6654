// Pooling on the GPU: max_pool2d_forward/backward and avg_pool2d_forward/backward, with the
// semantics and the argument order of the CPU kernels (numba_kernels/pool.py):
//
// * a window is clipped to the image before it is read (the padding is never materialized);
// * max pooling keeps the first maximum of a window (strict >) and the first NaN, which then
//   stays; a window of -inf alone reports its first element inside the image; argmax is the
//   int64 flat index row * W + col into the input plane;
// * average pooling sums in double and divides by kh * kw (count_include_pad) or by the number
//   of the window's elements inside the image.
//
// Every kernel gives each output element one writer and adds in a fixed order, so results do
// not depend on scheduling. Arrays are strided (strides in elements), indices are 64-bit, and
// every load is bounds-checked, including the argmax values the backward receives.
#include <math_constants.h>

#include <stdexcept>
#include <string>

#include "cuda/api.h"
#include "cuda/check.cuh"
#include "cuda/kernel_launch.cuh"
#include "cuda/view4.cuh"

namespace fastnn {
namespace cuda {
namespace {

constexpr int kThreads = 256;

// The position (n, c, r, q) of flat index e in an (n, c, h, w) array: e = ((n*c + ch)*h + r)*w
// + q. Only called with c, h, w >= 1.
struct Pos {
  index_t n, c, r, q;
};
__device__ inline Pos position(index_t e, index_t c, index_t h, index_t w) {
  Pos p;
  const index_t row = e / w;
  p.q = e - row * w;
  const index_t plane = row / h;
  p.r = row - plane * h;
  p.n = plane / c;
  p.c = plane - p.n * c;
  return p;
}

__device__ inline index_t imax(index_t a, index_t b) { return a > b ? a : b; }
__device__ inline index_t imin(index_t a, index_t b) { return a < b ? a : b; }

__device__ inline float neg_inf(float) { return -CUDART_INF_F; }
__device__ inline double neg_inf(double) { return -CUDART_INF; }

// The divisor of a window clipped to [h0, h1) x [w0, w1).
__device__ inline double divisor(const PoolWindow& p, bool count_include_pad, index_t h0,
                                 index_t h1, index_t w0, index_t w1) {
  // Windows never reach past the padding (no ceil mode), so counting the padding always means
  // counting kh * kw elements.
  return static_cast<double>(count_include_pad ? p.kh * p.kw : (h1 - h0) * (w1 - w0));
}

// One thread per output element (grid stride).
template <class T>
__global__ void max_forward_kernel(View4<T> y, View4<index_t> argmax, View4<const T> x,
                                   PoolWindow p, index_t n, index_t c, index_t oh, index_t ow,
                                   index_t h, index_t w) {
  const index_t total = n * c * oh * ow;
  const index_t step = static_cast<index_t>(gridDim.x) * blockDim.x;
  for (index_t e = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += step) {
    const Pos o = position(e, c, oh, ow);
    const index_t top = o.r * p.sh - p.ph, left = o.q * p.sw - p.pw;
    const index_t h0 = imax(top, 0), h1 = imin(top + p.kh, h);
    const index_t w0 = imax(left, 0), w1 = imin(left + p.kw, w);
    if (h0 >= h1 || w0 >= w1) {
      // A window of padding alone (fastnn.ops never asks for one: padding <= kernel / 2): the
      // maximum of nothing padded with -inf, from nowhere (the backward ignores -1).
      y(o.n, o.c, o.r, o.q) = neg_inf(T(0));
      argmax(o.n, o.c, o.r, o.q) = -1;
      continue;
    }
    T best = x(o.n, o.c, h0, w0);
    index_t where = h0 * w + w0;
    for (index_t i = h0; i < h1; ++i) {
      for (index_t j = w0; j < w1; ++j) {
        const T v = x(o.n, o.c, i, j);
        if (v > best || (v != v && best == best)) {  // v != v: NaN (no fast-math here)
          best = v;
          where = i * w + j;
        }
      }
    }
    y(o.n, o.c, o.r, o.q) = best;
    argmax(o.n, o.c, o.r, o.q) = where;
  }
}

template <class T>
__global__ void zero_kernel(View4<T> a, index_t n, index_t c, index_t h, index_t w) {
  const index_t total = n * c * h * w;
  const index_t step = static_cast<index_t>(gridDim.x) * blockDim.x;
  for (index_t e = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += step) {
    const Pos o = position(e, c, h, w);
    a(o.n, o.c, o.r, o.q) = T(0);
  }
}

// One thread per (image, channel) plane adds that plane's dy into dx at the argmax positions, in
// output order. The kernel receives no window geometry (the signature of the CPU kernels), so a
// dx element cannot find the windows that contain it and gather from them; and adding with
// atomics would make the order of three or more contributions to one element (overlapping
// windows) vary between runs. One writer per plane is the simple deterministic choice; its
// parallelism is N * C, which a batch of feature maps provides.
template <class T>
__global__ void max_backward_kernel(View4<T> dx, View4<const index_t> argmax, View4<const T> dy,
                                    View4<const T> gate, bool gated, index_t n, index_t c,
                                    index_t h, index_t w, index_t oh, index_t ow) {
  const index_t planes = n * c;
  const index_t hw = h * w;
  const index_t step = static_cast<index_t>(gridDim.x) * blockDim.x;
  for (index_t t = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; t < planes;
       t += step) {
    const index_t img = t / c, ch = t - (t / c) * c;
    for (index_t r = 0; r < oh; ++r) {
      for (index_t q = 0; q < ow; ++q) {
        const index_t at = argmax(img, ch, r, q);
        if (at < 0 || at >= hw) continue;  // not from this plane: nothing to add it to
        const index_t i = at / w;
        // gated: the gradient through a relu before the pooling (the pooled output is the gate)
        if (!gated || gate(img, ch, r, q) > T(0)) dx(img, ch, i, at - i * w) += dy(img, ch, r, q);
      }
    }
  }
}

// One thread per output element.
template <class T>
__global__ void avg_forward_kernel(View4<T> y, View4<const T> x, PoolWindow p,
                                   bool count_include_pad, index_t n, index_t c, index_t oh,
                                   index_t ow, index_t h, index_t w) {
  const index_t total = n * c * oh * ow;
  const index_t step = static_cast<index_t>(gridDim.x) * blockDim.x;
  for (index_t e = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += step) {
    const Pos o = position(e, c, oh, ow);
    const index_t top = o.r * p.sh - p.ph, left = o.q * p.sw - p.pw;
    const index_t h0 = imax(top, 0), h1 = imin(top + p.kh, h);
    const index_t w0 = imax(left, 0), w1 = imin(left + p.kw, w);
    // A double sum from a true zero (x * 0 would turn an inf into NaN).
    double s = 0.0;
    for (index_t i = h0; i < h1; ++i)
      for (index_t j = w0; j < w1; ++j) s += static_cast<double>(x(o.n, o.c, i, j));
    y(o.n, o.c, o.r, o.q) = static_cast<T>(s / divisor(p, count_include_pad, h0, h1, w0, w1));
  }
}

// One thread per input element, gathering the shares of the windows that contain it: window r
// covers rows [r*sh - ph, r*sh - ph + kh), so row i lies in the windows r with
// (i + ph - kh + 1) / sh <= r <= (i + ph) / sh (and likewise for columns). One writer per
// element and a fixed order (r, then q, ascending): no atomics.
template <class T>
__global__ void avg_backward_kernel(View4<T> dx, View4<const T> dy, PoolWindow p,
                                    bool count_include_pad, index_t n, index_t c, index_t h,
                                    index_t w, index_t oh, index_t ow) {
  const index_t total = n * c * h * w;
  const index_t step = static_cast<index_t>(gridDim.x) * blockDim.x;
  for (index_t e = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += step) {
    const Pos o = position(e, c, h, w);
    // i + ph >= 0, so / rounds down; the lower bound rounds up, from 0 when its numerator is not
    // positive (C++ division truncates toward zero, which would round a negative one up).
    const index_t lo_h_num = o.r + p.ph - p.kh + 1, lo_w_num = o.q + p.pw - p.kw + 1;
    const index_t r_lo = lo_h_num > 0 ? (lo_h_num + p.sh - 1) / p.sh : 0;
    const index_t q_lo = lo_w_num > 0 ? (lo_w_num + p.sw - 1) / p.sw : 0;
    const index_t r_hi = imin((o.r + p.ph) / p.sh, oh - 1);
    const index_t q_hi = imin((o.q + p.pw) / p.sw, ow - 1);
    double s = 0.0;
    for (index_t r = r_lo; r <= r_hi; ++r) {
      const index_t top = r * p.sh - p.ph;
      const index_t h0 = imax(top, 0), h1 = imin(top + p.kh, h);
      for (index_t q = q_lo; q <= q_hi; ++q) {
        const index_t left = q * p.sw - p.pw;
        const index_t w0 = imax(left, 0), w1 = imin(left + p.kw, w);
        s += static_cast<double>(dy(o.n, o.c, r, q)) /
             divisor(p, count_include_pad, h0, h1, w0, w1);
      }
    }
    dx(o.n, o.c, o.r, o.q) = static_cast<T>(s);
  }
}

// ---------------------------------------------------------------------------------------------
// Host side: argument checks and launches

void require(bool ok, const std::string& what) {
  if (!ok) throw std::invalid_argument(what);
}

std::string dims(const Array4& a) {
  return "(" + std::to_string(a.dim[0]) + ", " + std::to_string(a.dim[1]) + ", " +
         std::to_string(a.dim[2]) + ", " + std::to_string(a.dim[3]) + ")";
}

index_t size_of(const Array4& a) { return a.dim[0] * a.dim[1] * a.dim[2] * a.dim[3]; }

bool nonnegative(const Array4& a) {
  return a.dim[0] >= 0 && a.dim[1] >= 0 && a.dim[2] >= 0 && a.dim[3] >= 0;
}

bool same_planes(const Array4& a, const Array4& b) {
  return a.dim[0] == b.dim[0] && a.dim[1] == b.dim[1];
}

bool same_shape(const Array4& a, const Array4& b) {
  return same_planes(a, b) && a.dim[2] == b.dim[2] && a.dim[3] == b.dim[3];
}

// y is the output of a pooling of x with window p.
void check_pool(const char* op, const Array4& y, const Array4& x, const PoolWindow& p) {
  const std::string pre = std::string(op) + ": ";
  require(p.kh >= 1 && p.kw >= 1 && p.sh >= 1 && p.sw >= 1, pre + "kernel and stride must be >= 1");
  require(p.ph >= 0 && p.pw >= 0, pre + "padding must be >= 0");
  require(nonnegative(y) && nonnegative(x), pre + "negative size");
  require(same_planes(y, x),
          pre + "output " + dims(y) + " and input " + dims(x) + " have different (N, C)");
}

template <class T>
void max_forward_t(Array4 y, Array4 argmax, Array4 x, const PoolWindow& p) {
  check_pool("max_pool2d_forward", y, x, p);
  require(same_shape(y, argmax), "max_pool2d_forward: argmax " + dims(argmax) +
                                     " must have the output's shape " + dims(y));
  const index_t total = size_of(y);
  if (total <= 0) return;
  launch("max_pool2d_forward kernel launch", max_forward_kernel<T>,
         dim3(grid_for(total, kThreads)), dim3(kThreads), view4<T>(y), view4<index_t>(argmax),
         view4<const T>(x), p, y.dim[0], y.dim[1], y.dim[2], y.dim[3], x.dim[2], x.dim[3]);
}

template <class T>
void max_backward_t(Array4 dx, Array4 argmax, Array4 dy, Array4 gate) {
  const char* op = "max_pool2d_backward";
  require(nonnegative(dx) && nonnegative(dy), std::string(op) + ": negative size");
  require(same_shape(dy, argmax), std::string(op) + ": argmax " + dims(argmax) +
                                      " must have dy's shape " + dims(dy));
  require(same_planes(dx, dy), std::string(op) + ": dx " + dims(dx) + " and dy " + dims(dy) +
                                   " have different (N, C)");
  const bool gated = gate.ptr != 0;
  require(!gated || same_shape(dy, gate), std::string(op) + ": gate " + dims(gate) +
                                               " must have dy's shape " + dims(dy));
  const index_t total = size_of(dx);
  if (total <= 0) return;
  const index_t n = dx.dim[0], c = dx.dim[1], h = dx.dim[2], w = dx.dim[3];
  launch("max_pool2d_backward zero-fill launch", zero_kernel<T>, dim3(grid_for(total, kThreads)),
         dim3(kThreads), view4<T>(dx), n, c, h, w);
  if (size_of(dy) <= 0) return;
  launch("max_pool2d_backward kernel launch", max_backward_kernel<T>,
         dim3(grid_for(n * c, kThreads)), dim3(kThreads), view4<T>(dx),
         view4<const index_t>(argmax), view4<const T>(dy), view4<const T>(gated ? gate : dy),
         gated, n, c, h, w, dy.dim[2], dy.dim[3]);
}

template <class T>
void avg_forward_t(Array4 y, Array4 x, const PoolWindow& p, bool count_include_pad) {
  check_pool("avg_pool2d_forward", y, x, p);
  const index_t total = size_of(y);
  if (total <= 0) return;
  launch("avg_pool2d_forward kernel launch", avg_forward_kernel<T>,
         dim3(grid_for(total, kThreads)), dim3(kThreads), view4<T>(y), view4<const T>(x), p,
         count_include_pad, y.dim[0], y.dim[1], y.dim[2], y.dim[3], x.dim[2], x.dim[3]);
}

template <class T>
void avg_backward_t(Array4 dx, Array4 dy, const PoolWindow& p, bool count_include_pad) {
  check_pool("avg_pool2d_backward", dy, dx, p);
  const index_t total = size_of(dx);
  if (total <= 0) return;
  launch("avg_pool2d_backward kernel launch", avg_backward_kernel<T>,
         dim3(grid_for(total, kThreads)), dim3(kThreads), view4<T>(dx), view4<const T>(dy), p,
         count_include_pad, dx.dim[0], dx.dim[1], dx.dim[2], dx.dim[3], dy.dim[2], dy.dim[3]);
}

}  // namespace

void max_pool2d_forward(bool dbl, Array4 y, Array4 argmax, Array4 x, const PoolWindow& p) {
  if (dbl) max_forward_t<double>(y, argmax, x, p);
  else max_forward_t<float>(y, argmax, x, p);
}

void max_pool2d_backward(bool dbl, Array4 dx, Array4 argmax, Array4 dy, Array4 gate) {
  if (dbl) max_backward_t<double>(dx, argmax, dy, gate);
  else max_backward_t<float>(dx, argmax, dy, gate);
}

void avg_pool2d_forward(bool dbl, Array4 y, Array4 x, const PoolWindow& p,
                        bool count_include_pad) {
  if (dbl) avg_forward_t<double>(y, x, p, count_include_pad);
  else avg_forward_t<float>(y, x, p, count_include_pad);
}

void avg_pool2d_backward(bool dbl, Array4 dx, Array4 dy, const PoolWindow& p,
                         bool count_include_pad) {
  if (dbl) avg_backward_t<double>(dx, dy, p, count_include_pad);
  else avg_backward_t<float>(dx, dy, p, count_include_pad);
}

}  // namespace cuda
}  // namespace fastnn
