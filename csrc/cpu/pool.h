// 2-D max and average pooling on NCHW images (C-contiguous arrays; the ops layer checked every
// size: every window overlaps the image, no dimension is empty).
#pragma once
#include <cstdint>

namespace fastnn {

using index_t = std::int64_t;

// planes = n * c input planes of h x w, pooled to oh x ow (the output shape decides oh, ow).
struct PoolGeom {
  index_t planes = 0, h = 0, w = 0, oh = 0, ow = 0;
  index_t kh = 1, kw = 1, sh = 1, sw = 1, ph = 0, pw = 0;
};

// y := window maxima (padding is -inf), argmax := flat index row*w + col of each into its input
// plane. The first maximum of a window wins; a NaN wins over any number, and the first NaN stays.
template <class T>
void max_pool2d_forward(T* y, std::int64_t* argmax, const T* x, const PoolGeom& g);

// dx := 0, then dy[k] added at argmax[k] of its plane; with a gate (may be null, the pooled
// output y), dy[k] * (gate[k] > 0) instead: the gradient through a relu whose output was pooled.
template <class T>
void max_pool2d_backward(T* dx, const std::int64_t* argmax, const T* dy, const T* gate,
                         const PoolGeom& g);

// The 2x2 stride-2 unpadded case on one plane x (h x w rows of pitch w) to y and argmax (oh x ow,
// oh <= h/2, ow <= w/2): exactly what max_pool2d_forward computes for such a plane, for callers
// that pool a plane while it is still in cache (a convolution's fused forward).
template <class T>
void max_pool2x2_plane(T* y, std::int64_t* argmax, const T* x, index_t w, index_t oh, index_t ow);

// One plane of max_pool2d_backward: d (h x w) := the gradient of its input from argmax, dy and
// gate (may be null) of its (oh x ow) output, for callers that want it while in cache.
template <class T>
void max_unpool_plane(T* d, const std::int64_t* argmax, const T* dy, const T* gate, index_t h,
                      index_t w, index_t oh, index_t ow);

// y := window sums / divisor. The divisor counts the window clipped to the padded input
// (kh*kw unless a window reaches past the padding) with count_include_pad, else only the
// window's cells inside the image (PyTorch's rule).
template <class T>
void avg_pool2d_forward(T* y, const T* x, const PoolGeom& g, bool count_include_pad);

// dx := 0, then each dy / divisor added over its window's cells inside the image.
template <class T>
void avg_pool2d_backward(T* dx, const T* dy, const PoolGeom& g, bool count_include_pad);

// ---- per-ISA row kernels (kernels/<isa>/pool_<isa>.cpp) ------------------------------------

// The hot case of CNNs, 2x2 windows at stride 2 without padding, one output row: y[q] is the
// maximum of r0[2q], r0[2q+1], r1[2q], r1[2q+1] (in that order for ties) and am[q] = base + 2q +
// {0, 1, w, w+1} for the one chosen. The whole row, tail included.
struct PoolRowKernels {
  const char* name;
  void (*max2x2_f32)(float* y, std::int64_t* am, const float* r0, const float* r1, index_t ow,
                     std::int64_t base, index_t w);
  // Any window: one window cell along a row of windows, outputs q in [lo, hi): the cell's value
  // is xr[q*sw + off], its flat index base + q*sw + off; it replaces (m[q], am[q]) by the rule
  // of max_takes.
  void (*max_cell_f32)(float* m, std::int64_t* am, const float* xr, index_t lo, index_t hi,
                       index_t sw, index_t off, std::int64_t base);
  void (*max_cell_f64)(double* m, std::int64_t* am, const double* xr, index_t lo, index_t hi,
                       index_t sw, index_t off, std::int64_t base);
  // The max pooling backward of one row of windows whose argmax am[q] each lies in the 2x2
  // block of input rows d0, d1 and columns 2q, 2q+1 (base + 2q + {0, 1, w, w+1}), as 2x2
  // stride-2 windows' always do: the blocks do not overlap, so each element of the rows'
  // columns [0, 2*ow) is written once, dy[q] (times gate[q] > 0 with a gate, which may be
  // null) where am[q] points and zero elsewhere; no zero-fill pass and no scatter. Returns false
  // if some am[q] was outside its block (other windows): the caller then redoes the plane.
  bool (*unpool2x2_f32)(float* d0, float* d1, const std::int64_t* am, const float* dy,
                        const float* gate, index_t ow, std::int64_t base, index_t w);
};

extern const PoolRowKernels kPoolRowsGeneric;
#if defined(FASTNN_HAVE_X86_KERNELS)
extern const PoolRowKernels kPoolRowsAvx2;
extern const PoolRowKernels kPoolRowsAvx512;
#endif

// Does v replace the running maximum m? Strictly greater (the first maximum stays), or v is the
// first NaN (comparisons with NaN are false, so a NaN would otherwise never win, nor be beaten).
// static: compiled into each ISA file, and each copy must stay in its own file.
template <class T>
static inline bool max_takes(T v, T m) {
  return v > m || (v != v && m == m);
}

template <class T>
static void max_cell_loop(T* __restrict m, std::int64_t* __restrict am, const T* __restrict xr,
                          index_t lo, index_t hi, index_t sw, index_t off, std::int64_t base) {
  if (sw == 1) {
    for (index_t q = lo; q < hi; ++q) {
      const T v = xr[q + off];
      const bool t = v > m[q] || (v != v && m[q] == m[q]);
      m[q] = t ? v : m[q];
      am[q] = t ? base + q + off : am[q];
    }
  } else {
    for (index_t q = lo; q < hi; ++q) {
      const T v = xr[q * sw + off];
      const bool t = v > m[q] || (v != v && m[q] == m[q]);
      m[q] = t ? v : m[q];
      am[q] = t ? base + q * sw + off : am[q];
    }
  }
}

// Outputs [q0, q1) of a 2x2 stride-2 row, one at a time: the tails of the vector kernels and the
// generic kernel.
template <class T>
static inline void max2x2_scalar(T* y, std::int64_t* am, const T* r0, const T* r1, index_t q0,
                                 index_t q1, std::int64_t base, index_t w) {
  for (index_t q = q0; q < q1; ++q) {
    T m = r0[2 * q];
    std::int64_t off = 0;
    if (max_takes(r0[2 * q + 1], m)) { m = r0[2 * q + 1]; off = 1; }
    if (max_takes(r1[2 * q], m)) { m = r1[2 * q]; off = w; }
    if (max_takes(r1[2 * q + 1], m)) { m = r1[2 * q + 1]; off = w + 1; }
    y[q] = m;
    am[q] = base + 2 * q + off;
  }
}

// Outputs [q0, q1) of unpool2x2_f32, one at a time: the vector kernels' tails and the generic
// kernel.
template <class T>
static inline bool unpool2x2_scalar(T* d0, T* d1, const std::int64_t* am, const T* dy,
                                    const T* gate, index_t q0, index_t q1, std::int64_t base,
                                    index_t w) {
  bool inside = true;
  for (index_t q = q0; q < q1; ++q) {
    const T v = gate ? dy[q] * (gate[q] > T(0) ? T(1) : T(0)) : dy[q];
    const std::int64_t off = am[q] - (base + 2 * q);
    d0[2 * q] = off == 0 ? v : T(0);
    d0[2 * q + 1] = off == 1 ? v : T(0);
    d1[2 * q] = off == w ? v : T(0);
    d1[2 * q + 1] = off == w + 1 ? v : T(0);
    inside &= off == 0 || off == 1 || off == w || off == w + 1;
  }
  return inside;
}

}  // namespace fastnn
