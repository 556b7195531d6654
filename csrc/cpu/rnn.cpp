// The recurrent drivers (LSTM, GRU, Elman RNN), forward and backward through time.
//
// The rows of a batch never meet in a recurrence, so while each core can keep all the weights
// near (see Steps), the threads split the batch: one job for the whole time loop, a group of rows
// a thread, no join a step and no state written on one core and read on the other (row mode).
// Otherwise the threads split the hidden units, one job a step (column mode). Either way a
// thread's share of a step is the same sequence of unit chunks below, on a span of rows.
//
// Forward: the input projections of all steps are one GEMM into a (T, B, G*H) buffer whose
// columns are permuted so that each block of 16 hidden units owns G*16 contiguous columns (its
// gates side by side). Per step and chunk of unit blocks: a chunk runs its slice of the
// recurrent GEMM, accumulating U h into its columns of the step (beta = 1; the GRU writes U h
// apart, beta = 0, and adds b_hn in its gate pass, since r multiplies U_n h + b_hn), then the
// fused gate pass over the same columns while they are in cache. The recurrent weights are
// packed once per call into the GEMM micro-kernel's own layout, one packed block per chunk
// (sized to stay in L2), and the state h_{t-1} (the thread's rows of it) once per step and
// thread (see StepGemm): a step is then only micro-kernel calls, which ran at 177 GFLOPS on one
// AVX-512 Xeon core at 64 x 1024 x 256 against 70-95 for the direct path on the in-place panel.
// Everything per step is time-major, and rows whose stride is a multiple of 1 KiB get a cache
// line of padding (see padded()). The state alternates between two buffers, since a chunk reads
// all of h_{t-1} while others write their units of h_t.
//
// Backward: per step, unit chunks that first add dG_{t+1} W_hh (their columns) to the gradient
// flowing into h_t, then run the fused gate-derivative pass of step t for their units. dG is
// kept for all steps; the weight and bias gradients are one large GEMM after the loop over
// z = [x_t | h_{t-1} | 1] (see param_grads), and dx another, unless the loop computes it per
// step (in_loop_dx).
//
// LSTM and RNN with inputs no wider than the state fold the projection into the per-step
// product instead (fuse_input): one GEMM per step over [x_t | h_{t-1} | 1].
//
// Small problems do not pay for threads: the jobs run on threads_for(work) threads.
#include "cpu/rnn.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "common/cpuid.h"
#include "common/parallel.h"
#include "common/threading.h"
#include "common/workspace.h"
#include "cpu/gemm/dispatch.h"
#include "cpu/gemm/gemm.h"

namespace fastnn {

const RnnIsaRows& rnn_rows() {
#if defined(FASTNN_HAVE_X86_KERNELS)
  switch (active_isa()) {
    case Isa::avx512: return kRnnRowsAvx512;
    case Isa::avx2: return kRnnRowsAvx2;
    default: break;
  }
#endif
  return kRnnRowsGeneric;
}

namespace {

template <class T>
const RnnRows<T>& rows_for();
template <>
const RnnRows<float>& rows_for<float>() { return rnn_rows().f32; }
template <>
const RnnRows<double>& rows_for<double>() { return rnn_rows().f64; }

template <class T>
const GemmKernel<T>& kernel_for();
template <>
const GemmKernel<float>& kernel_for<float>() { return active_kernels().f32; }
template <>
const GemmKernel<double>& kernel_for<double>() { return active_kernels().f64; }

// A chunk's recurrent weight panel stays below this (L2 of the smallest target, Zen 3: 512 KiB).
constexpr double kPanelBytes = 256.0 * 1024.0;

// Carves one scratch allocation into 64-byte aligned arrays.
class Carve {
 public:
  template <class T>
  static std::size_t bytes(index_t n) { return (std::size_t(n) * sizeof(T) + 63) / 64 * 64; }
  void bind(char* base) { base_ = base; }
  template <class T>
  T* take(index_t n) {
    T* p = reinterpret_cast<T*>(base_ + used_);
    used_ += bytes<T>(n);
    return p;
  }

