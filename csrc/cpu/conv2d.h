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
  // The forward's epilogue: y := act(conv + b) (act::Kind of common/activations.h, with its
  // parameter). The backward kernels ignore it (the ops layer applies the derivative to dy).
  int act = 0;
  double act_param = 0.0;
};

// y := conv(x, w) + b (b may be null).
template <class T>
void conv2d_forward(T* y, const T* x, const T* w, const T* b, const ConvGeom& g);

// yp := max_pool2d(act(conv(x, w) + b), 2x2, stride 2) with its argmax (flat index into each
// (oh x ow) conv output plane), as conv2d_forward then max_pool2d_forward would give them, without
// writing the convolution's output to memory: each block of it is pooled while in cache. yp and
// argmax are (n, co, oh/2, ow/2). Returns false, touching nothing, where no fused path serves
// the shape (the caller runs the two ops).
template <class T>
bool conv2d_forward_maxpool2(T* yp, std::int64_t* argmax, const T* x, const T* w, const T* b,
                             const ConvGeom& g);

// The weight gradient from the pooled gradient of conv2d_forward_maxpool2's output: dz :=
// max_pool2d_backward(argmax, dyp, gate) (gate may be null: the pooled output, relu's), then
// dw, db (may be null) := conv2d_backward_weight(dz, x), without writing dz to memory (it is
// unpooled block by block into cache). dyp, gate and argmax are (n, co, oh/2, ow/2). Returns
// false, touching nothing, where no fused path serves the shape.
template <class T>
bool conv2d_backward_weight_unpool2(T* dw, T* db, const std::int64_t* argmax, const T* dyp,
                                    const T* gate, const T* x, const ConvGeom& g);

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
  // The products m[xi*sm + t] of `cols` tiles to their 2x2 outputs (A^T m A) + bias, output k
  // (2*row + column) of tile t at o[k*so + t]; the caller places them in the image.
  void (*output)(T* o, index_t so, const T* m, index_t sm, index_t cols, T bias);
  // The weight gradient's transform of `cols` output-gradient tiles, element k (2*row + column)
  // of tile t at d[k*sd + t], to z[xi*sz + t] = (A dy A^T)[xi]: the adjoint of `output`.
  void (*grad)(T* z, index_t sz, const T* d, index_t sd, index_t cols);
  // Direct convolution of one plane (one input channel per output channel, g.kh x g.kw taps
  // w): y (oh x ow) := bias + sum over taps of w * shifted x (h x w).
  void (*direct_plane)(T* y, const T* x, const T* w, T bias, const ConvGeom& g);
  // Its adjoint: dx (h x w) += sum over taps of w * dy (oh x ow) scattered back.
  void (*direct_plane_adjoint)(T* dx, const T* dy, const T* w, const ConvGeom& g);
  // Optional (null where an ISA has none): `input` for every row of tiles of one whole image
  // plane x (h x w, unpadded; (ph, pw) its top/left padding), read in place for images whose
  // padded rows fit one vector (tw <= input_plane_max_tw): no padded copy, each input row
  // loaded once. Tile row a's tiles go to v[xi*sv + a*tw + t]; like `input`, it writes up to
  // kWinoShortRow values past each row of tiles, which the next row (or the next image, or
  // V's spare values) overwrites.
  void (*input_plane)(T* v, index_t sv, const T* x, index_t h, index_t w, index_t ph,
                      index_t pw, index_t th, index_t tw);
  // With input_plane, for the same images: one image's 2x2 output tiles o[k*so + a*tw + t] (k
  // = 2*row + column) placed into its plane y (oh x ow), and the adjoint, the output-gradient
  // plane dy to d[k*sd + a*tw + t] (zero where a tile reaches past an odd edge). Both write
  // exactly the plane's (the tiles') values.
  void (*place_plane)(T* y, const T* o, index_t so, index_t oh, index_t ow, index_t th,
                      index_t tw);
  void (*gather_plane)(T* d, index_t sd, const T* dy, index_t oh, index_t ow, index_t th,
                       index_t tw);
  index_t input_plane_max_tw;
  // Optional: the forward of a single-channel input (ci == groups == 1, stride and dilation 1,
  // ow <= one_channel_max_ow, no activation or relu: a network's first layer), output channels
  // [co0, co1) of image x (h x w) into their planes y + co*oh*ow. Blocks of output channels
  // share each shifted input row in registers; im2col + GEMM had written a 9 x pixels column
  // block, multiplied it with k = 9 and copied the result out.
  void (*one_channel)(T* y, const T* x, const T* w, const T* bias, const ConvGeom& g, index_t co0,
                      index_t co1);
  // Its weight gradient for 3x3 kernels (same conditions, no activation requirement): dw and db
  // (may be null) of output channels [co0, co1), at most one_channel_dw_block of them, summed
  // over the whole batch; per image in vector lanes, then in double, image by image.
  void (*one_channel_dw)(T* dw, T* db, const T* dy, const T* x, const ConvGeom& g, index_t co0,
                         index_t co1);
  index_t one_channel_max_ow, one_channel_dw_block;
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

