// 2-D convolution on the packed GEMM (cpu/gemm) and the thread pool (common/parallel.h).
//
// The path is chosen from the shape alone (never from the thread count, so that results are
// bit-identical at any number of threads):
//  - direct loops when every output channel reads one input channel and there are few outputs a
//    group (depthwise): a GEMM would have k = kh*kw and m = 1, far too small to pay for a tile;
//  - Winograd F(2x2, 3x3) for 3x3 stride-1 layers with 16+ channels and 16x16+ outputs, or
//    smaller images with 32+ channels, several whole images to a band (winograd_ok):
//    2.25x fewer multiply-adds, 16 GEMMs per band of tiles (the biggest single win: at 56x56 with
//    64 channels it ran in 0.55x the time of im2col + GEMM);
//  - a single input channel at stride 1 (a first layer), where the ISA has the loops (AVX-512
//    and AVX2 float, ConvLoops::one_channel / one_channel_dw): output channels in register
//    blocks, each shifted input row loaded once for the block (AVX-512: 0.6x of im2col + GEMM
//    forward at 1 -> 32 channels, 28x28, batch 64; 0.85x for the weight gradient; AVX2: 0.52x
//    forward, 0.77x weight gradient);
//  - pointwise (1x1, stride 1, no padding): the input plane already is the GEMM operand;
//  - im2col + GEMM for everything else, one band of output rows of one image (or several small
//    images) at a time, so that the column buffer (K x pixels) stays in L2 between being written
//    and being multiplied; im2col copies whole runs of the input's stride phases (below).
// The backward of the data is, for stride 1, the forward convolution of dy with the flipped,
// transposed weights (so it takes the Winograd path too, and writes every dx element once); for
// larger strides it is w^T @ dy followed by a col2im scatter. The weight gradient is, per output
// row and kernel tap, (padded input row) @ dy_row^T with dy transposed once per band, summed over
// a fixed number of chunks of (image, band) items into private copies that are added in chunk
// order at the end.
#include "cpu/conv2d.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>

#include "common/activations.h"
#include "common/cpuid.h"
#include "common/fpenv.h"
#include "common/parallel.h"
#include "common/threading.h"
#include "common/workspace.h"
#include "cpu/gemm/dispatch.h"
#include "cpu/gemm/gemm.h"
#include "cpu/pool.h"