 private:
  char* base_ = nullptr;
  std::size_t used_ = 0;
};

template <class T>
T* ws_alloc(std::size_t total) {
  return static_cast<T*>(scratch(kScratchOp, total));
}

// wt (K x G*H) = w^T with permuted columns (see rnn.h), w (G*H x K); bias_p likewise, the sum of
// the given biases (either may be null).
// (Unit blocks in parallel: a serial pack was about 2% of an LSTM forward at the bench size.)
template <class T>
void pack_weights(T* wt, const T* w, int G, index_t H, index_t K) {
  const index_t GH = G * H;
  const index_t nblocks = (H + kRnnBlock - 1) / kRnnBlock;
  parallel_range(nblocks, 1, threads_for(double(GH) * double(K), 1 << 17),
                 [&](index_t blk0, index_t blk1) {
    for (index_t b0 = blk0 * kRnnBlock; b0 < std::min(H, blk1 * kRnnBlock); b0 += kRnnBlock) {
      const index_t U = std::min(kRnnBlock, H - b0);
      for (index_t k = 0; k < K; ++k) {
        T* dst = wt + k * GH + G * b0;
        for (int q = 0; q < G; ++q)
          for (index_t j = 0; j < U; ++j) dst[q * U + j] = w[(q * H + b0 + j) * K + k];
      }
    }
  });
}

// dst (cols x rows, row stride ldd) := src^T, src (rows x cols, row stride lds), in 32 x 32
// blocks so that the strided side walks whole cache lines (a column at a time read a new line
// for every element: 2% of an LSTM backward). Row blocks in parallel.
template <class T>
void transpose_into(T* dst, index_t ldd, const T* src, index_t lds, index_t rows, index_t cols) {
  constexpr index_t kB = 32;
  parallel_range(rows, kB, threads_for(double(rows) * double(cols), 1 << 17),
                 [&](index_t r0, index_t r1) {
                   for (index_t c0 = 0; c0 < cols; c0 += kB) {
                     const index_t c1 = std::min(cols, c0 + kB);
                     for (index_t c = c0; c < c1; ++c)
                       for (index_t r = r0; r < r1; ++r) dst[c * ldd + r] = src[r * lds + c];
                   }
                 });
}

template <class T>
void pack_bias(T* out, const T* b1, const T* b2, int G, index_t H) {
  for (index_t b0 = 0; b0 < H; b0 += kRnnBlock) {
    const index_t U = std::min(kRnnBlock, H - b0);
    for (int q = 0; q < G; ++q)
      for (index_t j = 0; j < U; ++j) {
        const index_t src = q * H + b0 + j;
        out[G * b0 + q * U + j] = (b1 ? b1[src] : T(0)) + (b2 ? b2[src] : T(0));
      }
  }
}

// How a time loop runs. Column mode (groups == 0): one job a step over chunks of hidden units,
// each chunk the product and gate pass of its units for every batch row. Row mode (groups > 0):
// one job for the whole loop, a group of batch rows a thread, each running every step of its own
// rows alone (the rows of a batch never meet in a recurrence). Row mode has no join a step and
// no state that one core writes and the other reads, but each core reads all the weights every
// step, so it is taken only while they fit its L2 beside the rest.
struct Steps {
  index_t chunks = 1, units = 0;
  int threads = 1;
  index_t groups = 0;
  // Group g's first batch row (B rows in all); g = groups gives B.
  index_t row0(index_t g, index_t B) const { return groups ? g * B / groups : 0; }
};

// Row mode while every group keeps at least this many rows (a product of fewer wastes most of
// the micro-kernel's 12-row tiles) and all the packed weights stay within kRowPanelBytes. Two
// threads of an AVX-512 Xeon (2 MiB L2 a core), row mode against column mode: LSTM B = 64,
// I = H = 256 (2.1 MB of fused weights) forward 29-31 against 31-33 ms, forward + backward
// 87-93 against 97-101; GRU at that size 24 / 72 against 25-28 / 80-86 ms; the row-LSTM
// (B = 64, T = 28, I = 28, H = 128) forward + backward 4.6-4.8 against 5.9-6.4 ms; GRU H = 512
// (3.1 MB) even; LSTM H = 512 (8.4 MB) 4% slower and H = 1024 (34 MB) 8-17% slower.
constexpr index_t kRowGroupMin = 16;
constexpr double kRowPanelBytes = 3.5 * 1024.0 * 1024.0;

Steps plan_steps(index_t B, index_t H, int G, std::size_t elem, index_t K) {
  const index_t nblocks = (H + kRnnBlock - 1) / kRnnBlock;
  Steps s;
  s.threads = threads_for(double(B) * G * double(H) * double(H));
  const double panel = double(G) * double(H) * double(K) * double(elem);
  bool rows = s.threads > 1 && B >= kRowGroupMin * s.threads && panel <= kRowPanelBytes;
  if (rows) s.groups = s.threads;
  // Column mode deals the chunks out evenly to the threads; in row mode a thread runs them all.
  const int dealt = rows ? 1 : s.threads;
  index_t chunks = std::max<index_t>(dealt, index_t(std::ceil(panel / kPanelBytes)));
  chunks = (chunks + dealt - 1) / dealt * dealt;
  chunks = std::min(chunks, nblocks);
  const index_t per = (nblocks + chunks - 1) / chunks;
  s.chunks = (nblocks + per - 1) / per;
  s.units = per * kRnnBlock;
  if (!rows) s.threads = int(std::min<index_t>(s.threads, s.chunks));
  return s;
}

// n plus one cache line: rows whose byte stride is a multiple of 1 or 4 KiB (H = 256 gives
// both) map to the same few L1 sets, and a GEMM tile walking them evicts itself; the pad
// spreads them over all sets.
template <class T>
index_t padded(index_t n) {
  return n + 64 / index_t(sizeof(T));
}

// C (m x n, row stride ldc) = beta*C + A (m x k, rsa, csa) @ B (k x n, row stride ldb, unit
// columns) [+ bias per column].
template <class T>
void mm(index_t m, index_t n, index_t k, const T* a, index_t rsa, index_t csa, const T* b,
        index_t ldb, T* c, index_t ldc, T beta, const T* bias = nullptr) {
  GemmProblem<T> p;
  p.m = m; p.n = n; p.k = k;
  p.a = a; p.rsa = rsa; p.csa = csa;
  p.b = b; p.rsb = ldb; p.csb = 1;
  p.c = c; p.rsc = ldc; p.csc = 1;
  p.beta = beta;
  p.ep.bias = bias;
  p.ep.bias_axis = 1;
  gemm(p);
}

// Batch-first (B, Tsrc, F) rows [0, steps) -> time-major (steps, B, F), and back: every step's
// block contiguous for the per-step GEMMs and passes (batch-first rows of one step sit T*F
// apart, a multiple of 4 KiB at the usual sizes, so they would all fall into the same L1 sets).
template <class T>
void to_time_major(T* dst, const T* src, index_t B, index_t steps, index_t F, index_t Tsrc) {
  parallel_range(steps, 1, threads_for(double(B) * double(steps) * double(F)),
                 [&](index_t t0, index_t t1) {
                   for (index_t t = t0; t < t1; ++t)
                     for (index_t b = 0; b < B; ++b)
                       std::memcpy(dst + (t * B + b) * F, src + (b * Tsrc + t) * F,
                                   std::size_t(F) * sizeof(T));
                 });
}

template <class T>
void to_batch_first(T* dst, const T* src, index_t B, index_t Tn, index_t F) {
  parallel_range(B, 1, threads_for(double(B) * double(Tn) * double(F)),
                 [&](index_t b0, index_t b1) {
                   for (index_t b = b0; b < b1; ++b)
                     for (index_t t = 0; t < Tn; ++t)
                       std::memcpy(dst + (b * Tn + t) * F, src + (t * B + b) * F,
                                   std::size_t(F) * sizeof(T));
                 });
}

// The per-step recurrent products on the GEMM's own micro-kernel with both operands packed in
// its layouts: each chunk's weight columns once per call (k x its columns, NR-wide slivers read
// sequentially from L2, where the in-place panel cost a strided read per k step), the state
// once per step and thread (m x k, into the thread's own buffer, the first time one of its
// chunks needs it). Then every step is only micro-kernel calls.
template <class T>
struct StepGemm {
  const GemmKernel<T>* K = nullptr;
  index_t k = 0;
  T* bp = nullptr;  // chunk c's packed columns at bp + c * bstride
  index_t bstride = 0;
  T* ap = nullptr;  // slot s's packed A at ap + s * astride
  index_t astride = 0;
  std::vector<index_t> tag;  // the key (step and row group) whose A each slot holds

