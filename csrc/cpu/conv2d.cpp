// 2-D convolution on the packed GEMM (cpu/gemm) and the thread pool (common/parallel.h).
//
// Three paths, chosen from the shape only (never from the thread count, so that results are
// bit-identical at any number of threads):
//  - direct loops when every output channel reads one input channel (depthwise, or a single
//    input channel): the "GEMM" would have k = kh*kw, far too short to pay for a tile;
//  - pointwise (1x1, stride 1, no padding): the input plane already is the GEMM operand;
//  - im2col + GEMM for everything else, one band of output rows of one image at a time, so that
//    the column buffer (K x pixels) stays in L2 between being written and being multiplied.
//    Stride 1 builds its columns from a padded copy of the band ("row-pitch" columns, below),
//    which turns im2col into one contiguous copy per column-buffer row.
// The backward of the data is, for stride 1, the forward convolution of dy with the flipped,
// transposed weights (no scatter, every dx element written once); for larger strides it is
// w^T @ dy followed by a col2im scatter. The weight gradient is dy @ cols^T summed over the
// batch: a fixed number of batch chunks (set by the shape) each sum into a private copy, and the
// copies are added in chunk order at the end.
#include "cpu/conv2d.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>

#include "common/fpenv.h"
#include "common/parallel.h"
#include "common/threading.h"
#include "common/workspace.h"
#include "cpu/gemm/gemm.h"