// Rows of at most this many tiles take the input transform's fixed-width loop; the rows of V
// (sv apart) leave this many values spare after their last tile for it.
constexpr int kWinoShortRow = 8;

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
  if (tw <= kWinoShortRow) {
    // Small images (7 tiles a row at 14x14): a fixed count of 8 tiles, which the compiler turns
    // into whole vectors (stride-2 columns by permutes). The tiles past tw come from zeros and
    // land in the next segment's slots or the row's padding (sv leaves kWinoShortRow spare).
    T tt[4][2 * kWinoShortRow + 2];
    for (index_t q = 0; q < 2 * kWinoShortRow + 2; ++q) {
      const bool in = q < wp;
      tt[0][q] = in ? r0[q] - r2[q] : T(0);
      tt[1][q] = in ? r1[q] + r2[q] : T(0);
      tt[2][q] = in ? r2[q] - r1[q] : T(0);
      tt[3][q] = in ? r1[q] - r3[q] : T(0);
    }
    for (int k = 0; k < 4; ++k) {
      // Even and odd columns first (tile t reads even t, t+1 and odd t, t+1), so that every
      // operand below is a plain vector.
      T ev[kWinoShortRow + 1], od[kWinoShortRow + 1];
      for (int q = 0; q <= kWinoShortRow; ++q) {
        ev[q] = tt[k][2 * q];
        od[q] = tt[k][2 * q + 1];
      }
      T* __restrict v0 = v + 4 * k * sv;
      T* __restrict v1 = v0 + sv;
      T* __restrict v2 = v1 + sv;
      T* __restrict v3 = v2 + sv;
      for (int t = 0; t < kWinoShortRow; ++t) v0[t] = ev[t] - ev[t + 1];
      for (int t = 0; t < kWinoShortRow; ++t) v1[t] = od[t] + ev[t + 1];
      for (int t = 0; t < kWinoShortRow; ++t) v2[t] = ev[t + 1] - od[t];
      for (int t = 0; t < kWinoShortRow; ++t) v3[t] = od[t] - od[t + 1];
    }
    return;
  }
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

// A^T = [1 1 1 0; 0 1 -1 -1]: the 2x2 outputs (A^T m A) + bias of `cols` tiles, m[xi*sm + t]
// to o[k*so + t] (k = 2*row + column of the output in its tile). Unit stride along the tiles,
// whatever rows or images they come from: at 14x14 a row of tiles is 7 long, and a loop over one
// row at a time ran mostly in its scalar remainder (30% of the forward).
template <class T>
static void wino_output_loop(T* __restrict o, index_t so, const T* __restrict m, index_t sm,
                             index_t cols, T bias) {
  T* o0 = o;
  T* o1 = o0 + so;
  T* o2 = o1 + so;
  T* o3 = o2 + so;
#pragma GCC ivdep
  for (index_t t = 0; t < cols; ++t) {
    T p0[4], p1[4];
    for (int l = 0; l < 4; ++l) {
      const T a = m[l * sm + t], b = m[(4 + l) * sm + t], c = m[(8 + l) * sm + t],
              e = m[(12 + l) * sm + t];
      p0[l] = a + b + c;
      p1[l] = b - c - e;
    }
    o0[t] = p0[0] + p0[1] + p0[2] + bias;
    o1[t] = p0[1] - p0[2] - p0[3] + bias;
    o2[t] = p1[0] + p1[1] + p1[2] + bias;
    o3[t] = p1[1] - p1[2] - p1[3] + bias;
  }
}

// A = [1 0; 1 1; 1 -1; 0 -1]: z = A d A^T for the 2x2 tiles d of `cols` tiles, element k
// (2*row + column) of tile t at d[k*sd + t], to z[xi*sz + t]. Unit stride along the tiles, as
// the output transform (a row of 7 tiles at a time had cost a quarter of the weight gradient).
template <class T>
static void wino_grad_loop(T* __restrict z, index_t sz, const T* __restrict d, index_t sd,
                           index_t cols) {
#pragma GCC ivdep
  for (index_t t = 0; t < cols; ++t) {
    const T d00 = d[t], d01 = d[sd + t], d10 = d[2 * sd + t], d11 = d[3 * sd + t];
    // rows of A d: r0 = d0, r1 = d0 + d1, r2 = d0 - d1, r3 = -d1 (two columns each)
    const T r[4][2] = {{d00, d01}, {d00 + d10, d01 + d11}, {d00 - d10, d01 - d11}, {-d10, -d11}};
    for (int k = 0; k < 4; ++k) {
      z[(4 * k) * sz + t] = r[k][0];
      z[(4 * k + 1) * sz + t] = r[k][0] + r[k][1];
      z[(4 * k + 2) * sz + t] = r[k][0] - r[k][1];
      z[(4 * k + 3) * sz + t] = -r[k][1];
    }
  }
}

// The loops above as one ISA's table: each file that calls this (the baseline conv2d.cpp and
// kernels/<isa>/conv_<isa>.cpp) takes the addresses of its own static copies, compiled with its
// own flags.
template <class T>
static constexpr ConvLoops<T> conv_loops_of_this_file() {
  return {&wino_input_loop<T>, &wino_output_loop<T>, &wino_grad_loop<T>, &direct_plane_loop<T>,
          &direct_plane_adjoint_loop<T>, nullptr, nullptr, nullptr, 0, nullptr, nullptr, 0, 0};
}

}  // namespace fastnn
