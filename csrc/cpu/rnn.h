// The recurrent family on the CPU: LSTM, GRU and the Elman RNN over whole batch-first sequences,
// forward and backward through time (arrays C-contiguous, sizes > 0, lengths in [1, T]: the ops
// layer checked everything).
//
// Shapes: x (B, T, I), y (B, T, H), states (B, H), w_ih (G*H, I), w_hh (G*H, H), biases (G*H),
// G = 4 (LSTM: i f g o), 3 (GRU: r z n), 1 (RNN). Saved gates, time-major (T, B, S*H), each
// row in natural order: LSTM [i f g o c] (5H), GRU [r z n U_n h + b_hn] (4H); the RNN saves
// nothing (y holds h). Internally every per-step array is time-major too (see rnn.cpp).
// `gates` may be null (inference). Past a sequence's end y is 0 and the state carries over.
//
// How (see rnn.cpp): the input projections of all steps in one GEMM; per step, blocks of hidden
// units each running its slice of the recurrent GEMM (weights pre-packed per unit block, read in
// place from L2) and then the fused gate pass for the same units while the slice is hot, the
// threads splitting the batch rows (one job for all steps) or else the unit blocks (one job a
// step); backward the same way, and the weight gradients as large GEMMs afterwards.
#pragma once
#include <cstdint>

namespace fastnn {

using index_t = std::int64_t;

struct RnnDims {
  index_t B = 0, T = 0, I = 0, H = 0;
};

template <class T>
void lstm_forward(T* y, T* h_n, T* c_n, T* gates, const T* x, const T* h0, const T* c0,
                  const T* w_ih, const T* w_hh, const T* b_ih, const T* b_hh,
                  const std::int64_t* lengths, const RnnDims& d);
template <class T>
void lstm_backward(T* dx, T* dh0, T* dc0, T* dw_ih, T* dw_hh, T* db_ih, T* db_hh,
                   const T* gates, const T* y, const T* dy, const T* dh_n, const T* dc_n,
                   const T* x, const T* h0, const T* c0, const T* w_ih, const T* w_hh,
                   const std::int64_t* lengths, const RnnDims& d);
template <class T>
void gru_forward(T* y, T* h_n, T* gates, const T* x, const T* h0, const T* w_ih, const T* w_hh,
                 const T* b_ih, const T* b_hh, const std::int64_t* lengths, const RnnDims& d);
template <class T>
void gru_backward(T* dx, T* dh0, T* dw_ih, T* dw_hh, T* db_ih, T* db_hh, const T* gates,
                  const T* y, const T* dy, const T* dh_n, const T* x, const T* h0,
                  const T* w_ih, const T* w_hh, const std::int64_t* lengths, const RnnDims& d);
template <class T>
void rnn_forward(T* y, T* h_n, const T* x, const T* h0, const T* w_ih, const T* w_hh,
                 const T* b_ih, const T* b_hh, const std::int64_t* lengths, const RnnDims& d,
                 bool relu);
template <class T>
void rnn_backward(T* dx, T* dh0, T* dw_ih, T* dw_hh, T* db_ih, T* db_hh, const T* y, const T* dy,
                  const T* dh_n, const T* x, const T* h0, const T* w_ih, const T* w_hh,
                  const std::int64_t* lengths, const RnnDims& d, bool relu);

// ---- per-ISA row kernels (kernels/<isa>/rnn_<isa>.cpp over kernels/rnn_rows_impl.h) ---------
//
// One batch row, hidden units [u0, u1) (u0 a multiple of kRnnBlock). "Permuted" rows hold the
// gate pre-activations of unit block k (units 16k.. with U of them) as G runs of U values, gate
// by gate, at offset G*16k: the layout the recurrent GEMM of one unit block writes contiguously.
// Everything else is in natural order, indexed by unit j (gate q at q*H + j).

constexpr index_t kRnnBlock = 16;

template <class T>
struct RnnRows {
  // pre (permuted 4H, both projections and biases) -> c (in/out), h, y, cache (5H, or null).
  // y goes out with streaming stores where the ISA has them, and so does cache with `stream`
  // (saved gates too many to stay cached until the backward): call fence() after the last row.
  void (*lstm_fwd)(const T* pre, T* c, T* h, T* y, T* cache, bool stream, index_t u0,
                   index_t u1, index_t H);
  // dh, dc: the gradients flowing into this step's h and c (in); out: dh := 0, dc := dc * f;
  // dg (4H) := the gate pre-activation gradients. cprev: c of the previous step.
  void (*lstm_bwd)(T* dg, T* dh, T* dc, const T* dy, const T* cache, const T* cprev, index_t u0,
                   index_t u1, index_t H);
  // xp (permuted 3H, W x + b_i, plus b_h for r and z), rec (permuted 3H, U h), bh (permuted
  // 3H, b_h; only its n part is read), hprev -> h, y, cache (4H or null; both streamed)
  void (*gru_fwd)(const T* xp, const T* rec, const T* bh, const T* hprev, T* h, T* y, T* cache,
                  index_t u0, index_t u1, index_t H);
  // dgx/dgh (3H): gradients of W x + b_i and U h + b_h; dh := dh_total * z (the direct path)
  void (*gru_bwd)(T* dgx, T* dgh, T* dh, const T* dy, const T* cache, const T* hprev, index_t u0,
                  index_t u1, index_t H);
  void (*rnn_fwd)(const T* pre, T* h, T* y, index_t u0, index_t u1, bool relu);
  void (*rnn_bwd)(T* dg, T* dh, const T* dy, const T* y, index_t u0, index_t u1, bool relu);
  // Orders the streamed stores of the forward passes (the saved gates) before a job ends.
  void (*fence)();
  // The vector nonlinearities themselves (tests).
  void (*sigmoid)(T* y, const T* x, index_t n);
  void (*tanh)(T* y, const T* x, index_t n);
};

struct RnnIsaRows {
  const char* name;
  RnnRows<float> f32;
  RnnRows<double> f64;
};

extern const RnnIsaRows kRnnRowsGeneric;
#if defined(FASTNN_HAVE_X86_KERNELS)
extern const RnnIsaRows kRnnRowsAvx2;
extern const RnnIsaRows kRnnRowsAvx512;
#endif

// The active ISA's table (cpuid or FASTNN_ISA).
const RnnIsaRows& rnn_rows();

}  // namespace fastnn
