// Max and average pooling. Every kernel is parallel over input planes (n * c), so each output
// and each input-gradient element has one writer and results never depend on the thread count.
// Windows are clipped to the image once per row of windows: padding is never materialized.
//
// The 2x2 stride-2 max pooling of CNNs runs per-ISA row kernels (kernels/<isa>/pool_<isa>.cpp):
// the compiler does not vectorize the stride-2 loads together with the int64 argmax and the NaN
// rule, and scalar code ran ~5x slower than the hand-vectorized row. Everything else is plain
// loops over output rows, the inner loop along the row so the compiler vectorizes the interior.
#include "cpu/pool.h"

#include <algorithm>
#include <cstring>
#include <limits>

#include "common/cpuid.h"
#include "common/fpenv.h"
#include "common/parallel.h"
#include "common/threading.h"
#include "common/workspace.h"

namespace fastnn {

namespace {

void max2x2_f32_generic(float* y, std::int64_t* am, const float* r0, const float* r1, index_t ow,
                        std::int64_t base, index_t w) {
  max2x2_scalar(y, am, r0, r1, 0, ow, base, w);
}

bool unpool2x2_f32_generic(float* d0, float* d1, const std::int64_t* am, const float* dy,
                           const float* gate, index_t ow, std::int64_t base, index_t w) {
  return unpool2x2_scalar(d0, d1, am, dy, gate, 0, ow, base, w);
}

template <class T>
void max_cell_generic(T* m, std::int64_t* am, const T* xr, index_t lo, index_t hi, index_t sw,
                      index_t off, std::int64_t base) {
  max_cell_loop<T>(m, am, xr, lo, hi, sw, off, base);
}

const PoolRowKernels& pool_rows() {
#if defined(FASTNN_HAVE_X86_KERNELS)
  switch (active_isa()) {
    case Isa::avx512: return kPoolRowsAvx512;
    case Isa::avx2: return kPoolRowsAvx2;
    default: break;
  }
#endif
  return kPoolRowsGeneric;
}

inline index_t floor_div(index_t a, index_t b) {  // b > 0
  const index_t q = a / b;
  return (a % b != 0 && a < 0) ? q - 1 : q;
}

// Outputs o in [0, n) whose input index o*s + off lies in [0, size), as [lo, hi).
inline void inside(index_t off, index_t s, index_t size, index_t n, index_t& lo, index_t& hi) {
  lo = std::max<index_t>(0, -floor_div(off, s));
  hi = std::min<index_t>(n, floor_div(size - 1 - off, s) + 1);
  if (hi < lo) hi = lo;
}

// Runs fn(plane) over all planes, a chunk holding about 64K window cells.
template <class F>
void for_planes(const PoolGeom& g, double cells_per_plane, F&& fn) {
  const double work = double(g.planes) * cells_per_plane;
  const index_t grain = std::max<index_t>(1, index_t(65536.0 / std::max(1.0, cells_per_plane)));
  const int nth = threads_for(work, 1 << 16);
  if (nth <= 1) {
    DenormalGuard guard;
    for (index_t p = 0; p < g.planes; ++p) fn(p);
    return;
  }
  parallel_range(g.planes, grain, nth, [&](index_t lo, index_t hi) {
    for (index_t p = lo; p < hi; ++p) fn(p);
  });
}

// A window's rows (or columns) along one axis: [a0, a1) inside the image, and the span of the
// window clipped to the padded input (PyTorch's count_include_pad divisor).
struct Span {
  index_t a0, a1, padded;
};
inline Span span(index_t o, index_t s, index_t p, index_t k, index_t size) {
  const index_t start = o * s - p;
  const index_t end = std::min(start + k, size + p);
  return Span{std::max<index_t>(start, 0), std::min(end, size), end - start};
}

}  // namespace

const PoolRowKernels kPoolRowsGeneric = {"generic", &max2x2_f32_generic, &max_cell_generic<float>,
                                         &max_cell_generic<double>, &unpool2x2_f32_generic};

template <class T>
void max_pool2x2_plane(T* y, std::int64_t* argmax, const T* x, index_t w, index_t oh, index_t ow) {
  const PoolRowKernels& K = pool_rows();
  for (index_t r = 0; r < oh; ++r) {
    const T* r0 = x + 2 * r * w;
    if constexpr (sizeof(T) == sizeof(float)) {
      K.max2x2_f32(y + r * ow, argmax + r * ow, r0, r0 + w, ow, 2 * r * w, w);
    } else {
      max2x2_scalar(y + r * ow, argmax + r * ow, r0, r0 + w, 0, ow, 2 * r * w, w);
    }
  }
}

// ---- max pooling -----------------------------------------------------------------------------

template <class T>
void max_pool2d_forward(T* y, std::int64_t* argmax, const T* x, const PoolGeom& g) {
  const index_t HW = g.h * g.w, P = g.oh * g.ow;
  const bool two = g.kh == 2 && g.kw == 2 && g.sh == 2 && g.sw == 2 && g.ph == 0 && g.pw == 0;
  const PoolRowKernels& K = pool_rows();
  for_planes(g, double(P) * double(g.kh * g.kw), [&](index_t pl) {
    const T* xp = x + pl * HW;
    T* yp = y + pl * P;
    std::int64_t* ap = argmax + pl * P;
    if (two) {
      max_pool2x2_plane(yp, ap, xp, g.w, g.oh, g.ow);
      return;
    }
    // Any other window: start every output of the row at -inf with the index of its window's
    // first cell inside the image, then visit the window cells in order, each along the whole
    // row of windows (the rule is strict, so a window of -inf keeps that first index).
    const auto cell = [&](T* m, std::int64_t* am, const T* xr, index_t lo, index_t hi,
                          index_t off, std::int64_t base) {
      if constexpr (sizeof(T) == sizeof(float)) {
        K.max_cell_f32(m, am, xr, lo, hi, g.sw, off, base);
      } else {
        K.max_cell_f64(m, am, xr, lo, hi, g.sw, off, base);
      }
    };
    for (index_t r = 0; r < g.oh; ++r) {
      const Span sh = span(r, g.sh, g.ph, g.kh, g.h);
      T* m = yp + r * g.ow;
      std::int64_t* am = ap + r * g.ow;
      for (index_t q = 0; q < g.ow; ++q) {
        m[q] = -std::numeric_limits<T>::infinity();
        am[q] = sh.a0 * g.w + std::min(std::max<index_t>(q * g.sw - g.pw, 0), g.w - 1);
      }
      for (index_t i = sh.a0; i < sh.a1; ++i) {
        const T* xr = xp + i * g.w;
        for (index_t j = 0; j < g.kw; ++j) {
          const index_t off = j - g.pw;
          index_t lo, hi;
          inside(off, g.sw, g.w, g.ow, lo, hi);
          if (hi > lo) cell(m, am, xr, lo, hi, off, i * g.w);
        }
      }
    }
  });
}

// One plane of max_pool2d_backward: d (h x w) from its argmax, dy and gate (may be null) planes
// (oh x ow).
template <class T>
void max_unpool_plane(T* d, const std::int64_t* a, const T* s, const T* gt, index_t h, index_t w,
                      index_t oh, index_t ow) {
  const index_t HW = h * w, P = oh * ow;
  // The kernel is not told the windows. When the plane holds a 2x2 block per output, it first
  // tries the block-wise write (right whenever every argmax lies in its own block, which 2x2
  // stride-2 windows guarantee); a plane where one does not is redone by scattering.
  const bool blocks = h >= 2 * oh && w >= 2 * ow;
  if (blocks) {
    const PoolRowKernels& K = pool_rows();
    bool inside = true;
    for (index_t r = 0; r < oh && inside; ++r) {
      T* d0 = d + 2 * r * w;
      const std::int64_t base = 2 * r * w;
      const T* gr = gt ? gt + r * ow : nullptr;
      if constexpr (sizeof(T) == sizeof(float)) {
        inside = K.unpool2x2_f32(d0, d0 + w, a + r * ow, s + r * ow, gr, ow, base, w);
      } else {
        inside = unpool2x2_scalar(d0, d0 + w, a + r * ow, s + r * ow, gr, 0, ow, base, w);
      }
      if (w > 2 * ow) {  // columns past the last block
        std::memset(d0 + 2 * ow, 0, std::size_t(w - 2 * ow) * sizeof(T));
        std::memset(d0 + w + 2 * ow, 0, std::size_t(w - 2 * ow) * sizeof(T));
      }
    }
    if (inside) {
      if (h > 2 * oh) std::memset(d + 2 * oh * w, 0, std::size_t((h - 2 * oh) * w) * sizeof(T));
      return;
    }
  }
  std::memset(d, 0, std::size_t(HW) * sizeof(T));
  if (gt) {
    for (index_t k = 0; k < P; ++k) d[a[k]] += s[k] * (gt[k] > T(0) ? T(1) : T(0));
  } else {
    for (index_t k = 0; k < P; ++k) d[a[k]] += s[k];
  }
}

template <class T>
void max_pool2d_backward(T* dx, const std::int64_t* argmax, const T* dy, const T* gate,
                         const PoolGeom& g) {
  const index_t HW = g.h * g.w, P = g.oh * g.ow;
  for_planes(g, double(HW + P), [&](index_t pl) {
    max_unpool_plane(dx + pl * HW, argmax + pl * P, dy + pl * P, gate ? gate + pl * P : nullptr,
                     g.h, g.w, g.oh, g.ow);
  });
}

// ---- average pooling -------------------------------------------------------------------------

template <class T>
void avg_pool2d_forward(T* y, const T* x, const PoolGeom& g, bool count_include_pad) {
  const index_t HW = g.h * g.w, P = g.oh * g.ow;
  for_planes(g, double(P) * double(g.kh * g.kw), [&](index_t pl) {
    const T* xp = x + pl * HW;
    T* yp = y + pl * P;
    for (index_t r = 0; r < g.oh; ++r) {
      const Span sh = span(r, g.sh, g.ph, g.kh, g.h);
      T* yr = yp + r * g.ow;
      for (index_t q = 0; q < g.ow; ++q) yr[q] = T(0);
      // The row sums window cell by window cell, each along the whole row of windows: the loop
      // over q is a plain (strided) vector add.
      for (index_t i = sh.a0; i < sh.a1; ++i) {
        const T* xr = xp + i * g.w;
        for (index_t j = 0; j < g.kw; ++j) {
          const index_t off = j - g.pw;
          index_t lo, hi;
          inside(off, g.sw, g.w, g.ow, lo, hi);
          if (g.sw == 1) {
            const T* s = xr + off;
            for (index_t q = lo; q < hi; ++q) yr[q] += s[q];
          } else {
            for (index_t q = lo; q < hi; ++q) yr[q] += xr[q * g.sw + off];
          }
        }
      }
      for (index_t q = 0; q < g.ow; ++q) {
        const Span sw = span(q, g.sw, g.pw, g.kw, g.w);
        const index_t count = count_include_pad ? sh.padded * sw.padded
                                                : (sh.a1 - sh.a0) * (sw.a1 - sw.a0);
        yr[q] = yr[q] / T(count);
      }
    }
  });
}

template <class T>
void avg_pool2d_backward(T* dx, const T* dy, const PoolGeom& g, bool count_include_pad) {
  const index_t HW = g.h * g.w, P = g.oh * g.ow;
  for_planes(g, double(P) * double(g.kh * g.kw) + double(HW), [&](index_t pl) {
    T* xp = dx + pl * HW;
    const T* yp = dy + pl * P;
    std::memset(xp, 0, std::size_t(HW) * sizeof(T));
    // This thread's row of shares (dy / divisor): its own scratch, since chunks run on several.
    T* share = static_cast<T*>(scratch(kScratchOp, std::size_t(g.ow) * sizeof(T)));
    for (index_t r = 0; r < g.oh; ++r) {
      const Span sh = span(r, g.sh, g.ph, g.kh, g.h);
      const T* yr = yp + r * g.ow;
      for (index_t q = 0; q < g.ow; ++q) {
        const Span sw = span(q, g.sw, g.pw, g.kw, g.w);
        const index_t count = count_include_pad ? sh.padded * sw.padded
                                                : (sh.a1 - sh.a0) * (sw.a1 - sw.a0);
        share[q] = yr[q] / T(count);
      }
      for (index_t i = sh.a0; i < sh.a1; ++i) {
        T* xr = xp + i * g.w;
        for (index_t j = 0; j < g.kw; ++j) {
          const index_t off = j - g.pw;
          index_t lo, hi;
          inside(off, g.sw, g.w, g.ow, lo, hi);
          if (g.sw == 1) {
            T* d = xr + off;
            for (index_t q = lo; q < hi; ++q) d[q] += share[q];
          } else {
            for (index_t q = lo; q < hi; ++q) xr[q * g.sw + off] += share[q];
          }
        }
      }
    }
  });
}

template void max_pool2x2_plane<float>(float*, std::int64_t*, const float*, index_t, index_t,
                                        index_t);
template void max_pool2x2_plane<double>(double*, std::int64_t*, const double*, index_t, index_t,
                                         index_t);
template void max_unpool_plane<float>(float*, const std::int64_t*, const float*, const float*,
                                      index_t, index_t, index_t, index_t);
template void max_unpool_plane<double>(double*, const std::int64_t*, const double*, const double*,
                                       index_t, index_t, index_t, index_t);
template void max_pool2d_forward<float>(float*, std::int64_t*, const float*, const PoolGeom&);
template void max_pool2d_forward<double>(double*, std::int64_t*, const double*, const PoolGeom&);
template void max_pool2d_backward<float>(float*, const std::int64_t*, const float*,
                                         const float*, const PoolGeom&);
template void max_pool2d_backward<double>(double*, const std::int64_t*, const double*,
                                          const double*, const PoolGeom&);
template void avg_pool2d_forward<float>(float*, const float*, const PoolGeom&, bool);
template void avg_pool2d_forward<double>(double*, const double*, const PoolGeom&, bool);
template void avg_pool2d_backward<float>(float*, const float*, const PoolGeom&, bool);
template void avg_pool2d_backward<double>(double*, const double*, const PoolGeom&, bool);

}  // namespace fastnn