namespace fastnn {
namespace {

// ---- small helpers ---------------------------------------------------------------------------

// [lo, hi): the outputs o in [0, n) whose input index o*s + off lies inside [0, size).
inline void inside(index_t off, index_t s, index_t size, index_t n, index_t& lo, index_t& hi) {
  conv_inside(off, s, size, n, lo, hi);
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
        index_t rsb, index_t csb, T* c, index_t rsc, T beta, const T* row_bias,
        int act = act::NONE, T act_param = T(0)) {
  GemmProblem<T> p;
  p.m = m; p.n = n; p.k = k;
  p.beta = beta;
  p.a = a; p.rsa = rsa; p.csa = csa;
  p.b = b; p.rsb = rsb; p.csb = csb;
  p.c = c; p.rsc = rsc; p.csc = 1;
  p.ep.bias = row_bias;
  p.ep.bias_axis = 0;
  p.ep.act = act;
  p.ep.act_param = act_param;
  gemm(p);
}

// The forward's activation over n values in place, while they are still in cache.
template <class T>
void activate(T* y, index_t n, const ConvGeom& g) {
  if (g.act == act::NONE) return;
  const T param = T(g.act_param);
  if (g.act == act::RELU) {  // the common case, in a loop the compiler vectorizes
    for (index_t i = 0; i < n; ++i) y[i] = act::forward<T>(act::RELU, y[i], param);
    return;
  }
  for (index_t i = 0; i < n; ++i) y[i] = act::forward<T>(g.act, y[i], param);
}

// C := beta*C + A @ B (+ row bias) exactly as posed: the direct GEMM driver, B read in place
// (csb must be 1), no transposition. gemm() would turn a 64-row product around (its cost model
// pads 64 rows to 72 for the 12-row tile and prefers 120 x 64), and in that orientation the
// accumulating stores of C (beta = 1) go element by element.
template <class T>
const GemmKernel<T>& gemm_kernel();
template <>
const GemmKernel<float>& gemm_kernel<float>() { return active_kernels().f32; }
template <>
const GemmKernel<double>& gemm_kernel<double>() { return active_kernels().f64; }

template <class T>
void mm_as_posed(index_t m, index_t n, index_t k, const T* a, index_t rsa, index_t csa,
                 const T* b, index_t rsb, T* c, index_t rsc, T beta, const T* row_bias,
                 int nthreads) {
  GemmProblem<T> p;
  p.m = m; p.n = n; p.k = k;
  p.beta = beta;
  p.a = a; p.rsa = rsa; p.csa = csa;
  p.b = b; p.rsb = rsb; p.csb = 1;
  p.c = c; p.rsc = rsc; p.csc = 1;
  p.ep.bias = row_bias;
  p.ep.bias_axis = 0;
  GemmPlan plan;
  plan.nthreads = nthreads;
  gemm_kernel<T>().run(p, plan, nullptr);
}

// Runs body(t) for t in [0, tasks). With enough tasks for every thread, the tasks run in
// parallel and each GEMM inside runs inline on its thread (a job started from a chunk does);
// with few tasks (batch 1, small images) they run one after the other and each GEMM threads
// itself. Either way every output is computed by the same calls in the same order.
template <class F>
void for_tasks(index_t tasks, double work, F&& body) {
  const int nth = threads_for(work, 1 << 17);
  if (nth > 1 && tasks >= 2 * index_t(nth)) {
    parallel_for(tasks, nth, [&](std::int64_t t, int) { body(t, 1); });
  } else {
    DenormalGuard guard;
    for (index_t t = 0; t < tasks; ++t) body(t, nth);
  }
}

struct Derived {
  index_t cgi, cgo, kk, K, P, HW;
  explicit Derived(const ConvGeom& g)
      : cgi(g.ci / g.groups), cgo(g.co / g.groups), kk(g.kh * g.kw), K(cgi * g.kh * g.kw),
        P(g.oh * g.ow), HW(g.h * g.w) {}
};

// The direct loops serve layers whose output channels each read one input channel and are few
// per group (depthwise). With one input channel but many outputs (a network's first layer) the
// im2col GEMM, k = kh*kw, beat these loops (one output plane at a time): at 1 -> 32 channels,
// 28x28, batch 64 it took 0.22x of their time forward and 0.25x for the weight gradient; the
// ISA's one_channel loops, where it has them, beat both.
constexpr index_t kDirectMaxOut = 4;

bool direct(const ConvGeom& g) {
  return g.ci == g.groups && g.co / g.groups < kDirectMaxOut;
}

bool pointwise(const ConvGeom& g) {
  return g.kh == 1 && g.kw == 1 && g.sh == 1 && g.sw == 1 && g.ph == 0 && g.pw == 0 &&
         g.oh == g.h && g.ow == g.w;
}

// Output rows per band: the column block (K x rows*pitch) near `kColBytes`, and at least about
// 128 pixels so that the GEMM's n is worth tiling (a 7x7 image with 4608-long columns is one
// band). kColBytes is an L2 budget, measured on a Sapphire Rapids-class core (2 MiB L2): 192 and
// 768 KiB ran 5-12% slower on a 3x3 stride-2 layer.
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

// ---- a padded band of the input -------------------------------------------------------------

// Rows [ih0, ih0 + Rp) and columns [-pw, -pw + Wp) of the input (ih0 may be negative: padding),
// zero outside the image, as Rp x Wp planes, one per channel.
struct PadBand {
  index_t ih0 = 0, Rp = 0, Wp = 0;
};

template <class T>
void pad_band(T* xp, const T* x_img, const ConvGeom& g, index_t cgi, const PadBand& b) {
  const index_t HW = g.h * g.w;
  // Padded column t is input column t - pw.
  const index_t t0 = std::min(std::max<index_t>(g.pw, 0), b.Wp);
  const index_t t1 = std::min(std::max<index_t>(g.pw + g.w, t0), b.Wp);
  for (index_t c = 0; c < cgi; ++c) {
    for (index_t rr = 0; rr < b.Rp; ++rr) {
      T* d = xp + (c * b.Rp + rr) * b.Wp;
      const index_t ih = b.ih0 + rr;
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


// ---- the per-ISA loops (conv2d.h) -----------------------------------------------------------

const ConvIsaLoops& conv_isa() {
#if defined(FASTNN_HAVE_X86_KERNELS)
  switch (active_isa()) {
    case Isa::avx512: return kConvLoopsAvx512;
    case Isa::avx2: return kConvLoopsAvx2;
    default: break;
  }
#endif
  return kConvLoopsGeneric;
}
template <class T>
const ConvLoops<T>& conv_loops();
template <>
const ConvLoops<float>& conv_loops<float>() { return conv_isa().f32; }
template <>
const ConvLoops<double>& conv_loops<double>() { return conv_isa().f64; }

// ---- direct loops: one input channel per output channel -------------------------------------

template <class T>
void direct_forward(T* y, const T* x, const T* w, const T* bias, const ConvGeom& g) {
  const Derived d(g);
  const double work = double(g.n) * double(g.co) * double(d.P) * double(d.kk);
  const index_t planes = g.n * g.co;
  const ConvLoops<T>& L = conv_loops<T>();
  // Planes per chunk: about 32K multiply-adds each, so claiming one costs nothing in comparison.
  const index_t grain = std::max<index_t>(1, index_t(32768.0 / std::max(1.0, double(d.P * d.kk))));
  parallel_range(planes, grain, threads_for(work), [&](index_t lo, index_t hi) {
    for (index_t pl = lo; pl < hi; ++pl) {
      const index_t n = pl / g.co, co = pl % g.co, c = co / d.cgo;
      L.direct_plane(y + pl * d.P, x + (n * g.ci + c) * d.HW, w + co * d.kk,
                     bias ? bias[co] : T(0), g);
      activate(y + pl * d.P, d.P, g);
    }
  });
}

template <class T>
void direct_backward_data(T* dx, const T* dy, const T* w, const ConvGeom& g) {
  const Derived d(g);
  const double work = double(g.n) * double(g.co) * double(d.P) * double(d.kk);
  const index_t planes = g.n * g.ci;
  const ConvLoops<T>& L = conv_loops<T>();
  const index_t grain =
      std::max<index_t>(1, index_t(32768.0 / std::max(1.0, double(d.cgo * d.P * d.kk))));
  parallel_range(planes, grain, threads_for(work), [&](index_t lo, index_t hi) {
    for (index_t pl = lo; pl < hi; ++pl) {
      const index_t n = pl / g.ci, c = pl % g.ci;  // cgi == 1: input channel c is group c
      T* xp = dx + pl * d.HW;
      zero(xp, d.HW);
      for (index_t co = c * d.cgo; co < (c + 1) * d.cgo; ++co)
        L.direct_plane_adjoint(xp, dy + (n * g.co + co) * d.P, w + co * d.kk, g);
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

// dst[j*ldj + i*ldi] = src[i*lds + j] for i < rows, j < cols, in 8x8 blocks (both sides stay
// in a few cache lines per block).
template <class T>
void transpose_strided(T* dst, index_t ldj, index_t ldi, const T* src, index_t lds, index_t rows,
                       index_t cols) {
  for (index_t i0 = 0; i0 < rows; i0 += 8) {
    const index_t i1 = std::min(rows, i0 + 8);
    for (index_t j0 = 0; j0 < cols; j0 += 8) {
      const index_t j1 = std::min(cols, j0 + 8);
      for (index_t i = i0; i < i1; ++i)
        for (index_t j = j0; j < j1; ++j) dst[j * ldj + i * ldi] = src[i * lds + j];
    }
  }
}

// dst[j*ldd + i] = src[i*lds + j] for i < rows, j < cols.
template <class T>
void transpose(T* dst, index_t ldd, const T* src, index_t lds, index_t rows, index_t cols) {
  for (index_t i0 = 0; i0 < rows; i0 += 8) {
    const index_t i1 = std::min(rows, i0 + 8);
    for (index_t j0 = 0; j0 < cols; j0 += 8) {
      const index_t j1 = std::min(cols, j0 + 8);
      for (index_t i = i0; i < i1; ++i)
        for (index_t j = j0; j < j1; ++j) dst[j * ldd + i] = src[i * lds + j];
    }
  }
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
    transpose(wk + grp * d.K * d.cgo, d.cgo, w + grp * d.cgo * d.K, d.K, d.cgo, d.K);
}

// The weights as the A operand of y_g = W_g @ cols: element (co, kk) of group grp at
// p + grp*gs + co*rs + kk*cs.
template <class T>
struct WeightView {
  const T* p;
  index_t rs, cs, gs;
};

// Weights the GEMM keeps on its direct path (read in place, never packed); heavier ones it packs
// on every call whatever their layout, so they skip the K-major copy (a 2.4M-element transpose
// per call at 512 channels).
template <class T>
bool light_weights(const ConvGeom& g) {
  const Derived d(g);
  return double(d.K) * double(d.cgo) * double(sizeof(T)) <= 512.0 * 1024.0;
}

// ---- phase-plane im2col (any stride) ---------------------------------------------------------
//
// Split the padded input into its sh x sw phases (rows = ph (mod sh), columns = pw (mod sw)):
// phase (a, b) holds padded rows R*sh + a and columns C*sw + b. Tap (i, j) then reads phase
// (i*dh mod sh, j*dw mod sw) with unit stride, from row i*dh/sh and column j*dw/sw on. Lay the
// output band out with the phase planes' row pitch Wq = ow + (kw-1)*dw/sw: output (r, o) sits at
// q = r*Wq + o, and every column-buffer row is one contiguous run of a phase plane. im2col
// becomes kh*kw*cgi plain copies instead of a zero/copy/zero triple per output row (gathering at
// stride 2 for stride-2 convolutions): at 56x56 that bookkeeping had cost half as much as the
// GEMM. The price is Wq - ow junk columns per row, computed and dropped (2 of 58 at 56x56 for
// 3x3 stride 1, 1 of 29 for 3x3 stride 2). For stride 1 there is one phase, the padded input.

struct PhaseBand {
  index_t r0 = 0;            // first output row
  index_t Rq = 0, Wq = 0;    // rows and row pitch of each phase plane
  index_t Q = 0;             // GEMM columns: (rows - 1) * Wq + ow
  unsigned used_a = 0, used_b = 0;  // phases some tap reads (bit a, bit b)
};

PhaseBand phase_band(const ConvGeom& g, index_t r0, index_t rows) {
  PhaseBand b;
  b.r0 = r0;
  b.Rq = rows + ((g.kh - 1) * g.dh) / g.sh;
  b.Wq = g.ow + ((g.kw - 1) * g.dw) / g.sw;
  b.Q = (rows - 1) * b.Wq + g.ow;
  for (index_t i = 0; i < g.kh; ++i) b.used_a |= 1u << ((i * g.dh) % g.sh % 32);
  for (index_t j = 0; j < g.kw; ++j) b.used_b |= 1u << ((j * g.dw) % g.sw % 32);
  return b;
}

// The phase planes of one band: plane (a, b) of channel c at xp + ((a*sw + b)*cgi + c)*Rq*Wq,
// element (R, C) = input row (r0 + R)*sh + a - ph, column C*sw + b - pw (0 outside the image).
template <class T>
void phase_planes(T* xp, const T* x_img, const ConvGeom& g, index_t cgi, const PhaseBand& b) {
  const index_t HW = g.h * g.w, plane = b.Rq * b.Wq;
  for (index_t pa = 0; pa < g.sh; ++pa) {
    if (pa < 32 && !(b.used_a >> pa & 1u)) continue;
    for (index_t pb = 0; pb < g.sw; ++pb) {
      if (pb < 32 && !(b.used_b >> pb & 1u)) continue;
      const index_t coff = pb - g.pw;
      index_t lo, hi;
      inside(coff, g.sw, g.w, b.Wq, lo, hi);
      for (index_t c = 0; c < cgi; ++c) {
        T* dst = xp + ((pa * g.sw + pb) * cgi + c) * plane;
        for (index_t rr = 0; rr < b.Rq; ++rr) {
          T* d = dst + rr * b.Wq;
          const index_t ih = (b.r0 + rr) * g.sh + pa - g.ph;
          if (ih < 0 || ih >= g.h) {
            zero(d, b.Wq);
            continue;
          }
          const T* src = x_img + c * HW + ih * g.w + coff;
          zero(d, lo);
          if (g.sw == 1) {
            std::memcpy(d + lo, src + lo, std::size_t(hi - lo) * sizeof(T));
          } else {
            for (index_t q = lo; q < hi; ++q) d[q] = src[q * g.sw];
          }
          zero(d + hi, b.Wq - hi);
        }
      }
    }
  }
}

// cols rows (K of them, ld apart) from the phase planes.
template <class T>
void phase_cols(T* cols, index_t ld, const T* xp, const ConvGeom& g, index_t cgi,
                const PhaseBand& b) {
  const index_t plane = b.Rq * b.Wq;
  for (index_t c = 0; c < cgi; ++c)
    for (index_t i = 0; i < g.kh; ++i) {
      const index_t pa = (i * g.dh) % g.sh, qi = (i * g.dh) / g.sh;
      for (index_t j = 0; j < g.kw; ++j) {
        const index_t pb = (j * g.dw) % g.sw, qj = (j * g.dw) / g.sw;
        std::memcpy(cols + ((c * g.kh + i) * g.kw + j) * ld,
                    xp + ((pa * g.sw + pb) * cgi + c) * plane + qi * b.Wq + qj,
                    std::size_t(b.Q) * sizeof(T));
      }
    }
}

// y := conv(x, w) + bias for cgi > 1.
template <class T>
void forward_gemm(T* y, const T* x, const WeightView<T>& wv, const T* bias, const ConvGeom& g) {
  const Derived d(g);
  const double work = double(g.n) * double(g.co) * double(d.P) * double(d.K);
  const bool pw1 = pointwise(g);
  const index_t Wq = g.ow + ((g.kw - 1) * g.dw) / g.sw;
  const index_t R = band_rows(d.K, pw1 ? g.ow : Wq, g.oh, sizeof(T));
  const index_t bands = (g.oh + R - 1) / R;
  // Small images (deep layers) make GEMMs of few columns: the images of a task are batched into
  // one GEMM of at least ~256 columns, ~512 when the weights are beyond the GEMM's direct-path
  // budget, since those are repacked on every call (at 14x14 with 256 channels, one image per
  // GEMM spent more time packing 2.4 MB of weights than multiplying).
  const index_t Q_img = (g.oh - 1) * Wq + g.ow;
  const index_t want = light_weights<T>(g) ? 256 : 512;
  const index_t ipb = (!pw1 && bands == 1 && Q_img < want)
                          ? std::min<index_t>(g.n, (want + Q_img - 1) / Q_img)
                          : 1;
  const index_t tasks = ipb > 1 ? (g.n + ipb - 1) / ipb : g.n * bands;

  for_tasks(tasks, work, [&](index_t t, int) {
    const index_t n0 = ipb > 1 ? t * ipb : t / bands;
    const index_t nimg = ipb > 1 ? std::min(ipb, g.n - n0) : 1;
    const index_t r0 = ipb > 1 ? 0 : (t % bands) * R, rows = std::min(R, g.oh - r0);
    if (pw1) {
      const T* x_img = x + n0 * g.ci * d.HW;
      T* y_img = y + n0 * g.co * d.P;
      const index_t p0 = r0 * g.ow, np = rows * g.ow;
      for (index_t grp = 0; grp < g.groups; ++grp)
        mm<T>(d.cgo, np, d.K, wv.p + grp * wv.gs, wv.rs, wv.cs, x_img + grp * d.cgi * d.HW + p0,
              d.HW, 1, y_img + grp * d.cgo * d.P + p0, d.P, T(0),
              bias ? bias + grp * d.cgo : nullptr, g.act, T(g.act_param));
      return;
    }
    const PhaseBand b = phase_band(g, r0, rows);
    const index_t Qt = nimg * b.Q;  // GEMM columns: the images' bands side by side
    const index_t xp_elems = g.sh * g.sw * d.cgi * b.Rq * b.Wq;
    T* xp = op_scratch<T>(xp_elems + d.K * Qt + d.cgo * Qt);
    T* cols = xp + xp_elems;
    T* yb = cols + d.K * Qt;
    for (index_t grp = 0; grp < g.groups; ++grp) {
      for (index_t i = 0; i < nimg; ++i) {
        phase_planes(xp, x + ((n0 + i) * g.ci + grp * d.cgi) * d.HW, g, d.cgi, b);
        phase_cols(cols + i * b.Q, Qt, xp, g, d.cgi, b);
      }
      mm<T>(d.cgo, Qt, d.K, wv.p + grp * wv.gs, wv.rs, wv.cs, cols, Qt, 1, yb, Qt, T(0),
            bias ? bias + grp * d.cgo : nullptr, g.act, T(g.act_param));
      for (index_t i = 0; i < nimg; ++i)
        for (index_t co = 0; co < d.cgo; ++co) {
          T* yo = y + ((n0 + i) * g.co + grp * d.cgo + co) * d.P + r0 * g.ow;
          const T* src = yb + co * Qt + i * b.Q;
          for (index_t r = 0; r < rows; ++r)
            std::memcpy(yo + r * g.ow, src + r * b.Wq, std::size_t(g.ow) * sizeof(T));
        }
    }
  });
}

// ---- Winograd F(2x2, 3x3) -------------------------------------------------------------------
//
// 3x3 stride-1 convolutions (most of a CNN's work) as 16 GEMMs over 4x4 input tiles: each 2x2
// output tile costs 16 multiply-adds per channel pair instead of 36, 2.25x fewer. The transforms
// (B^T d B of the input tiles, A^T m A of the products) are additions only, and the weights'
// (G g G^T) once per call. With 0, +-1 and +-1/2 as the only coefficients the rounding error
// stays within a few times that of the direct sum. One difference from the direct sum: an
// infinite input meets both signs inside a tile's transform, so a window holding inf gives NaN
// where the direct sum gives +-inf (NaN still propagates as NaN).


// L2 budget of a band's transformed inputs and products (2 MiB L2 here; 512 KiB and 2 MiB
// budgets measured 2-5% slower at 56x56 with 64 channels).
constexpr double kWinoBandBytes = 1024.0 * 1024.0;


// U[grp][xi][c][co] = (G w[grp*cgo + co][c] G^T)[xi], G = [1 0 0; .5 .5 .5; .5 -.5 .5; 0 0 1].
// K-major like to_k_major, so that the GEMM reads U in place in either orientation.
template <class T>
void wino_weights(T* U, const T* w, const ConvGeom& g) {
  const index_t cgi = g.ci / g.groups, cgo = g.co / g.groups;
  for (index_t grp = 0; grp < g.groups; ++grp)
    for (index_t co = 0; co < cgo; ++co)
      for (index_t c = 0; c < cgi; ++c) {
        const T* k = w + ((grp * cgo + co) * cgi + c) * 9;
        double t[4][3], u[4][4];
        for (int j = 0; j < 3; ++j) {
          t[0][j] = double(k[j]);
          t[1][j] = 0.5 * (double(k[j]) + double(k[3 + j]) + double(k[6 + j]));
          t[2][j] = 0.5 * (double(k[j]) - double(k[3 + j]) + double(k[6 + j]));
          t[3][j] = double(k[6 + j]);
        }
        for (int i = 0; i < 4; ++i) {
          u[i][0] = t[i][0];
          u[i][1] = 0.5 * (t[i][0] + t[i][1] + t[i][2]);
          u[i][2] = 0.5 * (t[i][0] - t[i][1] + t[i][2]);
          u[i][3] = t[i][2];
        }
        for (int xi = 0; xi < 16; ++xi)
          U[((grp * 16 + xi) * cgi + c) * cgo + co] = T(u[xi / 4][xi % 4]);
      }
}

// The work items of a Winograd layer. An item is a band of Tn tiles of one image (rows may be
// cut), within an L2 budget for the transformed inputs and the products, 16 * (cgi + cgo) values
// a tile, and Tn a multiple of the micro-tile width NR, so that no GEMM column tile runs half
// empty (at 56x56, whole rows of 28 tiles left one in eight columns of every tile padding).
// When a whole image has fewer tiles than a band holds, an item is `ipb` whole images side by
// side instead: at 14x14 one image made GEMMs of 49 columns, and Winograd merely tied with
// im2col (winograd_ok says what several images a band gained).
struct WinoPlan {
  index_t TH = 0, TW = 0, tiles = 0;  // tile rows, tile columns, tiles an image
  index_t Tn = 0, bands = 0;          // tiles a band and bands an image (ipb == 1)
  index_t ipb = 1, items = 0;         // images an item and items in all
  index_t n = 0;                      // images in all
};

template <class T>
WinoPlan wino_plan(const ConvGeom& g) {
  const Derived d(g);
  WinoPlan w;
  w.n = g.n;
  w.TH = (g.oh + 1) / 2;
  w.TW = (g.ow + 1) / 2;
  w.tiles = w.TH * w.TW;
  const index_t nr = gemm_kernel<T>().blk.nr;
  const double per_tile = 16.0 * double(d.cgi + d.cgo) * double(sizeof(T));
  const index_t budget = std::max<index_t>(nr, index_t(kWinoBandBytes / per_tile) / nr * nr);
  if (budget >= 2 * w.tiles) {
    w.ipb = std::min<index_t>(g.n, budget / w.tiles);
    w.Tn = w.tiles;
    w.bands = 1;
    w.items = (g.n + w.ipb - 1) / w.ipb;
  } else {
    w.Tn = std::min(budget, w.tiles);
    // Whole bands of Tn tiles; the remainder joins the last band (a band of 4 tiles after three
    // of 64 at 28x28 cost as much bookkeeping as a full one).
    w.bands = std::max<index_t>(1, w.tiles / w.Tn);
    w.items = g.n * w.bands;
  }
  return w;
}

// Winograd where it measured faster than im2col + GEMM (one thread, Sapphire Rapids-class
// core). Below ~16 channels the 16 GEMMs (k = cgi) are too short to run near the tile's speed,
// and the transforms' cost per channel pair no longer hides behind them. Images of 64+ tiles
// (16x16 outputs) always win. Smaller ones win once a band holds several images: 14x14 with
// 32 -> 64 channels, batch 64, ran in 0.71x (forward), 0.73x (weights) and 0.75x (data) of
// im2col's time, 7x7 with 64 channels in 0.78x / 0.60x / 0.77x; but 7x7 with 16 channels, or
// with 128 channels and a batch of 8 (64 tiles a GEMM), lost up to 15% forward; 98 tiles won.
template <class T>
bool winograd_ok(const ConvGeom& g) {
  const index_t cgi = g.ci / g.groups, cgo = g.co / g.groups;
  if (!(g.kh == 3 && g.kw == 3 && g.sh == 1 && g.sw == 1 && g.dh == 1 && g.dw == 1 &&
        cgi >= 16 && cgo >= 16))
    return false;
  const WinoPlan w = wino_plan<T>(g);
  if (w.tiles >= 64) return true;
  return w.tiles >= 16 && cgi >= 32 && cgo >= 32 && w.ipb * w.tiles >= 96;
}

// One item of a WinoPlan: images [n0, n0 + nimg), each its tiles [T0, T0 + tn), as GEMM columns
// [i*tn, (i+1)*tn) of image i; the tile rows a_first..a_last hold them.
struct WinoItem {
  index_t n0, nimg, T0, tn, a_first, a_last;
  WinoItem(const WinoPlan& w, index_t it) {
    if (w.ipb > 1) {
      n0 = it * w.ipb;
      nimg = std::min(w.ipb, w.n - n0);
      T0 = 0;
      tn = w.tiles;
    } else {
      const index_t band = it % w.bands;
      n0 = it / w.bands;
      nimg = 1;
      T0 = band * w.Tn;
      tn = band + 1 == w.bands ? w.tiles - T0 : w.Tn;
    }
    a_first = T0 / w.TW;
    a_last = (T0 + tn - 1) / w.TW;
  }
  // The tile rows of the band, each as a segment [c0, c0 + cnt) of tile columns stored from
  // column o of the image's run.
  template <class F>
  void for_segments(const WinoPlan& w, F&& fn) const {
    for (index_t a = a_first; a <= a_last; ++a) {
      const index_t lo = std::max(T0, a * w.TW), hi = std::min(T0 + tn, (a + 1) * w.TW);
      fn(a, lo - a * w.TW, hi - lo, lo - T0);
    }
  }
  PadBand pad(const WinoPlan& w, const ConvGeom& g) const {
    PadBand b;  // tile row a reads padded rows 2a .. 2a+3, tile column t columns 2t .. 2t+3
    b.ih0 = 2 * a_first - g.ph;
    b.Rp = 2 * (a_last - a_first + 1) + 2;
    b.Wp = 2 * w.TW + 2;
    return b;
  }
};

// The distance of V's rows (one per xi): the item's tiles and the input loop's spare values.
inline index_t wino_vs(const WinoItem& item) { return item.nimg * item.tn + kWinoShortRow; }

// Whether the ISA's whole-plane loops (input_plane, place_plane, gather_plane) serve this item:
// whole images small enough for them.
template <class T>
bool plane_loops(const ConvLoops<T>& L, const WinoPlan& w, const WinoItem& item) {
  return L.input_plane && item.T0 == 0 && item.tn == w.tiles && w.TW <= L.input_plane_max_tw;
}

// V[c][xi][col] = (B^T d B)[xi] of every tile of the item, grp's channels; V rows ld apart.
template <class T>
void wino_inputs(T* V, index_t ld, T* xp, T* tmp, const T* x, const ConvGeom& g,
                 const WinoPlan& w, const WinoItem& item, index_t grp) {
  const Derived d(g);
  const ConvLoops<T>& L = conv_loops<T>();
  const PadBand b = item.pad(w, g);
  const index_t vs = wino_vs(item);
  if (plane_loops(L, w, item)) {
    for (index_t i = 0; i < item.nimg; ++i)
      for (index_t c = 0; c < d.cgi; ++c)
        L.input_plane(V + c * ld + i * item.tn, vs,
                      x + ((item.n0 + i) * g.ci + grp * d.cgi + c) * d.HW, g.h, g.w, g.ph, g.pw,
                      w.TH, w.TW);
    return;
  }
  for (index_t i = 0; i < item.nimg; ++i) {
    pad_band(xp, x + ((item.n0 + i) * g.ci + grp * d.cgi) * d.HW, g, d.cgi, b);
    for (index_t c = 0; c < d.cgi; ++c)
      item.for_segments(w, [&](index_t a, index_t c0, index_t cnt, index_t o) {
        L.input(V + c * ld + i * item.tn + o, vs,
                xp + (c * b.Rp + 2 * (a - item.a_first)) * b.Wp + 2 * c0, b.Wp, cnt, tmp);
      });
  }
}

// Scratch of one item: the padded band, V, the products (M or Z) and the loops' tmp.
template <class T>
T* wino_scratch(const ConvGeom& g, const WinoPlan& w, const WinoItem& item, index_t ld,
                index_t extra = 0) {
  const Derived d(g);
  const PadBand b = item.pad(w, g);
  return op_scratch<T>(d.cgi * b.Rp * b.Wp + (d.cgi + d.cgo) * ld +
                      std::max(4 * b.Wp + 8 * w.TW, 4 * item.nimg * item.tn) + extra);
}

// V and M rows: a transform touches 16 rows `cols` apart (with [xi][c] they were cgi*cols
// apart, 28 KiB at 64 channels: all 16 in one L1 set, thrashing it). The rows of one xi (a GEMM
// operand) are ld apart, one cache line more than 16*cols: with cols a multiple of 16 a plain
// 16*cols would again put every row of a GEMM's B panel and C tile in one L1 set.
template <class T>
index_t wino_ld(const WinoItem& item) {
  return 16 * wino_vs(item) + 64 / index_t(sizeof(T));
}

// The 2x2 outputs of one image's tiles (O[k*so + t], from output_loop) into its plane y_img.
template <class T>
void wino_place(T* y_img, const T* O, index_t so, const ConvGeom& g, const WinoPlan& w,
                const WinoItem& item) {
  item.for_segments(w, [&](index_t a, index_t c0, index_t cnt, index_t o) {
    const index_t full = std::min(cnt, (g.ow - 2 * c0) / 2);  // tiles with both columns inside
    for (index_t r = 0; r < 2 && 2 * a + r < g.oh; ++r) {
      T* yr = y_img + (2 * a + r) * g.ow + 2 * c0;
      const T* e = O + 2 * r * so + o;
      const T* f = e + so;
      for (index_t t = 0; t < full; ++t) {
        yr[2 * t] = e[t];
        yr[2 * t + 1] = f[t];
      }
      if (full < cnt) yr[2 * full] = e[full];  // odd ow: the last tile's first column only
    }
  });
}

// The adjoint of wino_place: one image's output-gradient plane dy_img to its tiles' 2x2 blocks,
// D[k*so + t] (k = 2*row + column), zero where a tile reaches past an odd edge.
template <class T>
void wino_gather(T* D, index_t so, const T* dy_img, const ConvGeom& g, const WinoPlan& w,
                 const WinoItem& item) {
  item.for_segments(w, [&](index_t a, index_t c0, index_t cnt, index_t o) {
    const index_t full = std::min(cnt, (g.ow - 2 * c0) / 2);
    for (index_t r = 0; r < 2; ++r) {
      T* e = D + 2 * r * so + o;
      T* f = e + so;
      if (2 * a + r >= g.oh) {
        zero(e, cnt);
        zero(f, cnt);
        continue;
      }
      const T* yr = dy_img + (2 * a + r) * g.ow + 2 * c0;
      for (index_t t = 0; t < full; ++t) {
        e[t] = yr[2 * t];
        f[t] = yr[2 * t + 1];
      }
      if (full < cnt) {
        e[full] = yr[2 * full];
        f[full] = T(0);
      }
    }
  });
}

// With yp (whole images an item: w.bands == 1), each output plane goes to a scratch plane and
// is pooled 2x2 from there into yp and argmax (conv2d_forward_maxpool2); y is not written.
template <class T>
void wino_forward(T* y, const T* x, const T* U, const T* bias, const ConvGeom& g,
                  T* yp = nullptr, std::int64_t* argmax = nullptr) {
  const Derived d(g);
  const WinoPlan w = wino_plan<T>(g);
  const double work = double(g.n) * double(g.co) * double(w.tiles) * 16.0 * double(d.cgi);
  const ConvLoops<T>& L = conv_loops<T>();
  const index_t poh = g.oh / 2, pow = g.ow / 2, PP = poh * pow;

  for_tasks(w.items, work, [&](index_t task, int inner) {
    const WinoItem item(w, task);
    const index_t cols = item.nimg * item.tn, vs = wino_vs(item), ld = wino_ld<T>(item);
    const PadBand b = item.pad(w, g);
    T* xp = wino_scratch<T>(g, w, item, ld, yp ? d.P + 16 : 0);
    T* V = xp + d.cgi * b.Rp * b.Wp;
    T* M = V + d.cgi * ld;
    T* tmp = M + d.cgo * ld;
    T* O = tmp;
    T* plane = tmp + std::max(4 * b.Wp + 8 * w.TW, 4 * item.nimg * item.tn);
    const bool planes = plane_loops(L, w, item);
    for (index_t grp = 0; grp < g.groups; ++grp) {
      wino_inputs(V, ld, xp, tmp, x, g, w, item, grp);
      const T* Ug = U + grp * 16 * d.cgi * d.cgo;
      for (int xi = 0; xi < 16; ++xi)
        mm_as_posed<T>(d.cgo, cols, d.cgi, Ug + xi * d.cgi * d.cgo, 1, d.cgo, V + xi * vs, ld,
                       M + xi * cols, ld, T(0), nullptr, inner);
      for (index_t co = 0; co < d.cgo; ++co) {
        L.output(O, cols, M + co * ld, cols, cols, bias ? bias[grp * d.cgo + co] : T(0));
        activate(O, 4 * cols, g);
        for (index_t i = 0; i < item.nimg; ++i) {
          const index_t pl = (item.n0 + i) * g.co + grp * d.cgo + co;
          T* y_img = yp ? plane : y + pl * d.P;
          if (planes) {
            L.place_plane(y_img, O + i * item.tn, cols, g.oh, g.ow, w.TH, w.TW);
          } else {
            wino_place(y_img, O + i * item.tn, cols, g, w, item);
          }
          if (yp) max_pool2x2_plane(yp + pl * PP, argmax + pl * PP, plane, g.ow, poh, pow);
        }
      }
    }
  });
}

// The single-input-channel loops serve the forward (conv2d.h, ConvLoops::one_channel).
template <class T>
bool one_channel_ok(const ConvLoops<T>& L, const ConvGeom& g) {
  return L.one_channel && !direct(g) && g.ci == 1 && g.groups == 1 && g.sh == 1 && g.sw == 1 &&
         g.dh == 1 && g.dw == 1 && g.ow <= L.one_channel_max_ow &&
         (g.act == act::NONE || g.act == act::RELU);
}

// y := conv(x, w) + bias, w in its own layout. Transformed weights go to the job buffer from
// byte `job_at` on (a caller may keep its own data before that).
template <class T>
void forward_impl(T* y, const T* x, const T* w, const T* bias, const ConvGeom& g,
                  std::size_t job_at = 0) {
  const Derived d(g);
  if (direct(g)) {
    direct_forward(y, x, w, bias, g);
    return;
  }
  const ConvLoops<T>& L = conv_loops<T>();
  if (one_channel_ok(L, g)) {
    // Tasks of (image, block of 8 output channels): each writes its own planes.
    const index_t blocks = (g.co + 7) / 8;
    const double work = double(g.n) * double(g.co) * double(d.P) * double(d.kk);
    parallel_range(g.n * blocks, 1, threads_for(work), [&](index_t lo, index_t hi) {
      for (index_t t = lo; t < hi; ++t) {
        const index_t n = t / blocks, co0 = (t % blocks) * 8;
        L.one_channel(y + n * g.co * d.P, x + n * d.HW, w, bias, g, co0, std::min(g.co, co0 + 8));
      }
    });
    return;
  }
  if (winograd_ok<T>(g)) {
    char* job = static_cast<char*>(job_buffer(job_at + std::size_t(16 * g.co * d.cgi) * sizeof(T)));
    T* U = reinterpret_cast<T*>(job + job_at);
    wino_weights(U, w, g);
    wino_forward(y, x, U, bias, g);
    return;
  }
  if (!light_weights<T>(g)) {
    forward_gemm(y, x, WeightView<T>{w, d.K, 1, d.cgo * d.K}, bias, g);
    return;
  }
  char* job = static_cast<char*>(job_buffer(job_at + std::size_t(g.co * d.K) * sizeof(T)));
  T* wk = reinterpret_cast<T*>(job + job_at);
  to_k_major(wk, w, g);
  forward_gemm(y, x, WeightView<T>{wk, 1, d.cgo, d.K * d.cgo}, bias, g);
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
    for_tasks(g.n * bands, work, [&](index_t t, int) {
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
    // Its weights in the usual layout (ci, cgo, kh, kw): wt[grp*cgi + c][co][i][j] =
    // w[grp*cgo + co][c][kh-1-i][kw-1-j]. The buffer is sized for forward_impl's own transformed
    // weights after them, so that its request does not move them.
    const std::size_t wt_bytes = (std::size_t(g.ci * d.cgo * d.kk) * sizeof(T) + 63) & ~std::size_t(63);
    T* wt = static_cast<T*>(job_buffer(
        wt_bytes + std::size_t(std::max<index_t>(16, d.kk) * g.ci * d.cgo) * sizeof(T)));
    for (index_t grp = 0; grp < g.groups; ++grp)
      for (index_t c = 0; c < d.cgi; ++c)
        for (index_t co = 0; co < d.cgo; ++co) {
          T* dst = wt + ((grp * d.cgi + c) * d.cgo + co) * d.kk;
          const T* src = w + ((grp * d.cgo + co) * d.cgi + c) * d.kk;
          for (index_t k = 0; k < d.kk; ++k) dst[k] = src[d.kk - 1 - k];
        }
    forward_impl<T>(dx, dy, wt, nullptr, t, wt_bytes);
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

// The sum of one plane: 16 lanes of T (each adds P/16 values), then a fixed tree in double. (Four
// double lanes with a conversion per element cost 6% of a Winograd weight gradient.)
template <class T>
inline double plane_sum(const T* r, index_t P) {
  T lane[16] = {};
  index_t i = 0;
  for (; i + 16 <= P; i += 16)
    for (int l = 0; l < 16; ++l) lane[l] += r[i + l];
  for (; i < P; ++i) lane[i & 15] += r[i];
  double half[8];
  for (int l = 0; l < 8; ++l) half[l] = double(lane[l]) + double(lane[l + 8]);
  return ((half[0] + half[4]) + (half[1] + half[5])) + ((half[2] + half[6]) + (half[3] + half[7]));
}

// db[co] = sum over the batch and the pixels of dy, in double, one channel per chunk.
template <class T>
void bias_grad(T* db, const T* dy, const ConvGeom& g) {
  const index_t P = g.oh * g.ow;
  parallel_range(g.co, 1, threads_for(double(g.n) * double(g.co) * double(P), 1 << 18),
                 [&](index_t lo, index_t hi) {
    for (index_t co = lo; co < hi; ++co) {
      double s = 0.0;
      for (index_t n = 0; n < g.n; ++n) s += plane_sum(dy + (n * g.co + co) * P, P);
      db[co] = T(s);
    }
  });
}

// Work items of the weight gradient are (image, band of output rows) pairs, and a chunk is a
// contiguous run of them whose sum goes into a private copy. The chunks are a function of the
// shape alone (never of the thread count), so the sum is the same at any number of threads;
// eight give two threads four each to balance (and a batch of one image still splits by bands).
// The private copies are capped at 64 MiB.
index_t weight_chunks(index_t items, std::size_t dw_bytes) {
  const index_t by_memory =
      std::max<index_t>(1, index_t((std::size_t(64) << 20) / std::max<std::size_t>(dw_bytes, 1)));
  return std::max<index_t>(1, std::min<index_t>({items, 8, by_memory}));
}

// Below this many input channels per group the row-tap GEMMs (m = cgi) are too thin, and below
// this output width their k (= ow) too short; im2col's single GEMM per band, m = cgi*kh*kw and
// k = the band's pixels, is the better shape there (at 14x14 with 256 channels the row taps ran
// 3x slower).
constexpr index_t kRowTapMinChannels = 8;
constexpr index_t kRowTapMinWidth = 28;

// Band budget of the row taps' padded input plus transposed dy (bands of 128 KiB ran 10% slower
// at 56x56 with 64 channels, from the per-band transposes and first-row stores).
constexpr double kRowTapBandBytes = 512.0 * 1024.0;

// The weight gradient of a Winograd-shaped layer: with V = B^T x B (the forward's input
// transform) and Z = A dy A^T per tile, y = A^T [(G w G^T) . V] A gives dw = G^T [sum over tiles
// of Z . V] G. The sum over tiles is 16 GEMMs S_xi (cgo x cgi) += Z_xi (cgo x tiles) @
// V_xi^T, long reductions, 2.25x fewer multiply-adds than the row taps; G^T S G runs once per call.
// Chunks of (image, band) items sum into private copies of S, added in chunk order.
template <class T>
void wino_backward_weight(T* dw, T* db, const T* dy, const T* x, const ConvGeom& g) {
  const Derived d(g);
  const WinoPlan w = wino_plan<T>(g);
  const index_t tiles = w.tiles;
  const index_t items = w.items;
  const index_t s_elems = 16 * g.co * d.cgi;  // S[grp][xi][co][c]
  const index_t chunks = weight_chunks(items, std::size_t(s_elems) * sizeof(T));
  // Job buffer: the chunks' bias sums (double; taken from each output-gradient plane while the
  // gather has it in L1, instead of another pass over dy), then their S partials.
  const std::size_t db_bytes = (std::size_t(chunks * g.co) * sizeof(double) + 63) & ~std::size_t(63);
  char* job = static_cast<char*>(job_buffer(db_bytes + std::size_t(chunks * s_elems) * sizeof(T)));
  double* dbp = reinterpret_cast<double*>(job);
  T* partials = reinterpret_cast<T*>(job + db_bytes);
  const ConvLoops<T>& L = conv_loops<T>();

  auto chunk = [&](index_t c) {
    T* S = partials + c * s_elems;
    double* dbc = dbp + c * g.co;
    for (index_t co = 0; co < g.co; ++co) dbc[co] = 0.0;
    const index_t it0 = items * c / chunks, it1 = items * (c + 1) / chunks;
    for (index_t it = it0; it < it1; ++it) {
      const WinoItem item(w, it);
      const index_t cols = item.nimg * item.tn, vs = wino_vs(item), ld = wino_ld<T>(item);
      const PadBand b = item.pad(w, g);
      T* xp = wino_scratch<T>(g, w, item, ld);
      T* V = xp + d.cgi * b.Rp * b.Wp;
      T* Z = V + d.cgi * ld;
      T* tmp = Z + d.cgo * ld;
      const T beta = it == it0 ? T(0) : T(1);
      for (index_t grp = 0; grp < g.groups; ++grp) {
        wino_inputs(V, ld, xp, tmp, x, g, w, item, grp);
        const bool planes = plane_loops(L, w, item);
        for (index_t co = 0; co < d.cgo; ++co) {
          for (index_t i = 0; i < item.nimg; ++i) {
            const T* dy_img = dy + ((item.n0 + i) * g.co + grp * d.cgo + co) * d.P;
            if (planes) {
              L.gather_plane(tmp + i * item.tn, cols, dy_img, g.oh, g.ow, w.TH, w.TW);
            } else {
              wino_gather(tmp + i * item.tn, cols, dy_img, g, w, item);
            }
            if (db) {
              if (item.tn == w.tiles) {  // the whole plane
                dbc[grp * d.cgo + co] += plane_sum(dy_img, d.P);
              } else {  // a band of tiles: exactly their outputs (the bands split the plane)
                double sum = 0.0;
                item.for_segments(w, [&](index_t a, index_t c0, index_t cnt, index_t) {
                  for (index_t r = 2 * a; r < std::min(g.oh, 2 * a + 2); ++r)
                    sum += plane_sum(dy_img + r * g.ow + 2 * c0,
                                     std::min(g.ow, 2 * (c0 + cnt)) - 2 * c0);
                });
                dbc[grp * d.cgo + co] += sum;
              }
            }
          }
          L.grad(Z + co * ld, cols, tmp, cols, cols);
        }
        for (int xi = 0; xi < 16; ++xi)  // S_xi += Z_xi @ V_xi^T
          mm<T>(d.cgo, d.cgi, cols, Z + xi * cols, ld, 1, V + xi * vs, 1, ld,
                S + (grp * 16 + xi) * d.cgo * d.cgi, d.cgi, beta, nullptr);
      }
    }
  };
  if (chunks == 1) {
    DenormalGuard guard;
    chunk(0);
  } else {
    const double work = double(g.n) * double(tiles) * 16.0 * double(g.co) * double(d.cgi);
    parallel_for(chunks, threads_for(work, 1 << 17), [&](std::int64_t c, int) { chunk(c); });
    parallel_range(s_elems, 8192, threads_for(double(s_elems) * double(chunks), 1 << 18),
                   [&](index_t lo, index_t hi) {
      for (index_t ch = 1; ch < chunks; ++ch) {
        const T* src = partials + ch * s_elems;
        for (index_t i = lo; i < hi; ++i) partials[i] += src[i];
      }
    });
  }
  if (db) {  // the chunks' bias sums, in chunk order
    for (index_t co = 0; co < g.co; ++co) {
      double sum = dbp[co];
      for (index_t ch = 1; ch < chunks; ++ch) sum += dbp[ch * g.co + co];
      db[co] = T(sum);
    }
  }
  // dw = G^T S G, G^T = [1 .5 .5 0; 0 .5 -.5 0; 0 .5 .5 1], per (co, c).
  const index_t cc = d.cgo * d.cgi;
  for (index_t grp = 0; grp < g.groups; ++grp)
    for (index_t co = 0; co < d.cgo; ++co)
      for (index_t ci = 0; ci < d.cgi; ++ci) {
        const T* Sp = partials + grp * 16 * cc + co * d.cgi + ci;
        double m[4][4], t[3][4];
        for (int xi = 0; xi < 16; ++xi) m[xi / 4][xi % 4] = double(Sp[xi * cc]);
        for (int j = 0; j < 4; ++j) {
          t[0][j] = m[0][j] + 0.5 * (m[1][j] + m[2][j]);
          t[1][j] = 0.5 * (m[1][j] - m[2][j]);
          t[2][j] = 0.5 * (m[1][j] + m[2][j]) + m[3][j];
        }
        T* out = dw + ((grp * d.cgo + co) * d.cgi + ci) * 9;
        for (int i = 0; i < 3; ++i) {
          out[i * 3 + 0] = T(t[i][0] + 0.5 * (t[i][1] + t[i][2]));
          out[i * 3 + 1] = T(0.5 * (t[i][1] - t[i][2]));
          out[i * 3 + 2] = T(0.5 * (t[i][1] + t[i][2]) + t[i][3]);
        }
      }
}

// The single-input-channel loops serve the 3x3 weight gradient (ConvLoops::one_channel_dw).
template <class T>
bool one_channel_dw_ok(const ConvLoops<T>& L, const ConvGeom& g) {
  return L.one_channel_dw && g.ci == 1 && g.groups == 1 && g.sh == 1 && g.sw == 1 &&
         g.dh == 1 && g.dw == 1 && g.kh == 3 && g.kw == 3 && g.ow <= L.one_channel_max_ow;
}

template <class T>
void backward_weight_impl(T* dw, T* db, const T* dy, const T* x, const ConvGeom& g) {
  const Derived d(g);
  const ConvLoops<T>& L = conv_loops<T>();
  if (one_channel_dw_ok(L, g)) {
    // One task per block of output channels, the whole batch inside: one writer per weight.
    const index_t nb = L.one_channel_dw_block, blocks = (g.co + nb - 1) / nb;
    const double work = double(g.n) * double(g.co) * double(d.P) * double(d.kk);
    parallel_range(blocks, 1, threads_for(work), [&](index_t lo, index_t hi) {
      for (index_t t = lo; t < hi; ++t)
        L.one_channel_dw(dw, db, dy, x, g, t * nb, std::min(g.co, (t + 1) * nb));
    });
    return;
  }
  if (direct(g)) {
    if (db) bias_grad(db, dy, g);
    direct_backward_weight(dw, dy, x, g);
    return;
  }
  if (winograd_ok<T>(g)) {
    wino_backward_weight(dw, db, dy, x, g);
    return;
  }
  const bool pw1 = pointwise(g);
  // Row taps: for every output row r and tap (i, j), dW_tap^T (cgi x cgo) += (padded input row
  // r*sh + i*dh, from column j*dw, stride sw: cgi x ow, read in place) @ dy_row^T (ow x cgo).
  // No im2col: dy is transposed once per band (cgo x pixels, shared by all kh*kw taps) and the
  // input only padded. im2col wrote kh*kw copies of the input and cost as much as the GEMMs'
  // packing and bookkeeping together (a third of the time at 64 channels, 56x56).
  const bool rowtap = !pw1 && d.cgi >= kRowTapMinChannels && g.ow >= kRowTapMinWidth;
  const index_t Wp = (g.ow - 1) * g.sw + (g.kw - 1) * g.dw + 1;
  index_t R;
  if (rowtap) {
    const double row_bytes = double(d.cgi * g.sh * Wp + d.cgo * g.ow) * double(sizeof(T));
    R = std::min(g.oh, std::max<index_t>(1, index_t(kRowTapBandBytes / row_bytes)));
  } else {
    R = band_rows(d.K, g.ow, g.oh, sizeof(T));
  }
  const index_t bands = (g.oh + R - 1) / R;
  const index_t items = g.n * bands;
  const index_t dw_elems = g.co * d.K;
  const index_t chunks = weight_chunks(items, std::size_t(dw_elems) * sizeof(T));
  // Job buffer: per-chunk bias sums (double), then per-chunk weight sums, transposed: for row taps
  // [grp][tap][c][co], else [grp][c*kk + tap][co] (K x cgo per group: cols (K x np) @ dy^T keeps
  // the column block in place, where dw's own layout would have the GEMM repack it).
  char* job = static_cast<char*>(job_buffer(std::size_t(chunks * g.co) * sizeof(double) +
                                            std::size_t(chunks * dw_elems) * sizeof(T) + 64));
  double* dbp = reinterpret_cast<double*>(job);
  T* partials = reinterpret_cast<T*>(job + ((std::size_t(chunks * g.co) * sizeof(double) + 63) & ~std::size_t(63)));

  auto chunk = [&](index_t c) {
    T* dst = partials + c * dw_elems;
    double* dbc = dbp + c * g.co;
    for (index_t co = 0; co < g.co; ++co) dbc[co] = 0.0;
    const index_t it0 = items * c / chunks, it1 = items * (c + 1) / chunks;
    T* ws = nullptr;
    if (rowtap) {
      ws = op_scratch<T>(d.cgi * ((R - 1) * g.sh + (g.kh - 1) * g.dh + 1) * Wp + R * g.ow * d.cgo);
    } else if (!pw1) {
      ws = op_scratch<T>(d.K * R * g.ow);
    }
    for (index_t it = it0; it < it1; ++it) {
      const index_t n = it / bands, r0 = (it % bands) * R, rows = std::min(R, g.oh - r0);
      const index_t p0 = r0 * g.ow, np = rows * g.ow;
      const T beta = it == it0 ? T(0) : T(1);
      const T* x_img = x + n * g.ci * d.HW;
      if (db) {  // 16 lanes of T, then double (a conversion per element cost 0.3 ms a step
                 // in the Fashion-MNIST CNN's first layer)
        for (index_t co = 0; co < g.co; ++co) dbc[co] += plane_sum(dy + (n * g.co + co) * d.P + p0, np);
      }
      for (index_t grp = 0; grp < g.groups; ++grp) {
        const T* dyg = dy + (n * g.co + grp * d.cgo) * d.P + p0;
        const T* xg = x_img + grp * d.cgi * d.HW;
        if (rowtap) {
          PadBand b;
          b.ih0 = r0 * g.sh - g.ph;
          b.Rp = (rows - 1) * g.sh + (g.kh - 1) * g.dh + 1;
          b.Wp = Wp;
          T* xp = ws;
          T* dyT = ws + d.cgi * b.Rp * b.Wp;
          pad_band(xp, xg, g, d.cgi, b);
          transpose(dyT, d.cgo, dyg, d.P, d.cgo, np);
          const index_t plane = b.Rp * b.Wp;
          for (index_t r = 0; r < rows; ++r) {
            const T br = r == 0 ? beta : T(1);
            for (index_t i = 0; i < g.kh; ++i)
              for (index_t j = 0; j < g.kw; ++j) {
                const index_t tap = i * g.kw + j;
                mm_as_posed<T>(d.cgi, d.cgo, g.ow, xp + (r * g.sh + i * g.dh) * b.Wp + j * g.dw,
                               plane, g.sw, dyT + r * g.ow * d.cgo, d.cgo,
                               dst + (grp * d.kk + tap) * d.cgi * d.cgo, d.cgo, br, nullptr, 1);
              }
          }
        } else {
          const T* a;
          index_t rsa;
          if (pw1) {
            a = xg + p0;
            rsa = d.HW;
          } else {
            im2col(ws, xg, g, d.cgi, p0, np);
            a = ws;
            rsa = np;
          }
          // dwT_g (K x cgo) += cols (K x np) @ dy_g^T (np x cgo)
          mm<T>(d.K, d.cgo, np, a, rsa, 1, dyg, 1, d.P, dst + grp * d.K * d.cgo, d.cgo, beta,
                nullptr);
        }
      }
    }
  };

  if (chunks == 1) {  // a single band of a single image: its GEMMs use the threads
    DenormalGuard guard;
    chunk(0);
  } else {
    const double work = double(g.n) * double(g.co) * double(d.P) * double(d.K);
    parallel_for(chunks, threads_for(work, 1 << 17), [&](std::int64_t c, int) { chunk(c); });
  }
  // The chunks' sums, added in chunk order into the first (element by element: any split of
  // the elements across threads gives the same sums), then moved to dw's layout in blocks. (Read
  // straight in dw's order, the strided walk over eight 2.4 MB copies took half the time of the
  // whole weight gradient at 256 channels.)
  if (chunks > 1) {
    parallel_range(dw_elems, 8192, threads_for(double(dw_elems) * double(chunks), 1 << 18),
                   [&](index_t lo, index_t hi) {
      for (index_t ch = 1; ch < chunks; ++ch) {
        const T* src = partials + ch * dw_elems;
        for (index_t i = lo; i < hi; ++i) partials[i] += src[i];
      }
    });
  }
  for (index_t grp = 0; grp < g.groups; ++grp) {
    T* dwg = dw + grp * d.cgo * d.K;
    const T* pg = partials + grp * d.K * d.cgo;
    if (rowtap) {  // [tap][c][co] -> [co][c][tap]
      for (index_t tap = 0; tap < d.kk; ++tap)
        transpose_strided(dwg + tap, d.K, d.kk, pg + tap * d.cgi * d.cgo, d.cgo, d.cgi, d.cgo);
    } else {  // [c*kk + tap][co] -> [co][c*kk + tap]
      transpose_strided(dwg, d.K, index_t(1), pg, d.cgo, d.K, d.cgo);
    }
  }
  if (db) {
    for (index_t co = 0; co < g.co; ++co) {
      double sum = dbp[co];
      for (index_t ch = 1; ch < chunks; ++ch) sum += dbp[ch * g.co + co];
      db[co] = T(sum);
    }
  }
}

// The single-channel loops: blocks of 8 output channels of one image go to this thread's scratch
// (8 planes: 25 KB at 28x28, in L1/L2) and are pooled from there: the convolution's output never goes to memory. At
// 1 -> 32 channels, 28x28, batch 64, writing it (6.4 MB) and reading it back for the pooling had
// cost as much as the convolution itself.
template <class T>
bool forward_maxpool2_impl(T* yp, std::int64_t* argmax, const T* x, const T* w, const T* bias,
                           const ConvGeom& g) {
  const ConvLoops<T>& L = conv_loops<T>();
  const Derived d(g);
  if (direct(g)) return false;
  if (!one_channel_ok(L, g)) {
    // Winograd items of whole images: each output plane pooled from a scratch plane, 3.2 MB of
    // output not written at 32 -> 64 channels, 14x14, batch 64.
    if (!winograd_ok<T>(g) || wino_plan<T>(g).bands != 1) return false;
    char* job = static_cast<char*>(job_buffer(std::size_t(16 * g.co * d.cgi) * sizeof(T)));
    T* U = reinterpret_cast<T*>(job);
    wino_weights(U, w, g);
    wino_forward<T>(nullptr, x, U, bias, g, yp, argmax);
    return true;
  }
  const index_t poh = g.oh / 2, pow = g.ow / 2, PP = poh * pow;
  constexpr index_t kBlock = 8;
  const index_t blocks = (g.co + kBlock - 1) / kBlock;
  const double work = double(g.n) * double(g.co) * double(d.P) * double(d.kk);
  parallel_range(g.n * blocks, 1, threads_for(work), [&](index_t lo, index_t hi) {
    T* buf = op_scratch<T>(kBlock * d.P);
    for (index_t t = lo; t < hi; ++t) {
      const index_t n = t / blocks, co0 = (t % blocks) * kBlock;
      const index_t nb = std::min(g.co, co0 + kBlock) - co0;
      L.one_channel(buf, x + n * d.HW, w + co0 * d.kk, bias ? bias + co0 : nullptr, g, 0, nb);
      for (index_t c = 0; c < nb; ++c) {
        const index_t pl = n * g.co + co0 + c;
        max_pool2x2_plane(yp + pl * PP, argmax + pl * PP, buf + c * d.P, g.ow, poh, pow);
      }
    }
  });
  return true;
}

// Per block of output channels (the weight-gradient loops' block), the whole batch's pre-pool
// gradient of those channels is unpooled into this thread's scratch (64 images x 2 planes of
// 28x28: 400 KB, in L2) and handed to the same loops as conv2d_backward_weight, which see
// exactly the values they would read from the unpooled array: the same sums, bit for bit. The
// unfused pair wrote and read back 6.4 MB for the Fashion-MNIST CNN's first layer.
template <class T>
bool backward_weight_unpool2_impl(T* dw, T* db, const std::int64_t* argmax, const T* dyp,
                                  const T* gate, const T* x, const ConvGeom& g) {
  const ConvLoops<T>& L = conv_loops<T>();
  if (!one_channel_dw_ok(L, g)) return false;
  const Derived d(g);
  const index_t poh = g.oh / 2, pow = g.ow / 2, PP = poh * pow;
  const index_t nb = L.one_channel_dw_block, blocks = (g.co + nb - 1) / nb;
  const double work = double(g.n) * double(g.co) * double(d.P) * double(d.kk);
  parallel_range(blocks, 1, threads_for(work), [&](index_t lo, index_t hi) {
    T* dz = op_scratch<T>(g.n * nb * d.P);
    for (index_t t = lo; t < hi; ++t) {
      const index_t co0 = t * nb, cnt = std::min(g.co, co0 + nb) - co0;
      for (index_t n = 0; n < g.n; ++n)
        for (index_t c = 0; c < cnt; ++c) {
          const index_t pl = n * g.co + co0 + c;
          max_unpool_plane(dz + (n * cnt + c) * d.P, argmax + pl * PP, dyp + pl * PP,
                           gate ? gate + pl * PP : nullptr, g.oh, g.ow, poh, pow);
        }
      ConvGeom gb = g;
      gb.co = cnt;
      L.one_channel_dw(dw + co0 * d.kk, db ? db + co0 : nullptr, dz, x, gb, 0, cnt);
    }
  });
  return true;
}

}  // namespace

const ConvIsaLoops kConvLoopsGeneric = {"generic", conv_loops_of_this_file<float>(),
                                        conv_loops_of_this_file<double>()};

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

template <class T>
bool conv2d_forward_maxpool2(T* yp, std::int64_t* argmax, const T* x, const T* w, const T* b,
                             const ConvGeom& g) {
  return forward_maxpool2_impl<T>(yp, argmax, x, w, b, g);
}

template <class T>
bool conv2d_backward_weight_unpool2(T* dw, T* db, const std::int64_t* argmax, const T* dyp,
                                    const T* gate, const T* x, const ConvGeom& g) {
  return backward_weight_unpool2_impl<T>(dw, db, argmax, dyp, gate, x, g);
}

template bool conv2d_backward_weight_unpool2<float>(float*, float*, const std::int64_t*,
                                                    const float*, const float*, const float*,
                                                    const ConvGeom&);
template bool conv2d_backward_weight_unpool2<double>(double*, double*, const std::int64_t*,
                                                     const double*, const double*, const double*,
                                                     const ConvGeom&);
template bool conv2d_forward_maxpool2<float>(float*, std::int64_t*, const float*, const float*,
                                             const float*, const ConvGeom&);
template bool conv2d_forward_maxpool2<double>(double*, std::int64_t*, const double*,
                                              const double*, const double*, const ConvGeom&);
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
