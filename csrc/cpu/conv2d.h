// 2-D convolution (cross-correlation, as PyTorch's conv2d) on NCHW images: forward, and the
// gradients of the input and of the weight. All arrays are C-contiguous; the ops layer checked
// every size, so a kernel never sees an empty dimension or a window that cannot fit.
#pragma once
#include <cstdint>

namespace fastnn {

using index_t = std::int64_t;

// The geometry of one call. x (n, ci, h, w); w (co, ci/groups, kh, kw); y (n, co, oh, ow).
// (ph, pw) is the top/left padding; the bottom/right padding is whatever makes (oh, ow) fit, so
// windows may reach past the bottom/right edge (zeros there) and input rows/columns past the last
// window are never read (their input gradient is 0: the transposed convolution's output padding).
struct ConvGeom {
  index_t n = 0, ci = 0, h = 0, w = 0;
  index_t co = 0, oh = 0, ow = 0;
  index_t kh = 1, kw = 1;
  index_t sh = 1, sw = 1, ph = 0, pw = 0, dh = 1, dw = 1;
  index_t groups = 1;
};

// y := conv(x, w) + b (b may be null).
template <class T>
void conv2d_forward(T* y, const T* x, const T* w, const T* b, const ConvGeom& g);

// dx := the gradient of sum(y * dy) with respect to x (all of dx is written).
template <class T>
void conv2d_backward_data(T* dx, const T* dy, const T* w, const ConvGeom& g);

// dw := the weight gradient (all of it is written); db (may be null) := dy summed over n, oh, ow.
template <class T>
void conv2d_backward_weight(T* dw, T* db, const T* dy, const T* x, const ConvGeom& g);


// ---- per-ISA loops: Winograd F(2x2, 3x3) transforms, direct planes (kernels/<isa>/conv_<isa>.cpp)
//
// The transforms are additions over 16 values per tile; compiled for the baseline ISA (SSE2,
// and GCC gathering the stride-2 columns one by one) they cost more than the GEMMs they feed, so
// each ISA file compiles the plain loops below with its own flags (so do the direct loops of
// depthwise layers: 4 lanes made them 2x slower than PyTorch). static: each ISA file keeps
// its own copy (DESIGN.md, build lessons).

template <class T>
struct ConvLoops {
  // One row of tiles: the four padded input rows r0, r0 + pitch, ... (tile t reads columns
  // 2t .. 2t+3) to v[xi*sv + t] = (B^T d B)[xi] for xi < 16.
  // tmp: 4 * (2*tw + 2) values of scratch.
  void (*input)(T* v, index_t sv, const T* r0, index_t pitch, index_t tw, T* tmp);
  // The products m[xi*sm + t] of one row of tiles to output rows y0 and y1 (y1 may be null:
  // an odd last row): (A^T m A) + bias, ow columns (the last tile half used when ow is odd).
  // tmp: 8 * tw values of scratch.
  void (*output)(T* y0, T* y1, const T* m, index_t sm, index_t tw, index_t ow, T bias, T* tmp);
  // The weight gradient's transform of one row of output-gradient tiles: rows d0 and d1 (d1 null
  // past the last row; the last tile's second column is 0 when ow is odd) to
  // z[xi*sz + t] = (A dy A^T)[xi], the adjoint of `output`.
  // tmp: 8 * tw values of scratch.
  void (*grad)(T* z, index_t sz, const T* d0, const T* d1, index_t tw, index_t ow, T* tmp);
  // Direct convolution of one plane (one input channel per output channel, g.kh x g.kw taps
  // w): y (oh x ow) := bias + sum over taps of w * shifted x (h x w).
  void (*direct_plane)(T* y, const T* x, const T* w, T bias, const ConvGeom& g);
  // Its adjoint: dx (h x w) += sum over taps of w * dy (oh x ow) scattered back.
  void (*direct_plane_adjoint)(T* dx, const T* dy, const T* w, const ConvGeom& g);
};

struct ConvIsaLoops {
  const char* name;
  ConvLoops<float> f32;
  ConvLoops<double> f64;
};

extern const ConvIsaLoops kConvLoopsGeneric;
#if defined(FASTNN_HAVE_X86_KERNELS)
extern const ConvIsaLoops kConvLoopsAvx2;
extern const ConvIsaLoops kConvLoopsAvx512;
#endif

// The outputs o in [0, n) whose input index o*s + off lies inside [0, size), as [lo, hi).
static inline void conv_inside(index_t off, index_t s, index_t size, index_t n, index_t& lo,
                               index_t& hi) {
  // floor division for a possibly negative numerator (s > 0)
  auto fdiv = [](index_t a, index_t b) { return a / b - ((a % b != 0) && (a < 0)); };
  lo = -fdiv(off, s);
  if (lo < 0) lo = 0;
  hi = fdiv(size - 1 - off, s) + 1;
  if (hi > n) hi = n;
  if (hi < lo) hi = lo;
}

// The direct loops: along each output row, one multiply-add per tap over the columns whose
// input is inside the image (unit stride for stride 1, which the compiler vectorizes).
template <class T>
static void direct_plane_loop(T* __restrict y, const T* __restrict x, const T* __restrict w,
                              T bias, const ConvGeom& g) {
  for (index_t oh = 0; oh < g.oh; ++oh) {
    T* yr = y + oh * g.ow;
    for (index_t q = 0; q < g.ow; ++q) yr[q] = bias;
    for (index_t i = 0; i < g.kh; ++i) {
      const index_t ih = oh * g.sh - g.ph + i * g.dh;
      if (ih < 0 || ih >= g.h) continue;
      const T* xr = x + ih * g.w;
      for (index_t j = 0; j < g.kw; ++j) {
        const T wv = w[i * g.kw + j];
        const index_t off = j * g.dw - g.pw;
        index_t lo, hi;
        conv_inside(off, g.sw, g.w, g.ow, lo, hi);
        if (g.sw == 1) {
          const T* s = xr + off;
          for (index_t q = lo; q < hi; ++q) yr[q] += wv * s[q];
        } else {
          for (index_t q = lo; q < hi; ++q) yr[q] += wv * xr[q * g.sw + off];
        }
      }
    }
  }
}

template <class T>
static void direct_plane_adjoint_loop(T* __restrict dx, const T* __restrict dy,
                                      const T* __restrict w, const ConvGeom& g) {
  for (index_t oh = 0; oh < g.oh; ++oh) {
    const T* yr = dy + oh * g.ow;
    for (index_t i = 0; i < g.kh; ++i) {
      const index_t ih = oh * g.sh - g.ph + i * g.dh;
      if (ih < 0 || ih >= g.h) continue;
      T* xr = dx + ih * g.w;
      for (index_t j = 0; j < g.kw; ++j) {
        const T wv = w[i * g.kw + j];
        const index_t off = j * g.dw - g.pw;
        index_t lo, hi;
        conv_inside(off, g.sw, g.w, g.ow, lo, hi);
        if (g.sw == 1) {
          T* s = xr + off;
          for (index_t q = lo; q < hi; ++q) s[q] += wv * yr[q];
        } else {
          for (index_t q = lo; q < hi; ++q) xr[q * g.sw + off] += wv * yr[q];
        }
      }
    }
  }
}

// B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1], applied to the rows (over the whole padded
// width, unit stride) and then to the columns (tile t reads columns 2t .. 2t+3 of tmp). ivdep:
// the 16 output rows never overlap, which the compiler cannot prove for a run-time sv.
template <class T>
static void wino_input_loop(T* __restrict v, index_t sv, const T* __restrict r0, index_t pitch,
                            index_t tw, T* __restrict tmp) {
  const T* r1 = r0 + pitch;
  const T* r2 = r1 + pitch;
  const T* r3 = r2 + pitch;
  const index_t wp = 2 * tw + 2;
  T* t0 = tmp;
  T* t1 = tmp + wp;
  T* t2 = t1 + wp;
  T* t3 = t2 + wp;
#pragma GCC ivdep
  for (index_t q = 0; q < wp; ++q) {
    t0[q] = r0[q] - r2[q];
    t1[q] = r1[q] + r2[q];
    t2[q] = r2[q] - r1[q];
    t3[q] = r1[q] - r3[q];
  }
  for (int k = 0; k < 4; ++k) {
    const T* tk = tmp + k * wp;
    T* v0 = v + 4 * k * sv;
    T* v1 = v0 + sv;
    T* v2 = v1 + sv;
    T* v3 = v2 + sv;
#pragma GCC ivdep
    for (index_t t = 0; t < tw; ++t) {
      const T a = tk[2 * t], b = tk[2 * t + 1], c = tk[2 * t + 2], e = tk[2 * t + 3];
      v0[t] = a - c;
      v1[t] = b + c;
      v2[t] = c - b;
      v3[t] = b - e;
    }
  }
}

// A^T = [1 1 1 0; 0 1 -1 -1]: first over the 4 rows of products (unit stride along the tiles,
// into tmp), then over the columns, stored interleaved into the two output rows.
template <class T>
static void wino_output_loop(T* __restrict y0, T* __restrict y1, const T* __restrict m,
                             index_t sm, index_t tw, index_t ow, T bias, T* __restrict tmp) {
  T* p[2][4];
  for (int k = 0; k < 2; ++k)
    for (int l = 0; l < 4; ++l) p[k][l] = tmp + (4 * k + l) * tw;
  for (int l = 0; l < 4; ++l) {
    const T* a = m + l * sm;
    const T* b = m + (4 + l) * sm;
    const T* c = m + (8 + l) * sm;
    const T* e = m + (12 + l) * sm;
    T* p0 = p[0][l];
    T* p1 = p[1][l];
#pragma GCC ivdep
    for (index_t t = 0; t < tw; ++t) {
      p0[t] = a[t] + b[t] + c[t];
      p1[t] = b[t] - c[t] - e[t];
    }
  }
  const index_t full = ow / 2;
  for (int k = 0; k < 2; ++k) {
    T* y = k == 0 ? y0 : y1;
    if (!y) break;
    const T* q0 = p[k][0];
    const T* q1 = p[k][1];
    const T* q2 = p[k][2];
    const T* q3 = p[k][3];
#pragma GCC ivdep
    for (index_t t = 0; t < full; ++t) {
      y[2 * t] = q0[t] + q1[t] + q2[t] + bias;
      y[2 * t + 1] = q1[t] - q2[t] - q3[t] + bias;
    }
    if (full < tw) y[2 * full] = q0[full] + q1[full] + q2[full] + bias;  // odd ow
  }
}

// A = [1 0; 1 1; 1 -1; 0 -1]: z = A d A^T for the 2x2 tile d, the rows first (over the whole
// width, unit stride, into tmp, zero-extended to 2*tw columns), then the columns.
template <class T>
static void wino_grad_loop(T* __restrict z, index_t sz, const T* __restrict d0,
                           const T* __restrict d1, index_t tw, index_t ow, T* __restrict tmp) {
  const index_t w2 = 2 * tw;
  T* r0 = tmp;
  T* r1 = r0 + w2;
  T* r2 = r1 + w2;
  T* r3 = r2 + w2;
  if (d1) {
#pragma GCC ivdep
    for (index_t q = 0; q < ow; ++q) {
      r0[q] = d0[q];
      r1[q] = d0[q] + d1[q];
      r2[q] = d0[q] - d1[q];
      r3[q] = -d1[q];
    }
  } else {
    for (index_t q = 0; q < ow; ++q) {
      r0[q] = d0[q];
      r1[q] = d0[q];
      r2[q] = d0[q];
      r3[q] = T(0);
    }
  }
  for (index_t q = ow; q < w2; ++q) r0[q] = r1[q] = r2[q] = r3[q] = T(0);
  for (int k = 0; k < 4; ++k) {
    const T* rk = tmp + k * w2;
    T* z0 = z + 4 * k * sz;
    T* z1 = z0 + sz;
    T* z2 = z1 + sz;
    T* z3 = z2 + sz;
#pragma GCC ivdep
    for (index_t t = 0; t < tw; ++t) {
      const T a = rk[2 * t], b = rk[2 * t + 1];
      z0[t] = a;
      z1[t] = a + b;
      z2[t] = a - b;
      z3[t] = -b;
    }
  }
}

}  // namespace fastnn
