// The host-side entry points of fastnn._cuda, in plain C++ types so that the pybind11 bindings
// compile with the host compiler alone (pybind11 headers never go through nvcc).
//
// Every pointer is a device address (numba or our own DeviceBuffer), strides are in elements and
// may have any sign. The arguments are trusted: fastnn.ops validated shapes and dtypes, and
// fastnn.cuda translated the arrays. Kernels run on the legacy default stream, asynchronously;
// launch errors are thrown as std::runtime_error.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace fastnn {
namespace cuda {

using index_t = std::int64_t;

// A 2-D strided view; ptr == 0 means "absent" (an optional argument given as None).
struct MatArg {
  std::uintptr_t ptr = 0;
  index_t rs = 0, cs = 0;
};

// A 1-D strided view (bias, bias gradient).
struct VecArg {
  std::uintptr_t ptr = 0;
  index_t stride = 0;
};

// An N-d strided view over a shape given separately (elementwise kernels).
constexpr int kMaxDims = 8;
struct NdArg {
  std::uintptr_t ptr = 0;
  index_t strides[kMaxDims] = {};
};

// out (m x n) := alpha * a (m x k) @ b (k x n) + beta * c; c is not read when absent.
void gemm(bool dbl, index_t m, index_t n, index_t k, MatArg out, MatArg a, MatArg b, MatArg c,
          double alpha, double beta);

// y := act(x @ w^T + bias); z (if present) receives x @ w^T + bias. x: m x k, w: n x k.
void linear(bool dbl, index_t m, index_t n, index_t k, MatArg y, MatArg z, MatArg x, MatArg w,
            VecArg bias, int act, double param);

// dz := dy * act'(z, y); db := column sums of dz; dw := dz^T x; dx := dz w (each if present).
void linear_backward(bool dbl, index_t m, index_t n, index_t k, MatArg dx, MatArg dw, VecArg db,
                     MatArg dy, MatArg x, MatArg w, MatArg y, MatArg z, int act, double param);

// y := act(x) elementwise over shape (at most kMaxDims dimensions).
void activation(bool dbl, const std::vector<index_t>& shape, NdArg y, NdArg x, int kind,
                double param);

// dx := dy * act'(z, y); z may be absent (then y stands in for it).
void activation_backward(bool dbl, const std::vector<index_t>& shape, NdArg dx, NdArg dy, NdArg z,
                         NdArg y, int kind, double param);

// A strided array of at most 4 dimensions (an NCHW image, a conv weight, a bias vector), its
// dimensions left-aligned (a vector uses dim[0] and stride[0]); ptr == 0 means "absent".
struct Array4 {
  std::uintptr_t ptr = 0;
  index_t dim[4] = {1, 1, 1, 1};
  index_t stride[4] = {0, 0, 0, 0};
};

// The convolution geometry of the kernel modules: stride, top/left padding (the bottom/right
// padding follows from the output size), dilation, groups.
struct ConvGeometry {
  index_t sh = 1, sw = 1, ph = 0, pw = 0, dil_h = 1, dil_w = 1, groups = 1;
};

// A pooling window: size, stride, top/left padding.
struct PoolWindow {
  index_t kh = 1, kw = 1, sh = 1, sw = 1, ph = 0, pw = 0;
};

// Convolution (conv2d.cu), with the semantics of the CPU kernels: y (N, C_out, OH, OW),
// x (N, C_in, H, W), w (C_out, C_in/groups, kh, kw), b (C_out) or absent. Every output element is
// written (dx positions no tap reaches become 0). The sizes are checked against each other
// (std::invalid_argument) before anything runs, so inconsistent arrays never reach a kernel.
void conv2d_forward(bool dbl, Array4 y, Array4 x, Array4 w, Array4 b, const ConvGeometry& g);
void conv2d_backward_data(bool dbl, Array4 dx, Array4 dy, Array4 w, const ConvGeometry& g);
// dw and db are each optional (db := dy summed over N, OH, OW); x is not read without dw.
void conv2d_backward_weight(bool dbl, Array4 dw, Array4 db, Array4 dy, Array4 x,
                            const ConvGeometry& g);
// y[n, c, h, w] += b[c]: the bias of a transposed convolution.
void add_channel_bias(bool dbl, Array4 y, Array4 b);
// out[c] := sum of x[:, c, :, :], in a fixed order (deterministic).
void channel_sums(bool dbl, Array4 out, Array4 x);

// Pooling (pool.cu), with the semantics of the CPU kernels; argmax is int64, the flat index
// row * W + col into the input plane.
void max_pool2d_forward(bool dbl, Array4 y, Array4 argmax, Array4 x, const PoolWindow& p);
// gate (optional, ptr 0 when absent, dy's shape): dy counts only where gate > 0 (relu).
void max_pool2d_backward(bool dbl, Array4 dx, Array4 argmax, Array4 dy, Array4 gate);
void avg_pool2d_forward(bool dbl, Array4 y, Array4 x, const PoolWindow& p,
                        bool count_include_pad);
void avg_pool2d_backward(bool dbl, Array4 dx, Array4 dy, const PoolWindow& p,
                         bool count_include_pad);

// The recurrent family (rnn.cu), with the semantics and saved gates of csrc/cpu/rnn.h. Every
// array is C-contiguous on the device; an address of 0 is absent (gates in inference). kind: 0
// LSTM, 1 GRU, 2 RNN tanh, 3 RNN relu. The names are those of the kernel signatures.
struct RnnCall {
  index_t B = 0, T = 0, I = 0, H = 0;
  int kind = 0;
  std::uintptr_t y = 0, h_n = 0, c_n = 0, gates = 0, x = 0, h0 = 0, c0 = 0, w_ih = 0, w_hh = 0,
                 b_ih = 0, b_hh = 0, lengths = 0;
  std::uintptr_t dx = 0, dh0 = 0, dc0 = 0, dw_ih = 0, dw_hh = 0, db_ih = 0, db_hh = 0, dy = 0,
                 dh_n = 0, dc_n = 0;
};
void rnn_forward(bool dbl, const RnnCall& c);
void rnn_backward(bool dbl, const RnnCall& c);
// Attention (attention.cu), with the semantics of the CPU kernels: q (B, H, Nq, d), k (B, H,
// Nk, d), v (B, H, Nk, dv), o (B, H, Nq, dv), lse (B, H, Nq) (dims left-aligned), mask an
// additive (B, H, Nq, Nk) view (zero strides on broadcast axes) or absent (ptr 0). Head sizes
// up to 256 (std::invalid_argument beyond).
void attention_forward(bool dbl, Array4 o, Array4 lse, Array4 q, Array4 k, Array4 v, Array4 mask,
                       double scale, bool causal);
void attention_backward(bool dbl, Array4 dq, Array4 dk, Array4 dv, Array4 o, Array4 lse,
                        Array4 dout, Array4 q, Array4 k, Array4 v, Array4 mask, double scale,
                        bool causal);
// RBM kernels (rbm.cu), the semantics of cpu/rbm.h: C-contiguous matrices given by their device
// address, w of n_hidden x n_visible; free energy and pseudo-likelihood write float64.
void rbm_hidden(bool dbl, index_t batch, index_t nv, index_t nh, std::uintptr_t h,
                std::uintptr_t v, std::uintptr_t w, std::uintptr_t b_hid, bool sample,
                std::uint64_t seed);
void rbm_visible(bool dbl, index_t batch, index_t nv, index_t nh, std::uintptr_t v,
                 std::uintptr_t h, std::uintptr_t w, std::uintptr_t b_vis, bool gaussian,
                 bool sample, std::uint64_t seed);
struct RbmStepArgs {
  index_t batch = 0, nv = 0, nh = 0, particles = 0;  // particles 0: CD-k from the data
  std::uintptr_t w = 0, b_vis = 0, b_hid = 0, chain = 0, vel_w = 0, vel_b_vis = 0,
                 vel_b_hid = 0, v0 = 0;
  int k = 1;
  double lr = 0.0, momentum = 0.0, weight_decay = 0.0;
  bool gaussian = false, compute_error = true;
  std::uint64_t seed = 0;
};
// One CD-k / PCD update in place; returns the reconstruction error (NaN when not computed).
double rbm_cd_step(bool dbl, const RbmStepArgs& s);
void rbm_free_energy(bool dbl, index_t batch, index_t nv, index_t nh, std::uintptr_t out,
                     std::uintptr_t v, std::uintptr_t w, std::uintptr_t b_vis,
                     std::uintptr_t b_hid, bool gaussian);
void rbm_pseudo_likelihood(bool dbl, index_t batch, index_t nv, index_t nh, std::uintptr_t out,
                           std::uintptr_t v, std::uintptr_t w, std::uintptr_t b_vis,
                           std::uintptr_t b_hid, std::uint64_t seed);

// Runtime services for the Python front.
int device_count(std::string* error);  // 0 (and the reason in *error) when none can be used
void use_device_of(std::uintptr_t ptr);  // make the device that owns ptr current (host: no-op)
void stream_synchronize(std::uintptr_t stream);
void synchronize();
std::uintptr_t device_malloc(std::size_t nbytes);
void device_free(std::uintptr_t ptr) noexcept;
void copy_to_device(std::uintptr_t dst, const void* src, std::size_t nbytes);
void copy_to_host(void* dst, std::uintptr_t src, std::size_t nbytes);

}  // namespace cuda
}  // namespace fastnn
