// Convolution on the GPU as implicit GEMM: the three kernels of the kernel modules
// (conv2d_forward, conv2d_backward_data, conv2d_backward_weight), with the semantics and the
// argument order of the CPU kernels, plus the two per-channel helpers a transposed convolution
// needs (add_channel_bias, channel_sums).
//
// Each of the three is one matrix product per group whose operands are never materialized: the
// tiled kernel below asks an "operand policy" (ConvForward, ConvBackwardData, ConvBackwardWeight)
// for the element (row, k) of A and (k, column) of B, and the policy gathers it from the NCHW
// arrays, with padding, stride and dilation, returning 0 for what lies outside the image. That
// keeps the one delicate piece of code (tiling, shared memory, synchronization) in one place, and
// each policy is a few lines of index arithmetic that can be checked against the definition:
//
//   forward          y[n, co, r, q]  = b[co] + sum_{c, i, j} w[co, c, i, j] * x[n, ci, r*sh - ph
//                                      + i*dil_h, q*sw - pw + j*dil_w]       (ci = g*C_in/g + c)
//                    A = w (rows co of group g, k = (c, i, j)), B = x patches (k, (n, r, q)).
//   backward data    dx[n, ci, h, v] = sum over (co, i, j) with h + ph - i*dil_h = r*sh and
//                                      v + pw - j*dil_w = q*sw, (r, q) inside dy, of w * dy
//                    A = w^T (rows: input channels of group g, k = (co, i, j)), B = dy gathered
//                    at the output position each tap came from (0 where a stride skips it).
//   backward weight  dw[co, c, i, j] = sum_{n, r, q} dy[n, co, r, q] * x[n, ci, ...]
//                    A = dy (rows co, k = (n, r, q)), B = x patches transposed; the reduction
//                    over N*OH*OW is split into chunks written to a scratch buffer and added in
//                    a fixed order by a second kernel: no float atomics, so the result is the
//                    same on every run (and the split depends on the sizes only, not the device).
//
// Every array is strided (strides in elements, any sign), so device views need no copies; every
// index that is a product of sizes is computed in 64 bits; every load is bounds-checked. This is
// the simple version of the idea (no vector loads, no double buffering): correctness first,
// on sizes of any shape, and the shared GEMM kernel of gemm_kernel.cuh remains the fast path for
// dense products.
#include <stdexcept>
#include <string>

#include "cuda/api.h"
#include "cuda/check.cuh"
#include "cuda/kernel_launch.cuh"
#include "cuda/view4.cuh"