  // m: the most rows one product has.
  static StepGemm plan(index_t m, index_t k, index_t cols_per_chunk, int threads) {
    StepGemm g;
    g.K = &kernel_for<T>();
    g.k = k;
    const index_t nr = g.K->blk.nr;
    g.bstride = (k * ((cols_per_chunk + nr - 1) / nr * nr) + 15) / 16 * 16;
    g.astride = (g.K->packed_a_elems(m, k) + 15) / 16 * 16;
    g.tag.assign(std::size_t(threads), -1);
    return g;
  }
  std::size_t bytes(index_t chunks) const {
    return Carve::bytes<T>(chunks * bstride) + Carve::bytes<T>(index_t(tag.size()) * astride);
  }
  void take(Carve& cv, index_t chunks) {
    bp = cv.take<T>(chunks * bstride);
    ap = cv.take<T>(index_t(tag.size()) * astride);
  }
  // Chunk c's B: k x n of b (row stride rsb, unit columns).
  void pack_b(index_t c, index_t n, const T* b, index_t rsb) const {
    K->pack_b(bp + c * bstride, k, n, b, rsb, 1);
  }
  // Columns [p0, p0 + kc) of the packed A (m rows) at as from a (m x kc, row stride lda;
  // lda = 0 with kc = 1: the column of a's one value).
  void pack_a(T* as, index_t m, index_t p0, index_t kc, const T* a, index_t lda) const {
    K->pack_a(as, m, k, p0, kc, a, lda, lda ? 1 : 0);
  }
  // C (m x n, row stride ldc) = beta*C + A @ B_c, A (m rows) being the one of `key` (a step, and
  // the row group in row mode): pack(as) packs it into `as` the first time this slot needs it.
  template <class Pack>
  void run(index_t key, int slot, index_t c, index_t m, index_t n, Pack&& pack, T* cm,
           index_t ldc, T beta) {
    T* as = ap + slot * astride;
    if (tag[std::size_t(slot)] != key) {
      pack(as);
      tag[std::size_t(slot)] = key;
    }
    K->packed(m, n, k, as, bp + c * bstride, cm, ldc, beta);
  }
  // The same with A (m x k, row stride lda) in one array.
  void run(index_t key, int slot, index_t c, index_t m, index_t n, const T* a, index_t lda,
           T* cm, index_t ldc, T beta) {
    run(key, slot, c, m, n, [&](T* as) { pack_a(as, m, 0, k, a, lda); }, cm, ldc, beta);
  }
};

// xp (T*B x GH, time-major, row stride ldx) = x @ wt + bias; xt: T*B*I scratch.
template <class T>
void project(T* xp, index_t ldx, T* xt, const T* x, const T* wt, const T* bias,
             const RnnDims& d, index_t GH) {
  to_time_major(xt, x, d.B, d.T, d.I, d.T);
  mm<T>(d.B * d.T, GH, d.I, xt, d.I, 1, wt, GH, xp, ldx, T(0), bias);
}

template <class T>
void copy_units(T* dst, const T* src, index_t u0, index_t u1) {
  std::memcpy(dst + u0, src + u0, std::size_t(u1 - u0) * sizeof(T));
}

template <class T>
void zero_units(T* dst, index_t u0, index_t u1) {
  std::memset(dst + u0, 0, std::size_t(u1 - u0) * sizeof(T));
}

// dx = dgx @ w_ih (unless dx is null: the time loop did it); dw_ih = dgx^T x; dw_hh = sum over
// steps that ran of dgh_t^T h_{t-1}, with
// dgx, dgh time-major (T*B x GH, row stride ldg); dgx == dgh when the cell has one gradient
// per gate (LSTM, RNN). Rows of steps past a sequence's end have dG = 0, so pairing them with
// anything adds nothing.
//
// The weight gradients are computed transposed, [x | h_prev | 1]^T (I+H+1 x T*B) @ dG, one GEMM
// for both when dgx == dgh: the GEMM packs its A operand with a transposing copy and its B
// operand with a plain one, so A should be the narrower [x | h_prev | 1], not dG (G*H); the
// result is then transposed into dw_ih and dw_hh. Its row of ones gives the bias gradient (the
// column sums of dG) for one more row of the product: summed in the time loop instead, it cost
// that loop a tenth of its time (row-LSTM). With two gradients (GRU), z is [x | 1 | h_prev | 1]
// and each half goes with its own dG. db_hh is null when it equals db_ih. Scratch: buf T*B*I,
// z T*B*(I+H+2), ct (I+H+2)*G*H.
template <class T>
void param_grads(T* dx, T* dw_ih, T* dw_hh, T* db_ih, T* db_hh, const T* dgx, const T* dgh,
                 index_t ldg, const T* x, const T* y, const T* h0, const T* w_ih,
                 const RnnDims& d, index_t GH, T* buf, T* z, T* ct) {
  const index_t B = d.B, Tn = d.T, I = d.I, H = d.H, TB = Tn * B;
  const bool one = dgx == dgh;
  const index_t hoff = one ? I : I + 1;  // where h_prev starts in a row of z
  const index_t zw = hoff + H + 1;
  if (dx) {
    mm<T>(TB, I, GH, dgx, ldg, 1, w_ih, I, buf, I, T(0));
    to_batch_first(dx, buf, B, Tn, I);
  }
  parallel_range(Tn, 1, threads_for(double(TB) * double(zw)), [&](index_t t0, index_t t1) {
    for (index_t t = t0; t < t1; ++t)
      for (index_t b = 0; b < B; ++b) {
        T* row = z + (t * B + b) * zw;
        std::memcpy(row, x + (b * Tn + t) * I, std::size_t(I) * sizeof(T));
        if (!one) row[I] = T(1);
        std::memcpy(row + hoff, t ? y + (b * Tn + t - 1) * H : h0 + b * H,
                    std::size_t(H) * sizeof(T));
        row[zw - 1] = T(1);
      }
  });
  if (one) {
    mm<T>(zw, GH, TB, z, 1, zw, dgx, ldg, ct, GH, T(0));
  } else {
    mm<T>(I + 1, GH, TB, z, 1, zw, dgx, ldg, ct, GH, T(0));
    mm<T>(H + 1, GH, TB, z + hoff, 1, zw, dgh, ldg, ct + hoff * GH, GH, T(0));
  }
  transpose_into(dw_ih, I, ct, GH, I, GH);
  transpose_into(dw_hh, H, ct + hoff * GH, GH, H, GH);
  const T* last = ct + (zw - 1) * GH;
  if (one) {
    std::memcpy(db_ih, last, std::size_t(GH) * sizeof(T));
  } else {
    std::memcpy(db_ih, ct + I * GH, std::size_t(GH) * sizeof(T));
    std::memcpy(db_hh, last, std::size_t(GH) * sizeof(T));
  }
}

// Scratch of a backward: dg_arrays of T*B x ldg, the w_hh panels, then param_grads' buffers.
template <class T>
std::size_t backward_bytes(const RnnDims& d, index_t ldg, int dg_arrays, std::size_t sg_bytes,
                           index_t GH) {
  return dg_arrays * Carve::bytes<T>(d.T * d.B * ldg) + sg_bytes +
         Carve::bytes<T>(d.T * d.B * d.I) + Carve::bytes<T>(d.T * d.B * (d.I + d.H + 2)) +
         Carve::bytes<T>((d.I + d.H + 2) * GH);
}

template <class T>
struct GradScratch {
  T* buf;
  T* z;
  T* ct;
};

template <class T>
GradScratch<T> take_grad_scratch(Carve& cv, const RnnDims& d, index_t GH) {
  GradScratch<T> g;
  g.buf = cv.take<T>(d.T * d.B * d.I);
  g.z = cv.take<T>(d.T * d.B * (d.I + d.H + 2));
  g.ct = cv.take<T>((d.I + d.H + 2) * GH);
  return g;
}

// The forward's scratch and packing, alike for the three cells: W_ih^T, one recurrent panel per
// chunk (whh_t, ldw), the inputs of every step projected into xp (ldx apart) with the bias
// b_ih + b_add (b_add may be null), and the two state buffers hbuf with h0 in the first.
// `extra` more bytes stay in cv for the caller.
// Whether the forward folds the input projection into the per-step product (LSTM and RNN; the
// GRU needs W_n x apart from U_n h). Per step the weights [W_ih; W_hh] are read from L2 instead
// of W_hh alone, and in exchange the projection of all steps (T*B x G*H, 26 MB at the bench
// size) never goes to memory and back. Only while the input is no wider than the state, so the
// per-step weights stay at most about twice the recurrent ones. (Bench size, one thread of an
// AVX-512 Xeon: LSTM inference 56 -> 51 ms of CPU time.)
bool fuse_input(const RnnDims& d) { return d.I <= d.H; }

// Whether the backward computes dx inside the time loop (with the forward's fusion only): a step
// then reads W_ih beside W_hh. Past kLoopDxBytes of the two, the loop's products lose more to
// the weights leaving L2 than the loop saves. Two threads of an AVX-512 Xeon (2 MiB L2 a core):
// LSTM B = 64, T = 100, I = H = 256 (2 MiB of weights) backward 61.2-65.9 ms with dx in the loop
// against 58.5-61.0 with one GEMM after it, lower in each of 6 alternating pairs; the Elman RNN
// at that size (512 KiB) 15.5-15.9 in the loop against 17.8-18.2 after it.
constexpr double kLoopDxBytes = 1024.0 * 1024.0;

bool in_loop_dx(const RnnDims& d, index_t GH, std::size_t elem) {
  return fuse_input(d) && double(GH) * double(d.H + d.I) * double(elem) <= kLoopDxBytes;
}

// Whether the LSTM forward streams its saved gates (S values a unit and step) past the caches:
// only when there are too many for the caches to keep them until the backward reads them. Two
// threads of an AVX-512 Xeon, forward + backward, plain stores against streaming: the row-LSTM
// (B = 64, T = 28, H = 128: 4.6 MB of gates) 4.47-5.04 against 4.95-5.27 ms, lower in each of
// 12 alternating pairs; at B = 64, T = 100, H = 256 (32.8 MB) streaming was 0-4% faster. (The
// GRU streams always: a stream flag in its row loop cost its inference 2-3%, and no GRU case
// gained.)
constexpr double kStreamSavedBytes = 16.0 * 1024.0 * 1024.0;
template <class T>
bool stream_saved(const RnnDims& d, int S) {
  return double(d.T) * double(d.B) * S * double(d.H) * sizeof(T) > kStreamSavedBytes;
}

template <class T>
struct ForwardWork {
  Steps s;
  index_t ldx;
  bool fused;
  Carve cv;
  StepGemm<T> sg;
  T* xp;
  T* hbuf;
  // Step t's pre-activations: the projected step, or the one step buffer when fused.
  T* pre(index_t t, index_t B) const { return fused ? xp : xp + t * B * ldx; }
  // Step t's product for chunk ch, rows [r0, r1) and columns [col0, col0 + n) of pre(t): U h_{t-1}
  // added to the projection, or (fused) the whole [x_t | h_{t-1} | 1] @ [W_ih; W_hh; b]^T.
  void product(index_t t, index_t key, int slot, index_t ch, index_t col0, index_t n, index_t r0,
               index_t r1, const T* x, const T* hp, const RnnDims& d) {
    T* c = pre(t, d.B) + r0 * ldx + col0;
    const index_t m = r1 - r0;
    hp += r0 * d.H;
    if (!fused) {
      sg.run(key, slot, ch, m, n, hp, d.H, c, ldx, T(1));
      return;
    }
    const T one = T(1);
    const T* xt = x + r0 * d.T * d.I + t * d.I;
    sg.run(
        key, slot, ch, m, n,
        [&](T* as) {
          sg.pack_a(as, m, 0, d.I, xt, d.T * d.I);
          sg.pack_a(as, m, d.I, d.H, hp, d.H);
          sg.pack_a(as, m, d.I + d.H, 1, &one, 0);
        },
        c, ldx, T(0));
  }
};

template <class T>
ForwardWork<T> prepare_forward(int G, const RnnDims& d, const T* x, const T* h0, const T* w_ih,
                               const T* w_hh, const T* b_ih, const T* b_add, std::size_t extra,
                               bool fuse) {
  const index_t B = d.B, Tn = d.T, I = d.I, H = d.H, GH = G * H;
  ForwardWork<T> f;
  f.fused = fuse;
  const index_t K = fuse ? I + H + 1 : H;  // fused: [x_t | h_{t-1} | 1] @ [W_ih; W_hh; b]^T
  f.s = plan_steps(B, H, G, sizeof(T), K);
  f.ldx = padded<T>(GH);
  f.sg = StepGemm<T>::plan(B, K, G * f.s.units, f.s.threads);
  const index_t xp_rows = fuse ? B : Tn * B, xt_elems = fuse ? 0 : Tn * B * I;
  const std::size_t total = Carve::bytes<T>((I + H + 1) * GH) + f.sg.bytes(f.s.chunks) +
                            Carve::bytes<T>(xp_rows * f.ldx) + Carve::bytes<T>(xt_elems) +
                            Carve::bytes<T>(2 * B * H) + extra;
  Carve& cv = f.cv;
  cv.bind(reinterpret_cast<char*>(ws_alloc<T>(total)));
  // wih_t and whh_t adjoin, and the bias row follows: together the fused operand (K x GH)
  T* wih_t = cv.take<T>((I + H + 1) * GH);
  T* whh_t = wih_t + I * GH;
  T* bias = whh_t + H * GH;
  f.sg.take(cv, f.s.chunks);
  f.xp = cv.take<T>(xp_rows * f.ldx);
  T* xt = cv.take<T>(xt_elems);
  f.hbuf = cv.take<T>(2 * B * H);
  pack_weights(wih_t, w_ih, G, H, I);
  pack_weights(whh_t, w_hh, G, H, H);
  pack_bias(bias, b_ih, b_add, G, H);
  const T* wk = fuse ? wih_t : whh_t;
  for (index_t c = 0; c < f.s.chunks; ++c) {
    const index_t u0 = c * f.s.units, u1 = std::min(H, u0 + f.s.units);
    f.sg.pack_b(c, G * (u1 - u0), wk + G * u0, GH);
  }
  if (!fuse) project(f.xp, f.ldx, xt, x, wih_t, bias, d, GH);
  std::memcpy(f.hbuf, h0, std::size_t(B * H) * sizeof(T));
  return f;
}

// The backward's scratch, alike for the three cells: dG of every step (dg[0]; dg[1] a second
// array when the input and recurrent gate gradients differ, else the same), the packed W_hh
// W_hh (sg: each chunk's columns of it) and the parameter-gradient scratch.
template <class T>
struct BackwardWork {
  Steps s;
  index_t xchunks;  // chunks of dx columns run in the time loop (0: dx is one GEMM afterwards)
  index_t xw;       // dx columns a chunk
  index_t ldg;
  T* dg[2];
  StepGemm<T> sg;
  GradScratch<T> gs;
};

template <class T>
BackwardWork<T> prepare_backward(int G, const RnnDims& d, const T* w_hh, const T* w_ih,
                                 int dg_arrays) {
  const index_t H = d.H, I = d.I, GH = G * H;
  BackwardWork<T> bw;
  bw.s = plan_steps(d.B, H, G, sizeof(T), H);
  // With one gradient per gate (LSTM, RNN) and the forward's fusion, dx_t = dG_t W_ih joins the
  // step too, in chunks of input columns after the unit chunks, on the same packed dG_t, while
  // W_ih and W_hh together stay small enough to share a core's L2 with the rest (in_loop_dx).
  // In column mode at least one chunk a thread: with one dx chunk beside two unit chunks (the
  // row-LSTM, I = 28), the thread that took the dx chunk after its unit chunk ran a third longer
  // each step. In row mode a thread runs every chunk, and splitting I = 28 in two only doubled
  // the partial tiles (backward 2.92-3.08 -> 2.78-2.82 ms with one chunk).
  const index_t least = bw.s.groups ? 1 : bw.s.threads;
  bw.xchunks = dg_arrays == 1 && in_loop_dx(d, GH, sizeof(T))
                   ? std::min<index_t>(I, std::max<index_t>(least,
                                                            (I + bw.s.units - 1) / bw.s.units))
                   : 0;
  bw.xw = bw.xchunks ? (I + bw.xchunks - 1) / bw.xchunks : 0;
  if (bw.xw) bw.xchunks = (I + bw.xw - 1) / bw.xw;
  const index_t blocks = bw.s.chunks + bw.xchunks;
  bw.ldg = padded<T>(GH);
  bw.sg = StepGemm<T>::plan(d.B, GH, bw.s.units, bw.s.threads);
  Carve cv;
  cv.bind(reinterpret_cast<char*>(
      ws_alloc<T>(backward_bytes<T>(d, bw.ldg, dg_arrays, bw.sg.bytes(blocks), GH))));
  bw.dg[0] = cv.take<T>(d.T * d.B * bw.ldg);
  bw.dg[1] = dg_arrays == 2 ? cv.take<T>(d.T * d.B * bw.ldg) : bw.dg[0];
  bw.sg.take(cv, blocks);
  for (index_t c = 0; c < bw.s.chunks; ++c) {
    const index_t u0 = c * bw.s.units, u1 = std::min(H, u0 + bw.s.units);
    bw.sg.pack_b(c, u1 - u0, w_hh + u0, H);
  }
  for (index_t c = 0; c < bw.xchunks; ++c) {
    const index_t i0 = c * bw.xw, i1 = std::min(I, i0 + bw.xw);
    bw.sg.pack_b(bw.s.chunks + c, i1 - i0, w_ih + i0, I);
  }
  bw.gs = take_grad_scratch<T>(cv, d, GH);
  return bw;
}

// Rows [r0, r1) of a time loop's job, and the key their packed state goes by: the step, and in
// row mode the group too (a thread that takes a second group must not reuse the first's).
struct RowSpan {
  index_t r0, r1, key;
};

// Runs body(t, slot, span, ch) for every step t from `first` to `last` (stride +1 or -1), every
// chunk of s (chunks_at_first of them at step `first`: the backward's first step has no dx
// chunks) and every row group: column mode one job a step over the chunks, row mode one job over
// the groups, each running all its steps in order. `end_job(slot)` runs at the end of each part
// of a job (a chunk, or a group).
template <class Body, class End>
void time_loop(const Steps& s, index_t B, index_t first, index_t last, index_t stride,
               index_t chunks_at_first, Body&& body, End&& end_job) {
  auto chunks_of = [&](index_t t) { return t == first ? chunks_at_first : s.chunks; };
  if (s.groups) {
    parallel_for(s.groups, s.threads, [&](std::int64_t g, int slot) {
      const index_t r0 = s.row0(g, B), r1 = s.row0(g + 1, B);
      for (index_t t = first;; t += stride) {
        const RowSpan span{r0, r1, t * s.groups + g};
        for (index_t ch = 0; ch < chunks_of(t); ++ch) body(t, slot, span, ch);
        if (t == last) break;
      }
      end_job(slot);
    });
    return;
  }
  for (index_t t = first;; t += stride) {
    parallel_for(chunks_of(t), s.threads, [&](std::int64_t ch, int slot) {
      body(t, slot, RowSpan{0, B, t}, ch);
      end_job(slot);
    });
    if (t == last) break;
  }
}

// The forward time loop of every cell. h alternates between the two halves of hbuf (h0 already
// in the first): per step, chunk of units and span of rows, `step(t, slot, span, ch, u0, u1,
// hp)` runs the chunk's slice of the recurrent product for the span's rows, then `cell(t, b,
// u0, u1, hp, hn, yr)` the gate pass of each of those rows still running; a finished row
// carries its state over and emits zeros.
template <class T, class Step, class Cell>
void forward_through_time(const Steps& s, const RnnDims& d, const std::int64_t* lengths, T* y,
                          T* h_n, T* hbuf, Step&& step, Cell&& cell) {
  const index_t B = d.B, Tn = d.T, H = d.H;
  time_loop(
      s, B, 0, Tn - 1, 1, s.chunks,
      [&](index_t t, int slot, const RowSpan& span, index_t ch) {
        const T* hp = hbuf + (t & 1) * B * H;
        T* hn = hbuf + ((t + 1) & 1) * B * H;
        const index_t u0 = ch * s.units, u1 = std::min(H, u0 + s.units);
        step(t, slot, span, ch, u0, u1, hp);
        for (index_t b = span.r0; b < span.r1; ++b) {
          T* yr = y + (b * Tn + t) * H;
          if (t < lengths[b]) {
            cell(t, b, u0, u1, hp, hn, yr);
          } else {
            copy_units(hn + b * H, hp + b * H, u0, u1);
            zero_units(yr, u0, u1);
          }
        }
      },
      [](int) { rows_for<T>().fence(); });
  std::memcpy(h_n, hbuf + (Tn & 1) * B * H, std::size_t(B * H) * sizeof(T));
}

// The backward time loop of every cell: per step, chunk of units and span of rows, dh +=
// dG_{t+1} W_hh for the chunk's units (dgrec: the gradient at the recurrent product, sg: W_hh's
// packed chunks), then `cell(t, b, tb, u0, u1)` for each row that ran step t and `skip(tb, u0,
// u1)` for the others. With xchunks, chunks after the unit chunks compute dx_t = dG_t W_ih.
template <class T, class Cell, class Skip>
void backward_through_time(const Steps& s, const RnnDims& d, const std::int64_t* lengths,
                           T* dh, const T* dgrec, index_t ldg, StepGemm<T>& sg, index_t xchunks,
                           index_t xw, T* dx, Cell&& cell, Skip&& skip) {
  const index_t B = d.B, Tn = d.T, H = d.H, I = d.I;
  Steps sx = s;
  sx.chunks = s.chunks + xchunks;
  time_loop(
      sx, B, Tn, 0, -1, s.chunks,
      [&](index_t st, int slot, const RowSpan& span, index_t ch) {
        const index_t m = span.r1 - span.r0;
        const T* g = dgrec + (st * B + span.r0) * ldg;
        if (ch >= s.chunks) {  // dx_st, input columns [i0, i1): rows b*T + st of dx
          const index_t i0 = (ch - s.chunks) * xw, i1 = std::min(I, i0 + xw);
          sg.run(span.key, slot, ch, m, i1 - i0, g, ldg, dx + (span.r0 * Tn + st) * I + i0,
                 Tn * I, T(0));
          return;
        }
        const index_t u0 = ch * s.units, u1 = std::min(H, u0 + s.units);
        if (st < Tn)
          sg.run(span.key, slot, ch, m, u1 - u0, g, ldg, dh + span.r0 * H + u0, H, T(1));
        if (st == 0) return;
        const index_t t = st - 1;
        for (index_t b = span.r0; b < span.r1; ++b) {
          const index_t tb = t * B + b;
          if (t < lengths[b]) {
            cell(t, b, tb, u0, u1);
          } else {
            skip(tb, u0, u1);
          }
        }
      },
      [](int) {});
}

}  // namespace

// ---- LSTM ---------------------------------------------------------------------------------------

template <class T>
void lstm_forward(T* y, T* h_n, T* c_n, T* gates, const T* x, const T* h0, const T* c0,
                  const T* w_ih, const T* w_hh, const T* b_ih, const T* b_hh,
                  const std::int64_t* lengths, const RnnDims& d) {
  constexpr int G = 4;
  const index_t B = d.B, H = d.H;
  ForwardWork<T> f = prepare_forward(G, d, x, h0, w_ih, w_hh, b_ih, b_hh, 0, fuse_input(d));
  const index_t ldx = f.ldx;
  std::memcpy(c_n, c0, std::size_t(B * H) * sizeof(T));
  const RnnRows<T>& R = rows_for<T>();
  const bool stream = stream_saved<T>(d, 5);
  forward_through_time<T>(
      f.s, d, lengths, y, h_n, f.hbuf,
      [&](index_t t, int slot, const RowSpan& sp, index_t ch, index_t u0, index_t u1,
          const T* hp) {
        f.product(t, sp.key, slot, ch, G * u0, G * (u1 - u0), sp.r0, sp.r1, x, hp, d);
      },
      [&](index_t t, index_t b, index_t u0, index_t u1, const T*, T* hn, T* yr) {
        R.lstm_fwd(f.pre(t, B) + b * ldx, c_n + b * H, hn + b * H, yr,
                   gates ? gates + (t * B + b) * 5 * H : nullptr, stream, u0, u1, H);
      });
}

template <class T>
void lstm_backward(T* dx, T* dh0, T* dc0, T* dw_ih, T* dw_hh, T* db_ih, T* db_hh,
                   const T* gates, const T* y, const T* dy, const T* dh_n, const T* dc_n,
                   const T* x, const T* h0, const T* c0, const T* w_ih, const T* w_hh,
                   const std::int64_t* lengths, const RnnDims& d) {
  constexpr int G = 4;
  const index_t B = d.B, Tn = d.T, H = d.H, GH = G * H;
  BackwardWork<T> bw = prepare_backward<T>(G, d, w_hh, w_ih, 1);
  const index_t ldg = bw.ldg;
  T* dg = bw.dg[0];
  T* dh = dh0;  // the running gradients live in the outputs
  T* dc = dc0;
  std::memcpy(dh, dh_n, std::size_t(B * H) * sizeof(T));
  std::memcpy(dc, dc_n, std::size_t(B * H) * sizeof(T));
  const RnnRows<T>& R = rows_for<T>();
  backward_through_time<T>(
      bw.s, d, lengths, dh, dg, ldg, bw.sg, bw.xchunks, bw.xw, dx,
      [&](index_t t, index_t b, index_t tb, index_t u0, index_t u1) {
        T* g = dg + tb * ldg;
        const T* cprev = t ? gates + (tb - B) * 5 * H + 4 * H : c0 + b * H;
        R.lstm_bwd(g, dh + b * H, dc + b * H, dy + (b * Tn + t) * H, gates + tb * 5 * H, cprev,
                   u0, u1, H);
      },
      [&](index_t tb, index_t u0, index_t u1) {
        for (int q = 0; q < G; ++q) zero_units(dg + tb * ldg + q * H, u0, u1);
      });
  param_grads(bw.xchunks ? nullptr : dx, dw_ih, dw_hh, db_ih, static_cast<T*>(nullptr), dg, dg,
              ldg, x, y, h0, w_ih, d, GH, bw.gs.buf, bw.gs.z, bw.gs.ct);
  std::memcpy(db_hh, db_ih, std::size_t(GH) * sizeof(T));
}

// ---- GRU ----------------------------------------------------------------------------------------

template <class T>
void gru_forward(T* y, T* h_n, T* gates, const T* x, const T* h0, const T* w_ih, const T* w_hh,
                 const T* b_ih, const T* b_hh, const std::int64_t* lengths, const RnnDims& d) {
  constexpr int G = 3;
  const index_t B = d.B, H = d.H, GH = G * H;
  const index_t ldx = padded<T>(GH);
  // b_hr and b_hz go into the projection's bias with b_i; b_hn stays apart (r multiplies
  // U_n h + b_hn) and is added in the gate pass, so a step's product into rec is U h alone
  // (beta = 0: copying the bias into rec every step was 4% of the forward).
  std::vector<T> b_rz(std::size_t(GH), T(0));
  if (b_hh) std::copy(b_hh, b_hh + 2 * H, b_rz.begin());
  ForwardWork<T> f = prepare_forward<T>(G, d, x, h0, w_ih, w_hh, b_ih, b_rz.data(),
                                        Carve::bytes<T>(GH) + Carve::bytes<T>(B * ldx), false);
  const T* xp = f.xp;
  Carve& cv = f.cv;
  T* bias_h = cv.take<T>(GH);
  T* rec = cv.take<T>(B * ldx);
  pack_bias<T>(bias_h, b_hh, nullptr, G, H);
  const RnnRows<T>& R = rows_for<T>();
  forward_through_time<T>(
      f.s, d, lengths, y, h_n, f.hbuf,
      [&](index_t, int slot, const RowSpan& sp, index_t ch, index_t u0, index_t u1,
          const T* hp) {
        f.sg.run(sp.key, slot, ch, sp.r1 - sp.r0, G * (u1 - u0), hp + sp.r0 * H, H,
                 rec + sp.r0 * ldx + G * u0, ldx, T(0));
      },
      [&](index_t t, index_t b, index_t u0, index_t u1, const T* hp, T* hn, T* yr) {
        R.gru_fwd(xp + (t * B + b) * ldx, rec + b * ldx, bias_h, hp + b * H, hn + b * H, yr,
                  gates ? gates + (t * B + b) * 4 * H : nullptr, u0, u1, H);
      });
}

template <class T>
void gru_backward(T* dx, T* dh0, T* dw_ih, T* dw_hh, T* db_ih, T* db_hh, const T* gates,
                  const T* y, const T* dy, const T* dh_n, const T* x, const T* h0,
                  const T* w_ih, const T* w_hh, const std::int64_t* lengths, const RnnDims& d) {
  constexpr int G = 3;
  const index_t B = d.B, Tn = d.T, H = d.H, GH = G * H;
  BackwardWork<T> bw = prepare_backward<T>(G, d, w_hh, w_ih, 2);
  const index_t ldg = bw.ldg;
  T* dgx = bw.dg[0];
  T* dgh = bw.dg[1];
  T* dh = dh0;
  std::memcpy(dh, dh_n, std::size_t(B * H) * sizeof(T));
  const RnnRows<T>& R = rows_for<T>();
  backward_through_time<T>(
      bw.s, d, lengths, dh, dgh, ldg, bw.sg, bw.xchunks, bw.xw, dx,
      [&](index_t t, index_t b, index_t tb, index_t u0, index_t u1) {
        T* gx = dgx + tb * ldg;
        T* gh = dgh + tb * ldg;
        const T* hprev = t ? y + (b * Tn + t - 1) * H : h0 + b * H;
        R.gru_bwd(gx, gh, dh + b * H, dy + (b * Tn + t) * H, gates + tb * 4 * H, hprev, u0, u1,
                  H);
      },
      [&](index_t tb, index_t u0, index_t u1) {
        for (int q = 0; q < G; ++q) {
          zero_units(dgx + tb * ldg + q * H, u0, u1);
          zero_units(dgh + tb * ldg + q * H, u0, u1);
        }
      });
  param_grads(dx, dw_ih, dw_hh, db_ih, db_hh, dgx, dgh, ldg, x, y, h0, w_ih, d, GH, bw.gs.buf,
              bw.gs.z, bw.gs.ct);
}

// ---- Elman RNN ----------------------------------------------------------------------------------

template <class T>
void rnn_forward(T* y, T* h_n, const T* x, const T* h0, const T* w_ih, const T* w_hh,
                 const T* b_ih, const T* b_hh, const std::int64_t* lengths, const RnnDims& d,
                 bool relu) {
  const index_t B = d.B, H = d.H;
  ForwardWork<T> f = prepare_forward(1, d, x, h0, w_ih, w_hh, b_ih, b_hh, 0, fuse_input(d));
  const index_t ldx = f.ldx;
  const RnnRows<T>& R = rows_for<T>();
  forward_through_time<T>(
      f.s, d, lengths, y, h_n, f.hbuf,
      [&](index_t t, int slot, const RowSpan& sp, index_t ch, index_t u0, index_t u1,
          const T* hp) {
        f.product(t, sp.key, slot, ch, u0, u1 - u0, sp.r0, sp.r1, x, hp, d);
      },
      [&](index_t t, index_t b, index_t u0, index_t u1, const T*, T* hn, T* yr) {
        R.rnn_fwd(f.pre(t, B) + b * ldx, hn + b * H, yr, u0, u1, relu);
      });
}

template <class T>
void rnn_backward(T* dx, T* dh0, T* dw_ih, T* dw_hh, T* db_ih, T* db_hh, const T* y, const T* dy,
                  const T* dh_n, const T* x, const T* h0, const T* w_ih, const T* w_hh,
                  const std::int64_t* lengths, const RnnDims& d, bool relu) {
  const index_t B = d.B, Tn = d.T, H = d.H;
  BackwardWork<T> bw = prepare_backward<T>(1, d, w_hh, w_ih, 1);
  const index_t ldg = bw.ldg;
  T* dg = bw.dg[0];
  T* dh = dh0;
  std::memcpy(dh, dh_n, std::size_t(B * H) * sizeof(T));
  const RnnRows<T>& R = rows_for<T>();
  backward_through_time<T>(
      bw.s, d, lengths, dh, dg, ldg, bw.sg, bw.xchunks, bw.xw, dx,
      [&](index_t t, index_t b, index_t tb, index_t u0, index_t u1) {
        T* g = dg + tb * ldg;
        const index_t bt = b * Tn + t;
        R.rnn_bwd(g, dh + b * H, dy + bt * H, y + bt * H, u0, u1, relu);
      },
      [&](index_t tb, index_t u0, index_t u1) { zero_units(dg + tb * ldg, u0, u1); });
  param_grads(bw.xchunks ? nullptr : dx, dw_ih, dw_hh, db_ih, static_cast<T*>(nullptr), dg, dg,
              ldg, x, y, h0, w_ih, d, H, bw.gs.buf, bw.gs.z, bw.gs.ct);
  std::memcpy(db_hh, db_ih, std::size_t(H) * sizeof(T));
}

#define FASTNN_RNN_INSTANTIATE(T)                                                                \
  template void lstm_forward<T>(T*, T*, T*, T*, const T*, const T*, const T*, const T*,          \
                                const T*, const T*, const T*, const std::int64_t*,               \
                                const RnnDims&);                                                 \
  template void lstm_backward<T>(T*, T*, T*, T*, T*, T*, T*, const T*, const T*, const T*,       \
                                 const T*, const T*, const T*, const T*, const T*, const T*,     \
                                 const T*, const std::int64_t*, const RnnDims&);                 \
  template void gru_forward<T>(T*, T*, T*, const T*, const T*, const T*, const T*, const T*,     \
                               const T*, const std::int64_t*, const RnnDims&);                   \
  template void gru_backward<T>(T*, T*, T*, T*, T*, T*, const T*, const T*, const T*, const T*,  \
                                const T*, const T*, const T*, const T*, const std::int64_t*,     \
                                const RnnDims&);                                                 \
  template void rnn_forward<T>(T*, T*, const T*, const T*, const T*, const T*, const T*,         \
                               const T*, const std::int64_t*, const RnnDims&, bool);             \
  template void rnn_backward<T>(T*, T*, T*, T*, T*, T*, const T*, const T*, const T*, const T*,  \
                                const T*, const T*, const T*, const std::int64_t*,               \
                                const RnnDims&, bool);

FASTNN_RNN_INSTANTIATE(float)
FASTNN_RNN_INSTANTIATE(double)
#undef FASTNN_RNN_INSTANTIATE

}  // namespace fastnn
