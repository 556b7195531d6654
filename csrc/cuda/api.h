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
void max_pool2d_backward(bool dbl, Array4 dx, Array4 argmax, Array4 dy);
void avg_pool2d_forward(bool dbl, Array4 y, Array4 x, const PoolWindow& p,
                        bool count_include_pad);
void avg_pool2d_backward(bool dbl, Array4 dx, Array4 dy, const PoolWindow& p,
                         bool count_include_pad);

// Attention (attention.cu), with the semantics of the CPU kernels: q (B, H, Nq, d), k (B, H,
// Nk, d), v (B, H, Nk, dv), o (B, H, Nq, dv), lse (B, H, Nq) (dims left-aligned), mask an
// additive (B, H, Nq, Nk) view (zero strides on broadcast axes) or absent (ptr 0). Head sizes
// up to 256 (std::invalid_argument beyond).
void attention_forward(bool dbl, Array4 o, Array4 lse, Array4 q, Array4 k, Array4 v, Array4 mask,
                       double scale, bool causal);
void attention_backward(bool dbl, Array4 dq, Array4 dk, Array4 dv, Array4 o, Array4 lse,
                        Array4 dout, Array4 q, Array4 k, Array4 v, Array4 mask, double scale,
                        bool causal);

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