namespace fastnn {
namespace cuda {
namespace {

// ---------------------------------------------------------------------------------------------
// Views and sizes

// The sizes of one convolution, in the forward direction (x -> y).
struct ConvSizes {
  index_t n = 0, c_in = 0, h = 0, w = 0;  // x
  index_t c_out = 0, oh = 0, ow = 0;      // y
  index_t kh = 0, kw = 0;
  index_t sh = 1, sw = 1, ph = 0, pw = 0, dil_h = 1, dil_w = 1;
  index_t groups = 1, cig = 0, cog = 0;   // channels per group: input, output
};

// v = (a * d1 + b) * d2 + c with 0 <= b < d1, 0 <= c < d2: the row-major split of a flat index.
// Only called with d1, d2 >= 1 (on indices below a size that is a multiple of d1 * d2).
__device__ inline void split3(index_t v, index_t d1, index_t d2, index_t& a, index_t& b,
                              index_t& c) {
  const index_t plane = d1 * d2;
  a = v / plane;
  const index_t rest = v - a * plane;
  b = rest / d2;
  c = rest - b * d2;
}

__device__ inline index_t imin(index_t a, index_t b) { return a < b ? a : b; }

index_t ceil_div(index_t a, index_t b) { return (a + b - 1) / b; }

// The input patch element that tap k = (c, i, j) of group g sees at output position
// p = (n, r, q), or 0 in the padding. Forward and backward weight share it.
template <class T>
__device__ inline T patch(const ConvSizes& s, const View4<const T>& x, index_t g, index_t k,
                          index_t p) {
  index_t c, i, j, n, r, q;
  split3(k, s.kh, s.kw, c, i, j);
  split3(p, s.oh, s.ow, n, r, q);
  const index_t ih = r * s.sh - s.ph + i * s.dil_h;
  const index_t iw = q * s.sw - s.pw + j * s.dil_w;
  if (ih < 0 || ih >= s.h || iw < 0 || iw >= s.w) return T(0);
  return x(n, g * s.cig + c, ih, iw);
}

// ---------------------------------------------------------------------------------------------
// The tiled implicit-GEMM kernel

template <int BM_, int BN_, int BK_, int TM_, int TN_>
struct Tile {
  static constexpr int BM = BM_, BN = BN_, BK = BK_, TM = TM_, TN = TN_;
  static constexpr int TY = BM / TM, TX = BN / TN;  // the threads of a block, as a TY x TX grid
  static constexpr int THREADS = TY * TX;
  static_assert(TY * TM == BM && TX * TN == BN, "thread tiles must cover the block tile");
};

// 64 x 64 output tiles, 4 x 4 per thread: ordinary convolutions (many rows per group).
using SquareTile = Tile<64, 64, 16, 4, 4>;
// 8 x 256 tiles, 1 x 8 per thread: few rows per group (depthwise, or a handful of channels),
// where a 64-row tile would mostly compute rows that do not exist.
using FlatTile = Tile<8, 256, 16, 1, 8>;

// A block walks the flat list of its (group, split, row tile, column tile) units with a grid
// stride, so no grid dimension limit applies. For each unit it accumulates over
// k in [split * chunk, min(K, (split + 1) * chunk)) in steps of BK: both operand tiles are
// gathered into shared memory (0 outside the matrices), then each thread multiplies its TM x TN
// block of accumulators. Thread (ty, tx) owns rows ty + TY * i and columns tx + TX * j: adjacent
// threads own adjacent columns, so the stores of the epilogue (along OW) are coalesced.
//
// Op provides: M, N, K (index_t, per group), groups, T a(g, m, k), T b(g, k, n) (called only for
// m < M, n < N, k < K) and store(g, split, m, n, value) (called once per element of a unit).
template <class T, class Cfg, class Op>
__global__ void __launch_bounds__(Cfg::THREADS)
    implicit_gemm_kernel(const Op op, index_t tiles_m, index_t tiles_n, index_t splits,
                         index_t chunk) {
  constexpr int BM = Cfg::BM, BN = Cfg::BN, BK = Cfg::BK, TM = Cfg::TM, TN = Cfg::TN;
  constexpr int TX = Cfg::TX, TY = Cfg::TY, THREADS = Cfg::THREADS;
  // +1: the A tile is filled with k varying fastest across threads; the padding puts those
  // stores in different banks.
  __shared__ T As[BK][BM + 1];
  __shared__ T Bs[BK][BN];

  const int tid = static_cast<int>(threadIdx.x);
  const int tx = tid % TX, ty = tid / TX;
  const index_t tiles = tiles_m * tiles_n;
  const index_t per_group = tiles * splits;
  const index_t units = op.groups * per_group;

  for (index_t u = blockIdx.x; u < units; u += gridDim.x) {  // uniform across the block
    const index_t g = u / per_group;
    index_t rest = u - g * per_group;
    const index_t split = rest / tiles;
    rest -= split * tiles;
    const index_t m0 = (rest / tiles_n) * BM;
    const index_t n0 = (rest - (rest / tiles_n) * tiles_n) * BN;
    const index_t k_begin = split * chunk;
    const index_t k_end = imin(op.K, k_begin + chunk);

    T acc[TM][TN];
#pragma unroll
    for (int i = 0; i < TM; ++i)
#pragma unroll
      for (int j = 0; j < TN; ++j) acc[i][j] = T(0);

    for (index_t k0 = k_begin; k0 < k_end; k0 += BK) {
      for (int e = tid; e < BM * BK; e += THREADS) {
        const int kk = e % BK, mm = e / BK;
        const index_t gm = m0 + mm, gk = k0 + kk;
        As[kk][mm] = (gm < op.M && gk < k_end) ? op.a(g, gm, gk) : T(0);
      }
      for (int e = tid; e < BN * BK; e += THREADS) {
        const int nn = e % BN, kk = e / BN;
        const index_t gn = n0 + nn, gk = k0 + kk;
        Bs[kk][nn] = (gn < op.N && gk < k_end) ? op.b(g, gk, gn) : T(0);
      }
      __syncthreads();
#pragma unroll
      for (int kk = 0; kk < BK; ++kk) {
        T av[TM], bv[TN];
#pragma unroll
        for (int i = 0; i < TM; ++i) av[i] = As[kk][ty + TY * i];
#pragma unroll
        for (int j = 0; j < TN; ++j) bv[j] = Bs[kk][tx + TX * j];
#pragma unroll
        for (int i = 0; i < TM; ++i)
#pragma unroll
          for (int j = 0; j < TN; ++j) acc[i][j] += av[i] * bv[j];
      }
      __syncthreads();  // the tiles are refilled next step (or next unit) only after every read
    }

#pragma unroll
    for (int i = 0; i < TM; ++i) {
      const index_t gm = m0 + ty + TY * i;
      if (gm >= op.M) continue;
#pragma unroll
      for (int j = 0; j < TN; ++j) {
        const index_t gn = n0 + tx + TX * j;
        if (gn < op.N) op.store(g, split, gm, gn, acc[i][j]);
      }
    }
  }
}

// Enough blocks to fill any current GPU several times over; the kernel's grid-stride loop covers
// the rest.
constexpr index_t kMaxBlocks = 65535LL * 8;

template <class T, class Cfg, class Op>
void run_gemm(const char* what, const Op& op, index_t splits, index_t chunk) {
  const index_t tiles_m = ceil_div(op.M, Cfg::BM), tiles_n = ceil_div(op.N, Cfg::BN);
  const index_t units = op.groups * tiles_m * tiles_n * splits;
  if (units <= 0) return;
  const unsigned grid = static_cast<unsigned>(units < kMaxBlocks ? units : kMaxBlocks);
  launch(what, implicit_gemm_kernel<T, Cfg, Op>, dim3(grid), dim3(Cfg::THREADS), op, tiles_m,
         tiles_n, splits, chunk);
}

// One k range covering all of K (chunk >= 1 even when K == 0: the k loop then does nothing and
// the epilogue stores zeros, plus the bias in the forward direction).
template <class T, class Op>
void run_whole(const char* what, const Op& op) {
  const index_t chunk = op.K > 0 ? op.K : 1;
  if (op.M <= FlatTile::BM) run_gemm<T, FlatTile>(what, op, 1, chunk);
  else run_gemm<T, SquareTile>(what, op, 1, chunk);
}

// ---------------------------------------------------------------------------------------------
// The operand policies

template <class T>
struct ConvForward {
  ConvSizes s;
  View4<T> y;
  View4<const T> x, w;
  const T* bias = nullptr;
  index_t bias_stride = 0;
  index_t M = 0, N = 0, K = 0, groups = 1;  // M = cog, N = n*oh*ow, K = cig*kh*kw