namespace fastnn {
namespace {

// ---- small helpers ---------------------------------------------------------------------------

inline index_t floor_div(index_t a, index_t b) {  // b > 0
  const index_t q = a / b;
  return (a % b != 0 && a < 0) ? q - 1 : q;
}
inline index_t ceil_div(index_t a, index_t b) { return -floor_div(-a, b); }

// The outputs o in [0, n) whose input index o*s + off lies inside [0, size), as [lo, hi).
inline void inside(index_t off, index_t s, index_t size, index_t n, index_t& lo, index_t& hi) {
  lo = std::max<index_t>(0, ceil_div(-off, s));
  hi = std::min<index_t>(n, floor_div(size - 1 - off, s) + 1);
  if (hi < lo) hi = lo;
}

template <class T>
inline void zero(T* p, index_t n) {
  if (n > 0) std::memset(p, 0, std::size_t(n) * sizeof(T));
}

// Buffers a whole job shares (transformed weights, per-chunk partial sums), per calling thread
// and grow-only. They cannot come from the kScratchOp slot: the caller runs chunks too (slot 0),
// and a chunk takes its own thread's kScratchOp buffer for its column block.
struct JobBuffer {
  void* p = nullptr;
  std::size_t size = 0;
  ~JobBuffer() { std::free(p); }
};
thread_local JobBuffer t_job;

void* job_buffer(std::size_t bytes) {
  if (bytes > t_job.size) {
    std::free(t_job.p);
    const std::size_t size = (bytes + 4095) & ~std::size_t(4095);
    t_job.p = std::aligned_alloc(64, size);
    t_job.size = t_job.p ? size : 0;
    if (!t_job.p) throw std::bad_alloc();
  }
  return t_job.p;
}

template <class T>
T* op_scratch(index_t elems) {
  return static_cast<T*>(scratch(kScratchOp, std::size_t(std::max<index_t>(elems, 1)) * sizeof(T)));
}

// C (m x n, row stride rsc, unit columns) := beta*C + A @ B (+ bias[i] per row).
template <class T>
void mm(index_t m, index_t n, index_t k, const T* a, index_t rsa, index_t csa, const T* b,
        index_t rsb, index_t csb, T* c, index_t rsc, T beta, const T* row_bias) {
  GemmProblem<T> p;
  p.m = m; p.n = n; p.k = k;
  p.beta = beta;
  p.a = a; p.rsa = rsa; p.csa = csa;
  p.b = b; p.rsb = rsb; p.csb = csb;
  p.c = c; p.rsc = rsc; p.csc = 1;
  p.ep.bias = row_bias;
  p.ep.bias_axis = 0;
  gemm(p);
}

// Runs body(t) for t in [0, tasks). With enough tasks for every thread, the tasks run in
// parallel and each GEMM inside runs inline on its thread (a job started from a chunk does);
// with few tasks (batch 1, small images) they run one after the other and each GEMM threads
// itself. Either way every output is computed by the same calls in the same order.
template <class F>
void for_tasks(index_t tasks, double work, F&& body) {
  const int nth = threads_for(work, 1 << 17);
  if (nth > 1 && tasks >= 2 * index_t(nth)) {
    parallel_for(tasks, nth, [&](std::int64_t t, int) { body(t); });
  } else {
    DenormalGuard guard;
    for (index_t t = 0; t < tasks; ++t) body(t);
  }
}

struct Derived {
  index_t cgi, cgo, kk, K, P, HW;
  explicit Derived(const ConvGeom& g)
      : cgi(g.ci / g.groups), cgo(g.co / g.groups), kk(g.kh * g.kw), K(cgi * g.kh * g.kw),
        P(g.oh * g.ow), HW(g.h * g.w) {}
};

bool pointwise(const ConvGeom& g) {
  return g.kh == 1 && g.kw == 1 && g.sh == 1 && g.sw == 1 && g.ph == 0 && g.pw == 0 &&
         g.oh == g.h && g.ow == g.w;
}

// Output rows per band: the column block (K x rows*pitch) near `kColBytes`, and at least about
// 128 pixels so that the GEMM's n is worth tiling (a 7x7 image with 4608-long columns is one
// band). kColBytes is an L2 budget: measured on Sapphire Rapids-class cores (2 MiB L2), see the
// benchmark notes at the end of this file.
constexpr double kColBytes = 384.0 * 1024.0;

index_t band_rows(index_t K, index_t pitch, index_t rows, std::size_t item) {
  const double pix = std::max(128.0, kColBytes / (double(K) * double(item)));
  index_t r = static_cast<index_t>(pix / double(pitch));
  return std::min(std::max<index_t>(r, 1), rows);
}

// ---- im2col / col2im over a band of output pixels (any stride) -------------------------------

// cols (K x np) for the output pixels [p0, p0 + np) of one image, from its cgi channels x_img.
template <class T>
void im2col(T* cols, const T* x_img, const ConvGeom& g, index_t cgi, index_t p0, index_t np) {
  const index_t HW = g.h * g.w;
  for (index_t c = 0; c < cgi; ++c) {
    const T* xc = x_img + c * HW;
    for (index_t i = 0; i < g.kh; ++i) {
      for (index_t j = 0; j < g.kw; ++j) {
        T* dst = cols + ((c * g.kh + i) * g.kw + j) * np;
        const index_t coff = j * g.dw - g.pw;
        index_t lo, hi;
        inside(coff, g.sw, g.w, g.ow, lo, hi);
        for (index_t p = p0, end = p0 + np; p < end;) {
          const index_t oh = p / g.ow, ow0 = p - oh * g.ow;
          const index_t ow1 = std::min(g.ow, ow0 + (end - p));
          T* d = dst + (p - p0) - ow0;  // d[ow] is pixel (oh, ow)
          const index_t ih = oh * g.sh - g.ph + i * g.dh;
          if (ih < 0 || ih >= g.h) {
            zero(d + ow0, ow1 - ow0);
          } else {
            const index_t a = std::min(std::max(lo, ow0), ow1), b = std::min(std::max(hi, a), ow1);
            zero(d + ow0, a - ow0);
            const T* src = xc + ih * g.w + coff;
            if (g.sw == 1) {
              if (b > a) std::memcpy(d + a, src + a, std::size_t(b - a) * sizeof(T));
            } else {
              for (index_t ow = a; ow < b; ++ow) d[ow] = src[ow * g.sw];
            }
            zero(d + b, ow1 - b);
          }
          p += ow1 - ow0;
        }
      }
    }
  }
}

// dx_img (cgi channels) += col2im(dcols) for the pixels [p0, p0 + np); channels [c0, c1) only.
template <class T>
void col2im(T* dx_img, const T* dcols, const ConvGeom& g, index_t c0, index_t c1, index_t p0,
            index_t np) {
  const index_t HW = g.h * g.w;
  for (index_t c = c0; c < c1; ++c) {
    T* xc = dx_img + c * HW;
    for (index_t i = 0; i < g.kh; ++i) {
      for (index_t j = 0; j < g.kw; ++j) {
        const T* src = dcols + ((c * g.kh + i) * g.kw + j) * np;
        const index_t coff = j * g.dw - g.pw;
        index_t lo, hi;
        inside(coff, g.sw, g.w, g.ow, lo, hi);
        for (index_t p = p0, end = p0 + np; p < end;) {
          const index_t oh = p / g.ow, ow0 = p - oh * g.ow;
          const index_t ow1 = std::min(g.ow, ow0 + (end - p));
          const T* s = src + (p - p0) - ow0;
          const index_t ih = oh * g.sh - g.ph + i * g.dh;
          if (ih >= 0 && ih < g.h) {
            const index_t a = std::min(std::max(lo, ow0), ow1), b = std::min(std::max(hi, a), ow1);
            T* d = xc + ih * g.w + coff;
            if (g.sw == 1) {
              for (index_t ow = a; ow < b; ++ow) d[ow] += s[ow];
            } else {
              for (index_t ow = a; ow < b; ++ow) d[ow * g.sw] += s[ow];
            }
          }
          p += ow1 - ow0;
        }
      }
    }
  }
}

// ---- stride 1: row-pitch columns ------------------------------------------------------------
//
// With stride 1, lay the output band out with the row pitch of the padded input, Wp = ow +
// (kw-1)*dw: output (r, o) sits at q = r*Wp + o. Then the column-buffer row of (c, i, j) is the
// padded band read from offset i*dh*Wp + j*dw, one contiguous run: im2col becomes kh*kw*cgi plain
// copies instead of a zero/copy/zero triple per output row (3-4x less time at 56x56, where that
// bookkeeping dominated). The price is Wp - ow junk columns per row, computed and dropped
// (2 of 58 at 56x56, 3x3).

struct PitchBand {
  index_t r0, rows;  // output rows [r0, r0 + rows)
  index_t Wp, Rp;    // padded pitch and padded band rows
  index_t Q;         // columns of the GEMM: (rows - 1) * Wp + ow
};

PitchBand pitch_band(const ConvGeom& g, index_t r0, index_t rows) {
  PitchBand b;
  b.r0 = r0;
  b.rows = rows;
  b.Wp = g.ow + (g.kw - 1) * g.dw;
  b.Rp = rows + (g.kh - 1) * g.dh;
  b.Q = (rows - 1) * b.Wp + g.ow;
  return b;
}

// The band's input rows and columns, zero where they fall outside the image: xp (cgi x Rp x Wp).
template <class T>
void pad_band(T* xp, const T* x_img, const ConvGeom& g, index_t cgi, const PitchBand& b) {
  const index_t HW = g.h * g.w;
  // Padded column t is input column t - pw.
  const index_t t0 = std::min(std::max<index_t>(g.pw, 0), b.Wp);
  const index_t t1 = std::min(std::max<index_t>(g.pw + g.w, t0), b.Wp);
  for (index_t c = 0; c < cgi; ++c) {
    for (index_t rr = 0; rr < b.Rp; ++rr) {
      T* d = xp + (c * b.Rp + rr) * b.Wp;
      const index_t ih = b.r0 - g.ph + rr;
      if (ih < 0 || ih >= g.h) {
        zero(d, b.Wp);
        continue;
      }
      zero(d, t0);
      std::memcpy(d + t0, x_img + c * HW + ih * g.w + (t0 - g.pw), std::size_t(t1 - t0) * sizeof(T));
      zero(d + t1, b.Wp - t1);
    }
  }
}

template <class T>
void pitch_cols(T* cols, const T* xp, const ConvGeom& g, index_t cgi, const PitchBand& b) {
  for (index_t c = 0; c < cgi; ++c)
    for (index_t i = 0; i < g.kh; ++i)
      for (index_t j = 0; j < g.kw; ++j)
        std::memcpy(cols + ((c * g.kh + i) * g.kw + j) * b.Q,
                    xp + (c * b.Rp + i * g.dh) * b.Wp + j * g.dw, std::size_t(b.Q) * sizeof(T));
}

// ---- direct loops: one input channel per output channel -------------------------------------

template <class T>
void direct_forward(T* y, const T* x, const T* w, const T* bias, const ConvGeom& g) {
  const Derived d(g);
  const double work = double(g.n) * double(g.co) * double(d.P) * double(d.kk);
  const index_t planes = g.n * g.co;
  // Planes per chunk: about 32K multiply-adds each, so claiming one costs nothing in comparison.
  const index_t grain = std::max<index_t>(1, index_t(32768.0 / std::max(1.0, double(d.P * d.kk))));
  parallel_range(planes, grain, threads_for(work), [&](index_t lo, index_t hi) {
    for (index_t pl = lo; pl < hi; ++pl) {
      const index_t n = pl / g.co, co = pl % g.co, c = co / d.cgo;
      const T* xp = x + (n * g.ci + c) * d.HW;
      const T* wp = w + co * d.kk;
      T* yp = y + pl * d.P;
      const T b0 = bias ? bias[co] : T(0);
      for (index_t oh = 0; oh < g.oh; ++oh) {
        T* yr = yp + oh * g.ow;
        for (index_t ow = 0; ow < g.ow; ++ow) yr[ow] = b0;
        for (index_t i = 0; i < g.kh; ++i) {
          const index_t ih = oh * g.sh - g.ph + i * g.dh;
          if (ih < 0 || ih >= g.h) continue;
          const T* xr = xp + ih * g.w;
          for (index_t j = 0; j < g.kw; ++j) {
            const T wv = wp[i * g.kw + j];
            const index_t coff = j * g.dw - g.pw;
            index_t lo2, hi2;
            inside(coff, g.sw, g.w, g.ow, lo2, hi2);
            if (g.sw == 1) {
              const T* s = xr + coff;
              for (index_t ow = lo2; ow < hi2; ++ow) yr[ow] += wv * s[ow];
            } else {
              for (index_t ow = lo2; ow < hi2; ++ow) yr[ow] += wv * xr[ow * g.sw + coff];
            }
          }
        }
      }
    }
  });
}

template <class T>
void direct_backward_data(T* dx, const T* dy, const T* w, const ConvGeom& g) {
  const Derived d(g);
  const double work = double(g.n) * double(g.co) * double(d.P) * double(d.kk);
  const index_t planes = g.n * g.ci;
  const index_t grain =
      std::max<index_t>(1, index_t(32768.0 / std::max(1.0, double(d.cgo * d.P * d.kk))));
  parallel_range(planes, grain, threads_for(work), [&](index_t lo, index_t hi) {
    for (index_t pl = lo; pl < hi; ++pl) {
      const index_t n = pl / g.ci, c = pl % g.ci;  // cgi == 1: input channel c is group c
      T* xp = dx + pl * d.HW;
      zero(xp, d.HW);
      for (index_t co = c * d.cgo; co < (c + 1) * d.cgo; ++co) {
        const T* wp = w + co * d.kk;
        const T* yp = dy + (n * g.co + co) * d.P;
        for (index_t oh = 0; oh < g.oh; ++oh) {
          const T* yr = yp + oh * g.ow;
          for (index_t i = 0; i < g.kh; ++i) {
            const index_t ih = oh * g.sh - g.ph + i * g.dh;
            if (ih < 0 || ih >= g.h) continue;
            T* xr = xp + ih * g.w;
            for (index_t j = 0; j < g.kw; ++j) {
              const T wv = wp[i * g.kw + j];
              const index_t coff = j * g.dw - g.pw;
              index_t lo2, hi2;
              inside(coff, g.sw, g.w, g.ow, lo2, hi2);
              if (g.sw == 1) {
                T* s = xr + coff;
                for (index_t ow = lo2; ow < hi2; ++ow) s[ow] += wv * yr[ow];
              } else {
                for (index_t ow = lo2; ow < hi2; ++ow) xr[ow * g.sw + coff] += wv * yr[ow];
              }
            }
          }
        }
      }
    }
  });
}

// sum_i a[i] * b[i*s], in eight independent partial sums (so that it vectorizes without
// reassociating anything the source does not say) and then a fixed tree.
template <class T>
inline double dot_strided(const T* a, const T* b, index_t s, index_t n) {
  T acc[8] = {T(0), T(0), T(0), T(0), T(0), T(0), T(0), T(0)};
  index_t i = 0;
  if (s == 1) {
    for (; i + 8 <= n; i += 8)
      for (int l = 0; l < 8; ++l) acc[l] += a[i + l] * b[i + l];
  } else {
    for (; i + 8 <= n; i += 8)
      for (int l = 0; l < 8; ++l) acc[l] += a[i + l] * b[(i + l) * s];
  }
  for (; i < n; ++i) acc[i & 7] += a[i] * b[i * s];
  return double((acc[0] + acc[4]) + (acc[1] + acc[5])) + double((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

template <class T>
void direct_backward_weight(T* dw, const T* dy, const T* x, const ConvGeom& g) {
  const Derived d(g);
  const double work = double(g.n) * double(g.co) * double(d.P) * double(d.kk);
  // One output channel per chunk, its whole batch sum inside: one writer per weight, no partials.
  parallel_range(g.co, 1, threads_for(work), [&](index_t lo, index_t hi) {
    for (index_t co = lo; co < hi; ++co) {
      const index_t c = co / d.cgo;
      for (index_t i = 0; i < g.kh; ++i) {
        for (index_t j = 0; j < g.kw; ++j) {
          const index_t coff = j * g.dw - g.pw;
          index_t lo2, hi2;
          inside(coff, g.sw, g.w, g.ow, lo2, hi2);
          double s = 0.0;
          for (index_t n = 0; n < g.n; ++n) {
            const T* xp = x + (n * g.ci + c) * d.HW;
            const T* yp = dy + (n * g.co + co) * d.P;
            for (index_t oh = 0; oh < g.oh; ++oh) {
              const index_t ih = oh * g.sh - g.ph + i * g.dh;
              if (ih < 0 || ih >= g.h || hi2 <= lo2) continue;
              s += dot_strided(yp + oh * g.ow + lo2, xp + ih * g.w + lo2 * g.sw + coff, g.sw,
                               hi2 - lo2);
            }
          }
          dw[co * d.kk + i * g.kw + j] = T(s);
        }
      }
    }
  });
}

// ---- forward ---------------------------------------------------------------------------------

// The weights as the GEMMs want them: per group a K x cgo matrix, wk[grp][kk][co]. Read as the
// broadcast operand of y = w @ cols (rsa = 1, csa = cgo), or as the vector operand once the GEMM
// turns the product around to y^T = cols^T @ w^T (which it does when cgo is not a multiple of its
// 12-row tile, 64 included): unit-stride along co, the GEMM then reads it in place. In the
// (co, cgi, kh, kw) layout it would repack all the weights on every call: 37K elements against a
// band's 4M multiply-adds, ~15% of the forward at 64 channels.
template <class T>
void to_k_major(T* wk, const T* w, const ConvGeom& g) {
  const Derived d(g);
  for (index_t grp = 0; grp < g.groups; ++grp)
    for (index_t co = 0; co < d.cgo; ++co) {
      const T* src = w + (grp * d.cgo + co) * d.K;
      T* dst = wk + grp * d.K * d.cgo + co;
      for (index_t kk = 0; kk < d.K; ++kk) dst[kk * d.cgo] = src[kk];
    }
}

// y := conv(x, w) + bias for cgi > 1, with w given K-major (to_k_major).
template <class T>
void forward_gemm(T* y, const T* x, const T* wk, const T* bias, const ConvGeom& g) {
  const Derived d(g);
  const double work = double(g.n) * double(g.co) * double(d.P) * double(d.K);
  const bool pw1 = pointwise(g);
  const bool pitch = !pw1 && g.sh == 1 && g.sw == 1;
  const index_t Wp = g.ow + (g.kw - 1) * g.dw;
  const index_t R = band_rows(d.K, pitch ? Wp : g.ow, g.oh, sizeof(T));
  const index_t bands = (g.oh + R - 1) / R;

  for_tasks(g.n * bands, work, [&](index_t t) {
    const index_t n = t / bands, r0 = (t % bands) * R, rows = std::min(R, g.oh - r0);
    const T* x_img = x + n * g.ci * d.HW;
    T* y_img = y + n * g.co * d.P;
    if (pw1) {
      const index_t p0 = r0 * g.ow, np = rows * g.ow;
      for (index_t grp = 0; grp < g.groups; ++grp)
        mm<T>(d.cgo, np, d.K, wk + grp * d.K * d.cgo, 1, d.cgo, x_img + grp * d.cgi * d.HW + p0,
              d.HW, 1, y_img + grp * d.cgo * d.P + p0, d.P, T(0),
              bias ? bias + grp * d.cgo : nullptr);
      return;
    }
    if (pitch) {
      const PitchBand b = pitch_band(g, r0, rows);
      const index_t xp_elems = d.cgi * b.Rp * b.Wp;
      T* ws = op_scratch<T>(xp_elems + d.K * b.Q + d.cgo * b.Q);
      T* xp = ws;
      T* cols = xp + xp_elems;
      T* yb = cols + d.K * b.Q;
      for (index_t grp = 0; grp < g.groups; ++grp) {
        pad_band(xp, x_img + grp * d.cgi * d.HW, g, d.cgi, b);
        pitch_cols(cols, xp, g, d.cgi, b);
        mm<T>(d.cgo, b.Q, d.K, wk + grp * d.K * d.cgo, 1, d.cgo, cols, b.Q, 1, yb, b.Q, T(0),
              bias ? bias + grp * d.cgo : nullptr);
        for (index_t co = 0; co < d.cgo; ++co) {
          T* yo = y_img + (grp * d.cgo + co) * d.P + r0 * g.ow;
          const T* src = yb + co * b.Q;
          for (index_t r = 0; r < rows; ++r)
            std::memcpy(yo + r * g.ow, src + r * b.Wp, std::size_t(g.ow) * sizeof(T));
        }
      }
      return;
    }
    const index_t p0 = r0 * g.ow, np = rows * g.ow;
    T* cols = op_scratch<T>(d.K * np);
    for (index_t grp = 0; grp < g.groups; ++grp) {
      im2col(cols, x_img + grp * d.cgi * d.HW, g, d.cgi, p0, np);
      mm<T>(d.cgo, np, d.K, wk + grp * d.K * d.cgo, 1, d.cgo, cols, np, 1,
            y_img + grp * d.cgo * d.P + p0, d.P, T(0), bias ? bias + grp * d.cgo : nullptr);
    }
  });
}

template <class T>
void forward_impl(T* y, const T* x, const T* w, const T* bias, const ConvGeom& g) {
  const Derived d(g);
  if (d.cgi == 1) {
    direct_forward(y, x, w, bias, g);
    return;
  }
  T* wk = static_cast<T*>(job_buffer(std::size_t(g.co * d.K) * sizeof(T)));
  to_k_major(wk, w, g);
  forward_gemm(y, x, wk, bias, g);
}

// ---- backward of the data ----------------------------------------------------------------------

template <class T>
void backward_data_impl(T* dx, const T* dy, const T* w, const ConvGeom& g) {
  const Derived d(g);
  if (d.cgi == 1) {
    direct_backward_data(dx, dy, w, g);
    return;
  }
  const double work = double(g.n) * double(g.co) * double(d.P) * double(d.K);
  if (pointwise(g)) {  // dx = w^T @ dy per image and group, in bands of pixels
    const index_t R = band_rows(d.cgo, g.ow, g.oh, sizeof(T));
    const index_t bands = (g.oh + R - 1) / R;
    for_tasks(g.n * bands, work, [&](index_t t) {
      const index_t n = t / bands, r0 = (t % bands) * R, rows = std::min(R, g.oh - r0);
      const index_t p0 = r0 * g.ow, np = rows * g.ow;
      for (index_t grp = 0; grp < g.groups; ++grp)
        mm<T>(d.cgi, np, d.cgo, w + grp * d.cgo * d.K, 1, d.K,
              dy + (n * g.co + grp * d.cgo) * d.P + p0, d.P, 1,
              dx + (n * g.ci + grp * d.cgi) * d.HW + p0, d.HW, T(0), nullptr);
    });
    return;
  }
  if (g.sh == 1 && g.sw == 1 && d.cgo > 1) {
    // dx is the stride-1 correlation of dy with w flipped in both spatial axes and with the
    // channel roles swapped within each group, over padding (k-1)*d - p (negative: a crop):
    // every dx element is written once, no scatter and no zeroing. (With cgo == 1 that
    // correlation would have one input channel per group: the col2im path below serves it.)
    ConvGeom t;
    t.n = g.n; t.ci = g.co; t.h = g.oh; t.w = g.ow;
    t.co = g.ci; t.oh = g.h; t.ow = g.w;
    t.kh = g.kh; t.kw = g.kw; t.sh = 1; t.sw = 1; t.dh = g.dh; t.dw = g.dw;
    t.ph = (g.kh - 1) * g.dh - g.ph;
    t.pw = (g.kw - 1) * g.dw - g.pw;
    t.groups = g.groups;
    // Its K-major weights: wk[grp][(co*kh + i)*kw + j][c] = w[grp*cgo + co][c][kh-1-i][kw-1-j].
    const index_t Kt = d.cgo * d.kk;
    T* wk = static_cast<T*>(job_buffer(std::size_t(g.ci * Kt) * sizeof(T)));
    for (index_t grp = 0; grp < g.groups; ++grp)
      for (index_t co = 0; co < d.cgo; ++co)
        for (index_t i = 0; i < g.kh; ++i)
          for (index_t j = 0; j < g.kw; ++j) {
            T* dst = wk + (grp * Kt + (co * g.kh + i) * g.kw + j) * d.cgi;
            const T* src = w + (grp * d.cgo + co) * d.K + (g.kh - 1 - i) * g.kw + (g.kw - 1 - j);
            for (index_t c = 0; c < d.cgi; ++c) dst[c] = src[c * d.kk];
          }
    forward_gemm<T>(dx, dy, wk, nullptr, t);
    return;
  }
  // Larger strides: dcols = w^T @ dy per band, scattered back with col2im. An image's bands
  // overlap in dx, so a task is a whole image (alone: the GEMMs and the scatter thread instead).
  const index_t R = band_rows(d.K, g.ow, g.oh, sizeof(T));
  const index_t bands = (g.oh + R - 1) / R;
  const int nth = threads_for(work, 1 << 17);
  auto image = [&](index_t n, bool inner_parallel) {
    T* dx_img = dx + n * g.ci * d.HW;
    zero(dx_img, g.ci * d.HW);
    T* dcols = op_scratch<T>(d.K * R * g.ow);
    for (index_t bnd = 0; bnd < bands; ++bnd) {
      const index_t r0 = bnd * R, rows = std::min(R, g.oh - r0);
      const index_t p0 = r0 * g.ow, np = rows * g.ow;
      for (index_t grp = 0; grp < g.groups; ++grp) {
        mm<T>(d.K, np, d.cgo, w + grp * d.cgo * d.K, 1, d.K,
              dy + (n * g.co + grp * d.cgo) * d.P + p0, d.P, 1, dcols, np, T(0), nullptr);
        T* dxg = dx_img + grp * d.cgi * d.HW;
        if (inner_parallel) {
          parallel_range(d.cgi, 1, nth, [&](index_t c0, index_t c1) {
            col2im(dxg, dcols, g, c0, c1, p0, np);
          });
        } else {
          col2im(dxg, dcols, g, 0, d.cgi, p0, np);
        }
      }
    }
  };
  if (nth > 1 && g.n >= 2 * index_t(nth)) {
    parallel_for(g.n, nth, [&](std::int64_t n, int) { image(n, false); });
  } else {
    DenormalGuard guard;
    for (index_t n = 0; n < g.n; ++n) image(n, nth > 1);
  }
}

// ---- backward of the weight --------------------------------------------------------------------

// db[co] = sum over the batch and the pixels of dy, in double, one channel per chunk.
template <class T>
void bias_grad(T* db, const T* dy, const ConvGeom& g) {
  const index_t P = g.oh * g.ow;
  parallel_range(g.co, 1, threads_for(double(g.n) * double(g.co) * double(P), 1 << 18),
                 [&](index_t lo, index_t hi) {
    for (index_t co = lo; co < hi; ++co) {
      double s = 0.0;
      for (index_t n = 0; n < g.n; ++n) {
        const T* r = dy + (n * g.co + co) * P;
        double part[4] = {0.0, 0.0, 0.0, 0.0};
        index_t i = 0;
        for (; i + 4 <= P; i += 4)
          for (int l = 0; l < 4; ++l) part[l] += double(r[i + l]);
        for (; i < P; ++i) part[i & 3] += double(r[i]);
        s += (part[0] + part[2]) + (part[1] + part[3]);
      }
      db[co] = T(s);
    }
  });
}

// Batch chunks of the weight gradient: a function of the shape alone (never of the thread
// count), so the sum is the same at any number of threads. Eight give two threads four chunks
// each to balance; the private copies are capped at 64 MiB.
index_t weight_chunks(index_t n, std::size_t dw_bytes) {
  const index_t by_memory =
      std::max<index_t>(1, index_t((std::size_t(64) << 20) / std::max<std::size_t>(dw_bytes, 1)));
  return std::max<index_t>(1, std::min<index_t>({n, 8, by_memory}));
}

template <class T>
void backward_weight_impl(T* dw, T* db, const T* dy, const T* x, const ConvGeom& g) {
  const Derived d(g);
  if (db) bias_grad(db, dy, g);
  if (d.cgi == 1) {
    direct_backward_weight(dw, dy, x, g);
    return;
  }
  const double work = double(g.n) * double(g.co) * double(d.P) * double(d.K);
  const bool pw1 = pointwise(g);
  const index_t R = band_rows(d.K, g.ow, g.oh, sizeof(T));
  const index_t bands = (g.oh + R - 1) / R;
  const index_t dw_elems = g.co * d.K;
  const index_t chunks = weight_chunks(g.n, std::size_t(dw_elems) * sizeof(T));
  // Each chunk sums dw transposed, K x cgo per group: dwT (K x cgo) += cols (K x np) @ dy^T
  // (np x cgo) keeps the cols operand in place with unit-stride rows of C, where dw itself
  // (cgo x K) would have the GEMM repack the whole column block, or store C column by column.
  T* partials = static_cast<T*>(job_buffer(std::size_t(chunks * dw_elems) * sizeof(T)));

  auto chunk = [&](index_t c) {
    T* dst = partials + c * dw_elems;
    const index_t n0 = g.n * c / chunks, n1 = g.n * (c + 1) / chunks;
    T* cols = pw1 ? nullptr : op_scratch<T>(d.K * R * g.ow);
    for (index_t n = n0; n < n1; ++n) {
      const T* x_img = x + n * g.ci * d.HW;
      for (index_t bnd = 0; bnd < bands; ++bnd) {
        const index_t r0 = bnd * R, rows = std::min(R, g.oh - r0);
        const index_t p0 = r0 * g.ow, np = rows * g.ow;
        const T beta = (n == n0 && bnd == 0) ? T(0) : T(1);
        for (index_t grp = 0; grp < g.groups; ++grp) {
          const T* a;
          index_t rsa;
          if (pw1) {
            a = x_img + grp * d.cgi * d.HW + p0;
            rsa = d.HW;
          } else {
            im2col(cols, x_img + grp * d.cgi * d.HW, g, d.cgi, p0, np);
            a = cols;
            rsa = np;
          }
          mm<T>(d.K, d.cgo, np, a, rsa, 1, dy + (n * g.co + grp * d.cgo) * d.P + p0, 1, d.P,
                dst + grp * d.K * d.cgo, d.cgo, beta, nullptr);
        }
      }
    }
  };

  if (chunks == 1) {  // one image: its GEMMs use the threads
    DenormalGuard guard;
    chunk(0);
  } else {
    parallel_for(chunks, threads_for(work, 1 << 17), [&](std::int64_t c, int) { chunk(c); });
  }
  // dw[grp*cgo + co][kk] = sum over chunks, in chunk order, of partial[grp][kk][co]. Each output
  // row is independent, so any split of the rows across threads gives the same sums.
  parallel_range(g.co, std::max<index_t>(1, 16384 / std::max<index_t>(d.K, 1)),
                 threads_for(double(dw_elems) * double(chunks), 1 << 18),
                 [&](index_t lo, index_t hi) {
    for (index_t co_all = lo; co_all < hi; ++co_all) {
      const index_t grp = co_all / d.cgo, co = co_all % d.cgo;
      T* out = dw + co_all * d.K;
      const T* p0 = partials + grp * d.K * d.cgo + co;
      for (index_t kk = 0; kk < d.K; ++kk) out[kk] = p0[kk * d.cgo];
      for (index_t c = 1; c < chunks; ++c) {
        const T* pc = p0 + c * dw_elems;
        for (index_t kk = 0; kk < d.K; ++kk) out[kk] += pc[kk * d.cgo];
      }
    }
  });
}

}  // namespace

template <class T>
void conv2d_forward(T* y, const T* x, const T* w, const T* b, const ConvGeom& g) {
  forward_impl<T>(y, x, w, b, g);
}

template <class T>
void conv2d_backward_data(T* dx, const T* dy, const T* w, const ConvGeom& g) {
  backward_data_impl<T>(dx, dy, w, g);
}

template <class T>
void conv2d_backward_weight(T* dw, T* db, const T* dy, const T* x, const ConvGeom& g) {
  backward_weight_impl<T>(dw, db, dy, x, g);
}

template void conv2d_forward<float>(float*, const float*, const float*, const float*,
                                    const ConvGeom&);
template void conv2d_forward<double>(double*, const double*, const double*, const double*,
                                     const ConvGeom&);
template void conv2d_backward_data<float>(float*, const float*, const float*, const ConvGeom&);
template void conv2d_backward_data<double>(double*, const double*, const double*,
                                           const ConvGeom&);
template void conv2d_backward_weight<float>(float*, float*, const float*, const float*,
                                            const ConvGeom&);
template void conv2d_backward_weight<double>(double*, double*, const double*, const double*,
                                             const ConvGeom&);

}  // namespace fastnn