  __device__ T a(index_t g, index_t m, index_t k) const {
    index_t c, i, j;
    split3(k, s.kh, s.kw, c, i, j);
    return w(g * s.cog + m, c, i, j);
  }
  __device__ T b(index_t g, index_t k, index_t p) const { return patch(s, x, g, k, p); }
  __device__ void store(index_t g, index_t, index_t m, index_t p, T v) const {
    index_t n, r, q;
    split3(p, s.oh, s.ow, n, r, q);
    const index_t co = g * s.cog + m;
    if (bias) v += bias[co * bias_stride];
    y(n, co, r, q) = v;
  }
};

template <class T>
struct ConvBackwardData {
  ConvSizes s;
  View4<T> dx;
  View4<const T> dy, w;
  index_t M = 0, N = 0, K = 0, groups = 1;  // M = cig, N = n*h*w, K = cog*kh*kw

  __device__ T a(index_t g, index_t m, index_t k) const {
    index_t o, i, j;
    split3(k, s.kh, s.kw, o, i, j);
    return w(g * s.cog + o, m, i, j);
  }
  // dy at the output position from which tap (i, j) of output channel o reads input (h, v), or 0
  // when no output position does (outside dy, or between two stride steps).
  __device__ T b(index_t g, index_t k, index_t p) const {
    index_t o, i, j, n, h, v;
    split3(k, s.kh, s.kw, o, i, j);
    split3(p, s.h, s.w, n, h, v);
    const index_t th = h + s.ph - i * s.dil_h;
    const index_t tw = v + s.pw - j * s.dil_w;
    if (th < 0 || tw < 0) return T(0);  // tested first: % and / of negatives would mislead
    if (th % s.sh != 0 || tw % s.sw != 0) return T(0);
    const index_t r = th / s.sh, q = tw / s.sw;
    if (r >= s.oh || q >= s.ow) return T(0);
    return dy(n, g * s.cog + o, r, q);
  }
  __device__ void store(index_t g, index_t, index_t m, index_t p, T v) const {
    index_t n, h, c;
    split3(p, s.h, s.w, n, h, c);
    dx(n, g * s.cig + m, h, c) = v;
  }
};

template <class T>
struct ConvBackwardWeight {
  ConvSizes s;
  View4<T> dw;
  View4<const T> dy, x;
  T* partial = nullptr;  // splits x C_out x (cig*kh*kw) partial sums, or null: write dw
  index_t M = 0, N = 0, K = 0, groups = 1;  // M = cog, N = cig*kh*kw, K = n*oh*ow

  __device__ T a(index_t g, index_t m, index_t p) const {
    index_t n, r, q;
    split3(p, s.oh, s.ow, n, r, q);
    return dy(n, g * s.cog + m, r, q);
  }
  __device__ T b(index_t g, index_t p, index_t k) const { return patch(s, x, g, k, p); }
  __device__ void store(index_t g, index_t split, index_t m, index_t k, T v) const {
    const index_t co = g * s.cog + m;
    if (partial) {
      partial[(split * s.c_out + co) * N + k] = v;
      return;
    }
    index_t c, i, j;
    split3(k, s.kh, s.kw, c, i, j);
    dw(co, c, i, j) = v;
  }
};

// dw[co, k] := sum over s of partial[s, co, k], s ascending: the fixed order that makes the
// split reduction deterministic.
template <class T>
__global__ void sum_partials_kernel(View4<T> dw, const T* partial, index_t splits,
                                    index_t c_out, index_t taps_k, index_t kh, index_t kw) {
  const index_t total = c_out * taps_k;
  const index_t step = static_cast<index_t>(gridDim.x) * blockDim.x;
  for (index_t e = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += step) {
    T v = partial[e];
    for (index_t sp = 1; sp < splits; ++sp) v += partial[sp * total + e];
    const index_t co = e / taps_k;
    index_t c, i, j;
    split3(e - co * taps_k, kh, kw, c, i, j);
    dw(co, c, i, j) = v;
  }
}

// ---------------------------------------------------------------------------------------------
// Per-channel helpers

constexpr int kThreads = 256;

// out[c] = sum of x[:, c, :, :]. One block per channel (grid-stride over channels); each thread
// sums a fixed strided subset in double, then a tree in shared memory adds the 256 partial sums
// in a fixed order: deterministic, and accurate for long float32 sums.
template <class T>
__global__ void __launch_bounds__(kThreads)
    channel_sums_kernel(T* out, index_t out_stride, View4<const T> x, index_t n, index_t c,
                        index_t h, index_t w) {
  __shared__ double part[kThreads];
  const int tid = static_cast<int>(threadIdx.x);
  const index_t hw = h * w;
  const index_t count = n * hw;
  for (index_t ch = blockIdx.x; ch < c; ch += gridDim.x) {  // uniform across the block
    double s = 0.0;
    for (index_t e = tid; e < count; e += kThreads) {
      const index_t img = e / hw;
      const index_t rest = e - img * hw;
      const index_t r = rest / w;
      s += static_cast<double>(x(img, ch, r, rest - r * w));
    }
    part[tid] = s;
    __syncthreads();
    for (int half = kThreads / 2; half > 0; half /= 2) {
      if (tid < half) part[tid] += part[tid + half];
      __syncthreads();
    }
    if (tid == 0) out[ch * out_stride] = static_cast<T>(part[0]);
    __syncthreads();  // part is refilled for the next channel only after thread 0 read it
  }
}

template <class T>
__global__ void add_channel_bias_kernel(View4<T> y, const T* b, index_t b_stride, index_t n,
                                        index_t c, index_t h, index_t w) {
  const index_t total = n * c * h * w;
  const index_t step = static_cast<index_t>(gridDim.x) * blockDim.x;
  for (index_t e = static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += step) {
    index_t img, ch, r;
    split3(e / w, c, h, img, ch, r);
    const index_t q = e - (e / w) * w;
    y(img, ch, r, q) += b[ch * b_stride];
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

// The sizes of the convolution mapping x-shaped images to y-shaped ones with weights w, checked
// against each other: every index a kernel computes stays inside the arrays it was given.
ConvSizes conv_sizes(const char* op, const Array4& y, const Array4& x, const Array4& w,
                     const ConvGeometry& g) {
  const std::string pre = std::string(op) + ": ";
  require(g.sh >= 1 && g.sw >= 1 && g.dil_h >= 1 && g.dil_w >= 1 && g.groups >= 1,
          pre + "stride, dilation and groups must be >= 1");
  require(g.ph >= 0 && g.pw >= 0, pre + "padding must be >= 0");
  for (int d = 0; d < 4; ++d)
    require(y.dim[d] >= 0 && x.dim[d] >= 0 && w.dim[d] >= 0, pre + "negative size");
  ConvSizes s;
  s.n = x.dim[0]; s.c_in = x.dim[1]; s.h = x.dim[2]; s.w = x.dim[3];
  s.c_out = y.dim[1]; s.oh = y.dim[2]; s.ow = y.dim[3];
  s.kh = w.dim[2]; s.kw = w.dim[3];
  s.sh = g.sh; s.sw = g.sw; s.ph = g.ph; s.pw = g.pw; s.dil_h = g.dil_h; s.dil_w = g.dil_w;
  s.groups = g.groups;
  require(y.dim[0] == s.n, pre + "batch sizes differ: output " + dims(y) + ", input " + dims(x));
  require(w.dim[0] == s.c_out && s.c_out % s.groups == 0 && s.c_in % s.groups == 0 &&
              w.dim[1] * s.groups == s.c_in,
          pre + "weight " + dims(w) + " does not fit input " + dims(x) + " and output " +
              dims(y) + " with groups=" + std::to_string(s.groups));
  require(s.kh >= 1 && s.kw >= 1, pre + "the kernel must be at least 1x1");
  s.cig = s.c_in / s.groups;
  s.cog = s.c_out / s.groups;
  return s;
}

template <class T>
void conv2d_forward_t(Array4 y, Array4 x, Array4 w, Array4 b, const ConvGeometry& g) {
  const ConvSizes s = conv_sizes("conv2d_forward", y, x, w, g);
  if (b.ptr) require(b.dim[0] == s.c_out, "conv2d_forward: the bias needs one value per channel");
  if (s.n * s.c_out * s.oh * s.ow <= 0) return;
  ConvForward<T> op;
  op.s = s;
  op.y = view4<T>(y);
  op.x = view4<const T>(x);
  op.w = view4<const T>(w);
  op.bias = reinterpret_cast<const T*>(b.ptr);
  op.bias_stride = b.stride[0];
  op.M = s.cog;
  op.N = s.n * s.oh * s.ow;
  op.K = s.cig * s.kh * s.kw;
  op.groups = s.groups;
  run_whole<T>("conv2d_forward kernel launch", op);
}

template <class T>
void conv2d_backward_data_t(Array4 dx, Array4 dy, Array4 w, const ConvGeometry& g) {
  const ConvSizes s = conv_sizes("conv2d_backward_data", dy, dx, w, g);
  if (s.n * s.c_in * s.h * s.w <= 0) return;
  ConvBackwardData<T> op;
  op.s = s;
  op.dx = view4<T>(dx);
  op.dy = view4<const T>(dy);
  op.w = view4<const T>(w);
  op.M = s.cig;
  op.N = s.n * s.h * s.w;
  op.K = s.cog * s.kh * s.kw;
  op.groups = s.groups;
  run_whole<T>("conv2d_backward_data kernel launch", op);
}

// Scratch memory from the stream-ordered allocator of runtime.cu, released on every exit path
// (stream-ordered too, so after the kernels that use it).
struct Scratch {
  void* p = nullptr;
  explicit Scratch(std::size_t nbytes) : p(reinterpret_cast<void*>(device_malloc(nbytes))) {}
  ~Scratch() { device_free(reinterpret_cast<std::uintptr_t>(p)); }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
};

// Split the reduction over N*OH*OW when the output alone gives fewer than this many units of
// work, into chunks of at least kMinChunk positions (so that a chunk amortizes its epilogue).
constexpr index_t kTargetUnits = 512;
constexpr index_t kMinChunk = 512;

template <class T, class Cfg>
void backward_weight_tiles(ConvBackwardWeight<T> op, const Array4& dw) {
  const index_t tiles = op.groups * ceil_div(op.M, Cfg::BM) * ceil_div(op.N, Cfg::BN);
  index_t splits = 1;
  if (tiles < kTargetUnits) {
    const index_t by_work = ceil_div(kTargetUnits, tiles);
    const index_t by_length = ceil_div(op.K, kMinChunk);
    splits = by_work < by_length ? by_work : by_length;
  }
  if (splits < 1) splits = 1;
  // Whole BK steps per chunk, and no empty chunk at the end.
  index_t chunk = ceil_div(ceil_div(op.K, splits), Cfg::BK) * Cfg::BK;
  if (chunk < Cfg::BK) chunk = Cfg::BK;
  splits = ceil_div(op.K, chunk);
  if (splits <= 1) {
    run_gemm<T, Cfg>("conv2d_backward_weight kernel launch", op, 1, chunk);
    return;
  }
  const index_t total = op.s.c_out * op.N;
  Scratch buf(static_cast<std::size_t>(splits) * static_cast<std::size_t>(total) * sizeof(T));
  op.partial = static_cast<T*>(buf.p);
  run_gemm<T, Cfg>("conv2d_backward_weight kernel launch", op, splits, chunk);
  launch("conv2d_backward_weight reduction launch", sum_partials_kernel<T>,
         dim3(grid_for(total, kThreads)), dim3(kThreads), view4<T>(dw),
         static_cast<const T*>(op.partial), splits, op.s.c_out, op.N, op.s.kh, op.s.kw);
}

template <class T>
void channel_sums_t(Array4 out, Array4 x) {
  const index_t c = x.dim[1];
  if (c <= 0) return;
  const unsigned grid = static_cast<unsigned>(c < kMaxBlocks ? c : kMaxBlocks);
  launch("channel_sums kernel launch", channel_sums_kernel<T>, dim3(grid), dim3(kThreads),
         reinterpret_cast<T*>(out.ptr), out.stride[0], view4<const T>(x), x.dim[0], c, x.dim[2],
         x.dim[3]);
}

template <class T>
void conv2d_backward_weight_t(Array4 dw, Array4 db, Array4 dy, Array4 x,
                              const ConvGeometry& g) {
  const char* op_name = "conv2d_backward_weight";
  if (db.ptr) {
    require(db.dim[0] == dy.dim[1],
            std::string(op_name) + ": the bias gradient needs one value per channel of dy " +
                dims(dy));
    channel_sums_t<T>(db, dy);
  }
  if (!dw.ptr) return;
  const ConvSizes s = conv_sizes(op_name, dy, x, dw, g);
  if (s.c_out * s.cig * s.kh * s.kw <= 0) return;
  ConvBackwardWeight<T> op;
  op.s = s;
  op.dw = view4<T>(dw);
  op.dy = view4<const T>(dy);
  op.x = view4<const T>(x);
  op.M = s.cog;
  op.N = s.cig * s.kh * s.kw;
  op.K = s.n * s.oh * s.ow;
  op.groups = s.groups;
  if (op.M <= FlatTile::BM) backward_weight_tiles<T, FlatTile>(op, dw);
  else backward_weight_tiles<T, SquareTile>(op, dw);
}

template <class T>
void add_channel_bias_t(Array4 y, Array4 b) {
  require(b.dim[0] == y.dim[1], "add_channel_bias: the bias needs one value per channel of " +
                                    dims(y));
  const index_t total = y.dim[0] * y.dim[1] * y.dim[2] * y.dim[3];
  if (total <= 0) return;
  launch("add_channel_bias kernel launch", add_channel_bias_kernel<T>,
         dim3(grid_for(total, kThreads)), dim3(kThreads), view4<T>(y),
         reinterpret_cast<const T*>(b.ptr), b.stride[0], y.dim[0], y.dim[1], y.dim[2],
         y.dim[3]);
}

}  // namespace

void conv2d_forward(bool dbl, Array4 y, Array4 x, Array4 w, Array4 b, const ConvGeometry& g) {
  if (dbl) conv2d_forward_t<double>(y, x, w, b, g);
  else conv2d_forward_t<float>(y, x, w, b, g);
}

void conv2d_backward_data(bool dbl, Array4 dx, Array4 dy, Array4 w, const ConvGeometry& g) {
  if (dbl) conv2d_backward_data_t<double>(dx, dy, w, g);
  else conv2d_backward_data_t<float>(dx, dy, w, g);
}

void conv2d_backward_weight(bool dbl, Array4 dw, Array4 db, Array4 dy, Array4 x,
                            const ConvGeometry& g) {
  if (dbl) conv2d_backward_weight_t<double>(dw, db, dy, x, g);
  else conv2d_backward_weight_t<float>(dw, db, dy, x, g);
}

void add_channel_bias(bool dbl, Array4 y, Array4 b) {
  if (dbl) add_channel_bias_t<double>(y, b);
  else add_channel_bias_t<float>(y, b);
}

void channel_sums(bool dbl, Array4 out, Array4 x) {
  require(out.dim[0] == x.dim[1], "channel_sums: the output needs one value per channel of " +
                                      dims(x));
  if (dbl) channel_sums_t<double>(out, x);
  else channel_sums_t<float>(out, x);
}

}  // namespace cuda
}  // namespace fastnn
